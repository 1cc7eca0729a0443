//! Driver for the Cologne Chip XHFC-1SU/2SU/2S4U/4SU ISDN S/T controllers
//! (1, 2 or 4 BRI interfaces), on SPI.
//!
//! Layer: a chip driver under the D-channel HAL ([`crate::isdn::DChannel`]).
//! The core ([`Xhfc`]) uses only `core`, `heapless` and `embedded-hal` 1.0: no
//! allocation, no clock, every loop bounded. [`XhfcSpan`] adapts one S/T
//! interface of a shared chip to the `DChannel` trait (that adapter uses
//! `std`: the trait hands out `Vec`s).
//!
//! How to drive it:
//! 1. [`Xhfc::new`] with an [`SpiDevice`], the RESET pin (active low), the IRQ
//!    pin (active low) and a [`Config`] (per interface: TE, NT or unused, and
//!    the PCM slots of B1/B2; PCM master or slave and the bus rate).
//! 2. [`Xhfc::init`]: hardware reset, identity check (`R_CHIP_ID`), soft
//!    reset, PCM set-up, per interface the S/T mode, the D-channel HDLC FIFOs
//!    and the B-channel routing S/T <-> PCM slot, then the interrupt masks. A
//!    wrong chip id is an error before anything is written.
//! 3. [`Xhfc::service`] when the IRQ pin is low, and periodically (every 10 ms
//!    is fine) while frames are going out or half received: reads the S/T
//!    state changes (events), drains the RX FIFOs of whole frames and feeds
//!    the TX FIFOs.
//! 4. Per interface: [`Xhfc::send_frame`], [`Xhfc::poll_frame`],
//!    [`Xhfc::request_l1`], [`Xhfc::poll_event`], [`Xhfc::stats`].
//!
//! SPI framing (data sheet §2, SPI interface): a register access is one
//! chip-select transaction of four bytes: `SPI_ADDR`, the address, then
//! `SPI_WR` and the data, or `SPI_RD` and a byte clocked in.
//!
//! D channel (§3, HDLC FIFOs): the chip adds flags, bit stuffing and the FCS
//! on transmit; the driver writes the frame's bytes to the TX FIFO and
//! increments F1 (frame end). On receive the chip writes the frame, its two
//! FCS bytes and a status byte (0: FCS good; else bad FCS or abort) and
//! increments F1; the driver reads up to the frame end (Z1 when F1 != F2),
//! checks the status byte and increments F2. Frames longer than a FIFO pass
//! piecewise. Bad frames are counted and dropped; an RX FIFO overflow
//! (`A_FIFO_STA` FIFO_ERR) resets the FIFO and is counted; a TX FIFO that does
//! not drain for `tx_stall_polls` services is reset and its frame dropped.
//!
//! Layer 1 (§4, S/T state machine): TE states F0..F8, NT states G0..G4 are
//! read from `A_SU_RD_STA` on each state-change interrupt and reported as
//! [`Event::State`] ; the condensed [`L1State`] (F7/G3 activated, F4-F6/G2
//! activating) as [`Event::L1`] when it changes.
//!
//! Points to check on hardware (marked in `regs.rs`): the Z-counter
//! convention (Z1 is the frame's last byte when F1 != F2), the S/T clock
//! delay values, the data-flow code for S/T <-> PCM and the slot routing.

pub mod regs;

#[cfg(any(test, feature = "chip-models"))]
pub mod model;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_model;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::spi::{Operation, SpiDevice};
use heapless::{Deque, Vec as HVec};

use crate::isdn::{DChannelError, DChannelStats, L1State, Side, MAX_FRAME, MIN_FRAME};

/// Most S/T interfaces on one chip (XHFC-4SU).
pub const MAX_PORTS: usize = 4;
/// Received frames kept per interface until polled.
pub const RX_QUEUE: usize = 4;
/// Frames queued per interface for transmission.
pub const TX_QUEUE: usize = 4;
/// Events kept per interface.
pub const EVENT_QUEUE: usize = 16;
/// A received frame in the FIFO: the LAPD octets, 2 FCS octets, the status byte.
const RX_RAW_MAX: usize = MAX_FRAME + 3;
/// Whole frames read from one RX FIFO in one service.
const RX_FRAMES_PER_SERVICE: usize = 8;

