//! linesim as the central office on the card's FXO ports
//! (`hal/SIMLINK.md`, "FXO ports").
//!
//! A [`CentralOffice`] drives one FXO line: it rings the card with a
//! cadence, sends caller ID the country's way, gives dial tone when the card
//! seizes the line, collects the digits the card dials (DTMF with
//! [`callerid::DtmfReceiver`], dial pulses from the loop breaks), plays
//! call-progress tones, answers with or without polarity reversal,
//! disconnects (open-loop "CPC" interval, polarity reversal, or busy tone
//! only) and carries audio both ways like a [`Phone`].
//!
//! Everything the exchange does on the line runs in the card's frame time:
//! the state set by the calls here is acted on by linesim's reader thread
//! at the next AUDIO frame of the port (line messages go out before that
//! frame's answer), so cadences, pauses and break lengths are exact in
//! frames. Nothing happens while the card does not clock the port.
//!
//! Caller ID, as sent by [`CentralOffice::send_caller_id`]:
//! - [`Standard::Bell202`] (Telcordia GR-30): ringing starts; 600 ms after
//!   the end of the first ring burst the MDMF message (Bell 202 FSK) is
//!   sent; the second ring follows with the cadence (needs an off period of
//!   1.5 s or more, e.g. the US 2 s / 4 s).
//! - [`Standard::V23`] (ETSI EN 300 659-1, prior to ringing with line
//!   reversal): polarity reversed; 250 ms; DT-AS 100 ms; 100 ms; MDMF (V.23
//!   FSK); 250 ms; polarity normal; 250 ms; ringing starts.
//! - [`Standard::DtmfClip`] (ETSI DTMF CLIP before the first ring): polarity
//!   reversed; 250 ms; `A` number `C` (70/70 ms); 250 ms; polarity normal;
//!   250 ms; ringing starts.
//!
//! Loop breaks (frame time): at most 120 ms is a dial pulse, pulses of one
//! digit are separated by makes shorter than 250 ms; 130..=1000 ms is a
//! hook flash; longer is a release (the call ends, the line goes idle).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gw_hal::sim::wire::Message;
use gw_hal::{Polarity, RingCadence};

use crate::analysis::{self, plans, TonePlan};
use crate::callerid::{self, DtmfReceiver, FskStandard, Standard};
use crate::{EchoPath, LinesimError, Measurement, Phone, Port, Source, ToneReport, FRAME};

/// Longest loop break taken for a dial pulse, ms.
pub const PULSE_MAX_MS: u64 = 120;
/// A make at least this long ends a pulse digit, ms.
pub const INTERDIGIT_MS: u64 = 250;
/// Longest loop break taken for a hook flash; longer is a release, ms.
pub const FLASH_MAX_MS: u64 = 1000;
/// Level of each frequency of the call-progress tones, dBm0.
pub const TONE_DBM0: f32 = -13.0;
/// From the end of the first ring to the Bell 202 data, ms (GR-30: >= 500).
pub const BELL_RING_TO_DATA_MS: u32 = 600;

/// Whose tones and ring cadence the exchange uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Country {
    #[default]
    Us,
    De,
    Uk,
}

impl Country {
    /// The ringing cadence (ms on/off...).
    pub fn ring_cadence(self) -> &'static [u16] {
        match self {
            Country::Us => &[2000, 4000],
            Country::De => &[1000, 4000],
            Country::Uk => &[400, 200, 400, 2000],
        }
    }

    pub fn dial_tone(self) -> TonePlan {
        match self {
            Country::Us => plans::US_DIAL,
            Country::De => plans::DE_DIAL,
            Country::Uk => plans::UK_DIAL,
        }
    }

    pub fn ringback(self) -> TonePlan {
        match self {
            Country::Us => plans::US_RINGBACK,
            Country::De => plans::DE_RINGBACK,
            Country::Uk => plans::UK_RINGBACK,
        }
    }

    pub fn busy(self) -> TonePlan {
        match self {
            Country::Us => plans::US_BUSY,
            Country::De => plans::DE_BUSY,
            Country::Uk => plans::UK_BUSY,
        }
    }

    pub fn reorder(self) -> TonePlan {
        match self {
            Country::Us => plans::US_REORDER,
            Country::De => plans::DE_REORDER,
            Country::Uk => plans::UK_REORDER,
        }
    }
}

