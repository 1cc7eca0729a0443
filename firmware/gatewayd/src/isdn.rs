//! ISDN spans: `[[span]]` configuration, the span manager that runs layers
//! 2 and 3 (gw-isdn's [`gw_isdn::span::Span`]: Q.921 and the Q.931 call
//! control) on each span's D channel, `show isdn`, and the D-channel capture
//! (pcap, `LINKTYPE_LINUX_LAPD`).
//!
//! Layering: the HAL's [`DChannel`] hands over whole, FCS-checked LAPD frames
//! and layer-1 state; a [`Span`] feeds them to gw-isdn with `now` from the
//! caller (sans-IO, like the other protocol cores) and sends what it wants
//! sent. It asks for layer 1 at start (and again every [`L1_RETRY`] while it
//! is down), establishes layer 2 (SABME/UA) as soon as layer 1 is active,
//! re-establishes it [`L2_RETRY`] after a loss, and starts afresh (counted)
//! when layer 1 goes: every call of the span is then released with cause 38
//! ([`CAUSE_L1_LOST`]). A layer-2 loss alone is Q.931's business (T309, then
//! cause 27 for the calls that were up).
//!
//! The spans belong to the [`crate::gateway::Gateway`]: the B-channels are its
//! ISDN legs (the call events of [`Span::poll_event`], the requests of
//! [`Span::request`]); the driver polls them on its tick.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[cfg(test)]
use gw_isdn::q921::DataLink;

use gw_hal::isdn::{DChannel, L1Status, Side, SpanInfo, SpanKind};
use gw_isdn::call;
use gw_isdn::q921;
use gw_isdn::span::SpanEvent;
use std::collections::HashMap;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::ConfigError;

/// How often a span asks for layer 1 again while it is down.
pub const L1_RETRY: Duration = Duration::from_secs(5);
/// How long after a layer-2 loss the span establishes it again.
pub const L2_RETRY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------- config

/// `[[span]]`: one ISDN span of the board put to use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanConfig {
    /// The name the console and the status use ("carrier", "pbx").
    pub name: String,
    /// The board's span (0-based index of its `[[spans]]`).
    pub index: usize,
    /// "bri" or "pri"; must be what the board has at `index`.
    pub kind: String,
    /// The gateway's side: "te" (user side, on a carrier's line) or "nt"
    /// (network side, serving a PBX).
    pub role: String,
    /// "ptp" (point-to-point, TEI 0) or "ptmp" (BRI point-to-multipoint).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// The Q.931 variant: "euroisdn" (ETSI EN 300 403) or "qsig" (ECMA-143,
    /// PINX to PINX); gw-isdn's `call::Variant` table.
    #[serde(default = "default_switch")]
    pub switch: String,
    /// B-channels in use, by number (BRI 1-2; E1 PRI timeslots 1-15, 17-31).
    /// Absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<u8>>,
    /// "line" (recover the clock from this span) or "internal". Absent: line
    /// on a TE span, internal on an NT span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// The routing table's group of the span (a `[[group]]` name): the
    /// source of its incoming calls, and where routes send calls out on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Outgoing SETUPs ask for their B-channel as "exclusive" (true) or
    /// "preferred" (false, the default: the network may pick another).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// Overlap sending towards this span: an ISDN overlap caller whose
    /// number a route to this span's group already matches (but might go
    /// on) is sent out at once, SETUP with the digits so far and INFORMATION
    /// for the rest; the far network decides when the number is complete.
    /// False (the default): numbers go out en bloc with "sending complete".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overlap: bool,
    /// Write every D-channel frame of this span to this pcap file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<PathBuf>,
}

fn default_mode() -> String {
    "ptp".into()
}

fn default_switch() -> String {
    "euroisdn".into()
}

impl SpanConfig {
    pub fn span_kind(&self) -> SpanKind {
        if self.kind == "pri" {
            SpanKind::Pri
        } else {
            SpanKind::Bri
        }
    }

    /// BRI point-to-multipoint: TEIs by TEI management, data links on
    /// demand, the network side's SETUP broadcast on TEI 127.
    pub fn ptmp(&self) -> bool {
        self.mode == "ptmp"
    }

    pub fn side(&self) -> Side {
        if self.role == "nt" {
            Side::Nt
        } else {
            Side::Te
        }
    }

    pub fn clock_source(&self) -> &str {
        match (&self.clock, self.side()) {
            (Some(c), _) => c,
            (None, Side::Te) => "line",
            (None, Side::Nt) => "internal",
        }
    }

    /// B-channel numbers in use (validated).
    pub fn channels_in_use(&self) -> Vec<u8> {
        let kind = self.span_kind();
        self.channels
            .clone()
            .unwrap_or_else(|| (0..kind.b_channels()).map(|b| kind.channel_number(b) as u8).collect())
    }
}

/// Checks `[[span]]` on its own (the board is checked by [`check_board`]).
pub fn validate_spans(spans: &[SpanConfig]) -> Result<(), ConfigError> {
    let mut names = Vec::new();
    let mut indexes = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let field = |n: &str| format!("span[{i}].{n}");
        let name_ok = !s.name.is_empty()
            && s.name.len() <= 32
            && s.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(ConfigError::new(field("name"), "must be 1 to 32 letters, digits, '-' or '_'"));
        }
        if names.contains(&s.name.as_str()) {
            return Err(ConfigError::new(field("name"), format!("{:?} names two spans", s.name)));
        }
        names.push(&s.name);
        if indexes.contains(&s.index) {
            return Err(ConfigError::new(field("index"), format!("board span {} is configured twice", s.index)));
        }
        indexes.push(s.index);
        if s.kind != "bri" && s.kind != "pri" {
            return Err(ConfigError::new(field("kind"), "must be \"bri\" or \"pri\""));
        }
        if s.role != "te" && s.role != "nt" {
            return Err(ConfigError::new(field("role"), "must be \"te\" (user side) or \"nt\" (network side)"));
        }
        match s.mode.as_str() {
            "ptp" => {}
            "ptmp" if s.kind == "pri" => {
                return Err(ConfigError::new(field("mode"), "a PRI is point-to-point: must be \"ptp\""))
            }
            "ptmp" => {}
            _ => return Err(ConfigError::new(field("mode"), "must be \"ptp\" or \"ptmp\"")),
        }
        match s.switch.as_str() {
            "euroisdn" | "qsig" => {}
            "ni2" => return Err(ConfigError::new(field("switch"), "\"ni2\" is a T1 PRI variant and the board's spans are E1 or BRI: use \"euroisdn\" or \"qsig\"")),
            _ => return Err(ConfigError::new(field("switch"), "must be \"euroisdn\" (ETSI) or \"qsig\" (PINX to PINX)")),
        }
        if let Some(c) = &s.clock {
            if c != "line" && c != "internal" {
                return Err(ConfigError::new(field("clock"), "must be \"line\" or \"internal\""));
            }
        }
        if let Some(ch) = &s.channels {
            let kind = s.span_kind();
            let valid: Vec<u8> = (0..kind.b_channels()).map(|b| kind.channel_number(b) as u8).collect();
            if ch.is_empty() {
                return Err(ConfigError::new(field("channels"), "lists no channel (leave it out for all)"));
            }
            for (k, c) in ch.iter().enumerate() {
                if !valid.contains(c) {
                    let what = if kind == SpanKind::Pri { "1-15 or 17-31 (16 is the D channel)" } else { "1 or 2" };
                    return Err(ConfigError::new(format!("span[{i}].channels[{k}]"), format!("{c} is not a B-channel: must be {what}")));
                }
                if ch[..k].contains(c) {
                    return Err(ConfigError::new(format!("span[{i}].channels[{k}]"), format!("channel {c} is listed twice")));
                }
            }
        }
        if let Some(g) = &s.group {
            if g.is_empty() {
                return Err(ConfigError::new(field("group"), "must name a [[group]]"));
            }
        }
        if let Some(p) = &s.capture {
            if p.as_os_str().is_empty() {
                return Err(ConfigError::new(field("capture"), "must be a file path"));
            }
        }
    }
    Ok(())
}

