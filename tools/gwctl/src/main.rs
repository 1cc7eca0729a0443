//! `gwctl --tcp 127.0.0.1:5023 show status` or `gwctl --serial /dev/ttyUSB0 show status`;
//! several commands in one session: `gwctl -e 'config set sip.register_expires 120' -e 'config commit'`;
//! a firmware upgrade: `gwctl --tcp 127.0.0.1:5023 upgrade gatewayd.bundle` (or over `--serial`);
//! the configuration as a file: `gwctl pull site.toml`, edit it, `gwctl push site.toml`.
//! A console that asks for a login gets `GWCTL_USER` (default admin) and `GWCTL_PASSWORD`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(name = "gwctl", about = "Run console commands on the gateway")]
struct Args {
    /// Serial device of the console (e.g. /dev/ttyUSB0).
    #[arg(long, conflicts_with = "tcp")]
    serial: Option<String>,
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// TCP address of the console (the sim board's stand-in for the serial port).
    #[arg(long)]
    tcp: Option<String>,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// Commands for one session, in order (e.g. `-e 'config set ...' -e 'config commit'`).
    #[arg(short = 'e', long = "exec")]
    exec: Vec<String>,
    /// The command, e.g. `show status` (after the `-e` commands, if any).
    #[arg(trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let timeout = Duration::from_secs(args.timeout);
    let link = match (&args.serial, &args.tcp) {
        (Some(dev), _) => gwctl::open_serial(dev, args.baud, Duration::from_millis(100)),
        (None, Some(addr)) => gwctl::open_tcp(addr, Duration::from_millis(100)),
        (None, None) => gwctl::open_tcp("127.0.0.1:5023", Duration::from_millis(100)),
    };
    let mut link = match link {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gwctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let [verb, file] = args.command.as_slice() {
        if verb == "pull" && args.exec.is_empty() {
            return match gwctl::pull(&mut *link, timeout).and_then(|doc| std::fs::write(file, doc).map(|_| ())) {
                Ok(()) => {
                    eprintln!("gwctl: wrote the running configuration to {file} (secrets masked: they keep their values on push)");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gwctl: pull: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        if verb == "push" && args.exec.is_empty() {
            let doc = match std::fs::read(file).map(String::from_utf8) {
                Ok(Ok(d)) => d,
                Ok(Err(_)) => {
                    eprintln!("gwctl: {file}: not UTF-8 text");
                    return ExitCode::FAILURE;
                }
                Err(e) => {
                    eprintln!("gwctl: {file}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            return match gwctl::push(&mut *link, &doc, timeout) {
                Ok(v) => {
                    print!("{v}");
                    if gwctl::is_error(&v) {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("gwctl: push: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        if verb == "upgrade" && args.exec.is_empty() {
            // A UART without flow control: fewer chunks in flight.
            let window = if args.serial.is_some() { 2 } else { 8 };
            return upgrade(&mut *link, file, window, timeout);
        }
    }
    let mut commands: Vec<String> = args.exec.clone();
    if !args.command.is_empty() {
        commands.push(args.command.join(" "));
    }
    if commands.is_empty() {
        eprintln!("gwctl: no command (e.g. `gwctl show status`)");
        return ExitCode::from(2);
    }
    let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
    match gwctl::run_session(&mut *link, &commands, timeout) {
        Ok(answers) => {
            answers.iter().for_each(|a| print!("{a}"));
            // A refused command fails the run, so scripts stop on it.
            if answers.iter().any(|a| gwctl::is_error(a)) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("gwctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `gwctl upgrade FILE`: sends the bundle, prints progress on stderr and the
/// gateway's verdict on stdout; fails if the gateway refused it.
fn upgrade(link: &mut dyn gwctl::Link, file: &str, window: usize, timeout: Duration) -> ExitCode {
    let bundle = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gwctl: {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t0 = std::time::Instant::now();
    let mut last = 0;
    let verdict = gwctl::upgrade(link, &bundle, gwctl::UPGRADE_CHUNK, window, timeout.max(Duration::from_secs(60)), |sent, total| {
        let pct = sent * 100 / total.max(1);
        if pct >= last + 10 || sent == total {
            last = pct;
            eprintln!("gwctl: sent {sent}/{total} bytes ({pct}%, {:.1} s)", t0.elapsed().as_secs_f64());
        }
    });
    match verdict {
        Ok(v) => {
            print!("{v}");
            eprintln!("gwctl: upgrade answered after {:.1} s", t0.elapsed().as_secs_f64());
            if gwctl::is_error(&v) || !v.contains("upgrade: done") {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("gwctl: {e}");
            ExitCode::FAILURE
        }
    }
}