impl std::str::FromStr for Country {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "us" => Ok(Country::Us),
            "de" => Ok(Country::De),
            "uk" | "gb" => Ok(Country::Uk),
            _ => Err(format!("unknown country {s:?} (us, de, uk)")),
        }
    }
}

/// How the exchange tells the card the far end hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// Loop current dropped for `ms` (calling party control, "CPC").
    Cpc { ms: u16 },
    /// The polarity reverses (back to normal after an answer with reversal).
    Reversal,
    /// Nothing on the loop: busy tone only.
    BusyTone,
}

/// A call-progress tone being generated: frequencies, cadence, position.
#[derive(Debug, Clone)]
struct ToneGen {
    plan: TonePlan,
    /// Samples generated so far.
    n: u64,
}

impl ToneGen {
    fn new(plan: TonePlan) -> Self {
        ToneGen { plan, n: 0 }
    }

    fn add_frame(&mut self, out: &mut [i16; FRAME]) {
        let cycle: u64 = self.plan.cadence_ms.iter().map(|&p| u64::from(p) * 8).sum();
        let amp = analysis::amplitude(TONE_DBM0);
        for s in out.iter_mut() {
            let on = if cycle == 0 {
                true
            } else {
                let mut pos = self.n % cycle;
                let mut on = true;
                for &p in self.plan.cadence_ms {
                    let len = u64::from(p) * 8;
                    if pos < len {
                        break;
                    }
                    pos -= len;
                    on = !on;
                }
                on
            };
            if on {
                let t = self.n as f64 / analysis::RATE;
                let v: f64 = self
                    .plan
                    .freqs
                    .iter()
                    .map(|&f| amp * (2.0 * std::f64::consts::PI * f64::from(f) * t).sin())
                    .sum();
                *s = (f64::from(*s) + v).round().clamp(-32768.0, 32767.0) as i16;
            }
            self.n += 1;
        }
    }
}

/// Ringing in progress.
#[derive(Debug, Clone)]
struct RingRun {
    cadence: RingCadence,
    period: usize,
    elapsed_ms: u32,
    /// Bell 202 data to send after the first ring burst, and the countdown
    /// (frames) once that burst ended.
    cid: Option<Vec<i16>>,
    cid_wait: Option<u32>,
}

/// One step of a timed sequence (caller ID before ringing, CPC).
#[derive(Debug, Clone)]
enum Step {
    Wait(u32),
    Polarity(Polarity),
    Current(bool),
    Play(Vec<i16>),
    StartRing,
}

/// The exchange's side of one FXO line (kept in the port, run per frame).
#[derive(Debug)]
pub(crate) struct CoLine {
    country: Country,
    cadence: RingCadence,
    auto_dial_tone: bool,
    polarity: Polarity,
    sent_polarity: Polarity,
    current: bool,
    sent_current: bool,
    sent_ring: bool,
    ringing: Option<RingRun>,
    script: VecDeque<Step>,
    /// Playback generation of a `Step::Play` in progress.
    playing: Option<u64>,
    tone: Option<ToneGen>,
    tone_is_dial: bool,
    loop_closed: bool,
    open_at: u64,
    call_up: bool,
    pulses: u32,
    last_make: u64,
    dtmf: DtmfReceiver,
    digits: String,
    flashes: u32,
    seizures: u32,
    releases: u32,
    answered: bool,
}

impl CoLine {
    pub(crate) fn new() -> Self {
        CoLine {
            country: Country::Us,
            cadence: cadence_of(Country::Us.ring_cadence()),
            auto_dial_tone: true,
            polarity: Polarity::Normal,
            sent_polarity: Polarity::Normal,
            current: true,
            sent_current: true,
            sent_ring: false,
            ringing: None,
            script: VecDeque::new(),
            playing: None,
            tone: None,
            tone_is_dial: false,
            loop_closed: false,
            open_at: 0,
            call_up: false,
            pulses: 0,
            last_make: 0,
            dtmf: DtmfReceiver::new(),
            digits: String::new(),
            flashes: 0,
            seizures: 0,
            releases: 0,
            answered: false,
        }
    }

    fn ring_on(&self) -> bool {
        self.ringing.as_ref().is_some_and(|r| r.period % 2 == 0)
    }

    fn set_tone(&mut self, plan: Option<TonePlan>) {
        self.tone = plan.map(ToneGen::new);
        self.tone_is_dial = false;
    }

