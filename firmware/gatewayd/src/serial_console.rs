//! The console on a serial line (`[console] serial = "/dev/ttyS0"`): the same
//! sessions and commands as the TCP console (`console::Session`), over a tty
//! opened with the `serialport` crate (raw, 8N1, the configured baud rate).
//!
//! A serial line has no connections: one session runs for as long as the
//! port is open; `quit` starts a fresh session (a new banner, the candidate
//! dropped). A line longer than the limit is answered and dropped, not a
//! reason to close anything. The port is reopened if it fails (a USB serial
//! adapter unplugged). No echo: the console's client (gwctl, a terminal in
//! local-echo mode) shows what it types.

use std::io::{self, Read, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::cli::{Edit, LineEditor};
use crate::console::{Context, Gate, GateReply, Reply, Session, SharedAccounts};

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConsoleConfig {
    /// The tty the console is served on (none: TCP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default = "default_baud")]
    pub baud: u32,
}

fn default_baud() -> u32 {
    115_200
}

impl Default for SerialConsoleConfig {
    fn default() -> Self {
        SerialConsoleConfig { serial: None, baud: default_baud() }
    }
}

impl SerialConsoleConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1200..=4_000_000).contains(&self.baud) {
            return Err("console.baud must be within 1200..4000000".into());
        }
        match &self.serial {
            Some(p) if !p.starts_with("/dev/") => Err(format!("console.serial {p:?}: a device under /dev/")),
            _ => Ok(()),
        }
    }
}

pub const BANNER: &[u8] = b"gatewayd console (serial). Type 'help' or '?'; TAB completes.\r\n> ";

/// The installer's terminal: CR LF line ends.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// Serves the console on `port` until it fails: a login with the web UI's
/// accounts (when `accounts` is given), then commands typed with the line
/// editor (`cli.rs`): echo, history, `?` help and TAB completion.
pub fn serve_port(port: &mut dyn ReadWrite, ctx: &Context, max_line: usize, accounts: Option<SharedAccounts>) -> io::Result<()> {
    let from = std::net::IpAddr::from([0, 0, 0, 0]);
    let mut gate = Gate::new(accounts.clone(), from);
    let mut session: Option<Session> = None;
    let mut editor = LineEditor::new(max_line);
    let mut prompt = String::new();
    let mut secret = false;
    // Writes `text`, then opens the session or asks the next login question.
    let start = |port: &mut dyn ReadWrite, reply: GateReply, session: &mut Option<Session>, prompt: &mut String, secret: &mut bool| -> io::Result<()> {
        match reply {
            GateReply::Open { text, user, role } => {
                port.write_all(crlf(&text).as_bytes())?;
                port.write_all(&BANNER[..BANNER.len() - 2])?;
                let s = if accounts.is_some() { Session::for_user(&user, role) } else { Session::default() };
                *prompt = s.prompt().to_string();
                *session = Some(s);
                *secret = false;
            }
            GateReply::Ask { text, secret: s } => {
                let (question, last) = match text.rfind('\n') {
                    Some(i) => (&text[..=i], &text[i + 1..]),
                    None => ("", text.as_str()),
                };
                port.write_all(crlf(question).as_bytes())?;
                *prompt = last.to_string();
                *secret = s;
            }
            GateReply::Close(text) => {
                port.write_all(crlf(&text).as_bytes())?;
                *prompt = "User: ".into();
            }
        }
        port.write_all(prompt.as_bytes())?;
        port.flush()
    };
    start(port, gate.start(), &mut session, &mut prompt, &mut secret)?;
    let mut buf = [0u8; 512];
    loop {
        // `debug isdn` output, between reads (each read waits at most the port's timeout).
        while let Some(t) = session.as_mut().and_then(|s| s.debug_pending()) {
            port.write_all(t.as_bytes())?;
        }
        let n = match port.read(&mut buf) {
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            let batch = session.as_ref().is_some_and(Session::batch);
            editor.plain = session.as_ref().is_none_or(|s| s.batch() || s.importing());
            let (echo, edit) = editor.feed(b, &prompt);
            if !batch && (!secret || echo == "\r\n") {
                port.write_all(echo.as_bytes())?;
            }
            match edit {
                Edit::None => continue,
                Edit::TooLong => port.write_all(b"error: line too long; dropped\r\n")?,
                Edit::Help(line) => {
                    if let Some(s) = &session {
                        port.write_all(crlf(&s.help(&line, ctx)).as_bytes())?;
                    }
                    editor.set_line(&line, &prompt);
                    port.write_all(editor.redraw(&prompt).as_bytes())?;
                    port.flush()?;
                    continue;
                }
                Edit::Complete(line) => {
                    if let Some(s) = &session {
                        let (new, choices) = s.complete(&line, ctx);
                        if !choices.is_empty() {
                            port.write_all(format!("\r\n{}\r\n", choices.join("  ")).as_bytes())?;
                        }
                        port.write_all(editor.set_line(&new, &prompt).as_bytes())?;
                    }
                    port.flush()?;
                    continue;
                }
                Edit::Line(line) => {
                    let Some(s) = &mut session else {
                        let reply = gate.input(&line);
                        if matches!(reply, GateReply::Close(_)) {
                            gate = Gate::new(accounts.clone(), from);
                        }
                        start(port, reply, &mut session, &mut prompt, &mut secret)?;
                        continue;
                    };
                    match s.command(&line, ctx) {
                        Reply::Text(t) => port.write_all(crlf(&t).as_bytes())?,
                        Reply::Restart(t) => {
                            port.write_all(crlf(&t).as_bytes())?;
                            port.flush()?;
                            continue;
                        }
                        Reply::Quit => {
                            session = None;
                            gate = Gate::new(accounts.clone(), from);
                            start(port, gate.start(), &mut session, &mut prompt, &mut secret)?;
                            continue;
                        }
                    }
                    prompt = s.prompt().to_string();
                }
            }
            port.write_all(prompt.as_bytes())?;
            port.flush()?;
        }
    }
}

pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Opens the configured tty and serves it from its own thread, reopening
/// it after a failure. None when no tty is configured.
/// Serves the console on the serial device of `cfg`, reopening it when it
/// fails. With `accounts`, a session starts with a login.
pub fn spawn(cfg: &SerialConsoleConfig, ctx: Context, max_line: usize, accounts: Option<SharedAccounts>) -> Option<std::thread::JoinHandle<()>> {
    let path = cfg.serial.clone()?;
    let baud = cfg.baud;
    let handle = std::thread::Builder::new().name("serial-console".into()).spawn(move || {
        let mut logged = false;
        loop {
            match serialport::new(&path, baud).timeout(Duration::from_millis(500)).open() {
                Ok(mut port) => {
                    info!(%path, baud, "console on the serial line");
                    logged = false;
                    if let Err(e) = serve_port(&mut port, &ctx, max_line, accounts.clone()) {
                        warn!(%path, %e, "serial console failed; reopening");
                    }
                }
                Err(e) if !logged => {
                    warn!(%path, %e, "cannot open the serial console; retrying every 2 s");
                    logged = true;
                }
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    match handle {
        Ok(h) => Some(h),
        Err(e) => {
            warn!(%e, "serial console thread");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    /// Reads until the output holds `pat`; returns all of it.
    fn read_until(f: &mut std::fs::File, pat: &str) -> String {
        let mut got = Vec::new();
        let mut b = [0u8; 256];
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&got).contains(pat) {
            assert!(std::time::Instant::now() < deadline, "no {pat:?}; got {:?}", String::from_utf8_lossy(&got));
            let n = f.read(&mut b).unwrap();
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    fn pty_console(accounts: Option<SharedAccounts>) -> (std::fs::File, nix::pty::OpenptyResult) {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
        let ctx = Context::for_tests(crate::status::tests::tests_status());
        let cfg = SerialConsoleConfig { serial: Some(slave.to_string_lossy().into_owned()), baud: 115_200 };
        assert!(cfg.validate().is_ok());
        let _t = spawn(&cfg, ctx, 256, accounts).unwrap();
        let m = std::fs::File::from(pty.master.try_clone().unwrap());
        (m, pty)
    }

    /// gatewayd serves its console on the slave side of a pseudo-terminal,
    /// opened through `serialport` as it opens /dev/ttyS0 on the box; the
    /// test types on the master side as a person would.
    #[test]
    fn console_answers_on_a_pty_with_help_completion_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let mut accounts = crate::accounts::open_fast(&dir.path().join("accounts.toml")).unwrap().accounts;
        accounts.set_password("admin", "installer-pass", false).unwrap();
        let (mut m, _pty) = pty_console(Some(Arc::new(std::sync::Mutex::new(accounts))));
        read_until(&mut m, "User: ");
        m.write_all(b"admin\rinstaller-pass\r").unwrap();
        assert!(read_until(&mut m, "> ").contains("gatewayd console (serial)"));
        m.write_all(b"show routes\r").unwrap();
        let a = read_until(&mut m, "\r\n> ");
        assert!(a.starts_with("show routes\r\n"), "echoed: {a:?}");
        assert!(a.contains("group phones: FXS [1, 2, 3, 4]\r\n"), "{a}");
        // '?' lists the next words; the line stays as it was typed.
        m.write_all(b"show ?").unwrap();
        let a = read_until(&mut m, "\r> show ");
        assert!(a.contains("ports ") && a.contains("running-config "), "{a}");
        // TAB completes; Enter runs it; up-arrow brings it back.
        m.write_all(b"po\t").unwrap();
        assert!(read_until(&mut m, "show ports ").contains("show ports "));
        m.write_all(b"\r").unwrap();
        assert!(read_until(&mut m, "\r\n> ").contains("PORT"));
        m.write_all(b"\x1b[A").unwrap();
        read_until(&mut m, "show ports");
        m.write_all(b"\r").unwrap();
        assert!(read_until(&mut m, "\r\n> ").contains("PORT"));
        // Line noise longer than the limit is dropped, the session goes on.
        m.write_all(&[b'x'; 600]).unwrap();
        m.write_all(b"\n").unwrap();
        assert!(read_until(&mut m, "\r\n> ").contains("line too long"));
        m.write_all(b"configure\r").unwrap();
        read_until(&mut m, "(config)> ");
        m.write_all(b"set sip.register_expires 120\r").unwrap();
        assert!(read_until(&mut m, "(config)> ").contains("ok"));
        m.write_all(b"exit\rquit\r").unwrap();
        read_until(&mut m, "User: ");
        m.write_all(b"admin\rinstaller-pass\r").unwrap();
        read_until(&mut m, "(serial)");
        read_until(&mut m, "> ");
        m.write_all(b"config diff\r").unwrap();
        assert!(read_until(&mut m, "\r\n> ").contains("no changes"), "quit started a fresh session");
    }

    #[test]
    fn the_serial_console_logs_in_with_the_web_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let opened = crate::accounts::open_fast(&dir.path().join("accounts.toml")).unwrap();
        let initial = opened.initial_password.clone().unwrap();
        let accounts = Arc::new(std::sync::Mutex::new(opened.accounts));
        {
            let mut a = accounts.lock().unwrap();
            a.add("viewer", crate::accounts::Role::ReadOnly, "look-but-not-touch").unwrap();
            a.set_password("viewer", "look-but-not-touch", false).unwrap();
        }
        let (mut m, _pty) = pty_console(Some(accounts));
        assert!(read_until(&mut m, "User: ").contains("Log in with a web UI account"));
        // The initial password must be changed first; passwords are not echoed.
        m.write_all(b"admin\r").unwrap();
        read_until(&mut m, "Password: ");
        m.write_all(format!("{initial}\r").as_bytes()).unwrap();
        let a = read_until(&mut m, "New password: ");
        assert!(!a.contains(&initial), "not echoed: {a}");
        m.write_all(b"new-admin-pass\r").unwrap();
        read_until(&mut m, "New password again: ");
        m.write_all(b"new-admin-pass\r").unwrap();
        let a = read_until(&mut m, "> ");
        assert!(a.contains("Password changed. Welcome, admin (admin)") && !a.contains("new-admin-pass"), "{a}");
        m.write_all(b"configure\r").unwrap();
        assert!(read_until(&mut m, "(config)> ").contains("configuration mode"));
        m.write_all(b"exit\rquit\r").unwrap();
        read_until(&mut m, "User: ");
        // A read-only account looks but cannot change.
        m.write_all(b"viewer\rlook-but-not-touch\r").unwrap();
        assert!(read_until(&mut m, "> ").contains("Welcome, viewer (read-only)"));
        m.write_all(b"configure\r").unwrap();
        assert!(read_until(&mut m, "\r\n> ").contains("error: viewer is a read-only account"));
        m.write_all(b"show ports\r").unwrap();
        assert!(read_until(&mut m, "\r\n> ").contains("PORT"));
        m.write_all(b"quit\r").unwrap();
        read_until(&mut m, "User: ");
        // Wrong passwords: told, then the session is closed and starts over.
        for _ in 0..crate::console::LOGIN_TRIES - 1 {
            m.write_all(b"admin\rguess\r").unwrap();
            assert!(read_until(&mut m, "User: ").contains("login failed: wrong user name or password\r\n"));
        }
        m.write_all(b"admin\rguess\r").unwrap();
        assert!(read_until(&mut m, "User: ").contains("login failed: wrong user name or password; closing"));
        m.write_all(b"admin\rnew-admin-pass\r").unwrap();
        assert!(read_until(&mut m, "> ").contains("Welcome, admin"), "the session started over");
    }

    #[test]
    fn config_validation() {
        assert!(SerialConsoleConfig { serial: Some("ttyS0".into()), baud: 115_200 }.validate().is_err());
        assert!(SerialConsoleConfig { serial: None, baud: 10 }.validate().is_err());
        assert!(SerialConsoleConfig::default().validate().is_ok());
    }
}
