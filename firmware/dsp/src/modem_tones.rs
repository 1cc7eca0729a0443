//! Fax and modem tone detection: CNG (1100 Hz), ANS/CED (2100 Hz), ANS with phase
//! reversals (/ANS), ANSam and /ANSam (ITU-T V.25, V.8 section 5.2.2, T.30 section 5.3.1,
//! G.164 section 5, G.165 section 3.4 / G.168 section 9).
//!
//! # Method
//! Each tone is demodulated to baseband: the input is multiplied by a unit phasor rotating
//! at `-f0` (tabulated: both tones are multiples of 100 Hz) and summed over blocks of [`BLOCK`] = 40 samples (5 ms). A tone near `f0`
//! gives block values `z_k` of steady magnitude whose phase drifts by `2 pi df * 5 ms`
//! per block; noise and speech give magnitudes that do not carry most of the block energy.
//!
//! - **Presence**: the tone carries at least [`MIN_TONE_FRACTION`] of the block energy,
//!   its level is at least [`MIN_LEVEL_DBM0`], and its measured frequency (from the phase
//!   drift) is within +-[`MAX_DEVIATION_HZ`] (V.25: 2100 +-15 Hz; G.164 detection band).
//! - **Phase reversal** (V.25 section 5.2: 180 deg +-25 deg every 450 +-25 ms): the phase
//!   of `z_k` against `z_{k-2}` (skipping the block that straddles the reversal),
//!   corrected for the drift, jumps by more than 90 degrees. Two reversals 450 ms apart are
//!   not required: one clean reversal while the tone is present is enough to report /ANS,
//!   which is what disables an echo canceller (G.165 section 3.4.2).
//! - **ANSam** (V.8 5.2.2: 15 +-0.1 Hz sine amplitude modulation at 20 +-1 %): the
//!   magnitudes `|z_k|` (sampled at 200 Hz) pass through a 15 Hz Goertzel over 40 blocks
//!   (200 ms, three modulation periods); a modulation index above 10 % marks ANSam.
//! - **CNG** (T.30 5.3.1: 1100 Hz, 0.5 s on, 3 s off) is reported after 350 ms of tone.
//!
//! Per sample cost: one complex multiply-add per tone (table phasors).

use crate::{DBM0_PEAK, SAMPLE_RATE};

/// Samples per baseband block (5 ms).
pub const BLOCK: usize = 40;
/// Fraction of a block's energy the tone must carry.
pub const MIN_TONE_FRACTION: f32 = 0.6;
/// Lowest tone level detected.
pub const MIN_LEVEL_DBM0: f32 = -40.0;
/// Largest frequency deviation accepted.
pub const MAX_DEVIATION_HZ: f32 = 21.0;

/// ANS must be present this long (in blocks) before it is reported: 200 ms.
const ANS_BLOCKS: u32 = 40;
/// CNG: 350 ms.
const CNG_BLOCKS: u32 = 70;
/// A tone ends after this many blocks without it (50 ms; rides over reversal transients).
const END_BLOCKS: u32 = 10;
const AM_WINDOW: usize = 40;
const MIN_LEVEL_AMP: f32 = DBM0_PEAK * 0.01; // -40 dB

/// A recognised tone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModemTone {
    /// Calling tone of a fax terminal, 1100 Hz.
    Cng,
    /// 2100 Hz answer tone without phase reversals (CED, V.25 ANS).
    Ans,
    /// 2100 Hz with phase reversals (V.25 /ANS): disables echo cancellers (G.165).
    AnsPhaseReversal,
    /// 2100 Hz amplitude-modulated at 15 Hz (V.8 ANSam).
    AnsAm,
    /// ANSam with phase reversals (V.8 /ANSam).
    AnsAmPhaseReversal,
}

impl ModemTone {
    /// True for the tones that must disable an echo canceller (G.165 3.4: 2100 Hz with
    /// phase reversals).
    pub fn disables_echo_canceller(self) -> bool {
        matches!(self, ModemTone::AnsPhaseReversal | ModemTone::AnsAmPhaseReversal)
    }
}

