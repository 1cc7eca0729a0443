//! Driver for the Silicon Labs Si3215 ProSLIC (FXS: the gateway is the exchange,
//! a phone is on the line), implementing [`FxsPort`].
//!
//! # Layer and shape
//! A chip driver of the HAL, generic over `embedded_hal::spi::SpiDevice` (the
//! chip's control port), an `OutputPin` for RESET and an `InputPin` for the
//! active-low INT line (embedded-hal 1.0). The driver core uses only `core`,
//! `heapless` and `embedded-hal` (no `std`; `tests::driver_core_uses_no_std`
//! checks the source). It reads no clock: [`Si3215::tick`] takes `now_ms`, and
//! the one-off start-up takes a [`DelayNs`] for its bounded waits.
//!
//! # How to drive it
//! 1. [`Si3215::new`] checks the [`Config`] (bad values are refused before the
//!    chip is touched).
//! 2. [`Si3215::init`] resets the chip, checks its identity, loads the indirect
//!    registers, powers up the DC-DC converter and checks the battery,
//!    calibrates (or re-applies a saved [`Calibration`] for a warm re-init),
//!    programs the ringer, PCM format and timeslot and the interrupts, and
//!    leaves the line in forward active feed. It returns the calibration to save.
//! 3. Call [`Si3215::tick`] when the INT line fires and at least every 10 ms
//!    while a cadence or a debounce runs ([`Si3215::needs_tick`]). It reads and
//!    clears the interrupt status only when INT is asserted, debounces the hook,
//!    tells a hook flash from a hang-up and runs a ring cadence the chip's own
//!    timers cannot express.
//! 4. Drain [`FxsPort::poll_event`] (or [`Si3215::poll_slic_event`], which also
//!    reports ground key and power alarms) after every tick.
//!
//! # SPI framing
//! A register access is an address byte (bit 7 set = read) and a data byte, and
//! the chip wants chip select released after *every* byte (data sheet "Serial
//! Peripheral Interface"; DAHDI's `__write_8bits` raises CS after each byte). So
//! each byte is its own `SpiDevice` transaction: a write is two one-byte
//! writes, a read is a one-byte write and a one-byte read.
//!
//! # Ringing cadence
//! The chip has one ringing active timer and one inactive timer (regs 48-51,
//! 125 us steps, at most 8.19 s). A cadence of one on/off pair within that range
//! runs on the chip's timers; anything else (the UK double ring) is run by
//! `tick`, switching the linefeed between ringing and on-hook transmission.
//!
//! # Ground key
//! The Si3215 has no separate longitudinal-current detector. Ground key / ground
//! start is seen the way the data sheet's ground-start operation works: with the
//! linefeed in tip-open ([`Si3215::set_tip_open`]) only a ring-to-ground path
//! can draw loop current, so a loop closure there is reported as
//! [`SlicEvent::GroundKey`].

pub mod regs;

#[cfg(any(test, feature = "chip-models"))]
pub mod model;
#[cfg(test)]
mod tests;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::spi::SpiDevice;
use heapless::Deque;

use crate::{FxsEvent, FxsPort, HookState, LineFeed, PortError, RingCadence};
use regs::*;

/// Bounded waits of [`Si3215::init`] (poll interval x count).
const POLL_MS: u32 = 10;
/// VBAT must come up within 500 ms (AN35; DAHDI waits the same).
const VBAT_POLLS: u32 = 50;
/// The full calibration must end within 2 s.
const CAL_POLLS: u32 = 200;
/// The DC-DC calibration bit must clear within 200 ms.
const DCDC_CAL_POLLS: u32 = 20;
/// Reads of the indirect access status before giving up. An indirect access
/// takes a few 8 kHz samples, far less than 100 SPI reads.
const IAS_POLLS: u32 = 100;
/// Interrupt status passes per tick; INT still asserted after that means a bit
/// that cannot be cleared (reported by the next tick, never looped on).
const IRQ_PASSES: u32 = 4;
/// The longest period the ring timers hold: 0xFFFF / 8 ms.
const RING_TIMER_MAX_MS: u16 = 8191;

/// PCM sample format (reg 1, PCMF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmFormat {
    ALaw,
    MuLaw,
    /// 16-bit linear, two timeslots wide.
    Linear16,
}

