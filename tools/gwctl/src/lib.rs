//! gwctl: the installer's tool for the gateway console.
//!
//! The console is line oriented: the installer sends one command line, the
//! gateway answers with text and ends with the prompt `"> "`. The same
//! protocol runs over the box's serial port (through the `serialport`
//! crate) and, on the sim board, over TCP.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The prompt that ends every console answer.
pub const PROMPT: &[u8] = b"> ";

/// A byte stream to the console: a serial port or a TCP connection.
pub trait Link: Read + Write + Send {}
impl<T: Read + Write + Send> Link for T {}

pub fn open_serial(path: &str, baud: u32, timeout: Duration) -> io::Result<Box<dyn Link>> {
    let port = serialport::new(path, baud)
        .timeout(timeout)
        .open()
        .map_err(|e| io::Error::other(format!("{path}: {e}")))?;
    Ok(Box::new(port))
}

pub fn open_tcp(addr: &str, timeout: Duration) -> io::Result<Box<dyn Link>> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(timeout))?;
    Ok(Box::new(s))
}

/// Reads until the prompt (which is not returned) or the deadline. One byte
/// at a time: with several commands in flight (`upgrade`), the next answer
/// stays in the link for the next call. The prompt is "> " alone or after
/// a newline (an answer line such as "1xxx -> owner" holds "> " too).
pub fn read_answer(link: &mut dyn Link, timeout: Duration) -> io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 1];
    while prompt_len(&got).is_none() {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no prompt from the console"));
        }
        match link.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(n) = prompt_len(&got) {
        got.truncate(got.len() - n);
    }
    Ok(String::from_utf8_lossy(&got).replace("\r\n", "\n"))
}

/// The prompts that end an answer, each alone or after a newline: `> `,
/// `(config)> ` in configuration mode, and the login's questions.
const PROMPTS: [&[u8]; 4] = [PROMPT, b"(config)> ", LOGIN_USER, LOGIN_PASSWORD];
const LOGIN_USER: &[u8] = b"User: ";
const LOGIN_PASSWORD: &[u8] = b"Password: ";

fn prompt_len(got: &[u8]) -> Option<usize> {
    PROMPTS
        .iter()
        .find(|p| got == **p || (got.ends_with(p) && got[..got.len() - p.len()].ends_with(b"\n")))
        .map(|p| p.len())
}

/// The last prompt read was the login's: the console wants a user name.
fn asks_login(link_answer_end: &[u8]) -> bool {
    link_answer_end.ends_with(LOGIN_USER)
}

/// Waits for the console's first prompt. A TCP console sends its banner on
/// connect; a serial console wrote its banner when the gateway started, long
/// before: if no prompt comes within a second, an empty line asks for one.
///
/// A console that asks for a login (the serial console; a TCP console off
/// the loopback address) gets `GWCTL_USER` (default `admin`) and
/// `GWCTL_PASSWORD`. Then `terminal batch` turns the serial console's echo
/// and line editing off, so answers are the gateway's words only.
pub fn greet(link: &mut dyn Link, timeout: Duration) -> io::Result<()> {
    let first = match read_raw(link, Duration::from_secs(1).min(timeout)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            link.write_all(b"\n")?;
            link.flush()?;
            read_raw(link, timeout)?
        }
        Err(e) => return Err(e),
    };
    if asks_login(&first) {
        let user = std::env::var("GWCTL_USER").unwrap_or_else(|_| "admin".into());
        let password = std::env::var("GWCTL_PASSWORD").map_err(|_| {
            io::Error::new(io::ErrorKind::PermissionDenied, "the console asks for a login: set GWCTL_PASSWORD (and GWCTL_USER, default admin)")
        })?;
        for (line, secret) in [(user.as_str(), false), (password.as_str(), true)] {
            link.write_all(line.as_bytes())?;
            link.write_all(b"\n")?;
            link.flush()?;
            let answer = read_raw(link, timeout)?;
            let text = String::from_utf8_lossy(&answer).replace("\r\n", "\n");
            if secret && !answer.ends_with(PROMPT) {
                let why = text.lines().find(|l| l.contains("failed") || l.contains("changed")).unwrap_or("refused").trim().to_string();
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, format!("login as {user}: {why}")));
            }
        }
    }
    link.write_all(b"terminal batch\n")?;
    link.flush()?;
    read_answer(link, timeout).map(|_| ())
}

