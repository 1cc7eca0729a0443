//! ISDN B-channels as call legs (issue 10 item 4): linesim plays the carrier
//! (the network side) on the sim board's BRI and E1 PRI, gatewayd is the
//! user side on both. A PRI call from linesim's switch reaches the baresip
//! far end through Kamailio with its number, audio goes both ways on the
//! B-channel, the far end's hang-up arrives as cause 16 and its 486 as cause
//! 17; a SIP call from the far end goes out on a BRI B-channel; pulling layer
//! 1 clears a call (cause 38 towards SIP) and the span carries calls again
//! when it comes back; overlap digits are routed when the table matches; 30
//! SIP calls fill the E1 and the 31st gets cause 34. Every wait is bounded.

mod common;

use std::time::Duration;

use common::{GwOptions, World};
use hil::dominant_frequency;
use linesim::{CallState, IsdnSpan, Phone};

/// The carrier's calling number: one of the gateway's accounts on the
/// per-number trunk `default` (Kamailio authenticates the INVITE by it).
const CALLER: &str = "1003";
const WAIT: Duration = Duration::from_secs(10);
/// The far end sends this tone in every call; the B-channel measures it.
const FAR_TONE_HZ: f32 = 1400.0;
/// The B-channel sends this tone; the far end measures it.
const ISDN_TONE_HZ: f32 = 1004.0;

/// Spans: BRI (index 0) and PRI (index 1), gatewayd TE on both. Group `pri`
/// calls out to the SIP trunk; calls from the trunk to 1004 go out on the BRI.
const EXTRA: &str = r#"
[[span]]
name = "bri"
index = 0
kind = "bri"
role = "te"
group = "bri"

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

[[group]]
name = "bri"

[[route]]
name = "isdn-out"
from = ["pri", "bri"]
called = ["2xxx"]
to = [{ trunk = "default" }]

[[route]]
name = "to-bri"
from = ["default"]
called = ["exact:1004"]
to = [{ group = "bri" }]
"#;

fn world() -> World {
    let far_tone = hil::tone(FAR_TONE_HZ, -12.0, 2.0).unwrap();
    World::start(GwOptions { extra: EXTRA.into(), ..GwOptions::default() }, None, &far_tone)
}

fn span_up(w: &World, span: &IsdnSpan, i: usize) {
    span.wait_present(WAIT).expect("span present");
    span.wait_l2(true, WAIT).expect("layer 2 up at linesim");
    w.gw.wait_until("layer 2 up at gatewayd", WAIT, || w.gw.status().is_some_and(|s| s["isdn"][i]["l2_up"] == true));
}

/// The B-channel hears the far end's tone, and the far end hears the B-channel's.
fn audio_both_ways(b: &Phone) {
    b.play_tone(ISDN_TONE_HZ, -10.0);
    std::thread::sleep(Duration::from_millis(400));
    let m = b.measure(Duration::from_millis(1000)).unwrap();
    eprintln!("B-channel hears {m:?}");
    assert!((m.freq_hz - FAR_TONE_HZ).abs() <= 10.0, "the B-channel hears {:.1} Hz, want {FAR_TONE_HZ}", m.freq_hz);
    assert!(m.level_dbm0 > -30.0, "far end's tone too weak on the B-channel: {:.1} dBm0", m.level_dbm0);
    std::thread::sleep(Duration::from_millis(1500));
    b.stop_playback();
}

/// The far end's last recording holds a second of the B-channel's tone.
fn far_end_heard_isdn(w: &World) {
    let rec = w.far.recording().expect("far end recording");
    assert!(rec.len() > 8000, "recording too short: {} samples", rec.len());
    let freqs: Vec<f32> = (0..rec.len() - 8000).step_by(800).map(|s| dominant_frequency(&rec[s..s + 8000])).collect();
    eprintln!("far-end recording: {} samples, dominant per 1 s window: {freqs:.0?}", rec.len());
    assert!(freqs.iter().any(|f| (f - ISDN_TONE_HZ).abs() <= 10.0), "no second of {ISDN_TONE_HZ} Hz at the far end: {freqs:.0?}");
}

fn show_isdn(w: &World) -> String {
    w.gw.console(&["show isdn"]).remove(0)
}

