//! linesim's own on-hook caller ID receiver: what a display phone does with
//! the audio it hears between (or before) the rings.
//!
//! - FSK at 1200 bit/s, Bell 202 (mark 1200 Hz, space 2200 Hz; Telcordia
//!   GR-30-CORE) or ITU-T V.23 (mark 1300 Hz, space 2100 Hz; ETSI EN 300 659-1
//!   / ES 200 778-1), asynchronous characters (start bit 0, 8 data bits LSB
//!   first, stop bit 1) after the channel seizure (0101...) and the mark
//!   preamble. Messages: SDMF (type 0x04) and MDMF (type 0x80), checksum
//!   verified (all bytes including the checksum sum to 0 mod 256).
//! - ETSI DTMF CLIP: `A` number `C`, or `D` absence code `C`.
//! - The ETSI dual-tone alerting signal DT-AS (2130 + 2750 Hz).
//!
//! It also has the matching senders, for linesim's central office on FXO
//! ports: [`mdmf`] builds a message, [`fsk_signal`] modulates it (channel
//! seizure, mark preamble, characters), [`dtmf_clip`] and [`dt_as`] make the
//! ETSI DTMF CLIP and alerting signals. They are written from the standards,
//! not taken from the firmware's DSP crate.
//!
//! Like [`crate::analysis`], this is independent of the firmware's DSP crate
//! on purpose: it is the instrument that checks the firmware's transmitter.
//!
//! The FSK demodulator is a quadrature discriminator: the signal is mixed down
//! by the centre frequency (1700 Hz for both standards), low-passed, and the
//! phase step between samples gives the instantaneous frequency; below the
//! centre is mark (1), above is space (0). A UART hunts for each start bit's
//! mark-to-space edge and samples the bits at their centres from there, so a
//! bit-rate error only accumulates over one character. Both standards share
//! the centre, so one demodulator serves both; which one was sent is told by
//! the mark and space frequencies measured over the message.
//!
//! Everything here is a pure function of a sample buffer (8 kHz); positions
//! are sample indices into it.

use std::f64::consts::PI;

use crate::analysis::{amplitude, dtmf_freqs, goertzel, power, RATE};

/// FSK bit rate, both standards.
pub const BIT_RATE: f64 = 1200.0;
/// Centre of both standards' mark and space frequencies.
const CENTRE_HZ: f64 = 1700.0;
/// Half-length of the discriminator's low-pass FIR (taps = 2 * HALF + 1).
const FIR_HALF: usize = 8;
/// Low-pass corner: passes the ±500 Hz deviation and its keying sidebands,
/// stops the image at -2900 Hz and beyond.
const FIR_CUTOFF_HZ: f64 = 1100.0;
/// Quietest FSK (and tone) level taken for a signal, dBm0.
const SQUELCH_DBM0: f32 = -45.0;
/// Most idle (mark) bit times allowed between two characters of one message
/// (GR-30 allows 10 marks between characters; some margin).
const MAX_CHAR_GAP_BITS: f64 = 15.0;

/// The two FSK caller ID standards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FskStandard {
    /// Bell 202: mark 1200 Hz, space 2200 Hz (Telcordia GR-30-CORE).
    Bell202,
    /// ITU-T V.23: mark 1300 Hz, space 2100 Hz (ETSI EN 300 659-1).
    V23,
}

impl FskStandard {
    pub fn mark_hz(self) -> f64 {
        match self {
            FskStandard::Bell202 => 1200.0,
            FskStandard::V23 => 1300.0,
        }
    }

    pub fn space_hz(self) -> f64 {
        match self {
            FskStandard::Bell202 => 2200.0,
            FskStandard::V23 => 2100.0,
        }
    }
}

/// How a caller ID was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Standard {
    Bell202,
    V23,
    /// ETSI DTMF CLIP.
    DtmfClip,
}

impl From<FskStandard> for Standard {
    fn from(s: FskStandard) -> Standard {
        match s {
            FskStandard::Bell202 => Standard::Bell202,
            FskStandard::V23 => Standard::V23,
        }
    }
}

/// The message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Single data message format, type 0x04.
    Sdmf,
    /// Multiple data message format, type 0x80 (also ETSI's call set-up message).
    Mdmf,
    /// DTMF CLIP digits.
    DtmfClip,
}

/// SDMF message type byte.
pub const SDMF: u8 = 0x04;
/// MDMF (ETSI: call set-up) message type byte.
pub const MDMF: u8 = 0x80;
/// MDMF parameter types.
pub const PARAM_DATE_TIME: u8 = 0x01;
pub const PARAM_NUMBER: u8 = 0x02;
pub const PARAM_NUMBER_ABSENCE: u8 = 0x04;
pub const PARAM_NAME: u8 = 0x07;
pub const PARAM_NAME_ABSENCE: u8 = 0x08;

/// The decoded fields of a caller ID message. Absence reasons are kept as
/// sent: `"O"` (out of area / unavailable) or `"P"` (private) for FSK, the
/// digits between `D` and `C` for DTMF CLIP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerId {
    /// `MMDDHHMM`.
    pub date_time: Option<String>,
    pub number: Option<String>,
    pub number_absence: Option<String>,
    pub name: Option<String>,
    pub name_absence: Option<String>,
}

/// One complete, verified caller ID message and where it was in the samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub standard: Standard,
    pub kind: MessageType,
    pub fields: CallerId,
    /// FSK: type, length, parameters, checksum. DTMF: the keys, `A`/`D` to `C`.
    pub raw: Vec<u8>,
    /// First sample of the data signal: FSK carrier start (channel seizure),
    /// first DTMF key's onset.
    pub signal_start: usize,
    /// One past the last sample of the data signal: FSK carrier end, last
    /// DTMF key's end.
    pub signal_end: usize,
    /// Start bit of the type byte (FSK); the first key's onset (DTMF).
    pub message_start: usize,
    /// End of the checksum's stop bit (FSK); the last key's end (DTMF).
    pub message_end: usize,
    /// FSK: mark and space frequencies measured over the message.
    pub mark_space_hz: Option<(f32, f32)>,
}

