//! The FXS port state machine: the gateway plays the exchange for one phone.
//!
//! Loop-start signalling as in Telcordia GR-506 / ETSI ES 201 970 terms:
//! off-hook seizes the line and gets dial tone, digits are collected against
//! the [`DialPlan`], the call proceeds with ringback, and the far end's
//! release gives reorder tone (optionally after an open-loop "CPC"
//! disconnect pulse, GR-506 section 9.3) until the phone goes on-hook.
//! Inbound calls ring the phone with the configured cadence.
//!
//! On-hook caller ID ([`FxsConfig::caller_id`]): the port asks for a delivery
//! ([`Action::SendCallerId`]) instead of ringing at once; the DSP's sender
//! then reports its line steps ([`FxsLine::handle_caller_id`]): ring on/off
//! for a first ring or an RP-AS burst, a line reversal before DT-AS or DTMF
//! CLIP, and the end of the data. Normal ringing starts then: at once after a
//! delivery before the first ring (ETSI EN 300 659-1 5.3), or where the
//! cadence's second ring falls after a delivery between the first and second
//! ring (Telcordia GR-30, EN 300 659-1 5.2). A guard timer starts ringing if
//! the sender never reports its end, so a lost event cannot leave a call
//! unannounced.
//!
//! Driving it (sans-IO): feed hook events, DTMF digits (already detected by
//! the DSP), call signals from the call router and timeouts, each with
//! `now`; after every input drain [`FxsLine::poll_action`] until `None`, then
//! sleep until [`FxsLine::poll_timeout`] and call [`FxsLine::handle_timeout`].
//!
//! Not handled yet: hook flash (register recall, call waiting, transfer) is
//! ignored in every state; digits while connected are ignored here (the
//! media path sends them as RFC 4733 events); pulse dialling.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gw_hal::{FxsEvent, LineFeed, RingCadence};

use crate::dialplan::{DialPlan, Match};

/// Call-progress tones the port asks the DSP to play (ITU-T E.180 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Dial,
    Ringback,
    Busy,
    /// Congestion / "fast busy": the call cannot be completed.
    Reorder,
    CallWaiting,
}

/// What the port asks of the hardware, the DSP and the call router.
/// `PlayTone` replaces any tone already playing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    PlayTone(Tone),
    StopTone,
    SetRinging(Option<RingCadence>),
    SetLineFeed(LineFeed),
    /// Digit collection finished: place a call to `number`.
    PlaceCall { number: String },
    /// The phone answered the incoming call.
    AnswerCall,
    /// Reject an incoming call (busy = port in use). When the port is not
    /// idle this refers to the new incoming call, not to the current one.
    RejectCall { busy: bool },
    /// Hang up the current call (phone went on-hook, or timeout).
    ReleaseCall,
    /// Connect the voice path (RTP <-> line) for the current call.
    ConnectMedia,
    /// Disconnect the voice path.
    DisconnectMedia,
    /// Start an on-hook caller ID delivery for the incoming call. `None`
    /// fields mean withheld or unavailable; the sender's steps come back
    /// through [`FxsLine::handle_caller_id`].
    SendCallerId { number: Option<String>, name: Option<String> },
    /// Abort the caller ID delivery in progress (answered or cancelled).
    StopCallerId,
}

/// Line steps of a caller ID delivery, as the DSP's sender reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerIdStep {
    /// Reverse the line polarity (before DT-AS or DTMF CLIP).
    ReversePolarity,
    /// Ringing voltage on (a first ring, or an RP-AS burst).
    RingOn,
    RingOff,
    /// The delivery is over (or could not be made): ring normally.
    Done,
}

/// What the call router tells the port about its call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallSignal {
    /// `caller` is the calling number, `name` the calling name (both for
    /// caller ID; `None` when withheld or unknown).
    Incoming { caller: Option<String>, name: Option<String> },
    RemoteRinging,
    /// The far end sends audio before answering (a 183 with SDP: its own
    /// ringback or an announcement): the phone hears it instead of the
    /// local ringback (RFC 3960 "gateway model").
    EarlyMedia,
    RemoteAnswered,
    RemoteReleased,
    /// Outgoing attempt failed: busy (486/600) vs other.
    Failed { busy: bool },
    /// Incoming call cancelled by the caller before answer.
    Cancelled,
}

/// Per-port settings.
#[derive(Clone, Debug)]
pub struct FxsConfig {
    pub dial_plan: DialPlan,
    pub ring_cadence: RingCadence,
    /// Off-hook with no digit: after this, reorder (typically 15 s).
    pub first_digit_timeout: Duration,
    /// Between digits (typically 4 s); ends an open-ended number.
    pub inter_digit_timeout: Duration,
    /// How long reorder (or busy) tone plays before the port locks out and
    /// goes silent until on-hook (typically 30 s).
    pub reorder_timeout: Duration,
    /// Open-loop disconnect pulse on far-end release, in ms; `None` = off.
    pub disconnect_open_ms: Option<u32>,
    /// Send on-hook caller ID before or between the rings of an incoming call.
    pub caller_id: bool,
    /// An incoming call nobody answers is refused after this long
    /// (`RejectCall { busy: false }`: SIP 480, Q.850 cause 19 "no answer
    /// from user"), so a caller that never cancels cannot ring the phone
    /// forever. `None` rings until the caller gives up.
    pub no_answer_timeout: Option<Duration>,
}

