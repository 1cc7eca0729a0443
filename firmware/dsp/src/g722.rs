//! ITU-T G.722 sub-band ADPCM wideband codec at 64, 56 and 48 kbit/s.
//!
//! 16 kHz linear PCM goes in, one code byte per *pair* of input samples comes out (the
//! 8 kHz code rate of G.722 §1.1): 6 lower-band bits and 2 higher-band bits at 64 kbit/s,
//! 5 + 2 at 56 kbit/s and 4 + 2 at 48 kbit/s. At the lower two rates each byte carries one
//! code, right-aligned (the layout SpanDSP calls "unpacked"); the receiver only drops the
//! least significant lower-band bits, which is what makes the three modes interwork
//! (G.722 §1.4.3).
//!
//! Structure, with the block names of G.722 §3 and §4 used in the code:
//! - transmit QMF (§3.1): a 24-tap quadrature mirror filter splits the input into a lower
//!   and a higher band at 8 kHz each;
//! - lower-band encoder (§3.2-§3.6): SUBTRA, QUANTL (60 levels), INVQAL, LOGSCL/SCALEL
//!   (the quantizer scale factor, `nb`/`det`), and the adaptive predictor (block 4: two
//!   poles UPPOL1/UPPOL2, six zeros UPZERO, FILTEP/FILTEZ/PREDIC);
//! - higher-band encoder (§3.7-§3.8): QUANTH (4 levels), INVQAH, LOGSCH/SCALEH, the same
//!   block 4;
//! - decoder (§4): INVQBL (the 6/5/4-bit inverse quantizer chosen by the mode), the same
//!   adaptation, and the receive QMF (§4.4).
//!
//! Arithmetic is the 16-bit fixed point of the ITU reference and is **bit-exact with
//! SpanDSP's `g722_encode`/`g722_decode`** (options 0: 16 kHz, unpacked), which the
//! integration test `tests/g722_spandsp.rs` checks by linking libspandsp. Like SpanDSP, the
//! codec core sees 15-bit samples (the QMF drops one bit on the way in and restores it on
//! the way out).
//!
//! One deliberate difference: where the receive QMF overflows 16 bits (only near full
//! scale), this decoder saturates, as the ITU reference and current SpanDSP do, while the
//! SpanDSP 0.0.6 that Debian ships wraps around (a full-scale click). The test reproduces
//! the wrap in a model QMF fed by [`Decoder::decode_bands`] to stay bit-exact there too.
//!
//! For 8 kHz lines there is also SpanDSP's narrowband shortcut ([`Encoder::encode_8k`],
//! [`Decoder::decode_8k`]): the lower band alone, one code per 8 kHz sample.
//!
//! How to drive it: one [`Encoder`] and one [`Decoder`] per call, created with the
//! negotiated [`Mode`]; feed 10 ms frames with [`Encoder::encode_frame`] (160 samples ->
//! 80 bytes) and [`Decoder::decode_frame`] (80 bytes -> 160 samples), or any even-sized
//! slice with [`Encoder::encode`]/[`Decoder::decode`]. Note RFC 3551 §4.5.2: the RTP clock
//! rate of G.722 is 8000 although the audio is sampled at 16 kHz.

/// Samples in a 10 ms frame at 16 kHz.
pub const WB_FRAME: usize = 160;
/// Code bytes in a 10 ms frame (one per pair of 16 kHz samples).
pub const CODE_FRAME: usize = 80;

/// G.722 operating mode (G.722 Table 1): the bit rate left for audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mode 1: 64 kbit/s, 6 lower-band bits.
    Kbps64,
    /// Mode 2: 56 kbit/s, 5 lower-band bits.
    Kbps56,
    /// Mode 3: 48 kbit/s, 4 lower-band bits.
    Kbps48,
}

impl Mode {
    /// Bits per code (8, 7 or 6).
    pub const fn bits(self) -> u32 {
        match self {
            Mode::Kbps64 => 8,
            Mode::Kbps56 => 7,
            Mode::Kbps48 => 6,
        }
    }

