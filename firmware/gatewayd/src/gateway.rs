//! The call router: joins the FXS line machines, the SIP user agent and the
//! rt thread.
//!
//! [`Gateway`] is driven like the protocol cores it owns: every entry point
//! takes `now`, SIP datagrams to send are drained with
//! [`Gateway::poll_transmit`], and the next deadline comes from
//! [`Gateway::poll_timeout`]. The async driver in `driver.rs` owns the
//! sockets and the clock. Port hardware (`FxsPort`) and the rt command queue
//! are used directly: both are non-blocking.
//!
//! Routing (the skeleton's rules): a number dialled on an FXS port goes to
//! the SIP trunk, from the port's own number; an inbound call for a port's
//! number rings that port; any other inbound call gets 404.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use gw_dsp::g711::Law;
use gw_dsp::tones::{CountryProfile, ToneKind};
use gw_hal::{FxsPort, RingCadence};
use gw_dsp::callerid_line::LineStep;
use gw_dsp::modem_tones::ModemToneEvent;
use gw_dsp::progress::ProgressEvent;
use gw_line::{Action, CallSignal, CallerIdStep, DialPlan, FxsConfig, FxsLine, Tone};
use gw_media::SessionConfig;
use gw_sip::sdp::{self, Codec, NegotiatedMedia, SessionDescription};
use gw_sip::{Account, CallHandle, EndReason, Event, Transmit, UaConfig, UserAgent};
use heapless::spsc::Producer;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::config::{CallerIdMode, Config};
use crate::media_io::{MediaIo, RtpPorts};
use crate::rt::{RtCommand, RtEvent, VoiceCodec};

/// One configured FXS port.
struct Port {
    /// PCM channel and HAL port index (0-based).
    channel: u8,
    /// 1-based number on the box.
    label: usize,
    number: String,
    hal: Box<dyn FxsPort + Send>,
    line: FxsLine,
    call: Option<Call>,
    /// A call to or from another port of this box (no SIP, no RTP).
    local: Option<LocalCall>,
}

/// One side of a local call: the other port and who called whom.
#[derive(Clone, Copy, Debug)]
struct LocalCall {
    peer: usize,
    incoming: bool,
    answered: bool,
}

/// The SIP call a port is in.
struct Call {
    handle: CallHandle,
    incoming: bool,
    remote_party: String,
    /// Our RTP socket until media is connected (then the media thread has it).
    socket: Option<UdpSocket>,
    rtp_port: u16,
    /// Our offer (outgoing calls).
    offer: Option<SessionDescription>,
    /// Their offer (incoming calls).
    remote_offer: Option<SessionDescription>,
    media: Option<NegotiatedMedia>,
    media_running: bool,
}

