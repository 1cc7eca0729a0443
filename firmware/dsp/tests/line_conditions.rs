//! Regression tests for the DSP under real line conditions (issue 12): the echo
//! canceller in long near-end signals and double talk, and the DTMF receiver against
//! talk-off on a multilingual speech corpus made at test time with espeak-ng.
//!
//! The figures (ERLE, SDR, detection rates) against speexdsp and SpanDSP are in the
//! benches (`cargo bench -p gw-dsp --bench echo`, `--bench detectors`); these tests only
//! hold the floors that the external harness found broken:
//! - a near end that talks (a tone) for 10 s over far-end noise must still reach the
//!   far end afterwards, digits included, whatever the far end does then;
//! - 20 s of double talk must not take any Annex D model's ERLE below 20 dB, during or
//!   after;
//! - no digit from speech (talk-off).
//!
//! Run in release for speed: `cargo test --release -p gw-dsp --test line_conditions`.

mod support;

use gw_dsp::dtmf::{DtmfDetector, DtmfEvent, DtmfGenerator};
use gw_dsp::echo::EchoCanceller;
use gw_dsp::testsig::SpeechLike;
use support::*;

const FRAME: usize = 80;
const SECOND: usize = 8000;

/// Runs `ec` over the line: `far` is what the network sends (already G.711), `near` the
/// phone's own signal. Returns (near-end input as the canceller saw it, output, echo).
fn run_line(ec: &mut EchoCanceller, far: &[i16], near: &[f32], model: &[f32], delay: usize) -> (Vec<i16>, Vec<i16>, Vec<f32>) {
    let echo = echo_of(model, delay, 6.0, far);
    let near_in = near_in(&echo, near);
    let mut out = vec![0i16; far.len()];
    for i in (0..far.len() - FRAME + 1).step_by(FRAME) {
        ec.process(&far[i..i + FRAME], &near_in[i..i + FRAME], &mut out[i..i + FRAME]);
    }
    (near_in, out, echo)
}

fn keys(x: &[i16]) -> String {
    let mut d = DtmfDetector::new();
    let mut s = String::new();
    for f in x.chunks(FRAME) {
        if let Some(DtmfEvent::Start(k)) = d.process(f) {
            s.push(k as char);
        }
    }
    while let Some(e) = d.process(&[]) {
        if let DtmfEvent::Start(k) = e {
            s.push(k as char);
        }
    }
    s
}

fn sine(freq: f32, dbm0: f64, n: usize, from: usize) -> impl Iterator<Item = f32> {
    let a = (2.0 * P_0DBM0 * 10f64.powf(dbm0 / 10.0)).sqrt() as f32;
    (from..from + n).map(move |i| a * (std::f32::consts::TAU * freq * i as f32 / 8000.0).sin())
}

