//! RFC 4475 torture messages against the message layer (`gw_sip::message`).
//!
//! Every message of the RFC is listed with the outcome we expect from [`parse`]: accepted
//! (possibly as an unknown method, answered 501 above us), or refused with the status code
//! the UAS answers with. Messages that are syntactically valid but call for an
//! application-level answer (RFC 4475 §3.3: 420, 415, 483, 406...) are accepted here; the
//! layers above give those answers.
//!
//! Documented departures from "valid means accepted":
//! - `novelsc` (§3.3.3, `soap.beep:` Request-URI): we are a UA that serves only sip and sips
//!   URIs, so it is answered 416, as §3.3.3 allows for an element that does not
//!   support the scheme.
//! - `unkscm` (§3.3.2) is answered 416 by the parser itself.

use rsip::message::HasHeaders;
use gw_sip::message::{error_response, parse, to_bytes, ParseError, Parsed};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// rsip message.
    Ok,
    /// Parsed::UnknownMethod (the caller answers 501).
    Unknown,
    /// Refused; the status code a request gets.
    Err(u16),
}
use Expect::*;

const CASES: &[(&str, Expect, &[u8])] = &[
    // §3.1.1 valid messages.
    ("wsinv", Ok, include_bytes!("../testdata/rfc4475/wsinv.dat")),
    ("intmeth", Unknown, include_bytes!("../testdata/rfc4475/intmeth.dat")),
    ("esc01", Ok, include_bytes!("../testdata/rfc4475/esc01.dat")),
    ("escnull", Ok, include_bytes!("../testdata/rfc4475/escnull.dat")),
    ("esc02", Unknown, include_bytes!("../testdata/rfc4475/esc02.dat")),
    ("lwsdisp", Ok, include_bytes!("../testdata/rfc4475/lwsdisp.dat")),
    ("longreq", Ok, include_bytes!("../testdata/rfc4475/longreq.dat")),
    ("dblreq", Ok, include_bytes!("../testdata/rfc4475/dblreq.dat")),
    ("semiuri", Ok, include_bytes!("../testdata/rfc4475/semiuri.dat")),
    ("transports", Ok, include_bytes!("../testdata/rfc4475/transports.dat")),
    ("mpart01", Ok, include_bytes!("../testdata/rfc4475/mpart01.dat")),
    ("unreason", Ok, include_bytes!("../testdata/rfc4475/unreason.dat")),
    ("noreason", Ok, include_bytes!("../testdata/rfc4475/noreason.dat")),
    // §3.1.2 invalid messages.
    ("badinv01", Err(400), include_bytes!("../testdata/rfc4475/badinv01.dat")),
    ("clerr", Err(400), include_bytes!("../testdata/rfc4475/clerr.dat")),
    ("ncl", Err(400), include_bytes!("../testdata/rfc4475/ncl.dat")),
    ("scalar02", Err(400), include_bytes!("../testdata/rfc4475/scalar02.dat")),
    ("scalarlg", Err(400), include_bytes!("../testdata/rfc4475/scalarlg.dat")),
    ("quotbal", Err(400), include_bytes!("../testdata/rfc4475/quotbal.dat")),
    ("ltgtruri", Err(400), include_bytes!("../testdata/rfc4475/ltgtruri.dat")),
    ("lwsruri", Err(400), include_bytes!("../testdata/rfc4475/lwsruri.dat")),
    ("lwsstart", Err(400), include_bytes!("../testdata/rfc4475/lwsstart.dat")),
    ("trws", Err(400), include_bytes!("../testdata/rfc4475/trws.dat")),
    ("escruri", Err(400), include_bytes!("../testdata/rfc4475/escruri.dat")),
    ("baddate", Err(400), include_bytes!("../testdata/rfc4475/baddate.dat")),
    ("regbadct", Err(400), include_bytes!("../testdata/rfc4475/regbadct.dat")),
    ("badaspec", Err(400), include_bytes!("../testdata/rfc4475/badaspec.dat")),
    ("baddn", Err(400), include_bytes!("../testdata/rfc4475/baddn.dat")),
    ("badvers", Err(505), include_bytes!("../testdata/rfc4475/badvers.dat")),
    ("mismatch01", Err(400), include_bytes!("../testdata/rfc4475/mismatch01.dat")),
    ("mismatch02", Err(400), include_bytes!("../testdata/rfc4475/mismatch02.dat")),
    ("bigcode", Err(400), include_bytes!("../testdata/rfc4475/bigcode.dat")),
    // §3.2 transaction layer: a bare magic cookie branch is still a message.
    ("badbranch", Ok, include_bytes!("../testdata/rfc4475/badbranch.dat")),
    // §3.3 application layer.
    ("insuf", Err(400), include_bytes!("../testdata/rfc4475/insuf.dat")),
    ("unkscm", Err(416), include_bytes!("../testdata/rfc4475/unkscm.dat")),
    ("novelsc", Err(416), include_bytes!("../testdata/rfc4475/novelsc.dat")),
    ("unksm2", Ok, include_bytes!("../testdata/rfc4475/unksm2.dat")),
    ("bext01", Ok, include_bytes!("../testdata/rfc4475/bext01.dat")),
    ("invut", Ok, include_bytes!("../testdata/rfc4475/invut.dat")),
    ("regaut01", Ok, include_bytes!("../testdata/rfc4475/regaut01.dat")),
    ("multi01", Err(400), include_bytes!("../testdata/rfc4475/multi01.dat")),
    ("mcl01", Err(400), include_bytes!("../testdata/rfc4475/mcl01.dat")),
    ("bcast", Ok, include_bytes!("../testdata/rfc4475/bcast.dat")),
    ("zeromf", Ok, include_bytes!("../testdata/rfc4475/zeromf.dat")),
    ("cparam01", Ok, include_bytes!("../testdata/rfc4475/cparam01.dat")),
    ("cparam02", Ok, include_bytes!("../testdata/rfc4475/cparam02.dat")),
    ("regescrt", Ok, include_bytes!("../testdata/rfc4475/regescrt.dat")),
    ("sdp01", Ok, include_bytes!("../testdata/rfc4475/sdp01.dat")),
    // §3.4 backward compatibility (no Max-Forwards, RFC 2543 Via).
    ("inv2543", Ok, include_bytes!("../testdata/rfc4475/inv2543.dat")),
    // Not from the RFC: a request line without a version.
    ("test", Err(400), include_bytes!("../testdata/rfc4475/test.dat")),
];

