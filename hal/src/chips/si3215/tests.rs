//! Tests of the Si3215 driver: `embedded-hal-mock` scripts that pin down every
//! register access (init, each interrupt), and whole calls against the
//! register-level model (`model.rs`).

use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as PinT};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as SpiT};

use super::model::{Faults, ModelInt, ModelReset, ModelSpi, Si3215Model, MODEL_CAL};
use super::*;
use crate::{FxsEvent, FxsPort, HookState, LineFeed, PortError, RingCadence};

// ---------------------------------------------------------------------------
// Mock scripts. Each byte is its own transaction (CS released after every byte).

#[derive(Default)]
struct Script(Vec<SpiT<u8>>);

impl Script {
    fn byte_out(&mut self, b: u8) {
        self.0.push(SpiT::transaction_start());
        self.0.push(SpiT::write_vec(vec![b]));
        self.0.push(SpiT::transaction_end());
    }

    /// Direct write: address (bit 7 clear), then data.
    fn w(&mut self, reg: u8, val: u8) -> &mut Self {
        self.byte_out(reg);
        self.byte_out(val);
        self
    }

    /// Direct read: address with bit 7 set, then one byte in.
    fn r(&mut self, reg: u8, val: u8) -> &mut Self {
        self.byte_out(reg | 0x80);
        self.0.push(SpiT::transaction_start());
        self.0.push(SpiT::read_vec(vec![val]));
        self.0.push(SpiT::transaction_end());
        self
    }

    /// Indirect write: status idle, IDA low, IDA high, IAA.
    fn iw(&mut self, addr: u8, val: u16) -> &mut Self {
        self.r(31, 0).w(28, val as u8).w(29, (val >> 8) as u8).w(30, addr)
    }

    /// Indirect read: status idle, IAA, status idle, IDA low, IDA high.
    fn ir(&mut self, addr: u8, val: u16) -> &mut Self {
        self.r(31, 0).w(30, addr).r(31, 0).r(28, val as u8).r(29, (val >> 8) as u8)
    }
}

/// The indirect register table written at init, Si3215 addresses (literal here
/// so a change in the driver's table shows up as a failing script).
const IR_TABLE: [(u8, u16); 27] = [
    (0, 0x7B30),
    (1, 0x0063),
    (2, 0x0000),
    (3, 0x7870),
    (4, 0x007D),
    (5, 0x0000),
    (6, 0x0000),
    (7, 0x7EF0),
    (8, 0x0160),
    (9, 0x0000),
    (13, 0x4000),
    (14, 0x4000),
    (15, 0x1000),
    (16, 0x3600),
    (17, 0x1000),
    (18, 0x0200),
    (19, 0x07C0),
    (20, 0x2600),
    (21, 0x1B80),
    (22, 0x8000),
    (23, 0x0320),
    (24, 0x008C),
    (25, 0x0100),
    (26, 0x0010),
    (27, 0x0C00),
    (64, 0x0C00),
    (66, 0x1000),
];

const CAL: [u8; 10] = [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x07];

fn mock_config() -> Config {
    Config { tx_start: 264, rx_start: 264, loop_current_ma: 26, ..Config::new() }
}

/// Everything up to and including the power-up, identical for cold and warm start.
fn script_until_power_up(s: &mut Script) {
    // Identity (reset values).
    s.r(0, 0x05).r(1, 0x88).r(8, 0x02).r(64, 0x00).r(11, 0x33);
    // DC-DC off, indirect table.
    s.w(14, 0x10);
    for (a, v) in IR_TABLE {
        s.iw(a, v);
    }
    s.w(8, 0).w(108, 0xEB).w(67, 0x07).w(66, 0x01);
    // Filters held clear.
    for a in 22..=26 {
        s.iw(a, 0x8000);
    }
    // Power-up: PWM period, converter on, VBAT twice (rising, then -75 V).
    s.w(92, 0xFF).w(14, 0).r(82, 0x80).r(82, 0xC8);
    // 26 mA -> ILIM 2; DC-DC switching delay.
    s.w(71, 2).w(93, 0x19);
}

fn script_after_calibration(s: &mut Script) {
    for (a, v) in [(22, 0x8000), (23, 0x0320), (24, 0x008C), (25, 0x0100), (26, 0x0010)] {
        s.iw(a, v);
    }
    for (a, v) in IR_TABLE {
        s.ir(a, v);
    }
    // Ringer: 20 Hz, 70 Vpk: RCO 0x7EFD, RNGX 376; ring trip 0x0320 / RTDI 0x0B; VBATH 54 (81 V).
    s.w(34, 0).iw(6, 0).iw(7, 0x7EFD).iw(8, 376).iw(9, 0).iw(23, 0x0320).w(70, 0x0B).w(74, 54);
    s.w(69, 0x0A);
    // PCM: mu-law, enable; start 264 = 0x108 both ways.
    s.w(1, 0x28).w(2, 0x08).w(3, 0x01).w(4, 0x08).w(5, 0x01);
    // Interrupts: clear, enable ring trip, loop closure and power alarms.
    s.w(18, 0xFF).w(19, 0xFF).w(20, 0xFF).w(21, 0).w(22, 0xFF).w(23, 0);
    // Forward active, then the loop state.
    s.w(64, 1).r(68, 0);
}

