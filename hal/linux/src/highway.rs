//! The PCM highway's frame layout: which byte of a period belongs to which
//! timeslot, and how a slot's sample is coded.
//!
//! A period is [`FRAME_SAMPLES`] highway frames (10 ms at 8 kHz). Each highway
//! frame carries `slots` timeslots in order; ALSA sees one channel per
//! timeslot, interleaved (frame 0 slot 0, frame 0 slot 1, ..., frame 1 slot
//! 0 ...). A slot holds one sample: G.711 mu-law or A-law (one byte, as the
//! line chips send it with their PCM format set to µ-law/A-law: Si3215 reg 1,
//! Si3050 reg 33) or 16-bit linear (two bytes, little-endian as ALSA's
//! `S16_LE`). The rt thread works on [`Frame`]s of linear samples indexed by
//! timeslot; [`Highway::interleave`] and [`Highway::deinterleave`] convert
//! between the two without allocating.

use gw_board::{PcmDesc, SlotFormat};
use gw_dsp::g711::{self, Law};
use gw_hal::{Frame, FRAME_SAMPLES};

/// The layout of one highway: its slot format and slots per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Highway {
    format: SlotFormat,
    slots: usize,
}

impl Highway {
    /// A highway of `slots` timeslots (at least one) in `format`.
    pub fn new(format: SlotFormat, slots: usize) -> Self {
        Highway { format, slots: slots.max(1) }
    }

    /// The highway of a board's `[pcm]` section.
    pub fn from_desc(pcm: &PcmDesc) -> Self {
        Highway::new(pcm.format, usize::from(pcm.slots))
    }

    pub fn format(&self) -> SlotFormat {
        self.format
    }

    /// Timeslots per highway frame (ALSA channels).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Bytes of one slot.
    pub fn slot_bytes(&self) -> usize {
        usize::from(self.format.slot_bits() / 8)
    }

    /// Bytes of one 10 ms period of the whole highway.
    pub fn period_bytes(&self) -> usize {
        FRAME_SAMPLES * self.slots * self.slot_bytes()
    }

    fn law(&self) -> Option<Law> {
        match self.format {
            SlotFormat::Ulaw => Some(Law::Ulaw),
            SlotFormat::Alaw => Some(Law::Alaw),
            _ => None,
        }
    }

    /// Writes one period into `out` (at least [`Highway::period_bytes`]
    /// long): `tx[t]` goes to timeslot `t`; timeslots without a frame in `tx`
    /// carry silence. Extra frames in `tx` (beyond `slots`) are ignored.
    pub fn interleave(&self, tx: &[Frame], out: &mut [u8]) {
        let sb = self.slot_bytes();
        let stride = self.slots * sb;
        for n in 0..FRAME_SAMPLES {
            for t in 0..self.slots {
                let slot = tx.get(t);
                let s = slot.map_or(0, |f| f[n]);
                let at = n * stride + t * sb;
                let Some(dst) = out.get_mut(at..at + sb) else { return };
                match self.law() {
                    Some(law) => dst[0] = if slot.is_some() { g711::encode(law, s) } else { law.silence() },
                    None => dst.copy_from_slice(&s.to_le_bytes()),
                }
            }
        }
    }

