//! A register-level model of the Si3215 for tests: an `SpiDevice`, a RESET
//! `OutputPin` and an INT `InputPin` over one shared chip state, plus a phone
//! (`set_off_hook`, `set_ground`) and a clock (`advance_ms`) for the line side.
//!
//! It emulates what the driver relies on, as the data sheet describes it:
//! reset values of the identity registers, the two-byte framing with chip
//! select released after every byte (a multi-byte transaction is recorded as
//! a violation), indirect registers behind 28-31 with a busy status, the DC-DC
//! converter bringing VBAT up, calibration clearing reg 96 after a while and
//! filling the result registers, the linefeed register with its actual-state
//! field, loop closure and ring trip setting reg 68 and the write-1-to-clear
//! interrupt status, the INT line, and the ring timers (RAT/RIT) of a cadence.
//!
//! Assumption of the model (the data sheet does not spell it out): an indirect
//! access is a write when IDA was written since the last IAA write, else a read.
//!
//! Faults for the bad-input tests: no chip, an Si3210 instead of an Si3215,
//! a stuck indirect-busy bit, a calibration that never ends, a dead battery, a
//! DC-DC calibration that never ends, a broken indirect register.

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin, OutputPin};
use embedded_hal::spi::{ErrorType, Operation, SpiDevice};

use super::regs::*;

/// Faults to inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Nothing on the bus: every read returns 0xFF.
    pub absent: bool,
    /// An Si3210: reg 1 bit 7 reads 0.
    pub si3210: bool,
    pub stuck_indirect_busy: bool,
    pub never_calibrates: bool,
    pub dead_battery: bool,
    /// The DC-DC calibration bit (reg 93 bit 7) never clears.
    pub dcdc_cal_stuck: bool,
    /// Indirect writes lose bit 0 (a broken indirect register file).
    pub indirect_bit0_stuck: bool,
}

/// Calibration results the model produces (regs 98..=107).
pub const MODEL_CAL: [u8; 10] = [0x10, 0x10, 0x11, 0x11, 0x08, 0x88, 0x00, 0x00, 0x20, 0x07];

#[derive(Debug)]
pub struct Chip {
    pub regs: [u8; 128],
    pub indirect: [u16; 128],
    pub faults: Faults,
    in_reset: bool,
    /// Address byte of an access in progress.
    pending_addr: Option<u8>,
    ida_written: bool,
    busy_reads: u32,
    cal_reads: u32,
    /// Calibrations started (reg 96 bit 6 writes).
    pub calibrations: u32,
    pub loop_closed: bool,
    pub ground: bool,
    /// Ring timer phase: ms into the current active/inactive period.
    ring_phase_ms: u32,
    ring_active: bool,
    /// Everything that broke the framing rules.
    pub violations: Vec<String>,
    /// SPI transactions seen (each one byte).
    pub transactions: u64,
}

impl Chip {
    fn new(faults: Faults) -> Self {
        let mut c = Chip {
            regs: [0; 128],
            indirect: [0; 128],
            faults,
            in_reset: false,
            pending_addr: None,
            ida_written: false,
            busy_reads: 0,
            cal_reads: 0,
            calibrations: 0,
            loop_closed: false,
            ground: false,
            ring_phase_ms: 0,
            ring_active: false,
            violations: Vec::new(),
            transactions: 0,
        };
        c.reset();
        c
    }

    fn reset(&mut self) {
        let keep_line = (self.loop_closed, self.ground);
        self.regs = [0; 128];
        self.indirect = [0; 128];
        // Part 00, revision E.
        self.regs[SPI_MODE as usize] = 0x05;
        self.regs[PCM_MODE as usize] = if self.faults.si3210 { 0x08 } else { 0x88 };
        self.regs[LOOPBACK as usize] = LOOPBACK_RESET;
        self.regs[HYBRID as usize] = HYBRID_RESET;
        self.regs[PWR_DOWN1 as usize] = PWR_DOWN1_DCDC_OFF;
        self.pending_addr = None;
        self.ida_written = false;
        self.busy_reads = 0;
        self.cal_reads = 0;
        self.ring_active = false;
        self.ring_phase_ms = 0;
        (self.loop_closed, self.ground) = keep_line;
    }

