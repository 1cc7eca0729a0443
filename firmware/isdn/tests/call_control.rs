//! Q.931 call control, two of ours back to back in virtual time: timers,
//! glare, the 5.8 error rules, PTMP broadcast SETUP, RESTART, and random
//! message sequences that must never panic nor leave a B channel busy
//! without a call.

use std::time::{Duration, Instant};

use gw_isdn::call::{self, CallControl, CallId, Event, Interface, Link, SetupInfo, Side, State};
use gw_isdn::q931::{CallRef, Cause, ChannelId, Ie, Message, MessageType, PartyNumber, Progress};
use proptest::prelude::*;

struct Net {
    now: Instant,
    net: CallControl,
    users: Vec<CallControl>,
    /// Deliver nothing from the users / from the network.
    mute_users: bool,
    mute_net: bool,
    /// Everything sent, decoded: (from_network, link, message).
    log: Vec<(bool, Link, Message)>,
    net_events: Vec<Event>,
    user_events: Vec<Vec<Event>>,
}

fn tei_of(k: usize, ptmp: bool) -> u8 {
    if ptmp {
        64 + k as u8
    } else {
        0
    }
}

impl Net {
    fn new(interface: Interface, ptmp_users: usize) -> Self {
        let ptmp = ptmp_users > 0;
        let mut ncfg = call::Config::new(Side::Network, interface, &call::EUROISDN);
        ncfg.ptmp = ptmp;
        let n = if ptmp { ptmp_users } else { 1 };
        let now = Instant::now();
        let mut net = CallControl::new(ncfg);
        let users: Vec<CallControl> = (0..n)
            .map(|k| {
                let mut c = call::Config::new(Side::User, interface, &call::EUROISDN);
                c.tei = tei_of(k, ptmp);
                let mut u = CallControl::new(c);
                u.dl_established(now, Link::Tei(tei_of(k, ptmp)));
                u
            })
            .collect();
        for k in 0..n {
            net.dl_established(now, Link::Tei(tei_of(k, ptmp)));
        }
        Net { now, net, users, mute_users: false, mute_net: false, log: vec![], net_events: vec![], user_events: vec![vec![]; n] }
    }

    fn ptmp(&self) -> bool {
        self.net.config().ptmp
    }

