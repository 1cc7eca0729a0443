//! Call-progress tones: table-driven country profiles and a phase-continuous generator.
//!
//! Sources: ITU-T E.180 Supplement 2 ("Various tones used in national networks", the
//! per-country table of frequencies and cadences), ETSI TR 101 041-2 for the European
//! entries, Telcordia GR-506 (LSSGR) section 17 for the US precise tones and SIT, BT SIN 350
//! for the UK, NTT's "Interface for analog telephone" for JP, ACIF/Telstra for AU. Levels are
//! the nominal sending levels per tone; networks differ by a few dB, which a gateway may
//! adjust per port.
//!
//! # Conventions of [`ToneSpec`]
//! - `cadence_ms` holds `n_cadence` durations: on, off, on, off, ... repeated forever. An
//!   empty cadence is a continuous tone. An odd count ends with an on period that loops
//!   straight into the first.
//! - All `n_freqs` components sound together at their own `levels_dbm0` (sum), except:
//! - **Sequenced tones** (the special information tone, ITU-T Q.35 / E.180 section 8): if
//!   there are at least two on periods, exactly as many as frequencies, and every off
//!   period but the last is 0 ms, then on period `i` plays `freqs[i]` alone at
//!   `levels_dbm0[i]`.
//! - **Modulated tones** (`modulated = true`, used in AU and JP): `freqs[0]` is the
//!   carrier at `levels_dbm0[0]`, amplitude-modulated by `freqs[1]`; the two sidebands
//!   `freqs[0] +- freqs[1]` each have level `levels_dbm0[1]`.

use crate::osc::Osc;
use crate::{dbm0_to_peak, sat16};

/// Up to 4 frequency components and up to 4 on/off cadence pairs. Empty cadence = continuous.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneSpec {
    pub freqs: [f32; 4],
    pub levels_dbm0: [f32; 4],
    pub n_freqs: u8,
    pub cadence_ms: [u16; 8],
    pub n_cadence: u8,
    /// AM (see module docs); false = sum of the components.
    pub modulated: bool,
}

impl ToneSpec {
    /// Components `freqs` all at `level_dbm0`, with the given cadence (at most 4 and 8
    /// entries; extra entries are ignored).
    pub const fn new(freqs: &[f32], level_dbm0: f32, cadence_ms: &[u16]) -> Self {
        let mut s = ToneSpec {
            freqs: [0.0; 4],
            levels_dbm0: [level_dbm0; 4],
            n_freqs: 0,
            cadence_ms: [0; 8],
            n_cadence: 0,
            modulated: false,
        };
        let mut i = 0;
        while i < freqs.len() && i < 4 {
            s.freqs[i] = freqs[i];
            i += 1;
        }
        s.n_freqs = i as u8;
        let mut j = 0;
        while j < cadence_ms.len() && j < 8 {
            s.cadence_ms[j] = cadence_ms[j];
            j += 1;
        }
        s.n_cadence = j as u8;
        s
    }

    /// Carrier `carrier_hz` at `level_dbm0` modulated by `mod_hz`, sidebands at
    /// `sideband_dbm0` each.
    pub const fn am(carrier_hz: f32, mod_hz: f32, level_dbm0: f32, sideband_dbm0: f32, cadence_ms: &[u16]) -> Self {
        let mut s = Self::new(&[carrier_hz, mod_hz], level_dbm0, cadence_ms);
        s.levels_dbm0[1] = sideband_dbm0;
        s.modulated = true;
        s
    }

    /// Silence (no components).
    pub const fn none() -> Self {
        Self::new(&[], 0.0, &[])
    }

    /// True if this is a sequenced tone (module docs).
    pub fn is_sequenced(&self) -> bool {
        let n = (self.n_cadence as usize).min(8);
        let on_periods = n.div_ceil(2);
        if self.modulated || on_periods < 2 || on_periods != self.n_freqs as usize {
            return false;
        }
        // Off periods at odd indexes, all but the last must be 0.
        (1..n).step_by(2).filter(|&i| i + 1 < n).all(|i| self.cadence_ms[i] == 0)
    }

