//! linesim's side of the card's ISDN spans (SIMLINK.md, "ISDN spans"): the
//! far end of each span, the network (NT, the carrier) when the card is TE
//! and the user (TE, a PBX) when the card is NT.
//!
//! Layer 1 is linesim's to give: the line is plugged in at connect (linesim
//! answers the card's SPAN with L1 activated), [`IsdnSpan::pull_l1`] pulls
//! it (deactivated, LOS on an E1) and [`IsdnSpan::restore_l1`] plugs it back.
//! Layer 2 is gw-isdn's Q.921 [`DataLink`] on TEI 0, passive by default (it
//! answers the card's SABME); [`IsdnSpan::establish_l2`] and
//! [`IsdnSpan::drop_l2`] drive it. Layer 3 is raw by default:
//! [`IsdnSpan::send_q931`] sends any message built with gw-isdn's codec (or
//! [`IsdnSpan::send_setup`] a SETUP with numbers), [`IsdnSpan::recv_q931`]
//! reads what arrived. The call API ([`IsdnSpan::place_call`],
//! [`IsdnSpan::wait_incoming`], `alert`/`answer`/`release`, `send_digits`,
//! [`IsdnSpan::wait_state`], [`IsdnSpan::last_cause`]) runs gw-isdn's Q.931
//! call control (EuroISDN, the side linesim plays) over the same link from
//! its first use on; raw messages are still kept beside it. A layer-1 loss
//! ends linesim's calls too. The
//! B-channels are ordinary linesim ports ([`IsdnSpan::b_channel`] gives the
//! [`Phone`] that plays and records on one).
//!
//! The link's frames go out from the reader thread (in order with the
//! acknowledgements it owes), at the latest one AUDIO tick (10 ms) after an
//! API call queued them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gw_hal::isdn::{Alarms, L1State, L1Status, Side, SpanKind};
use gw_hal::sim::wire::{self, Message};
use gw_isdn::q921::{self, DataLink, Event};
use gw_isdn::call::{self as cc, CallControl, CallId, Link};
use gw_isdn::q931;

use crate::{Inner, LinesimError, Phone, State};
use std::sync::Arc;

/// Received Q.931 messages kept per span.
const Q931_KEPT: usize = 256;

/// linesim's end of one span.
#[derive(Debug)]
pub(crate) struct SpanSim {
    pub kind: SpanKind,
    /// The side linesim plays (the other one from the card's).
    pub plays: Side,
    pub first_channel: usize,
    pub channels: usize,
    /// The line is plugged in (layer 1 can be active).
    pub plugged: bool,
    pub l1: L1Status,
    pub link: DataLink,
    pub l2_up: bool,
    pub q931_rx: VecDeque<Vec<u8>>,
    pub stats: SpanStats,
    /// Q.931 call control over the link, from the first use of the call
    /// API on ([`IsdnSpan::enable_calls`]); raw Q.931 only until then.
    pub cc: Option<CallControl>,
    pub calls: Vec<SimCall>,
    /// Incoming calls not yet taken by [`IsdnSpan::wait_incoming`].
    pub incoming: VecDeque<CallHandle>,
    /// Messages the call control sent while layer 2 was not up.
    pub pending: Vec<Vec<u8>>,
}

/// A call on linesim's side of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallHandle(pub u32);

/// Where a call is, as linesim's switch sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Our SETUP is out / an incoming SETUP is offered.
    Setup,
    /// CALL PROCEEDING or SETUP ACK received.
    Proceeding,
    Alerting,
    Connected,
    /// DISCONNECT or RELEASE: gone, with [`IsdnSpan::last_cause`].
    Released,
}

/// What linesim knows of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCall {
    pub handle: CallHandle,
    pub id: CallId,
    pub incoming: bool,
    pub state: CallState,
    pub called: String,
    pub calling: Option<String>,
    /// Presentation indicator of the calling number (0 allowed, 1 restricted).
    pub presentation: Option<u8>,
    /// Screening indicator with the presentation (3: network provided).
    pub screening: Option<u8>,
    pub channel: Option<u8>,
    pub cause: Option<u8>,
    /// Overlap digits received after the SETUP.
    pub digits: String,
    /// "Sending complete" came in the SETUP or an INFORMATION (outgoing: was sent in the SETUP).
    pub sending_complete: bool,
}

