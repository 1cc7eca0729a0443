//! Driver for the Si3050 voice DAA with an Si3018/Si3019 line side: one FXO port.
//!
//! Layer: a chip driver under [`crate::FxoPort`]. The core uses only `core`,
//! `heapless` and `embedded-hal` 1.0 (no `std`, no allocation, no clock).
//!
//! How to drive it:
//! 1. [`Si3050::new`] with an [`SpiDevice`] (one chip select per DAA), the
//!    RESET pin, the AOUT/INT pin and a [`Config`].
//! 2. [`Si3050::init`] once, on the control plane, with a [`DelayNs`]: hardware
//!    reset, identity check (register 2 reads its reset value 0x03; system-side
//!    revision from register 11), soft reset, PCM format and slot, the
//!    country's register table, ring validation, gains, interrupt mask,
//!    line-side power-up (PDL) and the isolation-link check: frame detect (FDT)
//!    is polled at most `link_polls` times, then the line-side ID is read. It
//!    blocks for about 100 ms plus the link wait and never loops unbounded.
//! 3. [`Si3050::tick`] every few milliseconds (10 ms is fine) with the current
//!    time. It serves the interrupt line (ring, polarity reversal, loop-current
//!    drop-out), ends hook flashes, debounces loop-current drops and polarity
//!    reversals, and refreshes the cached line voltage / loop current.
//! 4. Then use it as an [`FxoPort`]: `poll_event` drains what `tick` found.
//!
//! SPI framing (§5.23 of the datasheet): every register access is three bytes,
//! control (0x20 write / 0x60 read), address, data, and the Si3050 wants chip
//! select released after every byte. `SpiDevice` holds CS for one
//! `transaction`, so each byte is its own transaction: a register access is
//! three transactions (see [`Si3050::write_reg`]). Daisy-chaining is not used.
//!
//! Supervision design:
//! - Ring: RDTI (interrupt, validated ring) with RDT set gives `RingStart`;
//!   while ringing, RDT (register 5) is read each tick and its clearing (after
//!   the chip's ring timeout) gives `RingStop`.
//! - Polarity: POLI fires on every sign change of LVS. The sign is re-read
//!   `polarity_debounce_ms` later and a changed, stable sign gives one
//!   `PolarityReversal`. Ringing swings the sign, so POLI during a ring is
//!   ignored and the polarity is re-read silently when the ring stops. Below
//!   3 V the chip forces LVS to 0: no sign, the last polarity stays.
//! - Loop current (while seized): DODI (drop-out) or the optional periodic
//!   poll of LCS2 (register 28) makes a drop suspect; it is reported as
//!   `LoopCurrentDrop` when the current stays under the threshold for
//!   `loop_debounce_ms`, and `LoopCurrentRestore` when it is back as long.
//!   The driver's own flashes (hook flash, dial pulses) never report a drop.

pub mod country;
pub mod model;
pub mod regs;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_model;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::spi::{Operation, SpiDevice};
use heapless::Deque;

pub use country::{Country, CountryParams, UnknownCountry, COUNTRIES};

use crate::{FxoEvent, FxoLineStatus, FxoPort, Polarity, PortError};

/// PCM sample format (register 33 PCMF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmFormat {
    ALaw,
    MuLaw,
    /// 16-bit linear: the slot is 16 PCLK cycles wide.
    Linear16,
}

impl PcmFormat {
    fn pcmf(self) -> u8 {
        match self {
            PcmFormat::ALaw => 0b00,
            PcmFormat::MuLaw => 0b01,
            PcmFormat::Linear16 => 0b11,
        }
    }

    /// Bits per sample on the highway.
    pub fn bits(self) -> u16 {
        match self {
            PcmFormat::Linear16 => 16,
            _ => 8,
        }
    }
}