/// What the detector reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModemToneEvent {
    /// A tone was recognised, or an already reported 2100 Hz tone was recognised as a
    /// more specific one (ANS -> /ANS, ANSam -> /ANSam).
    Detected(ModemTone),
    /// The tone last reported stopped.
    Ended(ModemTone),
}

/// Both tones sit on exact multiples of 100 Hz = 8000/80, so their baseband phasors repeat
/// every 80 samples: tables instead of a recursive oscillator (no drift, no renormalising,
/// no serial dependency between samples).
const PERIOD: usize = 80;

const fn phasor_table(freq: f64) -> [(f32, f32); PERIOD] {
    let mut t = [(0.0f32, 0.0f32); PERIOD];
    let mut n = 0;
    while n < PERIOD {
        let w = -2.0 * crate::cmath::PI * freq * n as f64 / SAMPLE_RATE as f64;
        t[n] = (crate::cmath::cos(w) as f32, crate::cmath::sin(w) as f32);
        n += 1;
    }
    t
}

static PHASOR_2100: [(f32, f32); PERIOD] = phasor_table(2100.0);
static PHASOR_1100: [(f32, f32); PERIOD] = phasor_table(1100.0);

/// Baseband demodulator and presence tracker for one frequency.
#[derive(Clone, Debug)]
struct ToneTrack {
    acc: (f32, f32),
    /// Last three block values, newest first.
    z: [(f32, f32); 3],
    present_blocks: u32,
    absent_blocks: u32,
    reversal: bool,
    drift: f32,
}

impl ToneTrack {
    const fn new() -> Self {
        ToneTrack {
            acc: (0.0, 0.0),
            z: [(0.0, 0.0); 3],
            present_blocks: 0,
            absent_blocks: 0,
            reversal: false,
            drift: 0.0,
        }
    }

    /// Mix a block (at most one table period) down to baseband; `phase` is the table index
    /// of the first sample.
    #[inline]
    fn mix(&mut self, xs: &[f32; BLOCK], table: &[(f32, f32); PERIOD], phase: usize) {
        // Blocks start at phase 0 or 40 of the 80-sample period: one contiguous slice.
        let t = &table[phase..phase + BLOCK];
        let (mut re, mut im) = self.acc;
        for (&x, &(c, s)) in xs.iter().zip(t.iter()) {
            re += x * c;
            im += x * s;
        }
        self.acc = (re, im);
    }

    /// Close a block: returns (present, magnitude of z as a peak amplitude).
    fn end_block(&mut self, energy: f32) -> (bool, f32) {
        let z = core::mem::replace(&mut self.acc, (0.0, 0.0));
        self.z = [z, self.z[0], self.z[1]];
        let p = z.0 * z.0 + z.1 * z.1;
        let amp = 2.0 * libm::sqrtf(p) / BLOCK as f32;
        // Tone power amp^2/2 against the block's mean power.
        let fraction = if energy > 0.0 { 0.5 * amp * amp / (energy / BLOCK as f32) } else { 0.0 };
        let strong = fraction >= MIN_TONE_FRACTION && amp >= MIN_LEVEL_AMP;
        // Phase drift between consecutive blocks gives the frequency.
        let adv = phase_between(self.z[1], self.z[0]);
        let df = adv * SAMPLE_RATE / (core::f32::consts::TAU * BLOCK as f32);
        let in_band = libm::fabsf(df) <= MAX_DEVIATION_HZ;
        // Reversal: z_k against z_{k-2}, drift-corrected.
        if self.present_blocks > 4 {
            let jump = wrap_pi(phase_between(self.z[2], self.z[0]) - 2.0 * self.drift);
            if libm::fabsf(jump) > core::f32::consts::FRAC_PI_2 {
                self.reversal = true;
            }
        }
        let present = strong && (in_band || self.present_blocks > 0 && self.absent_blocks == 0);
        if present && in_band {
            self.drift = if self.present_blocks == 0 { adv } else { 0.8 * self.drift + 0.2 * adv };
        }
        (present, amp)
    }
}

fn phase_between(a: (f32, f32), b: (f32, f32)) -> f32 {
    // arg(b * conj(a))
    libm::atan2f(b.1 * a.0 - b.0 * a.1, b.0 * a.0 + b.1 * a.1)
}

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

