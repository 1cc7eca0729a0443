//! The user agent the gateway drives: registration of its accounts, outgoing
//! and incoming calls, over UDP through one outbound proxy.
//!
//! Sans-IO, in the quinn-proto manner:
//! - inputs: [`UserAgent::handle_datagram`], [`UserAgent::handle_timeout`] and
//!   the call-control mutators ([`UserAgent::invite`], [`UserAgent::answer`], ...),
//!   each carrying `now`;
//! - outputs: after ANY input, drain [`UserAgent::poll_transmit`] (datagrams
//!   to send) and [`UserAgent::poll_event`] (what happened), then sleep until
//!   [`UserAgent::poll_timeout`] and call `handle_timeout`.
//!
//! Randomness (tags, branches, Call-IDs, cnonces) comes from an RNG seeded by
//! [`UaConfig::rng_seed`], so a run is reproducible.
//!
//! Sections implemented: RFC 3261 §10 (registration, refresh at
//! `expires - min(expires/2, 30 s)`), §13 (INVITE, 2xx retransmission
//! §13.3.1.4, ACK §13.2.2.4), §9 (CANCEL: sent only after a provisional,
//! §9.1; received §9.2), §15 (BYE, not before the ACK of our 2xx), §11
//! (OPTIONS), §22 (digest via [`crate::auth`]), §8.2.2/§12.2.2 error answers
//! (481, 405, 501, 500, 400), RFC 3581 (`rport` in our Via).
//!
//! Terminal events: an outgoing call ends with exactly one of
//! [`Event::Failed`] or [`Event::Ended`]; an incoming call (after
//! [`Event::IncomingCall`]) ends with exactly one [`Event::Ended`] (also after
//! our own [`UserAgent::reject`], as `Ended { reason: Rejected(status) }`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::dialog::{Dialog, DialogId};
use crate::transaction::{
    ClientEvent, ClientInviteTransaction, ClientNonInviteTransaction, ServerEvent, ServerInviteState,
    ServerInviteTransaction, ServerNonInviteTransaction, TransactionKey,
};
pub use crate::transaction::{TimerConfig, Transmit};
use crate::{auth, message, sdp, wire};

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";

/// One SIP account of the gateway.
#[derive(Clone, Debug)]
pub struct Account {
    /// AOR user part, e.g. "1001".
    pub user: String,
    /// Digest username.
    pub auth_user: String,
    pub password: String,
}

/// Configuration of a [`UserAgent`].
#[derive(Clone, Debug)]
pub struct UaConfig {
    /// Our UDP address, used in Via and Contact.
    pub local_addr: SocketAddr,
    /// Every request is sent here (registrar and outbound proxy).
    pub proxy: SocketAddr,
    /// SIP domain for AORs and the Request-URI of REGISTER.
    pub domain: String,
    pub user_agent: String,
    /// Each is registered (if `register_expires > 0`) and authenticates
    /// INVITEs from its user.
    pub accounts: Vec<Account>,
    /// 0 = do not register.
    pub register_expires: u32,
    /// First back-off after a failure; doubles per failure up to `register_retry_max`.
    pub register_retry_base: Duration,
    pub register_retry_max: Duration,
    pub timers: TimerConfig,
    pub rng_seed: u64,
}

/// A call of this UA (incoming or outgoing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u32);

/// Why a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    LocalHangup,
    RemoteBye,
    Cancelled,
    /// No ACK for our 2xx, 481 to our BYE, or timer B during a cancel.
    Timeout,
    Rejected(u16),
}

/// What the UA reports.
#[derive(Clone, Debug)]
pub enum Event {
    Registered { user: String, expires: u32 },
    RegistrationFailed { user: String, status: Option<u16>, reason: String, retry_in: Duration },
    IncomingCall {
        call: CallHandle,
        from_user: String,
        from_display: Option<String>,
        to_user: String,
        offer: Option<sdp::SessionDescription>,
    },
    /// 180/183 for our INVITE.
    Ringing { call: CallHandle },
    /// 2xx for our INVITE (the UA has sent the ACK).
    Answered { call: CallHandle, answer: Option<sdp::SessionDescription> },
    /// ACK received for our 2xx (incoming call).
    Confirmed { call: CallHandle },
    /// Final non-2xx (after auth retries) or timer B (status 408).
    Failed { call: CallHandle, status: u16, reason: String },
    Ended { call: CallHandle, reason: EndReason },
}

/// Errors of the call-control API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UaError {
    NoSuchCall,
    InvalidState(&'static str),
    NoAccount(String),
}

impl std::fmt::Display for UaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UaError::NoSuchCall => write!(f, "no such call"),
            UaError::InvalidState(s) => write!(f, "invalid state: {}", s),
            UaError::NoAccount(u) => write!(f, "no account for user {}", u),
        }
    }
}

impl std::error::Error for UaError {}

/// Registration state of one account, for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegState {
    /// Not started, or `register_expires == 0`.
    Idle,
    /// A REGISTER is in flight.
    Pending,
    Registered { until: Instant },
    Failed { status: Option<u16>, reason: String, retry_at: Instant },
    /// Unregistered by [`UserAgent::stop`].
    Unregistered,
}

/// Digest state per protection space: the nonce we answer and its count.
#[derive(Clone, Debug, Default)]
struct AuthState {
    nonce: Option<String>,
    nc: u32,
}

struct Registration {
    account: Account,
    call_id: String,
    local_tag: String,
    cseq: u32,
    state: RegState,
    /// When to send the next REGISTER (refresh or retry).
    next_at: Option<Instant>,
    failures: u32,
    /// Credentials already sent in the current attempt (with this nonce).
    auth_sent_nonce: Option<String>,
    auth_rounds: u32,
    auth: AuthState,
    expires: u32,
    unregistering: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Outgoing,
    Incoming,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    /// Outgoing: INVITE sent, no provisional yet.
    Calling,
    /// Outgoing: provisional received.
    Early,
    /// Outgoing: hangup requested, CANCEL sent or waiting for a provisional.
    Cancelling,
    /// Incoming: INVITE received, not answered.
    Offered,
    /// Incoming: 2xx sent, waiting for ACK.
    Answered,
    Confirmed,
    /// BYE sent, waiting for its response.
    Terminating,
    /// Over; kept a while to absorb retransmissions.
    Terminated,
}