fn outcome(r: &Result<Parsed, ParseError>) -> Expect {
    match r {
        Result::Ok(Parsed::Message(_)) => Ok,
        Result::Ok(Parsed::UnknownMethod { .. }) => Unknown,
        Result::Err(e) => Err(e.status_code()),
    }
}

#[test]
fn every_torture_message_has_its_expected_outcome() {
    let mut wrong = Vec::new();
    for (name, expect, bytes) in CASES {
        let r = parse(bytes);
        if outcome(&r) != *expect {
            wrong.push(format!("{name}: expected {expect:?}, got {r:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_dat_file_is_listed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/rfc4475");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".dat").map(str::to_string))
        .collect();
    files.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(n, ..)| n.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed);
}

#[test]
fn accepted_messages_survive_a_serialization_round_trip() {
    for (name, expect, bytes) in CASES {
        if let Result::Ok(Parsed::Message(msg)) = parse(bytes) {
            assert_eq!(*expect, Ok, "{name}");
            let Result::Ok(Parsed::Message(mut again)) = parse(&to_bytes(&msg)) else {
                panic!("{name}: serialized form does not parse")
            };
            // to_bytes adds a Content-Length where the datagram had none.
            let mut msg = msg;
            for m in [&mut msg, &mut again] {
                m.headers_mut().retain(|h| !matches!(h, rsip::Header::ContentLength(_)));
            }
            assert_eq!(again, msg, "{name}");
        }
    }
}