#[test]
fn a_pri_call_reaches_the_far_end_with_audio_and_busy_comes_back_as_cause_17() {
    let w = world();
    let sim = w.gw.attach();
    let pri = sim.span(1);
    span_up(&w, &pri, 1);
    pri.enable_calls().unwrap();

    // En-bloc call on B-channel 17 from the carrier to 2000 (the far end).
    w.far.set_auto_answer(true);
    let h = pri.place_call("2000", Some(CALLER), Some(17), true).unwrap();
    pri.wait_state(h, CallState::Connected, Duration::from_secs(15)).expect("the far end answers");
    w.far.wait_established(WAIT).unwrap();
    let show = show_isdn(&w);
    eprintln!("{show}");
    assert!(show.contains("B17: call") && show.contains("in 1003 -> 2000"), "{show}");
    assert!(show.contains("17:busy"), "{show}");
    let b = pri.b_channel(15).unwrap(); // timeslot 17 is the 16th B-channel of the E1
    audio_both_ways(&b);
    w.far.hangup().unwrap();
    pri.wait_state(h, CallState::Released, WAIT).unwrap();
    assert_eq!(pri.last_cause(h).unwrap(), Some(16), "the far end's BYE is normal clearing");
    far_end_heard_isdn(&w);
    w.gw.wait_until("the B-channel idle again", WAIT, || show_isdn(&w).contains("17:idle"));

    // Overlap: "20" in the SETUP, "00" by INFORMATION: routed once "2xxx" matches.
    let h = pri.place_call("20", Some(CALLER), None, false).unwrap();
    pri.wait_state(h, CallState::Proceeding, WAIT).expect("SETUP ACK");
    pri.send_digits(h, "00", false).unwrap();
    pri.wait_state(h, CallState::Connected, Duration::from_secs(15)).expect("answered once the number is complete");
    w.far.wait_established(WAIT).unwrap();
    pri.release(h, 16).unwrap();
    w.far.wait_call_closed(WAIT).expect("the far end's call ends");

    // The far end refuses (486): cause 17 in the DISCONNECT.
    w.far.set_auto_answer(false);
    let h = pri.place_call("2000", Some(CALLER), None, true).unwrap();
    pri.wait_state(h, CallState::Alerting, Duration::from_secs(15)).expect("the far end rings");
    w.far.hangup().unwrap();
    pri.wait_state(h, CallState::Released, WAIT).unwrap();
    assert_eq!(pri.last_cause(h).unwrap(), Some(17), "486 from the far end is user busy");

    // A number no route takes: refused at once with the route table's cause.
    let h = pri.place_call("9999", Some(CALLER), None, true).unwrap();
    pri.wait_state(h, CallState::Released, WAIT).unwrap();
    let cause = pri.last_cause(h).unwrap();
    assert!(cause.is_some_and(|c| c != 16 && c != 17), "no route: cause {cause:?}");

    // Layer 1 pulled during a call: the far end is hung up (cause 38 in Reason).
    w.far.set_auto_answer(true);
    let h = pri.place_call("2000", Some(CALLER), Some(1), true).unwrap();
    pri.wait_state(h, CallState::Connected, Duration::from_secs(15)).expect("answered");
    w.far.wait_established(WAIT).unwrap();
    pri.pull_l1().unwrap();
    let reason = w.far.wait_call_closed(WAIT).expect("the far end's call is cleared");
    eprintln!("far end: {reason}");
    w.gw.wait_until("the call cleared with cause 38", WAIT, || w.gw.log().contains("cause=38"));
    // The line returns: calls go through again.
    std::thread::sleep(Duration::from_millis(300));
    pri.restore_l1().unwrap();
    span_up(&w, &pri, 1);
    let h = pri.place_call("2000", Some(CALLER), Some(2), true).unwrap();
    pri.wait_state(h, CallState::Connected, Duration::from_secs(15)).expect("answered after layer 1 returned");
    pri.release(h, 16).unwrap();
    w.far.wait_call_closed(WAIT).expect("the far end's call ends");
}

#[test]
fn a_sip_call_goes_out_on_a_bri_b_channel_with_audio() {
    let w = world();
    let sim = w.gw.attach();
    let bri = sim.span(0);
    span_up(&w, &bri, 0);
    bri.enable_calls().unwrap();

    w.far.dial("1004").unwrap();
    let h = bri.wait_incoming(Duration::from_secs(15)).expect("a SETUP on the BRI");
    let c = bri.call(h).unwrap();
    assert_eq!((c.called.as_str(), c.calling.as_deref()), ("1004", Some("2000")), "{c:?}");
    let ch = c.channel.expect("the gateway chose a B-channel");
    assert!(ch == 1 || ch == 2, "{c:?}");
    bri.alert(h).unwrap();
    w.far.wait_ringing(WAIT).expect("the far end hears it ring");
    bri.answer(h).unwrap();
    w.far.wait_established(WAIT).expect("answered");
    let b = bri.b_channel(usize::from(ch - 1)).unwrap();
    audio_both_ways(&b);
    let show = show_isdn(&w);
    assert!(show.contains(&format!("B{ch}: call")) && show.contains("out 2000 -> 1004"), "{show}");
    bri.release(h, 16).unwrap();
    let reason = w.far.wait_call_closed(WAIT).expect("the far end's call ends");
    eprintln!("far end: {reason}");
    far_end_heard_isdn(&w);
}