/// Detects CNG, ANS, /ANS, ANSam and /ANSam in one direction of one channel.
#[derive(Clone, Debug)]
pub struct ModemToneDetector {
    ans: ToneTrack,
    cng: ToneTrack,
    /// Table index of the next sample.
    phase: usize,
    buf: [f32; BLOCK],
    n: usize,
    energy: f32,
    env: [f32; AM_WINDOW],
    env_len: usize,
    env_pos: usize,
    am: bool,
    reported_ans: Option<ModemTone>,
    reported_cng: bool,
    pending: [Option<ModemToneEvent>; 2],
    cng_enabled: bool,
}

impl Default for ModemToneDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl ModemToneDetector {
    pub const fn new() -> Self {
        ModemToneDetector {
            ans: ToneTrack::new(),
            cng: ToneTrack::new(),
            phase: 0,
            buf: [0.0; BLOCK],
            n: 0,
            energy: 0.0,
            env: [0.0; AM_WINDOW],
            env_len: 0,
            env_pos: 0,
            am: false,
            reported_ans: None,
            reported_cng: false,
            pending: [None; 2],
            cng_enabled: true,
        }
    }

    /// A detector for the 2100 Hz family only (what an echo canceller needs; half the cost).
    pub const fn answer_tone_only() -> Self {
        let mut d = Self::new();
        d.cng_enabled = false;
        d
    }

    pub fn reset(&mut self) {
        let cng = self.cng_enabled;
        *self = Self::new();
        self.cng_enabled = cng;
    }

    /// The 2100 Hz tone currently present and reported, if any.
    pub fn answer_tone(&self) -> Option<ModemTone> {
        self.reported_ans
    }

    /// True while a 2100 Hz tone of any kind is present (reported or not yet).
    pub fn tone_2100_present(&self) -> bool {
        self.ans.present_blocks > 0 && self.ans.absent_blocks == 0
    }

    /// Feed samples; returns at most one event per call (the rest come with later calls,
    /// even with an empty slice).
    pub fn process(&mut self, samples: &[i16]) -> Option<ModemToneEvent> {
        for &s in samples {
            let x = s as f32;
            self.energy += x * x;
            self.buf[self.n] = x;
            self.n += 1;
            if self.n == BLOCK {
                self.n = 0;
                let buf = self.buf;
                self.ans.mix(&buf, &PHASOR_2100, self.phase);
                if self.cng_enabled {
                    self.cng.mix(&buf, &PHASOR_1100, self.phase);
                }
                self.phase = (self.phase + BLOCK) % PERIOD;
                let e = core::mem::replace(&mut self.energy, 0.0);
                self.block(e);
            }
        }
        self.pop()
    }

    fn push(&mut self, ev: ModemToneEvent) {
        if let Some(slot) = self.pending.iter_mut().find(|p| p.is_none()) {
            *slot = Some(ev);
        }
    }

    fn pop(&mut self) -> Option<ModemToneEvent> {
        let ev = self.pending[0].take();
        self.pending[0] = self.pending[1].take();
        ev
    }

