//! linesim's own signal analysis and generation: Goertzel, RMS levels, a
//! frequency estimator, a cadence-aware tone detector and a DTMF generator.
//!
//! Deliberately independent of the firmware's DSP crate: linesim is the
//! instrument that checks the firmware, so it must not share its code.
//!
//! Level reference (ITU-T G.711 / G.168 convention for 16-bit linear): 0 dBm0 is a
//! sine with a peak of 22 826, i.e. an RMS of 16 140.

use std::f64::consts::PI;

/// Sample rate of the sim link.
pub const RATE: f64 = 8000.0;
/// Peak of a 0 dBm0 sine.
pub const DBM0_PEAK: f64 = 22826.0;
/// Samples per 10 ms frame.
pub const FRAME: usize = 80;

/// RMS of a 0 dBm0 sine.
pub fn dbm0_rms() -> f64 {
    DBM0_PEAK / std::f64::consts::SQRT_2
}

/// Peak amplitude of a sine at `level_dbm0`.
pub fn amplitude(level_dbm0: f32) -> f64 {
    DBM0_PEAK * 10f64.powf(f64::from(level_dbm0) / 20.0)
}

/// Mean power of `x` (sample units squared).
pub fn power(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len() as f64
}

/// Level of `x` in dBm0 (RMS against a 0 dBm0 sine); -120 for silence.
pub fn level_dbm0(x: &[i16]) -> f32 {
    power_to_dbm0(power(x))
}

fn power_to_dbm0(p: f64) -> f32 {
    let r = dbm0_rms();
    if p <= 0.0 {
        return -120.0;
    }
    (10.0 * (p / (r * r)).log10()).max(-120.0) as f32
}

/// Squared magnitude of the DTFT of `x` at `freq` (Goertzel; any frequency,
/// not only bin centres).
pub fn goertzel(x: &[f64], freq: f64) -> f64 {
    let w = 2.0 * PI * freq / RATE;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0)
}

fn hann(x: &[i16]) -> Vec<f64> {
    let n = x.len();
    x.iter()
        .enumerate()
        .map(|(i, &s)| {
            let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / (n.max(2) - 1) as f64).cos();
            f64::from(s) * w
        })
        .collect()
}

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Dominant frequency; 0 when the signal is below -60 dBm0.
    pub freq_hz: f32,
    /// Total level (all frequencies) in dBm0.
    pub level_dbm0: f32,
    /// A second tone at least 40 Hz away and no more than 20 dB weaker.
    pub second_freq_hz: Option<f32>,
}

/// Lowest and highest frequency [`measure`] looks at (the telephone band).
const BAND: (f64, f64) = (100.0, 3900.0);

/// Finds the strongest peak of the Hann-windowed spectrum near `around`
/// (±`span` Hz), to a fraction of a hertz.
fn refine(xw: &[f64], around: f64, span: f64) -> f64 {
    let mut best = around;
    let mut step = span / 20.0;
    let mut lo = (around - span).max(BAND.0);
    let mut hi = (around + span).min(BAND.1);
    // Successive grid searches, each 10x finer around the best point.
    for _ in 0..4 {
        let mut best_p = -1.0;
        let mut f = lo;
        while f <= hi {
            let p = goertzel(xw, f);
            if p > best_p {
                best_p = p;
                best = f;
            }
            f += step;
        }
        lo = best - step;
        hi = best + step;
        step /= 10.0;
    }
    best
}

