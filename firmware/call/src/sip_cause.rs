//! Causes at the SIP edge: RFC 3398 status <-> Q.850 cause tables with per-trunk
//! overrides, and the RFC 3326 `Reason` header.
//!
//! Inside the gateway a call ends with a [`Cause`]; only the SIP leg turns it into a
//! status code ([`CauseMap::status_for`]) and back ([`CauseMap::cause_for`]). A
//! `Reason: Q.850;cause=N` from the peer wins over the status, and the gateway sends
//! one ([`reason::format_reason`]) on BYE, CANCEL and every final error, so a cause
//! crosses SIP unchanged between two gateways that both speak RFC 3326.
//!
//! Choices where RFC 3398 is silent (documented so the installer can override them):
//! - A cause RFC 3398 §7.2.4.1 does not list gets its class's status: normal event 480
//!   (as 31), resource unavailable 503 (as 34..47), service not available 503 (as 58),
//!   not implemented 501 (as 79), invalid message, protocol error and interworking 500
//!   (as 111 and 127).
//! - A status §8.2.6.1 does not list is treated as the x00 of its class, as RFC 3261
//!   §8.1.3.2 tells a UAC to treat any unrecognised final response: 4xx as 400 (41),
//!   5xx as 500 (41), 6xx as 600 (17). An override of the x00 applies to them too.
//! - 487 (Request Terminated) maps to 127: when *we* cancelled, the call already has
//!   its own cause and never asks the map; a 487 we did not ask for is interworking.
//! - 488 and 606 (Not Acceptable) map to 65 (bearer capability not implemented).
//! - 607 (Unwanted, RFC 8197) and 608 (Rejected, RFC 8688) map to 21 (call rejected).
//! - 1xx, 2xx, 3xx (redirects are not followed) and anything outside 100..=699 map
//!   to 127 (interworking).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cause::{Cause, CauseClass};

/// RFC 3398 §7.2.4.1 plus the class defaults above. `None` only for 16 normal
/// clearing, which is a BYE (or CANCEL), never a status.
fn default_status_for(cause: Cause) -> Option<u16> {
    Some(match cause.get() {
        16 => return None,
        1 | 2 | 3 | 26 => 404,
        17 => 486,
        18 => 408,
        19 | 20 | 31 => 480,
        21 | 55 | 57 | 87 => 403,
        22 | 23 => 410,
        27 => 502,
        28 => 484,
        29 | 79 => 501,
        34 | 38 | 41 | 42 | 47 | 58 | 88 => 503,
        65 | 70 => 488,
        102 => 504,
        111 | 127 => 500,
        _ => match cause.class() {
            CauseClass::Normal => 480,
            CauseClass::ResourceUnavailable | CauseClass::ServiceUnavailable => 503,
            CauseClass::NotImplemented => 501,
            CauseClass::InvalidMessage | CauseClass::ProtocolError | CauseClass::Interworking => 500,
        },
    })
}

/// RFC 3398 §8.2.6.1 for the statuses it lists, plus 487/488/606/607/608;
/// `None` for the rest (see the module docs for what happens to them).
fn listed_cause_for(status: u16) -> Option<u8> {
    Some(match status {
        400 | 481 | 500 | 503 => 41,
        401 | 402 | 403 | 407 | 603 | 607 | 608 => 21,
        404 | 485 | 604 => 1,
        405 => 63,
        406 | 415 | 501 => 79,
        408 | 504 => 102,
        410 => 22,
        413 | 414 | 416 | 420 | 421 | 423 | 487 | 505 | 513 => 127,
        480 => 18,
        482 | 483 => 25,
        484 => 28,
        486 | 600 => 17,
        488 | 606 => 65,
        502 => 38,
        _ => return None,
    })
}

