//! DTMF (ITU-T Q.23) generation and detection to the limits of ITU-T Q.24.
//!
//! # Detector design
//!
//! The signal is cut into Hann-windowed frames of [`WINDOW`] = 102 samples (12.75 ms),
//! one evaluated every [`HOP`] = 34 samples. Only the strongest bin of each group matters,
//! so the Hann main lobe (wider than the 73-89 Hz spacing of the low group) does no harm,
//! while its low sidelobes keep a strong tone of one group out of the other group's bins.
//!
//! Each window is a *hit* for a key when all of these hold:
//! 1. **Frequency** (Q.24 section 4.2.1: operate within 1.5 %, reject beyond 3.5 %). The
//!    magnitude of a 12.75 ms bin cannot tell 1.5 % from 3.5 % (at 697 Hz that is 10 Hz
//!    against 24 Hz, a third of a bin). The detector therefore measures the frequency of
//!    the strongest tone in each group from the phase advance of its bin between two
//!    windows one hop apart (`2 pi df HOP / fs`, unambiguous up to +-78 Hz, beyond which
//!    the bin has no energy left anyway) and accepts deviations up to 2.5 %, midway
//!    between the operate and non-operate limits.
//! 2. **Level**: each tone at least [`MIN_LEVEL_DBM0`] after correcting the bin's
//!    attenuation for the measured deviation (so a 1.5 % tone is not penalised). The Q.24
//!    operate region reaches -30 dBm0 composite with 8 dB of twist (Q.24 section 4.2.2
//!    and the administrations' tables), i.e. a weaker tone at -38.6 dBm0; the floor sits
//!    3.4 dB below that, because one window's reading of such a tone in noise at 15 dB
//!    SNR scatters by 1-2 dB. (At -36 dBm0 every miss of the external Q.24 sweep was at
//!    -27/-30 dBm0 composite.) Speech is kept out by the purity, frequency and stability
//!    tests, not by the level.
//! 3. **Twist** (Q.24 section 4.2.3: normal twist 8 dB, reverse 4 dB): the *mean* twist
//!    over the hits that make a key must be within [`NORMAL_TWIST_DB`] /
//!    [`REVERSE_TWIST_DB`], midway between the operate limits and the 12 dB that must not
//!    operate. Each window alone may read up to 3 dB more: at 0 dBm0 with 8 dB of twist
//!    in noise, single windows read 10 dB and broke a run of hits.
//! 4. **Purity**: the two tones carry at least [`MIN_TONE_FRACTION`] of the window's
//!    energy, both measured through the Hann window (the tones' amplitudes from their
//!    bins, the energy as the windowed signal's). Speech and noise fail this and the
//!    frequency test; a tone that covers only part of a window fails it too, which makes
//!    the hit count a duration measurement. (Against the unwindowed energy the ratio
//!    swung by +-15 % with the beat of the two tones over the 12.75 ms window, and a
//!    single window of a -20 dBm0 key in noise fell under the threshold.)
//!
//! 5. **Stability** (talk-off, Q.24 section 4.2.6): over the hits that make a key, each
//!    tone's measured frequency stays within [`MAX_DRIFT_HZ`]; voiced speech whose
//!    harmonics happen to land on a row and a column glides with its pitch.
//!
//! A key is reported (`Start`) after [`START_HITS`] consecutive hits: a 40 ms tone always
//! produces them, a 23 ms tone never does (Q.24 section 4.2.4: operate at >= 40 ms,
//! non-operate at <= 23 ms, checked by the tests over every alignment). It ends (`End`)
//! after [`END_MISSES`] consecutive windows without it, which a 10 ms interruption cannot
//! produce but a 40 ms pause always does (Q.24 section 4.2.5).
//!
//! Cost: 8 Goertzel bins over each window, i.e. 16 multiply-adds per input sample.

use crate::goertzel::Goertzel;
use crate::osc::Osc;
use crate::{dbm0_to_peak, sat16, DBM0_PEAK, SAMPLE_RATE};

/// Low-group (row) frequencies, Hz (Q.23 Table 1).
pub const ROW_FREQS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group (column) frequencies, Hz (Q.23 Table 1).
pub const COL_FREQS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[u8; 4]; 4] = [
    [b'1', b'2', b'3', b'A'],
    [b'4', b'5', b'6', b'B'],
    [b'7', b'8', b'9', b'C'],
    [b'*', b'0', b'#', b'D'],
];

