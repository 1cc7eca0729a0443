//! Call-progress tone detection: which of a country profile's tones (dial, ringback, busy,
//! reorder, congestion, call waiting, special information) is on the line.
//!
//! An FXO port uses it to hear dial tone before dialling and, above all, busy or reorder
//! tone after the far end hung up (the exchange's disconnect signal on lines without
//! battery reversal). Tones and cadences come from [`crate::tones::CountryProfile`]
//! (ITU-T E.180 Supplement 2), so detection matches generation by construction.
//!
//! # Method
//! Every 10 ms a 20 ms window (160 samples, 50 Hz resolution) is measured with one
//! Goertzel bin per distinct frequency of the profile. A tone's frequency set is *on* in
//! a window when each of its frequencies is above -40 dBm0, within 12 dB of each other and
//! above every other frequency of the profile, and together they carry at least half of
//! the window's power (speech and noise spread their power; the carrier alone is used
//! for AM tones). Each distinct frequency set keeps the lengths of
//! its last on and off runs; a tone is recognised when:
//! - continuous: on for [`CONTINUOUS_MS`], or 300 ms longer than the longest on period
//!   of a cadenced tone on the same frequencies;
//! - cadenced: the last `max(n_cadence, 4)` runs match the cadence (in some rotation)
//!   within `max(60 ms, 20 %)` per run. Tones sharing frequencies (US busy 500/500 against
//!   reorder 250/250) are told apart by the cadence; specs that differ only in level
//!   (AU busy and reorder) are reported as the first kind in [`ToneKind`] order;
//! - sequenced (SIT): its frequencies on one after another for about their durations.
//!
//! A recognised tone ends when its frequencies stay off longer than its longest off
//! period plus 500 ms (300 ms for a continuous tone).

use crate::goertzel::Goertzel;
use crate::tones::{CountryProfile, ToneKind, ToneSpec};
use crate::{DBM0_PEAK, SAMPLE_RATE};

/// Window length (20 ms) and hop (10 ms).
const WIN: usize = 160;
const HOP: usize = 80;
/// Off runs this short (hops) are bridged (AM troughs).
const MERGE_HOPS: u32 = 3;
/// Longest run history kept per frequency set.
const RUNS: usize = 8;
/// Most distinct frequencies a profile may use.
const MAX_FREQS: usize = 12;
/// A continuous tone is recognised after this long.
pub const CONTINUOUS_MS: u32 = 1000;
/// Lowest tone level heard (per frequency).
pub const MIN_LEVEL_DBM0: f32 = -40.0;
const MIN_AMP: f32 = DBM0_PEAK * 0.01;
/// Fraction of the window's power the set's frequencies must carry.
pub const MIN_FRACTION: f32 = 0.5;

const KINDS: [ToneKind; 7] = [
    ToneKind::Dial,
    ToneKind::Ringback,
    ToneKind::Busy,
    ToneKind::Reorder,
    ToneKind::Congestion,
    ToneKind::CallWaiting,
    ToneKind::SpecialInformation,
];

/// What the detector reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    Detected(ToneKind),
    Ended(ToneKind),
}

/// On/off run history of one frequency set.
#[derive(Clone, Copy, Debug)]
struct Track {
    mask: u16,
    on: bool,
    /// Length of the current run, in hops (10 ms).
    cur: u32,
    /// Completed runs, newest last, alternating; `hist_on_last` says whether the newest
    /// completed run was an on run.
    hist: [u32; RUNS],
    n: usize,
}

impl Track {
    const fn new(mask: u16) -> Self {
        Track { mask, on: false, cur: 0, hist: [0; RUNS], n: 0 }
    }

    fn step(&mut self, on: bool) {
        if on == self.on {
            self.cur = self.cur.saturating_add(1);
            return;
        }
        // An off run of at most MERGE_HOPS between two on runs is the trough of an AM
        // tone (JP ringback: 400 Hz at 100 % modulation by 16 Hz), not a cadence break:
        // no national cadence has an off period under 100 ms.
        if on && self.cur <= MERGE_HOPS && self.n > 0 {
            self.n -= 1;
            self.cur += self.hist[self.n] + 1;
            self.on = true;
            return;
        }
        if self.cur > 0 {
            if self.n == RUNS {
                self.hist.copy_within(1.., 0);
                self.n -= 1;
            }
            self.hist[self.n] = self.cur;
            self.n += 1;
        }
        self.on = on;
        self.cur = 1;
    }
}

