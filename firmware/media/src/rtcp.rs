//! RTCP sender and receiver reports (RFC 3550 section 6.4), SDES CNAME
//! (section 6.5.1) and BYE (section 6.6): what a gateway needs to report
//! call quality and to hear the far end's view of ours.
//!
//! [`Compound`] walks a received compound packet without allocating and
//! yields one [`Packet`] view per RTCP packet; [`emit_report`] writes the
//! compound we send (SR or RR, then SDES with our CNAME).
//!
//! ```text
//! |V=2|P|    RC   |   PT=SR=200   |             length            |
//! |                         SSRC of sender                        |
//! |              NTP timestamp, most significant word             |  SR only
//! |             NTP timestamp, least significant word             |
//! |                         RTP timestamp                         |
//! |                     sender's packet count                     |
//! |                      sender's octet count                     |
//! |                 SSRC_1 (SSRC of first source)                 |  report block
//! | fraction lost |       cumulative number of packets lost       |
//! |           extended highest sequence number received           |
//! |                      interarrival jitter                      |
//! |                         last SR (LSR)                         |
//! |                   delay since last SR (DLSR)                  |
//! ```

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;

/// Why a buffer is not RTCP we can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than a header, or than the header's length field says.
    Truncated,
    /// Version is not 2.
    BadVersion,
    /// The report count does not fit the packet length.
    BadCount,
    /// The first packet of a compound is not SR or RR (section 6.1).
    NotReportFirst,
}

/// One reception report block (section 6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, 24-bit signed on the wire.
    pub cumulative_lost: i32,
    /// Cycles (high 16 bits) and highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received, or 0.
    pub lsr: u32,
    /// Delay since that SR in 1/65536 s, or 0.
    pub dlsr: u32,
}

impl ReportBlock {
    pub const LEN: usize = 24;

    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        let b = b.get(..Self::LEN).ok_or(Error::Truncated)?;
        let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Sign-extend the 24-bit cumulative loss.
        let lost = ((w(4) << 8) as i32) >> 8;
        Ok(Self { ssrc: w(0), fraction_lost: b[4], cumulative_lost: lost, highest_seq: w(8), jitter: w(12), lsr: w(16), dlsr: w(20) })
    }

    /// Writes 24 bytes; returns 0 if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let Some(b) = buf.get_mut(..Self::LEN) else { return 0 };
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        b[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        b[4..8].copy_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        b[8..12].copy_from_slice(&self.highest_seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        b[16..20].copy_from_slice(&self.lsr.to_be_bytes());
        b[20..24].copy_from_slice(&self.dlsr.to_be_bytes());
        Self::LEN
    }
}

/// The sender info of an SR (section 6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// Wall-clock time, NTP format (32.32 fixed point seconds since 1900).
    pub ntp: u64,
    /// The same instant in RTP timestamp units.
    pub rtp_ts: u32,
    pub packets: u32,
    pub octets: u32,
}

impl SenderInfo {
    pub const LEN: usize = 20;
}

/// A view of one RTCP packet inside a compound.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    b: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn packet_type(&self) -> u8 {
        self.b[1]
    }
    /// RC / SC / source count field.
    pub fn count(&self) -> u8 {
        self.b[0] & 0x1f
    }
    /// First SSRC after the header (sender for SR/RR, first source for BYE);
    /// 0 if the packet has none.
    pub fn ssrc(&self) -> u32 {
        self.b.get(4..8).map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    }
    /// The raw packet, header included.
    pub fn bytes(&self) -> &'a [u8] {
        self.b
    }

    pub fn sender_info(&self) -> Option<SenderInfo> {
        if self.packet_type() != PT_SR {
            return None;
        }
        let s = self.b.get(8..28)?;
        let w = |i: usize| u32::from_be_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        Some(SenderInfo { ntp: (u64::from(w(0)) << 32) | u64::from(w(4)), rtp_ts: w(8), packets: w(12), octets: w(16) })
    }

    /// Report block `i` of an SR or RR.
    pub fn report_block(&self, i: usize) -> Option<ReportBlock> {
        let start = match self.packet_type() {
            PT_SR => 28,
            PT_RR => 8,
            _ => return None,
        };
        if i >= self.count() as usize {
            return None;
        }
        ReportBlock::parse(self.b.get(start + i * ReportBlock::LEN..)?).ok()
    }

    fn check(&self) -> Result<(), Error> {
        let need = match self.packet_type() {
            PT_SR => 28 + self.count() as usize * ReportBlock::LEN,
            PT_RR => 8 + self.count() as usize * ReportBlock::LEN,
            PT_BYE => 4 + self.count() as usize * 4,
            _ => 4,
        };
        if need > self.b.len() {
            return Err(Error::BadCount);
        }
        Ok(())
    }
}

