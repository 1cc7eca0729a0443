//! Software HDLC for a D channel in a transparent timeslot (ISO/IEC 3309 as
//! used by Q.921 section 2: flag 0x7E, zero-bit insertion, FCS-16, abort).
//!
//! Bits travel least significant bit first within each octet (Q.921 2.8), so
//! the first bit of a timeslot octet is its bit 0. The decoder takes the
//! octets of the timeslot as they arrive (any chunking) and yields whole
//! frames whose FCS checked, without the FCS. The encoder turns frames into a
//! continuous bit stream padded with idle flags, cut into timeslot octets.
//!
//! Bad input is counted ([`DecoderStats`]), never returned and never a panic.

use std::collections::VecDeque;

/// The HDLC flag sequence 0111 1110.
pub const FLAG: u8 = 0x7E;

/// Default largest frame the decoder accepts, FCS included: Q.921 N201 (260
/// octets of information) plus a 2-octet address, a 2-octet control field
/// and the 2-octet FCS.
pub const DEFAULT_MAX_FRAME: usize = 260 + 2 + 2 + 2;

/// Default smallest frame, FCS included: a U frame has a 2-octet address and
/// a 1-octet control field (Q.921 2.9 calls anything shorter invalid).
pub const DEFAULT_MIN_FRAME: usize = 2 + 1 + 2;

/// Residue of the FCS register after running over a frame and its correct
/// FCS (ISO 3309 / RFC 1662 "good FCS").
const GOOD_FCS_RESIDUE: u16 = 0xF0B8;

const fn fcs_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut v = i as u16;
        let mut b = 0;
        while b < 8 {
            v = if v & 1 != 0 { (v >> 1) ^ 0x8408 } else { v >> 1 };
            b += 1;
        }
        table[i] = v;
        i += 1;
    }
    table
}

static FCS_TABLE: [u16; 256] = fcs_table();

/// Runs the FCS-16 register (generator x^16 + x^12 + x^5 + 1, bit-reversed)
/// over `data`, starting from `fcs`.
fn fcs_update(mut fcs: u16, data: &[u8]) -> u16 {
    for &b in data {
        fcs = (fcs >> 8) ^ FCS_TABLE[((fcs ^ b as u16) & 0xFF) as usize];
    }
    fcs
}

/// The frame check sequence of `data` as Q.921 2.7 defines it (register
/// preset to ones, ones' complement of the remainder). It is sent low octet
/// first: `fcs16(d).to_le_bytes()`.
pub fn fcs16(data: &[u8]) -> u16 {
    !fcs_update(0xFFFF, data)
}

/// Whether `frame` (the octets between the flags, FCS last) has a good FCS.
pub fn fcs_ok(frame: &[u8]) -> bool {
    frame.len() >= 2 && fcs_update(0xFFFF, frame) == GOOD_FCS_RESIDUE
}

/// What the decoder dropped, and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames delivered with a good FCS.
    pub frames: u64,
    /// Frames whose FCS did not check.
    pub bad_fcs: u64,
    /// Frames cut by seven or more contiguous ones.
    pub aborts: u64,
    /// Frames shorter than the minimum (FCS included).
    pub too_short: u64,
    /// Frames longer than the maximum; the rest was skipped up to the next flag.
    pub too_long: u64,
    /// Frames whose length was not a whole number of octets.
    pub not_octet_aligned: u64,
    /// Good frames lost because the caller did not drain [`Decoder::poll_frame`].
    pub overflow: u64,
}

/// Receive side: octets of a timeslot in, FCS-checked frames out.
#[derive(Debug)]
pub struct Decoder {
    min_frame: usize,
    max_frame: usize,
    max_queued: usize,
    /// Contiguous ones seen and not yet appended (at most 5 are data).
    ones: u8,
    /// True until a flag is seen (start-up, after an abort or an overlong frame).
    hunting: bool,
    buf: Vec<u8>,
    acc: u8,
    acc_bits: u8,
    frames: VecDeque<Vec<u8>>,
    stats: DecoderStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MIN_FRAME, DEFAULT_MAX_FRAME)
    }
}

impl Decoder {
    /// A decoder accepting frames of `min_frame..=max_frame` octets, FCS
    /// included (at least 2, at most 8192). It hunts for a flag first.
    pub fn new(min_frame: usize, max_frame: usize) -> Self {
        let min_frame = min_frame.clamp(2, 8192);
        let max_frame = max_frame.clamp(min_frame, 8192);
        Self {
            min_frame,
            max_frame,
            max_queued: 64,
            ones: 0,
            hunting: true,
            buf: Vec::with_capacity(max_frame),
            acc: 0,
            acc_bits: 0,
            frames: VecDeque::new(),
            stats: DecoderStats::default(),
        }
    }