impl FxsConfig {
    /// Typical North American timings: 15 s / 4 s / 30 s, no disconnect pulse.
    pub fn new(dial_plan: DialPlan, ring_cadence: RingCadence) -> Self {
        Self {
            dial_plan,
            ring_cadence,
            first_digit_timeout: Duration::from_secs(15),
            inter_digit_timeout: Duration::from_secs(4),
            reorder_timeout: Duration::from_secs(30),
            disconnect_open_ms: None,
            caller_id: false,
            no_answer_timeout: Some(NO_ANSWER_TIMEOUT),
        }
    }
}

/// Port states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// On-hook, no call.
    Idle,
    /// Off-hook, dial tone, no digit yet.
    DialTone,
    /// Digits being collected.
    Collecting,
    /// Call placed, waiting for the far end.
    Proceeding,
    /// Far end alerting; ringback tone.
    Ringback,
    Connected,
    /// Reorder tone until on-hook: far end released, dialling failed or
    /// timed out, or the attempt failed for a reason other than busy.
    Releasing,
    /// Inbound call ringing the phone.
    Ringing,
    /// Outgoing attempt failed busy: busy tone until on-hook.
    Busy,
}

/// Named timers (one runs at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Dial tone with no digit.
    FirstDigit,
    /// Between digits.
    InterDigit,
    /// Reorder/busy tone before lockout.
    Reorder,
    /// End of the open-loop disconnect pulse.
    OpenLoop,
    /// Caller ID delivered between rings: the second ring falls due.
    ResumeRinging,
    /// Caller ID sender silent for too long: ring anyway.
    CallerIdGuard,
}

/// Longest a caller ID delivery may take before the port rings anyway (the
/// longest, a GR-30 delivery of a full MDMF message after a 3 s first ring,
/// takes about 6 s).
pub const CALLER_ID_GUARD: Duration = Duration::from_secs(10);

/// Where a caller ID delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CidState {
    None,
    /// Sender running; `first_ring` is when its first ring began, if it rang.
    Sending { first_ring: Option<Instant>, reversed: bool },
}

/// Default no-answer timeout of ringing (two minutes, as most exchanges).
pub const NO_ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest number collected; more digits give reorder.
pub const MAX_DIGITS: usize = 32;

/// One FXS port; see the module docs.
#[derive(Debug)]
pub struct FxsLine {
    config: FxsConfig,
    state: State,
    digits: String,
    timer: Option<(Timer, Instant)>,
    tone: Option<Tone>,
    /// Last hook event seen while the loop was open (the SLIC cannot tell
    /// then); applied when the feed is restored.
    hook_while_open: Option<FxsEvent>,
    cid: CidState,
    /// Whether ringing voltage is asked for: `SetRinging` goes out only on a
    /// change.
    ringing: bool,
    /// When the incoming call ringing now is given up (runs beside `timer`,
    /// which the caller ID delivery uses while ringing).
    no_answer_at: Option<Instant>,
    /// The media path is connected before the answer (early media).
    early_media: bool,
    actions: VecDeque<Action>,
}

