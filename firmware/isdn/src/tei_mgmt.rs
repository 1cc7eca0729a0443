//! TEI assignment procedures for point-to-multipoint BRI (Q.921 5.3), user
//! (TE) and network (NT) side, sans-IO. Messages travel in UI frames on
//! SAPI 63, TEI 127 (the codec is [`crate::tei`]).
//!
//! Both entities take whole LAPD frames (`handle_frame`), `now`, and timer
//! expiry (`handle_timeout` at `poll_timeout`); they give frames to send
//! (`poll_transmit`) and [`Event`]s: a TEI assigned or removed, on which the
//! span creates or drops the data link of that TEI.
//!
//! - User side: identity request with a random Ri, T202 and N202 retries;
//!   identity assigned (Ri matched); identity check answered; identity
//!   remove obeyed (then a new request).
//! - Network side: automatic TEIs from the pool 64..=126; identity check
//!   (T201, twice) of one TEI or all; remove; identity verify from a TE.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::lapd::{Control, Repr, Unnumbered, SAPI_MANAGEMENT, TEI_GROUP};
use crate::tei::{Message, MessageType, AI_GROUP};

/// First and last automatically assigned TEI (Q.921 table 2).
pub const AUTO_TEI_FIRST: u8 = 64;
pub const AUTO_TEI_LAST: u8 = 126;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Assigned(u8),
    Removed(u8),
    /// User side: N202 identity requests went unanswered.
    AssignmentFailed,
}

/// A management frame, if `octets` is one: UI on SAPI 63, TEI 127.
fn management_message(octets: &[u8]) -> Option<Message> {
    let r = Repr::parse_bytes(octets).ok()?;
    if r.sapi != SAPI_MANAGEMENT || r.tei != TEI_GROUP {
        return None;
    }
    if !matches!(r.control, Control::U { kind: Unnumbered::Ui, .. }) {
        return None;
    }
    Message::parse(r.info).ok()
}

fn frame(network: bool, m: &Message) -> Vec<u8> {
    let info = m.to_vec();
    Repr { sapi: SAPI_MANAGEMENT, cr: network, tei: TEI_GROUP, control: Control::U { kind: Unnumbered::Ui, pf: false }, info: &info }
        .to_vec()
}

/// xorshift64* for Ri values (not security: Q.921 only wants TEs to differ).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u16(&mut self) -> u16 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as u16
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    Unassigned,
    AwaitingAssignment { ri: u16, tries: u8 },
    Assigned(u8),
}

