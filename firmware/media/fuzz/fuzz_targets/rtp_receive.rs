//! Arbitrary datagrams into one session: receive must never panic, and the
//! per-tick pull must keep working. The input is split into packets by a
//! leading length byte each.
#![no_main]

use gw_media::{RtpSession, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut s = RtpSession::new(SessionConfig {
        payload_type: 0,
        telephone_event: Some(101),
        comfort_noise: Some(13),
        ptime_ms: 20,
        ssrc: 1,
        initial_seq: 0,
        initial_ts: 0,
        jitter_depth_ms: 60,
    });
    let mut rest = data;
    let mut frame = [0u8; 80];
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let _ = s.receive(&tail[..n]);
        s.pull_frame(&mut frame);
        rest = &tail[n..];
    }
    let _ = s.stats();
});