/// Checks `[[span]]` against the board: the span exists and is of that kind.
pub fn check_board(spans: &[SpanConfig], board: &[SpanInfo]) -> Result<(), ConfigError> {
    for (i, s) in spans.iter().enumerate() {
        let Some(b) = board.get(s.index) else {
            return Err(ConfigError::new(
                format!("span[{i}].index"),
                format!("the board has {} ISDN span(s); there is no span {}", board.len(), s.index),
            ));
        };
        if b.kind != s.span_kind() {
            return Err(ConfigError::new(
                format!("span[{i}].kind"),
                format!("board span {} ({}) is a {}, not a {}", s.index, b.label, b.kind.name(), s.kind),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- pcap

/// pcap link type of Linux LAPD captures: a 16-byte "cooked" header that
/// says the direction and the side, then the LAPD frame (no FCS).
pub const LINKTYPE_LINUX_LAPD: u32 = 177;

/// Writes a D-channel capture: the pcap file header, then one record per
/// frame, each written whole (so the file is readable while it grows).
pub struct PcapWriter {
    out: Box<dyn std::io::Write + Send>,
    /// We are the network side (the header's `we_network` byte).
    we_network: bool,
    pub frames: u64,
}

impl std::fmt::Debug for PcapWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapWriter").field("frames", &self.frames).finish()
    }
}

impl PcapWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path, we_network: bool) -> std::io::Result<PcapWriter> {
        let f = std::fs::File::create(path)?;
        PcapWriter::new(Box::new(f), we_network)
    }

    pub fn new(mut out: Box<dyn std::io::Write + Send>, we_network: bool) -> std::io::Result<PcapWriter> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes()); // microsecond timestamps
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // GMT
        h.extend_from_slice(&0u32.to_le_bytes()); // accuracy
        h.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
        h.extend_from_slice(&LINKTYPE_LINUX_LAPD.to_le_bytes());
        out.write_all(&h)?;
        out.flush()?;
        Ok(PcapWriter { out, we_network, frames: 0 })
    }

    /// One frame, `outgoing` if we sent it.
    pub fn frame(&mut self, at: SystemTime, outgoing: bool, frame: &[u8]) -> std::io::Result<()> {
        let t = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let len = (16 + frame.len()) as u32;
        let mut r = Vec::with_capacity(16 + len as usize);
        r.extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
        r.extend_from_slice(&t.subsec_micros().to_le_bytes());
        r.extend_from_slice(&len.to_le_bytes());
        r.extend_from_slice(&len.to_le_bytes());
        // The Linux cooked header, big endian: packet type (0 to us, 4
        // outgoing), ARPHRD_LAPD, address length 1, address (its first
        // octet: 1 if we are the network side), protocol ETH_P_LAPD.
        r.extend_from_slice(&(if outgoing { 4u16 } else { 0 }).to_be_bytes());
        r.extend_from_slice(&8445u16.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        let mut addr = [0u8; 8];
        addr[0] = u8::from(self.we_network);
        r.extend_from_slice(&addr);
        r.extend_from_slice(&0x0030u16.to_be_bytes());
        r.extend_from_slice(frame);
        self.out.write_all(&r)?;
        self.out.flush()?;
        self.frames += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------- status

/// One span in `show isdn` and `GET /api/status` (`isdn`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SpanStatus {
    pub name: String,
    /// The board's label ("PRI 1").
    pub label: String,
    pub kind: String,
    pub role: String,
    pub mode: String,
    pub switch: String,
    pub clock: String,
    /// "activated", "activating" or "deactivated".
    pub l1: String,
    /// E1 alarms: "none" or e.g. "LOS", "AIS,RAI".
    pub alarms: String,
    /// Q.921 state: "multiple-frame-established", "awaiting-establishment", ...
    pub l2: String,
    /// Layer 2 up: multiple frame established (or timer recovery).
    pub l2_up: bool,
    pub tei: u8,
    /// Point-to-multipoint: every assigned TEI (the network side's TEs, or
    /// the user side's own) with its data link's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teis: Vec<TeiStatus>,
    pub counters: SpanCounters,
    pub b_channels: Vec<BChannelStatus>,
    /// The pcap file the D channel is written to, if any.
    pub capture: Option<String>,
}

/// One TEI of a point-to-multipoint BRI.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TeiStatus {
    pub tei: u8,
    /// Its data link's Q.921 state ("multiple-frame-established", ...).
    pub l2: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct SpanCounters {
    /// Frames from the D channel (FCS good) and sent to it.
    pub frames_in: u64,
    pub frames_out: u64,
    /// Dropped below the HAL: bad FCS; too short or long.
    pub bad_fcs: u64,
    pub malformed: u64,
    pub l1_changes: u64,
    /// Layer 1 went away while it was up.
    pub l1_losses: u64,
    /// Layer 2 became established / was lost (released, or by layer 1).
    pub l2_establishments: u64,
    pub l2_losses: u64,
    /// Q.921 management errors (MDL-ERROR, letters as in Q.921 table II.1).
    pub mdl_errors: u64,
    pub retransmitted: u64,
    /// Q.931 messages received in I frames; those that did not parse.
    pub q931_in: u64,
    pub q931_bad: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BChannelStatus {
    /// B1, B2 on a BRI; the E1 timeslot on a PRI.
    pub number: u8,
    /// PCM bus timeslot carrying it.
    pub timeslot: u16,
    /// "idle", "busy", or "unused" (not in the span's `channels`).
    pub state: String,
    /// The call on it: "call ref 3 in 5551234 -> 1001 (Active)" (the Q.931
    /// call reference, the direction, the numbers and the Q.931 state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<String>,
}

/// `show isdn`.
pub fn show_isdn(spans: &[SpanStatus]) -> String {
    if spans.is_empty() {
        return "no ISDN span configured ([[span]])\n".into();
    }
    let mut s = String::new();
    for p in spans {
        let _ = writeln!(
            s,
            "span {} ({}): {} {} {}, {}, clock {}",
            p.name,
            p.label,
            p.kind.to_uppercase(),
            p.role.to_uppercase(),
            p.mode.to_uppercase(),
            p.switch,
            p.clock
        );
        let _ = writeln!(s, "  layer 1: {}, alarms {}", p.l1, p.alarms);
        if p.mode == "ptmp" {
            let teis: Vec<String> = p.teis.iter().map(|t| format!("{} ({})", t.tei, t.l2)).collect();
            let teis = if teis.is_empty() { "none assigned".to_string() } else { teis.join(", ") };
            let _ = writeln!(s, "  layer 2: TEIs {teis}{}", if p.l2_up { "" } else { " - no link up" });
        } else {
            let _ = writeln!(s, "  layer 2: {} (TEI {}){}", p.l2, p.tei, if p.l2_up { "" } else { " - down" });
        }
        let c = &p.counters;
        let _ = writeln!(
            s,
            "  frames in {} out {}, bad FCS {}, malformed {}, retransmitted {}, Q.931 in {} (bad {})",
            c.frames_in, c.frames_out, c.bad_fcs, c.malformed, c.retransmitted, c.q931_in, c.q931_bad
        );
        let _ = writeln!(
            s,
            "  layer 1 changes {} (lost {}), layer 2 up {} times (lost {}), MDL errors {}",
            c.l1_changes, c.l1_losses, c.l2_establishments, c.l2_losses, c.mdl_errors
        );
        let _ = write!(s, "  B-channels:");
        for b in &p.b_channels {
            let _ = write!(s, " {}:{}", b.number, b.state);
        }
        let _ = writeln!(s);
        for b in p.b_channels.iter().filter(|b| b.call.is_some()) {
            let _ = writeln!(s, "    B{}: {}", b.number, b.call.as_deref().unwrap_or_default());
        }
        if let Some(c) = &p.capture {
            let _ = writeln!(s, "  capture: {c}");
        }
    }
    s
}

/// A data link that carries I frames.
fn link_up(s: q921::State) -> bool {
    matches!(s, q921::State::MultipleFrameEstablished | q921::State::TimerRecovery)
}

fn l2_name(s: q921::State) -> &'static str {
    match s {
        q921::State::TeiAssigned => "tei-assigned",
        q921::State::AwaitingEstablishment => "awaiting-establishment",
        q921::State::AwaitingRelease => "awaiting-release",
        q921::State::MultipleFrameEstablished => "multiple-frame-established",
        q921::State::TimerRecovery => "timer-recovery",
    }
}

// ---------------------------------------------------------------- span

/// What `show isdn` says about a call on a B-channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallNote {
    pub calling: Option<String>,
    pub called: String,
    pub incoming: bool,
}

