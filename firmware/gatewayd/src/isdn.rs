//! ISDN spans: `[[span]]` configuration, the span manager that runs layer 2
//! (gw-isdn's Q.921 [`DataLink`]) on each span's D channel, `show isdn`, and
//! the D-channel capture (pcap, `LINKTYPE_LINUX_LAPD`).
//!
//! Layering: the HAL's [`DChannel`] hands over whole, FCS-checked LAPD frames
//! and layer-1 state; a [`Span`] feeds them to its `DataLink` with `now` from
//! the caller (sans-IO, like the other protocol cores) and sends what the link
//! wants sent. It asks for layer 1 at start (and again every
//! [`L1_RETRY`] while it is down), establishes layer 2 (SABME/UA) as soon as
//! layer 1 is active, re-establishes it [`L2_RETRY`] after a loss, and drops
//! it (a fresh link, counted) when layer 1 goes. Q.931 messages received in I
//! frames are counted and parsed for the status; the call state machine
//! comes with the Q.931 work (issue 10 item 1).
//!
//! [`run`] is the async shell: one tokio task that owns every span, wakes on
//! a 10 ms tick, the links' timers, the sim card's notify and console
//! commands, and writes the spans' status into the shared [`Status`].

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gw_hal::isdn::{DChannel, L1Status, Side, SpanInfo, SpanKind};
use gw_isdn::q921::{self, DataLink, Event};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::ConfigError;
use crate::status::Status;

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
    /// The Q.931 variant: "euroisdn" (ETSI EN 300 403).
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
            "ptmp" => {
                return Err(ConfigError::new(
                    field("mode"),
                    "\"ptmp\" needs TEI management, which this build does not run yet: use \"ptp\"",
                ))
            }
            _ => return Err(ConfigError::new(field("mode"), "must be \"ptp\" or \"ptmp\"")),
        }
        if s.switch != "euroisdn" {
            return Err(ConfigError::new(field("switch"), "must be \"euroisdn\" (the only variant so far)"));
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
    pub counters: SpanCounters,
    pub b_channels: Vec<BChannelStatus>,
    /// The pcap file the D channel is written to, if any.
    pub capture: Option<String>,
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
        let _ = writeln!(s, "  layer 2: {} (TEI {}){}", p.l2, p.tei, if p.l2_up { "" } else { " - down" });
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
        if let Some(c) = &p.capture {
            let _ = writeln!(s, "  capture: {c}");
        }
    }
    s
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

/// One span's layer 1 and layer 2, driven with `now` by its caller.
pub struct Span {
    pub cfg: SpanConfig,
    info: SpanInfo,
    dchan: Box<dyn DChannel + Send>,
    link: DataLink,
    l1: L1Status,
    /// When to ask for layer 1 again, while it is down.
    l1_retry: Option<Instant>,
    /// When to establish layer 2 again (after a loss).
    l2_retry: Option<Instant>,
    l2_up: bool,
    counters: SpanCounters,
    capture: Option<(PathBuf, PcapWriter)>,
    /// Q.931 messages received (raw), for whoever takes them (the call
    /// state machine later; tests now). Bounded.
    pub q931_rx: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span").field("name", &self.cfg.name).field("l1", &self.l1).field("l2_up", &self.l2_up).finish()
    }
}

const Q931_KEPT: usize = 32;

impl Span {
    pub fn new(cfg: SpanConfig, info: SpanInfo, dchan: Box<dyn DChannel + Send>) -> Span {
        let link = DataLink::new(Self::link_config(&cfg));
        let l1 = dchan.l1_status();
        Span {
            cfg,
            info,
            dchan,
            link,
            l1,
            l1_retry: None,
            l2_retry: None,
            l2_up: false,
            counters: SpanCounters::default(),
            capture: None,
            q931_rx: VecDeque::new(),
        }
    }

    fn link_config(cfg: &SpanConfig) -> q921::Config {
        let role = if cfg.side() == Side::Nt { q921::Role::Network } else { q921::Role::User };
        match cfg.span_kind() {
            SpanKind::Pri => q921::Config::pri(role),
            // Point-to-point BRI: TEI 0, like a PRI.
            SpanKind::Bri => q921::Config::bri(role, 0),
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn l2_up(&self) -> bool {
        self.l2_up
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
            self.link.dl_establish_request(now);
            self.drain(now);
        }
    }

    fn ask_l1(&mut self, now: Instant) {
        let _ = self.dchan.request_l1(true);
        self.l1_retry = Some(now + L1_RETRY);
    }

    /// Layer-2 data request (a Q.931 message) while layer 2 is up.
    pub fn send_q931(&mut self, now: Instant, msg: Vec<u8>) -> Result<(), q921::DlError> {
        self.link.dl_data_request(now, msg)?;
        self.drain(now);
        Ok(())
    }

    /// The next instant [`Span::poll`] has work without any input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.link.poll_timeout(), self.l1_retry, self.l2_retry].into_iter().flatten().min()
    }