/// Why a framed FSK message was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum RejectReason {
    /// The bytes do not sum to 0 mod 256.
    Checksum,
    /// The samples end before the length byte's count of bytes.
    Truncated,
    /// More than 15 idle bit times between two characters.
    Gap,
    /// An MDMF parameter runs past the message, or SDMF is too short.
    Malformed,
    /// The tones belong to the other standard (measured mark, space).
    WrongStandard { mark_hz: f32, space_hz: f32 },
}

/// A framed FSK message that was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reason: RejectReason,
    /// The bytes as received (as far as there were any).
    pub raw: Vec<u8>,
    /// Start bit of the type byte.
    pub at: usize,
}

/// One received asynchronous character.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Char {
    pub byte: u8,
    /// The start bit's leading edge (fractional sample).
    pub start: f64,
    /// End of the stop bit.
    pub end: f64,
}

/// The discriminator's output: instantaneous frequency offset from 1700 Hz
/// and the baseband envelope (a sine of amplitude A gives A/2), per sample.
struct Discriminated {
    freq: Vec<f64>,
    env: Vec<f64>,
}

fn lowpass_taps() -> Vec<f64> {
    let n = 2 * FIR_HALF + 1;
    let wc = 2.0 * PI * FIR_CUTOFF_HZ / RATE;
    let mut h: Vec<f64> = (0..n)
        .map(|i| {
            let k = i as f64 - FIR_HALF as f64;
            let sinc = if k == 0.0 { wc / PI } else { (wc * k).sin() / (PI * k) };
            let hamming = 0.54 - 0.46 * (2.0 * PI * i as f64 / (n - 1) as f64).cos();
            sinc * hamming
        })
        .collect();
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= sum);
    h
}

fn discriminate(x: &[i16]) -> Discriminated {
    let w0 = 2.0 * PI * CENTRE_HZ / RATE;
    let mixed: Vec<(f64, f64)> = x
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let ph = w0 * n as f64;
            let v = f64::from(s);
            (v * ph.cos(), -v * ph.sin())
        })
        .collect();
    let h = lowpass_taps();
    // Zero-phase: output n is centred on input n.
    let base: Vec<(f64, f64)> = (0..x.len())
        .map(|n| {
            let (mut re, mut im) = (0.0, 0.0);
            for (k, &hk) in h.iter().enumerate() {
                let Some(i) = (n + k).checked_sub(FIR_HALF) else {
                    continue;
                };
                if let Some(&(a, b)) = mixed.get(i) {
                    re += hk * a;
                    im += hk * b;
                }
            }
            (re, im)
        })
        .collect();
    let mut freq = vec![0.0; x.len()];
    for n in 1..x.len() {
        let (a, b) = base[n];
        let (c, d) = base[n - 1];
        // arg(z[n] * conj(z[n-1]))
        let re = a * c + b * d;
        let im = b * c - a * d;
        freq[n] = im.atan2(re) * RATE / (2.0 * PI);
    }
    let env = base.iter().map(|&(a, b)| (a * a + b * b).sqrt()).collect();
    Discriminated { freq, env }
}

/// The baseband envelope of a sine at the squelch level.
fn squelch_env() -> f64 {
    amplitude(SQUELCH_DBM0) / 2.0
}

/// Mean discriminator output over the centre of the bit at `c`.
fn bit_freq(d: &Discriminated, c: f64) -> Option<f64> {
    let i = c.round() as isize;
    if i < 2 || i as usize + 2 >= d.freq.len() {
        return None;
    }
    let i = i as usize;
    Some(d.freq[i - 2..=i + 2].iter().sum::<f64>() / 5.0)
}

/// UART over the discriminator output: characters with their positions.
fn uart(d: &Discriminated, bit_samples: f64) -> Vec<Char> {
    let squelch = squelch_env();
    let mut out = Vec::new();
    let mut n = 1;
    let len = d.freq.len();
    while n < len {
        let edge = d.freq[n - 1] <= 0.0 && d.freq[n] > 0.0 && d.env[n] > squelch;
        if !edge {
            n += 1;
            continue;
        }
        let (a, b) = (d.freq[n - 1], d.freq[n]);
        let t0 = (n - 1) as f64 + a / (a - b);
        let at = |k: f64| bit_freq(d, t0 + (k + 0.5) * bit_samples);
        let Some(start) = at(0.0) else { break };
        if start <= 0.0 {
            n += 1;
            continue;
        }
        let mut byte = 0u8;
        let mut complete = true;
        for i in 0..8 {
            match at(1.0 + i as f64) {
                Some(f) => byte |= u8::from(f < 0.0) << i,
                None => complete = false,
            }
        }
        let stop = at(9.0);
        if !complete || stop.is_none() {
            break;
        }
        let stop_centre = t0 + 9.5 * bit_samples;
        let env_ok = d.env.get(stop_centre.round() as usize).is_some_and(|&e| e > squelch);
        if stop.is_some_and(|f| f < 0.0) && env_ok {
            out.push(Char { byte, start: t0, end: t0 + 10.0 * bit_samples });
            n = stop_centre as usize;
        } else {
            // Framing error: hunt again from just after this edge.
            n += 1;
        }
    }
    out
}

/// The asynchronous characters in `samples` (1200 bit/s, either standard).
pub fn fsk_chars(samples: &[i16]) -> Vec<Char> {
    uart(&discriminate(samples), RATE / BIT_RATE)
}

/// Mean mark and space frequencies over `chars`: bit centres whose
/// neighbours carry the same bit (the filter smooths single bits).
fn measure_tones(d: &Discriminated, chars: &[Char], bit_samples: f64) -> (f64, f64) {
    let (mut m, mut mn, mut s, mut sn) = (0.0, 0, 0.0, 0);
    let (mut m_all, mut mn_all, mut s_all, mut sn_all) = (0.0, 0, 0.0, 0);
    for c in chars {
        let mut bits = [false; 10];
        bits[9] = true;
        for i in 0..8 {
            bits[i + 1] = (c.byte >> i) & 1 == 1;
        }
        for k in 0..10 {
            let Some(f) = bit_freq(d, c.start + (k as f64 + 0.5) * bit_samples) else {
                continue;
            };
            let steady = k > 0 && k < 9 && bits[k - 1] == bits[k] && bits[k + 1] == bits[k];
            if bits[k] {
                m_all += f;
                mn_all += 1;
                if steady {
                    m += f;
                    mn += 1;
                }
            } else {
                s_all += f;
                sn_all += 1;
                if steady {
                    s += f;
                    sn += 1;
                }
            }
        }
    }
    let mean = |a: f64, n: usize, b: f64, nb: usize| {
        if n > 0 {
            a / n as f64
        } else {
            b / nb.max(1) as f64
        }
    };
    (CENTRE_HZ + mean(m, mn, m_all, mn_all), CENTRE_HZ + mean(s, sn, s_all, sn_all))
}