    fn run(&mut self) {
        for _ in 0..50 {
            let mut moved = false;
            while let Some(t) = self.net.poll_transmit() {
                moved = true;
                self.log.push((true, t.link, Message::parse(&t.octets).unwrap()));
                if self.mute_net {
                    continue;
                }
                for k in 0..self.users.len() {
                    let tei = tei_of(k, self.ptmp());
                    if t.link == Link::Broadcast || t.link == Link::Tei(tei) {
                        self.users[k].handle_message(self.now, t.link, &t.octets);
                    }
                }
            }
            for k in 0..self.users.len() {
                while let Some(t) = self.users[k].poll_transmit() {
                    moved = true;
                    self.log.push((false, t.link, Message::parse(&t.octets).unwrap()));
                    if !self.mute_users {
                        self.net.handle_message(self.now, t.link, &t.octets);
                    }
                }
            }
            self.net_events.extend(std::iter::from_fn(|| self.net.poll_event()));
            for k in 0..self.users.len() {
                let u = &mut self.users[k];
                self.user_events[k].extend(std::iter::from_fn(|| u.poll_event()));
            }
            self.net.check_invariants().unwrap();
            for u in &self.users {
                u.check_invariants().unwrap();
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.net.poll_timeout()].into_iter().chain(self.users.iter().map(|u| u.poll_timeout())).flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.net.handle_timeout(self.now);
                    for u in &mut self.users {
                        u.handle_timeout(self.now);
                    }
                    self.run();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn sent(&self, from_network: bool, mt: MessageType) -> Vec<&Message> {
        self.log.iter().filter(|(n, _, m)| *n == from_network && m.message_type == mt).map(|(_, _, m)| m).collect()
    }

    fn user_setup(&mut self, k: usize, info: SetupInfo) -> CallId {
        let now = self.now;
        let c = self.users[k].setup(now, info).unwrap();
        self.run();
        c
    }

    fn net_setup(&mut self, info: SetupInfo) -> CallId {
        let now = self.now;
        let c = self.net.setup(now, info).unwrap();
        self.run();
        c
    }

    fn incoming(events: &[Event]) -> Vec<(CallId, SetupInfo)> {
        events.iter().filter_map(|e| if let Event::Setup { call, info, .. } = e { Some((*call, info.clone())) } else { None }).collect()
    }
}

fn released(events: &[Event], call: CallId) -> Option<u8> {
    events.iter().find_map(|e| match e {
        Event::Released { call: c, cause, .. } if *c == call => Some(*cause),
        _ => None,
    })
}

fn cause_of(m: &Message) -> Option<u8> {
    m.ies.iter().find_map(|ie| if let Ie::Cause(c) = ie { Some(c.value) } else { None })
}

fn called(d: &str) -> Option<PartyNumber> {
    Some(PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: d.into() })
}

fn enbloc(d: &str) -> SetupInfo {
    SetupInfo { called: called(d), sending_complete: true, ..Default::default() }
}

#[test]
fn basic_call_and_numbers_with_presentation() {
    let mut n = Net::new(Interface::Pri, 0);
    let calling = PartyNumber { type_of_number: 1, plan: 1, presentation: Some(1), screening: 3, reason: None, digits: b"4930123".to_vec() };
    let info = SetupInfo { calling: Some(calling.clone()), ..enbloc("100") };
    let c = n.user_setup(0, info);
    let (nc, got) = Net::incoming(&n.net_events).pop().unwrap();
    assert_eq!(got.calling, Some(calling));
    assert_eq!(got.called.unwrap().digits, b"100");
    assert_eq!(got.channel, Some(1), "the user's preferred channel is free");
    let now = n.now;
    n.net.proceeding(now, nc).unwrap();
    n.net.alerting(now, nc).unwrap();
    n.net.connect(now, nc).unwrap();
    n.run();
    assert_eq!(n.users[0].state(c), Some(State::Active));
    assert_eq!(n.net.busy_channels(), [1]);
    // Network clears with 17, location 2: the user sees both.
    n.net.disconnect(now, nc, 17).unwrap();
    n.run();
    assert!(n.user_events[0].iter().any(|e| matches!(e, Event::Disconnect { cause: 17, location: 2, .. })));
    assert_eq!(released(&n.user_events[0], c), Some(17));
    assert!(n.net.busy_channels().is_empty() && n.users[0].busy_channels().is_empty());
}

#[test]
fn t303_retransmits_setup_once_then_clears_with_102() {
    let mut n = Net::new(Interface::Pri, 0);
    n.mute_users = true;
    let c = n.user_setup(0, enbloc("1"));
    n.advance(Duration::from_millis(3999));
    assert_eq!(n.sent(false, MessageType::Setup).len(), 1);
    n.advance(Duration::from_millis(2));
    assert_eq!(n.sent(false, MessageType::Setup).len(), 2, "T303: SETUP sent again once");
    n.advance(Duration::from_secs(4));
    assert_eq!(released(&n.user_events[0], c), Some(102));
    let rc = n.sent(false, MessageType::ReleaseComplete);
    assert_eq!(rc.len(), 1);
    assert_eq!(cause_of(rc[0]), Some(102));
    assert!(n.users[0].busy_channels().is_empty());
}

#[test]
fn t305_then_t308_twice() {
    let mut n = Net::new(Interface::Pri, 0);
    let c = n.user_setup(0, enbloc("1"));
    let (nc, _) = Net::incoming(&n.net_events).pop().unwrap();
    let now = n.now;
    n.net.connect(now, nc).unwrap();
    n.run();
    // The network stops answering; we clear with 21.
    n.mute_net = true;
    n.users[0].disconnect(now, c, 21).unwrap();
    n.run();
    n.advance(Duration::from_secs(30));
    let rel = n.sent(false, MessageType::Release);
    assert_eq!(rel.len(), 1, "T305 expiry: RELEASE");
    assert_eq!(cause_of(rel[0]), Some(21), "with the DISCONNECT's cause");
    n.advance(Duration::from_secs(4));
    assert_eq!(n.sent(false, MessageType::Release).len(), 2, "T308: RELEASE again");
    assert_eq!(released(&n.user_events[0], c), None);
    n.advance(Duration::from_secs(4));
    assert_eq!(released(&n.user_events[0], c), Some(102));
    assert!(n.users[0].busy_channels().is_empty());
}

#[test]
fn t309_keeps_active_calls_then_clears_with_27() {
    let mut n = Net::new(Interface::Pri, 0);
    let active = n.user_setup(0, enbloc("1"));
    let (nc, _) = Net::incoming(&n.net_events).pop().unwrap();
    let now = n.now;
    n.net.connect(now, nc).unwrap();
    n.run();
    let ringing = n.user_setup(0, enbloc("2"));
    n.users[0].dl_released(n.now, Link::Tei(0));
    n.run();
    // Not active: cleared at once with 27. Active: kept for T309.
    assert_eq!(released(&n.user_events[0], ringing), Some(27));
    assert_eq!(n.users[0].state(active), Some(State::Active));
    assert!(n.user_events[0].contains(&Event::EstablishLink { link: Link::Tei(0) }));
    n.advance(Duration::from_millis(5900));
    assert_eq!(n.users[0].state(active), Some(State::Active));
    n.advance(Duration::from_millis(200));
    assert_eq!(released(&n.user_events[0], active), Some(27));
    assert!(n.users[0].busy_channels().is_empty());
}

#[test]
fn t309_stops_when_the_link_returns_and_status_reports_the_state() {
    let mut n = Net::new(Interface::Pri, 0);
    let active = n.user_setup(0, enbloc("1"));
    let (nc, _) = Net::incoming(&n.net_events).pop().unwrap();
    let now = n.now;
    n.net.connect(now, nc).unwrap();
    n.run();
    n.users[0].dl_released(now, Link::Tei(0));
    n.advance(Duration::from_secs(2));
    n.users[0].dl_established(n.now, Link::Tei(0));
    n.run();
    let st = n.sent(false, MessageType::Status);
    assert_eq!(st.len(), 1);
    assert!(st[0].ies.contains(&Ie::CallState(10)));
    n.advance(Duration::from_secs(10));
    assert_eq!(n.users[0].state(active), Some(State::Active));
    assert_eq!(n.net.state(nc), Some(State::Active), "the network found the states compatible");
}

#[test]
fn glare_on_pri_network_wins_user_reselects() {
    let mut n = Net::new(Interface::Pri, 0);
    // Both sides want channel 5 at once: deliver nothing until both sent.
    n.mute_users = true;
    n.mute_net = true;
    let now = n.now;
    let uc = n.users[0].setup(now, SetupInfo { channel: Some(5), ..enbloc("1") }).unwrap();
    let nc = n.net.setup(now, SetupInfo { channel: Some(5), exclusive: true, ..enbloc("2") }).unwrap();
    let u_tx: Vec<_> = std::iter::from_fn(|| n.users[0].poll_transmit()).collect();
    let n_tx: Vec<_> = std::iter::from_fn(|| n.net.poll_transmit()).collect();
    n.mute_users = false;
    n.mute_net = false;
    for t in &n_tx {
        n.users[0].handle_message(now, t.link, &t.octets);
    }
    for t in &u_tx {
        n.net.handle_message(now, t.link, &t.octets);
    }
    n.run();
    // The network's call keeps 5; the user's call is moved by the network.
    let (uin, info) = Net::incoming(&n.user_events[0]).pop().unwrap();
    assert_eq!(info.channel, Some(5));
    assert_eq!(n.users[0].channel_owner(5), Some(uin));
    let (nin, info) = Net::incoming(&n.net_events).pop().unwrap();
    let other = info.channel.unwrap();
    assert_ne!(other, 5);
    n.net.proceeding(now, nin).unwrap();
    n.run();
    assert!(n.user_events[0].contains(&Event::ChannelChanged { call: uc, channel: other }));
    assert_eq!(n.users[0].channel_owner(other), Some(uc));
    assert_eq!(n.net.channel_owner(5), Some(nc));
}

#[test]
fn exclusive_channel_in_use_is_refused_with_44_and_a_full_span_with_34() {
    let mut n = Net::new(Interface::Bri, 0);
    let a = n.user_setup(0, SetupInfo { channel: Some(1), exclusive: true, ..enbloc("1") });
    let _ = a;
    // B1 is held; another user SETUP asking B1 exclusively.
    let msg = Message::new(
        CallRef { len: 1, flag: false, value: 77 },
        MessageType::Setup,
        vec![
            Ie::BearerCapability(gw_isdn::q931::BearerCapability {
                coding_standard: 0,
                transfer_capability: 0,
                transfer_mode: 0,
                transfer_rate: 0x10,
                rate_multiplier: None,
                layer1: Some(3),
            }),
            Ie::ChannelId(ChannelId { primary: false, exclusive: true, d_channel: false, selection: 1, channel: None }),
        ],
    );
    n.net.handle_message(n.now, Link::Tei(0), &msg.to_vec());
    let t = n.net.poll_transmit().unwrap();
    let m = Message::parse(&t.octets).unwrap();
    assert_eq!((m.message_type, cause_of(&m)), (MessageType::ReleaseComplete, Some(44)));
    // Fill B2, then a third call finds no channel: 34 at the requester.
    let _b = n.user_setup(0, enbloc("2"));
    assert_eq!(n.users[0].setup(n.now, enbloc("3")), Err(call::RequestError::NoChannel(34)));
    assert_eq!(n.net.busy_channels(), [1, 2]);
}

#[test]
fn messages_for_unknown_calls_5_8_3_2() {
    let mut n = Net::new(Interface::Pri, 0);
    let u = &mut n.users[0];
    let cr = CallRef { len: 2, flag: true, value: 999 };
    let send = |u: &mut CallControl, mt: MessageType, ies: Vec<Ie>| {
        u.handle_message(n.now, Link::Tei(0), &Message::new(cr, mt, ies).to_vec());
        u.poll_transmit().map(|t| Message::parse(&t.octets).unwrap())
    };
    let r = send(u, MessageType::Release, vec![]).unwrap();
    assert_eq!((r.message_type, cause_of(&r), r.call_ref.flag), (MessageType::ReleaseComplete, Some(81), false));
    assert_eq!(send(u, MessageType::ReleaseComplete, vec![]), None);
    let r = send(u, MessageType::StatusEnquiry, vec![]).unwrap();
    assert_eq!(r.message_type, MessageType::Status);
    assert!(r.ies.contains(&Ie::CallState(0)));
    let r = send(u, MessageType::Alerting, vec![]).unwrap();
    assert_eq!((r.message_type, cause_of(&r)), (MessageType::ReleaseComplete, Some(81)));
    assert_eq!(send(u, MessageType::Setup, vec![]), None, "SETUP with the flag set is ignored");
    assert_eq!(u.calls().count(), 0);
    // Global call reference: a message other than RESTART/STATUS gets STATUS 81.
    u.handle_message(n.now, Link::Tei(0), &Message::new(CallRef::global(2), MessageType::Connect, vec![]).to_vec());
    let r = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!((r.message_type, cause_of(&r)), (MessageType::Status, Some(81)));
}

fn setup_from_network(value: u16, extra: Vec<Ie>) -> Vec<u8> {
    let mut ies = vec![
        Ie::BearerCapability(gw_isdn::q931::BearerCapability {
            coding_standard: 0,
            transfer_capability: 0,
            transfer_mode: 0,
            transfer_rate: 0x10,
            rate_multiplier: None,
            layer1: Some(3),
        }),
        Ie::ChannelId(ChannelId { primary: true, exclusive: true, d_channel: false, selection: 1, channel: Some(7) }),
    ];
    ies.extend(extra);
    Message::new(CallRef { len: 2, flag: false, value }, MessageType::Setup, ies).to_vec()
}

#[test]
fn comprehension_required_and_unknown_elements_5_8() {
    let mut n = Net::new(Interface::Pri, 0);
    let u = &mut n.users[0];
    let now = n.now;
    // Unknown element with "comprehension required" (id 0000 xxxx): cause 96, call refused.
    u.handle_message(now, Link::Tei(0), &setup_from_network(5, vec![Ie::Unknown { codeset: 0, id: 0x01, data: vec![1] }]));
    let r = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!((r.message_type, cause_of(&r)), (MessageType::ReleaseComplete, Some(96)));
    assert!(u.busy_channels().is_empty());
    // An unknown optional element: the call goes on, STATUS 99 tells the peer.
    u.handle_message(now, Link::Tei(0), &setup_from_network(6, vec![Ie::Unknown { codeset: 0, id: 0x7E, data: vec![1] }]));
    assert!(matches!(u.poll_event(), Some(Event::Setup { .. })));
    let r = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!((r.message_type, cause_of(&r)), (MessageType::Status, Some(99)));
    assert_eq!(u.busy_channels(), [7]);
    // An unknown message type for that call: STATUS 97.
    let cr = CallRef { len: 2, flag: false, value: 6 };
    u.handle_message(now, Link::Tei(0), &Message::new(cr, MessageType::Unknown(0x33), vec![]).to_vec());
    let r = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!((r.message_type, cause_of(&r)), (MessageType::Status, Some(97)));
    // PROGRESS without its mandatory progress indicator: STATUS 96.
    u.handle_message(now, Link::Tei(0), &Message::new(cr, MessageType::Progress, vec![]).to_vec());
    let r = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!((r.message_type, cause_of(&r)), (MessageType::Status, Some(96)));
    // CONNECT ACK while we have not connected: not compatible with the state, 98.
    u.handle_message(now, Link::Tei(0), &Message::new(cr, MessageType::ConnectAcknowledge, vec![]).to_vec());
    let r = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!((r.message_type, cause_of(&r)), (MessageType::Status, Some(98)));
    // DISCONNECT without cause: still clears, RELEASE carries 96.
    u.handle_message(now, Link::Tei(0), &Message::new(cr, MessageType::Disconnect, vec![]).to_vec());
    let r = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!((r.message_type, cause_of(&r)), (MessageType::Release, Some(96)));
    // The network's RELEASE COMPLETE ends it.
    u.handle_message(now, Link::Tei(0), &Message::new(cr, MessageType::ReleaseComplete, vec![]).to_vec());
    assert!(u.busy_channels().is_empty());
    assert_eq!(u.calls().count(), 0);
}

#[test]
fn status_enquiry_t322() {
    let mut n = Net::new(Interface::Pri, 0);
    let c = n.user_setup(0, enbloc("1"));
    let (nc, _) = Net::incoming(&n.net_events).pop().unwrap();
    n.net.proceeding(n.now, nc).unwrap();
    n.run();
    n.users[0].status_enquiry(n.now, c).unwrap();
    n.run();
    let st = n.sent(true, MessageType::Status);
    assert!(st[0].ies.contains(&Ie::CallState(3)), "N3 outgoing call proceeding");
    assert!(n.user_events[0].iter().any(|e| matches!(e, Event::Status { state: 3, cause: 30, .. })));
    // Unanswered enquiries: T322 twice more, then the call is cleared with 41.
    n.mute_net = true;
    n.users[0].status_enquiry(n.now, c).unwrap();
    n.run();
    n.advance(Duration::from_secs(13));
    assert_eq!(n.users[0].state(c), Some(State::DisconnectSent));
    assert_eq!(cause_of(n.sent(false, MessageType::Disconnect)[0]), Some(41));
}

#[test]
fn overlap_receiving_t302_and_digits() {
    let mut n = Net::new(Interface::Pri, 0);
    let c = n.user_setup(0, SetupInfo { called: called("12"), ..Default::default() });
    let (nc, info) = Net::incoming(&n.net_events).pop().unwrap();
    assert!(!info.sending_complete);
    n.net.setup_ack(n.now, nc).unwrap();
    n.run();
    assert!(n.user_events[0].iter().any(|e| matches!(e, Event::SetupAck { .. })));
    n.users[0].information(n.now, c, b"34", false).unwrap();
    n.run();
    assert!(n.net_events.contains(&Event::Digits { call: nc, digits: b"34".to_vec(), complete: false }));
    // No more digits: T302 (15 s) tells the gateway, which gives up with 28.
    n.advance(Duration::from_secs(15));
    assert!(n.net_events.contains(&Event::DigitTimeout { call: nc }));
    n.net.disconnect(n.now, nc, 28).unwrap();
    n.run();
    assert_eq!(released(&n.user_events[0], c), Some(28));
    // T304 at the user side too: after SETUP ACK, silence clears with 102.
    let c = n.user_setup(0, SetupInfo { called: called("9"), ..Default::default() });
    let (nc, _) = Net::incoming(&n.net_events).into_iter().last().unwrap();
    n.net.setup_ack(n.now, nc).unwrap();
    n.run();
    n.mute_net = true;
    n.advance(Duration::from_secs(30));
    assert_eq!(n.users[0].state(c), Some(State::DisconnectSent));
}

#[test]
fn ptmp_broadcast_setup_first_connect_wins_others_get_26() {
    let mut n = Net::new(Interface::Bri, 3);
    let nc = n.net_setup(enbloc("55"));
    assert_eq!(n.log[0].1, Link::Broadcast);
    let calls: Vec<CallId> = (0..3).map(|k| Net::incoming(&n.user_events[k]).pop().unwrap().0).collect();
    let now = n.now;
    n.users[0].alerting(now, calls[0]).unwrap();
    n.users[1].alerting(now, calls[1]).unwrap();
    n.users[2].disconnect(now, calls[2], 17).unwrap(); // busy: RELEASE COMPLETE 17
    n.run();
    n.users[1].connect(now, calls[1]).unwrap();
    n.run();
    assert_eq!(n.users[1].state(calls[1]), Some(State::Active));
    assert_eq!(released(&n.user_events[0], calls[0]), Some(26), "non-selected user clearing");
    assert_eq!(n.net.state(nc), Some(State::Active));
    // The winner's late answer and the loser's RELEASE COMPLETE leave nothing behind.
    assert_eq!(n.net.calls().count(), 1);
    assert_eq!(n.users[0].calls().count(), 0);
    let now = n.now;
    n.net.disconnect(now, nc, 16).unwrap();
    n.run();
    assert_eq!(released(&n.user_events[1], calls[1]), Some(16));
    assert_eq!(n.net.calls().count(), 0);
}

#[test]
fn ptmp_nobody_answers_cause_18() {
    let mut n = Net::new(Interface::Bri, 2);
    n.mute_users = true;
    let nc = n.net_setup(enbloc("55"));
    n.advance(Duration::from_secs(9));
    assert_eq!(n.sent(true, MessageType::Setup).len(), 2);
    assert_eq!(released(&n.net_events, nc), Some(18));
}

#[test]
fn restart_channel_and_interface() {
    let mut n = Net::new(Interface::Pri, 0);
    let a = n.user_setup(0, SetupInfo { channel: Some(3), exclusive: true, ..enbloc("1") });
    let b = n.user_setup(0, SetupInfo { channel: Some(4), exclusive: true, ..enbloc("2") });
    n.net.restart(n.now, Some(3)).unwrap();
    n.run();
    assert_eq!(released(&n.user_events[0], a), Some(41));
    assert_eq!(n.users[0].busy_channels(), [4]);
    assert!(n.net_events.contains(&Event::RestartAcknowledged { channel: Some(3) }));
    n.users[0].restart(n.now, None).unwrap();
    n.run();
    assert_eq!(released(&n.user_events[0], b), Some(41));
    assert!(n.net.busy_channels().is_empty() && n.users[0].busy_channels().is_empty());
    assert!(n.net_events.contains(&Event::Restarted { channel: None }));
    // Unanswered RESTART: T316 twice, then failure.
    n.mute_net = true;
    n.users[0].restart(n.now, Some(9)).unwrap();
    n.run();
    n.advance(Duration::from_secs(240));
    assert_eq!(n.sent(false, MessageType::Restart).len(), 3);
    assert!(n.user_events[0].contains(&Event::RestartFailed { channel: Some(9) }));
}

#[test]
fn clear_collision_and_inband_disconnect() {
    let mut n = Net::new(Interface::Pri, 0);
    let c = n.user_setup(0, enbloc("1"));
    let (nc, _) = Net::incoming(&n.net_events).pop().unwrap();
    let now = n.now;
    n.net.alerting(now, nc).unwrap();
    n.run();
    // DISCONNECT with progress 8 (announcement): the user keeps listening.
    let cr = CallRef { len: 2, flag: true, value: 1 };
    let d = Message::new(
        cr,
        MessageType::Disconnect,
        vec![
            Ie::Cause(Cause { coding_standard: 0, location: 3, value: 1, diagnostics: vec![] }),
            Ie::Progress(Progress { coding_standard: 0, location: 3, description: 8 }),
        ],
    );
    n.mute_users = true;
    n.users[0].handle_message(now, Link::Tei(0), &d.to_vec());
    n.run();
    assert_eq!(n.users[0].state(c), Some(State::DisconnectReceived));
    assert!(n.user_events[0].iter().any(|e| matches!(e, Event::Disconnect { cause: 1, location: 3, inband: true, .. })));
    n.users[0].release(now, c, 16).unwrap();
    n.run();
    assert_eq!(n.users[0].state(c), Some(State::ReleaseRequest));
    // Release collision: their RELEASE while ours is out: no RELEASE COMPLETE.
    let before = n.sent(false, MessageType::ReleaseComplete).len();
    n.users[0].handle_message(now, Link::Tei(0), &Message::new(cr, MessageType::Release, vec![]).to_vec());
    n.run();
    assert_eq!(n.sent(false, MessageType::ReleaseComplete).len(), before);
    assert_eq!(n.users[0].calls().count(), 0);
}

// ---- random sequences -------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    UserSetup(Option<u8>, bool),
    NetSetup(Option<u8>),
    Request(bool, u8, u8),
    Message(bool, Vec<u8>),
    Advance(u16),
    LinkDown(bool),
    LinkUp(bool),
}