    /// Mode for a bit rate in bit/s, if it is one of the three G.722 rates.
    pub const fn from_bit_rate(bps: u32) -> Option<Mode> {
        match bps {
            64_000 => Some(Mode::Kbps64),
            56_000 => Some(Mode::Kbps56),
            48_000 => Some(Mode::Kbps48),
            _ => None,
        }
    }
}

/// Why an encode or decode call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum G722Error {
    /// The encoder works on sample pairs; the input had an odd number of samples.
    OddSampleCount,
    /// The output buffer is smaller than the input needs.
    OutputTooShort {
        /// Elements the call would write.
        needed: usize,
        /// Elements the buffer has.
        got: usize,
    },
}

// ---- Tables (G.722 §3 and §4, Tables 6-17 in the integer form of the reference) ----

/// QMF coefficients h0..h11 (Table 11), applied to the newest-last history.
const QMF_H: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// QUANTL decision levels (Table 6, scaled by 8), index 1..=29 are used.
const Q6: [i32; 31] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0,
];

/// QUANTL code for negative / positive differences by interval (Table 6, ILN/ILP).
const ILN: [u8; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
const ILP: [u8; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];

/// Inverse quantizer outputs, 4-bit (Table 7, QQ4 scaled), 5-bit and 6-bit (Table 8).
const QM4: [i16; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
const QM5: [i16; 32] = [
    -280, -280, -23352, -17560, -14120, -11664, -9752, -8184, -6864, -5712, -4696, -3784, -2960,
    -2208, -1520, -880, 23352, 17560, 14120, 11664, 9752, 8184, 6864, 5712, 4696, 3784, 2960, 2208,
    1520, 880, 280, -280,
];
const QM6: [i16; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
/// Higher band inverse quantizer (Table 9, QQ2).
const QM2: [i16; 4] = [-7408, -1616, 7408, 1616];

/// Log-scale factor multipliers: lower band by RIL magnitude (Table 12, WL, via RL42) ...
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
/// ... and higher band (Table 13, WH, via RH2).
const WH: [i32; 3] = [0, -214, 798];
const RH2: [usize; 4] = [2, 1, 2, 1];

/// Antilog table for SCALEL/SCALEH (Table 14, ILB).
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

/// Upper limits of the log scale factor (§3.5: 18432 lower band, 22528 higher band).
const NB_MAX_LOW: i32 = 18432;
const NB_MAX_HIGH: i32 = 22528;

#[inline]
fn sat16(x: i32) -> i16 {
    x.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

#[inline]
fn sat15(x: i32) -> i16 {
    x.clamp(-16384, 16383) as i16
}

#[inline]
fn add16(a: i16, b: i16) -> i16 {
    a.saturating_add(b)
}

#[inline]
fn opposite_signs(a: i16, b: i16) -> bool {
    (a ^ b) < 0
}

/// Q15 multiply truncated like the reference (`(a*b) >> 15`).
#[inline]
fn mul15(a: i16, b: i32) -> i32 {
    (a as i32 * b) >> 15
}

/// State of one sub-band ADPCM: scale factor and the pole-zero predictor (block 4).
#[derive(Debug, Clone, Copy)]
struct Band {
    /// Logarithmic quantizer scale factor (NBL/NBH).
    nb: i16,
    /// Quantizer scale factor (DETL/DETH).
    det: i16,
    /// Signal estimate (SL/SH) = pole part + zero part.
    s: i16,
    /// Zero-section signal estimate (SZL/SZH).
    sz: i16,
    /// Previous reconstructed signal (RLT1/RHT1).
    r1: i16,
    /// Partially reconstructed signal, last two (PLT1, PLT2).
    p: [i16; 2],
    /// Pole coefficients (AL1, AL2).
    a: [i16; 2],
    /// Zero coefficients (BL1..BL6).
    b: [i16; 6],
    /// Quantized difference history (DLT0..DLT6).
    d: [i16; 7],
}

impl Band {
    const fn new(det: i16) -> Self {
        Band {
            nb: 0,
            det,
            s: 0,
            sz: 0,
            r1: 0,
            p: [0; 2],
            a: [0; 2],
            b: [0; 6],
            d: [0; 7],
        }
    }

    /// LOGSCL/LOGSCH then SCALEL/SCALEH (§3.5, §3.6): adapt `nb` with the multiplier `w`,
    /// then `det` from its antilog. `shift` is 8 (lower) or 10 (higher band).
    fn scale(&mut self, w: i32, nb_max: i32, shift: i32) {
        let nb = ((self.nb as i32 * 127) >> 7) + w;
        self.nb = nb.clamp(0, nb_max) as i16;
        let mant = ILB[((self.nb >> 6) & 31) as usize];
        let exp = shift - (self.nb as i32 >> 11);
        let v = if exp < 0 { mant << -exp } else { mant >> exp };
        self.det = (v << 2) as i16;
    }

    /// Block 4 (§3.6): RECONS, PARREC, UPPOL2, UPPOL1, FILTEP, UPZERO/DELAYA, FILTEZ,
    /// PREDIC, driven by the quantized difference `dq` of this sample.
    fn adapt(&mut self, dq: i16) {
        // RECONS and PARREC.
        let r = add16(self.s, dq);
        let p = add16(self.sz, dq);

        // UPPOL2: second pole coefficient, limited to +-12288.
        let a1x4 = sat16((self.a[0] as i32) << 2) as i32;
        let f = if opposite_signs(p, self.p[0]) {
            a1x4
        } else {
            (-a1x4).min(32767)
        };
        let sg2 = if opposite_signs(p, self.p[1]) {
            -128
        } else {
            128
        };
        let a2 = (sg2 + (f >> 7) + mul15(self.a[1], 32512)).clamp(-12288, 12288) as i16;

        // UPPOL1: first pole coefficient, limited to +-(15360 - a2) (stability, §3.6.3).
        let sg1: i16 = if opposite_signs(p, self.p[0]) {
            -192
        } else {
            192
        };
        let mut a1 = add16(sg1, mul15(self.a[0], 32640) as i16);
        let lim = 15360i16.saturating_sub(a2);
        if (a1 as i32).abs() > lim as i32 {
            a1 = if a1 < 0 { -lim } else { lim };
        }

        // FILTEP: pole-section estimate from the new coefficients.
        let sp = add16(
            mul15(a1, add16(r, r) as i32) as i16,
            mul15(a2, add16(self.r1, self.r1) as i32) as i16,
        );
        self.r1 = r;
        self.a = [a1, a2];
        self.p = [p, self.p[0]];

        // UPZERO, DELAYA, FILTEZ: sign-sign zero update with leakage, then the estimate.
        let step: i16 = if dq == 0 { 0 } else { 128 };
        self.d[0] = dq;
        let mut sz: i32 = 0;
        for i in (0..6).rev() {
            let g = if opposite_signs(self.d[i + 1], dq) {
                -step
            } else {
                step
            };
            self.b[i] = add16(g, mul15(self.b[i], 32640) as i16);
            sz += mul15(self.b[i], add16(self.d[i], self.d[i]) as i32);
            self.d[i + 1] = self.d[i];
        }
        self.sz = sat16(sz);

        // PREDIC.
        self.s = add16(sp, self.sz);
    }
}

/// 12-tap QMF history, newest last. Each sample is stored twice (at `pos` and
/// `pos + 12`) so the last 12 are always contiguous at `pos + 1..pos + 13`.
#[derive(Debug, Clone, Copy)]
struct QmfHistory {
    x: [i16; 24],
    y: [i16; 24],
    pos: usize,
}

/// QMF coefficients in the order they meet the history in the reversed filter.
const QMF_H_REV: [i32; 12] = {
    let mut r = [0; 12];
    let mut i = 0;
    while i < 12 {
        r[i] = QMF_H[11 - i];
        i += 1;
    }
    r
};

impl QmfHistory {
    const fn new() -> Self {
        QmfHistory {
            x: [0; 24],
            y: [0; 24],
            pos: 0,
        }
    }

    fn push(&mut self, x: i16, y: i16) {
        self.pos = if self.pos == 11 { 0 } else { self.pos + 1 };
        self.x[self.pos] = x;
        self.x[self.pos + 12] = x;
        self.y[self.pos] = y;
        self.y[self.pos + 12] = y;
    }

    /// Sum over the last 12 samples, oldest first, times `h`. |sum| <= 32768 * 6491
    /// (the sum of |h|), far inside an i32.
    #[inline]
    fn dot(&self, hist: &[i16; 24], h: &[i32; 12]) -> i32 {
        let w = &hist[self.pos + 1..self.pos + 13];
        let mut acc: i32 = 0;
        for (&s, &c) in w.iter().zip(h) {
            acc += s as i32 * c;
        }
        acc
    }
}

/// G.722 encoder (transmit QMF + two SB-ADPCM encoders), fixed size, no allocation.
#[derive(Debug, Clone)]
pub struct Encoder {
    mode: Mode,
    qmf: QmfHistory,
    low: Band,
    high: Band,
}

impl Encoder {
    /// Encoder in its reset state (G.722 §3.6 initial values: DETL = 32, DETH = 8).
    pub const fn new(mode: Mode) -> Self {
        Encoder {
            mode,
            qmf: QmfHistory::new(),
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// The mode this encoder produces.
    pub const fn mode(&self) -> Mode {
        self.mode
    }

    /// Back to the reset state, keeping the mode.
    pub fn reset(&mut self) {
        *self = Encoder::new(self.mode);
    }

    /// Encode one 10 ms frame: 160 samples at 16 kHz into 80 code bytes.
    pub fn encode_frame(&mut self, pcm: &[i16; WB_FRAME], out: &mut [u8; CODE_FRAME]) {
        for (pair, code) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            *code = self.encode_pair(pair[0], pair[1]);
        }
    }

    /// Encode an even number of 16 kHz samples into `pcm.len() / 2` bytes of `out`;
    /// returns the number of bytes written.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, G722Error> {
        if !pcm.len().is_multiple_of(2) {
            return Err(G722Error::OddSampleCount);
        }
        let needed = pcm.len() / 2;
        if out.len() < needed {
            return Err(G722Error::OutputTooShort {
                needed,
                got: out.len(),
            });
        }
        for (pair, code) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            *code = self.encode_pair(pair[0], pair[1]);
        }
        Ok(needed)
    }

    /// One code from two consecutive input samples (`first` is the older one).
    pub fn encode_pair(&mut self, first: i16, second: i16) -> u8 {
        // Transmit QMF (§3.1): 4096 DC gain per filter, two filters summed, 15-bit core.
        self.qmf.push(first, second);
        let odd = self.qmf.dot(&self.qmf.x, &QMF_H);
        let even = self.qmf.dot(&self.qmf.y, &QMF_H_REV);
        let xl = ((even + odd) >> 14) as i16;
        let xh = ((even - odd) >> 14) as i16;

        let il = self.encode_low(xl);

        // Higher band. SUBTRA, QUANTH (§3.7): two magnitudes around 564 * det.
        let eh = xh.saturating_sub(self.high.s);
        let mag = if eh >= 0 { eh as i32 } else { !(eh as i32) };
        let big = mag >= (564 * self.high.det as i32) >> 12;
        let ih: u8 = match (eh < 0, big) {
            (true, false) => 1,
            (true, true) => 0,
            (false, false) => 3,
            (false, true) => 2,
        };
        let dh = mul15(self.high.det, QM2[ih as usize] as i32) as i16;
        self.high.scale(WH[RH2[ih as usize]], NB_MAX_HIGH, 10);
        self.high.adapt(dh);

        (((ih as u32) << 6 | il as u32) >> (8 - self.mode.bits())) as u8
    }

    /// Narrowband input: encode 8 kHz samples straight into the lower band, one code per
    /// sample, without the QMF (SpanDSP's `G722_SAMPLE_RATE_8000`). The higher-band bits
    /// are sent as 11 (the smallest positive step), so a wideband decoder hears silence
    /// above 4 kHz. Cheaper than [`crate::resample::Upsampler`] + [`Encoder::encode`]
    /// but noisier (about 15 dB SNR on speech against 23 dB, `tests/g722_chain.rs`); use
    /// one or the other for the life of an encoder.
    pub fn encode_8k(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, G722Error> {
        if out.len() < pcm.len() {
            return Err(G722Error::OutputTooShort {
                needed: pcm.len(),
                got: out.len(),
            });
        }
        for (&x, code) in pcm.iter().zip(out.iter_mut()) {
            let il = self.encode_low(x >> 1);
            *code = ((0xC0 | il as u32) >> (8 - self.mode.bits())) as u8;
        }
        Ok(pcm.len())
    }

    /// Lower-band ADPCM of one 15-bit sample; returns the 6-bit code IL.
    fn encode_low(&mut self, xl: i16) -> u8 {
        // SUBTRA, QUANTL (§3.3): find the interval of |el| among Q6 * det.
        let el = xl.saturating_sub(self.low.s);
        let mag = if el >= 0 { el as i32 } else { !(el as i32) };
        let det = self.low.det as i32;
        // First interval i in 1..30 with mag < Q6[i] * det >> 12, else 30. The thresholds
        // rise with i, so a binary search finds the same i as the linear scan of §3.3.
        let (mut lo, mut hi) = (1usize, 30usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if mag < (Q6[mid] * det) >> 12 {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let i = lo;
        let il = if el < 0 { ILN[i] } else { ILP[i] };
        // INVQAL (§3.4) with the 4-bit truncated code, LOGSCL/SCALEL, block 4.
        let ril = (il >> 2) as usize;
        let dl = mul15(self.low.det, QM4[ril] as i32) as i16;
        self.low.scale(WL[RL42[ril]], NB_MAX_LOW, 8);
        self.low.adapt(dl);
        il
    }
}

/// G.722 decoder (two SB-ADPCM decoders + receive QMF), fixed size, no allocation.
#[derive(Debug, Clone)]
pub struct Decoder {
    mode: Mode,
    qmf: QmfHistory,
    low: Band,
    high: Band,
}

impl Decoder {
    /// Decoder in its reset state.
    pub const fn new(mode: Mode) -> Self {
        Decoder {
            mode,
            qmf: QmfHistory::new(),
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// The mode this decoder expects.
    pub const fn mode(&self) -> Mode {
        self.mode
    }

    /// Switch mode (the mode indication comes from outside the bit stream, G.722 §1.4.3);
    /// the adaptive state carries on.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Back to the reset state, keeping the mode.
    pub fn reset(&mut self) {
        *self = Decoder::new(self.mode);
    }

    /// Decode one 10 ms frame: 80 code bytes into 160 samples at 16 kHz.
    pub fn decode_frame(&mut self, data: &[u8; CODE_FRAME], out: &mut [i16; WB_FRAME]) {
        for (&code, pair) in data.iter().zip(out.chunks_exact_mut(2)) {
            let [a, b] = self.decode_code(code);
            pair[0] = a;
            pair[1] = b;
        }
    }

    /// Decode `data` into `2 * data.len()` samples of `out`; returns the samples written.
    pub fn decode(&mut self, data: &[u8], out: &mut [i16]) -> Result<usize, G722Error> {
        let needed = data.len() * 2;
        if out.len() < needed {
            return Err(G722Error::OutputTooShort {
                needed,
                got: out.len(),
            });
        }
        for (&code, pair) in data.iter().zip(out.chunks_exact_mut(2)) {
            let [a, b] = self.decode_code(code);
            pair[0] = a;
            pair[1] = b;
        }
        Ok(needed)
    }

    /// Narrowband output: one 8 kHz sample per code, the lower band alone without the
    /// QMF (SpanDSP's `G722_SAMPLE_RATE_8000`); any G.722 stream can be decoded this way.
    /// Returns the samples written. Use one of this and [`Decoder::decode`] per stream.
    pub fn decode_8k(&mut self, data: &[u8], out: &mut [i16]) -> Result<usize, G722Error> {
        if out.len() < data.len() {
            return Err(G722Error::OutputTooShort {
                needed: data.len(),
                got: out.len(),
            });
        }
        for (&code, o) in data.iter().zip(out.iter_mut()) {
            // RL is limited to 15 bits (block 6L), so doubling it cannot overflow.
            *o = self.decode_bands(code).0 << 1;
        }
        Ok(data.len())
    }

    /// Two output samples (older first) from one code (right-aligned, `mode.bits()` wide;
    /// higher bits are ignored).
    pub fn decode_code(&mut self, code: u8) -> [i16; 2] {
        let (rl, rh) = self.decode_bands(code);
        // Receive QMF (§4.4): 4096 DC gain, less one bit for the 15-bit core. Overflow
        // saturates (SpanDSP 0.0.6 wraps here instead; see the module docs).
        self.qmf
            .push(sat16(rl as i32 + rh as i32), sat16(rl as i32 - rh as i32));
        let first = sat16(self.qmf.dot(&self.qmf.y, &QMF_H_REV) >> 11);
        let second = sat16(self.qmf.dot(&self.qmf.x, &QMF_H) >> 11);
        [first, second]
    }

    /// The ADPCM part alone: the reconstructed lower- and higher-band signals (RL, RH,
    /// 15-bit, 8 kHz each) for one code, before the receive QMF. `rl << 1` is a usable
    /// narrowband (0-4 kHz) signal. [`Decoder::decode_code`] calls this, then the QMF.
    pub fn decode_bands(&mut self, code: u8) -> (i16, i16) {
        let code = code as usize;
        // INVQBL (§4.2): the lower-band output uses every bit the mode carries; the
        // predictor adapts on the 4-bit truncation, as in the encoder.
        let (q, ril, ih) = match self.mode {
            Mode::Kbps64 => (QM6[code & 0x3f], (code & 0x3f) >> 2, (code >> 6) & 3),
            Mode::Kbps56 => (QM5[code & 0x1f], (code & 0x1f) >> 1, (code >> 5) & 3),
            Mode::Kbps48 => (QM4[code & 0x0f], code & 0x0f, (code >> 4) & 3),
        };
        let rl = sat15(self.low.s as i32 + mul15(self.low.det, q as i32));
        let dl = mul15(self.low.det, QM4[ril] as i32) as i16;
        self.low.scale(WL[RL42[ril]], NB_MAX_LOW, 8);
        self.low.adapt(dl);

        // INVQAH, LOGSCH/SCALEH, block 4.
        let dh = mul15(self.high.det, QM2[ih] as i32) as i16;
        let rh = sat15(dh as i32 + self.high.s as i32);
        self.high.scale(WH[RH2[ih]], NB_MAX_HIGH, 10);
        self.high.adapt(dh);
        (rl, rh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::f32::consts::PI;

    fn tone(freq: f32, amp: f32, n: usize) -> std::vec::Vec<i16> {
        (0..n)
            .map(|i| (amp * libm::sinf(2.0 * PI * freq * i as f32 / 16000.0)) as i16)
            .collect()
    }

    fn snr_db(reference: &[i16], decoded: &[i16], delay: usize) -> f32 {
        let (mut s, mut e) = (0f64, 0f64);
        for i in 400..reference.len() - delay {
            let r = reference[i] as f64;
            let d = decoded[i + delay] as f64;
            s += r * r;
            e += (r - d) * (r - d);
        }
        (10.0 * libm::log10(s / e)) as f32
    }

    /// Best-aligned SNR over a few delays (the QMF pair delays by 22 samples, §1.3).
    fn best_snr(reference: &[i16], decoded: &[i16]) -> (usize, f32) {
        (0..40)
            .map(|d| (d, snr_db(reference, decoded, d)))
            .fold((0, -99.0), |b, x| if x.1 > b.1 { x } else { b })
    }

    fn round_trip(mode: Mode, pcm: &[i16]) -> std::vec::Vec<i16> {
        let mut enc = Encoder::new(mode);
        let mut dec = Decoder::new(mode);
        let mut codes = std::vec![0u8; pcm.len() / 2];
        let mut out = std::vec![0i16; pcm.len()];
        assert_eq!(enc.encode(pcm, &mut codes), Ok(pcm.len() / 2));
        assert_eq!(dec.decode(&codes, &mut out), Ok(pcm.len()));
        out
    }

    #[test]
    fn tones_survive_each_mode_with_the_qmf_delay() {
        for (mode, min_snr) in [
            (Mode::Kbps64, 25.0),
            (Mode::Kbps56, 20.0),
            (Mode::Kbps48, 14.0),
        ] {
            for f in [300.0, 1000.0, 3000.0, 5500.0] {
                let pcm = tone(f, 10000.0, 4000);
                let out = round_trip(mode, &pcm);
                let snr = snr_db(&pcm, &out, 22);
                assert!(snr > min_snr, "{mode:?} {f} Hz: SNR {snr} dB");
            }
        }
    }

    #[test]
    fn codec_delay_is_the_qmf_pair_delay() {
        let mut x: u32 = 99;
        let pcm: std::vec::Vec<i16> = (0..8000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as i16) / 8
            })
            .collect();
        let (delay, snr) = best_snr(&pcm, &round_trip(Mode::Kbps64, &pcm));
        assert_eq!(delay, 22);
        assert!(snr > 10.0, "{snr}");
    }

    #[test]
    fn higher_modes_are_better() {
        let pcm: std::vec::Vec<i16> = tone(700.0, 6000.0, 4000)
            .iter()
            .zip(tone(2300.0, 4000.0, 4000))
            .map(|(a, b)| a + b)
            .collect();
        let s64 = best_snr(&pcm, &round_trip(Mode::Kbps64, &pcm)).1;
        let s56 = best_snr(&pcm, &round_trip(Mode::Kbps56, &pcm)).1;
        let s48 = best_snr(&pcm, &round_trip(Mode::Kbps48, &pcm)).1;
        assert!(s64 > s56 + 3.0 && s56 > s48 + 3.0, "{s64} {s56} {s48}");
    }

    #[test]
    fn lower_mode_decoder_reads_a_64k_stream() {
        // G.722 §1.4.3: dropping lower-band LSBs of a 64 kbit/s stream gives a valid
        // 56 or 48 kbit/s stream.
        let pcm = tone(1000.0, 8000.0, 4000);
        let mut enc = Encoder::new(Mode::Kbps64);
        let mut codes = std::vec![0u8; 2000];
        enc.encode(&pcm, &mut codes).unwrap();
        let c48: std::vec::Vec<u8> = codes.iter().map(|c| c >> 2).collect();
        let mut dec = Decoder::new(Mode::Kbps48);
        let mut out = std::vec![0i16; 4000];
        dec.decode(&c48, &mut out).unwrap();
        assert!(best_snr(&pcm, &out).1 > 14.0);
    }

    #[test]
    fn frame_api_equals_slice_api_and_reset_restarts() {
        let pcm = tone(440.0, 12000.0, 320);
        let mut a = Encoder::new(Mode::Kbps64);
        let mut b = Encoder::new(Mode::Kbps64);
        let mut fa = [0u8; CODE_FRAME];
        let mut fb = [0u8; 160];
        a.encode_frame(pcm[..160].try_into().unwrap(), &mut fa);
        b.encode(&pcm[..160], &mut fb).unwrap();
        assert_eq!(&fa[..], &fb[..80]);
        a.reset();
        let mut again = [0u8; CODE_FRAME];
        a.encode_frame(pcm[..160].try_into().unwrap(), &mut again);
        assert_eq!(fa, again);
        let mut d = Decoder::new(Mode::Kbps64);
        let mut o1 = [0i16; WB_FRAME];
        d.decode_frame(&fa, &mut o1);
        d.reset();
        let mut o2 = [0i16; 200];
        assert_eq!(d.decode(&fa, &mut o2), Ok(160));
        assert_eq!(&o1[..], &o2[..160]);
    }

    #[test]
    fn narrowband_mode_round_trips_and_interworks_with_wideband() {
        let pcm8: std::vec::Vec<i16> = (0..4000)
            .map(|i| (9000.0 * libm::sinf(2.0 * PI * 800.0 * i as f32 / 8000.0)) as i16)
            .collect();
        let mut enc = Encoder::new(Mode::Kbps64);
        let mut codes = std::vec![0u8; 4000];
        assert_eq!(enc.encode_8k(&pcm8, &mut codes), Ok(4000));
        assert!(codes.iter().all(|c| c >> 6 == 3), "higher band sent as 11");
        let mut out8 = std::vec![0i16; 4000];
        assert_eq!(
            Decoder::new(Mode::Kbps64).decode_8k(&codes, &mut out8),
            Ok(4000)
        );
        assert!(snr_db(&pcm8, &out8, 0) > 25.0);
        // A wideband decoder plays it as an 800 Hz tone at 16 kHz, nothing above 4 kHz.
        let mut out16 = std::vec![0i16; 8000];
        Decoder::new(Mode::Kbps64)
            .decode(&codes, &mut out16)
            .unwrap();
        let at = |f: f32| {
            let (mut c, mut s) = (0f32, 0f32);
            for (i, &v) in out16[1000..].iter().enumerate() {
                let ph = 2.0 * PI * f * i as f32 / 16000.0;
                c += v as f32 * libm::cosf(ph);
                s += v as f32 * libm::sinf(ph);
            }
            libm::sqrtf(c * c + s * s)
        };
        assert!(at(800.0) > 100.0 * at(7200.0));
        assert_eq!(
            enc.encode_8k(&pcm8[..10], &mut [0; 9]),
            Err(G722Error::OutputTooShort { needed: 10, got: 9 })
        );
    }

    #[test]
    fn bad_sizes_are_errors_not_panics() {
        let mut e = Encoder::new(Mode::Kbps56);
        assert_eq!(
            e.encode(&[0; 3], &mut [0; 8]),
            Err(G722Error::OddSampleCount)
        );
        assert_eq!(
            e.encode(&[0; 8], &mut [0; 3]),
            Err(G722Error::OutputTooShort { needed: 4, got: 3 })
        );
        let mut d = Decoder::new(Mode::Kbps56);
        assert_eq!(
            d.decode(&[0; 4], &mut [0; 7]),
            Err(G722Error::OutputTooShort { needed: 8, got: 7 })
        );
        assert_eq!(Mode::from_bit_rate(56_000), Some(Mode::Kbps56));
        assert_eq!(Mode::from_bit_rate(32_000), None);
    }

    #[test]
    fn full_scale_square_and_random_codes_do_not_overflow() {
        let pcm: std::vec::Vec<i16> = (0..4000)
            .map(|i| if (i / 7) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let out = round_trip(Mode::Kbps64, &pcm);
        assert!(out.iter().any(|&s| s > 20000));
        let mut d = Decoder::new(Mode::Kbps64);
        let mut x: u32 = 1;
        let mut peak = 0i16;
        for _ in 0..20000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let o = d.decode_code((x >> 16) as u8);
            peak = peak.max(o[0].saturating_abs()).max(o[1].saturating_abs());
        }
        // Random codes drive the scale factor up: loud output, no panic on overflow.
        assert!(peak > 16000, "{peak}");
    }
}
