//! FXO: the sim board's PSTN lines, with linesim playing the central
//! office. A PSTN call on FXO 1 rings phone 1001 with the caller's number and
//! name; a phone dials 9 + a number and it goes out on the line as DTMF;
//! audio both ways; the exchange's disconnect releases the line. No trunk.

mod common;

use std::time::{Duration, Instant};

use common::{Gatewayd, GwOptions};
use hil::free_udp_port;
use linesim::{plans, CentralOffice, Disconnect, Phone, Standard};

const EXTRA: &str = r#"
[[fxo]]
port = 1
number = "5550100"
inbound = "1001"

[[group]]
name = "phones"
fxs = [1, 2, 3, 4]

[[group]]
name = "pstn"
fxo = [1]

[[route]]
name = "local"
from = ["phones", "pstn"]
called = ["1xxx"]
to = [{ owner = true }]

[[route]]
name = "outside"
from = ["phones"]
called = ["9."]
strip = 1
to = [{ group = "pstn" }]
"#;

fn start() -> Gatewayd {
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    Gatewayd::start(nobody, GwOptions { register_expires: 0, extra: EXTRA.into(), ..GwOptions::default() })
}

fn fxo_state(gw: &Gatewayd) -> String {
    gw.status().unwrap()["fxo"][0]["state"].as_str().unwrap_or_default().to_string()
}

/// The phone goes off hook, hears dial tone and dials `number`.
fn off_hook_and_dial(phone: &Phone, number: &str) {
    phone.off_hook();
    phone.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    phone.dial(number).unwrap();
}

/// `listener` measures the tone `talker` plays (each a phone or the exchange).
fn hears(play: impl Fn(f32), stop: impl Fn(), measure: impl Fn() -> linesim::Measurement, hz: f32) {
    play(hz);
    std::thread::sleep(Duration::from_millis(300));
    let m = measure();
    stop();
    assert!((m.freq_hz - hz).abs() <= 10.0, "heard {:.1} Hz, want {hz} Hz", m.freq_hz);
    assert!(m.level_dbm0 > -20.0, "heard {:.1} dBm0", m.level_dbm0);
}

fn phone_and_co_talk(phone: &Phone, co: &CentralOffice) {
    hears(
        |hz| phone.play_tone(hz, -10.0),
        || phone.stop_playback(),
        || co.measure(Duration::from_millis(800)).unwrap(),
        1004.0,
    );
    hears(
        |hz| co.play_tone(hz, -10.0).unwrap(),
        || co.stop_playback().unwrap(),
        || phone.measure(Duration::from_millis(800)).unwrap(),
        1400.0,
    );
}

#[test]
fn a_pstn_call_rings_the_phone_with_caller_id_and_the_exchange_hangs_up() {
    let gw = start();
    let sim = gw.attach();
    let (phone, co) = (sim.phone(0), sim.co(sim.fxo_ports()[0]));
    co.send_caller_id(Standard::Bell202, "5551234", "PSTN CALLER").unwrap();
    let cid = phone.wait_caller_id(Duration::from_secs(15)).expect("caller ID at the phone");
    assert_eq!(cid.fields.number.as_deref(), Some("5551234"));
    assert_eq!(cid.fields.name.as_deref(), Some("PSTN CALLER"));
    let end = Instant::now() + Duration::from_secs(10);
    while !phone.is_ringing() {
        assert!(Instant::now() < end, "phone 1 does not ring");
        std::thread::sleep(Duration::from_millis(20));
    }
    phone.off_hook();
    co.wait_seized(Duration::from_secs(3)).expect("the gateway answers the line");
    gw.wait_until("FXO 1 connected", Duration::from_secs(3), || fxo_state(&gw) == "Connected");
    phone_and_co_talk(&phone, &co);
    // The exchange releases with an open-loop interval: the line is let go.
    let t0 = Instant::now();
    co.disconnect(Disconnect::Cpc { ms: 600 }).unwrap();
    co.wait_released(Duration::from_secs(3)).expect("the line is released after the CPC");
    eprintln!("line released {} ms after the CPC began", t0.elapsed().as_millis());
    phone.wait_for_tone(&plans::US_REORDER, Duration::from_secs(3)).expect("the phone hears reorder");
    phone.on_hook();
    gw.wait_until("FXO 1 idle", Duration::from_secs(5), || fxo_state(&gw) == "Idle");
}

