//! Transaction-script tests: every register access of the init sequence and
//! of the reaction to each interrupt (layer-1 change, frame received, frame
//! with a bad FCS, RX FIFO overflow) and of sending a frame.

use std::vec;
use std::vec::Vec;

use embedded_hal_mock::eh1::delay::NoopDelay;
use embedded_hal_mock::eh1::digital::{Mock as PinMock, State, Transaction as P};
use embedded_hal_mock::eh1::spi::{Mock as SpiMock, Transaction as S};

use super::regs::*;
use super::*;

type Dut = Xhfc<SpiMock<u8>, PinMock, PinMock>;

/// Script of one register write.
fn w(reg: u8, val: u8) -> Vec<S<u8>> {
    vec![S::transaction_start(), S::write_vec(vec![SPI_ADDR, reg, SPI_WR, val]), S::transaction_end()]
}

/// Script of one register read returning `val`.
fn r(reg: u8, val: u8) -> Vec<S<u8>> {
    vec![S::transaction_start(), S::write_vec(vec![SPI_ADDR, reg, SPI_RD]), S::read(val), S::transaction_end()]
}

fn select(num: u8, dir: u8) -> Vec<S<u8>> {
    [w(R_FIFO, (num << 1) | dir), r(R_STATUS, 0)].concat()
}

/// Init of an XHFC-1SU, interface 0 as TE with B1/B2 on slots 0/1, slave at
/// 2 Mbit/s; the chip shows BUSY once after reset; it starts in F3.
fn init_script() -> Vec<S<u8>> {
    let mut s = vec![];
    s.extend(r(R_STATUS, M_BUSY));
    s.extend(r(R_STATUS, 0));
    s.extend(r(R_CHIP_ID, CHIP_ID_1SU));
    s.extend(w(R_CIRM, M_SRES));
    s.extend(w(R_CIRM, 0));
    s.extend(r(R_STATUS, 0));
    s.extend(w(R_FIFO_MD, 0));
    s.extend(w(R_PCM_MD0, 0x90));
    s.extend(w(R_PCM_MD1, 0x00));
    s.extend(w(R_PCM_MD0, 0x00));
    // S/T interface 0: TE, B1/B2 on, released from reset.
    s.extend(w(R_SU_SEL, 0));
    s.extend(w(A_SU_CTRL0, 0x03));
    s.extend(w(A_SU_CTRL1, 0x00));
    s.extend(w(A_SU_CTRL2, 0x03));
    s.extend(w(A_SU_CLK_DLY, 0x0E));
    s.extend(w(A_SU_WR_STA, 0x00));
    // D channel: FIFO 2 both ways, HDLC, IFF, IRQ at frame end, reset.
    for dir in [0, 1] {
        s.extend(select(2, dir));
        s.extend(w(A_CON_HDLC, 0x1D));
        s.extend(w(A_SUBCH_CFG, 0x02));
        s.extend(w(A_FIFO_CTRL, 0x01));
        s.extend(w(A_INC_RES_FIFO, M_RES_FIFO));
        s.extend(r(R_STATUS, 0));
    }
    // B1 (channel 0) on slot 0, B2 (channel 1) on slot 1: S/T <-> PCM.
    for (ch, slot) in [(0u8, 0u8), (1, 1)] {
        s.extend(select(ch, 0));
        s.extend(w(A_CON_HDLC, 0xC2));
        s.extend(w(R_SLOT, slot << 1));
        s.extend(w(A_SL_CFG, (ch << 1) | 0x80));
        s.extend(w(R_SLOT, (slot << 1) | 1));
        s.extend(w(A_SL_CFG, (ch << 1) | 0xC1));
    }
    s.extend(w(R_SU_IRQMSK, 0x01));
    s.extend(w(R_IRQ_CTRL, 0x09));
    s.extend(w(R_SU_SEL, 0));
    s.extend(r(A_SU_RD_STA, 3));
    s
}