/// Dominant frequency, level and a possible second tone of `x`. Needs at
/// least 40 ms; 1 s gives frequencies well within 1 Hz.
pub fn measure(x: &[i16]) -> Measurement {
    let level = level_dbm0(x);
    if x.len() < 320 || level < -60.0 {
        return Measurement { freq_hz: 0.0, level_dbm0: level, second_freq_hz: None };
    }
    // Coarse spectrum on up to 1024 samples (main lobe ±16 Hz), 5 Hz grid.
    let coarse_x = hann(&x[..x.len().min(1024)]);
    let step = 5.0;
    let mut spec = Vec::new();
    let mut f = BAND.0;
    while f <= BAND.1 {
        spec.push((f, goertzel(&coarse_x, f)));
        f += step;
    }
    let peaks: Vec<(f64, f64)> = (1..spec.len() - 1)
        .filter(|&i| spec[i].1 >= spec[i - 1].1 && spec[i].1 >= spec[i + 1].1)
        .map(|i| spec[i])
        .collect();
    let Some(&(f1, p1)) = peaks.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        return Measurement { freq_hz: 0.0, level_dbm0: level, second_freq_hz: None };
    };
    let second = peaks
        .iter()
        .filter(|(f, p)| (f - f1).abs() >= 40.0 && *p >= p1 / 100.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|&(f, _)| f);
    let full = hann(x);
    let freq = refine(&full, f1, 10.0);
    let second_freq = second.map(|f| refine(&full, f, 10.0) as f32);
    Measurement { freq_hz: freq as f32, level_dbm0: level, second_freq_hz: second_freq }
}

/// A call-progress tone: frequencies and cadence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TonePlan {
    pub name: &'static str,
    pub freqs: &'static [f32],
    /// Alternating on/off periods in ms; empty = continuous.
    pub cadence_ms: &'static [u16],
}

/// Common call-progress tones (ITU-T E.180 supplement 2 / national specs).
pub mod plans {
    use super::TonePlan;

    /// US dial tone: 350 + 440 Hz, continuous.
    pub const US_DIAL: TonePlan = TonePlan { name: "US dial", freqs: &[350.0, 440.0], cadence_ms: &[] };
    /// US audible ringing: 440 + 480 Hz, 2 s on 4 s off.
    pub const US_RINGBACK: TonePlan =
        TonePlan { name: "US ringback", freqs: &[440.0, 480.0], cadence_ms: &[2000, 4000] };
    /// US busy: 480 + 620 Hz, 0.5 s on 0.5 s off.
    pub const US_BUSY: TonePlan = TonePlan { name: "US busy", freqs: &[480.0, 620.0], cadence_ms: &[500, 500] };
    /// US reorder (fast busy): 480 + 620 Hz, 0.25 s on 0.25 s off.
    pub const US_REORDER: TonePlan =
        TonePlan { name: "US reorder", freqs: &[480.0, 620.0], cadence_ms: &[250, 250] };
    /// German dial tone: 425 Hz continuous.
    pub const DE_DIAL: TonePlan = TonePlan { name: "DE dial", freqs: &[425.0], cadence_ms: &[] };
    /// German ringback: 425 Hz, 1 s on 4 s off.
    pub const DE_RINGBACK: TonePlan =
        TonePlan { name: "DE ringback", freqs: &[425.0], cadence_ms: &[1000, 4000] };
    /// German busy: 425 Hz, 480 ms on 480 ms off.
    pub const DE_BUSY: TonePlan = TonePlan { name: "DE busy", freqs: &[425.0], cadence_ms: &[480, 480] };
    /// German congestion (reorder): 425 Hz, 240 ms on 240 ms off.
    pub const DE_REORDER: TonePlan = TonePlan { name: "DE reorder", freqs: &[425.0], cadence_ms: &[240, 240] };
    /// UK dial tone: 350 + 440 Hz, continuous.
    pub const UK_DIAL: TonePlan = TonePlan { name: "UK dial", freqs: &[350.0, 440.0], cadence_ms: &[] };
    /// UK ringing tone: 400 + 450 Hz, 0.4/0.2/0.4/2.0 s.
    pub const UK_RINGBACK: TonePlan =
        TonePlan { name: "UK ringback", freqs: &[400.0, 450.0], cadence_ms: &[400, 200, 400, 2000] };
    /// UK busy: 400 Hz, 375 ms on 375 ms off.
    pub const UK_BUSY: TonePlan = TonePlan { name: "UK busy", freqs: &[400.0], cadence_ms: &[375, 375] };
    /// UK congestion (reorder): 400 Hz, 0.4/0.35/0.225/0.525 s.
    pub const UK_REORDER: TonePlan =
        TonePlan { name: "UK reorder", freqs: &[400.0], cadence_ms: &[400, 350, 225, 525] };
}