/// The cause of the calls a layer-1 loss clears (Q.850: network out of order).
pub const CAUSE_L1_LOST: u8 = 38;

/// One span's layer 1, layer 2 and Q.931 call control (gw-isdn's
/// [`gw_isdn::span::Span`]), driven with `now` by its caller.
pub struct Span {
    pub cfg: SpanConfig,
    info: SpanInfo,
    dchan: Box<dyn DChannel + Send>,
    q: gw_isdn::span::Span,
    l1: L1Status,
    /// When to ask for layer 1 again, while it is down.
    l1_retry: Option<Instant>,
    /// When to establish layer 2 again (after a loss).
    l2_retry: Option<Instant>,
    l2_up: bool,
    counters: SpanCounters,
    /// Counters of the call controls replaced after a layer-1 loss.
    old_q931: (u64, u64, u64),
    capture: Option<(PathBuf, PcapWriter)>,
    /// Call events for the gateway's ISDN legs. Bounded by the calls.
    events: VecDeque<call::Event>,
    notes: HashMap<call::CallId, CallNote>,
    seed: u64,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span").field("name", &self.cfg.name).field("l1", &self.l1).field("l2_up", &self.l2_up).finish()
    }
}

impl Span {
    pub fn new(cfg: SpanConfig, info: SpanInfo, dchan: Box<dyn DChannel + Send>) -> Span {
        let seed = cfg.index as u64 + 1;
        let q = Self::call_control(&cfg, seed);
        let l1 = dchan.l1_status();
        Span {
            cfg,
            info,
            dchan,
            q,
            l1,
            l1_retry: None,
            l2_retry: None,
            l2_up: false,
            counters: SpanCounters::default(),
            old_q931: (0, 0, 0),
            capture: None,
            events: VecDeque::new(),
            notes: HashMap::new(),
            seed,
        }
    }

