//! G.722 bit-exactness against SpanDSP (Debian libspandsp-dev), linked through FFI.
//!
//! Test-only foreign code: the library itself stays `no_std` and `forbid(unsafe_code)`.
//! For each mode and each signal (tones, white noise, a chirp, the crate's speech-like
//! source, full-scale clipping, silence) we compare, byte for byte and sample for sample:
//! our encoder against `g722_encode`, and our decoder against `g722_decode` both on the
//! encoder's output and on random code bytes (which reach states real signals do not).

use gw_dsp::g722::{Decoder, Encoder, Mode};
use gw_dsp::testsig::{Noise, SpeechLike};
use std::os::raw::{c_int, c_void};

#[link(name = "spandsp")]
extern "C" {
    fn g722_encode_init(s: *mut c_void, rate: c_int, options: c_int) -> *mut c_void;
    fn g722_encode(s: *mut c_void, data: *mut u8, amp: *const i16, len: c_int) -> c_int;
    fn g722_encode_free(s: *mut c_void) -> c_int;
    fn g722_decode_init(s: *mut c_void, rate: c_int, options: c_int) -> *mut c_void;
    fn g722_decode(s: *mut c_void, amp: *mut i16, data: *const u8, len: c_int) -> c_int;
    fn g722_decode_free(s: *mut c_void) -> c_int;
}

fn rate(mode: Mode) -> c_int {
    match mode {
        Mode::Kbps64 => 64000,
        Mode::Kbps56 => 56000,
        Mode::Kbps48 => 48000,
    }
}

/// SpanDSP with `G722_SAMPLE_RATE_8000`: 8 kHz samples, one code each.
fn spandsp_8k(mode: Mode, pcm: &[i16]) -> (Vec<u8>, Vec<i16>) {
    let mut codes = vec![0u8; pcm.len()];
    let mut out = vec![0i16; pcm.len()];
    unsafe {
        let e = g722_encode_init(std::ptr::null_mut(), rate(mode), 1);
        let d = g722_decode_init(std::ptr::null_mut(), rate(mode), 1);
        assert!(!e.is_null() && !d.is_null());
        for (i, block) in pcm.chunks(80).enumerate() {
            let n = g722_encode(
                e,
                codes[i * 80..].as_mut_ptr(),
                block.as_ptr(),
                block.len() as c_int,
            );
            assert_eq!(n as usize, block.len());
            let m = g722_decode(d, out[i * 80..].as_mut_ptr(), codes[i * 80..].as_ptr(), n);
            assert_eq!(m, n);
        }
        g722_encode_free(e);
        g722_decode_free(d);
    }
    (codes, out)
}

/// SpanDSP encode of `pcm` in 160-sample blocks (so its state carries across calls).
fn spandsp_encode(mode: Mode, pcm: &[i16]) -> Vec<u8> {
    let mut out = vec![0u8; pcm.len() / 2];
    unsafe {
        let s = g722_encode_init(std::ptr::null_mut(), rate(mode), 0);
        assert!(!s.is_null());
        for (i, block) in pcm.chunks(160).enumerate() {
            let n = g722_encode(
                s,
                out[i * 80..].as_mut_ptr(),
                block.as_ptr(),
                block.len() as c_int,
            );
            assert_eq!(n as usize, block.len() / 2);
        }
        g722_encode_free(s);
    }
    out
}

fn spandsp_decode(mode: Mode, codes: &[u8]) -> Vec<i16> {
    let mut out = vec![0i16; codes.len() * 2];
    unsafe {
        let s = g722_decode_init(std::ptr::null_mut(), rate(mode), 0);
        assert!(!s.is_null());
        for (i, block) in codes.chunks(80).enumerate() {
            let n = g722_decode(
                s,
                out[i * 160..].as_mut_ptr(),
                block.as_ptr(),
                block.len() as c_int,
            );
            assert_eq!(n as usize, block.len() * 2);
        }
        g722_decode_free(s);
    }
    out
}

fn ours_encode(mode: Mode, pcm: &[i16]) -> Vec<u8> {
    let mut enc = Encoder::new(mode);
    let mut out = vec![0u8; pcm.len() / 2];
    for (i, frame) in pcm.chunks_exact(160).enumerate() {
        let mut f = [0u8; 80];
        enc.encode_frame(frame.try_into().unwrap(), &mut f);
        out[i * 80..i * 80 + 80].copy_from_slice(&f);
    }
    out
}

