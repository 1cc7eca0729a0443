//! Interop with libpri (Asterisk's ISDN stack), a peer nobody here wrote.
//!
//! Each test compiles `tests/libpri/pri_peer.c` with `cc ... -lpri` (once),
//! runs it on one end of a Unix datagram socket pair and gw-isdn's [`Span`]
//! on the other. Frames cross without FCS; the harness can drop frames to
//! exercise T200 recovery. libpri runs on the real clock, so the Rust side
//! feeds `Instant::now()` as its `now`, and each test is bounded.
//!
//! Without libpri-dev (or a C compiler) the tests print why and pass
//! vacuously; `tools/test` installs both so CI runs them for real.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gw_isdn::call::{self, Event, Interface, Link, SetupInfo, Side};
use gw_isdn::lapd::{Control, Repr};
use gw_isdn::q931::PartyNumber;
use gw_isdn::span::{Mode, Span, SpanEvent};

fn peer_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("pri_peer");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/libpri/pri_peer.c");
        let status = Command::new("cc").args(["-O1", "-Wall", "-o"]).arg(&out).arg(&src).arg("-lpri").status();
        match status {
            Ok(s) if s.success() => Some(out),
            Ok(_) => {
                eprintln!("SKIP libpri interop: `cc ... -lpri` failed (is libpri-dev installed? tools/test installs it)");
                None
            }
            Err(e) => {
                eprintln!("SKIP libpri interop: no C compiler ({e})");
                None
            }
        }
    })
    .clone()
}

/// One frame seen on the D channel, for the pcap.
struct Captured {
    at: Duration,
    from_network: bool,
    frame: Vec<u8>,
}

/// One libpri process on its socket.
struct Peer {
    child: Child,
    sock: UnixDatagram,
    events: VecDeque<String>,
}

impl Peer {
    fn spawn(role: &str, kind: &str, switch: &str) -> Option<Peer> {
        let bin = peer_binary()?;
        let (ours, theirs) = UnixDatagram::pair().expect("socketpair");
        ours.set_nonblocking(true).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg(role).arg(kind).env("PRI_PEER_SWITCH", switch);
        if std::env::var_os("PRI_DEBUG").is_some() {
            cmd.arg("debug");
        }
        let child = cmd.stdin(Stdio::from(OwnedFd::from(theirs))).stdout(Stdio::null()).spawn().expect("spawn pri_peer");
        Some(Peer { child, sock: ours, events: VecDeque::new() })
    }
}

