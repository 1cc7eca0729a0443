//! Local calls: the box's own phones call each other with no trunk at all
//! (the proxy's address answers nothing and registration is off). The
//! audio is bridged slot to slot inside the rt thread.

mod common;

use std::time::{Duration, Instant};

use common::{Gatewayd, GwOptions};
use hil::free_udp_port;
use linesim::{plans, Phone};

fn wait_state(gw: &Gatewayd, port: usize, state: &str) {
    gw.wait_until(&format!("port {port} in state {state}"), Duration::from_secs(10), || gw.port_state(port) == state);
}

/// The phone's ring voltage comes on within `secs` (the cadence itself is
/// measured in calls.rs and signals.rs).
fn rings(phone: &Phone, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if phone.is_ringing() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `listener` measures the tone that `talker` plays.
fn hears(talker: &Phone, listener: &Phone, hz: f32) {
    talker.play_tone(hz, -10.0);
    std::thread::sleep(Duration::from_millis(300));
    let m = listener.measure(Duration::from_millis(1000)).unwrap();
    talker.stop_playback();
    assert!((m.freq_hz - hz).abs() <= 10.0, "heard {:.1} Hz, want {hz} Hz", m.freq_hz);
    // No codec in the path: the level arrives within a dB of what was sent.
    assert!((m.level_dbm0 + 10.0).abs() <= 1.5, "heard {:.1} dBm0, sent -10 dBm0", m.level_dbm0);
}

#[test]
fn phones_call_each_other_with_no_trunk_caller_id_audio_both_ways_either_side_hangs_up() {
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, ..GwOptions::default() });
    let sim = gw.attach();
    let (p1, p2, p3, p4) = (sim.phone(0), sim.phone(1), sim.phone(2), sim.phone(3));

    // Port 1 calls 1002: port 2 gets Bell 202 caller ID with 1001, port 1 ringback.
    p1.off_hook();
    p1.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    let dialled = Instant::now();
    p1.dial("1002").unwrap();
    let called = std::thread::spawn({
        let p2 = p2.clone();
        move || p2.wait_caller_id(Duration::from_secs(10))
    });
    // linesim names the ringback after a whole cadence (2 s on, 4 s off).
    let rb = p1.wait_for_tone(&plans::US_RINGBACK, Duration::from_secs(15)).expect("ringback");
    eprintln!("ringback {rb:?}, recognised {} ms after dialling began", dialled.elapsed().as_millis());
    let cid = called.join().unwrap().expect("caller ID on port 2");
    assert_eq!(cid.fields.number.as_deref(), Some("1001"));
    assert!(rings(&p2, 6), "port 2 rings");
    p2.off_hook();
    wait_state(&gw, 1, "Connected");
    wait_state(&gw, 2, "Connected");
    hears(&p1, &p2, 1004.0);
    hears(&p2, &p1, 1400.0);
    let st = gw.status().unwrap();
    let call = st["ports"][1]["call"].as_str().unwrap_or_default().to_string();
    assert!(call.contains("1001") && call.contains("local"), "port 2's call in the status: {call}");
    // The called side hangs up: the caller hears reorder.
    p2.on_hook();
    p1.wait_for_tone(&plans::US_REORDER, Duration::from_secs(3)).expect("reorder after the far side hung up");
    p1.on_hook();
    wait_state(&gw, 1, "Idle");
    wait_state(&gw, 2, "Idle");

    // Port 3 calls 1004 and hangs up first; port 4 hears reorder.
    p3.off_hook();
    p3.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p3.dial("1004").unwrap();
    assert!(rings(&p4, 3), "port 4 rings");
    p4.off_hook();
    wait_state(&gw, 3, "Connected");
    hears(&p4, &p3, 1400.0);
    p3.on_hook();
    p4.wait_for_tone(&plans::US_REORDER, Duration::from_secs(3)).expect("reorder for the called side");
    p4.on_hook();

    // A busy port gives busy tone; a caller who gives up stops the ringing.
    p1.off_hook();
    p1.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p2.off_hook();
    p2.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p1.dial("1002").unwrap();
    p1.wait_for_tone(&plans::US_BUSY, Duration::from_secs(3)).expect("busy tone");
    p1.on_hook();
    p2.on_hook();
    wait_state(&gw, 1, "Idle");
    p1.off_hook();
    p1.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p1.dial("1003").unwrap();
    assert!(rings(&p3, 3), "port 3 rings");
    p1.on_hook();
    p3.wait_ring_stop(Duration::from_secs(8)).expect("ringing stops when the caller gives up");
    wait_state(&gw, 3, "Idle");

    // The call log has each call: legs, cause (Q.850 and SIP), who released.
    let cdr = gw.console(&["show cdr"]).remove(0);
    let lines: Vec<&str> = cdr.lines().collect();
    assert!(lines[0].starts_with("id  start") && lines.len() == 5, "{cdr}");
    assert!(lines[1].contains("FXS 1 1001") && lines[1].contains("1003") && lines[1].contains("caller"), "{cdr}");
    assert!(lines[2].contains("1002") && lines[2].contains("17 / SIP 486") && lines[2].contains("called side"), "{cdr}");
    assert!(lines[4].contains("FXS 2") && lines[4].contains("16 / SIP 200") && lines[4].contains("called side"), "{cdr}");
}

