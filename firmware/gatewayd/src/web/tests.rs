//! The web UI's session, CSRF, role and audit logic, driven over TCP as a
//! browser would (the TLS layer is tested in `tls.rs` and the hil test).

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Fixture {
    web: Web,
    addr: SocketAddr,
    restarts: Arc<AtomicU32>,
    path: std::path::PathBuf,
    initial: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let f = crate::config_store::fixture(dir.path(), crate::config::DEFAULT_TOML);
    let ctx = WebContext { status: f.status, store: f.store, restart: f.restart, apply: f.apply, capture: Default::default(), isdn: Default::default() };
    let opened = crate::accounts::open_fast(&dir.path().join("accounts.toml")).unwrap();
    let audit = AuditLog::open(Some(dir.path().join(crate::audit::FILE)), crate::audit::DEFAULT_MAX_BYTES);
    let web = Web::new(ctx, opened.accounts, audit, 8443);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(web.clone()).into_make_service_with_connect_info::<Peer>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fixture { web, addr, restarts: f.restarts, path: f.path, initial: opened.initial_password.unwrap(), _dir: dir }
}

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
    fn cookie(&self) -> Option<String> {
        self.header("set-cookie")?.split(';').next().map(str::to_string)
    }
    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a token") + 19;
        self.body[at..at + 64].to_string()
    }
}

async fn send(addr: SocketAddr, method: &str, path: &str, extra: &str, body: &str) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Resp { code, head: head.to_string(), body: body.to_string() }
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

async fn get(addr: SocketAddr, path: &str, cookie: &str) -> Resp {
    send(addr, "GET", path, &format!("Cookie: {cookie}\r\n"), "").await
}

async fn post(addr: SocketAddr, path: &str, cookie: &str, body: &str) -> Resp {
    send(addr, "POST", path, &format!("Cookie: {cookie}\r\n"), body).await
}

async fn log_in(addr: SocketAddr, user: &str, password: &str) -> Resp {
    send(addr, "POST", "/login", "", &form(&[("user", user), ("password", password)])).await
}

/// Logs in as admin with a changed password; returns the cookie.
async fn admin(f: &Fixture) -> String {
    f.web.accounts.lock().unwrap().set_password("admin", "admin-pass-1", false).unwrap();
    let r = log_in(f.addr, "admin", "admin-pass-1").await;
    assert_eq!((r.code, r.header("location").as_deref()), (303, Some("/")), "{r:?}");
    r.cookie().unwrap()
}

#[tokio::test]
async fn the_first_login_forces_the_password_change_and_the_cookie_is_locked_down() {
    let f = fixture().await;
    // No session: every page sends to the login.
    for p in ["/", "/config", "/audit", "/accounts", "/api/config", "/password"] {
        let r = get(f.addr, p, "").await;
        assert_eq!((r.code, r.header("location").as_deref()), (303, Some("/login")), "{p}");
    }
    assert!(get(f.addr, "/api/status", "").await.body.contains("\"board\""));
    let r = log_in(f.addr, "admin", &f.initial).await;
    assert_eq!(r.header("location").as_deref(), Some("/password"));
    let set = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    let cookie = r.cookie().unwrap();
    assert_eq!(cookie.len(), COOKIE.len() + 1 + 64);
    // Until the password is changed, nothing else.
    for p in ["/", "/config", "/accounts"] {
        assert_eq!(get(f.addr, p, &cookie).await.header("location").as_deref(), Some("/password"), "{p}");
    }
    let page = get(f.addr, "/password", &cookie).await;
    assert_eq!(page.code, 200);
    let csrf = page.csrf();
    let change = |token: &str, new: &str, again: &str| form(&[("csrf", token), ("old", &f.initial), ("new", new), ("again", again)]);
    assert_eq!(post(f.addr, "/password", &cookie, &change("", "own-secret-1", "own-secret-1")).await.code, 403);
    assert_eq!(post(f.addr, "/password", &cookie, &change(&csrf, "own-secret-1", "other")).await.code, 422);
    assert_eq!(post(f.addr, "/password", &cookie, &change(&csrf, "short", "short")).await.code, 422);
    assert!(f.web.accounts.lock().unwrap().must_change("admin"));
    let r = post(f.addr, "/password", &cookie, &change(&csrf, "own-secret-1", "own-secret-1")).await;
    assert_eq!((r.code, r.header("location").as_deref()), (303, Some("/")), "{r:?}");
    let dash = get(f.addr, "/", &cookie).await;
    assert_eq!(dash.code, 200);
    assert!(dash.body.contains("http-equiv=\"refresh\"") && dash.body.contains("Ports"), "{}", dash.body);
    assert_eq!(f.web.audit.lock().unwrap().recent(1)[0].action, "password.change");
    // The initial password is gone; the new one works.
    assert_eq!(log_in(f.addr, "admin", &f.initial).await.code, 401);
    assert_eq!(log_in(f.addr, "admin", "own-secret-1").await.header("location").as_deref(), Some("/"));
    // Log out: the cookie is dead.
    let csrf = get(f.addr, "/", &cookie).await.csrf();
    assert_eq!(post(f.addr, "/logout", &cookie, &form(&[("csrf", &csrf)])).await.code, 303);
    assert_eq!(get(f.addr, "/", &cookie).await.header("location").as_deref(), Some("/login"));
}

