//! Several SIP trunks and who may call: Kamailio (with the baresip far end
//! 2000 behind it) is the `default` trunk, a SIPp UAS is a second trunk
//! `peer`, trusted by address and not registering. The routing table sends
//! 2xxx to the carrier and 3xxx to the peer; an INVITE from an address of no
//! trunk gets 403 and rings nothing; a trunk cannot reach another trunk
//! without a rule; a call to a trunk that is down fails over at once.

mod common;

use std::time::{Duration, Instant};

use common::{GwOptions, World};
use hil::{free_udp_port, free_udp_port_range, sipp_scenario, Sipp};
use linesim::plans;

/// SIPp sends one INVITE for `number` from `source_ip` to gatewayd at `to`.
fn refused(source_ip: &str, to: &str, number: &str) -> hil::SippOutcome {
    let port = free_udp_port().to_string();
    Sipp::spawn(
        &sipp_scenario("invite_refused.xml"),
        &["-m", "1", "-i", source_ip, "-p", &port, "-s", number, "-key", "caller", "5551234", "-timeout", "10s", to],
        &[],
    )
    .expect("sipp starts")
    .wait(Duration::from_secs(15))
}

/// A SIPp UAS on 127.0.0.1:`port` that answers one call and echoes its RTP.
fn echoing_peer(port: u16, rtp: u16) -> Sipp {
    Sipp::spawn(
        &sipp_scenario("uas.xml"),
        &["-m", "1", "-i", "127.0.0.1", "-p", &port.to_string(), "-mp", &rtp.to_string(), "-rtp_echo"],
        &[],
    )
    .expect("sipp starts")
}

fn wait_state(w: &World, port: usize, states: &[&str], within: Duration) -> Duration {
    let t0 = Instant::now();
    w.gw.wait_until(&format!("port {port} in {states:?}"), within, || states.contains(&w.gw.port_state(port).as_str()));
    t0.elapsed()
}

#[test]
fn two_trunks_by_prefix_strangers_get_403_and_no_trunk_to_trunk_without_a_rule() {
    let uas_port = free_udp_port();
    let (rtp, _) = free_udp_port_range(4);
    let extra = format!(
        r#"
[[trunk]]
name = "peer"
proxy = "127.0.0.1:{uas_port}"
register = "none"
options_interval_s = 0
accept_from = ["127.0.0.3"]

[[group]]
name = "phones"
fxs = [1, 2, 3, 4]

[[route]]
name = "local"
from = ["phones", "default", "peer"]
called = ["1xxx"]
to = [{{ owner = true }}]

[[route]]
name = "carrier"
from = ["phones"]
called = ["2xxx"]
to = [{{ trunk = "default" }}]

[[route]]
name = "peer"
from = ["phones"]
called = ["3xxx"]
to = [{{ trunk = "peer" }}]
"#
    );
    let far_tone = hil::tone(1400.0, -12.0, 2.0).unwrap();
    let w = World::start(GwOptions { extra, ..GwOptions::default() }, None, &far_tone);
    let gw_sip = w.gw.status().unwrap()["sip_listen"].as_str().unwrap().to_string();

    // A stranger on 127.0.0.2: 403 for a port's number and for a number that
    // does not exist alike, and no phone rings.
    let sim = w.gw.attach();
    for number in ["1001", "1999"] {
        let out = refused("127.0.0.2", &gw_sip, number);
        assert_eq!(out.received_statuses().last(), Some(&403), "{number}: {}", out.messages);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!sim.phone(0).is_ringing(), "a stranger's INVITE rang port 1");
    let st = w.gw.status().unwrap();
    assert!(st["calls"]["untrusted"].as_u64().unwrap() >= 2, "{st}");

    // The peer trunk (its address 127.0.0.3) may call the phones but not the carrier.
    let out = refused("127.0.0.3", &gw_sip, "2000");
    assert_eq!(out.received_statuses().last(), Some(&404), "trunk to trunk without a rule: {}", out.messages);
    assert!(w.kamailio.log().lines().all(|l| !l.contains("INVITE") || !l.contains("5551234")), "relayed to the carrier");

    // 3xxx goes to the peer (SIPp echoes the audio back), 2xxx to the carrier.
    let uas = echoing_peer(uas_port, rtp);
    let p1 = sim.phone(0);
    p1.off_hook();
    p1.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p1.dial("3000").unwrap();
    wait_state(&w, 1, &["Connected"], Duration::from_secs(5));
    p1.play_tone(1004.0, -10.0);
    std::thread::sleep(Duration::from_millis(400));
    let m = p1.measure(Duration::from_millis(800)).unwrap();
    assert!((m.freq_hz - 1004.0).abs() < 10.0, "the peer's echo of the phone's tone: {m:?}");
    let st = w.gw.status().unwrap();
    let call = st["ports"][0]["call"].as_str().unwrap_or_default().to_string();
    assert!(call.contains("trunk peer"), "{call}");
    let route = st["ports"][0]["route"].as_str().unwrap_or_default().to_string();
    assert!(route.contains("rule 2 \"peer\""), "{route}");
    p1.stop_playback();
    p1.on_hook();
    let out = uas.wait(Duration::from_secs(10));
    assert!(out.success(), "the peer saw INVITE, ACK and BYE: {}", out.messages);

    let p2 = sim.phone(1);
    p2.off_hook();
    p2.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p2.dial("2000").unwrap();
    w.far.wait_established(Duration::from_secs(10)).expect("the carrier's far end answers");
    wait_state(&w, 2, &["Connected"], Duration::from_secs(5));
    p2.on_hook();
    w.far.wait_call_closed(Duration::from_secs(5)).expect("call ends");
}