/// The TE's TEI management entity.
#[derive(Debug)]
pub struct TeiUser {
    state: UserState,
    rng: Rng,
    t202_at: Option<Instant>,
    pub t202: Duration,
    pub n202: u8,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

impl TeiUser {
    /// `seed` makes Ri differ between TEs (the driver passes something
    /// unique, e.g. a serial number mixed with the boot time).
    pub fn new(seed: u64) -> Self {
        TeiUser {
            state: UserState::Unassigned,
            rng: Rng((seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1),
            t202_at: None,
            t202: Duration::from_secs(2),
            n202: 3,
            tx: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> UserState {
        self.state
    }

    pub fn tei(&self) -> Option<u8> {
        match self.state {
            UserState::Assigned(t) => Some(t),
            _ => None,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.t202_at
    }

    /// Asks the network for a TEI (MDL-ASSIGN request), unless one is held
    /// or asked for already.
    pub fn request(&mut self, now: Instant) {
        if matches!(self.state, UserState::Unassigned) {
            self.send_request(now, 1);
        }
    }

    fn send_request(&mut self, now: Instant, tries: u8) {
        let ri = self.rng.next_u16();
        self.state = UserState::AwaitingAssignment { ri, tries };
        self.tx.push_back(frame(false, &Message::new(MessageType::IdentityRequest, ri, AI_GROUP)));
        self.t202_at = Some(now + self.t202);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.t202_at.is_none_or(|t| t > now) {
            return;
        }
        self.t202_at = None;
        if let UserState::AwaitingAssignment { tries, .. } = self.state {
            if tries < self.n202 {
                self.send_request(now, tries + 1);
            } else {
                self.state = UserState::Unassigned;
                self.events.push_back(Event::AssignmentFailed);
            }
        }
    }

    pub fn handle_frame(&mut self, now: Instant, octets: &[u8]) {
        let Some(m) = management_message(octets) else { return };
        let Some(&ai) = m.ai.first() else { return };
        match (m.message_type, self.state) {
            (MessageType::IdentityAssigned, UserState::AwaitingAssignment { ri, .. })
                if m.ri == ri && (AUTO_TEI_FIRST..=AUTO_TEI_LAST).contains(&ai) =>
            {
                self.t202_at = None;
                self.state = UserState::Assigned(ai);
                self.events.push_back(Event::Assigned(ai));
            }
            (MessageType::IdentityDenied, UserState::AwaitingAssignment { ri, .. }) if m.ri == ri => {
                // Wait for T202 and ask again (5.3.2).
            }
            (MessageType::IdentityCheckRequest, UserState::Assigned(tei)) if ai == tei || ai == AI_GROUP => {
                let ri = self.rng.next_u16();
                self.tx.push_back(frame(false, &Message::new(MessageType::IdentityCheckResponse, ri, tei)));
            }
            (MessageType::IdentityRemove, UserState::Assigned(tei)) if ai == tei || ai == AI_GROUP => {
                self.state = UserState::Unassigned;
                self.events.push_back(Event::Removed(tei));
                self.send_request(now, 1);
            }
            (MessageType::IdentityAssigned, UserState::Assigned(tei)) if ai == tei => {
                // 5.3.4.1: our TEI given to someone else: a duplicate. Drop it.
                self.state = UserState::Unassigned;
                self.events.push_back(Event::Removed(tei));
                self.send_request(now, 1);
            }
            _ => {}
        }
    }

    /// Asks the network to check our TEI (identity verify, 5.3.5).
    pub fn verify(&mut self) {
        if let UserState::Assigned(tei) = self.state {
            self.tx.push_back(frame(false, &Message::new(MessageType::IdentityVerify, 0, tei)));
        }
    }
}

#[derive(Debug, Clone)]
struct Check {
    /// TEI checked, or AI_GROUP for all.
    ai: u8,
    tries: u8,
    at: Instant,
    answered: Vec<u8>,
    /// Answers with the same TEI (duplicates).
    counts: Vec<(u8, u8)>,
}

/// The NT's TEI management entity.
#[derive(Debug)]
pub struct TeiNetwork {
    assigned: Vec<u8>,
    next: u8,
    check: Option<Check>,
    pub t201: Duration,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

impl Default for TeiNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl TeiNetwork {
    pub fn new() -> Self {
        TeiNetwork {
            assigned: Vec::new(),
            next: AUTO_TEI_FIRST,
            check: None,
            t201: Duration::from_secs(1),
            tx: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn assigned(&self) -> &[u8] {
        &self.assigned
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.check.as_ref().map(|c| c.at)
    }

    fn allocate(&mut self) -> Option<u8> {
        let n = AUTO_TEI_LAST - AUTO_TEI_FIRST + 1;
        for k in 0..n {
            let t = AUTO_TEI_FIRST + (self.next - AUTO_TEI_FIRST + k) % n;
            if !self.assigned.contains(&t) {
                self.next = if t == AUTO_TEI_LAST { AUTO_TEI_FIRST } else { t + 1 };
                return Some(t);
            }
        }
        None
    }

    pub fn handle_frame(&mut self, now: Instant, octets: &[u8]) {
        let Some(m) = management_message(octets) else { return };
        let Some(&ai) = m.ai.first() else { return };
        match m.message_type {
            MessageType::IdentityRequest if ai == AI_GROUP => match self.allocate() {
                Some(t) => {
                    self.assigned.push(t);
                    self.tx.push_back(frame(true, &Message::new(MessageType::IdentityAssigned, m.ri, t)));
                    self.events.push_back(Event::Assigned(t));
                }
                None => {
                    self.tx.push_back(frame(true, &Message::new(MessageType::IdentityDenied, m.ri, AI_GROUP)));
                    // Reclaim TEIs whose TEs have gone.
                    self.check(now, None);
                }
            },
            MessageType::IdentityRequest => {
                // A non-automatic or specific TEI request: 5.3.2 allows a
                // network to deny what it did not allocate.
                self.tx.push_back(frame(true, &Message::new(MessageType::IdentityDenied, m.ri, ai)));
            }
            MessageType::IdentityCheckResponse => {
                if let Some(c) = &mut self.check {
                    for &t in &m.ai {
                        if c.ai == AI_GROUP || c.ai == t {
                            if !c.answered.contains(&t) {
                                c.answered.push(t);
                            }
                            match c.counts.iter_mut().find(|(x, _)| *x == t) {
                                Some((_, n)) => *n = n.saturating_add(1),
                                None => c.counts.push((t, 1)),
                            }
                        }
                    }
                }
            }
            MessageType::IdentityVerify if self.assigned.contains(&ai) => self.check(now, Some(ai)),
            MessageType::IdentityVerify => self.send_remove(ai),
            _ => {}
        }
    }

    /// Identity check of one TEI or (`None`) all of them (5.3.4.2).
    pub fn check(&mut self, now: Instant, tei: Option<u8>) {
        if self.check.is_some() {
            return;
        }
        let ai = tei.unwrap_or(AI_GROUP);
        self.tx.push_back(frame(true, &Message::new(MessageType::IdentityCheckRequest, 0, ai)));
        self.check = Some(Check { ai, tries: 1, at: now + self.t201, answered: Vec::new(), counts: Vec::new() });
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(mut c) = self.check.take() else { return };
        if c.at > now {
            self.check = Some(c);
            return;
        }
        let checked: Vec<u8> = if c.ai == AI_GROUP { self.assigned.clone() } else { vec![c.ai] };
        let all_answered = checked.iter().all(|t| c.answered.contains(t));
        if !all_answered && c.tries < 2 {
            c.tries += 1;
            c.at = now + self.t201;
            self.tx.push_back(frame(true, &Message::new(MessageType::IdentityCheckRequest, 0, c.ai)));
            self.check = Some(c);
            return;
        }
        for t in checked {
            let duplicate = c.counts.iter().any(|&(x, n)| x == t && n > c.tries);
            if !c.answered.contains(&t) || duplicate {
                self.remove(t);
            }
        }
    }

    fn send_remove(&mut self, tei: u8) {
        // Sent twice (5.3.4.2).
        let f = frame(true, &Message::new(MessageType::IdentityRemove, 0, tei));
        self.tx.push_back(f.clone());
        self.tx.push_back(f);
    }

    /// Removes a TEI (or all with [`AI_GROUP`]).
    pub fn remove(&mut self, tei: u8) {
        let gone: Vec<u8> = if tei == AI_GROUP { std::mem::take(&mut self.assigned) } else { self.assigned.iter().copied().filter(|&t| t == tei).collect() };
        self.assigned.retain(|t| !gone.contains(t));
        self.send_remove(tei);
        for t in gone {
            self.events.push_back(Event::Removed(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pump(user: &mut [TeiUser], net: &mut TeiNetwork, now: Instant, drop_user: Option<usize>) {
        for _ in 0..10 {
            let mut moved = false;
            for (k, u) in user.iter_mut().enumerate() {
                while let Some(f) = u.poll_transmit() {
                    moved = true;
                    if Some(k) != drop_user {
                        net.handle_frame(now, &f);
                    }
                }
            }
            while let Some(f) = net.poll_transmit() {
                moved = true;
                for (k, u) in user.iter_mut().enumerate() {
                    if Some(k) != drop_user {
                        u.handle_frame(now, &f);
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    #[test]
    fn several_tes_get_distinct_teis_and_checks_remove_the_silent_one() {
        let t0 = Instant::now();
        let mut tes: Vec<TeiUser> = (1..=3).map(|s| TeiUser::new(s * 7919)).collect();
        let mut nt = TeiNetwork::new();
        for te in &mut tes {
            te.request(t0);
        }
        pump(&mut tes, &mut nt, t0, None);
        let teis: Vec<u8> = tes.iter().map(|t| t.tei().unwrap()).collect();
        assert_eq!(teis, [64, 65, 66]);
        assert_eq!(nt.assigned(), [64, 65, 66]);
        assert_eq!(tes[0].poll_event(), Some(Event::Assigned(64)));
        // Check all: TE 1 is unplugged and does not answer, twice: removed.
        nt.check(t0, None);
        pump(&mut tes, &mut nt, t0, Some(1));
        nt.handle_timeout(t0 + Duration::from_secs(1));
        pump(&mut tes, &mut nt, t0, Some(1));
        nt.handle_timeout(t0 + Duration::from_secs(2));
        assert_eq!(nt.assigned(), [64, 66]);
        while let Some(e) = nt.poll_event() {
            if let Event::Removed(t) = e {
                assert_eq!(t, 65);
            }
        }
        // The next request gets a fresh TEI from the pool.
        let mut late = [TeiUser::new(99)];
        late[0].request(t0);
        pump(&mut late, &mut nt, t0, None);
        assert_eq!(late[0].tei(), Some(67));
    }

    #[test]
    fn t202_retries_n202_times_then_fails() {
        let t0 = Instant::now();
        let mut te = TeiUser::new(5);
        te.request(t0);
        let mut ris = vec![];
        let mut now = t0;
        for _ in 0..3 {
            let f = te.poll_transmit().expect("identity request");
            ris.push(management_message(&f).unwrap().ri);
            now += Duration::from_secs(2);
            te.handle_timeout(now);
        }
        assert_eq!(te.poll_transmit(), None);
        assert_eq!(te.poll_event(), Some(Event::AssignmentFailed));
        assert_eq!(te.state(), UserState::Unassigned);
        // Each retry draws a new Ri.
        assert!(ris[0] != ris[1] || ris[1] != ris[2]);
    }

    #[test]
    fn remove_and_reassign() {
        let t0 = Instant::now();
        let mut tes = [TeiUser::new(11)];
        let mut nt = TeiNetwork::new();
        tes[0].request(t0);
        pump(&mut tes, &mut nt, t0, None);
        assert_eq!(tes[0].tei(), Some(64));
        nt.remove(64);
        pump(&mut tes, &mut nt, t0, None);
        // The TE obeyed and asked again; the pool moves on.
        assert_eq!(tes[0].tei(), Some(65));
        let evs: Vec<Event> = std::iter::from_fn(|| tes[0].poll_event()).collect();
        assert_eq!(evs, [Event::Assigned(64), Event::Removed(64), Event::Assigned(65)]);
    }

    #[test]
    fn a_tei_held_twice_is_removed_by_the_check() {
        let t0 = Instant::now();
        // Two TEs end up with TEI 64 (as when both drew the same Ri).
        let mut tes = [TeiUser::new(8), TeiUser::new(9)];
        let mut nt = TeiNetwork::new();
        tes[0].request(t0);
        pump(&mut tes[..1], &mut nt, t0, None);
        tes[1].request(t0);
        let ri = management_message(&tes[1].poll_transmit().unwrap()).unwrap().ri;
        tes[1].handle_frame(t0, &frame(true, &Message::new(MessageType::IdentityAssigned, ri, 64)));
        assert_eq!((tes[0].tei(), tes[1].tei()), (Some(64), Some(64)));
        // The check gets two answers for 64: removed; both ask again.
        nt.check(t0, Some(64));
        pump(&mut tes, &mut nt, t0, None);
        nt.handle_timeout(t0 + Duration::from_secs(1));
        assert!(!nt.assigned().contains(&64));
        pump(&mut tes, &mut nt, t0, None);
        let (a, b) = (tes[0].tei(), tes[1].tei());
        assert!(a.is_some() && b.is_some() && a != b, "{a:?} {b:?}");
    }

    #[test]
    fn assigned_with_another_ri_is_ignored() {
        let t0 = Instant::now();
        let mut te = TeiUser::new(3);
        te.request(t0);
        let ri = management_message(&te.poll_transmit().unwrap()).unwrap().ri;
        te.handle_frame(t0, &frame(true, &Message::new(MessageType::IdentityAssigned, ri.wrapping_add(1), 70)));
        assert_eq!(te.tei(), None);
        te.handle_frame(t0, &frame(true, &Message::new(MessageType::IdentityAssigned, ri, 70)));
        assert_eq!(te.tei(), Some(70));
    }

    proptest! {
        #[test]
        fn random_frames_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..10), 0..30)) {
            let t0 = Instant::now();
            let mut te = TeiUser::new(1);
            let mut nt = TeiNetwork::new();
            te.request(t0);
            for (k, f) in frames.iter().enumerate() {
                let now = t0 + Duration::from_millis(300 * k as u64);
                let mut f = f.clone();
                if f.len() >= 3 { f[0] = 0xFC | (f[0] & 2); f[1] = 0xFF; f[2] = 0x03; }
                te.handle_frame(now, &f);
                nt.handle_frame(now, &f);
                te.handle_timeout(now);
                nt.handle_timeout(now);
                prop_assert!(nt.assigned().iter().all(|t| (AUTO_TEI_FIRST..=AUTO_TEI_LAST).contains(t)));
            }
        }
    }
}