/// Per-trunk overrides as they appear in the configuration:
///
/// ```toml
/// [trunk.cause_map]
/// to_sip = { 34 = 480 }      # cause -> status
/// from_sip = { 503 = 34 }    # status -> cause
/// ```
///
/// TOML keys are strings, so the keys are parsed (and checked) by [`CauseMap::new`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CauseMapConfig {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub to_sip: BTreeMap<String, u16>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub from_sip: BTreeMap<String, u16>,
}

/// A refused override: which key, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CauseMapError {
    /// `to_sip.34` or `from_sip.503`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for CauseMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for CauseMapError {}

/// The two tables of one SIP trunk: RFC defaults overlaid by its overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CauseMap {
    /// Index = cause value; 0 = no status (BYE/CANCEL). Filled for every cause.
    to_sip: [u16; 128],
    /// Overrides only, sorted by status.
    from_sip: Vec<(u16, Cause)>,
}

impl Default for CauseMap {
    /// The RFC 3398 tables with no overrides.
    fn default() -> Self {
        let mut to_sip = [0u16; 128];
        for (v, slot) in to_sip.iter_mut().enumerate().skip(1) {
            *slot = Cause::new(v as u8).and_then(default_status_for).unwrap_or(0);
        }
        CauseMap { to_sip, from_sip: Vec::new() }
    }
}

impl CauseMap {
    /// The RFC tables overlaid by `config`. Keys and values are checked: causes
    /// 1..=127, statuses 300..=699, and cause 16 stays a BYE (it cannot get a status).
    pub fn new(config: &CauseMapConfig) -> Result<CauseMap, CauseMapError> {
        let mut map = CauseMap::default();
        for (key, &status) in &config.to_sip {
            let field = format!("to_sip.{key}");
            let cause = parse_cause(key).ok_or_else(|| CauseMapError {
                field: field.clone(),
                message: format!("key {key:?} is not a Q.850 cause (1..=127)"),
            })?;
            if cause == Cause::NORMAL_CLEARING {
                return Err(CauseMapError { field, message: "16 normal call clearing is sent as BYE or CANCEL, not as a status".into() });
            }
            if !(300..=699).contains(&status) {
                return Err(CauseMapError { field, message: format!("status {status} is not a final error (300..=699)") });
            }
            map.to_sip[usize::from(cause.get())] = status;
        }
        for (key, &cause) in &config.from_sip {
            let field = format!("from_sip.{key}");
            let status = key.trim().parse::<u16>().ok().filter(|s| (300..=699).contains(s)).ok_or_else(|| CauseMapError {
                field: field.clone(),
                message: format!("key {key:?} is not a final error status (300..=699)"),
            })?;
            let cause = u8::try_from(cause).ok().and_then(Cause::new).ok_or_else(|| CauseMapError {
                field,
                message: format!("{cause} is not a Q.850 cause (1..=127)"),
            })?;
            map.from_sip.push((status, cause));
        }
        // BTreeMap iteration sorts the strings; sort the numbers (and " 34" == "34": last wins).
        map.from_sip.sort_by_key(|&(s, _)| s);
        map.from_sip.dedup_by_key(|&mut (s, _)| s);
        Ok(map)
    }

    /// The status to reject a call with `cause`; `None` for 16 normal clearing (send
    /// BYE or CANCEL instead).
    pub fn status_for(&self, cause: Cause) -> Option<u16> {
        match self.to_sip[usize::from(cause.get())] {
            0 => None,
            s => Some(s),
        }
    }

    /// The cause for a failure `status`, unless the response (or BYE/CANCEL) carried a
    /// Q.850 `reason` (RFC 3326), which wins.
    pub fn cause_for(&self, status: u16, reason: Option<Cause>) -> Cause {
        if let Some(c) = reason {
            return c;
        }
        self.status_cause(status).or_else(|| match status {
            400..=699 => self.status_cause(status / 100 * 100),
            _ => None,
        })
        .unwrap_or(Cause::INTERWORKING)
    }

    fn status_cause(&self, status: u16) -> Option<Cause> {
        if let Ok(i) = self.from_sip.binary_search_by_key(&status, |&(s, _)| s) {
            return Some(self.from_sip[i].1);
        }
        listed_cause_for(status).and_then(Cause::new)
    }
}

