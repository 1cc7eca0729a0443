//! Echo canceller benchmark: gw-dsp's `EchoCanceller` against speexdsp's MDF canceller
//! (`speex_echo_cancellation`, Debian libspeexdsp-dev) on identical signals, one run.
//!
//! Set-up (the targets are measured here): speech-like far end at -16 dBm0
//! (`gw_dsp::testsig::SpeechLike`), G.711 µ-law on both paths, a G.168 Annex D hybrid
//! model (`testdata/g168_models.txt`) after a bulk delay, ERL 6 dB, 1024-tap tail
//! (128 ms), 10 ms frames. Both cancellers are measured on their linear output (our NLP
//! off; speex without its preprocessor). Printed per model: mean ERLE over seconds 5-10,
//! the time until the ERLE over a 250 ms window first reaches 20 dB, the drop of the
//! filter's ERLE during 3 s of double talk (near end 6 dB above the echo, from 5 s on)
//! against the same stretch without double talk, the near end's signal-to-distortion
//! ratio during double talk, and ns per sample (best of 5); then the means and ratios.
//!
//! The last two rows ("rec") use recorded synthetic speech from `testdata/` (espeak-ng,
//! see `testdata/README.md`) for both talkers instead of `SpeechLike`.
//!
//! Then the line conditions of issue 12, each for both cancellers on the same signals
//! (espeak-ng speech when espeak-ng is installed, else the speech-like source; the
//! output says which):
//! - **Noise floor**: white noise at -65 and -55 dBm0 on the line side; mean ERLE over
//!   seconds 5-10 as echo against residual echo (the noise itself taken out, as G.168
//!   measures the returned echo), and the time after which the ERLE (250 ms windows)
//!   stays at 20 dB or more.
//! - **Long double talk**: after 8 s of convergence, 20 s of continuous double talk (a
//!   babble of three talkers, no pauses) at +6 dB and -6 dB against the echo; the
//!   filter's ERLE before (2 s), its mean and worst second during, over the second after,
//!   the drop (before minus after) and the near-end SDR during the double talk.
//! - **Targets** (issue 12), printed with the figures reached: mean ERLE >= 37 dB without
//!   and >= 35 dB with the noise floor on every model (the G.711 ceiling, printed, is
//!   ~37 dB), 20 dB held within 1 s, ERLE drop <= 6 dB and near-end SDR >= 15 dB after
//!   20 s of double talk on every model, CPU <= 0.6x speexdsp.
//!
//! Run: `cargo bench -p gw-dsp --bench echo` (needs libspeexdsp installed; espeak-ng
//! for the speech).
#![allow(unsafe_code)] // FFI to speexdsp, benchmark only

#[path = "../tests/support/mod.rs"]
mod support;

use gw_dsp::echo::{EchoCanceller, LATENCY};
use gw_dsp::g711::{self, Law};
use gw_dsp::testsig::SpeechLike;
use std::os::raw::c_int;
use std::time::Instant;

#[repr(C)]
struct SpeexEchoState {
    _private: [u8; 0],
}

#[link(name = "speexdsp")]
extern "C" {
    fn speex_echo_state_init(frame_size: c_int, filter_length: c_int) -> *mut SpeexEchoState;
    fn speex_echo_state_destroy(st: *mut SpeexEchoState);
    fn speex_echo_cancellation(st: *mut SpeexEchoState, rec: *const i16, play: *const i16, out: *mut i16);
    fn speex_echo_ctl(st: *mut SpeexEchoState, request: c_int, ptr: *mut std::ffi::c_void) -> c_int;
}
const SPEEX_ECHO_SET_SAMPLING_RATE: c_int = 24;

static RECORDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct Speex(*mut SpeexEchoState);
impl Speex {
    fn new(frame: usize, taps: usize) -> Self {
        // SAFETY: plain constructor; checked for null below.
        let st = unsafe { speex_echo_state_init(frame as c_int, taps as c_int) };
        assert!(!st.is_null());
        let mut rate: c_int = 8000;
        // SAFETY: st is valid; the request takes a pointer to an int.
        unsafe { speex_echo_ctl(st, SPEEX_ECHO_SET_SAMPLING_RATE, &mut rate as *mut c_int as *mut _) };
        Speex(st)
    }
    fn process(&mut self, far: &[i16], near: &[i16], out: &mut [i16]) {
        assert!(far.len() == near.len() && near.len() == out.len());
        // SAFETY: the three buffers hold one frame each, as configured.
        unsafe { speex_echo_cancellation(self.0, near.as_ptr(), far.as_ptr(), out.as_mut_ptr()) };
    }
}
impl Drop for Speex {
    fn drop(&mut self) {
        // SAFETY: created by speex_echo_state_init, destroyed once.
        unsafe { speex_echo_state_destroy(self.0) };
    }
}


