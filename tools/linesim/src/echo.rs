//! Line echo injection: the hybrid of a 2-wire phone line, simulated.
//!
//! A real FXS line reflects part of what the card sends to the phone back
//! towards the card (the 2-wire/4-wire hybrid, "echo path" in ITU-T G.168).
//! [`EchoPath`] describes one such path: a bulk delay, one of the G.168 (2015)
//! Annex D hybrid impulse responses ([`HybridModel`]) and an echo return loss.
//! [`EchoLine`] applies it, sample by sample: the echo is what the phone heard,
//! delayed by the bulk delay and convolved with the model, scaled so that the
//! echo return loss is [`EchoPath::erl_db`]. [`crate::Phone::set_echo`] adds it
//! to whatever the phone sends, so the gateway's echo canceller sees the same
//! signal it would see on a real line.
//!
//! Timing is exact in frame time: linesim answers each received frame with one
//! frame, and the echo of the sample heard at frame time `n` is at frame time
//! `n + delay + k` for tap `k` of the model (a delay of 0 puts the echo of a
//! frame into the reply to that same frame).
//!
//! ERL definition (G.168 section 3.6 calls ERL the attenuation of a signal from
//! the receive-out port to the send-in port): the models' taps are normalised
//! to an energy of `10^(-ERL/10)`, so a white signal comes back exactly
//! `erl_db` weaker. For coloured signals (speech, tones) the loss depends on the
//! model's frequency response, as it does on a real line; [`EchoPath::loss_at`]
//! gives it for a single frequency. The tables' own gains (G.168 D.1) are not
//! used.
//!
//! Coefficients: transcribed from SpanDSP's `spandsp/g168models.h` (Debian
//! libspandsp-dev, LGPL 2.1 data; that file transcribes the tables of G.168
//! Annex D.2 .. D.9) and checked number by number against it. linesim keeps its
//! own copy so that it does not depend on the firmware's DSP crate.

use std::fmt;
use std::str::FromStr;

/// Longest bulk delay [`EchoPath`] accepts, in milliseconds.
pub const MAX_DELAY_MS: u32 = 100;
/// ERL range [`EchoPath`] accepts, in dB (0 dB: echo as loud as the signal).
pub const ERL_RANGE_DB: (f32, f32) = (0.0, 60.0);

/// The hybrid (echo path) models of G.168 (2015) Annex D. G.168 numbers them
/// "model 1" (D.2) to "model 8" (D.9); [`HybridModel::number`] uses that
/// numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HybridModel {
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
}

impl HybridModel {
    /// Every model, model 1 first.
    pub const ALL: [HybridModel; 8] = [
        HybridModel::D2,
        HybridModel::D3,
        HybridModel::D4,
        HybridModel::D5,
        HybridModel::D6,
        HybridModel::D7,
        HybridModel::D8,
        HybridModel::D9,
    ];

    /// The G.168 model number, 1 (D.2) ..= 8 (D.9).
    pub fn number(self) -> u8 {
        match self {
            HybridModel::D2 => 1,
            HybridModel::D3 => 2,
            HybridModel::D4 => 3,
            HybridModel::D5 => 4,
            HybridModel::D6 => 5,
            HybridModel::D7 => 6,
            HybridModel::D8 => 7,
            HybridModel::D9 => 8,
        }
    }

    /// The model with G.168 number `n` (1 ..= 8).
    pub fn from_number(n: u8) -> Option<HybridModel> {
        HybridModel::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    /// The Annex D table's integer coefficients (impulse response at 8 kHz,
    /// unscaled).
    pub fn coefficients(self) -> &'static [i32] {
        match self {
            HybridModel::D2 => &D2,
            HybridModel::D3 => &D3,
            HybridModel::D4 => &D4,
            HybridModel::D5 => &D5,
            HybridModel::D6 => &D6,
            HybridModel::D7 => &D7,
            HybridModel::D8 => &D8,
            HybridModel::D9 => &D9,
        }
    }
}

impl fmt::Display for HybridModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model {} (G.168 D.{})", self.number(), self.number() + 1)
    }
}

impl FromStr for HybridModel {
    type Err = EchoPathError;

