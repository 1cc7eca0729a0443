//! Number patterns of the route table, and the proofs validation needs about them.
//!
//! Three spellings: `exact:1234` (that number only), `prefix:00` (those digits and
//! any number of further `0-9 *` after them, none included), and everything else in
//! the dial-plan syntax of [`gw_line::DialPlan`] (`1xxx`, `9.`, `[2-5]x`, ...).
//! All three compile to one shape, `Pat`: a set of symbols per position, then
//! optionally "zero or more of `0-9 *`". That shape is a tiny deterministic
//! automaton (state = position), so the table can *prove* things about patterns:
//! that one covers another (shadowing) and that a manipulated number can match again
//! (loops), by exploring the product of the automata.
//!
//! gw-line keeps its pattern type private, so the dial-plan syntax is compiled here a
//! second time; [`gw_line::DialPlan::new`] checks the syntax first (one set of error
//! messages) and a property test checks both compilers agree on every match.

use std::collections::{HashSet, VecDeque};
use std::fmt;

/// Symbol index: 0-9 digits, 10 `*`, 11 `#`.
pub(crate) fn symbol(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'*' => Some(10),
        b'#' => Some(11),
        _ => None,
    }
}

/// `digits` as symbols, `None` if any character is not `0-9 * #`.
pub(crate) fn symbols(digits: &str) -> Option<Vec<u8>> {
    digits.bytes().map(symbol).collect()
}

const DIGITS: u16 = 0x3ff;
/// What a trailing `.` (and a prefix's tail) accepts: digits and `*`, not `#`.
const DOT: u16 = DIGITS | 1 << 10;
/// Bound on the states an analysis explores; beyond it nothing is claimed.
const MAX_STATES: usize = 20_000;

/// How far a number gets with a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatMatch {
    /// The number matches (more digits might also match).
    Full,
    /// The number is a proper prefix of something the pattern matches.
    Partial,
    No,
}

/// The compiled shape: `elems[i]` is the set of symbols allowed at position i; with
/// `star`, any number of further `0-9 *` follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pat {
    elems: Vec<u16>,
    star: bool,
}

impl Pat {
    fn literal(syms: &[u8], star: bool) -> Pat {
        Pat { elems: syms.iter().map(|&s| 1u16 << s).collect(), star }
    }

    /// Dial-plan syntax, already accepted by `gw_line::DialPlan::new`; errors here
    /// are only a second line of defence.
    fn dial_plan(p: &str) -> Option<Pat> {
        let b = p.as_bytes();
        let mut i = usize::from(b.first() == Some(&b'_'));
        let mut elems = Vec::new();
        let mut star = false;
        while i < b.len() {
            let set = match b[i].to_ascii_lowercase() {
                b'x' => DIGITS,
                b'z' => DIGITS & !1,
                b'n' => DIGITS & !3,
                b'.' if i + 1 == b.len() && !elems.is_empty() => {
                    elems.push(DOT);
                    star = true;
                    i += 1;
                    continue;
                }
                b'[' => {
                    let mut set = 0u16;
                    i += 1;
                    while *b.get(i)? != b']' {
                        let lo = symbol(b[i])?;
                        if b.get(i + 1) == Some(&b'-') {
                            let hi = symbol(*b.get(i + 2)?)?;
                            if lo > 9 || hi > 9 || lo > hi {
                                return None;
                            }
                            (lo..=hi).for_each(|s| set |= 1 << s);
                            i += 3;
                        } else {
                            set |= 1 << lo;
                            i += 1;
                        }
                    }
                    if set == 0 {
                        return None;
                    }
                    set
                }
                c => 1 << symbol(c)?,
            };
            elems.push(set);
            i += 1;
        }
        (!elems.is_empty()).then_some(Pat { elems, star })
    }

    pub(crate) fn check(&self, syms: &[u8]) -> PatMatch {
        let mut pos = 0;
        for &s in syms {
            match self.step(pos, s) {
                Some(p) => pos = p,
                None => return PatMatch::No,
            }
        }
        if self.accepting(pos) {
            PatMatch::Full
        } else {
            PatMatch::Partial
        }
    }

