//! HTTP digest authentication, client side, for SIP (RFC 3261 §22.4, RFC 2617 §3,
//! RFC 7616 §3, RFC 8760).
//!
//! Drive it like this: when a 401/407 arrives, feed every WWW-Authenticate (or
//! Proxy-Authenticate) value to [`best_challenge`]; then for the retried request compute the
//! Authorization (or Proxy-Authorization) value with [`authorization`], passing the method,
//! the Request-URI, the nonce count (1 for the first use of a nonce, then 2, 3...) and a
//! fresh cnonce the caller drew from its RNG. Everything here is deterministic: no clock,
//! no randomness, no I/O.
//!
//! Supported: algorithms MD5, MD5-sess, SHA-256, SHA-256-sess (RFC 8760 §2.1, RFC 7616 §3.4.2);
//! qop `auth` or no qop (RFC 2069 compatibility, RFC 2617 §3.2.2.1). Not supported: qop
//! `auth-int` (needs the body; a challenge offering only that is refused), `userhash`,
//! SHA-512-256.

use std::fmt;

/// Digest algorithm (RFC 7616 §3.3, RFC 8760 §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    /// Token as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Parse the `algorithm` parameter (case-insensitive).
    pub fn from_token(s: &str) -> Option<Self> {
        [Algorithm::Md5, Algorithm::Md5Sess, Algorithm::Sha256, Algorithm::Sha256Sess]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Preference when several challenges are offered (RFC 8760 §2.4: SHA-256 over MD5).
    fn rank(self) -> u8 {
        match self {
            Algorithm::Sha256 => 4,
            Algorithm::Sha256Sess => 3,
            Algorithm::Md5 => 2,
            Algorithm::Md5Sess => 1,
        }
    }

    /// Lower-case hex of the hash of `data` (RFC 7616 §3.4: `H(data)`).
    fn hex(self, data: &str) -> String {
        use md5::Digest;
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => to_hex(&md5::Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => to_hex(&sha2::Sha256::digest(data.as_bytes())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a challenge cannot be parsed or answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The scheme is not `Digest` (e.g. `Basic`, which SIP forbids, RFC 3261 §22.4).
    NotDigest,
    /// The parameter list does not follow `auth-param *(COMMA auth-param)`.
    BadSyntax(String),
    /// `realm` or `nonce` is missing.
    MissingParam(&'static str),
    /// An algorithm we do not implement.
    UnsupportedAlgorithm(String),
    /// A qop list that does not include `auth` (e.g. only `auth-int`).
    UnsupportedQop(Vec<String>),
    /// A value that cannot be sent inside a quoted-string (CR or LF).
    BadValue(&'static str),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NotDigest => write!(f, "not a Digest challenge"),
            AuthError::BadSyntax(s) => write!(f, "bad challenge syntax: {s}"),
            AuthError::MissingParam(p) => write!(f, "challenge lacks {p}"),
            AuthError::UnsupportedAlgorithm(a) => write!(f, "unsupported algorithm {a}"),
            AuthError::UnsupportedQop(q) => write!(f, "unsupported qop {}", q.join(",")),
            AuthError::BadValue(p) => write!(f, "{p} contains CR or LF"),
        }
    }
}

impl std::error::Error for AuthError {}

/// A parsed WWW-Authenticate / Proxy-Authenticate digest challenge (RFC 7616 §3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// qop options offered, lower-cased, in the server's order; empty when none was sent.
    pub qop: Vec<String>,
    pub stale: bool,
}

/// Split `name=value, name="quoted, value"` into pairs, unescaping quoted-strings
/// (RFC 7235 §2.1 auth-param, RFC 3261 §25.1 quoted-pair).
fn parse_params(s: &str) -> Result<Vec<(String, String)>, AuthError> {
    let bad = |why: &str| AuthError::BadSyntax(why.to_string());
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b[i])) {
            i += 1;
        }
        if i == start {
            return Err(bad("expected a parameter name"));
        }
        let name = s[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(bad("expected '=' after a parameter name"));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(bad("unterminated quoted-string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let c = *b.get(i + 1).ok_or_else(|| bad("dangling escape"))?;
                        v.push(c);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| bad("quoted-string is not UTF-8"))?
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' && !matches!(b[i], b' ' | b'\t') {
                i += 1;
            }
            if i == start {
                return Err(bad("empty parameter value"));
            }
            s[start..i].to_string()
        };
        out.push((name, value));
        skip_ws(&mut i);
        if i < b.len() && b[i] != b',' {
            return Err(bad("expected ',' between parameters"));
        }
    }
    Ok(out)
}

