//! The driver against the register-level chip model: layer-1 activation
//! (TE and NT, by request and from the far end), LAPD frames both ways
//! (short and longer than a FIFO), bad FCS, overflow, oversized frames, a
//! TX FIFO that never drains, bad chips and configurations, the DChannel
//! adapter, and garbage from the bus.

use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

use embedded_hal::spi::{ErrorType, Operation, SpiDevice};
use embedded_hal_mock::eh1::delay::NoopDelay;

use super::model::{new_model, ModelError, ModelHandle, ModelIrq, ModelReset, ModelSpi};
use super::*;
use crate::isdn::{DChannel, L1Status};

type Dut = Xhfc<ModelSpi, ModelReset, ModelIrq>;

struct Bench {
    dut: Dut,
    m: ModelHandle,
    events: Vec<(usize, Event)>,
}

impl Bench {
    fn new(chip_id: u8, config: Config) -> Bench {
        let (spi, rst, irq, m) = new_model(chip_id);
        let mut dut = Xhfc::new(spi, rst, irq, config);
        dut.init(&mut NoopDelay::new()).expect("init");
        Bench { dut, m, events: vec![] }
    }

    /// `n` steps of the chip, each followed by a service.
    fn run(&mut self, n: usize) {
        for _ in 0..n {
            self.m.step();
            self.dut.service().expect("service");
            for p in 0..MAX_PORTS {
                while let Some(e) = self.dut.poll_event(p) {
                    self.events.push((p, e));
                }
            }
        }
    }

    fn events(&mut self) -> Vec<(usize, Event)> {
        core::mem::take(&mut self.events)
    }

    fn frames(&mut self, p: usize) -> Vec<Vec<u8>> {
        core::iter::from_fn(|| self.dut.poll_frame(p)).map(|f| f.to_vec()).collect()
    }

    /// Brings TE port `p` up: the NT answers.
    fn activate_te(&mut self, p: usize) {
        self.m.plug(p, true);
        self.m.far_wants_active(p, true);
        self.dut.request_l1(p, true).unwrap();
        self.run(10);
        assert_eq!(self.dut.l1_state(p), L1State::Activated);
        self.events();
    }
}

fn te(p: u8) -> Event {
    Event::State { side: Side::Te, state: p }
}

fn nt(p: u8) -> Event {
    Event::State { side: Side::Nt, state: p }
}

const SABME: [u8; 3] = [0x00, 0x01, 0x7F];
const UA: [u8; 3] = [0x00, 0x01, 0x73];

fn i_frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0x00, 0x01, 0x00, 0x00];
    f.extend((0..len - 4).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)));
    f
}

#[test]
fn te_activates_on_request_and_exchanges_lapd_frames_both_ways() {
    let mut b = Bench::new(regs::CHIP_ID_1SU, Config::one(Side::Te));
    assert_eq!(b.dut.kind(), Some(ChipKind::Xhfc1Su));
    assert_eq!(b.dut.raw_state(0), Some(3), "F3 after init");
    assert_eq!(b.dut.send_frame(0, &SABME), Err(DChannelError::L1Down));
    b.m.plug(0, true);
    b.dut.request_l1(0, true).unwrap();
    b.run(3);
    assert_eq!(b.events(), [(0, te(4)), (0, Event::L1(L1State::Activating))], "F4: awaiting the NT");
    b.m.far_wants_active(0, true);
    b.run(5);
    assert_eq!(b.events(), [(0, te(6)), (0, te(7)), (0, Event::L1(L1State::Activated))]);

    // Q.921 set-up both ways, then I-frames longer than a FIFO.
    b.dut.send_frame(0, &SABME).unwrap();
    b.run(3);
    assert_eq!(b.m.far_received(0), [SABME.to_vec()]);
    b.m.far_send(0, &UA, true);
    b.run(3);
    assert_eq!(b.frames(0), [UA.to_vec()]);
    let big_out = i_frame(MAX_FRAME, 1);
    let big_in = i_frame(200, 2);
    b.dut.send_frame(0, &big_out).unwrap();
    b.dut.send_frame(0, &SABME).unwrap();
    b.m.far_send(0, &big_in, true);
    b.m.far_send(0, &UA, true);
    b.run(40);
    assert_eq!(b.m.far_received(0), [big_out, SABME.to_vec()]);
    assert_eq!(b.frames(0), [big_in, UA.to_vec()]);
    let s = b.dut.stats(0);
    assert_eq!((s.frames_in, s.frames_out, s.bad_fcs, s.malformed, s.rx_overflow), (3, 3, 0, 0, 0));
    assert_eq!(b.m.state().framing_errors, 0);
}

