//! RTP fixed header and packet view (RFC 3550 section 5.1).
//!
//! [`Packet`] is a checked view over raw bytes in the smoltcp style: build it
//! with [`Packet::new_checked`], then read fields; [`Packet::payload`] skips
//! the CSRC list and the header extension (section 5.3.1) and strips padding.
//! [`RtpHeader`] is what we send: we never emit CSRCs, extensions or padding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! |                           timestamp                           |
//! |           synchronization source (SSRC) identifier            |
//! |            contributing source (CSRC) identifiers             |
//! ```

/// Why a buffer is not an RTP packet we can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the 12-byte fixed header.
    Truncated,
    /// Version field is not 2.
    BadVersion,
    /// The CSRC list or the header extension runs past the end of the buffer.
    HeaderOverrun,
    /// P bit set but the padding count is zero or longer than the payload
    /// (section 5.1: the last octet counts itself).
    BadPadding,
}

mod field {
    use core::ops::Range;
    pub const VPXCC: usize = 0;
    pub const MPT: usize = 1;
    pub const SEQ: Range<usize> = 2..4;
    pub const TS: Range<usize> = 4..8;
    pub const SSRC: Range<usize> = 8..12;
    pub const FIXED_END: usize = 12;
}

/// A read-only view of an RTP packet.
#[derive(Clone, Copy, Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking; accessors may then panic on short input.
    /// Use [`Packet::new_checked`] for anything from the network.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`] succeeded: every accessor is
    /// then safe to call.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the version, the CSRC list, the extension and the padding against
    /// the buffer length.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < field::FIXED_END {
            return Err(Error::Truncated);
        }
        if self.version() != 2 {
            return Err(Error::BadVersion);
        }
        let hl = self.header_len_unchecked().ok_or(Error::HeaderOverrun)?;
        if hl > b.len() {
            return Err(Error::HeaderOverrun);
        }
        if self.padding() {
            let pad = b[b.len() - 1] as usize;
            if pad == 0 || hl + pad > b.len() {
                return Err(Error::BadPadding);
            }
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VPXCC] >> 6
    }
    pub fn padding(&self) -> bool {
        self.buffer.as_ref()[field::VPXCC] & 0x20 != 0
    }
    pub fn extension(&self) -> bool {
        self.buffer.as_ref()[field::VPXCC] & 0x10 != 0
    }
    pub fn csrc_count(&self) -> u8 {
        self.buffer.as_ref()[field::VPXCC] & 0x0f
    }
    pub fn marker(&self) -> bool {
        self.buffer.as_ref()[field::MPT] & 0x80 != 0
    }
    pub fn payload_type(&self) -> u8 {
        self.buffer.as_ref()[field::MPT] & 0x7f
    }
    pub fn sequence_number(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::SEQ];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn timestamp(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::TS];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn ssrc(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SSRC];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Length of fixed header + CSRCs + extension, or `None` if the extension
    /// header itself is cut off.
    fn header_len_unchecked(&self) -> Option<usize> {
        let b = self.buffer.as_ref();
        let mut hl = field::FIXED_END + 4 * self.csrc_count() as usize;
        if self.extension() {
            // Section 5.3.1: 16-bit profile id, 16-bit length in 32-bit words.
            let ext = b.get(hl..hl + 4)?;
            hl += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
        }
        Some(hl)
    }

    /// Length of everything before the payload.
    pub fn header_len(&self) -> usize {
        self.header_len_unchecked().unwrap_or(self.buffer.as_ref().len())
    }

    /// The payload, without CSRCs, extension and padding.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let start = self.header_len().min(b.len());
        let mut end = b.len();
        if self.padding() && !b.is_empty() {
            end = end.saturating_sub(b[b.len() - 1] as usize);
        }
        &b[start..end.max(start)]
    }

    /// The fields we act on, as an [`RtpHeader`].
    pub fn header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker(),
            payload_type: self.payload_type(),
            sequence: self.sequence_number(),
            timestamp: self.timestamp(),
            ssrc: self.ssrc(),
        }
    }
}