#[test]
fn a_phone_dials_out_on_the_pstn_line_and_hangs_up() {
    let gw = start();
    let sim = gw.attach();
    let (phone, co) = (sim.phone(1), sim.co(sim.fxo_ports()[0]));
    off_hook_and_dial(&phone, "95551234");
    co.wait_seized(Duration::from_secs(5)).expect("the line is seized");
    let digits = co.wait_digits(7, Duration::from_secs(10)).expect("the number dialled on the line");
    assert_eq!(digits, "5551234");
    co.answer(true).unwrap();
    gw.wait_until("phone 2 connected", Duration::from_secs(5), || gw.port_state(2) == "Connected");
    phone_and_co_talk(&phone, &co);
    let st = gw.status().unwrap();
    let route = st["ports"][1]["route"].as_str().unwrap_or_default().to_string();
    assert!(route.contains("\"outside\"") && route.contains("group \"pstn\""), "{route}");
    phone.on_hook();
    co.wait_released(Duration::from_secs(3)).expect("the line goes on hook");
    gw.wait_until("FXO 1 idle", Duration::from_secs(5), || fxo_state(&gw) == "Idle");
}

/// A configuration with a carrier trunk that answers nothing (OPTIONS every
/// 5 s, down after one miss) and the PSTN line as its fallback.
fn with_dead_carrier() -> Gatewayd {
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let carrier = free_udp_port();
    let extra = EXTRA.replace(
        "[[group]]\nname = \"phones\"",
        &format!(
            "[[trunk]]\nname = \"carrier\"\nproxy = \"127.0.0.1:{carrier}\"\noptions_interval_s = 5\noptions_failures = 1\n\n\
             [[route]]\nname = \"carrier\"\nfrom = [\"phones\"]\ncalled = [\"2xxx\"]\n\
             to = [{{ trunk = \"carrier\" }}, {{ group = \"pstn\" }}]\n\n[[group]]\nname = \"phones\""
        ),
    );
    Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, ..GwOptions::default() })
}

#[test]
fn with_the_carrier_down_calls_fall_back_to_the_pstn_line_and_emergency_calls_use_it_first() {
    let gw = with_dead_carrier();
    gw.wait_until("the carrier trunk marked down", Duration::from_secs(10), || {
        let st = gw.status().unwrap();
        st["trunks"].as_array().unwrap().iter().any(|t| t["name"] == "carrier" && t["state"].as_str().unwrap_or("").starts_with("down"))
    });
    let sim = gw.attach();
    let (phone, co) = (sim.phone(0), sim.co(sim.fxo_ports()[0]));
    phone.off_hook();
    phone.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    let t0 = Instant::now();
    phone.dial("2000").unwrap();
    co.wait_seized(Duration::from_secs(2)).expect("the PSTN line is seized at once");
    eprintln!("fallback: line seized {} ms after dialling began", t0.elapsed().as_millis());
    let st = gw.status().unwrap();
    assert_eq!(st["ports"][0]["state"], "Ringback", "the caller hears ringback while the line is dialled");
    assert_eq!(co.wait_digits(4, Duration::from_secs(10)).unwrap(), "2000");
    let route = gw.status().unwrap()["ports"][0]["route"].as_str().unwrap_or_default().to_string();
    assert!(route.contains("trunk \"carrier\" -> 38"), "{route}");
    phone.on_hook();
    co.wait_released(Duration::from_secs(3)).expect("released");
    gw.wait_until("FXO 1 idle", Duration::from_secs(5), || fxo_state(&gw) == "Idle");

    // 911: the emergency rule takes the PSTN line first.
    off_hook_and_dial(&phone, "911");
    // "911" is also a prefix of "9." here: the inter-digit timeout (4 s) ends it.
    co.wait_seized(Duration::from_secs(8)).expect("911 seizes the PSTN line");
    assert_eq!(co.wait_digits(3, Duration::from_secs(10)).unwrap(), "911");
    let route = gw.status().unwrap()["ports"][0]["route"].as_str().unwrap_or_default().to_string();
    assert!(route.contains("\"emergency\""), "{route}");
    co.answer(true).unwrap();
    gw.wait_until("phone 1 connected", Duration::from_secs(5), || gw.port_state(1) == "Connected");
    // The exchange hangs up by reversing the line back.
    co.disconnect(Disconnect::Reversal).unwrap();
    co.wait_released(Duration::from_secs(3)).expect("released on the reversal");
    phone.wait_for_tone(&plans::US_REORDER, Duration::from_secs(3)).expect("reorder");
    phone.on_hook();
}

