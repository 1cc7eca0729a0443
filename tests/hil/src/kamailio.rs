//! Kamailio as the carrier: registrar + authenticating proxy on 127.0.0.1.
//!
//! The routing logic is `tests/hil/peers/kamailio.cfg`; this file only starts
//! it with the test's port and password and waits until it answers.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::process::{find_program, PeerProcess};

/// How long Kamailio gets to answer its first OPTIONS.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running Kamailio. Dropping it stops it (and its worker processes).
pub struct Kamailio {
    process: PeerProcess,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// The configuration file it runs.
    pub fn config_path() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/kamailio.cfg"))
    }

    /// Starts Kamailio listening on UDP 127.0.0.1:`port`, accepting every
    /// user with `password`, and returns once it answers SIP OPTIONS.
    ///
    /// The password must be printable ASCII without `"` or `\` (it is passed
    /// as a config-preprocessor string define).
    pub fn start(port: u16, password: &str) -> io::Result<Kamailio> {
        Self::start_with_max_expires(port, password, 3600)
    }

    /// Like [`Kamailio::start`], granting registrations at most
    /// `max_expires` seconds (the registrar's `max_expires`, at least 10).
    pub fn start_with_max_expires(port: u16, password: &str, max_expires: u32) -> io::Result<Kamailio> {
        if max_expires < 10 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "max_expires below the registrar's min_expires (10)"));
        }
        if password.is_empty() || !password.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "kamailio password must be non-empty printable ASCII without '\"' or '\\'",
            ));
        }
        // A taken port must fail here: the start-up probe below would get
        // its 200 from whoever holds the port.
        drop(UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).map_err(|e| {
            io::Error::new(e.kind(), format!("kamailio: UDP 127.0.0.1:{port} is not free: {e}"))
        })?);
        let dir = tempfile::Builder::new().prefix("hil-kamailio-").tempdir()?;
        let rundir = dir.path();
        let mut cmd = Command::new(find_program("kamailio")?);
        cmd.arg("-f")
            .arg(Self::config_path())
            .args(["-DD", "-E", "-n", "2", "-m", "32", "-M", "8"])
            .arg("-l")
            .arg(format!("udp:127.0.0.1:{port}"))
            .arg("-Y")
            .arg(rundir)
            .arg("-P")
            .arg(rundir.join("kamailio.pid"))
            .arg("-w")
            .arg(rundir)
            .arg("-A")
            .arg(format!("HIL_PASSWORD=\"{password}\""))
            .arg("-A")
            .arg(format!("HIL_MAX_EXPIRES={max_expires}"))
            .current_dir(rundir);
        let mut process = PeerProcess::spawn("kamailio", cmd)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

        let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        probe.set_read_timeout(Some(Duration::from_millis(200)))?;
        let end = Instant::now() + START_TIMEOUT;
        let mut seq = 0u32;
        loop {
            if let Some(status) = process.exited() {
                return Err(process.error(io::ErrorKind::Other, &format!("exited at start-up ({status})")));
            }
            if Instant::now() >= end {
                return Err(process.error(io::ErrorKind::TimedOut, "no answer to OPTIONS at start-up"));
            }
            seq += 1;
            if options_ping(&probe, addr, seq).unwrap_or(false) {
                return Ok(Kamailio { process, addr, _dir: dir });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where it listens (UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log (stderr) so far: one `REQ`/`REPLY`/`REGISTERED`/`LOOKUP`/`AUTH`
    /// line per event from the script, plus Kamailio's own messages.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Sends one OPTIONS without a user part (answered 200 by the script) and
/// reports whether a 200 came back before the socket's read timeout.
fn options_ping(sock: &UdpSocket, to: SocketAddr, seq: u32) -> io::Result<bool> {
    let local = sock.local_addr()?;
    let msg = format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-hil-probe-{seq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=hil{seq}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: hil-probe-{seq}@{local}\r\n\
         CSeq: {seq} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), to)?;
    let mut buf = [0u8; 4096];
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.starts_with("SIP/2.0 200") && text.contains(&format!("hil-probe-{seq}@")) {
                    return Ok(true);
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(false),
            // ICMP port unreachable before Kamailio binds.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}
