//! gatewayd's memory: RSS idle and with four FXS-to-SIP calls up with audio
//! both ways on the sim board, and with 30 calls up on its E1 PRI, printed
//! as figures (image/README.md, "Figures"). Not a timed test: it asserts
//! only that the calls were up while measured and that the figures were read.
//!
//! Four SIPp UACs (through Kamailio, with proxy authentication) call the four
//! FXS numbers at once and stream 20 s of 1004 Hz; the linesim phones answer
//! and send a 697 Hz tone back. RSS (`VmRSS`) is read idle (registered,
//! phones attached), every second while all four calls are connected, and
//! after they ended. `GATEWAYD_BIN=target/release/gatewayd` measures a
//! release build (the figures in image/README.md).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Gatewayd, GwOptions, PASSWORD};
use hil::{free_udp_port, free_udp_port_range, sipp_scenario, tone, write_ulaw, Kamailio, Sipp};

const CALLS: usize = 4;
const CALL_MS: u32 = 20_000;

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

#[test]
fn rss_idle_and_with_four_calls_up() {
    let dir = tempfile::tempdir().unwrap();
    let kamailio = Kamailio::start(free_udp_port(), PASSWORD).expect("kamailio starts");
    let gw = Gatewayd::start(kamailio.addr(), GwOptions::default());
    gw.wait_registered(&["1001", "1002", "1003", "1004"]);
    let sim = gw.attach();
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = gw.rss_kb();

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU32::new(0));
    let phones: Vec<_> = (0..CALLS)
        .map(|i| {
            let phone = sim.phone(i);
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && !phone.is_ringing() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                phone.off_hook();
                phone.play_tone(697.0, -10.0);
                answered.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                phone.on_hook();
            })
        })
        .collect();

    let ulaw = dir.path().join("audio.ul");
    write_ulaw(&ulaw, &tone(1004.0, -10.0, CALL_MS as f32 / 1000.0).unwrap()).unwrap();
    let d = CALL_MS.to_string();
    let uacs: Vec<Sipp> = (1..=CALLS)
        .map(|port| {
            let (rtp, _) = free_udp_port_range(4);
            let caller = format!("{}", 3000 + port);
            let args = [
                "-m", "1", "-l", "1", "-i", "127.0.0.1", "-p", &free_udp_port().to_string(), "-mp", &rtp.to_string(),
                "-s", &format!("{}", 1000 + port), "-au", &caller, "-ap", PASSWORD, "-key", "caller", &caller, "-d",
                &d, &kamailio.addr().to_string(),
            ];
            Sipp::spawn(&sipp_scenario("uac_call.xml"), &args, &[("audio.ul", &ulaw)]).expect("sipp starts")
        })
        .collect();

    let all_connected = || (1..=CALLS).all(|p| gw.port_state(p) == "Connected");
    gw.wait_until("all four calls connected", Duration::from_secs(30), all_connected);
    // Let the jitter buffers and echo cancellers fill, then sample while up.
    std::thread::sleep(Duration::from_secs(3));
    let mut samples = Vec::new();
    for _ in 0..8 {
        if !all_connected() {
            break;
        }
        samples.push(gw.rss_kb());
        std::thread::sleep(Duration::from_secs(1));
    }
    let still_up = all_connected();
    let st = gw.status().expect("status");
    let outcomes: Vec<_> = uacs.into_iter().map(|u| u.wait(Duration::from_secs(60))).collect();
    stop.store(true, Ordering::Relaxed);
    phones.into_iter().for_each(|p| p.join().unwrap());
    gw.wait_until("the ports idle again", Duration::from_secs(15), || (1..=CALLS).all(|p| gw.port_state(p) == "Idle"));
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = gw.rss_kb();

    let up_max = samples.iter().copied().max().unwrap_or(0);
    let up_median = {
        let mut s = samples.clone();
        s.sort_unstable();
        s.get(s.len() / 2).copied().unwrap_or(0)
    };
    eprintln!(
        "rss: {} (sim board) idle {} ({rss_idle} kB); {CALLS} FXS-to-SIP calls up with audio: \
         median {} max {} over {} samples ({:?} kB); after the calls {} ({rss_after} kB); \
         rt frames {} deadline misses {}",
        hil::gatewayd_binary().display(),
        mb(rss_idle),
        mb(up_median),
        mb(up_max),
        samples.len(),
        samples,
        mb(rss_after),
        st["rt"]["frames"],
        st["rt"]["deadline_misses"],
    );
    assert!(rss_idle > 0, "VmRSS read");
    assert!(samples.len() >= 3, "the four calls were up for at least 3 samples: {samples:?}, still up {still_up}");
    assert_eq!(answered.load(Ordering::Relaxed), CALLS as u32);
    for (i, o) in outcomes.iter().enumerate() {
        assert!(o.success(), "SIPp for port {} failed:\n{}", i + 1, o.log);
    }
}

