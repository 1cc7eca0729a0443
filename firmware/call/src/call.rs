//! Per-call routing, sans-IO: which destination to try next, and call limits.
//!
//! [`Routing`] is created from the [`RouteMatch`] of a call and walks its
//! destinations in order (CALL-CONTROL.md 2.6):
//!
//! - [`Routing::next_attempt`] starts: it skips destinations whose target is
//!   [`TargetState::Down`] without sending anything (recorded as an attempt with
//!   cause 38 and [`LocalReason::TrunkDown`], or 34 and [`LocalReason::Unavailable`]
//!   for a group or the owner port) and returns [`Step::Try`] with the setup deadline.
//! - The driver places the call there. On proceeding or alerting it calls
//!   [`Routing::progress`] (the setup timer stops); on answer [`Routing::answered`].
//! - When the attempt fails before answer, [`Routing::attempt_failed`] fails over to
//!   the next destination if the cause is in that destination's `failover_on` and
//!   one is left, else gives up with that cause.
//! - [`Routing::poll_timeout`] says when the setup timer of the current attempt
//!   expires; [`Routing::handle_timeout`] then counts it as cause 102 with
//!   [`LocalReason::SetupTimeout`] (which fails over like any cause). After a
//!   [`Step::Try`] that follows a timeout, the driver cancels the timed-out attempt.
//!
//! The health of a target is asked for through a closure each time a destination is
//! chosen, so a trunk marked down while a call is routing is skipped by that call.
//! `attempt_failed` and `handle_timeout` take it too (the brief's shapes had no such
//! parameter; a failover needs it to skip a dead backup).
//!
//! When several destinations were given up on, the call's cause is that of the last
//! destination actually tried, since it says more than "trunk down" of a skipped
//! backup; only when every destination was skipped is it the last skip's.
//!
//! [`Limits`] counts active calls per rule and admissions per source in a sliding
//! minute, in virtual time.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::cause::{LocalReason, Release};
use crate::route::{Destination, RouteMatch, Select, Target};

/// What the driver knows about a target right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    Up,
    /// Known dead (trunk health check failed, every port of a group busy or out of
    /// service): skipped without sending anything.
    Down,
    /// Not known: tried.
    Unknown,
}

/// One destination tried (or skipped) by a call, for `show calls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub dest_index: usize,
    pub target: Target,
    pub at: Instant,
    /// `None` while in progress, and for the attempt that was answered.
    pub result: Option<Release>,
}

impl std::fmt::Display for Attempt {
    /// `trunk "carrier": 38 network out of order (trunk down)`, or `...: in progress`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Some(r) => write!(f, "{}: {r}", self.target),
            None => write!(f, "{}: in progress or answered", self.target),
        }
    }
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Place the call at `target` (destination `dest_index` of the rule); without
    /// proceeding or alerting by `deadline` the attempt counts as failed with 102.
    Try { dest_index: usize, target: Target, deadline: Instant },
    /// No destination left: release the A side with this.
    GiveUp(Release),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing tried yet.
    Idle,
    /// Waiting for destination `dest`; `timer` is the setup deadline until progress.
    Trying { dest: usize, deadline: Instant, timer: bool },
    Answered { dest: usize },
    Done(Release),
}

/// The routing state of one call. See the module docs.
#[derive(Clone, Debug)]
pub struct Routing {
    dests: Vec<Destination>,
    /// Next destination to consider.
    next: usize,
    attempts: Vec<Attempt>,
    phase: Phase,
    /// Result of the last destination actually tried (not skipped).
    last_tried: Option<Release>,
}

impl Routing {
    pub fn new(m: &RouteMatch) -> Routing {
        Routing::with_destinations(m.destinations.clone())
    }

    pub fn with_destinations(dests: Vec<Destination>) -> Routing {
        Routing { dests, next: 0, attempts: Vec::new(), phase: Phase::Idle, last_tried: None }
    }

    // Getters.

    /// Every destination tried or skipped so far, in order.
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// The destination being tried or answered: its index and target.
    pub fn current(&self) -> Option<(usize, &Target)> {
        match self.phase {
            Phase::Trying { dest, .. } | Phase::Answered { dest } => Some((dest, &self.dests[dest].target)),
            _ => None,
        }
    }

    /// The release the routing gave up with, once it has.
    pub fn outcome(&self) -> Option<Release> {
        match self.phase {
            Phase::Done(r) => Some(r),
            _ => None,
        }
    }

