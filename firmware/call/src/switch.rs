//! The switch: a call joins two legs, whatever their technology.
//!
//! A leg is one side of a call as its adapter in the driver sees it: an FXS
//! port, a SIP dialog on a trunk, later an FXO port or an ISDN B-channel. The
//! switch knows legs only by [`LegId`] and talks to them in one vocabulary,
//! [`Signal`] (Q.931's primitives in spirit: setup, more digits, proceeding,
//! alerting, progress with in-band audio, answer, release with a Q.850
//! cause). It owns the routing table, the per-rule limits and, per call, the
//! [`Routing`] that walks the rule's destinations with failover.
//!
//! Driving it (sans-IO, like `gw-sip`): a leg that starts a call calls
//! [`Switch::originate`] with its source (group or trunk name) and [`Setup`];
//! every later event of a leg goes to [`Switch::signal`]. After any input,
//! drain [`Switch::poll_output`]:
//!
//! - [`Output::Place`]: create the B leg at the target (ring a port, send an
//!   INVITE); the adapter reports back on that leg id, with
//!   `Signal::Release` when the target cannot take the call (busy port: 17);
//! - [`Output::Signal`]: tell a leg what the other side did;
//! - [`Output::Event`]: what happened, for the log and the call records.
//!
//! Then sleep until [`Switch::poll_timeout`] and call
//! [`Switch::handle_timeout`] (the setup timer of an attempt: a destination
//! that says nothing within it is failed over with cause 102).
//!
//! Health: `originate`, `signal` and `handle_timeout` take a closure that
//! tells whether a target is up, so a trunk known to be down is skipped
//! without sending anything (cause 38).
//!
//! Not here: media. The driver joins the audio of a call's two legs when its
//! line machine or leg asks for it; the switch says which leg is whose peer
//! ([`Switch::peer`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Instant;

use crate::call::{Attempt, Limits, Routing, Step, TargetState};
use crate::cause::{Cause, LocalReason, Location, Release};
use crate::route::{Lookup, Presentation, RouteMatch, RouteTable, Target};

/// One leg of one call. Never reused, so a late signal for a leg that is
/// gone is recognised and ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LegId(pub u32);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg {}", self.0)
    }
}

/// What a new call asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// The called number (digits, `*`, `#`).
    pub called: String,
    pub calling: Option<String>,
    pub calling_name: Option<String>,
    /// `None`: as the source gave it (allowed when unknown).
    pub presentation: Option<Presentation>,
    /// False while more digits may come ([`Signal::Digits`]: overlap).
    pub complete: bool,
}

/// The one vocabulary between the switch and every leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// More called digits (overlap sending: ISDN INFORMATION, FXO two-stage).
    Digits(String),
    /// Accepted and being worked on (SIP 100, Q.931 CALL PROCEEDING): the
    /// setup timer stops.
    Proceeding,
    /// The called party is alerted; `inband`: the leg carries its own
    /// ringback (early media), so the caller should hear the leg's audio.
    Alerting { inband: bool },
    /// In-band information without alerting (a 183 announcement, a PROGRESS
    /// with progress indicator 8).
    Progress,
    Answer,
    Release(Release),
}

/// Which side of a call a leg is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The calling side.
    A,
    /// The called side (the current attempt).
    B,
}

/// What the switch asks of the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Create B leg `leg` at `target` for the call of `a`.
    Place { a: LegId, leg: LegId, target: Target, setup: Setup, emergency: bool },
    /// Tell `leg` what the other side did.
    Signal { leg: LegId, signal: Signal },
    Event(CallEvent),
}

/// What happened to a call, for logs and call records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEvent {
    Routed { a: LegId, rule: usize, rule_name: Option<String>, called: String },
    /// No rule, or the rule's limit: the call ends before any attempt.
    Refused { a: LegId, release: Release },
    AttemptFailed { a: LegId, target: Target, release: Release },
    Answered { a: LegId, b: LegId },
    /// The call is over; `by`: which side released it. `route`: what
    /// [`CallView::describe`] said last; `trunks_down`: the trunks its
    /// routing skipped as down.
    Released { a: LegId, release: Release, by: Side, route: String, trunks_down: Vec<String>, record: Box<CallRecord> },
}