    fn call_control(cfg: &SpanConfig, seed: u64) -> gw_isdn::span::Span {
        let side = if cfg.side() == Side::Nt { call::Side::Network } else { call::Side::User };
        let interface = if cfg.span_kind() == SpanKind::Pri { call::Interface::Pri } else { call::Interface::Bri };
        let variant = call::Variant::by_name(&cfg.switch).unwrap_or(&call::EUROISDN);
        let mut c = call::Config::new(side, interface, variant);
        c.channels = cfg.channels_in_use();
        let mode = if cfg.ptmp() { gw_isdn::span::Mode::PointToMultipoint } else { gw_isdn::span::Mode::PointToPoint };
        gw_isdn::span::Span::new(c, mode, seed)
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn l2_up(&self) -> bool {
        self.l2_up
    }

    /// The span can carry a new call: layers 1 and 2 are up (point to
    /// multipoint: layer 1; data links come up on demand, a TE asks for its
    /// TEI when it needs one, the network side broadcasts its SETUPs).
    pub fn usable(&self) -> bool {
        self.l1.is_up() && (self.l2_up || self.cfg.ptmp())
    }

    /// Brings layer 2 up after layer 1: the data link (point to point), or
    /// a TEI request (point-to-multipoint user side).
    fn layer2_start(&mut self, now: Instant) {
        if self.cfg.ptmp() {
            self.q.start(now);
        } else {
            self.q.reestablish(now);
        }
    }

    /// The rt channel (PCM timeslot) of B-channel `number`.
    pub fn timeslot(&self, number: u8) -> Option<u8> {
        let kind = self.cfg.span_kind();
        let b = (0..self.info.b_timeslots.len()).find(|&b| kind.channel_number(b) as u8 == number)?;
        u8::try_from(self.info.b_timeslots[b]).ok()
    }

    /// The B-channel of `call`, once chosen.
    pub fn channel_of(&self, call: call::CallId) -> Option<u8> {
        self.q.cc.calls().find(|(c, _, _)| *c == call).and_then(|(_, _, ch)| ch)
    }

    pub fn call_state(&self, call: call::CallId) -> Option<call::State> {
        self.q.cc.state(call)
    }

    /// Keeps the numbers of `call` for `show isdn`.
    pub fn note_call(&mut self, call: call::CallId, note: CallNote) {
        self.notes.insert(call, note);
    }

    /// Overlap digits of `call` (either way) for `show isdn`.
    pub fn note_digits(&mut self, call: call::CallId, digits: &str) {
        if let Some(n) = self.notes.get_mut(&call) {
            if n.called.len() + digits.len() <= 64 {
                n.called.push_str(digits);
            }
        }
    }

    /// A Q.931 request (`cc.setup(..)`, `cc.connect(..)`...), its frames sent.
    pub fn request<R>(&mut self, now: Instant, f: impl FnOnce(&mut call::CallControl, Instant) -> R) -> R {
        let r = self.q.request(now, f);
        self.drain(now);
        r
    }

    /// The next call event for the gateway.
    pub fn poll_event(&mut self) -> Option<call::Event> {
        self.events.pop_front()
    }

    /// Writes every frame from now on to `w` (replacing an earlier capture).
    pub fn start_capture(&mut self, path: PathBuf, w: PcapWriter) {
        self.capture = Some((path, w));
    }

    pub fn stop_capture(&mut self) -> Option<PathBuf> {
        self.capture.take().map(|(p, _)| p)
    }

    /// Sets the side and asks for layer 1.
    pub fn start(&mut self, now: Instant) {
        if let Err(e) = self.dchan.set_side(self.cfg.side()) {
            warn!(span = %self.cfg.name, %e, "cannot set the span's side");
        }
        self.ask_l1(now);
        if self.l1.is_up() {
            self.layer2_start(now);
            self.drain(now);
        }
    }

    fn ask_l1(&mut self, now: Instant) {
        let _ = self.dchan.request_l1(true);
        self.l1_retry = Some(now + L1_RETRY);
    }

    /// The next instant [`Span::poll`] has work without any input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.q.poll_timeout(), self.l1_retry, self.l2_retry].into_iter().flatten().min()
    }

    /// Takes the D channel's layer-1 events and frames, runs the due timers
    /// and sends what the span wants sent.
    pub fn poll(&mut self, now: Instant) {
        while let Some(st) = self.dchan.poll_l1_event() {
            self.on_l1(now, st);
        }
        while let Some(frame) = self.dchan.poll_frame() {
            self.capture_frame(false, &frame);
            // Nothing crosses a layer 1 we believe down.
            if self.l1.is_up() {
                self.q.handle_frame(now, &frame);
            }
        }
        if self.q.poll_timeout().is_some_and(|t| t <= now) {
            self.q.handle_timeout(now);
        }
        if self.l1_retry.is_some_and(|t| t <= now) {
            if self.l1.is_up() {
                self.l1_retry = None;
            } else {
                self.ask_l1(now);
            }
        }
        if self.l2_retry.is_some_and(|t| t <= now) {
            self.l2_retry = None;
            if self.l1.is_up() && !self.l2_up {
                self.q.reestablish(now);
            }
        }
        self.drain(now);
    }

    fn on_l1(&mut self, now: Instant, st: L1Status) {
        let was_up = self.l1.is_up();
        self.l1 = st;
        self.counters.l1_changes += 1;
        match (was_up, st.is_up()) {
            (false, true) => {
                info!(span = %self.cfg.name, "layer 1 activated: establishing layer 2");
                self.l1_retry = None;
                self.layer2_start(now);
            }
            (true, false) => {
                warn!(span = %self.cfg.name, alarms = %st.alarms, "layer 1 lost: layer 2 released, calls cleared");
                self.counters.l1_losses += 1;
                // MPH-DEACTIVATE: every data link goes back to state 4 and
                // every call of the span is gone (cause 38).
                self.replace_call_control();
                if self.l2_up {
                    self.l2_up = false;
                    self.counters.l2_losses += 1;
                }
                self.l2_retry = None;
                self.l1_retry = Some(now + L1_RETRY);
            }
            _ => {}
        }
    }

    fn replace_call_control(&mut self) {
        let calls: Vec<call::CallId> = self.q.cc.calls().map(|(c, _, _)| c).collect();
        // The old one's events first (what it said before the loss).
        self.drain_events();
        for call in calls {
            self.events.push_back(call::Event::Released { call, cause: CAUSE_L1_LOST, location: None });
        }
        self.notes.clear();
        let (a, b, c) = self.old_q931;
        self.old_q931 = (a + self.q.messages_in, b + self.q.messages_bad, c + self.q.retransmitted());
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.q = Self::call_control(&self.cfg, self.seed);
    }

