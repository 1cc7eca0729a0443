//! The local web UI: the status and the configuration, and configuration
//! editing for the `admin` user.
//!
//! - `GET /`: a page with the status and the running configuration in a form;
//! - `GET /api/status`: the status as JSON;
//! - `GET /api/cdr`: the last calls' records (`cdr.rs`) as JSON, oldest first;
//! - `GET /api/capture.pcap`: the console's packet capture (`capture.rs`), for `admin`;
//! - `GET /api/config`: the running configuration as TOML, secrets masked;
//! - `POST /api/config`: a whole TOML document (HTTP Basic auth, user `admin`,
//!   password `management.web_password`). Secrets left masked keep their
//!   values. It is validated and saved exactly like `config commit` on the
//!   console (`config_store.rs`) and applied (live, or by a restart), or 422
//!   with the field and the reason and nothing changed, 401 on a wrong
//!   password, 403 when no web password is configured (read-only web UI).
//!
//! Plain HTTP: the listener is on 127.0.0.1 by default; TLS is not done yet.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::console::Context as WebContext;
use crate::status::snapshot;

pub async fn serve(listener: TcpListener, ctx: WebContext) {
    let limits = ctx.store().running().limits.clone();
    serve_with(listener, ctx, limits.web_connections, limits.idle_timeout()).await
}

/// The web UI with at most `connections` connections open (one more gets a
/// 503 and is closed), each closed after `idle` without traffic.
pub async fn serve_with(listener: TcpListener, ctx: WebContext, connections: usize, idle: std::time::Duration) {
    let budget = crate::conn_limit::Budget::new("web", connections, crate::conn_limit::WEB_REFUSAL);
    let listener = crate::conn_limit::LimitedListener::new(listener, budget, idle);
    let app = axum::Router::new()
        .route("/", get(page))
        .route("/api/status", get(|State(ctx): State<WebContext>| async move { axum::Json(snapshot(&ctx.status)) }))
        .route(
            "/api/capture.pcap",
            get(|State(ctx): State<WebContext>, headers: HeaderMap| async move { capture_download(&ctx, &headers) }),
        )
        .route(
            "/api/cdr",
            get(|State(ctx): State<WebContext>| async move {
                let log = ctx.status.lock().unwrap_or_else(|p| p.into_inner()).call_log.clone();
                axum::Json(log.records)
            }),
        )
        .route(
            "/api/config",
            get(|State(ctx): State<WebContext>| async move {
                ([(header::CONTENT_TYPE, "application/toml; charset=utf-8")], ctx.store().show_running())
            })
            .post(|State(ctx): State<WebContext>, headers: HeaderMap, body: String| async move {
                let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                let (code, text) = post_config(&ctx, auth, &body);
                let mut resp = (code, text).into_response();
                if code == StatusCode::UNAUTHORIZED {
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"gatewayd\""));
                }
                resp
            }),
        )
        .layer(axum::middleware::from_fn(guard))
        .with_state(ctx);
    if let Err(e) = axum::serve(listener, app).await {
        warn!(%e, "web UI server stopped");
    }
}

/// The POST /api/config decision, apart from HTTP.
pub fn post_config(ctx: &WebContext, authorization: Option<&str>, body: &str) -> (StatusCode, String) {
    let Some(password) = ctx.store().running().management.web_password.clone() else {
        return (StatusCode::FORBIDDEN, "the web UI is read-only: set management.web_password to edit here\n".into());
    };
    if !authorized(authorization, &password) {
        return (StatusCode::UNAUTHORIZED, "user admin and the web password are needed\n".into());
    }
    let store = ctx.store();
    let candidate = match store.candidate_from_text(body) {
        Ok(c) => c,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, format!("error: {e}\n")),
    };
    match store.commit(&candidate) {
        Ok(saved) => {
            info!(path = %saved.path.display(), "configuration saved from the web UI");
            drop(store);
            let (how, _) = ctx.apply_saved(saved.config.clone());
            (StatusCode::OK, format!("saved {}; {how}\n", saved.path.display()))
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, format!("error: {e}\n")),
    }
}

