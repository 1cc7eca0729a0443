//! Digest challenge parsing and response computation.
#![no_main]

use gw_sip::auth::{authorization, best_challenge, Challenge, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = best_challenge(text.split('\n'));
    if let Ok(ch) = Challenge::parse(text) {
        let cred = Credentials { username: "u".into(), password: "p".into() };
        let _ = authorization(&ch, &cred, "INVITE", "sip:a@b", 1, "c");
    }
});