/// What [`ToneDetector`] recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneReport {
    pub name: &'static str,
    /// The matched on/off periods as measured (two cycles), or the steady
    /// on-time for a continuous tone.
    pub cadence_ms: Vec<u32>,
    /// Mean level over the tone frames, dBm0.
    pub level_dbm0: f32,
    /// Frame time from the start of listening to recognition, ms.
    pub after_ms: u32,
}

/// Frames a raw decision must hold before the debounced state flips.
const DEBOUNCE: usize = 3;
/// Frames in the Goertzel window (40 ms: 25 Hz resolution).
const WINDOW_FRAMES: usize = 4;
/// Per-frame level below which a frame counts as silent.
const MIN_LEVEL_DBM0: f32 = -45.0;
/// Share of the window energy that must sit at the plan frequencies.
const MIN_PLAN_RATIO: f64 = 0.6;
/// Each plan frequency must be within this power ratio of the strongest (−9 dB).
const MIN_TONE_SHARE: f64 = 0.125;

/// Recognises one [`TonePlan`] in a stream of 10 ms frames by frequencies and
/// cadence. Feed frames with [`ToneDetector::push_frame`].
///
/// Per frame: the frame's own level must exceed -45 dBm0 (so edges are dated
/// to the frame), and in the last 40 ms the Goertzel energy at the plan
/// frequencies must be at least 60% of the total, every plan frequency within
/// 9 dB of the strongest. A debouncer (3 frames, back-dated) turns that into
/// on/off segments; the first segment is discarded (listening started inside
/// it). Cadenced tones match after two full cycles with every period within
/// ±20% or ±60 ms (the larger); continuous tones after 1 s steady.
#[derive(Debug, Clone)]
pub struct ToneDetector {
    plan: TonePlan,
    window: Vec<i16>,
    frames: u64,
    stable: bool,
    /// Frame at which the current debounced segment began.
    seg_start: u64,
    /// Raw decision run not yet accepted: (value, first frame, length).
    pending: Option<(bool, u64, usize)>,
    /// Completed segments after the first: (on, frames).
    segments: Vec<(bool, u64)>,
    discarded_first: bool,
    on_power: f64,
    on_frames: u64,
}

impl ToneDetector {
    pub fn new(plan: TonePlan) -> Self {
        ToneDetector {
            plan,
            window: Vec::with_capacity(FRAME * WINDOW_FRAMES),
            frames: 0,
            stable: false,
            seg_start: 0,
            pending: None,
            segments: Vec::new(),
            discarded_first: false,
            on_power: 0.0,
            on_frames: 0,
        }
    }

    fn frame_has_tone(&self, frame: &[i16]) -> bool {
        if level_dbm0(frame) < MIN_LEVEL_DBM0 {
            return false;
        }
        let x: Vec<f64> = self.window.iter().map(|&s| f64::from(s)).collect();
        let total: f64 = x.iter().map(|v| v * v).sum();
        if total <= 0.0 {
            return false;
        }
        let n = x.len() as f64;
        let shares: Vec<f64> =
            self.plan.freqs.iter().map(|&f| 2.0 * goertzel(&x, f64::from(f)) / n / total).collect();
        let sum: f64 = shares.iter().sum();
        let max = shares.iter().cloned().fold(0.0, f64::max);
        sum >= MIN_PLAN_RATIO && shares.iter().all(|&s| s >= max * MIN_TONE_SHARE)
    }

    /// Feeds one 10 ms frame; returns the report once the tone is recognised.
    pub fn push_frame(&mut self, frame: &[i16]) -> Option<ToneReport> {
        if self.window.len() + frame.len() > FRAME * WINDOW_FRAMES {
            let drop = (self.window.len() + frame.len()).saturating_sub(FRAME * WINDOW_FRAMES);
            self.window.drain(..drop.min(self.window.len()));
        }
        self.window.extend_from_slice(frame);
        let raw = self.frame_has_tone(frame);
        let idx = self.frames;
        self.frames += 1;
        if raw {
            self.on_power += power(frame);
            self.on_frames += 1;
        }
        // Debounce with back-dating.
        if raw == self.stable {
            self.pending = None;
        } else {
            let (v, first, len) = match self.pending {
                Some((v, first, len)) if v == raw => (v, first, len + 1),
                _ => (raw, idx, 1),
            };
            if len >= DEBOUNCE {
                self.pending = None;
                self.flip(v, first);
            } else {
                self.pending = Some((v, first, len));
            }
        }
        self.check()
    }