    fn stop_dial_tone(&mut self) {
        if self.tone_is_dial {
            self.tone = None;
            self.tone_is_dial = false;
        }
    }

    fn finish_pulse_digit(&mut self) {
        if self.pulses > 0 {
            let d = if self.pulses >= 10 { '0' } else { char::from(b'0' + self.pulses as u8) };
            self.digits.push(d);
            self.pulses = 0;
        }
    }

    /// Line messages for what changed since the last call.
    fn emit(&mut self, port: u8, reply: &mut Vec<u8>) {
        if self.polarity != self.sent_polarity {
            Message::Polarity { port, polarity: self.polarity }.encode(reply);
            self.sent_polarity = self.polarity;
        }
        if self.current != self.sent_current {
            Message::LoopCurrent { port, on: self.current }.encode(reply);
            self.sent_current = self.current;
        }
        let on = self.ring_on();
        if on != self.sent_ring {
            Message::Ring { port, on }.encode(reply);
            self.sent_ring = on;
        }
    }
}

fn cadence_of(periods: &[u16]) -> RingCadence {
    RingCadence::new(periods).unwrap_or(RingCadence { periods_ms: [2000, 4000, 0, 0, 0, 0, 0, 0], len: 2 })
}

fn ms_frames(ms: u32) -> u32 {
    ms.div_ceil(10)
}

/// SEIZE from the card on an FXO port.
pub(crate) fn on_seize(p: &mut Port, port: u8, closed: bool, reply: &mut Vec<u8>) {
    let frames = p.frames;
    let Some(co) = p.co.as_mut() else { return };
    if closed == co.loop_closed {
        return;
    }
    co.loop_closed = closed;
    if !closed {
        co.open_at = frames;
        return;
    }
    let break_ms = (frames - co.open_at) * 10;
    if co.call_up && break_ms > FLASH_MAX_MS {
        // Released while no frame came to tell (an unclocked card).
        co.call_up = false;
        co.releases += 1;
    }
    if co.call_up {
        if break_ms <= PULSE_MAX_MS {
            co.pulses += 1;
            co.last_make = frames;
            co.stop_dial_tone();
        } else {
            co.finish_pulse_digit();
            co.flashes += 1;
        }
        return;
    }
    // A new call: the card answers an alerting line, or goes off-hook to dial.
    co.call_up = true;
    co.seizures += 1;
    co.digits.clear();
    co.flashes = 0;
    co.pulses = 0;
    co.dtmf = DtmfReceiver::new();
    co.answered = false;
    let alerting = co.ringing.is_some() || !co.script.is_empty();
    co.ringing = None;
    co.script.clear();
    co.tone = None;
    co.tone_is_dial = false;
    if alerting {
        // Ring trip; a caller ID in progress is cut off too.
        co.playing = None;
        co.polarity = Polarity::Normal;
        co.emit(port, reply);
        p.set_source(Source::Silence);
    } else if co.auto_dial_tone {
        co.tone = Some(ToneGen::new(co.country.dial_tone()));
        co.tone_is_dial = true;
    }
}

