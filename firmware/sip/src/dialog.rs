//! RFC 3261 §12 dialogs: the state both ends keep between INVITE and BYE.
//!
//! A [`Dialog`] is created by the UAC from a 2xx (or tagged 1xx) to its
//! INVITE (§12.1.2), or by the UAS when it answers (§12.1.1). It then builds
//! every in-dialog request (§12.2.1.1: Request-URI and Route from the remote
//! target and the route set, loose or strict routing), the ACK for a 2xx
//! (§13.2.2.4), and checks the CSeq of in-dialog requests (§12.2.2).
//!
//! The dialog holds no transport state; the UA decides where datagrams go
//! (always to its outbound proxy).

use crate::wire;

/// §12: Call-ID plus local and remote tags.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// Why a message could not create or use a dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogError {
    /// A header the dialog needs is missing or unreadable.
    MissingHeader(&'static str),
    /// The remote tag is missing (a 2xx without To tag, a request without From tag).
    MissingTag,
    /// §12.2.2: the remote CSeq went backwards; answer 500.
    CSeqOutOfOrder { last: u32, got: u32 },
}

impl DialogError {
    /// The status a UAS answers a request with when this error hits.
    pub fn status_code(&self) -> u16 {
        match self {
            DialogError::CSeqOutOfOrder { .. } => 500,
            _ => 400,
        }
    }
}

/// §12.1 dialog states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// One dialog (§12).
#[derive(Clone, Debug)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// Local CSeq; the next in-dialog request uses `local_seq + 1`.
    pub local_seq: u32,
    /// Highest CSeq seen from the remote side.
    pub remote_seq: Option<u32>,
    /// Local URI as a name-addr without tag (our From in requests).
    pub local_uri: String,
    /// Remote URI as a name-addr without tag (our To in requests).
    pub remote_uri: String,
    /// Remote target: the URI of the peer's Contact.
    pub remote_target: String,
    /// Route set, each element a name-addr (`<sip:proxy;lr>`), in the order
    /// our requests must carry them.
    pub route_set: Vec<String>,
}

fn strip_tag(v: &str) -> String {
    // Rebuild "name-addr" keeping every header param except tag.
    let params = wire::header_params(v);
    let head = match v.rfind('>') {
        Some(i) => v[..=i].to_string(),
        None => v.split(';').next().unwrap_or("").to_string(),
    };
    let mut out = head.trim().to_string();
    for (n, val) in params {
        if n.eq_ignore_ascii_case("tag") {
            continue;
        }
        out.push(';');
        out.push_str(&n);
        if let Some(val) = val {
            out.push('=');
            out.push_str(&val);
        }
    }
    out
}

fn contact_uri(headers: &rsip::Headers) -> Option<String> {
    wire::list(headers, "Contact").first().map(|c| wire::uri_of(c))
}

impl Dialog {
    /// §12.1.2: the UAC side, from our INVITE and a 2xx or tagged 1xx.
    /// The route set is the response's Record-Route in reverse order.
    pub fn new_uac(request: &rsip::Request, response: &rsip::Response) -> Result<Self, DialogError> {
        let call_id = wire::value(&request.headers, "Call-ID").ok_or(DialogError::MissingHeader("Call-ID"))?;
        let from = wire::value(&request.headers, "From").ok_or(DialogError::MissingHeader("From"))?;
        let to = wire::value(&response.headers, "To").ok_or(DialogError::MissingHeader("To"))?;
        let local_tag = wire::param(&from, "tag").filter(|t| !t.is_empty()).ok_or(DialogError::MissingTag)?;
        let remote_tag = wire::param(&to, "tag").filter(|t| !t.is_empty()).ok_or(DialogError::MissingTag)?;
        let local_seq = wire::cseq(&request.headers).ok_or(DialogError::MissingHeader("CSeq"))?.0;
        let mut route_set = wire::list(&response.headers, "Record-Route");
        route_set.reverse();
        let remote_target = contact_uri(&response.headers).unwrap_or_else(|| request.uri.to_string());
        let code = response.status_code.code();
        Ok(Dialog {
            id: DialogId { call_id, local_tag, remote_tag },
            state: if (200..300).contains(&code) { DialogState::Confirmed } else { DialogState::Early },
            local_seq,
            remote_seq: None,
            local_uri: strip_tag(&from),
            remote_uri: strip_tag(&to),
            remote_target,
            route_set,
        })
    }

