//! Si3215 register map: the direct registers 0-108 and the Si3215 numbering of
//! the indirect registers the driver uses.
//!
//! Sources (public): Silicon Labs "Si3210/Si3211 ProSLIC" and "Si3215/Si3216"
//! data sheets, section "Register Descriptions" (direct registers) and
//! "Indirect Register Descriptions"; the ringing equations of section 2.4.2
//! ("Sinusoidal Ringing", Table 28/30 "Registers for Ringing Generation"); ring
//! trip Table 29/30; AN35/AN47 for the power-up and calibration order. Where a
//! bit position is taken from the open DAHDI `wctdm` driver (which programs the
//! same part) rather than read off a data sheet table, the comment says so.
//!
//! To check on the first real board (the data sheet text available while this
//! was written did not show these bit tables legibly): the bit positions in
//! `IRQ_STATUS2` (RTIP bit 0, LCIP bit 1, power alarms 7:2, as remembered from
//! the data sheet's register 19), the `RING_OSC_CTL` bits (taken from the order
//! Table 28 lists them in: TSWS, RVO, RTAE, RTIE, ROE as D4..D0; DAHDI's neon
//! set-up 0x19 = TSWS | RVO | ROE agrees), and write-1-to-clear on the
//! interrupt status (DAHDI clears them by writing 0xFF).
//!
//! The Si3215 has no DTMF decoder and fewer indirect registers than the Si3210,
//! so its indirect addresses differ: `ir::*` are Si3215 addresses (DAHDI's
//! `translate_3215` table maps the Si3210 numbers onto these).

// ---- Direct registers (data sheet "Register Summary") ----

/// SPI mode select / part number / revision. Bits 5:4 part, 3:0 revision.
pub const SPI_MODE: u8 = 0;
/// PCM mode select: bit 5 PCME (PCM enable), bits 4:3 PCMF (format).
pub const PCM_MODE: u8 = 1;
/// PCM transmit start count, low byte (PCLK cycles after FSYNC).
pub const PCM_TX_START_LO: u8 = 2;
/// PCM transmit start count, bits 9:8 in bits 1:0.
pub const PCM_TX_START_HI: u8 = 3;
/// PCM receive start count, low byte.
pub const PCM_RX_START_LO: u8 = 4;
/// PCM receive start count, bits 9:8 in bits 1:0.
pub const PCM_RX_START_HI: u8 = 5;
/// Loopback control; reads 0x02 after reset (the identity check relies on it).
pub const LOOPBACK: u8 = 8;
/// Hybrid control; reads 0x33 after reset.
pub const HYBRID: u8 = 11;
/// Power-down control 1. 0x10 = DC-DC converter powered down.
pub const PWR_DOWN1: u8 = 14;
/// Interrupt status 1 (oscillator and ring timers). Write 1s to clear.
pub const IRQ_STATUS1: u8 = 18;
/// Interrupt status 2 (power alarms Q1-Q6, loop closure, ring trip). Write 1s to clear.
pub const IRQ_STATUS2: u8 = 19;
/// Interrupt status 3 (DTMF, indirect access, common-mode balance). Write 1s to clear.
pub const IRQ_STATUS3: u8 = 20;
/// Interrupt enables matching status 1-3.
pub const IRQ_ENABLE1: u8 = 21;
pub const IRQ_ENABLE2: u8 = 22;
pub const IRQ_ENABLE3: u8 = 23;
/// Indirect data access, low byte.
pub const IDA_LO: u8 = 28;
/// Indirect data access, high byte.
pub const IDA_HI: u8 = 29;
/// Indirect address access: writing it starts the indirect read or write.
pub const IAA: u8 = 30;
/// Indirect access status: bit 0 set while an indirect access is pending.
pub const IAS: u8 = 31;
/// Ringing oscillator control (Table 28: TSWS, RVO, RTAE, RTIE, ROE).
pub const RING_OSC_CTL: u8 = 34;
/// Ringing active timer RAT, 125 us units (8 kHz samples), low/high byte.
pub const RING_ON_LO: u8 = 48;
pub const RING_ON_HI: u8 = 49;
/// Ringing inactive timer RIT, 125 us units, low/high byte.
pub const RING_OFF_LO: u8 = 50;
pub const RING_OFF_HI: u8 = 51;
/// Linefeed control: bits 2:0 LF (requested state), bits 6:4 LFS (actual state, read only).
pub const LINEFEED: u8 = 64;
/// Battery feed control (bit 1 BATSL; DAHDI writes 1 to keep Q7 off).
pub const BAT_FEED: u8 = 66;
/// Automatic/manual control (auto power-alarm open, auto loop-closure and ring-trip handling).
pub const AUTO: u8 = 67;
/// Loop closure / ring trip detect status: bit 0 LCR, bit 1 RTP.
pub const LOOP_STATUS: u8 = 68;
/// Loop closure debounce interval, 1.25 ms units.
pub const LCR_DEBOUNCE: u8 = 69;
/// Ring trip debounce interval RTDI, 1.25 ms units.
pub const RTP_DEBOUNCE: u8 = 70;
/// Loop current limit ILIM: 20 mA + 3 mA per step, 0..=7.
pub const LOOP_I_LIMIT: u8 = 71;
/// On-hook line voltage VOC, 1.5 V per step.
pub const VOC: u8 = 72;
/// Common-mode voltage VCM, 1.5 V per step.
pub const VCM: u8 = 73;
/// High battery voltage VBATH (ringing), 1.5 V per step, 6 bits.
pub const VBATH: u8 = 74;
/// Battery voltage sense (VBAT), 376 mV per step.
pub const VBAT_SENSE: u8 = 82;
/// DC-DC converter PWM period.
pub const DCDC_PWM: u8 = 92;
/// DC-DC converter switching delay; bit 7 DCCAL starts the DC-DC calibration.
pub const DCDC: u8 = 93;
/// Calibration control/status 1: bit 6 CAL starts, reads 0 when all done.
pub const CAL1: u8 = 96;
/// Calibration control/status 2: which calibrations to run.
pub const CAL2: u8 = 97;
/// First and last calibration result registers (98 RING gain .. 107 DC peak current).
pub const CAL_FIRST_RESULT: u8 = 98;
pub const CAL_LAST_RESULT: u8 = 107;
/// Enhancement enable (revision C and later).
pub const ENHANCE: u8 = 108;

