//! Installer-readable text for one D-channel frame, like a protocol
//! analyser's summary line and detail tree: the Q.921 address and control
//! field, then for I and UI frames the Q.931 message (or the TEI management
//! message on SAPI 63) with every information element decoded.
//!
//! ```text
//! I N(S)=0 N(R)=0 P=0, SAPI 0 TEI 0 command; Q.931 SETUP cref 1 (originator) called 5678 calling 1234
//!   Q.921: SAPI 0 (call control), TEI 0, C/R 0 (command from the user side)
//!   Q.921: I frame, N(S) 0, N(R) 0, P 0
//!   Q.931: protocol discriminator 0x08 (Q.931 call control), call reference length 1
//!   Q.931: call reference 1, flag 0 (sent by the side that originated the call)
//!   Q.931: message type 0x05 SETUP
//!   IE 0xa1 Sending complete
//!   IE 0x04 Bearer capability [80 90 a3]: ITU-T, speech; circuit mode, 64 kbit/s; layer 1 G.711 A-law
//!   ...
//! ```
//!
//! This is a viewer, not the protocol: it works on the octets (not on
//! [`crate::q931::Message`], which drops what the call control does not
//! use), says what it cannot decode instead of guessing, and shows every
//! element it does not know as hex. It never panics, whatever the octets.

use core::fmt::{self, Write as _};

use crate::lapd::{self, Control, Supervisory, Unnumbered};
use crate::q921::Role;
use crate::tei;

/// A frame, decoded: one summary line and the detail lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub summary: String,
    pub details: Vec<String>,
}

impl fmt::Display for Decoded {
    /// The summary; with `{:#}`, the summary and the details indented below it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)?;
        if f.alternate() {
            for d in &self.details {
                write!(f, "\n  {d}")?;
            }
        }
        Ok(())
    }
}

/// Longest hex dump written for one element or field (the rest is counted).
const HEX_MAX: usize = 48;

fn hex(d: &[u8]) -> String {
    let mut s = String::with_capacity(d.len().min(HEX_MAX) * 3 + 16);
    for (i, b) in d.iter().take(HEX_MAX).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    if d.len() > HEX_MAX {
        let _ = write!(s, " ... ({} octets)", d.len());
    }
    s
}

