//! Packet loss concealment for G.711, in the spirit of ITU-T G.711 Appendix I (09/99).
//!
//! Sits right after the G.711 decoder on the receive path, one instance per channel:
//! every 10 ms tick either a frame arrived (decode it, then [`Plc::good_frame`]) or it did
//! not (call [`Plc::conceal`] instead of playing silence). Both work in place on the
//! frame the rt thread plays next.
//!
//! How it works (Appendix I §I.2):
//! - A history buffer keeps the last 48.75 ms of the signal (390 samples: three periods of
//!   the longest pitch plus a quarter period).
//! - Output is delayed by [`DELAY`] = 3.75 ms (30 samples, a quarter of the longest
//!   pitch), so that when a loss starts, the last quarter period before it, not yet
//!   played, can be overlap-added into the synthetic signal (§I.2.2).
//! - At the start of a loss the pitch period (40..=120 samples, 66-200 Hz) is found by
//!   normalized cross-correlation of the last 20 ms against itself, a coarse search at
//!   4 kHz then a fine one at 8 kHz (§I.2.3).
//! - The last period is replayed; after 10 ms of loss the replay widens to two periods and
//!   after 20 ms to three, each change blended over a quarter period, so that long losses
//!   do not buzz (§I.2.4). Every period wrap is blended the same way.
//! - From 10 ms into the loss the synthetic signal is attenuated linearly by 20 % per
//!   10 ms, reaching silence at 60 ms (§I.2.5).
//! - The first good frame after a loss is cross-faded from the continued synthetic signal
//!   over a quarter period plus 4 ms per extra 10 ms lost, at most 10 ms (§I.2.6).
//!
//! Without losses the output is the input delayed by [`DELAY`] samples, bit for bit.
//! Frames may be any length (the rt loop uses [`crate::FRAME`] = 80); state is fixed-size.
//! [`PlcWb`] is the same at 16 kHz (G.722 trunks), every length doubled.

/// Output delay of [`Plc`] in samples (3.75 ms, Appendix I's `POVERLAPMAX`).
pub const DELAY: usize = 30;

/// G.711 Appendix I style concealer at 8 kHz (one per receive channel).
pub type Plc = PlcAt<1, 390>;
/// The same algorithm at 16 kHz (for G.722 or other wideband audio): every length in
/// samples doubles, times stay the same; output delay 60 samples.
pub type PlcWb = PlcAt<2, 780>;

/// The concealer at `S` times 8 kHz; `HIST` must be `390 * S` (three longest pitch
/// periods plus a quarter, Appendix I's `HISTORYLEN`). Use [`Plc`] or [`PlcWb`].
#[derive(Debug, Clone)]
pub struct PlcAt<const S: usize, const HIST: usize> {
    /// The signal as reconstructed so far, oldest first; the last `DELAY_SAMPLES` are
    /// not yet played.
    hist: [f32; HIST],
    /// Snapshot of `hist` when the current loss began (never modified).
    snap: [f32; HIST],
    /// Pitch period found at the start of the loss.
    pitch: usize,
    /// Blend length: a quarter of the pitch period.
    overlap: usize,
    /// Samples replayed per cycle now (1, 2 or 3 periods).
    cycle: usize,
    /// Position within the cycle.
    pos: usize,
    /// Cycle and position being faded out after a widening, and the samples left.
    old_cycle: usize,
    old_pos: usize,
    fade_left: usize,
    /// Samples concealed in the current loss (0: not in a loss).
    erased: usize,
}

impl<const S: usize, const HIST: usize> Default for PlcAt<S, HIST> {
    fn default() -> Self {
        Self::new()
    }
}

/// Longest chunk handled at once (10 ms at 16 kHz).
const MAX_CHUNK: usize = 160;

