//! Q.931 call control (ETSI EN 300 403-1, section 5) for one D channel, user
//! or network side: call states, timers, channel selection, RESTART, STATUS
//! and the 5.8 error procedures. Sans-IO.
//!
//! # How a span driver uses it
//!
//! ```text
//!   DataLink(s) --DL-DATA / DL-UNIT-DATA ind--> handle_message(now, link, octets)
//!   DataLink(s) --DL-ESTABLISH / RELEASE ind--> dl_established(now, link) / dl_released(now, link)
//!   gateway legs --requests------------------> setup / setup_ack / proceeding / alerting / progress /
//!                                               connect / information / disconnect / release /
//!                                               status_enquiry / restart   (each with `now`)
//!   clock -------------------------------------> handle_timeout(now) at poll_timeout(), or
//!                                               handle_timer(now, TimerId) for a timer by name
//!   drain after every input:
//!     poll_transmit() -> Tx { link, octets }   I frame on `Link::Tei(t)`'s data link, or a
//!                                               UI frame on TEI 127 for `Link::Broadcast`
//!     poll_event()    -> Event                  up to the gateway leg (setup with numbers,
//!                                               digits, alerting, connect, disconnect with
//!                                               cause and location, released, restart ...)
//!     poll_timer()    -> TimerAction            start/stop of a named timer, for drivers
//!                                               that keep their own timer wheel
//! ```
//!
//! The module keeps its own timer table too, so a driver may simply call
//! [`CallControl::handle_timeout`] at [`CallControl::poll_timeout`]. A
//! B channel is busy exactly while a call holds it: the busy map is derived
//! from the calls, so no path can leave a channel busy without a call.
//!
//! Choices where the standard leaves one (documented here, not hidden):
//! - On DISCONNECT from the peer the call is released at once (RELEASE sent)
//!   unless it carries progress indicator 8 (in-band tones) on the user side;
//!   then the gateway calls [`CallControl::release`] when it is done.
//! - T302 expiry (overlap receiving) is reported as [`Event::DigitTimeout`];
//!   the gateway answers with `proceeding` (number complete) or
//!   `disconnect` with cause 28.
//! - The second T308 expiry frees the B channel (rather than putting it in
//!   maintenance) and reports the call released with cause 102.
//! - PTMP broadcast calls (network side, BRI): every TE that answers is kept;
//!   the first CONNECT wins and the others get RELEASE with cause 26.

use std::time::{Duration, Instant};

use crate::q931::{cause, BearerCapability, CallRef, Cause, ChannelId, Ie, Message, MessageType, PartyNumber, Progress};

/// Which side of the user-network interface this call control plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    User,
    Network,
}

/// The interface structure: which B channels exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// Basic rate: B1, B2, call reference of one octet.
    Bri,
    /// Primary rate (E1: 1-15, 17-31; T1: 1-23 by the variant), call
    /// reference of two octets.
    Pri,
}

/// Where a message goes or came from: the data link of one TEI, or the
/// broadcast data link (UI frames on TEI 127, network side PTMP only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Tei(u8),
    Broadcast,
}

/// A switch variant as a table of differences from EuroISDN: the call
/// control reads these fields and nothing else differs by variant.
///
/// ```text
///                      euroisdn          ni2                 qsig
/// standard             EN 300 403-1      NI-2 (Telcordia)    ECMA-143 / ISO 11572
/// PRI channels         E1 1-15, 17-31    T1 1-23             E1 1-15, 17-31
/// bearer layer 1       G.711 A-law       G.711 µ-law         G.711 A-law
/// cause location       user 0, net 2     user 0, net 2       1 on both sides (PINX)
/// overlap              yes               no (en-bloc)        yes
/// restart "all"        class 7           class 6             class 7
/// STATUS for ignored   yes               no                  yes
/// message set          table 4-2 subset  no SETUP ACK        as euroisdn
/// timers               EN 300 403        T310 10 s           as euroisdn
/// ```
///
/// A message outside the variant's set is answered like an unknown one
/// (STATUS, cause 97: Q.931 5.8.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: &'static str,
    /// User information layer 1 in the bearer capability of the SETUPs we
    /// place without one: 3 G.711 A-law, 2 G.711 µ-law.
    pub law: u8,
    /// The location we put in causes and progress indicators, on the user
    /// side and on the network side (Q.850 2.2.5: 0 user, 1 private
    /// network serving the local user, 2 public network serving the local
    /// user).
    pub location: [u8; 2],
    /// The message types of the variant's basic call.
    pub messages: &'static [MessageType],
    /// Usable PRI B channels (time slots).
    pub pri_channels: &'static [u8],
    /// Overlap sending/receiving offered (SETUP ACK answered to SETUP
    /// without sending complete).
    pub overlap: bool,
    /// Restart class for "the whole interface" (7 all interfaces, 6 single
    /// interface).
    pub restart_all_class: u8,
    /// Send STATUS with cause 99/100 for ignored optional elements.
    pub status_on_ignored_ie: bool,
    /// Default timers.
    pub timers: Timers,
}

const E1_CHANNELS: [u8; 30] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31];
const T1_CHANNELS: [u8; 23] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];

/// EN 300 403-1 section 3: every message [`MessageType`] names.
const EUROISDN_MESSAGES: [MessageType; 17] = [
    MessageType::Alerting,
    MessageType::CallProceeding,
    MessageType::Progress,
    MessageType::Setup,
    MessageType::Connect,
    MessageType::SetupAcknowledge,
    MessageType::ConnectAcknowledge,
    MessageType::Disconnect,
    MessageType::Restart,
    MessageType::Release,
    MessageType::RestartAcknowledge,
    MessageType::ReleaseComplete,
    MessageType::Facility,
    MessageType::Notify,
    MessageType::StatusEnquiry,
    MessageType::Information,
    MessageType::Status,
];

/// NI-2 PRI basic call: en-bloc only, so no SETUP ACKNOWLEDGE.
const NI2_MESSAGES: [MessageType; 16] = [
    MessageType::Alerting,
    MessageType::CallProceeding,
    MessageType::Progress,
    MessageType::Setup,
    MessageType::Connect,
    MessageType::ConnectAcknowledge,
    MessageType::Disconnect,
    MessageType::Restart,
    MessageType::Release,
    MessageType::RestartAcknowledge,
    MessageType::ReleaseComplete,
    MessageType::Facility,
    MessageType::Notify,
    MessageType::StatusEnquiry,
    MessageType::Information,
    MessageType::Status,
];

/// EN 300 403-1 (EuroISDN, ETSI DSS1).
pub const EUROISDN: Variant = Variant {
    name: "euroisdn",
    law: 3,
    location: [0, 2],
    messages: &EUROISDN_MESSAGES,
    pri_channels: &E1_CHANNELS,
    overlap: true,
    restart_all_class: 7,
    status_on_ignored_ie: true,
    timers: Timers::EN300403,
};

/// NI-2 (North American T1 PRI): T1 channels 1-23, µ-law, en-bloc only
/// (no SETUP ACKNOWLEDGE), single-interface restart class, T310 10 s, no
/// STATUS for ignored optional elements. Calls both ways against libpri's
/// NI-2 in both roles (`tests/libpri.rs`).
pub const NI2: Variant = Variant {
    name: "ni2",
    law: 2,
    location: [0, 2],
    messages: &NI2_MESSAGES,
    pri_channels: &T1_CHANNELS,
    overlap: false,
    restart_all_class: 6,
    status_on_ignored_ie: false,
    timers: Timers { t310: Duration::from_secs(10), ..Timers::EN300403 },
};

/// QSIG basic call (ECMA-143, ISO/IEC 11572) between two PINXs on an E1:
/// EuroISDN's messages, timers and channel rules; both ends are private
/// networks, so the location is 1 whichever end we play. Calls both ways
/// against libpri's QSIG in both roles (`tests/libpri.rs`).
pub const QSIG: Variant = Variant {
    name: "qsig",
    law: 3,
    location: [1, 1],
    messages: &EUROISDN_MESSAGES,
    pri_channels: &E1_CHANNELS,
    overlap: true,
    restart_all_class: 7,
    status_on_ignored_ie: true,
    timers: Timers::EN300403,
};