#[test]
fn te_follows_the_far_end_up_down_and_a_pulled_cable() {
    let mut b = Bench::new(regs::CHIP_ID_2SU, Config::one(Side::Te));
    b.m.plug(0, true);
    b.m.far_wants_active(0, true);
    b.run(5);
    assert_eq!(
        b.events(),
        [(0, te(5)), (0, Event::L1(L1State::Activating)), (0, te(6)), (0, te(7)), (0, Event::L1(L1State::Activated))]
    );
    // INFO0 from the NT: deactivated.
    b.m.far_wants_active(0, false);
    b.run(3);
    assert_eq!(b.events(), [(0, te(3)), (0, Event::L1(L1State::Deactivated))]);
    b.m.far_wants_active(0, true);
    b.run(5);
    b.events();
    // Frames queued when the cable goes are dropped, not sent later.
    b.m.state_mut().tx_stuck = true;
    b.dut.send_frame(0, &SABME).unwrap();
    b.m.plug(0, false);
    b.run(3);
    assert_eq!(b.events(), [(0, te(8)), (0, Event::L1(L1State::Deactivated)), (0, te(3))]);
    assert_eq!(b.dut.stats(0).l1_changes, 6);
    b.m.state_mut().tx_stuck = false;
    b.m.plug(0, true);
    b.run(6);
    assert_eq!(b.dut.l1_state(0), L1State::Activated);
    b.run(5);
    assert!(b.m.far_received(0).is_empty(), "the frame from before the pull is gone");
}

#[test]
fn nt_on_port_1_activates_deactivates_and_survives_a_pull() {
    let mut c = Config::one(Side::Te);
    c.ports[1] = Some(PortConfig { side: Side::Nt, b_slots: [2, 3] });
    let mut b = Bench::new(regs::CHIP_ID_4SU, c);
    assert_eq!(b.dut.raw_state(1), Some(1), "G1 after init");
    b.m.plug(1, true);
    b.dut.request_l1(1, true).unwrap();
    b.run(4);
    assert_eq!(
        b.events(),
        [(1, nt(2)), (1, Event::L1(L1State::Activating)), (1, nt(3)), (1, Event::L1(L1State::Activated))]
    );
    assert_eq!(b.dut.l1_state(0), L1State::Deactivated, "port 0 untouched");
    b.dut.send_frame(1, &UA).unwrap();
    b.m.far_send(1, &SABME, true);
    b.run(3);
    assert_eq!(b.m.far_received(1), [UA.to_vec()]);
    assert_eq!(b.frames(1), [SABME.to_vec()]);
    assert!(b.frames(0).is_empty() && b.m.far_received(0).is_empty());
    // Lost framing (pull) is G2, back to G3 when plugged.
    b.m.plug(1, false);
    b.run(2);
    assert_eq!(b.events(), [(1, nt(2)), (1, Event::L1(L1State::Activating))]);
    b.m.plug(1, true);
    b.run(2);
    assert_eq!(b.events(), [(1, nt(3)), (1, Event::L1(L1State::Activated))]);
    b.dut.request_l1(1, false).unwrap();
    b.run(3);
    assert_eq!(b.events(), [(1, nt(4)), (1, Event::L1(L1State::Deactivated)), (1, nt(1))]);
}