struct OkRetransmit {
    payload: Vec<u8>,
    destination: SocketAddr,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

struct Call {
    dir: Direction,
    state: CallState,
    /// Our user (the account for outgoing, the called user for incoming).
    user: String,
    local_tag: String,
    dialog: Option<Dialog>,
    /// Outgoing: the INVITE in flight (for CANCEL and auth retries).
    invite: Option<rsip::Request>,
    invite_key: Option<TransactionKey>,
    auth: AuthState,
    auth_rounds: u32,
    /// Outgoing: the ACK we sent for the 2xx (re-sent on 2xx retransmission).
    ack: Option<Vec<u8>>,
    /// Incoming: server INVITE transaction and where the request came from.
    server_key: Option<TransactionKey>,
    source: Option<SocketAddr>,
    ok_retx: Option<OkRetransmit>,
    /// Incoming: send BYE as soon as the ACK arrives (§15).
    bye_after_ack: bool,
    /// Our SDP (offer or answer) and its o= version bumps, for re-INVITE answers.
    local_sdp: String,
    /// Remove the call at this time (Terminated only).
    linger_until: Option<Instant>,
}

enum Owner {
    Register(usize),
    Invite(CallHandle),
    Cancel(CallHandle),
    Bye(CallHandle),
}

enum ClientTx {
    Invite(ClientInviteTransaction),
    NonInvite(ClientNonInviteTransaction),
}

impl ClientTx {
    fn handle_response(&mut self, now: Instant, resp: rsip::Response) {
        match self {
            ClientTx::Invite(t) => t.handle_response(now, resp),
            ClientTx::NonInvite(t) => t.handle_response(now, resp),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            ClientTx::Invite(t) => t.handle_timeout(now),
            ClientTx::NonInvite(t) => t.handle_timeout(now),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientTx::Invite(t) => t.poll_timeout(),
            ClientTx::NonInvite(t) => t.poll_timeout(),
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            ClientTx::Invite(t) => t.poll_transmit(),
            ClientTx::NonInvite(t) => t.poll_transmit(),
        }
    }
    fn poll_event(&mut self) -> Option<ClientEvent> {
        match self {
            ClientTx::Invite(t) => t.poll_event(),
            ClientTx::NonInvite(t) => t.poll_event(),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            ClientTx::Invite(t) => t.is_terminated(),
            ClientTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

enum ServerTx {
    Invite(ServerInviteTransaction, Option<CallHandle>),
    NonInvite(ServerNonInviteTransaction),
}

impl ServerTx {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ServerTx::Invite(t, _) => t.poll_timeout(),
            ServerTx::NonInvite(t) => t.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            ServerTx::Invite(t, _) => t.handle_timeout(now),
            ServerTx::NonInvite(t) => t.handle_timeout(now),
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            ServerTx::Invite(t, _) => t.poll_transmit(),
            ServerTx::NonInvite(t) => t.poll_transmit(),
        }
    }
    fn is_terminated(&self) -> bool {
        match self {
            ServerTx::Invite(t, _) => t.is_terminated(),
            ServerTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

/// The gateway's SIP user agent (see the module docs for how to drive it).
pub struct UserAgent {
    config: UaConfig,
    rng: SmallRng,
    client_txs: BTreeMap<TransactionKey, (ClientTx, Owner)>,
    server_txs: BTreeMap<TransactionKey, ServerTx>,
    calls: BTreeMap<CallHandle, Call>,
    regs: Vec<Registration>,
    next_call: u32,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// `expires - min(expires/2, 30 s)`: refresh well before the binding lapses.
fn refresh_delay(expires: u32) -> Duration {
    let e = expires as u64;
    Duration::from_secs(e - (e / 2).min(30))
}

/// Bumps the `sess-version` of the o= line (RFC 3264 §8: a changed or
/// repeated offer/answer carries a higher version).
fn bump_sdp_version(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 2);
    for line in sdp.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("o=") {
            let eol = if line.ends_with("\r\n") { "\r\n" } else if line.ends_with('\n') { "\n" } else { "" };
            let mut f: Vec<String> = rest.trim_end().split(' ').map(str::to_string).collect();
            if f.len() >= 3 {
                if let Ok(v) = f[2].parse::<u64>() {
                    f[2] = (v.wrapping_add(1)).to_string();
                }
            }
            out.push_str("o=");
            out.push_str(&f.join(" "));
            out.push_str(eol);
        } else {
            out.push_str(line);
        }
    }
    out
}

fn parse_sdp(body: &[u8]) -> Option<sdp::SessionDescription> {
    if body.is_empty() {
        return None;
    }
    let s = std::str::from_utf8(body).ok()?;
    sdp::SessionDescription::parse(s).ok()
}

/// Finds the challenge headers of a 401/407 and reads the nonce and stale
/// flag from the chosen one.
fn challenge_of(resp: &rsip::Response) -> Option<(auth::Challenge, String, bool, &'static str)> {
    let code = resp.status_code.code();
    let (hname, aname) = if code == 407 {
        ("Proxy-Authenticate", "Proxy-Authorization")
    } else {
        ("WWW-Authenticate", "Authorization")
    };
    let values = wire::values(&resp.headers, hname);
    let challenge = auth::best_challenge(values.iter().map(|s| s.as_str()))?;
    let (nonce, stale) = (challenge.nonce.clone(), challenge.stale);
    Some((challenge, nonce, stale, aname))
}

impl UserAgent {
    pub fn new(config: UaConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.rng_seed);
        let mut regs = Vec::new();
        for a in &config.accounts {
            let call_id = format!("{:016x}@{}", rng.next_u64(), config.local_addr.ip());
            let local_tag = format!("{:012x}", rng.next_u64() & 0xffff_ffff_ffff);
            regs.push(Registration {
                account: a.clone(),
                call_id,
                local_tag,
                cseq: 0,
                state: RegState::Idle,
                next_at: None,
                failures: 0,
                auth_sent_nonce: None,
                auth_rounds: 0,
                auth: AuthState::default(),
                expires: config.register_expires,
                unregistering: false,
            });
        }
        UserAgent {
            config,
            rng,
            client_txs: BTreeMap::new(),
            server_txs: BTreeMap::new(),
            calls: BTreeMap::new(),
            regs,
            next_call: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- getters -------------------------------------------------------

    /// Registration state of the account `user`, `None` if there is none.
    pub fn registration_state(&self, user: &str) -> Option<RegState> {
        self.regs.iter().find(|r| r.account.user == user).map(|r| r.state.clone())
    }

    /// Number of calls the UA still tracks (including terminated ones that
    /// linger to absorb retransmissions).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    // ----- poll ----------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest time `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.client_txs.values().filter_map(|(t, _)| t.poll_timeout());
        let stx = self.server_txs.values().filter_map(|t| t.poll_timeout());
        let regs = self.regs.iter().filter_map(|r| r.next_at);
        let calls = self.calls.values().flat_map(|c| {
            [c.ok_retx.as_ref().map(|o| o.next.min(o.give_up)), c.linger_until]
        });
        tx.chain(stx).chain(regs).chain(calls.flatten()).min()
    }

    // ----- random identifiers -------------------------------------------

    fn token(&mut self) -> String {
        format!("{:016x}", self.rng.next_u64())
    }

    fn via(&mut self) -> String {
        let b = self.token();
        format!("SIP/2.0/UDP {};branch=z9hG4bK{};rport", self.config.local_addr, b)
    }

    fn contact(&self, user: &str) -> String {
        format!("<sip:{}@{}>", user, self.config.local_addr)
    }

    fn aor(&self, user: &str) -> String {
        format!("sip:{}@{}", user, self.config.domain)
    }

    // ----- registration (RFC 3261 §10) -----------------------------------

    /// Begins registration of every account (if `register_expires > 0`).
    pub fn start(&mut self, now: Instant) {
        if self.config.register_expires == 0 {
            return;
        }
        for i in 0..self.regs.len() {
            self.regs[i].unregistering = false;
            self.regs[i].expires = self.config.register_expires;
            self.send_register(now, i, None);
        }
        self.pump(now);
    }

    /// Unregisters (Expires: 0) every account that is or may be registered.
    pub fn stop(&mut self, now: Instant) {
        for i in 0..self.regs.len() {
            if matches!(self.regs[i].state, RegState::Idle | RegState::Unregistered) {
                continue;
            }
            self.regs[i].unregistering = true;
            self.regs[i].next_at = None;
            self.regs[i].auth_rounds = 0;
            self.regs[i].auth_sent_nonce = None;
            self.send_register(now, i, None);
        }
        self.pump(now);
    }

    fn send_register(&mut self, now: Instant, i: usize, authorization: Option<(&'static str, String)>) {
        // Abandon a REGISTER still in flight (a refresh overtaking a retry).
        self.client_txs.retain(|_, (_, o)| !matches!(o, Owner::Register(j) if *j == i));
        let via = self.via();
        let reg = &mut self.regs[i];
        reg.cseq += 1;
        reg.next_at = None;
        let expires = if reg.unregistering { 0 } else { reg.expires };
        let user = reg.account.user.clone();
        let aor = format!("sip:{}@{}", user, self.config.domain);
        let mut headers = rsip::Headers::default();
        headers.push(wire::hdr("Via", via));
        headers.push(wire::hdr("Max-Forwards", "70"));
        headers.push(wire::hdr("From", format!("<{}>;tag={}", aor, reg.local_tag)));
        headers.push(wire::hdr("To", format!("<{}>", aor)));
        headers.push(wire::hdr("Call-ID", reg.call_id.clone()));
        headers.push(wire::hdr("CSeq", format!("{} REGISTER", reg.cseq)));
        headers.push(wire::hdr("Contact", format!("<sip:{}@{}>", user, self.config.local_addr)));
        headers.push(wire::hdr("Expires", expires.to_string()));
        if let Some((name, value)) = authorization {
            headers.push(wire::hdr(name, value));
        }
        headers.push(wire::hdr("Allow", ALLOW));
        headers.push(wire::hdr("User-Agent", self.config.user_agent.clone()));
        headers.push(wire::hdr("Content-Length", "0"));
        if !matches!(reg.state, RegState::Registered { .. }) {
            reg.state = RegState::Pending;
        }
        let uri = rsip::Uri::try_from(format!("sip:{}", self.config.domain).as_str()).unwrap_or_default();
        let req = rsip::Request { method: rsip::Method::Register, uri, version: rsip::Version::V2, headers, body: Vec::new() };
        self.start_client_nict(now, req, Owner::Register(i));
    }

    fn start_client_nict(&mut self, now: Instant, req: rsip::Request, owner: Owner) {
        let tx = ClientNonInviteTransaction::new(now, req, self.config.proxy, self.config.timers);
        if let Some(key) = tx.key() {
            self.client_txs.insert(key, (ClientTx::NonInvite(tx), owner));
        }
    }

    fn registration_failed(&mut self, now: Instant, i: usize, status: Option<u16>, reason: String) {
        let reg = &mut self.regs[i];
        if reg.unregistering {
            reg.state = RegState::Unregistered;
            reg.next_at = None;
            return;
        }
        reg.failures = reg.failures.saturating_add(1);
        let shift = (reg.failures - 1).min(20);
        let retry_in = self
            .config
            .register_retry_base
            .saturating_mul(1u32 << shift)
            .min(self.config.register_retry_max);
        let retry_at = now + retry_in;
        reg.state = RegState::Failed { status, reason: reason.clone(), retry_at };
        reg.next_at = Some(retry_at);
        reg.auth_rounds = 0;
        reg.auth_sent_nonce = None;
        self.events.push_back(Event::RegistrationFailed { user: reg.account.user.clone(), status, reason, retry_in });
    }

    fn on_register_response(&mut self, now: Instant, i: usize, resp: rsip::Response) {
        let code = resp.status_code.code();
        if code < 200 {
            return;
        }
        if (200..300).contains(&code) {
            let reg = &mut self.regs[i];
            reg.auth_rounds = 0;
            reg.auth_sent_nonce = None;
            if reg.unregistering {
                reg.state = RegState::Unregistered;
                reg.next_at = None;
                return;
            }
            // Granted expiry: our Contact's expires param, else Expires, else ours.
            let ours = format!("sip:{}@{}", reg.account.user, self.config.local_addr);
            let from_contact = wire::list(&resp.headers, "Contact")
                .iter()
                .find(|c| wire::uri_of(c).eq_ignore_ascii_case(&ours))
                .and_then(|c| wire::param(c, "expires"))
                .and_then(|e| e.parse::<u32>().ok());
            let from_header = wire::value(&resp.headers, "Expires").and_then(|e| e.trim().parse::<u32>().ok());
            let granted = from_contact.or(from_header).unwrap_or(reg.expires);
            reg.failures = 0;
            reg.state = RegState::Registered { until: now + Duration::from_secs(granted as u64) };
            reg.next_at = Some(now + refresh_delay(granted.max(1)));
            self.events.push_back(Event::Registered { user: reg.account.user.clone(), expires: granted });
            return;
        }
        if code == 401 || code == 407 {
            let Some((challenge, nonce, stale, header_name)) = challenge_of(&resp) else {
                self.registration_failed(now, i, Some(code), "challenge without usable digest".into());
                return;
            };
            let reg = &self.regs[i];
            let wrong = reg.auth_sent_nonce.as_deref() == Some(nonce.as_str()) && !stale;
            if wrong || reg.auth_rounds >= 3 {
                self.registration_failed(now, i, Some(code), "authentication rejected".into());
                return;
            }
            let cnonce = self.token();
            let reg = &mut self.regs[i];
            reg.auth_rounds += 1;
            if reg.auth.nonce.as_deref() == Some(nonce.as_str()) {
                reg.auth.nc += 1;
            } else {
                reg.auth = AuthState { nonce: Some(nonce.clone()), nc: 1 };
            }
            reg.auth_sent_nonce = Some(nonce);
            let creds = auth::Credentials { username: reg.account.auth_user.clone(), password: reg.account.password.clone() };
            let uri = format!("sip:{}", self.config.domain);
            match auth::authorization(&challenge, &creds, "REGISTER", &uri, reg.auth.nc, &cnonce) {
                Ok(value) => self.send_register(now, i, Some((header_name, value))),
                Err(_) => self.registration_failed(now, i, Some(code), "unsupported digest challenge".into()),
            }
            return;
        }
        if code == 423 {
            // §10.2.8: Interval Too Brief; retry with Min-Expires.
            if let Some(min) = wire::value(&resp.headers, "Min-Expires").and_then(|v| v.trim().parse::<u32>().ok()) {
                if min > self.regs[i].expires {
                    self.regs[i].expires = min;
                    self.send_register(now, i, None);
                    return;
                }
            }
        }
        let reason = match &resp.status_code {
            rsip::StatusCode::Other(_, r) => r.clone(),
            other => other.to_string(),
        };
        self.registration_failed(now, i, Some(code), reason);
    }

    // ----- outgoing calls ------------------------------------------------

    /// Places a call from our account `from_user` to `to_user` at the domain.
    pub fn invite(
        &mut self,
        now: Instant,
        from_user: &str,
        to_user: &str,
        offer: sdp::SessionDescription,
    ) -> Result<CallHandle, UaError> {
        if !self.config.accounts.iter().any(|a| a.user == from_user) {
            return Err(UaError::NoAccount(from_user.to_string()));
        }
        let handle = CallHandle(self.next_call);
        self.next_call = self.next_call.wrapping_add(1).max(1);
        let call_id = format!("{}@{}", self.token(), self.config.local_addr.ip());
        let local_tag = self.token();
        let to_aor = self.aor(to_user);
        let from_aor = self.aor(from_user);
        let body = offer.to_string();
        let mut headers = rsip::Headers::default();
        headers.push(wire::hdr("Via", self.via()));
        headers.push(wire::hdr("Max-Forwards", "70"));
        headers.push(wire::hdr("From", format!("<{}>;tag={}", from_aor, local_tag)));
        headers.push(wire::hdr("To", format!("<{}>", to_aor)));
        headers.push(wire::hdr("Call-ID", call_id.clone()));
        headers.push(wire::hdr("CSeq", "1 INVITE"));
        headers.push(wire::hdr("Contact", self.contact(from_user)));
        headers.push(wire::hdr("Allow", ALLOW));
        headers.push(wire::hdr("User-Agent", self.config.user_agent.clone()));
        wire::set_body(&mut headers, body.as_bytes(), Some("application/sdp"));
        let uri = rsip::Uri::try_from(to_aor.as_str()).map_err(|_| UaError::InvalidState("bad destination user"))?;
        let req = rsip::Request { method: rsip::Method::Invite, uri, version: rsip::Version::V2, headers, body: body.into_bytes() };
        self.calls.insert(
            handle,
            Call {
                dir: Direction::Outgoing,
                state: CallState::Calling,
                user: from_user.to_string(),
                local_tag,
                dialog: None,
                invite: None,
                invite_key: None,
                auth: AuthState::default(),
                auth_rounds: 0,
                ack: None,
                server_key: None,
                source: None,
                ok_retx: None,
                bye_after_ack: false,
                local_sdp: offer.to_string(),
                linger_until: None,
            },
        );
        self.send_invite(now, handle, req);
        self.pump(now);
        Ok(handle)
    }

    fn send_invite(&mut self, now: Instant, handle: CallHandle, req: rsip::Request) {
        let tx = ClientInviteTransaction::new(now, req.clone(), self.config.proxy, self.config.timers);
        let key = tx.key();
        if let Some(call) = self.calls.get_mut(&handle) {
            call.invite = Some(req);
            call.invite_key = key.clone();
        }
        if let Some(key) = key {
            self.client_txs.insert(key, (ClientTx::Invite(tx), Owner::Invite(handle)));
        }
    }

    fn send_cancel(&mut self, now: Instant, handle: CallHandle) {
        let Some(inv) = self.calls.get(&handle).and_then(|c| c.invite.clone()) else { return };
        // §9.1: same Request-URI, Call-ID, From, To, CSeq number, top Via and Route.
        let mut headers = rsip::Headers::default();
        if let Some(v) = wire::list(&inv.headers, "Via").into_iter().next() {
            headers.push(wire::hdr("Via", v));
        }
        headers.push(wire::hdr("Max-Forwards", "70"));
        for r in wire::values(&inv.headers, "Route") {
            headers.push(wire::hdr("Route", r));
        }
        for name in ["From", "To", "Call-ID"] {
            if let Some(v) = wire::value(&inv.headers, name) {
                headers.push(wire::hdr(name, v));
            }
        }
        let n = wire::cseq(&inv.headers).map(|c| c.0).unwrap_or(1);
        headers.push(wire::hdr("CSeq", format!("{} CANCEL", n)));
        headers.push(wire::hdr("Content-Length", "0"));
        let req = rsip::Request { method: rsip::Method::Cancel, uri: inv.uri.clone(), version: rsip::Version::V2, headers, body: Vec::new() };
        self.start_client_nict(now, req, Owner::Cancel(handle));
    }

    fn send_bye(&mut self, now: Instant, handle: CallHandle) {
        let via = self.via();
        let ua = self.config.user_agent.clone();
        let Some(call) = self.calls.get_mut(&handle) else { return };
        let Some(d) = call.dialog.as_mut() else { return };
        let mut req = d.build_request(rsip::Method::Bye, &via);
        req.headers.push(wire::hdr("User-Agent", ua));
        req.headers.push(wire::hdr("Content-Length", "0"));
        call.state = CallState::Terminating;
        call.ok_retx = None;
        self.start_client_nict(now, req, Owner::Bye(handle));
    }

    fn end_call(&mut self, now: Instant, handle: CallHandle, event: Option<Event>) {
        let linger = self.config.timers.timeout_64t1();
        if let Some(call) = self.calls.get_mut(&handle) {
            call.state = CallState::Terminated;
            call.ok_retx = None;
            call.bye_after_ack = false;
            call.linger_until = Some(now + linger);
        }
        if let Some(e) = event {
            self.events.push_back(e);
        }
    }

    fn on_invite_response(&mut self, now: Instant, handle: CallHandle, resp: rsip::Response) {
        let code = resp.status_code.code();
        let Some(call) = self.calls.get_mut(&handle) else { return };
        let state = call.state;
        if code < 200 {
            if code == 100 {
                return;
            }
            match state {
                CallState::Calling => {
                    call.state = CallState::Early;
                    self.events.push_back(Event::Ringing { call: handle });
                }
                CallState::Cancelling => {
                    // §9.1: the CANCEL we held back can go now.
                    if !self.client_txs.values().any(|(_, o)| matches!(o, Owner::Cancel(h) if *h == handle)) {
                        self.send_cancel(now, handle);
                    }
                }
                _ => {}
            }
            return;
        }
        if code < 300 {
            let Some(inv) = call.invite.clone() else { return };
            let dialog = match Dialog::new_uac(&inv, &resp) {
                Ok(d) => d,
                Err(_) => {
                    // A 2xx we cannot build a dialog from: nothing sane to ACK.
                    self.end_call(now, handle, Some(Event::Failed { call: handle, status: 500, reason: "unusable 2xx".into() }));
                    return;
                }
            };
            let invite_cseq = wire::cseq(&inv.headers).map(|c| c.0).unwrap_or(1);
            let via = self.via();
            let mut ack = dialog.build_ack(&via, invite_cseq);
            ack.headers.push(wire::hdr("Content-Length", "0"));
            let ack_bytes = wire::request_bytes(&ack);
            self.transmits.push_back(Transmit { destination: self.config.proxy, payload: ack_bytes.clone() });
            let Some(call) = self.calls.get_mut(&handle) else { return };
            call.dialog = Some(dialog);
            call.ack = Some(ack_bytes);
            if state == CallState::Cancelling {
                // The 2xx won the race against our CANCEL: ACK then BYE (§9.1, §15).
                call.state = CallState::Confirmed;
                self.send_bye(now, handle);
            } else {
                call.state = CallState::Confirmed;
                self.events.push_back(Event::Answered { call: handle, answer: parse_sdp(&resp.body) });
            }
            return;
        }
        if (code == 401 || code == 407) && state != CallState::Cancelling {
            if let Some(ev) = self.retry_invite_with_auth(now, handle, &resp) {
                self.end_call(now, handle, Some(ev));
            }
            return;
        }
        let reason = match &resp.status_code {
            rsip::StatusCode::Other(_, r) => r.clone(),
            other => other.to_string(),
        };
        let ev = if state == CallState::Cancelling {
            Event::Ended { call: handle, reason: EndReason::LocalHangup }
        } else {
            Event::Failed { call: handle, status: code, reason }
        };
        self.end_call(now, handle, Some(ev));
    }

    /// Resends the INVITE with credentials; returns the failure event if it
    /// cannot (no challenge, wrong password, too many rounds).
    fn retry_invite_with_auth(&mut self, now: Instant, handle: CallHandle, resp: &rsip::Response) -> Option<Event> {
        let code = resp.status_code.code();
        let fail = |reason: &str| Some(Event::Failed { call: handle, status: code, reason: reason.to_string() });
        let Some((challenge, nonce, stale, header_name)) = challenge_of(resp) else {
            return fail("challenge without usable digest");
        };
        let cnonce = self.token();
        let via = self.via();
        let call = self.calls.get_mut(&handle)?;
        let Some(account) = self.config.accounts.iter().find(|a| a.user == call.user) else {
            return fail("no account");
        };
        let prev = call.invite.clone()?;
        let sent_with_this_nonce = call.auth.nonce.as_deref() == Some(nonce.as_str()) && call.auth_rounds > 0;
        if (sent_with_this_nonce && !stale) || call.auth_rounds >= 3 {
            return fail("authentication rejected");
        }
        call.auth_rounds += 1;
        if call.auth.nonce.as_deref() == Some(nonce.as_str()) {
            call.auth.nc += 1;
        } else {
            call.auth = AuthState { nonce: Some(nonce), nc: 1 };
        }
        let creds = auth::Credentials { username: account.auth_user.clone(), password: account.password.clone() };
        let uri = prev.uri.to_string();
        let Ok(value) = auth::authorization(&challenge, &creds, "INVITE", &uri, call.auth.nc, &cnonce) else {
            return fail("unsupported digest challenge");
        };
        // §22.2: same Call-ID, From tag; new CSeq and branch.
        let n = wire::cseq(&prev.headers).map(|c| c.0).unwrap_or(1) + 1;
        let mut headers = rsip::Headers::default();
        for h in prev.headers.iter() {
            let (name, v) = wire::name_value(h);
            match name.to_ascii_lowercase().as_str() {
                "via" => headers.push(wire::hdr("Via", via.clone())),
                "cseq" => headers.push(wire::hdr("CSeq", format!("{} INVITE", n))),
                "authorization" | "proxy-authorization" => {}
                "content-type" | "content-length" => {}
                _ => headers.push(h.clone()),
            }
            let _ = v;
        }
        headers.push(wire::hdr(header_name, value));
        wire::set_body(&mut headers, &prev.body, if prev.body.is_empty() { None } else { Some("application/sdp") });
        let req = rsip::Request { headers, ..prev };
        self.send_invite(now, handle, req);
        None
    }

    // ----- incoming calls: call control -----------------------------------

    fn incoming(&mut self, call: CallHandle) -> Result<&mut Call, UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        if c.dir != Direction::Incoming {
            return Err(UaError::InvalidState("not an incoming call"));
        }
        Ok(c)
    }

    fn build_uas_response(&mut self, call: CallHandle, status: u16) -> Option<(rsip::Response, TransactionKey)> {
        let contact = {
            let c = self.calls.get(&call)?;
            self.contact(&c.user)
        };
        let c = self.calls.get(&call)?;
        let key = c.server_key.clone()?;
        let Some(ServerTx::Invite(tx, _)) = self.server_txs.get(&key) else { return None };
        let req = tx.request();
        let mut resp = wire::response_for(req, status, Some(&c.local_tag));
        if (101..300).contains(&status) {
            // §12.1.1: Record-Route copied into dialog-creating responses.
            for rr in wire::values(&req.headers, "Record-Route") {
                resp.headers.push(wire::hdr("Record-Route", rr));
            }
            resp.headers.push(wire::hdr("Contact", contact));
        }
        resp.headers.push(wire::hdr("User-Agent", self.config.user_agent.clone()));
        Some((resp, key))
    }

    fn send_uas_response(&mut self, now: Instant, key: &TransactionKey, resp: &rsip::Response) {
        if let Some(ServerTx::Invite(tx, _)) = self.server_txs.get_mut(key) {
            tx.send_response(now, resp);
        }
    }

    /// Sends `180 Ringing` for an incoming call.
    pub fn ringing(&mut self, now: Instant, call: CallHandle) -> Result<(), UaError> {
        let c = self.incoming(call)?;
        if c.state != CallState::Offered {
            return Err(UaError::InvalidState("call is not ringing"));
        }
        let (mut resp, key) = self.build_uas_response(call, 180).ok_or(UaError::InvalidState("transaction gone"))?;
        resp.headers.push(wire::hdr("Content-Length", "0"));
        self.send_uas_response(now, &key, &resp);
        self.pump(now);
        Ok(())
    }

    /// Answers an incoming call with `200 OK`; retransmitted until the ACK
    /// arrives (§13.3.1.4).
    pub fn answer(&mut self, now: Instant, call: CallHandle, answer: sdp::SessionDescription) -> Result<(), UaError> {
        let c = self.incoming(call)?;
        if c.state != CallState::Offered {
            return Err(UaError::InvalidState("call is not ringing"));
        }
        let body = answer.to_string();
        let (mut resp, key) = self.build_uas_response(call, 200).ok_or(UaError::InvalidState("transaction gone"))?;
        resp.headers.push(wire::hdr("Allow", ALLOW));
        wire::set_body(&mut resp.headers, body.as_bytes(), Some("application/sdp"));
        resp.body = body.clone().into_bytes();
        let req = match self.server_txs.get(&key) {
            Some(ServerTx::Invite(tx, _)) => tx.request().clone(),
            _ => return Err(UaError::InvalidState("transaction gone")),
        };
        let payload = wire::response_bytes(&resp);
        self.send_uas_response(now, &key, &resp);
        let t1 = self.config.timers.t1;
        let give_up = now + self.config.timers.timeout_64t1();
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        let dialog = Dialog::new_uas(&req, &c.local_tag, 0).map_err(|_| UaError::InvalidState("request cannot form a dialog"))?;
        c.dialog = Some(dialog);
        c.local_sdp = body;
        c.state = CallState::Answered;
        let destination = c.source.unwrap_or(self.config.proxy);
        c.ok_retx = Some(OkRetransmit { payload, destination, next: now + t1, interval: t1, give_up });
        self.pump(now);
        Ok(())
    }

    /// Rejects an incoming, unanswered call with a final status (300..=699).
    pub fn reject(&mut self, now: Instant, call: CallHandle, status: u16) -> Result<(), UaError> {
        let c = self.incoming(call)?;
        if c.state != CallState::Offered {
            return Err(UaError::InvalidState("call is not ringing"));
        }
        if !(300..=699).contains(&status) {
            return Err(UaError::InvalidState("reject status must be 300..=699"));
        }
        let (mut resp, key) = self.build_uas_response(call, status).ok_or(UaError::InvalidState("transaction gone"))?;
        resp.headers.push(wire::hdr("Content-Length", "0"));
        self.send_uas_response(now, &key, &resp);
        self.end_call(now, call, Some(Event::Ended { call, reason: EndReason::Rejected(status) }));
        self.pump(now);
        Ok(())
    }

    /// Ends a call: CANCEL (ours, early), BYE (confirmed), or 480 (incoming
    /// unanswered). The final `Ended { LocalHangup }` comes when done.
    pub fn hangup(&mut self, now: Instant, call: CallHandle) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call).ok_or(UaError::NoSuchCall)?;
        match c.state {
            CallState::Calling => {
                // §9.1: no CANCEL before a provisional; send it when one comes.
                c.state = CallState::Cancelling;
            }
            CallState::Early => {
                c.state = CallState::Cancelling;
                self.send_cancel(now, call);
            }
            CallState::Offered => {
                let (mut resp, key) = self.build_uas_response(call, 480).ok_or(UaError::InvalidState("transaction gone"))?;
                resp.headers.push(wire::hdr("Content-Length", "0"));
                self.send_uas_response(now, &key, &resp);
                self.end_call(now, call, Some(Event::Ended { call, reason: EndReason::LocalHangup }));
            }
            CallState::Answered => {
                // §15: BYE only after the ACK (or when the 2xx gives up).
                c.bye_after_ack = true;
            }
            CallState::Confirmed => self.send_bye(now, call),
            CallState::Cancelling | CallState::Terminating => return Err(UaError::InvalidState("already hanging up")),
            CallState::Terminated => return Err(UaError::InvalidState("call has ended")),
        }
        self.pump(now);
        Ok(())
    }

    // ----- inputs ----------------------------------------------------------

    /// A UDP datagram from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        match message::parse(data) {
            Ok(message::Parsed::Message(rsip::SipMessage::Response(resp))) => self.on_response(now, resp),
            Ok(message::Parsed::Message(rsip::SipMessage::Request(req))) => self.on_request(now, from, req),
            Ok(message::Parsed::UnknownMethod { request, .. }) => {
                // §8.2.1: 501, with Allow.
                let mut resp = wire::response_for(&request, 501, self.random_tag_if_needed(&request).as_deref());
                resp.headers.push(wire::hdr("Allow", ALLOW));
                resp.headers.push(wire::hdr("Content-Length", "0"));
                self.transmits.push_back(Transmit { destination: from, payload: wire::response_bytes(&resp) });
            }
            Err(e) => {
                let status = e.status_code();
                let reason = wire::status_code(status).to_string();
                let reason = reason.split_once(' ').map(|(_, r)| r.to_string()).unwrap_or_default();
                if let Some(payload) = message::error_response(data, status, &reason) {
                    self.transmits.push_back(Transmit { destination: from, payload });
                }
            }
        }
        self.pump(now);
    }

