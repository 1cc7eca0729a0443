//! RFC 3261 §17 transactions over UDP: the four state machines and how
//! messages are matched to them.
//!
//! - [`ClientInviteTransaction`]: §17.1.1 (Figure 5), timers A, B, D; it builds
//!   and sends the ACK for non-2xx final responses itself (§17.1.1.3).
//! - [`ClientNonInviteTransaction`]: §17.1.2 (Figure 6), timers E, F, K.
//! - [`ServerInviteTransaction`]: §17.2.1 (Figure 7), timers G, H, I; it
//!   answers `100 Trying` at once.
//! - [`ServerNonInviteTransaction`]: §17.2.2 (Figure 8), timer J.
//!
//! A 2xx to an INVITE ends the client INVITE transaction (RFC 3261
//! behaviour: the UA core ACKs retransmitted 2xx through the dialog,
//! §13.2.2.4). The server INVITE transaction moves to RFC 6026's Accepted
//! state (timer L) so that a retransmitted INVITE is absorbed rather than
//! taken for a new call; the UA core retransmits its 2xx (§13.3.1.4).
//!
//! Each transaction is sans-IO: inputs carry `now`; after any input drain
//! [`poll_transmit`](ClientInviteTransaction::poll_transmit) and
//! `poll_event`, then call `handle_timeout` at `poll_timeout()`. Matching of
//! incoming messages to transactions (§17.1.3, §17.2.3) is [`TransactionKey`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire;

/// The RFC 3261 §17.1.1.1 / Table 4 timer base values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// Maximum duration a message remains in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: timers B, F, H and J (and the 2xx give-up of §13.3.1.4).
    pub fn timeout_64t1(&self) -> Duration {
        self.t1 * 64
    }
    /// Timer D: at least 32 s over UDP (§17.1.1.2), or 64*T1 if that is larger.
    pub fn timer_d(&self) -> Duration {
        Duration::from_secs(32).max(self.timeout_64t1())
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// Identity of a transaction (§17.1.3, §17.2.3): the top Via branch, its
/// sent-by and the method, with ACK mapped to INVITE so that an ACK for a
/// non-2xx response finds its INVITE server transaction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionKey {
    pub branch: String,
    pub sent_by: String,
    pub method: String,
}

impl TransactionKey {
    fn build(headers: &rsip::Headers, method: &str) -> Option<Self> {
        let branch = wire::top_branch(headers)?;
        let sent_by = wire::top_sent_by(headers).unwrap_or_default();
        let method = method.to_ascii_uppercase();
        let method = if method == "ACK" { "INVITE".to_string() } else { method };
        Some(TransactionKey { branch, sent_by, method })
    }

    /// Key of a request (client side when we send it, server side when we receive it).
    ///
    /// A request whose top Via has no branch comes from an RFC 2543
    /// element (RFC 4475 §3.1.1.7 `longreq`, §3.4.1 `inv2543`); §17.2.3 then
    /// matches transactions on the Request-URI, From tag, Call-ID, CSeq
    /// number and top Via, which together stand in for the branch. (The To
    /// tag is left out so that the ACK of a non-2xx final, which carries our
    /// tag, finds its INVITE.)
    pub fn from_request(req: &rsip::Request) -> Option<Self> {
        let method = req.method.to_string();
        if let Some(k) = Self::build(&req.headers, &method) {
            return Some(k);
        }
        let via = wire::list(&req.headers, "Via").into_iter().next()?;
        let call_id = wire::value(&req.headers, "Call-ID")?;
        let (seq, _) = wire::cseq(&req.headers)?;
        let from_tag = wire::tag(&req.headers, "From").unwrap_or_default();
        let sent_by = wire::top_sent_by(&req.headers).unwrap_or_default();
        let method = method.to_ascii_uppercase();
        let method = if method == "ACK" { "INVITE".to_string() } else { method };
        let branch = format!("rfc2543|{}|{}|{}|{}|{}", req.uri, from_tag, call_id.trim(), seq, via.trim());
        Some(TransactionKey { branch, sent_by, method })
    }

