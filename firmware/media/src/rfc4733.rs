//! RTP payload for telephone events (RFC 4733 section 2.3): DTMF digits and
//! the fax/modem tones of RFC 4734.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |     event     |E|R| volume    |          duration             |
//! ```
//! Event codes for DTMF are in section 3.2 (table 7): 0-9, `*`=10, `#`=11,
//! A-D = 12-15. The modem and fax tones we send and report are the V.25 /
//! V.8 answer tones and the T.30 calling tone of RFC 4734 section 2 (events
//! 32-36, carried in the same telephone-event payload type). Unlike DTMF they
//! are sent alongside the audio, not instead of it (RFC 4733 section 2.2):
//! the modems at both ends need the tone in-band.

/// The four-byte event payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    /// E bit: this packet reports the end of the event (section 2.5.1.4).
    pub end: bool,
    /// Power level in -dBm0, 0..=63 (section 2.3.4).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units (section 2.3.5).
    pub duration: u16,
}

/// Why a payload is not a telephone event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer than four bytes.
    Truncated,
}

impl EventPayload {
    pub const LEN: usize = 4;

    /// Parses the first event of `payload`. Further bytes (redundant events,
    /// RFC 4733 section 2.6) are ignored; the R bit is ignored on receipt.
    pub fn parse(payload: &[u8]) -> Result<Self, Error> {
        let b = payload.get(..Self::LEN).ok_or(Error::Truncated)?;
        Ok(Self { event: b[0], end: b[1] & 0x80 != 0, volume: b[1] & 0x3f, duration: u16::from_be_bytes([b[2], b[3]]) })
    }

    /// The four wire bytes (R bit zero, volume clamped to six bits).
    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3f), d[0], d[1]]
    }

    /// Writes the payload to the start of `buf`; returns 4, or 0 if `buf` is
    /// too short.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        match buf.get_mut(..Self::LEN) {
            Some(b) => {
                b.copy_from_slice(&self.to_bytes());
                Self::LEN
            }
            None => 0,
        }
    }
}

/// ASCII DTMF digit (`0-9 * # A-D`, lower case accepted) to its event code.
pub fn digit_to_event(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'*' => Some(10),
        b'#' => Some(11),
        b'A'..=b'D' => Some(d - b'A' + 12),
        b'a'..=b'd' => Some(d - b'a' + 12),
        _ => None,
    }
}

/// Event code to ASCII digit (upper-case A-D); `None` for non-DTMF events.
pub fn event_to_digit(e: u8) -> Option<u8> {
    match e {
        0..=9 => Some(b'0' + e),
        10 => Some(b'*'),
        11 => Some(b'#'),
        12..=15 => Some(b'A' + e - 12),
        _ => None,
    }
}

/// ANS: 2100 Hz answer tone (V.25, V.8), RFC 4734 section 2.
pub const ANS: u8 = 32;
/// /ANS: ANS with phase reversals every 450 ms (V.25, echo cancellers off).
pub const ANS_REVERSED: u8 = 33;
/// ANSam: ANS amplitude-modulated at 15 Hz (V.8).
pub const ANSAM: u8 = 34;
/// /ANSam: ANSam with phase reversals.
pub const ANSAM_REVERSED: u8 = 35;
/// CNG: 1100 Hz fax calling tone (T.30).
pub const CNG: u8 = 36;

/// True for the RFC 4734 tone events this crate sends and reports
/// ([`ANS`]..=[`CNG`]); V.21 and the other data events are not.
pub fn is_modem_tone(e: u8) -> bool {
    (ANS..=CNG).contains(&e)
}

/// The RFC 4734 name of a tone event (for logs and the CLI).
pub fn modem_tone_name(e: u8) -> Option<&'static str> {
    match e {
        ANS => Some("ANS"),
        ANS_REVERSED => Some("/ANS"),
        ANSAM => Some("ANSam"),
        ANSAM_REVERSED => Some("/ANSam"),
        CNG => Some("CNG"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_layout_matches_rfc() {
        // '#' end, volume 10, duration 800
        let p = EventPayload { event: 11, end: true, volume: 10, duration: 800 };
        assert_eq!(p.to_bytes(), [11, 0x8a, 0x03, 0x20]);
        assert_eq!(EventPayload::parse(&[11, 0xca, 0x03, 0x20]).unwrap(), p, "R bit ignored");
        assert_eq!(EventPayload::parse(&[1, 2, 3]), Err(Error::Truncated));
        let mut short = [0u8; 3];
        assert_eq!(p.emit(&mut short), 0);
    }

    #[test]
    fn digit_table() {
        let digits = b"0123456789*#ABCD";
        for (code, &d) in digits.iter().enumerate() {
            assert_eq!(digit_to_event(d), Some(code as u8));
            assert_eq!(event_to_digit(code as u8), Some(d));
        }
        assert_eq!(digit_to_event(b'b'), Some(13));
        assert_eq!(digit_to_event(b'E'), None);
        assert_eq!(event_to_digit(16), None);
    }

    #[test]
    fn modem_tone_table() {
        let named: std::vec::Vec<_> = (0..=255u8).filter_map(|e| modem_tone_name(e).map(|n| (e, n))).collect();
        assert_eq!(named, [(32, "ANS"), (33, "/ANS"), (34, "ANSam"), (35, "/ANSam"), (36, "CNG")]);
        let tones: std::vec::Vec<u8> = (0..=255u8).filter(|&e| is_modem_tone(e)).collect();
        assert_eq!(tones, [32, 33, 34, 35, 36]);
        assert!((0..=255u8).all(|e| !(is_modem_tone(e) && event_to_digit(e).is_some())), "disjoint from DTMF");
    }

    proptest! {
        #[test]
        fn round_trip(event in any::<u8>(), end in any::<bool>(), volume in 0u8..64, duration in any::<u16>()) {
            let p = EventPayload { event, end, volume, duration };
            prop_assert_eq!(EventPayload::parse(&p.to_bytes()).unwrap(), p);
        }
    }
}
