//! TEI management, user and network side, fed arbitrary frames and time:
//! never panics, never assigns a TEI outside 64..=126.
#![no_main]

use std::time::{Duration, Instant};

use gw_isdn::tei_mgmt::{TeiNetwork, TeiUser, AUTO_TEI_FIRST, AUTO_TEI_LAST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut te = TeiUser::new(0x1234);
    let mut nt = TeiNetwork::new();
    te.request(now);
    // Records: length octet then a frame; 0xFF advances time.
    let mut i = 0;
    while i < data.len() {
        let len = data[i] as usize;
        i += 1;
        if len == 0xFF {
            now += Duration::from_millis(u64::from(data.get(i).copied().unwrap_or(0)) * 50);
            i += 1;
            te.handle_timeout(now);
            nt.handle_timeout(now);
        } else {
            let end = (i + len).min(data.len());
            te.handle_frame(now, &data[i..end]);
            nt.handle_frame(now, &data[i..end]);
            i = end;
        }
        // Frames each side sends go to the other.
        while let Some(f) = te.poll_transmit() {
            nt.handle_frame(now, &f);
        }
        while let Some(f) = nt.poll_transmit() {
            te.handle_frame(now, &f);
        }
        while te.poll_event().is_some() {}
        while nt.poll_event().is_some() {}
        assert!(nt.assigned().iter().all(|t| (AUTO_TEI_FIRST..=AUTO_TEI_LAST).contains(t)));
        if let Some(t) = te.tei() {
            assert!((AUTO_TEI_FIRST..=AUTO_TEI_LAST).contains(&t));
        }
    }
});
