//! linesim's side of the card's ISDN spans (SIMLINK.md, "ISDN spans"): the
//! far end of each span, the network (NT, the carrier) when the card is TE
//! and the user (TE, a PBX) when the card is NT.
//!
//! Layer 1 is linesim's to give: the line is plugged in at connect (linesim
//! answers the card's SPAN with L1 activated), [`IsdnSpan::pull_l1`] pulls
//! it (deactivated, LOS on an E1) and [`IsdnSpan::restore_l1`] plugs it back.
//! Layer 2 is gw-isdn's Q.921 [`DataLink`] on TEI 0, passive by default (it
//! answers the card's SABME); [`IsdnSpan::establish_l2`] and
//! [`IsdnSpan::drop_l2`] drive it. Layer 3 is raw: [`IsdnSpan::send_q931`]
//! sends any message built with gw-isdn's codec (or [`IsdnSpan::send_setup`]
//! a SETUP with numbers), [`IsdnSpan::recv_q931`] reads what arrived. The
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
        while let Some(f) = s.link.poll_transmit() {
            if s.l1.is_up() {
                Message::DFrame { span: k as u8, octets: wire::dframe_payload(&f) }.encode(reply);
                s.stats.frames_out += 1;
            }
        }
        while let Some(ev) = s.link.poll_event() {
            changed = true;
            match ev {
                Event::EstablishConfirm | Event::EstablishIndication => {
                    if !s.l2_up {
                        s.stats.l2_establishments += 1;
                    }
                    s.l2_up = true;
                }
                Event::ReleaseConfirm | Event::ReleaseIndication => {
                    if s.l2_up {
                        s.stats.l2_releases += 1;
                    }
                    s.l2_up = false;
                }
                Event::Data(d) | Event::UnitData(d) => {
                    if s.q931_rx.len() >= Q931_KEPT {
                        s.q931_rx.pop_front();
                    }
                    s.q931_rx.push_back(d);
                }
                Event::MdlError(_) => {}
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