    fn random_tag_if_needed(&mut self, req: &rsip::Request) -> Option<String> {
        if wire::tag(&req.headers, "To").is_some() {
            None
        } else {
            Some(self.token())
        }
    }

    fn on_response(&mut self, now: Instant, resp: rsip::Response) {
        if let Some(key) = TransactionKey::from_response(&resp) {
            if let Some((tx, _)) = self.client_txs.get_mut(&key) {
                tx.handle_response(now, resp);
                return;
            }
        }
        // A retransmitted 2xx to our INVITE: the transaction is gone, the
        // dialog re-sends its ACK (§13.2.2.4).
        let is_invite_2xx = (200..300).contains(&resp.status_code.code())
            && wire::cseq(&resp.headers).map(|c| c.1 == "INVITE").unwrap_or(false);
        if is_invite_2xx {
            if let Some(id) = Dialog::id_of_response(&resp) {
                if let Some(ack) = self.calls.values().find(|c| c.dialog.as_ref().map(|d| d.id == id).unwrap_or(false)).and_then(|c| c.ack.clone()) {
                    self.transmits.push_back(Transmit { destination: self.config.proxy, payload: ack });
                }
            }
        }
    }

    fn call_by_dialog(&self, id: &DialogId) -> Option<CallHandle> {
        self.calls
            .iter()
            .find(|(_, c)| c.dialog.as_ref().map(|d| &d.id == id).unwrap_or(false))
            .map(|(h, _)| *h)
    }

