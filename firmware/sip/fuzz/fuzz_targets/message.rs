//! One datagram through the message layer: parse, answer errors, and re-serialize what
//! parses (the serialized form must parse again).
#![no_main]

use gw_sip::message::{error_response, parse, to_bytes, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Message(m)) => {
            assert!(parse(&to_bytes(&m)).is_ok(), "serialized message does not parse");
        }
        Ok(Parsed::UnknownMethod { .. }) => {}
        Err(e) => {
            let _ = error_response(data, e.status_code(), &e.reason_phrase());
        }
    }
});