    /// Counters of delivered and dropped frames.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Feeds octets of the timeslot, in order, in any chunking.
    pub fn feed(&mut self, octets: &[u8]) {
        for &o in octets {
            for bit in 0..8 {
                self.bit(o >> bit & 1 == 1);
            }
        }
    }

    /// The next whole, FCS-checked frame (FCS removed), oldest first.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.frames.pop_front()
    }

    fn restart_frame(&mut self) {
        self.buf.clear();
        self.acc = 0;
        self.acc_bits = 0;
    }

    fn bit(&mut self, one: bool) {
        if one {
            self.ones = self.ones.saturating_add(1);
            if self.ones == 7 {
                // Abort (Q.921 2.10): seven ones end the frame without a flag.
                if !self.hunting && !self.buf.is_empty() {
                    self.stats.aborts += 1;
                }
                self.hunting = true;
                self.restart_frame();
            }
            return;
        }
        let ones = self.ones;
        self.ones = 0;
        match ones {
            6 => self.flag(),
            // Inserted zero: the five ones are data, the zero is not.
            // (push_bit ignores bits while hunting.)
            5 => {
                for _ in 0..5 {
                    self.push_bit(true);
                }
            }
            n if n < 5 => {
                for _ in 0..n {
                    self.push_bit(true);
                }
                self.push_bit(false);
            }
            _ => {} // the zero after an abort or idle ones: still hunting
        }
    }

    fn push_bit(&mut self, one: bool) {
        if self.hunting {
            return;
        }
        if self.acc_bits == 8 {
            if self.buf.len() >= self.max_frame {
                self.stats.too_long += 1;
                self.hunting = true;
                self.restart_frame();
                return;
            }
            self.buf.push(self.acc);
            self.acc = 0;
            self.acc_bits = 0;
        }
        self.acc |= (one as u8) << self.acc_bits;
        self.acc_bits += 1;
    }

    fn flag(&mut self) {
        if !self.hunting {
            // The flag's leading zero went into the frame as a data bit, so a
            // frame of whole octets leaves exactly one bit in the accumulator;
            // a full accumulator is a last octet not yet pushed.
            let whole = self.acc_bits == 1;
            if self.buf.is_empty() && self.acc_bits <= 1 {
                // Back-to-back flags: nothing between them.
            } else if !whole {
                self.stats.not_octet_aligned += 1;
            } else if self.buf.len() < self.min_frame {
                self.stats.too_short += 1;
            } else if !fcs_ok(&self.buf) {
                self.stats.bad_fcs += 1;
            } else if self.frames.len() >= self.max_queued {
                self.stats.overflow += 1;
            } else {
                self.stats.frames += 1;
                let mut frame = std::mem::take(&mut self.buf);
                frame.truncate(frame.len() - 2);
                self.buf = Vec::with_capacity(self.max_frame);
                self.frames.push_back(frame);
            }
        }
        self.hunting = false;
        self.restart_frame();
    }
}

/// Transmit side: frames in, a continuous stream of timeslot octets out,
/// idle flags between and after frames.
#[derive(Debug, Default)]
pub struct Encoder {
    /// Whole octets ready for the timeslot.
    out: VecDeque<u8>,
    acc: u8,
    acc_bits: u8,
    ones: u8,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues one frame (address, control, information; the FCS is added
    /// here) between an opening and a closing flag.
    pub fn queue_frame(&mut self, frame: &[u8]) {
        let fcs = fcs16(frame).to_le_bytes();
        self.queue_octets(frame.iter().chain(fcs.iter()));
    }

    /// Queues octets between flags as they are, the FCS included by the caller.
    fn queue_octets<'a>(&mut self, octets: impl Iterator<Item = &'a u8>) {
        self.put_flag();
        for &o in octets {
            for bit in 0..8 {
                let one = o >> bit & 1 == 1;
                self.put_bit(one);
                if one {
                    self.ones += 1;
                    if self.ones == 5 {
                        self.put_bit(false);
                        self.ones = 0;
                    }
                } else {
                    self.ones = 0;
                }
            }
        }
        self.put_flag();
    }

    /// Octets queued and not yet taken (without the idle fill).
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Fills `slot` with the next octets of the stream, idle flags once the
    /// queued frames are out.
    pub fn fill(&mut self, slot: &mut [u8]) {
        for o in slot.iter_mut() {
            if self.out.is_empty() {
                // Flags may start on any bit: one flag always completes an octet.
                self.put_flag();
            }
            *o = self.out.pop_front().unwrap_or(FLAG);
        }
    }

    fn put_flag(&mut self) {
        for bit in 0..8 {
            self.put_bit(FLAG >> bit & 1 == 1);
        }
        self.ones = 0;
    }