fn arb_ie() -> impl Strategy<Value = Ie> {
    prop_oneof![
        (any::<bool>(), any::<bool>(), 0u8..4, proptest::option::of(0u8..33))
            .prop_map(|(primary, exclusive, selection, channel)| Ie::ChannelId(ChannelId { primary, exclusive, d_channel: false, selection, channel })),
        (0u8..128, 0u8..16).prop_map(|(value, location)| Ie::Cause(Cause { coding_standard: 0, location, value, diagnostics: vec![] })),
        (0u8..32).prop_map(Ie::CallState),
        Just(Ie::SendingComplete),
        (0u8..10).prop_map(|d| Ie::Progress(Progress { coding_standard: 0, location: 0, description: d })),
        Just(Ie::RestartIndicator(0)),
        Just(Ie::RestartIndicator(7)),
        Just(Ie::Unknown { codeset: 0, id: 0x02, data: vec![0] }),
        Just(Ie::Unknown { codeset: 0, id: 0x7E, data: vec![0] }),
        Just(Ie::Invalid { codeset: 0, id: 0x18, data: vec![0] }),
        Just(Ie::BearerCapability(gw_isdn::q931::BearerCapability {
            coding_standard: 0,
            transfer_capability: 0,
            transfer_mode: 0,
            transfer_rate: 0x10,
            rate_multiplier: None,
            layer1: Some(3),
        })),
        "[0-9]{0,4}".prop_map(|d| Ie::CalledNumber(PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: d.into_bytes() })),
    ]
}