/// Iterator over the packets of a compound RTCP packet (section 6.1).
/// Yields an error once and then stops if the compound is malformed.
#[derive(Clone, Debug)]
pub struct Compound<'a> {
    rest: &'a [u8],
    first: bool,
}

impl<'a> Compound<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf, first: true }
    }
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<Packet<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = (|| {
            let h = self.rest.get(..4).ok_or(Error::Truncated)?;
            if h[0] >> 6 != 2 {
                return Err(Error::BadVersion);
            }
            let len = (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1) * 4;
            let b = self.rest.get(..len).ok_or(Error::Truncated)?;
            let p = Packet { b };
            if self.first && !matches!(p.packet_type(), PT_SR | PT_RR) {
                return Err(Error::NotReportFirst);
            }
            p.check()?;
            Ok((p, len))
        })();
        self.first = false;
        match r {
            Ok((p, len)) => {
                self.rest = &self.rest[len..];
                Some(Ok(p))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

fn header(buf: &mut [u8], count: u8, pt: u8, len_bytes: usize) {
    buf[0] = (2 << 6) | (count & 0x1f);
    buf[1] = pt;
    buf[2..4].copy_from_slice(&((len_bytes / 4 - 1) as u16).to_be_bytes());
}

/// Writes a compound report: an SR if `sender` is given, else an RR, with
/// at most one report block, then an SDES packet with `cname` (truncated to
/// 255 bytes). Returns the length, or 0 if `buf` is too short.
pub fn emit_report(buf: &mut [u8], ssrc: u32, sender: Option<SenderInfo>, block: Option<ReportBlock>, cname: &[u8]) -> usize {
    let cname = &cname[..cname.len().min(255)];
    let rc = usize::from(block.is_some());
    let report_len = 8 + if sender.is_some() { SenderInfo::LEN } else { 0 } + rc * ReportBlock::LEN;
    // SDES: header, SSRC, CNAME item (type, length, text), END, pad to 32 bits.
    let sdes_len = (8 + 2 + cname.len() + 1).div_ceil(4) * 4;
    let total = report_len + sdes_len;
    let Some(buf) = buf.get_mut(..total) else { return 0 };
    buf.fill(0);
    header(buf, rc as u8, if sender.is_some() { PT_SR } else { PT_RR }, report_len);
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    let mut at = 8;
    if let Some(s) = sender {
        buf[8..16].copy_from_slice(&s.ntp.to_be_bytes());
        buf[16..20].copy_from_slice(&s.rtp_ts.to_be_bytes());
        buf[20..24].copy_from_slice(&s.packets.to_be_bytes());
        buf[24..28].copy_from_slice(&s.octets.to_be_bytes());
        at = 28;
    }
    if let Some(b) = block {
        b.emit(&mut buf[at..]);
    }
    let sdes = &mut buf[report_len..];
    header(sdes, 1, PT_SDES, sdes_len);
    sdes[4..8].copy_from_slice(&ssrc.to_be_bytes());
    sdes[8] = 1; // CNAME
    sdes[9] = cname.len() as u8;
    sdes[10..10 + cname.len()].copy_from_slice(cname);
    // The END item and padding are the zeros already there.
    total
}

/// Writes an RR (no blocks) followed by a BYE for `ssrc` (section 6.6).
/// Returns the length, or 0 if `buf` is too short.
pub fn emit_bye(buf: &mut [u8], ssrc: u32) -> usize {
    let Some(b) = buf.get_mut(..16) else { return 0 };
    header(b, 0, PT_RR, 8);
    b[4..8].copy_from_slice(&ssrc.to_be_bytes());
    header(&mut b[8..], 1, PT_BYE, 8);
    b[12..16].copy_from_slice(&ssrc.to_be_bytes());
    16
}

/// The middle 32 bits of an NTP timestamp (the LSR/DLSR format).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn report_block_round_trip_and_negative_loss() {
        let b = ReportBlock { ssrc: 9, fraction_lost: 64, cumulative_lost: -3, highest_seq: 0x1_0005, jitter: 40, lsr: 7, dlsr: 8 };
        let mut buf = [0u8; 24];
        assert_eq!(b.emit(&mut buf), 24);
        assert_eq!(&buf[4..8], &[64, 0xff, 0xff, 0xfd]);
        assert_eq!(ReportBlock::parse(&buf), Ok(b));
        let big = ReportBlock { cumulative_lost: 1 << 30, ..b };
        big.emit(&mut buf);
        assert_eq!(ReportBlock::parse(&buf).unwrap().cumulative_lost, 0x7f_ffff, "clamped to 24 bits");
    }

    #[test]
    fn sender_report_with_sdes_parses_back() {
        let info = SenderInfo { ntp: 0x0102_0304_0506_0708, rtp_ts: 160, packets: 3, octets: 480 };
        let block = ReportBlock { ssrc: 77, fraction_lost: 1, cumulative_lost: 2, highest_seq: 3, jitter: 4, lsr: 5, dlsr: 6 };
        let mut buf = [0u8; 128];
        let n = emit_report(&mut buf, 0xabc, Some(info), Some(block), b"gw@branch");
        assert_eq!(n % 4, 0);
        let pkts: std::vec::Vec<_> = Compound::new(&buf[..n]).collect::<Result<_, _>>().unwrap();
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[0].packet_type(), PT_SR);
        assert_eq!(pkts[0].ssrc(), 0xabc);
        assert_eq!(pkts[0].sender_info(), Some(info));
        assert_eq!(pkts[0].report_block(0), Some(block));
        assert_eq!(pkts[0].report_block(1), None);
        assert_eq!(pkts[1].packet_type(), PT_SDES);
        assert_eq!(&pkts[1].bytes()[8..19], b"\x01\x09gw@branch");
    }

    #[test]
    fn receiver_report_without_blocks_and_bye() {
        let mut buf = [0u8; 64];
        let n = emit_report(&mut buf, 5, None, None, b"");
        let p = Compound::new(&buf[..n]).next().unwrap().unwrap();
        assert_eq!((p.packet_type(), p.count(), p.sender_info()), (PT_RR, 0, None));
        let n = emit_bye(&mut buf, 5);
        let types: std::vec::Vec<u8> = Compound::new(&buf[..n]).map(|p| p.unwrap().packet_type()).collect();
        assert_eq!(types, [PT_RR, PT_BYE]);
        assert_eq!(emit_bye(&mut buf[..15], 5), 0);
        assert_eq!(emit_report(&mut buf[..19], 5, None, None, b"x"), 0);
        assert_eq!(emit_report(&mut buf[..20], 5, None, None, b"x"), 20);
    }

    #[test]
    fn malformed_compounds_are_named() {
        let mut buf = [0u8; 64];
        let n = emit_report(&mut buf, 5, None, Some(ReportBlock::default()), b"a");
        let first = |b: &[u8]| Compound::new(b).next().unwrap().err();
        assert_eq!(first(&buf[..3]), Some(Error::Truncated));
        assert_eq!(first(&buf[..20]), Some(Error::Truncated));
        let mut bad = buf;
        bad[0] = 0x40;
        assert_eq!(first(&bad[..n]), Some(Error::BadVersion));
        let mut bad = buf;
        bad[0] = 0x80 | 2; // two blocks claimed, one present
        assert_eq!(first(&bad[..n]), Some(Error::BadCount));
        let mut bad = buf;
        bad[1] = PT_BYE;
        assert_eq!(first(&bad[..n]), Some(Error::NotReportFirst));
    }

    #[test]
    fn fuzz_seeds_parse_as_intended() {
        let sr = include_bytes!("../fuzz/corpus/rtcp_receive/seed-sr-sdes");
        let pkts: std::vec::Vec<_> = Compound::new(sr).collect::<Result<_, _>>().unwrap();
        assert_eq!(pkts.len(), 2);
        let info = pkts[0].sender_info().unwrap();
        assert_eq!((info.rtp_ts, info.packets, info.octets), (160, 10, 1600));
        let b = pkts[0].report_block(0).unwrap();
        assert_eq!((b.ssrc, b.fraction_lost, b.cumulative_lost, b.highest_seq, b.jitter), (1, 12, 2, 65543, 40));
        let bye = include_bytes!("../fuzz/corpus/rtcp_receive/seed-rr-bye");
        let types: std::vec::Vec<u8> = Compound::new(bye).map(|p| p.unwrap().packet_type()).collect();
        assert_eq!(types, [PT_RR, PT_BYE]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for p in Compound::new(&bytes).take(64).flatten() {
                let _ = (p.sender_info(), p.report_block(0), p.report_block(31), p.ssrc());
            }
        }
    }
}
