//! Whole spans (data links, TEI management, call control) on a simulated
//! BRI S bus in virtual time: one NT, several TEs; and a PRI with frames
//! lost on the way. The same scenarios as the libpri tests, without libpri.

use std::time::{Duration, Instant};

use gw_isdn::call::{self, Event, Interface, Link, SetupInfo, Side};
use gw_isdn::q931::PartyNumber;
use gw_isdn::span::{Mode, Span, SpanEvent};

struct Bus {
    now: Instant,
    nt: Span,
    tes: Vec<Span>,
    nt_events: Vec<SpanEvent>,
    te_events: Vec<Vec<SpanEvent>>,
    /// Drop every n-th frame (0: none).
    drop_every: usize,
    frames: usize,
}

impl Bus {
    fn new(interface: Interface, mode: Mode, tes: usize) -> Self {
        let now = Instant::now();
        let nt = Span::new(call::Config::new(Side::Network, interface, &call::EUROISDN), mode, 1);
        let tes: Vec<Span> =
            (0..tes).map(|k| Span::new(call::Config::new(Side::User, interface, &call::EUROISDN), mode, 100 + k as u64)).collect();
        let n = tes.len();
        let mut b = Bus { now, nt, tes, nt_events: vec![], te_events: vec![vec![]; n], drop_every: 0, frames: 0 };
        let now = b.now;
        b.nt.start(now);
        for t in &mut b.tes {
            t.start(now);
        }
        b.run();
        b
    }

    fn lost(&mut self) -> bool {
        self.frames += 1;
        self.drop_every != 0 && self.frames.is_multiple_of(self.drop_every)
    }

    fn run(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            while let Some(f) = self.nt.poll_transmit() {
                moved = true;
                if self.lost() {
                    continue;
                }
                for t in &mut self.tes {
                    t.handle_frame(self.now, &f);
                }
            }
            for k in 0..self.tes.len() {
                while let Some(f) = self.tes[k].poll_transmit() {
                    moved = true;
                    if !self.lost() {
                        self.nt.handle_frame(self.now, &f);
                    }
                }
            }
            self.nt_events.extend(std::iter::from_fn(|| self.nt.poll_event()));
            for k in 0..self.tes.len() {
                let t = &mut self.tes[k];
                self.te_events[k].extend(std::iter::from_fn(|| t.poll_event()));
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.nt.poll_timeout()].into_iter().chain(self.tes.iter().map(|t| t.poll_timeout())).flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.nt.handle_timeout(now);
                    for t in &mut self.tes {
                        t.handle_timeout(now);
                    }
                    self.run();
                }
                _ => break,
            }
        }
        self.now = end;
    }
}

fn calls(events: &[SpanEvent]) -> Vec<&Event> {
    events.iter().filter_map(|e| if let SpanEvent::Call(c) = e { Some(c) } else { None }).collect()
}

fn enbloc(d: &str) -> SetupInfo {
    SetupInfo {
        called: Some(PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: d.into() }),
        sending_complete: true,
        ..Default::default()
    }
}

#[test]
fn ptmp_bus_three_tes_tei_assignment_broadcast_and_calls_out() {
    let mut b = Bus::new(Interface::Bri, Mode::PointToMultipoint, 3);
    let teis: Vec<u8> = b.nt_events.iter().filter_map(|e| if let SpanEvent::TeiAssigned(t) = e { Some(*t) } else { None }).collect();
    assert_eq!(teis, [64, 65, 66]);
    // NT -> all: broadcast SETUP; TE 2 answers, TE 0 was alerting: 26.
    let now = b.now;
    let nc = b.nt.request(now, |cc, now| cc.setup(now, enbloc("5"))).unwrap();
    b.run();
    let te_calls: Vec<call::CallId> = (0..3)
        .map(|k| calls(&b.te_events[k]).iter().find_map(|e| if let Event::Setup { call, .. } = e { Some(*call) } else { None }).unwrap())
        .collect();
    b.tes[0].request(now, |cc, now| cc.alerting(now, te_calls[0])).unwrap();
    // TE 1 is busy: it refuses with 17; the NT keeps offering to the others.
    b.tes[1].request(now, |cc, now| cc.disconnect(now, te_calls[1], 17)).unwrap();
    b.run();
    assert!(b.nt.cc.state(nc).is_some());
    b.tes[2].request(now, |cc, now| cc.connect(now, te_calls[2])).unwrap();
    b.run();
    assert!(calls(&b.nt_events).contains(&&Event::Connected { call: nc }));
    assert!(calls(&b.te_events[0]).iter().any(|e| matches!(e, Event::Released { cause: 26, .. })));
    assert!(calls(&b.te_events[2]).contains(&&Event::Connected { call: te_calls[2] }));
    // A call from TE 1 on the other B channel, on its own data link.
    let tc = b.tes[1].request(now, |cc, now| cc.setup(now, enbloc("77"))).unwrap();
    b.run();
    let (nc2, link) = calls(&b.nt_events)
        .iter()
        .find_map(|e| if let Event::Setup { call, link, .. } = e { Some((*call, *link)) } else { None })
        .unwrap();
    assert_eq!(link, Link::Tei(65));
    b.nt.request(now, |cc, now| cc.connect(now, nc2)).unwrap();
    b.run();
    assert!(calls(&b.te_events[1]).contains(&&Event::Connected { call: tc }));
    let busy = b.nt.cc.busy_channels();
    assert_eq!(busy.len(), 2, "both B channels in use: {busy:?}");
    // A third call finds no channel: 34.
    assert_eq!(b.nt.request(now, |cc, now| cc.setup(now, enbloc("9"))), Err(call::RequestError::NoChannel(34)));
    // Clear both; everything is free again.
    b.nt.request(now, |cc, now| cc.disconnect(now, nc, 16)).unwrap();
    b.nt.request(now, |cc, now| cc.disconnect(now, nc2, 16)).unwrap();
    b.run();
    b.advance(Duration::from_secs(10));
    assert!(b.nt.cc.busy_channels().is_empty());
    for t in &b.tes {
        assert!(t.cc.busy_channels().is_empty());
    }
}

#[test]
fn pri_with_lost_frames_still_completes_calls() {
    let mut b = Bus::new(Interface::Pri, Mode::PointToPoint, 1);
    b.drop_every = 7;
    for k in 0..20 {
        let now = b.now;
        let c = b.tes[0].request(now, |cc, now| cc.setup(now, enbloc("123"))).unwrap();
        b.advance(Duration::from_millis(2500));
        let nc = calls(&b.nt_events)
            .iter()
            .rev()
            .find_map(|e| if let Event::Setup { call, .. } = e { Some(*call) } else { None })
            .unwrap_or_else(|| panic!("call {k}: no SETUP"));
        b.nt_events.clear();
        let now = b.now;
        b.nt.request(now, |cc, now| cc.connect(now, nc)).unwrap();
        b.advance(Duration::from_secs(3));
        assert!(calls(&b.te_events[0]).contains(&&Event::Connected { call: c }), "call {k}");
        let now = b.now;
        b.tes[0].request(now, |cc, now| cc.disconnect(now, c, 16)).unwrap();
        b.advance(Duration::from_secs(5));
        assert!(b.nt.cc.busy_channels().is_empty() && b.tes[0].cc.busy_channels().is_empty(), "call {k}");
        b.te_events[0].clear();
    }
    assert!(b.frames / 7 >= 40, "frames were lost: {} of {}", b.frames / 7, b.frames);
}