/// Read flag in the address byte (data sheet "Serial Peripheral Interface").
pub const READ: u8 = 0x80;

// ---- Field values ----

/// `SPI_MODE` revision field; revisions 0 and 0xF mean nothing answers, below 2 is too old.
pub const REV_MASK: u8 = 0x0F;
/// `PCM_MODE` bit 7 reads 1 on an Si3215 and 0 on an Si3210 (DAHDI `FLAG_3215`).
pub const PCM_MODE_SI3215: u8 = 0x80;
pub const PCME: u8 = 0x20;
pub const PCMF_ALAW: u8 = 0x00;
pub const PCMF_ULAW: u8 = 0x08;
pub const PCMF_LINEAR16: u8 = 0x18;
/// Identity values after reset.
pub const LOOPBACK_RESET: u8 = 0x02;
pub const HYBRID_RESET: u8 = 0x33;

pub const PWR_DOWN1_DCDC_OFF: u8 = 0x10;

/// `IRQ_STATUS2` bits.
pub const IRQ2_RTIP: u8 = 0x01;
pub const IRQ2_LCIP: u8 = 0x02;
/// Power alarms of the line-feed transistors Q1..Q6 (bits 7:2).
pub const IRQ2_POWER_ALARMS: u8 = 0xFC;

/// `RING_OSC_CTL` bits (Table 28 order, D4..D0: TSWS, RVO, RTAE, RTIE, ROE).
pub const RING_RTAE: u8 = 0x04;
pub const RING_RTIE: u8 = 0x02;

/// `LOOP_STATUS` bits.
pub const LCR: u8 = 0x01;
pub const RTP: u8 = 0x02;

/// Linefeed states (`LINEFEED` bits 2:0; data sheet "Linefeed Control", DAHDI `SLIC_LF_*`).
pub const LF_OPEN: u8 = 0;
pub const LF_FWD_ACTIVE: u8 = 1;
pub const LF_FWD_OHT: u8 = 2;
pub const LF_TIP_OPEN: u8 = 3;
pub const LF_RINGING: u8 = 4;
pub const LF_REV_ACTIVE: u8 = 5;
pub const LF_REV_OHT: u8 = 6;
pub const LF_MASK: u8 = 0x07;

/// `CAL1`: start all calibrations without the speed-up (0x5F); `CAL2`: all sub-calibrations (0x1F).
pub const CAL1_START_ALL: u8 = 0x5F;
pub const CAL2_ALL: u8 = 0x1F;
/// `DCDC`: normal switching delay, and with DCCAL (bit 7) to calibrate.
pub const DCDC_NORMAL: u8 = 0x19;
pub const DCDC_CAL: u8 = 0x80;
/// Plausible DC peak current calibration result range (`CAL_LAST_RESULT`) and the value
/// to use when the calibration returns something outside it (AN35; DAHDI does the same).
pub const DC_PEAK_MIN: u8 = 0x02;
pub const DC_PEAK_MAX: u8 = 0x0D;
pub const DC_PEAK_DEFAULT: u8 = 0x08;

