//! The `linesim` command language: one command per line or `;`-separated.
//! Ports are 1-based here (FXS 1..n), 0-based in the library.
//!
//! ```text
//! offhook P | onhook P | flash P | dial P DIGITS | tone P HZ DBM0 | stop P
//! play P FILE.wav [loop] | record P SECONDS FILE.wav | measure P SECONDS
//! wait P dial|ringback|busy|reorder|ringing|ringstop|callerid [SECS]
//! status | sleep MS | help | quit
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::{plans, HookState, Linesim, LinesimError, TonePlan};

/// Default `wait` timeout (long enough for two cycles of a 1 s/4 s ringback).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(15);

/// Which national tone set `wait P dial|ringback|busy|reorder` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tones {
    #[default]
    Us,
    De,
}

impl std::str::FromStr for Tones {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "us" => Ok(Tones::Us),
            "de" => Ok(Tones::De),
            _ => Err(format!("unknown tone set {s:?} (us, de)")),
        }
    }
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    Dial,
    Ringback,
    Busy,
    Reorder,
    Ringing,
    RingStop,
    /// An on-hook caller ID ([`crate::Phone::wait_caller_id`]).
    CallerId,
}

impl WaitFor {
    fn plan(self, tones: Tones) -> Option<TonePlan> {
        Some(match (self, tones) {
            (WaitFor::Dial, Tones::Us) => plans::US_DIAL,
            (WaitFor::Ringback, Tones::Us) => plans::US_RINGBACK,
            (WaitFor::Busy, Tones::Us) => plans::US_BUSY,
            (WaitFor::Reorder, Tones::Us) => plans::US_REORDER,
            (WaitFor::Dial, Tones::De) => plans::DE_DIAL,
            (WaitFor::Ringback, Tones::De) => plans::DE_RINGBACK,
            // Germany uses the busy tone for congestion too.
            (WaitFor::Busy | WaitFor::Reorder, Tones::De) => plans::DE_BUSY,
            (WaitFor::Ringing | WaitFor::RingStop | WaitFor::CallerId, _) => return None,
        })
    }
}

/// One parsed command. `port` fields are 0-based.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    OffHook(usize),
    OnHook(usize),
    Flash(usize),
    Dial(usize, String),
    Tone(usize, f32, f32),
    Stop(usize),
    Play(usize, PathBuf, bool),
    Record(usize, Duration, PathBuf),
    Measure(usize, Duration),
    /// Line echo on a port (`None`: off).
    Echo(usize, Option<crate::EchoPath>),
    Wait(usize, WaitFor, Duration),
    Status,
    Sleep(Duration),
    Help,
    Quit,
}

/// Text for `help`.
pub const HELP: &str = "\
offhook P | onhook P | flash P        hook actions on port P (1-based)
dial P DIGITS                         DTMF 80/80 ms, -7 dBm0 per tone (',' = 500 ms pause)
tone P HZ DBM0 | stop P               send a steady tone / silence
play P FILE.wav [loop]                send an 8 kHz mono 16-bit WAV
record P SECONDS FILE.wav             record what the phone hears
measure P SECONDS                     dominant frequency, level, second tone
echo P MODEL DELAY_MS ERL_DB | echo P off
                                      line echo: G.168 hybrid model 1..8 (or d2..d9),
                                      bulk delay 0..100 ms, echo return loss in dB
wait P dial|ringback|busy|reorder|ringing|ringstop|callerid [SECS]
                                      callerid: FSK (Bell 202, V.23) or DTMF CLIP with its timing
status | sleep MS | help | quit";

fn port(arg: Option<&&str>) -> Result<usize, String> {
    let a = arg.ok_or("missing port")?;
    match a.parse::<usize>() {
        Ok(p) if p >= 1 => Ok(p - 1),
        _ => Err(format!("bad port {a:?} (ports are 1-based)")),
    }
}