struct Harness {
    peers: Vec<Peer>,
    span: Span,
    start: Instant,
    span_events: VecDeque<SpanEvent>,
    /// Drop this many of the next I frames going to libpri / coming from it.
    drop_to_peer: u32,
    drop_from_peer: u32,
    dropped: u32,
    capture: Vec<Captured>,
    we_are_network: bool,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for p in &mut self.peers {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn is_i_frame(f: &[u8]) -> bool {
    matches!(Repr::parse_bytes(f), Ok(Repr { control: Control::I { .. }, .. }))
}

impl Harness {
    /// `peer_role`/`peer_kind` as pri_peer takes them; `cfg` for our side.
    fn new(peer_role: &str, peer_kind: &str, cfg: call::Config, mode: Mode) -> Option<Self> {
        Self::with_peers(peer_role, peer_kind, 1, cfg, mode)
    }

    /// Several libpri TEs on one bus (PTMP): each hears every frame we send.
    fn with_peers(peer_role: &str, peer_kind: &str, n: usize, cfg: call::Config, mode: Mode) -> Option<Self> {
        let switch = cfg.variant.name;
        let peers = (0..n).map(|_| Peer::spawn(peer_role, peer_kind, switch)).collect::<Option<Vec<_>>>()?;
        let we_are_network = cfg.side == Side::Network;
        let mut h = Harness {
            peers,
            span: Span::new(cfg, mode, 0x5eed),
            start: Instant::now(),
            span_events: VecDeque::new(),
            drop_to_peer: 0,
            drop_from_peer: 0,
            dropped: 0,
            capture: Vec::new(),
            we_are_network,
        };
        for k in 0..n {
            h.peer_at(k, "ready", Duration::from_secs(5));
        }
        let now = Instant::now();
        h.span.start(now);
        h.flush();
        Some(h)
    }

    fn flush(&mut self) {
        while let Some(f) = self.span.poll_transmit() {
            if std::env::var_os("PRI_DEBUG").is_some() {
                eprintln!("{:?} -> {:02x?}", self.start.elapsed(), f);
            }
            if self.drop_to_peer > 0 && is_i_frame(&f) {
                self.drop_to_peer -= 1;
                self.dropped += 1;
                continue;
            }
            self.capture.push(Captured { at: self.start.elapsed(), from_network: self.we_are_network, frame: f.clone() });
            let mut d = vec![b'F'];
            d.extend_from_slice(&f);
            for p in &self.peers {
                p.sock.send(&d).expect("send to pri_peer");
            }
        }
        while let Some(e) = self.span.poll_event() {
            self.span_events.push_back(e);
        }
    }

    /// One round: receive what is there (waiting up to 10 ms), run timers.
    fn step(&mut self) {
        let mut buf = [0u8; 1024];
        let mut got = false;
        for k in 0..self.peers.len() {
            while let Ok(n) = self.peers[k].sock.recv(&mut buf) {
                got = true;
                let d = &buf[..n];
                let now = Instant::now();
                match d.first() {
                    Some(b'F') => {
                        let f = &d[1..];
                        if std::env::var_os("PRI_DEBUG").is_some() {
                            eprintln!("{:?} <-{k} {:02x?}", self.start.elapsed(), f);
                        }
                        if self.drop_from_peer > 0 && is_i_frame(f) {
                            self.drop_from_peer -= 1;
                            self.dropped += 1;
                        } else {
                            self.capture.push(Captured { at: self.start.elapsed(), from_network: !self.we_are_network, frame: f.to_vec() });
                            self.span.handle_frame(now, f);
                        }
                    }
                    Some(b'E') => {
                        let line = String::from_utf8_lossy(&d[1..]).into_owned();
                        if std::env::var_os("PRI_DEBUG").is_some() {
                            eprintln!("libpri {k}: {line}");
                        }
                        self.peers[k].events.push_back(line);
                    }
                    _ => {}
                }
                self.flush();
            }
        }
        if !got {
            std::thread::sleep(Duration::from_millis(2));
        }
        let now = Instant::now();
        if self.span.poll_timeout().is_some_and(|t| t <= now) {
            self.span.handle_timeout(now);
        }
        self.flush();
    }

    fn command(&mut self, c: &str) {
        self.command_at(0, c);
    }

    fn command_at(&mut self, k: usize, c: &str) {
        let mut d = vec![b'C'];
        d.extend_from_slice(c.as_bytes());
        self.peers[k].sock.send(&d).expect("send command");
    }

    /// Waits for a libpri event line starting with `prefix`.
    fn peer(&mut self, prefix: &str, within: Duration) -> String {
        self.peer_at(0, prefix, within)
    }

    fn peer_at(&mut self, k: usize, prefix: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            if let Some(i) = self.peers[k].events.iter().position(|l| l.starts_with(prefix)) {
                return self.peers[k].events.remove(i).unwrap();
            }
            assert!(
                Instant::now() < end,
                "no libpri event {prefix:?} from peer {k}; seen {:?}, span {:?}",
                self.peers.iter().map(|p| &p.events).collect::<Vec<_>>(),
                self.span_events
            );
            self.step();
        }
    }

    /// Waits for a call event of ours matching `f`.
    fn ours<T>(&mut self, what: &str, within: Duration, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let end = Instant::now() + within;
        loop {
            let hit = self.span_events.iter().position(|e| matches!(e, SpanEvent::Call(c) if f(c).is_some()));
            if let Some(i) = hit {
                let Some(SpanEvent::Call(c)) = self.span_events.remove(i) else { unreachable!() };
                return f(&c).unwrap();
            }
            assert!(
                Instant::now() < end,
                "no {what}; ours {:?}, libpri {:?}",
                self.span_events,
                self.peers.iter().map(|p| &p.events).collect::<Vec<_>>()
            );
            self.step();
        }
    }

    fn link_up(&mut self, within: Duration) {
        let end = Instant::now() + within;
        while !self.span_events.iter().any(|e| matches!(e, SpanEvent::LinkUp(_))) {
            assert!(Instant::now() < end, "layer 2 did not come up: {:?}", self.span_events);
            self.step();
        }
        self.span_events.retain(|e| !matches!(e, SpanEvent::LinkUp(_)));
    }

    fn settle(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.step();
        }
    }