/// Every variant, by the name the configuration uses (`[[span]] switch`).
pub const VARIANTS: [&Variant; 3] = [&EUROISDN, &NI2, &QSIG];

impl Variant {
    /// The variant called `name` ("euroisdn", "ni2", "qsig").
    pub fn by_name(name: &str) -> Option<&'static Variant> {
        VARIANTS.into_iter().find(|v| v.name == name)
    }

    /// Whether `t` belongs to the variant's message set.
    pub fn knows(&self, t: MessageType) -> bool {
        self.messages.contains(&t)
    }
}

/// Timer values (EN 300 403-1 tables 9-1 and 9-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t301: Duration,
    pub t302: Duration,
    pub t303: Duration,
    pub t304: Duration,
    pub t305: Duration,
    pub t308: Duration,
    pub t309: Duration,
    pub t310: Duration,
    pub t313: Duration,
    pub t316: Duration,
    pub t322: Duration,
}

impl Timers {
    pub const EN300403: Timers = Timers {
        t301: Duration::from_secs(180),
        t302: Duration::from_secs(15),
        t303: Duration::from_secs(4),
        t304: Duration::from_secs(30),
        t305: Duration::from_secs(30),
        t308: Duration::from_secs(4),
        t309: Duration::from_secs(6),
        t310: Duration::from_secs(30),
        t313: Duration::from_secs(4),
        t316: Duration::from_secs(120),
        t322: Duration::from_secs(4),
    };
}

/// Timer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    T301,
    T302,
    T303,
    T304,
    T305,
    T308,
    T309,
    T310,
    T313,
    T316,
    T322,
}

const TIMER_COUNT: usize = 11;

impl Timer {
    const fn index(self) -> usize {
        self as usize
    }

    const ALL: [Timer; TIMER_COUNT] = [
        Timer::T301,
        Timer::T302,
        Timer::T303,
        Timer::T304,
        Timer::T305,
        Timer::T308,
        Timer::T309,
        Timer::T310,
        Timer::T313,
        Timer::T316,
        Timer::T322,
    ];

    fn duration(self, t: &Timers) -> Duration {
        match self {
            Timer::T301 => t.t301,
            Timer::T302 => t.t302,
            Timer::T303 => t.t303,
            Timer::T304 => t.t304,
            Timer::T305 => t.t305,
            Timer::T308 => t.t308,
            Timer::T309 => t.t309,
            Timer::T310 => t.t310,
            Timer::T313 => t.t313,
            Timer::T316 => t.t316,
            Timer::T322 => t.t322,
        }
    }
}

/// One call, as the gateway names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u32);

/// A named timer: per call, or of the interface (`call: None`: T309, T316).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    pub call: Option<CallId>,
    pub timer: Timer,
}

/// For drivers with their own timer wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    Start { id: TimerId, at: Instant },
    Stop { id: TimerId },
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    pub link: Link,
    pub octets: Vec<u8>,
}

/// Configuration of one D channel's call control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub side: Side,
    pub interface: Interface,
    pub variant: &'static Variant,
    pub timers: Timers,
    /// Our TEI on the user side (0 on PTP); on the network side, the TEI
    /// of a PTP interface.
    pub tei: u8,
    /// Network side of a point-to-multipoint BRI: outgoing SETUP goes on
    /// the broadcast data link.
    pub ptmp: bool,
    /// Location in the causes we send (0 user, 2 public network serving
    /// the local user).
    pub location: u8,
    /// B channels this span may use (a subset of the interface's).
    pub channels: Vec<u8>,
}

impl Config {
    pub fn new(side: Side, interface: Interface, variant: &'static Variant) -> Self {
        let channels = match interface {
            Interface::Bri => vec![1, 2],
            Interface::Pri => variant.pri_channels.to_vec(),
        };
        Config {
            side,
            interface,
            variant,
            timers: variant.timers,
            tei: 0,
            ptmp: false,
            location: variant.location[(side == Side::Network) as usize],
            channels,
        }
    }
}

/// What a SETUP asks for, in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetupInfo {
    pub bearer: Option<BearerCapability>,
    /// B channel requested or granted.
    pub channel: Option<u8>,
    pub exclusive: bool,
    pub called: Option<PartyNumber>,
    pub calling: Option<PartyNumber>,
    pub redirecting: Option<PartyNumber>,
    pub sending_complete: bool,
    pub display: Option<Vec<u8>>,
}

/// Events up to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An incoming SETUP; `link` is the TE's data link on a PTMP NT.
    Setup { call: CallId, link: Link, info: SetupInfo },
    /// Our SETUP: SETUP ACK received (send more digits with `information`).
    SetupAck { call: CallId, channel: Option<u8> },
    Proceeding { call: CallId, channel: Option<u8> },
    Alerting { call: CallId, inband: bool },
    Progress { call: CallId, description: u8 },
    /// The call is active (CONNECT received, or our CONNECT acknowledged).
    Connected { call: CallId },
    /// Overlap digits (INFORMATION with called party number or keypad).
    Digits { call: CallId, digits: Vec<u8>, complete: bool },
    /// T302 expired while receiving overlap digits.
    DigitTimeout { call: CallId },
    /// DISCONNECT from the peer (the call is then released, see the module doc).
    Disconnect { call: CallId, cause: u8, location: u8, inband: bool },
    /// The call is gone and its B channel free.
    Released { call: CallId, cause: u8, location: Option<u8> },
    /// The network moved our call to another B channel (glare, preferred).
    ChannelChanged { call: CallId, channel: u8 },
    /// STATUS received for a call.
    Status { call: CallId, cause: u8, state: u8 },
    /// The peer restarted channels (`None`: the whole interface); calls on
    /// them were released.
    Restarted { channel: Option<u8> },
    /// Our RESTART was acknowledged.
    RestartAcknowledged { channel: Option<u8> },
    /// Our RESTART went unanswered twice.
    RestartFailed { channel: Option<u8> },
    /// Layer 2 must be (re-)established on this link (calls wait on it).
    EstablishLink { link: Link },
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    NoSuchCall,
    /// Not allowed in the call's state.
    WrongState,
    /// No (or not that) B channel free: cause 34 / 44.
    NoChannel(u8),
    /// Too many calls for the call reference space.
    NoCallReference,
}

/// Call states from our own point of view. [`State::q931`] maps them to
/// the Uxx / Nxx numbers of the side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// We sent SETUP (U1 / N6).
    OutInitiated,
    /// SETUP ACK received (U2 / N25).
    OutOverlap,
    /// CALL PROCEEDING received (U3 / N9).
    OutProceeding,
    /// ALERTING received (U4 / N7).
    OutDelivered,
    /// SETUP received (U6 / N1).
    InPresent,
    /// We sent SETUP ACK (U25 / N2).
    InOverlap,
    /// We sent CALL PROCEEDING (U9 / N3).
    InProceeding,
    /// We sent ALERTING (U7 / N4).
    InAlerting,
    /// We sent CONNECT, awaiting CONNECT ACK (U8; the network goes active).
    InConnectRequest,
    Active,
    /// We sent DISCONNECT (U11 / N12).
    DisconnectSent,
    /// DISCONNECT received (U12 / N11).
    DisconnectReceived,
    /// We sent RELEASE (U19 / N19).
    ReleaseRequest,
}

impl State {
    /// The call state value (4.5.7) of this state on `side`.
    pub const fn q931(self, side: Side) -> u8 {
        let user = matches!(side, Side::User);
        match self {
            State::OutInitiated => if user { 1 } else { 6 },
            State::OutOverlap => if user { 2 } else { 25 },
            State::OutProceeding => if user { 3 } else { 9 },
            State::OutDelivered => if user { 4 } else { 7 },
            State::InPresent => if user { 6 } else { 1 },
            State::InOverlap => if user { 25 } else { 2 },
            State::InProceeding => if user { 9 } else { 3 },
            State::InAlerting => if user { 7 } else { 4 },
            State::InConnectRequest => if user { 8 } else { 10 },
            State::Active => 10,
            State::DisconnectSent => if user { 11 } else { 12 },
            State::DisconnectReceived => if user { 12 } else { 11 },
            State::ReleaseRequest => 19,
        }
    }

