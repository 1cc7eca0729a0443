//! A whole call built by gw-isdn alone (a user-side and a network-side span
//! back to back on a PRI, in virtual time), captured as a pcap
//! (LINKTYPE_LINUX_LAPD, 177) and read by tshark, an independent decoder:
//! every frame decodes, nothing is malformed, and tshark's Q.931 message
//! types are the ones gw-isdn's own decoder ([`gw_isdn::decode`]) names, in
//! the same order. Without tshark the test says so and passes vacuously;
//! `tools/test` installs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gw_isdn::call::{self, Event, Interface, SetupInfo, Side};
use gw_isdn::decode::decode_frame;
use gw_isdn::q921::Role;
use gw_isdn::q931::PartyNumber;
use gw_isdn::span::{Mode, Span, SpanEvent};

struct Line {
    start: Instant,
    now: Instant,
    te: Span,
    nt: Span,
    te_events: Vec<Event>,
    nt_events: Vec<Event>,
    /// (time, sent by the network side, frame).
    frames: Vec<(Duration, bool, Vec<u8>)>,
}

impl Line {
    fn new() -> Line {
        let now = Instant::now();
        let te = Span::new(call::Config::new(Side::User, Interface::Pri, &call::EUROISDN), Mode::PointToPoint, 7);
        let nt = Span::new(call::Config::new(Side::Network, Interface::Pri, &call::EUROISDN), Mode::PointToPoint, 8);
        let mut l = Line { start: now, now, te, nt, te_events: vec![], nt_events: vec![], frames: vec![] };
        l.nt.start(now);
        l.te.start(now);
        l.run();
        l
    }

    fn run(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            while let Some(f) = self.te.poll_transmit() {
                moved = true;
                self.frames.push((self.now - self.start, false, f.clone()));
                self.nt.handle_frame(self.now, &f);
            }
            while let Some(f) = self.nt.poll_transmit() {
                moved = true;
                self.frames.push((self.now - self.start, true, f.clone()));
                self.te.handle_frame(self.now, &f);
            }
            for (span, out) in [(&mut self.te, &mut self.te_events), (&mut self.nt, &mut self.nt_events)] {
                while let Some(e) = span.poll_event() {
                    if let SpanEvent::Call(c) = e {
                        out.push(c);
                    }
                }
            }
            if !moved {
                return;
            }
            self.now += Duration::from_millis(3);
        }
    }

    fn te<R>(&mut self, f: impl FnOnce(&mut call::CallControl, Instant) -> R) -> R {
        let r = self.te.request(self.now, f);
        self.run();
        r
    }

    fn nt<R>(&mut self, f: impl FnOnce(&mut call::CallControl, Instant) -> R) -> R {
        let r = self.nt.request(self.now, f);
        self.run();
        r
    }

    /// The capture as the gateway's TE span would write it.
    fn write_pcap(&self, path: &Path) {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&177u32.to_le_bytes());
        for (at, from_network, frame) in &self.frames {
            let mut rec = Vec::new();
            // Sent by us (the user side): outgoing (4); else to us (0).
            rec.extend_from_slice(&(if *from_network { 0u16 } else { 4 }).to_be_bytes());
            rec.extend_from_slice(&8445u16.to_be_bytes()); // ARPHRD_LAPD
            rec.extend_from_slice(&1u16.to_be_bytes());
            rec.extend_from_slice(&[0u8; 8]); // the capturing end is the user side
            rec.extend_from_slice(&0x0030u16.to_be_bytes()); // ETH_P_LAPD
            rec.extend_from_slice(frame);
            let at = Duration::from_secs(1_764_900_000) + *at;
            out.extend_from_slice(&(at.as_secs() as u32).to_le_bytes());
            out.extend_from_slice(&at.subsec_micros().to_le_bytes());
            out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            out.extend_from_slice(&rec);
        }
        std::fs::File::create(path).unwrap().write_all(&out).unwrap();
    }
}