/// Driver configuration. [`Config::new`] gives working defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub country: Country,
    pub pcm: PcmFormat,
    /// PCM transmit / receive start counts in PCLK cycles after FSYNC (0..=1023).
    pub tx_start: u16,
    pub rx_start: u16,
    /// Digital gains in tenths of a dB, -150..=120 (-15.0 dB to +12.0 dB).
    pub tx_gain_tenth_db: i16,
    pub rx_gain_tenth_db: i16,
    /// Keep the receive path on while on hook (ONHM), for caller ID.
    pub on_hook_monitor: bool,
    /// Loop current (mA) under which a seized line counts as "no loop current".
    pub loop_threshold_ma: u16,
    /// How long a loop-current drop / restore must last to be reported.
    pub loop_debounce_ms: u16,
    /// While seized with loop current, read LCS2 this often to catch a drop the
    /// DODI interrupt missed (0: interrupt only).
    pub loop_poll_ms: u16,
    /// How long a new polarity must be stable to be reported.
    pub polarity_debounce_ms: u16,
    /// Refresh the cached voltage / loop current for `line_status` this often
    /// (0: only when supervision reads them anyway).
    pub status_refresh_ms: u16,
    /// Isolation-link check: at most this many reads of FDT, `link_poll_ms` apart.
    pub link_polls: u8,
    pub link_poll_ms: u32,
}

impl Config {
    /// Defaults: µ-law in the first slot, 0 dB, on-hook monitor on, 10 mA loop
    /// threshold, 64 ms debounces (DAHDI's battery and polarity debounce),
    /// 100 ms loop poll and status refresh, link wait 20 x 100 ms (wctdm waits 2 s).
    pub const fn new(country: Country) -> Self {
        Config {
            country,
            pcm: PcmFormat::MuLaw,
            tx_start: 0,
            rx_start: 0,
            tx_gain_tenth_db: 0,
            rx_gain_tenth_db: 0,
            on_hook_monitor: true,
            loop_threshold_ma: 10,
            loop_debounce_ms: 64,
            loop_poll_ms: 100,
            polarity_debounce_ms: 64,
            status_refresh_ms: 100,
            link_polls: 20,
            link_poll_ms: 100,
        }
    }

    /// Start counts for 8-bit slot `slot` (or the 16-bit slot pair for linear),
    /// transmit and receive in the same slot.
    pub const fn with_slot(mut self, slot: u16) -> Self {
        let bits = match self.pcm {
            PcmFormat::Linear16 => 16,
            _ => 8,
        };
        self.tx_start = slot.saturating_mul(bits);
        self.rx_start = slot.saturating_mul(bits);
        self
    }
}

/// What the driver found at init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// System-side revision (register 11 bits 3:0, REVA).
    pub system_revision: u8,
    pub line_side: LineSide,
    /// Line-side revision (register 13 bits 5:2, REVB).
    pub line_side_revision: u8,
}

/// The line-side device, from register 11 LSID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineSide {
    Si3018,
    Si3019,
    /// Another LSID (e.g. an Si3011); treated like an Si3019.
    Other(u8),
}

impl LineSide {
    /// Only the Si3019 (and Si3011) have the line voltage monitor (§5.12.1);
    /// the Si3018 reports no LVS, hence no polarity either.
    pub fn has_voltage_monitor(self) -> bool {
        !matches!(self, LineSide::Si3018)
    }
}

/// Driver errors, generic over the SPI bus error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error<E> {
    Spi(E),
    /// The RESET or INT pin reported an error.
    Pin,
    /// Register 2 did not read its reset value 0x03 after reset: no Si3050
    /// there (0x00/0xFF: nothing answering), or another chip.
    WrongId { reg2: u8 },
    /// The isolation link to the line side did not come up (FDT stayed 0)
    /// within `link_polls` reads.
    LinkTimeout { polls: u8 },
    /// The link is up but the line side reports no ID (LSID 0).
    NoLineSide,
    /// A configuration value out of range (the name of the field).
    InvalidConfig(&'static str),
    /// An operation that needs [`Si3050::init`] first.
    NotInitialised,
    /// The isolation link to the line side lost frame lock after init.
    LinkLost,
}