    /// Length of one cadence cycle in ms (0 = continuous).
    pub fn cycle_ms(&self) -> u32 {
        self.cadence_ms[..(self.n_cadence as usize).min(8)].iter().map(|&c| c as u32).sum()
    }
}

/// The tones a profile defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToneKind {
    Dial,
    Ringback,
    Busy,
    /// Reorder / number unobtainable (the call cannot be completed as dialled).
    Reorder,
    /// Network congestion (all circuits busy).
    Congestion,
    CallWaiting,
    SpecialInformation,
}

/// One country's tone plan.
#[derive(Debug, PartialEq)]
pub struct CountryProfile {
    pub code: &'static str,
    pub name: &'static str,
    pub dial: ToneSpec,
    pub ringback: ToneSpec,
    pub busy: ToneSpec,
    pub reorder: ToneSpec,
    pub congestion: ToneSpec,
    pub call_waiting: ToneSpec,
    pub sit: ToneSpec,
    /// For the FXS ringing cadence: on, off, on, off... in ms.
    pub ring_cadence_ms: &'static [u16],
}

impl CountryProfile {
    pub fn tone(&self, kind: ToneKind) -> &ToneSpec {
        match kind {
            ToneKind::Dial => &self.dial,
            ToneKind::Ringback => &self.ringback,
            ToneKind::Busy => &self.busy,
            ToneKind::Reorder => &self.reorder,
            ToneKind::Congestion => &self.congestion,
            ToneKind::CallWaiting => &self.call_waiting,
            ToneKind::SpecialInformation => &self.sit,
        }
    }
}

/// The ETSI/ITU-T special information tone (ITU-T Q.35 Annex, E.180 section 8):
/// 950, 1400, 1800 Hz, 330 ms each, then 1 s of silence.
const SIT_ETSI: ToneSpec = ToneSpec::new(&[950.0, 1400.0, 1800.0], -20.0, &[330, 0, 330, 0, 330, 1000]);

