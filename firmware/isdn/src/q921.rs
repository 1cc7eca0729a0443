//! Q.921 data link procedures for one data link connection (one SAPI, one
//! assigned TEI), user (TE) or network (NT) side: Q.921 section 5.5 - 5.8
//! and the Annex B SDL, states 4 to 8 (TEI management, states 1 - 3, sits
//! above this and hands it a TEI).
//!
//! Sans-IO: inputs are received frames (FCS already checked and stripped),
//! layer-3 requests and timer expiry, each with `now`. After any input drain
//! [`DataLink::poll_transmit`] and [`DataLink::poll_event`], then sleep until
//! [`DataLink::poll_timeout`] and call [`DataLink::handle_timeout`].
//!
//! Choices where Q.921 leaves one: on T200 expiry in the multiple frame
//! established state we send an enquiry (RR/RNR command, P=1) rather than
//! re-sending the last I frame; an acknowledgement owed for a received I
//! frame is sent at once (RR response) unless an I frame carries it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::lapd::{self, Control, Repr, Supervisory, Unnumbered, TEI_GROUP};

/// Which side of the interface this entity is (Q.921 3.3.2, table 1: the
/// network sends commands with C/R = 1, the user with C/R = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Terminal equipment (TE), the user side.
    User,
    /// Network (NT / exchange) side.
    Network,
}

impl Role {
    /// The C/R bit this side puts in its commands.
    const fn command_cr(self) -> bool {
        matches!(self, Role::Network)
    }
}

/// System parameters (Q.921 5.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub role: Role,
    pub sapi: u8,
    pub tei: u8,
    /// Maximum number of outstanding I frames (window), 1..=127.
    pub k: u8,
    /// Maximum number of retransmissions.
    pub n200: u8,
    /// Maximum information field length.
    pub n201: usize,
    pub t200: Duration,
    pub t203: Duration,
}

impl Config {
    /// BRI call-control defaults: SAPI 0, k = 1, N200 = 3, T200 = 1 s, T203 = 10 s.
    pub fn bri(role: Role, tei: u8) -> Self {
        Config {
            role,
            sapi: lapd::SAPI_CALL_CONTROL,
            tei,
            k: 1,
            n200: 3,
            n201: lapd::N201,
            t200: Duration::from_secs(1),
            t203: Duration::from_secs(10),
        }
    }

    /// PRI call-control defaults: TEI 0 (point-to-point), k = 7.
    pub fn pri(role: Role) -> Self {
        Config { k: 7, ..Self::bri(role, 0) }
    }
}

/// Data link states (Q.921 Annex B numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// 4: TEI assigned, no multiple frame operation.
    TeiAssigned,
    /// 5: SABME sent, awaiting UA.
    AwaitingEstablishment,
    /// 6: DISC sent, awaiting UA.
    AwaitingRelease,
    /// 7: multiple frame established.
    MultipleFrameEstablished,
    /// 8: timer recovery (T200 expired, polling the peer).
    TimerRecovery,
}

/// MDL-ERROR indication codes (Q.921 Appendix II, table II.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MdlError {
    /// A: supervisory response with F = 1 while not polling.
    UnsolicitedSupervisoryF1,
    /// B: DM response with F = 1 while not polling.
    UnsolicitedDmF1,
    /// C: UA response with F = 1 while not polling.
    UnsolicitedUaF1,
    /// D: UA response with F = 0.
    UnsolicitedUaF0,
    /// E: DM response with F = 0 while established.
    UnsolicitedDmF0,
    /// F: SABME from the peer while established (peer re-establishment).
    PeerReestablish,
    /// G: SABME retransmitted N200 times without answer.
    SabmeRetriesExhausted,
    /// H: DISC retransmitted N200 times without answer.
    DiscRetriesExhausted,
    /// I: status enquiry sent N200 times without answer.
    EnquiryRetriesExhausted,
    /// J: N(R) outside V(A)..=V(S).
    NrError,
    /// K: FRMR received.
    FrmrReceived,
    /// L: undefined control field.
    UndefinedControl,
    /// M: information field where none is permitted.
    InfoNotPermitted,
    /// O: information field longer than N201.
    InfoTooLong,
}

impl MdlError {
    /// The letter Q.921 table II.1 gives this error.
    pub const fn code(self) -> char {
        match self {
            MdlError::UnsolicitedSupervisoryF1 => 'A',
            MdlError::UnsolicitedDmF1 => 'B',
            MdlError::UnsolicitedUaF1 => 'C',
            MdlError::UnsolicitedUaF0 => 'D',
            MdlError::UnsolicitedDmF0 => 'E',
            MdlError::PeerReestablish => 'F',
            MdlError::SabmeRetriesExhausted => 'G',
            MdlError::DiscRetriesExhausted => 'H',
            MdlError::EnquiryRetriesExhausted => 'I',
            MdlError::NrError => 'J',
            MdlError::FrmrReceived => 'K',
            MdlError::UndefinedControl => 'L',
            MdlError::InfoNotPermitted => 'M',
            MdlError::InfoTooLong => 'O',
        }
    }
}

/// Primitives to layer 3 (DL-*) and to the management entity (MDL-ERROR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// DL-ESTABLISH-INDICATION: the peer (or a layer-2 re-establishment that
    /// lost I frames) established the link.
    EstablishIndication,
    /// DL-ESTABLISH-CONFIRM: our DL-ESTABLISH-REQUEST succeeded.
    EstablishConfirm,
    /// DL-RELEASE-INDICATION: the link went down (peer DISC, or failed
    /// establishment).
    ReleaseIndication,
    /// DL-RELEASE-CONFIRM: our DL-RELEASE-REQUEST completed.
    ReleaseConfirm,
    /// DL-DATA-INDICATION: an in-sequence I frame's information field.
    Data(Vec<u8>),
    /// DL-UNIT-DATA-INDICATION: a UI frame's information field.
    UnitData(Vec<u8>),
    /// MDL-ERROR-INDICATION.
    MdlError(MdlError),
}

/// Why a DL request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DlError {
    /// Longer than N201.
    TooLong,
    /// DL-DATA-REQUEST while no multiple frame operation is set up or coming.
    NotEstablished,
}