/// Reset pulse, then `irq` reads of the IRQ pin (true: low, asserted).
fn pins(irq: &[bool]) -> (PinMock, PinMock) {
    let reset = PinMock::new(&[P::set(State::Low), P::set(State::High)]);
    let irq: Vec<P> = irq.iter().map(|&low| P::get(if low { State::Low } else { State::High })).collect();
    (reset, PinMock::new(&irq))
}

fn dut(script: &[S<u8>], irq: &[bool]) -> Dut {
    let (reset, irq) = pins(irq);
    let mut d = Xhfc::new(SpiMock::new(script), reset, irq, Config::one(Side::Te));
    assert_eq!(d.init(&mut NoopDelay::new()), Ok(ChipKind::Xhfc1Su));
    d
}

fn done(d: Dut) {
    let (mut spi, mut reset, mut irq) = d.release();
    spi.done();
    reset.done();
    irq.done();
}

/// The interrupt of F3 -> F7, and the first (empty) look at the RX FIFO.
fn activation() -> Vec<S<u8>> {
    let mut s = vec![];
    s.extend(r(R_SU_IRQ, 0x01));
    s.extend(w(R_SU_SEL, 0));
    s.extend(r(A_SU_RD_STA, 7));
    s.extend(r(R_FIFO_BL0_IRQ, 0));
    s.extend(select(2, 1));
    s.extend(empty_rx(0));
    s
}

/// An RX FIFO look that finds nothing new at Z = F = `at`.
fn empty_rx(at: u8) -> Vec<S<u8>> {
    [r(A_FIFO_STA, 0), r(A_F1, at), r(A_F2, at), r(A_Z1, at), r(A_Z2, at)].concat()
}

/// A whole frame in the RX FIFO (from Z2 = 0, F2 = 0), read, then F2 incremented.
fn rx_frame(bytes: &[u8]) -> Vec<S<u8>> {
    let n = bytes.len() as u8;
    let mut s = vec![];
    s.extend(r(R_SU_IRQ, 0));
    s.extend(r(R_FIFO_BL0_IRQ, M_D_RX_IRQ));
    s.extend([r(A_FIFO_STA, 0), r(A_F1, 1), r(A_F2, 0), r(A_Z1, n - 1), r(A_Z2, 0)].concat());
    for &b in bytes {
        s.extend(r(A_FIFO_DATA, b));
    }
    s.extend(w(A_INC_RES_FIFO, M_INC_F));
    s.extend(r(R_STATUS, 0));
    s.extend([r(A_FIFO_STA, 0), r(A_F1, 1), r(A_F2, 1), r(A_Z1, n), r(A_Z2, n)].concat());
    s
}

#[test]
fn init_sequence_is_exact() {
    let d = dut(&init_script(), &[]);
    assert_eq!(d.raw_state(0), Some(3));
    assert_eq!(d.l1_state(0), L1State::Deactivated);
    done(d);
}

#[test]
fn wrong_chip_id_stops_init_before_any_write() {
    let script = [r(R_STATUS, 0), r(R_CHIP_ID, 0x24)].concat();
    let (reset, irq) = pins(&[]);
    let mut d = Xhfc::new(SpiMock::new(&script), reset, irq, Config::one(Side::Te));
    assert_eq!(d.init(&mut NoopDelay::new()), Err(Error::WrongChipId(0x24)));
    done(d);
}

#[test]
fn no_interrupt_and_nothing_active_touches_no_register() {
    let mut d = dut(&init_script(), &[false, false]);
    d.service().unwrap();
    d.service().unwrap();
    assert_eq!(d.poll_event(0), None);
    done(d);
}