/// Detects the tones of one country profile on one channel.
#[derive(Clone, Debug)]
pub struct ProgressDetector {
    profile: &'static CountryProfile,
    bins: [Goertzel; MAX_FREQS],
    freqs: [f32; MAX_FREQS],
    n_freqs: usize,
    /// Per kind: index of its track (frequency set).
    kind_track: [usize; 7],
    tracks: [Track; 7],
    n_tracks: usize,
    /// Per track: how long a continuous tone must last, longer than any on period of a
    /// cadenced tone on the same frequencies (DE ringback is 425 Hz for 1 s, like dial).
    continuous_ms: [u32; 7],
    ring: [i16; WIN],
    wr: usize,
    filled: usize,
    since: usize,
    current: Option<ToneKind>,
    /// SIT: (frequency index, run length in hops) of the last single-frequency segments.
    sit_seq: [(u8, u32); 3],
    sit_cur: (u8, u32),
    queue: [Option<ProgressEvent>; 2],
}

fn spec_mask(spec: &ToneSpec, freqs: &[f32]) -> u16 {
    let n = if spec.modulated { 1 } else { (spec.n_freqs as usize).min(4) };
    let mut m = 0u16;
    for f in &spec.freqs[..n] {
        if let Some(i) = freqs.iter().position(|g| libm::fabsf(g - f) < 0.5) {
            m |= 1 << i;
        }
    }
    m
}

impl ProgressDetector {
    pub fn new(profile: &'static CountryProfile) -> Self {
        let mut freqs = [0.0f32; MAX_FREQS];
        let mut n = 0;
        for kind in KINDS {
            let s = profile.tone(kind);
            let nf = if s.modulated { 1 } else { (s.n_freqs as usize).min(4) };
            for &f in &s.freqs[..nf] {
                if n < MAX_FREQS && !freqs[..n].iter().any(|g| libm::fabsf(g - f) < 0.5) {
                    freqs[n] = f;
                    n += 1;
                }
            }
        }
        let mut bins = [Goertzel::new(0.0, SAMPLE_RATE); MAX_FREQS];
        for i in 0..n {
            bins[i] = Goertzel::new(freqs[i], SAMPLE_RATE);
        }
        let mut tracks = [Track::new(0); 7];
        let mut n_tracks = 0;
        let mut kind_track = [0usize; 7];
        for (k, kind) in KINDS.iter().enumerate() {
            let m = spec_mask(profile.tone(*kind), &freqs[..n]);
            let t = match tracks[..n_tracks].iter().position(|t| t.mask == m) {
                Some(t) => t,
                None => {
                    tracks[n_tracks] = Track::new(m);
                    n_tracks += 1;
                    n_tracks - 1
                }
            };
            kind_track[k] = t;
        }
        let mut continuous_ms = [CONTINUOUS_MS; 7];
        for (k, kind) in KINDS.iter().enumerate() {
            let spec = profile.tone(*kind);
            let longest_on = (0..spec.n_cadence as usize).step_by(2).map(|i| spec.cadence_ms[i] as u32).max().unwrap_or(0);
            let t = kind_track[k];
            continuous_ms[t] = continuous_ms[t].max(longest_on + 300);
        }
        ProgressDetector {
            profile,
            bins,
            freqs,
            n_freqs: n,
            kind_track,
            tracks,
            n_tracks,
            continuous_ms,
            ring: [0; WIN],
            wr: 0,
            filled: 0,
            since: 0,
            current: None,
            sit_seq: [(u8::MAX, 0); 3],
            sit_cur: (u8::MAX, 0),
            queue: [None; 2],
        }
    }

    /// The tone currently recognised.
    pub fn current(&self) -> Option<ToneKind> {
        self.current
    }

    /// Feed samples; at most one event per call (more wait for the next call).
    pub fn process(&mut self, samples: &[i16]) -> Option<ProgressEvent> {
        for &s in samples {
            self.ring[self.wr] = s;
            self.wr = (self.wr + 1) % WIN;
            self.filled = (self.filled + 1).min(WIN);
            self.since += 1;
            if self.filled == WIN && self.since >= HOP {
                self.since = 0;
                self.window();
            }
        }
        let ev = self.queue[0].take();
        self.queue[0] = self.queue[1].take();
        ev
    }

