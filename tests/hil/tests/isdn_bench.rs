//! Benchmark (issue 10): PRI-to-SIP call set-up rate. linesim's carrier
//! places en-bloc calls on gatewayd's E1 PRI (TE), a route sends them to a
//! SIP trunk where a SIPp UAS answers at once (180, 200); the carrier hangs
//! up every answered call (BYE to SIPp). Printed: calls per second, set-up
//! latency percentiles (SETUP sent to CONNECT received at linesim, polled
//! every 2 ms, so a few ms of resolution) and the rt loop's deadline misses
//! during the run. The Q.931 half (messages parsed/built per second) is
//! `cargo bench -p gw-isdn --bench q931`.
//!
//! Quick (about 2 s), so it runs with the other hil tests; for the figures:
//!   cargo test -p hil --test isdn_bench -- --nocapture
//! (in the hil network namespace, as the other hil tests). Bounded:
//! `ISDN_BENCH_CALLS` calls (default 200, at most 3000), `ISDN_BENCH_PARALLEL`
//! in flight (default 10, at most 30), and 5 minutes at most.

mod common;

use std::time::{Duration, Instant};

use common::{Gatewayd, GwOptions};
use hil::{free_udp_port, free_udp_port_range, sipp_scenario, Sipp};
use linesim::CallState;

fn env(name: &str, default: usize, max: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default).clamp(1, max)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn deadline_misses(gw: &Gatewayd) -> u64 {
    gw.status().and_then(|s| s["rt"]["deadline_misses"].as_u64()).unwrap_or(0)
}

#[test]
fn pri_to_sip_call_setup_rate() {
    let calls = env("ISDN_BENCH_CALLS", 200, 3000);
    let parallel = env("ISDN_BENCH_PARALLEL", 10, 30);
    let budget = Duration::from_secs(300);
    let uas_port = free_udp_port();
    let extra = format!(
        r#"
[[trunk]]
name = "carrier"
proxy = "127.0.0.3:{uas_port}"
register = "none"
options_interval_s = 0
accept_from = ["127.0.0.3"]

[[span]]
name = "pri"
index = 1
kind = "pri"
role = "te"
group = "pri"

[[group]]
name = "phones"
fxs = [1, 2, 3, 4]

[[group]]
name = "pri"

[[route]]
name = "pri-out"
from = ["pri"]
called = ["2xxx"]
to = [{{ trunk = "carrier" }}]
"#
    );
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, rtp_ports: 80, ..GwOptions::default() });
    let sim = gw.attach();
    let pri = sim.span(1);
    pri.wait_present(Duration::from_secs(10)).unwrap();
    pri.wait_l2(true, Duration::from_secs(10)).unwrap();
    gw.wait_until("layer 2 up at gatewayd", Duration::from_secs(10), || gw.status().is_some_and(|s| s["isdn"][0]["l2_up"] == true));
    pri.enable_calls().unwrap();
    let (rtp, _) = free_udp_port_range(4);
    let max = calls.to_string();
    let limit = parallel.to_string();
    let args = ["-m", &max, "-l", &limit, "-i", "127.0.0.3", "-p", &uas_port.to_string(), "-mp", &rtp.to_string(), "-timeout", "300s"];
    let uas = Sipp::spawn(&sipp_scenario("uas.xml"), &args, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let misses_before = deadline_misses(&gw);
    let start = Instant::now();
    let mut latencies: Vec<Duration> = Vec::with_capacity(calls);
    let mut failed = 0usize;
    let mut placed = 0usize;
    // (handle, when its SETUP went)
    let mut in_flight: Vec<(linesim::CallHandle, Instant)> = Vec::new();
    let mut releasing: Vec<linesim::CallHandle> = Vec::new();
    while (placed < calls || !in_flight.is_empty() || !releasing.is_empty()) && start.elapsed() < budget {
        // Keep `parallel` calls in set-up or clearing.
        while placed < calls && in_flight.len() + releasing.len() < parallel {
            let called = format!("2{:03}", placed % 1000);
            // All 30 B-channels still taken (a clearing not finished at
            // linesim's side): try again on the next round.
            let Ok(h) = pri.place_call(&called, Some("5551234"), None, true) else { break };
            in_flight.push((h, Instant::now()));
            placed += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
        let mut still = Vec::new();
        for (h, t0) in in_flight.drain(..) {
            match pri.call(h).map(|c| c.state) {
                Ok(CallState::Connected) => {
                    latencies.push(t0.elapsed());
                    pri.release(h, 16).unwrap();
                    releasing.push(h);
                }
                Ok(CallState::Released) => failed += 1,
                _ if t0.elapsed() > Duration::from_secs(15) => {
                    failed += 1;
                    let _ = pri.release(h, 16);
                    releasing.push(h);
                }
                _ => still.push((h, t0)),
            }
        }
        in_flight = still;
        releasing.retain(|&h| pri.call(h).map(|c| c.state != CallState::Released).unwrap_or(false));
    }
    let elapsed = start.elapsed();
    let misses = deadline_misses(&gw).saturating_sub(misses_before);
    let out = uas.wait(Duration::from_secs(30));
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "PRI->SIP set-up: {} calls answered of {placed} placed ({failed} failed) in {:.1} s, {parallel} in flight: {:.1} calls/s",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    eprintln!(
        "set-up latency (SETUP -> CONNECT): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    eprintln!("rt deadline misses during the run: {misses}");
    assert!(start.elapsed() < budget + Duration::from_secs(5), "bounded in time");
    assert_eq!(placed, calls, "every call was placed within the time budget");
    assert!(failed * 20 <= calls, "more than 5% of the calls failed: {failed} of {calls}\n{}", out.log);
    assert_eq!(latencies.len() + failed, calls);
    gw.wait_until("every B-channel idle", Duration::from_secs(20), || pri.active_calls().unwrap() == 0);
}
