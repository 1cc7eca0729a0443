//! The web UI over HTTPS against a real gatewayd: the device certificate
//! (pinned by the fingerprint gatewayd prints), the first login with the
//! initial password, the rate limit, CSRF and cross-site refusals, a
//! read-only user's change, and the audit log across a restart.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::{Gatewayd, GwOptions};
use hil::{free_udp_port, Kamailio};

#[derive(Debug)]
struct Resp {
    code: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
    fn cookie(&self) -> String {
        self.header("set-cookie").expect("a cookie").split(';').next().unwrap().to_string()
    }
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form token") + 19;
        self.body[at..at + 64].to_string()
    }
}

#[derive(Debug)]
struct Pinned(String, Arc<rustls::crypto::CryptoProvider>);

fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        cert: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if fingerprint(cert) == self.0 {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the device certificate".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// A browser stand-in: HTTPS to `addr`, accepting only the certificate
/// whose fingerprint gatewayd printed.
struct Browser {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

impl Browser {
    fn new(gw: &Gatewayd) -> Browser {
        let log = gw.log();
        let fp = log
            .lines()
            .find_map(|l| l.split_once("web certificate SHA-256: ").map(|x| x.1.trim().to_string()))
            .expect("gatewayd prints the certificate's fingerprint");
        let provider = Arc::new(rustls_graviola::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned(fp, provider)))
            .with_no_client_auth();
        Browser { addr: gw.https, config: Arc::new(config) }
    }

    fn send(&self, method: &str, path: &str, extra: &str, body: &str) -> Resp {
        let conn = rustls::ClientConnection::new(self.config.clone(), "localhost".try_into().unwrap()).unwrap();
        let tcp = TcpStream::connect(self.addr).expect("HTTPS connects");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("TLS handshake with the pinned certificate");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        Resp { code, head: head.to_string(), body: body.to_string() }
    }

    fn get(&self, path: &str, cookie: &str) -> Resp {
        self.send("GET", path, &format!("Cookie: {cookie}\r\n"), "")
    }

    fn post(&self, path: &str, cookie: &str, body: &str) -> Resp {
        self.send("POST", path, &format!("Cookie: {cookie}\r\n"), body)
    }

    fn login(&self, user: &str, password: &str) -> Resp {
        self.send("POST", "/login", "", &form(&[("user", user), ("password", password)]))
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn initial_password(gw: &Gatewayd) -> String {
    gw.log()
        .lines()
        .find_map(|l| l.split_once("INITIAL PASSWORD for user 'admin' (shown once, to be changed at first login): ").map(|x| x.1.trim().to_string()))
        .expect("the initial password on the console")
}

#[test]
fn web_ui_over_https_with_accounts_csrf_roles_and_audit() {
    let kamailio = Kamailio::start(free_udp_port(), common::PASSWORD).expect("kamailio starts");
    let gw = Gatewayd::start(kamailio.addr(), GwOptions { fxs_ports: 1, ..Default::default() });
    gw.wait_registered(&["1001"]);
    let b = Browser::new(&gw);
    let initial = initial_password(&gw);

    // Plain HTTP redirects to HTTPS (the status JSON stays for monitoring).
    let r = gw.http_get("/config");
    assert!(r.contains("HTTPS"), "{r}");
    assert!(gw.status().is_some());

    // First login: the initial password works once, only to change it.
    let r = b.login("admin", &initial);
    assert_eq!((r.code, r.header("location").as_deref()), (303, Some("/password")), "{r:?}");
    let set = r.header("set-cookie").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Strict"), "{set}");
    let admin = r.cookie();
    assert_eq!(b.get("/config", &admin).header("location").as_deref(), Some("/password"));
    let csrf = b.get("/password", &admin).csrf();
    let change = form(&[("csrf", &csrf), ("old", &initial), ("new", "site-admin-1"), ("again", "site-admin-1")]);
    assert_eq!(b.post("/password", &admin, &change).header("location").as_deref(), Some("/"));
    let dash = b.get("/", &admin);
    assert!(dash.code == 200 && dash.body.contains("Ports"), "{dash:?}");

    // The configuration, secrets masked.
    let shown = b.get("/api/config", &admin).body;
    assert!(shown.contains("password = \"********\"") && !shown.contains(common::PASSWORD), "{shown}");
    // The installer's own file: the User-Agent may be left to its default.
    let edited = if shown.contains("user_agent = \"gatewayd\"") {
        shown.replace("user_agent = \"gatewayd\"", "user_agent = \"Web-GW\"")
    } else {
        shown.replacen("[sip]\n", "[sip]\nuser_agent = \"Web-GW\"\n", 1)
    };
    assert_ne!(edited, shown, "{shown}");
    let original = std::fs::read_to_string(&gw.config_path).unwrap();
    let csrf = b.get("/config", &admin).csrf();
    // Missing and wrong tokens, a cross-site form: 403, nothing saved.
    assert_eq!(b.post("/config", &admin, &form(&[("config", &edited)])).code, 403);
    assert_eq!(b.post("/config", &admin, &form(&[("csrf", &"0".repeat(64)), ("config", &edited)])).code, 403);
    let cross = b.send("POST", "/config", &format!("Cookie: {admin}\r\nOrigin: https://evil.example\r\n"), &form(&[("csrf", &csrf), ("config", &edited)]));
    assert_eq!(cross.code, 403);
    // A read-only user.
    let add = form(&[("csrf", &csrf), ("action", "add"), ("name", "viewer"), ("role", "read-only"), ("password", "viewer-pass-1")]);
    assert_eq!(b.post("/accounts", &admin, &add).code, 200);
    let viewer = b.login("viewer", "viewer-pass-1").cookie();
    let vcsrf = b.get("/password", &viewer).csrf();
    let vchange = form(&[("csrf", &vcsrf), ("old", "viewer-pass-1"), ("new", "viewer-pass-2"), ("again", "viewer-pass-2")]);
    assert_eq!(b.post("/password", &viewer, &vchange).code, 303);
    assert_eq!(b.post("/config", &viewer, &form(&[("csrf", &vcsrf), ("config", &edited)])).code, 403);
    // An invalid document: the error next to it.
    let bad = b.post("/config", &admin, &form(&[("csrf", &csrf), ("config", &edited.replace("ptime_ms = 20", "ptime_ms = 25"))]));
    assert!(bad.code == 422 && bad.body.contains("media.ptime_ms"), "{bad:?}");
    assert_eq!(std::fs::read_to_string(&gw.config_path).unwrap(), original, "refusals change nothing");

    // Wrong passwords: after the free ones, even the right one waits.
    for _ in 0..4 {
        assert_eq!(b.login("admin", "guess-guess").code, 401);
    }
    assert_eq!(b.login("admin", "site-admin-1").code, 429);

    // A change every part can take live: applied at once, the session kept,
    // the trunk's next request carries the new User-Agent.
    let ok = b.post("/config", &admin, &form(&[("csrf", &csrf), ("config", &edited)]));
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(ok.body.contains("applied without a restart"), "{}", ok.body);
    gw.wait_until("the live change", Duration::from_secs(10), || {
        gw.log().contains("configuration applied without a restart")
    });
    assert!(!gw.log().contains("restarting with the new configuration"));
    assert!(std::fs::read_to_string(&gw.config_path).unwrap().contains("Web-GW"));
    let dash = b.get("/", &admin);
    assert_eq!(dash.code, 200, "the session outlives a live change: {dash:?}");

    // A change that needs a restart (the country: tones and cadences).
    let csrf = b.get("/config", &admin).csrf();
    let shown = b.get("/api/config", &admin).body;
    assert!(shown.contains("Web-GW"), "{shown}");
    let restart = shown.replace("country = \"US\"", "country = \"DE\"");
    assert_ne!(restart, shown);
    let ok = b.post("/config", &admin, &form(&[("csrf", &csrf), ("config", &restart)]));
    assert_eq!(ok.code, 200, "{ok:?}");
    assert!(ok.body.contains("restart"), "{}", ok.body);
    gw.wait_until("the new configuration running", Duration::from_secs(20), || {
        gw.log().contains("restarting with the new configuration") && gw.status().is_some()
    });
    gw.wait_registered(&["1001"]);
    let file = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(file.contains("Web-GW") && file.contains("country = \"DE\""), "{file}");
    // Sessions end with the process; the accounts and the certificate stay.
    assert_eq!(b.get("/", &admin).header("location").as_deref(), Some("/login"));
    let again = b.login("viewer", "viewer-pass-2");
    assert_eq!(again.code, 303, "{again:?}");
    let audit = b.get("/audit", &again.cookie()).body;
    for needle in ["config.commit", "user_agent", "country", "account.add", "password.change", "127.0.0.1"] {
        assert!(audit.contains(needle), "{needle} in {audit}");
    }
}
