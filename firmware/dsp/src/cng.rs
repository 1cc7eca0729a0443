//! Voice activity detection and comfort noise per RFC 3389 (RTP payload for comfort noise).
//!
//! Transmit side, per channel, every 10 ms frame after the echo canceller: [`Dtx`] does
//! all of the following and answers [`TxFrame::Audio`], [`TxFrame::Cn`] or
//! [`TxFrame::Silent`]; by hand it is:
//!
//! ```text
//! active = vad.process(frame)
//! if !active { estimator.analyse(frame) }            // learn the background noise
//! if active  -> send the G.711 frame
//! else       -> send estimator.params(order).encode() as a CN packet when the noise
//!               changed (CnParams::differs_from) or now and then, and nothing otherwise
//! ```
//!
//! Receive side: `ComfortNoise::set_params(&CnParams::decode(payload)?)` on each CN packet,
//! then `ComfortNoise::fill(frame)` for every 10 ms tick until audio packets resume.
//!
//! - [`Vad`]: frame energy against a noise floor found by minimum statistics (the
//!   quietest frame of the last 1.6 s), speech when the energy exceeds the floor by
//!   [`Vad::THRESHOLD_DB`], held for a hangover of [`Vad::HANGOVER_FRAMES`] frames so word
//!   endings and short pauses are not clipped. Stationary noise of any level is not speech
//!   once it has lasted 1.6 s.
//! - [`CnEstimator`]: smoothed autocorrelation of the noise, level in dBov and reflection
//!   coefficients by Levinson-Durbin (an all-pole model of the spectral envelope).
//! - [`CnParams`]: the RFC 3389 §3 payload. Byte 0 is the noise level in -dBov (§3.1;
//!   0 dBov is a full-scale square wave, i.e. RMS 32767 here, so a 0 dBm0 sine is
//!   -6.15 dBov); bytes 1..=M are the reflection coefficients (§3.2) in ascending order,
//!   each mapped linearly to 8 bits as `N = round(128 k) + 127` (0..=254), the mapping
//!   WebRTC's CNG uses (except its order-12 payloads, which it sends without the 127
//!   offset; we model at most order 10, so those arrive truncated and misread).
//!   Sign convention, also WebRTC's: `A(z) = 1 + sum a_i z^-i`, `k_m = a_m` of the
//!   order-m predictor, so low-pass noise has `k_1 < 0`.
//! - [`ComfortNoise`]: Gaussian white excitation through the all-pole synthesis filter,
//!   scaled so the output level is the transmitted level (the excitation power is the
//!   level times the prediction error `prod(1 - k_i^2)`), with level changes smoothed
//!   over a frame.

/// Highest model order produced and used (coefficients beyond it in a received payload
/// are ignored, as RFC 3389 §3 allows).
pub const MAX_ORDER: usize = 10;

/// 0 dBov as a mean square in 16-bit linear (full-scale square wave).
const DBOV_REF_POWER: f32 = 32767.0 * 32767.0;
/// Lowest level the payload can carry (-127 dBov, RFC 3389 §3.1).
const MIN_DBOV: f32 = -127.0;

fn power_to_dbov(power: f32) -> f32 {
    if power <= 0.0 {
        return MIN_DBOV;
    }
    (10.0 * libm::log10f(power / DBOV_REF_POWER)).max(MIN_DBOV)
}

fn dbov_to_power(dbov: f32) -> f32 {
    DBOV_REF_POWER * libm::powf(10.0, dbov / 10.0)
}

/// Mean square of a frame.
fn frame_power(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    let sum: f32 = frame.iter().map(|&s| s as f32 * s as f32).sum();
    sum / frame.len() as f32
}

// ------------------------------------------------------------------------------------
// VAD
// ------------------------------------------------------------------------------------

/// Energy voice activity detector with a minimum-statistics noise floor and hangover.
#[derive(Debug, Clone)]
pub struct Vad {
    /// Minimum frame energy of each of the last [`Vad::SUB_WINDOWS`] completed
    /// sub-windows (`f32::INFINITY` while unfilled).
    sub_min: [f32; Vad::SUB_WINDOWS],
    /// Next slot of `sub_min` to overwrite.
    sub_idx: usize,
    /// Minimum of the sub-window being filled, and its frame count.
    cur_min: f32,
    cur_count: u32,
    /// Frames of hangover left.
    hang: u32,
    active: bool,
}

