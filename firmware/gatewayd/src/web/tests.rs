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
    assert_eq!(ok.header("referrer-policy").as_deref(), Some("same-origin"), "no-referrer makes browsers send Origin: null");
    let null = send(f.addr, "POST", "/login", "Origin: null\r\n", "user=admin&password=x").await;
    assert_eq!(null.code, 403, "an opaque origin is cross-site");
    let same = send(f.addr, "POST", "/login", &format!("Origin: https://{}\r\n", f.addr), "user=admin&password=x").await;
    assert_eq!(same.code, 401, "the UI's own origin passes the guard");
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

/// The id of the error shown next to `path`'s input.
fn err_id(path: &str) -> String {
    let id: String = path.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    format!("id=\"{id}-err\"")
}

#[tokio::test]
async fn the_field_editors_show_each_error_next_to_its_field_and_change_nothing() {
    let f = fixture().await;
    let before = std::fs::read_to_string(&f.path).unwrap();
    let cookie = admin(&f).await;
    for p in ["/ports", "/trunks", "/routes"] {
        let page = get(f.addr, p, &cookie).await;
        assert_eq!(page.code, 200, "{p}");
    }
    let page = get(f.addr, "/trunks", &cookie).await;
    assert!(page.body.contains("name=\"sip.register_expires\" value=\"300\""), "{}", page.body);
    assert!(!page.body.contains("name=\"sip.password\" value=\"change-me\""), "secrets are never shown");
    let csrf = page.csrf();
    // Out of range, a URI for an address, an overlong string, a control character.
    let bad = post(
        f.addr,
        "/trunks",
        &cookie,
        &form(&[
            ("csrf", &csrf),
            ("sip.register_expires", "100000"),
            ("sip.proxy", "sip:carrier@@example.net"),
            ("sip.user_agent", &"u".repeat(65)),
            ("sip.domain", "bad\u{1}domain"),
        ]),
    )
    .await;
    assert_eq!(bad.code, 422, "{}", bad.body);
    for (path, words) in [
        ("sip.register_expires", "from 0 to 86400"),
        ("sip.proxy", "not an address and port"),
        ("sip.user_agent", "at most 64 characters"),
        ("sip.domain", "one line"),
    ] {
        let at = bad.body.find(&err_id(path)).unwrap_or_else(|| panic!("{path}: no error next to it: {}", bad.body));
        assert!(bad.body[at..].split("</span>").next().unwrap().contains(words), "{path}: {words}");
    }
    assert!(bad.body.contains("value=\"100000\""), "the bad input is shown again to be fixed");
    // Invalid UTF-8 in a field: an error there, not a refused request.
    let raw = format!("csrf={csrf}&sip.user_agent=%FF%FEgw");
    let r = post(f.addr, "/trunks", &cookie, &raw).await;
    assert_eq!(r.code, 422);
    assert!(r.body.contains(&err_id("sip.user_agent")) && r.body.contains("not valid UTF-8"), "{}", r.body);
    // Refused by the whole-configuration check: named by the store, shown at its field.
    let r = post(f.addr, "/trunks", &cookie, &form(&[("csrf", &csrf), ("sip.register_expires", "30")])).await;
    assert_eq!(r.code, 422);
    let at = r.body.find(&err_id("sip.register_expires")).expect("the store's error at its field");
    assert!(r.body[at..].contains("at least 60"), "{}", r.body);
    // Ports and rules: a letter in a number, an overlong list item, a bad pattern.
    let csrf_p = get(f.addr, "/ports", &cookie).await.csrf();
    let r = post(f.addr, "/ports", &cookie, &form(&[("csrf", &csrf_p), ("fxs[0].number", "10a1"), ("fxs[1].number", &"1".repeat(40))])).await;
    assert_eq!(r.code, 422);
    assert!(r.body.contains(&err_id("fxs[0].number")) && r.body.contains(&err_id("fxs[1].number")), "{}", r.body);
    let r = post(f.addr, "/routes", &cookie, &form(&[("csrf", &csrf_p), ("route[0].from", &"g".repeat(33)), ("route[0].strip", "99")])).await;
    assert_eq!(r.code, 422);
    assert!(r.body.contains(&err_id("route[0].from")) && r.body.contains(&err_id("route[0].strip")), "{}", r.body);
    // A duplicate port number: refused by the store, nothing saved.
    let r = post(f.addr, "/ports", &cookie, &form(&[("csrf", &csrf_p), ("fxs[0].number", "1002")])).await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(std::fs::read_to_string(&f.path).unwrap(), before, "refusals change nothing");
    assert!(f.web.audit.lock().unwrap().recent(10).iter().all(|e| e.action != "config.commit"));
    // No token, or a read-only user: 403.
    assert_eq!(post(f.addr, "/trunks", &cookie, &form(&[("sip.register_expires", "120")])).await.code, 403);
    f.web.accounts.lock().unwrap().add("viewer", Role::ReadOnly, "viewer-pass-1").unwrap();
    f.web.accounts.lock().unwrap().set_password("viewer", "viewer-pass-2", false).unwrap();
    let viewer = log_in(f.addr, "viewer", "viewer-pass-2").await.cookie().unwrap();
    let vpage = get(f.addr, "/trunks", &viewer).await;
    assert!(vpage.body.contains(" readonly") && !vpage.body.contains("id=\"save\""));
    let vcsrf = vpage.csrf();
    assert_eq!(post(f.addr, "/trunks", &viewer, &form(&[("csrf", &vcsrf), ("sip.register_expires", "120")])).await.code, 403);
    assert_eq!(std::fs::read_to_string(&f.path).unwrap(), before);

    // Good input: saved, applied live, audited; the form shows the new values.
    let ok = post(f.addr, "/trunks", &cookie, &form(&[("csrf", &csrf), ("sip.register_expires", "120"), ("sip.user_agent", "Site \"A\" GW")])).await;
    assert_eq!(ok.code, 200, "{}", ok.body);
    assert!(ok.body.contains("applied without a restart") && ok.body.contains("value=\"120\""), "{}", ok.body);
    let saved = crate::config::Config::load(&f.path, 4).unwrap();
    assert_eq!((saved.sip.register_expires, saved.sip.user_agent.as_str()), (120, "Site \"A\" GW"));
    assert_eq!(saved.sip.password, crate::config::Config::default_sim().sip.password, "an empty secret keeps its value");
    assert_eq!(f.restarts.load(Ordering::Relaxed), 0);
    let entry = f.web.audit.lock().unwrap().recent(1)[0].clone();
    assert!(entry.action == "config.commit" && entry.detail.contains("/trunks") && entry.detail.contains("register_expires"), "{entry:?}");
    let r = post(f.addr, "/ports", &cookie, &form(&[("csrf", &csrf), ("fxs[0].number", "2001")])).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(crate::config::Config::load(&f.path, 4).unwrap().fxs[0].number, "2001");
    let r = post(f.addr, "/ports", &cookie, &form(&[("csrf", &csrf), ("fxs[0].number", "2001")])).await;
    assert!(r.body.contains("nothing changed"), "{}", r.body);
}