    fn req<R>(&mut self, f: impl FnOnce(&mut call::CallControl, Instant) -> R) -> R {
        let r = self.span.request(Instant::now(), f);
        self.flush();
        r
    }

    /// Writes the capture as pcap, LINKTYPE_LINUX_LAPD (177) with its
    /// 16-octet pseudo header.
    fn write_pcap(&self, path: &std::path::Path) {
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&177u32.to_le_bytes());
        for c in &self.capture {
            let mut rec = Vec::new();
            rec.extend_from_slice(&(if c.from_network == self.we_are_network { 4u16 } else { 0 }).to_be_bytes());
            rec.extend_from_slice(&8445u16.to_be_bytes()); // ARPHRD_LAPD
            rec.extend_from_slice(&1u16.to_be_bytes());
            let mut addr = [0u8; 8];
            addr[0] = self.we_are_network as u8; // 1: the capturing (local) end is the network side
            rec.extend_from_slice(&addr);
            rec.extend_from_slice(&0x0030u16.to_be_bytes()); // ETH_P_LAPD
            rec.extend_from_slice(&c.frame);
            out.extend_from_slice(&(c.at.as_secs() as u32).to_le_bytes());
            out.extend_from_slice(&c.at.subsec_micros().to_le_bytes());
            out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
            out.extend_from_slice(&rec);
        }
        std::fs::File::create(path).unwrap().write_all(&out).unwrap();
    }
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

fn num(ton: u8, digits: &str, presentation: Option<u8>) -> PartyNumber {
    PartyNumber { type_of_number: ton, plan: 1, presentation, screening: 0, reason: None, digits: digits.into() }
}

const S: Duration = Duration::from_secs(5);