    /// Requested linefeed state.
    pub fn lf(&self) -> u8 {
        self.regs[LINEFEED as usize] & LF_MASK
    }

    /// Actual linefeed state (LFS field).
    pub fn lfs(&self) -> u8 {
        (self.regs[LINEFEED as usize] >> 4) & LF_MASK
    }

    fn set_lfs(&mut self, lfs: u8) {
        let lf = self.lf();
        self.regs[LINEFEED as usize] = lf | (lfs << 4);
    }

    fn dcdc_on(&self) -> bool {
        self.regs[PWR_DOWN1 as usize] & PWR_DOWN1_DCDC_OFF == 0
    }

    fn int_asserted(&self) -> bool {
        (self.regs[IRQ_STATUS1 as usize] & self.regs[IRQ_ENABLE1 as usize]) != 0
            || (self.regs[IRQ_STATUS2 as usize] & self.regs[IRQ_ENABLE2 as usize]) != 0
            || (self.regs[IRQ_STATUS3 as usize] & self.regs[IRQ_ENABLE3 as usize]) != 0
    }

    /// Loop current flows: a closed loop with the feed on, or a ground on the
    /// ring lead in tip-open.
    fn loop_current(&self) -> bool {
        match self.lfs() {
            LF_OPEN => false,
            LF_TIP_OPEN => self.ground,
            _ => self.loop_closed,
        }
    }

    fn raise(&mut self, bit: u8) {
        self.regs[IRQ_STATUS2 as usize] |= bit;
    }

    /// Line side changed: update LCR/RTP and raise the interrupts.
    fn line_changed(&mut self, before: bool) {
        if self.lfs() == LF_RINGING {
            if self.loop_closed {
                // Ring trip: the chip leaves ringing for forward active by itself.
                self.regs[LOOP_STATUS as usize] |= RTP;
                self.raise(IRQ2_RTIP);
                self.ring_active = false;
                self.regs[LINEFEED as usize] = LF_FWD_ACTIVE | (LF_FWD_ACTIVE << 4);
                self.regs[LOOP_STATUS as usize] |= LCR;
            }
            return;
        }
        let now = self.loop_current();
        if now {
            self.regs[LOOP_STATUS as usize] |= LCR;
        } else {
            self.regs[LOOP_STATUS as usize] &= !LCR;
        }
        self.regs[LOOP_STATUS as usize] &= !RTP;
        if now != before {
            self.raise(IRQ2_LCIP);
        }
    }

    fn ring_timers_on(&self) -> bool {
        self.regs[RING_OSC_CTL as usize] & (RING_RTAE | RING_RTIE) == (RING_RTAE | RING_RTIE)
    }

    fn write(&mut self, reg: u8, value: u8) {
        let r = reg as usize;
        if r >= 128 {
            self.violations.push(format!("write to reg {reg}"));
            return;
        }
        match reg {
            SPI_MODE => {}
            PCM_MODE => self.regs[r] = (self.regs[r] & PCM_MODE_SI3215) | (value & !PCM_MODE_SI3215),
            IRQ_STATUS1 | IRQ_STATUS2 | IRQ_STATUS3 => self.regs[r] &= !value,
            IDA_LO | IDA_HI => {
                self.regs[r] = value;
                self.ida_written = true;
            }
            IAA => {
                if self.busy_reads > 0 {
                    self.violations.push(format!("IAA write {value} while busy"));
                }
                let a = (value & 0x7F) as usize;
                if self.ida_written {
                    let v = u16::from_le_bytes([self.regs[IDA_LO as usize], self.regs[IDA_HI as usize]]);
                    self.indirect[a] = if self.faults.indirect_bit0_stuck { v & !1 } else { v };
                } else {
                    let [lo, hi] = self.indirect[a].to_le_bytes();
                    self.regs[IDA_LO as usize] = lo;
                    self.regs[IDA_HI as usize] = hi;
                }
                self.ida_written = false;
                self.regs[r] = value;
                self.busy_reads = 2;
            }
            IAS => {}
            LINEFEED => {
                let before = self.loop_current();
                let lf = value & LF_MASK;
                self.regs[r] = lf | (lf << 4);
                if lf == LF_RINGING {
                    self.ring_active = true;
                    self.ring_phase_ms = 0;
                }
                self.line_changed(before);
            }
            LOOP_STATUS => {}
            CAL1 => {
                self.regs[r] = value;
                if value & 0x40 != 0 {
                    self.calibrations += 1;
                    self.cal_reads = 3;
                }
            }
            DCDC => {
                self.regs[r] = value;
                if value & DCDC_CAL != 0 {
                    self.regs[CAL_LAST_RESULT as usize] = MODEL_CAL[9];
                }
            }
            _ => self.regs[r] = value,
        }
    }