    /// `1` ..= `8` (G.168 model numbers), or the Annex D clause: `d2` ..= `d9`,
    /// `D.2` ..= `D.9`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || EchoPathError::UnknownModel(s.to_string());
        let t = s.trim().to_ascii_lowercase();
        if let Some(rest) = t.strip_prefix('d') {
            let clause: u8 = rest.trim_start_matches('.').parse().map_err(|_| bad())?;
            return clause.checked_sub(1).and_then(HybridModel::from_number).ok_or_else(bad);
        }
        t.parse::<u8>().ok().and_then(HybridModel::from_number).ok_or_else(bad)
    }
}

/// Why an [`EchoPath`] cannot be used.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EchoPathError {
    /// The bulk delay is above [`MAX_DELAY_MS`].
    DelayOutOfRange(u32),
    /// The ERL is not a number within [`ERL_RANGE_DB`].
    ErlOutOfRange(f32),
    /// No such hybrid model (1..=8, d2..=d9).
    UnknownModel(String),
}

impl fmt::Display for EchoPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EchoPathError::DelayOutOfRange(d) => write!(f, "bulk delay {d} ms not in 0..={MAX_DELAY_MS} ms"),
            EchoPathError::ErlOutOfRange(e) => {
                write!(f, "ERL {e} dB not in {}..={} dB", ERL_RANGE_DB.0, ERL_RANGE_DB.1)
            }
            EchoPathError::UnknownModel(m) => write!(f, "unknown hybrid model {m:?} (1..=8 or d2..=d9)"),
        }
    }
}

impl std::error::Error for EchoPathError {}

/// One simulated echo path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoPath {
    /// Bulk delay before the hybrid's impulse response, 0 ..= 100 ms.
    pub delay_ms: u32,
    /// Echo return loss for a white signal, in dB (6, 10, ...).
    pub erl_db: f32,
    /// The hybrid's impulse response.
    pub model: HybridModel,
}

impl EchoPath {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), EchoPathError> {
        if self.delay_ms > MAX_DELAY_MS {
            return Err(EchoPathError::DelayOutOfRange(self.delay_ms));
        }
        if !(ERL_RANGE_DB.0..=ERL_RANGE_DB.1).contains(&self.erl_db) {
            // Also catches NaN.
            return Err(EchoPathError::ErlOutOfRange(self.erl_db));
        }
        Ok(())
    }

    /// The scaled impulse response (without the bulk delay): the model's
    /// taps normalised to an energy of `10^(-erl_db/10)`.
    pub fn taps(&self) -> Vec<f64> {
        let c = self.model.coefficients();
        let energy: f64 = c.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let gain = 10f64.powf(-f64::from(self.erl_db) / 20.0) / energy.sqrt();
        c.iter().map(|&v| f64::from(v) * gain).collect()
    }

    /// The loss in dB this path gives a sine at `freq_hz` (its ERL for that
    /// tone).
    pub fn loss_at(&self, freq_hz: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq_hz / crate::analysis::RATE;
        let (mut re, mut im) = (0.0, 0.0);
        for (k, h) in self.taps().iter().enumerate() {
            re += h * (w * k as f64).cos();
            im -= h * (w * k as f64).sin();
        }
        -10.0 * (re * re + im * im).log10()
    }

    /// Total delay in samples from a heard sample to the first tap of its echo.
    pub fn delay_samples(&self) -> usize {
        self.delay_ms as usize * 8
    }
}

impl fmt::Display for EchoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, bulk delay {} ms, ERL {} dB", self.model, self.delay_ms, self.erl_db)
    }
}

/// Applies an [`EchoPath`] to a stream: feed it what the phone hears, get the
/// echo to add to what the phone sends.
#[derive(Debug, Clone)]
pub struct EchoLine {
    path: EchoPath,
    taps: Vec<f64>,
    /// The last `delay + taps` heard samples, ring buffer; `pos` is where the
    /// next one goes.
    history: Vec<f64>,
    pos: usize,
}

impl EchoLine {
    /// A line with silence in its history.
    pub fn new(path: EchoPath) -> Result<EchoLine, EchoPathError> {
        path.validate()?;
        let taps = path.taps();
        let history = vec![0.0; path.delay_samples() + taps.len()];
        Ok(EchoLine { path, taps, history, pos: 0 })
    }