/// Which chip answered `R_CHIP_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChipKind {
    Xhfc1Su,
    Xhfc2Su,
    Xhfc2S4U,
    Xhfc4Su,
}

impl ChipKind {
    pub fn from_id(id: u8) -> Option<ChipKind> {
        match id {
            regs::CHIP_ID_1SU => Some(ChipKind::Xhfc1Su),
            regs::CHIP_ID_2SU => Some(ChipKind::Xhfc2Su),
            regs::CHIP_ID_2S4U => Some(ChipKind::Xhfc2S4U),
            regs::CHIP_ID_4SU => Some(ChipKind::Xhfc4Su),
            _ => None,
        }
    }

    /// S/T interfaces of this chip.
    pub fn ports(self) -> usize {
        match self {
            ChipKind::Xhfc1Su => 1,
            ChipKind::Xhfc2Su => 2,
            ChipKind::Xhfc2S4U | ChipKind::Xhfc4Su => 4,
        }
    }
}

/// PCM highway bit rate (R_PCM_MD1 PCM_DR): 32, 64 or 128 slots per 125 us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmRate {
    Mbit2,
    Mbit4,
    Mbit8,
}

impl PcmRate {
    pub fn slots(self) -> u8 {
        match self {
            PcmRate::Mbit2 => 32,
            PcmRate::Mbit4 => 64,
            PcmRate::Mbit8 => 128,
        }
    }

    fn bits(self) -> u8 {
        match self {
            PcmRate::Mbit2 => 0x00,
            PcmRate::Mbit4 => 0x10,
            PcmRate::Mbit8 => 0x20,
        }
    }
}

/// One S/T interface's set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    pub side: Side,
    /// PCM slot of B1 and B2 (both directions).
    pub b_slots: [u8; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Interface n: `None` leaves it unconfigured.
    pub ports: [Option<PortConfig>; MAX_PORTS],
    /// The chip drives the PCM clocks and frame sync (else it follows them).
    pub pcm_master: bool,
    pub pcm_rate: PcmRate,
    /// `R_STATUS` reads waiting for BUSY to clear after a reset or FIFO change.
    pub busy_polls: u32,
    /// Services without room in a TX FIFO before it is reset and its frame dropped.
    pub tx_stall_polls: u32,
}

impl Config {
    /// Interface 0 as `side`, B1/B2 on slots 0/1; slave on a 2 Mbit/s bus.
    pub fn one(side: Side) -> Config {
        let mut ports = [None; MAX_PORTS];
        ports[0] = Some(PortConfig { side, b_slots: [0, 1] });
        Config { ports, pcm_master: false, pcm_rate: PcmRate::Mbit2, busy_polls: 100, tx_stall_polls: 50 }
    }
}

/// What went wrong talking to the chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    Spi(E),
    /// The RESET or IRQ pin failed.
    Pin,
    /// `R_CHIP_ID` is no XHFC: no chip, a dead bus, or another chip.
    WrongChipId(u8),
    /// The configuration uses more interfaces than the chip has.
    NoSuchPort { port: u8, chip_ports: u8 },
    /// A PCM slot out of range or used twice.
    InvalidConfig(&'static str),
    /// `R_STATUS` BUSY did not clear within `busy_polls` reads.
    BusyTimeout,
    /// `init` has not succeeded.
    NotInitialised,
}

/// Something an interface reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The S/T state machine moved: raw state number (F0..F8 on TE, G0..G4 on NT).
    State { side: Side, state: u8 },
    /// The condensed layer-1 state changed.
    L1(L1State),
}

/// Counters of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bad_fcs: u64,
    /// Too short, or longer than `MAX_FRAME` (dropped).
    pub malformed: u64,
    /// RX FIFO overflows (the chip lost data) and frames nobody polled in time.
    pub rx_overflow: u64,
    /// Frames dropped because the TX FIFO did not drain.
    pub tx_stalled: u64,
    pub tx_refused: u64,
    pub l1_changes: u64,
    pub events_lost: u64,
}

