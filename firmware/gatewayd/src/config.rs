//! The configuration document: one TOML file with a schema (the structs below).
//!
//! A document is parsed and validated whole before anything uses it
//! ([`Config::from_toml`]); an error names the field and the reason. Nothing
//! here applies a configuration: the caller swaps in a fully validated
//! [`Config`] or keeps the one it has.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The embedded default for the sim board.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub system: System,
    pub sip: Sip,
    pub media: Media,
    pub dialplan: Dialplan,
    #[serde(default)]
    pub management: Management,
    #[serde(default)]
    pub fxs: Vec<FxsPortConfig>,
    /// Analog exchange lines (FXO ports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fxo: Vec<FxoPortConfig>,
    #[serde(default)]
    pub caller_id: CallerIdConfig,
    #[serde(default)]
    pub security: crate::limits::Security,
    #[serde(default)]
    pub limits: crate::limits::Limits,
    #[serde(default)]
    pub log: crate::limits::Log,
    /// More SIP trunks beside the `default` one of `[sip]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk: Vec<TrunkConfig>,
    /// Port groups for the routing table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group: Vec<gw_call::GroupConfig>,
    /// Emergency numbers: always routed, first to the PSTN (FXO) lines.
    #[serde(default)]
    pub emergency: EmergencyConfig,
    /// The routing table. Without it: the ports call each other by number,
    /// the dial plan's other numbers go to the `default` trunk, and calls
    /// from that trunk ring the port whose number they name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<gw_call::RouteConfig>,
    /// ISDN spans of the board put to use (`crate::isdn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub span: Vec<crate::isdn::SpanConfig>,
    /// The hardware watchdog (off by default).
    #[serde(default, skip_serializing_if = "is_default")]
    pub watchdog: crate::watchdog::WatchdogConfig,
    /// The console on a serial line (`serial_console.rs`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub console: crate::serial_console::SerialConsoleConfig,
    /// A/B upgrades (`upgrade.rs`); absent: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<crate::upgrade::UpgradeConfig>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `[emergency]`: the numbers that are routed as emergency calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyConfig {
    /// The numbers; absent: the country's (US 911; UK 999 and 112; DE 112 and
    /// 110; FR 112, 15, 17, 18; AU 000 and 112; JP 110 and 119; elsewhere
    /// 112). `[]`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numbers: Option<Vec<String>>,
    /// When every PSTN line is busy, an emergency call takes one from a
    /// non-emergency call (that call is released with cause 8).
    #[serde(default = "default_true")]
    pub preempt: bool,
}

impl Default for EmergencyConfig {
    fn default() -> Self {
        EmergencyConfig { numbers: None, preempt: true }
    }
}

/// The emergency numbers of a country profile code.
pub fn country_emergency_numbers(code: &str) -> &'static [&'static str] {
    match code {
        "US" | "CA" => &["911"],
        "UK" => &["999", "112"],
        "DE" => &["112", "110"],
        "FR" => &["112", "15", "17", "18"],
        "AU" => &["000", "112"],
        "JP" => &["110", "119"],
        _ => &["112"],
    }
}

/// Name of the trunk that `[sip]` configures.
pub const DEFAULT_TRUNK: &str = "default";

/// A SIP trunk (`[[trunk]]`): a carrier, a PBX or a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Used by the routing table (`from`, `to`) and in the status.
    pub name: String,
    /// Registrar and outbound proxy: every request of this trunk goes here.
    pub proxy: SocketAddr,
    /// SIP domain of the trunk's AORs; default: the proxy's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `none`: a peer that trusts us by address; `pilot`: one account
    /// (`username`) for the whole trunk, calls from any number;
    /// `per-number`: every FXS number registers its own account.
    #[serde(default)]
    pub register: RegisterMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default = "default_register_expires")]
    pub register_expires: u32,
    /// Addresses (`a.b.c.d`, `a.b.c.d/len`, IPv6 likewise) whose requests
    /// belong to this trunk; default: the proxy's address. A request from an
    /// address of no trunk is answered 403 and rings nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_from: Vec<String>,
    /// Codecs offered and accepted on this trunk; default `media.codecs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codecs: Vec<String>,
    /// OPTIONS health pings, seconds apart (0: off); after `options_failures`
    /// unanswered pings in a row the trunk is down and routing skips it.
    #[serde(default = "default_options_interval")]
    pub options_interval_s: u32,
    #[serde(default = "default_options_failures")]
    pub options_failures: u32,
    /// `limits = { max_calls = 8, calls_per_minute = 30, max_duration_s = 14400 }`
    #[serde(default, skip_serializing_if = "is_default_limits")]
    pub limits: TrunkLimits,
    /// Overrides of the RFC 3398 cause <-> status tables.
    #[serde(default, skip_serializing_if = "is_default_cause_map")]
    pub cause_map: gw_call::CauseMapConfig,
    /// The trunk is in our trust domain (RFC 3325): ISDN callers go out with
    /// `P-Asserted-Identity` (and `Privacy: id` when restricted), and its
    /// incoming `P-Asserted-Identity` gives the ISDN calling number. Default
    /// on (a carrier trunk); the `[sip]` default trunk never is.
    #[serde(default = "default_true")]
    pub trusted_identity: bool,
}

fn is_default_limits(l: &TrunkLimits) -> bool {
    l == &TrunkLimits::default()
}

fn is_default_cause_map(c: &gw_call::CauseMapConfig) -> bool {
    c == &gw_call::CauseMapConfig::default()
}