/// Ringing frequency. Oscillator values from the data sheet's ringing equations
/// (section 2.4.2): `RCO = cos(2 pi f / 1000 Hz) * 2^15`, and
/// `RNGX = 1/4 * sqrt((1 - RCO) / (1 + RCO)) * (2^15 - 1) * Vpk / 96 V`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFrequency {
    Hz20,
    Hz25,
}

impl RingFrequency {
    /// RCO (indirect RING_OSC).
    pub const fn rco(self) -> u16 {
        match self {
            RingFrequency::Hz20 => 0x7EFD,
            RingFrequency::Hz25 => 0x7E6C,
        }
    }

    /// RNGX per volt peak, times 1000 (the square-root factor of the equation,
    /// precomputed because `core` has no `sqrt`).
    const fn rngx_per_volt_milli(self) -> u32 {
        match self {
            RingFrequency::Hz20 => 5370,
            RingFrequency::Hz25 => 6716,
        }
    }

    /// RNGX for a peak ringing voltage.
    pub const fn rngx(self, vpk: u8) -> u16 {
        ((self.rngx_per_volt_milli() * vpk as u32 + 500) / 1000) as u16
    }

    /// Ring trip filter NRTP and debounce RTDI (Table 30, "Recommended Ring Trip
    /// Values"). The table has no 25 Hz row; the 20 Hz row (longer debounce)
    /// is the safe choice for both.
    const fn ring_trip(self) -> (u16, u8) {
        (0x0320, 0x0B)
    }
}

/// Board and country settings of one FXS port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub pcm_format: PcmFormat,
    /// PCM transmit/receive start counts in PCLK cycles after FSYNC (0..=1023);
    /// one 8-bit timeslot is 8 counts.
    pub tx_start: u16,
    pub rx_start: u16,
    /// Loop current limit, 20..=41 mA (reg 71 in 3 mA steps).
    pub loop_current_ma: u8,
    pub ring_frequency: RingFrequency,
    /// Peak ringing voltage, 40..=90 V.
    pub ring_vpk: u8,
    /// VBAT (reg 82, 376 mV steps) the DC-DC converter must reach at power-up.
    pub vbat_min: u8,
    /// A loop state must hold this long before it counts.
    pub hook_debounce_ms: u16,
    /// An on-hook between `flash_min_ms` and `flash_max_ms` is a hook flash;
    /// a longer one is a hang-up, a shorter one is ignored.
    pub flash_min_ms: u16,
    pub flash_max_ms: u16,
}

impl Config {
    /// µ-law in timeslot 0, 20 mA, 20 Hz ringing at 70 V peak, 30 ms debounce,
    /// a flash is an on-hook of 100-700 ms (as linesim judges it, SIMLINK.md).
    pub const fn new() -> Self {
        Config {
            pcm_format: PcmFormat::MuLaw,
            tx_start: 0,
            rx_start: 0,
            loop_current_ma: 20,
            ring_frequency: RingFrequency::Hz20,
            ring_vpk: 70,
            vbat_min: VBAT_MIN_DEFAULT,
            hook_debounce_ms: 30,
            flash_min_ms: 100,
            flash_max_ms: 700,
        }
    }

    /// Transmit and receive in 8-bit timeslot `slot` (start count `slot * 8`);
    /// 16-bit linear takes `slot` and the next one.
    pub const fn timeslot(mut self, slot: u16) -> Self {
        self.tx_start = slot.saturating_mul(8);
        self.rx_start = slot.saturating_mul(8);
        self
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tx_start > 1023 || self.rx_start > 1023 {
            return Err(ConfigError::PcmStart);
        }
        if !(20..=41).contains(&self.loop_current_ma) {
            return Err(ConfigError::LoopCurrent);
        }
        if !(40..=90).contains(&self.ring_vpk) {
            return Err(ConfigError::RingVoltage);
        }
        if self.hook_debounce_ms == 0 || self.flash_min_ms <= self.hook_debounce_ms || self.flash_max_ms <= self.flash_min_ms
        {
            return Err(ConfigError::HookTiming);
        }
        Ok(())
    }

    /// Reg 71: ILIM = (mA - 20) / 3.
    fn ilim(&self) -> u8 {
        (self.loop_current_ma - 20) / 3
    }

    /// Reg 74: the ringing battery, ring peak plus 10 V headroom, 1.5 V steps.
    fn vbath(&self) -> u8 {
        let steps = (u16::from(self.ring_vpk) + 10) * 2 / 3 + 1;
        steps.min(0x3F) as u8
    }

