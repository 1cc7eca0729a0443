//! Whole calls through the driver against the register-level chip model, in
//! virtual time (10 ms ticks): ring in, answer, polarity-reversal answer
//! supervision, disconnect by loop-current drop, pulse dialling, and bad
//! hardware.

use std::vec;
use std::vec::Vec;

use embedded_hal_mock::eh1::delay::NoopDelay;

use super::model::{new_model, ModelHandle, ModelInt, ModelReset, ModelSpi};
use super::*;
use crate::{FxoEvent, FxoPort, Polarity, PortError};

type Dut = Si3050<ModelSpi, ModelReset, ModelInt>;

struct Bench {
    dut: Dut,
    m: ModelHandle,
    now: u64,
    log: Vec<(u64, FxoEvent)>,
}

impl Bench {
    fn new(config: Config) -> Self {
        Self::with(config, |_| {})
    }

    fn with(config: Config, setup: impl FnOnce(&ModelHandle)) -> Self {
        let (spi, rst, int, m) = new_model();
        setup(&m);
        let mut dut = Si3050::new(spi, rst, int, config);
        dut.init(&mut NoopDelay::new()).expect("init");
        Bench { dut, m, now: 0, log: vec![] }
    }

    /// Runs `ms` of virtual time in 10 ms ticks, logging events.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            self.m.set_now(self.now);
            self.dut.tick(self.now).expect("tick");
            while let Some(e) = self.dut.poll_event() {
                self.log.push((self.now, e));
            }
        }
    }

    fn events(&mut self) -> Vec<FxoEvent> {
        self.log.drain(..).map(|(_, e)| e).collect()
    }

    fn no_framing_errors(&self) {
        assert_eq!(self.m.state().framing_errors, 0, "a register access held CS over more than one byte");
    }
}

#[test]
fn incoming_call_ring_answer_reversal_and_disconnect_by_loop_drop() {
    let mut b = Bench::new(Config::new(Country::Ctr21));
    b.run(200);
    let st = b.dut.line_status();
    assert_eq!((st.voltage, st.polarity, st.seized, st.ringing), (Some(48), Polarity::Normal, false, false));
    assert_eq!(b.events(), []);

    // Two ring bursts (1 s on, 4 s off); the ring's POLI swings are not reversals.
    for _ in 0..2 {
        b.m.set_ringing(true);
        b.run(1000);
        assert!(b.dut.line_status().ringing);
        b.m.set_ringing(false);
        b.run(4000);
    }
    assert_eq!(b.events(), [FxoEvent::RingStart, FxoEvent::RingStop, FxoEvent::RingStart, FxoEvent::RingStop]);

    // Third ring: answer during it. The exchange trips the ring.
    b.m.set_ringing(true);
    b.run(500);
    b.dut.seize(true).unwrap();
    b.run(10);
    b.m.set_ringing(false);
    b.run(300);
    assert_eq!(b.events(), [FxoEvent::RingStart, FxoEvent::RingStop]);
    let st = b.dut.line_status();
    assert!(st.seized && !st.ringing);
    assert_eq!(st.voltage, Some(8));
    assert_eq!(st.loop_current_ma, Some(25));

    // The exchange reverses polarity (e.g. metering / answer supervision).
    b.m.reverse_polarity();
    let t = b.now;
    b.run(200);
    let ev = b.log.clone();
    assert_eq!(ev.iter().map(|e| e.1).collect::<Vec<_>>(), [FxoEvent::PolarityReversal]);
    assert!(ev[0].0 - t >= 64 && ev[0].0 - t <= 80, "reported after {} ms", ev[0].0 - t);
    b.log.clear();
    assert_eq!(b.dut.line_status().polarity, Polarity::Reversed);

    // Far end hangs up: a 600 ms open-loop interval (CPC).
    b.m.set_battery(false);
    let t = b.now;
    b.run(600);
    b.m.set_battery(true);
    b.run(300);
    let ev = b.log.clone();
    assert_eq!(
        ev.iter().map(|e| e.1).collect::<Vec<_>>(),
        [FxoEvent::LoopCurrentDrop, FxoEvent::LoopCurrentRestore],
        "no polarity event from the 0 V interval"
    );
    assert!(ev[0].0 - t >= 64 && ev[0].0 - t <= 80, "drop after {} ms", ev[0].0 - t);
    b.log.clear();
    assert_eq!(b.dut.line_status().polarity, Polarity::Reversed);

    b.dut.seize(false).unwrap();
    b.run(200);
    assert!(!b.m.off_hook());
    assert_eq!(b.dut.line_status().loop_current_ma, Some(0));
    assert_eq!(b.events(), []);
    b.no_framing_errors();
}

