//! `debug isdn` against linesim's carrier (issue 10 item 5): a console
//! session that asked for `debug isdn carrier` gets gatewayd's BRI D-channel
//! frames, in and out, decoded: our SABME and the carrier's UA as layer 2
//! comes up, the carrier's SETUP with its numbers; `undebug isdn` stops them;
//! a span that does not exist is refused. Every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Gatewayd, GwOptions};
use hil::free_udp_port;

const WAIT: Duration = Duration::from_secs(10);

/// Reads the session until `want` has come (or panics with what came).
fn read_until(s: &mut TcpStream, got: &mut String, want: &str) {
    let end = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while !got.contains(want) {
        assert!(Instant::now() < end, "no {want:?} on the console; got:\n{got}");
        match s.read(&mut buf) {
            Ok(0) => panic!("console closed; got:\n{got}"),
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("console: {e}"),
        }
    }
}

#[test]
fn debug_isdn_streams_the_spans_frames_decoded_until_undebug() {
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let extra = "[[span]]\nname = \"carrier\"\nindex = 0\nkind = \"bri\"\nrole = \"te\"\n".to_string();
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, ..GwOptions::default() });

    let mut s = TcpStream::connect(gw.console).expect("console connects");
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut got = String::new();
    read_until(&mut s, &mut got, "> ");
    writeln!(s, "debug isdn nosuch").unwrap();
    read_until(&mut s, &mut got, "error: no span \"nosuch\" (spans: carrier)");
    writeln!(s, "debug isdn carrier").unwrap();
    read_until(&mut s, &mut got, "debugging the D channel of span carrier");
    got.clear();

    // linesim plays the carrier (NT): layer 2 comes up, and the session sees it.
    let sim = gw.attach();
    let bri = sim.span(0);
    bri.wait_present(WAIT).unwrap();
    bri.wait_l2(true, WAIT).unwrap();
    read_until(&mut s, &mut got, "isdn carrier in  UA F=1, SAPI 0 TEI 0 response");
    assert!(got.contains("isdn carrier out SABME P=1, SAPI 0 TEI 0 command"), "{got}");
    assert!(got.contains("Q.921: SAPI 0 (call control), TEI 0, C/R 0 (command from the user side)"), "{got}");
    // Commands still work between the frames.
    writeln!(s, "show isdn").unwrap();
    read_until(&mut s, &mut got, "span carrier (BRI 1): BRI TE PTP");

    // The carrier's SETUP, decoded with its numbers.
    bri.send_setup(1, "1002", Some("5559876"), None).unwrap();
    read_until(&mut s, &mut got, "Q.931 SETUP cref 1 (originator) called \"1002\" calling \"5559876\"");
    read_until(&mut s, &mut got, "Called party number");
    assert!(got.contains("Q.921: SAPI 0 (call control), TEI 0, C/R 1 (command from the network side)"), "{got}");
    assert!(got.contains("IE 0x04 Bearer capability"), "{got}");
    // Time stamped: HH:MM:SS.mmm at the start of each frame's line.
    let line = got.lines().find(|l| l.contains(" isdn carrier in  I ")).expect("the SETUP's line");
    let t = &line[..12];
    assert!(t.as_bytes()[2] == b':' && t.as_bytes()[5] == b':' && t.as_bytes()[8] == b'.', "{line}");

    // undebug: the session goes quiet; another SETUP is not shown.
    writeln!(s, "undebug isdn").unwrap();
    read_until(&mut s, &mut got, "ISDN debugging of carrier stopped");
    got.clear();
    bri.send_setup(2, "1003", None, None).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    writeln!(s, "help").unwrap();
    read_until(&mut s, &mut got, "TAB completes on the serial console.");
    assert!(!got.contains("1003") && !got.contains("isdn carrier"), "nothing after undebug:\n{got}");
}