/// The fixed header we emit: version 2, no padding, no extension, no CSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    pub const LEN: usize = 12;

    /// Writes the header into the start of `buf` and returns [`RtpHeader::LEN`].
    /// Returns 0 and writes nothing if `buf` is shorter than that.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let Some(h) = buf.get_mut(..Self::LEN) else {
            return 0;
        };
        h[field::VPXCC] = 2 << 6;
        h[field::MPT] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        h[field::SEQ].copy_from_slice(&self.sequence.to_be_bytes());
        h[field::TS].copy_from_slice(&self.timestamp.to_be_bytes());
        h[field::SSRC].copy_from_slice(&self.ssrc.to_be_bytes());
        Self::LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        let h = RtpHeader { marker: true, payload_type: 101, sequence: 0xfffe, timestamp: 0xdead_beef, ssrc: 0x0102_0304 };
        let mut buf = [0u8; 20];
        assert_eq!(h.emit(&mut buf), 12);
        buf[12..20].copy_from_slice(b"abcdefgh");
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert!(!p.padding() && !p.extension());
        assert_eq!(p.header(), h);
        assert_eq!(p.payload(), b"abcdefgh");
    }

    #[test]
    fn emit_into_short_buffer_writes_nothing() {
        let h = RtpHeader { marker: false, payload_type: 0, sequence: 1, timestamp: 2, ssrc: 3 };
        let mut buf = [0xaau8; 11];
        assert_eq!(h.emit(&mut buf), 0);
        assert_eq!(buf, [0xaa; 11]);
    }

    #[test]
    fn payload_skips_csrcs_extension_and_padding() {
        // V=2 P=1 X=1 CC=2
        let mut b = [0u8; 12 + 8 + 4 + 8 + 3 + 3];
        b[0] = 0x80 | 0x20 | 0x10 | 2;
        b[1] = 8;
        // extension: profile 0xbede, length 2 words
        b[20..24].copy_from_slice(&[0xbe, 0xde, 0, 2]);
        b[32..35].copy_from_slice(b"xyz");
        let n = b.len();
        b[n - 1] = 3; // padding count includes itself
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.csrc_count(), 2);
        assert_eq!(p.header_len(), 32);
        assert_eq!(p.payload(), b"xyz");
    }

    #[test]
    fn malformed_inputs_are_named() {
        assert_eq!(Packet::new_checked(&[0x80u8; 11][..]).err(), Some(Error::Truncated));
        let mut b = [0u8; 12];
        b[0] = 0x40;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::BadVersion));
        b[0] = 0x80 | 3; // three CSRCs promised, none present
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::HeaderOverrun));
        b[0] = 0x80 | 0x10; // extension header missing
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::HeaderOverrun));
        let mut b = [0u8; 14];
        b[0] = 0x80 | 0x20;
        b[13] = 0;
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::BadPadding));
        b[13] = 3; // more padding than payload
        assert_eq!(Packet::new_checked(&b[..]).err(), Some(Error::BadPadding));
        b[13] = 2;
        assert_eq!(Packet::new_checked(&b[..]).unwrap().payload(), b"");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = p.header();
                let pl = p.payload();
                prop_assert!(pl.len() + p.header_len() <= bytes.len());
            }
        }

        #[test]
        fn emitted_headers_parse_back(m in any::<bool>(), pt in 0u8..128, seq in any::<u16>(), ts in any::<u32>(), ssrc in any::<u32>(),
                                      payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = RtpHeader { marker: m, payload_type: pt, sequence: seq, timestamp: ts, ssrc };
            let mut buf = std::vec![0u8; 12 + payload.len()];
            prop_assert_eq!(h.emit(&mut buf), 12);
            buf[12..].copy_from_slice(&payload);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.header(), h);
            prop_assert_eq!(p.payload(), &payload[..]);
        }
    }
}