/// Our call to libpri and libpri's call to us, each released by one side
/// with a cause the other sees intact.
fn calls_both_ways(h: &mut Harness, our_channel: Option<u8>, peer_channel: u8) {
    // Us -> libpri, en-bloc, national number, presentation allowed.
    let info = SetupInfo {
        called: Some(num(2, "5678", None)),
        calling: Some(num(2, "1234", Some(0))),
        channel: our_channel,
        sending_complete: true,
        ..Default::default()
    };
    let call = h.req(|cc, now| cc.setup(now, info)).expect("setup");
    let ring = h.peer("ring", S);
    assert_eq!(field(&ring, "called"), "5678");
    assert_eq!(field(&ring, "calling"), "1234");
    assert_eq!(field(&ring, "calledplan"), "33", "national, E.164"); // 0x21
    assert_eq!(field(&ring, "callingplan"), "33");
    assert_eq!(field(&ring, "pres"), "0", "allowed, user provided not screened");
    assert_eq!(field(&ring, "complete"), "1");
    let id = field(&ring, "id").to_string();
    h.command(&format!("proceed {id}"));
    h.ours("proceeding", S, |e| matches!(e, Event::Proceeding { call: c, .. } if *c == call).then_some(()));
    h.command(&format!("alert {id}"));
    h.ours("alerting", S, |e| matches!(e, Event::Alerting { call: c, .. } if *c == call).then_some(()));
    h.command(&format!("answer {id}"));
    h.ours("connected", S, |e| matches!(e, Event::Connected { call: c } if *c == call).then_some(()));
    // We release with 31; libpri reports 31.
    h.req(|cc, now| cc.disconnect(now, call, 31)).unwrap();
    let hup = h.peer("hangup_req", S);
    assert_eq!(field(&hup, "cause"), "31");
    let (cause, _) = h.ours("released", S, |e| match e {
        Event::Released { call: c, cause, location } if *c == call => Some((*cause, *location)),
        _ => None,
    });
    assert_eq!(cause, 31);
    assert!(h.span.cc.busy_channels().is_empty());

    // libpri -> us; libpri releases with 17 (user busy) after we alert.
    h.command(&format!("call 4321 8765 {peer_channel} {} 1", (peer_channel != 0) as u8));
    let (call, info) = h.ours("incoming setup", S, |e| match e {
        Event::Setup { call, info, .. } => Some((*call, info.clone())),
        _ => None,
    });
    let called = info.called.expect("called number");
    let calling = info.calling.expect("calling number");
    assert_eq!(called.digits, b"4321");
    assert_eq!((called.type_of_number, called.plan), (2, 1));
    assert_eq!(calling.digits, b"8765");
    assert_eq!((calling.type_of_number, calling.plan, calling.presentation), (2, 1, Some(0)));
    assert!(info.sending_complete);
    assert!(info.channel.is_some());
    let placed = h.peer("placed", S);
    let id = field(&placed, "id").to_string();
    h.req(|cc, now| cc.alerting(now, call)).unwrap();
    h.peer("ringing", S);
    h.req(|cc, now| cc.connect(now, call)).unwrap();
    h.peer("answer", S);
    h.ours("connected", S, |e| matches!(e, Event::Connected { call: c } if *c == call).then_some(()));
    h.command(&format!("hangup {id} 17"));
    let (cause, location) = h.ours("disconnect", S, |e| match e {
        Event::Disconnect { call: c, cause, location, .. } if *c == call => Some((*cause, *location)),
        _ => None,
    });
    assert_eq!(cause, 17);
    let _ = location;
    h.ours("released", S, |e| matches!(e, Event::Released { call: c, .. } if *c == call).then_some(()));
    h.peer("hangup", S);
    assert!(h.span.cc.busy_channels().is_empty());
}

