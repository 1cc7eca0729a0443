//! The gatewayd harness shared by the hil scenario files: starts the daemon
//! with a generated configuration on free ports, collects its log, reads
//! `/api/status`, and attaches linesim.
#![allow(dead_code)] // each scenario file uses a different part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hil::{free_tcp_port, free_udp_port, free_udp_port_range, gatewayd_binary, FarEnd, Kamailio};
use linesim::Linesim;

pub const PASSWORD: &str = "s3cret-hil";

/// A running gatewayd; killed on drop.
pub struct Gatewayd {
    child: Child,
    log: Arc<Mutex<String>>,
    pub sim: SocketAddr,
    http: SocketAddr,
    /// The HTTPS web UI.
    pub https: SocketAddr,
    pub console: SocketAddr,
    /// The configuration file gatewayd runs from.
    pub config_path: std::path::PathBuf,
    /// Its SIP socket and RTP port range (what a flood aims at).
    pub sip: SocketAddr,
    pub rtp_ports: (u16, u16),
    _dir: tempfile::TempDir,
}

pub struct GwOptions {
    pub password: String,
    pub register_expires: u32,
    pub retry_base_s: u64,
    /// `media.codecs`, in preference order.
    pub codecs: &'static [&'static str],
    pub echo_canceller: bool,
    pub echo_tail_ms: u32,
    /// FXS ports 1..=fxs_ports get numbers 1001, 1002, ...
    pub fxs_ports: usize,
    /// `system.country`: tones, ring cadence, caller ID procedure.
    pub country: &'static str,
    /// `caller_id.mode`.
    pub caller_id: &'static str,
    /// `media.disconnect_on_busy_tone`.
    pub disconnect_on_busy_tone: bool,
    /// `management.web_password` (the web UI's admin password), if any.
    pub web_password: Option<&'static str>,
    /// More TOML at the end of the document (`[[trunk]]`, `[[group]]`,
    /// `[[route]]`, `[limits]`...).
    pub extra: String,
    /// Run gatewayd with this many file descriptors at most (`ulimit -n`).
    pub fd_limit: Option<u32>,
    /// How many RTP ports gatewayd gets (one per SIP call).
    pub rtp_ports: u16,
}

impl Default for GwOptions {
    fn default() -> Self {
        GwOptions {
            password: PASSWORD.into(),
            register_expires: 600,
            retry_base_s: 2,
            codecs: &["PCMU", "PCMA"],
            echo_canceller: true,
            echo_tail_ms: 64,
            fxs_ports: 4,
            country: "US",
            caller_id: "auto",
            disconnect_on_busy_tone: true,
            web_password: None,
            extra: String::new(),
            fd_limit: None,
            rtp_ports: 16,
        }
    }
}