fn ours_decode(mode: Mode, codes: &[u8]) -> Vec<i16> {
    let mut dec = Decoder::new(mode);
    let mut out = vec![0i16; codes.len() * 2];
    for (i, frame) in codes.chunks_exact(80).enumerate() {
        let mut f = [0i16; 160];
        dec.decode_frame(frame.try_into().unwrap(), &mut f);
        out[i * 160..i * 160 + 160].copy_from_slice(&f);
    }
    out
}

/// SpanDSP 0.0.6's receive QMF, which wraps on overflow, fed by our ADPCM band outputs.
/// Returns the samples and, per sample, whether an overflow (wrap) fed into it.
fn wrapping_qmf_model(mode: Mode, codes: &[u8]) -> (Vec<i16>, Vec<bool>) {
    const H: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];
    let mut dec = Decoder::new(mode);
    let (mut x, mut y) = ([0i16; 12], [0i16; 12]);
    let mut pos = 0;
    let mut last_wrap: Option<usize> = None;
    let mut out = Vec::with_capacity(codes.len() * 2);
    let mut tainted = Vec::with_capacity(codes.len() * 2);
    for (k, &c) in codes.iter().enumerate() {
        let (rl, rh) = dec.decode_bands(c);
        let (sum, diff) = (rl as i32 + rh as i32, rl as i32 - rh as i32);
        if sum != sum as i16 as i32 || diff != diff as i16 as i32 {
            last_wrap = Some(k);
        }
        x[pos] = sum as i16;
        y[pos] = diff as i16;
        pos = (pos + 1) % 12;
        let (mut a, mut b) = (0i32, 0i32);
        for i in 0..12 {
            a += y[(pos + i) % 12] as i32 * H[11 - i];
            b += x[(pos + i) % 12] as i32 * H[i];
        }
        let in_window = last_wrap.is_some_and(|w| k - w < 12);
        for v in [a >> 11, b >> 11] {
            out.push(v as i16);
            tainted.push(in_window || v != v as i16 as i32);
        }
    }
    (out, tainted)
}

/// Checks SpanDSP's decoder output against the wrapping model (everywhere) and against
/// our saturating decoder (everywhere the model saw no overflow); returns the number of
/// samples where SpanDSP overflowed.
fn check_decoder(mode: Mode, name: &str, codes: &[u8]) -> usize {
    let theirs = spandsp_decode(mode, codes);
    let (model, tainted) = wrapping_qmf_model(mode, codes);
    if let Some(i) = model.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!("{mode:?} {name}: decoder (bands + wrapping QMF) differs at sample {i}: ours {} spandsp {}", model[i], theirs[i]);
    }
    let ours = ours_decode(mode, codes);
    for i in 0..ours.len() {
        if !tainted[i] {
            assert_eq!(
                ours[i], theirs[i],
                "{mode:?} {name}: decoder differs at sample {i}"
            );
        }
    }
    tainted.iter().filter(|&&t| t).count()
}

const N: usize = 16000 * 4; // 4 s at 16 kHz

