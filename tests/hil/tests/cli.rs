//! The CLI driven as a person would, through a pseudo-terminal: gatewayd
//! serves its serial console on the PTY's slave side (`[console] serial`),
//! the test types on the master side. Log in (the initial password is
//! changed first), `?`, TAB completion, `show ports`, change a port's number
//! and `commit` while a call is up on two other ports (their audio measured
//! across the commit), call the new number, `rollback`.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{Gatewayd, GwOptions};
use hil::free_udp_port;
use linesim::{plans, Phone};

struct Terminal {
    master: std::fs::File,
}

impl Terminal {
    /// Types `text` (bytes as the keys send them).
    fn typ(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Reads until the screen shows `pat`; returns what came.
    fn until(&mut self, pat: &str) -> String {
        let mut got = Vec::new();
        let mut b = [0u8; 512];
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&got).contains(pat) {
            assert!(Instant::now() < deadline, "no {pat:?} on the terminal; got {:?}", String::from_utf8_lossy(&got));
            match self.master.read(&mut b) {
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("terminal: {e}"),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Types a command line and returns its answer (up to the next prompt).
    fn run(&mut self, line: &str, prompt: &str) -> String {
        self.typ(&format!("{line}\r"));
        let out = self.until(&format!("\r\n{prompt}"));
        out.strip_prefix(&format!("{line}\r\n")).unwrap_or(&out).to_string()
    }
}

fn wait_state(gw: &Gatewayd, port: usize, state: &str) {
    gw.wait_until(&format!("port {port} in state {state}"), Duration::from_secs(10), || gw.port_state(port) == state);
}

fn rings(phone: &Phone, secs: u64) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if phone.is_ringing() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn an_installer_logs_in_gets_help_completes_commits_during_a_call_and_rolls_back() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
    let master = std::fs::File::from(pty.master);
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
    let mut term = Terminal { master };
    let nobody = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let extra = format!("\n[console]\nserial = \"{}\"\n", slave.display());
    let gw = Gatewayd::start(nobody, GwOptions { register_expires: 0, extra, ..GwOptions::default() });
    let pid = gw.pid();
    let initial = gw
        .log()
        .lines()
        .find_map(|l| l.split_once("INITIAL PASSWORD for user 'admin'").map(|(_, r)| r.rsplit(' ').next().unwrap().to_string()))
        .expect("gatewayd shows the initial password once");

    // Log in: the initial password must be changed first; nothing secret echoed.
    term.typ("\r");
    term.until("User: ");
    term.typ("admin\r");
    term.until("Password: ");
    term.typ(&format!("{initial}\r"));
    let out = term.until("New password: ");
    assert!(!out.contains(&initial), "{out}");
    term.typ("site-7-installer\r");
    term.until("again: ");
    term.typ("site-7-installer\r");
    let out = term.until("> ");
    assert!(out.contains("Password changed. Welcome, admin (admin)"), "{out}");

    // '?' lists what may follow, a line each; the typed words stay.
    term.typ("show ?");
    let out = term.until("\r> show ");
    assert!(out.contains("ports ") && out.contains("the FXS ports") && out.contains("versions "), "{out}");
    // TAB completes the word; Enter runs it: an aligned table.
    term.typ("po\t");
    term.until("show ports ");
    term.typ("\r");
    let out = term.until("\r\n> ");
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).filter(|l| l.starts_with("PORT") || l.starts_with("FXS")).collect();
    assert!(lines[0].starts_with("PORT   NUMBER  HOOK") && lines.len() == 5, "{out}");
    assert!(lines[4].starts_with("FXS 4  1004"), "{out}");

    // A call between ports 1 and 2.
    let sim = gw.attach();
    let (p1, p2, p3, p4) = (sim.phone(0), sim.phone(1), sim.phone(2), sim.phone(3));
    p1.off_hook();
    p1.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p1.dial("1002").unwrap();
    assert!(rings(&p2, 10), "port 2 rings");
    p2.off_hook();
    wait_state(&gw, 1, "Connected");

    // Port 4's number changed and committed while port 1's tone plays;
    // port 2 measures it across the commit.
    let out = term.run("configure", "(config)> ");
    assert!(out.contains("configuration mode"), "{out}");
    term.typ("set fxs[3].num\t");
    term.until("set fxs[3].number ");
    let out = term.run("1444", "(config)> ");
    assert!(out.contains("ok"), "{out}");
    p1.play_tone(1004.0, -10.0);
    std::thread::sleep(Duration::from_millis(200));
    let measuring = std::thread::spawn({
        let p2 = p2.clone();
        move || p2.measure(Duration::from_millis(2000))
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = term.run("commit", "> ");
    assert!(out.contains("saved") && out.contains("applied without a restart (FXS 4"), "{out}");
    let m = measuring.join().unwrap().unwrap();
    p1.stop_playback();
    assert!((m.freq_hz - 1004.0).abs() <= 10.0 && (m.level_dbm0 + 10.0).abs() <= 1.5, "across the commit: {m:?}");
    assert_eq!(gw.pid(), pid, "no restart");
    assert_eq!(gw.port_state(1), "Connected");
    let config = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(config.contains("number = \"1444\""), "{config}");

    // The new number rings port 4.
    p3.off_hook();
    p3.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p3.dial("1444").unwrap();
    assert!(rings(&p4, 5), "1444 rings port 4");
    p3.on_hook();
    p4.wait_ring_stop(Duration::from_secs(8)).expect("ringing stops");
    wait_state(&gw, 3, "Idle");

    // The versions, then a rollback (up-arrow history on the way).
    let out = term.run("show versions", "> ");
    assert!(out.contains("KEPT AT (UTC)") && out.contains("\n1  "), "{out}");
    let out = term.run("config rollback 1", "> ");
    assert!(out.contains("restored the previous configuration") && out.contains("applied without a restart"), "{out}");
    term.typ("\x1b[A\x1b[A\x1b[A");
    term.until("show versions");
    term.typ("\x15");
    p3.off_hook();
    p3.wait_for_tone(&plans::US_DIAL, Duration::from_secs(3)).expect("dial tone");
    p3.dial("1004").unwrap();
    assert!(rings(&p4, 5), "1004 rings port 4 after the rollback");
    p3.on_hook();
    assert_eq!(gw.pid(), pid);
    p2.on_hook();
    p1.on_hook();
    drop(pty.slave);
}