    /// Answers a request statelessly-but-retransmission-safe through a new
    /// non-INVITE server transaction.
    fn respond_nist(&mut self, now: Instant, from: SocketAddr, req: &rsip::Request, status: u16, extra: Vec<rsip::Header>) {
        let tag = self.random_tag_if_needed(req);
        let mut resp = wire::response_for(req, status, tag.as_deref());
        for h in extra {
            resp.headers.push(h);
        }
        resp.headers.push(wire::hdr("Content-Length", "0"));
        let mut tx = ServerNonInviteTransaction::new(now, req.clone(), from, self.config.timers);
        tx.send_response(now, &resp);
        if let Some(key) = TransactionKey::from_request(req) {
            self.server_txs.insert(key, ServerTx::NonInvite(tx));
        } else {
            while let Some(t) = tx.poll_transmit() {
                self.transmits.push_back(t);
            }
        }
    }

    fn on_request(&mut self, now: Instant, from: SocketAddr, req: rsip::Request) {
        let key = TransactionKey::from_request(&req);
        // Retransmission, or ACK for a non-2xx final (§17.2.3).
        if let Some(k) = &key {
            match self.server_txs.get_mut(k) {
                Some(ServerTx::Invite(tx, _)) => {
                    if req.method != rsip::Method::Ack || tx.state() == ServerInviteState::Completed {
                        tx.handle_request(now, &req);
                        return;
                    }
                }
                Some(ServerTx::NonInvite(tx)) => {
                    tx.handle_request(now, &req);
                    return;
                }
                None => {}
            }
        }
        if key.is_none() && req.method != rsip::Method::Ack {
            self.respond_nist(now, from, &req, 400, vec![]);
            return;
        }
        match req.method {
            rsip::Method::Ack => self.on_ack(now, &req),
            rsip::Method::Cancel => self.on_cancel(now, from, &req, key),
            rsip::Method::Invite => self.on_invite(now, from, req),
            rsip::Method::Bye => {
                let call = Dialog::id_of_incoming(&req).and_then(|id| self.call_by_dialog(&id));
                match call {
                    Some(h) if self.calls.get(&h).map(|c| c.state != CallState::Terminated).unwrap_or(false) => {
                        let ok = self.calls.get_mut(&h).and_then(|c| c.dialog.as_mut()).map(|d| d.on_remote_request(&req));
                        if let Some(Err(e)) = ok {
                            self.respond_nist(now, from, &req, e.status_code(), vec![]);
                            return;
                        }
                        self.respond_nist(now, from, &req, 200, vec![]);
                        // A BYE racing our own BYE: drop ours.
                        self.client_txs.retain(|_, (_, o)| !matches!(o, Owner::Bye(x) if *x == h));
                        self.end_call(now, h, Some(Event::Ended { call: h, reason: EndReason::RemoteBye }));
                    }
                    _ => self.respond_nist(now, from, &req, 481, vec![]),
                }
            }
            rsip::Method::Options => {
                let extra = vec![wire::hdr("Allow", ALLOW), wire::hdr("Accept", "application/sdp"), wire::hdr("User-Agent", self.config.user_agent.clone())];
                self.respond_nist(now, from, &req, 200, extra);
            }
            _ => {
                if wire::tag(&req.headers, "To").is_some() {
                    let known = Dialog::id_of_incoming(&req).and_then(|id| self.call_by_dialog(&id)).is_some();
                    if known {
                        self.respond_nist(now, from, &req, 405, vec![wire::hdr("Allow", ALLOW)]);
                    } else {
                        self.respond_nist(now, from, &req, 481, vec![]);
                    }
                } else {
                    self.respond_nist(now, from, &req, 405, vec![wire::hdr("Allow", ALLOW)]);
                }
            }
        }
    }