    fn push(&mut self, ev: ProgressEvent) {
        if let Some(slot) = self.queue.iter_mut().find(|q| q.is_none()) {
            *slot = Some(ev);
        }
    }

    fn window(&mut self) {
        let mut g = self.bins;
        let mut energy = 0.0f32;
        let (older, newer) = self.ring.split_at(self.wr);
        for &s in newer.iter().chain(older.iter()) {
            let x = s as f32;
            energy += x * x;
            for b in g[..self.n_freqs].iter_mut() {
                b.update(x);
            }
        }
        let mean = energy / WIN as f32;
        let mut amp = [0.0f32; MAX_FREQS];
        for i in 0..self.n_freqs {
            amp[i] = g[i].amplitude();
        }
        let present = |mask: u16| -> bool {
            if mask == 0 {
                return false;
            }
            let mut p = 0.0;
            let (mut weakest, mut strongest, mut other) = (f32::MAX, 0.0f32, 0.0f32);
            for i in 0..self.n_freqs {
                if mask & (1 << i) != 0 {
                    if amp[i] < MIN_AMP {
                        return false;
                    }
                    p += 0.5 * amp[i] * amp[i];
                    weakest = weakest.min(amp[i]);
                    strongest = strongest.max(amp[i]);
                } else {
                    other = other.max(amp[i]);
                }
            }
            // Every component really there (not a neighbour's leakage): within 12 dB of
            // the strongest, and above every frequency of the profile outside the set.
            p >= MIN_FRACTION * mean && weakest >= 0.25 * strongest && weakest > other
        };
        for t in 0..self.n_tracks {
            let on = present(self.tracks[t].mask);
            self.tracks[t].step(on);
        }
        // SIT segments: the strongest single SIT frequency that is present on its own.
        let sit = self.profile.tone(ToneKind::SpecialInformation);
        if sit.is_sequenced() {
            let mut seg = u8::MAX;
            for j in 0..(sit.n_freqs as usize).min(4) {
                let m = spec_mask(&ToneSpec::new(&[sit.freqs[j]], 0.0, &[]), &self.freqs[..self.n_freqs]);
                if present(m) {
                    seg = j as u8;
                }
            }
            if seg == self.sit_cur.0 {
                self.sit_cur.1 += 1;
            } else if self.sit_cur.0 == u8::MAX && self.sit_cur.1 <= 3 && seg != u8::MAX {
                // A window or two straddling two segments hears neither: not a segment.
                let last = self.sit_seq[2];
                if last.0 == seg {
                    self.sit_seq = [(u8::MAX, 0), self.sit_seq[0], self.sit_seq[1]];
                    self.sit_cur = (seg, last.1 + self.sit_cur.1 + 1);
                } else {
                    self.sit_cur = (seg, self.sit_cur.1 + 1);
                }
            } else {
                self.sit_seq = [self.sit_seq[1], self.sit_seq[2], self.sit_cur];
                self.sit_cur = (seg, 1);
            }
        }
        self.decide();
    }

    fn decide(&mut self) {
        // Ending first.
        if let Some(kind) = self.current {
            let spec = self.profile.tone(kind);
            let t = &self.tracks[self.kind_track[idx(kind)]];
            let max_off = (1..spec.n_cadence as usize).step_by(2).map(|i| spec.cadence_ms[i] as u32).max().unwrap_or(0);
            let limit = if spec.n_cadence == 0 { 300 } else { max_off + 500 };
            let ended = if kind == ToneKind::SpecialInformation && spec.is_sequenced() {
                self.sit_cur.0 == u8::MAX && self.sit_cur.1 * 10 > limit
            } else {
                !t.on && t.cur * 10 > limit
            };
            if ended {
                self.current = None;
                self.sit_seq = [(u8::MAX, 0); 3];
                self.push(ProgressEvent::Ended(kind));
            }
            return;
        }
        // Among the kinds that match, the one whose cadence fits best.
        let mut best: Option<(u32, ToneKind)> = None;
        for (k, kind) in KINDS.iter().enumerate() {
            let spec = self.profile.tone(*kind);
            let t = &self.tracks[self.kind_track[k]];
            let err = if *kind == ToneKind::SpecialInformation && spec.is_sequenced() {
                self.sit_match(spec).then_some(0)
            } else if spec.n_cadence == 0 {
                (t.on && t.cur * 10 >= self.continuous_ms[self.kind_track[k]]).then_some(0)
            } else {
                cadence_error(t, spec)
            };
            if let Some(e) = err {
                if best.is_none_or(|(b, _)| e < b) {
                    best = Some((e, *kind));
                }
            }
        }
        if let Some((_, kind)) = best {
            self.current = Some(kind);
            self.push(ProgressEvent::Detected(kind));
        }
    }