/// Item 1 of the issue: the phone sends a steady 1004 Hz tone at -10 dBm0 while the far
/// end plays 10 s of white noise at -33 dBm0 (after 3 s of speech, so the canceller is
/// converged); then the phone dials 23456789 and sends a tone at -20 dBm0, while the far
/// end is silent, plays low noise, or talks. NLP on (as in gatewayd). Everything the
/// phone sent must reach the far end: every digit, and the tones at their level in
/// every 100 ms. Before the fix the near end was muted from ~4 s into the tone on for
/// the rest of the call (the double-talk reference had risen to the tone's level and
/// the NLP took the near end for residual echo).
#[test]
fn near_end_survives_long_tone_over_far_noise_then_dials() {
    let ms = models();
    let mut failures = Vec::new();
    for (mi, (name, m)) in ms.iter().enumerate() {
        for after in ["silence", "noise", "speech"] {
            let n = 17 * SECOND;
            let mut talk = SpeechLike::new(1, -16.0);
            let mut later = SpeechLike::new(3 + mi as u64, -20.0);
            let noise = white_noise(9 + mi as u64, n, -33.0);
            let low_noise = white_noise(99, n, -45.0);
            let far: Vec<i16> = (0..n)
                .map(|i| {
                    let v = match i / SECOND {
                        0..=2 => talk.sample() as f32,
                        3..=12 => noise[i],
                        _ => match after {
                            "noise" => low_noise[i],
                            "speech" => later.sample() as f32,
                            _ => 0.0,
                        },
                    };
                    law(v)
                })
                .collect();
            let mut near = vec![0.0f32; n];
            for (i, v) in sine(1004.0, -10.0, 10 * SECOND, 3 * SECOND).enumerate() {
                near[3 * SECOND + i] = v;
            }
            let mut at = 14 * SECOND;
            for &d in b"23456789" {
                let mut g = DtmfGenerator::new(d, -10.0, 80, 80).unwrap();
                let mut buf = vec![0i16; 1280];
                g.fill(&mut buf);
                for (k, v) in buf.iter().enumerate() {
                    near[at + k] = *v as f32;
                }
                at += 1280;
            }
            for (i, v) in sine(1004.0, -20.0, SECOND, 0).enumerate() {
                near[at + 400 + i] = v;
            }
            let tone2 = at + 400;
            let mut ec = Box::new(EchoCanceller::new(1024));
            let (_, out, _) = run_line(&mut ec, &far, &near, m, 320);
            let got = keys(&out[13 * SECOND..]);
            if got != "23456789" {
                failures.push(format!("{name}, far end {after} while dialling: digits {got:?} after the canceller (sent 23456789); {:?}", ec.stats()));
            }
            // The tones, per 100 ms: at the far end within 2 dB of what the phone sent.
            for (from, len, what, dbm0) in [(3 * SECOND + 800, 10 * SECOND - 800, "-10 dBm0 tone", -10.0), (tone2 + 400, SECOND - 400, "-20 dBm0 tone", -20.0)] {
                for w in (from..from + len - 800).step_by(800) {
                    let lin = dbm0;
                    let lout = tone_dbm0(&out[w..w + 800], 1004.0);
                    if (lout - lin).abs() > 2.0 {
                        failures.push(format!("{name}, far end {after}: {what} at {:.1} s: {lout:.1} dBm0 out, {lin:.1} in", w as f32 / 8000.0));
                        break;
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Level of the `freq` component of `x` (a sine of that level reads its level).
fn tone_dbm0(x: &[i16], freq: f32) -> f64 {
    let (mut c, mut s) = (0.0f64, 0.0f64);
    for (i, &v) in x.iter().enumerate() {
        let ph = std::f64::consts::TAU * freq as f64 * i as f64 / 8000.0;
        c += v as f64 * ph.cos();
        s += v as f64 * ph.sin();
    }
    let amp = 2.0 * (c * c + s * s).sqrt() / x.len() as f64;
    db(amp * amp / 2.0 / P_0DBM0)
}

/// Filter-only ERLE over [a, b): echo against what is left of it (the estimate is
/// `near_in - out`), so near-end speech and coding noise do not count.
fn erle_linear(echo: &[f32], near_in: &[i16], out: &[i16], a: usize, b: usize) -> f64 {
    db(power(echo[a..b].iter().copied()) / power((a..b).map(|i| out[i] as f32 - near_in[i] as f32 + echo[i])))
}

/// Item 2 of the issue: 20 s of continuous double talk (a babble of three talkers,
/// 6 dB above the echo, so there are no pauses for a detector to re-learn from) after
/// 4 s of convergence, every Annex D hybrid behind 40 ms, ERL 6 dB, G.711 both ways,
/// NLP off (the linear filter is measured). Fails if the filter's ERLE drops below
/// 20 dB in any second of the double talk or in the second after, or drops more than
/// 6 dB, or the near-end speech is distorted (SDR below 15 dB). Before the fix, on
/// babble the foreground filter was replaced by one fitted to the near end after
/// ~15 s (D.3, D.5: ERLE -1 dB) and the double-talk detector gave up after ~5 s.
///
/// The babble is the crate's speech-like source, and espeak-ng speech as well when
/// espeak-ng is installed.
#[test]
fn twenty_seconds_of_double_talk_keep_the_erle_on_every_annex_d_model() {
    long_double_talk(6.0, true, true);
}

/// The same with the near end 6 dB *under* the echo, after the same 4 s of
/// convergence. Such a talker leaves the far/near coherence around 0.7, so neither
/// near-end cue holds and the background keeps adapting through the babble, while the
/// residual-ratio detector drops out now and then. Before the fix (once converged and
/// while double talk is recent, a copy needs the background to lead 4 blocks in a row,
/// 8 while the background itself cancels under 15 dB; `echo.rs` step 5) chance copies
/// collapsed the ERLE on speech-like D.2, D.8, D.9 (worst second -8 to 0 dB, 14-16 dB
/// after) and espeak-ng D.2 (5 dB); now 21.6 dB worst second on any model.
#[test]
fn twenty_seconds_of_weak_double_talk_keep_the_erle_on_every_annex_d_model() {
    long_double_talk(-6.0, true, true);
}

/// Runs the test on the speech-like babble and/or espeak-ng's; false if espeak-ng was
/// wanted and is missing.
fn long_double_talk(rel: f64, speech_like: bool, espeak: bool) -> bool {
    let (conv, dt, tail) = (4 * SECOND, 20 * SECOND, 2 * SECOND);
    let n = conv + dt + tail;
    let mut sources: Vec<(&str, Vec<f32>, Vec<f32>)> = Vec::new();
    if speech_like {
        let mut f = SpeechLike::new(1, -16.0);
        let far: Vec<f32> = (0..n).map(|_| f.sample() as f32).collect();
        let mut t: Vec<SpeechLike> = (0..3).map(|k| SpeechLike::new(20 + k, -20.0)).collect();
        let babble: Vec<f32> = (0..dt).map(|_| t.iter_mut().map(|s| s.sample() as f32).sum()).collect();
        sources.push(("speech-like", far, babble));
    }
    let mut found = true;
    if espeak {
        match espeak_babble(n, dt) {
            Some((far, babble)) => sources.push(("espeak-ng", far, babble)),
            None => {
                found = false;
                eprintln!("SKIPPED the espeak-ng half of this test: espeak-ng not installed (apt-get install espeak-ng; tools/test installs it)");
            }
        }
    }
    let mut failures = Vec::new();
    for (src, far_speech, babble) in &sources {
        let far: Vec<i16> = far_speech.iter().map(|&v| law(v)).collect();
        for (name, m) in models() {
            let echo_level = active_level_dbm0(&echo_of(&m, 320, 6.0, &far));
            let babble = at_active_level(babble, echo_level + rel);
            let mut near = vec![0.0f32; n];
            near[conv..conv + dt].copy_from_slice(&babble);
            let mut ec = Box::new(EchoCanceller::new(1024));
            ec.set_nlp(false);
            let (near_in, out, echo) = run_line(&mut ec, &far, &near, &m, 320);
            let lin = |a: usize, b: usize| erle_linear(&echo, &near_in, &out, a, b);
            let before = lin(conv - 2 * SECOND, conv);
            let during: Vec<f64> = (0..20).map(|s| lin(conv + s * SECOND, conv + (s + 1) * SECOND)).collect();
            let after = lin(conv + dt, conv + dt + SECOND);
            let worst = during.iter().cloned().fold(f64::MAX, f64::min);
            let dist = power((conv + SECOND / 4..conv + dt).map(|i| out[i] as f32 - near[i]));
            let sdr = db(power(near[conv + SECOND / 4..conv + dt].iter().copied()) / dist);
            let name = format!("{name} near end {rel:+} dB");
            eprintln!("{src} {name}: ERLE before {before:.1} dB, worst second of 20 s double talk {worst:.1}, 1 s after {after:.1}; near-end SDR {sdr:.1} dB");
            if worst < 20.0 || after < 20.0 || before - after > 6.0 || sdr < 15.0 {
                failures.push(format!(
                    "{src} {name}: ERLE before {before:.1} dB, during {during:.0?}, after {after:.1} dB; near-end SDR {sdr:.1} dB (floors: 20 dB, drop 6 dB, SDR 15 dB)"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    found
}

/// Far end: English male voice; near end: French, German and Spanish voices at once.
fn espeak_babble(n: usize, dt: usize) -> Option<(Vec<f32>, Vec<f32>)> {
    if !espeak_available() {
        return None;
    }
    let text = |lang: &str| TEXTS.iter().find(|t| t.0 == lang).unwrap().1;
    let long = |voice: &str, lang: &str, pitch: u32, len: usize| -> Option<Vec<f32>> {
        let mut x = Vec::new();
        let mut wpm = 150;
        while x.len() < len {
            x.extend(espeak(voice, wpm, pitch, text(lang))?);
            wpm += 10;
        }
        x.truncate(len);
        Some(at_active_level(&x, -20.0))
    };
    let far = at_active_level(&long("en-us", "en-us", 40, n)?, -16.0);
    let a = long("fr-fr+f3", "fr-fr", 60, dt)?;
    let b = long("de+m3", "de", 30, dt + 7000)?;
    let c = long("es+f1", "es", 80, dt + 23000)?;
    let babble = (0..dt).map(|i| a[i] + b[i + 7000] + c[i + 23000]).collect();
    Some((far, babble))
}

/// Item 5 of the issue: no digit from speech. A multilingual espeak-ng corpus (eight
/// languages, a dozen voices, 120-200 words per minute, varied pitch) of 5 minutes at
/// three levels (-10, -20 and -30 dBm0 active), through G.711 µ-law. The bench runs
/// 30 minutes.
#[test]
fn no_talk_off_on_multilingual_speech() {
    let Some(corpus) = speech_corpus(300.0) else {
        eprintln!("SKIPPED no_talk_off_on_multilingual_speech: espeak-ng not installed (apt-get install espeak-ng; tools/test installs it)");
        return;
    };
    let mut false_keys = Vec::new();
    for (what, x) in &corpus {
        for level in [-10.0, -20.0, -30.0] {
            let y: Vec<i16> = at_active_level(x, level).into_iter().map(law).collect();
            let k = keys(&y);
            if !k.is_empty() {
                false_keys.push(format!("{what} at {level} dBm0: {k:?}"));
            }
        }
    }
    let secs: usize = corpus.iter().map(|c| c.1.len()).sum::<usize>() / SECOND;
    assert!(false_keys.is_empty(), "talk-off in {secs} s of speech x 3 levels:\n{}", false_keys.join("\n"));
}

/// Issue 12, line noise: white noise at -55 dBm0 on the line side (about 32 dB under
/// the echo of the speech-like far end at -16 dBm0), every Annex D hybrid behind 40 ms,
/// ERL 6 dB, G.711 both ways, NLP off. The filter's ERLE as G.168 3.4 defines it (the
/// echo against echo minus estimate, so neither the noise nor Sin's quantisation
/// counts) over seconds 5-10 must reach 39 dB on every model (the issue asks 35 dB of
/// the harness's measure, which also counts Sin's µ-law noise; see the bench). Before
/// the noise-aware step (`echo::adapt`) the normalised step turned the noise into
/// misadjustment: 36.1-38.2 dB here (29-31 dB on the bench's espeak-ng speech); with
/// it 39.7-40.7 dB.
#[test]
fn line_noise_at_minus_55_dbm0_costs_the_filter_little_on_every_model() {
    let n = 10 * SECOND;
    let mut f = SpeechLike::new(1, -16.0);
    let far: Vec<i16> = (0..n).map(|_| law(f.sample() as f32)).collect();
    let mut failures = Vec::new();
    for (mi, (name, m)) in models().iter().enumerate() {
        let noise = white_noise(500 + mi as u64, n, -55.0);
        let mut ec = Box::new(EchoCanceller::new(1024));
        ec.set_nlp(false);
        let (near_in, out, echo) = run_line(&mut ec, &far, &noise, m, 320);
        let erle = erle_linear(&echo, &near_in, &out, 5 * SECOND, n);
        eprintln!("{name}: G.168 ERLE over 5-10 s with -55 dBm0 line noise {erle:.1} dB");
        if erle < 39.0 {
            failures.push(format!("{name}: {erle:.1} dB"));
        }
    }
    assert!(failures.is_empty(), "G.168 ERLE under 39 dB with -55 dBm0 line noise: {}", failures.join(", "));
}

/// Item 3 of the issue on the bench's speech: espeak-ng English at -16 dBm0 active
/// (skipped, saying so, without espeak-ng), -55 dBm0 of white noise on the line side,
/// every Annex D hybrid behind 40 ms, ERL 6 dB, G.711 both ways, NLP off. The filter's
/// G.168 3.4 ERLE over seconds 5-10 must reach 35 dB on every model (the issue's
/// target). On this speech the filter is still converging after 5 s (the noise is
/// only learnt in the first far-end pause, ~3 s in), so the foreground is an average
/// of the background's recent states once converged (`echo.rs`, step 5) rather than
/// its last snapshot: without that D.3 reached 34.8 dB here (the bench: 34.4), with it
/// 35.9-37.8 dB on the eight models.
#[test]
fn line_noise_at_minus_55_dbm0_on_espeak_speech_leaves_35_db_on_every_model() {
    let n = 10 * SECOND;
    let Some((far_speech, _)) = espeak_babble(n, 1) else {
        eprintln!("espeak-ng not installed: skipped");
        return;
    };
    let far: Vec<i16> = far_speech.iter().map(|&v| law(v)).collect();
    let mut failures = Vec::new();
    for (mi, (name, m)) in models().iter().enumerate() {
        let noise = white_noise(500 + mi as u64, n, -55.0);
        let mut ec = Box::new(EchoCanceller::new(1024));
        ec.set_nlp(false);
        let (near_in, out, echo) = run_line(&mut ec, &far, &noise, m, 320);
        let erle = erle_linear(&echo, &near_in, &out, 5 * SECOND, n);
        eprintln!("{name}: G.168 ERLE over 5-10 s, espeak-ng far end, -55 dBm0 line noise {erle:.1} dB");
        if erle < 35.0 {
            failures.push(format!("{name}: {erle:.1} dB"));
        }
    }
    assert!(failures.is_empty(), "G.168 ERLE under 35 dB with -55 dBm0 line noise on espeak-ng speech: {}", failures.join(", "));
}

/// The FXO hil test's D.5 case at the unit level (issue 12 (d)). There the phone sends
/// white noise at -15 dBm0, the exchange returns it through D.5 after 50 ms, ERL 6 dB,
/// and the canceller has a 128 ms tail; one CI run heard the echo uncancelled
/// (-1.2 dB). The canceller sees the line's delay *plus* the sim card's receive
/// queue: 2 frames ahead, one more frame per receive underrun (each late frame is
/// replaced by silence and the rest arrive one frame later), up to 8 frames
/// (`hal/src/sim.rs`, RX_PREFILL, RX_MAX_DEPTH). Underruns come when the rt thread
/// misses deadlines on a loaded machine (the failing run's counts were not kept; a
/// passing run here counted 117 missed ticks and 6 underruns in its first 15 s). With
/// 75 ms or more of queue (7-8 frames; the cap is 8), D.5's energy (its first ~8 ms)
/// leaves the 128 ms tail. Here: the same signals, bulk delays from 50 ms to 130 ms in
/// 5 ms steps (several block phases). While the echo's energy is inside the tail every
/// delay is cancelled from a fresh start; beyond it the canceller cannot cancel and must
/// not make things worse: it sees a near end that the far end does not explain, freezes
/// (a near-end talker for G.168 6.4.2.4) and passes the line's signal unchanged, no
/// louder than the echo.
#[test]
fn fxo_white_noise_echo_is_cancelled_anywhere_in_the_tail_and_left_alone_beyond_it() {
    let n = 6 * SECOND;
    let far: Vec<i16> = white_noise(7, n, -15.0).iter().map(|&v| law(v)).collect();
    let (_, d5) = models().into_iter().find(|m| m.0 == "d5").expect("D.5");
    let mut failures = Vec::new();
    for delay in (400..=1040).step_by(40) {
        let mut ec = Box::new(EchoCanceller::new(1024));
        let (near_in, out, _) = run_line(&mut ec, &far, &vec![0.0; n], &d5, delay);
        let win = 4 * SECOND..n;
        let erle = db(power(near_in[win.clone()].iter().map(|&v| v as f32)) / power(out[win].iter().map(|&v| v as f32)));
        // D.5's energy sits in its first 64 taps; from 125 ms on it is past the tail.
        let (inside, beyond) = (delay + 64 <= 1024, delay >= 1000);
        eprintln!("D.5 at {} ms: ERLE {erle:.1} dB", delay / 8);
        if inside && erle < 40.0 || beyond && !(-0.5..=0.5).contains(&erle) || erle < -0.5 {
            failures.push(format!("{} ms: {erle:.1} dB", delay / 8));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join(", "));
}

/// Frames lost on the PCM path (the sim card under load plays an rx underrun as a
/// frame of digital silence; a TDM slip does the same): 40 of the 1000 frames of a
/// 10 s call, at pseudo-random places, every Annex D hybrid behind 40 ms, speech-like
/// far end, G.711, NLP off. In a lost frame there is no echo, and the canceller must
/// send (almost) nothing: before, it sent minus its echo estimate, i.e. the echo
/// again, and the whole call's ERLE over seconds 5-10 fell to 10.8-12.2 dB (now
/// 30.5-33.8). The filter's ERLE outside the lost frames must stay at 30 dB or more
/// (34.5-35.2).
#[test]
fn lost_frames_in_sin_are_not_filled_with_the_echo_estimate() {
    let n = 10 * SECOND;
    let mut f = SpeechLike::new(1, -16.0);
    let far: Vec<i16> = (0..n).map(|_| law(f.sample() as f32)).collect();
    let mut lost = vec![false; n / FRAME];
    let mut x: u32 = 12345;
    for _ in 0..40 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let k = (x >> 8) as usize % (n / FRAME);
        lost[k] = true;
    }
    let mut failures = Vec::new();
    for (name, m) in models() {
        let echo = echo_of(&m, 320, 6.0, &far);
        let mut near = near_in(&echo, &vec![0.0; n]);
        for (fi, _) in lost.iter().enumerate().filter(|l| *l.1) {
            near[fi * FRAME..(fi + 1) * FRAME].fill(0);
        }
        let mut ec = Box::new(EchoCanceller::new(1024));
        ec.set_nlp(false);
        let mut out = vec![0i16; n];
        for i in (0..n).step_by(FRAME) {
            ec.process(&far[i..i + FRAME], &near[i..i + FRAME], &mut out[i..i + FRAME]);
        }
        let pe = power(echo[5 * SECOND..].iter().copied());
        let whole = db(pe / power(out[5 * SECOND..].iter().map(|&v| v as f32)));
        let kept: Vec<usize> = (5 * SECOND..n).filter(|&i| !lost[i / FRAME]).collect();
        let outside = db(power(kept.iter().map(|&i| echo[i])) / power(kept.iter().map(|&i| out[i] as f32)));
        eprintln!("{name}: ERLE over 5-10 s with 4 % of the frames lost: {whole:.1} dB ({outside:.1} dB outside the lost frames)");
        if whole < 25.0 || outside < 30.0 {
            failures.push(format!("{name}: {whole:.1} dB, outside the lost frames {outside:.1} dB"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join(", "));
}
