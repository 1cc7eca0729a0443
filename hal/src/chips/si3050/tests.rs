//! Transaction-script tests: every register access of the init sequence and
//! of the reaction to each interrupt, byte by byte (each byte is its own
//! chip-select transaction).

use std::vec;
use std::vec::Vec;

use embedded_hal_mock::eh1::delay::{CheckedDelay, Transaction as D};
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as P};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as S};

use super::*;
use crate::{FxoEvent, FxoPort, Polarity, PortError};

type Dut = Si3050<SpiMock<u8>, PinMock, PinMock>;

fn one(b: S<u8>) -> [S<u8>; 3] {
    [S::transaction_start(), b, S::transaction_end()]
}

/// Script of one register write: control, address, data; CS released after each.
fn w(reg: u8, val: u8) -> Vec<S<u8>> {
    [one(S::write(regs::SPI_WRITE)), one(S::write(reg)), one(S::write(val))].concat()
}

/// Script of one register read returning `val`.
fn r(reg: u8, val: u8) -> Vec<S<u8>> {
    [one(S::write(regs::SPI_READ)), one(S::write(reg)), one(S::read(val))].concat()
}

fn mock_config(country: Country) -> Config {
    Config { status_refresh_ms: 0, loop_poll_ms: 0, ..Config::new(country) }
}

/// The full init script for `c`, the link coming up on the `link_after`-th FDT read.
fn init_script(c: &Config, link_after: u8) -> Vec<S<u8>> {
    let p = c.country.params();
    let (t2, t3) = gain_regs(c.tx_gain_tenth_db).unwrap();
    let (r2, r3) = gain_regs(c.rx_gain_tenth_db).unwrap();
    let pcm = 0x20 | match c.pcm {
        PcmFormat::ALaw => 0x00,
        PcmFormat::MuLaw => 0x08,
        PcmFormat::Linear16 => 0x18,
    };
    let mut s = vec![];
    s.extend(r(2, 0x03)); // identity
    s.extend(r(11, 0x05)); // REVA 5, link still down
    s.extend(w(1, 0x80)); // soft reset
    s.extend(w(33, pcm));
    s.extend(w(34, (c.tx_start & 0xFF) as u8));
    s.extend(w(35, (c.tx_start >> 8) as u8));
    s.extend(w(36, (c.rx_start & 0xFF) as u8));
    s.extend(w(37, (c.rx_start >> 8) as u8));
    s.extend(w(16, p.reg16()));
    s.extend(w(18, p.reg18()));
    s.extend(r(24, 0x19));
    s.extend(w(24, 0x99)); // RNGV on, RAS kept
    s.extend(w(26, p.reg26()));
    s.extend(w(30, p.reg30()));
    s.extend(w(31, p.reg31()));
    s.extend(w(38, t2));
    s.extend(w(40, t3));
    s.extend(w(39, r2));
    s.extend(w(41, r3));
    s.extend(w(3, 0xA9)); // RDTM | FDTM | DODM | POLM
    s.extend(w(2, 0x83)); // INTE | HBE | RXE
    s.extend(w(6, 0x00)); // PDL cleared: line side up
    for _ in 1..link_after {
        s.extend(r(12, 0x00));
    }
    s.extend(r(12, 0x40)); // FDT
    s.extend(r(11, 0x35)); // LSID Si3019, REVA 5
    s.extend(r(13, 0x0C)); // REVB 3
    s.extend(w(4, 0x00));
    s.extend(w(5, 0x08)); // on hook, ONHM
    s
}

fn init_delays(link_after: u8) -> Vec<D> {
    let mut d = vec![D::delay_ms(1), D::delay_ms(1), D::delay_ms(100)];
    for _ in 1..link_after {
        d.push(D::delay_ms(100));
    }
    d
}

fn reset_pin() -> PinMock {
    PinMock::new(&[P::set(State::Low), P::set(State::High)])
}

fn done(dut: Dut) {
    let (mut spi, mut rst, mut int) = dut.release();
    spi.done();
    rst.done();
    int.done();
}

#[test]
fn init_writes_every_register_of_the_sequence_fcc() {
    let c = mock_config(Country::Fcc);
    let mut script = init_script(&c, 3);
    script.extend(w(5, 0x09)); // seize: OH | ONHM
    let mut delay = CheckedDelay::new(&init_delays(3));
    let mut dut = Si3050::new(SpiMock::new(&script), reset_pin(), PinMock::new(&[]), c);
    let id = dut.init(&mut delay).unwrap();
    assert_eq!(id, Identity { system_revision: 5, line_side: LineSide::Si3019, line_side_revision: 3 });
    assert_eq!(dut.identity(), Some(id));
    dut.seize(true).unwrap();
    delay.done();
    done(dut);
}