    fn on_ack(&mut self, now: Instant, req: &rsip::Request) {
        let Some(h) = Dialog::id_of_incoming(req).and_then(|id| self.call_by_dialog(&id)) else { return };
        let Some(c) = self.calls.get_mut(&h) else { return };
        if c.state == CallState::Answered {
            c.ok_retx = None;
            c.state = CallState::Confirmed;
            if let Some(d) = c.dialog.as_mut() {
                d.state = crate::dialog::DialogState::Confirmed;
            }
            if c.bye_after_ack {
                self.send_bye(now, h);
            } else {
                self.events.push_back(Event::Confirmed { call: h });
            }
        }
    }

    fn on_cancel(&mut self, now: Instant, from: SocketAddr, req: &rsip::Request, key: Option<TransactionKey>) {
        let Some(key) = key else { return };
        let invite_key = key.invite_of_cancel();
        let target = match self.server_txs.get(&invite_key) {
            Some(ServerTx::Invite(tx, call)) => Some((tx.state(), *call)),
            _ => None,
        };
        match target {
            None => self.respond_nist(now, from, req, 481, vec![]),
            Some((state, call)) => {
                self.respond_nist(now, from, req, 200, vec![]);
                let Some(h) = call else { return };
                let offered = self.calls.get(&h).map(|c| c.state == CallState::Offered).unwrap_or(false);
                if state == ServerInviteState::Proceeding && offered {
                    // §9.2: 487 to the INVITE.
                    if let Some((mut resp, k)) = self.build_uas_response(h, 487) {
                        resp.headers.push(wire::hdr("Content-Length", "0"));
                        self.send_uas_response(now, &k, &resp);
                    }
                    self.end_call(now, h, Some(Event::Ended { call: h, reason: EndReason::Cancelled }));
                }
            }
        }
    }