fn number(ton: u8, pres: Option<u8>, digits: &str) -> PartyNumber {
    PartyNumber { type_of_number: ton, plan: 1, presentation: pres, screening: 0, reason: None, digits: digits.into() }
}

/// SETUP .. CONNECT ACKNOWLEDGE .. DISCONNECT, RELEASE, RELEASE COMPLETE.
fn whole_call(l: &mut Line) {
    let info = SetupInfo {
        called: Some(number(2, None, "301234567")),
        calling: Some(number(2, Some(1), "307654321")),
        channel: Some(5),
        exclusive: true,
        sending_complete: true,
        display: Some(b"Branch office".to_vec()),
        ..Default::default()
    };
    let c = l.te(|cc, now| cc.setup(now, info)).expect("setup");
    let nc = l.nt_events.iter().find_map(|e| if let Event::Setup { call, .. } = e { Some(*call) } else { None }).expect("SETUP arrived");
    l.nt(|cc, now| cc.proceeding(now, nc)).unwrap();
    l.nt(|cc, now| cc.progress(now, nc, 8)).unwrap();
    l.nt(|cc, now| cc.alerting(now, nc)).unwrap();
    l.nt(|cc, now| cc.connect(now, nc)).unwrap();
    assert!(l.te_events.contains(&Event::Connected { call: c }), "{:?}", l.te_events);
    // The far end is busy after all... no: it hangs up, user busy.
    l.nt(|cc, now| cc.disconnect(now, nc, 17)).unwrap();
    assert!(
        l.te_events.iter().any(|e| matches!(e, Event::Disconnect { call, cause: 17, .. } if *call == c)),
        "{:?}",
        l.te_events
    );
    l.te(|cc, now| cc.release(now, c, 16)).ok();
    l.run();
    assert!(l.te.cc.busy_channels().is_empty() && l.nt.cc.busy_channels().is_empty());
}

#[test]
fn a_whole_call_decodes_in_tshark_as_in_our_decoder() {
    let mut l = Line::new();
    whole_call(&mut l);
    // Our decoder: every frame readable, nothing malformed; the message types in order.
    let mut ours = Vec::new();
    for (_, from_network, f) in &l.frames {
        let d = decode_frame(f, Some(if *from_network { Role::Network } else { Role::User }));
        let all = format!("{d:#}");
        assert!(!all.contains("malformed") && !all.contains("truncated"), "{all}");
        if let Some(at) = d.summary.find("; Q.931 ") {
            let rest = &d.summary[at + 8..];
            let end = rest.find(" cref").or_else(|| rest.find(" global")).unwrap_or(rest.len());
            ours.push(rest[..end].to_string());
        }
    }
    for want in ["SETUP", "CALL PROCEEDING", "PROGRESS", "ALERTING", "CONNECT", "CONNECT ACKNOWLEDGE", "DISCONNECT", "RELEASE", "RELEASE COMPLETE"] {
        assert!(ours.iter().any(|m| m == want), "{want} not in {ours:?}");
    }
    let pcap = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gw-isdn-whole-call.pcap");
    l.write_pcap(&pcap);
    let out = match Command::new("tshark").arg("-r").arg(&pcap).arg("-V").output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP tshark check: no tshark ({e})");
            return;
        }
    };
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Malformed") && !text.contains("Expert Info (Error"), "tshark found malformed frames:\n{text}");
    let decoded = text.matches("\nFrame ").count() + text.starts_with("Frame ") as usize;
    assert_eq!(decoded, l.frames.len(), "every frame decoded");
    // tshark: "Message type: CALL PROCEEDING (0x02)".
    let theirs: Vec<String> = text
        .lines()
        .filter_map(|s| s.trim().strip_prefix("Message type: "))
        .filter_map(|s| s.rsplit_once(" (0x").map(|(name, _)| name.to_string()))
        .collect();
    assert_eq!(theirs, ours, "tshark and gw-isdn name the same messages in the same order");
    for want in ["301234567", "307654321", "Branch office", "User busy"] {
        assert!(text.contains(want), "tshark shows {want:?}:\n{text}");
    }
}