/// What linesim saw on a span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanStats {
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames from the card whose FCS did not check (never expected).
    pub bad_fcs: u64,
    pub l2_establishments: u64,
    pub l2_releases: u64,
}

fn link_for(kind: SpanKind, plays: Side) -> DataLink {
    let role = if plays == Side::Nt { q921::Role::Network } else { q921::Role::User };
    DataLink::new(match kind {
        SpanKind::Pri => q921::Config::pri(role),
        SpanKind::Bri => q921::Config::bri(role, 0),
    })
}

const UP: L1Status = L1Status { state: L1State::Activated, alarms: Alarms { los: false, ais: false, rai: false } };

impl SpanSim {
    /// The call control's timers, messages and events; true if anything moved.
    fn run_calls(&mut self, now: Instant) -> bool {
        let Some(c) = self.cc.as_mut() else { return false };
        let mut moved = false;
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        while c.poll_timer().is_some() {}
        let mut out = Vec::new();
        while let Some(tx) = c.poll_transmit() {
            out.push(tx.octets);
        }
        let mut events = Vec::new();
        while let Some(e) = c.poll_event() {
            events.push(e);
        }
        for m in out {
            moved = true;
            if !self.l2_up {
                self.link.dl_establish_request(now);
                if self.pending.len() < 64 {
                    self.pending.push(m);
                }
            } else if self.link.dl_data_request(now, m.clone()).is_err() && self.pending.len() < 64 {
                self.pending.push(m);
            }
        }
        for e in events {
            moved = true;
            self.call_event(e);
        }
        moved
    }

    fn call_mut(&mut self, id: CallId) -> Option<&mut SimCall> {
        self.calls.iter_mut().rev().find(|c| c.id == id && c.state != CallState::Released)
    }

    fn call_event(&mut self, e: cc::Event) {
        let text = |n: &Option<q931::PartyNumber>| n.as_ref().map(|n| String::from_utf8_lossy(&n.digits).into_owned());
        match e {
            cc::Event::Setup { call, info, .. } => {
                let handle = CallHandle(self.calls.len() as u32);
                self.calls.push(SimCall {
                    handle,
                    id: call,
                    incoming: true,
                    state: CallState::Setup,
                    called: text(&info.called).unwrap_or_default(),
                    calling: text(&info.calling),
                    presentation: info.calling.as_ref().and_then(|n| n.presentation),
                    screening: info.calling.as_ref().filter(|n| n.presentation.is_some()).map(|n| n.screening),
                    channel: info.channel,
                    cause: None,
                    digits: String::new(),
                    sending_complete: info.sending_complete,
                });
                self.incoming.push_back(handle);
            }
            cc::Event::SetupAck { call, channel } | cc::Event::Proceeding { call, channel } => {
                if let Some(c) = self.call_mut(call) {
                    c.state = CallState::Proceeding;
                    c.channel = channel.or(c.channel);
                }
            }
            cc::Event::ChannelChanged { call, channel } => {
                if let Some(c) = self.call_mut(call) {
                    c.channel = Some(channel);
                }
            }
            cc::Event::Alerting { call, .. } => {
                if let Some(c) = self.call_mut(call) {
                    c.state = CallState::Alerting;
                }
            }
            cc::Event::Connected { call } => {
                if let Some(c) = self.call_mut(call) {
                    c.state = CallState::Connected;
                }
            }
            cc::Event::Digits { call, digits, complete } => {
                if let Some(c) = self.call_mut(call) {
                    c.digits.push_str(&String::from_utf8_lossy(&digits));
                    c.sending_complete |= complete;
                }
            }
            cc::Event::Disconnect { call, cause, .. } | cc::Event::Released { call, cause, .. } => {
                if let Some(c) = self.call_mut(call) {
                    c.state = CallState::Released;
                    c.cause = Some(cause);
                }
            }
            _ => {}
        }
    }

