//! Caller ID FSK receiver benchmark: `gw_dsp::callerid_line::FskReceiver` (the crate's one
//! FSK demodulator) against SpanDSP's caller ID receiver (`adsi_rx`, Debian
//! libspandsp-dev 0.0.6) on the same signals.
//!
//! Run: `cargo run --release -p gw-dsp --example callerid_bench [-- bits_per_point]`
//!
//! Signal: back-to-back caller ID deliveries (100 ms silence, channel seizure 300 bits,
//! 180 mark bits, one 255-byte MDMF message of random payload; GR-30 / EN 300 659-1
//! framing) from `gw_dsp::callerid::FskModulator` at -13 dBm0, plus white Gaussian noise
//! (Box-Muller on a seeded xorshift, written here) at the given SNR, where SNR is the
//! signal power over the noise power in the whole 0-4 kHz band. Both receivers run
//! continuously over the whole stream, so they must find every message on their own.
//!
//! Figures per SNR: messages lost or failed (MER) and the bit error rate derived from it.
//! Both receivers deliver only messages whose checksum is right (that is how caller ID is
//! used), so the BER is inferred assuming independent bit errors:
//! `MER = 1 - (1 - BER)^2040`. A delivered message that differs from the one sent (a
//! checksum collision) adds its real bit errors. A lost message (preamble not found) is a
//! failed message too. `FskReceiver` also reports every character it frames, so its bit
//! errors are counted exactly as well ("exact").
//!
//! `unsafe` appears only here, for the FFI calls into libspandsp.

// The matcher walks parallel message arrays by index.
#![allow(clippy::needless_range_loop)]

use gw_dsp::callerid::{FskModulator, FskStandard, MARK_BITS, MDMF_CALLER_ID, SEIZURE_BITS};
use gw_dsp::callerid_line::{FskReceiver, FskRxEvent};
use std::ffi::{c_int, c_void};
use std::time::Instant;

#[link(name = "spandsp")]
extern "C" {
    fn adsi_rx_init(
        s: *mut c_void,
        standard: c_int,
        put_msg: extern "C" fn(*mut c_void, *const u8, c_int),
        user_data: *mut c_void,
    ) -> *mut c_void;
    fn adsi_rx(s: *mut c_void, amp: *const i16, len: c_int) -> c_int;
    fn adsi_rx_free(s: *mut c_void) -> c_int;
}

const ADSI_STANDARD_CLASS: c_int = 1; // Bell 202
const ADSI_STANDARD_CLIP: c_int = 2; // ETSI, V.23

const LEVEL_DBM0: f32 = -13.0;
const DBM0_PEAK: f64 = 22_826.0;
const MSG_LEN: usize = 255;

/// xorshift64* with Box-Muller: exact Gaussian tails matter for BER (a sum of uniforms
/// has none beyond a few sigma and would flatter every receiver).
struct Awgn {
    s: u64,
    spare: Option<f64>,
}

impl Awgn {
    fn new(seed: u64) -> Self {
        Awgn { s: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, spare: None }
    }
    fn next_u64(&mut self) -> u64 {
        self.s ^= self.s >> 12;
        self.s ^= self.s << 25;
        self.s ^= self.s >> 27;
        self.s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        if let Some(g) = self.spare.take() {
            return g;
        }
        let r = (-2.0 * self.uniform().ln()).sqrt();
        let t = std::f64::consts::TAU * self.uniform();
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)).wrapping_neg()
}

/// One delivery: silence, seizure, marks, a random 255-byte MDMF message, silence.
fn delivery(std: FskStandard, rng: &mut Awgn, out: &mut Vec<i16>) -> [u8; MSG_LEN] {
    let mut msg = [0u8; MSG_LEN];
    msg[0] = MDMF_CALLER_ID;
    msg[1] = (MSG_LEN - 3) as u8;
    for b in msg[2..MSG_LEN - 1].iter_mut() {
        *b = rng.next_u64() as u8;
    }
    msg[MSG_LEN - 1] = checksum(&msg[..MSG_LEN - 1]);
    let mut m = FskModulator::new(std, LEVEL_DBM0, &msg, SEIZURE_BITS, MARK_BITS).expect("message fits");
    out.extend(std::iter::repeat_n(0i16, 800));
    let mut f = [0i16; 80];
    while m.fill(&mut f) {
        out.extend_from_slice(&f);
    }
    out.extend_from_slice(&f);
    out.extend(std::iter::repeat_n(0i16, 400));
    msg
}

#[derive(Default, Clone, Copy)]
struct Score {
    ok: u64,
    failed: u64,
    wrong_bits: u64,
}

