//! The ARM64 appliance image booted in QEMU: the static aarch64 gatewayd on
//! Debian's arm64 kernel (`image/build`), started by `image/run` on
//! `qemu-system-aarch64 -M virt` with user networking. The host reaches the
//! guest only through QEMU's port forwards on 127.0.0.1; the guest reaches
//! the host's 127.0.0.1 as 10.0.2.2.
//!
//! The scenario: boot to a status answer (the boot time is printed), the rt
//! thread's set-up on the isolated core, registration of the four ports
//! against Kamailio on the host, then a phone (linesim, through the forwarded
//! sim link) goes off-hook, hears US dial tone, dials a digit and the dial
//! tone stops. Also the console through its TCP forward and through the
//! second serial port.
//!
//! Safe upgrade and supervision (issue 11): the configuration survives a
//! reboot on the data disk; a killed gatewayd is restarted and re-registers;
//! a stopped one (SIGSTOP) starves the i6300esb watchdog, which resets the
//! guest; a signed bundle switches the A/B slot; a bad signature, a
//! truncated bundle and an image that never becomes healthy all end on the
//! old slot; `gwctl upgrade` over the TCP console and over the serial port.
//!
//! Every test boots its own copy of the factory data disk (`disk.img`).
//!
//! Needs the image: `image/build` (tools/test runs it before the hil step).
//! Without it this test fails, saying so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hil::{free_tcp_port, free_udp_port, Kamailio};
use linesim::{plans, Linesim};

/// Power-on to a status answer measured at about 2 s here; software
/// emulation on a loaded 2-core machine can take much longer.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// gatewayd's first-start banner line before the per-device password.
const INITIAL_PASSWORD: &str = "INITIAL PASSWORD for user 'admin' (shown once, to be changed at first login): ";

/// The console password the test sets at the first login, as an installer
/// does (the image has no default password).
const ADMIN_PASSWORD: &str = "hil-qemu-installer-pw";

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The cargo target directory whose `image/` holds the image: the one this
/// test binary was built in (`<target>/<profile>/deps/qemu-*`), else
/// `$CARGO_TARGET_DIR`, else the workspace's `target/`. The first one with
/// an image wins; `None` when there is none.
fn image_target_dir() -> (Option<PathBuf>, Vec<PathBuf>) {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // <target>/<profile>/deps/<exe> or <target>/<triple>/<profile>/deps/<exe>
        let mut dir = exe.parent().map(Path::to_path_buf);
        for _ in 0..3 {
            dir = dir.and_then(|d| d.parent().map(Path::to_path_buf));
            if let Some(d) = &dir {
                candidates.push(d.clone());
            }
        }
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(d));
    }
    candidates.push(workspace().join("target"));
    let found = candidates.iter().find(|d| {
        ["vmlinuz", "initramfs.cpio.gz", "cmdline", "gatewayd.toml"].iter().all(|f| d.join("image").join(f).is_file())
    });
    (found.cloned(), candidates)
}