    const fn outgoing_setup_phase(self) -> bool {
        matches!(self, State::OutInitiated | State::OutOverlap | State::OutProceeding | State::OutDelivered)
    }

    const fn incoming_setup_phase(self) -> bool {
        matches!(self, State::InPresent | State::InOverlap | State::InProceeding | State::InAlerting)
    }
}

#[derive(Debug, Clone)]
struct Call {
    id: CallId,
    cr: u16,
    /// We allocated the call reference (sent the SETUP).
    ours: bool,
    link: Link,
    state: State,
    channel: Option<u8>,
    /// A response from the peer has told the channel (first response rule).
    channel_confirmed: bool,
    timers: [Option<Instant>; TIMER_COUNT],
    t303_expiries: u8,
    t308_expiries: u8,
    t322_expiries: u8,
    setup: Vec<u8>,
    clear_cause: u8,
    /// PTMP broadcast: TEIs that answered our SETUP.
    responders: Vec<u8>,
    /// Cause of the last TE that refused a broadcast SETUP.
    refused: Option<u8>,
    /// The cause (and location) of the peer's DISCONNECT: what ended the
    /// call, reported in `Released` after our RELEASE completes.
    peer_cause: Option<(u8, u8)>,
}

/// The call control of one D channel.
#[derive(Debug)]
pub struct CallControl {
    cfg: Config,
    calls: Vec<Call>,
    next_id: u32,
    next_cr: u16,
    tx: std::collections::VecDeque<Tx>,
    events: std::collections::VecDeque<Event>,
    timer_actions: std::collections::VecDeque<TimerAction>,
    /// Interface timers: T309 and T316.
    t309: Option<Instant>,
    t316: Option<Instant>,
    t316_expiries: u8,
    restart_pending: Option<(Option<u8>, Vec<u8>)>,
    links_up: Vec<Link>,
}

fn cause_ie(value: u8, location: u8) -> Ie {
    Ie::Cause(Cause { coding_standard: 0, location, value, diagnostics: Vec::new() })
}