#[test]
fn init_sets_up_pcm_slots_modes_and_fifos() {
    let mut c = Config::one(Side::Nt);
    c.ports[0] = Some(PortConfig { side: Side::Nt, b_slots: [5, 9] });
    c.ports[2] = Some(PortConfig { side: Side::Te, b_slots: [40, 41] });
    c.pcm_master = true;
    c.pcm_rate = PcmRate::Mbit4;
    let b = Bench::new(regs::CHIP_ID_4SU, c);
    let s = b.m.state();
    assert_eq!(s.pcm_md0 & regs::M_PCM_MD_MASTER, regs::M_PCM_MD_MASTER);
    assert_eq!(s.pcm_md1, 0x10, "4 Mbit/s");
    assert_eq!(s.su[0].ctrl0 & regs::M_SU_MD, regs::M_SU_MD);
    assert_eq!(s.su[2].ctrl0 & regs::M_SU_MD, 0);
    assert_eq!(s.su[1].ctrl0, 0, "unused port untouched");
    for (slot, ch) in [(5, 0), (9, 1), (40, 8), (41, 9)] {
        assert_eq!(s.slots[slot][0], (ch << 1) | regs::V_ROUT_TX_STIO1, "slot {slot} tx");
        assert_eq!(s.slots[slot][1], (ch << 1) | 1 | regs::V_ROUT_RX_STIO2, "slot {slot} rx");
    }
    for d in [2, 10] {
        for dir in 0..2 {
            let f = &s.fifos[d][dir];
            assert_eq!(f.con_hdlc & regs::M_HDLC_TRP, 0, "D channel in HDLC mode");
            assert_eq!(f.subch, regs::SUBCH_D);
        }
    }
    assert_eq!(s.fifos[0][0].con_hdlc, regs::M_HDLC_TRP | regs::V_DATA_FLOW_ST_PCM);
    assert_eq!(s.su_irqmsk, 0b0101);
    assert!(!s.irq_asserted());
}

#[test]
fn bad_fcs_is_counted_and_dropped() {
    let mut b = Bench::new(regs::CHIP_ID_1SU, Config::one(Side::Te));
    b.activate_te(0);
    b.m.far_send(0, &SABME, false);
    b.m.far_send(0, &UA, true);
    b.run(3);
    assert_eq!(b.frames(0), [UA.to_vec()]);
    assert_eq!(b.dut.stats(0).bad_fcs, 1);
}

#[test]
fn rx_fifo_overflow_is_counted_and_the_next_frames_pass() {
    let mut b = Bench::new(regs::CHIP_ID_1SU, Config::one(Side::Te));
    b.activate_te(0);
    // Nobody serves the chip while a 120-byte frame arrives: the FIFO overflows.
    b.m.far_send(0, &i_frame(120, 3), true);
    for _ in 0..10 {
        b.m.step();
    }
    assert!(b.m.state().fifos[2][1].err);
    b.run(2);
    assert_eq!(b.dut.stats(0).rx_overflow, 1);
    assert!(b.frames(0).is_empty());
    b.m.far_send(0, &UA, true);
    b.m.far_send(0, &i_frame(100, 4), true);
    b.run(12);
    assert_eq!(b.frames(0), [UA.to_vec(), i_frame(100, 4)]);
    assert_eq!(b.dut.stats(0).rx_overflow, 1);
}

#[test]
fn oversized_and_runt_frames_are_malformed_and_dropped() {
    let mut b = Bench::new(regs::CHIP_ID_1SU, Config::one(Side::Te));
    b.activate_te(0);
    b.m.far_send(0, &i_frame(MAX_FRAME + 40, 5), true);
    b.m.far_send(0, &[0x00, 0x01], true);
    b.m.far_send(0, &SABME, true);
    b.run(30);
    assert_eq!(b.frames(0), [SABME.to_vec()]);
    assert_eq!(b.dut.stats(0).malformed, 2);
    // And on the way out: refused before they reach the chip.
    assert_eq!(b.dut.send_frame(0, &i_frame(MAX_FRAME + 1, 0)), Err(DChannelError::BadFrame));
    assert_eq!(b.dut.send_frame(0, &[0x00, 0x01]), Err(DChannelError::BadFrame));
    assert_eq!(b.dut.send_frame(3, &SABME), Err(DChannelError::CardGone), "no such port");
}