/// What a call record (CDR) needs of a call that ended: who called whom,
/// by which rule, every destination tried with its result, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The group or trunk the call came from.
    pub source: String,
    /// After the rule's rewriting, if a rule matched; else as dialled.
    pub called: String,
    pub calling: Option<String>,
    /// The rule's index and name.
    pub rule: Option<(usize, Option<String>)>,
    pub attempts: Vec<Attempt>,
    pub started: Instant,
    pub answered: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Overlap: waiting for more digits.
    Collecting,
    /// Trying destinations.
    Routing,
    Answered,
}

struct Call {
    a: LegId,
    source: String,
    setup: Setup,
    b: Option<LegId>,
    route: Option<RouteMatch>,
    routing: Option<Routing>,
    limit_held: bool,
    state: State,
    started: Instant,
    answered: Option<Instant>,
}

/// A call as the installer sees it (`show calls`).
#[derive(Clone, Debug)]
pub struct CallView<'a> {
    pub a: LegId,
    pub b: Option<LegId>,
    pub source: &'a str,
    pub called: &'a str,
    pub calling: Option<&'a str>,
    pub route: Option<&'a RouteMatch>,
    pub attempts: &'a [Attempt],
    pub answered: bool,
    pub started: Instant,
}

impl CallView<'_> {
    /// "rule 1 "out" 2000: trunk "a" -> 41 temporary failure; trunk "b" (trying)".
    pub fn describe(&self) -> String {
        let Some(m) = self.route else { return format!("{}: collecting digits", self.called) };
        let name = m.rule_name.as_deref().map(|n| format!(" {n:?}")).unwrap_or_default();
        let tried: Vec<String> = self
            .attempts
            .iter()
            .map(|a| match a.result {
                Some(r) => format!("{} -> {r}", a.target),
                None if self.answered => format!("{} (answered)", a.target),
                None => format!("{} (trying)", a.target),
            })
            .collect();
        let tried = if tried.is_empty() { "nothing tried".to_string() } else { tried.join("; ") };
        format!("rule {}{name} {}: {tried}", m.rule, m.called)
    }
}

/// The switch. See the module docs.
pub struct Switch {
    table: RouteTable,
    limits: Limits,
    /// By A leg.
    calls: BTreeMap<LegId, Call>,
    /// Every live leg: its call (by A leg) and side.
    legs: BTreeMap<LegId, (LegId, Side)>,
    next_leg: u32,
    out: VecDeque<Output>,
}

impl Switch {
    pub fn new(table: RouteTable) -> Switch {
        Switch { table, limits: Limits::new(), calls: BTreeMap::new(), legs: BTreeMap::new(), next_leg: 1, out: VecDeque::new() }
    }

    /// Takes a new routing table (a committed configuration) without
    /// touching the calls in progress: they keep the route and destinations
    /// they were given; new calls and digits still being collected are
    /// routed by the new table. Per-rule `max_calls` counting starts afresh
    /// with the new rule numbers (calls admitted under the old table no
    /// longer count); per-trunk counts are kept.
    pub fn set_table(&mut self, table: RouteTable) {
        self.table = table;
        self.limits.forget_rules();
        for call in self.calls.values_mut() {
            call.limit_held = false;
        }
    }

    // ---- getters ------------------------------------------------------

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The other leg of `leg`'s call (the current attempt for the A leg).
    pub fn peer(&self, leg: LegId) -> Option<LegId> {
        let (a, side) = self.legs.get(&leg)?;
        let call = self.calls.get(a)?;
        match side {
            Side::A => call.b,
            Side::B => Some(call.a),
        }
    }

    pub fn side(&self, leg: LegId) -> Option<Side> {
        self.legs.get(&leg).map(|l| l.1)
    }

