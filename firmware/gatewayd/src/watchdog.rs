//! The hardware watchdog and the supervisor's view of gatewayd.
//!
//! A supervisor thread (not the rt thread) looks once a second at two
//! heartbeats: the rt thread's frame counter (`RtStats::frames`, advanced
//! every 10 ms tick) and the control plane's copy of it in the status (the
//! driver loop copies it on its own 10 ms tick). Only while BOTH advanced
//! recently does it write to `/dev/watchdog`. A hung rt loop, a hung driver
//! loop or a stopped process (SIGSTOP) stops the feeding and the watchdog
//! resets the box; a killed gatewayd is restarted by /init and the new one
//! opens the device again well within the timeout.
//!
//! [`Heartbeat`] is the sans-IO decision (time is an input); [`spawn`] is the
//! thread with the device.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::rt::RtStats;
use crate::status::SharedStatus;

/// `[watchdog]`: off unless configured (the sim board on a host has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_device")]
    pub device: PathBuf,
    /// Seconds without feeding before the hardware resets the box.
    #[serde(default = "default_timeout")]
    pub timeout_s: u32,
    /// A heartbeat older than this is a hang (milliseconds).
    #[serde(default = "default_stale")]
    pub stale_ms: u64,
    /// Written by the init loop that restarts gatewayd: `restarts=N` and
    /// `last_exit_status=...`, shown in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts_file: Option<PathBuf>,
}

fn default_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}
fn default_timeout() -> u32 {
    10
}
fn default_stale() -> u64 {
    3000
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            enabled: false,
            device: default_device(),
            timeout_s: default_timeout(),
            stale_ms: default_stale(),
            restarts_file: None,
        }
    }
}

impl WatchdogConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=600).contains(&self.timeout_s) {
            return Err("watchdog.timeout_s must be within 2..600".into());
        }
        if !(100..=60_000).contains(&self.stale_ms) || self.stale_ms >= u64::from(self.timeout_s) * 1000 {
            return Err("watchdog.stale_ms must be within 100..60000 and below the timeout".into());
        }
        Ok(())
    }
}

/// Feed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Feed,
    Starve(&'static str),
}

/// The two heartbeats' last changes. Sans-IO: `now_ms` is any monotonic clock.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    stale_ms: u64,
    rt: Option<(u64, u64)>,
    cp: Option<(u64, u64)>,
}

impl Heartbeat {
    pub fn new(stale_ms: u64) -> Self {
        Heartbeat { stale_ms, rt: None, cp: None }
    }

    /// `rt_frames`: the rt thread's counter; `cp_frames`: the control
    /// plane's copy. Feeds only when both changed within `stale_ms`; before
    /// either has been seen to move, it does not feed.
    pub fn observe(&mut self, now_ms: u64, rt_frames: u64, cp_frames: u64) -> Verdict {
        fn track(slot: &mut Option<(u64, u64)>, now: u64, value: u64) -> Option<u64> {
            match slot {
                Some((v, since)) if *v == value => Some(*since),
                Some((v, since)) => {
                    *v = value;
                    *since = now;
                    Some(now)
                }
                None => {
                    // The first sighting is no proof of progress.
                    *slot = Some((value, u64::MAX));
                    None
                }
            }
        }
        let rt = track(&mut self.rt, now_ms, rt_frames).filter(|&t| t != u64::MAX);
        let cp = track(&mut self.cp, now_ms, cp_frames).filter(|&t| t != u64::MAX);
        let fresh = |t: Option<u64>| t.is_some_and(|t| now_ms.saturating_sub(t) <= self.stale_ms);
        match (fresh(rt), fresh(cp)) {
            (true, true) => Verdict::Feed,
            (false, _) => Verdict::Starve("rt loop stalled"),
            (true, false) => Verdict::Starve("control plane stalled"),
        }
    }
}

/// What the init loop recorded about earlier runs (`restarts=N`,
/// `last_exit_status=N`, the shell's `$?`); missing or unreadable: none.
pub fn read_restarts(text: &str) -> (u32, String) {
    let mut n = 0;
    let mut last = String::new();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("restarts", v)) => n = v.trim().parse().unwrap_or(0),
            Some(("last_exit_status", v)) => last = v.trim().parse().map(exit_reason).unwrap_or_default(),
            _ => {}
        }
    }
    (n, last)
}

/// A shell exit status as a reason: 137 -> "killed by signal 9 (KILL)".
pub fn exit_reason(status: i32) -> String {
    let sig = |n: i32| match n {
        6 => " (ABRT)",
        9 => " (KILL)",
        11 => " (SEGV)",
        15 => " (TERM)",
        _ => "",
    };
    match status {
        0 => "exited normally (0)".into(),
        129..=192 => format!("killed by signal {}{}", status - 128, sig(status - 128)),
        n => format!("exited with status {n}"),
    }
}

