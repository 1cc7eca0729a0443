//! Sim-link frame codec (`hal/SIMLINK.md`, "Framing" and "Messages").
//!
//! Shared by the card ([`super::SimCard`]) and by `linesim`, so both ends agree
//! on one implementation of the byte layout. Pure functions: no I/O.

use crate::isdn::{Alarms, L1State, L1Status, Side, SpanKind, MAX_FRAME};
use crate::{Frame, LineFeed, Polarity, FRAME_SAMPLES};

/// Protocol version spoken here (SIMLINK.md, HELLO).
pub const VERSION: u8 = 1;
/// Bytes of the frame header: type, port, length (u16 big endian).
pub const HEADER_LEN: usize = 4;
/// Largest payload a receiver accepts; above it the connection is closed.
pub const MAX_PAYLOAD: usize = 1024;
/// Port field value for messages that concern no single port.
pub const PORT_NONE: u8 = 0xFF;
/// Payload bytes of one AUDIO frame: 80 samples, i16 little endian.
pub const AUDIO_PAYLOAD: usize = FRAME_SAMPLES * 2;

/// Message type codes (SIMLINK.md, "Messages").
pub mod msg_type {
    pub const HELLO: u8 = 0x01;
    pub const HOOK: u8 = 0x10;
    pub const FLASH: u8 = 0x11;
    pub const RING: u8 = 0x20;
    pub const FEED: u8 = 0x21;
    pub const AUDIO: u8 = 0x30;
    /// FXO ports only (SIMLINK.md, "FXO ports").
    pub const POLARITY: u8 = 0x40;
    pub const LOOP_CURRENT: u8 = 0x41;
    pub const SEIZE: u8 = 0x42;
    /// ISDN spans (SIMLINK.md, "ISDN spans").
    pub const SPAN: u8 = 0x50;
    pub const DFRAME: u8 = 0x51;
    pub const L1: u8 = 0x52;
    pub const L1_REQUEST: u8 = 0x53;
}

/// Largest DFRAME payload: a whole LAPD frame and its 2 FCS octets.
pub const MAX_DFRAME: usize = MAX_FRAME + 2;

/// What a port of the card is (HELLO's optional kind list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// A phone is on the line; the card is the exchange. Wire code 0.
    Fxs,
    /// An exchange line; the card is the phone. Wire code 1.
    Fxo,
    /// A B-channel of an ISDN span: audio only (the span's D channel and
    /// layer 1 travel in SPAN, DFRAME and L1 messages). Wire code 2.
    BChannel,
}

