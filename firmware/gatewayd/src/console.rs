//! The installer's console: one line per command, over the local TCP console
//! (the sim board's stand-in for the serial console; `tools/gwctl` speaks it
//! over TCP or a serial line).
//!
//! Besides `show status|ports|registrations`, it edits the configuration
//! (`config_store.rs`): each session has its own candidate; `config commit`
//! validates the whole candidate, saves it (old file kept as `.prev`) and
//! applies it: live where every part it touches can take it (`apply.rs`;
//! calls in progress go on), else by restarting gatewayd; `config rollback`
//! brings the previous file back the same way. A refused command says why
//! and changes nothing.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::conn_limit::{AcceptBackoff, Budget, IdleTimeout, CONSOLE_REFUSAL};

use crate::cli::{self, Mode};
use crate::config_store::{Candidate, ConfigStore, StoreError, Unset};
use crate::status::{snapshot, SharedStatus};

/// What the installer's interfaces share: every console session and the web
/// UI (`web.rs`).
#[derive(Clone)]
pub struct Context {
    pub status: SharedStatus,
    pub store: Arc<Mutex<ConfigStore>>,
    /// Asks gatewayd to restart (a saved change that cannot be applied live).
    pub restart: Arc<dyn Fn() + Send + Sync>,
    /// Hands a saved configuration to the control plane to apply live
    /// (`Gateway::apply`).
    pub apply: Arc<dyn Fn(crate::config::Config) + Send + Sync>,
    /// The packet capture of SIP and RTP (`capture.rs`).
    pub capture: Arc<crate::capture::Capture>,
    /// Requests to the ISDN span task (`capture isdn`).
    pub isdn: crate::isdn::Control,
}

impl Context {
    /// A context with the embedded default configuration and no restart.
    pub fn for_tests(status: SharedStatus) -> Context {
        let store = ConfigStore::new(None, 4, crate::config::Config::default_sim());
        Context {
            status,
            store: Arc::new(Mutex::new(store)),
            restart: Arc::new(|| {}),
            apply: Arc::new(|_| {}),
            capture: Arc::default(),
            isdn: Default::default(),
        }
    }

    /// Puts a saved configuration into effect: live when every part it
    /// touches can take it (calls in progress go on), else by a restart.
    /// Returns the installer's words and whether gatewayd restarts.
    pub fn apply_saved(&self, config: crate::config::Config) -> (String, bool) {
        let plan = crate::apply::plan_change(self.store().running(), &config);
        if plan.restart.is_empty() {
            let parts = if plan.live.is_empty() { "nothing to change".to_string() } else { plan.live.join(", ") };
            self.store().set_running(config.clone());
            (self.apply)(config);
            (format!("applied without a restart ({parts}); calls in progress go on"), false)
        } else {
            // The store says what the file says, until the restart.
            self.store().set_running(config);
            (self.restart)();
            (format!("gatewayd restarts to apply {} (calls in progress are dropped)", plan.restart.join(", ")), true)
        }
    }

    /// `test port N ring [SECONDS]` (console and web diagnostics): checks
    /// the port exists and is idle, then asks the driver to ring it
    /// (default 10 s, 1 to 120).
    pub fn test_ring(&self, port: &str, secs: Option<&str>) -> Result<String, String> {
        let secs = match secs.map(str::parse::<u32>) {
            None => 10,
            Some(Ok(t @ 1..=120)) => t,
            Some(_) => return Err(format!("{:?} is not a number of seconds from 1 to 120", secs.unwrap_or_default())),
        };
        let ports = snapshot(&self.status).ports;
        let Some(p) = port.parse::<usize>().ok().and_then(|n| ports.iter().find(|p| p.port == n)) else {
            let list: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
            return Err(format!("no FXS port {port:?} (ports: {})", list.join(", ")));
        };
        if p.state != "Idle" {
            return Err(format!("FXS {} is in use ({}): not rung", p.port, p.state));
        }
        self.isdn.push(crate::isdn::Command::RingPort { port: p.port, secs });
        info!(port = p.port, secs, "test ring requested");
        Ok(format!("ringing FXS {} for {secs} s with the country's cadence (lifting the handset stops it)\n", p.port))
    }

    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, ConfigStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The console's accounts: the web UI's (`accounts.rs`), shared.
pub type SharedAccounts = Arc<Mutex<crate::accounts::Accounts>>;

/// Failed logins after which a session is closed (the accounts' own rate
/// limits apply across sessions).
pub const LOGIN_TRIES: u32 = 3;

/// The login in front of a console session, with the web UI's accounts:
/// user name, password (not echoed), and a new password when the account's
/// is the initial one. Failures are rate-limited and logged by `accounts.rs`.
pub struct Gate {
    accounts: Option<SharedAccounts>,
    from: std::net::IpAddr,
    state: GateState,
    failures: u32,
}

enum GateState {
    User,
    Password(String),
    NewPassword { user: String, old: String },
    Again { user: String, old: String, new: String },
}

/// What the gate says to a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateReply {
    /// Write the text; the next line is a secret if `secret` (no echo).
    Ask { text: String, secret: bool },
    /// Logged in: the session starts with this user and role.
    Open { text: String, user: String, role: crate::accounts::Role },
    /// Write the text and close the session.
    Close(String),
}

impl Gate {
    /// `accounts: None`: no login (a console on the loopback address, the
    /// local management socket of the machine itself).
    pub fn new(accounts: Option<SharedAccounts>, from: std::net::IpAddr) -> Gate {
        Gate { accounts, from, state: GateState::User, failures: 0 }
    }

    /// The first words: the prompt for the user name, or the session opened.
    pub fn start(&self) -> GateReply {
        match &self.accounts {
            None => GateReply::Open { text: String::new(), user: "local".into(), role: crate::accounts::Role::Admin },
            Some(_) => GateReply::Ask { text: "Log in with a web UI account.\nUser: ".into(), secret: false },
        }
    }