fn default_register_expires() -> u32 {
    300
}
fn default_options_interval() -> u32 {
    30
}
fn default_options_failures() -> u32 {
    2
}

/// How a trunk registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegisterMode {
    #[default]
    None,
    Pilot,
    PerNumber,
}

/// Per-trunk limits, each logged when it trips (absent: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkLimits {
    /// Simultaneous calls on the trunk, both directions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// New calls per minute, both directions (a sliding minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_minute: Option<u32>,
    /// A call is cleared after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_s: Option<u64>,
}

/// An address or network in `accept_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

impl IpNet {
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet { addr, len: if addr.is_ipv4() { 32 } else { 128 } }
    }

    pub fn parse(s: &str) -> Option<IpNet> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then_some(IpNet { addr, len })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
                IpAddr::V6(v) => u128::from(v),
            }
        };
        // An IPv4 address mapped in IPv6 is the IPv4 address.
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let len = u32::from(self.len);
        let shift = if self.addr.is_ipv4() { 32 - len + 96 } else { 128 - len };
        if shift >= 128 {
            return true;
        }
        (bits(ip) >> shift) == (bits(self.addr) >> shift)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// On-hook caller ID to the phones (Telcordia GR-30, ETSI EN 300 659).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerIdConfig {
    #[serde(default)]
    pub mode: CallerIdMode,
    /// FSK message layout: MDMF carries the name, SDMF only the number.
    #[serde(default)]
    pub format: CallerIdFormat,
    /// FSK and DT-AS level per tone, -25..-3 dBm0 (GR-30 and EN 300 659: -13.5 nominal).
    #[serde(default = "default_cid_level")]
    pub level_dbm0: f32,
    /// Local time offset from UTC for the message's date and time, in minutes.
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

impl Default for CallerIdConfig {
    fn default() -> Self {
        CallerIdConfig {
            mode: CallerIdMode::default(),
            format: CallerIdFormat::default(),
            level_dbm0: default_cid_level(),
            utc_offset_minutes: 0,
        }
    }
}

fn default_cid_level() -> f32 {
    -13.0
}

/// How caller ID is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallerIdMode {
    /// The usual procedure of `system.country` (see [`CallerIdMode::resolve`]).
    #[default]
    Auto,
    Off,
    /// Bell 202 FSK between the first and second ring (Telcordia GR-30).
    Bell202,
    /// V.23 FSK after the first ring (EN 300 659-1 5.2).
    EtsiFsk,
    /// Line reversal, DT-AS, V.23 FSK, then ringing (EN 300 659-1 5.3.1).
    EtsiDtas,
    /// Short ring burst, V.23 FSK, then ringing (EN 300 659-1 5.3.2).
    EtsiRpas,
    /// Line reversal and DTMF digits before the first ring (ETSI DTMF CLIP).
    Dtmf,
}

