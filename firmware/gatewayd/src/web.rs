//! The local web UI, over HTTPS, with accounts, sessions, CSRF tokens,
//! roles and an audit log. Server-rendered HTML; one same-origin script
//! (`web/quality.js`) draws the dashboard's live quality plots.
//!
//! Two listeners:
//! - `management.http_listen` (plain HTTP): `GET /api/status` (the status as
//!   JSON, for monitoring, as before) and a `308` to the same path on the
//!   HTTPS port of the same host for everything else;
//! - `management.https_listen` (HTTPS, [`crate::tls`]): the UI.
//!
//! Pages (HTTPS; all but `/login` and `/api/status` need a session):
//! - `GET/POST /login`: user and password ([`crate::accounts`], rate
//!   limited: 429 with `Retry-After`); success sets the session cookie
//!   `gw_session` (`HttpOnly; Secure; SameSite=Strict`, random id, idle
//!   expiry). A session whose password is the initial one (or was reset by an
//!   admin) is sent to `/password` from every page until it is changed.
//! - `POST /logout`; `GET/POST /password` (own password change);
//! - `GET /`: the dashboard (ports, trunks, calls, the rt loop), refreshed
//!   every 5 s;
//! - `GET/POST /config`: the configuration editor (the whole document,
//!   validated and saved exactly like `config commit` on the console; the
//!   error shown next to the document, nothing changed); `GET /api/config`:
//!   the running configuration as TOML, secrets masked;
//! - `GET/POST /config/import`, `GET /config/export`, `POST /config/rollback`;
//! - `GET/POST /ports`, `/trunks`, `/routes`: per-field editors
//!   ([`forms`]): each error next to its field, nothing changed;
//! - `GET /api/quality`, `/static/quality.js`: live figures, their plots;
//! - `GET/POST /diag`: `test route`, packet capture start/stop/download;
//! - `GET /events`: the tail of the log file; `GET /audit`: the audit log;
//! - `GET/POST /accounts`: the accounts; admins add read-only (or admin)
//!   users, set passwords (the user must change it at next login), remove
//!   users.
//!
//! Every state-changing request (POST) needs the session's CSRF token (form
//! field `csrf` or header `X-CSRF-Token`): 403 without it; read-only users'
//! changes get 403 too. Every change goes to the audit log ([`crate::audit`]).
//! The [`guard`] middleware on both listeners refuses foreign `Host` names
//! (DNS rebinding, 421) and cross-site `Origin`s on POST (403), and sends
//! CSP, X-Frame-Options, nosniff and a same-origin referrer policy.

mod diag;
mod edit;
mod forms;
mod import;
mod isdn;
mod quality;
mod session;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::accounts::{AccountError, Accounts, AuthError, Role};
use crate::audit::AuditLog;
use crate::console::Context as WebContext;
use crate::status::snapshot;
pub use session::{Session, Sessions, COOKIE};

/// A session unused this long ends.
pub const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
pub const MAX_SESSIONS: usize = 64;

/// Everything the web UI works on; cheap to clone.
#[derive(Clone)]
pub struct Web {
    pub ctx: WebContext,
    pub accounts: Arc<Mutex<Accounts>>,
    pub sessions: Arc<Mutex<Sessions>>,
    pub audit: Arc<Mutex<AuditLog>>,
    /// The HTTPS port the HTTP listener redirects to.
    pub https_port: u16,
}

