//! Per-source admission at the SIP socket, before any parsing work.
//!
//! Every datagram's source address is looked up here first
//! ([`Admission::check`]); only an admitted datagram reaches the parser.
//! What it enforces, per source IP address (ports are free to change, so a
//! flooder cannot escape by rotating them):
//!
//! - a request rate (token bucket, `rate` per second, `burst` deep);
//! - a failure rate: datagrams that were not SIP, and requests we refused
//!   (4xx-6xx), as reported by the caller ([`Admission::report_failure`]);
//! - a ban when either limit is broken: no datagram of the source is
//!   looked at and nothing is sent to it ([`Admission::may_send`]) until it
//!   ends; the ban doubles on every repetition up to `ban_max` (fail2ban's
//!   `bantime.increment`, built in), and the repetition count is forgotten
//!   after `forget_after` of good behaviour;
//! - a global budget for all untrusted sources together, so many sources
//!   (127.0.0.0/8 has sixteen million) cannot add up to a flood.
//!
//! Trusted sources (the trunk proxies, given as a set of addresses) have
//! their own budget and are never rate limited, banned or counted against
//! the strangers' budget: the trunk is never starved by strangers.
//!
//! Memory is bounded: at most `max_sources` sources are tracked. When the
//! table is full, idle entries are swept; if it is still full a new source
//! shares one overflow bucket (and so one small budget) with every other
//! untracked source. Each call costs one hash lookup; the sweep runs at most
//! once per second and visits the table once.
//!
//! Sans-IO: every entry point takes `now`; tests run in virtual time.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The limits; [`AdmissionConfig::default`] suits a CPE on a LAN.
#[derive(Clone, Debug, PartialEq)]
pub struct AdmissionConfig {
    /// Off: everything is admitted and nothing is counted.
    pub enabled: bool,
    /// Datagrams per second one untrusted source may send (sustained).
    pub rate: u32,
    /// Datagrams one untrusted source may send in a burst.
    pub burst: u32,
    /// Failures (non-SIP datagrams, refused requests) per `failure_window`
    /// that ban a source.
    pub max_failures: u32,
    pub failure_window: Duration,
    /// Datagrams dropped for rate within `failure_window` that ban a source.
    pub max_rate_drops: u32,
    /// First ban; doubled on every repetition.
    pub ban_base: Duration,
    pub ban_max: Duration,
    /// A source's repetition count is forgotten after this long unbanned.
    pub forget_after: Duration,
    /// Datagrams per second from all untrusted sources together.
    pub global_rate: u32,
    /// Sources tracked at most (each costs about 100 bytes).
    pub max_sources: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            enabled: true,
            rate: 20,
            burst: 40,
            max_failures: 10,
            failure_window: Duration::from_secs(10),
            max_rate_drops: 20,
            ban_base: Duration::from_secs(60),
            ban_max: Duration::from_secs(24 * 3600),
            forget_after: Duration::from_secs(3600),
            global_rate: 200,
            max_sources: 4096,
        }
    }
}

/// What to do with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Parse it.
    Admit,
    /// Drop it unread.
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The source is banned.
    Banned,
    /// The source went over its own rate.
    SourceRate,
    /// All untrusted sources together went over the global rate.
    GlobalRate,
}

/// Counters for the status page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    pub admitted: u64,
    pub admitted_trusted: u64,
    pub dropped_banned: u64,
    pub dropped_source_rate: u64,
    pub dropped_global_rate: u64,
    pub failures: u64,
    /// Bans imposed so far (a repeated ban counts again).
    pub bans: u64,
    /// Responses not sent because their destination is banned.
    pub suppressed_sends: u64,
    /// Sources in the table now, and sources that found it full.
    pub tracked: usize,
    pub untracked: u64,
}

/// One banned source, for the status page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    pub addr: IpAddr,
    pub remaining: Duration,
    /// How many times the source has been banned (1 = first ban).
    pub count: u32,
}

/// A token bucket in milli-tokens, so integer arithmetic keeps fractions.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli: u64,
    at: Instant,
}

impl Bucket {
    fn full(now: Instant, burst: u32) -> Self {
        Bucket { milli: burst as u64 * 1000, at: now }
    }

