//! The FXO line machine: the gateway is the phone on one exchange (CO) line.
//!
//! Loop-start signalling seen from the terminal side (Telcordia GR-506 /
//! ETSI ES 201 970 / EN 300 001 terms). Nothing here reads a clock, sleeps or
//! touches hardware: the DAA's supervision events ([`FxoEvent`]), the rt
//! thread's detector results (call-progress tones and speech energy,
//! [`LineTone`]; caller ID, [`FxoLine::handle_caller_id`]; DTMF digits; the
//! end of dialling) and the call control's requests come in, each with
//! `now`; [`FxoAction`]s come out.
//!
//! # Driving it
//!
//! After every input (`handle_*`, [`FxoLine::place`], [`FxoLine::answer`],
//! [`FxoLine::release`]) drain [`FxoLine::poll_action`] until `None` and
//! carry the actions out in order: [`FxoAction::Seize`] and
//! [`FxoAction::Dial`] on the port (`FxoPort::seize`, the rt thread's DTMF
//! or pulse generator), media, caller ID receiver and tone commands on the
//! rt thread, and the call events to the call control. Then sleep until
//! [`FxoLine::poll_timeout`] and call [`FxoLine::handle_timeout`].
//!
//! # Inbound
//!
//! Ringing is judged here, the HAL only reports bursts: a burst counts as a
//! ring once it has lasted [`FxoConfig::ring_min_on`] (shorter ones are
//! line noise); a burst longer than [`FxoConfig::ring_max_on`] is a broken
//! cadence; no burst for [`FxoConfig::ring_gone`] after the last one means
//! the caller gave up. Caller ID ([`FxoCallerId`]) is received
//! - before the first ring: a line reversal in idle (ETSI EN 300 659-1 5.3.1
//!   DT-AS, BT SIN 227) starts the receiver; the data is kept until the
//!   first ring; a reversal with no ring within
//!   [`FxoConfig::caller_id_wait`] (a message-waiting indication) is no call;
//! - between the first and second ring (Telcordia GR-30, EN 300 659-1 5.2):
//!   the receiver runs from the end of the first ring until the data or the
//!   second ring.
//!
//! The call is announced ([`FxoAction::Incoming`]) at the first ring, after
//! the data, or at the second ring when the data never came (with a
//! [`CallerIdFault`] saying why there is no number). Its destination is the
//! line's fixed one (private line automatic ringdown: an extension, hunt
//! group or SIP URI the call control holds per line; `digits: None`) or,
//! only when [`FxoConfig::two_stage`] is set (off by default), two-stage
//! dialling: the line is seized at once, the caller gets dial tone, keys the
//! PIN and then the number (ended by `#` or the inter-digit timeout), and
//! the call is announced with `digits: Some(..)`. A wrong PIN releases the
//! line. The call control connects an announced call with
//! [`FxoLine::answer`] (seize, media on) or drops it with
//! [`FxoLine::release`] (the rings are then ignored until they stop).
//!
//! # Outbound
//!
//! [`FxoLine::place`] seizes the line (loop start), waits for dial tone
//! ([`DialToneWait::Detect`], [`FxoCause::NoDialTone`] if it never comes) or
//! a fixed time ([`DialToneWait::Timed`]), dials ([`FxoAction::Dial`], DTMF
//! or pulse; the rt thread reports the end with [`FxoLine::handle_dialled`],
//! guarded by a timer) and connects the media path at once so the caller
//! hears the exchange's progress tones and announcements (early media).
//! Progress tones map to causes: busy 17, reorder / congestion 34; no answer
//! within [`FxoConfig::no_answer`] 19. Answer supervision
//! ([`AnswerSupervision`]): a line reversal always means answer; the
//! configured mode adds an assumed answer after a time or on speech energy.
//!
//! # Disconnect supervision and release
//!
//! While seized, the far end's release is detected by each method enabled in
//! [`DisconnectSupervision`] (per line): an open-loop interval (CPC: loop
//! current gone for at least `cpc_min`), a line reversal that persists for
//! [`FxoConfig::reversal_guard`] (a reversal undone within it is a glitch),
//! and busy / reorder / congestion (or dial) tone. Any release puts the line
//! on hook and keeps it there for [`FxoConfig::release_guard`] (the
//! exchange's own release takes that long) before it takes a ring or a new
//! seizure.
//!
//! Glare (the exchange rings while the gateway seizes) goes to the inbound
//! call: the outbound attempt fails with [`FxoCause::Glare`] (34, so the
//! call control fails over to another line), the line goes back on hook and
//! the ringing, if it goes on after the guard, is a fresh inbound call.
//! [`FxoLine::place`] on a line that is ringing fails the same way.
//!
//! Every call the call control knows about (announced by `Incoming`, or
//! started by [`FxoLine::place`]) ends with exactly one
//! [`FxoAction::Released`], unless the call control ended it itself with
//! [`FxoLine::release`]. Inbound attempts that never got announced end
//! with [`FxoAction::Discarded`] (for logs and counters only).
//!
//! Not handled yet: ground start; an RP-AS ring burst before the data (EN
//! 300 659-1 5.3.2) and DTMF caller ID without a line reversal are not told
//! apart from a first ring; hook flash; a pulse-dialled PIN.

use std::time::{Duration, Instant};

use gw_hal::{FxoEvent, Polarity};

use crate::fxs::Tone;

/// Longest number dialled or collected (two-stage).
pub const MAX_FXO_DIGITS: usize = 32;
/// Longest calling name kept from caller ID (MDMF allows 50 octets).
pub const MAX_NAME: usize = 50;

/// When caller ID is received on this line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FxoCallerId {
    None,
    /// ETSI / BT: line reversal (DT-AS), data, then the first ring.
    BeforeFirstRing,
    /// Bell 202 (GR-30) or ETSI V.23 data between the first and second ring.
    AfterFirstRing,
    /// Both: data before the first ring if the line reverses, else after it.
    Either,
}

impl FxoCallerId {
    fn before(self) -> bool {
        matches!(self, Self::BeforeFirstRing | Self::Either)
    }
    fn after(self) -> bool {
        matches!(self, Self::AfterFirstRing | Self::Either)
    }
}

/// How an outbound call is known to be answered. A line reversal before the
/// answer is an answer in every mode; after an answer assumed or heard, the
/// line's first reversal is its late answer signal, not a disconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerSupervision {
    /// Only a line reversal (the line offers answer supervision).
    PolarityReversal,
    /// Assumed this long after the end of dialling.
    AssumedAfter(Duration),
    /// On speech energy from the far end ([`LineTone::Speech`]).
    SpeechEnergy,
}

/// Which far-end release signals this line gets (any number of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisconnectSupervision {
    /// Open-loop interval (CPC): loop current gone at least this long.
    pub cpc_min: Option<Duration>,
    /// A line reversal while connected (lasting [`FxoConfig::reversal_guard`]).
    pub polarity_reversal: bool,
    /// Busy, reorder, congestion or dial tone while connected.
    pub tone: bool,
}

impl DisconnectSupervision {
    /// At least one method is enabled.
    pub fn any(&self) -> bool {
        self.cpc_min.is_some() || self.polarity_reversal || self.tone
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialMode {
    Dtmf,
    /// Loop-disconnect (decadic) dialling: digits 0-9 only.
    Pulse,
}

/// What to wait for after seizing, before dialling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialToneWait {
    /// Dial tone from the progress detector; none within `timeout` fails the
    /// call with [`FxoCause::NoDialTone`].
    Detect { timeout: Duration },
    /// Dial blindly after this long.
    Timed(Duration),
}

/// Two-stage dialling for inbound calls (off unless configured).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwoStage {
    /// Digits the caller keys first; must not be empty.
    pub pin: String,
    /// Dial tone with no digit: release.
    pub first_digit_timeout: Duration,
    /// Between digits; ends the number (or releases if the PIN is not complete).
    pub inter_digit_timeout: Duration,
}

impl TwoStage {
    pub fn new(pin: &str) -> Self {
        Self {
            pin: pin.into(),
            first_digit_timeout: Duration::from_secs(10),
            inter_digit_timeout: Duration::from_secs(4),
        }
    }
}

/// Per-line settings; [`FxoConfig::for_country`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FxoConfig {
    pub caller_id: FxoCallerId,
    pub answer: AnswerSupervision,
    pub disconnect: DisconnectSupervision,
    pub dial: DialMode,
    pub dial_tone: DialToneWait,
    /// A ring burst counts once it has lasted this long (shorter: noise).
    pub ring_min_on: Duration,
    /// A burst longer than this is a broken cadence.
    pub ring_max_on: Duration,
    /// Bursts this close together are one ring (the UK double ring's
    /// 200 ms gap; distinctive ringing).
    pub ring_burst_gap: Duration,
    /// No ring for this long after a ring: the caller gave up (longer than
    /// the country's longest ring-off period).
    pub ring_gone: Duration,
    /// Caller ID before the first ring: longest wait from the line reversal
    /// to the first ring.
    pub caller_id_wait: Duration,
    /// Outbound: no answer after dialling within this: cause 19.
    pub no_answer: Duration,
    /// A line reversal while connected must persist this long to count as
    /// a disconnect.
    pub reversal_guard: Duration,
    /// On hook for at least this long after a release.
    pub release_guard: Duration,
    /// Two-stage dialling for inbound calls; `None` (the default): the
    /// line's fixed destination.
    pub two_stage: Option<TwoStage>,
}

impl FxoConfig {
    /// Defaults for a country, from its ringing cadence (ITU-T E.180
    /// Supplement 2) and caller ID method:
    ///
    /// | code | ringing | caller ID | `ring_max_on` | `ring_gone` | `cpc_min` |
    /// |---|---|---|---|---|---|
    /// | US, CA | 2 s on / 4 s off | Bell 202 after the first ring (GR-30) | 3 s | 6.5 s | 350 ms |
    /// | UK, GB | 0.4-0.2-0.4 on / 2 s off | V.23 before the first ring, after a line reversal (BT SIN 227) | 1.2 s | 4.5 s | 200 ms |
    /// | DE | 1 s on / 4 s off | V.23 after the first ring (EN 300 659-1 5.2) | 1.6 s | 6.5 s | 250 ms |
    ///
    /// The open-loop intervals are typical values, not spec limits: set them
    /// from the exchange's documentation. Common to all: a ring counts after
    /// 150 ms, bursts 400 ms apart are one ring; dial tone detected within
    /// 5 s; answer on a reversal or on speech; no answer after 60 s;
    /// disconnect by every method, reversal guard 100 ms; caller ID wait
    /// 6 s; release guard 1 s; DTMF; two-stage off. Unknown codes: `None`.
    pub fn for_country(code: &str) -> Option<Self> {
        let (caller_id, ring_max_on, ring_gone, cpc_ms) = match code.to_ascii_uppercase().as_str() {
            "US" | "CA" => (FxoCallerId::AfterFirstRing, 3000, 6500, 350),
            "UK" | "GB" => (FxoCallerId::BeforeFirstRing, 1200, 4500, 200),
            "DE" => (FxoCallerId::AfterFirstRing, 1600, 6500, 250),
            _ => return None,
        };
        Some(Self {
            caller_id,
            answer: AnswerSupervision::SpeechEnergy,
            disconnect: DisconnectSupervision {
                cpc_min: Some(Duration::from_millis(cpc_ms)),
                polarity_reversal: true,
                tone: true,
            },
            dial: DialMode::Dtmf,
            dial_tone: DialToneWait::Detect { timeout: Duration::from_secs(5) },
            ring_min_on: Duration::from_millis(150),
            ring_max_on: Duration::from_millis(ring_max_on),
            ring_burst_gap: Duration::from_millis(400),
            ring_gone: Duration::from_millis(ring_gone),
            caller_id_wait: Duration::from_secs(6),
            no_answer: Duration::from_secs(60),
            reversal_guard: Duration::from_millis(100),
            release_guard: Duration::from_secs(1),
            two_stage: None,
        })
    }