impl Web {
    pub fn new(ctx: WebContext, accounts: Accounts, audit: AuditLog, https_port: u16) -> Web {
        Web {
            ctx,
            accounts: Arc::new(Mutex::new(accounts)),
            sessions: Arc::new(Mutex::new(Sessions::new(SESSION_IDLE, MAX_SESSIONS))),
            audit: Arc::new(Mutex::new(audit)),
            https_port,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn audit(&self, user: &str, from: IpAddr, action: &str, detail: &str) {
        self.audit.lock().unwrap_or_else(|p| p.into_inner()).record(SystemTime::now(), user, from, action, detail);
    }

    /// Runs `f` on the accounts off the async workers (argon2 is slow on purpose).
    async fn with_accounts<T: Send + 'static>(&self, f: impl FnOnce(&mut Accounts) -> T + Send + 'static) -> T {
        let accounts = self.accounts.clone();
        tokio::task::spawn_blocking(move || f(&mut accounts.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .expect("account task")
    }
}

/// The client's address, for the login limits and the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

fn limits(web: &Web) -> (usize, Duration) {
    let limits = web.ctx.store().running().limits.clone();
    (limits.web_connections, limits.idle_timeout())
}

/// The HTTPS UI on `listener` with the device `identity`, and the HTTP
/// redirector on `http`.
pub async fn serve(http: TcpListener, https: TcpListener, identity: &crate::tls::Identity, web: Web) {
    let (connections, idle) = limits(&web);
    let config = match identity.server_config() {
        Ok(c) => c,
        Err(e) => {
            warn!(%e, "web UI: no TLS configuration; HTTPS not served");
            return serve_redirect(http, web, connections, idle).await;
        }
    };
    let budget = crate::conn_limit::Budget::new("web", connections, crate::conn_limit::WEB_REFUSAL);
    let limited = crate::conn_limit::LimitedListener::new(https, budget, idle);
    let tls = match crate::tls::TlsListener::new(limited, config) {
        Ok(l) => l,
        Err(e) => {
            warn!(%e, "web UI: HTTPS listener");
            return;
        }
    };
    let app = router(web.clone()).into_make_service_with_connect_info::<Peer>();
    let https_task = async move {
        if let Err(e) = axum::serve(tls, app).await {
            warn!(%e, "web UI (HTTPS) stopped");
        }
    };
    tokio::join!(https_task, serve_redirect(http, web, connections, idle));
}

/// The plain HTTP listener: `/api/status` and redirects.
pub async fn serve_redirect(listener: TcpListener, web: Web, connections: usize, idle: Duration) {
    let budget = crate::conn_limit::Budget::new("web-http", connections, crate::conn_limit::WEB_REFUSAL);
    let listener = crate::conn_limit::LimitedListener::new(listener, budget, idle);
    let app = axum::Router::new()
        .route("/api/status", get(api_status))
        .fallback(redirect)
        .layer(axum::middleware::from_fn(guard))
        .with_state(web);
    if let Err(e) = axum::serve(listener, app).await {
        warn!(%e, "web UI (HTTP) stopped");
    }
}

/// The UI's routes (served over TLS by [`serve`]; tests use it over TCP).
pub fn router(web: Web) -> axum::Router {
    axum::Router::new()
        .route("/", get(dashboard))
        .route("/api/status", get(api_status))
        .route("/api/config", get(api_config))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/password", get(password_page).post(change_password))
        .route("/config", get(config_page).post(post_config))
        .route("/events", get(events_page))
        .route("/calls", get(calls_page))
        .route("/api/cdr", get(api_cdr))
        .route("/isdn", get(isdn::isdn_page))
        .route("/api/isdn", get(isdn::api_isdn))
        .route("/api/capture.pcap", get(capture_download))
        .route("/ports", get(|st, h| edit::page(st, h, edit::Editor::Ports)).post(
            |State(w): State<Web>, ConnectInfo(Peer(p)): ConnectInfo<Peer>, h: HeaderMap, b: axum::body::Bytes| edit::post(w, p, h, b, edit::Editor::Ports),
        ))
        .route("/trunks", get(|st, h| edit::page(st, h, edit::Editor::Trunks)).post(
            |State(w): State<Web>, ConnectInfo(Peer(p)): ConnectInfo<Peer>, h: HeaderMap, b: axum::body::Bytes| edit::post(w, p, h, b, edit::Editor::Trunks),
        ))
        .route("/routes", get(|st, h| edit::page(st, h, edit::Editor::Routes)).post(
            |State(w): State<Web>, ConnectInfo(Peer(p)): ConnectInfo<Peer>, h: HeaderMap, b: axum::body::Bytes| edit::post(w, p, h, b, edit::Editor::Routes),
        ))
        .route("/diag", get(diag::page).post(diag::post))
        .route("/config/import", get(import::page).post(import::post))
        .route("/config/export", get(import::export))
        .route("/config/rollback", post(import::rollback))
        .route("/api/quality", get(quality::api))
        .route("/static/quality.js", get(quality::script))
        .route("/audit", get(audit_page))
        .route("/accounts", get(accounts_page).post(post_accounts))
        .layer(axum::middleware::from_fn(guard))
        .with_state(web)
}

async fn api_status(State(web): State<Web>) -> Response {
    axum::Json(snapshot(&web.ctx.status)).into_response()
}

/// 308 to the same host and path on the HTTPS port (the guard has checked
/// the host is an address literal or localhost: no open redirect).
async fn redirect(State(web): State<Web>, headers: HeaderMap, uri: Uri) -> Response {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let name = host_name(host);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let location = format!("https://{name}:{}{path}", web.https_port);
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)], "the web UI is on HTTPS\n").into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad request\n").into_response(),
    }
}