/// IA5 text as it is shown: printable ASCII kept, the rest escaped.
fn text(d: &[u8]) -> String {
    let mut s = String::with_capacity(d.len() + 2);
    s.push('"');
    for &c in d {
        match c {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(c as char);
            }
            0x20..=0x7E => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// Decodes one LAPD frame (address, control, information; no flags or FCS).
/// `sender` is the side that sent it, when known: it tells commands from
/// responses (Q.921 table 1).
pub fn decode_frame(frame: &[u8], sender: Option<Role>) -> Decoded {
    let mut details = Vec::new();
    let packet = match lapd::Packet::new_checked(frame) {
        Ok(p) => p,
        Err(e) => {
            details.push(format!("octets: {}", hex(frame)));
            return Decoded { summary: format!("malformed LAPD frame: {e} ({} octets)", frame.len()), details };
        }
    };
    let (sapi, cr, tei) = (packet.sapi(), packet.cr(), packet.tei());
    let sapi_name = match sapi {
        lapd::SAPI_CALL_CONTROL => " (call control)",
        1 => " (packet mode, Q.931)",
        16 => " (packet mode, X.25)",
        lapd::SAPI_MANAGEMENT => " (layer 2 management)",
        _ => "",
    };
    let tei_name = if tei == lapd::TEI_GROUP { " (broadcast)" } else { "" };
    // Table 1: the network side's commands and the user side's responses have C/R = 1.
    let command = sender.map(|s| cr == (s == Role::Network));
    let (cr_text, cmd_word) = match (sender, command) {
        (Some(s), Some(c)) => {
            let side = if s == Role::Network { "network" } else { "user" };
            let what = if c { "command" } else { "response" };
            (format!("C/R {} ({what} from the {side} side)", cr as u8), format!(" {what}"))
        }
        _ => (format!("C/R {}", cr as u8), String::new()),
    };
    details.push(format!("Q.921: SAPI {sapi}{sapi_name}, TEI {tei}{tei_name}, {cr_text}"));
    let control = match packet.control() {
        Ok(c) => c,
        Err(e) => {
            details.push(format!("Q.921: control field {} ({e})", hex(frame.get(2..4).unwrap_or(&[]))));
            return Decoded { summary: format!("LAPD SAPI {sapi} TEI {tei}: {e}"), details };
        }
    };
    let info = packet.info();
    let pf_name = |c: Option<bool>| match c {
        Some(true) => "P",
        Some(false) => "F",
        None => "P/F",
    };
    let frame_text = match control {
        Control::I { ns, nr, p } => {
            details.push(format!("Q.921: I frame, N(S) {ns}, N(R) {nr}, P {}", p as u8));
            format!("I N(S)={ns} N(R)={nr} P={}", p as u8)
        }
        Control::S { kind, nr, pf } => {
            let name = match kind {
                Supervisory::Rr => "RR",
                Supervisory::Rnr => "RNR",
                Supervisory::Rej => "REJ",
            };
            let pfn = pf_name(command);
            details.push(format!("Q.921: {name} (supervisory), N(R) {nr}, {pfn} {}", pf as u8));
            format!("{name} N(R)={nr} {pfn}={}", pf as u8)
        }
        Control::U { kind, pf } => {
            let name = match kind {
                Unnumbered::Sabme => "SABME",
                Unnumbered::Dm => "DM",
                Unnumbered::Ui => "UI",
                Unnumbered::Disc => "DISC",
                Unnumbered::Ua => "UA",
                Unnumbered::Frmr => "FRMR",
                Unnumbered::Xid => "XID",
            };
            let pfn = pf_name(command);
            details.push(format!("Q.921: {name} (unnumbered), {pfn} {}", pf as u8));
            format!("{name} {pfn}={}", pf as u8)
        }
    };
    let mut summary = format!("{frame_text}, SAPI {sapi} TEI {tei}{cmd_word}");
    let carries_l3 = matches!(control, Control::I { .. } | Control::U { kind: Unnumbered::Ui, .. });
    if info.len() > lapd::N201 {
        details.push(format!("Q.921: information field of {} octets, longer than N201 ({})", info.len(), lapd::N201));
    }
    match control {
        Control::S { .. } | Control::U { .. } if !info.is_empty() && !carries_l3 => {
            let allowed = matches!(control, Control::U { kind: Unnumbered::Frmr | Unnumbered::Xid, .. });
            let note = if allowed { "" } else { " (not permitted on this frame)" };
            details.push(format!("Q.921: information field{note}: {}", hex(info)));
        }
        _ => {}
    }
    if carries_l3 && sapi == lapd::SAPI_MANAGEMENT {
        let (s, mut d) = decode_tei(info);
        let _ = write!(summary, "; {s}");
        details.append(&mut d);
    } else if carries_l3 && sapi == lapd::SAPI_CALL_CONTROL {
        if info.is_empty() {
            details.push("Q.931: empty information field".into());
        } else {
            let (s, mut d) = decode_q931(info);
            let _ = write!(summary, "; {s}");
            details.append(&mut d);
        }
    } else if carries_l3 && !info.is_empty() {
        details.push(format!("information field: {}", hex(info)));
    }
    Decoded { summary, details }
}

fn decode_tei(info: &[u8]) -> (String, Vec<String>) {
    match tei::Message::parse(info) {
        Ok(m) => {
            let name = match m.message_type {
                tei::MessageType::IdentityRequest => "identity request",
                tei::MessageType::IdentityAssigned => "identity assigned",
                tei::MessageType::IdentityDenied => "identity denied",
                tei::MessageType::IdentityCheckRequest => "identity check request",
                tei::MessageType::IdentityCheckResponse => "identity check response",
                tei::MessageType::IdentityRemove => "identity remove",
                tei::MessageType::IdentityVerify => "identity verify",
            };
            let ai: Vec<String> =
                m.ai.iter().map(|&a| if a == tei::AI_GROUP { "127 (any/all)".to_string() } else { a.to_string() }).collect();
            let ai = ai.join(", ");
            (
                format!("TEI management {name} Ri {} Ai {ai}", m.ri),
                vec![format!("TEI management: {name}, reference Ri {:#06x}, action indicator Ai {ai}", m.ri)],
            )
        }
        Err(e) => {
            let why = match e {
                tei::Error::TooShort => "too short".to_string(),
                tei::Error::NotManagementEntity(x) => format!("management entity {x:#04x}, not 0x0f"),
                tei::Error::UnknownMessageType(x) => format!("unknown message type {x}"),
                tei::Error::BadActionIndicator => "bad action indicator".to_string(),
            };
            ("TEI management: malformed".into(), vec![format!("TEI management: {why}: {}", hex(info))])
        }
    }
}

/// Q.931 message type names (Q.931 table 4-2; EN 300 403-1 uses a subset).
pub fn message_type_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0x01 => "ALERTING",
        0x02 => "CALL PROCEEDING",
        0x03 => "PROGRESS",
        0x05 => "SETUP",
        0x07 => "CONNECT",
        0x0D => "SETUP ACKNOWLEDGE",
        0x0F => "CONNECT ACKNOWLEDGE",
        0x20 => "USER INFORMATION",
        0x21 => "SUSPEND REJECT",
        0x22 => "RESUME REJECT",
        0x24 => "HOLD",
        0x25 => "SUSPEND",
        0x26 => "RESUME",
        0x28 => "HOLD ACKNOWLEDGE",
        0x2D => "SUSPEND ACKNOWLEDGE",
        0x2E => "RESUME ACKNOWLEDGE",
        0x30 => "HOLD REJECT",
        0x31 => "RETRIEVE",
        0x33 => "RETRIEVE ACKNOWLEDGE",
        0x37 => "RETRIEVE REJECT",
        0x45 => "DISCONNECT",
        0x46 => "RESTART",
        0x4D => "RELEASE",
        0x4E => "RESTART ACKNOWLEDGE",
        0x5A => "RELEASE COMPLETE",
        0x60 => "SEGMENT",
        0x62 => "FACILITY",
        0x64 => "REGISTER",
        0x6E => "NOTIFY",
        0x75 => "STATUS ENQUIRY",
        0x79 => "CONGESTION CONTROL",
        0x7B => "INFORMATION",
        0x7D => "STATUS",
        _ => return None,
    })
}

/// Q.850 cause value names.
pub fn cause_name(v: u8) -> Option<&'static str> {
    Some(match v {
        1 => "unallocated (unassigned) number",
        2 => "no route to specified transit network",
        3 => "no route to destination",
        4 => "send special information tone",
        5 => "misdialled trunk prefix",
        6 => "channel unacceptable",
        7 => "call awarded and being delivered in an established channel",
        8 => "preemption",
        9 => "preemption - circuit reserved for reuse",
        14 => "QoR: ported number",
        16 => "normal call clearing",
        17 => "user busy",
        18 => "no user responding",
        19 => "no answer from user (user alerted)",
        20 => "subscriber absent",
        21 => "call rejected",
        22 => "number changed",
        23 => "redirection to new destination",
        25 => "exchange routing error",
        26 => "non-selected user clearing",
        27 => "destination out of order",
        28 => "invalid number format (address incomplete)",
        29 => "facility rejected",
        30 => "response to STATUS ENQUIRY",
        31 => "normal, unspecified",
        34 => "no circuit/channel available",
        38 => "network out of order",
        39 => "permanent frame mode connection out of service",
        40 => "permanent frame mode connection operational",
        41 => "temporary failure",
        42 => "switching equipment congestion",
        43 => "access information discarded",
        44 => "requested circuit/channel not available",
        46 => "precedence call blocked",
        47 => "resource unavailable, unspecified",
        49 => "quality of service not available",
        50 => "requested facility not subscribed",
        53 => "outgoing calls barred within CUG",
        55 => "incoming calls barred within CUG",
        57 => "bearer capability not authorized",
        58 => "bearer capability not presently available",
        62 => "inconsistency in designated outgoing access information and subscriber class",
        63 => "service or option not available, unspecified",
        65 => "bearer capability not implemented",
        66 => "channel type not implemented",
        69 => "requested facility not implemented",
        70 => "only restricted digital information bearer capability is available",
        79 => "service or option not implemented, unspecified",
        81 => "invalid call reference value",
        82 => "identified channel does not exist",
        83 => "a suspended call exists, but this call identity does not",
        84 => "call identity in use",
        85 => "no call suspended",
        86 => "call having the requested call identity has been cleared",
        87 => "user not member of CUG",
        88 => "incompatible destination",
        90 => "non-existent CUG",
        91 => "invalid transit network selection",
        95 => "invalid message, unspecified",
        96 => "mandatory information element is missing",
        97 => "message type non-existent or not implemented",
        98 => "message not compatible with call state or message type non-existent or not implemented",
        99 => "information element/parameter non-existent or not implemented",
        100 => "invalid information element contents",
        101 => "message not compatible with call state",
        102 => "recovery on timer expiry",
        103 => "parameter non-existent or not implemented, passed on",
        110 => "message with unrecognized parameter, discarded",
        111 => "protocol error, unspecified",
        127 => "interworking, unspecified",
        _ => return None,
    })
}

