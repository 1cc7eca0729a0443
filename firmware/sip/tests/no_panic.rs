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
        if let Ok(offer) = sdp::SessionDescription::parse(&s) {
            let _ = sdp::answer(&offer, "192.0.2.1".parse().unwrap(), 4000, &[sdp::Codec::Pcmu], 1);
            prop_assert_eq!(sdp::SessionDescription::parse(&offer.to_string()).is_ok(), true);
        }
        let _ = auth::Challenge::parse(&s);
        let _ = auth::best_challenge([s.as_str()]);
    }
}