/// The host part of a `Host` header (brackets kept for IPv6).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

// ---- sessions, CSRF, roles ------------------------------------------------

fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// The request's session, or the answer to give instead: to `/login`
/// without one, to `/password` while the password must be changed.
#[allow(clippy::result_large_err)] // the Err is the response to send
fn session(web: &Web, headers: &HeaderMap, password_page: bool) -> Result<(String, Session), Response> {
    let Some(id) = cookie_id(headers) else { return Err(see_other("/login")) };
    let Some(s) = web.sessions().get(&id, Instant::now()) else { return Err(see_other("/login")) };
    if s.must_change && !password_page {
        return Err(see_other("/password"));
    }
    Ok((id, s))
}

/// For a state-changing request: a session, its CSRF token, and (if
/// `change`) a role that may change things.
#[allow(clippy::result_large_err)]
fn authorize(web: &Web, headers: &HeaderMap, form: &HashMap<String, String>, change: bool, password_page: bool) -> Result<(String, Session), Response> {
    let (id, s) = session(web, headers, password_page)?;
    let token = form.get("csrf").map(String::as_str).or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    if !s.csrf_ok(token) {
        warn!(user = %s.user, "web: request without a valid CSRF token refused");
        return Err((StatusCode::FORBIDDEN, page_html("Refused", None, "<p class=err>Missing or wrong form token: reload the page and try again.</p>")).into_response());
    }
    if change && !s.role.may_change() {
        return Err((StatusCode::FORBIDDEN, page_html("Refused", Some(&s), "<p class=err>Your account is read-only.</p>")).into_response());
    }
    Ok((id, s))
}

// ---- pages -----------------------------------------------------------------

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:1em 2em}nav a,nav form{margin-right:1em;display:inline}\
    pre{background:#f4f4f4;padding:.5em}.err{color:#a00;white-space:pre-wrap}.ok{color:#070}\
    table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}\
    .plots figure{display:inline-block;margin:0 1em .5em 0}.plots h3{margin:.3em 0;font-size:1em}figcaption{font-size:.8em}\
    fieldset{margin-bottom:1em}label{display:inline-block;min-width:22em}";

fn page_html(title: &str, s: Option<&Session>, body: &str) -> Html<String> {
    page_with_head(title, s, body, "")
}