    fn ensure_cc(&mut self, now: Instant) {
        if self.cc.is_some() {
            return;
        }
        let side = if self.plays == Side::Nt { cc::Side::Network } else { cc::Side::User };
        let interface = if self.kind == SpanKind::Pri { cc::Interface::Pri } else { cc::Interface::Bri };
        let mut c = CallControl::new(cc::Config::new(side, interface, &cc::EUROISDN));
        if self.l2_up {
            c.dl_established(now, Link::Tei(0));
        }
        self.cc = Some(c);
    }

    fn down_status(&self) -> L1Status {
        L1Status { state: L1State::Deactivated, alarms: Alarms { los: self.kind == SpanKind::Pri, ..Alarms::default() } }
    }

    fn set_l1(&mut self, span: u8, status: L1Status, reply: &mut Vec<u8>) {
        let was_up = self.l1.is_up();
        self.l1 = status;
        Message::L1 { span, status }.encode(reply);
        if was_up && !status.is_up() {
            // MPH-DEACTIVATE: layer 2 starts over.
            self.link = link_for(self.kind, self.plays);
            self.pending.clear();
            if let Some(c) = self.cc.as_mut() {
                // Layer 1 gone: the calls go with it (the card says cause 38 on its side).
                *c = CallControl::new(c.config().clone());
                for call in self.calls.iter_mut().filter(|c| c.state != CallState::Released) {
                    call.state = CallState::Released;
                    call.cause.get_or_insert(38);
                }
            }
            if self.l2_up {
                self.l2_up = false;
                self.stats.l2_releases += 1;
            }
        }
    }
}

/// The card's SPAN, DFRAME and L1_REQUEST messages (reader thread).
pub(crate) fn handle(st: &mut State, m: Message, reply: &mut Vec<u8>, now: Instant) {
    match m {
        Message::Span { span, kind, side, first_channel, channels } => {
            let k = usize::from(span);
            if st.spans.len() <= k {
                st.spans.resize_with(k + 1, || None);
            }
            let plays = side.other();
            let fresh = st.spans[k].as_ref().is_none_or(|s| s.plays != plays || s.kind != kind);
            if fresh {
                let mut s = SpanSim {
                    kind,
                    plays,
                    first_channel: usize::from(first_channel),
                    channels: usize::from(channels),
                    plugged: true,
                    l1: L1Status::DOWN,
                    link: link_for(kind, plays),
                    l2_up: false,
                    q931_rx: VecDeque::new(),
                    stats: SpanStats::default(),
                    cc: None,
                    calls: Vec::new(),
                    incoming: VecDeque::new(),
                    pending: Vec::new(),
                };
                // Plugged in: the line comes up as soon as the card is there.
                s.set_l1(span, UP, reply);
                st.spans[k] = Some(s);
            }
        }
        Message::DFrame { span, octets } => {
            let Some(s) = st.spans.get_mut(usize::from(span)).and_then(Option::as_mut) else { return };
            match wire::dframe_check(&octets) {
                Some(frame) if s.l1.is_up() => {
                    s.stats.frames_in += 1;
                    s.link.handle_frame(now, frame);
                }
                Some(_) => {}
                None => s.stats.bad_fcs += 1,
            }
        }
        Message::L1Request { span, activate } => {
            let Some(s) = st.spans.get_mut(usize::from(span)).and_then(Option::as_mut) else { return };
            if activate && s.plugged && !s.l1.is_up() {
                s.set_l1(span, UP, reply);
            } else if !activate && s.kind == SpanKind::Bri && s.l1.is_up() {
                // A BRI may be deactivated; an E1 stays framed.
                s.set_l1(span, L1Status::DOWN, reply);
            }
        }
        _ => {}
    }
}