    /// The path this line simulates.
    pub fn path(&self) -> EchoPath {
        self.path
    }

    /// Takes one heard sample; returns the echo for the same sample time.
    pub fn push(&mut self, heard: i16) -> f64 {
        let len = self.history.len();
        self.history[self.pos] = f64::from(heard);
        // Sample heard `d` samples ago sits at pos - d (mod len).
        let d0 = self.path.delay_samples();
        let mut acc = 0.0;
        for (k, h) in self.taps.iter().enumerate() {
            let idx = (self.pos + len - d0 - k) % len;
            acc += h * self.history[idx];
        }
        self.pos = (self.pos + 1) % len;
        acc
    }

    /// Adds the echo of `heard` to `send`, sample by sample (same length;
    /// extra samples of the longer slice are ignored), saturating at 16 bits.
    pub fn add_echo(&mut self, heard: &[i16], send: &mut [i16]) {
        for (h, s) in heard.iter().zip(send.iter_mut()) {
            let e = self.push(*h);
            *s = (f64::from(*s) + e).round().clamp(-32768.0, 32767.0) as i16;
        }
    }
}

/// G.168 (2015) Annex D.2, 64 taps. Native gain 1.39E-5 (unused: [`EchoPath::erl_db`] sets the level).
const D2: [i32; 64] = [
    -436, -829, -2797, -4208, -17968, -11215, 46150, 34480,
    -10427, 9049, -1309, -6320, 390, -8191, -1751, -6051,
    -3796, -4055, -3948, -2557, -3372, -1808, -2259, -1300,
    -1098, -618, -340, -61, 323, 419, 745, 716,
    946, 880, 1014, 976, 1033, 1091, 1053, 1042,
    794, 831, 899, 716, 390, 313, 304, 304,
    73, -119, -109, -176, -359, -407, -512, -580,
    -704, -618, -685, -791, -772, -820, -839, -724,
];
/// G.168 (2015) Annex D.3, 96 taps. Native gain 1.44E-5 (unused: [`EchoPath::erl_db`] sets the level).
const D3: [i32; 96] = [
    -381, 658, 1730, -51, -3511, -1418, 7660, 8861,
    -8106, -21370, -5307, 23064, 24020, 1020, -12374, -16296,
    -19524, -7480, 13509, 17115, 13952, 13952, 97, -9326,
    -9046, -15208, -9853, -3858, -1979, 6029, 5616, 7214,
    6820, 3935, 3919, 921, 1316, -693, -759, -1517,
    -2176, -2028, -2654, -1814, -2077, -1468, -1221, -842,
    -463, -298, -68, 64, 493, 723, 789, 954,
    756, 839, 872, 1020, 789, 822, 558, 658,
    476, 377, 377, 262, 97, -68, -183, -232,
    -331, -347, -430, -314, -430, -463, -463, -414,
    -381, -479, -479, -512, -479, -397, -430, -397,
    -298, -265, -249, -216, -249, -265, -166, -232,
];
/// G.168 (2015) Annex D.4, 96 taps. Native gain 1.52E-5 (unused: [`EchoPath::erl_db`] sets the level).
const D4: [i32; 96] = [
    -448, -436, 2230, 2448, -4178, -7050, 5846, 18581,
    2322, -26261, -16249, 21637, 25649, -2267, -10311, -4693,
    -12690, -7428, 14164, 13467, 4438, 8627, 456, -11879,
    -6352, -5104, -7496, 3271, 6566, 4277, 11131, 7562,
    1475, 3728, -3525, -7301, -3101, -9269, -6146, -2553,
    -6272, 811, 124, 788, 5147, 2172, 5387, 4598,
    3535, 4004, 2311, 2150, 1017, 330, -139, -573,
    -1100, -1157, -1180, -1455, -1123, -1386, -1123, -1066,
    -1020, -1100, -1008, -1077, -1088, -917, -917, -963,
    -814, -871, -734, -642, -562, -356, -379, -345,
    -230, -233, -333, -356, -390, -310, -265, -368,
    -310, -310, -390, -482, -459, -482, -551, -573,
];
/// G.168 (2015) Annex D.5, 128 taps. Native gain 1.77E-5 (unused: [`EchoPath::erl_db`] sets the level).
const D5: [i32; 128] = [
    160, 312, -241, -415, 897, 908, -1326, -1499,
    2405, 3347, -3624, -7733, 4041, 14484, -1477, -21739,
    -4470, 25356, 11458, -19696, -11800, 5766, 789, 6633,
    14624, -6975, -17156, -187, 149, 1515, 14907, 4345,
    -7128, -2757, -10185, -7083, 6850, 3944, 6969, 8694,
    -4068, -3852, -5793, -9371, 453, 1060, 3965, 9463,
    2393, 2784, -892, -7366, -3376, -5847, -2399, 3011,
    1537, 6623, 4205, 1602, 1592, -4752, -3646, -5207,
    -5577, -501, -1174, 4041, 5647, 4628, 7252, 2123,
    2654, -881, -4113, -3244, -7289, -3830, -4600, -2508,
    431, -144, 4184, 2372, 4617, 3576, 2382, 2839,
    -404, 539, -1803, -1401, -1705, -2269, -783, -1608,
    -220, -306, 257, 615, 225, 561, 8, 344,
    127, -57, 182, 41, 203, -111, 95, -79,
    30, 84, -13, -68, -241, -68, -24, 19,
    -57, -24, 30, -68, 84, -155, -68, 19,
];
/// G.168 (2015) Annex D.6, 96 taps. Native gain 9.33E-6 (unused: [`EchoPath::erl_db`] sets the level).
const D6: [i32; 96] = [
    293, 268, 475, 460, 517, 704, 581, 879,
    573, 896, 604, 787, 561, 538, 440, 97,
    265, -385, 20, -938, -523, -1438, -1134, -1887,
    -1727, -1698, -4266, -22548, -43424, 2743, 25897, 7380,
    21499, 11983, 10400, 11667, 3889, 7241, 925, 2018,
    -821, -2068, -2236, -4283, -3406, -5022, -4039, -4842,
    -4104, -4089, -3582, -2978, -2734, -1805, -1608, -645,
    -495, 279, 471, 947, 1186, 1438, 1669, 1640,
    1901, 1687, 1803, 1543, 1566, 1342, 1163, 963,
    733, 665, 323, 221, -14, -107, -279, -379,
    -468, -513, -473, -588, -612, -652, -616, -566,
    -515, -485, -404, -344, -290, -202, -180, -123,
];
/// G.168 (2015) Annex D.7, 120 taps. Native gain 1.51E-5 (unused: [`EchoPath::erl_db`] sets the level).
const D7: [i32; 120] = [
    29, 109, -83, 198, -294, -135, -415, -202,
    -444, -337, -313, -450, -105, -503, 145, -490,
    267, -231, 340, 77, 343, 783, 158, 1341,
    195, 1798, 344, 1845, 629, 1604, 1182, 940,
    5163, 19522, 8421, -50953, -9043, 18046, -13553, 13336,
    -3471, -107, 1788, -7409, 2469, -7994, 490, -3860,
    -837, 490, -636, 3682, 1141, 5019, 2635, 5025,
    3946, 4414, 4026, 3005, 3380, 1616, 2007, 158,
    388, -1198, -1117, -2134, -2547, -2589, -3310, -2778,
    -3427, -2779, -3116, -2502, -2399, -1956, -1539, -1239,
    -570, -377, 251, 331, 964, 1177, 1449, 1564,
    1724, 1871, 1767, 1802, 1630, 1632, 1379, 1271,
    1063, 856, 711, 482, 289, 54, -137, -321,
    -490, -638, -764, -836, -800, -859, -838, -837,
    -834, -740, -673, -581, -493, -436, -327, -201,
];
/// G.168 (2015) Annex D.8, 96 taps. Native gain 2.33E-5 (unused: [`EchoPath::erl_db`] sets the level).
const D8: [i32; 96] = [
    258, -111, 337, -319, 347, -434, 192, -450,
    -108, -343, -596, -177, -1187, -52, -1781, -147,
    -1959, -326, -1601, -1389, -13620, -720, 33818, -10683,
    -6742, 12489, -9862, 8950, -1574, 758, 3526, -3118,
    2421, -8966, -4901, 11385, 18072, -14410, -7473, 19836,
    -16854, -3115, 9483, -17799, 7399, -4342, -7415, 7929,
    -10726, 6239, -2526, -1317, 5345, -4565, 6868, -2195,
    3425, 1969, -109, 3963, -1275, 3087, -892, 1239,
    2, -427, 596, -1184, 551, -1244, 141, -743,
    -415, -372, -769, -183, -785, -270, -659, -377,
    -523, -325, -245, -255, -60, 35, 218, 149,
    340, 233, 365, 303, 251, 230, 209, 179,
];
/// G.168 (2015) Annex D.9, 99 taps. Native gain 1.33E-5 (unused: [`EchoPath::erl_db`] sets the level).
const D9: [i32; 99] = [
    80, 31, 4, 42, 42, -61, -81, -64,
    -121, -102, -26, 1002, -9250, -22562, 39321, 35681,
    -35289, 25312, -1457, -229, 15659, -6786, 16791, 3860,
    2239, -28730, -11885, 33871, -176, -16421, 18173, -9669,
    -10163, 9941, -19365, 3592, -5907, -10257, 5336, -12933,
    4348, -4802, -1791, 3035, -4433, 5553, -2596, 3992,
    1255, 1450, 4079, 324, 4340, 1059, 3083, 1917,
    1756, 2478, 1027, 1871, 845, 1284, 813, 806,
    869, 471, 646, 438, 449, 432, 473, 394,
    452, 538, 717, 723, 850, 756, 753, 899,
    555, 669, 619, 500, 650, 615, 516, 492,
    427, 291, 356, 147, 107, -50, -88, -59,
    -238, -165, -183,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::amplitude;
    use crate::signals::Noise;

    fn path(model: HybridModel, delay_ms: u32, erl_db: f32) -> EchoPath {
        EchoPath { delay_ms, erl_db, model }
    }

    /// Runs `x` through a line frame by frame (80 samples, as linesim does)
    /// and returns the echo alone.
    fn echo_of(p: EchoPath, x: &[i16]) -> Vec<f64> {
        let mut line = EchoLine::new(p).unwrap();
        let mut out = Vec::with_capacity(x.len());
        for frame in x.chunks(80) {
            out.extend(frame.iter().map(|&s| line.push(s)));
        }
        out
    }

    fn white(seed: u64, n: usize, rms: f64) -> Vec<i16> {
        let mut g = Noise::new(seed);
        (0..n).map(|_| (g.gaussian() * rms).round().clamp(-32768.0, 32767.0) as i16).collect()
    }

    #[test]
    fn white_noise_comes_back_erl_weaker_within_half_a_db() {
        let x = white(7, 4 * 8000, 3000.0);
        for model in HybridModel::ALL {
            for (delay, erl) in [(0, 6.0), (20, 6.0), (50, 10.0), (100, 20.0)] {
                let p = path(model, delay, erl);
                let e = echo_of(p, &x);
                // Skip the start-up, where the history is still silent.
                let skip = p.delay_samples() + model.coefficients().len();
                let pin: f64 = x[skip..].iter().map(|&v| f64::from(v).powi(2)).sum();
                let pe: f64 = e[skip..].iter().map(|v| v * v).sum();
                let measured = 10.0 * (pin / pe).log10();
                assert!((measured - f64::from(erl)).abs() <= 0.5, "{p}: measured ERL {measured:.2} dB");
            }
        }
    }

    #[test]
    fn impulse_comes_back_after_exactly_the_bulk_delay() {
        for model in [HybridModel::D2, HybridModel::D5, HybridModel::D9] {
            for delay in [0, 1, 20, 50, 100] {
                let p = path(model, delay, 6.0);
                let taps = p.taps();
                // An impulse in the middle of frame 3, so the echo crosses frame edges.
                let at = 3 * 80 + 37;
                let mut x = vec![0i16; at + p.delay_samples() + taps.len() + 200];
                x[at] = 10000;
                let e = echo_of(p, &x);
                let start = at + delay as usize * 8;
                for (n, v) in e.iter().enumerate() {
                    let want = if n >= start && n < start + taps.len() { 10000.0 * taps[n - start] } else { 0.0 };
                    assert!((v - want).abs() < 1e-9, "{p}: sample {n}: {v} want {want}");
                }
                // The model's first tap is not zero, so the echo starts exactly there.
                assert_ne!(e[start], 0.0, "{p}");
            }
        }
    }

    #[test]
    fn tone_loss_matches_the_models_response() {
        for model in [HybridModel::D2, HybridModel::D4, HybridModel::D7] {
            let p = path(model, 20, 6.0);
            let a = amplitude(-10.0);
            let x: Vec<i16> = (0..16000)
                .map(|n| (a * (2.0 * std::f64::consts::PI * 1004.0 * n as f64 / 8000.0).sin()).round() as i16)
                .collect();
            let e = echo_of(p, &x);
            let skip = 2000;
            let pin: f64 = x[skip..].iter().map(|&v| f64::from(v).powi(2)).sum();
            let pe: f64 = e[skip..].iter().map(|v| v * v).sum();
            let measured = 10.0 * (pin / pe).log10();
            assert!((measured - p.loss_at(1004.0)).abs() < 0.1, "{p}: {measured:.2} vs {:.2}", p.loss_at(1004.0));
        }
    }

    #[test]
    fn add_echo_sums_and_saturates() {
        let p = path(HybridModel::D2, 0, 0.0);
        let mut line = EchoLine::new(p).unwrap();
        let mut reference = EchoLine::new(p).unwrap();
        let heard: Vec<i16> = (0..80).map(|n| if n % 9 == 0 { 30000 } else { -3000 }).collect();
        let mut send = vec![32_700i16; 80];
        line.add_echo(&heard, &mut send);
        let mut saturated = 0;
        for (n, s) in send.iter().enumerate() {
            let want = (32_700.0 + reference.push(heard[n])).round().clamp(-32768.0, 32767.0);
            assert_eq!(f64::from(*s), want, "sample {n}");
            saturated += usize::from(*s == 32767 || *s == -32768);
        }
        assert!(saturated > 0, "the test signal should reach the rails at 0 dB ERL");
    }

    #[test]
    fn models_by_number_and_by_clause() {
        for (i, m) in HybridModel::ALL.iter().enumerate() {
            assert_eq!(usize::from(m.number()), i + 1);
            assert_eq!(HybridModel::from_number(m.number()), Some(*m));
            assert_eq!(m.number().to_string().parse::<HybridModel>(), Ok(*m));
            assert_eq!(format!("d{}", i + 2).parse::<HybridModel>(), Ok(*m));
            assert_eq!(format!("D.{}", i + 2).parse::<HybridModel>(), Ok(*m));
        }
        assert_eq!(HybridModel::from_number(0), None);
        assert_eq!(HybridModel::from_number(9), None);
        for bad in ["0", "9", "d1", "d10", "x", ""] {
            assert!(matches!(bad.parse::<HybridModel>(), Err(EchoPathError::UnknownModel(_))), "{bad}");
        }
        // Table lengths of G.168 Annex D (as SpanDSP transcribes them).
        let lens: Vec<usize> = HybridModel::ALL.iter().map(|m| m.coefficients().len()).collect();
        assert_eq!(lens, [64, 96, 96, 128, 96, 120, 96, 99]);
        assert_eq!(HybridModel::D2.coefficients()[6], 46150);
    }

    #[test]
    fn rejects_paths_out_of_range() {
        let m = HybridModel::D2;
        assert_eq!(EchoLine::new(path(m, 101, 6.0)).unwrap_err(), EchoPathError::DelayOutOfRange(101));
        assert!(matches!(EchoLine::new(path(m, 0, -1.0)), Err(EchoPathError::ErlOutOfRange(_))));
        assert!(matches!(EchoLine::new(path(m, 0, 61.0)), Err(EchoPathError::ErlOutOfRange(_))));
        assert!(matches!(EchoLine::new(path(m, 0, f32::NAN)), Err(EchoPathError::ErlOutOfRange(_))));
        assert!(EchoLine::new(path(m, 100, 60.0)).is_ok());
        assert!(EchoLine::new(path(m, 0, 0.0)).is_ok());
    }
}
