//! linesim's central office against the FXO ports of the real sim line card
//! of gw-hal, clocked by a fake rt thread that calls `PcmBus::exchange`
//! every 10 ms. The card side "dials" and "talks" by queueing samples on its
//! channel, and checks what it hears with linesim's own receivers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gw_hal::sim::{SimCard, SimCardConfig, SimFxoPort};
use gw_hal::{FxoEvent, FxoPort, PcmBus, Polarity, FRAME_SAMPLES};
use linesim::callerid::{self, Standard};
use linesim::{analysis, plans, Country, Disconnect, Linesim, LinesimError, PortKind, ToneDetector, TonePlan};

/// One FXS port (0), then FXO ports 1 and 2.
const CHANNELS: usize = 3;
const T: Duration = Duration::from_secs(5);

struct Rig {
    card: SimCard,
    fxo: Vec<SimFxoPort>,
    /// Everything the rt side received, per channel.
    heard: Arc<Mutex<Vec<Vec<i16>>>>,
    /// What the rt side sends, per channel (silence when empty).
    send: Arc<Mutex<Vec<VecDeque<i16>>>>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Rig {
    fn new() -> Rig {
        let listen = "127.0.0.1:0".parse().unwrap();
        let mut card = SimCard::start(SimCardConfig { listen, ports: 1, fxo_ports: 2 }).unwrap();
        let fxo = card.take_fxo_ports();
        let mut pcm = card.take_pcm().unwrap();
        let heard = Arc::new(Mutex::new(vec![Vec::new(); CHANNELS]));
        let send = Arc::new(Mutex::new(vec![VecDeque::new(); CHANNELS]));
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (heard, send, stop) = (heard.clone(), send.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut next = Instant::now();
                let mut tx = [[0i16; FRAME_SAMPLES]; CHANNELS];
                let mut rx = [[0i16; FRAME_SAMPLES]; CHANNELS];
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut q = send.lock().unwrap();
                        for (ch, f) in tx.iter_mut().enumerate() {
                            for s in f.iter_mut() {
                                *s = q[ch].pop_front().unwrap_or(0);
                            }
                        }
                    }
                    pcm.exchange(&tx, &mut rx);
                    {
                        let mut h = heard.lock().unwrap();
                        for (ch, f) in rx.iter().enumerate() {
                            h[ch].extend_from_slice(f);
                        }
                    }
                    next += Duration::from_millis(10);
                    if let Some(d) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
            })
        };
        Rig { card, fxo, heard, send, stop, ticker: Some(ticker) }
    }

    fn linesim(&self) -> Linesim {
        Linesim::connect(self.card.local_addr()).unwrap()
    }

    /// Next event of FXO port `k` (0-based among the FXO ports), with the
    /// sample count heard on its channel when it was seen.
    fn event(&mut self, k: usize, within: Duration) -> (FxoEvent, usize) {
        let end = Instant::now() + within;
        loop {
            if let Some(e) = self.fxo[k].poll_event() {
                return (e, self.heard_len(k + 1));
            }
            assert!(Instant::now() < end, "no event on FXO port {k}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn no_event(&mut self, k: usize, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
        assert_eq!(self.fxo[k].poll_event(), None);
    }

    fn heard_len(&self, ch: usize) -> usize {
        self.heard.lock().unwrap()[ch].len()
    }

    fn heard_since(&self, ch: usize, from: usize) -> Vec<i16> {
        self.heard.lock().unwrap()[ch][from..].to_vec()
    }

    /// Samples heard on `ch` from now on, for `ms` of wall time.
    fn listen(&self, ch: usize, ms: u64) -> Vec<i16> {
        let from = self.heard_len(ch);
        std::thread::sleep(Duration::from_millis(ms));
        self.heard_since(ch, from)
    }

    fn send(&self, ch: usize, samples: &[i16]) {
        self.send.lock().unwrap()[ch].extend(samples.iter().copied());
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

/// Whether `tone` is recognised in `x` (fed frame by frame).
fn has_tone(x: &[i16], tone: TonePlan) -> bool {
    let mut det = ToneDetector::new(tone);
    x.chunks_exact(FRAME_SAMPLES).any(|f| det.push_frame(f).is_some())
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn fxo_ports_are_announced_and_only_they_have_a_central_office() {
    let rig = Rig::new();
    let sim = rig.linesim();
    assert_eq!(sim.port_count(), 3);
    assert_eq!(sim.port_kind(0), Some(PortKind::Fxs));
    assert_eq!(sim.port_kind(2), Some(PortKind::Fxo));
    assert_eq!(sim.fxo_ports(), vec![1, 2]);
    assert!(matches!(sim.co(0).ring(&[]), Err(LinesimError::NotFxo(0))));
    assert!(matches!(sim.co(1).ring(&[100]), Err(LinesimError::BadCadence)));
}

#[test]
fn seize_gives_dial_tone_then_dtmf_digits_are_collected_and_release_is_seen() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let co = sim.co(1);
    assert!(!co.is_seized());
    // An idle line is silent.
    assert!(analysis::level_dbm0(&rig.listen(1, 200)) < -100.0);
    rig.fxo[0].seize(true).unwrap();
    co.wait_seized(T).unwrap();
    let dial = rig.listen(1, 1500);
    assert!(has_tone(&dial, plans::US_DIAL), "US dial tone on the FXO channel");
    // The card dials DTMF; the first digit stops the dial tone.
    rig.send(1, &analysis::dtmf("5551234#", 60, 60, -10.0).unwrap());
    assert_eq!(co.wait_digits(8, T).unwrap(), "5551234#");
    let after = rig.listen(1, 300);
    assert!(analysis::level_dbm0(&after[800..]) < -100.0, "no dial tone after the first digit");
    assert_eq!(co.seizures(), (1, 0));
    // A break longer than a flash is a release; the next call starts afresh.
    rig.fxo[0].seize(false).unwrap();
    co.wait_released(T).unwrap();
    assert_eq!(co.seizures(), (1, 1));
    rig.fxo[0].seize(true).unwrap();
    wait_until("second call", || co.seizures() == (2, 1));
    assert_eq!(co.collected_digits(), "");
    // German tones on port 2, other port unaffected.
    let co2 = sim.co(2);
    co2.set_country(Country::De).unwrap();
    rig.fxo[1].seize(true).unwrap();
    co2.wait_seized(T).unwrap();
    assert!(has_tone(&rig.listen(2, 1500), plans::DE_DIAL));
    assert_eq!(rig.fxo[0].poll_event(), None);
}

#[test]
fn pulse_digits_and_a_flash_are_told_apart_by_break_length() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let co = sim.co(1);
    let mut port = rig.fxo.remove(0);
    port.seize(true).unwrap();
    co.wait_seized(T).unwrap();
    let mut pulse = |n: usize| {
        for _ in 0..n {
            // 60 ms break, then about 40 ms make (wall time).
            while port.flash(60) == Err(gw_hal::PortError::InvalidState) {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(600));
    };
    pulse(3);
    pulse(10);
    pulse(1);
    assert_eq!(co.wait_digits(3, T).unwrap(), "301");
    assert_eq!(co.flashes(), 0);
    while port.flash(400) == Err(gw_hal::PortError::InvalidState) {
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_until("flash", || co.flashes() == 1);
    assert_eq!(co.collected_digits(), "301");
    assert!(co.is_seized());
    assert_eq!(co.seizures(), (1, 0), "a flash is not a release");
}

#[test]
fn ring_with_bell202_caller_id_between_first_and_second_ring_then_ring_trip() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let co = sim.co(2);
    let start = rig.heard_len(2);
    co.send_caller_id(Standard::Bell202, "5551234", "ALICE").unwrap();
    let (e, on1) = rig.event(1, T);
    assert_eq!(e, FxoEvent::RingStart);
    assert!(rig.fxo[1].line_status().ringing);
    let (e, off1) = rig.event(1, T);
    assert_eq!(e, FxoEvent::RingStop);
    let (e, on2) = rig.event(1, Duration::from_secs(8));
    assert_eq!(e, FxoEvent::RingStart);
    // US cadence, to the polling's and the fake rt thread's jitter (the
    // cadence itself is frame-exact on the linesim side).
    let ms = |a: usize, b: usize| (b - a) as f64 / 8.0;
    assert!((ms(on1, off1) - 2000.0).abs() < 250.0, "{}", ms(on1, off1));
    assert!((ms(off1, on2) - 4000.0).abs() < 250.0, "{}", ms(off1, on2));
    // The card heard the FSK in the off period: decode it with linesim's receiver.
    let heard = rig.heard_since(2, start);
    let m = callerid::decode(&heard);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].standard, Standard::Bell202);
    assert_eq!(m[0].fields.number.as_deref(), Some("5551234"));
    assert_eq!(m[0].fields.name.as_deref(), Some("ALICE"));
    let data_start = start + m[0].signal_start;
    let data_end = start + m[0].signal_end;
    // linesim sends it 600 ms after the ring (GR-30: >= 500); margin for polling.
    assert!(data_start > off1 + 8 * 400, "data well after the first ring");
    assert!(data_end + 8 * 200 < on2, "data ends >= 200 ms before the second ring");
    // Seizing during ringing trips the ring; no dial tone on an incoming call.
    rig.fxo[1].seize(true).unwrap();
    let (e, _) = rig.event(1, T);
    assert_eq!(e, FxoEvent::RingStop);
    assert!(!co.is_ringing());
    let quiet = rig.listen(2, 400);
    assert!(analysis::level_dbm0(&quiet[800..]) < -100.0);
    rig.no_event(1, 300);
}

#[test]
fn v23_caller_id_before_the_first_ring_with_line_reversal() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let co = sim.co(1);
    co.set_country(Country::De).unwrap();
    let start = rig.heard_len(1);
    co.send_caller_id(Standard::V23, "0301234567", "BOB").unwrap();
    let (e, rev) = rig.event(0, T);
    assert_eq!(e, FxoEvent::PolarityReversal);
    assert_eq!(rig.fxo[0].line_status().polarity, Polarity::Reversed);
    let (e, back) = rig.event(0, T);
    assert_eq!(e, FxoEvent::PolarityReversal);
    let (e, ring) = rig.event(0, T);
    assert_eq!(e, FxoEvent::RingStart);
    let heard = rig.heard_since(1, start);
    let m = callerid::decode(&heard);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].standard, Standard::V23);
    assert_eq!(m[0].fields.number.as_deref(), Some("0301234567"));
    assert_eq!(m[0].fields.name.as_deref(), Some("BOB"));
    let (data_start, data_end) = (start + m[0].signal_start, start + m[0].signal_end);
    assert!(rev < data_start && data_end < back && back < ring, "{rev} {data_start} {data_end} {back} {ring}");
    // DT-AS between the reversal and the data.
    let dt = callerid::detect_dt_as(&heard[..m[0].signal_start]);
    assert_eq!(dt.len(), 1);
    assert!((dt[0].duration_ms() - 100.0).abs() < 10.0);
    // German cadence: 1 s on.
    let (e, off) = rig.event(0, T);
    assert_eq!(e, FxoEvent::RingStop);
    assert!(((off - ring) as f64 / 8.0 - 1000.0).abs() < 250.0);
    co.stop_ring().unwrap();
    rig.no_event(0, 300);
}