/// The condensed state of raw S/T state `s`.
pub fn condense(side: Side, s: u8) -> L1State {
    match (side, s) {
        (Side::Te, 7) | (Side::Nt, 3) => L1State::Activated,
        (Side::Te, 4..=6) | (Side::Nt, 2) => L1State::Activating,
        _ => L1State::Deactivated,
    }
}

type Frame = HVec<u8, MAX_FRAME>;

struct Port {
    side: Side,
    raw: u8,
    l1: L1State,
    events: Deque<Event, EVENT_QUEUE>,
    rx_buf: HVec<u8, RX_RAW_MAX>,
    /// The frame being received outgrew `rx_buf`: skip to its end.
    rx_discard: bool,
    rx: Deque<Frame, RX_QUEUE>,
    tx: Deque<Frame, TX_QUEUE>,
    /// Bytes of `tx.front()` already in the FIFO.
    tx_pos: usize,
    tx_idle: u32,
    stats: Stats,
}

impl Port {
    fn new(side: Side) -> Port {
        Port {
            side,
            raw: 0,
            l1: L1State::Deactivated,
            events: Deque::new(),
            rx_buf: HVec::new(),
            rx_discard: false,
            rx: Deque::new(),
            tx: Deque::new(),
            tx_pos: 0,
            tx_idle: 0,
            stats: Stats::default(),
        }
    }

    fn push_event(&mut self, e: Event) {
        if self.events.is_full() {
            self.events.pop_front();
            self.stats.events_lost += 1;
        }
        let _ = self.events.push_back(e);
    }
}

/// The XHFC driver: one chip, up to four S/T interfaces.
pub struct Xhfc<SPI, RST, IRQ> {
    spi: SPI,
    reset: RST,
    irq: IRQ,
    config: Config,
    kind: Option<ChipKind>,
    ports: [Option<Port>; MAX_PORTS],
    /// FIFO currently selected in `R_FIFO` (number << 1 | direction).
    selected: Option<u8>,
}

