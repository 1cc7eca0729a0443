//! SDP for the gateway's audio calls: an RFC 4566 subset and RFC 3264 offer/answer.
//!
//! The gateway speaks G.711 (PCMU payload type 0, PCMA payload type 8, RFC 3551 §6) plus
//! RFC 4733 telephone-events and, when configured, RFC 3389 comfort noise (`CN/8000`,
//! payload type 13) on one audio stream. This module
//! - parses and prints session descriptions ([`SessionDescription`], RFC 4566 §5): `v o s c
//!   t m` lines and the attributes `rtpmap`, `fmtp`, `ptime`, `sendrecv`, `sendonly`,
//!   `recvonly`, `inactive` (session-level attributes are defaults for every media line,
//!   RFC 4566 §6); other lines are accepted and dropped;
//! - builds our offer ([`make_offer`]), answers an offer ([`answer`], RFC 3264 §6) and reads
//!   the answer to our offer ([`accept_answer`], RFC 3264 §7), reducing each to the
//!   [`NegotiatedMedia`] the media layer needs.
//!
//! Addresses must be literal IPv4/IPv6 addresses: the gateway does not resolve names found
//! in SDP (a `c=` line with a host name is a [`SdpError::BadConnection`]; an `o=` line with
//! one gets the unspecified address, as the origin address is only an identifier).
//!
//! Pure functions; no I/O, no clock.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The audio codecs the gateway transcodes to and from (RFC 3551 §4.5.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// G.711 mu-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
    /// G.722 at 64 kbit/s, static payload type 9. Sampled at 16 kHz, but its
    /// RTP clock and SDP rate are 8000 (RFC 3551 §4.5.2).
    G722,
}

impl Codec {
    /// Static payload type (RFC 3551 table 4).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G722 => 9,
        }
    }

    /// Encoding name as in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
        }
    }

    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        8000
    }

    /// The codec an rtpmap describes, if it is one of ours.
    pub fn from_rtpmap(map: &RtpMap) -> Option<Codec> {
        [Codec::Pcmu, Codec::Pcma, Codec::G722].into_iter().find(|c| {
            map.encoding.eq_ignore_ascii_case(c.encoding_name()) && map.clock_rate == c.clock_rate()
        })
    }

    fn rtpmap(self) -> RtpMap {
        RtpMap {
            payload_type: self.payload_type(),
            encoding: self.encoding_name().to_string(),
            clock_rate: self.clock_rate(),
            fmtp: None,
        }
    }
}

/// Media direction attribute (RFC 3264 §5.1, RFC 4566 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The answer's direction for an offer with this one (RFC 3264 6.1).
    pub fn mirrored(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attr(a: &str) -> Option<Self> {
        Some(match a {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// The direction seen from the other end (RFC 3264 §6.1: sendonly is answered with
    /// recvonly and so on).
    pub fn reversed(self) -> Self {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// This direction without the sending half (used when the peer gave no address to send to).
    fn without_send(self) -> Self {
        match self {
            Direction::SendRecv | Direction::RecvOnly => Direction::RecvOnly,
            Direction::SendOnly | Direction::Inactive => Direction::Inactive,
        }
    }
}

/// One media format: the `m=` payload type with its `a=rtpmap` and `a=fmtp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub fmtp: Option<String>,
}

/// One `m=` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaDescription {
    /// "audio", "video", "image"...
    pub media: String,
    /// 0 means the stream is rejected or disabled (RFC 3264 §6, §8.2).
    pub port: u16,
    pub proto: String,
    /// Formats in `m=` order. Non-numeric formats (e.g. `t38`) are not kept.
    pub formats: Vec<RtpMap>,
    /// Media-level `c=`.
    pub connection: Option<IpAddr>,
    pub ptime: Option<u32>,
    /// Media-level direction, or the session-level default, or sendrecv.
    pub direction: Direction,
}

impl MediaDescription {
    /// The first format named `encoding` at `clock_rate`.
    fn find(&self, encoding: &str, clock_rate: u32) -> Option<&RtpMap> {
        self.formats
            .iter()
            .find(|f| f.encoding.eq_ignore_ascii_case(encoding) && f.clock_rate == clock_rate)
    }

    fn is_rtp_avp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP")
    }
}

/// A session description (RFC 4566 §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription {
    pub session_id: u64,
    pub session_version: u64,
    pub origin_addr: IpAddr,
    /// Session-level `c=`.
    pub connection: Option<IpAddr>,
    pub media: Vec<MediaDescription>,
}

/// What both ends agreed on for the audio stream.
///
/// `remote` is where we send RTP; `direction` is from our side (`SendOnly`: we send, they do
/// not). `payload_type` and `telephone_event` are the numbers to put in (and expect in) RTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegotiatedMedia {
    pub remote: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    /// Payload type of RFC 3389 comfort noise (`CN/8000`, normally the static 13) when both
    /// sides listed it (RFC 3389 §5): silence may then be suppressed and sent as CN packets.
    pub comfort_noise: Option<u8>,
    pub ptime_ms: u32,
    pub direction: Direction,
}

/// Why an SDP body was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// A line is not `<letter>=<value>`, or is not UTF-8. `line` counts from 1.
    BadLine { line: usize },
    /// `v=` is missing or not 0.
    BadVersion,
    /// A mandatory line (`v`, `o`, `s`, `t`) is missing.
    MissingLine(char),
    /// `o=` is malformed.
    BadOrigin,
    /// `c=` is malformed or not a literal address.
    BadConnection,
    /// `m=` is malformed.
    BadMedia { line: usize },
    /// An attribute we interpret (`rtpmap`, `fmtp`, `ptime`) is malformed.
    BadAttribute { line: usize },
    /// No audio stream in the offer carries a codec we support (answer 488, RFC 3261 §13.3.1.1).
    NoCommonCodec,
    /// The chosen audio stream has no connection address (RFC 4566 §5.7).
    NoConnection,
    /// The answer's media lines do not match the offer's (RFC 3264 §6).
    MediaCountMismatch { offer: usize, answer: usize },
    /// The answer rejected our audio stream or chose a format we did not offer.
    AudioRejected,
}

