//! linesim against the real sim line card of gw-hal, clocked by a fake rt
//! thread that calls `PcmBus::exchange` every 10 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gw_hal::sim::{SimCard, SimCardConfig, SimFxsPort};
use gw_hal::{Frame, FxsEvent, FxsPort, HookState, LineFeed, PcmBus, RingCadence, FRAME_SAMPLES};
use linesim::{analysis, plans, Linesim, LinesimError};

const PORTS: usize = 2;
/// Port 0 sends this continuous tone towards the phone.
const TONE_HZ: f64 = 1004.0;
const TONE_DBM0: f32 = -10.0;

/// What each channel's generator plays: US reorder on port 1 (480+620 Hz,
/// 250/250 ms), a steady tone on port 0.
fn generate(ch: usize, tick: u64, out: &mut Frame) {
    for (i, s) in out.iter_mut().enumerate() {
        let n = tick * FRAME_SAMPLES as u64 + i as u64;
        let t = n as f64 / 8000.0;
        let v = match ch {
            0 => analysis::amplitude(TONE_DBM0) * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin(),
            _ => {
                if (n / 2000) & 1 == 0 {
                    let a = analysis::amplitude(-20.0);
                    a * ((2.0 * std::f64::consts::PI * 480.0 * t).sin() + (2.0 * std::f64::consts::PI * 620.0 * t).sin())
                } else {
                    0.0
                }
            }
        };
        *s = v.round() as i16;
    }
}

