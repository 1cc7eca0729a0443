//! Si3050 register map (system side; line-side registers are reached through it).
//!
//! Transcribed from the public datasheet "Si3050 + Si3011/18/19 Programmable
//! Voice DAA Solutions", Rev. 1.5 (10/11), section 7 "Control Registers"
//! (Table "Register Summary" and the per-register tables that follow it).
//! Register numbers below are decimal, as in the datasheet. Bit values that
//! were cross-checked against the register programming of DAHDI's GPL
//! `wctdm.c` (which drives the Si3050 + Si3019 on TDM400P FXO modules) are
//! marked "(wctdm)"; nothing was copied from it.

/// SPI control byte for a register write (§5.23 "SPI Control Interface":
/// bit 5 set = register access, bit 6 clear = write; channel ID bits 0 for a
/// device that is not daisy-chained). (wctdm: 0x20)
pub const SPI_WRITE: u8 = 0x20;
/// SPI control byte for a register read: as [`SPI_WRITE`] with bit 6 (R/W) set.
/// (wctdm: 0x60)
pub const SPI_READ: u8 = 0x60;

/// Register 1, Control 1.
pub const CTRL1: u8 = 1;
/// Register 1 bit 7 SR: soft reset; self-clearing. (wctdm writes 0x80.)
pub const CTRL1_SR: u8 = 0x80;

/// Register 2, Control 2. Reset value 0x03 (HBE | RXE); read right after
/// reset it is the DAA's identity check. (wctdm `voicedaa_insane`)
pub const CTRL2: u8 = 2;
pub const CTRL2_RESET_VALUE: u8 = 0x03;
/// Register 2 bit 7 INTE: drive AOUT/INT as the interrupt output.
pub const CTRL2_INTE: u8 = 0x80;
/// Register 2 bit 6 INTP: interrupt polarity (0 = active low).
pub const CTRL2_INTP: u8 = 0x40;
/// Register 2 bit 1 HBE: hybrid enable; bit 0 RXE: receive enable (reset = 1).
pub const CTRL2_HBE: u8 = 0x02;
pub const CTRL2_RXE: u8 = 0x01;

/// Register 3, Interrupt Mask; register 4, Interrupt Source. Same bit layout
/// (also that of the sibling Si306x DAA's registers 3/4): a source bit sets, and
/// raises INT when its mask bit and INTE are set; it "must be written to 0 to be
/// cleared" (writing 1 leaves it as it is). RDTI fires at the start of a ring
/// (and at its end too with register 2 RDI set, which this driver leaves clear);
/// powering the line side up can latch it, so the driver clears register 4 after
/// the link is up.
pub const INT_MASK: u8 = 3;
pub const INT_SOURCE: u8 = 4;
/// Bit 7 RDTI: ring detect (validated ring when RNGV is set).
pub const INT_RDT: u8 = 0x80;
/// Bit 6 ROVI: receive overload.
pub const INT_ROV: u8 = 0x40;
/// Bit 5 FDTI: set when the isolation link does not have frame lock.
pub const INT_FDT: u8 = 0x20;
/// Bit 4 BTDI: billing tone detect.
pub const INT_BTD: u8 = 0x10;
/// Bit 3 DODI: drop-out detect: off hook the line side is powered from the
/// loop; DODI sets when that line-derived supply collapses, e.g. when the line
/// is disconnected (open loop / CPC).
pub const INT_DOD: u8 = 0x08;
/// Bit 2 LCSOI: loop current sense overload.
pub const INT_LCSO: u8 = 0x04;
/// Bit 1 TGDI: tip ground detect (ground start).
pub const INT_TGD: u8 = 0x02;
/// Bit 0 POLI: polarity reversal: set each time bit 7 (the sign) of LVS
/// (register 29) changes (§5.12.1 "Line Voltage Measurement").
pub const INT_POL: u8 = 0x01;

/// Register 5, DAA Control 1.
pub const DAA_CTRL1: u8 = 5;
/// Bit 6 RDTN / bit 5 RDTP: ring detect, negative / positive half (read only).
pub const DAA_CTRL1_RDTN: u8 = 0x40;
pub const DAA_CTRL1_RDTP: u8 = 0x20;
/// Bit 3 ONHM: on-hook line monitor (receive path on while on hook: caller ID).
pub const DAA_CTRL1_ONHM: u8 = 0x08;
/// Bit 2 RDT: ring detect (read only; with RNGV it follows the validated ring
/// and clears after the ring timeout RTO).
pub const DAA_CTRL1_RDT: u8 = 0x04;
/// Bit 0 OH: off hook (closes the loop).
pub const DAA_CTRL1_OH: u8 = 0x01;

/// Register 6, DAA Control 2. Reset value 0x10: line side powered down.
pub const DAA_CTRL2: u8 = 6;
/// Bit 4 PDL: power down the line-side device (clear it to power the link up).
pub const DAA_CTRL2_PDL: u8 = 0x10;
/// Bit 3 PDN: power down the system side.
pub const DAA_CTRL2_PDN: u8 = 0x08;

