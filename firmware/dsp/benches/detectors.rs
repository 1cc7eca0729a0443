//! Detector benchmark: gw-dsp's DTMF and 2100 Hz (/ANS) detectors against SpanDSP's
//! (`dtmf_rx`, `modem_connect_tones_rx`; Debian libspandsp-dev) on identical signals.
//!
//! - DTMF, ITU-T Q.24 operate region: all 16 keys; low-group level -5..-25 dBm0; twist
//!   from 4 dB reverse to 8 dB normal (high-group level within -5..-25 dBm0); each tone at
//!   0 or +-1.5 % frequency deviation; 40 and 50 ms tones at two alignments; white noise
//!   at -45 dBm0. A case passes when exactly the sent key is reported.
//! - DTMF talk-off: 10 minutes of speech-like signal (`testsig::SpeechLike`, 5 talkers,
//!   2 levels); every reported key is a false detection.
//! - /ANS: 2100 Hz at -12 dBm0 with phase reversals every 450 ms in white noise at 10 dB
//!   SNR, 3.3 s, 20 noise seeds: detection (as /ANS) and time to detect; false /ANS on
//!   speech-like signal.
//!
//! Then issue 12's conditions, both receivers on the same signals:
//! - DTMF, the full Q.24 operate region down to the weakest levels: all 16 keys;
//!   composite level 0 to -30 dBm0; twist (high minus low group) -8 to +4 dB; each tone
//!   at 0 or +-1.5 %; 40 and 50 ms; two alignments; white noise 15 dB under the
//!   composite; G.711 µ-law. Detection rate per composite level, and false keys.
//! - DTMF reject region: 12 dB twist either way, 20 ms bursts, +-3.5 % offset of either
//!   tone, at the same levels and noise: every reported key is a false operation.
//! - DTMF talk-off on a corpus of 30+ minutes of synthetic speech made now with
//!   espeak-ng (eight languages, a dozen voices, varied rate and pitch) at -10, -20
//!   and -30 dBm0 active level, through G.711 µ-law (needs `espeak-ng`).
//! - Targets (issue 12): 99.9 % in the operate region with no false key, nothing in the
//!   reject region, no talk-off on the corpus.
//!
//! Run: `cargo bench -p gw-dsp --bench detectors` (needs libspandsp installed; espeak-ng
//! for the talk-off corpus).
#![allow(unsafe_code)] // FFI to SpanDSP, benchmark only

#[path = "../tests/support/mod.rs"]
mod support;

use gw_dsp::dtmf::{digit_freqs, DtmfDetector, DtmfEvent};
use gw_dsp::modem_tones::{ModemTone, ModemToneDetector, ModemToneEvent};
use gw_dsp::testsig::{Noise, SpeechLike};
use std::ffi::{c_char, c_int, c_void};

#[link(name = "spandsp")]
extern "C" {
    fn dtmf_rx_init(s: *mut c_void, cb: *const c_void, user: *mut c_void) -> *mut c_void;
    fn dtmf_rx(s: *mut c_void, amp: *const i16, samples: c_int) -> c_int;
    fn dtmf_rx_get(s: *mut c_void, digits: *mut c_char, max: c_int) -> usize;
    fn dtmf_rx_free(s: *mut c_void) -> c_int;
    fn modem_connect_tones_rx_init(s: *mut c_void, tone_type: c_int, cb: extern "C" fn(*mut c_void, c_int, c_int, c_int), user: *mut c_void) -> *mut c_void;
    fn modem_connect_tones_rx(s: *mut c_void, amp: *const i16, len: c_int) -> c_int;
    fn modem_connect_tones_rx_free(s: *mut c_void) -> c_int;
}
const MODEM_CONNECT_TONES_ANS_PR: c_int = 3;

