//! A fixed-size radix-2 complex FFT for the frequency-domain echo canceller.
//!
//! Size [`N`] = 128 (two 64-sample blocks, overlap-save). Twiddles and the bit-reversal
//! permutation are computed at compile time, so there is no set-up and no allocation. The
//! forward transform is unscaled; [`inverse`] divides by `N`, so `inverse(forward(x)) == x`.

use crate::cmath;

/// Transform size.
pub const N: usize = 128;
const LOG2N: u32 = 7;

/// A complex number (single precision).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct C32 {
    pub re: f32,
    pub im: f32,
}

impl C32 {
    pub const ZERO: C32 = C32 { re: 0.0, im: 0.0 };

    #[inline(always)]
    pub const fn new(re: f32, im: f32) -> Self {
        C32 { re, im }
    }

    #[inline(always)]
    pub fn cmul(self, o: C32) -> C32 {
        C32::new(self.re * o.re - self.im * o.im, self.re * o.im + self.im * o.re)
    }

    /// `conj(self) * o`
    #[inline(always)]
    pub fn conj_mul(self, o: C32) -> C32 {
        C32::new(self.re * o.re + self.im * o.im, self.re * o.im - self.im * o.re)
    }

    #[inline(always)]
    pub fn norm_sqr(self) -> f32 {
        self.re * self.re + self.im * self.im
    }
}

const fn twiddles() -> [C32; N / 2] {
    let mut t = [C32::ZERO; N / 2];
    let mut k = 0;
    while k < N / 2 {
        let a = -2.0 * cmath::PI * k as f64 / N as f64;
        t[k] = C32::new(cmath::cos(a) as f32, cmath::sin(a) as f32);
        k += 1;
    }
    t
}

const fn bitrev() -> [u8; N] {
    let mut r = [0u8; N];
    let mut i = 0;
    while i < N {
        let mut x = i;
        let mut y = 0;
        let mut b = 0;
        while b < LOG2N {
            y = (y << 1) | (x & 1);
            x >>= 1;
            b += 1;
        }
        r[i] = y as u8;
        i += 1;
    }
    r
}

static TW: [C32; N / 2] = twiddles();
static BITREV: [u8; N] = bitrev();

fn transform(x: &mut [C32; N], inverse: bool) {
    for i in 0..N {
        let j = BITREV[i] as usize;
        if j > i {
            x.swap(i, j);
        }
    }
    let mut half = 1;
    while half < N {
        let step = N / (2 * half);
        for start in (0..N).step_by(2 * half) {
            for k in 0..half {
                let mut w = TW[k * step];
                if inverse {
                    w.im = -w.im;
                }
                let a = x[start + k];
                let b = x[start + k + half].cmul(w);
                x[start + k] = C32::new(a.re + b.re, a.im + b.im);
                x[start + k + half] = C32::new(a.re - b.re, a.im - b.im);
            }
        }
        half *= 2;
    }
}

/// In-place forward DFT: `X[k] = sum x[n] e^{-j 2 pi k n / N}`.
pub fn forward(x: &mut [C32; N]) {
    transform(x, false);
}

/// In-place inverse DFT, scaled by `1/N`.
pub fn inverse(x: &mut [C32; N]) {
    transform(x, true);
    let s = 1.0 / N as f32;
    for v in x.iter_mut() {
        v.re *= s;
        v.im *= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_dft_and_round_trips() {
        let mut x = [C32::ZERO; N];
        for (i, v) in x.iter_mut().enumerate() {
            *v = C32::new(((i * 37) % 11) as f32 - 5.0, ((i * 13) % 7) as f32 - 3.0);
        }
        let orig = x;
        forward(&mut x);
        for k in [0usize, 1, 5, 63, 64, 127] {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for (n, v) in orig.iter().enumerate() {
                let a = -2.0 * core::f64::consts::PI * (k * n) as f64 / N as f64;
                re += v.re as f64 * a.cos() - v.im as f64 * a.sin();
                im += v.re as f64 * a.sin() + v.im as f64 * a.cos();
            }
            assert!((x[k].re as f64 - re).abs() < 1e-2 && (x[k].im as f64 - im).abs() < 1e-2, "bin {k}");
        }
        inverse(&mut x);
        for (a, b) in x.iter().zip(orig.iter()) {
            assert!((a.re - b.re).abs() < 1e-4 && (a.im - b.im).abs() < 1e-4);
        }
    }
}