impl SdpError {
    /// SIP status to answer an offer that failed with this error.
    pub fn status_code(&self) -> u16 {
        match self {
            SdpError::NoCommonCodec | SdpError::NoConnection | SdpError::AudioRejected => 488,
            _ => 400,
        }
    }
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::BadLine { line } => write!(f, "SDP line {line} is malformed"),
            SdpError::BadVersion => write!(f, "SDP version is not 0"),
            SdpError::MissingLine(c) => write!(f, "SDP lacks an {c}= line"),
            SdpError::BadOrigin => write!(f, "bad o= line"),
            SdpError::BadConnection => write!(f, "bad c= line"),
            SdpError::BadMedia { line } => write!(f, "bad m= line {line}"),
            SdpError::BadAttribute { line } => write!(f, "bad attribute on line {line}"),
            SdpError::NoCommonCodec => write!(f, "no common codec"),
            SdpError::NoConnection => write!(f, "no connection address for audio"),
            SdpError::MediaCountMismatch { offer, answer } => {
                write!(f, "offer has {offer} media lines, answer {answer}")
            }
            SdpError::AudioRejected => write!(f, "the answer rejected the audio stream"),
        }
    }
}

impl std::error::Error for SdpError {}

/// Default rtpmap of a static payload type (RFC 3551 table 4), for media lines that list it
/// without `a=rtpmap`.
fn static_rtpmap(pt: u8) -> (&'static str, u32) {
    match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        6 => ("DVI4", 16000),
        7 => ("LPC", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        10 | 11 => ("L16", 44100),
        12 => ("QCELP", 8000),
        13 => ("CN", 8000),
        14 => ("MPA", 90000),
        15 => ("G728", 8000),
        16 => ("DVI4", 11025),
        17 => ("DVI4", 22050),
        18 => ("G729", 8000),
        25 => ("CelB", 90000),
        26 => ("JPEG", 90000),
        28 => ("nv", 90000),
        31 => ("H261", 90000),
        32 => ("MPV", 90000),
        33 => ("MP2T", 90000),
        34 => ("H263", 90000),
        _ => ("", 0),
    }
}

/// `c=IN IP4 192.0.2.1[/ttl[/n]]` (RFC 4566 §5.7).
fn parse_connection(v: &str) -> Result<IpAddr, SdpError> {
    let mut it = v.split_ascii_whitespace();
    let (Some("IN"), Some(addrtype), Some(addr), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(SdpError::BadConnection);
    };
    let addr = addr.split('/').next().unwrap_or_default();
    let ip: IpAddr = addr.parse().map_err(|_| SdpError::BadConnection)?;
    match (addrtype, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(SdpError::BadConnection),
    }
}

