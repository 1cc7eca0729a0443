//! XHFC-1SU/2SU/2S4U/4SU register map: the registers this driver uses.
//!
//! Names and addresses follow Cologne Chip's XHFC data sheet, chapter
//! "Register description" (register summary table; the same names as the
//! vendor's register header). Section numbers below are those of the XHFC-4SU
//! data sheet's chapter layout (2 bus interface, 3 FIFOs / HFC-channels, 4
//! S/T-Up interface, 5 PCM interface, 6 clock, 7 interrupts); they must be
//! checked against the data sheet revision in use. Several addresses are
//! shared by a write-only and a read-only register (e.g. 0x16 `R_SU_SEL` /
//! `R_CHIP_ID`); "A_" registers act on the FIFO selected by `R_FIFO`, the S/T
//! interface selected by `R_SU_SEL` or the slot selected by `R_SLOT`.

// ---- SPI framing (§2, SPI interface) ----
/// Control byte: the next byte is a register address.
pub const SPI_ADDR: u8 = 0x40;
/// Control byte: the next byte is data written to the addressed register.
pub const SPI_WR: u8 = 0x00;
/// Control byte: the next byte clocks out the addressed register.
pub const SPI_RD: u8 = 0x80;

// ---- chip control (§2, §6) ----
/// Write: soft reset and reset bits.
pub const R_CIRM: u8 = 0x00;
pub const M_SRES: u8 = 0x08;
/// Read: chip identification.
pub const R_CHIP_ID: u8 = 0x16;
pub const CHIP_ID_1SU: u8 = 0x60;
pub const CHIP_ID_2SU: u8 = 0x61;
pub const CHIP_ID_2S4U: u8 = 0x62;
pub const CHIP_ID_4SU: u8 = 0x63;
/// Read: chip revision (low nibble).
pub const R_CHIP_RV: u8 = 0x1F;
/// Read: busy (FIFO change / reset in progress) and interrupt summary.
pub const R_STATUS: u8 = 0x1C;
pub const M_BUSY: u8 = 0x01;
pub const M_MISC_IRQSTA: u8 = 0x40;
pub const M_FR_IRQSTA: u8 = 0x80;

// ---- FIFOs (§3) ----
/// FIFO memory layout; 0: 16 FIFOs of 64 bytes each direction.
pub const R_FIFO_MD: u8 = 0x0D;
/// FIFO size for `R_FIFO_MD` = 0 (Z counters wrap at this).
pub const FIFO_SIZE: u8 = 64;
/// Write: select FIFO: bit 0 direction (0 TX, 1 RX), bits 1-4 number.
pub const R_FIFO: u8 = 0x0F;
pub const FIFO_TX: u8 = 0;
pub const FIFO_RX: u8 = 1;
/// Read: Z1 / Z2 byte counters and F1 / F2 frame counters of the selected FIFO.
pub const A_Z1: u8 = 0x04;
pub const A_Z2: u8 = 0x06;
pub const A_F1: u8 = 0x0C;
pub const A_F2: u8 = 0x0D;
/// F counters are compared modulo 16 (a 64-byte FIFO never holds more frames).
pub const F_MASK: u8 = 0x0F;
/// Write: increment F (frame end) / reset the FIFO / reset its error flag.
pub const A_INC_RES_FIFO: u8 = 0x0E;
pub const M_INC_F: u8 = 0x01;
pub const M_RES_FIFO: u8 = 0x02;
pub const M_RES_LOST: u8 = 0x04;
pub const M_RES_FIFO_ERR: u8 = 0x08;
/// Read: FIFO status; FIFO_ERR is an RX overflow (or TX underrun).
pub const A_FIFO_STA: u8 = 0x0E;
pub const M_FIFO_ERR: u8 = 0x01;
/// Read/write FIFO data, one byte per access, Z incremented.
pub const A_FIFO_DATA: u8 = 0x80;
/// HDLC / transparent mode, interrupt condition and data flow of the FIFO.
pub const A_CON_HDLC: u8 = 0xFA;
/// Inter-frame fill 0xFF (else flags 0x7E).
pub const M_IFF: u8 = 0x01;
/// Transparent mode (B-channels); 0 = HDLC.
pub const M_HDLC_TRP: u8 = 0x02;
/// FIFO interrupt condition 7 (bits 2-4): at frame end (HDLC).
pub const V_FIFO_IRQ_FRAME: u8 = 0x1C;
/// Data flow (bits 5-7) 0: FIFO <-> S/T; 6: S/T <-> PCM, FIFO not used.
pub const V_DATA_FLOW_FIFO_ST: u8 = 0x00;
pub const V_DATA_FLOW_ST_PCM: u8 = 0xC0;
/// Subchannel bit count (D channel: 2 bits per S/T frame).
pub const A_SUBCH_CFG: u8 = 0xFB;
pub const SUBCH_D: u8 = 0x02;
/// Per-FIFO control: bit 0 enables its interrupt.
pub const A_FIFO_CTRL: u8 = 0xFF;
pub const M_FIFO_IRQMSK: u8 = 0x01;
/// Read (clears): FIFO interrupts of block n = FIFOs 4n..4n+3 = S/T port n.
pub const R_FIFO_BL0_IRQ: u8 = 0x20;
/// In a block: the D-channel (FIFO 4n+2) TX / RX bits.
pub const M_D_TX_IRQ: u8 = 0x10;
pub const M_D_RX_IRQ: u8 = 0x20;