#[test]
fn the_exchange_hanging_up_with_busy_tone_only_releases_the_line() {
    let gw = start();
    let sim = gw.attach();
    let (phone, co) = (sim.phone(0), sim.co(sim.fxo_ports()[0]));
    off_hook_and_dial(&phone, "95551234");
    co.wait_seized(Duration::from_secs(8)).expect("seized");
    co.wait_digits(7, Duration::from_secs(10)).unwrap();
    co.answer(true).unwrap();
    gw.wait_until("phone 1 connected", Duration::from_secs(5), || gw.port_state(1) == "Connected");
    let t0 = Instant::now();
    co.disconnect(Disconnect::BusyTone).unwrap();
    co.wait_released(Duration::from_secs(8)).expect("released on busy tone");
    eprintln!("line released {} ms after busy tone began", t0.elapsed().as_millis());
    phone.on_hook();
    gw.wait_until("FXO 1 idle", Duration::from_secs(5), || fxo_state(&gw) == "Idle");
}

#[test]
fn two_phones_racing_for_the_one_pstn_line_one_gets_it_the_other_hears_reorder() {
    let gw = start();
    let sim = gw.attach();
    let (p1, p2, co) = (sim.phone(0), sim.phone(1), sim.co(sim.fxo_ports()[0]));
    for p in [&p1, &p2] {
        p.off_hook();
        p.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    }
    let other = std::thread::spawn({
        let p2 = p2.clone();
        move || p2.dial("95550002").unwrap()
    });
    p1.dial("95550001").unwrap();
    other.join().unwrap();
    co.wait_seized(Duration::from_secs(8)).expect("one call seizes the line");
    let digits = co.wait_digits(7, Duration::from_secs(10)).unwrap();
    let (winner, loser) = if digits == "5550001" { (&p1, &p2) } else { (&p2, &p1) };
    assert!(digits == "5550001" || digits == "5550002", "{digits}");
    loser.wait_for_tone(&plans::US_REORDER, Duration::from_secs(5)).expect("the other caller hears reorder (no circuit)");
    co.answer(true).unwrap();
    let n = if std::ptr::eq(winner, &p1) { 1 } else { 2 };
    gw.wait_until("the winner connected", Duration::from_secs(5), || gw.port_state(n) == "Connected");
    p1.on_hook();
    p2.on_hook();
    co.wait_released(Duration::from_secs(3)).expect("released");
    gw.wait_until("FXO 1 idle", Duration::from_secs(5), || fxo_state(&gw) == "Idle");
}

#[test]
fn an_emergency_call_takes_the_busy_pstn_line_from_an_ordinary_call() {
    let gw = start();
    let sim = gw.attach();
    let (p1, p2, co) = (sim.phone(0), sim.phone(1), sim.co(sim.fxo_ports()[0]));
    off_hook_and_dial(&p1, "95550001");
    co.wait_seized(Duration::from_secs(8)).expect("seized");
    assert_eq!(co.wait_digits(7, Duration::from_secs(10)).unwrap(), "5550001");
    co.answer(true).unwrap();
    gw.wait_until("phone 1 connected", Duration::from_secs(5), || gw.port_state(1) == "Connected");
    // Phone 2 dials 911 with the only line busy.
    off_hook_and_dial(&p2, "911");
    co.wait_released(Duration::from_secs(8)).expect("the ordinary call's line is released");
    p1.wait_for_tone(&plans::US_REORDER, Duration::from_secs(5)).expect("the preempted caller hears reorder");
    co.wait_seized(Duration::from_secs(5)).expect("the emergency call seizes the line");
    let digits = co.wait_digits(3, Duration::from_secs(10)).unwrap();
    assert!(digits.ends_with("911"), "{digits}");
    let st = gw.status().unwrap();
    assert_eq!(st["calls"]["preempted"], 1, "{st}");
    p1.on_hook();
    p2.on_hook();
}