impl PortKind {
    pub fn code(self) -> u8 {
        match self {
            PortKind::Fxs => 0,
            PortKind::Fxo => 1,
            PortKind::BChannel => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<PortKind> {
        match code {
            0 => Some(PortKind::Fxs),
            1 => Some(PortKind::Fxo),
            2 => Some(PortKind::BChannel),
            _ => None,
        }
    }
}

/// One decoded sim-link message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Both directions; `ports` is 0 when sent by linesim. `kinds` is empty
    /// when every port is FXS (the 2-byte HELLO), else one kind per port.
    Hello { version: u8, ports: u8, kinds: Vec<PortKind> },
    /// linesim -> card: loop closed (`off_hook`) or open.
    Hook { port: u8, off_hook: bool },
    /// linesim -> card: a hook flash.
    Flash { port: u8 },
    /// Ring voltage on/off: card -> linesim on an FXS port, linesim -> card
    /// on an FXO port (the central office rings the card).
    Ring { port: u8, on: bool },
    /// card -> linesim: DC feed.
    Feed { port: u8, feed: LineFeed },
    /// Both directions: one 10 ms frame.
    Audio { port: u8, samples: Frame },
    /// linesim -> card, FXO: the line's polarity.
    Polarity { port: u8, polarity: Polarity },
    /// linesim -> card, FXO: loop current present (`on`) or dropped (CPC).
    LoopCurrent { port: u8, on: bool },
    /// card -> linesim, FXO: the card closes (`on`) or opens the loop.
    Seize { port: u8, on: bool },
    /// card -> linesim, after HELLO: span `span` is a `kind` interface whose
    /// card side plays `side`; its B-channels are card ports
    /// `first_channel..first_channel + channels`.
    Span { span: u8, kind: SpanKind, side: Side, first_channel: u8, channels: u8 },
    /// Both directions: one D-channel frame of span `span`, the LAPD octets
    /// followed by their FCS-16, low octet first (the receiver checks it).
    DFrame { span: u8, octets: Vec<u8> },
    /// linesim -> card: layer-1 state and alarms of span `span`.
    L1 { span: u8, status: L1Status },
    /// card -> linesim: the card asks for layer-1 activation (`true`) or deactivation.
    L1Request { span: u8, activate: bool },
    /// A type this version does not know; its payload was skipped.
    Unknown { msg_type: u8, port: u8 },
}

/// Why a byte stream is not a valid sim-link stream. Every variant is a
/// protocol error: the receiver closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The length field exceeds [`MAX_PAYLOAD`].
    TooLong { length: usize },
    /// A known message type with a payload of the wrong size.
    BadLength { msg_type: u8, length: usize },
    /// A known message type with a value out of range (e.g. FEED 7).
    BadValue { msg_type: u8, value: u8 },
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::TooLong { length } => write!(f, "frame length {length} above {MAX_PAYLOAD}"),
            WireError::BadLength { msg_type, length } => {
                write!(f, "message type {msg_type:#04x} with bad payload length {length}")
            }
            WireError::BadValue { msg_type, value } => {
                write!(f, "message type {msg_type:#04x} with bad value {value}")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Wire code of a [`LineFeed`] (FEED payload).
pub fn feed_code(feed: LineFeed) -> u8 {
    match feed {
        LineFeed::Open => 0,
        LineFeed::Forward => 1,
        LineFeed::Reverse => 2,
        LineFeed::OnHookTransmission => 3,
    }
}

/// Inverse of [`feed_code`].
pub fn feed_from_code(code: u8) -> Option<LineFeed> {
    match code {
        0 => Some(LineFeed::Open),
        1 => Some(LineFeed::Forward),
        2 => Some(LineFeed::Reverse),
        3 => Some(LineFeed::OnHookTransmission),
        _ => None,
    }
}

/// Wire code of an [`L1State`] (L1 payload): 0 deactivated, 1 activating, 2 activated.
pub fn l1_state_code(s: L1State) -> u8 {
    match s {
        L1State::Deactivated => 0,
        L1State::Activating => 1,
        L1State::Activated => 2,
    }
}

/// Inverse of [`l1_state_code`].
pub fn l1_state_from_code(c: u8) -> Option<L1State> {
    match c {
        0 => Some(L1State::Deactivated),
        1 => Some(L1State::Activating),
        2 => Some(L1State::Activated),
        _ => None,
    }
}

/// A DFRAME payload for the whole LAPD frame `frame`: the frame and its
/// FCS-16 (Q.921 2.7), low octet first.
pub fn dframe_payload(frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(frame.len() + 2);
    v.extend_from_slice(frame);
    v.extend_from_slice(&gw_isdn::hdlc::fcs16(frame).to_le_bytes());
    v
}

/// The whole frame inside a DFRAME payload, if its FCS checks.
pub fn dframe_check(octets: &[u8]) -> Option<&[u8]> {
    if octets.len() >= 2 && gw_isdn::hdlc::fcs_ok(octets) {
        Some(&octets[..octets.len() - 2])
    } else {
        None
    }
}

/// Decodes the first frame of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame, otherwise the
/// message and the number of bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let msg_type = buf[0];
    let port = buf[1];
    let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if length > MAX_PAYLOAD {
        return Err(WireError::TooLong { length });
    }
    let total = HEADER_LEN + length;
    if buf.len() < total {
        return Ok(None);
    }
    let payload = &buf[HEADER_LEN..total];
    let expect = |n: usize| {
        if length == n {
            Ok(())
        } else {
            Err(WireError::BadLength { msg_type, length })
        }
    };
    let bool_value = |v: u8| match v {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(WireError::BadValue { msg_type, value }),
    };
    let message = match msg_type {
        msg_type::HELLO => {
            if length < 2 {
                return Err(WireError::BadLength { msg_type, length });
            }
            let ports = payload[1];
            if length != 2 && length != 2 + usize::from(ports) {
                return Err(WireError::BadLength { msg_type, length });
            }
            let kinds = payload[2..]
                .iter()
                .map(|&c| PortKind::from_code(c).ok_or(WireError::BadValue { msg_type, value: c }))
                .collect::<Result<Vec<_>, _>>()?;
            Message::Hello { version: payload[0], ports, kinds }
        }
        msg_type::HOOK => {
            expect(1)?;
            Message::Hook { port, off_hook: bool_value(payload[0])? }
        }
        msg_type::FLASH => {
            expect(0)?;
            Message::Flash { port }
        }
        msg_type::RING => {
            expect(1)?;
            Message::Ring { port, on: bool_value(payload[0])? }
        }
        msg_type::FEED => {
            expect(1)?;
            let feed = feed_from_code(payload[0])
                .ok_or(WireError::BadValue { msg_type, value: payload[0] })?;
            Message::Feed { port, feed }
        }
        msg_type::AUDIO => {
            expect(AUDIO_PAYLOAD)?;
            let mut samples = [0i16; FRAME_SAMPLES];
            for (s, b) in samples.iter_mut().zip(payload.chunks_exact(2)) {
                *s = i16::from_le_bytes([b[0], b[1]]);
            }
            Message::Audio { port, samples }
        }
        msg_type::POLARITY => {
            expect(1)?;
            let polarity = if bool_value(payload[0])? { Polarity::Reversed } else { Polarity::Normal };
            Message::Polarity { port, polarity }
        }
        msg_type::LOOP_CURRENT => {
            expect(1)?;
            Message::LoopCurrent { port, on: bool_value(payload[0])? }
        }
        msg_type::SEIZE => {
            expect(1)?;
            Message::Seize { port, on: bool_value(payload[0])? }
        }
        msg_type::SPAN => {
            expect(4)?;
            let kind = match payload[0] {
                0 => SpanKind::Bri,
                1 => SpanKind::Pri,
                value => return Err(WireError::BadValue { msg_type, value }),
            };
            let side = match payload[1] {
                0 => Side::Te,
                1 => Side::Nt,
                value => return Err(WireError::BadValue { msg_type, value }),
            };
            Message::Span { span: port, kind, side, first_channel: payload[2], channels: payload[3] }
        }
        msg_type::DFRAME => {
            if length > MAX_DFRAME {
                return Err(WireError::BadLength { msg_type, length });
            }
            Message::DFrame { span: port, octets: payload.to_vec() }
        }
        msg_type::L1 => {
            expect(2)?;
            let state = l1_state_from_code(payload[0]).ok_or(WireError::BadValue { msg_type, value: payload[0] })?;
            let alarms = Alarms::from_bits(payload[1]).ok_or(WireError::BadValue { msg_type, value: payload[1] })?;
            Message::L1 { span: port, status: L1Status { state, alarms } }
        }
        msg_type::L1_REQUEST => {
            expect(1)?;
            Message::L1Request { span: port, activate: bool_value(payload[0])? }
        }
        _ => Message::Unknown { msg_type, port },
    };
    Ok(Some((message, total)))
}

fn header(out: &mut Vec<u8>, msg_type: u8, port: u8, length: usize) {
    out.push(msg_type);
    out.push(port);
    out.extend_from_slice(&(length as u16).to_be_bytes());
}

impl Message {
    /// Appends the frame for this message to `out`. `Unknown` encodes an
    /// empty payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello { version, ports, kinds } => {
                header(out, msg_type::HELLO, PORT_NONE, 2 + kinds.len());
                out.push(*version);
                out.push(*ports);
                out.extend(kinds.iter().map(|k| k.code()));
            }
            Message::Hook { port, off_hook } => {
                header(out, msg_type::HOOK, *port, 1);
                out.push(u8::from(*off_hook));
            }
            Message::Flash { port } => header(out, msg_type::FLASH, *port, 0),
            Message::Ring { port, on } => {
                header(out, msg_type::RING, *port, 1);
                out.push(u8::from(*on));
            }
            Message::Feed { port, feed } => {
                header(out, msg_type::FEED, *port, 1);
                out.push(feed_code(*feed));
            }
            Message::Audio { port, samples } => encode_audio(out, *port, samples),
            Message::Polarity { port, polarity } => {
                header(out, msg_type::POLARITY, *port, 1);
                out.push(u8::from(*polarity == Polarity::Reversed));
            }
            Message::LoopCurrent { port, on } => {
                header(out, msg_type::LOOP_CURRENT, *port, 1);
                out.push(u8::from(*on));
            }
            Message::Seize { port, on } => {
                header(out, msg_type::SEIZE, *port, 1);
                out.push(u8::from(*on));
            }
            Message::Span { span, kind, side, first_channel, channels } => {
                header(out, msg_type::SPAN, *span, 4);
                out.push(u8::from(*kind == SpanKind::Pri));
                out.push(u8::from(*side == Side::Nt));
                out.push(*first_channel);
                out.push(*channels);
            }
            Message::DFrame { span, octets } => {
                header(out, msg_type::DFRAME, *span, octets.len());
                out.extend_from_slice(octets);
            }
            Message::L1 { span, status } => {
                header(out, msg_type::L1, *span, 2);
                out.push(l1_state_code(status.state));
                out.push(status.alarms.bits());
            }
            Message::L1Request { span, activate } => {
                header(out, msg_type::L1_REQUEST, *span, 1);
                out.push(u8::from(*activate));
            }
            Message::Unknown { msg_type, port } => header(out, *msg_type, *port, 0),
        }
    }
}