impl Score {
    /// BER from the message error rate, assuming independent bit errors:
    /// `MER = 1 - (1 - p)^bits_per_message`. Wrong bits in delivered messages (checksum
    /// collisions) are added as they are. `None` when every message failed (the BER is
    /// then beyond what this set-up can measure, above about 1e-3).
    fn ber(&self, n_msgs: u64) -> Option<f64> {
        if self.ok == 0 && self.wrong_bits == 0 {
            return None;
        }
        let mer = self.failed as f64 / n_msgs as f64;
        let per_msg = (MSG_LEN * 8) as f64;
        Some(1.0 - (1.0 - mer).powf(1.0 / per_msg) + self.wrong_bits as f64 / (n_msgs as f64 * per_msg))
    }
}

/// Matches delivered messages against the ones sent, in order.
struct Matcher<'a> {
    sent: &'a [[u8; MSG_LEN]],
    next: usize,
    got: Vec<Vec<u8>>,
}

fn score(sent: &[[u8; MSG_LEN]], got: &[Vec<u8>]) -> Score {
    // Each sent message is found at most once; a delivered message is attributed to the
    // sent message it is closest to among the next few (it cannot come from the past).
    let mut s = Score::default();
    let mut i = 0;
    for g in got {
        let mut best: Option<(usize, u64)> = None;
        for j in i..(i + 3).min(sent.len()) {
            if g.len() != MSG_LEN {
                continue;
            }
            let d: u64 = g.iter().zip(sent[j].iter()).map(|(a, b)| (a ^ b).count_ones() as u64).sum();
            if best.is_none_or(|(_, bd)| d < bd) {
                best = Some((j, d));
            }
        }
        if let Some((j, d)) = best {
            if d <= 64 {
                s.failed += (j - i) as u64; // skipped ones were lost
                if d == 0 {
                    s.ok += 1;
                } else {
                    s.wrong_bits += d;
                }
                i = j + 1;
            }
        }
    }
    s.failed += (sent.len() - i) as u64;
    s
}

extern "C" fn spandsp_put_msg(user: *mut c_void, msg: *const u8, len: c_int) {
    if len <= 0 || msg.is_null() {
        return; // status reports (carrier up/down) come as negative lengths
    }
    // SAFETY: `user` is the `Matcher` passed to adsi_rx_init, alive for the whole run;
    // `msg` points at `len` bytes owned by SpanDSP for the duration of the call.
    let m = unsafe { &mut *(user as *mut Matcher) };
    let bytes = unsafe { std::slice::from_raw_parts(msg, len as usize) };
    // adsi_rx hands over the message without its checksum byte: put it back so both
    // receivers are compared on the same bytes.
    let mut v = bytes.to_vec();
    if v.len() == MSG_LEN - 1 {
        v.push(checksum(&v));
    }
    m.got.push(v);
    m.next += 1;
}

struct Point {
    bits: u64,
    rx: Score,
    /// FskReceiver's bit errors counted on its characters.
    rx_bit_errors: u64,
    spandsp: Score,
    /// ns per sample: FskReceiver, SpanDSP.
    ns: [f64; 2],
}