fn arb_message() -> impl Strategy<Value = Vec<u8>> {
    let types = [0x01u8, 0x02, 0x03, 0x05, 0x07, 0x0D, 0x0F, 0x45, 0x46, 0x4D, 0x4E, 0x5A, 0x75, 0x7B, 0x7D, 0x33];
    prop_oneof![
        4 => (proptest::sample::select(types.to_vec()), any::<bool>(), 0u16..5, proptest::collection::vec(arb_ie(), 0..5)).prop_map(|(t, flag, value, ies)| {
            Message::new(CallRef { len: 2, flag, value }, MessageType::from_code(t), ies).to_vec()
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..30),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (proptest::option::of(1u8..32), any::<bool>()).prop_map(|(c, x)| Step::UserSetup(c, x)),
        proptest::option::of(1u8..32).prop_map(Step::NetSetup),
        (any::<bool>(), 0u8..12, 0u8..6).prop_map(|(s, r, k)| Step::Request(s, r, k)),
        (any::<bool>(), arb_message()).prop_map(|(s, m)| Step::Message(s, m)),
        (0u16..40_000).prop_map(Step::Advance),
        any::<bool>().prop_map(Step::LinkDown),
        any::<bool>().prop_map(Step::LinkUp),
    ]
}

fn request(cc: &mut CallControl, now: Instant, r: u8, k: u8) {
    let ids: Vec<CallId> = cc.calls().map(|c| c.0).collect();
    let Some(&id) = ids.get(usize::from(k) % ids.len().max(1)) else { return };
    let _ = match r {
        0 => cc.setup_ack(now, id),
        1 => cc.proceeding(now, id),
        2 => cc.alerting(now, id),
        3 => cc.connect(now, id),
        4 => cc.progress(now, id, 8),
        5 => cc.disconnect(now, id, 16),
        6 => cc.release(now, id, 16),
        7 => cc.information(now, id, b"5", k.is_multiple_of(2)),
        8 => cc.status_enquiry(now, id),
        9 => cc.restart(now, Some(k + 1)),
        10 => cc.restart(now, None),
        _ => cc.disconnect(now, id, 34),
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random requests, messages (valid, odd and garbage), timer runs and
    /// link losses never panic, never hold a B channel twice or outside the
    /// span, and once everything is cleared no channel is left busy.
    #[test]
    fn random_sequences_keep_channels_consistent(steps in proptest::collection::vec(arb_step(), 1..60)) {
        random_sequence(Interface::Pri, 0, steps)?;
    }

    /// The same on a PTMP BRI: a network with two TEs, broadcast SETUPs,
    /// messages from either TEI.
    #[test]
    fn random_sequences_on_a_ptmp_bus(steps in proptest::collection::vec(arb_step(), 1..60)) {
        random_sequence(Interface::Bri, 2, steps)?;
    }
}

fn random_sequence(interface: Interface, ptmp: usize, steps: Vec<Step>) -> Result<(), TestCaseError> {
    {
        let mut n = Net::new(interface, ptmp);
        let k = n.users.len() - 1;
        let link = Link::Tei(tei_of(k, ptmp > 0));
        for s in steps {
            let now = n.now;
            match s {
                Step::UserSetup(ch, ex) => { let _ = n.users[0].setup(now, SetupInfo { channel: ch, exclusive: ex, ..enbloc("1") }); }
                Step::NetSetup(ch) => { let _ = n.net.setup(now, SetupInfo { channel: ch, ..enbloc("2") }); }
                Step::Request(true, r, q) => request(&mut n.users[k], now, r, q),
                Step::Request(false, r, k) => request(&mut n.net, now, r, k),
                Step::Message(true, m) => n.users[k].handle_message(now, link, &m),
                Step::Message(false, m) => n.net.handle_message(now, link, &m),
                Step::Advance(ms) => n.advance(Duration::from_millis(u64::from(ms))),
                Step::LinkDown(true) => n.users[k].dl_released(now, link),
                Step::LinkDown(false) => n.net.dl_released(now, link),
                Step::LinkUp(true) => n.users[k].dl_established(now, link),
                Step::LinkUp(false) => n.net.dl_established(now, link),
            }
            n.run();
            // Every busy channel belongs to a call that exists.
            for cc in std::iter::once(&n.net).chain(n.users.iter()) {
                for ch in cc.busy_channels() {
                    let owner = cc.channel_owner(ch).unwrap();
                    prop_assert!(cc.state(owner).is_some());
                }
            }
        }
        // Bring the links back and clear whatever is left: nothing stays busy.
        let now = n.now;
        n.users[k].dl_established(now, link);
        n.net.dl_established(now, link);
        for cc in std::iter::once(&mut n.net).chain(n.users.iter_mut()) {
            let ids: Vec<CallId> = cc.calls().map(|c| c.0).collect();
            for id in ids {
                let _ = cc.disconnect(now, id, 16);
            }
        }
        n.run();
        n.advance(Duration::from_secs(200));
        prop_assert!(n.net.busy_channels().is_empty(), "{:?}", n.net.calls().collect::<Vec<_>>());
        for u in &n.users {
            prop_assert!(u.busy_channels().is_empty(), "{:?}", u.calls().collect::<Vec<_>>());
        }
    }
    Ok(())
}

#[test]
fn t310_t313_and_t301() {
    // T310: CALL PROCEEDING, then nothing for 30 s: DISCONNECT 102.
    let mut n = Net::new(Interface::Pri, 0);
    let c = n.user_setup(0, enbloc("1"));
    let (nc, _) = Net::incoming(&n.net_events).pop().unwrap();
    n.net.proceeding(n.now, nc).unwrap();
    n.run();
    n.advance(Duration::from_millis(29_900));
    assert_eq!(n.users[0].state(c), Some(State::OutProceeding));
    n.advance(Duration::from_millis(200));
    assert_eq!(cause_of(n.sent(false, MessageType::Disconnect)[0]), Some(102));
    n.advance(Duration::from_secs(1));
    assert_eq!(n.users[0].calls().count(), 0);

    // T313: our CONNECT is never acknowledged: DISCONNECT 102 after 4 s.
    let mut n = Net::new(Interface::Pri, 0);
    let nc = n.net_setup(enbloc("2"));
    let (uc, _) = Net::incoming(&n.user_events[0]).pop().unwrap();
    n.mute_users = true;
    n.users[0].connect(n.now, uc).unwrap();
    n.run();
    n.advance(Duration::from_millis(3_900));
    assert_eq!(n.users[0].state(uc), Some(State::InConnectRequest));
    n.advance(Duration::from_millis(200));
    assert_eq!(n.users[0].state(uc), Some(State::DisconnectSent));
    assert_eq!(cause_of(n.sent(false, MessageType::Disconnect)[0]), Some(102));
    let _ = nc;

    // T301: ALERTING and no answer for 3 minutes: cleared with 19.
    let mut n = Net::new(Interface::Pri, 0);
    let c = n.user_setup(0, enbloc("3"));
    let (nc, _) = Net::incoming(&n.net_events).pop().unwrap();
    n.net.alerting(n.now, nc).unwrap();
    n.run();
    n.advance(Duration::from_secs(181));
    assert_eq!(released(&n.user_events[0], c), Some(19));
    assert!(n.net.busy_channels().is_empty() && n.users[0].busy_channels().is_empty());
}

#[test]
fn an_external_timer_wheel_drives_the_timers_by_name() {
    use call::{Timer, TimerAction, TimerId};
    let now = Instant::now();
    let mut u = CallControl::new(call::Config::new(Side::User, Interface::Pri, &call::EUROISDN));
    u.dl_established(now, Link::Tei(0));
    let c = u.setup(now, enbloc("1")).unwrap();
    let t303 = TimerId { call: Some(c), timer: Timer::T303 };
    assert_eq!(u.poll_timer(), Some(TimerAction::Start { id: t303, at: now + Duration::from_secs(4) }));
    assert_eq!(u.poll_timer(), None);
    while u.poll_transmit().is_some() {}
    // The wheel fires T303 by name: SETUP again, T303 started again.
    u.handle_timer(now + Duration::from_secs(4), t303);
    let m = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!(m.message_type, MessageType::Setup);
    assert!(matches!(u.poll_timer(), Some(TimerAction::Start { id, .. }) if id == t303));
    // A timer that is not running (stale, or another call's) does nothing.
    u.handle_timer(now, TimerId { call: Some(c), timer: Timer::T310 });
    u.handle_timer(now, TimerId { call: Some(CallId(999)), timer: Timer::T303 });
    u.handle_timer(now, TimerId { call: None, timer: Timer::T309 });
    assert_eq!(u.poll_transmit(), None);
    // CALL PROCEEDING stops T303 and starts T310, both announced.
    let cp = Message::new(
        CallRef { len: 2, flag: true, value: 1 },
        MessageType::CallProceeding,
        vec![Ie::ChannelId(ChannelId { primary: true, exclusive: true, d_channel: false, selection: 1, channel: Some(1) })],
    );
    u.handle_message(now, Link::Tei(0), &cp.to_vec());
    assert_eq!(u.poll_timer(), Some(TimerAction::Stop { id: t303 }));
    assert!(matches!(u.poll_timer(), Some(TimerAction::Start { id: TimerId { timer: Timer::T310, .. }, .. })));
    assert_eq!(u.state(c), Some(State::OutProceeding));
}

#[test]
fn ni2_variant_is_a_table_of_differences() {
    // NI-2 on a T1: channels 1-23, en-bloc only, single-interface restart.
    let now = Instant::now();
    let cfg = call::Config::new(Side::User, Interface::Pri, &call::NI2);
    assert_eq!(cfg.channels, (1..=23).collect::<Vec<u8>>());
    assert_eq!(cfg.timers.t310, Duration::from_secs(10));
    let mut u = CallControl::new(cfg);
    u.dl_established(now, Link::Tei(0));
    assert_eq!(
        u.setup(now, SetupInfo { channel: Some(24), exclusive: true, ..enbloc("1") }),
        Err(call::RequestError::NoChannel(6))
    );
    u.restart(now, None).unwrap();
    let m = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert!(m.ies.contains(&Ie::RestartIndicator(6)));
    // A SETUP without a called number cannot be completed by overlap: refused.
    u.handle_message(now, Link::Tei(0), &setup_from_network(3, vec![]));
    let m = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
    assert_eq!((m.message_type, cause_of(&m)), (MessageType::ReleaseComplete, Some(28)));
    // EuroISDN accepts the same SETUP (digits may follow by overlap).
    let mut e = CallControl::new(call::Config::new(Side::User, Interface::Pri, &call::EUROISDN));
    e.handle_message(now, Link::Tei(0), &setup_from_network(3, vec![]));
    assert!(matches!(e.poll_event(), Some(Event::Setup { .. })));
}

#[test]
fn variants_differ_by_their_table_only() {
    let now = Instant::now();
    assert_eq!(call::Variant::by_name("euroisdn"), Some(&call::EUROISDN));
    assert_eq!(call::Variant::by_name("ni2"), Some(&call::NI2));
    assert_eq!(call::Variant::by_name("qsig"), Some(&call::QSIG));
    assert_eq!(call::Variant::by_name("dms100"), None);
    for (v, law, user_loc, net_loc, channels) in [
        (&call::EUROISDN, 3, 0, 2, 30),
        (&call::NI2, 2, 0, 2, 23),
        (&call::QSIG, 3, 1, 1, 30),
    ] {
        // Our SETUP's bearer: the variant's G.711 law.
        let mut u = CallControl::new(call::Config::new(Side::User, Interface::Pri, v));
        assert_eq!(u.config().channels.len(), channels, "{}", v.name);
        u.dl_established(now, Link::Tei(0));
        let c = u.setup(now, enbloc("1")).unwrap();
        let m = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
        let Some(Ie::BearerCapability(b)) = m.ie(gw_isdn::q931::ie_id::BEARER_CAPABILITY) else { panic!("{m:?}") };
        assert_eq!(b.layer1, Some(law), "{}", v.name);
        // The location of our causes, on each side.
        u.disconnect(now, c, 16).unwrap();
        let m = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
        let Some(Ie::Cause(Cause { location, .. })) = m.ie(gw_isdn::q931::ie_id::CAUSE) else { panic!("{m:?}") };
        assert_eq!(*location, user_loc, "{} user side", v.name);
        let mut n = CallControl::new(call::Config::new(Side::Network, Interface::Pri, v));
        n.dl_established(now, Link::Tei(0));
        n.handle_message(now, Link::Tei(0), &setup_from_network(9, vec![Ie::CalledNumber(called("12").unwrap())]));
        let Some(Event::Setup { call, .. }) = n.poll_event() else { panic!("{}: no SETUP", v.name) };
        n.disconnect(now, call, 17).unwrap();
        let m = std::iter::from_fn(|| n.poll_transmit()).map(|t| Message::parse(&t.octets).unwrap()).last().unwrap();
        let Some(Ie::Cause(Cause { location, value: 17, .. })) = m.ie(gw_isdn::q931::ie_id::CAUSE) else { panic!("{m:?}") };
        assert_eq!(*location, net_loc, "{} network side", v.name);
    }
    // The message set: NI-2 has no SETUP ACKNOWLEDGE, so one is answered
    // like an unknown message (STATUS 97); EuroISDN and QSIG take it.
    for (v, known) in [(&call::EUROISDN, true), (&call::NI2, false), (&call::QSIG, true)] {
        let mut u = CallControl::new(call::Config::new(Side::User, Interface::Pri, v));
        u.dl_established(now, Link::Tei(0));
        let c = u.setup(now, SetupInfo { called: called("12"), ..Default::default() }).unwrap();
        let sent = Message::parse(&u.poll_transmit().unwrap().octets).unwrap();
        let ack = Message::new(
            CallRef { flag: true, ..sent.call_ref },
            MessageType::SetupAcknowledge,
            vec![Ie::ChannelId(ChannelId { primary: true, exclusive: true, d_channel: false, selection: 1, channel: Some(3) })],
        );
        u.handle_message(now, Link::Tei(0), &ack.to_vec());
        let events: Vec<Event> = std::iter::from_fn(|| u.poll_event()).collect();
        let replies: Vec<Message> = std::iter::from_fn(|| u.poll_transmit()).map(|t| Message::parse(&t.octets).unwrap()).collect();
        if known {
            assert!(events.iter().any(|e| matches!(e, Event::SetupAck { call, .. } if *call == c)), "{}: {events:?}", v.name);
            assert!(replies.is_empty(), "{}: {replies:?}", v.name);
        } else {
            assert!(!events.iter().any(|e| matches!(e, Event::SetupAck { .. })), "{events:?}");
            assert_eq!(replies.len(), 1, "{replies:?}");
            assert_eq!((replies[0].message_type, cause_of(&replies[0])), (MessageType::Status, Some(97)));
            assert_eq!(u.state(c), Some(State::OutInitiated), "the call goes on as before");
        }
        assert_eq!(v.knows(MessageType::SetupAcknowledge), known);
    }
}