    fn pcm_mode(&self) -> u8 {
        PCME | match self.pcm_format {
            PcmFormat::ALaw => PCMF_ALAW,
            PcmFormat::MuLaw => PCMF_ULAW,
            PcmFormat::Linear16 => PCMF_LINEAR16,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// Which [`Config`] value is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    PcmStart,
    LoopCurrent,
    RingVoltage,
    HookTiming,
}

/// What went wrong talking to the chip. `E` is the SPI bus error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlicError<E> {
    Spi(E),
    /// The RESET or INT pin reported an error.
    Pin,
    /// Revision nibble 0 or 0xF: nothing answers on this chip select.
    NoChip { reg0: u8 },
    /// A ProSLIC older than revision B.
    TooOld { revision: u8 },
    /// A ProSLIC, but not an Si3215 (reg 1 bit 7 clear: an Si3210, whose
    /// indirect register numbers differ).
    NotSi3215 { reg0: u8, reg1: u8 },
    /// A register does not hold its reset value: wrong chip or a broken bus.
    Insane { reg: u8, read: u8, expected: u8 },
    /// The indirect access status stayed busy.
    IndirectTimeout { addr: u8 },
    /// An indirect register read back differently from what was written.
    IndirectVerify { addr: u8, wrote: u16, read: u16 },
    /// VBAT (reg 82) stayed below the configured minimum after power-up.
    BatteryLow { vbat: u8 },
    /// The calibration did not finish (reg 96 still non-zero after 2 s).
    CalibrationTimeout { cal1: u8 },
    /// The DC-DC calibration bit (reg 93 bit 7) did not clear.
    DcDcCalibrationTimeout,
}

/// Calibration results (regs 98-107) of a cold start, to save and re-apply on a
/// warm re-init without recalibrating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calibration {
    pub results: [u8; 10],
}

impl Calibration {
    /// For storage.
    pub fn to_bytes(&self) -> [u8; 10] {
        self.results
    }

    /// From storage; `None` if the DC peak current result (reg 107) is outside
    /// the plausible range, i.e. the bytes are not a calibration of this chip.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let results: [u8; 10] = bytes.try_into().ok()?;
        if !(DC_PEAK_MIN..=DC_PEAK_MAX).contains(&results[9]) {
            return None;
        }
        Some(Calibration { results })
    }
}

/// Everything the driver can report; [`FxsPort::poll_event`] passes on the
/// hook events and drops the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlicEvent {
    OffHook,
    OnHook,
    HookFlash,
    /// The phone answered while ringing; ringing has stopped. Counts as off-hook.
    RingTrip,
    /// Loop current while the tip lead is open: a ground on the ring lead.
    GroundKey,
    /// Power alarm on the line-feed transistors (reg 19 bits 7:2); the chip
    /// opens the line by itself.
    PowerAlarm { alarms: u8 },
}

#[derive(Debug, Clone, Copy)]
struct Ringing {
    cadence: RingCadence,
    /// The chip's ring timers run the cadence.
    by_chip: bool,
    period: usize,
    period_start: u32,
}

/// One Si3215 and its line.
pub struct Si3215<SPI, RST, INT> {
    spi: SPI,
    reset: RST,
    int: INT,
    config: Config,
    /// Feed to return to after ringing.
    feed: LineFeed,
    /// Forward or reverse polarity for active and on-hook transmission feed.
    reversed: bool,
    tip_open: bool,
    ringing: Option<Ringing>,
    /// Last loop state read from the chip, and since when.
    raw_off_hook: bool,
    raw_since: u32,
    hook: HookState,
    /// Start of an on-hook not yet judged (flash or hang-up).
    break_start: Option<u32>,
    now: u32,
    events: Deque<SlicEvent, 16>,
    dropped_events: u32,
}