/// The SIP password of the guest configuration that image/build embedded.
fn guest_password(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("password"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next()
        .unwrap_or_else(|| panic!("no sip password in {}", config.display()))
}

/// QEMU running the image (image/run execs it); killed on drop.
struct Qemu {
    child: Child,
    stdin: std::process::ChildStdin,
    _disk: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    http: SocketAddr,
    sim: SocketAddr,
    console: SocketAddr,
    serial: SocketAddr,
    started: Instant,
}

impl Qemu {
    fn boot(target: &Path, proxy_port: u16) -> Qemu {
        Self::boot_with(target, proxy_port, 60)
    }

    /// Boots with a fresh copy of the factory data disk; `trial_s`: the
    /// deadline for a new slot to mark itself good.
    fn boot_with(target: &Path, proxy_port: u16, trial_s: u32) -> Qemu {
        let disk_dir = tempfile::tempdir().unwrap();
        let disk = disk_dir.path().join("data.img");
        let http: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
        let sim: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
        let console: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
        let serial: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
        let sip = free_udp_port();
        let started = Instant::now();
        let mut child = Command::new("bash")
            .arg(workspace().join("image/run"))
            .env("CARGO_TARGET_DIR", target)
            .env("GW_PROXY_PORT", proxy_port.to_string())
            .env("GW_SIP_PORT", sip.to_string())
            .env("GW_HTTP_PORT", http.port().to_string())
            .env("GW_SIM_PORT", sim.port().to_string())
            .env("GW_CONSOLE_PORT", console.port().to_string())
            .env("GW_SERIAL_PORT", serial.port().to_string())
            .env("GW_DISK", &disk)
            .env("GW_TRIAL_S", trial_s.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("image/run starts (needs bash and qemu-system-aarch64)");
        let stdin = child.stdin.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for out in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&String::from_utf8_lossy(&line));
                    l.push('\n');
                }
            });
        }
        Qemu { child, stdin, _disk: disk_dir, log, http, sim, console, serial, started }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A command for the busybox shell on the kernel console (ttyAMA0).
    fn shell(&mut self, command: &str) {
        self.stdin.write_all(format!("{command}\n").as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// The status's `supervision` object (Null while the API is down).
    fn supervision(&self) -> serde_json::Value {
        self.status().map(|s| s["supervision"].clone()).unwrap_or(serde_json::Value::Null)
    }

    /// Waits for the next boot (the first stage's line once more) and for
    /// the status API after it.
    fn wait_reboot(&mut self, boots_before: usize, what: &str, timeout: Duration) -> Duration {
        let t = Instant::now();
        self.wait_until(what, timeout, |q| q.count("init: boot slot") > boots_before);
        self.wait_until("the status API after the reboot", BOOT_TIMEOUT, |q| q.status().is_some());
        t.elapsed()
    }

    fn wait_registered(&mut self, timeout: Duration) {
        self.wait_until("registration of 1001..1004", timeout, |q| {
            let Some(st) = q.status() else { return false };
            let regs = st["registrations"].as_array().cloned().unwrap_or_default();
            regs.len() == 4 && regs.iter().all(|r| r["state"].as_str().is_some_and(|s| s.starts_with("registered")))
        });
    }

    /// GET /api/status through the forward, parsed.
    fn status(&self) -> Option<serde_json::Value> {
        let mut s = TcpStream::connect_timeout(&self.http, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(s, "GET /api/status HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http).ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        let json = body.split_once("\r\n\r\n")?.1;
        serde_json::from_str(json).ok()
    }

    fn wait_until(&mut self, what: &str, timeout: Duration, mut f: impl FnMut(&Qemu) -> bool) {
        let end = Instant::now() + timeout;
        while !f(self) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("QEMU exited ({st}) while waiting for {what}");
            }
            assert!(Instant::now() < end, "timed out ({timeout:?}) waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Logs in once as an installer would: the per-device initial password
    /// from gatewayd's first-start banner (in the guest's log), then the
    /// forced change to [`ADMIN_PASSWORD`] over the TCP console. Every later
    /// console use logs in with that (gwctl through `GWCTL_PASSWORD`). The
    /// accounts live on the data disk: once per test (per fresh disk).
    fn first_login(&mut self) {
        self.wait_until("the initial password in gatewayd's banner", BOOT_TIMEOUT, |q| q.log().contains(INITIAL_PASSWORD));
        let log = self.log();
        let initial = log
            .lines()
            .find_map(|l| l.split_once(INITIAL_PASSWORD).map(|(_, pw)| pw.trim().to_string()))
            .filter(|pw| !pw.is_empty())
            .unwrap_or_else(|| panic!("no initial password after {INITIAL_PASSWORD:?}"));
        // No command before the login: the console asks for a user first.
        let text = Qemu::converse(self.console, &[], None, "User: ").unwrap_or_else(|e| panic!("console over TCP: {e}"));
        assert!(text.contains("Log in with a web UI account."), "{text}");
        let answers =
            [("User: ", "admin"), ("Password: ", initial.as_str()), ("New password: ", ADMIN_PASSWORD), ("New password again: ", ADMIN_PASSWORD)];
        let text = Qemu::converse(self.console, &answers, None, "Password changed. Welcome, admin (admin).")
            .unwrap_or_else(|e| panic!("first login over TCP: {e}"));
        assert!(text.contains("The initial password must be changed first."), "{text}");
        std::env::set_var("GWCTL_USER", "admin");
        std::env::set_var("GWCTL_PASSWORD", ADMIN_PASSWORD);
    }

    /// One console command over a TCP stream to the console (directly or
    /// through the serial bridge), logged in with [`ADMIN_PASSWORD`] when
    /// asked; returns the text up to the next prompt.
    fn console_command(addr: SocketAddr, command: &str, expect: &str) -> Result<String, String> {
        Qemu::converse(addr, &[("User: ", "admin"), ("Password: ", ADMIN_PASSWORD)], Some(command), expect)
    }

    /// A console conversation: each login question (`answers`: how the
    /// question ends, the line to answer) is answered once, a second time
    /// is an error (a refused password is not sent again: failures are rate
    /// limited); at the command prompt `command` is sent. Returns all the
    /// text once it holds `expect` (after the command, when there is one).
    fn converse(addr: SocketAddr, answers: &[(&str, &str)], command: Option<&str>, expect: &str) -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_millis(500))).map_err(|e| e.to_string())?;
        let end = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut answered = vec![false; answers.len()];
        // got.len() when we last wrote: only new text is a new question.
        let mut mark = 0;
        // Where the command's answer starts, and when it was sent.
        let mut sent: Option<(usize, Instant)> = None;
        // A serial console wrote its first question long ago (and a serial
        // line drops what is written before its far end reads): an empty
        // line, while nothing came, asks for the question again.
        let mut poke = Instant::now() + Duration::from_secs(1);
        while Instant::now() < end {
            match s.read(&mut buf) {
                Ok(0) => return Err(format!("closed; got {:?}", String::from_utf8_lossy(&got))),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.to_string()),
            }
            // Bytes, not text: a read may end inside a UTF-8 sequence.
            let has = |from: usize, needle: &str| got[from.min(got.len())..].windows(needle.len()).any(|w| w == needle.as_bytes());
            let text = || String::from_utf8_lossy(&got).into_owned();
            let from = match (command, sent) {
                (Some(_), Some((at, _))) => Some(at),
                (Some(_), None) => None,
                (None, _) => Some(0),
            };
            if from.is_some_and(|at| has(at, expect)) {
                return Ok(text());
            }
            if has(mark, "login failed") {
                return Err(format!("login refused: {:?}", text()));
            }
            let write = |s: &mut TcpStream, line: &str| s.write_all(format!("{line}\n").as_bytes()).map_err(|e| e.to_string());
            if got.len() > mark {
                if let Some(i) = answers.iter().position(|(q, _)| got.ends_with(q.as_bytes())) {
                    if answered[i] {
                        return Err(format!("asked {:?} again (refused?): {:?}", answers[i].0, text()));
                    }
                    answered[i] = true;
                    write(&mut s, answers[i].1)?;
                    mark = got.len();
                    continue;
                }
            }
            if let (Some(c), true) = (command, got.ends_with(b"> ")) {
                // Again after a while without the answer: the first may have
                // been lost on the serial line, or the state not there yet.
                if sent.is_none_or(|(_, t)| t.elapsed() > Duration::from_secs(3)) {
                    write(&mut s, c)?;
                    mark = got.len();
                    sent = Some((got.len(), Instant::now()));
                    continue;
                }
            }
            if got.is_empty() && Instant::now() >= poke {
                write(&mut s, "")?;
                poke = Instant::now() + Duration::from_secs(5);
            }
        }
        Err(format!("no {expect:?} in {:?}", String::from_utf8_lossy(&got)))
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // image/run execs QEMU, so the child is QEMU itself; its group too.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- QEMU (serial console, gatewayd log) ---\n{}", self.log());
        }
    }
}