fn law(x: f32) -> i16 {
    let s = x.round().clamp(-32768.0, 32767.0) as i16;
    g711::decode(Law::Ulaw, g711::encode(Law::Ulaw, s))
}

/// The scenario's signals: far (as sent to the line), near as received, echo and near
/// speech components.
struct Signals {
    far: Vec<i16>,
    near: Vec<i16>,
    echo: Vec<f32>,
    speech: Vec<f32>,
}

/// Recorded (synthetic) speech from testdata, 8 kHz µ-law.
fn recorded(file: &[u8]) -> Vec<i16> {
    file.iter().map(|&b| g711::decode(Law::Ulaw, b)).collect()
}

fn signals(model: &[f32], delay: usize, erl_db: f32, secs: f32, dt_from: Option<usize>) -> Signals {
    let n = (secs * 8000.0) as usize;
    let rec = RECORDED.load(std::sync::atomic::Ordering::Relaxed);
    let far: Vec<i16> = if rec {
        recorded(include_bytes!("../testdata/speech_en_m.ulaw"))[..n].to_vec()
    } else {
        let mut src = SpeechLike::new(1, -16.0);
        (0..n).map(|_| law(src.sample() as f32)).collect()
    };
    let conv = |i: usize| -> f32 {
        let mut y = 0.0;
        for (k, h) in model.iter().enumerate() {
            if i >= delay + k {
                y += h * far[i - delay - k] as f32;
            }
        }
        y
    };
    let raw: Vec<f32> = (0..n).map(conv).collect();
    // ERL measured with the signal itself (G.168): scale the echo accordingly.
    let pf: f64 = far.iter().map(|&v| (v as f64).powi(2)).sum();
    let pe: f64 = raw.iter().map(|&v| (v as f64).powi(2)).sum();
    let g = ((pf / pe) * 10f64.powf(-erl_db as f64 / 10.0)).sqrt() as f32;
    let echo: Vec<f32> = raw.iter().map(|v| v * g).collect();
    let speech: Vec<f32> = if rec {
        // The other talker at the far end's level: 6 dB above the echo at ERL 6 dB.
        let t = recorded(include_bytes!("../testdata/speech_en_f.ulaw"));
        (0..n).map(|i| match dt_from { Some(s) if i >= s => t[i - s] as f32, _ => 0.0 }).collect()
    } else {
        let mut talker = SpeechLike::new(2, -16.0 - erl_db + 6.0);
        (0..n).map(|i| if dt_from.is_some_and(|s| i >= s) { talker.sample() as f32 } else { 0.0 }).collect()
    };
    let near = (0..n).map(|i| law(echo[i] + speech[i])).collect();
    Signals { far, near, echo, speech }
}

fn pow(x: impl Iterator<Item = f32>) -> f64 {
    let (mut s, mut n) = (0.0f64, 0usize);
    for v in x {
        s += (v as f64).powi(2);
        n += 1;
    }
    s / n.max(1) as f64 + 1e-6
}

struct Result {
    mean_erle: f64,
    t20: Option<f64>,
    ns_per_sample: f64,
    dt_drop: f64,
    dt_sdr: f64,
    ceiling: f64,
    /// G.168 3.4 ERLE: echo against echo - estimate (Sin's quantisation excluded).
    g168: f64,
}

/// Run one canceller (a closure over frames) and measure. `lat`: its output delay.
type Runner = Box<dyn FnMut(&[i16], &[i16], &mut [i16])>;