struct Rig {
    card: SimCard,
    ports: Vec<SimFxsPort>,
    /// Everything the rt side received, per channel.
    heard: Arc<Mutex<Vec<Vec<i16>>>>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Rig {
    fn new() -> Rig {
        let mut card =
            SimCard::start(SimCardConfig::fxs("127.0.0.1:0".parse().unwrap(), PORTS)).unwrap();
        let ports = card.take_ports();
        let mut pcm = card.take_pcm().unwrap();
        let heard = Arc::new(Mutex::new(vec![Vec::new(); PORTS]));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (heard, stop) = (heard.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut next = Instant::now();
                let mut tick = 0u64;
                let mut tx = [[0i16; FRAME_SAMPLES]; PORTS];
                let mut rx = [[0i16; FRAME_SAMPLES]; PORTS];
                while !stop.load(Ordering::Relaxed) {
                    for (ch, f) in tx.iter_mut().enumerate() {
                        generate(ch, tick, f);
                    }
                    pcm.exchange(&tx, &mut rx);
                    {
                        let mut h = heard.lock().unwrap();
                        for (ch, f) in rx.iter().enumerate() {
                            h[ch].extend_from_slice(f);
                        }
                    }
                    tick += 1;
                    next += Duration::from_millis(10);
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        Rig { card, ports, heard, stop, ticker: Some(ticker) }
    }

    fn linesim(&self) -> Linesim {
        let sim = Linesim::connect(self.card.local_addr()).unwrap();
        assert_eq!(sim.port_count(), PORTS);
        sim
    }

    fn event(&mut self, port: usize) -> FxsEvent {
        let end = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(e) = self.ports[port].poll_event() {
                return e;
            }
            assert!(Instant::now() < end, "no event on port {port}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Samples heard on `ch` from now on, for `ms` of wall time.
    fn listen(&self, ch: usize, ms: u64) -> Vec<i16> {
        let from = self.heard.lock().unwrap()[ch].len();
        std::thread::sleep(Duration::from_millis(ms));
        self.heard.lock().unwrap()[ch][from..].to_vec()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

const T: Duration = Duration::from_secs(5);

#[test]
fn hook_flash_and_disconnect() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let phone = sim.phone(1);
    phone.off_hook();
    assert_eq!(phone.hook(), HookState::OffHook);
    assert_eq!(rig.event(1), FxsEvent::OffHook);
    assert_eq!(rig.ports[1].hook(), HookState::OffHook);
    phone.flash();
    assert_eq!(rig.event(1), FxsEvent::HookFlash);
    phone.on_hook();
    assert_eq!(rig.event(1), FxsEvent::OnHook);
    phone.off_hook();
    assert_eq!(rig.event(1), FxsEvent::OffHook);
    assert!(rig.card.is_attached());
    // A second linesim is refused while this one is attached.
    let e = Linesim::connect(rig.card.local_addr()).err().expect("second linesim refused");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    sim.disconnect();
    assert_eq!(rig.event(1), FxsEvent::OnHook);
    assert_eq!(rig.ports[0].poll_event(), None);
    // Calls on a phone of a closed link fail with a reason.
    assert!(matches!(phone.dial("1"), Err(LinesimError::Disconnected)));
}

#[test]
fn ringing_cadence_stop_and_ring_trip() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let phone = sim.phone(0);
    rig.ports[0].set_ringing(RingCadence::new(&[300, 200])).unwrap();
    let r = phone.wait_ringing(T).unwrap();
    assert_eq!((r.on_ms, r.off_ms), (300, 200));
    assert!(matches!(phone.wait_ring_stop(Duration::from_millis(600)), Err(LinesimError::Timeout)));
    rig.ports[0].set_ringing(None).unwrap();
    phone.wait_ring_stop(T).unwrap();
    assert!(!phone.is_ringing());
    // Ring trip: answering stops the ringing at once.
    rig.ports[0].set_ringing(RingCadence::new(&[2000, 4000])).unwrap();
    let end = Instant::now() + T;
    while !phone.is_ringing() {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(2));
    }
    phone.off_hook();
    phone.wait_ring_stop(T).unwrap();
    assert_eq!(rig.event(0), FxsEvent::OffHook);
    assert!(!phone.is_ringing());
}

#[test]
fn feed_changes_reach_the_phone() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let phone = sim.phone(1);
    phone.wait_feed(LineFeed::Forward, T).unwrap();
    rig.ports[1].set_line_feed(LineFeed::Reverse).unwrap();
    phone.wait_feed(LineFeed::Reverse, T).unwrap();
    assert_eq!(phone.feed(), LineFeed::Reverse);
    assert!(matches!(phone.wait_feed(LineFeed::Open, Duration::from_millis(100)), Err(LinesimError::Timeout)));
}

#[test]
fn measure_and_record_what_the_gateway_sends() {
    let rig = Rig::new();
    let sim = rig.linesim();
    let m = sim.phone(0).measure(Duration::from_secs(1)).unwrap();
    assert!((f64::from(m.freq_hz) - TONE_HZ).abs() < 2.0, "{m:?}");
    assert!((m.level_dbm0 - TONE_DBM0).abs() < 0.5, "{m:?}");
    let rec = sim.phone(0).record(Duration::from_millis(250)).unwrap();
    assert_eq!(rec.len(), 2000);
    // No port 7 on this card.
    assert!(matches!(sim.phone(7).record(Duration::from_millis(10)), Err(LinesimError::NoSuchPort(7))));
}

#[test]
fn wait_for_tone_by_frequency_and_cadence() {
    let rig = Rig::new();
    let sim = rig.linesim();
    let r = sim.phone(1).wait_for_tone(&plans::US_REORDER, T).unwrap();
    assert_eq!(r.cadence_ms.len(), 4);
    for ms in &r.cadence_ms {
        assert!((230..=270).contains(ms), "{r:?}");
    }
    assert!(matches!(
        sim.phone(1).wait_for_tone(&plans::US_BUSY, Duration::from_millis(2500)),
        Err(LinesimError::Timeout)
    ));
    assert!(matches!(
        sim.phone(0).wait_for_tone(&plans::US_DIAL, Duration::from_millis(1500)),
        Err(LinesimError::Timeout)
    ));
}

#[test]
fn audio_from_the_phone_reaches_rx() {
    let rig = Rig::new();
    let sim = rig.linesim();
    sim.phone(1).play_tone(800.0, -6.0);
    std::thread::sleep(Duration::from_millis(100));
    let heard = rig.listen(1, 1200);
    let m = analysis::measure(&heard[800..]);
    assert!((m.freq_hz - 800.0).abs() < 2.0, "{m:?}");
    assert!((m.level_dbm0 + 6.0).abs() < 0.5, "{m:?}");
    // Port 0 sends silence meanwhile.
    assert!(analysis::level_dbm0(&rig.listen(0, 200)) < -100.0);

    // DTMF: 80 ms on, 80 ms off, -7 dBm0 per tone.
    sim.phone(1).stop_playback();
    std::thread::sleep(Duration::from_millis(100));
    let from = rig.heard.lock().unwrap()[1].len();
    sim.phone(1).dial("5#").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let heard = rig.heard.lock().unwrap()[1][from..].to_vec();
    let start = heard.iter().position(|&s| s != 0).expect("DTMF heard");
    // Slices leave 10 ms of slack at each edge for an rx underrun under load.
    let first = &heard[start..start + 560];
    let m = analysis::measure(first);
    let mut f = [m.freq_hz, m.second_freq_hz.unwrap()];
    f.sort_by(f32::total_cmp);
    assert!((f[0] - 770.0).abs() < 2.0 && (f[1] - 1336.0).abs() < 2.0, "{f:?}");
    assert!(analysis::level_dbm0(&heard[start + 720..start + 1200]) < -60.0);
    let m = analysis::measure(&heard[start + 1360..start + 1840]);
    let mut f = [m.freq_hz, m.second_freq_hz.unwrap()];
    f.sort_by(f32::total_cmp);
    assert!((f[0] - 941.0).abs() < 2.0 && (f[1] - 1477.0).abs() < 2.0, "{f:?}");
    assert!(matches!(sim.phone(1).dial("5x"), Err(LinesimError::BadDigit('x'))));
}

#[test]
fn cli_commands_drive_the_card() {
    use linesim::cli::{run_line, Flow, Tones};
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let mut out = Vec::new();
    let flow = run_line(&sim, "offhook 1; measure 1 0.5 ; wait 2 reorder 5; status", Tones::Us, &mut out, true).unwrap();
    assert_eq!(flow, Flow::Continue);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("FXS 1: 1004."), "{text}");
    assert!(text.contains("US reorder after"), "{text}");
    assert!(text.contains("FXS 1: off-hook, feed Forward"), "{text}");
    assert!(text.contains("FXS 2: on-hook"), "{text}");
    assert_eq!(rig.event(0), FxsEvent::OffHook);
    // Strict mode stops at the first error and names it; interactive goes on.
    let mut out = Vec::new();
    let e = run_line(&sim, "dial 9 1; onhook 1", Tones::Us, &mut out, true).unwrap_err();
    assert!(e.contains("no port 8"), "{e}");
    assert_eq!(sim.phone(0).hook(), HookState::OffHook);
    let flow = run_line(&sim, "dial 9 1; onhook 1; quit; offhook 2", Tones::Us, &mut out, false).unwrap();
    assert_eq!(flow, Flow::Quit);
    assert!(String::from_utf8(out).unwrap().contains("error: dial 9 1"));
    assert_eq!(rig.event(0), FxsEvent::OnHook);
    assert_eq!(sim.phone(1).hook(), HookState::OnHook);
}

#[test]
fn linesim_binary_runs_a_script() {
    let mut rig = Rig::new();
    let addr = rig.card.local_addr().to_string();
    let bin = env!("CARGO_BIN_EXE_linesim");
    let st = std::process::Command::new(bin)
        .args(["--connect", &addr, "-e", "offhook 2; sleep 50; flash 2; wait 2 reorder 5; onhook 2"])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(rig.event(1), FxsEvent::OffHook);
    assert_eq!(rig.event(1), FxsEvent::HookFlash);
    assert_eq!(rig.event(1), FxsEvent::OnHook);
    // The card frees the link once the process is gone.
    let end = Instant::now() + T;
    while rig.card.is_attached() {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(2));
    }
    // A failing wait makes the script fail.
    let out = std::process::Command::new(bin)
        .args(["--connect", &addr, "-e", "wait 2 busy 1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
}

#[test]
fn line_echo_of_what_the_phone_hears_reaches_the_card() {
    let rig = Rig::new();
    let sim = rig.linesim();
    let phone = sim.phone(0);
    // Silent phone on a perfect line: the card hears nothing.
    let quiet = rig.listen(0, 300);
    assert!(analysis::level_dbm0(&quiet[800..]) < -100.0);

    let path = linesim::EchoPath { delay_ms: 30, erl_db: 6.0, model: linesim::HybridModel::D2 };
    phone.set_echo(Some(path)).unwrap();
    assert_eq!(phone.echo(), Some(path));
    let heard = rig.listen(0, 700);
    // Skip the start (delay line filling, frames in flight).
    let tail = &heard[heard.len() - 3200..];
    let want = f64::from(TONE_DBM0) - path.loss_at(TONE_HZ);
    let got = f64::from(analysis::tone_level_dbm0(tail, TONE_HZ));
    assert!((got - want).abs() < 0.5, "echo of the {TONE_HZ} Hz tone at {got:.2} dBm0, want {want:.2}");
    // Port 1 has no echo path: its phone still sends silence.
    assert!(analysis::level_dbm0(&rig.listen(1, 200)) < -100.0);

    // Out-of-range paths are refused and leave the echo as it was.
    let bad = linesim::EchoPath { delay_ms: 500, ..path };
    assert!(matches!(phone.set_echo(Some(bad)), Err(LinesimError::EchoPath(_))));
    assert_eq!(phone.echo(), Some(path));

    phone.set_echo(None).unwrap();
    assert_eq!(phone.echo(), None);
    let after = rig.listen(0, 400);
    assert!(analysis::level_dbm0(&after[after.len() - 1600..]) < -100.0);
}