    /// Refills at `rate`/s up to `burst`, then takes one token if there is one.
    fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let dt = now.saturating_duration_since(self.at);
        // rate tokens/s = rate milli-tokens/ms.
        let add = (dt.as_micros() as u64).saturating_mul(rate as u64) / 1000;
        if add > 0 {
            self.milli = (self.milli.saturating_add(add)).min(burst as u64 * 1000);
            self.at = now;
        }
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// A count of events in a fixed window.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    fn bump(&mut self, now: Instant, len: Duration) -> u32 {
        if now.saturating_duration_since(self.start) >= len {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

#[derive(Clone, Debug)]
struct Source {
    bucket: Bucket,
    failures: Window,
    rate_drops: Window,
    banned_until: Option<Instant>,
    /// Bans so far (drives the doubling).
    offences: u32,
    last_seen: Instant,
}

impl Source {
    fn new(now: Instant, burst: u32) -> Self {
        Source {
            bucket: Bucket::full(now, burst),
            failures: Window { start: now, count: 0 },
            rate_drops: Window { start: now, count: 0 },
            banned_until: None,
            offences: 0,
            last_seen: now,
        }
    }

    fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|t| now < t)
    }
}

/// The admission state; see the module docs.
pub struct Admission {
    cfg: AdmissionConfig,
    trusted: HashSet<IpAddr>,
    /// Trusted networks (address, prefix length), e.g. a trunk's `accept_from`.
    trusted_nets: Vec<(IpAddr, u8)>,
    sources: HashMap<IpAddr, Source>,
    /// Shared by every source that found the table full.
    overflow: Bucket,
    global: Bucket,
    last_sweep: Instant,
    stats: AdmissionStats,
    /// Sources banned since the last [`Admission::poll_banned`] (for the
    /// owner to act on: log, drop state kept for them).
    newly_banned: Vec<IpAddr>,
}

impl Admission {
    pub fn new(now: Instant, cfg: AdmissionConfig, trusted: impl IntoIterator<Item = IpAddr>) -> Self {
        let global = Bucket::full(now, cfg.global_rate.max(1));
        let overflow = Bucket::full(now, cfg.burst.max(1));
        Admission {
            trusted: trusted.into_iter().map(canonical).collect(),
            trusted_nets: Vec::new(),
            sources: HashMap::with_capacity(cfg.max_sources.min(1024)),
            overflow,
            global,
            last_sweep: now,
            stats: AdmissionStats::default(),
            newly_banned: Vec::new(),
            cfg,
        }
    }

    // ---------------------------------------------------------------- getters