// ---- S/T interface (§4) ----
/// Write: select the S/T interface the A_SU_* registers act on.
pub const R_SU_SEL: u8 = 0x16;
/// Write: state machine load / activation; read: current state.
pub const A_SU_WR_STA: u8 = 0x30;
pub const A_SU_RD_STA: u8 = 0x30;
pub const M_SU_STA: u8 = 0x0F;
pub const M_SU_LD_STA: u8 = 0x10;
/// SU_ACT (bits 5-6): 3 = start activation, 2 = start deactivation.
pub const V_SU_ACT_ACTIVATE: u8 = 0x60;
pub const V_SU_ACT_DEACTIVATE: u8 = 0x40;
/// B-channel transmit enable, mode (1 = NT).
pub const A_SU_CTRL0: u8 = 0x31;
pub const M_B1_TX_EN: u8 = 0x01;
pub const M_B2_TX_EN: u8 = 0x02;
pub const M_SU_MD: u8 = 0x04;
/// G2 -> G3 without software intervention (NT).
pub const A_SU_CTRL1: u8 = 0x32;
pub const M_G2_G3_EN: u8 = 0x01;
/// B-channel receive enable.
pub const A_SU_CTRL2: u8 = 0x33;
pub const M_B1_RX_EN: u8 = 0x01;
pub const M_B2_RX_EN: u8 = 0x02;
/// Clock delay of the S/T receiver (TE and NT values of the data sheet's
/// recommendation; check on hardware).
pub const A_SU_CLK_DLY: u8 = 0x37;
pub const SU_CLK_DLY_TE: u8 = 0x0E;
pub const SU_CLK_DLY_NT: u8 = 0x6C;
/// Read (clears): state change of S/T interface n = bit n. Write: its mask.
pub const R_SU_IRQ: u8 = 0x12;
pub const R_SU_IRQMSK: u8 = 0x12;
/// Global interrupt enable and FIFO interrupt enable; IRQ pin active low.
pub const R_IRQ_CTRL: u8 = 0x13;
pub const M_FIFO_IRQ_EN: u8 = 0x01;
pub const M_GLOB_IRQ_EN: u8 = 0x08;

// ---- PCM interface (§5) ----
/// PCM mode (bit 0 master) and index (bits 4-7) of the multi-register at 0x15.
pub const R_PCM_MD0: u8 = 0x14;
pub const M_PCM_MD_MASTER: u8 = 0x01;
pub const IDX_PCM_MD1: u8 = 0x90;
/// Multi-register at 0x15, here R_PCM_MD1: data rate (bits 4-5).
pub const R_PCM_MD1: u8 = 0x15;
/// Write: select PCM slot: bit 0 direction (0 TX, 1 RX), bits 1-7 number.
pub const R_SLOT: u8 = 0x10;
/// Slot config: bit 0 direction, bits 1-5 HFC-channel, bits 6-7 pin routing
/// (2: transmit on STIO1, 3: receive from STIO2).
pub const A_SL_CFG: u8 = 0xD0;
pub const V_ROUT_TX_STIO1: u8 = 0x80;
pub const V_ROUT_RX_STIO2: u8 = 0xC0;

/// HFC-channel / FIFO number of S/T port `port`, channel `ch` (0 B1, 1 B2, 2 D).
pub const fn channel(port: u8, ch: u8) -> u8 {
    port * 4 + ch
}