/// Smoothed power (2 ms, centred) of `x` around sample `n`.
fn local_power(x: &[i16], n: usize) -> f64 {
    const HALF: usize = 8;
    let lo = n.saturating_sub(HALF);
    let hi = (n + HALF).min(x.len());
    power(&x[lo..hi])
}

/// The edges of the burst of signal that holds `[from, to)`: where the 2 ms
/// power falls below half the burst's median power (the centred window is
/// half full at an edge).
pub fn burst_edges(x: &[i16], from: usize, to: usize) -> (usize, usize) {
    let to = to.min(x.len());
    if from >= to {
        return (from, to);
    }
    let mut p: Vec<f64> = (from..to).step_by(8).map(|n| local_power(x, n)).collect();
    p.sort_by(f64::total_cmp);
    let thresh = p[p.len() / 2] / 2.0;
    let mut start = from;
    while start > 0 && local_power(x, start - 1) > thresh {
        start -= 1;
    }
    let mut end = to;
    while end < x.len() && local_power(x, end) > thresh {
        end += 1;
    }
    (start, end)
}

fn text(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// The fields of an SDMF or MDMF message (`raw` without type, length, checksum).
fn parse_fields(kind: MessageType, payload: &[u8]) -> Option<CallerId> {
    let mut f = CallerId::default();
    match kind {
        MessageType::Sdmf => {
            if payload.len() < 9 {
                return None;
            }
            f.date_time = Some(text(&payload[..8]));
            let rest = &payload[8..];
            if rest == b"O" || rest == b"P" {
                f.number_absence = Some(text(rest));
            } else {
                f.number = Some(text(rest));
            }
        }
        MessageType::Mdmf => {
            let mut i = 0;
            while i < payload.len() {
                let t = payload[i];
                let len = usize::from(*payload.get(i + 1)?);
                let v = payload.get(i + 2..i + 2 + len)?;
                let s = Some(text(v));
                match t {
                    PARAM_DATE_TIME => f.date_time = s,
                    PARAM_NUMBER => f.number = s,
                    PARAM_NUMBER_ABSENCE => f.number_absence = s,
                    PARAM_NAME => f.name = s,
                    PARAM_NAME_ABSENCE => f.name_absence = s,
                    _ => {}
                }
                i += 2 + len;
            }
        }
        MessageType::DtmfClip => return None,
    }
    Some(f)
}

/// Every framed SDMF/MDMF message in `samples` sent with `standard`, accepted
/// or rejected, in order. A frame starts at a character 0x04 or 0x80.
pub fn decode_fsk_frames(samples: &[i16], standard: FskStandard) -> Vec<Result<Message, Rejected>> {
    fsk_frames(samples, Some(standard))
}

/// [`decode_fsk_frames`]; `None`: either standard, told by the tones.
fn fsk_frames(samples: &[i16], want: Option<FskStandard>) -> Vec<Result<Message, Rejected>> {
    let d = discriminate(samples);
    let bit = RATE / BIT_RATE;
    let chars = uart(&d, bit);
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let kind = match chars[i].byte {
            SDMF => MessageType::Sdmf,
            MDMF => MessageType::Mdmf,
            _ => {
                i += 1;
                continue;
            }
        };
        let at = chars[i].start.round() as usize;
        let Some(len) = chars.get(i + 1).map(|c| usize::from(c.byte)) else {
            out.push(Err(Rejected { reason: RejectReason::Truncated, raw: vec![chars[i].byte], at }));
            i += 1;
            continue;
        };
        let frame = &chars[i..chars.len().min(i + len + 3)];
        let raw: Vec<u8> = frame.iter().map(|c| c.byte).collect();
        let reject = |reason| Err(Rejected { reason, raw: raw.clone(), at });
        if frame.len() < len + 3 {
            // Maybe noise that looked like a type byte: a real message may follow.
            out.push(reject(RejectReason::Truncated));
            i += 1;
            continue;
        }
        if frame.windows(2).any(|w| w[1].start - w[0].end > MAX_CHAR_GAP_BITS * bit) {
            out.push(reject(RejectReason::Gap));
            i += 1;
            continue;
        }
        if raw.iter().fold(0u8, |a, &b| a.wrapping_add(b)) != 0 {
            out.push(reject(RejectReason::Checksum));
            i += 1;
            continue;
        }
        let Some(fields) = parse_fields(kind, &raw[2..raw.len() - 1]) else {
            // The checksum vouches for the framing: skip the whole frame.
            out.push(reject(RejectReason::Malformed));
            i += len + 3;
            continue;
        };
        let (mark, space) = measure_tones(&d, frame, bit);
        let dist = |s: FskStandard| (mark - s.mark_hz()).abs() + (space - s.space_hz()).abs();
        let seen =
            if dist(FskStandard::Bell202) <= dist(FskStandard::V23) { FskStandard::Bell202 } else { FskStandard::V23 };
        let (mark_hz, space_hz) = (mark as f32, space as f32);
        if want.is_some_and(|w| w != seen) {
            out.push(reject(RejectReason::WrongStandard { mark_hz, space_hz }));
            i += len + 3;
            continue;
        }
        let message_end = frame[frame.len() - 1].end.round() as usize;
        let (signal_start, signal_end) = burst_edges(samples, at, message_end.min(samples.len()));
        out.push(Ok(Message {
            standard: seen.into(),
            kind,
            fields,
            raw,
            signal_start,
            signal_end,
            message_start: at,
            message_end,
            mark_space_hz: Some((mark_hz, space_hz)),
        }));
        i += len + 3;
    }
    out
}

/// The verified SDMF/MDMF messages in `samples` sent with `standard`.
pub fn decode_fsk(samples: &[i16], standard: FskStandard) -> Vec<Message> {
    decode_fsk_frames(samples, standard).into_iter().filter_map(Result::ok).collect()
}