impl<SPI, RST, IRQ, E> Xhfc<SPI, RST, IRQ>
where
    SPI: SpiDevice<u8, Error = E>,
    RST: OutputPin,
    IRQ: InputPin,
{
    pub fn new(spi: SPI, reset: RST, irq: IRQ, config: Config) -> Self {
        Xhfc { spi, reset, irq, config, kind: None, ports: [None, None, None, None], selected: None }
    }

    pub fn release(self) -> (SPI, RST, IRQ) {
        (self.spi, self.reset, self.irq)
    }

    /// The chip found by `init`.
    pub fn kind(&self) -> Option<ChipKind> {
        self.kind
    }

    // ---- register access -------------------------------------------------

    pub fn write_reg(&mut self, reg: u8, value: u8) -> Result<(), Error<E>> {
        self.spi
            .transaction(&mut [Operation::Write(&[regs::SPI_ADDR, reg, regs::SPI_WR, value])])
            .map_err(Error::Spi)
    }

    pub fn read_reg(&mut self, reg: u8) -> Result<u8, Error<E>> {
        let mut b = [0u8];
        self.spi
            .transaction(&mut [Operation::Write(&[regs::SPI_ADDR, reg, regs::SPI_RD]), Operation::Read(&mut b)])
            .map_err(Error::Spi)?;
        Ok(b[0])
    }

    /// Reads `R_STATUS` until BUSY clears, at most `busy_polls` times.
    fn wait_ready(&mut self) -> Result<(), Error<E>> {
        for _ in 0..self.config.busy_polls.max(1) {
            if self.read_reg(regs::R_STATUS)? & regs::M_BUSY == 0 {
                return Ok(());
            }
        }
        Err(Error::BusyTimeout)
    }

    /// Selects FIFO `num` in direction `dir` (§3: wait for BUSY after R_FIFO).
    fn select_fifo(&mut self, num: u8, dir: u8) -> Result<(), Error<E>> {
        let v = (num << 1) | dir;
        if self.selected == Some(v) {
            return Ok(());
        }
        self.selected = None;
        self.write_reg(regs::R_FIFO, v)?;
        self.wait_ready()?;
        self.selected = Some(v);
        Ok(())
    }

    fn fifo_cmd(&mut self, bits: u8) -> Result<(), Error<E>> {
        self.write_reg(regs::A_INC_RES_FIFO, bits)?;
        self.wait_ready()
    }

    // ---- init --------------------------------------------------------------

    fn check_config(&self, chip_ports: usize) -> Result<(), Error<E>> {
        let slots = self.config.pcm_rate.slots();
        let mut used = [false; 128];
        for (i, p) in self.config.ports.iter().enumerate() {
            let Some(p) = p else { continue };
            if i >= chip_ports {
                return Err(Error::NoSuchPort { port: i as u8, chip_ports: chip_ports as u8 });
            }
            for &s in &p.b_slots {
                if s >= slots {
                    return Err(Error::InvalidConfig("B-channel slot beyond the PCM bus"));
                }
                if used[usize::from(s)] {
                    return Err(Error::InvalidConfig("PCM slot used twice"));
                }
                used[usize::from(s)] = true;
            }
        }
        Ok(())
    }

    /// Resets and identifies the chip, then sets it up (see the module docs).
    pub fn init(&mut self, delay: &mut impl DelayNs) -> Result<ChipKind, Error<E>> {
        self.kind = None;
        self.ports = [None, None, None, None];
        self.selected = None;
        self.reset.set_low().map_err(|_| Error::Pin)?;
        delay.delay_us(10);
        self.reset.set_high().map_err(|_| Error::Pin)?;
        delay.delay_ms(1);
        self.wait_ready()?;
        let id = self.read_reg(regs::R_CHIP_ID)?;
        let kind = ChipKind::from_id(id).ok_or(Error::WrongChipId(id))?;
        self.check_config(kind.ports())?;

        self.write_reg(regs::R_CIRM, regs::M_SRES)?;
        self.write_reg(regs::R_CIRM, 0)?;
        self.wait_ready()?;
        self.write_reg(regs::R_FIFO_MD, 0)?;
        // §5: master/slave, then the bus rate through the R_PCM_MD1 index.
        let md0 = if self.config.pcm_master { regs::M_PCM_MD_MASTER } else { 0 };
        self.write_reg(regs::R_PCM_MD0, md0 | regs::IDX_PCM_MD1)?;
        self.write_reg(regs::R_PCM_MD1, self.config.pcm_rate.bits())?;
        self.write_reg(regs::R_PCM_MD0, md0)?;

        let mut su_mask = 0u8;
        for i in 0..MAX_PORTS {
            let Some(pc) = self.config.ports[i] else { continue };
            self.setup_port(i as u8, pc)?;
            su_mask |= 1 << i;
        }
        self.write_reg(regs::R_SU_IRQMSK, su_mask)?;
        self.write_reg(regs::R_IRQ_CTRL, regs::M_GLOB_IRQ_EN | regs::M_FIFO_IRQ_EN)?;
        for i in 0..MAX_PORTS {
            let Some(pc) = self.config.ports[i] else { continue };
            let mut port = Port::new(pc.side);
            self.write_reg(regs::R_SU_SEL, i as u8)?;
            port.raw = self.read_reg(regs::A_SU_RD_STA)? & regs::M_SU_STA;
            port.l1 = condense(pc.side, port.raw);
            self.ports[i] = Some(port);
        }
        self.kind = Some(kind);
        Ok(kind)
    }

    fn setup_port(&mut self, p: u8, pc: PortConfig) -> Result<(), Error<E>> {
        let nt = pc.side == Side::Nt;
        // §4: mode, B-channels on, NT may go G2 -> G3 by itself; release the
        // state machine from its reset state.
        self.write_reg(regs::R_SU_SEL, p)?;
        let md = if nt { regs::M_SU_MD } else { 0 };
        self.write_reg(regs::A_SU_CTRL0, md | regs::M_B1_TX_EN | regs::M_B2_TX_EN)?;
        self.write_reg(regs::A_SU_CTRL1, if nt { regs::M_G2_G3_EN } else { 0 })?;
        self.write_reg(regs::A_SU_CTRL2, regs::M_B1_RX_EN | regs::M_B2_RX_EN)?;
        self.write_reg(regs::A_SU_CLK_DLY, if nt { regs::SU_CLK_DLY_NT } else { regs::SU_CLK_DLY_TE })?;
        self.write_reg(regs::A_SU_WR_STA, 0)?;
        // §3: the D channel in HDLC mode, interrupt at frame end, both ways.
        let d = regs::channel(p, 2);
        for dir in [regs::FIFO_TX, regs::FIFO_RX] {
            self.select_fifo(d, dir)?;
            self.write_reg(regs::A_CON_HDLC, regs::M_IFF | regs::V_FIFO_IRQ_FRAME | regs::V_DATA_FLOW_FIFO_ST)?;
            self.write_reg(regs::A_SUBCH_CFG, regs::SUBCH_D)?;
            self.write_reg(regs::A_FIFO_CTRL, regs::M_FIFO_IRQMSK)?;
            self.fifo_cmd(regs::M_RES_FIFO)?;
        }
        // §5: B1/B2 straight between the S/T interface and their PCM slots.
        for (b, &slot) in pc.b_slots.iter().enumerate() {
            let ch = regs::channel(p, b as u8);
            self.select_fifo(ch, regs::FIFO_TX)?;
            self.write_reg(regs::A_CON_HDLC, regs::M_HDLC_TRP | regs::V_DATA_FLOW_ST_PCM)?;
            self.write_reg(regs::R_SLOT, slot << 1)?;
            self.write_reg(regs::A_SL_CFG, (ch << 1) | regs::V_ROUT_TX_STIO1)?;
            self.write_reg(regs::R_SLOT, (slot << 1) | 1)?;
            self.write_reg(regs::A_SL_CFG, (ch << 1) | 1 | regs::V_ROUT_RX_STIO2)?;
        }
        Ok(())
    }

    // ---- per-interface API ---------------------------------------------------

    fn port(&self, p: usize) -> Option<&Port> {
        self.ports.get(p).and_then(|x| x.as_ref())
    }

    fn port_mut(&mut self, p: usize) -> Option<&mut Port> {
        self.ports.get_mut(p).and_then(|x| x.as_mut())
    }

    /// The configured side of interface `p`, if set up.
    pub fn side(&self, p: usize) -> Option<Side> {
        self.port(p).map(|x| x.side)
    }

    /// Condensed layer-1 state of `p` (Deactivated when not set up).
    pub fn l1_state(&self, p: usize) -> L1State {
        self.port(p).map_or(L1State::Deactivated, |x| x.l1)
    }

    /// Raw S/T state number of `p` (F or G state).
    pub fn raw_state(&self, p: usize) -> Option<u8> {
        self.port(p).map(|x| x.raw)
    }

    pub fn stats(&self, p: usize) -> Stats {
        self.port(p).map_or(Stats::default(), |x| x.stats)
    }

    pub fn poll_event(&mut self, p: usize) -> Option<Event> {
        self.port_mut(p)?.events.pop_front()
    }

    /// The next whole, FCS-checked frame received on `p`.
    pub fn poll_frame(&mut self, p: usize) -> Option<Frame> {
        let port = self.port_mut(p)?;
        let f = port.rx.pop_front()?;
        port.stats.frames_in += 1;
        Some(f)
    }

    /// Queues a whole LAPD frame (no FCS) on `p`; it goes out on the next services.
    pub fn send_frame(&mut self, p: usize, frame: &[u8]) -> Result<(), DChannelError> {
        if self.kind.is_none() {
            return Err(DChannelError::CardGone);
        }
        let port = self.port_mut(p).ok_or(DChannelError::CardGone)?;
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
            return Err(DChannelError::BadFrame);
        }
        if port.l1 != L1State::Activated {
            port.stats.tx_refused += 1;
            return Err(DChannelError::L1Down);
        }
        let f = Frame::from_slice(frame).map_err(|_| DChannelError::BadFrame)?;
        port.tx.push_back(f).map_err(|_| DChannelError::Busy)
    }

    /// Starts activation (`true`) or deactivation of `p`'s S/T state machine
    /// (§4, A_SU_WR_STA SU_ACT). The outcome comes as events.
    pub fn request_l1(&mut self, p: usize, activate: bool) -> Result<(), Error<E>> {
        if self.kind.is_none() {
            return Err(Error::NotInitialised);
        }
        if self.port(p).is_none() {
            return Err(Error::NoSuchPort { port: p as u8, chip_ports: self.kind.map_or(0, |k| k.ports() as u8) });
        }
        self.write_reg(regs::R_SU_SEL, p as u8)?;
        let act = if activate { regs::V_SU_ACT_ACTIVATE } else { regs::V_SU_ACT_DEACTIVATE };
        self.write_reg(regs::A_SU_WR_STA, act)
    }

    /// True when `service` has work even without an interrupt: a frame to
    /// send, or an activated interface whose RX FIFO may hold the start of a
    /// frame longer than the FIFO (the FIFO interrupt comes at frame end only).
    pub fn needs_service(&self) -> bool {
        self.ports.iter().flatten().any(|p| !p.tx.is_empty() || p.l1 == L1State::Activated || p.rx_discard)
    }

    /// Serves the chip: interrupts, RX FIFOs, TX FIFOs. Does nothing on the
    /// bus when the IRQ pin is high and no frame is half way.
    pub fn service(&mut self) -> Result<(), Error<E>> {
        if self.kind.is_none() {
            return Err(Error::NotInitialised);
        }
        let irq = self.irq.is_low().map_err(|_| Error::Pin)?;
        if !irq && !self.needs_service() {
            return Ok(());
        }
        let mut rx_flag = [false; MAX_PORTS];
        if irq {
            let su = self.read_reg(regs::R_SU_IRQ)?;
            for (p, flag) in rx_flag.iter_mut().enumerate() {
                if self.port(p).is_none() {
                    continue;
                }
                if su & (1 << p) != 0 {
                    self.read_state(p)?;
                }
                let fifo = self.read_reg(regs::R_FIFO_BL0_IRQ + p as u8)?;
                *flag = fifo & regs::M_D_RX_IRQ != 0;
            }
        }
        for (p, &flag) in rx_flag.iter().enumerate() {
            let Some(port) = self.port(p) else { continue };
            if flag || port.l1 == L1State::Activated || !port.rx_buf.is_empty() || port.rx_discard {
                self.drain_rx(p)?;
            }
            if self.port(p).is_some_and(|x| !x.tx.is_empty()) {
                self.fill_tx(p)?;
            }
        }
        Ok(())
    }

    fn read_state(&mut self, p: usize) -> Result<(), Error<E>> {
        self.write_reg(regs::R_SU_SEL, p as u8)?;
        let raw = self.read_reg(regs::A_SU_RD_STA)? & regs::M_SU_STA;
        let Some(port) = self.port_mut(p) else { return Ok(()) };
        if raw == port.raw {
            return Ok(());
        }
        port.raw = raw;
        port.push_event(Event::State { side: port.side, state: raw });
        let l1 = condense(port.side, raw);
        if l1 == port.l1 {
            return Ok(());
        }
        let was_up = port.l1 == L1State::Activated;
        port.l1 = l1;
        port.stats.l1_changes += 1;
        port.push_event(Event::L1(l1));
        if was_up {
            // Frames waiting to go out cannot: drop them (Q.921 retransmits),
            // with whatever is left in the TX FIFO.
            port.stats.tx_refused += port.tx.len() as u64;
            port.tx.clear();
            port.tx_pos = 0;
            port.tx_idle = 0;
            self.select_fifo(regs::channel(p as u8, 2), regs::FIFO_TX)?;
            self.fifo_cmd(regs::M_RES_FIFO)?;
        }
        Ok(())
    }

    /// Reads whole frames (and the start of a long one) from `p`'s D RX FIFO.
    fn drain_rx(&mut self, p: usize) -> Result<(), Error<E>> {
        self.select_fifo(regs::channel(p as u8, 2), regs::FIFO_RX)?;
        for _ in 0..RX_FRAMES_PER_SERVICE {
            if self.read_reg(regs::A_FIFO_STA)? & regs::M_FIFO_ERR != 0 {
                // Overflow: what is in the FIFO is incomplete; start afresh.
                self.fifo_cmd(regs::M_RES_FIFO | regs::M_RES_FIFO_ERR)?;
                if let Some(port) = self.port_mut(p) {
                    port.stats.rx_overflow += 1;
                    port.rx_buf.clear();
                    port.rx_discard = false;
                }
                return Ok(());
            }
            let f1 = self.read_reg(regs::A_F1)?;
            let f2 = self.read_reg(regs::A_F2)?;
            let z1 = self.read_reg(regs::A_Z1)?;
            let z2 = self.read_reg(regs::A_Z2)?;
            let complete = f1.wrapping_sub(f2) & regs::F_MASK != 0;
            let mut n = usize::from(z1.wrapping_sub(z2) & (regs::FIFO_SIZE - 1));
            if complete {
                n += 1;
            }
            for _ in 0..n {
                let b = self.read_reg(regs::A_FIFO_DATA)?;
                if let Some(port) = self.port_mut(p) {
                    if !port.rx_discard && port.rx_buf.push(b).is_err() {
                        port.rx_discard = true;
                    }
                }
            }
            if !complete {
                return Ok(());
            }
            self.fifo_cmd(regs::M_INC_F)?;
            if let Some(port) = self.port_mut(p) {
                finish_rx_frame(port);
            }
        }
        Ok(())
    }

    /// Writes as much of the queued frames as `p`'s D TX FIFO takes.
    fn fill_tx(&mut self, p: usize) -> Result<(), Error<E>> {
        self.select_fifo(regs::channel(p as u8, 2), regs::FIFO_TX)?;
        let mut progress = false;
        for _ in 0..TX_QUEUE {
            let Some(port) = self.port(p) else { return Ok(()) };
            let Some(front) = port.tx.front() else { break };
            let (pos, len) = (port.tx_pos, front.len());
            let f1 = self.read_reg(regs::A_F1)?;
            let f2 = self.read_reg(regs::A_F2)?;
            if f1.wrapping_sub(f2) & regs::F_MASK == regs::F_MASK {
                break; // no frame slot free
            }
            let z1 = self.read_reg(regs::A_Z1)?;
            let z2 = self.read_reg(regs::A_Z2)?;
            let free = usize::from(z2.wrapping_sub(z1).wrapping_sub(1) & (regs::FIFO_SIZE - 1));
            let n = free.min(len - pos);
            for i in pos..pos + n {
                let b = self.port(p).and_then(|x| x.tx.front()).map_or(0, |f| f[i]);
                self.write_reg(regs::A_FIFO_DATA, b)?;
            }
            progress |= n > 0;
            let Some(port) = self.port_mut(p) else { return Ok(()) };
            port.tx_pos += n;
            if port.tx_pos < len {
                break; // the FIFO is full: more on the next service
            }
            port.tx.pop_front();
            port.tx_pos = 0;
            port.stats.frames_out += 1;
            self.fifo_cmd(regs::M_INC_F)?;
        }
        let stall_limit = self.config.tx_stall_polls;
        let Some(port) = self.port_mut(p) else { return Ok(()) };
        if progress || port.tx.is_empty() {
            port.tx_idle = 0;
            return Ok(());
        }
        port.tx_idle += 1;
        if port.tx_idle > stall_limit {
            // The FIFO does not drain (no clock, line stuck): drop the frame.
            port.tx.pop_front();
            port.tx_pos = 0;
            port.tx_idle = 0;
            port.stats.tx_stalled += 1;
            self.fifo_cmd(regs::M_RES_FIFO)?;
        }
        Ok(())
    }
}