#[test]
fn init_country_pcm_and_gain_variants() {
    // Every country row, A-law / linear, a slot and gains each way.
    for (i, p) in COUNTRIES.iter().enumerate() {
        let pcm = [PcmFormat::ALaw, PcmFormat::MuLaw, PcmFormat::Linear16][i % 3];
        let c = Config {
            pcm,
            tx_gain_tenth_db: -35,
            rx_gain_tenth_db: 117,
            ..mock_config(p.country)
        }
        .with_slot(40);
        let script = init_script(&c, 1);
        let mut delay = CheckedDelay::new(&init_delays(1));
        let mut dut = Si3050::new(SpiMock::new(&script), reset_pin(), PinMock::new(&[]), c);
        dut.init(&mut delay).unwrap();
        delay.done();
        done(dut);
    }
}

#[test]
fn country_rows_carry_the_table_bits() {
    let fcc = Country::Fcc.params();
    assert_eq!((fcc.reg16(), fcc.reg26(), fcc.reg30(), fcc.reg31()), (0x01, 0xC0, 0x00, 0x22));
    let ctr21 = Country::Ctr21.params();
    assert_eq!((ctr21.reg16(), ctr21.reg26(), ctr21.reg30(), ctr21.reg31()), (0x00, 0xC2, 0x02, 0x2A));
    let uk = Country::Uk.params();
    assert_eq!((uk.reg26(), uk.reg30()), (0xC2, 0x05));
    let de = Country::De.params();
    assert_eq!((de.reg26(), de.reg30()), (0xC2, 0x03));
    let au = Country::Au.params();
    assert_eq!((au.reg16(), au.reg26(), au.reg30()), (0x40, 0x30, 0x03));
    let jp = Country::Jp.params();
    assert_eq!((jp.reg16(), jp.reg26(), jp.reg30()), (0x00, 0x30, 0x00));
    // Every variant has its own row.
    for k in [Country::Fcc, Country::Ctr21, Country::Uk, Country::De, Country::Fr, Country::Au, Country::Jp] {
        assert_eq!(k.params().country, k);
    }
}

#[test]
fn country_codes_parse_and_unknown_is_none() {
    assert_eq!(Country::from_code("us"), Some(Country::Fcc));
    assert_eq!(Country::from_code(" TBR21 "), Some(Country::Ctr21));
    assert_eq!(Country::from_code("gb"), Some(Country::Uk));
    assert_eq!(Country::from_code("De"), Some(Country::De));
    assert_eq!(Country::from_code("FR"), Some(Country::Fr));
    assert_eq!(Country::from_code("au"), Some(Country::Au));
    assert_eq!(Country::from_code("JP"), Some(Country::Jp));
    for bad in ["", "XX", "U", "USA1", "ÜK", "\u{0}"] {
        assert_eq!(Country::from_code(bad), None, "{bad:?}");
        assert_eq!(bad.parse::<Country>(), Err(UnknownCountry), "{bad:?}");
    }
    assert_eq!("fr".parse::<Country>(), Ok(Country::Fr));
    let msg = std::format!("{}", UnknownCountry);
    assert!(msg.contains("unknown country") && msg.contains("CTR21"), "{msg}");
}

#[test]
fn gain_encoding() {
    assert_eq!(gain_regs(0), Some((0x00, 0x00)));
    assert_eq!(gain_regs(120), Some((12, 0)));
    assert_eq!(gain_regs(117), Some((11, 7)));
    assert_eq!(gain_regs(-35), Some((0x13, 0x15)));
    assert_eq!(gain_regs(-150), Some((0x1F, 0x10)));
    assert_eq!(gain_regs(121), None);
    assert_eq!(gain_regs(-151), None);
    assert_eq!(gain_regs(i16::MIN), None);
}

#[test]
fn wrong_id_is_refused_before_anything_is_written() {
    for bad in [0x00, 0xFF, 0x83] {
        let c = mock_config(Country::Fcc);
        let script = r(2, bad);
        let mut delay = CheckedDelay::new(&[D::delay_ms(1), D::delay_ms(1)]);
        let mut dut = Si3050::new(SpiMock::new(&script), reset_pin(), PinMock::new(&[]), c);
        assert_eq!(dut.init(&mut delay), Err(Error::WrongId { reg2: bad }));
        assert_eq!(dut.identity(), None);
        // Unusable, and says so instead of touching the bus.
        assert_eq!(dut.seize(true), Err(PortError::InvalidState));
        assert_eq!(dut.flash(100), Err(PortError::InvalidState));
        assert_eq!(dut.tick(10), Err(Error::NotInitialised));
        assert_eq!(dut.poll_event(), None);
        delay.done();
        done(dut);
    }
}

