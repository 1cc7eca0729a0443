//! ISDN spans on the sim board (issue 10 items 2, 3, 5): gatewayd is TE on the
//! BRI against linesim's NT (a carrier) and NT on the E1 PRI against linesim's
//! TE (a PBX). Layer 1 comes up, layer 2 establishes (SABME/UA) on both,
//! `show isdn` and `/api/status` say so; linesim pulls layer 1 on the PRI
//! (LOS) and gatewayd shows it down with layer 2 released, and establishes it
//! again when the line returns; a frame with a bad FCS is counted and
//! dropped; layer 2 dropped by the far end comes back; Q.931 messages reach
//! gatewayd; the D-channel captures (one from the configuration, one from
//! the console) decode in tshark as LAPD and Q.931 with nothing malformed.
//! Every wait is bounded (10 s at most).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Gatewayd, GwOptions};
use hil::free_udp_port;
use linesim::IsdnSpan;

const WAIT: Duration = Duration::from_secs(10);

fn start(bri_capture: &Path) -> Gatewayd {
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let extra = format!(
        "[[span]]\nname = \"carrier\"\nindex = 0\nkind = \"bri\"\nrole = \"te\"\ncapture = \"{}\"\n\n\
         [[span]]\nname = \"pbx\"\nindex = 1\nkind = \"pri\"\nrole = \"nt\"\nchannels = [1, 2, 3, 17]\n",
        bri_capture.display()
    );
    Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, ..GwOptions::default() })
}

fn span_status(gw: &Gatewayd, i: usize) -> serde_json::Value {
    gw.status().expect("status")["isdn"][i].clone()
}

fn l2_up(gw: &Gatewayd, i: usize) -> bool {
    span_status(gw, i)["l2_up"].as_bool() == Some(true)
}

fn counter(gw: &Gatewayd, i: usize, name: &str) -> u64 {
    span_status(gw, i)["counters"][name].as_u64().unwrap_or(0)
}

/// tshark's one-line summaries and the protocol stack of every frame of `pcap`.
fn tshark(pcap: &Path) -> (String, Vec<String>) {
    let summary = Command::new("tshark").arg("-r").arg(pcap).output().expect("tshark runs");
    assert!(summary.status.success(), "tshark -r: {}", String::from_utf8_lossy(&summary.stderr));
    let fields = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-T", "fields", "-e", "frame.protocols"])
        .output()
        .expect("tshark runs");
    let protocols = String::from_utf8_lossy(&fields.stdout).lines().map(str::to_string).collect();
    (String::from_utf8_lossy(&summary.stdout).into_owned(), protocols)
}

fn check_capture(pcap: &Path, min_frames: usize, min_q931: usize) {
    let (summary, protocols) = tshark(pcap);
    eprintln!("--- {} ---\n{summary}", pcap.display());
    assert!(protocols.len() >= min_frames, "{} frames in {}:\n{summary}", protocols.len(), pcap.display());
    assert!(protocols.iter().all(|p| p.contains("lapd")), "a frame is not LAPD:\n{protocols:?}");
    let q931 = protocols.iter().filter(|p| p.contains("q931")).count();
    assert!(q931 >= min_q931, "{q931} Q.931 frames, want {min_q931}:\n{summary}");
    assert!(!summary.contains("Malformed"), "tshark finds a malformed frame:\n{summary}");
}

fn wait_linesim_l2(span: &IsdnSpan, up: bool) {
    span.wait_l2(up, WAIT).unwrap_or_else(|e| panic!("linesim span {span:?}: layer 2 {}: {e}", if up { "up" } else { "down" }));
}