impl Default for Vad {
    fn default() -> Self {
        Self::new()
    }
}

impl Vad {
    /// Energy above the noise floor that counts as speech, in dB.
    pub const THRESHOLD_DB: f32 = 9.0;
    /// Frames (10 ms each) speech is held after the last frame above the threshold.
    pub const HANGOVER_FRAMES: u32 = 20;
    /// Frames below this level (dBov) are never speech (idle channel noise).
    pub const ABSOLUTE_FLOOR_DBOV: f32 = -60.0;
    /// The floor is the quietest frame of the last `SUB_WINDOWS * SUB_FRAMES` frames
    /// (1.6 s): speech always pauses within that, and a new stationary noise is learnt
    /// within it.
    const SUB_WINDOWS: usize = 8;
    const SUB_FRAMES: u32 = 20;

    /// A detector that has heard nothing yet.
    pub const fn new() -> Self {
        Vad {
            sub_min: [f32::INFINITY; Vad::SUB_WINDOWS],
            sub_idx: 0,
            cur_min: f32::INFINITY,
            cur_count: 0,
            hang: 0,
            active: false,
        }
    }

    fn floor(&self) -> f32 {
        self.sub_min.iter().fold(self.cur_min, |m, &v| m.min(v))
    }

    /// Classify one frame (any length, normally 10 ms); true while speech is active
    /// (including the hangover).
    pub fn process(&mut self, frame: &[i16]) -> bool {
        let e = frame_power(frame);
        // Minimum statistics: this frame joins the window before the decision, so a
        // quieter frame lowers the floor at once and the first frame is its own floor.
        self.cur_min = self.cur_min.min(e);
        self.cur_count += 1;
        let floor = self.floor().max(1.0);
        if self.cur_count == Self::SUB_FRAMES {
            self.sub_min[self.sub_idx] = self.cur_min;
            self.sub_idx = (self.sub_idx + 1) % Self::SUB_WINDOWS;
            self.cur_min = f32::INFINITY;
            self.cur_count = 0;
        }
        let threshold = floor * libm::powf(10.0, Self::THRESHOLD_DB / 10.0);
        let loud = e > threshold && power_to_dbov(e) > Self::ABSOLUTE_FLOOR_DBOV;
        if loud {
            self.hang = Self::HANGOVER_FRAMES;
            self.active = true;
        } else if self.hang > 0 {
            self.hang -= 1;
        } else {
            self.active = false;
        }
        self.active
    }

    /// Result of the last [`Vad::process`].
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The noise floor in dBov: the quietest 10 ms of the last 1.6 s (for stationary
    /// noise about 2 dB below its mean level).
    pub fn noise_floor_dbov(&self) -> f32 {
        power_to_dbov(self.floor())
    }
}

// ------------------------------------------------------------------------------------
// CN payload
// ------------------------------------------------------------------------------------

/// Why a CN payload could not be built or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CnError {
    /// A CN payload has at least the level byte (RFC 3389 §3).
    EmptyPayload,
    /// The output buffer cannot hold the level byte and the coefficients.
    BufferTooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
}

/// Comfort noise parameters: what one RFC 3389 CN payload carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CnParams {
    /// Noise level in dBov (0 down to -127).
    pub level_dbov: f32,
    /// Model order M (0..=[`MAX_ORDER`]); 0 means white noise.
    pub order: usize,
    /// Reflection coefficients k_1..k_M in (-1, 1); entries past `order` are 0.
    pub reflection: [f32; MAX_ORDER],
}

impl CnParams {
    /// White noise at `level_dbov`.
    pub const fn white(level_dbov: f32) -> Self {
        CnParams {
            level_dbov,
            order: 0,
            reflection: [0.0; MAX_ORDER],
        }
    }

    /// The level byte: -dBov rounded, 0..=127, most significant bit 0 (§3.1).
    pub fn level_byte(&self) -> u8 {
        libm::roundf(-self.level_dbov).clamp(0.0, 127.0) as u8
    }