fn signals() -> Vec<(&'static str, Vec<i16>)> {
    let tau = 2.0 * std::f64::consts::PI;
    let mut v = Vec::new();
    for (f, a) in [
        (200.0, 30000.0),
        (1000.0, 10000.0),
        (3400.0, 3000.0),
        (6000.0, 20000.0),
        (7900.0, 500.0),
    ] {
        let s = (0..N)
            .map(|i| (a * (tau * f * i as f64 / 16000.0).sin()) as i16)
            .collect();
        v.push(("tone", s));
    }
    let mut noise = Noise::new(7);
    v.push((
        "noise",
        (0..N)
            .map(|_| (noise.gauss() * 6000.0).clamp(-32768.0, 32767.0) as i16)
            .collect(),
    ));
    // Linear chirp 50 Hz -> 7950 Hz with a level sweep.
    let chirp = (0..N)
        .map(|i| {
            let t = i as f64 / 16000.0;
            let dur = N as f64 / 16000.0;
            let phase = tau * (50.0 * t + 0.5 * (7900.0 / dur) * t * t);
            let amp = 300.0 + 32000.0 * (t / dur);
            (amp * phase.sin()).clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    v.push(("chirp", chirp));
    let mut speech = SpeechLike::new(3, -10.0);
    let mut s = vec![0i16; N];
    speech.fill(&mut s);
    v.push(("speech", s));
    let mut loud = SpeechLike::new(11, 3.0);
    let mut s = vec![0i16; N];
    loud.fill(&mut s);
    v.push(("speech+3dBm0", s));
    v.push((
        "square",
        (0..N)
            .map(|i| if (i / 9) % 2 == 0 { 32767 } else { -32768 })
            .collect(),
    ));
    v.push(("silence", vec![0; N]));
    v
}

#[test]
fn encoder_and_decoder_match_spandsp_bit_for_bit() {
    let mut compared = 0usize;
    for mode in [Mode::Kbps64, Mode::Kbps56, Mode::Kbps48] {
        for (name, pcm) in signals() {
            let theirs = spandsp_encode(mode, &pcm);
            let ours = ours_encode(mode, &pcm);
            if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
                panic!(
                    "{mode:?} {name}: encoder differs at code {i}: ours {:#x} spandsp {:#x}",
                    ours[i], theirs[i]
                );
            }
            let overflowed = check_decoder(mode, name, &theirs);
            eprintln!("{mode:?} {name}: {} codes, {} samples bit-exact, {overflowed} in SpanDSP QMF overflow windows", ours.len(), 2 * ours.len() - overflowed);
            if matches!(name, "tone" | "noise" | "silence") {
                assert_eq!(overflowed, 0, "{mode:?} {name}: every sample bit-exact");
            }
            compared += 3 * ours.len();
        }
    }
    assert!(compared > 3_000_000);
}

#[test]
fn decoder_matches_spandsp_on_random_codes() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let codes: Vec<u8> = (0..80 * 500)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    for mode in [Mode::Kbps64, Mode::Kbps56, Mode::Kbps48] {
        let masked: Vec<u8> = codes
            .iter()
            .map(|c| c & ((1u16 << mode.bits()) - 1) as u8)
            .collect();
        let overflowed = check_decoder(mode, "random", &masked);
        assert!(overflowed * 10 < masked.len(), "{mode:?}: {overflowed}");
    }
}

/// Speed against SpanDSP on the same 20 s of speech-like audio. Not a pass/fail test:
/// `cargo test --release -p gw-dsp --test g722_spandsp -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed_against_spandsp() {
    use std::time::Instant;
    let n = 16000 * 20;
    let mut speech = SpeechLike::new(5, -15.0);
    let mut pcm = vec![0i16; n];
    speech.fill(&mut pcm);
    let ns_per_sample = |f: &mut dyn FnMut()| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
        }
        best
    };
    let mut codes = Vec::new();
    let ours_enc =
        ns_per_sample(&mut || codes = std::hint::black_box(ours_encode(Mode::Kbps64, &pcm)));
    let theirs_enc = ns_per_sample(&mut || {
        std::hint::black_box(spandsp_encode(Mode::Kbps64, &pcm));
    });
    let ours_dec = ns_per_sample(&mut || {
        std::hint::black_box(ours_decode(Mode::Kbps64, &codes));
    });
    let theirs_dec = ns_per_sample(&mut || {
        std::hint::black_box(spandsp_decode(Mode::Kbps64, &codes));
    });
    eprintln!("G.722 64k encode: ours {ours_enc:.1} ns/sample, SpanDSP {theirs_enc:.1} ns/sample ({:.2}x)", theirs_enc / ours_enc);
    eprintln!("G.722 64k decode: ours {ours_dec:.1} ns/sample, SpanDSP {theirs_dec:.1} ns/sample ({:.2}x)", theirs_dec / ours_dec);
}

#[test]
fn narrowband_mode_matches_spandsp_8k_option() {
    for mode in [Mode::Kbps64, Mode::Kbps56, Mode::Kbps48] {
        for (name, pcm16) in signals() {
            // Use the first half of each signal as if it were 8 kHz audio.
            let pcm = &pcm16[..pcm16.len() / 2];
            let (theirs_codes, theirs_pcm) = spandsp_8k(mode, pcm);
            let mut enc = Encoder::new(mode);
            let mut codes = vec![0u8; pcm.len()];
            enc.encode_8k(pcm, &mut codes).unwrap();
            assert!(
                codes == theirs_codes,
                "{mode:?} {name}: 8 kHz encoder differs"
            );
            let mut dec = Decoder::new(mode);
            let mut out = vec![0i16; pcm.len()];
            dec.decode_8k(&codes, &mut out).unwrap();
            assert!(out == theirs_pcm, "{mode:?} {name}: 8 kHz decoder differs");
        }
    }
}