    fn capture_frame(&mut self, outgoing: bool, frame: &[u8]) {
        crate::isdn_debug::tap(&self.cfg.name, self.cfg.side() == Side::Nt, outgoing, frame);
        if let Some((path, w)) = self.capture.as_mut() {
            if let Err(e) = w.frame(SystemTime::now(), outgoing, frame) {
                warn!(span = %self.cfg.name, path = %path.display(), %e, "D-channel capture stopped");
                self.capture = None;
            }
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some(tx) = self.q.poll_transmit() {
            match self.dchan.send_frame(&tx) {
                Ok(()) => self.capture_frame(true, &tx),
                // Lost like on a line; Q.921 recovers by T200.
                Err(e) => tracing::debug!(span = %self.cfg.name, %e, "D-channel frame not sent"),
            }
        }
        self.drain_events_at(Some(now));
    }

    fn drain_events(&mut self) {
        self.drain_events_at(None);
    }

    fn drain_events_at(&mut self, now: Option<Instant>) {
        while let Some(ev) = self.q.poll_event() {
            match ev {
                SpanEvent::LinkUp(_) => {
                    if !self.l2_up {
                        info!(span = %self.cfg.name, "layer 2 established");
                        self.counters.l2_establishments += 1;
                    }
                    self.l2_up = true;
                    self.l2_retry = None;
                }
                // Point to multipoint: links of TEs come and go; layer 2 is
                // up while any is, and nobody forces one back.
                SpanEvent::LinkDown(tei) if self.cfg.ptmp() => {
                    info!(span = %self.cfg.name, tei, "data link released");
                    let any = self.q.links().any(|(_, st)| link_up(st));
                    if self.l2_up && !any {
                        self.counters.l2_losses += 1;
                    }
                    self.l2_up = any;
                }
                SpanEvent::LinkDown(_) => {
                    if self.l2_up {
                        warn!(span = %self.cfg.name, "layer 2 released");
                        self.counters.l2_losses += 1;
                    }
                    self.l2_up = false;
                    if let (true, Some(now)) = (self.l1.is_up(), now) {
                        self.l2_retry = Some(now + L2_RETRY);
                    }
                }
                SpanEvent::MdlError(_, e) => {
                    warn!(span = %self.cfg.name, code = %e.code(), ?e, "Q.921 management error");
                    self.counters.mdl_errors += 1;
                }
                SpanEvent::Call(e) => {
                    if let call::Event::Released { call, .. } = &e {
                        self.notes.remove(call);
                    }
                    self.events.push_back(e);
                }
                SpanEvent::TeiAssigned(tei) => info!(span = %self.cfg.name, tei, "TEI assigned"),
                SpanEvent::TeiRemoved(tei) => {
                    info!(span = %self.cfg.name, tei, "TEI removed");
                    self.l2_up = self.q.links().any(|(_, st)| link_up(st));
                }
            }
        }
    }

    pub fn status(&self) -> SpanStatus {
        let hal = self.dchan.stats();
        let mut counters = self.counters;
        counters.frames_in = hal.frames_in;
        counters.frames_out = hal.frames_out;
        counters.bad_fcs = hal.bad_fcs;
        counters.malformed = hal.malformed;
        counters.q931_in = self.old_q931.0 + self.q.messages_in;
        counters.q931_bad = self.old_q931.1 + self.q.messages_bad;
        counters.retransmitted = self.old_q931.2 + self.q.retransmitted();
        let kind = self.cfg.span_kind();
        let in_use = self.cfg.channels_in_use();
        let b_channels = self
            .info
            .b_timeslots
            .iter()
            .enumerate()
            .map(|(b, &timeslot)| {
                let number = kind.channel_number(b) as u8;
                let owner = self.q.cc.channel_owner(number);
                let state = match owner {
                    Some(_) => "busy",
                    None if in_use.contains(&number) => "idle",
                    None => "unused",
                };
                let call = owner.map(|c| {
                    let st = self.q.cc.state(c).map_or("-".to_string(), |s| format!("{s:?}"));
                    let cr = self.q.cc.call_ref(c).unwrap_or_default();
                    match self.notes.get(&c) {
                        Some(n) => format!(
                            "call ref {cr} {} {} -> {} ({st})",
                            if n.incoming { "in" } else { "out" },
                            n.calling.as_deref().unwrap_or("-"),
                            n.called
                        ),
                        None => format!("call ref {cr} ({st})"),
                    }
                });
                BChannelStatus { number, timeslot, state: state.into(), call }
            })
            .collect();
        let (l2, tei) = self.q.links().next().map_or(("tei-assigned", 0), |(t, s)| (l2_name(s), t));
        let teis = if self.cfg.ptmp() {
            self.q.links().map(|(tei, st)| TeiStatus { tei, l2: l2_name(st).into() }).collect()
        } else {
            Vec::new()
        };
        SpanStatus {
            name: self.cfg.name.clone(),
            label: self.info.label.clone(),
            kind: self.cfg.kind.clone(),
            role: self.cfg.role.clone(),
            mode: self.cfg.mode.clone(),
            switch: self.cfg.switch.clone(),
            clock: self.cfg.clock_source().to_string(),
            l1: self.l1.state.name().into(),
            alarms: self.l1.alarms.to_string(),
            l2: l2.into(),
            l2_up: self.l2_up,
            tei,
            teis,
            counters,
            b_channels,
            capture: self.capture.as_ref().map(|(p, _)| p.display().to_string()),
        }
    }
}

// ---------------------------------------------------------------- shell

/// Console requests to the span task.
#[derive(Debug)]
pub enum Command {
    Capture { span: String, path: PathBuf, writer: PcapWriter },
    StopCaptures,
    /// `test port N ring [SECONDS]` (not ISDN: the same queue to the driver).
    RingPort { port: usize, secs: u32 },
}

/// The console's handle on the span task: requests queue here and are
/// taken at the task's next tick.
#[derive(Clone, Default)]
pub struct Control(Arc<Mutex<Vec<Command>>>);

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("isdn::Control")
    }
}