/// Runs the exchange for one received frame of an FXO port: line messages
/// go to `reply`; the result is the tone to add to the answer.
pub(crate) fn on_frame(p: &mut Port, port: u8, heard: &[i16], reply: &mut Vec<u8>) -> [i16; FRAME] {
    let frames = p.frames;
    let done_gen = p.done_gen;
    let mut out = [0i16; FRAME];
    let mut play: Option<Vec<i16>> = None;
    {
        let Some(co) = p.co.as_mut() else { return out };
        // Release: the loop stayed open too long for a flash.
        if co.call_up && !co.loop_closed && (frames - co.open_at) * 10 > FLASH_MAX_MS {
            co.call_up = false;
            co.releases += 1;
            co.pulses = 0;
            co.tone = None;
            co.tone_is_dial = false;
            co.answered = false;
            co.script.clear();
            co.polarity = Polarity::Normal;
            co.current = true;
        }
        if co.pulses > 0 && co.loop_closed && (frames - co.last_make) * 10 >= INTERDIGIT_MS {
            co.finish_pulse_digit();
        }
        if co.call_up && co.loop_closed {
            if let Some(k) = co.dtmf.push_frame(heard) {
                co.digits.push(k);
                co.stop_dial_tone();
            }
        }
        // The timed sequence.
        while let Some(step) = co.script.front_mut() {
            match step {
                Step::Wait(n) => {
                    if *n > 0 {
                        *n -= 1;
                        break;
                    }
                }
                Step::Polarity(pol) => co.polarity = *pol,
                Step::Current(on) => co.current = *on,
                Step::StartRing => {
                    co.ringing =
                        Some(RingRun { cadence: co.cadence, period: 0, elapsed_ms: 0, cid: None, cid_wait: None });
                }
                Step::Play(samples) => match co.playing {
                    None => {
                        play = Some(std::mem::take(samples));
                        break;
                    }
                    Some(gen) if done_gen < gen => break,
                    Some(_) => co.playing = None,
                },
            }
            co.script.pop_front();
        }
        co.emit(port, reply);
        // Ringing advances by one frame; the Bell 202 data goes in the first off period.
        if let Some(r) = co.ringing.as_mut() {
            let was_on = r.period % 2 == 0;
            r.elapsed_ms += gw_hal::FRAME_MS;
            let periods = r.cadence.periods();
            while r.elapsed_ms >= u32::from(periods[r.period]) {
                r.elapsed_ms -= u32::from(periods[r.period]);
                r.period = (r.period + 1) % periods.len();
            }
            if was_on && r.period % 2 == 1 && r.cid.is_some() && r.cid_wait.is_none() {
                r.cid_wait = Some(ms_frames(BELL_RING_TO_DATA_MS) - 1);
            }
            match r.cid_wait {
                Some(0) => {
                    play = r.cid.take();
                    r.cid_wait = None;
                }
                Some(n) => r.cid_wait = Some(n - 1),
                None => {}
            }
        }
        if let Some(t) = co.tone.as_mut() {
            t.add_frame(&mut out);
        }
    }
    if let Some(samples) = play {
        let gen = p.set_source(Source::Samples { data: samples, pos: 0, repeat: false });
        if let Some(co) = p.co.as_mut() {
            if co.script.front().is_some_and(|s| matches!(s, Step::Play(_))) {
                co.playing = Some(gen);
            }
        }
    }
    out
}

/// The central office on one FXO port. Cheap to clone; all clones drive the
/// same line. Calls on a port that is not FXO fail with
/// [`LinesimError::NotFxo`].
#[derive(Clone)]
pub struct CentralOffice {
    pub(crate) phone: Phone,
}

impl std::fmt::Debug for CentralOffice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CentralOffice").field("index", &self.phone.index).finish()
    }
}

impl CentralOffice {
    /// 0-based card port index.
    pub fn index(&self) -> usize {
        self.phone.index
    }

    fn with_co<T>(&self, f: impl FnOnce(&mut CoLine) -> T) -> Result<T, LinesimError> {
        let idx = self.phone.index;
        self.phone.with_port(|p| p.co.as_mut().map(f))?.ok_or(LinesimError::NotFxo(idx))
    }

    fn wait_co<T>(&self, timeout: Duration, mut f: impl FnMut(&CoLine) -> Option<T>) -> Result<T, LinesimError> {
        self.with_co(|_| ())?;
        let idx = self.phone.index;
        self.phone.inner.wait(Instant::now() + timeout, |st| f(st.ports.as_ref()?.get(idx)?.co.as_ref()?))
    }

    /// Tones and ring cadence of `country` (default US).
    pub fn set_country(&self, country: Country) -> Result<(), LinesimError> {
        self.with_co(|c| {
            c.country = country;
            c.cadence = cadence_of(country.ring_cadence());
        })
    }

    /// Dial tone when the card seizes an idle line (default on).
    pub fn set_auto_dial_tone(&self, on: bool) -> Result<(), LinesimError> {
        self.with_co(|c| c.auto_dial_tone = on)
    }

    /// Rings the card with `cadence` (ms on/off pairs, up to four pairs; the
    /// country's cadence when empty) until [`CentralOffice::stop_ring`] or
    /// the card seizes the line (ring trip).
    pub fn ring(&self, cadence: &[u16]) -> Result<(), LinesimError> {
        let cadence = if cadence.is_empty() {
            self.with_co(|c| c.cadence)?
        } else {
            RingCadence::new(cadence).ok_or(LinesimError::BadCadence)?
        };
        self.with_co(|c| {
            if c.loop_closed {
                return Err(LinesimError::LineSeized);
            }
            c.ringing = Some(RingRun { cadence, period: 0, elapsed_ms: 0, cid: None, cid_wait: None });
            Ok(())
        })?
    }