fn reset_pin() -> PinMock {
    PinMock::new(&[PinT::set(State::Low), PinT::set(State::High)])
}

#[test]
fn init_cold_script() {
    let mut s = Script::default();
    script_until_power_up(&mut s);
    // Calibration: all, start, poll twice.
    s.w(97, 0x1F).w(96, 0x5F).r(96, 0x40).r(96, 0x00);
    // DC-DC calibration, poll, check the DC peak result, read all results.
    s.w(93, 0x99).r(93, 0x19).r(107, 0x07);
    for (i, v) in CAL.iter().enumerate() {
        s.r(98 + i as u8, *v);
    }
    script_after_calibration(&mut s);

    let spi = SpiMock::new(&s.0);
    let mut d = Si3215::new(spi, reset_pin(), PinMock::new(&[]), mock_config()).unwrap();
    let cal = d.init(&mut NoopDelay::new(), None).unwrap();
    assert_eq!(cal.results, CAL);
    let (mut spi, mut rst, mut int) = d.release();
    spi.done();
    rst.done();
    int.done();
}

#[test]
fn init_warm_reapplies_calibration_without_calibrating() {
    let mut s = Script::default();
    script_until_power_up(&mut s);
    for (i, v) in CAL.iter().enumerate() {
        s.w(98 + i as u8, *v);
    }
    script_after_calibration(&mut s);

    let spi = SpiMock::new(&s.0);
    let mut d = Si3215::new(spi, reset_pin(), PinMock::new(&[]), mock_config()).unwrap();
    let saved = Calibration { results: CAL };
    assert_eq!(d.init(&mut NoopDelay::new(), Some(&saved)).unwrap(), saved);
    let (mut spi, mut rst, mut int) = d.release();
    spi.done();
    rst.done();
    int.done();
}

#[test]
fn dc_peak_out_of_range_is_replaced() {
    let mut s = Script::default();
    script_until_power_up(&mut s);
    s.w(97, 0x1F).w(96, 0x5F).r(96, 0x00);
    s.w(93, 0x99).r(93, 0x19).r(107, 0x1F).w(107, 0x08);
    let mut cal = CAL;
    cal[9] = 0x08;
    for (i, v) in cal.iter().enumerate() {
        s.r(98 + i as u8, *v);
    }
    script_after_calibration(&mut s);
    let spi = SpiMock::new(&s.0);
    let mut d = Si3215::new(spi, reset_pin(), PinMock::new(&[]), mock_config()).unwrap();
    assert_eq!(d.init(&mut NoopDelay::new(), None).unwrap().results, cal);
    finish(d);
}

fn refused_identity(reads: &[(u8, u8)]) -> SlicError<embedded_hal::spi::ErrorKind> {
    let mut s = Script::default();
    for &(r, v) in reads {
        s.r(r, v);
    }
    let spi = SpiMock::new(&s.0);
    let mut d = Si3215::new(spi, reset_pin(), PinMock::new(&[]), Config::new()).unwrap();
    let e = d.init(&mut NoopDelay::new(), None).unwrap_err();
    // Nothing after the failed check: the mock has no further expectations.
    finish(d);
    e
}

#[test]
fn wrong_chips_are_refused_by_identity() {
    assert_eq!(refused_identity(&[(0, 0xFF)]), SlicError::NoChip { reg0: 0xFF });
    assert_eq!(refused_identity(&[(0, 0x00)]), SlicError::NoChip { reg0: 0x00 });
    assert_eq!(refused_identity(&[(0, 0x01)]), SlicError::TooOld { revision: 1 });
    assert_eq!(refused_identity(&[(0, 0x05), (1, 0x08)]), SlicError::NotSi3215 { reg0: 0x05, reg1: 0x08 });
    assert_eq!(
        refused_identity(&[(0, 0x05), (1, 0x88), (8, 0x00)]),
        SlicError::Insane { reg: 8, read: 0, expected: 2 }
    );
    assert_eq!(
        refused_identity(&[(0, 0x05), (1, 0x88), (8, 0x02), (64, 0x11)]),
        SlicError::Insane { reg: 64, read: 0x11, expected: 0 }
    );
    assert_eq!(
        refused_identity(&[(0, 0x05), (1, 0x88), (8, 0x02), (64, 0), (11, 0x00)]),
        SlicError::Insane { reg: 11, read: 0, expected: 0x33 }
    );
}