/// Runs the links' due timers and sends what they want sent (reader thread,
/// after every read).
pub(crate) fn poll(st: &mut State, reply: &mut Vec<u8>, now: Instant) -> bool {
    let mut changed = false;
    for (k, s) in st.spans.iter_mut().enumerate() {
        let Some(s) = s.as_mut() else { continue };
        if s.link.poll_timeout().is_some_and(|t| t <= now) {
            s.link.handle_timeout(now);
        }
        for _ in 0..8 {
            let mut moved = false;
            while let Some(f) = s.link.poll_transmit() {
                moved = true;
                if s.l1.is_up() {
                    Message::DFrame { span: k as u8, octets: wire::dframe_payload(&f) }.encode(reply);
                    s.stats.frames_out += 1;
                }
            }
            while let Some(ev) = s.link.poll_event() {
                changed = true;
                moved = true;
                match ev {
                    Event::EstablishConfirm | Event::EstablishIndication => {
                        if !s.l2_up {
                            s.stats.l2_establishments += 1;
                        }
                        s.l2_up = true;
                        for m in std::mem::take(&mut s.pending) {
                            let _ = s.link.dl_data_request(now, m);
                        }
                        if let Some(c) = s.cc.as_mut() {
                            c.dl_established(now, Link::Tei(0));
                        }
                    }
                    Event::ReleaseConfirm | Event::ReleaseIndication => {
                        if s.l2_up {
                            s.stats.l2_releases += 1;
                        }
                        s.l2_up = false;
                        if let Some(c) = s.cc.as_mut() {
                            c.dl_released(now, Link::Tei(0));
                        }
                    }
                    Event::Data(d) | Event::UnitData(d) => {
                        if let Some(c) = s.cc.as_mut() {
                            c.handle_message(now, Link::Tei(0), &d);
                        }
                        if s.q931_rx.len() >= Q931_KEPT {
                            s.q931_rx.pop_front();
                        }
                        s.q931_rx.push_back(d);
                    }
                    Event::MdlError(_) => {}
                }
            }
            moved |= s.run_calls(now);
            changed |= moved;
            if !moved {
                break;
            }
        }
    }
    changed
}

/// linesim's end of span `index` of the card.
#[derive(Clone)]
pub struct IsdnSpan {
    pub(crate) inner: Arc<Inner>,
    pub(crate) index: usize,
}

impl std::fmt::Debug for IsdnSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsdnSpan").field("index", &self.index).finish()
    }
}

impl IsdnSpan {
    fn with<T>(&self, f: impl FnOnce(&mut SpanSim) -> T) -> Result<T, LinesimError> {
        let mut st = self.inner.lock();
        if !st.connected {
            return Err(LinesimError::Disconnected);
        }
        let s = st.spans.get_mut(self.index).and_then(Option::as_mut).ok_or(LinesimError::NoSuchSpan(self.index))?;
        Ok(f(s))
    }

    fn send_bytes(&self, bytes: &[u8]) -> Result<(), LinesimError> {
        use std::io::Write;
        if bytes.is_empty() {
            return Ok(());
        }
        let mut w = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.write_all(bytes).map_err(|_| LinesimError::Disconnected)
    }

    /// Waits (wall time) until the card has described this span.
    pub fn wait_present(&self, timeout: Duration) -> Result<(), LinesimError> {
        let i = self.index;
        self.inner.wait(Instant::now() + timeout, |st| st.spans.get(i).and_then(Option::as_ref).map(|_| ()))
    }

    pub fn kind(&self) -> Result<SpanKind, LinesimError> {
        self.with(|s| s.kind)
    }

    /// The side linesim plays (NT when the card is TE, and the other way).
    pub fn plays(&self) -> Result<Side, LinesimError> {
        self.with(|s| s.plays)
    }

    pub fn l1(&self) -> Result<L1Status, LinesimError> {
        self.with(|s| s.l1)
    }

    pub fn l2_up(&self) -> Result<bool, LinesimError> {
        self.with(|s| s.l2_up)
    }

    pub fn l2_state(&self) -> Result<q921::State, LinesimError> {
        self.with(|s| s.link.state())
    }

    pub fn stats(&self) -> Result<SpanStats, LinesimError> {
        self.with(|s| s.stats)
    }

    /// The phone on B-channel `b` (0-based: B1 is 0; on a PRI TS1..15 are
    /// 0..14 and TS17..31 are 15..29).
    pub fn b_channel(&self, b: usize) -> Result<Phone, LinesimError> {
        let (first, n) = self.with(|s| (s.first_channel, s.channels))?;
        if b >= n {
            return Err(LinesimError::NoSuchPort(first + b));
        }
        Ok(Phone { inner: self.inner.clone(), index: first + b })
    }