    /// §12.1.1: the UAS side, from the received INVITE and the To tag we chose.
    /// The route set is the request's Record-Route in order.
    pub fn new_uas(request: &rsip::Request, local_tag: &str, local_seq: u32) -> Result<Self, DialogError> {
        let call_id = wire::value(&request.headers, "Call-ID").ok_or(DialogError::MissingHeader("Call-ID"))?;
        let from = wire::value(&request.headers, "From").ok_or(DialogError::MissingHeader("From"))?;
        let to = wire::value(&request.headers, "To").ok_or(DialogError::MissingHeader("To"))?;
        // §12.1.1: a request without a From tag (RFC 2543) has a null remote tag.
        let remote_tag = wire::param(&from, "tag").unwrap_or_default();
        let remote_seq = wire::cseq(&request.headers).ok_or(DialogError::MissingHeader("CSeq"))?.0;
        // RFC 2543 made Contact optional: requests then go to the From URI
        // (RFC 4475 §3.4.1 `inv2543` has neither tag nor Contact).
        let remote_target = contact_uri(&request.headers).unwrap_or_else(|| wire::uri_of(&from));
        Ok(Dialog {
            id: DialogId { call_id, local_tag: local_tag.to_string(), remote_tag },
            state: DialogState::Early,
            local_seq,
            remote_seq: Some(remote_seq),
            local_uri: strip_tag(&to),
            remote_uri: strip_tag(&from),
            remote_target,
            route_set: wire::list(&request.headers, "Record-Route"),
        })
    }