fn parse_cause(s: &str) -> Option<Cause> {
    s.trim().parse::<u8>().ok().and_then(Cause::new)
}

/// The RFC 3326 `Reason` header, Q.850 protocol only.
pub mod reason {
    use crate::cause::Cause;

    /// The first Q.850 cause in a `Reason` header value such as
    /// `SIP;cause=200;text="Call completed elsewhere", Q.850;cause=16;text="Terminated"`.
    /// Several comma-separated reasons are allowed (commas inside quoted text are
    /// text); the protocol and parameter names are case-insensitive; whitespace around
    /// tokens is ignored; `SIP` and other protocols are skipped. Anything malformed, or
    /// a cause outside 1..=127, is `None` for that reason.
    pub fn parse(value: &str) -> Option<Cause> {
        split_outside_quotes(value, b',').into_iter().find_map(parse_one)
    }

    fn parse_one(reason: &str) -> Option<Cause> {
        let mut parts = split_outside_quotes(reason, b';').into_iter();
        let protocol = parts.next()?.trim();
        if !protocol.eq_ignore_ascii_case("q.850") {
            return None;
        }
        for param in parts {
            let Some((name, value)) = param.split_once('=') else { continue };
            if name.trim().eq_ignore_ascii_case("cause") {
                let v = value.trim();
                if v.is_empty() || v.len() > 3 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                return v.parse::<u8>().ok().and_then(Cause::new);
            }
        }
        None
    }

    /// Splits at `sep` outside double quotes (a backslash escapes the next byte inside
    /// quotes, RFC 3261 quoted-pair). `sep` is ASCII, so every split is on a char
    /// boundary.
    fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
        let mut out = Vec::new();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        for (i, b) in s.bytes().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if !quoted && b == sep {
                out.push(&s[start..i]);
                start = i + 1;
            }
        }
        out.push(&s[start..]);
        out
    }

    /// `Q.850;cause=17;text="User busy"`: what the gateway sends on BYE, CANCEL and
    /// final errors.
    pub fn format_reason(cause: Cause) -> String {
        let text = cause.text();
        let mut t = String::with_capacity(text.len());
        let mut chars = text.chars();
        if let Some(c) = chars.next() {
            t.extend(c.to_uppercase());
        }
        t.extend(chars.filter(|&c| c != '"' && c != '\\'));
        format!("Q.850;cause={};text=\"{}\"", cause.get(), t)
    }
}

#[cfg(test)]
mod tests {
    use super::reason::{format_reason, parse};
    use super::*;
    use proptest::prelude::*;

    fn c(v: u8) -> Cause {
        Cause::new(v).unwrap()
    }

    /// CALL-CONTROL.md 2.4, cause -> status (RFC 3398 §7.2.4.1).
    const TO_SIP: &[(u8, u16)] = &[
        (1, 404), (2, 404), (3, 404), (17, 486), (18, 408), (19, 480), (20, 480), (31, 480), (21, 403),
        (22, 410), (26, 404), (27, 502), (28, 484), (29, 501), (34, 503), (38, 503), (41, 503),
        (42, 503), (47, 503), (58, 503), (88, 503), (55, 403), (57, 403), (87, 403), (65, 488),
        (70, 488), (79, 501), (102, 504), (111, 500), (127, 500),
    ];

    /// CALL-CONTROL.md 2.4, status -> cause (RFC 3398 §8.2.6.1) and our 487/488/606.
    const FROM_SIP: &[(u16, u8)] = &[
        (400, 41), (401, 21), (402, 21), (403, 21), (407, 21), (404, 1), (485, 1), (604, 1),
        (405, 63), (406, 79), (415, 79), (408, 102), (410, 22), (413, 127), (414, 127), (416, 127),
        (420, 127), (421, 127), (423, 127), (505, 127), (513, 127), (480, 18), (481, 41), (500, 41),
        (503, 41), (482, 25), (483, 25), (484, 28), (486, 17), (600, 17), (501, 79), (502, 38),
        (504, 102), (603, 21), (487, 127), (488, 65), (606, 65),
    ];

