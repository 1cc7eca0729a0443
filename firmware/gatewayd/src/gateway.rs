//! The call router: joins the FXS line machines, the SIP trunks and the rt
//! thread, following the routing table.
//!
//! [`Gateway`] is driven like the protocol cores it owns: every entry point
//! takes `now`, SIP datagrams to send are drained with
//! [`Gateway::poll_transmit`], and the next deadline comes from
//! [`Gateway::poll_timeout`]. The async driver in `driver.rs` owns the
//! sockets and the clock. Port hardware (`FxsPort`) and the rt command queue
//! are used directly: both are non-blocking.
//!
//! The decisions are gw-call's: the [`RouteTable`] says where a call goes
//! (from the port's group or the trunk it came in on), a
//! [`Routing`] walks the rule's destinations with failover on the listed
//! causes and a setup timer, [`Limits`] counts calls per rule. Causes are
//! Q.850 inside; each trunk maps them to and from SIP statuses with its
//! [`CauseMap`] (RFC 3398, overrides per trunk) and carries them in `Reason`
//! (RFC 3326).
//!
//! SIP trunks: one [`UserAgent`] per trunk (`[sip]` is the trunk `default`,
//! `[[trunk]]` adds more), all on the one SIP socket. A datagram belongs to
//! the trunk whose proxy sent it, else to the first trunk whose
//! `accept_from` holds the source address; a request from anywhere else is
//! answered 403 here and rings nothing (the same answer for every number:
//! nothing can be enumerated). One UA per trunk keeps each trunk's
//! registration, credentials and transactions apart without a multi-trunk
//! UA, and a trunk's traffic can never be mistaken for another's.
//!
//! Trunk health: a trunk is down while its registration has failed (for the
//! account a call would use) or while its OPTIONS pings go unanswered
//! (`options_failures` in a row); routing then skips it at once (cause 38),
//! and a destination that does not even send 100 Trying within its setup
//! timeout is failed over (cause 102), so a dead trunk costs a caller
//! seconds, never the 32 s of timer B.
//!
//! Local calls (a port's number dialled on another port, or a group
//! destination) need no trunk: the called port rings with the caller's
//! number as caller ID and the two lines are cross-connected slot to slot in
//! the rt thread.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gw_call::call::TargetState;
use gw_call::switch::Output as SwitchOutput;
use gw_call::{
    CallEvent, Cause, CauseMap, Hunt, LegId, Limits, LocalReason, Location, Lookup, Release, Select, Setup, Side, Signal, Switch, Target,
};
use gw_dsp::callerid_line::LineStep;
use gw_dsp::g711::Law;
use gw_dsp::modem_tones::ModemToneEvent;
use gw_dsp::progress::ProgressEvent;
use gw_dsp::tones::{CountryProfile, ToneKind};
use gw_hal::{FxsPort, RingCadence};
use gw_isdn::call::{CallId as IsdnCallId, Event as IsdnEvent};
use gw_isdn::q931::PartyNumber;
use gw_line::{Action, CallSignal, CallerIdStep, DialPlan, FxsConfig, FxsLine, Tone};
use gw_media::SessionConfig;
use gw_sip::sdp::{self, Codec, NegotiatedMedia, SessionDescription};
use gw_sip::{Account, AssertedIdentity, CallHandle, Event, Transmit, UaConfig, UserAgent};
use heapless::spsc::Producer;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::config::{CallerIdMode, Config, IpNet, RegisterMode, TrunkLimits, DEFAULT_TRUNK};
use crate::media_io::{MediaIo, RtpPorts};
use crate::rt::{RtCommand, RtEvent, VoiceCodec};

/// One configured FXS port.
/// One configured FXS port: the FXS leg adapter's state.
struct Port {
    /// PCM timeslot of the port on the board: its rt channel.
    channel: u8,
    /// 1-based number on the box.
    label: usize,
    number: String,
    /// The routing table's source group of the port (`None`: it cannot call out).
    source: Option<String>,
    hal: Box<dyn FxsPort + Send>,
    line: FxsLine,
    /// The port's leg in the switch while it is in a call.
    leg: Option<LegId>,
    /// What the last call of the port did (route and attempts), for the installer.
    last_route: Option<String>,
    /// The country's ring cadence (a `test port N ring` uses it).
    cadence: RingCadence,
    /// `test port N ring`: ringing without a call until then.
    test_ring_until: Option<Instant>,
}

/// What a leg of the switch is, for the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    Fxs(usize),
    Fxo(usize),
    Sip(usize, CallHandle),
    /// A B-channel call: the span (index in `spans`) and its Q.931 call.
    Isdn(usize, gw_isdn::call::CallId),
}

/// One configured FXO port: the FXO leg adapter's state.
struct FxoLinePort {
    /// PCM timeslot of the line: its rt channel.
    channel: u8,
    /// 1-based FXO port number.
    label: usize,
    number: Option<String>,
    hal: Box<dyn gw_hal::FxoPort + Send>,
    line: gw_line::fxo::FxoLine,
    /// The number inbound calls are routed to (the line's fixed destination).
    inbound: Option<String>,
    /// The routing table's group of the line: the source of its inbound calls.
    source: Option<String>,
    leg: Option<LegId>,
    caller_id: gw_dsp::callerid::FskStandard,
    /// Pulse dialling in progress: when each loop break starts, and when the
    /// last digit's interdigit pause is over.
    pulses: VecDeque<Instant>,
    pulses_done: Option<Instant>,
}

/// Loop-disconnect dialling (ITU-T Q.23's analog predecessor, as exchanges
/// take it): 10 pulses a second, each a 60 ms break and a 40 ms make; the
/// digit is the number of breaks (0: ten); 700 ms between digits.
const PULSE_BREAK_MS: u16 = 60;
const PULSE_PERIOD: Duration = Duration::from_millis(100);
const PULSE_INTERDIGIT: Duration = Duration::from_millis(700);

/// When each break of `digits` starts (from `start`), and when dialling ends.
fn pulse_plan(start: Instant, digits: &str) -> (VecDeque<Instant>, Instant) {
    let mut at = start;
    let mut breaks = VecDeque::new();
    for d in digits.bytes().filter(u8::is_ascii_digit) {
        let n = if d == b'0' { 10 } else { u32::from(d - b'0') };
        for _ in 0..n {
            breaks.push_back(at);
            at += PULSE_PERIOD;
        }
        at += PULSE_INTERDIGIT;
    }
    (breaks, at)
}

/// Who an outgoing SIP call is from, for the trunk's authentication.
enum Caller {
    /// An FXS port: its own number's account on a per-number trunk.
    Port(String),
    /// Another leg's caller: its number's account if the trunk has one.
    Other,
    /// A hidden caller (From anonymous), authenticated by this account.
    Anonymous(Option<String>),
}

/// A SIP leg: one dialog on one trunk, with the RTP it carries.
struct SipCall {
    trunk: usize,
    handle: CallHandle,
    incoming: bool,
    remote_party: String,
    /// Our RTP socket until media is connected (then the media thread has it).
    socket: Option<std::net::UdpSocket>,
    rtp_port: u16,
    /// Our offer (outgoing calls).
    offer: Option<SessionDescription>,
    /// Their offer (incoming calls).
    remote_offer: Option<SessionDescription>,
    media: Option<NegotiatedMedia>,
    /// The FXS channel whose audio this dialog carries while media runs.
    media_channel: Option<u8>,
    answered: bool,
    /// Cleared at this time (the trunk's `max_duration_s`), once answered.
    max_until: Option<Instant>,
    /// The far end put the call on hold (its re-INVITE said sendonly or inactive).
    held: bool,
}

/// Trunk health as seen when a call is routed (the switch asks per target).
struct Health {
    trunks: Vec<(String, TargetState)>,
    /// Groups of ISDN spans: up while one of their spans is usable.
    span_groups: Vec<(String, TargetState)>,
}

impl Health {
    fn of(&self, t: &Target) -> TargetState {
        match t {
            Target::Trunk(name) => self.trunks.iter().find(|(n, _)| n == name).map_or(TargetState::Down, |x| x.1),
            // Ports answer for themselves when the call is placed.
            Target::Group(name) => self.span_groups.iter().find(|(n, _)| n == name).map_or(TargetState::Unknown, |x| x.1),
            Target::Owner => TargetState::Unknown,
        }
    }
}

struct Trunk {
    name: String,
    ua: UserAgent,
    proxy: SocketAddr,
    accept: Vec<IpNet>,
    register: RegisterMode,
    /// The account of a `pilot` trunk.
    pilot: Option<String>,
    codecs: Vec<Codec>,
    cause_map: CauseMap,
    limits: TrunkLimits,
    options_interval: Option<Duration>,
    options_failures: u32,
    /// RFC 3325 trust: send and believe `P-Asserted-Identity`.
    trusted_identity: bool,
    /// OPTIONS health: unanswered pings in a row, when the next goes out and
    /// by when the one in flight must be answered.
    ping_misses: u32,
    next_ping: Option<Instant>,
    ping_deadline: Option<Instant>,
    options_down: bool,
    /// Accounts whose last registration attempt failed, and their states.
    failed_accounts: HashSet<String>,
    registrations: HashMap<String, String>,
    active: u32,
    counters: TrunkCounters,
}

/// What a [`Trunk`] is built (or rebuilt) from: one per trunk, `default`
/// (from `[sip]`) first, then `[[trunk]]` in order.
struct TrunkSettings {
    name: String,
    ua: UaConfig,
    accept: Vec<IpNet>,
    register: RegisterMode,
    pilot: Option<String>,
    codecs: Vec<Codec>,
    cause_map: CauseMap,
    limits: TrunkLimits,
    options_interval: Option<Duration>,
    options_failures: u32,
    trusted_identity: bool,
}

fn trunk_settings(config: &Config, local_sip: SocketAddr, seed: u64) -> Vec<TrunkSettings> {
    let sip = &config.sip;
    let per_number = |password: &str, auth: bool| -> Vec<Account> {
        config
            .fxs
            .iter()
            .map(|p| Account {
                user: p.number.clone(),
                auth_user: if auth { p.auth_user.clone().unwrap_or_else(|| p.number.clone()) } else { p.number.clone() },
                password: if auth { p.password.clone().unwrap_or_else(|| password.to_string()) } else { password.to_string() },
            })
            .collect()
    };
    let accept = |proxy: SocketAddr, accept: &[String]| -> Vec<IpNet> {
        if accept.is_empty() {
            vec![IpNet::host(proxy.ip())]
        } else {
            accept.iter().filter_map(|a| IpNet::parse(a)).collect()
        }
    };
    let codecs = config.codecs();
    let mut out = vec![TrunkSettings {
        name: DEFAULT_TRUNK.to_string(),
        ua: UaConfig {
            local_addr: local_sip,
            proxy: sip.proxy,
            domain: sip.domain.clone(),
            user_agent: sip.user_agent.clone(),
            accounts: per_number(&sip.password, true),
            register_expires: sip.register_expires,
            register_retry_base: Duration::from_secs(sip.register_retry_base_s),
            register_retry_max: Duration::from_secs(sip.register_retry_max_s),
            timers: Default::default(),
            rng_seed: seed,
        },
        accept: accept(sip.proxy, &sip.accept_from),
        register: if sip.register_expires == 0 { RegisterMode::None } else { RegisterMode::PerNumber },
        pilot: None,
        codecs: codecs.clone(),
        cause_map: CauseMap::default(),
        limits: TrunkLimits::default(),
        options_interval: (sip.options_interval_s > 0).then(|| Duration::from_secs(sip.options_interval_s.into())),
        options_failures: 2,
        trusted_identity: false,
    }];
    for (k, t) in config.trunk.iter().enumerate() {
        let password = t.password.clone().unwrap_or_default();
        let accounts = match t.register {
            RegisterMode::PerNumber => per_number(&password, false),
            RegisterMode::Pilot | RegisterMode::None => t
                .username
                .iter()
                .map(|u| Account {
                    user: u.clone(),
                    auth_user: t.auth_user.clone().unwrap_or_else(|| u.clone()),
                    password: password.clone(),
                })
                .collect(),
        };
        out.push(TrunkSettings {
            name: t.name.clone(),
            ua: UaConfig {
                local_addr: local_sip,
                proxy: t.proxy,
                domain: t.domain.clone().unwrap_or_else(|| t.proxy.ip().to_string()),
                user_agent: sip.user_agent.clone(),
                accounts,
                register_expires: if t.register == RegisterMode::None { 0 } else { t.register_expires },
                register_retry_base: Duration::from_secs(sip.register_retry_base_s),
                register_retry_max: Duration::from_secs(sip.register_retry_max_s),
                timers: Default::default(),
                rng_seed: seed.wrapping_add(k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            },
            accept: accept(t.proxy, &t.accept_from),
            register: t.register,
            pilot: (t.register == RegisterMode::Pilot).then(|| t.username.clone()).flatten(),
            codecs: if t.codecs.is_empty() {
                codecs.clone()
            } else {
                t.codecs.iter().filter_map(|c| crate::config::parse_codec(c)).collect()
            },
            cause_map: CauseMap::new(&t.cause_map).expect("validated cause map"),
            limits: t.limits.clone(),
            options_interval: (t.options_interval_s > 0).then(|| Duration::from_secs(t.options_interval_s.into())),
            options_failures: t.options_failures,
            trusted_identity: t.trusted_identity,
        });
    }
    out
}

/// The FXS line settings of a port in group `source`: without `[[route]]`
/// the dial plan is `[dialplan]`'s, as it always was; with it, the digits the
/// table can route from the port's group.
fn fxs_line_config(config: &Config, cadence: RingCadence, table: &gw_call::RouteTable, source: Option<&str>) -> FxsConfig {
    let legacy_plan = || {
        let patterns: Vec<&str> = config.dialplan.patterns.iter().map(String::as_str).collect();
        DialPlan::new(&patterns).expect("validated dial plan")
    };
    let dial_plan = if config.route.is_empty() {
        legacy_plan()
    } else {
        source.and_then(|g| table.digit_map(g)).unwrap_or_else(legacy_plan)
    };
    FxsConfig {
        dial_plan,
        ring_cadence: cadence,
        first_digit_timeout: Duration::from_millis(config.dialplan.first_digit_timeout_ms),
        inter_digit_timeout: Duration::from_millis(config.dialplan.inter_digit_timeout_ms),
        reorder_timeout: Duration::from_secs(30),
        disconnect_open_ms: None,
        caller_id: config.caller_id.mode.resolve(&config.system.country) != CallerIdMode::Off,
        no_answer_timeout: (config.limits.no_answer_timeout_s > 0).then(|| Duration::from_secs(config.limits.no_answer_timeout_s)),
    }
}

impl Trunk {
    fn new(st: TrunkSettings) -> Trunk {
        Trunk {
            name: st.name,
            proxy: st.ua.proxy,
            ua: UserAgent::new(st.ua),
            accept: st.accept,
            register: st.register,
            pilot: st.pilot,
            codecs: st.codecs,
            cause_map: st.cause_map,
            limits: st.limits,
            options_interval: st.options_interval,
            options_failures: st.options_failures,
            trusted_identity: st.trusted_identity,
            ping_misses: 0,
            next_ping: None,
            ping_deadline: None,
            options_down: false,
            failed_accounts: HashSet::new(),
            registrations: HashMap::new(),
            active: 0,
            counters: TrunkCounters::default(),
        }
    }

    /// Takes new settings in place: calls on the trunk go on (see
    /// [`UserAgent::reconfigure`]).
    fn reconfigure(&mut self, now: Instant, st: TrunkSettings) -> Result<(), gw_sip::UaError> {
        let proxy = st.ua.proxy;
        self.ua.reconfigure(now, st.ua)?;
        if proxy != self.proxy {
            // A new far end: its health is unknown again.
            self.failed_accounts.clear();
            self.registrations.clear();
            self.ping_misses = 0;
            self.ping_deadline = None;
            self.options_down = false;
        }
        if st.options_interval != self.options_interval {
            self.next_ping = st.options_interval.map(|_| now);
            self.ping_deadline = None;
            self.ping_misses = 0;
            self.options_down = false;
        }
        self.proxy = proxy;
        self.name = st.name;
        self.accept = st.accept;
        self.register = st.register;
        self.pilot = st.pilot;
        self.codecs = st.codecs;
        self.cause_map = st.cause_map;
        self.limits = st.limits;
        self.options_interval = st.options_interval;
        self.options_failures = st.options_failures;
        self.trusted_identity = st.trusted_identity;
        Ok(())
    }
}

/// Per-trunk figures for `show sip`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TrunkCounters {
    pub calls_in: u64,
    pub calls_out: u64,
    pub failed: u64,
    /// Calls refused by the trunk's limits (simultaneous calls, calls per minute).
    pub limited: u64,
    /// Calls that skipped this trunk because it was down.
    pub skipped_down: u64,
    pub max_duration_cleared: u64,
}

/// One trunk in the status.
#[derive(Debug, Clone, Serialize)]
pub struct TrunkStatus {
    pub name: String,
    pub proxy: String,
    /// "up", "down: <why>" or "unknown" (nothing heard yet).
    pub state: String,
    pub register: String,
    pub accept_from: Vec<String>,
    pub active_calls: u32,
    pub counters: TrunkCounters,
}

/// Status of one port, for the status API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PortStatus {
    pub port: usize,
    /// The PCM timeslot of the port (its rt channel).
    pub timeslot: u8,
    pub number: String,
    pub hook: String,
    pub state: String,
    pub call: Option<String>,
    /// The rule and destinations of the port's current or last call, with
    /// each attempt's cause.
    pub route: Option<String>,
    /// Filled in from the rt thread's figures by the driver.
    pub echo: Option<crate::rt::EchoStatus>,
    /// Fax/modem and call-progress tones on the channel, from the rt thread.
    pub signals: Option<crate::rt::SignalStatus>,
}

/// One FXO line in the status.
#[derive(Debug, Clone, Serialize)]
pub struct FxoStatus {
    pub port: usize,
    pub timeslot: u8,
    pub number: Option<String>,
    /// The line machine's state: Idle, Ringing, Seizing, Dialling, Connected, ...
    pub state: String,
    pub call: Option<String>,
    pub seized: bool,
    pub ringing: bool,
    pub polarity: String,
    pub voltage: Option<i16>,
    pub loop_current_ma: Option<u16>,
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
    /// Attempts skipped because their trunk was down.
    pub trunk_down: u64,
    /// Attempts given up after the destination's setup timeout.
    pub setup_timeouts: u64,
    /// Calls refused by a rule's `max_calls`.
    pub rule_limited: u64,
    /// Requests from addresses of no trunk, answered 403.
    pub untrusted: u64,
    /// Calls released so that an emergency call could have their PSTN line.
    pub preempted: u64,
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
    /// The SIP socket's address and the seed the trunks were built with
    /// (for [`Gateway::apply`]).
    local_sip: SocketAddr,
    seed: u64,
    /// Call records not yet taken by the driver, the last number given, the
    /// wall clock they are stamped with, and each live call's leg names.
    cdrs: VecDeque<crate::cdr::Cdr>,
    next_cdr: u64,
    clock: crate::cdr::Clock,
    cdr_legs: HashMap<LegId, (String, Option<String>)>,
    /// The SIP socket's last error and when (`note_socket_error`).
    socket_error: Option<(Instant, String)>,
    profile: &'static CountryProfile,
    cadence: RingCadence,
    /// The call-control core: routes, limits, each call's legs and failover.
    switch: Switch,
    hunt: Hunt,
    /// Each trunk's calls in the last minute (`calls_per_minute`).
    rates: Limits,
    trunks: Vec<Trunk>,
    ports: Vec<Port>,
    fxo: Vec<FxoLinePort>,
    /// ISDN spans (`[[span]]`): their B-channels are legs.
    spans: Vec<crate::isdn::Span>,
    isdn_legs: HashMap<(usize, gw_isdn::call::CallId), LegId>,
    /// The B-channel timeslot each ISDN leg's audio is connected on.
    isdn_ts: HashMap<LegId, u8>,
    /// Incoming overlap calls whose number the dial plan of the span's group
    /// does not call complete yet: held here (not in the switch) until it
    /// does, or until sending complete / T302 ("now complete").
    isdn_collect: HashMap<(usize, gw_isdn::call::CallId), Setup>,
    /// ISDN overlap callers routed on a prefix to an overlap span: CALL
    /// PROCEEDING waits for the far network's.
    isdn_onward: HashSet<LegId>,
    /// Overlap digits (and sending complete) for an outgoing SETUP not yet
    /// acknowledged.
    isdn_out_digits: HashMap<(usize, gw_isdn::call::CallId), (String, bool)>,
    /// Preempted lines an emergency call waits for: the line, the number and
    /// when the line has been on hook long enough for the exchange to clear
    /// the old call (longer than a hook flash).
    pending_fxo: Vec<(usize, String, Instant)>,
    /// Every leg the switch knows, as the driver knows it.
    legs: HashMap<LegId, Leg>,
    /// SIP legs' dialogs and media, and the leg of each dialog.
    sip: HashMap<LegId, SipCall>,
    sip_legs: HashMap<(usize, CallHandle), LegId>,
    /// Per call (by A leg): the route as last described, and the trunk skips
    /// already counted.
    routes: HashMap<LegId, (String, usize)>,
    /// The port of each call an FXS port placed (by A leg), until it ends.
    fxs_callers: HashMap<LegId, usize>,
    /// Free pairs of rt bridge channels for calls between two SIP legs, and
    /// the pair each such call holds (by A leg).
    bridges: Vec<(u8, u8)>,
    bridged: HashMap<LegId, (u8, u8)>,
    /// Answers sent by the gateway itself (403 to strangers).
    transmits: VecDeque<Transmit>,
    rt: Producer<'static, RtCommand>,
    media: MediaIo,
    rtp_ports: RtpPorts,
    counters: CallCounters,
    rt_overruns: u64,
    rng: u64,
}

/// A preempted PSTN line stays on hook this long before the emergency call
/// seizes it: longer than any hook flash, so the exchange clears the old call.
const PREEMPT_ON_HOOK: Duration = Duration::from_secs(2);

/// The Q.850 cause of a release we make ourselves.
/// The Q.850 cause of a release we make ourselves.
fn ours(cause: Cause) -> Release {
    Release { cause, location: Location::PrivateLocal, local: None }
}

impl Gateway {
    /// `hal_ports` are the board's FXS ports in port order, each with the
    /// PCM timeslot (the rt channel) its audio uses; ports without a
    /// configuration entry stay unused. `config` is valid (its routing table
    /// was checked when it was loaded).
    pub fn new(
        config: Config,
        local_sip: SocketAddr,
        hal_ports: Vec<(u8, Box<dyn FxsPort + Send>)>,
        rt: Producer<'static, RtCommand>,
        media: MediaIo,
        seed: u64,
    ) -> Gateway {
        let profile = gw_dsp::tones::profile(&config.system.country).expect("validated country");
        let cadence = RingCadence::new(profile.ring_cadence_ms).expect("profile cadence is valid");
        let (table, warnings) = config.route_table().expect("validated routing table");
        for w in &warnings {
            warn!("routing table: {w}");
        }
        let mut hal_ports: Vec<Option<(u8, Box<dyn FxsPort + Send>)>> = hal_ports.into_iter().map(Some).collect();
        let mut ports = Vec::new();
        for p in &config.fxs {
            let Some((channel, hal)) = hal_ports.get_mut(p.port - 1).and_then(Option::take) else { continue };
            let source = table.fxs_source(p.port).map(str::to_string);
            ports.push(Port {
                channel,
                label: p.port,
                number: p.number.clone(),
                line: FxsLine::new(fxs_line_config(&config, cadence, &table, source.as_deref())),
                source,
                hal,
                leg: None,
                last_route: None,
                cadence,
                test_ring_until: None,
            });
        }
        let trunks = trunk_settings(&config, local_sip, seed).into_iter().map(Trunk::new).collect();
        let rtp_ports = RtpPorts::new(config.media.rtp_ip, config.media.rtp_port_min, config.media.rtp_port_max);
        Gateway {
            config,
            local_sip,
            seed,
            cdrs: VecDeque::new(),
            next_cdr: 0,
            clock: crate::cdr::Clock::now(),
            cdr_legs: HashMap::new(),
            socket_error: None,
            profile,
            cadence,
            switch: Switch::new(table),
            hunt: Hunt::new(),
            rates: Limits::new(),
            trunks,
            ports,
            fxo: Vec::new(),
            spans: Vec::new(),
            isdn_legs: HashMap::new(),
            isdn_ts: HashMap::new(),
            isdn_collect: HashMap::new(),
            isdn_onward: HashSet::new(),
            isdn_out_digits: HashMap::new(),
            pending_fxo: Vec::new(),
            legs: HashMap::new(),
            sip: HashMap::new(),
            sip_legs: HashMap::new(),
            routes: HashMap::new(),
            fxs_callers: HashMap::new(),
            bridges: Vec::new(),
            bridged: HashMap::new(),
            transmits: VecDeque::new(),
            rt,
            media,
            rtp_ports,
            counters: CallCounters::default(),
            rt_overruns: 0,
            rng: seed | 1,
        }
    }