#[test]
fn layer_2_comes_up_on_both_spans_survives_bad_frames_and_follows_layer_1() {
    let dir = tempfile::tempdir().unwrap();
    let bri_pcap = dir.path().join("bri.pcap");
    let pri_pcap = dir.path().join("pri.pcap");
    let gw = start(&bri_pcap);
    // Before linesim: no far end, layer 1 down (the E1 with LOS).
    let st = span_status(&gw, 1);
    assert_eq!((st["l1"].as_str(), st["alarms"].as_str(), st["l2_up"].as_bool()), (Some("deactivated"), Some("LOS"), Some(false)));

    let sim = gw.attach();
    let (bri, pri) = (sim.span(0), sim.span(1));
    bri.wait_present(WAIT).unwrap();
    pri.wait_present(WAIT).unwrap();
    assert_eq!(bri.plays().unwrap(), linesim::Side::Nt, "linesim is the carrier on the BRI");
    assert_eq!(pri.plays().unwrap(), linesim::Side::Te, "linesim is the PBX on the PRI");
    // Start the PRI capture from the console before layer 2 comes up, if it can.
    let reply = gw.console(&[&format!("capture isdn pbx {}", pri_pcap.display()), "capture isdn nosuch /tmp/x.pcap"]);
    assert!(reply[0].contains("capturing span pbx"), "{reply:?}");
    assert!(reply[1].contains("no span \"nosuch\""), "{reply:?}");

    wait_linesim_l2(&bri, true);
    wait_linesim_l2(&pri, true);
    gw.wait_until("layer 2 up on both spans", WAIT, || l2_up(&gw, 0) && l2_up(&gw, 1));
    let show = gw.console(&["show isdn"]).remove(0);
    eprintln!("{show}");
    assert!(show.contains("span carrier (BRI 1): BRI TE PTP, euroisdn, clock line"), "{show}");
    assert!(show.contains("span pbx (PRI 1): PRI NT PTP, euroisdn, clock internal"), "{show}");
    assert_eq!(show.matches("layer 1: activated, alarms none").count(), 2, "{show}");
    assert_eq!(show.matches("layer 2: multiple-frame-established (TEI 0)\n").count(), 2, "{show}");
    assert!(show.contains("B-channels: 1:idle 2:idle 3:idle 4:unused"), "{show}");
    let st = span_status(&gw, 1);
    assert_eq!(st["b_channels"].as_array().map(Vec::len), Some(30));
    assert_eq!(st["b_channels"][15]["number"].as_u64(), Some(17));
    assert_eq!(st["b_channels"][15]["timeslot"].as_u64(), Some(23));

    // Q.931 from each far end reaches gatewayd's layer 3 intact.
    pri.send_setup(1, "1001", Some("5551234"), Some(1)).unwrap();
    bri.send_setup(1, "1002", Some("5559876"), None).unwrap();
    gw.wait_until("the SETUPs arrive", WAIT, || counter(&gw, 0, "q931_in") >= 1 && counter(&gw, 1, "q931_in") >= 1);
    assert_eq!((counter(&gw, 0, "q931_bad"), counter(&gw, 1, "q931_bad")), (0, 0));

    // A frame with a bad FCS is counted below the HAL and changes nothing.
    let sabme = [0x00, 0x01, 0x7F];
    bri.send_raw_frame(&sabme, false).unwrap();
    bri.send_raw_frame(&sabme, false).unwrap();
    gw.wait_until("bad FCS counted", WAIT, || counter(&gw, 0, "bad_fcs") == 2);
    std::thread::sleep(Duration::from_millis(300));
    assert!(l2_up(&gw, 0));
    assert_eq!(counter(&gw, 0, "l2_establishments"), 1, "a bad frame did not reset layer 2");
    assert_eq!(bri.stats().unwrap().bad_fcs, 0, "gatewayd's frames all check");

    // linesim pulls layer 1 on the PRI: LOS, layer 2 released at once.
    pri.pull_l1().unwrap();
    gw.wait_until("the PRI down", WAIT, || {
        let st = span_status(&gw, 1);
        st["l1"] == "deactivated" && st["alarms"] == "LOS" && st["l2_up"] == false
    });
    assert_eq!(counter(&gw, 1, "l1_losses"), 1);
    assert!(counter(&gw, 1, "l2_losses") >= 1);
    let show = gw.console(&["show isdn"]).remove(0);
    assert!(show.contains("layer 1: deactivated, alarms LOS"), "{show}");
    assert!(show.contains("layer 2: tei-assigned (TEI 0) - down"), "{show}");
    assert!(l2_up(&gw, 0), "the BRI is not affected");
    // The line returns: layer 2 is established again.
    std::thread::sleep(Duration::from_millis(500));
    pri.restore_l1().unwrap();
    wait_linesim_l2(&pri, true);
    gw.wait_until("the PRI back", WAIT, || l2_up(&gw, 1));
    assert_eq!(counter(&gw, 1, "l2_establishments"), 2);

    // The carrier drops layer 2 (DISC): gatewayd establishes it again.
    bri.drop_l2().unwrap();
    gw.wait_until("the BRI released", WAIT, || counter(&gw, 0, "l2_losses") >= 1);
    wait_linesim_l2(&bri, true);
    gw.wait_until("the BRI back", WAIT, || l2_up(&gw, 0) && counter(&gw, 0, "l2_establishments") == 2);
    // One more Q.931 message on the new link, then the captures stop.
    pri.send_setup(2, "1003", None, Some(17)).unwrap();
    gw.wait_until("the SETUP arrives", WAIT, || counter(&gw, 1, "q931_in") >= 2);
    assert!(gw.console(&["capture stop"])[0].contains("D-channel captures stop"));
    gw.wait_until("captures stopped", WAIT, || span_status(&gw, 0)["capture"].is_null());
    let rt = &gw.status().unwrap()["rt"];
    eprintln!("rt: {rt}");

    check_capture(&bri_pcap, 6, 1);
    check_capture(&pri_pcap, 6, 2);
}

#[test]
fn a_span_the_board_does_not_have_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    let text = format!(
        "{}\n[[span]]\nname = \"x\"\nindex = 0\nkind = \"pri\"\nrole = \"te\"\n",
        String::from_utf8(Command::new(hil::gatewayd_binary()).arg("--print-default-config").output().unwrap().stdout).unwrap()
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(hil::gatewayd_binary())
        .arg("--config")
        .arg(&path)
        .arg("--sim-listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("span[0].kind: board span 0 (BRI 1) is a bri, not a pri"), "{err}");
}