/// Everything gatewayd's supervision needs at start: the init loop's restart
/// record into the status, the upgrader (if `[upgrade]`), and the supervisor
/// thread (feeding the watchdog if `[watchdog] enabled`, marking the slot
/// good once healthy).
pub fn start_supervision(config: &crate::config::Config, rt_stats: Arc<RtStats>, status: SharedStatus) -> Result<(), String> {
    if let Some(f) = &config.watchdog.restarts_file {
        let (n, last) = read_restarts(&std::fs::read_to_string(f).unwrap_or_default());
        let mut s = crate::status::lock(&status);
        s.supervision.restarts = n;
        s.supervision.last_exit = last;
    }
    let upgrader = config.upgrade.clone().map(|u| Arc::new(crate::upgrade::Upgrader::new(u, status.clone())));
    if let Some(u) = &upgrader {
        crate::upgrade::set_global(u.clone());
    }
    let tick = move |v| {
        if let Some(u) = &upgrader {
            u.on_tick(v);
        }
    };
    let tick = Arc::new(tick);
    let t = tick.clone();
    match spawn(&config.watchdog, rt_stats.clone(), status.clone(), move |v| t(v)) {
        Ok(_) => Ok(()),
        // A configured watchdog that cannot be opened is a fault to report,
        // not a reason to stop the phones: run without it, say so.
        Err(e) => {
            error!(device = %config.watchdog.device.display(), %e, "cannot open the watchdog; running WITHOUT it");
            let off = WatchdogConfig { enabled: false, ..config.watchdog.clone() };
            spawn(&off, rt_stats, status.clone(), move |v| tick(v)).map_err(|e| format!("supervisor thread: {e}"))?;
            crate::status::lock(&status).supervision.watchdog = format!("FAILED to open {}: {e}", config.watchdog.device.display());
            Ok(())
        }
    }
}

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);

/// Opens the watchdog (which starts it), sets its timeout, and feeds it from
/// a thread while the heartbeats are fresh. Also runs `on_tick` (the upgrade
/// health check) once a second with the verdict.
pub fn spawn(
    cfg: &WatchdogConfig,
    rt_stats: Arc<RtStats>,
    status: SharedStatus,
    mut on_tick: impl FnMut(Verdict) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use std::io::Write;
    let mut device = if cfg.enabled {
        let f = std::fs::OpenOptions::new().write(true).open(&cfg.device)?;
        let mut t: libc::c_int = cfg.timeout_s as libc::c_int;
        #[allow(unsafe_code)]
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the pointer, which lives across the call.
        let r = unsafe { wdioc_settimeout(std::os::fd::AsRawFd::as_raw_fd(&f), &mut t) };
        match r {
            Ok(_) => info!(device = %cfg.device.display(), timeout_s = t, "hardware watchdog armed"),
            Err(e) => warn!(device = %cfg.device.display(), %e, "watchdog timeout not set; the driver's default applies"),
        }
        Some(f)
    } else {
        None
    };
    let stale = cfg.stale_ms;
    let armed = device.is_some();
    crate::status::lock(&status).supervision.watchdog =
        if armed { format!("{} armed, {} s", cfg.device.display(), cfg.timeout_s) } else { "off".into() };
    std::thread::Builder::new().name("supervisor".into()).spawn(move || {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(stale);
        let mut starving = false;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let rt = rt_stats.frames.load(Ordering::Relaxed);
            let cp = crate::status::lock(&status).rt.frames;
            let v = hb.observe(t0.elapsed().as_millis() as u64, rt, cp);
            match v {
                Verdict::Feed => {
                    if let Some(d) = device.as_mut() {
                        if let Err(e) = d.write_all(b"\0") {
                            error!(%e, "watchdog write failed");
                        }
                    }
                    if starving {
                        info!("heartbeats fresh again; feeding the watchdog");
                        starving = false;
                    }
                }
                Verdict::Starve(why) if !starving && t0.elapsed() > Duration::from_secs(2) => {
                    error!(why, armed, "not feeding the watchdog");
                    starving = true;
                }
                Verdict::Starve(_) => {}
            }
            on_tick(v);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_only_while_both_heartbeats_move() {
        let mut hb = Heartbeat::new(1000);
        // Nothing seen move yet: no feeding.
        assert_eq!(hb.observe(0, 10, 10), Verdict::Starve("rt loop stalled"));
        assert_eq!(hb.observe(500, 60, 58), Verdict::Feed);
        assert_eq!(hb.observe(1000, 110, 108), Verdict::Feed);
        // The control plane stops copying: fed until its heartbeat is stale.
        assert_eq!(hb.observe(1500, 160, 108), Verdict::Feed);
        assert_eq!(hb.observe(2001, 210, 108), Verdict::Starve("control plane stalled"));
        // It comes back.
        assert_eq!(hb.observe(2500, 260, 258), Verdict::Feed);
        // The rt loop hangs (the copy keeps its last value too).
        assert_eq!(hb.observe(3000, 260, 258), Verdict::Feed);
        assert_eq!(hb.observe(3600, 260, 258), Verdict::Starve("rt loop stalled"));
        // A stopped process observed late (SIGSTOP then SIGCONT): stale, no feed.
        assert_eq!(hb.observe(60_000, 260, 258), Verdict::Starve("rt loop stalled"));
    }

    #[test]
    fn only_the_rt_counter_moving_is_not_enough() {
        let mut hb = Heartbeat::new(1000);
        for t in 0..10 {
            assert_ne!(hb.observe(t * 500, t * 50, 7), Verdict::Feed);
        }
    }

    #[test]
    fn restarts_file_and_exit_reasons() {
        assert_eq!(read_restarts("restarts=3\nlast_exit_status=137\n"), (3, "killed by signal 9 (KILL)".into()));
        assert_eq!(read_restarts("garbage\nrestarts=x"), (0, String::new()));
        assert_eq!(exit_reason(137), "killed by signal 9 (KILL)");
        assert_eq!(exit_reason(1), "exited with status 1");
        assert_eq!(exit_reason(0), "exited normally (0)");
    }

    #[test]
    fn config_is_off_by_default_and_validated() {
        let c = WatchdogConfig::default();
        assert!(!c.enabled && c.validate().is_ok());
        assert!(WatchdogConfig { timeout_s: 1, ..c.clone() }.validate().is_err());
        assert!(WatchdogConfig { stale_ms: 20_000, ..c }.validate().is_err());
    }
}