/// Names of the information elements (codeset 0, Q.931 table 4-3).
pub fn ie_name(codeset: u8, id: u8) -> Option<&'static str> {
    if codeset != 0 {
        return None;
    }
    Some(match id {
        0x00 => "Segmented message",
        0x04 => "Bearer capability",
        0x08 => "Cause",
        0x10 => "Call identity",
        0x14 => "Call state",
        0x18 => "Channel identification",
        0x1C => "Facility",
        0x1E => "Progress indicator",
        0x20 => "Network-specific facilities",
        0x27 => "Notification indicator",
        0x28 => "Display",
        0x29 => "Date/time",
        0x2C => "Keypad facility",
        0x34 => "Signal",
        0x40 => "Information rate",
        0x42 => "End-to-end transit delay",
        0x44 => "Transit delay selection and indication",
        0x4C => "Connected number",
        0x4D => "Connected subaddress",
        0x6C => "Calling party number",
        0x6D => "Calling party subaddress",
        0x70 => "Called party number",
        0x71 => "Called party subaddress",
        0x74 => "Redirecting number",
        0x76 => "Redirection number",
        0x78 => "Transit network selection",
        0x79 => "Restart indicator",
        0x7C => "Low layer compatibility",
        0x7D => "High layer compatibility",
        0x7E => "User-user",
        0x7F => "Escape for extension",
        0xA0 => "More data",
        0xA1 => "Sending complete",
        0xB0..=0xBF => "Congestion level",
        0xD0..=0xDF => "Repeat indicator",
        _ => return None,
    })
}

fn coding_standard(c: u8) -> &'static str {
    match c & 3 {
        0 => "ITU-T",
        1 => "ISO/IEC",
        2 => "national",
        _ => "network specific",
    }
}

fn location_name(l: u8) -> &'static str {
    match l {
        0 => "user",
        1 => "private network serving the local user",
        2 => "public network serving the local user",
        3 => "transit network",
        4 => "public network serving the remote user",
        5 => "private network serving the remote user",
        7 => "international network",
        10 => "network beyond interworking point",
        _ => "reserved location",
    }
}

/// Decodes a Q.931 message: a summary fragment and its detail lines.
pub fn decode_q931(msg: &[u8]) -> (String, Vec<String>) {
    let mut d = Vec::new();
    let Some((&pd, rest)) = msg.split_first() else {
        return ("Q.931: empty".into(), vec!["Q.931: empty message".into()]);
    };
    if pd != crate::q931::PROTOCOL_DISCRIMINATOR {
        let what = match pd {
            0x09 => " (Q.2931/X.25?)",
            0x40..=0x4F => " (national use)",
            _ => "",
        };
        d.push(format!("layer 3: protocol discriminator {pd:#04x}{what}, not Q.931 call control: {}", hex(msg)));
        return (format!("not Q.931 (protocol discriminator {pd:#04x})"), d);
    }
    let Some((&crl, rest)) = rest.split_first() else {
        d.push("Q.931: truncated after the protocol discriminator".into());
        return ("Q.931: truncated".into(), d);
    };
    d.push(format!("Q.931: protocol discriminator 0x08 (Q.931 call control), call reference length {}", crl & 0x0F));
    if crl & 0xF0 != 0 || crl > 2 {
        d.push(format!("Q.931: call reference length octet {crl:#04x} is invalid: {}", hex(rest)));
        return (format!("Q.931: bad call reference length {crl:#04x}"), d);
    }
    let crl = usize::from(crl);
    let Some(cr) = rest.get(..crl) else {
        d.push(format!("Q.931: call reference truncated: {}", hex(rest)));
        return ("Q.931: truncated call reference".into(), d);
    };
    let rest = &rest[crl..];
    let (flag, value) = match *cr {
        [] => (false, 0u16),
        [a] => (a & 0x80 != 0, u16::from(a & 0x7F)),
        [a, b] => (a & 0x80 != 0, u16::from(a & 0x7F) << 8 | u16::from(b)),
        _ => (false, 0),
    };
    let cref = if crl == 0 {
        d.push("Q.931: dummy call reference (length 0)".into());
        "dummy cref".to_string()
    } else if value == 0 {
        d.push(format!("Q.931: global call reference 0, flag {}", flag as u8));
        "global cref".to_string()
    } else {
        let side = if flag { "sent to the side that originated the call" } else { "sent by the side that originated the call" };
        d.push(format!("Q.931: call reference {value}, flag {} ({side})", flag as u8));
        format!("cref {value} ({})", if flag { "to originator" } else { "originator" })
    };
    let Some((&mt, mut rest)) = rest.split_first() else {
        d.push("Q.931: message type missing".into());
        return (format!("Q.931 {cref}: message type missing"), d);
    };
    let mt_name = if mt & 0x80 != 0 {
        d.push(format!("Q.931: message type {mt:#04x} has bit 8 set (escape, not used)"));
        format!("message type {mt:#04x}")
    } else {
        match message_type_name(mt) {
            Some(n) => {
                d.push(format!("Q.931: message type {mt:#04x} {n}"));
                n.to_string()
            }
            None => {
                d.push(format!("Q.931: message type {mt:#04x} (unknown)"));
                format!("unknown message type {mt:#04x}")
            }
        }
    };
    let mut summary = format!("Q.931 {mt_name} {cref}");
    // Elements, with shifts as Q.931 4.5.2 - 4.5.3 say.
    let mut locked = 0u8;
    let mut once: Option<u8> = None;
    let mut called = String::new();
    let mut calling = String::new();
    let mut cause = String::new();
    while let Some((&id, r)) = rest.split_first() {
        let codeset = once.take().unwrap_or(locked);
        if id & 0x80 != 0 {
            rest = r;
            if id & 0xF0 == 0x90 {
                let cs = id & 7;
                if id & 0x08 != 0 {
                    once = Some(cs);
                    d.push(format!("IE {id:#04x} Shift, non-locking to codeset {cs}"));
                } else {
                    locked = cs;
                    d.push(format!("IE {id:#04x} Shift, locking to codeset {cs}"));
                }
                continue;
            }
            let cs = if codeset == 0 { String::new() } else { format!(" (codeset {codeset})") };
            let extra = match id & 0xF0 {
                0xB0 if codeset == 0 => format!(": level {}", id & 0x0F),
                0xD0 if codeset == 0 => format!(": {}", repeat_name(id & 0x0F)),
                _ => String::new(),
            };
            match ie_name(codeset, id) {
                Some(n) => d.push(format!("IE {id:#04x} {n}{cs}{extra}")),
                None => d.push(format!("IE {id:#04x} single octet, unknown{cs}")),
            }
            continue;
        }
        let Some((&len, r)) = r.split_first() else {
            d.push(format!("IE {id:#04x} {}: length octet missing", ie_name(codeset, id).unwrap_or("(unknown)")));
            break;
        };
        let len = usize::from(len);
        let (data, truncated) = match r.get(..len) {
            Some(x) => (x, false),
            None => (r, true),
        };
        rest = r.get(len..).unwrap_or(&[]);
        let cs = if codeset == 0 { String::new() } else { format!(" (codeset {codeset})") };
        let name = ie_name(codeset, id).unwrap_or("unknown element");
        let head = format!("IE {id:#04x} {name}{cs} [{}]", hex(data));
        if truncated {
            d.push(format!("{head}: truncated, length {len} but {} octets left", data.len()));
            break;
        }
        let body = if codeset == 0 { decode_ie(id, data) } else { None };
        match body {
            Some(Ok(text)) => d.push(format!("{head}: {text}")),
            Some(Err(why)) => d.push(format!("{head}: malformed: {why}")),
            None => {
                let note = if codeset == 0 && crate::q931::Ie::comprehension_required(id) {
                    " (comprehension required)"
                } else {
                    ""
                };
                d.push(format!("{head}{note}"));
            }
        }
        if codeset == 0 {
            match id {
                0x70 if called.is_empty() => called = number_digits(data, 0),
                0x6C if calling.is_empty() => calling = number_digits(data, 1),
                0x08 if cause.is_empty() => {
                    if let Some(v) = cause_value(data) {
                        cause = format!("{v} {}", cause_name(v).unwrap_or("unknown"));
                    }
                }
                _ => {}
            }
        }
    }
    if !called.is_empty() {
        let _ = write!(summary, " called {called}");
    }
    if !calling.is_empty() {
        let _ = write!(summary, " calling {calling}");
    }
    if !cause.is_empty() {
        let _ = write!(summary, " cause {cause}");
    }
    (summary, d)
}