impl Challenge {
    /// Parse the value of a WWW-Authenticate / Proxy-Authenticate header. The `Digest` scheme
    /// word may be present or already stripped.
    pub fn parse(header_value: &str) -> Result<Self, AuthError> {
        let v = header_value.trim();
        let params = match v.split_once([' ', '\t']) {
            Some((scheme, rest)) if !scheme.contains('=') => {
                if !scheme.eq_ignore_ascii_case("Digest") {
                    return Err(AuthError::NotDigest);
                }
                rest
            }
            _ if v.eq_ignore_ascii_case("Digest") => "",
            _ => v,
        };
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = Algorithm::Md5;
        let mut qop = Vec::new();
        let mut stale = false;
        for (name, value) in parse_params(params)? {
            match name.as_str() {
                "realm" => realm = Some(value),
                "nonce" => nonce = Some(value),
                "opaque" => opaque = Some(value),
                "algorithm" => {
                    algorithm = Algorithm::from_token(&value)
                        .ok_or(AuthError::UnsupportedAlgorithm(value))?
                }
                "qop" => {
                    qop = value
                        .split(',')
                        .map(|q| q.trim().to_ascii_lowercase())
                        .filter(|q| !q.is_empty())
                        .collect()
                }
                "stale" => stale = value.eq_ignore_ascii_case("true"),
                // domain, charset, userhash and unknown parameters are ignored (RFC 7616 §3.3).
                _ => {}
            }
        }
        Ok(Challenge {
            realm: realm.ok_or(AuthError::MissingParam("realm"))?,
            nonce: nonce.ok_or(AuthError::MissingParam("nonce"))?,
            opaque,
            algorithm,
            qop,
            stale,
        })
    }

    /// Whether we can answer it (qop `auth` offered, or no qop at all).
    fn answerable(&self) -> bool {
        self.qop.is_empty() || self.qop.iter().any(|q| q == "auth")
    }
}

/// Username and password for one realm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Computes the Authorization / Proxy-Authorization header VALUE ("Digest username=..., ...").
/// nc is formatted as 8 hex digits; cnonce supplied by the caller. qop=auth chosen when offered.
///
/// RFC 7616 §3.4.1 (response with qop), §3.4.2 (A1 for `-sess`), RFC 2617 §3.2.2.1 (no qop).
pub fn authorization(
    ch: &Challenge,
    cred: &Credentials,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> Result<String, AuthError> {
    if !ch.answerable() {
        return Err(AuthError::UnsupportedQop(ch.qop.clone()));
    }
    for (name, v) in [("username", cred.username.as_str()), ("uri", uri), ("cnonce", cnonce), ("method", method)] {
        if v.contains(['\r', '\n']) {
            return Err(AuthError::BadValue(name));
        }
    }
    let alg = ch.algorithm;
    let use_qop = !ch.qop.is_empty();
    let nc = format!("{nc:08x}");
    let mut ha1 = alg.hex(&format!("{}:{}:{}", cred.username, ch.realm, cred.password));
    if alg.is_sess() {
        ha1 = alg.hex(&format!("{ha1}:{}:{cnonce}", ch.nonce));
    }
    let ha2 = alg.hex(&format!("{method}:{uri}"));
    let response = if use_qop {
        alg.hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce))
    } else {
        alg.hex(&format!("{ha1}:{}:{ha2}", ch.nonce))
    };
    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
        quote(&cred.username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        alg.as_str()
    );
    if use_qop || alg.is_sess() {
        out.push_str(&format!(", cnonce={}", quote(cnonce)));
    }
    if let Some(opaque) = &ch.opaque {
        out.push_str(&format!(", opaque={}", quote(opaque)));
    }
    if use_qop {
        out.push_str(&format!(", qop=auth, nc={nc}"));
    }
    Ok(out)
}

