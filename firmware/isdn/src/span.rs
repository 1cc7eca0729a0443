//! One D channel put together: the data link(s), TEI management and the
//! Q.931 call control, sans-IO. This is what a span driver (the D-channel
//! HAL, linesim's switch) holds per ISDN span.
//!
//! ```text
//!   D channel frames (no FCS) --> Span::handle_frame(now, octets)
//!   the clock                 --> Span::handle_timeout(now) at Span::poll_timeout()
//!   gateway requests          --> Span::request(now, |cc| cc.setup(..)/connect(..)/...)
//!   after each: Span::poll_transmit() -> frames for the D channel
//!               Span::poll_event()    -> call::Event for the gateway legs
//! ```
//!
//! Modes: point-to-point (PRI, BRI PTP; TEI 0, the user side brings the link
//! up), point-to-multipoint BRI user side (TEI by assignment, [`TeiUser`]),
//! point-to-multipoint BRI network side (TEIs from [`TeiNetwork`], a data
//! link per TEI, SETUP broadcast as UI on TEI 127).

use std::collections::VecDeque;
use std::time::Instant;

use crate::call::{self, CallControl, Link, Side};
use crate::lapd::{self, Control, Repr, Unnumbered, SAPI_CALL_CONTROL, SAPI_MANAGEMENT, TEI_GROUP};
use crate::q921::{self, DataLink, Role, State};
use crate::tei_mgmt::{self, TeiNetwork, TeiUser};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PointToPoint,
    PointToMultipoint,
}

/// Span-level happenings besides call events (for `show isdn` and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanEvent {
    Call(call::Event),
    LinkUp(u8),
    LinkDown(u8),
    TeiAssigned(u8),
    TeiRemoved(u8),
    MdlError(u8, q921::MdlError),
}

#[derive(Debug)]
pub struct Span {
    mode: Mode,
    role: Role,
    pri: bool,
    pub cc: CallControl,
    links: Vec<(u8, DataLink)>,
    tei_user: Option<TeiUser>,
    tei_net: Option<TeiNetwork>,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<SpanEvent>,
    /// Messages waiting for a TEI (user side PTMP).
    waiting: Vec<call::Tx>,
    /// Messages waiting for their data link to come up (Q.921 refuses
    /// DL-DATA while a layer-3 initiated establishment is under way).
    pending: Vec<(u8, Vec<u8>)>,
    /// Q.931 messages handed to the call control, and those that did not
    /// parse (for a driver's counters).
    pub messages_in: u64,
    pub messages_bad: u64,
}

impl Span {
    /// `seed` feeds the TE's Ri values (PTMP user side).
    pub fn new(cc_cfg: call::Config, mode: Mode, seed: u64) -> Self {
        let role = match cc_cfg.side {
            Side::User => Role::User,
            Side::Network => Role::Network,
        };
        let pri = cc_cfg.interface == call::Interface::Pri;
        let mut cc_cfg = cc_cfg;
        cc_cfg.ptmp = mode == Mode::PointToMultipoint;
        let mut s = Span {
            mode,
            role,
            pri,
            cc: CallControl::new(cc_cfg),
            links: Vec::new(),
            tei_user: None,
            tei_net: None,
            tx: VecDeque::new(),
            events: VecDeque::new(),
            waiting: Vec::new(),
            pending: Vec::new(),
            messages_in: 0,
            messages_bad: 0,
        };
        match (mode, role) {
            (Mode::PointToPoint, _) => s.add_link(0),
            (Mode::PointToMultipoint, Role::User) => s.tei_user = Some(TeiUser::new(seed)),
            (Mode::PointToMultipoint, Role::Network) => s.tei_net = Some(TeiNetwork::new()),
        }
        s
    }

    fn add_link(&mut self, tei: u8) {
        let cfg = if self.pri { q921::Config::pri(self.role) } else { q921::Config { tei, ..q921::Config::bri(self.role, tei) } };
        self.links.retain(|(t, _)| *t != tei);
        self.links.push((tei, DataLink::new(cfg)));
    }

