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
    /// On-hook caller ID deliveries started, and ones that could not be built.
    pub caller_id_sent: u64,
    pub caller_id_failed: u64,
    /// Fax/modem tones recognised (either direction).
    pub modem_tones: u64,
    /// Calls hung up because the far end's audio carried busy or reorder.
    pub disconnected_on_tone: u64,
    /// Calls hung up because the far end sent no RTP (`limits.rtp_timeout_s`).
    pub media_timeouts: u64,
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
            no_answer_timeout: (config.limits.no_answer_timeout_s > 0)
                .then(|| Duration::from_secs(config.limits.no_answer_timeout_s)),
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

    /// RTP inactivity (`limits.rtp_timeout_s`): hangs up connected calls
    /// whose far end has sent nothing for that long. Cheap: one atomic read
    /// per port; call it on the control tick.
    pub fn check_media_liveness(&mut self, now: Instant) {
        let timeout = self.config.limits.rtp_timeout_s;
        if timeout == 0 {
            return;
        }
        for i in 0..self.ports.len() {
            let Some(handle) = self.ports[i].call.as_ref().filter(|c| c.media_running).map(|c| c.handle) else {
                continue;
            };
            let idle = self.media.rx_idle(self.ports[i].channel).unwrap_or_default();
            if idle < Duration::from_secs(timeout) {
                continue;
            }
            info!(port = self.ports[i].label, call = handle.0, idle_s = idle.as_secs(), "no RTP from the far end: hanging up");
            self.counters.media_timeouts += 1;
            let _ = self.ua.hangup(now, handle);
            self.release_port_call(i);
            self.ports[i].line.handle_call(now, CallSignal::RemoteReleased);
            self.drain_line(now, i);
        }
    }

    /// Drops every call from `ip` (a source just banned at the SIP socket:
    /// nothing will be sent to it any more, so its INVITE must not keep a
    /// phone ringing).
    pub fn end_calls_from(&mut self, now: Instant, ip: std::net::IpAddr) {
        for handle in self.ua.calls_from(ip) {
            let _ = self.ua.hangup(now, handle);
            let Some(&i) = self.calls.get(&handle) else { continue };
            info!(port = self.ports[i].label, call = handle.0, %ip, "caller banned at the SIP socket: call dropped");
            self.release_port_call(i);
            self.ports[i].line.handle_call(now, CallSignal::Cancelled);
            self.drain_line(now, i);
        }
        self.drain_ua(now);
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
                call: p.call.as_ref().map(|c| {
                    format!("{} {}", if c.incoming { "from" } else { "to" }, c.remote_party)
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
            Action::AnswerCall => self.answer_call(now, i),
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
            Action::ConnectMedia => self.connect_media(i),
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

    fn place_call(&mut self, now: Instant, i: usize, number: String) {
        let label = self.ports[i].label;
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
                self.registrations.insert(user, format!("registered ({expires} s)"));
            }
            Event::RegistrationFailed { user, status, reason, retry_in } => {
                let status = status.map_or("timeout".to_string(), |s| s.to_string());
                warn!(user = %user, %status, %reason, retry_in_s = retry_in.as_secs(), "registration failed");
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
        if self.ports[i].call.is_some() || self.ports[i].line.state() != gw_line::State::Idle {
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
