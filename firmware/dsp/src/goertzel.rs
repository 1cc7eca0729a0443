//! The Goertzel algorithm: one bin of a DFT, computed with a second-order recursion.
//!
//! Every tone detector in this crate (DTMF, call progress, modem tones) measures a handful
//! of known frequencies, which is exactly what Goertzel is for: two multiply-adds per
//! sample per frequency, no tables, and an exact DFT value (magnitude *and* phase) at the
//! end of the block. The phase is what lets the DTMF detector measure the tone frequency
//! to a fraction of a percent (ITU-T Q.24 asks for operation at 1.5 % deviation and
//! rejection at 3.5 %, which the magnitude alone cannot tell apart in a short block).
//!
//! Recursion (Goertzel 1958; Proakis & Manolakis 5.3.2):
//! `s[n] = x[n] + 2 cos(w) s[n-1] - s[n-2]`, and after `N` samples
//! `X(w) = e^{-jw(N-1)} (s[N-1] - e^{-jw} s[N-2])` where `X(w) = sum x[n] e^{-jwn}`.

use crate::cmath;

/// A single-frequency DFT bin evaluated sample by sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Goertzel {
    coeff: f32,
    cos_w: f32,
    sin_w: f32,
    w: f32,
    s1: f32,
    s2: f32,
    n: u32,
}

impl Goertzel {
    /// A detector for `freq_hz` at `sample_rate` Hz. Usable in constant expressions.
    pub const fn new(freq_hz: f32, sample_rate: f32) -> Self {
        let w = 2.0 * cmath::PI * freq_hz as f64 / sample_rate as f64;
        Goertzel {
            coeff: (2.0 * cmath::cos(w)) as f32,
            cos_w: cmath::cos(w) as f32,
            sin_w: cmath::sin(w) as f32,
            w: w as f32,
            s1: 0.0,
            s2: 0.0,
            n: 0,
        }
    }

    /// Start a new block.
    pub fn reset(&mut self) {
        self.s1 = 0.0;
        self.s2 = 0.0;
        self.n = 0;
    }

    /// Number of samples in the current block.
    pub fn len(&self) -> u32 {
        self.n
    }

    /// True if no sample has been fed since the last reset.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Feed one sample.
    #[inline(always)]
    pub fn update(&mut self, x: f32) {
        let s0 = x + self.coeff * self.s1 - self.s2;
        self.s2 = self.s1;
        self.s1 = s0;
        self.n += 1;
    }

    /// Feed a block of 16-bit samples.
    pub fn update_block(&mut self, xs: &[i16]) {
        for &x in xs {
            self.update(x as f32);
        }
    }

    /// |X(w)|^2 of the block so far.
    #[inline]
    pub fn power(&self) -> f32 {
        self.s1 * self.s1 + self.s2 * self.s2 - self.coeff * self.s1 * self.s2
    }

    /// `e^{jw(N-1)} X(w)` as (re, im): the DFT value without its block-length rotation.
    ///
    /// Two blocks of the same length give the same rotation, so the ratio of their
    /// `dft_unrotated` values is the ratio of their DFTs. That is all a phase-advance
    /// frequency estimate needs, and it costs no trigonometry.
    #[inline]
    pub fn dft_unrotated(&self) -> (f32, f32) {
        (self.s1 - self.cos_w * self.s2, self.sin_w * self.s2)
    }

    /// The DFT value `X(w) = sum x[n] e^{-jwn}` of the block so far, as (re, im).
    pub fn dft(&self) -> (f32, f32) {
        let (yr, yi) = self.dft_unrotated();
        let rot = -self.w * (self.n.saturating_sub(1)) as f32;
        let (s, c) = (libm::sinf(rot), libm::cosf(rot));
        (yr * c - yi * s, yr * s + yi * c)
    }

    /// Peak amplitude of a sinusoid exactly at this frequency that would give the
    /// block's power: `2 |X| / N`.
    pub fn amplitude(&self) -> f32 {
        if self.n == 0 {
            return 0.0;
        }
        2.0 * libm::sqrtf(self.power().max(0.0)) / self.n as f32
    }
}

/// Attenuation of a length-`n` rectangular-window DFT bin for a sinusoid `delta_bins`
/// away from the bin centre: `|sin(pi d) / (n sin(pi d / n))|` (the Dirichlet kernel).
pub fn dirichlet_gain(delta_bins: f32, n: f32) -> f32 {
    let x = core::f32::consts::PI * delta_bins;
    if libm::fabsf(x) < 1e-6 {
        return 1.0;
    }
    libm::fabsf(libm::sinf(x) / (n * libm::sinf(x / n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(f: f64, a: f64, phase: f64, n: usize) -> std::vec::Vec<i16> {
        (0..n)
            .map(|i| (a * (2.0 * PI * f * i as f64 / 8000.0 + phase).sin()).round() as i16)
            .collect()
    }

    #[test]
    fn matches_direct_dft() {
        let x = sine(770.0, 10000.0, 0.3, 102);
        let mut g = Goertzel::new(770.0, 8000.0);
        g.update_block(&x);
        let w = 2.0 * PI * 770.0 / 8000.0;
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (n, &s) in x.iter().enumerate() {
            re += s as f64 * (w * n as f64).cos();
            im -= s as f64 * (w * n as f64).sin();
        }
        let (gr, gi) = g.dft();
        assert!((gr as f64 - re).abs() < 2.0 && (gi as f64 - im).abs() < 2.0, "{gr},{gi} vs {re},{im}");
        assert!(((g.power() as f64) - (re * re + im * im)).abs() / (re * re + im * im) < 1e-4);
        assert!((g.amplitude() - 10000.0).abs() < 150.0, "{}", g.amplitude());
    }

    #[test]
    fn phase_advance_measures_frequency() {
        // Two blocks 51 samples apart: the DFT phase advances by 2 pi f * 51 / 8000.
        let x = sine(1000.0, 8000.0, 1.0, 200);
        let mut a = Goertzel::new(990.0, 8000.0);
        let mut b = a;
        a.update_block(&x[0..102]);
        b.update_block(&x[51..153]);
        let (ar, ai) = a.dft_unrotated();
        let (br, bi) = b.dft_unrotated();
        let adv = libm::atan2f(bi * ar - br * ai, br * ar + bi * ai) as f64;
        let expect = (2.0 * PI * 1000.0 * 51.0 / 8000.0).rem_euclid(2.0 * PI);
        let diff = (adv.rem_euclid(2.0 * PI) - expect).abs();
        assert!(diff < 0.01, "adv {adv} expect {expect}");
    }

    #[test]
    fn rejects_other_frequencies() {
        let x = sine(941.0, 10000.0, 0.0, 102);
        let mut g = Goertzel::new(697.0, 8000.0);
        g.update_block(&x);
        assert!(g.amplitude() < 1000.0);
        g.reset();
        assert!(g.is_empty());
        assert_eq!(g.amplitude(), 0.0);
    }

    #[test]
    fn dirichlet_gain_shape() {
        assert!((dirichlet_gain(0.0, 102.0) - 1.0).abs() < 1e-6);
        assert!(dirichlet_gain(1.0, 102.0) < 1e-3);
        let half = dirichlet_gain(0.5, 102.0);
        assert!((half - 2.0 / core::f32::consts::PI).abs() < 0.01, "{half}");
    }
}
