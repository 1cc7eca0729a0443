//! A whole span (data links, TEI management, call control) fed arbitrary
//! D-channel frames and time, in each mode and role: never panics.
#![no_main]

use std::time::{Duration, Instant};

use gw_isdn::call::{Config, Interface, Side, EUROISDN};
use gw_isdn::span::{Mode, Span};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let side = if sel & 1 == 0 { Side::User } else { Side::Network };
    let interface = if sel & 2 == 0 { Interface::Bri } else { Interface::Pri };
    let mode = if sel & 4 != 0 && interface == Interface::Bri { Mode::PointToMultipoint } else { Mode::PointToPoint };
    let mut span = Span::new(Config::new(side, interface, &EUROISDN), mode, u64::from(sel));
    let mut now = Instant::now();
    span.start(now);
    let mut i = 0;
    while i < rest.len() {
        let len = rest[i] as usize;
        i += 1;
        if len == 0xFF {
            now += Duration::from_millis(u64::from(rest.get(i).copied().unwrap_or(0)) * 100);
            i += 1;
            span.handle_timeout(now);
        } else {
            let end = (i + len).min(rest.len());
            span.handle_frame(now, &rest[i..end]);
            i = end;
        }
        while span.poll_transmit().is_some() {}
        while span.poll_event().is_some() {}
        span.cc.check_invariants().unwrap();
    }
});
