//! Soak: calls on every port, one after another, for a bounded count, with
//! the daemon's memory, rt deadline misses and queue overruns measured.
//! Ignored by default; `tools/test --soak` runs it (HIL_SOAK=1).
//! `HIL_SOAK_CALLS` sets the calls per port (default 30, about 3 minutes).
//!
//! Four SIPp UACs (through Kamailio, with proxy authentication) each call one
//! FXS number every 6 s and stream 2 s of 1004 Hz; a linesim phone per port
//! answers when it rings and hangs up on the reorder tone that follows the
//! caller's BYE.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Gatewayd, GwOptions, PASSWORD};
use hil::{free_udp_port, free_udp_port_range, sipp_scenario, tone, write_ulaw, Kamailio, Sipp};
use linesim::plans;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "soak: run with tools/test --soak"]
fn soak_calls_on_every_port() {
    let calls: u32 = std::env::var("HIL_SOAK_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(30).clamp(1, 2000);
    let dir = tempfile::tempdir().unwrap();
    let kamailio = Kamailio::start(free_udp_port(), PASSWORD).expect("kamailio starts");
    let gw = Gatewayd::start(kamailio.addr(), GwOptions::default());
    gw.wait_registered(&["1001", "1002", "1003", "1004"]);
    let sim = gw.attach();

    // The phones: answer on ringing, hang up on reorder.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU32::new(0));
    let no_reorder = Arc::new(AtomicU32::new(0));
    let phones: Vec<_> = (0..4)
        .map(|i| {
            let phone = sim.phone(i);
            let (stop, answered, no_reorder) = (stop.clone(), answered.clone(), no_reorder.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if phone.is_ringing() {
                        phone.off_hook();
                        answered.fetch_add(1, Ordering::Relaxed);
                        if phone.wait_for_tone(&plans::US_REORDER, Duration::from_secs(15)).is_err() {
                            no_reorder.fetch_add(1, Ordering::Relaxed);
                        }
                        phone.on_hook();
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();

    let ulaw = dir.path().join("audio.ul");
    write_ulaw(&ulaw, &tone(1004.0, -10.0, 2.0).unwrap()).unwrap();
    let started = Instant::now();
    let rss_start = rss_kb(gw.pid());
    let calls_s = calls.to_string();
    let uacs: Vec<Sipp> = (1..=4)
        .map(|port| {
            let (rtp, _) = free_udp_port_range(4);
            let caller = format!("{}", 3000 + port);
            let args = [
                "-m", &calls_s, "-l", "1", "-r", "1", "-rp", "6000", "-i", "127.0.0.1", "-p",
                &free_udp_port().to_string(), "-mp", &rtp.to_string(), "-s", &format!("{}", 1000 + port), "-au",
                &caller, "-ap", PASSWORD, "-key", "caller", &caller, "-d", "2000", &kamailio.addr().to_string(),
            ];
            Sipp::spawn(&sipp_scenario("uac_call.xml"), &args, &[("audio.ul", &ulaw)]).expect("sipp starts")
        })
        .collect();
    // Memory after the first round of calls has warmed everything up.
    gw.wait_until("the first round of calls", Duration::from_secs(30), || answered.load(Ordering::Relaxed) >= 4);
    let rss_warm = rss_kb(gw.pid());
    let bound = Duration::from_secs(u64::from(calls) * 6 + 60);
    let outcomes: Vec<_> = uacs.into_iter().map(|u| u.wait(bound)).collect();
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    phones.into_iter().for_each(|p| p.join().unwrap());
    let rss_end = rss_kb(gw.pid());

    let st = gw.status().expect("status");
    let rt = &st["rt"];
    let total = 4 * calls;
    eprintln!(
        "soak: {total} calls in {:.0} s ({:.1} calls/min); answered by phones {}, no reorder {}; \
         gatewayd incoming {} answered {}; rt frames {} deadline misses {} max tick {} us, overruns events {} packets {}; \
         RSS {} kB at start, {} kB warm, {} kB at the end",
        elapsed.as_secs_f32(),
        f64::from(total) * 60.0 / elapsed.as_secs_f64(),
        answered.load(Ordering::Relaxed),
        no_reorder.load(Ordering::Relaxed),
        st["calls"]["incoming"],
        st["calls"]["answered"],
        rt["frames"],
        rt["deadline_misses"],
        rt["max_tick_us"],
        rt["event_overruns"],
        rt["packet_out_overruns"],
        rss_start,
        rss_warm,
        rss_end,
    );
    for (i, o) in outcomes.iter().enumerate() {
        assert!(o.success(), "SIPp for port {} failed:\n{}", i + 1, o.log);
    }
    assert_eq!(st["calls"]["answered"].as_u64(), Some(u64::from(total)));
    assert_eq!(answered.load(Ordering::Relaxed), total);
    assert_eq!(no_reorder.load(Ordering::Relaxed), 0);
    assert_eq!(rt["event_overruns"].as_u64(), Some(0));
    assert_eq!(rt["packet_out_overruns"].as_u64(), Some(0));
    let frames = rt["frames"].as_u64().unwrap_or(0).max(1);
    let misses = rt["deadline_misses"].as_u64().unwrap_or(0);
    assert!(misses * 1000 <= frames, "{misses} deadline misses in {frames} frames (over 0.1 %)");
    // No growth with the number of calls once warm (allocator slack aside).
    assert!(rss_end <= rss_warm + 4096, "RSS grew from {rss_warm} kB to {rss_end} kB over {total} calls");
}