fn repeat_name(v: u8) -> &'static str {
    match v {
        2 => "prioritized list for selecting one possibility",
        _ => "reserved",
    }
}

/// The digits of a party number element, for the summary ("" if none).
/// `extra_octets` is how many optional octets 3a.. may follow octet 3.
fn number_digits(d: &[u8], extra_octets: usize) -> String {
    let mut i = 0;
    let mut left = extra_octets + 1;
    while let Some(&o) = d.get(i) {
        i += 1;
        left = left.saturating_sub(1);
        if o & 0x80 != 0 || left == 0 {
            break;
        }
    }
    let digits = d.get(i..).unwrap_or(&[]);
    if digits.is_empty() {
        String::new()
    } else {
        text(digits)
    }
}

fn cause_value(d: &[u8]) -> Option<u8> {
    let first = d.first()?;
    let at = if first & 0x80 != 0 { 1 } else { 2 };
    d.get(at).map(|v| v & 0x7F)
}

/// Splits the first extension group: octets up to the one with bit 8 set.
fn group(d: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = d.iter().position(|o| o & 0x80 != 0)?;
    Some(d.split_at(end + 1))
}

/// `Some(Ok(text))` decoded, `Some(Err(why))` known but malformed, `None`
/// not decoded here (shown as hex).
fn decode_ie(id: u8, d: &[u8]) -> Option<Result<String, String>> {
    Some(match id {
        0x04 => bearer(d),
        0x08 => cause(d),
        0x14 => call_state(d),
        0x18 => channel_id(d),
        0x1E => progress(d),
        0x27 => match d {
            [n] if n & 0x80 != 0 => Ok(match n & 0x7F {
                0 => "user suspended".into(),
                1 => "user resumed".into(),
                2 => "bearer service change".into(),
                x => format!("notification {x}"),
            }),
            _ => Err("one octet with bit 8 set expected".into()),
        },
        0x28 => ia5_text(d),
        0x29 => date_time(d),
        0x2C => ia5_text(d),
        0x6C => number(d, true, false),
        0x70 => number(d, false, false),
        0x74 => number(d, true, true),
        0x4C => number(d, true, false),
        0x76 => number(d, true, true),
        0x79 => match d {
            [c] if c & 0x80 != 0 => Ok(match c & 7 {
                0 => "class 0: indicated channels".into(),
                6 => "class 6: single interface".into(),
                7 => "class 7: all interfaces".into(),
                x => format!("class {x} (reserved)"),
            }),
            _ => Err("one octet with bit 8 set expected".into()),
        },
        0x34 => match d {
            [s] => Ok(match s {
                0x00 => "dial tone on".into(),
                0x01 => "ring back tone on".into(),
                0x02 => "intercept tone on".into(),
                0x03 => "network congestion tone on".into(),
                0x04 => "busy tone on".into(),
                0x05 => "confirm tone on".into(),
                0x06 => "answer tone on".into(),
                0x07 => "call waiting tone".into(),
                0x08 => "off-hook warning tone".into(),
                0x09 => "preemption tone on".into(),
                0x3F => "tones off".into(),
                0x40..=0x47 => format!("alerting on, pattern {}", s - 0x40),
                0x4F => "alerting off".into(),
                x => format!("signal {x:#04x}"),
            }),
            _ => Err("one octet expected".into()),
        },
        _ => return None,
    })
}

