//! SDP parse, answer and print: what we print must parse back to the same description.
#![no_main]

use gw_sip::sdp::{accept_answer, answer, Codec, SessionDescription};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = SessionDescription::parse(text) else { return };
    assert_eq!(SessionDescription::parse(&offer.to_string()).ok(), Some(offer.clone()));
    let local = "192.0.2.1".parse().unwrap();
    if let Ok((ans, _)) = answer(&offer, local, 4000, &[Codec::Pcmu, Codec::Pcma], 1) {
        assert!(accept_answer(&offer, &ans).is_ok(), "our own answer is not acceptable");
    }
});