#[test]
fn line_side_that_never_links_times_out_after_the_bounded_polls() {
    let c = Config { link_polls: 5, ..mock_config(Country::Ctr21) };
    let mut script = init_script(&c, 1);
    // Cut the script at the FDT poll and replace it with five misses.
    let fdt = script.len() - (r(12, 0).len() + r(11, 0).len() + r(13, 0).len() + w(4, 0).len() + w(5, 0).len());
    script.truncate(fdt);
    for _ in 0..5 {
        script.extend(r(12, 0x00));
    }
    let mut delays = init_delays(1);
    for _ in 0..4 {
        delays.push(D::delay_ms(100));
    }
    let mut delay = CheckedDelay::new(&delays);
    let mut dut = Si3050::new(SpiMock::new(&script), reset_pin(), PinMock::new(&[]), c);
    assert_eq!(dut.init(&mut delay), Err(Error::LinkTimeout { polls: 5 }));
    assert_eq!(dut.identity(), None);
    delay.done();
    done(dut);
}

#[test]
fn link_up_without_line_side_id_is_an_error() {
    let c = mock_config(Country::Fcc);
    let mut script = init_script(&c, 1);
    let tail = r(11, 0).len() + r(13, 0).len() + w(4, 0).len() + w(5, 0).len();
    script.truncate(script.len() - tail);
    script.extend(r(11, 0x05)); // LSID 0
    let mut delay = CheckedDelay::new(&init_delays(1));
    let mut dut = Si3050::new(SpiMock::new(&script), reset_pin(), PinMock::new(&[]), c);
    assert_eq!(dut.init(&mut delay), Err(Error::NoLineSide));
    delay.done();
    done(dut);
}

#[test]
fn bad_config_is_refused_without_touching_the_chip() {
    let cases = [
        (Config { tx_start: 1024, ..mock_config(Country::Fcc) }, "tx_start"),
        (Config { rx_start: u16::MAX, ..mock_config(Country::Fcc) }, "rx_start"),
        (Config { tx_gain_tenth_db: 130, ..mock_config(Country::Fcc) }, "tx_gain_tenth_db"),
        (Config { rx_gain_tenth_db: -200, ..mock_config(Country::Fcc) }, "rx_gain_tenth_db"),
        (Config { link_polls: 0, ..mock_config(Country::Fcc) }, "link_polls"),
    ];
    for (c, field) in cases {
        let mut delay = CheckedDelay::new(&[]);
        let mut dut = Si3050::new(SpiMock::new(&[]), PinMock::new(&[]), PinMock::new(&[]), c);
        assert_eq!(dut.init(&mut delay), Err(Error::InvalidConfig(field)));
        delay.done();
        done(dut);
    }
}

/// An initialised driver whose SPI then follows `after` and INT pin `int`.
fn ready(after: Vec<S<u8>>, int: Vec<P>) -> Dut {
    let c = mock_config(Country::Fcc);
    let mut script = init_script(&c, 1);
    script.extend(after);
    let mut delay = CheckedDelay::new(&init_delays(1));
    let mut dut = Si3050::new(SpiMock::new(&script), reset_pin(), PinMock::new(&int), c);
    dut.init(&mut delay).unwrap();
    delay.done();
    dut
}

fn events(dut: &mut Dut) -> Vec<FxoEvent> {
    core::iter::from_fn(|| dut.poll_event()).collect()
}

#[test]
fn ring_interrupt_gives_ring_start_then_stop_when_rdt_clears() {
    let mut s = vec![];
    // t=0: INT low, source RDTI|POLI (ring swings the sign): clear both, read RDT.
    s.extend(r(4, 0x81));
    s.extend(w(4, 0x7E));
    s.extend(r(5, 0x2C)); // RDT | RDTP | ONHM
    // t=10: INT high; still ringing.
    s.extend(r(5, 0x2C));
    // t=20: RDT cleared: ring over; polarity re-read silently 64 ms later.
    s.extend(r(5, 0x08));
    // t=90: LVS -48: reversed while ringing: taken silently.
    s.extend(r(29, (-48i8) as u8));
    let int = vec![P::get(State::Low), P::get(State::High), P::get(State::High), P::get(State::High)];
    let mut dut = ready(s, int);
    dut.tick(0).unwrap();
    assert_eq!(events(&mut dut), [FxoEvent::RingStart]);
    assert!(dut.line_status().ringing);
    dut.tick(10).unwrap();
    assert_eq!(events(&mut dut), []);
    dut.tick(20).unwrap();
    assert_eq!(events(&mut dut), [FxoEvent::RingStop]);
    dut.tick(90).unwrap();
    assert_eq!(events(&mut dut), []);
    assert_eq!(dut.line_status().polarity, Polarity::Reversed);
    assert_eq!(dut.line_status().voltage, Some(48));
    done(dut);
}