    fn flip(&mut self, to: bool, at: u64) {
        let len = at.saturating_sub(self.seg_start);
        if self.discarded_first {
            self.segments.push((self.stable, len));
        } else {
            self.discarded_first = true;
        }
        self.stable = to;
        self.seg_start = at;
    }

    fn report(&self, cadence_ms: Vec<u32>) -> ToneReport {
        let level = if self.on_frames == 0 {
            -120.0
        } else {
            power_to_dbm0(self.on_power / self.on_frames as f64)
        };
        ToneReport { name: self.plan.name, cadence_ms, level_dbm0: level, after_ms: (self.frames * 10) as u32 }
    }

    fn check(&self) -> Option<ToneReport> {
        if self.plan.cadence_ms.is_empty() {
            // Continuous: on for 1 s (the running segment counts, even the first).
            let running = self.frames - self.seg_start;
            let pending_off = matches!(self.pending, Some((false, _, _)));
            if self.stable && !pending_off && running >= 100 {
                return Some(self.report(vec![(running * 10) as u32]));
            }
            return None;
        }
        let cad = self.plan.cadence_ms;
        let need = 2 * cad.len();
        if self.segments.len() < need {
            return None;
        }
        let fits = |measured: u64, want: u16| {
            let m = (measured * 10) as f64;
            let w = f64::from(want);
            (m - w).abs() <= (w * 0.2).max(60.0)
        };
        // Any window of `need` completed segments starting with an "on" one,
        // at any on-period phase of the cadence.
        for start in 0..=self.segments.len() - need {
            if !self.segments[start].0 {
                continue;
            }
            for phase in (0..cad.len()).step_by(2) {
                let ok = (0..need).all(|k| {
                    let (on, len) = self.segments[start + k];
                    on == (k % 2 == 0) && fits(len, cad[(phase + k) % cad.len()])
                });
                if ok {
                    let ms = self.segments[start..start + need].iter().map(|s| (s.1 * 10) as u32).collect();
                    return Some(self.report(ms));
                }
            }
        }
        None
    }
}

/// DTMF frequencies (ITU-T Q.23): (row, column) for a key.
pub fn dtmf_freqs(key: char) -> Option<(f64, f64)> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (r, c) = match key.to_ascii_uppercase() {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    Some((ROWS[r], COLS[c]))
}

/// Appends `ms` of the sum of sines (`freq`, `level_dbm0`) to `out`.
pub fn push_tones(out: &mut Vec<i16>, tones: &[(f64, f32)], ms: u32) {
    let n = (ms as usize) * 8;
    let start = out.len();
    for i in 0..n {
        let t = i as f64 / RATE;
        let v: f64 = tones.iter().map(|&(f, l)| amplitude(l) * (2.0 * PI * f * t).sin()).sum();
        out.push(v.round().clamp(-32768.0, 32767.0) as i16);
    }
    debug_assert_eq!(out.len() - start, n);
}

/// DTMF for `digits`: each key `on_ms` on, `off_ms` off, both tones at
/// `level_dbm0`. `,` is a 500 ms pause. `Err(c)` names the first bad key.
pub fn dtmf(digits: &str, on_ms: u32, off_ms: u32, level_dbm0: f32) -> Result<Vec<i16>, char> {
    let mut out = Vec::new();
    for c in digits.chars() {
        if c == ',' {
            out.resize(out.len() + 4000, 0);
            continue;
        }
        if c == ' ' || c == '-' {
            continue;
        }
        let (r, col) = dtmf_freqs(c).ok_or(c)?;
        push_tones(&mut out, &[(r, level_dbm0), (col, level_dbm0)], on_ms);
        out.resize(out.len() + off_ms as usize * 8, 0);
    }
    Ok(out)
}

