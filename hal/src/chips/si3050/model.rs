//! A register-level model of an Si3050 + Si3019 on a simulated exchange line,
//! for tests: it implements [`SpiDevice`] (checking the one-byte-per-transaction
//! framing), the RESET pin and the AOUT/INT pin, and its status registers follow
//! the line the test drives:
//! - on hook 48 V, seized about 8 V and 25 mA (LVS register 29, LCS2 register 28);
//! - ringing sets RDT (register 5) and raises RDTI; the ring voltage swings the
//!   LVS sign, so a ring also raises POLI;
//! - a polarity reversal flips the LVS sign and raises POLI;
//! - an open-loop interval (battery removed) drops voltage and current to 0
//!   and, off hook, raises DODI (and POLI if the polarity was reversed).
//!
//! The line side links up a configurable number of FDT reads after PDL is
//! cleared, or never. Hook changes are logged with the model's time (set by the
//! test with [`ModelHandle::set_now`]) so dial pulses can be measured. The model
//! has no clock of its own. It uses `std` (shared state through `Rc<RefCell>`);
//! the driver does not.

use std::cell::RefCell;
use std::rc::Rc;

use embedded_hal::digital::{ErrorType as PinErrorType, InputPin, OutputPin};
use embedded_hal::spi::{self, ErrorKind, ErrorType, Operation, SpiDevice};

use super::regs;

/// Bus errors of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    /// More than one byte under one chip select, or a bad control byte.
    Framing,
    /// The test made the bus fail.
    BusDown,
}

impl spi::Error for ModelError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Control,
    Address { read: bool },
    Data { read: bool, addr: u8 },
}

/// The simulated exchange line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// The exchange feeds battery (false: open-loop interval / disconnect).
    pub battery: bool,
    pub reversed: bool,
    pub ringing: bool,
    pub on_hook_volts: i8,
    pub off_hook_volts: i8,
    pub loop_ma: u8,
}

/// Everything the model knows; tests read and poke it through [`ModelHandle`].
#[derive(Debug)]
pub struct ModelState {
    regs: [u8; regs::REG_COUNT],
    phase: Phase,
    /// Framing violations seen (multi-byte transactions, bad control bytes).
    pub framing_errors: u32,
    /// Register writes / reads completed.
    pub writes: u32,
    pub reads: u32,
    /// Every register write, in order: (register, value).
    pub write_log: Vec<(u8, u8)>,
    /// Value register 2 resets to (0x03 on a real Si3050).
    pub id_reg2: u8,
    pub lsid: u8,
    pub reva: u8,
    pub revb: u8,
    /// The line side answers at all.
    pub link_works: bool,
    /// FDT reads after PDL is cleared before the link is up.
    pub link_delay_polls: u32,
    fdt_polls: u32,
    powering: bool,
    link_up: bool,
    pub in_reset: bool,
    pub bus_down: bool,
    /// Raise DODI when the loop current drops off hook (false: a chip or
    /// board where the drop-out interrupt never comes; polling must catch it).
    pub raise_dod: bool,
    pub line: Line,
    now_ms: u64,
    /// (time, off hook) at every change of the OH bit.
    pub hook_log: Vec<(u64, bool)>,
}

impl ModelState {
    fn new() -> Self {
        let mut s = ModelState {
            regs: [0; regs::REG_COUNT],
            phase: Phase::Control,
            framing_errors: 0,
            writes: 0,
            reads: 0,
            write_log: Vec::new(),
            id_reg2: regs::CTRL2_RESET_VALUE,
            lsid: regs::LSID_SI3019,
            reva: 0x5,
            revb: 0x3,
            link_works: true,
            link_delay_polls: 3,
            fdt_polls: 0,
            powering: false,
            link_up: false,
            in_reset: false,
            bus_down: false,
            raise_dod: true,
            line: Line {
                battery: true,
                reversed: false,
                ringing: false,
                on_hook_volts: 48,
                off_hook_volts: 8,
                loop_ma: 25,
            },
            now_ms: 0,
            hook_log: Vec::new(),
        };
        s.reset_regs();
        s
    }

    fn reset_regs(&mut self) {
        self.regs = [0; regs::REG_COUNT];
        self.regs[regs::CTRL2 as usize] = self.id_reg2;
        self.regs[regs::DAA_CTRL2 as usize] = regs::DAA_CTRL2_PDL;
        self.regs[regs::RING_VAL3 as usize] = 0x19;
        self.regs[regs::DAA_CTRL4 as usize] = regs::DAA_CTRL4_FOH_128MS;
        self.powering = false;
        self.link_up = false;
        self.fdt_polls = 0;
        self.phase = Phase::Control;
    }

    fn off_hook(&self) -> bool {
        self.regs[regs::DAA_CTRL1 as usize] & regs::DAA_CTRL1_OH != 0
    }

    /// Current register 29 value.
    pub fn lvs(&self) -> i8 {
        if !self.link_up || !self.line.battery || self.lsid == regs::LSID_SI3018 {
            return 0;
        }
        let v = if self.off_hook() { self.line.off_hook_volts } else { self.line.on_hook_volts };
        if self.line.reversed {
            -v
        } else {
            v
        }
    }