    fn step(&self, pos: usize, s: u8) -> Option<usize> {
        match self.elems.get(pos) {
            Some(&set) => (set & 1 << s != 0).then_some(pos + 1),
            None => (self.star && DOT & 1 << s != 0).then_some(pos),
        }
    }

    fn accepting(&self, pos: usize) -> bool {
        pos == self.elems.len()
    }

    /// The state after any `k` symbols the pattern can read (every set is non-empty,
    /// so only the length matters).
    fn after_any(&self, k: usize) -> Option<usize> {
        if k <= self.elems.len() {
            Some(k)
        } else {
            self.star.then_some(self.elems.len())
        }
    }

    fn run(&self, syms: &[u8]) -> Option<usize> {
        syms.iter().try_fold(0, |pos, &s| self.step(pos, s))
    }

    /// Shortest number the pattern matches.
    fn min_len(&self) -> usize {
        self.elems.len()
    }
}

/// Is every number `a` matches also matched by one of `bs`? `false` when that cannot be
/// shown within the state bound (callers only act on a proof).
pub(crate) fn covers(a: &Pat, bs: &[&Pat]) -> bool {
    let start: Vec<Option<usize>> = bs.iter().map(|_| Some(0)).collect();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    seen.insert((0usize, start.clone()));
    queue.push_back((0usize, start));
    while let Some((apos, bpos)) = queue.pop_front() {
        if a.accepting(apos) && !bs.iter().zip(&bpos).any(|(b, p)| p.is_some_and(|p| b.accepting(p))) {
            return false;
        }
        for s in 0..12u8 {
            let Some(na) = a.step(apos, s) else { continue };
            let nb: Vec<Option<usize>> = bs.iter().zip(&bpos).map(|(b, p)| p.and_then(|p| b.step(p, s))).collect();
            if seen.insert((na, nb.clone())) {
                if seen.len() > MAX_STATES {
                    return false;
                }
                queue.push_back((na, nb));
            }
        }
    }
    true
}

/// Is there a string `s` with `a` accepting from state `astart` and `b` from `bstart`?
fn intersects(a: &Pat, astart: usize, b: &Pat, bstart: usize) -> bool {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([(astart, bstart)]);
    seen.insert((astart, bstart));
    while let Some((pa, pb)) = queue.pop_front() {
        if a.accepting(pa) && b.accepting(pb) {
            return true;
        }
        for s in 0..12u8 {
            if let (Some(na), Some(nb)) = (a.step(pa, s), b.step(pb, s)) {
                if seen.insert((na, nb)) {
                    queue.push_back((na, nb));
                }
            }
        }
    }
    false
}

/// Is there a number `n` matched by one of `pats` whose edited form matches one of
/// `pats` again? The edit is `replace` if set, else "strip `strip` leading symbols
/// (all of them if shorter), then prepend `prefix`", the route table's manipulation.
pub(crate) fn edit_can_match_again(pats: &[&Pat], strip: usize, prefix: &str, replace: Option<&str>) -> bool {
    if let Some(r) = replace {
        let Some(r) = symbols(r) else { return false };
        return pats.iter().any(|q| q.check(&r) == PatMatch::Full);
    }
    let Some(x) = symbols(prefix) else { return false };
    pats.iter().any(|p| {
        pats.iter().any(|q| {
            let Some(qstart) = q.run(&x) else { return false };
            // Numbers at least `strip` long: the rest after the strip must be shared.
            let long = p.after_any(strip).is_some_and(|pstart| intersects(p, pstart, q, qstart));
            // Shorter numbers lose everything: the result is the prefix alone.
            let short = p.min_len() < strip && q.accepting(qstart);
            long || short
        })
    })
}

/// One pattern of a rule, as configured and compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberPattern {
    kind: PatternKind,
    /// The configured text, for display.
    text: String,
    /// For `exact:`/`prefix:`, the digits; for dial plans, the text.
    body: String,
    pat: Pat,
}

/// The three spellings of a [`NumberPattern`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    Exact,
    Prefix,
    DialPlan,
}