/// Level in dBm0 of the sine at `freq_hz` in `x` (the rest of the signal
/// does not count): the Hann-windowed DTFT magnitude at that frequency,
/// converted to a sine amplitude. Needs 100 ms or more to reject neighbours
/// 40 Hz away; -120 for silence or fewer than 80 samples.
pub fn tone_level_dbm0(x: &[i16], freq_hz: f64) -> f32 {
    if x.len() < FRAME {
        return -120.0;
    }
    let xw = hann(x);
    // A sine of amplitude A gives |X| = A * N / 4 under a Hann window.
    let amp = 4.0 * goertzel(&xw, freq_hz).sqrt() / x.len() as f64;
    if amp <= 0.0 {
        return -120.0;
    }
    (20.0 * (amp / DBM0_PEAK).log10()).max(-120.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freqs: &[f64], level: f32, ms: u32) -> Vec<i16> {
        let t: Vec<(f64, f32)> = freqs.iter().map(|&f| (f, level)).collect();
        let mut v = Vec::new();
        push_tones(&mut v, &t, ms);
        v
    }

    #[test]
    fn zero_dbm0_reference() {
        let x = tone(&[1004.0], 0.0, 1000);
        assert!((level_dbm0(&x)).abs() < 0.05, "{}", level_dbm0(&x));
        assert_eq!(*x.iter().max().unwrap(), 22826);
        let x = tone(&[1004.0], -20.0, 1000);
        assert!((level_dbm0(&x) + 20.0).abs() < 0.05);
        assert_eq!(level_dbm0(&[0; 80]), -120.0);
    }

    #[test]
    fn measure_finds_frequency_within_a_fraction_of_a_hertz() {
        for f in [300.0, 437.3, 1004.0, 2713.6, 3400.0] {
            let m = measure(&tone(&[f], -10.0, 1000));
            assert!((f64::from(m.freq_hz) - f).abs() < 0.2, "{f}: {m:?}");
            assert!((m.level_dbm0 + 10.0).abs() < 0.1);
            assert_eq!(m.second_freq_hz, None, "{f}");
        }
    }

    #[test]
    fn measure_finds_both_tones_of_a_pair() {
        let m = measure(&tone(&[440.0, 480.0], -19.0, 1000));
        let mut got = [m.freq_hz, m.second_freq_hz.unwrap()];
        got.sort_by(f32::total_cmp);
        assert!((got[0] - 440.0).abs() < 0.5 && (got[1] - 480.0).abs() < 0.5, "{got:?}");
        assert!((m.level_dbm0 - (-16.0)).abs() < 0.2, "{m:?}");
        // A weak second tone (-30 dB) is not reported.
        let mut a = tone(&[1000.0], -10.0, 500);
        let b = tone(&[2000.0], -40.0, 500);
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
        assert_eq!(measure(&a).second_freq_hz, None);
        assert_eq!(measure(&[0; 8000]).freq_hz, 0.0);
    }

    /// Plays `cadence` (on/off ms, cyclic) of `freqs` into a detector after
    /// `lead_ms` of silence; returns the first report and the ms it took.
    fn detect(plan: TonePlan, freqs: &[f64], cadence: &[u32], lead_ms: u32, total_ms: u32) -> Option<ToneReport> {
        let mut sig = vec![0i16; lead_ms as usize * 8];
        let mut i = 0;
        while sig.len() < total_ms as usize * 8 {
            if cadence.is_empty() {
                sig.extend(tone(freqs, -13.0, total_ms));
                continue;
            }
            let ms = cadence[i % cadence.len()];
            if i % 2 == 0 {
                sig.extend(tone(freqs, -13.0, ms));
            } else {
                sig.resize(sig.len() + ms as usize * 8, 0);
            }
            i += 1;
        }
        let mut d = ToneDetector::new(plan);
        sig.chunks(FRAME).find_map(|f| d.push_frame(f))
    }

    #[test]
    fn detector_recognises_cadenced_tones() {
        let r = detect(plans::US_BUSY, &[480.0, 620.0], &[500, 500], 170, 4000).unwrap();
        assert_eq!(r.name, "US busy");
        assert_eq!(r.cadence_ms.len(), 4);
        for (m, w) in r.cadence_ms.iter().zip([500, 500, 500, 500]) {
            assert!((*m as i32 - w).abs() <= 20, "{:?}", r.cadence_ms);
        }
        assert!((r.level_dbm0 + 10.0).abs() < 0.5, "{r:?}");
        // Busy is not reorder, and the other way round.
        assert!(detect(plans::US_REORDER, &[480.0, 620.0], &[500, 500], 0, 4000).is_none());
        assert!(detect(plans::US_BUSY, &[480.0, 620.0], &[250, 250], 0, 4000).is_none());
        assert!(detect(plans::US_REORDER, &[480.0, 620.0], &[250, 250], 30, 4000).is_some());
        // Tolerance: +15% passes, +35% fails.
        assert!(detect(plans::DE_BUSY, &[425.0], &[550, 550], 0, 5000).is_some());
        assert!(detect(plans::DE_BUSY, &[425.0], &[650, 650], 0, 5000).is_none());
    }

    #[test]
    fn detector_checks_frequencies() {
        // Dial tone (350+440) is not ringback (440+480), whatever the cadence.
        assert!(detect(plans::US_RINGBACK, &[350.0, 440.0], &[2000, 4000], 0, 16000).is_none());
        assert!(detect(plans::US_RINGBACK, &[440.0, 480.0], &[2000, 4000], 500, 16000).is_some());
        // 440 Hz is not the German 425 Hz.
        assert!(detect(plans::DE_DIAL, &[440.0], &[], 0, 3000).is_none());
        assert!(detect(plans::DE_DIAL, &[425.0], &[], 0, 3000).is_some());
        // Only one of the pair is not the tone.
        assert!(detect(plans::US_DIAL, &[350.0], &[], 0, 3000).is_none());
    }

    #[test]
    fn continuous_tone_needs_one_second_steady() {
        let r = detect(plans::US_DIAL, &[350.0, 440.0], &[], 200, 3000).unwrap();
        assert!((1190..=1230).contains(&r.after_ms), "{r:?}");
        // A 600 ms burst is not dial tone.
        assert!(detect(plans::US_DIAL, &[350.0, 440.0], &[600, 600], 0, 5000).is_none());
    }

    #[test]
    fn dtmf_generation() {
        let x = dtmf("1#", 80, 80, -7.0).unwrap();
        assert_eq!(x.len(), 2 * 160 * 8);
        let m = measure(&x[..640]);
        let mut f = [m.freq_hz, m.second_freq_hz.unwrap()];
        f.sort_by(f32::total_cmp);
        assert!((f[0] - 697.0).abs() < 1.0 && (f[1] - 1209.0).abs() < 1.0, "{f:?}");
        assert!((level_dbm0(&x[..640]) - (-4.0)).abs() < 0.2);
        assert!(x[640..1280].iter().all(|&s| s == 0));
        assert_eq!(dtmf("12x", 80, 80, -7.0), Err('x'));
        assert_eq!(dtmf("a,", 80, 80, -7.0).unwrap().len(), 1280 + 4000);
    }

    #[test]
    fn tone_level_ignores_other_signals() {
        let t = tone(&[1004.0], -20.0, 1000);
        assert!((tone_level_dbm0(&t, 1004.0) + 20.0).abs() < 0.1, "{}", tone_level_dbm0(&t, 1004.0));
        // The same tone under a louder tone 400 Hz away and under noise.
        let other = tone(&[1404.0], -10.0, 1000);
        let mut g = crate::signals::Noise::new(9);
        let mix: Vec<i16> = t
            .iter()
            .zip(&other)
            .map(|(&a, &b)| (f64::from(a) + f64::from(b) + 300.0 * g.gaussian()).round() as i16)
            .collect();
        assert!(level_dbm0(&mix) > -11.0);
        assert!((tone_level_dbm0(&mix, 1004.0) + 20.0).abs() < 0.3, "{}", tone_level_dbm0(&mix, 1004.0));
        assert!(tone_level_dbm0(&other, 1004.0) < -60.0);
        assert_eq!(tone_level_dbm0(&[0; 800], 1004.0), -120.0);
    }
}