    pub fn is_answered(&self) -> bool {
        matches!(self.phase, Phase::Answered { .. })
    }

    /// When the current attempt's setup timer expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Trying { deadline, timer: true, .. } => Some(deadline),
            _ => None,
        }
    }

    // Inputs.

    /// Starts routing: the first destination that is not down. Called again while an
    /// attempt is in progress it returns that attempt; after giving up, the same
    /// release.
    pub fn next_attempt(&mut self, now: Instant, health: &dyn Fn(&Target) -> TargetState) -> Step {
        match self.phase {
            Phase::Idle => self.advance(now, health),
            Phase::Trying { dest, deadline, .. } => {
                Step::Try { dest_index: dest, target: self.dests[dest].target.clone(), deadline }
            }
            Phase::Answered { dest } => {
                Step::Try { dest_index: dest, target: self.dests[dest].target.clone(), deadline: now }
            }
            Phase::Done(r) => Step::GiveUp(r),
        }
    }

    /// The current attempt reached proceeding or alerting: its setup timer stops.
    pub fn progress(&mut self, _now: Instant) {
        if let Phase::Trying { timer, .. } = &mut self.phase {
            *timer = false;
        }
    }

    /// The current attempt was answered: routing is over.
    pub fn answered(&mut self, _now: Instant) {
        if let Phase::Trying { dest, .. } = self.phase {
            self.phase = Phase::Answered { dest };
        }
    }

    /// The current attempt failed before answer with `release`: fail over if its
    /// destination lists the cause and another destination is left, else give up.
    pub fn attempt_failed(&mut self, now: Instant, release: Release, health: &dyn Fn(&Target) -> TargetState) -> Step {
        let Phase::Trying { dest, .. } = self.phase else {
            // Nothing in progress (or already answered or given up): nothing to fail
            // over from.
            let r = self.outcome().unwrap_or(release);
            self.phase = Phase::Done(r);
            return Step::GiveUp(r);
        };
        if let Some(a) = self.attempts.iter_mut().rev().find(|a| a.dest_index == dest && a.result.is_none()) {
            a.result = Some(release);
        }
        self.last_tried = Some(release);
        if self.dests[dest].failover_on.contains(release.cause) && self.next < self.dests.len() {
            self.advance(now, health)
        } else {
            self.phase = Phase::Done(release);
            Step::GiveUp(release)
        }
    }

    /// Handles the setup timer; `None` if it has not expired (or is not running).
    pub fn handle_timeout(&mut self, now: Instant, health: &dyn Fn(&Target) -> TargetState) -> Option<Step> {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                Some(self.attempt_failed(now, Release::local(LocalReason::SetupTimeout), health))
            }
            _ => None,
        }
    }

    fn advance(&mut self, now: Instant, health: &dyn Fn(&Target) -> TargetState) -> Step {
        let mut last_skip = None;
        while let Some(d) = self.dests.get(self.next) {
            let dest = self.next;
            self.next += 1;
            if health(&d.target) == TargetState::Down {
                let reason = match d.target {
                    Target::Trunk(_) => LocalReason::TrunkDown,
                    Target::Group(_) | Target::Owner => LocalReason::Unavailable,
                };
                let r = Release::local(reason);
                self.attempts.push(Attempt { dest_index: dest, target: d.target.clone(), at: now, result: Some(r) });
                last_skip = Some(r);
                continue;
            }
            let deadline = now.checked_add(d.setup_timeout).unwrap_or(now);
            self.attempts.push(Attempt { dest_index: dest, target: d.target.clone(), at: now, result: None });
            self.phase = Phase::Trying { dest, deadline, timer: true };
            return Step::Try { dest_index: dest, target: d.target.clone(), deadline };
        }
        let r = self.last_tried.or(last_skip).unwrap_or(Release::local(LocalReason::NoRoute));
        self.phase = Phase::Done(r);
        Step::GiveUp(r)
    }
}

/// Length of the calls-per-minute window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Call limits, in virtual time: active calls per rule (`max_calls`) and admissions
/// per source in a sliding minute (`calls_per_minute`). Whether an emergency call is
/// subject to them is the caller's decision (it should not be).
#[derive(Clone, Debug, Default)]
pub struct Limits {
    active: BTreeMap<usize, u32>,
    trunk_active: BTreeMap<String, u32>,
    /// Admission instants within the last [`RATE_WINDOW`], oldest first; at most
    /// `per_minute` per source.
    admitted: BTreeMap<String, VecDeque<Instant>>,
}