    /// Takes the D channel's layer-1 events and frames, runs the due timers
    /// and sends what layer 2 wants sent.
    pub fn poll(&mut self, now: Instant) {
        while let Some(st) = self.dchan.poll_l1_event() {
            self.on_l1(now, st);
        }
        while let Some(frame) = self.dchan.poll_frame() {
            self.capture_frame(false, &frame);
            // Nothing crosses a layer 1 we believe down.
            if self.l1.is_up() {
                self.link.handle_frame(now, &frame);
            }
        }
        if self.link.poll_timeout().is_some_and(|t| t <= now) {
            self.link.handle_timeout(now);
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
                self.link.dl_establish_request(now);
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
                self.link.dl_establish_request(now);
            }
            (true, false) => {
                warn!(span = %self.cfg.name, alarms = %st.alarms, "layer 1 lost: layer 2 released");
                self.counters.l1_losses += 1;
                // MPH-DEACTIVATE: every data link goes back to state 4.
                self.replace_link();
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

    fn replace_link(&mut self) {
        let old = self.link.stats();
        self.counters.retransmitted += old.retransmitted;
        self.link = DataLink::new(Self::link_config(&self.cfg));
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
        loop {
            let mut any = false;
            while let Some(tx) = self.link.poll_transmit() {
                any = true;
                match self.dchan.send_frame(&tx) {
                    Ok(()) => self.capture_frame(true, &tx),
                    // Lost like on a line; Q.921 recovers by T200.
                    Err(e) => tracing::debug!(span = %self.cfg.name, %e, "D-channel frame not sent"),
                }
            }
            while let Some(ev) = self.link.poll_event() {
                any = true;
                self.on_event(now, ev);
            }
            if !any {
                break;
            }
        }
    }

    fn on_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::EstablishConfirm | Event::EstablishIndication => {
                if !self.l2_up {
                    info!(span = %self.cfg.name, "layer 2 established");
                    self.counters.l2_establishments += 1;
                }
                self.l2_up = true;
                self.l2_retry = None;
            }
            Event::ReleaseIndication | Event::ReleaseConfirm => {
                if self.l2_up {
                    warn!(span = %self.cfg.name, "layer 2 released");
                    self.counters.l2_losses += 1;
                }
                self.l2_up = false;
                if self.l1.is_up() {
                    self.l2_retry = Some(now + L2_RETRY);
                }
            }
            Event::Data(d) | Event::UnitData(d) => {
                self.counters.q931_in += 1;
                if gw_isdn::q931::Message::parse(&d).is_err() {
                    self.counters.q931_bad += 1;
                }
                if self.q931_rx.len() >= Q931_KEPT {
                    self.q931_rx.pop_front();
                }
                self.q931_rx.push_back(d);
            }
            Event::MdlError(e) => {
                warn!(span = %self.cfg.name, code = %e.code(), ?e, "Q.921 management error");
                self.counters.mdl_errors += 1;
            }
        }
    }

    pub fn status(&self) -> SpanStatus {
        let hal = self.dchan.stats();
        let mut counters = self.counters;
        let ls = self.link.stats();
        counters.frames_in = hal.frames_in;
        counters.frames_out = hal.frames_out;
        counters.bad_fcs = hal.bad_fcs;
        counters.malformed = hal.malformed;
        counters.retransmitted += ls.retransmitted;
        let kind = self.cfg.span_kind();
        let in_use = self.cfg.channels_in_use();
        let b_channels = self
            .info
            .b_timeslots
            .iter()
            .enumerate()
            .map(|(b, &timeslot)| {
                let number = kind.channel_number(b) as u8;
                // No call uses a B-channel yet (the Q.931 call control comes next).
                let state = if in_use.contains(&number) { "idle" } else { "unused" };
                BChannelStatus { number, timeslot, state: state.into() }
            })
            .collect();
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
            l2: l2_name(self.link.state()).into(),
            l2_up: self.l2_up,
            tei: self.link.config().tei,
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

/// Applies the console's requests.
pub fn apply_commands(spans: &mut [Span], control: &Control) {
    for c in control.take() {
        match c {
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

/// The span task: runs until `shutdown`.
pub async fn run(
    mut spans: Vec<Span>,
    status: Arc<Mutex<Status>>,
    control: Control,
    wake: Arc<tokio::sync::Notify>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let now = Instant::now();
    for s in &mut spans {
        s.start(now);
    }
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = spans
            .iter()
            .filter_map(Span::poll_timeout)
            .min()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        apply_commands(&mut spans, &control);
        let now = Instant::now();
        for s in &mut spans {
            s.poll(now);
        }
        let st: Vec<SpanStatus> = spans.iter().map(Span::status).collect();
        let mut g = status.lock().unwrap_or_else(|p| p.into_inner());
        if g.isdn != st {
            g.isdn = st;
        }
    }
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
        assert_eq!(span.q931_rx.len(), 1);
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
        assert!(validate_spans(&[bri]).unwrap_err().to_string().contains("TEI management"));
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