/// Analysis window in samples.
pub const WINDOW: usize = 102;
/// Samples between window evaluations.
pub const HOP: usize = 34;
/// Largest accepted frequency deviation (fraction of nominal).
pub const MAX_FREQ_DEVIATION: f32 = 0.025;
/// Lowest accepted level per tone.
pub const MIN_LEVEL_DBM0: f32 = -42.0;
/// Largest accepted low-group excess over the high group.
pub const NORMAL_TWIST_DB: f32 = 10.0;
/// Largest accepted high-group excess over the low group.
pub const REVERSE_TWIST_DB: f32 = 6.5;
/// Fraction of a window's energy the two tones must carry.
pub const MIN_TONE_FRACTION: f32 = 0.8;
/// Largest spread of a tone's measured frequency over the hits that make a key (Hz).
pub const MAX_DRIFT_HZ: f32 = 20.0;
/// Consecutive hits that make a key.
pub const START_HITS: u8 = 7;
/// Consecutive misses that end a key.
pub const END_MISSES: u8 = 6;

const QUEUE: usize = 4;

/// What the detector reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfEvent {
    /// A key went down: ASCII `b'0'..=b'9'`, `b'*'`, `b'#'`, `b'A'..=b'D'`.
    Start(u8),
    /// The key went up; the second field is the tone's measured duration in samples.
    End(u8, u32),
}

/// Map a key to its (row, column) frequencies.
pub fn digit_freqs(digit: u8) -> Option<(f32, f32)> {
    let d = digit.to_ascii_uppercase();
    for (r, row) in KEYS.iter().enumerate() {
        for (c, &k) in row.iter().enumerate() {
            if k == d {
                return Some((ROW_FREQS[r], COL_FREQS[c]));
            }
        }
    }
    None
}

const fn bank() -> [Goertzel; 8] {
    [
        Goertzel::new(ROW_FREQS[0], SAMPLE_RATE),
        Goertzel::new(ROW_FREQS[1], SAMPLE_RATE),
        Goertzel::new(ROW_FREQS[2], SAMPLE_RATE),
        Goertzel::new(ROW_FREQS[3], SAMPLE_RATE),
        Goertzel::new(COL_FREQS[0], SAMPLE_RATE),
        Goertzel::new(COL_FREQS[1], SAMPLE_RATE),
        Goertzel::new(COL_FREQS[2], SAMPLE_RATE),
        Goertzel::new(COL_FREQS[3], SAMPLE_RATE),
    ]
}

const BANK: [Goertzel; 8] = bank();

/// Hann window over the analysis window. Its sidelobes fall fast, so a strong tone of one
/// group does not leak into the other group's bins (268 Hz away at least) and bend the
/// phase the frequency measurement relies on; the rectangular window's -13 dB sidelobes
/// did, at high twist.
const fn hann() -> [f32; WINDOW] {
    let mut w = [0.0f32; WINDOW];
    let mut n = 0;
    while n < WINDOW {
        let a = 2.0 * crate::cmath::PI * (n + 1) as f64 / (WINDOW + 1) as f64;
        w[n] = (0.5 - 0.5 * crate::cmath::cos(a)) as f32;
        n += 1;
    }
    w
}

static HANN: [f32; WINDOW] = hann();
/// Sum of the window: the DFT gain for a tone on a bin centre.
const HANN_SUM: f32 = (WINDOW + 1) as f32 / 2.0;
/// Sum of the squared window: a signal of mean power P has windowed energy P times this.
const HANN_SQ_SUM: f32 = 3.0 * (WINDOW + 1) as f32 / 8.0;

/// Hann-window gain for a tone `delta` bins off centre: `sinc(d) / (1 - d^2)`.
fn hann_gain(delta: f32) -> f32 {
    let d = libm::fabsf(delta);
    if d < 1e-4 {
        return 1.0;
    }
    if libm::fabsf(d - 1.0) < 1e-4 {
        return 0.5;
    }
    let x = core::f32::consts::PI * d;
    libm::fabsf(libm::sinf(x) / x / (1.0 - d * d))
}

/// Streaming DTMF receiver for one channel.
#[derive(Clone, Debug)]
pub struct DtmfDetector {
    ring: [i16; WINDOW],
    wr: usize,
    filled: usize,
    since_eval: usize,
    /// Samples fed since reset (wrapping): the detector's clock.
    clock: u32,
    prev: [(f32, f32); 8],
    prev_ok: bool,
    run_digit: u8,
    run_len: u8,
    run_first_mid: u32,
    /// Measured deviation (Hz) of the last hit's tones, and the run's (min, max) of each.
    hit_df: (f32, f32),
    run_df: [f32; 4],
    /// Twist (low minus high group, dB) of the last hit, and its sum over the run.
    hit_twist: f32,
    run_twist: f32,
    current: u8,
    current_first_mid: u32,
    last_hit_mid: u32,
    misses: u8,
    queue: [DtmfEvent; QUEUE],
    q_head: usize,
    q_len: usize,
    dropped: u32,
}