    pub fn config(&self) -> &AdmissionConfig {
        &self.cfg
    }

    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        self.trusted.contains(&addr) || self.trusted_nets.iter().any(|&(net, len)| in_net(addr, net, len))
    }

    pub fn stats(&self) -> AdmissionStats {
        AdmissionStats { tracked: self.sources.len(), ..self.stats }
    }

    /// Sources banned at `now`, longest remaining first, at most `limit`.
    pub fn bans(&self, now: Instant, limit: usize) -> Vec<Ban> {
        let mut v: Vec<Ban> = self
            .sources
            .iter()
            .filter_map(|(addr, s)| {
                let until = s.banned_until.filter(|t| now < *t)?;
                Some(Ban { addr: *addr, remaining: until - now, count: s.offences })
            })
            .collect();
        v.sort_by(|a, b| b.remaining.cmp(&a.remaining).then(a.addr.cmp(&b.addr)));
        v.truncate(limit);
        v
    }

    /// Whether anything may be sent to `addr`: not to a banned source.
    /// Counts what it refuses.
    pub fn may_send(&mut self, now: Instant, addr: IpAddr) -> bool {
        if !self.cfg.enabled {
            return true;
        }
        let addr = canonical(addr);
        let banned = self.sources.get(&addr).is_some_and(|s| s.banned(now));
        if banned {
            self.stats.suppressed_sends += 1;
        }
        !banned
    }

    // --------------------------------------------------------------- handlers

    /// Decides on one received datagram from `from`, before it is parsed.
    pub fn check(&mut self, now: Instant, from: IpAddr) -> Verdict {
        if !self.cfg.enabled {
            self.stats.admitted += 1;
            return Verdict::Admit;
        }
        let from = canonical(from);
        if self.is_trusted(from) {
            self.stats.admitted_trusted += 1;
            return Verdict::Admit;
        }
        self.maybe_sweep(now);
        let cfg = &self.cfg;
        let verdict = match source(&mut self.sources, cfg, now, from) {
            Some(s) => {
                s.last_seen = now;
                if s.banned(now) {
                    Verdict::Drop(DropReason::Banned)
                } else if !s.bucket.take(now, cfg.rate, cfg.burst) {
                    if s.rate_drops.bump(now, cfg.failure_window) >= cfg.max_rate_drops {
                        ban(s, now, cfg, &mut self.stats);
                        self.newly_banned.push(from);
                    }
                    Verdict::Drop(DropReason::SourceRate)
                } else {
                    Verdict::Admit
                }
            }
            None => {
                self.stats.untracked += 1;
                if self.overflow.take(now, cfg.rate, cfg.burst) {
                    Verdict::Admit
                } else {
                    Verdict::Drop(DropReason::SourceRate)
                }
            }
        };
        // The global budget is spent only by what the source's own limits let through.
        let verdict = match verdict {
            Verdict::Admit if !self.global.take(now, self.cfg.global_rate, self.cfg.global_rate.max(1)) => {
                Verdict::Drop(DropReason::GlobalRate)
            }
            v => v,
        };
        match verdict {
            Verdict::Admit => self.stats.admitted += 1,
            Verdict::Drop(DropReason::Banned) => self.stats.dropped_banned += 1,
            Verdict::Drop(DropReason::SourceRate) => self.stats.dropped_source_rate += 1,
            Verdict::Drop(DropReason::GlobalRate) => self.stats.dropped_global_rate += 1,
        }
        verdict
    }

    /// Reports that a datagram from `from` was not SIP, or a request from it
    /// was refused. Trusted sources are not counted.
    pub fn report_failure(&mut self, now: Instant, from: IpAddr) {
        if !self.cfg.enabled {
            return;
        }
        let from = canonical(from);
        if self.is_trusted(from) {
            return;
        }
        self.stats.failures += 1;
        let cfg = &self.cfg;
        if let Some(s) = source(&mut self.sources, cfg, now, from) {
            if s.banned(now) {
                return;
            }
            if s.failures.bump(now, cfg.failure_window) >= cfg.max_failures {
                ban(s, now, cfg, &mut self.stats);
                self.newly_banned.push(from);
            }
        }
    }

    /// A source banned since the last call, once per ban.
    pub fn poll_banned(&mut self) -> Option<IpAddr> {
        self.newly_banned.pop()
    }

    // --------------------------------------------------------------- mutators

    /// Replaces the trusted set (the trunk list changed).
    pub fn set_trusted(&mut self, trusted: impl IntoIterator<Item = IpAddr>) {
        self.trusted = trusted.into_iter().map(canonical).collect();
        let trusted = &self.trusted;
        self.sources.retain(|a, _| !trusted.contains(a));
    }

    /// Adds trusted networks (`len` bits of `net`), e.g. the addresses a
    /// trunk accepts requests from.
    pub fn trust_networks(&mut self, nets: impl IntoIterator<Item = (IpAddr, u8)>) {
        self.trusted_nets.extend(nets.into_iter().map(|(a, l)| (canonical(a), l)));
        let (set, nets) = (&self.trusted, &self.trusted_nets);
        self.sources.retain(|a, _| !set.contains(a) && !nets.iter().any(|&(n, l)| in_net(*a, n, l)));
    }

    /// Lifts every ban (the installer's "unban all").
    pub fn clear_bans(&mut self) {
        self.sources.clear();
    }

    // --------------------------------------------------------------- internal

    /// Forgets sources that are neither banned nor remembered for a repeat
    /// offence and have been quiet for a failure window; at most once a second.
    fn maybe_sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        let cfg = &self.cfg;
        self.sources.retain(|_, s| {
            let quiet = now.saturating_duration_since(s.last_seen);
            if s.banned(now) {
                return true;
            }
            if s.offences > 0 {
                // Remember a past offender for `forget_after` after its ban.
                let since = s.banned_until.map_or(quiet, |t| now.saturating_duration_since(t));
                return since < cfg.forget_after;
            }
            quiet < cfg.failure_window
        });
        if self.sources.capacity() > 2 * self.sources.len().max(1024) {
            self.sources.shrink_to(self.sources.len().max(1024));
        }
    }
}