    /// Stops ringing (and any caller ID sequence in progress).
    pub fn stop_ring(&self) -> Result<(), LinesimError> {
        self.with_co(|c| {
            c.ringing = None;
            c.script.clear();
        })
    }

    /// True while the ring voltage is on.
    pub fn is_ringing(&self) -> bool {
        self.with_co(|c| c.ring_on()).unwrap_or(false)
    }

    /// An incoming call with caller ID sent `standard`'s way (see the module
    /// documentation), ringing with the country's cadence afterwards (or
    /// around it, Bell 202). An empty `number` sends "unavailable"; an empty
    /// `name` sends no name (FSK) — DTMF CLIP has no name.
    pub fn send_caller_id(&self, standard: Standard, number: &str, name: &str) -> Result<(), LinesimError> {
        let dtmf = match standard {
            Standard::DtmfClip => Some(callerid::dtmf_clip(number).map_err(LinesimError::BadDigit)?),
            _ => None,
        };
        self.with_co(|c| {
            if c.loop_closed {
                return Err(LinesimError::LineSeized);
            }
            c.script.clear();
            c.ringing = None;
            let w = |ms| Step::Wait(ms_frames(ms));
            match standard {
                Standard::Bell202 => {
                    let data = callerid::fsk_signal(FskStandard::Bell202, number, name, None);
                    c.ringing =
                        Some(RingRun { cadence: c.cadence, period: 0, elapsed_ms: 0, cid: Some(data), cid_wait: None });
                }
                Standard::V23 => {
                    let data = callerid::fsk_signal(FskStandard::V23, number, name, None);
                    c.script.extend([
                        Step::Polarity(Polarity::Reversed),
                        w(250),
                        Step::Play(callerid::dt_as(100, -20.0)),
                        w(100),
                        Step::Play(data),
                        w(250),
                        Step::Polarity(Polarity::Normal),
                        w(250),
                        Step::StartRing,
                    ]);
                }
                Standard::DtmfClip => {
                    c.script.extend([
                        Step::Polarity(Polarity::Reversed),
                        w(250),
                        Step::Play(dtmf.unwrap_or_default()),
                        w(250),
                        Step::Polarity(Polarity::Normal),
                        w(250),
                        Step::StartRing,
                    ]);
                }
            }
            Ok(())
        })?
    }

    /// True while the card holds the loop closed (seized, not in a break).
    pub fn is_seized(&self) -> bool {
        self.with_co(|c| c.loop_closed).unwrap_or(false)
    }

    /// Waits until the card seizes the line.
    pub fn wait_seized(&self, timeout: Duration) -> Result<(), LinesimError> {
        self.wait_co(timeout, |c| c.loop_closed.then_some(()))
    }

    /// Waits until the card has released the line (a break longer than a
    /// flash, in frame time) and the call is over.
    pub fn wait_released(&self, timeout: Duration) -> Result<(), LinesimError> {
        self.wait_co(timeout, |c| (!c.call_up).then_some(()))
    }

    /// Digits dialled by the card in this call (DTMF and pulse, in order).
    pub fn collected_digits(&self) -> String {
        self.with_co(|c| c.digits.clone()).unwrap_or_default()
    }

    /// Waits until `n` digits were collected; returns them.
    pub fn wait_digits(&self, n: usize, timeout: Duration) -> Result<String, LinesimError> {
        self.wait_co(timeout, |c| (c.digits.chars().count() >= n).then(|| c.digits.clone()))
    }

    /// Hook flashes seen in this call.
    pub fn flashes(&self) -> u32 {
        self.with_co(|c| c.flashes).unwrap_or(0)
    }

    /// Calls seen (seizures) and releases since attaching.
    pub fn seizures(&self) -> (u32, u32) {
        self.with_co(|c| (c.seizures, c.releases)).unwrap_or((0, 0))
    }

    /// The far end answers: tones stop; with `reversal` the polarity reverses.
    pub fn answer(&self, reversal: bool) -> Result<(), LinesimError> {
        self.with_co(|c| {
            c.set_tone(None);
            c.answered = true;
            if reversal {
                c.polarity = Polarity::Reversed;
            }
        })
    }