#[test]
fn bad_config_is_refused_before_touching_the_chip() {
    let bad = [
        Config { tx_start: 1024, ..Config::new() },
        Config { loop_current_ma: 19, ..Config::new() },
        Config { loop_current_ma: 42, ..Config::new() },
        Config { ring_vpk: 91, ..Config::new() },
        Config { flash_min_ms: 10, ..Config::new() },
        Config { flash_max_ms: 80, ..Config::new() },
    ];
    for c in bad {
        assert!(c.validate().is_err());
        let m = Si3215Model::new();
        assert!(Si3215::new(m.spi(), m.reset_pin(), m.int_pin(), c).is_err());
        assert_eq!(m.chip().transactions, 0);
    }
}

// ---- Interrupt reactions, one script each ----

type MockDrv = Si3215<SpiMock<u8>, PinMock, PinMock>;

fn mock_driver(s: &Script, int: &[PinT]) -> MockDrv {
    Si3215::new(SpiMock::new(&s.0), PinMock::new(&[]), PinMock::new(int), Config::new()).unwrap()
}

fn finish(d: MockDrv) {
    let (mut spi, mut rst, mut int) = d.release();
    spi.done();
    rst.done();
    int.done();
}

#[allow(non_snake_case)]
fn LOW() -> PinT {
    PinT::get(State::Low)
}

#[allow(non_snake_case)]
fn HIGH() -> PinT {
    PinT::get(State::High)
}

/// Status registers as the interrupt service reads (and clears) them.
fn isr(s: &mut Script, s2: u8, loop_status: u8) {
    s.r(18, 0).r(19, s2);
    if s2 != 0 {
        s.w(19, s2);
    }
    s.r(20, 0).r(68, loop_status);
}

#[test]
fn off_hook_then_on_hook_interrupts() {
    let mut s = Script::default();
    isr(&mut s, 0x02, 0x01); // loop closure, LCR
    isr(&mut s, 0x02, 0x00); // loop open
    let int = [LOW(), HIGH(), HIGH(), HIGH(), LOW(), HIGH(), HIGH(), HIGH(), HIGH()];
    let mut d = mock_driver(&s, &int);
    d.tick(0).unwrap();
    assert_eq!(d.poll_event(), None, "not before the debounce");
    d.tick(20).unwrap();
    assert_eq!(d.poll_event(), None);
    d.tick(30).unwrap();
    assert_eq!(d.poll_event(), Some(FxsEvent::OffHook));
    assert_eq!(d.hook(), HookState::OffHook);
    d.tick(1000).unwrap();
    d.tick(1030).unwrap();
    d.tick(1699).unwrap();
    assert_eq!(d.poll_event(), None, "an on-hook shorter than the flash maximum is not yet a hang-up");
    assert_eq!(d.hook(), HookState::OffHook);
    d.tick(1700).unwrap();
    assert_eq!(d.poll_event(), Some(FxsEvent::OnHook));
    assert_eq!(d.hook(), HookState::OnHook);
    finish(d);
}

#[test]
fn ring_trip_interrupt_stops_ringing_at_once() {
    let mut s = Script::default();
    // US cadence on the chip's timers: RAT 2000 ms = 16000 samples, RIT 32000.
    s.w(48, 0x80).w(49, 0x3E).w(50, 0x00).w(51, 0x7D).w(34, 0x06).w(64, 4);
    isr(&mut s, 0x01, 0x03); // RTIP; RTP and LCR set
    s.w(34, 0).w(64, 1); // ringer off, forward active
    let mut d = mock_driver(&s, &[LOW(), HIGH()]);
    d.set_ringing(RingCadence::new(&[2000, 4000])).unwrap();
    assert!(d.is_ringing());
    d.tick(500).unwrap();
    assert_eq!(d.poll_event(), Some(FxsEvent::OffHook), "answer is reported without waiting for a debounce");
    assert_eq!(d.hook(), HookState::OffHook);
    assert!(!d.is_ringing());
    finish(d);
}

#[test]
fn answer_in_a_silent_period_is_a_loop_closure_interrupt() {
    let mut s = Script::default();
    s.w(48, 0x40).w(49, 0x1F).w(50, 0x80).w(51, 0x3E).w(34, 0x06).w(64, 4);
    isr(&mut s, 0x02, 0x01); // LCIP with LCR, no ring trip
    s.r(64, 0x24); // LF ringing, actual state on-hook transmission: a silent period
    s.w(34, 0).w(64, 1);
    let mut d = mock_driver(&s, &[LOW(), HIGH()]);
    d.set_ringing(RingCadence::new(&[1000, 2000])).unwrap();
    d.tick(1500).unwrap();
    assert_eq!(d.poll_event(), Some(FxsEvent::OffHook));
    assert!(!d.is_ringing());
    finish(d);
}