impl CallerIdMode {
    /// The concrete procedure: `Auto` becomes the country's usual one (US:
    /// Bell 202; UK: DT-AS as in BT SIN 227; NL: DTMF; DE, FR, IT, AU: V.23
    /// after the first ring; JP: off, its own ITU-T V.23 procedure with a
    /// CAR signal is not implemented).
    pub fn resolve(self, country: &str) -> CallerIdMode {
        match self {
            // The profile's own code: "gb" and "uk" are "UK".
            CallerIdMode::Auto => match gw_dsp::tones::profile(country).map_or("", |p| p.code) {
                "US" => CallerIdMode::Bell202,
                "UK" => CallerIdMode::EtsiDtas,
                "NL" => CallerIdMode::Dtmf,
                "DE" | "FR" | "IT" | "AU" => CallerIdMode::EtsiFsk,
                _ => CallerIdMode::Off,
            },
            m => m,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallerIdFormat {
    #[default]
    Mdmf,
    Sdmf,
}

/// Where installers reach the box. Local addresses only by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Management {
    /// Plain HTTP: `GET /api/status` (JSON) and a redirect to HTTPS.
    pub http_listen: SocketAddr,
    /// The web UI over HTTPS; by default the HTTP address with port + 363
    /// (8080 -> 8443).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_listen: Option<SocketAddr>,
    /// Line-oriented console (the sim board's stand-in for the serial console).
    pub console_listen: SocketAddr,
    /// No longer used (the web UI has accounts: `accounts.toml`); still
    /// read so that older files load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_password: Option<String>,
}

impl Management {
    /// Where the HTTPS web UI listens (see `https_listen`).
    pub fn https_listen(&self) -> SocketAddr {
        self.https_listen.unwrap_or_else(|| {
            let port = self.http_listen.port();
            SocketAddr::new(self.http_listen.ip(), if port == 0 { 0 } else { port.saturating_add(363) })
        })
    }
}

impl Default for Management {
    fn default() -> Self {
        Management {
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            https_listen: None,
            console_listen: SocketAddr::from(([127, 0, 0, 1], 5023)),
            web_password: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    pub country: String,
    #[serde(default)]
    pub rt_core: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    pub listen: SocketAddr,
    pub proxy: SocketAddr,
    pub domain: String,
    pub register_expires: u32,
    pub register_retry_base_s: u64,
    pub register_retry_max_s: u64,
    pub password: String,
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Addresses whose requests belong to the `default` trunk (see
    /// [`TrunkConfig::accept_from`]); default: the proxy's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_from: Vec<String>,
    /// OPTIONS health pings to the proxy, seconds apart (0: off, the default:
    /// the registration state tells whether the trunk is up).
    #[serde(default)]
    pub options_interval_s: u32,
}

fn default_user_agent() -> String {
    "gatewayd".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    pub rtp_ip: IpAddr,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub codecs: Vec<String>,
    pub telephone_event: u8,
    pub ptime_ms: u32,
    pub jitter_ms: u32,
    /// G.168 line echo cancellation on every analog channel.
    #[serde(default = "default_true")]
    pub echo_canceller: bool,
    /// Echo tail covered by the canceller, 16..=128 ms.
    #[serde(default = "default_echo_tail")]
    pub echo_tail_ms: u32,
    /// Fax or modem tone during a call: voice-band data for the rest of it
    /// (echo canceller and in-band DTMF detection off).
    #[serde(default = "default_true")]
    pub modem_bypass: bool,
    /// Hang up a call when the far end's audio carries the country's busy,
    /// reorder or congestion tone (a PSTN far end that has gone without
    /// signalling it).
    #[serde(default = "default_true")]
    pub disconnect_on_busy_tone: bool,
    /// Silence suppression with RFC 3389 comfort noise: offer and accept
    /// `CN/8000`; when the far end takes it, silence on the line is sent as
    /// CN packets (or nothing) instead of audio. Off by default, as on most
    /// carrier CPE (some SBCs and lawful-intercept paths mishandle gaps).
    #[serde(default)]
    pub silence_suppression: bool,
    /// Simultaneous calls between two SIP trunks (where a rule allows them):
    /// each takes two bridge channels in the rt thread (decoded, and
    /// re-encoded if the codecs differ).
    #[serde(default = "default_sip_bridges")]
    pub sip_bridges: u8,
}

fn default_sip_bridges() -> u8 {
    4
}

fn default_true() -> bool {
    true
}

fn default_echo_tail() -> u32 {
    64
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dialplan {
    pub patterns: Vec<String>,
    pub first_digit_timeout_ms: u64,
    pub inter_digit_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxsPortConfig {
    /// 1-based port number as printed on the box.
    pub port: usize,
    /// The subscriber number: the AOR user part and the calling number.
    pub number: String,
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// `[[fxo]]`: one exchange line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxoPortConfig {
    /// 1-based FXO port as printed on the box.
    pub port: usize,
    /// The line's own number (shown in the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Where the line's inbound calls go: this number, routed from the
    /// line's group (private line automatic ringdown to an extension, a hunt
    /// group or a trunk). Absent (and no two-stage PIN): inbound calls are
    /// not answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<String>,
    /// Two-stage dialling for inbound calls: the caller keys this PIN, then
    /// the number (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub two_stage_pin: Option<String>,
    /// Answer supervision: "speech" (the default), "polarity", or "assumed"
    /// (after `answer_after_ms`). A line reversal always counts as answer.
    #[serde(default = "default_fxo_answer")]
    pub answer: String,
    #[serde(default = "default_answer_after")]
    pub answer_after_ms: u32,
    /// Disconnect supervision, any of "cpc", "polarity", "tone" (default all).
    #[serde(default = "default_fxo_disconnect")]
    pub disconnect: Vec<String>,
    /// Shortest open-loop interval taken as a disconnect (default: the country's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpc_min_ms: Option<u32>,
    /// "detect" (dial tone, the default) or "wait" (dial 2 s after seizing).
    #[serde(default = "default_dial_tone")]
    pub dial_tone: String,
    /// "dtmf" (the default) or "pulse" (loop-disconnect: 10 pulses a second,
    /// 60 ms break, 40 ms make; digits 0-9 only).
    #[serde(default = "default_dial")]
    pub dial: String,
    /// Caller ID on the line: "auto" (the country's way), "none",
    /// "before-first-ring", "after-first-ring".
    #[serde(default = "default_auto")]
    pub caller_id: String,
}

fn default_fxo_answer() -> String {
    "speech".into()
}
fn default_answer_after() -> u32 {
    5000
}
fn default_fxo_disconnect() -> Vec<String> {
    vec!["cpc".into(), "polarity".into(), "tone".into()]
}
fn default_dial() -> String {
    "dtmf".into()
}
fn default_dial_tone() -> String {
    "detect".into()
}
fn default_auto() -> String {
    "auto".into()
}

impl FxoPortConfig {
    /// The line machine's settings: the country's defaults with this line's choices.
    pub fn line_config(&self, country: &str) -> Result<gw_line::fxo::FxoConfig, String> {
        use gw_line::fxo::{AnswerSupervision, DialToneWait, FxoCallerId, FxoConfig, TwoStage};
        let code = gw_dsp::tones::profile(country).map_or("US", |p| p.code);
        let mut c = FxoConfig::for_country(code).or_else(|| FxoConfig::for_country("US")).ok_or("no FXO defaults")?;
        c.answer = match self.answer.as_str() {
            "speech" => AnswerSupervision::SpeechEnergy,
            "polarity" => AnswerSupervision::PolarityReversal,
            "assumed" => AnswerSupervision::AssumedAfter(std::time::Duration::from_millis(self.answer_after_ms.into())),
            other => return Err(format!("answer: {other:?} is not speech, polarity or assumed")),
        };
        let mut d = c.disconnect;
        d.polarity_reversal = false;
        d.tone = false;
        let cpc = d.cpc_min.take();
        for m in &self.disconnect {
            match m.as_str() {
                "cpc" => d.cpc_min = self.cpc_min_ms.map(|ms| std::time::Duration::from_millis(ms.into())).or(cpc),
                "polarity" => d.polarity_reversal = true,
                "tone" => d.tone = true,
                other => return Err(format!("disconnect: {other:?} is not cpc, polarity or tone")),
            }
        }
        c.disconnect = d;
        c.dial_tone = match self.dial_tone.as_str() {
            "detect" => DialToneWait::Detect { timeout: std::time::Duration::from_secs(5) },
            "wait" => DialToneWait::Timed(std::time::Duration::from_secs(2)),
            other => return Err(format!("dial_tone: {other:?} is not detect or wait")),
        };
        c.dial = match self.dial.as_str() {
            "dtmf" => gw_line::fxo::DialMode::Dtmf,
            "pulse" => gw_line::fxo::DialMode::Pulse,
            other => return Err(format!("dial: {other:?} is not dtmf or pulse")),
        };
        c.caller_id = match self.caller_id.as_str() {
            "auto" => c.caller_id,
            "none" => FxoCallerId::None,
            "before-first-ring" => FxoCallerId::BeforeFirstRing,
            "after-first-ring" => FxoCallerId::AfterFirstRing,
            other => return Err(format!("caller_id: {other:?} is not auto, none, before-first-ring or after-first-ring")),
        };
        c.two_stage = self.two_stage_pin.as_deref().map(TwoStage::new);
        c.validate().map_err(str::to_string)?;
        Ok(c)
    }
}

/// Why a configuration was refused: the field (a TOML path) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The embedded default configuration.
    pub fn default_sim() -> Config {
        // The embedded default is validated by a unit test; a failure here is a
        // build defect, not an input error.
        Config::from_toml(DEFAULT_TOML, 4).expect("embedded default configuration is valid")
    }

    /// The embedded default for a board with `fxs_ports` FXS ports (the
    /// reference board has one): the default's `[[fxs]]` entries and group
    /// members beyond the board are left out.
    pub fn default_for_board(fxs_ports: usize) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(DEFAULT_TOML).map_err(|e| ConfigError::new("", e.to_string()))?;
        config.fxs.retain(|p| p.port <= fxs_ports);
        for g in &mut config.group {
            g.fxs.retain(|&p| p <= fxs_ports);
        }
        config.validate(fxs_ports)?;
        Ok(config)
    }

    /// Parses and validates a whole document for a board with `board_ports` FXS ports.
    pub fn from_toml(text: &str, board_ports: usize) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            // toml's message names the key and line; keep it whole.
            let msg = e.message().to_string();
            let field = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_default();
            ConfigError::new(field, msg)
        })?;
        config.validate(board_ports)?;
        Ok(config)
    }

    pub fn load(path: &Path, board_ports: usize) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml(&text, board_ports)
    }

    /// Checks every rule that the type system does not.
    pub fn validate(&self, board_ports: usize) -> Result<(), ConfigError> {
        if gw_dsp::tones::profile(&self.system.country).is_none() {
            return Err(ConfigError::new(
                "system.country",
                format!("unknown country profile {:?}", self.system.country),
            ));
        }
        self.watchdog.validate().map_err(|e| ConfigError::new("watchdog", e))?;
        self.console.validate().map_err(|e| ConfigError::new("console", e))?;
        if let Some(core) = self.system.rt_core {
            if core >= 1024 {
                return Err(ConfigError::new("system.rt_core", "core index out of range"));
            }
        }

        let sip = &self.sip;
        if sip.domain.is_empty() || sip.domain.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(ConfigError::new("sip.domain", "must be a host name or address"));
        }
        if sip.register_expires != 0 && sip.register_expires < 60 {
            return Err(ConfigError::new("sip.register_expires", "must be 0 or at least 60 s"));
        }
        if sip.register_retry_base_s == 0 {
            return Err(ConfigError::new("sip.register_retry_base_s", "must be at least 1 s"));
        }
        if sip.register_retry_max_s < sip.register_retry_base_s {
            return Err(ConfigError::new(
                "sip.register_retry_max_s",
                "must not be below register_retry_base_s",
            ));
        }
        if sip.user_agent.contains(['\r', '\n']) {
            return Err(ConfigError::new("sip.user_agent", "must be one line"));
        }
        check_secret("sip.password", &sip.password)?;
        if let Some(pw) = &self.management.web_password {
            check_secret("management.web_password", pw)?;
            if pw.len() < 8 {
                return Err(ConfigError::new("management.web_password", "must be at least 8 characters"));
            }
        }

        let m = &self.media;
        if m.rtp_port_min == 0 || m.rtp_port_min > m.rtp_port_max {
            return Err(ConfigError::new("media.rtp_port_min", "must be non-zero and <= rtp_port_max"));
        }
        let span = (m.rtp_port_max - m.rtp_port_min) as usize + 1;
        if span / 2 < self.fxs.len().max(1) {
            return Err(ConfigError::new(
                "media.rtp_port_max",
                format!("range holds {} even ports, fewer than the {} ports", span / 2, self.fxs.len()),
            ));
        }
        if m.codecs.is_empty() {
            return Err(ConfigError::new("media.codecs", "at least one codec is needed"));
        }
        for (i, c) in m.codecs.iter().enumerate() {
            if parse_codec(c).is_none() {
                return Err(ConfigError::new(
                    format!("media.codecs[{i}]"),
                    format!("unknown codec {c:?} (PCMU, PCMA, G722)"),
                ));
            }
        }
        if m.telephone_event != 0 && !(96..=127).contains(&m.telephone_event) {
            return Err(ConfigError::new("media.telephone_event", "must be 0 or a dynamic payload type 96..127"));
        }
        if !(10..=60).contains(&m.ptime_ms) || !m.ptime_ms.is_multiple_of(10) {
            return Err(ConfigError::new("media.ptime_ms", "must be 10, 20, 30, 40, 50 or 60"));
        }
        if !(20..=200).contains(&m.jitter_ms) || !m.jitter_ms.is_multiple_of(10) {
            return Err(ConfigError::new("media.jitter_ms", "must be a multiple of 10 within 20..200"));
        }

        if m.sip_bridges > 32 {
            return Err(ConfigError::new("media.sip_bridges", "must be within 0..32"));
        }
        if !(16..=128).contains(&m.echo_tail_ms) {
            return Err(ConfigError::new("media.echo_tail_ms", "must be within 16..128"));
        }

        let c = &self.caller_id;
        if !(-25.0..=-3.0).contains(&c.level_dbm0) {
            return Err(ConfigError::new("caller_id.level_dbm0", "must be within -25..-3 dBm0"));
        }
        if c.utc_offset_minutes.abs() > 14 * 60 {
            return Err(ConfigError::new("caller_id.utc_offset_minutes", "must be within -840..840"));
        }

        for (i, a) in self.sip.accept_from.iter().enumerate() {
            if IpNet::parse(a).is_none() {
                return Err(ConfigError::new(format!("sip.accept_from[{i}]"), format!("{a:?} is not an address or a.b.c.d/len network")));
            }
        }

        let d = &self.dialplan;
        if d.patterns.is_empty() {
            return Err(ConfigError::new("dialplan.patterns", "at least one pattern is needed"));
        }
        for (i, p) in d.patterns.iter().enumerate() {
            if let Err(e) = gw_line::DialPlan::new(&[p.as_str()]) {
                return Err(ConfigError::new(format!("dialplan.patterns[{i}]"), format!("{e:?}")));
            }
        }
        if !(1000..=60_000).contains(&d.inter_digit_timeout_ms) {
            return Err(ConfigError::new("dialplan.inter_digit_timeout_ms", "must be within 1000..60000"));
        }
        if !(1000..=120_000).contains(&d.first_digit_timeout_ms) {
            return Err(ConfigError::new("dialplan.first_digit_timeout_ms", "must be within 1000..120000"));
        }

        crate::limits::validate(&self.security, &self.limits, &self.log)?;

        let mut seen_ports = Vec::new();
        let mut seen_numbers: Vec<&str> = Vec::new();
        for (i, p) in self.fxs.iter().enumerate() {
            let field = |name: &str| format!("fxs[{i}].{name}");
            if p.port == 0 || p.port > board_ports {
                return Err(ConfigError::new(
                    field("port"),
                    format!("the board has FXS ports 1..{board_ports}"),
                ));
            }
            if seen_ports.contains(&p.port) {
                return Err(ConfigError::new(field("port"), format!("port {} configured twice", p.port)));
            }
            seen_ports.push(p.port);
            if p.number.is_empty() || p.number.len() > 32 || !p.number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::new(field("number"), "must be 1 to 32 digits"));
            }
            if seen_numbers.contains(&p.number.as_str()) {
                return Err(ConfigError::new(field("number"), format!("number {} used twice", p.number)));
            }
            seen_numbers.push(&p.number);
            if let Some(u) = &p.auth_user {
                if u.is_empty() || u.contains(|c: char| c.is_whitespace() || c == '"' || c == '@') {
                    return Err(ConfigError::new(field("auth_user"), "must be a plain user name"));
                }
            }
            if let Some(pw) = &p.password {
                check_secret(&field("password"), pw)?;
            }
        }
        // Last: the routing table needs the ports and the dial plan checked.
        self.validate_trunks()
    }

    fn validate_trunks(&self) -> Result<(), ConfigError> {
        let mut names = vec![DEFAULT_TRUNK];
        for (i, t) in self.trunk.iter().enumerate() {
            let field = |name: &str| format!("trunk[{i}].{name}");
            if t.name.is_empty() || t.name.len() > 32 || !t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(ConfigError::new(field("name"), "must be 1 to 32 letters, digits, '-' or '_'"));
            }
            if names.contains(&t.name.as_str()) {
                return Err(ConfigError::new(field("name"), format!("trunk {:?} is defined twice (\"default\" is [sip])", t.name)));
            }
            names.push(&t.name);
            if t.proxy == self.sip.proxy || self.trunk[..i].iter().any(|o| o.proxy == t.proxy) {
                return Err(ConfigError::new(field("proxy"), format!("{} is already the proxy of another trunk", t.proxy)));
            }
            if let Some(d) = &t.domain {
                if d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == '@') {
                    return Err(ConfigError::new(field("domain"), "must be a host name or address"));
                }
            }
            match t.register {
                RegisterMode::Pilot if t.username.as_deref().is_none_or(|u| !u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') || u.is_empty()) => {
                    return Err(ConfigError::new(field("username"), "a pilot account needs a username (letters, digits, +)"));
                }
                RegisterMode::Pilot | RegisterMode::PerNumber if t.password.is_none() => {
                    return Err(ConfigError::new(field("password"), "a registering trunk needs a password"));
                }
                _ => {}
            }
            if let Some(pw) = &t.password {
                check_secret(&field("password"), pw)?;
            }
            if t.register != RegisterMode::None && t.register_expires != 0 && t.register_expires < 60 {
                return Err(ConfigError::new(field("register_expires"), "must be 0 or at least 60 s"));
            }
            for (k, a) in t.accept_from.iter().enumerate() {
                if IpNet::parse(a).is_none() {
                    return Err(ConfigError::new(format!("trunk[{i}].accept_from[{k}]"), format!("{a:?} is not an address or a.b.c.d/len network")));
                }
            }
            for (k, c) in t.codecs.iter().enumerate() {
                if parse_codec(c).is_none() {
                    return Err(ConfigError::new(format!("trunk[{i}].codecs[{k}]"), format!("unknown codec {c:?} (PCMU, PCMA, G722)")));
                }
            }
            if t.options_interval_s != 0 && !(5..=3600).contains(&t.options_interval_s) {
                return Err(ConfigError::new(field("options_interval_s"), "must be 0 (off) or within 5..3600"));
            }
            if !(1..=10).contains(&t.options_failures) {
                return Err(ConfigError::new(field("options_failures"), "must be within 1..10"));
            }
            if t.limits.max_calls == Some(0) || t.limits.calls_per_minute == Some(0) || t.limits.max_duration_s == Some(0) {
                return Err(ConfigError::new(field("max_calls"), "limits must be at least 1 (leave one out for no limit)"));
            }
            if let Err(e) = gw_call::CauseMap::new(&t.cause_map) {
                return Err(ConfigError::new(format!("trunk[{i}].cause_map.{}", e.field), e.message));
            }
        }
        if let Some(numbers) = &self.emergency.numbers {
            for (k, n) in numbers.iter().enumerate() {
                if n.is_empty() || n.len() > 16 || !n.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#') {
                    return Err(ConfigError::new(format!("emergency.numbers[{k}]"), "must be 1 to 16 digits, * or #"));
                }
            }
        }
        let mut seen = Vec::new();
        for (i, f) in self.fxo.iter().enumerate() {
            let field = |n: &str| format!("fxo[{i}].{n}");
            if f.port == 0 || f.port > 32 || seen.contains(&f.port) {
                return Err(ConfigError::new(field("port"), "must be a port number 1..32, each once"));
            }
            seen.push(f.port);
            let digits = |v: &Option<String>| v.as_ref().is_none_or(|n| !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'));
            if !digits(&f.number) {
                return Err(ConfigError::new(field("number"), "must be 1 to 32 digits"));
            }
            if !digits(&f.inbound) {
                return Err(ConfigError::new(field("inbound"), "must be 1 to 32 digits, * or #"));
            }
            if let Err(e) = f.line_config(&self.system.country) {
                let (name, reason) = e.split_once(": ").map_or(("", e.as_str()), |x| x);
                return Err(ConfigError::new(if name.is_empty() { format!("fxo[{i}]") } else { field(name) }, reason.to_string()));
            }
        }
        if self.sip.options_interval_s != 0 && !(5..=3600).contains(&self.sip.options_interval_s) {
            return Err(ConfigError::new("sip.options_interval_s", "must be 0 (off) or within 5..3600"));
        }
        for (gi, g) in self.group.iter().enumerate() {
            for (k, p) in g.fxs.iter().enumerate() {
                if !self.fxs.iter().any(|f| f.port == *p) {
                    return Err(ConfigError::new(format!("group[{gi}].fxs[{k}]"), format!("port {p} has no [[fxs]] entry")));
                }
            }
            for (k, p) in g.fxo.iter().enumerate() {
                if !self.fxo.iter().any(|f| f.port == *p) {
                    return Err(ConfigError::new(format!("group[{gi}].fxo[{k}]"), format!("FXO port {p} has no [[fxo]] entry")));
                }
            }
        }
        crate::isdn::validate_spans(&self.span)?;
        for (i, sp) in self.span.iter().enumerate() {
            if let Some(g) = &sp.group {
                if !self.group.iter().any(|x| &x.name == g) {
                    return Err(ConfigError::new(format!("span[{i}].group"), format!("{g:?} is not a [[group]]")));
                }
            }
        }
        self.route_table().map(|_| ())
    }

    /// Settings an installer must not leave as shipped.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let shipped = |p: &str| p == "change-me";
        if shipped(&self.sip.password) || self.fxs.iter().any(|f| f.password.as_deref().is_some_and(shipped)) {
            w.push("the SIP password is the shipped default \"change-me\": set sip.password".to_string());
        }
        for t in &self.trunk {
            if t.password.as_deref().is_some_and(shipped) {
                w.push(format!("trunk {:?} has the shipped default password \"change-me\"", t.name));
            }
        }
        w
    }

    /// The emergency numbers in force (configured, else the country's).
    pub fn emergency_numbers(&self) -> Vec<String> {
        match &self.emergency.numbers {
            Some(n) => n.clone(),
            None => {
                let code = gw_dsp::tones::profile(&self.system.country).map_or("", |p| p.code);
                country_emergency_numbers(code).iter().map(|s| s.to_string()).collect()
            }
        }
    }

    /// The names of the SIP trunks, `default` first.
    pub fn trunk_names(&self) -> Vec<String> {
        std::iter::once(DEFAULT_TRUNK.to_string()).chain(self.trunk.iter().map(|t| t.name.clone())).collect()
    }

    /// The routing table, checked whole (an error names the rule), with its
    /// warnings. Without `[[route]]`, the table of the single-trunk box:
    /// group `phones` (every configured port); rule 0 `local`: the ports'
    /// own numbers from `phones` and `default` to their owner; rule 1
    /// `trunk`: the dial plan's patterns from `phones` to `default`.
    pub fn route_table(&self) -> Result<(gw_call::RouteTable, Vec<gw_call::RouteWarning>), ConfigError> {
        let names = self.trunk_names();
        let to_error = |e: gw_call::RouteError| {
            let text = e.to_string();
            let (field, reason) = text.split_once(": ").map_or((String::new(), text.clone()), |(f, r)| (f.to_string(), r.to_string()));
            ConfigError::new(field, reason)
        };
        if !self.route.is_empty() {
            let mut routes = self.route.clone();
            routes.extend(self.emergency_route(&self.group, &names));
            return gw_call::RouteTable::new(&self.group, &names, &routes).map_err(to_error);
        }
        let (groups, mut routes) = self.legacy_routes();
        routes.extend(self.emergency_route(&groups, &names));
        gw_call::RouteTable::new(&groups, &names, &routes).map_err(|e| {
            ConfigError::new("dialplan.patterns", format!("the implicit routing table is refused: {e}"))
        })
    }

    /// The emergency rule, unless the table has one of its own: the
    /// emergency numbers from every group with phones, to every group with
    /// PSTN (FXO) lines first, then every trunk; never refused for limits.
    /// It comes last in the file (so the installer's rule indexes stay) but
    /// is looked up first.
    pub fn emergency_route(&self, groups: &[gw_call::GroupConfig], trunks: &[String]) -> Option<gw_call::RouteConfig> {
        let numbers = self.emergency_numbers();
        let from: Vec<String> = groups.iter().filter(|g| !g.fxs.is_empty()).map(|g| g.name.clone()).collect();
        if numbers.is_empty() || from.is_empty() || self.route.iter().any(|r| r.emergency) {
            return None;
        }
        let pstn = groups.iter().filter(|g| !g.fxo.is_empty()).map(|g| gw_call::DestinationConfig { group: Some(g.name.clone()), ..Default::default() });
        let sip = trunks.iter().map(|t| gw_call::DestinationConfig { trunk: Some(t.clone()), ..Default::default() });
        Some(gw_call::RouteConfig {
            name: Some("emergency".into()),
            emergency: true,
            from,
            called: numbers.iter().map(|n| format!("exact:{n}")).collect(),
            to: pstn.chain(sip).collect(),
            ..Default::default()
        })
    }

    /// The implicit table of a configuration without `[[route]]` (see
    /// [`Config::route_table`]).
    pub fn legacy_routes(&self) -> (Vec<gw_call::GroupConfig>, Vec<gw_call::RouteConfig>) {
        let phones = gw_call::GroupConfig { name: "phones".into(), fxs: self.fxs.iter().map(|f| f.port).collect(), fxo: vec![] };
        let local = gw_call::RouteConfig {
            name: Some("local".into()),
            from: vec!["phones".into(), DEFAULT_TRUNK.into()],
            called: self.fxs.iter().map(|f| format!("exact:{}", f.number)).collect(),
            to: vec![gw_call::DestinationConfig { owner: true, ..Default::default() }],
            ..Default::default()
        };
        let trunk = gw_call::RouteConfig {
            name: Some("trunk".into()),
            from: vec!["phones".into()],
            called: self.dialplan.patterns.clone(),
            to: vec![gw_call::DestinationConfig { trunk: Some(DEFAULT_TRUNK.into()), ..Default::default() }],
            ..Default::default()
        };
        let routes = if self.fxs.is_empty() { vec![trunk] } else { vec![local, trunk] };
        (vec![phones], routes)
    }

    /// Codecs in preference order.
    pub fn codecs(&self) -> Vec<gw_sip::sdp::Codec> {
        self.media.codecs.iter().filter_map(|c| parse_codec(c)).collect()
    }
}