    /// The far end hangs up, signalled by `method`.
    pub fn disconnect(&self, method: Disconnect) -> Result<(), LinesimError> {
        self.with_co(|c| {
            c.answered = false;
            match method {
                Disconnect::Cpc { ms } => {
                    c.set_tone(None);
                    c.script.extend([
                        Step::Current(false),
                        Step::Wait(ms_frames(u32::from(ms)).max(1)),
                        Step::Current(true),
                    ]);
                }
                Disconnect::Reversal => {
                    c.set_tone(None);
                    c.polarity = match c.polarity {
                        Polarity::Normal => Polarity::Reversed,
                        Polarity::Reversed => Polarity::Normal,
                    };
                }
                Disconnect::BusyTone => c.set_tone(Some(c.country.busy())),
            }
        })
    }

    /// The line's polarity as the exchange applies it.
    pub fn polarity(&self) -> Polarity {
        self.with_co(|c| c.polarity).unwrap_or(Polarity::Normal)
    }

    /// Loop current present (false during a CPC interval).
    pub fn loop_current(&self) -> bool {
        self.with_co(|c| c.current).unwrap_or(true)
    }

    /// Plays a call-progress tone continuously (replaces the current one).
    pub fn play_progress(&self, plan: TonePlan) -> Result<(), LinesimError> {
        self.with_co(|c| c.set_tone(Some(plan)))
    }

    pub fn play_dial_tone(&self) -> Result<(), LinesimError> {
        self.with_co(|c| c.set_tone(Some(c.country.dial_tone())))
    }

    pub fn play_ringback(&self) -> Result<(), LinesimError> {
        self.with_co(|c| c.set_tone(Some(c.country.ringback())))
    }

    pub fn play_busy(&self) -> Result<(), LinesimError> {
        self.with_co(|c| c.set_tone(Some(c.country.busy())))
    }

    pub fn play_reorder(&self) -> Result<(), LinesimError> {
        self.with_co(|c| c.set_tone(Some(c.country.reorder())))
    }

    /// Stops the call-progress tone (not other playback).
    pub fn stop_tone(&self) -> Result<(), LinesimError> {
        self.with_co(|c| c.set_tone(None))
    }

    /// A continuous sine towards the card (the far end talking), like
    /// [`Phone::play_tone`]; added to any call-progress tone.
    pub fn play_tone(&self, freq_hz: f32, level_dbm0: f32) -> Result<(), LinesimError> {
        self.with_co(|_| ())?;
        self.phone.play_tone(freq_hz, level_dbm0);
        Ok(())
    }

    /// Sends `samples` towards the card, once or looped.
    pub fn play_samples(&self, samples: Vec<i16>, repeat: bool) -> Result<(), LinesimError> {
        self.with_co(|_| ())?;
        self.phone.play_samples(samples, repeat);
        Ok(())
    }

    /// Stops [`CentralOffice::play_tone`] / samples (not call-progress tones).
    pub fn stop_playback(&self) -> Result<(), LinesimError> {
        self.with_co(|_| ())?;
        self.phone.stop_playback();
        Ok(())
    }

    /// Line echo of what the card sends, added to what the exchange sends
    /// (see [`Phone::set_echo`]).
    pub fn set_echo(&self, path: Option<EchoPath>) -> Result<(), LinesimError> {
        self.with_co(|_| ())?;
        self.phone.set_echo(path)
    }

    /// What the exchange hears from the card for `duration` (frame time).
    pub fn record(&self, duration: Duration) -> Result<Vec<i16>, LinesimError> {
        self.with_co(|_| ())?;
        self.phone.record(duration)
    }

    /// [`CentralOffice::record`] and measure it.
    pub fn measure(&self, duration: Duration) -> Result<Measurement, LinesimError> {
        Ok(analysis::measure(&self.record(duration)?))
    }