/// Register 11, System-Side and Line-Side Device Revision.
/// Bits 7:4 LSID: line-side ID (reads 0 until the isolation link is up,
/// which wctdm uses as its link check); bits 3:0 REVA: system-side revision.
pub const REVISION: u8 = 11;
/// LSID value of an Si3018 line side (no line voltage monitor).
pub const LSID_SI3018: u8 = 0x1;
/// LSID value of an Si3019 line side.
pub const LSID_SI3019: u8 = 0x3;

/// Register 12, Line-Side Device Status. Bit 6 FDT: frame detect (isolation
/// link locked); bits 4:0 LCS: coarse loop current (~3.3 mA per step, §5.12.2).
pub const LS_STATUS: u8 = 12;
pub const LS_STATUS_FDT: u8 = 0x40;

/// Register 13, Line-Side Device Revision: bits 5:2 REVB. (wctdm)
pub const LS_REVISION: u8 = 13;

/// Register 16, International Control 1: OHS (bit 6), IIRE (bit 4), RZ (bit 1),
/// RT (bit 0). (wctdm)
pub const INTL_CTRL1: u8 = 16;
pub const INTL_CTRL1_OHS: u8 = 0x40;
pub const INTL_CTRL1_RZ: u8 = 0x02;
pub const INTL_CTRL1_RT: u8 = 0x01;

/// Register 18, International Control 3: bit 1 RFWE, ring detector full-wave
/// rectifier mode. (wctdm writes 2 for full wave)
pub const INTL_CTRL3: u8 = 18;
pub const INTL_CTRL3_RFWE: u8 = 0x02;

/// Registers 22-24, Ring Validation Control 1-3 (§5.17 "Ring Validation").
/// Register 24 bit 7 RNGV enables ring validation; bits 5:0 RAS (ring
/// assertion time) keep their reset value (0x19 with RNGV clear, wctdm).
pub const RING_VAL1: u8 = 22;
pub const RING_VAL2: u8 = 23;
pub const RING_VAL3: u8 = 24;
pub const RING_VAL3_RNGV: u8 = 0x80;

/// Register 26, DC Termination Control: DCV[1:0] bits 7:6 (TIP/RING voltage
/// adjust), MINI[1:0] bits 5:4 (minimum operational loop current), ILIM bit 1
/// (TBR21 60 mA current limit), DCR bit 0. (wctdm)
pub const DC_TERM: u8 = 26;
pub const DC_TERM_ILIM: u8 = 0x02;

/// Register 28, Loop Current Status LCS2[7:0] (Si3019): ~1.1 mA per LSB.
pub const LOOP_CURRENT: u8 = 28;
/// Register 29, Line Voltage Status LVS[7:0]: signed two's complement, 1 V per
/// LSB, bit 7 = polarity; forced to 0 at 3 V or less unless LVFD (§5.12.1).
pub const LINE_VOLTAGE: u8 = 29;

/// Register 30, AC Termination Control: ACIM[3:0] bits 3:0. (wctdm)
pub const AC_TERM: u8 = 30;

/// Register 31, DAA Control 4 (named DAA Control 3 on the Si3056): FULL bit 7,
/// FOH[1:0] bits 6:5 (fast off-hook counter: 01 = 128 ms, the default),
/// OHS2 bit 3, FILT bit 1 (200 Hz receive high-pass), LVFD bit 0.
pub const DAA_CTRL4: u8 = 31;
pub const DAA_CTRL4_FOH_128MS: u8 = 0x20;
pub const DAA_CTRL4_OHS2: u8 = 0x08;
pub const DAA_CTRL4_FILT: u8 = 0x02;

/// Register 33, PCM/SPI Mode Select: PCME bit 5 (PCM enable), PCMF[1:0]
/// bits 4:3 (00 A-law, 01 µ-law, 11 16-bit linear). (wctdm: 0x28 µ-law,
/// 0x20 A-law)
pub const PCM_MODE: u8 = 33;
pub const PCM_MODE_PCME: u8 = 0x20;
pub const PCM_MODE_PCMF_SHIFT: u8 = 3;

/// Registers 34/35 PCM transmit start count low/high (bits 1:0), 36/37
/// receive start count low/high: PCLK cycles from FSYNC to the slot's first
/// bit (10 bits).
pub const PCM_TX_LO: u8 = 34;
pub const PCM_TX_HI: u8 = 35;
pub const PCM_RX_LO: u8 = 36;
pub const PCM_RX_HI: u8 = 37;
pub const PCM_START_MAX: u16 = 0x3FF;

/// Registers 38/39 TX/RX Gain Control 2 (whole dB: bit 4 = attenuate, bits 3:0
/// = 0..12 dB gain or 0..15 dB attenuation) and 40/41 TX/RX Gain Control 3
/// (tenths of a dB, same sign bit). (wctdm `set_hwgain`)
pub const TX_GAIN2: u8 = 38;
pub const RX_GAIN2: u8 = 39;
pub const TX_GAIN3: u8 = 40;
pub const RX_GAIN3: u8 = 41;
pub const GAIN_ATTENUATE: u8 = 0x10;

/// Number of registers the model keeps (0..=63).
pub const REG_COUNT: usize = 64;