/// SpanDSP DTMF receiver: all keys reported for a signal.
fn spandsp_dtmf(x: &[i16]) -> Vec<u8> {
    // SAFETY: NULL state asks SpanDSP to allocate; no callback; freed below.
    unsafe {
        let s = dtmf_rx_init(std::ptr::null_mut(), std::ptr::null(), std::ptr::null_mut());
        assert!(!s.is_null());
        let mut out = Vec::new();
        let mut buf = [0 as c_char; 128];
        for f in x.chunks(80) {
            dtmf_rx(s, f.as_ptr(), f.len() as c_int);
            let n = dtmf_rx_get(s, buf.as_mut_ptr(), buf.len() as c_int);
            out.extend(buf[..n].iter().map(|&c| c as u8));
        }
        dtmf_rx_free(s);
        out
    }
}

fn ours_dtmf(x: &[i16]) -> Vec<u8> {
    let mut d = DtmfDetector::new();
    let mut out = Vec::new();
    for f in x.chunks(80) {
        if let Some(DtmfEvent::Start(k)) = d.process(f) {
            out.push(k);
        }
    }
    while let Some(e) = d.process(&[]) {
        if let DtmfEvent::Start(k) = e {
            out.push(k);
        }
    }
    out
}

extern "C" fn ans_cb(user: *mut c_void, code: c_int, _level: c_int, _delay: c_int) {
    // SAFETY: user points at the (sample clock, first /ANS time) pair owned by the caller.
    let st = unsafe { &mut *(user as *mut (usize, Option<usize>)) };
    if code == MODEM_CONNECT_TONES_ANS_PR && st.1.is_none() {
        st.1 = Some(st.0);
    }
}

/// SpanDSP /ANS detector: sample index of the first /ANS report.
fn spandsp_ans(x: &[i16]) -> Option<usize> {
    let mut st: (usize, Option<usize>) = (0, None);
    // SAFETY: st outlives the detector, which is freed before returning.
    unsafe {
        let s = modem_connect_tones_rx_init(std::ptr::null_mut(), MODEM_CONNECT_TONES_ANS_PR, ans_cb, &mut st as *mut _ as *mut c_void);
        assert!(!s.is_null());
        for f in x.chunks(80) {
            st.0 += f.len();
            modem_connect_tones_rx(s, f.as_ptr(), f.len() as c_int);
        }
        modem_connect_tones_rx_free(s);
    }
    st.1
}

fn ours_ans(x: &[i16]) -> Option<usize> {
    let mut d = ModemToneDetector::new();
    for (i, f) in x.chunks(80).enumerate() {
        if let Some(ModemToneEvent::Detected(t)) = d.process(f) {
            if t == ModemTone::AnsPhaseReversal {
                return Some((i + 1) * 80);
            }
        }
    }
    None
}

fn amp(dbm0: f64) -> f64 {
    22826.0 * 10f64.powf(dbm0 / 20.0)
}

fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter().map(|v| v.round().clamp(-32768.0, 32767.0) as i16).collect()
}

