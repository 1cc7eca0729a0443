//! Test signals: seeded noise and a speech-like signal.
//!
//! Echo cancellers are specified and tested with speech or speech-like
//! signals (ITU-T G.168 section 6.4.1 uses the composite source signal of
//! Annex C; P.50 defines an artificial voice). [`speech_like`] is a simpler
//! stand-in with the two properties that matter to a canceller: a long-term
//! spectrum like speech's (most energy at 200..1000 Hz, falling above 1 kHz,
//! but energy across the whole telephone band) and syllabic on/off amplitude
//! modulation (talk spurts of 100..350 ms with short gaps), so its short-term
//! level swings like a talker's. It is deterministic for a given seed.

use std::f64::consts::PI;

use crate::analysis::{dbm0_rms, RATE};

/// Seeded pseudo-random numbers (xorshift64*), with Gaussian samples by the
/// Box-Muller transform. Not for cryptography; reproducible across platforms.
#[derive(Debug, Clone)]
pub struct Noise {
    state: u64,
    spare: Option<f64>,
}

impl Noise {
    /// A generator; every seed (0 too) gives its own sequence.
    pub fn new(seed: u64) -> Noise {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams
        // and the xorshift state is never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Noise { state: z | 1, spare: None }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (mean 0, variance 1).
    pub fn gaussian(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let a = 2.0 * PI * self.uniform();
        self.spare = Some(r * a.sin());
        r * a.cos()
    }
}

/// One-pole low-pass coefficient for corner `hz`.
fn pole(hz: f64) -> f64 {
    (-2.0 * PI * hz / RATE).exp()
}

/// `seconds` of a speech-like signal at 8 kHz whose average level over the
/// whole signal (gaps included) is `level_dbm0`, seeded by `seed`.
///
/// Gaussian noise is shaped by a second-order high-pass at 200 Hz and
/// first-order low-passes at 500 Hz and 2 kHz (about -6 dB per octave from
/// 500 Hz, steeper towards 4 kHz, like the long-term speech spectrum), then
/// cut into syllables: talk spurts of 100..350 ms, each with a half-sine
/// envelope and a random peak amplitude (0.4 .. 1.0), separated by gaps of
/// 30..200 ms. Samples saturate at 16 bits (at -15 dBm0 none do).
pub fn speech_like(seed: u64, seconds: f32, level_dbm0: f32) -> Vec<i16> {
    let n = (f64::from(seconds.max(0.0)) * RATE).round() as usize;
    let mut rng = Noise::new(seed);
    let (a_lp1, a_lp2, a_hp) = (pole(500.0), pole(2000.0), pole(200.0));
    let (mut lp1, mut lp, mut hp1, mut hp, mut prev1, mut prev) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut x = Vec::with_capacity(n);
    // Syllable state: samples left in the current spurt or gap.
    let (mut left, mut len, mut talking, mut peak) = (0usize, 1usize, false, 0.0f64);
    for _ in 0..n {
        if left == 0 {
            talking = !talking;
            let ms = if talking { rng.range(100.0, 350.0) } else { rng.range(30.0, 200.0) };
            len = (ms * RATE / 1000.0) as usize;
            left = len;
            peak = rng.range(0.4, 1.0);
        }
        let env = if talking { peak * (PI * (len - left) as f64 / len as f64).sin() } else { 0.0 };
        left -= 1;
        let w = rng.gaussian();
        lp1 = a_lp1 * lp1 + (1.0 - a_lp1) * w;
        lp = a_lp2 * lp + (1.0 - a_lp2) * lp1;
        // Two one-pole high-passes: y[n] = a (y[n-1] + x[n] - x[n-1]).
        hp1 = a_hp * (hp1 + lp - prev1);
        prev1 = lp;
        hp = a_hp * (hp + hp1 - prev);
        prev = hp1;
        x.push(hp * env);
    }
    let power = x.iter().map(|v| v * v).sum::<f64>() / n.max(1) as f64;
    let target = dbm0_rms() * 10f64.powf(f64::from(level_dbm0) / 20.0);
    let gain = if power > 0.0 { target / power.sqrt() } else { 0.0 };
    x.iter().map(|v| (v * gain).round().clamp(-32768.0, 32767.0) as i16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{goertzel, level_dbm0};

    #[test]
    fn noise_is_seeded_uniform_and_gaussian() {
        let a: Vec<u64> = { let mut g = Noise::new(1); (0..8).map(|_| g.next_u64()).collect() };
        let b: Vec<u64> = { let mut g = Noise::new(1); (0..8).map(|_| g.next_u64()).collect() };
        let c: Vec<u64> = { let mut g = Noise::new(2); (0..8).map(|_| g.next_u64()).collect() };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut g = Noise::new(0);
        let n = 100_000;
        let u: Vec<f64> = (0..n).map(|_| g.uniform()).collect();
        assert!(u.iter().all(|&v| v > 0.0 && v <= 1.0));
        let mean = u.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "uniform mean {mean}");
        let z: Vec<f64> = (0..n).map(|_| g.gaussian()).collect();
        let m = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n as f64;
        assert!(m.abs() < 0.02 && (var - 1.0).abs() < 0.03, "gaussian mean {m} variance {var}");
    }

    #[test]
    fn speech_like_has_the_level_asked_for_and_is_reproducible() {
        for level in [-15.0f32, -25.0] {
            let s = speech_like(3, 5.0, level);
            assert_eq!(s.len(), 40_000);
            assert!((level_dbm0(&s) - level).abs() < 0.1, "{level}: {}", level_dbm0(&s));
            assert_eq!(s, speech_like(3, 5.0, level));
        }
        assert_ne!(speech_like(3, 1.0, -15.0), speech_like(4, 1.0, -15.0));
        // No clipping at a talker's level.
        assert!(speech_like(5, 10.0, -15.0).iter().all(|&v| v > -32768 && v < 32767));
    }

    #[test]
    fn speech_like_is_syllabic() {
        let s = speech_like(11, 10.0, -15.0);
        let frames: Vec<f32> = s.chunks(80).map(level_dbm0).collect();
        let quiet = frames.iter().filter(|&&l| l < -60.0).count() as f64 / frames.len() as f64;
        let loud = frames.iter().filter(|&&l| l > -15.0).count() as f64 / frames.len() as f64;
        // Gaps (silence) and spurt peaks both make up a good share of the time.
        assert!((0.1..0.5).contains(&quiet), "silent frames {quiet:.2}");
        assert!(loud > 0.2, "loud frames {loud:.2}");
    }

    #[test]
    fn speech_like_has_a_speech_like_spectrum() {
        let s = speech_like(5, 4.0, -15.0);
        let x: Vec<f64> = s.iter().map(|&v| f64::from(v)).collect();
        // Average power over 2048-sample blocks, sampled every 50 Hz.
        let band = |lo: f64, hi: f64| -> f64 {
            let mut f = lo;
            let mut acc = 0.0;
            let mut k = 0;
            while f < hi {
                for blk in x.chunks_exact(2048) {
                    acc += goertzel(blk, f);
                    k += 1;
                }
                f += 50.0;
            }
            acc / k as f64
        };
        let (low, mid, high, dc) = (band(300.0, 1000.0), band(1000.0, 2000.0), band(2500.0, 3400.0), band(20.0, 80.0));
        let db = |a: f64, b: f64| 10.0 * (a / b).log10();
        assert!(db(low, high) > 10.0, "300-1000 Hz vs 2500-3400 Hz: {:.1} dB", db(low, high));
        assert!(db(low, mid) > 2.0, "300-1000 vs 1000-2000 Hz: {:.1} dB", db(low, mid));
        assert!(db(high, low) > -30.0, "the top of the band must not be empty: {:.1} dB", db(high, low));
        assert!(db(low, dc) > 10.0, "too much energy below 80 Hz: {:.1} dB", db(low, dc));
    }
}