/// 30 SIP calls fill the E1's B-channels; the 31st is refused with cause 34
/// (503 with `Reason: Q.850;cause=34`); the callers' BYEs clear every
/// B-channel with cause 16.
#[test]
fn thirty_sip_calls_fill_the_e1_and_the_31st_gets_cause_34() {
    use common::Gatewayd;
    use hil::{free_udp_port, free_udp_port_range, sipp_scenario, Sipp};
    let peer_port = free_udp_port();
    let extra = common::peer_to_pri_config(peer_port);
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, rtp_ports: 80, ..GwOptions::default() });
    let sim = gw.attach();
    let pri = sim.span(1);
    pri.wait_present(WAIT).unwrap();
    pri.wait_l2(true, WAIT).unwrap();
    gw.wait_until("layer 2 up at gatewayd", WAIT, || gw.status().is_some_and(|s| s["isdn"][0]["l2_up"] == true));
    pri.enable_calls().unwrap();
    // The carrier answers every call it is offered.
    let answering = std::thread::spawn({
        let pri = pri.clone();
        move || {
            let mut handles = Vec::new();
            while let Ok(h) = pri.wait_incoming(Duration::from_secs(20)) {
                pri.alert(h).unwrap();
                pri.answer(h).unwrap();
                handles.push(h);
                if handles.len() == 30 {
                    break;
                }
            }
            handles
        }
    });
    let gw_sip = gw.sip.to_string();
    let (rtp, _) = free_udp_port_range(4);
    let args = [
        "-m", "30", "-l", "30", "-r", "10", "-i", "127.0.0.3", "-p", &peer_port.to_string(), "-mp", &rtp.to_string(),
        "-s", "4000", "-key", "caller", "5551234", "-d", "12000", "-timeout", "60s", &gw_sip,
    ];
    let calls = Sipp::spawn(&sipp_scenario("uac_hold.xml"), &args, &[]).unwrap();
    let handles = answering.join().unwrap();
    assert_eq!(handles.len(), 30, "the carrier answered 30 calls");
    gw.wait_until("30 calls up", WAIT, || pri.active_calls().unwrap() == 30);
    gw.wait_until("30 B-channels busy in show isdn", WAIT, || gw.console(&["show isdn"]).remove(0).matches(":busy").count() == 30);
    // The 31st: every B-channel busy.
    let (rtp2, _) = free_udp_port_range(2);
    let args = [
        "-m", "1", "-i", "127.0.0.3", "-p", &free_udp_port().to_string(), "-mp", &rtp2.to_string(), "-s", "4031",
        "-key", "caller", "5551234", "-timeout", "15s", &gw_sip,
    ];
    let out = Sipp::spawn(&sipp_scenario("invite_refused.xml"), &args, &[]).unwrap().wait(Duration::from_secs(20));
    assert!(out.success(), "{}\n{}", out.messages, out.log);
    assert!(out.messages.contains("SIP/2.0 503"), "{}", out.messages);
    assert!(out.messages.contains("cause=34"), "{}", out.messages);
    // The callers hang up: every call is cleared with cause 16.
    let out = calls.wait(Duration::from_secs(40));
    assert!(out.success(), "{}", out.log);
    gw.wait_until("all B-channels idle", WAIT, || pri.active_calls().unwrap() == 0);
    for h in handles {
        assert_eq!(pri.last_cause(h).unwrap(), Some(16));
    }
    gw.wait_until("no B-channel busy in show isdn", WAIT, || gw.console(&["show isdn"]).remove(0).matches(":busy").count() == 0);
}