#[test]
fn polarity_interrupt_is_debounced_then_reported_once() {
    let mut s = vec![];
    s.extend(r(4, 0x01));
    s.extend(w(4, 0xFE));
    // t=64: LVS -47: reversed.
    s.extend(r(29, (-47i8) as u8));
    // Second POLI at t=100 that flips back within the debounce: LVS +48 at 164.
    s.extend(r(4, 0x01));
    s.extend(w(4, 0xFE));
    s.extend(r(29, (-46i8) as u8));
    let int = vec![P::get(State::Low), P::get(State::High), P::get(State::Low), P::get(State::High)];
    let mut dut = ready(s, int);
    dut.tick(0).unwrap();
    assert_eq!(events(&mut dut), []); // not yet: debounce
    dut.tick(64).unwrap();
    assert_eq!(events(&mut dut), [FxoEvent::PolarityReversal]);
    assert_eq!(dut.line_status().polarity, Polarity::Reversed);
    dut.tick(100).unwrap();
    dut.tick(164).unwrap();
    // Still reversed after the glitch: nothing new.
    assert_eq!(events(&mut dut), []);
    done(dut);
}

#[test]
fn polarity_reading_under_3v_keeps_the_last_polarity() {
    let mut s = vec![];
    s.extend(r(4, 0x01));
    s.extend(w(4, 0xFE));
    s.extend(r(29, 0x00)); // forced 0 under 3 V
    let int = vec![P::get(State::Low), P::get(State::High)];
    let mut dut = ready(s, int);
    dut.tick(0).unwrap();
    dut.tick(70).unwrap();
    assert_eq!(events(&mut dut), []);
    assert_eq!(dut.line_status().polarity, Polarity::Normal);
    done(dut);
}

#[test]
fn dropout_interrupt_while_seized_reports_a_debounced_drop_and_restore() {
    let mut s = vec![];
    s.extend(w(5, 0x09)); // seize
    // t=0: INT high; acquiring: LCS2 23 (25 mA) -> present.
    s.extend(r(28, 23));
    // t=100: DODI.
    s.extend(r(4, 0x08));
    s.extend(w(4, 0xF7));
    s.extend(r(28, 0)); // suspect since 100
    // t=130: still 0, under debounce.
    s.extend(r(28, 0));
    // t=170: 0 for 70 ms: drop.
    s.extend(r(28, 0));
    // t=300: current back: restoring.
    s.extend(r(28, 22));
    // t=370: back for 70 ms: restore.
    s.extend(r(28, 22));
    let int = vec![
        P::get(State::High),
        P::get(State::Low),
        P::get(State::High),
        P::get(State::High),
        P::get(State::High),
        P::get(State::High),
    ];
    let mut dut = ready(s, int);
    dut.seize(true).unwrap();
    dut.tick(0).unwrap();
    assert_eq!(dut.line_status().loop_current_ma, Some(25));
    dut.tick(100).unwrap();
    dut.tick(130).unwrap();
    assert_eq!(events(&mut dut), []);
    dut.tick(170).unwrap();
    assert_eq!(events(&mut dut), [FxoEvent::LoopCurrentDrop]);
    dut.tick(300).unwrap();
    assert_eq!(events(&mut dut), []);
    dut.tick(370).unwrap();
    assert_eq!(events(&mut dut), [FxoEvent::LoopCurrentRestore]);
    done(dut);
}

#[test]
fn dropout_glitch_shorter_than_debounce_is_no_event() {
    let mut s = vec![];
    s.extend(w(5, 0x09));
    s.extend(r(28, 23));
    s.extend(r(4, 0x08));
    s.extend(w(4, 0xF7));
    s.extend(r(28, 0));
    s.extend(r(28, 23)); // back at t=120
    let int = vec![P::get(State::High), P::get(State::Low), P::get(State::High)];
    let mut dut = ready(s, int);
    dut.seize(true).unwrap();
    dut.tick(0).unwrap();
    dut.tick(100).unwrap();
    dut.tick(120).unwrap();
    assert_eq!(events(&mut dut), []);
    done(dut);
}