impl Default for DtmfDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl DtmfDetector {
    /// A detector in its idle state.
    pub const fn new() -> Self {
        DtmfDetector {
            ring: [0; WINDOW],
            wr: 0,
            filled: 0,
            since_eval: 0,
            clock: 0,
            prev: [(0.0, 0.0); 8],
            prev_ok: false,
            run_digit: 0,
            run_len: 0,
            run_first_mid: 0,
            hit_df: (0.0, 0.0),
            run_df: [0.0; 4],
            hit_twist: 0.0,
            run_twist: 0.0,
            current: 0,
            current_first_mid: 0,
            last_hit_mid: 0,
            misses: 0,
            queue: [DtmfEvent::Start(0); QUEUE],
            q_head: 0,
            q_len: 0,
            dropped: 0,
        }
    }

    /// Forget everything (a key in progress is dropped without an `End`).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The key currently held down, if any.
    pub fn current(&self) -> Option<u8> {
        (self.current != 0).then_some(self.current)
    }

    /// Events lost because the caller did not drain them (should stay 0).
    pub fn dropped_events(&self) -> u32 {
        self.dropped
    }

    /// Feed any number of samples (normally one 80-sample frame). Returns at most one event
    /// per call (if two happen inside one call, the second is returned on the next call,
    /// even with an empty slice).
    pub fn process(&mut self, samples: &[i16]) -> Option<DtmfEvent> {
        for &s in samples {
            self.ring[self.wr] = s;
            self.wr = if self.wr + 1 == WINDOW { 0 } else { self.wr + 1 };
            self.clock = self.clock.wrapping_add(1);
            if self.filled < WINDOW {
                self.filled += 1;
            }
            self.since_eval += 1;
            if self.filled == WINDOW && self.since_eval >= HOP {
                self.since_eval = 0;
                let hit = self.evaluate();
                self.track(hit);
            }
        }
        self.pop()
    }

    fn push(&mut self, ev: DtmfEvent) {
        if self.q_len == QUEUE {
            self.dropped = self.dropped.wrapping_add(1);
            return;
        }
        self.queue[(self.q_head + self.q_len) % QUEUE] = ev;
        self.q_len += 1;
    }

    fn pop(&mut self) -> Option<DtmfEvent> {
        if self.q_len == 0 {
            return None;
        }
        let ev = self.queue[self.q_head];
        self.q_head = (self.q_head + 1) % QUEUE;
        self.q_len -= 1;
        Some(ev)
    }

    /// The current run makes a key: long enough, and its mean twist inside the limits
    /// (module docs, 3).
    fn run_confirmed(&self) -> bool {
        if self.run_digit == 0 || self.run_len < START_HITS {
            return false;
        }
        let twist = self.run_twist / self.run_len as f32;
        (-REVERSE_TWIST_DB..=NORMAL_TWIST_DB).contains(&twist)
    }

