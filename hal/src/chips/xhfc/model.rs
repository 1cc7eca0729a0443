//! A register-level model of an XHFC (as many S/T interfaces as its chip id
//! says), for tests: the SPI framing of `regs.rs`, `R_FIFO` / `R_SU_SEL` /
//! `R_SLOT` selection, FIFOs with Z1/Z2 byte and F1/F2 frame counters (64
//! bytes, Z wrapping at 64, F at 16), the HDLC receive status byte, FIFO
//! overflow, BUSY after FIFO changes, the S/T state machines (TE F3..F8, NT
//! G1..G4) against a far end the test controls, and the IRQ pin.
//!
//! Time is [`ModelHandle::step`]: each step the line moves one S/T state
//! towards its goal, the far end's bytes enter the RX FIFOs
//! (`wire_bytes_per_step`) and transmitted bytes leave the TX FIFOs.
//!
//! What it does not model: B-channel data, TX underrun aborts, the PCM
//! clocks, the GCI bus, the Up mode.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec::Vec;

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin, OutputPin};
use embedded_hal::spi::{self, ErrorKind, ErrorType, Operation, SpiDevice};

use super::regs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    BusDown,
    Framing,
}

impl spi::Error for ModelError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

const SIZE: usize = regs::FIFO_SIZE as usize;

/// One FIFO: a ring of 64 bytes; Z1 is the writer's position, Z2 the
/// reader's; F1 counts frames ended by the writer, F2 frames taken.
#[derive(Debug, Clone)]
pub struct Fifo {
    pub data: [u8; SIZE],
    pub z1: u8,
    pub z2: u8,
    pub f1: u8,
    pub f2: u8,
    /// Z1 at the end of each whole frame not yet taken (oldest first).
    pub ends: VecDeque<u8>,
    pub err: bool,
    pub con_hdlc: u8,
    pub subch: u8,
    pub ctrl: u8,
}

impl Fifo {
    fn new() -> Fifo {
        Fifo { data: [0; SIZE], z1: 0, z2: 0, f1: 0, f2: 0, ends: VecDeque::new(), err: false, con_hdlc: 0, subch: 0, ctrl: 0 }
    }

    fn reset(&mut self) {
        self.z1 = 0;
        self.z2 = 0;
        self.f1 = 0;
        self.f2 = 0;
        self.ends.clear();
        self.err = false;
    }

    fn used(&self) -> usize {
        usize::from(self.z1.wrapping_sub(self.z2)) % SIZE
    }

    /// The writer appends a byte; false when full (one slot stays empty).
    fn put(&mut self, b: u8) -> bool {
        if self.used() == SIZE - 1 {
            return false;
        }
        self.data[usize::from(self.z1) % SIZE] = b;
        self.z1 = (self.z1 + 1) % SIZE as u8;
        true
    }

    fn take(&mut self) -> Option<u8> {
        if self.used() == 0 {
            return None;
        }
        let b = self.data[usize::from(self.z2) % SIZE];
        self.z2 = (self.z2 + 1) % SIZE as u8;
        Some(b)
    }

    fn end_frame(&mut self) {
        self.ends.push_back(self.z1);
        self.f1 = (self.f1 + 1) % 16;
    }