#[test]
fn loop_closure_while_the_ring_is_on_is_not_an_answer() {
    let mut s = Script::default();
    s.w(48, 0x40).w(49, 0x1F).w(50, 0x80).w(51, 0x3E).w(34, 0x06).w(64, 4);
    isr(&mut s, 0x02, 0x01);
    s.r(64, 0x44); // ringing for real: the detector is disturbed by the ring
    let mut d = mock_driver(&s, &[LOW(), HIGH(), HIGH()]);
    d.set_ringing(RingCadence::new(&[1000, 2000])).unwrap();
    d.tick(500).unwrap();
    d.tick(600).unwrap();
    assert_eq!(d.poll_event(), None);
    assert!(d.is_ringing());
    finish(d);
}

#[test]
fn ground_key_interrupt_in_tip_open() {
    let mut s = Script::default();
    s.w(64, 3);
    isr(&mut s, 0x02, 0x01);
    let mut d = mock_driver(&s, &[LOW(), HIGH()]);
    d.set_tip_open().unwrap();
    d.tick(0).unwrap();
    assert_eq!(d.poll_slic_event(), Some(SlicEvent::GroundKey));
    assert_eq!(d.hook(), HookState::OnHook, "a ground key is not an off-hook");
    finish(d);
}

#[test]
fn power_alarm_interrupt_is_reported() {
    let mut s = Script::default();
    isr(&mut s, 0x0C, 0x00);
    let mut d = mock_driver(&s, &[LOW(), HIGH()]);
    d.tick(0).unwrap();
    assert_eq!(d.poll_slic_event(), Some(SlicEvent::PowerAlarm { alarms: 0x0C }));
    finish(d);
}

#[test]
fn no_interrupt_no_bus_traffic() {
    let s = Script::default();
    let mut d = mock_driver(&s, &[HIGH(), HIGH(), HIGH()]);
    d.tick(0).unwrap();
    d.tick(10).unwrap();
    d.tick(5000).unwrap();
    assert_eq!(d.poll_event(), None);
    finish(d);
}

#[test]
fn an_interrupt_that_does_not_clear_is_bounded_per_tick() {
    let mut s = Script::default();
    for _ in 0..4 {
        isr(&mut s, 0x00, 0x00);
    }
    let mut d = mock_driver(&s, &[LOW(), LOW(), LOW(), LOW()]);
    d.tick(0).unwrap();
    finish(d);
}

// ---------------------------------------------------------------------------
// Against the model.

type Drv = Si3215<ModelSpi, ModelReset, ModelInt>;

struct Bench {
    m: Si3215Model,
    d: Drv,
    t: u32,
    events: Vec<FxsEvent>,
    /// Events with no `FxsEvent` counterpart.
    other: Vec<SlicEvent>,
}

impl Bench {
    fn new() -> Self {
        Self::with(Si3215Model::new(), Config::new())
    }

    fn with(m: Si3215Model, config: Config) -> Self {
        let mut d = Si3215::new(m.spi(), m.reset_pin(), m.int_pin(), config).unwrap();
        d.init(&mut NoopDelay::new(), None).unwrap();
        Bench { m, d, t: 0, events: Vec::new(), other: Vec::new() }
    }

    /// Lets `ms` pass in 10 ms ticks, collecting events.
    fn run(&mut self, ms: u32) {
        for _ in 0..ms / 10 {
            self.t += 10;
            self.m.advance_ms(10);
            self.d.tick(self.t).unwrap();
            while let Some(e) = self.d.poll_slic_event() {
                match e {
                    SlicEvent::OffHook | SlicEvent::RingTrip => self.events.push(FxsEvent::OffHook),
                    SlicEvent::OnHook => self.events.push(FxsEvent::OnHook),
                    SlicEvent::HookFlash => self.events.push(FxsEvent::HookFlash),
                    other => self.other.push(other),
                }
            }
        }
    }

    fn take(&mut self) -> Vec<FxsEvent> {
        std::mem::take(&mut self.events)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(self.m.violations(), Vec::<String>::new(), "every access one byte per transaction");
        }
    }
}

#[test]
fn model_init_programs_the_chip() {
    let b = Bench::with(Si3215Model::new(), Config { tx_start: 16, rx_start: 24, pcm_format: PcmFormat::ALaw, ..Config::new() });
    let c = b.m.chip();
    assert_eq!(c.calibrations, 1);
    assert_eq!(&c.regs[98..108], &MODEL_CAL);
    assert_eq!(c.regs[1] & 0x7F, 0x20, "A-law, PCM enabled");
    assert_eq!((c.regs[2], c.regs[3], c.regs[4], c.regs[5]), (16, 0, 24, 0));
    assert_eq!(c.regs[14], 0, "DC-DC converter on");
    assert!(c.regs[82] >= 0xC0, "battery up");
    assert_eq!(c.regs[71], 0, "20 mA");
    assert_eq!(c.indirect[7], 0x7EFD);
    assert_eq!(c.indirect[22], 0x8000, "loop closure filter restored");
    assert_eq!(c.lf(), 1, "forward active");
    assert_eq!(c.regs[22], 0xFF);
}

