//! The installer's frame decoder (`debug isdn`, the web UI): never panics on any octets,
//! whichever side is said to have sent them, and always says something.
#![no_main]

use gw_isdn::decode::{decode_frame, decode_q931};
use gw_isdn::q921::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for who in [None, Some(Role::User), Some(Role::Network)] {
        let d = decode_frame(data, who);
        assert!(!d.summary.is_empty());
        let _ = format!("{d:#}");
    }
    let (summary, _) = decode_q931(data);
    assert!(!summary.is_empty());
});
