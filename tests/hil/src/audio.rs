//! Test audio: tone files, G.711 mu-law files for SIPp, WAV reading, and a
//! frequency measurement written independently of the product's DSP crate
//! (a test that measures with the code under test proves nothing).
//!
//! Levels: 0 dBm0 is a sine of peak 22826 in 16-bit linear PCM (the
//! project's convention; G.711 mu-law full scale is about +3.17 dBm0).

use std::f64::consts::PI;
use std::fs;
use std::io;
use std::path::Path;

/// The 16-bit peak of a 0 dBm0 sine.
pub const DBM0_PEAK: f32 = 22826.0;

/// The sample rate of everything in this harness (narrowband G.711).
pub const RATE: u32 = 8000;

/// Writes an 8 kHz mono 16-bit WAV holding a sine of `freq_hz` at
/// `level_dbm0` (0 dBm0 = peak 22826) lasting `seconds`.
pub fn tone_wav(path: &Path, freq_hz: f32, level_dbm0: f32, seconds: f32) -> io::Result<()> {
    let samples = tone(freq_hz, level_dbm0, seconds)?;
    write_wav(path, &samples, RATE)
}

/// The samples [`tone_wav`] writes.
pub fn tone(freq_hz: f32, level_dbm0: f32, seconds: f32) -> io::Result<Vec<i16>> {
    if !(freq_hz > 0.0 && freq_hz < RATE as f32 / 2.0) {
        return Err(invalid(format!("tone frequency {freq_hz} Hz outside 0..4000 Hz")));
    }
    if !(0.0..=3600.0).contains(&seconds) {
        return Err(invalid(format!("tone length {seconds} s outside 0..3600 s")));
    }
    let peak = DBM0_PEAK as f64 * 10f64.powf(level_dbm0 as f64 / 20.0);
    if peak.is_nan() || peak > 32767.0 {
        return Err(invalid(format!("tone level {level_dbm0} dBm0 clips 16-bit PCM")));
    }
    let n = (seconds as f64 * RATE as f64).round() as usize;
    let w = 2.0 * PI * freq_hz as f64 / RATE as f64;
    Ok((0..n).map(|i| (peak * (w * i as f64).sin()).round() as i16).collect())
}

/// Writes 16-bit mono PCM as a canonical 44-byte-header WAV.
pub fn write_wav(path: &Path, samples: &[i16], rate: u32) -> io::Result<()> {
    let data_len = u32::try_from(samples.len() * 2).map_err(|_| invalid("WAV data over 4 GiB".into()))?;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, out)
}

/// A mono 16-bit PCM WAV file: its rate and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Wav {
    pub rate: u32,
    pub samples: Vec<i16>,
}

/// Reads a mono 16-bit PCM WAV. Tolerates a header whose sizes were never
/// filled in (a recorder still writing, or killed): the data chunk then runs
/// to the end of the file.
pub fn read_wav(path: &Path) -> io::Result<Wav> {
    parse_wav(&fs::read(path)?).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

fn parse_wav(bytes: &[u8]) -> Result<Wav, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut at = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        let body = at + 8;
        if id == b"fmt " {
            if len < 16 || body + 16 > bytes.len() {
                return Err("short fmt chunk".into());
            }
            let f = &bytes[body..body + 16];
            format = Some((
                u16::from_le_bytes([f[0], f[1]]),
                u16::from_le_bytes([f[2], f[3]]),
                u32::from_le_bytes([f[4], f[5], f[6], f[7]]),
                u16::from_le_bytes([f[14], f[15]]),
            ));
        } else if id == b"data" {
            let (tag, channels, rate, bits) = format.ok_or("data chunk before fmt chunk")?;
            // 1 = PCM, 0xFFFE = WAVE_FORMAT_EXTENSIBLE (libsndfile may write it).
            if !(tag == 1 || tag == 0xFFFE) || channels != 1 || bits != 16 {
                return Err(format!("want mono 16-bit PCM, got format {tag:#x}, {channels} ch, {bits} bit"));
            }
            let end = if len == 0 || body + len > bytes.len() { bytes.len() } else { body + len };
            let data = &bytes[body..end];
            let samples = data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
            return Ok(Wav { rate, samples });
        }
        at = body + len + (len & 1);
    }
    Err("no data chunk".into())
}