#[test]
fn timeslot_and_battery_reading() {
    let c = Config::new().timeslot(5);
    assert_eq!((c.tx_start, c.rx_start), (40, 40));
    assert_eq!(Config::new().timeslot(128).validate(), Err(ConfigError::PcmStart));
    assert_eq!(Config::new().timeslot(u16::MAX).validate(), Err(ConfigError::PcmStart));
    let mut b = Bench::with(Si3215Model::new(), c);
    assert_eq!((b.m.reg(2), b.m.reg(4)), (40, 40));
    assert_eq!(b.d.battery_mv().unwrap(), 0xC8 * 376);
    assert!(!b.d.needs_tick(), "idle line: interrupts only");
    b.m.set_off_hook(true);
    b.run(10);
    assert!(b.d.needs_tick(), "debouncing");
    b.run(30);
    assert!(!b.d.needs_tick());
}

#[test]
fn warm_reinit_on_the_model_skips_calibration() {
    let m = Si3215Model::new();
    let mut d = Si3215::new(m.spi(), m.reset_pin(), m.int_pin(), Config::new()).unwrap();
    let cal = d.init(&mut NoopDelay::new(), None).unwrap();
    assert_eq!(cal.results, MODEL_CAL);
    // Saved, then restored from bytes after a "reboot".
    let bytes = cal.to_bytes();
    let saved = Calibration::from_bytes(&bytes).unwrap();
    assert_eq!(d.init(&mut NoopDelay::new(), Some(&saved)).unwrap(), cal);
    assert_eq!(m.chip().calibrations, 1, "no second calibration");
    assert_eq!(&m.chip().regs[98..108], &MODEL_CAL);
    assert_eq!(m.lf(), 1);
    assert!(m.violations().is_empty());
}

#[test]
fn calibration_bytes_are_checked() {
    assert!(Calibration::from_bytes(&[0; 10]).is_none(), "DC peak 0 is not a calibration");
    assert!(Calibration::from_bytes(&[8; 9]).is_none());
    assert!(Calibration::from_bytes(&[8; 11]).is_none());
    assert_eq!(Calibration::from_bytes(&[8; 10]).unwrap().to_bytes(), [8; 10]);
}

#[test]
fn whole_call_off_hook_dial_tone_feed_on_hook() {
    let mut b = Bench::new();
    b.run(100);
    assert!(b.take().is_empty());
    b.m.set_off_hook(true);
    b.run(20);
    assert!(b.take().is_empty(), "within the debounce");
    b.run(20);
    assert_eq!(b.take(), [FxsEvent::OffHook]);
    assert_eq!(b.d.hook(), HookState::OffHook);
    assert_eq!(b.m.lfs(), 1, "forward active feed for dial tone");
    b.run(3000);
    assert!(b.take().is_empty(), "a steady loop is one event");
    b.m.set_off_hook(false);
    b.run(700);
    assert!(b.take().is_empty());
    b.run(200);
    assert_eq!(b.take(), [FxsEvent::OnHook]);
    assert_eq!(b.d.hook(), HookState::OnHook);
}

#[test]
fn whole_call_ringing_answer_flash_hang_up() {
    let mut b = Bench::new();
    b.d.set_ringing(RingCadence::new(&[2000, 4000])).unwrap();
    assert!(b.m.ring_voltage());
    b.run(1990);
    assert!(b.m.ring_voltage());
    b.run(10);
    assert!(!b.m.ring_voltage(), "chip timer ends the ring at 2 s");
    b.run(4000);
    assert!(b.m.ring_voltage(), "and starts the next after 4 s off");
    b.run(500);
    // The phone answers: ring trip.
    b.m.set_off_hook(true);
    assert!(!b.m.ring_voltage(), "the chip drops the ring at once");
    b.run(10);
    assert_eq!(b.take(), [FxsEvent::OffHook]);
    assert!(!b.d.is_ringing());
    assert_eq!(b.m.lf(), 1);
    assert_eq!(b.d.hook(), HookState::OffHook);
    b.run(7000);
    assert!(b.take().is_empty());
    assert!(!b.m.ring_voltage(), "ringing stays stopped");
    // A 300 ms flash.
    b.m.set_off_hook(false);
    b.run(300);
    b.m.set_off_hook(true);
    b.run(100);
    assert_eq!(b.take(), [FxsEvent::HookFlash]);
    assert_eq!(b.d.hook(), HookState::OffHook);
    // A 40 ms glitch is neither flash nor hang-up.
    b.m.set_off_hook(false);
    b.run(40);
    b.m.set_off_hook(true);
    b.run(1000);
    assert!(b.take().is_empty());
    // Hang up.
    b.m.set_off_hook(false);
    b.run(1000);
    assert_eq!(b.take(), [FxsEvent::OnHook]);
}