/// Every profile this crate knows, by ISO 3166 code.
pub static PROFILES: [CountryProfile; 8] = [
    // Telcordia GR-506 section 17.2 (precise tone plan) and the SIT of GR-1162 (the
    // "vacant code" segment lengths 274/274/380 ms).
    CountryProfile {
        code: "US",
        name: "United States (Telcordia precise tones)",
        dial: ToneSpec::new(&[350.0, 440.0], -13.0, &[]),
        ringback: ToneSpec::new(&[440.0, 480.0], -19.0, &[2000, 4000]),
        busy: ToneSpec::new(&[480.0, 620.0], -24.0, &[500, 500]),
        reorder: ToneSpec::new(&[480.0, 620.0], -24.0, &[250, 250]),
        congestion: ToneSpec::new(&[480.0, 620.0], -24.0, &[200, 300]),
        call_waiting: ToneSpec::new(&[440.0], -13.0, &[300, 9700]),
        sit: ToneSpec::new(&[913.8, 1370.6, 1776.7], -24.0, &[274, 0, 274, 0, 380, 4000]),
        ring_cadence_ms: &[2000, 4000],
    },
    // FTZ 1 TR 110 / ETSI TR 101 041-2 entry for Germany.
    CountryProfile {
        code: "DE",
        name: "Germany (ETSI)",
        dial: ToneSpec::new(&[425.0], -10.0, &[]),
        ringback: ToneSpec::new(&[425.0], -10.0, &[1000, 4000]),
        busy: ToneSpec::new(&[425.0], -10.0, &[480, 480]),
        reorder: ToneSpec::new(&[425.0], -10.0, &[240, 240]),
        congestion: ToneSpec::new(&[425.0], -10.0, &[240, 240]),
        call_waiting: ToneSpec::new(&[425.0], -10.0, &[200, 200, 200, 5000]),
        sit: SIT_ETSI,
        ring_cadence_ms: &[1000, 4000],
    },
    // BT SIN 350 section 3 (tones) and 4 (ringing).
    CountryProfile {
        code: "UK",
        name: "United Kingdom (BT SIN 350)",
        dial: ToneSpec::new(&[350.0, 440.0], -19.0, &[]),
        ringback: ToneSpec::new(&[400.0, 450.0], -19.0, &[400, 200, 400, 2000]),
        busy: ToneSpec::new(&[400.0], -19.0, &[375, 375]),
        reorder: ToneSpec::new(&[400.0], -19.0, &[]),
        congestion: ToneSpec::new(&[400.0], -19.0, &[400, 350, 225, 525]),
        call_waiting: ToneSpec::new(&[400.0], -19.0, &[100, 3000]),
        sit: SIT_ETSI,
        ring_cadence_ms: &[400, 200, 400, 2000],
    },
    // E.180 Suppl. 2 entry for France.
    CountryProfile {
        code: "FR",
        name: "France",
        dial: ToneSpec::new(&[440.0], -13.0, &[]),
        ringback: ToneSpec::new(&[440.0], -13.0, &[1500, 3500]),
        busy: ToneSpec::new(&[440.0], -13.0, &[500, 500]),
        reorder: ToneSpec::new(&[440.0], -13.0, &[250, 250]),
        congestion: ToneSpec::new(&[440.0], -13.0, &[250, 250]),
        call_waiting: ToneSpec::new(&[440.0], -13.0, &[300, 10000]),
        sit: SIT_ETSI,
        ring_cadence_ms: &[1500, 3500],
    },
    // E.180 Suppl. 2 / ETSI TR 101 041-2 entry for the Netherlands.
    CountryProfile {
        code: "NL",
        name: "Netherlands (ETSI)",
        dial: ToneSpec::new(&[425.0], -13.0, &[]),
        ringback: ToneSpec::new(&[425.0], -13.0, &[1000, 4000]),
        busy: ToneSpec::new(&[425.0], -13.0, &[500, 500]),
        reorder: ToneSpec::new(&[425.0], -13.0, &[250, 250]),
        congestion: ToneSpec::new(&[425.0], -13.0, &[250, 250]),
        call_waiting: ToneSpec::new(&[425.0], -13.0, &[500, 9500]),
        sit: SIT_ETSI,
        ring_cadence_ms: &[1000, 4000],
    },
    // E.180 Suppl. 2 entry for Italy (dial tone with its 200/200/600/1000 cadence).
    CountryProfile {
        code: "IT",
        name: "Italy",
        dial: ToneSpec::new(&[425.0], -13.0, &[200, 200, 600, 1000]),
        ringback: ToneSpec::new(&[425.0], -13.0, &[1000, 4000]),
        busy: ToneSpec::new(&[425.0], -13.0, &[500, 500]),
        reorder: ToneSpec::new(&[425.0], -13.0, &[200, 200]),
        congestion: ToneSpec::new(&[425.0], -13.0, &[200, 200]),
        call_waiting: ToneSpec::new(&[425.0], -13.0, &[400, 100, 250, 100, 150, 14000]),
        sit: SIT_ETSI,
        ring_cadence_ms: &[1000, 4000],
    },
    // ACIF S002 / Telstra: 425 Hz modulated by 25 Hz for dial and ringback.
    CountryProfile {
        code: "AU",
        name: "Australia (ACIF)",
        dial: ToneSpec::am(425.0, 25.0, -13.0, -19.0, &[]),
        ringback: ToneSpec::am(425.0, 25.0, -13.0, -19.0, &[400, 200, 400, 2000]),
        busy: ToneSpec::new(&[425.0], -13.0, &[375, 375]),
        reorder: ToneSpec::new(&[425.0], -19.0, &[375, 375]),
        congestion: ToneSpec::new(&[425.0], -19.0, &[375, 375]),
        call_waiting: ToneSpec::new(&[425.0], -13.0, &[200, 200, 200, 4400]),
        sit: SIT_ETSI,
        ring_cadence_ms: &[400, 200, 400, 2000],
    },
    // NTT: 400 Hz tones, ringback modulated by 16 Hz.
    CountryProfile {
        code: "JP",
        name: "Japan (NTT)",
        dial: ToneSpec::new(&[400.0], -13.0, &[]),
        ringback: ToneSpec::am(400.0, 16.0, -13.0, -19.0, &[1000, 2000]),
        busy: ToneSpec::new(&[400.0], -13.0, &[500, 500]),
        reorder: ToneSpec::new(&[400.0], -13.0, &[500, 500]),
        congestion: ToneSpec::new(&[400.0], -13.0, &[500, 500]),
        call_waiting: ToneSpec::new(&[400.0], -13.0, &[100, 100, 100, 3000]),
        sit: SIT_ETSI,
        ring_cadence_ms: &[1000, 2000],
    },
];