/// ITU-T G.711 mu-law encoding of one 16-bit linear sample (segment and
/// quantisation per G.711 Table 2a; bias 0x84; bits inverted on the wire).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    // Segment: position of the highest set bit above bit 7.
    let segment = (15 - (s as u16).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (segment + 3)) & 0x0F;
    !(sign | (segment << 4) as u8 | mantissa as u8)
}

/// Writes samples as headerless mu-law (what SIPp's `rtp_stream` sends as
/// payload type 0).
pub fn write_ulaw(path: &Path, samples: &[i16]) -> io::Result<()> {
    fs::write(path, samples.iter().map(|&s| linear_to_ulaw(s)).collect::<Vec<u8>>())
}

/// RMS level of `samples` in dBm0 (a 0 dBm0 sine gives 0.0); -inf for silence.
pub fn level_dbm0(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let ms = samples.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / samples.len() as f64;
    let ref_rms = DBM0_PEAK as f64 / 2f64.sqrt();
    (10.0 * (ms / (ref_rms * ref_rms)).log10()) as f32
}

/// The frequency (Hz, at 8 kHz sampling) carrying the most energy in
/// `samples`, to within 1 Hz for a clean tone of a few hundred ms or more.
/// 0.0 for silence or fewer than 80 samples.
///
/// Method: Goertzel power sweep 20..3980 Hz in 5 Hz steps over Hann-windowed
/// 256 ms segments; then a 0.05 Hz sweep over +-6 Hz around the winner on the
/// whole (Hann-windowed) input; then a parabola through the three best points
/// of the fine sweep. At most 10 s of audio is analysed
/// (the middle of it), which keeps the cost bounded in debug builds.
pub fn dominant_frequency(samples: &[i16]) -> f32 {
    const MAX: usize = 10 * RATE as usize;
    let samples = if samples.len() > MAX {
        let start = (samples.len() - MAX) / 2;
        &samples[start..start + MAX]
    } else {
        samples
    };
    if samples.len() < 80 || samples.iter().all(|&s| s == 0) {
        return 0.0;
    }
    let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64;
    let windowed = |part: &[i16]| -> Vec<f64> {
        let n = part.len();
        part.iter()
            .enumerate()
            .map(|(i, &s)| (s as f64 - mean) * (0.5 - 0.5 * (2.0 * PI * i as f64 / (n - 1) as f64).cos()))
            .collect()
    };
    let argmax = |powers: &[f64]| -> usize {
        powers.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k)
    };

    // Coarse: back-to-back short segments (mainlobe +-8 Hz at 256 ms, wide
    // enough for a 5 Hz grid), powers summed over all of them so that a tone
    // present in only part of the input still wins.
    let seg = samples.len().min(COARSE_SEGMENT);
    let count = samples.len() / seg;
    let stride = seg;
    let coarse_freqs: Vec<f64> = (0..=792).map(|k| 20.0 + 5.0 * k as f64).collect();
    let mut coarse = vec![0.0f64; coarse_freqs.len()];
    for c in 0..count {
        let x = windowed(&samples[c * stride..c * stride + seg]);
        for (acc, &f) in coarse.iter_mut().zip(&coarse_freqs) {
            *acc += goertzel_power(&x, f);
        }
    }
    let centre = coarse_freqs[argmax(&coarse)];

    // Fine: the whole input, 0.05 Hz steps over +-6 Hz, then a parabola.
    let x = windowed(samples);
    let step = 0.05;
    let from = (centre - 6.0).max(1.0);
    let fine: Vec<f64> = (0..=240).map(|k| goertzel_power(&x, from + k as f64 * step)).collect();
    let k = argmax(&fine);
    let p = fine[k];
    let below = if k > 0 { fine[k - 1] } else { p };
    let above = if k + 1 < fine.len() { fine[k + 1] } else { p };
    let denom = below - 2.0 * p + above;
    let offset = if denom.abs() > f64::EPSILON { 0.5 * (below - above) / denom } else { 0.0 };
    (from + (k as f64 + offset.clamp(-1.0, 1.0)) * step) as f32
}

/// Samples per coarse-search segment of [`dominant_frequency`] (256 ms).
const COARSE_SEGMENT: usize = 2048;