#[tokio::test]
async fn diagnostics_test_a_route_and_run_the_capture() {
    let f = fixture().await;
    let cookie = admin(&f).await;
    let page = get(f.addr, "/diag", &cookie).await;
    assert_eq!(page.code, 200);
    assert!(page.body.contains("<option>phones</option>") && page.body.contains("capture stopped"), "{}", page.body);
    let csrf = page.csrf();
    let r = post(f.addr, "/diag", &cookie, &form(&[("csrf", &csrf), ("action", "test-route"), ("from", "phones"), ("number", "2000")])).await;
    assert_eq!(r.code, 200);
    assert!(r.body.contains("id=\"route-result\"") && r.body.contains("result: route[1]"), "{}", r.body);
    for (from, number, words) in [("phones", "20x0", "number:"), ("nowhere", "2000", "neither a group nor a trunk"), ("phones", "", "number:")] {
        let r = post(f.addr, "/diag", &cookie, &form(&[("csrf", &csrf), ("action", "test-route"), ("from", from), ("number", number)])).await;
        assert_eq!(r.code, 422, "{from} {number}");
        assert!(r.body.contains("id=\"route-err\"") && r.body.contains(words), "{}", r.body);
    }
    assert!(!f.web.ctx.capture.is_on());
    let r = post(f.addr, "/diag", &cookie, &form(&[("csrf", &csrf), ("action", "capture-start")])).await;
    assert!(r.code == 200 && f.web.ctx.capture.is_on(), "{}", r.body);
    f.web.ctx.capture.record("127.0.0.1:5060".parse().unwrap(), "127.0.0.1:5070".parse().unwrap(), b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    let r = post(f.addr, "/diag", &cookie, &form(&[("csrf", &csrf), ("action", "capture-stop")])).await;
    assert!(r.body.contains("id=\"capture-download\""), "{}", r.body);
    assert!(!f.web.ctx.capture.is_on());
    let pcap = get(f.addr, "/api/capture.pcap", &cookie).await;
    assert_eq!(pcap.header("content-type").as_deref(), Some("application/vnd.tcpdump.pcap"));
    let actions: Vec<String> = f.web.audit.lock().unwrap().recent(10).into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["capture.stop", "capture.start"]);
    // A read-only user may test a route, not capture.
    f.web.accounts.lock().unwrap().add("viewer", Role::ReadOnly, "viewer-pass-1").unwrap();
    f.web.accounts.lock().unwrap().set_password("viewer", "viewer-pass-2", false).unwrap();
    let viewer = log_in(f.addr, "viewer", "viewer-pass-2").await.cookie().unwrap();
    let vcsrf = get(f.addr, "/diag", &viewer).await.csrf();
    let r = post(f.addr, "/diag", &viewer, &form(&[("csrf", &vcsrf), ("action", "test-route"), ("from", "phones"), ("number", "1002")])).await;
    assert_eq!(r.code, 200);
    assert_eq!(post(f.addr, "/diag", &viewer, &form(&[("csrf", &vcsrf), ("action", "capture-start")])).await.code, 403);
    assert!(!f.web.ctx.capture.is_on());
}