impl SessionDescription {
    /// Parse an SDP body (CRLF or LF line ends).
    pub fn parse(s: &str) -> Result<Self, SdpError> {
        let mut version_seen = false;
        let mut origin: Option<(u64, u64, IpAddr)> = None;
        let (mut name_seen, mut time_seen) = (false, false);
        let mut connection = None;
        let mut session_dir: Option<Direction> = None;
        let mut session_ptime: Option<u32> = None;
        // Per media: description, explicit direction, rtpmaps and fmtps by PT.
        struct Pending {
            md: MediaDescription,
            dir: Option<Direction>,
            fmtp: Vec<(u8, String)>,
            rtpmap: Vec<(u8, String, u32)>,
        }
        let mut media: Vec<Pending> = Vec::new();

        for (idx, raw) in s.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() {
                continue;
            }
            let b = line.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
                return Err(SdpError::BadLine { line: line_no });
            }
            let (kind, value) = (b[0], &line[2..]);
            if !version_seen && kind != b'v' {
                return Err(SdpError::BadVersion);
            }
            match kind {
                b'v' => {
                    if version_seen || value.trim() != "0" {
                        return Err(SdpError::BadVersion);
                    }
                    version_seen = true;
                }
                b'o' => {
                    // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
                    let f: Vec<&str> = value.split_ascii_whitespace().collect();
                    if f.len() != 6 || f[3] != "IN" || origin.is_some() {
                        return Err(SdpError::BadOrigin);
                    }
                    let id = f[1].parse::<u64>().map_err(|_| SdpError::BadOrigin)?;
                    let ver = f[2].parse::<u64>().map_err(|_| SdpError::BadOrigin)?;
                    let addr = f[5].parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                    origin = Some((id, ver, addr));
                }
                b's' => name_seen = true,
                b't' => time_seen = true,
                b'c' => {
                    let ip = parse_connection(value)?;
                    match media.last_mut() {
                        Some(p) => p.md.connection = Some(ip),
                        None => connection = Some(ip),
                    }
                }
                b'm' => {
                    // m=<media> <port>[/<number of ports>] <proto> <fmt> ...
                    let bad = SdpError::BadMedia { line: line_no };
                    let f: Vec<&str> = value.split_ascii_whitespace().collect();
                    // At least one format (RFC 4566 §5.14).
                    if f.len() < 4 {
                        return Err(bad);
                    }
                    let port = f[1].split('/').next().unwrap_or_default();
                    let port = port.parse::<u16>().map_err(|_| bad.clone())?;
                    let mut formats = Vec::new();
                    let numeric = f[2].to_ascii_uppercase().starts_with("RTP/");
                    for fmt in &f[3..] {
                        if !numeric {
                            continue;
                        }
                        let pt = fmt.parse::<u8>().ok().filter(|pt| *pt < 128).ok_or(bad.clone())?;
                        if formats.iter().any(|f: &RtpMap| f.payload_type == pt) {
                            continue; // a repeated format adds nothing
                        }
                        let (enc, rate) = static_rtpmap(pt);
                        formats.push(RtpMap { payload_type: pt, encoding: enc.into(), clock_rate: rate, fmtp: None });
                    }
                    media.push(Pending {
                        md: MediaDescription {
                            media: f[0].to_string(),
                            port,
                            proto: f[2].to_string(),
                            formats,
                            connection: None,
                            ptime: None,
                            direction: Direction::SendRecv,
                        },
                        dir: None,
                        fmtp: Vec::new(),
                        rtpmap: Vec::new(),
                    });
                }
                b'a' => {
                    let bad = SdpError::BadAttribute { line: line_no };
                    let (name, val) = match value.split_once(':') {
                        Some((n, v)) => (n, Some(v)),
                        None => (value, None),
                    };
                    match (name, val) {
                        ("rtpmap", Some(v)) => {
                            // a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]
                            let (pt, rest) = v.split_once(' ').ok_or(bad.clone())?;
                            let pt = pt.parse::<u8>().map_err(|_| bad.clone())?;
                            let mut parts = rest.trim().split('/');
                            let enc = parts.next().filter(|e| !e.is_empty()).ok_or(bad.clone())?;
                            let rate = match parts.next().and_then(|r| r.parse::<u32>().ok()) {
                                Some(r) => r,
                                // A static payload type keeps its RFC 3551 mapping
                                // when its rtpmap lacks the clock rate (RFC 4475
                                // `longreq` has `a=rtpmap:31 LPC`); a dynamic one
                                // has nothing to fall back on.
                                None if pt < 96 => continue,
                                None => return Err(bad),
                            };
                            if let Some(p) = media.last_mut() {
                                p.rtpmap.push((pt, enc.to_string(), rate));
                            }
                        }
                        ("fmtp", Some(v)) => {
                            let (pt, rest) = v.split_once(' ').ok_or(bad.clone())?;
                            let pt = pt.parse::<u8>().map_err(|_| bad.clone())?;
                            if let Some(p) = media.last_mut() {
                                p.fmtp.push((pt, rest.trim().to_string()));
                            }
                        }
                        ("ptime", Some(v)) => {
                            let ms = v.trim().parse::<u32>().ok().filter(|ms| *ms > 0).ok_or(bad)?;
                            match media.last_mut() {
                                Some(p) => p.md.ptime = Some(ms),
                                None => session_ptime = Some(ms),
                            }
                        }
                        (d, None) => {
                            if let Some(dir) = Direction::from_attr(d) {
                                match media.last_mut() {
                                    Some(p) => p.dir = Some(dir),
                                    None => session_dir = Some(dir),
                                }
                            }
                        }
                        _ => {}
                    }
                }
                // b, i, u, e, p, z, k, r and unknown letters: accepted, not kept.
                _ => {}
            }
        }
        if !version_seen {
            return Err(SdpError::MissingLine('v'));
        }
        let (session_id, session_version, origin_addr) = origin.ok_or(SdpError::MissingLine('o'))?;
        if !name_seen {
            return Err(SdpError::MissingLine('s'));
        }
        if !time_seen {
            return Err(SdpError::MissingLine('t'));
        }
        let media = media
            .into_iter()
            .map(|mut p| {
                for (pt, enc, rate) in p.rtpmap {
                    if let Some(f) = p.md.formats.iter_mut().find(|f| f.payload_type == pt) {
                        f.encoding = enc;
                        f.clock_rate = rate;
                    }
                }
                for (pt, fmtp) in p.fmtp {
                    if let Some(f) = p.md.formats.iter_mut().find(|f| f.payload_type == pt) {
                        f.fmtp = Some(fmtp);
                    }
                }
                p.md.direction = p.dir.or(session_dir).unwrap_or(Direction::SendRecv);
                p.md.ptime = p.md.ptime.or(session_ptime);
                p.md
            })
            .collect();
        Ok(SessionDescription { session_id, session_version, origin_addr, connection, media })
    }

    /// A new offer in the same session (RFC 3264 §8): same id, version plus one.
    pub fn next_version(&self) -> SessionDescription {
        SessionDescription { session_version: self.session_version.wrapping_add(1), ..self.clone() }
    }

    /// Set the direction of every audio stream, e.g. `SendOnly` to put the far end on hold
    /// and `SendRecv` to resume (RFC 3264 §8.4). Combine with [`Self::next_version`].
    pub fn set_audio_direction(&mut self, direction: Direction) {
        for m in self.media.iter_mut().filter(|m| m.media.eq_ignore_ascii_case("audio")) {
            m.direction = direction;
        }
    }

    /// The address media of `m` goes to: media-level `c=`, else session-level.
    fn connection_of(&self, m: &MediaDescription) -> Option<IpAddr> {
        m.connection.or(self.connection)
    }
}

fn addr_line(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("IN IP4 {a}"),
        IpAddr::V6(a) => format!("IN IP6 {a}"),
    }
}

impl fmt::Display for SessionDescription {
    /// RFC 4566 §5 order, CRLF line ends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=0\r\n")?;
        write!(f, "o=- {} {} {}\r\n", self.session_id, self.session_version, addr_line(&self.origin_addr))?;
        write!(f, "s=-\r\n")?;
        if let Some(c) = &self.connection {
            write!(f, "c={}\r\n", addr_line(c))?;
        }
        write!(f, "t=0 0\r\n")?;
        for m in &self.media {
            write!(f, "m={} {} {}", m.media, m.port, m.proto)?;
            if m.formats.is_empty() {
                // SDP needs at least one format; only rejected non-RTP lines get here.
                write!(f, " 0")?;
            }
            for fmt in &m.formats {
                write!(f, " {}", fmt.payload_type)?;
            }
            write!(f, "\r\n")?;
            if let Some(c) = &m.connection {
                write!(f, "c={}\r\n", addr_line(c))?;
            }
            for fmt in &m.formats {
                if !fmt.encoding.is_empty() {
                    write!(f, "a=rtpmap:{} {}/{}\r\n", fmt.payload_type, fmt.encoding, fmt.clock_rate)?;
                }
                if let Some(p) = &fmt.fmtp {
                    write!(f, "a=fmtp:{} {}\r\n", fmt.payload_type, p)?;
                }
            }
            if let Some(p) = m.ptime {
                write!(f, "a=ptime:{p}\r\n")?;
            }
            write!(f, "a={}\r\n", m.direction.as_str())?;
        }
        Ok(())
    }
}