    fn read(&mut self, reg: u8) -> u8 {
        if self.faults.absent {
            return 0xFF;
        }
        let r = reg as usize;
        if r >= 128 {
            self.violations.push(format!("read of reg {reg}"));
            return 0;
        }
        match reg {
            IAS => {
                if self.faults.stuck_indirect_busy {
                    return 1;
                }
                if self.busy_reads > 0 {
                    self.busy_reads -= 1;
                    1
                } else {
                    0
                }
            }
            VBAT_SENSE => {
                if self.dcdc_on() && !self.faults.dead_battery {
                    self.regs[r] = self.regs[r].saturating_add(0x40).min(0xC8);
                } else if !self.dcdc_on() {
                    self.regs[r] = self.regs[r].saturating_sub(0x40);
                }
                self.regs[r]
            }
            CAL1 => {
                if self.cal_reads > 0 && !self.faults.never_calibrates {
                    self.cal_reads -= 1;
                    if self.cal_reads == 0 {
                        self.regs[r] = 0;
                        for (i, v) in MODEL_CAL.iter().enumerate().take(9) {
                            self.regs[CAL_FIRST_RESULT as usize + i] = *v;
                        }
                    }
                }
                self.regs[r]
            }
            DCDC => {
                let v = self.regs[r];
                if !self.faults.dcdc_cal_stuck {
                    self.regs[r] &= !DCDC_CAL;
                }
                v
            }
            _ => self.regs[r],
        }
    }

    fn byte(&mut self, op: &mut Operation<'_, u8>) {
        self.transactions += 1;
        if self.in_reset {
            self.violations.push("SPI access while RESET is low".into());
        }
        match (self.pending_addr.take(), op) {
            (None, Operation::Write(b)) => self.pending_addr = Some(b[0]),
            (Some(a), Operation::Write(b)) if a & READ == 0 => self.write(a, b[0]),
            (Some(a), Operation::Read(b)) if a & READ != 0 => b[0] = self.read(a & !READ),
            (p, _) => self.violations.push(format!("unexpected byte after address {p:?}")),
        }
    }

    /// Runs the ring timers for `ms`.
    fn advance(&mut self, ms: u32) {
        if self.lf() != LF_RINGING || !self.ring_timers_on() {
            return;
        }
        let rat = u32::from(u16::from_le_bytes([self.regs[RING_ON_LO as usize], self.regs[RING_ON_HI as usize]])) / 8;
        let rit = u32::from(u16::from_le_bytes([self.regs[RING_OFF_LO as usize], self.regs[RING_OFF_HI as usize]])) / 8;
        if rat == 0 || rit == 0 {
            return;
        }
        let mut left = ms;
        while left > 0 {
            let len = if self.ring_active { rat } else { rit };
            let step = left.min(len - self.ring_phase_ms);
            self.ring_phase_ms += step;
            left -= step;
            if self.ring_phase_ms == len {
                self.ring_phase_ms = 0;
                self.ring_active = !self.ring_active;
                // Inactive periods are on-hook transmission (data sheet 2.4.1).
                self.set_lfs(if self.ring_active { LF_RINGING } else { LF_FWD_OHT });
                if self.ring_active && self.loop_closed {
                    // Ringing into a closed loop trips at once.
                    self.line_changed(true);
                    return;
                }
            }
        }
    }
}

