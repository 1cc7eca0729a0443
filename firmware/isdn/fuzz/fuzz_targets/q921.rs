//! Q.921 data link (both sides) fed arbitrary frames, requests and time: never panics,
//! and the send window stays within k.
#![no_main]

use std::time::{Duration, Instant};

use gw_isdn::q921::{Config, DataLink, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let role = if sel & 1 == 0 { Role::User } else { Role::Network };
    let mut link = DataLink::new(Config { k: 1 + (sel >> 1) % 7, ..Config::bri(role, 64) });
    let mut now = Instant::now();
    if sel & 0x80 != 0 {
        link.dl_establish_request(now);
    }
    // Records: a length octet, then that many octets; length 0xFF advances time,
    // 0xFE is a DL-DATA-REQUEST of the next octet's length.
    let mut i = 0;
    while i < rest.len() {
        let len = rest[i] as usize;
        i += 1;
        match len {
            0xFF => {
                now += Duration::from_millis(u64::from(rest.get(i).copied().unwrap_or(0)) * 50);
                i += 1;
                link.handle_timeout(now);
            }
            0xFE => {
                let n = rest.get(i).copied().unwrap_or(0) as usize;
                i += 1;
                let _ = link.dl_data_request(now, vec![0; n]);
            }
            _ => {
                let end = (i + len).min(rest.len());
                link.handle_frame(now, &rest[i..end]);
                i = end;
            }
        }
        while link.poll_transmit().is_some() {}
        while link.poll_event().is_some() {}
        let (vs, va, _) = link.sequence_state();
        assert!(vs.wrapping_sub(va) & 0x7F <= link.config().k);
    }
});
