//! The `linesim` command language: one command per line or `;`-separated.
//! Ports are 1-based here (FXS 1..n), 0-based in the library.
//!
//! ```text
//! offhook P | onhook P | flash P | dial P DIGITS | tone P HZ DBM0 | stop P
//! play P FILE.wav [loop] | record P SECONDS FILE.wav | measure P SECONDS
//! wait P dial|ringback|busy|reorder|ringing|ringstop|callerid [SECS]
//! status | sleep MS | help | quit
//! co F ring [MS...] | co F stopring | co F cid bell|v23|dtmf NUMBER [NAME]
//! co F answer [rev] | co F disconnect cpc MS|rev|busy
//! co F progress dial|ringback|busy|reorder|off | co F country us|de|uk
//! co F tone HZ DBM0 | co F stop | co F measure SECONDS | co F digits
//! co F wait seize|release [SECS] | co F wait digits N [SECS]
//! ```
//!
//! `co F` is the central office on FXO port F (1-based among the FXO
//! ports: `co 1` is the board's "FXO 1").

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
    /// The central office on FXO port `.0` (0-based among the FXO ports).
    Co(usize, CoAction),
    Status,
    Sleep(Duration),
    Help,
    Quit,
}

/// Call-progress tones `co F progress` plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Dial,
    Ringback,
    Busy,
    Reorder,
    Off,
}

/// What `co F ...` does.
#[derive(Debug, Clone, PartialEq)]
pub enum CoAction {
    /// Empty: the country's cadence.
    Ring(Vec<u16>),
    StopRing,
    CallerId(crate::Standard, String, String),
    Answer { reversal: bool },
    Disconnect(crate::Disconnect),
    Progress(Progress),
    Country(crate::Country),
    Tone(f32, f32),
    Stop,
    Measure(Duration),
    Digits,
    WaitSeized(Duration),
    WaitReleased(Duration),
    WaitDigits(usize, Duration),
}