    fn lcs2(&self) -> u8 {
        if self.link_up && self.off_hook() && self.line.battery {
            // ~1.1 mA per LSB, rounded.
            ((u16::from(self.line.loop_ma) * 10 + 5) / 11) as u8
        } else {
            0
        }
    }

    fn ring_detect(&self) -> bool {
        self.link_up && self.line.ringing && !self.off_hook()
    }

    fn raise(&mut self, bits: u8) {
        self.regs[regs::INT_SOURCE as usize] |= bits;
    }

    /// Runs `f` on the line and raises the interrupts its change causes.
    fn change_line(&mut self, f: impl FnOnce(&mut Line)) {
        let (lvs0, ring0, cur0) = (self.lvs(), self.ring_detect(), self.lcs2());
        f(&mut self.line);
        self.after_change(lvs0, ring0, cur0);
    }

    fn after_change(&mut self, lvs0: i8, ring0: bool, cur0: u8) {
        if !self.link_up {
            return;
        }
        let (lvs1, ring1, cur1) = (self.lvs(), self.ring_detect(), self.lcs2());
        if (lvs0 < 0) != (lvs1 < 0) {
            self.raise(regs::INT_POL);
        }
        if ring1 && !ring0 {
            // A validated ring, and the ring voltage's swings through zero.
            self.raise(regs::INT_RDT | regs::INT_POL);
        }
        if self.raise_dod && self.off_hook() && cur0 > 0 && cur1 == 0 {
            self.raise(regs::INT_DOD);
        }
    }

    /// AOUT/INT level: low while an unmasked source is set and INTE is on.
    pub fn int_asserted(&self) -> bool {
        self.regs[regs::CTRL2 as usize] & regs::CTRL2_INTE != 0
            && self.regs[regs::INT_SOURCE as usize] & self.regs[regs::INT_MASK as usize] != 0
    }

    /// Raw register value as stored (status registers are computed on read).
    pub fn reg(&self, r: u8) -> u8 {
        self.regs[usize::from(r) % regs::REG_COUNT]
    }

    fn read(&mut self, addr: u8) -> u8 {
        self.reads += 1;
        let a = usize::from(addr) % regs::REG_COUNT;
        match addr {
            regs::DAA_CTRL1 => {
                let mut v = self.regs[a] & !(regs::DAA_CTRL1_RDT | regs::DAA_CTRL1_RDTP | regs::DAA_CTRL1_RDTN);
                if self.ring_detect() {
                    v |= regs::DAA_CTRL1_RDT | regs::DAA_CTRL1_RDTP;
                }
                v
            }
            regs::REVISION => (if self.link_up { self.lsid << 4 } else { 0 }) | (self.reva & 0x0F),
            regs::LS_STATUS => {
                if self.powering && self.link_works && !self.link_up {
                    self.fdt_polls += 1;
                    if self.fdt_polls >= self.link_delay_polls {
                        self.link_up = true;
                    }
                }
                if self.link_up {
                    regs::LS_STATUS_FDT | ((u16::from(self.lcs2()) * 11 / 33) as u8 & 0x1F)
                } else {
                    0
                }
            }
            regs::LS_REVISION => (self.revb & 0x0F) << 2,
            regs::LOOP_CURRENT => self.lcs2(),
            regs::LINE_VOLTAGE => self.lvs() as u8,
            _ => self.regs[a],
        }
    }

    fn write(&mut self, addr: u8, value: u8) {
        self.writes += 1;
        self.write_log.push((addr, value));
        let a = usize::from(addr) % regs::REG_COUNT;
        match addr {
            regs::CTRL1 if value & regs::CTRL1_SR != 0 => self.reset_regs(),
            regs::INT_SOURCE => self.regs[a] &= value,
            regs::DAA_CTRL2 => {
                self.regs[a] = value;
                if value & regs::DAA_CTRL2_PDL == 0 {
                    if !self.powering {
                        self.powering = true;
                        self.fdt_polls = 0;
                    }
                } else {
                    self.powering = false;
                    self.link_up = false;
                }
            }
            regs::DAA_CTRL1 => {
                let (lvs0, ring0, cur0) = (self.lvs(), self.ring_detect(), self.lcs2());
                let was = self.off_hook();
                self.regs[a] = value & (regs::DAA_CTRL1_OH | regs::DAA_CTRL1_ONHM);
                let now = self.off_hook();
                if was != now {
                    self.hook_log.push((self.now_ms, now));
                }
                // Our own hook change is no drop-out; only sign changes count.
                let _ = cur0;
                self.after_change(lvs0, ring0, 0);
            }
            _ => self.regs[a] = value,
        }
    }