    /// Run the hit/miss sequence through the duration rules (module docs).
    fn track(&mut self, hit: Option<u8>) {
        let mid = self.clock.wrapping_sub((WINDOW / 2) as u32);
        // Frequency stability: a key's tones hold their frequency; speech harmonics that
        // happen to sit on a row and a column glide with the pitch. A run whose measured
        // frequencies spread by more than MAX_DRIFT_HZ starts over.
        let (dr, dc) = self.hit_df;
        let stable = |lo: f32, hi: f32, v: f32| v.max(hi) - v.min(lo) <= MAX_DRIFT_HZ;
        match hit {
            // The first hit of a run is usually a window the tone only partly fills, whose
            // frequency reading is biased: the spread is measured from the second on.
            Some(d) if d == self.run_digit && self.run_len == 1 => {
                self.run_len = 2;
                self.run_df = [dr, dr, dc, dc];
                self.run_twist += self.hit_twist;
            }
            Some(d)
                if d == self.run_digit
                    && stable(self.run_df[0], self.run_df[1], dr)
                    && stable(self.run_df[2], self.run_df[3], dc) =>
            {
                self.run_len = self.run_len.saturating_add(1);
                self.run_df = [self.run_df[0].min(dr), self.run_df[1].max(dr), self.run_df[2].min(dc), self.run_df[3].max(dc)];
                self.run_twist += self.hit_twist;
            }
            Some(d) => {
                self.run_digit = d;
                self.run_len = 1;
                self.run_first_mid = mid;
                self.run_df = [dr, dr, dc, dc];
                self.run_twist = self.hit_twist;
            }
            None => {
                self.run_digit = 0;
                self.run_len = 0;
            }
        }
        if self.current != 0 {
            if hit == Some(self.current) {
                self.misses = 0;
                self.last_hit_mid = mid;
                return;
            }
            self.misses = self.misses.saturating_add(1);
            let other_confirmed = self.run_confirmed();
            if self.misses >= END_MISSES || other_confirmed {
                let span = self.last_hit_mid.wrapping_sub(self.current_first_mid);
                self.push(DtmfEvent::End(self.current, span + DURATION_BIAS));
                self.current = 0;
            }
        }
        if self.current == 0 && self.run_confirmed() {
            self.current = self.run_digit;
            self.current_first_mid = self.run_first_mid;
            self.last_hit_mid = mid;
            self.misses = 0;
            self.push(DtmfEvent::Start(self.current));
        }
    }

    /// Evaluate the window ending at the newest sample. Returns the key it holds, if any.
    fn evaluate(&mut self) -> Option<u8> {
        let mut g = BANK;
        let mut energy = 0.0f32;
        let (older, newer) = self.ring.split_at(self.wr);
        for (&s, &w) in newer.iter().chain(older.iter()).zip(HANN.iter()) {
            let x = s as f32;
            let xw = x * w;
            energy += xw * xw;
            for b in g.iter_mut() {
                b.update(xw);
            }
        }
        let mut y = [(0.0f32, 0.0f32); 8];
        for (o, b) in y.iter_mut().zip(g.iter()) {
            *o = b.dft_unrotated();
        }
        let prev = core::mem::replace(&mut self.prev, y);
        let prev_ok = core::mem::replace(&mut self.prev_ok, true);
        if !prev_ok || energy < 1.0 {
            return None;
        }
        let best = |range: core::ops::Range<usize>| {
            let mut b = range.start;
            for i in range {
                if g[i].power() > g[b].power() {
                    b = i;
                }
            }
            b
        };
        let r = best(0..4);
        let c = best(4..8);
        let freq = |i: usize| if i < 4 { ROW_FREQS[i] } else { COL_FREQS[i - 4] };
        // Measured deviation and corrected amplitude of bin i.
        let measure = |i: usize| -> Option<(f32, f32)> {
            let (yr, yi) = y[i];
            let (pr, pi) = prev[i];
            let re = yr * pr + yi * pi;
            let im = yi * pr - yr * pi;
            let advance = libm::atan2f(im, re);
            let f0 = freq(i);
            let expected = core::f32::consts::TAU * f0 * HOP as f32 / SAMPLE_RATE;
            let dev_phase = wrap_pi(advance - expected);
            let df = dev_phase * SAMPLE_RATE / (core::f32::consts::TAU * HOP as f32);
            if libm::fabsf(df) > MAX_FREQ_DEVIATION * f0 {
                return None;
            }
            let gain = hann_gain(df * WINDOW as f32 / SAMPLE_RATE);
            Some((2.0 * libm::sqrtf(g[i].power().max(0.0)) / HANN_SUM / gain, df))
        };
        let (ar, dfr) = measure(r)?;
        let (ac, dfc) = measure(c)?;
        let min_amp = DBM0_PEAK * MIN_LEVEL_AMP_RATIO;
        if ar < min_amp || ac < min_amp {
            return None;
        }
        if ar > ac * WINDOW_NORMAL_TWIST_RATIO || ac > ar * WINDOW_REVERSE_TWIST_RATIO {
            return None;
        }
        let tone_power = 0.5 * (ar * ar + ac * ac);
        let mean_power = energy / HANN_SQ_SUM;
        if tone_power < MIN_TONE_FRACTION * mean_power {
            return None;
        }
        self.hit_df = (dfr, dfc);
        self.hit_twist = 20.0 * libm::log10f(ar / ac);
        Some(KEYS[r][c - 4])
    }
}