    /// A_Z1 as the host reads it: in an RX FIFO holding a whole frame, the
    /// position of that frame's last byte; else the writer's position.
    fn z1_reg(&self, rx: bool) -> u8 {
        match self.ends.front() {
            Some(&end) if rx => end.wrapping_sub(1) % SIZE as u8,
            _ => self.z1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Byte(u8),
    End(u8),
}

/// What the test sees of the far end of one S/T interface.
#[derive(Debug, Clone, Default)]
pub struct FarEnd {
    /// Cable in and far end powered.
    pub connected: bool,
    /// The far end asks for activation (it sends INFO1 / INFO2).
    pub wants_active: bool,
    /// Whole frames the chip sent on the D channel.
    pub received: Vec<Vec<u8>>,
    /// Bytes (frame, FCS) on their way into the RX FIFO; `End` writes the
    /// status byte and ends the frame at once.
    wire: VecDeque<Wire>,
    /// The RX FIFO overflowed during this frame: the rest is lost.
    dropping: bool,
    /// Bytes of the frame the chip is sending.
    tx_partial: Vec<u8>,
}

#[derive(Debug)]
pub struct SuPort {
    pub ctrl0: u8,
    pub ctrl1: u8,
    pub ctrl2: u8,
    pub clk_dly: u8,
    pub state: u8,
    /// The host asked for activation (true) / deactivation (false).
    pub act_request: Option<bool>,
    pub far: FarEnd,
}

impl SuPort {
    fn nt(&self) -> bool {
        self.ctrl0 & regs::M_SU_MD != 0
    }

    fn active(&self) -> bool {
        if self.nt() {
            self.state == 3
        } else {
            self.state == 7
        }
    }
}

#[derive(Debug)]
pub struct ModelState {
    pub chip_id: u8,
    /// R_STATUS reads that still show BUSY after a FIFO change; `u32::MAX`: forever.
    pub busy_reads: u32,
    busy_left: u32,
    pub bus_down: bool,
    pub in_reset: bool,
    /// SPI transactions that were not a register access.
    pub framing_errors: u32,
    pub writes: u32,
    pub reads: u32,
    /// Every register write: (address, value).
    pub write_log: Vec<(u8, u8)>,
    /// FIFOs `[number][direction]`.
    pub fifos: Vec<[Fifo; 2]>,
    pub su: Vec<SuPort>,
    pub fifo_sel: (usize, usize),
    pub su_sel: usize,
    pub slot_sel: u8,
    /// A_SL_CFG of each (slot, direction).
    pub slots: [[u8; 2]; 128],
    pub su_irq: u8,
    pub su_irqmsk: u8,
    pub fifo_irq: [u8; 4],
    pub irq_ctrl: u8,
    pub pcm_md0: u8,
    pub pcm_md1: u8,
    pub fifo_md: u8,
    /// The TX FIFOs are not emptied (no S/T clock).
    pub tx_stuck: bool,
    pub wire_bytes_per_step: usize,
}

impl ModelState {
    fn new(chip_id: u8) -> ModelState {
        let ports = super::ChipKind::from_id(chip_id).map_or(4, |k| k.ports());
        ModelState {
            chip_id,
            busy_reads: 1,
            busy_left: 0,
            bus_down: false,
            in_reset: false,
            framing_errors: 0,
            writes: 0,
            reads: 0,
            write_log: Vec::new(),
            fifos: (0..16).map(|_| [Fifo::new(), Fifo::new()]).collect(),
            su: (0..ports)
                .map(|_| SuPort { ctrl0: 0, ctrl1: 0, ctrl2: 0, clk_dly: 0, state: 0, act_request: None, far: FarEnd::default() })
                .collect(),
            fifo_sel: (0, 0),
            su_sel: 0,
            slot_sel: 0,
            slots: [[0; 2]; 128],
            su_irq: 0,
            su_irqmsk: 0,
            fifo_irq: [0; 4],
            irq_ctrl: 0,
            pcm_md0: 0,
            pcm_md1: 0,
            fifo_md: 0,
            tx_stuck: false,
            wire_bytes_per_step: 16,
        }
    }

    /// Chip reset (pin or R_CIRM SRES): registers and FIFOs to their defaults;
    /// the far ends stay.
    fn reset(&mut self) {
        for f in self.fifos.iter_mut().flatten() {
            *f = Fifo::new();
        }
        for s in &mut self.su {
            s.ctrl0 = 0;
            s.ctrl1 = 0;
            s.ctrl2 = 0;
            s.state = 0;
            s.act_request = None;
            s.far.wire.clear();
            s.far.dropping = false;
            s.far.tx_partial.clear();
        }
        self.su_irq = 0;
        self.su_irqmsk = 0;
        self.fifo_irq = [0; 4];
        self.irq_ctrl = 0;
        self.slots = [[0; 2]; 128];
        self.busy_left = self.busy_reads;
    }

    fn fifo(&mut self) -> &mut Fifo {
        let (n, d) = self.fifo_sel;
        &mut self.fifos[n][d]
    }

    fn write(&mut self, reg: u8, v: u8) {
        self.writes += 1;
        self.write_log.push((reg, v));
        match reg {
            regs::R_CIRM if v & regs::M_SRES != 0 => self.reset(),
            regs::R_CIRM => {}
            regs::R_FIFO_MD => self.fifo_md = v,
            regs::R_FIFO => {
                self.fifo_sel = (usize::from((v >> 1) & 0x0F), usize::from(v & 1));
                self.busy_left = self.busy_reads;
            }
            regs::A_INC_RES_FIFO => {
                let rx = self.fifo_sel.1 == 1;
                let f = self.fifo();
                if v & regs::M_RES_FIFO != 0 {
                    f.reset();
                }
                if v & regs::M_RES_FIFO_ERR != 0 {
                    f.err = false;
                }
                if v & regs::M_INC_F != 0 {
                    if rx {
                        // The host is done with the oldest frame: skip to its end.
                        if let Some(end) = f.ends.pop_front() {
                            f.z2 = end;
                            f.f2 = (f.f2 + 1) % 16;
                        }
                    } else {
                        f.end_frame();
                    }
                }
                self.busy_left = self.busy_reads;
            }
            regs::A_FIFO_DATA if self.fifo_sel.1 == 0 => {
                let f = self.fifo();
                if !f.put(v) {
                    f.err = true;
                }
            }
            regs::A_CON_HDLC => self.fifo().con_hdlc = v,
            regs::A_SUBCH_CFG => self.fifo().subch = v,
            regs::A_FIFO_CTRL => self.fifo().ctrl = v,
            regs::R_SU_SEL => self.su_sel = usize::from(v & 0x03),
            regs::A_SU_WR_STA => {
                let Some(s) = self.su.get_mut(self.su_sel) else { return };
                if v & regs::M_SU_LD_STA != 0 {
                    s.state = v & regs::M_SU_STA;
                } else if v & 0x60 == regs::V_SU_ACT_ACTIVATE {
                    s.act_request = Some(true);
                } else if v & 0x60 == regs::V_SU_ACT_DEACTIVATE {
                    s.act_request = Some(false);
                } else if s.state == 0 {
                    // Released from reset: the deactivated state.
                    s.state = if s.nt() { 1 } else { 3 };
                }
            }
            regs::A_SU_CTRL0 => {
                if let Some(s) = self.su.get_mut(self.su_sel) {
                    s.ctrl0 = v;
                }
            }
            regs::A_SU_CTRL1 => {
                if let Some(s) = self.su.get_mut(self.su_sel) {
                    s.ctrl1 = v;
                }
            }
            regs::A_SU_CTRL2 => {
                if let Some(s) = self.su.get_mut(self.su_sel) {
                    s.ctrl2 = v;
                }
            }
            regs::A_SU_CLK_DLY => {
                if let Some(s) = self.su.get_mut(self.su_sel) {
                    s.clk_dly = v;
                }
            }
            regs::R_SU_IRQMSK => self.su_irqmsk = v,
            regs::R_IRQ_CTRL => self.irq_ctrl = v,
            regs::R_PCM_MD0 => self.pcm_md0 = v,
            regs::R_PCM_MD1 if self.pcm_md0 & 0xF0 == regs::IDX_PCM_MD1 => self.pcm_md1 = v,
            regs::R_SLOT => self.slot_sel = v,
            regs::A_SL_CFG => {
                let (n, d) = (usize::from(self.slot_sel >> 1), usize::from(self.slot_sel & 1));
                self.slots[n][d] = v;
            }
            _ => {}
        }
    }

    fn read(&mut self, reg: u8) -> u8 {
        self.reads += 1;
        let rx = self.fifo_sel.1 == 1;
        match reg {
            regs::R_STATUS => {
                let mut v = 0;
                if self.busy_left > 0 {
                    if self.busy_reads != u32::MAX {
                        self.busy_left -= 1;
                    }
                    v |= regs::M_BUSY;
                }
                if self.fifo_irq.iter().any(|&b| b != 0) {
                    v |= regs::M_FR_IRQSTA;
                }
                v
            }
            regs::R_CHIP_ID => self.chip_id,
            regs::R_CHIP_RV => 0,
            regs::A_Z1 => self.fifo().z1_reg(rx),
            regs::A_Z2 => self.fifo().z2,
            regs::A_F1 => self.fifo().f1,
            regs::A_F2 => self.fifo().f2,
            regs::A_FIFO_STA => u8::from(self.fifo().err),
            regs::A_FIFO_DATA if rx => self.fifo().take().unwrap_or(0),
            regs::A_SU_RD_STA => self.su.get(self.su_sel).map_or(0, |s| s.state),
            regs::R_SU_IRQ => core::mem::take(&mut self.su_irq),
            r if (regs::R_FIFO_BL0_IRQ..regs::R_FIFO_BL0_IRQ + 4).contains(&r) => {
                core::mem::take(&mut self.fifo_irq[usize::from(r - regs::R_FIFO_BL0_IRQ)])
            }
            _ => 0,
        }
    }

    /// The IRQ pin is low (asserted).
    pub fn irq_asserted(&self) -> bool {
        if self.irq_ctrl & regs::M_GLOB_IRQ_EN == 0 {
            return false;
        }
        let fifo = self.irq_ctrl & regs::M_FIFO_IRQ_EN != 0 && self.fifo_irq.iter().any(|&b| b != 0);
        fifo || self.su_irq & self.su_irqmsk != 0
    }

    fn set_state(&mut self, p: usize, st: u8) {
        if self.su[p].state != st {
            self.su[p].state = st;
            self.su_irq |= 1 << p;
        }
    }

    /// One S/T state step of port `p` (I.430 activation, condensed; no T1/T3
    /// timers: those are the host's business).
    fn step_su(&mut self, p: usize) {
        let s = &self.su[p];
        let (st, req, conn, wants) = (s.state, s.act_request, s.far.connected, s.far.wants_active);
        if st == 0 {
            return; // held in reset
        }
        let next = if s.nt() {
            let auto_g3 = s.ctrl1 & regs::M_G2_G3_EN != 0;
            match st {
                1 if conn && (req == Some(true) || wants) => 2,
                2 | 3 if req == Some(false) => 4,
                2 if conn && auto_g3 => 3,
                3 if !conn => 2,
                4 => 1,
                s => s,
            }
        } else {
            match st {
                3 if conn && req == Some(true) => 4,
                3 if conn && wants => 5,
                4 | 5 if !conn => 3,
                4 | 5 if wants => 6,
                6 | 7 if !conn => 8,
                6 if wants => 7,
                7 if !wants => 3,
                8 => 3,
                s => s,
            }
        };
        let s = &mut self.su[p];
        let done = if s.nt() { matches!(next, 1 | 3) && next != st } else { next == 7 || req == Some(false) };
        if done {
            s.act_request = None;
        }
        self.set_state(p, next);
    }

    /// One step of time for every port.
    pub fn step(&mut self) {
        for p in 0..self.su.len() {
            self.step_su(p);
            let up = self.su[p].active();
            let d = usize::from(regs::channel(p as u8, 2));
            // Receive: bytes from the far end into the RX FIFO.
            for _ in 0..self.wire_bytes_per_step {
                let Some(item) = self.su[p].far.wire.pop_front() else { break };
                let f = &mut self.fifos[d][1];
                let far = &mut self.su[p].far;
                match item {
                    Wire::Byte(b) => {
                        if !far.dropping && !f.put(b) {
                            f.err = true; // overflow: the rest of this frame is lost
                            far.dropping = true;
                        }
                    }
                    Wire::End(status) => {
                        if core::mem::replace(&mut far.dropping, false) || !f.put(status) {
                            f.err = true;
                            continue;
                        }
                        f.end_frame();
                        if f.ctrl & regs::M_FIFO_IRQMSK != 0 {
                            self.fifo_irq[p] |= regs::M_D_RX_IRQ;
                        }
                    }
                }
            }
            // Transmit: the chip sends what the host put in the TX FIFO.
            if !up || self.tx_stuck {
                continue;
            }
            for _ in 0..self.wire_bytes_per_step {
                let f = &mut self.fifos[d][0];
                if let Some(&end) = f.ends.front() {
                    if f.z2 == end {
                        f.ends.pop_front();
                        f.f2 = (f.f2 + 1) % 16;
                        let frame = core::mem::take(&mut self.su[p].far.tx_partial);
                        self.su[p].far.received.push(frame);
                        if f.ctrl & regs::M_FIFO_IRQMSK != 0 {
                            self.fifo_irq[p] |= regs::M_D_TX_IRQ;
                        }
                        continue;
                    }
                }
                let Some(b) = f.take() else { break };
                self.su[p].far.tx_partial.push(b);
            }
        }
    }
}

/// FCS-16 of HDLC (ISO 13239: reflected 0x8408, init and final xor 0xFFFF).
pub fn fcs16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x8408 } else { crc >> 1 };
        }
    }
    !crc
}

