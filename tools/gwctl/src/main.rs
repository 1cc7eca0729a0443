//! `gwctl --tcp 127.0.0.1:5023 show status` or `gwctl --serial /dev/ttyUSB0 show status`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(name = "gwctl", about = "Run one console command on the gateway")]
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
    /// The command, e.g. `show status`.
    #[arg(required = true, trailing_var_arg = true)]
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
    match gwctl::run_command(&mut *link, &args.command.join(" "), timeout) {
        Ok(answer) => {
            print!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gwctl: {e}");
            ExitCode::FAILURE
        }
    }
}