    /// Checks the settings a line cannot work with.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !self.disconnect.any() {
            return Err("no disconnect supervision: a line the far end left would stay seized");
        }
        if self.ring_min_on >= self.ring_max_on {
            return Err("ring_min_on must be shorter than ring_max_on");
        }
        if let Some(ts) = &self.two_stage {
            if ts.pin.is_empty() || ts.pin.len() > MAX_FXO_DIGITS || !ts.pin.bytes().all(is_dtmf_key) {
                return Err("two-stage PIN must be 1-32 DTMF digits (0-9 * #)");
            }
        }
        Ok(())
    }
}

/// What the rt thread's detectors heard on the line (the call-progress
/// tone detector and speech energy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTone {
    DialTone,
    Ringback,
    Busy,
    Reorder,
    Congestion,
    /// Energy that is not a progress tone: someone talking.
    Speech,
    /// The tone reported last ended.
    ToneGone,
}

/// Caller ID as received (already decoded and checked by the DSP).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerIdInfo {
    /// `None`: withheld or unavailable.
    pub number: Option<String>,
    pub name: Option<String>,
}

/// Why an announced call has no caller ID although the line has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerIdFault {
    /// The message's checksum did not match.
    BadChecksum,
    /// Undecodable message or unusable fields.
    Malformed,
    /// No message before the point it was due.
    NoData,
}

/// How the far end's release was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisconnectMethod {
    Cpc,
    PolarityReversal,
    Tone,
}

/// Why a call or attempt ended; [`FxoCause::q850`] gives the cause value
/// for the call control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FxoCause {
    /// Busy tone before answer.
    Busy,
    /// Reorder (number unobtainable / cannot complete) tone before answer.
    Reorder,
    Congestion,
    NoAnswer,
    /// Seized, but no dial tone.
    NoDialTone,
    /// Loop current gone while seizing: the line is dead or cut.
    LineFault,
    /// The exchange rang while the gateway seized, or [`FxoLine::place`]
    /// on a ringing line: the inbound call wins.
    Glare,
    /// [`FxoLine::place`] on a line already in use or in its release guard.
    LineBusy,
    /// A number that cannot be dialled (bad characters, pulse with `*#`,
    /// too long).
    InvalidNumber,
    /// Ringing stopped before the answer: the caller gave up.
    RingingStopped,
    /// A ring burst longer than the cadence allows.
    BrokenRingCadence,
    FarEndReleased(DisconnectMethod),
    /// Two-stage: wrong PIN.
    WrongPin,
    /// Two-stage: no (complete) PIN or number keyed in time.
    NoDigits,
}

impl FxoCause {
    /// The ITU-T Q.850 cause value.
    pub fn q850(self) -> u8 {
        match self {
            Self::Busy => 17,
            Self::Reorder | Self::Congestion | Self::Glare | Self::LineBusy => 34,
            Self::NoAnswer => 19,
            Self::NoDialTone | Self::BrokenRingCadence => 38,
            Self::LineFault => 27,
            Self::InvalidNumber | Self::NoDigits => 28,
            Self::RingingStopped | Self::FarEndReleased(_) => 16,
            Self::WrongPin => 21,
        }
    }
}

/// What the line asks of the port, the rt thread and the call control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FxoAction {
    /// Go off hook (`true`: close the loop) or on hook.
    Seize(bool),
    /// Dial `digits` (DTMF, or loop-disconnect pulses when `pulse`); report
    /// the end with [`FxoLine::handle_dialled`].
    Dial { digits: String, pulse: bool },
    /// Join the line's audio to the call's media path.
    ConnectMedia,
    DisconnectMedia,
    /// Run the caller ID receiver on the line's audio (on hook); its result
    /// goes to [`FxoLine::handle_caller_id`].
    StartCallerIdReceiver,
    StopCallerIdReceiver,
    /// Play a tone towards the line (two-stage dial tone); replaces any tone.
    PlayTone(Tone),
    StopTone,
    /// To the call control: an inbound call. `caller`/`name` from caller ID
    /// (`None`: withheld, unavailable, or `caller_id_fault`); `digits`: the
    /// two-stage number, `None` for the line's fixed destination.
    Incoming {
        caller: Option<String>,
        name: Option<String>,
        caller_id_fault: Option<CallerIdFault>,
        digits: Option<String>,
    },
    /// To the call control: ringback heard (in band: the media path is up).
    Alerting,
    /// To the call control: the outbound call was answered.
    Answered,
    /// To the call control: its call is over (failed, or released by the
    /// far end); the line is on hook.
    Released(FxoCause),
    /// An inbound attempt that was never announced ended (logs only).
    Discarded(FxoCause),
}

/// Line states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FxoState {
    /// On hook, nothing going on.
    Idle,
    /// Line reversed in idle: receiving caller ID before the first ring.
    CallerIdBeforeRing,
    /// Ringing, not announced yet (first ring, caller ID after it).
    RingDetect,
    /// Inbound call announced, still ringing.
    Offered,
    /// Ringing of a call that was dropped or broken: ignored until it stops.
    IgnoringRings,
    /// Two-stage: seized, collecting PIN and number.
    TwoStage,
    /// Outbound: seized, waiting for dial tone.
    Seizing,
    Dialling,
    /// Dialled, waiting for the answer (media up).
    Proceeding,
    /// Seized, talking (inbound answered, outbound answered, or two-stage
    /// call announced).
    Connected,
    /// Released: on hook until the guard time is over.
    Guard,
}

/// Named timers; several may run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    RingValidate,
    RingTooLong,
    RingGone,
    CallerIdWait,
    DialTone,
    DialGuard,
    NoAnswer,
    AssumeAnswer,
    Cpc,
    ReversalGuard,
    Digit,
    ReleaseGuard,
}

const TIMERS: usize = 12;

/// The longest dialling may take before the line goes on without the rt
/// thread's report: per digit, 10 pulses at 10 pps plus the inter-digit
/// pause, or a DTMF tone and pause; plus 2 s.
fn dial_guard(digits: usize, pulse: bool) -> Duration {
    let per_digit = if pulse { 1800 } else { 300 };
    Duration::from_millis(2000 + per_digit * digits as u64)
}

fn is_dtmf_key(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'*' | b'#')
}

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// Two-stage collection progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Pin,
    Number,
}

/// One FXO line; see the module docs.
#[derive(Debug)]
pub struct FxoLine {
    config: FxoConfig,
    state: FxoState,
    timers: [Option<Instant>; TIMERS],
    actions: std::collections::VecDeque<FxoAction>,
    seized: bool,
    media: bool,
    tone: bool,
    cid_rx: bool,
    /// Polarity as the events told it (toggled on each reversal).
    polarity: Polarity,
    /// Polarity when the call was answered: a lasting change is a disconnect.
    /// `None`: an outbound call answered without a reversal, whose line may
    /// still send its answer reversal (that first reversal sets it).
    answer_polarity: Option<Polarity>,
    /// The ring burst now on, and whether it has counted as a ring.
    ring_on: Option<Instant>,
    ring_counted: bool,
    /// When the last burst ended, and whether it counted as a ring.
    last_burst: Option<(Instant, bool)>,
    rings: u32,
    /// Caller ID of the inbound attempt.
    caller: Option<CallerIdInfo>,
    cid_fault: Option<CallerIdFault>,
    /// Two-stage digits.
    stage: Stage,
    digits: String,
    /// Outbound: the number, until dialled.
    number: String,
    alerted: bool,
    /// Loop current is gone (CPC running or fired).
    loop_dropped: bool,
}

impl FxoLine {
    pub fn new(config: FxoConfig) -> Self {
        Self {
            config,
            state: FxoState::Idle,
            timers: [None; TIMERS],
            actions: Default::default(),
            seized: false,
            media: false,
            tone: false,
            cid_rx: false,
            polarity: Polarity::Normal,
            answer_polarity: None,
            ring_on: None,
            ring_counted: false,
            last_burst: None,
            rings: 0,
            caller: None,
            cid_fault: None,
            stage: Stage::Pin,
            digits: String::new(),
            number: String::new(),
            alerted: false,
            loop_dropped: false,
        }
    }

    /// Takes changed settings (a committed configuration): a call in
    /// progress goes on; the new answer, disconnect and dialling rules serve
    /// the next call.
    pub fn set_config(&mut self, config: FxoConfig) {
        self.config = config;
    }

    // ---------------------------------------------------------------- getters

    pub fn state(&self) -> FxoState {
        self.state
    }

    pub fn config(&self) -> &FxoConfig {
        &self.config
    }

    /// The line is off hook (as last asked with [`FxoAction::Seize`]).
    pub fn is_seized(&self) -> bool {
        self.seized
    }

    /// The media path is connected.
    pub fn media_connected(&self) -> bool {
        self.media
    }

    /// Rings counted for the inbound attempt.
    pub fn rings(&self) -> u32 {
        self.rings
    }