fn ia5_text(d: &[u8]) -> Result<String, String> {
    if d.iter().any(|c| c & 0x80 != 0) {
        return Err("not IA5 (bit 8 set)".into());
    }
    Ok(text(d))
}

fn bearer(d: &[u8]) -> Result<String, String> {
    let (o3, rest) = group(d).ok_or("octet 3 without an end of extension")?;
    let cap = o3[0] & 0x1F;
    let cap_name = match cap {
        0x00 => "speech".to_string(),
        0x08 => "unrestricted digital information".into(),
        0x09 => "restricted digital information".into(),
        0x10 => "3.1 kHz audio".into(),
        0x11 => "unrestricted digital information with tones/announcements".into(),
        0x18 => "video".into(),
        x => format!("transfer capability {x:#04x}"),
    };
    let mut s = format!("{}, {cap_name}", coding_standard(o3[0] >> 5));
    let Some((o4, rest)) = group(rest) else {
        return Err(format!("{s}; octet 4 missing"));
    };
    let mode = match o4[0] >> 5 & 3 {
        0 => "circuit mode",
        2 => "packet mode",
        _ => "reserved mode",
    };
    let rate = o4[0] & 0x1F;
    let rate_name = match rate {
        0x00 => "packet mode rate".to_string(),
        0x10 => "64 kbit/s".into(),
        0x11 => "2 x 64 kbit/s".into(),
        0x13 => "384 kbit/s".into(),
        0x15 => "1536 kbit/s".into(),
        0x17 => "1920 kbit/s".into(),
        0x18 => "multirate".into(),
        x => format!("rate {x:#04x}"),
    };
    let _ = write!(s, "; {mode}, {rate_name}");
    let mut rest = rest;
    if rate == 0x18 {
        let Some((o41, r)) = group(rest) else {
            return Err(format!("{s}; rate multiplier (octet 4.1) missing"));
        };
        let _ = write!(s, " x {}", o41[0] & 0x7F);
        rest = r;
    }
    while let Some((g, r)) = group(rest) {
        let layer = g[0] >> 5 & 3;
        let proto = g[0] & 0x1F;
        match layer {
            1 => {
                let p = match proto {
                    1 => "V.110/X.30 rate adaption".to_string(),
                    2 => "G.711 µ-law".into(),
                    3 => "G.711 A-law".into(),
                    4 => "G.721 32 kbit/s ADPCM".into(),
                    5 => "H.221/H.242".into(),
                    6 => "H.223/H.245".into(),
                    7 => "non-ITU-T standardized rate adaption".into(),
                    8 => "V.120".into(),
                    9 => "X.31 HDLC flag stuffing".into(),
                    x => format!("protocol {x:#04x}"),
                };
                let _ = write!(s, "; layer 1 {p}");
            }
            2 => {
                let _ = write!(s, "; layer 2 protocol {proto:#04x}");
            }
            3 => {
                let _ = write!(s, "; layer 3 protocol {proto:#04x}");
            }
            _ => {
                let _ = write!(s, "; octet {}", hex(g));
            }
        }
        rest = r;
    }
    if !rest.is_empty() {
        let _ = write!(s, "; trailing {}", hex(rest));
    }
    Ok(s)
}

fn cause(d: &[u8]) -> Result<String, String> {
    let (o3, rest) = group(d).ok_or("octet 3 without an end of extension")?;
    if o3.len() > 2 {
        return Err("octet 3 group longer than 2 octets".into());
    }
    let location = o3[0] & 0x0F;
    let mut s = format!("{}, location {location} ({})", coding_standard(o3[0] >> 5), location_name(location));
    if let Some(rec) = o3.get(1) {
        let _ = write!(s, ", recommendation {}", rec & 0x7F);
    }
    let Some((&o4, diag)) = rest.split_first() else {
        return Err(format!("{s}; cause value missing"));
    };
    if o4 & 0x80 == 0 {
        return Err(format!("{s}; cause value octet without bit 8"));
    }
    let v = o4 & 0x7F;
    let class = match v >> 4 {
        0 | 1 => "normal event",
        2 => "resource unavailable",
        3 => "service or option not available",
        4 => "service or option not implemented",
        5 => "invalid message",
        6 => "protocol error",
        _ => "interworking",
    };
    let _ = write!(s, "; cause {v} {} ({class})", cause_name(v).unwrap_or("unknown cause"));
    if !diag.is_empty() {
        let _ = write!(s, "; diagnostics {}", hex(diag));
    }
    Ok(s)
}

fn call_state(d: &[u8]) -> Result<String, String> {
    let [o] = d else { return Err("one octet expected".into()) };
    let st = o & 0x3F;
    let name = match st {
        0 => "U0/N0 null",
        1 => "U1/N1 call initiated",
        2 => "U2/N2 overlap sending",
        3 => "U3/N3 outgoing call proceeding",
        4 => "U4/N4 call delivered",
        6 => "U6/N6 call present",
        7 => "U7/N7 call received",
        8 => "U8/N8 connect request",
        9 => "U9/N9 incoming call proceeding",
        10 => "U10/N10 active",
        11 => "U11/N11 disconnect request",
        12 => "U12/N12 disconnect indication",
        15 => "U15/N15 suspend request",
        17 => "U17/N17 resume request",
        19 => "U19/N19 release request",
        22 => "N22 call abort",
        25 => "U25/N25 overlap receiving",
        0x3D => "REST 1 restart request",
        0x3E => "REST 2 restart",
        _ => "unknown state",
    };
    Ok(format!("{}, state {st} {name}", coding_standard(o >> 6)))
}