/// Loop-current supervision state while seized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loop {
    /// On hook: no supervision.
    Idle,
    /// Just seized (or a flash just ended): waiting for loop current to appear.
    Acquiring,
    /// Loop current present.
    Present,
    /// Under the threshold since `since`; not yet reported.
    Suspect { since: u64 },
    /// Drop reported.
    Dropped,
    /// Back over the threshold since `since`; not yet reported.
    Restoring { since: u64 },
}

const EVENT_QUEUE: usize = 16;

/// One Si3050 + Si3018/19 FXO port.
pub struct Si3050<SPI, RST, INT> {
    spi: SPI,
    reset: RST,
    int: INT,
    config: Config,
    identity: Option<Identity>,
    now: u64,
    seized: bool,
    ringing: bool,
    polarity: Polarity,
    /// When to re-read the LVS sign after a POLI (or after a ring).
    polarity_check_at: Option<u64>,
    /// Re-read without reporting (after a ring, whose swings fired POLI).
    polarity_silent: bool,
    flash_until: Option<u64>,
    /// The isolation link lost frame lock (FDTI) and has not come back.
    link_lost: bool,
    loop_state: Loop,
    next_loop_poll: u64,
    next_refresh: u64,
    voltage: Option<i16>,
    loop_ma: u16,
    events: Deque<FxoEvent, EVENT_QUEUE>,
    /// Events dropped because `poll_event` was not called for too long.
    pub events_lost: u32,
}