#[test]
fn answer_in_the_silent_part_of_the_cadence() {
    let mut b = Bench::new();
    b.d.set_ringing(RingCadence::new(&[1000, 3000])).unwrap();
    b.run(1500);
    assert!(!b.m.ring_voltage());
    b.m.set_off_hook(true);
    b.run(10);
    assert_eq!(b.take(), [FxsEvent::OffHook]);
    b.run(5000);
    assert!(!b.m.ring_voltage());
    assert_eq!(b.m.lf(), 1);
}

#[test]
fn driver_cadence_is_exact_in_tick_time() {
    // UK double ring: two on/off pairs, beyond the chip's single timer pair.
    let mut b = Bench::new();
    b.d.set_ringing(RingCadence::new(&[400, 200, 400, 2000])).unwrap();
    assert!(b.d.needs_tick());
    let mut changes = Vec::new();
    let mut last = b.m.ring_voltage();
    assert!(last);
    for _ in 0..600 {
        b.run(10);
        let now = b.m.ring_voltage();
        if now != last {
            changes.push((b.t, now));
            last = now;
        }
    }
    assert_eq!(
        changes,
        [(400, false), (600, true), (1000, false), (3000, true), (3400, false), (3600, true), (4000, false), (6000, true)]
    );
    b.run(400);
    assert_eq!(b.m.lfs(), 2, "silent periods are on-hook transmission");
    // Stopping during an off period: line back to the idle feed.
    b.d.set_ringing(None).unwrap();
    assert_eq!(b.m.lf(), 1);
    b.run(5000);
    assert!(!b.m.ring_voltage());
}

#[test]
fn ringing_rules_of_the_sim_card_hold() {
    let mut b = Bench::new();
    // Stopping is always accepted.
    assert_eq!(b.d.set_ringing(None), Ok(()));
    b.m.set_off_hook(true);
    b.run(50);
    assert_eq!(b.take(), [FxsEvent::OffHook]);
    assert_eq!(b.d.set_ringing(RingCadence::new(&[2000, 4000])), Err(PortError::InvalidState));
    assert!(!b.m.ring_voltage());
    assert_eq!(b.d.set_ringing(None), Ok(()));
    b.m.set_off_hook(false);
    b.run(1000);
    assert_eq!(b.take(), [FxsEvent::OnHook]);
    // Restarting starts from the first on period.
    b.d.set_ringing(RingCadence::new(&[100, 100, 100, 700])).unwrap();
    b.run(150);
    assert!(!b.m.ring_voltage());
    b.d.set_ringing(RingCadence::new(&[100, 100, 100, 700])).unwrap();
    assert!(b.m.ring_voltage());
    b.run(90);
    assert!(b.m.ring_voltage());
    b.run(10);
    assert!(!b.m.ring_voltage());
}

#[test]
fn polarity_reversal_and_on_hook_transmission() {
    let mut b = Bench::new();
    b.d.set_line_feed(LineFeed::Reverse).unwrap();
    assert_eq!(b.m.lf(), 5);
    b.d.set_line_feed(LineFeed::OnHookTransmission).unwrap();
    assert_eq!(b.m.lf(), 6, "on-hook transmission keeps the reversed polarity");
    b.d.set_line_feed(LineFeed::Forward).unwrap();
    assert_eq!(b.m.lf(), 1);
    b.d.set_line_feed(LineFeed::OnHookTransmission).unwrap();
    assert_eq!(b.m.lf(), 2, "caller ID / VMWI feed while on hook");
    b.d.set_line_feed(LineFeed::Open).unwrap();
    assert_eq!(b.m.lf(), 0);
    b.d.set_line_feed(LineFeed::Forward).unwrap();
    // While ringing a reversal waits for the ring to end.
    b.d.set_ringing(RingCadence::new(&[2000, 4000])).unwrap();
    b.d.set_line_feed(LineFeed::Reverse).unwrap();
    assert_eq!(b.m.lf(), 4);
    b.d.set_ringing(None).unwrap();
    assert_eq!(b.m.lf(), 5);
    // Answering in reverse polarity keeps it.
    b.d.set_ringing(RingCadence::new(&[2000, 4000])).unwrap();
    b.m.set_off_hook(true);
    b.run(10);
    assert_eq!(b.take(), [FxsEvent::OffHook]);
    assert_eq!(b.m.lf(), 5);
    assert!(b.events.is_empty());
}