/// "US", "DE" (ETSI), "UK", "FR", "NL", "IT", "AU", "JP" (case-insensitive; "GB" is an
/// alias of "UK").
pub fn profile(code: &str) -> Option<&'static CountryProfile> {
    let code = if code.eq_ignore_ascii_case("GB") { "UK" } else { code };
    PROFILES.iter().find(|p| p.code.eq_ignore_ascii_case(code))
}

/// Phase-continuous tone generator; the cadence runs in sample time.
#[derive(Clone, Debug, PartialEq)]
pub struct ToneGenerator {
    osc: [Osc; 4],
    n_osc: u8,
    sequenced: bool,
    cadence: [u32; 8],
    n_cadence: u8,
    seg: u8,
    seg_pos: u32,
    active: bool,
}

impl ToneGenerator {
    pub fn new(spec: &ToneSpec) -> Self {
        let mut g = Self::silent();
        let nf = (spec.n_freqs as usize).min(4);
        if spec.modulated && nf >= 2 {
            let (fc, fm) = (spec.freqs[0], spec.freqs[1]);
            g.osc[0] = Osc::new(fc, dbm0_to_peak(spec.levels_dbm0[0]));
            g.osc[1] = Osc::new(fc + fm, dbm0_to_peak(spec.levels_dbm0[1]));
            g.osc[2] = Osc::new(fc - fm, dbm0_to_peak(spec.levels_dbm0[1]));
            g.n_osc = 3;
        } else {
            for i in 0..nf {
                g.osc[i] = Osc::new(spec.freqs[i], dbm0_to_peak(spec.levels_dbm0[i]));
            }
            g.n_osc = nf as u8;
        }
        let nc = (spec.n_cadence as usize).min(8);
        for i in 0..nc {
            g.cadence[i] = spec.cadence_ms[i] as u32 * 8;
        }
        // A cadence of only zeros would never advance: treat it as continuous.
        g.n_cadence = if g.cadence[..nc].iter().any(|&c| c > 0) { nc as u8 } else { 0 };
        g.sequenced = spec.is_sequenced();
        g.active = g.n_osc > 0;
        g.skip_empty_segments();
        g
    }

    /// A generator that produces silence.
    pub const fn silent() -> Self {
        ToneGenerator {
            osc: [Osc::off(); 4],
            n_osc: 0,
            sequenced: false,
            cadence: [0; 8],
            n_cadence: 0,
            seg: 0,
            seg_pos: 0,
            active: false,
        }
    }

    /// True unless this is [`ToneGenerator::silent`] (cadenced tones repeat forever).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// True while the cadence is in an on period (always, for a continuous tone).
    pub fn is_on(&self) -> bool {
        self.active && (self.n_cadence == 0 || self.seg.is_multiple_of(2))
    }

    fn skip_empty_segments(&mut self) {
        if self.n_cadence == 0 {
            return;
        }
        while self.cadence[self.seg as usize] == 0 {
            self.seg = (self.seg + 1) % self.n_cadence;
        }
    }