impl Control {
    pub fn push(&self, c: Command) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    fn take(&self) -> Vec<Command> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// `capture isdn SPAN FILE`: checks the span, creates the file; the span
/// task starts writing at its next tick.
pub fn console_capture(control: &Control, spans: &[SpanStatus], span: &str, file: &str) -> String {
    let Some(s) = spans.iter().find(|s| s.name == span) else {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        return format!("error: no span {span:?} (spans: {})\n", if names.is_empty() { "none".into() } else { names.join(", ") });
    };
    let path = PathBuf::from(file);
    match PcapWriter::create(&path, s.role == "nt") {
        Ok(writer) => {
            control.push(Command::Capture { span: span.to_string(), path: path.clone(), writer });
            format!("capturing span {span}'s D channel to {} ('capture stop' ends it)\n", path.display())
        }
        Err(e) => format!("error: cannot create {}: {e}\n", path.display()),
    }
}

/// Applies the console's requests to the spans; the others are returned
/// for the gateway.
pub fn apply_commands(spans: &mut [Span], control: &Control) -> Vec<Command> {
    let mut rest = Vec::new();
    for c in control.take() {
        match c {
            c @ Command::RingPort { .. } => rest.push(c),
            Command::Capture { span, path, writer } => {
                if let Some(s) = spans.iter_mut().find(|s| s.cfg.name == span) {
                    info!(span, path = %path.display(), "D-channel capture started");
                    s.start_capture(path, writer);
                }
            }
            Command::StopCaptures => {
                for s in spans.iter_mut() {
                    if let Some(p) = s.stop_capture() {
                        info!(span = %s.cfg.name, path = %p.display(), "D-channel capture stopped");
                    }
                }
            }
        }
    }
    rest
}

/// Builds the spans of `configs` from the board's D channels (`board` in
/// board span order; each is taken once). Starts the configured captures.
pub fn build_spans(
    configs: &[SpanConfig],
    board: &mut Vec<Option<(SpanInfo, Box<dyn DChannel + Send>)>>,
) -> Result<Vec<Span>, String> {
    let mut spans = Vec::new();
    for c in configs {
        let Some((info, dchan)) = board.get_mut(c.index).and_then(Option::take) else {
            return Err(format!("span {}: board span {} is missing", c.name, c.index));
        };
        let mut span = Span::new(c.clone(), info, dchan);
        if let Some(path) = &c.capture {
            let w = PcapWriter::create(path, c.side() == Side::Nt)
                .map_err(|e| format!("span {}: capture {}: {e}", c.name, path.display()))?;
            span.start_capture(path.clone(), w);
        }
        spans.push(span);
    }
    Ok(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_hal::isdn::{Alarms, DChannelError, DChannelStats, L1State};

    /// A D channel whose far end is a test's own Q.921 link.
    #[derive(Default)]
    struct Line {
        l1: Option<L1Status>,
        events: VecDeque<L1Status>,
        to_gw: VecDeque<Vec<u8>>,
        from_gw: VecDeque<Vec<u8>>,
        requests: u32,
        side: Option<Side>,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<Line>>);

    impl DChannel for Fake {
        fn kind(&self) -> SpanKind {
            SpanKind::Pri
        }
        fn poll_frame(&mut self) -> Option<Vec<u8>> {
            self.0.lock().unwrap().to_gw.pop_front()
        }
        fn send_frame(&mut self, frame: &[u8]) -> Result<(), DChannelError> {
            let mut l = self.0.lock().unwrap();
            if !l.l1.is_some_and(|s| s.is_up()) {
                return Err(DChannelError::L1Down);
            }
            l.from_gw.push_back(frame.to_vec());
            Ok(())
        }
        fn poll_l1_event(&mut self) -> Option<L1Status> {
            self.0.lock().unwrap().events.pop_front()
        }
        fn l1_status(&self) -> L1Status {
            self.0.lock().unwrap().l1.unwrap_or(L1Status::DOWN)
        }
        fn request_l1(&mut self, _activate: bool) -> Result<(), DChannelError> {
            self.0.lock().unwrap().requests += 1;
            Ok(())
        }
        fn set_side(&mut self, side: Side) -> Result<(), DChannelError> {
            self.0.lock().unwrap().side = Some(side);
            Ok(())
        }
        fn stats(&self) -> DChannelStats {
            DChannelStats::default()
        }
    }

    impl Fake {
        fn set_l1(&self, s: L1Status) {
            let mut l = self.0.lock().unwrap();
            l.l1 = Some(s);
            l.events.push_back(s);
        }
    }

    const UP: L1Status = L1Status { state: L1State::Activated, alarms: Alarms { los: false, ais: false, rai: false } };

    fn cfg(role: &str) -> SpanConfig {
        SpanConfig {
            name: "pri".into(),
            index: 1,
            kind: "pri".into(),
            role: role.into(),
            mode: "ptp".into(),
            switch: "euroisdn".into(),
            channels: Some(vec![1, 2, 17]),
            clock: None,
            group: None,
            exclusive: false,
            overlap: false,
            capture: None,
        }
    }

    fn info() -> SpanInfo {
        SpanInfo { kind: SpanKind::Pri, label: "PRI 1".into(), b_timeslots: (8..38).collect() }
    }

    /// Moves frames both ways (and runs due timers) until nothing moves.
    fn pump(span: &mut Span, line: &Fake, peer: &mut DataLink, now: Instant) {
        for _ in 0..50 {
            span.poll(now);
            if peer.poll_timeout().is_some_and(|t| t <= now) {
                peer.handle_timeout(now);
            }
            let frames: Vec<_> = line.0.lock().unwrap().from_gw.drain(..).collect();
            for f in &frames {
                peer.handle_frame(now, f);
            }
            let mut moved = !frames.is_empty();
            while let Some(f) = peer.poll_transmit() {
                moved = true;
                if line.l1_status().is_up() {
                    line.0.lock().unwrap().to_gw.push_back(f);
                }
            }
            while peer.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
        panic!("frames never stopped moving");
    }

    #[test]
    fn layer_2_comes_up_with_layer_1_goes_with_it_and_comes_back() {
        let line = Fake::default();
        let mut span = Span::new(cfg("nt"), info(), Box::new(line.clone()));
        let mut peer = DataLink::new(q921::Config::pri(q921::Role::User));
        let t0 = Instant::now();
        span.start(t0);
        assert_eq!(line.0.lock().unwrap().side, Some(Side::Nt));
        assert_eq!(line.0.lock().unwrap().requests, 1, "asks for layer 1");
        pump(&mut span, &line, &mut peer, t0);
        assert!(!span.l2_up(), "no layer 2 without layer 1");
        assert!(line.0.lock().unwrap().from_gw.is_empty());
        // Layer 1 comes: SABME from the gateway, UA from the peer.
        line.set_l1(UP);
        pump(&mut span, &line, &mut peer, t0);
        assert!(span.l2_up());
        assert_eq!(peer.state(), q921::State::MultipleFrameEstablished);
        let st = span.status();
        assert_eq!((st.l1.as_str(), st.l2.as_str(), st.tei), ("activated", "multiple-frame-established", 0));
        assert_eq!(st.counters.l2_establishments, 1);
        assert_eq!(st.b_channels.len(), 30);
        assert_eq!(st.b_channels[15].number, 17, "TS16 is skipped");
        assert_eq!((st.b_channels[15].state.as_str(), st.b_channels[3].state.as_str()), ("idle", "unused"));
        // A Q.931 message from the peer is taken and counted.
        let setup = gw_isdn::q931::Message::new(
            gw_isdn::q931::CallRef { len: 2, flag: false, value: 1 },
            gw_isdn::q931::MessageType::Setup,
            vec![],
        );
        peer.dl_data_request(t0, setup.to_vec()).unwrap();
        pump(&mut span, &line, &mut peer, t0);
        assert_eq!(span.status().counters.q931_in, 1);
        assert_eq!(span.status().counters.q931_bad, 0);
        // Layer 1 lost with LOS: layer 2 is down at once.
        line.set_l1(L1Status { state: L1State::Deactivated, alarms: Alarms { los: true, ..Alarms::default() } });
        span.poll(t0);
        let st = span.status();
        assert!(!st.l2_up);
        assert_eq!((st.l1.as_str(), st.alarms.as_str(), st.l2.as_str()), ("deactivated", "LOS", "tei-assigned"));
        assert_eq!((st.counters.l1_losses, st.counters.l2_losses), (1, 1));
        // It asks for layer 1 again every L1_RETRY.
        span.poll(t0 + L1_RETRY);
        assert_eq!(line.0.lock().unwrap().requests, 2);
        // Layer 1 returns: layer 2 is established again (the peer starts over too).
        peer = DataLink::new(q921::Config::pri(q921::Role::User));
        line.set_l1(UP);
        pump(&mut span, &line, &mut peer, t0 + L1_RETRY);
        assert!(span.l2_up());
        assert_eq!(span.status().counters.l2_establishments, 2);
    }

    fn bri_ptmp(role: &str) -> (SpanConfig, SpanInfo) {
        let mut c = cfg(role);
        c.kind = "bri".into();
        c.mode = "ptmp".into();
        c.channels = None;
        (c, SpanInfo { kind: SpanKind::Bri, label: "BRI 1".into(), b_timeslots: vec![2, 3] })
    }

    /// An S bus: the gateway's frames reach every far span, theirs reach
    /// the gateway. Runs until quiet; returns the far spans' call events.
    fn bus(span: &mut Span, line: &Fake, far: &mut [gw_isdn::span::Span], now: Instant) -> Vec<Vec<call::Event>> {
        let mut events = vec![Vec::new(); far.len()];
        for _ in 0..100 {
            span.poll(now);
            let frames: Vec<_> = line.0.lock().unwrap().from_gw.drain(..).collect();
            let mut moved = !frames.is_empty();
            for (i, f) in far.iter_mut().enumerate() {
                if f.poll_timeout().is_some_and(|t| t <= now) {
                    f.handle_timeout(now);
                }
                for fr in &frames {
                    f.handle_frame(now, fr);
                }
                while let Some(fr) = f.poll_transmit() {
                    moved = true;
                    line.0.lock().unwrap().to_gw.push_back(fr);
                }
                while let Some(e) = f.poll_event() {
                    if let gw_isdn::span::SpanEvent::Call(c) = e {
                        events[i].push(c);
                    }
                }
            }
            if !moved {
                return events;
            }
        }
        panic!("frames never stopped moving");
    }

    #[test]
    fn ptmp_network_side_assigns_teis_to_two_tes_broadcasts_its_setup_and_takes_theirs() {
        let line = Fake::default();
        let (c, info) = bri_ptmp("nt");
        let mut span = Span::new(c, info, Box::new(line.clone()));
        let te = |seed| {
            let cfg = call::Config::new(call::Side::User, call::Interface::Bri, &call::EUROISDN);
            gw_isdn::span::Span::new(cfg, gw_isdn::span::Mode::PointToMultipoint, seed)
        };
        let mut tes = [te(11), te(22)];
        let t0 = Instant::now();
        line.set_l1(UP);
        span.start(t0);
        for t in &mut tes {
            t.start(t0);
        }
        bus(&mut span, &line, &mut tes, t0);
        assert!(span.usable() && !span.l2_up(), "point to multipoint: usable with layer 1, links come on demand");
        let st = span.status();
        let teis: Vec<u8> = st.teis.iter().map(|t| t.tei).collect();
        assert_eq!(teis.len(), 2, "{st:?}");
        assert!(teis.iter().all(|t| (64..=126).contains(t)) && teis[0] != teis[1], "{teis:?}");
        let show = show_isdn(&[st]);
        assert!(show.contains("BRI NT PTMP"), "{show}");
        assert!(show.contains(&format!("TEIs {} (tei-assigned), {} (tei-assigned)", teis[0], teis[1])), "{show}");
        // Our SETUP goes to every TE at once (UI on TEI 127).
        let info = call::SetupInfo {
            called: Some(gw_isdn::q931::PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: b"21".to_vec() }),
            sending_complete: true,
            ..Default::default()
        };
        let out = span.request(t0, |cc, now| cc.setup(now, info)).unwrap();
        let ev = bus(&mut span, &line, &mut tes, t0);
        for (i, e) in ev.iter().enumerate() {
            assert!(e.iter().any(|e| matches!(e, call::Event::Setup { .. })), "TE {i} saw no SETUP: {e:?}");
        }
        // The second TE answers: its data link comes up, the call connects.
        let Some(call::Event::Setup { call: theirs, .. }) = ev[1].iter().find(|e| matches!(e, call::Event::Setup { .. })).cloned() else {
            unreachable!()
        };
        tes[1].request(t0, |cc, now| cc.connect(now, theirs)).unwrap();
        bus(&mut span, &line, &mut tes, t0);
        let mut events = Vec::new();
        while let Some(e) = span.poll_event() {
            events.push(e);
        }
        assert!(events.iter().any(|e| matches!(e, call::Event::Connected { call } if *call == out)), "{events:?}");
        assert!(span.l2_up(), "the answering TE's link is up");
        let show = show_isdn(&[span.status()]);
        assert!(show.contains(&format!("{} (multiple-frame-established)", teis[1])), "{show}");
        // A call from the first TE arrives on its own data link.
        let info = call::SetupInfo {
            called: Some(gw_isdn::q931::PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: b"2000".to_vec() }),
            sending_complete: true,
            ..Default::default()
        };
        tes[0].request(t0, |cc, now| cc.setup(now, info)).unwrap();
        bus(&mut span, &line, &mut tes, t0);
        let mut events = Vec::new();
        while let Some(e) = span.poll_event() {
            events.push(e);
        }
        assert!(events.iter().any(|e| matches!(e, call::Event::Setup { info, .. } if info.called.as_ref().is_some_and(|n| n.digits == b"2000"))), "{events:?}");
    }

    #[test]
    fn ptmp_user_side_asks_for_a_tei_and_takes_a_broadcast_setup() {
        let line = Fake::default();
        let (c, info) = bri_ptmp("te");
        let mut span = Span::new(c, info, Box::new(line.clone()));
        let cfg = call::Config::new(call::Side::Network, call::Interface::Bri, &call::EUROISDN);
        let mut nt = [gw_isdn::span::Span::new(cfg, gw_isdn::span::Mode::PointToMultipoint, 5)];
        let t0 = Instant::now();
        line.set_l1(UP);
        span.start(t0);
        bus(&mut span, &line, &mut nt, t0);
        let st = span.status();
        assert_eq!(st.teis.len(), 1, "{st:?}");
        let tei = st.teis[0].tei;
        assert!((64..=126).contains(&tei));
        assert_eq!(nt[0].tei_network().map(|n| n.assigned().to_vec()), Some(vec![tei]));
        // The network's broadcast SETUP reaches the gateway.
        let info = call::SetupInfo {
            called: Some(gw_isdn::q931::PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: b"1004".to_vec() }),
            sending_complete: true,
            ..Default::default()
        };
        nt[0].request(t0, |cc, now| cc.setup(now, info)).unwrap();
        bus(&mut span, &line, &mut nt, t0);
        let mut events = Vec::new();
        while let Some(e) = span.poll_event() {
            events.push(e);
        }
        let Some(call::Event::Setup { call, .. }) = events.iter().find(|e| matches!(e, call::Event::Setup { .. })).cloned() else {
            panic!("no SETUP: {events:?}")
        };
        // Our answer brings up our data link on our TEI.
        span.request(t0, |cc, now| cc.connect(now, call)).unwrap();
        let ev = bus(&mut span, &line, &mut nt, t0);
        assert!(ev[0].iter().any(|e| matches!(e, call::Event::Connected { .. })), "{ev:?}");
        assert!(span.l2_up());
        assert!(show_isdn(&[span.status()]).contains(&format!("TEIs {tei} (multiple-frame-established)")));
    }

