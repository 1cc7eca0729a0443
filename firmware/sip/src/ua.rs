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
//! (OPTIONS), §14 (re-INVITE answered with our last SDP, version bumped;
//! 491 on glare), §22 (digest via [`crate::auth`]; the last REGISTER
//! challenge is reused with an incremented nc), §8.2.2/§12.2.2 error answers
//! (481, 405, 420, 501, 500, 400), §13.2.2.4 (2xx from other forks are ACKed
//! and BYEd), RFC 3581 (`rport` in our Via), RFC 6026 (Accepted state).
//!
//! Addressing: every request (REGISTER, INVITE, ACK, CANCEL, BYE) goes to
//! [`UaConfig::proxy`]; in-dialog requests carry the route set learned from
//! Record-Route (§12.2.1.1). Responses go to the source address of the request.
//!
//! Not supported (answered or ignored safely): TCP/TLS, PRACK/100rel (420),
//! session timers, late offer (an INVITE without SDP is offered with
//! `offer: None`; an SDP in the ACK is ignored), early dialogs (BYE before
//! answer), our own re-INVITE/hold.
//!
//! Terminal events: an outgoing call ends with exactly one of
//! [`Event::Failed`] or [`Event::Ended`]; an incoming call (after
//! [`Event::IncomingCall`]) ends with exactly one [`Event::Ended`] (also after
//! our own [`UserAgent::reject`], as `Ended { reason: Rejected(status) }`,
//! and after our [`UserAgent::hangup`], as `Ended { reason: LocalHangup }`).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::dialog::{Dialog, DialogId};
use crate::tx_table::TxTable;
use crate::transaction::{
    ClientEvent, ClientInviteTransaction, ClientNonInviteTransaction, ServerInviteState,
    ServerInviteTransaction, ServerNonInviteTransaction, TransactionKey,
};
pub use crate::transaction::{TimerConfig, Transmit};
use crate::{auth, message, sdp, wire};

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS";

/// Server transactions kept at most for sources other than the proxy; past
/// it a new request gets a stateless 503 (each keeps its request for up to
/// 32 s, so a flood would otherwise cost memory in proportion to its rate).
pub const MAX_SERVER_TRANSACTIONS: usize = 1024;
/// Calls (any state, lingering ones included) at most for sources other than
/// the proxy; a new INVITE past it gets 503.
pub const MAX_CALLS: usize = 128;
/// The proxy's own reserve above both limits: strangers cannot starve the trunk.
const TRUNK_RESERVE: usize = 256;

/// One SIP account of the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// The network-asserted identity of a caller (RFC 3325 `P-Asserted-Identity`)
/// and whether it is to be withheld from the called user (RFC 3323
/// `Privacy: id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssertedIdentity {
    /// The user part of the asserted SIP URI, or the number of a `tel:` URI.
    pub user: String,
    /// `Privacy: id`: the identity must not be shown to the called user.
    pub privacy_id: bool,
}

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
    /// A re-INVITE in the call carried a new offer (a new address, a codec
    /// change, or hold/resume by its direction); it has been answered with
    /// our SDP and the mirrored direction (RFC 3264 section 6.1).
    RemoteOffer { call: CallHandle, offer: sdp::SessionDescription },
    /// The final answer to [`UserAgent::ping`] (any final status means the
    /// next hop is alive), or `None` when it timed out.
    PingResult { status: Option<u16> },
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
    /// The last challenge answered, reused (nc incremented) by later
    /// REGISTERs so that refreshes need no extra round trip (RFC 7616 §3.4.5).
    cached: Option<(auth::Challenge, &'static str)>,
    expires: u32,
    unregistering: bool,
    /// Dropped by [`UserAgent::reconfigure`]: unregistered once, then inert
    /// (kept so that transaction owners' indices stay valid).
    retired: bool,
}

fn new_registration(rng: &mut SmallRng, config: &UaConfig, account: Account) -> Registration {
    let call_id = format!("{:016x}@{}", rng.next_u64(), config.local_addr.ip());
    let local_tag = format!("{:012x}", rng.next_u64() & 0xffff_ffff_ffff);
    Registration {
        account,
        call_id,
        local_tag,
        cseq: 0,
        state: RegState::Idle,
        next_at: None,
        failures: 0,
        auth_sent_nonce: None,
        auth_rounds: 0,
        auth: AuthState::default(),
        cached: None,
        expires: config.register_expires,
        unregistering: false,
        retired: false,
    }
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
    /// CSeq of the INVITE it answers: only that ACK stops it.
    cseq: u32,
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
    /// The peer's latest SDP (offer, early-media 18x, answer, re-INVITE).
    remote_sdp: Option<sdp::SessionDescription>,
    /// Remove the call at this time (Terminated only).
    linger_until: Option<Instant>,
    /// Outgoing: the account whose credentials answer a challenge, when it
    /// is not `user` (a trunk's pilot account), or none at all (a peer
    /// trusted by address).
    auth_account: Option<String>,
    /// A provisional response (100 included) arrived for our INVITE.
    provisional: bool,
    /// Q.850 cause for the `Reason` header (RFC 3326) of our BYE, CANCEL
    /// or final response.
    local_q850: Option<u8>,
    /// The peer's `Reason` header value from a final response, BYE or CANCEL.
    remote_reason: Option<String>,
    /// Incoming: the INVITE's `P-Asserted-Identity` (and `Privacy: id`).
    asserted: Option<AssertedIdentity>,
}