    fn byte(&mut self, out: Option<u8>) -> Result<u8, ModelError> {
        match (self.phase, out) {
            (Phase::Control, Some(regs::SPI_WRITE)) => {
                self.phase = Phase::Address { read: false };
                Ok(0)
            }
            (Phase::Control, Some(regs::SPI_READ)) => {
                self.phase = Phase::Address { read: true };
                Ok(0)
            }
            (Phase::Address { read }, Some(addr)) => {
                self.phase = Phase::Data { read, addr };
                Ok(0)
            }
            (Phase::Data { read: false, addr }, Some(v)) => {
                self.phase = Phase::Control;
                self.write(addr, v);
                Ok(0)
            }
            (Phase::Data { read: true, addr }, None) => {
                self.phase = Phase::Control;
                Ok(self.read(addr))
            }
            _ => {
                self.phase = Phase::Control;
                self.framing_errors += 1;
                Err(ModelError::Framing)
            }
        }
    }
}

/// The test's handle on the model (shares state with the bus and pins).
#[derive(Clone)]
pub struct ModelHandle(Rc<RefCell<ModelState>>);

impl ModelHandle {
    pub fn state(&self) -> std::cell::Ref<'_, ModelState> {
        self.0.borrow()
    }
    pub fn state_mut(&self) -> std::cell::RefMut<'_, ModelState> {
        self.0.borrow_mut()
    }
    pub fn set_now(&self, ms: u64) {
        self.0.borrow_mut().now_ms = ms;
    }
    pub fn set_ringing(&self, on: bool) {
        self.0.borrow_mut().change_line(|l| l.ringing = on);
    }
    pub fn reverse_polarity(&self) {
        self.0.borrow_mut().change_line(|l| l.reversed = !l.reversed);
    }
    /// Exchange removes (false) or restores (true) battery: open-loop interval.
    pub fn set_battery(&self, on: bool) {
        self.0.borrow_mut().change_line(|l| l.battery = on);
    }
    pub fn off_hook(&self) -> bool {
        self.0.borrow().off_hook()
    }
    /// The isolation link loses frame lock (raises FDTI) and stays down.
    pub fn break_link(&self) {
        let mut s = self.0.borrow_mut();
        s.link_works = false;
        s.link_up = false;
        s.raise(regs::INT_FDT);
    }
    /// The link may lock again (after `link_delay_polls` FDT reads).
    pub fn mend_link(&self) {
        let mut s = self.0.borrow_mut();
        s.link_works = true;
        s.fdt_polls = 0;
    }
}

/// The model's SPI side.
pub struct ModelSpi(Rc<RefCell<ModelState>>);
/// The model's RESET pin (active low).
pub struct ModelReset(Rc<RefCell<ModelState>>);
/// The model's AOUT/INT pin (active low).
pub struct ModelInt(Rc<RefCell<ModelState>>);

/// A fresh model: bus, reset pin, interrupt pin and the test's handle.
pub fn new_model() -> (ModelSpi, ModelReset, ModelInt, ModelHandle) {
    let s = Rc::new(RefCell::new(ModelState::new()));
    (ModelSpi(s.clone()), ModelReset(s.clone()), ModelInt(s.clone()), ModelHandle(s))
}

impl ErrorType for ModelSpi {
    type Error = ModelError;
}

impl SpiDevice<u8> for ModelSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), ModelError> {
        let mut s = self.0.borrow_mut();
        if s.bus_down {
            return Err(ModelError::BusDown);
        }
        if s.in_reset {
            // Nothing answers while RESET is held low.
            for op in operations.iter_mut() {
                if let Operation::Read(b) = op {
                    b.fill(0xFF);
                }
            }
            return Ok(());
        }
        let bytes: usize = operations
            .iter()
            .map(|op| match op {
                Operation::Read(b) => b.len(),
                Operation::Write(b) => b.len(),
                Operation::Transfer(r, w) => r.len().max(w.len()),
                Operation::TransferInPlace(b) => b.len(),
                Operation::DelayNs(_) => 0,
            })
            .sum();
        if bytes != 1 {
            // The Si3050 needs CS released after every byte.
            s.framing_errors += 1;
            s.phase = Phase::Control;
            return Err(ModelError::Framing);
        }
        for op in operations.iter_mut() {
            match op {
                Operation::Write(b) if b.len() == 1 => {
                    s.byte(Some(b[0]))?;
                }
                Operation::Read(b) if b.len() == 1 => {
                    b[0] = s.byte(None)?;
                }
                Operation::DelayNs(_) => {}
                _ => {
                    s.framing_errors += 1;
                    return Err(ModelError::Framing);
                }
            }
        }
        Ok(())
    }
}

impl PinErrorType for ModelReset {
    type Error = core::convert::Infallible;
}

impl OutputPin for ModelReset {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        let mut s = self.0.borrow_mut();
        s.in_reset = true;
        s.reset_regs();
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.0.borrow_mut().in_reset = false;
        Ok(())
    }
}

impl PinErrorType for ModelInt {
    type Error = core::convert::Infallible;
}

impl InputPin for ModelInt {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.0.borrow().int_asserted())
    }
    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(self.0.borrow().int_asserted())
    }
}
