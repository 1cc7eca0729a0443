//! Q.931 messages parsed and built per second, and call set-ups per second
//! through two call controls back to back (issue 10's benchmark, the ISDN
//! half; the PRI-to-SIP set-up rate through gatewayd is the hil test
//! `tests/hil/tests/isdn_bench.rs`).
//!
//! Run: `cargo bench -p gw-isdn --bench q931` (a few seconds).
//! `Q931_BENCH_SECS=N` sets the time per figure (default 1).

use std::hint::black_box;
use std::time::{Duration, Instant};

use gw_isdn::call::{self, CallControl, Event, Interface, Link, SetupInfo, Side};
use gw_isdn::q931::{BearerCapability, CallRef, Cause, ChannelId, Ie, Message, MessageType, PartyNumber};

fn secs() -> Duration {
    let s = std::env::var("Q931_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0f64);
    Duration::from_secs_f64(s)
}

/// Runs `f` in batches until `d` has passed; returns calls per second.
fn rate(d: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..1000 {
            f();
        }
        n += 1000;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn setup() -> Message {
    let num = |d: &str, p: Option<u8>| PartyNumber { type_of_number: 2, plan: 1, presentation: p, screening: 0, reason: None, digits: d.into() };
    Message::new(
        CallRef { len: 2, flag: false, value: 0x1234 },
        MessageType::Setup,
        vec![
            Ie::SendingComplete,
            Ie::BearerCapability(BearerCapability {
                coding_standard: 0,
                transfer_capability: 0,
                transfer_mode: 0,
                transfer_rate: 0x10,
                rate_multiplier: None,
                layer1: Some(3),
            }),
            Ie::ChannelId(ChannelId { primary: true, exclusive: true, d_channel: false, selection: 1, channel: Some(17) }),
            Ie::CallingNumber(num("301234567", Some(0))),
            Ie::CalledNumber(num("897654321", None)),
        ],
    )
}

fn main() {
    let d = secs();
    let s = setup();
    let setup_octets = s.to_vec();
    let disc = Message::new(
        CallRef { len: 2, flag: true, value: 0x1234 },
        MessageType::Disconnect,
        vec![Ie::Cause(Cause { coding_standard: 0, location: 2, value: 16, diagnostics: vec![] })],
    );
    let disc_octets = disc.to_vec();
    let r = rate(d, || {
        black_box(Message::parse(black_box(&setup_octets)).unwrap());
    });
    println!("q931 parse SETUP ({} octets, 5 elements): {:>10.0} messages/s", setup_octets.len(), r);
    let r = rate(d, || {
        black_box(Message::parse(black_box(&disc_octets)).unwrap());
    });
    println!("q931 parse DISCONNECT ({} octets):          {:>10.0} messages/s", disc_octets.len(), r);
    let r = rate(d, || {
        black_box(black_box(&s).to_vec());
    });
    println!("q931 build SETUP:                            {:>10.0} messages/s", r);
    let r = rate(d, || {
        let m = Message::parse(black_box(&setup_octets)).unwrap();
        black_box(m.check(true).is_ok());
    });
    println!("q931 parse + 5.8 checks SETUP:               {:>10.0} messages/s", r);

    // Whole calls: SETUP, CALL PROCEEDING, ALERTING, CONNECT, CONNECT ACK,
    // DISCONNECT, RELEASE, RELEASE COMPLETE between a user and a network
    // call control on a PRI (30 B channels), every message encoded and parsed.
    let now = Instant::now();
    let mut user = CallControl::new(call::Config::new(Side::User, Interface::Pri, &call::EUROISDN));
    let mut net = CallControl::new(call::Config::new(Side::Network, Interface::Pri, &call::EUROISDN));
    user.dl_established(now, Link::Tei(0));
    net.dl_established(now, Link::Tei(0));
    let called = PartyNumber { type_of_number: 2, plan: 1, presentation: None, screening: 0, reason: None, digits: b"897654321".to_vec() };
    let mut messages = 0u64;
    let pump = |user: &mut CallControl, net: &mut CallControl, messages: &mut u64| -> Vec<Event> {
        let mut net_events = Vec::new();
        loop {
            let mut moved = false;
            while let Some(t) = user.poll_transmit() {
                net.handle_message(now, t.link, &t.octets);
                *messages += 1;
                moved = true;
            }
            while let Some(t) = net.poll_transmit() {
                user.handle_message(now, t.link, &t.octets);
                *messages += 1;
                moved = true;
            }
            while user.poll_event().is_some() {}
            while user.poll_timer().is_some() {}
            while net.poll_timer().is_some() {}
            net_events.extend(std::iter::from_fn(|| net.poll_event()));
            if !moved {
                return net_events;
            }
        }
    };
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < d {
        let info = SetupInfo { called: Some(called.clone()), sending_complete: true, ..Default::default() };
        let c = user.setup(now, info).unwrap();
        let ev = pump(&mut user, &mut net, &mut messages);
        let Some(Event::Setup { call: nc, .. }) = ev.into_iter().find(|e| matches!(e, Event::Setup { .. })) else { panic!("no setup") };
        net.proceeding(now, nc).unwrap();
        net.alerting(now, nc).unwrap();
        net.connect(now, nc).unwrap();
        pump(&mut user, &mut net, &mut messages);
        user.disconnect(now, c, 16).unwrap();
        pump(&mut user, &mut net, &mut messages);
        assert!(user.busy_channels().is_empty() && net.busy_channels().is_empty());
        calls += 1;
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "call control, user+network, complete calls:  {:>10.0} calls/s ({:.0} messages/s through both state machines)",
        calls as f64 / t,
        messages as f64 / t
    );
}