    /// Dialog id of a request received from the peer (our tag is in To).
    pub fn id_of_incoming(req: &rsip::Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: wire::value(&req.headers, "Call-ID")?,
            local_tag: wire::tag(&req.headers, "To")?,
            remote_tag: wire::tag(&req.headers, "From").unwrap_or_default(),
        })
    }

    /// Dialog id of a response to one of our requests (our tag is in From).
    pub fn id_of_response(resp: &rsip::Response) -> Option<DialogId> {
        Some(DialogId {
            call_id: wire::value(&resp.headers, "Call-ID")?,
            local_tag: wire::tag(&resp.headers, "From")?,
            remote_tag: wire::tag(&resp.headers, "To")?,
        })
    }

    /// §12.2.2: accept an in-dialog request's CSeq (it must not go backwards;
    /// ACK and CANCEL carry the INVITE's number and are exempt) and apply a
    /// target refresh (re-INVITE Contact, §12.2.2 last paragraph).
    pub fn on_remote_request(&mut self, req: &rsip::Request) -> Result<(), DialogError> {
        let (n, method) = wire::cseq(&req.headers).ok_or(DialogError::MissingHeader("CSeq"))?;
        if method != "ACK" && method != "CANCEL" {
            if let Some(last) = self.remote_seq {
                if n <= last {
                    return Err(DialogError::CSeqOutOfOrder { last, got: n });
                }
            }
            self.remote_seq = Some(n);
        }
        if method == "INVITE" {
            if let Some(t) = contact_uri(&req.headers) {
                self.remote_target = t;
            }
        }
        Ok(())
    }

    /// Request-URI and Route header values for the next request (§12.2.1.1).
    pub fn request_target(&self) -> (String, Vec<String>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if wire::uri_has_lr(&wire::uri_of(first)) => (self.remote_target.clone(), self.route_set.clone()),
            Some(first) => {
                // Strict routing: first route becomes the Request-URI, the
                // remote target goes last in Route.
                let mut routes: Vec<String> = self.route_set[1..].to_vec();
                routes.push(format!("<{}>", self.remote_target));
                (wire::uri_of(first), routes)
            }
        }
    }

    /// Builds an in-dialog request. `via` is the whole Via value (with a fresh
    /// branch); the CSeq is incremented for every method but ACK and CANCEL.
    pub fn build_request(&mut self, method: rsip::Method, via: &str) -> rsip::Request {
        let n = match method {
            rsip::Method::Ack | rsip::Method::Cancel => self.local_seq,
            _ => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        self.build_with_cseq(method, via, n)
    }

    /// §13.2.2.4: the ACK for a 2xx carries the INVITE's CSeq number.
    pub fn build_ack(&self, via: &str, invite_cseq: u32) -> rsip::Request {
        self.build_with_cseq(rsip::Method::Ack, via, invite_cseq)
    }

    fn build_with_cseq(&self, method: rsip::Method, via: &str, n: u32) -> rsip::Request {
        let (ruri, routes) = self.request_target();
        let mut headers = rsip::Headers::default();
        headers.push(wire::hdr("Via", via));
        headers.push(wire::hdr("Max-Forwards", "70"));
        for r in routes {
            headers.push(wire::hdr("Route", r));
        }
        headers.push(wire::hdr("From", format!("{};tag={}", self.local_uri, self.id.local_tag)));
        headers.push(wire::hdr("To", format!("{};tag={}", self.remote_uri, self.id.remote_tag)));
        headers.push(wire::hdr("Call-ID", self.id.call_id.clone()));
        headers.push(wire::hdr("CSeq", format!("{} {}", n, method)));
        let uri = rsip::Uri::try_from(ruri.as_str()).unwrap_or_else(|_| rsip::Uri::default());
        rsip::Request { method, uri, version: rsip::Version::V2, headers, body: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> rsip::SipMessage {
        rsip::SipMessage::try_from(s).unwrap()
    }

    fn invite() -> rsip::Request {
        match msg("INVITE sip:2000@example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n\
             Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
             From: \"Alice\" <sip:1001@example.com>;tag=ft\r\n\
             To: <sip:2000@example.com>\r\n\
             Call-ID: cid1\r\n\
             CSeq: 4 INVITE\r\n\
             Contact: <sip:1001@10.0.0.1:5060>\r\n\
             Content-Length: 0\r\n\r\n")
        {
            rsip::SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn ok() -> rsip::Response {
        match msg("SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n\
             Record-Route: <sip:p1.example.com;lr>\r\n\
             Record-Route: <sip:p2.example.com;lr>\r\n\
             From: \"Alice\" <sip:1001@example.com>;tag=ft\r\n\
             To: <sip:2000@example.com>;tag=tt\r\n\
             Call-ID: cid1\r\n\
             CSeq: 4 INVITE\r\n\
             Contact: <sip:2000@10.0.0.2:5062>\r\n\
             Content-Length: 0\r\n\r\n")
        {
            rsip::SipMessage::Response(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_targets_contact() {
        let mut d = Dialog::new_uac(&invite(), &ok()).unwrap();
        assert_eq!(d.id, DialogId { call_id: "cid1".into(), local_tag: "ft".into(), remote_tag: "tt".into() });
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.route_set, vec!["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
        let bye = d.build_request(rsip::Method::Bye, "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbye");
        let s = bye.to_string();
        assert!(s.starts_with("BYE sip:2000@10.0.0.2:5062 SIP/2.0"), "{}", s);
        assert!(s.contains("CSeq: 5 BYE"));
        assert!(s.contains("From: \"Alice\" <sip:1001@example.com>;tag=ft"));
        assert!(s.contains("To: <sip:2000@example.com>;tag=tt"));
        let r1 = s.find("Route: <sip:p2.example.com;lr>").unwrap();
        let r2 = s.find("Route: <sip:p1.example.com;lr>").unwrap();
        assert!(r1 < r2);
        let ack = d.build_ack("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack", 4).to_string();
        assert!(ack.contains("CSeq: 4 ACK"));
    }

    #[test]
    fn uas_dialog_keeps_route_order_and_checks_cseq() {
        let inv = invite();
        let mut d = Dialog::new_uas(&inv, "tt", 100).unwrap();
        assert_eq!(d.id.remote_tag, "ft");
        assert_eq!(d.remote_target, "sip:1001@10.0.0.1:5060");
        assert_eq!(d.route_set, vec!["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
        let bye = d.build_request(rsip::Method::Bye, "SIP/2.0/UDP x;branch=z9hG4bKq").to_string();
        assert!(bye.contains("CSeq: 101 BYE"));
        assert!(bye.contains("To: \"Alice\" <sip:1001@example.com>;tag=ft"));
        // Same CSeq again: out of order (§12.2.2).
        assert_eq!(d.on_remote_request(&inv), Err(DialogError::CSeqOutOfOrder { last: 4, got: 4 }));
        let mut next = inv.clone();
        next.headers.retain(|h| !matches!(h, rsip::Header::CSeq(_)));
        next.headers.push(wire::hdr("CSeq", "5 BYE"));
        assert_eq!(d.on_remote_request(&next), Ok(()));
        assert_eq!(d.remote_seq, Some(5));
    }

    #[test]
    fn strict_route_puts_first_route_in_request_uri() {
        let mut d = Dialog::new_uac(&invite(), &ok()).unwrap();
        d.route_set = vec!["<sip:strict.example.com>".into(), "<sip:p1.example.com;lr>".into()];
        let (ruri, routes) = d.request_target();
        assert_eq!(ruri, "sip:strict.example.com");
        assert_eq!(routes, vec!["<sip:p1.example.com;lr>", "<sip:2000@10.0.0.2:5062>"]);
    }

    #[test]
    fn missing_to_tag_is_an_error() {
        let mut r = ok();
        r.headers.retain(|h| !matches!(h, rsip::Header::To(_)));
        r.headers.push(wire::hdr("To", "<sip:2000@example.com>"));
        assert_eq!(Dialog::new_uac(&invite(), &r).unwrap_err(), DialogError::MissingTag);
    }
}