#[test]
fn refused_requests_with_identity_headers_get_an_answer() {
    // Requests that carry Via, From, To, Call-ID and CSeq can be answered; the answer is a
    // parseable response with the status we chose.
    for name in ["clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsstart", "trws", "escruri",
        "baddate", "regbadct", "badaspec", "baddn", "badvers", "mismatch01", "mismatch02",
        "unkscm", "multi01", "mcl01", "badinv01"]
    {
        let (_, _, bytes) = CASES.iter().find(|(n, ..)| *n == name).unwrap();
        let e = parse(bytes).unwrap_err();
        let resp = error_response(bytes, e.status_code(), &e.reason_phrase())
            .unwrap_or_else(|| panic!("{name}: no answer for {e:?}"));
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with(&format!("SIP/2.0 {} ", e.status_code())), "{name}: {text}");
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{name}: {text}");
        let vias_in = String::from_utf8_lossy(bytes).matches("\nVia").count();
        assert_eq!(text.matches("\r\nVia: ").count(), vias_in, "{name}: {text}");
        // Unless what was wrong is echoed back (a bad CSeq, To...), the answer parses.
        if let Result::Ok(Parsed::Message(rsip::SipMessage::Response(r))) = parse(&resp) {
            assert_eq!(r.status_code.code(), e.status_code(), "{name}");
        }
    }
    // insuf lacks Call-ID, From and To: nothing to answer with. bigcode is a response.
    for name in ["insuf", "bigcode"] {
        let (_, _, bytes) = CASES.iter().find(|(n, ..)| *n == name).unwrap();
        assert_eq!(error_response(bytes, 400, "Bad Request"), None, "{name}");
    }
}

#[test]
fn whitespace_torture_is_normalized_for_typed_access() {
    use rsip::message::HeadersExt;
    use rsip::prelude::ToTypedHeader;
    let (_, _, bytes) = CASES.iter().find(|(n, ..)| *n == "wsinv").unwrap();
    let Result::Ok(Parsed::Message(rsip::SipMessage::Request(r))) = parse(bytes) else { panic!() };
    let via = r.via_header().unwrap().typed().unwrap();
    assert_eq!(via.transport, rsip::Transport::Udp);
    assert_eq!(via.branch().map(|b| b.to_string()).as_deref(), Some("390skdjuw"));
    // The comma-combined Via values became separate headers.
    assert_eq!(r.headers.iter().filter(|h| matches!(h, rsip::Header::Via(_))).count(), 3);
    let cseq = r.cseq_header().unwrap().typed().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, rsip::Method::Invite));
    let to = r.to_header().unwrap().typed().unwrap();
    assert_eq!(to.tag().map(|t| t.to_string()).as_deref(), Some("1918181833n"));
    let from = r.from_header().unwrap().typed().unwrap();
    assert_eq!(from.tag().map(|t| t.to_string()).as_deref(), Some("98asjd8"));
    assert_eq!(r.body.len(), 150);
}

/// §3.1.1 and §3.4: the valid requests get no 400 from the user agent either
/// (`inv2543` and `longreq` have no Via branch, `inv2543` no From tag and no
/// Contact: RFC 2543 compatibility); and admission's cheap pre-check lets
/// every one of them through to the parser.
#[test]
fn valid_requests_are_not_answered_400_by_the_ua() {
    use gw_sip::{Account, TimerConfig, UaConfig, UserAgent};
    use std::time::{Duration, Instant};
    let config = UaConfig {
        local_addr: "192.0.2.1:5060".parse().unwrap(),
        proxy: "192.0.2.100:5060".parse().unwrap(),
        domain: "example.com".into(),
        user_agent: "t".into(),
        accounts: vec![Account { user: "user".into(), auth_user: "user".into(), password: "x".into() }],
        register_expires: 0,
        register_retry_base: Duration::from_secs(1),
        register_retry_max: Duration::from_secs(4),
        timers: TimerConfig::default(),
        rng_seed: 1,
    };
    let mut wrong = Vec::new();
    for (name, expect, bytes) in CASES {
        assert!(
            *expect != Ok || gw_sip::admission::plausible_sip(bytes),
            "{name}: refused by the admission pre-check"
        );
        let is_request = !bytes.starts_with(b"SIP/2.0");
        if *expect != Ok || !is_request {
            continue;
        }
        let mut ua = UserAgent::new(config.clone());
        ua.handle_datagram(Instant::now(), "192.0.2.100:5060".parse().unwrap(), bytes);
        while let Some(t) = ua.poll_transmit() {
            if t.payload.starts_with(b"SIP/2.0 400") {
                wrong.push(format!("{name}: {}", String::from_utf8_lossy(&t.payload).lines().next().unwrap_or("")));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