    fn block(&mut self, energy: f32) {
        // 2100 Hz family.
        let (present, amp) = self.ans.end_block(energy);
        let t = &mut self.ans;
        if present {
            t.present_blocks += 1;
            t.absent_blocks = 0;
            self.env[self.env_pos] = amp;
            self.env_pos = (self.env_pos + 1) % AM_WINDOW;
            self.env_len = (self.env_len + 1).min(AM_WINDOW);
            if self.env_len == AM_WINDOW && self.env_pos == 0 {
                self.am = am_index(&self.env) > 0.1;
            }
        } else if t.present_blocks > 0 {
            t.absent_blocks += 1;
            if t.absent_blocks >= END_BLOCKS {
                if let Some(tone) = self.reported_ans.take() {
                    self.push(ModemToneEvent::Ended(tone));
                }
                self.ans.present_blocks = 0;
                self.ans.reversal = false;
                self.env_len = 0;
                self.env_pos = 0;
                self.am = false;
            }
        }
        if self.ans.present_blocks >= ANS_BLOCKS && self.ans.absent_blocks == 0 {
            let tone = match (self.am, self.ans.reversal) {
                (false, false) => ModemTone::Ans,
                (false, true) => ModemTone::AnsPhaseReversal,
                (true, false) => ModemTone::AnsAm,
                (true, true) => ModemTone::AnsAmPhaseReversal,
            };
            let upgrade = match self.reported_ans {
                None => true,
                Some(old) => rank(tone) > rank(old),
            };
            if upgrade {
                self.reported_ans = Some(tone);
                self.push(ModemToneEvent::Detected(tone));
            }
        }
        // 1100 Hz.
        if !self.cng_enabled {
            return;
        }
        let (present, _) = self.cng.end_block(energy);
        let c = &mut self.cng;
        if present {
            c.present_blocks += 1;
            c.absent_blocks = 0;
            if c.present_blocks >= CNG_BLOCKS && !self.reported_cng {
                self.reported_cng = true;
                self.push(ModemToneEvent::Detected(ModemTone::Cng));
            }
        } else if c.present_blocks > 0 {
            c.absent_blocks += 1;
            if c.absent_blocks >= END_BLOCKS {
                c.present_blocks = 0;
                if core::mem::replace(&mut self.reported_cng, false) {
                    self.push(ModemToneEvent::Ended(ModemTone::Cng));
                }
            }
        }
    }
}

fn rank(t: ModemTone) -> u8 {
    match t {
        ModemTone::Cng => 0,
        ModemTone::Ans => 1,
        ModemTone::AnsAm => 2,
        ModemTone::AnsPhaseReversal => 3,
        ModemTone::AnsAmPhaseReversal => 4,
    }
}