#[test]
fn caller_id_polarity_reversal_before_the_first_ring_is_reported() {
    let mut b = Bench::new(Config::new(Country::Uk));
    b.run(100);
    // Reversal announcing caller ID, then the ring.
    b.m.reverse_polarity();
    b.run(300);
    b.m.set_ringing(true);
    b.run(400);
    b.m.set_ringing(false);
    b.run(200);
    assert_eq!(b.events(), [FxoEvent::PolarityReversal, FxoEvent::RingStart, FxoEvent::RingStop]);
    // The on-hook line monitor stayed on for the caller-ID reception.
    assert_eq!(b.m.state().reg(regs::DAA_CTRL1) & regs::DAA_CTRL1_ONHM, regs::DAA_CTRL1_ONHM);
    b.no_framing_errors();
}

/// Dials `digit` (10 pulses for 0) at 60 ms break / 40 ms make.
fn dial(b: &mut Bench, digit: u8) {
    let pulses = if digit == 0 { 10 } else { digit };
    for _ in 0..pulses {
        b.dut.flash(60).unwrap();
        b.run(60);
        b.run(40);
    }
    b.run(700); // inter-digit pause
}

#[test]
fn outgoing_call_pulse_dialled_with_flashes_then_answer_by_reversal() {
    let mut b = Bench::new(Config::new(Country::De));
    b.dut.seize(true).unwrap();
    b.run(500);
    for d in [3, 1, 0] {
        dial(&mut b, d);
    }
    // Every pulse is a clean 60 ms break and no pulse looked like a disconnect.
    let log = b.m.state().hook_log.clone();
    let breaks: Vec<u64> = log
        .windows(2)
        .filter(|w| !w[0].1 && w[1].1)
        .map(|w| w[1].0 - w[0].0)
        .collect();
    assert_eq!(breaks.len(), 14, "{log:?}");
    assert!(breaks.iter().all(|&ms| ms == 60), "{breaks:?}");
    assert_eq!(b.events(), []);

    // The far end answers: the exchange reverses polarity.
    b.m.reverse_polarity();
    b.run(200);
    assert_eq!(b.events(), [FxoEvent::PolarityReversal]);
    // Hook flash (register recall) mid-call: no drop either.
    b.dut.flash(100).unwrap();
    b.run(400);
    assert_eq!(b.events(), []);
    b.dut.seize(false).unwrap();
    b.run(100);
    b.no_framing_errors();
}

#[test]
fn loop_drop_is_caught_by_polling_when_no_dropout_interrupt_comes() {
    let mut b = Bench::with(Config::new(Country::Fcc), |m| m.state_mut().raise_dod = false);
    b.dut.seize(true).unwrap();
    b.run(300);
    b.m.set_battery(false);
    let t = b.now;
    b.run(500);
    let ev = b.log.clone();
    assert_eq!(ev.iter().map(|e| e.1).collect::<Vec<_>>(), [FxoEvent::LoopCurrentDrop]);
    // Poll every 100 ms + 64 ms debounce.
    assert!(ev[0].0 - t <= 100 + 64 + 20, "drop after {} ms", ev[0].0 - t);
}

#[test]
fn short_open_loop_glitch_is_no_disconnect() {
    let mut b = Bench::new(Config::new(Country::Fcc));
    b.dut.seize(true).unwrap();
    b.run(300);
    b.m.set_battery(false);
    b.run(30);
    b.m.set_battery(true);
    b.run(300);
    assert_eq!(b.events(), []);
}

#[test]
fn wrong_id_is_a_clear_error() {
    for id in [0x00, 0xFF, 0x13] {
        let (spi, rst, int, m) = new_model();
        m.state_mut().id_reg2 = id;
        let mut dut = Si3050::new(spi, rst, int, Config::new(Country::Fcc));
        assert_eq!(dut.init(&mut NoopDelay::new()), Err(Error::WrongId { reg2: id }));
        // Nothing was written to the chip.
        assert_eq!(m.state().writes, 0);
        assert_eq!(dut.seize(true), Err(PortError::InvalidState));
    }
}

#[test]
fn line_side_never_linking_ends_after_the_bounded_wait() {
    let (spi, rst, int, m) = new_model();
    m.state_mut().link_works = false;
    let mut dut = Si3050::new(spi, rst, int, Config { link_polls: 7, ..Config::new(Country::Fcc) });
    assert_eq!(dut.init(&mut NoopDelay::new()), Err(Error::LinkTimeout { polls: 7 }));
    // Bounded: a fixed number of register reads, no spinning.
    assert!(m.state().reads < 20, "{} reads", m.state().reads);
    assert_eq!(dut.identity(), None);
    assert_eq!(dut.tick(10), Err(Error::NotInitialised));
    // The link comes back (e.g. line plugged in): init again works.
    m.state_mut().link_works = true;
    assert!(dut.init(&mut NoopDelay::new()).is_ok());
}