impl FxsLine {
    pub fn new(config: FxsConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            digits: String::new(),
            timer: None,
            tone: None,
            hook_while_open: None,
            cid: CidState::None,
            ringing: false,
            no_answer_at: None,
            early_media: false,
            actions: VecDeque::new(),
        }
    }

    /// Takes changed settings (a committed configuration) without
    /// disturbing the line: a call in progress goes on; the new dial plan,
    /// timeouts and cadence serve the next dialling and ringing.
    pub fn set_config(&mut self, config: FxsConfig) {
        self.config = config;
    }

    // ---------------------------------------------------------------- getters

    pub fn state(&self) -> State {
        self.state
    }

    /// Digits collected so far in this attempt.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The tone currently asked for, if any.
    pub fn tone(&self) -> Option<Tone> {
        self.tone
    }

    /// When [`FxsLine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timer.map(|(_, at)| at), self.no_answer_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ---------------------------------------------------------------- inputs

    pub fn handle_hook(&mut self, now: Instant, ev: FxsEvent) {
        if matches!(self.timer, Some((Timer::OpenLoop, _))) {
            if ev != FxsEvent::HookFlash {
                self.hook_while_open = Some(ev);
            }
            return;
        }
        match (ev, self.state) {
            (FxsEvent::HookFlash, _) => {} // register recall: not supported yet
            (FxsEvent::OffHook, State::Idle) => {
                self.digits.clear();
                self.play(Tone::Dial);
                self.enter(State::DialTone, now, Some(Timer::FirstDigit));
            }
            (FxsEvent::OffHook, State::Ringing) => {
                self.stop_caller_id();
                self.ring(false);
                self.push(Action::AnswerCall);
                self.push(Action::ConnectMedia);
                self.enter(State::Connected, now, None);
            }
            (FxsEvent::OffHook, _) => {} // already off-hook
            (FxsEvent::OnHook, State::Idle | State::Ringing) => {}
            (FxsEvent::OnHook, state) => {
                self.stop_tone();
                match state {
                    State::Ringback if self.early_media => {
                        self.early_media = false;
                        self.push(Action::DisconnectMedia);
                        self.push(Action::ReleaseCall);
                    }
                    State::Proceeding | State::Ringback => self.push(Action::ReleaseCall),
                    State::Connected => {
                        self.push(Action::DisconnectMedia);
                        self.push(Action::ReleaseCall);
                    }
                    _ => {}
                }
                self.enter(State::Idle, now, None);
            }
        }
    }

    /// A DTMF digit (ASCII) detected on the line.
    pub fn handle_digit(&mut self, now: Instant, digit: u8) {
        if !matches!(digit, b'0'..=b'9' | b'*' | b'#') {
            return;
        }
        match self.state {
            State::DialTone => {
                self.stop_tone();
                self.state = State::Collecting;
                self.collect(now, digit);
            }
            State::Collecting => self.collect(now, digit),
            _ => {}
        }
    }

    pub fn handle_call(&mut self, now: Instant, sig: CallSignal) {
        match (sig, self.state) {
            (CallSignal::Incoming { caller, name }, State::Idle) => {
                if self.config.caller_id {
                    self.push(Action::SendCallerId { number: caller, name });
                    self.cid = CidState::Sending { first_ring: None, reversed: false };
                    self.enter(State::Ringing, now, Some(Timer::CallerIdGuard));
                } else {
                    self.ring(true);
                    self.enter(State::Ringing, now, None);
                }
            }
            (CallSignal::Incoming { .. }, _) => self.push(Action::RejectCall { busy: true }),
            (CallSignal::Cancelled | CallSignal::RemoteReleased | CallSignal::Failed { .. }, State::Ringing) => {
                self.stop_caller_id();
                self.ring(false);
                self.enter(State::Idle, now, None);
            }
            (CallSignal::RemoteRinging, State::Proceeding) => {
                self.play(Tone::Ringback);
                self.state = State::Ringback;
            }
            (CallSignal::EarlyMedia, State::Proceeding | State::Ringback) if !self.early_media => {
                self.stop_tone();
                self.push(Action::ConnectMedia);
                self.early_media = true;
                self.state = State::Ringback;
            }
            // Already connected early: the answer only changes the state.
            (CallSignal::RemoteAnswered, State::Ringback) if self.early_media => {
                self.early_media = false;
                self.enter(State::Connected, now, None);
            }
            (CallSignal::RemoteAnswered, State::Proceeding | State::Ringback) => {
                self.stop_tone();
                self.push(Action::ConnectMedia);
                self.enter(State::Connected, now, None);
            }
            (sig @ (CallSignal::Failed { .. } | CallSignal::RemoteReleased), State::Ringback) if self.early_media => {
                self.early_media = false;
                self.push(Action::DisconnectMedia);
                self.handle_call(now, sig);
            }
            (CallSignal::Failed { busy: true }, State::Proceeding | State::Ringback) => {
                self.play(Tone::Busy);
                self.enter(State::Busy, now, Some(Timer::Reorder));
            }
            (CallSignal::Failed { busy: false } | CallSignal::RemoteReleased, State::Proceeding | State::Ringback) => {
                self.reorder(now);
            }
            (CallSignal::RemoteReleased | CallSignal::Failed { .. }, State::Connected) => {
                self.push(Action::DisconnectMedia);
                match self.config.disconnect_open_ms {
                    Some(ms) if ms > 0 => {
                        self.push(Action::SetLineFeed(LineFeed::Open));
                        self.hook_while_open = None;
                        self.state = State::Releasing;
                        self.timer = Some((Timer::OpenLoop, now + Duration::from_millis(ms.into())));
                    }
                    _ => self.reorder(now),
                }
            }
            // Stale or out-of-order signals for a call this port no longer
            // has (e.g. a 180 racing the phone's hang-up) change nothing.
            _ => {}
        }
    }

    /// A line step of the caller ID delivery in progress. Steps for a port
    /// that is no longer ringing with a delivery (answered, cancelled) are
    /// stale and change nothing.
    pub fn handle_caller_id(&mut self, now: Instant, step: CallerIdStep) {
        let CidState::Sending { first_ring, reversed } = self.cid else { return };
        if self.state != State::Ringing {
            return;
        }
        match step {
            CallerIdStep::ReversePolarity => {
                self.push(Action::SetLineFeed(LineFeed::Reverse));
                self.cid = CidState::Sending { first_ring, reversed: true };
            }
            CallerIdStep::RingOn => {
                self.ring(true);
                self.cid = CidState::Sending { first_ring: first_ring.or(Some(now)), reversed };
            }
            CallerIdStep::RingOff => self.ring(false),
            CallerIdStep::Done => self.caller_id_done(now),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.no_answer_at.is_some_and(|at| now >= at) {
            self.no_answer_at = None;
            if self.state == State::Ringing {
                self.stop_caller_id();
                self.ring(false);
                self.push(Action::RejectCall { busy: false });
                self.enter(State::Idle, now, None);
                return;
            }
        }
        let Some((timer, at)) = self.timer else { return };
        if now < at {
            return;
        }
        self.timer = None;
        match timer {
            Timer::FirstDigit => self.reorder(now),
            Timer::InterDigit => {
                if self.config.dial_plan.check(&self.digits) == Match::CompleteOrMore {
                    self.place_call(now);
                } else {
                    self.reorder(now);
                }
            }
            // Lockout: the phone was left off-hook; stop the tone, wait for on-hook.
            Timer::Reorder => self.stop_tone(),
            Timer::OpenLoop => {
                self.push(Action::SetLineFeed(LineFeed::Forward));
                match self.hook_while_open.take() {
                    Some(FxsEvent::OnHook) => self.enter(State::Idle, now, None),
                    _ => self.reorder(now),
                }
            }
            Timer::ResumeRinging => self.ring(true),
            Timer::CallerIdGuard => {
                self.stop_caller_id();
                self.ring(true);
            }
        }
    }

    /// The delivery ended: restore the polarity and ring. After a first
    /// ring, the next ring comes where the cadence puts it (its first on and
    /// off periods after the first ring's start), or now if the data ran past.
    fn caller_id_done(&mut self, now: Instant) {
        let CidState::Sending { first_ring, reversed } = std::mem::replace(&mut self.cid, CidState::None) else {
            return;
        };
        if reversed {
            self.push(Action::SetLineFeed(LineFeed::Forward));
        }
        self.timer = None;
        let cycle: u32 = self.config.ring_cadence.periods().iter().take(2).map(|&p| u32::from(p)).sum();
        match first_ring.map(|t| t + Duration::from_millis(cycle.into())) {
            Some(at) if at > now => self.timer = Some((Timer::ResumeRinging, at)),
            _ => self.ring(true),
        }
    }

    /// Abort a delivery in progress (answer, cancel, guard timeout).
    fn stop_caller_id(&mut self) {
        if let CidState::Sending { reversed, .. } = std::mem::replace(&mut self.cid, CidState::None) {
            self.push(Action::StopCallerId);
            if reversed {
                self.push(Action::SetLineFeed(LineFeed::Forward));
            }
        }
    }

    // --------------------------------------------------------------- helpers

    fn push(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn ring(&mut self, on: bool) {
        if self.ringing != on {
            self.ringing = on;
            self.push(Action::SetRinging(on.then_some(self.config.ring_cadence)));
        }
    }

    fn play(&mut self, t: Tone) {
        self.tone = Some(t);
        self.push(Action::PlayTone(t));
    }

    fn stop_tone(&mut self) {
        if self.tone.take().is_some() {
            self.push(Action::StopTone);
        }
    }

    fn enter(&mut self, state: State, now: Instant, timer: Option<Timer>) {
        if state == State::Ringing && self.state != State::Ringing {
            self.no_answer_at = self.config.no_answer_timeout.map(|d| now + d);
        } else if state != State::Ringing {
            self.no_answer_at = None;
        }
        self.state = state;
        self.timer = timer.map(|t| {
            let d = match t {
                Timer::FirstDigit => self.config.first_digit_timeout,
                Timer::InterDigit => self.config.inter_digit_timeout,
                Timer::Reorder => self.config.reorder_timeout,
                Timer::OpenLoop => Duration::from_millis(self.config.disconnect_open_ms.unwrap_or(0).into()),
                Timer::CallerIdGuard => CALLER_ID_GUARD,
                Timer::ResumeRinging => Duration::ZERO, // set directly, never through here
            };
            (t, now + d)
        });
    }

    fn reorder(&mut self, now: Instant) {
        self.play(Tone::Reorder);
        self.enter(State::Releasing, now, Some(Timer::Reorder));
    }

    fn place_call(&mut self, now: Instant) {
        let number = self.digits.clone();
        self.push(Action::PlaceCall { number });
        self.enter(State::Proceeding, now, None);
    }

    fn collect(&mut self, now: Instant, digit: u8) {
        let plan = &self.config.dial_plan;
        let mut with = self.digits.clone();
        with.push(digit as char);
        let m = plan.check(&with);
        if digit == b'#' && m == Match::NoMatch {
            // `#` not used by any pattern here: it means "send now".
            match plan.check(&self.digits) {
                Match::Complete | Match::CompleteOrMore => self.place_call(now),
                _ => self.reorder(now),
            }
            return;
        }
        self.digits = with;
        match m {
            Match::Complete => self.place_call(now),
            Match::NoMatch => self.reorder(now),
            _ if self.digits.len() >= MAX_DIGITS => self.reorder(now),
            Match::Partial | Match::CompleteOrMore => self.enter(State::Collecting, now, Some(Timer::InterDigit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rig {
        line: FxsLine,
        t0: Instant,
        now: Instant,
    }

    fn cadence() -> RingCadence {
        RingCadence::new(&[2000, 4000]).unwrap()
    }

    fn rig_with(f: impl FnOnce(&mut FxsConfig)) -> Rig {
        let plan = DialPlan::new(&["911", "1nxxnxxxxxx", "8x.", "*6[79]#"]).unwrap();
        let mut cfg = FxsConfig::new(plan, cadence());
        f(&mut cfg);
        let t0 = Instant::now();
        Rig { line: FxsLine::new(cfg), t0, now: t0 }
    }

    fn rig() -> Rig {
        rig_with(|_| {})
    }

    impl Rig {
        fn actions(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.line.poll_action()).collect()
        }
        fn hook(&mut self, ev: FxsEvent) -> Vec<Action> {
            self.line.handle_hook(self.now, ev);
            self.actions()
        }
        fn dial(&mut self, digits: &str) -> Vec<Action> {
            for d in digits.bytes() {
                self.now += Duration::from_millis(300);
                self.line.handle_digit(self.now, d);
            }
            self.actions()
        }
        fn call(&mut self, sig: CallSignal) -> Vec<Action> {
            self.line.handle_call(self.now, sig);
            self.actions()
        }
        /// Advances virtual time to `secs` after start, firing timers on the way.
        fn at(&mut self, ms: u64) -> Vec<Action> {
            let target = self.t0 + Duration::from_millis(ms);
            while let Some(t) = self.line.poll_timeout() {
                if t > target {
                    break;
                }
                self.now = t;
                self.line.handle_timeout(t);
            }
            self.now = target;
            self.actions()
        }
        fn elapsed_ms(&self) -> u64 {
            (self.now - self.t0).as_millis() as u64
        }
    }

    use Action::*;
    use FxsEvent::*;

    #[test]
    fn off_hook_dial_complete_number_places_call() {
        let mut r = rig();
        assert_eq!(r.hook(OffHook), [PlayTone(Tone::Dial)]);
        assert_eq!(r.line.state(), State::DialTone);
        assert_eq!(r.dial("9"), [StopTone]);
        assert_eq!(r.line.state(), State::Collecting);
        assert_eq!(r.dial("11"), [PlaceCall { number: "911".into() }]);
        assert_eq!(r.line.state(), State::Proceeding);
        assert_eq!(r.line.poll_timeout(), None);
        assert_eq!(r.call(CallSignal::RemoteRinging), [PlayTone(Tone::Ringback)]);
        assert_eq!(r.line.state(), State::Ringback);
        assert_eq!(r.call(CallSignal::RemoteAnswered), [StopTone, ConnectMedia]);
        assert_eq!(r.line.state(), State::Connected);
        assert_eq!(r.dial("123"), [], "digits in a call go as RFC 4733, not here");
        assert_eq!(r.hook(OnHook), [DisconnectMedia, ReleaseCall]);
        assert_eq!(r.line.state(), State::Idle);
    }

    #[test]
    fn unanswered_ringing_gives_up_with_no_answer() {
        let mut r = rig();
        assert_eq!(r.call(CallSignal::Incoming { caller: None, name: None }), [SetRinging(Some(cadence()))]);
        assert_eq!(r.line.poll_timeout(), Some(r.t0 + NO_ANSWER_TIMEOUT));
        assert_eq!(r.at(119_999), []);
        assert_eq!(r.line.state(), State::Ringing);
        assert_eq!(r.at(120_000), [SetRinging(None), RejectCall { busy: false }]);
        assert_eq!(r.line.state(), State::Idle);
        assert_eq!(r.line.poll_timeout(), None);
        // The port takes the next call as usual.
        assert_eq!(r.call(CallSignal::Incoming { caller: None, name: None }), [SetRinging(Some(cadence()))]);
        assert_eq!(r.hook(OffHook), [SetRinging(None), AnswerCall, ConnectMedia]);
        assert_eq!(r.at(400_000), [], "an answered call has no no-answer timer");
    }

    #[test]
    fn no_answer_timeout_runs_beside_a_caller_id_delivery_and_is_configurable() {
        let mut r = rig_with(|c| {
            c.caller_id = true;
            c.no_answer_timeout = Some(Duration::from_secs(30));
        });
        r.call(CallSignal::Incoming { caller: Some("5551234".into()), name: None });
        assert_eq!(r.line.poll_timeout(), Some(r.t0 + CALLER_ID_GUARD));
        // The delivery never reports: the guard rings at 10 s, the call gives up at 30 s.
        assert_eq!(r.at(10_000), [StopCallerId, SetRinging(Some(cadence()))]);
        assert_eq!(r.at(30_000), [SetRinging(None), RejectCall { busy: false }]);
        // None: rings until the caller cancels.
        let mut r = rig_with(|c| c.no_answer_timeout = None);
        r.call(CallSignal::Incoming { caller: None, name: None });
        assert_eq!(r.at(3_600_000), []);
        assert_eq!(r.line.state(), State::Ringing);
        assert_eq!(r.call(CallSignal::Cancelled), [SetRinging(None)]);
    }

    #[test]
    fn answer_without_ringing_connects() {
        let mut r = rig();
        r.hook(OffHook);
        r.dial("911");
        assert_eq!(r.call(CallSignal::RemoteAnswered), [ConnectMedia]);
    }

    #[test]
    fn first_digit_timeout_gives_reorder_then_lockout() {
        let mut r = rig();
        r.hook(OffHook);
        assert_eq!(r.at(14_999), []);
        assert_eq!(r.at(15_000), [PlayTone(Tone::Reorder)]);
        assert_eq!(r.line.state(), State::Releasing);
        assert_eq!(r.at(44_999), []);
        assert_eq!(r.at(45_000), [StopTone], "lockout after reorder_timeout");
        assert_eq!(r.line.state(), State::Releasing);
        assert_eq!(r.line.poll_timeout(), None);
        assert_eq!(r.hook(OnHook), []);
        assert_eq!(r.line.state(), State::Idle);
    }

    #[test]
    fn inter_digit_timeout_places_open_ended_number() {
        let mut r = rig();
        r.hook(OffHook);
        r.dial("8555");
        let last = r.elapsed_ms();
        assert_eq!(r.at(last + 3_999), []);
        assert_eq!(r.at(last + 4_000), [PlaceCall { number: "8555".into() }]);
    }

    #[test]
    fn inter_digit_timeout_restarts_on_each_digit() {
        let mut r = rig();
        r.hook(OffHook);
        r.dial("85");
        let t = r.elapsed_ms();
        assert_eq!(r.at(t + 3_000), []);
        r.dial("5");
        assert_eq!(r.line.poll_timeout(), Some(r.now + Duration::from_secs(4)));
    }

    #[test]
    fn inter_digit_timeout_on_partial_number_gives_reorder() {
        let mut r = rig();
        r.hook(OffHook);
        r.dial("1212");
        let t = r.elapsed_ms();
        assert_eq!(r.at(t + 4_000), [PlayTone(Tone::Reorder)]);
        assert_eq!(r.line.state(), State::Releasing);
        assert_eq!(r.dial("5"), [], "no digits collected after failure");
    }

    #[test]
    fn hash_sends_now() {
        let mut r = rig();
        r.hook(OffHook);
        assert_eq!(r.dial("85551#"), [StopTone, PlaceCall { number: "85551".into() }]);
    }

    #[test]
    fn hash_used_by_a_pattern_is_collected() {
        let mut r = rig();
        r.hook(OffHook);
        assert_eq!(r.dial("*67#"), [StopTone, PlaceCall { number: "*67#".into() }]);
    }

    #[test]
    fn hash_on_incomplete_number_gives_reorder() {
        let mut r = rig();
        r.hook(OffHook);
        assert_eq!(r.dial("12#"), [StopTone, PlayTone(Tone::Reorder)]);
    }

    #[test]
    fn no_match_gives_reorder_at_once() {
        let mut r = rig();
        r.hook(OffHook);
        assert_eq!(r.dial("5"), [StopTone, PlayTone(Tone::Reorder)]);
        assert_eq!(r.line.state(), State::Releasing);
        assert_eq!(r.hook(OnHook), [StopTone]);
        assert_eq!(r.line.state(), State::Idle);
    }

    #[test]
    fn too_many_digits_give_reorder() {
        let mut r = rig();
        r.hook(OffHook);
        let long = "8".repeat(MAX_DIGITS);
        let acts = r.dial(&long);
        assert_eq!(acts.last(), Some(&PlayTone(Tone::Reorder)));
    }

    #[test]
    fn early_media_replaces_the_ringback_and_the_answer_keeps_it() {
        let mut r = rig();
        r.hook(OffHook);
        r.dial("911");
        assert_eq!(r.call(CallSignal::RemoteRinging), [PlayTone(Tone::Ringback)]);
        assert_eq!(r.call(CallSignal::EarlyMedia), [StopTone, ConnectMedia]);
        assert_eq!(r.call(CallSignal::EarlyMedia), [], "once");
        assert_eq!(r.line.state(), State::Ringback);
        assert_eq!(r.call(CallSignal::RemoteAnswered), [], "the media path is already up");
        assert_eq!(r.line.state(), State::Connected);
        assert_eq!(r.hook(OnHook), [DisconnectMedia, ReleaseCall]);
        // Straight from proceeding, then a failure: media off, then the tone.
        r.hook(OffHook);
        r.dial("911");
        assert_eq!(r.call(CallSignal::EarlyMedia), [ConnectMedia]);
        assert_eq!(r.call(CallSignal::Failed { busy: true }), [DisconnectMedia, PlayTone(Tone::Busy)]);
        r.hook(OnHook);
        // Hanging up during an announcement.
        r.hook(OffHook);
        r.dial("911");
        r.call(CallSignal::EarlyMedia);
        assert_eq!(r.hook(OnHook), [DisconnectMedia, ReleaseCall]);
        assert_eq!(r.call(CallSignal::RemoteAnswered), [], "stale");
    }

    #[test]
    fn failed_busy_and_other() {
        let mut r = rig();
        r.hook(OffHook);
        r.dial("911");
        r.call(CallSignal::RemoteRinging);
        assert_eq!(r.call(CallSignal::Failed { busy: true }), [PlayTone(Tone::Busy)]);
        assert_eq!(r.line.state(), State::Busy);
        assert_eq!(r.hook(OnHook), [StopTone]);

        r.hook(OffHook);
        r.dial("911");
        assert_eq!(r.call(CallSignal::Failed { busy: false }), [PlayTone(Tone::Reorder)]);
        assert_eq!(r.line.state(), State::Releasing);
    }

    #[test]
    fn on_hook_while_proceeding_releases_call() {
        let mut r = rig();
        r.hook(OffHook);
        r.dial("911");
        assert_eq!(r.hook(OnHook), [ReleaseCall]);
        r.hook(OffHook);
        r.dial("911");
        r.call(CallSignal::RemoteRinging);
        assert_eq!(r.hook(OnHook), [StopTone, ReleaseCall]);
        assert_eq!(r.call(CallSignal::RemoteAnswered), [], "stale answer after hang-up");
        assert_eq!(r.line.state(), State::Idle);
    }

    #[test]
    fn remote_release_gives_reorder() {
        let mut r = rig();
        r.hook(OffHook);
        r.dial("911");
        r.call(CallSignal::RemoteAnswered);
        assert_eq!(r.call(CallSignal::RemoteReleased), [DisconnectMedia, PlayTone(Tone::Reorder)]);
        assert_eq!(r.line.state(), State::Releasing);
        assert_eq!(r.hook(OnHook), [StopTone], "no ReleaseCall: the far end already did");
    }

    #[test]
    fn remote_release_with_open_loop_pulse() {
        let mut r = rig_with(|c| c.disconnect_open_ms = Some(600));
        r.hook(OffHook);
        r.dial("911");
        r.call(CallSignal::RemoteAnswered);
        let t = r.elapsed_ms();
        assert_eq!(r.call(CallSignal::RemoteReleased), [DisconnectMedia, SetLineFeed(LineFeed::Open)]);
        assert_eq!(r.hook(OnHook), [], "loop open: hook state unreliable");
        assert_eq!(r.hook(OffHook), []);
        assert_eq!(r.at(t + 599), []);
        assert_eq!(r.at(t + 600), [SetLineFeed(LineFeed::Forward), PlayTone(Tone::Reorder)]);
        assert_eq!(r.line.state(), State::Releasing);
    }

    #[test]
    fn hang_up_during_open_loop_pulse_goes_idle_when_restored() {
        let mut r = rig_with(|c| c.disconnect_open_ms = Some(300));
        r.hook(OffHook);
        r.dial("911");
        r.call(CallSignal::RemoteAnswered);
        let t = r.elapsed_ms();
        r.call(CallSignal::RemoteReleased);
        r.hook(OnHook);
        assert_eq!(r.at(t + 300), [SetLineFeed(LineFeed::Forward)]);
        assert_eq!(r.line.state(), State::Idle);
    }

    fn cid_rig() -> Rig {
        rig_with(|c| c.caller_id = true)
    }

    impl Rig {
        fn cid(&mut self, step: CallerIdStep) -> Vec<Action> {
            self.line.handle_caller_id(self.now, step);
            self.actions()
        }
    }

    fn incoming(number: &str, name: &str) -> CallSignal {
        CallSignal::Incoming { caller: Some(number.into()), name: Some(name.into()) }
    }

    #[test]
    fn caller_id_between_first_and_second_ring_keeps_the_cadence() {
        let mut r = cid_rig();
        assert_eq!(
            r.call(incoming("5551234", "ALICE")),
            [SendCallerId { number: Some("5551234".into()), name: Some("ALICE".into()) }],
            "no ringing before the sender's first ring"
        );
        assert_eq!(r.line.state(), State::Ringing);
        r.at(10);
        assert_eq!(r.cid(CallerIdStep::RingOn), [SetRinging(Some(cadence()))]);
        r.at(2010);
        assert_eq!(r.cid(CallerIdStep::RingOff), [SetRinging(None)]);
        r.at(3400);
        assert_eq!(r.cid(CallerIdStep::Done), [], "the second ring waits for its place in the cadence");
        assert_eq!(r.at(6009), []);
        assert_eq!(r.at(6010), [SetRinging(Some(cadence()))], "first ring began at 10 ms; 2 s on + 4 s off");
        assert_eq!(r.line.poll_timeout(), Some(r.t0 + NO_ANSWER_TIMEOUT), "only the no-answer timer is left");
        assert_eq!(r.hook(OffHook), [SetRinging(None), AnswerCall, ConnectMedia], "nothing left to stop");
    }

    #[test]
    fn caller_id_running_past_the_second_ring_rings_at_once() {
        let mut r = cid_rig();
        r.call(incoming("5551234", "ALICE"));
        r.cid(CallerIdStep::RingOn);
        r.at(2000);
        r.cid(CallerIdStep::RingOff);
        r.at(7000);
        assert_eq!(r.cid(CallerIdStep::Done), [SetRinging(Some(cadence()))]);
    }

    #[test]
    fn caller_id_before_first_ring_with_line_reversal() {
        let mut r = cid_rig();
        r.call(CallSignal::Incoming { caller: None, name: None });
        assert_eq!(r.cid(CallerIdStep::ReversePolarity), [SetLineFeed(LineFeed::Reverse)]);
        r.at(900);
        assert_eq!(r.cid(CallerIdStep::Done), [SetLineFeed(LineFeed::Forward), SetRinging(Some(cadence()))]);
        assert_eq!(r.cid(CallerIdStep::RingOn), [], "stale step after the delivery");
    }

    #[test]
    fn answer_during_caller_id_stops_it_and_restores_polarity() {
        let mut r = cid_rig();
        r.call(incoming("5551234", "ALICE"));
        r.cid(CallerIdStep::ReversePolarity);
        assert_eq!(
            r.hook(OffHook),
            [StopCallerId, SetLineFeed(LineFeed::Forward), AnswerCall, ConnectMedia]
        );
        assert_eq!(r.cid(CallerIdStep::Done), [], "the sender's late steps change nothing");
        assert_eq!(r.line.state(), State::Connected);
    }

    #[test]
    fn cancel_during_caller_id_stops_it() {
        let mut r = cid_rig();
        r.call(incoming("5551234", "ALICE"));
        r.cid(CallerIdStep::RingOn);
        assert_eq!(r.call(CallSignal::Cancelled), [StopCallerId, SetRinging(None)]);
        assert_eq!(r.line.state(), State::Idle);
        assert_eq!(r.line.poll_timeout(), None);
        assert_eq!(r.at(20_000), []);
    }

    #[test]
    fn silent_caller_id_sender_still_rings_after_the_guard() {
        let mut r = cid_rig();
        r.call(incoming("5551234", "ALICE"));
        let guard = CALLER_ID_GUARD.as_millis() as u64;
        assert_eq!(r.at(guard - 1), []);
        assert_eq!(r.at(guard), [StopCallerId, SetRinging(Some(cadence()))]);
        assert_eq!(r.cid(CallerIdStep::Done), []);
        assert_eq!(r.line.state(), State::Ringing);
    }

    #[test]
    fn caller_id_off_rings_at_once() {
        let mut r = rig();
        assert_eq!(r.call(incoming("5551234", "ALICE")), [SetRinging(Some(cadence()))]);
        assert_eq!(r.cid(CallerIdStep::Done), [], "no delivery to end");
    }

    #[test]
    fn incoming_call_rings_and_is_answered() {
        let mut r = rig();
        assert_eq!(r.call(CallSignal::Incoming { caller: Some("5551234".into()), name: None }), [SetRinging(Some(cadence()))]);
        assert_eq!(r.line.state(), State::Ringing);
        assert_eq!(r.call(CallSignal::Incoming { caller: None, name: None }), [RejectCall { busy: true }]);
        assert_eq!(r.line.state(), State::Ringing);
        assert_eq!(r.hook(OffHook), [SetRinging(None), AnswerCall, ConnectMedia]);
        assert_eq!(r.line.state(), State::Connected);
        assert_eq!(r.hook(OnHook), [DisconnectMedia, ReleaseCall]);
    }

    #[test]
    fn incoming_call_cancelled() {
        let mut r = rig();
        r.call(CallSignal::Incoming { caller: None, name: None });
        assert_eq!(r.call(CallSignal::Cancelled), [SetRinging(None)]);
        assert_eq!(r.line.state(), State::Idle);
        assert_eq!(r.hook(OffHook), [PlayTone(Tone::Dial)], "next off-hook is a new call");
    }

    #[test]
    fn incoming_while_busy_is_rejected_without_state_change() {
        let mut r = rig();
        r.hook(OffHook);
        for (state, prep) in [(State::DialTone, ""), (State::Collecting, "9"), (State::Proceeding, "11")] {
            r.dial(prep);
            assert_eq!(r.call(CallSignal::Incoming { caller: None, name: None }), [RejectCall { busy: true }]);
            assert_eq!(r.line.state(), state);
        }
        r.call(CallSignal::RemoteAnswered);
        assert_eq!(r.call(CallSignal::Incoming { caller: None, name: None }), [RejectCall { busy: true }]);
        assert_eq!(r.line.state(), State::Connected);
    }

    #[test]
    fn hook_flash_and_junk_digits_are_ignored() {
        let mut r = rig();
        r.hook(OffHook);
        assert_eq!(r.hook(HookFlash), []);
        assert_eq!(r.dial("A"), []);
        assert_eq!(r.line.state(), State::DialTone);
        assert_eq!(r.hook(OffHook), [], "duplicate off-hook");
    }

    #[test]
    fn idle_ignores_stray_inputs() {
        let mut r = rig();
        assert_eq!(r.hook(OnHook), []);
        assert_eq!(r.dial("5"), []);
        assert_eq!(r.call(CallSignal::RemoteReleased), []);
        assert_eq!(r.at(100_000), []);
        assert_eq!(r.line.state(), State::Idle);
    }

    #[test]
    fn early_timeout_call_does_nothing() {
        let mut r = rig();
        r.hook(OffHook);
        r.line.handle_timeout(r.now + Duration::from_secs(1));
        assert_eq!(r.actions(), []);
        assert_eq!(r.line.state(), State::DialTone);
    }

    #[derive(Clone, Debug)]
    enum Input {
        Hook(FxsEvent),
        Digit(u8),
        Call(CallSignal),
        Wait(u64),
        CallerId(CallerIdStep),
    }

    fn input() -> impl proptest::strategy::Strategy<Value = Input> {
        use proptest::prelude::*;
        prop_oneof![
            prop_oneof![Just(OffHook), Just(OnHook), Just(HookFlash)].prop_map(Input::Hook),
            proptest::sample::select(b"0123456789*#A".to_vec()).prop_map(Input::Digit),
            prop_oneof![
                Just(CallSignal::Incoming { caller: None, name: None }),
                Just(CallSignal::RemoteRinging),
                Just(CallSignal::EarlyMedia),
                Just(CallSignal::RemoteAnswered),
                Just(CallSignal::RemoteReleased),
                any::<bool>().prop_map(|busy| CallSignal::Failed { busy }),
                Just(CallSignal::Cancelled),
            ]
            .prop_map(Input::Call),
            (0u64..40_000).prop_map(Input::Wait),
            prop_oneof![
                Just(CallerIdStep::ReversePolarity),
                Just(CallerIdStep::RingOn),
                Just(CallerIdStep::RingOff),
                Just(CallerIdStep::Done),
            ]
            .prop_map(Input::CallerId),
        ]
    }

    proptest::proptest! {
        /// Phone against FXS: whatever happens, what the port asked of the
        /// hardware and the rt thread stays consistent with its state.
        #[test]
        fn outputs_stay_consistent_with_state(open in proptest::option::of(100u32..1000),
                                              caller_id in proptest::bool::ANY,
                                              script in proptest::collection::vec(input(), 0..80)) {
            let mut r = rig_with(|c| { c.disconnect_open_ms = open; c.caller_id = caller_id });
            let mut sending = false;
            let (mut tone, mut media, mut ringing, mut feed_open) = (false, false, false, false);
            let mut off_hook = false;
            for inp in script {
                let acts = match inp {
                    Input::Hook(ev) => {
                        match ev { OffHook => off_hook = true, OnHook => off_hook = false, HookFlash => {} }
                        r.hook(ev)
                    }
                    Input::Digit(d) => r.dial(std::str::from_utf8(&[d]).unwrap()),
                    Input::Call(sig) => r.call(sig),
                    Input::Wait(ms) => { let t = r.elapsed_ms() + ms; r.at(t) }
                    Input::CallerId(step) => {
                        if step == CallerIdStep::Done {
                            sending = false; // the sender finished by itself
                        }
                        r.cid(step)
                    }
                };
                for a in acts {
                    match a {
                        PlayTone(_) => tone = true,
                        StopTone => { proptest::prop_assert!(tone, "StopTone without a tone"); tone = false }
                        ConnectMedia => { proptest::prop_assert!(!media); media = true }
                        DisconnectMedia => { proptest::prop_assert!(media); media = false }
                        SetRinging(c) => { proptest::prop_assert_eq!(c.is_some(), !ringing); ringing = c.is_some() }
                        SetLineFeed(f) => feed_open = f == LineFeed::Open,
                        SendCallerId { .. } => { proptest::prop_assert!(caller_id && !sending); sending = true }
                        StopCallerId => { proptest::prop_assert!(sending); sending = false }
                        _ => {}
                    }
                }
                let st = r.line.state();
                // Connected means media; early media is the one other case.
                proptest::prop_assert!(media == (st == State::Connected) || (media && st == State::Ringback));
                if ringing {
                    proptest::prop_assert_eq!(st, State::Ringing);
                }
                if st == State::Ringing && !caller_id {
                    proptest::prop_assert!(ringing);
                }
                if st != State::Ringing {
                    proptest::prop_assert!(!sending, "caller ID left running in {:?}", st);
                }
                proptest::prop_assert_eq!(tone, r.line.tone().is_some());
                if st == State::Connected || st == State::Idle || st == State::Ringing {
                    proptest::prop_assert!(!tone, "tone in {:?}", st);
                }
                if !feed_open {
                    // Loop closed: the port's idea of the hook matches the phone.
                    proptest::prop_assert_eq!(off_hook, !matches!(st, State::Idle | State::Ringing), "{:?}", st);
                } else {
                    proptest::prop_assert_eq!(st, State::Releasing);
                }
            }
        }
    }
}