    /// Takes one line (slow: argon2; call it off an async worker).
    pub fn input(&mut self, line: &str) -> GateReply {
        use crate::accounts::AuthError;
        let Some(accounts) = self.accounts.clone() else { return self.start() };
        let mut accounts = accounts.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        match std::mem::replace(&mut self.state, GateState::User) {
            GateState::User if line.trim().is_empty() => GateReply::Ask { text: "User: ".into(), secret: false },
            GateState::User => {
                self.state = GateState::Password(line.trim().to_string());
                GateReply::Ask { text: "Password: ".into(), secret: true }
            }
            GateState::Password(user) => match accounts.verify(&user, &line, self.from, now) {
                Ok(l) if l.must_change => {
                    self.state = GateState::NewPassword { user, old: line };
                    GateReply::Ask { text: "\nThe initial password must be changed first.\nNew password: ".into(), secret: true }
                }
                Ok(l) => {
                    info!(user = %l.user, from = %self.from, role = l.role.as_str(), "console login");
                    GateReply::Open { text: format!("\nWelcome, {} ({}).\n", l.user, l.role.as_str()), user: l.user, role: l.role }
                }
                Err(e) => {
                    self.failures += 1;
                    let wait = matches!(e, AuthError::RateLimited { .. });
                    if self.failures >= LOGIN_TRIES || wait {
                        GateReply::Close(format!("\nlogin failed: {e}; closing\n"))
                    } else {
                        GateReply::Ask { text: format!("\nlogin failed: {e}\nUser: "), secret: false }
                    }
                }
            },
            GateState::NewPassword { user, old } => {
                self.state = GateState::Again { user, old, new: line };
                GateReply::Ask { text: "\nNew password again: ".into(), secret: true }
            }
            GateState::Again { user, old, new } => {
                if new != line {
                    self.state = GateState::NewPassword { user, old };
                    return GateReply::Ask { text: "\nThe two differ.\nNew password: ".into(), secret: true };
                }
                match accounts.change_password(&user, &old, &new, self.from, now) {
                    Ok(()) => {
                        let role = accounts.role(&user).unwrap_or(crate::accounts::Role::ReadOnly);
                        info!(user = %user, from = %self.from, "console login; initial password changed");
                        GateReply::Open { text: format!("\nPassword changed. Welcome, {user} ({}).\n", role.as_str()), user, role }
                    }
                    Err(e) => {
                        self.state = GateState::NewPassword { user, old };
                        GateReply::Ask { text: format!("\nrefused: {e}\nNew password: "), secret: true }
                    }
                }
            }
        }
    }
}

/// The answer to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Text(String),
    /// Send the text, then gatewayd restarts.
    Restart(String),
    Quit,
}

/// One console session: its candidate configuration, if editing.
#[derive(Debug, Default)]
pub struct Session {
    candidate: Option<Candidate>,
    /// A firmware bundle being received (`upgrade.rs`).
    upgrade: crate::upgrade::Transfer,
    /// `debug isdn`: frames streamed to this session (`isdn_debug.rs`).
    isdn_debug: crate::isdn_debug::Watch,
    /// `debug sip`: SIP messages streamed to this session.
    sip_debug: crate::isdn_debug::Watch,
    /// `configure` entered: `set`, `commit`... without the `config` word.
    mode: Mode,
    /// A document being imported (`config import begin` .. `end`).
    import: Option<String>,
    /// Who is logged in (`None`: a local console without login, an admin).
    user: Option<(String, crate::accounts::Role)>,
    /// `terminal batch`: a program (gwctl) on the line, no echo or editing.
    batch: bool,
}

/// The largest document `config import` takes.
pub const MAX_IMPORT: usize = 1 << 20;


/// The routing table as the installer wrote it (or the implicit one).
fn show_routes(config: &crate::config::Config) -> String {
    let (groups, routes, implicit) = if config.route.is_empty() {
        let (g, r) = config.legacy_routes();
        (g, r, true)
    } else {
        (config.group.clone(), config.route.clone(), false)
    };
    let mut out = String::new();
    if implicit {
        out.push_str("no [[route]] in the configuration: the implicit table of [sip] and [dialplan]\n");
    }
    for g in &groups {
        out.push_str(&format!("group {}: FXS {:?}\n", g.name, g.fxs));
    }
    for (i, r) in routes.iter().enumerate() {
        let to: Vec<String> = r
            .to
            .iter()
            .map(|d| match (&d.trunk, &d.group) {
                (Some(t), _) => format!("trunk {t}"),
                (None, Some(g)) => format!("group {g}"),
                _ => "owner".to_string(),
            })
            .collect();
        out.push_str(&format!(
            "route[{i}]{}{}: from {} called {}{}{} -> {}{}\n",
            r.name.as_deref().map(|n| format!(" {n:?}")).unwrap_or_default(),
            if r.emergency { " (emergency)" } else { "" },
            r.from.join(","),
            r.called.join(","),
            if r.strip > 0 { format!(" strip {}", r.strip) } else { String::new() },
            if r.prefix.is_empty() { String::new() } else { format!(" prefix {}", r.prefix) },
            to.join(" then "),
            r.max_calls.map(|m| format!(" (max {m} calls)")).unwrap_or_default(),
        ));
    }
    out
}

/// The configuration paths TAB offers for `PATH` (the candidate's, or the
/// running configuration's).
fn config_paths(session: &Session, ctx: &Context) -> Vec<String> {
    let text = match &session.candidate {
        Some(c) => c.text(),
        None => ctx.store().export(false),
    };
    let table: toml::Table = toml::from_str(&text).unwrap_or_default();
    let mut out = Vec::new();
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&p, v, out);
                }
            }
            toml::Value::Array(a) if a.iter().any(toml::Value::is_table) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    walk("", &toml::Value::Table(table), &mut out);
    out
}

fn saved_reply(text: String, restart: bool) -> Reply {
    if restart {
        Reply::Restart(text)
    } else {
        Reply::Text(text)
    }
}

/// What a read-only account may run: looking, never changing.
fn read_only_allows(mode: Mode, words: &[&str]) -> bool {
    mode == Mode::Exec
        && matches!(
            words,
            [] | ["show", ..]
                | ["help"]
                | ["test", "route", ..]
                | ["config", "diff" | "export"]
                | ["capture"]
                | ["capture", "status"]
                | ["upgrade", "status"]
                | ["debug", "isdn", ..]
                | ["undebug", "isdn" | "sip" | "all"]
                | ["terminal", ..]
                | ["quit" | "exit"]
        )
}

impl Session {
    /// `debug isdn` / `debug sip` output waiting for this session, without waiting.
    pub fn debug_pending(&mut self) -> Option<String> {
        self.isdn_debug.try_next().or_else(|| self.sip_debug.try_next())
    }

    /// A session of a logged-in user.
    pub fn for_user(user: &str, role: crate::accounts::Role) -> Session {
        Session { user: Some((user.to_string(), role)), ..Default::default() }
    }