#[test]
fn a_call_to_a_trunk_that_is_down_fails_over_within_a_second() {
    let dead = free_udp_port();
    let uas_port = free_udp_port();
    let (rtp, _) = free_udp_port_range(4);
    // "dead" is pinged every 5 s and down after one unanswered ping (2 s).
    let extra = format!(
        r#"
[[trunk]]
name = "dead"
proxy = "127.0.0.1:{dead}"
options_interval_s = 5
options_failures = 1

[[trunk]]
name = "backup"
proxy = "127.0.0.1:{uas_port}"
options_interval_s = 0

[[group]]
name = "phones"
fxs = [1, 2, 3, 4]

[[route]]
from = ["phones"]
called = ["3xxx"]
to = [{{ trunk = "dead" }}, {{ trunk = "backup" }}]

[[route]]
from = ["phones"]
called = ["4xxx"]
to = [{{ trunk = "dead" }}]
"#
    );
    let far_tone = hil::tone(1400.0, -12.0, 2.0).unwrap();
    let opts = GwOptions { extra, ..GwOptions::default() };
    let w = World::start(opts, None, &far_tone);
    w.gw.wait_until("trunk dead marked down", Duration::from_secs(10), || {
        let st = w.gw.status().unwrap();
        st["trunks"].as_array().unwrap().iter().any(|t| t["name"] == "dead" && t["state"].as_str().unwrap_or("").starts_with("down"))
    });
    let uas = echoing_peer(uas_port, rtp);
    let sim = w.gw.attach();
    let p1 = sim.phone(0);
    p1.off_hook();
    p1.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p1.dial("3000").unwrap();
    // The dead trunk is skipped without an INVITE: the backup answers at once.
    let took = wait_state(&w, 1, &["Ringback", "Connected"], Duration::from_secs(1));
    eprintln!("failover to the backup trunk: {} ms after the last digit", took.as_millis());
    wait_state(&w, 1, &["Connected"], Duration::from_secs(3));
    let route = w.gw.status().unwrap()["ports"][0]["route"].as_str().unwrap_or_default().to_string();
    assert!(route.contains("trunk \"dead\" -> 38 network out of order (trunk down)"), "{route}");
    p1.on_hook();
    assert!(uas.wait(Duration::from_secs(10)).success());

    // Only the dead trunk: reorder within a second, not silence.
    p1.off_hook();
    p1.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    let t0 = Instant::now();
    p1.dial("4000").unwrap();
    p1.wait_for_tone(&plans::US_REORDER, Duration::from_secs(3)).expect("reorder");
    eprintln!("reorder {} ms after dialling began (4 digits)", t0.elapsed().as_millis());
    assert!(t0.elapsed() < Duration::from_millis(2500));
    p1.on_hook();
}

#[test]
fn a_rule_lets_the_peer_trunk_call_through_the_carrier_with_audio() {
    let peer_port = free_udp_port();
    let extra = format!(
        r#"
[[trunk]]
name = "peer"
proxy = "127.0.0.3:{peer_port}"
options_interval_s = 0

[[group]]
name = "phones"
fxs = [1, 2, 3, 4]

[[route]]
name = "transit"
from = ["peer"]
called = ["2xxx"]
to = [{{ trunk = "default" }}]
"#
    );
    let silence = vec![0i16; 8000];
    let w = World::start(GwOptions { extra, ..GwOptions::default() }, None, &silence);
    let gw_sip = w.gw.status().unwrap()["sip_listen"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ulaw = dir.path().join("audio.ul");
    hil::write_ulaw(&ulaw, &hil::tone(1004.0, -10.0, 4.0).unwrap()).unwrap();
    let (rtp, _) = free_udp_port_range(4);
    // The peer trunk calls 2000 as 1001 (an account of the carrier trunk), streams 3 s of 1004 Hz.
    let args = [
        "-m", "1", "-i", "127.0.0.3", "-p", &peer_port.to_string(), "-mp", &rtp.to_string(), "-s", "2000",
        "-key", "caller", "1001", "-d", "3000", "-timeout", "20s", &gw_sip,
    ];
    let call = Sipp::spawn(&sipp_scenario("uac_call_direct.xml"), &args, &[("audio.ul", &ulaw)]).unwrap();
    w.far.wait_incoming_answered(Duration::from_secs(10)).expect("the carrier's far end answers the transit call");
    w.far.wait_call_closed(Duration::from_secs(15)).expect("the peer's BYE ends it");
    let out = call.wait(Duration::from_secs(15));
    assert!(out.success(), "{}\n{}", out.messages, out.log);
    let rec = w.far.recording().unwrap();
    let f = hil::dominant_frequency(&rec);
    let level = hil::level_dbm0(&rec);
    eprintln!("transit call: the far end heard {f:.1} Hz at {level:.1} dBm0");
    assert!((f - 1004.0).abs() < 10.0, "far end heard {f} Hz");
    assert!((level + 10.0).abs() < 3.0, "far end heard {level} dBm0, sent -10");
    let st = w.gw.status().unwrap();
    assert!(st["trunks"].as_array().unwrap().iter().all(|t| t["active_calls"] == 0), "{st}");
}