fn measure(make: impl Fn() -> Runner, lat: usize, model: &[f32], delay: usize) -> Result {
    let mut run = make();
    const FRAME: usize = 80;
    // Single talk, 10 s.
    let s = signals(model, delay, 6.0, 10.0, None);
    let mut out = vec![0i16; s.far.len()];
    for i in (0..s.far.len()).step_by(FRAME) {
        run(&s.far[i..i + FRAME], &s.near[i..i + FRAME], &mut out[i..i + FRAME]);
    }
    let erle = |a: usize, b: usize| {
        10.0 * (pow(s.near[a..b].iter().map(|&v| v as f32)) / pow((a..b).map(|i| out[i + lat] as f32))).log10()
    };
    let n = s.far.len() - lat;
    let mean_erle = erle(40_000, n);
    // The G.711 ceiling: a canceller that knew the echo exactly leaves the near end's
    // quantisation noise.
    let ceiling = 10.0 * (pow(s.near[40_000..n].iter().map(|&v| v as f32)) / pow((40_000..n).map(|i| (s.near[i] as f32 - s.echo[i]).round()))).log10();
    let mut t20 = None;
    for w in (0..n - 2000).step_by(400) {
        // Skip windows where the far end is silent (no echo to measure).
        if pow(s.echo[w..w + 2000].iter().copied()) < 1e4 {
            continue;
        }
        if erle(w, w + 2000) >= 20.0 {
            t20 = Some((w + 2000) as f64 / 8000.0);
            break;
        }
    }
    // Double talk: a fresh canceller converges 5 s, near talker from 5 s to 8 s. The
    // far end is the same as in the single-talk run, so the filter's ERLE over the same
    // stretch of that run is the reference (signal content alone moves ERLE by dB).
    let d = signals(model, delay, 6.0, 8.0, Some(40_000));
    let mut run_dt = make();
    let mut out_dt = vec![0i16; d.far.len()];
    for i in (0..d.far.len()).step_by(FRAME) {
        run_dt(&d.far[i..i + FRAME], &d.near[i..i + FRAME], &mut out_dt[i..i + FRAME]);
    }
    // Filter-only ERLE: echo against echo - estimate, estimate = near - out.
    let lin = |sig: &Signals, o: &[i16], a: usize, b: usize| {
        10.0 * (pow(sig.echo[a..b].iter().copied())
            / pow((a..b).map(|i| o[i + lat] as f32 - sig.near[i] as f32 + sig.echo[i])))
        .log10()
    };
    let g168 = lin(&s, &out, 40_000, s.far.len() - lat);
    let n = d.far.len() - lat;
    let before = lin(&s, &out, 42_000, n);
    let during = lin(&d, &out_dt, 42_000, n);
    let dist = pow((42_000..n).map(|i| out_dt[i + lat] as f32 - d.speech[i]));
    let sdr = 10.0 * (pow(d.speech[42_000..n].iter().copied()) / dist).log10();
    let ns = time_ns(&mut run, &s);
    Result { mean_erle, t20, ns_per_sample: ns, dt_drop: before - during, dt_sdr: sdr, ceiling, g168 }
}

/// Best-of-5 time per sample over 2 s of converged operation (the machine is shared;
/// the minimum is the figure least disturbed by other load).
fn time_ns(mut run: impl FnMut(&[i16], &[i16], &mut [i16]), s: &Signals) -> f64 {
    let mut out = vec![0i16; 16_000];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        for i in (0..16_000).step_by(80) {
            run(&s.far[i..i + 80], &s.near[i..i + 80], &mut out[i..i + 80]);
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / 16_000.0);
    }
    best
}