    /// Write the payload (1 + order bytes) into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, CnError> {
        let order = self.order.min(MAX_ORDER);
        let needed = 1 + order;
        if out.len() < needed {
            return Err(CnError::BufferTooShort {
                needed,
                got: out.len(),
            });
        }
        out[0] = self.level_byte();
        for (o, &k) in out[1..needed].iter_mut().zip(&self.reflection[..order]) {
            *o = (libm::roundf(k * 128.0) + 127.0).clamp(0.0, 254.0) as u8;
        }
        Ok(needed)
    }

    /// Parse a payload. The unused top bit of the level byte is ignored; coefficients
    /// beyond [`MAX_ORDER`] are dropped (the decoder may reduce the order, §3).
    pub fn decode(payload: &[u8]) -> Result<CnParams, CnError> {
        let (&level, coeffs) = payload.split_first().ok_or(CnError::EmptyPayload)?;
        let order = coeffs.len().min(MAX_ORDER);
        let mut reflection = [0.0; MAX_ORDER];
        for (k, &n) in reflection.iter_mut().zip(&coeffs[..order]) {
            // 255 is outside the mapping; treat it like 254.
            *k = (n.min(254) as f32 - 127.0) / 128.0;
        }
        Ok(CnParams {
            level_dbov: -((level & 0x7f) as f32),
            order,
            reflection,
        })
    }

    /// True when `other` describes audibly different noise: level apart by more than
    /// `level_db`, or the spectral model changed (any coefficient by more than 0.2, well
    /// above the estimation noise of stationary noise).
    /// The transmitter sends a new CN packet then (RFC 3389 §4).
    pub fn differs_from(&self, other: &CnParams, level_db: f32) -> bool {
        if libm::fabsf(self.level_dbov - other.level_dbov) > level_db || self.order != other.order {
            return true;
        }
        self.reflection
            .iter()
            .zip(&other.reflection)
            .any(|(a, b)| libm::fabsf(a - b) > 0.2)
    }
}

// ------------------------------------------------------------------------------------
// Estimator
// ------------------------------------------------------------------------------------

/// Background noise analyser: feed it the frames the VAD calls silence.
#[derive(Debug, Clone)]
pub struct CnEstimator {
    /// Smoothed autocorrelation per sample, lags 0..=MAX_ORDER.
    r: [f32; MAX_ORDER + 1],
    /// Last MAX_ORDER samples of the previous frame (lags across frame edges).
    tail: [f32; MAX_ORDER],
    frames: u32,
}

impl Default for CnEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl CnEstimator {
    /// Smoothing weight of a new frame once the first [`Self::WARMUP`] frames are in.
    const ALPHA: f32 = 0.05;
    /// Frames averaged uniformly before exponential smoothing starts.
    const WARMUP: u32 = 20;

    /// An estimator with no noise learnt yet.
    pub const fn new() -> Self {
        CnEstimator {
            r: [0.0; MAX_ORDER + 1],
            tail: [0.0; MAX_ORDER],
            frames: 0,
        }
    }

    /// Number of frames analysed so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Forget everything learnt.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Learn from one frame of background noise.
    pub fn analyse(&mut self, frame: &[i16]) {
        if frame.is_empty() {
            return;
        }
        let n = frame.len();
        let tail = self.tail;
        let x = |i: isize| -> f32 {
            if i >= 0 {
                frame[i as usize] as f32
            } else {
                tail[(MAX_ORDER as isize + i) as usize]
            }
        };
        let mut r = [0f32; MAX_ORDER + 1];
        for (lag, rl) in r.iter_mut().enumerate() {
            let mut acc = 0f32;
            for i in 0..n as isize {
                acc += x(i) * x(i - lag as isize);
            }
            *rl = acc / n as f32;
        }
        // Keep the tail for the next frame's cross-edge products.
        for j in 0..MAX_ORDER {
            let i = n as isize - MAX_ORDER as isize + j as isize;
            self.tail[j] = x(i);
        }
        self.frames = self.frames.saturating_add(1);
        let w = if self.frames <= Self::WARMUP {
            1.0 / self.frames as f32
        } else {
            Self::ALPHA
        };
        for (acc, v) in self.r.iter_mut().zip(r) {
            *acc += w * (v - *acc);
        }
    }

