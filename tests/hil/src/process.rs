//! A peer program run as a child process that cannot outlive its owner.
//!
//! Every peer is started in its own process group, so that stopping it also
//! stops whatever it forked (Kamailio forks one process per worker). Its
//! stdout and stderr are collected into one log string by two reader threads,
//! for assertions and for the failure message of a test.
//!
//! Stopping: SIGTERM to the group, up to [`STOP_GRACE`] for the leader to exit,
//! then SIGKILL to the group. This runs from `Drop`, so a panicking test (which
//! unwinds) still cleans up.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long a peer gets to exit after SIGTERM before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(3);

/// Logs beyond this size keep only their tail (a chatty peer in a long test).
const LOG_CAP: usize = 8 << 20;

pub(crate) struct PeerProcess {
    name: String,
    child: Child,
    exit: Option<ExitStatus>,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl PeerProcess {
    /// Spawns `cmd` with stdin closed, stdout+stderr captured, in a new
    /// process group.
    pub(crate) fn spawn(name: &str, mut cmd: Command) -> io::Result<PeerProcess> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {name} ({:?}): {e}", cmd.get_program()))
        })?;
        let log = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, Arc::clone(&log)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, Arc::clone(&log)));
        }
        Ok(PeerProcess { name: name.to_owned(), child, exit: None, log, readers })
    }

    /// Everything the peer printed so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// `Some(status)` once the peer has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for the peer to exit by itself.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                self.join_readers();
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// An error carrying the peer's log, for "it died" and "it timed out".
    pub(crate) fn error(&self, kind: io::ErrorKind, what: &str) -> io::Error {
        io::Error::new(kind, format!("{}: {what}\n--- {} log ---\n{}", self.name, self.name, self.log()))
    }

    /// Stops the whole process group (see the module docs). Idempotent.
    /// SIGKILL to the group at once: the peer vanishes without a word (a crash).
    pub(crate) fn crash(&mut self) {
        signal_group(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
    }

    pub(crate) fn stop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        if self.exited().is_none() {
            signal_group(group, Signal::SIGTERM);
            let end = Instant::now() + STOP_GRACE;
            while self.exited().is_none() && Instant::now() < end {
                thread::sleep(Duration::from_millis(10));
            }
        }
        // Whatever is left of the group (the leader's workers, or the leader
        // itself when it ignored SIGTERM).
        signal_group(group, Signal::SIGKILL);
        if self.exit.is_none() {
            if let Ok(status) = self.child.wait() {
                self.exit = Some(status);
            }
        }
        self.join_readers();
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(group: Pid, signal: Signal) {
    match killpg(group, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => eprintln!("hil: killpg({group}, {signal}) failed: {e}"),
    }
}

fn collect(mut from: impl Read + Send + 'static, log: Arc<Mutex<String>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&text);
                        if log.len() > LOG_CAP {
                            let mut cut = log.len() - LOG_CAP / 2;
                            while !log.is_char_boundary(cut) {
                                cut += 1;
                            }
                            log.replace_range(..cut, "[... log truncated ...]\n");
                        }
                    }
                }
            }
        }
    })
}

/// Finds an executable by name on `PATH`, then in the sbin directories that a
/// normal user's `PATH` often lacks (Debian installs kamailio in /usr/sbin).
pub(crate) fn find_program(name: &str) -> io::Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"].map(Into::into));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{name} not found on PATH or in /usr/sbin: run tools/test once to install the peers"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_kills_the_whole_group_including_forked_children() {
        // The shell forks a sleeping grandchild and ignores SIGTERM itself,
        // like a daemon that leaves workers behind.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("trap '' TERM; sleep 30 & echo child=$!; wait");
        let mut p = PeerProcess::spawn("sh", cmd).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        let child_pid = loop {
            let log = p.log();
            if let Some(rest) = log.strip_prefix("child=") {
                break rest.trim().parse::<i32>().unwrap();
            }
            assert!(Instant::now() < end, "no child pid in {log:?}");
            thread::sleep(Duration::from_millis(10));
        };
        p.stop();
        assert!(p.exited().is_some());
        // The grandchild is gone (or a zombie of init): signal 0 fails.
        let end = Instant::now() + Duration::from_secs(2);
        while nix::sys::signal::kill(Pid::from_raw(child_pid), None).is_ok() {
            let state = std::fs::read_to_string(format!("/proc/{child_pid}/stat")).unwrap_or_default();
            if state.contains(") Z ") {
                break;
            }
            assert!(Instant::now() < end, "grandchild {child_pid} survived stop()");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn log_collects_stdout_and_stderr() {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("echo out; echo err >&2");
        let mut p = PeerProcess::spawn("sh", cmd).unwrap();
        assert!(p.wait_exit(Duration::from_secs(5)).unwrap().success());
        let log = p.log();
        assert!(log.contains("out\n") && log.contains("err\n"), "{log:?}");
    }

    #[test]
    fn missing_program_is_not_found() {
        let e = find_program("hil-no-such-program").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