/// A tone burst found in the samples: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    pub start: usize,
    pub end: usize,
}

impl Burst {
    pub fn duration_ms(&self) -> f64 {
        (self.end - self.start) as f64 * 1000.0 / RATE
    }
}

/// A DTMF key heard, with its tone's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfKey {
    pub key: char,
    pub burst: Burst,
}

/// Shares of the window's power at each of `freqs` (1.0: all of it is that sine).
fn shares(x: &[f64], freqs: &[f64]) -> Vec<f64> {
    let total: f64 = x.iter().map(|v| v * v).sum();
    if total <= 0.0 {
        return vec![0.0; freqs.len()];
    }
    let n = x.len() as f64;
    freqs.iter().map(|&f| 2.0 * goertzel(x, f) / n / total).collect()
}

/// Runs of windows (`len` samples every `hop`) that `classify` gives the same
/// `Some` value, at least `min_windows` long: (value, first window start,
/// last window end).
fn runs<T: PartialEq + Copy>(
    x: &[i16],
    len: usize,
    hop: usize,
    min_windows: usize,
    classify: impl Fn(&[f64]) -> Option<T>,
) -> Vec<(T, usize, usize)> {
    let squelch = {
        let a = amplitude(SQUELCH_DBM0);
        a * a / 2.0
    };
    let mut out = Vec::new();
    let mut cur: Option<(T, usize, usize, usize)> = None;
    let mut pos = 0;
    while pos + len <= x.len() {
        let w = &x[pos..pos + len];
        let v = if power(w) > squelch {
            let f: Vec<f64> = w.iter().map(|&s| f64::from(s)).collect();
            classify(&f)
        } else {
            None
        };
        match (&mut cur, v) {
            (Some(c), Some(v)) if c.0 == v => {
                c.2 = pos + len;
                c.3 += 1;
            }
            (_, v) => {
                if let Some((t, s, e, n)) = cur.take() {
                    if n >= min_windows {
                        out.push((t, s, e));
                    }
                }
                cur = v.map(|v| (v, pos, pos + len, 1));
            }
        }
        pos += hop;
    }
    if let Some((t, s, e, n)) = cur {
        if n >= min_windows {
            out.push((t, s, e));
        }
    }
    out
}

/// DTMF keys in `samples`: 20 ms windows every 10 ms; a key needs one row and
/// one column tone holding 70 % of the power, each 6 dB above the other
/// frequencies of its group, twist within 8 dB, for two windows in a row.
pub fn dtmf_keys(samples: &[i16]) -> Vec<DtmfKey> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [[char; 4]; 4] =
        [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];
    let best = |s: &[f64]| -> Option<(usize, f64)> {
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        (s[idx[0]] >= 4.0 * s[idx[1]]).then_some((idx[0], s[idx[0]]))
    };
    let classify = |w: &[f64]| -> Option<char> {
        let (r, rs) = best(&shares(w, &ROWS))?;
        let (c, cs) = best(&shares(w, &COLS))?;
        let twist_ok = rs.max(cs) <= 6.3 * rs.min(cs);
        (rs + cs >= 0.7 && twist_ok).then_some(KEYS[r][c])
    };
    runs(samples, 160, 80, 2, classify)
        .into_iter()
        .map(|(key, s, e)| {
            debug_assert!(dtmf_freqs(key).is_some());
            let (start, end) = burst_edges(samples, s + 40, (e - 40).max(s + 41));
            DtmfKey { key, burst: Burst { start, end } }
        })
        .collect()
}

/// The DTMF key in one 20 ms window (160 samples), by the criteria of
/// [`dtmf_keys`] (squelch, 70 % of the power, 6 dB above the group, twist
/// within 8 dB), or `None`.
pub fn dtmf_window_key(w: &[i16]) -> Option<char> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [[char; 4]; 4] =
        [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];
    let squelch = {
        let a = amplitude(SQUELCH_DBM0);
        a * a / 2.0
    };
    if w.is_empty() || power(w) <= squelch {
        return None;
    }
    let x: Vec<f64> = w.iter().map(|&s| f64::from(s)).collect();
    let best = |s: &[f64]| -> Option<(usize, f64)> {
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        (s[idx[0]] >= 4.0 * s[idx[1]]).then_some((idx[0], s[idx[0]]))
    };
    let (r, rs) = best(&shares(&x, &ROWS))?;
    let (c, cs) = best(&shares(&x, &COLS))?;
    let twist_ok = rs.max(cs) <= 6.3 * rs.min(cs);
    (rs + cs >= 0.7 && twist_ok).then_some(KEYS[r][c])
}

/// A streaming DTMF receiver fed 10 ms frames (a central office collecting
/// dialled digits): each frame is judged with the frame before it (20 ms
/// window); a key counts once it held two windows in a row, and the next
/// key needs two windows without it first.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    prev: Vec<i16>,
    /// Key of the last window and how many windows in a row it held.
    run: Option<(char, usize)>,
    /// The key reported and not yet released.
    held: Option<char>,
    gone: usize,
}

impl Default for DtmfReceiver {
    fn default() -> Self {
        DtmfReceiver::new()
    }
}

impl DtmfReceiver {
    pub fn new() -> Self {
        DtmfReceiver { prev: Vec::new(), run: None, held: None, gone: 0 }
    }

    /// Feeds one frame; returns a key at its onset (once per key press).
    pub fn push_frame(&mut self, frame: &[i16]) -> Option<char> {
        let mut w = std::mem::take(&mut self.prev);
        w.extend_from_slice(frame);
        let key = if w.len() > frame.len() { dtmf_window_key(&w) } else { None };
        self.prev = frame.to_vec();
        self.run = match (self.run, key) {
            (Some((k, n)), Some(c)) if k == c => Some((k, n + 1)),
            (_, Some(c)) => Some((c, 1)),
            (_, None) => None,
        };
        if let Some(h) = self.held {
            if key == Some(h) {
                self.gone = 0;
                return None;
            }
            self.gone += 1;
            if self.gone < 2 {
                return None;
            }
            self.held = None;
        }
        match self.run {
            Some((k, n)) if n >= 2 => {
                self.held = Some(k);
                self.gone = 0;
                Some(k)
            }
            _ => None,
        }
    }
}