    /// The running configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies a committed configuration without a restart, to the parts it
    /// touches: the routing table (new calls), each port's number, group and
    /// dialling settings, each FXO line's settings, each trunk's settings
    /// (a trunk whose registrar or accounts changed re-registers; one that
    /// did not keeps its binding) and trunks added at the end. Calls in
    /// progress keep their legs, route and audio. `Err` (nothing changed)
    /// names what can take effect only with a restart: see
    /// [`crate::apply::plan_change`].
    pub fn apply(&mut self, now: Instant, new: Config) -> Result<Vec<String>, Vec<String>> {
        let plan = crate::apply::plan_change(&self.config, &new);
        if !plan.restart.is_empty() {
            return Err(plan.restart);
        }
        let (table, warnings) = new.route_table().map_err(|e| vec![format!("routing table: {e}")])?;
        for w in &warnings {
            warn!("routing table: {w}");
        }
        // Refusals first, so that nothing is half applied.
        let settings = trunk_settings(&new, self.local_sip, self.seed);
        let mut fxo_configs = Vec::new();
        for f in &self.fxo {
            let Some(c) = new.fxo.iter().find(|c| c.port == f.label) else {
                return Err(vec![format!("fxo port {} removed", f.label)]);
            };
            let lc = c.line_config(&new.system.country).map_err(|e| vec![format!("fxo port {}: {e}", f.label)])?;
            fxo_configs.push((c.clone(), lc));
        }
        for (k, st) in settings.into_iter().enumerate() {
            if k < self.trunks.len() {
                self.trunks[k].reconfigure(now, st).map_err(|e| vec![format!("trunk {k}: {e}")])?;
            } else {
                info!(trunk = %st.name, "trunk added");
                let mut trunk = Trunk::new(st);
                trunk.ua.start(now);
                if trunk.options_interval.is_some() {
                    trunk.next_ping = Some(now);
                }
                self.trunks.push(trunk);
            }
        }
        for k in 0..self.ports.len() {
            let Some(p) = new.fxs.iter().find(|p| p.port == self.ports[k].label) else { continue };
            let source = table.fxs_source(p.port).map(str::to_string);
            let line = fxs_line_config(&new, self.cadence, &table, source.as_deref());
            let port = &mut self.ports[k];
            if port.number != p.number {
                info!(port = port.label, old = %port.number, new = %p.number, "port number changed");
            }
            port.number = p.number.clone();
            port.source = source;
            port.line.set_config(line);
        }
        for (k, (c, lc)) in fxo_configs.into_iter().enumerate() {
            let source = table.groups().iter().find(|g| g.fxo.contains(&c.port)).map(|g| g.name.clone());
            let f = &mut self.fxo[k];
            f.number = c.number.clone();
            f.inbound = c.inbound.clone();
            f.source = source;
            f.line.set_config(lc);
        }
        self.switch.set_table(table);
        self.config = new;
        for t in 0..self.trunks.len() {
            self.drain_ua(now, t);
        }
        self.handle_timeout(now);
        info!(changed = ?plan.live, "configuration applied without a restart");
        Ok(plan.live)
    }

    pub fn start(&mut self, now: Instant) {
        for sp in &mut self.spans {
            sp.start(now);
        }
        for t in 0..self.trunks.len() {
            self.trunks[t].ua.start(now);
            if self.trunks[t].options_interval.is_some() {
                self.trunks[t].next_ping = Some(now);
            }
            self.drain_ua(now, t);
        }
        self.handle_timeout(now);
    }

    /// A SIP datagram: to the trunk it belongs to, or 403 when it belongs to
    /// none (see the module docs).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let trunk = self
            .trunks
            .iter()
            .position(|t| t.proxy == from)
            .or_else(|| self.trunks.iter().position(|t| t.accept.iter().any(|n| n.contains(from.ip()))));
        match trunk {
            Some(t) => {
                self.trunks[t].ua.handle_datagram(now, from, data);
                self.drain_ua(now, t);
            }
            None => self.refuse_stranger(from, data),
        }
    }

    /// A request from an address of no trunk: 403, whatever it asks for
    /// (never a hint whether a number exists). ACKs and responses are dropped.
    fn refuse_stranger(&mut self, from: SocketAddr, data: &[u8]) {
        self.counters.untrusted += 1;
        let is_request = data.len() > 4 && !data.starts_with(b"SIP/") && !data.starts_with(b"ACK ");
        // One line per power of two: a scan is visible, a flood does not fill the log.
        if self.counters.untrusted.is_power_of_two() {
            warn!(%from, refused = self.counters.untrusted, "SIP request from an address of no trunk: 403");
        }
        if !is_request {
            return;
        }
        if let Some(payload) = gw_sip::message::error_response(data, 403, "Forbidden") {
            self.transmits.push_back(Transmit { destination: from, payload });
        }
    }

    /// `test port N ring`: rings idle FXS port `port` (1-based) with the
    /// country's cadence for `secs`, without a call; lifting the handset
    /// (the phone then gets dial tone) or the time ends it. A port in use is
    /// refused.
    pub fn test_ring(&mut self, now: Instant, port: usize, secs: u32) -> Result<(), String> {
        let Some(i) = self.ports.iter().position(|p| p.label == port) else {
            return Err(format!("no FXS port {port}"));
        };
        let p = &mut self.ports[i];
        if p.line.state() != gw_line::fxs::State::Idle || p.leg.is_some() {
            return Err(format!("FXS {port} is in use ({:?})", p.line.state()));
        }
        p.hal.set_ringing(Some(p.cadence)).map_err(|e| format!("FXS {port}: the line card refused to ring: {e:?}"))?;
        p.test_ring_until = Some(now + Duration::from_secs(secs.into()));
        info!(port, secs, "test ring started");
        Ok(())
    }

    /// Ends a test ring (the line's own ringing, for a call, is left alone
    /// unless the line is idle).
    fn end_test_ring(&mut self, i: usize, why: &str) {
        let p = &mut self.ports[i];
        if p.test_ring_until.take().is_some() {
            if p.line.state() == gw_line::fxs::State::Idle && p.leg.is_none() {
                if let Err(e) = p.hal.set_ringing(None) {
                    warn!(port = p.label, ?e, "the line card refused to stop ringing");
                }
            }
            info!(port = p.label, why, "test ring ended");
        }
    }

    /// Reads supervision events from every port.
    pub fn handle_port_events(&mut self, now: Instant) {
        for i in 0..self.ports.len() {
            while let Some(ev) = self.ports[i].hal.poll_event() {
                debug!(port = self.ports[i].label, ?ev, "line event");
                if ev == gw_hal::FxsEvent::OffHook {
                    self.end_test_ring(i, "answered");
                }
                self.ports[i].line.handle_hook(now, ev);
                self.drain_line(now, i);
            }
        }
        for k in 0..self.fxo.len() {
            while let Some(ev) = self.fxo[k].hal.poll_event() {
                debug!(fxo = self.fxo[k].label, ?ev, "FXO line event");
                self.fxo[k].line.handle_line(now, ev);
                self.drain_fxo(now, k);
            }
        }
    }

    /// The board's FXO ports in port order, each with its PCM timeslot;
    /// ports without a `[[fxo]]` entry stay unused.
    pub fn add_fxo_ports(&mut self, ports: Vec<(u8, Box<dyn gw_hal::FxoPort + Send>)>) {
        let mut ports: Vec<Option<(u8, Box<dyn gw_hal::FxoPort + Send>)>> = ports.into_iter().map(Some).collect();
        let country = self.config.system.country.clone();
        let fsk = match gw_dsp::tones::profile(&country).map_or("US", |p| p.code) {
            "US" | "CA" | "JP" => gw_dsp::callerid::FskStandard::Bell202,
            _ => gw_dsp::callerid::FskStandard::V23,
        };
        for c in self.config.fxo.clone() {
            let Some((channel, hal)) = ports.get_mut(c.port - 1).and_then(Option::take) else {
                warn!(fxo = c.port, "[[fxo]] for a port the board does not have: ignored");
                continue;
            };
            let Ok(lc) = c.line_config(&country) else { continue };
            let source = self.switch.table().groups().iter().find(|g| g.fxo.contains(&c.port)).map(|g| g.name.clone());
            self.rt_command(RtCommand::MonitorLine { channel, on: true });
            self.fxo.push(FxoLinePort {
                channel,
                label: c.port,
                number: c.number.clone(),
                hal,
                line: gw_line::fxo::FxoLine::new(lc),
                inbound: c.inbound.clone(),
                source,
                leg: None,
                caller_id: fsk,
                pulses: VecDeque::new(),
                pulses_done: None,
            });
        }
    }

    /// Pulse dialling: the loop breaks that are due, then the end of it.
    fn pulse_dial(&mut self, now: Instant, k: usize) {
        while self.fxo[k].pulses.front().is_some_and(|&t| t <= now) {
            self.fxo[k].pulses.pop_front();
            if let Err(e) = self.fxo[k].hal.flash(PULSE_BREAK_MS) {
                warn!(fxo = self.fxo[k].label, ?e, "dial pulse refused by the line card");
            }
        }
        if self.fxo[k].pulses.is_empty() && self.fxo[k].pulses_done.is_some_and(|t| t <= now) {
            self.fxo[k].pulses_done = None;
            self.fxo[k].line.handle_dialled(now);
            self.drain_fxo(now, k);
        }
    }

    fn fxo_by_channel(&self, channel: u8) -> Option<usize> {
        self.fxo.iter().position(|f| f.channel == channel)
    }

    fn drain_fxo(&mut self, now: Instant, k: usize) {
        while let Some(a) = self.fxo[k].line.poll_action() {
            self.apply_fxo_action(now, k, a);
        }
    }

    /// The FXO adapter: the line machine's actions on the port, the rt
    /// thread and the switch.
    fn apply_fxo_action(&mut self, now: Instant, k: usize, action: gw_line::fxo::FxoAction) {
        use gw_line::fxo::FxoAction as A;
        let channel = self.fxo[k].channel;
        let label = self.fxo[k].label;
        debug!(fxo = label, ?action, "FXO line action");
        match action {
            A::Seize(on) => {
                if let Err(e) = self.fxo[k].hal.seize(on) {
                    warn!(fxo = label, ?e, "seize refused by the line card");
                }
            }
            A::Dial { digits, pulse: true } => {
                let (breaks, done) = pulse_plan(now, &digits);
                self.fxo[k].pulses = breaks;
                self.fxo[k].pulses_done = Some(done);
                self.pulse_dial(now, k);
            }
            A::Dial { digits, pulse: false } => {
                let mut d: heapless::Vec<u8, 32> = heapless::Vec::new();
                for b in digits.bytes().take(32) {
                    let _ = d.push(b);
                }
                self.rt_command(RtCommand::Dial { channel, digits: d });
            }
            A::ConnectMedia => self.connect_to_peer(self.fxo[k].leg, channel),
            A::DisconnectMedia => self.disconnect(channel, self.fxo[k].leg),
            A::StartCallerIdReceiver => {
                let standard = Some(self.fxo[k].caller_id);
                self.rt_command(RtCommand::ReceiveCallerId { channel, standard });
            }
            A::StopCallerIdReceiver => self.rt_command(RtCommand::ReceiveCallerId { channel, standard: None }),
            A::PlayTone(tone) => self.play_tone(channel, tone),
            A::StopTone => self.rt_command(RtCommand::StopTone { channel }),
            A::Incoming { caller, name, caller_id_fault, digits } => {
                if let Some(f) = caller_id_fault {
                    info!(fxo = label, ?f, "caller ID not received");
                }
                let called = digits.or_else(|| self.fxo[k].inbound.clone());
                let (Some(called), Some(source)) = (called, self.fxo[k].source.clone()) else {
                    info!(fxo = label, "inbound call on a line with no destination (inbound) or group: not answered");
                    self.fxo[k].line.release(now);
                    return self.drain_fxo(now, k);
                };
                info!(fxo = label, from = ?caller, name = ?name, to = %called, "inbound PSTN call");
                self.counters.incoming += 1;
                let setup = Setup { called, calling: caller, calling_name: name, complete: true, ..Default::default() };
                let h = self.health(None);
                let a = self.switch.originate(now, &source, setup, &|t| h.of(t));
                self.fxo[k].leg = Some(a);
                self.legs.insert(a, Leg::Fxo(k));
                self.drain_switch(now);
            }
            A::Alerting => {
                if let Some(leg) = self.fxo[k].leg {
                    self.signal(now, leg, Signal::Alerting { inband: true });
                }
            }
            A::Answered => {
                if let Some(leg) = self.fxo[k].leg {
                    self.signal(now, leg, Signal::Answer);
                }
            }
            A::Released(cause) => {
                info!(fxo = label, ?cause, "FXO line released");
                self.fxo[k].pulses.clear();
                self.fxo[k].pulses_done = None;
                if let Some(leg) = self.fxo[k].leg.take() {
                    self.legs.remove(&leg);
                    self.rt_command(RtCommand::Listen { channel, from: None });
                    let c = Cause::new(cause.q850()).unwrap_or(Cause::NORMAL_UNSPECIFIED);
                    self.signal(now, leg, Signal::Release(Release::remote(c, Location::PublicLocal)));
                }
            }
            A::Discarded(cause) => debug!(fxo = label, ?cause, "inbound ringing ended before it was a call"),
        }
    }

    /// The switch's signals to an FXO leg.
    fn signal_fxo(&mut self, now: Instant, k: usize, leg: LegId, signal: Signal) {
        match signal {
            // An inbound PSTN call answered at its destination: answer the line.
            Signal::Answer => self.fxo[k].line.answer(now),
            Signal::Release(_) => {
                // An emergency call that gave up before its preempted line was free.
                self.pending_fxo.retain(|p| p.0 != k);
                self.fxo[k].pulses.clear();
                self.fxo[k].pulses_done = None;
                self.fxo[k].leg = None;
                self.legs.remove(&leg);
                self.rt_command(RtCommand::Listen { channel: self.fxo[k].channel, from: None });
                self.fxo[k].line.release(now);
            }
            _ => return,
        }
        self.drain_fxo(now, k);
    }

    /// Every line of FXO group `name` is busy and an emergency call needs
    /// one: the first line whose call is not an emergency is taken (that call
    /// is released with cause 8, preemption); the emergency call seizes it as
    /// soon as the line's release guard is over.
    fn preempt_fxo(&mut self, now: Instant, a: LegId, leg: LegId, name: &str, setup: &Setup) -> Option<()> {
        let members: Vec<usize> = self.switch.table().group(name).map(|g| g.fxo.clone()).unwrap_or_default();
        let k = self.fxo.iter().position(|f| {
            members.contains(&f.label)
                && f.leg.is_some_and(|l| self.switch.call_of(l).is_some_and(|v| !v.route.is_some_and(|m| m.emergency)))
        })?;
        let victim = self.fxo[k].leg.take()?;
        warn!(fxo = self.fxo[k].label, "every PSTN line busy: an emergency call takes this one from a call in progress");
        self.counters.preempted += 1;
        self.legs.remove(&victim);
        self.rt_command(RtCommand::Listen { channel: self.fxo[k].channel, from: None });
        self.fxo[k].line.release(now);
        self.drain_fxo(now, k);
        self.signal(now, victim, Signal::Release(Release::local(LocalReason::Preempted)));
        // The emergency call owns the line now; it dials once the line is free.
        if let Some(c) = self.sip.get_mut(&a) {
            c.media_channel = Some(self.fxo[k].channel);
        }
        self.fxo[k].leg = Some(leg);
        self.legs.insert(leg, Leg::Fxo(k));
        self.pending_fxo.push((k, setup.called.clone(), now + PREEMPT_ON_HOOK));
        self.signal(now, leg, Signal::Proceeding);
        Some(())
    }

    /// Emergency calls waiting for their preempted line's release guard.
    fn place_pending_fxo(&mut self, now: Instant) {
        let ready = |&(k, _, at): &(usize, String, Instant)| {
            at <= now && self.fxo[k].line.state() == gw_line::fxo::FxoState::Idle
        };
        let go: Vec<(usize, String, Instant)> = self.pending_fxo.iter().filter(|p| ready(p)).cloned().collect();
        self.pending_fxo.retain(|p| !ready(p));
        for (k, number, _) in go {
            if self.fxo[k].leg.is_some() {
                info!(fxo = self.fxo[k].label, to = %number, "emergency call on the preempted line");
                self.fxo[k].line.place(now, &number);
                self.drain_fxo(now, k);
            }
        }
    }

    /// Calls `setup.called` out on an idle line of FXO group `name` as B leg `leg`.
    fn place_fxo(&mut self, now: Instant, a: LegId, leg: LegId, name: &str, setup: &Setup) -> Result<(), Release> {
        let members: Vec<usize> = self.switch.table().group(name).map(|g| g.fxo.clone()).unwrap_or_default();
        let idle: Vec<usize> = self
            .fxo
            .iter()
            .filter(|f| f.leg.is_none() && f.line.state() == gw_line::fxo::FxoState::Idle)
            .map(|f| f.label)
            .collect();
        let hunt_key = format!("{name}/fxo");
        let label = self
            .hunt
            .pick(&hunt_key, &members, Select::First, &|p| idle.contains(&p))
            .ok_or(ours(Cause::NO_CIRCUIT_AVAILABLE))?;
        let k = self.fxo.iter().position(|f| f.label == label).ok_or(ours(Cause::NO_CIRCUIT_AVAILABLE))?;
        info!(fxo = label, to = %setup.called, "calling out on the PSTN line");
        // A SIP caller's audio is carried by the line's channel.
        if let Some(c) = self.sip.get_mut(&a) {
            c.media_channel = Some(self.fxo[k].channel);
        }
        self.fxo[k].leg = Some(leg);
        self.legs.insert(leg, Leg::Fxo(k));
        self.fxo[k].line.place(now, &setup.called);
        self.drain_fxo(now, k);
        // Seizing, waiting for dial tone and dialling take longer than a
        // setup timer: the line is working on it, and the caller hears
        // ringback at once (the exchange's own tones replace it once the
        // line's audio is through: Alerting with in-band audio).
        if self.fxo[k].leg == Some(leg) {
            self.signal(now, leg, Signal::Alerting { inband: false });
        }
        Ok(())
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.trunks.iter_mut().find_map(|t| t.ua.poll_transmit())
    }

    /// Each registering account's state in an installer's words: where it
    /// registers, what the registrar or the network last said, and when the
    /// next attempt goes out (a countdown from `now`).
    pub fn registration_status(&self, now: Instant) -> Vec<RegistrationStatus> {
        use gw_sip::RegState;
        let secs = |t: Instant| t.saturating_duration_since(now).as_secs();
        let network = self
            .socket_error
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < Duration::from_secs(60))
            .map(|(at, e)| format!("; the network said \"{e}\" {} s ago", now.saturating_duration_since(*at).as_secs()))
            .unwrap_or_default();
        let mut v: Vec<RegistrationStatus> = Vec::new();
        for t in self.trunks.iter().filter(|t| t.register != RegisterMode::None) {
            for u in t.ua.account_users() {
                let Some(state) = t.ua.registration_state(u) else { continue };
                let proxy = t.proxy;
                let state = match state {
                    RegState::Idle => "not started".to_string(),
                    RegState::Pending => format!("registering with {proxy}: no answer yet{network}"),
                    RegState::Registered { until } => format!("registered with {proxy}, {} s left", secs(until)),
                    RegState::Failed { status: None, retry_at, .. } => {
                        format!("failed: no answer from {proxy}{network}; next attempt in {} s", secs(retry_at))
                    }
                    RegState::Failed { status: Some(code), reason, retry_at } => {
                        format!("failed: {proxy} answered {code} {reason}; next attempt in {} s", secs(retry_at))
                    }
                    RegState::Unregistered => "unregistered".to_string(),
                };
                let user = if t.name == DEFAULT_TRUNK { u.to_string() } else { format!("{}/{u}", t.name) };
                v.push(RegistrationStatus { user, state });
            }
        }
        v.sort_by(|a, b| a.user.cmp(&b.user));
        v
    }

    /// The SIP socket reported an error (on Linux, an ICMP port or host
    /// unreachable for an earlier send): shown with the registrations.
    pub fn note_socket_error(&mut self, now: Instant, error: String) {
        self.socket_error = Some((now, error));
    }

    pub fn trunk_status(&self) -> Vec<TrunkStatus> {
        self.trunks
            .iter()
            .map(|t| TrunkStatus {
                name: t.name.clone(),
                proxy: t.proxy.to_string(),
                state: match self.trunk_health(t, None) {
                    TargetState::Up => "up".into(),
                    TargetState::Unknown => "unknown".into(),
                    TargetState::Down => format!("down: {}", trunk_down_reason(t)),
                },
                register: format!("{:?}", t.register).to_lowercase(),
                accept_from: t.accept.iter().map(ToString::to_string).collect(),
                active_calls: t.active,
                counters: t.counters,
            })
            .collect()
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

    /// The health of a trunk for a call from `calling` (`None`: the trunk as a whole).
    fn trunk_health(&self, t: &Trunk, calling: Option<&str>) -> TargetState {
        if t.options_down {
            return TargetState::Down;
        }
        let account_down = match t.register {
            RegisterMode::None => false,
            RegisterMode::Pilot => t.pilot.as_ref().is_some_and(|p| t.failed_accounts.contains(p)),
            RegisterMode::PerNumber => match calling {
                Some(n) => t.failed_accounts.contains(n),
                None => !t.failed_accounts.is_empty() && t.failed_accounts.len() >= t.ua_accounts(),
            },
        };
        if account_down {
            TargetState::Down
        } else if t.options_interval.is_some() && t.ping_misses == 0 && t.next_ping.is_some() && t.ping_deadline.is_none()
            || t.registrations.values().any(|s| s.starts_with("registered"))
        {
            TargetState::Up
        } else {
            TargetState::Unknown
        }
    }

    /// The trunk's limits for a new call (either direction): counted when admitted.
    fn admit_on_trunk(&mut self, now: Instant, t: usize) -> Result<(), Release> {
        let trunk = &mut self.trunks[t];
        if trunk.limits.max_calls.is_some_and(|m| trunk.active >= m) {
            trunk.counters.limited += 1;
            warn!(trunk = %trunk.name, max = trunk.limits.max_calls, "trunk call limit reached: call refused");
            return Err(Release::local(LocalReason::LimitReached));
        }
        // gw-call's sliding minute (0: no limit).
        if !self.rates.admit(now, &trunk.name, trunk.limits.calls_per_minute.unwrap_or(0)) {
            trunk.counters.limited += 1;
            warn!(trunk = %trunk.name, per_minute = trunk.limits.calls_per_minute, "trunk calls-per-minute limit reached: call refused");
            return Err(Release::local(LocalReason::RateLimited));
        }
        Ok(())
    }

    /// OPTIONS health of trunk `t`: send when due, count a miss when the
    /// one in flight is late.
    fn check_ping(&mut self, now: Instant, t: usize) {
        let trunk = &mut self.trunks[t];
        let Some(interval) = trunk.options_interval else { return };
        if trunk.ping_deadline.is_some_and(|d| d <= now) {
            trunk.ping_deadline = None;
            trunk.ping_misses += 1;
            if trunk.ping_misses >= trunk.options_failures && !trunk.options_down {
                trunk.options_down = true;
                warn!(trunk = %trunk.name, proxy = %trunk.proxy, misses = trunk.ping_misses, "trunk down: OPTIONS unanswered");
            }
        }
        if trunk.next_ping.is_some_and(|d| d <= now) {
            // Down: ping more often so that recovery is seen soon.
            let every = if trunk.options_down { interval.min(Duration::from_secs(5)) } else { interval };
            trunk.next_ping = Some(now + every);
            trunk.ping_deadline = Some(now + every.min(Duration::from_secs(2)));
            trunk.ua.ping(now);
            self.drain_ua(now, t);
        }
    }

    fn session_for(&mut self, media: &NegotiatedMedia) -> SessionConfig {
        let ssrc = self.random() as u32;
        let seq_ts = self.random();
        let ptime = if (10..=60).contains(&media.ptime_ms) && media.ptime_ms.is_multiple_of(10) {
            media.ptime_ms
        } else {
            self.config.media.ptime_ms
        };
        SessionConfig {
            payload_type: media.payload_type,
            telephone_event: media.telephone_event,
            comfort_noise: media.comfort_noise,
            ptime_ms: ptime,
            ssrc,
            initial_seq: seq_ts as u16,
            initial_ts: (seq_ts >> 16) as u32,
            jitter_depth_ms: self.config.media.jitter_ms,
        }
    }

    fn telephone_event(&self) -> Option<u8> {
        match self.config.media.telephone_event {
            0 => None,
            pt => Some(pt),
        }
    }

    fn drain_ua(&mut self, now: Instant, t: usize) {
        while let Some(ev) = self.trunks[t].ua.poll_event() {
            self.apply_ua_event(now, t, ev);
        }
    }

    /// The Q.850 release of a SIP failure on trunk `t`: the peer's `Reason`
    /// wins over the status (RFC 3326), mapped by the trunk's table.
    fn sip_release(&self, t: usize, handle: CallHandle, status: u16) -> Release {
        let trunk = &self.trunks[t];
        let reason = trunk.ua.remote_reason(handle).and_then(gw_call::reason::parse);
        Release { cause: trunk.cause_map.cause_for(status, reason), location: Location::BeyondInterworking, local: None }
    }
}