#[test]
fn flash_opens_the_loop_for_its_time_and_reports_no_drop() {
    let mut s = vec![];
    s.extend(w(5, 0x09)); // seize
    s.extend(r(28, 23)); // t=0 present
    s.extend(w(5, 0x08)); // flash(90) at t=0: loop open
    // t=50: flashing: no SPI at all (INT high).
    // t=90: close the loop again, then acquire.
    s.extend(w(5, 0x09));
    s.extend(r(28, 23));
    let int = vec![P::get(State::High), P::get(State::High), P::get(State::High)];
    let mut dut = ready(s, int);
    dut.seize(true).unwrap();
    dut.tick(0).unwrap();
    dut.flash(90).unwrap();
    assert!(dut.flashing());
    assert_eq!(dut.flash(90), Err(PortError::InvalidState)); // one at a time
    dut.tick(50).unwrap();
    assert_eq!(dut.line_status().loop_current_ma, Some(0));
    dut.tick(90).unwrap();
    assert!(!dut.flashing());
    assert_eq!(events(&mut dut), []);
    done(dut);
}

#[test]
fn flash_on_hook_or_zero_is_refused_without_bus_traffic() {
    let mut dut = ready(vec![], vec![]);
    assert_eq!(dut.flash(100), Err(PortError::InvalidState));
    let mut dut2 = ready(w(5, 0x09), vec![]);
    dut2.seize(true).unwrap();
    assert_eq!(dut2.flash(0), Err(PortError::InvalidState));
    done(dut);
    done(dut2);
}

#[test]
fn gains_and_pcm_can_change_after_init_and_bad_values_write_nothing() {
    let mut s = vec![];
    s.extend(w(38, 0x13));
    s.extend(w(40, 0x15));
    s.extend(w(39, 0x01));
    s.extend(w(41, 0x00));
    s.extend(w(33, 0x38));
    s.extend(w(34, 0x20));
    s.extend(w(35, 0x01));
    s.extend(w(36, 0x30));
    s.extend(w(37, 0x03));
    s.extend(w(5, 0x00)); // on-hook monitor off
    let mut dut = ready(s, vec![]);
    assert_eq!(dut.set_gains(121, 0), Err(Error::InvalidConfig("tx_gain_tenth_db")));
    assert_eq!(dut.set_gains(0, -151), Err(Error::InvalidConfig("rx_gain_tenth_db")));
    dut.set_gains(-35, 10).unwrap();
    assert_eq!(dut.set_pcm(PcmFormat::Linear16, 1024, 0), Err(Error::InvalidConfig("tx_start")));
    dut.set_pcm(PcmFormat::Linear16, 0x120, 0x330).unwrap();
    dut.set_on_hook_monitor(false).unwrap();
    assert_eq!(dut.config().pcm, PcmFormat::Linear16);
    done(dut);
}

#[test]
fn driver_core_uses_no_std() {
    // The driver core must build for no_std targets: core, heapless and
    // embedded-hal only (the model and the tests may use std).
    for (name, src) in [
        ("mod.rs", include_str!("mod.rs")),
        ("regs.rs", include_str!("regs.rs")),
        ("country.rs", include_str!("country.rs")),
    ] {
        for (i, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            assert!(!code.contains("std::"), "{name}:{}: {line}", i + 1);
            assert!(!code.contains("Vec<") && !code.contains("Box<") && !code.contains("String"), "{name}:{}: {line}", i + 1);
        }
    }
}

#[test]
fn link_loss_interrupt_refuses_hook_changes_until_frame_lock_is_back() {
    let mut s = vec![];
    // t=0: FDTI: link lost.
    s.extend(r(4, 0x20));
    s.extend(w(4, 0xDF));
    s.extend(r(12, 0x00));
    // t=10: still lost (checked every tick, nothing else read).
    s.extend(r(12, 0x00));
    // t=20: back.
    s.extend(r(12, 0x40));
    s.extend(w(5, 0x09));
    let int = vec![P::get(State::Low), P::get(State::High), P::get(State::High)];
    let mut dut = ready(s, int);
    dut.tick(0).unwrap();
    assert!(!dut.link_ok());
    assert_eq!(dut.seize(true), Err(PortError::CardGone));
    dut.tick(10).unwrap();
    assert!(!dut.link_ok());
    dut.tick(20).unwrap();
    assert!(dut.link_ok());
    dut.seize(true).unwrap();
    done(dut);
}
