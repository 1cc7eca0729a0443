//! `gwctl --tcp 127.0.0.1:5023 show status` or `gwctl --serial /dev/ttyUSB0 show status`;
//! several commands in one session: `gwctl -e 'config set sip.register_expires 120' -e 'config commit'`.

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
