//! Status for installers: a snapshot the control task refreshes every tick,
//! served read-only as JSON over HTTP (`GET /api/status`) and as text on the
//! local console (`show status`).
//!
//! The console itself, with configuration editing, is in `console.rs`; the
//! web page is read-only.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::gateway::{CallCounters, FxoStatus, PortStatus, RegistrationStatus, TrunkStatus};
use crate::rt::{RtSetupReport, RtStatsSnapshot};

#[derive(Debug, Clone, Default, Serialize)]
pub struct RtSetupStatus {
    pub core: Option<usize>,
    pub sched_fifo_priority: Option<i32>,
    pub memory_locked: bool,
    /// Why the thread is not fully real-time, one reason per refused step.
    pub degraded: Vec<String>,
}

impl From<RtSetupReport> for RtSetupStatus {
    fn from(r: RtSetupReport) -> Self {
        let mut degraded = Vec::new();
        if let Err(e) = &r.core {
            degraded.push(e.clone());
        }
        if let Err(e) = &r.sched_fifo {
            degraded.push(e.clone());
        }
        if let Err(e) = &r.mlockall {
            degraded.push(e.clone());
        }
        RtSetupStatus {
            core: r.core.ok(),
            sched_fifo_priority: r.sched_fifo.ok(),
            memory_locked: r.mlockall.is_ok(),
            degraded,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaStatus {
    pub sent: u64,
    pub received: u64,
    pub foreign_source: u64,
    pub send_errors: u64,
    pub in_overruns: u64,
    /// Packets over their channel's share of the rt queue (a flooding far end).
    pub rate_limited: u64,
}

/// The SIP socket's admission counters and the sources banned now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdmissionStatus {
    pub admitted: u64,
    pub admitted_trusted: u64,
    pub dropped_banned: u64,
    pub dropped_source_rate: u64,
    pub dropped_global_rate: u64,
    pub failures: u64,
    pub bans_total: u64,
    pub suppressed_sends: u64,
    pub tracked_sources: usize,
    /// Banned now (at most [`AdmissionStatus::MAX_LISTED`], longest first).
    pub banned: Vec<BannedSource>,
    pub banned_count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BannedSource {
    pub addr: String,
    pub remaining_s: u64,
    /// 1 for a first ban; each repetition doubles the ban.
    pub count: u32,
}

impl AdmissionStatus {
    pub const MAX_LISTED: usize = 32;

    pub fn new(a: &gw_sip::admission::Admission, now: std::time::Instant) -> Self {
        let st = a.stats();
        let all = a.bans(now, usize::MAX);
        AdmissionStatus {
            admitted: st.admitted,
            admitted_trusted: st.admitted_trusted,
            dropped_banned: st.dropped_banned,
            dropped_source_rate: st.dropped_source_rate,
            dropped_global_rate: st.dropped_global_rate,
            failures: st.failures,
            bans_total: st.bans,
            suppressed_sends: st.suppressed_sends,
            tracked_sources: st.tracked,
            banned_count: all.len(),
            banned: all
                .iter()
                .take(Self::MAX_LISTED)
                .map(|b| BannedSource { addr: b.addr.to_string(), remaining_s: b.remaining.as_secs(), count: b.count })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub board: String,
    pub sip_listen: String,
    pub sim_link: Option<String>,
    pub registrations: Vec<RegistrationStatus>,
    /// Every SIP trunk with its health, limits and figures.
    pub trunks: Vec<TrunkStatus>,
    pub ports: Vec<PortStatus>,
    /// The analog exchange lines.
    pub fxo: Vec<FxoStatus>,
    pub calls: CallCounters,
    pub rt: RtStatsSnapshot,
    pub rt_setup: RtSetupStatus,
    pub rt_command_overruns: u64,
    /// What the installer should fix (a shipped default password, ...).
    pub warnings: Vec<String>,
    pub media: MediaStatus,
    pub sip_admission: AdmissionStatus,
    /// ISDN spans (`show isdn`).
    pub isdn: Vec<crate::isdn::SpanStatus>,
    /// The last calls' records (`show cdr`, `GET /api/cdr`); not in the
    /// status JSON, which is polled.
    #[serde(skip)]
    pub call_log: crate::cdr::CallLog,
    /// Boot slot, restarts, watchdog, upgrade (`watchdog.rs`, `upgrade.rs`).
    pub supervision: Supervision,
}

/// What the supervisor and the A/B boot know.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Supervision {
    /// The slot this gatewayd was booted from (A or B), if on the appliance.
    pub slot: Option<String>,
    /// The boot state, one line (order, versions, attempts).
    pub boot: String,
    /// True once this boot's slot was marked good.
    pub marked_good: bool,
    /// Restarts of gatewayd by the init loop since the box booted.
    pub restarts: u32,
    pub last_exit: String,
    pub watchdog: String,
    /// The last upgrade's verdict in this run.
    pub upgrade: String,
}

impl Status {
    pub fn new(board: String, sip_listen: String, sim_link: Option<String>, rt: RtStatsSnapshot) -> Self {
        Status {
            version: env!("CARGO_PKG_VERSION"),
            board,
            sip_listen,
            sim_link,
            registrations: Vec::new(),
            trunks: Vec::new(),
            ports: Vec::new(),
            fxo: Vec::new(),
            calls: CallCounters::default(),
            rt,
            rt_setup: RtSetupStatus::default(),
            rt_command_overruns: 0,
            warnings: Vec::new(),
            media: MediaStatus::default(),
            sip_admission: AdmissionStatus::default(),
            isdn: Vec::new(),
            call_log: Default::default(),
            supervision: Supervision::default(),
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "gatewayd {} on board {}", self.version, self.board);
        let _ = writeln!(s, "SIP {}; sim link {}", self.sip_listen, self.sim_link.as_deref().unwrap_or("-"));
        for w in &self.warnings {
            let _ = writeln!(s, "WARNING: {w}");
        }
        let v = &self.supervision;
        if let Some(slot) = &v.slot {
            let _ = writeln!(s, "Slot {slot}{}; boot state: {}", if v.marked_good { " (marked good)" } else { " (not yet marked good)" }, v.boot);
        }
        let _ = writeln!(
            s,
            "Supervision: restarts {}{}; watchdog {}",
            v.restarts,
            if v.last_exit.is_empty() { String::new() } else { format!(" (last: {})", v.last_exit) },
            if v.watchdog.is_empty() { "off" } else { &v.watchdog }
        );
        if !v.upgrade.is_empty() {
            let _ = writeln!(s, "Upgrade: {}", v.upgrade);
        }
        let _ = writeln!(s, "Registrations:");
        for r in &self.registrations {
            let _ = writeln!(s, "  {:<12} {}", r.user, r.state);
        }
        let _ = writeln!(s, "Trunks:");
        for t in &self.trunks {
            let _ = writeln!(s, "  {:<12} {:<22} {} (calls {})", t.name, t.proxy, t.state, t.active_calls);
        }
        let _ = writeln!(s, "Ports:");
        for p in &self.ports {
            let _ = writeln!(
                s,
                "  FXS {} {:<8} {:<8} {:<12} {}",
                p.port,
                p.number,
                p.hook,
                p.state,
                p.call.as_deref().unwrap_or("")
            );
            if let (Some(_), Some(r)) = (&p.call, &p.route) {
                let _ = writeln!(s, "        route: {r}");
            }
            if let Some(e) = &p.echo {
                let _ = writeln!(
                    s,
                    "        echo: {} ERLE {:.1} dB, ERL {:.1} dB, delay {:.1} ms, double talk {} ({} periods), tone disables {}",
                    if e.enabled { "on" } else { "off (2100 Hz tone)" },
                    e.erle_db, e.erl_db, e.delay_ms,
                    if e.double_talk { "now" } else { "no" }, e.double_talk_events, e.tone_disables
                );
            }
            if let Some(g) = p.signals.filter(|g| {
                g.vbd || g.line_modem_tone.is_some() || g.network_modem_tone.is_some() || g.network_progress_tone.is_some()
            }) {
                let _ = writeln!(
                    s,
                    "        signals: {}line {}, far end {} {}",
                    if g.vbd { "voice-band data; " } else { "" },
                    g.line_modem_tone.unwrap_or("-"),
                    g.network_modem_tone.unwrap_or("-"),
                    g.network_progress_tone.unwrap_or("-"),
                );
            }
            if let Some(c) = p.signals.and_then(|g| g.silence) {
                let _ = writeln!(
                    s,
                    "        silence suppression: CN sent {} received {}, frames suppressed {}, comfort noise played {}",
                    c.cn_sent, c.cn_received, c.suppressed_frames, c.cn_played_frames
                );
            }
        }
        if !self.fxo.is_empty() {
            let _ = writeln!(s, "PSTN lines:");
            for f in &self.fxo {
                let _ = writeln!(
                    s,
                    "  FXO {} {:<10} {:<10} {} {}{}",
                    f.port,
                    f.number.as_deref().unwrap_or("-"),
                    f.state,
                    if f.seized { "seized" } else { "on hook" },
                    f.voltage.map(|v| format!("{v} V, ")).unwrap_or_default(),
                    f.polarity.to_lowercase(),
                );
                if let Some(c) = &f.call {
                    let _ = writeln!(s, "        {c}");
                }
            }
        }
        let c = &self.calls;
        let _ = writeln!(
            s,
            "Calls: out {} in {} answered {} failed {} busy {} unknown {}; caller ID sent {} failed {}; \
             fax/modem tones {}; hung up on far-end busy tone {}, on no RTP {}; preempted by emergency calls {}",
            c.outgoing, c.incoming, c.answered, c.failed, c.rejected_busy, c.rejected_unknown,
            c.caller_id_sent, c.caller_id_failed, c.modem_tones, c.disconnected_on_tone, c.media_timeouts, c.preempted
        );
        let rt = &self.rt;
        let _ = writeln!(
            s,
            "RT: frames {} deadline misses {} max tick {} us; queue overruns: events {} packets {} commands {}",
            rt.frames, rt.deadline_misses, rt.max_tick_us, rt.event_overruns, rt.packet_out_overruns,
            self.rt_command_overruns
        );
        if self.rt_setup.degraded.is_empty() {
            let _ = writeln!(s, "RT set-up: real-time (core {:?}, SCHED_FIFO, memory locked)", self.rt_setup.core);
        } else {
            let _ = writeln!(s, "RT set-up: DEGRADED: {}", self.rt_setup.degraded.join("; "));
        }
        let m = &self.media;
        let _ = writeln!(
            s,
            "RTP: sent {} received {} foreign {} over rate {} send errors {}",
            m.sent, m.received, m.foreign_source, m.rate_limited, m.send_errors
        );
        let a = &self.sip_admission;
        let _ = writeln!(
            s,
            "SIP admission: admitted {} (trusted {}) dropped: banned {} rate {} global {}; failures {} bans {} \
             suppressed sends {}; {} sources tracked, {} banned now",
            a.admitted, a.admitted_trusted, a.dropped_banned, a.dropped_source_rate, a.dropped_global_rate,
            a.failures, a.bans_total, a.suppressed_sends, a.tracked_sources, a.banned_count
        );
        for b in &a.banned {
            let _ = writeln!(s, "  banned {:<40} {} s left (ban #{})", b.addr, b.remaining_s, b.count);
        }
        s
    }
}

pub type SharedStatus = Arc<Mutex<Status>>;

pub fn lock(status: &SharedStatus) -> std::sync::MutexGuard<'_, Status> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn snapshot(status: &SharedStatus) -> Status {
    status.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn console(status: &SharedStatus, line: &str) -> String {
        let ctx = crate::console::Context::for_tests(status.clone());
        match crate::console::Session::default().command(line, &ctx) {
            crate::console::Reply::Text(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn status() -> SharedStatus {
        tests_status()
    }

    pub(crate) fn tests_status() -> SharedStatus {
        let rt = crate::rt::RtStats::new(0).snapshot();
        Arc::new(Mutex::new(Status::new("sim".into(), "127.0.0.1:5062".into(), None, rt)))
    }

    #[test]
    fn console_answers_known_and_unknown_commands() {
        let s = status();
        assert!(console(&s, "help").contains("show status"));
        assert!(console(&s, "show status").contains("board sim"));
        assert!(console(&s, "frobnicate now").starts_with("unknown command"));
    }

    #[test]
    fn banned_sources_are_shown() {
        use gw_sip::admission::{Admission, AdmissionConfig};
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let mut a = Admission::new(t0, AdmissionConfig::default(), ["127.0.0.1".parse().unwrap()]);
        let bad: std::net::IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..200 {
            a.check(t0, bad);
        }
        let s = status();
        s.lock().unwrap().sip_admission = AdmissionStatus::new(&a, t0 + Duration::from_secs(1));
        let text = console(&s, "show status");
        assert!(text.contains("1 banned now"), "{text}");
        assert!(text.contains("banned 127.0.0.9"), "{text}");
        let json = serde_json::to_value(&*s.lock().unwrap()).unwrap();
        assert_eq!(json["sip_admission"]["banned"][0]["addr"], "127.0.0.9", "{json}");
        assert_eq!(json["sip_admission"]["banned"][0]["remaining_s"], 59, "{json}");
    }

    #[test]
    fn degraded_rt_setup_is_reported() {
        let r = RtSetupReport {
            core: Ok(1),
            sched_fifo: Err("SCHED_FIFO priority 40: Operation not permitted".into()),
            mlockall: Ok(()),
        };
        let st: RtSetupStatus = r.into();
        assert_eq!(st.core, Some(1));
        assert_eq!(st.degraded.len(), 1);
        let s = status();
        s.lock().unwrap().rt_setup = st;
        assert!(console(&s, "show status").contains("DEGRADED: SCHED_FIFO"));
    }

    #[test]
    fn silence_suppression_counters_are_shown_for_calls_with_comfort_noise() {
        let rt = crate::rt::RtStats::new(1);
        let port = |signals| PortStatus {
            port: 1,
            timeslot: 0,
            number: "1001".into(),
            hook: "OffHook".into(),
            state: "Connected".into(),
            call: Some("to 2000".into()),
            route: None,
            echo: None,
            signals: Some(signals),
        };
        let s = status();
        s.lock().unwrap().ports = vec![port(rt.channels[0].signals())];
        assert!(!console(&s, "show status").contains("silence suppression"), "no CN on this call");
        let c = &rt.channels[0];
        c.cn_negotiated.store(true, std::sync::atomic::Ordering::Relaxed);
        c.cn_sent.store(3, std::sync::atomic::Ordering::Relaxed);
        c.suppressed_frames.store(250, std::sync::atomic::Ordering::Relaxed);
        s.lock().unwrap().ports = vec![port(c.signals())];
        let text = console(&s, "show status");
        assert!(text.contains("silence suppression: CN sent 3 received 0, frames suppressed 250"), "{text}");
        let json = serde_json::to_value(&*s.lock().unwrap()).unwrap();
        assert_eq!(json["ports"][0]["signals"]["silence"]["cn_sent"], 3, "{json}");
    }
}