/// Status of one port, for the status API.
#[derive(Debug, Clone, Serialize)]
pub struct PortStatus {
    pub port: usize,
    pub number: String,
    pub hook: String,
    pub state: String,
    pub call: Option<String>,
    /// Filled in from the rt thread's figures by the driver.
    pub echo: Option<crate::rt::EchoStatus>,
    /// Fax/modem and call-progress tones on the channel, from the rt thread.
    pub signals: Option<crate::rt::SignalStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistrationStatus {
    pub user: String,
    pub state: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CallCounters {
    pub outgoing: u64,
    pub incoming: u64,
    pub answered: u64,
    pub failed: u64,
    pub rejected_busy: u64,
    pub rejected_unknown: u64,
    /// Calls between two ports of this box, and the ones that found the
    /// called port busy.
    pub local: u64,
    pub local_busy: u64,
    /// Calls refused at once because the trunk is down (reorder, not silence).
    pub trunk_down: u64,
    /// On-hook caller ID deliveries started, and ones that could not be built.
    pub caller_id_sent: u64,
    pub caller_id_failed: u64,
    /// Fax/modem tones recognised (either direction).
    pub modem_tones: u64,
    /// Calls hung up because the far end's audio carried busy or reorder.
    pub disconnected_on_tone: u64,
}

pub struct Gateway {
    config: Config,
    profile: &'static CountryProfile,
    cadence: RingCadence,
    ua: UserAgent,
    ports: Vec<Port>,
    calls: HashMap<CallHandle, usize>,
    rt: Producer<'static, RtCommand>,
    media: MediaIo,
    rtp_ports: RtpPorts,
    registrations: HashMap<String, String>,
    /// Accounts whose last registration attempt failed: the trunk is down for them.
    registration_failed: std::collections::HashSet<String>,
    counters: CallCounters,
    rt_overruns: u64,
    rng: u64,
}

impl Gateway {
    /// `hal_ports` are the board's FXS ports in channel order; ports without
    /// a configuration entry stay unused.
    pub fn new(
        config: Config,
        local_sip: SocketAddr,
        hal_ports: Vec<Box<dyn FxsPort + Send>>,
        rt: Producer<'static, RtCommand>,
        media: MediaIo,
        seed: u64,
    ) -> Gateway {
        let profile = gw_dsp::tones::profile(&config.system.country).expect("validated country");
        let cadence = RingCadence::new(profile.ring_cadence_ms).expect("profile cadence is valid");
        let patterns: Vec<&str> = config.dialplan.patterns.iter().map(String::as_str).collect();
        let dial_plan = DialPlan::new(&patterns).expect("validated dial plan");
        let line_config = FxsConfig {
            dial_plan,
            ring_cadence: cadence,
            first_digit_timeout: Duration::from_millis(config.dialplan.first_digit_timeout_ms),
            inter_digit_timeout: Duration::from_millis(config.dialplan.inter_digit_timeout_ms),
            reorder_timeout: Duration::from_secs(30),
            disconnect_open_ms: None,
            caller_id: config.caller_id.mode.resolve(&config.system.country) != CallerIdMode::Off,
        };

        let mut hal_ports: Vec<Option<Box<dyn FxsPort + Send>>> = hal_ports.into_iter().map(Some).collect();
        let mut ports = Vec::new();
        let mut accounts = Vec::new();
        for p in &config.fxs {
            let Some(hal) = hal_ports.get_mut(p.port - 1).and_then(Option::take) else { continue };
            ports.push(Port {
                channel: (p.port - 1) as u8,
                label: p.port,
                number: p.number.clone(),
                hal,
                line: FxsLine::new(line_config.clone()),
                call: None,
                local: None,
            });
            accounts.push(Account {
                user: p.number.clone(),
                auth_user: p.auth_user.clone().unwrap_or_else(|| p.number.clone()),
                password: p.password.clone().unwrap_or_else(|| config.sip.password.clone()),
            });
        }

        let ua = UserAgent::new(UaConfig {
            local_addr: local_sip,
            proxy: config.sip.proxy,
            domain: config.sip.domain.clone(),
            user_agent: config.sip.user_agent.clone(),
            accounts,
            register_expires: config.sip.register_expires,
            register_retry_base: Duration::from_secs(config.sip.register_retry_base_s),
            register_retry_max: Duration::from_secs(config.sip.register_retry_max_s),
            timers: Default::default(),
            rng_seed: seed,
        });
        let rtp_ports = RtpPorts::new(config.media.rtp_ip, config.media.rtp_port_min, config.media.rtp_port_max);
        Gateway {
            config,
            profile,
            cadence,
            ua,
            ports,
            calls: HashMap::new(),
            rt,
            media,
            rtp_ports,
            registrations: HashMap::new(),
            registration_failed: Default::default(),
            counters: CallCounters::default(),
            rt_overruns: 0,
            rng: seed | 1,
        }
    }

    pub fn start(&mut self, now: Instant) {
        self.ua.start(now);
        self.drain_ua(now);
    }

    /// Unregisters and hangs up; the caller then flushes `poll_transmit`.
    pub fn stop(&mut self, now: Instant) {
        let handles: Vec<CallHandle> = self.calls.keys().copied().collect();
        for h in handles {
            let _ = self.ua.hangup(now, h);
        }
        self.ua.stop(now);
    }

    // ---- inputs -------------------------------------------------------

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.ua.handle_datagram(now, from, data);
        self.drain_ua(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ua.handle_timeout(now);
        self.drain_ua(now);
        for i in 0..self.ports.len() {
            if self.ports[i].line.poll_timeout().is_some_and(|t| t <= now) {
                self.ports[i].line.handle_timeout(now);
                self.drain_line(now, i);
            }
        }
    }

    /// Reads supervision events from every port.
    pub fn handle_port_events(&mut self, now: Instant) {
        for i in 0..self.ports.len() {
            while let Some(ev) = self.ports[i].hal.poll_event() {
                debug!(port = self.ports[i].label, ?ev, "line event");
                self.ports[i].line.handle_hook(now, ev);
                self.drain_line(now, i);
            }
        }
    }

    pub fn handle_rt_event(&mut self, now: Instant, ev: RtEvent) {
        match ev {
            RtEvent::LineDigit { channel, digit } => {
                if let Some(i) = self.port_by_channel(channel) {
                    debug!(port = self.ports[i].label, digit = %(digit as char), "digit");
                    self.ports[i].line.handle_digit(now, digit);
                    self.drain_line(now, i);
                }
            }
            RtEvent::RemoteDigit { channel, digit } => {
                debug!(channel, digit = %(digit as char), "RFC 4733 digit from the far end");
            }
            RtEvent::CallerId { channel, step } => {
                let step = match step {
                    LineStep::ReversePolarity => CallerIdStep::ReversePolarity,
                    LineStep::RingOn => CallerIdStep::RingOn,
                    LineStep::RingOff => CallerIdStep::RingOff,
                    LineStep::Done => CallerIdStep::Done,
                    // Off-hook (call waiting) steps: not used on-hook.
                    LineStep::AckReceived(_) | LineStep::AckTimeout => return,
                };
                if let Some(i) = self.port_by_channel(channel) {
                    debug!(port = self.ports[i].label, ?step, "caller ID step");
                    self.ports[i].line.handle_caller_id(now, step);
                    self.drain_line(now, i);
                }
            }
            RtEvent::ModemTone { channel, from_line, event } => {
                let from = if from_line { "line" } else { "far end" };
                if let ModemToneEvent::Detected(tone) = event {
                    self.counters.modem_tones += 1;
                    info!(channel, ?tone, from, "fax/modem tone");
                } else {
                    debug!(channel, ?event, from, "fax/modem tone");
                }
            }
            RtEvent::Progress { channel, event } => {
                debug!(channel, ?event, "call-progress tone from the far end");
                let ProgressEvent::Detected(kind) = event else { return };
                if !matches!(kind, ToneKind::Busy | ToneKind::Reorder | ToneKind::Congestion)
                    || !self.config.media.disconnect_on_busy_tone
                {
                    return;
                }
                let Some(i) = self.port_by_channel(channel) else { return };
                let Some(handle) = self.ports[i].call.as_ref().filter(|c| c.media_running).map(|c| c.handle) else {
                    return;
                };
                info!(port = self.ports[i].label, call = handle.0, ?kind, "far end plays a disconnect tone: hanging up");
                self.counters.disconnected_on_tone += 1;
                let _ = self.ua.hangup(now, handle);
                self.release_port_call(i);
                self.ports[i].line.handle_call(now, CallSignal::RemoteReleased);
                self.drain_line(now, i);
            }
        }
    }

    // ---- outputs ------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ua.poll_transmit()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let lines = self.ports.iter().filter_map(|p| p.line.poll_timeout());
        self.ua.poll_timeout().into_iter().chain(lines).min()
    }

    pub fn port_status(&self) -> Vec<PortStatus> {
        self.ports
            .iter()
            .map(|p| PortStatus {
                port: p.label,
                number: p.number.clone(),
                hook: format!("{:?}", p.hal.hook()),
                state: format!("{:?}", p.line.state()),
                call: p
                    .call
                    .as_ref()
                    .map(|c| format!("{} {}", if c.incoming { "from" } else { "to" }, c.remote_party))
                    .or_else(|| {
                        p.local.map(|l| {
                            let other = &self.ports[l.peer];
                            let dir = if l.incoming { "from" } else { "to" };
                            format!("{dir} {} (local, port {})", other.number, other.label)
                        })
                    }),
                echo: None,
                signals: None,
            })
            .collect()
    }

    pub fn registration_status(&self) -> Vec<RegistrationStatus> {
        let mut v: Vec<RegistrationStatus> = self
            .registrations
            .iter()
            .map(|(u, s)| RegistrationStatus { user: u.clone(), state: s.clone() })
            .collect();
        v.sort_by(|a, b| a.user.cmp(&b.user));
        v
    }

    pub fn counters(&self) -> CallCounters {
        self.counters
    }

    pub fn rt_command_overruns(&self) -> u64 {
        self.rt_overruns
    }

    pub fn media_stats(&self) -> &crate::media_io::MediaStats {
        &self.media.stats
    }

    // ---- internals ----------------------------------------------------

    fn port_by_channel(&self, channel: u8) -> Option<usize> {
        self.ports.iter().position(|p| p.channel == channel)
    }

    fn rt_command(&mut self, cmd: RtCommand) {
        if self.rt.enqueue(cmd).is_err() {
            self.rt_overruns += 1;
            warn!("rt command queue full, command dropped");
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: SSRCs, sequence numbers and SDP session ids need to be
        // unpredictable enough to avoid collisions, not cryptographic.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn drain_line(&mut self, now: Instant, i: usize) {
        while let Some(action) = self.ports[i].line.poll_action() {
            self.apply_line_action(now, i, action);
        }
    }

    fn apply_line_action(&mut self, now: Instant, i: usize, action: Action) {
        let channel = self.ports[i].channel;
        let label = self.ports[i].label;
        debug!(port = label, ?action, "line action");
        match action {
            Action::PlayTone(tone) => {
                let kind = match tone {
                    Tone::Dial => ToneKind::Dial,
                    Tone::Ringback => ToneKind::Ringback,
                    Tone::Busy => ToneKind::Busy,
                    Tone::Reorder => ToneKind::Reorder,
                    Tone::CallWaiting => ToneKind::CallWaiting,
                };
                let spec = *self.profile.tone(kind);
                self.rt_command(RtCommand::PlayTone { channel, spec });
            }
            Action::StopTone => self.rt_command(RtCommand::StopTone { channel }),
            Action::SetRinging(cadence) => {
                if let Err(e) = self.ports[i].hal.set_ringing(cadence) {
                    warn!(port = label, ?e, "ringing refused by the line card");
                }
            }
            Action::SetLineFeed(feed) => {
                if let Err(e) = self.ports[i].hal.set_line_feed(feed) {
                    warn!(port = label, ?e, "line feed refused by the line card");
                }
            }
            Action::PlaceCall { number } => self.place_call(now, i, number),
            Action::AnswerCall if self.ports[i].local.is_some() => self.answer_local(now, i),
            Action::AnswerCall => self.answer_call(now, i),
            Action::RejectCall { busy } if self.ports[i].local.is_some() => {
                self.end_local(now, i, CallSignal::Failed { busy });
            }
            Action::ReleaseCall if self.ports[i].local.is_some() => {
                info!(port = label, "phone hung up, releasing the local call");
                let peer_ringing = self.ports[i].local.is_some_and(|l| !l.incoming && !l.answered);
                self.end_local(now, i, if peer_ringing { CallSignal::Cancelled } else { CallSignal::RemoteReleased });
            }
            Action::RejectCall { busy } => {
                // The line refuses the call it was just offered.
                if let Some(call) = self.ports[i].call.take() {
                    self.calls.remove(&call.handle);
                    let _ = self.ua.reject(now, call.handle, if busy { 486 } else { 480 });
                }
            }
            Action::ReleaseCall => {
                if let Some(call) = self.ports[i].call.take() {
                    self.calls.remove(&call.handle);
                    info!(port = label, call = call.handle.0, "phone hung up, releasing the call");
                    let _ = self.ua.hangup(now, call.handle);
                    self.stop_media(channel, &call);
                }
            }
            Action::SendCallerId { number, name } => {
                let unix = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let built = crate::callerid::sender(
                    &self.config.caller_id,
                    &self.config.system.country,
                    &self.cadence,
                    number.as_deref(),
                    name.as_deref(),
                    unix,
                );
                match built {
                    Ok(Some(sender)) => {
                        info!(port = label, ?number, ?name, "sending caller ID");
                        self.counters.caller_id_sent += 1;
                        self.rt_command(RtCommand::StartCallerId { channel, sender });
                    }
                    other => {
                        // The port rings without it; never lose the call over caller ID.
                        if let Err(e) = other {
                            warn!(port = label, %e, "caller ID not sent");
                            self.counters.caller_id_failed += 1;
                        }
                        self.ports[i].line.handle_caller_id(now, CallerIdStep::Done);
                    }
                }
            }
            Action::StopCallerId => self.rt_command(RtCommand::StopCallerId { channel }),
            Action::ConnectMedia if self.ports[i].local.is_some() => {
                if let Some(l) = self.ports[i].local {
                    let from = Some(self.ports[l.peer].channel);
                    self.rt_command(RtCommand::Listen { channel, from });
                }
            }
            Action::ConnectMedia => self.connect_media(i),
            Action::DisconnectMedia if self.ports[i].local.is_some() => {
                self.rt_command(RtCommand::Listen { channel, from: None });
            }
            Action::DisconnectMedia => {
                if let Some(call) = self.ports[i].call.as_mut() {
                    if call.media_running {
                        call.media_running = false;
                        self.rt_command(RtCommand::StopMedia { channel });
                        self.media.close(channel);
                    }
                }
            }
        }
    }

    /// Whether port `j` can take a call now.
    fn port_free(&self, j: usize) -> bool {
        let p = &self.ports[j];
        p.call.is_none() && p.local.is_none() && p.line.state() == gw_line::State::Idle
    }

    /// A number dialled on port `i` that belongs to port `j` of this box:
    /// ring `j` with `i`'s number as caller ID; the audio is bridged slot to
    /// slot in the rt thread once `j` answers. Needs no trunk.
    fn place_local_call(&mut self, now: Instant, i: usize, j: usize) {
        let (label, to) = (self.ports[i].label, self.ports[j].label);
        if i == j || !self.port_free(j) {
            info!(port = label, to_port = to, "local call: the called port is busy");
            self.counters.local_busy += 1;
            self.ports[i].line.handle_call(now, CallSignal::Failed { busy: true });
            return self.drain_line(now, i);
        }
        info!(port = label, to_port = to, number = %self.ports[j].number, "local call, ringing");
        self.counters.local += 1;
        self.ports[i].local = Some(LocalCall { peer: j, incoming: false, answered: false });
        self.ports[j].local = Some(LocalCall { peer: i, incoming: true, answered: false });
        let caller = Some(self.ports[i].number.clone());
        self.ports[j].line.handle_call(now, CallSignal::Incoming { caller, name: None });
        self.drain_line(now, j);
        // Still ours unless the called line refused it at once.
        if self.ports[i].local.is_some() {
            self.ports[i].line.handle_call(now, CallSignal::RemoteRinging);
            self.drain_line(now, i);
        }
    }

    /// The called side of a local call answered.
    fn answer_local(&mut self, now: Instant, j: usize) {
        let Some(l) = self.ports[j].local.as_mut() else { return };
        l.answered = true;
        let i = l.peer;
        if let Some(li) = self.ports[i].local.as_mut() {
            li.answered = true;
        }
        info!(port = self.ports[j].label, from_port = self.ports[i].label, "local call answered");
        self.counters.answered += 1;
        self.ports[i].line.handle_call(now, CallSignal::RemoteAnswered);
        self.drain_line(now, i);
    }

    /// Port `i` leaves its local call: both cross-connects end and the other
    /// port is told `sig`.
    fn end_local(&mut self, now: Instant, i: usize, sig: CallSignal) {
        let Some(l) = self.ports[i].local.take() else { return };
        let j = l.peer;
        let (ci, cj) = (self.ports[i].channel, self.ports[j].channel);
        self.rt_command(RtCommand::Listen { channel: ci, from: None });
        if self.ports[j].local.take().is_some() {
            self.rt_command(RtCommand::Listen { channel: cj, from: None });
            self.ports[j].line.handle_call(now, sig);
            self.drain_line(now, j);
        }
    }

    fn place_call(&mut self, now: Instant, i: usize, number: String) {
        let label = self.ports[i].label;
        if let Some(j) = self.ports.iter().position(|p| p.number == number) {
            return self.place_local_call(now, i, j);
        }
        // Never silence: with the port's trunk account known to be down the
        // caller hears reorder now, not after a 32 s transaction timeout.
        if self.registration_failed.contains(&self.ports[i].number) {
            info!(port = label, to = %number, "trunk down (registration failed): reorder");
            self.counters.trunk_down += 1;
            self.counters.failed += 1;
            self.ports[i].line.handle_call(now, CallSignal::Failed { busy: false });
            return self.drain_line(now, i);
        }
        let (socket, rtp_port) = match self.rtp_ports.bind() {
            Ok(x) => x,
            Err(e) => {
                warn!(port = label, %e, "cannot place call: no RTP port");
                self.ports[i].line.handle_call(now, CallSignal::Failed { busy: false });
                return self.drain_line(now, i);
            }
        };
        let session_id = self.random() >> 2;
        let te = self.telephone_event();
        let cn = self.config.media.silence_suppression;
        let offer = sdp::make_offer_with(self.config.media.rtp_ip, rtp_port, &self.config.codecs(), te, cn, session_id);
        let from = self.ports[i].number.clone();
        match self.ua.invite(now, &from, &number, offer.clone()) {
            Ok(handle) => {
                info!(port = label, from = %from, to = %number, call = handle.0, "placing call");
                self.counters.outgoing += 1;
                self.calls.insert(handle, i);
                self.ports[i].call = Some(Call {
                    handle,
                    incoming: false,
                    remote_party: number,
                    socket: Some(socket),
                    rtp_port,
                    offer: Some(offer),
                    remote_offer: None,
                    media: None,
                    media_running: false,
                });
                self.drain_ua(now);
            }
            Err(e) => {
                warn!(port = label, ?e, "cannot place call");
                self.ports[i].line.handle_call(now, CallSignal::Failed { busy: false });
                self.drain_line(now, i);
            }
        }
    }

    fn answer_call(&mut self, now: Instant, i: usize) {
        let codecs = self.config.codecs();
        let ip = self.config.media.rtp_ip;
        let cn = self.config.media.silence_suppression;
        let session_id = self.random() >> 2;
        let Some(call) = self.ports[i].call.as_mut() else { return };
        let Some(offer) = call.remote_offer.as_ref() else { return };
        match sdp::answer_with(offer, ip, call.rtp_port, &codecs, cn, session_id) {
            Ok((answer, negotiated)) => {
                call.media = Some(negotiated);
                let handle = call.handle;
                info!(port = self.ports[i].label, call = handle.0, "answered");
                self.counters.answered += 1;
                let _ = self.ua.answer(now, handle, answer);
                self.drain_ua(now);
            }
            Err(e) => {
                // Checked when the INVITE came in, so this is unexpected.
                warn!(?e, "offer cannot be answered");
                let handle = call.handle;
                let _ = self.ua.reject(now, handle, 488);
                self.release_port_call(i);
                self.ports[i].line.handle_call(now, CallSignal::RemoteReleased);
                self.drain_line(now, i);
            }
        }
    }

    fn connect_media(&mut self, i: usize) {
        let channel = self.ports[i].channel;
        let ptime_default = self.config.media.ptime_ms;
        let jitter = self.config.media.jitter_ms;
        let ssrc = self.random() as u32;
        let seq_ts = self.random();
        let Some(call) = self.ports[i].call.as_mut() else { return };
        let Some(media) = call.media else {
            warn!(port = self.ports[i].label, "connect requested without negotiated media");
            return;
        };
        if call.media_running {
            return;
        }
        let Some(socket) = call.socket.take() else { return };
        let ptime = if (10..=60).contains(&media.ptime_ms) && media.ptime_ms % 10 == 0 {
            media.ptime_ms
        } else {
            ptime_default
        };
        let codec = match media.codec {
            Codec::Pcmu => VoiceCodec::G711(Law::Ulaw),
            Codec::Pcma => VoiceCodec::G711(Law::Alaw),
            Codec::G722 => VoiceCodec::G722,
        };
        let session = SessionConfig {
            payload_type: media.payload_type,
            telephone_event: media.telephone_event,
            comfort_noise: media.comfort_noise,
            ptime_ms: ptime,
            ssrc,
            initial_seq: seq_ts as u16,
            initial_ts: (seq_ts >> 16) as u32,
            jitter_depth_ms: jitter,
        };
        call.media_running = true;
        info!(port = self.ports[i].label, remote = %media.remote, codec = ?media.codec, ptime, "media connected");
        self.media.open(channel, socket, media.remote);
        self.rt_command(RtCommand::StartMedia { channel, session, codec });
    }

    fn stop_media(&mut self, channel: u8, call: &Call) {
        if call.media_running {
            self.rt_command(RtCommand::StopMedia { channel });
            self.media.close(channel);
        }
    }

    /// Forgets the port's call (the SIP side is already finished or told).
    fn release_port_call(&mut self, i: usize) {
        if let Some(call) = self.ports[i].call.take() {
            self.calls.remove(&call.handle);
            self.stop_media(self.ports[i].channel, &call);
        }
    }

    fn telephone_event(&self) -> Option<u8> {
        match self.config.media.telephone_event {
            0 => None,
            pt => Some(pt),
        }
    }

    fn drain_ua(&mut self, now: Instant) {
        while let Some(ev) = self.ua.poll_event() {
            self.apply_ua_event(now, ev);
        }
    }

    fn apply_ua_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Registered { user, expires } => {
                info!(user = %user, expires, "registered");
                self.registration_failed.remove(&user);
                self.registrations.insert(user, format!("registered ({expires} s)"));
            }
            Event::RegistrationFailed { user, status, reason, retry_in } => {
                let status = status.map_or("timeout".to_string(), |s| s.to_string());
                warn!(user = %user, %status, %reason, retry_in_s = retry_in.as_secs(), "registration failed");
                self.registration_failed.insert(user.clone());
                self.registrations
                    .insert(user, format!("failed: {status} {reason}; retry in {} s", retry_in.as_secs()));
            }
            Event::IncomingCall { call, from_user, from_display, to_user, offer } => {
                self.incoming_call(now, call, from_user, from_display, to_user, offer)
            }
            Event::Ringing { call } => self.signal_line(now, call, CallSignal::RemoteRinging),
            Event::Answered { call, answer } => {
                let Some(&i) = self.calls.get(&call) else { return };
                let negotiated = match (self.ports[i].call.as_ref().and_then(|c| c.offer.as_ref()), answer) {
                    (Some(offer), Some(answer)) => sdp::accept_answer(offer, &answer).map_err(|e| format!("{e:?}")),
                    _ => Err("2xx without an SDP answer".to_string()),
                };
                match negotiated {
                    Ok(m) => {
                        info!(port = self.ports[i].label, call = call.0, "far end answered");
                        self.counters.answered += 1;
                        if let Some(c) = self.ports[i].call.as_mut() {
                            c.media = Some(m);
                        }
                        self.signal_line(now, call, CallSignal::RemoteAnswered);
                    }
                    Err(e) => {
                        warn!(call = call.0, %e, "unusable answer; hanging up");
                        let _ = self.ua.hangup(now, call);
                        self.release_port_call(i);
                        self.ports[i].line.handle_call(now, CallSignal::RemoteReleased);
                        self.drain_line(now, i);
                    }
                }
            }
            Event::Confirmed { call } => debug!(call = call.0, "ACK received"),
            Event::Failed { call, status, reason } => {
                let Some(&i) = self.calls.get(&call) else { return };
                info!(port = self.ports[i].label, call = call.0, status, %reason, "call failed");
                self.counters.failed += 1;
                self.release_port_call(i);
                let busy = matches!(status, 486 | 600);
                self.ports[i].line.handle_call(now, CallSignal::Failed { busy });
                self.drain_line(now, i);
            }
            Event::Ended { call, reason } => {
                let Some(&i) = self.calls.get(&call) else { return };
                info!(port = self.ports[i].label, call = call.0, ?reason, "call ended by the far end");
                let was_ringing = self.ports[i].call.as_ref().is_some_and(|c| c.incoming && c.media.is_none());
                self.release_port_call(i);
                let sig = if was_ringing || reason == EndReason::Cancelled {
                    CallSignal::Cancelled
                } else {
                    CallSignal::RemoteReleased
                };
                self.ports[i].line.handle_call(now, sig);
                self.drain_line(now, i);
            }
        }
    }