    pub fn links(&self) -> impl Iterator<Item = (u8, State)> + '_ {
        self.links.iter().map(|(t, l)| (*t, l.state()))
    }

    /// I frames sent again, over every data link.
    pub fn retransmitted(&self) -> u64 {
        self.links.iter().map(|(_, l)| l.stats().retransmitted).sum()
    }

    fn count_message(&mut self, octets: &[u8]) {
        self.messages_in += 1;
        if crate::q931::Message::parse(octets).is_err() {
            self.messages_bad += 1;
        }
    }

    pub fn tei_network(&mut self) -> Option<&mut TeiNetwork> {
        self.tei_net.as_mut()
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SpanEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let l = self.links.iter().filter_map(|(_, l)| l.poll_timeout());
        let t = self.tei_user.as_ref().and_then(|t| t.poll_timeout());
        let n = self.tei_net.as_ref().and_then(|t| t.poll_timeout());
        l.chain(t).chain(n).chain(self.cc.poll_timeout()).min()
    }

    /// Layer 1 is up: bring up the data link (user side PTP), or ask for a
    /// TEI (user side PTMP). The network side waits for the user.
    pub fn start(&mut self, now: Instant) {
        if self.role == Role::User {
            match self.mode {
                Mode::PointToPoint => {
                    for (_, l) in &mut self.links {
                        l.dl_establish_request(now);
                    }
                }
                Mode::PointToMultipoint => {
                    if let Some(t) = &mut self.tei_user {
                        t.request(now);
                    }
                }
            }
        }
        self.pump(now);
    }

    pub fn handle_frame(&mut self, now: Instant, octets: &[u8]) {
        let Ok(p) = lapd::Packet::new_checked(octets) else { return };
        let (sapi, tei) = (p.sapi(), p.tei());
        if sapi == SAPI_MANAGEMENT && tei == TEI_GROUP {
            if let Some(t) = &mut self.tei_user {
                t.handle_frame(now, octets);
            }
            if let Some(t) = &mut self.tei_net {
                t.handle_frame(now, octets);
            }
        } else if sapi == SAPI_CALL_CONTROL && tei == TEI_GROUP {
            // Broadcast call control (a network's SETUP to all TEs).
            if self.role == Role::User {
                if let Ok(r) = Repr::parse_bytes(octets) {
                    if matches!(r.control, Control::U { kind: Unnumbered::Ui, .. }) {
                        if self.links.is_empty() {
                            // No TEI yet: the SETUP cannot be answered.
                            return;
                        }
                        let info = r.info.to_vec();
                        self.count_message(&info);
                        self.cc.handle_message(now, Link::Broadcast, &info);
                    }
                }
            }
        } else if let Some((_, l)) = self.links.iter_mut().find(|(t, _)| *t == tei) {
            l.handle_frame(now, octets);
        }
        self.pump(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for (_, l) in &mut self.links {
            l.handle_timeout(now);
        }
        if let Some(t) = &mut self.tei_user {
            t.handle_timeout(now);
        }
        if let Some(t) = &mut self.tei_net {
            t.handle_timeout(now);
        }
        self.cc.handle_timeout(now);
        self.pump(now);
    }

    /// Layer-2 re-establishment of every data link (SABME while up, Q.921
    /// 5.5.3): what a driver does after an MDL error or to test recovery.
    pub fn reestablish(&mut self, now: Instant) {
        for (_, l) in &mut self.links {
            l.dl_establish_request(now);
        }
        self.pump(now);
    }

    /// Runs a call-control request and sends what it produced.
    pub fn request<R>(&mut self, now: Instant, f: impl FnOnce(&mut CallControl, Instant) -> R) -> R {
        let r = f(&mut self.cc, now);
        self.pump(now);
        r
    }

    /// Moves frames and primitives between the layers until all is quiet.
    fn pump(&mut self, now: Instant) {
        for _ in 0..64 {
            let mut moved = false;
            // TEI management.
            let mut tei_events = Vec::new();
            if let Some(t) = &mut self.tei_user {
                while let Some(f) = t.poll_transmit() {
                    self.tx.push_back(f);
                    moved = true;
                }
                tei_events.extend(std::iter::from_fn(|| t.poll_event()));
            }
            if let Some(t) = &mut self.tei_net {
                while let Some(f) = t.poll_transmit() {
                    self.tx.push_back(f);
                    moved = true;
                }
                tei_events.extend(std::iter::from_fn(|| t.poll_event()));
            }
            for e in tei_events {
                moved = true;
                self.tei_event(now, e);
            }
            // Data links.
            let mut inds = Vec::new();
            for (tei, l) in &mut self.links {
                while let Some(f) = l.poll_transmit() {
                    self.tx.push_back(f);
                    moved = true;
                }
                while let Some(e) = l.poll_event() {
                    moved = true;
                    inds.push((*tei, e));
                }
            }
            for (tei, e) in inds {
                let link = Link::Tei(tei);
                match e {
                    q921::Event::Data(d) => {
                        self.count_message(&d);
                        self.cc.handle_message(now, link, &d)
                    }
                    q921::Event::UnitData(d) => {
                        self.count_message(&d);
                        self.cc.handle_message(now, Link::Broadcast, &d)
                    }
                    q921::Event::EstablishIndication | q921::Event::EstablishConfirm => {
                        let (go, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending).into_iter().partition(|(t, _)| *t == tei);
                        self.pending = keep;
                        if let Some((_, l)) = self.links.iter_mut().find(|(t, _)| *t == tei) {
                            for (_, m) in go {
                                let _ = l.dl_data_request(now, m);
                            }
                        }
                        self.cc.dl_established(now, link);
                        self.events.push_back(SpanEvent::LinkUp(tei));
                    }
                    q921::Event::ReleaseIndication | q921::Event::ReleaseConfirm => {
                        // What waited for this link goes with it (calls not active
                        // are cleared by the call control).
                        self.pending.retain(|(t, _)| *t != tei);
                        self.cc.dl_released(now, link);
                        self.events.push_back(SpanEvent::LinkDown(tei));
                    }
                    q921::Event::MdlError(m) => {
                        // 5.3.4.1: an unexpected UA hints that two TEs hold
                        // one TEI: check it (both answer: it is removed).
                        if matches!(m, q921::MdlError::UnsolicitedUaF1 | q921::MdlError::UnsolicitedUaF0) {
                            if let Some(n) = &mut self.tei_net {
                                n.check(now, Some(tei));
                            }
                        }
                        self.events.push_back(SpanEvent::MdlError(tei, m));
                    }
                }
            }
            // Call control.
            let mut out: Vec<call::Tx> = std::mem::take(&mut self.waiting);
            let waited = out.len();
            while let Some(t) = self.cc.poll_transmit() {
                out.push(t);
            }
            moved |= out.len() > waited;
            for t in out {
                self.send(now, t);
            }
            while self.cc.poll_timer().is_some() {}
            while let Some(e) = self.cc.poll_event() {
                moved = true;
                if let call::Event::EstablishLink { link: Link::Tei(t) } = e {
                    if let Some((_, l)) = self.links.iter_mut().find(|(x, _)| *x == t) {
                        if l.state() == State::TeiAssigned {
                            l.dl_establish_request(now);
                        }
                    }
                }
                self.events.push_back(SpanEvent::Call(e));
            }
            if !moved {
                break;
            }
        }
    }

    fn tei_event(&mut self, now: Instant, e: tei_mgmt::Event) {
        match e {
            tei_mgmt::Event::Assigned(t) => {
                self.add_link(t);
                if self.role == Role::User {
                    self.cc.set_tei(t);
                }
                self.events.push_back(SpanEvent::TeiAssigned(t));
            }
            tei_mgmt::Event::Removed(t) => {
                self.links.retain(|(x, _)| *x != t);
                self.cc.dl_released(now, Link::Tei(t));
                self.events.push_back(SpanEvent::TeiRemoved(t));
            }
            tei_mgmt::Event::AssignmentFailed => {}
        }
    }

    fn send(&mut self, now: Instant, mut t: call::Tx) {
        if self.role == Role::User && self.mode == Mode::PointToMultipoint {
            // A TE has one data link: the one of its current TEI.
            if let (Link::Tei(_), Some(tei)) = (t.link, self.tei_user.as_ref().and_then(|u| u.tei())) {
                t.link = Link::Tei(tei);
            }
        }
        match t.link {
            Link::Broadcast => {
                let f = Repr {
                    sapi: SAPI_CALL_CONTROL,
                    cr: self.role == Role::Network,
                    tei: TEI_GROUP,
                    control: Control::U { kind: Unnumbered::Ui, pf: false },
                    info: &t.octets,
                }
                .to_vec();
                self.tx.push_back(f);
            }
            Link::Tei(tei) => {
                let Some((_, l)) = self.links.iter_mut().find(|(x, _)| *x == tei) else {
                    if self.role == Role::User && self.mode == Mode::PointToMultipoint {
                        // No TEI yet: ask for one, keep the message.
                        if let Some(u) = &mut self.tei_user {
                            u.request(now);
                        }
                        self.waiting.push(t);
                    }
                    return;
                };
                if l.state() == State::TeiAssigned {
                    l.dl_establish_request(now);
                }
                if let Err(q921::DlError::NotEstablished) = l.dl_data_request(now, t.octets.clone()) {
                    if self.pending.len() < 64 {
                        self.pending.push((tei, t.octets));
                    }
                }
            }
        }
    }
}