#[derive(Clone, Copy)]
enum Owner {
    Register(usize),
    Invite(CallHandle),
    Cancel(CallHandle),
    Bye(CallHandle),
    /// A request nobody waits for (BYE of an unwanted forked dialog).
    Stray,
    /// An OPTIONS health ping.
    Ping,
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

impl crate::tx_table::Timed for ServerTx {
    fn poll_timeout(&self) -> Option<Instant> {
        ServerTx::poll_timeout(self)
    }
    fn is_terminated(&self) -> bool {
        ServerTx::is_terminated(self)
    }
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
    /// Indexed (dirty set, timer index): the cost of an event does not grow
    /// with the number of live server transactions (a flood leaves many).
    server_txs: TxTable<ServerTx>,
    /// Requests answered 503 because a table was full.
    overload_rejects: u64,
    calls: BTreeMap<CallHandle, Call>,
    regs: Vec<Registration>,
    /// Between `start` and `stop`: new accounts register at once.
    started: bool,
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

/// The reason phrase of a response (rsip keeps it only for codes it does not name).
fn reason_of(resp: &rsip::Response) -> String {
    match &resp.status_code {
        rsip::StatusCode::Other(_, r) if !r.is_empty() => r.clone(),
        other => message::default_reason(other.code()).to_string(),
    }
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
        let regs = config.accounts.iter().map(|a| new_registration(&mut rng, &config, a.clone())).collect();
        UserAgent {
            config,
            rng,
            client_txs: BTreeMap::new(),
            server_txs: TxTable::new(),
            overload_rejects: 0,
            calls: BTreeMap::new(),
            regs,
            started: false,
            next_call: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ----- getters -------------------------------------------------------

    /// The accounts this UA registers (or would, with `register_expires > 0`).
    pub fn account_users(&self) -> Vec<&str> {
        self.regs.iter().filter(|r| !r.retired).map(|r| r.account.user.as_str()).collect()
    }

    /// Registration state of the account `user`, `None` if there is none.
    pub fn registration_state(&self, user: &str) -> Option<RegState> {
        self.regs.iter().find(|r| !r.retired && r.account.user == user).map(|r| r.state.clone())
    }

    /// The peer's latest session description for `call`: the offer of an
    /// incoming call, early media from a 18x, the answer from the 2xx, or the
    /// SDP of a re-INVITE (hold, codec change).
    pub fn remote_sdp(&self, call: CallHandle) -> Option<sdp::SessionDescription> {
        self.calls.get(&call).and_then(|c| c.remote_sdp.clone())
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

    /// Live server transactions and calls, and requests refused for overload.
    pub fn load(&self) -> (usize, usize, u64) {
        (self.server_txs.len(), self.calls.len(), self.overload_rejects)
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest time `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.client_txs.values().filter_map(|(t, _)| t.poll_timeout());
        let stx = self.server_txs.next_timeout();
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
        self.started = true;
        if self.config.register_expires == 0 {
            return;
        }
        for i in 0..self.regs.len() {
            if self.regs[i].retired {
                continue;
            }
            self.regs[i].unregistering = false;
            self.regs[i].expires = self.config.register_expires;
            self.send_register(now, i, None);
        }
        self.pump(now);
    }

    /// Unregisters (Expires: 0) every account that is or may be registered.
    pub fn stop(&mut self, now: Instant) {
        self.started = false;
        for i in 0..self.regs.len() {
            self.unregister(now, i);
        }
        self.pump(now);
    }

    fn unregister(&mut self, now: Instant, i: usize) {
        if matches!(self.regs[i].state, RegState::Idle | RegState::Unregistered) {
            self.regs[i].next_at = None;
            return;
        }
        self.regs[i].unregistering = true;
        self.regs[i].next_at = None;
        self.regs[i].auth_rounds = 0;
        self.regs[i].auth_sent_nonce = None;
        self.send_register(now, i, None);
    }

    /// Takes a changed configuration without dropping calls: dialogs and
    /// transactions in progress go on; an account whose credentials,
    /// registrar, domain or expiry changed, or that is gone, is unregistered
    /// (with the old settings) and a changed or new one registers afresh;
    /// accounts that did not change keep their binding, with no REGISTER.
    /// The local address cannot change (the socket is bound to it).
    pub fn reconfigure(&mut self, now: Instant, new: UaConfig) -> Result<(), UaError> {
        if new.local_addr != self.config.local_addr {
            return Err(UaError::InvalidState("the local SIP address changes only with a restart"));
        }
        let same_server = new.proxy == self.config.proxy
            && new.domain == self.config.domain
            && new.register_expires == self.config.register_expires;
        let mut kept = Vec::new();
        for i in 0..self.regs.len() {
            if self.regs[i].retired {
                continue;
            }
            if same_server && new.accounts.contains(&self.regs[i].account) && !kept.contains(&self.regs[i].account) {
                kept.push(self.regs[i].account.clone());
                continue;
            }
            // Unregistered with the settings it registered with.
            self.unregister(now, i);
            self.regs[i].retired = true;
        }
        self.config = new;
        let fresh: Vec<Account> = self.config.accounts.iter().filter(|a| !kept.contains(a)).cloned().collect();
        for account in fresh {
            let reg = new_registration(&mut self.rng, &self.config, account);
            self.regs.push(reg);
            let i = self.regs.len() - 1;
            if self.started && self.config.register_expires > 0 {
                self.send_register(now, i, None);
            }
        }
        self.pump(now);
        Ok(())
    }

    fn send_register(&mut self, now: Instant, i: usize, authorization: Option<(&'static str, String)>) {
        // Abandon a REGISTER still in flight (a refresh overtaking a retry).
        self.client_txs.retain(|_, (_, o)| !matches!(o, Owner::Register(j) if *j == i));
        let via = self.via();
        let mut authorization = authorization;
        if authorization.is_none() {
            if let Some((ch, name)) = self.regs[i].cached.clone() {
                let cnonce = self.token();
                let uri = format!("sip:{}", self.config.domain);
                let reg = &mut self.regs[i];
                reg.auth.nc += 1;
                let creds = auth::Credentials { username: reg.account.auth_user.clone(), password: reg.account.password.clone() };
                if let Ok(v) = auth::authorization(&ch, &creds, "REGISTER", &uri, reg.auth.nc, &cnonce) {
                    reg.auth_sent_nonce = Some(ch.nonce.clone());
                    authorization = Some((name, v));
                }
            }
        }
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
        reg.cached = None;
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
                .find(|c| wire::uri_of(c).split(';').next().unwrap_or("").eq_ignore_ascii_case(&ours))
                .and_then(|c| wire::param(c, "expires"))
                .and_then(|e| e.parse::<u32>().ok());
            let from_header = wire::value(&resp.headers, "Expires").and_then(|e| e.trim().parse::<u32>().ok());
            let granted = from_contact.or(from_header).unwrap_or(reg.expires);
            if granted == 0 {
                // The registrar accepted but removed our binding.
                self.registration_failed(now, i, Some(code), "registrar granted no binding".into());
                return;
            }
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
            reg.cached = Some((challenge.clone(), header_name));
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
        let reason = reason_of(&resp);
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
        self.invite_as(now, from_user, to_user, offer, Some(from_user))
    }

    /// An INVITE from `from_user` (any calling number) that answers a
    /// challenge with `auth_account`'s credentials: a trunk's pilot account,
    /// or `None` for a peer that trusts us by address (a challenge then
    /// fails the call).
    pub fn invite_as(
        &mut self,
        now: Instant,
        from_user: &str,
        to_user: &str,
        offer: sdp::SessionDescription,
        auth_account: Option<&str>,
    ) -> Result<CallHandle, UaError> {
        self.invite_named(now, from_user, None, to_user, offer, auth_account)
    }

    /// [`UserAgent::invite_as`] with the caller's name as the From display
    /// name (a PSTN caller ID passed on). Quotes, backslashes and control
    /// characters are dropped from it; at most 64 characters are kept.
    pub fn invite_named(
        &mut self,
        now: Instant,
        from_user: &str,
        from_name: Option<&str>,
        to_user: &str,
        offer: sdp::SessionDescription,
        auth_account: Option<&str>,
    ) -> Result<CallHandle, UaError> {
        self.invite_asserted(now, from_user, from_name, to_user, offer, auth_account, None)
    }

    /// [`UserAgent::invite_named`] that also asserts the caller's identity
    /// towards a trusted next hop: `P-Asserted-Identity: <sip:user@domain>`
    /// (RFC 3325 section 9.1) and, when `privacy_id`, `Privacy: id` (RFC 3323
    /// section 4.2). The identity user follows the same rules as `from_user`.
    #[allow(clippy::too_many_arguments)]
    pub fn invite_asserted(
        &mut self,
        now: Instant,
        from_user: &str,
        from_name: Option<&str>,
        to_user: &str,
        offer: sdp::SessionDescription,
        auth_account: Option<&str>,
        identity: Option<&AssertedIdentity>,
    ) -> Result<CallHandle, UaError> {
        if let Some(id) = identity {
            if id.user.is_empty() || id.user.contains(|c: char| c.is_whitespace() || "<>@;:\"\\,".contains(c)) {
                return Err(UaError::InvalidState("bad asserted identity"));
            }
        }
        if let Some(a) = auth_account {
            if !self.config.accounts.iter().any(|x| x.user == a) {
                return Err(UaError::NoAccount(a.to_string()));
            }
        }
        if from_user.is_empty() || from_user.contains(|c: char| c.is_whitespace() || "<>@;:\"\\".contains(c)) {
            return Err(UaError::InvalidState("bad calling user"));
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
        let display: String = from_name
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
            .take(64)
            .collect();
        let display = display.trim();
        let from = if display.is_empty() {
            format!("<{}>;tag={}", from_aor, local_tag)
        } else {
            format!("\"{display}\" <{}>;tag={}", from_aor, local_tag)
        };
        headers.push(wire::hdr("From", from));
        headers.push(wire::hdr("To", format!("<{}>", to_aor)));
        headers.push(wire::hdr("Call-ID", call_id.clone()));
        headers.push(wire::hdr("CSeq", "1 INVITE"));
        headers.push(wire::hdr("Contact", self.contact(from_user)));
        if let Some(id) = identity {
            headers.push(wire::hdr("P-Asserted-Identity", format!("<{}>", self.aor(&id.user))));
            if id.privacy_id {
                headers.push(wire::hdr("Privacy", "id"));
            }
        }
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
                remote_sdp: None,
                linger_until: None,
                auth_account: None,
                provisional: false,
                local_q850: None,
                remote_reason: None,
                asserted: None,
            },
        );
        if let Some(c) = self.calls.get_mut(&handle) {
            c.auth_account = auth_account.map(str::to_string);
        }
        self.send_invite(now, handle, req);
        self.pump(now);
        Ok(handle)
    }

    /// Sets the Q.850 cause that our next BYE, CANCEL or final response for
    /// `call` carries in a `Reason` header (RFC 3326).
    pub fn set_cause(&mut self, call: CallHandle, q850: u8) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.local_q850 = Some(q850);
        }
    }

    /// The peer's `Reason` header (RFC 3326) from its final response, BYE or
    /// CANCEL, raw: the call-control layer parses it.
    pub fn remote_reason(&self, call: CallHandle) -> Option<&str> {
        self.calls.get(&call).and_then(|c| c.remote_reason.as_deref())
    }

    /// The `P-Asserted-Identity` (with `Privacy: id`) of an incoming call's
    /// INVITE. Only meaningful when the sender is trusted to assert it (RFC
    /// 3325 section 2.3): the caller decides that by where the call came from.
    pub fn asserted_identity(&self, call: CallHandle) -> Option<&AssertedIdentity> {
        self.calls.get(&call).and_then(|c| c.asserted.as_ref())
    }

    /// Whether our INVITE got any provisional response (100 Trying included):
    /// the next hop is alive.
    pub fn has_provisional(&self, call: CallHandle) -> bool {
        self.calls.get(&call).is_some_and(|c| c.provisional)
    }

    /// Sends an out-of-dialog OPTIONS to the proxy (a health ping); the
    /// result comes as [`Event::PingResult`].
    pub fn ping(&mut self, now: Instant) {
        let via = self.via();
        let tag = self.token();
        let call_id = format!("{}@{}", self.token(), self.config.local_addr.ip());
        let target = format!("sip:{}", self.config.domain);
        let mut headers = rsip::Headers::default();
        headers.push(wire::hdr("Via", via));
        headers.push(wire::hdr("Max-Forwards", "70"));
        headers.push(wire::hdr("From", format!("<sip:ping@{}>;tag={}", self.config.domain, tag)));
        headers.push(wire::hdr("To", format!("<{target}>")));
        headers.push(wire::hdr("Call-ID", call_id));
        headers.push(wire::hdr("CSeq", "1 OPTIONS"));
        headers.push(wire::hdr("Accept", "application/sdp"));
        headers.push(wire::hdr("User-Agent", self.config.user_agent.clone()));
        headers.push(wire::hdr("Content-Length", "0"));
        let Ok(uri) = rsip::Uri::try_from(target.as_str()) else { return };
        let req = rsip::Request { method: rsip::Method::Options, uri, version: rsip::Version::V2, headers, body: Vec::new() };
        self.start_client_nict(now, req, Owner::Ping);
        self.pump(now);
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
        if let Some(q) = self.calls.get(&handle).and_then(|c| c.local_q850) {
            headers.push(wire::hdr("Reason", reason_value(q)));
        }
        headers.push(wire::hdr("Content-Length", "0"));
        let req = rsip::Request { method: rsip::Method::Cancel, uri: inv.uri.clone(), version: rsip::Version::V2, headers, body: Vec::new() };
        self.start_client_nict(now, req, Owner::Cancel(handle));
        // No 487 within 64*T1: the INVITE transaction gives up (and the call ends).
        let key = self.calls.get(&handle).and_then(|c| c.invite_key.clone());
        if let Some((ClientTx::Invite(tx), _)) = key.and_then(|k| self.client_txs.get_mut(&k)) {
            tx.expect_final_within(now);
        }
    }

    fn send_bye(&mut self, now: Instant, handle: CallHandle) {
        let via = self.via();
        let ua = self.config.user_agent.clone();
        let Some(call) = self.calls.get_mut(&handle) else { return };
        let Some(d) = call.dialog.as_mut() else { return };
        let mut req = d.build_request(rsip::Method::Bye, &via);
        req.headers.push(wire::hdr("User-Agent", ua));
        if let Some(q) = call.local_q850 {
            req.headers.push(wire::hdr("Reason", reason_value(q)));
        }
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
        if let Some(sdp) = parse_sdp(&resp.body) {
            if code < 300 {
                call.remote_sdp = Some(sdp);
            }
        }
        if code >= 300 {
            call.remote_reason = wire::value(&resp.headers, "Reason");
        }
        if code < 200 {
            call.provisional = true;
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
        let reason = reason_of(&resp);
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
        let user = call.auth_account.as_deref().unwrap_or(&call.user);
        let Some(account) = self.config.accounts.iter().find(|a| a.user == user) else {
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

    /// Sends `183 Session Progress` with `sdp` for an incoming call: early
    /// media (an announcement or the far side's ringback) before the answer.
    pub fn progress(&mut self, now: Instant, call: CallHandle, sdp: &sdp::SessionDescription) -> Result<(), UaError> {
        let c = self.incoming(call)?;
        if c.state != CallState::Offered {
            return Err(UaError::InvalidState("call is not ringing"));
        }
        let body = sdp.to_string();
        let (mut resp, key) = self.build_uas_response(call, 183).ok_or(UaError::InvalidState("transaction gone"))?;
        wire::set_body(&mut resp.headers, body.as_bytes(), Some("application/sdp"));
        resp.body = body.into_bytes();
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
        let cseq = wire::cseq(&req.headers).map(|c| c.0).unwrap_or(0);
        c.ok_retx = Some(OkRetransmit { cseq, payload, destination, next: now + t1, interval: t1, give_up });
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
        if let Some(q) = self.calls.get(&call).and_then(|c| c.local_q850) {
            resp.headers.push(wire::hdr("Reason", reason_value(q)));
        }
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
                let q850 = c.local_q850;
                let (mut resp, key) = self.build_uas_response(call, 480).ok_or(UaError::InvalidState("transaction gone"))?;
                if let Some(q) = q850 {
                    resp.headers.push(wire::hdr("Reason", reason_value(q)));
                }
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
                // A request line starts with an ASCII method; anything else is
                // not worth answering (and must not reach the line splitter).
                let plausible = data.len() >= 4 && data[..4].iter().all(u8::is_ascii_graphic);
                if !plausible {
                    self.pump(now);
                    return;
                }
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
        // §8.1.3.3: a response with more than one Via was not meant for us.
        if wire::list(&resp.headers, "Via").len() != 1 {
            return;
        }
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
        if !is_invite_2xx {
            return;
        }
        let Some(id) = Dialog::id_of_response(&resp) else { return };
        if let Some(ack) = self.calls.values().find(|c| c.dialog.as_ref().map(|d| d.id == id).unwrap_or(false)).and_then(|c| c.ack.clone()) {
            self.transmits.push_back(Transmit { destination: self.config.proxy, payload: ack });
            return;
        }
        // §13.2.2.4: a 2xx from another fork (same Call-ID and From tag, new
        // To tag) is a dialog of its own. We keep only the first one: ACK and
        // BYE the others.
        let invite = self
            .calls
            .values()
            .find(|c| c.dir == Direction::Outgoing && c.local_tag == id.local_tag && c.dialog.as_ref().map(|d| d.id.call_id == id.call_id).unwrap_or(false))
            .and_then(|c| c.invite.clone());
        let Some(invite) = invite else { return };
        let Ok(mut fork) = Dialog::new_uac(&invite, &resp) else { return };
        let n = wire::cseq(&invite.headers).map(|c| c.0).unwrap_or(1);
        let mut ack = fork.build_ack(&self.via(), n);
        ack.headers.push(wire::hdr("Content-Length", "0"));
        self.transmits.push_back(Transmit { destination: self.config.proxy, payload: wire::request_bytes(&ack) });
        let via = self.via();
        let mut bye = fork.build_request(rsip::Method::Bye, &via);
        bye.headers.push(wire::hdr("Content-Length", "0"));
        self.start_client_nict(now, bye, Owner::Stray);
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
        if req.method != rsip::Method::Ack {
            // The trunk is known by its address (it may send from several ports).
            let reserve = if from.ip() == self.config.proxy.ip() { TRUNK_RESERVE } else { 0 };
            let new_call = req.method == rsip::Method::Invite && wire::tag(&req.headers, "To").is_none();
            if self.server_txs.len() >= MAX_SERVER_TRANSACTIONS + reserve
                || (new_call && self.calls.len() >= MAX_CALLS + reserve)
            {
                // §21.5.4, stateless: an overload keeps no state for the request.
                self.overload_rejects += 1;
                let mut resp = wire::response_for(&req, 503, None);
                resp.headers.push(wire::hdr("Retry-After", "10"));
                resp.headers.push(wire::hdr("Content-Length", "0"));
                self.transmits.push_back(Transmit { destination: from, payload: wire::response_bytes(&resp) });
                return;
            }
        }
        if key.is_none() && req.method != rsip::Method::Ack {
            self.respond_nist(now, from, &req, 400, vec![]);
            return;
        }
        // §8.2.2.3: we support no extension; anything in Require gets 420
        // (never for ACK; CANCEL must not carry Require, §9.1).
        if !matches!(req.method, rsip::Method::Ack | rsip::Method::Cancel) {
            let required: Vec<String> = wire::values(&req.headers, "Require")
                .iter()
                .flat_map(|v| wire::split_list(v))
                .filter(|t| !t.is_empty())
                .collect();
            if !required.is_empty() {
                let extra = vec![wire::hdr("Unsupported", required.join(", "))];
                if req.method == rsip::Method::Invite {
                    let tag = self.random_tag_if_needed(&req);
                    let mut tx = ServerInviteTransaction::new(now, req.clone(), from, self.config.timers);
                    let mut resp = wire::response_for(&req, 420, tag.as_deref());
                    resp.headers.extend(extra);
                    resp.headers.push(wire::hdr("Content-Length", "0"));
                    tx.send_response(now, &resp);
                    if let Some(k) = key {
                        self.server_txs.insert(k, ServerTx::Invite(tx, None));
                    }
                } else {
                    self.respond_nist(now, from, &req, 420, extra);
                }
                return;
            }
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
                        if let Some(c) = self.calls.get_mut(&h) {
                            c.remote_reason = wire::value(&req.headers, "Reason");
                        }
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
        let n = wire::cseq(&req.headers).map(|c| c.0);
        if c.ok_retx.as_ref().map(|o| Some(o.cseq) == n).unwrap_or(false) {
            c.ok_retx = None;
        }
        if c.state == CallState::Answered && c.ok_retx.is_none() {
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
                    if let Some(c) = self.calls.get_mut(&h) {
                        c.remote_reason = wire::value(&req.headers, "Reason");
                    }
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
        if wire::uri_of(&from_v).is_empty() {
            // Cannot form a dialog: no remote URI to send to. (A missing From
            // tag or Contact is RFC 2543 and fine, §12.1.1 and RFC 4475 §3.4.1.)
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
                remote_sdp: offer.clone(),
                linger_until: None,
                auth_account: None,
                provisional: false,
                local_q850: None,
                remote_reason: None,
                asserted: asserted_identity(&req.headers),
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
            // §14.2: a re-INVITE while one of ours is unfinished -> 491.
            Some((_, c)) if c.state != CallState::Confirmed || c.ok_retx.is_some() => (491, None),
            Some((_, c)) => match c.dialog.as_mut().map(|d| d.on_remote_request(&req)) {
                Some(Ok(())) => {
                    let offer = parse_sdp(&req.body);
                    if let Some(o) = &offer {
                        c.remote_sdp = Some(o.clone());
                    }
                    c.local_sdp = bump_sdp_version(&c.local_sdp);
                    // Hold and resume: answer sendonly with recvonly and so on.
                    if let (Some(o), Ok(mut ours)) = (&offer, sdp::SessionDescription::parse(&c.local_sdp)) {
                        for (m, theirs) in ours.media.iter_mut().zip(&o.media) {
                            m.direction = theirs.direction.mirrored();
                        }
                        c.local_sdp = ours.to_string();
                    }
                    if let (Some(o), Some(h)) = (offer, found) {
                        self.events.push_back(Event::RemoteOffer { call: h, offer: o });
                    }
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
        if status == 200 {
            // §13.3.1.4 applies to re-INVITE 2xx as well.
            let t1 = self.config.timers.t1;
            let give_up = now + self.config.timers.timeout_64t1();
            let cseq = wire::cseq(&req.headers).map(|c| c.0).unwrap_or(0);
            if let Some(c) = found.and_then(|h| self.calls.get_mut(&h)) {
                let payload = wire::response_bytes(&resp);
                c.ok_retx = Some(OkRetransmit { cseq, payload, destination: from, next: now + t1, interval: t1, give_up });
            }
        }
    }

    /// Drives timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (tx, _) in self.client_txs.values_mut() {
            if tx.poll_timeout().map(|d| d <= now).unwrap_or(false) {
                tx.handle_timeout(now);
            }
        }
        for key in self.server_txs.due(now) {
            if let Some(tx) = self.server_txs.visit(&key) {
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
            for key in self.server_txs.take_dirty() {
                let Some(tx) = self.server_txs.visit(&key) else { continue };
                while let Some(t) = tx.poll_transmit() {
                    self.transmits.push_back(t);
                }
                // Timer H (no ACK for a non-2xx final): the call already ended
                // when we sent that response; nothing more to report.
                if let ServerTx::Invite(t, _) = tx {
                    while t.poll_event().is_some() {}
                }
                self.server_txs.settle(&key);
            }
            if client_events.is_empty() {
                break;
            }
            for (key, ev) in client_events {
                let Some(owner) = self.client_txs.get(&key).map(|(_, o)| *o) else { continue };
                self.on_client_event(now, owner, ev);
            }
        }
        self.client_txs.retain(|_, (t, _)| !t.is_terminated());
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
            (Owner::Stray, _) => {}
            (Owner::Ping, ClientEvent::Response(r)) => {
                let code = r.status_code.code();
                if code >= 200 {
                    self.events.push_back(Event::PingResult { status: Some(code) });
                }
            }
            (Owner::Ping, ClientEvent::Timeout) => self.events.push_back(Event::PingResult { status: None }),
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

/// The first usable identity of `P-Asserted-Identity` (a SIP/SIPS URI's
/// user, or a `tel:` URI's number without visual separators or parameters)
/// and whether `Privacy` lists `id` (RFC 3323 section 4.2: `;`-separated).
fn asserted_identity(headers: &rsip::Headers) -> Option<AssertedIdentity> {
    let user = wire::list(headers, "P-Asserted-Identity").iter().find_map(|v| {
        let uri = wire::uri_of(v);
        let (scheme, rest) = uri.split_once(':')?;
        let user = if scheme.eq_ignore_ascii_case("tel") {
            rest.split(';').next().unwrap_or("").chars().filter(|c| !"-.()".contains(*c)).collect()
        } else if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            wire::user_of(&uri).split(';').next().unwrap_or("").to_string()
        } else {
            return None;
        };
        let ok = !user.is_empty() && user.len() <= 32 && user.chars().all(|c| c.is_ascii_digit() || c == '+' || c == '*' || c == '#');
        ok.then_some(user)
    })?;
    let privacy_id = wire::values(headers, "Privacy")
        .iter()
        .flat_map(|v| v.split(';').map(|t| t.trim().to_string()).collect::<Vec<_>>())
        .any(|t| t.eq_ignore_ascii_case("id"));
    Some(AssertedIdentity { user, privacy_id })
}

/// `Reason: Q.850;cause=N` (RFC 3326 section 2), the value only.
fn reason_value(q850: u8) -> String {
    format!("Q.850;cause={q850}")
}

#[cfg(test)]
mod tests {
    //! Two user agents against each other through a fake proxy, in virtual
    //! time (the idea of quinn-proto's `tests/util.rs` Pair).
    use super::*;
    use rsip::prelude::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";
    const ANSWER: &str = "v=0\r\no=- 7 7 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    const CHALLENGE: &str = "Digest realm=\"gw.test\", nonce=\"n0nce1\", algorithm=MD5, qop=\"auth\"";

    fn sdp(s: &str) -> sdp::SessionDescription {
        sdp::SessionDescription::parse(s).unwrap()
    }

    fn proxy_addr() -> SocketAddr {
        "10.0.0.100:5060".parse().unwrap()
    }

    fn config(local: &str, user: &str, password: &str, expires: u32, seed: u64) -> UaConfig {
        UaConfig {
            local_addr: local.parse().unwrap(),
            proxy: proxy_addr(),
            domain: "gw.test".into(),
            user_agent: "gw-test/1".into(),
            accounts: vec![Account { user: user.into(), auth_user: user.into(), password: password.into() }],
            register_expires: expires,
            register_retry_base: Duration::from_secs(1),
            register_retry_max: Duration::from_secs(4),
            timers: TimerConfig::default(),
            rng_seed: seed,
        }
    }

    /// What the fake proxy does besides forwarding.
    #[derive(Default)]
    struct ProxyPolicy {
        /// Challenge REGISTER (401) and INVITE (407) until valid credentials come.
        challenge: bool,
        /// Add `Record-Route: <sip:10.0.0.100;lr>` to dialog-creating INVITEs.
        record_route: bool,
        /// Expires the registrar grants (in the Contact).
        grant: u32,
    }

    struct Net {
        t0: Instant,
        now: Instant,
        uas: Vec<UserAgent>,
        events: Vec<Vec<Event>>,
        /// (time ms, sender index or 99 for proxy, first line) of every datagram.
        log: Vec<(u64, usize, String)>,
        policy: ProxyPolicy,
        passwords: BTreeMap<String, String>,
        /// Drops datagrams whose text matches (after logging them).
        drop: Box<dyn FnMut(&str) -> bool>,
        auth_ok: u32,
        auth_bad: u32,
    }

    fn first_line(b: &[u8]) -> String {
        String::from_utf8_lossy(b).lines().next().unwrap_or("").to_string()
    }

    fn digest_param(v: &str, name: &str) -> Option<String> {
        let rest = v.trim().strip_prefix("Digest")?;
        wire::split_list(rest).into_iter().find_map(|p| {
            let (k, val) = p.split_once('=')?;
            (k.trim() == name).then(|| val.trim().trim_matches('"').to_string())
        })
    }

    impl Net {
        fn new(a: UaConfig, b: UaConfig, policy: ProxyPolicy) -> Net {
            let t0 = Instant::now();
            let mut passwords = BTreeMap::new();
            for c in [&a, &b] {
                for acc in &c.accounts {
                    passwords.insert(acc.auth_user.clone(), acc.password.clone());
                }
            }
            Net {
                t0,
                now: t0,
                uas: vec![UserAgent::new(a), UserAgent::new(b)],
                events: vec![Vec::new(), Vec::new()],
                log: Vec::new(),
                policy,
                passwords,
                drop: Box::new(|_| false),
                auth_ok: 0,
                auth_bad: 0,
            }
        }

        fn ms(&self) -> u64 {
            (self.now - self.t0).as_millis() as u64
        }

        fn ua_at(&self, addr: SocketAddr) -> Option<usize> {
            self.uas.iter().position(|u| u.config.local_addr == addr)
        }

        fn ua_of_user(&self, user: &str) -> Option<usize> {
            self.uas.iter().position(|u| u.config.accounts.iter().any(|a| a.user == user))
        }

        /// Checks the digest in `header` of `req` against the registered password.
        fn verify(&mut self, req: &rsip::Request, header: &str) -> bool {
            let Some(v) = wire::value(&req.headers, header) else { return false };
            let (Some(user), Some(uri), Some(nc), Some(cnonce), Some(resp)) = (
                digest_param(&v, "username"),
                digest_param(&v, "uri"),
                digest_param(&v, "nc"),
                digest_param(&v, "cnonce"),
                digest_param(&v, "response"),
            ) else {
                return false;
            };
            let ch = auth::Challenge::parse(CHALLENGE).unwrap();
            let password = self.passwords.get(&user).cloned().unwrap_or_default();
            let expected = auth::authorization(
                &ch,
                &auth::Credentials { username: user, password },
                &req.method.to_string(),
                &uri,
                u32::from_str_radix(&nc, 16).unwrap_or(0),
                &cnonce,
            )
            .unwrap();
            let ok = digest_param(&expected, "response") == Some(resp);
            if ok {
                self.auth_ok += 1
            } else {
                self.auth_bad += 1
            }
            ok
        }

        fn reply(&self, req: &rsip::Request, code: u16, extra: &[(&str, String)]) -> Vec<u8> {
            let mut r = wire::response_for(req, code, Some("proxytag"));
            for (n, v) in extra {
                r.headers.push(wire::hdr(n, v.clone()));
            }
            wire::response_bytes(&r)
        }

        /// The fake proxy: registrar, optional challenger, forwarder.
        /// Returns datagrams to deliver: (ua index, payload).
        fn proxy(&mut self, data: Vec<u8>) -> Vec<(usize, Vec<u8>)> {
            let msg = match message::parse(&data) {
                Ok(message::Parsed::Message(m)) => m,
                _ => return vec![],
            };
            match msg {
                rsip::SipMessage::Response(r) => {
                    let via = wire::list(&r.headers, "Via").into_iter().next().unwrap_or_default();
                    let sent_by = via.split(';').next().unwrap_or("").split_whitespace().nth(1).unwrap_or("").to_string();
                    match sent_by.parse().ok().and_then(|a| self.ua_at(a)) {
                        Some(i) => vec![(i, data)],
                        None => vec![],
                    }
                }
                rsip::SipMessage::Request(mut req) => {
                    let sender = wire::top_sent_by(&req.headers).and_then(|s| s.parse().ok()).and_then(|a| self.ua_at(a));
                    let Some(sender) = sender else { return vec![] };
                    if req.method == rsip::Method::Register {
                        if self.policy.challenge && !self.verify(&req, "Authorization") {
                            let b = self.reply(&req, 401, &[("WWW-Authenticate", CHALLENGE.to_string())]);
                            return vec![(sender, b)];
                        }
                        let contact = wire::value(&req.headers, "Contact").unwrap_or_default();
                        let asked: u32 = wire::value(&req.headers, "Expires").and_then(|e| e.parse().ok()).unwrap_or(0);
                        let granted = if asked == 0 { 0 } else { self.policy.grant };
                        let b = self.reply(&req, 200, &[("Contact", format!("{};expires={}", contact, granted))]);
                        return vec![(sender, b)];
                    }
                    let initial = wire::tag(&req.headers, "To").is_none();
                    if self.policy.challenge && req.method == rsip::Method::Invite && initial && !self.verify(&req, "Proxy-Authorization") {
                        let b = self.reply(&req, 407, &[("Proxy-Authenticate", CHALLENGE.to_string())]);
                        return vec![(sender, b)];
                    }
                    // Loose routing: drop our own Route entry.
                    req.headers.retain(|h| !(matches!(h, rsip::Header::Route(r) if r.value().contains("10.0.0.100"))));
                    if self.policy.record_route && req.method == rsip::Method::Invite && initial {
                        req.headers.push(wire::hdr("Record-Route", "<sip:10.0.0.100;lr>"));
                    }
                    let ruri = req.uri.to_string();
                    let host = ruri.split('@').nth(1).unwrap_or("").split(';').next().unwrap_or("").to_string();
                    let target = host.parse().ok().and_then(|a| self.ua_at(a)).or_else(|| self.ua_of_user(&wire::user_of(&ruri)));
                    match target {
                        Some(t) => vec![(t, wire::request_bytes(&req))],
                        None => vec![],
                    }
                }
            }
        }

        /// Delivers every pending datagram (zero latency) until quiet.
        fn flush(&mut self) {
            loop {
                let mut moved = false;
                for i in 0..self.uas.len() {
                    while let Some(t) = self.uas[i].poll_transmit() {
                        moved = true;
                        assert_eq!(t.destination, proxy_addr(), "everything goes via the proxy");
                        let text = String::from_utf8_lossy(&t.payload).to_string();
                        self.log.push((self.ms(), i, first_line(&t.payload)));
                        if (self.drop)(&text) {
                            continue;
                        }
                        for (to, data) in self.proxy(t.payload) {
                            self.uas[to].handle_datagram(self.now, proxy_addr(), &data);
                        }
                    }
                    while let Some(e) = self.uas[i].poll_event() {
                        self.events[i].push(e);
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        /// Runs timers and traffic until `ms` after t0.
        fn run_until(&mut self, ms: u64) {
            let end = self.t0 + Duration::from_millis(ms);
            self.flush();
            loop {
                let next = self.uas.iter().filter_map(|u| u.poll_timeout()).min();
                match next {
                    Some(t) if t <= end => {
                        self.now = self.now.max(t);
                        for i in 0..self.uas.len() {
                            self.uas[i].handle_timeout(self.now);
                        }
                        self.flush();
                    }
                    _ => break,
                }
            }
            self.now = self.now.max(end);
        }

        fn take(&mut self, i: usize) -> Vec<Event> {
            std::mem::take(&mut self.events[i])
        }

        fn sent(&self, who: usize, prefix: &str) -> Vec<u64> {
            self.log.iter().filter(|(_, w, l)| *w == who && l.starts_with(prefix)).map(|(t, _, _)| *t).collect()
        }
    }

    fn pair(policy: ProxyPolicy) -> Net {
        Net::new(
            config("10.0.0.1:5060", "1001", "secret1", 0, 1),
            config("10.0.0.2:5060", "2000", "secret2", 0, 2),
            policy,
        )
    }

    /// A calls B and B offers the call; returns the two handles.
    fn call_offered(net: &mut Net) -> (CallHandle, CallHandle) {
        let now = net.now;
        let a = net.uas[0].invite(now, "1001", "2000", sdp(OFFER)).unwrap();
        net.flush();
        let ev = net.take(1);
        let b = match &ev[..] {
            [Event::IncomingCall { call, from_user, to_user, offer, .. }] => {
                assert_eq!(from_user, "1001");
                assert_eq!(to_user, "2000");
                assert_eq!(offer.as_ref().map(|o| o.to_string()), Some(sdp(OFFER).to_string()));
                *call
            }
            other => panic!("B expected IncomingCall, got {:?}", other),
        };
        (a, b)
    }

    fn call_established(net: &mut Net) -> (CallHandle, CallHandle) {
        let (a, b) = call_offered(net);
        let now = net.now;
        net.uas[1].ringing(now, b).unwrap();
        net.flush();
        assert!(matches!(net.take(0)[..], [Event::Ringing { call }] if call == a));
        net.uas[1].answer(now, b, sdp(ANSWER)).unwrap();
        net.flush();
        match &net.take(0)[..] {
            [Event::Answered { call, answer: Some(ans) }] => {
                assert_eq!(*call, a);
                assert_eq!(ans.to_string(), sdp(ANSWER).to_string());
            }
            other => panic!("A expected Answered, got {:?}", other),
        }
        assert!(matches!(net.take(1)[..], [Event::Confirmed { call }] if call == b));
        assert_eq!(net.uas[0].remote_sdp(a).map(|s| s.to_string()), Some(sdp(ANSWER).to_string()));
        assert_eq!(net.uas[1].remote_sdp(b).map(|s| s.to_string()), Some(sdp(OFFER).to_string()));
        (a, b)
    }

    #[test]
    fn early_media_sdp_from_183() {
        let mut net = pair(ProxyPolicy::default());
        let now = net.now;
        let a = net.uas[0].invite(now, "1001", "2000", sdp(OFFER)).unwrap();
        let inv = net.uas[0].calls[&a].invite.clone().unwrap();
        while net.uas[0].poll_transmit().is_some() {}
        let mut r = wire::response_for(&inv, 183, Some("em"));
        wire::set_body(&mut r.headers, ANSWER.as_bytes(), Some("application/sdp"));
        r.body = ANSWER.as_bytes().to_vec();
        net.uas[0].handle_datagram(now, proxy_addr(), &wire::response_bytes(&r));
        assert!(matches!(net.uas[0].poll_event(), Some(Event::Ringing { call }) if call == a));
        assert_eq!(net.uas[0].remote_sdp(a).map(|s| s.to_string()), Some(sdp(ANSWER).to_string()));
        assert_eq!(net.uas[0].remote_sdp(CallHandle(999)), None);
    }

    #[test]
    fn call_setup_and_caller_hangs_up_through_record_route() {
        let mut net = pair(ProxyPolicy { record_route: true, ..Default::default() });
        let (a, b) = call_established(&mut net);
        // B sent 100 Trying automatically, then 180 and 200.
        assert_eq!(net.sent(1, "SIP/2.0 100").len(), 1);
        assert_eq!(net.sent(1, "SIP/2.0 180").len(), 1);
        assert_eq!(net.sent(0, "ACK sip:2000@10.0.0.2:5060").len(), 1, "ACK to B's Contact: {:?}", net.log);
        let now = net.now;
        net.uas[0].hangup(now, a).unwrap();
        // The BYE carries the route set learned from Record-Route.
        let bye = net.uas[0].poll_transmit().unwrap();
        let text = String::from_utf8(bye.payload.clone()).unwrap();
        assert!(text.starts_with("BYE sip:2000@10.0.0.2:5060 SIP/2.0"), "{}", text);
        assert!(text.contains("Route: <sip:10.0.0.100;lr>"), "{}", text);
        for (to, d) in net.proxy(bye.payload) {
            net.uas[to].handle_datagram(now, proxy_addr(), &d);
        }
        net.flush();
        assert!(matches!(net.take(1)[..], [Event::Ended { call, reason: EndReason::RemoteBye }] if call == b));
        assert!(matches!(net.take(0)[..], [Event::Ended { call, reason: EndReason::LocalHangup }] if call == a));
        assert_eq!(net.uas[0].hangup(now, a), Err(UaError::InvalidState("call has ended")));
        // Lingering state is dropped after 64*T1.
        net.run_until(40_000);
        assert_eq!(net.uas[0].call_count(), 0);
        assert_eq!(net.uas[1].call_count(), 0);
    }

    #[test]
    fn callee_hangs_up() {
        let mut net = pair(ProxyPolicy::default());
        let (a, b) = call_established(&mut net);
        let now = net.now;
        net.uas[1].hangup(now, b).unwrap();
        net.flush();
        assert!(matches!(net.take(0)[..], [Event::Ended { call, reason: EndReason::RemoteBye }] if call == a));
        assert!(matches!(net.take(1)[..], [Event::Ended { call, reason: EndReason::LocalHangup }] if call == b));
        assert_eq!(net.sent(1, "BYE sip:1001@10.0.0.1:5060").len(), 1);
    }

    #[test]
    fn reason_header_carries_the_q850_cause_both_ways() {
        let mut net = pair(ProxyPolicy::default());
        let (a, b) = call_offered(&mut net);
        assert!(net.uas[0].has_provisional(a), "the 100 Trying counts as progress");
        let now = net.now;
        net.uas[1].set_cause(b, 17);
        net.uas[1].reject(now, b, 486).unwrap();
        net.flush();
        assert!(matches!(net.take(0)[..], [Event::Failed { status: 486, .. }]));
        assert_eq!(net.uas[0].remote_reason(a), Some("Q.850;cause=17"));
        net.take(1);
        // A BYE with the cause of the hang-up.
        let (a, b) = call_established(&mut net);
        let now = net.now;
        net.uas[0].set_cause(a, 41);
        net.uas[0].hangup(now, a).unwrap();
        net.flush();
        assert_eq!(net.uas[1].remote_reason(b), Some("Q.850;cause=41"));
        net.take(0);
        net.take(1);
        // Without a cause nothing is claimed.
        let (a, b) = call_established(&mut net);
        let now = net.now;
        net.uas[0].hangup(now, a).unwrap();
        net.flush();
        assert_eq!(net.uas[1].remote_reason(b), None);
    }

    #[test]
    fn invite_as_any_calling_number_with_a_pilot_account_or_none() {
        let mut net = pair(ProxyPolicy { challenge: true, ..Default::default() });
        let now = net.now;
        // The pilot account 1001 answers the challenge for calling number 5551234.
        let a = net.uas[0].invite_as(now, "5551234", "2000", sdp(OFFER), Some("1001")).unwrap();
        net.flush();
        match &net.take(1)[..] {
            [Event::IncomingCall { from_user, .. }] => assert_eq!(from_user, "5551234"),
            other => panic!("{other:?}"),
        }
        assert!(net.auth_ok >= 1);
        net.uas[0].hangup(now, a).unwrap();
        net.flush();
        // No account: a challenge fails the call instead of looping.
        let c = net.uas[0].invite_as(now, "5551234", "2000", sdp(OFFER), None).unwrap();
        net.flush();
        assert!(net.take(0).iter().any(|e| matches!(e, Event::Failed { call, status: 407, .. } if *call == c)));
        assert_eq!(
            net.uas[0].invite_as(now, "55 12", "2000", sdp(OFFER), None),
            Err(UaError::InvalidState("bad calling user"))
        );
        assert_eq!(
            net.uas[0].invite_as(now, "5551234", "2000", sdp(OFFER), Some("7777")),
            Err(UaError::NoAccount("7777".into()))
        );
    }

    #[test]
    fn invite_named_carries_the_callers_name_sanitised() {
        let mut net = pair(ProxyPolicy::default());
        let now = net.now;
        net.uas[0].invite_named(now, "5551234", Some("PSTN \"Caller\"\r\n"), "2000", sdp(OFFER), None).unwrap();
        net.flush();
        match &net.take(1)[..] {
            [Event::IncomingCall { from_user, from_display, .. }] => {
                assert_eq!(from_user, "5551234");
                assert_eq!(from_display.as_deref(), Some("PSTN Caller"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invite_asserted_sends_pai_and_privacy_and_the_callee_reads_them() {
        let mut net = pair(ProxyPolicy::default());
        let now = net.now;
        let id = AssertedIdentity { user: "+4930123456".into(), privacy_id: true };
        net.uas[0].invite_asserted(now, "anonymous", None, "2000", sdp(OFFER), None, Some(&id)).unwrap();
        let t = net.uas[0].poll_transmit().expect("INVITE sent");
        let text = String::from_utf8_lossy(&t.payload).to_string();
        assert!(text.contains("P-Asserted-Identity: <sip:+4930123456@"), "{text}");
        assert!(text.contains("\r\nPrivacy: id\r\n"), "{text}");
        // Put it back and let the network deliver it.
        let Ok(message::Parsed::Message(rsip::SipMessage::Request(req))) = message::parse(&t.payload) else { panic!() };
        let got = asserted_identity(&req.headers);
        assert_eq!(got.as_ref(), Some(&id));
        for (to, data) in net.proxy(t.payload) {
            net.uas[to].handle_datagram(now, proxy_addr(), &data);
        }
        net.flush();
        let call = match &net.take(1)[..] {
            [Event::IncomingCall { call, from_user, .. }] => {
                assert_eq!(from_user, "anonymous");
                *call
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(net.uas[1].asserted_identity(call), Some(&id));
        // Without an identity: neither header, and nothing asserted.
        net.uas[0].invite_named(now, "5551234", None, "2000", sdp(OFFER), None).unwrap();
        let t = net.uas[0].poll_transmit().expect("INVITE sent");
        let text = String::from_utf8_lossy(&t.payload).to_string();
        assert!(!text.contains("P-Asserted-Identity") && !text.contains("Privacy"), "{text}");
    }

    #[test]
    fn a_bad_asserted_identity_is_refused_and_nothing_is_sent() {
        let mut net = pair(ProxyPolicy::default());
        let now = net.now;
        while net.uas[0].poll_transmit().is_some() {}
        let calls = net.uas[0].call_count();
        for bad in ["", "12 34", "a@b", "<x>", "1,2"] {
            let id = AssertedIdentity { user: bad.into(), privacy_id: false };
            assert_eq!(
                net.uas[0].invite_asserted(now, "5551234", None, "2000", sdp(OFFER), None, Some(&id)),
                Err(UaError::InvalidState("bad asserted identity")),
                "{bad:?}"
            );
        }
        assert_eq!(net.uas[0].call_count(), calls);
        assert!(net.uas[0].poll_transmit().is_none());
    }

    #[test]
    fn asserted_identity_parsing_takes_sip_or_tel_and_privacy_id() {
        let h = |list: &[(&str, &str)]| {
            let mut hs = rsip::Headers::default();
            for (n, v) in list {
                hs.push(wire::hdr(n, *v));
            }
            asserted_identity(&hs)
        };
        assert_eq!(h(&[]), None);
        assert_eq!(
            h(&[("P-Asserted-Identity", "\"Alice\" <sip:5551234@carrier.example;user=phone>")]),
            Some(AssertedIdentity { user: "5551234".into(), privacy_id: false })
        );
        // A tel URI (visual separators dropped) after an unusable http URI.
        assert_eq!(
            h(&[("P-Asserted-Identity", "<http://x/y>, <tel:+1-212-555-0100;ext=1>"), ("Privacy", "header; ID")]),
            Some(AssertedIdentity { user: "+12125550100".into(), privacy_id: true })
        );
        assert_eq!(
            h(&[("P-Asserted-Identity", "<sip:alice@example.com>"), ("Privacy", "none")]),
            None,
            "not a number: no calling number from it"
        );
        assert_eq!(
            h(&[("P-Asserted-Identity", "<sip:2000@x>"), ("Privacy", "user"), ("Privacy", "critical")]),
            Some(AssertedIdentity { user: "2000".into(), privacy_id: false })
        );
    }

    #[test]
    fn options_ping_reports_the_final_status_or_a_timeout() {
        let mut ua = UserAgent::new(config("10.0.0.1:5060", "1001", "s", 0, 1));
        let now = Instant::now();
        ua.ping(now);
        let t = ua.poll_transmit().expect("OPTIONS sent");
        assert_eq!(t.destination, proxy_addr());
        let Ok(message::Parsed::Message(rsip::SipMessage::Request(req))) = message::parse(&t.payload) else {
            panic!("not a request: {}", String::from_utf8_lossy(&t.payload));
        };
        assert_eq!(req.method, rsip::Method::Options);
        let mut resp = wire::response_for(&req, 200, Some("p1"));
        resp.headers.push(wire::hdr("Content-Length", "0"));
        ua.handle_datagram(now, proxy_addr(), &wire::response_bytes(&resp));
        assert!(matches!(ua.poll_event(), Some(Event::PingResult { status: Some(200) })));
        // Nobody answers: timer F.
        ua.ping(now);
        while ua.poll_transmit().is_some() {}
        let mut t = now;
        while let Some(next) = ua.poll_timeout().filter(|&x| x <= now + Duration::from_secs(40)) {
            t = next.max(t);
            ua.handle_timeout(t);
            while ua.poll_transmit().is_some() {}
        }
        assert!(matches!(ua.poll_event(), Some(Event::PingResult { status: None })));
    }

    #[test]
    fn busy_486_is_acked_by_the_transaction() {
        let mut net = pair(ProxyPolicy::default());
        let (a, b) = call_offered(&mut net);
        let now = net.now;
        net.uas[1].reject(now, b, 486).unwrap();
        net.flush();
        match &net.take(0)[..] {
            [Event::Failed { call, status: 486, reason }] => {
                assert_eq!(*call, a);
                assert_eq!(reason, "Busy Here");
            }
            other => panic!("{:?}", other),
        }
        assert!(matches!(net.take(1)[..], [Event::Ended { reason: EndReason::Rejected(486), .. }]));
        assert_eq!(net.sent(0, "ACK").len(), 1);
        assert_eq!(net.uas[1].reject(now, b, 486), Err(UaError::InvalidState("call is not ringing")));
        // B's INVITE server transaction got the ACK: no 486 retransmission.
        net.run_until(40_000);
        assert_eq!(net.sent(1, "SIP/2.0 486").len(), 1);
    }

    #[test]
    fn cancel_before_answer() {
        let mut net = pair(ProxyPolicy::default());
        let (a, b) = call_offered(&mut net);
        let now = net.now;
        net.uas[1].ringing(now, b).unwrap();
        net.flush();
        net.take(0);
        net.uas[0].hangup(now, a).unwrap();
        net.flush();
        assert!(matches!(net.take(1)[..], [Event::Ended { call, reason: EndReason::Cancelled }] if call == b));
        assert!(matches!(net.take(0)[..], [Event::Ended { call, reason: EndReason::LocalHangup }] if call == a));
        assert_eq!(net.sent(0, "CANCEL sip:2000@gw.test").len(), 1);
        assert_eq!(net.sent(1, "SIP/2.0 487").len(), 1);
        assert_eq!(net.sent(0, "ACK").len(), 1);
        assert_eq!(net.uas[1].answer(now, b, sdp(ANSWER)), Err(UaError::InvalidState("call is not ringing")));
        // The ACK for the 487 reached B's INVITE transaction: no 487 retransmission,
        // and a late CANCEL retransmission is answered from the CANCEL transaction.
        net.run_until(40_000);
        assert_eq!(net.sent(1, "SIP/2.0 487").len(), 1);
        assert_eq!(net.sent(1, "SIP/2.0 200").len(), 1);
        assert!(net.take(0).is_empty() && net.take(1).is_empty());
    }

    #[test]
    fn cancel_waits_for_a_provisional() {
        let mut net = pair(ProxyPolicy::default());
        let (a, b) = call_offered(&mut net);
        let now = net.now;
        // Only 100 Trying so far: §9.1 forbids CANCEL yet.
        net.uas[0].hangup(now, a).unwrap();
        net.flush();
        assert!(net.sent(0, "CANCEL").is_empty());
        net.uas[1].ringing(now, b).unwrap();
        net.flush();
        assert_eq!(net.sent(0, "CANCEL").len(), 1);
        assert!(matches!(net.take(1)[..], [Event::Ended { reason: EndReason::Cancelled, .. }]));
        assert!(matches!(net.take(0)[..], [Event::Ended { reason: EndReason::LocalHangup, .. }]), "no Ringing after hangup");
    }

    #[test]
    fn cancel_loses_race_against_200() {
        let mut net = pair(ProxyPolicy::default());
        let (a, b) = call_offered(&mut net);
        let now = net.now;
        net.uas[1].ringing(now, b).unwrap();
        net.flush();
        net.take(0);
        // Both act before either datagram crosses.
        net.uas[1].answer(now, b, sdp(ANSWER)).unwrap();
        net.uas[0].hangup(now, a).unwrap();
        net.flush();
        // B: CANCEL too late (200 to CANCEL, no 487); ACK then BYE from A.
        assert!(net.sent(1, "SIP/2.0 487").is_empty());
        assert_eq!(net.sent(0, "BYE").len(), 1);
        let eb = net.take(1);
        assert!(matches!(eb[..], [Event::Confirmed { .. }, Event::Ended { reason: EndReason::RemoteBye, .. }]), "{:?}", eb);
        let ea = net.take(0);
        assert!(matches!(ea[..], [Event::Ended { reason: EndReason::LocalHangup, .. }]), "{:?}", ea);
    }

    #[test]
    fn invite_with_proxy_auth_challenge() {
        let mut net = pair(ProxyPolicy { challenge: true, ..Default::default() });
        let (_a, _b) = call_offered(&mut net);
        assert_eq!(net.sent(0, "INVITE").len(), 2);
        assert_eq!(net.sent(0, "ACK").len(), 1, "407 is ACKed");
        assert_eq!(net.auth_ok, 1);
        assert_eq!(net.auth_bad, 0);
    }

    #[test]
    fn invite_with_wrong_password_fails_once() {
        let mut a = config("10.0.0.1:5060", "1001", "secret1", 0, 1);
        a.accounts[0].password = "wrong".into();
        let b = config("10.0.0.2:5060", "2000", "secret2", 0, 2);
        let mut net = Net::new(a, b, ProxyPolicy { challenge: true, ..Default::default() });
        net.passwords.insert("1001".into(), "secret1".into());
        let now = net.now;
        let call = net.uas[0].invite(now, "1001", "2000", sdp(OFFER)).unwrap();
        net.flush();
        match &net.take(0)[..] {
            [Event::Failed { call: c, status: 407, .. }] => assert_eq!(*c, call),
            other => panic!("{:?}", other),
        }
        assert_eq!(net.sent(0, "INVITE").len(), 2, "one retry, no loop");
    }

    #[test]
    fn invite_from_unknown_account() {
        let mut net = pair(ProxyPolicy::default());
        let now = net.now;
        assert_eq!(net.uas[0].invite(now, "9999", "2000", sdp(OFFER)), Err(UaError::NoAccount("9999".into())));
    }

    #[test]
    fn timer_b_fails_unanswered_invite() {
        let mut net = pair(ProxyPolicy::default());
        net.drop = Box::new(|t| t.starts_with("INVITE"));
        let now = net.now;
        let a = net.uas[0].invite(now, "1001", "2000", sdp(OFFER)).unwrap();
        net.run_until(31_999);
        assert!(net.take(0).is_empty());
        assert_eq!(net.sent(0, "INVITE"), vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        net.run_until(32_000);
        assert!(matches!(net.take(0)[..], [Event::Failed { call, status: 408, .. }] if call == a));
    }

    #[test]
    fn missing_ack_retransmits_200_then_byes() {
        let mut net = pair(ProxyPolicy::default());
        net.drop = Box::new(|t| t.starts_with("ACK"));
        let (_a, b) = call_offered(&mut net);
        let now = net.now;
        net.uas[1].answer(now, b, sdp(ANSWER)).unwrap();
        net.run_until(40_000);
        // §13.3.1.4: T1 doubling up to T2 until 64*T1.
        assert_eq!(net.sent(1, "SIP/2.0 200"), vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
        // A re-ACKs every retransmitted 2xx.
        assert_eq!(net.sent(0, "ACK").len(), 11);
        assert_eq!(net.sent(1, "BYE").first(), Some(&32_000));
        let eb = net.take(1);
        assert!(matches!(eb[..], [Event::Ended { reason: EndReason::Timeout, .. }]), "{:?}", eb);
        let ea = net.take(0);
        assert!(matches!(ea[..], [Event::Answered { .. }, Event::Ended { reason: EndReason::RemoteBye, .. }]), "{:?}", ea);
    }

    #[test]
    fn second_fork_2xx_is_acked_and_byed() {
        let mut net = pair(ProxyPolicy::default());
        let (a, _b) = call_established(&mut net);
        // Forge a 2xx from another fork: same INVITE, another To tag.
        let inv = net.uas[0].calls[&a].invite.clone().unwrap();
        let mut resp = wire::response_for(&inv, 200, Some("otherfork"));
        resp.headers.push(wire::hdr("Contact", "<sip:2000@10.0.0.7:5060>"));
        let now = net.now;
        net.uas[0].handle_datagram(now, proxy_addr(), &wire::response_bytes(&resp));
        let out: Vec<String> = std::iter::from_fn(|| net.uas[0].poll_transmit()).map(|t| String::from_utf8(t.payload).unwrap()).collect();
        assert_eq!(out.len(), 2, "{:?}", out);
        assert!(out[0].starts_with("ACK sip:2000@10.0.0.7:5060") && out[0].contains("tag=otherfork"), "{}", out[0]);
        assert!(out[1].starts_with("BYE sip:2000@10.0.0.7:5060") && out[1].contains("tag=otherfork"), "{}", out[1]);
        assert!(net.uas[0].poll_event().is_none(), "the first call is untouched");
        // A retransmission of the first 2xx re-sends the first ACK only.
        let mut first = wire::response_for(&inv, 200, None);
        let to = net.uas[0].calls[&a].dialog.as_ref().unwrap().id.remote_tag.clone();
        first.headers.retain(|h| !matches!(h, rsip::Header::To(_)));
        first.headers.push(wire::hdr("To", format!("<sip:2000@gw.test>;tag={}", to)));
        net.uas[0].handle_datagram(now, proxy_addr(), &wire::response_bytes(&first));
        let out: Vec<String> = std::iter::from_fn(|| net.uas[0].poll_transmit()).map(|t| first_line(&t.payload)).collect();
        assert_eq!(out, vec!["ACK sip:2000@10.0.0.2:5060 SIP/2.0".to_string()]);
    }

    #[test]
    fn hangup_before_ack_waits_for_ack() {
        let mut net = pair(ProxyPolicy::default());
        let (_a, b) = call_offered(&mut net);
        let now = net.now;
        net.uas[1].answer(now, b, sdp(ANSWER)).unwrap();
        net.uas[1].hangup(now, b).unwrap();
        // 200 is out, BYE must not be.
        let out: Vec<String> = std::iter::from_fn(|| net.uas[1].poll_transmit()).map(|t| first_line(&t.payload)).collect();
        assert!(out.iter().all(|l| !l.starts_with("BYE")), "{:?}", out);
    }

    // ----- registration -------------------------------------------------

    fn reg_pair(policy: ProxyPolicy, password: &str) -> Net {
        let mut a = config("10.0.0.1:5060", "1001", password, 3600, 1);
        a.accounts[0].auth_user = "1001".into();
        let b = config("10.0.0.2:5060", "2000", "secret2", 0, 2);
        let mut net = Net::new(a, b, policy);
        net.passwords.insert("1001".into(), "secret1".into());
        net
    }

    #[test]
    fn granted_expiry_comes_from_our_contact() {
        let mut ua = UserAgent::new(config("10.0.0.1:5060", "1001", "x", 3600, 3));
        let now = Instant::now();
        ua.start(now);
        let reg = match message::parse(&ua.poll_transmit().unwrap().payload) {
            Ok(message::Parsed::Message(rsip::SipMessage::Request(r))) => r,
            _ => panic!(),
        };
        assert_eq!(wire::value(&reg.headers, "Contact").as_deref(), Some("<sip:1001@10.0.0.1:5060>"));
        assert_eq!(wire::value(&reg.headers, "Expires").as_deref(), Some("3600"));
        assert!(wire::value(&reg.headers, "Via").unwrap().ends_with(";rport"));
        let mut ok = wire::response_for(&reg, 200, Some("r"));
        ok.headers.push(wire::hdr("Contact", "<sip:1001@10.0.0.9:5060>;expires=50, <sip:1001@10.0.0.1:5060;transport=udp>;expires=300"));
        ok.headers.push(wire::hdr("Expires", "999"));
        ua.handle_datagram(now, proxy_addr(), &wire::response_bytes(&ok));
        assert!(matches!(ua.poll_event(), Some(Event::Registered { expires: 300, .. })));
        // Timer K of the REGISTER transaction, then the refresh at 300 - 30 s.
        assert_eq!(ua.poll_timeout(), Some(now + Duration::from_secs(5)));
        ua.handle_timeout(now + Duration::from_secs(5));
        assert_eq!(ua.poll_timeout(), Some(now + Duration::from_secs(270)));
    }

    #[test]
    fn registration_and_refresh_timing() {
        let mut net = reg_pair(ProxyPolicy { grant: 120, ..Default::default() }, "secret1");
        let now = net.now;
        net.uas[0].start(now);
        net.flush();
        assert!(matches!(&net.take(0)[..], [Event::Registered { user, expires: 120 }] if user == "1001"));
        assert_eq!(net.uas[0].registration_state("1001"), Some(RegState::Registered { until: now + Duration::from_secs(120) }));
        assert_eq!(net.uas[0].registration_state("nobody"), None);
        net.run_until(200_000);
        // Refresh at 120 - min(60, 30) = 90 s, then every 90 s.
        assert_eq!(net.sent(0, "REGISTER sip:gw.test"), vec![0, 90_000, 180_000]);
    }

    #[test]
    fn registration_with_digest_and_unregister() {
        let mut net = reg_pair(ProxyPolicy { challenge: true, grant: 600, ..Default::default() }, "secret1");
        let now = net.now;
        net.uas[0].start(now);
        net.flush();
        assert!(matches!(&net.take(0)[..], [Event::Registered { expires: 600, .. }]));
        assert_eq!(net.auth_ok, 1);
        net.uas[0].stop(now);
        net.flush();
        assert_eq!(net.uas[0].registration_state("1001"), Some(RegState::Unregistered));
        // The unregister reuses the cached challenge (nc=2): one request.
        assert_eq!(net.sent(0, "REGISTER").len(), 3);
        assert_eq!(net.auth_ok, 2);
        // Only timer K of the last transaction is left; then nothing.
        net.run_until(10_000);
        assert_eq!(net.uas[0].poll_timeout(), None, "nothing left to do");
        assert_eq!(net.sent(0, "REGISTER").len(), 3, "no refresh after stop");
    }

    #[test]
    fn reconfigure_keeps_unchanged_bindings_and_registers_new_accounts() {
        let mut net = reg_pair(ProxyPolicy { grant: 600, ..Default::default() }, "secret1");
        let now = net.now;
        net.uas[0].start(now);
        net.flush();
        assert!(matches!(&net.take(0)[..], [Event::Registered { .. }]));
        assert_eq!(net.sent(0, "REGISTER").len(), 1);
        let mut changed = net.uas[0].config.clone();
        changed.accounts.push(Account { user: "1002".into(), auth_user: "1002".into(), password: "p2".into() });
        net.uas[0].reconfigure(now, changed).unwrap();
        net.flush();
        // Only the new account registers; 1001 keeps its binding untouched.
        assert_eq!(net.sent(0, "REGISTER").len(), 2);
        assert!(matches!(&net.take(0)[..], [Event::Registered { user, .. }] if user == "1002"));
        assert!(matches!(net.uas[0].registration_state("1001"), Some(RegState::Registered { .. })));
        assert!(matches!(net.uas[0].registration_state("1002"), Some(RegState::Registered { .. })));
    }

    #[test]
    fn reconfigure_re_registers_a_changed_account_and_unregisters_a_removed_one() {
        let mut net = reg_pair(ProxyPolicy { grant: 600, ..Default::default() }, "secret1");
        let now = net.now;
        net.uas[0].start(now);
        net.flush();
        net.take(0);
        let mut expires = Vec::new();
        let mut changed = net.uas[0].config.clone();
        changed.accounts = vec![Account { user: "1003".into(), auth_user: "1003".into(), password: "p3".into() }];
        net.uas[0].reconfigure(now, changed).unwrap();
        while let Some(t) = net.uas[0].poll_transmit() {
            let text = String::from_utf8_lossy(&t.payload).to_string();
            let user = text.lines().find(|l| l.starts_with("To:")).unwrap_or("").to_string();
            let e = text.lines().find(|l| l.starts_with("Expires:")).unwrap_or("").to_string();
            expires.push((user, e));
        }
        assert_eq!(expires.len(), 2, "{expires:?}");
        assert!(expires[0].0.contains("1001") && expires[0].1.ends_with(" 0"), "the removed account unregisters: {expires:?}");
        assert!(expires[1].0.contains("1003") && expires[1].1.ends_with(" 3600"), "the new one registers: {expires:?}");
        assert_eq!(net.uas[0].registration_state("1001"), None, "a removed account is gone from the status");
    }

    #[test]
    fn reconfigure_keeps_calls_and_refuses_a_new_local_address() {
        let mut net = pair(ProxyPolicy::default());
        let (a, b) = call_established(&mut net);
        let now = net.now;
        let mut moved = net.uas[0].config.clone();
        moved.local_addr = "10.0.0.9:5060".parse().unwrap();
        assert!(net.uas[0].reconfigure(now, moved).is_err());
        assert_eq!(net.uas[0].config.local_addr, "10.0.0.1:5060".parse().unwrap(), "a refused change changes nothing");
        let mut changed = net.uas[0].config.clone();
        changed.user_agent = "gw-test/2".into();
        changed.accounts.push(Account { user: "1009".into(), auth_user: "1009".into(), password: "x".into() });
        net.uas[0].reconfigure(now, changed).unwrap();
        assert_eq!(net.uas[0].call_count(), 1, "the call is still there");
        net.uas[0].hangup(now, a).unwrap();
        net.flush();
        assert!(net.take(1).iter().any(|e| matches!(e, Event::Ended { call, .. } if *call == b)), "the BYE reached the far end");
    }

    #[test]
    fn wrong_password_backs_off_doubling() {
        let mut net = reg_pair(ProxyPolicy { challenge: true, grant: 600, ..Default::default() }, "bad");
        let now = net.now;
        net.uas[0].start(now);
        net.run_until(12_000);
        let ev = net.take(0);
        let retries: Vec<(Option<u16>, Duration)> = ev
            .iter()
            .map(|e| match e {
                Event::RegistrationFailed { status, retry_in, .. } => (*status, *retry_in),
                other => panic!("{:?}", other),
            })
            .collect();
        let s = Duration::from_secs;
        assert_eq!(retries, vec![(Some(401), s(1)), (Some(401), s(2)), (Some(401), s(4)), (Some(401), s(4)), (Some(401), s(4))]);
        // Each attempt is one plain REGISTER plus one with credentials.
        let times = net.sent(0, "REGISTER");
        assert_eq!(times, vec![0, 0, 1000, 1000, 3000, 3000, 7000, 7000, 11000, 11000]);
        assert!(matches!(net.uas[0].registration_state("1001"), Some(RegState::Failed { status: Some(401), .. })));
    }

    #[test]
    fn registration_timeout_reports_none_status() {
        let mut net = reg_pair(ProxyPolicy { grant: 600, ..Default::default() }, "secret1");
        net.drop = Box::new(|t| t.starts_with("REGISTER"));
        let now = net.now;
        net.uas[0].start(now);
        net.run_until(32_000);
        assert!(matches!(&net.take(0)[..], [Event::RegistrationFailed { status: None, retry_in, .. }] if *retry_in == Duration::from_secs(1)));
    }

    // ----- requests injected by hand --------------------------------------

    fn inject(ua: &mut UserAgent, now: Instant, text: &str) -> Vec<String> {
        ua.handle_datagram(now, proxy_addr(), text.as_bytes());
        std::iter::from_fn(|| ua.poll_transmit())
            .map(|t| {
                assert_eq!(t.destination, proxy_addr(), "responses go to the source");
                String::from_utf8_lossy(&t.payload).to_string()
            })
            .collect()
    }

    fn req(method: &str, to_tag: Option<&str>, cseq: u32, call_id: &str) -> String {
        let to = match to_tag {
            Some(t) => format!("<sip:2000@gw.test>;tag={}", t),
            None => "<sip:2000@gw.test>".into(),
        };
        format!(
            "{m} sip:2000@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK{m}{c}\r\nMax-Forwards: 70\r\nFrom: <sip:9@gw.test>;tag=x1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {c} {m}\r\nContact: <sip:9@10.0.0.9>\r\nContent-Length: 0\r\n\r\n",
            m = method,
            c = cseq,
        )
    }

    #[test]
    fn options_unknown_and_stray_requests() {
        let mut ua = UserAgent::new(config("10.0.0.2:5060", "2000", "x", 0, 5));
        let now = Instant::now();
        let out = inject(&mut ua, now, &req("OPTIONS", None, 1, "o1"));
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with("SIP/2.0 200"), "{}", out[0]);
        assert!(out[0].contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"));
        assert!(out[0].contains("Accept: application/sdp"));
        // Retransmitted OPTIONS: same answer from the server transaction.
        let again = inject(&mut ua, now, &req("OPTIONS", None, 1, "o1"));
        assert_eq!(again, out);
        let out = inject(&mut ua, now, &req("BYE", Some("nope"), 2, "zz"));
        assert!(out[0].starts_with("SIP/2.0 481"), "{}", out[0]);
        let out = inject(&mut ua, now, &req("INFO", Some("nope"), 3, "zz"));
        assert!(out[0].starts_with("SIP/2.0 481"), "{}", out[0]);
        let out = inject(&mut ua, now, &req("CANCEL", None, 4, "zz"));
        assert!(out[0].starts_with("SIP/2.0 481"), "{}", out[0]);
        let out = inject(&mut ua, now, &req("FOOBAR", None, 5, "zz"));
        assert!(out[0].starts_with("SIP/2.0 501"), "{:?}", out);
        assert!(inject(&mut ua, now, &req("ACK", Some("nope"), 5, "zz")).is_empty(), "ACK never answered");
        let out = inject(&mut ua, now, "INVITE sip:2000@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKq\r\nCSeq: banana\r\n\r\n");
        assert!(out.iter().all(|o| o.starts_with("SIP/2.0 400")), "{:?}", out);
        assert!(ua.poll_event().is_none());
    }

    #[test]
    fn rfc4475_inv2543_and_longreq_are_taken_as_calls() {
        // RFC 4475 §3.1.1.7 and §3.4.1: no branch (RFC 2543 transaction
        // matching), no From tag, no Contact, no Max-Forwards.
        for (name, bytes) in [
            ("inv2543", &include_bytes!("../testdata/rfc4475/inv2543.dat")[..]),
            ("longreq", &include_bytes!("../testdata/rfc4475/longreq.dat")[..]),
        ] {
            let mut ua = UserAgent::new(config("10.0.0.2:5060", "2000", "x", 0, 5));
            let now = Instant::now();
            let text = std::str::from_utf8(bytes).unwrap();
            let out = inject(&mut ua, now, text);
            assert!(out.iter().all(|o| o.starts_with("SIP/2.0 100")), "{name}: {out:?}");
            let Some(Event::IncomingCall { call, .. }) = ua.poll_event() else { panic!("{name}: no call") };
            // The retransmission is absorbed by the same transaction.
            let again = inject(&mut ua, now, text);
            assert!(again.iter().all(|o| o.starts_with("SIP/2.0 100")), "{name}: {again:?}");
            assert!(ua.poll_event().is_none(), "{name}: a retransmission is not a new call");
            ua.reject(now, call, 486).unwrap();
            let out: Vec<String> = std::iter::from_fn(|| ua.poll_transmit()).map(|t| String::from_utf8_lossy(&t.payload).to_string()).collect();
            assert!(out.iter().any(|o| o.starts_with("SIP/2.0 486")), "{name}: {out:?}");
            let tag = out[0].lines().find(|l| l.starts_with("To:") || l.starts_with("t:")).and_then(|l| l.split(";tag=").nth(1)).unwrap().to_string();
            // The RFC 2543 ACK (same Via, no branch) ends the transaction: no more 486.
            let ack = format!(
                "ACK {} SIP/2.0\r\n{}\r\nContent-Length: 0\r\n\r\n",
                text.lines().next().unwrap().split(' ').nth(1).unwrap(),
                text.lines()
                    .filter(|l| l.starts_with("Via") || l.starts_with("From:") || l.starts_with("Call-ID:") || l.starts_with("To:"))
                    .map(|l| if l.starts_with("To:") { format!("{l};tag={tag}") } else { l.to_string() })
                    .chain([format!("CSeq: {} ACK", text.lines().find(|l| l.starts_with("CSeq:")).unwrap().split_whitespace().nth(1).unwrap())])
                    .collect::<Vec<_>>()
                    .join("\r\n"),
            );
            if name == "inv2543" {
                assert!(inject(&mut ua, now, &ack).is_empty(), "{name}");
                let mut t = now;
                let mut resent = 0;
                for _ in 0..40 {
                    t += Duration::from_millis(500);
                    ua.handle_timeout(t);
                    resent += std::iter::from_fn(|| ua.poll_transmit()).count();
                }
                assert_eq!(resent, 0, "{name}: the ACK matched, no 486 retransmission");
            }
        }
    }

    #[test]
    fn tables_are_bounded_and_the_proxy_keeps_a_reserve() {
        let mut ua = UserAgent::new(config("10.0.0.2:5060", "2000", "x", 0, 5));
        let now = Instant::now();
        let stranger: SocketAddr = "10.9.9.9:5060".parse().unwrap();
        let mut refused = 0;
        for i in 0..(MAX_SERVER_TRANSACTIONS as u32 + 500) {
            ua.handle_datagram(now, stranger, req("OPTIONS", None, i, &format!("o{i}")).as_bytes());
            for t in std::iter::from_fn(|| ua.poll_transmit()) {
                if t.payload.starts_with(b"SIP/2.0 503") {
                    refused += 1;
                }
            }
        }
        assert_eq!(ua.load().0, MAX_SERVER_TRANSACTIONS);
        assert_eq!((refused, ua.load().2), (500, 500));
        // The proxy still gets through...
        let out = inject(&mut ua, now, &req("OPTIONS", None, 999_999, "from-proxy"));
        assert!(out[0].starts_with("SIP/2.0 200"), "{out:?}");
        // ... and once the transactions end (Timer J, 32 s), so do strangers.
        ua.handle_timeout(now + Duration::from_secs(33));
        while ua.poll_transmit().is_some() {}
        assert_eq!(ua.load().0, 0);
        ua.handle_datagram(now, stranger, req("OPTIONS", None, 999_998, "again").as_bytes());
        assert!(ua.poll_transmit().unwrap().payload.starts_with(b"SIP/2.0 200"));
        // Calls: past MAX_CALLS, a new INVITE from a stranger gets 503.
        let mut ua = UserAgent::new(config("10.0.0.2:5060", "2000", "x", 0, 5));
        let invite = |i: u32| req("INVITE", None, 1, &format!("c{i}")).replace("branch=z9hG4bKINVITE1", &format!("branch=z9hG4bKc{i}"));
        for i in 0..MAX_CALLS as u32 + 3 {
            ua.handle_datagram(now, stranger, invite(i).as_bytes());
        }
        let out: Vec<_> = std::iter::from_fn(|| ua.poll_transmit()).filter(|t| t.payload.starts_with(b"SIP/2.0 503")).collect();
        assert_eq!(out.len(), 3);
        assert_eq!(ua.load().1, MAX_CALLS);
    }

    #[test]
    fn require_gets_420_and_foreign_responses_are_dropped() {
        let mut ua = UserAgent::new(config("10.0.0.2:5060", "2000", "x", 0, 5));
        let now = Instant::now();
        let r = req("INVITE", None, 1, "r1").replace("Content-Length: 0", "Require: 100rel, timer\r\nContent-Length: 0");
        let out = inject(&mut ua, now, &r);
        let last = out.last().unwrap();
        assert!(last.starts_with("SIP/2.0 420"), "{:?}", out);
        assert!(last.contains("Unsupported: 100rel, timer"), "{}", last);
        assert!(ua.poll_event().is_none(), "no call offered");
        // A response with two Vias is not ours (§8.1.3.3): no ACK, no event.
        let mut a = UserAgent::new(config("10.0.0.1:5060", "1001", "x", 0, 6));
        a.invite(now, "1001", "2000", sdp(OFFER)).unwrap();
        let inv = a.poll_transmit().unwrap().payload;
        let inv = match message::parse(&inv) {
            Ok(message::Parsed::Message(rsip::SipMessage::Request(r))) => r,
            _ => panic!(),
        };
        let mut resp = wire::response_for(&inv, 486, Some("t"));
        resp.headers.push(wire::hdr("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKzz"));
        a.handle_datagram(now, proxy_addr(), &wire::response_bytes(&resp));
        assert!(a.poll_transmit().is_none());
        assert!(a.poll_event().is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let mut ua = UserAgent::new(config("10.0.0.2:5060", "2000", "x", 60, 5));
        let now = Instant::now();
        ua.start(now);
        let base = req("INVITE", None, 1, "g1").into_bytes();
        for cut in 0..base.len() {
            ua.handle_datagram(now, proxy_addr(), &base[..cut]);
        }
        for b in [&b""[..], b"\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", b"\xff\xfe\x00", b"SIP/2.0 999 X\r\nVia: a\r\nCSeq: 1\r\n\r\n"] {
            ua.handle_datagram(now, proxy_addr(), b);
        }
        while ua.poll_transmit().is_some() {}
        while ua.poll_event().is_some() {}
        ua.handle_timeout(now + Duration::from_secs(100));
    }

    /// Builds a request in A's dialog of call `a` (as a peer would send it).
    fn in_dialog(net: &mut Net, a: CallHandle, method: rsip::Method, body: &str) -> rsip::Request {
        let via = net.uas[0].via();
        let d = net.uas[0].calls.get_mut(&a).unwrap().dialog.as_mut().unwrap();
        let mut r = d.build_request(method, &via);
        r.headers.push(wire::hdr("Contact", "<sip:1001@10.0.0.1:5060>"));
        wire::set_body(&mut r.headers, body.as_bytes(), if body.is_empty() { None } else { Some("application/sdp") });
        r.body = body.as_bytes().to_vec();
        r
    }

    fn text(r: &rsip::Request) -> String {
        String::from_utf8(wire::request_bytes(r)).unwrap()
    }

    #[test]
    fn reinvite_answered_with_bumped_version_until_acked() {
        let mut net = pair(ProxyPolicy::default());
        let (a, _b) = call_established(&mut net);
        let now = net.now;
        let r = in_dialog(&mut net, a, rsip::Method::Invite, OFFER);
        let out = inject(&mut net.uas[1], now, &text(&r));
        let ok = out.iter().find(|o| o.starts_with("SIP/2.0 200")).expect("200 to re-INVITE");
        assert!(ok.contains("o=- 7 8 IN IP4 10.0.0.2"), "{}", ok);
        // A second re-INVITE before the ACK: 491 (§14.2).
        let r2 = in_dialog(&mut net, a, rsip::Method::Invite, OFFER);
        let out = inject(&mut net.uas[1], now, &text(&r2));
        assert!(out.iter().any(|o| o.starts_with("SIP/2.0 491")), "{:?}", out);
        // Unacknowledged 2xx is retransmitted...
        let t1 = now + Duration::from_millis(500);
        net.uas[1].handle_timeout(t1);
        let again: Vec<String> = std::iter::from_fn(|| net.uas[1].poll_transmit()).map(|t| first_line(&t.payload)).collect();
        // (the 491 is retransmitted too: its ACK never came, timer G)
        assert_eq!(again.iter().filter(|l| l.starts_with("SIP/2.0 200")).count(), 1, "{:?}", again);
        // ...until the ACK with its CSeq.
        let via = net.uas[0].via();
        let n = wire::cseq(&r.headers).unwrap().0;
        let ack = net.uas[0].calls[&a].dialog.as_ref().unwrap().build_ack(&via, n);
        assert!(inject(&mut net.uas[1], t1, &text(&ack)).is_empty());
        net.uas[1].handle_timeout(t1 + Duration::from_secs(10));
        assert!(std::iter::from_fn(|| net.uas[1].poll_transmit()).all(|t| !first_line(&t.payload).starts_with("SIP/2.0 200")));
        // An old CSeq (not a retransmission: new branch) -> 500 (§12.2.2).
        let d = net.uas[0].calls.get_mut(&a).unwrap().dialog.as_mut().unwrap();
        d.local_seq -= 2;
        let r3 = in_dialog(&mut net, a, rsip::Method::Invite, OFFER);
        let out = inject(&mut net.uas[1], t1, &text(&r3));
        assert!(out.iter().any(|o| o.starts_with("SIP/2.0 500")), "{:?}", out);
        // Unsupported method inside a known dialog -> 405 with Allow.
        let info = in_dialog(&mut net, a, rsip::Method::Info, "");
        let out = inject(&mut net.uas[1], t1, &text(&info));
        assert!(out[0].starts_with("SIP/2.0 405") && out[0].contains("Allow:"), "{:?}", out);
        // The one accepted re-INVITE's offer went to the call control; nothing else did.
        assert!(matches!(net.uas[1].poll_event(), Some(Event::RemoteOffer { .. })));
        assert!(net.uas[1].poll_event().is_none());
    }

    #[test]
    fn reinvite_for_hold_is_answered_with_the_mirrored_direction_and_reported() {
        let mut net = pair(ProxyPolicy::default());
        let (a, b) = call_established(&mut net);
        let now = net.now;
        let hold = OFFER.replace("a=rtpmap:8 PCMA/8000\r\n", "a=rtpmap:8 PCMA/8000\r\na=sendonly\r\n").replace("4000", "4002");
        let r = in_dialog(&mut net, a, rsip::Method::Invite, &hold);
        let out = inject(&mut net.uas[1], now, &text(&r));
        let ok = out.iter().find(|o| o.starts_with("SIP/2.0 200")).expect("200 to re-INVITE");
        assert!(ok.contains("a=recvonly"), "hold answered recvonly: {ok}");
        match net.uas[1].poll_event() {
            Some(Event::RemoteOffer { call, offer }) => {
                assert_eq!(call, b);
                assert_eq!(offer.media[0].direction, sdp::Direction::SendOnly);
                assert_eq!(offer.media[0].port, 4002);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retransmitted_invite_after_200_is_not_a_new_call() {
        let mut net = pair(ProxyPolicy::default());
        net.drop = Box::new(|t| t.starts_with("SIP/2.0 200"));
        let now = net.now;
        let _a = net.uas[0].invite(now, "1001", "2000", sdp(OFFER)).unwrap();
        net.flush();
        let b = match net.take(1)[..] {
            [Event::IncomingCall { call, .. }] => call,
            ref other => panic!("{:?}", other),
        };
        net.uas[1].answer(now, b, sdp(ANSWER)).unwrap();
        // The 200s are lost (B retransmits them meanwhile).
        net.run_until(2_000);
        assert_eq!(net.sent(1, "SIP/2.0 200").len(), 3);
        // Re-deliver the original INVITE by hand, as a proxy retransmission would.
        let inv = String::from_utf8(wire::request_bytes(net.uas[0].calls.values().next().unwrap().invite.as_ref().unwrap())).unwrap();
        let out = inject(&mut net.uas[1], net.now, &inv);
        assert!(out.is_empty(), "absorbed in Accepted: {:?}", out);
        assert!(net.take(1).iter().all(|e| !matches!(e, Event::IncomingCall { .. })));
    }

    #[test]
    fn bump_version_only_touches_origin() {
        assert_eq!(bump_sdp_version("v=0\r\no=- 5 9 IN IP4 1.2.3.4\r\ns=9\r\n"), "v=0\r\no=- 5 10 IN IP4 1.2.3.4\r\ns=9\r\n");
    }

    #[test]
    fn same_seed_same_wire() {
        let run = || {
            let mut ua = UserAgent::new(config("10.0.0.1:5060", "1001", "x", 0, 42));
            let now = Instant::now();
            ua.invite(now, "1001", "2000", sdp(OFFER)).unwrap();
            ua.poll_transmit().unwrap().payload
        };
        assert_eq!(run(), run());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Messages a UA in the middle of a call could plausibly see.
        fn templates() -> Vec<String> {
            vec![
                req("INVITE", None, 1, "f1"),
                req("BYE", Some("x"), 2, "f1"),
                req("CANCEL", None, 1, "f1"),
                req("OPTIONS", None, 3, "f2"),
                req("ACK", Some("x"), 1, "f1"),
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport\r\nFrom: <sip:1001@gw.test>;tag=a\r\nTo: <sip:2000@gw.test>;tag=b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:2000@10.0.0.2>\r\nRecord-Route: <sip:p;lr>\r\nContent-Length: 0\r\n\r\n".to_string(),
                format!("SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:1001@gw.test>;tag=a\r\nTo: <sip:1001@gw.test>;tag=b\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: {}\r\nContent-Length: 0\r\n\r\n", CHALLENGE),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
            #[test]
            fn mutated_messages_never_panic(
                which in 0usize..7,
                edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
                cut in any::<usize>(),
            ) {
                let mut net = pair(ProxyPolicy { record_route: true, ..Default::default() });
                let (_a, _b) = call_established(&mut net);
                let mut bytes = templates()[which].clone().into_bytes();
                for (i, b) in edits {
                    let n = bytes.len();
                    bytes[i % n] = b;
                }
                let keep = bytes.len() - cut % (bytes.len() / 4 + 1);
                bytes.truncate(keep);
                let now = net.now;
                for ua in net.uas.iter_mut() {
                    ua.handle_datagram(now, proxy_addr(), &bytes);
                }
                net.run_until(70_000);
                // Whatever happened, the UAs settle: nothing left to do.
                for ua in &net.uas {
                    prop_assert!(ua.poll_timeout().is_none());
                }
            }
        }
    }
}
