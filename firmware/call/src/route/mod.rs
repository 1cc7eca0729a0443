//! The routing table: which calls go where, with which numbers.
//!
//! Built once from configuration by [`RouteTable::new`], which checks the whole
//! table and refuses it with the first [`RouteError`] (each names the rule's index
//! as written in the file, `route[3]`), or accepts it with [`RouteWarning`]s.
//!
//! Lookup ([`RouteTable::lookup`]) takes the source (a group or trunk name), the
//! called number and the calling number. Emergency rules are considered first, then
//! the others, each in file order; the first rule that lists the source, whose called
//! patterns match the whole called number and whose calling patterns (if any) match
//! the calling number wins. Its manipulation is applied and its ordered
//! destinations are returned. When no rule matches but the called number is a proper
//! prefix of something a rule of that source could match, the answer is
//! [`Lookup::NeedMore`]. A number is final as soon as some rule matches it: a source
//! that collects digits one by one (FXS, ISDN overlap) decides when it has enough with
//! [`RouteTable::digit_map`] (`Complete`: route now; `CompleteOrMore`: wait for the
//! inter-digit timer or `#`), exactly as the FXS line already does with its dial plan.
//! A source that sends the number en bloc (SIP) treats `NeedMore` as an incomplete
//! number: cause 28, which the SIP edge answers with 484 Address Incomplete.
//!
//! Validation choices:
//! - **Shadowed rules are errors.** A rule that can never be chosen is a mistake in
//!   the file, and one that silently does nothing is the hardest to find. Only what
//!   can be proved is reported: rule *j* is shadowed by an earlier rule *i* (in the
//!   order above) when *i*'s sources include all of *j*'s, *i*'s called patterns
//!   cover every number *j*'s can match (exactly, by automaton product), and *i* has
//!   no calling filter or one that covers *j*'s.
//! - **Loops are errors**: a destination trunk (or a group with FXO ports) that is
//!   also a source of the rule, when some number the rule matches still matches the
//!   rule after the manipulation (and so would come straight back). Destinations
//!   that end at a phone (FXS groups, `owner`) are not checked: a ringing phone never
//!   sends the call back into the table, and the everyday local rule
//!   `from = ["phones", "carrier"], to = [{ owner = true }]` must stay valid. (The
//!   brief counted `owner` as the FXS groups here; that would refuse that rule.)
//! - An emergency rule without a destination group with FXO ports (the PSTN) is a
//!   warning: with only SIP trunks it still works while the WAN does.

pub mod config;
pub mod pattern;

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::cause::{Cause, CauseSet};
pub use config::{DestinationConfig, GroupConfig, Presentation, RouteConfig, Select};
pub use pattern::{NumberPattern, PatMatch, PatternKind};

/// Failover causes of a destination that does not list its own: no circuit (34),
/// network out of order (38), temporary failure (41), congestion (42), resource
/// unavailable (47), timer expiry (102, also our setup timeout), no route to
/// destination (3) and destination out of order (27). Not 17 busy, 1 unallocated or
/// 21 rejected: another route would give the same answer.
pub const DEFAULT_FAILOVER_ON: [u8; 8] = [34, 38, 41, 42, 47, 102, 3, 27];
/// Setup timeout of a destination that does not set `setup_timeout_ms`.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Accepted `setup_timeout_ms`.
pub const SETUP_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=300_000;

/// Where a destination sends the call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// The FXS port whose number is the called number (after manipulation).
    Owner,
    Group(String),
    Trunk(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Owner => f.write_str("owner"),
            Target::Group(g) => write!(f, "group {g:?}"),
            Target::Trunk(t) => write!(f, "trunk {t:?}"),
        }
    }
}