    /// Key of a response: branch of the top Via plus the CSeq method (§17.1.3).
    pub fn from_response(resp: &rsip::Response) -> Option<Self> {
        let (_, method) = wire::cseq(&resp.headers)?;
        Self::build(&resp.headers, &method)
    }

    /// The key of the INVITE transaction a CANCEL targets (§9.2).
    pub fn invite_of_cancel(&self) -> Self {
        TransactionKey { method: "INVITE".into(), ..self.clone() }
    }
}

/// What a client transaction reports to its transaction user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A response the TU must see (provisional, first final; retransmitted
    /// finals are absorbed).
    Response(rsip::Response),
    /// Timer B or F fired: no final response.
    Timeout,
}

/// What a server transaction reports to its transaction user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// Timer H fired: no ACK for our non-2xx final response (§17.2.1).
    Timeout,
}

/// §17.1.1.2 / Figure 5 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Completed,
    Terminated,
}

/// RFC 3261 §17.1.1 INVITE client transaction.
#[derive(Debug)]
pub struct ClientInviteTransaction {
    state: ClientInviteState,
    timers: TimerConfig,
    request: rsip::Request,
    destination: SocketAddr,
    payload: Vec<u8>,
    /// Timer A: next fire time and current interval.
    timer_a: Option<(Instant, Duration)>,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    ack: Option<Vec<u8>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl ClientInviteTransaction {
    /// Creates the transaction and sends the INVITE (state Calling, timers A and B started).
    pub fn new(now: Instant, request: rsip::Request, destination: SocketAddr, timers: TimerConfig) -> Self {
        let payload = wire::request_bytes(&request);
        let mut t = ClientInviteTransaction {
            state: ClientInviteState::Calling,
            timers,
            request,
            destination,
            payload: payload.clone(),
            timer_a: Some((now + timers.t1, timers.t1)),
            timer_b: Some(now + timers.timeout_64t1()),
            timer_d: None,
            ack: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        t.transmits.push_back(Transmit { destination, payload });
        t
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// The INVITE this transaction carries (for CANCEL and ACK construction).
    pub fn request(&self) -> &rsip::Request {
        &self.request
    }

    pub fn key(&self) -> Option<TransactionKey> {
        TransactionKey::from_request(&self.request)
    }

    /// A response matched to this transaction (§17.1.1.2).
    pub fn handle_response(&mut self, _now: Instant, resp: rsip::Response) {
        let code = resp.status_code.code();
        match self.state {
            ClientInviteState::Calling | ClientInviteState::Proceeding => {
                if code < 200 {
                    // §17.1.1.2: timer B guards the Calling state only; a
                    // call may ring for minutes once it is Proceeding.
                    self.state = ClientInviteState::Proceeding;
                    self.timer_a = None;
                    self.timer_b = None;
                    self.events.push_back(ClientEvent::Response(resp));
                } else if code < 300 {
                    // 2xx: the TU (dialog) sends the ACK; transaction over.
                    self.terminate();
                    self.events.push_back(ClientEvent::Response(resp));
                } else {
                    let ack = self.build_ack(&resp);
                    self.ack = Some(ack.clone());
                    self.transmits.push_back(Transmit { destination: self.destination, payload: ack });
                    self.state = ClientInviteState::Completed;
                    self.timer_a = None;
                    self.timer_b = None;
                    self.timer_d = Some(_now + self.timers.timer_d());
                    self.events.push_back(ClientEvent::Response(resp));
                }
            }
            ClientInviteState::Completed => {
                // Retransmitted final response: ACK again, do not tell the TU.
                if code >= 300 {
                    if let Some(ack) = &self.ack {
                        self.transmits.push_back(Transmit { destination: self.destination, payload: ack.clone() });
                    }
                }
            }
            ClientInviteState::Terminated => {}
        }
    }

    /// §17.1.1.3: the ACK for a non-2xx final response has the INVITE's
    /// Request-URI, Call-ID, From, CSeq number, top Via and Route, and the
    /// response's To (with its tag).
    fn build_ack(&self, resp: &rsip::Response) -> Vec<u8> {
        let mut headers = rsip::Headers::default();
        if let Some(via) = wire::list(&self.request.headers, "Via").into_iter().next() {
            headers.push(wire::hdr("Via", via));
        }
        for r in wire::values(&self.request.headers, "Route") {
            headers.push(wire::hdr("Route", r));
        }
        headers.push(wire::hdr("Max-Forwards", "70"));
        if let Some(v) = wire::value(&self.request.headers, "From") {
            headers.push(wire::hdr("From", v));
        }
        if let Some(v) = wire::value(&resp.headers, "To") {
            headers.push(wire::hdr("To", v));
        }
        if let Some(v) = wire::value(&self.request.headers, "Call-ID") {
            headers.push(wire::hdr("Call-ID", v));
        }
        let n = wire::cseq(&self.request.headers).map(|c| c.0).unwrap_or(1);
        headers.push(wire::hdr("CSeq", format!("{} ACK", n)));
        headers.push(wire::hdr("Content-Length", "0"));
        let ack = rsip::Request {
            method: rsip::Method::Ack,
            uri: self.request.uri.clone(),
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        };
        wire::request_bytes(&ack)
    }

    /// §9.1: after a CANCEL the INVITE's final response (487) is awaited
    /// for 64*T1 at most, in any state: the transaction then times out.
    pub fn expect_final_within(&mut self, now: Instant) {
        if matches!(self.state, ClientInviteState::Calling | ClientInviteState::Proceeding) {
            self.timer_b = Some(now + self.timers.timeout_64t1());
        }
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, interval)) = self.timer_a {
            if now >= at && self.state == ClientInviteState::Calling {
                self.transmits.push_back(Transmit { destination: self.destination, payload: self.payload.clone() });
                let next = interval * 2;
                self.timer_a = Some((at + next, next));
            }
        }
        if let Some(at) = self.timer_b {
            if now >= at {
                self.terminate();
                self.events.push_back(ClientEvent::Timeout);
            }
        }
        if let Some(at) = self.timer_d {
            if now >= at {
                self.terminate();
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.timer_a.map(|a| a.0), self.timer_b, self.timer_d].into_iter().flatten().min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }
}

/// §17.1.2.2 / Figure 6 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// RFC 3261 §17.1.2 non-INVITE client transaction.
#[derive(Debug)]
pub struct ClientNonInviteTransaction {
    state: ClientNonInviteState,
    timers: TimerConfig,
    request: rsip::Request,
    destination: SocketAddr,
    payload: Vec<u8>,
    timer_e: Option<(Instant, Duration)>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl ClientNonInviteTransaction {
    /// Creates the transaction and sends the request (state Trying, timers E and F started).
    pub fn new(now: Instant, request: rsip::Request, destination: SocketAddr, timers: TimerConfig) -> Self {
        let payload = wire::request_bytes(&request);
        let mut t = ClientNonInviteTransaction {
            state: ClientNonInviteState::Trying,
            timers,
            request,
            destination,
            payload: payload.clone(),
            timer_e: Some((now + timers.t1, timers.t1)),
            timer_f: Some(now + timers.timeout_64t1()),
            timer_k: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        t.transmits.push_back(Transmit { destination, payload });
        t
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    pub fn request(&self) -> &rsip::Request {
        &self.request
    }

    pub fn key(&self) -> Option<TransactionKey> {
        TransactionKey::from_request(&self.request)
    }

    pub fn handle_response(&mut self, now: Instant, resp: rsip::Response) {
        let code = resp.status_code.code();
        match self.state {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => {
                if code < 200 {
                    if self.state == ClientNonInviteState::Trying {
                        self.state = ClientNonInviteState::Proceeding;
                    }
                    self.events.push_back(ClientEvent::Response(resp));
                } else {
                    self.state = ClientNonInviteState::Completed;
                    self.timer_e = None;
                    self.timer_f = None;
                    // Timer K = T4 for UDP.
                    self.timer_k = Some(now + self.timers.t4);
                    self.events.push_back(ClientEvent::Response(resp));
                }
            }
            ClientNonInviteState::Completed | ClientNonInviteState::Terminated => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, interval)) = self.timer_e {
            if now >= at {
                self.transmits.push_back(Transmit { destination: self.destination, payload: self.payload.clone() });
                // Trying: double up to T2; Proceeding: every T2 (§17.1.2.2).
                let next = match self.state {
                    ClientNonInviteState::Proceeding => self.timers.t2,
                    _ => (interval * 2).min(self.timers.t2),
                };
                self.timer_e = Some((at + next, next));
            }
        }
        if let Some(at) = self.timer_f {
            if now >= at {
                self.state = ClientNonInviteState::Terminated;
                self.timer_e = None;
                self.timer_f = None;
                self.events.push_back(ClientEvent::Timeout);
            }
        }
        if let Some(at) = self.timer_k {
            if now >= at {
                self.state = ClientNonInviteState::Terminated;
                self.timer_k = None;
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.timer_e.map(|e| e.0), self.timer_f, self.timer_k].into_iter().flatten().min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }
}

/// §17.2.1 / Figure 7 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    /// RFC 6026 §7.1: a 2xx was sent; retransmitted INVITEs are absorbed
    /// (the TU retransmits the 2xx) until timer L.
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// RFC 3261 §17.2.1 INVITE server transaction.
#[derive(Debug)]
pub struct ServerInviteTransaction {
    state: ServerInviteState,
    timers: TimerConfig,
    request: rsip::Request,
    reply_to: SocketAddr,
    last_response: Option<Vec<u8>>,
    last_status: u16,
    timer_g: Option<(Instant, Duration)>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
}

impl ServerInviteTransaction {
    /// Creates the transaction for a received INVITE and answers `100 Trying`
    /// (§17.2.1: we do not wait 200 ms, the TU always takes longer).
    pub fn new(_now: Instant, request: rsip::Request, reply_to: SocketAddr, timers: TimerConfig) -> Self {
        let mut t = ServerInviteTransaction {
            state: ServerInviteState::Proceeding,
            timers,
            request,
            reply_to,
            last_response: None,
            last_status: 0,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        let trying = wire::response_for(&t.request, 100, None);
        t.send(wire::response_bytes(&trying), 100);
        t
    }

    fn send(&mut self, bytes: Vec<u8>, status: u16) {
        self.last_response = Some(bytes.clone());
        self.last_status = status;
        self.transmits.push_back(Transmit { destination: self.reply_to, payload: bytes });
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    pub fn request(&self) -> &rsip::Request {
        &self.request
    }

    /// Status of the last response sent (100 right after creation).
    pub fn last_status(&self) -> u16 {
        self.last_status
    }

    pub fn key(&self) -> Option<TransactionKey> {
        TransactionKey::from_request(&self.request)
    }

    /// A response from the TU. Ignored unless in Proceeding.
    pub fn send_response(&mut self, now: Instant, resp: &rsip::Response) {
        if self.state != ServerInviteState::Proceeding {
            return;
        }
        let code = resp.status_code.code();
        self.send(wire::response_bytes(resp), code);
        if (200..300).contains(&code) {
            // RFC 6026 §8.5: Accepted, timer L = 64*T1.
            self.state = ServerInviteState::Accepted;
            self.timer_l = Some(now + self.timers.timeout_64t1());
        } else if code >= 300 {
            self.state = ServerInviteState::Completed;
            self.timer_g = Some((now + self.timers.t1, self.timers.t1));
            self.timer_h = Some(now + self.timers.timeout_64t1());
        }
    }

    /// A retransmission of the INVITE, or the ACK for our non-2xx response.
    pub fn handle_request(&mut self, now: Instant, req: &rsip::Request) {
        if req.method == rsip::Method::Ack {
            if self.state == ServerInviteState::Completed {
                self.state = ServerInviteState::Confirmed;
                self.timer_g = None;
                self.timer_h = None;
                // Timer I = T4 for UDP.
                self.timer_i = Some(now + self.timers.t4);
            }
            return;
        }
        if matches!(self.state, ServerInviteState::Proceeding | ServerInviteState::Completed) {
            if let Some(last) = self.last_response.clone() {
                self.transmits.push_back(Transmit { destination: self.reply_to, payload: last });
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((at, interval)) = self.timer_g {
            if now >= at && self.state == ServerInviteState::Completed {
                if let Some(last) = self.last_response.clone() {
                    self.transmits.push_back(Transmit { destination: self.reply_to, payload: last });
                }
                let next = (interval * 2).min(self.timers.t2);
                self.timer_g = Some((at + next, next));
            }
        }
        if let Some(at) = self.timer_h {
            if now >= at {
                self.state = ServerInviteState::Terminated;
                self.timer_g = None;
                self.timer_h = None;
                self.events.push_back(ServerEvent::Timeout);
            }
        }
        if let Some(at) = self.timer_i {
            if now >= at {
                self.state = ServerInviteState::Terminated;
                self.timer_i = None;
            }
        }
        if let Some(at) = self.timer_l {
            if now >= at {
                self.state = ServerInviteState::Terminated;
                self.timer_l = None;
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.timer_g.map(|g| g.0), self.timer_h, self.timer_i, self.timer_l].into_iter().flatten().min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }
}

/// §17.2.2 / Figure 8 states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// RFC 3261 §17.2.2 non-INVITE server transaction.
#[derive(Debug)]
pub struct ServerNonInviteTransaction {
    state: ServerNonInviteState,
    timers: TimerConfig,
    request: rsip::Request,
    reply_to: SocketAddr,
    last_response: Option<Vec<u8>>,
    timer_j: Option<Instant>,
    transmits: VecDeque<Transmit>,
}

impl ServerNonInviteTransaction {
    pub fn new(_now: Instant, request: rsip::Request, reply_to: SocketAddr, timers: TimerConfig) -> Self {
        ServerNonInviteTransaction {
            state: ServerNonInviteState::Trying,
            timers,
            request,
            reply_to,
            last_response: None,
            timer_j: None,
            transmits: VecDeque::new(),
        }
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    pub fn request(&self) -> &rsip::Request {
        &self.request
    }

    pub fn send_response(&mut self, now: Instant, resp: &rsip::Response) {
        if matches!(self.state, ServerNonInviteState::Completed | ServerNonInviteState::Terminated) {
            return;
        }
        let bytes = wire::response_bytes(resp);
        self.last_response = Some(bytes.clone());
        self.transmits.push_back(Transmit { destination: self.reply_to, payload: bytes });
        if resp.status_code.code() < 200 {
            self.state = ServerNonInviteState::Proceeding;
        } else {
            self.state = ServerNonInviteState::Completed;
            // Timer J = 64*T1 for UDP.
            self.timer_j = Some(now + self.timers.timeout_64t1());
        }
    }

    /// A retransmission of the request: resend the last response, if any.
    pub fn handle_request(&mut self, _now: Instant, _req: &rsip::Request) {
        if matches!(self.state, ServerNonInviteState::Proceeding | ServerNonInviteState::Completed) {
            if let Some(last) = self.last_response.clone() {
                self.transmits.push_back(Transmit { destination: self.reply_to, payload: last });
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(at) = self.timer_j {
            if now >= at {
                self.state = ServerNonInviteState::Terminated;
                self.timer_j = None;
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "192.0.2.1:5060".parse().unwrap()
    }

    fn parse_req(s: &str) -> rsip::Request {
        match rsip::SipMessage::try_from(s).unwrap() {
            rsip::SipMessage::Request(r) => r,
            _ => panic!("not a request"),
        }
    }

    fn invite() -> rsip::Request {
        parse_req(
            "INVITE sip:2000@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n\
             Max-Forwards: 70\r\n\
             Route: <sip:proxy.example.com;lr>\r\n\
             From: <sip:1001@example.com>;tag=ft\r\n\
             To: <sip:2000@example.com>\r\n\
             Call-ID: cid1\r\n\
             CSeq: 1 INVITE\r\n\
             Content-Length: 0\r\n\r\n",
        )
    }

    fn options() -> rsip::Request {
        parse_req(
            "OPTIONS sip:example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKopt\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:1001@example.com>;tag=ft\r\n\
             To: <sip:example.com>\r\n\
             Call-ID: cid2\r\n\
             CSeq: 7 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
        )
    }

    fn resp(req: &rsip::Request, code: u16) -> rsip::Response {
        wire::response_for(req, code, Some("tt"))
    }

    /// Drives `tick` through every deadline up to `until`, collecting the
    /// times (ms from t0) at which something was transmitted.
    macro_rules! run_until {
        ($tx:expr, $t0:expr, $until_ms:expr) => {{
            let mut sent = Vec::new();
            while let Some(d) = $tx.poll_timeout() {
                if d > $t0 + Duration::from_millis($until_ms) {
                    break;
                }
                $tx.handle_timeout(d);
                while $tx.poll_transmit().is_some() {
                    sent.push((d - $t0).as_millis() as u64);
                }
            }
            sent
        }};
    }

    #[test]
    fn timer_a_and_b_invite_unanswered() {
        let t0 = Instant::now();
        let mut tx = ClientInviteTransaction::new(t0, invite(), addr(), TimerConfig::default());
        assert!(tx.poll_transmit().is_some());
        let sent = run_until!(tx, t0, 40_000);
        assert_eq!(sent, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(tx.poll_event(), Some(ClientEvent::Timeout));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn timer_b_fires_at_64_t1() {
        let t0 = Instant::now();
        let mut tx = ClientInviteTransaction::new(t0, invite(), addr(), TimerConfig::default());
        tx.handle_timeout(t0 + Duration::from_millis(31_999));
        assert_eq!(tx.poll_event(), None);
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(tx.poll_event(), Some(ClientEvent::Timeout));
    }

    #[test]
    fn after_a_cancel_the_final_response_is_awaited_64_t1_at_most() {
        let t0 = Instant::now();
        let inv = invite();
        let mut tx = ClientInviteTransaction::new(t0, inv.clone(), addr(), TimerConfig::default());
        tx.handle_response(t0, resp(&inv, 180));
        let _ = tx.poll_event();
        let t1 = t0 + Duration::from_secs(60);
        tx.expect_final_within(t1);
        tx.handle_timeout(t1 + Duration::from_millis(31_999));
        assert_eq!(tx.poll_event(), None);
        tx.handle_timeout(t1 + Duration::from_secs(32));
        assert_eq!(tx.poll_event(), Some(ClientEvent::Timeout));
    }

    #[test]
    fn provisional_stops_timer_a_and_timer_d_absorbs_retransmissions() {
        let t0 = Instant::now();
        let inv = invite();
        let mut tx = ClientInviteTransaction::new(t0, inv.clone(), addr(), TimerConfig::default());
        tx.poll_transmit();
        tx.handle_response(t0 + Duration::from_millis(100), resp(&inv, 180));
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert!(matches!(tx.poll_event(), Some(ClientEvent::Response(r)) if r.status_code.code() == 180));
        // No retransmission in Proceeding, and no timer B: a call may ring for minutes.
        assert_eq!(tx.poll_timeout(), None);
        tx.handle_timeout(t0 + Duration::from_secs(40));
        assert_eq!(tx.poll_event(), None, "a ringing call must not time out after 32 s");
        let t1 = t0 + Duration::from_secs(2);
        tx.handle_response(t1, resp(&inv, 486));
        assert_eq!(tx.state(), ClientInviteState::Completed);
        let ack = String::from_utf8(tx.poll_transmit().unwrap().payload).unwrap();
        assert!(ack.starts_with("ACK sip:2000@example.com SIP/2.0"), "{}", ack);
        assert!(ack.contains("branch=z9hG4bKabc"));
        assert!(ack.contains("CSeq: 1 ACK"));
        assert!(ack.contains("tag=tt"));
        assert!(ack.contains("Route: <sip:proxy.example.com;lr>"));
        assert!(matches!(tx.poll_event(), Some(ClientEvent::Response(r)) if r.status_code.code() == 486));
        // Retransmitted 486: ACK again, TU not told.
        tx.handle_response(t1 + Duration::from_millis(500), resp(&inv, 486));
        assert!(tx.poll_transmit().is_some());
        assert_eq!(tx.poll_event(), None);
        // Timer D: 32 s.
        assert_eq!(tx.poll_timeout(), Some(t1 + Duration::from_secs(32)));
        tx.handle_timeout(t1 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_2xx_terminates_and_is_passed_up() {
        let t0 = Instant::now();
        let inv = invite();
        let mut tx = ClientInviteTransaction::new(t0, inv.clone(), addr(), TimerConfig::default());
        tx.poll_transmit();
        tx.handle_response(t0, resp(&inv, 200));
        assert!(tx.is_terminated());
        assert!(tx.poll_transmit().is_none(), "2xx ACK belongs to the dialog");
        assert!(matches!(tx.poll_event(), Some(ClientEvent::Response(r)) if r.status_code.code() == 200));
    }

    #[test]
    fn timer_e_and_f_non_invite_unanswered() {
        let t0 = Instant::now();
        let mut tx = ClientNonInviteTransaction::new(t0, options(), addr(), TimerConfig::default());
        assert!(tx.poll_transmit().is_some());
        let sent = run_until!(tx, t0, 40_000);
        // 0.5, 1.5, 3.5, 7.5 then every T2=4 s.
        assert_eq!(sent, vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
        assert_eq!(tx.poll_event(), Some(ClientEvent::Timeout));
        assert!(tx.is_terminated());
    }

    #[test]
    fn timer_e_at_t2_in_proceeding_and_timer_k() {
        let t0 = Instant::now();
        let req = options();
        let mut tx = ClientNonInviteTransaction::new(t0, req.clone(), addr(), TimerConfig::default());
        tx.poll_transmit();
        tx.handle_response(t0 + Duration::from_millis(100), resp(&req, 100));
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        // Timer E was armed for 0.5 s; it fires, and then every T2.
        let sent = run_until!(tx, t0, 9_000);
        assert_eq!(sent, vec![500, 4500, 8500]);
        let t1 = t0 + Duration::from_secs(9);
        tx.handle_response(t1, resp(&req, 200));
        assert_eq!(tx.state(), ClientNonInviteState::Completed);
        assert!(matches!(tx.poll_event(), Some(ClientEvent::Response(_))));
        assert!(matches!(tx.poll_event(), Some(ClientEvent::Response(r)) if r.status_code.code() == 200));
        assert_eq!(tx.poll_timeout(), Some(t1 + Duration::from_secs(5)));
        tx.handle_response(t1 + Duration::from_secs(1), resp(&req, 200));
        assert_eq!(tx.poll_event(), None, "retransmitted final absorbed");
        tx.handle_timeout(t1 + Duration::from_secs(5));
        assert!(tx.is_terminated());
    }

    #[test]
    fn server_invite_trying_then_timer_g_h() {
        let t0 = Instant::now();
        let inv = invite();
        let mut tx = ServerInviteTransaction::new(t0, inv.clone(), addr(), TimerConfig::default());
        let trying = String::from_utf8(tx.poll_transmit().unwrap().payload).unwrap();
        assert!(trying.starts_with("SIP/2.0 100 Trying"), "{}", trying);
        // Retransmitted INVITE in Proceeding -> last provisional again.
        tx.handle_request(t0, &inv);
        assert!(tx.poll_transmit().is_some());
        tx.send_response(t0, &resp(&inv, 486));
        assert_eq!(tx.state(), ServerInviteState::Completed);
        assert!(tx.poll_transmit().is_some());
        let sent = run_until!(tx, t0, 40_000);
        // Timer G: 0.5, 1.5, 3.5, 7.5, then every T2 until H at 32 s.
        assert_eq!(sent, vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
        assert_eq!(tx.poll_event(), Some(ServerEvent::Timeout));
        assert!(tx.is_terminated());
    }

    #[test]
    fn server_invite_ack_confirms_and_timer_i() {
        let t0 = Instant::now();
        let inv = invite();
        let mut tx = ServerInviteTransaction::new(t0, inv.clone(), addr(), TimerConfig::default());
        tx.poll_transmit();
        tx.send_response(t0, &resp(&inv, 480));
        tx.poll_transmit();
        let mut ack = inv.clone();
        ack.method = rsip::Method::Ack;
        assert_eq!(TransactionKey::from_request(&ack), tx.key());
        let t1 = t0 + Duration::from_millis(200);
        tx.handle_request(t1, &ack);
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        // Retransmitted INVITE in Confirmed: absorbed.
        tx.handle_request(t1, &inv);
        assert!(tx.poll_transmit().is_none());
        assert_eq!(tx.poll_timeout(), Some(t1 + Duration::from_secs(5)));
        tx.handle_timeout(t1 + Duration::from_secs(5));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_event(), None);
    }

    #[test]
    fn server_invite_2xx_accepted_then_timer_l() {
        let t0 = Instant::now();
        let inv = invite();
        let mut tx = ServerInviteTransaction::new(t0, inv.clone(), addr(), TimerConfig::default());
        tx.poll_transmit();
        tx.send_response(t0, &resp(&inv, 200));
        assert!(tx.poll_transmit().is_some());
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        // A retransmitted INVITE is absorbed: the TU retransmits the 2xx.
        tx.handle_request(t0 + Duration::from_millis(500), &inv);
        assert!(tx.poll_transmit().is_none());
        // Further responses from the TU are not sent by the transaction.
        tx.send_response(t0, &resp(&inv, 486));
        assert!(tx.poll_transmit().is_none());
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn server_non_invite_timer_j() {
        let t0 = Instant::now();
        let req = options();
        let mut tx = ServerNonInviteTransaction::new(t0, req.clone(), addr(), TimerConfig::default());
        tx.handle_request(t0, &req);
        assert!(tx.poll_transmit().is_none(), "nothing to resend in Trying");
        tx.send_response(t0, &resp(&req, 200));
        assert!(tx.poll_transmit().is_some());
        tx.handle_request(t0 + Duration::from_secs(1), &req);
        assert!(tx.poll_transmit().is_some(), "final resent on retransmission");
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tx.handle_timeout(t0 + Duration::from_millis(31_999));
        assert_eq!(tx.state(), ServerNonInviteState::Completed);
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn keys_match_responses_and_cancel() {
        let inv = invite();
        let k = TransactionKey::from_request(&inv).unwrap();
        assert_eq!(TransactionKey::from_response(&resp(&inv, 180)), Some(k.clone()));
        let mut cancel = inv.clone();
        cancel.method = rsip::Method::Cancel;
        let ck = TransactionKey::from_request(&cancel).unwrap();
        assert_ne!(ck, k);
        assert_eq!(ck.invite_of_cancel(), k);
        // Same branch, different method: different transaction (§17.1.3).
        assert_ne!(TransactionKey::from_request(&options()).unwrap().branch, k.branch);
    }

    #[test]
    fn custom_t1_scales_timers() {
        let t0 = Instant::now();
        let timers = TimerConfig { t1: Duration::from_millis(100), ..TimerConfig::default() };
        let mut tx = ClientInviteTransaction::new(t0, invite(), addr(), timers);
        tx.poll_transmit();
        let sent = run_until!(tx, t0, 10_000);
        assert_eq!(sent, vec![100, 300, 700, 1500, 3100, 6300]);
        assert_eq!(tx.poll_event(), Some(ClientEvent::Timeout));
    }
}