/// The model: hands out the bus and pins and plays the phone.
#[derive(Clone)]
pub struct Si3215Model {
    chip: Rc<RefCell<Chip>>,
}

impl Si3215Model {
    pub fn new() -> Self {
        Self::with_faults(Faults::default())
    }

    pub fn with_faults(faults: Faults) -> Self {
        Si3215Model { chip: Rc::new(RefCell::new(Chip::new(faults))) }
    }

    pub fn spi(&self) -> ModelSpi {
        ModelSpi(self.chip.clone())
    }

    pub fn reset_pin(&self) -> ModelReset {
        ModelReset(self.chip.clone())
    }

    pub fn int_pin(&self) -> ModelInt {
        ModelInt(self.chip.clone())
    }

    pub fn chip(&self) -> std::cell::Ref<'_, Chip> {
        self.chip.borrow()
    }

    pub fn chip_mut(&self) -> std::cell::RefMut<'_, Chip> {
        self.chip.borrow_mut()
    }

    /// The phone closes (true) or opens the loop.
    pub fn set_off_hook(&self, off: bool) {
        let mut c = self.chip.borrow_mut();
        let before = c.loop_current();
        c.loop_closed = off;
        c.line_changed(before);
    }

    /// A ground on the ring lead (ground key / ground start).
    pub fn set_ground(&self, on: bool) {
        let mut c = self.chip.borrow_mut();
        let before = c.loop_current();
        c.ground = on;
        c.line_changed(before);
    }

    /// Lets `ms` pass on the chip (ring timers).
    pub fn advance_ms(&self, ms: u32) {
        self.chip.borrow_mut().advance(ms);
    }

    /// Ringing voltage on the line right now.
    pub fn ring_voltage(&self) -> bool {
        self.chip.borrow().lfs() == LF_RINGING
    }

    pub fn lf(&self) -> u8 {
        self.chip.borrow().lf()
    }

    pub fn lfs(&self) -> u8 {
        self.chip.borrow().lfs()
    }

    pub fn reg(&self, r: u8) -> u8 {
        self.chip.borrow().regs[r as usize]
    }

    pub fn violations(&self) -> Vec<String> {
        self.chip.borrow().violations.clone()
    }
}

impl Default for Si3215Model {
    fn default() -> Self {
        Self::new()
    }
}

pub struct ModelSpi(Rc<RefCell<Chip>>);

impl ErrorType for ModelSpi {
    type Error = Infallible;
}

impl SpiDevice for ModelSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Infallible> {
        let mut c = self.0.borrow_mut();
        let one_byte = match operations {
            [Operation::Write(b)] => b.len() == 1,
            [Operation::Read(b)] => b.len() == 1,
            _ => false,
        };
        if !one_byte {
            c.violations.push(format!("transaction of {} operations / not one byte: CS must rise after every byte", operations.len()));
            c.pending_addr = None;
            return Ok(());
        }
        c.byte(&mut operations[0]);
        Ok(())
    }
}

pub struct ModelReset(Rc<RefCell<Chip>>);

impl PinErrorType for ModelReset {
    type Error = Infallible;
}

impl OutputPin for ModelReset {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().in_reset = true;
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        let mut c = self.0.borrow_mut();
        if c.in_reset {
            c.in_reset = false;
            c.reset();
        }
        Ok(())
    }
}

pub struct ModelInt(Rc<RefCell<Chip>>);

impl PinErrorType for ModelInt {
    type Error = Infallible;
}

impl InputPin for ModelInt {
    fn is_high(&mut self) -> Result<bool, Infallible> {
        Ok(!self.0.borrow().int_asserted())
    }

    fn is_low(&mut self) -> Result<bool, Infallible> {
        Ok(self.0.borrow().int_asserted())
    }
}