/// One destination of a rule, with its failover policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub target: Target,
    pub select: Select,
    /// A release with one of these causes (before answer) moves on to the next
    /// destination.
    pub failover_on: CauseSet,
    pub setup_timeout: Duration,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        if matches!(self.target, Target::Group(_)) {
            let s = match self.select {
                Select::First => "first",
                Select::RoundRobin => "round-robin",
            };
            write!(f, " ({s})")?;
        }
        write!(f, ", failover on {}, setup timeout {} ms", self.failover_on, self.setup_timeout.as_millis())
    }
}

/// A group of ports, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub fxs: Vec<usize>,
    pub fxo: Vec<usize>,
}

/// The result of a lookup that found a rule: what to do with the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the rule in the configuration (`route[rule]`).
    pub rule: usize,
    pub rule_name: Option<String>,
    /// The called number after manipulation.
    pub called: String,
    /// The calling number after manipulation.
    pub calling: Option<String>,
    /// `None`: keep the presentation the call came with.
    pub presentation: Option<Presentation>,
    /// In order of trial.
    pub destinations: Vec<Destination>,
    pub max_calls: Option<u32>,
    pub emergency: bool,
}

/// The answer of [`RouteTable::lookup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Route(RouteMatch),
    /// No rule matches yet, but more digits could make one match.
    NeedMore,
    NoRoute,
}

/// A refused table. Every variant names the group or rule index as written in the
/// configuration; `dest` is the index in that rule's `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// A group without a name, with port 0, or with a port twice.
    BadGroup { group: usize, message: String },
    DuplicateGroup { group: usize, name: String },
    /// A group named like a trunk: `from` and `to` could not tell them apart.
    GroupTrunkClash { group: usize, name: String },
    /// `from` is empty.
    NoSource { rule: usize },
    /// A name in `from` is neither a group nor a trunk.
    UnknownSource { rule: usize, name: String },
    /// `called` is empty.
    NoPattern { rule: usize },
    /// `field` is `called` or `calling`; `index` the pattern's place in it.
    BadPattern { rule: usize, field: &'static str, index: usize, message: String },
    /// `prefix`, `replace` or `calling_prefix` is not made of `0-9 * #`.
    BadNumber { rule: usize, field: &'static str, value: String },
    /// `max_calls = 0`.
    BadLimit { rule: usize },
    /// `replace` together with `strip` or `prefix` (which it would silently ignore).
    ReplaceWithStrip { rule: usize },
    /// `to` is empty.
    NoDestination { rule: usize },
    /// Not exactly one of owner/trunk/group, select on a non-group, a failover cause
    /// outside 1..=127 or a setup timeout outside [`SETUP_TIMEOUT_MS_RANGE`].
    BadDestination { rule: usize, dest: usize, message: String },
    UnknownDestination { rule: usize, dest: usize, name: String },
    /// `to[dest]` is a source of the rule and the manipulated number matches the rule
    /// again.
    Loop { rule: usize, dest: usize },
    /// Every call this rule could take is taken by rule `by` first.
    Shadowed { rule: usize, by: usize },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RouteError::*;
        match self {
            BadGroup { group, message } => write!(f, "group[{group}]: {message}"),
            DuplicateGroup { group, name } => write!(f, "group[{group}]: a group named {name:?} already exists"),
            GroupTrunkClash { group, name } => write!(f, "group[{group}]: {name:?} is also the name of a trunk"),
            NoSource { rule } => write!(f, "route[{rule}].from: no source; list groups or trunks"),
            UnknownSource { rule, name } => write!(f, "route[{rule}].from: {name:?} is neither a group nor a trunk"),
            NoPattern { rule } => write!(f, "route[{rule}].called: no pattern; use \"x.\" for any number"),
            BadPattern { rule, field, index, message } => write!(f, "route[{rule}].{field}[{index}]: {message}"),
            BadNumber { rule, field, value } => {
                write!(f, "route[{rule}].{field}: {value:?} may only contain digits, '*' and '#'")
            }
            BadLimit { rule } => write!(f, "route[{rule}].max_calls: 0 would refuse every call; remove the rule instead"),
            ReplaceWithStrip { rule } => {
                write!(f, "route[{rule}].replace: replaces the whole number; remove strip and prefix")
            }
            NoDestination { rule } => write!(f, "route[{rule}].to: no destination"),
            BadDestination { rule, dest, message } => write!(f, "route[{rule}].to[{dest}]: {message}"),
            UnknownDestination { rule, dest, name } => {
                write!(f, "route[{rule}].to[{dest}]: no group or trunk named {name:?}")
            }
            Loop { rule, dest } => write!(
                f,
                "route[{rule}].to[{dest}]: loop: the destination is also a source of this rule and the \
                 manipulated number matches the rule again"
            ),
            Shadowed { rule, by } => {
                write!(f, "route[{rule}]: never used: every call it could take matches route[{by}] first")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// Accepted, but worth the installer's attention.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteWarning {
    /// An emergency rule with no destination group that has FXO ports.
    EmergencyWithoutPstn { rule: usize },
}

impl fmt::Display for RouteWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteWarning::EmergencyWithoutPstn { rule } => write!(
                f,
                "route[{rule}]: emergency rule without a PSTN (FXO group) destination: it fails when the trunks do"
            ),
        }
    }
}