/// Modulation index of a 15 Hz envelope sampled at 200 Hz over `env`.
fn am_index(env: &[f32; AM_WINDOW]) -> f32 {
    let mut g = crate::goertzel::Goertzel::new(15.0, 200.0);
    let mut mean = 0.0;
    for &e in env {
        g.update(e);
        mean += e;
    }
    mean /= AM_WINDOW as f32;
    if mean <= 0.0 {
        return 0.0;
    }
    g.amplitude() / mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::vec::Vec;

    struct Noise(u64);
    impl Noise {
        fn gauss(&mut self) -> f64 {
            let mut u = || {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            let (a, b) = (u(), u());
            (-2.0 * a.ln()).sqrt() * (2.0 * PI * b).cos()
        }
    }

    /// 2100 Hz at `dbm0`, phase reversals every `rev_ms` (0 = none), AM depth `am`, with
    /// white noise `snr_db` below the tone, `ms` long.
    fn answer_tone(dbm0: f64, rev_ms: f64, am: f64, f: f64, snr_db: f64, ms: f64, seed: u64) -> Vec<i16> {
        let n = (ms * 8.0) as usize;
        let a = 22826.0 * 10f64.powf(dbm0 / 20.0);
        let sigma = a / 2f64.sqrt() * 10f64.powf(-snr_db / 20.0);
        let mut noise = Noise(seed);
        (0..n)
            .map(|i| {
                let t = i as f64 / 8000.0;
                let flips = if rev_ms > 0.0 { (t * 1000.0 / rev_ms).floor() } else { 0.0 };
                let env = 1.0 + am * (2.0 * PI * 15.0 * t).sin();
                let v = a * env * (2.0 * PI * f * t + PI * flips).sin() + sigma * noise.gauss();
                v.round().clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn events(x: &[i16]) -> Vec<(usize, ModemToneEvent)> {
        let mut d = ModemToneDetector::new();
        let mut out = Vec::new();
        for (i, f) in x.chunks(80).enumerate() {
            if let Some(e) = d.process(f) {
                out.push((i * 10, e));
            }
        }
        while let Some(e) = d.process(&[]) {
            out.push((x.len() / 8, e));
        }
        out
    }

    #[test]
    fn ans_with_phase_reversals_at_10db_snr_within_600ms() {
        for seed in 1..6 {
            let mut x = answer_tone(-12.0, 450.0, 0.0, 2100.0, 10.0, 3000.0, seed);
            x.extend(std::iter::repeat_n(0i16, 800));
            let ev = events(&x);
            let pr = ev.iter().find(|(_, e)| *e == ModemToneEvent::Detected(ModemTone::AnsPhaseReversal));
            let (t, _) = pr.unwrap_or_else(|| panic!("seed {seed}: {ev:?}"));
            assert!(*t <= 600, "/ANS after {t} ms");
            assert_eq!(ev.first().unwrap().1, ModemToneEvent::Detected(ModemTone::Ans));
            assert_eq!(ev.last().unwrap().1, ModemToneEvent::Ended(ModemTone::AnsPhaseReversal));
        }
    }

    #[test]
    fn plain_ans_is_not_reported_as_reversing() {
        for (f, seed) in [(2100.0, 1), (2085.0, 2), (2115.0, 3)] {
            let x = answer_tone(-12.0, 0.0, 0.0, f, 10.0, 3000.0, seed);
            let ev = events(&x);
            assert_eq!(ev.first().map(|e| e.1), Some(ModemToneEvent::Detected(ModemTone::Ans)), "{f}: {ev:?}");
            assert!(ev.iter().all(|(_, e)| !matches!(e, ModemToneEvent::Detected(t) if t.disables_echo_canceller())), "{f}: {ev:?}");
        }
    }

    #[test]
    fn ansam_and_slash_ansam() {
        let ev = events(&answer_tone(-12.0, 0.0, 0.2, 2100.0, 20.0, 2000.0, 7));
        assert!(ev.iter().any(|(_, e)| *e == ModemToneEvent::Detected(ModemTone::AnsAm)), "{ev:?}");
        let ev = events(&answer_tone(-12.0, 450.0, 0.2, 2100.0, 20.0, 2000.0, 8));
        assert!(ev.iter().any(|(_, e)| *e == ModemToneEvent::Detected(ModemTone::AnsAmPhaseReversal)), "{ev:?}");
    }

    #[test]
    fn off_frequency_and_noise_and_cng() {
        // 2060 Hz is outside the 2100 +-21 Hz band.
        let mut x = answer_tone(-15.0, 0.0, 0.0, 1100.0, 30.0, 600.0, 13);
        let mut d = ModemToneDetector::answer_tone_only();
        assert!(x.chunks(80).all(|f| d.process(f).is_none()), "CNG ignored when answer-tone only");
        x.clear();
        let ev = events(&answer_tone(-12.0, 450.0, 0.0, 2060.0, 30.0, 2000.0, 9));
        assert!(ev.is_empty(), "{ev:?}");
        let mut n = Noise(11);
        let x: Vec<i16> = (0..80_000).map(|_| (3000.0 * n.gauss()) as i16).collect();
        assert!(events(&x).is_empty());
        // CNG: 1100 Hz for 500 ms.
        let mut x = answer_tone(-15.0, 0.0, 0.0, 1100.0, 15.0, 500.0, 12);
        x.extend(std::iter::repeat_n(0i16, 2000));
        let ev = events(&x);
        assert_eq!(ev.iter().map(|e| e.1).collect::<Vec<_>>(), std::vec![ModemToneEvent::Detected(ModemTone::Cng), ModemToneEvent::Ended(ModemTone::Cng)]);
    }

    #[test]
    fn no_false_detection_on_speech() {
        for seed in [21u64, 22] {
            let mut src = crate::testsig::SpeechLike::new(seed, -12.0);
            let mut d = ModemToneDetector::new();
            let mut frame = [0i16; 80];
            for _ in 0..3000 {
                src.fill(&mut frame);
                assert_eq!(d.process(&frame), None, "talker {seed}");
            }
        }
    }

    #[test]
    fn no_false_detection_on_recorded_speech() {
        for file in [&include_bytes!("../testdata/speech_en_m.ulaw")[..], &include_bytes!("../testdata/speech_en_f.ulaw")[..]] {
            let pcm: Vec<i16> = file.iter().map(|&b| crate::g711::decode(crate::g711::Law::Ulaw, b)).collect();
            assert!(events(&pcm).is_empty());
        }
    }
}