    /// Pulls layer 1: the line goes dead (E1: loss of signal); layer 2 is
    /// gone on both sides. Activation requests are refused until
    /// [`IsdnSpan::restore_l1`].
    pub fn pull_l1(&self) -> Result<(), LinesimError> {
        let mut out = Vec::new();
        let span = self.index as u8;
        self.with(|s| {
            s.plugged = false;
            let down = s.down_status();
            s.set_l1(span, down, &mut out);
        })?;
        self.inner.changed.notify_all();
        self.send_bytes(&out)
    }

    /// Plugs the line back: layer 1 active, no alarm.
    pub fn restore_l1(&self) -> Result<(), LinesimError> {
        let mut out = Vec::new();
        let span = self.index as u8;
        self.with(|s| {
            s.plugged = true;
            s.set_l1(span, UP, &mut out);
        })?;
        self.send_bytes(&out)
    }

    /// Sends layer-1 state and E1 alarms as given (e.g. AIS, RAI).
    pub fn set_l1(&self, status: L1Status) -> Result<(), LinesimError> {
        let mut out = Vec::new();
        let span = self.index as u8;
        self.with(|s| s.set_l1(span, status, &mut out))?;
        self.send_bytes(&out)
    }

    /// DL-ESTABLISH-REQUEST: linesim sends SABME.
    pub fn establish_l2(&self) -> Result<(), LinesimError> {
        self.with(|s| s.link.dl_establish_request(Instant::now()))
    }

    /// DL-RELEASE-REQUEST: linesim sends DISC.
    pub fn drop_l2(&self) -> Result<(), LinesimError> {
        self.with(|s| s.link.dl_release_request(Instant::now()))
    }

    /// Waits (wall time) until layer 2 is up (`true`) or down.
    pub fn wait_l2(&self, up: bool, timeout: Duration) -> Result<(), LinesimError> {
        let i = self.index;
        self.inner.wait(Instant::now() + timeout, |st| {
            st.spans.get(i).and_then(Option::as_ref).filter(|s| s.l2_up == up).map(|_| ())
        })
    }

    /// Sends one frame as the card would see it, `octets` with a good FCS or
    /// (`good_fcs` false) a broken one.
    pub fn send_raw_frame(&self, octets: &[u8], good_fcs: bool) -> Result<(), LinesimError> {
        let mut payload = wire::dframe_payload(octets);
        if !good_fcs {
            let n = payload.len();
            payload[n - 1] ^= 0xA5;
        }
        let mut out = Vec::new();
        Message::DFrame { span: self.index as u8, octets: payload }.encode(&mut out);
        self.send_bytes(&out)
    }

    /// Queues a Q.931 message for acknowledged transfer (layer 2 must be up).
    pub fn send_q931(&self, msg: &q931::Message) -> Result<(), LinesimError> {
        let bytes = msg.to_vec();
        self.with(|s| s.link.dl_data_request(Instant::now(), bytes))?
            .map_err(|e| LinesimError::Isdn(format!("layer 2 refused the message: {e:?}")))
    }

    /// Sends a SETUP for speech with the called and calling numbers (en bloc,
    /// sending complete), preferring B-channel `channel` (its number: B1/B2,
    /// or an E1 timeslot) or any.
    pub fn send_setup(&self, call_ref: u16, called: &str, calling: Option<&str>, channel: Option<u8>) -> Result<(), LinesimError> {
        let kind = self.kind()?;
        let msg = setup_message(kind, call_ref, called, calling, channel);
        self.send_q931(&msg)
    }

    /// The next Q.931 message received (waits, wall time), parsed; a message
    /// that does not parse is an error carrying its octets.
    pub fn recv_q931(&self, timeout: Duration) -> Result<q931::Message, LinesimError> {
        let i = self.index;
        let raw = self.inner.wait(Instant::now() + timeout, |st| {
            st.spans.get_mut(i).and_then(Option::as_mut).and_then(|s| s.q931_rx.pop_front())
        })?;
        q931::Message::parse(&raw).map_err(|e| LinesimError::Isdn(format!("unparsable Q.931 {raw:02X?}: {e:?}")))
    }
    // ---- calls (Q.931 call control) -----------------------------------