#[test]
fn open_interval_does_not_read_as_a_hang_up() {
    let mut b = Bench::new();
    b.m.set_off_hook(true);
    b.run(50);
    assert_eq!(b.take(), [FxsEvent::OffHook]);
    // A 1.5 s open switch interval (disconnect signal) with the phone still off hook.
    b.d.set_line_feed(LineFeed::Open).unwrap();
    assert_eq!(b.m.lfs(), 0);
    b.run(1500);
    b.d.set_line_feed(LineFeed::Forward).unwrap();
    b.run(1500);
    assert!(b.take().is_empty());
    assert_eq!(b.d.hook(), HookState::OffHook);
    // The phone hangs up during the next open interval: seen once the feed is back.
    b.d.set_line_feed(LineFeed::Open).unwrap();
    b.m.set_off_hook(false);
    b.run(1500);
    assert!(b.take().is_empty());
    b.d.set_line_feed(LineFeed::Forward).unwrap();
    b.run(1000);
    assert_eq!(b.take(), [FxsEvent::OnHook]);
}

#[test]
fn ground_key_on_the_model() {
    let mut b = Bench::new();
    b.d.set_tip_open().unwrap();
    assert_eq!(b.m.lf(), 3);
    b.m.set_ground(true);
    b.run(10);
    assert_eq!(b.other, [SlicEvent::GroundKey]);
    assert!(b.take().is_empty(), "not an FXS hook event");
    b.d.set_line_feed(LineFeed::Forward).unwrap();
    b.m.set_ground(false);
    b.run(100);
    assert!(b.take().is_empty());
}

#[test]
fn loop_current_limit_changes_and_bad_values_change_nothing() {
    let mut b = Bench::new();
    b.d.set_loop_current(41).unwrap();
    assert_eq!(b.m.reg(71), 7);
    assert_eq!(b.d.set_loop_current(42), Err(ConfigError::LoopCurrent));
    assert_eq!(b.d.set_loop_current(10), Err(ConfigError::LoopCurrent));
    assert_eq!(b.m.reg(71), 7);
    assert_eq!(b.d.config().loop_current_ma, 41);
}

#[test]
fn phone_off_hook_at_start_is_seen() {
    let m = Si3215Model::new();
    m.set_off_hook(true);
    let mut b = Bench::with(m, Config::new());
    b.run(50);
    assert_eq!(b.take(), [FxsEvent::OffHook]);
}

/// A fault on the model: init fails with `expect`, the line stays open, and the
/// driver stops after a bounded number of bus transactions.
fn faulty(f: Faults) -> (SlicError<core::convert::Infallible>, Si3215Model) {
    let m = Si3215Model::with_faults(f);
    let mut d = Si3215::new(m.spi(), m.reset_pin(), m.int_pin(), Config::new()).unwrap();
    let e = d.init(&mut NoopDelay::new(), None).unwrap_err();
    assert_eq!(m.lf(), 0, "line left open");
    assert!(m.chip().transactions < 20_000, "bounded: {}", m.chip().transactions);
    assert!(m.violations().is_empty());
    (e, m)
}

#[test]
fn faults_become_errors_not_hangs() {
    assert_eq!(faulty(Faults { absent: true, ..Faults::default() }).0, SlicError::NoChip { reg0: 0xFF });
    assert_eq!(
        faulty(Faults { si3210: true, ..Faults::default() }).0,
        SlicError::NotSi3215 { reg0: 0x05, reg1: 0x08 }
    );
    assert_eq!(faulty(Faults { stuck_indirect_busy: true, ..Faults::default() }).0, SlicError::IndirectTimeout { addr: 0 });
    let (e, m) = faulty(Faults { never_calibrates: true, ..Faults::default() });
    assert_eq!(e, SlicError::CalibrationTimeout { cal1: 0x5F });
    assert_eq!(m.chip().calibrations, 1);
    let (e, m) = faulty(Faults { dead_battery: true, ..Faults::default() });
    assert_eq!(e, SlicError::BatteryLow { vbat: 0 });
    assert_eq!(m.reg(14), 0x10, "converter switched off again");
    assert_eq!(faulty(Faults { dcdc_cal_stuck: true, ..Faults::default() }).0, SlicError::DcDcCalibrationTimeout);
    assert_eq!(
        faulty(Faults { indirect_bit0_stuck: true, ..Faults::default() }).0,
        SlicError::IndirectVerify { addr: 1, wrote: 0x0063, read: 0x0062 }
    );
}

#[test]
fn model_flags_multi_byte_transactions() {
    use embedded_hal::spi::SpiDevice;
    let m = Si3215Model::new();
    let mut spi = m.spi();
    spi.write(&[0x80, 0x00]).unwrap();
    assert_eq!(m.violations().len(), 1);
}

