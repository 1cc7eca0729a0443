//! Arbitrary RTCP compounds: parsing and the session's report handling must
//! never panic.
#![no_main]

use gw_media::rtcp::Compound;
use gw_media::{RtpSession, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for p in Compound::new(data).take(64).flatten() {
        let _ = (p.sender_info(), p.report_block(0), p.ssrc());
    }
    let mut s = RtpSession::new(SessionConfig {
        payload_type: 8,
        telephone_event: None,
        comfort_noise: None,
        ptime_ms: 20,
        ssrc: 1,
        initial_seq: 0,
        initial_ts: 0,
        jitter_depth_ms: 60,
    });
    let _ = s.receive_rtcp(data, 0xe000_0000_0000_0000);
    let mut out = [0u8; 512];
    let _ = s.rtcp_report(0xe000_0001_0000_0000, b"fuzz", &mut out);
});