impl<const S: usize, const HIST: usize> PlcAt<S, HIST> {
    /// Output delay in samples: 3.75 ms.
    pub const DELAY_SAMPLES: usize = 30 * S;
    /// Longest pitch period searched (66.7 Hz; the search itself is in `find_pitch`).
    const PITCH_MAX: usize = 120 * S;
    /// Samples per 10 ms: the unit of the widening and attenuation schedule, and the
    /// chunk size (so the delayed output is still in the history).
    const TEN_MS: usize = 80 * S;
    /// Attenuation per sample after the first 10 ms: 20 % per 10 ms.
    const ATTEN_PER_SAMPLE: f32 = 0.2 / (80 * S) as f32;
    /// Compile-time check of the parameters.
    const VALID: () = assert!(HIST == 390 * S && S >= 1 && 80 * S <= MAX_CHUNK);

    /// A concealer with silent history.
    pub const fn new() -> Self {
        let () = Self::VALID;
        PlcAt {
            hist: [0.0; HIST],
            snap: [0.0; HIST],
            pitch: Self::PITCH_MAX,
            overlap: Self::PITCH_MAX / 4,
            cycle: Self::PITCH_MAX,
            pos: 0,
            old_cycle: Self::PITCH_MAX,
            old_pos: 0,
            fade_left: 0,
            erased: 0,
        }
    }

    /// True while a loss is being concealed (between `conceal` and the next good frame).
    pub fn is_concealing(&self) -> bool {
        self.erased > 0
    }

    /// Samples concealed in the current loss so far.
    pub fn erased_samples(&self) -> usize {
        self.erased
    }

    /// Pitch period (samples) used for the current or last loss.
    pub fn pitch(&self) -> usize {
        self.pitch
    }

    /// A frame arrived: record it and replace it, in place, with the output to play
    /// ([`DELAY`] samples late at 8 kHz; the first frame after a loss is merged with the
    /// continuation of the synthetic signal).
    pub fn good_frame(&mut self, frame: &mut [i16]) {
        let mut merge_left = 0;
        let mut merge_len = 0;
        if self.erased > 0 {
            let extra_frames = (self.erased - 1) / Self::TEN_MS;
            merge_len = (self.overlap + extra_frames * 32 * S)
                .min(Self::TEN_MS)
                .min(frame.len());
            merge_left = merge_len;
        }
        for chunk in frame.chunks_mut(Self::TEN_MS) {
            let mut new = [0f32; MAX_CHUNK];
            for (k, s) in chunk.iter().enumerate() {
                let real = *s as f32;
                new[k] = if merge_left > 0 {
                    let w = (merge_len - merge_left + 1) as f32 / (merge_len + 1) as f32;
                    merge_left -= 1;
                    let synth = self.next_synthetic();
                    synth * (1.0 - w) + real * w
                } else {
                    real
                };
            }
            self.push_and_play(&new[..chunk.len()], chunk);
        }
        self.erased = 0;
    }

    /// A frame is missing: fill `out` with the concealment to play instead.
    pub fn conceal(&mut self, out: &mut [i16]) {
        if self.erased == 0 {
            self.start_loss();
        }
        for chunk in out.chunks_mut(Self::TEN_MS) {
            let mut new = [0f32; MAX_CHUNK];
            for v in new[..chunk.len()].iter_mut() {
                *v = self.next_synthetic();
            }
            self.push_and_play(&new[..chunk.len()], chunk);
        }
    }

    /// Append `new` to the history and write the samples now due (DELAY late) to `out`.
    fn push_and_play(&mut self, new: &[f32], out: &mut [i16]) {
        let n = new.len();
        self.hist.copy_within(n.., 0);
        self.hist[HIST - n..].copy_from_slice(new);
        let start = HIST - Self::DELAY_SAMPLES - n;
        for (o, &v) in out.iter_mut().zip(&self.hist[start..start + n]) {
            *o = crate::sat16(v);
        }
    }

    /// Loss begins: find the pitch, snapshot the history, and blend the unplayed tail of
    /// the history into the first replayed period (§I.2.2).
    fn start_loss(&mut self) {
        self.pitch = find_pitch(&self.hist, S);
        self.overlap = self.pitch / 4;
        self.snap = self.hist;
        self.cycle = self.pitch;
        self.pos = 0;
        self.fade_left = 0;
        for i in 0..self.overlap {
            let pos = self.pitch - self.overlap + i;
            self.hist[HIST - self.overlap + i] = self.cycle_sample(self.pitch, pos);
        }
    }