/// The test's handle on the model.
#[derive(Clone)]
pub struct ModelHandle(Rc<RefCell<ModelState>>);

impl ModelHandle {
    pub fn state(&self) -> std::cell::Ref<'_, ModelState> {
        self.0.borrow()
    }
    pub fn state_mut(&self) -> std::cell::RefMut<'_, ModelState> {
        self.0.borrow_mut()
    }
    pub fn step(&self) {
        self.0.borrow_mut().step();
    }
    /// Plugs (true) or pulls the cable of port `p`.
    pub fn plug(&self, p: usize, on: bool) {
        self.0.borrow_mut().su[p].far.connected = on;
    }
    /// The far end wants layer 1 up (true) or down.
    pub fn far_wants_active(&self, p: usize, on: bool) {
        self.0.borrow_mut().su[p].far.wants_active = on;
    }
    /// The far end sends `frame` (FCS good or not) on `p`'s D channel.
    pub fn far_send(&self, p: usize, frame: &[u8], fcs_good: bool) {
        let mut s = self.0.borrow_mut();
        let fcs = fcs16(frame);
        let wire = &mut s.su[p].far.wire;
        wire.extend(frame.iter().map(|&b| Wire::Byte(b)));
        wire.extend([Wire::Byte(fcs as u8), Wire::Byte((fcs >> 8) as u8), Wire::End(if fcs_good { 0x00 } else { 0xFF })]);
    }
    /// Frames the far end received on `p`, taken.
    pub fn far_received(&self, p: usize) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.0.borrow_mut().su[p].far.received)
    }
    pub fn su_state(&self, p: usize) -> u8 {
        self.0.borrow().su[p].state
    }
}