#[test]
fn a_tx_fifo_that_never_drains_drops_frames_within_bounds() {
    let mut c = Config::one(Side::Te);
    c.tx_stall_polls = 5;
    let mut b = Bench::new(regs::CHIP_ID_1SU, c);
    b.activate_te(0);
    b.m.state_mut().tx_stuck = true;
    for i in 0..TX_QUEUE {
        b.dut.send_frame(0, &i_frame(60, i as u8)).unwrap();
    }
    assert_eq!(b.dut.send_frame(0, &SABME), Err(DChannelError::Busy), "queue full");
    let reads0 = b.m.state().reads;
    b.run(40);
    let per_service = (b.m.state().reads - reads0) / 40;
    assert!(per_service < 80, "{per_service} register reads per service");
    let s = b.dut.stats(0);
    assert!(s.tx_stalled >= 2, "{s:?}");
    assert!(b.m.far_received(0).is_empty());
    // The line comes back: new frames go.
    b.m.state_mut().tx_stuck = false;
    b.run(60);
    b.m.far_received(0);
    b.dut.send_frame(0, &SABME).unwrap();
    b.run(3);
    assert_eq!(b.m.far_received(0), [SABME.to_vec()]);
}

#[test]
fn wrong_chip_id_is_a_clear_error_and_nothing_is_written() {
    for id in [0x00, 0xFF, 0x42] {
        let (spi, rst, irq, m) = new_model(id);
        let mut dut = Xhfc::new(spi, rst, irq, Config::one(Side::Te));
        assert_eq!(dut.init(&mut NoopDelay::new()), Err(Error::WrongChipId(id)));
        assert_eq!(m.state().writes, 0);
        assert_eq!(dut.service(), Err(Error::NotInitialised));
        assert_eq!(dut.send_frame(0, &SABME), Err(DChannelError::CardGone));
        assert_eq!(dut.request_l1(0, true), Err(Error::NotInitialised));
    }
}

#[test]
fn bad_configs_are_refused_before_any_write() {
    let mut c = Config::one(Side::Te);
    c.ports[1] = Some(PortConfig { side: Side::Nt, b_slots: [2, 3] });
    let (spi, rst, irq, m) = new_model(regs::CHIP_ID_1SU);
    let mut dut = Xhfc::new(spi, rst, irq, c);
    assert_eq!(dut.init(&mut NoopDelay::new()), Err(Error::NoSuchPort { port: 1, chip_ports: 1 }));
    assert_eq!(m.state().writes, 0);
    c.ports[1] = Some(PortConfig { side: Side::Nt, b_slots: [1, 3] });
    let (spi, rst, irq, m) = new_model(regs::CHIP_ID_2SU);
    let mut dut = Xhfc::new(spi, rst, irq, c);
    assert_eq!(dut.init(&mut NoopDelay::new()), Err(Error::InvalidConfig("PCM slot used twice")));
    c.ports[1] = Some(PortConfig { side: Side::Nt, b_slots: [2, 32] });
    let (spi, rst, irq, _) = new_model(regs::CHIP_ID_2SU);
    let mut dut2 = Xhfc::new(spi, rst, irq, c);
    assert!(matches!(dut2.init(&mut NoopDelay::new()), Err(Error::InvalidConfig(_))));
    assert_eq!(m.state().writes, 0);
}

#[test]
fn a_chip_that_stays_busy_ends_init_after_the_bounded_wait() {
    let (spi, rst, irq, m) = new_model(regs::CHIP_ID_1SU);
    m.state_mut().busy_reads = u32::MAX;
    let mut dut = Xhfc::new(spi, rst, irq, Config { busy_polls: 7, ..Config::one(Side::Te) });
    assert_eq!(dut.init(&mut NoopDelay::new()), Err(Error::BusyTimeout));
    assert_eq!(m.state().reads, 7);
    m.state_mut().busy_reads = 2;
    assert_eq!(dut.init(&mut NoopDelay::new()), Ok(ChipKind::Xhfc1Su));
}