    #[test]
    fn every_rfc_row_cause_to_status() {
        let m = CauseMap::default();
        for &(cause, status) in TO_SIP {
            assert_eq!(m.status_for(c(cause)), Some(status), "cause {cause}");
        }
        assert_eq!(m.status_for(Cause::NORMAL_CLEARING), None, "16 is BYE/CANCEL");
    }

    #[test]
    fn every_rfc_row_status_to_cause() {
        let m = CauseMap::default();
        for &(status, cause) in FROM_SIP {
            assert_eq!(m.cause_for(status, None), c(cause), "status {status}");
        }
    }

    #[test]
    fn unlisted_causes_take_their_class_default() {
        let m = CauseMap::default();
        assert_eq!(m.status_for(c(8)), Some(480));
        assert_eq!(m.status_for(c(44)), Some(503));
        assert_eq!(m.status_for(c(50)), Some(503));
        assert_eq!(m.status_for(c(66)), Some(501));
        assert_eq!(m.status_for(c(95)), Some(500));
        assert_eq!(m.status_for(c(100)), Some(500));
        assert_eq!(m.status_for(c(120)), Some(500));
        for v in 1..=127 {
            let s = m.status_for(c(v));
            assert_eq!(s.is_none(), v == 16, "{v}");
            if let Some(s) = s {
                assert!((400..=699).contains(&s), "{v}: {s}");
            }
        }
    }

    #[test]
    fn unlisted_statuses_are_their_class_x00() {
        let m = CauseMap::default();
        assert_eq!(m.cause_for(499, None), c(41), "as 400");
        assert_eq!(m.cause_for(422, None), c(41));
        assert_eq!(m.cause_for(599, None), c(41), "as 500");
        assert_eq!(m.cause_for(699, None), c(17), "as 600");
        assert_eq!(m.cause_for(607, None), c(21));
        assert_eq!(m.cause_for(302, None), Cause::INTERWORKING);
        assert_eq!(m.cause_for(200, None), Cause::INTERWORKING);
        assert_eq!(m.cause_for(0, None), Cause::INTERWORKING);
        assert_eq!(m.cause_for(u16::MAX, None), Cause::INTERWORKING);
    }

    #[test]
    fn overrides_replace_single_rows_both_ways() {
        let cfg: CauseMapConfig = toml::from_str("to_sip = { 34 = 480, 17 = 600 }\nfrom_sip = { 503 = 34, 400 = 31 }").unwrap();
        let m = CauseMap::new(&cfg).unwrap();
        assert_eq!(m.status_for(c(34)), Some(480));
        assert_eq!(m.status_for(c(17)), Some(600));
        assert_eq!(m.status_for(c(38)), Some(503), "other rows keep the RFC value");
        assert_eq!(m.cause_for(503, None), c(34));
        assert_eq!(m.cause_for(500, None), c(41));
        assert_eq!(m.cause_for(400, None), c(31));
        assert_eq!(m.cause_for(499, None), c(31), "unlisted 4xx follow the overridden 400");
    }

    #[test]
    fn bad_overrides_name_the_key() {
        let err = |s: &str| CauseMap::new(&toml::from_str::<CauseMapConfig>(s).unwrap()).unwrap_err();
        assert_eq!(err("to_sip = { 0 = 480 }").field, "to_sip.0");
        assert_eq!(err("to_sip = { 128 = 480 }").field, "to_sip.128");
        assert_eq!(err("to_sip = { busy = 480 }").field, "to_sip.busy");
        let e = err("to_sip = { 34 = 200 }");
        assert_eq!(e.field, "to_sip.34");
        assert!(e.to_string().contains("200"), "{e}");
        assert_eq!(err("to_sip = { 16 = 480 }").field, "to_sip.16");
        assert_eq!(err("from_sip = { 200 = 16 }").field, "from_sip.200");
        assert_eq!(err("from_sip = { 700 = 16 }").field, "from_sip.700");
        let e = err("from_sip = { 503 = 0 }");
        assert_eq!(e.to_string(), "from_sip.503: 0 is not a Q.850 cause (1..=127)");
        assert_eq!(err("from_sip = { 503 = 128 }").field, "from_sip.503");
        assert!(toml::from_str::<CauseMapConfig>("to_sipp = {}").is_err(), "unknown fields refused");
    }

