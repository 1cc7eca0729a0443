//! SIPp (Debian `sip-tester`) running the scenarios in `tests/hil/peers/sipp/`.
//!
//! Each run gets its own working directory (SIPp writes its logs there, and
//! `rtp_stream` reads `audio.ul` from there: SIPp does not expand `-key`
//! keywords inside `<exec>` attributes). Every message sent and received is
//! traced to `messages.log`, which tests inspect.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::process::{find_program, PeerProcess};

/// The path of a scenario shipped in `tests/hil/peers/sipp/`.
pub fn sipp_scenario(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/sipp")).join(name)
}

/// What a finished SIPp run left behind.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    /// SIPp's exit status: 0 when every call passed the scenario, 1 when one
    /// failed; `None` when it had to be killed at the timeout.
    pub status: Option<ExitStatus>,
    /// The `-trace_msg` log: every SIP message sent and received.
    pub messages: String,
    /// stdout/stderr and the `-trace_err` log.
    pub log: String,
}

impl SippOutcome {
    /// Exit 0: the scenario ran to its end.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The status codes of every response SIPp received, in order
    /// (retransmissions included).
    pub fn received_statuses(&self) -> Vec<u16> {
        let mut out = Vec::new();
        let mut received = false;
        for line in self.messages.lines() {
            if line.contains("message received") {
                received = true;
            } else if line.contains("message sent") {
                received = false;
            } else if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
                if received {
                    if let Some(code) = rest.get(..3).and_then(|c| c.parse().ok()) {
                        out.push(code);
                    }
                }
            }
        }
        out
    }
}

/// A SIPp process; dropping it stops it.
pub struct Sipp {
    process: PeerProcess,
    dir: tempfile::TempDir,
}

impl Sipp {
    /// Starts `sipp -sf <scenario> <args> -trace_msg -trace_err -nostdin`
    /// in a fresh working directory into which `files` are first copied
    /// (`(name in the directory, source)`).
    pub fn spawn(scenario: &Path, args: &[&str], files: &[(&str, &Path)]) -> io::Result<Sipp> {
        let dir = tempfile::Builder::new().prefix("hil-sipp-").tempdir()?;
        for (name, from) in files {
            fs::copy(from, dir.path().join(name))?;
        }
        let mut cmd = Command::new(find_program("sipp")?);
        cmd.arg("-sf")
            .arg(scenario)
            .args(args)
            .args(["-trace_msg", "-message_file"])
            .arg(dir.path().join("messages.log"))
            .args(["-trace_err", "-error_file"])
            .arg(dir.path().join("errors.log"))
            .arg("-nostdin")
            .current_dir(dir.path());
        let process = PeerProcess::spawn("sipp", cmd)?;
        Ok(Sipp { process, dir })
    }

    /// The message trace so far.
    pub fn messages(&self) -> String {
        fs::read_to_string(self.dir.path().join("messages.log")).unwrap_or_default()
    }

    /// Waits up to `timeout` for SIPp to finish (killing it if it does not)
    /// and returns what it did.
    pub fn wait(mut self, timeout: Duration) -> SippOutcome {
        let status = self.process.wait_exit(timeout);
        if status.is_none() {
            self.process.stop();
        }
        let errors = fs::read_to_string(self.dir.path().join("errors.log")).unwrap_or_default();
        SippOutcome {
            status,
            messages: self.messages(),
            log: format!("{}\n--- sipp errors ---\n{errors}", self.process.log()),
        }
    }
}

/// Registers `user` with `password` at `kamailio` using `register.xml`,
/// sending from UDP 127.0.0.1:`local_port` and binding `contact_port`
/// (another process may own it, e.g. a SIPp UAS). Returns when SIPp is done.
pub fn sipp_register(
    kamailio: SocketAddr,
    user: &str,
    password: &str,
    local_port: u16,
    contact_port: u16,
) -> io::Result<SippOutcome> {
    let local = local_port.to_string();
    let contact = contact_port.to_string();
    let target = kamailio.to_string();
    let sipp = Sipp::spawn(
        &sipp_scenario("register.xml"),
        &[
            "-m", "1", "-i", "127.0.0.1", "-p", &local, "-s", user, "-au", user, "-ap", password, "-key",
            "contact_port", &contact, "-timeout", "10s", "-timeout_error", &target,
        ],
        &[],
    )?;
    Ok(sipp.wait(Duration::from_secs(15)))
}
