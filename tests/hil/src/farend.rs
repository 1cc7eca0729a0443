//! The far-end phone: baresip (Debian `baresip-core`), driven over its
//! `ctrl_tcp` interface.
//!
//! How it is wired (all in a private temp dir):
//! - SIP on UDP 127.0.0.1:<free port>, `net_interface 127.0.0.1` so that its
//!   SDP says 127.0.0.1 (without it baresip picks the first non-loopback
//!   interface, which does not exist inside `unshare -n`).
//! - One account `<sip:USER@KAMAILIO>;auth_pass=..;answermode=manual` with
//!   PCMU and PCMA only. Answering is done by this harness (the `accept`
//!   command on the `CALL_INCOMING` event) so that auto-answer can be
//!   switched at run time.
//! - Sends: `aufile` plays `play.wav`, the caller's WAV repeated to
//!   [`PLAY_SECONDS`]: baresip 1.0's menu hangs up the call when the source
//!   file ends ("audio error (0,end of file)"), so the file must outlast any
//!   call.
//! - Records: the `sndfile` audio filter writes, per call, `dump-<time>-dec.wav`
//!   (what it decoded from the RTP it received, 8 kHz mono 16-bit) and
//!   `dump-<time>-enc.wav` (what it sent) into `rec/`. No audio player is
//!   configured; the filter still sees every decoded frame.
//! - Control: `ctrl_tcp` on 127.0.0.1:<free port>: netstring-framed JSON,
//!   commands `{"command":"dial","params":"sip:..","token":"N"}` answered by
//!   `{"response":true,"ok":..,"data":..,"token":"N"}`, and events
//!   `{"event":true,"type":"CALL_ESTABLISHED","direction":"incoming",..}`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::audio::{read_wav, write_wav, RATE};
use crate::process::{find_program, PeerProcess};
use crate::{free_tcp_port, free_udp_tcp_port, free_udp_port_range};

/// The far end's audio source lasts this long (see the module docs).
pub const PLAY_SECONDS: usize = 300;

/// How long a ctrl_tcp command may take to be answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// One baresip event, as the harness keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `REGISTER_OK`, `CALL_INCOMING`, `CALL_RINGING`, `CALL_ESTABLISHED`, `CALL_CLOSED`, ...
    pub kind: String,
    /// `incoming` / `outgoing` for call events.
    pub direction: String,
    /// The peer's URI for call events.
    pub peer: String,
    /// The event's parameter: the close reason for `CALL_CLOSED` (e.g.
    /// `486 Busy Here`, `Connection reset by peer` after a BYE).
    pub param: String,
}

#[derive(Default)]
struct State {
    events: Vec<Event>,
    responses: HashMap<String, (bool, String)>,
    /// The control connection is gone (baresip exited or closed it).
    disconnected: bool,
    /// Cursors: how far each `wait_*` has consumed `events`.
    established_seen: usize,
    incoming_answered_seen: usize,
    closed_seen: usize,
    ringing_seen: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    auto_answer: AtomicBool,
    writer: Mutex<TcpStream>,
    token: AtomicU64,
}

impl Shared {
    fn send(&self, command: &str, params: &str) -> io::Result<String> {
        let token = self.token.fetch_add(1, Ordering::Relaxed).to_string();
        let json = serde_json::json!({ "command": command, "params": params, "token": token }).to_string();
        let frame = format!("{}:{},", json.len(), json);
        self.writer
            .lock()
            .map_err(|_| io::Error::other("ctrl_tcp writer poisoned"))?
            .write_all(frame.as_bytes())?;
        Ok(token)
    }
}

/// A running baresip registered (or registering) to Kamailio. Dropping it
/// stops it.
pub struct FarEnd {
    process: Mutex<PeerProcess>,
    shared: Arc<Shared>,
    kamailio: SocketAddr,
    sip_port: u16,
    dir: tempfile::TempDir,
}

/// What a far end offers and accepts unless told otherwise.
pub const DEFAULT_CODECS: &str = "PCMU/8000/1,PCMA/8000/1";