impl<SPI, RST, INT, E> Si3050<SPI, RST, INT>
where
    SPI: SpiDevice<u8, Error = E>,
    RST: OutputPin,
    INT: InputPin,
{
    pub fn new(spi: SPI, reset: RST, int: INT, config: Config) -> Self {
        Si3050 {
            spi,
            reset,
            int,
            config,
            identity: None,
            now: 0,
            seized: false,
            ringing: false,
            polarity: Polarity::Normal,
            polarity_check_at: None,
            polarity_silent: false,
            flash_until: None,
            link_lost: false,
            loop_state: Loop::Idle,
            next_loop_poll: 0,
            next_refresh: 0,
            voltage: None,
            loop_ma: 0,
            events: Deque::new(),
            events_lost: 0,
        }
    }

    /// Gives the bus and pins back.
    pub fn release(self) -> (SPI, RST, INT) {
        (self.spi, self.reset, self.int)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What init found; `None` before a successful [`Si3050::init`].
    pub fn identity(&self) -> Option<Identity> {
        self.identity
    }

    // ---- register access -------------------------------------------------

    fn byte(&mut self, b: u8) -> Result<(), Error<E>> {
        self.spi.transaction(&mut [Operation::Write(&[b])]).map_err(Error::Spi)
    }

    /// Writes one register: three one-byte transactions (CS released after
    /// each byte).
    pub fn write_reg(&mut self, reg: u8, value: u8) -> Result<(), Error<E>> {
        self.byte(regs::SPI_WRITE)?;
        self.byte(reg)?;
        self.byte(value)
    }

    /// Reads one register: control and address bytes, then the data byte, each
    /// in its own transaction.
    pub fn read_reg(&mut self, reg: u8) -> Result<u8, Error<E>> {
        self.byte(regs::SPI_READ)?;
        self.byte(reg)?;
        let mut b = [0u8];
        self.spi.transaction(&mut [Operation::Read(&mut b)]).map_err(Error::Spi)?;
        Ok(b[0])
    }

    // ---- init ------------------------------------------------------------

    fn check_config(c: &Config) -> Result<(), Error<E>> {
        if c.tx_start > regs::PCM_START_MAX {
            return Err(Error::InvalidConfig("tx_start"));
        }
        if c.rx_start > regs::PCM_START_MAX {
            return Err(Error::InvalidConfig("rx_start"));
        }
        if gain_regs(c.tx_gain_tenth_db).is_none() {
            return Err(Error::InvalidConfig("tx_gain_tenth_db"));
        }
        if gain_regs(c.rx_gain_tenth_db).is_none() {
            return Err(Error::InvalidConfig("rx_gain_tenth_db"));
        }
        if c.link_polls == 0 {
            return Err(Error::InvalidConfig("link_polls"));
        }
        Ok(())
    }

    /// Resets and sets up the chip; see the module docs for the sequence.
    /// On error the port stays unusable (every `FxoPort` call answers
    /// `InvalidState`) and `init` may be called again.
    pub fn init(&mut self, delay: &mut impl DelayNs) -> Result<Identity, Error<E>> {
        self.identity = None;
        Self::check_config(&self.config)?;
        let c = self.config;
        let p = *c.country.params();

        // Hardware reset: RESET low for 1 ms, then let the chip start.
        self.reset.set_low().map_err(|_| Error::Pin)?;
        delay.delay_ms(1);
        self.reset.set_high().map_err(|_| Error::Pin)?;
        delay.delay_ms(1);

        // Identity: register 2 holds its reset value only on a real Si3050.
        let reg2 = self.read_reg(regs::CTRL2)?;
        if reg2 != regs::CTRL2_RESET_VALUE {
            return Err(Error::WrongId { reg2 });
        }
        let system_revision = self.read_reg(regs::REVISION)? & 0x0F;

        // Soft reset (register 1 SR), then wait for it (wctdm waits 100 ms).
        self.write_reg(regs::CTRL1, regs::CTRL1_SR)?;
        delay.delay_ms(100);

        // PCM: format and slot.
        self.write_reg(regs::PCM_MODE, regs::PCM_MODE_PCME | (c.pcm.pcmf() << regs::PCM_MODE_PCMF_SHIFT))?;
        self.write_reg(regs::PCM_TX_LO, (c.tx_start & 0xFF) as u8)?;
        self.write_reg(regs::PCM_TX_HI, (c.tx_start >> 8) as u8)?;
        self.write_reg(regs::PCM_RX_LO, (c.rx_start & 0xFF) as u8)?;
        self.write_reg(regs::PCM_RX_HI, (c.rx_start >> 8) as u8)?;

        // Country: on-hook speed, ringer impedance and threshold, ring
        // detector, DC and AC termination.
        self.write_reg(regs::INTL_CTRL1, p.reg16())?;
        self.write_reg(regs::INTL_CTRL3, p.reg18())?;
        let rv3 = self.read_reg(regs::RING_VAL3)?;
        let rv3 = if p.ring_validation { rv3 | regs::RING_VAL3_RNGV } else { rv3 & !regs::RING_VAL3_RNGV };
        self.write_reg(regs::RING_VAL3, rv3)?;
        self.write_reg(regs::DC_TERM, p.reg26())?;
        self.write_reg(regs::AC_TERM, p.reg30())?;
        self.write_reg(regs::DAA_CTRL4, p.reg31())?;

        // Gains.
        self.apply_gains(c.tx_gain_tenth_db, c.rx_gain_tenth_db)?;

        // Interrupts: ring, link loss, drop-out, polarity; INT active low.
        self.write_reg(regs::INT_MASK, regs::INT_RDT | regs::INT_FDT | regs::INT_DOD | regs::INT_POL)?;
        self.write_reg(regs::CTRL2, regs::CTRL2_INTE | regs::CTRL2_HBE | regs::CTRL2_RXE)?;

        // Line side up: clear PDL, then wait (bounded) for frame detect.
        self.write_reg(regs::DAA_CTRL2, 0)?;
        let mut polls = 0u8;
        loop {
            polls += 1;
            if self.read_reg(regs::LS_STATUS)? & regs::LS_STATUS_FDT != 0 {
                break;
            }
            if polls >= c.link_polls {
                return Err(Error::LinkTimeout { polls });
            }
            delay.delay_ms(c.link_poll_ms);
        }
        let lsid = self.read_reg(regs::REVISION)? >> 4;
        let line_side = match lsid {
            0 => return Err(Error::NoLineSide),
            regs::LSID_SI3018 => LineSide::Si3018,
            regs::LSID_SI3019 => LineSide::Si3019,
            other => LineSide::Other(other),
        };
        let line_side_revision = (self.read_reg(regs::LS_REVISION)? >> 2) & 0x0F;

        // Clear what the power-up latched, go on hook with the monitor as configured.
        self.write_reg(regs::INT_SOURCE, 0)?;
        self.write_reg(regs::DAA_CTRL1, self.hook_bits(false))?;

        let id = Identity { system_revision, line_side, line_side_revision };
        self.identity = Some(id);
        self.seized = false;
        self.ringing = false;
        self.flash_until = None;
        self.link_lost = false;
        self.loop_state = Loop::Idle;
        self.polarity = Polarity::Normal;
        self.polarity_check_at = None;
        self.events.clear();
        self.voltage = if line_side.has_voltage_monitor() { Some(0) } else { None };
        self.loop_ma = 0;
        Ok(id)
    }

    fn hook_bits(&self, off_hook: bool) -> u8 {
        (if self.config.on_hook_monitor { regs::DAA_CTRL1_ONHM } else { 0 })
            | if off_hook { regs::DAA_CTRL1_OH } else { 0 }
    }

    fn apply_gains(&mut self, tx: i16, rx: i16) -> Result<(), Error<E>> {
        let (t2, t3) = gain_regs(tx).ok_or(Error::InvalidConfig("tx_gain_tenth_db"))?;
        let (r2, r3) = gain_regs(rx).ok_or(Error::InvalidConfig("rx_gain_tenth_db"))?;
        self.write_reg(regs::TX_GAIN2, t2)?;
        self.write_reg(regs::TX_GAIN3, t3)?;
        self.write_reg(regs::RX_GAIN2, r2)?;
        self.write_reg(regs::RX_GAIN3, r3)
    }

    fn ready(&self) -> Result<Identity, Error<E>> {
        self.identity.ok_or(Error::NotInitialised)
    }

    // ---- settings after init ----------------------------------------------

    /// Changes the digital gains (tenths of a dB, -150..=120). Out of range:
    /// `InvalidConfig`, nothing written.
    pub fn set_gains(&mut self, tx_tenth_db: i16, rx_tenth_db: i16) -> Result<(), Error<E>> {
        self.ready()?;
        if gain_regs(tx_tenth_db).is_none() {
            return Err(Error::InvalidConfig("tx_gain_tenth_db"));
        }
        if gain_regs(rx_tenth_db).is_none() {
            return Err(Error::InvalidConfig("rx_gain_tenth_db"));
        }
        self.apply_gains(tx_tenth_db, rx_tenth_db)?;
        self.config.tx_gain_tenth_db = tx_tenth_db;
        self.config.rx_gain_tenth_db = rx_tenth_db;
        Ok(())
    }

    /// Changes the PCM format and start counts. Out of range: `InvalidConfig`,
    /// nothing written.
    pub fn set_pcm(&mut self, format: PcmFormat, tx_start: u16, rx_start: u16) -> Result<(), Error<E>> {
        self.ready()?;
        if tx_start > regs::PCM_START_MAX {
            return Err(Error::InvalidConfig("tx_start"));
        }
        if rx_start > regs::PCM_START_MAX {
            return Err(Error::InvalidConfig("rx_start"));
        }
        self.write_reg(regs::PCM_MODE, regs::PCM_MODE_PCME | (format.pcmf() << regs::PCM_MODE_PCMF_SHIFT))?;
        self.write_reg(regs::PCM_TX_LO, (tx_start & 0xFF) as u8)?;
        self.write_reg(regs::PCM_TX_HI, (tx_start >> 8) as u8)?;
        self.write_reg(regs::PCM_RX_LO, (rx_start & 0xFF) as u8)?;
        self.write_reg(regs::PCM_RX_HI, (rx_start >> 8) as u8)?;
        self.config.pcm = format;
        self.config.tx_start = tx_start;
        self.config.rx_start = rx_start;
        Ok(())
    }

    /// Turns the on-hook line monitor (caller ID reception while on hook) on or off.
    pub fn set_on_hook_monitor(&mut self, on: bool) -> Result<(), Error<E>> {
        self.ready()?;
        self.config.on_hook_monitor = on;
        let bits = self.hook_bits(self.seized && self.flash_until.is_none());
        self.write_reg(regs::DAA_CTRL1, bits)
    }

    /// Reads the line voltage now (LVS, volts, signed: negative = reversed).
    /// `None` on an Si3018, which has no voltage monitor.
    pub fn read_line_voltage(&mut self) -> Result<Option<i16>, Error<E>> {
        let id = self.ready()?;
        if !id.line_side.has_voltage_monitor() {
            return Ok(None);
        }
        let v = self.read_reg(regs::LINE_VOLTAGE)? as i8 as i16;
        self.voltage = Some(v.abs());
        Ok(Some(v))
    }

    /// Reads the loop current now (LCS2, mA).
    pub fn read_loop_current(&mut self) -> Result<u16, Error<E>> {
        self.ready()?;
        let raw = self.read_reg(regs::LOOP_CURRENT)?;
        self.loop_ma = lcs2_to_ma(raw);
        Ok(self.loop_ma)
    }

    // ---- time ------------------------------------------------------------

    /// Advances the driver to `now_ms` (monotonic, any epoch). Serves the
    /// interrupt line and runs every timer; call it every few ms. A time that
    /// goes backwards is treated as no time passing.
    pub fn tick(&mut self, now_ms: u64) -> Result<(), Error<E>> {
        if self.identity.is_none() {
            return Err(Error::NotInitialised);
        }
        self.now = self.now.max(now_ms);
        let now = self.now;

        // End of a flash: close the loop again.
        if let Some(end) = self.flash_until {
            if now >= end {
                self.write_reg(regs::DAA_CTRL1, self.hook_bits(true))?;
                self.flash_until = None;
                self.loop_state = Loop::Acquiring;
            }
        }

        // Interrupt line (active low).
        let mut reg5 = None;
        let mut link_checked = false;
        if self.int.is_low().map_err(|_| Error::Pin)? {
            let src = self.read_reg(regs::INT_SOURCE)?;
            // Clear exactly the bits seen; a source that sets in between stays.
            self.write_reg(regs::INT_SOURCE, !src)?;
            if src & regs::INT_FDT != 0 {
                self.link_lost = self.read_reg(regs::LS_STATUS)? & regs::LS_STATUS_FDT == 0;
                link_checked = true;
            }
            if src & regs::INT_RDT != 0 {
                let r5 = self.read_reg(regs::DAA_CTRL1)?;
                reg5 = Some(r5);
                if r5 & regs::DAA_CTRL1_RDT != 0 && !self.ringing {
                    self.ringing = true;
                    self.polarity_check_at = None;
                    self.push(FxoEvent::RingStart);
                }
            }
            if src & regs::INT_POL != 0 && !self.ringing && self.voltage.is_some() {
                self.polarity_check_at = Some(now.saturating_add(u64::from(self.config.polarity_debounce_ms)));
                self.polarity_silent = false;
            }
            if src & regs::INT_DOD != 0 && self.seized && self.flash_until.is_none() && self.loop_state == Loop::Present
            {
                self.loop_state = Loop::Suspect { since: now };
            }
        }

        // A lost link is re-checked every tick until frame lock is back; the
        // line side's status is meaningless meanwhile.
        if self.link_lost {
            if !link_checked {
                self.link_lost = self.read_reg(regs::LS_STATUS)? & regs::LS_STATUS_FDT == 0;
            }
            if self.link_lost {
                return Ok(());
            }
        }

        // Ring end: RDT clears after the chip's ring timeout.
        if self.ringing {
            let r5 = match reg5 {
                Some(r) => r,
                None => self.read_reg(regs::DAA_CTRL1)?,
            };
            if r5 & regs::DAA_CTRL1_RDT == 0 {
                self.ringing = false;
                self.push(FxoEvent::RingStop);
                if self.voltage.is_some() {
                    self.polarity_check_at = Some(now.saturating_add(u64::from(self.config.polarity_debounce_ms)));
                    self.polarity_silent = true;
                }
            }
        }

        // Debounced polarity.
        if let Some(at) = self.polarity_check_at {
            if now >= at && !self.ringing {
                self.polarity_check_at = None;
                let v = self.read_reg(regs::LINE_VOLTAGE)? as i8;
                self.voltage = Some(i16::from(v).abs());
                if v.unsigned_abs() >= 3 {
                    let p = if v < 0 { Polarity::Reversed } else { Polarity::Normal };
                    if p != self.polarity {
                        self.polarity = p;
                        if !self.polarity_silent {
                            self.push(FxoEvent::PolarityReversal);
                        }
                    }
                }
            }
        }

        self.supervise_loop(now)?;

        // Cached status for line_status().
        if self.config.status_refresh_ms > 0 && now >= self.next_refresh {
            self.next_refresh = now.saturating_add(u64::from(self.config.status_refresh_ms));
            if self.voltage.is_some() {
                let v = self.read_reg(regs::LINE_VOLTAGE)? as i8;
                self.voltage = Some(i16::from(v).abs());
            }
            if self.seized {
                let raw = self.read_reg(regs::LOOP_CURRENT)?;
                self.loop_ma = lcs2_to_ma(raw);
            }
        }
        Ok(())
    }

    fn supervise_loop(&mut self, now: u64) -> Result<(), Error<E>> {
        if !self.seized || self.flash_until.is_some() {
            return Ok(());
        }
        let debounce = u64::from(self.config.loop_debounce_ms);
        let state = self.loop_state;
        if state == Loop::Present {
            if self.config.loop_poll_ms == 0 || now < self.next_loop_poll {
                return Ok(());
            }
            self.next_loop_poll = now.saturating_add(u64::from(self.config.loop_poll_ms));
        }
        let raw = self.read_reg(regs::LOOP_CURRENT)?;
        self.loop_ma = lcs2_to_ma(raw);
        let present = self.loop_ma >= self.config.loop_threshold_ma;
        self.loop_state = match (state, present) {
            (Loop::Idle, _) => Loop::Idle,
            (Loop::Acquiring, true) => Loop::Present,
            (Loop::Acquiring, false) => Loop::Acquiring,
            (Loop::Present, true) => Loop::Present,
            (Loop::Present, false) => Loop::Suspect { since: now },
            (Loop::Suspect { .. }, true) => Loop::Present,
            (Loop::Suspect { since }, false) => {
                if now.saturating_sub(since) >= debounce {
                    self.push(FxoEvent::LoopCurrentDrop);
                    Loop::Dropped
                } else {
                    Loop::Suspect { since }
                }
            }
            (Loop::Dropped, true) => Loop::Restoring { since: now },
            (Loop::Dropped, false) => Loop::Dropped,
            (Loop::Restoring { since }, true) => {
                if now.saturating_sub(since) >= debounce {
                    self.push(FxoEvent::LoopCurrentRestore);
                    Loop::Present
                } else {
                    Loop::Restoring { since }
                }
            }
            (Loop::Restoring { .. }, false) => Loop::Dropped,
        };
        if self.loop_state == Loop::Present && state != Loop::Present {
            self.next_loop_poll = now.saturating_add(u64::from(self.config.loop_poll_ms));
        }
        Ok(())
    }

    fn push(&mut self, ev: FxoEvent) {
        if self.events.is_full() {
            self.events.pop_front();
            self.events_lost = self.events_lost.saturating_add(1);
        }
        // Cannot fail: room was made above.
        let _ = self.events.push_back(ev);
    }

    /// Seizes (closes the loop) or releases the line.
    pub fn set_hook(&mut self, off_hook: bool) -> Result<(), Error<E>> {
        self.ready()?;
        if self.link_lost {
            return Err(Error::LinkLost);
        }
        self.write_reg(regs::DAA_CTRL1, self.hook_bits(off_hook))?;
        self.seized = off_hook;
        self.flash_until = None;
        self.loop_state = if off_hook { Loop::Acquiring } else { Loop::Idle };
        if !off_hook {
            self.loop_ma = 0;
        }
        Ok(())
    }

    /// Opens the loop for `ms` while seized; [`Si3050::tick`] closes it again.
    pub fn start_flash(&mut self, ms: u16) -> Result<(), PortError> {
        if self.identity.is_none() || !self.seized || self.flash_until.is_some() || ms == 0 {
            return Err(PortError::InvalidState);
        }
        if self.link_lost {
            return Err(PortError::CardGone);
        }
        let bits = self.hook_bits(false);
        self.write_reg(regs::DAA_CTRL1, bits).map_err(|_| PortError::CardGone)?;
        self.flash_until = Some(self.now.saturating_add(u64::from(ms)));
        self.loop_state = Loop::Acquiring;
        Ok(())
    }

    /// False after the isolation link to the line side lost frame lock (FDTI),
    /// until it is back: hook changes are refused with `CardGone` meanwhile.
    pub fn link_ok(&self) -> bool {
        self.identity.is_some() && !self.link_lost
    }

    /// True while a flash is in progress (the loop is open).
    pub fn flashing(&self) -> bool {
        self.flash_until.is_some()
    }
}

impl<SPI, RST, INT, E> FxoPort for Si3050<SPI, RST, INT>
where
    SPI: SpiDevice<u8, Error = E>,
    RST: OutputPin,
    INT: InputPin,
{
    fn poll_event(&mut self) -> Option<FxoEvent> {
        self.events.pop_front()
    }

    fn seize(&mut self, on: bool) -> Result<(), PortError> {
        self.set_hook(on).map_err(|e| match e {
            Error::NotInitialised => PortError::InvalidState,
            _ => PortError::CardGone,
        })
    }

    fn flash(&mut self, ms: u16) -> Result<(), PortError> {
        self.start_flash(ms)
    }

    fn line_status(&self) -> FxoLineStatus {
        FxoLineStatus {
            voltage: self.voltage,
            loop_current_ma: Some(if self.seized && self.flash_until.is_none() { self.loop_ma } else { 0 }),
            polarity: self.polarity,
            ringing: self.ringing,
            seized: self.seized,
        }
    }
}

/// Registers (GAIN2, GAIN3) for a gain in tenths of a dB; `None` out of range.
/// Gain: whole dB 0..=12 and tenths 0..=9; attenuation: the same with the
/// attenuate bit, whole dB 0..=15 (§7, registers 38-41).
pub fn gain_regs(tenth_db: i16) -> Option<(u8, u8)> {
    if !(-150..=120).contains(&tenth_db) {
        return None;
    }
    let a = tenth_db.unsigned_abs();
    let (whole, tenth) = ((a / 10) as u8, (a % 10) as u8);
    Some(if tenth_db < 0 {
        (regs::GAIN_ATTENUATE | whole, regs::GAIN_ATTENUATE | tenth)
    } else {
        (whole, tenth)
    })
}

/// LCS2 (register 28) to mA: about 1.1 mA per LSB.
pub fn lcs2_to_ma(raw: u8) -> u16 {
    (u16::from(raw) * 11) / 10
}