/// Appends an AUDIO frame without building a [`Message`] (saves a 160-byte copy
/// on the hot path).
pub fn encode_audio(out: &mut Vec<u8>, port: u8, samples: &Frame) {
    header(out, msg_type::AUDIO, port, AUDIO_PAYLOAD);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(m: Message) {
        let mut buf = Vec::new();
        m.encode(&mut buf);
        let (back, used) = decode(&buf).unwrap().unwrap();
        assert_eq!(back, m);
        assert_eq!(used, buf.len());
        // Every strict prefix is incomplete, not an error.
        for n in 0..buf.len() {
            assert_eq!(decode(&buf[..n]), Ok(None), "prefix {n}");
        }
    }

    #[test]
    fn every_message_roundtrips() {
        roundtrip(Message::Hello { version: 1, ports: 4, kinds: vec![] });
        roundtrip(Message::Hello {
            version: 1,
            ports: 3,
            kinds: vec![PortKind::Fxs, PortKind::Fxo, PortKind::Fxo],
        });
        roundtrip(Message::Polarity { port: 4, polarity: Polarity::Reversed });
        roundtrip(Message::Polarity { port: 4, polarity: Polarity::Normal });
        roundtrip(Message::LoopCurrent { port: 5, on: false });
        roundtrip(Message::LoopCurrent { port: 5, on: true });
        roundtrip(Message::Seize { port: 4, on: true });
        roundtrip(Message::Seize { port: 4, on: false });
        roundtrip(Message::Hook { port: 2, off_hook: true });
        roundtrip(Message::Hook { port: 0, off_hook: false });
        roundtrip(Message::Flash { port: 3 });
        roundtrip(Message::Ring { port: 1, on: true });
        for code in 0..4 {
            roundtrip(Message::Feed { port: 0, feed: feed_from_code(code).unwrap() });
        }
        let mut samples = [0i16; FRAME_SAMPLES];
        for (i, s) in samples.iter_mut().enumerate() {
            *s = (i as i16 - 40) * 811;
        }
        roundtrip(Message::Audio { port: 1, samples });
        roundtrip(Message::Hello { version: 1, ports: 2, kinds: vec![PortKind::Fxs, PortKind::BChannel] });
        for (kind, side) in [(SpanKind::Bri, Side::Te), (SpanKind::Pri, Side::Nt)] {
            roundtrip(Message::Span { span: 1, kind, side, first_channel: 8, channels: 30 });
        }
        roundtrip(Message::DFrame { span: 0, octets: dframe_payload(&[0x00, 0x01, 0x7F]) });
        roundtrip(Message::DFrame { span: 1, octets: vec![0xAA; MAX_DFRAME] });
        roundtrip(Message::DFrame { span: 1, octets: vec![] });
        for state in 0..3 {
            for alarms in [0, 1, 2, 4, 7] {
                let status = L1Status {
                    state: l1_state_from_code(state).unwrap(),
                    alarms: Alarms::from_bits(alarms).unwrap(),
                };
                roundtrip(Message::L1 { span: 0, status });
            }
        }
        roundtrip(Message::L1Request { span: 1, activate: true });
        roundtrip(Message::L1Request { span: 0, activate: false });
    }

    #[test]
    fn isdn_layout_matches_simlink_md() {
        let mut buf = Vec::new();
        Message::Span { span: 1, kind: SpanKind::Pri, side: Side::Nt, first_channel: 8, channels: 30 }
            .encode(&mut buf);
        Message::L1 { span: 1, status: L1Status { state: L1State::Deactivated, alarms: Alarms { los: true, ..Default::default() } } }
            .encode(&mut buf);
        Message::L1Request { span: 0, activate: true }.encode(&mut buf);
        assert_eq!(buf, [0x50, 1, 0, 4, 1, 1, 8, 30, 0x52, 1, 0, 2, 0, 1, 0x53, 0, 0, 1, 1]);
        // SABME command from the network, TEI 0, P=1: 02 01 7F, FCS low octet first.
        let p = dframe_payload(&[0x02, 0x01, 0x7F]);
        assert_eq!(p.len(), 5);
        assert_eq!(dframe_check(&p), Some(&[0x02, 0x01, 0x7F][..]));
    }

    #[test]
    fn dframe_check_refuses_a_bad_fcs() {
        let mut p = dframe_payload(&[0x00, 0x01, 0x73]);
        for i in 0..p.len() {
            p[i] ^= 0x10;
            assert_eq!(dframe_check(&p), None, "bit flip in octet {i}");
            p[i] ^= 0x10;
        }
        assert!(dframe_check(&p).is_some());
        assert_eq!(dframe_check(&[]), None);
        assert_eq!(dframe_check(&[0x12]), None);
    }

    #[test]
    fn isdn_protocol_errors_are_named() {
        // SPAN: 4 bytes, kind and side 0 or 1.
        assert_eq!(decode(&[0x50, 0, 0, 3, 0, 0, 0]), Err(WireError::BadLength { msg_type: 0x50, length: 3 }));
        assert_eq!(decode(&[0x50, 0, 0, 4, 2, 0, 0, 2]), Err(WireError::BadValue { msg_type: 0x50, value: 2 }));
        assert_eq!(decode(&[0x50, 0, 0, 4, 0, 5, 0, 2]), Err(WireError::BadValue { msg_type: 0x50, value: 5 }));
        // L1: state 0..2, alarm bits 0..7.
        assert_eq!(decode(&[0x52, 0, 0, 2, 3, 0]), Err(WireError::BadValue { msg_type: 0x52, value: 3 }));
        assert_eq!(decode(&[0x52, 0, 0, 2, 2, 8]), Err(WireError::BadValue { msg_type: 0x52, value: 8 }));
        assert_eq!(decode(&[0x52, 0, 0, 1, 2]), Err(WireError::BadLength { msg_type: 0x52, length: 1 }));
        assert_eq!(decode(&[0x53, 0, 0, 1, 2]), Err(WireError::BadValue { msg_type: 0x53, value: 2 }));
        // DFRAME: at most MAX_DFRAME octets.
        let mut big = vec![0x51, 0, 0x01, 0x0B];
        big.resize(4 + 267, 0);
        assert_eq!(decode(&big), Err(WireError::BadLength { msg_type: 0x51, length: 267 }));
        // A B-channel kind is 2, accepted.
        assert!(decode(&[0x01, 0xFF, 0, 3, 1, 1, 2]).is_ok());
    }

    #[test]
    fn layout_matches_simlink_md() {
        let mut buf = Vec::new();
        Message::Hello { version: 1, ports: 4, kinds: vec![] }.encode(&mut buf);
        assert_eq!(buf, [0x01, 0xFF, 0x00, 0x02, 0x01, 0x04]);
        buf.clear();
        let kinds = vec![PortKind::Fxs, PortKind::Fxo];
        Message::Hello { version: 1, ports: 2, kinds }.encode(&mut buf);
        assert_eq!(buf, [0x01, 0xFF, 0x00, 0x04, 0x01, 0x02, 0x00, 0x01]);
        buf.clear();
        Message::Seize { port: 4, on: true }.encode(&mut buf);
        Message::Polarity { port: 5, polarity: Polarity::Reversed }.encode(&mut buf);
        Message::LoopCurrent { port: 5, on: false }.encode(&mut buf);
        assert_eq!(buf, [0x42, 4, 0, 1, 1, 0x40, 5, 0, 1, 1, 0x41, 5, 0, 1, 0]);
        buf.clear();
        let mut samples = [0i16; FRAME_SAMPLES];
        samples[0] = 0x1234;
        encode_audio(&mut buf, 2, &samples);
        assert_eq!(&buf[..6], &[0x30, 0x02, 0x00, 0xA0, 0x34, 0x12]);
        assert_eq!(buf.len(), HEADER_LEN + 160);
    }

    #[test]
    fn unknown_type_is_skipped_by_length() {
        let buf = [0x7E, 0x01, 0x00, 0x03, 9, 9, 9, 0x11, 0x00, 0x00, 0x00];
        let (m, used) = decode(&buf).unwrap().unwrap();
        assert_eq!(m, Message::Unknown { msg_type: 0x7E, port: 1 });
        assert_eq!(used, 7);
        assert_eq!(decode(&buf[used..]).unwrap().unwrap().0, Message::Flash { port: 0 });
    }

    #[test]
    fn protocol_errors_are_named() {
        assert_eq!(decode(&[0x30, 0, 0x04, 0x01]), Err(WireError::TooLong { length: 1025 }));
        assert_eq!(
            decode(&[0x10, 0, 0, 2, 1, 1]),
            Err(WireError::BadLength { msg_type: 0x10, length: 2 })
        );
        assert_eq!(
            decode(&[0x21, 0, 0, 1, 9]),
            Err(WireError::BadValue { msg_type: 0x21, value: 9 })
        );
        assert_eq!(decode(&[0x10, 0, 0, 1, 2]), Err(WireError::BadValue { msg_type: 0x10, value: 2 }));
        // HELLO: 2 bytes, or 2 + one kind per port; kinds are 0 or 1.
        assert_eq!(decode(&[0x01, 0xFF, 0, 1, 1]), Err(WireError::BadLength { msg_type: 1, length: 1 }));
        assert_eq!(
            decode(&[0x01, 0xFF, 0, 3, 1, 2, 0]),
            Err(WireError::BadLength { msg_type: 1, length: 3 })
        );
        assert_eq!(decode(&[0x01, 0xFF, 0, 3, 1, 1, 3]), Err(WireError::BadValue { msg_type: 1, value: 3 }));
        for t in [0x40, 0x41, 0x42] {
            assert_eq!(decode(&[t, 0, 0, 1, 2]), Err(WireError::BadValue { msg_type: t, value: 2 }));
            assert_eq!(decode(&[t, 0, 0, 0]), Err(WireError::BadLength { msg_type: t, length: 0 }));
        }
    }
}