/// A committed change to another port's number is applied live: the call
/// in progress keeps its audio (measured across the commit), gatewayd does
/// not restart, the new number rings at once, and a rollback is live too.
#[test]
fn a_commit_during_a_call_keeps_its_audio_and_the_new_number_rings() {
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, ..GwOptions::default() });
    let sim = gw.attach();
    let (p1, p2, p3, p4) = (sim.phone(0), sim.phone(1), sim.phone(2), sim.phone(3));
    let pid = gw.pid();
    p1.off_hook();
    p1.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p1.dial("1002").unwrap();
    assert!(rings(&p2, 10), "port 2 rings");
    p2.off_hook();
    wait_state(&gw, 1, "Connected");
    hears(&p1, &p2, 1004.0);

    // Port 1's tone plays through the commit; port 2 measures it meanwhile.
    p1.play_tone(1004.0, -10.0);
    std::thread::sleep(Duration::from_millis(200));
    let measuring = std::thread::spawn({
        let p2 = p2.clone();
        move || p2.measure(Duration::from_millis(2000))
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = gw.console(&["config set fxs[3].number 1444", "config commit"]);
    assert!(out[1].starts_with("saved") && out[1].contains("applied without a restart (FXS 4"), "{out:?}");
    let m = measuring.join().unwrap().unwrap();
    p1.stop_playback();
    assert!((m.freq_hz - 1004.0).abs() <= 10.0 && (m.level_dbm0 + 10.0).abs() <= 1.5, "across the commit: {m:?}");
    assert_eq!(gw.pid(), pid);
    assert!(!gw.log().contains("restarting"), "no restart");
    hears(&p2, &p1, 1400.0);
    assert_eq!(gw.port_state(1), "Connected");

    // The new number rings port 4 now.
    p3.off_hook();
    p3.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p3.dial("1444").unwrap();
    assert!(rings(&p4, 5), "1444 rings port 4");
    p3.on_hook();
    p4.wait_ring_stop(Duration::from_secs(8)).expect("ringing stops");
    wait_state(&gw, 3, "Idle");

    // Rollback, live as well: 1004 rings port 4 again; the call still talks.
    let out = gw.console(&["config rollback"]);
    assert!(out[0].starts_with("restored") && out[0].contains("applied without a restart"), "{out:?}");
    p3.off_hook();
    p3.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p3.dial("1004").unwrap();
    assert!(rings(&p4, 5), "1004 rings port 4 after the rollback");
    p3.on_hook();
    hears(&p1, &p2, 1004.0);
    assert_eq!(gw.pid(), pid);
    p2.on_hook();
    p1.on_hook();
}