    fn on_invite(&mut self, now: Instant, from: SocketAddr, req: rsip::Request) {
        let Some(key) = TransactionKey::from_request(&req) else { return };
        if wire::tag(&req.headers, "To").is_some() {
            self.on_reinvite(now, from, key, req);
            return;
        }
        let mut tx = ServerInviteTransaction::new(now, req.clone(), from, self.config.timers);
        let from_v = wire::value(&req.headers, "From").unwrap_or_default();
        let to_v = wire::value(&req.headers, "To").unwrap_or_default();
        let mut to_user = wire::user_of(&req.uri.to_string());
        if to_user.is_empty() {
            to_user = wire::user_of(&wire::uri_of(&to_v));
        }
        let offer = parse_sdp(&req.body);
        let local_tag = self.token();
        if wire::param(&from_v, "tag").map(|t| t.is_empty()).unwrap_or(true)
            || wire::list(&req.headers, "Contact").is_empty()
        {
            // Cannot form a dialog (§12.1.1 needs a From tag and a Contact).
            let mut resp = wire::response_for(&req, 400, Some(&local_tag));
            resp.headers.push(wire::hdr("Content-Length", "0"));
            tx.send_response(now, &resp);
            self.server_txs.insert(key, ServerTx::Invite(tx, None));
            return;
        }
        if !req.body.is_empty() && offer.is_none() {
            let mut resp = wire::response_for(&req, 488, Some(&local_tag));
            resp.headers.push(wire::hdr("Content-Length", "0"));
            tx.send_response(now, &resp);
            self.server_txs.insert(key, ServerTx::Invite(tx, None));
            return;
        }
        let handle = CallHandle(self.next_call);
        self.next_call = self.next_call.wrapping_add(1).max(1);
        self.calls.insert(
            handle,
            Call {
                dir: Direction::Incoming,
                state: CallState::Offered,
                user: to_user.clone(),
                local_tag,
                dialog: None,
                invite: None,
                invite_key: None,
                auth: AuthState::default(),
                auth_rounds: 0,
                ack: None,
                server_key: Some(key.clone()),
                source: Some(from),
                ok_retx: None,
                bye_after_ack: false,
                local_sdp: String::new(),
                linger_until: None,
            },
        );
        self.server_txs.insert(key, ServerTx::Invite(tx, Some(handle)));
        self.events.push_back(Event::IncomingCall {
            call: handle,
            from_user: wire::user_of(&wire::uri_of(&from_v)),
            from_display: wire::display_of(&from_v),
            to_user,
            offer,
        });
    }