impl CallControl {
    pub fn new(cfg: Config) -> Self {
        CallControl {
            cfg,
            calls: Vec::new(),
            next_id: 1,
            next_cr: 1,
            tx: Default::default(),
            events: Default::default(),
            timer_actions: Default::default(),
            t309: None,
            t316: None,
            t316_expiries: 0,
            restart_pending: None,
            links_up: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// User side PTMP: the TEI assigned to us (our calls move to it).
    pub fn set_tei(&mut self, tei: u8) {
        self.cfg.tei = tei;
        if self.cfg.side == Side::User {
            for c in &mut self.calls {
                c.link = Link::Tei(tei);
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Tx> {
        self.tx.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timer(&mut self) -> Option<TimerAction> {
        self.timer_actions.pop_front()
    }

    /// Calls in progress.
    pub fn calls(&self) -> impl Iterator<Item = (CallId, State, Option<u8>)> + '_ {
        self.calls.iter().map(|c| (c.id, c.state, c.channel))
    }

    pub fn state(&self, call: CallId) -> Option<State> {
        self.find(call).map(|i| self.calls[i].state)
    }

    /// The Q.931 call reference value of `call` (for the installer's view).
    pub fn call_ref(&self, call: CallId) -> Option<u16> {
        self.find(call).map(|i| self.calls[i].cr)
    }

    /// The call holding B channel `ch`, if any.
    pub fn channel_owner(&self, ch: u8) -> Option<CallId> {
        self.calls.iter().find(|c| c.channel == Some(ch)).map(|c| c.id)
    }

    /// B channels held by calls.
    pub fn busy_channels(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.calls.iter().filter_map(|c| c.channel).collect();
        v.sort_unstable();
        v
    }

    /// Checks the invariants the property tests rely on: no channel held
    /// twice, only channels of the span, no two calls with one reference.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, a) in self.calls.iter().enumerate() {
            if let Some(ch) = a.channel {
                if !self.cfg.channels.contains(&ch) {
                    return Err(format!("call {:?} holds channel {ch} outside the span", a.id));
                }
            }
            for b in &self.calls[i + 1..] {
                if a.channel.is_some() && a.channel == b.channel {
                    return Err(format!("channel {:?} held by {:?} and {:?}", a.channel, a.id, b.id));
                }
                if a.cr == b.cr && a.ours == b.ours && (a.ours || a.link == b.link) {
                    return Err(format!("call reference {} used twice", a.cr));
                }
            }
        }
        Ok(())
    }

    /// The earliest running timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.iter().flat_map(|c| c.timers.iter().flatten().copied());
        calls.chain(self.t309).chain(self.t316).min()
    }

    fn cr_len(&self) -> u8 {
        match self.cfg.interface {
            Interface::Bri => 1,
            Interface::Pri => 2,
        }
    }

    fn find(&self, id: CallId) -> Option<usize> {
        self.calls.iter().position(|c| c.id == id)
    }

    fn own_link(&self) -> Link {
        Link::Tei(self.cfg.tei)
    }

    fn link_up(&self, link: Link) -> bool {
        link == Link::Broadcast || self.links_up.contains(&link)
    }

    // ---- timers -------------------------------------------------------

    fn start(&mut self, i: usize, t: Timer, now: Instant) {
        let at = now + t.duration(&self.cfg.timers);
        self.calls[i].timers[t.index()] = Some(at);
        self.timer_actions.push_back(TimerAction::Start { id: TimerId { call: Some(self.calls[i].id), timer: t }, at });
    }

    fn stop(&mut self, i: usize, t: Timer) {
        if self.calls[i].timers[t.index()].take().is_some() {
            self.timer_actions.push_back(TimerAction::Stop { id: TimerId { call: Some(self.calls[i].id), timer: t } });
        }
    }

    fn stop_all(&mut self, i: usize) {
        for t in Timer::ALL {
            self.stop(i, t);
        }
    }

    fn start_global(&mut self, t: Timer, now: Instant) {
        let at = now + t.duration(&self.cfg.timers);
        match t {
            Timer::T309 => self.t309 = Some(at),
            _ => self.t316 = Some(at),
        }
        self.timer_actions.push_back(TimerAction::Start { id: TimerId { call: None, timer: t }, at });
    }

    fn stop_global(&mut self, t: Timer) {
        let slot = if t == Timer::T309 { &mut self.t309 } else { &mut self.t316 };
        if slot.take().is_some() {
            self.timer_actions.push_back(TimerAction::Stop { id: TimerId { call: None, timer: t } });
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            let mut due = None;
            if self.t309.is_some_and(|at| at <= now) {
                due = Some(TimerId { call: None, timer: Timer::T309 });
            } else if self.t316.is_some_and(|at| at <= now) {
                due = Some(TimerId { call: None, timer: Timer::T316 });
            } else {
                'o: for c in &self.calls {
                    for t in Timer::ALL {
                        if c.timers[t.index()].is_some_and(|at| at <= now) {
                            due = Some(TimerId { call: Some(c.id), timer: t });
                            break 'o;
                        }
                    }
                }
            }
            match due {
                Some(id) => self.handle_timer(now, id),
                None => break,
            }
        }
    }

    /// Timer `id` expired (a stale or unknown one is ignored).
    pub fn handle_timer(&mut self, now: Instant, id: TimerId) {
        let Some(call) = id.call else {
            match id.timer {
                Timer::T309 if self.t309.take().is_some() => {
                    // The calls whose data link did not come back.
                    let ids: Vec<CallId> = self.calls.iter().filter(|c| !self.link_up(c.link)).map(|c| c.id).collect();
                    for c in ids {
                        if let Some(i) = self.find(c) {
                            self.free(i, cause::DESTINATION_OUT_OF_ORDER, None);
                        }
                    }
                }
                Timer::T316 if self.t316.take().is_some() => {
                    self.t316_expiries += 1;
                    match self.restart_pending.clone() {
                        Some((ch, octets)) if self.t316_expiries < 2 => {
                            self.tx.push_back(Tx { link: self.own_link(), octets });
                            self.start_global(Timer::T316, now);
                            let _ = ch;
                        }
                        Some((ch, _)) => {
                            self.restart_pending = None;
                            self.events.push_back(Event::RestartFailed { channel: ch });
                        }
                        None => {}
                    }
                }
                _ => {}
            }
            return;
        };
        let Some(i) = self.find(call) else { return };
        if self.calls[i].timers[id.timer.index()].take().is_none() {
            return;
        }
        let loc = self.cfg.location;
        match id.timer {
            Timer::T303 => {
                self.calls[i].t303_expiries += 1;
                if !self.calls[i].responders.is_empty() {
                    // PTMP: someone answered; wait for them (T310-like), no retransmission.
                    self.start(i, Timer::T310, now);
                } else if self.calls[i].t303_expiries < 2 {
                    let octets = self.calls[i].setup.clone();
                    self.tx.push_back(Tx { link: self.calls[i].link, octets });
                    self.start(i, Timer::T303, now);
                } else {
                    let c = self.calls[i].refused.unwrap_or(if self.cfg.ptmp { cause::NO_USER_RESPONDING } else { cause::RECOVERY_ON_TIMER_EXPIRY });
                    if !self.cfg.ptmp {
                        self.send(i, MessageType::ReleaseComplete, vec![cause_ie(c, loc)]);
                    }
                    self.free(i, c, Some(loc));
                }
            }
            Timer::T301 | Timer::T304 | Timer::T310 | Timer::T313 => {
                let c = if id.timer == Timer::T301 { cause::NO_ANSWER } else { cause::RECOVERY_ON_TIMER_EXPIRY };
                self.clear_broadcast_responders(i, c);
                self.send_disconnect(now, i, c);
            }
            Timer::T302 => self.events.push_back(Event::DigitTimeout { call }),
            Timer::T305 => {
                let c = self.calls[i].clear_cause;
                self.send(i, MessageType::Release, vec![cause_ie(c, loc)]);
                self.calls[i].state = State::ReleaseRequest;
                self.start(i, Timer::T308, now);
            }
            Timer::T308 => {
                self.calls[i].t308_expiries += 1;
                if self.calls[i].t308_expiries < 2 {
                    let c = self.calls[i].clear_cause;
                    self.send(i, MessageType::Release, vec![cause_ie(c, loc)]);
                    self.start(i, Timer::T308, now);
                } else {
                    self.free(i, cause::RECOVERY_ON_TIMER_EXPIRY, Some(loc));
                }
            }
            Timer::T322 => {
                self.calls[i].t322_expiries += 1;
                if self.calls[i].t322_expiries < 3 {
                    self.send(i, MessageType::StatusEnquiry, vec![]);
                    self.start(i, Timer::T322, now);
                } else {
                    self.send_disconnect(now, i, cause::TEMPORARY_FAILURE);
                }
            }
            Timer::T309 | Timer::T316 => {}
        }
    }

    // ---- sending ------------------------------------------------------

    fn message(&self, i: usize, mt: MessageType, ies: Vec<Ie>) -> Vec<u8> {
        let c = &self.calls[i];
        let cr = CallRef { len: self.cr_len(), flag: !c.ours, value: c.cr };
        Message::new(cr, mt, ies).to_vec()
    }

    fn send(&mut self, i: usize, mt: MessageType, ies: Vec<Ie>) {
        let octets = self.message(i, mt, ies);
        self.tx.push_back(Tx { link: self.calls[i].link, octets });
    }

    fn send_to(&mut self, i: usize, link: Link, mt: MessageType, ies: Vec<Ie>) {
        let octets = self.message(i, mt, ies);
        self.tx.push_back(Tx { link, octets });
    }

    fn send_raw(&mut self, link: Link, cr: CallRef, mt: MessageType, ies: Vec<Ie>) {
        self.tx.push_back(Tx { link, octets: Message::new(cr, mt, ies).to_vec() });
    }

    fn channel_ie(&self, ch: Option<u8>, exclusive: bool) -> Ie {
        let primary = self.cfg.interface == Interface::Pri;
        let (selection, channel) = match (primary, ch) {
            (_, None) => (3, None),
            (true, Some(n)) => (1, Some(n)),
            (false, Some(n)) => (n & 3, None),
        };
        Ie::ChannelId(ChannelId { primary, exclusive, d_channel: false, selection, channel })
    }

    fn status(&mut self, i: usize, c: u8) {
        let st = self.calls[i].state.q931(self.cfg.side);
        let loc = self.cfg.location;
        self.send(i, MessageType::Status, vec![cause_ie(c, loc), Ie::CallState(st)]);
    }

    fn send_disconnect(&mut self, now: Instant, i: usize, c: u8) {
        let loc = self.cfg.location;
        self.stop_all(i);
        self.calls[i].clear_cause = c;
        if self.calls[i].link == Link::Broadcast {
            // Nobody to talk to on a broadcast call: it just ends.
            self.free(i, c, Some(loc));
            return;
        }
        self.send(i, MessageType::Disconnect, vec![cause_ie(c, loc)]);
        self.calls[i].state = State::DisconnectSent;
        self.start(i, Timer::T305, now);
    }

    fn send_release(&mut self, now: Instant, i: usize, c: u8) {
        let loc = self.cfg.location;
        self.stop_all(i);
        self.calls[i].clear_cause = c;
        self.send(i, MessageType::Release, vec![cause_ie(c, loc)]);
        self.calls[i].state = State::ReleaseRequest;
        self.start(i, Timer::T308, now);
    }

    /// Removes the call, frees its channel, reports it.
    fn free(&mut self, i: usize, c: u8, location: Option<u8>) {
        self.stop_all(i);
        let call = self.calls.remove(i);
        self.events.push_back(Event::Released { call: call.id, cause: c, location });
    }

    /// PTMP: tells every TE that answered (except the one given) to go away.
    fn clear_broadcast_responders(&mut self, i: usize, c: u8) {
        let loc = self.cfg.location;
        let winner = match self.calls[i].link {
            Link::Tei(t) => Some(t),
            Link::Broadcast => None,
        };
        let losers: Vec<u8> = self.calls[i].responders.drain(..).filter(|&t| Some(t) != winner).collect();
        for t in losers {
            self.send_to(i, Link::Tei(t), MessageType::Release, vec![cause_ie(c, loc)]);
        }
    }

    // ---- channel selection -------------------------------------------

    fn free_channel(&self, preferred: Option<u8>) -> Option<u8> {
        if let Some(p) = preferred {
            if self.cfg.channels.contains(&p) && self.channel_owner(p).is_none() {
                return Some(p);
            }
        }
        // Network side hunts from the top, user side from the bottom, which
        // makes glare rarer on a PRI.
        let free = |&&c: &&u8| self.channel_owner(c).is_none();
        match self.cfg.side {
            Side::Network => self.cfg.channels.iter().rev().find(free).copied(),
            Side::User => self.cfg.channels.iter().find(free).copied(),
        }
    }

    fn decode_channel(&self, ie: &ChannelId) -> Option<u8> {
        if ie.d_channel {
            return None;
        }
        match (self.cfg.interface, ie.selection) {
            (Interface::Pri, 1) => ie.channel,
            (Interface::Bri, 1 | 2) => Some(ie.selection),
            _ => None,
        }
    }

    // ---- requests -----------------------------------------------------

    fn alloc_cr(&mut self) -> Option<u16> {
        let max: u16 = if self.cr_len() == 1 { 127 } else { 32767 };
        for _ in 0..max {
            let cr = self.next_cr;
            self.next_cr = if self.next_cr >= max { 1 } else { self.next_cr + 1 };
            if !self.calls.iter().any(|c| c.ours && c.cr == cr) {
                return Some(cr);
            }
        }
        None
    }

    fn new_call(&mut self, cr: u16, ours: bool, link: Link, state: State, channel: Option<u8>) -> usize {
        let id = CallId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.calls.push(Call {
            id,
            cr,
            ours,
            link,
            state,
            channel,
            channel_confirmed: false,
            timers: [None; TIMER_COUNT],
            t303_expiries: 0,
            t308_expiries: 0,
            t322_expiries: 0,
            setup: Vec::new(),
            clear_cause: cause::NORMAL_CLEARING,
            responders: Vec::new(),
            refused: None,
            peer_cause: None,
        });
        self.calls.len() - 1
    }

    /// Places a call. `info.channel` is a wish (or a must with
    /// `exclusive`); without one a free channel is picked (on the network
    /// side always exclusive).
    pub fn setup(&mut self, now: Instant, info: SetupInfo) -> Result<CallId, RequestError> {
        let exclusive = info.exclusive || self.cfg.side == Side::Network;
        let channel = match info.channel {
            Some(ch) if info.exclusive => {
                if !self.cfg.channels.contains(&ch) || self.channel_owner(ch).is_some() {
                    return Err(RequestError::NoChannel(cause::CHANNEL_UNACCEPTABLE));
                }
                Some(ch)
            }
            wish => Some(self.free_channel(wish).ok_or(RequestError::NoChannel(cause::NO_CHANNEL_AVAILABLE))?),
        };
        let cr = self.alloc_cr().ok_or(RequestError::NoCallReference)?;
        let link = if self.cfg.ptmp && self.cfg.side == Side::Network { Link::Broadcast } else { self.own_link() };
        let i = self.new_call(cr, true, link, State::OutInitiated, channel);
        let bearer = info.bearer.clone().unwrap_or(BearerCapability {
            coding_standard: 0,
            transfer_capability: 0,
            transfer_mode: 0,
            transfer_rate: 0x10,
            rate_multiplier: None,
            layer1: Some(self.cfg.variant.law),
        });
        let mut ies = Vec::new();
        if info.sending_complete {
            ies.push(Ie::SendingComplete);
        }
        ies.push(Ie::BearerCapability(bearer));
        ies.push(self.channel_ie(channel, exclusive));
        if let Some(d) = &info.display {
            ies.push(Ie::Display(d.clone()));
        }
        if let Some(n) = &info.calling {
            ies.push(Ie::CallingNumber(n.clone()));
        }
        if let Some(n) = &info.called {
            ies.push(Ie::CalledNumber(n.clone()));
        }
        if let Some(n) = &info.redirecting {
            // Redirecting number (0x74) sorts after the called number (0x70).
            ies.push(Ie::RedirectingNumber(n.clone()));
        }
        let octets = self.message(i, MessageType::Setup, ies);
        self.calls[i].setup = octets.clone();
        let id = self.calls[i].id;
        if !self.link_up(link) {
            self.events.push_back(Event::EstablishLink { link });
        }
        self.tx.push_back(Tx { link, octets });
        self.start(i, Timer::T303, now);
        Ok(id)
    }

    fn call_in(&self, call: CallId, ok: impl Fn(State) -> bool) -> Result<usize, RequestError> {
        let i = self.find(call).ok_or(RequestError::NoSuchCall)?;
        if ok(self.calls[i].state) {
            Ok(i)
        } else {
            Err(RequestError::WrongState)
        }
    }

    /// The first response to an incoming SETUP carries the channel.
    fn first_response_ies(&mut self, i: usize) -> Vec<Ie> {
        if self.calls[i].channel_confirmed {
            return Vec::new();
        }
        self.calls[i].channel_confirmed = true;
        vec![self.channel_ie(self.calls[i].channel, true)]
    }

    /// Overlap receiving: SETUP ACK to an incoming SETUP.
    pub fn setup_ack(&mut self, now: Instant, call: CallId) -> Result<(), RequestError> {
        let i = self.call_in(call, |s| s == State::InPresent)?;
        let ies = self.first_response_ies(i);
        self.send(i, MessageType::SetupAcknowledge, ies);
        self.calls[i].state = State::InOverlap;
        self.start(i, Timer::T302, now);
        Ok(())
    }

    /// CALL PROCEEDING: the number is complete.
    pub fn proceeding(&mut self, _now: Instant, call: CallId) -> Result<(), RequestError> {
        let i = self.call_in(call, |s| matches!(s, State::InPresent | State::InOverlap))?;
        self.stop(i, Timer::T302);
        let ies = self.first_response_ies(i);
        self.send(i, MessageType::CallProceeding, ies);
        self.calls[i].state = State::InProceeding;
        Ok(())
    }

    pub fn alerting(&mut self, _now: Instant, call: CallId) -> Result<(), RequestError> {
        let i = self.call_in(call, |s| matches!(s, State::InPresent | State::InOverlap | State::InProceeding))?;
        self.stop(i, Timer::T302);
        let ies = self.first_response_ies(i);
        self.send(i, MessageType::Alerting, ies);
        self.calls[i].state = State::InAlerting;
        Ok(())
    }

    /// PROGRESS with a progress description (8: in-band information).
    pub fn progress(&mut self, _now: Instant, call: CallId, description: u8) -> Result<(), RequestError> {
        let i = self.call_in(call, |s| s.incoming_setup_phase() || s == State::Active)?;
        let loc = self.cfg.location;
        let p = Ie::Progress(Progress { coding_standard: 0, location: loc, description });
        self.send(i, MessageType::Progress, vec![p]);
        Ok(())
    }

    pub fn connect(&mut self, now: Instant, call: CallId) -> Result<(), RequestError> {
        let i = self.call_in(call, |s| s.incoming_setup_phase())?;
        self.stop(i, Timer::T302);
        let ies = self.first_response_ies(i);
        self.send(i, MessageType::Connect, ies);
        if self.cfg.side == Side::User {
            self.calls[i].state = State::InConnectRequest;
            self.start(i, Timer::T313, now);
        } else {
            self.calls[i].state = State::Active;
            self.events.push_back(Event::Connected { call });
        }
        Ok(())
    }

    /// Overlap sending (after SETUP ACK) or digits during the call.
    pub fn information(&mut self, now: Instant, call: CallId, digits: &[u8], complete: bool) -> Result<(), RequestError> {
        let i = self.call_in(call, |s| matches!(s, State::OutOverlap | State::OutProceeding | State::OutDelivered | State::Active))?;
        let mut ies = Vec::new();
        if complete {
            ies.push(Ie::SendingComplete);
        }
        if self.calls[i].state == State::OutOverlap {
            if !digits.is_empty() {
                let n = PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: digits.to_vec() };
                ies.push(Ie::CalledNumber(n));
            }
            if self.cfg.side == Side::User {
                self.start(i, Timer::T304, now);
            }
        } else if !digits.is_empty() {
            ies.push(Ie::Keypad(digits.to_vec()));
        }
        self.send(i, MessageType::Information, ies);
        Ok(())
    }