/// The packet capture as a pcap file: it holds signalling and voice, so
/// only for `admin`, like a configuration change.
fn capture_download(ctx: &WebContext, headers: &HeaderMap) -> Response {
    let Some(password) = ctx.store().running().management.web_password.clone() else {
        return (StatusCode::FORBIDDEN, "set management.web_password to download captures here (or use the console's capture save)\n").into_response();
    };
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !authorized(auth, &password) {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"gatewayd\"")], "user admin and the web password are needed\n")
            .into_response();
    }
    match ctx.capture.pcap() {
        None => (StatusCode::NOT_FOUND, "nothing captured yet: 'capture start' on the console\n").into_response(),
        Some(bytes) => (
            [
                (header::CONTENT_TYPE, "application/vnd.tcpdump.pcap"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"gatewayd.pcap\""),
            ],
            bytes,
        )
            .into_response(),
    }
}

/// HTTP Basic credentials `admin:<password>`, compared without an early exit.
fn authorized(header: Option<&str>, password: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else { return false };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
    let want = format!("admin:{password}");
    decoded.len() == want.len() && decoded.iter().zip(want.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Refuses what a hostile page or a rebound DNS name could send, and tells
/// the browser to keep the page out of frames and foreign scripts:
/// - a `Host` that is not an address literal or `localhost` (DNS rebinding:
///   a name the attacker controls pointing at this box) gets 421;
/// - a state-changing request whose `Origin` is another site (a cross-site
///   form or fetch riding on the browser's cached credentials) gets 403.
async fn guard(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !host_allowed(&host) {
        return (StatusCode::MISDIRECTED_REQUEST, "this box answers to its address, not to that name\n").into_response();
    }
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if let Some(o) = origin {
            let o_host = o.split("://").nth(1).unwrap_or("");
            if o_host != host {
                return (StatusCode::FORBIDDEN, "cross-site request refused\n").into_response();
            }
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'self'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    resp
}

/// An IPv4 or bracketed IPv6 literal or `localhost`, with an optional port.
fn host_allowed(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, _)) => return addr.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { host })
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

async fn page(State(ctx): State<WebContext>) -> Response {
    let status = snapshot(&ctx.status).to_text();
    let config = ctx.store().show_running();
    let editable = ctx.store().running().management.web_password.is_some();
    let form = if editable {
        r#"<p><label>admin password <input type="password" id="pw"></label>
<button onclick="save()">Validate, save and apply</button></p>
<pre id="result"></pre>
<script>
async function save() {
  const r = await fetch('/api/config', {method: 'POST',
    headers: {'Authorization': 'Basic ' + btoa('admin:' + document.getElementById('pw').value)},
    body: document.getElementById('cfg').value});
  document.getElementById('result').textContent = r.status + ' ' + await r.text();
}
</script>"#
    } else {
        "<p>Read-only: set <code>management.web_password</code> to edit here (or use the console).</p>"
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gatewayd</title></head><body>\
         <h1>gatewayd</h1><h2>Status</h2><pre>{}</pre><h2>Configuration</h2>\
         <textarea id=\"cfg\" rows=\"40\" cols=\"100\"{}>{}</textarea>{}</body></html>",
        escape(&status),
        if editable { "" } else { " readonly" },
        escape(&config),
        form
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn connections_are_bounded_and_idle_ones_closed() {
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpStream;
        async fn read_all(s: &mut TcpStream) -> String {
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        }
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _, _) = ctx(dir.path(), None);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(listener, ctx, 2, Duration::from_millis(400)));
        // Two idle connections hold the budget...
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ... so a third is answered 503 and closed.
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(read_all(&mut c).await.starts_with("HTTP/1.1 503"));
        // The idle ones are closed after 400 ms, and a request gets through again.
        let t = std::time::Instant::now();
        assert_eq!(read_all(&mut a).await, "");
        assert_eq!(read_all(&mut b).await, "");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let mut d = TcpStream::connect(addr).await.unwrap();
        d.write_all(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
        assert!(read_all(&mut d).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn foreign_hosts_and_cross_site_posts_are_refused_and_pages_carry_security_headers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::TcpStream;
        let dir = tempfile::tempdir().unwrap();
        let (ctx, restarts, path) = ctx(dir.path(), Some("installer-pw"));
        let before = std::fs::read_to_string(&path).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(listener, ctx, 8, std::time::Duration::from_secs(5)));
        async fn ask(addr: std::net::SocketAddr, req: String) -> String {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), s.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).into_owned()
        }
        let get = |host: &str| format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let ok = ask(addr, get(&addr.to_string())).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        let lower = ok.to_ascii_lowercase();
        assert!(lower.contains("x-frame-options: deny") && lower.contains("content-security-policy: default-src 'self'"), "{ok}");
        assert!(ask(addr, get("localhost:8080")).await.starts_with("HTTP/1.1 200"));
        // DNS rebinding: a name that points here is not this box's name.
        assert!(ask(addr, get("evil.example:8080")).await.starts_with("HTTP/1.1 421"));
        // A hostile page's form POST with the browser's cached credentials.
        let doc = "[system]\ncountry = \"DE\"\n";
        let auth = basic("admin:installer-pw");
        let post = format!(
            "POST /api/config HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nAuthorization: {auth}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{doc}",
            doc.len()
        );
        assert!(ask(addr, post).await.starts_with("HTTP/1.1 403"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "nothing saved");
        assert_eq!(restarts.load(Ordering::Relaxed), 0);
        assert!(host_allowed("[::1]:80") && host_allowed("10.0.0.1") && !host_allowed("[::1") && !host_allowed("box.local"));
    }

    fn ctx(dir: &std::path::Path, web_password: Option<&str>) -> (WebContext, Arc<AtomicU32>, std::path::PathBuf) {
        let mut text = crate::config::DEFAULT_TOML.to_string();
        if let Some(pw) = web_password {
            text = text.replace("[management]\n", &format!("[management]\nweb_password = \"{pw}\"\n"));
        }
        let f = crate::config_store::fixture(dir, &text);
        (WebContext { status: f.status, store: f.store, restart: f.restart, apply: f.apply, capture: Default::default() }, f.applies, f.path)
    }

    fn basic(user_pw: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user_pw))
    }

    #[test]
    fn posting_a_configuration_needs_the_password_and_a_valid_document() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, restarts, path) = ctx(dir.path(), Some("installer-pw"));
        let before = std::fs::read_to_string(&path).unwrap();
        let doc = ctx.store().show_running().replace("register_expires = 300", "register_expires = 120");
        assert_eq!(post_config(&ctx, None, &doc).0, StatusCode::UNAUTHORIZED);
        assert_eq!(post_config(&ctx, Some(&basic("admin:wrong-pw!")), &doc).0, StatusCode::UNAUTHORIZED);
        assert_eq!(post_config(&ctx, Some(&basic("root:installer-pw")), &doc).0, StatusCode::UNAUTHORIZED);
        assert_eq!(post_config(&ctx, Some("Basic %%%"), &doc).0, StatusCode::UNAUTHORIZED);
        let auth = basic("admin:installer-pw");
        let (code, text) = post_config(&ctx, Some(&auth), &doc.replace("ptime_ms = 20", "ptime_ms = 25"));
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text.contains("media.ptime_ms"), "{text}");
        let (code, text) = post_config(&ctx, Some(&auth), "[sip\n");
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text.starts_with("error: line 1"), "{text}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before, "refusals change nothing");
        assert_eq!(restarts.load(Ordering::Relaxed), 0);
        let (code, text) = post_config(&ctx, Some(&auth), &doc);
        assert_eq!(code, StatusCode::OK, "{text}");
        assert!(text.contains("applied without a restart (trunk default ([sip]))"), "{text}");
        assert_eq!(restarts.load(Ordering::Relaxed), 1, "handed to the control plane once");
        let saved = crate::config::Config::load(&path, 4).unwrap();
        assert_eq!(saved.sip.register_expires, 120);
        assert_eq!(saved.management.web_password.as_deref(), Some("installer-pw"), "masked secrets kept");
    }

    #[test]
    fn without_a_web_password_the_web_ui_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, restarts, _) = ctx(dir.path(), None);
        let doc = ctx.store().show_running();
        assert_eq!(post_config(&ctx, Some(&basic("admin:")), &doc).0, StatusCode::FORBIDDEN);
        assert_eq!(restarts.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        assert_eq!(escape("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