/// As [`read_answer`], the prompt kept.
fn read_raw(link: &mut dyn Link, timeout: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 1];
    while prompt_len(&got).is_none() {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no prompt from the console"));
        }
        match link.read(&mut buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the console closed")),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `gwctl pull`: the running configuration document (secrets masked).
pub fn pull(link: &mut dyn Link, timeout: Duration) -> io::Result<String> {
    let doc = run_command(link, "config export", timeout)?;
    if is_error(&doc) {
        return Err(io::Error::other(doc.trim().to_string()));
    }
    Ok(doc)
}

/// `gwctl push`: a whole document, validated whole by the gateway and
/// refused whole (masked secrets keep their values). Returns the gateway's
/// verdict.
pub fn push(link: &mut dyn Link, doc: &str, timeout: Duration) -> io::Result<String> {
    greet(link, timeout)?;
    let mut lines = vec!["config import begin"];
    lines.extend(doc.lines());
    lines.push("config import end");
    let mut last = String::new();
    for (i, line) in lines.iter().enumerate() {
        if line.contains('\r') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("line {i}: a carriage return inside a line")));
        }
        link.write_all(line.as_bytes())?;
        link.write_all(b"\n")?;
        link.flush()?;
        last = read_answer(link, timeout)?;
        if i == 0 && is_error(&last) {
            return Ok(last);
        }
    }
    Ok(last)
}

/// Waits for the first prompt, sends `command` and returns the answer.
pub fn run_command(link: &mut dyn Link, command: &str, timeout: Duration) -> io::Result<String> {
    Ok(run_session(link, &[command], timeout)?.remove(0))
}

/// Runs `commands` in one console session (a configuration candidate lives
/// as long as its session: `config set ...` then `config commit`) and returns
/// their answers. Stops early if the console closes (after a commit, the
/// gateway restarts).
pub fn run_session(link: &mut dyn Link, commands: &[&str], timeout: Duration) -> io::Result<Vec<String>> {
    if commands.iter().any(|c| c.contains(['\r', '\n'])) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "one command per line"));
    }
    greet(link, timeout)?;
    let mut answers = Vec::new();
    for command in commands {
        link.write_all(command.as_bytes())?;
        link.write_all(b"\n")?;
        link.flush()?;
        answers.push(read_answer(link, timeout)?);
    }
    Ok(answers)
}

/// True for an answer that reports a refusal (`error: ...`, `unknown command`).
pub fn is_error(answer: &str) -> bool {
    answer.starts_with("error:") || answer.starts_with("unknown command")
}

/// Raw bytes per `upgrade data` line (base64: 4/3 of it, under the
/// console's default 4096-byte line limit).
pub const UPGRADE_CHUNK: usize = 2800;