    /// When [`FxoLine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// Next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<FxoAction> {
        self.actions.pop_front()
    }

    // ---------------------------------------------------------------- inputs

    /// A supervision event from the port.
    pub fn handle_line(&mut self, now: Instant, ev: FxoEvent) {
        match ev {
            FxoEvent::RingStart => self.ring_start(now),
            FxoEvent::RingStop => self.ring_stop(now),
            FxoEvent::PolarityReversal => self.reversal(now),
            FxoEvent::LoopCurrentDrop => {
                // Pulse dialling breaks the loop itself.
                let pulsing = self.state == FxoState::Dialling && self.config.dial == DialMode::Pulse;
                if self.seized && !self.loop_dropped && !pulsing {
                    self.loop_dropped = true;
                    if let Some(d) = self.config.disconnect.cpc_min {
                        self.set(Timer::Cpc, later(now, d));
                    }
                }
            }
            FxoEvent::LoopCurrentRestore => {
                self.loop_dropped = false;
                self.cancel(Timer::Cpc);
            }
        }
    }

    /// A progress tone or speech energy heard on the line.
    pub fn handle_tone(&mut self, now: Instant, tone: LineTone) {
        match (self.state, tone) {
            (FxoState::Seizing, LineTone::DialTone) if matches!(self.config.dial_tone, DialToneWait::Detect { .. }) => {
                self.dial(now)
            }
            (FxoState::Seizing | FxoState::Dialling | FxoState::Proceeding, LineTone::Busy) => {
                self.fail(now, FxoCause::Busy)
            }
            (FxoState::Seizing | FxoState::Dialling | FxoState::Proceeding, LineTone::Reorder) => {
                self.fail(now, FxoCause::Reorder)
            }
            (FxoState::Seizing | FxoState::Dialling | FxoState::Proceeding, LineTone::Congestion) => {
                self.fail(now, FxoCause::Congestion)
            }
            (FxoState::Proceeding, LineTone::Ringback) if !self.alerted => {
                self.alerted = true;
                self.push(FxoAction::Alerting);
            }
            (FxoState::Proceeding, LineTone::Speech) if self.config.answer == AnswerSupervision::SpeechEnergy => {
                self.answered(now, false)
            }
            (FxoState::Connected, LineTone::Busy | LineTone::Reorder | LineTone::Congestion | LineTone::DialTone)
                if self.config.disconnect.tone =>
            {
                self.fail(now, FxoCause::FarEndReleased(DisconnectMethod::Tone))
            }
            // The caller of a two-stage call hung up (the exchange gives
            // busy or reorder tone); our own dial tone is not a disconnect.
            (FxoState::TwoStage, LineTone::Busy | LineTone::Reorder | LineTone::Congestion)
                if self.config.disconnect.tone =>
            {
                self.discard_seized(now, FxoCause::FarEndReleased(DisconnectMethod::Tone))
            }
            _ => {}
        }
    }

    /// The caller ID receiver's result. Results when no receiver was asked
    /// for (late, or after [`FxoAction::StopCallerIdReceiver`]) are stale.
    pub fn handle_caller_id(&mut self, now: Instant, result: Result<CallerIdInfo, CallerIdFault>) {
        if !self.cid_rx {
            return;
        }
        self.stop_cid_rx();
        match result.and_then(sanitize) {
            Ok(info) => {
                self.caller = Some(info);
                self.cid_fault = None;
            }
            Err(fault) => self.cid_fault = Some(fault),
        }
        // Data after the first ring: the call is complete now. Before the
        // first ring: wait for it.
        if self.state == FxoState::RingDetect && self.rings > 0 {
            self.announce(now);
        }
    }

    /// A DTMF digit (ASCII) heard on the line: two-stage dialling only.
    pub fn handle_digit(&mut self, now: Instant, digit: u8) {
        if self.state != FxoState::TwoStage || !is_dtmf_key(digit) {
            return;
        }
        let Some(ts) = self.config.two_stage.clone() else { return };
        if self.digits.is_empty() && self.tone {
            self.stop_tone();
        }
        match self.stage {
            Stage::Pin => {
                self.digits.push(digit as char);
                if self.digits.len() < ts.pin.len() {
                    self.set(Timer::Digit, later(now, ts.inter_digit_timeout));
                } else if self.digits == ts.pin {
                    self.digits.clear();
                    self.stage = Stage::Number;
                    // Second dial tone: the PIN was right, key the number.
                    self.play(Tone::Dial);
                    self.set(Timer::Digit, later(now, ts.first_digit_timeout));
                } else {
                    self.discard_seized(now, FxoCause::WrongPin);
                }
            }
            Stage::Number => {
                if digit == b'#' {
                    self.two_stage_done(now);
                } else {
                    self.digits.push(digit as char);
                    if self.digits.len() >= MAX_FXO_DIGITS {
                        self.two_stage_done(now);
                    } else {
                        self.set(Timer::Digit, later(now, ts.inter_digit_timeout));
                    }
                }
            }
        }
    }

    /// The rt thread finished dialling.
    pub fn handle_dialled(&mut self, now: Instant) {
        if self.state == FxoState::Dialling {
            self.proceed(now);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for (i, &timer) in TIMER_ORDER.iter().enumerate() {
            match self.timers[i] {
                Some(at) if at <= now => {
                    self.timers[i] = None;
                    self.fire(now, timer);
                }
                _ => {}
            }
        }
    }

    // ------------------------------------------------------- call control

    /// Places an outbound call to `number` (`,` is a pause for the dialler).
    /// Fails at once ([`FxoAction::Released`]) with [`FxoCause::Glare`] on a
    /// ringing line, [`FxoCause::LineBusy`] on a line in use and
    /// [`FxoCause::InvalidNumber`] on a number that cannot be dialled.
    pub fn place(&mut self, now: Instant, number: &str) {
        match self.state {
            FxoState::Idle => {}
            FxoState::CallerIdBeforeRing | FxoState::RingDetect | FxoState::Offered | FxoState::IgnoringRings => {
                return self.push(FxoAction::Released(FxoCause::Glare));
            }
            _ => return self.push(FxoAction::Released(FxoCause::LineBusy)),
        }
        let pulse = self.config.dial == DialMode::Pulse;
        let ok = number.len() <= MAX_FXO_DIGITS
            && number.bytes().all(|b| {
                b.is_ascii_digit() || b == b',' || (!pulse && matches!(b, b'*' | b'#' | b'A'..=b'D'))
            });
        if !ok {
            return self.push(FxoAction::Released(FxoCause::InvalidNumber));
        }
        self.number = number.into();
        self.alerted = false;
        self.seize(true);
        self.state = FxoState::Seizing;
        let wait = match self.config.dial_tone {
            DialToneWait::Detect { timeout } => timeout,
            DialToneWait::Timed(d) => d,
        };
        self.set(Timer::DialTone, later(now, wait));
    }

    /// Connects the announced inbound call: seize (the exchange trips the
    /// ringing) and join the media. Ignored in other states.
    pub fn answer(&mut self, now: Instant) {
        if self.state != FxoState::Offered {
            return;
        }
        let _ = now;
        self.stop_cid_rx();
        self.clear_timers();
        self.ring_on = None;
        self.seize(true);
        self.connect_media();
        self.answer_polarity = Some(self.polarity);
        self.loop_dropped = false;
        self.state = FxoState::Connected;
    }

    /// The call control ends its call. An inbound call still ringing is
    /// dropped (its rings are ignored until they stop); a seized line goes
    /// on hook. No [`FxoAction::Released`] follows.
    pub fn release(&mut self, now: Instant) {
        match self.state {
            FxoState::Offered => {
                self.stop_cid_rx();
                self.ignore_rings(now);
            }
            FxoState::Seizing | FxoState::Dialling | FxoState::Proceeding | FxoState::Connected => {
                self.hang_up(now)
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------- inbound

    fn ring_start(&mut self, now: Instant) {
        match self.state {
            FxoState::Idle | FxoState::CallerIdBeforeRing | FxoState::RingDetect | FxoState::Offered => {
                if self.state == FxoState::Idle {
                    self.new_attempt();
                }
                if self.state != FxoState::Offered {
                    self.cancel(Timer::CallerIdWait);
                    self.state = FxoState::RingDetect;
                }
                if self.ring_on.is_none() {
                    self.ring_on = Some(now);
                    // The second burst of a double ring is the same ring.
                    self.ring_counted = matches!(self.last_burst,
                        Some((end, true)) if now.saturating_duration_since(end) < self.config.ring_burst_gap);
                    self.cancel(Timer::RingGone);
                    self.set(Timer::RingValidate, later(now, self.config.ring_min_on));
                    self.set(Timer::RingTooLong, later(now, self.config.ring_max_on));
                }
            }
            FxoState::IgnoringRings => self.set(Timer::RingGone, later(now, self.config.ring_gone)),
            // The exchange offers a call while we seize: it wins.
            FxoState::Seizing | FxoState::Dialling => self.fail(now, FxoCause::Glare),
            _ => {}
        }
    }

    fn ring_stop(&mut self, now: Instant) {
        match self.state {
            FxoState::RingDetect | FxoState::Offered => {
                if self.ring_on.take().is_none() {
                    return;
                }
                self.last_burst = Some((now, self.ring_counted));
                self.cancel(Timer::RingValidate);
                self.cancel(Timer::RingTooLong);
                self.set(Timer::RingGone, later(now, self.config.ring_gone));
                // GR-30 / EN 300 659-1 5.2: the data follows the first ring.
                if self.state == FxoState::RingDetect
                    && self.ring_counted
                    && self.rings == 1
                    && self.config.caller_id.after()
                    && self.caller.is_none()
                    && self.cid_fault.is_none()
                    && !self.cid_rx
                {
                    self.start_cid_rx();
                }
            }
            FxoState::IgnoringRings => self.set(Timer::RingGone, later(now, self.config.ring_gone)),
            _ => {}
        }
    }

    /// A burst lasted `ring_min_on`: one more ring.
    fn ring_counted(&mut self, now: Instant) {
        self.ring_counted = true;
        self.rings = self.rings.saturating_add(1);
        if self.state != FxoState::RingDetect {
            return;
        }
        let cid = self.config.caller_id;
        let have = self.caller.is_some() || self.cid_fault.is_some();
        if self.rings == 1 && cid.after() && !have {
            return; // the data comes after this ring
        }
        if cid != FxoCallerId::None && !have {
            // The data should be here by now.
            self.stop_cid_rx();
            self.cid_fault = Some(CallerIdFault::NoData);
        }
        self.announce(now);
    }

    fn new_attempt(&mut self) {
        self.rings = 0;
        self.ring_on = None;
        self.ring_counted = false;
        self.last_burst = None;
        self.caller = None;
        self.cid_fault = None;
        self.digits.clear();
        self.stage = Stage::Pin;
    }

    /// The inbound attempt is complete: announce it, or start two-stage
    /// dialling.
    fn announce(&mut self, now: Instant) {
        self.cancel(Timer::CallerIdWait);
        if let Some(ts) = self.config.two_stage.clone() {
            self.clear_timers();
            self.ring_on = None;
            self.seize(true);
            self.answer_polarity = Some(self.polarity);
            self.loop_dropped = false;
            self.play(Tone::Dial);
            self.digits.clear();
            self.stage = Stage::Pin;
            self.state = FxoState::TwoStage;
            self.set(Timer::Digit, later(now, ts.first_digit_timeout));
            return;
        }
        let info = self.caller.take().unwrap_or_default();
        self.push(FxoAction::Incoming {
            caller: info.number,
            name: info.name,
            caller_id_fault: self.cid_fault,
            digits: None,
        });
        self.state = FxoState::Offered;
    }

    fn two_stage_done(&mut self, now: Instant) {
        if self.digits.is_empty() {
            return self.discard_seized(now, FxoCause::NoDigits);
        }
        self.stop_tone();
        self.cancel(Timer::Digit);
        let info = self.caller.take().unwrap_or_default();
        let digits = std::mem::take(&mut self.digits);
        self.push(FxoAction::Incoming {
            caller: info.number,
            name: info.name,
            caller_id_fault: self.cid_fault,
            digits: Some(digits),
        });
        self.connect_media();
        self.state = FxoState::Connected;
    }

    /// A broken or abandoned inbound attempt: end it, ignore its rings.
    fn ignore_rings(&mut self, now: Instant) {
        self.clear_timers();
        self.ring_on = None;
        self.state = FxoState::IgnoringRings;
        self.set(Timer::RingGone, later(now, self.config.ring_gone));
    }

    /// Ends an unseized inbound attempt with `cause`.
    fn end_inbound(&mut self, now: Instant, cause: FxoCause, rings_go_on: bool) {
        self.stop_cid_rx();
        match self.state {
            FxoState::Offered => self.push(FxoAction::Released(cause)),
            _ if self.rings > 0 => self.push(FxoAction::Discarded(cause)),
            _ => {}
        }
        if rings_go_on {
            self.ignore_rings(now);
        } else {
            self.go_idle();
        }
    }

    /// Two-stage collection failed: release the seized line.
    fn discard_seized(&mut self, now: Instant, cause: FxoCause) {
        self.push(FxoAction::Discarded(cause));
        self.hang_up(now);
    }

    // ------------------------------------------------------------ outbound

    fn dial(&mut self, now: Instant) {
        self.cancel(Timer::DialTone);
        if self.number.is_empty() {
            return self.proceed(now);
        }
        let pulse = self.config.dial == DialMode::Pulse;
        let digits = std::mem::take(&mut self.number);
        self.set(Timer::DialGuard, later(now, dial_guard(digits.len(), pulse)));
        self.push(FxoAction::Dial { digits, pulse });
        self.state = FxoState::Dialling;
    }

    fn proceed(&mut self, now: Instant) {
        self.cancel(Timer::DialGuard);
        self.connect_media();
        self.state = FxoState::Proceeding;
        // The exchange reversed the line while the last keys were still
        // going out (a far end that answers at once): that was the answer.
        if self.polarity == Polarity::Reversed {
            return self.answered(now, true);
        }
        self.set(Timer::NoAnswer, later(now, self.config.no_answer));
        if let AnswerSupervision::AssumedAfter(d) = self.config.answer {
            self.set(Timer::AssumeAnswer, later(now, d));
        }
    }

    fn answered(&mut self, _now: Instant, by_reversal: bool) {
        self.cancel(Timer::NoAnswer);
        self.cancel(Timer::AssumeAnswer);
        self.answer_polarity = by_reversal.then_some(self.polarity);
        self.push(FxoAction::Answered);
        self.state = FxoState::Connected;
    }

    fn reversal(&mut self, now: Instant) {
        self.polarity = match self.polarity {
            Polarity::Normal => Polarity::Reversed,
            Polarity::Reversed => Polarity::Normal,
        };
        match self.state {
            FxoState::Idle if self.config.caller_id.before() => {
                self.new_attempt();
                self.start_cid_rx();
                self.state = FxoState::CallerIdBeforeRing;
                self.set(Timer::CallerIdWait, later(now, self.config.caller_id_wait));
            }
            FxoState::Proceeding => self.answered(now, true),
            FxoState::Connected | FxoState::TwoStage if self.config.disconnect.polarity_reversal => {
                if self.answer_polarity.is_none() {
                    // The answer reversal of a line whose answer was
                    // assumed or heard first: the baseline, not a release.
                    self.answer_polarity = Some(self.polarity);
                } else if Some(self.polarity) == self.answer_polarity {
                    self.cancel(Timer::ReversalGuard); // undone: a glitch
                } else {
                    self.set(Timer::ReversalGuard, later(now, self.config.reversal_guard));
                }
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------- timers

    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::RingValidate => {
                if self.ring_on.is_some() && !self.ring_counted {
                    self.ring_counted(now);
                }
            }
            Timer::RingTooLong => {
                if matches!(self.state, FxoState::RingDetect | FxoState::Offered) {
                    self.end_inbound(now, FxoCause::BrokenRingCadence, true);
                }
            }
            Timer::RingGone => match self.state {
                FxoState::RingDetect | FxoState::Offered => self.end_inbound(now, FxoCause::RingingStopped, false),
                FxoState::IgnoringRings => self.go_idle(),
                _ => {}
            },
            // A reversal that brought no ring (message waiting, or a
            // glitch): no call.
            Timer::CallerIdWait => {
                if self.state == FxoState::CallerIdBeforeRing {
                    self.stop_cid_rx();
                    self.go_idle();
                }
            }
            Timer::DialTone => {
                if self.state == FxoState::Seizing {
                    match self.config.dial_tone {
                        DialToneWait::Detect { .. } => self.fail(now, FxoCause::NoDialTone),
                        DialToneWait::Timed(_) => self.dial(now),
                    }
                }
            }
            // The dialler never said it finished: go on.
            Timer::DialGuard => self.handle_dialled(now),
            Timer::NoAnswer => {
                if self.state == FxoState::Proceeding {
                    self.fail(now, FxoCause::NoAnswer);
                }
            }
            Timer::AssumeAnswer => {
                if self.state == FxoState::Proceeding {
                    self.answered(now, false);
                }
            }
            Timer::Cpc => match self.state {
                FxoState::Seizing => self.fail(now, FxoCause::LineFault),
                FxoState::TwoStage => self.discard_seized(now, FxoCause::FarEndReleased(DisconnectMethod::Cpc)),
                FxoState::Dialling | FxoState::Proceeding | FxoState::Connected => {
                    self.fail(now, FxoCause::FarEndReleased(DisconnectMethod::Cpc))
                }
                _ => {}
            },
            Timer::ReversalGuard => match self.state {
                FxoState::Connected => self.fail(now, FxoCause::FarEndReleased(DisconnectMethod::PolarityReversal)),
                FxoState::TwoStage => {
                    self.discard_seized(now, FxoCause::FarEndReleased(DisconnectMethod::PolarityReversal))
                }
                _ => {}
            },
            Timer::Digit => {
                if self.state == FxoState::TwoStage {
                    match self.stage {
                        Stage::Number => self.two_stage_done(now),
                        Stage::Pin => self.discard_seized(now, FxoCause::NoDigits),
                    }
                }
            }
            Timer::ReleaseGuard => {
                if self.state == FxoState::Guard {
                    self.go_idle();
                }
            }
        }
    }

    // ------------------------------------------------------------ helpers

    /// The call control's call failed or the far end left: tell it, hang up.
    fn fail(&mut self, now: Instant, cause: FxoCause) {
        self.push(FxoAction::Released(cause));
        self.hang_up(now);
    }

    /// On hook, everything off, guard time.
    fn hang_up(&mut self, now: Instant) {
        self.stop_cid_rx();
        self.stop_tone();
        if self.media {
            self.media = false;
            self.push(FxoAction::DisconnectMedia);
        }
        self.seize(false);
        self.clear_timers();
        self.number.clear();
        self.digits.clear();
        self.ring_on = None;
        self.loop_dropped = false;
        self.state = FxoState::Guard;
        self.set(Timer::ReleaseGuard, later(now, self.config.release_guard));
    }

    fn go_idle(&mut self) {
        self.clear_timers();
        self.ring_on = None;
        self.caller = None;
        self.cid_fault = None;
        self.state = FxoState::Idle;
    }

    fn seize(&mut self, on: bool) {
        if self.seized != on {
            self.seized = on;
            self.push(FxoAction::Seize(on));
        }
    }

    fn connect_media(&mut self) {
        if !self.media {
            self.media = true;
            self.push(FxoAction::ConnectMedia);
        }
    }

    fn start_cid_rx(&mut self) {
        if !self.cid_rx {
            self.cid_rx = true;
            self.push(FxoAction::StartCallerIdReceiver);
        }
    }

    fn stop_cid_rx(&mut self) {
        if self.cid_rx {
            self.cid_rx = false;
            self.push(FxoAction::StopCallerIdReceiver);
        }
    }

    fn play(&mut self, t: Tone) {
        self.tone = true;
        self.push(FxoAction::PlayTone(t));
    }

    fn stop_tone(&mut self) {
        if self.tone {
            self.tone = false;
            self.push(FxoAction::StopTone);
        }
    }

    fn push(&mut self, a: FxoAction) {
        self.actions.push_back(a);
    }

    fn set(&mut self, t: Timer, at: Instant) {
        self.timers[t as usize] = Some(at);
    }

    fn cancel(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }

    fn clear_timers(&mut self) {
        self.timers = [None; TIMERS];
    }
}

/// Timers by index, in the order they are fired when due together.
const TIMER_ORDER: [Timer; TIMERS] = [
    Timer::RingValidate,
    Timer::RingTooLong,
    Timer::RingGone,
    Timer::CallerIdWait,
    Timer::DialTone,
    Timer::DialGuard,
    Timer::NoAnswer,
    Timer::AssumeAnswer,
    Timer::Cpc,
    Timer::ReversalGuard,
    Timer::Digit,
    Timer::ReleaseGuard,
];

/// Keeps what a call may carry of a caller ID: a number of dialable
/// characters, a printable name; anything else is a malformed message.
fn sanitize(info: CallerIdInfo) -> Result<CallerIdInfo, CallerIdFault> {
    let number = match info.number {
        Some(n) if n.is_empty() => None,
        Some(n) => {
            let ok = n.len() <= MAX_FXO_DIGITS
                && n.bytes().enumerate().all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'+') || b == b'*' || b == b'#');
            if !ok {
                return Err(CallerIdFault::Malformed);
            }
            Some(n)
        }
        None => None,
    };
    let name = info.name.and_then(|n| {
        let clean: String = n.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect();
        let clean = clean.trim().to_string();
        (!clean.is_empty()).then_some(clean)
    });
    Ok(CallerIdInfo { number, name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use FxoAction::*;
    use FxoEvent::*;

    struct Rig {
        line: FxoLine,
        t0: Instant,
        now: Instant,
    }

    fn rig_with(country: &str, f: impl FnOnce(&mut FxoConfig)) -> Rig {
        let mut cfg = FxoConfig::for_country(country).unwrap();
        f(&mut cfg);
        cfg.validate().unwrap();
        let t0 = Instant::now();
        Rig { line: FxoLine::new(cfg), t0, now: t0 }
    }

    fn us() -> Rig {
        rig_with("US", |c| c.caller_id = FxoCallerId::None)
    }

    impl Rig {
        fn actions(&mut self) -> Vec<FxoAction> {
            std::iter::from_fn(|| self.line.poll_action()).collect()
        }
        /// Advances virtual time to `ms` after the start, firing timers on the way.
        fn at(&mut self, ms: u64) -> Vec<FxoAction> {
            let target = self.t0 + Duration::from_millis(ms);
            while let Some(t) = self.line.poll_timeout() {
                if t > target {
                    break;
                }
                self.now = self.now.max(t);
                self.line.handle_timeout(t);
            }
            self.now = self.now.max(target);
            self.actions()
        }
        fn ms(&self) -> u64 {
            (self.now - self.t0).as_millis() as u64
        }
        fn ev(&mut self, ev: FxoEvent) -> Vec<FxoAction> {
            self.line.handle_line(self.now, ev);
            self.actions()
        }
        fn tone(&mut self, t: LineTone) -> Vec<FxoAction> {
            self.line.handle_tone(self.now, t);
            self.actions()
        }
        fn cid(&mut self, r: Result<CallerIdInfo, CallerIdFault>) -> Vec<FxoAction> {
            self.line.handle_caller_id(self.now, r);
            self.actions()
        }
        fn place(&mut self, number: &str) -> Vec<FxoAction> {
            self.line.place(self.now, number);
            self.actions()
        }
        fn answer(&mut self) -> Vec<FxoAction> {
            self.line.answer(self.now);
            self.actions()
        }
        fn release(&mut self) -> Vec<FxoAction> {
            self.line.release(self.now);
            self.actions()
        }
        fn dialled(&mut self) -> Vec<FxoAction> {
            self.line.handle_dialled(self.now);
            self.actions()
        }
        fn keys(&mut self, digits: &str) -> Vec<FxoAction> {
            for d in digits.bytes() {
                self.now += Duration::from_millis(200);
                self.line.handle_digit(self.now, d);
            }
            self.actions()
        }
        /// One ring burst from `start` lasting `on` ms; returns what
        /// happened during it and at its end.
        fn ring(&mut self, start: u64, on: u64) -> Vec<FxoAction> {
            let mut out = self.at(start);
            out.extend(self.ev(RingStart));
            out.extend(self.at(start + on));
            out.extend(self.ev(RingStop));
            out
        }
        /// Outbound call up to the answer-waiting state (DTMF, dial tone).
        fn proceeding(&mut self, number: &str) {
            assert_eq!(self.place(number), [Seize(true)]);
            self.now += Duration::from_millis(300);
            assert_eq!(self.tone(LineTone::DialTone), [Dial { digits: number.into(), pulse: false }]);
            self.now += Duration::from_millis(1000);
            assert_eq!(self.dialled(), [ConnectMedia]);
            assert_eq!(self.line.state(), FxoState::Proceeding);
        }
        fn assert_free(&mut self) {
            let t = self.ms() + 60_000;
            self.at(t);
            assert_eq!(self.line.state(), FxoState::Idle);
            assert!(!self.line.is_seized());
            assert_eq!(self.line.poll_timeout(), None);
            // Free: a new call seizes the line.
            assert_eq!(self.place("1"), [Seize(true)]);
            self.release();
        }
    }

    #[test]
    fn a_reversal_while_the_last_keys_go_out_is_the_answer() {
        let mut r = rig_with("US", |c| c.answer = AnswerSupervision::PolarityReversal);
        assert_eq!(r.place("5551234"), [Seize(true)]);
        r.now += Duration::from_millis(300);
        r.tone(LineTone::DialTone);
        r.now += Duration::from_millis(900);
        assert_eq!(r.ev(PolarityReversal), [], "still dialling");
        r.now += Duration::from_millis(200);
        assert_eq!(r.dialled(), [ConnectMedia, Answered]);
        assert_eq!(r.line.state(), FxoState::Connected);
    }

    fn info(number: &str, name: &str) -> CallerIdInfo {
        CallerIdInfo { number: Some(number.into()), name: Some(name.into()) }
    }

    fn incoming(number: Option<&str>, name: Option<&str>, fault: Option<CallerIdFault>) -> FxoAction {
        Incoming { caller: number.map(Into::into), name: name.map(Into::into), caller_id_fault: fault, digits: None }
    }

    // ---------------------------------------------------------- inbound

    #[test]
    fn inbound_ring_is_announced_after_ring_min_on_and_answered() {
        let mut r = us();
        r.at(1000);
        assert_eq!(r.ev(RingStart), []);
        assert_eq!(r.at(1149), [], "not a ring yet");
        assert_eq!(r.at(1150), [incoming(None, None, None)]);
        assert_eq!(r.line.state(), FxoState::Offered);
        r.at(3000);
        assert_eq!(r.ev(RingStop), []);
        assert_eq!(r.ring(7000, 2000), [], "the second ring is the same call");
        assert_eq!(r.line.rings(), 2);
        assert_eq!(r.answer(), [Seize(true), ConnectMedia]);
        assert_eq!(r.line.state(), FxoState::Connected);
        assert_eq!(r.line.poll_timeout(), None, "no timer while talking");
        assert_eq!(r.answer(), [], "once");
    }

    #[test]
    fn ring_glitches_are_no_call() {
        let mut r = us();
        assert_eq!(r.ring(100, 149), []);
        assert_eq!(r.ring(500, 80), []);
        assert_eq!(r.line.state(), FxoState::RingDetect);
        assert_eq!(r.at(580 + 6500), [], "nothing to discard: no ring counted");
        assert_eq!(r.line.state(), FxoState::Idle);
        assert_eq!(r.ev(RingStop), [], "stray stop");
    }

    #[test]
    fn caller_gives_up_before_answer() {
        let mut r = us();
        r.ring(0, 2000);
        r.ring(6000, 2000);
        assert_eq!(r.at(8000 + 6499), []);
        assert_eq!(r.at(8000 + 6500), [Released(FxoCause::RingingStopped)]);
        assert_eq!(r.line.state(), FxoState::Idle);
        assert_eq!(r.answer(), [], "too late");
        assert_eq!(r.ring(20_000, 200), [incoming(None, None, None)], "the next call is new");
    }

    #[test]
    fn broken_cadence_fails_the_call_and_frees_the_line() {
        let mut r = us();
        r.at(0);
        r.ev(RingStart);
        assert_eq!(r.at(150), [incoming(None, None, None)]);
        assert_eq!(r.at(2999), []);
        assert_eq!(r.at(3000), [Released(FxoCause::BrokenRingCadence)], "a ring longer than 3 s");
        assert_eq!(r.line.state(), FxoState::IgnoringRings);
        assert_eq!(r.place("1"), [Released(FxoCause::Glare)], "the line still rings");
        // The ring never stops (a stuck detector): the line is free anyway.
        assert_eq!(r.at(3000 + 6500), []);
        assert_eq!(r.line.state(), FxoState::Idle);
        assert_eq!(r.ev(RingStop), []);
        r.assert_free();
    }

    #[test]
    fn broken_cadence_before_the_announcement_is_discarded() {
        let mut r = rig_with("US", |_| {});
        r.at(0);
        r.ev(RingStart);
        assert_eq!(r.at(3000), [Discarded(FxoCause::BrokenRingCadence)], "caller ID was still due");
        r.ev(RingStop);
        r.ring(5000, 1000);
        assert_eq!(r.line.state(), FxoState::IgnoringRings, "still the same broken call");
        r.assert_free();
    }

    #[test]
    fn release_of_an_offered_call_ignores_its_rings() {
        let mut r = us();
        r.ring(0, 2000);
        assert_eq!(r.release(), []);
        assert_eq!(r.ring(6000, 2000), [], "not announced again");
        assert_eq!(r.ring(12_000, 2000), []);
        assert_eq!(r.at(14_000 + 6500), []);
        assert_eq!(r.line.state(), FxoState::Idle);
        assert_eq!(r.ring(30_000, 2000), [incoming(None, None, None)]);
    }

    /// One country's first ring and ring-off period (ms).
    fn cadence(country: &str) -> (u64, u64) {
        match country {
            "US" => (2000, 4000),
            "UK" => (1000, 2000), // 0.4 on 0.2 off 0.4 on, taken as one 1 s burst pair below
            "DE" => (1000, 4000),
            _ => unreachable!(),
        }
    }

    /// Rings the country's first ring (UK: the two bursts of the double ring).
    fn first_ring(r: &mut Rig, country: &str, start: u64) -> Vec<FxoAction> {
        if country == "UK" {
            let mut out = r.ring(start, 400);
            out.extend(r.ring(start + 600, 400));
            out
        } else {
            r.ring(start, cadence(country).0)
        }
    }

    #[test]
    fn caller_id_between_first_and_second_ring_us_uk_de() {
        for country in ["US", "UK", "DE"] {
            let mut r = rig_with(country, |c| c.caller_id = FxoCallerId::Either);
            let (on, off) = cadence(country);
            let acts = first_ring(&mut r, country, 0);
            assert_eq!(acts, [StartCallerIdReceiver], "{country}: the receiver runs after the first ring");
            assert_eq!(r.line.state(), FxoState::RingDetect);
            r.at(on + 500);
            assert_eq!(
                r.cid(Ok(info("5551234", "ALICE"))),
                [StopCallerIdReceiver, incoming(Some("5551234"), Some("ALICE"), None)],
                "{country}"
            );
            assert_eq!(first_ring(&mut r, country, on + off), [], "{country}: second ring, same call");
            assert_eq!(r.answer(), [Seize(true), ConnectMedia], "{country}");
        }
    }

    #[test]
    fn caller_id_before_first_ring_us_uk_de() {
        for country in ["US", "UK", "DE"] {
            let mut r = rig_with(country, |c| c.caller_id = FxoCallerId::Either);
            assert_eq!(r.ev(PolarityReversal), [StartCallerIdReceiver], "{country}: DT-AS after a line reversal");
            assert_eq!(r.line.state(), FxoState::CallerIdBeforeRing);
            r.at(800);
            assert_eq!(r.cid(Ok(info("02079460000", "BOB"))), [StopCallerIdReceiver], "{country}: wait for the ring");
            r.at(1300);
            r.ev(RingStart);
            assert_eq!(r.at(1449), []);
            assert_eq!(r.at(1450), [incoming(Some("02079460000"), Some("BOB"), None)], "{country}");
            r.ev(RingStop);
            let (on, off) = cadence(country);
            assert_eq!(first_ring(&mut r, country, 1300 + on + off), [], "{country}: no receiver after the first ring");
            assert_eq!(r.line.rings(), 2, "{country}");
        }
    }

    #[test]
    fn uk_profile_takes_caller_id_before_the_ring_and_us_de_after() {
        let mut r = rig_with("UK", |_| {});
        assert_eq!(r.ev(PolarityReversal), [StartCallerIdReceiver]);
        r.at(500);
        r.cid(Ok(info("01632960001", "")));
        assert_eq!(first_ring(&mut r, "UK", 1000), [incoming(Some("01632960001"), None, None)], "an empty name is none");
        for country in ["US", "DE"] {
            let mut r = rig_with(country, |_| {});
            assert_eq!(r.ev(PolarityReversal), [], "{country}: no data before the ring");
            assert_eq!(first_ring(&mut r, country, 0), [StartCallerIdReceiver], "{country}");
        }
    }

    #[test]
    fn uk_double_ring_is_one_ring() {
        let mut r = rig_with("UK", |c| c.caller_id = FxoCallerId::None);
        assert_eq!(first_ring(&mut r, "UK", 0), [incoming(None, None, None)]);
        assert_eq!(r.line.rings(), 1);
        assert_eq!(first_ring(&mut r, "UK", 3000), []);
        assert_eq!(r.line.rings(), 2);
        // Bursts further apart than the gap are rings of their own.
        r.ring(6000, 400);
        r.ring(6000 + 400 + 500, 400);
        assert_eq!(r.line.rings(), 4);
    }

    #[test]
    fn uk_ring_without_caller_id_is_announced_with_no_data() {
        let mut r = rig_with("UK", |_| {});
        let acts = first_ring(&mut r, "UK", 0);
        assert_eq!(acts, [incoming(None, None, Some(CallerIdFault::NoData))]);
    }

    #[test]
    fn reversal_without_ring_is_no_call() {
        let mut r = rig_with("UK", |_| {});
        r.ev(PolarityReversal);
        r.at(700);
        assert_eq!(r.cid(Ok(info("123", "MWI"))), [StopCallerIdReceiver]);
        assert_eq!(r.at(5999), []);
        assert_eq!(r.at(6000), [], "message waiting, not a call");
        assert_eq!(r.line.state(), FxoState::Idle);
        // Receiver still running when the wait ends: stopped.
        r.ev(PolarityReversal);
        assert_eq!(r.at(12_000), [StopCallerIdReceiver]);
        assert_eq!(first_ring(&mut r, "UK", 13_000), [incoming(None, None, Some(CallerIdFault::NoData))], "no stale number");
    }

    #[test]
    fn bad_caller_id_gives_a_call_without_number_and_a_fault() {
        let mut r = rig_with("US", |_| {});
        r.ring(0, 2000);
        r.at(2600);
        assert_eq!(
            r.cid(Err(CallerIdFault::BadChecksum)),
            [StopCallerIdReceiver, incoming(None, None, Some(CallerIdFault::BadChecksum))]
        );
        assert_eq!(r.cid(Ok(info("5551234", "LATE"))), [], "stale result");
        // Numbers that cannot be a number are malformed messages.
        let mut r = rig_with("DE", |_| {});
        r.ring(0, 1000);
        assert_eq!(
            r.cid(Ok(info("12ab\u{7}", "X"))),
            [StopCallerIdReceiver, incoming(None, None, Some(CallerIdFault::Malformed))]
        );
        // Control characters are cut out of the name.
        let mut r = rig_with("DE", |_| {});
        r.ring(0, 1000);
        assert_eq!(
            r.cid(Ok(info("+4930123", "A\u{1b}NNA"))),
            [StopCallerIdReceiver, incoming(Some("+4930123"), Some("ANNA"), None)]
        );
    }

    #[test]
    fn caller_id_missing_at_the_second_ring() {
        let mut r = rig_with("US", |_| {});
        assert_eq!(r.ring(0, 2000), [StartCallerIdReceiver]);
        r.at(6000);
        r.ev(RingStart);
        assert_eq!(r.at(6150), [StopCallerIdReceiver, incoming(None, None, Some(CallerIdFault::NoData))]);
        // Withheld: no number and no fault.
        let mut r = rig_with("US", |_| {});
        r.ring(0, 2000);
        assert_eq!(r.cid(Ok(CallerIdInfo::default())), [StopCallerIdReceiver, incoming(None, None, None)]);
    }

    #[test]
    fn caller_gives_up_while_caller_id_is_received() {
        let mut r = rig_with("US", |_| {});
        r.ring(0, 2000);
        assert_eq!(r.at(8500), [StopCallerIdReceiver, Discarded(FxoCause::RingingStopped)]);
        assert_eq!(r.line.state(), FxoState::Idle);
    }

    // --------------------------------------------------------- two-stage

    fn two_stage() -> Rig {
        rig_with("US", |c| {
            c.caller_id = FxoCallerId::None;
            c.two_stage = Some(TwoStage::new("4711"));
        })
    }

    #[test]
    fn two_stage_dialling_with_pin() {
        let mut r = two_stage();
        r.at(0);
        r.ev(RingStart);
        assert_eq!(r.at(150), [Seize(true), PlayTone(Tone::Dial)], "answer, dial tone; no call yet");
        assert_eq!(r.line.state(), FxoState::TwoStage);
        assert_eq!(r.keys("4"), [StopTone]);
        assert_eq!(r.keys("711"), [PlayTone(Tone::Dial)], "second dial tone: PIN accepted");
        assert_eq!(r.keys("201"), [StopTone]);
        assert_eq!(
            r.keys("#"),
            [Incoming { caller: None, name: None, caller_id_fault: None, digits: Some("201".into()) }, ConnectMedia]
        );
        assert_eq!(r.line.state(), FxoState::Connected);
        assert_eq!(r.release(), [DisconnectMedia, Seize(false)]);
        r.assert_free();
    }

    #[test]
    fn two_stage_number_ends_on_the_inter_digit_timeout() {
        let mut r = two_stage();
        r.ring(0, 2000);
        r.keys("47111234");
        let t = r.ms();
        assert_eq!(r.at(t + 3999), []);
        assert_eq!(
            r.at(t + 4000),
            [Incoming { caller: None, name: None, caller_id_fault: None, digits: Some("1234".into()) }, ConnectMedia]
        );
    }

    #[test]
    fn two_stage_wrong_pin_or_silence_releases() {
        let mut r = two_stage();
        r.ring(0, 2000);
        assert_eq!(r.keys("4712"), [StopTone, Discarded(FxoCause::WrongPin), Seize(false)]);
        r.assert_free();
        // Silence after the dial tone.
        let mut r = two_stage();
        r.ring(0, 2000);
        assert_eq!(r.at(150 + 10_000), [Discarded(FxoCause::NoDigits), StopTone, Seize(false)]);
        // PIN and then nothing.
        let mut r = two_stage();
        r.ring(0, 2000);
        r.keys("4711");
        let t = r.ms();
        assert_eq!(r.at(t + 10_000), [Discarded(FxoCause::NoDigits), StopTone, Seize(false)]);
        // The caller hangs up during the PIN: the exchange's CPC.
        let mut r = two_stage();
        r.ring(0, 2000);
        r.keys("47");
        r.ev(LoopCurrentDrop);
        let t = r.ms();
        assert_eq!(r.at(t + 350), [Discarded(FxoCause::FarEndReleased(DisconnectMethod::Cpc)), Seize(false)]);
        r.assert_free();
    }

    #[test]
    fn two_stage_is_off_by_default() {
        for c in ["US", "UK", "DE"] {
            assert_eq!(FxoConfig::for_country(c).unwrap().two_stage, None);
        }
        let mut r = us();
        r.at(0);
        r.ev(RingStart);
        assert_eq!(r.at(150), [incoming(None, None, None)]);
        assert_eq!(r.keys("4711#"), [], "digits on an unanswered line mean nothing");
    }

    // ---------------------------------------------------------- outbound

    #[test]
    fn outbound_call_with_progress_and_speech_answer() {
        let mut r = us();
        r.proceeding("5551234");
        assert_eq!(r.tone(LineTone::Ringback), [Alerting]);
        assert_eq!(r.tone(LineTone::ToneGone), []);
        assert_eq!(r.tone(LineTone::Ringback), [], "alerting once");
        assert_eq!(r.tone(LineTone::Speech), [Answered]);
        assert_eq!(r.line.state(), FxoState::Connected);
        assert_eq!(r.line.poll_timeout(), None, "no answer timer left");
        assert_eq!(r.release(), [DisconnectMedia, Seize(false)]);
        assert_eq!(r.line.state(), FxoState::Guard);
        assert_eq!(r.place("1"), [Released(FxoCause::LineBusy)], "guard time");
        let t = r.ms();
        r.at(t + 1000);
        assert_eq!(r.line.state(), FxoState::Idle);
    }

    #[test]
    fn answer_by_polarity_reversal_only() {
        let mut r = rig_with("US", |c| c.answer = AnswerSupervision::PolarityReversal);
        r.proceeding("5551234");
        assert_eq!(r.tone(LineTone::Speech), [], "speech is not an answer here");
        assert_eq!(r.ev(PolarityReversal), [Answered]);
        assert_eq!(r.line.state(), FxoState::Connected);
    }

    #[test]
    fn answer_assumed_after_a_time() {
        let mut r = rig_with("US", |c| c.answer = AnswerSupervision::AssumedAfter(Duration::from_secs(8)));
        r.proceeding("5551234");
        let t = r.ms();
        assert_eq!(r.tone(LineTone::Speech), []);
        assert_eq!(r.at(t + 7999), []);
        assert_eq!(r.at(t + 8000), [Answered]);
        // A reversal before the assumed time is an answer in every mode.
        let mut r = rig_with("US", |c| c.answer = AnswerSupervision::AssumedAfter(Duration::from_secs(8)));
        r.proceeding("5551234");
        assert_eq!(r.ev(PolarityReversal), [Answered]);
        let t = r.ms();
        assert_eq!(r.at(t + 9000), [], "assumed answer cancelled");
    }

    #[test]
    fn progress_tones_map_to_causes() {
        for (tone, cause, q850) in [
            (LineTone::Busy, FxoCause::Busy, 17),
            (LineTone::Reorder, FxoCause::Reorder, 34),
            (LineTone::Congestion, FxoCause::Congestion, 34),
        ] {
            let mut r = us();
            r.proceeding("5551234");
            assert_eq!(r.tone(tone), [Released(cause), DisconnectMedia, Seize(false)]);
            assert_eq!(cause.q850(), q850);
            r.assert_free();
        }
    }

    #[test]
    fn no_answer_gives_19() {
        let mut r = us();
        r.proceeding("5551234");
        r.tone(LineTone::Ringback);
        let t = r.ms();
        assert_eq!(r.at(t + 59_999), []);
        assert_eq!(r.at(t + 60_000), [Released(FxoCause::NoAnswer), DisconnectMedia, Seize(false)]);
        assert_eq!(FxoCause::NoAnswer.q850(), 19);
        r.assert_free();
    }

    #[test]
    fn no_dial_tone_fails_and_frees_the_line() {
        let mut r = us();
        assert_eq!(r.place("5551234"), [Seize(true)]);
        assert_eq!(r.at(4999), []);
        assert_eq!(r.at(5000), [Released(FxoCause::NoDialTone), Seize(false)]);
        assert_eq!(FxoCause::NoDialTone.q850(), 38);
        assert_eq!(r.tone(LineTone::DialTone), [], "late dial tone");
        r.assert_free();
    }

    #[test]
    fn timed_dial_tone_wait_and_pulse_dialling() {
        let mut r = rig_with("DE", |c| {
            c.dial_tone = DialToneWait::Timed(Duration::from_secs(2));
            c.dial = DialMode::Pulse;
        });
        assert_eq!(r.place("0301234"), [Seize(true)]);
        assert_eq!(r.tone(LineTone::DialTone), [], "not listened for");
        assert_eq!(r.at(1999), []);
        assert_eq!(r.at(2000), [Dial { digits: "0301234".into(), pulse: true }]);
        // The dialler never reports: the guard moves on.
        let guard = dial_guard(7, true).as_millis() as u64;
        assert_eq!(r.at(2000 + guard - 1), []);
        assert_eq!(r.at(2000 + guard), [ConnectMedia]);
        assert_eq!(r.line.state(), FxoState::Proceeding);
        // The dialler's own loop breaks are no CPC.
        let mut r = rig_with("DE", |c| {
            c.dial = DialMode::Pulse;
            c.disconnect.cpc_min = Some(Duration::from_millis(60));
        });
        r.place("9");
        assert_eq!(r.tone(LineTone::DialTone), [Dial { digits: "9".into(), pulse: true }]);
        r.ev(LoopCurrentDrop);
        let t = r.ms();
        assert_eq!(r.at(t + 100), []);
        r.ev(LoopCurrentRestore);
        assert_eq!(r.dialled(), [ConnectMedia]);
        // Pulse lines cannot dial * or #.
        let mut r = rig_with("DE", |c| c.dial = DialMode::Pulse);
        assert_eq!(r.place("*67"), [Released(FxoCause::InvalidNumber)]);
        assert!(!r.line.is_seized());
    }

    #[test]
    fn bad_numbers_are_refused_before_seizing() {
        let mut r = us();
        for bad in ["12x4", "555 1234", &"1".repeat(33), "\u{0}"] {
            assert_eq!(r.place(bad), [Released(FxoCause::InvalidNumber)], "{bad:?}");
        }
        assert_eq!(r.line.state(), FxoState::Idle);
        assert_eq!(r.place("9,5551234#"), [Seize(true)], "pauses and DTMF keys are fine");
    }

    #[test]
    fn empty_number_is_a_hotline_seizure() {
        let mut r = us();
        r.place("");
        assert_eq!(r.tone(LineTone::DialTone), [ConnectMedia]);
        assert_eq!(r.line.state(), FxoState::Proceeding);
    }

    #[test]
    fn dead_line_while_seizing_is_a_line_fault() {
        let mut r = us();
        r.place("5551234");
        r.ev(LoopCurrentDrop);
        assert_eq!(r.at(349), []);
        assert_eq!(r.at(350), [Released(FxoCause::LineFault), Seize(false)]);
        assert_eq!(r.ev(LoopCurrentRestore), []);
        r.assert_free();
    }

    // -------------------------------------------------------- disconnect

    fn connected_out(r: &mut Rig) {
        r.proceeding("5551234");
        assert_eq!(r.tone(LineTone::Speech), [Answered]);
    }

    #[test]
    fn disconnect_by_cpc_open_loop_interval() {
        let mut r = us();
        connected_out(&mut r);
        let t = r.ms();
        // A short loop current break is a glitch, not a CPC.
        r.ev(LoopCurrentDrop);
        assert_eq!(r.at(t + 349), []);
        assert_eq!(r.ev(LoopCurrentRestore), []);
        assert_eq!(r.at(t + 2000), []);
        assert_eq!(r.line.state(), FxoState::Connected);
        r.ev(LoopCurrentDrop);
        assert_eq!(r.at(t + 2349), []);
        assert_eq!(
            r.at(t + 2350),
            [Released(FxoCause::FarEndReleased(DisconnectMethod::Cpc)), DisconnectMedia, Seize(false)],
            "released within cpc_min of the far end's CPC"
        );
        assert_eq!(FxoCause::FarEndReleased(DisconnectMethod::Cpc).q850(), 16);
        r.assert_free();
    }

    #[test]
    fn disconnect_by_polarity_reversal_with_guard() {
        let mut r = rig_with("US", |c| c.answer = AnswerSupervision::PolarityReversal);
        r.proceeding("5551234");
        assert_eq!(r.ev(PolarityReversal), [Answered]);
        let t = r.ms();
        // Back and forth within the guard: a glitch.
        assert_eq!(r.ev(PolarityReversal), []);
        r.at(t + 50);
        assert_eq!(r.ev(PolarityReversal), []);
        assert_eq!(r.at(t + 1000), []);
        assert_eq!(r.line.state(), FxoState::Connected);
        assert_eq!(r.ev(PolarityReversal), []);
        assert_eq!(r.at(t + 1099), []);
        assert_eq!(
            r.at(t + 1100),
            [Released(FxoCause::FarEndReleased(DisconnectMethod::PolarityReversal)), DisconnectMedia, Seize(false)]
        );
        r.assert_free();
    }

    #[test]
    fn disconnect_by_tone_inbound() {
        let mut r = us();
        r.ring(0, 2000);
        r.answer();
        assert_eq!(r.tone(LineTone::Speech), []);
        assert_eq!(r.tone(LineTone::Ringback), []);
        assert_eq!(
            r.tone(LineTone::Reorder),
            [Released(FxoCause::FarEndReleased(DisconnectMethod::Tone)), DisconnectMedia, Seize(false)]
        );
        r.assert_free();
    }

    #[test]
    fn disconnect_methods_are_chosen_per_line() {
        let only_tone = DisconnectSupervision { cpc_min: None, polarity_reversal: false, tone: true };
        let mut r = rig_with("US", |c| c.disconnect = only_tone);
        connected_out(&mut r);
        r.ev(LoopCurrentDrop);
        r.ev(PolarityReversal);
        let t = r.ms();
        assert_eq!(r.at(t + 10_000), [], "CPC and reversal not used on this line");
        assert_eq!(r.line.state(), FxoState::Connected);
        assert_eq!(r.tone(LineTone::Busy), [Released(FxoCause::FarEndReleased(DisconnectMethod::Tone)), DisconnectMedia, Seize(false)]);

        let no_tone = DisconnectSupervision { cpc_min: Some(Duration::from_millis(600)), polarity_reversal: false, tone: false };
        let mut r = rig_with("US", |c| c.disconnect = no_tone);
        connected_out(&mut r);
        assert_eq!(r.tone(LineTone::Busy), []);
        r.ev(LoopCurrentDrop);
        let t = r.ms();
        assert_eq!(r.at(t + 599), []);
        assert_eq!(r.at(t + 600).first(), Some(&Released(FxoCause::FarEndReleased(DisconnectMethod::Cpc))));
    }

    #[test]
    fn late_answer_reversal_after_an_assumed_answer_is_not_a_disconnect() {
        let mut r = rig_with("US", |c| c.answer = AnswerSupervision::AssumedAfter(Duration::from_secs(2)));
        r.proceeding("5551234");
        let t = r.ms();
        assert_eq!(r.at(t + 2000), [Answered]);
        assert_eq!(r.ev(PolarityReversal), [], "the far end answers at 10 s");
        assert_eq!(r.at(t + 20_000), []);
        assert_eq!(r.line.state(), FxoState::Connected);
        assert_eq!(r.ev(PolarityReversal), [], "the far end hangs up");
        assert_eq!(
            r.at(t + 20_100),
            [Released(FxoCause::FarEndReleased(DisconnectMethod::PolarityReversal)), DisconnectMedia, Seize(false)]
        );
    }

    #[test]
    fn inbound_reversal_disconnect() {
        let mut r = us();
        r.ring(0, 2000);
        r.answer();
        r.ev(PolarityReversal);
        let t = r.ms();
        assert_eq!(
            r.at(t + 100),
            [Released(FxoCause::FarEndReleased(DisconnectMethod::PolarityReversal)), DisconnectMedia, Seize(false)]
        );
    }

    // --------------------------------------------------------------- glare

    #[test]
    fn glare_ring_while_seizing_fails_outbound_then_takes_the_call() {
        let mut r = us();
        assert_eq!(r.place("5551234"), [Seize(true)]);
        r.now += Duration::from_millis(100);
        assert_eq!(r.ev(RingStart), [Released(FxoCause::Glare), Seize(false)]);
        assert_eq!(FxoCause::Glare.q850(), 34);
        assert_eq!(r.line.state(), FxoState::Guard);
        r.now += Duration::from_millis(500);
        assert_eq!(r.ev(RingStop), [], "the guard ignores the rest of the burst");
        // The exchange keeps ringing: a fresh inbound call after the guard.
        assert_eq!(r.ring(5000, 2000), [incoming(None, None, None)]);
    }

    #[test]
    fn place_on_a_ringing_line_is_glare_without_seizing() {
        let mut r = us();
        r.at(0);
        r.ev(RingStart);
        assert_eq!(r.place("5551234"), [Released(FxoCause::Glare)]);
        assert_eq!(r.at(150), [incoming(None, None, None)]);
        assert_eq!(r.place("5551234"), [Released(FxoCause::Glare)]);
        let mut r = rig_with("UK", |_| {});
        assert_eq!(r.ev(PolarityReversal), [StartCallerIdReceiver]);
        assert_eq!(r.place("5551234"), [Released(FxoCause::Glare)]);
    }

    #[test]
    fn glare_while_dialling() {
        let mut r = us();
        r.place("5551234");
        r.tone(LineTone::DialTone);
        assert_eq!(r.ev(RingStart), [Released(FxoCause::Glare), Seize(false)]);
        assert_eq!(r.dialled(), [], "the dialler's late report");
        r.assert_free();
    }

    // ---------------------------------------------------------------- misc

    #[test]
    fn stray_inputs_in_idle_change_nothing() {
        let mut r = us();
        assert_eq!(r.ev(RingStop), []);
        assert_eq!(r.ev(LoopCurrentDrop), []);
        assert_eq!(r.ev(LoopCurrentRestore), []);
        assert_eq!(r.ev(PolarityReversal), [], "no caller ID before the ring configured");
        for t in [LineTone::DialTone, LineTone::Busy, LineTone::Speech, LineTone::ToneGone] {
            assert_eq!(r.tone(t), []);
        }
        assert_eq!(r.cid(Ok(info("1", "X"))), []);
        assert_eq!(r.keys("123#"), []);
        assert_eq!(r.dialled(), []);
        assert_eq!(r.answer(), []);
        assert_eq!(r.release(), []);
        assert_eq!(r.at(100_000), []);
        assert_eq!(r.line.state(), FxoState::Idle);
    }

    #[test]
    fn country_profiles_and_validation() {
        for c in ["US", "uk", "GB", "DE", "CA"] {
            let cfg = FxoConfig::for_country(c).unwrap();
            cfg.validate().unwrap();
            assert!(cfg.ring_gone > Duration::from_secs(2), "longer than the ring-off period");
        }
        assert_eq!(FxoConfig::for_country("US").unwrap().caller_id, FxoCallerId::AfterFirstRing);
        assert_eq!(FxoConfig::for_country("UK").unwrap().caller_id, FxoCallerId::BeforeFirstRing);
        assert_eq!(FxoConfig::for_country("DE").unwrap().caller_id, FxoCallerId::AfterFirstRing);
        assert_eq!(FxoConfig::for_country("XX"), None);
        let mut c = FxoConfig::for_country("US").unwrap();
        c.disconnect = DisconnectSupervision { cpc_min: None, polarity_reversal: false, tone: false };
        assert!(c.validate().is_err());
        let mut c = FxoConfig::for_country("US").unwrap();
        c.two_stage = Some(TwoStage::new(""));
        assert!(c.validate().is_err());
        c.two_stage = Some(TwoStage::new("12A"));
        assert!(c.validate().is_err());
        let mut c = FxoConfig::for_country("US").unwrap();
        c.ring_min_on = c.ring_max_on;
        assert!(c.validate().is_err());
    }

    #[test]
    fn timer_table_matches_the_enum() {
        for (i, t) in TIMER_ORDER.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
    }

    #[test]
    fn timers_due_together_all_fire() {
        // Answer assumed at the same instant the CPC interval ends: both
        // timers are due; the line ends released and on hook.
        let mut r = rig_with("US", |c| {
            c.answer = AnswerSupervision::AssumedAfter(Duration::from_millis(350));
        });
        r.proceeding("5551234");
        r.ev(LoopCurrentDrop);
        let t = r.ms();
        assert_eq!(
            r.at(t + 350),
            [Answered, Released(FxoCause::FarEndReleased(DisconnectMethod::Cpc)), DisconnectMedia, Seize(false)]
        );
    }

    #[test]
    fn causes_map_to_q850() {
        use FxoCause::*;
        let table = [
            (Busy, 17),
            (Reorder, 34),
            (Congestion, 34),
            (NoAnswer, 19),
            (NoDialTone, 38),
            (LineFault, 27),
            (Glare, 34),
            (LineBusy, 34),
            (InvalidNumber, 28),
            (RingingStopped, 16),
            (BrokenRingCadence, 38),
            (FarEndReleased(DisconnectMethod::Tone), 16),
            (WrongPin, 21),
            (NoDigits, 28),
        ];
        for (c, v) in table {
            assert_eq!(c.q850(), v, "{c:?}");
        }
    }

    // ------------------------------------------------------------ property

    #[derive(Clone, Debug)]
    enum Input {
        Line(FxoEvent),
        Tone(LineTone),
        CallerId(Result<CallerIdInfo, CallerIdFault>),
        Digit(u8),
        Dialled,
        Wait(u64),
        Place(&'static str),
        Answer,
        Release,
    }

    fn input() -> impl proptest::strategy::Strategy<Value = Input> {
        use proptest::prelude::*;
        prop_oneof![
            4 => proptest::sample::select(vec![RingStart, RingStop, PolarityReversal, LoopCurrentDrop, LoopCurrentRestore])
                .prop_map(Input::Line),
            2 => proptest::sample::select(vec![
                LineTone::DialTone,
                LineTone::Ringback,
                LineTone::Busy,
                LineTone::Reorder,
                LineTone::Congestion,
                LineTone::Speech,
                LineTone::ToneGone,
            ])
            .prop_map(Input::Tone),
            1 => prop_oneof![
                Just(Ok(info("5551234", "ALICE"))),
                Just(Ok(CallerIdInfo::default())),
                Just(Ok(info("12x", "\u{0}"))),
                Just(Err(CallerIdFault::BadChecksum)),
                Just(Err(CallerIdFault::Malformed)),
            ]
            .prop_map(Input::CallerId),
            1 => proptest::sample::select(b"0123456789*#A".to_vec()).prop_map(Input::Digit),
            1 => Just(Input::Dialled),
            4 => prop_oneof![0u64..400, 0u64..8000, 0u64..70_000].prop_map(Input::Wait),
            1 => proptest::sample::select(vec!["5551234", "", "*67", "12x"]).prop_map(Input::Place),
            1 => Just(Input::Answer),
            1 => Just(Input::Release),
        ]
    }

    fn config() -> impl proptest::strategy::Strategy<Value = FxoConfig> {
        use proptest::prelude::*;
        (
            proptest::sample::select(vec!["US", "UK", "DE"]),
            proptest::sample::select(vec![
                FxoCallerId::None,
                FxoCallerId::BeforeFirstRing,
                FxoCallerId::AfterFirstRing,
                FxoCallerId::Either,
            ]),
            prop_oneof![
                Just(AnswerSupervision::PolarityReversal),
                Just(AnswerSupervision::SpeechEnergy),
                (0u64..10_000).prop_map(|ms| AnswerSupervision::AssumedAfter(Duration::from_millis(ms))),
            ],
            (proptest::option::of(100u64..800), any::<bool>(), any::<bool>()),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_filter_map("a disconnect method", |(country, cid, answer, (cpc, rev, tone), pulse, timed, two)| {
                let mut c = FxoConfig::for_country(country)?;
                c.caller_id = cid;
                c.answer = answer;
                c.disconnect = DisconnectSupervision { cpc_min: cpc.map(Duration::from_millis), polarity_reversal: rev, tone };
                c.dial = if pulse { DialMode::Pulse } else { DialMode::Dtmf };
                if timed {
                    c.dial_tone = DialToneWait::Timed(Duration::from_secs(2));
                }
                if two {
                    c.two_stage = Some(TwoStage::new("12"));
                }
                c.validate().ok()?;
                Some(c)
            })
    }

    /// What the driver and the call control see, checked against the machine.
    #[derive(Default)]
    struct Observer {
        seized: bool,
        media: bool,
        rx: bool,
        tone: bool,
        call: bool,
        answered: bool,
    }

    impl Observer {
        fn apply(&mut self, input: &Input, acts: &[FxoAction]) -> Result<(), proptest::test_runner::TestCaseError> {
            use proptest::prop_assert;
            if matches!(input, Input::Place(_)) && matches!(acts, [Released(_)]) {
                return Ok(()); // refused at once, nothing seized
            }
            if matches!(input, Input::Release) {
                self.call = false;
            }
            for a in acts {
                match a {
                    Seize(on) => {
                        prop_assert!(self.seized != *on, "Seize({}) twice", on);
                        self.seized = *on;
                        if *on && matches!(input, Input::Place(_)) {
                            prop_assert!(!self.call);
                            self.call = true;
                            self.answered = false;
                        }
                    }
                    ConnectMedia => {
                        prop_assert!(!self.media && self.seized);
                        self.media = true;
                    }
                    DisconnectMedia => {
                        prop_assert!(self.media);
                        self.media = false;
                    }
                    StartCallerIdReceiver => {
                        prop_assert!(!self.rx && !self.seized);
                        self.rx = true;
                    }
                    StopCallerIdReceiver => {
                        prop_assert!(self.rx);
                        self.rx = false;
                    }
                    PlayTone(_) => self.tone = true,
                    StopTone => {
                        prop_assert!(self.tone);
                        self.tone = false;
                    }
                    Incoming { digits, .. } => {
                        prop_assert!(!self.call, "a second call announced");
                        prop_assert_eq_opt(digits.is_some(), self.seized)?;
                        self.call = true;
                        self.answered = false;
                    }
                    Answered => {
                        prop_assert!(self.call && !self.answered);
                        self.answered = true;
                    }
                    Alerting => prop_assert!(self.call && !self.answered),
                    Released(_) => {
                        prop_assert!(self.call, "Released without a call");
                        self.call = false;
                    }
                    Discarded(_) => prop_assert!(!self.call),
                    Dial { digits, pulse } => {
                        prop_assert!(self.seized && self.call);
                        if *pulse {
                            prop_assert!(digits.bytes().all(|b| b.is_ascii_digit() || b == b','));
                        }
                    }
                }
            }
            Ok(())
        }

        fn check(&self, line: &FxoLine) -> Result<(), proptest::test_runner::TestCaseError> {
            use proptest::{prop_assert, prop_assert_eq};
            let st = line.state();
            prop_assert_eq!(self.seized, line.is_seized());
            prop_assert_eq!(self.media, line.media_connected());
            let seized_states = [
                FxoState::TwoStage,
                FxoState::Seizing,
                FxoState::Dialling,
                FxoState::Proceeding,
                FxoState::Connected,
            ];
            prop_assert_eq!(self.seized, seized_states.contains(&st), "seized {} in {:?}", self.seized, st);
            if self.media {
                prop_assert!(matches!(st, FxoState::Proceeding | FxoState::Connected), "media in {:?}", st);
            }
            if matches!(st, FxoState::Proceeding | FxoState::Connected) {
                prop_assert!(self.media, "no media in {:?}", st);
            }
            if self.rx {
                prop_assert!(matches!(st, FxoState::CallerIdBeforeRing | FxoState::RingDetect), "receiver in {:?}", st);
            }
            if self.tone {
                prop_assert_eq!(st, FxoState::TwoStage);
            }
            // The call control has a call exactly in these states.
            let call_states = [
                FxoState::Offered,
                FxoState::Seizing,
                FxoState::Dialling,
                FxoState::Proceeding,
                FxoState::Connected,
            ];
            prop_assert_eq!(self.call, call_states.contains(&st), "call {} in {:?}", self.call, st);
            Ok(())
        }
    }

    fn prop_assert_eq_opt(a: bool, b: bool) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert_eq!(a, b, "two-stage calls are announced seized, others on hook");
        Ok(())
    }

    fn step(r: &mut Rig, obs: &mut Observer, inp: Input) -> Result<(), proptest::test_runner::TestCaseError> {
        let acts = match &inp {
            Input::Line(ev) => r.ev(*ev),
            Input::Tone(t) => r.tone(*t),
            Input::CallerId(res) => r.cid(res.clone()),
            Input::Digit(d) => {
                r.line.handle_digit(r.now, *d);
                r.actions()
            }
            Input::Dialled => r.dialled(),
            Input::Wait(ms) => {
                let t = r.ms() + ms;
                r.at(t)
            }
            Input::Place(n) => r.place(n),
            Input::Answer => r.answer(),
            Input::Release => r.release(),
        };
        obs.apply(&inp, &acts)?;
        obs.check(&r.line)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Exchange against the FXO machine: whatever the line and the
        /// call control do, the outputs stay consistent with the state, and
        /// once the exchange stops ringing and the far end leaves (by each
        /// method the line watches), the line is on hook and free, with no
        /// call left half up.
        #[test]
        fn no_sequence_leaves_a_line_seized_or_a_call_half_up(
            cfg in config(),
            script in proptest::collection::vec(input(), 0..120),
        ) {
            let disconnect = cfg.disconnect;
            let t0 = Instant::now();
            let mut r = Rig { line: FxoLine::new(cfg), t0, now: t0 };
            let mut obs = Observer::default();
            for inp in script {
                step(&mut r, &mut obs, inp)?;
            }
            for _ in 0..3 {
                step(&mut r, &mut obs, Input::Line(RingStop))?;
                if disconnect.cpc_min.is_some() {
                    step(&mut r, &mut obs, Input::Line(LoopCurrentDrop))?;
                    step(&mut r, &mut obs, Input::Wait(1000))?;
                    step(&mut r, &mut obs, Input::Line(LoopCurrentRestore))?;
                }
                if disconnect.polarity_reversal {
                    step(&mut r, &mut obs, Input::Line(PolarityReversal))?;
                    step(&mut r, &mut obs, Input::Wait(1000))?;
                }
                if disconnect.tone {
                    step(&mut r, &mut obs, Input::Tone(LineTone::Busy))?;
                }
                step(&mut r, &mut obs, Input::Wait(200_000))?;
            }
            proptest::prop_assert_eq!(r.line.state(), FxoState::Idle);
            proptest::prop_assert!(!obs.seized && !obs.call && !obs.media && !obs.rx && !obs.tone);
            proptest::prop_assert_eq!(r.line.poll_timeout(), None);
        }
    }
}
