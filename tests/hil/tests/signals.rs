//! Signal detection and generation end to end: caller ID to the phones, the
//! far end's busy tone ending a call, fax tones switching a call to
//! voice-band data. gatewayd on the sim board, linesim phones, Kamailio as
//! the carrier, baresip as the far end, all on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{Gatewayd, GwOptions, World};
use linesim::plans;

/// Kamailio, gatewayd with `opts`, and far end 2000 sending `far_audio`.
fn world(opts: GwOptions, far_audio: &[i16]) -> World {
    World::start(opts, None, far_audio)
}

fn world_as(opts: GwOptions, far_name: Option<&str>, far_audio: &[i16]) -> World {
    World::start(opts, far_name, far_audio)
}

/// `seconds` of a cadenced dual tone: `on_ms` of `f1 + f2` (each at `dbm0`),
/// `off_ms` of silence.
fn cadenced(f1: f32, f2: f32, dbm0: f32, on_ms: usize, off_ms: usize, seconds: f32) -> Vec<i16> {
    let a = hil::tone(f1, dbm0, seconds).unwrap();
    let b = hil::tone(f2, dbm0, seconds).unwrap();
    let period = (on_ms + off_ms) * 8;
    a.iter()
        .zip(&b)
        .enumerate()
        .map(|(n, (x, y))| if n % period < on_ms * 8 { x.saturating_add(*y) } else { 0 })
        .collect()
}

fn silence(seconds: f32) -> Vec<i16> {
    vec![0; (seconds * 8000.0) as usize]
}

fn counter(gw: &Gatewayd, name: &str) -> u64 {
    gw.status().and_then(|s| s["calls"][name].as_u64()).unwrap_or(0)
}

/// The phone calls the far end, which answers.
fn connect(w: &World, phone: &linesim::Phone) {
    phone.off_hook();
    phone.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    phone.dial("2000").unwrap();
    w.far.wait_established(Duration::from_secs(10)).expect("far end answers");
    w.gw.wait_until("port 1 connected", Duration::from_secs(5), || w.gw.port_state(1) == "Connected");
}

#[test]
fn far_end_busy_tone_hangs_up_the_call() {
    // A far end that answers, talks (a 1 s 1004 Hz tone) then plays the US
    // busy tone forever instead of sending BYE: an old PSTN gateway whose
    // caller hung up.
    let mut audio = hil::tone(1004.0, -15.0, 1.0).unwrap();
    audio.extend(cadenced(480.0, 620.0, -20.0, 500, 500, 20.0));
    let w = world(GwOptions::default(), &audio);
    let sim = w.gw.attach();
    let phone = sim.phone(0);
    connect(&w, &phone);

    let reason = w.far.wait_call_closed(Duration::from_secs(15)).expect("gatewayd hangs up on the busy tone");
    assert!(reason.contains("peer") || reason.contains("BYE"), "close reason: {reason}");
    phone.wait_for_tone(&plans::US_REORDER, Duration::from_secs(5)).expect("the phone gets reorder");
    assert_eq!(counter(&w.gw, "disconnected_on_tone"), 1);
    assert!(w.gw.log().contains("far end plays a disconnect tone"), "{}", w.gw.log());
    phone.on_hook();
    w.gw.wait_until("port 1 idle", Duration::from_secs(5), || w.gw.port_state(1) == "Idle");
}

#[test]
fn busy_tone_hang_up_can_be_turned_off() {
    let audio = cadenced(480.0, 620.0, -20.0, 500, 500, 20.0);
    let w = world(GwOptions { disconnect_on_busy_tone: false, ..GwOptions::default() }, &audio);
    let sim = w.gw.attach();
    let phone = sim.phone(0);
    connect(&w, &phone);
    // The phone hears the busy tone through, and the call stays up.
    phone.wait_for_tone(&plans::US_BUSY, Duration::from_secs(8)).expect("busy tone passed through");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.gw.port_state(1), "Connected");
    assert_eq!(counter(&w.gw, "disconnected_on_tone"), 0);
    let st = w.gw.status().unwrap();
    assert_eq!(st["ports"][0]["signals"]["network_progress_tone"], "busy", "{st}");
    phone.on_hook();
    w.far.wait_call_closed(Duration::from_secs(5)).expect("call ends on the phone's hang-up");
}

#[test]
fn fax_tones_switch_the_call_to_voice_band_data() {
    // The far end is a fax answering: CED (2100 Hz) for 3 s, then silence.
    let mut audio = hil::tone(2100.0, -12.0, 3.0).unwrap();
    audio.extend(silence(10.0));
    let w = world(GwOptions::default(), &audio);
    let sim = w.gw.attach();
    let phone = sim.phone(0);
    // The phone side is a fax calling: CNG, 0.5 s of 1100 Hz every 3.5 s.
    let mut cng = hil::tone(1100.0, -10.0, 0.5).unwrap();
    cng.extend(silence(3.0));
    connect(&w, &phone);
    phone.play_samples(cng, true);

    w.gw.wait_until("both fax tones recognised", Duration::from_secs(10), || {
        let log = w.gw.log();
        log.contains("fax/modem tone") && log.contains("tone=Cng") && log.contains("tone=Ans")
    });
    let st = w.gw.status().unwrap();
    assert_eq!(st["ports"][0]["signals"]["vbd"], true, "{st}");
    assert!(counter(&w.gw, "modem_tones") >= 2);
    // Voice-band data ends with the call.
    phone.stop_playback();
    phone.on_hook();
    w.far.wait_call_closed(Duration::from_secs(5)).expect("call ends");
    w.gw.wait_until("voice-band data cleared", Duration::from_secs(5), || {
        w.gw.status().is_some_and(|s| s["ports"][0]["signals"]["vbd"] == false)
    });
}

