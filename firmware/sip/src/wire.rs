//! Small helpers the transaction, dialog and UA layers share to read and build
//! header values on top of rsip's untyped headers.
//!
//! We read headers by their canonical name (rsip keeps unknown ones as
//! `Header::Other`), and parse the few parameters we need (`branch`, `tag`,
//! `rport`, `expires`, `lr`) ourselves, so that a header rsip cannot type does
//! not make a whole message unusable. Grammar references: RFC 3261 §25.1
//! (`generic-param`, `name-addr`, `addr-spec`).

use rsip::prelude::*;
use rsip::{Header, Headers};

/// Canonical name and value of a header as it would be written on the wire.
pub(crate) fn name_value(h: &Header) -> (String, String) {
    let s = h.to_string();
    match s.split_once(':') {
        Some((n, v)) => (n.trim().to_string(), v.trim().to_string()),
        None => (s, String::new()),
    }
}

/// Long form of a compact header name (RFC 3261 §7.3.3).
fn long_name(n: &str) -> &str {
    match n.to_ascii_lowercase().as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "k" => "supported",
        "s" => "subject",
        "e" => "content-encoding",
        _ => n,
    }
}

/// Every value of the header `name` (case-insensitive, compact forms accepted),
/// in message order. Comma-separated lists are NOT split; see [`split_list`].
pub(crate) fn values(headers: &Headers, name: &str) -> Vec<String> {
    headers
        .iter()
        .map(name_value)
        .filter(|(n, _)| long_name(n).eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// First value of the header `name`.
pub(crate) fn value(headers: &Headers, name: &str) -> Option<String> {
    values(headers, name).into_iter().next()
}

/// Every element of a comma-separated header (Via, Route, Record-Route, Contact),
/// across all its header lines, in order. Commas inside `<...>` or quotes do
/// not split.
pub(crate) fn list(headers: &Headers, name: &str) -> Vec<String> {
    values(headers, name)
        .iter()
        .flat_map(|v| split_list(v))
        .collect()
}

fn split_outside(v: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_angle = false;
    let mut in_quote = false;
    for c in v.chars() {
        match c {
            '"' if !in_angle => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            _ => {}
        }
        if c == sep && !in_angle && !in_quote {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Splits a comma-separated header value into its elements.
pub(crate) fn split_list(v: &str) -> Vec<String> {
    split_outside(v, ',')
}

/// The header parameters of one header element (after the URI's `>` for a
/// name-addr, or after the first `;` otherwise). `None` value = flag parameter.
pub(crate) fn header_params(v: &str) -> Vec<(String, Option<String>)> {
    let tail = match v.rfind('>') {
        Some(i) => &v[i + 1..],
        None => match v.find(';') {
            Some(i) => &v[i..],
            None => "",
        },
    };
    split_outside(tail, ';')
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, val)) => (n.trim().to_string(), Some(val.trim().trim_matches('"').to_string())),
            None => (p.trim().to_string(), None),
        })
        .collect()
}

/// Value of the header parameter `name` (`Some("")` for a flag parameter).
pub(crate) fn param(v: &str, name: &str) -> Option<String> {
    header_params(v)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, val)| val.unwrap_or_default())
}

/// The URI of a `name-addr` / `addr-spec` header element, without header params.
pub(crate) fn uri_of(v: &str) -> String {
    if let (Some(a), Some(b)) = (v.find('<'), v.rfind('>')) {
        if a < b {
            return v[a + 1..b].trim().to_string();
        }
    }
    v.split(';').next().unwrap_or("").trim().to_string()
}

/// Display name of a name-addr, unquoted (`"Alice" <sip:a@x>` -> `Alice`).
pub(crate) fn display_of(v: &str) -> Option<String> {
    let i = v.find('<')?;
    let d = v[..i].trim().trim_matches('"').trim();
    if d.is_empty() {
        None
    } else {
        Some(d.to_string())
    }
}