/// Counters for the CLI and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames for another SAPI/TEI, or not valid LAPD at all (dropped silently,
    /// Q.921 5.8.5 a/b).
    pub ignored: u64,
    /// I frames sent again (T200 recovery or REJ).
    pub retransmitted: u64,
    /// Out-of-sequence I frames discarded.
    pub out_of_sequence: u64,
    pub rej_sent: u64,
}

/// Sequence-number distance from `from` up to `to`, modulo 128.
const fn seq_diff(to: u8, from: u8) -> u8 {
    to.wrapping_sub(from) & 0x7F
}

/// One data link connection endpoint.
#[derive(Debug)]
pub struct DataLink {
    cfg: Config,
    state: State,
    vs: u8,
    va: u8,
    vr: u8,
    rc: u8,
    peer_busy: bool,
    own_busy: bool,
    reject_exception: bool,
    ack_pending: bool,
    layer3_initiated: bool,
    t200: Option<Instant>,
    t203: Option<Instant>,
    /// Information fields of I frames sent and not yet acknowledged:
    /// `sent[i]` went out with N(S) = V(A) + i.
    sent: VecDeque<Vec<u8>>,
    /// The I queue: DL-DATA-REQUESTs not yet sent.
    queue: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl DataLink {
    /// A data link in state 4 (TEI assigned).
    pub fn new(mut cfg: Config) -> Self {
        cfg.k = cfg.k.clamp(1, 127);
        cfg.n201 = cfg.n201.min(lapd::N201);
        // A zero timer would spin a driver at one instant; a huge one would
        // overflow `Instant + Duration`.
        let (lo, hi) = (Duration::from_millis(1), Duration::from_secs(86_400));
        cfg.t200 = cfg.t200.clamp(lo, hi);
        cfg.t203 = cfg.t203.clamp(lo, hi);
        DataLink {
            cfg,
            state: State::TeiAssigned,
            vs: 0,
            va: 0,
            vr: 0,
            rc: 0,
            peer_busy: false,
            own_busy: false,
            reject_exception: false,
            ack_pending: false,
            layer3_initiated: false,
            t200: None,
            t203: None,
            sent: VecDeque::new(),
            queue: VecDeque::new(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// V(S), V(A), V(R).
    pub fn sequence_state(&self) -> (u8, u8, u8) {
        (self.vs, self.va, self.vr)
    }

    /// I frames sent and unacknowledged, plus those still queued.
    pub fn outstanding(&self) -> usize {
        self.sent.len() + self.queue.len()
    }

    pub fn peer_busy(&self) -> bool {
        self.peer_busy
    }

    // ---- poll ----

    /// The next frame to send (address, control, information; no FCS).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`DataLink::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.t200, self.t203) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- layer 3 requests ----

    /// DL-ESTABLISH-REQUEST.
    pub fn dl_establish_request(&mut self, now: Instant) {
        match self.state {
            State::TeiAssigned => {
                self.establish_data_link(now);
                self.layer3_initiated = true;
                self.state = State::AwaitingEstablishment;
            }
            State::AwaitingEstablishment => {
                self.discard_i_queue();
                self.layer3_initiated = true;
            }
            State::MultipleFrameEstablished | State::TimerRecovery => {
                self.discard_i_queue();
                self.establish_data_link(now);
                self.layer3_initiated = true;
                self.state = State::AwaitingEstablishment;
            }
            State::AwaitingRelease => {}
        }
    }

    /// DL-RELEASE-REQUEST.
    pub fn dl_release_request(&mut self, now: Instant) {
        match self.state {
            State::TeiAssigned => self.events.push_back(Event::ReleaseConfirm),
            State::AwaitingRelease => {}
            State::AwaitingEstablishment | State::MultipleFrameEstablished | State::TimerRecovery => {
                self.discard_i_queue();
                self.rc = 0;
                self.send_u(Unnumbered::Disc, true, true);
                self.t203 = None;
                self.start_t200(now);
                self.state = State::AwaitingRelease;
            }
        }
    }

    /// DL-DATA-REQUEST: queue a layer-3 message for acknowledged transfer.
    pub fn dl_data_request(&mut self, now: Instant, data: Vec<u8>) -> Result<(), DlError> {
        if data.len() > self.cfg.n201 {
            return Err(DlError::TooLong);
        }
        match self.state {
            State::MultipleFrameEstablished => {
                self.queue.push_back(data);
                self.push_i_frames(now);
                Ok(())
            }
            State::TimerRecovery => {
                self.queue.push_back(data);
                Ok(())
            }
            State::AwaitingEstablishment if !self.layer3_initiated => {
                self.queue.push_back(data);
                Ok(())
            }
            _ => Err(DlError::NotEstablished),
        }
    }

    /// DL-UNIT-DATA-REQUEST: send a UI command at once.
    pub fn dl_unit_data_request(&mut self, _now: Instant, data: &[u8]) -> Result<(), DlError> {
        if data.len() > self.cfg.n201 {
            return Err(DlError::TooLong);
        }
        self.send(Control::U { kind: Unnumbered::Ui, pf: false }, true, data);
        Ok(())
    }

    /// Enter or leave the own receiver busy condition (Q.921 5.6.4): while
    /// busy, I frames are discarded and answered with RNR.
    pub fn set_own_busy(&mut self, _now: Instant, busy: bool) {
        if busy == self.own_busy {
            return;
        }
        self.own_busy = busy;
        if matches!(self.state, State::MultipleFrameEstablished | State::TimerRecovery) {
            let kind = if busy { Supervisory::Rnr } else { Supervisory::Rr };
            self.send(Control::S { kind, nr: self.vr, pf: false }, false, &[]);
            self.ack_pending = false;
        }
    }

    // ---- network and timer input ----

    /// A received frame (FCS already checked and removed).
    pub fn handle_frame(&mut self, now: Instant, octets: &[u8]) {
        let Ok(packet) = lapd::Packet::new_checked(octets) else {
            self.stats.ignored += 1;
            return;
        };
        let for_us = packet.sapi() == self.cfg.sapi && (packet.tei() == self.cfg.tei || packet.tei() == TEI_GROUP);
        if !for_us {
            self.stats.ignored += 1;
            return;
        }
        self.stats.frames_in += 1;
        let repr = match Repr::parse(&packet) {
            Ok(r) => r,
            Err(e) => {
                let err = match e {
                    lapd::Error::InfoNotPermitted => MdlError::InfoNotPermitted,
                    lapd::Error::InfoTooLong => MdlError::InfoTooLong,
                    _ => MdlError::UndefinedControl,
                };
                self.frame_error(now, err);
                return;
            }
        };
        if repr.info.len() > self.cfg.n201 {
            self.frame_error(now, MdlError::InfoTooLong);
            return;
        }
        // The peer's commands carry the C/R value our responses carry.
        let command = repr.cr != self.cfg.role.command_cr();
        if repr.tei == TEI_GROUP {
            // Broadcast data links carry only unacknowledged information.
            if let Control::U { kind: Unnumbered::Ui, .. } = repr.control {
                self.events.push_back(Event::UnitData(repr.info.to_vec()));
            } else {
                self.stats.ignored += 1;
            }
            return;
        }
        match repr.control {
            Control::U { kind, pf } => self.on_unnumbered(now, kind, pf, command, repr.info),
            Control::S { kind, nr, pf } => self.on_supervisory(now, kind, nr, pf, command),
            Control::I { ns, nr, p } if command => self.on_information(now, ns, nr, p, repr.info),
            Control::I { .. } => self.stats.ignored += 1,
        }
        self.after_input(now);
    }

    /// Runs expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.t200.is_some_and(|t| t <= now) {
            self.t200 = None;
            self.on_t200(now);
        }
        if self.t203.is_some_and(|t| t <= now) {
            self.t203 = None;
            self.on_t203(now);
        }
        self.after_input(now);
    }

    // ---- frame handlers ----

    fn on_unnumbered(&mut self, now: Instant, kind: Unnumbered, pf: bool, command: bool, info: &[u8]) {
        match (kind, command) {
            (Unnumbered::Ui, true) => self.events.push_back(Event::UnitData(info.to_vec())),
            (Unnumbered::Sabme, true) => self.on_sabme(now, pf),
            (Unnumbered::Disc, true) => self.on_disc(pf),
            (Unnumbered::Ua, false) => self.on_ua(now, pf),
            (Unnumbered::Dm, false) => self.on_dm(now, pf),
            (Unnumbered::Frmr, false) => {
                if matches!(self.state, State::MultipleFrameEstablished | State::TimerRecovery) {
                    self.mdl_error(MdlError::FrmrReceived);
                    self.reestablish(now);
                }
            }
            // XID (parameter negotiation) is not supported; wrong-direction
            // unnumbered frames are invalid. Both are dropped.
            _ => self.stats.ignored += 1,
        }
    }

    fn on_sabme(&mut self, now: Instant, p: bool) {
        match self.state {
            State::TeiAssigned => {
                self.send_u(Unnumbered::Ua, p, false);
                self.clear_exceptions();
                self.reset_sequence();
                self.events.push_back(Event::EstablishIndication);
                self.t200 = None;
                self.start_t203(now);
                self.state = State::MultipleFrameEstablished;
            }
            // Collision of SABMEs: answer and keep waiting for our UA.
            State::AwaitingEstablishment => self.send_u(Unnumbered::Ua, p, false),
            State::AwaitingRelease => self.send_u(Unnumbered::Dm, p, false),
            State::MultipleFrameEstablished | State::TimerRecovery => {
                self.send_u(Unnumbered::Ua, p, false);
                self.clear_exceptions();
                self.mdl_error(MdlError::PeerReestablish);
                if self.vs != self.va || !self.sent.is_empty() {
                    self.discard_i_queue();
                    self.events.push_back(Event::EstablishIndication);
                }
                self.reset_sequence();
                self.t200 = None;
                self.start_t203(now);
                self.state = State::MultipleFrameEstablished;
            }
        }
    }

    fn on_disc(&mut self, p: bool) {
        match self.state {
            State::TeiAssigned | State::AwaitingEstablishment => self.send_u(Unnumbered::Dm, p, false),
            State::AwaitingRelease => self.send_u(Unnumbered::Ua, p, false),
            State::MultipleFrameEstablished | State::TimerRecovery => {
                self.discard_i_queue();
                self.send_u(Unnumbered::Ua, p, false);
                self.events.push_back(Event::ReleaseIndication);
                self.t200 = None;
                self.t203 = None;
                self.state = State::TeiAssigned;
            }
        }
    }

    fn on_ua(&mut self, now: Instant, f: bool) {
        if !f {
            self.mdl_error(MdlError::UnsolicitedUaF0);
            return;
        }
        match self.state {
            State::AwaitingEstablishment => {
                if self.layer3_initiated {
                    self.events.push_back(Event::EstablishConfirm);
                    self.sent.clear();
                } else if self.vs != self.va || !self.sent.is_empty() {
                    // Layer-2 re-establishment lost unacknowledged I frames.
                    self.discard_i_queue();
                    self.events.push_back(Event::EstablishIndication);
                }
                self.t200 = None;
                self.start_t203(now);
                self.reset_sequence();
                self.state = State::MultipleFrameEstablished;
            }
            State::AwaitingRelease => {
                self.events.push_back(Event::ReleaseConfirm);
                self.t200 = None;
                self.state = State::TeiAssigned;
            }
            _ => self.mdl_error(MdlError::UnsolicitedUaF1),
        }
    }

    fn on_dm(&mut self, now: Instant, f: bool) {
        match self.state {
            State::AwaitingEstablishment if f => {
                self.discard_i_queue();
                self.events.push_back(Event::ReleaseIndication);
                self.t200 = None;
                self.state = State::TeiAssigned;
            }
            State::AwaitingRelease if f => {
                self.events.push_back(Event::ReleaseConfirm);
                self.t200 = None;
                self.state = State::TeiAssigned;
            }
            State::MultipleFrameEstablished if f => self.mdl_error(MdlError::UnsolicitedDmF1),
            State::TimerRecovery if f => {
                self.mdl_error(MdlError::UnsolicitedDmF1);
                self.reestablish(now);
            }
            State::MultipleFrameEstablished | State::TimerRecovery => {
                self.mdl_error(MdlError::UnsolicitedDmF0);
                self.reestablish(now);
            }
            _ => {}
        }
    }

    fn on_supervisory(&mut self, now: Instant, kind: Supervisory, nr: u8, pf: bool, command: bool) {
        match self.state {
            State::TeiAssigned => {
                if command && pf {
                    self.send_u(Unnumbered::Dm, true, false);
                }
            }
            State::MultipleFrameEstablished => {
                self.peer_busy = kind == Supervisory::Rnr;
                if command && pf {
                    self.enquiry_response(true);
                } else if !command && pf {
                    self.mdl_error(MdlError::UnsolicitedSupervisoryF1);
                }
                if !self.nr_valid(nr) {
                    return self.nr_error_recovery(now);
                }
                match kind {
                    Supervisory::Rr => self.ack_established(now, nr),
                    Supervisory::Rej => {
                        self.update_va(nr);
                        self.t200 = None;
                        self.start_t203(now);
                        self.invoke_retransmission();
                    }
                    Supervisory::Rnr => {
                        // Poll the busy peer when T200 runs out (5.6.5).
                        self.update_va(nr);
                        self.t203 = None;
                        self.start_t200(now);
                    }
                }
            }
            State::TimerRecovery => {
                self.peer_busy = kind == Supervisory::Rnr;
                if command && pf {
                    self.enquiry_response(true);
                }
                if !self.nr_valid(nr) {
                    return self.nr_error_recovery(now);
                }
                self.update_va(nr);
                if !command && pf {
                    // The answer to our enquiry: resume from N(R).
                    self.t200 = None;
                    self.start_t203(now);
                    self.invoke_retransmission();
                    self.state = State::MultipleFrameEstablished;
                }
            }
            State::AwaitingEstablishment | State::AwaitingRelease => {}
        }
    }

    fn on_information(&mut self, now: Instant, ns: u8, nr: u8, p: bool, info: &[u8]) {
        match self.state {
            State::TeiAssigned => {
                if p {
                    self.send_u(Unnumbered::Dm, true, false);
                }
                return;
            }
            State::AwaitingEstablishment | State::AwaitingRelease => return,
            State::MultipleFrameEstablished | State::TimerRecovery => {}
        }
        if self.own_busy {
            if p {
                self.send(Control::S { kind: Supervisory::Rnr, nr: self.vr, pf: true }, false, &[]);
                self.ack_pending = false;
            }
        } else if ns == self.vr {
            self.vr = (self.vr + 1) & 0x7F;
            self.reject_exception = false;
            self.events.push_back(Event::Data(info.to_vec()));
            if p {
                self.enquiry_response(true);
            } else {
                self.ack_pending = true;
            }
        } else {
            self.stats.out_of_sequence += 1;
            if self.reject_exception {
                if p {
                    self.enquiry_response(true);
                }
            } else {
                self.reject_exception = true;
                self.stats.rej_sent += 1;
                self.send(Control::S { kind: Supervisory::Rej, nr: self.vr, pf: p }, false, &[]);
                self.ack_pending = false;
            }
        }
        if !self.nr_valid(nr) {
            return self.nr_error_recovery(now);
        }
        if self.state == State::MultipleFrameEstablished && !self.peer_busy {
            self.ack_established(now, nr);
        } else {
            self.update_va(nr);
        }
    }

    // ---- timers ----

    fn on_t200(&mut self, now: Instant) {
        match self.state {
            State::AwaitingEstablishment => {
                if self.rc >= self.cfg.n200 {
                    self.discard_i_queue();
                    self.mdl_error(MdlError::SabmeRetriesExhausted);
                    self.events.push_back(Event::ReleaseIndication);
                    self.state = State::TeiAssigned;
                } else {
                    self.rc += 1;
                    self.send_u(Unnumbered::Sabme, true, true);
                    self.start_t200(now);
                }
            }
            State::AwaitingRelease => {
                if self.rc >= self.cfg.n200 {
                    self.mdl_error(MdlError::DiscRetriesExhausted);
                    self.events.push_back(Event::ReleaseConfirm);
                    self.state = State::TeiAssigned;
                } else {
                    self.rc += 1;
                    self.send_u(Unnumbered::Disc, true, true);
                    self.start_t200(now);
                }
            }
            State::MultipleFrameEstablished => {
                self.rc = 0;
                self.transmit_enquiry(now);
                self.rc += 1;
                self.state = State::TimerRecovery;
            }
            State::TimerRecovery => {
                if self.rc >= self.cfg.n200 {
                    self.mdl_error(MdlError::EnquiryRetriesExhausted);
                    self.reestablish(now);
                } else {
                    self.transmit_enquiry(now);
                    self.rc += 1;
                }
            }
            State::TeiAssigned => {}
        }
    }

    fn on_t203(&mut self, now: Instant) {
        if self.state == State::MultipleFrameEstablished {
            self.rc = 0;
            self.transmit_enquiry(now);
            self.state = State::TimerRecovery;
        }
    }

    // ---- procedures (names after the Annex B SDL) ----

    fn after_input(&mut self, now: Instant) {
        if self.state == State::MultipleFrameEstablished {
            self.push_i_frames(now);
        }
        if self.ack_pending {
            self.ack_pending = false;
            self.send(Control::S { kind: Supervisory::Rr, nr: self.vr, pf: false }, false, &[]);
        }
    }

    fn push_i_frames(&mut self, now: Instant) {
        while !self.peer_busy && seq_diff(self.vs, self.va) < self.cfg.k {
            let idx = usize::from(seq_diff(self.vs, self.va));
            if idx >= self.sent.len() {
                let Some(next) = self.queue.pop_front() else { break };
                self.sent.push_back(next);
            } else {
                self.stats.retransmitted += 1;
            }
            let info = std::mem::take(&mut self.sent[idx]);
            self.send(Control::I { ns: self.vs, nr: self.vr, p: false }, true, &info);
            self.sent[idx] = info;
            self.vs = (self.vs + 1) & 0x7F;
            self.ack_pending = false;
            if self.t200.is_none() {
                self.t203 = None;
                self.start_t200(now);
            }
        }
    }

    fn establish_data_link(&mut self, now: Instant) {
        self.clear_exceptions();
        self.rc = 0;
        self.send_u(Unnumbered::Sabme, true, true);
        self.t203 = None;
        self.start_t200(now);
    }

    /// Layer-2 initiated re-establishment (N(R) error, FRMR, failed enquiry...).
    fn reestablish(&mut self, now: Instant) {
        self.establish_data_link(now);
        self.layer3_initiated = false;
        self.state = State::AwaitingEstablishment;
    }

    fn nr_error_recovery(&mut self, now: Instant) {
        self.mdl_error(MdlError::NrError);
        self.reestablish(now);
    }

    /// Invalid frame in states 7/8 (Q.921 5.8.5): report and re-establish;
    /// elsewhere just report.
    fn frame_error(&mut self, now: Instant, err: MdlError) {
        self.mdl_error(err);
        if matches!(self.state, State::MultipleFrameEstablished | State::TimerRecovery) {
            self.reestablish(now);
        }
    }

    /// N(R) acknowledgement in state 7 (timers follow 5.6.3.2).
    fn ack_established(&mut self, now: Instant, nr: u8) {
        if nr == self.vs {
            self.update_va(nr);
            self.t200 = None;
            self.start_t203(now);
        } else if nr != self.va {
            self.update_va(nr);
            self.start_t200(now);
        }
    }

    fn nr_valid(&self, nr: u8) -> bool {
        seq_diff(nr, self.va) <= seq_diff(self.vs, self.va)
    }

    fn update_va(&mut self, nr: u8) {
        let acked = usize::from(seq_diff(nr, self.va)).min(self.sent.len());
        self.sent.drain(..acked);
        self.va = nr;
    }

    fn invoke_retransmission(&mut self) {
        self.vs = self.va;
    }

    fn transmit_enquiry(&mut self, now: Instant) {
        let kind = if self.own_busy { Supervisory::Rnr } else { Supervisory::Rr };
        self.send(Control::S { kind, nr: self.vr, pf: true }, true, &[]);
        self.ack_pending = false;
        self.start_t200(now);
    }

    fn enquiry_response(&mut self, f: bool) {
        let kind = if self.own_busy { Supervisory::Rnr } else { Supervisory::Rr };
        self.send(Control::S { kind, nr: self.vr, pf: f }, false, &[]);
        self.ack_pending = false;
    }

    fn clear_exceptions(&mut self) {
        self.peer_busy = false;
        self.reject_exception = false;
        self.ack_pending = false;
    }

    fn reset_sequence(&mut self) {
        self.vs = 0;
        self.va = 0;
        self.vr = 0;
        self.sent.clear();
    }

    fn discard_i_queue(&mut self) {
        self.queue.clear();
        self.sent.clear();
        self.vs = self.va;
    }

    fn mdl_error(&mut self, e: MdlError) {
        self.events.push_back(Event::MdlError(e));
    }

    fn start_t200(&mut self, now: Instant) {
        self.t200 = Some(now + self.cfg.t200);
    }

    fn start_t203(&mut self, now: Instant) {
        self.t203 = Some(now + self.cfg.t203);
    }

    fn send_u(&mut self, kind: Unnumbered, pf: bool, command: bool) {
        self.send(Control::U { kind, pf }, command, &[]);
    }

    fn send(&mut self, control: Control, command: bool, info: &[u8]) {
        let cr = if command { self.cfg.role.command_cr() } else { !self.cfg.role.command_cr() };
        let tei = if matches!(control, Control::U { kind: Unnumbered::Ui, .. }) && self.cfg.tei == TEI_GROUP {
            TEI_GROUP
        } else {
            self.cfg.tei
        };
        let repr = Repr { sapi: self.cfg.sapi, cr, tei, control, info };
        self.stats.frames_out += 1;
        self.tx.push_back(repr.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Which way a frame travels.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Dir {
        TeToNt,
        NtToTe,
    }

    type Filter = Box<dyn FnMut(Dir, &Repr<'_>) -> bool>;

    /// TE against NT in virtual time (the quinn `Pair` idea): frames move at
    /// once, time jumps to the next timer when nothing else is left to do.
    struct Pair {
        now: Instant,
        te: DataLink,
        nt: DataLink,
        te_events: Vec<Event>,
        nt_events: Vec<Event>,
        /// Every frame put on the wire, with its direction, before any drop.
        log: Vec<(Dir, Vec<u8>)>,
        /// Returns false to drop a frame.
        filter: Filter,
    }

    impl Pair {
        fn new(te: Config, nt: Config) -> Self {
            Pair {
                now: Instant::now(),
                te: DataLink::new(te),
                nt: DataLink::new(nt),
                te_events: Vec::new(),
                nt_events: Vec::new(),
                log: Vec::new(),
                filter: Box::new(|_, _| true),
            }
        }

        fn bri() -> Self {
            Self::new(Config::bri(Role::User, 64), Config::bri(Role::Network, 64))
        }

        fn pri() -> Self {
            Self::new(Config::pri(Role::User), Config::pri(Role::Network))
        }

        /// Moves frames and events until both sides are quiet.
        fn flush(&mut self) {
            for _ in 0..10_000 {
                let mut moved = false;
                while let Some(f) = self.te.poll_transmit() {
                    moved = true;
                    self.log.push((Dir::TeToNt, f.clone()));
                    if (self.filter)(Dir::TeToNt, &Repr::parse_bytes(&f).unwrap()) {
                        self.nt.handle_frame(self.now, &f);
                    }
                }
                while let Some(f) = self.nt.poll_transmit() {
                    moved = true;
                    self.log.push((Dir::NtToTe, f.clone()));
                    if (self.filter)(Dir::NtToTe, &Repr::parse_bytes(&f).unwrap()) {
                        self.te.handle_frame(self.now, &f);
                    }
                }
                while let Some(e) = self.te.poll_event() {
                    self.te_events.push(e);
                }
                while let Some(e) = self.nt.poll_event() {
                    self.nt_events.push(e);
                }
                if !moved {
                    return;
                }
            }
            panic!("frames never stop flowing");
        }

        /// Runs for `d` of virtual time, firing timers as they fall due.
        fn run_for(&mut self, d: Duration) {
            let end = self.now + d;
            self.flush();
            for _ in 0..10_000 {
                let next = [self.te.poll_timeout(), self.nt.poll_timeout()].into_iter().flatten().min();
                match next {
                    Some(t) if t <= end => {
                        self.now = self.now.max(t);
                        self.te.handle_timeout(self.now);
                        self.nt.handle_timeout(self.now);
                        self.flush();
                    }
                    _ => {
                        self.now = end;
                        return;
                    }
                }
            }
            panic!("timers never settle");
        }

        fn establish(&mut self) {
            self.te.dl_establish_request(self.now);
            self.flush();
            assert_eq!(self.te.state(), State::MultipleFrameEstablished);
            assert_eq!(self.nt.state(), State::MultipleFrameEstablished);
            assert_eq!(self.te_events.drain(..).collect::<Vec<_>>(), [Event::EstablishConfirm]);
            assert_eq!(self.nt_events.drain(..).collect::<Vec<_>>(), [Event::EstablishIndication]);
        }

        fn data(events: &[Event]) -> Vec<Vec<u8>> {
            events.iter().filter_map(|e| if let Event::Data(d) = e { Some(d.clone()) } else { None }).collect()
        }

        fn count(&self, dir: Dir, pred: impl Fn(&Control) -> bool) -> usize {
            self.log
                .iter()
                .filter(|(d, f)| *d == dir && pred(&Repr::parse_bytes(f).unwrap().control))
                .count()
        }
    }

    fn is_sabme(c: &Control) -> bool {
        matches!(c, Control::U { kind: Unnumbered::Sabme, .. })
    }

    fn msgs(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![0x08, 0x01, i, 0x05]).collect()
    }

    #[test]
    fn establish_exchanges_sabme_ua_with_the_right_cr_bits() {
        let mut p = Pair::bri();
        p.establish();
        // TE command C/R=0, NT response C/R=0 (Q.921 table 1), TEI 64, P=F=1.
        assert_eq!(p.log[0], (Dir::TeToNt, vec![0x00, 0x81, 0x7F]));
        assert_eq!(p.log[1], (Dir::NtToTe, vec![0x00, 0x81, 0x73]));
        assert_eq!(p.log.len(), 2);
        assert_eq!(p.te.poll_timeout(), Some(p.now + Duration::from_secs(10)));
    }

    #[test]
    fn network_side_establishes_too() {
        let mut p = Pair::pri();
        p.nt.dl_establish_request(p.now);
        p.flush();
        assert_eq!(p.log[0], (Dir::NtToTe, vec![0x02, 0x01, 0x7F]));
        assert_eq!(p.log[1], (Dir::TeToNt, vec![0x02, 0x01, 0x73]));
        assert_eq!(p.nt_events, [Event::EstablishConfirm]);
        assert_eq!(p.te_events, [Event::EstablishIndication]);
    }

    #[test]
    fn data_both_ways_in_order_with_window_1_and_7() {
        for mut p in [Pair::bri(), Pair::pri()] {
            p.establish();
            for m in msgs(40) {
                p.te.dl_data_request(p.now, m.clone()).unwrap();
                p.nt.dl_data_request(p.now, m).unwrap();
                assert!(usize::from(seq_diff(p.te.vs, p.te.va)) <= usize::from(p.te.config().k));
            }
            p.run_for(Duration::from_secs(1));
            assert_eq!(Pair::data(&p.nt_events), msgs(40));
            assert_eq!(Pair::data(&p.te_events), msgs(40));
            assert_eq!(p.te.sequence_state(), (40, 40, 40));
            assert_eq!(p.te.outstanding(), 0);
            assert_eq!(p.te.stats().retransmitted + p.nt.stats().retransmitted, 0);
        }
    }

    #[test]
    fn sequence_numbers_wrap_modulo_128() {
        let mut p = Pair::pri();
        p.establish();
        for m in (0..300u32).map(|i| i.to_be_bytes().to_vec()) {
            p.te.dl_data_request(p.now, m).unwrap();
        }
        p.run_for(Duration::from_millis(10));
        assert_eq!(Pair::data(&p.nt_events).len(), 300);
        assert_eq!(p.te.sequence_state(), (44, 44, 0));
        assert_eq!(p.nt.sequence_state(), (0, 0, 44));
    }

    #[test]
    fn idle_link_is_polled_by_t203_and_stays_up() {
        let mut p = Pair::bri();
        p.establish();
        p.run_for(Duration::from_secs(35));
        // Both sides poll every T203 (10 s); each poll is answered.
        let polls = p.count(Dir::TeToNt, |c| matches!(c, Control::S { kind: Supervisory::Rr, pf: true, .. }));
        assert_eq!(polls, 6, "TE polls and answers NT polls: {:?}", p.log);
        assert_eq!(p.te.state(), State::MultipleFrameEstablished);
        assert_eq!(p.nt.state(), State::MultipleFrameEstablished);
        assert!(p.te_events.is_empty() && p.nt_events.is_empty(), "{:?} {:?}", p.te_events, p.nt_events);
    }

    #[test]
    fn lost_i_frame_is_recovered_by_t200() {
        let mut p = Pair::bri();
        p.establish();
        let mut dropped = false;
        p.filter = Box::new(move |dir, r| {
            if dir == Dir::TeToNt && matches!(r.control, Control::I { .. }) && !dropped {
                dropped = true;
                return false;
            }
            true
        });
        p.te.dl_data_request(p.now, b"setup".to_vec()).unwrap();
        p.te.dl_data_request(p.now, b"info".to_vec()).unwrap();
        p.run_for(Duration::from_millis(999));
        assert!(p.nt_events.is_empty());
        p.run_for(Duration::from_millis(2));
        // T200 ran out: enquiry, the NT's RR F=1 N(R)=0, then the I frame
        // again, and once it is acknowledged, the queued one.
        assert_eq!(Pair::data(&p.nt_events), [b"setup".to_vec(), b"info".to_vec()]);
        assert_eq!(p.te.stats().retransmitted, 1);
        assert_eq!(p.te.state(), State::MultipleFrameEstablished);
        assert!(!p.te_events.iter().any(|e| matches!(e, Event::MdlError(_))), "{:?}", p.te_events);
    }

    #[test]
    fn lost_frame_in_a_window_is_recovered_by_rej() {
        let mut p = Pair::pri();
        p.establish();
        let mut n = 0;
        p.filter = Box::new(move |dir, r| {
            if dir == Dir::TeToNt && matches!(r.control, Control::I { .. }) {
                n += 1;
                return n != 2;
            }
            true
        });
        for m in msgs(5) {
            p.te.dl_data_request(p.now, m).unwrap();
        }
        p.flush();
        // No timer needed: N(S)=2 out of sequence makes the NT send REJ N(R)=1.
        assert_eq!(Pair::data(&p.nt_events), msgs(5));
        assert_eq!(p.nt.stats().rej_sent, 1);
        assert_eq!(p.nt.stats().out_of_sequence, 3);
        assert_eq!(p.te.stats().retransmitted, 4);
        assert_eq!(p.te.sequence_state(), (5, 5, 0));
    }

    #[test]
    fn dead_peer_exhausts_n200_then_gives_up() {
        let mut p = Pair::bri();
        p.establish();
        p.te.dl_data_request(p.now, b"lost".to_vec()).unwrap();
        p.filter = Box::new(|_, _| false);
        p.run_for(Duration::from_secs(60));
        // Enquiries: 1 + N200 - 1 more, then MDL-ERROR I and re-establishment:
        // SABME + N200 retries, then MDL-ERROR G and release.
        let mdl: Vec<char> = p.te_events.iter().filter_map(|e| match e {
            Event::MdlError(m) => Some(m.code()),
            _ => None,
        }).collect();
        assert_eq!(mdl, ['I', 'G']);
        assert_eq!(p.te_events.last(), Some(&Event::ReleaseIndication));
        assert_eq!(p.te.state(), State::TeiAssigned);
        assert_eq!(p.count(Dir::TeToNt, is_sabme), 1 + 1 + 3);
        let polls = p.count(Dir::TeToNt, |c| matches!(c, Control::S { pf: true, .. }));
        assert_eq!(polls, 3);
        assert_eq!(p.te.poll_timeout(), None);
    }

    #[test]
    fn out_of_window_nr_reestablishes() {
        let mut p = Pair::bri();
        p.establish();
        // An I frame from the NT acknowledging N(R)=5 though the TE sent nothing.
        let bogus = Repr { sapi: 0, cr: true, tei: 64, control: Control::I { ns: 0, nr: 5, p: false }, info: b"x" };
        p.te.handle_frame(p.now, &bogus.to_vec());
        p.flush();
        assert!(p.te_events.contains(&Event::MdlError(MdlError::NrError)), "{:?}", p.te_events);
        assert!(p.nt_events.contains(&Event::MdlError(MdlError::PeerReestablish)), "{:?}", p.nt_events);
        assert_eq!(p.te.state(), State::MultipleFrameEstablished);
        assert_eq!(p.te.sequence_state(), (0, 0, 0));
        // Nothing was lost, so layer 3 is not told of a re-establishment.
        assert!(!p.te_events.contains(&Event::EstablishIndication));
        // And the link still carries data.
        p.te.dl_data_request(p.now, b"after".to_vec()).unwrap();
        p.flush();
        assert_eq!(Pair::data(&p.nt_events), [b"after".to_vec()]);
    }

    #[test]
    fn reestablishment_with_unacked_frames_tells_layer_3() {
        let mut p = Pair::bri();
        p.establish();
        p.filter = Box::new(|dir, r| !(dir == Dir::TeToNt && matches!(r.control, Control::I { .. })));
        p.te.dl_data_request(p.now, b"gone".to_vec()).unwrap();
        p.flush();
        p.filter = Box::new(|_, _| true);
        p.nt.dl_establish_request(p.now);
        p.flush();
        assert!(p.te_events.contains(&Event::MdlError(MdlError::PeerReestablish)));
        assert!(p.te_events.contains(&Event::EstablishIndication));
        assert_eq!(p.te.outstanding(), 0);
    }

    #[test]
    fn release_both_ways() {
        let mut p = Pair::bri();
        p.establish();
        p.te.dl_release_request(p.now);
        p.flush();
        assert_eq!(p.te_events, [Event::ReleaseConfirm]);
        assert_eq!(p.nt_events, [Event::ReleaseIndication]);
        assert_eq!((p.te.state(), p.nt.state()), (State::TeiAssigned, State::TeiAssigned));
        assert_eq!(p.te.poll_timeout(), None);
        assert_eq!(p.nt.poll_timeout(), None);
        assert_eq!(p.te.dl_data_request(p.now, vec![1]), Err(DlError::NotEstablished));
        // A DISC or a polled I frame in state 4 gets DM F=1 (a TE response: C/R=1).
        let disc = Repr { sapi: 0, cr: true, tei: 64, control: Control::U { kind: Unnumbered::Disc, pf: true }, info: &[] };
        p.te.handle_frame(p.now, &disc.to_vec());
        assert_eq!(p.te.poll_transmit(), Some(vec![0x02, 0x81, 0x1F]));
        let i = Repr { sapi: 0, cr: true, tei: 64, control: Control::I { ns: 0, nr: 0, p: true }, info: b"x" };
        p.te.handle_frame(p.now, &i.to_vec());
        assert_eq!(p.te.poll_transmit(), Some(vec![0x02, 0x81, 0x1F]));
        assert_eq!(p.te.poll_event(), None);
    }

    #[test]
    fn establishment_refused_with_dm() {
        let mut p = Pair::bri();
        p.te.dl_establish_request(p.now);
        let sabme = p.te.poll_transmit().unwrap();
        assert_eq!(sabme, [0x00, 0x81, 0x7F]);
        let dm = Repr { sapi: 0, cr: false, tei: 64, control: Control::U { kind: Unnumbered::Dm, pf: true }, info: &[] };
        p.te.handle_frame(p.now, &dm.to_vec());
        assert_eq!(p.te.poll_event(), Some(Event::ReleaseIndication));
        assert_eq!(p.te.state(), State::TeiAssigned);
    }

    #[test]
    fn unit_data_and_group_tei() {
        let mut p = Pair::bri();
        p.te.dl_unit_data_request(p.now, b"ui").unwrap();
        p.flush();
        assert_eq!(p.nt_events, [Event::UnitData(b"ui".to_vec())]);
        // Broadcast SETUP on TEI 127 reaches a TE with TEI 64; an I frame there does not.
        let ui = Repr { sapi: 0, cr: true, tei: 127, control: Control::U { kind: Unnumbered::Ui, pf: false }, info: b"setup" };
        p.te.handle_frame(p.now, &ui.to_vec());
        assert_eq!(p.te.poll_event(), Some(Event::UnitData(b"setup".to_vec())));
        let i = Repr { sapi: 0, cr: true, tei: 127, control: Control::I { ns: 0, nr: 0, p: true }, info: b"x" };
        p.te.handle_frame(p.now, &i.to_vec());
        assert_eq!(p.te.poll_event(), None);
        assert_eq!(p.te.poll_transmit(), None);
        // Other TEIs and SAPIs are not ours.
        let other = Repr { tei: 65, ..ui };
        p.te.handle_frame(p.now, &other.to_vec());
        assert_eq!(p.te.poll_event(), None);
        assert_eq!(p.te.stats().ignored, 2);
    }

    #[test]
    fn busy_receiver_stops_the_sender() {
        let mut p = Pair::pri();
        p.establish();
        p.nt.set_own_busy(p.now, true);
        p.flush();
        assert!(p.te.peer_busy());
        for m in msgs(3) {
            p.te.dl_data_request(p.now, m).unwrap();
        }
        p.flush();
        assert!(p.nt_events.is_empty());
        assert_eq!(p.count(Dir::TeToNt, |c| matches!(c, Control::I { .. })), 0);
        p.nt.set_own_busy(p.now, false);
        p.flush();
        assert_eq!(Pair::data(&p.nt_events), msgs(3));
    }

    #[test]
    fn invalid_frames_report_and_reestablish() {
        let mut p = Pair::bri();
        p.establish();
        // RR with an information field (M), an undefined S function (L), an
        // oversized I frame (O): each reported, each re-establishes.
        let mut too_long = vec![0x02, 0x81, 0x00, 0x00];
        too_long.resize(4 + 261, 0);
        for (frame, err) in [
            (vec![0x02, 0x81, 0x01, 0x00, 0xAA], MdlError::InfoNotPermitted),
            (vec![0x02, 0x81, 0x0D, 0x00], MdlError::UndefinedControl),
            (too_long, MdlError::InfoTooLong),
        ] {
            p.te.handle_frame(p.now, &frame);
            p.flush();
            assert!(p.te_events.contains(&Event::MdlError(err)), "{err:?}: {:?}", p.te_events);
            assert_eq!(p.te.state(), State::MultipleFrameEstablished);
            p.te_events.clear();
        }
        // Garbage that is not LAPD at all is dropped silently.
        p.te.handle_frame(p.now, &[0x01]);
        p.te.handle_frame(p.now, &[0x03, 0x00, 0x00]);
        assert_eq!(p.te.poll_event(), None);
        assert_eq!(p.te.poll_transmit(), None);
    }

    #[test]
    fn silly_config_is_clamped() {
        let cfg = Config { k: 0, n200: 0, t200: Duration::ZERO, t203: Duration::MAX, ..Config::bri(Role::User, 0) };
        let mut l = DataLink::new(cfg);
        assert_eq!(l.config().k, 1);
        let now = Instant::now();
        l.dl_establish_request(now);
        assert_eq!(l.poll_timeout(), Some(now + Duration::from_millis(1)));
        l.handle_timeout(now + Duration::from_millis(1));
        // N200 = 0: no retransmission at all, the establishment fails at once.
        assert!(std::iter::from_fn(|| l.poll_event()).any(|e| e == Event::ReleaseIndication));
        assert_eq!(l.state(), State::TeiAssigned);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Frame(Vec<u8>),
        Data(Vec<u8>),
        Advance(u16),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Well-addressed frames with random control and content.
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(cr, mut rest)| {
                let mut f = vec![(cr as u8) << 1, 0x81];
                f.append(&mut rest);
                Op::Frame(f)
            }),
            proptest::collection::vec(any::<u8>(), 0..6).prop_map(Op::Frame),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Op::Data),
            (0u16..3000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Hostile peer: random frames, requests and time never panic, keep
        /// V(A) <= V(S) <= V(A) + k, and timers stay armed while a link is up.
        #[test]
        fn hostile_input_never_breaks_invariants(ops in proptest::collection::vec(arb_op(), 0..60), nt: bool) {
            let role = if nt { Role::Network } else { Role::User };
            let mut l = DataLink::new(Config { k: 3, ..Config::bri(role, 64) });
            let mut now = Instant::now();
            l.dl_establish_request(now);
            for op in ops {
                match op {
                    Op::Frame(f) => l.handle_frame(now, &f),
                    Op::Data(d) => { let _ = l.dl_data_request(now, d); }
                    Op::Advance(ms) => {
                        now += Duration::from_millis(ms.into());
                        l.handle_timeout(now);
                    }
                }
                while l.poll_transmit().is_some() {}
                while l.poll_event().is_some() {}
                let (vs, va, _) = l.sequence_state();
                prop_assert!(seq_diff(vs, va) <= l.config().k);
                prop_assert!(l.sent.len() >= usize::from(seq_diff(vs, va)));
                if l.state() != State::TeiAssigned {
                    prop_assert!(l.poll_timeout().is_some(), "{:?} with no timer", l.state());
                }
            }
        }
    }
}