fn channel_id(d: &[u8]) -> Result<String, String> {
    let Some((&o3, mut rest)) = d.split_first() else { return Err("empty".into()) };
    if o3 & 0x80 == 0 {
        return Err("octet 3 without bit 8 (extension) set".into());
    }
    let primary = o3 & 0x20 != 0;
    let sel = o3 & 3;
    let mut s = format!(
        "{} interface, {}",
        if primary { "primary" } else { "basic" },
        if o3 & 0x08 != 0 { "exclusive" } else { "preferred" }
    );
    if o3 & 0x04 != 0 {
        s.push_str(", the D channel");
    }
    if o3 & 0x40 != 0 {
        let Some((iface, r)) = group(rest) else {
            return Err(format!("{s}; interface identifier missing"));
        };
        let _ = write!(s, ", interface {}", hex(iface));
        rest = r;
    }
    let sel_name = match (primary, sel) {
        (_, 0) => "no channel",
        (false, 1) => "B1",
        (false, 2) => "B2",
        (true, 1) => "as indicated",
        (true, 2) => "reserved selection",
        (_, _) => "any channel",
    };
    let _ = write!(s, ", {sel_name}");
    if primary && sel == 1 {
        let Some((o32, r)) = group(rest) else {
            return Err(format!("{s}; octet 3.2 missing"));
        };
        let ty = match o32[0] & 0x0F {
            3 => "B-channel units",
            6 => "H0-channel units",
            8 => "H11-channel units",
            9 => "H12-channel units",
            _ => "reserved channel type",
        };
        let map = o32[0] & 0x10 != 0;
        let _ = write!(s, " ({}, {ty})", coding_standard(o32[0] >> 5));
        if map {
            if r.is_empty() {
                return Err(format!("{s}; slot map missing"));
            }
            let _ = write!(s, "; slot map {}", hex(r));
        } else {
            let mut chans = Vec::new();
            let mut r = r;
            while let Some((&c, rr)) = r.split_first() {
                chans.push((c & 0x7F).to_string());
                r = rr;
                if c & 0x80 != 0 {
                    break;
                }
            }
            if chans.is_empty() {
                return Err(format!("{s}; channel number missing"));
            }
            let _ = write!(s, ": channel {}", chans.join(", "));
            if !r.is_empty() {
                let _ = write!(s, "; trailing {}", hex(r));
            }
        }
    } else if !rest.is_empty() {
        let _ = write!(s, "; trailing {}", hex(rest));
    }
    Ok(s)
}

fn progress(d: &[u8]) -> Result<String, String> {
    let [o3, o4] = d else { return Err("two octets expected".into()) };
    if o3 & 0x80 == 0 || o4 & 0x80 == 0 {
        return Err("extension bits not set".into());
    }
    let l = o3 & 0x0F;
    let desc = o4 & 0x7F;
    let name = match desc {
        1 => "call is not end-to-end ISDN; further call progress information may be available in-band",
        2 => "destination address is non-ISDN",
        3 => "origination address is non-ISDN",
        4 => "call has returned to the ISDN",
        5 => "interworking has occurred and has resulted in a telecommunication service change",
        8 => "in-band information or an appropriate pattern is now available",
        _ => "unknown description",
    };
    Ok(format!("{}, location {l} ({}); #{desc} {name}", coding_standard(o3 >> 5), location_name(l)))
}

fn date_time(d: &[u8]) -> Result<String, String> {
    if !(3..=6).contains(&d.len()) {
        return Err(format!("{} octets, 3 to 6 expected", d.len()));
    }
    let mut s = format!("{:02}-{:02}-{:02}", d[0], d[1], d[2]);
    if let Some(h) = d.get(3) {
        let _ = write!(s, " {h:02}");
    }
    if let Some(m) = d.get(4) {
        let _ = write!(s, ":{m:02}");
    }
    if let Some(sec) = d.get(5) {
        let _ = write!(s, ":{sec:02}");
    }
    let ok = d[0] < 100
        && (1..=12).contains(&d[1])
        && (1..=31).contains(&d[2])
        && d.get(3).is_none_or(|&h| h < 24)
        && d.get(4).is_none_or(|&m| m < 60)
        && d.get(5).is_none_or(|&x| x < 60);
    if ok {
        Ok(format!("{s} (YY-MM-DD)"))
    } else {
        Err(format!("{s}: out of range"))
    }
}