impl Limits {
    pub fn new() -> Limits {
        Limits::default()
    }

    /// Takes one call slot of `rule` if fewer than `max` are in use (`None`: no limit,
    /// still counted). Pair every `true` with one [`Limits::release`].
    pub fn try_acquire(&mut self, rule: usize, max: Option<u32>) -> bool {
        let n = self.active.entry(rule).or_insert(0);
        if max.is_some_and(|m| *n >= m) {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a slot taken by [`Limits::try_acquire`]; extra releases are ignored.
    pub fn release(&mut self, rule: usize) {
        if let Some(n) = self.active.get_mut(&rule) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.active.remove(&rule);
            }
        }
    }

    /// Forgets the per-rule counts (the rule numbers changed); trunk counts
    /// and admission rates are kept.
    pub fn forget_rules(&mut self) {
        self.active.clear();
    }

    /// Calls active through `rule`.
    pub fn active(&self, rule: usize) -> u32 {
        self.active.get(&rule).copied().unwrap_or(0)
    }

    /// [`Limits::try_acquire`] for a trunk's `max_calls` (both directions count).
    pub fn try_acquire_trunk(&mut self, trunk: &str, max: Option<u32>) -> bool {
        let n = match self.trunk_active.get_mut(trunk) {
            Some(n) => n,
            None => self.trunk_active.entry(trunk.to_string()).or_insert(0),
        };
        if max.is_some_and(|m| *n >= m) {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives back a slot taken by [`Limits::try_acquire_trunk`]; extra releases are
    /// ignored.
    pub fn release_trunk(&mut self, trunk: &str) {
        if let Some(n) = self.trunk_active.get_mut(trunk) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.trunk_active.remove(trunk);
            }
        }
    }

    /// Calls active on `trunk`.
    pub fn trunk_active(&self, trunk: &str) -> u32 {
        self.trunk_active.get(trunk).copied().unwrap_or(0)
    }

    /// Admits a new call from `source` if fewer than `per_minute` were admitted in the
    /// last [`RATE_WINDOW`] (0 = no limit). Refused calls do not count.
    pub fn admit(&mut self, now: Instant, source: &str, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let q = match self.admitted.get_mut(source) {
            Some(q) => q,
            None => self.admitted.entry(source.to_string()).or_default(),
        };
        while q.front().is_some_and(|&t| t.checked_add(RATE_WINDOW).is_some_and(|end| end <= now)) {
            q.pop_front();
        }
        if q.len() >= per_minute as usize {
            return false;
        }
        q.push_back(now);
        true
    }

    /// Drops windows with nothing left in them (call now and then to bound memory
    /// when sources come and go).
    pub fn expire(&mut self, now: Instant) {
        self.admitted.retain(|_, q| {
            while q.front().is_some_and(|&t| t.checked_add(RATE_WINDOW).is_some_and(|end| end <= now)) {
                q.pop_front();
            }
            !q.is_empty()
        });
    }
}

/// Picks the port of a group destination ([`Select`]), remembering the last pick of
/// each group for round-robin.
#[derive(Clone, Debug, Default)]
pub struct Hunt {
    last: BTreeMap<String, usize>,
}

impl Hunt {
    pub fn new() -> Hunt {
        Hunt::default()
    }