#[test]
fn appliance_boots_registers_and_gives_dial_tone() {
    let (target, looked) = image_target_dir();
    let target = target.unwrap_or_else(|| {
        panic!(
            "no QEMU image (vmlinuz, initramfs.cpio.gz, gatewayd.toml under <target>/image/; looked in {looked:?}): \
             run image/build first (with the same CARGO_TARGET_DIR)"
        )
    });
    let image = target.join("image");
    let password = guest_password(&image.join("gatewayd.toml"));
    let kamailio = Kamailio::start(free_udp_port(), &password).expect("kamailio starts");
    let mut qemu = Qemu::boot(&target, kamailio.addr().port());
    let guard = KamailioLogOnPanic(&kamailio);

    // 1. Boot: the status API answers through the forward.
    qemu.wait_until("the status API through hostfwd", BOOT_TIMEOUT, |q| q.status().is_some());
    let boot = qemu.started.elapsed();
    eprintln!("qemu: power-on to /api/status answering: {:.2} s", boot.as_secs_f64());
    let st = qemu.status().expect("status");
    assert_eq!(st["board"], "sim", "{st}");
    assert_eq!(st["sip_listen"], "10.0.2.15:5062", "{st}");
    // The console (0.0.0.0:5023 and the UART) asks for a login: set the
    // admin password from the initial one, as an installer does.
    qemu.first_login();

    // 2. The rt thread: pinned to core 1 (isolcpus=1), SCHED_FIFO, locked.
    //    The status API may answer before the driver's first status update
    //    (rt_setup still its default: no core, nothing degraded).
    qemu.wait_until("the rt set-up in the status", Duration::from_secs(30), |q| {
        q.status().is_some_and(|st| {
            let rt = &st["rt_setup"];
            !rt["core"].is_null() || rt["degraded"].as_array().is_some_and(|d| !d.is_empty())
        })
    });
    let st = qemu.status().expect("status");
    let rt = &st["rt_setup"];
    assert_eq!(rt["core"], 1, "rt_setup: {rt}");
    assert!(rt["sched_fifo_priority"].as_i64().is_some_and(|p| p > 0), "rt_setup: {rt}");
    assert_eq!(rt["memory_locked"], true, "rt_setup: {rt}");
    assert_eq!(rt["degraded"].as_array().map(Vec::len), Some(0), "rt_setup: {rt}");
    let log = qemu.log();
    assert!(log.contains("init: isolated cpus: 1;"), "the kernel did not isolate cpu 1:\n{log}");

    // 3. Registration through QEMU's user network to Kamailio on 127.0.0.1.
    qemu.wait_until("registrations of 1001..1004", Duration::from_secs(30), |q| {
        let Some(st) = q.status() else { return false };
        let regs = st["registrations"].as_array().cloned().unwrap_or_default();
        ["1001", "1002", "1003", "1004"].iter().all(|u| {
            regs.iter().any(|r| r["user"] == *u && r["state"].as_str().is_some_and(|s| s.starts_with("registered")))
        })
    });
    eprintln!("qemu: registered after {:.2} s", qemu.started.elapsed().as_secs_f64());
    assert!(kamailio.log().contains("REGISTER"), "kamailio saw no REGISTER:\n{}", kamailio.log());

    // 4. A phone through the forwarded sim link: dial tone, a digit, silence.
    let sim = Linesim::connect(qemu.sim).expect("linesim attaches through the forwarded sim port");
    let phone = sim.phone(0);
    phone.off_hook();
    let report = phone.wait_for_tone(&plans::US_DIAL, Duration::from_secs(20)).expect("US dial tone");
    eprintln!("qemu: dial tone {report:?}");
    let before = phone.measure(Duration::from_millis(500)).unwrap();
    assert!(before.level_dbm0 > -30.0, "dial tone too weak: {before:?}");
    phone.dial("1").unwrap();
    qemu.wait_until("port 1 collecting digits", Duration::from_secs(10), |q| {
        q.status().is_some_and(|st| st["ports"][0]["state"] == "Collecting")
    });
    let after = phone.measure(Duration::from_millis(500)).unwrap();
    eprintln!("qemu: before the digit {before:?}, after {after:?}");
    assert!(
        after.level_dbm0 < before.level_dbm0 - 30.0 && after.freq_hz == 0.0,
        "the dial tone did not stop after a digit: before {before:?}, after {after:?}"
    );
    phone.on_hook();

    // 5. The console: through its TCP forward and the second serial port.
    let text = Qemu::console_command(qemu.console, "show registrations", "1004 registered")
        .unwrap_or_else(|e| panic!("console over TCP: {e}"));
    assert!(text.contains("1001 registered"), "{text}");
    // The whole rt line (it may arrive in pieces): "RT set-up: ... memory locked)".
    let text = Qemu::console_command(qemu.serial, "show status", "memory locked)")
        .unwrap_or_else(|e| panic!("console over the serial port (ttyS0): {e}"));
    assert!(text.contains("RT set-up: real-time (core Some(1), SCHED_FIFO"), "{text}");

    let rt = &qemu.status().expect("status")["rt"];
    eprintln!("qemu: rt stats at the end (software emulation, not real-time evidence): {rt}");
    drop(guard);
}