    fn sit_match(&self, spec: &ToneSpec) -> bool {
        // Three consecutive segments carrying freqs 0, 1, 2 with the on durations.
        let segs = [self.sit_seq[1], self.sit_seq[2], self.sit_cur];
        let done = [self.sit_seq[0], self.sit_seq[1], self.sit_seq[2]];
        for cand in [segs, done] {
            let ok = cand.iter().enumerate().all(|(j, &(f, len))| {
                let want = spec.cadence_ms[2 * j] as u32;
                f == j as u8 && within(len * 10, want) || (j == 2 && f == 2 && len * 10 >= want * 3 / 4)
            });
            if ok {
                return true;
            }
        }
        false
    }
}

fn idx(kind: ToneKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

fn within(ms: u32, want: u32) -> bool {
    let tol = (want / 5).max(60);
    ms + tol >= want && ms <= want + tol
}

/// If the last `n_cadence` completed runs (ending with an off run, the tone having just
/// come back) match the cadence in some rotation starting with an on period: the total
/// deviation in ms.
fn cadence_error(t: &Track, spec: &ToneSpec) -> Option<u32> {
    let nc = (spec.n_cadence as usize).min(8);
    // At least four runs (two cycles of a simple on/off cadence), so that a simple
    // cadence cannot match the first pair of a longer one (UK busy 375/375 against
    // congestion 400/350/225/525).
    let need = nc.max(4);
    if nc < 2 || t.n < need || !t.on {
        return None;
    }
    let runs = &t.hist[t.n - need..t.n];
    let mut best = None;
    for rot in (0..nc).step_by(2) {
        let ok = (0..need).all(|i| within(runs[i] * 10, spec.cadence_ms[(rot + i) % nc] as u32));
        if ok {
            let e: u32 = (0..need).map(|i| (runs[i] * 10).abs_diff(spec.cadence_ms[(rot + i) % nc] as u32)).sum();
            if best.is_none_or(|b| e < b) {
                best = Some(e);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tones::{profile, ToneGenerator, PROFILES};
    use std::vec::Vec;

    fn run(det: &mut ProgressDetector, x: &[i16]) -> Vec<(usize, ProgressEvent)> {
        let mut out = Vec::new();
        for (i, f) in x.chunks(80).enumerate() {
            if let Some(e) = det.process(f) {
                out.push((i * 10, e));
            }
        }
        while let Some(e) = det.process(&[]) {
            out.push((x.len() / 8, e));
        }
        out
    }

    fn render(spec: &ToneSpec, ms: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(spec);
        let mut x = std::vec![0i16; ms * 8];
        g.fill(&mut x);
        x
    }

    /// Every tone of every profile is recognised as itself (or as a kind with the very
    /// same spec), and ends after the tone stops.
    #[test]
    fn every_profile_tone_is_recognised() {
        for p in PROFILES.iter() {
            for kind in KINDS {
                if kind == ToneKind::CallWaiting {
                    continue; // heard by the user in a call, not detected on a line
                }
                let spec = p.tone(kind);
                let ms = (2 * spec.cycle_ms() as usize + 500).max(1500) + 1000;
                let mut x = std::vec![0i16; 800];
                x.extend(render(spec, ms));
                x.extend(std::iter::repeat_n(0i16, 8 * 6000));
                let ev = run(&mut ProgressDetector::new(p), &x);
                let got = ev.iter().find_map(|e| if let ProgressEvent::Detected(k) = e.1 { Some(k) } else { None });
                // Kinds that differ only in level (AU busy/reorder) cannot be told apart on
                // a real line; they count as the same tone.
                let same = |k: ToneKind| {
                    let t = p.tone(k);
                    t.freqs == spec.freqs && t.cadence_ms == spec.cadence_ms && t.n_cadence == spec.n_cadence && t.modulated == spec.modulated
                };
                let head = &ev[..ev.len().min(4)];
                assert!(got.is_some_and(same), "{} {kind:?}: {head:?}", p.code);
                assert_eq!(ev.len(), 2, "{} {kind:?}: one detection, one end: {head:?}", p.code);
                assert!(matches!(ev[1].1, ProgressEvent::Ended(_)), "{} {kind:?} never ended: {head:?}", p.code);
            }
        }
    }

    #[test]
    fn us_busy_is_heard_after_two_cycles_and_told_from_reorder() {
        let p = profile("US").unwrap();
        let ev = run(&mut ProgressDetector::new(p), &render(&p.busy, 3000));
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev.first().map(|e| e.1), Some(ProgressEvent::Detected(ToneKind::Busy)));
        assert!(ev[0].0 <= 2100, "after {} ms", ev[0].0);
        let ev = run(&mut ProgressDetector::new(p), &render(&p.reorder, 3000));
        assert_eq!(ev.first().map(|e| e.1), Some(ProgressEvent::Detected(ToneKind::Reorder)));
        // German busy 480/480 against congestion 240/240.
        let de = profile("DE").unwrap();
        let ev = run(&mut ProgressDetector::new(de), &render(&de.busy, 3000));
        assert_eq!(ev.first().map(|e| e.1), Some(ProgressEvent::Detected(ToneKind::Busy)));
    }

    #[test]
    fn speech_noise_and_wrong_levels_are_not_tones() {
        for p in PROFILES.iter() {
            let mut s = crate::testsig::SpeechLike::new(9, -15.0);
            let mut x = std::vec![0i16; 8 * 30_000];
            s.fill(&mut x);
            assert!(run(&mut ProgressDetector::new(p), &x).is_empty(), "{}", p.code);
        }
        // Recorded (synthetic) speech, both talkers.
        for file in [&include_bytes!("../testdata/speech_en_m.ulaw")[..], &include_bytes!("../testdata/speech_en_f.ulaw")[..]] {
            let x: Vec<i16> = file.iter().map(|&b| crate::g711::decode(crate::g711::Law::Ulaw, b)).collect();
            for p in PROFILES.iter() {
                assert!(run(&mut ProgressDetector::new(p), &x).is_empty(), "{} on recorded speech", p.code);
            }
        }
        // US busy at -45 dBm0 per tone is below the detector's floor.
        let p = profile("US").unwrap();
        let weak = ToneSpec::new(&[480.0, 620.0], -45.0, &[500, 500]);
        assert!(run(&mut ProgressDetector::new(p), &render(&weak, 4000)).is_empty());
        // A busy cadence on the wrong frequency (DE 425 Hz on a US line) is not busy.
        let de = profile("DE").unwrap();
        assert!(run(&mut ProgressDetector::new(p), &render(&de.busy, 4000)).is_empty());
    }

    #[test]
    fn busy_in_line_noise_ends_a_call() {
        // FXO disconnect: DE busy at -20 dBm0 over white noise at -40 dBm0, after speech.
        let de = profile("DE").unwrap();
        let mut s = crate::testsig::SpeechLike::new(3, -15.0);
        let mut x = std::vec![0i16; 8 * 3000];
        s.fill(&mut x);
        let busy = ToneSpec::new(&[425.0], -20.0, &[480, 480]);
        x.extend(render(&busy, 4000));
        let mut n = crate::testsig::Noise::new(8);
        let sigma = DBM0_PEAK / core::f32::consts::SQRT_2 * 0.01;
        for v in x.iter_mut() {
            *v = crate::sat16(*v as f32 + sigma * n.gauss());
        }
        let ev = run(&mut ProgressDetector::new(de), &x);
        assert_eq!(ev.first().map(|e| e.1), Some(ProgressEvent::Detected(ToneKind::Busy)), "{ev:?}");
        assert!(ev[0].0 >= 3000 && ev[0].0 <= 3000 + 2500, "{ev:?}");
    }
}