    /// Sample `pos` of the replay cycle `cycle` samples long: the last `cycle` samples of
    /// the snapshot, whose last quarter period fades into the samples one cycle earlier
    /// so that the wrap back to the cycle start is continuous.
    fn cycle_sample(&self, cycle: usize, pos: usize) -> f32 {
        let j = HIST - cycle + pos;
        let ov = self.overlap;
        if pos + ov >= cycle {
            let w = (pos + ov + 1 - cycle) as f32 / (ov + 1) as f32;
            self.snap[j] * (1.0 - w) + self.snap[j - cycle] * w
        } else {
            self.snap[j]
        }
    }

    /// Next sample of the synthetic signal, with widening and attenuation applied.
    fn next_synthetic(&mut self) -> f32 {
        let n = self.erased;
        // Widen to two periods at 10 ms and three at 20 ms (§I.2.4).
        if (n == Self::TEN_MS || n == 2 * Self::TEN_MS) && self.cycle < 3 * self.pitch {
            self.old_cycle = self.cycle;
            self.old_pos = self.pos;
            self.cycle += self.pitch;
            // Same phase, one period further back.
            self.fade_left = self.overlap;
        }
        let mut v = self.cycle_sample(self.cycle, self.pos);
        if self.fade_left > 0 {
            let w = (self.overlap - self.fade_left + 1) as f32 / (self.overlap + 1) as f32;
            let old = self.cycle_sample(self.old_cycle, self.old_pos);
            v = old * (1.0 - w) + v * w;
            self.old_pos = (self.old_pos + 1) % self.old_cycle;
            self.fade_left -= 1;
        }
        self.pos = (self.pos + 1) % self.cycle;
        self.erased = self.erased.saturating_add(1);
        // Attenuation from 10 ms on, silence from 60 ms (§I.2.5).
        let gain = if n < Self::TEN_MS {
            1.0
        } else {
            (1.0 - Self::ATTEN_PER_SAMPLE * (n + 1 - Self::TEN_MS) as f32).max(0.0)
        };
        v * gain
    }
}