/// User part of a SIP URI (`sip:1001@example.com;x` -> `1001`).
pub(crate) fn user_of(uri: &str) -> String {
    let rest = uri.split_once(':').map(|(_, r)| r).unwrap_or(uri);
    match rest.split_once('@') {
        Some((u, _)) => u.split(':').next().unwrap_or("").to_string(),
        None => String::new(),
    }
}

/// Whether a URI carries the `lr` parameter (loose routing, RFC 3261 §16.12).
pub(crate) fn uri_has_lr(uri: &str) -> bool {
    uri.split(';')
        .skip(1)
        .any(|p| p.split('=').next().unwrap_or("").trim().eq_ignore_ascii_case("lr"))
}

/// Builds a header from its name and value, using rsip's variant for the
/// headers we emit so that serializers recognise them.
pub(crate) fn hdr(name: &str, v: impl Into<String>) -> Header {
    use rsip::headers as h;
    let v: String = v.into();
    match name {
        "Via" => Header::Via(h::Via::new(v)),
        "From" => Header::From(h::From::new(v)),
        "To" => Header::To(h::To::new(v)),
        "Call-ID" => Header::CallId(h::CallId::new(v)),
        "CSeq" => Header::CSeq(h::CSeq::new(v)),
        "Contact" => Header::Contact(h::Contact::new(v)),
        "Max-Forwards" => Header::MaxForwards(h::MaxForwards::new(v)),
        "Content-Type" => Header::ContentType(h::ContentType::new(v)),
        "Content-Length" => Header::ContentLength(h::ContentLength::new(v)),
        "Route" => Header::Route(h::Route::new(v)),
        "Record-Route" => Header::RecordRoute(h::RecordRoute::new(v)),
        "Expires" => Header::Expires(h::Expires::new(v)),
        "User-Agent" => Header::UserAgent(h::UserAgent::new(v)),
        "Allow" => Header::Allow(h::Allow::new(v)),
        "Accept" => Header::Accept(h::Accept::new(v)),
        "Authorization" => Header::Authorization(h::Authorization::new(v)),
        "Proxy-Authorization" => Header::ProxyAuthorization(h::ProxyAuthorization::new(v)),
        "WWW-Authenticate" => Header::WwwAuthenticate(h::WwwAuthenticate::new(v)),
        "Proxy-Authenticate" => Header::ProxyAuthenticate(h::ProxyAuthenticate::new(v)),
        "Supported" => Header::Supported(h::Supported::new(v)),
        "Server" => Header::Server(h::Server::new(v)),
        _ => Header::Other(name.to_string(), v),
    }
}

/// `CSeq` number and method of a message.
pub(crate) fn cseq(headers: &Headers) -> Option<(u32, String)> {
    let v = value(headers, "CSeq")?;
    let mut it = v.split_whitespace();
    let n = it.next()?.parse().ok()?;
    let m = it.next()?.to_ascii_uppercase();
    Some((n, m))
}

/// Top Via's `branch` parameter.
pub(crate) fn top_branch(headers: &Headers) -> Option<String> {
    let via = list(headers, "Via").into_iter().next()?;
    param(&via, "branch").filter(|b| !b.is_empty())
}

/// Sent-by (`host[:port]`) of the top Via.
pub(crate) fn top_sent_by(headers: &Headers) -> Option<String> {
    let via = list(headers, "Via").into_iter().next()?;
    let first = via.split(';').next()?;
    first.split_whitespace().nth(1).map(|s| s.to_ascii_lowercase())
}

/// `tag` parameter of From or To.
pub(crate) fn tag(headers: &Headers, name: &str) -> Option<String> {
    value(headers, name).and_then(|v| param(&v, "tag")).filter(|t| !t.is_empty())
}