    /// The port to ring among `ports` (a group's FXS or FXO ports, in configured
    /// order) for which `idle` holds: the first one, or with round-robin the first
    /// after the port picked last time for `group`, wrapping. `None` if all are busy.
    pub fn pick(&mut self, group: &str, ports: &[usize], select: Select, idle: &dyn Fn(usize) -> bool) -> Option<usize> {
        let start = match select {
            Select::First => 0,
            Select::RoundRobin => match self.last.get(group) {
                Some(last) => ports.iter().position(|p| p == last).map_or(0, |i| i + 1),
                None => 0,
            },
        };
        let n = ports.len();
        let port = (0..n).map(|k| ports[(start + k) % n]).find(|&p| idle(p))?;
        if select == Select::RoundRobin {
            match self.last.get_mut(group) {
                Some(l) => *l = port,
                None => {
                    self.last.insert(group.to_string(), port);
                }
            }
        }
        Some(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::{Cause, CauseSet, Location};
    use crate::route::DEFAULT_FAILOVER_ON;

    fn dest(target: Target) -> Destination {
        Destination {
            target,
            select: Select::First,
            failover_on: DEFAULT_FAILOVER_ON.iter().filter_map(|&v| Cause::new(v)).collect(),
            setup_timeout: Duration::from_secs(3),
        }
    }

    fn trunk(n: &str) -> Target {
        Target::Trunk(n.into())
    }

    fn two_trunks() -> Routing {
        Routing::with_destinations(vec![dest(trunk("carrier")), dest(trunk("backup"))])
    }

    fn all_up(_: &Target) -> TargetState {
        TargetState::Up
    }

    fn peer(v: u8) -> Release {
        Release::remote(Cause::new(v).unwrap(), Location::PublicRemote)
    }

    fn tried(s: &Step) -> (usize, Target) {
        match s {
            Step::Try { dest_index, target, .. } => (*dest_index, target.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_attempt_has_a_setup_deadline() {
        let t0 = Instant::now();
        let mut r = two_trunks();
        assert_eq!(r.poll_timeout(), None);
        let s = r.next_attempt(t0, &all_up);
        assert_eq!(s, Step::Try { dest_index: 0, target: trunk("carrier"), deadline: t0 + Duration::from_secs(3) });
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(3)));
        assert_eq!(r.next_attempt(t0 + Duration::from_secs(1), &all_up), s, "idempotent while trying");
        assert_eq!(r.attempts().len(), 1);
        assert_eq!(r.current(), Some((0, &trunk("carrier"))));
    }

    #[test]
    fn fails_over_on_each_default_cause() {
        for &v in &DEFAULT_FAILOVER_ON {
            let t0 = Instant::now();
            let mut r = two_trunks();
            r.next_attempt(t0, &all_up);
            let t1 = t0 + Duration::from_millis(200);
            let s = r.attempt_failed(t1, peer(v), &all_up);
            assert_eq!(s, Step::Try { dest_index: 1, target: trunk("backup"), deadline: t1 + Duration::from_secs(3) }, "cause {v}");
            assert_eq!(r.attempts()[0].result, Some(peer(v)));
            assert_eq!(r.attempts()[1].result, None);
        }
    }

    #[test]
    fn no_failover_on_busy_unallocated_or_rejected() {
        for v in [17, 1, 21, 16, 19] {
            let t0 = Instant::now();
            let mut r = two_trunks();
            r.next_attempt(t0, &all_up);
            assert_eq!(r.attempt_failed(t0, peer(v), &all_up), Step::GiveUp(peer(v)), "cause {v}");
            assert_eq!(r.attempts().len(), 1);
            assert_eq!(r.outcome(), Some(peer(v)));
            assert_eq!(r.poll_timeout(), None);
            assert_eq!(r.next_attempt(t0, &all_up), Step::GiveUp(peer(v)), "stays given up");
        }
    }

    #[test]
    fn the_last_destination_gives_up_with_its_cause() {
        let t0 = Instant::now();
        let mut r = two_trunks();
        r.next_attempt(t0, &all_up);
        r.attempt_failed(t0, peer(34), &all_up);
        assert_eq!(r.attempt_failed(t0, peer(41), &all_up), Step::GiveUp(peer(41)));
        let results: Vec<_> = r.attempts().iter().map(|a| a.result.unwrap().cause.get()).collect();
        assert_eq!(results, [34, 41]);
    }

    #[test]
    fn configured_failover_causes_replace_the_defaults() {
        let mut d = dest(trunk("carrier"));
        d.failover_on = [Cause::USER_BUSY].into_iter().collect();
        let mut r = Routing::with_destinations(vec![d, dest(trunk("backup"))]);
        let t0 = Instant::now();
        r.next_attempt(t0, &all_up);
        assert_eq!(tried(&r.attempt_failed(t0, peer(17), &all_up)).0, 1, "busy fails over when listed");

        let mut d = dest(trunk("carrier"));
        d.failover_on = CauseSet::new();
        let mut r = Routing::with_destinations(vec![d, dest(trunk("backup"))]);
        r.next_attempt(t0, &all_up);
        assert_eq!(r.attempt_failed(t0, peer(34), &all_up), Step::GiveUp(peer(34)), "nothing listed");
    }

    #[test]
    fn a_down_trunk_is_skipped_and_recorded() {
        let t0 = Instant::now();
        let mut r = Routing::with_destinations(vec![dest(trunk("carrier")), dest(Target::Group("pstn".into()))]);
        let health = |t: &Target| if *t == trunk("carrier") { TargetState::Down } else { TargetState::Unknown };
        let s = r.next_attempt(t0, &health);
        assert_eq!(tried(&s), (1, Target::Group("pstn".into())));
        let a = &r.attempts()[0];
        assert_eq!((a.dest_index, &a.target, a.at), (0, &trunk("carrier"), t0));
        let rel = a.result.unwrap();
        assert_eq!((rel.cause, rel.local), (Cause::NETWORK_OUT_OF_ORDER, Some(LocalReason::TrunkDown)));
        assert_eq!(rel.to_string(), "38 network out of order (trunk down)");
        assert_eq!(r.attempts()[0].to_string(), "trunk \"carrier\": 38 network out of order (trunk down)");
        assert_eq!(r.attempts()[1].to_string(), "group \"pstn\": in progress or answered");
    }

    #[test]
    fn everything_down_gives_up_with_trunk_down() {
        let t0 = Instant::now();
        let mut r = two_trunks();
        let s = r.next_attempt(t0, &|_: &Target| TargetState::Down);
        assert_eq!(s, Step::GiveUp(Release::local(LocalReason::TrunkDown)));
        assert_eq!(r.attempts().len(), 2);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn a_down_group_is_skipped_as_unavailable() {
        let t0 = Instant::now();
        let mut r = Routing::with_destinations(vec![dest(Target::Owner), dest(trunk("carrier"))]);
        let health = |t: &Target| if *t == Target::Owner { TargetState::Down } else { TargetState::Up };
        assert_eq!(tried(&r.next_attempt(t0, &health)).0, 1);
        assert_eq!(r.attempts()[0].result, Some(Release::local(LocalReason::Unavailable)));
    }

    #[test]
    fn failover_skips_a_backup_that_went_down_and_keeps_the_real_cause() {
        let t0 = Instant::now();
        let mut r = two_trunks();
        r.next_attempt(t0, &all_up);
        let down_now = |t: &Target| if *t == trunk("backup") { TargetState::Down } else { TargetState::Up };
        assert_eq!(r.attempt_failed(t0, peer(34), &down_now), Step::GiveUp(peer(34)));
        assert_eq!(r.attempts()[1].result, Some(Release::local(LocalReason::TrunkDown)));
    }

    #[test]
    fn setup_timeout_counts_as_102_and_fails_over() {
        let t0 = Instant::now();
        let mut r = two_trunks();
        r.next_attempt(t0, &all_up);
        let deadline = r.poll_timeout().unwrap();
        assert_eq!(r.handle_timeout(deadline - Duration::from_millis(1), &all_up), None);
        let s = r.handle_timeout(deadline, &all_up).unwrap();
        assert_eq!(s, Step::Try { dest_index: 1, target: trunk("backup"), deadline: deadline + Duration::from_secs(3) });
        let rel = r.attempts()[0].result.unwrap();
        assert_eq!((rel.cause, rel.local), (Cause::RECOVERY_ON_TIMER_EXPIRY, Some(LocalReason::SetupTimeout)));
        assert_eq!(r.poll_timeout(), Some(deadline + Duration::from_secs(3)));
        // The backup times out too: give up with 102.
        let s = r.handle_timeout(deadline + Duration::from_secs(3), &all_up).unwrap();
        assert_eq!(s, Step::GiveUp(Release::local(LocalReason::SetupTimeout)));
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_timeout(deadline + Duration::from_secs(60), &all_up), None);
    }

    #[test]
    fn setup_timeout_does_not_fail_over_when_102_is_not_listed() {
        let mut d = dest(trunk("carrier"));
        d.failover_on = [Cause::NO_CIRCUIT_AVAILABLE].into_iter().collect();
        d.setup_timeout = Duration::from_millis(500);
        let mut r = Routing::with_destinations(vec![d, dest(trunk("backup"))]);
        let t0 = Instant::now();
        r.next_attempt(t0, &all_up);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        let s = r.handle_timeout(t0 + Duration::from_millis(500), &all_up).unwrap();
        assert_eq!(s, Step::GiveUp(Release::local(LocalReason::SetupTimeout)));
    }

    #[test]
    fn progress_stops_the_setup_timer_but_failover_still_applies() {
        let t0 = Instant::now();
        let mut r = two_trunks();
        r.next_attempt(t0, &all_up);
        r.progress(t0 + Duration::from_millis(100));
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_timeout(t0 + Duration::from_secs(10), &all_up), None);
        // A 503 after 180 Ringing still fails over (before answer).
        assert_eq!(tried(&r.attempt_failed(t0 + Duration::from_secs(10), peer(41), &all_up)).0, 1);
    }

    #[test]
    fn answered_ends_routing() {
        let t0 = Instant::now();
        let mut r = two_trunks();
        r.next_attempt(t0, &all_up);
        r.answered(t0 + Duration::from_secs(1));
        assert!(r.is_answered());
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_timeout(t0 + Duration::from_secs(5), &all_up), None);
        assert_eq!(r.attempts()[0].result, None);
        assert_eq!(r.current(), Some((0, &trunk("carrier"))));
        // A failure after answer is not a routing failure: no failover.
        assert_eq!(r.attempt_failed(t0, peer(41), &all_up), Step::GiveUp(peer(41)));
    }

    #[test]
    fn no_destinations_is_no_route() {
        let mut r = Routing::with_destinations(vec![]);
        assert_eq!(r.next_attempt(Instant::now(), &all_up), Step::GiveUp(Release::local(LocalReason::NoRoute)));
    }

    #[test]
    fn rule_limits_count_active_calls() {
        let mut l = Limits::new();
        assert!(l.try_acquire(3, Some(2)));
        assert!(l.try_acquire(3, Some(2)));
        assert!(!l.try_acquire(3, Some(2)), "third call over max_calls = 2");
        assert!(l.try_acquire(4, Some(2)), "other rules are separate");
        assert_eq!(l.active(3), 2);
        l.release(3);
        assert!(l.try_acquire(3, Some(2)));
        l.release(3);
        l.release(3);
        l.release(3);
        assert_eq!(l.active(3), 0, "extra releases are ignored");
        for _ in 0..100 {
            assert!(l.try_acquire(5, None));
        }
        assert_eq!(l.active(5), 100);
    }

    #[test]
    fn calls_per_minute_is_a_sliding_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut l = Limits::new();
        assert!(l.admit(t0, "carrier", 3));
        assert!(l.admit(t0 + s(10), "carrier", 3));
        assert!(l.admit(t0 + s(20), "carrier", 3));
        assert!(!l.admit(t0 + s(30), "carrier", 3), "fourth within a minute");
        assert!(l.admit(t0 + s(30), "phones", 3), "per source");
        assert!(!l.admit(t0 + s(59), "carrier", 3));
        assert!(l.admit(t0 + s(60), "carrier", 3), "the first one left the window");
        assert!(!l.admit(t0 + s(65), "carrier", 3), "refusals did not count, but 10, 20, 60 are in");
        assert!(l.admit(t0 + s(70), "carrier", 3));
        assert!(l.admit(t0, "x", 0), "0 = no limit");
        l.expire(t0 + s(200));
        assert!(l.admitted.is_empty());
    }