pub struct ModelSpi(Rc<RefCell<ModelState>>);
pub struct ModelReset(Rc<RefCell<ModelState>>);
pub struct ModelIrq(Rc<RefCell<ModelState>>);

/// A fresh model of the chip with id `chip_id`: bus, RESET pin, IRQ pin and the test's handle.
pub fn new_model(chip_id: u8) -> (ModelSpi, ModelReset, ModelIrq, ModelHandle) {
    let s = Rc::new(RefCell::new(ModelState::new(chip_id)));
    (ModelSpi(s.clone()), ModelReset(s.clone()), ModelIrq(s.clone()), ModelHandle(s))
}

impl ErrorType for ModelSpi {
    type Error = ModelError;
}

impl SpiDevice<u8> for ModelSpi {
    /// Accepts exactly the two register accesses of `regs.rs`: one write of
    /// `[ADDR, reg, WR, value]`, or a write of `[ADDR, reg, RD]` and a one-byte read.
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), ModelError> {
        let mut s = self.0.borrow_mut();
        if s.bus_down {
            return Err(ModelError::BusDown);
        }
        match operations {
            [Operation::Write(w)] if w.len() == 4 && w[0] == regs::SPI_ADDR && w[2] == regs::SPI_WR => {
                if !s.in_reset {
                    s.write(w[1], w[3]);
                }
                Ok(())
            }
            [Operation::Write(w), Operation::Read(r)]
                if w.len() == 3 && r.len() == 1 && w[0] == regs::SPI_ADDR && w[2] == regs::SPI_RD =>
            {
                r[0] = if s.in_reset { 0xFF } else { s.read(w[1]) };
                Ok(())
            }
            _ => {
                s.framing_errors += 1;
                Err(ModelError::Framing)
            }
        }
    }
}

impl PinErrorType for ModelReset {
    type Error = core::convert::Infallible;
}

impl OutputPin for ModelReset {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        let mut s = self.0.borrow_mut();
        s.in_reset = true;
        s.reset();
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().in_reset = false;
        Ok(())
    }
}

impl PinErrorType for ModelIrq {
    type Error = core::convert::Infallible;
}

impl InputPin for ModelIrq {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.0.borrow().irq_asserted())
    }
    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(self.0.borrow().irq_asserted())
    }
}