    /// The call `leg` is in.
    pub fn call_of(&self, leg: LegId) -> Option<CallView<'_>> {
        let (a, _) = self.legs.get(&leg)?;
        self.calls.get(a).map(view)
    }

    pub fn calls(&self) -> impl Iterator<Item = CallView<'_>> {
        self.calls.values().map(view)
    }

    pub fn active_calls_of_rule(&self, rule: usize) -> u32 {
        self.limits.active(rule)
    }

    // ---- inputs -------------------------------------------------------

    /// A leg from `source` (a group or trunk name) starts a call; returns
    /// its id (the call's A leg).
    pub fn originate(&mut self, now: Instant, source: &str, setup: Setup, health: &dyn Fn(&Target) -> TargetState) -> LegId {
        let a = self.new_leg();
        self.legs.insert(a, (a, Side::A));
        let call = Call {
            a,
            source: source.to_string(),
            setup,
            b: None,
            route: None,
            routing: None,
            limit_held: false,
            state: State::Collecting,
            started: now,
            answered: None,
        };
        self.calls.insert(a, call);
        self.route(now, a, health);
        a
    }

    /// An event of `leg`. Signals for legs that are gone change nothing.
    pub fn signal(&mut self, now: Instant, leg: LegId, signal: Signal, health: &dyn Fn(&Target) -> TargetState) {
        let Some(&(a, side)) = self.legs.get(&leg) else { return };
        let Some(call) = self.calls.get_mut(&a) else { return };
        match (side, signal) {
            (Side::A, Signal::Digits(d)) => {
                if call.state == State::Collecting {
                    call.setup.called.push_str(&d);
                    self.route(now, a, health);
                } else if let (Some(b), false) = (call.b, call.setup.complete) {
                    // Overlap sending: routed on a prefix, the rest goes on.
                    call.setup.called.push_str(&d);
                    self.out.push_back(Output::Signal { leg: b, signal: Signal::Digits(d) });
                }
            }
            (Side::A, Signal::Release(r)) => {
                if let Some(b) = call.b {
                    self.out.push_back(Output::Signal { leg: b, signal: Signal::Release(r) });
                }
                self.end(a, r, Side::A);
            }
            // The calling side has nothing else to say to the switch.
            (Side::A, _) => {}
            // A signal from an attempt that is no longer the current one.
            (Side::B, _) if call.b != Some(leg) => {}
            (Side::B, Signal::Proceeding) => {
                if let Some(r) = call.routing.as_mut() {
                    r.progress(now);
                }
                self.out.push_back(Output::Signal { leg: a, signal: Signal::Proceeding });
            }
            (Side::B, s @ (Signal::Alerting { .. } | Signal::Progress)) => {
                if let Some(r) = call.routing.as_mut() {
                    r.progress(now);
                }
                self.out.push_back(Output::Signal { leg: a, signal: s });
            }
            (Side::B, Signal::Answer) => {
                if call.state == State::Answered {
                    return;
                }
                call.state = State::Answered;
                call.answered = Some(now);
                if let Some(r) = call.routing.as_mut() {
                    r.answered(now);
                }
                self.out.push_back(Output::Signal { leg: a, signal: Signal::Answer });
                self.out.push_back(Output::Event(CallEvent::Answered { a, b: leg }));
            }
            (Side::B, Signal::Release(r)) => {
                self.legs.remove(&leg);
                call.b = None;
                if call.state == State::Answered {
                    self.out.push_back(Output::Signal { leg: a, signal: Signal::Release(r) });
                    self.end(a, r, Side::B);
                } else {
                    let target = call.routing.as_ref().and_then(|x| x.current().map(|c| c.1.clone()));
                    if let Some(target) = target {
                        self.out.push_back(Output::Event(CallEvent::AttemptFailed { a, target, release: r }));
                    }
                    let step = match call.routing.as_mut() {
                        Some(routing) => routing.attempt_failed(now, r, health),
                        None => Step::GiveUp(r),
                    };
                    self.step(a, step);
                }
            }
            (Side::B, Signal::Digits(_)) => {}
        }
    }

    /// When the next setup timer expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.calls.values().filter_map(|c| c.routing.as_ref().and_then(Routing::poll_timeout)).min()
    }

    /// Setup timers: an attempt that said nothing in time is dropped (its leg
    /// is told `Release` with cause 102) and the call fails over.
    pub fn handle_timeout(&mut self, now: Instant, health: &dyn Fn(&Target) -> TargetState) {
        let due: Vec<LegId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.routing.as_ref().and_then(Routing::poll_timeout).is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for a in due {
            let Some(call) = self.calls.get_mut(&a) else { continue };
            let Some(step) = call.routing.as_mut().and_then(|r| r.handle_timeout(now, health)) else { continue };
            let timeout = Release::local(LocalReason::SetupTimeout);
            if let Some(b) = call.b.take() {
                self.legs.remove(&b);
                self.out.push_back(Output::Signal { leg: b, signal: Signal::Release(timeout) });
            }
            self.step(a, step);
        }
    }

    // ---- outputs ------------------------------------------------------

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ---- internals ----------------------------------------------------

    fn new_leg(&mut self) -> LegId {
        let l = LegId(self.next_leg);
        self.next_leg = self.next_leg.wrapping_add(1).max(1);
        l
    }

    /// Looks the call's number up; starts its routing once a rule matches.
    fn route(&mut self, now: Instant, a: LegId, health: &dyn Fn(&Target) -> TargetState) {
        let Some(call) = self.calls.get_mut(&a) else { return };
        let lookup = self.table.lookup(&call.source, &call.setup.called, call.setup.calling.as_deref());
        match lookup {
            Lookup::NeedMore if !call.setup.complete => {}
            // Complete but a prefix of something routable: an incomplete number.
            Lookup::NeedMore => self.refuse(a, Release { cause: Cause::INVALID_NUMBER_FORMAT, location: Location::PrivateLocal, local: Some(LocalReason::NoRoute) }),
            Lookup::NoRoute => self.refuse(a, Release::local(LocalReason::NoRoute)),
            Lookup::Route(m) => {
                // Emergency calls are never refused for limits.
                if !m.emergency && !self.limits.try_acquire(m.rule, m.max_calls) {
                    return self.refuse(a, Release::local(LocalReason::LimitReached));
                }
                if m.emergency {
                    self.limits.try_acquire(m.rule, None);
                }
                call.limit_held = true;
                call.state = State::Routing;
                let mut routing = Routing::new(&m);
                let step = routing.next_attempt(now, health);
                self.out.push_back(Output::Event(CallEvent::Routed {
                    a,
                    rule: m.rule,
                    rule_name: m.rule_name.clone(),
                    called: m.called.clone(),
                }));
                call.routing = Some(routing);
                call.route = Some(m);
                self.step(a, step);
            }
        }
    }

    fn refuse(&mut self, a: LegId, release: Release) {
        self.out.push_back(Output::Event(CallEvent::Refused { a, release }));
        self.out.push_back(Output::Signal { leg: a, signal: Signal::Release(release) });
        self.end(a, release, Side::B);
    }

    fn step(&mut self, a: LegId, step: Step) {
        match step {
            Step::GiveUp(release) => {
                self.out.push_back(Output::Signal { leg: a, signal: Signal::Release(release) });
                self.end(a, release, Side::B);
            }
            Step::Try { target, .. } => {
                let leg = self.new_leg();
                let Some(call) = self.calls.get_mut(&a) else { return };
                call.b = Some(leg);
                self.legs.insert(leg, (a, Side::B));
                let Some(m) = call.route.as_ref() else { return };
                let setup = Setup {
                    called: m.called.clone(),
                    calling: m.calling.clone(),
                    calling_name: call.setup.calling_name.clone(),
                    presentation: m.presentation.or(call.setup.presentation),
                    // Routed on a prefix (overlap): more digits may follow.
                    complete: call.setup.complete,
                };
                self.out.push_back(Output::Place { a, leg, target, setup, emergency: m.emergency });
            }
        }
    }

    /// The call is over: its legs are forgotten and the rule's slot is free.
    fn end(&mut self, a: LegId, release: Release, by: Side) {
        let Some(call) = self.calls.remove(&a) else { return };
        let route = view(&call).describe();
        let trunks_down = call
            .routing
            .as_ref()
            .map(|r| {
                r.attempts()
                    .iter()
                    .filter(|x| x.result.is_some_and(|r| r.local == Some(LocalReason::TrunkDown)))
                    .filter_map(|x| match &x.target {
                        Target::Trunk(n) => Some(n.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.legs.remove(&a);
        if let Some(b) = call.b {
            self.legs.remove(&b);
        }
        if let (true, Some(m)) = (call.limit_held, call.route.as_ref()) {
            self.limits.release(m.rule);
        }
        let v = view(&call);
        let record = Box::new(CallRecord {
            source: call.source.clone(),
            called: v.called.to_string(),
            calling: call.setup.calling.clone(),
            rule: call.route.as_ref().map(|m| (m.rule, m.rule_name.clone())),
            attempts: v.attempts.to_vec(),
            started: call.started,
            answered: call.answered,
        });
        self.out.push_back(Output::Event(CallEvent::Released { a, release, by, route, trunks_down, record }));
    }
}

fn view(c: &Call) -> CallView<'_> {
    CallView {
        a: c.a,
        b: c.b,
        source: &c.source,
        called: c.route.as_ref().map_or(c.setup.called.as_str(), |m| m.called.as_str()),
        calling: c.setup.calling.as_deref(),
        route: c.route.as_ref(),
        attempts: c.routing.as_ref().map_or(&[], Routing::attempts),
        answered: c.state == State::Answered,
        started: c.started,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{DestinationConfig, GroupConfig, RouteConfig};
    use std::time::Duration;

    /// phones (FXS 1-4) and two trunks: 1xxx local, 2xxx to "a" then "b",
    /// 3xxx to group "phones" (a hunt group), 5xxx overlap from "a".
    fn switch() -> Switch {
        let groups = vec![GroupConfig { name: "phones".into(), fxs: vec![1, 2, 3, 4], fxo: vec![] }];
        let trunks = vec!["a".to_string(), "b".to_string()];
        let dest = |t: &str, timeout: Option<u64>| DestinationConfig { trunk: Some(t.into()), setup_timeout_ms: timeout, ..Default::default() };
        let routes = vec![
            RouteConfig {
                name: Some("local".into()),
                from: vec!["phones".into(), "a".into(), "b".into()],
                called: vec!["1xxx".into()],
                to: vec![DestinationConfig { owner: true, ..Default::default() }],
                ..Default::default()
            },
            RouteConfig {
                name: Some("out".into()),
                from: vec!["phones".into()],
                called: vec!["2xxx".into()],
                max_calls: Some(1),
                to: vec![dest("a", Some(1000)), dest("b", None)],
                ..Default::default()
            },
            RouteConfig {
                name: Some("hunt".into()),
                from: vec!["a".into()],
                called: vec!["3000".into()],
                calling_prefix: "9".into(),
                to: vec![DestinationConfig { group: Some("phones".into()), ..Default::default() }],
                ..Default::default()
            },
        ];
        Switch::new(RouteTable::new(&groups, &trunks, &routes).unwrap().0)
    }

    fn up(_: &Target) -> TargetState {
        TargetState::Unknown
    }

    fn drain(s: &mut Switch) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn placed(out: &[Output]) -> Vec<(LegId, Target)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Place { leg, target, .. } => Some((*leg, target.clone())),
                _ => None,
            })
            .collect()
    }

    fn to_leg(out: &[Output], leg: LegId) -> Vec<Signal> {
        out.iter()
            .filter_map(|o| match o {
                Output::Signal { leg: l, signal } if *l == leg => Some(signal.clone()),
                _ => None,
            })
            .collect()
    }

    fn setup(called: &str, calling: &str) -> Setup {
        Setup { called: called.into(), calling: Some(calling.into()), complete: true, ..Default::default() }
    }

    fn release(c: u8) -> Signal {
        Signal::Release(Release { cause: Cause::new(c).unwrap(), location: Location::PrivateRemote, local: None })
    }

    #[test]
    fn a_new_table_leaves_calls_in_progress_alone_and_routes_new_ones() {
        let t0 = Instant::now();
        let mut s = switch();
        let a = s.originate(t0, "phones", setup("1002", "1001"), &up);
        let [(b, Target::Owner)] = placed(&drain(&mut s))[..] else { panic!() };
        s.signal(t0, b, Signal::Answer, &up);
        drain(&mut s);
        // "out" (rule 1, max_calls 1) holds one call.
        let a2 = s.originate(t0, "phones", setup("2000", "1001"), &up);
        assert_eq!(placed(&drain(&mut s)).len(), 1);
        assert_eq!(s.active_calls_of_rule(1), 1);
        // The new table has only the local rule, for 1xxx and 4xxx.
        let groups = vec![GroupConfig { name: "phones".into(), fxs: vec![1, 2, 3, 4], fxo: vec![] }];
        let trunks = vec!["a".to_string(), "b".to_string()];
        let routes = vec![RouteConfig {
            name: Some("local".into()),
            from: vec!["phones".into()],
            called: vec!["1xxx".into(), "4xxx".into()],
            to: vec![DestinationConfig { owner: true, ..Default::default() }],
            ..Default::default()
        }];
        s.set_table(RouteTable::new(&groups, &trunks, &routes).unwrap().0);
        assert_eq!(s.calls().count(), 2, "both calls go on");
        assert_eq!(s.peer(a), Some(b));
        assert_eq!(s.active_calls_of_rule(1), 0, "rule counts start afresh");
        // New calls: 4xxx now routes, 2xxx no longer does.
        s.originate(t0, "phones", setup("4001", "1001"), &up);
        assert!(matches!(placed(&drain(&mut s))[..], [(_, Target::Owner)]));
        s.originate(t0, "phones", setup("2001", "1001"), &up);
        assert!(placed(&drain(&mut s)).is_empty());
        // The old calls end normally, releasing nothing they no longer hold.
        s.signal(t0, a, release(16), &up);
        s.signal(t0, a2, release(16), &up);
        assert_eq!(to_leg(&drain(&mut s), b), [release(16)]);
        assert_eq!(s.active_calls_of_rule(0), 1, "only the 4001 call counts");
    }

    #[test]
    fn fxs_to_fxs_call_alerting_answer_release_either_side() {
        let t0 = Instant::now();
        let mut s = switch();
        let a = s.originate(t0, "phones", setup("1002", "1001"), &up);
        let out = drain(&mut s);
        let [(b, Target::Owner)] = placed(&out)[..] else { panic!("{out:?}") };
        assert_eq!(s.peer(a), Some(b));
        assert_eq!(s.peer(b), Some(a));
        s.signal(t0, b, Signal::Alerting { inband: false }, &up);
        assert_eq!(to_leg(&drain(&mut s), a), [Signal::Alerting { inband: false }]);
        s.signal(t0, b, Signal::Answer, &up);
        let out = drain(&mut s);
        assert_eq!(to_leg(&out, a), [Signal::Answer]);
        assert!(out.contains(&Output::Event(CallEvent::Answered { a, b })));
        assert!(s.call_of(a).unwrap().describe().contains("owner (answered)"));
        // The called side hangs up: the caller is told, the call is gone.
        let t1 = t0 + Duration::from_secs(30);
        s.signal(t1, b, release(16), &up);
        let out = drain(&mut s);
        assert_eq!(to_leg(&out, a), [release(16)]);
        let record = out
            .iter()
            .find_map(|o| match o {
                Output::Event(CallEvent::Released { record, by: Side::B, .. }) => Some(record.clone()),
                _ => None,
            })
            .expect("a call record");
        assert_eq!((record.source.as_str(), record.called.as_str(), record.calling.as_deref()), ("phones", "1002", Some("1001")));
        assert_eq!(record.rule, Some((0, Some("local".to_string()))));
        assert_eq!((record.started, record.answered), (t0, Some(t0)));
        assert!(matches!(&record.attempts[..], [x] if x.target == Target::Owner && x.result.is_none()));
        assert_eq!(s.calls().count(), 0);
        // Late signals for gone legs change nothing.
        s.signal(t0, b, Signal::Answer, &up);
        s.signal(t0, a, release(16), &up);
        assert!(drain(&mut s).is_empty());

        // Again, the caller hangs up while it rings: the B leg is told.
        let a = s.originate(t0, "phones", setup("1003", "1001"), &up);
        let [(b, _)] = placed(&drain(&mut s))[..] else { panic!() };
        s.signal(t0, a, release(16), &up);
        assert_eq!(to_leg(&drain(&mut s), b), [release(16)]);
        assert_eq!(s.calls().count(), 0);
    }

    #[test]
    fn sip_to_fxs_hunt_group_with_manipulated_calling_number_and_busy_failover_is_not_done() {
        let t0 = Instant::now();
        let mut s = switch();
        let a = s.originate(t0, "a", setup("3000", "5551234"), &up);
        let out = drain(&mut s);
        let Some(Output::Place { leg, target: Target::Group(g), setup, .. }) = out.iter().find(|o| matches!(o, Output::Place { .. })) else {
            panic!("{out:?}")
        };
        assert_eq!((g.as_str(), setup.calling.as_deref()), ("phones", Some("95551234")));
        // Every port busy: 17 is not a failover cause, the SIP side is told 17.
        s.signal(t0, *leg, release(17), &up);
        let out = drain(&mut s);
        assert_eq!(to_leg(&out, a), [release(17)]);
        assert!(out.iter().any(|o| matches!(o, Output::Event(CallEvent::Released { by: Side::B, .. }))));
    }

    #[test]
    fn failover_on_503_and_on_the_setup_timeout_then_give_up() {
        let t0 = Instant::now();
        let mut s = switch();
        let a = s.originate(t0, "phones", setup("2000", "1001"), &up);
        let [(b1, Target::Trunk(ref t))] = placed(&drain(&mut s))[..] else { panic!() };
        assert_eq!(t, "a");
        // Trunk a: 41 (503) fails over to b.
        s.signal(t0, b1, release(41), &up);
        let out = drain(&mut s);
        let [(b2, Target::Trunk(ref t))] = placed(&out)[..] else { panic!("{out:?}") };
        assert_eq!(t, "b");
        assert!(to_leg(&out, a).is_empty(), "the caller hears nothing of the failover");
        // b says nothing: 3 s later the attempt is dropped with 102 and the caller is told.
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(3)));
        s.handle_timeout(t0 + Duration::from_secs(3), &up);
        let out = drain(&mut s);
        assert_eq!(to_leg(&out, b2), [Signal::Release(Release::local(LocalReason::SetupTimeout))]);
        assert_eq!(to_leg(&out, a), [Signal::Release(Release::local(LocalReason::SetupTimeout))]);
        assert_eq!(s.calls().count(), 0);
    }

    #[test]
    fn a_trunk_down_is_skipped_and_progress_stops_the_setup_timer() {
        let t0 = Instant::now();
        let mut s = switch();
        let a_down = |t: &Target| if *t == Target::Trunk("a".into()) { TargetState::Down } else { TargetState::Up };
        let a = s.originate(t0, "phones", setup("2000", "1001"), &a_down);
        let out = drain(&mut s);
        let [(b, Target::Trunk(ref t))] = placed(&out)[..] else { panic!() };
        assert_eq!(t, "b", "a is down: skipped without an attempt");
        assert!(s.call_of(a).unwrap().describe().contains("trunk \"a\" -> 38 network out of order (trunk down)"));
        s.signal(t0, b, Signal::Proceeding, &up);
        assert_eq!(to_leg(&drain(&mut s), a), [Signal::Proceeding]);
        assert_eq!(s.poll_timeout(), None, "the trunk answered: no setup timer");
        s.signal(t0, b, Signal::Alerting { inband: true }, &up);
        assert_eq!(to_leg(&drain(&mut s), a), [Signal::Alerting { inband: true }]);
    }

    #[test]
    fn the_rule_limit_refuses_the_second_call_and_frees_its_slot_at_the_end() {
        let t0 = Instant::now();
        let mut s = switch();
        let a1 = s.originate(t0, "phones", setup("2000", "1001"), &up);
        drain(&mut s);
        let a2 = s.originate(t0, "phones", setup("2001", "1002"), &up);
        let out = drain(&mut s);
        assert_eq!(to_leg(&out, a2), [Signal::Release(Release::local(LocalReason::LimitReached))]);
        assert!(placed(&out).is_empty());
        s.signal(t0, a1, release(16), &up);
        drain(&mut s);
        assert_eq!(s.active_calls_of_rule(1), 0);
        let _ = s.originate(t0, "phones", setup("2001", "1002"), &up);
        assert_eq!(placed(&drain(&mut s)).len(), 1);
    }

    #[test]
    fn no_route_trunk_to_trunk_and_overlap_digits() {
        let t0 = Instant::now();
        let mut s = switch();
        // From trunk a to a 2xxx number: no rule lets a trunk reach a trunk.
        let a = s.originate(t0, "a", setup("2000", "5551234"), &up);
        let out = drain(&mut s);
        assert_eq!(to_leg(&out, a), [Signal::Release(Release::local(LocalReason::NoRoute))]);
        // Overlap: "1" then "0", "0", "2": routed once the number matches.
        let a = s.originate(t0, "b", Setup { called: "1".into(), complete: false, ..Default::default() }, &up);
        assert!(placed(&drain(&mut s)).is_empty());
        s.signal(t0, a, Signal::Digits("00".into()), &up);
        assert!(placed(&drain(&mut s)).is_empty());
        s.signal(t0, a, Signal::Digits("2".into()), &up);
        assert_eq!(placed(&drain(&mut s)).len(), 1);
        // An incomplete number sent as complete: 28.
        let a = s.originate(t0, "b", setup("10", "5"), &up);
        let out = drain(&mut s);
        assert!(matches!(to_leg(&out, a)[..], [Signal::Release(r)] if r.cause == Cause::INVALID_NUMBER_FORMAT));
    }

    #[test]
    fn overlap_digits_after_routing_go_on_to_the_b_leg_only_while_incomplete() {
        let t0 = Instant::now();
        let mut s = switch();
        // Routed on "1002" with more digits possible: the rest follows the B leg.
        let a = s.originate(t0, "b", Setup { called: "1002".into(), complete: false, ..Default::default() }, &up);
        let out = drain(&mut s);
        assert!(out.iter().any(|o| matches!(o, Output::Place { setup, .. } if !setup.complete)), "{out:?}");
        let [(b, _)] = placed(&out)[..] else { panic!("one attempt") };
        s.signal(t0, a, Signal::Digits("9".into()), &up);
        assert_eq!(to_leg(&drain(&mut s), b), [Signal::Digits("9".into())]);
        // A complete number: late digits go nowhere.
        let a = s.originate(t0, "b", setup("1002", "5"), &up);
        let [(b, _)] = placed(&drain(&mut s))[..] else { panic!("one attempt") };
        s.signal(t0, a, Signal::Digits("9".into()), &up);
        assert!(to_leg(&drain(&mut s), b).is_empty());
    }
}