fn main() {
    use std::f64::consts::PI;
    // DTMF operate region.
    let keys = b"123A456B789C*0#D";
    let mut noise = Noise::new(7);
    let (mut total, mut ours_ok, mut sp_ok) = (0u32, 0u32, 0u32);
    let mut ours_miss_example = None;
    for &k in keys {
        let (fl, fh) = digit_freqs(k).unwrap();
        for low in [-5.0, -10.0, -15.0, -20.0, -25.0] {
            for twist in [-4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0] {
                let high = low - twist;
                if !(-25.0..=-5.0).contains(&high) {
                    continue;
                }
                for dl in [0.985, 1.0, 1.015] {
                    for dh in [0.985, 1.0, 1.015] {
                        for ms in [40.0, 50.0] {
                            for lead in [160usize, 197] {
                                let n = (ms * 8.0) as usize;
                                let mut x = vec![0.0f64; lead];
                                x.extend((0..n).map(|i| {
                                    let t = i as f64 / 8000.0;
                                    amp(low) * (2.0 * PI * fl as f64 * dl * t).sin() + amp(high) * (2.0 * PI * fh as f64 * dh * t + 1.0).sin()
                                }));
                                x.extend(std::iter::repeat_n(0.0, 600));
                                let sigma = amp(-45.0) / 2f64.sqrt();
                                for v in x.iter_mut() {
                                    *v += sigma * noise.gauss() as f64;
                                }
                                let x = to_i16(&x);
                                total += 1;
                                if ours_dtmf(&x) == vec![k] {
                                    ours_ok += 1;
                                } else {
                                    if std::env::var("MISSES").is_ok() {
                                        println!("miss {} low {low} high {high} dl {dl} dh {dh} {ms} ms lead {lead}: {:?}", k as char, ours_dtmf(&x));
                                    }
                                    if ours_miss_example.is_none() {
                                        ours_miss_example = Some((k as char, low, high, dl, dh, ms));
                                    }
                                }
                                if spandsp_dtmf(&x) == vec![k] {
                                    sp_ok += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    println!("DTMF Q.24 operate region ({total} cases: 16 keys x levels x twist -4..+8 dB x +-1.5 % x 40/50 ms, noise -45 dBm0)");
    println!(
        "  detected: gw-dsp {:.2} %   SpanDSP {:.2} %",
        100.0 * ours_ok as f64 / total as f64,
        100.0 * sp_ok as f64 / total as f64
    );
    if let Some(m) = ours_miss_example {
        println!("  first gw-dsp miss: {m:?}");
    }
    // Talk-off.
    let mut x = Vec::new();
    for seed in 0..5u64 {
        for level in [-12.0, -22.0] {
            let mut s = SpeechLike::new(100 + seed, level);
            x.extend((0..8000 * 60).map(|_| s.sample()));
        }
    }
    let (a, b) = (ours_dtmf(&x), spandsp_dtmf(&x));
    if std::env::var("MISSES").is_ok() {
        println!("false keys: {:?}", String::from_utf8_lossy(&a));
    }
    println!("DTMF talk-off, {} min of speech-like signal: gw-dsp {} false keys, SpanDSP {} false keys", x.len() / 8000 / 60, a.len(), b.len());

    // Talk-off on recorded (synthetic) speech from testdata, three levels.
    let mut rec = Vec::new();
    for file in [&include_bytes!("../testdata/speech_en_m.ulaw")[..], &include_bytes!("../testdata/speech_en_f.ulaw")[..]] {
        for gain in [1.0f32, 0.3, 0.1] {
            rec.extend(file.iter().map(|&b| (gw_dsp::g711::decode(gw_dsp::g711::Law::Ulaw, b) as f32 * gain) as i16));
        }
    }
    let (a, b) = (ours_dtmf(&rec), spandsp_dtmf(&rec));
    println!("DTMF talk-off, {} s of recorded speech (2 talkers x 3 levels): gw-dsp {} false keys, SpanDSP {} false keys", rec.len() / 8000, a.len(), b.len());

    // /ANS at 10 dB SNR.
    let (mut ours_hits, mut sp_hits, mut ours_t, mut sp_t) = (0, 0, 0.0, 0.0);
    let trials = 20;
    for seed in 0..trials {
        let mut nz = Noise::new(1000 + seed);
        let a = amp(-12.0);
        let sigma = a / 2f64.sqrt() * 10f64.powf(-10.0 / 20.0);
        let mut x: Vec<f64> = (0..800).map(|_| sigma * nz.gauss() as f64).collect();
        x.extend((0..26_400).map(|i| {
            let t = i as f64 / 8000.0;
            let flips = (t / 0.45).floor();
            a * (2.0 * PI * 2100.0 * t + PI * flips + seed as f64).sin() + sigma * nz.gauss() as f64
        }));
        let x = to_i16(&x);
        if let Some(t) = ours_ans(&x) {
            ours_hits += 1;
            ours_t += (t - 800) as f64 / 8.0;
        }
        if let Some(t) = spandsp_ans(&x) {
            sp_hits += 1;
            sp_t += (t - 800) as f64 / 8.0;
        }
    }
    let avg = |t: f64, n: i32| if n > 0 { format!("{:.0} ms", t / n as f64) } else { "-".into() };
    println!(
        "/ANS (2100 Hz, reversals every 450 ms) at 10 dB SNR, {trials} trials: gw-dsp {ours_hits}/{trials} (mean {}), SpanDSP {sp_hits}/{trials} (mean {})",
        avg(ours_t, ours_hits),
        avg(sp_t, sp_hits)
    );
    let (a, b) = (ours_ans(&x), spandsp_ans(&x));
    println!("/ANS on 10 min of speech-like signal: gw-dsp {}, SpanDSP {}", if a.is_some() { "FALSE DETECTION" } else { "none" }, if b.is_some() { "FALSE DETECTION" } else { "none" });
    issue12();
}

/// Two tones: low group at `low` dBm0, high group `twist` dB above it (negative: normal
/// twist), frequency factors, `ms` long after `lead` samples, then 75 ms of silence;
/// white noise `snr` dB under the composite; through G.711 µ-law.
#[allow(clippy::too_many_arguments)]
fn key_signal(k: u8, composite: f64, twist: f64, dl: f64, dh: f64, ms: f64, lead: usize, snr: f64, noise: &mut Noise) -> Vec<i16> {
    use std::f64::consts::PI;
    let (fl, fh) = digit_freqs(k).unwrap();
    let low = composite - 10.0 * (1.0 + 10f64.powf(twist / 10.0)).log10();
    let high = low + twist;
    let ph = noise.uniform() as f64 * 2.0 * PI;
    let n = (ms * 8.0) as usize;
    let mut x = vec![0.0f64; lead];
    x.extend((0..n).map(|i| {
        let t = i as f64 / 8000.0;
        amp(low) * (2.0 * PI * fl as f64 * dl * t + ph).sin() + amp(high) * (2.0 * PI * fh as f64 * dh * t + 2.0 * ph).sin()
    }));
    x.extend(std::iter::repeat_n(0.0, 600));
    let sigma = (support::P_0DBM0 * 10f64.powf((composite - snr) / 10.0)).sqrt();
    x.iter().map(|&v| support::law((v + sigma * noise.gauss() as f64) as f32)).collect()
}

fn issue12() {
    let keys = b"123A456B789C*0#D";
    let levels = [0.0, -5.0, -10.0, -15.0, -20.0, -25.0, -27.0, -30.0];
    let mut noise = Noise::new(12);
    println!();
    println!("DTMF, Q.24 operate region to the weakest levels: 16 keys, twist -8..+4 dB, +-1.5 %, 40/50 ms, 2 alignments, noise 15 dB under the composite, G.711");
    println!("{:>10} | {:>8} {:>6} | {:>8} {:>6}", "composite", "gw-dsp", "false", "SpanDSP", "false");
    let (mut tot, mut ok_o, mut ok_s, mut false_o, mut false_s) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for comp in levels {
        let (mut t, mut o, mut s, mut fo, mut fs) = (0u32, 0u32, 0u32, 0u32, 0u32);
        for &k in keys {
            for twist in [-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0] {
                for dl in [0.985, 1.0, 1.015] {
                    for dh in [0.985, 1.0, 1.015] {
                        for ms in [40.0, 50.0] {
                            for lead in [160usize, 197] {
                                let x = key_signal(k, comp, twist, dl, dh, ms, lead, 15.0, &mut noise);
                                t += 1;
                                let (a, b) = (ours_dtmf(&x), spandsp_dtmf(&x));
                                o += (a == vec![k]) as u32;
                                s += (b == vec![k]) as u32;
                                fo += a.iter().filter(|&&d| d != k).count() as u32;
                                fs += b.iter().filter(|&&d| d != k).count() as u32;
                            }
                        }
                    }
                }
            }
        }
        println!("{:>6} dBm0 | {:>7.2}% {:>6} | {:>7.2}% {:>6}", comp, 100.0 * o as f64 / t as f64, fo, 100.0 * s as f64 / t as f64, fs);
        tot += t;
        ok_o += o;
        ok_s += s;
        false_o += fo;
        false_s += fs;
    }
    let rate_o = 100.0 * ok_o as f64 / tot as f64;
    println!("{:>10} | {:>7.2}% {:>6} | {:>7.2}% {:>6}   ({tot} cases)", "all", rate_o, false_o, 100.0 * ok_s as f64 / tot as f64, false_s);

    // Reject region.
    let mut rej = [(0u32, 0u32, 0u32); 3];
    for comp in levels {
        for &k in keys {
            for lead in [160usize, 177, 197] {
                let cases: [(usize, f64, f64, f64, f64); 8] = [
                    (0, -12.0, 1.0, 1.0, 60.0),
                    (0, 12.0, 1.0, 1.0, 60.0),
                    (1, 0.0, 1.0, 1.0, 20.0),
                    (1, -8.0, 1.0, 1.0, 20.0),
                    (2, 0.0, 1.035, 1.0, 60.0),
                    (2, 0.0, 0.965, 1.0, 60.0),
                    (2, 0.0, 1.0, 1.035, 60.0),
                    (2, 0.0, 1.0, 0.965, 60.0),
                ];
                for (what, twist, dl, dh, ms) in cases {
                    let x = key_signal(k, comp, twist, dl, dh, ms, lead, 15.0, &mut noise);
                    rej[what].0 += 1;
                    rej[what].1 += ours_dtmf(&x).len() as u32;
                    rej[what].2 += spandsp_dtmf(&x).len() as u32;
                }
            }
        }
    }
    println!("DTMF reject region (same levels and noise): keys reported (should be 0)");
    for (i, what) in ["12 dB twist either way, 60 ms", "20 ms bursts", "one tone 3.5 % off, 60 ms"].iter().enumerate() {
        println!("  {what:<32} {:>5} cases: gw-dsp {:>4}, SpanDSP {:>4}", rej[i].0, rej[i].1, rej[i].2);
    }
    let rej_o: u32 = rej.iter().map(|r| r.1).sum();

    // Talk-off corpus.
    let minutes = std::env::var("TALKOFF_MINUTES").ok().and_then(|v| v.parse().ok()).unwrap_or(30.0);
    let talkoff = match support::speech_corpus(minutes * 60.0) {
        None => {
            println!("DTMF talk-off corpus: SKIPPED, espeak-ng not installed (apt-get install espeak-ng)");
            None
        }
        Some(corpus) => {
            let secs: usize = corpus.iter().map(|c| c.1.len()).sum::<usize>() / 8000;
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (what, x) in &corpus {
                for level in [-10.0, -20.0, -30.0] {
                    let y: Vec<i16> = support::at_active_level(x, level).into_iter().map(support::law).collect();
                    for d in ours_dtmf(&y) {
                        a.push(format!("{} ({what}, {level} dBm0)", d as char));
                    }
                    b.extend(spandsp_dtmf(&y));
                }
            }
            println!(
                "DTMF talk-off, espeak-ng corpus: {:.1} min x 3 levels ({} utterances, 8 languages, 12 voices): gw-dsp {} false keys, SpanDSP {} false keys",
                secs as f64 / 60.0,
                corpus.len(),
                a.len(),
                b.len()
            );
            for f in &a {
                println!("  gw-dsp false key {f}");
            }
            Some((secs, a.len()))
        }
    };

    println!();
    println!("targets (issue 12)                                   reached by gw-dsp");
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    println!("  Q.24 operate region >= 99.9 %, no false key        {rate_o:.2} %, {false_o} false {}", mark(rate_o >= 99.9 && false_o == 0));
    println!("  reject region: nothing                             {rej_o} keys {}", mark(rej_o == 0));
    match talkoff {
        Some((secs, n)) => println!("  no talk-off on >= 30 min of speech                 {n} in {:.1} min x 3 levels {}", secs as f64 / 60.0, mark(n == 0 && secs >= 1800)),
        None => println!("  no talk-off on >= 30 min of speech                 not measured (no espeak-ng)"),
    }
}