    /// Clears a call with `cause`: DISCONNECT, or RELEASE COMPLETE to a
    /// SETUP not yet answered.
    pub fn disconnect(&mut self, now: Instant, call: CallId, c: u8) -> Result<(), RequestError> {
        let i = self.find(call).ok_or(RequestError::NoSuchCall)?;
        let loc = self.cfg.location;
        match self.calls[i].state {
            State::InPresent => {
                self.send(i, MessageType::ReleaseComplete, vec![cause_ie(c, loc)]);
                self.free(i, c, Some(loc));
            }
            State::DisconnectSent | State::ReleaseRequest => return Err(RequestError::WrongState),
            State::DisconnectReceived => self.send_release(now, i, c),
            _ => {
                self.clear_broadcast_responders(i, c);
                self.send_disconnect(now, i, c);
            }
        }
        Ok(())
    }

    /// RELEASE after a DISCONNECT from the peer (see [`Event::Disconnect`]).
    pub fn release(&mut self, now: Instant, call: CallId, c: u8) -> Result<(), RequestError> {
        let i = self.call_in(call, |s| s == State::DisconnectReceived)?;
        self.send_release(now, i, c);
        Ok(())
    }

    /// STATUS ENQUIRY for a call (T322).
    pub fn status_enquiry(&mut self, now: Instant, call: CallId) -> Result<(), RequestError> {
        let i = self.find(call).ok_or(RequestError::NoSuchCall)?;
        self.send(i, MessageType::StatusEnquiry, vec![]);
        self.calls[i].t322_expiries = 0;
        self.start(i, Timer::T322, now);
        Ok(())
    }