    /// The prompt for the next line: `> `, or `(config)> ` in
    /// configuration mode.
    pub fn prompt(&self) -> &'static str {
        match self.mode {
            Mode::Exec => "> ",
            Mode::Config => "(config)> ",
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A program on the line (`terminal batch`): no echo, no line editing.
    pub fn batch(&self) -> bool {
        self.batch
    }

    /// Receiving a document (`config import begin`): its lines are taken
    /// as they are (a `?` in a comment is no help request).
    pub fn importing(&self) -> bool {
        self.import.is_some()
    }

    /// `?` after `line`: the next words, a line each.
    pub fn help(&self, line: &str, ctx: &Context) -> String {
        cli::help(self.mode, line, &config_paths(self, ctx))
    }

    /// TAB after `line`: the completed line and the choices, if several.
    pub fn complete(&self, line: &str, ctx: &Context) -> (String, Vec<String>) {
        cli::complete(self.mode, line, &config_paths(self, ctx))
    }

    pub fn command(&mut self, line: &str, ctx: &Context) -> Reply {
        if let Some(doc) = &mut self.import {
            if line.trim() == "config import end" {
                let doc = self.import.take().unwrap_or_default();
                let result = ctx.store().import(doc.as_bytes());
                return match result {
                    Ok(saved) => {
                        info!(path = %saved.path.display(), "configuration imported from the console");
                        self.candidate = None;
                        let (how, restart) = ctx.apply_saved(saved.config.clone());
                        saved_reply(format!("imported into {} (previous kept as a version); {how}\n", saved.path.display()), restart)
                    }
                    Err(e) => Reply::Text(format!("error: import refused, nothing changed: {}\n", e.to_string().trim_start_matches("refused, nothing changed: "))),
                };
            }
            if line.trim() == "config import abort" {
                self.import = None;
                return Reply::Text("import dropped\n".into());
            }
            if doc.len() + line.len() + 1 > MAX_IMPORT {
                self.import = None;
                return Reply::Text(format!("error: the document is longer than {MAX_IMPORT} bytes; import dropped\n"));
            }
            doc.push_str(line);
            doc.push('\n');
            return Reply::Text(String::new());
        }
        let line = line.trim();
        if let Some(before) = line.strip_suffix('?') {
            return Reply::Text(self.help(before, ctx));
        }
        // In configuration mode the `config` word is implied.
        let implied;
        let line = match (self.mode, line.split_whitespace().next()) {
            (Mode::Config, Some("set" | "unset" | "diff" | "commit" | "rollback")) => {
                implied = format!("config {line}");
                implied.as_str()
            }
            _ => line,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some((user, role)) = &self.user {
            if !role.may_change() && !read_only_allows(self.mode, &words) {
                return Reply::Text(format!("error: {user} is a {} account: it can look, not change\n", role.as_str()));
            }
        }
        let text = match words.as_slice() {
            [] => String::new(),
            ["help"] => {
                let rows: Vec<Vec<String>> = [Mode::Exec, Mode::Config]
                    .iter()
                    .flat_map(|&m| cli::syntax(m).into_iter().map(move |(s, h)| (m, s, h)))
                    .filter(|(m, s, _)| *m == Mode::Exec || !s.starts_with("show") && !s.starts_with("test") && *s != "help")
                    .map(|(m, s, h)| vec![if m == Mode::Config { format!("(config) {s}") } else { s.to_string() }, h.to_string()])
                    .collect();
                format!("{}'?' after any word lists what may follow; TAB completes on the serial console.\n", cli::table(&[], &rows))
            }
            ["configure"] | ["configure", "terminal"] => {
                self.mode = Mode::Config;
                let store = ctx.store();
                let c = self.candidate.get_or_insert_with(|| store.candidate());
                let changes = store.diff(c).len();
                let mut out = String::from("configuration mode: set, unset, diff, commit, abort, exit ('?' lists them)\n");
                if changes > 0 {
                    out.push_str(&format!("the candidate already holds changes ({changes} diff lines): 'diff' shows them\n"));
                }
                if let Err(e) = store.can_save() {
                    out.push_str(&format!("warning: {e}; 'commit' will be refused (changes can be tried with 'diff' only)\n"));
                }
                out
            }
            ["abort"] if self.mode == Mode::Config => {
                self.mode = Mode::Exec;
                self.candidate = None;
                "candidate dropped; left configuration mode\n".into()
            }
            ["exit"] | ["end"] if self.mode == Mode::Config => {
                self.mode = Mode::Exec;
                match &self.candidate {
                    Some(c) if !ctx.store().diff(c).is_empty() => "left configuration mode; the candidate is kept ('configure' to go on, 'config commit' or 'config discard')\n".into(),
                    _ => "left configuration mode\n".into(),
                }
            }
            ["terminal", "batch"] => {
                self.batch = true;
                "ok: no echo or line editing (for programs such as gwctl)\n".into()
            }
            ["terminal", "interactive"] => {
                self.batch = false;
                "ok: echo, history, '?' and TAB\n".into()
            }
            ["show", "running-config"] => ctx.store().show_running(),
            ["show", "versions"] => {
                let store = ctx.store();
                let versions = store.versions();
                if versions.is_empty() {
                    match store.can_save() {
                        Err(e) => format!("no versions: {e}\n"),
                        Ok(()) => "no versions kept yet: each commit keeps the file it replaces\n".into(),
                    }
                } else {
                    let rows: Vec<Vec<String>> = versions
                        .iter()
                        .map(|v| {
                            vec![
                                v.n.to_string(),
                                crate::audit::rfc3339(v.saved_unix),
                                v.bytes.to_string(),
                                match &v.changes {
                                    Ok(0) => "same as running".into(),
                                    Ok(n) => format!("{n} keys differ from running"),
                                    Err(e) => format!("not valid: {e}"),
                                },
                            ]
                        })
                        .collect();
                    cli::table(&["N", "KEPT AT (UTC)", "BYTES", "RESTORING IT (config rollback N)"], &rows)
                }
            }
            ["show", "rt"] => {
                let s = snapshot(&ctx.status);
                let rt = &s.rt;
                let rows = [
                    ("frames", rt.frames),
                    ("deadline misses", rt.deadline_misses),
                    ("longest tick (us)", rt.max_tick_us),
                    ("event queue overruns", rt.event_overruns),
                    ("packet queue overruns", rt.packet_out_overruns),
                    ("PCM rx underruns", rt.pcm_rx_underruns),
                    ("PCM tx overruns", rt.pcm_tx_overruns),
                    ("RTP received", rt.rtp_received),
                    ("RTP malformed", rt.rtp_malformed),
                    ("RTP sent", rt.rtp_sent),
                    ("command overruns", s.rt_command_overruns),
                ]
                .map(|(k, v)| vec![k.to_string(), v.to_string()]);
                cli::table(&["REAL-TIME LOOP", "COUNT"], &rows)
            }
            ["show", "log"] => match ctx.store().running().log.file.clone() {
                None => "no log file is configured ([log] file): the log goes to the console only\n".into(),
                Some(path) => match tail_lines(&path, 40) {
                    Ok(t) => t,
                    Err(e) => format!("error: cannot read {}: {e}\n", path.display()),
                },
            },
            ["config", "export"] => ctx.store().export(false),
            ["config", "import", "begin"] => {
                if let Err(e) = ctx.store().can_save() {
                    format!("error: {e}\n")
                } else {
                    self.import = Some(String::new());
                    "send the document's lines, then 'config import end' ('config import abort' drops it); masked secrets keep their values\n".into()
                }
            }
            ["factory", "reset"] => "this replaces the configuration with the embedded default and fresh secrets (the running one is kept as a version); type 'factory reset confirm'\n".into(),
            ["factory", "reset", "confirm"] => {
                let result = ctx.store().factory_reset();
                return match result {
                    Ok((saved, fresh)) => {
                        info!(path = %saved.path.display(), "factory reset from the console");
                        self.candidate = None;
                        self.mode = Mode::Exec;
                        let (how, restart) = ctx.apply_saved(saved.config.clone());
                        let secrets: String = fresh.iter().map(|(p, v)| format!("  new {p}: {v}\n")).collect();
                        saved_reply(format!("factory default written to {}; {how}\n{secrets}(shown once: note them)\n", saved.path.display()), restart)
                    }
                    Err(e) => Reply::Text(format!("error: {e}\n")),
                };
            }
            ["show", "status"] => snapshot(&ctx.status).to_text(),
            ["show", "ports"] => {
                let s = snapshot(&ctx.status);
                let rows: Vec<Vec<String>> = s
                    .ports
                    .iter()
                    .map(|p| vec![format!("FXS {}", p.port), p.number.clone(), p.hook.to_string(), p.state.to_string(), p.call.clone().unwrap_or_default()])
                    .collect();
                cli::table(&["PORT", "NUMBER", "HOOK", "STATE", "CALL"], &rows)
            }
            ["show", "sip"] => {
                let s = snapshot(&ctx.status);
                let mut out = String::new();
                for t in &s.trunks {
                    let c = &t.counters;
                    out.push_str(&format!(
                        "trunk {} proxy {} register {}: {}\n  accept from {}; calls now {}, in {} out {} failed {} limited {} skipped while down {}\n",
                        t.name, t.proxy, t.register, t.state, t.accept_from.join(", "), t.active_calls,
                        c.calls_in, c.calls_out, c.failed, c.limited, c.skipped_down
                    ));
                }
                for r in &s.registrations {
                    out.push_str(&format!("registration {} {}\n", r.user, r.state));
                }
                out.push_str(&format!("requests from addresses of no trunk (403): {}\n", s.calls.untrusted));
                out
            }
            ["show", "calls"] => {
                let s = snapshot(&ctx.status);
                let mut out = String::new();
                for p in s.ports.iter().filter(|p| p.call.is_some() || p.state != "Idle") {
                    out.push_str(&format!(
                        "FXS {} ({}) {}: {}\n",
                        p.port,
                        p.number,
                        p.state,
                        p.call.as_deref().unwrap_or("no call")
                    ));
                    if let Some(r) = &p.route {
                        out.push_str(&format!("    route: {r}\n"));
                    }
                }
                if out.is_empty() {
                    out.push_str("no calls\n");
                }
                out
            }
            ["show", "routes"] => show_routes(ctx.store().running()),
            ["capture", "start"] => {
                ctx.capture.start(crate::capture::DEFAULT_LIMIT);
                info!("packet capture started from the console");
                "capture started: SIP and RTP of this gateway (stop with 'capture stop')\n".into()
            }
            ["capture", "stop"] => {
                ctx.capture.stop();
                ctx.isdn.push(crate::isdn::Command::StopCaptures);
                format!(
                    "{}; download it from the web UI (/api/capture.pcap) or 'capture save FILE'; D-channel captures stop too\n",
                    ctx.capture.status()
                )
            }
            ["capture", "status"] | ["capture"] => format!("{}\n", ctx.capture.status()),
            ["capture", "save", file] => match ctx.capture.pcap() {
                None => "error: nothing captured yet ('capture start' first)\n".into(),
                Some(bytes) => match std::fs::write(file, &bytes) {
                    Ok(()) => format!("wrote {} bytes to {file}\n", bytes.len()),
                    Err(e) => format!("error: cannot write {file}: {e}\n"),
                },
            },
            ["show", "isdn"] => crate::isdn::show_isdn(&ctx.status.lock().unwrap_or_else(|p| p.into_inner()).isdn),
            ["capture", "isdn", span, file] => {
                let spans = ctx.status.lock().unwrap_or_else(|p| p.into_inner()).isdn.clone();
                crate::isdn::console_capture(&ctx.isdn, &spans, span, file)
            }
            ["debug", "isdn", args @ ..] => {
                let spans = ctx.status.lock().unwrap_or_else(|p| p.into_inner()).isdn.clone();
                self.isdn_debug.start(args, &spans)
            }
            ["undebug", "isdn"] => self.isdn_debug.stop(),
            ["debug", "sip"] => self.sip_debug.start_sip(),
            ["undebug", "sip"] => self.sip_debug.stop(),
            ["undebug", "all"] => {
                let on = [&mut self.isdn_debug, &mut self.sip_debug].into_iter().filter(|w| w.is_on());
                let out: String = on.map(|w| w.stop()).collect();
                if out.is_empty() {
                    "debugging was not on\n".into()
                } else {
                    out
                }
            }
            ["show", "cdr"] => ctx.status.lock().unwrap_or_else(|p| p.into_inner()).call_log.table(20),
            ["show", "cdr", n] => match n.parse::<usize>() {
                Ok(n) if n > 0 => ctx.status.lock().unwrap_or_else(|p| p.into_inner()).call_log.table(n),
                _ => format!("error: {n:?} is not a number of calls (show cdr [N], N >= 1)\n"),
            },
            ["test", "route", from, number, rest @ ..] if rest.len() <= 1 => {
                let config = ctx.store().running().clone();
                match config.route_table() {
                    Ok((table, _)) if table.is_source(from) => {
                        let mut out = table.trace(from, number, rest.first().copied()).to_string();
                        out.push('\n');
                        let s = snapshot(&ctx.status);
                        for t in &s.trunks {
                            out.push_str(&format!("trunk {} is {}\n", t.name, t.state));
                        }
                        out
                    }
                    Ok((table, _)) => {
                        let mut names: Vec<String> = table.groups().iter().map(|g| g.name.clone()).collect();
                        names.extend(config.trunk_names());
                        format!("error: {from:?} is neither a group nor a trunk (sources: {})\n", names.join(", "))
                    }
                    Err(e) => format!("error: the routing table is refused: {e}\n"),
                }
            }
            ["test", "port", n, "ring", rest @ ..] if rest.len() <= 1 => match ctx.test_ring(n, rest.first().copied()) {
                Ok(t) => t,
                Err(e) => format!("error: {e}\n"),
            },
            ["show", "registrations"] => {
                let s = snapshot(&ctx.status);
                s.registrations.iter().map(|r| format!("{} {}\n", r.user, r.state)).collect()
            }
            ["show", "config"] => ctx.store().show_running(),
            ["show", "candidate"] => match &self.candidate {
                Some(c) => c.show(),
                None => "no candidate: 'config set' starts one\n".into(),
            },
            ["config", "set", path, _, ..] => {
                // The value is the rest of the line after the path, spaces and all.
                let after_set = line["config".len()..].trim_start()["set".len()..].trim_start();
                let value = after_set[path.len()..].trim();
                let store = ctx.store();
                let c = self.candidate.get_or_insert_with(|| store.candidate());
                match c.set(path, value) {
                    Ok(()) => "ok (in the candidate; 'config commit' applies it)\n".into(),
                    Err(e) => format!("error: {e}\n"),
                }
            }
            ["config", "unset", path] => {
                let store = ctx.store();
                let c = self.candidate.get_or_insert_with(|| store.candidate());
                match c.unset(path) {
                    Ok(Unset::Removed) => "ok\n".into(),
                    Ok(Unset::Default(v)) => format!("ok (required: back to the default, {v})\n"),
                    Err(e) => format!("error: {e}\n"),
                }
            }
            ["config", "diff"] => match &self.candidate {
                Some(c) => {
                    let d = ctx.store().diff(c);
                    if d.is_empty() {
                        "no changes\n".into()
                    } else {
                        d.join("\n") + "\n"
                    }
                }
                None => "no changes\n".into(),
            },
            ["config", "discard"] => {
                self.candidate = None;
                "candidate dropped\n".into()
            }
            ["config", "commit"] => {
                let Some(c) = &self.candidate else { return Reply::Text("nothing to commit\n".into()) };
                let result = ctx.store().commit(c);
                return match result {
                    Ok(saved) => {
                        info!(path = %saved.path.display(), "configuration committed from the console");
                        self.candidate = None;
                        self.mode = Mode::Exec;
                        let (how, restart) = ctx.apply_saved(saved.config.clone());
                        let text = format!("saved {} (previous: {}); {how}\n", saved.path.display(), saved.previous.display());
                        saved_reply(text, restart)
                    }
                    Err(e @ StoreError::NoFile) => Reply::Text(format!("error: {e} (the candidate is kept)\n")),
                    Err(e) => Reply::Text(format!("error: {e}\n")),
                };
            }
            ["config", "rollback", rest @ ..] if rest.len() <= 1 => {
                let n = match rest.first().map(|n| n.parse::<usize>()) {
                    None => 1,
                    Some(Ok(n)) if n >= 1 => n,
                    Some(_) => return Reply::Text(format!("error: {:?} is not a version number ('show versions' lists them)\n", rest[0])),
                };
                let result = ctx.store().rollback(n);
                return match result {
                    Ok(saved) => {
                        info!(path = %saved.path.display(), n, "configuration rolled back from the console");
                        self.mode = Mode::Exec;
                        let (how, restart) = ctx.apply_saved(saved.config.clone());
                        let which = if n == 1 { "the previous configuration".to_string() } else { format!("version {n}") };
                        saved_reply(format!("restored {which} into {}; {how}\n", saved.path.display()), restart)
                    }
                    Err(e) => Reply::Text(format!("error: {e}\n")),
                };
            }
            ["upgrade", args @ ..] => self.upgrade.command(args, crate::upgrade::global().map(|u| &**u)),
            ["quit"] | ["exit"] => return Reply::Quit,
            _ => format!("unknown command: {line:?} (try 'help', or '?')\n"),
        };
        Reply::Text(text)
    }
}

/// The last `n` lines of the file at `path` (at most 64 KiB read).
fn tail_lines(path: &std::path::Path, n: usize) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    Ok(out)
}

/// Serves console sessions on `listener` until the runtime stops.
/// Limits of the console service (from `[limits]`).
#[derive(Clone, Copy, Debug)]
pub struct ConsoleLimits {
    pub sessions: usize,
    pub idle: std::time::Duration,
    pub max_line: usize,
}

impl ConsoleLimits {
    pub fn from_config(l: &crate::limits::Limits) -> Self {
        ConsoleLimits { sessions: l.console_sessions, idle: l.idle_timeout(), max_line: l.max_line_bytes }
    }
}

/// Serves the console on `listener`. On the loopback address it is the
/// machine's local management socket: no login (whoever can reach it is on
/// the box already). On any other address every session logs in first with
/// the web UI's `accounts`.
pub async fn serve(listener: TcpListener, ctx: Context, accounts: SharedAccounts) {
    let limits = ConsoleLimits::from_config(&ctx.store().running().limits);
    let local = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    serve_with(listener, ctx, limits, if local { None } else { Some(accounts) }).await
}

/// The next `debug isdn` or `debug sip` text of a session; never, before the login.
async fn debug_text(session: &mut Option<Session>) -> String {
    match session {
        Some(s) => tokio::select! {
            t = s.isdn_debug.next() => t,
            t = s.sip_debug.next() => t,
        },
        None => std::future::pending().await,
    }
}

/// The console service: at most `limits.sessions` sessions (one more is told
/// so and closed), each closed after `limits.idle` without a byte or on a
/// line longer than `limits.max_line`; with `accounts`, a login first.
pub async fn serve_with(listener: TcpListener, ctx: Context, limits: ConsoleLimits, accounts: Option<SharedAccounts>) {
    let budget = Budget::new("console", limits.sessions, CONSOLE_REFUSAL);
    let mut backoff = AcceptBackoff::new("console");
    loop {
        let (stream, peer) = backoff.accept(&listener).await;
        let Some(slot) = budget.try_take() else {
            let budget = budget.clone();
            tokio::spawn(async move { budget.refuse(stream).await });
            continue;
        };
        debug!(%peer, "console session opened");
        let ctx = ctx.clone();
        let accounts = accounts.clone();
        tokio::spawn(async move {
            let stream = IdleTimeout::new(stream, limits.idle, Some(slot));
            let (r, mut w) = tokio::io::split(stream);
            let mut r = BufReader::new(r);
            let logged_in = accounts.is_some();
            let mut gate = Some(Gate::new(accounts, peer.ip()));
            let mut session = None;
            let mut buf = Vec::new();
            if let Some(GateReply::Ask { text, .. }) = gate.as_ref().map(Gate::start) {
                let _ = w.write_all(format!("gatewayd console. {text}").as_bytes()).await;
            } else {
                session = Some(Session::default());
                let _ = w.write_all(b"gatewayd console. Type 'help' or '?'.\n> ").await;
            }
            // The prompt ends the output: debug text then starts on a new line.
            let mut at_prompt = true;
            loop {
                // Bounded: a line longer than max_line never grows the buffer further.
                // `debug isdn` output is written between reads (read_until keeps
                // what it read so far in `buf` when the other branch wins).
                let room = (limits.max_line as u64 + 1).saturating_sub(buf.len() as u64);
                let mut bounded = (&mut r).take(room);
                let got = tokio::select! {
                    got = bounded.read_until(b'\n', &mut buf) => got,
                    text = debug_text(&mut session) => {
                        let nl: &[u8] = if std::mem::take(&mut at_prompt) { b"\n" } else { b"" };
                        match w.write_all(&[nl, text.as_bytes()].concat()).await {
                            Ok(()) => continue,
                            Err(_) => break,
                        }
                    }
                };
                match got {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buf.len() > limits.max_line && !buf.ends_with(b"\n") => {
                        let _ = w.write_all(b"line too long; closing\n").await;
                        break;
                    }
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                buf.clear();
                let line = line.trim_end_matches(['\r', '\n']);
                let Some(session) = &mut session else {
                    // argon2 is slow on purpose: off the async workers.
                    let (Some(mut g), l) = (gate.take(), line.to_string()) else { break };
                    let Ok((g, reply)) = tokio::task::spawn_blocking(move || {
                        let r = g.input(&l);
                        (g, r)
                    })
                    .await
                    else {
                        break;
                    };
                    gate = Some(g);
                    match reply {
                        GateReply::Ask { text, .. } => {
                            if w.write_all(text.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                        GateReply::Open { text, user, role } => {
                            let s = if logged_in { Session::for_user(&user, role) } else { Session::default() };
                            if w.write_all(format!("{text}Type 'help' or '?'.\n{}", s.prompt()).as_bytes()).await.is_err() {
                                break;
                            }
                            session = Some(s);
                        }
                        GateReply::Close(text) => {
                            let _ = w.write_all(text.as_bytes()).await;
                            break;
                        }
                    }
                    continue;
                };
                let (text, more) = match session.command(line, &ctx) {
                    Reply::Quit => break,
                    Reply::Text(t) => (t, true),
                    Reply::Restart(t) => (t, false),
                };
                if w.write_all(text.as_bytes()).await.is_err() || !more || w.write_all(session.prompt().as_bytes()).await.is_err() {
                    break;
                }
                at_prompt = true;
            }
            debug!(%peer, "console session closed");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_some(s: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Ok(Err(e)) => format!("<error {e}>"),
            Err(_) => "<nothing>".into(),
        }
    }

    /// Reads until the peer closes (true) or 3 s pass (false).
    async fn closes(s: &mut tokio::net::TcpStream) -> bool {
        loop {
            match read_some(s).await.as_str() {
                "" => return true,
                "<nothing>" => return false,
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn sessions_are_bounded_timed_out_and_lines_capped() {
        use std::time::Duration;
        use tokio::net::TcpStream;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(Mutex::new(crate::status::Status::new("sim".into(), "-".into(), None, crate::rt::RtStats::new(0).snapshot())));
        let limits = ConsoleLimits { sessions: 2, idle: Duration::from_millis(400), max_line: 256 };
        tokio::spawn(serve_with(listener, Context::for_tests(status), limits, None));
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        assert!(read_some(&mut a).await.contains("gatewayd console"));
        assert!(read_some(&mut b).await.contains("gatewayd console"));
        // The third is told and closed; the two sessions still work.
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert!(read_some(&mut c).await.contains("too many sessions"));
        assert!(closes(&mut c).await);
        a.write_all(b"help\n").await.unwrap();
        assert!(read_some(&mut a).await.contains("show status"));
        // A line past the cap closes the session, whatever follows.
        b.write_all(&[b'x'; 1000]).await.unwrap();
        assert!(read_some(&mut b).await.contains("line too long"));
        assert!(closes(&mut b).await);
        // Its slot is free again.
        let mut d = TcpStream::connect(addr).await.unwrap();
        assert!(read_some(&mut d).await.contains("gatewayd console"));
        // Idle sessions are closed after 400 ms, freeing their slots.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let t = std::time::Instant::now();
        assert!(closes(&mut a).await, "idle session closed");
        assert!(closes(&mut d).await, "idle session closed");
        assert!(t.elapsed() < Duration::from_secs(1));
        let mut e = TcpStream::connect(addr).await.unwrap();
        assert!(read_some(&mut e).await.contains("gatewayd console"));
    }
    #[tokio::test]
    async fn a_console_off_loopback_asks_for_a_login() {
        use tokio::net::TcpStream;
        let dir = tempfile::tempdir().unwrap();
        let mut accounts = crate::accounts::open_fast(&dir.path().join("accounts.toml")).unwrap().accounts;
        accounts.set_password("admin", "installer-pass", false).unwrap();
        accounts.add("viewer", crate::accounts::Role::ReadOnly, "look-but-not-touch").unwrap();
        accounts.set_password("viewer", "look-but-not-touch", false).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(Mutex::new(crate::status::Status::new("sim".into(), "-".into(), None, crate::rt::RtStats::new(0).snapshot())));
        let limits = ConsoleLimits { sessions: 4, idle: std::time::Duration::from_secs(30), max_line: 256 };
        tokio::spawn(serve_with(listener, Context::for_tests(status), limits, Some(Arc::new(Mutex::new(accounts)))));
        let mut a = TcpStream::connect(addr).await.unwrap();
        assert!(read_some(&mut a).await.ends_with("Log in with a web UI account.\nUser: "));
        a.write_all(b"show status\n").await.unwrap();
        assert_eq!(read_some(&mut a).await, "Password: ", "no command before the login");
        a.write_all(b"x\n").await.unwrap();
        assert!(read_some(&mut a).await.contains("login failed: wrong user name or password"));
        a.write_all(b"viewer\nlook-but-not-touch\n").await.unwrap();
        let mut got = String::new();
        while !got.ends_with("> ") {
            got.push_str(&read_some(&mut a).await);
        }
        assert!(got.contains("Welcome, viewer (read-only)"), "{got}");
        async fn answer(a: &mut TcpStream, line: &str) -> String {
            a.write_all(line.as_bytes()).await.unwrap();
            let mut got = String::new();
            while !got.ends_with("\n> ") {
                let more = read_some(a).await;
                assert!(!more.starts_with('<'), "{got}{more}");
                got.push_str(&more);
            }
            got
        }
        assert!(answer(&mut a, "config set sip.register_expires 120\n").await.starts_with("error: viewer is a read-only account"));
        assert!(answer(&mut a, "show ?\n").await.contains("ports"));
    }

    use std::sync::atomic::{AtomicU32, Ordering};

    fn ctx_with_file(dir: &std::path::Path) -> (Context, Arc<AtomicU32>, std::path::PathBuf) {
        let (ctx, restarts, _, path) = ctx_counting(dir);
        (ctx, restarts, path)
    }

    /// Also counts the changes handed to the control plane to apply live.
    fn ctx_counting(dir: &std::path::Path) -> (Context, Arc<AtomicU32>, Arc<AtomicU32>, std::path::PathBuf) {
        let f = crate::config_store::fixture(dir, crate::config::DEFAULT_TOML);
        let isdn = Default::default();
        (Context { status: f.status, store: f.store, restart: f.restart, apply: f.apply, capture: Arc::default(), isdn }, f.restarts, f.applies, f.path)
    }

    fn text(r: Reply) -> String {
        match r {
            Reply::Text(t) | Reply::Restart(t) => t,
            Reply::Quit => "<quit>".into(),
        }
    }

    #[test]
    fn routes_test_route_sip_and_calls_explain_the_switch() {
        let ctx = Context::for_tests(crate::status::tests::tests_status());
        let mut s = Session::default();
        let t = text(s.command("show routes", &ctx));
        assert!(t.contains("group phones: FXS [1, 2, 3, 4]"), "{t}");
        assert!(t.contains("route[0] \"local\": from phones,default called 1xxx -> owner"), "{t}");
        assert!(t.contains("route[1] \"outside\": from phones called 2xxx,3xxx,911,9. -> trunk default"), "{t}");
        let t = text(s.command("test route phones 2000", &ctx));
        assert!(t.contains("result: route[1] \"outside\"") && t.contains("trunk \"default\""), "{t}");
        let t = text(s.command("test route default 1003 5551234", &ctx));
        assert!(t.contains("result: route[0] \"local\"") && t.contains("owner"), "{t}");
        let t = text(s.command("test route default 2000", &ctx));
        assert!(t.contains("result: no route (cause 3)"), "a trunk cannot reach the trunk: {t}");
        let t = text(s.command("test route nowhere 2000", &ctx));
        assert!(t.starts_with("error: \"nowhere\" is neither a group nor a trunk (sources: phones, default)"), "{t}");
        assert!(text(s.command("test route phones", &ctx)).starts_with("unknown command"));
        assert_eq!(text(s.command("show calls", &ctx)), "no calls\n");
        assert!(text(s.command("show sip", &ctx)).contains("requests from addresses of no trunk (403): 0"));
    }

    #[test]
    fn edit_commit_applies_once_and_refusals_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, restarts, applies, path) = ctx_counting(dir.path());
        let mut s = Session::default();
        assert_eq!(text(s.command("config diff", &ctx)), "no changes\n");
        assert!(text(s.command("config  set   sip.user_agent  Branch GW 7", &ctx)).starts_with("ok"));
        assert!(text(s.command("config set media.ptime_ms 25", &ctx)).starts_with("ok"));
        assert_eq!(
            text(s.command("config diff", &ctx)),
            "- media.ptime_ms = 20\n+ media.ptime_ms = 25\n- sip.user_agent = \"gatewayd\"\n+ sip.user_agent = \"Branch GW 7\"\n"
        );
        let e = text(s.command("config commit", &ctx));
        assert!(e.starts_with("error: refused, nothing changed: media.ptime_ms"), "{e}");
        assert_eq!(restarts.load(Ordering::Relaxed), 0);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), crate::config::DEFAULT_TOML);
        assert!(text(s.command("config unset media.ptime_ms", &ctx)).starts_with("ok"));
        assert!(text(s.command("config set media.ptime_ms 30", &ctx)).starts_with("ok"));
        let r = s.command("config commit", &ctx);
        // Both are taken live: no restart, calls go on.
        assert!(
            matches!(&r, Reply::Text(t) if t.starts_with("saved") && t.contains("applied without a restart (trunk default ([sip]), media settings of new calls)")),
            "{r:?}"
        );
        assert_eq!((restarts.load(Ordering::Relaxed), applies.load(Ordering::Relaxed)), (0, 1));
        let saved = crate::config::Config::load(&path, 4).unwrap();
        assert_eq!((saved.media.ptime_ms, saved.sip.user_agent.as_str()), (30, "Branch GW 7"));
        assert_eq!(ctx.store().running(), &saved, "the running configuration is the saved one");
        assert_eq!(text(s.command("config commit", &ctx)), "nothing to commit\n", "the candidate went with the commit");
        // The country is set up once at start: a restart, said up front.
        assert!(text(s.command("config set system.country DE", &ctx)).starts_with("ok"));
        let r = s.command("config commit", &ctx);
        assert!(matches!(&r, Reply::Restart(t) if t.contains("gatewayd restarts to apply [system]")), "{r:?}");
        assert_eq!((restarts.load(Ordering::Relaxed), applies.load(Ordering::Relaxed)), (1, 1));
        // A rollback is applied the same way (back to US: a restart again).
        let r = s.command("config rollback", &ctx);
        assert!(matches!(&r, Reply::Restart(t) if t.starts_with("restored")), "{r:?}");
        assert_eq!(restarts.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn configure_mode_help_commit_versions_and_rollback_n() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, restarts, applies, path) = ctx_counting(dir.path());
        let mut s = Session::default();
        assert_eq!(s.prompt(), "> ");
        // '?' over the line protocol: the next words, aligned, a line each.
        let h = text(s.command("show ?", &ctx));
        assert!(h.contains("ports ") && h.contains("versions ") && h.contains("running-config "), "{h}");
        assert!(text(s.command("sh?", &ctx)).starts_with("show  show state"), "a partial word");
        let t = text(s.command("configure", &ctx));
        assert!(t.starts_with("configuration mode") && !t.contains("warning"), "{t}");
        assert_eq!(s.prompt(), "(config)> ");
        let h = text(s.command("?", &ctx));
        assert!(h.contains("commit ") && h.contains("abort ") && h.contains("set "), "{h}");
        assert!(text(s.command("set fxs[1].?", &ctx)).contains("fxs[1].number"), "paths are offered");
        assert_eq!(s.complete("set fxs[1].num", &ctx).0, "set fxs[1].number ");
        assert!(text(s.command("set fxs[1].number 2002", &ctx)).starts_with("ok"));
        assert_eq!(text(s.command("unset sip.proxy", &ctx)), "ok (required: back to the default, \"127.0.0.1:5060\")\n");
        assert_eq!(text(s.command("diff", &ctx)), "- fxs[1].number = \"1002\"\n+ fxs[1].number = \"2002\"\n");
        assert!(text(s.command("show ports", &ctx)).starts_with("PORT"), "show works in configuration mode");
        let t = text(s.command("commit", &ctx));
        assert!(t.starts_with("saved") && t.contains("applied without a restart"), "{t}");
        assert_eq!((s.mode(), restarts.load(Ordering::Relaxed), applies.load(Ordering::Relaxed)), (Mode::Exec, 0, 1));
        // Two more commits: three versions kept.
        for n in ["2003", "2004"] {
            s.command("configure", &ctx);
            s.command(&format!("set fxs[1].number {n}"), &ctx);
            assert!(text(s.command("commit", &ctx)).starts_with("saved"));
        }
        let v = text(s.command("show versions", &ctx));
        let lines: Vec<&str> = v.lines().collect();
        assert!(lines[0].starts_with("N  KEPT AT (UTC)") && lines.len() == 4, "{v}");
        assert!(lines[3].starts_with("3  ") && lines[3].ends_with("1 keys differ from running"), "{v}");
        assert!(text(s.command("config rollback x", &ctx)).starts_with("error: \"x\" is not a version number"));
        assert!(text(s.command("config rollback 9", &ctx)).contains("versions 1 to 3 are kept"));
        let t = text(s.command("config rollback 3", &ctx));
        assert!(t.starts_with("restored version 3") && t.contains("applied without a restart"), "{t}");
        assert_eq!(crate::config::Config::load(&path, 4).unwrap().fxs[1].number, "1002");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), crate::config::DEFAULT_TOML, "the original file, comments and all");
        // abort drops the candidate and leaves the mode; exit keeps it.
        s.command("configure", &ctx);
        s.command("set sip.register_expires 120", &ctx);
        assert!(text(s.command("exit", &ctx)).contains("the candidate is kept"));
        assert!(text(s.command("config diff", &ctx)).contains("register_expires"));
        s.command("configure", &ctx);
        assert!(text(s.command("configure", &ctx)).contains("already holds changes"));
        assert!(text(s.command("abort", &ctx)).starts_with("candidate dropped"));
        assert_eq!((s.mode(), text(s.command("config diff", &ctx))), (Mode::Exec, "no changes\n".to_string()));
        assert!(text(s.command("set sip.register_expires 1", &ctx)).starts_with("unknown command"), "set needs configure");
    }

    #[test]
    fn configure_without_a_file_says_so_at_once() {
        let ctx = Context::for_tests(crate::status::tests::tests_status());
        let mut s = Session::default();
        let t = text(s.command("configure", &ctx));
        assert!(t.contains("warning: running from the embedded default") && t.contains("'commit' will be refused"), "{t}");
        s.command("set sip.register_expires 120", &ctx);
        assert!(text(s.command("commit", &ctx)).contains("the candidate is kept"));
        assert!(text(s.command("diff", &ctx)).contains("register_expires"));
        assert!(text(s.command("show versions", &ctx)).starts_with("no versions: running from the embedded default"));
        assert!(text(s.command("config import begin", &ctx)).starts_with("error: running from the embedded default"));
    }

    #[test]
    fn import_export_and_factory_reset() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, restarts, applies, path) = ctx_counting(dir.path());
        let mut s = Session::default();
        let exported = text(s.command("config export", &ctx));
        assert!(exported.contains("password = \"********\"") && exported.starts_with("# gatewayd configuration"));
        // A truncated document: refused whole, nothing changed.
        assert!(text(s.command("config import begin", &ctx)).starts_with("send the document"));
        for l in exported.lines().take(40) {
            assert_eq!(text(s.command(l, &ctx)), "");
        }
        let e = text(s.command("config import end", &ctx));
        assert!(e.starts_with("error: import refused, nothing changed: "), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), crate::config::DEFAULT_TOML);
        assert_eq!(restarts.load(Ordering::Relaxed) + applies.load(Ordering::Relaxed), 0);
        // The whole document with a change: imported, secrets kept.
        s.command("config import begin", &ctx);
        for l in exported.replace("jitter_ms = 60", "jitter_ms = 80").lines() {
            s.command(l, &ctx);
        }
        let t = text(s.command("config import end", &ctx));
        assert!(t.starts_with("imported into"), "{t}");
        let cfg = crate::config::Config::load(&path, 4).unwrap();
        assert_eq!((cfg.media.jitter_ms, cfg.sip.password.as_str()), (80, "change-me"));
        // An import past the bound is dropped.
        s.command("config import begin", &ctx);
        let long = "#".repeat(4000);
        let mut last = String::new();
        for _ in 0..(MAX_IMPORT / 4000 + 2) {
            last = text(s.command(&long, &ctx));
            if !last.is_empty() {
                break;
            }
        }
        assert!(last.contains("longer than"), "{last}");
        assert!(text(s.command("config import end", &ctx)).starts_with("unknown command"));
        // Factory reset asks first.
        assert!(text(s.command("factory reset", &ctx)).contains("type 'factory reset confirm'"));
        assert_eq!(crate::config::Config::load(&path, 4).unwrap().media.jitter_ms, 80);
        let t = text(s.command("factory reset confirm", &ctx));
        assert!(t.contains("new sip.password: ") && !t.contains("change-me"), "{t}");
        let cfg = crate::config::Config::load(&path, 4).unwrap();
        assert_eq!(cfg.media.jitter_ms, 60);
        assert!(t.contains(&cfg.sip.password));
    }

