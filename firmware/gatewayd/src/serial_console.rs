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

use crate::console::{Context, Reply, Session};

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

pub const BANNER: &[u8] = b"gatewayd console (serial). Type 'help'.\n> ";

/// Serves sessions on `port` until it fails (read or write error).
pub fn serve_port(port: &mut dyn ReadWrite, ctx: &Context, max_line: usize) -> io::Result<()> {
    let mut session = Session::default();
    port.write_all(BANNER)?;
    port.flush()?;
    let mut line = Vec::with_capacity(max_line.min(64 * 1024));
    let mut too_long = false;
    let mut buf = [0u8; 512];
    loop {
        // `debug isdn` output, between reads (each read waits at most the port's timeout).
        while let Some(t) = session.debug_pending() {
            port.write_all(t.as_bytes())?;
        }
        let n = match port.read(&mut buf) {
            Ok(0) => {
                // A tty read that returns nothing (no carrier): wait a little.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < max_line {
                    line.push(b);
                } else {
                    too_long = true;
                }
                continue;
            }
            if too_long {
                line.clear();
                too_long = false;
                port.write_all(b"error: line too long; dropped\n> ")?;
                continue;
            }
            let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
            line.clear();
            match session.command(&text, ctx) {
                Reply::Text(t) => {
                    port.write_all(t.as_bytes())?;
                    port.write_all(b"> ")?;
                }
                // gatewayd restarts; the new one writes a new banner.
                Reply::Restart(t) => port.write_all(t.as_bytes())?,
                Reply::Quit => {
                    session = Session::default();
                    port.write_all(BANNER)?;
                }
            }
            port.flush()?;
        }
    }
}

pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Opens the configured tty and serves it from its own thread, reopening
/// it after a failure. None when no tty is configured.
pub fn spawn(cfg: &SerialConsoleConfig, ctx: Context, max_line: usize) -> Option<std::thread::JoinHandle<()>> {
    let path = cfg.serial.clone()?;
    let baud = cfg.baud;
    let handle = std::thread::Builder::new().name("serial-console".into()).spawn(move || {
        let mut logged = false;
        loop {
            match serialport::new(&path, baud).timeout(Duration::from_millis(500)).open() {
                Ok(mut port) => {
                    info!(%path, baud, "console on the serial line");
                    logged = false;
                    if let Err(e) = serve_port(&mut port, &ctx, max_line) {
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

    fn read_until_prompt(f: &mut std::fs::File) -> String {
        let mut got = Vec::new();
        let mut b = [0u8; 256];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !got.ends_with(b"> ") {
            assert!(std::time::Instant::now() < deadline, "no prompt; got {:?}", String::from_utf8_lossy(&got));
            let n = f.read(&mut b).unwrap();
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// gatewayd serves its console on the slave side of a pseudo-terminal,
    /// opened through `serialport` as it opens /dev/ttyS0 on the box; the
    /// test types on the master side.
    #[test]
    fn console_answers_on_a_pty() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
        let ctx = Context::for_tests(crate::status::tests::tests_status());
        let cfg = SerialConsoleConfig { serial: Some(slave.to_string_lossy().into_owned()), baud: 115_200 };
        assert!(cfg.validate().is_ok());
        let _t = spawn(&cfg, ctx, 256).unwrap();
        let mut m = std::fs::File::from(pty.master);
        assert!(read_until_prompt(&mut m).contains("gatewayd console (serial)"));
        m.write_all(b"show routes\r\n").unwrap();
        let a = read_until_prompt(&mut m);
        assert!(a.contains("group phones: FXS [1, 2, 3, 4]"), "{a}");
        // Line noise longer than the limit is dropped, the session goes on.
        m.write_all(&[b'x'; 600]).unwrap();
        m.write_all(b"\n").unwrap();
        assert!(read_until_prompt(&mut m).contains("line too long"));
        m.write_all(b"config set sip.register_expires 120\n").unwrap();
        assert!(read_until_prompt(&mut m).starts_with("ok"));
        m.write_all(b"quit\n").unwrap();
        assert!(read_until_prompt(&mut m).contains("gatewayd console (serial)"));
        m.write_all(b"config diff\n").unwrap();
        assert_eq!(read_until_prompt(&mut m), "no changes\n> ", "quit started a fresh session");
        drop(pty.slave);
    }

    #[test]
    fn config_validation() {
        assert!(SerialConsoleConfig { serial: Some("ttyS0".into()), baud: 115_200 }.validate().is_err());
        assert!(SerialConsoleConfig { serial: None, baud: 10 }.validate().is_err());
        assert!(SerialConsoleConfig::default().validate().is_ok());
    }
}