/// The source's entry, made if there is room.
fn source<'a>(sources: &'a mut HashMap<IpAddr, Source>, cfg: &AdmissionConfig, now: Instant, addr: IpAddr) -> Option<&'a mut Source> {
    if !sources.contains_key(&addr) {
        if sources.len() >= cfg.max_sources {
            return None;
        }
        sources.insert(addr, Source::new(now, cfg.burst));
    }
    sources.get_mut(&addr)
}

fn ban(s: &mut Source, now: Instant, cfg: &AdmissionConfig, stats: &mut AdmissionStats) {
    // A repeat offence doubles the ban, unless it is long forgiven.
    if s.banned_until.is_some_and(|t| now.saturating_duration_since(t) >= cfg.forget_after) {
        s.offences = 0;
    }
    let shift = s.offences.min(20);
    let len = cfg.ban_base.saturating_mul(1u32 << shift).min(cfg.ban_max);
    s.offences = s.offences.saturating_add(1);
    s.banned_until = Some(now + len);
    s.failures = Window { start: now, count: 0 };
    s.rate_drops = Window { start: now, count: 0 };
    stats.bans += 1;
}

/// Whether a datagram could be SIP at all: a request line's method or
/// "SIP/2.0" first (a keep-alive CRLF counts too). Anything else is a failure
/// of its source, found without parsing.
pub fn plausible_sip(data: &[u8]) -> bool {
    if data.iter().all(|b| matches!(b, b'\r' | b'\n')) && !data.is_empty() {
        return true; // RFC 5626 keep-alive
    }
    let head = &data[..data.len().min(16)];
    let token = head.iter().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~' | b'/')).count();
    token >= 3 && head.get(token).is_some_and(|b| *b == b' ')
}