fn number(d: &[u8], has_presentation: bool, has_reason: bool) -> Result<String, String> {
    let Some((&o3, mut rest)) = d.split_first() else { return Err("empty".into()) };
    let ton = match o3 >> 4 & 7 {
        0 => "unknown",
        1 => "international",
        2 => "national",
        3 => "network specific",
        4 => "subscriber",
        6 => "abbreviated",
        _ => "reserved",
    };
    let plan = match o3 & 0x0F {
        0 => "unknown",
        1 => "ISDN/telephony (E.164)",
        3 => "data (X.121)",
        4 => "telex (F.69)",
        8 => "national standard",
        9 => "private",
        _ => "reserved",
    };
    let mut extra = String::new();
    if o3 & 0x80 == 0 {
        let Some((&o3a, r)) = rest.split_first() else {
            return Err("octet 3a announced but missing".into());
        };
        rest = r;
        if !has_presentation {
            return Err("octet 3a (presentation) is not defined for this element".into());
        }
        let pres = match o3a >> 5 & 3 {
            0 => "presentation allowed",
            1 => "presentation restricted",
            2 => "number not available due to interworking",
            _ => "reserved presentation",
        };
        let scr = match o3a & 3 {
            0 => "user-provided, not screened",
            1 => "user-provided, verified and passed",
            2 => "user-provided, verified and failed",
            _ => "network provided",
        };
        let _ = write!(extra, ", {pres}, {scr}");
        if o3a & 0x80 == 0 {
            let Some((&o3b, r)) = rest.split_first() else {
                return Err("octet 3b announced but missing".into());
            };
            rest = r;
            if !has_reason {
                return Err("octet 3b is not defined for this element".into());
            }
            let reason = match o3b & 0x0F {
                0 => "unknown",
                1 => "call forwarding busy",
                2 => "call forwarding no reply",
                4 => "call deflection",
                9 => "called DTE out of order",
                10 => "call forwarding by the called DTE",
                15 => "call forwarding unconditional",
                _ => "reserved",
            };
            let _ = write!(extra, ", reason {reason}");
        }
    }
    if rest.iter().any(|c| c & 0x80 != 0) {
        return Err(format!("digits not IA5: {}", hex(rest)));
    }
    Ok(format!("{}, type {ton}, plan {plan}{extra}", text(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn i_frame(cr: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![(cr as u8) << 1, 0x01, 0x04, 0x0A];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn setup_in_an_i_frame_reads_like_an_analyser() {
        let setup = include_bytes!("../testdata/q931/setup-bri.bin");
        let f = i_frame(false, setup);
        let d = decode_frame(&f, Some(Role::User));
        assert_eq!(
            d.summary,
            "I N(S)=2 N(R)=5 P=0, SAPI 0 TEI 0 command; Q.931 SETUP cref 1 (originator) called \"5678\" calling \"1234\""
        );
        let all = format!("{d:#}");
        for want in [
            "Q.921: SAPI 0 (call control), TEI 0, C/R 0 (command from the user side)",
            "Q.921: I frame, N(S) 2, N(R) 5, P 0",
            "Q.931: call reference 1, flag 0 (sent by the side that originated the call)",
            "Q.931: message type 0x05 SETUP",
            "IE 0xa1 Sending complete",
            "Bearer capability [80 90 a3]: ITU-T, speech; circuit mode, 64 kbit/s; layer 1 G.711 A-law",
            "Channel identification [83]: basic interface, preferred, any channel",
            "Calling party number [01 80 31 32 33 34]: \"1234\", type unknown, plan ISDN/telephony (E.164), presentation allowed, user-provided, not screened",
            "Called party number [81 35 36 37 38]: \"5678\", type unknown, plan ISDN/telephony (E.164)",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
        // The same octets seen from the other side are a response.
        let d = decode_frame(&f, Some(Role::Network));
        assert!(d.summary.contains("TEI 0 response;"), "{}", d.summary);
        // Direction unknown: the bit as sent.
        let d = decode_frame(&f, None);
        assert!(d.details[0].ends_with("C/R 0"), "{:?}", d.details);
    }

    #[test]
    fn disconnect_cause_progress_display_date_and_unknown_elements() {
        let msg = [
            0x08, 0x02, 0x80, 0x21, 0x45, // DISCONNECT, cref 33 with the flag
            0x08, 0x03, 0x82, 0x91, 0x7F, // cause 17 from the local public network, diagnostic
            0x1E, 0x02, 0x82, 0x88, // progress: in-band information
            0x28, 0x03, b'B', b'y', b'e', // display
            0x29, 0x05, 26, 12, 5, 8, 30, // date/time
            0x7B, 0x02, 0xAB, 0xCD, // unknown, not comprehension required
            0x96, 0x05, 0x01, 0x42, // locking shift to 6, codeset 6 element
        ];
        let d = decode_frame(&i_frame(true, &msg), Some(Role::Network));
        assert_eq!(
            d.summary,
            "I N(S)=2 N(R)=5 P=0, SAPI 0 TEI 0 command; Q.931 DISCONNECT cref 33 (to originator) cause 17 user busy"
        );
        let all = format!("{d:#}");
        for want in [
            "Q.931: call reference 33, flag 1 (sent to the side that originated the call)",
            "Cause [82 91 7f]: ITU-T, location 2 (public network serving the local user); cause 17 user busy (normal event); diagnostics 7f",
            "Progress indicator [82 88]: ITU-T, location 2 (public network serving the local user); #8 in-band information or an appropriate pattern is now available",
            "Display [42 79 65]: \"Bye\"",
            "Date/time [1a 0c 05 08 1e]: 26-12-05 08:30 (YY-MM-DD)",
            "IE 0x7b unknown element [ab cd]",
            "IE 0x96 Shift, locking to codeset 6",
            "IE 0x05 unknown element (codeset 6) [42]",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
    }

    #[test]
    fn pri_channel_restart_redirecting_and_malformed_elements() {
        let (s, d) = decode_q931(&[0x08, 0x02, 0x00, 0x00, 0x46, 0x79, 0x01, 0x87]);
        assert_eq!(s, "Q.931 RESTART global cref");
        assert!(d.iter().any(|l| l.ends_with("class 7: all interfaces")), "{d:?}");
        let (_, d) = decode_q931(&[0x08, 0x02, 0x92, 0x34, 0x02, 0x18, 0x03, 0xA9, 0x83, 0x85]);
        assert!(
            d.iter().any(|l| l.ends_with("primary interface, exclusive, as indicated (ITU-T, B-channel units): channel 5")),
            "{d:?}"
        );
        let (_, d) = decode_q931(&[0x08, 0x01, 0x01, 0x05, 0x74, 0x05, 0x11, 0x23, 0x8F, b'4', b'9']);
        assert!(
            d.iter().any(|l| l.contains(
                "\"49\", type international, plan ISDN/telephony (E.164), presentation restricted, network provided, reason call forwarding unconditional"
            )),
            "{d:?}"
        );
        // A cause without its value, a truncated element, a comprehension-required unknown one.
        let (_, d) = decode_q931(&[0x08, 0x01, 0x81, 0x45, 0x0A, 0x01, 0x00, 0x08, 0x01, 0x80, 0x1C, 0x09, 0x01]);
        assert!(d.iter().any(|l| l == "IE 0x0a unknown element [00] (comprehension required)"), "{d:?}");
        assert!(d.iter().any(|l| l.contains("Cause [80]: malformed:") && l.ends_with("cause value missing")), "{d:?}");
        assert!(d.iter().any(|l| l.contains("Facility [01]: truncated, length 9 but 1 octets left")), "{d:?}");
    }

    #[test]
    fn layer2_frames_and_tei_management() {
        let d = decode_frame(&[0x00, 0x01, 0x7F], Some(Role::User));
        assert_eq!(d.summary, "SABME P=1, SAPI 0 TEI 0 command");
        let d = decode_frame(&[0x00, 0x01, 0x73], Some(Role::Network));
        assert_eq!(d.summary, "UA F=1, SAPI 0 TEI 0 response");
        let d = decode_frame(&[0x02, 0x01, 0x01, 0x0B], Some(Role::User));
        assert_eq!(d.summary, "RR N(R)=5 F=1, SAPI 0 TEI 0 response");
        let d = decode_frame(&[0xFC, 0xFF, 0x03, 0x0F, 0x12, 0x34, 0x01, 0xFF], Some(Role::User));
        assert_eq!(d.summary, "UI P=0, SAPI 63 TEI 127 command; TEI management identity request Ri 4660 Ai 127 (any/all)");
        assert!(d.details[0].contains("(layer 2 management)") && d.details[0].contains("(broadcast)"));
        // Malformed frames say so, with the octets.
        let d = decode_frame(&[0x01, 0x01, 0x7F], None);
        assert_eq!(d.summary, "malformed LAPD frame: bad address extension bits (3 octets)");
        assert_eq!(d.details, ["octets: 01 01 7f"]);
        let d = decode_frame(&[0x00, 0x01, 0x0D, 0x00], None);
        assert_eq!(d.summary, "LAPD SAPI 0 TEI 0: undefined control field");
        let d = decode_frame(&[0x00, 0x01, 0x7F, 0x55], None);
        assert!(d.details.iter().any(|l| l == "Q.921: information field (not permitted on this frame): 55"), "{d:?}");
        // Not Q.931 in an I frame.
        let d = decode_frame(&i_frame(false, &[0x41, 0x00]), None);
        assert!(d.summary.ends_with("; not Q.931 (protocol discriminator 0x41)"), "{}", d.summary);
    }

    #[test]
    fn cause_names_follow_q850() {
        assert_eq!(cause_name(16), Some("normal call clearing"));
        assert_eq!(cause_name(34), Some("no circuit/channel available"));
        assert_eq!(cause_name(127), Some("interworking, unspecified"));
        assert_eq!(cause_name(10), None);
        assert_eq!(message_type_name(0x5A), Some("RELEASE COMPLETE"));
        assert_eq!(message_type_name(0x7F), None);
    }

    #[test]
    fn seed_corpus_decodes_without_malformed_parts() {
        for bytes in [
            &include_bytes!("../testdata/q931/setup-bri.bin")[..],
            &include_bytes!("../testdata/q931/restart-pri.bin")[..],
            &include_bytes!("../testdata/q931/call-proceeding-pri.bin")[..],
            &include_bytes!("../testdata/q931/disconnect.bin")[..],
            &include_bytes!("../testdata/q931/setup-redirecting-shift.bin")[..],
        ] {
            let (s, d) = decode_q931(bytes);
            assert!(s.starts_with("Q.931 "), "{s}");
            assert!(!d.iter().any(|l| l.contains("malformed") || l.contains("truncated")), "{d:#?}");
        }
    }

    fn arb_valid_ie() -> impl Strategy<Value = crate::q931::Ie> {
        use crate::q931::*;
        let digits = || proptest::collection::vec(0x20u8..0x7F, 0..16);
        prop_oneof![
            (0u8..4, 0u8..32, 0u8..4, 0u8..32, 1u8..128, proptest::option::of(0u8..32)).prop_map(|(c, t, m, r, n, l)| {
                Ie::BearerCapability(BearerCapability {
                    coding_standard: c,
                    transfer_capability: t,
                    transfer_mode: m,
                    transfer_rate: r,
                    rate_multiplier: (r == 0x18).then_some(n),
                    layer1: l,
                })
            }),
            (0u8..4, 0u8..16, 0u8..128, proptest::collection::vec(any::<u8>(), 0..6))
                .prop_map(|(c, l, v, d)| Ie::Cause(Cause { coding_standard: c, location: l, value: v, diagnostics: d })),
            (0u8..64).prop_map(Ie::CallState),
            (any::<bool>(), any::<bool>(), 0u8..4, 1u8..32).prop_map(|(p, e, sel, ch)| {
                Ie::ChannelId(ChannelId {
                    primary: p,
                    exclusive: e,
                    d_channel: false,
                    selection: sel,
                    channel: (p && sel == 1).then_some(ch),
                })
            }),
            (0u8..4, 0u8..16, 0u8..128)
                .prop_map(|(c, l, d)| Ie::Progress(Progress { coding_standard: c, location: l, description: d })),
            (0u8..128).prop_map(Ie::NotificationIndicator),
            digits().prop_map(Ie::Display),
            (0u8..100, 1u8..13, 1u8..32, 0u8..24, 0u8..60).prop_map(|(y, mo, d, h, mi)| {
                Ie::DateTime(DateTime { year: y, month: mo, day: d, hour: Some(h), minute: Some(mi), second: None })
            }),
            proptest::collection::vec(0x20u8..0x7F, 1..8).prop_map(Ie::Keypad),
            (0u8..8, 0u8..16, proptest::option::of((0u8..4, 0u8..4)), digits()).prop_map(|(t, p, ps, d)| {
                Ie::CallingNumber(PartyNumber {
                    type_of_number: t,
                    plan: p,
                    presentation: ps.map(|x| x.0),
                    screening: ps.map_or(0, |x| x.1),
                    reason: None,
                    digits: d,
                })
            }),
            (0u8..8, 0u8..16, digits()).prop_map(|(t, p, d)| {
                Ie::CalledNumber(PartyNumber { type_of_number: t, plan: p, presentation: None, screening: 0, reason: None, digits: d })
            }),
            (0u8..8).prop_map(Ie::RestartIndicator),
            Just(Ie::SendingComplete),
        ]
    }

    proptest! {
        /// What gw-isdn's own encoder writes, the decoder reads without a
        /// complaint, names every element, and finds the message type.
        #[test]
        fn our_encodings_decode_cleanly(mt in (0u8..0x80), cr in 1u16..0x7FFF, flag: bool,
                                        ies in proptest::collection::vec(arb_valid_ie(), 0..10)) {
            let m = crate::q931::Message::new(
                crate::q931::CallRef { len: 2, flag, value: cr },
                crate::q931::MessageType::from_code(mt),
                ies.clone(),
            );
            let (summary, details) = decode_q931(&m.to_vec());
            let name = message_type_name(mt).map_or(format!("unknown message type {mt:#04x}"), str::to_string);
            prop_assert!(summary.starts_with(&format!("Q.931 {name} cref {cr}")), "{}", summary);
            for d in &details {
                prop_assert!(!d.contains("malformed") && !d.contains("truncated"), "{}\n{:#?}", d, details);
            }
            let ie_lines = details.iter().filter(|d| d.starts_with("IE ")).count();
            prop_assert_eq!(ie_lines, ies.len(), "{:#?}", details);
        }

        /// Any octets: no panic, a non-empty summary, bounded output.
        #[test]
        fn any_octets_decode(bytes in proptest::collection::vec(any::<u8>(), 0..400), q931_header: bool,
                             who in proptest::option::of(prop_oneof![Just(Role::User), Just(Role::Network)])) {
            let mut bytes = bytes;
            if q931_header && bytes.len() > 6 {
                // An I frame on SAPI 0 carrying something Q.931 shaped.
                bytes[0] &= 0x02;
                bytes[1] |= 1;
                bytes[2] &= 0xFE;
                bytes[4] = 0x08;
                bytes[5] &= 0x03;
            }
            let d = decode_frame(&bytes, who);
            prop_assert!(!d.summary.is_empty());
            let text = format!("{d:#}");
            prop_assert!(text.len() < 64 * 1024);
        }
    }
}