/// Pitch period of the end of `hist` in samples at `s` times 8 kHz (§I.2.3): maximise
/// the normalized cross-correlation between the last 20 ms and the same length `lag`
/// earlier, 5 to 15 ms; coarse at every second lag using every second sample, then
/// refined around the best.
fn find_pitch(hist: &[f32], s: usize) -> usize {
    let (pitch_min, pitch_max, corr_len) = (40 * s, 120 * s, 160 * s);
    let end = hist.len() - corr_len;
    let score = |lag: usize, step: usize| -> f32 {
        let (mut xy, mut yy) = (0f32, 0f32);
        let mut i = 0;
        while i < corr_len {
            let x = hist[end + i];
            let y = hist[end - lag + i];
            xy += x * y;
            yy += y * y;
            i += step;
        }
        if yy <= 1.0 {
            return f32::NEG_INFINITY;
        }
        xy / libm::sqrtf(yy)
    };
    let mut best = pitch_max;
    let mut best_score = f32::NEG_INFINITY;
    let mut lag = pitch_min;
    while lag <= pitch_max {
        let sc = score(lag, 2);
        if sc > best_score {
            best_score = sc;
            best = lag;
        }
        lag += 2;
    }
    let refine = |coarse: usize| -> (usize, f32) {
        let mut best = (coarse, f32::NEG_INFINITY);
        for lag in coarse.saturating_sub(1).max(pitch_min)..=(coarse + 1).min(pitch_max) {
            let sc = score(lag, 1);
            if sc > best.1 {
                best = (lag, sc);
            }
        }
        best
    };
    let (lag, best_score) = refine(best);
    // A periodic signal matches itself at every multiple of its period, and the coarse
    // grid can favour a multiple; prefer a submultiple that scores nearly as well.
    for k in [3usize, 2] {
        let sub = (lag + k / 2) / k;
        if sub >= pitch_min {
            let (sub_lag, sub_score) = refine(sub);
            if sub_score >= 0.85 * best_score {
                return sub_lag;
            }
        }
    }
    lag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FRAME;
    use std::vec::Vec;

    /// Voiced speech-like signal: a pulse train at `period` samples through two formant
    /// resonators (700 Hz and 1200 Hz), at roughly -12 dBm0.
    fn voiced(period: usize, n: usize) -> Vec<i16> {
        voiced_frac(period as f32, n)
    }

    /// Same with a fractional period, so that whole-sample replay is not seamless.
    fn voiced_frac(period: f32, n: usize) -> Vec<i16> {
        let res = |f: f32, bw: f32| {
            let r = libm::expf(-core::f32::consts::PI * bw / 8000.0);
            (
                2.0 * r * libm::cosf(2.0 * core::f32::consts::PI * f / 8000.0),
                -r * r,
            )
        };
        let (a1, a2) = res(700.0, 90.0);
        let (b1, b2) = res(1200.0, 110.0);
        let (mut y1, mut y2, mut z1, mut z2) = (0f32, 0f32, 0f32, 0f32);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let phase = i as f32 / period;
            let x = if i == 0 || libm::floorf(phase) != libm::floorf((i - 1) as f32 / period) {
                1.0
            } else {
                0.0
            };
            let y = x + a1 * y1 + a2 * y2;
            y2 = y1;
            y1 = y;
            let z = y + b1 * z1 + b2 * z2;
            z2 = z1;
            z1 = z;
            out.push(z);
        }
        let peak = out.iter().fold(0f32, |m, v| m.max(v.abs()));
        out.iter().map(|v| (v / peak * 6000.0) as i16).collect()
    }

    /// Run `sig` through a Plc, losing the 10 ms frames in `lost`; returns the output
    /// realigned with the input (delay removed).
    fn run(sig: &[i16], lost: &[usize]) -> Vec<i16> {
        let mut plc = Plc::new();
        let mut out = Vec::new();
        for (k, frame) in sig.chunks(FRAME).enumerate() {
            let mut f = [0i16; FRAME];
            f[..frame.len()].copy_from_slice(frame);
            if lost.contains(&k) {
                plc.conceal(&mut f);
            } else {
                plc.good_frame(&mut f);
            }
            out.extend_from_slice(&f[..frame.len()]);
        }
        out.drain(..DELAY);
        out
    }

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&v| v as f64 * v as f64).sum()
    }

    fn err_energy(a: &[i16], b: &[i16]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum()
    }

    #[test]
    fn without_loss_output_is_input_delayed() {
        let sig = voiced(57, 1600);
        let out = run(&sig, &[]);
        assert_eq!(&out[..], &sig[..sig.len() - DELAY]);
    }

    #[test]
    fn pitch_is_found() {
        for period in [45usize, 64, 80, 100, 118] {
            let sig = voiced(period, 390 + 200);
            let mut h = [0f32; 390];
            for (d, s) in h.iter_mut().zip(&sig[200..]) {
                *d = *s as f32;
            }
            assert_eq!(find_pitch(&h, 1), period);
        }
        for period in [85usize, 146, 201, 236] {
            let sig = voiced(period, 780 + 400);
            let mut h = [0f32; 780];
            for (d, s) in h.iter_mut().zip(&sig[400..]) {
                *d = *s as f32;
            }
            assert_eq!(find_pitch(&h, 2), period, "16 kHz");
        }
    }

    #[test]
    fn concealment_beats_silence_substitution() {
        for period in [50usize, 73, 110] {
            let sig = voiced(period, 2400);
            let lost = [10, 11]; // 20 ms burst
            let out = run(&sig, &lost);
            let span = 10 * FRAME..12 * FRAME;
            let e_plc = err_energy(&out[span.clone()], &sig[span.clone()]);
            let e_silence = energy(&sig[span]); // error of playing zeros
            let gain_db = 10.0 * (e_silence / e_plc).log10();
            std::eprintln!("plc period {period}: {gain_db:.1} dB better than silence");
            assert!(
                gain_db > 6.0,
                "period {period}: only {gain_db:.1} dB better than silence"
            );
        }
    }

    #[test]
    fn speech_like_with_random_losses() {
        // 20 s of the crate's speech-like source, 10 % of frames lost at random (single
        // frames and bursts of two), against silence substitution.
        let mut src = crate::testsig::SpeechLike::new(17, -15.0);
        let mut sig = std::vec![0i16; 8000 * 20];
        src.fill(&mut sig);
        let mut x: u32 = 12345;
        let mut lost = Vec::new();
        let mut k = 5;
        while k < sig.len() / FRAME - 2 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if (x >> 16) % 100 < 7 {
                lost.push(k);
                if (x >> 8).is_multiple_of(3) {
                    lost.push(k + 1);
                }
                k += 3;
            } else {
                k += 1;
            }
        }
        let out = run(&sig, &lost);
        // Baseline: repeat the last frame played (what a jitter buffer does without PLC).
        let mut repeat = sig.clone();
        for &k in &lost {
            let prev: Vec<i16> = repeat[(k - 1) * FRAME..k * FRAME].to_vec();
            repeat[k * FRAME..(k + 1) * FRAME].copy_from_slice(&prev);
        }
        // Waveform error and level continuity (mean |level difference| per lost frame).
        let score = |y: &[i16]| {
            let (mut err, mut dev, mut n) = (0f64, 0f64, 0);
            for &k in &lost {
                let span = k * FRAME..(k + 1) * FRAME;
                err += err_energy(&y[span.clone()], &sig[span.clone()]);
                let (eo, ec) = (energy(&sig[span.clone()]), energy(&y[span]));
                if eo > 1e4 * FRAME as f64 {
                    dev += (10.0 * (ec.max(1.0) / eo).log10()).abs();
                    n += 1;
                }
            }
            (err, dev / n as f64)
        };
        let e_sil: f64 = lost
            .iter()
            .map(|&k| energy(&sig[k * FRAME..(k + 1) * FRAME]))
            .sum();
        let (e_plc, dev_plc) = score(&out);
        let (e_rep, dev_rep) = score(&repeat);
        let db = |e: f64| 10.0 * (e_sil / e).log10();
        std::eprintln!(
            "plc speech-like, {} frames lost: waveform error below silence substitution: \
             plc {:.1} dB, frame repeat {:.1} dB; mean level error plc {dev_plc:.1} dB, \
             frame repeat {dev_rep:.1} dB",
            lost.len(),
            db(e_plc),
            db(e_rep)
        );
        assert!(db(e_plc) > 1.0 && db(e_plc) > db(e_rep) + 3.0);
        // Syllable envelopes are not predictable from the past; the level error stays
        // that of a repeat (no worse than 1 dB) instead of the full level of silence.
        assert!(dev_plc < dev_rep + 1.0);
    }

    #[test]
    fn energy_decays_to_silence_after_60_ms() {
        let sig = voiced(67, 2400);
        let lost: Vec<usize> = (10..20).collect(); // 100 ms
        let out = run(&sig, &lost);
        let frame_e: Vec<f64> = (10..20)
            .map(|k| energy(&out[k * FRAME..(k + 1) * FRAME]))
            .collect();
        let orig_e = energy(&sig[9 * FRAME..10 * FRAME]);
        assert!(frame_e[0] > 0.5 * orig_e, "first lost frame at full level");
        for k in 1..6 {
            assert!(
                frame_e[k] < frame_e[k - 1],
                "frame {k} not quieter: {frame_e:?}"
            );
        }
        for k in 6..10 {
            assert_eq!(frame_e[k], 0.0, "frame {k} after 60 ms not silent");
        }
    }

    #[test]
    fn no_clicks_at_loss_start_widening_and_merge() {
        // Largest second difference of the clean signal, and the same for the output
        // around every transition (loss of 30 ms: start, 10/20 ms widenings, merge).
        // Harmonics of a fundamental gliding 110 -> 170 Hz: no replayed period fits.
        let mut ph = 0f32;
        let sig: Vec<i16> = (0..2400)
            .map(|i| {
                ph += 2.0 * core::f32::consts::PI * (110.0 + 60.0 * i as f32 / 2400.0) / 8000.0;
                (5000.0 * libm::sinf(ph)
                    + 3000.0 * libm::sinf(2.0 * ph + 0.5)
                    + 1500.0 * libm::sinf(3.0 * ph + 1.0)) as i16
            })
            .collect();
        // A click is a jump in slope: measure the largest second difference.
        let max_step = |x: &[i16]| {
            x.windows(3)
                .map(|w| (w[2] as i32 - 2 * w[1] as i32 + w[0] as i32).abs())
                .max()
                .unwrap()
        };
        let clean_step = max_step(&sig);
        let out = run(&sig, &[10, 11, 12]);
        let around = &out[10 * FRAME - 20..13 * FRAME + 60];
        let step = max_step(around);
        std::eprintln!("plc max step {step} vs clean {clean_step}");
        assert!(
            step as f32 <= 1.5 * clean_step as f32,
            "step {step} vs clean {clean_step}"
        );
    }

    #[test]
    fn merge_after_long_loss_fades_in_without_click() {
        let sig = voiced(90, 3200);
        let lost: Vec<usize> = (10..18).collect(); // 80 ms: synthetic is silent at the end
        let out = run(&sig, &lost);
        let start = 18 * FRAME;
        // Fade-in: the first samples of the good frame are scaled down.
        let first = energy(&out[start..start + 10]);
        let reference = energy(&sig[start..start + 10]);
        assert!(first < 0.5 * reference, "{first} {reference}");
        // And by the end of the 10 ms merge the output is the input.
        assert_eq!(
            &out[start + FRAME..start + 2 * FRAME],
            &sig[start + FRAME..start + 2 * FRAME]
        );
    }

    #[test]
    fn wideband_variant_conceals_at_16_khz() {
        // Voiced signal with a 146-sample period at 16 kHz (110 Hz), 20 ms lost.
        let sig = voiced(146, 16000);
        let mut plc = PlcWb::new();
        let mut out = Vec::new();
        let lost = [20usize, 21];
        let mut long = Vec::new();
        for (k, frame) in sig.chunks(160).enumerate() {
            let mut f = [0i16; 160];
            f.copy_from_slice(frame);
            if lost.contains(&k) || (60..70).contains(&k) {
                plc.conceal(&mut f);
            } else {
                plc.good_frame(&mut f);
            }
            if (60..70).contains(&k) {
                long.push(energy(&f));
            }
            out.extend_from_slice(&f);
        }
        assert_eq!(PlcWb::DELAY_SAMPLES, 60);
        assert_eq!(plc.pitch(), 146);
        out.drain(..PlcWb::DELAY_SAMPLES);
        assert_eq!(&out[..3000], &sig[..3000], "transparent without loss");
        let span = 20 * 160..22 * 160;
        let e = err_energy(&out[span.clone()], &sig[span.clone()]);
        let gain_db = 10.0 * (energy(&sig[span]) / e).log10();
        assert!(gain_db > 6.0, "{gain_db}");
        // The 100 ms loss: decays, silent from 60 ms (the played frames lag by 60
        // samples, so the first silent one is the 7th).
        assert!(long[1] < long[0] && long[5] < long[4]);
        assert!(long[7..].iter().all(|&e| e == 0.0), "{long:?}");
    }

    #[test]
    fn odd_frame_sizes_and_cold_start() {
        let mut plc = Plc::new();
        let mut f = [123i16; 37];
        plc.conceal(&mut f); // loss before any audio: silence, no panic
        assert!(f.iter().all(|&v| v == 0));
        assert!(plc.is_concealing());
        let mut big = [1000i16; 250];
        plc.good_frame(&mut big);
        assert!(!plc.is_concealing());
        assert_eq!(big[249], 1000);
    }
}