/// Caller ID FSK level sent by [`fsk_signal`] (GR-30: -13.5 dBm nominal).
pub const FSK_SEND_DBM0: f32 = -13.5;
/// Channel seizure bits (GR-30: 300; ETSI: 96..315).
pub const SEIZURE_BITS: usize = 300;
/// Mark bits before the message: Bell 202 180 (GR-30), V.23 80 (ETSI 55 +/- 25... 80 here).
pub fn preamble_mark_bits(standard: FskStandard) -> usize {
    match standard {
        FskStandard::Bell202 => 180,
        FskStandard::V23 => 80,
    }
}

/// An MDMF (ETSI: call set-up, type 0x80) message: type, length, the
/// parameters (date/time `MMDDHHMM` if given, number or absence `O`, name
/// if not empty), checksum. Fields longer than 255 bytes are cut.
pub fn mdmf(number: &str, name: &str, date_time: Option<&str>) -> Vec<u8> {
    let mut params = Vec::new();
    let mut param = |t: u8, v: &[u8]| {
        let v = &v[..v.len().min(255)];
        params.push(t);
        params.push(v.len() as u8);
        params.extend_from_slice(v);
    };
    if let Some(d) = date_time {
        param(PARAM_DATE_TIME, d.as_bytes());
    }
    if number.is_empty() {
        param(PARAM_NUMBER_ABSENCE, b"O");
    } else {
        param(PARAM_NUMBER, number.as_bytes());
    }
    if !name.is_empty() {
        param(PARAM_NAME, name.as_bytes());
    }
    params.truncate(255);
    let mut out = vec![MDMF, params.len() as u8];
    out.extend_from_slice(&params);
    let sum = out.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    out.push(sum.wrapping_neg());
    out
}