    /// RESTART one B channel or (`None`) the whole interface. Calls on them
    /// are released locally with cause 41.
    pub fn restart(&mut self, now: Instant, channel: Option<u8>) -> Result<(), RequestError> {
        if let Some(ch) = channel {
            if !self.cfg.channels.contains(&ch) {
                return Err(RequestError::NoChannel(cause::CHANNEL_UNACCEPTABLE));
            }
        }
        self.clear_channels(channel, cause::TEMPORARY_FAILURE);
        let (class, mut ies) = match channel {
            Some(ch) => (0, vec![self.channel_ie(Some(ch), true)]),
            None => (self.cfg.variant.restart_all_class, vec![]),
        };
        ies.push(Ie::RestartIndicator(class));
        let octets = Message::new(CallRef::global(self.cr_len()), MessageType::Restart, ies).to_vec();
        self.tx.push_back(Tx { link: self.own_link(), octets: octets.clone() });
        self.restart_pending = Some((channel, octets));
        self.t316_expiries = 0;
        self.start_global(Timer::T316, now);
        Ok(())
    }

    fn clear_channels(&mut self, channel: Option<u8>, c: u8) {
        let ids: Vec<CallId> =
            self.calls.iter().filter(|k| channel.is_none() || k.channel == channel).map(|k| k.id).collect();
        for id in ids {
            if let Some(i) = self.find(id) {
                self.free(i, c, None);
            }
        }
    }

    // ---- layer 2 ------------------------------------------------------

    /// DL-ESTABLISH-INDICATION or -CONFIRM on `link`.
    pub fn dl_established(&mut self, _now: Instant, link: Link) {
        if !self.links_up.contains(&link) {
            self.links_up.push(link);
        }
        if self.t309.is_some() {
            self.stop_global(Timer::T309);
            // 5.8.9: report each surviving call's state to the peer.
            let idx: Vec<usize> = (0..self.calls.len()).filter(|&i| self.calls[i].link == link).collect();
            for i in idx {
                self.status(i, cause::NORMAL_UNSPECIFIED);
            }
        }
    }

    /// DL-RELEASE-INDICATION on `link` (layer 2 lost): calls not active are
    /// cleared (cause 27), active ones wait T309 for the link to return.
    pub fn dl_released(&mut self, now: Instant, link: Link) {
        self.links_up.retain(|&l| l != link);
        let ids: Vec<(CallId, State)> =
            self.calls.iter().filter(|c| c.link == link).map(|c| (c.id, c.state)).collect();
        let mut keep = false;
        for (id, st) in ids {
            if st == State::Active {
                keep = true;
            } else if let Some(i) = self.find(id) {
                self.free(i, cause::DESTINATION_OUT_OF_ORDER, None);
            }
        }
        if keep {
            if self.t309.is_none() {
                self.start_global(Timer::T309, now);
            }
            self.events.push_back(Event::EstablishLink { link });
        }
    }

    // ---- received messages -------------------------------------------

    /// A message from the data link of `link` (I frame), or from the
    /// broadcast link (UI frame, `Link::Broadcast`: user side of PTMP).
    pub fn handle_message(&mut self, now: Instant, link: Link, octets: &[u8]) {
        // 5.8.1 - 5.8.3.1: unusable headers are ignored.
        let Ok(msg) = Message::parse(octets) else { return };
        if msg.call_ref.len != self.cr_len() && msg.call_ref.len != 0 {
            return;
        }
        if msg.call_ref.len == 0 {
            return; // dummy call reference: supplementary services only
        }
        let from_network = self.cfg.side == Side::User;
        // On the user side of a PTMP BRI a broadcast SETUP arrives as UI;
        // everything we answer goes on our own data link.
        let link = if link == Link::Broadcast { self.own_link() } else { link };
        if msg.call_ref.is_global() {
            self.handle_global(now, link, &msg, from_network);
            return;
        }
        let ours = msg.call_ref.flag;
        let value = msg.call_ref.value;
        let ptmp_nt = self.cfg.ptmp && self.cfg.side == Side::Network;
        let found = self.calls.iter().position(|c| {
            c.cr == value
                && c.ours == ours
                && (c.link == link
                    || self.cfg.side == Side::User
                    || (ours && ptmp_nt && (c.link == Link::Broadcast || c.responders.contains(&link_tei(link)))))
        });
        let Some(i) = found else {
            self.unknown_call(now, link, &msg, from_network);
            return;
        };
        // 5.8.4: unknown message type, or one the variant does not use.
        if matches!(msg.message_type, MessageType::Unknown(_)) || !self.cfg.variant.knows(msg.message_type) {
            self.status(i, cause::MESSAGE_TYPE_NONEXISTENT);
            return;
        }
        if let Err(c) = msg.check(from_network) {
            match msg.message_type {
                // 5.8.6.1/2: clearing messages act even when their cause is bad.
                MessageType::Disconnect | MessageType::Release | MessageType::ReleaseComplete => {}
                _ => {
                    self.status(i, c);
                    return;
                }
            }
        }
        let ignored = msg.ignored_ies().next();
        let id = self.calls[i].id;
        self.dispatch(now, i, link, &msg);
        if let Some((_, c)) = ignored {
            let still_there = self.find(id);
            let clearing = matches!(msg.message_type, MessageType::Disconnect | MessageType::Release | MessageType::ReleaseComplete);
            if let (Some(i), false, true) = (still_there, clearing, self.cfg.variant.status_on_ignored_ie) {
                self.status(i, c);
            }
        }
    }

    fn msg_cause(msg: &Message) -> (u8, u8) {
        match msg.ie(crate::q931::ie_id::CAUSE) {
            Some(Ie::Cause(c)) => (c.value, c.location),
            Some(_) => (cause::INVALID_IE_CONTENTS, 0),
            None => (cause::MANDATORY_IE_MISSING, 0),
        }
    }

    fn msg_channel(&self, msg: &Message) -> Option<(Option<u8>, bool)> {
        match msg.ie(crate::q931::ie_id::CHANNEL_ID) {
            Some(Ie::ChannelId(c)) => Some((self.decode_channel(c), c.exclusive)),
            _ => None,
        }
    }

    /// A response to our SETUP that names a channel (first response rule).
    /// Returns false when the call had to be cleared.
    fn take_response_channel(&mut self, now: Instant, i: usize, msg: &Message) -> bool {
        let Some((Some(ch), _)) = self.msg_channel(msg) else {
            self.calls[i].channel_confirmed = true;
            return true;
        };
        if self.calls[i].channel == Some(ch) {
            self.calls[i].channel_confirmed = true;
            return true;
        }
        let owner = self.channel_owner(ch);
        if !self.cfg.channels.contains(&ch) || owner.is_some_and(|o| o != self.calls[i].id) {
            // 5.1.2 / 5.2.3.2: an unacceptable channel clears the call.
            self.send_disconnect(now, i, cause::CHANNEL_UNACCEPTABLE);
            return false;
        }
        let id = self.calls[i].id;
        self.calls[i].channel = Some(ch);
        self.calls[i].channel_confirmed = true;
        self.events.push_back(Event::ChannelChanged { call: id, channel: ch });
        true
    }

