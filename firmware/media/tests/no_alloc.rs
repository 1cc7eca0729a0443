//! The rt thread must never allocate (DESIGN.md, rule 2): drive a session
//! through every per-packet path under a counting allocator.
//!
//! This lives in an integration test because a global allocator needs
//! `unsafe impl`, which the library forbids.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gw_media::rfc4733::EventPayload;
use gw_media::rtp::RtpHeader;
use gw_media::{Received, RtpSession, SessionConfig};

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ON.with(|c| c.get()) {
            COUNT.with(|n| n.set(n.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn packet(buf: &mut [u8; 512], pt: u8, seq: u16, ts: u32, payload: &[u8]) -> usize {
    let n = RtpHeader { marker: false, payload_type: pt, sequence: seq, timestamp: ts, ssrc: 42 }.emit(buf);
    buf[n..n + payload.len()].copy_from_slice(payload);
    n + payload.len()
}

#[test]
fn per_packet_paths_do_not_allocate() {
    let cfg = SessionConfig {
        payload_type: 8,
        telephone_event: Some(101),
        comfort_noise: Some(13),
        ptime_ms: 20,
        ssrc: 1,
        initial_seq: 100,
        initial_ts: 0,
        jitter_depth_ms: 60,
    };
    let mut s = RtpSession::new(cfg);
    // Prepare inputs before counting.
    let mut pkts = [[0u8; 512]; 8];
    let mut lens = [0usize; 8];
    for i in 0..6 {
        lens[i] = packet(&mut pkts[i], 8, i as u16, i as u32 * 160, &[0xd5; 160]);
    }
    let ev = EventPayload { event: 5, end: false, volume: 10, duration: 160 }.to_bytes();
    lens[6] = packet(&mut pkts[6], 101, 6, 960, &ev);
    let end = EventPayload { event: 5, end: true, volume: 10, duration: 320 }.to_bytes();
    lens[7] = packet(&mut pkts[7], 101, 7, 960, &end);
    let mut out = [0u8; 600];
    let mut frame = [0u8; 80];

    // The counter itself works.
    ON.with(|c| c.set(true));
    drop(std::hint::black_box(Box::new(1u64)));
    ON.with(|c| c.set(false));
    assert_eq!(COUNT.with(|n| n.replace(0)), 1);

    ON.with(|c| c.set(true));
    let mut received = 0;
    for tick in 0..40usize {
        if tick < 8 {
            if s.receive(&pkts[tick][..lens[tick]]).is_ok() {
                received += 1;
            }
            // duplicates and garbage too
            let _ = s.receive(&pkts[tick][..lens[tick]]);
            let _ = s.receive(&pkts[tick][..5]);
        }
        s.pull_frame(&mut frame);
        if tick == 10 {
            s.start_dtmf(b'#');
        }
        if tick == 16 {
            s.stop_dtmf();
        }
        let _ = s.send_frame(&[0xd5; 80], &mut out);
        let _ = s.stats();
    }
    ON.with(|c| c.set(false));
    assert_eq!(COUNT.with(|n| n.get()), 0, "a per-packet path allocated");
    assert_eq!(received, 8);
    let st = s.stats();
    assert_eq!(st.duplicates, 8);
    assert!(st.events_sent >= 5, "{st:?}");
    // sanity: the same session reports DTMF from the prepared packets
    let mut s2 = RtpSession::new(cfg);
    assert_eq!(s2.receive(&pkts[6][..lens[6]]), Ok(Received::DtmfStart(b'5')));

    // Comfort noise (RFC 3389): SIDs out and in, silent frames, the CN state.
    let mut cn = [0u8; 512];
    let cn_len = packet(&mut cn, 13, 100, 20_000, &[45, 120, 130]);
    ON.with(|c| c.set(true));
    let mut active = 0;
    for tick in 0..20usize {
        if tick == 2 {
            let _ = s.receive(&cn[..cn_len]);
        }
        s.pull_frame(&mut frame);
        active += usize::from(s.cn_active() && !s.comfort_noise_payload().is_empty());
        if tick % 10 == 0 {
            let _ = s.send_cn(&[50, 127], &mut out);
        } else {
            let _ = s.skip_frame(&mut out);
        }
    }
    ON.with(|c| c.set(false));
    assert_eq!(COUNT.with(|n| n.get()), 0, "a comfort noise path allocated");
    let st = s.stats();
    assert_eq!((st.cn_sent, st.cn_received, st.suppressed), (2, 1, 20), "{st:?}");
    assert_eq!(active, 18);
}