fn page_with_head(title: &str, s: Option<&Session>, body: &str, head: &str) -> Html<String> {
    let nav = match s {
        Some(s) => format!(
            "<nav><a href=\"/\">Dashboard</a><a href=\"/ports\">Ports</a><a href=\"/trunks\">Trunks</a><a href=\"/routes\">Routes</a>\
             <a href=\"/diag\">Diagnostics</a><a href=\"/config\">Configuration</a><a href=\"/events\">Event log</a>\
             <a href=\"/calls\">Calls</a><a href=\"/isdn\">ISDN</a><a href=\"/audit\">Audit log</a><a href=\"/accounts\">Accounts</a><a href=\"/password\">Password</a>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button>Log out {} ({})</button></form></nav>",
            s.csrf,
            escape(&s.user),
            s.role.as_str()
        ),
        None => String::new(),
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gatewayd: {t}</title>{head}<style>{STYLE}</style></head>\
         <body>{nav}<h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    ))
}

fn csrf_field(s: &Session) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", s.csrf)
}

fn login_form(message: &str) -> Html<String> {
    page_html(
        "Log in",
        None,
        &format!(
            "{message}<form method=\"post\" action=\"/login\"><p><label>User <input name=\"user\" autocomplete=\"username\"></label></p>\
             <p><label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label></p>\
             <p><button>Log in</button></p></form>\
             <p>First start: user <code>admin</code> and the initial password shown on the device's console.</p>"
        ),
    )
}

async fn login_page() -> Response {
    login_form("").into_response()
}

async fn login(State(web): State<Web>, ConnectInfo(Peer(peer)): ConnectInfo<Peer>, Form(form): Form<HashMap<String, String>>) -> Response {
    let user = form.get("user").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let from = peer.ip();
    let result = web.with_accounts(move |a| a.verify(&user, &password, from, Instant::now())).await;
    match result {
        Ok(login) => {
            let id = web.sessions().create(&login.user, login.role, login.must_change, Instant::now());
            let cookie = format!("{COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}", SESSION_IDLE.as_secs() * 8);
            let to = if login.must_change { "/password" } else { "/" };
            (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, to.to_string())]).into_response()
        }
        Err(AuthError::RateLimited { retry_after }) => {
            let secs = retry_after.as_secs().max(1);
            let msg = format!("<p class=err>Too many failed logins: try again in {secs} s.</p>");
            (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, secs.to_string())], login_form(&msg)).into_response()
        }
        Err(e) => (StatusCode::UNAUTHORIZED, login_form(&format!("<p class=err>{}</p>", escape(&e.to_string())))).into_response(),
    }
}

async fn logout(State(web): State<Web>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let (id, _) = match authorize(&web, &headers, &form, false, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    web.sessions().remove(&id);
    let clear = format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0");
    (StatusCode::SEE_OTHER, [(header::SET_COOKIE, clear), (header::LOCATION, "/login".to_string())]).into_response()
}

fn password_form(s: &Session, message: &str) -> Html<String> {
    let why = if s.must_change {
        "<p class=err>This is an initial (or reset) password: choose your own before going on.</p>"
    } else {
        ""
    };
    page_html(
        "Change password",
        Some(s),
        &format!(
            "{why}{message}<form method=\"post\" action=\"/password\">{}\
             <p><label>Current password <input type=\"password\" name=\"old\" autocomplete=\"current-password\"></label></p>\
             <p><label>New password (8-128 characters) <input type=\"password\" name=\"new\" autocomplete=\"new-password\"></label></p>\
             <p><label>New password again <input type=\"password\" name=\"again\" autocomplete=\"new-password\"></label></p>\
             <p><button>Change</button></p></form>",
            csrf_field(s)
        ),
    )
}

async fn password_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match session(&web, &headers, true) {
        Ok((_, s)) => password_form(&s, "").into_response(),
        Err(r) => r,
    }
}