#[test]
fn a_pstn_call_reaches_a_sip_peer_with_the_callers_number_and_name_in_from() {
    use hil::{free_udp_port_range, sipp_scenario, Sipp};
    let uas_port = free_udp_port();
    let (rtp, _) = free_udp_port_range(4);
    let extra = EXTRA.replace("inbound = \"1001\"", "inbound = \"3000\"").replace(
        "[[group]]\nname = \"phones\"",
        &format!(
            "[[trunk]]\nname = \"peer\"\nproxy = \"127.0.0.1:{uas_port}\"\noptions_interval_s = 0\n\n\
             [[route]]\nname = \"pstn-in\"\nfrom = [\"pstn\"]\ncalled = [\"3000\"]\nto = [{{ trunk = \"peer\" }}]\n\n\
             [[group]]\nname = \"phones\""
        ),
    );
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, ..GwOptions::default() });
    let uas = Sipp::spawn(
        &sipp_scenario("uas.xml"),
        &["-m", "1", "-i", "127.0.0.1", "-p", &uas_port.to_string(), "-mp", &rtp.to_string(), "-rtp_echo"],
        &[],
    )
    .expect("sipp starts");
    let sim = gw.attach();
    let co = sim.co(sim.fxo_ports()[0]);
    co.send_caller_id(Standard::Bell202, "5551234", "PSTN CALLER").unwrap();
    co.wait_seized(Duration::from_secs(15)).expect("the SIP peer answered and the line is seized");
    // The peer echoes what it gets: the exchange hears its own tone back.
    co.play_tone(1004.0, -10.0).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let m = co.measure(Duration::from_millis(800)).unwrap();
    co.stop_playback().unwrap();
    assert!((m.freq_hz - 1004.0).abs() < 10.0, "the exchange hears {m:?}");
    co.disconnect(Disconnect::Cpc { ms: 600 }).unwrap();
    co.wait_released(Duration::from_secs(3)).expect("released");
    let out = uas.wait(Duration::from_secs(10));
    assert!(out.success(), "the peer got INVITE, ACK and BYE: {}", out.messages);
    assert!(out.messages.contains("From: \"PSTN CALLER\" <sip:5551234@"), "{}", out.messages);
}

#[test]
fn a_line_set_to_pulse_dialling_dials_with_loop_breaks() {
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let extra = EXTRA.replace("inbound = \"1001\"", "inbound = \"1001\"\ndial = \"pulse\"");
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, ..GwOptions::default() });
    let sim = gw.attach();
    let (phone, co) = (sim.phone(0), sim.co(sim.fxo_ports()[0]));
    off_hook_and_dial(&phone, "9301");
    co.wait_seized(Duration::from_secs(8)).expect("seized");
    assert_eq!(co.wait_digits(3, Duration::from_secs(10)).unwrap(), "301", "pulse digits collected by the exchange");
    assert!(co.is_seized(), "the dial pulses are no release");
    co.answer(true).unwrap();
    gw.wait_until("phone 1 connected", Duration::from_secs(5), || gw.port_state(1) == "Connected");
    phone.on_hook();
    co.wait_released(Duration::from_secs(3)).expect("released");
}

/// White noise at `dbm0`, `secs` long (a speech-band stand-in the canceller can learn from).
fn noise(dbm0: f32, secs: f32) -> Vec<i16> {
    let mut x: u32 = 0x1234_5678;
    let raw: Vec<f32> = (0..(secs * 8000.0) as usize)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect();
    let rms = (raw.iter().map(|v| v * v).sum::<f32>() / raw.len() as f32).sqrt();
    let target = 22826.0 / 2f32.sqrt() * 10f32.powf(dbm0 / 20.0);
    raw.iter().map(|v| (v / rms * target) as i16).collect()
}