fn check_secret(field: &str, s: &str) -> Result<(), ConfigError> {
    if s.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if s.contains(['"', '\\', '\r', '\n']) {
        return Err(ConfigError::new(field, "must not contain quotes, backslashes or line breaks"));
    }
    Ok(())
}

pub fn parse_codec(name: &str) -> Option<gw_sip::sdp::Codec> {
    match name.to_ascii_uppercase().as_str() {
        "PCMU" => Some(gw_sip::sdp::Codec::Pcmu),
        "PCMA" => Some(gw_sip::sdp::Codec::Pcma),
        "G722" => Some(gw_sip::sdp::Codec::G722),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(edit: impl FnOnce(&mut toml::Table)) -> String {
        let mut t: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
        edit(&mut t);
        toml::to_string(&t).unwrap()
    }

    fn err(text: &str) -> ConfigError {
        Config::from_toml(text, 4).unwrap_err()
    }

    #[test]
    fn the_shipped_default_password_is_warned_about() {
        let c = Config::default_sim();
        assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
        let text = with(|t| {
            t["sip"].as_table_mut().unwrap().insert("password".into(), "s3cret-of-the-site".into());
        });
        assert!(Config::from_toml(&text, 4).unwrap().warnings().is_empty());
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::default_sim();
        assert_eq!(c.fxs.len(), 4);
        assert_eq!(c.fxs[0].number, "1001");
        assert_eq!(c.codecs(), vec![gw_sip::sdp::Codec::Pcmu, gw_sip::sdp::Codec::Pcma]);
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = err("[system]\ncountry = \n");
        assert!(e.field.starts_with("line "), "{e}");
    }

    #[test]
    fn unknown_field_is_refused() {
        let text = with(|t| {
            t["sip"].as_table_mut().unwrap().insert("passwd".into(), "x".into());
        });
        let e = err(&text);
        assert!(e.reason.contains("passwd"), "{e}");
    }

    #[test]
    fn unknown_country_names_the_field() {
        let text = with(|t| {
            t["system"].as_table_mut().unwrap().insert("country".into(), "XX".into());
        });
        assert_eq!(err(&text).field, "system.country");
    }

    #[test]
    fn port_outside_the_board_is_refused() {
        let text = with(|t| {
            let fxs = t["fxs"].as_array_mut().unwrap();
            fxs[3].as_table_mut().unwrap().insert("port".into(), 9.into());
        });
        let e = err(&text);
        assert_eq!(e.field, "fxs[3].port");
        assert!(e.reason.contains("1..4"), "{e}");
    }

    #[test]
    fn duplicate_number_is_refused() {
        let text = with(|t| {
            let fxs = t["fxs"].as_array_mut().unwrap();
            fxs[1].as_table_mut().unwrap().insert("number".into(), "1001".into());
        });
        assert_eq!(err(&text).field, "fxs[1].number");
    }

    #[test]
    fn caller_id_defaults_follow_the_country() {
        let c = Config::default_sim();
        assert_eq!(c.caller_id.mode, CallerIdMode::Auto);
        assert_eq!(c.caller_id.mode.resolve("US"), CallerIdMode::Bell202);
        assert_eq!(c.caller_id.mode.resolve("UK"), CallerIdMode::EtsiDtas);
        assert_eq!(c.caller_id.mode.resolve("gb"), CallerIdMode::EtsiDtas);
        assert_eq!(c.caller_id.mode.resolve("JP"), CallerIdMode::Off);
        assert_eq!(CallerIdMode::Dtmf.resolve("US"), CallerIdMode::Dtmf, "explicit modes stay");
        let text = with(|t| {
            let mut cid = toml::Table::new();
            cid.insert("mode".into(), "etsi-rpas".into());
            cid.insert("format".into(), "sdmf".into());
            t.insert("caller_id".into(), cid.into());
        });
        let c = Config::from_toml(&text, 4).unwrap();
        assert_eq!((c.caller_id.mode, c.caller_id.format), (CallerIdMode::EtsiRpas, CallerIdFormat::Sdmf));
    }

    #[test]
    fn bad_caller_id_settings_are_refused() {
        let text = with(|t| {
            let mut cid = toml::Table::new();
            cid.insert("mode".into(), "bell203".into());
            t.insert("caller_id".into(), cid.into());
        });
        let e = err(&text);
        assert!(e.reason.contains("bell203"), "{e}");
        let text = with(|t| {
            let mut cid = toml::Table::new();
            cid.insert("level_dbm0".into(), 0.0.into());
            t.insert("caller_id".into(), cid.into());
        });
        assert_eq!(err(&text).field, "caller_id.level_dbm0");
        let text = with(|t| {
            let mut cid = toml::Table::new();
            cid.insert("utc_offset_minutes".into(), 900.into());
            t.insert("caller_id".into(), cid.into());
        });
        assert_eq!(err(&text).field, "caller_id.utc_offset_minutes");
    }

    #[test]
    fn bad_dialplan_pattern_names_its_index() {
        let text = with(|t| {
            let d = t["dialplan"].as_table_mut().unwrap();
            d.insert("patterns".into(), toml::Value::Array(vec!["1xxx".into(), "[9".into()]));
        });
        assert_eq!(err(&text).field, "dialplan.patterns[1]");
    }

    #[test]
    fn bad_codec_and_ptime_are_refused() {
        let text = with(|t| {
            let m = t["media"].as_table_mut().unwrap();
            m.insert("codecs".into(), toml::Value::Array(vec!["G729".into()]));
        });
        assert_eq!(err(&text).field, "media.codecs[0]");
        let text = with(|t| {
            t["media"].as_table_mut().unwrap().insert("ptime_ms".into(), 25.into());
        });
        assert_eq!(err(&text).field, "media.ptime_ms");
    }

    #[test]
    fn silence_suppression_is_an_optional_bool_off_by_default() {
        assert!(!Config::default_sim().media.silence_suppression);
        let text = with(|t| {
            t["media"].as_table_mut().unwrap().remove("silence_suppression");
        });
        assert!(!Config::from_toml(&text, 4).unwrap().media.silence_suppression, "absent means off");
        let text = with(|t| {
            t["media"].as_table_mut().unwrap().insert("silence_suppression".into(), true.into());
        });
        assert!(Config::from_toml(&text, 4).unwrap().media.silence_suppression);
        let text = with(|t| {
            t["media"].as_table_mut().unwrap().insert("silence_suppression".into(), "yes".into());
        });
        let e = err(&text);
        assert!(e.to_string().contains("bool"), "{e}");
    }

    #[test]
    fn password_with_quote_is_refused() {
        let text = with(|t| {
            t["sip"].as_table_mut().unwrap().insert("password".into(), "a\"b".into());
        });
        assert_eq!(err(&text).field, "sip.password");
    }
}
