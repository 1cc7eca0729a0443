//! Q.931 message parser: never panics, the checks run on anything it accepts, and what it
//! re-encodes parses again to the same message.
#![no_main]

use gw_isdn::q931::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else { return };
    let _ = m.check(true);
    let _ = m.check(false);
    let _ = m.ignored_ies().count();
    let once = Message::parse(&m.to_vec()).expect("our own encoding parses");
    let twice = Message::parse(&once.to_vec()).expect("our own encoding parses");
    assert_eq!(once, twice);
});