    /// Reads one period from `input` into `rx`: timeslot `t` into `rx[t]`.
    /// Frames of `rx` beyond the highway's slots are set to silence; a short
    /// `input` leaves silence where it has no bytes.
    pub fn deinterleave(&self, input: &[u8], rx: &mut [Frame]) {
        let sb = self.slot_bytes();
        let stride = self.slots * sb;
        for (t, frame) in rx.iter_mut().enumerate() {
            for (n, s) in frame.iter_mut().enumerate() {
                let at = n * stride + t * sb;
                *s = match (t < self.slots).then(|| input.get(at..at + sb)).flatten() {
                    None => 0,
                    Some(b) => match self.law() {
                        Some(law) => g711::decode(law, b[0]),
                        None => i16::from_le_bytes([b[0], b[1]]),
                    },
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(start: i16, step: i16) -> Frame {
        core::array::from_fn(|n| start.wrapping_add(step.wrapping_mul(n as i16)))
    }

    #[test]
    fn linear16_slots_are_little_endian_and_interleaved() {
        let hw = Highway::new(SlotFormat::Linear16, 2);
        assert_eq!(hw.period_bytes(), 80 * 2 * 2);
        let tx = [[0x0102; FRAME_SAMPLES], [-2; FRAME_SAMPLES]];
        let mut buf = vec![0xAA; hw.period_bytes()];
        hw.interleave(&tx, &mut buf);
        // Frame 0: slot 0 = 0x0102 LE, slot 1 = -2 LE; frame 1 the same.
        assert_eq!(&buf[..8], &[0x02, 0x01, 0xFE, 0xFF, 0x02, 0x01, 0xFE, 0xFF]);
        assert_eq!(&buf[buf.len() - 4..], &[0x02, 0x01, 0xFE, 0xFF]);
    }

    #[test]
    fn linear16_round_trip_is_exact() {
        let hw = Highway::new(SlotFormat::Linear16, 3);
        let tx = [ramp(-30000, 700), ramp(5, -3), ramp(i16::MIN, 1)];
        let mut buf = vec![0; hw.period_bytes()];
        hw.interleave(&tx, &mut buf);
        let mut rx = [[7i16; FRAME_SAMPLES]; 3];
        hw.deinterleave(&buf, &mut rx);
        assert_eq!(rx, tx);
    }

    #[test]
    fn ulaw_and_alaw_slots_are_one_g711_byte_each() {
        for (format, law) in [(SlotFormat::Ulaw, Law::Ulaw), (SlotFormat::Alaw, Law::Alaw)] {
            let hw = Highway::new(format, 4);
            assert_eq!(hw.period_bytes(), 80 * 4);
            let tx = [ramp(-8000, 200), ramp(100, 0), ramp(8000, -200)];
            let mut buf = vec![0; hw.period_bytes()];
            hw.interleave(&tx, &mut buf);
            for n in 0..FRAME_SAMPLES {
                for (t, f) in tx.iter().enumerate() {
                    assert_eq!(buf[n * 4 + t], g711::encode(law, f[n]), "{format:?} frame {n} slot {t}");
                }
                // Slot 3 has no frame: the law's silence code.
                assert_eq!(buf[n * 4 + 3], law.silence());
            }
            let mut rx = [[1i16; FRAME_SAMPLES]; 4];
            hw.deinterleave(&buf, &mut rx);
            for (t, f) in tx.iter().enumerate() {
                for n in 0..FRAME_SAMPLES {
                    assert_eq!(rx[t][n], g711::decode(law, g711::encode(law, f[n])));
                    // G.711 keeps a sample within half its segment's step:
                    // at most 1/32 of the value plus the smallest step.
                    assert!((i32::from(rx[t][n]) - i32::from(f[n])).abs() <= 16 + i32::from(f[n]).abs() / 16);
                }
            }
            assert!(rx[3].iter().all(|&s| s.abs() <= 8), "{format:?}: silence decodes to (near) zero");
        }
    }

    #[test]
    fn mulaw_known_codes() {
        // G.711 Table 2: 0 is 0xFF in µ-law; A-law's silence 0xD5 decodes to 8.
        let hw = Highway::new(SlotFormat::Ulaw, 1);
        let mut buf = vec![0; hw.period_bytes()];
        hw.interleave(&[[0; FRAME_SAMPLES]], &mut buf);
        assert!(buf.iter().all(|&b| b == 0xFF));
        let hw = Highway::new(SlotFormat::Alaw, 1);
        let mut rx = [[0i16; FRAME_SAMPLES]];
        hw.deinterleave(&[0xD5; 80], &mut rx);
        assert!(rx[0].iter().all(|&s| s == 8));
    }

    #[test]
    fn short_buffers_and_extra_frames_never_panic() {
        let hw = Highway::new(SlotFormat::Linear16, 2);
        let tx = [[5i16; FRAME_SAMPLES]; 5];
        let mut short = vec![0u8; 7];
        hw.interleave(&tx, &mut short);
        assert_eq!(&short[..4], &[5, 0, 5, 0]);
        let mut rx = [[9i16; FRAME_SAMPLES]; 4];
        hw.deinterleave(&short, &mut rx);
        assert_eq!(rx[0][0], 5);
        assert_eq!(rx[1][0], 5);
        assert_eq!(rx[0][1], 5, "frame 1 slot 0 is bytes 4..6");
        assert_eq!(rx[1][1], 0, "frame 1 slot 1 (bytes 6..8) is missing: silence");
        assert!(rx[2].iter().chain(rx[3].iter()).all(|&s| s == 0), "frames beyond the slots are silent");
        // Zero slots is taken as one.
        assert_eq!(Highway::new(SlotFormat::Ulaw, 0).slots(), 1);
    }
}