    fn dispatch(&mut self, now: Instant, i: usize, link: Link, msg: &Message) {
        let id = self.calls[i].id;
        let st = self.calls[i].state;
        let side = self.cfg.side;
        let ptmp_nt = self.cfg.ptmp && side == Side::Network;
        let loc = self.cfg.location;
        let inband = msg.ies.iter().any(|ie| matches!(ie, Ie::Progress(p) if p.description == 8));
        match msg.message_type {
            MessageType::SetupAcknowledge if st == State::OutInitiated => {
                self.stop(i, Timer::T303);
                if ptmp_nt {
                    self.note_responder(i, link);
                }
                if !self.take_response_channel(now, i, msg) {
                    return;
                }
                self.calls[i].state = State::OutOverlap;
                if side == Side::User {
                    self.start(i, Timer::T304, now);
                }
                let channel = self.calls[i].channel;
                self.events.push_back(Event::SetupAck { call: id, channel });
            }
            MessageType::CallProceeding if matches!(st, State::OutInitiated | State::OutOverlap) => {
                self.stop(i, Timer::T303);
                self.stop(i, Timer::T304);
                if ptmp_nt {
                    self.note_responder(i, link);
                }
                if !self.take_response_channel(now, i, msg) {
                    return;
                }
                self.calls[i].state = State::OutProceeding;
                if side == Side::User {
                    self.start(i, Timer::T310, now);
                }
                let channel = self.calls[i].channel;
                self.events.push_back(Event::Proceeding { call: id, channel });
            }
            MessageType::Alerting if matches!(st, State::OutInitiated | State::OutOverlap | State::OutProceeding) => {
                for t in [Timer::T303, Timer::T304, Timer::T310] {
                    self.stop(i, t);
                }
                if ptmp_nt {
                    self.note_responder(i, link);
                }
                if !self.take_response_channel(now, i, msg) {
                    return;
                }
                self.calls[i].state = State::OutDelivered;
                self.start(i, Timer::T301, now);
                self.events.push_back(Event::Alerting { call: id, inband });
            }
            MessageType::Alerting if st == State::OutDelivered && ptmp_nt => self.note_responder(i, link),
            MessageType::Connect if st.outgoing_setup_phase() => {
                self.stop_all(i);
                if ptmp_nt {
                    self.note_responder(i, link);
                    self.calls[i].link = link;
                    self.clear_broadcast_responders(i, cause::NON_SELECTED_USER_CLEARING);
                }
                if !self.take_response_channel(now, i, msg) {
                    return;
                }
                self.send(i, MessageType::ConnectAcknowledge, vec![]);
                self.calls[i].state = State::Active;
                self.events.push_back(Event::Connected { call: id });
            }
            MessageType::ConnectAcknowledge if st == State::InConnectRequest => {
                self.stop(i, Timer::T313);
                self.calls[i].state = State::Active;
                self.events.push_back(Event::Connected { call: id });
            }
            MessageType::ConnectAcknowledge if st == State::Active => {}
            MessageType::Progress if st.outgoing_setup_phase() || st.incoming_setup_phase() || st == State::Active => {
                self.stop(i, Timer::T310);
                if let Some(Ie::Progress(p)) = msg.ie(crate::q931::ie_id::PROGRESS_INDICATOR) {
                    self.events.push_back(Event::Progress { call: id, description: p.description });
                }
            }
            MessageType::Information => {
                let mut digits = Vec::new();
                for ie in &msg.ies {
                    match ie {
                        Ie::CalledNumber(n) => digits.extend_from_slice(&n.digits),
                        Ie::Keypad(k) => digits.extend_from_slice(k),
                        _ => {}
                    }
                }
                let complete = msg.ie(crate::q931::ie_id::SENDING_COMPLETE).is_some();
                if st == State::InOverlap {
                    if complete {
                        self.stop(i, Timer::T302);
                    } else {
                        self.start(i, Timer::T302, now);
                    }
                }
                if !digits.is_empty() || complete {
                    self.events.push_back(Event::Digits { call: id, digits, complete });
                }
            }
            MessageType::Disconnect if ptmp_nt && self.calls[i].link == Link::Broadcast => {
                // One TE of several refuses a broadcast SETUP.
                let (c, _) = Self::msg_cause(msg);
                self.send_to(i, link, MessageType::Release, vec![cause_ie(c, loc)]);
                self.calls[i].responders.retain(|&t| Link::Tei(t) != link);
                self.calls[i].refused = Some(c);
                if self.calls[i].responders.is_empty() && self.calls[i].timers[Timer::T303.index()].is_none() {
                    self.free(i, c, None);
                }
            }
            MessageType::ReleaseComplete | MessageType::Release
                if ptmp_nt && self.calls[i].link == Link::Broadcast =>
            {
                let (c, _) = Self::msg_cause(msg);
                if msg.message_type == MessageType::Release {
                    self.send_to(i, link, MessageType::ReleaseComplete, vec![]);
                }
                self.calls[i].responders.retain(|&t| Link::Tei(t) != link);
                self.calls[i].refused = Some(c);
                if self.calls[i].responders.is_empty() && self.calls[i].timers[Timer::T303.index()].is_none() {
                    self.free(i, c, None);
                }
            }
            MessageType::Disconnect => {
                let (c, l) = Self::msg_cause(msg);
                match st {
                    State::ReleaseRequest => {}
                    State::DisconnectSent => {
                        // 5.3.5 clear collision.
                        self.stop(i, Timer::T305);
                        self.send_release(now, i, c);
                    }
                    _ => {
                        self.stop_all(i);
                        self.calls[i].peer_cause = Some((c, l));
                        self.calls[i].state = State::DisconnectReceived;
                        self.events.push_back(Event::Disconnect { call: id, cause: c, location: l, inband });
                        if !(inband && side == Side::User) {
                            let c = if c == cause::MANDATORY_IE_MISSING || c == cause::INVALID_IE_CONTENTS { c } else { cause::NORMAL_CLEARING };
                            self.send_release(now, i, c);
                        }
                    }
                }
            }
            MessageType::Release => {
                let (c, l) = Self::msg_cause(msg);
                if st != State::ReleaseRequest {
                    // 5.8.6.1: a RELEASE without its cause is still a RELEASE.
                    let ies = if c == cause::MANDATORY_IE_MISSING && msg.ie(crate::q931::ie_id::CAUSE).is_none() {
                        vec![cause_ie(c, loc)]
                    } else {
                        vec![]
                    };
                    self.send(i, MessageType::ReleaseComplete, ies);
                }
                // The call ends with the cause of whoever cleared it first.
                let (c, l) = match st {
                    State::ReleaseRequest => self.calls[i].peer_cause.unwrap_or((self.calls[i].clear_cause, self.cfg.location)),
                    State::DisconnectSent => (self.calls[i].clear_cause, self.cfg.location),
                    _ => (c, l),
                };
                self.free(i, c, Some(l));
            }
            MessageType::ReleaseComplete => {
                let (c, l) = Self::msg_cause(msg);
                let (c, l) = match (st, self.calls[i].peer_cause) {
                    (State::ReleaseRequest, Some(pc)) => pc,
                    (State::ReleaseRequest, None) if msg.ie(crate::q931::ie_id::CAUSE).is_none() => {
                        (self.calls[i].clear_cause, self.cfg.location)
                    }
                    _ => (c, l),
                };
                self.free(i, c, Some(l));
            }
            MessageType::StatusEnquiry => self.status(i, cause::RESPONSE_TO_STATUS_ENQUIRY),
            MessageType::Status => {
                let (c, _) = Self::msg_cause(msg);
                let remote = match msg.ie(crate::q931::ie_id::CALL_STATE) {
                    Some(Ie::CallState(s)) => *s,
                    _ => return,
                };
                self.stop(i, Timer::T322);
                if remote == 0 {
                    // 5.8.11: the peer has no such call.
                    self.free(i, c, None);
                } else if remote != st.q931(side) && !compatible(st.q931(side), remote, side) {
                    self.clear_broadcast_responders(i, cause::MESSAGE_NOT_COMPATIBLE);
                    self.send_disconnect(now, i, cause::MESSAGE_NOT_COMPATIBLE);
                } else {
                    self.events.push_back(Event::Status { call: id, cause: c, state: remote });
                }
            }
            MessageType::Notify | MessageType::Facility => {}
            MessageType::Setup => {
                // A retransmitted SETUP for a call we already have: ignore.
            }
            _ => {
                // 5.8.4: message not compatible with the call state.
                if !matches!(st, State::ReleaseRequest) {
                    self.status(i, cause::MESSAGE_NOT_COMPATIBLE_WITH_STATE);
                }
            }
        }
    }

    fn note_responder(&mut self, i: usize, link: Link) {
        if let Link::Tei(t) = link {
            if !self.calls[i].responders.contains(&t) {
                self.calls[i].responders.push(t);
            }
        }
    }

