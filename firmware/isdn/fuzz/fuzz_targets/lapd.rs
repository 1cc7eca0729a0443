//! LAPD frame parser: never panics, and whatever parses re-emits to the same octets. The
//! information field also goes through the TEI management parser.
#![no_main]

use gw_isdn::lapd::{Packet, Repr};
use gw_isdn::tei;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        let _ = (p.sapi(), p.cr(), p.tei(), p.control(), p.info());
    }
    if let Ok(r) = Repr::parse_bytes(data) {
        assert_eq!(r.to_vec(), data);
        if let Ok(m) = tei::Message::parse(r.info) {
            assert_eq!(tei::Message::parse(&m.to_vec()), Ok(m));
        }
    }
});