/// VBAT needed after power-up: 0xC0 * 376 mV = about -72 V (AN35 power-up check).
pub const VBAT_MIN_DEFAULT: u8 = 0xC0;

/// Indirect registers, Si3215 numbering.
pub mod ir {
    pub const OSC1_COEF: u8 = 0;
    pub const OSC1X: u8 = 1;
    pub const OSC1Y: u8 = 2;
    pub const OSC2_COEF: u8 = 3;
    pub const OSC2X: u8 = 4;
    pub const OSC2Y: u8 = 5;
    /// Ringing DC offset ROFF.
    pub const RING_V_OFF: u8 = 6;
    /// Ringing frequency RCO.
    pub const RING_OSC: u8 = 7;
    /// Ringing amplitude RNGX.
    pub const RING_X: u8 = 8;
    /// Ringing initial phase RNGY.
    pub const RING_Y: u8 = 9;
    pub const RX_GAIN: u8 = 13;
    pub const TX_GAIN: u8 = 14;
    pub const LOOP_CLOSE_THRESH: u8 = 15;
    /// Ring trip threshold RPTP.
    pub const RING_TRIP_THRESH: u8 = 16;
    pub const COMMON_MIN_THRESH: u8 = 17;
    pub const COMMON_MAX_THRESH: u8 = 18;
    pub const PWR_ALARM_Q1Q2: u8 = 19;
    pub const PWR_ALARM_Q3Q4: u8 = 20;
    pub const PWR_ALARM_Q5Q6: u8 = 21;
    pub const LOOP_CLOSURE_FILTER: u8 = 22;
    /// Ring trip filter NRTP.
    pub const RING_TRIP_FILTER: u8 = 23;
    pub const THERM_LP_POLE_Q1Q2: u8 = 24;
    pub const THERM_LP_POLE_Q3Q4: u8 = 25;
    pub const THERM_LP_POLE_Q5Q6: u8 = 26;
    pub const CM_BIAS_RINGING: u8 = 27;
    pub const DCDC_MIN_V: u8 = 64;
    pub const LOOP_CLOSE_THRESH_LOW: u8 = 66;
}

/// Initial indirect register values (data sheet reset/recommended values, as also
/// used by DAHDI). The ringing entries are rewritten by the ring set-up.
pub const INDIRECT_INIT: [(u8, u16); 27] = [
    (ir::OSC1_COEF, 0x7B30),
    (ir::OSC1X, 0x0063),
    (ir::OSC1Y, 0x0000),
    (ir::OSC2_COEF, 0x7870),
    (ir::OSC2X, 0x007D),
    (ir::OSC2Y, 0x0000),
    (ir::RING_V_OFF, 0x0000),
    (ir::RING_OSC, 0x7EF0),
    (ir::RING_X, 0x0160),
    (ir::RING_Y, 0x0000),
    // 0x4000 is unity gain.
    (ir::RX_GAIN, 0x4000),
    (ir::TX_GAIN, 0x4000),
    (ir::LOOP_CLOSE_THRESH, 0x1000),
    (ir::RING_TRIP_THRESH, 0x3600),
    (ir::COMMON_MIN_THRESH, 0x1000),
    (ir::COMMON_MAX_THRESH, 0x0200),
    (ir::PWR_ALARM_Q1Q2, 0x07C0),
    (ir::PWR_ALARM_Q3Q4, 0x2600),
    (ir::PWR_ALARM_Q5Q6, 0x1B80),
    (ir::LOOP_CLOSURE_FILTER, 0x8000),
    (ir::RING_TRIP_FILTER, 0x0320),
    (ir::THERM_LP_POLE_Q1Q2, 0x008C),
    (ir::THERM_LP_POLE_Q3Q4, 0x0100),
    (ir::THERM_LP_POLE_Q5Q6, 0x0010),
    (ir::CM_BIAS_RINGING, 0x0C00),
    (ir::DCDC_MIN_V, 0x0C00),
    (ir::LOOP_CLOSE_THRESH_LOW, 0x1000),
];

/// Indirect registers whose filters are held clear (0x8000) during power-up and
/// calibration (DAHDI "flush ProSLIC digital filters"), restored from `INDIRECT_INIT` after.
pub const FILTERS: [u8; 5] = [
    ir::LOOP_CLOSURE_FILTER,
    ir::RING_TRIP_FILTER,
    ir::THERM_LP_POLE_Q1Q2,
    ir::THERM_LP_POLE_Q3Q4,
    ir::THERM_LP_POLE_Q5Q6,
];
pub const FILTER_FLUSH: u16 = 0x8000;