impl NumberPattern {
    /// Parses one configured pattern; the error says what is wrong in words.
    pub fn parse(text: &str) -> Result<NumberPattern, String> {
        let (kind, body) = match text.split_once(':') {
            Some((tag, body)) if tag.eq_ignore_ascii_case("exact") => (PatternKind::Exact, body),
            Some((tag, body)) if tag.eq_ignore_ascii_case("prefix") => (PatternKind::Prefix, body),
            Some((tag, _)) => return Err(format!("unknown pattern kind {tag:?} (exact:, prefix: or dial-plan syntax)")),
            None => (PatternKind::DialPlan, text),
        };
        let pat = match kind {
            PatternKind::Exact | PatternKind::Prefix => {
                if body.is_empty() {
                    return Err(format!("{text:?}: needs at least one digit after ':'"));
                }
                let syms = symbols(body)
                    .ok_or_else(|| format!("{text:?}: only digits, '*' and '#' may follow ':'"))?;
                Pat::literal(&syms, kind == PatternKind::Prefix)
            }
            PatternKind::DialPlan => {
                gw_line::DialPlan::new(&[body]).map_err(|e| {
                    // "pattern 0 at 2: ..." -> "at 2: ..." (the caller names the index).
                    let msg = e.to_string();
                    let msg = msg.strip_prefix("pattern 0 ").unwrap_or(&msg).to_string();
                    format!("{text:?}: {msg}")
                })?;
                Pat::dial_plan(body).ok_or_else(|| format!("{text:?}: not a dial-plan pattern"))?
            }
        };
        Ok(NumberPattern { kind, text: text.to_string(), body: body.to_string(), pat })
    }

    pub fn kind(&self) -> PatternKind {
        self.kind
    }

    /// How `digits` stand against the pattern; any character outside `0-9 * #`
    /// makes it [`PatMatch::No`].
    pub fn check(&self, digits: &str) -> PatMatch {
        match symbols(digits) {
            Some(s) => self.pat.check(&s),
            None => PatMatch::No,
        }
    }

    pub(crate) fn pat(&self) -> &Pat {
        &self.pat
    }

    /// The same numbers in dial-plan syntax, for the FXS digit map.
    pub(crate) fn dial_plan_patterns(&self) -> Vec<String> {
        match self.kind {
            PatternKind::Exact => vec![self.body.clone()],
            // "P" itself, and "P." for one or more further digits.
            PatternKind::Prefix => vec![self.body.clone(), format!("{}.", self.body)],
            PatternKind::DialPlan => vec![self.body.clone()],
        }
    }
}