async fn change_password(
    State(web): State<Web>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (id, s) = match authorize(&web, &headers, &form, false, true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let old = form.get("old").cloned().unwrap_or_default();
    let new = form.get("new").cloned().unwrap_or_default();
    if form.get("again") != Some(&new) {
        let msg = "<p class=err>The two new passwords differ.</p>";
        return (StatusCode::UNPROCESSABLE_ENTITY, password_form(&s, msg)).into_response();
    }
    let (user, from) = (s.user.clone(), peer.ip());
    match web.with_accounts(move |a| a.change_password(&user, &old, &new, from, Instant::now())).await {
        Ok(()) => {
            let mut sessions = web.sessions();
            sessions.password_changed(&id);
            sessions.remove_user(&s.user, Some(&id));
            drop(sessions);
            web.audit(&s.user, from, "password.change", "own password changed");
            see_other("/")
        }
        Err(e) => {
            let code = match e {
                AccountError::Auth(AuthError::RateLimited { .. }) => StatusCode::TOO_MANY_REQUESTS,
                AccountError::Auth(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (code, password_form(&s, &format!("<p class=err>{}</p>", escape(&e.to_string())))).into_response()
        }
    }
}

async fn dashboard(State(web): State<Web>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&web, &headers, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let status = snapshot(&web.ctx.status).to_text();
    page_with_head(
        "Dashboard",
        Some(&s),
        &format!(
            "<p id=\"quality-state\">Refreshed every 5 s.</p><h2>Live quality</h2><div id=\"quality\"></div>\
             <h2>Status</h2><pre id=\"status-text\">{}</pre>",
            escape(&status)
        ),
        // The script refreshes the page's figures; without scripts, the page reloads itself.
        "<script src=\"/static/quality.js\" defer></script><noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>",
    )
    .into_response()
}

async fn api_config(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&web, &headers, false) {
        return r;
    }
    ([(header::CONTENT_TYPE, "application/toml; charset=utf-8")], web.ctx.store().show_running()).into_response()
}

fn config_form(s: &Session, text: &str, message: &str) -> Html<String> {
    let editable = s.role.may_change();
    let controls = if editable {
        format!("{}<p><button>Validate, save and apply</button></p>", csrf_field(s))
    } else {
        "<p>Read-only account: viewing only.</p>".to_string()
    };
    page_html(
        "Configuration",
        Some(s),
        &format!(
            "{message}<form method=\"post\" action=\"/config\"><textarea name=\"config\" rows=\"40\" cols=\"100\"{}>{}</textarea>{controls}</form>\
             <p>Secrets are shown masked; left masked they keep their values. \
             <a href=\"/config/import\">Import, export or roll back</a>.</p>",
            if editable { "" } else { " readonly" },
            escape(text)
        ),
    )
}

async fn config_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match session(&web, &headers, false) {
        Ok((_, s)) => config_form(&s, &web.ctx.store().show_running(), "").into_response(),
        Err(r) => r,
    }
}

async fn post_config(
    State(web): State<Web>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, s) = match authorize(&web, &headers, &form, true, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let text = form.get("config").cloned().unwrap_or_default();
    let (code, message) = commit_config(&web, &s.user, peer.ip(), &text);
    if code == StatusCode::OK {
        return page_html("Configuration saved", Some(&s), &format!("<p class=ok>{}</p>", escape(&message))).into_response();
    }
    (code, config_form(&s, &text, &format!("<p class=err>{}</p>", escape(&message)))).into_response()
}

/// Validates and saves `text` as the configuration (as `config commit`),
/// audits it and applies it (live, or by a restart); or says why not,
/// changing nothing.
pub fn commit_config(web: &Web, user: &str, from: IpAddr, text: &str) -> (StatusCode, String) {
    let store = web.ctx.store();
    let candidate = match store.candidate_from_text(text) {
        Ok(c) => c,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, format!("error: {e}")),
    };
    let diff = store.diff(&candidate);
    match store.commit(&candidate) {
        Ok(saved) => {
            drop(store);
            let detail = if diff.is_empty() { "no change".to_string() } else { diff.join("; ") };
            web.audit(user, from, "config.commit", &detail);
            info!(path = %saved.path.display(), user, "configuration saved from the web UI");
            let (how, restart) = web.ctx.apply_saved(saved.config.clone());
            let again = if restart { " (log in again)" } else { "" };
            (StatusCode::OK, format!("saved {}; {how}{again}", saved.path.display()))
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, format!("error: {e}")),
    }
}