/// Added to the span between the first and last hit-window centres to estimate the
/// tone's duration (a window is a hit while the tone fills most of it).
const DURATION_BIAS: u32 = 90;
// 10^(x/20) for the limits above, precomputed because powf is not const.
const MIN_LEVEL_AMP_RATIO: f32 = 0.007_943_282; // -42 dB
/// Per window, 3 dB beyond the run's limits: one window's twist reading scatters by
/// 1-2 dB at the weakest levels (15 dB SNR), the run's mean by a fraction of that.
const WINDOW_NORMAL_TWIST_RATIO: f32 = 4.466_836; // 13 dB
const WINDOW_REVERSE_TWIST_RATIO: f32 = 2.985_383; // 9.5 dB

fn wrap_pi(x: f32) -> f32 {
    use core::f32::consts::{PI, TAU};
    let mut y = x;
    while y > PI {
        y -= TAU;
    }
    while y < -PI {
        y += TAU;
    }
    y
}

/// Generates one DTMF key: `on_ms` of the two tones followed by `off_ms` of silence.
#[derive(Clone, Debug)]
pub struct DtmfGenerator {
    low: Osc,
    high: Osc,
    on: u32,
    total: u32,
    pos: u32,
}

impl DtmfGenerator {
    /// level per tone in dBm0 (e.g. -7.0); on/off durations in ms.
    /// `None` for a byte that is not a DTMF key.
    pub fn new(digit: u8, level_dbm0: f32, on_ms: u32, off_ms: u32) -> Option<Self> {
        Self::with_levels(digit, level_dbm0, level_dbm0, on_ms, off_ms)
    }

    /// Like [`DtmfGenerator::new`] with separate low- and high-group levels (pre-emphasis
    /// or twist, e.g. -8 / -6 dBm0 per Q.23 practice in some networks).
    pub fn with_levels(digit: u8, low_dbm0: f32, high_dbm0: f32, on_ms: u32, off_ms: u32) -> Option<Self> {
        let (fl, fh) = digit_freqs(digit)?;
        let on = on_ms.saturating_mul(8);
        Some(DtmfGenerator {
            low: Osc::new(fl, dbm0_to_peak(low_dbm0)),
            high: Osc::new(fh, dbm0_to_peak(high_dbm0)),
            on,
            total: on.saturating_add(off_ms.saturating_mul(8)),
            pos: 0,
        })
    }