#[tokio::test]
async fn wrong_passwords_are_rate_limited_even_before_the_right_one() {
    let f = fixture().await;
    for _ in 0..=crate::accounts::FREE_FAILURES {
        assert_eq!(log_in(f.addr, "admin", "guess-1234").await.code, 401);
    }
    let r = log_in(f.addr, "admin", &f.initial).await;
    assert_eq!(r.code, 429, "{r:?}");
    assert!(r.header("retry-after").is_some());
    assert!(r.cookie().is_none());
}

#[tokio::test]
async fn config_changes_need_the_csrf_token_an_admin_and_a_valid_document_and_are_audited() {
    let f = fixture().await;
    let before = std::fs::read_to_string(&f.path).unwrap();
    let cookie = admin(&f).await;
    let page = get(f.addr, "/config", &cookie).await;
    let csrf = page.csrf();
    let doc = f.web.ctx.store().show_running().replace("register_expires = 300", "register_expires = 120");
    // No token, a wrong token, a cross-site origin: refused, nothing saved.
    assert_eq!(post(f.addr, "/config", &cookie, &form(&[("config", &doc)])).await.code, 403);
    let wrong = "0".repeat(64);
    assert_eq!(post(f.addr, "/config", &cookie, &form(&[("csrf", &wrong), ("config", &doc)])).await.code, 403);
    let cross = send(f.addr, "POST", "/config", &format!("Cookie: {cookie}\r\nOrigin: https://evil.example\r\n"), &form(&[("csrf", &csrf), ("config", &doc)])).await;
    assert_eq!(cross.code, 403);
    // A read-only user's change: refused.
    f.web.accounts.lock().unwrap().add("viewer", Role::ReadOnly, "viewer-pass-1").unwrap();
    f.web.accounts.lock().unwrap().set_password("viewer", "viewer-pass-2", false).unwrap();
    let viewer = log_in(f.addr, "viewer", "viewer-pass-2").await.cookie().unwrap();
    let vpage = get(f.addr, "/config", &viewer).await;
    assert!(vpage.body.contains(" readonly>"));
    let vcsrf = get(f.addr, "/password", &viewer).await.csrf();
    assert_eq!(post(f.addr, "/config", &viewer, &form(&[("csrf", &vcsrf), ("config", &doc)])).await.code, 403);
    assert_eq!(post(f.addr, "/accounts", &viewer, &form(&[("csrf", &vcsrf), ("action", "remove"), ("name", "admin")])).await.code, 403);
    // An invalid document: the error shown next to it, nothing saved.
    let bad = post(f.addr, "/config", &cookie, &form(&[("csrf", &csrf), ("config", &doc.replace("ptime_ms = 20", "ptime_ms = 25"))])).await;
    assert_eq!(bad.code, 422);
    assert!(bad.body.contains("class=err") && bad.body.contains("media.ptime_ms") && bad.body.contains("ptime_ms = 25"), "{}", bad.body);
    assert_eq!(std::fs::read_to_string(&f.path).unwrap(), before, "refusals change nothing");
    assert_eq!(f.restarts.load(Ordering::Relaxed), 0);
    assert!(f.web.audit.lock().unwrap().recent(10).iter().all(|e| e.action != "config.commit"));
    // The real thing.
    let ok = post(f.addr, "/config", &cookie, &form(&[("csrf", &csrf), ("config", &doc)])).await;
    assert_eq!(ok.code, 200, "{}", ok.body);
    assert!(ok.body.contains("applied without a restart"), "{}", ok.body);
    assert_eq!(f.restarts.load(Ordering::Relaxed), 0, "register_expires is taken live");
    assert_eq!(crate::config::Config::load(&f.path, 4).unwrap().sip.register_expires, 120);
    let entry = f.web.audit.lock().unwrap().recent(1)[0].clone();
    assert_eq!((entry.user.as_str(), entry.from.as_str(), entry.action.as_str()), ("admin", "127.0.0.1", "config.commit"));
    assert!(entry.detail.contains("register_expires"), "{entry:?}");
    let audit = get(f.addr, "/audit", &cookie).await;
    assert!(audit.body.contains("config.commit") && audit.body.contains("register_expires"));
}