impl fmt::Display for NumberPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_line::{DialPlan, Match};
    use proptest::prelude::*;

    fn p(s: &str) -> NumberPattern {
        NumberPattern::parse(s).unwrap()
    }

    #[test]
    fn three_spellings() {
        assert_eq!(p("exact:1234").check("1234"), PatMatch::Full);
        assert_eq!(p("exact:1234").check("123"), PatMatch::Partial);
        assert_eq!(p("exact:1234").check("12345"), PatMatch::No);
        assert_eq!(p("prefix:00").check("0"), PatMatch::Partial);
        assert_eq!(p("prefix:00").check("00"), PatMatch::Full);
        assert_eq!(p("prefix:00").check("00491234*"), PatMatch::Full);
        assert_eq!(p("prefix:00").check("0049#"), PatMatch::No, "# is not a digit after a prefix");
        assert_eq!(p("1xxx").check("1234"), PatMatch::Full);
        assert_eq!(p("9.").check("9"), PatMatch::Partial);
        assert_eq!(p("9.").check("91"), PatMatch::Full);
        assert_eq!(p("_N[1-3]").check("52"), PatMatch::Full);
        assert_eq!(p("1xxx").check("12a4"), PatMatch::No);
        assert_eq!(p("EXACT:#1").check("#1"), PatMatch::Full);
    }

    #[test]
    fn bad_patterns_say_why() {
        let e = |s: &str| NumberPattern::parse(s).unwrap_err();
        assert!(e("exact:").contains("at least one digit"));
        assert!(e("prefix:12a").contains("only digits"));
        assert!(e("regex:1.*").contains("unknown pattern kind"));
        assert!(e("9.1").contains("'.' must be last"), "{}", e("9.1"));
        assert!(e("1q").contains("at 1"), "{}", e("1q"));
        assert!(e("").contains("empty"));
    }

    #[test]
    fn digit_map_spelling() {
        assert_eq!(p("exact:911").dial_plan_patterns(), ["911"]);
        assert_eq!(p("prefix:00").dial_plan_patterns(), ["00", "00."]);
        assert_eq!(p("_1NXX").dial_plan_patterns(), ["_1NXX"]);
    }

    #[test]
    fn coverage_is_proved_or_refused() {
        let cov = |a: &str, bs: &[&str]| {
            let bs: Vec<NumberPattern> = bs.iter().map(|b| p(b)).collect();
            let refs: Vec<&Pat> = bs.iter().map(|b| b.pat()).collect();
            covers(p(a).pat(), &refs)
        };
        assert!(cov("1234", &["1xxx"]));
        assert!(cov("exact:1234", &["prefix:12"]));
        assert!(cov("1x", &["1[0-4]", "1[5-9]"]), "a union covers");
        assert!(!cov("1x", &["1[0-4]", "1[5-8]"]));
        assert!(cov("9.", &["prefix:9"]));
        assert!(!cov("prefix:9", &["9."]), "9 alone is not matched by 9.");
        assert!(cov("91.", &["9."]));
        assert!(!cov("9.", &["9xx."]));
        assert!(cov("9xx.", &["9."]));
        assert!(!cov("1xxx", &["1xx"]));
        assert!(!cov("1#", &["1."]), ". does not take #");
    }

    #[test]
    fn manipulation_loops_are_found() {
        let again = |pats: &[&str], strip, prefix: &str, replace: Option<&str>| {
            let ps: Vec<NumberPattern> = pats.iter().map(|s| p(s)).collect();
            let refs: Vec<&Pat> = ps.iter().map(|x| x.pat()).collect();
            edit_can_match_again(&refs, strip, prefix, replace)
        };
        assert!(again(&["x."], 0, "", None), "unchanged number");
        assert!(again(&["9."], 0, "9", None), "prefix keeps it in 9.");
        assert!(!again(&["9xxx"], 0, "9", None), "too long afterwards");
        assert!(!again(&["9xxx"], 1, "", None), "too short afterwards");
        assert!(again(&["9xxx"], 1, "9", None), "strip one, put it back");
        assert!(!again(&["9xxx"], 1, "8", None));
        assert!(again(&["9xxx", "8xxx"], 1, "8", None), "9123 -> 8123 matches the other pattern");
        assert!(again(&["00x."], 2, "00", None));
        assert!(again(&["00x."], 2, "0", None), "00012 -> 0012");
        assert!(!again(&["00x."], 2, "1", None));
        assert!(again(&["12", "5"], 3, "5", None), "shorter than strip: only the prefix is left");
        assert!(again(&["1xxx"], 0, "", Some("1000")));
        assert!(!again(&["1xxx"], 0, "", Some("2000")));
    }

    proptest! {
        /// The dial-plan compiler here agrees with gw-line's on every number.
        #[test]
        fn agrees_with_gw_line(pat in "_?[0-9xXzZnN*#]{1,5}(\\[[0-9]{1,3}\\])?[0-9xz]{0,2}\\.?", d in "[0-9*#]{0,9}") {
            let plan = DialPlan::new(&[&pat]).unwrap();
            let ours = p(&pat).check(&d);
            let theirs = match plan.check(&d) {
                Match::Complete | Match::CompleteOrMore => PatMatch::Full,
                Match::Partial => PatMatch::Partial,
                Match::NoMatch => PatMatch::No,
            };
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn parse_and_check_never_panic(s in "\\PC{0,16}", d in "\\PC{0,12}") {
            if let Ok(pat) = NumberPattern::parse(&s) {
                let _ = pat.check(&d);
            }
        }

        /// When `covers` claims coverage, no sampled number contradicts it.
        #[test]
        fn coverage_claims_hold(a in "[0-9x]{1,3}\\.?", b in "[0-9x]{1,3}\\.?", d in "[0-9]{1,6}") {
            let (pa, pb) = (p(&a), p(&b));
            if covers(pa.pat(), &[pb.pat()]) && pa.check(&d) == PatMatch::Full {
                prop_assert_eq!(pb.check(&d), PatMatch::Full);
            }
        }
    }
}