#[test]
fn slow_link_within_the_wait_is_fine_and_identity_is_read() {
    let (spi, rst, int, m) = new_model();
    m.state_mut().link_delay_polls = 15;
    let mut dut = Si3050::new(spi, rst, int, Config::new(Country::Jp));
    let id = dut.init(&mut NoopDelay::new()).unwrap();
    assert_eq!(id, Identity { system_revision: 5, line_side: LineSide::Si3019, line_side_revision: 3 });
    // The chip holds what the country row asks for.
    let s = m.state();
    let p = Country::Jp.params();
    assert_eq!(s.reg(regs::DC_TERM), p.reg26());
    assert_eq!(s.reg(regs::AC_TERM), p.reg30());
    assert_eq!(s.reg(regs::INTL_CTRL1), p.reg16());
    assert_eq!(s.reg(regs::RING_VAL3), 0x99);
    assert_eq!(s.reg(regs::PCM_MODE), 0x28);
    assert_eq!(s.reg(regs::DAA_CTRL2), 0);
}

#[test]
fn si3018_line_side_has_no_voltage_or_polarity() {
    let mut b = Bench::with(Config::new(Country::Fcc), |m| m.state_mut().lsid = regs::LSID_SI3018);
    assert_eq!(b.dut.identity().unwrap().line_side, LineSide::Si3018);
    b.run(100);
    b.m.reverse_polarity();
    b.run(200);
    assert_eq!(b.events(), []);
    assert_eq!(b.dut.line_status().voltage, None);
    assert_eq!(b.dut.read_line_voltage(), Ok(None));
    // Ring and loop supervision still work.
    b.m.set_ringing(true);
    b.run(100);
    assert_eq!(b.events(), [FxoEvent::RingStart]);
}

#[test]
fn bus_failure_is_card_gone_and_no_state_changes() {
    let mut b = Bench::new(Config::new(Country::Fcc));
    b.run(50);
    b.m.state_mut().bus_down = true;
    assert_eq!(b.dut.seize(true), Err(PortError::CardGone));
    assert!(!b.dut.line_status().seized);
    assert!(matches!(b.dut.tick(b.now + 200), Err(Error::Spi(_))));
    b.m.state_mut().bus_down = false;
    b.dut.seize(true).unwrap();
    assert!(b.m.off_hook());
}

#[test]
fn time_going_backwards_and_event_overflow_do_not_panic() {
    let mut b = Bench::new(Config::new(Country::Fcc));
    b.dut.tick(1_000).unwrap();
    b.dut.tick(5).unwrap();
    b.dut.tick(u64::MAX - 1).unwrap();
    // Forty reversals, nobody polling: the queue keeps the newest, counts the rest.
    let mut b = Bench::new(Config::new(Country::Fcc));
    let mut now = 0;
    for _ in 0..40 {
        b.m.reverse_polarity();
        for _ in 0..10 {
            now += 10;
            b.dut.tick(now).unwrap();
        }
    }
    let n = core::iter::from_fn(|| b.dut.poll_event()).count();
    assert_eq!(n, 16);
    assert_eq!(b.dut.events_lost, 24);
}

#[test]
fn garbage_status_registers_never_panic() {
    // Every LVS / LCS2 value decodes.
    for raw in 0..=255u8 {
        let _ = lcs2_to_ma(raw);
        let v = raw as i8;
        let _ = i16::from(v).abs();
    }
    assert_eq!(lcs2_to_ma(255), 280);
}

#[test]
fn isolation_link_loss_mid_call_is_card_gone_until_it_relocks() {
    let mut b = Bench::new(Config::new(Country::Fcc));
    b.dut.seize(true).unwrap();
    b.run(200);
    b.m.break_link();
    b.run(100);
    assert!(!b.dut.link_ok());
    assert_eq!(b.dut.seize(false), Err(PortError::CardGone));
    assert_eq!(b.dut.flash(100), Err(PortError::CardGone));
    b.run(500);
    assert!(!b.dut.link_ok(), "stays down while the link does");
    b.m.mend_link();
    b.run(100);
    assert!(b.dut.link_ok());
    b.dut.seize(false).unwrap();
    assert!(!b.m.off_hook());
    b.no_framing_errors();
}