#[test]
fn dtmf_clip_before_the_first_ring() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let co = sim.co(1);
    let start = rig.heard_len(1);
    co.send_caller_id(Standard::DtmfClip, "0123456789", "").unwrap();
    assert_eq!(rig.event(0, T).0, FxoEvent::PolarityReversal);
    assert_eq!(rig.event(0, T).0, FxoEvent::PolarityReversal);
    assert_eq!(rig.event(0, T).0, FxoEvent::RingStart);
    let m = callerid::decode_dtmf_clip(&rig.heard_since(1, start));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].fields.number.as_deref(), Some("0123456789"));
    assert!(matches!(co.send_caller_id(Standard::DtmfClip, "12x", ""), Err(LinesimError::BadDigit('x'))));
}

#[test]
fn answer_with_and_without_reversal_and_the_three_disconnects() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let co = sim.co(1);
    rig.fxo[0].seize(true).unwrap();
    co.wait_seized(T).unwrap();
    rig.send(1, &analysis::dtmf("42", 60, 60, -10.0).unwrap());
    co.wait_digits(2, T).unwrap();
    co.play_ringback().unwrap();
    // The first 2 s burst of US ringback: 440 + 480 Hz at -13 dBm0 each.
    let rb = rig.listen(1, 1500);
    for f in [440.0, 480.0] {
        let l = analysis::tone_level_dbm0(&rb[1600..], f);
        assert!((l + 13.0).abs() < 1.0, "{f} Hz at {l} dBm0");
    }
    // Answer with reversal; far end hangs up with a reversal back.
    co.answer(true).unwrap();
    assert_eq!(rig.event(0, T).0, FxoEvent::PolarityReversal);
    assert_eq!(rig.fxo[0].line_status().polarity, Polarity::Reversed);
    let talk = rig.listen(1, 300);
    assert!(analysis::level_dbm0(&talk[800..]) < -100.0, "ringback stopped at answer");
    co.disconnect(Disconnect::Reversal).unwrap();
    assert_eq!(rig.event(0, T).0, FxoEvent::PolarityReversal);
    assert_eq!(rig.fxo[0].line_status().polarity, Polarity::Normal);
    // Answer without reversal: nothing on the loop; CPC disconnect.
    co.answer(false).unwrap();
    rig.no_event(0, 200);
    co.disconnect(Disconnect::Cpc { ms: 300 }).unwrap();
    let (e, drop_at) = rig.event(0, T);
    assert_eq!(e, FxoEvent::LoopCurrentDrop);
    assert_eq!(rig.fxo[0].line_status().loop_current_ma, Some(0));
    let (e, back_at) = rig.event(0, T);
    assert_eq!(e, FxoEvent::LoopCurrentRestore);
    let open_ms = (back_at - drop_at) as f64 / 8.0;
    assert!((open_ms - 300.0).abs() < 150.0, "CPC {open_ms} ms");
    // Busy tone only: no line signal, the card hears busy.
    co.answer(false).unwrap();
    co.disconnect(Disconnect::BusyTone).unwrap();
    assert!(has_tone(&rig.listen(1, 2600), plans::US_BUSY));
    assert_eq!(rig.fxo[0].poll_event(), None);
    co.play_reorder().unwrap();
    assert!(has_tone(&rig.listen(1, 1400), plans::US_REORDER));
    co.stop_tone().unwrap();
}

