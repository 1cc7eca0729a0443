//! Property tests: no input makes the parsers panic (RFC 3261 §18.3 robustness; DESIGN rule 4).

use gw_sip::{auth, message, sdp};
use proptest::prelude::*;

const SEED: &[u8] = include_bytes!("../testdata/rfc4475/wsinv.dat");

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = message::parse(&bytes);
        let _ = message::error_response(&bytes, 400, "Bad Request");
        // The admission's cheap looks at a datagram, before and after the parser.
        let _ = gw_sip::admission::plausible_sip(&bytes);
        if let Some(code) = gw_sip::admission::response_status(&bytes) {
            prop_assert!(code <= 999);
        }
    }

    #[test]
    fn mutated_torture_message_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = SEED.to_vec();
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(message::Parsed::Message(m)) = message::parse(&bytes) {
            // Whatever we accept, we can write out and read back.
            prop_assert!(message::parse(&message::to_bytes(&m)).is_ok());
        }
        let _ = message::error_response(&bytes, 400, "Bad Request");
    }

    #[test]
    fn sip_like_text_never_panics(s in "[A-Za-z0-9 :;=,<>\"\\\\/@.\r\n\t-]{0,400}") {
        let text = format!("INVITE sip:a@b SIP/2.0\r\n{s}");
        let _ = message::parse(text.as_bytes());
        let _ = message::error_response(text.as_bytes(), 400, "x");
    }

    #[test]
    fn sdp_and_challenges_never_panic(s in "[a-z0-9 =:/.,\"\r\n-]{0,400}") {
        check_sdp(&s)?;
        let _ = auth::Challenge::parse(&s);
        let _ = auth::best_challenge([s.as_str()]);
    }
}

/// Whatever SDP we accept prints back to the same description, and our answer to it is
/// acceptable to the offerer.
fn check_sdp(s: &str) -> Result<(), TestCaseError> {
    if let Ok(offer) = sdp::SessionDescription::parse(s) {
        prop_assert_eq!(sdp::SessionDescription::parse(&offer.to_string()), Ok(offer.clone()));
        let local = "192.0.2.1".parse().unwrap();
        if let Ok((ans, _)) = sdp::answer(&offer, local, 4000, &[sdp::Codec::Pcmu, sdp::Codec::Pcma], 1) {
            prop_assert!(sdp::accept_answer(&offer, &ans).is_ok());
        }
    }
    Ok(())
}

/// SDP-shaped input: plausible lines in arbitrary order with arbitrary values.
fn sdp_lines() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        1 => Just("s=-".to_string()),
        1 => Just("b=AS:64".to_string()),
        1 => "(IP4 192\\.0\\.2\\.[0-9]|IP6 ::1|IP4 0\\.0\\.0\\.0|IP4 h)".prop_map(|v| format!("c=IN {v}")),
        4 => ("(audio|audio|audio|video|image)", 0u16..4, "(RTP/AVP|RTP/AVP|RTP/AVP|udptl|RTP/SAVP)",
            "( 0| 8| 18| 96| 101){1,4}")
            .prop_map(|(m, p, pr, f)| format!("m={m} {p} {pr}{f}")),
        1 => ("(0|8|96|101|[0-9]{1,3})", "(PCMU|PCMA|telephone-event|opus)", "(8000|16000|48000)")
            .prop_map(|(pt, e, r)| format!("a=rtpmap:{pt} {e}/{r}")),
        1 => "[0-9]{1,3} [0-9-]{0,5}".prop_map(|v| format!("a=fmtp:{v}")),
        1 => "[1-9][0-9]{0,2}".prop_map(|v| format!("a=ptime:{v}")),
        1 => "(sendrecv|sendonly|recvonly|inactive|x)".prop_map(|v| format!("a={v}")),
    ];
    // Behind a valid session header, so that media and attribute lines get exercised
    // (the arbitrary-text properties above cover broken headers).
    proptest::collection::vec(line, 0..14).prop_map(|l| {
        format!("v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nt=0 0\r\n{}", l.join("\r\n"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn sdp_shaped_input_round_trips(s in sdp_lines()) {
        check_sdp(&s)?;
    }
}
