//! The walking skeleton end to end, host target: gatewayd on the sim board,
//! phones played by linesim, Kamailio as the carrier (digest auth), baresip as
//! the far-end phone. Everything on 127.0.0.1 (inside `unshare -n` when run by
//! `tools/test`).
//!
//! Each test starts its own peers on free ports, so they can run in any
//! order; `tools/test` runs them one at a time so that audio timing is not
//! starved on a 2-core machine.

mod common;

use std::time::{Duration, Instant};

use common::{Gatewayd, GwOptions, World, PASSWORD};
use hil::{dominant_frequency, free_udp_port, FarEnd, Kamailio};
use linesim::{plans, Phone};

/// The far end sends this tone in every call; the phone measures it.
const FAR_TONE_HZ: f32 = 1400.0;
/// The phone sends this tone; the far end measures it.
const PHONE_TONE_HZ: f32 = 1004.0;

fn world() -> World {
    let far_tone = hil::tone(FAR_TONE_HZ, -12.0, 2.0).unwrap();
    World::start(GwOptions::default(), None, &far_tone)
}

fn assert_near(what: &str, got: f32, want: f32, tol: f32) {
    assert!((got - want).abs() <= tol, "{what}: got {got:.1} Hz, want {want} ± {tol} Hz");
}

/// The phone measures the far end's tone.
fn phone_hears_far_end(phone: &Phone) {
    let m = phone.measure(Duration::from_millis(1000)).unwrap();
    assert_near("far end's tone at the phone", m.freq_hz, FAR_TONE_HZ, 10.0);
    assert!(m.level_dbm0 > -30.0, "far end's tone too weak at the phone: {:.1} dBm0", m.level_dbm0);
}

/// The far end's recording holds a full second of the phone's tone.
///
/// baresip's recorder writes in blocks, so the file lags the call by up to a
/// few hundred milliseconds: search the recording rather than take its tail.
fn far_end_heard_phone(far: &FarEnd) {
    let rec = far.recording().expect("far end recording");
    assert!(rec.len() > 8000, "recording too short: {} samples", rec.len());
    let freqs: Vec<f32> = (0..rec.len() - 8000).step_by(800).map(|s| dominant_frequency(&rec[s..s + 8000])).collect();
    eprintln!("far-end recording: {} samples, dominant per 1 s window: {freqs:.0?}", rec.len());
    assert!(
        freqs.iter().any(|f| (f - PHONE_TONE_HZ).abs() <= 10.0),
        "no second of {PHONE_TONE_HZ} Hz ± 10 Hz at the far end: {freqs:.0?}"
    );
}

fn wait_state(gw: &Gatewayd, port: usize, state: &str) {
    gw.wait_until(&format!("port {port} in state {state}"), Duration::from_secs(10), || gw.port_state(port) == state);
}

#[test]
fn registers_with_digest_authentication() {
    let kamailio = Kamailio::start(free_udp_port(), PASSWORD).expect("kamailio starts");
    let gw = Gatewayd::start(kamailio.addr(), GwOptions::default());
    gw.wait_registered(&["1001", "1002", "1003", "1004"]);
    // Kamailio challenged and then accepted each account.
    let klog = kamailio.log();
    assert!(klog.contains("REGISTER"), "kamailio saw no REGISTER:\n{klog}");
    assert!(gw.count_log("registered") >= 4, "{}", gw.log());
}

#[test]
fn registration_is_refreshed_within_the_granted_expiry() {
    // The carrier grants 20 s although gatewayd asks for 600: RFC 3261
    // 10.2.4 says the granted value rules, so the binding must be refreshed
    // before it lapses (gatewayd refreshes at expires - min(expires/2, 30 s)).
    let kamailio = Kamailio::start_with_max_expires(free_udp_port(), PASSWORD, 20).expect("kamailio starts");
    let gw = Gatewayd::start(kamailio.addr(), GwOptions { fxs_ports: 1, ..Default::default() });
    gw.wait_registered(&["1001"]);
    std::thread::sleep(Duration::from_secs(25));
    let klog = kamailio.log();
    let binds: Vec<&str> = klog.lines().filter(|l| l.contains("REGISTERED 1001")).collect();
    // At 0, ~10 and ~20 s: three bindings in 25 s, each asking 600 and granted 20.
    assert!((3..=4).contains(&binds.len()), "{} REGISTERs in 25 s:\n{klog}", binds.len());
    let st = gw.status().unwrap();
    let state = st["registrations"][0]["state"].as_str().unwrap_or_default().to_string();
    assert!(state.starts_with("registered"), "{state}");
    // The granted 20 s counts down: "registered with ADDR, N s left", N <= 20.
    let left: u64 = state.rsplit(", ").next().and_then(|t| t.strip_suffix(" s left")).and_then(|n| n.parse().ok()).unwrap_or(999);
    assert!(left <= 20, "granted expiry shown: {state}");
}