    /// Runs Q.931 call control (gw-isdn's, EuroISDN, the side linesim plays)
    /// on this span from now on; the call API below does it by itself.
    /// Raw messages ([`IsdnSpan::recv_q931`]) are still kept.
    pub fn enable_calls(&self) -> Result<(), LinesimError> {
        self.with(|s| s.ensure_cc(Instant::now()))
    }

    /// Places a call: `channel` is asked for exclusively (none: any).
    pub fn place_call(&self, called: &str, calling: Option<&str>, channel: Option<u8>, complete: bool) -> Result<CallHandle, LinesimError> {
        self.place_call_with(called, calling, Some(0), channel, complete)
    }

    /// [`IsdnSpan::place_call`] with the calling number's presentation
    /// indicator (0 allowed, 1 restricted).
    pub fn place_call_with(
        &self,
        called: &str,
        calling: Option<&str>,
        presentation: Option<u8>,
        channel: Option<u8>,
        complete: bool,
    ) -> Result<CallHandle, LinesimError> {
        let now = Instant::now();
        let number = |d: &str, presentation: Option<u8>| q931::PartyNumber {
            type_of_number: 0,
            plan: 1,
            presentation,
            screening: 0,
            reason: None,
            digits: d.as_bytes().to_vec(),
        };
        let info = cc::SetupInfo {
            channel,
            exclusive: channel.is_some(),
            called: Some(number(called, None)),
            calling: calling.map(|c| number(c, presentation)),
            sending_complete: complete,
            ..Default::default()
        };
        self.with(|s| {
            s.ensure_cc(now);
            let id = s.cc.as_mut().expect("just made").setup(now, info).map_err(|e| LinesimError::Isdn(format!("SETUP refused: {e:?}")))?;
            let handle = CallHandle(s.calls.len() as u32);
            s.calls.push(SimCall {
                handle,
                id,
                incoming: false,
                state: CallState::Setup,
                called: called.to_string(),
                calling: calling.map(str::to_string),
                presentation,
                screening: None,
                channel,
                cause: None,
                digits: String::new(),
                sending_complete: complete,
            });
            s.run_calls(now);
            Ok(handle)
        })?
    }

    /// Waits for the next incoming call (its SETUP).
    pub fn wait_incoming(&self, timeout: Duration) -> Result<CallHandle, LinesimError> {
        self.enable_calls()?;
        let i = self.index;
        self.inner.wait(Instant::now() + timeout, |st| st.spans.get_mut(i).and_then(Option::as_mut).and_then(|s| s.incoming.pop_front()))
    }

    /// What linesim knows of call `h`.
    pub fn call(&self, h: CallHandle) -> Result<SimCall, LinesimError> {
        self.with(|s| s.calls.get(h.0 as usize).cloned())?.ok_or_else(|| LinesimError::Isdn(format!("no call {}", h.0)))
    }

    /// The cause the call ended with (received or sent), once it has.
    pub fn last_cause(&self, h: CallHandle) -> Result<Option<u8>, LinesimError> {
        Ok(self.call(h)?.cause)
    }

    /// Calls not released.
    pub fn active_calls(&self) -> Result<usize, LinesimError> {
        self.with(|s| s.calls.iter().filter(|c| c.state != CallState::Released).count())
    }

    /// Waits until call `h` is in `state`; a call released on the way is an
    /// error naming its cause.
    pub fn wait_state(&self, h: CallHandle, state: CallState, timeout: Duration) -> Result<(), LinesimError> {
        let i = self.index;
        self.inner.wait(Instant::now() + timeout, |st| {
            let c = st.spans.get(i).and_then(Option::as_ref)?.calls.get(h.0 as usize)?;
            if c.state == state {
                Some(Ok(()))
            } else if c.state == CallState::Released {
                Some(Err(LinesimError::Isdn(format!("call {} released with cause {:?}", h.0, c.cause))))
            } else {
                None
            }
        })?
    }