    /// §14.2: a re-INVITE in a confirmed dialog is answered with our last SDP
    /// (version bumped); anything else gets 481 / 491 / 500.
    fn on_reinvite(&mut self, now: Instant, from: SocketAddr, key: TransactionKey, req: rsip::Request) {
        let mut tx = ServerInviteTransaction::new(now, req.clone(), from, self.config.timers);
        let found = Dialog::id_of_incoming(&req).and_then(|id| self.call_by_dialog(&id));
        let contact = found.and_then(|h| self.calls.get(&h)).map(|c| self.contact(&c.user));
        let status_and_body = match found.and_then(|h| self.calls.get_mut(&h).map(|c| (h, c))) {
            None => (481, None),
            Some((_, c)) if c.state != CallState::Confirmed => (491, None),
            Some((_, c)) => match c.dialog.as_mut().map(|d| d.on_remote_request(&req)) {
                Some(Ok(())) => {
                    c.local_sdp = bump_sdp_version(&c.local_sdp);
                    (200, Some(c.local_sdp.clone()))
                }
                Some(Err(e)) => (e.status_code(), None),
                None => (481, None),
            },
        };
        let (status, body) = status_and_body;
        let mut resp = wire::response_for(&req, status, None);
        if status == 200 {
            if let Some(c) = contact {
                resp.headers.push(wire::hdr("Contact", c));
            }
            resp.headers.push(wire::hdr("Allow", ALLOW));
        }
        let body = body.unwrap_or_default();
        wire::set_body(&mut resp.headers, body.as_bytes(), if body.is_empty() { None } else { Some("application/sdp") });
        resp.body = body.into_bytes();
        tx.send_response(now, &resp);
        self.server_txs.insert(key, ServerTx::Invite(tx, None));
    }