    fn put_bit(&mut self, one: bool) {
        self.acc |= (one as u8) << self.acc_bits;
        self.acc_bits += 1;
        if self.acc_bits == 8 {
            self.out.push_back(self.acc);
            self.acc = 0;
            self.acc_bits = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bit-at-a-time FCS straight from the Q.921 2.7 definition, to check the
    /// table-driven one against.
    fn fcs_bitwise(data: &[u8]) -> u16 {
        let mut reg: u16 = 0xFFFF;
        for &b in data {
            for i in 0..8 {
                let bit = (b >> i) & 1;
                let fb = (reg & 1) as u8 ^ bit;
                reg >>= 1;
                if fb != 0 {
                    reg ^= 0x8408;
                }
            }
        }
        !reg
    }

    fn encode_all(frames: &[Vec<u8>], idle: usize) -> Vec<u8> {
        let mut enc = Encoder::new();
        for f in frames {
            enc.queue_frame(f);
        }
        let mut out = vec![0; enc.pending() + idle];
        enc.fill(&mut out);
        out
    }

    #[test]
    fn fcs_known_vectors() {
        // CRC-16/X-25 check value (the HDLC FCS over "123456789").
        assert_eq!(fcs16(b"123456789"), 0x906E);
        assert_eq!(fcs16(b""), 0x0000);
        let mut f = b"123456789".to_vec();
        f.extend_from_slice(&fcs16(b"123456789").to_le_bytes());
        assert!(fcs_ok(&f));
        f[0] ^= 1;
        assert!(!fcs_ok(&f));
        // A TE's SABME on SAPI 0 TEI 0, P=1, against the bitwise definition.
        let sabme = [0x00, 0x01, 0x7F];
        assert_eq!(fcs16(&sabme), fcs_bitwise(&sabme));
    }

    #[test]
    fn idle_is_flags_and_a_frame_roundtrips() {
        let mut enc = Encoder::new();
        let mut idle = [0u8; 4];
        enc.fill(&mut idle);
        assert_eq!(idle, [FLAG; 4]);
        // 0xFF octets force zero insertion on every fifth one.
        let frame = vec![0x02, 0x01, 0x7F, 0xFF, 0xFF, 0x7E];
        let stream = encode_all(std::slice::from_ref(&frame), 3);
        assert!(stream.len() > frame.len() + 2 + 2, "stuffing must add bits");
        let mut dec = Decoder::default();
        dec.feed(&stream);
        assert_eq!(dec.poll_frame(), Some(frame));
        assert_eq!(dec.poll_frame(), None);
        assert_eq!(dec.stats().frames, 1);
    }

    #[test]
    fn bad_fcs_is_counted_not_delivered() {
        let mut raw = vec![0x00, 0x01, 0x7F];
        raw.extend_from_slice(&(fcs16(&raw) ^ 0x0100).to_le_bytes());
        let mut enc = Encoder::new();
        enc.queue_octets(raw.iter());
        enc.queue_frame(&raw[..3]);
        let mut stream = vec![0; enc.pending() + 1];
        enc.fill(&mut stream);
        let mut dec = Decoder::default();
        dec.feed(&stream);
        assert_eq!(dec.poll_frame(), Some(raw[..3].to_vec()));
        assert_eq!(dec.poll_frame(), None);
        assert_eq!(dec.stats().bad_fcs, 1);
        assert_eq!(dec.stats().frames, 1);
    }

    #[test]
    fn single_bit_errors_are_never_delivered() {
        // Flip every payload bit position of the stream in turn: a single bit
        // error is never delivered (it is a bad FCS, an abort, a short or
        // misaligned frame, depending on what it does to the framing).
        let frame = vec![0x00, 0x01, 0x00, 0x05, 0xFF, 0x08, 0x01, 0x02, 0x05];
        let stream = encode_all(std::slice::from_ref(&frame), 2);
        for bit in 8..(stream.len() - 3) * 8 {
            let mut s = stream.clone();
            s[bit / 8] ^= 1 << (bit % 8);
            let mut dec = Decoder::default();
            dec.feed(&s);
            dec.feed(&[FLAG; 2]);
            if let Some(f) = dec.poll_frame() {
                panic!("bit {bit}: delivered {f:02x?}");
            }
            let st = dec.stats();
            assert!(
                st.bad_fcs + st.aborts + st.too_short + st.too_long + st.not_octet_aligned >= 1,
                "bit {bit}: {st:?}"
            );
        }
    }

    #[test]
    fn abort_drops_the_frame_and_resyncs() {
        let frame = vec![0x00, 0x01, 0x03, 0x41, 0x42];
        let mut stream = encode_all(std::slice::from_ref(&frame), 0);
        // Cut the frame in the middle with 0xFF octets (eight ones = abort).
        let cut = stream.len() / 2;
        stream.truncate(cut);
        stream.extend_from_slice(&[0xFF, 0xFF]);
        stream.extend(encode_all(std::slice::from_ref(&frame), 1));
        let mut dec = Decoder::default();
        dec.feed(&stream);
        assert_eq!(dec.poll_frame(), Some(frame));
        assert_eq!(dec.poll_frame(), None);
        assert_eq!(dec.stats().aborts, 1);
    }

    #[test]
    fn short_long_and_misaligned_frames_are_counted() {
        let mut dec = Decoder::new(DEFAULT_MIN_FRAME, 16);
        // 4 octets with their FCS: shorter than 5.
        dec.feed(&encode_all(&[vec![0x00, 0x01]], 1));
        assert_eq!(dec.stats().too_short, 1);
        dec.feed(&encode_all(&[vec![0x55; 40]], 1));
        assert_eq!(dec.stats().too_long, 1);
        // Flag, 12 data bits with no run of ones, flag: not whole octets.
        // Bits LSB first: 0x7E | 0x00 | 0x7E>>4.. build by hand.
        let bits: Vec<bool> = [0x7Eu8].iter().flat_map(|o| (0..8).map(move |i| o >> i & 1 == 1))
            .chain([false, true, false, false, true, false, false, true, false, false, true, false])
            .chain((0..8).map(|i| FLAG >> i & 1 == 1))
            .chain((0..4).map(|_| false))
            .collect();
        let octets: Vec<u8> = bits
            .chunks(8)
            .map(|c| c.iter().enumerate().fold(0u8, |a, (i, &b)| a | (b as u8) << i))
            .collect();
        dec.feed(&octets);
        assert_eq!(dec.stats().not_octet_aligned, 1);
        assert_eq!(dec.poll_frame(), None);
        // And it still works afterwards.
        dec.feed(&encode_all(&[vec![0x00, 0x01, 0x7F]], 1));
        assert_eq!(dec.poll_frame(), Some(vec![0x00, 0x01, 0x7F]));
    }

    #[test]
    fn undrained_frames_overflow_and_are_counted() {
        let frames: Vec<Vec<u8>> = (0..70u8).map(|i| vec![0x00, 0x01, 0x03, i]).collect();
        let mut dec = Decoder::default();
        dec.feed(&encode_all(&frames, 1));
        assert_eq!(dec.stats().frames, 64);
        assert_eq!(dec.stats().overflow, 6);
    }

    /// Timeslot captures of LAPD frames (testdata/hdlc, made by an independent
    /// bitwise encoder; also the fuzz seed corpus) decode to testdata/lapd.
    #[test]
    fn testdata_streams_decode_to_their_frames() {
        macro_rules! pair {
            ($name:literal) => {
                (
                    &include_bytes!(concat!("../testdata/hdlc/", $name))[..],
                    &include_bytes!(concat!("../testdata/lapd/", $name))[..],
                )
            };
        }
        let pairs = [
            pair!("disc.bin"),
            pair!("i-frame.bin"),
            pair!("rej.bin"),
            pair!("rr-response.bin"),
            pair!("sabme-te.bin"),
            pair!("tei-identity-request.bin"),
            pair!("ua-nt.bin"),
        ];
        let mut all = Decoder::default();
        for (stream, frame) in pairs {
            let mut dec = Decoder::default();
            dec.feed(stream);
            assert_eq!(dec.poll_frame().as_deref(), Some(frame));
            assert_eq!(dec.stats(), DecoderStats { frames: 1, ..Default::default() });
            all.feed(stream);
            assert_eq!(all.poll_frame().as_deref(), Some(frame));
        }
        assert_eq!(all.stats().frames, 7);
    }

    proptest! {
        #[test]
        fn fcs_table_matches_bitwise(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(fcs16(&data), fcs_bitwise(&data));
        }

        #[test]
        fn roundtrip_any_frames_any_chunking(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 3..80), 0..8),
            idle in 0usize..4,
            chunk in 1usize..17,
        ) {
            let stream = encode_all(&frames, idle + 1);
            let mut dec = Decoder::default();
            for c in stream.chunks(chunk) {
                dec.feed(c);
            }
            let mut got = Vec::new();
            while let Some(f) = dec.poll_frame() {
                got.push(f);
            }
            prop_assert_eq!(got, frames);
            let st = dec.stats();
            prop_assert_eq!(st.bad_fcs + st.aborts + st.too_short + st.too_long + st.not_octet_aligned, 0);
        }

        #[test]
        fn decoder_never_panics(octets in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut dec = Decoder::new(DEFAULT_MIN_FRAME, 32);
            dec.feed(&octets);
            while let Some(f) = dec.poll_frame() {
                prop_assert!(f.len() + 2 >= DEFAULT_MIN_FRAME && f.len() + 2 <= 32);
            }
        }
    }
}