fn main() {
    if std::env::var("PROFILE_OURS").is_ok() {
        let ms = support::models();
        RECORDED.store(true, std::sync::atomic::Ordering::Relaxed);
        let s = signals(&ms[0].1, 240, 6.0, 10.0, None);
        let mut ec = Box::new(EchoCanceller::new(1024));
        let mut out = vec![0i16; 80];
        for _ in 0..30 {
            for i in (0..s.far.len()).step_by(80) {
                ec.process(&s.far[i..i + 80], &s.near[i..i + 80], &mut out);
            }
        }
        return;
    }
    let ms = support::models();
    println!("echo canceller benchmark: 1024 taps, G.711 both paths, ERL 6 dB, speech-like far end at -16 dBm0");
    println!("ERLE: Sin against Sout over 5-10 s; G.168: echo against echo - estimate (3.4; Sin's µ-law noise excluded); ceil: what an exact estimate leaves (Sin/Sout)");
    println!("{:<5} {:>6} | {:>34} | {:>34} | {:>5} {:>6} {:>6}", "model", "delay", "gw-dsp  ERLE G.168  t20  dtDrop dtSDR ns", "speexdsp ERLE G.168  t20  dtDrop dtSDR ns", "ceil", "dERLE", "speed");
    let mut sums = [0.0f64; 9];
    let mut g168_worst = f64::MAX;
    let mut count = 0.0;
    // The eight Annex D models at 20-55 ms, then D2 at 2 ms (a local FXS hybrid: the echo
    // sits in the first partition, which runs in the time domain).
    // Last, two models on recorded (synthetic) speech from testdata ("rec" rows).
    let mut cases: Vec<(usize, usize, bool)> =
        (0..ms.len()).map(|i| (i, (20 + 5 * i) * 8, false)).chain([(0, 16, false), (1, 280, true), (4, 400, true)]).collect();
    if let Ok(c) = std::env::var("ECHO_CASES") {
        // Other cases, e.g. ECHO_CASES=6:400,6:384 (model index:delay in samples).
        cases = c
            .split(',')
            .map(|t| {
                let (m, d) = t.split_once(':').expect("model:delay");
                (m.parse().unwrap(), d.parse().unwrap(), false)
            })
            .collect();
    }
    for (i, delay, rec) in cases {
        RECORDED.store(rec, std::sync::atomic::Ordering::Relaxed);
        let (name, m) = &ms[i];
        let name = if rec { format!("rec{}", &name[1..]) } else { name.clone() };
        let ours = || -> Runner {
            let mut ec = Box::new(EchoCanceller::new(1024));
            ec.set_nlp(false);
            Box::new(move |f, n, o| ec.process(f, n, o))
        };
        let a = measure(ours, LATENCY, m, delay);
        let speex = || -> Runner {
            let mut sp = Speex::new(80, 1024);
            Box::new(move |f, n, o| sp.process(f, n, o))
        };
        let b = measure(speex, 0, m, delay);
        let t = |r: &Result| r.t20.map(|t| format!("{t:.2}s")).unwrap_or("never".into());
        println!(
            "{name:<5} {:>4}ms | {:>5.1} {:>5.1} {:>6} {:>5.1} {:>5.1} {:>4.0} | {:>5.1} {:>5.1} {:>6} {:>5.1} {:>5.1} {:>4.0} | {:>5.1} {:>+6.1} {:>5.1}x",
            delay / 8, a.mean_erle, a.g168, t(&a), a.dt_drop, a.dt_sdr, a.ns_per_sample, b.mean_erle, b.g168, t(&b), b.dt_drop, b.dt_sdr, b.ns_per_sample,
            a.ceiling, a.mean_erle - b.mean_erle, b.ns_per_sample / a.ns_per_sample
        );
        sums[7] += a.g168;
        sums[8] += b.g168;
        g168_worst = g168_worst.min(a.g168);
        sums[0] += a.mean_erle;
        sums[1] += b.mean_erle;
        sums[2] += a.t20.unwrap_or(10.0);
        sums[3] += b.t20.unwrap_or(10.0);
        sums[4] += a.ns_per_sample;
        sums[5] += b.ns_per_sample;
        sums[6] += a.ceiling;
        count += 1.0;
    }
    println!(
        "mean  | gw-dsp ERLE {:.1} dB, t20 {:.2} s, {:.0} ns/sample | speexdsp ERLE {:.1} dB, t20 {:.2} s, {:.0} ns/sample | ERLE {:+.1} dB, convergence {:.1}x faster, {:.1}x less CPU",
        sums[0] / count, sums[2] / count, sums[4] / count, sums[1] / count, sums[3] / count, sums[5] / count,
        sums[0] / count - sums[1] / count, sums[3] / sums[2], sums[5] / sums[4]
    );
    println!(
        "G.711 ceiling (echo known exactly): {:.1} dB mean | G.168 ERLE gw-dsp {:.1} dB mean, {g168_worst:.1} worst; speexdsp {:.1} dB mean",
        sums[6] / count, sums[7] / count, sums[8] / count
    );
    let cpu_ratio = sums[4] / sums[5];
    if std::env::var("ECHO_CASES").is_ok() {
        return;
    }
    line_conditions(&ms, sums[0] / count, cpu_ratio);
}