fn parse_co(a: &[&str]) -> Result<Command, String> {
    let f = port(a.first())?;
    let Some(&what) = a.get(1) else { return Err("co: missing action (see help)".into()) };
    let r = &a[2..];
    let arity = |min: usize, max: usize| {
        if r.len() < min || r.len() > max {
            Err(format!("co {what}: wrong number of arguments (see help)"))
        } else {
            Ok(())
        }
    };
    let act = match what.to_ascii_lowercase().as_str() {
        "ring" => {
            arity(0, 8)?;
            let c = r.iter().map(|x| number::<u16>(Some(x), "period")).collect::<Result<Vec<_>, _>>()?;
            if !c.is_empty() && gw_hal::RingCadence::new(&c).is_none() {
                return Err("co ring: 1..4 on/off pairs of 1..65535 ms".into());
            }
            CoAction::Ring(c)
        }
        "stopring" => {
            arity(0, 0)?;
            CoAction::StopRing
        }
        "cid" => {
            if r.len() < 2 {
                return Err("co cid: expected bell|v23|dtmf NUMBER [NAME]".into());
            }
            let std = match r[0].to_ascii_lowercase().as_str() {
                "bell" | "bell202" => crate::Standard::Bell202,
                "v23" | "etsi" => crate::Standard::V23,
                "dtmf" => crate::Standard::DtmfClip,
                x => return Err(format!("co cid: unknown standard {x:?} (bell, v23, dtmf)")),
            };
            let number = if r[1] == "-" { String::new() } else { r[1].to_string() };
            CoAction::CallerId(std, number, r[2..].join(" "))
        }
        "answer" => {
            arity(0, 1)?;
            match r.first() {
                None => CoAction::Answer { reversal: false },
                Some(x) if x.eq_ignore_ascii_case("rev") => CoAction::Answer { reversal: true },
                Some(x) => return Err(format!("co answer: expected 'rev', got {x:?}")),
            }
        }
        "disconnect" => {
            arity(1, 2)?;
            CoAction::Disconnect(match r[0].to_ascii_lowercase().as_str() {
                "cpc" => crate::Disconnect::Cpc { ms: number(r.get(1), "CPC ms")? },
                "rev" if r.len() == 1 => crate::Disconnect::Reversal,
                "busy" if r.len() == 1 => crate::Disconnect::BusyTone,
                x => return Err(format!("co disconnect: expected cpc MS, rev or busy, got {x:?}")),
            })
        }
        "progress" => {
            arity(1, 1)?;
            CoAction::Progress(match r[0].to_ascii_lowercase().as_str() {
                "dial" => Progress::Dial,
                "ringback" => Progress::Ringback,
                "busy" => Progress::Busy,
                "reorder" => Progress::Reorder,
                "off" => Progress::Off,
                x => return Err(format!("co progress: unknown tone {x:?}")),
            })
        }
        "country" => {
            arity(1, 1)?;
            CoAction::Country(r[0].parse()?)
        }
        "tone" => {
            arity(2, 2)?;
            let hz: f32 = number(r.first(), "frequency")?;
            if !(1.0..=3999.0).contains(&hz) {
                return Err(format!("frequency {hz} not in 1..=3999 Hz"));
            }
            let level: f32 = number(r.get(1), "level")?;
            if !(-80.0..=3.0).contains(&level) {
                return Err(format!("level {level} not in -80..=3 dBm0"));
            }
            CoAction::Tone(hz, level)
        }
        "stop" => {
            arity(0, 0)?;
            CoAction::Stop
        }
        "measure" => {
            arity(1, 1)?;
            CoAction::Measure(seconds(r.first())?)
        }
        "digits" => {
            arity(0, 0)?;
            CoAction::Digits
        }
        "wait" => {
            let Some(&on) = r.first() else { return Err("co wait: expected seize, release or digits".into()) };
            match on.to_ascii_lowercase().as_str() {
                "seize" | "release" => {
                    arity(1, 2)?;
                    let t = if r.len() == 2 { seconds(r.get(1))? } else { DEFAULT_WAIT };
                    if on.eq_ignore_ascii_case("seize") {
                        CoAction::WaitSeized(t)
                    } else {
                        CoAction::WaitReleased(t)
                    }
                }
                "digits" => {
                    arity(2, 3)?;
                    let n: usize = number(r.get(1), "digit count")?;
                    let t = if r.len() == 3 { seconds(r.get(2))? } else { DEFAULT_WAIT };
                    CoAction::WaitDigits(n, t)
                }
                x => return Err(format!("co wait: unknown {x:?} (seize, release, digits)")),
            }
        }
        x => return Err(format!("co: unknown action {x:?} (see help)")),
    };
    Ok(Command::Co(f, act))
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
status | sleep MS | help | quit
co F ...                              the central office on FXO port F (1-based among FXO ports):
  ring [MS...] | stopring             ring (the country's cadence without periods)
  cid bell|v23|dtmf NUMBER [NAME]     incoming call with caller ID ('-' = no number), then ringing
  answer [rev] | disconnect cpc MS|rev|busy
  progress dial|ringback|busy|reorder|off | country us|de|uk
  tone HZ DBM0 | stop | measure SECONDS
  digits | wait seize|release [SECS] | wait digits N [SECS]";

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
        "co" => parse_co(a)?,
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
        Command::Co(f, act) => {
            let fxo = sim.fxo_ports();
            let Some(&p) = fxo.get(*f) else { return Err(LinesimError::NoSuchPort(*f)) };
            let co = sim.co(p);
            let name = format!("FXO {}", f + 1);
            match act {
                CoAction::Ring(c) => co.ring(c)?,
                CoAction::StopRing => co.stop_ring()?,
                CoAction::CallerId(std, number, who) => co.send_caller_id(*std, number, who)?,
                CoAction::Answer { reversal } => co.answer(*reversal)?,
                CoAction::Disconnect(d) => co.disconnect(*d)?,
                CoAction::Progress(t) => match t {
                    Progress::Dial => co.play_dial_tone()?,
                    Progress::Ringback => co.play_ringback()?,
                    Progress::Busy => co.play_busy()?,
                    Progress::Reorder => co.play_reorder()?,
                    Progress::Off => co.stop_tone()?,
                },
                CoAction::Country(c) => co.set_country(*c)?,
                CoAction::Tone(hz, l) => co.play_tone(*hz, *l)?,
                CoAction::Stop => co.stop_playback()?,
                CoAction::Measure(d) => {
                    let m = co.measure(*d)?;
                    let second = m.second_freq_hz.map_or(String::new(), |f| format!(" second {f:.1} Hz"));
                    writeln!(out, "{name}: {:.1} Hz {:.1} dBm0{second}", m.freq_hz, m.level_dbm0).map_err(io_err)?;
                }
                CoAction::Digits => writeln!(out, "{name}: digits {:?}", co.collected_digits()).map_err(io_err)?,
                CoAction::WaitSeized(t) => {
                    co.wait_seized(*t)?;
                    writeln!(out, "{name}: seized").map_err(io_err)?;
                }
                CoAction::WaitReleased(t) => {
                    co.wait_released(*t)?;
                    writeln!(out, "{name}: released").map_err(io_err)?;
                }
                CoAction::WaitDigits(n, t) => {
                    let d = co.wait_digits(*n, *t)?;
                    writeln!(out, "{name}: digits {d:?}").map_err(io_err)?;
                }
            }
        }
        Command::Status => {
            writeln!(out, "{} ports, {}", sim.port_count(), if sim.is_connected() { "connected" } else { "disconnected" })
                .map_err(io_err)?;
            for (f, p) in sim.fxo_ports().into_iter().enumerate() {
                let co = sim.co(p);
                let ring = if co.is_ringing() { " RINGING" } else { "" };
                let seized = if co.is_seized() { "seized" } else { "idle" };
                writeln!(
                    out,
                    "FXO {} (port {}): {seized}, polarity {:?}, digits {:?}{ring}",
                    f + 1,
                    p + 1,
                    co.polarity(),
                    co.collected_digits()
                )
                .map_err(io_err)?;
            }
            for p in 0..sim.port_count() {
                if sim.port_kind(p) == Some(crate::PortKind::Fxo) {
                    continue;
                }
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
            ("co 1 ring", Command::Co(0, CoAction::Ring(vec![]))),
            ("co 2 ring 400 200 400 2000", Command::Co(1, CoAction::Ring(vec![400, 200, 400, 2000]))),
            ("co 1 stopring", Command::Co(0, CoAction::StopRing)),
            (
                "co 1 cid bell 5551234 JOHN DOE",
                Command::Co(0, CoAction::CallerId(crate::Standard::Bell202, "5551234".into(), "JOHN DOE".into())),
            ),
            ("co 1 cid dtmf -", Command::Co(0, CoAction::CallerId(crate::Standard::DtmfClip, String::new(), String::new()))),
            ("co 1 answer rev", Command::Co(0, CoAction::Answer { reversal: true })),
            ("co 1 answer", Command::Co(0, CoAction::Answer { reversal: false })),
            ("co 1 disconnect cpc 600", Command::Co(0, CoAction::Disconnect(crate::Disconnect::Cpc { ms: 600 }))),
            ("co 1 disconnect rev", Command::Co(0, CoAction::Disconnect(crate::Disconnect::Reversal))),
            ("co 1 disconnect busy", Command::Co(0, CoAction::Disconnect(crate::Disconnect::BusyTone))),
            ("co 1 progress ringback", Command::Co(0, CoAction::Progress(Progress::Ringback))),
            ("co 1 country uk", Command::Co(0, CoAction::Country(crate::Country::Uk))),
            ("co 1 tone 1004 -10", Command::Co(0, CoAction::Tone(1004.0, -10.0))),
            ("co 1 wait seize 3", Command::Co(0, CoAction::WaitSeized(s(3.0)))),
            ("co 1 wait release", Command::Co(0, CoAction::WaitReleased(DEFAULT_WAIT))),
            ("co 1 wait digits 7 10", Command::Co(0, CoAction::WaitDigits(7, s(10.0)))),
            ("co 1 digits", Command::Co(0, CoAction::Digits)),
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
            ("co 0 ring", "1-based"),
            ("co 1 ring 100", "pairs"),
            ("co 1 cid fax 123", "unknown standard"),
            ("co 1 disconnect cpc", "missing CPC"),
            ("co 1 disconnect slam", "expected cpc"),
            ("co 1 country fr", "unknown country"),
            ("co 1 wait digits", "wrong number"),
            ("co 1", "missing action"),
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