    /// Noise level in dBov learnt so far.
    pub fn level_dbov(&self) -> f32 {
        power_to_dbov(self.r[0])
    }

    /// CN parameters with a model of `order` (clamped to [`MAX_ORDER`]; 0 for level only).
    pub fn params(&self, order: usize) -> CnParams {
        let order = order.min(MAX_ORDER);
        let mut p = CnParams::white(self.level_dbov());
        if order == 0 || self.r[0] <= 0.0 {
            return p;
        }
        // Lag window (small bandwidth expansion) and a -40 dB white noise floor keep the
        // recursion well conditioned on tonal or very coloured noise.
        let mut r = self.r;
        r[0] *= 1.0001;
        for (lag, v) in r.iter_mut().enumerate().skip(1) {
            let g = 2.0 * core::f32::consts::PI * 60.0 * lag as f32 / 8000.0;
            *v *= libm::expf(-0.5 * g * g);
        }
        p.order = order;
        p.reflection = levinson(&r, order);
        p
    }
}

/// Levinson-Durbin: reflection coefficients of the order-`order` predictor for the
/// autocorrelation `r` (convention `A(z) = 1 + sum a_i z^-i`, `k_m = a_m^(m)`).
fn levinson(r: &[f32; MAX_ORDER + 1], order: usize) -> [f32; MAX_ORDER] {
    let mut a = [0f32; MAX_ORDER + 1];
    let mut k = [0f32; MAX_ORDER];
    let mut err = r[0];
    for m in 1..=order {
        if err <= 0.0 {
            break;
        }
        let mut acc = r[m];
        for i in 1..m {
            acc += a[i] * r[m - i];
        }
        let km = (-acc / err).clamp(-0.999, 0.999);
        let prev = a;
        for i in 1..m {
            a[i] = prev[i] + km * prev[m - i];
        }
        a[m] = km;
        k[m - 1] = km;
        err *= 1.0 - km * km;
    }
    k
}

/// Direct-form predictor coefficients a_1..a_M from reflection coefficients (step-up).
fn step_up(k: &[f32; MAX_ORDER], order: usize) -> [f32; MAX_ORDER + 1] {
    let mut a = [0f32; MAX_ORDER + 1];
    a[0] = 1.0;
    for m in 1..=order {
        let prev = a;
        for i in 1..m {
            a[i] = prev[i] + k[m - 1] * prev[m - i];
        }
        a[m] = k[m - 1];
    }
    a
}

// ------------------------------------------------------------------------------------
// Discontinuous transmission
// ------------------------------------------------------------------------------------

/// What to send for one transmit frame (the output of [`Dtx::process`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TxFrame {
    /// Speech (or its hangover): send the frame as audio.
    Audio,
    /// Silence, and the far end needs (new) noise parameters: send a CN packet.
    Cn(CnParams),
    /// Silence, nothing changed: send nothing.
    Silent,
}

/// Transmit-side silence suppression: [`Vad`] + [`CnEstimator`] + the RFC 3389 §4 rule
/// of when to send a CN packet (at the start of every silence period, when the noise
/// changes, and every [`Dtx::REFRESH_FRAMES`] so a late joiner or a lost packet heals).
#[derive(Debug, Clone)]
pub struct Dtx {
    vad: Vad,
    est: CnEstimator,
    order: usize,
    last_sent: Option<CnParams>,
    since_sent: u32,
}

impl Dtx {
    /// Frames between CN packets while the noise stays the same (5 s).
    pub const REFRESH_FRAMES: u32 = 500;
    /// Level change that triggers a new CN packet, in dB.
    pub const LEVEL_STEP_DB: f32 = 2.0;

    /// Silence suppression sending a spectral model of `order` (0 for level only; clamped
    /// to [`MAX_ORDER`]).
    pub const fn new(order: usize) -> Self {
        Dtx {
            vad: Vad::new(),
            est: CnEstimator::new(),
            order: if order > MAX_ORDER { MAX_ORDER } else { order },
            last_sent: None,
            since_sent: 0,
        }
    }