/// Copies the headers a response must echo (RFC 3261 §8.2.6.2): every Via,
/// From, To (adding `to_tag` when the request's To has none), Call-ID, CSeq.
pub(crate) fn response_for(req: &rsip::Request, status: u16, to_tag: Option<&str>) -> rsip::Response {
    let mut headers = Headers::default();
    for h in req.headers.iter() {
        let (n, v) = name_value(h);
        let ln = long_name(&n).to_ascii_lowercase();
        match ln.as_str() {
            "via" => headers.push(hdr("Via", v)),
            "from" => headers.push(hdr("From", v)),
            "to" => {
                let v = match to_tag {
                    Some(t) if param(&v, "tag").is_none() => format!("{};tag={}", v, t),
                    _ => v,
                };
                headers.push(hdr("To", v))
            }
            "call-id" => headers.push(hdr("Call-ID", v)),
            "cseq" => headers.push(hdr("CSeq", v)),
            _ => {}
        }
    }
    rsip::Response {
        status_code: status_code(status),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// A status code with its RFC 3261 §21 reason phrase.
pub(crate) fn status_code(code: u16) -> rsip::StatusCode {
    rsip::StatusCode::Other(code, reason_phrase(code).to_string())
}

/// The reason phrase of a status (RFC 3261 21, RFC 3262/3311/3515/4028/
/// 5079/6086 for the later ones); a status without one gets its class's
/// name, never "Unknown".
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        100..=199 => "Session Progress",
        200..=299 => "OK",
        300..=399 => "Redirection",
        400..=499 => "Request Failure",
        500..=599 => "Server Failure",
        _ => "Global Failure",
    }
}

#[cfg(test)]
mod reason_tests {
    use super::reason_phrase;

    #[test]
    fn every_status_gets_a_reason_phrase_never_unknown() {
        assert_eq!(reason_phrase(405), "Method Not Allowed");
        assert_eq!(reason_phrase(420), "Bad Extension");
        assert_eq!(reason_phrase(499), "Request Failure");
        for code in 100..700 {
            assert_ne!(reason_phrase(code), "Unknown", "{code}");
        }
    }
}

/// Sets the body (and Content-Type / Content-Length) of a header list.
pub(crate) fn set_body(headers: &mut Headers, body: &[u8], content_type: Option<&str>) {
    headers.retain(|h| {
        let (n, _) = name_value(h);
        let ln = long_name(&n).to_ascii_lowercase();
        ln != "content-length" && ln != "content-type"
    });
    if let Some(ct) = content_type {
        headers.push(hdr("Content-Type", ct));
    }
    headers.push(hdr("Content-Length", body.len().to_string()));
}

/// Serializes a message for the wire.
pub(crate) fn to_bytes(msg: &rsip::SipMessage) -> Vec<u8> {
    crate::message::to_bytes(msg)
}

/// Serializes a request.
pub(crate) fn request_bytes(req: &rsip::Request) -> Vec<u8> {
    to_bytes(&rsip::SipMessage::Request(req.clone()))
}

/// Serializes a response.
pub(crate) fn response_bytes(resp: &rsip::Response) -> Vec<u8> {
    to_bytes(&rsip::SipMessage::Response(resp.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_uris() {
        let v = "\"Alice Smith\" <sip:1001@example.com;transport=udp>;tag=abc;x";
        assert_eq!(param(v, "tag").as_deref(), Some("abc"));
        assert_eq!(param(v, "x").as_deref(), Some(""));
        assert_eq!(param(v, "transport"), None);
        assert_eq!(uri_of(v), "sip:1001@example.com;transport=udp");
        assert_eq!(display_of(v).as_deref(), Some("Alice Smith"));
        assert_eq!(user_of(&uri_of(v)), "1001");
        let via = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx;rport";
        assert_eq!(param(via, "branch").as_deref(), Some("z9hG4bKx"));
        assert_eq!(param(via, "rport").as_deref(), Some(""));
        assert!(uri_has_lr("sip:p.example.com;lr"));
        assert!(!uri_has_lr("sip:p.example.com"));
    }

    #[test]
    fn list_splitting_respects_brackets() {
        let l = split_list("<sip:a@x;lr>, \"b, c\" <sip:b@y>,<sip:c@z>");
        assert_eq!(l.len(), 3);
        assert_eq!(uri_of(&l[1]), "sip:b@y");
    }
}