impl FarEnd {
    /// Starts baresip as `user` at `kamailio` with digest `password`,
    /// sending `play_wav` (8 kHz mono 16-bit PCM, repeated) in every call.
    /// Auto-answer is on. Returns once its control port is connected; use
    /// [`FarEnd::wait_registered`] before expecting calls.
    pub fn start(kamailio: SocketAddr, user: &str, password: &str, play_wav: &Path) -> io::Result<FarEnd> {
        Self::start_as(kamailio, None, user, password, play_wav)
    }

    /// Like [`FarEnd::start`], with a display name in its From header (what
    /// the gateway sends as the caller ID name).
    pub fn start_as(
        kamailio: SocketAddr,
        display: Option<&str>,
        user: &str,
        password: &str,
        play_wav: &Path,
    ) -> io::Result<FarEnd> {
        Self::start_with_codecs(kamailio, display, user, password, play_wav, DEFAULT_CODECS)
    }

    /// Like [`FarEnd::start_as`], offering and accepting only `codecs`
    /// (baresip's `audio_codecs` account parameter, e.g. `G722/16000/1` or
    /// `PCMA/8000/1`).
    pub fn start_with_codecs(
        kamailio: SocketAddr,
        display: Option<&str>,
        user: &str,
        password: &str,
        play_wav: &Path,
        codecs: &str,
    ) -> io::Result<FarEnd> {
        if codecs.is_empty() || !codecs.chars().all(|c| c.is_ascii_alphanumeric() || "/,".contains(c)) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "codecs: e.g. G722/16000/1 or PCMU/8000/1,PCMA/8000/1"));
        }
        let bad = |s: &str| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && !"<>;\"\\@:,".contains(c));
        if display.is_some_and(|d| d.is_empty() || !d.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "display name: letters, digits and spaces only"));
        }
        if bad(user) || bad(password) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "far-end user and password must be printable ASCII without <>;\"\\@:,",
            ));
        }
        let wav = read_wav(play_wav)?;
        if wav.rate != RATE || wav.samples.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: want non-empty 8000 Hz mono 16-bit PCM, got {} Hz", play_wav.display(), wav.rate),
            ));
        }
        let dir = tempfile::Builder::new().prefix("hil-farend-").tempdir()?;
        let play = dir.path().join("play.wav");
        let looped: Vec<i16> = wav.samples.iter().copied().cycle().take(PLAY_SECONDS * RATE as usize).collect();
        // baresip's aufile wants the codec's own rate: 16 kHz for G.722
        // (linear interpolation; its images above 4 kHz are far out of band).
        if codecs.contains("/16000") {
            let wide: Vec<i16> = looped
                .iter()
                .zip(looped.iter().skip(1).chain(std::iter::once(&0)))
                .flat_map(|(&a, &b)| [a, ((i32::from(a) + i32::from(b)) / 2) as i16])
                .collect();
            write_wav(&play, &wide, 2 * RATE)?;
        } else {
            write_wav(&play, &looped, RATE)?;
        }
        let rec = dir.path().join("rec");
        fs::create_dir(&rec)?;

        let sip_port = free_udp_tcp_port();
        let ctrl_port = free_tcp_port();
        let (rtp_lo, rtp_hi) = free_udp_port_range(8);
        let module_path = ["/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules", "/usr/lib64/baresip/modules"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("ctrl_tcp.so").is_file())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "baresip modules (ctrl_tcp.so) not found: run tools/test once")
            })?;
        let mut config = String::new();
        let _ = write!(
            config,
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             net_interface 127.0.0.1\n\
             call_local_timeout 120\n\
             call_max_calls 4\n\
             audio_source aufile,{play}\n\
             rtp_ports {rtp_lo}-{rtp_hi}\n\
             rtcp_mux no\n\
             jitter_buffer_delay 1-4\n\
             module_path {modules}\n\
             module g711.so\n\
             module g722.so\n\
             module aufile.so\n\
             module sndfile.so\n\
             module_tmp account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
             snd_path {rec}\n",
            play = play.display(),
            modules = module_path.display(),
            rec = rec.display(),
        );
        fs::write(dir.path().join("config"), config)?;
        fs::write(
            dir.path().join("accounts"),
            format!(
                "{name}<sip:{user}@{kamailio}>;auth_pass={password};answermode=manual;\
                 audio_codecs={codecs};ptime=20;regint=600\n",
                name = display.map(|d| format!("\"{d}\" ")).unwrap_or_default(),
            ),
        )?;
        fs::write(dir.path().join("contacts"), "")?;

        let mut cmd = Command::new(find_program("baresip")?);
        cmd.arg("-f").arg(dir.path()).current_dir(dir.path());
        let mut process = PeerProcess::spawn("baresip", cmd)?;

        // Connect to ctrl_tcp once baresip has opened it.
        let end = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            if let Some(status) = process.exited() {
                return Err(process.error(io::ErrorKind::Other, &format!("exited at start-up ({status})")));
            }
            match TcpStream::connect((Ipv4Addr::LOCALHOST, ctrl_port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < end => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(process.error(e.kind(), &format!("ctrl_tcp port {ctrl_port}: {e}"))),
            }
        };
        stream.set_nodelay(true)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            auto_answer: AtomicBool::new(true),
            writer: Mutex::new(stream.try_clone()?),
            token: AtomicU64::new(1),
        });
        let reader_shared = Arc::clone(&shared);
        thread::spawn(move || read_events(stream, reader_shared));
        Ok(FarEnd { process: Mutex::new(process), shared, kamailio, sip_port, dir })
    }

    /// Its SIP address (UDP).
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.sip_port))
    }

    /// baresip's output so far.
    pub fn log(&self) -> String {
        self.process.lock().map(|p| p.log()).unwrap_or_default()
    }

    /// Every event received so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.state.lock().map(|s| s.events.clone()).unwrap_or_default()
    }

    /// Waits until the registrar has accepted the registration (200 to
    /// REGISTER). A refused registration (e.g. 403 for a wrong password) is
    /// an `Err` of kind `PermissionDenied` at once.
    pub fn wait_registered(&self, timeout: Duration) -> io::Result<()> {
        let end = Instant::now() + timeout;
        loop {
            // The first REGISTER may complete before ctrl_tcp is connected,
            // so ask rather than only wait for REGISTER_OK.
            let info = self.command("reginfo", "")?;
            let info = strip_ansi(&info);
            if info.lines().any(|l| l.contains(" OK ")) {
                return Ok(());
            }
            if let Some(fail) = self.events().iter().find(|e| e.kind == "REGISTER_FAIL") {
                return Err(self.error(io::ErrorKind::PermissionDenied, &format!("registration failed: {}", fail.param)));
            }
            if info.lines().any(|l| l.contains(" ERR ")) {
                return Err(self.error(io::ErrorKind::PermissionDenied, &format!("registration failed: {info}")));
            }
            if Instant::now() >= end {
                return Err(self.error(io::ErrorKind::TimedOut, &format!("not registered: {info}")));
            }
            self.wait_change(Duration::from_millis(100));
        }
    }

    /// Waits for the next incoming call to be established (answered by
    /// auto-answer and ACKed).
    pub fn wait_incoming_answered(&self, timeout: Duration) -> io::Result<()> {
        self.wait_event(timeout, "an answered incoming call", |s| &mut s.incoming_answered_seen, |e| {
            e.kind == "CALL_ESTABLISHED" && e.direction == "incoming"
        })
        .map(drop)
    }

    /// Turns auto-answer on or off (on at start). Off: incoming calls ring
    /// until the caller gives up.
    pub fn set_auto_answer(&self, on: bool) {
        self.shared.auto_answer.store(on, Ordering::SeqCst);
    }

    /// Places a call. `number` is a user part routed through Kamailio
    /// (`1001` becomes `sip:1001@<kamailio>`), or a full `sip:` URI.
    pub fn dial(&self, number: &str) -> io::Result<()> {
        let uri = if number.starts_with("sip:") { number.to_owned() } else { format!("sip:{number}@{}", self.kamailio) };
        self.command("dial", &uri).map(drop)
    }

    /// Waits for the next call (either direction) to be established.
    pub fn wait_established(&self, timeout: Duration) -> io::Result<()> {
        self.wait_event(timeout, "an established call", |s| &mut s.established_seen, |e| e.kind == "CALL_ESTABLISHED")
            .map(drop)
    }

    /// Waits for the next outgoing call to ring (a 180 came back).
    pub fn wait_ringing(&self, timeout: Duration) -> io::Result<()> {
        self.wait_event(timeout, "ringing", |s| &mut s.ringing_seen, |e| e.kind == "CALL_RINGING").map(drop)
    }

    /// Hangs up the current call: BYE when established, CANCEL while an
    /// outgoing call rings, a 486 reject for an unanswered incoming call.
    /// Kills baresip at once (SIGKILL): no BYE, no more RTP, as when the far
    /// end crashes or its network goes away.
    pub fn crash(&self) {
        if let Ok(mut p) = self.process.lock() {
            p.crash();
        }
    }

    pub fn hangup(&self) -> io::Result<()> {
        self.command("hangup", "").map(drop)
    }

    /// Waits for the next call to close and returns baresip's reason: the
    /// final response for a failed call (`486 Busy Here`, `404 Not Found`,
    /// `487 Request Terminated`...), `Connection reset by peer` when the
    /// other side sent BYE, `Connection reset by user` when we hung up.
    pub fn wait_call_closed(&self, timeout: Duration) -> io::Result<String> {
        self.wait_event(timeout, "a closed call", |s| &mut s.closed_seen, |e| e.kind == "CALL_CLOSED")
            .map(|e| e.param)
    }

    /// The 8 kHz mono samples received (decoded from RTP) during the most
    /// recent call, as far as recorded so far. A 16 kHz recording (G.722) is
    /// brought to 8 kHz by averaging sample pairs (a gentle low-pass, enough
    /// for the tone measurements here).
    pub fn recording(&self) -> io::Result<Vec<i16>> {
        let path = self.last_recording_path()?;
        let wav = read_wav(&path)?;
        match wav.rate {
            RATE => Ok(wav.samples),
            16_000 => Ok(wav.samples.chunks(2).map(|p| ((i32::from(p[0]) + i32::from(*p.last().unwrap())) / 2) as i16).collect()),
            rate => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: recorded at {rate} Hz, want 8000 or 16000", path.display()),
            )),
        }
    }

    /// The sample rate of the most recent recording (16000 for G.722).
    pub fn recording_rate(&self) -> io::Result<u32> {
        Ok(read_wav(&self.last_recording_path()?)?.rate)
    }

    /// The WAV file [`FarEnd::recording`] reads.
    pub fn last_recording_path(&self) -> io::Result<PathBuf> {
        let mut best: Option<(SystemTime, PathBuf)> = None;
        for entry in fs::read_dir(self.dir.path().join("rec"))? {
            let path = entry?.path();
            if !path.to_string_lossy().ends_with("-dec.wav") {
                continue;
            }
            let modified = fs::metadata(&path)?.modified()?;
            if !matches!(&best, Some((t, p)) if (modified, &path) <= (*t, p)) {
                best = Some((modified, path));
            }
        }
        best.map(|(_, p)| p)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the far end has recorded no call yet"))
    }

    /// Sends a ctrl_tcp command (`/help` lists them) and returns its output.
    pub fn command(&self, command: &str, params: &str) -> io::Result<String> {
        let token = self.shared.send(command, params)?;
        let end = Instant::now() + COMMAND_TIMEOUT;
        let mut state = self.lock()?;
        loop {
            if let Some((ok, data)) = state.responses.remove(&token) {
                return if ok { Ok(data) } else { Err(io::Error::other(format!("baresip {command}: {data}"))) };
            }
            if state.disconnected {
                drop(state);
                return Err(self.error(io::ErrorKind::BrokenPipe, "control connection closed"));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(state);
                return Err(self.error(io::ErrorKind::TimedOut, &format!("no response to {command}")));
            }
            state = self.shared.changed.wait_timeout(state, left).map_err(|_| poisoned())?.0;
        }
    }

    fn wait_event(
        &self,
        timeout: Duration,
        what: &str,
        cursor: impl Fn(&mut State) -> &mut usize,
        matches: impl Fn(&Event) -> bool,
    ) -> io::Result<Event> {
        let end = Instant::now() + timeout;
        let mut state = self.lock()?;
        loop {
            let from = *cursor(&mut state);
            if let Some(i) = state.events[from..].iter().position(&matches) {
                let event = state.events[from + i].clone();
                *cursor(&mut state) = from + i + 1;
                return Ok(event);
            }
            if state.disconnected {
                drop(state);
                return Err(self.error(io::ErrorKind::BrokenPipe, &format!("exited while waiting for {what}")));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(state);
                return Err(self.error(io::ErrorKind::TimedOut, &format!("timed out waiting for {what}")));
            }
            state = self.shared.changed.wait_timeout(state, left).map_err(|_| poisoned())?.0;
        }
    }

    fn wait_change(&self, at_most: Duration) {
        if let Ok(state) = self.shared.state.lock() {
            let _ = self.shared.changed.wait_timeout(state, at_most);
        }
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        self.shared.state.lock().map_err(|_| poisoned())
    }

    fn error(&self, kind: io::ErrorKind, what: &str) -> io::Error {
        let events: Vec<String> =
            self.events().iter().map(|e| format!("{} {} {} {}", e.kind, e.direction, e.peer, e.param)).collect();
        match self.process.lock() {
            Ok(p) => {
                let e = p.error(kind, what);
                io::Error::new(kind, format!("{e}\n--- events ---\n{}", events.join("\n")))
            }
            Err(_) => io::Error::new(kind, what.to_owned()),
        }
    }
}

