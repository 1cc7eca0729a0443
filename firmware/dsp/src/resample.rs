//! 8 kHz <-> 16 kHz resampling for wideband trunks (G.722 on the SIP side, 8 kHz lines).
//!
//! Both directions use one linear-phase half-band FIR low-pass at 16 kHz: 71 taps, Kaiser
//! window (beta 8), cut-off 4 kHz. Measured from its coefficients: passband ripple under
//! 0.002 dB up to 3.4 kHz, stopband at least 80 dB below the passband from 4.6 kHz to
//! 8 kHz. In a half-band filter every second tap is zero except the centre one (0.5), so
//! the polyphase split is cheap:
//!
//! - [`Upsampler`] (8 -> 16 kHz, zero insertion then the filter with gain 2): the even
//!   output phase is a 36-tap FIR of the input, the odd phase is the input delayed by 17
//!   samples. Images of the 0-4 kHz band above 4.6 kHz are at least 80 dB down.
//! - [`Downsampler`] (16 -> 8 kHz): the 36-tap FIR on the even input samples plus the
//!   centre tap on the odd ones, one output per input pair. Anything from 4.6 to 8 kHz
//!   that would alias into 0-3.4 kHz is at least 80 dB down.
//!
//! Delay: [`DELAY_16K`] = 35 samples at 16 kHz (2.19 ms) each way, so an up-down round
//! trip delays by 35 samples at 8 kHz. State is a few fixed arrays; frames are the rt
//! loop's 10 ms (80 samples at 8 kHz, 160 at 16 kHz), or any slice with `process`.

/// Group delay of either resampler, in 16 kHz samples.
pub const DELAY_16K: usize = 35;
/// Samples in 10 ms at 8 kHz.
pub const NB_FRAME: usize = 80;
/// Samples in 10 ms at 16 kHz.
pub const WB_FRAME: usize = 160;

/// Non-zero, non-centre taps h[0], h[2], ..., h[70] of the half-band filter (the centre
/// tap h[35] is 0.5, all other odd taps are 0). Normalised to sum to 0.5 (DC gain 1).
/// Kaiser-windowed sinc, 71 taps, beta = 8.0, cut-off fs/4 (printed from the design in
/// double precision, hence more digits than an f32 holds).
#[allow(clippy::excessive_precision)]
const H_EVEN: [f32; 36] = [
    -2.127074417e-05,
    8.436105573e-05,
    -2.123491016e-04,
    4.405780895e-04,
    -8.144353242e-04,
    1.390330170e-03,
    -2.236945448e-03,
    3.437410385e-03,
    -5.093627631e-03,
    7.335106709e-03,
    -1.033702357e-02,
    1.435777424e-02,
    -1.982083912e-02,
    2.750938359e-02,
    -3.909780982e-02,
    5.896128401e-02,
    -1.032224005e-01,
    3.173404730e-01,
    3.173404730e-01,
    -1.032224005e-01,
    5.896128401e-02,
    -3.909780982e-02,
    2.750938359e-02,
    -1.982083912e-02,
    1.435777424e-02,
    -1.033702357e-02,
    7.335106709e-03,
    -5.093627631e-03,
    3.437410385e-03,
    -2.236945448e-03,
    1.390330170e-03,
    -8.144353242e-04,
    4.405780895e-04,
    -2.123491016e-04,
    8.436105573e-05,
    -2.127074417e-05,
];
const TAPS: usize = H_EVEN.len();
/// Odd-phase delay in low-rate samples: the centre tap sits 17.5 low-rate samples back.
const ODD_DELAY: usize = 17;

/// Why a resampler call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResampleError {
    /// The output buffer is smaller than the input needs.
    OutputTooShort {
        /// Samples the call would write.
        needed: usize,
        /// Samples the buffer has.
        got: usize,
    },
}

/// Fixed-length history, newest last, with contiguous reads (written twice).
#[derive(Debug, Clone, Copy)]
struct Line<const N: usize, const N2: usize> {
    buf: [f32; N2],
    pos: usize,
}

impl<const N: usize, const N2: usize> Line<N, N2> {
    const fn new() -> Self {
        Line {
            buf: [0.0; N2],
            pos: 0,
        }
    }

    fn push(&mut self, v: f32) {
        self.buf[self.pos] = v;
        self.buf[self.pos + N] = v;
        self.pos = if self.pos + 1 == N { 0 } else { self.pos + 1 };
    }

    /// The last N samples, oldest first.
    fn window(&self) -> &[f32] {
        &self.buf[self.pos..self.pos + N]
    }
}

/// Dot product of the history window (oldest first) with the symmetric filter.
#[inline]
fn fir(window: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (x, h) in window.iter().zip(H_EVEN.iter()) {
        acc += x * h;
    }
    acc
}

