//! TEI management messages (Q.921 5.3.1, table 8): the information field of
//! UI frames on SAPI 63, TEI 127. Only the codec lives here; the TEI
//! assignment procedures (user side T202/N202, network side allocation and
//! checks for point-to-multipoint BRI) are for a later session.
//!
//! ```text
//!  octet 1:   management entity identifier 0x0F
//!  octets 2-3: reference number Ri
//!  octet 4:   message type
//!  octet 5..: action indicator Ai (7 bits) | E; E = 0: another Ai follows
//!             (identity check response only)
//! ```

/// Layer management entity identifier (Q.921 5.3.1).
pub const MANAGEMENT_ENTITY: u8 = 0x0F;

/// Ai value meaning "any TEI value acceptable" (identity request) or "all
/// TEIs" (check request, remove).
pub const AI_GROUP: u8 = 127;

/// Message types (Q.921 table 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    IdentityRequest,
    IdentityAssigned,
    IdentityDenied,
    IdentityCheckRequest,
    IdentityCheckResponse,
    IdentityRemove,
    IdentityVerify,
}

impl MessageType {
    pub const fn code(self) -> u8 {
        match self {
            MessageType::IdentityRequest => 1,
            MessageType::IdentityAssigned => 2,
            MessageType::IdentityDenied => 3,
            MessageType::IdentityCheckRequest => 4,
            MessageType::IdentityCheckResponse => 5,
            MessageType::IdentityRemove => 6,
            MessageType::IdentityVerify => 7,
        }
    }

    pub const fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => MessageType::IdentityRequest,
            2 => MessageType::IdentityAssigned,
            3 => MessageType::IdentityDenied,
            4 => MessageType::IdentityCheckRequest,
            5 => MessageType::IdentityCheckResponse,
            6 => MessageType::IdentityRemove,
            7 => MessageType::IdentityVerify,
            _ => return None,
        })
    }
}

/// Why an information field is not a TEI management message. Q.921 5.3.x:
/// such messages are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    TooShort,
    NotManagementEntity(u8),
    UnknownMessageType(u8),
    /// An extension bit says more Ai octets follow but none do, or several
    /// Ai octets in a message that carries one.
    BadActionIndicator,
}

/// A TEI management message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_type: MessageType,
    /// Reference number Ri (random, from the user, in identity requests).
    pub ri: u16,
    /// Action indicator(s): TEI values, 0..=127. At least one; several only
    /// in an identity check response.
    pub ai: Vec<u8>,
}

impl Message {
    pub fn new(message_type: MessageType, ri: u16, ai: u8) -> Self {
        Message { message_type, ri, ai: vec![ai & 0x7F] }
    }

    pub fn parse(d: &[u8]) -> Result<Self, Error> {
        if d.len() < 5 {
            return Err(Error::TooShort);
        }
        if d[0] != MANAGEMENT_ENTITY {
            return Err(Error::NotManagementEntity(d[0]));
        }
        let message_type = MessageType::from_code(d[3]).ok_or(Error::UnknownMessageType(d[3]))?;
        let ri = u16::from_be_bytes([d[1], d[2]]);
        let mut ai = Vec::new();
        let mut ended = false;
        for &o in &d[4..] {
            ai.push(o >> 1);
            if o & 1 == 1 {
                // Octets after the last Ai are not part of the message.
                ended = true;
                break;
            }
        }
        if !ended || (ai.len() > 1 && message_type != MessageType::IdentityCheckResponse) {
            return Err(Error::BadActionIndicator);
        }
        Ok(Message { message_type, ri, ai })
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let [r0, r1] = self.ri.to_be_bytes();
        let mut v = vec![MANAGEMENT_ENTITY, r0, r1, self.message_type.code()];
        let n = self.ai.len().max(1);
        for i in 0..n {
            let ai = self.ai.get(i).copied().unwrap_or(AI_GROUP) & 0x7F;
            v.push(ai << 1 | (i + 1 == n) as u8);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_messages() {
        // User: identity request, Ri 0x1234, any TEI (testdata/lapd/tei-identity-request.bin).
        let frame = include_bytes!("../testdata/lapd/tei-identity-request.bin");
        let r = crate::lapd::Repr::parse_bytes(frame).unwrap();
        let m = Message::parse(r.info).unwrap();
        assert_eq!(m, Message::new(MessageType::IdentityRequest, 0x1234, AI_GROUP));
        assert_eq!(m.to_vec(), r.info);
        // Network: identity assigned, TEI 64.
        assert_eq!(Message::new(MessageType::IdentityAssigned, 0x1234, 64).to_vec(), [0x0F, 0x12, 0x34, 0x02, 0x81]);
        // Check response listing TEIs 64 and 65.
        let m = Message::parse(&[0x0F, 0x00, 0x07, 0x05, 0x80, 0x83]).unwrap();
        assert_eq!((m.message_type, m.ai.as_slice()), (MessageType::IdentityCheckResponse, &[64u8, 65][..]));
    }

    #[test]
    fn bad_messages() {
        assert_eq!(Message::parse(&[0x0F, 0, 0, 1]), Err(Error::TooShort));
        assert_eq!(Message::parse(&[0x0E, 0, 0, 1, 0xFF]), Err(Error::NotManagementEntity(0x0E)));
        assert_eq!(Message::parse(&[0x0F, 0, 0, 9, 0xFF]), Err(Error::UnknownMessageType(9)));
        assert_eq!(Message::parse(&[0x0F, 0, 0, 1, 0xFE]), Err(Error::BadActionIndicator));
        assert_eq!(Message::parse(&[0x0F, 0, 0, 2, 0x80, 0x83]), Err(Error::BadActionIndicator));
    }

    proptest! {
        #[test]
        fn roundtrip(t in 1u8..8, ri: u16, ai in proptest::collection::vec(0u8..128, 1..4)) {
            let message_type = MessageType::from_code(t).unwrap();
            let ai = if message_type == MessageType::IdentityCheckResponse { ai } else { ai[..1].to_vec() };
            let m = Message { message_type, ri, ai };
            prop_assert_eq!(Message::parse(&m.to_vec()), Ok(m));
        }

        #[test]
        fn any_octets(d in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Ok(m) = Message::parse(&d) {
                prop_assert!(!m.ai.is_empty());
                prop_assert_eq!(Message::parse(&m.to_vec()), Ok(m));
            }
        }
    }
}