    /// Fills `out`; returns false once the digit (on + off) is complete (rest of `out` is
    /// zero). Returns true while more samples remain after this call.
    pub fn fill(&mut self, out: &mut [i16]) -> bool {
        for o in out.iter_mut() {
            *o = if self.pos < self.on {
                sat16(self.low.next() + self.high.next())
            } else {
                0
            };
            if self.pos < self.total {
                self.pos += 1;
            }
        }
        self.pos < self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::vec::Vec;

    const DIGITS: &[u8] = b"123A456B789C*0#D";

    /// Independent test signal: two sines from std, not the crate's oscillator.
    fn tone(fl: f64, dl: f64, fh: f64, dh: f64, ms: f64, ph: f64) -> Vec<f64> {
        let n = (ms * 8.0).round() as usize;
        let al = 22826.0 * 10f64.powf(dl / 20.0);
        let ah = 22826.0 * 10f64.powf(dh / 20.0);
        (0..n)
            .map(|i| {
                let t = i as f64 / 8000.0;
                al * (2.0 * PI * fl * t + ph).sin() + ah * (2.0 * PI * fh * t + 2.0 * ph).sin()
            })
            .collect()
    }

    fn silence(ms: f64) -> Vec<f64> {
        std::vec![0.0; (ms * 8.0).round() as usize]
    }

    /// Deterministic Gaussian noise (xorshift + Box-Muller) at `dbm0` mean power.
    struct Noise(u64);
    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn add(&mut self, x: &mut [f64], dbm0: f64) {
            // 0 dBm0 sine has mean power 22826^2/2.
            let sigma = 22826.0 / 2f64.sqrt() * 10f64.powf(dbm0 / 20.0);
            for v in x.iter_mut() {
                let (u1, u2) = (self.uniform(), self.uniform());
                *v += sigma * (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos();
            }
        }
    }

    fn to_i16(x: &[f64]) -> Vec<i16> {
        x.iter().map(|v| v.round().clamp(-32768.0, 32767.0) as i16).collect()
    }

    /// Feed in 80-sample frames, then drain; collect every event.
    fn run(det: &mut DtmfDetector, x: &[i16]) -> Vec<DtmfEvent> {
        let mut evs = Vec::new();
        for f in x.chunks(80) {
            if let Some(e) = det.process(f) {
                evs.push(e);
            }
        }
        while let Some(e) = det.process(&[]) {
            evs.push(e);
        }
        evs
    }

    fn keys(evs: &[DtmfEvent]) -> Vec<u8> {
        evs.iter()
            .filter_map(|e| if let DtmfEvent::Start(d) = e { Some(*d) } else { None })
            .collect()
    }

    fn detect_one(sig: Vec<f64>, lead_ms: f64) -> Vec<DtmfEvent> {
        let mut x = silence(lead_ms);
        x.extend(sig);
        x.extend(silence(100.0));
        run(&mut DtmfDetector::new(), &to_i16(&x))
    }

    #[test]
    fn all_sixteen_keys() {
        let mut x = silence(20.0);
        for &d in DIGITS {
            let (fl, fh) = digit_freqs(d).unwrap();
            x.extend(tone(fl as f64, -7.0, fh as f64, -7.0, 50.0, 0.0));
            x.extend(silence(50.0));
        }
        let evs = run(&mut DtmfDetector::new(), &to_i16(&x));
        assert_eq!(keys(&evs), DIGITS.to_vec());
        assert_eq!(evs.len(), 32, "{evs:?}");
        for pair in evs.chunks(2) {
            match pair {
                [DtmfEvent::Start(a), DtmfEvent::End(b, dur)] => {
                    assert_eq!(a, b);
                    assert!((*dur as i32 - 400).abs() <= 40, "duration {dur}");
                }
                _ => panic!("bad pairing {pair:?}"),
            }
        }
    }

    #[test]
    fn levels_and_twist_inside_q24_operate_region() {
        // Q.24: per-tone levels over the operate range, normal twist up to 8 dB (low group
        // louder), reverse twist up to 4 dB (high group louder).
        for &d in DIGITS {
            let (fl, fh) = digit_freqs(d).unwrap();
            for low in [-5.0, -10.0, -15.0, -20.0, -25.0] {
                for twist in [-4.0, -2.0, 0.0, 4.0, 8.0] {
                    let high = low - twist;
                    if !(-25.0..=-5.0).contains(&high) {
                        continue;
                    }
                    let evs = detect_one(tone(fl as f64, low, fh as f64, high, 45.0, 0.7), 13.0);
                    assert_eq!(keys(&evs), std::vec![d], "key {} low {low} high {high}", d as char);
                }
            }
        }
    }

    /// The weak corner of the Q.24 operate region (issue 12): composite -27 and -30 dBm0
    /// with 8 dB normal and 4 dB reverse twist (the weaker tone at -38.6 dBm0), white
    /// noise 15 dB under the composite, 40 ms, every key, several alignments.
    #[test]
    fn weakest_operate_levels_with_twist_in_noise() {
        let mut n = Noise(0x5eed_0000_1234_5678);
        for &d in DIGITS {
            let (fl, fh) = digit_freqs(d).unwrap();
            for comp in [-27.0f64, -30.0] {
                for twist in [-8.0f64, 4.0] {
                    // twist = high minus low.
                    let low = comp - 10.0 * (1.0 + 10f64.powf(twist / 10.0)).log10();
                    for lead in [10.0, 14.25, 18.5] {
                        let mut x = silence(lead);
                        x.extend(tone(fl as f64, low, fh as f64, low + twist, 40.0, 0.4));
                        x.extend(silence(100.0));
                        n.add(&mut x, comp - 15.0);
                        let evs = run(&mut DtmfDetector::new(), &to_i16(&x));
                        assert_eq!(keys(&evs), std::vec![d], "key {} composite {comp} twist {twist} lead {lead}", d as char);
                    }
                }
            }
        }
    }

    /// 12 dB of twist either way does not operate, at any level of the operate region.
    #[test]
    fn twelve_db_twist_rejected_at_every_level() {
        let mut n = Noise(0x0bad_cafe_f00d_0001);
        for &d in b"15*D" {
            let (fl, fh) = digit_freqs(d).unwrap();
            for comp in [0.0f64, -10.0, -20.0, -30.0] {
                for twist in [-12.0f64, 12.0] {
                    let low = comp - 10.0 * (1.0 + 10f64.powf(twist / 10.0)).log10();
                    let mut x = silence(10.0);
                    x.extend(tone(fl as f64, low, fh as f64, low + twist, 80.0, 0.0));
                    x.extend(silence(100.0));
                    n.add(&mut x, comp - 15.0);
                    let evs = run(&mut DtmfDetector::new(), &to_i16(&x));
                    assert!(keys(&evs).is_empty(), "key {} composite {comp} twist {twist}: {evs:?}", d as char);
                }
            }
        }
    }

    #[test]
    fn twist_far_outside_limits_rejected() {
        let evs = detect_one(tone(697.0, -5.0, 1209.0, -20.0, 60.0, 0.0), 10.0);
        assert!(keys(&evs).is_empty(), "15 dB normal twist: {evs:?}");
        let evs = detect_one(tone(697.0, -20.0, 1209.0, -8.0, 60.0, 0.0), 10.0);
        assert!(keys(&evs).is_empty(), "12 dB reverse twist: {evs:?}");
    }

    #[test]
    fn duration_40ms_operates_and_23ms_does_not_at_every_alignment() {
        for lead in 0..HOP {
            let lead_ms = 10.0 + lead as f64 / 8.0;
            for &d in b"1D" {
                let (fl, fh) = digit_freqs(d).unwrap();
                let evs = detect_one(tone(fl as f64, -10.0, fh as f64, -10.0, 40.0, 0.3), lead_ms);
                assert_eq!(keys(&evs), std::vec![d], "40 ms lead {lead}");
                let evs = detect_one(tone(fl as f64, -10.0, fh as f64, -10.0, 23.0, 0.3), lead_ms);
                assert!(keys(&evs).is_empty(), "23 ms lead {lead}: {evs:?}");
                let evs = detect_one(tone(fl as f64, -10.0, fh as f64, -10.0, 20.0, 0.3), lead_ms);
                assert!(keys(&evs).is_empty(), "20 ms lead {lead}: {evs:?}");
            }
        }
    }

    #[test]
    fn frequency_deviation_operate_and_reject() {
        for &d in DIGITS {
            let (fl, fh) = digit_freqs(d).unwrap();
            for (dl, dh) in [(1.015, 1.015), (0.985, 0.985), (1.015, 0.985), (0.985, 1.015)] {
                let evs = detect_one(tone(fl as f64 * dl, -10.0, fh as f64 * dh, -10.0, 50.0, 0.0), 7.0);
                assert_eq!(keys(&evs), std::vec![d], "key {} at {dl}/{dh}", d as char);
            }
            for (dl, dh) in [(1.035, 1.0), (0.965, 1.0), (1.0, 1.035), (1.0, 0.965)] {
                let evs = detect_one(tone(fl as f64 * dl, -10.0, fh as f64 * dh, -10.0, 80.0, 0.0), 7.0);
                assert!(keys(&evs).is_empty(), "key {} at {dl}/{dh}: {evs:?}", d as char);
            }
        }
    }

    #[test]
    fn noise_alone_never_detects_and_tones_in_noise_do() {
        let mut n = Noise(0x1234_5678_9abc_def1);
        let mut x = silence(60_000.0);
        n.add(&mut x, -20.0);
        let evs = run(&mut DtmfDetector::new(), &to_i16(&x));
        assert!(evs.is_empty(), "{evs:?}");
        // -10 dBm0 per tone (-7 dBm0 pair) over -27 dBm0 noise: 20 dB SNR.
        let mut x = silence(20.0);
        for &d in DIGITS {
            let (fl, fh) = digit_freqs(d).unwrap();
            x.extend(tone(fl as f64, -10.0, fh as f64, -10.0, 45.0, 0.0));
            x.extend(silence(45.0));
        }
        n.add(&mut x, -27.0);
        let evs = run(&mut DtmfDetector::new(), &to_i16(&x));
        assert_eq!(keys(&evs), DIGITS.to_vec());
    }

    #[test]
    fn ten_ms_break_does_not_split_and_forty_ms_pause_does() {
        let t = |ms| tone(852.0, -10.0, 1477.0, -10.0, ms, 0.0);
        let mut x = t(60.0);
        x.extend(silence(10.0));
        x.extend(t(60.0));
        let evs = detect_one(x, 10.0);
        assert_eq!(keys(&evs), b"9".to_vec(), "{evs:?}");
        let mut x = t(45.0);
        x.extend(silence(40.0));
        x.extend(t(45.0));
        let evs = detect_one(x, 10.0);
        assert_eq!(keys(&evs), b"99".to_vec(), "{evs:?}");
    }

    #[test]
    fn key_change_without_pause_ends_the_first() {
        let mut x = tone(697.0, -10.0, 1209.0, -10.0, 60.0, 0.0);
        x.extend(tone(941.0, -10.0, 1633.0, -10.0, 60.0, 0.0));
        let evs = detect_one(x, 10.0);
        assert!(matches!(evs[..], [DtmfEvent::Start(b'1'), DtmfEvent::End(b'1', _), DtmfEvent::Start(b'D'), DtmfEvent::End(b'D', _)]), "{evs:?}");
    }

    #[test]
    fn second_event_of_one_call_comes_with_the_next_call() {
        let mut x = tone(697.0, -10.0, 1209.0, -10.0, 60.0, 0.0);
        x.extend(tone(941.0, -10.0, 1633.0, -10.0, 60.0, 0.0));
        let x = to_i16(&x);
        let mut det = DtmfDetector::new();
        let mut evs = Vec::new();
        // One big call: End('1') and Start('D') both happen inside it.
        if let Some(e) = det.process(&x) {
            evs.push(e);
        }
        while let Some(e) = det.process(&[]) {
            evs.push(e);
        }
        assert_eq!(keys(&evs), b"1D".to_vec(), "{evs:?}");
        assert_eq!(det.dropped_events(), 0);
    }

    #[test]
    fn generator_round_trip_and_duration() {
        for &d in DIGITS {
            let mut g = DtmfGenerator::new(d, -7.0, 100, 60).unwrap();
            let mut x = std::vec![0i16; 160];
            let mut frame = [0i16; 80];
            let mut frames = 0;
            while g.fill(&mut frame) {
                x.extend_from_slice(&frame);
                frames += 1;
            }
            x.extend_from_slice(&frame);
            assert_eq!(frames, 15, "160 ms = 16 frames, the last one reports completion");
            let evs = run(&mut DtmfDetector::new(), &x);
            assert_eq!(evs.len(), 2, "{evs:?}");
            assert_eq!(evs[0], DtmfEvent::Start(d));
            match evs[1] {
                DtmfEvent::End(k, dur) => {
                    assert_eq!(k, d);
                    assert!((dur as i32 - 800).abs() <= 40, "{dur}");
                }
                e => panic!("{e:?}"),
            }
        }
        assert!(DtmfGenerator::new(b'x', -7.0, 100, 100).is_none());
    }

    #[test]
    fn generator_level_and_tail() {
        let mut g = DtmfGenerator::new(b'5', -7.0, 50, 50).unwrap();
        let mut x = [0i16; 1000];
        assert!(!g.fill(&mut x));
        assert!(x[800..].iter().all(|&s| s == 0));
        assert!(x[400..].iter().all(|&s| s == 0));
        // Independent level check: mean power of the on part = two -7 dBm0 tones.
        let p: f64 = x[..400].iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / 400.0;
        let expect = 2.0 * (22826.0f64 * 10f64.powf(-7.0 / 20.0)).powi(2) / 2.0;
        assert!((10.0 * (p / expect).log10()).abs() < 0.2, "{p} vs {expect}");
    }

    /// Talk-off (Q.24 section 4.2.6): speech must not produce digits. Three talkers, two
    /// levels, 40 s each (the benchmark runs 10 minutes).
    #[test]
    fn no_talk_off_on_speech() {
        for seed in [11u64, 12, 13] {
            for level in [-10.0, -25.0] {
                let mut src = crate::testsig::SpeechLike::new(seed, level);
                let mut det = DtmfDetector::new();
                let mut frame = [0i16; 80];
                for _ in 0..4000 {
                    src.fill(&mut frame);
                    if let Some(e) = det.process(&frame) {
                        panic!("talk-off: {e:?} from talker {seed} at {level} dBm0");
                    }
                }
            }
        }
    }

    /// Talk-off on (synthetic) recorded speech, `testdata/speech_en_*.ulaw`: 81 s of two
    /// talkers at three levels.
    #[test]
    fn no_talk_off_on_recorded_speech() {
        for file in [&include_bytes!("../testdata/speech_en_m.ulaw")[..], &include_bytes!("../testdata/speech_en_f.ulaw")[..]] {
            let pcm: Vec<i16> = file.iter().map(|&b| crate::g711::decode(crate::g711::Law::Ulaw, b)).collect();
            for gain in [1.0f32, 0.3, 0.1] {
                let x: Vec<i16> = pcm.iter().map(|&v| (v as f32 * gain) as i16).collect();
                let evs = run(&mut DtmfDetector::new(), &x);
                assert!(evs.is_empty(), "gain {gain}: {evs:?}");
            }
        }
    }
}