#[test]
fn the_line_echo_of_a_pstn_line_is_cancelled() {
    use linesim::{EchoPath, HybridModel};
    // D.5 after a 50 ms bulk delay passed at 50-54 dB and failed once at -1.2 dB
    // (nothing cancelled) on the loaded CI machine. The canceller sees the line's
    // delay plus the sim card's receive queue, which grows by a frame at each rx
    // underrun (the rt thread late) up to 8 frames (hal/src/sim.rs): with 75 ms or
    // more of it, D.5 at 50 ms leaves the 128 ms tail, and the canceller passes the
    // echo unchanged (gw-dsp test
    // fxo_white_noise_echo_is_cancelled_anywhere_in_the_tail_and_left_alone_beyond_it).
    // D.2 at 20 ms fits whatever the queue. A sim card that keeps its receive
    // latency constant (dropping the late frame an underrun replaced) was tried: on
    // the loaded machine the 2-frame queue then never grows to absorb the jitter and
    // hundreds of frames are lost, so the growing queue stays and D.5 at 50 ms stays
    // out of this test (issue 12).
    for (model, delay) in [(HybridModel::D2, 20)] {
        let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let opts = GwOptions { register_expires: 0, echo_tail_ms: 128, extra: EXTRA.into(), ..GwOptions::default() };
        let gw = Gatewayd::start(nobody, opts);
        let sim = gw.attach();
        let (phone, co) = (sim.phone(0), sim.co(sim.fxo_ports()[0]));
        // The exchange's hybrid returns the phone's speech 6 dB down.
        co.set_echo(Some(EchoPath { delay_ms: delay, erl_db: 6.0, model })).unwrap();
        co.ring(&[]).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while !phone.is_ringing() {
            assert!(Instant::now() < end, "phone 1 does not ring");
            std::thread::sleep(Duration::from_millis(20));
        }
        phone.off_hook();
        co.wait_seized(Duration::from_secs(3)).expect("seized");
        gw.wait_until("FXO 1 connected", Duration::from_secs(3), || fxo_state(&gw) == "Connected");
        let talk = noise(-15.0, 8.0);
        let sent = hil::level_dbm0(&talk);
        phone.play_samples(talk, true);
        std::thread::sleep(Duration::from_secs(4));
        let heard = hil::level_dbm0(&phone.record(Duration::from_secs(2)).unwrap());
        phone.stop_playback();
        let erle = sent - 6.0 - heard;
        // The rt thread's late ticks and rx underruns: each underrun adds 10 ms to the
        // echo delay the canceller sees.
        let rt = gw.status().map(|s| s["rt"].clone()).unwrap_or_default();
        eprintln!(
            "{model:?}, {delay} ms: the phone sends {sent:.1} dBm0, hears {heard:.1} dBm0 of its echo: ERLE {erle:.1} dB \
             (rt: {} missed ticks, {} rx underruns)",
            rt["deadline_misses"], rt["pcm_rx_underruns"]
        );
        assert!(erle >= 20.0, "{model:?}: ERLE {erle:.1} dB on the PSTN line (rt: {rt})");
        phone.on_hook();
        co.wait_released(Duration::from_secs(3)).expect("released");
    }
}

#[test]
fn an_emergency_call_goes_to_the_pstn_line_while_the_carrier_is_up() {
    let far_tone = hil::tone(1400.0, -12.0, 1.0).unwrap();
    let w = common::World::start(GwOptions { extra: EXTRA.into(), ..GwOptions::default() }, None, &far_tone);
    let sim = w.gw.attach();
    let (phone, co) = (sim.phone(0), sim.co(sim.fxo_ports()[0]));
    off_hook_and_dial(&phone, "911");
    co.wait_seized(Duration::from_secs(8)).expect("911 seizes the PSTN line although the carrier is registered");
    assert_eq!(co.wait_digits(3, Duration::from_secs(10)).unwrap(), "911");
    co.answer(true).unwrap();
    w.gw.wait_until("phone 1 connected", Duration::from_secs(5), || w.gw.port_state(1) == "Connected");
    phone_and_co_talk(&phone, &co);
    assert!(!w.kamailio.log().contains("INVITE sip:911"), "911 did not go to the carrier");
    phone.on_hook();
    co.wait_released(Duration::from_secs(3)).expect("released");
}