    /// Drives timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (tx, _) in self.client_txs.values_mut() {
            if tx.poll_timeout().map(|d| d <= now).unwrap_or(false) {
                tx.handle_timeout(now);
            }
        }
        for tx in self.server_txs.values_mut() {
            if tx.poll_timeout().map(|d| d <= now).unwrap_or(false) {
                tx.handle_timeout(now);
            }
        }
        for i in 0..self.regs.len() {
            if self.regs[i].next_at.map(|t| t <= now).unwrap_or(false) {
                self.regs[i].next_at = None;
                self.regs[i].auth_rounds = 0;
                self.regs[i].auth_sent_nonce = None;
                self.send_register(now, i, None);
            }
        }
        let t2 = self.config.timers.t2;
        let mut gave_up = Vec::new();
        for (h, c) in self.calls.iter_mut() {
            if let Some(o) = c.ok_retx.as_mut() {
                if now >= o.give_up {
                    gave_up.push(*h);
                } else if now >= o.next {
                    self.transmits.push_back(Transmit { destination: o.destination, payload: o.payload.clone() });
                    o.interval = (o.interval * 2).min(t2);
                    o.next += o.interval;
                }
            }
        }
        for h in gave_up {
            // §13.3.1.4: no ACK within 64*T1: BYE and report.
            if let Some(c) = self.calls.get_mut(&h) {
                c.ok_retx = None;
                c.state = CallState::Confirmed;
            }
            self.send_bye(now, h);
            self.end_call(now, h, Some(Event::Ended { call: h, reason: EndReason::Timeout }));
        }
        self.calls.retain(|_, c| c.linger_until.map(|t| t > now).unwrap_or(true));
        self.pump(now);
    }

    /// Moves transaction output to the UA queues and reacts to transaction
    /// events, until nothing moves.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut client_events = Vec::new();
            for (key, (tx, _)) in self.client_txs.iter_mut() {
                while let Some(t) = tx.poll_transmit() {
                    self.transmits.push_back(t);
                }
                while let Some(e) = tx.poll_event() {
                    client_events.push((key.clone(), e));
                }
            }
            let mut server_timeouts = Vec::new();
            for tx in self.server_txs.values_mut() {
                while let Some(t) = tx.poll_transmit() {
                    self.transmits.push_back(t);
                }
                if let ServerTx::Invite(t, call) = tx {
                    while let Some(ServerEvent::Timeout) = t.poll_event() {
                        if let Some(h) = call {
                            server_timeouts.push(*h);
                        }
                    }
                }
            }
            if client_events.is_empty() && server_timeouts.is_empty() {
                break;
            }
            for (key, ev) in client_events {
                let owner = match self.client_txs.get(&key) {
                    Some((_, o)) => match o {
                        Owner::Register(i) => Owner::Register(*i),
                        Owner::Invite(h) => Owner::Invite(*h),
                        Owner::Cancel(h) => Owner::Cancel(*h),
                        Owner::Bye(h) => Owner::Bye(*h),
                    },
                    None => continue,
                };
                self.on_client_event(now, owner, ev);
            }
            let _ = server_timeouts; // a non-2xx final without ACK: the call already ended.
        }
        self.client_txs.retain(|_, (t, _)| !t.is_terminated());
        self.server_txs.retain(|_, t| !t.is_terminated());
    }

    fn on_client_event(&mut self, now: Instant, owner: Owner, ev: ClientEvent) {
        match (owner, ev) {
            (Owner::Register(i), ClientEvent::Response(r)) => self.on_register_response(now, i, r),
            (Owner::Register(i), ClientEvent::Timeout) => self.registration_failed(now, i, None, "timeout".into()),
            (Owner::Invite(h), ClientEvent::Response(r)) => self.on_invite_response(now, h, r),
            (Owner::Invite(h), ClientEvent::Timeout) => {
                let cancelling = self.calls.get(&h).map(|c| c.state == CallState::Cancelling).unwrap_or(false);
                let ev = if cancelling {
                    Event::Ended { call: h, reason: EndReason::LocalHangup }
                } else {
                    Event::Failed { call: h, status: 408, reason: "Timer B: no final response".into() }
                };
                if self.calls.get(&h).map(|c| c.state != CallState::Terminated).unwrap_or(false) {
                    self.end_call(now, h, Some(ev));
                }
            }
            (Owner::Cancel(_), _) => {
                // The INVITE's 487 (or timer B) finishes the call.
            }
            (Owner::Bye(h), ev) => {
                let done = match &ev {
                    ClientEvent::Response(r) => r.status_code.code() >= 200,
                    ClientEvent::Timeout => true,
                };
                let terminating = self.calls.get(&h).map(|c| c.state == CallState::Terminating).unwrap_or(false);
                if done && terminating {
                    let reason = match ev {
                        ClientEvent::Response(r) if r.status_code.code() == 481 => EndReason::Timeout,
                        ClientEvent::Timeout => EndReason::Timeout,
                        _ => EndReason::LocalHangup,
                    };
                    self.end_call(now, h, Some(Event::Ended { call: h, reason }));
                }
            }
        }
    }
}