    #[test]
    fn layer_2_released_by_the_far_end_is_established_again() {
        let line = Fake::default();
        let mut span = Span::new(cfg("te"), info(), Box::new(line.clone()));
        let mut peer = DataLink::new(q921::Config::pri(q921::Role::Network));
        let t0 = Instant::now();
        line.set_l1(UP);
        span.start(t0);
        pump(&mut span, &line, &mut peer, t0);
        assert!(span.l2_up());
        peer.dl_release_request(t0);
        pump(&mut span, &line, &mut peer, t0);
        assert!(!span.l2_up());
        assert_eq!(span.status().counters.l2_losses, 1);
        assert_eq!(span.poll_timeout(), Some(t0 + L2_RETRY));
        pump(&mut span, &line, &mut peer, t0 + L2_RETRY);
        assert!(span.l2_up(), "re-established after L2_RETRY");
        assert_eq!(peer.state(), q921::State::MultipleFrameEstablished);
    }

    #[test]
    fn a_silent_far_end_costs_retries_then_an_mdl_error_never_a_panic() {
        let line = Fake::default();
        let mut span = Span::new(cfg("te"), info(), Box::new(line.clone()));
        let t0 = Instant::now();
        line.set_l1(UP);
        span.start(t0);
        let mut now = t0;
        for _ in 0..20 {
            span.poll(now);
            now += Duration::from_millis(500);
            // Garbage from the line is ignored by Q.921.
            line.0.lock().unwrap().to_gw.push_back(vec![0xFF, 0xFF, 0xFF, 0x00]);
        }
        let sent = line.0.lock().unwrap().from_gw.len();
        assert!(sent >= 4, "SABME and its N200 retries: {sent}");
        assert!(span.status().counters.mdl_errors >= 1);
        assert!(!span.l2_up());
    }