const DEFAULT_PTIME: u32 = 20;

fn telephone_event(pt: u8) -> RtpMap {
    RtpMap { payload_type: pt, encoding: "telephone-event".into(), clock_rate: 8000, fmtp: Some("0-16".into()) }
}

/// Static payload type of RFC 3389 comfort noise (RFC 3551 table 4, `CN/8000`).
pub const CN_PAYLOAD_TYPE: u8 = 13;

fn comfort_noise() -> RtpMap {
    RtpMap { payload_type: CN_PAYLOAD_TYPE, encoding: "CN".into(), clock_rate: 8000, fmtp: None }
}

/// Our offer: the codecs in preference order, telephone-event/8000 with `te_pt` (101) "0-16", ptime 20.
/// No comfort noise; see [`make_offer_with`].
pub fn make_offer(local_ip: IpAddr, rtp_port: u16, codecs: &[Codec], te_pt: Option<u8>, session_id: u64) -> SessionDescription {
    make_offer_with(local_ip, rtp_port, codecs, te_pt, false, session_id)
}

/// [`make_offer`], also offering RFC 3389 comfort noise (`CN/8000`, static payload type 13,
/// after the codecs) when `comfort_noise` is set.
pub fn make_offer_with(
    local_ip: IpAddr,
    rtp_port: u16,
    codecs: &[Codec],
    te_pt: Option<u8>,
    comfort_noise: bool,
    session_id: u64,
) -> SessionDescription {
    let mut formats: Vec<RtpMap> = Vec::new();
    for c in codecs {
        if !formats.iter().any(|f| f.payload_type == c.payload_type()) {
            formats.push(c.rtpmap());
        }
    }
    if comfort_noise && !formats.iter().any(|f| f.payload_type == CN_PAYLOAD_TYPE) {
        formats.push(self::comfort_noise());
    }
    if let Some(pt) = te_pt.filter(|pt| *pt < 128 && !formats.iter().any(|f| f.payload_type == *pt)) {
        formats.push(telephone_event(pt));
    }
    SessionDescription {
        session_id,
        session_version: session_id,
        origin_addr: local_ip,
        connection: Some(local_ip),
        media: vec![MediaDescription {
            media: "audio".into(),
            port: rtp_port,
            proto: "RTP/AVP".into(),
            formats,
            connection: None,
            ptime: Some(DEFAULT_PTIME),
            direction: Direction::SendRecv,
        }],
    }
}

/// A rejected copy of an offered media line (RFC 3264 §6: port 0, formats kept).
fn rejected(m: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media: m.media.clone(),
        port: 0,
        proto: m.proto.clone(),
        formats: m.formats.iter().take(1).cloned().collect(),
        connection: None,
        ptime: None,
        direction: Direction::Inactive,
    }
}

/// Answer an offer (RFC 3264 §6): first offered codec we support; telephone-event if offered; mirror direction.
///
/// The first audio stream (RTP/AVP, port not 0) carrying one of `codecs` is accepted with that
/// single codec (in the offer's order of preference, RFC 3264 §6.1) and the offer's payload
/// type numbers; every other media line is rejected with port 0. An offer whose audio
/// address is `0.0.0.0` (RFC 3264 §8.4 legacy hold) gets no sending from us.
/// Comfort noise is not accepted; see [`answer_with`].
pub fn answer(
    offer: &SessionDescription,
    local_ip: IpAddr,
    rtp_port: u16,
    codecs: &[Codec],
    session_id: u64,
) -> Result<(SessionDescription, NegotiatedMedia), SdpError> {
    answer_with(offer, local_ip, rtp_port, codecs, false, session_id)
}

/// [`answer`], also accepting RFC 3389 comfort noise (`CN/8000`, with the offer's payload
/// type) when `comfort_noise` is set and the offer lists it (RFC 3389 §5); the answer then
/// lists it too and [`NegotiatedMedia::comfort_noise`] has its payload type.
pub fn answer_with(
    offer: &SessionDescription,
    local_ip: IpAddr,
    rtp_port: u16,
    codecs: &[Codec],
    comfort_noise: bool,
    session_id: u64,
) -> Result<(SessionDescription, NegotiatedMedia), SdpError> {
    let mut chosen: Option<NegotiatedMedia> = None;
    let mut missing_connection = false;
    let mut media = Vec::with_capacity(offer.media.len());
    for m in &offer.media {
        if chosen.is_some() || m.port == 0 || !m.media.eq_ignore_ascii_case("audio") || !m.is_rtp_avp() {
            media.push(rejected(m));
            continue;
        }
        let codec = m.formats.iter().find_map(|f| {
            Codec::from_rtpmap(f).filter(|c| codecs.contains(c)).map(|c| (c, f.clone()))
        });
        let Some((codec, fmt)) = codec else {
            media.push(rejected(m));
            continue;
        };
        let Some(ip) = offer.connection_of(m) else {
            missing_connection = true;
            media.push(rejected(m));
            continue;
        };
        let te = m.find("telephone-event", 8000).cloned();
        let cn = m.find("CN", 8000).filter(|_| comfort_noise).cloned();
        let ptime = m.ptime.unwrap_or(DEFAULT_PTIME);
        let mut direction = m.direction.reversed();
        if ip.is_unspecified() {
            direction = direction.without_send();
        }
        let mut formats = vec![fmt.clone()];
        if let Some(cn) = &cn {
            formats.push(cn.clone());
        }
        if let Some(te) = &te {
            formats.push(te.clone());
        }
        media.push(MediaDescription {
            media: m.media.clone(),
            port: rtp_port,
            proto: m.proto.clone(),
            formats,
            connection: None,
            ptime: Some(ptime),
            direction,
        });
        chosen = Some(NegotiatedMedia {
            remote: SocketAddr::new(ip, m.port),
            codec,
            payload_type: fmt.payload_type,
            telephone_event: te.map(|t| t.payload_type),
            comfort_noise: cn.map(|c| c.payload_type),
            ptime_ms: ptime,
            direction,
        });
    }
    let negotiated = match chosen {
        Some(n) => n,
        None if missing_connection => return Err(SdpError::NoConnection),
        None => return Err(SdpError::NoCommonCodec),
    };
    let sdp = SessionDescription {
        session_id,
        session_version: session_id,
        origin_addr: local_ip,
        connection: Some(local_ip),
        media,
    };
    Ok((sdp, negotiated))
}

