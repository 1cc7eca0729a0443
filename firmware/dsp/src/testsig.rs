//! Deterministic test signals for detector batteries, echo tests and benchmarks.
//!
//! Not used by the rt path. `SpeechLike` is in the spirit of the ITU-T P.501 / G.168
//! composite source signal: voiced syllables (a glottal pulse train at a drifting pitch,
//! through two formant resonators that change per syllable), unvoiced bursts (noise)
//! and pauses, with a syllabic envelope, so it has speech's spectral tilt, its
//! non-stationarity and its pauses. It is what the echo canceller is tuned and measured
//! on; results on real speech are in the same range.

/// xorshift64 white noise.
#[derive(Clone, Debug)]
pub struct Noise {
    state: u64,
}

impl Noise {
    pub const fn new(seed: u64) -> Self {
        Noise { state: seed | 1 }
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately Gaussian, unit variance (sum of 4 uniforms).
    pub fn gauss(&mut self) -> f32 {
        let s = self.uniform() + self.uniform() + self.uniform() + self.uniform();
        (s - 2.0) * 1.732_050_8
    }
}

/// Two-pole resonator.
#[derive(Clone, Debug)]
struct Resonator {
    a1: f32,
    a2: f32,
    y1: f32,
    y2: f32,
}

impl Resonator {
    fn set(&mut self, f: f32, bw: f32) {
        let r = libm::expf(-core::f32::consts::PI * bw / 8000.0);
        self.a1 = 2.0 * r * libm::cosf(core::f32::consts::TAU * f / 8000.0);
        self.a2 = -r * r;
    }
    fn run(&mut self, x: f32) -> f32 {
        let y = x + self.a1 * self.y1 + self.a2 * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y * (1.0 - self.a1 - self.a2).abs().max(0.05)
    }
}

/// Speech-like source at a chosen active level (module docs).
#[derive(Clone, Debug)]
pub struct SpeechLike {
    noise: Noise,
    f1: Resonator,
    f2: Resonator,
    seg_left: u32,
    seg_len: u32,
    kind: u8, // 0 pause, 1 voiced, 2 unvoiced
    pitch_phase: f32,
    pitch: f32,
    gain: f32,
    norm: f32,
    hp: f32,
}

impl SpeechLike {
    /// `level_dbm0`: approximate active speech level; `seed` picks the talker.
    pub fn new(seed: u64, level_dbm0: f32) -> Self {
        let mut s = SpeechLike {
            noise: Noise::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555),
            f1: Resonator { a1: 0.0, a2: 0.0, y1: 0.0, y2: 0.0 },
            f2: Resonator { a1: 0.0, a2: 0.0, y1: 0.0, y2: 0.0 },
            seg_left: 0,
            seg_len: 1,
            kind: 0,
            pitch_phase: 0.0,
            pitch: 120.0 + (seed % 7) as f32 * 15.0,
            gain: 0.0,
            norm: crate::dbm0_to_peak(level_dbm0) / core::f32::consts::SQRT_2,
            hp: 0.0,
        };
        s.f1.set(500.0, 80.0);
        s.f2.set(1500.0, 120.0);
        s
    }

    fn next_segment(&mut self) {
        let u = self.noise.uniform();
        self.kind = if self.kind != 0 && u < 0.3 { 0 } else if u < 0.8 { 1 } else { 2 };
        let ms = match self.kind {
            0 => 80.0 + 400.0 * self.noise.uniform(),
            1 => 100.0 + 250.0 * self.noise.uniform(),
            _ => 60.0 + 120.0 * self.noise.uniform(),
        };
        self.seg_len = (ms * 8.0) as u32;
        self.seg_left = self.seg_len;
        self.f1.set(300.0 + 600.0 * self.noise.uniform(), 80.0);
        self.f2.set(900.0 + 1600.0 * self.noise.uniform(), 120.0);
        self.pitch = (self.pitch * (0.9 + 0.2 * self.noise.uniform())).clamp(90.0, 260.0);
    }

    pub fn sample(&mut self) -> i16 {
        if self.seg_left == 0 {
            self.next_segment();
        }
        self.seg_left -= 1;
        // Syllabic envelope: raised sine over the segment.
        let t = 1.0 - self.seg_left as f32 / self.seg_len as f32;
        let env = libm::sinf(core::f32::consts::PI * t);
        let target = match self.kind {
            0 => 0.0,
            1 => env,
            _ => 0.5 * env,
        };
        self.gain += 0.01 * (target - self.gain);
        let exc = match self.kind {
            1 => {
                self.pitch_phase += self.pitch / 8000.0;
                (if self.pitch_phase >= 1.0 {
                    // Jitter (period-to-period variation of ~2 %) as in natural voicing.
                    self.pitch_phase -= 1.0 + 0.04 * (self.noise.uniform() - 0.5);
                    8.0
                } else {
                    0.0
                }) + 0.15 * self.noise.gauss() // aspiration noise rides on voicing
            }
            2 => self.noise.gauss() * 0.8,
            _ => 0.0,
        } + 0.02 * self.noise.gauss();
        let v = self.f2.run(self.f1.run(exc));
        // Gentle high-pass so there is no DC, as after a telephone band filter.
        let out = v - self.hp;
        self.hp += 0.02 * (v - self.hp);
        crate::sat16(out * self.gain * self.norm * 1.2)
    }

    pub fn fill(&mut self, out: &mut [i16]) {
        for o in out {
            *o = self.sample();
        }
    }
}