    fn call_request(
        &self,
        h: CallHandle,
        f: impl FnOnce(&mut CallControl, Instant, CallId) -> Result<(), cc::RequestError>,
    ) -> Result<(), LinesimError> {
        let now = Instant::now();
        self.with(|s| {
            let id = s.calls.get(h.0 as usize).map(|c| c.id).ok_or_else(|| LinesimError::Isdn(format!("no call {}", h.0)))?;
            let c = s.cc.as_mut().ok_or_else(|| LinesimError::Isdn("calls not enabled".into()))?;
            f(c, now, id).map_err(|e| LinesimError::Isdn(format!("call {}: {e:?}", h.0)))?;
            s.run_calls(now);
            Ok(())
        })?
    }

    /// SETUP ACKNOWLEDGE to an incoming overlap call: more digits welcome.
    pub fn setup_ack(&self, h: CallHandle) -> Result<(), LinesimError> {
        self.call_request(h, |c, now, id| c.setup_ack(now, id))
    }

    /// CALL PROCEEDING to an incoming call.
    pub fn proceeding(&self, h: CallHandle) -> Result<(), LinesimError> {
        self.call_request(h, |c, now, id| c.proceeding(now, id))
    }

    /// ALERTING to an incoming call.
    pub fn alert(&self, h: CallHandle) -> Result<(), LinesimError> {
        self.call_request(h, |c, now, id| c.alerting(now, id))
    }

    /// CONNECT to an incoming call.
    pub fn answer(&self, h: CallHandle) -> Result<(), LinesimError> {
        self.call_request(h, |c, now, id| c.connect(now, id))
    }

    /// Overlap digits (INFORMATION), `complete` with sending complete.
    pub fn send_digits(&self, h: CallHandle, digits: &str, complete: bool) -> Result<(), LinesimError> {
        self.call_request(h, |c, now, id| c.information(now, id, digits.as_bytes(), complete))
    }

    /// Clears call `h` with `cause` (DISCONNECT, or RELEASE COMPLETE to an
    /// unanswered SETUP).
    pub fn release(&self, h: CallHandle, cause: u8) -> Result<(), LinesimError> {
        self.call_request(h, |c, now, id| c.disconnect(now, id, cause))?;
        self.with(|s| {
            if let Some(c) = s.calls.get_mut(h.0 as usize) {
                c.state = CallState::Released;
                c.cause.get_or_insert(cause);
            }
        })
    }
}


/// A SETUP (speech, A-law, en bloc) as [`IsdnSpan::send_setup`] sends it.
pub fn setup_message(kind: SpanKind, call_ref: u16, called: &str, calling: Option<&str>, channel: Option<u8>) -> q931::Message {
    let primary = kind == SpanKind::Pri;
    let number = |digits: &str, presentation: Option<u8>| q931::PartyNumber {
        type_of_number: 0,
        plan: 1,
        presentation,
        screening: 0,
        reason: None,
        digits: digits.as_bytes().to_vec(),
    };
    let channel_id = match (primary, channel) {
        (true, Some(ts)) => q931::ChannelId { primary, exclusive: false, d_channel: false, selection: 1, channel: Some(ts) },
        (false, Some(b)) => q931::ChannelId { primary, exclusive: false, d_channel: false, selection: b.min(3), channel: None },
        (_, None) => q931::ChannelId { primary, exclusive: false, d_channel: false, selection: 3, channel: None },
    };
    let mut ies = vec![
        q931::Ie::SendingComplete,
        q931::Ie::BearerCapability(q931::BearerCapability {
            coding_standard: 0,
            transfer_capability: 0x00,
            transfer_mode: 0,
            transfer_rate: 0x10,
            rate_multiplier: None,
            layer1: Some(3),
        }),
        q931::Ie::ChannelId(channel_id),
    ];
    if let Some(c) = calling {
        ies.push(q931::Ie::CallingNumber(number(c, Some(0))));
    }
    ies.push(q931::Ie::CalledNumber(number(called, None)));
    let call_ref = q931::CallRef { len: if primary { 2 } else { 1 }, flag: false, value: call_ref };
    q931::Message::new(call_ref, q931::MessageType::Setup, ies)
}