/// Prints Kamailio's log when the test panics.
struct KamailioLogOnPanic<'a>(&'a Kamailio);

impl Drop for KamailioLogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- kamailio log ---\n{}", self.0.log());
        }
    }
}

fn image_or_panic() -> PathBuf {
    let (target, looked) = image_target_dir();
    target.unwrap_or_else(|| panic!("no QEMU image (looked in {looked:?}): run image/build first"))
}

/// One console session over TCP (gwctl's protocol); the answers.
fn console(addr: SocketAddr, commands: &[&str]) -> Vec<String> {
    let mut link = gwctl::open_tcp(&addr.to_string(), Duration::from_millis(200)).expect("console connects");
    gwctl::run_session(&mut *link, commands, Duration::from_secs(20)).expect("console answers")
}

#[test]
fn config_survives_reboot_killed_gatewayd_restarts_hung_one_is_reset_by_the_watchdog() {
    let target = image_or_panic();
    let password = guest_password(&target.join("image/gatewayd.toml"));
    let kamailio = Kamailio::start(free_udp_port(), &password).expect("kamailio starts");
    let mut qemu = Qemu::boot(&target, kamailio.addr().port());
    let _guard = KamailioLogOnPanic(&kamailio);
    qemu.wait_until("the status API", BOOT_TIMEOUT, |q| q.status().is_some());
    qemu.wait_registered(Duration::from_secs(30));
    let v = qemu.supervision();
    assert_eq!(v["slot"], "A", "{v}");
    assert_eq!(v["restarts"], 0, "{v}");
    assert!(v["watchdog"].as_str().is_some_and(|w| w.starts_with("/dev/watchdog armed")), "{v}");
    qemu.first_login();

    // 1. A configuration change through the console, saved on the data disk.
    let a = console(qemu.console, &["config set sip.user_agent Persisted Box 7", "config commit"]);
    assert!(a[1].starts_with("saved /data/etc/gatewayd.toml"), "{a:?}");
    qemu.wait_until("gatewayd back after the commit", Duration::from_secs(30), |q| {
        Qemu::console_command(q.console, "show config", "Persisted Box 7").is_ok()
    });

    // 2. SIGKILL: the init loop restarts gatewayd; the status says so; it registers again.
    let regs_before = kamailio.log().matches("REGISTER").count();
    qemu.shell("kill -9 $(pidof gatewayd)");
    qemu.wait_until("restart counted after SIGKILL", Duration::from_secs(30), |q| q.supervision()["restarts"] == 1);
    let v = qemu.supervision();
    assert_eq!(v["last_exit"], "killed by signal 9 (KILL)", "{v}");
    qemu.wait_registered(Duration::from_secs(30));
    assert!(kamailio.log().matches("REGISTER").count() > regs_before, "no new REGISTER after the restart");
    let text = Qemu::console_command(qemu.console, "show status", "Supervision:").unwrap();
    assert!(text.contains("Supervision: restarts 1 (last: killed by signal 9 (KILL))"), "{text}");

    // 3. A reboot: the configuration and the log are still there.
    let boots = qemu.count("init: boot slot");
    qemu.shell("sync; reboot -f");
    qemu.wait_reboot(boots, "the reboot", Duration::from_secs(60));
    qemu.wait_until("the saved configuration after the reboot", Duration::from_secs(30), |q| {
        Qemu::console_command(q.console, "show config", "Persisted Box 7").is_ok()
    });
    assert_eq!(qemu.supervision()["restarts"], 0, "a new boot starts counting again");
    assert_eq!(qemu.count(INITIAL_PASSWORD), 1, "a new initial password after the reboot: the accounts were lost");
    qemu.shell("echo LOG$(grep -c 'configuration committed from the console' /data/log/gatewayd.log)LINES");
    qemu.wait_until("the log from before the reboot", Duration::from_secs(10), |q| q.log().contains("LOG1LINES"));

    // 4. SIGSTOP: nothing feeds the watchdog; the i6300esb resets the guest.
    qemu.wait_registered(Duration::from_secs(30));
    let boots = qemu.count("init: boot slot");
    let t = Instant::now();
    qemu.shell("kill -STOP $(pidof gatewayd)");
    let took = qemu.wait_reboot(boots, "the watchdog reset after SIGSTOP", Duration::from_secs(90));
    eprintln!("qemu: SIGSTOP to a working gatewayd again: {:.1} s ({:.1} s to the status API)", t.elapsed().as_secs_f64(), took.as_secs_f64());
    qemu.wait_registered(Duration::from_secs(30));
}