/// Picks the best challenge among several headers (SHA-256 preferred over MD5, RFC 8760 §2.4).
/// Values that are not digest, cannot be parsed or cannot be answered are skipped; among equal
/// algorithms the first wins.
pub fn best_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut best: Option<Challenge> = None;
    for v in values {
        let Ok(ch) = Challenge::parse(v) else { continue };
        if !ch.answerable() {
            continue;
        }
        if best.as_ref().map_or(true, |b| ch.algorithm.rank() > b.algorithm.rank()) {
            best = Some(ch);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pull one parameter back out of an Authorization value.
    fn param(v: &str, name: &str) -> Option<String> {
        let v = v.strip_prefix("Digest ").unwrap();
        parse_params(v).unwrap().into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    const RFC7616_PARAMS: &str = r#"realm="http-auth@example.org", qop="auth, auth-int", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    fn mufasa(password: &str) -> Credentials {
        Credentials { username: "Mufasa".into(), password: password.into() }
    }

    #[test]
    fn rfc7616_md5_and_sha256_vectors() {
        // RFC 7616 §3.9.1: the same challenge with algorithm=MD5 and algorithm=SHA-256.
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        for (alg, expected) in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ] {
            let ch = Challenge::parse(&format!("Digest {RFC7616_PARAMS}, algorithm={alg}")).unwrap();
            assert_eq!(ch.qop, vec!["auth", "auth-int"]);
            let v = authorization(&ch, &mufasa("Circle of Life"), "GET", "/dir/index.html", 1, cnonce).unwrap();
            assert_eq!(param(&v, "response").as_deref(), Some(expected), "{alg}");
            assert_eq!(param(&v, "nc").as_deref(), Some("00000001"));
            assert_eq!(param(&v, "qop").as_deref(), Some("auth"));
            assert_eq!(param(&v, "cnonce").as_deref(), Some(cnonce));
            assert_eq!(param(&v, "opaque").as_deref(), Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"));
            assert_eq!(param(&v, "algorithm").as_deref(), Some(alg));
        }
    }

    #[test]
    fn rfc2617_vector() {
        // RFC 2617 §3.5.
        let ch = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(ch.algorithm, Algorithm::Md5);
        let v = authorization(&ch, &mufasa("Circle Of Life"), "GET", "/dir/index.html", 1, "0a4f113b").unwrap();
        assert_eq!(param(&v, "response").as_deref(), Some("6629fae49393a05397450978507c4ef1"));
        assert!(v.starts_with(r#"Digest username="Mufasa", realm="testrealm@host.com""#), "{v}");
    }

    #[test]
    fn no_qop_and_sess_computations() {
        // RFC 2069 style (no qop): response = H(HA1:nonce:HA2), no cnonce/nc sent.
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        let v = authorization(&ch, &mufasa("p"), "REGISTER", "sip:r", 1, "c").unwrap();
        let ha1 = Algorithm::Md5.hex("Mufasa:r:p");
        let ha2 = Algorithm::Md5.hex("REGISTER:sip:r");
        assert_eq!(param(&v, "response").unwrap(), Algorithm::Md5.hex(&format!("{ha1}:n:{ha2}")));
        assert_eq!(param(&v, "cnonce"), None);
        assert_eq!(param(&v, "nc"), None);

        // SHA-256-sess: HA1 = H(H(user:realm:pass):nonce:cnonce) (RFC 7616 §3.4.2).
        let ch = Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256-sess"#).unwrap();
        let v = authorization(&ch, &mufasa("p"), "INVITE", "sip:b@r", 0x1a, "c").unwrap();
        let a = Algorithm::Sha256;
        let ha1 = a.hex(&format!("{}:n:c", a.hex("Mufasa:r:p")));
        let ha2 = a.hex("INVITE:sip:b@r");
        assert_eq!(param(&v, "response").unwrap(), a.hex(&format!("{ha1}:n:0000001a:c:auth:{ha2}")));
        assert_eq!(param(&v, "nc").as_deref(), Some("0000001a"));
    }

    #[test]
    fn challenge_parsing_edge_cases() {
        let ch = Challenge::parse(
            "digest  REALM=\"a \\\"quoted\\\" realm\",nonce=abc , stale=TRUE,algorithm=md5-SESS, domain=\"sip:x\"",
        )
        .unwrap();
        assert_eq!(ch.realm, "a \"quoted\" realm");
        assert_eq!(ch.nonce, "abc");
        assert!(ch.stale);
        assert_eq!(ch.algorithm, Algorithm::Md5Sess);
        assert_eq!(Challenge::parse("Basic realm=\"x\""), Err(AuthError::NotDigest));
        assert_eq!(Challenge::parse("Digest nonce=\"x\""), Err(AuthError::MissingParam("realm")));
        assert_eq!(
            Challenge::parse("Digest realm=\"x\", nonce=\"y\", algorithm=SHA-512-256"),
            Err(AuthError::UnsupportedAlgorithm("SHA-512-256".into()))
        );
        assert!(matches!(Challenge::parse("Digest realm=\"x"), Err(AuthError::BadSyntax(_))));
        assert!(matches!(Challenge::parse("Digest realm"), Err(AuthError::BadSyntax(_))));
        // Without the scheme word.
        assert_eq!(Challenge::parse(r#"realm="x", nonce="y""#).unwrap().realm, "x");
        // auth-int only cannot be answered.
        let ch = Challenge::parse(r#"Digest realm="x", nonce="y", qop="auth-int""#).unwrap();
        assert_eq!(
            authorization(&ch, &mufasa("p"), "INVITE", "sip:x", 1, "c"),
            Err(AuthError::UnsupportedQop(vec!["auth-int".into()]))
        );
        // Usernames with quotes are escaped.
        let ch = Challenge::parse(r#"Digest realm="x", nonce="y""#).unwrap();
        let cred = Credentials { username: "a\"b".into(), password: "p".into() };
        let v = authorization(&ch, &cred, "INVITE", "sip:x", 1, "c").unwrap();
        assert!(v.starts_with(r#"Digest username="a\"b""#), "{v}");
        assert_eq!(param(&v, "username").as_deref(), Some("a\"b"));
    }

    #[test]
    fn best_challenge_prefers_sha256() {
        let md5 = r#"Digest realm="x", nonce="1", qop="auth", algorithm=MD5"#;
        let sha = r#"Digest realm="x", nonce="2", qop="auth", algorithm=SHA-256"#;
        let weird = r#"Digest realm="x", nonce="3", algorithm=SHA-512-256"#;
        let int_only = r#"Digest realm="x", nonce="4", qop="auth-int", algorithm=SHA-256"#;
        assert_eq!(best_challenge([md5, weird, sha]).unwrap().nonce, "2");
        assert_eq!(best_challenge([sha, md5]).unwrap().nonce, "2");
        assert_eq!(best_challenge([int_only, md5]).unwrap().nonce, "1");
        assert_eq!(best_challenge(["Basic realm=\"x\"", weird]), None);
    }
}
