//! `gw-dsp`: the telephony signal processing that runs in the gateway's real-time thread.
//!
//! Layer: below the line signalling and media crates, above nothing. Every function here
//! works on 16-bit linear PCM at 8 kHz (or G.711 bytes) and keeps its own state; there is
//! no allocator, no I/O, no clock and no locking. **The sample count is the clock**: a
//! detector knows that 10 ms have passed because it has been fed 80 samples.
//!
//! How to drive it: the rt thread owns one instance of each block per channel (they are
//! plain structs, most with a `const fn new()`, so they can live in a fixed array) and
//! feeds every 10 ms tick ([`FRAME`] samples) through them in order:
//!
//! ```text
//! line in  -> EchoCanceller::process -> DtmfDetector / ModemToneDetector -> g711 -> RTP
//! RTP      -> g711::decode_frame -> ToneGenerator / DtmfGenerator::fill -> line out
//! ```
//!
//! Modules:
//! - [`g711`]: A-law and µ-law (ITU-T G.711) through the `audio-codec-algorithms` crate.
//! - [`goertzel`]: single-bin DFT used by every tone detector.
//! - [`dtmf`]: DTMF (ITU-T Q.23) generation and detection to the ITU-T Q.24 limits.
//! - [`echo`]: G.168 line echo canceller (partitioned frequency-domain, two-path, NLP and
//!   comfort noise, 2100 Hz tone disable); see its docs for the algorithm choice.
//! - [`progress`]: call-progress tone detection per country profile (busy/reorder for FXO).
//! - [`modem_tones`]: CNG, ANS/CED, /ANS, ANSam, /ANSam detection (V.25, V.8, G.164/G.165).
//! - [`callerid`]: caller ID messages (SDMF/MDMF) and the Bell 202 / V.23 FSK modulator.
//! - [`fft`]: the 128-point transforms of the echo canceller (via `microfft`).
//! - [`testsig`]: deterministic speech-like and noise sources for tests and benchmarks.
//! - [`callerid_line`]: caller ID timing (GR-30, EN 300 659-1), CPE alerting signal and
//!   the FXO receiver (FSK and DTMF CLIP).
//! - [`tones`]: call-progress tone generation with country profiles (ITU-T E.180 Suppl. 2).
//! - [`plc`]: G.711 packet loss concealment (G.711 Appendix I style).
//! - [`cng`]: voice activity detection and RFC 3389 comfort noise.
//! - [`g722`]: ITU-T G.722 wideband SB-ADPCM codec (bit-exact with SpanDSP).
//! - [`resample`]: 8 <-> 16 kHz polyphase FIR resamplers.
//!
//! Levels follow the SpanDSP convention: a sine with peak [`DBM0_PEAK`] is 0 dBm0, and a
//! full-scale sine is +3.14 dBm0 (the G.711 overload point).
#![no_std]
#![forbid(unsafe_code)]
// DSP loops walk several parallel arrays by index; iterator zips would hide that.
#![allow(clippy::needless_range_loop)]

#[cfg(test)]
extern crate std;

pub mod callerid;
pub mod callerid_line;
pub mod dtmf;
pub mod echo;
pub mod g711;
pub mod goertzel;
pub mod testsig;
pub mod modem_tones;
pub mod tones;
pub mod progress;
pub mod plc;
pub mod cng;
pub mod g722;
pub mod resample;

mod cmath;
pub mod fft;
mod osc;

/// Samples per 10 ms tick at 8 kHz.
pub const FRAME: usize = 80;

/// 0 dBm0 sine peak amplitude in 16-bit linear (SpanDSP convention: 3.14 dBm0 = full scale).
pub const DBM0_PEAK: f32 = 22_826.0; // 32767 * 10^(-3.14/20)

/// Sample rate of everything in this crate, in Hz.
pub const SAMPLE_RATE: f32 = 8000.0;

/// Peak amplitude (16-bit linear) of a sine at `dbm0`.
pub fn dbm0_to_peak(dbm0: f32) -> f32 {
    DBM0_PEAK * libm::powf(10.0, dbm0 / 20.0)
}

/// Level in dBm0 of a sine with the given peak amplitude.
pub fn peak_to_dbm0(peak: f32) -> f32 {
    if peak <= 0.0 {
        return f32::NEG_INFINITY;
    }
    20.0 * libm::log10f(peak / DBM0_PEAK)
}

/// Saturate an `f32` to the 16-bit linear range (rounding to nearest).
#[inline]
pub(crate) fn sat16(x: f32) -> i16 {
    // Round half away from zero; `as` truncates toward zero (and maps NaN to 0).
    let r = if x >= 0.0 { x + 0.5 } else { x - 0.5 };
    if r >= 32767.0 {
        32767
    } else if r <= -32768.0 {
        -32768
    } else {
        r as i16
    }
}