/// A bundle signed with the image's update key (`image/build` made it).
fn signed_bundle(target: &Path, version: &str, image: &[u8]) -> Vec<u8> {
    let key = std::fs::read_to_string(target.join("image/keys/update.key")).expect("image/keys/update.key");
    let key = gw_bundle::parse_signing_key(&key).expect("update key");
    gw_bundle::create(&gw_bundle::Manifest { compatible: "gatewayd-qemu-aarch64".into(), version: version.into() }, image, &key)
}

/// `gwctl upgrade` through a console: the TCP one, or the UART's TCP end
/// (fewer chunks in flight, as gwctl does on a serial port).
fn upgrade_over(addr: SocketAddr, bundle: &[u8], window: usize) -> String {
    let mut link = gwctl::open_tcp(&addr.to_string(), Duration::from_millis(200)).expect("console connects");
    gwctl::upgrade(&mut *link, bundle, gwctl::UPGRADE_CHUNK, window, Duration::from_secs(60), |_, _| {}).expect("upgrade answers")
}

#[test]
fn upgrades_switch_slots_and_bad_ones_end_on_the_old_slot() {
    let target = image_or_panic();
    let password = guest_password(&target.join("image/gatewayd.toml"));
    let gatewayd = std::fs::read(target.join("aarch64-unknown-linux-musl/release/gatewayd")).expect("the aarch64 gatewayd");
    let kamailio = Kamailio::start(free_udp_port(), &password).expect("kamailio starts");
    let mut qemu = Qemu::boot_with(&target, kamailio.addr().port(), 25);
    let _guard = KamailioLogOnPanic(&kamailio);
    qemu.wait_until("slot A marked good", BOOT_TIMEOUT, |q| q.supervision()["marked_good"] == true);
    assert_eq!(qemu.supervision()["slot"], "A");
    qemu.first_login();
    // The one line of the boot state ("booted A; order A B: ...").
    let state = |q: &Qemu| {
        let t = Qemu::console_command(q.console, "upgrade status", "attempts)\n").unwrap();
        t.lines().map(|l| l.trim_start_matches("> ")).find(|l| l.starts_with("booted")).unwrap_or_else(|| panic!("{t}")).to_string()
    };
    let before = state(&qemu);
    assert!(before.contains("B empty"), "{before}");

    // 1. Refused, nothing changed: a wrong key (over the serial port), a
    //    flipped bit, a truncated transfer (over the TCP console). Small
    //    bundles: the checks are the same at any size, the transfer is not.
    let other = gw_bundle::signing_key_from_seed([0x5a; 32]);
    let foreign = gw_bundle::create(
        &gw_bundle::Manifest { compatible: "gatewayd-qemu-aarch64".into(), version: "evil".into() },
        b"#!/bin/sh\necho not ours\n",
        &other,
    );
    let v = upgrade_over(qemu.serial, &foreign, 2);
    assert!(v.starts_with("error: upgrade refused, nothing changed: signature does not verify"), "{v}");
    let small = signed_bundle(&target, "0.1.0+small", &gatewayd[..200_000]);
    let mut flipped = small.clone();
    flipped[small.len() / 2] ^= 0x01;
    let v = upgrade_over(qemu.console, &flipped, 8);
    assert!(v.contains("signature does not verify"), "{v}");
    let v = upgrade_over(qemu.console, &small[..small.len() / 3], 8);
    assert!(v.starts_with("error: upgrade refused, nothing changed: truncated bundle"), "{v}");
    assert_eq!(state(&qemu), before, "refused bundles changed the boot state");
    let text = Qemu::console_command(qemu.console, "show status", "Upgrade:").unwrap();
    assert!(text.contains("Upgrade: error: upgrade refused"), "{text}");

    // 2. A good bundle: slot B, reboot, trial, marked good.
    let boots = qemu.count("init: boot slot");
    let t = Instant::now();
    let good = signed_bundle(&target, "0.1.0+ab", &gatewayd);
    let v = upgrade_over(qemu.console, &good, 8);
    let sent = t.elapsed();
    assert!(v.contains("written to slot B") && v.contains("upgrade: done; rebooting into slot B on trial"), "{v}");
    qemu.wait_reboot(boots, "the reboot into slot B", Duration::from_secs(60));
    assert!(qemu.log().contains("init: boot slot B trial"), "not booted on trial");
    qemu.wait_until("slot B marked good", Duration::from_secs(60), |q| {
        let v = q.supervision();
        v["slot"] == "B" && v["marked_good"] == true
    });
    eprintln!(
        "qemu: upgrade of a {} byte bundle: sent and verified in {:.1} s; slot B healthy and marked good {:.1} s after the start",
        good.len(),
        sent.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    qemu.wait_registered(Duration::from_secs(30));
    assert_eq!(qemu.count(INITIAL_PASSWORD), 1, "a new initial password on slot B: the accounts were lost");
    let st = state(&qemu);
    assert!(st.contains("booted B; order B A") && st.contains("B 0.1.0+ab (good, 3 attempts)"), "{st}");

    // 3. An image that never becomes healthy (it never marks itself good):
    //    written to A, booted on trial, the deadline reboots, back on B.
    let broken = signed_bundle(&target, "never-healthy", b"#!/bin/sh\necho 'broken build: never healthy'\nexec sleep 100000\n");
    let boots = qemu.count("init: boot slot");
    let v = upgrade_over(qemu.serial, &broken, 2);
    assert!(v.contains("written to slot A"), "{v}");
    qemu.wait_until("the trial boot of the broken slot", Duration::from_secs(60), |q| q.count("init: boot slot") > boots);
    assert!(qemu.log().contains("init: boot slot A trial"), "not booted on trial");
    let t = Instant::now();
    qemu.wait_reboot(boots + 1, "the fallback reboot after the trial deadline", Duration::from_secs(90));
    eprintln!("qemu: broken slot A abandoned {:.1} s after its trial boot", t.elapsed().as_secs_f64());
    assert!(qemu.log().contains("init: slot A not marked good within 25 s"), "no deadline reboot");
    qemu.wait_until("slot B again, good", Duration::from_secs(60), |q| {
        let v = q.supervision();
        v["slot"] == "B" && v["marked_good"] == true
    });
    let st = state(&qemu);
    assert!(st.contains("A never-healthy (not confirmed, 0 attempts)"), "{st}");
    qemu.wait_registered(Duration::from_secs(30));
}

/// The README's figures: power-on (image/run started) to the four ports
/// registered, median of 5 boots, and gatewayd's resident memory when idle.
/// Not in the default run (about a minute): `cargo test -p hil --test qemu
/// -- --ignored --nocapture boot_figures` (in `unshare -n`, as tools/test does).
#[test]
#[ignore]
fn boot_figures() {
    let target = image_or_panic();
    let password = guest_password(&target.join("image/gatewayd.toml"));
    let kamailio = Kamailio::start(free_udp_port(), &password).expect("kamailio starts");
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..5 {
        let mut qemu = Qemu::boot(&target, kamailio.addr().port());
        qemu.wait_registered(BOOT_TIMEOUT);
        times.push(qemu.started.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_secs(2));
        qemu.shell("awk '/^VmRSS/ { print \"RSS\" $2 \"KB\" }' /proc/$(pidof gatewayd)/status");
        qemu.wait_until("gatewayd's RSS", Duration::from_secs(10), |q| {
            q.log().lines().any(|l| l.starts_with("RSS") && l.trim_end().ends_with("KB") && l.len() > 5)
        });
        let log = qemu.log();
        let line = log.lines().find(|l| l.starts_with("RSS") && l.trim_end().ends_with("KB") && l.len() > 5).unwrap();
        rss.push(line.trim_end().trim_start_matches("RSS").trim_end_matches("KB").parse::<u64>().unwrap());
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!("qemu: power-on to 1001..1004 registered: {times:.2?} s, median {:.2} s", sorted[2]);
    eprintln!("qemu: gatewayd VmRSS idle, registered: {rss:?} kB");
    assert!(rss.iter().all(|&r| r > 0));
}