/// Continuous-phase FSK at 1200 bit/s of `bytes` as asynchronous characters
/// (start 0, 8 bits LSB first, stop 1), after `seizure_bits` of 0101... and
/// `mark_bits` of mark, with two mark bits after the last character, at
/// `level_dbm0`.
pub fn fsk_modulate(
    bytes: &[u8],
    standard: FskStandard,
    seizure_bits: usize,
    mark_bits: usize,
    level_dbm0: f32,
) -> Vec<i16> {
    let mut bits: Vec<bool> = (0..seizure_bits).map(|i| i % 2 == 1).collect();
    bits.extend(std::iter::repeat_n(true, mark_bits));
    for &b in bytes {
        bits.push(false);
        bits.extend((0..8).map(|i| (b >> i) & 1 == 1));
        bits.push(true);
    }
    bits.extend([true, true]);
    let n = (bits.len() as f64 * RATE / BIT_RATE).round() as usize;
    let amp = amplitude(level_dbm0);
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let bit = bits[((i as f64 * BIT_RATE / RATE) as usize).min(bits.len() - 1)];
            let f = if bit { standard.mark_hz() } else { standard.space_hz() };
            let v = amp * phase.sin();
            phase = (phase + 2.0 * PI * f / RATE) % (2.0 * PI);
            v.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// A whole on-hook caller ID data signal: [`mdmf`] modulated with the
/// standard's preamble at [`FSK_SEND_DBM0`].
pub fn fsk_signal(standard: FskStandard, number: &str, name: &str, date_time: Option<&str>) -> Vec<i16> {
    let msg = mdmf(number, name, date_time);
    fsk_modulate(&msg, standard, SEIZURE_BITS, preamble_mark_bits(standard), FSK_SEND_DBM0)
}

/// DTMF CLIP keys: 70 ms on, 70 ms off, -7 dBm0 per tone.
pub const CLIP_ON_MS: u32 = 70;
pub const CLIP_OFF_MS: u32 = 70;

/// ETSI DTMF CLIP: `A` number `C`, or `D` `00` `C` (number unavailable)
/// when `number` is empty. `Err(c)`: `c` is not a DTMF key.
pub fn dtmf_clip(number: &str) -> Result<Vec<i16>, char> {
    let keys = if number.is_empty() { "D00C".to_string() } else { format!("A{number}C") };
    if let Some(c) = number.chars().find(|c| !matches!(c, '0'..='9' | '*' | '#')) {
        return Err(c);
    }
    crate::analysis::dtmf(&keys, CLIP_ON_MS, CLIP_OFF_MS, -7.0)
}

/// The ETSI dual-tone alerting signal, `ms` long, each tone at `level_dbm0`.
pub fn dt_as(ms: u32, level_dbm0: f32) -> Vec<i16> {
    let mut out = Vec::new();
    crate::analysis::push_tones(&mut out, &[(DT_AS_HZ[0], level_dbm0), (DT_AS_HZ[1], level_dbm0)], ms);
    out
}

/// Longest pause between two keys of one DTMF CLIP message, samples (1 s).
const MAX_DTMF_GAP: usize = 8000;

/// ETSI DTMF CLIP messages in `samples`: `A` digits `C` (number) or `D`
/// digits `C` (reason for absence); `#` is taken as a terminator too.
pub fn decode_dtmf_clip(samples: &[i16]) -> Vec<Message> {
    let keys = dtmf_keys(samples);
    let mut out = Vec::new();
    let mut cur: Vec<DtmfKey> = Vec::new();
    for k in keys {
        if let Some(last) = cur.last() {
            if k.burst.start - last.burst.end > MAX_DTMF_GAP {
                cur.clear();
            }
        }
        match k.key {
            'A' | 'D' => cur = vec![k],
            'C' | '#' if !cur.is_empty() => {
                cur.push(k);
                let raw: Vec<u8> = cur.iter().map(|k| k.key as u8).collect();
                let digits = text(&raw[1..raw.len() - 1]);
                let mut fields = CallerId::default();
                if raw[0] == b'A' {
                    fields.number = Some(digits);
                } else {
                    fields.number_absence = Some(digits);
                }
                let (start, end) = (cur[0].burst.start, k.burst.end);
                out.push(Message {
                    standard: Standard::DtmfClip,
                    kind: MessageType::DtmfClip,
                    fields,
                    raw,
                    signal_start: start,
                    signal_end: end,
                    message_start: start,
                    message_end: end,
                    mark_space_hz: None,
                });
                cur.clear();
            }
            _ if !cur.is_empty() => cur.push(k),
            _ => {}
        }
    }
    out
}

/// DT-AS frequencies (ETSI EN 300 659-1).
pub const DT_AS_HZ: [f64; 2] = [2130.0, 2750.0];

/// Dual-tone alerting signals in `samples`: 10 ms windows every 5 ms where
/// both tones hold 70 % of the power and each at least a quarter of it, for
/// 30 ms or more; edges to the sample from the signal's power.
pub fn detect_dt_as(samples: &[i16]) -> Vec<Burst> {
    let classify = |w: &[f64]| {
        let s = shares(w, &DT_AS_HZ);
        (s[0] + s[1] >= 0.7 && s[0] >= 0.25 && s[1] >= 0.25).then_some(())
    };
    runs(samples, 80, 40, 5, classify)
        .into_iter()
        .map(|((), s, e)| {
            let (start, end) = burst_edges(samples, s + 20, (e - 20).max(s + 21));
            Burst { start, end }
        })
        .collect()
}

/// Every caller ID message in `samples`, any standard, by start.
pub fn decode(samples: &[i16]) -> Vec<Message> {
    let mut all: Vec<Message> = fsk_frames(samples, None).into_iter().filter_map(Result::ok).collect();
    all.extend(decode_dtmf_clip(samples));
    all.sort_by_key(|m| m.message_start);
    all
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::analysis::{push_tones, DBM0_PEAK};
    use crate::signals::Noise;

    /// Lead-in silence before every test transmission, samples.
    const LEAD: usize = 1600;

    /// A message with its type, length and checksum.
    pub(crate) fn message(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, payload.len() as u8];
        m.extend_from_slice(payload);
        let sum = m.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        m.push(sum.wrapping_neg());
        m
    }

    pub(crate) fn sdmf(date_time: &str, number: &str) -> Vec<u8> {
        message(SDMF, format!("{date_time}{number}").as_bytes())
    }

    pub(crate) fn mdmf(params: &[(u8, &str)]) -> Vec<u8> {
        let mut p = Vec::new();
        for (t, v) in params {
            p.push(*t);
            p.push(v.len() as u8);
            p.extend_from_slice(v.as_bytes());
        }
        message(MDMF, &p)
    }

    /// Async framing: start 0, 8 data bits LSB first, stop 1.
    fn framed(bytes: &[u8]) -> Vec<bool> {
        let mut bits = Vec::new();
        for &b in bytes {
            bits.push(false);
            bits.extend((0..8).map(|i| (b >> i) & 1 == 1));
            bits.push(true);
        }
        bits
    }

    /// Phase-continuous FSK of `bits` at `BIT_RATE * rate`, `level_dbm0`.
    fn modulate(bits: &[bool], std: FskStandard, rate: f64, level_dbm0: f32) -> Vec<i16> {
        let per_bit = RATE / (BIT_RATE * rate);
        let n = (bits.len() as f64 * per_bit).round() as usize;
        let a = amplitude(level_dbm0);
        let mut phase = 0.0f64;
        (0..n)
            .map(|i| {
                let bit = bits[((i as f64 / per_bit) as usize).min(bits.len() - 1)];
                let f = if bit { std.mark_hz() } else { std.space_hz() };
                let v = a * phase.sin();
                phase = (phase + 2.0 * PI * f / RATE) % (2.0 * PI);
                v.round() as i16
            })
            .collect()
    }

    /// The FSK alone: 300 bits of channel seizure, 180 marks, the message,
    /// 4 marks, at -13 dBm0.
    pub(crate) fn burst(msg: &[u8], std: FskStandard, rate: f64) -> Vec<i16> {
        let mut bits: Vec<bool> = (0..300).map(|i| i % 2 == 1).collect();
        bits.extend(std::iter::repeat_n(true, 180));
        bits.extend(framed(msg));
        bits.extend([true; 4]);
        modulate(&bits, std, rate, -13.0)
    }

    /// A whole transmission: LEAD silence, 300 bits of channel seizure, 180
    /// marks, the message, 4 marks, 200 ms silence. Returns the samples and
    /// the carrier's [start, end).
    fn transmission(msg: &[u8], std: FskStandard, rate: f64) -> (Vec<i16>, usize, usize) {
        let fsk = burst(msg, std, rate);
        let mut x = vec![0i16; LEAD];
        x.extend_from_slice(&fsk);
        x.resize(x.len() + 1600, 0);
        (x, LEAD, LEAD + fsk.len())
    }

    fn add_noise(x: &mut [i16], level_dbm0: f32, seed: u64) {
        let mut g = Noise::new(seed);
        let sigma = DBM0_PEAK / std::f64::consts::SQRT_2 * 10f64.powf(f64::from(level_dbm0) / 20.0);
        for s in x.iter_mut() {
            *s = (f64::from(*s) + g.gaussian() * sigma).round().clamp(-32768.0, 32767.0) as i16;
        }
    }

    #[test]
    fn every_byte_survives_both_standards_and_a_one_percent_rate_error() {
        let bytes: Vec<u8> = (0..=255).collect();
        for std in [FskStandard::Bell202, FskStandard::V23] {
            for rate in [0.99, 1.0, 1.01] {
                let mut bits = vec![true; 40];
                bits.extend(framed(&bytes));
                bits.extend([true; 10]);
                let x = modulate(&bits, std, rate, -20.0);
                let got: Vec<u8> = fsk_chars(&x).iter().map(|c| c.byte).collect();
                assert_eq!(got, bytes, "{std:?} rate {rate}");
            }
        }
    }

    #[test]
    fn sdmf_bell202_fields_tones_and_carrier_edges() {
        let msg = sdmf("01021530", "5551234");
        let (x, start, end) = transmission(&msg, FskStandard::Bell202, 1.0);
        let got = decode_fsk(&x, FskStandard::Bell202);
        assert_eq!(got.len(), 1, "{got:?}");
        let m = &got[0];
        assert_eq!((m.standard, m.kind), (Standard::Bell202, MessageType::Sdmf));
        assert_eq!(m.raw, msg);
        let want =
            CallerId { date_time: Some("01021530".into()), number: Some("5551234".into()), ..CallerId::default() };
        assert_eq!(m.fields, want);
        let (mark, space) = m.mark_space_hz.unwrap();
        assert!((mark - 1200.0).abs() < 5.0 && (space - 2200.0).abs() < 5.0, "{mark} {space}");
        // Carrier edges within 1 ms; the message starts after 480 bits.
        assert!(m.signal_start.abs_diff(start) <= 8, "start {} want {start}", m.signal_start);
        assert!(m.signal_end.abs_diff(end) <= 8, "end {} want {end}", m.signal_end);
        let msg_start = start as f64 + 480.0 * RATE / BIT_RATE;
        assert!((m.message_start as f64 - msg_start).abs() <= 3.0, "{} vs {msg_start}", m.message_start);
        let msg_end = msg_start + (msg.len() * 10) as f64 * RATE / BIT_RATE;
        assert!((m.message_end as f64 - msg_end).abs() <= 3.0, "{} vs {msg_end}", m.message_end);
        // The V.23 receiver does not take Bell 202 tones.
        assert!(decode_fsk(&x, FskStandard::V23).is_empty());
        let frames = decode_fsk_frames(&x, FskStandard::V23);
        assert!(
            frames.iter().any(|f| matches!(f, Err(Rejected { reason: RejectReason::WrongStandard { .. }, .. }))),
            "{frames:?}"
        );
        assert_eq!(decode(&x), got);
    }

    #[test]
    fn mdmf_in_both_standards_with_noise_and_rate_offsets() {
        let msg = mdmf(&[(PARAM_DATE_TIME, "12251030"), (PARAM_NUMBER, "0123456789"), (PARAM_NAME, "DOE JOHN")]);
        let mut seed = 1;
        for std in [FskStandard::Bell202, FskStandard::V23] {
            for rate in [0.99, 1.0, 1.01] {
                let (mut x, start, _) = transmission(&msg, std, rate);
                // -13 dBm0 FSK over -38 dBm0 white noise: 25 dB SNR.
                add_noise(&mut x, -38.0, seed);
                seed += 1;
                let got = decode(&x);
                assert_eq!(got.len(), 1, "{std:?} {rate}: {got:?}");
                let m = &got[0];
                assert_eq!(m.standard, Standard::from(std), "{std:?} {rate}");
                assert_eq!(m.kind, MessageType::Mdmf);
                assert_eq!(m.raw, msg);
                assert_eq!(m.fields.number.as_deref(), Some("0123456789"));
                assert_eq!(m.fields.name.as_deref(), Some("DOE JOHN"));
                assert_eq!(m.fields.date_time.as_deref(), Some("12251030"));
                assert!(m.signal_start.abs_diff(start) <= 16, "{std:?} {rate}: {} vs {start}", m.signal_start);
                assert_eq!(decode_fsk(&x, std), got);
            }
        }
    }

    #[test]
    fn a_wrong_checksum_is_rejected_and_the_next_message_still_decodes() {
        let mut bad = mdmf(&[(PARAM_NUMBER, "5551234")]);
        let last = bad.len() - 1;
        bad[last] = bad[last].wrapping_add(1);
        let good = sdmf("03041200", "P");
        let (mut x, _, _) = transmission(&bad, FskStandard::V23, 1.0);
        let (y, _, _) = transmission(&good, FskStandard::V23, 1.0);
        x.extend(y);
        let frames = decode_fsk_frames(&x, FskStandard::V23);
        assert!(
            frames.contains(&Err(Rejected {
                reason: RejectReason::Checksum,
                raw: bad.clone(),
                at: frames_at(&frames)
            })),
            "{frames:?}"
        );
        let got = decode_fsk(&x, FskStandard::V23);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].raw, good);
        assert_eq!(got[0].fields.number_absence.as_deref(), Some("P"));
        assert_eq!(got[0].fields.number, None);
    }

    /// Where the first checksum rejection is.
    fn frames_at(frames: &[Result<Message, Rejected>]) -> usize {
        frames
            .iter()
            .find_map(|f| match f {
                Err(r) if r.reason == RejectReason::Checksum => Some(r.at),
                _ => None,
            })
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn mdmf_reasons_for_absence_and_malformed_parameters() {
        let msg = mdmf(&[(PARAM_DATE_TIME, "07040900"), (PARAM_NUMBER_ABSENCE, "O"), (PARAM_NAME_ABSENCE, "P")]);
        let (x, _, _) = transmission(&msg, FskStandard::Bell202, 1.0);
        let m = &decode_fsk(&x, FskStandard::Bell202)[0];
        assert_eq!(m.fields.number_absence.as_deref(), Some("O"));
        assert_eq!(m.fields.name_absence.as_deref(), Some("P"));
        assert_eq!((m.fields.number.as_ref(), m.fields.name.as_ref()), (None, None));
        // A parameter claiming more bytes than the message has.
        let broken = message(MDMF, &[PARAM_NUMBER, 9, b'1', b'2']);
        let (x, _, _) = transmission(&broken, FskStandard::Bell202, 1.0);
        let frames = decode_fsk_frames(&x, FskStandard::Bell202);
        assert!(matches!(frames.as_slice(), [Err(Rejected { reason: RejectReason::Malformed, .. })]), "{frames:?}");
    }

    #[test]
    fn dtmf_clip_number_and_absence() {
        let mut x = vec![0i16; LEAD];
        x.extend(crate::analysis::dtmf("A01234567890C", 60, 60, -10.0).unwrap());
        let second = x.len() + 8000;
        x.resize(second, 0);
        x.extend(crate::analysis::dtmf("D1C", 70, 70, -10.0).unwrap());
        add_noise(&mut x, -40.0, 9);
        let got = decode_dtmf_clip(&x);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].fields.number.as_deref(), Some("01234567890"));
        assert_eq!(got[0].raw, b"A01234567890C");
        assert_eq!((got[0].standard, got[0].kind), (Standard::DtmfClip, MessageType::DtmfClip));
        assert!(got[0].signal_start.abs_diff(LEAD) <= 8, "{}", got[0].signal_start);
        // 13 keys of 60 ms with 60 ms gaps: the last tone ends 1500 ms after the first starts.
        let end = LEAD + (13 * 120 - 60) * 8;
        assert!(got[0].signal_end.abs_diff(end) <= 8, "{} vs {end}", got[0].signal_end);
        assert_eq!(got[1].fields.number_absence.as_deref(), Some("1"));
        assert_eq!(got[1].fields.number, None);
        assert!(got[1].signal_start.abs_diff(second) <= 8);
        // Digits without the A...C frame are no message.
        assert!(decode_dtmf_clip(&crate::analysis::dtmf("5551234", 60, 60, -10.0).unwrap()).is_empty());
    }

    #[test]
    fn dt_as_is_found_and_timed_and_nothing_else_is_taken_for_it() {
        let mut x = vec![0i16; 2400];
        push_tones(&mut x, &[(DT_AS_HZ[0], -15.0), (DT_AS_HZ[1], -15.0)], 100);
        x.resize(x.len() + 400, 0);
        let msg = mdmf(&[(PARAM_NUMBER, "12345")]);
        let (y, _, _) = transmission(&msg, FskStandard::V23, 1.0);
        x.extend(&y);
        add_noise(&mut x, -45.0, 3);
        let got = detect_dt_as(&x);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].start.abs_diff(2400) <= 8, "{got:?}");
        assert!((got[0].duration_ms() - 100.0).abs() <= 2.0, "{got:?}");
        // The FSK after it is one V.23 message, no DTMF, no DT-AS.
        let m = decode(&x);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].standard, Standard::V23);
        // One of the two tones alone is no DT-AS; neither is DTMF.
        let mut single = vec![0i16; 800];
        push_tones(&mut single, &[(DT_AS_HZ[0], -15.0)], 100);
        assert!(detect_dt_as(&single).is_empty());
        assert!(detect_dt_as(&crate::analysis::dtmf("A123C", 80, 80, -10.0).unwrap()).is_empty());
        assert!(dtmf_keys(&x).is_empty());
    }

    #[test]
    fn a_false_header_with_a_long_length_does_not_hide_the_message_after_it() {
        // What noise can look like: a type byte and a length past the end.
        let mut bits = vec![true; 40];
        bits.extend(framed(&[MDMF, 0xf0, 0x11]));
        bits.extend([true; 40]);
        let mut x = modulate(&bits, FskStandard::Bell202, 1.0, -20.0);
        let msg = sdmf("02291200", "O");
        let (y, _, _) = transmission(&msg, FskStandard::Bell202, 1.0);
        x.extend(y);
        let frames = decode_fsk_frames(&x, FskStandard::Bell202);
        assert!(matches!(frames.first(), Some(Err(Rejected { reason: RejectReason::Truncated, .. }))), "{frames:?}");
        let got = decode_fsk(&x, FskStandard::Bell202);
        assert_eq!(got.len(), 1, "{frames:?}");
        assert_eq!(got[0].fields.number_absence.as_deref(), Some("O"));
    }

    #[test]
    fn decodes_at_ten_db_snr() {
        let msg = mdmf(&[(PARAM_NUMBER, "0123456789"), (PARAM_NAME, "DOE JOHN Q PUBLIC")]);
        for std in [FskStandard::Bell202, FskStandard::V23] {
            for seed in 0..8 {
                let (mut x, _, _) = transmission(&msg, std, 1.0);
                // -13 dBm0 FSK, -23 dBm0 white noise over the whole band.
                add_noise(&mut x, -23.0, 50 + seed);
                let got = decode_fsk(&x, std);
                assert_eq!(got.len(), 1, "{std:?} seed {seed}");
                assert_eq!(got[0].raw, msg, "{std:?} seed {seed}");
            }
        }
    }

    #[test]
    fn senders_are_understood_by_the_receivers() {
        for std in [FskStandard::Bell202, FskStandard::V23] {
            let mut x = vec![0i16; 800];
            x.extend(fsk_signal(std, "5551234", "ALICE", Some("12041620")));
            x.extend(vec![0i16; 800]);
            let m = decode_fsk(&x, std);
            assert_eq!(m.len(), 1, "{std:?}");
            assert_eq!(m[0].kind, MessageType::Mdmf);
            assert_eq!(m[0].fields.number.as_deref(), Some("5551234"));
            assert_eq!(m[0].fields.name.as_deref(), Some("ALICE"));
            assert_eq!(m[0].fields.date_time.as_deref(), Some("12041620"));
            assert_eq!(m[0].standard, Standard::from(std));
            // The carrier starts with the seizure, 20 ms in samples of slack.
            assert!(m[0].signal_start.abs_diff(800) < 160, "{}", m[0].signal_start);
        }
        let m = decode_fsk(&fsk_signal(FskStandard::V23, "", "", None), FskStandard::V23);
        assert_eq!(m[0].fields.number_absence.as_deref(), Some("O"));
        let mut x = dtmf_clip("0301234").unwrap();
        x.extend(vec![0i16; 400]);
        let m = decode_dtmf_clip(&x);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].fields.number.as_deref(), Some("0301234"));
        assert_eq!(dtmf_clip("12x"), Err('x'));
        let mut x = vec![0i16; 400];
        x.extend(dt_as(100, -20.0));
        x.extend(vec![0i16; 400]);
        let b = detect_dt_as(&x);
        assert_eq!(b.len(), 1);
        assert!((b[0].duration_ms() - 100.0).abs() < 5.0, "{}", b[0].duration_ms());
    }

    #[test]
    fn mdmf_checksum_sums_to_zero() {
        let m = super::mdmf("123", "BOB", None);
        assert_eq!(m[0], MDMF);
        assert_eq!(usize::from(m[1]), m.len() - 3);
        assert_eq!(m.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
    }

    #[test]
    fn dtmf_receiver_reports_each_key_once() {
        let x = crate::analysis::dtmf("1907#", 60, 60, -10.0).unwrap();
        let mut rx = DtmfReceiver::new();
        let keys: String = x.chunks(80).filter_map(|f| rx.push_frame(f)).collect();
        assert_eq!(keys, "1907#");
        // A long key is still one key; silence none.
        let x = crate::analysis::dtmf("55", 500, 100, -10.0).unwrap();
        let mut rx = DtmfReceiver::new();
        let keys: String = x.chunks(80).filter_map(|f| rx.push_frame(f)).collect();
        assert_eq!(keys, "55");
        assert_eq!(DtmfReceiver::new().push_frame(&[0; 80]), None);
    }
}