/// The call log (CDRs, `cdr.rs`), newest first.
async fn calls_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&web, &headers, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let table = web.ctx.status.lock().unwrap_or_else(|p| p.into_inner()).call_log.table(crate::cdr::KEPT);
    page_with_head(
        "Call log",
        Some(&s),
        &format!("<p>The last calls: legs, cause (Q.850 and SIP), who released. Refreshed every 10 s.</p><pre>{}</pre>", escape(&table)),
        "<meta http-equiv=\"refresh\" content=\"10\">",
    )
    .into_response()
}

async fn api_cdr(State(web): State<Web>, headers: HeaderMap) -> Response {
    if let Err(r) = session(&web, &headers, false) {
        return r;
    }
    let log = web.ctx.status.lock().unwrap_or_else(|p| p.into_inner()).call_log.clone();
    axum::Json(log.records).into_response()
}

/// The console's packet capture as a pcap file: it holds signalling and
/// voice, so only for a role that may change the configuration.
async fn capture_download(State(web): State<Web>, headers: HeaderMap) -> Response {
    let s = match session(&web, &headers, false) {
        Ok((_, s)) => s,
        Err(r) => return r,
    };
    if !s.role.may_change() {
        return (StatusCode::FORBIDDEN, "captures are for admin accounts\n").into_response();
    }
    match web.ctx.capture.pcap() {
        None => (StatusCode::NOT_FOUND, "nothing captured yet: start a capture on the Diagnostics page (/diag) or 'capture start' on the console\n").into_response(),
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

async fn events_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&web, &headers, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let file = web.ctx.store().running().log.file.clone();
    let body = match file {
        Some(path) => match tail(&path, 64 * 1024) {
            Ok(t) => format!("<p>The end of <code>{}</code>, newest last.</p><pre>{}</pre>", escape(&path.display().to_string()), escape(&t)),
            Err(e) => format!("<p class=err>{}: {}</p>", escape(&path.display().to_string()), escape(&e.to_string())),
        },
        None => "<p>No log file is configured (<code>log.file</code>): the log goes to the console only.</p>".into(),
    };
    page_html("Event log", Some(&s), &body).into_response()
}

fn tail(path: &std::path::Path, bytes: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(bytes)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    // Start at a whole line when cut.
    Ok(if len > bytes { text.split_once('\n').map(|x| x.1.to_string()).unwrap_or(text) } else { text })
}

async fn audit_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    let (_, s) = match session(&web, &headers, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let entries = web.audit.lock().unwrap_or_else(|p| p.into_inner()).recent(200);
    let rows: String = entries
        .iter()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&e.time),
                escape(&e.user),
                escape(&e.from),
                escape(&e.action),
                escape(&e.detail)
            )
        })
        .collect();
    page_html(
        "Audit log",
        Some(&s),
        &format!("<p>Newest first (last 200).</p><table><tr><th>When (UTC)</th><th>Who</th><th>From</th><th>What</th><th>Detail</th></tr>{rows}</table>"),
    )
    .into_response()
}