/// Sends a firmware bundle through the console (`upgrade begin`, `upgrade
/// data OFFSET BASE64 CRC32` lines, `upgrade end`) and returns the gateway's
/// verdict. Up to `window` chunks are in flight before their answers (the
/// round trip, not the bandwidth, limits a line protocol); a chunk the
/// gateway drops (bad CRC, wrong offset) is sent again with everything after
/// it, from the offset the gateway names (go-back-N, 5 tries).
/// `progress(confirmed, total)` after each confirmed chunk.
pub fn upgrade(
    link: &mut dyn Link,
    bundle: &[u8],
    chunk: usize,
    window: usize,
    timeout: Duration,
    mut progress: impl FnMut(usize, usize),
) -> io::Result<String> {
    use base64::Engine;
    let chunk = chunk.clamp(16, 2900);
    let window = window.clamp(1, 64);
    let send = |link: &mut dyn Link, line: &str| -> io::Result<()> {
        link.write_all(line.as_bytes())?;
        link.write_all(b"\n")?;
        link.flush()
    };
    greet(link, timeout)?;
    send(link, &format!("upgrade begin {}", bundle.len()))?;
    let a = read_answer(link, timeout)?;
    if !a.starts_with("ready") {
        return Ok(a);
    }
    let (mut confirmed, mut next, mut failures) = (0usize, 0usize, 0);
    let mut in_flight = std::collections::VecDeque::new();
    while confirmed < bundle.len() {
        while in_flight.len() < window && next < bundle.len() {
            let c = &bundle[next..(next + chunk).min(bundle.len())];
            let line = format!(
                "upgrade data {next} {} {:08x}",
                base64::engine::general_purpose::STANDARD.encode(c),
                gw_bundle::crc32(c)
            );
            send(link, &line)?;
            in_flight.push_back(next + c.len());
            next += c.len();
        }
        let a = read_answer(link, timeout)?;
        let end = in_flight.pop_front().expect("a chunk in flight");
        if a.starts_with("ok ") {
            confirmed = end;
            progress(confirmed, bundle.len());
            continue;
        }
        // The answers to the chunks after it (all refused: wrong offset).
        for _ in in_flight.drain(..) {
            read_answer(link, timeout)?;
        }
        failures += 1;
        if !a.contains("resend from") || failures == 5 {
            send(link, "upgrade abort")?;
            read_answer(link, timeout)?;
            return Ok(a);
        }
        next = confirmed;
    }
    // Verifying a few MB takes a while on a small CPU.
    send(link, "upgrade end")?;
    read_answer(link, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A console on the master side of a pseudo-terminal; gwctl opens the
    /// slave side as a serial port, as it would /dev/ttyS0 on the box.
    #[test]
    fn command_over_a_serial_line() {
        use nix::pty::openpty;
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let pty = openpty(None, None).unwrap();
        let mut t = tcgetattr(&pty.slave).unwrap();
        cfmakeraw(&mut t);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &t).unwrap();
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
        let mut master = std::fs::File::from(pty.master);
        let console = std::thread::spawn(move || {
            master.write_all(b"gatewayd console. Type 'help'.\n> ").unwrap();
            for _ in ["terminal batch", "the command"] {
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while master.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
                    line.push(b[0]);
                }
                // CR LF line ends, as the serial console writes them.
                let reply = format!("you said {} -> ok\r\n> ", String::from_utf8_lossy(&line));
                master.write_all(reply.as_bytes()).unwrap();
            }
            master
        });
        let mut link = open_serial(slave_path.to_str().unwrap(), 115_200, Duration::from_millis(100)).unwrap();
        let answer = run_command(&mut *link, "show ports", Duration::from_secs(5)).unwrap();
        assert_eq!(answer, "you said show ports -> ok\n", "a '> ' inside a line is no prompt");
        drop(console.join().unwrap());
    }

    #[test]
    fn several_commands_share_one_session() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let console = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"banner\n> ").unwrap();
            let mut lines = io::BufRead::lines(io::BufReader::new(s.try_clone().unwrap()));
            let mut n = 0;
            while let Some(Ok(line)) = lines.next() {
                n += 1;
                s.write_all(format!("{n}: {line}\n> ").as_bytes()).unwrap();
            }
        });
        let mut link = open_tcp(&addr, Duration::from_millis(50)).unwrap();
        let answers = run_session(&mut *link, &["config set a 1", "config commit"], Duration::from_secs(5)).unwrap();
        // 1 is `terminal batch`, sent after the greeting.
        assert_eq!(answers, ["2: config set a 1\n", "3: config commit\n"], "one session: the count goes on");
        drop(link);
        console.join().unwrap();
        assert!(is_error("error: x") && is_error("unknown command: \"x\"") && !is_error("ok"));
    }

    /// A console that checks each chunk's offset and CRC, and garbles the
    /// first arrival of the third chunk: gwctl goes back to it, every byte
    /// arrives once and in order, with several chunks in flight.
    #[test]
    fn upgrade_sends_checked_chunks_and_returns_the_verdict() {
        use base64::Engine;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let console = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"banner\n> ").unwrap();
            let mut got = Vec::new();
            let mut n = 0;
            for line in io::BufRead::lines(io::BufReader::new(s.try_clone().unwrap())) {
                let line = line.unwrap();
                let w: Vec<&str> = line.split(' ').collect();
                let answer = match w.as_slice() {
                    ["upgrade", "begin", len] => format!("ready for {len} bytes\n"),
                    ["upgrade", "data", off, b64, crc] => {
                        n += 1;
                        let c = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
                        if off.parse::<usize>().unwrap() != got.len() {
                            format!("error: chunk at offset {off}, expected {0} (dropped; resend from {0})\n", got.len())
                        } else if n == 3 || u32::from_str_radix(crc, 16).unwrap() != gw_bundle::crc32(&c) {
                            format!("error: chunk checksum mismatch (dropped; resend from {})\n", got.len())
                        } else {
                            got.extend_from_slice(&c);
                            format!("ok {}\n", got.len())
                        }
                    }
                    ["upgrade", "end"] => format!("upgrade: done, {} bytes\n", got.len()),
                    _ => "unknown\n".into(),
                };
                s.write_all(answer.as_bytes()).unwrap();
                s.write_all(b"> ").unwrap();
            }
            got
        });
        let bundle: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut link = open_tcp(&addr, Duration::from_millis(50)).unwrap();
        let mut seen = Vec::new();
        let v = upgrade(&mut *link, &bundle, 1000, 4, Duration::from_secs(5), |s, t| seen.push((s, t))).unwrap();
        assert_eq!(v, "upgrade: done, 10000 bytes\n");
        assert_eq!(seen.len(), 10, "{seen:?}");
        assert_eq!(seen.last(), Some(&(10_000, 10_000)));
        drop(link);
        assert_eq!(console.join().unwrap(), bundle, "every chunk once, in order, the garbled one resent");
    }

    /// A serial console that printed its banner long ago: gwctl asks for a
    /// prompt with an empty line.
    #[test]
    fn a_console_without_a_fresh_banner_is_woken_with_an_empty_line() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let console = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut lines = io::BufRead::lines(io::BufReader::new(s.try_clone().unwrap()));
            let mut seen = Vec::new();
            while let Some(Ok(line)) = lines.next() {
                seen.push(line.clone());
                s.write_all(if line.is_empty() { b"> ".to_vec() } else { format!("did {line}\n> ").into_bytes() }.as_slice()).unwrap();
            }
            seen
        });
        let mut link = open_tcp(&addr, Duration::from_millis(50)).unwrap();
        assert_eq!(run_command(&mut *link, "show status", Duration::from_secs(5)).unwrap(), "did show status\n");
        drop(link);
        assert_eq!(console.join().unwrap(), ["", "terminal batch", "show status"]);
    }

    /// A console that asks for a login; `push` sends the document between
    /// `config import begin` and `end`, `pull` writes what `config export`
    /// answers.
    #[test]
    fn push_and_pull_log_in_and_move_whole_documents() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let console = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(b"gatewayd console. Log in with a web UI account.\nUser: ").unwrap();
                let mut lines = io::BufRead::lines(io::BufReader::new(s.try_clone().unwrap()));
                let mut logged_in = false;
                while let Some(Ok(line)) = lines.next() {
                    seen.push(line.clone());
                    let answer = match (logged_in, line.as_str()) {
                        (false, "installer") => "Password: ".to_string(),
                        (false, "s3cret-pass") => {
                            logged_in = true;
                            "\nWelcome, installer (admin).\n> ".into()
                        }
                        (false, _) => "\nlogin failed: wrong user name or password\nUser: ".into(),
                        (true, "config export") => "[sip]\nproxy = \"x\" # kept\n> ".into(),
                        (true, "config import end") => "imported into /etc/gw.toml; applied\n> ".into(),
                        (true, _) => "> ".into(),
                    };
                    s.write_all(answer.as_bytes()).unwrap();
                }
            }
            seen
        });
        // SAFETY of the test: no other test reads these variables.
        std::env::set_var("GWCTL_USER", "installer");
        std::env::set_var("GWCTL_PASSWORD", "s3cret-pass");
        let mut link = open_tcp(&addr, Duration::from_millis(50)).unwrap();
        assert_eq!(pull(&mut *link, Duration::from_secs(5)).unwrap(), "[sip]\nproxy = \"x\" # kept\n");
        drop(link);
        let mut link = open_tcp(&addr, Duration::from_millis(50)).unwrap();
        let v = push(&mut *link, "[sip]\nproxy = \"y\" # kept\n", Duration::from_secs(5)).unwrap();
        assert_eq!(v, "imported into /etc/gw.toml; applied\n");
        drop(link);
        std::env::set_var("GWCTL_PASSWORD", "wrong");
        let mut link = open_tcp(&addr, Duration::from_millis(50)).unwrap();
        let e = pull(&mut *link, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("login failed: wrong user name or password"), "{e}");
        drop(link);
        let seen = console.join().unwrap();
        assert_eq!(
            seen,
            [
                "installer", "s3cret-pass", "terminal batch", "config export",
                "installer", "s3cret-pass", "terminal batch", "config import begin", "[sip]", "proxy = \"y\" # kept", "config import end",
                "installer", "wrong",
            ]
        );
    }

    #[test]
    fn multi_line_command_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut link = open_tcp(&addr, Duration::from_millis(50)).unwrap();
        let e = run_command(&mut *link, "show\nstatus", Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn silent_console_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut link = open_tcp(&addr, Duration::from_millis(20)).unwrap();
        let e = run_command(&mut *link, "help", Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