#[tokio::test]
async fn admins_manage_accounts_and_a_reset_ends_the_users_sessions() {
    let f = fixture().await;
    let cookie = admin(&f).await;
    let csrf = get(f.addr, "/accounts", &cookie).await.csrf();
    let add = |name: &str, pw: &str| form(&[("csrf", &csrf), ("action", "add"), ("name", name), ("role", "read-only"), ("password", pw)]);
    assert_eq!(post(f.addr, "/accounts", &cookie, &add("<script>", "viewer-pass-1")).await.code, 422);
    assert_eq!(post(f.addr, "/accounts", &cookie, &add("viewer", "short")).await.code, 422);
    let r = post(f.addr, "/accounts", &cookie, &add("viewer", "viewer-pass-1")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(r.body.contains("<td>viewer</td><td>read-only</td>"));
    let viewer = log_in(f.addr, "viewer", "viewer-pass-1").await;
    assert_eq!(viewer.header("location").as_deref(), Some("/password"), "a new user changes the admin's password first");
    let viewer = viewer.cookie().unwrap();
    let reset = form(&[("csrf", &csrf), ("action", "password"), ("name", "viewer"), ("password", "viewer-pass-9")]);
    assert_eq!(post(f.addr, "/accounts", &cookie, &reset).await.code, 200);
    assert_eq!(get(f.addr, "/password", &viewer).await.header("location").as_deref(), Some("/login"));
    let remove_admin = form(&[("csrf", &csrf), ("action", "remove"), ("name", "admin")]);
    assert_eq!(post(f.addr, "/accounts", &cookie, &remove_admin).await.code, 422);
    let actions: Vec<String> = f.web.audit.lock().unwrap().recent(10).into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["account.password", "account.add"]);
}

#[tokio::test]
async fn http_redirects_to_https_and_serves_the_status_and_limits_connections() {
    use std::time::Duration;
    let f = fixture().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_redirect(listener, f.web.clone(), 2, Duration::from_millis(400)));
    let r = send(addr, "GET", "/config?x=1", "", "").await;
    assert_eq!((r.code, r.header("location").as_deref()), (308, Some("https://127.0.0.1:8443/config?x=1")));
    let r = send(addr, "POST", "/login", "", "user=admin").await;
    assert_eq!(r.code, 308, "a POST is redirected too, never served in clear");
    assert!(send(addr, "GET", "/api/status", "", "").await.body.contains("\"board\""));
    assert_eq!(host_name("[::1]:8080"), "[::1]");
    assert_eq!(host_name("localhost"), "localhost");
    // Two idle connections hold the budget; a third is answered 503.
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut out)).await;
    assert!(out.starts_with(b"HTTP/1.1 503"));
}