#[test]
fn layer1_interrupt_reads_the_state_and_reports_it() {
    let script = [init_script(), activation()].concat();
    let mut d = dut(&script, &[true]);
    d.service().unwrap();
    assert_eq!(d.poll_event(0), Some(Event::State { side: Side::Te, state: 7 }));
    assert_eq!(d.poll_event(0), Some(Event::L1(L1State::Activated)));
    assert_eq!(d.poll_event(0), None);
    assert_eq!(d.stats(0).l1_changes, 1);
    done(d);
}

#[test]
fn frame_interrupt_reads_the_frame_checks_status_and_increments_f() {
    let ua = [0x00, 0x01, 0x73, 0xAA, 0xBB, 0x00];
    let script = [init_script(), activation(), rx_frame(&ua)].concat();
    let mut d = dut(&script, &[true, true]);
    d.service().unwrap();
    d.service().unwrap();
    assert_eq!(d.poll_frame(0).as_deref(), Some(&[0x00, 0x01, 0x73][..]), "FCS and status stripped");
    assert_eq!(d.poll_frame(0), None);
    assert_eq!(d.stats(0).frames_in, 1);
    done(d);
}

#[test]
fn frame_with_bad_crc_status_is_counted_and_dropped() {
    let bad = [0x00, 0x01, 0x73, 0xAA, 0xBB, 0xFF];
    let script = [init_script(), activation(), rx_frame(&bad)].concat();
    let mut d = dut(&script, &[true, true]);
    d.service().unwrap();
    d.service().unwrap();
    assert_eq!(d.poll_frame(0), None);
    let s = d.stats(0);
    assert_eq!((s.bad_fcs, s.frames_in), (1, 0));
    done(d);
}

#[test]
fn rx_fifo_overflow_resets_the_fifo_and_is_counted() {
    let mut overflow = vec![];
    overflow.extend(r(R_SU_IRQ, 0));
    overflow.extend(r(R_FIFO_BL0_IRQ, 0));
    overflow.extend(r(A_FIFO_STA, M_FIFO_ERR));
    overflow.extend(w(A_INC_RES_FIFO, M_RES_FIFO | M_RES_FIFO_ERR));
    overflow.extend(r(R_STATUS, 0));
    let script = [init_script(), activation(), overflow].concat();
    let mut d = dut(&script, &[true, true]);
    d.service().unwrap();
    d.service().unwrap();
    assert_eq!(d.stats(0).rx_overflow, 1);
    assert_eq!(d.poll_frame(0), None);
    done(d);
}

#[test]
fn sending_a_frame_writes_its_bytes_then_increments_f() {
    let mut tx = vec![];
    tx.extend(empty_rx(0)); // activated: the RX FIFO is looked at first
    tx.extend(select(2, 0));
    tx.extend([r(A_F1, 0), r(A_F2, 0), r(A_Z1, 0), r(A_Z2, 0)].concat());
    for b in [0x00, 0x01, 0x7F] {
        tx.extend(w(A_FIFO_DATA, b));
    }
    tx.extend(w(A_INC_RES_FIFO, M_INC_F));
    tx.extend(r(R_STATUS, 0));
    let script = [init_script(), activation(), tx].concat();
    let mut d = dut(&script, &[true, false]);
    assert_eq!(d.send_frame(0, &[0x00, 0x01, 0x7F]), Err(DChannelError::L1Down));
    d.service().unwrap();
    d.poll_event(0);
    d.send_frame(0, &[0x00, 0x01, 0x7F]).unwrap();
    d.service().unwrap();
    assert_eq!(d.stats(0).frames_out, 1);
    done(d);
}

#[test]
fn activation_request_writes_su_act() {
    let script = [init_script(), w(R_SU_SEL, 0), w(A_SU_WR_STA, 0x60), w(R_SU_SEL, 0), w(A_SU_WR_STA, 0x40)].concat();
    let mut d = dut(&script, &[]);
    d.request_l1(0, true).unwrap();
    d.request_l1(0, false).unwrap();
    assert!(matches!(d.request_l1(1, true), Err(Error::NoSuchPort { port: 1, chip_ports: 1 })));
    done(d);
}