#[test]
fn the_dchannel_adapter_carries_l1_and_frames() {
    let (spi, rst, irq, m) = new_model(regs::CHIP_ID_2SU);
    let mut c = Config::one(Side::Te);
    c.ports[1] = Some(PortConfig { side: Side::Nt, b_slots: [2, 3] });
    let mut dut = Xhfc::new(spi, rst, irq, c);
    dut.init(&mut NoopDelay::new()).unwrap();
    let chip = Rc::new(RefCell::new(dut));
    let mut span = XhfcSpan::new(chip.clone(), 1);
    assert_eq!(span.kind(), crate::isdn::SpanKind::Bri);
    assert_eq!(span.l1_status(), L1Status::DOWN);
    assert_eq!(span.set_side(Side::Nt), Ok(()));
    assert_eq!(span.set_side(Side::Te), Err(DChannelError::CardGone));
    assert_eq!(span.send_frame(&SABME), Err(DChannelError::L1Down));
    m.plug(1, true);
    span.request_l1(true).unwrap();
    let mut seen = vec![];
    for _ in 0..5 {
        m.step();
        seen.extend(span.poll_l1_event().map(|s| s.state));
    }
    assert_eq!(seen, [L1State::Activating, L1State::Activated]);
    span.send_frame(&UA).unwrap();
    m.far_send(1, &SABME, true);
    m.far_send(1, &SABME, false);
    let mut got = vec![];
    for _ in 0..5 {
        m.step();
        got.extend(span.poll_frame());
    }
    assert_eq!(got, [SABME.to_vec()]);
    assert_eq!(m.far_received(1), [UA.to_vec()]);
    let st = span.stats();
    assert_eq!((st.frames_in, st.frames_out, st.bad_fcs, st.l1_changes), (1, 1, 1, 2));
}

/// The model's bus that turns into noise on demand: every read returns
/// pseudo-random bytes.
struct NoisySpi {
    inner: ModelSpi,
    noise: Rc<RefCell<Option<u32>>>,
}

impl ErrorType for NoisySpi {
    type Error = ModelError;
}

impl SpiDevice<u8> for NoisySpi {
    fn transaction(&mut self, ops: &mut [Operation<'_, u8>]) -> Result<(), ModelError> {
        let mut n = self.noise.borrow_mut();
        let Some(seed) = n.as_mut() else { return self.inner.transaction(ops) };
        for op in ops.iter_mut() {
            if let Operation::Read(b) = op {
                for x in b.iter_mut() {
                    *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    *x = (*seed >> 16) as u8;
                }
            }
        }
        Ok(())
    }
}

#[test]
fn garbage_from_the_bus_never_panics_and_every_service_is_bounded() {
    let (spi, rst, irq, m) = new_model(regs::CHIP_ID_4SU);
    let noise = Rc::new(RefCell::new(None));
    let mut c = Config::one(Side::Te);
    c.ports[3] = Some(PortConfig { side: Side::Nt, b_slots: [7, 8] });
    let mut dut = Xhfc::new(NoisySpi { inner: spi, noise: noise.clone() }, rst, irq, c);
    dut.init(&mut NoopDelay::new()).unwrap();
    m.plug(0, true);
    m.far_wants_active(0, true);
    for _ in 0..10 {
        m.step();
        dut.service().unwrap();
    }
    *noise.borrow_mut() = Some(0xBEEF);
    // The IRQ pin says "go" all along.
    m.state_mut().su_irq = 1;
    m.state_mut().su_irqmsk = 0xFF;
    for i in 0..300 {
        let _ = dut.send_frame(i % 4, &i_frame(4 + i % 200, i as u8));
        let _ = dut.service();
        for p in 0..MAX_PORTS {
            while dut.poll_frame(p).is_some() {}
            while dut.poll_event(p).is_some() {}
            let _ = dut.request_l1(p, i % 2 == 0);
        }
    }
    for p in [0, 3] {
        let s = dut.stats(p);
        assert!(s.frames_in + s.bad_fcs + s.malformed + s.rx_overflow > 0, "port {p}: {s:?}");
    }
}