#[tokio::test]
async fn foreign_hosts_are_refused_and_pages_carry_security_headers() {
    let f = fixture().await;
    let ok = send(f.addr, "GET", "/login", "", "").await;
    assert_eq!(ok.code, 200);
    assert_eq!(ok.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(ok.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /login HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    assert!(out.starts_with(b"HTTP/1.1 421"));
    assert!(host_allowed("[::1]:80") && host_allowed("10.0.0.1") && !host_allowed("[::1") && !host_allowed("box.local"));
    assert_eq!(escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    // Garbage bodies are refused, not a panic.
    assert!(send(f.addr, "POST", "/login", "", "%%%=\u{1}").await.code >= 400);
}

/// The ISDN page and `/api/isdn`: for any logged-in user (a read-only one
/// here), each span's layers, alarms, TEI, counters and B-channels, and the
/// last D-channel frames decoded; nothing without a session.
#[tokio::test]
async fn the_isdn_page_shows_spans_and_decoded_frames_to_read_only_users() {
    use crate::isdn::SpanCounters;
    let f = fixture().await;
    for p in ["/isdn", "/api/isdn"] {
        let r = get(f.addr, p, "").await;
        assert_eq!((r.code, r.header("location").as_deref()), (303, Some("/login")), "{p}");
    }
    f.web.accounts.lock().unwrap().add("viewer", Role::ReadOnly, "viewer-pass-1").unwrap();
    f.web.accounts.lock().unwrap().set_password("viewer", "viewer-pass-2", false).unwrap();
    let viewer = log_in(f.addr, "viewer", "viewer-pass-2").await.cookie().unwrap();
    let r = get(f.addr, "/isdn", &viewer).await;
    assert_eq!(r.code, 200);
    assert!(r.body.contains("No ISDN span is configured"), "{}", r.body);
    let api: serde_json::Value = serde_json::from_str(&get(f.addr, "/api/isdn", &viewer).await.body).unwrap();
    assert_eq!(api, serde_json::json!({"spans": [], "frames": []}));

    // A real span's status (its B-channels as the span reports them), then
    // layer 1 lost with LOS.
    let mut st = crate::isdn_debug::test_support::span("web-pri", "pri", "nt", vec![]).status();
    st.l1 = "deactivated".into();
    st.alarms = "LOS".into();
    st.counters = SpanCounters { frames_in: 7, bad_fcs: 2, l1_losses: 1, ..Default::default() };
    st.b_channels[0].state = "busy".into();
    st.b_channels[0].call = Some("call ref 3 in 5551234 -> 1001 (Active)".into());
    f.web.ctx.status.lock().unwrap().isdn = vec![st];
    // A SETUP from the user side, received on our NT span; one of another span not shown.
    let mut setup = vec![0x00, 0x01, 0x00, 0x00];
    setup.extend_from_slice(include_bytes!("../../../isdn/testdata/q931/setup-bri.bin"));
    crate::isdn_debug::tap("web-pri", true, false, &setup);
    crate::isdn_debug::tap("web-other", true, false, &[0x00, 0x01, 0x7F]);
    let r = get(f.addr, "/isdn", &viewer).await;
    assert_eq!(r.code, 200);
    for want in [
        "<h2>Span web-pri (PRI &lt;1&gt;)</h2>",
        "PRI NT PTP, euroisdn, clock internal",
        "<th>Layer 1</th><td class=err>deactivated</td>",
        "<th>Alarms</th><td class=err>LOS</td>",
        "<th>Layer 2</th><td class=err>tei-assigned (down)</td>",
        "<th>frames in</th><td>7</td>",
        "<th>bad FCS</th><td>2</td>",
        "<th>layer 1 lost</th><td>1</td>",
        "<tr><td>1</td><td>8</td><td>busy</td><td>call ref 3 in 5551234 -&gt; 1001 (Active)</td></tr>",
        "<tr><td>2</td><td>9</td><td>unused</td><td></td></tr>",
        "web-pri in  I N(S)=0 N(R)=0 P=0, SAPI 0 TEI 0 command; Q.931 SETUP cref 1 (originator) called &quot;5678&quot; calling &quot;1234&quot;",
        "C/R 0 (command from the user side)",
        "Bearer capability [80 90 a3]: ITU-T, speech; circuit mode, 64 kbit/s; layer 1 G.711 A-law",
        "<a href=\"/isdn\">ISDN</a>",
    ] {
        assert!(r.body.contains(want), "missing {want:?} in {}", r.body);
    }
    assert!(!r.body.contains("web-other"), "{}", r.body);
    let api: serde_json::Value = serde_json::from_str(&get(f.addr, "/api/isdn", &viewer).await.body).unwrap();
    assert_eq!(api["spans"][0]["name"], "web-pri");
    assert_eq!(api["spans"][0]["l1"], "deactivated");
    assert_eq!(api["spans"][0]["alarms"], "LOS");
    assert_eq!(api["spans"][0]["counters"]["bad_fcs"], 2);
    assert_eq!(api["spans"][0]["b_channels"][1]["state"], "unused");
    assert_eq!(api["spans"][0]["b_channels"][0]["call"], "call ref 3 in 5551234 -> 1001 (Active)");
    let frames = api["frames"].as_array().unwrap();
    assert_eq!(frames.len(), 1, "{api}");
    assert_eq!(frames[0]["dir"], "in");
    assert!(frames[0]["summary"].as_str().unwrap().contains("Q.931 SETUP cref 1"), "{api}");
    assert!(frames[0]["hex"].as_str().unwrap().starts_with("00 01 00 00 08 01 01 05"), "{api}");
    assert!(frames[0]["details"].as_array().unwrap().iter().any(|d| d.as_str().unwrap().starts_with("IE 0x70 Called party number")));
}