fn ours_linear() -> Runner {
    let mut ec = Box::new(EchoCanceller::new(1024));
    ec.set_nlp(false);
    Box::new(move |f, n, o| ec.process(f, n, o))
}

fn speex_runner() -> Runner {
    let mut sp = Speex::new(80, 1024);
    Box::new(move |f, n, o| sp.process(f, n, o))
}

fn run_all(mut r: Runner, far: &[i16], near: &[i16]) -> Vec<i16> {
    let mut out = vec![0i16; far.len()];
    for i in (0..far.len() - 79).step_by(80) {
        r(&far[i..i + 80], &near[i..i + 80], &mut out[i..i + 80]);
    }
    out
}

/// Far-end talker and near-end babble for the line-condition runs: espeak-ng when it
/// is there (English far end; French, German and Spanish voices at once near end),
/// else the crate's speech-like source.
fn talkers(n: usize, dt: usize) -> (&'static str, Vec<f32>, Vec<f32>) {
    let long = |voice: &str, lang: &str, pitch: u32, len: usize| -> Option<Vec<f32>> {
        let text = support::TEXTS.iter().find(|t| t.0 == lang)?.1;
        let mut x = Vec::new();
        let mut wpm = 150;
        while x.len() < len {
            x.extend(support::espeak(voice, wpm, pitch, text)?);
            wpm += 10;
        }
        x.truncate(len);
        Some(support::at_active_level(&x, -20.0))
    };
    let espeak = || -> Option<(Vec<f32>, Vec<f32>)> {
        let far = support::at_active_level(&long("en-us", "en-us", 40, n)?, -16.0);
        let a = long("fr-fr+f3", "fr-fr", 60, dt)?;
        let b = long("de+m3", "de", 30, dt + 7000)?;
        let c = long("es+f1", "es", 80, dt + 23000)?;
        Some((far, (0..dt).map(|i| a[i] + b[i + 7000] + c[i + 23000]).collect()))
    };
    if support::espeak_available() {
        if let Some((far, babble)) = espeak() {
            return ("espeak-ng: far end en-us, near end fr+de+es babble", far, babble);
        }
    }
    let mut f = SpeechLike::new(1, -16.0);
    let far = (0..n).map(|_| f.sample() as f32).collect();
    let mut t: Vec<SpeechLike> = (0..3).map(|k| SpeechLike::new(20 + k, -20.0)).collect();
    let babble = (0..dt).map(|_| t.iter_mut().map(|s| s.sample() as f32).sum()).collect();
    ("speech-like source (espeak-ng not installed)", far, babble)
}

/// Time (s) after which the ERLE over 250 ms windows stays >= 20 dB (windows without
/// echo skipped); None if it never does.
fn t20_stay(echo: &[f32], res: impl Fn(usize) -> f32, n: usize) -> Option<f64> {
    let mut last_below = Some(0usize);
    for w in (0..n - 2000).step_by(400) {
        let pe = support::power(echo[w..w + 2000].iter().copied());
        if pe < 1e4 {
            continue;
        }
        if support::db(pe / support::power((w..w + 2000).map(&res))) < 20.0 {
            last_below = Some(w + 2000);
        }
    }
    last_below.filter(|&t| t + 4000 < n).map(|t| t as f64 / 8000.0)
}

struct Dt {
    before: f64,
    mean: f64,
    worst: f64,
    after: f64,
    sdr: f64,
}