/// One compiled rule.
#[derive(Clone, Debug)]
struct Rule {
    index: usize,
    name: Option<String>,
    from: BTreeSet<String>,
    called: Vec<NumberPattern>,
    calling: Vec<NumberPattern>,
    strip: usize,
    prefix: String,
    replace: Option<String>,
    calling_prefix: String,
    presentation: Option<Presentation>,
    max_calls: Option<u32>,
    emergency: bool,
    to: Vec<Destination>,
}

impl Rule {
    fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("route[{}] {n:?}", self.index),
            None => format!("route[{}]", self.index),
        }
    }

    fn edit_called(&self, called: &str) -> String {
        match &self.replace {
            Some(r) => r.clone(),
            None => {
                let rest = called.get(self.strip.min(called.len())..).unwrap_or("");
                format!("{}{rest}", self.prefix)
            }
        }
    }

    fn edit_calling(&self, calling: Option<&str>) -> Option<String> {
        calling.map(|c| format!("{}{c}", self.calling_prefix))
    }

    fn called_match(&self, called: &str) -> (PatMatch, Option<&NumberPattern>) {
        let mut partial = false;
        for p in &self.called {
            match p.check(called) {
                PatMatch::Full => return (PatMatch::Full, Some(p)),
                PatMatch::Partial => partial = true,
                PatMatch::No => {}
            }
        }
        (if partial { PatMatch::Partial } else { PatMatch::No }, None)
    }

    fn calling_ok(&self, calling: Option<&str>) -> Result<(), TraceOutcome> {
        if self.calling.is_empty() {
            return Ok(());
        }
        let Some(c) = calling else { return Err(TraceOutcome::CallingMissing) };
        if self.calling.iter().any(|p| p.check(c) == PatMatch::Full) {
            Ok(())
        } else {
            Err(TraceOutcome::CallingNoMatch)
        }
    }

    fn to_match(&self, called: &str, calling: Option<&str>) -> RouteMatch {
        RouteMatch {
            rule: self.index,
            rule_name: self.name.clone(),
            called: self.edit_called(called),
            calling: self.edit_calling(calling),
            presentation: self.presentation,
            destinations: self.to.clone(),
            max_calls: self.max_calls,
            emergency: self.emergency,
        }
    }
}

/// The validated routing table. See the module docs.
#[derive(Clone, Debug)]
pub struct RouteTable {
    /// Emergency rules first, then the others, each in file order.
    rules: Vec<Rule>,
    groups: Vec<Group>,
    trunks: Vec<String>,
}

fn is_number(s: &str) -> bool {
    pattern::symbols(s).is_some()
}

