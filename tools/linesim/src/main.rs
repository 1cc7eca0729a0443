//! `linesim`: play the phones of a gateway's sim board from a terminal or a script.
//!
//! `linesim --connect 127.0.0.1:5070` reads commands from stdin (`help` lists
//! them); `--script FILE` or `-e 'offhook 1; wait 1 dial'` runs them and exits
//! non-zero on the first failure.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use linesim::cli::{self, Flow, Tones};
use linesim::Linesim;

#[derive(Parser, Debug)]
#[command(name = "linesim", version, about = "Plays the phones on a gateway's sim board (hal/SIMLINK.md)")]
struct Args {
    /// Address of the gateway's sim link.
    #[arg(long, default_value = "127.0.0.1:5070")]
    connect: SocketAddr,
    /// Run the commands in FILE (one per line, or ';'-separated), then exit.
    #[arg(long, value_name = "FILE", conflicts_with = "execute")]
    script: Option<PathBuf>,
    /// Run these ';'-separated commands, then exit.
    #[arg(short = 'e', long = "execute", value_name = "COMMANDS")]
    execute: Option<String>,
    /// National tone set for `wait P dial|ringback|busy|reorder`: us or de.
    #[arg(long, default_value = "us")]
    tones: Tones,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let sim = match Linesim::connect(args.connect) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("linesim: cannot attach to {}: {e}", args.connect);
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    let script = match (&args.script, &args.execute) {
        (Some(f), _) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("linesim: {}: {e}", f.display());
                return ExitCode::from(2);
            }
        },
        (None, Some(e)) => Some(e.clone()),
        (None, None) => None,
    };
    if let Some(text) = script {
        for line in text.lines() {
            match cli::run_line(&sim, line, args.tones, &mut out, true) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Quit) => break,
                Err(e) => {
                    eprintln!("linesim: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        sim.disconnect();
        return ExitCode::SUCCESS;
    }
    println!("linesim: attached to {} ({} ports); 'help' lists commands", args.connect, sim.port_count());
    let stdin = std::io::stdin();
    loop {
        print!("linesim> ");
        let _ = out.flush();
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Ok(Flow::Quit) = cli::run_line(&sim, &line, args.tones, &mut out, false) {
            break;
        }
        if !sim.is_connected() {
            eprintln!("linesim: the gateway closed the sim link");
            return ExitCode::FAILURE;
        }
    }
    sim.disconnect();
    ExitCode::SUCCESS
}