impl Gateway {
    /// The rt thread's bridge channels (`first`, `first + 1`, ...; two per
    /// call): calls between two SIP legs take a pair (none: such calls are
    /// refused with cause 34).
    pub fn set_bridge_channels(&mut self, first: u8, pairs: u8) {
        self.bridges = (0..pairs).rev().map(|k| (first + 2 * k, first + 2 * k + 1)).collect();
    }

    /// Unregisters and hangs up; the caller then flushes `poll_transmit`.
    pub fn stop(&mut self, now: Instant) {
        let calls: Vec<(usize, CallHandle)> = self.sip_legs.keys().copied().collect();
        for (t, h) in calls {
            self.trunks[t].ua.set_cause(h, Cause::NORMAL_CLEARING.get());
            let _ = self.trunks[t].ua.hangup(now, h);
        }
        for t in &mut self.trunks {
            t.ua.stop(now);
        }
        // ISDN calls are cleared on their D channels (normal clearing).
        let isdn: Vec<(usize, IsdnCallId)> = self.isdn_legs.keys().chain(self.isdn_collect.keys()).copied().collect();
        for (s, call) in isdn {
            let _ = self.spans[s].request(now, |cc, now| cc.disconnect(now, call, Cause::NORMAL_CLEARING.get()));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for t in 0..self.trunks.len() {
            self.trunks[t].ua.handle_timeout(now);
            self.drain_ua(now, t);
            self.check_ping(now, t);
        }
        for i in 0..self.ports.len() {
            if self.ports[i].test_ring_until.is_some_and(|t| t <= now) {
                self.end_test_ring(i, "time");
            }
            if self.ports[i].line.poll_timeout().is_some_and(|t| t <= now) {
                self.ports[i].line.handle_timeout(now);
                self.drain_line(now, i);
            }
        }
        for k in 0..self.fxo.len() {
            if self.fxo[k].pulses_done.is_some() {
                self.pulse_dial(now, k);
            }
            if self.fxo[k].line.poll_timeout().is_some_and(|t| t <= now) {
                self.fxo[k].line.handle_timeout(now);
                self.drain_fxo(now, k);
            }
        }
        if !self.pending_fxo.is_empty() {
            self.place_pending_fxo(now);
        }
        if self.spans.iter().any(|sp| sp.poll_timeout().is_some_and(|t| t <= now)) {
            self.handle_isdn(now);
        }
        if self.switch.poll_timeout().is_some_and(|t| t <= now) {
            // A trunk that said 100 Trying is alive: no failover for it.
            let trying: Vec<LegId> = self
                .sip
                .iter()
                .filter(|(_, c)| !c.incoming && self.trunks[c.trunk].ua.has_provisional(c.handle))
                .map(|(l, _)| *l)
                .collect();
            for leg in trying {
                self.signal(now, leg, Signal::Proceeding);
            }
            let h = self.health(None);
            if self.switch.poll_timeout().is_some_and(|t| t <= now) {
                self.counters.setup_timeouts += 1;
                self.switch.handle_timeout(now, &|t| h.of(t));
                self.drain_switch(now);
            }
        }
        let expired: Vec<LegId> =
            self.sip.iter().filter(|(_, c)| c.max_until.is_some_and(|t| t <= now)).map(|(l, _)| *l).collect();
        for leg in expired {
            let Some(c) = self.sip.get(&leg) else { continue };
            let t = c.trunk;
            warn!(trunk = %self.trunks[t].name, call = c.handle.0, "maximum call duration reached: clearing the call");
            self.trunks[t].counters.max_duration_cleared += 1;
            self.release_sip(now, leg, Release::local(LocalReason::MaxDuration));
            self.signal(now, leg, Signal::Release(Release::local(LocalReason::MaxDuration)));
        }
    }

    pub fn handle_rt_event(&mut self, now: Instant, ev: RtEvent) {
        match ev {
            RtEvent::LineDigit { channel, digit } => {
                if let Some(k) = self.fxo_by_channel(channel) {
                    // Two-stage dialling on a PSTN line.
                    self.fxo[k].line.handle_digit(now, digit);
                    return self.drain_fxo(now, k);
                }
                if let Some(i) = self.port_by_channel(channel) {
                    debug!(port = self.ports[i].label, digit = %(digit as char), "digit");
                    self.ports[i].line.handle_digit(now, digit);
                    self.drain_line(now, i);
                }
            }
            RtEvent::Dialled { channel } => {
                if let Some(k) = self.fxo_by_channel(channel) {
                    self.fxo[k].line.handle_dialled(now);
                    self.drain_fxo(now, k);
                }
            }
            RtEvent::LineProgress { channel, event } => {
                use gw_line::fxo::LineTone;
                let Some(k) = self.fxo_by_channel(channel) else { return };
                let tone = match event {
                    ProgressEvent::Detected(ToneKind::Dial) => LineTone::DialTone,
                    ProgressEvent::Detected(ToneKind::Ringback) => LineTone::Ringback,
                    ProgressEvent::Detected(ToneKind::Busy) => LineTone::Busy,
                    ProgressEvent::Detected(ToneKind::Reorder) => LineTone::Reorder,
                    ProgressEvent::Detected(ToneKind::Congestion) => LineTone::Congestion,
                    ProgressEvent::Detected(_) => return,
                    ProgressEvent::Ended(_) => LineTone::ToneGone,
                };
                debug!(fxo = self.fxo[k].label, ?tone, "tone on the PSTN line");
                self.fxo[k].line.handle_tone(now, tone);
                self.drain_fxo(now, k);
            }
            RtEvent::LineSpeech { channel } => {
                if let Some(k) = self.fxo_by_channel(channel) {
                    self.fxo[k].line.handle_tone(now, gw_line::fxo::LineTone::Speech);
                    self.drain_fxo(now, k);
                }
            }
            RtEvent::CallerIdReceived { channel, event } => {
                use gw_dsp::callerid_line::ReceiverEvent as R;
                use gw_line::fxo::{CallerIdFault, CallerIdInfo};
                let Some(k) = self.fxo_by_channel(channel) else { return };
                let text = |b: &[u8]| (!b.is_empty()).then(|| String::from_utf8_lossy(b).into_owned());
                let result = match event {
                    R::CallerId(c) | R::DtmfClip(c) => Ok(CallerIdInfo { number: text(c.number()), name: text(c.name()) }),
                    R::BadMessage(e) => {
                        warn!(fxo = self.fxo[k].label, ?e, "caller ID with a bad message");
                        Err(CallerIdFault::BadChecksum)
                    }
                    R::AlertingSignal { .. } => return,
                };
                self.fxo[k].line.handle_caller_id(now, result);
                self.drain_fxo(now, k);
            }
            RtEvent::RemoteDigit { channel, digit } => {
                debug!(channel, digit = %(digit as char), "RFC 4733 digit from the far end, played to the line");
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
                let Some(leg) = self.sip.iter().find(|(_, c)| c.media_channel == Some(channel)).map(|(l, _)| *l) else {
                    return;
                };
                info!(channel, ?kind, "far end plays a disconnect tone: hanging up");
                self.counters.disconnected_on_tone += 1;
                let r = Release::remote(Cause::NORMAL_CLEARING, Location::BeyondInterworking);
                self.release_sip(now, leg, r);
                self.signal(now, leg, Signal::Release(r));
            }
        }
    }

    /// RTP inactivity (`limits.rtp_timeout_s`): hangs up connected calls
    /// whose far end has sent nothing for that long (a crashed far end, a
    /// lost network). Calls the far end holds are left alone. Cheap: one
    /// atomic read per call with media; call it on the control tick.
    pub fn check_media_liveness(&mut self, now: Instant) {
        let timeout = self.config.limits.rtp_timeout_s;
        if timeout == 0 {
            return;
        }
        let dead: Vec<(LegId, u8, Duration)> = self
            .sip
            .iter()
            .filter(|(_, c)| c.answered && !c.held && c.socket.is_none())
            .filter_map(|(leg, c)| {
                let ch = c.media_channel?;
                let idle = self.media.rx_idle(ch)?;
                (idle >= Duration::from_secs(timeout)).then_some((*leg, ch, idle))
            })
            .collect();
        for (leg, channel, idle) in dead {
            info!(channel, idle_s = idle.as_secs(), "no RTP from the far end: hanging up");
            self.counters.media_timeouts += 1;
            let r = Release::remote(Cause::NORMAL_CLEARING, Location::BeyondInterworking);
            self.release_sip(now, leg, r);
            self.signal(now, leg, Signal::Release(r));
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let lines = self
            .ports
            .iter()
            .flat_map(|p| [p.line.poll_timeout(), p.test_ring_until])
            .flatten()
            .chain(self.fxo.iter().filter_map(|f| f.line.poll_timeout()));
        let duration = self.sip.values().filter_map(|c| c.max_until);
        let trunks = self
            .trunks
            .iter()
            .flat_map(|t| [t.ua.poll_timeout(), t.next_ping, t.ping_deadline])
            .flatten();
        let pending = self
            .pending_fxo
            .iter()
            .map(|p| p.2)
            .chain(self.fxo.iter().filter_map(|f| f.pulses.front().copied().or(f.pulses_done)));
        let spans = self.spans.iter().filter_map(crate::isdn::Span::poll_timeout);
        lines.chain(duration).chain(trunks).chain(pending).chain(spans).chain(self.switch.poll_timeout()).min()
    }

    pub fn port_status(&self) -> Vec<PortStatus> {
        self.ports
            .iter()
            .map(|p| PortStatus {
                port: p.label,
                timeslot: p.channel,
                number: p.number.clone(),
                hook: format!("{:?}", p.hal.hook()),
                state: format!("{:?}", p.line.state()),
                call: p.leg.and_then(|l| self.describe_peer(l)),
                route: p
                    .leg
                    .and_then(|l| self.switch.call_of(l))
                    .map(|v| v.describe())
                    .or_else(|| p.last_route.clone()),
                echo: None,
                signals: None,
            })
            .collect()
    }

    pub fn fxo_status(&self) -> Vec<FxoStatus> {
        self.fxo
            .iter()
            .map(|f| {
                let st = f.hal.line_status();
                FxoStatus {
                    port: f.label,
                    timeslot: f.channel,
                    number: f.number.clone(),
                    state: format!("{:?}", f.line.state()),
                    call: f.leg.and_then(|l| self.describe_peer(l)),
                    seized: st.seized,
                    ringing: st.ringing,
                    polarity: format!("{:?}", st.polarity),
                    voltage: st.voltage,
                    loop_current_ma: st.loop_current_ma,
                }
            })
            .collect()
    }

    /// "to 2000 (trunk default)", "from 1001 (local, port 1)".
    fn describe_peer(&self, leg: LegId) -> Option<String> {
        let dir = if self.switch.side(leg)? == Side::A { "to" } else { "from" };
        let peer = self.switch.peer(leg)?;
        match self.legs.get(&peer)? {
            Leg::Fxs(j) => {
                let o = &self.ports[*j];
                Some(format!("{dir} {} (local, port {})", o.number, o.label))
            }
            Leg::Fxo(k) => {
                let f = &self.fxo[*k];
                let who = self.switch.call_of(leg).and_then(|v| if dir == "from" { v.calling.map(str::to_string) } else { Some(v.called.to_string()) });
                Some(format!("{dir} {} (PSTN line FXO {})", who.unwrap_or_else(|| "-".into()), f.label))
            }
            Leg::Sip(t, _) => {
                let c = self.sip.get(&peer)?;
                let hold = if c.held { ", on hold" } else { "" };
                Some(format!("{dir} {} (trunk {}{hold})", c.remote_party, self.trunks[*t].name))
            }
            Leg::Isdn(s, call) => {
                let who = self.switch.call_of(leg).and_then(|v| if dir == "from" { v.calling.map(str::to_string) } else { Some(v.called.to_string()) });
                let sp = &self.spans[*s];
                let b = sp.channel_of(*call).map_or("-".to_string(), |c| c.to_string());
                Some(format!("{dir} {} (ISDN span {} B{b})", who.unwrap_or_else(|| "-".into()), sp.name()))
            }
        }
    }

    /// What the routing table does with a call from `from` (a group or trunk
    /// name) to `called`, without placing it (`test route`).
    pub fn test_route(&self, from: &str, called: &str, calling: Option<&str>) -> String {
        let table = self.switch.table();
        if !table.is_source(from) {
            let mut sources: Vec<&str> = table.groups().iter().map(|g| g.name.as_str()).collect();
            sources.extend(self.trunks.iter().map(|t| t.name.as_str()));
            return format!("{from:?} is neither a group nor a trunk (sources: {})", sources.join(", "));
        }
        let mut out = table.trace(from, called, calling).to_string();
        let h = self.health(calling);
        if let Lookup::Route(m) = table.lookup(from, called, calling) {
            for (k, d) in m.destinations.iter().enumerate() {
                let state = match h.of(&d.target) {
                    TargetState::Up => "up",
                    TargetState::Down => "down: would be skipped",
                    TargetState::Unknown => "state unknown: would be tried",
                };
                out.push_str(&format!("\n  now: to[{k}] {} is {state}", d.target));
            }
        }
        out
    }

    fn apply_line_action(&mut self, now: Instant, i: usize, action: Action) {
        let channel = self.ports[i].channel;
        let label = self.ports[i].label;
        debug!(port = label, ?action, "line action");
        match action {
            Action::PlayTone(tone) => self.play_tone(channel, tone),
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
            Action::PlaceCall { number } => self.originate_fxs(now, i, number),
            Action::AnswerCall => {
                if let Some(leg) = self.ports[i].leg {
                    info!(port = label, "answered");
                    self.signal(now, leg, Signal::Answer);
                }
            }
            Action::RejectCall { busy } => {
                // The line refuses the call it was offered (busy, or nobody answered).
                if let Some(leg) = self.ports[i].leg.take() {
                    self.legs.remove(&leg);
                    let r = if busy { ours(Cause::USER_BUSY) } else { Release::local(LocalReason::NoAnswer) };
                    self.signal(now, leg, Signal::Release(r));
                }
            }
            Action::ReleaseCall => {
                if let Some(leg) = self.ports[i].leg.take() {
                    info!(port = label, "phone hung up, releasing the call");
                    self.legs.remove(&leg);
                    self.disconnect(self.ports[i].channel, Some(leg));
                    self.signal(now, leg, Signal::Release(Release::remote(Cause::NORMAL_CLEARING, Location::User)));
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
            Action::ConnectMedia => self.connect_to_peer(self.ports[i].leg, channel),
            Action::DisconnectMedia => {
                if let Some(leg) = self.ports[i].leg {
                    self.disconnect(self.ports[i].channel, Some(leg));
                }
            }
        }
    }

    /// A line machine's tone on `channel`, as the country profile plays it.
    fn play_tone(&mut self, channel: u8, tone: Tone) {
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

    /// The line on `channel` (leg `leg`) hears its peer: another line's
    /// channel (cross-connect) or its SIP peer's RTP on this channel.
    fn connect_to_peer(&mut self, leg: Option<LegId>, channel: u8) {
        let Some(peer) = leg.and_then(|l| self.switch.peer(l)) else { return };
        let from = match self.legs.get(&peer).copied() {
            Some(Leg::Fxs(j)) => self.ports[j].channel,
            Some(Leg::Fxo(m)) => self.fxo[m].channel,
            Some(Leg::Sip(..)) => return self.connect_media(peer, channel),
            Some(Leg::Isdn(s, call)) => match self.isdn_timeslot(s, call) {
                Some(ts) => ts,
                None => return,
            },
            None => return,
        };
        self.rt_command(RtCommand::Listen { channel, from: Some(from) });
    }

    /// The audio of the line on `channel` (leg `leg`) stops: its
    /// cross-connect, or the RTP of its SIP peer.
    fn disconnect(&mut self, channel: u8, leg: Option<LegId>) {
        self.rt_command(RtCommand::Listen { channel, from: None });
        let peer = leg.and_then(|l| self.switch.peer(l));
        if let Some(peer) = peer.filter(|p| matches!(self.legs.get(p), Some(Leg::Sip(..)))) {
            self.stop_media(peer);
        }
    }

    // ---- the switch ---------------------------------------------------

    /// Whether port `j` can take a call now.
    fn port_free(&self, j: usize) -> bool {
        let p = &self.ports[j];
        p.leg.is_none() && p.line.state() == gw_line::State::Idle
    }

    /// Every trunk's health, as the switch asks for it (per-number trunks
    /// for the account of `calling`).
    fn health(&self, calling: Option<&str>) -> Health {
        let mut span_groups: Vec<(String, TargetState)> = Vec::new();
        for sp in &self.spans {
            let Some(g) = &sp.cfg.group else { continue };
            let up = if sp.usable() { TargetState::Up } else { TargetState::Down };
            match span_groups.iter_mut().find(|(n, _)| n == g) {
                Some(e) if up == TargetState::Up => e.1 = up,
                Some(_) => {}
                None => span_groups.push((g.clone(), up)),
            }
        }
        Health { trunks: self.trunks.iter().map(|t| (t.name.clone(), self.trunk_health(t, calling))).collect(), span_groups }
    }

    /// An event of `leg` for the switch, then whatever the switch asks.
    fn signal(&mut self, now: Instant, leg: LegId, signal: Signal) {
        let calling = self.switch.call_of(leg).and_then(|v| v.calling.map(str::to_string));
        let h = self.health(calling.as_deref());
        self.switch.signal(now, leg, signal, &|t| h.of(t));
        self.drain_switch(now);
    }

    /// A number dialled on port `i`: a new call from the port's group.
    fn originate_fxs(&mut self, now: Instant, i: usize, number: String) {
        let label = self.ports[i].label;
        let Some(source) = self.ports[i].source.clone() else {
            info!(port = label, to = %number, "the port is in no group of the routing table: reorder");
            self.ports[i].last_route = Some(format!("{number}: the port is in no group of the routing table"));
            return self.fail_line(now, i, Release::local(LocalReason::NoRoute));
        };
        let calling = self.ports[i].number.clone();
        let setup = Setup { called: number, calling: Some(calling.clone()), complete: true, ..Default::default() };
        let h = self.health(Some(&calling));
        let a = self.switch.originate(now, &source, setup, &|t| h.of(t));
        self.ports[i].leg = Some(a);
        self.legs.insert(a, Leg::Fxs(i));
        self.fxs_callers.insert(a, i);
        self.drain_switch(now);
    }

    /// Does what the switch asks, until it asks nothing more.
    fn drain_switch(&mut self, now: Instant) {
        while let Some(out) = self.switch.poll_output() {
            match out {
                SwitchOutput::Place { a, leg, target, setup, emergency } => {
                    self.note_route(a);
                    self.isdn_routed(now, a);
                    if let Err(r) = self.place(now, a, leg, &target, &setup, emergency) {
                        debug!(%target, %r, "destination refused the call");
                        self.signal(now, leg, Signal::Release(r));
                    }
                }
                SwitchOutput::Signal { leg, signal } => {
                    if self.switch.side(leg) == Some(Side::A) {
                        self.note_route(leg);
                    }
                    self.signal_leg(now, leg, signal);
                }
                SwitchOutput::Event(e) => self.call_event(now, e),
            }
        }
    }

    /// Keeps the call's route description and counts its skipped trunks.
    fn note_route(&mut self, a: LegId) {
        let Some(v) = self.switch.call_of(a) else { return };
        let text = v.describe();
        let skipped: Vec<String> = v
            .attempts
            .iter()
            .filter(|x| x.result.is_some_and(|r| r.local == Some(LocalReason::TrunkDown)))
            .filter_map(|x| match &x.target {
                Target::Trunk(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        // The route stays on the call's ports for `show calls` after it ends.
        let b = v.b;
        for l in [Some(a), b].into_iter().flatten() {
            if let Some(Leg::Fxs(i)) = self.legs.get(&l).copied() {
                self.ports[i].last_route = Some(text.clone());
            }
        }
        let entry = self.routes.entry(a).or_insert((String::new(), 0));
        entry.0 = text;
        let new = &skipped[entry.1.min(skipped.len())..];
        for name in new {
            self.counters.trunk_down += 1;
            if let Some(t) = self.trunks.iter_mut().find(|t| &t.name == name) {
                t.counters.skipped_down += 1;
            }
        }
        entry.1 = skipped.len();
    }

    /// "FXS 1", "FXO 2", "trunk carrier": a leg as the call log names it.
    fn leg_name(&self, leg: LegId) -> Option<String> {
        Some(match self.legs.get(&leg)? {
            Leg::Fxs(i) => format!("FXS {}", self.ports[*i].label),
            Leg::Fxo(k) => format!("FXO {}", self.fxo[*k].label),
            Leg::Sip(t, _) => format!("trunk {}", self.trunks[*t].name),
            Leg::Isdn(s, call) => match self.spans[*s].channel_of(*call) {
                Some(b) => format!("ISDN {} B{b}", self.spans[*s].name()),
                None => format!("ISDN {}", self.spans[*s].name()),
            },
        })
    }

    /// The next call record (see `cdr.rs`); the driver stores them.
    pub fn poll_cdr(&mut self) -> Option<crate::cdr::Cdr> {
        self.cdrs.pop_front()
    }

    fn call_event(&mut self, now: Instant, e: CallEvent) {
        match e {
            CallEvent::Routed { a, rule, rule_name, called } => {
                info!(%a, rule, name = ?rule_name, %called, "routing");
                if let Some(name) = self.leg_name(a) {
                    self.cdr_legs.entry(a).or_insert((name, None));
                }
            }
            CallEvent::Refused { a, release } => {
                if let Some(name) = self.leg_name(a) {
                    self.cdr_legs.entry(a).or_insert((name, None));
                }
                info!(%a, %release, "call refused");
                if release.local == Some(LocalReason::LimitReached) {
                    self.counters.rule_limited += 1;
                }
                if release.local == Some(LocalReason::NoRoute) {
                    self.counters.rejected_unknown += 1;
                }
            }
            CallEvent::AttemptFailed { a, target, release } => info!(%a, %target, %release, "attempt failed"),
            CallEvent::Answered { a, b } => {
                info!(%a, %b, "answered");
                let to = self.leg_name(b);
                let from = self.leg_name(a);
                let entry = self.cdr_legs.entry(a).or_insert((from.unwrap_or_default(), None));
                entry.1 = to;
                self.counters.answered += 1;
            }
            CallEvent::Released { a, release, by, route, trunks_down, record } => {
                info!(%a, %release, ?by, %route, "call ended");
                let (from, to) = self.cdr_legs.remove(&a).unwrap_or_else(|| (self.leg_name(a).unwrap_or_default(), None));
                self.next_cdr += 1;
                let legs = crate::cdr::Legs { from, to };
                let cdr = crate::cdr::record(self.next_cdr, &self.clock, now, &record, &release, by, legs);
                if self.cdrs.len() >= crate::cdr::KEPT {
                    self.cdrs.pop_front();
                }
                self.cdrs.push_back(cdr);
                if let Some(pair) = self.bridged.remove(&a) {
                    self.rt_command(RtCommand::Listen { channel: pair.0, from: None });
                    self.rt_command(RtCommand::Listen { channel: pair.1, from: None });
                    self.bridges.push(pair);
                }
                let (text, counted) = self.routes.remove(&a).unwrap_or_default();
                for name in trunks_down.iter().skip(counted) {
                    self.counters.trunk_down += 1;
                    if let Some(t) = self.trunks.iter_mut().find(|t| &t.name == name) {
                        t.counters.skipped_down += 1;
                    }
                }
                let side = match by {
                    Side::A => "the caller",
                    Side::B => "the called side",
                };
                let last = format!("{route}; final: {release}, released by {side}");
                for p in self.ports.iter_mut().filter(|p| !text.is_empty() && p.last_route.as_deref() == Some(text.as_str())) {
                    p.last_route = Some(last.clone());
                }
                // The caller's port keeps it too (a call refused before any attempt).
                if let Some(i) = self.fxs_callers.remove(&a) {
                    self.ports[i].last_route = Some(last);
                }
            }
        }
    }

    /// Creates B leg `leg` at `target`, or says why it cannot.
    fn place(&mut self, now: Instant, a: LegId, leg: LegId, target: &Target, setup: &Setup, emergency: bool) -> Result<(), Release> {
        match target {
            Target::Owner => {
                let j = self.ports.iter().position(|p| p.number == setup.called).ok_or(ours(Cause::UNALLOCATED_NUMBER))?;
                self.ring_port(now, a, leg, j, setup)
            }
            Target::Group(name) if self.spans.iter().any(|sp| sp.cfg.group.as_deref() == Some(name.as_str())) => {
                self.place_isdn(now, a, leg, name, setup)
            }
            Target::Group(name) if self.switch.table().group(name).is_some_and(|g| !g.fxo.is_empty()) => {
                match self.place_fxo(now, a, leg, name, setup) {
                    Err(r) if emergency && self.config.emergency.preempt => self.preempt_fxo(now, a, leg, name, setup).ok_or(r),
                    other => other,
                }
            }
            Target::Group(name) => {
                let members: Vec<usize> = self.switch.table().group(name).map(|g| g.fxs.clone()).unwrap_or_default();
                let select = self
                    .switch
                    .call_of(a)
                    .and_then(|v| v.route.and_then(|m| m.destinations.iter().find(|d| &d.target == target).map(|d| d.select)))
                    .unwrap_or(Select::First);
                let a_port = match self.legs.get(&a) {
                    Some(Leg::Fxs(i)) => Some(self.ports[*i].label),
                    _ => None,
                };
                let free: Vec<usize> =
                    self.ports.iter().enumerate().filter(|(j, _)| self.port_free(*j)).map(|(_, p)| p.label).collect();
                let label = self
                    .hunt
                    .pick(name, &members, select, &|p| Some(p) != a_port && free.contains(&p))
                    .ok_or(ours(Cause::USER_BUSY))?;
                let j = self.ports.iter().position(|p| p.label == label).ok_or(ours(Cause::NO_ROUTE_TO_DESTINATION))?;
                self.ring_port(now, a, leg, j, setup)
            }
            Target::Trunk(name) => {
                let t = self.trunks.iter().position(|t| &t.name == name).ok_or(ours(Cause::NETWORK_OUT_OF_ORDER))?;
                match self.legs.get(&a).copied() {
                    // The port's channel carries the call's RTP.
                    Some(Leg::Fxs(i)) => {
                        self.admit_on_trunk(now, t)?;
                        let calling = setup.calling.clone().unwrap_or_else(|| self.ports[i].number.clone());
                        let (channel, own) = (self.ports[i].channel, self.ports[i].number.clone());
                        self.place_sip_call(now, leg, t, &calling, &setup.called, channel, Caller::Port(own), None, None)
                    }
                    // An ISDN caller to SIP: the B-channel's timeslot carries the RTP.
                    Some(Leg::Isdn(s, call)) => {
                        self.admit_on_trunk(now, t)?;
                        let channel = self.isdn_timeslot(s, call).ok_or(ours(Cause::CHANNEL_NOT_AVAILABLE))?;
                        // RFC 3325/3323: the ISDN calling number asserted to a
                        // trusted trunk, with Privacy: id when restricted.
                        let restricted = setup.presentation == Some(gw_call::Presentation::Restricted);
                        let identity = setup
                            .calling
                            .clone()
                            .filter(|c| !c.is_empty())
                            .map(|user| AssertedIdentity { user, privacy_id: restricted });
                        if restricted {
                            return self.place_sip_anonymous(now, leg, t, setup, channel, identity);
                        }
                        let calling = setup.calling.clone().unwrap_or_else(|| "anonymous".into());
                        self.place_sip_call(now, leg, t, &calling, &setup.called, channel, Caller::Other, setup.calling_name.as_deref(), identity)
                    }
                    // A PSTN caller to SIP: the line's channel carries the RTP.
                    Some(Leg::Fxo(k)) => {
                        self.admit_on_trunk(now, t)?;
                        let calling = setup.calling.clone().unwrap_or_else(|| "anonymous".into());
                        let channel = self.fxo[k].channel;
                        self.place_sip_call(now, leg, t, &calling, &setup.called, channel, Caller::Other, setup.calling_name.as_deref(), None)
                    }
                    // Trunk to trunk: two bridge channels join the two RTP
                    // sessions inside the rt thread.
                    Some(Leg::Sip(..)) => {
                        if !self.bridged.contains_key(&a) {
                            let pair = self.bridges.pop().ok_or_else(|| {
                                warn!(trunk = %name, "no free SIP bridge (media.sip_bridges): refused");
                                Release::local(LocalReason::Unavailable)
                            })?;
                            self.bridged.insert(a, pair);
                            self.rt_command(RtCommand::Listen { channel: pair.0, from: Some(pair.1) });
                            self.rt_command(RtCommand::Listen { channel: pair.1, from: Some(pair.0) });
                            if let Some(c) = self.sip.get_mut(&a) {
                                c.media_channel = Some(pair.0);
                            }
                        }
                        let (_, vb) = self.bridged[&a];
                        self.admit_on_trunk(now, t)?;
                        let calling = setup.calling.clone().unwrap_or_default();
                        self.place_sip_call(now, leg, t, &calling, &setup.called, vb, Caller::Other, setup.calling_name.as_deref(), None)
                    }
                    None => Err(ours(Cause::NORMAL_UNSPECIFIED)),
                }
            }
        }
    }

    /// Rings port `j` for B leg `leg` of the call of `a`.
    fn ring_port(&mut self, now: Instant, a: LegId, leg: LegId, j: usize, setup: &Setup) -> Result<(), Release> {
        if !self.port_free(j) || self.legs.get(&a) == Some(&Leg::Fxs(j)) {
            info!(port = self.ports[j].label, "the called port is busy");
            if matches!(self.legs.get(&a), Some(Leg::Fxs(_))) {
                self.counters.local_busy += 1;
            } else {
                self.counters.rejected_busy += 1;
            }
            return Err(ours(Cause::USER_BUSY));
        }
        // A SIP caller's audio will be carried by this port's channel.
        let channel = self.ports[j].channel;
        if let Some(c) = self.sip.get_mut(&a) {
            c.media_channel = Some(channel);
        } else {
            self.counters.local += 1;
        }
        info!(port = self.ports[j].label, from = ?setup.calling, "ringing");
        self.ports[j].leg = Some(leg);
        self.legs.insert(leg, Leg::Fxs(j));
        // A restricted caller (ISDN presentation, SIP Privacy: id) is not shown.
        let shown = setup.presentation != Some(gw_call::Presentation::Restricted);
        let caller = setup.calling.clone().filter(|_| shown);
        let name = setup.calling_name.clone().filter(|_| shown);
        self.ports[j].line.handle_call(now, CallSignal::Incoming { caller, name });
        self.drain_line(now, j);
        if self.ports[j].leg == Some(leg) {
            self.signal(now, leg, Signal::Alerting { inband: false });
        }
        Ok(())
    }

    /// Tells `leg` what the other side did.
    fn signal_leg(&mut self, now: Instant, leg: LegId, signal: Signal) {
        match self.legs.get(&leg).copied() {
            Some(Leg::Fxs(i)) => self.signal_fxs(now, i, leg, signal),
            Some(Leg::Fxo(k)) => self.signal_fxo(now, k, leg, signal),
            Some(Leg::Sip(..)) => self.signal_sip(now, leg, signal),
            Some(Leg::Isdn(s, call)) => self.signal_isdn(now, s, call, leg, signal),
            None => {}
        }
    }

    /// The FXS adapter: switch signals become line signals.
    fn signal_fxs(&mut self, now: Instant, i: usize, leg: LegId, signal: Signal) {
        let sig = match signal {
            Signal::Proceeding | Signal::Digits(_) => return,
            Signal::Alerting { inband: false } => CallSignal::RemoteRinging,
            // The far end's own ringback or announcement: connect its audio.
            Signal::Alerting { inband: true } | Signal::Progress => CallSignal::EarlyMedia,
            Signal::Answer => CallSignal::RemoteAnswered,
            Signal::Release(r) => {
                self.ports[i].leg = None;
                self.legs.remove(&leg);
                self.rt_command(RtCommand::Listen { channel: self.ports[i].channel, from: None });
                match self.ports[i].line.state() {
                    gw_line::State::Ringing => CallSignal::Cancelled,
                    gw_line::State::Proceeding | gw_line::State::Ringback => {
                        self.counters.failed += 1;
                        CallSignal::Failed { busy: r.cause == Cause::USER_BUSY }
                    }
                    _ => CallSignal::RemoteReleased,
                }
            }
        };
        self.ports[i].line.handle_call(now, sig);
        self.drain_line(now, i);
    }

    /// The caller on port `i` hears what `release` means: busy for 17,
    /// reorder otherwise.
    fn fail_line(&mut self, now: Instant, i: usize, release: Release) {
        self.counters.failed += 1;
        let busy = release.cause == Cause::USER_BUSY;
        self.ports[i].line.handle_call(now, CallSignal::Failed { busy });
        self.drain_line(now, i);
    }

    /// The SIP adapter: switch signals become SIP messages.
    fn signal_sip(&mut self, now: Instant, leg: LegId, signal: Signal) {
        let Some(c) = self.sip.get(&leg) else { return };
        let (t, handle, incoming) = (c.trunk, c.handle, c.incoming);
        match signal {
            Signal::Proceeding | Signal::Digits(_) | Signal::Progress => {}
            Signal::Alerting { .. } => {
                if incoming {
                    let _ = self.trunks[t].ua.ringing(now, handle);
                    self.drain_ua(now, t);
                }
            }
            Signal::Answer => {
                if incoming {
                    self.answer_sip(now, leg);
                }
            }
            Signal::Release(r) => {
                self.release_sip(now, leg, r);
            }
        }
    }

    /// Ends the SIP leg's dialog with `release` (a final status mapped by the
    /// trunk for an unanswered inbound call, else BYE or CANCEL), carrying
    /// the cause in `Reason`, and forgets it.
    fn release_sip(&mut self, now: Instant, leg: LegId, release: Release) {
        let Some(c) = self.sip.remove(&leg) else { return };
        self.legs.remove(&leg);
        self.sip_legs.remove(&(c.trunk, c.handle));
        let t = c.trunk;
        self.trunks[t].active = self.trunks[t].active.saturating_sub(1);
        if c.media_channel.is_some() && c.socket.is_none() {
            if let Some(ch) = c.media_channel {
                self.rt_command(RtCommand::StopMedia { channel: ch });
                self.media.close(ch);
            }
        }
        let ua = &mut self.trunks[t].ua;
        ua.set_cause(c.handle, release.cause.get());
        if c.incoming && !c.answered {
            let status = self.trunks[t].cause_map.status_for(release.cause).unwrap_or(480);
            let _ = self.trunks[t].ua.reject(now, c.handle, status);
        } else {
            let _ = self.trunks[t].ua.hangup(now, c.handle);
        }
        self.drain_ua(now, t);
    }

    /// A call goes out on trunk `t` as B leg `leg`, its RTP carried by rt
    /// channel `channel`; `own`: the calling port's number (its account on a
    /// per-number trunk).
    #[allow(clippy::too_many_arguments)]
    fn place_sip_call(
        &mut self,
        now: Instant,
        leg: LegId,
        t: usize,
        calling: &str,
        called: &str,
        channel: u8,
        own: Caller,
        name: Option<&str>,
        identity: Option<AssertedIdentity>,
    ) -> Result<(), Release> {
        let label = channel;
        let (socket, rtp_port) = match self.rtp_ports.bind() {
            Ok(x) => x,
            Err(e) => {
                warn!(channel = label, %e, "cannot place call: no RTP port");
                return Err(Release::local(LocalReason::Unavailable));
            }
        };
        let session_id = self.random() >> 2;
        let te = self.telephone_event();
        let cn = self.config.media.silence_suppression;
        let codecs = self.trunks[t].codecs.clone();
        let offer = sdp::make_offer_with(self.config.media.rtp_ip, rtp_port, &codecs, te, cn, session_id);
        let trunk = &mut self.trunks[t];
        // RFC 3325: the asserted identity goes only to a trusted trunk.
        let pai = identity.filter(|_| trunk.trusted_identity);
        let pai = pai.as_ref();
        let placed = match (trunk.register, own) {
            // An anonymous caller: From anonymous, authenticated by this account.
            (_, Caller::Anonymous(acct)) => trunk.ua.invite_asserted(now, calling, None, called, offer.clone(), acct.as_deref(), pai),
            // The port's own account (today's behaviour), from its own number.
            (RegisterMode::PerNumber, Caller::Port(own)) => trunk.ua.invite(now, &own, called, offer.clone()),
            // Another trunk's caller: its number's account if it has one here.
            (RegisterMode::PerNumber, Caller::Other) => trunk
                .ua
                .invite_asserted(now, calling, None, called, offer.clone(), Some(calling), pai)
                .or_else(|_| trunk.ua.invite_asserted(now, calling, name, called, offer.clone(), None, pai)),
            (RegisterMode::Pilot, _) => {
                let pilot = trunk.pilot.clone();
                trunk.ua.invite_asserted(now, calling, name, called, offer.clone(), pilot.as_deref(), pai)
            }
            (RegisterMode::None, _) => {
                // A peer trusted by address; an account, if one is set, answers a challenge.
                let acct = trunk.ua_first_account();
                trunk.ua.invite_asserted(now, calling, name, called, offer.clone(), acct.as_deref(), pai)
            }
        };
        match placed {
            Ok(handle) => {
                info!(channel = label, trunk = %self.trunks[t].name, from = %calling, to = %called, call = handle.0, "placing call");
                self.counters.outgoing += 1;
                self.trunks[t].counters.calls_out += 1;
                self.trunks[t].active += 1;
                self.legs.insert(leg, Leg::Sip(t, handle));
                self.sip_legs.insert((t, handle), leg);
                self.sip.insert(
                    leg,
                    SipCall {
                        trunk: t,
                        handle,
                        incoming: false,
                        remote_party: called.to_string(),
                        socket: Some(socket),
                        rtp_port,
                        offer: Some(offer),
                        remote_offer: None,
                        media: None,
                        media_channel: Some(channel),
                        answered: false,
                        max_until: None,
                        held: false,
                    },
                );
                self.drain_ua(now, t);
                Ok(())
            }
            Err(e) => {
                warn!(channel = label, ?e, "cannot place call");
                Err(Release::local(LocalReason::Unavailable))
            }
        }
    }

    /// Answers an inbound SIP leg (its B side, a port, answered).
    fn answer_sip(&mut self, now: Instant, leg: LegId) {
        let ip = self.config.media.rtp_ip;
        let cn = self.config.media.silence_suppression;
        let session_id = self.random() >> 2;
        let Some(c) = self.sip.get_mut(&leg) else { return };
        let codecs = self.trunks[c.trunk].codecs.clone();
        let (t, handle) = (c.trunk, c.handle);
        let Some(offer) = c.remote_offer.as_ref() else { return };
        match sdp::answer_with(offer, ip, c.rtp_port, &codecs, cn, session_id) {
            Ok((answer, negotiated)) => {
                c.media = Some(negotiated);
                c.answered = true;
                c.max_until = self.trunks[t].limits.max_duration_s.map(|s| now + Duration::from_secs(s));
                info!(call = handle.0, "inbound call answered");
                let _ = self.trunks[t].ua.answer(now, handle, answer);
                self.drain_ua(now, t);
                // The port's line connects the media (its ConnectMedia came
                // before this answer).
                if let Some(ch) = c_channel(&self.sip, leg) {
                    self.connect_media(leg, ch);
                }
            }
            Err(e) => {
                // Checked when the INVITE came in, so this is unexpected.
                warn!(?e, "offer cannot be answered");
                let r = ours(Cause::BEARER_NOT_IMPLEMENTED);
                self.release_sip(now, leg, r);
                self.signal(now, leg, Signal::Release(r));
            }
        }
    }

    /// Starts the RTP of SIP leg `leg` on FXS channel `channel`.
    fn connect_media(&mut self, leg: LegId, channel: u8) {
        let Some(c) = self.sip.get(&leg) else { return };
        let Some(media) = c.media else { return };
        if c.socket.is_none() {
            return; // already running
        }
        let session = self.session_for(&media);
        let Some(c) = self.sip.get_mut(&leg) else { return };
        let Some(socket) = c.socket.take() else { return };
        c.media_channel = Some(channel);
        info!(channel, remote = %media.remote, codec = ?media.codec, ptime = session.ptime_ms, "media connected");
        self.media.open(channel, socket, media.remote);
        self.rt_command(RtCommand::StartMedia { channel, session, codec: voice_codec(media.codec) });
    }

    /// Stops SIP leg `leg`'s RTP (the dialog goes on).
    fn stop_media(&mut self, leg: LegId) {
        let Some(c) = self.sip.get_mut(&leg) else { return };
        if c.socket.is_some() {
            return; // never started
        }
        if let Some(ch) = c.media_channel.take() {
            self.rt_command(RtCommand::StopMedia { channel: ch });
            self.media.close(ch);
        }
    }

    /// The far end's media changed during the call (the 2xx after early
    /// media, a re-INVITE): a new address is followed, a new codec restarts
    /// the session in the rt thread.
    fn update_media(&mut self, leg: LegId, new: NegotiatedMedia) {
        let Some(c) = self.sip.get(&leg) else { return };
        let (Some(old), Some(channel), true) = (c.media, c.media_channel, c.socket.is_none()) else { return };
        if old.remote != new.remote {
            info!(channel, from = %old.remote, to = %new.remote, "far end's media moved");
            self.media.retarget(channel, new.remote);
        }
        // The SDP may bring a new stream (another media server, music on
        // hold, the callee after an announcement): the session takes the next
        // SSRC it sees; it never switches on its own.
        self.rt_command(RtCommand::AcceptNewSource { channel });
        if (old.codec, old.payload_type, old.telephone_event) != (new.codec, new.payload_type, new.telephone_event) {
            info!(channel, codec = ?new.codec, "far end changed the codec: media restarted");
            let session = self.session_for(&new);
            self.rt_command(RtCommand::StartMedia { channel, session, codec: voice_codec(new.codec) });
        }
        if let Some(c) = self.sip.get_mut(&leg) {
            c.media = Some(new);
        }
    }

    /// A re-INVITE's offer (already answered by the UA with our SDP and the
    /// mirrored direction): hold, resume, a new address or codec.
    fn apply_remote_offer(&mut self, leg: LegId, offer: &SessionDescription) {
        let Some(c) = self.sip.get(&leg) else { return };
        let codecs = self.trunks[c.trunk].codecs.clone();
        let Ok((_, m)) = sdp::answer(offer, self.config.media.rtp_ip, c.rtp_port, &codecs, 0) else {
            warn!(call = c.handle.0, "re-INVITE offer has nothing we can use: media unchanged");
            return;
        };
        // RFC 3264 8.4: hold is the offer's sendonly or inactive (c=0.0.0.0 in RFC 2543).
        let direction = offer.media.first().map_or(sdp::Direction::SendRecv, |md| md.direction);
        let held = matches!(direction, sdp::Direction::SendOnly | sdp::Direction::Inactive) || m.remote.ip().is_unspecified();
        info!(call = c.handle.0, held, remote = %m.remote, "re-INVITE from the far end");
        let running = c.socket.is_none() && c.media_channel.is_some();
        let channel = c.media_channel;
        if let Some(c) = self.sip.get_mut(&leg) {
            c.held = held;
        }
        if let (true, Some(ch)) = (running, channel) {
            self.media.hold(ch, held);
            if !m.remote.ip().is_unspecified() {
                self.update_media(leg, m);
            }
        }
    }

    fn apply_ua_event(&mut self, now: Instant, t: usize, ev: Event) {
        match ev {
            Event::Registered { user, expires } => {
                let trunk = &mut self.trunks[t];
                info!(trunk = %trunk.name, user = %user, expires, "registered");
                trunk.failed_accounts.remove(&user);
                trunk.registrations.insert(user, format!("registered ({expires} s)"));
            }
            Event::RegistrationFailed { user, status, reason, retry_in } => {
                let trunk = &mut self.trunks[t];
                let status = status.map_or("timeout".to_string(), |s| s.to_string());
                warn!(trunk = %trunk.name, user = %user, %status, %reason, retry_in_s = retry_in.as_secs(), "registration failed");
                trunk.failed_accounts.insert(user.clone());
                trunk
                    .registrations
                    .insert(user, format!("failed: {status} {reason}; retry in {} s", retry_in.as_secs()));
            }
            Event::PingResult { status } => {
                let trunk = &mut self.trunks[t];
                // Any final answer means the trunk is there; a timeout was
                // already counted by the ping's own deadline.
                if status.is_some() {
                    trunk.ping_deadline = None;
                    trunk.ping_misses = 0;
                    if trunk.options_down {
                        trunk.options_down = false;
                        info!(trunk = %trunk.name, proxy = %trunk.proxy, "trunk up: OPTIONS answered");
                    }
                }
            }
            Event::IncomingCall { call, from_user, from_display, to_user, offer } => {
                self.incoming_call(now, t, call, from_user, from_display, to_user, offer)
            }
            Event::Ringing { call } => {
                let Some(&leg) = self.sip_legs.get(&(t, call)) else { return };
                // A 18x with SDP: the far end's own ringback or announcement
                // plays instead of ours (early media, RFC 3960).
                let early = match (self.sip.get(&leg).and_then(|c| c.offer.as_ref()), self.trunks[t].ua.remote_sdp(call)) {
                    (Some(offer), Some(sdp)) => sdp::accept_answer(offer, &sdp).ok(),
                    _ => None,
                };
                if let (Some(m), Some(c)) = (early, self.sip.get_mut(&leg)) {
                    info!(call = call.0, remote = %m.remote, "early media from the far end");
                    c.media.get_or_insert(m);
                }
                self.signal(now, leg, Signal::Alerting { inband: early.is_some() });
            }
            Event::RemoteOffer { call, offer } => {
                let Some(&leg) = self.sip_legs.get(&(t, call)) else { return };
                self.apply_remote_offer(leg, &offer);
            }
            Event::Answered { call, answer } => {
                let Some(&leg) = self.sip_legs.get(&(t, call)) else { return };
                let negotiated = match (self.sip.get(&leg).and_then(|c| c.offer.as_ref()), answer) {
                    (Some(offer), Some(answer)) => sdp::accept_answer(offer, &answer).map_err(|e| format!("{e:?}")),
                    _ => Err("2xx without an SDP answer".to_string()),
                };
                match negotiated {
                    Ok(m) => {
                        info!(call = call.0, "far end answered");
                        let max = self.trunks[t].limits.max_duration_s.map(|s| now + Duration::from_secs(s));
                        // Media already running from early media: follow the
                        // final answer if it moved.
                        self.update_media(leg, m);
                        if let Some(c) = self.sip.get_mut(&leg) {
                            c.media = Some(m);
                            c.answered = true;
                            c.max_until = max;
                        }
                        // Trunk to trunk: no line machine asks for the media.
                        let peer_is_sip =
                            self.switch.peer(leg).is_some_and(|p| matches!(self.legs.get(&p), Some(Leg::Sip(..) | Leg::Isdn(..))));
                        if let (true, Some(ch)) = (peer_is_sip, c_channel(&self.sip, leg)) {
                            self.connect_media(leg, ch);
                        }
                        self.signal(now, leg, Signal::Answer);
                    }
                    Err(e) => {
                        warn!(call = call.0, %e, "unusable answer; hanging up");
                        let r = ours(Cause::BEARER_NOT_IMPLEMENTED);
                        self.release_sip(now, leg, r);
                        self.signal(now, leg, Signal::Release(r));
                    }
                }
            }
            Event::Confirmed { call } => debug!(call = call.0, "ACK received"),
            Event::Failed { call, status, reason } => {
                let Some(&leg) = self.sip_legs.get(&(t, call)) else { return };
                let release = self.sip_release(t, call, status);
                info!(trunk = %self.trunks[t].name, call = call.0, status, %reason, %release, "call failed");
                self.trunks[t].counters.failed += 1;
                self.forget_sip(leg);
                self.signal(now, leg, Signal::Release(release));
            }
            Event::Ended { call, reason } => {
                let Some(&leg) = self.sip_legs.get(&(t, call)) else { return };
                let remote = self.trunks[t].ua.remote_reason(call).and_then(gw_call::reason::parse);
                info!(call = call.0, ?reason, ?remote, "call ended by the far end");
                let cause = remote.unwrap_or(Cause::NORMAL_CLEARING);
                self.forget_sip(leg);
                self.signal(now, leg, Signal::Release(Release::remote(cause, Location::BeyondInterworking)));
            }
        }
    }

    /// The dialog of SIP leg `leg` is over on its own (failed or ended):
    /// its media stops and it is forgotten.
    fn forget_sip(&mut self, leg: LegId) {
        self.stop_media(leg);
        if let Some(c) = self.sip.remove(&leg) {
            self.sip_legs.remove(&(c.trunk, c.handle));
            let t = &mut self.trunks[c.trunk];
            t.active = t.active.saturating_sub(1);
        }
        self.legs.remove(&leg);
    }

    /// Rejects an inbound call on trunk `t` before it reaches the switch.
    fn reject_incoming(&mut self, now: Instant, t: usize, call: CallHandle, release: Release) {
        let status = self.trunks[t].cause_map.status_for(release.cause).unwrap_or(480);
        self.trunks[t].ua.set_cause(call, release.cause.get());
        let _ = self.trunks[t].ua.reject(now, call, status);
    }

    #[allow(clippy::too_many_arguments)]
    fn incoming_call(
        &mut self,
        now: Instant,
        t: usize,
        call: CallHandle,
        from_user: String,
        from_display: Option<String>,
        to_user: String,
        offer: Option<SessionDescription>,
    ) {
        self.counters.incoming += 1;
        self.trunks[t].counters.calls_in += 1;
        let trunk_name = self.trunks[t].name.clone();
        if let Err(release) = self.admit_on_trunk(now, t) {
            return self.reject_incoming(now, t, call, release);
        }
        // Refuse an offer we cannot answer before anything rings.
        let Some(offer) = offer else {
            info!(trunk = %trunk_name, "INVITE without an SDP offer is not supported: 488");
            return self.reject_incoming(now, t, call, ours(Cause::BEARER_NOT_IMPLEMENTED));
        };
        if let Err(e) = sdp::answer(&offer, self.config.media.rtp_ip, 9, &self.trunks[t].codecs, 0) {
            info!(trunk = %trunk_name, ?e, "no acceptable codec in the offer: 488");
            return self.reject_incoming(now, t, call, ours(Cause::BEARER_NOT_IMPLEMENTED));
        }
        let (socket, rtp_port) = match self.rtp_ports.bind() {
            Ok(x) => x,
            Err(e) => {
                warn!(trunk = %trunk_name, %e, "no RTP port for an inbound call: 503");
                return self.reject_incoming(now, t, call, ours(Cause::RESOURCE_UNAVAILABLE));
            }
        };
        info!(trunk = %trunk_name, from = %from_user, to = %to_user, call = call.0, "inbound call");
        self.trunks[t].active += 1;
        // RFC 3325: a trusted trunk's P-Asserted-Identity is the calling
        // number (network provided); Privacy: id restricts its presentation.
        let asserted = self.trunks[t].ua.asserted_identity(call).filter(|_| self.trunks[t].trusted_identity).cloned();
        let (calling, presentation) = match asserted {
            Some(id) => {
                let p = if id.privacy_id { gw_call::Presentation::Restricted } else { gw_call::Presentation::Allowed };
                info!(trunk = %trunk_name, asserted = %id.user, privacy = id.privacy_id, "asserted identity");
                (id.user, Some(p))
            }
            None => (from_user.clone(), None),
        };
        let setup = Setup {
            called: to_user,
            calling: Some(calling),
            calling_name: from_display.filter(|_| presentation != Some(gw_call::Presentation::Restricted)),
            presentation,
            complete: true,
        };
        let h = self.health(None);
        // The leg id comes from the switch; register the dialog under it as
        // soon as it exists (the switch's outputs are drained after).
        let a = self.switch.originate(now, &trunk_name, setup, &|x| h.of(x));
        self.legs.insert(a, Leg::Sip(t, call));
        self.sip_legs.insert((t, call), a);
        self.sip.insert(
            a,
            SipCall {
                trunk: t,
                handle: call,
                incoming: true,
                remote_party: from_user,
                socket: Some(socket),
                rtp_port,
                offer: None,
                remote_offer: Some(offer),
                media: None,
                media_channel: None,
                answered: false,
                max_until: None,
                held: false,
            },
        );
        self.drain_switch(now);
        self.drain_ua(now, t);
    }
}

// ---- ISDN B-channels as legs ----------------------------------------------

/// A number as Q.931 carries it: type unknown, plan E.164 (ISDN).
fn party_number(digits: &str, presentation: Option<u8>) -> PartyNumber {
    PartyNumber {
        type_of_number: 0,
        plan: 1,
        presentation,
        screening: if presentation.is_some() { 3 } else { 0 },
        reason: None,
        digits: digits.bytes().filter(|b| b.is_ascii_digit() || *b == b'*' || *b == b'#').take(32).collect(),
    }
}

fn number_text(n: &PartyNumber) -> String {
    n.digits.iter().filter(|b| b.is_ascii_digit() || **b == b'*' || **b == b'#').map(|&b| b as char).collect()
}

impl Gateway {
    /// The configured ISDN spans (built by `isdn::build_spans`); started by
    /// [`Gateway::start`].
    pub fn add_isdn_spans(&mut self, spans: Vec<crate::isdn::Span>) {
        self.spans = spans;
    }

    /// For the console's requests (captures).
    pub fn isdn_spans_mut(&mut self) -> &mut [crate::isdn::Span] {
        &mut self.spans
    }

    pub fn isdn_status(&self) -> Vec<crate::isdn::SpanStatus> {
        self.spans.iter().map(crate::isdn::Span::status).collect()
    }

    /// Runs every span (frames, layer 1, timers) and takes its call events.
    pub fn handle_isdn(&mut self, now: Instant) {
        for s in 0..self.spans.len() {
            self.spans[s].poll(now);
            while let Some(ev) = self.spans[s].poll_event() {
                self.isdn_event(now, s, ev);
            }
        }
    }

    /// A span's request, its events handled after it.
    fn isdn_request<R>(&mut self, now: Instant, s: usize, f: impl FnOnce(&mut gw_isdn::call::CallControl, Instant) -> R) -> R {
        let r = self.spans[s].request(now, f);
        while let Some(ev) = self.spans[s].poll_event() {
            self.isdn_event(now, s, ev);
        }
        r
    }

    /// The rt channel of a call's B-channel, once chosen.
    fn isdn_timeslot(&self, s: usize, call: IsdnCallId) -> Option<u8> {
        let sp = self.spans.get(s)?;
        sp.timeslot(sp.channel_of(call)?)
    }

    fn isdn_event(&mut self, now: Instant, s: usize, ev: IsdnEvent) {
        debug!(span = %self.spans[s].name(), ?ev, "ISDN call event");
        let leg_of = |g: &Gateway, call: IsdnCallId| g.isdn_legs.get(&(s, call)).copied();
        match ev {
            IsdnEvent::Setup { call, info, .. } => self.isdn_incoming(now, s, call, info),
            IsdnEvent::SetupAck { call, .. } | IsdnEvent::Proceeding { call, .. } => {
                // Overlap sending: what came before the SETUP ACK goes now
                // (after CALL PROCEEDING the number is complete: dropped).
                let queued = self.isdn_out_digits.remove(&(s, call));
                if let (Some((digits, complete)), IsdnEvent::SetupAck { .. }) = (queued, &ev) {
                    if !digits.is_empty() || complete {
                        let _ = self.isdn_request(now, s, |cc, now| cc.information(now, call, digits.as_bytes(), complete));
                    }
                }
                if let Some(leg) = leg_of(self, call) {
                    self.isdn_channel_known(s, call, leg);
                    self.signal(now, leg, Signal::Proceeding);
                }
            }
            IsdnEvent::ChannelChanged { call, .. } => {
                if let Some(leg) = leg_of(self, call) {
                    self.isdn_channel_known(s, call, leg);
                }
            }
            IsdnEvent::Alerting { call, inband } => {
                if let Some(leg) = leg_of(self, call) {
                    if inband {
                        self.isdn_audio(leg);
                    }
                    self.signal(now, leg, Signal::Alerting { inband });
                }
            }
            IsdnEvent::Progress { call, description } => {
                // Progress description 1 (not end-to-end ISDN) or 8 (in-band information).
                if let (Some(leg), true) = (leg_of(self, call), matches!(description, 1 | 8)) {
                    self.isdn_audio(leg);
                    self.signal(now, leg, Signal::Progress);
                }
            }
            IsdnEvent::Connected { call } => {
                // Our own CONNECT acknowledged (an incoming call) says nothing new.
                if let Some(leg) = leg_of(self, call).filter(|l| self.switch.side(*l) == Some(Side::B)) {
                    self.isdn_audio(leg);
                    self.signal(now, leg, Signal::Answer);
                }
            }
            IsdnEvent::Digits { call, digits, complete } => {
                let d: String = digits.iter().filter(|b| b.is_ascii_digit() || **b == b'*' || **b == b'#').map(|&b| b as char).collect();
                self.spans[s].note_digits(call, &d);
                if let Some(setup) = self.isdn_collect.get_mut(&(s, call)) {
                    setup.called.push_str(&d);
                    self.isdn_collect_step(now, s, call, complete);
                } else if let Some(leg) = leg_of(self, call) {
                    if !d.is_empty() {
                        self.signal(now, leg, Signal::Digits(d));
                    }
                    if complete {
                        self.isdn_number_ended(now, s, call, "sending complete");
                    }
                }
            }
            IsdnEvent::DigitTimeout { call } if self.isdn_collect.contains_key(&(s, call)) => {
                info!(span = %self.spans[s].name(), call = call.0, "T302 expired: the number is now complete");
                self.isdn_collect_step(now, s, call, true);
            }
            IsdnEvent::DigitTimeout { call } => self.isdn_number_ended(now, s, call, "T302 expired"),
            IsdnEvent::Disconnect { call, cause, location, .. } => self.isdn_gone(now, s, call, cause, Some(location)),
            IsdnEvent::Released { call, cause, location } => self.isdn_gone(now, s, call, cause, location),
            other => info!(span = %self.spans[s].name(), ?other, "ISDN span event"),
        }
    }

    /// An incoming SETUP: a new call from the span's group.
    fn isdn_incoming(&mut self, now: Instant, s: usize, call: IsdnCallId, info: gw_isdn::call::SetupInfo) {
        let name = self.spans[s].name().to_string();
        let called = info.called.as_ref().map(number_text).unwrap_or_default();
        let calling = info.calling.as_ref().map(number_text).filter(|n| !n.is_empty());
        // Presentation restricted (1) or not available (2) hides the number (RFC 3323 Privacy: id).
        let presentation = info.calling.as_ref().and_then(|n| n.presentation).map(|p| {
            if p == 0 {
                gw_call::Presentation::Allowed
            } else {
                gw_call::Presentation::Restricted
            }
        });
        let display = info.display.as_ref().map(|d| String::from_utf8_lossy(d).into_owned()).filter(|d| !d.is_empty());
        self.spans[s].note_call(call, crate::isdn::CallNote { calling: calling.clone(), called: called.clone(), incoming: true });
        info!(span = %name, call = call.0, from = ?calling, to = %called, channel = ?self.spans[s].channel_of(call), "incoming ISDN call");
        self.counters.incoming += 1;
        let refuse = |g: &mut Gateway, cause: Cause| {
            let _ = g.isdn_request(now, s, |cc, now| cc.disconnect(now, call, cause.get()));
        };
        // Only speech and 3.1 kHz audio cross to the other legs.
        if info.bearer.as_ref().is_some_and(|b| b.transfer_capability != 0x00 && b.transfer_capability != 0x10) {
            info!(span = %name, call = call.0, "a data call (unrestricted digital bearer): refused with cause 65");
            return refuse(self, Cause::BEARER_NOT_IMPLEMENTED);
        }
        let Some(source) = self.spans[s].cfg.group.clone() else {
            info!(span = %name, call = call.0, "the span is in no group of the routing table: refused");
            return refuse(self, Release::local(LocalReason::NoRoute).cause);
        };
        // Overlap receiving: without "sending complete" more digits may come
        // (SETUP ACK; INFORMATION until the group's dial plan calls the
        // number complete, T302 or sending complete). En bloc: CALL
        // PROCEEDING at once.
        let complete = info.sending_complete;
        let setup = Setup { called, calling, calling_name: display, presentation, complete };
        if !complete {
            let _ = self.isdn_request(now, s, |cc, now| cc.setup_ack(now, call));
            self.isdn_collect.insert((s, call), setup);
            return self.isdn_collect_step(now, s, call, false);
        }
        let _ = self.isdn_request(now, s, |cc, now| cc.proceeding(now, call));
        self.isdn_originate(now, s, call, source, setup);
    }

    /// An incoming overlap number held in `isdn_collect`: routed (the switch
    /// gets it complete) when the dial plan of the span's group says
    /// `Complete` or matches nothing, or when no more digits will come
    /// (`ended`: sending complete or T302, so a number that is a prefix of a
    /// longer rule is now complete and routed; an incomplete one gets 28).
    /// A number a route to an overlap span already matches goes on at once,
    /// incomplete: its remaining digits follow (overlap sending).
    fn isdn_collect_step(&mut self, now: Instant, s: usize, call: IsdnCallId, ended: bool) {
        let Some(setup) = self.isdn_collect.get(&(s, call)) else { return };
        let Some(source) = self.spans[s].cfg.group.clone() else { return };
        let table = self.switch.table();
        let state = table.digit_map(&source).map_or(gw_line::Match::NoMatch, |m| m.check(&setup.called));
        let onward = !ended
            && match table.lookup(&source, &setup.called, setup.calling.as_deref()) {
                Lookup::Route(m) => m.destinations.first().is_some_and(|d| self.overlap_group(&d.target)),
                _ => false,
            };
        if !(ended || onward || matches!(state, gw_line::Match::Complete | gw_line::Match::NoMatch)) {
            return;
        }
        let Some(mut setup) = self.isdn_collect.remove(&(s, call)) else { return };
        setup.complete = !onward;
        self.isdn_originate(now, s, call, source, setup);
    }

    /// Whether `target` is a span group whose spans take overlap sending.
    fn overlap_group(&self, target: &Target) -> bool {
        let Target::Group(name) = target else { return false };
        let mut spans = self.spans.iter().filter(|sp| sp.cfg.group.as_deref() == Some(name.as_str())).peekable();
        spans.peek().is_some() && spans.all(|sp| sp.cfg.overlap)
    }

    /// The call of an incoming SETUP enters the switch.
    fn isdn_originate(&mut self, now: Instant, s: usize, call: IsdnCallId, source: String, setup: Setup) {
        let onward = !setup.complete;
        let h = self.health(None);
        let a = self.switch.originate(now, &source, setup, &|t| h.of(t));
        self.legs.insert(a, Leg::Isdn(s, call));
        self.isdn_legs.insert((s, call), a);
        if onward {
            self.isdn_onward.insert(a);
        }
        self.drain_switch(now);
    }

    /// No more digits will come for an incoming overlap call: if the route
    /// table has not matched the number yet, it is incomplete (cause 28).
    fn isdn_number_ended(&mut self, now: Instant, s: usize, call: IsdnCallId, why: &str) {
        let Some(leg) = self.isdn_legs.get(&(s, call)).copied() else { return };
        if self.switch.call_of(leg).is_some_and(|v| v.route.is_some()) {
            // Overlap sending: the far network learns the number is complete.
            if self.isdn_onward.contains(&leg) {
                if let Some(Leg::Isdn(s2, c2)) = self.switch.peer(leg).and_then(|b| self.legs.get(&b).copied()) {
                    info!(span = %self.spans[s].name(), call = call.0, why, "overlap number complete: sending complete onwards");
                    self.isdn_send_digits(now, s2, c2, "", true);
                }
            }
            return;
        }
        let called = self.switch.call_of(leg).map(|v| v.called.to_string()).unwrap_or_default();
        info!(span = %self.spans[s].name(), call = call.0, %called, why, "overlap number incomplete: cause 28");
        let r = ours(Cause::INVALID_NUMBER_FORMAT);
        self.signal_isdn(now, s, call, leg, Signal::Release(r));
        self.signal(now, leg, Signal::Release(r));
    }

    /// An incoming overlap call is routed: the number is complete (CALL PROCEEDING stops T302).
    /// (Not for a call routed on a prefix to an overlap span: the far
    /// network's CALL PROCEEDING says when it is complete.)
    fn isdn_routed(&mut self, now: Instant, a: LegId) {
        if self.isdn_onward.contains(&a) {
            return;
        }
        if let Some(Leg::Isdn(s, call)) = self.legs.get(&a).copied() {
            if self.spans[s].call_state(call) == Some(gw_isdn::call::State::InOverlap) {
                let _ = self.isdn_request(now, s, |cc, now| cc.proceeding(now, call));
            }
        }
    }

    /// Overlap digits for an outgoing call: INFORMATION once the SETUP is
    /// acknowledged, queued before; dropped after CALL PROCEEDING (the
    /// network has the number it needs).
    fn isdn_send_digits(&mut self, now: Instant, s: usize, call: IsdnCallId, digits: &str, complete: bool) {
        use gw_isdn::call::State as St;
        match self.spans[s].call_state(call) {
            Some(St::OutInitiated) => {
                let q = self.isdn_out_digits.entry((s, call)).or_default();
                q.0.push_str(digits);
                q.1 |= complete;
            }
            Some(St::OutOverlap) => {
                let _ = self.isdn_request(now, s, |cc, now| cc.information(now, call, digits.as_bytes(), complete));
            }
            _ => return,
        }
        self.spans[s].note_digits(call, digits);
    }

    /// The call's B-channel is known (or moved): a SIP peer's RTP is carried there.
    fn isdn_channel_known(&mut self, s: usize, call: IsdnCallId, leg: LegId) {
        let Some(ts) = self.isdn_timeslot(s, call) else { return };
        if let Some(c) = self.switch.peer(leg).and_then(|p| self.sip.get_mut(&p)) {
            if c.socket.is_some() {
                c.media_channel = Some(ts);
            }
        }
    }

    /// The ISDN leg's B-channel hears its peer (and a SIP peer's RTP starts on it).
    fn isdn_audio(&mut self, leg: LegId) {
        let Some(Leg::Isdn(s, call)) = self.legs.get(&leg).copied() else { return };
        let Some(ts) = self.isdn_timeslot(s, call) else { return };
        if self.isdn_ts.insert(leg, ts).is_some() {
            // Our own ringback, if it played, gives way to the peer's audio.
            self.rt_command(RtCommand::StopTone { channel: ts });
        }
        self.connect_to_peer(Some(leg), ts);
    }

    /// The ISDN side ended the call (or its span lost layer 1).
    fn isdn_gone(&mut self, now: Instant, s: usize, call: IsdnCallId, cause: u8, location: Option<u8>) {
        self.isdn_out_digits.remove(&(s, call));
        if self.isdn_collect.remove(&(s, call)).is_some() {
            info!(span = %self.spans[s].name(), call = call.0, cause, "ISDN caller gone while dialling");
        }
        let Some(leg) = self.isdn_legs.remove(&(s, call)) else { return };
        info!(span = %self.spans[s].name(), call = call.0, cause, "ISDN call cleared by the span");
        self.legs.remove(&leg);
        self.isdn_onward.remove(&leg);
        if let Some(ts) = self.isdn_ts.remove(&leg) {
            self.rt_command(RtCommand::StopTone { channel: ts });
            self.rt_command(RtCommand::Listen { channel: ts, from: None });
        }
        let cause = Cause::new(cause).unwrap_or(Cause::NORMAL_UNSPECIFIED);
        let location = location.and_then(Location::from_code).unwrap_or(Location::PublicLocal);
        self.signal(now, leg, Signal::Release(Release::remote(cause, location)));
    }

    /// The ISDN adapter: switch signals become Q.931 requests.
    fn signal_isdn(&mut self, now: Instant, s: usize, call: IsdnCallId, leg: LegId, signal: Signal) {
        let incoming = self.switch.side(leg) == Some(Side::A);
        let r = match signal {
            // An overlap caller routed onwards: complete once the far network
            // is past overlap (its CALL PROCEEDING, ALERTING, ...).
            Signal::Proceeding if incoming && self.isdn_onward.contains(&leg) => {
                let far_collecting = match self.switch.peer(leg).and_then(|b| self.legs.get(&b).copied()) {
                    Some(Leg::Isdn(s2, c2)) => self.spans[s2].call_state(c2) == Some(gw_isdn::call::State::OutOverlap),
                    _ => false,
                };
                if !far_collecting && self.spans[s].call_state(call) == Some(gw_isdn::call::State::InOverlap) {
                    self.isdn_request(now, s, |cc, now| cc.proceeding(now, call))
                } else {
                    Ok(())
                }
            }
            Signal::Proceeding => Ok(()),
            Signal::Digits(d) if !incoming => {
                self.isdn_send_digits(now, s, call, &d, false);
                Ok(())
            }
            Signal::Digits(_) => Ok(()),
            Signal::Alerting { inband } if incoming => {
                let r = self.isdn_request(now, s, |cc, now| cc.alerting(now, call));
                let nt = self.spans[s].cfg.side() == gw_hal::isdn::Side::Nt;
                if inband {
                    self.isdn_audio(leg);
                    let _ = self.isdn_request(now, s, |cc, now| cc.progress(now, call, 8));
                } else if nt {
                    // The network side gives its user (a PBX) the ringback
                    // in band, and says so (progress indicator 8).
                    if let Some(ts) = self.isdn_timeslot(s, call) {
                        self.isdn_ts.insert(leg, ts);
                        self.play_tone(ts, Tone::Ringback);
                    }
                    let _ = self.isdn_request(now, s, |cc, now| cc.progress(now, call, 8));
                }
                r
            }
            Signal::Progress if incoming => {
                self.isdn_audio(leg);
                self.isdn_request(now, s, |cc, now| cc.progress(now, call, 8))
            }
            Signal::Answer if incoming => {
                self.isdn_audio(leg);
                self.isdn_request(now, s, |cc, now| cc.connect(now, call))
            }
            Signal::Alerting { .. } | Signal::Progress | Signal::Answer => Ok(()),
            Signal::Release(r) => {
                self.isdn_legs.remove(&(s, call));
                self.legs.remove(&leg);
                self.isdn_onward.remove(&leg);
                self.isdn_out_digits.remove(&(s, call));
                if let Some(ts) = self.isdn_ts.remove(&leg) {
                    self.rt_command(RtCommand::StopTone { channel: ts });
                    self.rt_command(RtCommand::Listen { channel: ts, from: None });
                }
                self.isdn_request(now, s, |cc, now| cc.disconnect(now, call, r.cause.get()))
            }
        };
        if let Err(e) = r {
            debug!(span = %self.spans[s].name(), call = call.0, ?e, "ISDN request refused");
        }
    }

    /// An ISDN caller whose number is presentation restricted: the INVITE's
    /// From is `anonymous` (RFC 3323 section 4.1.1.3) with no display name;
    /// the trunk still authenticates it by the caller's account (per-number
    /// trunks) or its own.
    fn place_sip_anonymous(
        &mut self,
        now: Instant,
        leg: LegId,
        t: usize,
        setup: &Setup,
        channel: u8,
        identity: Option<AssertedIdentity>,
    ) -> Result<(), Release> {
        let trunk = &self.trunks[t];
        let account = match trunk.register {
            RegisterMode::Pilot => trunk.pilot.clone(),
            RegisterMode::PerNumber => setup
                .calling
                .clone()
                .filter(|c| trunk.ua.account_users().contains(&c.as_str()))
                .or_else(|| trunk.ua.account_users().first().map(|u| u.to_string())),
            RegisterMode::None => trunk.ua.account_users().first().map(|u| u.to_string()),
        };
        info!(trunk = %trunk.name, to = %setup.called, "the ISDN caller's number is restricted: From anonymous");
        self.place_sip_call(now, leg, t, "anonymous", &setup.called, channel, Caller::Anonymous(account), None, identity)
    }

    /// Calls `setup.called` out on a B-channel of a span of group `name`
    /// (spans in order, those down skipped; all channels busy: cause 34).
    fn place_isdn(&mut self, now: Instant, a: LegId, leg: LegId, name: &str, setup: &Setup) -> Result<(), Release> {
        let members: Vec<usize> = (0..self.spans.len()).filter(|&s| self.spans[s].cfg.group.as_deref() == Some(name)).collect();
        let mut last = Release::local(LocalReason::TrunkDown);
        for s in members {
            if !self.spans[s].usable() {
                continue;
            }
            // A SIP caller who hides (From: anonymous, RFC 3323) or a
            // route that restricts: presentation restricted, no digits.
            let anonymous = setup.calling.as_deref().is_none_or(|c| c.eq_ignore_ascii_case("anonymous"));
            let presentation = match setup.presentation {
                Some(gw_call::Presentation::Restricted) => Some(1),
                _ if anonymous => Some(1),
                Some(gw_call::Presentation::Allowed) => Some(0),
                None => None,
            };
            let info = gw_isdn::call::SetupInfo {
                called: Some(party_number(&setup.called, None)),
                calling: Some(party_number(if anonymous { "" } else { setup.calling.as_deref().unwrap_or_default() }, presentation.or(Some(0)))),
                // Overlap sending only towards a span configured for it.
                sending_complete: setup.complete || !self.spans[s].cfg.overlap,
                exclusive: self.spans[s].cfg.exclusive,
                display: setup.calling_name.as_ref().filter(|_| !anonymous).map(|n| n.bytes().filter(|b| (0x20..0x7F).contains(b)).take(32).collect()),
                ..Default::default()
            };
            match self.isdn_request(now, s, |cc, now| cc.setup(now, info)) {
                Ok(call) => {
                    let note = crate::isdn::CallNote { calling: setup.calling.clone(), called: setup.called.clone(), incoming: false };
                    self.spans[s].note_call(call, note);
                    info!(span = %self.spans[s].name(), call = call.0, to = %setup.called, channel = ?self.spans[s].channel_of(call), "calling out on ISDN");
                    self.legs.insert(leg, Leg::Isdn(s, call));
                    self.isdn_legs.insert((s, call), leg);
                    if let (Some(ts), Some(c)) = (self.isdn_timeslot(s, call), self.sip.get_mut(&a)) {
                        c.media_channel = Some(ts);
                    }
                    return Ok(());
                }
                Err(gw_isdn::call::RequestError::NoChannel(_)) => {
                    info!(span = %self.spans[s].name(), "every B-channel busy");
                    last = ours(Cause::NO_CIRCUIT_AVAILABLE);
                }
                Err(e) => {
                    warn!(span = %self.spans[s].name(), ?e, "SETUP refused by the call control");
                    last = ours(Cause::TEMPORARY_FAILURE);
                }
            }
        }
        Err(last)
    }
}

fn c_channel(sip: &HashMap<LegId, SipCall>, leg: LegId) -> Option<u8> {
    sip.get(&leg).and_then(|c| c.media_channel)
}

impl Trunk {
    fn ua_accounts(&self) -> usize {
        self.registrations.len().max(1)
    }

    fn ua_first_account(&self) -> Option<String> {
        self.pilot.clone()
    }
}

fn voice_codec(c: Codec) -> VoiceCodec {
    match c {
        Codec::Pcmu => VoiceCodec::G711(Law::Ulaw),
        Codec::Pcma => VoiceCodec::G711(Law::Alaw),
        Codec::G722 => VoiceCodec::G722,
    }
}

fn trunk_down_reason(t: &Trunk) -> String {
    if t.options_down {
        format!("{} OPTIONS unanswered", t.ping_misses)
    } else {
        let mut failed: Vec<&str> = t.failed_accounts.iter().map(String::as_str).collect();
        failed.sort_unstable();
        format!("registration failed for {}", failed.join(", "))
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

    /// What a far end does with an INVITE.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Policy {
        /// 180, then 200 with an answer.
        Answer,
        /// 180 only.
        Ring,
        /// 183 with an SDP answer (early media), then nothing.
        EarlyMedia,
        /// This final status (with this Q.850 cause in Reason, if any).
        Reject(u16, Option<u8>),
        /// Never answers anything (a dead trunk).
        Silent,
    }

    /// A SIP far end: a real gw-sip user agent whose proxy is the gateway.
    struct Peer {
        addr: SocketAddr,
        ua: UserAgent,
        policy: Policy,
        events: Vec<Event>,
        /// Datagrams the gateway sent here (first lines).
        received: Vec<String>,
    }

    const GW_SIP: &str = "127.0.0.1:5999";

    impl Peer {
        fn new(addr: &str, policy: Policy) -> Peer {
            let addr: SocketAddr = addr.parse().unwrap();
            let ua = UserAgent::new(UaConfig {
                local_addr: addr,
                proxy: GW_SIP.parse().unwrap(),
                domain: "127.0.0.1".into(),
                user_agent: "peer".into(),
                accounts: vec![Account { user: "2000".into(), auth_user: "2000".into(), password: "x".into() }],
                register_expires: 0,
                register_retry_base: Duration::from_secs(1),
                register_retry_max: Duration::from_secs(4),
                timers: Default::default(),
                rng_seed: u64::from(addr.port()),
            });
            Peer { addr, ua, policy, events: Vec::new(), received: Vec::new() }
        }
    }

    struct World {
        gw: Gateway,
        lines: Vec<Arc<Mutex<FakeLine>>>,
        commands: Consumer<'static, RtCommand>,
        now: Instant,
        peers: Vec<Peer>,
        /// Datagrams to addresses that are no peer.
        strays: Vec<Transmit>,
    }

    impl World {
        /// The embedded default with caller ID `mode` and no registration.
        fn new(mode: CallerIdMode) -> World {
            let mut config = Config::default_sim();
            config.caller_id.mode = mode;
            config.sip.register_expires = 0;
            Self::with(config).start()
        }

        fn with(config: Config) -> World {
            let (rtq, ctl) = make_queues();
            let lines: Vec<_> = (0..4).map(|_| Arc::new(Mutex::new(FakeLine::default()))).collect();
            let hal = lines
                .iter()
                .enumerate()
                .map(|(k, l)| (k as u8, Box::new(FakePort(l.clone())) as Box<dyn FxsPort + Send>))
                .collect();
            let media = MediaIo::start(8, ctl.packets_out, ctl.packets_in).unwrap();
            let sip: SocketAddr = GW_SIP.parse().unwrap();
            let gw = Gateway::new(config, sip, hal, ctl.commands, media, 7);
            World { gw, lines, commands: rtq.commands, now: Instant::now(), peers: Vec::new(), strays: Vec::new() }
        }

        /// Starts the gateway (after the peers are in place).
        fn start(mut self) -> World {
            self.gw.start(self.now);
            self.pump();
            self
        }

        /// Moves datagrams between the gateway and the peers until quiet;
        /// the peers act on their INVITEs by their policy.
        fn pump(&mut self) {
            let gw_addr: SocketAddr = GW_SIP.parse().unwrap();
            loop {
                let mut moved = false;
                while let Some(t) = self.gw.poll_transmit() {
                    moved = true;
                    match self.peers.iter_mut().find(|p| p.addr == t.destination) {
                        Some(p) => {
                            p.received.push(String::from_utf8_lossy(&t.payload).lines().next().unwrap_or("").to_string());
                            if p.policy != Policy::Silent {
                                p.ua.handle_datagram(self.now, gw_addr, &t.payload);
                            }
                        }
                        None => self.strays.push(t),
                    }
                }
                for k in 0..self.peers.len() {
                    while let Some(e) = self.peers[k].ua.poll_event() {
                        let p = &mut self.peers[k];
                        if let Event::IncomingCall { call, offer, .. } = &e {
                            match p.policy {
                                Policy::Answer => {
                                    let _ = p.ua.ringing(self.now, *call);
                                    let (answer, _) = sdp::answer(offer.as_ref().unwrap(), p.addr.ip(), 7078, &[Codec::Pcmu], 1).unwrap();
                                    p.ua.answer(self.now, *call, answer).unwrap();
                                }
                                Policy::Ring => {
                                    let _ = p.ua.ringing(self.now, *call);
                                }
                                Policy::EarlyMedia => {
                                    let (answer, _) = sdp::answer(offer.as_ref().unwrap(), p.addr.ip(), 7080, &[Codec::Pcmu], 1).unwrap();
                                    p.ua.progress(self.now, *call, &answer).unwrap();
                                }
                                Policy::Reject(status, q850) => {
                                    if let Some(q) = q850 {
                                        p.ua.set_cause(*call, q);
                                    }
                                    p.ua.reject(self.now, *call, status).unwrap();
                                }
                                Policy::Silent => {}
                            }
                        }
                        p.events.push(e);
                    }
                    while let Some(t) = self.peers[k].ua.poll_transmit() {
                        moved = true;
                        let from = self.peers[k].addr;
                        self.gw.handle_datagram(self.now, from, &t.payload);
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        fn advance(&mut self, ms: u64) {
            let end = self.now + Duration::from_millis(ms);
            loop {
                self.pump();
                let next = self.peers.iter().filter_map(|p| p.ua.poll_timeout()).chain(self.gw.poll_timeout()).min();
                let Some(t) = next.filter(|&t| t <= end) else { break };
                self.now = t.max(self.now);
                self.gw.handle_timeout(self.now);
                for p in &mut self.peers {
                    p.ua.handle_timeout(self.now);
                }
            }
            self.now = end;
            self.gw.handle_port_events(self.now);
            self.pump();
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

    /// `test port N ring`: an idle port rings without a call until the
    /// time is up; lifting the handset stops it and gives dial tone; a port
    /// in use or a port that does not exist is refused.
    #[test]
    fn a_test_ring_rings_an_idle_port_until_answered_or_the_time_is_up() {
        let mut w = World::new(CallerIdMode::Off);
        w.gw.test_ring(w.now, 1, 3).unwrap();
        assert!(w.ringing(1));
        w.advance(2_900);
        assert!(w.ringing(1), "still within the 3 s");
        w.advance(200);
        assert!(!w.ringing(1), "the time is up");
        assert_eq!(w.gw.switch.calls().count(), 0, "no call");
        // Answered: ringing stops, the phone gets dial tone.
        w.gw.test_ring(w.now, 2, 30).unwrap();
        assert!(w.ringing(2));
        w.hook(2, true);
        assert!(!w.ringing(2));
        assert_eq!(w.gw.port_status()[1].state, "DialTone");
        assert!(w.gw.test_ring(w.now, 2, 5).unwrap_err().contains("in use"));
        assert!(w.gw.test_ring(w.now, 9, 5).unwrap_err().contains("no FXS port 9"));
        // The phone hangs up again: nothing rings afterwards.
        w.hook(2, false);
        w.advance(40_000);
        assert!(!w.ringing(2));
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
    fn a_committed_port_number_applies_live_while_a_call_is_up_on_other_ports() {
        let mut w = World::new(CallerIdMode::Off);
        // Ports 1 and 2 talk.
        w.hook(1, true);
        w.dial(1, "1002");
        w.advance(100);
        w.hook(2, true);
        w.commands();
        assert_eq!(w.gw.port_status()[0].call.as_deref(), Some("to 1002 (local, port 2)"));
        // Port 4 becomes 1444; a restart-only change is refused whole.
        let mut bad = w.gw.config().clone();
        bad.fxs[3].number = "1444".into();
        bad.system.country = "DE".into();
        let why = w.gw.apply(w.now, bad).unwrap_err();
        assert_eq!(why.len(), 1, "{why:?}");
        assert_eq!(w.gw.port_status()[3].number, "1004", "a refused change changes nothing");
        let mut new = w.gw.config().clone();
        new.fxs[3].number = "1444".into();
        assert_eq!(w.gw.apply(w.now, new).unwrap(), vec!["FXS 4".to_string()]);
        w.advance(100);
        // The call goes on: nothing torn down or re-routed.
        let cmds = w.commands();
        assert!(listens(&cmds).is_empty(), "the call's cross-connect untouched: {cmds:?}");
        assert_eq!(w.gw.port_status()[0].call.as_deref(), Some("to 1002 (local, port 2)"));
        assert_eq!(w.gw.port_status()[3].number, "1444");
        // The new number rings port 4; the old one no longer exists.
        w.hook(3, true);
        w.dial(3, "1444");
        w.advance(100);
        assert!(w.ringing(4), "the new number rings port 4");
        w.hook(3, false);
        w.advance(100);
        w.hook(3, true);
        w.dial(3, "1004");
        w.advance(100);
        assert!(!w.ringing(4), "the old number no longer rings it");
        w.commands();
        // The first call still ends normally.
        w.hook(2, false);
        let cmds = w.commands();
        let mut l = listens(&cmds);
        l.sort();
        l.dedup();
        assert_eq!(l, vec![(0, None), (1, None)]);
    }

    #[test]
    fn every_call_leaves_a_record_with_both_legs_the_cause_and_who_released() {
        let mut w = World::new(CallerIdMode::Off);
        w.hook(1, true);
        w.dial(1, "1002");
        w.advance(100);
        w.hook(2, true);
        w.advance(2000);
        w.hook(1, false);
        let cdrs: Vec<_> = std::iter::from_fn(|| w.gw.poll_cdr()).collect();
        let [c] = &cdrs[..] else { panic!("{cdrs:?}") };
        assert_eq!((c.id, c.from_leg.as_str(), c.to_leg.as_deref()), (1, "FXS 1", Some("FXS 2")));
        assert_eq!((c.source.as_str(), c.calling.as_deref(), c.called.as_str()), ("phones", Some("1001"), "1002"));
        assert_eq!((c.q850, c.sip_status, c.released_by.as_str()), (16, 200, "caller"));
        assert_eq!(c.rule.as_deref(), Some("route[0] \"local\""));
        assert!(c.talk_s >= 2.0 && c.answer.is_some(), "{c:?}");
        w.hook(2, false);
        // A port that is busy: the attempt and its cause are in the record.
        w.hook(3, true);
        w.hook(4, true);
        w.dial(3, "1004");
        w.advance(100);
        w.hook(3, false);
        let cdrs: Vec<_> = std::iter::from_fn(|| w.gw.poll_cdr()).collect();
        let [c] = &cdrs[..] else { panic!("{cdrs:?}") };
        assert_eq!((c.id, c.q850, c.sip_status, c.to_leg.as_deref(), c.answer.as_deref()), (2, 17, 486, None, None));
        assert_eq!(c.tried, ["the number's owner -> 17 user busy"]);
        assert_eq!(c.released_by, "called side");
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
        let mut w = World::with(config).start();
        // Nobody answers the REGISTERs: after timer F (32 s) the account is down.
        w.advance(33_000);
        assert!(w.gw.registration_status(w.now).iter().any(|r| r.user == "1001" && r.state.starts_with("failed")));
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

    /// The embedded default without its routing table.
    fn base_toml() -> String {
        let d = crate::config::DEFAULT_TOML;
        d[..d.find("# ---- Call routing").unwrap()].to_string()
    }

    /// Two trunks, `default` on peer A and `b` on peer B, and a table that
    /// sends 2xxx to A first, then B.
    fn two_trunks(a: Policy, b: Policy, extra: &str) -> World {
        let text = format!(
            r#"{base}
[[trunk]]
name = "b"
proxy = "127.0.0.1:7002"
{extra}

[[group]]
name = "phones"
fxs = [1, 2, 3, 4]

[[route]]
name = "local"
from = ["phones", "default", "b"]
called = ["1xxx"]
to = [{{ owner = true }}]

[[route]]
name = "out"
from = ["phones"]
called = ["2xxx"]
to = [{{ trunk = "default", setup_timeout_ms = 1000 }}, {{ trunk = "b" }}]
"#,
            base = base_toml()
                .replace("proxy = \"127.0.0.1:5060\"", "proxy = \"127.0.0.1:7001\"")
                .replace("register_expires = 300", "register_expires = 0")
                .replace("mode = \"auto\"", "mode = \"off\""),
        );
        let config = Config::from_toml(&text, 4).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut w = World::with(config);
        w.peers.push(Peer::new("127.0.0.1:7001", a));
        w.peers.push(Peer::new("127.0.0.1:7002", b));
        w.start()
    }

    fn invites(p: &Peer) -> usize {
        p.received.iter().filter(|l| l.starts_with("INVITE ")).count()
    }

    #[test]
    fn an_fxs_call_goes_out_on_the_first_trunk_and_connects_media() {
        let mut w = two_trunks(Policy::Answer, Policy::Answer, "");
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(100);
        assert_eq!((invites(&w.peers[0]), invites(&w.peers[1])), (1, 0));
        let cmds = w.commands();
        assert!(cmds.iter().any(|c| matches!(c, RtCommand::StartMedia { channel: 0, .. })), "{cmds:?}");
        let st = w.gw.port_status();
        assert_eq!(st[0].call.as_deref(), Some("to 2000 (trunk default)"));
        let route = st[0].route.as_deref().unwrap();
        assert!(route.contains("rule 1 \"out\"") && route.contains("answered"), "{route}");
        // The phone hangs up: a BYE with Reason cause 16 reaches the far end.
        w.hook(1, false);
        let far = w.peers[0].events.iter().find_map(|e| match e {
            Event::Ended { call, .. } => Some(*call),
            _ => None,
        });
        assert_eq!(w.peers[0].ua.remote_reason(far.expect("far end saw the BYE")), Some("Q.850;cause=16"));
        assert!(w.gw.trunk_status().iter().all(|t| t.active_calls == 0));
    }

    #[test]
    fn failover_to_the_next_trunk_on_503_but_not_on_busy() {
        let us = gw_dsp::tones::profile("US").unwrap();
        let mut w = two_trunks(Policy::Reject(503, None), Policy::Ring, "");
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(100);
        assert_eq!((invites(&w.peers[0]), invites(&w.peers[1])), (1, 1), "503 (cause 41) fails over");
        assert!(tone_on(&w.commands(), 0, &us.ringback));
        let route = w.gw.port_status()[0].route.clone().unwrap();
        assert!(route.contains("trunk \"default\" -> 41") && route.contains("trunk \"b\" (trying)"), "{route}");
        w.hook(1, false);

        // 486 with Reason cause 17: busy tone, no failover.
        let mut w = two_trunks(Policy::Reject(486, Some(17)), Policy::Ring, "");
        w.hook(2, true);
        w.dial(2, "2001");
        w.advance(100);
        assert_eq!((invites(&w.peers[0]), invites(&w.peers[1])), (1, 0));
        assert!(tone_on(&w.commands(), 1, &us.busy), "busy tone for 486");

        // A Reason header wins over the status: 480 with cause 34 fails over.
        let mut w = two_trunks(Policy::Reject(480, Some(34)), Policy::Ring, "");
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(100);
        assert_eq!(invites(&w.peers[1]), 1, "Reason: Q.850;cause=34 fails over");
    }

    #[test]
    fn a_silent_trunk_is_failed_over_after_its_setup_timeout_not_timer_b() {
        let us = gw_dsp::tones::profile("US").unwrap();
        let mut w = two_trunks(Policy::Silent, Policy::Ring, "");
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(800); // the INVITE left 100 ms ago
        assert_eq!(invites(&w.peers[1]), 0, "not before the 1 s setup timeout");
        w.commands();
        w.advance(200);
        assert_eq!(invites(&w.peers[1]), 1, "trunk b tried 1 s after the dead one");
        assert!(tone_on(&w.commands(), 0, &us.ringback));
        assert_eq!(w.gw.counters().setup_timeouts, 1);
        // The abandoned INVITE is cancelled once... it never answers: nothing rings twice.
        w.advance(40_000);
        assert_eq!(w.gw.port_status()[0].state, "Ringback", "{:?} {:?}", w.gw.port_status()[0].route, w.peers[1].events);

        // Both silent: reorder after the two setup timeouts (1 + 3 s), never 32 s of silence.
        let mut w = two_trunks(Policy::Silent, Policy::Silent, "");
        w.hook(1, true);
        w.dial(1, "2000");
        w.commands();
        w.advance(4_100);
        assert!(tone_on(&w.commands(), 0, &us.reorder), "reorder once every destination timed out");
    }

    #[test]
    fn a_trunk_down_by_options_is_skipped_at_once() {
        let mut w = two_trunks(Policy::Answer, Policy::Answer, "");
        // Trunk "default" pings every 5 s... here only "b" pings (default interval 30 s,
        // 2 misses): make b silent and let its pings go unanswered.
        w.peers[1].policy = Policy::Silent;
        w.advance(62_500);
        let b = w.gw.trunk_status().into_iter().find(|t| t.name == "b").unwrap();
        assert!(b.state.starts_with("down: 2 OPTIONS unanswered"), "{}", b.state);
        // Route 2xxx to b first now: a call skips it without an INVITE.
        w.peers[0].policy = Policy::Reject(503, None);
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(100);
        assert_eq!(invites(&w.peers[1]), 0, "no INVITE to a trunk that is down");
        let route = w.gw.port_status()[0].route.clone().unwrap();
        assert!(route.contains("trunk \"b\" -> 38 network out of order (trunk down)"), "{route}");
        assert_eq!(w.gw.counters().trunk_down, 1);
        // b answers again: up after the next ping (every 5 s while down).
        w.hook(1, false);
        w.peers[1].policy = Policy::Answer;
        w.advance(5_100);
        let b = w.gw.trunk_status().into_iter().find(|t| t.name == "b").unwrap();
        assert_eq!(b.state, "up");
    }

    /// An INVITE as a SIP peer would send it, from `from`, for `to`.
    fn invite_bytes(from: &str, to: &str, branch: &str) -> Vec<u8> {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        format!(
            "INVITE sip:{to}@127.0.0.1:5999 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:666@{from}>;tag=a{branch}\r\nTo: <sip:{to}@127.0.0.1>\r\nCall-ID: {branch}@x\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:666@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes()
    }

    #[test]
    fn an_invite_from_an_address_of_no_trunk_gets_403_and_rings_nothing() {
        let mut w = two_trunks(Policy::Answer, Policy::Answer, "");
        for (k, number) in ["1001", "1999", "2000"].iter().enumerate() {
            w.gw.handle_datagram(w.now, "127.0.0.9:5060".parse().unwrap(), &invite_bytes("127.0.0.9:5060", number, &k.to_string()));
            w.pump();
        }
        assert!(!w.ringing(1));
        // The same answer for a known and an unknown number: nothing to enumerate.
        let answers: Vec<String> =
            w.strays.iter().map(|t| String::from_utf8_lossy(&t.payload).lines().next().unwrap().to_string()).collect();
        assert_eq!(answers, vec!["SIP/2.0 403 Forbidden"; 3]);
        assert!(w.strays.iter().all(|t| t.destination == "127.0.0.9:5060".parse().unwrap()));
        assert_eq!(w.gw.counters().untrusted, 3);
        // The same INVITE from the trunk's address rings port 1.
        w.gw.handle_datagram(w.now, "127.0.0.1:7001".parse().unwrap(), &invite_bytes("127.0.0.1:7001", "1001", "t"));
        w.pump();
        assert!(w.ringing(1));
    }

    #[test]
    fn a_trunk_reaches_only_what_the_table_lets_it() {
        let mut w = two_trunks(Policy::Answer, Policy::Answer, "");
        // From trunk b to a 2xxx number (trunk to trunk): no rule, 404; no INVITE to A.
        w.gw.handle_datagram(w.now, "127.0.0.1:7002".parse().unwrap(), &invite_bytes("127.0.0.1:7002", "2000", "tt"));
        w.pump();
        let b = &w.peers[1];
        assert!(b.received.iter().any(|l| l == "SIP/2.0 404 Not Found"), "{:?}", b.received);
        assert_eq!(invites(&w.peers[0]), 0);
        assert!((1..=4).all(|p| !w.ringing(p)));
    }

    #[test]
    fn the_rules_call_limit_answers_503_to_the_call_beyond_it() {
        let text = base_toml().replace("register_expires = 300", "register_expires = 0")
            + r#"
[[group]]
name = "phones"
fxs = [1, 2, 3, 4]

[[route]]
from = ["default"]
called = ["1xxx"]
max_calls = 1
to = [{ owner = true }]
"#;
        let config = Config::from_toml(&text, 4).unwrap();
        let mut w = World::with(config);
        w.peers.push(Peer::new("127.0.0.1:5060", Policy::Answer));
        let mut w = w.start();
        let proxy: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        w.gw.handle_datagram(w.now, proxy, &invite_bytes("127.0.0.1:5060", "1001", "c1"));
        w.gw.handle_datagram(w.now, proxy, &invite_bytes("127.0.0.1:5060", "1002", "c2"));
        w.pump();
        let st = w.gw.port_status();
        assert_eq!((st[0].state.as_str(), st[1].state.as_str()), ("Ringing", "Idle"));
        assert!(w.peers[0].received.iter().any(|l| l == "SIP/2.0 503 Service Unavailable"), "{:?}", w.peers[0].received);
        assert_eq!(w.gw.counters().rule_limited, 1);
    }

    #[test]
    fn a_bad_routing_table_is_refused_whole_with_the_rule_index() {
        let base = base_toml();
        let bad = [
            ("[[route]]\nfrom = [\"nowhere\"]\ncalled = [\"1xxx\"]\nto = [{ owner = true }]\n", "route[0].from"),
            (
                "[[group]]\nname = \"phones\"\nfxs = [1]\n[[route]]\nfrom = [\"phones\"]\ncalled = [\"x.\"]\nto = [{ owner = true }]\n\
                 [[route]]\nfrom = [\"phones\"]\ncalled = [\"1xxx\"]\nto = [{ trunk = \"default\" }]\n",
                "route[1]",
            ),
            ("[[group]]\nname = \"phones\"\nfxs = [9]\n", "group[0].fxs[0]"),
            ("[[trunk]]\nname = \"default\"\nproxy = \"127.0.0.1:7000\"\n", "trunk[0].name"),
            ("[[trunk]]\nname = \"x\"\nproxy = \"127.0.0.1:7000\"\naccept_from = [\"10.0.0.0/33\"]\n", "trunk[0].accept_from[0]"),
        ];
        for (extra, field) in bad {
            let e = Config::from_toml(&format!("{base}\n{extra}"), 4).unwrap_err();
            assert!(e.field.starts_with(field), "{extra}: got {e}");
        }
    }

    #[test]
    fn early_media_replaces_the_local_ringback() {
        let us = gw_dsp::tones::profile("US").unwrap();
        let mut w = two_trunks(Policy::EarlyMedia, Policy::Answer, "");
        w.hook(1, true);
        w.commands();
        w.dial(1, "2000");
        w.advance(100);
        let cmds = w.commands();
        assert!(!tone_on(&cmds, 0, &us.ringback), "no local ringback over early media: {cmds:?}");
        assert!(cmds.iter().any(|c| matches!(c, RtCommand::StartMedia { channel: 0, .. })), "{cmds:?}");
        assert_eq!(w.gw.port_status()[0].state, "Ringback");
        // The setup timer stopped: no failover to b while the announcement plays.
        w.advance(5_000);
        assert_eq!(invites(&w.peers[1]), 0);
    }

    #[test]
    fn a_reinvite_for_hold_is_shown_and_resume_clears_it() {
        let mut w = two_trunks(Policy::Answer, Policy::Answer, "");
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(100);
        assert_eq!(w.gw.port_status()[0].state, "Connected");
        let (t, handle) = w.gw.sip.values().next().map(|c| (c.trunk, c.handle)).unwrap();
        let mut offer = sdp::make_offer(w.peers[0].addr.ip(), 7090, &[Codec::Pcmu], None, 5);
        offer.media[0].direction = sdp::Direction::SendOnly;
        let now = w.now;
        w.gw.apply_ua_event(now, t, Event::RemoteOffer { call: handle, offer: offer.clone() });
        assert_eq!(w.gw.port_status()[0].call.as_deref(), Some("to 2000 (trunk default, on hold)"));
        offer.media[0].direction = sdp::Direction::SendRecv;
        w.gw.apply_ua_event(now, t, Event::RemoteOffer { call: handle, offer });
        assert_eq!(w.gw.port_status()[0].call.as_deref(), Some("to 2000 (trunk default)"));
        // An offer with nothing we can use changes nothing.
        let useless = sdp::make_offer(w.peers[0].addr.ip(), 7092, &[Codec::G722], None, 6);
        w.gw.apply_ua_event(now, t, Event::RemoteOffer { call: handle, offer: useless });
        assert_eq!(w.gw.port_status()[0].state, "Connected");
    }

    #[test]
    fn a_reinvite_moving_the_media_lets_the_session_take_the_new_stream() {
        // The rt session never follows another SSRC on its own (an injected
        // stream must not take the call over): signalling tells it to.
        let mut w = two_trunks(Policy::Answer, Policy::Answer, "");
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(100);
        let cmds = w.commands();
        assert!(!cmds.iter().any(|c| matches!(c, RtCommand::AcceptNewSource { .. })), "{cmds:?}");
        let (t, handle) = w.gw.sip.values().next().map(|c| (c.trunk, c.handle)).unwrap();
        let offer = sdp::make_offer(w.peers[0].addr.ip(), 7094, &[Codec::Pcmu], None, 7);
        let now = w.now;
        w.gw.apply_ua_event(now, t, Event::RemoteOffer { call: handle, offer });
        let cmds = w.commands();
        assert!(cmds.iter().any(|c| matches!(c, RtCommand::AcceptNewSource { channel: 0 })), "{cmds:?}");
    }

    #[test]
    fn an_offer_without_a_common_codec_gets_488_and_rings_nothing() {
        let mut w = two_trunks(Policy::Answer, Policy::Answer, "");
        let text = String::from_utf8(invite_bytes("127.0.0.1:7001", "1001", "g")).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let body = body.replace("RTP/AVP 0\r\na=rtpmap:0 PCMU/8000", "RTP/AVP 9\r\na=rtpmap:9 G722/8000");
        let bytes = format!("{}\r\n\r\n{body}", set_length(head, body.len()));
        w.gw.handle_datagram(w.now, "127.0.0.1:7001".parse().unwrap(), bytes.as_bytes());
        w.pump();
        assert!(w.peers[0].received.iter().any(|l| l == "SIP/2.0 488 Not Acceptable Here"), "{:?}", w.peers[0].received);
        assert_eq!(w.gw.port_status()[0].state, "Idle");
    }

    fn set_length(msg: &str, len: usize) -> String {
        msg.lines()
            .map(|l| if l.starts_with("Content-Length:") { format!("Content-Length: {len}") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    #[test]
    fn emergency_numbers_are_routed_by_the_implicit_emergency_rule() {
        // 911 is the US emergency number; no rule of the table names it.
        let mut w = two_trunks(Policy::Ring, Policy::Ring, "");
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(100);
        w.hook(2, true);
        w.dial(2, "911");
        w.advance(100);
        assert_eq!(invites(&w.peers[0]), 2, "911 placed beside the call in progress");
        let route = w.gw.port_status()[1].route.clone().unwrap();
        assert!(route.contains("\"emergency\" 911"), "{route}");
        // `[emergency] numbers = []`: no emergency rule; 911 is an ordinary (unroutable here) number.
        let text = base_toml().replace("register_expires = 300", "register_expires = 0") + "\n[emergency]\nnumbers = []\n";
        let c = Config::from_toml(&text, 4).unwrap();
        assert!(c.route_table().unwrap().0.lookup("phones", "911", None) != gw_call::Lookup::NoRoute);
        assert!(c.emergency_route(&c.legacy_routes().0, &c.trunk_names()).is_none());
        let uk = base_toml().replace("country = \"US\"", "country = \"UK\"");
        let c = Config::from_toml(&uk, 4).unwrap();
        assert_eq!(c.emergency_numbers(), vec!["999".to_string(), "112".to_string()]);
        let e = Config::from_toml(&(base_toml() + "\n[emergency]\nnumbers = [\"9-1-1\"]\n"), 4).unwrap_err();
        assert_eq!(e.field, "emergency.numbers[0]");
    }

    #[test]
    fn a_rule_lets_a_trunk_reach_another_trunk_through_two_bridge_channels() {
        let extra = r#"
[[route]]
name = "transit"
from = ["b"]
called = ["2xxx"]
to = [{ trunk = "default" }]
"#;
        let text = format!(
            "{}\n[[trunk]]\nname = \"b\"\nproxy = \"127.0.0.1:7002\"\n\n[[group]]\nname = \"phones\"\nfxs = [1, 2, 3, 4]\n{extra}",
            base_toml().replace("proxy = \"127.0.0.1:5060\"", "proxy = \"127.0.0.1:7001\"").replace("register_expires = 300", "register_expires = 0")
        );
        let config = Config::from_toml(&text, 4).unwrap_or_else(|e| panic!("{e}"));
        let mut w = World::with(config);
        w.gw.set_bridge_channels(4, 1);
        w.peers.push(Peer::new("127.0.0.1:7001", Policy::Answer));
        w.peers.push(Peer::new("127.0.0.1:7002", Policy::Answer));
        let mut w = w.start();
        w.gw.handle_datagram(w.now, "127.0.0.1:7002".parse().unwrap(), &invite_bytes("127.0.0.1:7002", "2000", "x1"));
        w.pump();
        assert_eq!(invites(&w.peers[0]), 1, "the call went on to trunk default");
        assert!(w.peers[1].received.iter().any(|l| l == "SIP/2.0 200 OK"), "{:?}", w.peers[1].received);
        let cmds = w.commands();
        let mut l = listens(&cmds);
        l.sort();
        assert_eq!(l, vec![(4, Some(5)), (5, Some(4))]);
        let started: Vec<u8> = cmds
            .iter()
            .filter_map(|c| match c {
                RtCommand::StartMedia { channel, .. } => Some(*channel),
                _ => None,
            })
            .collect();
        assert_eq!(started.len(), 2, "{cmds:?}");
        assert!(started.contains(&4) && started.contains(&5));
        // Only one bridge: a second transit call is refused with 34 (503).
        w.gw.handle_datagram(w.now, "127.0.0.1:7002".parse().unwrap(), &invite_bytes("127.0.0.1:7002", "2001", "x2"));
        w.pump();
        assert!(w.peers[1].received.iter().any(|l| l == "SIP/2.0 503 Service Unavailable"), "{:?}", w.peers[1].received);
        // The far end hangs up: both legs end and the bridge is free again.
        let far = w.peers[0].events.iter().find_map(|e| match e {
            Event::IncomingCall { call, .. } => Some(*call),
            _ => None,
        });
        let now = w.now;
        w.peers[0].ua.hangup(now, far.unwrap()).unwrap();
        // Our 200 to the injected INVITE is never ACKed: the BYE waits for the 2xx to give up (RFC 3261 15).
        w.advance(33_000);
        assert!(w.peers[1].received.iter().any(|l| l.starts_with("BYE ")), "{:?}", w.peers[1].received);
        assert_eq!(w.gw.bridges.len(), 1);
        assert!(w.gw.sip.is_empty() && w.gw.trunk_status().iter().all(|t| t.active_calls == 0));
    }

    #[test]
    fn a_trunks_calls_per_minute_and_simultaneous_call_limits_trip_and_recover() {
        let mut w = two_trunks(Policy::Reject(503, None), Policy::Ring, "limits = { calls_per_minute = 2 }");
        for port in 1..=3 {
            w.hook(port, true);
            w.dial(port, "2000");
            w.advance(100);
        }
        assert_eq!(invites(&w.peers[1]), 2, "the third call in the minute is refused by trunk b");
        let b = w.gw.trunk_status().into_iter().find(|t| t.name == "b").unwrap();
        assert_eq!(b.counters.limited, 1);
        assert!(w.gw.port_status()[2].route.as_deref().unwrap().contains("42 switching equipment congestion"), "{:?}", w.gw.port_status()[2].route);
        for port in 1..=3 {
            w.hook(port, false);
        }
        w.advance(60_000);
        w.hook(4, true);
        w.dial(4, "2000");
        w.advance(100);
        assert_eq!(invites(&w.peers[1]), 3, "a minute later the trunk takes calls again");

        let mut w = two_trunks(Policy::Reject(503, None), Policy::Ring, "limits = { max_calls = 1 }");
        w.hook(1, true);
        w.dial(1, "2000");
        w.advance(100);
        w.hook(2, true);
        w.dial(2, "2001");
        w.advance(100);
        assert_eq!(invites(&w.peers[1]), 1, "one call at a time on trunk b");
        w.hook(1, false);
        w.hook(2, false);
        w.hook(2, true);
        w.dial(2, "2001");
        w.advance(100);
        assert_eq!(invites(&w.peers[1]), 2, "free again once the first call ended");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Hook(usize, bool),
        Dial(usize, &'static str),
        Wait(u64),
        Policy(usize, Policy),
        FarHangup(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let policy = prop_oneof![
            Just(Policy::Answer),
            Just(Policy::Ring),
            Just(Policy::EarlyMedia),
            Just(Policy::Silent),
            Just(Policy::Reject(486, Some(17))),
            Just(Policy::Reject(503, None)),
        ];
        prop_oneof![
            (1usize..=4, any::<bool>()).prop_map(|(p, off)| Op::Hook(p, off)),
            (1usize..=4, proptest::sample::select(vec!["1001", "1002", "1003", "1004", "2000", "2001", "911", "5"]))
                .prop_map(|(p, n)| Op::Dial(p, n)),
            proptest::sample::select(vec![10u64, 500, 3_000, 10_000]).prop_map(Op::Wait),
            (0usize..2, policy).prop_map(|(k, p)| Op::Policy(k, p)),
            (0usize..2).prop_map(Op::FarHangup),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]
        /// Whatever the phones and the far ends do, once the phones hang up and
        /// time passes, nothing is left: no call in the switch, no SIP leg, no
        /// port held, no trunk slot or bridge taken.
        #[test]
        fn no_sequence_of_events_leaves_a_call_half_up(ops in proptest::collection::vec(op(), 1..40)) {
            let mut w = two_trunks(Policy::Answer, Policy::Ring, "");
            for o in ops {
                match o {
                    Op::Hook(p, off) => w.hook(p, off),
                    Op::Dial(p, n) => w.dial(p, n),
                    Op::Wait(ms) => w.advance(ms),
                    Op::Policy(k, p) => w.peers[k].policy = p,
                    Op::FarHangup(k) => {
                        let calls: Vec<CallHandle> = w.peers[k].events.iter().filter_map(|e| match e {
                            Event::IncomingCall { call, .. } => Some(*call),
                            _ => None,
                        }).collect();
                        let now = w.now;
                        for c in calls {
                            let _ = w.peers[k].ua.hangup(now, c);
                        }
                        w.pump();
                    }
                }
            }
            for k in 0..2 {
                w.peers[k].policy = Policy::Answer;
            }
            for p in 1..=4 {
                w.hook(p, false);
            }
            w.advance(200_000);
            proptest::prop_assert_eq!(w.gw.switch.calls().count(), 0, "calls left: {:?}", w.gw.switch.calls().map(|c| c.describe()).collect::<Vec<_>>());
            proptest::prop_assert!(w.gw.sip.is_empty(), "SIP legs left: {}", w.gw.sip.len());
            proptest::prop_assert!(w.gw.ports.iter().all(|p| p.leg.is_none()), "a port still holds a leg");
            proptest::prop_assert!(w.gw.trunk_status().iter().all(|t| t.active_calls == 0), "{:?}", w.gw.trunk_status());
            proptest::prop_assert!(w.gw.port_status().iter().all(|p| p.state == "Idle"), "{:?}", w.gw.port_status().iter().map(|p| p.state.clone()).collect::<Vec<_>>());
        }
    }
    // ---- ISDN legs ------------------------------------------------------

    use gw_hal::isdn::{Alarms, DChannel, DChannelError, DChannelStats, L1State, L1Status, SpanInfo, SpanKind};

    /// A D channel between the gateway's span and a test's own gw-isdn span.
    #[derive(Default)]
    struct DLine {
        l1: Option<L1Status>,
        l1_events: VecDeque<L1Status>,
        to_gw: VecDeque<Vec<u8>>,
        from_gw: VecDeque<Vec<u8>>,
    }

    #[derive(Clone, Default)]
    struct FakeD(Arc<Mutex<DLine>>);

    impl DChannel for FakeD {
        fn kind(&self) -> SpanKind {
            SpanKind::Bri
        }
        fn poll_frame(&mut self) -> Option<Vec<u8>> {
            self.0.lock().unwrap().to_gw.pop_front()
        }
        fn send_frame(&mut self, frame: &[u8]) -> Result<(), DChannelError> {
            let mut l = self.0.lock().unwrap();
            if !l.l1.is_some_and(|s| s.is_up()) {
                return Err(DChannelError::L1Down);
            }
            l.from_gw.push_back(frame.to_vec());
            Ok(())
        }
        fn poll_l1_event(&mut self) -> Option<L1Status> {
            self.0.lock().unwrap().l1_events.pop_front()
        }
        fn l1_status(&self) -> L1Status {
            self.0.lock().unwrap().l1.unwrap_or(L1Status::DOWN)
        }
        fn request_l1(&mut self, _activate: bool) -> Result<(), DChannelError> {
            Ok(())
        }
        fn set_side(&mut self, _side: gw_hal::isdn::Side) -> Result<(), DChannelError> {
            Ok(())
        }
        fn stats(&self) -> DChannelStats {
            DChannelStats::default()
        }
    }

    const L1_UP: L1Status = L1Status { state: L1State::Activated, alarms: Alarms { los: false, ais: false, rai: false } };

    /// A gateway with a BRI (TE, group `isdn`, B1 on rt channel 2, B2 on 3)
    /// whose far end is a gw-isdn network side (the carrier), trunk
    /// `default` on peer A and `b` on peer B.
    struct IsdnWorld {
        w: World,
        line: FakeD,
        carrier: gw_isdn::span::Span,
        events: Vec<gw_isdn::call::Event>,
    }

    impl IsdnWorld {
        fn new(a: Policy, b: Policy, span_extra: &str) -> IsdnWorld {
            Self::with_role("te", a, b, span_extra)
        }

        /// `role`: the gateway's side on the BRI (the carrier plays the other).
        fn with_role(role: &str, a: Policy, b: Policy, span_extra: &str) -> IsdnWorld {
            let text = format!(
                r#"{base}
[[trunk]]
name = "b"
proxy = "127.0.0.1:7002"

[[span]]
name = "carrier"
index = 0
kind = "bri"
role = "{role}"
group = "isdn"
{span_extra}

[[group]]
name = "phones"
fxs = [1, 2]

[[group]]
name = "isdn"

[[route]]
name = "isdn-in"
from = ["isdn"]
called = ["2xxx"]
to = [{{ trunk = "default" }}]

[[route]]
name = "isdn-out"
from = ["phones", "default"]
called = ["3xxx"]
to = [{{ group = "isdn" }}, {{ trunk = "b" }}]
"#,
                base = base_toml()
                    .replace("proxy = \"127.0.0.1:5060\"", "proxy = \"127.0.0.1:7001\"")
                    .replace("register_expires = 300", "register_expires = 0")
                    .replace("mode = \"auto\"", "mode = \"off\""),
            );
            let config = Config::from_toml(&text, 4).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let line = FakeD::default();
            line.0.lock().unwrap().l1 = Some(L1_UP);
            let info = SpanInfo { kind: SpanKind::Bri, label: "BRI 1".into(), b_timeslots: vec![2, 3] };
            let span = crate::isdn::Span::new(config.span[0].clone(), info, Box::new(line.clone()));
            let mut w = World::with(config);
            w.gw.add_isdn_spans(vec![span]);
            w.peers.push(Peer::new("127.0.0.1:7001", a));
            w.peers.push(Peer::new("127.0.0.1:7002", b));
            let side = if role == "nt" { gw_isdn::call::Side::User } else { gw_isdn::call::Side::Network };
            let cfg = gw_isdn::call::Config::new(side, gw_isdn::call::Interface::Bri, &gw_isdn::call::EUROISDN);
            let carrier = gw_isdn::span::Span::new(cfg, gw_isdn::span::Mode::PointToPoint, 3);
            let mut iw = IsdnWorld { w: w.start(), line, carrier, events: Vec::new() };
            iw.run(10);
            assert!(iw.w.gw.isdn_status()[0].l2_up, "layer 2 up");
            iw
        }

        /// Moves frames, datagrams and timers for `ms` of virtual time.
        fn run(&mut self, ms: u64) {
            let end = self.w.now + Duration::from_millis(ms);
            loop {
                for _ in 0..100 {
                    let now = self.w.now;
                    self.w.gw.handle_isdn(now);
                    self.w.pump();
                    let frames: Vec<Vec<u8>> = self.line.0.lock().unwrap().from_gw.drain(..).collect();
                    let mut moved = !frames.is_empty();
                    for f in frames {
                        self.carrier.handle_frame(now, &f);
                    }
                    while let Some(f) = self.carrier.poll_transmit() {
                        moved = true;
                        let mut l = self.line.0.lock().unwrap();
                        if l.l1.is_some_and(|s| s.is_up()) {
                            l.to_gw.push_back(f);
                        }
                    }
                    while let Some(e) = self.carrier.poll_event() {
                        if let gw_isdn::span::SpanEvent::Call(c) = e {
                            self.events.push(c);
                        }
                    }
                    if !moved {
                        break;
                    }
                }
                let next = self.carrier.poll_timeout().into_iter().chain(self.w.gw.poll_timeout()).min();
                match next.filter(|&t| t <= end) {
                    Some(t) => {
                        self.w.now = t.max(self.w.now);
                        let now = self.w.now;
                        self.carrier.handle_timeout(now);
                        self.w.advance(0);
                    }
                    None => break,
                }
            }
            self.w.now = end;
            self.w.advance(0);
        }

        fn call(&mut self, called: &str, calling: &str, presentation: Option<u8>) -> gw_isdn::call::CallId {
            let n = |d: &str, p| gw_isdn::q931::PartyNumber { type_of_number: 0, plan: 1, presentation: p, screening: 0, reason: None, digits: d.as_bytes().to_vec() };
            let info = gw_isdn::call::SetupInfo {
                called: Some(n(called, None)),
                calling: Some(n(calling, presentation)),
                sending_complete: true,
                ..Default::default()
            };
            let now = self.w.now;
            let id = self.carrier.request(now, |cc, now| cc.setup(now, info)).unwrap();
            self.run(50);
            id
        }

        fn released(&self, call: gw_isdn::call::CallId) -> Option<u8> {
            self.events.iter().find_map(|e| match e {
                gw_isdn::call::Event::Disconnect { call: c, cause, .. } | gw_isdn::call::Event::Released { call: c, cause, .. } if *c == call => Some(*cause),
                _ => None,
            })
        }

        /// The carrier places an overlap call (no sending complete) with `first`.
        fn overlap_call(&mut self, first: &str) -> gw_isdn::call::CallId {
            let n = gw_isdn::q931::PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: first.as_bytes().to_vec() };
            let info = gw_isdn::call::SetupInfo { called: Some(n), sending_complete: false, ..Default::default() };
            let now = self.w.now;
            let call = self.carrier.request(now, |cc, now| cc.setup(now, info)).unwrap();
            self.run(50);
            call
        }

        /// The carrier sends INFORMATION on `call`.
        fn information(&mut self, call: gw_isdn::call::CallId, d: &str, complete: bool) {
            let now = self.w.now;
            self.carrier.request(now, |cc, now| cc.information(now, call, d.as_bytes(), complete)).unwrap();
            self.run(50);
        }

        /// Overlap digits the carrier received on `call` (and whether sending complete came).
        fn digits_at_carrier(&self, call: gw_isdn::call::CallId) -> (String, bool) {
            let mut out = (String::new(), false);
            for e in &self.events {
                if let gw_isdn::call::Event::Digits { call: c, digits, complete } = e {
                    if *c == call {
                        out.0.push_str(&String::from_utf8_lossy(digits));
                        out.1 |= *complete;
                    }
                }
            }
            out
        }

        fn incoming_setups(&self) -> Vec<(gw_isdn::call::CallId, gw_isdn::call::SetupInfo)> {
            self.events
                .iter()
                .filter_map(|e| match e {
                    gw_isdn::call::Event::Setup { call, info, .. } => Some((*call, info.clone())),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn an_isdn_call_reaches_the_trunk_its_b_channel_carries_the_rtp_and_causes_cross() {
        let mut iw = IsdnWorld::new(Policy::Answer, Policy::Answer, "");
        let call = iw.call("2000", "5551234", Some(0));
        assert_eq!(invites(&iw.w.peers[0]), 1, "the INVITE went to trunk default");
        assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Connected { call: c } if *c == call)), "{:?}", iw.events);
        let ch = iw.carrier.cc.calls().find(|c| c.0 == call).and_then(|c| c.2).expect("a B-channel");
        let ts = if ch == 1 { 2 } else { 3 };
        let cmds = iw.w.commands();
        assert!(cmds.iter().any(|c| matches!(c, RtCommand::StartMedia { channel, .. } if *channel == ts)), "RTP on the B-channel's timeslot {ts}: {cmds:?}");
        let show = crate::isdn::show_isdn(&iw.w.gw.isdn_status());
        assert!(show.contains(&format!("B{ch}: call")) && show.contains("in 5551234 -> 2000 (Active)"), "{show}");
        // The carrier clears with cause 16: BYE with Reason cause 16 at the far end.
        let now = iw.w.now;
        iw.carrier.request(now, |cc, now| cc.disconnect(now, call, 16)).unwrap();
        iw.run(100);
        let far = iw.w.peers[0].events.iter().find_map(|e| match e {
            Event::Ended { call, .. } => Some(*call),
            _ => None,
        });
        assert_eq!(iw.w.peers[0].ua.remote_reason(far.expect("far end saw the BYE")), Some("Q.850;cause=16"));
        assert!(crate::isdn::show_isdn(&iw.w.gw.isdn_status()).contains(" 1:idle 2:idle"));
        assert_eq!(iw.w.gw.switch.calls().count(), 0);
    }

    /// The carrier restarts its interface (Q.931 5.5): the call on it is
    /// cleared end to end (BYE with cause 41 at the far end), its B-channel is
    /// idle again and usable, and the RESTART is acknowledged.
    #[test]
    fn a_restart_from_the_carrier_clears_its_calls_and_frees_the_channels() {
        let mut iw = IsdnWorld::new(Policy::Answer, Policy::Answer, "");
        let call = iw.call("2000", "5551234", None);
        assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Connected { call: c } if *c == call)), "{:?}", iw.events);
        let now = iw.w.now;
        iw.carrier.request(now, |cc, now| cc.restart(now, None)).unwrap();
        iw.run(200);
        assert!(
            iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::RestartAcknowledged { channel: None })),
            "the gateway acknowledged: {:?}",
            iw.events
        );
        let far = iw.w.peers[0].events.iter().find_map(|e| match e {
            Event::Ended { call, .. } => Some(*call),
            _ => None,
        });
        assert_eq!(iw.w.peers[0].ua.remote_reason(far.expect("far end saw the BYE")), Some("Q.850;cause=41"));
        assert_eq!(iw.w.gw.switch.calls().count(), 0);
        assert!(iw.w.gw.isdn_status()[0].b_channels.iter().all(|b| b.state == "idle"));
        // The span takes calls again.
        let again = iw.call("2000", "5551234", None);
        assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Connected { call: c } if *c == again)), "{:?}", iw.events);
    }

    #[test]
    fn a_busy_far_end_is_cause_17_towards_isdn_and_a_data_call_is_refused() {
        let mut iw = IsdnWorld::new(Policy::Reject(486, None), Policy::Answer, "");
        let call = iw.call("2000", "5551234", None);
        assert_eq!(iw.released(call), Some(17), "486 is user busy: {:?}", iw.events);
        // An unrestricted digital (data) SETUP never reaches SIP: cause 65.
        let info = gw_isdn::call::SetupInfo {
            bearer: Some(gw_isdn::q931::BearerCapability { coding_standard: 0, transfer_capability: 0x08, transfer_mode: 0, transfer_rate: 0x10, rate_multiplier: None, layer1: None }),
            called: Some(gw_isdn::q931::PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: b"2000".to_vec() }),
            sending_complete: true,
            ..Default::default()
        };
        let now = iw.w.now;
        let data = iw.carrier.request(now, |cc, now| cc.setup(now, info)).unwrap();
        iw.run(50);
        assert_eq!(iw.released(data), Some(65));
        assert_eq!(invites(&iw.w.peers[0]), 1, "only the speech call was offered");
        // Nothing is left busy.
        assert!(iw.w.gw.isdn_status()[0].b_channels.iter().all(|b| b.state == "idle"));
    }

    #[test]
    fn a_phone_calls_out_on_a_b_channel_then_cause_34_fails_over_and_layer_1_loss_clears_with_38() {
        let mut iw = IsdnWorld::new(Policy::Answer, Policy::Ring, "channels = [1]\nexclusive = true");
        iw.w.hook(1, true);
        iw.w.dial(1, "3000");
        iw.run(100);
        let setups = iw.incoming_setups();
        assert_eq!(setups.len(), 1, "{:?}", iw.events);
        let (call, info) = &setups[0];
        assert_eq!((info.channel, info.exclusive), (Some(1), true));
        assert_eq!(info.called.as_ref().map(|n| n.digits.clone()), Some(b"3000".to_vec()));
        let call = *call;
        let now = iw.w.now;
        iw.carrier.request(now, |cc, now| cc.alerting(now, call)).unwrap();
        iw.run(50);
        let now = iw.w.now;
        iw.carrier.request(now, |cc, now| cc.connect(now, call)).unwrap();
        iw.run(50);
        assert_eq!(iw.w.gw.port_status()[0].state, "Connected");
        assert_eq!(iw.w.gw.port_status()[0].call.as_deref(), Some("to 3000 (ISDN span carrier B1)"));
        let l = listens(&iw.w.commands());
        assert!(l.contains(&(0, Some(2))) && l.contains(&(2, Some(0))), "port 1 and B1 cross-connected: {l:?}");
        // The span's only channel is busy: the next call gets 34 and fails over to trunk b.
        iw.w.hook(2, true);
        iw.w.dial(2, "3001");
        iw.run(100);
        assert_eq!(iw.incoming_setups().len(), 1, "no second SETUP");
        assert_eq!(invites(&iw.w.peers[1]), 1, "failed over to trunk b");
        let route = iw.w.gw.port_status()[1].route.clone().unwrap();
        assert!(route.contains("group \"isdn\" -> 34"), "{route}");
        // Layer 1 goes: the call on B1 is cleared (the phone hears it), the span is down for routing.
        {
            let mut l = iw.line.0.lock().unwrap();
            let down = L1Status { state: L1State::Deactivated, alarms: Alarms { los: true, ..Alarms::default() } };
            l.l1 = Some(down);
            l.l1_events.push_back(down);
        }
        iw.run(100);
        assert_ne!(iw.w.gw.port_status()[0].state, "Connected");
        assert!(iw.w.gw.port_status()[0].route.as_deref().unwrap_or_default().contains("38"), "{:?}", iw.w.gw.port_status()[0].route);
        assert!(iw.w.gw.isdn_status()[0].b_channels.iter().all(|b| b.state != "busy"));
        iw.w.hook(1, false);
        iw.w.hook(2, false);
        iw.run(100);
        iw.w.hook(1, true);
        iw.w.dial(1, "3002");
        iw.run(100);
        assert_eq!(invites(&iw.w.peers[1]), 2, "the span is down: straight to trunk b");
        let route = iw.w.gw.port_status()[0].route.clone().unwrap();
        // Skipped by the switch without a SETUP: the span group is down.
        assert!(route.contains("group \"isdn\" -> 34 no circuit/channel available (destination unavailable)"), "{route}");
        assert_eq!(iw.incoming_setups().len(), 1, "no SETUP on a span that is down");
    }
    #[test]
    fn a_restricted_isdn_caller_is_anonymous_in_sip_and_an_anonymous_sip_caller_is_restricted_in_isdn() {
        let mut iw = IsdnWorld::new(Policy::Ring, Policy::Ring, "");
        iw.call("2000", "5551234", Some(1));
        let from = iw.w.peers[0].events.iter().find_map(|e| match e {
            Event::IncomingCall { from_user, from_display, .. } => Some((from_user.clone(), from_display.clone())),
            _ => None,
        });
        assert_eq!(from, Some(("anonymous".to_string(), None)), "the number is hidden");
        // Allowed presentation: the number is the From user.
        iw.call("2001", "5551235", Some(0));
        let users: Vec<String> = iw.w.peers[0].events.iter().filter_map(|e| match e {
            Event::IncomingCall { from_user, .. } => Some(from_user.clone()),
            _ => None,
        }).collect();
        assert_eq!(users, ["anonymous", "5551235"]);
        let calls: Vec<gw_isdn::call::CallId> = iw.carrier.cc.calls().map(|c| c.0).collect();
        for c in calls {
            let now = iw.w.now;
            iw.carrier.request(now, |cc, now| cc.disconnect(now, c, 16)).unwrap();
        }
        iw.run(100);
        // A SIP caller from anonymous: the SETUP's calling number is restricted, without digits.
        let now = iw.w.now;
        let offer = sdp::make_offer("127.0.0.1".parse().unwrap(), 7090, &[Codec::Pcmu], Some(101), 1);
        iw.w.peers[0].ua.invite_named(now, "anonymous", None, "3000", offer, None).unwrap();
        iw.run(100);
        let setups = iw.incoming_setups();
        assert_eq!(setups.len(), 1, "{:?}", iw.events);
        let calling = setups[0].1.calling.clone().expect("a calling party IE");
        assert_eq!((calling.presentation, calling.digits.len()), (Some(1), 0), "{calling:?}");
        assert_eq!(setups[0].1.called.as_ref().map(|n| n.digits.clone()), Some(b"3000".to_vec()));
    }
    #[test]
    fn asserted_identity_goes_to_and_comes_from_trusted_trunks_only() {
        // Trunk b ([[trunk]]) is trusted by default; `default` ([sip]) never is.
        let extra = "\n[[route]]\nname = \"to-b\"\nfrom = [\"isdn\"]\ncalled = [\"5xxx\"]\nto = [{ trunk = \"b\" }]\n\n[[route]]\nname = \"from-b\"\nfrom = [\"b\"]\ncalled = [\"4xxx\"]\nto = [{ group = \"isdn\" }]\n";
        let mut iw = IsdnWorld::new(Policy::Ring, Policy::Ring, extra);
        let asserted = |iw: &IsdnWorld, p: usize| -> Vec<(String, Option<AssertedIdentity>)> {
            iw.w.peers[p]
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::IncomingCall { call, from_user, .. } => Some((from_user.clone(), iw.w.peers[p].ua.asserted_identity(*call).cloned())),
                    _ => None,
                })
                .collect()
        };
        let hang_up_all = |iw: &mut IsdnWorld| {
            let calls: Vec<gw_isdn::call::CallId> = iw.carrier.cc.calls().map(|c| c.0).collect();
            for c in calls {
                let now = iw.w.now;
                iw.carrier.request(now, |cc, now| cc.disconnect(now, c, 16)).unwrap();
            }
            iw.run(500);
        };
        iw.call("5000", "5551234", Some(0));
        iw.call("5001", "5551235", Some(1));
        let id = |u: &str, p| Some(AssertedIdentity { user: u.into(), privacy_id: p });
        assert_eq!(asserted(&iw, 1), [("5551234".to_string(), id("5551234", false)), ("anonymous".to_string(), id("5551235", true))]);
        hang_up_all(&mut iw);
        iw.call("2000", "5551236", Some(1));
        assert_eq!(asserted(&iw, 0), [("anonymous".to_string(), None)], "no PAI to an untrusted trunk");
        hang_up_all(&mut iw);
        // From the trusted trunk: the asserted number, restricted, network provided.
        let now = iw.w.now;
        let offer = sdp::make_offer("127.0.0.1".parse().unwrap(), 7090, &[Codec::Pcmu], Some(101), 1);
        let pai = AssertedIdentity { user: "5559876".into(), privacy_id: true };
        iw.w.peers[1].ua.invite_asserted(now, "anonymous", None, "4000", offer.clone(), None, Some(&pai)).unwrap();
        iw.run(100);
        let setups = iw.incoming_setups();
        assert_eq!(setups.len(), 1, "{:?}", iw.events);
        let calling = setups[0].1.calling.clone().expect("a calling party IE");
        assert_eq!((calling.digits.as_slice(), calling.presentation, calling.screening), (&b"5559876"[..], Some(1), 3), "{calling:?}");
        hang_up_all(&mut iw);
        // From the untrusted one: its PAI is not believed.
        let now = iw.w.now;
        iw.w.peers[0].ua.invite_asserted(now, "anonymous", None, "3000", offer, None, Some(&pai)).unwrap();
        iw.run(100);
        let setups = iw.incoming_setups();
        assert_eq!(setups.len(), 2, "{:?}", iw.events);
        let calling = setups[1].1.calling.clone().expect("a calling party IE");
        assert_eq!((calling.digits.len(), calling.presentation), (0, Some(1)), "{calling:?}");
    }

    #[test]
    fn an_overlap_number_that_is_a_prefix_of_a_longer_rule_is_complete_after_t302() {
        // "20" is a number of its own and also the start of "2xxx".
        let extra = "\n[[route]]\nname = \"short\"\nfrom = [\"isdn\"]\ncalled = [\"exact:20\"]\nto = [{ trunk = \"default\" }]\n";
        let mut iw = IsdnWorld::new(Policy::Ring, Policy::Ring, extra);
        let call = iw.overlap_call("2");
        assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::SetupAck { call: c, .. } if *c == call)), "{:?}", iw.events);
        iw.information(call, "0", false);
        iw.run(5_000);
        assert_eq!(invites(&iw.w.peers[0]), 0, "\"20\" might go on: wait");
        assert_eq!(iw.released(call), None);
        // T302 (15 s): "20" is now complete and routed, not refused with 28.
        iw.run(15_000);
        assert_eq!(iw.released(call), None, "{:?}", iw.events);
        assert_eq!(invites(&iw.w.peers[0]), 1);
        assert!(iw.w.peers[0].received.iter().any(|l| l.starts_with("INVITE sip:20@")), "{:?}", iw.w.peers[0].received);
        assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Proceeding { call: c, .. } if *c == call)), "{:?}", iw.events);
        let hang_up = |iw: &mut IsdnWorld, call| {
            let now = iw.w.now;
            iw.carrier.request(now, |cc, now| cc.disconnect(now, call, 16)).unwrap();
            iw.run(500);
        };
        hang_up(&mut iw, call);
        // The longer number still goes through as soon as it is complete.
        let call = iw.overlap_call("20");
        iw.information(call, "01", false);
        assert_eq!(invites(&iw.w.peers[0]), 2);
        assert!(iw.w.peers[0].received.iter().any(|l| l.starts_with("INVITE sip:2001@")), "{:?}", iw.w.peers[0].received);
        hang_up(&mut iw, call);
        // Sending complete on "20": routed at once.
        let call = iw.overlap_call("2");
        iw.information(call, "0", true);
        assert_eq!(iw.released(call), None, "{:?}", iw.events);
        assert_eq!(invites(&iw.w.peers[0]), 3);
        hang_up(&mut iw, call);
        // The caller gives up while dialling: nothing is left behind.
        let call = iw.overlap_call("2");
        let now = iw.w.now;
        iw.carrier.request(now, |cc, now| cc.disconnect(now, call, 16)).unwrap();
        iw.run(20_000);
        assert_eq!(invites(&iw.w.peers[0]), 3);
        assert!(iw.w.gw.isdn_collect.is_empty(), "the held number is dropped");
        assert_eq!(iw.w.gw.switch.calls().count(), 0);
    }

    #[test]
    fn overlap_sending_an_overlap_caller_routed_on_a_prefix_goes_on_digit_by_digit() {
        // Tandem on the BRI: "0..." from the carrier goes back out on the
        // other B-channel, to an overlap span.
        let extra = "overlap = true\n\n[[route]]\nname = \"tandem\"\nfrom = [\"isdn\"]\ncalled = [\"prefix:0\"]\nto = [{ group = \"isdn\" }]\n";
        let mut iw = IsdnWorld::new(Policy::Ring, Policy::Ring, extra);
        let a = iw.overlap_call("0");
        // SETUP out with "0" and no sending complete.
        let setups: Vec<_> = iw.incoming_setups();
        assert_eq!(setups.len(), 1, "{:?}", iw.events);
        let (b, info) = setups[0].clone();
        assert_eq!(info.called.as_ref().map(|n| n.digits.clone()), Some(b"0".to_vec()));
        assert!(!info.sending_complete);
        assert!(!iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Proceeding { call, .. } if *call == a)), "the caller may go on dialling");
        // Digits before the far network's SETUP ACK wait for it.
        iw.information(a, "30", false);
        assert_eq!(iw.digits_at_carrier(b), (String::new(), false));
        let now = iw.w.now;
        iw.carrier.request(now, |cc, now| cc.setup_ack(now, b)).unwrap();
        iw.run(50);
        assert_eq!(iw.digits_at_carrier(b), ("30".into(), false));
        iw.information(a, "12", false);
        assert_eq!(iw.digits_at_carrier(b), ("3012".into(), false));
        // The caller's sending complete goes on; the far network's CALL
        // PROCEEDING becomes ours.
        iw.information(a, "", true);
        assert_eq!(iw.digits_at_carrier(b), ("3012".into(), true));
        assert!(!iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Proceeding { call, .. } if *call == a)));
        let now = iw.w.now;
        iw.carrier.request(now, |cc, now| cc.proceeding(now, b)).unwrap();
        iw.run(50);
        assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Proceeding { call, .. } if *call == a)), "{:?}", iw.events);
        assert_eq!(iw.released(a), None);
        assert_eq!(iw.released(b), None);
    }

    #[test]
    fn without_overlap_on_the_span_a_prefix_route_waits_and_goes_en_bloc() {
        let extra = "\n[[route]]\nname = \"tandem\"\nfrom = [\"isdn\"]\ncalled = [\"prefix:0\"]\nto = [{ group = \"isdn\" }]\n";
        let mut iw = IsdnWorld::new(Policy::Ring, Policy::Ring, extra);
        let a = iw.overlap_call("0");
        iw.information(a, "3012", true);
        let setups = iw.incoming_setups();
        assert_eq!(setups.len(), 1, "{:?}", iw.events);
        assert_eq!(setups[0].1.called.as_ref().map(|n| n.digits.clone()), Some(b"03012".to_vec()));
        assert!(setups[0].1.sending_complete);
    }

    #[test]
    fn overlap_digits_from_isdn_are_routed_when_the_table_matches_else_28_by_timer_or_sending_complete() {
        let mut iw = IsdnWorld::new(Policy::Ring, Policy::Ring, "");
        let overlap = |iw: &mut IsdnWorld, first: &str| {
            let n = gw_isdn::q931::PartyNumber { type_of_number: 0, plan: 1, presentation: None, screening: 0, reason: None, digits: first.as_bytes().to_vec() };
            let info = gw_isdn::call::SetupInfo { called: Some(n), sending_complete: false, ..Default::default() };
            let now = iw.w.now;
            let call = iw.carrier.request(now, |cc, now| cc.setup(now, info)).unwrap();
            iw.run(50);
            assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::SetupAck { call: c, .. } if *c == call)), "SETUP ACK: {:?}", iw.events);
            call
        };
        let digits = |iw: &mut IsdnWorld, call, d: &str, complete: bool| {
            let now = iw.w.now;
            iw.carrier.request(now, |cc, now| cc.information(now, call, d.as_bytes(), complete)).unwrap();
            iw.run(50);
        };
        // Digit by digit until "2xxx" matches: then CALL PROCEEDING and the INVITE.
        let call = overlap(&mut iw, "2");
        digits(&mut iw, call, "0", false);
        digits(&mut iw, call, "0", false);
        assert_eq!(invites(&iw.w.peers[0]), 0, "200 is not complete");
        digits(&mut iw, call, "1", false);
        assert_eq!(invites(&iw.w.peers[0]), 1);
        assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Proceeding { call: c, .. } if *c == call)), "{:?}", iw.events);
        assert_eq!(iw.w.gw.switch.call_of(iw.w.gw.isdn_legs[&(0, call)]).map(|v| v.called.to_string()), Some("2001".into()));
        // Sending complete on an incomplete number: 28.
        let call = overlap(&mut iw, "2");
        digits(&mut iw, call, "0", true);
        assert_eq!(iw.released(call), Some(28), "{:?}", iw.events);
        // No more digits: T302 ends it with 28.
        let call = overlap(&mut iw, "20");
        assert_eq!(iw.released(call), None);
        iw.run(20_000);
        assert_eq!(iw.released(call), Some(28), "{:?}", iw.events);
        assert_eq!(invites(&iw.w.peers[0]), 1, "only the complete number went out");
    }
    #[test]
    fn as_the_network_side_the_gateway_plays_ringback_to_the_pbx_until_the_answer() {
        let mut iw = IsdnWorld::with_role("nt", Policy::Ring, Policy::Answer, "");
        let call = iw.call("2000", "201", None);
        let ch = iw.carrier.cc.calls().find(|c| c.0 == call).and_then(|c| c.2).expect("a B-channel");
        let ts = if ch == 1 { 2 } else { 3 };
        let us = gw_dsp::tones::profile("US").unwrap();
        let cmds = iw.w.commands();
        assert!(tone_on(&cmds, ts, &us.ringback), "ringback on the B-channel: {cmds:?}");
        assert!(iw.events.iter().any(|e| matches!(e, gw_isdn::call::Event::Progress { description: 8, .. })), "{:?}", iw.events);
        // The far end answers: the tone stops and the RTP runs on the B-channel.
        let incoming = iw.w.peers[0].events.iter().find_map(|e| match e {
            Event::IncomingCall { call, offer, .. } => Some((*call, offer.clone())),
            _ => None,
        });
        let (far, offer) = incoming.expect("the INVITE");
        let (answer, _) = sdp::answer(offer.as_ref().unwrap(), "127.0.0.1".parse().unwrap(), 7078, &[Codec::Pcmu], 1).unwrap();
        let now = iw.w.now;
        iw.w.peers[0].ua.answer(now, far, answer).unwrap();
        iw.run(100);
        let cmds = iw.w.commands();
        assert!(cmds.iter().any(|c| matches!(c, RtCommand::StopTone { channel } if *channel == ts)), "{cmds:?}");
        assert!(cmds.iter().any(|c| matches!(c, RtCommand::StartMedia { channel, .. } if *channel == ts)), "{cmds:?}");
        assert_eq!(iw.carrier.cc.state(call), Some(gw_isdn::call::State::Active));
    }
    #[test]
    fn stopping_the_gateway_clears_its_isdn_calls_with_cause_16() {
        // A far end that never answers: only the gateway itself can clear the call.
        let mut iw = IsdnWorld::new(Policy::Silent, Policy::Silent, "");
        let call = iw.call("2000", "5551234", None);
        assert_eq!(iw.released(call), None);
        let now = iw.w.now;
        iw.w.gw.stop(now);
        iw.run(50);
        assert_eq!(iw.released(call), Some(16), "{:?}", iw.events);
    }
}