impl Gatewayd {
    pub fn start(proxy: SocketAddr, opts: GwOptions) -> Gatewayd {
        let dir = tempfile::Builder::new().prefix("hil-gw-").tempdir().unwrap();
        let sip = free_udp_port();
        let (rtp_lo, rtp_hi) = free_udp_port_range(opts.rtp_ports);
        let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let https: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let console: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let sim: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
        let fxs: String = (1..=opts.fxs_ports)
            .map(|p| format!("\n[[fxs]]\nport = {p}\nnumber = \"{}\"\n", 1000 + p))
            .collect();
        let config = format!(
            r#"
[system]
country = "{country}"

[sip]
listen = "127.0.0.1:{sip}"
proxy = "{proxy}"
domain = "127.0.0.1"
register_expires = {expires}
register_retry_base_s = {retry}
register_retry_max_s = 60
password = "{password}"

[media]
rtp_ip = "127.0.0.1"
rtp_port_min = {rtp_lo}
rtp_port_max = {rtp_hi}
codecs = {codecs:?}
telephone_event = 101
ptime_ms = 20
jitter_ms = 60
echo_canceller = {echo}
echo_tail_ms = {tail}
disconnect_on_busy_tone = {busy_hangup}

[caller_id]
mode = "{caller_id}"

[dialplan]
patterns = ["1xxx", "2xxx", "3xxx"]
first_digit_timeout_ms = 15000
inter_digit_timeout_ms = 4000

[management]
http_listen = "{http}"
https_listen = "{https}"
console_listen = "{console}"
{web_password}
{fxs}
{extra}"#,
            expires = opts.register_expires,
            retry = opts.retry_base_s,
            password = opts.password,
            codecs = opts.codecs,
            echo = opts.echo_canceller,
            tail = opts.echo_tail_ms,
            country = opts.country,
            caller_id = opts.caller_id,
            busy_hangup = opts.disconnect_on_busy_tone,
            web_password = opts.web_password.map(|p| format!("web_password = \"{p}\"")).unwrap_or_default(),
            extra = opts.extra,
        );
        let path = dir.path().join("gatewayd.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = match opts.fd_limit {
            // The shell execs gatewayd: same pid, with the lower limit.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(gatewayd_binary());
                c
            }
            None => Command::new(gatewayd_binary()),
        };
        let mut child = command
            .arg("--config")
            .arg(&path)
            .arg("--sim-listen")
            .arg(sim.to_string())
            .env("GATEWAYD_LOG", "info,gatewayd=debug,gatewayd::sip=trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gatewayd starts (build it first: cargo build -p gatewayd)");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        // The banner (the web certificate's fingerprint, the initial password).
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let gw = Gatewayd {
            child,
            log,
            sim,
            http,
            https,
            console,
            config_path: path,
            sip: format!("127.0.0.1:{sip}").parse().unwrap(),
            rtp_ports: (rtp_lo, rtp_hi),
            _dir: dir,
        };
        gw.wait_until("the status server answers", Duration::from_secs(10), || gw.status().is_some());
        gw
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// GET /api/status, parsed.
    pub fn status(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.try_get("/api/status")?).ok()
    }

    /// The body of `GET path` (panics if the server does not answer).
    pub fn http_get(&self, path: &str) -> String {
        self.try_get(path).unwrap_or_else(|| panic!("GET {path} failed"))
    }

    /// `POST path` with `body` and optional Basic credentials (`user:password`);
    /// returns the status code and the body.
    pub fn http_post(&self, path: &str, credentials: Option<&str>, body: &str) -> (u16, String) {
        use base64::Engine;
        let mut s = TcpStream::connect(self.http).expect("web UI connects");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let auth = credentials
            .map(|c| format!("Authorization: Basic {}\r\n", base64::engine::general_purpose::STANDARD.encode(c)))
            .unwrap_or_default();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}Content-Type: application/toml\r\nContent-Length: {}\r\n\r\n{body}",
            self.http,
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        let code = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, resp.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
    }

    /// The body of `GET path`, or `None` if the server does not answer.
    pub fn try_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(self.http).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http).ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body.split_once("\r\n\r\n")?.1.to_string())
    }

    /// The daemon's process id (a restart keeps it: gatewayd re-executes itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, kB (`VmRSS` of /proc/PID/status).
    pub fn rss_kb(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time used so far (user + system), in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): state is field 3.
        let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        num(11) + num(12) // utime, stime (fields 14 and 15)
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends each line to a new console session and returns the answers
    /// (the session is read until its next prompt, or until gatewayd closes
    /// it, as after a commit).
    pub fn console(&self, lines: &[&str]) -> Vec<String> {
        let mut s = TcpStream::connect(self.console).expect("console connects");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let read_prompt = |s: &mut TcpStream| {
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while !got.ends_with(b"\n> ") && got != b"> " {
                match s.read(&mut b) {
                    Ok(1) => got.push(b[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&got).to_string();
            text.strip_suffix("> ").unwrap_or(&text).to_string()
        };
        read_prompt(&mut s);
        lines
            .iter()
            .map(|l| {
                writeln!(s, "{l}").unwrap();
                read_prompt(&mut s)
            })
            .collect()
    }

    pub fn port_state(&self, port: usize) -> String {
        let st = self.status().expect("status");
        st["ports"][port - 1]["state"].as_str().unwrap_or_default().to_string()
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + timeout;
        while !f() {
            if Instant::now() > end {
                panic!("timed out waiting for {what}\n--- gatewayd log ---\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_registered(&self, users: &[&str]) {
        self.wait_until("registrations", Duration::from_secs(10), || {
            let Some(st) = self.status() else { return false };
            let regs = st["registrations"].as_array().cloned().unwrap_or_default();
            users.iter().all(|u| {
                regs.iter().any(|r| r["user"] == *u && r["state"].as_str().is_some_and(|s| s.starts_with("registered")))
            })
        });
    }

    pub fn attach(&self) -> Linesim {
        Linesim::connect(self.sim).expect("linesim attaches to the sim link")
    }
}

impl Drop for Gatewayd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gatewayd log ---\n{}", self.log());
        }
    }
}

/// A carrier (Kamailio), a gatewayd and a far-end phone (baresip, user 2000),
/// all registered. On a failing test the peers' logs are printed.
pub struct World {
    pub kamailio: Kamailio,
    pub gw: Gatewayd,
    pub far: FarEnd,
    _dir: tempfile::TempDir,
}

impl World {
    /// `far_name`: the far end's display name; `far_audio`: what it sends in
    /// every call (8 kHz, repeated).
    pub fn start(opts: GwOptions, far_name: Option<&str>, far_audio: &[i16]) -> World {
        Self::start_with_codecs(opts, far_name, far_audio, hil::DEFAULT_CODECS)
    }

    /// Like [`World::start`], the far end offering and accepting only `far_codecs`.
    pub fn start_with_codecs(opts: GwOptions, far_name: Option<&str>, far_audio: &[i16], far_codecs: &str) -> World {
        let dir = tempfile::Builder::new().prefix("hil-world-").tempdir().unwrap();
        let kamailio = Kamailio::start(free_udp_port(), PASSWORD).expect("kamailio starts");
        let users: Vec<String> = (1..=opts.fxs_ports).map(|p| (1000 + p).to_string()).collect();
        let gw = Gatewayd::start(kamailio.addr(), opts);
        let wav = dir.path().join("far.wav");
        hil::write_wav(&wav, far_audio, hil::RATE).unwrap();
        let far = FarEnd::start_with_codecs(kamailio.addr(), far_name, "2000", PASSWORD, &wav, far_codecs)
            .expect("baresip starts");
        far.wait_registered(Duration::from_secs(10)).expect("far end registers");
        gw.wait_registered(&users.iter().map(String::as_str).collect::<Vec<_>>());
        World { kamailio, gw, far, _dir: dir }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- kamailio log ---\n{}", self.kamailio.log());
            eprintln!("--- far end log ---\n{}", self.far.log());
        }
    }
}