fn number<T: std::str::FromStr>(arg: Option<&&str>, what: &str) -> Result<T, String> {
    let a = arg.ok_or_else(|| format!("missing {what}"))?;
    a.parse().map_err(|_| format!("bad {what} {a:?}"))
}

fn seconds(arg: Option<&&str>) -> Result<Duration, String> {
    let s: f64 = number(arg, "seconds")?;
    if !(0.0..=3600.0).contains(&s) || !s.is_finite() {
        return Err(format!("seconds {s} not in 0..=3600"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Parses one command; `Ok(None)` for a blank line or a `#` comment.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some(&verb) = words.first() else { return Ok(None) };
    if verb.starts_with('#') {
        return Ok(None);
    }
    let a = &words[1..];
    let arity = |min: usize, max: usize| {
        if a.len() < min || a.len() > max {
            Err(format!("{verb}: wrong number of arguments (see help)"))
        } else {
            Ok(())
        }
    };
    let cmd = match verb.to_ascii_lowercase().as_str() {
        "offhook" => {
            arity(1, 1)?;
            Command::OffHook(port(a.first())?)
        }
        "onhook" => {
            arity(1, 1)?;
            Command::OnHook(port(a.first())?)
        }
        "flash" => {
            arity(1, 1)?;
            Command::Flash(port(a.first())?)
        }
        "dial" => {
            arity(2, 2)?;
            Command::Dial(port(a.first())?, a[1].to_string())
        }
        "tone" => {
            arity(3, 3)?;
            let hz: f32 = number(a.get(1), "frequency")?;
            if !(1.0..=3999.0).contains(&hz) {
                return Err(format!("frequency {hz} not in 1..=3999 Hz"));
            }
            let level: f32 = number(a.get(2), "level")?;
            if !(-80.0..=3.0).contains(&level) {
                return Err(format!("level {level} not in -80..=3 dBm0"));
            }
            Command::Tone(port(a.first())?, hz, level)
        }
        "stop" => {
            arity(1, 1)?;
            Command::Stop(port(a.first())?)
        }
        "play" => {
            arity(2, 3)?;
            let repeat = match a.get(2) {
                None => false,
                Some(&"loop") => true,
                Some(x) => return Err(format!("play: expected 'loop', got {x:?}")),
            };
            Command::Play(port(a.first())?, PathBuf::from(a[1]), repeat)
        }
        "record" => {
            arity(3, 3)?;
            Command::Record(port(a.first())?, seconds(a.get(1))?, PathBuf::from(a[2]))
        }
        "measure" => {
            arity(2, 2)?;
            Command::Measure(port(a.first())?, seconds(a.get(1))?)
        }
        "echo" => {
            arity(2, 4)?;
            let p = port(a.first())?;
            if a.len() == 2 && a[1].eq_ignore_ascii_case("off") {
                Command::Echo(p, None)
            } else if a.len() == 4 {
                let model: crate::HybridModel = a[1].parse().map_err(|e| format!("echo: {e}"))?;
                let delay_ms: u32 = number(a.get(2), "delay (ms)")?;
                let erl_db: f32 = number(a.get(3), "ERL (dB)")?;
                let path = crate::EchoPath { delay_ms, erl_db, model };
                path.validate().map_err(|e| format!("echo: {e}"))?;
                Command::Echo(p, Some(path))
            } else {
                return Err("echo: expected 'echo P MODEL DELAY_MS ERL_DB' or 'echo P off'".into());
            }
        }
        "wait" => {
            arity(2, 3)?;
            let what = match a[1].to_ascii_lowercase().as_str() {
                "dial" => WaitFor::Dial,
                "ringback" => WaitFor::Ringback,
                "busy" => WaitFor::Busy,
                "reorder" => WaitFor::Reorder,
                "ringing" => WaitFor::Ringing,
                "ringstop" => WaitFor::RingStop,
                "callerid" => WaitFor::CallerId,
                x => {
                    return Err(format!(
                        "wait: unknown {x:?} (dial, ringback, busy, reorder, ringing, ringstop, callerid)"
                    ))
                }
            };
            let t = if a.len() == 3 { seconds(a.get(2))? } else { DEFAULT_WAIT };
            Command::Wait(port(a.first())?, what, t)
        }
        "status" => {
            arity(0, 0)?;
            Command::Status
        }
        "sleep" => {
            arity(1, 1)?;
            let ms: u64 = number(a.first(), "milliseconds")?;
            Command::Sleep(Duration::from_millis(ms))
        }
        "help" | "?" => Command::Help,
        "quit" | "exit" => Command::Quit,
        _ => return Err(format!("unknown command {verb:?} (try help)")),
    };
    Ok(Some(cmd))
}

/// One line for a caller ID: the fields present, then the timing.
pub fn caller_id_line(r: &crate::CallerIdReport) -> String {
    let f = &r.fields;
    let mut parts = vec![format!("caller ID {:?} {:?}", r.standard, r.kind)];
    let fields = [
        ("number", &f.number),
        ("name", &f.name),
        ("date", &f.date_time),
        ("number absent", &f.number_absence),
        ("name absent", &f.name_absence),
    ];
    for (what, v) in fields {
        if let Some(v) = v {
            parts.push(format!("{what} {v:?}"));
        }
    }
    let raw: Vec<String> = r.raw.iter().map(|b| format!("{b:02x}")).collect();
    parts.push(format!("raw {}", raw.join(" ")));
    let ms = |what: &str, v: Option<f64>| v.map(|v| format!("{what} {v:.1} ms"));
    let timing = [
        ms("ring end to data", r.ring_end_to_data_ms),
        ms("data", Some(r.data_end_ms - r.data_start_ms)),
        ms("data end to ring", r.data_end_to_ring_ms),
        r.dt_as.map(|d| format!("DT-AS {:.1} ms, {:.1} ms before data", d.duration_ms, d.end_to_data_ms)),
        ms("reversal to data", r.reversal_to_data_ms),
    ];
    parts.extend(timing.into_iter().flatten());
    parts.push(format!("feed {:?}", r.feed_at_data));
    parts.join(", ")
}

/// Whether to go on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

fn check_port(sim: &Linesim, p: usize) -> Result<(), LinesimError> {
    if p < sim.port_count() {
        Ok(())
    } else {
        Err(LinesimError::NoSuchPort(p))
    }
}

fn io_err(e: std::io::Error) -> LinesimError {
    LinesimError::Io(e)
}

/// Runs one command, writing its answer to `out`.
pub fn execute(sim: &Linesim, cmd: &Command, tones: Tones, out: &mut dyn Write) -> Result<Flow, LinesimError> {
    let ph = |p: usize| -> Result<crate::Phone, LinesimError> {
        check_port(sim, p)?;
        Ok(sim.phone(p))
    };
    match cmd {
        Command::OffHook(p) => ph(*p)?.off_hook(),
        Command::OnHook(p) => ph(*p)?.on_hook(),
        Command::Flash(p) => ph(*p)?.flash(),
        Command::Dial(p, d) => ph(*p)?.dial(d)?,
        Command::Tone(p, hz, l) => ph(*p)?.play_tone(*hz, *l),
        Command::Stop(p) => ph(*p)?.stop_playback(),
        Command::Play(p, f, r) => ph(*p)?.play_wav(f, *r)?,
        Command::Record(p, d, f) => {
            let x = ph(*p)?.record(*d)?;
            crate::write_wav(f, &x)?;
            writeln!(out, "recorded {} samples to {}", x.len(), f.display()).map_err(io_err)?;
        }
        Command::Measure(p, d) => {
            let m = ph(*p)?.measure(*d)?;
            let second = m.second_freq_hz.map_or(String::new(), |f| format!(" second {f:.1} Hz"));
            writeln!(out, "FXS {}: {:.1} Hz {:.1} dBm0{second}", p + 1, m.freq_hz, m.level_dbm0).map_err(io_err)?;
        }
        Command::Echo(p, path) => {
            ph(*p)?.set_echo(*path)?;
            match path {
                Some(e) => writeln!(out, "FXS {}: echo {e}", p + 1),
                None => writeln!(out, "FXS {}: echo off", p + 1),
            }
            .map_err(io_err)?;
        }
        Command::Wait(p, what, t) => {
            let phone = ph(*p)?;
            match what {
                WaitFor::Ringing => {
                    let r = phone.wait_ringing(*t)?;
                    writeln!(out, "FXS {}: ringing {} ms on / {} ms off", p + 1, r.on_ms, r.off_ms).map_err(io_err)?;
                }
                WaitFor::RingStop => {
                    phone.wait_ring_stop(*t)?;
                    writeln!(out, "FXS {}: ringing stopped", p + 1).map_err(io_err)?;
                }
                WaitFor::CallerId => {
                    let r = phone.wait_caller_id(*t)?;
                    writeln!(out, "FXS {}: {}", p + 1, caller_id_line(&r)).map_err(io_err)?;
                }
                tone => {
                    let plan = tone.plan(tones).ok_or(LinesimError::Timeout)?;
                    let r = phone.wait_for_tone(&plan, *t)?;
                    writeln!(
                        out,
                        "FXS {}: {} after {} ms, {:.1} dBm0, cadence {:?} ms",
                        p + 1,
                        r.name,
                        r.after_ms,
                        r.level_dbm0,
                        r.cadence_ms
                    )
                    .map_err(io_err)?;
                }
            }
        }
        Command::Status => {
            writeln!(out, "{} ports, {}", sim.port_count(), if sim.is_connected() { "connected" } else { "disconnected" })
                .map_err(io_err)?;
            for p in 0..sim.port_count() {
                let phone = sim.phone(p);
                let hook = match phone.hook() {
                    HookState::OnHook => "on-hook",
                    HookState::OffHook => "off-hook",
                };
                let ring = if phone.is_ringing() { " RINGING" } else { "" };
                let echo = phone.echo().map_or(String::new(), |e| format!(", echo {e}"));
                writeln!(out, "FXS {}: {hook}, feed {:?}{ring}{echo}", p + 1, phone.feed()).map_err(io_err)?;
            }
        }
        Command::Sleep(d) => std::thread::sleep(*d),
        Command::Help => writeln!(out, "{HELP}").map_err(io_err)?,
        Command::Quit => return Ok(Flow::Quit),
    }
    Ok(Flow::Continue)
}

/// Splits a line into its `;`-separated commands and runs them. In `strict`
/// mode (scripts, `-e`), the first error stops and is returned.
pub fn run_line(
    sim: &Linesim,
    line: &str,
    tones: Tones,
    out: &mut dyn Write,
    strict: bool,
) -> Result<Flow, String> {
    for part in line.split(';') {
        let r = parse(part).and_then(|c| match c {
            None => Ok(Flow::Continue),
            Some(c) => execute(sim, &c, tones, out).map_err(|e| format!("{}: {e}", part.trim())),
        });
        match r {
            Ok(Flow::Quit) => return Ok(Flow::Quit),
            Ok(Flow::Continue) => {}
            Err(e) if strict => return Err(e),
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
            }
        }
    }
    Ok(Flow::Continue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EchoPath, HybridModel};

    #[test]
    fn parses_every_command_with_one_based_ports() {
        let s = |x: f64| Duration::from_secs_f64(x);
        let cases: Vec<(&str, Command)> = vec![
            ("offhook 1", Command::OffHook(0)),
            ("ONHOOK 4", Command::OnHook(3)),
            ("flash 2", Command::Flash(1)),
            ("dial 1 555*12#", Command::Dial(0, "555*12#".into())),
            ("tone 2 1004 -13.5", Command::Tone(1, 1004.0, -13.5)),
            ("stop 3", Command::Stop(2)),
            ("play 1 a.wav", Command::Play(0, "a.wav".into(), false)),
            ("play 1 a.wav loop", Command::Play(0, "a.wav".into(), true)),
            ("record 1 2.5 out.wav", Command::Record(0, s(2.5), "out.wav".into())),
            ("measure 2 1", Command::Measure(1, s(1.0))),
            ("echo 1 1 20 6", Command::Echo(0, Some(EchoPath { delay_ms: 20, erl_db: 6.0, model: HybridModel::D2 }))),
            ("echo 2 d5 50 10.5", Command::Echo(1, Some(EchoPath { delay_ms: 50, erl_db: 10.5, model: HybridModel::D5 }))),
            ("echo 3 OFF", Command::Echo(2, None)),
            ("wait 1 dial", Command::Wait(0, WaitFor::Dial, DEFAULT_WAIT)),
            ("wait 1 ringing 8", Command::Wait(0, WaitFor::Ringing, s(8.0))),
            ("wait 2 reorder 3", Command::Wait(1, WaitFor::Reorder, s(3.0))),
            ("wait 1 callerid 20", Command::Wait(0, WaitFor::CallerId, s(20.0))),
            ("status", Command::Status),
            ("sleep 250", Command::Sleep(Duration::from_millis(250))),
            ("quit", Command::Quit),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Ok(Some(want)), "{line}");
        }
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse("# a comment"), Ok(None));
    }

    #[test]
    fn rejects_bad_commands_with_a_reason() {
        for (line, why) in [
            ("offhook 0", "1-based"),
            ("offhook x", "bad port"),
            ("offhook", "wrong number"),
            ("dial 1", "wrong number"),
            ("tone 1 5000 -10", "frequency"),
            ("tone 1 1000 10", "level"),
            ("wait 1 music", "unknown"),
            ("measure 1 -1", "not in"),
            ("play 1 a.wav twice", "loop"),
            ("echo 1 9 20 6", "unknown hybrid model"),
            ("echo 1 1 101 6", "bulk delay"),
            ("echo 1 1 20 -3", "ERL"),
            ("echo 1 1 20", "expected"),
            ("echo 1 on", "expected"),
            ("jump 1", "unknown command"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }

    #[test]
    fn caller_id_line_lists_the_fields_present_and_the_timing() {
        let r = crate::CallerIdReport {
            standard: crate::Standard::Bell202,
            kind: crate::MessageType::Sdmf,
            fields: crate::CallerId {
                date_time: Some("01021530".into()),
                number_absence: Some("P".into()),
                ..Default::default()
            },
            raw: vec![0x04, 0x09, 0xab],
            mark_space_hz: Some((1200.0, 2200.0)),
            data_start_ms: 2600.0,
            data_end_ms: 3100.5,
            ring_end_to_data_ms: Some(600.0),
            ring_before_ms: Some(2000.0),
            data_end_to_ring_ms: None,
            dt_as: None,
            reversal_to_data_ms: None,
            feed_at_data: crate::LineFeed::Forward,
        };
        assert_eq!(
            caller_id_line(&r),
            "caller ID Bell202 Sdmf, date \"01021530\", number absent \"P\", raw 04 09 ab, \
             ring end to data 600.0 ms, data 500.5 ms, feed Forward"
        );
    }

    #[test]
    fn tone_sets_map_to_plans() {
        assert_eq!(WaitFor::Busy.plan(Tones::Us), Some(plans::US_BUSY));
        assert_eq!(WaitFor::Reorder.plan(Tones::De), Some(plans::DE_BUSY));
        assert_eq!(WaitFor::Dial.plan(Tones::De), Some(plans::DE_DIAL));
        assert_eq!(WaitFor::Ringing.plan(Tones::Us), None);
        assert_eq!(WaitFor::CallerId.plan(Tones::De), None);
        assert_eq!("DE".parse::<Tones>(), Ok(Tones::De));
        assert!("fr".parse::<Tones>().is_err());
    }
}