fn accounts_form(web: &Web, s: &Session, message: &str) -> Html<String> {
    let rows: String = web
        .accounts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .list()
        .map(|a| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&a.name),
                a.role.as_str(),
                if a.must_change { "must change password" } else { "" }
            )
        })
        .collect();
    let admin = if s.role.may_change() {
        let c = csrf_field(s);
        format!(
            "<h2>Add a user</h2><form method=\"post\" action=\"/accounts\">{c}<input type=\"hidden\" name=\"action\" value=\"add\">\
             <label>Name <input name=\"name\"></label> <label>Role <select name=\"role\"><option>read-only</option><option>admin</option></select></label>\
             <label>Initial password <input type=\"password\" name=\"password\" autocomplete=\"new-password\"></label> <button>Add</button></form>\
             <h2>Set a password</h2><form method=\"post\" action=\"/accounts\">{c}<input type=\"hidden\" name=\"action\" value=\"password\">\
             <label>Name <input name=\"name\"></label> <label>New password <input type=\"password\" name=\"password\" autocomplete=\"new-password\"></label>\
             <button>Set (to be changed at next login)</button></form>\
             <h2>Remove a user</h2><form method=\"post\" action=\"/accounts\">{c}<input type=\"hidden\" name=\"action\" value=\"remove\">\
             <label>Name <input name=\"name\"></label> <button>Remove</button></form>"
        )
    } else {
        String::new()
    };
    page_html(
        "Accounts",
        Some(s),
        &format!("{message}<table><tr><th>User</th><th>Role</th><th></th></tr>{rows}</table>{admin}"),
    )
}

async fn accounts_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    match session(&web, &headers, false) {
        Ok((_, s)) => accounts_form(&web, &s, "").into_response(),
        Err(r) => r,
    }
}

async fn post_accounts(
    State(web): State<Web>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let (_, s) = match authorize(&web, &headers, &form, true, false) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (action, name, password) = (get("action"), get("name"), get("password"));
    let role = Role::parse(&get("role")).unwrap_or(Role::ReadOnly);
    let result = match action.as_str() {
        "add" => {
            let (n, p) = (name.clone(), password.clone());
            web.with_accounts(move |a| a.add(&n, role, &p)).await.map(|()| format!("added {name} ({})", role.as_str()))
        }
        "password" => {
            let (n, p) = (name.clone(), password.clone());
            let res = web.with_accounts(move |a| a.set_password(&n, &p, true)).await;
            if res.is_ok() {
                web.sessions().remove_user(&name, None);
            }
            res.map(|()| format!("password of {name} set (to be changed at next login)"))
        }
        "remove" => {
            let n = name.clone();
            let res = web.with_accounts(move |a| a.remove(&n)).await;
            if res.is_ok() {
                web.sessions().remove_user(&name, None);
            }
            res.map(|()| format!("removed {name}"))
        }
        _ => return (StatusCode::BAD_REQUEST, accounts_form(&web, &s, "<p class=err>Unknown action.</p>")).into_response(),
    };
    match result {
        Ok(done) => {
            web.audit(&s.user, peer.ip(), &format!("account.{action}"), &done);
            accounts_form(&web, &s, &format!("<p class=ok>{}</p>", escape(&done))).into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, accounts_form(&web, &s, &format!("<p class=err>{}</p>", escape(&e.to_string()))))
            .into_response(),
    }
}

// ---- hardening -------------------------------------------------------------

/// Refuses what a hostile page or a rebound DNS name could send, and tells
/// the browser to keep the page out of frames and foreign scripts:
/// - a `Host` that is not an address literal or `localhost` (DNS rebinding:
///   a name the attacker controls pointing at this box) gets 421;
/// - a state-changing request whose `Origin` is another site (a cross-site
///   form or fetch) or is `null` (opaque) gets 403, before any session or
///   token is looked at.
async fn guard(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !host_allowed(&host) {
        return (StatusCode::MISDIRECTED_REQUEST, "this box answers to its address, not to that name\n").into_response();
    }
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
        if let Some(o) = origin {
            // `null`: an opaque origin (a sandboxed frame, a data: page,
            // or a cross-site POST under a no-referrer policy).
            let o_host = o.split("://").nth(1).unwrap_or("");
            if o == "null" || o_host != host {
                return (StatusCode::FORBIDDEN, "cross-site request refused\n").into_response();
            }
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not `no-referrer`: under it browsers send `Origin: null` on the UI's
    // own form POSTs (found by the headless-browser test), which the check
    // above must refuse. `same-origin` keeps the real Origin on our own
    // requests and sends no Referer elsewhere.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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

#[cfg(test)]
mod tests;