impl Drop for FarEnd {
    fn drop(&mut self) {
        if let Ok(mut p) = self.process.lock() {
            p.stop();
        }
    }
}

fn poisoned() -> io::Error {
    io::Error::other("far-end state poisoned by a panicking thread")
}

/// Reads netstrings (`<len>:<json>,`) until the connection closes.
fn read_events(stream: TcpStream, shared: Arc<Shared>) {
    let mut reader = BufReader::new(stream);
    while let Ok(Some(frame)) = read_netstring(&mut reader) {
        let Ok(v) = serde_json::from_slice::<Value>(&frame) else { continue };
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let Ok(mut state) = shared.state.lock() else { return };
        if v.get("response").and_then(Value::as_bool) == Some(true) {
            let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
            state.responses.insert(text("token"), (ok, text("data")));
        } else if v.get("event").and_then(Value::as_bool) == Some(true) {
            let event = Event { kind: text("type"), direction: text("direction"), peer: text("peeruri"), param: text("param") };
            if event.kind == "CALL_INCOMING" && shared.auto_answer.load(Ordering::SeqCst) {
                // The response comes back as an unclaimed token; harmless.
                let _ = shared.send("accept", "");
            }
            if event.kind != "CALL_RTCP" {
                state.events.push(event);
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
    if let Ok(mut state) = shared.state.lock() {
        state.disconnected = true;
    }
    shared.changed.notify_all();
}

fn read_netstring(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = 0usize;
    let mut byte = [0u8; 1];
    let mut digits = 0;
    loop {
        if r.read(&mut byte)? == 0 {
            return Ok(None);
        }
        match byte[0] {
            b'0'..=b'9' if digits < 9 => {
                len = len * 10 + (byte[0] - b'0') as usize;
                digits += 1;
            }
            b':' if digits > 0 => break,
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad netstring length")),
        }
    }
    let mut body = vec![0u8; len + 1];
    r.read_exact(&mut body)?;
    if body.pop() != Some(b',') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "netstring without trailing comma"));
    }
    Ok(Some(body))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstrings_parse_and_reject_garbage() {
        let mut r: &[u8] = b"5:hello,0:,";
        assert_eq!(read_netstring(&mut r).unwrap().unwrap(), b"hello");
        assert_eq!(read_netstring(&mut r).unwrap().unwrap(), b"");
        assert!(read_netstring(&mut r).unwrap().is_none());
        assert!(read_netstring(&mut &b"x:"[..]).is_err());
        assert!(read_netstring(&mut &b"3:abcd"[..]).is_err());
        assert!(read_netstring(&mut &b"9999999999:"[..]).is_err());
    }

    #[test]
    fn ansi_colour_codes_are_removed_from_reginfo() {
        let s = "> sip:2000@127.0.0.1:5060  \u{1b}[32mOK \u{1b}[;m kamailio";
        assert_eq!(strip_ansi(s), "> sip:2000@127.0.0.1:5060  OK  kamailio");
    }
}