/// 8 kHz -> 16 kHz interpolator.
#[derive(Debug, Clone)]
pub struct Upsampler {
    hist: Line<TAPS, { 2 * TAPS }>,
}

impl Default for Upsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Upsampler {
    /// An interpolator with silent history.
    pub const fn new() -> Self {
        Upsampler { hist: Line::new() }
    }

    /// Back to silent history.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Two 16 kHz samples for one 8 kHz sample.
    #[inline]
    pub fn push(&mut self, x: i16) -> [i16; 2] {
        self.hist.push(x as f32);
        let w = self.hist.window();
        let even = 2.0 * fir(w);
        // Centre tap 0.5 times gain 2: the input ODD_DELAY samples back.
        let odd = w[TAPS - 1 - ODD_DELAY];
        [crate::sat16(even), crate::sat16(odd)]
    }

    /// One 10 ms frame: 80 samples at 8 kHz to 160 at 16 kHz.
    pub fn process_frame(&mut self, input: &[i16; NB_FRAME], out: &mut [i16; WB_FRAME]) {
        for (x, o) in input.iter().zip(out.chunks_exact_mut(2)) {
            o.copy_from_slice(&self.push(*x));
        }
    }

    /// Any number of 8 kHz samples into twice as many at 16 kHz; returns samples written.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> Result<usize, ResampleError> {
        let needed = input.len() * 2;
        if out.len() < needed {
            return Err(ResampleError::OutputTooShort {
                needed,
                got: out.len(),
            });
        }
        for (x, o) in input.iter().zip(out.chunks_exact_mut(2)) {
            o.copy_from_slice(&self.push(*x));
        }
        Ok(needed)
    }
}

/// 16 kHz -> 8 kHz decimator.
#[derive(Debug, Clone)]
pub struct Downsampler {
    /// Even-indexed input samples (the ones an output is aligned with).
    even: Line<TAPS, { 2 * TAPS }>,
    /// Odd-indexed input samples.
    odd: Line<{ ODD_DELAY + 1 }, { 2 * (ODD_DELAY + 1) }>,
    /// True when the next input sample is odd-indexed.
    odd_next: bool,
}

impl Default for Downsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Downsampler {
    /// A decimator with silent history.
    pub const fn new() -> Self {
        Downsampler {
            even: Line::new(),
            odd: Line::new(),
            odd_next: false,
        }
    }

    /// Back to silent history.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Feed one 16 kHz sample; an 8 kHz sample comes out for every even-indexed input.
    #[inline]
    pub fn push(&mut self, x: i16) -> Option<i16> {
        if self.odd_next {
            self.odd.push(x as f32);
            self.odd_next = false;
            return None;
        }
        self.odd_next = true;
        self.even.push(x as f32);
        let y = fir(self.even.window()) + 0.5 * self.odd.window()[0];
        Some(crate::sat16(y))
    }

    /// One 10 ms frame: 160 samples at 16 kHz to 80 at 8 kHz.
    pub fn process_frame(&mut self, input: &[i16; WB_FRAME], out: &mut [i16; NB_FRAME]) {
        let mut n = 0;
        for &x in input {
            if let Some(y) = self.push(x) {
                out[n] = y;
                n += 1;
            }
        }
    }