    fn handle_global(&mut self, now: Instant, link: Link, msg: &Message, from_network: bool) {
        let cr = msg.call_ref;
        match msg.message_type {
            MessageType::Restart => {
                let class = match msg.ie(crate::q931::ie_id::RESTART_INDICATOR) {
                    Some(Ie::RestartIndicator(c)) => *c,
                    _ => {
                        let st = Ie::CallState(0);
                        self.send_raw(link, cr.with_flag(true), MessageType::Status, vec![cause_ie(cause::MANDATORY_IE_MISSING, self.cfg.location), st]);
                        return;
                    }
                };
                let channel = self.msg_channel(msg).and_then(|(c, _)| c);
                if class == 0 && channel.is_none_or(|c| !self.cfg.channels.contains(&c)) {
                    let st = Ie::CallState(0);
                    self.send_raw(link, cr.with_flag(true), MessageType::Status, vec![cause_ie(cause::INVALID_IE_CONTENTS, self.cfg.location), st]);
                    return;
                }
                let channel = if class == 0 { channel } else { None };
                self.clear_channels(channel, cause::TEMPORARY_FAILURE);
                let mut ies: Vec<Ie> = msg.ies.iter().filter(|ie| matches!(ie, Ie::ChannelId(_))).cloned().collect();
                ies.push(Ie::RestartIndicator(class));
                self.send_raw(link, cr.with_flag(true), MessageType::RestartAcknowledge, ies);
                self.events.push_back(Event::Restarted { channel });
            }
            MessageType::RestartAcknowledge => {
                if let Some((ch, _)) = self.restart_pending.take() {
                    self.stop_global(Timer::T316);
                    self.events.push_back(Event::RestartAcknowledged { channel: ch });
                }
            }
            // STATUS on the global call reference: nothing to compare it with.
            MessageType::Status => {}
            _ => {
                // 5.8.3.3: other messages on the global call reference.
                let _ = (now, from_network);
                let st = Ie::CallState(0);
                self.send_raw(link, cr.with_flag(!cr.flag), MessageType::Status, vec![cause_ie(cause::INVALID_CALL_REFERENCE, self.cfg.location), st]);
            }
        }
    }

    /// 5.8.3.2: a message for a call reference we do not know.
    fn unknown_call(&mut self, now: Instant, link: Link, msg: &Message, from_network: bool) {
        let cr = msg.call_ref.with_flag(!msg.call_ref.flag);
        let loc = self.cfg.location;
        match msg.message_type {
            MessageType::Setup if !msg.call_ref.flag => self.incoming_setup(now, link, msg, from_network),
            MessageType::Setup | MessageType::ReleaseComplete => {}
            MessageType::Release => self.send_raw(link, cr, MessageType::ReleaseComplete, vec![cause_ie(cause::INVALID_CALL_REFERENCE, loc)]),
            MessageType::StatusEnquiry => {
                self.send_raw(link, cr, MessageType::Status, vec![cause_ie(cause::RESPONSE_TO_STATUS_ENQUIRY, loc), Ie::CallState(0)])
            }
            MessageType::Status => {
                if !matches!(msg.ie(crate::q931::ie_id::CALL_STATE), Some(Ie::CallState(0))) {
                    self.send_raw(link, cr, MessageType::ReleaseComplete, vec![cause_ie(cause::INVALID_CALL_REFERENCE, loc)]);
                }
            }
            // A broadcast SETUP's answers after the call has gone (PTMP losers).
            MessageType::Alerting | MessageType::CallProceeding | MessageType::Connect | MessageType::SetupAcknowledge
                if msg.call_ref.flag && self.cfg.ptmp && self.cfg.side == Side::Network =>
            {
                self.send_raw(link, cr, MessageType::Release, vec![cause_ie(cause::NON_SELECTED_USER_CLEARING, loc)]);
            }
            _ => self.send_raw(link, cr, MessageType::ReleaseComplete, vec![cause_ie(cause::INVALID_CALL_REFERENCE, loc)]),
        }
    }

    fn incoming_setup(&mut self, _now: Instant, link: Link, msg: &Message, from_network: bool) {
        let loc = self.cfg.location;
        let reply_cr = msg.call_ref.with_flag(true);
        if let Err(c) = msg.check(from_network) {
            // 5.8.5 / 5.8.6: a SETUP missing something it needs is refused.
            self.send_raw(link, reply_cr, MessageType::ReleaseComplete, vec![cause_ie(c, loc)]);
            return;
        }
        if msg.ie(crate::q931::ie_id::CALLED_NUMBER).is_none() && !self.cfg.variant.overlap {
            self.send_raw(link, reply_cr, MessageType::ReleaseComplete, vec![cause_ie(cause::INVALID_NUMBER_FORMAT, loc)]);
            return;
        }
        let (wish, exclusive) = match self.msg_channel(msg) {
            Some((ch, ex)) => (ch, ex),
            None => (None, false),
        };
        // Channel selection (5.1.2 / 5.2.3).
        let channel = match wish {
            Some(ch) if !self.cfg.channels.contains(&ch) => {
                self.send_raw(link, reply_cr, MessageType::ReleaseComplete, vec![cause_ie(cause::CHANNEL_UNACCEPTABLE, loc)]);
                return;
            }
            Some(ch) => match self.channel_owner(ch) {
                None => ch,
                Some(owner) => {
                    let oi = self.find(owner).expect("owner exists");
                    let glare = self.calls[oi].state == State::OutInitiated && !self.calls[oi].channel_confirmed;
                    if glare && self.cfg.side == Side::User {
                        // Glare: the network wins the channel; our own call
                        // waits for the network to tell it another one.
                        self.calls[oi].channel = None;
                        ch
                    } else if exclusive {
                        self.send_raw(link, reply_cr, MessageType::ReleaseComplete, vec![cause_ie(cause::REQUESTED_CHANNEL_NOT_AVAILABLE, loc)]);
                        return;
                    } else if let Some(other) = self.free_channel(None) {
                        other
                    } else {
                        self.send_raw(link, reply_cr, MessageType::ReleaseComplete, vec![cause_ie(cause::NO_CHANNEL_AVAILABLE, loc)]);
                        return;
                    }
                }
            },
            None if self.cfg.side == Side::User && self.cfg.interface == Interface::Pri => {
                // The network must name the channel on a PRI.
                self.send_raw(link, reply_cr, MessageType::ReleaseComplete, vec![cause_ie(cause::MANDATORY_IE_MISSING, loc)]);
                return;
            }
            None => match self.free_channel(None) {
                Some(c) => c,
                None => {
                    // On a BRI user side with no free B channel the call may
                    // still be offered (call waiting); we refuse it.
                    self.send_raw(link, reply_cr, MessageType::ReleaseComplete, vec![cause_ie(cause::NO_CHANNEL_AVAILABLE, loc)]);
                    return;
                }
            },
        };
        let i = self.new_call(msg.call_ref.value, false, link, State::InPresent, Some(channel));
        let id = self.calls[i].id;
        let mut info = SetupInfo { channel: Some(channel), exclusive, ..Default::default() };
        for ie in &msg.ies {
            match ie {
                Ie::BearerCapability(b) => info.bearer = Some(b.clone()),
                Ie::CalledNumber(n) => info.called = Some(n.clone()),
                Ie::CallingNumber(n) => info.calling = Some(n.clone()),
                Ie::RedirectingNumber(n) => info.redirecting = Some(n.clone()),
                Ie::SendingComplete => info.sending_complete = true,
                Ie::Display(d) => info.display = Some(d.clone()),
                _ => {}
            }
        }
        self.events.push_back(Event::Setup { call: id, link, info });
        if self.cfg.variant.status_on_ignored_ie {
            if let Some((_, c)) = msg.ignored_ies().next() {
                self.status(i, c);
            }
        }
    }
}

fn link_tei(link: Link) -> u8 {
    match link {
        Link::Tei(t) => t,
        Link::Broadcast => crate::lapd::TEI_GROUP,
    }
}

/// Q.931 5.8.11: states the peer may report without the call being
/// cleared (a message in flight explains the difference).
fn compatible(ours: u8, theirs: u8, _side: Side) -> bool {
    // Any setup-phase state against another setup-phase state, and any
    // clearing state against any other, are transient differences.
    let setup = |s: u8| matches!(s, 1..=9 | 25);
    let clearing = |s: u8| matches!(s, 11 | 12 | 19);
    (setup(ours) && (setup(theirs) || theirs == 10))
        || (ours == 10 && setup(theirs))
        || clearing(ours)
        || clearing(theirs)
}

impl CallRef {
    /// The same call reference with the flag set to `flag`.
    pub const fn with_flag(self, flag: bool) -> Self {
        CallRef { flag, ..self }
    }
}
