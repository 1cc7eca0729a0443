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

use crate::config_store::{Candidate, ConfigStore};
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

    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, ConfigStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
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
}

const HELP: &str = "\
show status | show ports | show registrations
show sip                     trunks: health, limits, registrations
show calls                   calls in progress: both legs, rule, destinations tried
show cdr [N]                 the last N calls' records (default 20): legs, cause, who released
capture start|stop|status    record this gateway's SIP and RTP (pcap, 16 MB at most)
capture save FILE            write the recording to FILE (tshark/Wireshark read it)
show routes                  the routing table
show isdn                    ISDN spans: layer 1 and alarms, layer 2, TEI, counters, B-channels
capture isdn SPAN FILE       write SPAN's D-channel frames to FILE (pcap, LAPD)
capture stop                 end every D-channel capture
test route FROM NUMBER [CALLING]
                             what a call from FROM (a group or trunk) to NUMBER
                             would do, without placing it
show config                  the running configuration (secrets masked)
show candidate               the configuration being edited
config set PATH VALUE        e.g. config set sip.register_expires 120
                                  config set fxs[0].number \"2001\"
config unset PATH            back to the default (or remove a list element)
config diff                  what the candidate changes
config commit                validate, save (old file kept as .prev), apply
                             (live where it can; else gatewayd restarts)
config discard               drop the candidate
config rollback              restore the previous file, apply it
upgrade status               the A/B slots and the boot state
upgrade begin LEN | upgrade data BASE64 CRC32 | upgrade end
                             a signed firmware bundle, in chunks (gwctl upgrade FILE)
help | quit
";

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

impl Session {
    pub fn command(&mut self, line: &str, ctx: &Context) -> Reply {
        let line = line.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let text = match words.as_slice() {
            [] => String::new(),
            ["help"] | ["?"] => HELP.into(),
            ["show", "status"] => snapshot(&ctx.status).to_text(),
            ["show", "ports"] => {
                let s = snapshot(&ctx.status);
                s.ports.iter().map(|p| format!("FXS {} {} {} {}\n", p.port, p.number, p.hook, p.state)).collect()
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
                    Ok(crate::config_store::Unset::Removed) => "ok\n".into(),
                    Ok(crate::config_store::Unset::Default(v)) => format!("ok (required: back to the default, {v})\n"),
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
                        let (how, restart) = ctx.apply_saved(saved.config.clone());
                        let text = format!("saved {} (previous: {}); {how}\n", saved.path.display(), saved.previous.display());
                        if restart {
                            Reply::Restart(text)
                        } else {
                            Reply::Text(text)
                        }
                    }
                    Err(e) => Reply::Text(format!("error: {e}\n")),
                };
            }
            ["config", "rollback"] => {
                let result = ctx.store().rollback(1);
                return match result {
                    Ok(saved) => {
                        info!(path = %saved.path.display(), "configuration rolled back from the console");
                        let (how, restart) = ctx.apply_saved(saved.config.clone());
                        let text = format!("restored the previous configuration into {}; {how}\n", saved.path.display());
                        if restart {
                            Reply::Restart(text)
                        } else {
                            Reply::Text(text)
                        }
                    }
                    Err(e) => Reply::Text(format!("error: {e}\n")),
                };
            }
            ["upgrade", args @ ..] => self.upgrade.command(args, crate::upgrade::global().map(|u| &**u)),
            ["quit"] | ["exit"] => return Reply::Quit,
            _ => format!("unknown command: {line:?} (try 'help')\n"),
        };
        Reply::Text(text)
    }
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

pub async fn serve(listener: TcpListener, ctx: Context) {
    let limits = ConsoleLimits::from_config(&ctx.store().running().limits);
    serve_with(listener, ctx, limits).await
}

/// The console service: at most `limits.sessions` sessions (one more is told
/// so and closed), each closed after `limits.idle` without a byte or on a
/// line longer than `limits.max_line`.
pub async fn serve_with(listener: TcpListener, ctx: Context, limits: ConsoleLimits) {
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
        tokio::spawn(async move {
            let stream = IdleTimeout::new(stream, limits.idle, Some(slot));
            let (r, mut w) = tokio::io::split(stream);
            let mut r = BufReader::new(r);
            let mut session = Session::default();
            let mut buf = Vec::new();
            let _ = w.write_all(b"gatewayd console. Type 'help'.\n> ").await;
            loop {
                buf.clear();
                // Bounded: a line longer than max_line never grows the buffer further.
                match (&mut r).take(limits.max_line as u64 + 1).read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buf.len() > limits.max_line && !buf.ends_with(b"\n") => {
                        let _ = w.write_all(b"line too long; closing\n").await;
                        break;
                    }
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\r', '\n']);
                let (text, more) = match session.command(line, &ctx) {
                    Reply::Quit => break,
                    Reply::Text(t) => (t, true),
                    Reply::Restart(t) => (t, false),
                };
                if w.write_all(text.as_bytes()).await.is_err() || !more || w.write_all(b"> ").await.is_err() {
                    break;
                }
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
        tokio::spawn(serve_with(listener, Context::for_tests(status), limits));
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
