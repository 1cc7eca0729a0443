//! Robustness limits at the network edge: the `[security]`, `[limits]` and
//! `[log]` sections of the configuration, their defaults and rules.
//!
//! - `[security]`: per-source admission at the SIP socket (rates, bans, the
//!   global budget, extra trusted addresses); see `gw_sip::admission`.
//! - `[limits]`: how many console and web sessions may be open, how long an
//!   idle one lives, the largest request line or body; the no-answer timeout
//!   of ringing ports.
//! - `[log]`: repeat suppression and the size-capped rotating log file; see
//!   [`crate::logging`].
//!
//! Every field has a default, so files written before these sections existed
//! still load.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use gw_sip::admission::AdmissionConfig;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    /// Per-source admission at the SIP socket (off: every datagram is parsed).
    pub sip_admission: bool,
    /// Datagrams per second one source may send, and its burst.
    pub sip_rate: u32,
    pub sip_burst: u32,
    /// Refused requests or non-SIP datagrams per `sip_failure_window_s` that ban a source.
    pub sip_max_failures: u32,
    pub sip_failure_window_s: u64,
    /// First ban, doubled on every repetition up to `ban_max_s`.
    pub ban_base_s: u64,
    pub ban_max_s: u64,
    /// Datagrams per second from all untrusted sources together.
    pub sip_global_rate: u32,
    /// Sources remembered at most.
    pub max_sources: usize,
    /// Addresses trusted like the trunk proxy (never limited or banned).
    pub trusted: Vec<IpAddr>,
}

impl Default for Security {
    fn default() -> Self {
        let a = AdmissionConfig::default();
        Security {
            sip_admission: true,
            sip_rate: a.rate,
            sip_burst: a.burst,
            sip_max_failures: a.max_failures,
            sip_failure_window_s: a.failure_window.as_secs(),
            ban_base_s: a.ban_base.as_secs(),
            ban_max_s: a.ban_max.as_secs(),
            sip_global_rate: a.global_rate,
            max_sources: a.max_sources,
            trusted: Vec::new(),
        }
    }
}