    /// Any number of 16 kHz samples; returns the 8 kHz samples written (half the input,
    /// rounded by the phase carried over from the previous call).
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) -> Result<usize, ResampleError> {
        let needed = (input.len() + usize::from(!self.odd_next)) / 2;
        if out.len() < needed {
            return Err(ResampleError::OutputTooShort {
                needed,
                got: out.len(),
            });
        }
        let mut n = 0;
        for &x in input {
            if let Some(y) = self.push(x) {
                out[n] = y;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn tone(f: f32, fs: f32, amp: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * libm::sinf(2.0 * core::f32::consts::PI * f * i as f32 / fs)) as i16)
            .collect()
    }

    /// Level (dB re amplitude 1) of frequency f in x (Goertzel-style projection).
    fn level_at(x: &[i16], f: f32, fs: f32) -> f32 {
        let (mut c, mut s) = (0f64, 0f64);
        for (i, &v) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * f as f64 * i as f64 / fs as f64;
            c += v as f64 * ph.cos();
            s += v as f64 * ph.sin();
        }
        let amp = 2.0 * (c * c + s * s).sqrt() / x.len() as f64;
        (20.0 * amp.max(1e-9).log10()) as f32
    }

    fn up(x: &[i16]) -> Vec<i16> {
        let mut u = Upsampler::new();
        let mut out = Vec::new();
        for f in x.chunks_exact(NB_FRAME) {
            let mut o = [0i16; WB_FRAME];
            u.process_frame(f.try_into().unwrap(), &mut o);
            out.extend_from_slice(&o);
        }
        out
    }

    fn down(x: &[i16]) -> Vec<i16> {
        let mut d = Downsampler::new();
        let mut out = Vec::new();
        for f in x.chunks_exact(WB_FRAME) {
            let mut o = [0i16; NB_FRAME];
            d.process_frame(f.try_into().unwrap(), &mut o);
            out.extend_from_slice(&o);
        }
        out
    }

    #[test]
    fn upsampling_keeps_tones_and_suppresses_images() {
        // Whole numbers of cycles in the 0.5 s analysis window after the warm-up.
        for f in [300.0f32, 1000.0, 3400.0] {
            let x = tone(f, 8000.0, 16000.0, 8000);
            let y = up(&x);
            let win = &y[8000..16000];
            let amp = 20.0 * libm::log10f(16000.0);
            let pass = level_at(win, f, 16000.0) - amp;
            let image = level_at(win, 8000.0 - f, 16000.0) - amp;
            assert!(libm::fabsf(pass) < 0.05, "{f} Hz: passband {pass} dB");
            std::eprintln!("up {f} Hz: pass {pass:.3} dB, image {image:.1} dB");
            assert!(
                image < -70.0,
                "{f} Hz: image at {} Hz {image} dB",
                8000.0 - f
            );
        }
    }

    #[test]
    fn downsampling_keeps_tones_and_suppresses_aliases() {
        for f in [300.0f32, 1000.0, 3400.0] {
            let y = down(&tone(f, 16000.0, 16000.0, 16000));
            let pass = level_at(&y[4000..8000], f, 8000.0) - 20.0 * libm::log10f(16000.0);
            assert!(libm::fabsf(pass) < 0.05, "{f} Hz: passband {pass} dB");
        }
        // Tones from 4.6 to 7.9 kHz must not come back as their aliases at 8000 - f.
        for f in [4600.0f32, 5000.0, 6000.0, 7000.0, 7900.0] {
            let y = down(&tone(f, 16000.0, 16000.0, 16000));
            let alias = level_at(&y[4000..8000], 8000.0 - f, 8000.0) - 20.0 * libm::log10f(16000.0);
            std::eprintln!("down {f} Hz: alias {alias:.1} dB");
            assert!(
                alias < -70.0,
                "{f} Hz aliases to {} Hz at {alias} dB",
                8000.0 - f
            );
        }
    }

    #[test]
    fn round_trip_1khz_frequency_level_and_delay() {
        let x = tone(1000.0, 8000.0, 20000.0, 4000);
        let y = down(&up(&x));
        // Delay: 35 + 35 samples at 16 kHz = 35 at 8 kHz.
        let delay = DELAY_16K;
        let mut err = 0f64;
        let mut sig = 0f64;
        for i in 400..x.len() {
            let e = y[i] as f64 - x[i - delay] as f64;
            err += e * e;
            sig += (x[i - delay] as f64).powi(2);
        }
        let snr = 10.0 * (sig / err).log10();
        std::eprintln!("round trip SNR {snr:.1} dB");
        assert!(snr > 60.0, "round trip SNR {snr} dB");
        let lvl = level_at(&y[400..4000], 1000.0, 8000.0) - 20.0 * libm::log10f(20000.0);
        assert!(libm::fabsf(lvl) < 0.05, "{lvl}");
    }

    #[test]
    fn impulse_response_is_the_linear_phase_filter() {
        let mut u = Upsampler::new();
        let mut y = [0i16; 2 * 40];
        let mut x = [0i16; 40];
        x[0] = 10000;
        u.process(&x, &mut y).unwrap();
        // Peak at the group delay, symmetric around it.
        let peak = (0..y.len()).max_by_key(|&i| y[i]).unwrap();
        assert_eq!(peak, DELAY_16K);
        for k in 1..DELAY_16K {
            assert!((y[DELAY_16K - k] as i32 - y[DELAY_16K + k] as i32).abs() <= 1);
        }
        assert_eq!(y[DELAY_16K], 10000);
    }

    #[test]
    fn slice_api_phase_and_errors() {
        let x = tone(700.0, 16000.0, 9000.0, 320);
        let mut a = Downsampler::new();
        let mut b = Downsampler::new();
        let mut fa = [0i16; NB_FRAME];
        a.process_frame(x[..160].try_into().unwrap(), &mut fa);
        // Odd split points carry the phase over.
        let mut fb = [0i16; NB_FRAME];
        let n1 = b.process(&x[..33], &mut fb).unwrap();
        let n2 = b.process(&x[33..160], &mut fb[n1..]).unwrap();
        assert_eq!((n1, n2), (17, 63));
        assert_eq!(fa, fb);
        assert_eq!(
            Downsampler::new().process(&x[..10], &mut [0; 4]),
            Err(ResampleError::OutputTooShort { needed: 5, got: 4 })
        );
        assert_eq!(
            Upsampler::new().process(&x[..10], &mut [0; 19]),
            Err(ResampleError::OutputTooShort {
                needed: 20,
                got: 19
            })
        );
    }
}