impl<SPI, RST, INT, E> Si3215<SPI, RST, INT>
where
    SPI: SpiDevice<Error = E>,
    RST: OutputPin,
    INT: InputPin,
{
    /// Takes the bus and pins; refuses a bad `config` without touching anything.
    pub fn new(spi: SPI, reset: RST, int: INT, config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Si3215 {
            spi,
            reset,
            int,
            config,
            feed: LineFeed::Forward,
            reversed: false,
            tip_open: false,
            ringing: None,
            raw_off_hook: false,
            raw_since: 0,
            hook: HookState::OnHook,
            break_start: None,
            now: 0,
            events: Deque::new(),
            dropped_events: 0,
        })
    }

    /// Gives back the bus and pins.
    pub fn release(self) -> (SPI, RST, INT) {
        (self.spi, self.reset, self.int)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Events lost because nobody drained the queue.
    pub fn dropped_events(&self) -> u32 {
        self.dropped_events
    }

    // ---- Register access (one byte per transaction, see the module docs) ----

    fn write(&mut self, reg: u8, value: u8) -> Result<(), SlicError<E>> {
        self.spi.write(&[reg & !READ]).map_err(SlicError::Spi)?;
        self.spi.write(&[value]).map_err(SlicError::Spi)
    }

    fn read(&mut self, reg: u8) -> Result<u8, SlicError<E>> {
        self.spi.write(&[reg | READ]).map_err(SlicError::Spi)?;
        let mut b = [0u8];
        self.spi.read(&mut b).map_err(SlicError::Spi)?;
        Ok(b[0])
    }

    fn wait_indirect(&mut self, addr: u8) -> Result<(), SlicError<E>> {
        for _ in 0..IAS_POLLS {
            if self.read(IAS)? & 0x01 == 0 {
                return Ok(());
            }
        }
        Err(SlicError::IndirectTimeout { addr })
    }

    /// Indirect write (data sheet "Indirect Registers"): data low, data high,
    /// then the address, which starts the access.
    pub fn write_indirect(&mut self, addr: u8, value: u16) -> Result<(), SlicError<E>> {
        self.wait_indirect(addr)?;
        let [lo, hi] = value.to_le_bytes();
        self.write(IDA_LO, lo)?;
        self.write(IDA_HI, hi)?;
        self.write(IAA, addr)
    }

    /// Indirect read: the address alone starts a read; the data is valid once
    /// the status clears.
    pub fn read_indirect(&mut self, addr: u8) -> Result<u16, SlicError<E>> {
        self.wait_indirect(addr)?;
        self.write(IAA, addr)?;
        self.wait_indirect(addr)?;
        let lo = self.read(IDA_LO)?;
        let hi = self.read(IDA_HI)?;
        Ok(u16::from_le_bytes([lo, hi]))
    }

    // ---- Start-up ----

    /// Resets and starts the chip (see the module docs for the order). With
    /// `saved`, the calibration is re-applied instead of run. Returns the
    /// calibration in use. On error the DC-DC converter may be up but the
    /// linefeed stays open.
    pub fn init(&mut self, delay: &mut impl DelayNs, saved: Option<&Calibration>) -> Result<Calibration, SlicError<E>> {
        self.ringing = None;
        self.tip_open = false;
        self.reversed = false;
        self.feed = LineFeed::Forward;
        self.hook = HookState::OnHook;
        self.break_start = None;
        self.raw_off_hook = false;
        self.events.clear();

        self.reset.set_low().map_err(|_| SlicError::Pin)?;
        delay.delay_ms(1);
        self.reset.set_high().map_err(|_| SlicError::Pin)?;
        delay.delay_ms(1);

        self.identify()?;
        // DC-DC converter off while the indirect registers are loaded.
        self.write(PWR_DOWN1, PWR_DOWN1_DCDC_OFF)?;
        for (addr, value) in INDIRECT_INIT {
            self.write_indirect(addr, value)?;
        }
        self.write(LOOPBACK, 0)?;
        // Revision C enhancements (DAHDI "Revision C optimization").
        self.write(ENHANCE, 0xEB)?;
        // Automatic handling of power alarms, loop closure and ring trip, but no
        // automatic battery switching (AN47: keeps Q7 off).
        self.write(AUTO, 0x07)?;
        self.write(BAT_FEED, 0x01)?;
        for f in FILTERS {
            self.write_indirect(f, FILTER_FLUSH)?;
        }

        self.power_up(delay)?;

        let cal = match saved {
            Some(c) => {
                for (i, v) in c.results.iter().enumerate() {
                    self.write(CAL_FIRST_RESULT + i as u8, *v)?;
                }
                *c
            }
            None => self.calibrate(delay)?,
        };

        for f in FILTERS {
            let value = INDIRECT_INIT.iter().find(|(a, _)| *a == f).map_or(0, |(_, v)| *v);
            self.write_indirect(f, value)?;
        }
        for (addr, wrote) in INDIRECT_INIT {
            let read = self.read_indirect(addr)?;
            if read != wrote {
                return Err(SlicError::IndirectVerify { addr, wrote, read });
            }
        }

        self.setup_ringer()?;
        // Loop closure debounce 12.5 ms (1.25 ms steps); the driver adds its own.
        self.write(LCR_DEBOUNCE, 0x0A)?;

        let c = self.config;
        self.write(PCM_MODE, c.pcm_mode())?;
        let [tx_lo, tx_hi] = c.tx_start.to_le_bytes();
        let [rx_lo, rx_hi] = c.rx_start.to_le_bytes();
        self.write(PCM_TX_START_LO, tx_lo)?;
        self.write(PCM_TX_START_HI, tx_hi)?;
        self.write(PCM_RX_START_LO, rx_lo)?;
        self.write(PCM_RX_START_HI, rx_hi)?;

        for r in [IRQ_STATUS1, IRQ_STATUS2, IRQ_STATUS3] {
            self.write(r, 0xFF)?;
        }
        self.write(IRQ_ENABLE1, 0)?;
        self.write(IRQ_ENABLE2, IRQ2_RTIP | IRQ2_LCIP | IRQ2_POWER_ALARMS)?;
        self.write(IRQ_ENABLE3, 0)?;

        self.write(LINEFEED, LF_FWD_ACTIVE)?;
        // A phone already off hook raises no transition interrupt.
        self.raw_off_hook = self.read(LOOP_STATUS)? & LCR != 0;
        self.raw_since = self.now;
        Ok(cal)
    }

    /// Reset values and identity (DAHDI `wctdm_proslic_insane`).
    fn identify(&mut self) -> Result<(), SlicError<E>> {
        let reg0 = self.read(SPI_MODE)?;
        let revision = reg0 & REV_MASK;
        if revision == 0 || revision == 0x0F {
            return Err(SlicError::NoChip { reg0 });
        }
        if revision < 2 {
            return Err(SlicError::TooOld { revision });
        }
        let reg1 = self.read(PCM_MODE)?;
        if reg1 & PCM_MODE_SI3215 == 0 {
            return Err(SlicError::NotSi3215 { reg0, reg1 });
        }
        for (reg, expected) in [(LOOPBACK, LOOPBACK_RESET), (LINEFEED, 0), (HYBRID, HYBRID_RESET)] {
            let read = self.read(reg)?;
            if read != expected {
                return Err(SlicError::Insane { reg, read, expected });
            }
        }
        Ok(())
    }

    /// DC-DC power-up and battery check (AN35 "Power-up sequence").
    fn power_up(&mut self, delay: &mut impl DelayNs) -> Result<(), SlicError<E>> {
        self.write(DCDC_PWM, 0xFF)?;
        self.write(PWR_DOWN1, 0)?;
        let mut vbat = 0;
        for i in 0..VBAT_POLLS {
            if i > 0 {
                delay.delay_ms(POLL_MS);
            }
            vbat = self.read(VBAT_SENSE)?;
            if vbat >= self.config.vbat_min {
                break;
            }
        }
        if vbat < self.config.vbat_min {
            // Leave the converter off rather than half up.
            self.write(PWR_DOWN1, PWR_DOWN1_DCDC_OFF)?;
            return Err(SlicError::BatteryLow { vbat });
        }
        self.write(LOOP_I_LIMIT, self.config.ilim())?;
        self.write(DCDC, DCDC_NORMAL)
    }

    /// Full calibration, then the DC-DC calibration; reads back the results.
    fn calibrate(&mut self, delay: &mut impl DelayNs) -> Result<Calibration, SlicError<E>> {
        self.write(CAL2, CAL2_ALL)?;
        self.write(CAL1, CAL1_START_ALL)?;
        let mut cal1 = 0xFF;
        for i in 0..CAL_POLLS {
            if i > 0 {
                delay.delay_ms(POLL_MS);
            }
            cal1 = self.read(CAL1)?;
            if cal1 == 0 {
                break;
            }
        }
        if cal1 != 0 {
            return Err(SlicError::CalibrationTimeout { cal1 });
        }
        self.write(DCDC, DCDC_NORMAL | DCDC_CAL)?;
        let mut done = false;
        for i in 0..DCDC_CAL_POLLS {
            if i > 0 {
                delay.delay_ms(POLL_MS);
            }
            if self.read(DCDC)? & DCDC_CAL == 0 {
                done = true;
                break;
            }
        }
        if !done {
            return Err(SlicError::DcDcCalibrationTimeout);
        }
        let peak = self.read(CAL_LAST_RESULT)?;
        if !(DC_PEAK_MIN..=DC_PEAK_MAX).contains(&peak) {
            self.write(CAL_LAST_RESULT, DC_PEAK_DEFAULT)?;
        }
        let mut results = [0u8; 10];
        for (i, r) in results.iter_mut().enumerate() {
            *r = self.read(CAL_FIRST_RESULT + i as u8)?;
        }
        Ok(Calibration { results })
    }

    /// Sine ringing at the configured frequency and voltage (section 2.4.2,
    /// Table 28) and the ring trip detector (Table 29/30).
    fn setup_ringer(&mut self) -> Result<(), SlicError<E>> {
        let f = self.config.ring_frequency;
        self.write(RING_OSC_CTL, 0)?;
        self.write_indirect(ir::RING_V_OFF, 0)?;
        self.write_indirect(ir::RING_OSC, f.rco())?;
        self.write_indirect(ir::RING_X, f.rngx(self.config.ring_vpk))?;
        self.write_indirect(ir::RING_Y, 0)?;
        let (nrtp, rtdi) = f.ring_trip();
        self.write_indirect(ir::RING_TRIP_FILTER, nrtp)?;
        self.write(RTP_DEBOUNCE, rtdi)?;
        self.write(VBATH, self.config.vbath())
    }

    // ---- Line control ----

    fn idle_lf(&self) -> u8 {
        match self.feed {
            LineFeed::Open => LF_OPEN,
            LineFeed::Forward => LF_FWD_ACTIVE,
            LineFeed::Reverse => LF_REV_ACTIVE,
            LineFeed::OnHookTransmission if self.reversed => LF_REV_OHT,
            LineFeed::OnHookTransmission => LF_FWD_OHT,
        }
    }

    /// The feed the line goes to when the phone answers: active, in the
    /// current polarity.
    fn answer_lf(&self) -> u8 {
        if self.reversed {
            LF_REV_ACTIVE
        } else {
            LF_FWD_ACTIVE
        }
    }

    /// Sets the DC feed. Polarity reversal is `Reverse` (and stays for on-hook
    /// transmission until `Forward`). While ringing the feed is remembered and
    /// applied when ringing stops (the chip cannot reverse while ringing).
    pub fn set_feed(&mut self, feed: LineFeed) -> Result<(), SlicError<E>> {
        match feed {
            LineFeed::Forward => self.reversed = false,
            LineFeed::Reverse => self.reversed = true,
            _ => {}
        }
        let was_open = self.feed == LineFeed::Open;
        self.feed = feed;
        if self.ringing.is_some() {
            return Ok(());
        }
        self.tip_open = false;
        let lf = self.idle_lf();
        self.write(LINEFEED, lf)?;
        if was_open && feed != LineFeed::Open {
            // Hook changes during the open interval raised no usable interrupt.
            let loop_closed = self.read(LOOP_STATUS)? & LCR != 0;
            if loop_closed != self.raw_off_hook {
                self.raw_off_hook = loop_closed;
                self.raw_since = self.now;
            }
        }
        Ok(())
    }

    /// Tip open: ground-start operation; a loop closure is then a ground key.
    pub fn set_tip_open(&mut self) -> Result<(), SlicError<E>> {
        self.stop_ringing()?;
        self.tip_open = true;
        self.write(LINEFEED, LF_TIP_OPEN)
    }

    /// Sets the loop current limit (20..=41 mA); out of range changes nothing.
    pub fn set_loop_current(&mut self, ma: u8) -> Result<(), ConfigError> {
        let mut c = self.config;
        c.loop_current_ma = ma;
        c.validate()?;
        self.config = c;
        let ilim = c.ilim();
        // A bus error here shows up on the next access as well; the limit is
        // stored so a re-init applies it.
        let _ = self.write(LOOP_I_LIMIT, ilim);
        Ok(())
    }

    /// Starts ringing with `cadence` from its first on period. Refused while
    /// off hook.
    pub fn start_ringing(&mut self, cadence: RingCadence) -> Result<(), PortError> {
        if self.hook == HookState::OffHook || self.raw_off_hook {
            return Err(PortError::InvalidState);
        }
        let p = cadence.periods();
        let by_chip = p.len() == 2 && p.iter().all(|&ms| ms <= RING_TIMER_MAX_MS);
        let r = (|| {
            if by_chip {
                let [on_lo, on_hi] = (p[0] * 8).to_le_bytes();
                let [off_lo, off_hi] = (p[1] * 8).to_le_bytes();
                self.write(RING_ON_LO, on_lo)?;
                self.write(RING_ON_HI, on_hi)?;
                self.write(RING_OFF_LO, off_lo)?;
                self.write(RING_OFF_HI, off_hi)?;
                self.write(RING_OSC_CTL, RING_RTAE | RING_RTIE)?;
            } else {
                self.write(RING_OSC_CTL, 0)?;
            }
            self.write(LINEFEED, LF_RINGING)
        })();
        r.map_err(|_| PortError::CardGone)?;
        self.tip_open = false;
        self.ringing = Some(Ringing { cadence, by_chip, period: 0, period_start: self.now });
        Ok(())
    }

    /// Stops ringing (if it runs) and returns to the idle feed.
    pub fn stop_ringing(&mut self) -> Result<(), SlicError<E>> {
        if self.ringing.take().is_some() {
            self.write(RING_OSC_CTL, 0)?;
            let lf = self.idle_lf();
            self.write(LINEFEED, lf)?;
        }
        Ok(())
    }

    /// Battery voltage magnitude in millivolts (reg 82, 376 mV per step).
    pub fn battery_mv(&mut self) -> Result<u32, SlicError<E>> {
        Ok(u32::from(self.read(VBAT_SENSE)?) * 376)
    }

    pub fn is_ringing(&self) -> bool {
        self.ringing.is_some()
    }

    // ---- Supervision ----

    fn push(&mut self, e: SlicEvent) {
        if self.events.push_back(e).is_err() {
            self.dropped_events = self.dropped_events.saturating_add(1);
        }
    }

    /// Next event of any kind.
    pub fn poll_slic_event(&mut self) -> Option<SlicEvent> {
        self.events.pop_front()
    }

    /// True while the driver needs `tick` calls without an interrupt: a
    /// debounce, a flash/hang-up decision or a driver-run cadence is pending.
    pub fn needs_tick(&self) -> bool {
        let debouncing = self.raw_off_hook != (self.hook == HookState::OffHook) || self.break_start.is_some();
        debouncing || self.ringing.is_some_and(|r| !r.by_chip)
    }

    /// Advances the driver to `now_ms` (any monotonic millisecond count; it may
    /// wrap). Services the interrupt line if asserted, then runs debounce and
    /// cadence timers.
    pub fn tick(&mut self, now_ms: u32) -> Result<(), SlicError<E>> {
        self.now = now_ms;
        for _ in 0..IRQ_PASSES {
            if !self.int.is_low().map_err(|_| SlicError::Pin)? {
                break;
            }
            self.service_interrupt()?;
        }
        self.debounce();
        self.run_cadence()
    }

    /// Reads and clears the interrupt status (write 1 to clear), then acts on it.
    fn service_interrupt(&mut self) -> Result<(), SlicError<E>> {
        let s1 = self.read(IRQ_STATUS1)?;
        if s1 != 0 {
            self.write(IRQ_STATUS1, s1)?;
        }
        let s2 = self.read(IRQ_STATUS2)?;
        if s2 != 0 {
            self.write(IRQ_STATUS2, s2)?;
        }
        let s3 = self.read(IRQ_STATUS3)?;
        if s3 != 0 {
            self.write(IRQ_STATUS3, s3)?;
        }
        let status = self.read(LOOP_STATUS)?;
        let loop_closed = status & LCR != 0;

        if s2 & IRQ2_POWER_ALARMS != 0 {
            // The chip has opened the line (reg 67 AOPN); so does our view.
            self.ringing = None;
            self.feed = LineFeed::Open;
            self.push(SlicEvent::PowerAlarm { alarms: s2 & IRQ2_POWER_ALARMS });
        }

        if self.ringing.is_some() {
            // Ringing voltage disturbs the loop closure detector: while the
            // ring is on only the ring trip detector counts. In a silent period
            // of the cadence (the chip is in on-hook transmission) an answer
            // is a plain loop closure.
            let mut answered = s2 & IRQ2_RTIP != 0 || status & RTP != 0;
            if !answered && s2 & IRQ2_LCIP != 0 && loop_closed {
                answered = (self.read(LINEFEED)? >> 4) & LF_MASK != LF_RINGING;
            }
            if answered {
                self.ringing = None;
                let lf = self.answer_lf();
                self.feed = if self.reversed { LineFeed::Reverse } else { LineFeed::Forward };
                self.write(RING_OSC_CTL, 0)?;
                self.write(LINEFEED, lf)?;
                self.raw_off_hook = true;
                self.raw_since = self.now;
                self.break_start = None;
                if self.hook == HookState::OnHook {
                    self.hook = HookState::OffHook;
                    self.push(SlicEvent::RingTrip);
                }
            }
            return Ok(());
        }

        if self.tip_open {
            if s2 & IRQ2_LCIP != 0 && loop_closed {
                self.push(SlicEvent::GroundKey);
            }
            return Ok(());
        }

        if self.feed == LineFeed::Open {
            // No feed, no loop current: the detector says nothing about the
            // phone. `set_feed` re-reads the loop when the feed returns.
            return Ok(());
        }

        if loop_closed != self.raw_off_hook {
            self.raw_off_hook = loop_closed;
            self.raw_since = self.now;
        }
        Ok(())
    }

    /// Hook debounce and flash discrimination.
    fn debounce(&mut self) {
        let now = self.now;
        let stable = now.wrapping_sub(self.raw_since) >= u32::from(self.config.hook_debounce_ms);
        if stable {
            match (self.hook, self.raw_off_hook) {
                (HookState::OnHook, true) => {
                    self.hook = HookState::OffHook;
                    self.push(SlicEvent::OffHook);
                }
                (HookState::OffHook, false) if self.break_start.is_none() => {
                    self.break_start = Some(self.raw_since);
                }
                (HookState::OffHook, true) => {
                    if let Some(start) = self.break_start.take() {
                        let len = self.raw_since.wrapping_sub(start);
                        if len >= u32::from(self.config.flash_min_ms) {
                            self.push(SlicEvent::HookFlash);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(start) = self.break_start {
            if !self.raw_off_hook && now.wrapping_sub(start) >= u32::from(self.config.flash_max_ms) {
                self.break_start = None;
                self.hook = HookState::OnHook;
                self.push(SlicEvent::OnHook);
            }
        }
    }

    /// Driver-run cadence: ringing and on-hook transmission in turn.
    fn run_cadence(&mut self) -> Result<(), SlicError<E>> {
        let Some(mut r) = self.ringing else { return Ok(()) };
        if r.by_chip {
            return Ok(());
        }
        let periods = r.cadence.periods();
        let was_on = r.period % 2 == 0;
        // RingCadence guarantees non-zero periods; the bound keeps a huge time
        // jump from spinning.
        for _ in 0..64 {
            let len = u32::from(periods[r.period]);
            if self.now.wrapping_sub(r.period_start) < len {
                break;
            }
            r.period_start = r.period_start.wrapping_add(len);
            r.period = (r.period + 1) % periods.len();
        }
        if self.now.wrapping_sub(r.period_start) >= u32::from(periods[r.period]) {
            // More than 64 periods behind: restart the pattern from now.
            r.period = 0;
            r.period_start = self.now;
        }
        self.ringing = Some(r);
        let on = r.period % 2 == 0;
        if on != was_on {
            let lf = if on {
                LF_RINGING
            } else if self.reversed {
                LF_REV_OHT
            } else {
                LF_FWD_OHT
            };
            self.write(LINEFEED, lf)?;
        }
        Ok(())
    }
}

impl<SPI, RST, INT, E> FxsPort for Si3215<SPI, RST, INT>
where
    SPI: SpiDevice<Error = E>,
    RST: OutputPin,
    INT: InputPin,
{
    fn hook(&self) -> HookState {
        self.hook
    }

    fn poll_event(&mut self) -> Option<FxsEvent> {
        while let Some(e) = self.events.pop_front() {
            match e {
                SlicEvent::OffHook | SlicEvent::RingTrip => return Some(FxsEvent::OffHook),
                SlicEvent::OnHook => return Some(FxsEvent::OnHook),
                SlicEvent::HookFlash => return Some(FxsEvent::HookFlash),
                SlicEvent::GroundKey | SlicEvent::PowerAlarm { .. } => {}
            }
        }
        None
    }

    /// Starting while off hook is `InvalidState`; stopping is always accepted.
    /// A bus error is `CardGone`.
    fn set_ringing(&mut self, cadence: Option<RingCadence>) -> Result<(), PortError> {
        match cadence {
            Some(c) => self.start_ringing(c),
            None => self.stop_ringing().map_err(|_| PortError::CardGone),
        }
    }

    fn set_line_feed(&mut self, feed: LineFeed) -> Result<(), PortError> {
        self.set_feed(feed).map_err(|_| PortError::CardGone)
    }
}