    fn signal_line(&mut self, now: Instant, call: CallHandle, sig: CallSignal) {
        if let Some(&i) = self.calls.get(&call) {
            self.ports[i].line.handle_call(now, sig);
            self.drain_line(now, i);
        }
    }

    fn incoming_call(
        &mut self,
        now: Instant,
        call: CallHandle,
        from_user: String,
        from_display: Option<String>,
        to_user: String,
        offer: Option<SessionDescription>,
    ) {
        self.counters.incoming += 1;
        let Some(i) = self.ports.iter().position(|p| p.number == to_user) else {
            info!(to = %to_user, from = %from_user, "inbound call for an unknown number: 404");
            self.counters.rejected_unknown += 1;
            let _ = self.ua.reject(now, call, 404);
            return;
        };
        let label = self.ports[i].label;
        if !self.port_free(i) {
            info!(port = label, from = %from_user, "port busy: 486");
            self.counters.rejected_busy += 1;
            let _ = self.ua.reject(now, call, 486);
            return;
        }
        // Refuse an offer we cannot answer before ringing the phone.
        let Some(offer) = offer else {
            info!(port = label, "INVITE without an SDP offer is not supported: 488");
            let _ = self.ua.reject(now, call, 488);
            return;
        };
        if let Err(e) = sdp::answer(&offer, self.config.media.rtp_ip, 9, &self.config.codecs(), 0) {
            info!(port = label, ?e, "no acceptable codec in the offer: 488");
            let _ = self.ua.reject(now, call, 488);
            return;
        }
        let (socket, rtp_port) = match self.rtp_ports.bind() {
            Ok(x) => x,
            Err(e) => {
                warn!(port = label, %e, "no RTP port for an inbound call: 503");
                let _ = self.ua.reject(now, call, 503);
                return;
            }
        };
        info!(port = label, from = %from_user, call = call.0, "inbound call, ringing");
        self.calls.insert(call, i);
        self.ports[i].call = Some(Call {
            handle: call,
            incoming: true,
            remote_party: from_user.clone(),
            socket: Some(socket),
            rtp_port,
            offer: None,
            remote_offer: Some(offer),
            media: None,
            media_running: false,
        });
        let sig = CallSignal::Incoming { caller: Some(from_user), name: from_display };
        self.ports[i].line.handle_call(now, sig);
        self.drain_line(now, i);
        if self.ports[i].call.is_some() {
            let _ = self.ua.ringing(now, call);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The router driven in virtual time with fake line hardware; the rt
    //! command queue is read back. No SIP peer: registration is off.
    use super::*;
    use crate::rt::make_queues;
    use gw_hal::{FxsEvent, HookState, PortError};
    use heapless::spsc::Consumer;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct FakeLine {
        events: VecDeque<FxsEvent>,
        off_hook: bool,
        ringing: bool,
    }

    struct FakePort(Arc<Mutex<FakeLine>>);

    impl FxsPort for FakePort {
        fn hook(&self) -> HookState {
            if self.0.lock().unwrap().off_hook {
                HookState::OffHook
            } else {
                HookState::OnHook
            }
        }
        fn poll_event(&mut self) -> Option<FxsEvent> {
            self.0.lock().unwrap().events.pop_front()
        }
        fn set_ringing(&mut self, cadence: Option<RingCadence>) -> Result<(), PortError> {
            self.0.lock().unwrap().ringing = cadence.is_some();
            Ok(())
        }
        fn set_line_feed(&mut self, _feed: gw_hal::LineFeed) -> Result<(), PortError> {
            Ok(())
        }
    }

    struct World {
        gw: Gateway,
        lines: Vec<Arc<Mutex<FakeLine>>>,
        commands: Consumer<'static, RtCommand>,
        now: Instant,
    }

    impl World {
        /// The embedded default with caller ID `mode` and no registration.
        fn new(mode: CallerIdMode) -> World {
            let mut config = Config::default_sim();
            config.caller_id.mode = mode;
            config.sip.register_expires = 0;
            Self::with(config)
        }

        fn with(config: Config) -> World {
            let (rtq, ctl) = make_queues();
            let lines: Vec<_> = (0..4).map(|_| Arc::new(Mutex::new(FakeLine::default()))).collect();
            let hal = lines.iter().map(|l| Box::new(FakePort(l.clone())) as Box<dyn FxsPort + Send>).collect();
            let media = MediaIo::start(4, ctl.packets_out, ctl.packets_in).unwrap();
            let sip: SocketAddr = "127.0.0.1:5999".parse().unwrap();
            let mut gw = Gateway::new(config, sip, hal, ctl.commands, media, 7);
            let now = Instant::now();
            gw.start(now);
            World { gw, lines, commands: rtq.commands, now }
        }

        fn advance(&mut self, ms: u64) {
            let end = self.now + Duration::from_millis(ms);
            while let Some(t) = self.gw.poll_timeout().filter(|&t| t <= end) {
                self.now = t.max(self.now);
                self.gw.handle_timeout(self.now);
            }
            self.now = end;
            self.gw.handle_port_events(self.now);
        }

        fn hook(&mut self, port: usize, off: bool) {
            {
                let mut l = self.lines[port - 1].lock().unwrap();
                l.off_hook = off;
                l.events.push_back(if off { FxsEvent::OffHook } else { FxsEvent::OnHook });
            }
            self.advance(10);
        }

        fn dial(&mut self, port: usize, digits: &str) {
            for d in digits.bytes() {
                self.gw.handle_rt_event(self.now, RtEvent::LineDigit { channel: (port - 1) as u8, digit: d });
                self.advance(100);
            }
        }

        fn ringing(&self, port: usize) -> bool {
            self.lines[port - 1].lock().unwrap().ringing
        }

        fn commands(&mut self) -> Vec<RtCommand> {
            let mut v = Vec::new();
            while let Some(c) = self.commands.dequeue() {
                v.push(c);
            }
            v
        }
    }

    fn tone_on(cmds: &[RtCommand], channel: u8, spec: &gw_dsp::tones::ToneSpec) -> bool {
        cmds.iter().any(|c| matches!(c, RtCommand::PlayTone { channel: ch, spec: s } if *ch == channel && s == spec))
    }

    fn listens(cmds: &[RtCommand]) -> Vec<(u8, Option<u8>)> {
        cmds.iter()
            .filter_map(|c| match c {
                RtCommand::Listen { channel, from } => Some((*channel, *from)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn local_call_rings_the_other_port_with_caller_id_bridges_and_either_side_hangs_up() {
        let us = gw_dsp::tones::profile("US").unwrap();
        let mut w = World::new(CallerIdMode::Auto);
        w.hook(1, true);
        assert!(tone_on(&w.commands(), 0, &us.dial), "no dial tone on port 1");
        w.dial(1, "1002");
        w.advance(100);
        // Caller ID (Bell 202) is sent to port 2 with port 1's number; port 1 hears ringback.
        let cmds = w.commands();
        assert!(tone_on(&cmds, 0, &us.ringback), "no ringback on port 1: {cmds:?}");
        assert!(
            cmds.iter().any(|c| matches!(c, RtCommand::StartCallerId { channel: 1, .. })),
            "no caller ID to port 2: {cmds:?}"
        );
        let st = w.gw.port_status();
        assert_eq!(st[1].call.as_deref(), Some("from 1001 (local, port 1)"));
        assert_eq!(st[0].call.as_deref(), Some("to 1002 (local, port 2)"));
        // The delivery ends; port 2 rings.
        w.gw.handle_rt_event(w.now, RtEvent::CallerId { channel: 1, step: LineStep::RingOn });
        assert!(w.ringing(2));
        // Port 2 answers: both directions are cross-connected, ringback stops.
        w.hook(2, true);
        let cmds = w.commands();
        assert!(!w.ringing(2));
        assert!(cmds.iter().any(|c| matches!(c, RtCommand::StopTone { channel: 0 })), "{cmds:?}");
        let mut l = listens(&cmds);
        l.sort();
        assert_eq!(l, vec![(0, Some(1)), (1, Some(0))]);
        assert_eq!(w.gw.counters().local, 1);
        // The called side hangs up: the bridge ends, the caller hears reorder.
        w.hook(2, false);
        let cmds = w.commands();
        let mut l = listens(&cmds);
        l.sort();
        l.dedup();
        assert_eq!(l, vec![(0, None), (1, None)]);
        assert!(tone_on(&cmds, 0, &us.reorder), "no reorder for the caller: {cmds:?}");
        w.hook(1, false);
        assert!(w.gw.port_status().iter().all(|p| p.call.is_none()));

        // Again, and now the caller hangs up first.
        w.hook(3, true);
        w.dial(3, "1004");
        w.advance(100);
        w.gw.handle_rt_event(w.now, RtEvent::CallerId { channel: 3, step: LineStep::Done });
        assert!(w.ringing(4));
        w.hook(4, true);
        w.commands();
        w.hook(3, false);
        let cmds = w.commands();
        assert!(tone_on(&cmds, 3, &us.reorder), "no reorder for the called side: {cmds:?}");
        assert!(listens(&cmds).contains(&(2, None)) && listens(&cmds).contains(&(3, None)));
    }

    #[test]
    fn caller_hanging_up_while_the_other_port_rings_stops_the_ringing() {
        let mut w = World::new(CallerIdMode::Off);
        w.hook(1, true);
        w.dial(1, "1003");
        w.advance(100);
        assert!(w.ringing(3));
        w.hook(1, false);
        assert!(!w.ringing(3), "port 3 still rings after the caller hung up");
        assert!(w.gw.port_status().iter().all(|p| p.call.is_none()));
        // Port 3 is free again: it can be called.
        w.hook(2, true);
        w.dial(2, "1003");
        w.advance(100);
        assert!(w.ringing(3));
    }

    #[test]
    fn a_busy_port_gives_busy_tone_and_calling_yourself_too() {
        let us = gw_dsp::tones::profile("US").unwrap();
        let mut w = World::new(CallerIdMode::Off);
        w.hook(2, true); // port 2 is off-hook (dial tone)
        w.hook(1, true);
        w.commands();
        w.dial(1, "1002");
        w.advance(100);
        assert!(tone_on(&w.commands(), 0, &us.busy), "no busy tone calling an off-hook port");
        assert!(!w.ringing(2));
        w.hook(1, false);
        w.hook(1, true);
        w.commands();
        w.dial(1, "1001");
        w.advance(100);
        assert!(tone_on(&w.commands(), 0, &us.busy), "no busy tone calling our own number");
        assert_eq!(w.gw.counters().local_busy, 2);
    }

    #[test]
    fn a_call_on_a_trunk_that_is_down_gets_reorder_at_once_not_silence() {
        let us = gw_dsp::tones::profile("US").unwrap();
        let mut config = Config::default_sim();
        config.caller_id.mode = CallerIdMode::Off;
        let mut w = World::with(config);
        // Nobody answers the REGISTERs: after timer F (32 s) the account is down.
        w.advance(33_000);
        assert!(w.gw.registration_status().iter().any(|r| r.user == "1001" && r.state.starts_with("failed")));
        w.hook(1, true);
        w.commands();
        w.dial(1, "2000");
        w.advance(4_100); // the dial plan's inter-digit timeout ends "2000"
        let cmds = w.commands();
        assert!(tone_on(&cmds, 0, &us.reorder), "no reorder for a call to a dead trunk: {cmds:?}");
        assert_eq!(w.gw.counters().trunk_down, 1);
        // Local calls still work with the trunk down.
        w.hook(1, false);
        w.hook(1, true);
        w.dial(1, "1002");
        w.advance(100);
        assert!(w.ringing(2));
    }
}