    #[test]
    fn pcap_has_the_linux_lapd_header_and_direction() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let mut w = PcapWriter::new(Box::new(buf.clone()), true).unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        w.frame(at, true, &[0x02, 0x01, 0x7F]).unwrap();
        w.frame(at, false, &[0x00, 0x01, 0x73]).unwrap();
        let b = buf.0.lock().unwrap().clone();
        assert_eq!(&b[..4], &[0xD4, 0xC3, 0xB2, 0xA1]);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 177);
        let rec = &b[24..];
        assert_eq!(u32::from_le_bytes(rec[0..4].try_into().unwrap()), 1_700_000_000);
        assert_eq!(u32::from_le_bytes(rec[4..8].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_le_bytes(rec[8..12].try_into().unwrap()), 19);
        let hdr = &rec[16..32];
        assert_eq!(&hdr[0..2], &[0, 4], "outgoing");
        assert_eq!(&hdr[2..4], &8445u16.to_be_bytes());
        assert_eq!(hdr[6], 1, "we are the network side");
        assert_eq!(&hdr[14..16], &[0x00, 0x30]);
        assert_eq!(&rec[32..35], &[0x02, 0x01, 0x7F]);
        let rec2 = &rec[35..];
        assert_eq!(&rec2[16..18], &[0, 0], "received");
        assert_eq!(w.frames, 2);
    }

    #[test]
    fn span_config_errors_name_the_field() {
        let ok = cfg("te");
        assert!(validate_spans(std::slice::from_ref(&ok)).is_ok());
        let bad = |f: &dyn Fn(&mut SpanConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            validate_spans(&[c]).unwrap_err().to_string()
        };
        assert!(bad(&|c| c.role = "user".into()).starts_with("span[0].role: "));
        assert!(bad(&|c| c.kind = "t1".into()).starts_with("span[0].kind: "));
        assert!(bad(&|c| c.name = "a b".into()).starts_with("span[0].name: "));
        assert!(bad(&|c| c.mode = "ptmp".into()).contains("PRI is point-to-point"));
        assert!(bad(&|c| c.switch = "ni2".into()).starts_with("span[0].switch: "));
        assert!(bad(&|c| c.clock = Some("gps".into())).starts_with("span[0].clock: "));
        assert!(bad(&|c| c.channels = Some(vec![16])).contains("16 is not a B-channel"));
        assert!(bad(&|c| c.channels = Some(vec![1, 1])).contains("listed twice"));
        assert!(bad(&|c| c.channels = Some(vec![])).starts_with("span[0].channels: "));
        let mut bri = ok.clone();
        bri.kind = "bri".into();
        bri.channels = Some(vec![3]);
        assert!(validate_spans(&[bri.clone()]).unwrap_err().to_string().contains("must be 1 or 2"));
        bri.channels = None;
        bri.mode = "ptmp".into();
        assert!(validate_spans(&[bri]).is_ok(), "a BRI may be point-to-multipoint");
        let mut two = ok.clone();
        two.index = 0;
        assert!(validate_spans(&[ok.clone(), two.clone()]).unwrap_err().to_string().contains("names two spans"));
        two.name = "other".into();
        two.index = 1;
        assert!(validate_spans(&[ok.clone(), two]).unwrap_err().to_string().contains("configured twice"));
        // Against the board.
        let board = vec![
            SpanInfo { kind: SpanKind::Bri, label: "BRI 1".into(), b_timeslots: vec![6, 7] },
            info(),
        ];
        assert!(check_board(std::slice::from_ref(&ok), &board).is_ok());
        let mut c = ok.clone();
        c.index = 0;
        assert!(check_board(&[c], &board).unwrap_err().to_string().contains("is a bri, not a pri"));
        let mut c = ok;
        c.index = 5;
        assert!(check_board(&[c], &board).unwrap_err().to_string().contains("no span 5"));
    }

    #[test]
    fn the_config_file_takes_spans() {
        let text = format!(
            "{}\n[[span]]\nname = \"carrier\"\nindex = 0\nkind = \"bri\"\nrole = \"te\"\n\n[[span]]\nname = \"pbx\"\nindex = 1\nkind = \"pri\"\nrole = \"nt\"\nchannels = [1, 2, 3]\nclock = \"internal\"\n",
            crate::config::DEFAULT_TOML
        );
        let c: crate::config::Config = toml::from_str(&text).unwrap();
        c.validate(4).unwrap();
        assert_eq!(c.span.len(), 2);
        assert_eq!((c.span[0].mode.as_str(), c.span[0].clock_source()), ("ptp", "line"));
        assert_eq!(c.span[1].channels_in_use(), vec![1, 2, 3]);
        let bad = text.replace("role = \"nt\"", "role = \"network\"");
        let c: crate::config::Config = toml::from_str(&bad).unwrap();
        assert!(c.validate(4).unwrap_err().to_string().starts_with("span[1].role"));
        let typo = text.replace("clock = ", "clok = ");
        assert!(toml::from_str::<crate::config::Config>(&typo).is_err());
    }

    #[test]
    fn show_isdn_lists_each_span() {
        let line = Fake::default();
        let span = Span::new(cfg("nt"), info(), Box::new(line));
        let t = show_isdn(&[span.status()]);
        assert!(t.contains("span pri (PRI 1): PRI NT PTP, euroisdn, clock internal"), "{t}");
        assert!(t.contains("layer 1: deactivated"), "{t}");
        assert!(t.contains("layer 2: tei-assigned (TEI 0) - down"), "{t}");
        assert!(t.contains(" 1:idle 2:idle 3:unused"), "{t}");
        assert_eq!(show_isdn(&[]), "no ISDN span configured ([[span]])\n");
    }
}
