//! The 128-point FFTs of the frequency-domain echo canceller.
//!
//! Size [`N`] = 128 (two 64-sample blocks, overlap-save). The transforms come from the
//! `microfft` crate (no_std, no allocation, compile-time tables, a real-input FFT at half
//! the cost of a complex one); this module gives them the canceller's complex type. The
//! forward transform is unscaled; [`inverse`] divides by `N`, so `inverse(forward(x)) == x`.

/// Transform size.
pub const N: usize = 128;

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

fn to_mf(x: &[C32; N]) -> [microfft::Complex32; N] {
    let mut y = [microfft::Complex32::new(0.0, 0.0); N];
    for (o, v) in y.iter_mut().zip(x.iter()) {
        *o = microfft::Complex32::new(v.re, v.im);
    }
    y
}

fn from_mf(y: &[microfft::Complex32; N], x: &mut [C32; N]) {
    for (o, v) in x.iter_mut().zip(y.iter()) {
        *o = C32::new(v.re, v.im);
    }
}

/// In-place forward DFT: `X[k] = sum x[n] e^{-j 2 pi k n / N}`.
pub fn forward(x: &mut [C32; N]) {
    let mut y = to_mf(x);
    let _ = microfft::complex::cfft_128(&mut y);
    from_mf(&y, x);
}

/// In-place inverse DFT, scaled by `1/N`: `conj(DFT(conj(X))) / N`, with the
/// conjugations and the scaling folded into the copies (no division per element).
pub fn inverse(x: &mut [C32; N]) {
    let mut y = [microfft::Complex32::new(0.0, 0.0); N];
    for (o, v) in y.iter_mut().zip(x.iter()) {
        *o = microfft::Complex32::new(v.re, -v.im);
    }
    let _ = microfft::complex::cfft_128(&mut y);
    let s = 1.0 / N as f32;
    for (o, v) in x.iter_mut().zip(y.iter()) {
        *o = C32::new(v.re * s, -v.im * s);
    }
}

/// DFT of a real signal: bins `0..=N/2` (the rest are their conjugates).
pub fn forward_real(x: &[f32; N]) -> [C32; N / 2 + 1] {
    let mut buf = *x;
    let spec = microfft::real::rfft_128(&mut buf);
    let mut out = [C32::ZERO; N / 2 + 1];
    for k in 1..N / 2 {
        out[k] = C32::new(spec[k].re, spec[k].im);
    }
    // microfft packs the (real) Nyquist bin into the imaginary part of bin 0.
    out[0] = C32::new(spec[0].re, 0.0);
    out[N / 2] = C32::new(spec[0].im, 0.0);
    out
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

    #[test]
    fn real_transform_matches_complex_one() {
        let mut r = [0.0f32; N];
        let mut c = [C32::ZERO; N];
        for i in 0..N {
            r[i] = (((i * 29) % 13) as f32 - 6.0) * 100.0;
            c[i].re = r[i];
        }
        forward(&mut c);
        let h = forward_real(&r);
        for k in 0..=N / 2 {
            assert!((h[k].re - c[k].re).abs() < 0.5 && (h[k].im - c[k].im).abs() < 0.5, "bin {k}: {:?} {:?}", h[k], c[k]);
        }
    }
}