#[test]
fn audio_both_ways_and_line_echo() {
    let mut rig = Rig::new();
    let sim = rig.linesim();
    let co = sim.co(2);
    rig.fxo[1].seize(true).unwrap();
    co.wait_seized(T).unwrap();
    co.answer(false).unwrap();
    // Far end to card.
    co.play_tone(1004.0, -10.0).unwrap();
    let x = rig.listen(2, 1200);
    let m = analysis::measure(&x[1600..]);
    assert!((m.freq_hz - 1004.0).abs() < 2.0, "{m:?}");
    assert!((m.level_dbm0 + 10.0).abs() < 0.5, "{m:?}");
    co.stop_playback().unwrap();
    // Card to far end.
    let mut tone = Vec::new();
    analysis::push_tones(&mut tone, &[(1500.0, -12.0)], 1500);
    rig.send(2, &tone);
    std::thread::sleep(Duration::from_millis(200));
    let m = co.measure(Duration::from_millis(1000)).unwrap();
    assert!((m.freq_hz - 1500.0).abs() < 2.0, "{m:?}");
    assert!((m.level_dbm0 + 12.0).abs() < 0.5, "{m:?}");
    // Line echo of what the card sends comes back to the card.
    std::thread::sleep(Duration::from_millis(400));
    let path = linesim::EchoPath { delay_ms: 20, erl_db: 6.0, model: linesim::HybridModel::D2 };
    co.set_echo(Some(path)).unwrap();
    let mut tone = Vec::new();
    analysis::push_tones(&mut tone, &[(1000.0, -10.0)], 1200);
    let from = rig.heard_len(2);
    rig.send(2, &tone);
    std::thread::sleep(Duration::from_millis(1300));
    let heard = rig.heard_since(2, from);
    let tail = &heard[4000..7200];
    let want = -10.0 - path.loss_at(1000.0);
    let got = f64::from(analysis::tone_level_dbm0(tail, 1000.0));
    assert!((got - want).abs() < 0.5, "echo at {got:.2} dBm0, want {want:.2}");
}