fn run_point(std: FskStandard, snr_db: f64, bits_wanted: u64, seed: u64) -> Point {
    let n_msgs = bits_wanted.div_ceil((MSG_LEN * 8) as u64) as usize;
    let mut rng = Awgn::new(seed);
    let mut noise = Awgn::new(seed ^ 0xABCD_EF01);
    let mut x = Vec::with_capacity(n_msgs * 18_000);
    let mut sent = Vec::with_capacity(n_msgs);
    let mut starts = Vec::with_capacity(n_msgs);
    for _ in 0..n_msgs {
        starts.push(x.len());
        sent.push(delivery(std, &mut rng, &mut x));
    }
    let peak = DBM0_PEAK * 10f64.powf(LEVEL_DBM0 as f64 / 20.0);
    let sigma = peak / std::f64::consts::SQRT_2 * 10f64.powf(-snr_db / 20.0);
    for v in x.iter_mut() {
        *v = (*v as f64 + sigma * noise.gauss()).round().clamp(-32768.0, 32767.0) as i16;
    }

    // Ours (callerid_line::FskReceiver).
    let t = Instant::now();
    let mut r = FskReceiver::new(std);
    let mut got = Vec::new();
    // Every framed character, by the delivery it arrived in: the exact bit error count.
    let mut chars: Vec<Vec<u8>> = vec![Vec::new(); n_msgs];
    for (i, f) in x.chunks(80).enumerate() {
        r.process(f);
        while let Some(e) = r.poll_event() {
            match e {
                FskRxEvent::Message => got.push(r.last_message().to_vec()),
                FskRxEvent::Char { byte, .. } => {
                    let d = starts.partition_point(|&s| s <= i * 80).saturating_sub(1);
                    chars[d].push(byte);
                }
                _ => {}
            }
        }
    }
    let ns_rx = t.elapsed().as_nanos() as f64 / x.len() as f64;
    let rx = score(&sent, &got);
    // Bit errors from the character stream: compare position by position; a missing or
    // extra character counts 4 errors (a guess is right half the time), so a message
    // lost for want of a preamble counts as a coin toss per bit.
    let mut rx_bit_errors = 0u64;
    for (c, m) in chars.iter().zip(sent.iter()) {
        rx_bit_errors += c.iter().zip(m.iter()).map(|(a, b)| (a ^ b).count_ones() as u64).sum::<u64>();
        rx_bit_errors += 4 * c.len().abs_diff(MSG_LEN) as u64;
    }

    // SpanDSP.
    let t = Instant::now();
    let mut m = Matcher { sent: &sent, next: 0, got: Vec::new() };
    let standard = match std {
        FskStandard::Bell202 => ADSI_STANDARD_CLASS,
        FskStandard::V23 => ADSI_STANDARD_CLIP,
    };
    // SAFETY: FFI into libspandsp; the state is allocated by SpanDSP (NULL argument) and
    // freed below; the callback's user pointer outlives the state.
    unsafe {
        let s = adsi_rx_init(std::ptr::null_mut(), standard, spandsp_put_msg, &mut m as *mut Matcher as *mut c_void);
        assert!(!s.is_null());
        for f in x.chunks(80) {
            adsi_rx(s, f.as_ptr(), f.len() as c_int);
        }
        adsi_rx_free(s);
    }
    let ns_span = t.elapsed().as_nanos() as f64 / x.len() as f64;
    let _ = (m.sent.len(), m.next);
    let spandsp = score(&sent, &m.got);
    Point { bits: (n_msgs * MSG_LEN * 8) as u64, rx, rx_bit_errors, spandsp, ns: [ns_rx, ns_span] }
}

fn fmt_ber(b: Option<f64>) -> String {
    match b {
        None => "all lost".to_string(),
        Some(0.0) => "0".to_string(),
        Some(b) => format!("{b:.1e}"),
    }
}

fn main() {
    let bits_wanted: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let start = Instant::now();
    println!("Caller ID FSK receivers, {bits_wanted} payload bits per point, signal {LEVEL_DBM0} dBm0, AWGN 0-4 kHz");
    println!("MER = failed or lost 255-byte messages; BER = 1 - (1 - MER)^(1/2040) (independent errors);");
    println!("0 = no error seen in the bits counted; span/rx = SpanDSP BER / FskReceiver BER");
    println!("rx = callerid_line::FskReceiver, span = SpanDSP adsi_rx; ns = time per sample");
    println!("exact = FskReceiver bit errors counted on its characters / bits (lost characters count 4)");
    for std in [FskStandard::Bell202, FskStandard::V23] {
        println!();
        println!("{std:?}");
        println!(
            "{:>6} {:>9} | {:>8} {:>8} {:>8} | {:>8} {:>8} | {:>9} | {:>5} {:>5}",
            "SNR dB", "bits", "rx MER", "BER", "exact", "span MER", "BER", "span/rx", "ns rx", "span"
        );
        for snr in 6..=16 {
            let p = run_point(std, snr as f64, bits_wanted, 1000 + snr as u64);
            let n_msgs = p.bits / (MSG_LEN * 8) as u64;
            let n = n_msgs as f64;
            let (rb, sb) = (p.rx.ber(n_msgs), p.spandsp.ber(n_msgs));
            let ratio = match (rb, sb) {
                (Some(o), Some(s)) if o > 0.0 => format!("{:.1}", s / o),
                (Some(o), None) if o > 0.0 => format!(">{:.1}", 1e-3 / o),
                (Some(_), Some(s)) if s > 0.0 => "rx 0".to_string(),
                (Some(_), None) => "rx 0".to_string(),
                _ => "-".to_string(),
            };
            println!(
                "{:>6} {:>9} | {:>8.4} {:>8} {:>8} | {:>8.4} {:>8} | {:>9} | {:>5.1} {:>5.1}",
                snr,
                p.bits,
                p.rx.failed as f64 / n,
                fmt_ber(rb),
                fmt_ber(Some(p.rx_bit_errors as f64 / p.bits as f64)),
                p.spandsp.failed as f64 / n,
                fmt_ber(sb),
                ratio,
                p.ns[0],
                p.ns[1]
            );
        }
    }
    println!();
    println!("total {:.1} s", start.elapsed().as_secs_f64());
}