#[test]
fn pri_user_against_libpri_network() {
    let Some(mut h) = Harness::new("network", "pri", call::Config::new(Side::User, Interface::Pri, &call::EUROISDN), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    calls_both_ways(&mut h, Some(1), 5);
    // The whole exchange as a pcap that tshark decodes without complaint.
    let pcap = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libpri-pri-user.pcap");
    h.write_pcap(&pcap);
    check_pcap(&pcap, h.capture.len());
}

#[test]
fn pri_network_against_libpri_user() {
    let Some(mut h) = Harness::new("user", "pri", call::Config::new(Side::Network, Interface::Pri, &call::EUROISDN), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    calls_both_ways(&mut h, None, 0);
}

#[test]
fn bri_ptp_user_against_libpri_network() {
    let Some(mut h) = Harness::new("network", "bri-ptp", call::Config::new(Side::User, Interface::Bri, &call::EUROISDN), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    calls_both_ways(&mut h, Some(1), 2);
}

#[test]
fn overlap_dialing_both_ways() {
    let Some(mut h) = Harness::new("user", "pri", call::Config::new(Side::Network, Interface::Pri, &call::EUROISDN), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    // libpri (user) dials 12, then 345 by INFORMATION; we send SETUP ACK.
    h.command("call 12 8765 0 0 0");
    let (call, info) = h.ours("incoming setup", S, |e| match e {
        Event::Setup { call, info, .. } => Some((*call, info.clone())),
        _ => None,
    });
    assert!(!info.sending_complete);
    assert_eq!(info.called.unwrap().digits, b"12");
    let id = field(&h.peer("placed", S), "id").to_string();
    h.req(|cc, now| cc.setup_ack(now, call)).unwrap();
    h.peer("setup_ack", S);
    h.command(&format!("info {id} 345"));
    let mut got = Vec::new();
    while got.len() < 3 {
        let d = h.ours("digits", S, |e| match e {
            Event::Digits { call: c, digits, .. } if *c == call => Some(digits.clone()),
            _ => None,
        });
        got.extend(d);
    }
    assert_eq!(got, b"345");
    h.req(|cc, now| cc.proceeding(now, call)).unwrap();
    h.peer("proceeding", S);
    // We refuse the number after all: cause 1 (unallocated number) reaches libpri.
    h.req(|cc, now| cc.disconnect(now, call, 1)).unwrap();
    assert_eq!(field(&h.peer("hangup_req", S), "cause"), "1");
    h.ours("released", S, |e| matches!(e, Event::Released { call: c, .. } if *c == call).then_some(()));

    // We (network) dial towards libpri in overlap: SETUP without sending complete.
    let info = SetupInfo { called: Some(num(0, "55", None)), ..Default::default() };
    let call = h.req(|cc, now| cc.setup(now, info)).unwrap();
    let ring = h.peer("ring", S);
    assert_eq!(field(&ring, "complete"), "0");
    assert_eq!(field(&ring, "called"), "55");
    let id = field(&ring, "id").to_string();
    h.command(&format!("setupack {id}"));
    h.ours("setup ack", S, |e| matches!(e, Event::SetupAck { call: c, .. } if *c == call).then_some(()));
    h.req(|cc, now| cc.information(now, call, b"66", true)).unwrap();
    let info = h.peer("info", S);
    assert!(field(&info, "digits").ends_with("66"), "{info}");
    h.command(&format!("answer {id}"));
    h.ours("connected", S, |e| matches!(e, Event::Connected { call: c } if *c == call).then_some(()));
    h.command(&format!("hangup {id} 16"));
    let c = h.ours("disconnect", S, |e| match e {
        Event::Disconnect { call: c, cause, .. } if *c == call => Some(*cause),
        _ => None,
    });
    assert_eq!(c, 16);
}

#[test]
fn t200_recovers_dropped_frames_both_ways() {
    let Some(mut h) = Harness::new("network", "pri", call::Config::new(Side::User, Interface::Pri, &call::EUROISDN), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    // Our SETUP is lost once: T200 (1 s) recovery brings it across.
    h.drop_to_peer = 1;
    let info = SetupInfo { called: Some(num(2, "777", None)), sending_complete: true, ..Default::default() };
    let call = h.req(|cc, now| cc.setup(now, info)).unwrap();
    let ring = h.peer("ring", S);
    assert_eq!(field(&ring, "called"), "777");
    // libpri's ALERTING is lost once: its T200 (500 ms here) repeats it.
    h.drop_from_peer = 1;
    let id = field(&ring, "id").to_string();
    h.command(&format!("alert {id}"));
    h.ours("alerting", S, |e| matches!(e, Event::Alerting { call: c, .. } if *c == call).then_some(()));
    assert_eq!(h.dropped, 2);
    h.command(&format!("hangup {id} 21"));
    let c = h.ours("disconnect", S, |e| match e {
        Event::Disconnect { call: c, cause, .. } if *c == call => Some(*cause),
        _ => None,
    });
    assert_eq!(c, 21);
}

#[test]
fn layer2_reestablishment_keeps_the_active_call() {
    let Some(mut h) = Harness::new("network", "pri", call::Config::new(Side::User, Interface::Pri, &call::EUROISDN), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    let info = SetupInfo { called: Some(num(2, "42", None)), sending_complete: true, ..Default::default() };
    let call = h.req(|cc, now| cc.setup(now, info)).unwrap();
    let id = field(&h.peer("ring", S), "id").to_string();
    h.command(&format!("answer {id}"));
    h.ours("connected", S, |e| matches!(e, Event::Connected { call: c } if *c == call).then_some(()));
    // SABME while established: both sides reset their sequence numbers.
    h.span.reestablish(Instant::now());
    h.flush();
    h.link_up(S);
    h.settle(Duration::from_millis(300));
    assert_eq!(h.span.cc.state(call), Some(call::State::Active));
    // The call still clears end to end with its cause.
    h.command(&format!("hangup {id} 18"));
    let c = h.ours("disconnect", S, |e| match e {
        Event::Disconnect { call: c, cause, .. } if *c == call => Some(*cause),
        _ => None,
    });
    assert_eq!(c, 18);
    h.ours("released", S, |e| matches!(e, Event::Released { call: c, .. } if *c == call).then_some(()));
}

#[test]
fn restart_both_ways() {
    let Some(mut h) = Harness::new("network", "pri", call::Config::new(Side::User, Interface::Pri, &call::EUROISDN), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    // A call on channel 3, then libpri restarts channel 3: the call is gone.
    let info = SetupInfo { called: Some(num(2, "9", None)), channel: Some(3), exclusive: true, sending_complete: true, ..Default::default() };
    let call = h.req(|cc, now| cc.setup(now, info)).unwrap();
    let id = field(&h.peer("ring", S), "id").to_string();
    h.command(&format!("proceed {id}"));
    h.ours("proceeding", S, |e| matches!(e, Event::Proceeding { call: c, .. } if *c == call).then_some(()));
    assert_eq!(h.span.cc.busy_channels(), [3]);
    h.command("reset 3");
    let ch = h.ours("restarted", S, |e| match e {
        Event::Restarted { channel } => Some(*channel),
        _ => None,
    });
    assert_eq!(ch, Some(3));
    assert!(h.span.cc.busy_channels().is_empty());
    assert_eq!(field(&h.peer("restart_ack", S), "chan"), "3");
    // Our RESTART of the whole interface is acknowledged.
    h.req(|cc, now| cc.restart(now, None)).unwrap();
    h.ours("restart ack", S, |e| matches!(e, Event::RestartAcknowledged { channel: None }).then_some(()));
}

#[test]
fn bri_ptmp_network_with_libpri_te() {
    let Some(mut h) =
        Harness::new("user", "bri-ptmp", call::Config::new(Side::Network, Interface::Bri, &call::EUROISDN), Mode::PointToMultipoint)
    else {
        return;
    };
    // libpri asks for a TEI, gets 64 from our pool, brings its link up.
    let end = Instant::now() + S;
    while !h.span_events.iter().any(|e| matches!(e, SpanEvent::TeiAssigned(64))) {
        assert!(Instant::now() < end, "no TEI assignment: {:?}", h.span_events);
        h.step();
    }
    // libpri -> us (its data link comes up on the first call).
    h.command("call 100 200 0 0 1");
    let (call, info, link) = h.ours("incoming setup", Duration::from_secs(8), |e| match e {
        Event::Setup { call, info, link } => Some((*call, info.clone(), *link)),
        _ => None,
    });
    assert_eq!(link, Link::Tei(64));
    assert_eq!(info.called.unwrap().digits, b"100");
    let id = field(&h.peer("placed", S), "id").to_string();
    h.req(|cc, now| cc.connect(now, call)).unwrap();
    h.peer("answer", S);
    h.command(&format!("hangup {id} 16"));
    assert_eq!(
        h.ours("disconnect", S, |e| match e {
            Event::Disconnect { call: c, cause, .. } if *c == call => Some(*cause),
            _ => None,
        }),
        16
    );
    // Us -> libpri: the SETUP goes out broadcast (UI on TEI 127).
    let info = SetupInfo { called: Some(num(4, "31", None)), calling: Some(num(4, "99", Some(1))), sending_complete: true, ..Default::default() };
    let call = h.req(|cc, now| cc.setup(now, info)).unwrap();
    let ring = h.peer("ring", S);
    assert_eq!(field(&ring, "called"), "31");
    let id = field(&ring, "id").to_string();
    h.command(&format!("answer {id}"));
    h.ours("connected", S, |e| matches!(e, Event::Connected { call: c } if *c == call).then_some(()));
    h.req(|cc, now| cc.disconnect(now, call, 16)).unwrap();
    assert_eq!(field(&h.peer("hangup_req", S), "cause"), "16");
    h.ours("released", S, |e| matches!(e, Event::Released { call: c, .. } if *c == call).then_some(()));
}

fn check_pcap(path: &std::path::Path, frames: usize) {
    let out = match Command::new("tshark").arg("-r").arg(path).arg("-V").output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP pcap check: no tshark ({e})");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("Malformed"), "tshark found malformed frames:\n{text}");
    let decoded = text.matches("\nFrame ").count() + text.starts_with("Frame ") as usize;
    assert_eq!(decoded, frames, "every frame decoded");
    assert!(text.contains("Q.931"), "Q.931 decoded");
    assert!(text.contains("Message type: SETUP"), "{text}");
    // Commands and responses told apart from the pseudo header: the
    // network's SABME is a command from the remote network.
    let summary = Command::new("tshark").arg("-r").arg(path).output().unwrap();
    let summary = String::from_utf8_lossy(&summary.stdout);
    assert!(summary.lines().next().is_some_and(|l| l.contains("Remote Network") && l.contains("SABME")), "{summary}");
}

#[test]
fn bri_ptmp_two_libpri_tes_first_connect_wins() {
    let Some(mut h) = Harness::with_peers(
        "user",
        "bri-ptmp",
        2,
        call::Config::new(Side::Network, Interface::Bri, &call::EUROISDN),
        Mode::PointToMultipoint,
    ) else {
        return;
    };
    // Both TEs get their own TEI from the pool.
    let end = Instant::now() + S;
    loop {
        let teis: Vec<u8> = h.span_events.iter().filter_map(|e| if let SpanEvent::TeiAssigned(t) = e { Some(*t) } else { None }).collect();
        if teis.len() == 2 {
            assert_eq!(teis, [64, 65]);
            break;
        }
        assert!(Instant::now() < end, "TEIs: {:?}", h.span_events);
        h.step();
    }
    // One broadcast SETUP rings both.
    let info = SetupInfo { called: Some(num(4, "31", None)), sending_complete: true, ..Default::default() };
    let call = h.req(|cc, now| cc.setup(now, info)).unwrap();
    let id0 = field(&h.peer_at(0, "ring", S), "id").to_string();
    let id1 = field(&h.peer_at(1, "ring", S), "id").to_string();
    h.command_at(0, &format!("alert {id0}"));
    h.command_at(1, &format!("alert {id1}"));
    h.ours("alerting", S, |e| matches!(e, Event::Alerting { call: c, .. } if *c == call).then_some(()));
    // The second TE answers first: it gets the call, the first is told 26.
    h.command_at(1, &format!("answer {id1}"));
    h.ours("connected", S, |e| matches!(e, Event::Connected { call: c } if *c == call).then_some(()));
    let lost = h.peer_at(0, "hangup", S);
    assert_eq!(field(&lost, "cause"), "26", "{lost}");
    // The winner hangs up with 16; we see it.
    h.command_at(1, &format!("hangup {id1} 16"));
    let c = h.ours("disconnect", S, |e| match e {
        Event::Disconnect { call: c, cause, .. } if *c == call => Some(*cause),
        _ => None,
    });
    assert_eq!(c, 16);
    h.ours("released", S, |e| matches!(e, Event::Released { call: c, .. } if *c == call).then_some(()));
    h.settle(Duration::from_millis(200));
    assert_eq!(h.span.cc.calls().count(), 0);
}

#[test]
fn bri_ptmp_te_against_libpri_nt() {
    // We are the TE on a PTMP bus: libpri's NT assigns our TEI and offers
    // its calls by broadcast SETUP (UI on TEI 127).
    let Some(mut h) =
        Harness::new("network", "bri-ptmp", call::Config::new(Side::User, Interface::Bri, &call::EUROISDN), Mode::PointToMultipoint)
    else {
        return;
    };
    let end = Instant::now() + S;
    let tei = loop {
        if let Some(t) = h.span_events.iter().find_map(|e| if let SpanEvent::TeiAssigned(t) = e { Some(*t) } else { None }) {
            break t;
        }
        assert!(Instant::now() < end, "no TEI from libpri: {:?}", h.span_events);
        h.step();
    };
    assert!((64..=126).contains(&tei));
    h.command("call 600 700 0 0 1");
    let (call, info, link) = h.ours("broadcast setup", S, |e| match e {
        Event::Setup { call, info, link } => Some((*call, info.clone(), *link)),
        _ => None,
    });
    assert_eq!(link, Link::Tei(tei), "answered on our own data link");
    assert_eq!(info.called.unwrap().digits, b"600");
    let id = field(&h.peer("placed", S), "id").to_string();
    h.req(|cc, now| cc.alerting(now, call)).unwrap();
    h.peer("ringing", S);
    h.req(|cc, now| cc.connect(now, call)).unwrap();
    h.peer("answer", S);
    h.ours("connected", S, |e| matches!(e, Event::Connected { call: c } if *c == call).then_some(()));
    // Our call out, cleared by libpri with 34.
    let info = SetupInfo { called: Some(num(0, "800", None)), sending_complete: true, ..Default::default() };
    let out = h.req(|cc, now| cc.setup(now, info)).unwrap();
    let ring = h.peer("ring", S);
    assert_eq!(field(&ring, "called"), "800");
    h.command(&format!("hangup {} 34", field(&ring, "id")));
    let c = h.ours("out released", S, |e| match e {
        Event::Disconnect { call: c, cause, .. } | Event::Released { call: c, cause, .. } if *c == out => Some(*cause),
        _ => None,
    });
    assert_eq!(c, 34);
    h.command(&format!("hangup {id} 16"));
    h.ours("released", S, |e| matches!(e, Event::Released { call: c, .. } if *c == call).then_some(()));
}

/// NI-2 (North American T1 PRI): our user side against libpri's NI-2
/// network and our network side against its NI-2 user, calls both ways on
/// T1 channels (1-23), causes intact, and the capture clean in tshark.
#[test]
fn ni2_pri_user_against_libpri_network() {
    let Some(mut h) = Harness::new("network", "pri", call::Config::new(Side::User, Interface::Pri, &call::NI2), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    calls_both_ways(&mut h, Some(23), 22);
    let pcap = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libpri-ni2-user.pcap");
    h.write_pcap(&pcap);
    check_pcap(&pcap, h.capture.len());
}

#[test]
fn ni2_pri_network_against_libpri_user() {
    let Some(mut h) = Harness::new("user", "pri", call::Config::new(Side::Network, Interface::Pri, &call::NI2), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    calls_both_ways(&mut h, None, 0);
}

/// QSIG basic call between two PINXs: our user side against libpri's QSIG
/// "network" end and the other way round, calls both ways on an E1.
#[test]
fn qsig_pri_user_against_libpri_network() {
    let Some(mut h) = Harness::new("network", "pri", call::Config::new(Side::User, Interface::Pri, &call::QSIG), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    calls_both_ways(&mut h, Some(1), 5);
    let pcap = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libpri-qsig-user.pcap");
    h.write_pcap(&pcap);
    check_pcap(&pcap, h.capture.len());
}

#[test]
fn qsig_pri_network_against_libpri_user() {
    let Some(mut h) = Harness::new("user", "pri", call::Config::new(Side::Network, Interface::Pri, &call::QSIG), Mode::PointToPoint)
    else {
        return;
    };
    h.link_up(S);
    h.peer("dchan_up", S);
    calls_both_ways(&mut h, None, 0);
}