#[test]
fn wrong_password_backs_off_without_a_tight_loop() {
    let kamailio = Kamailio::start(free_udp_port(), PASSWORD).expect("kamailio starts");
    let gw = Gatewayd::start(
        kamailio.addr(),
        GwOptions { password: "not-the-password".into(), retry_base_s: 2, ..Default::default() },
    );
    std::thread::sleep(Duration::from_secs(9));
    let log = gw.log();
    let failures: Vec<&str> =
        log.lines().filter(|l| l.contains("registration failed") && l.contains("user=1001")).collect();
    // Attempts at about 0, 2 and 6 s (base 2 s, doubling): three in 9 s, not hundreds.
    assert!((2..=4).contains(&failures.len()), "{} failures for 1001:\n{log}", failures.len());
    assert!(failures[0].contains("retry_in_s=2"), "{}", failures[0]);
    assert!(failures[1].contains("retry_in_s=4"), "{}", failures[1]);
    assert!(failures[0].contains("403") || failures[0].contains("401"), "{}", failures[0]);
    // Still alive and answering.
    assert!(gw.status().is_some());
}

#[test]
fn phone_calls_far_end_audio_both_ways_far_end_hangs_up() {
    let w = world();
    let sim = w.gw.attach();
    let phone = sim.phone(0);
    w.far.set_auto_answer(false);

    phone.off_hook();
    phone.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    phone.dial("2000").unwrap();
    phone.wait_for_tone(&plans::US_RINGBACK, Duration::from_secs(15)).expect("ringback");
    w.far.command("accept", "").expect("far end answers");
    w.far.wait_established(Duration::from_secs(5)).unwrap();
    wait_state(&w.gw, 1, "Connected");

    phone.play_tone(PHONE_TONE_HZ, -10.0);
    std::thread::sleep(Duration::from_millis(300));
    phone_hears_far_end(&phone);
    std::thread::sleep(Duration::from_millis(1200));

    // A digit dialled during the call reaches the far end as RFC 4733.
    phone.stop_playback();
    phone.dial("5").unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    while !w.far.events().iter().any(|e| e.kind.starts_with("CALL_DTMF") && e.param.contains('5')) {
        assert!(Instant::now() < end, "far end got no DTMF event: {:?}", w.far.events());
        std::thread::sleep(Duration::from_millis(50));
    }

    w.far.hangup().unwrap();
    phone.wait_for_tone(&plans::US_REORDER, Duration::from_secs(5)).expect("reorder after far-end hang-up");
    far_end_heard_phone(&w.far);
    phone.on_hook();
    wait_state(&w.gw, 1, "Idle");
}

#[test]
fn g722_far_end_call_carries_audio_both_ways() {
    // A wideband far end that takes G.722 only; gatewayd offers G.722 first.
    let far_tone = hil::tone(FAR_TONE_HZ, -12.0, 2.0).unwrap();
    let opts = GwOptions { codecs: &["G722", "PCMU"], fxs_ports: 1, ..GwOptions::default() };
    let w = World::start_with_codecs(opts, None, &far_tone, "G722/16000/1");
    let sim = w.gw.attach();
    let phone = sim.phone(0);
    phone.off_hook();
    phone.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    phone.dial("2000").unwrap();
    w.far.wait_established(Duration::from_secs(10)).expect("far end answers");
    wait_state(&w.gw, 1, "Connected");
    assert!(w.gw.log().contains("codec=G722"), "{}", w.gw.log());
    phone.play_tone(PHONE_TONE_HZ, -10.0);
    std::thread::sleep(Duration::from_millis(300));
    phone_hears_far_end(&phone);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(w.far.recording_rate().unwrap(), 16_000, "the far end decoded G.722");
    far_end_heard_phone(&w.far);
    phone.on_hook();
    w.far.wait_call_closed(Duration::from_secs(5)).expect("call ends");
}