fn line_conditions(ms: &[(String, Vec<f32>)], clean_mean: f64, cpu_ratio: f64) {
    let (conv, dt, tail) = (8 * 8000, 20 * 8000, 3 * 8000);
    let n = conv + dt + tail;
    let (src, far_speech, babble) = talkers(n, dt);
    let far: Vec<i16> = far_speech.iter().map(|&v| support::law(v)).collect();
    println!();
    println!("line conditions (issue 12): {src}; D2-D9 behind 40 ms, ERL 6 dB, G.711 both ways, 1024 taps, linear output");

    // Noise floor.
    let mut noise_means = Vec::new();
    let mut noise_worst = Vec::new();
    let mut stay_worst: f64 = 0.0;
    let mut quiet_worst = (f64::MAX, f64::MAX, f64::MAX);
    for level in [None, Some(-65.0), Some(-55.0)] {
        match level {
            None => println!("no line noise: ERLE over 5-10 s, time to stay >= 20 dB"),
            Some(l) => println!("noise floor {l} dBm0 (white, line side): ERLE over 5-10 s (echo vs residual echo), time to stay >= 20 dB"),
        }
        println!("{:<5} | {:>23} | {:>23} | {:>7}", "model", "gw-dsp ERLE stay G.168", "speexdsp ERLE stay G.168", "ceiling");
        let (mut s_ours, mut s_sp, mut w_ours) = (0.0, 0.0, f64::MAX);
        let (mut g_ours, mut g_sp, mut g_worst, mut ceil_worst) = (0.0, 0.0, f64::MAX, f64::MAX);
        for (mi, (name, m)) in ms.iter().enumerate() {
            let len = 10 * 8000;
            let echo = support::echo_of(m, 320, 6.0, &far[..len]);
            let noise = match level {
                Some(l) => support::white_noise(500 + mi as u64, len, l),
                None => vec![0.0; len],
            };
            let near = support::near_in(&echo, &noise);
            let mut row = Vec::new();
            let pe = support::power(echo[40_000..len].iter().copied());
            // What an exact echo estimate leaves (line noise taken out): the µ-law
            // quantisation of Sin. No linear canceller can go below it.
            let ceiling = support::db(pe / support::power((40_000..len).map(|i| near[i] as f32 - echo[i] - noise[i])));
            for make in [ours_linear as fn() -> Runner, speex_runner] {
                let out = run_all(make(), &far[..len], &near);
                let res = |i: usize| out[i] as f32 - noise[i];
                let erle = support::db(pe / support::power((40_000..len).map(res)));
                // G.168 3.4: the attenuation of the echo itself. The residual echo is
                // the echo minus the canceller's estimate (estimate = Sin - Sout), so
                // neither the line noise nor the quantisation noise that the µ-law
                // coding of Sin adds counts (both are in Sin whatever the canceller does).
                let g168 = support::db(pe / support::power((40_000..len).map(|i| out[i] as f32 - near[i] as f32 + echo[i])));
                row.push((erle, t20_stay(&echo, res, len), g168));
            }
            let st = |t: Option<f64>| t.map(|t| format!("{t:.2}s")).unwrap_or("never".into());
            println!(
                "{name:<5} | {:>9.1} {:>6} {:>6.1} | {:>9.1} {:>6} {:>6.1} | {ceiling:>7.1}",
                row[0].0, st(row[0].1), row[0].2, row[1].0, st(row[1].1), row[1].2
            );
            s_ours += row[0].0;
            s_sp += row[1].0;
            g_ours += row[0].2;
            g_sp += row[1].2;
            g_worst = g_worst.min(row[0].2);
            ceil_worst = ceil_worst.min(ceiling);
            w_ours = w_ours.min(row[0].0);
            if level.is_some() {
                stay_worst = stay_worst.max(row[0].1.unwrap_or(99.0));
            }
        }
        let k = ms.len() as f64;
        println!(
            "mean  | {:>9.1}        {:>6.1} | {:>9.1}        {:>6.1} |         (gw-dsp worst model {w_ours:.1} dB, G.168 {g_worst:.1} dB; lowest ceiling {ceil_worst:.1} dB)",
            s_ours / k, g_ours / k, s_sp / k, g_sp / k
        );
        if level.is_none() {
            quiet_worst = (w_ours, g_worst, ceil_worst);
            continue;
        }
        noise_means.push(s_ours / k);
        noise_worst.push((w_ours, g_worst));
    }

    // Long double talk.
    let mut dt_drop_worst: f64 = f64::MIN;
    let mut dt_sdr_worst: f64 = f64::MAX;
    let mut dt_after_worst: f64 = f64::MAX;
    for rel in [6.0, -6.0] {
        println!("20 s double talk, near-end babble {rel:+} dB against the echo: filter ERLE before / mean during / worst second / 1 s after, drop, near-end SDR");
        println!("{:<5} | {:>36} | {:>36}", "model", "gw-dsp  before  mean worst after drop SDR", "speexdsp before  mean worst after drop SDR");
        for (name, m) in ms {
            let echo = support::echo_of(m, 320, 6.0, &far);
            let babble = support::at_active_level(&babble, support::active_level_dbm0(&echo) + rel);
            let mut near_sig = vec![0.0f32; n];
            near_sig[conv..conv + dt].copy_from_slice(&babble);
            let near = support::near_in(&echo, &near_sig);
            let mut row = Vec::new();
            for make in [ours_linear as fn() -> Runner, speex_runner] {
                let out = run_all(make(), &far, &near);
                let lin = |a: usize, b: usize| {
                    support::db(support::power(echo[a..b].iter().copied()) / support::power((a..b).map(|i| out[i] as f32 - near[i] as f32 + echo[i])))
                };
                let secs: Vec<f64> = (0..20).map(|s| lin(conv + s * 8000, conv + (s + 1) * 8000)).collect();
                let dist = support::power((conv + 2000..conv + dt).map(|i| out[i] as f32 - near_sig[i]));
                row.push(Dt {
                    before: lin(conv - 16_000, conv),
                    mean: lin(conv, conv + dt),
                    worst: secs.iter().cloned().fold(f64::MAX, f64::min),
                    after: lin(conv + dt, conv + dt + 8000),
                    sdr: support::db(support::power(near_sig[conv + 2000..conv + dt].iter().copied()) / dist),
                });
            }
            let f = |d: &Dt| format!("{:>6.1} {:>5.1} {:>5.1} {:>5.1} {:>4.1} {:>4.1}", d.before, d.mean, d.worst, d.after, d.before - d.after, d.sdr);
            println!("{name:<5} | {:>36} | {:>36}", f(&row[0]), f(&row[1]));
            dt_drop_worst = dt_drop_worst.max(row[0].before - row[0].after);
            dt_sdr_worst = dt_sdr_worst.min(row[0].sdr);
            dt_after_worst = dt_after_worst.min(row[0].after);
        }
    }

    println!();
    println!("targets (issue 12)                              reached by gw-dsp");
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    // ERLE as the harness measured it (Sin against Sout, line noise taken out)
    // cannot exceed the ceiling printed per model, what an exact echo estimate leaves:
    // the µ-law quantisation noise of Sin, 36.8-37.2 dB under the echo on these signals.
    // On a model whose ceiling is under 37 dB, 37 dB is unreachable by any canceller;
    // elsewhere it needs the filter's own residual 53 dB down. So the targets are judged
    // on the G.168 figure (3.4: attenuation of the echo; residual echo = echo - estimate),
    // and the Sin/Sout figure is printed with them.
    println!(
        "  ERLE >= 37 dB without noise, every model     G.168 worst model {:.1} dB {} (Sin/Sout: espeak-ng worst {:.1}, speech-like mean {clean_mean:.1}; ceiling {:.1} dB worst model: 37 dB unreachable that way)",
        quiet_worst.1, mark(quiet_worst.1 >= 37.0), quiet_worst.0, quiet_worst.2
    );
    println!(
        "  ERLE >= 35 dB with noise floor, every model  G.168 worst model -65 dBm0 {:.1}, -55 dBm0 {:.1} dB {} (Sin/Sout less noise: -65 mean {:.1} worst {:.1}; -55 mean {:.1} worst {:.1})",
        noise_worst[0].1, noise_worst[1].1, mark(noise_worst[0].1 >= 35.0 && noise_worst[1].1 >= 35.0),
        noise_means[0], noise_worst[0].0, noise_means[1], noise_worst[1].0
    );
    println!("  20 dB held within 1 s (noise floors)         worst {stay_worst:.2} s {}", mark(stay_worst <= 1.0));
    println!("  20 s double talk: drop <= 6 dB every model   worst {dt_drop_worst:.1} dB (worst ERLE after {dt_after_worst:.1} dB) {}", mark(dt_drop_worst <= 6.0));
    println!("  20 s double talk: near-end SDR >= 15 dB      worst {dt_sdr_worst:.1} dB {}", mark(dt_sdr_worst >= 15.0));
    println!("  CPU <= 0.6x speexdsp                         {cpu_ratio:.2}x {}", mark(cpu_ratio <= 0.6));
}