/// Judges the raw frame in `port.rx_buf` (LAPD octets, FCS, status byte).
fn finish_rx_frame(port: &mut Port) {
    let raw = core::mem::take(&mut port.rx_buf);
    let discard = core::mem::replace(&mut port.rx_discard, false);
    if discard {
        port.stats.malformed += 1;
        return;
    }
    let Some((&status, rest)) = raw.split_last() else {
        port.stats.malformed += 1;
        return;
    };
    if status != 0 {
        port.stats.bad_fcs += 1;
        return;
    }
    let Some(body) = rest.len().checked_sub(2).map(|l| &rest[..l]) else {
        port.stats.malformed += 1;
        return;
    };
    if !(MIN_FRAME..=MAX_FRAME).contains(&body.len()) {
        port.stats.malformed += 1;
        return;
    }
    let Ok(f) = Frame::from_slice(body) else {
        port.stats.malformed += 1;
        return;
    };
    if port.rx.is_full() {
        port.rx.pop_front();
        port.stats.rx_overflow += 1;
    }
    let _ = port.rx.push_back(f);
}

/// One S/T interface of a shared [`Xhfc`] as a [`crate::isdn::DChannel`].
///
/// Polling a frame or an event serves the chip first, so the span manager's
/// polling is enough; an IRQ handler may call [`Xhfc::service`] as well.
pub struct XhfcSpan<SPI, RST, IRQ> {
    chip: std::rc::Rc<core::cell::RefCell<Xhfc<SPI, RST, IRQ>>>,
    port: usize,
    l1_seen: crate::isdn::L1Status,
    card_gone: bool,
}