#[tokio::test]
async fn diagnostics_ring_an_idle_port_admins_only() {
    let f = fixture().await;
    {
        let mut st = f.web.ctx.status.lock().unwrap();
        let port = |n: usize, state: &str| crate::gateway::PortStatus { port: n, number: format!("100{n}"), state: state.into(), ..Default::default() };
        st.ports = vec![port(1, "Idle"), port(2, "Connected")];
    }
    let cookie = admin(&f).await;
    let page = get(f.addr, "/diag", &cookie).await;
    assert!(page.body.contains("FXS 1 (1001, Idle)") && page.body.contains("id=\"ring-port\""), "{}", page.body);
    let csrf = page.csrf();
    let ring = |port: &'static str, secs: &'static str| form(&[("csrf", &csrf), ("action", "ring-port"), ("port", port), ("secs", secs)]);
    let r = post(f.addr, "/diag", &cookie, &ring("1", "5")).await;
    assert!(r.code == 200 && r.body.contains("ringing FXS 1 for 5 s"), "{}", r.body);
    for (port, secs, words) in [("2", "5", "FXS 2 is in use (Connected)"), ("9", "5", "no FXS port"), ("1", "0", "not a number of seconds"), ("1", "x", "not a number")] {
        let r = post(f.addr, "/diag", &cookie, &ring(port, secs)).await;
        assert_eq!(r.code, 422, "{port} {secs}");
        assert!(r.body.contains("id=\"ring-err\"") && r.body.contains(words), "{}", r.body);
    }
    let actions: Vec<String> = f.web.audit.lock().unwrap().recent(10).into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["port.test-ring"]);
    f.web.accounts.lock().unwrap().add("viewer", Role::ReadOnly, "viewer-pass-1").unwrap();
    f.web.accounts.lock().unwrap().set_password("viewer", "viewer-pass-2", false).unwrap();
    let viewer = log_in(f.addr, "viewer", "viewer-pass-2").await.cookie().unwrap();
    let vpage = get(f.addr, "/diag", &viewer).await;
    assert!(!vpage.body.contains("id=\"ring-port\""));
    let vcsrf = vpage.csrf();
    let r = post(f.addr, "/diag", &viewer, &form(&[("csrf", &vcsrf), ("action", "ring-port"), ("port", "1"), ("secs", "5")])).await;
    assert_eq!(r.code, 403);
}