/// The status code of an outgoing response (to report refusals), without parsing it.
pub fn response_status(payload: &[u8]) -> Option<u16> {
    let rest = payload.strip_prefix(b"SIP/2.0 ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(code.iter().fold(0u16, |a, d| a * 10 + (d - b'0') as u16))
}

/// Whether `a` is in `net`/`len` (same family only).
fn in_net(a: IpAddr, net: IpAddr, len: u8) -> bool {
    let bits = |x: IpAddr| -> (u128, u32) {
        match x {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        }
    };
    let ((a, fa), (n, fn_)) = (bits(a), bits(net));
    if fa != fn_ {
        return false;
    }
    let len = u32::from(len).min(fa);
    if len == 0 {
        return true;
    }
    let shift = fa - len;
    (a >> shift) == (n >> shift)
}

/// An IPv4-mapped IPv6 address is the IPv4 source it stands for.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        a => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg() -> AdmissionConfig {
        AdmissionConfig { rate: 10, burst: 20, global_rate: 100, ..AdmissionConfig::default() }
    }

    /// Sends `n` datagrams from `from`, evenly over `over`; returns how many were admitted.
    fn send(a: &mut Admission, t: &mut Instant, from: IpAddr, n: u32, over: Duration) -> u32 {
        let step = over / n.max(1);
        let mut admitted = 0;
        for _ in 0..n {
            if a.check(*t, from) == Verdict::Admit {
                admitted += 1;
            }
            *t += step;
        }
        admitted
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0, cfg(), []);
        let mut t = t0;
        // 100 at once: the burst of 20 passes.
        assert_eq!(send(&mut a, &mut t, ip("10.0.0.1"), 19, Duration::ZERO), 19);
        assert_eq!(a.check(t, ip("10.0.0.1")), Verdict::Admit);
        assert_eq!(a.check(t, ip("10.0.0.1")), Verdict::Drop(DropReason::SourceRate));
        // After a second, 10 more.
        t += Duration::from_secs(1);
        assert_eq!(send(&mut a, &mut t, ip("10.0.0.1"), 15, Duration::ZERO), 10);
    }

    #[test]
    fn well_behaved_source_is_never_limited() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0, cfg(), []);
        let mut t = t0;
        // 9/s for a minute, under the 10/s rate.
        assert_eq!(send(&mut a, &mut t, ip("10.0.0.2"), 540, Duration::from_secs(60)), 540);
        assert_eq!(a.stats().bans, 0);
    }

    #[test]
    fn flooder_is_banned_and_ban_doubles_on_repeat() {
        let t0 = Instant::now();
        let c = AdmissionConfig { ban_base: Duration::from_secs(60), ..cfg() };
        let mut a = Admission::new(t0, c, []);
        let mut t = t0;
        let f = ip("10.0.0.3");
        // 1,000/s for a second: burst admitted, then 20 rate drops -> banned.
        let admitted = send(&mut a, &mut t, f, 1000, Duration::from_secs(1));
        assert!(admitted <= 30, "{admitted}");
        assert_eq!(a.stats().bans, 1);
        assert_eq!((a.poll_banned(), a.poll_banned()), (Some(f), None), "reported once");
        let b = a.bans(t, 10);
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].addr, b[0].count), (f, 1));
        assert!(b[0].remaining > Duration::from_secs(58), "{:?}", b[0].remaining);
        assert_eq!(a.check(t, f), Verdict::Drop(DropReason::Banned));
        assert!(!a.may_send(t, f));
        assert_eq!(a.stats().suppressed_sends, 1);
        // The ban ends after 60 s; the next flood bans for 120 s.
        t = t0 + Duration::from_secs(62);
        assert_eq!(a.check(t, f), Verdict::Admit);
        assert!(a.may_send(t, f));
        send(&mut a, &mut t, f, 1000, Duration::from_secs(1));
        let b = a.bans(t, 10);
        assert_eq!(b[0].count, 2);
        assert!(b[0].remaining > Duration::from_secs(118) && b[0].remaining <= Duration::from_secs(120));
        // Third: 240 s; capped at ban_max eventually.
        t += Duration::from_secs(121);
        send(&mut a, &mut t, f, 1000, Duration::from_secs(1));
        assert!(a.bans(t, 1)[0].remaining > Duration::from_secs(238));
    }

    #[test]
    fn ban_is_capped() {
        let t0 = Instant::now();
        let c = AdmissionConfig { ban_base: Duration::from_secs(60), ban_max: Duration::from_secs(300), ..cfg() };
        let mut a = Admission::new(t0, c, []);
        let mut t = t0;
        let f = ip("10.0.0.4");
        for _ in 0..6 {
            send(&mut a, &mut t, f, 1000, Duration::from_secs(1));
            let b = a.bans(t, 1)[0];
            assert!(b.remaining <= Duration::from_secs(300));
            t += b.remaining + Duration::from_secs(1);
        }
        assert_eq!(a.stats().bans, 6);
    }

    #[test]
    fn repeated_failures_ban_and_repeat_is_forgotten_later() {
        let t0 = Instant::now();
        let c = AdmissionConfig { max_failures: 5, forget_after: Duration::from_secs(600), ..cfg() };
        let mut a = Admission::new(t0, c, []);
        let mut t = t0;
        let s = ip("10.0.0.5");
        for i in 0..5 {
            assert_eq!(a.check(t, s), Verdict::Admit, "request {i}");
            a.report_failure(t, s);
            t += Duration::from_millis(500);
        }
        assert_eq!(a.check(t, s), Verdict::Drop(DropReason::Banned));
        assert_eq!(a.stats().failures, 5);
        assert_eq!(a.poll_banned(), Some(s));
        // Four failures in a window do nothing (after the ban ended).
        t += Duration::from_secs(61);
        for _ in 0..4 {
            assert_eq!(a.check(t, s), Verdict::Admit);
            a.report_failure(t, s);
            t += Duration::from_secs(3);
        }
        assert!(a.bans(t, 1).is_empty());
        // After forget_after unbanned, the next ban is a first one again.
        t += Duration::from_secs(700);
        for _ in 0..5 {
            a.check(t, s);
            a.report_failure(t, s);
        }
        assert_eq!(a.bans(t, 1)[0].count, 1);
    }

    #[test]
    fn trusted_source_is_never_limited_nor_banned_and_keeps_its_lane() {
        let t0 = Instant::now();
        let trunk = ip("192.0.2.10");
        let mut a = Admission::new(t0, cfg(), [trunk]);
        let mut t = t0;
        // Strangers exhaust the global budget...
        for n in 0..200u32 {
            let src = IpAddr::from([10, 1, (n >> 8) as u8, n as u8]);
            send(&mut a, &mut t, src, 5, Duration::ZERO);
        }
        assert!(a.stats().dropped_global_rate > 0);
        // ... yet the trunk at 1,000/s gets everything through, and failures do not count.
        assert_eq!(send(&mut a, &mut t, trunk, 1000, Duration::from_secs(1)), 1000);
        for _ in 0..100 {
            a.report_failure(t, trunk);
        }
        assert_eq!(a.check(t, trunk), Verdict::Admit);
        assert!(a.may_send(t, trunk));
        assert_eq!(a.stats().admitted_trusted, 1001);
        // IPv4-mapped IPv6 is the same source.
        assert!(a.is_trusted(ip("::ffff:192.0.2.10")));
        // Networks (a trunk's accept_from).
        assert!(!a.is_trusted(ip("198.51.100.77")));
        a.trust_networks([(ip("198.51.100.0"), 24)]);
        assert!(a.is_trusted(ip("198.51.100.77")) && !a.is_trusted(ip("198.51.101.1")));
        assert_eq!(send(&mut a, &mut t, ip("198.51.100.77"), 500, Duration::ZERO), 500);
    }

    #[test]
    fn many_sources_share_the_global_budget() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0, cfg(), []);
        let mut t = t0;
        // 2,000 sources, 5 each per second, for 5 s: 50,000 datagrams, each under its own rate.
        let mut admitted = 0;
        for _sec in 0..5 {
            for n in 0..2000u32 {
                let src = IpAddr::from([10, 2, (n >> 8) as u8, n as u8]);
                for _ in 0..5 {
                    if a.check(t, src) == Verdict::Admit {
                        admitted += 1;
                    }
                }
                t += Duration::from_micros(100);
            }
            t += Duration::from_millis(800);
        }
        // global_rate 100/s over ~5 s, plus the initial 100 burst.
        assert!(admitted <= 100 + 100 * 6, "{admitted}");
        assert!(admitted >= 400, "{admitted}");
    }

    #[test]
    fn table_is_bounded_and_swept() {
        let t0 = Instant::now();
        let c = AdmissionConfig { max_sources: 100, global_rate: 1_000_000, ..cfg() };
        let mut a = Admission::new(t0, c, []);
        let mut t = t0;
        for n in 0..10_000u32 {
            let src = IpAddr::from([10, 3, (n >> 8) as u8, n as u8]);
            a.check(t, src);
            t += Duration::from_micros(10);
        }
        assert_eq!(a.stats().tracked, 100);
        assert!(a.stats().untracked >= 9_900);
        // The overflow bucket is one source's budget: the untracked got at most a burst and its refill.
        assert!(a.stats().admitted <= 100 + 20 + 2, "{:?}", a.stats());
        // After a quiet failure window, the table empties.
        t += Duration::from_secs(11);
        a.check(t, ip("10.9.9.9"));
        assert_eq!(a.stats().tracked, 1);
    }

    #[test]
    fn banned_sources_survive_the_sweep() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0, cfg(), []);
        let mut t = t0;
        let f = ip("10.0.0.6");
        send(&mut a, &mut t, f, 1000, Duration::from_secs(1));
        t += Duration::from_secs(30);
        a.check(t, ip("10.0.0.7"));
        assert_eq!(a.check(t, f), Verdict::Drop(DropReason::Banned));
    }

    #[test]
    fn plausibility_and_status_without_parsing() {
        assert!(plausible_sip(b"INVITE sip:1@x SIP/2.0\r\n"));
        assert!(plausible_sip(b"SIP/2.0 200 OK\r\n"));
        assert!(plausible_sip(b"\r\n\r\n"));
        assert!(!plausible_sip(b""));
        assert!(!plausible_sip(b"\x00\x01garbage"));
        assert!(!plausible_sip(b"GET"));
        assert!(!plausible_sip(&[0x80, 0, 1, 2, 3, 4, 5, 6]));
        assert_eq!(response_status(b"SIP/2.0 486 Busy Here\r\n"), Some(486));
        assert_eq!(response_status(b"SIP/2.0 4x6"), None);
        assert_eq!(response_status(b"INVITE sip:x SIP/2.0"), None);
        assert_eq!(response_status(b"SIP/2.0 1"), None);
    }

    #[test]
    fn disabled_admits_everything() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0, AdmissionConfig { enabled: false, ..cfg() }, []);
        let mut t = t0;
        assert_eq!(send(&mut a, &mut t, ip("10.0.0.8"), 10_000, Duration::ZERO), 10_000);
        assert_eq!(a.stats().bans, 0);
    }
}