/// Interpret the answer to our offer (RFC 3264 §7).
///
/// The first audio line we offered with a port that the answer accepted is used; the codec is
/// the first format of the answer that we offered (by payload type and encoding). Comfort
/// noise counts only if both the offer and the answer list `CN/8000` (RFC 3389 §5).
pub fn accept_answer(offer: &SessionDescription, answer: &SessionDescription) -> Result<NegotiatedMedia, SdpError> {
    if offer.media.len() != answer.media.len() {
        return Err(SdpError::MediaCountMismatch { offer: offer.media.len(), answer: answer.media.len() });
    }
    let mut missing_connection = false;
    for (o, a) in offer.media.iter().zip(&answer.media) {
        if o.port == 0 || a.port == 0 || !o.media.eq_ignore_ascii_case("audio") || !a.media.eq_ignore_ascii_case("audio") {
            continue;
        }
        let offered = |f: &RtpMap| {
            o.formats.iter().any(|of| of.payload_type == f.payload_type)
                || o.formats.iter().any(|of| of.encoding.eq_ignore_ascii_case(&f.encoding) && of.clock_rate == f.clock_rate)
        };
        let Some((codec, fmt)) = a
            .formats
            .iter()
            .filter(|f| offered(f))
            .find_map(|f| Codec::from_rtpmap(f).map(|c| (c, f)))
        else {
            continue;
        };
        // Guard against an answer naming a payload type of ours with another codec.
        if let Some(of) = o.formats.iter().find(|of| of.payload_type == fmt.payload_type) {
            if Codec::from_rtpmap(of) != Some(codec) {
                continue;
            }
        }
        let Some(ip) = answer.connection_of(a) else {
            missing_connection = true;
            continue;
        };
        let te = a
            .find("telephone-event", 8000)
            .filter(|_| o.find("telephone-event", 8000).is_some())
            .map(|t| t.payload_type);
        // RFC 3389 §5: only when both sides list it.
        let cn = a.find("CN", 8000).filter(|_| o.find("CN", 8000).is_some()).map(|c| c.payload_type);
        let mut direction = a.direction.reversed();
        if ip.is_unspecified() {
            direction = direction.without_send();
        }
        return Ok(NegotiatedMedia {
            remote: SocketAddr::new(ip, a.port),
            codec,
            payload_type: fmt.payload_type,
            telephone_event: te,
            comfort_noise: cn,
            ptime_ms: a.ptime.or(o.ptime).unwrap_or(DEFAULT_PTIME),
            direction,
        });
    }
    if missing_connection {
        Err(SdpError::NoConnection)
    } else {
        Err(SdpError::AudioRejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// RFC 4317 §2.1 offer, host names replaced by documentation addresses (we do not
    /// resolve names in SDP).
    const RFC4317_2_1_OFFER: &str = "v=0\r\n\
        o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
        s=\r\n\
        c=IN IP4 192.0.2.10\r\n\
        t=0 0\r\n\
        m=audio 49170 RTP/AVP 0 8 97\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:97 iLBC/8000\r\n\
        m=video 51372 RTP/AVP 31 32\r\n\
        a=rtpmap:31 H261/90000\r\n\
        a=rtpmap:32 MPV/90000\r\n";

    /// RFC 4317 §2.1 answer (same substitution).
    const RFC4317_2_1_ANSWER: &str = "v=0\r\n\
        o=bob 2808844564 2808844564 IN IP4 192.0.2.20\r\n\
        s=\r\n\
        c=IN IP4 192.0.2.20\r\n\
        t=0 0\r\n\
        m=audio 49174 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        m=video 49170 RTP/AVP 32\r\n\
        a=rtpmap:32 MPV/90000\r\n";

    #[test]
    fn parses_rfc4317_offer() {
        let o = SessionDescription::parse(RFC4317_2_1_OFFER).unwrap();
        assert_eq!(o.session_id, 2890844526);
        assert_eq!(o.connection, Some(ip("192.0.2.10")));
        assert_eq!(o.media.len(), 2);
        let a = &o.media[0];
        assert_eq!((a.media.as_str(), a.port, a.proto.as_str()), ("audio", 49170, "RTP/AVP"));
        let names: Vec<_> = a.formats.iter().map(|f| (f.payload_type, f.encoding.as_str())).collect();
        assert_eq!(names, vec![(0, "PCMU"), (8, "PCMA"), (97, "iLBC")]);
        assert_eq!(o.media[1].formats[0].clock_rate, 90000);
    }

    #[test]
    fn answers_rfc4317_offer_rejecting_video() {
        let o = SessionDescription::parse(RFC4317_2_1_OFFER).unwrap();
        let (ans, neg) = answer(&o, ip("192.0.2.99"), 40000, &[Codec::Pcma, Codec::Pcmu], 7).unwrap();
        // The offerer's preference wins: PCMU is listed first.
        assert_eq!(neg.codec, Codec::Pcmu);
        assert_eq!(neg.payload_type, 0);
        assert_eq!(neg.remote, "192.0.2.10:49170".parse().unwrap());
        assert_eq!(neg.telephone_event, None);
        assert_eq!(neg.ptime_ms, 20);
        assert_eq!(neg.direction, Direction::SendRecv);
        assert_eq!(ans.media.len(), 2);
        assert_eq!(ans.media[0].port, 40000);
        assert_eq!(ans.media[1].port, 0);
        // What we print parses back to the same thing.
        let text = ans.to_string();
        assert!(text.contains("m=audio 40000 RTP/AVP 0\r\n"), "{text}");
        assert!(text.contains("m=video 0 RTP/AVP 31\r\n"), "{text}");
        assert_eq!(SessionDescription::parse(&text).unwrap(), ans);
    }

    #[test]
    fn accepts_rfc4317_answer() {
        let o = SessionDescription::parse(RFC4317_2_1_OFFER).unwrap();
        let a = SessionDescription::parse(RFC4317_2_1_ANSWER).unwrap();
        let n = accept_answer(&o, &a).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.remote, "192.0.2.20:49174".parse().unwrap());
    }

    #[test]
    fn offer_round_trip_and_our_own_answer() {
        let offer = make_offer(ip("10.0.0.1"), 4000, &[Codec::Pcma, Codec::Pcmu], Some(101), 42);
        let text = offer.to_string();
        assert!(text.contains("m=audio 4000 RTP/AVP 8 0 101\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"), "{text}");
        assert!(text.contains("a=ptime:20\r\n"));
        let parsed = SessionDescription::parse(&text).unwrap();
        assert_eq!(parsed, offer);

        let (ans, far) = answer(&parsed, ip("10.0.0.2"), 5000, &[Codec::Pcmu, Codec::Pcma], 9).unwrap();
        assert_eq!(far.codec, Codec::Pcma);
        assert_eq!(far.telephone_event, Some(101));
        let near = accept_answer(&offer, &SessionDescription::parse(&ans.to_string()).unwrap()).unwrap();
        assert_eq!(near.codec, Codec::Pcma);
        assert_eq!(near.telephone_event, Some(101));
        assert_eq!(near.remote, "10.0.0.2:5000".parse().unwrap());
        assert_eq!(far.remote, "10.0.0.1:4000".parse().unwrap());
    }

    #[test]
    fn no_common_codec_is_488() {
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 1000 RTP/AVP 18 9\r\n",
        )
        .unwrap();
        let e = answer(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu, Codec::Pcma], 1).unwrap_err();
        assert_eq!(e, SdpError::NoCommonCodec);
        assert_eq!(e.status_code(), 488);
        // We support only PCMA; the offer only PCMU.
        let o = make_offer(ip("192.0.2.1"), 1000, &[Codec::Pcmu], None, 1);
        assert_eq!(answer(&o, ip("192.0.2.2"), 2000, &[Codec::Pcma], 1).unwrap_err(), SdpError::NoCommonCodec);
    }

    #[test]
    fn port_zero_stream_is_skipped() {
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 0 RTP/AVP 0\r\nm=audio 3000 RTP/AVP 8\r\n",
        )
        .unwrap();
        let (ans, n) = answer(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu, Codec::Pcma], 1).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.remote.port(), 3000);
        assert_eq!((ans.media[0].port, ans.media[1].port), (0, 2000));
        // Only a disabled audio line: nothing to answer with.
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
        )
        .unwrap();
        assert_eq!(answer(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu], 1).unwrap_err(), SdpError::NoCommonCodec);
        // An answer rejecting our audio.
        let ours = make_offer(ip("192.0.2.2"), 2000, &[Codec::Pcmu], None, 1);
        let theirs = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
        )
        .unwrap();
        assert_eq!(accept_answer(&ours, &theirs), Err(SdpError::AudioRejected));
    }

    #[test]
    fn connection_at_session_or_media_level() {
        let media_level = SessionDescription::parse(
            "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nt=0 0\nm=audio 1000 RTP/AVP 0\nc=IN IP6 2001:db8::5\n",
        )
        .unwrap();
        assert_eq!(media_level.connection, None);
        let (_, n) = answer(&media_level, ip("2001:db8::2"), 2000, &[Codec::Pcmu], 1).unwrap();
        assert_eq!(n.remote, SocketAddr::new(IpAddr::V6("2001:db8::5".parse::<Ipv6Addr>().unwrap()), 1000));
        // Media level overrides session level.
        let both = SessionDescription::parse(
            "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 1000 RTP/AVP 0\nc=IN IP4 192.0.2.7/127\n",
        )
        .unwrap();
        let (_, n) = answer(&both, ip("192.0.2.2"), 2000, &[Codec::Pcmu], 1).unwrap();
        assert_eq!(n.remote, "192.0.2.7:1000".parse().unwrap());
        // Neither.
        let none = SessionDescription::parse("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 1000 RTP/AVP 0\n").unwrap();
        assert_eq!(answer(&none, ip("192.0.2.2"), 2000, &[Codec::Pcmu], 1).unwrap_err(), SdpError::NoConnection);
        // Host names are not resolved.
        assert_eq!(
            SessionDescription::parse("v=0\no=- 1 1 IN IP4 h.example\ns=-\nc=IN IP4 h.example\nt=0 0\n"),
            Err(SdpError::BadConnection)
        );
    }

    #[test]
    fn telephone_event_with_other_payload_numbers() {
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 1000 RTP/AVP 8 96 100\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n\
             a=rtpmap:100 telephone-event/16000\r\na=ptime:30\r\na=sendonly\r\n",
        )
        .unwrap();
        let (ans, n) = answer(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu, Codec::Pcma], 1).unwrap();
        assert_eq!(n.telephone_event, Some(96));
        assert_eq!(n.ptime_ms, 30);
        assert_eq!(n.direction, Direction::RecvOnly);
        let text = ans.to_string();
        assert!(text.contains("m=audio 2000 RTP/AVP 8 96\r\n"), "{text}");
        assert!(text.contains("a=fmtp:96 0-15\r\n"), "{text}");
        assert!(text.contains("a=recvonly\r\n"), "{text}");
        // Our offer used 101; the answer says 101 too; but if it has no telephone-event, none.
        let ours = make_offer(ip("192.0.2.2"), 2000, &[Codec::Pcmu], Some(101), 5);
        let theirs = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 1000 RTP/AVP 0\r\n",
        )
        .unwrap();
        assert_eq!(accept_answer(&ours, &theirs).unwrap().telephone_event, None);
    }

    #[test]
    fn directions_and_hold() {
        let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        for (attr, ours) in [
            ("", Direction::SendRecv),
            ("a=sendonly\r\n", Direction::RecvOnly),
            ("a=recvonly\r\n", Direction::SendOnly),
            ("a=inactive\r\n", Direction::Inactive),
        ] {
            let o = SessionDescription::parse(&format!("{base}m=audio 1000 RTP/AVP 0\r\n{attr}")).unwrap();
            let (_, n) = answer(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu], 1).unwrap();
            assert_eq!(n.direction, ours, "{attr}");
        }
        // Session-level direction is the default for media lines.
        let o = SessionDescription::parse(&format!("{base}a=sendonly\r\nm=audio 1000 RTP/AVP 0\r\n")).unwrap();
        assert_eq!(o.media[0].direction, Direction::SendOnly);
        // Legacy hold: c=0.0.0.0 means we must not send.
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 1000 RTP/AVP 0\r\n",
        )
        .unwrap();
        let (_, n) = answer(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu], 1).unwrap();
        assert_eq!(n.direction, Direction::RecvOnly);
    }

    #[test]
    fn malformed_sdp_is_refused() {
        assert_eq!(SessionDescription::parse(""), Err(SdpError::MissingLine('v')));
        assert_eq!(SessionDescription::parse("v=1\r\n"), Err(SdpError::BadVersion));
        assert_eq!(SessionDescription::parse("o=- 1 1 IN IP4 1.2.3.4\r\n"), Err(SdpError::BadVersion));
        assert_eq!(SessionDescription::parse("v=0\r\nx\r\n"), Err(SdpError::BadLine { line: 2 }));
        assert_eq!(SessionDescription::parse("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n"), Err(SdpError::BadOrigin));
        assert_eq!(SessionDescription::parse("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n"), Err(SdpError::MissingLine('t')));
        let head = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n";
        assert_eq!(
            SessionDescription::parse(&format!("{head}m=audio 99999 RTP/AVP 0\r\n")),
            Err(SdpError::BadMedia { line: 5 })
        );
        assert_eq!(
            SessionDescription::parse(&format!("{head}m=audio 9 RTP/AVP 0\r\na=rtpmap:0\r\n")),
            Err(SdpError::BadAttribute { line: 6 })
        );
        assert_eq!(
            SessionDescription::parse(&format!("{head}m=audio 9 RTP/AVP 101\r\na=rtpmap:101 telephone-event\r\n")),
            Err(SdpError::BadAttribute { line: 6 })
        );
        let lpc = SessionDescription::parse(&format!("{head}m=audio 9 RTP/AVP 0\r\nm=video 9 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"))
            .expect("a static payload type without clock rate keeps its static mapping");
        assert_eq!(lpc.media[1].formats[0].payload_type, 31);
        assert_eq!(
            SessionDescription::parse(&format!("{head}m=audio 9 RTP/AVP 0\r\na=ptime:zero\r\n")),
            Err(SdpError::BadAttribute { line: 6 })
        );
    }

    #[test]
    fn g722_is_negotiated_at_its_8000_rtp_rate_with_or_without_rtpmap() {
        // baresip style: G722/8000 first, then G.711.
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 9 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n",
        )
        .unwrap();
        let (ans, n) = answer(&o, ip("192.0.2.2"), 2000, &[Codec::G722, Codec::Pcmu], 1).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::G722, 9));
        assert!(ans.to_string().contains("a=rtpmap:9 G722/8000"), "{ans}");
        // Without G.722 in our list the same offer gives PCMU.
        let (_, n) = answer(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu], 1).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        // Static payload type 9 without a=rtpmap is G.722 too.
        let bare = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\n",
        )
        .unwrap();
        assert_eq!(answer(&bare, ip("192.0.2.2"), 2000, &[Codec::G722], 1).unwrap().1.codec, Codec::G722);
        // A "G722/16000" rtpmap is not RFC 3551's G.722 and is not taken for it.
        let wrong = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/16000\r\n",
        )
        .unwrap();
        assert_eq!(answer(&wrong, ip("192.0.2.2"), 2000, &[Codec::G722], 1).unwrap_err(), SdpError::NoCommonCodec);
        // Our offer lists it with its rtpmap.
        let ours = make_offer(ip("192.0.2.2"), 2000, &[Codec::G722, Codec::Pcma], Some(101), 5);
        assert!(ours.to_string().contains("m=audio 2000 RTP/AVP 9 8 101"), "{ours}");
    }

    #[test]
    fn rfc4317_audio_only_accepted() {
        // RFC 4317 §2.2: the answerer takes audio (listing two codecs) and rejects video.
        let o = SessionDescription::parse(RFC4317_2_1_OFFER).unwrap();
        let a = SessionDescription::parse(
            "v=0\r\no=bob 2808844564 2808844564 IN IP4 192.0.2.20\r\ns=\r\nc=IN IP4 192.0.2.20\r\n\
             t=0 0\r\nm=audio 49172 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
             m=video 0 RTP/AVP 31\r\na=rtpmap:31 H261/90000\r\n",
        )
        .unwrap();
        let n = accept_answer(&o, &a).unwrap();
        // The answer's order is the answerer's preference (RFC 3264 §6.1).
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        assert_eq!(n.remote, "192.0.2.20:49172".parse().unwrap());
    }

    #[test]
    fn hold_and_resume() {
        // RFC 3264 §8.4 / RFC 4317 §3.1: re-offer sendonly, the answer is recvonly.
        let first = make_offer(ip("192.0.2.2"), 2000, &[Codec::Pcmu], Some(101), 77);
        let mut hold = first.next_version();
        hold.set_audio_direction(Direction::SendOnly);
        assert_eq!((hold.session_id, hold.session_version), (77, 78));
        let text = hold.to_string();
        assert!(text.contains("o=- 77 78 IN IP4 192.0.2.2\r\n") && text.contains("a=sendonly\r\n"), "{text}");
        let (ans, far) = answer(&SessionDescription::parse(&text).unwrap(), ip("192.0.2.9"), 3000, &[Codec::Pcmu], 5).unwrap();
        assert_eq!(far.direction, Direction::RecvOnly);
        assert_eq!(ans.media[0].direction, Direction::RecvOnly);
        assert_eq!(accept_answer(&hold, &ans).unwrap().direction, Direction::SendOnly);
        let mut resume = hold.next_version();
        resume.set_audio_direction(Direction::SendRecv);
        let (ans, _) = answer(&resume, ip("192.0.2.9"), 3000, &[Codec::Pcmu], 5).unwrap();
        assert_eq!(accept_answer(&resume, &ans).unwrap().direction, Direction::SendRecv);
    }

    #[test]
    fn repeated_formats_are_kept_once() {
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 1000 RTP/AVP 8 0 8\r\n",
        )
        .unwrap();
        let pts: Vec<u8> = o.media[0].formats.iter().map(|f| f.payload_type).collect();
        assert_eq!(pts, vec![8, 0]);
        assert_eq!(SessionDescription::parse(&o.to_string()).unwrap(), o);
    }

    #[test]
    fn comfort_noise_is_offered_and_used_only_when_both_sides_list_it() {
        // Our offer with CN: PT 13 after the codecs, before telephone-event.
        let ours = make_offer_with(ip("10.0.0.1"), 4000, &[Codec::Pcmu, Codec::Pcma], Some(101), true, 3);
        let text = ours.to_string();
        assert!(text.contains("m=audio 4000 RTP/AVP 0 8 13 101\r\n"), "{text}");
        assert!(text.contains("a=rtpmap:13 CN/8000\r\n"), "{text}");
        assert_eq!(SessionDescription::parse(&text).unwrap(), ours);
        // Without the flag, no CN (and make_offer is the same as before).
        let plain = make_offer_with(ip("10.0.0.1"), 4000, &[Codec::Pcmu], Some(101), false, 3);
        assert!(!plain.to_string().contains("CN/8000"), "{plain}");
        assert_eq!(plain, make_offer(ip("10.0.0.1"), 4000, &[Codec::Pcmu], Some(101), 3));

        // A far end that takes CN answers with it: both sides know.
        let (ans, far) = answer_with(&ours, ip("10.0.0.2"), 5000, &[Codec::Pcmu], true, 9).unwrap();
        assert_eq!(far.comfort_noise, Some(13));
        assert!(ans.to_string().contains("m=audio 5000 RTP/AVP 0 13 101\r\n"), "{ans}");
        let near = accept_answer(&ours, &SessionDescription::parse(&ans.to_string()).unwrap()).unwrap();
        assert_eq!((near.codec, near.comfort_noise), (Codec::Pcmu, Some(13)));

        // A far end that does not: CN is left out of its answer and off for us.
        let (ans, far) = answer_with(&ours, ip("10.0.0.2"), 5000, &[Codec::Pcmu], false, 9).unwrap();
        assert_eq!(far.comfort_noise, None);
        assert!(!ans.to_string().contains("CN"), "{ans}");
        assert_eq!(accept_answer(&ours, &ans).unwrap().comfort_noise, None);
        let (_, far) = answer(&ours, ip("10.0.0.2"), 5000, &[Codec::Pcmu], 9).unwrap();
        assert_eq!(far.comfort_noise, None, "answer() never takes CN");

        // We did not offer CN: an answer listing it anyway does not turn it on.
        let theirs = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 1000 RTP/AVP 0 13\r\n",
        )
        .unwrap();
        assert_eq!(accept_answer(&plain, &theirs).unwrap().comfort_noise, None);
        assert_eq!(accept_answer(&ours, &theirs).unwrap().comfort_noise, Some(13), "static 13 without rtpmap is CN");

        // An offer without CN is answered without it even when we would take it.
        let (ans, far) = answer_with(&plain, ip("10.0.0.2"), 5000, &[Codec::Pcmu], true, 9).unwrap();
        assert_eq!(far.comfort_noise, None);
        assert!(!ans.to_string().contains("CN"), "{ans}");

        // CN is never taken for the voice codec: a CN-first offer still picks PCMA.
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 1000 RTP/AVP 13 8\r\na=rtpmap:13 CN/8000\r\n",
        )
        .unwrap();
        let (_, n) = answer_with(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu, Codec::Pcma], true, 1).unwrap();
        assert_eq!((n.codec, n.payload_type, n.comfort_noise), (Codec::Pcma, 8, Some(13)));
        // A CN-only offer has no common codec.
        let o = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 1000 RTP/AVP 13\r\n",
        )
        .unwrap();
        assert_eq!(answer_with(&o, ip("192.0.2.2"), 2000, &[Codec::Pcmu], true, 1).unwrap_err(), SdpError::NoCommonCodec);
    }

    #[test]
    fn answer_must_match_offer_line_count() {
        let ours = make_offer(ip("192.0.2.2"), 2000, &[Codec::Pcmu], None, 1);
        let theirs = SessionDescription::parse(RFC4317_2_1_ANSWER).unwrap();
        assert_eq!(accept_answer(&ours, &theirs), Err(SdpError::MediaCountMismatch { offer: 1, answer: 2 }));
    }
}