async fn upload(addr: SocketAddr, cookie: &str, csrf: &str, file: &[u8]) -> Resp {
    let mut body = format!("--B0undary\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--B0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"gw.toml\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--B0undary--\r\n");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /config/import HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: multipart/form-data; boundary=B0undary\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Resp { code, head: head.to_string(), body: body.to_string() }
}

#[tokio::test]
async fn import_refuses_bad_files_next_to_the_field_then_export_import_and_rollback_work() {
    let f = fixture().await;
    let before = std::fs::read_to_string(&f.path).unwrap();
    let cookie = admin(&f).await;
    let page = get(f.addr, "/config/import", &cookie).await;
    assert!(page.code == 200 && page.body.contains("enctype=\"multipart/form-data\""));
    let csrf = page.csrf();
    let export = get(f.addr, "/config/export", &cookie).await;
    assert!(export.header("content-disposition").unwrap().contains("attachment"));
    assert!(export.body.contains("password = \"********\""), "secrets masked in the export");
    let exported = export.body.clone();
    // Invalid UTF-8, a truncated file, an invalid configuration, an empty upload.
    let mut bad_utf8 = exported.clone().into_bytes();
    bad_utf8.splice(10..10, [0xC3, 0x28]);
    let cut = &exported[..exported.find("[media]").unwrap() + 12];
    for (file, words) in [
        (bad_utf8.as_slice(), "not UTF-8 text (line 1"),
        (cut.as_bytes(), "line |missing field"),
        (exported.replace("ptime_ms = 20", "ptime_ms = 25").as_bytes(), "media.ptime_ms"),
        (b"".as_slice(), "empty"),
    ] {
        let r = upload(f.addr, &cookie, &csrf, file).await;
        assert_eq!(r.code, 422, "{}", r.body);
        let at = r.body.find("id=\"file-err\"").unwrap_or_else(|| panic!("no error next to the file field: {}", r.body));
        let shown = r.body[at..].split("</span>").next().unwrap();
        assert!(words.split('|').any(|w| shown.contains(w)), "{words}: {}", r.body);
    }
    assert_eq!(std::fs::read_to_string(&f.path).unwrap(), before, "bad imports change nothing");
    // Garbage that is not multipart, and no token: refused.
    assert_eq!(post(f.addr, "/config/import", &cookie, "file=x").await.code, 400);
    assert_eq!(upload(f.addr, &cookie, "", exported.as_bytes()).await.code, 403);
    // A good import (the masked secret keeps its value), then a rollback.
    let r = upload(f.addr, &cookie, &csrf, exported.replace("register_expires = 300", "register_expires = 900").as_bytes()).await;
    assert_eq!(r.code, 200, "{}", r.body);
    let saved = crate::config::Config::load(&f.path, 4).unwrap();
    assert_eq!(saved.sip.register_expires, 900);
    assert_eq!(saved.sip.password, crate::config::Config::default_sim().sip.password);
    let r = post(f.addr, "/config/rollback", &cookie, &form(&[("csrf", &csrf)])).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(crate::config::Config::load(&f.path, 4).unwrap().sip.register_expires, 300);
    let actions: Vec<String> = f.web.audit.lock().unwrap().recent(10).into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["config.rollback", "config.import", "config.commit"]);
}

#[tokio::test]
async fn every_field_of_every_editor_refuses_overlong_and_non_utf8_input() {
    let f = fixture().await;
    let before = std::fs::read_to_string(&f.path).unwrap();
    let cookie = admin(&f).await;
    let csrf = get(f.addr, "/ports", &cookie).await.csrf();
    let config = f.web.ctx.store().running().clone();
    let editors = [("/ports", forms::ports(&config)), ("/trunks", forms::trunks(&config)), ("/routes", forms::routes(&config))];
    let mut checked = 0;
    for (page, sections) in &editors {
        for field in sections.iter().flat_map(|s| &s.fields) {
            for value in ["9".repeat(300), "%FF%FE".to_string()] {
                // The value is sent as is (already encoded): %FF is a raw byte.
                let body = format!("csrf={csrf}&{}={value}", field.path);
                let r = post(f.addr, page, &cookie, &body).await;
                assert_eq!(r.code, 422, "{page} {} = {value}: {}", field.path, r.body);
                assert!(r.body.contains(&err_id(&field.path)), "{page} {}: no error next to it", field.path);
                checked += 1;
            }
        }
    }
    assert!(checked >= 2 * (4 * 3 + 5 + 2 * 6), "{checked} checks");
    assert_eq!(std::fs::read_to_string(&f.path).unwrap(), before, "nothing changed");
}