    #[test]
    fn trunk_limits_count_active_calls() {
        let mut l = Limits::new();
        assert!(l.try_acquire_trunk("carrier", Some(1)));
        assert!(!l.try_acquire_trunk("carrier", Some(1)));
        assert!(l.try_acquire_trunk("backup", Some(1)));
        assert_eq!(l.trunk_active("carrier"), 1);
        l.release_trunk("carrier");
        l.release_trunk("carrier");
        assert_eq!(l.trunk_active("carrier"), 0);
        assert!(l.try_acquire_trunk("carrier", Some(1)));
        assert!(l.try_acquire_trunk("x", None));
    }

    #[test]
    fn hunting_first_and_round_robin() {
        let mut h = Hunt::new();
        let ports = [3, 1, 2];
        let all = |_: usize| true;
        assert_eq!(h.pick("g", &ports, Select::First, &all), Some(3));
        assert_eq!(h.pick("g", &ports, Select::First, &all), Some(3), "first: always from the top");
        assert_eq!(h.pick("g", &ports, Select::First, &|p| p != 3), Some(1));
        assert_eq!(h.pick("g", &ports, Select::RoundRobin, &all), Some(3));
        assert_eq!(h.pick("g", &ports, Select::RoundRobin, &all), Some(1));
        assert_eq!(h.pick("g", &ports, Select::RoundRobin, &|p| p != 2), Some(3), "busy 2 skipped, wraps");
        assert_eq!(h.pick("h", &ports, Select::RoundRobin, &all), Some(3), "per group");
        assert_eq!(h.pick("g", &ports, Select::RoundRobin, &|_| false), None);
        assert_eq!(h.pick("g", &[], Select::RoundRobin, &all), None);
        // The last port left the group (config change): start from the top.
        assert_eq!(h.pick("g", &[5, 6], Select::RoundRobin, &all), Some(5));
    }
}