    /// Overwrites `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        if !self.active {
            out.fill(0);
            return;
        }
        let n_osc = self.n_osc as usize;
        for o in out.iter_mut() {
            let on = self.n_cadence == 0 || self.seg.is_multiple_of(2);
            let mut acc = 0.0;
            if !on {
                for osc in &mut self.osc[..n_osc] {
                    osc.skip(1);
                }
            } else if self.sequenced {
                let which = (self.seg / 2) as usize;
                for (i, osc) in self.osc[..n_osc].iter_mut().enumerate() {
                    if i == which {
                        acc = osc.next();
                    } else {
                        osc.skip(1);
                    }
                }
            } else {
                for osc in &mut self.osc[..n_osc] {
                    acc += osc.next();
                }
            }
            *o = sat16(acc);
            if self.n_cadence > 0 {
                self.seg_pos += 1;
                if self.seg_pos >= self.cadence[self.seg as usize] {
                    self.seg_pos = 0;
                    self.seg = (self.seg + 1) % self.n_cadence;
                    self.skip_empty_segments();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::vec::Vec;

    /// Independent level meter: correlate with a std-computed complex exponential and
    /// return the sine's level in dBm0.
    fn level_at(x: &[i16], f: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &s) in x.iter().enumerate() {
            let w = 2.0 * PI * f * n as f64 / 8000.0;
            re += s as f64 * w.cos();
            im += s as f64 * w.sin();
        }
        let amp = 2.0 * (re * re + im * im).sqrt() / x.len() as f64;
        20.0 * (amp / 22826.0).log10()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn render(spec: &ToneSpec, ms: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(spec);
        let mut x = std::vec![0i16; ms * 8];
        // Odd chunk sizes: the output must not depend on how the caller slices time.
        for c in x.chunks_mut(37) {
            g.fill(c);
        }
        x
    }

    /// On/off state per 10 ms frame: on if RMS is above -40 dBm0.
    fn envelope(x: &[i16]) -> Vec<bool> {
        x.chunks(80).map(|c| rms(c) > 22826.0 / 2f64.sqrt() * 0.01).collect()
    }

    /// Run lengths of the envelope in ms.
    fn runs(env: &[bool]) -> Vec<(bool, usize)> {
        let mut out: Vec<(bool, usize)> = Vec::new();
        for &e in env {
            match out.last_mut() {
                Some((v, n)) if *v == e => *n += 10,
                _ => out.push((e, 10)),
            }
        }
        out
    }

    #[test]
    fn us_dial_frequencies_and_levels() {
        let p = profile("US").unwrap();
        let x = render(&p.dial, 1000);
        assert!((level_at(&x, 350.0) + 13.0).abs() < 0.1);
        assert!((level_at(&x, 440.0) + 13.0).abs() < 0.1);
        assert!(level_at(&x, 480.0) < -40.0);
        assert!(envelope(&x).iter().all(|&e| e), "continuous");
    }

    #[test]
    fn cadences_match_profiles() {
        let us = profile("US").unwrap();
        let de = profile("DE").unwrap();
        let cases: [(&ToneSpec, &[(bool, usize)]); 5] = [
            (&us.busy, &[(true, 500), (false, 500), (true, 500), (false, 500)]),
            (&us.reorder, &[(true, 250), (false, 250), (true, 250), (false, 250)]),
            (&us.ringback, &[(true, 2000), (false, 4000), (true, 2000)]),
            (&de.busy, &[(true, 480), (false, 480), (true, 480)]),
            (&profile("UK").unwrap().ringback, &[(true, 400), (false, 200), (true, 400), (false, 2000), (true, 400)]),
        ];
        for (spec, expect) in cases {
            let total: usize = expect.iter().map(|r| r.1).sum();
            let x = render(spec, total);
            assert_eq!(runs(&envelope(&x)), expect.to_vec(), "{spec:?}");
        }
        let x = render(&us.ringback, 2000);
        assert!((level_at(&x, 440.0) + 19.0).abs() < 0.1 && (level_at(&x, 480.0) + 19.0).abs() < 0.1);
        let x = render(&de.ringback, 1000);
        assert!((level_at(&x, 425.0) + 10.0).abs() < 0.1);
        assert_eq!(us.ring_cadence_ms, &[2000, 4000]);
        assert_eq!(de.ring_cadence_ms, &[1000, 4000]);
    }

    #[test]
    fn phase_is_continuous_across_calls_and_cadence() {
        // Same signal whether rendered in one call or 37-sample chunks.
        let spec = profile("US").unwrap().busy;
        let mut g = ToneGenerator::new(&spec);
        let mut one = std::vec![0i16; 16000];
        g.fill(&mut one);
        assert_eq!(one, render(&spec, 2000));
        // The tone after the off period continues the oscillator: it matches a continuous
        // 480+620 Hz sum at the same sample index.
        let cont = render(&ToneSpec::new(&[480.0, 620.0], -24.0, &[]), 2000);
        assert_eq!(&one[8000..12000], &cont[8000..12000]);
        // And no click: the largest sample step inside an on period is what a sine allows.
        let max_step = one[8001..12000].windows(2).map(|w| (w[1] as i32 - w[0] as i32).abs()).max().unwrap();
        assert!(max_step < 1500, "{max_step}");
    }

    #[test]
    fn special_information_tone_is_sequenced() {
        let sit = profile("DE").unwrap().sit;
        assert!(sit.is_sequenced());
        let x = render(&sit, 2000);
        for (i, f) in [950.0, 1400.0, 1800.0].into_iter().enumerate() {
            let seg = &x[i * 2640..(i + 1) * 2640];
            assert!((level_at(seg, f) + 20.0).abs() < 0.2, "segment {i}");
            for g in [950.0, 1400.0, 1800.0] {
                if g != f {
                    assert!(level_at(seg, g) < -45.0);
                }
            }
        }
        assert!(rms(&x[7920..15920]) < 1.0, "1 s of silence after the three segments");
        assert!(!profile("US").unwrap().busy.is_sequenced());
        assert!(!profile("UK").unwrap().ringback.is_sequenced(), "two freqs, two on periods, but not gapless");
    }

    #[test]
    fn modulated_tone_has_carrier_and_sidebands() {
        let x = render(&profile("AU").unwrap().dial, 1000);
        assert!((level_at(&x, 425.0) + 13.0).abs() < 0.1);
        assert!((level_at(&x, 400.0) + 19.0).abs() < 0.1);
        assert!((level_at(&x, 450.0) + 19.0).abs() < 0.1);
        // The envelope beats at 25 Hz: 40 ms period, so RMS over 20 ms halves alternate.
        let a = rms(&x[0..80]);
        let b = rms(&x[80..160]);
        assert!((a / b - 1.0).abs() > 0.1, "{a} {b}");
    }

    #[test]
    fn profiles_are_complete_and_sane() {
        for code in ["US", "DE", "UK", "FR", "NL", "IT", "AU", "JP"] {
            let p = profile(code).unwrap();
            assert_eq!(p.code, code);
            for kind in [
                ToneKind::Dial,
                ToneKind::Ringback,
                ToneKind::Busy,
                ToneKind::Reorder,
                ToneKind::Congestion,
                ToneKind::CallWaiting,
                ToneKind::SpecialInformation,
            ] {
                let t = p.tone(kind);
                assert!(t.n_freqs >= 1 && t.n_freqs <= 4 && t.n_cadence <= 8 && t.n_cadence.is_multiple_of(2), "{code} {kind:?}");
                assert!(t.freqs[..t.n_freqs as usize].iter().all(|&f| f > 0.0 && f < 3400.0));
                assert!(t.levels_dbm0.iter().all(|&l| (-30.0..=-5.0).contains(&l)));
                let x = render(t, 300);
                assert!(rms(&x) > 100.0, "{code} {kind:?} audible at start");
            }
            assert!(!p.ring_cadence_ms.is_empty() && p.ring_cadence_ms.len().is_multiple_of(2));
        }
        assert_eq!(profile("gb").unwrap().code, "UK");
        assert_eq!(profile("us").unwrap().code, "US");
        assert!(profile("XX").is_none());
        assert!(profile("").is_none());
    }

    #[test]
    fn silent_and_degenerate_specs() {
        let mut g = ToneGenerator::silent();
        let mut x = [7i16; 80];
        g.fill(&mut x);
        assert!(x.iter().all(|&s| s == 0));
        assert!(!g.is_active());
        let mut g = ToneGenerator::new(&ToneSpec::none());
        assert!(!g.is_active());
        g.fill(&mut x);
        assert!(x.iter().all(|&s| s == 0));
        // All-zero cadence does not hang and plays continuously.
        let g0 = ToneGenerator::new(&ToneSpec::new(&[1000.0], -10.0, &[0, 0]));
        assert!(g0.is_on());
        let mut g0 = g0;
        g0.fill(&mut x);
        assert!(rms(&x) > 1000.0);
        // Italy's dial tone starts with its 200 ms on period.
        let x = render(&profile("IT").unwrap().dial, 2000);
        assert_eq!(runs(&envelope(&x)), std::vec![(true, 200), (false, 200), (true, 600), (false, 1000)]);
    }
}