#[test]
fn ring_coefficients_follow_the_data_sheet_equations() {
    for (f, hz) in [(RingFrequency::Hz20, 20.0f64), (RingFrequency::Hz25, 25.0)] {
        let coeff = (2.0 * std::f64::consts::PI * hz / 1000.0).cos();
        let rco = (coeff * 32768.0).round() as i64;
        assert!((i64::from(f.rco()) - rco).abs() <= 1, "{hz} Hz RCO {} vs {rco}", f.rco());
        for vpk in [40u8, 70, 90] {
            let rngx = 0.25 * ((1.0 - coeff) / (1.0 + coeff)).sqrt() * 32767.0 * f64::from(vpk) / 96.0;
            assert!((f64::from(f.rngx(vpk)) - rngx).abs() <= 1.0, "{hz} Hz {vpk} V: {} vs {rngx}", f.rngx(vpk));
        }
    }
    // DAHDI's 25 Hz value (0x7E6D) agrees within one step.
    assert!(RingFrequency::Hz25.rco().abs_diff(0x7E6D) <= 1);
}

#[test]
fn driver_core_uses_no_std() {
    for (name, src) in [("mod.rs", include_str!("mod.rs")), ("regs.rs", include_str!("regs.rs"))] {
        for (i, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(!code.contains("std::"), "{name}:{}: {line}", i + 1);
            assert!(!code.contains("vec!") && !code.contains("Vec<") && !code.contains("String"), "{name}:{}: {line}", i + 1);
        }
    }
}

// ---- The HAL's FXS behaviour, as the sim card shows it (fxs_conformance.rs) ----

struct ModelFxsBench {
    m: Si3215Model,
    d: Drv,
    t: u32,
}

impl ModelFxsBench {
    fn step(&mut self) {
        self.t += 10;
        self.m.advance_ms(10);
        self.d.tick(self.t).unwrap();
    }
}

impl crate::fxs_conformance::FxsBench for ModelFxsBench {
    type Port = Drv;

    fn port(&mut self) -> &mut Drv {
        &mut self.d
    }

    fn set_off_hook(&mut self, off: bool) {
        self.m.set_off_hook(off);
    }

    fn flash(&mut self) {
        self.m.set_off_hook(false);
        for _ in 0..30 {
            self.step();
        }
        self.m.set_off_hook(true);
    }

    fn next_event(&mut self) -> Option<FxsEvent> {
        for _ in 0..300 {
            if let Some(e) = self.d.poll_event() {
                return Some(e);
            }
            self.step();
        }
        None
    }

    fn start_ringing(&mut self, cadence: RingCadence) -> bool {
        self.d.set_ringing(Some(cadence)).unwrap();
        self.m.ring_voltage()
    }

    fn advance(&mut self, ms: u32) -> Vec<(u32, bool)> {
        let mut changes = Vec::new();
        let mut last = self.m.ring_voltage();
        for i in 1..=ms / 10 {
            self.step();
            let now = self.m.ring_voltage();
            if now != last {
                changes.push((i * 10, now));
                last = now;
            }
        }
        changes
    }

    fn ring_dropped(&mut self) -> bool {
        !self.m.ring_voltage()
    }
}

#[test]
fn fxs_behaviour_of_the_sim_card_holds_on_the_chip_model() {
    let m = Si3215Model::new();
    let mut d = Si3215::new(m.spi(), m.reset_pin(), m.int_pin(), Config::new()).unwrap();
    d.init(&mut NoopDelay::new(), None).unwrap();
    let mut b = ModelFxsBench { m, d, t: 0 };
    crate::fxs_conformance::run_all(&mut b);
    assert!(b.m.violations().is_empty());
}

#[test]
fn random_line_and_control_sequences_never_panic_and_settle() {
    // A small LCG: deterministic, no dependency.
    let mut seed: u32 = 0x1234_5678;
    let mut rnd = move |n: u32| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) % n
    };
    let mut b = Bench::new();
    let cadences = [&[2000u16, 4000][..], &[400, 200, 400, 2000], &[100, 100], &[9000, 1000]];
    for _ in 0..3000 {
        match rnd(8) {
            0 => b.m.set_off_hook(rnd(2) == 0),
            1 => b.m.set_ground(rnd(2) == 0),
            2 => {
                let feed = [LineFeed::Open, LineFeed::Forward, LineFeed::Reverse, LineFeed::OnHookTransmission][rnd(4) as usize];
                b.d.set_line_feed(feed).unwrap();
            }
            3 => {
                let c = RingCadence::new(cadences[rnd(4) as usize]);
                let r = b.d.set_ringing(c);
                assert!(r.is_ok() || r == Err(PortError::InvalidState));
            }
            4 => b.d.set_ringing(None).unwrap(),
            5 => b.d.set_tip_open().unwrap(),
            _ => b.run(10 * (1 + rnd(50))),
        }
        while b.d.poll_slic_event().is_some() {}
        b.take();
    }
    // Whatever happened, a steady line is seen as it is.
    b.d.set_ringing(None).unwrap();
    b.d.set_line_feed(LineFeed::Forward).unwrap();
    b.m.set_ground(false);
    for off in [true, false, true] {
        b.m.set_off_hook(off);
        b.run(2000);
        let want = if off { HookState::OffHook } else { HookState::OnHook };
        assert_eq!(b.d.hook(), want);
    }
}