#[test]
fn far_end_calls_phone_rings_with_cadence_phone_hangs_up() {
    let w = world();
    let sim = w.gw.attach();
    let phone = sim.phone(0);

    w.far.dial("1001").unwrap();
    let ring = phone.wait_ringing(Duration::from_secs(15)).expect("the phone rings");
    // US cadence: 2 s on, 4 s off (linesim counts frames, so this is exact
    // up to the 10 ms tick).
    assert!((1950..=2050).contains(&ring.on_ms), "ring on {} ms", ring.on_ms);
    assert!((3950..=4050).contains(&ring.off_ms), "ring off {} ms", ring.off_ms);

    phone.off_hook();
    w.far.wait_established(Duration::from_secs(5)).expect("call established");
    assert!(!phone.is_ringing());
    phone.play_tone(PHONE_TONE_HZ, -10.0);
    std::thread::sleep(Duration::from_millis(300));
    phone_hears_far_end(&phone);
    std::thread::sleep(Duration::from_millis(1200));

    phone.on_hook();
    let reason = w.far.wait_call_closed(Duration::from_secs(5)).expect("far end sees the call end");
    // baresip reports a BYE from the other side as a reset by the peer.
    assert!(reason.contains("peer") || reason.contains("BYE"), "close reason: {reason}");
    far_end_heard_phone(&w.far);
    wait_state(&w.gw, 1, "Idle");
}

#[test]
fn cancel_before_answer_stops_ringing_and_busy_port_answers_486() {
    let w = world();
    let sim = w.gw.attach();

    // Cancelled call.
    let phone2 = sim.phone(1);
    w.far.dial("1002").unwrap();
    phone2.wait_ringing(Duration::from_secs(15)).expect("port 2 rings");
    w.far.hangup().unwrap();
    let reason = w.far.wait_call_closed(Duration::from_secs(5)).unwrap();
    phone2.wait_ring_stop(Duration::from_secs(8)).expect("ringing stops after CANCEL");
    assert!(!phone2.is_ringing(), "still ringing; far end said {reason}");
    wait_state(&w.gw, 2, "Idle");

    // Busy port: the phone on port 3 is off-hook (dial tone), so 1003 is busy.
    let phone3 = sim.phone(2);
    phone3.off_hook();
    phone3.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    w.far.dial("1003").unwrap();
    let reason = w.far.wait_call_closed(Duration::from_secs(10)).unwrap();
    assert!(reason.contains("486"), "far end got {reason}");
    assert!(!phone3.is_ringing());
    phone3.on_hook();
}

#[test]
fn unknown_number_is_refused_and_the_gateway_keeps_running() {
    let w = world();
    // 1999 is not registered at Kamailio: 404 from the carrier.
    w.far.dial("1999").unwrap();
    let reason = w.far.wait_call_closed(Duration::from_secs(10)).unwrap();
    assert!(reason.contains("404"), "{reason}");
    assert!(w.gw.status().is_some());
}

#[test]
fn linesim_detach_mid_call_hangs_up_and_reattach_works() {
    let w = world();
    let sim = w.gw.attach();
    w.far.dial("1004").unwrap();
    sim.phone(3).wait_ringing(Duration::from_secs(15)).expect("port 4 rings");
    sim.phone(3).off_hook();
    w.far.wait_established(Duration::from_secs(5)).unwrap();
    // The phones vanish: the card reports on-hook, the gateway sends BYE.
    sim.disconnect();
    let reason = w.far.wait_call_closed(Duration::from_secs(5)).expect("BYE after detach");
    assert!(reason.contains("peer") || reason.contains("BYE"), "close reason: {reason}");
    wait_state(&w.gw, 4, "Idle");
    // A new linesim attaches and gets dial tone.
    let sim = w.gw.attach();
    sim.phone(3).off_hook();
    sim.phone(3).wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone after re-attach");
}