impl RouteTable {
    /// Checks and compiles the table. `trunks` are the names of the configured SIP
    /// trunks. See the module docs for what is refused and what is only warned about.
    pub fn new(
        groups: &[GroupConfig],
        trunks: &[String],
        routes: &[RouteConfig],
    ) -> Result<(RouteTable, Vec<RouteWarning>), RouteError> {
        let mut warnings = Vec::new();
        let mut gs: Vec<Group> = Vec::with_capacity(groups.len());
        for (gi, g) in groups.iter().enumerate() {
            if g.name.trim().is_empty() {
                return Err(RouteError::BadGroup { group: gi, message: "the name is empty".into() });
            }
            if gs.iter().any(|o| o.name == g.name) {
                return Err(RouteError::DuplicateGroup { group: gi, name: g.name.clone() });
            }
            if trunks.contains(&g.name) {
                return Err(RouteError::GroupTrunkClash { group: gi, name: g.name.clone() });
            }
            for (kind, ports) in [("fxs", &g.fxs), ("fxo", &g.fxo)] {
                if ports.contains(&0) {
                    return Err(RouteError::BadGroup { group: gi, message: format!("{kind}: ports count from 1") });
                }
                let set: BTreeSet<_> = ports.iter().collect();
                if set.len() != ports.len() {
                    return Err(RouteError::BadGroup { group: gi, message: format!("{kind}: a port is listed twice") });
                }
            }
            gs.push(Group { name: g.name.clone(), fxs: g.fxs.clone(), fxo: g.fxo.clone() });
        }
        let known = |n: &str| gs.iter().any(|g| g.name == n) || trunks.iter().any(|t| t == n);
        let pstn = |n: &str| gs.iter().any(|g| g.name == n && !g.fxo.is_empty());

        let mut rules = Vec::with_capacity(routes.len());
        for (ri, r) in routes.iter().enumerate() {
            let rule = Self::compile(ri, r, &gs, trunks, &known)?;
            if rule.emergency && !rule.to.iter().any(|d| matches!(&d.target, Target::Group(g) if pstn(g))) {
                warnings.push(RouteWarning::EmergencyWithoutPstn { rule: ri });
            }
            // Loops: a destination that is also a source and can send the call back in.
            for (di, d) in rule.to.iter().enumerate() {
                let reenters = match &d.target {
                    Target::Trunk(t) => rule.from.contains(t),
                    Target::Group(g) => rule.from.contains(g) && pstn(g),
                    Target::Owner => false,
                };
                if reenters && Self::matches_again(&rule) {
                    return Err(RouteError::Loop { rule: ri, dest: di });
                }
            }
            rules.push(rule);
        }
        // Evaluation order: emergency rules first (stable within each kind).
        rules.sort_by_key(|r| !r.emergency);
        for j in 0..rules.len() {
            if let Some(i) = (0..j).find(|&i| Self::shadows(&rules[i], &rules[j])) {
                return Err(RouteError::Shadowed { rule: rules[j].index, by: rules[i].index });
            }
        }
        Ok((RouteTable { rules, groups: gs, trunks: trunks.to_vec() }, warnings))
    }