/// 30 calls up on the sim board's E1 PRI: a SIP peer calls 30 numbers that
/// route to the PRI (gatewayd TE), linesim's carrier answers each; the
/// calls are held 25 s. RTP flows from gatewayd only (the peer sends none:
/// `uac_hold.xml`), so the jitter buffers stay empty.
#[test]
fn rss_with_thirty_pri_calls_up() {
    let peer_port = free_udp_port();
    let extra = common::peer_to_pri_config(peer_port);
    let wait = Duration::from_secs(15);
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, rtp_ports: 80, ..GwOptions::default() });
    let sim = gw.attach();
    let pri = sim.span(1);
    pri.wait_present(wait).unwrap();
    pri.wait_l2(true, wait).unwrap();
    gw.wait_until("layer 2 up at gatewayd", wait, || gw.status().is_some_and(|s| s["isdn"][0]["l2_up"] == true));
    pri.enable_calls().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = gw.rss_kb();
    let answering = std::thread::spawn({
        let pri = pri.clone();
        move || {
            let mut n = 0;
            while let Ok(h) = pri.wait_incoming(Duration::from_secs(30)) {
                pri.alert(h).unwrap();
                pri.answer(h).unwrap();
                n += 1;
                if n == 30 {
                    break;
                }
            }
            n
        }
    });
    let (rtp, _) = free_udp_port_range(4);
    let gw_sip = gw.sip.to_string();
    let args = [
        "-m", "30", "-l", "30", "-r", "10", "-i", "127.0.0.3", "-p", &peer_port.to_string(), "-mp", &rtp.to_string(),
        "-s", "4000", "-key", "caller", "5551234", "-d", "25000", "-timeout", "90s", &gw_sip,
    ];
    let calls = Sipp::spawn(&sipp_scenario("uac_hold.xml"), &args, &[]).unwrap();
    let answered = answering.join().unwrap();
    gw.wait_until("30 calls up", wait, || pri.active_calls().unwrap() == 30);
    std::thread::sleep(Duration::from_secs(3));
    let mut samples = Vec::new();
    for _ in 0..8 {
        if pri.active_calls().unwrap() != 30 {
            break;
        }
        samples.push(gw.rss_kb());
        std::thread::sleep(Duration::from_secs(1));
    }
    let st = gw.status().expect("status");
    let out = calls.wait(Duration::from_secs(60));
    gw.wait_until("all B-channels idle", wait, || pri.active_calls().unwrap() == 0);
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = gw.rss_kb();
    let up_max = samples.iter().copied().max().unwrap_or(0);
    eprintln!(
        "rss: {} (sim board) idle {} ({rss_idle} kB, PRI layer 2 up); 30 PRI calls up: max {} over {} samples \
         ({samples:?} kB); after the calls {} ({rss_after} kB); rt frames {} deadline misses {}",
        hil::gatewayd_binary().display(),
        mb(rss_idle),
        mb(up_max),
        samples.len(),
        mb(rss_after),
        st["rt"]["frames"],
        st["rt"]["deadline_misses"],
    );
    assert_eq!(answered, 30, "the carrier answered 30 calls");
    assert!(samples.len() >= 3, "the 30 calls were up for at least 3 samples: {samples:?}");
    assert!(out.success(), "{}", out.log);
}