    #[test]
    fn tables_for_ports_rt_and_log() {
        let ctx = Context::for_tests(crate::status::tests::tests_status());
        let port = |port: usize, number: &str, state: &str, call: Option<&str>| crate::gateway::PortStatus {
            port,
            timeslot: 0,
            number: number.into(),
            hook: if call.is_some() { "OffHook" } else { "OnHook" }.into(),
            state: state.into(),
            call: call.map(String::from),
            route: None,
            echo: None,
            signals: None,
        };
        ctx.status.lock().unwrap().ports =
            vec![port(1, "1001", "Connected", Some("to 1002")), port(2, "1002", "Connected", Some("from 1001")), port(10, "23", "Idle", None)];
        let mut s = Session::default();
        let t = text(s.command("show ports", &ctx));
        assert_eq!(
            t,
            "PORT    NUMBER  HOOK     STATE      CALL\nFXS 1   1001    OffHook  Connected  to 1002\nFXS 2   1002    OffHook  Connected  from 1001\nFXS 10  23      OnHook   Idle\n"
        );
        let t = text(s.command("show rt", &ctx));
        assert!(t.starts_with("REAL-TIME LOOP") && t.contains("deadline misses "), "{t}");
        assert!(text(s.command("show log", &ctx)).starts_with("no log file is configured"));
        let h = text(s.command("help", &ctx));
        assert!(h.contains("show status") && h.contains("(config) commit") && h.contains("factory reset"), "{h}");
    }