    fn compile(
        ri: usize,
        r: &RouteConfig,
        groups: &[Group],
        trunks: &[String],
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Rule, RouteError> {
        if r.from.is_empty() {
            return Err(RouteError::NoSource { rule: ri });
        }
        if let Some(n) = r.from.iter().find(|n| !known(n)) {
            return Err(RouteError::UnknownSource { rule: ri, name: n.clone() });
        }
        if r.called.is_empty() {
            return Err(RouteError::NoPattern { rule: ri });
        }
        let compile_all = |field: &'static str, pats: &[String]| {
            pats.iter()
                .enumerate()
                .map(|(index, p)| {
                    NumberPattern::parse(p).map_err(|message| RouteError::BadPattern { rule: ri, field, index, message })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let called = compile_all("called", &r.called)?;
        let calling = compile_all("calling", &r.calling)?;
        for (field, value) in [("prefix", Some(&r.prefix)), ("replace", r.replace.as_ref()), ("calling_prefix", Some(&r.calling_prefix))] {
            if let Some(v) = value {
                let empty_replace = field == "replace" && v.is_empty();
                if !is_number(v) || empty_replace {
                    return Err(RouteError::BadNumber { rule: ri, field, value: v.clone() });
                }
            }
        }
        if r.replace.is_some() && (r.strip != 0 || !r.prefix.is_empty()) {
            return Err(RouteError::ReplaceWithStrip { rule: ri });
        }
        if r.max_calls == Some(0) {
            return Err(RouteError::BadLimit { rule: ri });
        }
        if r.to.is_empty() {
            return Err(RouteError::NoDestination { rule: ri });
        }
        let mut to = Vec::with_capacity(r.to.len());
        for (di, d) in r.to.iter().enumerate() {
            let bad = |message: String| RouteError::BadDestination { rule: ri, dest: di, message };
            let target = match (d.owner, &d.trunk, &d.group) {
                (true, None, None) => Target::Owner,
                (false, Some(t), None) => {
                    if !trunks.contains(t) {
                        return Err(RouteError::UnknownDestination { rule: ri, dest: di, name: t.clone() });
                    }
                    Target::Trunk(t.clone())
                }
                (false, None, Some(g)) => {
                    if !groups.iter().any(|x| &x.name == g) {
                        return Err(RouteError::UnknownDestination { rule: ri, dest: di, name: g.clone() });
                    }
                    Target::Group(g.clone())
                }
                _ => return Err(bad("give exactly one of owner = true, trunk = \"..\" or group = \"..\"".into())),
            };
            if d.select.is_some() && !matches!(target, Target::Group(_)) {
                return Err(bad("select applies to group destinations only".into()));
            }
            let failover_on = match &d.failover_on {
                None => DEFAULT_FAILOVER_ON.iter().filter_map(|&v| Cause::new(v)).collect(),
                Some(list) => {
                    let mut set = CauseSet::new();
                    for &v in list {
                        let c = u8::try_from(v).ok().and_then(Cause::new);
                        set.insert(c.ok_or_else(|| bad(format!("failover_on: {v} is not a Q.850 cause (1..=127)")))?);
                    }
                    set
                }
            };
            let setup_timeout = match d.setup_timeout_ms {
                None => DEFAULT_SETUP_TIMEOUT,
                Some(ms) if SETUP_TIMEOUT_MS_RANGE.contains(&ms) => Duration::from_millis(ms),
                Some(ms) => {
                    return Err(bad(format!(
                        "setup_timeout_ms: {ms} is outside {}..={}",
                        SETUP_TIMEOUT_MS_RANGE.start(),
                        SETUP_TIMEOUT_MS_RANGE.end()
                    )))
                }
            };
            to.push(Destination { target, select: d.select.unwrap_or_default(), failover_on, setup_timeout });
        }
        Ok(Rule {
            index: ri,
            name: r.name.clone(),
            from: r.from.iter().cloned().collect(),
            called,
            calling,
            strip: r.strip,
            prefix: r.prefix.clone(),
            replace: r.replace.clone(),
            calling_prefix: r.calling_prefix.clone(),
            presentation: r.presentation,
            max_calls: r.max_calls,
            emergency: r.emergency,
            to,
        })
    }

    /// Can some call taken by `rule` come back with numbers `rule` takes again?
    fn matches_again(rule: &Rule) -> bool {
        let called: Vec<_> = rule.called.iter().map(NumberPattern::pat).collect();
        let calling: Vec<_> = rule.calling.iter().map(NumberPattern::pat).collect();
        pattern::edit_can_match_again(&called, rule.strip, &rule.prefix, rule.replace.as_deref())
            && (calling.is_empty() || pattern::edit_can_match_again(&calling, 0, &rule.calling_prefix, None))
    }

    /// Does `earlier` provably take every call `later` could take?
    fn shadows(earlier: &Rule, later: &Rule) -> bool {
        if !later.from.is_subset(&earlier.from) {
            return false;
        }
        let covered = |a: &[NumberPattern], b: &[NumberPattern]| {
            let bs: Vec<_> = b.iter().map(NumberPattern::pat).collect();
            a.iter().all(|p| pattern::covers(p.pat(), &bs))
        };
        let calling_covered = earlier.calling.is_empty() || (!later.calling.is_empty() && covered(&later.calling, &earlier.calling));
        calling_covered && covered(&later.called, &earlier.called)
    }

    /// Where a call from `from` (a group or trunk name) to `called` goes. Never panics;
    /// unknown sources and numbers with characters outside `0-9 * #` find no route.
    pub fn lookup(&self, from: &str, called: &str, calling: Option<&str>) -> Lookup {
        let mut need_more = false;
        for rule in self.rules.iter().filter(|r| r.from.contains(from)) {
            match rule.called_match(called) {
                (PatMatch::Full, _) if rule.calling_ok(calling).is_ok() => {
                    return Lookup::Route(rule.to_match(called, calling));
                }
                (PatMatch::Partial, _) if rule.calling_ok(calling).is_ok() => need_more = true,
                _ => {}
            }
        }
        if need_more {
            Lookup::NeedMore
        } else {
            Lookup::NoRoute
        }
    }

    /// The digit map a collecting source (an FXS group) dials against: the called
    /// patterns of every rule that lists `from`, in dial-plan syntax (`exact:P` is
    /// `P`; `prefix:P` is `P` and `P.`). `None` when no rule takes calls from `from`:
    /// then every number is unroutable (gw-line's `DialPlan` cannot be empty).
    pub fn digit_map(&self, from: &str) -> Option<gw_line::DialPlan> {
        let pats: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.from.contains(from))
            .flat_map(|r| r.called.iter().flat_map(NumberPattern::dial_plan_patterns))
            .collect();
        let refs: Vec<&str> = pats.iter().map(String::as_str).collect();
        // Every pattern was accepted in this syntax when the table was built.
        gw_line::DialPlan::new(&refs).ok()
    }

    /// What `lookup` does, step by step, for the installer's `test route`.
    pub fn trace(&self, from: &str, called: &str, calling: Option<&str>) -> RouteTrace {
        let mut steps = Vec::with_capacity(self.rules.len());
        let mut decided = false;
        for rule in &self.rules {
            let outcome = if decided {
                TraceOutcome::NotReached
            } else if !rule.from.contains(from) {
                TraceOutcome::OtherSource
            } else {
                match (rule.called_match(called), rule.calling_ok(calling)) {
                    ((PatMatch::Full, p), Ok(())) => {
                        decided = true;
                        TraceOutcome::Matched { pattern: p.map(ToString::to_string).unwrap_or_default() }
                    }
                    ((PatMatch::Full, _), Err(o)) => o,
                    ((PatMatch::Partial, _), Err(o)) => o,
                    ((PatMatch::Partial, _), Ok(())) => TraceOutcome::CalledNeedsMore,
                    ((PatMatch::No, _), _) => TraceOutcome::CalledNoMatch,
                }
            };
            steps.push(TraceStep {
                rule: rule.index,
                label: rule.label(),
                emergency: rule.emergency,
                called_patterns: rule.called.iter().map(ToString::to_string).collect(),
                calling_patterns: rule.calling.iter().map(ToString::to_string).collect(),
                outcome,
            });
        }
        RouteTrace {
            from: from.to_string(),
            called: called.to_string(),
            calling: calling.map(str::to_string),
            known_source: self.is_source(from),
            steps,
            result: self.lookup(from, called, calling),
        }
    }

    /// Is `name` a group or a trunk?
    pub fn is_source(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g.name == name) || self.trunks.iter().any(|t| t == name)
    }

    /// The groups, in configuration order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The source name of FXS port `port` (1-based): the first group listing it.
    pub fn fxs_source(&self, port: usize) -> Option<&str> {
        self.groups.iter().find(|g| g.fxs.contains(&port)).map(|g| g.name.as_str())
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Why a rule did or did not take the call, in a [`RouteTrace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceOutcome {
    /// The rule's `from` does not list the source.
    OtherSource,
    CalledNoMatch,
    /// The called number could match with more digits.
    CalledNeedsMore,
    /// The rule filters on the calling number and the call has none.
    CallingMissing,
    CallingNoMatch,
    /// This rule takes the call (`pattern` is the called pattern that matched).
    Matched { pattern: String },
    /// An earlier rule took the call.
    NotReached,
}

/// One rule's line in a [`RouteTrace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    pub rule: usize,
    /// `route[2] "name"`.
    pub label: String,
    pub emergency: bool,
    pub called_patterns: Vec<String>,
    pub calling_patterns: Vec<String>,
    pub outcome: TraceOutcome,
}

/// What [`RouteTable::trace`] found; `Display` prints it for the installer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTrace {
    pub from: String,
    pub called: String,
    pub calling: Option<String>,
    pub known_source: bool,
    /// Every rule in evaluation order (emergency rules first).
    pub steps: Vec<TraceStep>,
    pub result: Lookup,
}

impl fmt::Display for RouteTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route from {:?} called {:?}", self.from, self.called)?;
        match &self.calling {
            Some(c) => writeln!(f, " calling {c:?}")?,
            None => writeln!(f, " (no calling number)")?,
        }
        if !self.known_source {
            writeln!(f, "  {:?} is neither a group nor a trunk", self.from)?;
        }
        for s in &self.steps {
            let em = if s.emergency { " (emergency)" } else { "" };
            write!(f, "  {}{em}: ", s.label)?;
            let called = s.called_patterns.join(", ");
            match &s.outcome {
                TraceOutcome::OtherSource => writeln!(f, "not from {:?}", self.from)?,
                TraceOutcome::CalledNoMatch => writeln!(f, "called {:?} does not match {called}", self.called)?,
                TraceOutcome::CalledNeedsMore => writeln!(f, "called {:?} needs more digits for {called}", self.called)?,
                TraceOutcome::CallingMissing => {
                    writeln!(f, "needs a calling number matching {}", s.calling_patterns.join(", "))?
                }
                TraceOutcome::CallingNoMatch => writeln!(
                    f,
                    "calling {:?} does not match {}",
                    self.calling.as_deref().unwrap_or(""),
                    s.calling_patterns.join(", ")
                )?,
                TraceOutcome::Matched { pattern } => writeln!(f, "MATCH (called pattern {pattern})")?,
                TraceOutcome::NotReached => writeln!(f, "not reached")?,
            }
        }
        match &self.result {
            Lookup::NoRoute => write!(f, "result: no route (cause 3)"),
            Lookup::NeedMore => write!(f, "result: need more digits"),
            Lookup::Route(m) => {
                let name = m.rule_name.as_ref().map(|n| format!(" {n:?}")).unwrap_or_default();
                let em = if m.emergency { " (emergency)" } else { "" };
                writeln!(f, "result: route[{}]{name}{em}", m.rule)?;
                writeln!(f, "  called {:?} -> {:?}", self.called, m.called)?;
                match (&self.calling, &m.calling) {
                    (Some(a), Some(b)) => writeln!(f, "  calling {a:?} -> {b:?}")?,
                    _ => writeln!(f, "  calling: none")?,
                }
                if let Some(p) = m.presentation {
                    let p = match p {
                        Presentation::Allowed => "allowed",
                        Presentation::Restricted => "restricted",
                    };
                    writeln!(f, "  presentation: {p}")?;
                }
                if let Some(n) = m.max_calls {
                    writeln!(f, "  max calls: {n}")?;
                }
                for (i, d) in m.destinations.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "  {}. {d}", i + 1)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