    /// Waits for `tone` from the card (e.g. a tone the gateway plays).
    pub fn wait_for_tone(&self, tone: &TonePlan, timeout: Duration) -> Result<ToneReport, LinesimError> {
        self.with_co(|_| ())?;
        self.phone.wait_for_tone(tone, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_hal::sim::wire::{self, PortKind};

    struct Line {
        p: Port,
        reply: Vec<u8>,
    }

    impl Line {
        fn new() -> Line {
            Line { p: Port::new(PortKind::Fxo), reply: Vec::new() }
        }

        fn seize(&mut self, on: bool) {
            on_seize(&mut self.p, 1, on, &mut self.reply);
        }

        /// `n` frames of `heard`; returns the line messages with the frame
        /// number they went out in.
        fn run_with(&mut self, n: usize, heard: &[i16]) -> Vec<(u64, Message)> {
            let mut out = Vec::new();
            for i in 0..n {
                self.p.frames += 1;
                let frame = heard.get(i * FRAME..(i + 1) * FRAME).unwrap_or(&[0; FRAME]);
                on_frame(&mut self.p, 1, frame, &mut self.reply);
                let mut at = 0;
                while let Ok(Some((m, used))) = wire::decode(&self.reply[at..]) {
                    out.push((self.p.frames, m));
                    at += used;
                }
                self.reply.clear();
            }
            out
        }

        fn run(&mut self, n: usize) -> Vec<(u64, Message)> {
            self.run_with(n, &[])
        }

        fn co(&self) -> &CoLine {
            self.p.co.as_ref().unwrap()
        }
    }

    #[test]
    fn loop_breaks_are_pulses_flashes_or_a_release_in_frame_time() {
        let mut l = Line::new();
        l.seize(true);
        assert!(l.co().tone_is_dial, "dial tone on seizure");
        l.run(10);
        let pulses = |l: &mut Line, n: usize, break_frames: usize| {
            for _ in 0..n {
                l.seize(false);
                l.run(break_frames);
                l.seize(true);
                l.run(4);
            }
            l.run(30);
        };
        pulses(&mut l, 2, 6);
        assert!(!l.co().tone_is_dial, "the first pulse stops dial tone");
        pulses(&mut l, 10, 6);
        pulses(&mut l, 1, 12);
        assert_eq!(l.co().digits, "201");
        // 130 ms: a flash, not a pulse; 1 s still a flash.
        pulses(&mut l, 1, 13);
        pulses(&mut l, 1, 100);
        assert_eq!((l.co().digits.as_str(), l.co().flashes), ("201", 2));
        assert!(l.co().call_up);
        // Just over 1 s open: released, and the line is idle again.
        l.seize(false);
        l.run(101);
        assert!(!l.co().call_up);
        assert_eq!((l.co().seizures, l.co().releases), (1, 1));
        l.seize(true);
        assert_eq!(l.co().digits, "");
    }

    #[test]
    fn dtmf_digits_are_collected_while_seized_only() {
        let mut l = Line::new();
        let keys = analysis::dtmf("73", 60, 60, -10.0).unwrap();
        l.run_with(keys.len() / FRAME, &keys);
        assert_eq!(l.co().digits, "", "an idle line collects nothing");
        l.seize(true);
        l.run_with(keys.len() / FRAME, &keys);
        assert_eq!(l.co().digits, "73");
    }

    #[test]
    fn ring_cadence_is_frame_exact_and_seizing_trips_it() {
        let mut l = Line::new();
        l.p.co.as_mut().unwrap().ringing =
            Some(RingRun { cadence: cadence_of(&[200, 300]), period: 0, elapsed_ms: 0, cid: None, cid_wait: None });
        let msgs = l.run(120);
        let rings: Vec<(u64, bool)> = msgs
            .iter()
            .filter_map(|(f, m)| match m {
                Message::Ring { port: 1, on } => Some((*f, *on)),
                _ => None,
            })
            .collect();
        assert_eq!(rings, vec![(1, true), (21, false), (51, true), (71, false), (101, true)]);
        l.seize(true);
        let mut at = 0;
        let mut got = Vec::new();
        while let Ok(Some((m, used))) = wire::decode(&l.reply[at..]) {
            got.push(m);
            at += used;
        }
        assert_eq!(got, vec![Message::Ring { port: 1, on: false }], "ring trip at once");
        assert!(l.co().ringing.is_none());
        assert!(!l.co().tone_is_dial, "no dial tone when answering a ringing line");
    }

    #[test]
    fn cpc_drops_loop_current_for_the_asked_time() {
        let mut l = Line::new();
        l.seize(true);
        let co = l.p.co.as_mut().unwrap();
        co.script.extend([Step::Current(false), Step::Wait(ms_frames(600)), Step::Current(true)]);
        let msgs = l.run(100);
        let cur: Vec<(u64, &Message)> =
            msgs.iter().filter(|(_, m)| matches!(m, Message::LoopCurrent { .. })).map(|(f, m)| (*f, m)).collect();
        assert_eq!(cur.len(), 2);
        assert_eq!(cur[1].0 - cur[0].0, 60);
        assert_eq!(cur[0].1, &Message::LoopCurrent { port: 1, on: false });
    }
}