    /// The voice activity detector (for its state and figures).
    pub fn vad(&self) -> &Vad {
        &self.vad
    }

    /// Decide what to send for this frame.
    pub fn process(&mut self, frame: &[i16]) -> TxFrame {
        if self.vad.process(frame) {
            self.last_sent = None;
            return TxFrame::Audio;
        }
        self.est.analyse(frame);
        let now = self.est.params(self.order);
        self.since_sent = self.since_sent.saturating_add(1);
        let send = match &self.last_sent {
            None => true,
            Some(prev) => {
                self.since_sent >= Self::REFRESH_FRAMES
                    || now.differs_from(prev, Self::LEVEL_STEP_DB)
            }
        };
        if send {
            self.last_sent = Some(now);
            self.since_sent = 0;
            TxFrame::Cn(now)
        } else {
            TxFrame::Silent
        }
    }
}

// ------------------------------------------------------------------------------------
// Generator
// ------------------------------------------------------------------------------------

/// Comfort noise generator (receive side).
#[derive(Debug, Clone)]
pub struct ComfortNoise {
    /// Synthesis filter 1/A(z), direct form.
    a: [f32; MAX_ORDER + 1],
    order: usize,
    /// Past outputs y[n-1..n-M].
    mem: [f32; MAX_ORDER],
    /// Excitation RMS now and the target for the next frame.
    gain: f32,
    target_gain: f32,
    rng: u64,
}

impl Default for ComfortNoise {
    fn default() -> Self {
        Self::new()
    }
}

impl ComfortNoise {
    /// A silent generator (no parameters received yet).
    pub const fn new() -> Self {
        let mut a = [0.0; MAX_ORDER + 1];
        a[0] = 1.0;
        ComfortNoise {
            a,
            order: 0,
            mem: [0.0; MAX_ORDER],
            gain: 0.0,
            target_gain: 0.0,
            rng: 0x2545_f491_4f6c_dd1d,
        }
    }

    /// Take new parameters (a received CN packet). The level moves to the new one over
    /// the next frame; the spectral shape changes at once.
    pub fn set_params(&mut self, p: &CnParams) {
        let order = p.order.min(MAX_ORDER);
        let mut k = [0f32; MAX_ORDER];
        let mut pred_gain = 1.0f32;
        for i in 0..order {
            k[i] = p.reflection[i].clamp(-0.995, 0.995);
            pred_gain *= 1.0 - k[i] * k[i];
        }
        self.a = step_up(&k, order);
        self.order = order;
        let power = if p.level_dbov <= MIN_DBOV {
            0.0
        } else {
            dbov_to_power(p.level_dbov)
        };
        self.target_gain = libm::sqrtf(power * pred_gain);
    }

    /// Silence at once (e.g. the call ended or speech resumed).
    pub fn mute(&mut self) {
        self.gain = 0.0;
        self.target_gain = 0.0;
        self.mem = [0.0; MAX_ORDER];
    }