/// RFC 3325/3323 on a trusted carrier trunk (issue 10): a restricted ISDN
/// caller goes out `From: anonymous` with `P-Asserted-Identity` holding its
/// number and `Privacy: id` (the SIPp carrier answers 486, which comes back
/// as cause 17); an anonymous SIP caller whose number
/// the carrier asserts reaches the PRI with that number, presentation
/// restricted, screening network provided (3). An untrusted trunk
/// (`trusted_identity = false`) gets no PAI and its PAI is ignored.
#[test]
fn asserted_identity_crosses_between_a_trusted_trunk_and_the_pri() {
    use common::Gatewayd;
    use hil::{free_udp_port, free_udp_port_range, sipp_scenario, Sipp};
    let carrier_port = free_udp_port();
    let other_port = free_udp_port();
    let extra = format!(
        r#"
[[trunk]]
name = "carrier"
proxy = "127.0.0.3:{carrier_port}"
register = "none"
options_interval_s = 0
accept_from = ["127.0.0.3"]

[[trunk]]
name = "untrusted"
proxy = "127.0.0.4:{other_port}"
register = "none"
options_interval_s = 0
accept_from = ["127.0.0.4"]
trusted_identity = false

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
name = "to-carrier"
from = ["pri"]
called = ["2xxx"]
to = [{{ trunk = "carrier" }}]

[[route]]
name = "to-untrusted"
from = ["pri"]
called = ["3xxx"]
to = [{{ trunk = "untrusted" }}]

[[route]]
name = "to-pri"
from = ["carrier", "untrusted"]
called = ["4xxx"]
to = [{{ group = "pri" }}]
"#
    );
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, ..GwOptions::default() });
    let sim = gw.attach();
    let pri = sim.span(1);
    pri.wait_present(WAIT).unwrap();
    pri.wait_l2(true, WAIT).unwrap();
    gw.wait_until("layer 2 up at gatewayd", WAIT, || gw.status().is_some_and(|s| s["isdn"][0]["l2_up"] == true));
    pri.enable_calls().unwrap();
    let gw_sip = gw.sip.to_string();

    // ISDN -> SIP: a restricted caller, asserted to the trusted carrier
    // (the carrier answers 486 and records what it got).
    let (rtp, _) = free_udp_port_range(2);
    let args = ["-m", "1", "-i", "127.0.0.3", "-p", &carrier_port.to_string(), "-mp", &rtp.to_string(), "-timeout", "30s"];
    let uas = Sipp::spawn(&sipp_scenario("uas_pai_busy.xml"), &args, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let h = pri.place_call_with("2000", Some("5551234"), Some(1), None, true).unwrap();
    pri.wait_state(h, CallState::Released, Duration::from_secs(15)).expect("the carrier refuses");
    assert_eq!(pri.last_cause(h).unwrap(), Some(17), "486 is user busy");
    let out = uas.wait(Duration::from_secs(20));
    eprintln!("{}", out.messages);
    assert!(out.success(), "{}\n{}", out.messages, out.log);
    assert!(out.messages.contains("P-Asserted-Identity: <sip:5551234@"), "{}", out.messages);
    assert!(out.messages.contains("Privacy: id"), "{}", out.messages);
    assert!(!out.messages.contains("From: <sip:5551234@"), "the number is hidden in From:\n{}", out.messages);

    // The same caller to the untrusted trunk: no PAI, no Privacy.
    let (rtp, _) = free_udp_port_range(2);
    let args = ["-m", "1", "-i", "127.0.0.4", "-p", &other_port.to_string(), "-mp", &rtp.to_string(), "-timeout", "30s"];
    let uas = Sipp::spawn(&sipp_scenario("uas_pai_busy.xml"), &args, &[]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let h = pri.place_call_with("3000", Some("5551234"), Some(1), None, true).unwrap();
    pri.wait_state(h, CallState::Released, Duration::from_secs(15)).expect("released");
    let out = uas.wait(Duration::from_secs(20));
    assert!(!out.messages.contains("P-Asserted-Identity"), "{}", out.messages);
    assert!(out.messages.contains("INVITE sip:3000@"), "{}", out.messages);

    // SIP -> ISDN: the carrier asserts the anonymous caller's number.
    let answering = std::thread::spawn({
        let pri = pri.clone();
        move || {
            let h = pri.wait_incoming(Duration::from_secs(20)).unwrap();
            let call = pri.call(h).unwrap();
            pri.release(h, 17).unwrap();
            call
        }
    });
    let (rtp, _) = free_udp_port_range(2);
    let args = [
        "-m", "1", "-i", "127.0.0.3", "-p", &free_udp_port().to_string(), "-mp", &rtp.to_string(), "-s", "4000",
        "-key", "caller", "5559876", "-timeout", "20s", &gw_sip,
    ];
    let out = Sipp::spawn(&sipp_scenario("invite_pai_refused.xml"), &args, &[]).unwrap().wait(Duration::from_secs(25));
    let call = answering.join().unwrap();
    eprintln!("PRI saw {call:?}");
    assert!(out.success(), "{}\n{}", out.messages, out.log);
    assert!(out.messages.contains("SIP/2.0 486"), "{}", out.messages);
    assert_eq!(call.calling.as_deref(), Some("5559876"), "the asserted number");
    assert_eq!(call.presentation, Some(1), "Privacy: id -> presentation restricted");
    assert_eq!(call.screening, Some(3), "network provided");

    // The untrusted trunk's PAI is not believed: the From user goes on.
    let answering = std::thread::spawn({
        let pri = pri.clone();
        move || {
            let h = pri.wait_incoming(Duration::from_secs(20)).unwrap();
            let call = pri.call(h).unwrap();
            pri.release(h, 17).unwrap();
            call
        }
    });
    let (rtp, _) = free_udp_port_range(2);
    let args = [
        "-m", "1", "-i", "127.0.0.4", "-p", &free_udp_port().to_string(), "-mp", &rtp.to_string(), "-s", "4001",
        "-key", "caller", "5559876", "-timeout", "20s", &gw_sip,
    ];
    let out = Sipp::spawn(&sipp_scenario("invite_pai_refused.xml"), &args, &[]).unwrap().wait(Duration::from_secs(25));
    let call = answering.join().unwrap();
    eprintln!("PRI saw {call:?}");
    assert!(out.success(), "{}\n{}", out.messages, out.log);
    assert_ne!(call.calling.as_deref(), Some("5559876"), "an untrusted PAI is ignored");
}

/// Overlap sending (issue 10): an overlap caller on the PRI dials "0..."; a
/// route to the BRI group, whose span has `overlap = true`, takes it at the
/// first digit: the BRI SETUP carries "0" without sending complete, the
/// rest follows as INFORMATION once linesim's BRI network acknowledges,
/// the caller's sending complete is passed on, and the call connects end to
/// end when the BRI side answers.
#[test]
fn an_overlap_caller_on_the_pri_is_sent_on_digit_by_digit_to_an_overlap_bri() {
    let extra = r#"
[[span]]
name = "bri"
index = 0
kind = "bri"
role = "te"
group = "bri"
overlap = true

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

[[group]]
name = "bri"

[[route]]
name = "tandem"
from = ["pri"]
called = ["prefix:0"]
to = [{ group = "bri" }]
"#;
    let w = World::start(GwOptions { extra: extra.into(), ..GwOptions::default() }, None, &hil::tone(FAR_TONE_HZ, -12.0, 1.0).unwrap());
    let sim = w.gw.attach();
    let (bri, pri) = (sim.span(0), sim.span(1));
    span_up(&w, &bri, 0);
    span_up(&w, &pri, 1);
    bri.enable_calls().unwrap();
    pri.enable_calls().unwrap();
    let a = pri.place_call("0", Some(CALLER), None, false).unwrap();
    pri.wait_state(a, CallState::Proceeding, WAIT).expect("SETUP ACK to the caller");
    let b = bri.wait_incoming(WAIT).expect("a SETUP on the BRI at the first digit");
    let call = bri.call(b).unwrap();
    assert_eq!((call.called.as_str(), call.sending_complete), ("0", false), "{call:?}");
    bri.setup_ack(b).unwrap();
    pri.send_digits(a, "30", false).unwrap();
    pri.send_digits(a, "12", false).unwrap();
    w.gw.wait_until("the digits reach the BRI", WAIT, || bri.call(b).is_ok_and(|c| c.digits == "3012"));
    pri.send_digits(a, "", true).unwrap();
    w.gw.wait_until("sending complete reaches the BRI", WAIT, || bri.call(b).is_ok_and(|c| c.sending_complete));
    bri.proceeding(b).unwrap();
    bri.alert(b).unwrap();
    pri.wait_state(a, CallState::Alerting, WAIT).expect("the caller hears ringing");
    bri.answer(b).unwrap();
    pri.wait_state(a, CallState::Connected, WAIT).expect("connected end to end");
    let show = show_isdn(&w);
    eprintln!("{show}");
    assert!(show.contains("out 1003 -> 03012") && show.contains("in 1003 -> 03012"), "{show}");
    pri.release(a, 16).unwrap();
    bri.wait_state(b, CallState::Released, WAIT).expect("the BRI leg is cleared");
    assert_eq!(bri.last_cause(b).unwrap(), Some(16));
}