impl Security {
    pub fn admission(&self) -> AdmissionConfig {
        AdmissionConfig {
            enabled: self.sip_admission,
            rate: self.sip_rate,
            burst: self.sip_burst,
            max_failures: self.sip_max_failures,
            failure_window: Duration::from_secs(self.sip_failure_window_s),
            max_rate_drops: self.sip_burst.max(1),
            ban_base: Duration::from_secs(self.ban_base_s),
            ban_max: Duration::from_secs(self.ban_max_s),
            forget_after: Duration::from_secs(self.ban_max_s.max(3600)),
            global_rate: self.sip_global_rate,
            max_sources: self.max_sources,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.sip_rate == 0 {
            return Err(ConfigError::new("security.sip_rate", "must be at least 1"));
        }
        if self.sip_burst == 0 {
            return Err(ConfigError::new("security.sip_burst", "must be at least 1"));
        }
        if self.sip_max_failures == 0 {
            return Err(ConfigError::new("security.sip_max_failures", "must be at least 1"));
        }
        if !(1..=3600).contains(&self.sip_failure_window_s) {
            return Err(ConfigError::new("security.sip_failure_window_s", "must be within 1..3600"));
        }
        if self.ban_base_s == 0 || self.ban_max_s < self.ban_base_s {
            return Err(ConfigError::new("security.ban_max_s", "ban_base_s must be at least 1 and ban_max_s not below it"));
        }
        if self.sip_global_rate < self.sip_rate {
            return Err(ConfigError::new("security.sip_global_rate", "must not be below sip_rate"));
        }
        if !(16..=1_000_000).contains(&self.max_sources) {
            return Err(ConfigError::new("security.max_sources", "must be within 16..1000000"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Console sessions open at once; more are refused with a message.
    pub console_sessions: usize,
    /// Web connections open at once; more are answered 503 and closed.
    pub web_connections: usize,
    /// A console or web connection idle this long is closed.
    pub idle_timeout_s: u64,
    /// Longest console line; longer closes the session.
    pub max_line_bytes: usize,
    /// A ringing port that nobody answers gives up after this long (480,
    /// Q.850 cause 19 "no answer from user"); 0 rings until the caller gives up.
    pub no_answer_timeout_s: u64,
    /// A connected call whose far end has sent no RTP for this long is hung
    /// up (a crashed far end, a lost network); 0 = never. Off by default: a
    /// far end that holds the call with `inactive` sends no RTP either.
    pub rtp_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            console_sessions: 8,
            web_connections: 16,
            idle_timeout_s: 300,
            max_line_bytes: 4096,
            no_answer_timeout_s: 120,
            rtp_timeout_s: 0,
        }
    }
}

impl Limits {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=256).contains(&self.console_sessions) {
            return Err(ConfigError::new("limits.console_sessions", "must be within 1..256"));
        }
        if !(1..=256).contains(&self.web_connections) {
            return Err(ConfigError::new("limits.web_connections", "must be within 1..256"));
        }
        if !(5..=86_400).contains(&self.idle_timeout_s) {
            return Err(ConfigError::new("limits.idle_timeout_s", "must be within 5..86400"));
        }
        if !(256..=1_048_576).contains(&self.max_line_bytes) {
            return Err(ConfigError::new("limits.max_line_bytes", "must be within 256..1048576"));
        }
        if self.no_answer_timeout_s != 0 && !(10..=3600).contains(&self.no_answer_timeout_s) {
            return Err(ConfigError::new("limits.no_answer_timeout_s", "must be 0 or within 10..3600"));
        }
        if self.rtp_timeout_s != 0 && !(5..=3600).contains(&self.rtp_timeout_s) {
            return Err(ConfigError::new("limits.rtp_timeout_s", "must be 0 or within 5..3600"));
        }
        Ok(())
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// The same message (same place, same level) more often than this per
    /// second is suppressed; one line with the count follows.
    pub max_repeats_per_s: u32,
    /// Lines per second of all messages together; the rest is counted and
    /// reported in one line.
    pub max_lines_per_s: u32,
    /// Also write the log to this file, rotated at `file_max_bytes` into
    /// `FILE.1` .. `FILE.<file_keep>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    pub file_max_bytes: u64,
    pub file_keep: u32,
    /// Also append each call's record (`cdr.rs`) to this file as a JSON
    /// line, rotated like the log file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cdr_file: Option<PathBuf>,
}

impl Default for Log {
    fn default() -> Self {
        Log { max_repeats_per_s: 10, max_lines_per_s: 200, file: None, file_max_bytes: 4 << 20, file_keep: 2, cdr_file: None }
    }
}

impl Log {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_repeats_per_s == 0 {
            return Err(ConfigError::new("log.max_repeats_per_s", "must be at least 1"));
        }
        if self.max_lines_per_s < self.max_repeats_per_s {
            return Err(ConfigError::new("log.max_lines_per_s", "must not be below max_repeats_per_s"));
        }
        if !(4096..=1 << 30).contains(&self.file_max_bytes) {
            return Err(ConfigError::new("log.file_max_bytes", "must be within 4096..1073741824"));
        }
        if !(1..=16).contains(&self.file_keep) {
            return Err(ConfigError::new("log.file_keep", "must be within 1..16"));
        }
        Ok(())
    }
}

/// The SIP socket's admission for `config`: every trunk's proxy and
/// `accept_from` addresses and networks, and `security.trusted`, are trusted
/// (their own lane: never limited or banned).
pub fn admission_for(config: &crate::config::Config, now: std::time::Instant) -> gw_sip::admission::Admission {
    let mut hosts: Vec<IpAddr> = vec![config.sip.proxy.ip()];
    hosts.extend(config.trunk.iter().map(|t| t.proxy.ip()));
    hosts.extend(config.security.trusted.iter().copied());
    let mut a = gw_sip::admission::Admission::new(now, config.security.admission(), hosts);
    let nets = config
        .sip
        .accept_from
        .iter()
        .chain(config.trunk.iter().flat_map(|t| t.accept_from.iter()))
        .filter_map(|s| {
            let (addr, len) = match s.split_once('/') {
                Some((a, l)) => (a.trim().parse::<IpAddr>().ok()?, l.trim().parse::<u8>().ok()?),
                None => {
                    let a = s.trim().parse::<IpAddr>().ok()?;
                    (a, if a.is_ipv4() { 32 } else { 128 })
                }
            };
            Some((addr, len))
        });
    a.trust_networks(nets.collect::<Vec<_>>());
    a
}

/// Checks the three sections.
pub fn validate(security: &Security, limits: &Limits, log: &Log) -> Result<(), ConfigError> {
    security.validate()?;
    limits.validate()?;
    log.validate()
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn sections_default_when_absent_and_are_checked() {
        let full = crate::config::DEFAULT_TOML;
        let without = &full[..full.find("# --- Robustness").expect("the sections are documented in default.toml")];
        let c = Config::from_toml(without, 4).unwrap();
        assert_eq!(c, Config::default_sim(), "default.toml shows the defaults");
        assert!(c.security.sip_admission);
        assert_eq!(c.limits.no_answer_timeout_s, 120);
        let bad = |from: &str, to: &str| Config::from_toml(&full.replace(from, to), 4).unwrap_err().field;
        assert_eq!(bad("sip_rate = 20", "sip_rate = 0"), "security.sip_rate");
        assert_eq!(bad("no_answer_timeout_s = 120", "no_answer_timeout_s = 3"), "limits.no_answer_timeout_s");
        assert_eq!(bad("file_max_bytes = 4194304", "file_max_bytes = 10"), "log.file_max_bytes");
        let text = format!("{without}\n[security]\ntrusted = [\"192.0.2.1\"]\nsip_rate = 50\nsip_burst = 100\n");
        let c = Config::from_toml(&text, 4).unwrap();
        assert_eq!(c.security.trusted, vec!["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(c.security.admission().rate, 50);
        let a = super::admission_for(&c, std::time::Instant::now());
        assert!(a.is_trusted(c.sip.proxy.ip()) && a.is_trusted("192.0.2.1".parse().unwrap()));
        assert!(!a.is_trusted("192.0.2.2".parse().unwrap()));
    }
}