#[test]
fn the_cli_scripts_the_central_office() {
    let mut rig = Rig::new();
    let addr = rig.card.local_addr().to_string();
    let bin = env!("CARGO_BIN_EXE_linesim");
    let script = "co 1 wait seize 5; co 1 wait digits 3 5; co 1 answer rev; sleep 200; co 1 disconnect cpc 300; \
                  sleep 600; co 2 ring 200 300; sleep 700; co 2 stopring";
    let child = std::process::Command::new(bin)
        .args(["--connect", &addr, "-e", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("attach", || rig.card.is_attached());
    rig.fxo[0].seize(true).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    rig.send(1, &analysis::dtmf("911", 60, 60, -10.0).unwrap());
    assert_eq!(rig.event(0, T).0, FxoEvent::PolarityReversal);
    assert_eq!(rig.event(0, T).0, FxoEvent::LoopCurrentDrop);
    assert_eq!(rig.event(0, T).0, FxoEvent::LoopCurrentRestore);
    assert_eq!(rig.event(1, T).0, FxoEvent::RingStart);
    assert_eq!(rig.event(1, T).0, FxoEvent::RingStop);
    assert_eq!(rig.event(1, T).0, FxoEvent::RingStart);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FXO 1: seized") && text.contains("FXO 1: digits \"911\""), "{text}");
}