/// Power of `x` at `freq` Hz (Goertzel's recurrence, non-integer bin allowed).
fn goertzel_power(x: &[f64], freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq / RATE as f64).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_dbm0_tone_peaks_at_22826_and_measures_0_dbm0() {
        let t = tone(1004.0, 0.0, 1.0).unwrap();
        assert_eq!(t.len(), 8000);
        let peak = t.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((22800..=22826).contains(&peak), "peak {peak}");
        assert!(level_dbm0(&t).abs() < 0.05, "{}", level_dbm0(&t));
        let quiet = tone(1004.0, -20.0, 1.0).unwrap();
        assert!((level_dbm0(&quiet) + 20.0).abs() < 0.05);
        assert!(tone(1004.0, 4.0, 1.0).is_err(), "+4 dBm0 clips");
        assert!(tone(4100.0, 0.0, 1.0).is_err());
    }

    #[test]
    fn dominant_frequency_within_1_hz_including_off_grid_tones() {
        for &f in &[300.0f32, 697.0, 941.3, 1004.0, 1633.7, 2100.0, 3400.0] {
            let t = tone(f, -10.0, 0.5).unwrap();
            let got = dominant_frequency(&t);
            assert!((got - f).abs() < 1.0, "{f} Hz measured as {got}");
        }
    }

    #[test]
    fn dominant_frequency_picks_the_louder_of_two_tones_and_survives_g711() {
        let a = tone(697.0, -6.0, 1.0).unwrap();
        let b = tone(1209.0, -16.0, 1.0).unwrap();
        let mix: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert!((dominant_frequency(&mix) - 697.0).abs() < 1.0);
        // Through mu-law and back (decode by table search: the decoded value
        // is the midpoint of the code's interval).
        let decoded: Vec<i16> = mix.iter().map(|&s| ulaw_roundtrip(s)).collect();
        assert!((dominant_frequency(&decoded) - 697.0).abs() < 1.0);
    }

    #[test]
    fn silence_and_short_input_measure_zero() {
        assert_eq!(dominant_frequency(&[0; 8000]), 0.0);
        assert_eq!(dominant_frequency(&[100; 10]), 0.0);
        assert_eq!(level_dbm0(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn tone_in_part_of_a_long_recording_is_found() {
        // 4 s of silence, then 0.6 s of tone, then 4 s of silence: a call
        // recording where the far end heard the tone only briefly.
        let mut rec = vec![0i16; 32000];
        rec.extend(tone(1004.0, -20.0, 0.6).unwrap());
        rec.extend(vec![0i16; 32000]);
        let got = dominant_frequency(&rec);
        assert!((got - 1004.0).abs() < 1.0, "{got}");
    }

    fn ulaw_roundtrip(s: i16) -> i16 {
        // Decode per G.711: invert, sign, segment, mantissa.
        let u = !linear_to_ulaw(s);
        let segment = ((u >> 4) & 7) as i32;
        let mantissa = (u & 0x0F) as i32;
        let mag = (((mantissa << 3) + 0x84) << segment) - 0x84;
        (if u & 0x80 != 0 { -mag } else { mag }) as i16
    }

    #[test]
    fn ulaw_matches_g711_reference_points() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        // The mu-law digital milliwatt of G.711 Table 5 (a 1 kHz sine sampled
        // at phases pi/8, 3pi/8, ...): 1E 0B 0B 1E 9E 8B 8B 9E.
        let dmw: Vec<u8> = (0..8)
            .map(|k| {
                let phase = PI / 8.0 + k as f64 * PI / 4.0;
                linear_to_ulaw((-22580.0 * phase.sin()).round() as i16)
            })
            .collect();
        assert_eq!(dmw, [0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E]);
        // Monotonic over the positive range.
        let mut last = 0xFFu8;
        for s in (0..=32767).step_by(64) {
            let u = linear_to_ulaw(s as i16);
            assert!(u <= last, "not monotonic at {s}");
            last = u;
        }
    }

    #[test]
    fn wav_roundtrip_and_unfinished_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.wav");
        let t = tone(697.0, -3.0, 0.25).unwrap();
        tone_wav(&p, 697.0, -3.0, 0.25).unwrap();
        assert_eq!(read_wav(&p).unwrap(), Wav { rate: 8000, samples: t.clone() });
        // A recorder killed mid-call leaves data size 0: read to the end.
        let mut bytes = fs::read(&p).unwrap();
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(parse_wav(&bytes).unwrap().samples, t);
        assert!(parse_wav(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(parse_wav(b"nonsense").is_err());
    }
}