/// Month and day of now (UTC), as caller ID's "MMDD", from the system's `date`
/// (not from the gateway's own calendar code).
fn utc_mmdd() -> String {
    let out = std::process::Command::new("date").args(["-u", "+%m%d"]).output().expect("date runs");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn caller_id_bell202_between_first_and_second_ring() {
    let w = world_as(GwOptions::default(), Some("Alice Example"), &silence(1.0));
    let sim = w.gw.attach();
    let phone = sim.phone(0);
    w.far.dial("1001").unwrap();
    let cid = phone.wait_caller_id(Duration::from_secs(15)).expect("caller ID on the line");
    eprintln!("caller ID: {cid:?}");
    assert_eq!(cid.standard, linesim::Standard::Bell202);
    assert_eq!(cid.kind, linesim::MessageType::Mdmf);
    assert_eq!(cid.fields.number.as_deref(), Some("2000"));
    assert_eq!(cid.fields.name.as_deref(), Some("Alice Example"));
    let dt = cid.fields.date_time.clone().expect("date and time");
    assert_eq!(dt.len(), 8);
    let today = utc_mmdd();
    assert!(dt.starts_with(&today) || dt.ends_with("2359") || dt.ends_with("0000"), "date {dt}, today {today}");
    // Telcordia GR-30: after the first ring (the 2 s of the US cadence), at
    // least 500 ms before the data and 200 ms after it before the second ring.
    let ring = cid.ring_before_ms.expect("a ring before the data");
    assert!((1950.0..=2050.0).contains(&ring), "first ring {ring} ms");
    let before = cid.ring_end_to_data_ms.unwrap();
    assert!((500.0..=700.0).contains(&before), "ring to data {before} ms");
    let after = cid.data_end_to_ring_ms.expect("the second ring after the data");
    assert!(after >= 200.0, "data to ring {after} ms");
    // The second ring keeps the cadence: 4 s after the first ring ended.
    let gap = before + (cid.data_end_ms - cid.data_start_ms) + after;
    assert!((3950.0..=4050.0).contains(&gap), "pause between the rings {gap} ms");

    phone.off_hook();
    w.far.wait_established(Duration::from_secs(5)).expect("the phone answers after caller ID");
    assert_eq!(counter(&w.gw, "caller_id_sent"), 1);
    phone.on_hook();
    w.far.wait_call_closed(Duration::from_secs(5)).expect("call ends");
}

#[test]
fn caller_id_etsi_dt_as_before_the_first_ring() {
    let opts = GwOptions { country: "UK", ..GwOptions::default() };
    let w = world_as(opts, Some("Bob"), &silence(1.0));
    let sim = w.gw.attach();
    let phone = sim.phone(0);
    w.far.dial("1001").unwrap();
    let cid = phone.wait_caller_id(Duration::from_secs(15)).expect("caller ID on the line");
    eprintln!("caller ID: {cid:?}");
    assert_eq!(cid.standard, linesim::Standard::V23);
    assert_eq!(cid.fields.number.as_deref(), Some("2000"));
    assert_eq!(cid.fields.name.as_deref(), Some("Bob"));
    // EN 300 659-1 5.3.1: line reversal, DT-AS (100 ms), data, then the
    // first ring (>= 200 ms after the data); no ring before it.
    assert_eq!(cid.ring_before_ms, None, "no ring before the data");
    let dt_as = cid.dt_as.as_ref().expect("DT-AS before the data");
    assert!((80.0..=120.0).contains(&dt_as.duration_ms), "DT-AS {} ms", dt_as.duration_ms);
    assert!((45.0..=500.0).contains(&dt_as.end_to_data_ms), "DT-AS to data {} ms", dt_as.end_to_data_ms);
    let rev = cid.reversal_to_data_ms.expect("a line reversal before the data");
    assert!(rev >= 100.0 + dt_as.duration_ms, "reversal to data {rev} ms");
    let after = cid.data_end_to_ring_ms.expect("ringing after the data");
    assert!(after >= 200.0, "data to ring {after} ms");
    assert_eq!(phone.feed(), linesim::LineFeed::Forward, "polarity restored for ringing");

    phone.off_hook();
    w.far.wait_established(Duration::from_secs(5)).expect("the phone answers");
    phone.on_hook();
    w.far.wait_call_closed(Duration::from_secs(5)).expect("call ends");
}

#[test]
fn caller_id_off_rings_at_once() {
    let w = world(GwOptions { caller_id: "off", ..GwOptions::default() }, &silence(1.0));
    let sim = w.gw.attach();
    let phone = sim.phone(0);
    w.far.dial("1001").unwrap();
    assert!(phone.wait_caller_id(Duration::from_secs(9)).is_err(), "no caller ID when it is off");
    let ring = phone.wait_ringing(Duration::from_secs(15)).expect("rings");
    assert!((3950..=4050).contains(&ring.off_ms), "plain US cadence: {ring:?}");
    assert_eq!(counter(&w.gw, "caller_id_sent"), 0);
}