    #[test]
    fn reason_wins_over_the_status() {
        let m = CauseMap::default();
        assert_eq!(m.cause_for(503, Some(c(34))), c(34));
        assert_eq!(m.cause_for(480, parse("Q.850;cause=17;text=\"User busy\"")), c(17));
        let cfg: CauseMapConfig = toml::from_str("from_sip = { 503 = 38 }").unwrap();
        let m = CauseMap::new(&cfg).unwrap();
        assert_eq!(m.cause_for(503, Some(c(42))), c(42), "over overrides too");
        assert_eq!(m.cause_for(503, None), c(38));
    }

    #[test]
    fn reason_header_values() {
        assert_eq!(parse("Q.850;cause=17;text=\"User busy\""), Some(c(17)));
        assert_eq!(parse("q.850 ; CAUSE = 34"), Some(c(34)));
        assert_eq!(parse("  Q.850;text=\"a;b,c\";cause=41  "), Some(c(41)));
        assert_eq!(
            parse("SIP;cause=200;text=\"Call completed elsewhere\", Q.850;cause=16;text=\"Terminated\""),
            Some(c(16))
        );
        assert_eq!(parse("SIP;cause=487, Q.850;cause=0, Q.850;cause=21"), Some(c(21)), "bad one skipped");
        assert_eq!(parse("Q.850;text=\"x\\\",cause=5\";cause=18"), Some(c(18)), "escaped quote stays text");
        assert_eq!(parse("Q.850;cause=127"), Some(c(127)));
        assert_eq!(parse("Q.850;foo;cause=19"), Some(c(19)), "a flag parameter is skipped");
        assert_eq!(parse("Q.850;cause=128"), None);
        assert_eq!(parse("Q.850;cause=0017"), None);
        assert_eq!(parse("Q.850;cause=-1"), None);
        assert_eq!(parse("Q.850;cause="), None);
        assert_eq!(parse("Q.850;cause=1 7"), None);
        assert_eq!(parse("Q.850"), None);
        assert_eq!(parse("SIP;cause=17"), None);
        assert_eq!(parse("Q.8500;cause=17"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("\"Q.850;cause=17"), None);
        assert_eq!(parse(";;;,,,=="), None);
    }

    #[test]
    fn formatted_reasons_parse_back() {
        assert_eq!(format_reason(c(17)), "Q.850;cause=17;text=\"User busy\"");
        assert_eq!(format_reason(c(31)), "Q.850;cause=31;text=\"Normal, unspecified\"");
        for v in 1..=127 {
            assert_eq!(parse(&format_reason(c(v))), Some(c(v)));
        }
    }

    proptest! {
        #[test]
        fn reason_parser_never_panics(s in "\\PC{0,64}") {
            let _ = parse(&s);
        }

        #[test]
        fn reason_parser_never_panics_near_valid(s in "[ qQ.8502;,=\"\\\\causeSIPtx]{0,40}") {
            if let Some(c) = parse(&s) {
                prop_assert!((1..=127).contains(&c.get()));
            }
        }

        #[test]
        fn cause_for_is_total(status in any::<u16>(), r in proptest::option::of(1u8..=127)) {
            let m = CauseMap::default();
            let got = m.cause_for(status, r.and_then(Cause::new));
            if let Some(r) = r {
                prop_assert_eq!(got.get(), r);
            }
        }
    }
}