impl<SPI, RST, IRQ, E> XhfcSpan<SPI, RST, IRQ>
where
    SPI: SpiDevice<u8, Error = E>,
    RST: OutputPin,
    IRQ: InputPin,
{
    pub fn new(chip: std::rc::Rc<core::cell::RefCell<Xhfc<SPI, RST, IRQ>>>, port: usize) -> Self {
        let l1 = chip.borrow().l1_state(port);
        XhfcSpan {
            chip,
            port,
            l1_seen: crate::isdn::L1Status { state: l1, alarms: Default::default() },
            card_gone: false,
        }
    }

    fn serve(&mut self) {
        self.card_gone = self.chip.borrow_mut().service().is_err();
    }
}

impl<SPI, RST, IRQ, E> crate::isdn::DChannel for XhfcSpan<SPI, RST, IRQ>
where
    SPI: SpiDevice<u8, Error = E>,
    RST: OutputPin,
    IRQ: InputPin,
{
    fn kind(&self) -> crate::isdn::SpanKind {
        crate::isdn::SpanKind::Bri
    }

    fn poll_frame(&mut self) -> Option<std::vec::Vec<u8>> {
        self.serve();
        self.chip.borrow_mut().poll_frame(self.port).map(|f| f.to_vec())
    }

    fn send_frame(&mut self, frame: &[u8]) -> Result<(), DChannelError> {
        if self.card_gone {
            return Err(DChannelError::CardGone);
        }
        self.chip.borrow_mut().send_frame(self.port, frame)?;
        self.serve();
        Ok(())
    }

    fn poll_l1_event(&mut self) -> Option<crate::isdn::L1Status> {
        self.serve();
        let mut chip = self.chip.borrow_mut();
        // Raw state events are folded into the condensed status.
        while chip.poll_event(self.port).is_some() {}
        let now = crate::isdn::L1Status { state: chip.l1_state(self.port), alarms: Default::default() };
        if now == self.l1_seen {
            return None;
        }
        self.l1_seen = now;
        Some(now)
    }

    fn l1_status(&self) -> crate::isdn::L1Status {
        crate::isdn::L1Status { state: self.chip.borrow().l1_state(self.port), alarms: Default::default() }
    }

    fn request_l1(&mut self, activate: bool) -> Result<(), DChannelError> {
        self.chip.borrow_mut().request_l1(self.port, activate).map_err(|_| DChannelError::CardGone)
    }

    /// The side is fixed by the [`Config`] given to `init` (the S/T mode and
    /// the line termination are board wiring): asking for the other one fails.
    fn set_side(&mut self, side: Side) -> Result<(), DChannelError> {
        match self.chip.borrow().side(self.port) {
            Some(s) if s == side => Ok(()),
            _ => Err(DChannelError::CardGone),
        }
    }

    fn stats(&self) -> DChannelStats {
        let s = self.chip.borrow().stats(self.port);
        DChannelStats {
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            bad_fcs: s.bad_fcs,
            malformed: s.malformed,
            rx_overflow: s.rx_overflow,
            tx_refused: s.tx_refused + s.tx_stalled,
            l1_changes: s.l1_changes,
        }
    }
}