    #[test]
    fn sessions_have_their_own_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, _, _) = ctx_with_file(dir.path());
        let (mut a, mut b) = (Session::default(), Session::default());
        a.command("config set sip.register_expires 120", &ctx);
        assert_eq!(text(b.command("config diff", &ctx)), "no changes\n");
        assert!(text(a.command("show candidate", &ctx)).contains("register_expires = 120"));
        assert!(text(b.command("show config", &ctx)).contains("register_expires = 300"));
        a.command("config discard", &ctx);
        assert_eq!(text(a.command("config diff", &ctx)), "no changes\n");
    }

    proptest::proptest! {
        /// Whatever an installer (or line noise on the serial port) types:
        /// no panic, every answer is text, and nothing is saved or restarted
        /// without a `config commit` of a valid candidate.
        #[test]
        fn arbitrary_lines_never_panic_or_save(lines in proptest::collection::vec(
            proptest::prop_oneof![
                "[ -~]{0,40}",
                "(config (set|unset) )(sip|media|fxs\\[[0-9]\\]|caller_id|x)(\\.[a-z_\\[\\]0-9]{0,12})? [ -~]{0,20}",
                proptest::strategy::Just("config diff".to_string()),
                proptest::strategy::Just("show candidate".to_string()),
            ],
            0..12,
        )) {
            let dir = tempfile::tempdir().unwrap();
            let (ctx, restarts, applies, path) = ctx_counting(dir.path());
            let mut s = Session::default();
            for l in &lines {
                match s.command(l, &ctx) {
                    Reply::Text(_) | Reply::Quit => {}
                    Reply::Restart(t) => proptest::prop_assert!(false, "restart without commit: {}", t),
                }
            }
            proptest::prop_assert_eq!(restarts.load(Ordering::Relaxed) + applies.load(Ordering::Relaxed), 0);
            proptest::prop_assert_eq!(std::fs::read_to_string(&path).unwrap(), crate::config::DEFAULT_TOML);
            // A commit of whatever came out is either refused (nothing
            // changes), or saves a file that loads as a valid configuration
            // and puts it into effect once.
            s.command("config commit", &ctx);
            let effects = restarts.load(Ordering::Relaxed) + applies.load(Ordering::Relaxed);
            if std::fs::read_to_string(&path).unwrap() == crate::config::DEFAULT_TOML {
                proptest::prop_assert_eq!(effects, 0);
            } else {
                proptest::prop_assert!(crate::config::Config::load(&path, 4).is_ok());
                proptest::prop_assert_eq!(effects, 1);
            }
        }
    }

    #[test]
    fn bad_lines_get_a_clear_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, restarts, _) = ctx_with_file(dir.path());
        let mut s = Session::default();
        assert!(text(s.command("config set", &ctx)).starts_with("unknown command"));
        assert!(text(s.command("config set sip.register_expires", &ctx)).starts_with("unknown command"));
        assert!(text(s.command("config set sip.nosuch.x 1", &ctx)).starts_with("error: sip.nosuch.x: no such section"));
        assert!(text(s.command("config rollback", &ctx)).starts_with("error: no previous configuration"));
        assert_eq!(s.command("quit", &ctx), Reply::Quit);
        assert_eq!(restarts.load(Ordering::Relaxed), 0);
    }
}