    /// One Gaussian sample (sum of uniforms, 12-term Irwin-Hall, unit variance).
    fn gauss(&mut self) -> f32 {
        let mut s = 0f32;
        for _ in 0..12 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            s += (self.rng >> 40) as f32 / (1u64 << 24) as f32;
        }
        s - 6.0
    }

    /// Fill `out` with comfort noise.
    pub fn fill(&mut self, out: &mut [i16]) {
        let n = out.len().max(1) as f32;
        let step = (self.target_gain - self.gain) / n;
        for o in out.iter_mut() {
            self.gain += step;
            let mut y = self.gain * self.gauss();
            for i in 0..self.order {
                y -= self.a[i + 1] * self.mem[i];
            }
            self.mem.copy_within(0..MAX_ORDER - 1, 1);
            self.mem[0] = y;
            *o = crate::sat16(y);
        }
        self.gain = self.target_gain;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsig::{Noise, SpeechLike};
    use crate::FRAME;
    use std::vec::Vec;

    /// White Gaussian noise at `dbov`, optionally low-passed by a one-pole filter
    /// (`pole` 0 = white), normalised to the level.
    fn noise(seed: u64, dbov: f32, pole: f32, n: usize) -> Vec<i16> {
        let mut g = Noise::new(seed);
        let mut y = 0f32;
        let raw: Vec<f32> = (0..n)
            .map(|_| {
                y = g.gauss() + pole * y;
                y
            })
            .collect();
        let p = raw.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let scale = libm::sqrtf(dbov_to_power(dbov) / p);
        raw.iter().map(|v| crate::sat16(v * scale)).collect()
    }

    fn level(x: &[i16]) -> f32 {
        power_to_dbov(frame_power(x))
    }

    /// Fraction of power below 1 kHz (a crude spectral-shape figure).
    fn low_fraction(x: &[i16]) -> f32 {
        // Two-pole low-pass at ~1 kHz, compare powers.
        let mut y = 0f32;
        let mut z = 0f32;
        let c = 0.55;
        let mut pl = 0f32;
        let mut pt = 0f32;
        for &s in x {
            y += c * (s as f32 - y);
            z += c * (y - z);
            pl += z * z;
            pt += s as f32 * s as f32;
        }
        pl / pt
    }

    #[test]
    fn payload_round_trip_and_wire_format() {
        let mut p = CnParams::white(-42.3);
        p.order = 3;
        p.reflection[..3].copy_from_slice(&[-0.8, 0.25, 0.0]);
        let mut buf = [0u8; 8];
        assert_eq!(p.encode(&mut buf), Ok(4));
        assert_eq!(&buf[..4], &[42, 127 - 102, 127 + 32, 127]);
        let q = CnParams::decode(&buf[..4]).unwrap();
        assert_eq!(q.level_dbov, -42.0);
        assert_eq!(q.order, 3);
        for i in 0..3 {
            assert!(libm::fabsf(q.reflection[i] - p.reflection[i]) <= 1.0 / 256.0 + 1e-6);
        }
        // Level-only payload (the RFC 1890 draft form) and bad input.
        assert_eq!(
            CnParams::decode(&[0x80 | 70]).unwrap(),
            CnParams::white(-70.0)
        );
        assert_eq!(CnParams::decode(&[]), Err(CnError::EmptyPayload));
        assert_eq!(
            p.encode(&mut buf[..2]),
            Err(CnError::BufferTooShort { needed: 4, got: 2 })
        );
        let long = [30u8; 20];
        assert_eq!(CnParams::decode(&long).unwrap().order, MAX_ORDER);
        assert_eq!(CnParams::white(-200.0).level_byte(), 127);
        assert_eq!(CnParams::white(3.0).level_byte(), 0);
    }

    #[test]
    fn level_round_trips_within_1_db() {
        for (dbov, pole) in [
            (-30.0, 0.0),
            (-45.0, 0.0),
            (-60.0, 0.7),
            (-25.0, 0.9),
            (-70.0, -0.5),
        ] {
            let x = noise(5, dbov, pole, 8000);
            let mut est = CnEstimator::new();
            for f in x.chunks(FRAME) {
                est.analyse(f);
            }
            let mut buf = [0u8; 1 + MAX_ORDER];
            let n = est.params(MAX_ORDER).encode(&mut buf).unwrap();
            let rx = CnParams::decode(&buf[..n]).unwrap();
            let mut cn = ComfortNoise::new();
            cn.set_params(&rx);
            let mut out = std::vec![0i16; 16000];
            for f in out.chunks_mut(FRAME) {
                cn.fill(f);
            }
            let got = level(&out[800..]);
            let sent = level(&x);
            assert!(
                libm::fabsf(got - sent) < 1.0,
                "{dbov}/{pole}: sent {sent:.2}, got {got:.2}"
            );
        }
    }

    #[test]
    fn spectral_shape_is_reproduced() {
        let x = noise(9, -35.0, 0.85, 16000); // strongly low-pass
        let mut est = CnEstimator::new();
        for f in x.chunks(FRAME) {
            est.analyse(f);
        }
        let p = est.params(4);
        assert!(
            p.reflection[0] < -0.6,
            "low-pass noise has k1 < 0: {:?}",
            p.reflection
        );
        let mut buf = [0u8; 5];
        est.params(4).encode(&mut buf).unwrap();
        let mut cn = ComfortNoise::new();
        cn.set_params(&CnParams::decode(&buf).unwrap());
        let mut shaped = std::vec![0i16; 16000];
        cn.fill(&mut shaped);
        let mut flat = std::vec![0i16; 16000];
        let mut white = ComfortNoise::new();
        white.set_params(&CnParams::white(-35.0));
        white.fill(&mut flat);
        let (lx, ls, lw) = (low_fraction(&x), low_fraction(&shaped), low_fraction(&flat));
        assert!(libm::fabsf(lx - ls) < 0.1, "input {lx:.2} shaped {ls:.2}");
        assert!(
            lw < lx - 0.2,
            "white {lw:.2} should differ from input {lx:.2}"
        );
    }

    #[test]
    fn vad_ignores_stationary_noise_and_finds_speech_bursts() {
        // (noise dBov, noise colour, speech dBm0): white, pinkish and strongly low-pass
        // backgrounds, speech 15 to 24 dB above them.
        for (noise_dbov, pole, speech_dbm0) in [
            (-50.0, 0.3, -20.0),
            (-40.0, 0.0, -10.0),
            (-32.0, 0.8, -3.0),
            (-58.0, 0.5, -30.0),
        ] {
            let case = std::format!("noise {noise_dbov} dBov/{pole}, speech {speech_dbm0} dBm0");
            let bg = noise(3, noise_dbov, pole, 8000 * 12);
            let mut speech = SpeechLike::new(21, speech_dbm0);
            let mut sig = bg.clone();
            let mut clean = std::vec![0i16; bg.len()];
            // Speech bursts at 4-5 s and 8-9.5 s.
            let bursts = [(4 * 8000, 5 * 8000), (8 * 8000, 9 * 8000 + 4000)];
            for &(a, b) in &bursts {
                for i in a..b {
                    clean[i] = speech.sample();
                    sig[i] = sig[i].saturating_add(clean[i]);
                }
            }
            let mut vad = Vad::new();
            let decisions: Vec<bool> = sig.chunks(FRAME).map(|f| vad.process(f)).collect();
            // Noise only (after 0.5 s, away from bursts and hangovers): never active.
            let noise_frames: Vec<usize> = (50..400).chain(560..800).chain(1000..1200).collect();
            let false_alarms = noise_frames.iter().filter(|&&k| decisions[k]).count();
            assert_eq!(false_alarms, 0, "{case}");
            // Inside each burst, speech is detected for most frames (SpeechLike has
            // pauses, which the hangover bridges).
            for &(a, b) in &bursts {
                let frames = a / FRAME..b / FRAME;
                let hits = frames.clone().filter(|&k| decisions[k]).count();
                assert!(
                    hits * 10 >= frames.len() * 8,
                    "{case}: {hits}/{}",
                    frames.len()
                );
                // Onset: detected by the first frame where speech is 12 dB above noise.
                let first_loud = frames
                    .clone()
                    .find(|&k| level(&clean[k * FRAME..(k + 1) * FRAME]) > noise_dbov + 12.0)
                    .unwrap();
                assert!(
                    decisions[first_loud],
                    "{case}: onset at frame {first_loud} missed"
                );
            }
            let floor = vad.noise_floor_dbov();
            assert!(
                (noise_dbov - 5.0..noise_dbov).contains(&floor),
                "{case}: floor {floor}"
            );
        }
    }

    #[test]
    fn vad_learns_a_noise_step_and_hangover_ends() {
        let mut vad = Vad::new();
        let quiet = noise(1, -65.0, 0.0, 8000);
        let loud = noise(2, -40.0, 0.0, 8000 * 4);
        for f in quiet.chunks(FRAME) {
            assert!(!vad.process(f));
        }
        let d: Vec<bool> = loud.chunks(FRAME).map(|f| vad.process(f)).collect();
        assert!(d[0], "a 25 dB step is activity at first");
        // Learnt as noise within the 1.6 s window plus the hangover.
        let learnt = d.iter().rposition(|&a| a).unwrap() + 1;
        assert!(
            (150..=190).contains(&learnt),
            "learnt after {learnt} frames"
        );
        // Hangover: a single loud frame keeps the VAD active for HANGOVER_FRAMES more.
        let burst = noise(4, -10.0, 0.0, FRAME);
        assert!(vad.process(&burst));
        let tail = noise(5, -40.0, 0.0, FRAME * 30);
        let d: Vec<bool> = tail.chunks(FRAME).map(|f| vad.process(f)).collect();
        let held = d.iter().take_while(|&&a| a).count();
        assert_eq!(held as u32, Vad::HANGOVER_FRAMES);
    }

    #[test]
    fn dtx_sends_cn_at_silence_start_on_change_and_periodically() {
        let mut dtx = Dtx::new(4);
        let quiet = noise(7, -55.0, 0.5, 8000 * 12);
        let mut frames = quiet.chunks(FRAME);
        // First frame: silence from the start, CN at once.
        match dtx.process(frames.next().unwrap()) {
            TxFrame::Cn(p) => assert!((-57.0..-53.0).contains(&p.level_dbov), "{p:?}"),
            other => panic!("{other:?}"),
        }
        // Then mostly silence: no chatter (at most one correction once the estimate has
        // settled, beyond the refreshes), and never more than REFRESH_FRAMES between two.
        let mut cn_at = std::vec![0];
        for (k, f) in frames.enumerate() {
            if let TxFrame::Cn(_) = dtx.process(f) {
                cn_at.push(k + 1);
            }
        }
        let late = cn_at.iter().filter(|&&k| k > 50).count();
        assert!(late <= 1 + 1200 / 500, "{cn_at:?}");
        assert!(cn_at.windows(2).all(|w| w[1] - w[0] <= 500), "{cn_at:?}");
        assert!(1200 - cn_at.last().unwrap() <= 500, "{cn_at:?}");
        // Speech: audio; after speech and the hangover, a CN packet starts the silence.
        let mut speech = SpeechLike::new(2, -15.0);
        let mut talk = std::vec![0i16; 8000];
        speech.fill(&mut talk);
        // The same background noise goes on under the speech.
        for (t, n) in talk.iter_mut().zip(&quiet[8000..]) {
            *t = t.saturating_add(*n);
        }
        let kinds: Vec<TxFrame> = talk.chunks(FRAME).map(|f| dtx.process(f)).collect();
        assert!(kinds.iter().filter(|k| **k == TxFrame::Audio).count() > 80);
        let after: Vec<TxFrame> = quiet[16000..24000]
            .chunks(FRAME)
            .map(|f| dtx.process(f))
            .collect();
        let first_silent = after.iter().position(|k| *k != TxFrame::Audio).unwrap();
        assert!(first_silent <= Vad::HANGOVER_FRAMES as usize + 1);
        assert!(matches!(after[first_silent], TxFrame::Cn(_)));
        // A noise level step of 10 dB: after at most 1.6 s of "speech" the VAD learns it,
        // and CN packets follow the estimate up to the new level in a few 2 dB steps.
        let louder = noise(8, -45.0, 0.5, 8000 * 4);
        let sent: Vec<CnParams> = louder
            .chunks(FRAME)
            .filter_map(|f| match dtx.process(f) {
                TxFrame::Cn(p) => Some(p),
                _ => None,
            })
            .collect();
        let last = sent.last().expect("CN after the step");
        assert!((-47.0..-43.0).contains(&last.level_dbov), "{sent:?}");
        assert!(sent.len() <= 8, "{sent:?}");
    }

    #[test]
    fn generator_level_changes_smoothly_and_mutes() {
        let mut cn = ComfortNoise::new();
        let mut f = [0i16; FRAME];
        cn.fill(&mut f);
        assert!(f.iter().all(|&s| s == 0), "silent before any parameters");
        cn.set_params(&CnParams::white(-30.0));
        let mut ramp = [0i16; FRAME];
        cn.fill(&mut ramp);
        let first = level(&ramp[..20]);
        let last = level(&ramp[60..]);
        assert!(first < last - 6.0, "fade-in {first} -> {last}");
        cn.mute();
        cn.fill(&mut f);
        assert!(f.iter().all(|&s| s == 0));
        assert!(CnParams::white(-30.0).differs_from(&CnParams::white(-33.0), 2.0));
        assert!(!CnParams::white(-30.0).differs_from(&CnParams::white(-31.0), 2.0));
    }
}
