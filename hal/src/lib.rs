//! The hardware abstraction layer: the only crate that knows line hardware.
//!
//! The rest of the firmware sees analog ports and the PCM (TDM) bus through the
//! traits below. Backends:
//! - [`sim`]: a software line card that speaks the sim-link protocol
//!   (`hal/SIMLINK.md`) over a byte stream to `linesim`, so the whole gateway is
//!   testable without hardware.
//! - [`chips`]: real chip drivers, generic over `embedded_hal::spi::SpiDevice`
//!   and `embedded_hal::digital` pins: [`chips::si3215`] (ProSLIC FXS SLIC).
//!
//! Threading model: port control ([`FxsPort`], [`FxoPort`]) belongs to the control plane;
//! the [`PcmBus`] belongs to the real-time thread and must never block,
//! allocate or lock.
#![forbid(unsafe_code)]

pub mod chips;
pub mod isdn;
// The FXS and FXO behaviour every port backend must show; public with the
// `conformance` feature so that other crates run it against their backends
// (gw-hal-linux: the reference board's line card on the chip models).
#[cfg(any(test, feature = "conformance"))]
pub mod fxs_conformance;
#[cfg(any(test, feature = "conformance"))]
pub mod fxo_conformance;
pub mod sim;

/// Samples per channel per PCM tick: 10 ms at 8 kHz.
pub const FRAME_SAMPLES: usize = 80;
/// Duration of one PCM tick in milliseconds.
pub const FRAME_MS: u32 = 10;

/// One 10 ms frame of 16-bit linear PCM for one channel.
pub type Frame = [i16; FRAME_SAMPLES];

/// Loop state of an analog line as seen by the SLIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    OnHook,
    OffHook,
}

/// Supervision events reported by an FXS port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FxsEvent {
    OffHook,
    OnHook,
    /// A hook flash (register recall), already discriminated from a hang-up.
    HookFlash,
}

/// DC feed applied to the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFeed {
    /// No battery: loop open (used as a disconnect/"open switch interval" signal).
    Open,
    /// Normal battery, forward polarity.
    Forward,
    /// Battery with reversed polarity (answer supervision / metering).
    Reverse,
    /// On-hook transmission (for caller ID while on-hook).
    OnHookTransmission,
}

/// A ringing cadence: alternating on/off periods in milliseconds, repeated.
///
/// `[2000, 4000]` is the US cadence; `[400, 200, 400, 2000]` the UK double ring.
/// Up to four on/off pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCadence {
    pub periods_ms: [u16; 8],
    pub len: u8,
}

impl RingCadence {
    /// Builds a cadence from on/off pairs; returns `None` if empty, odd-length,
    /// longer than eight periods, or containing a zero period.
    pub fn new(periods_ms: &[u16]) -> Option<Self> {
        if periods_ms.is_empty() || periods_ms.len() % 2 != 0 || periods_ms.len() > 8 {
            return None;
        }
        if periods_ms.contains(&0) {
            return None;
        }
        let mut p = [0u16; 8];
        p[..periods_ms.len()].copy_from_slice(periods_ms);
        Some(Self { periods_ms: p, len: periods_ms.len() as u8 })
    }

    pub fn periods(&self) -> &[u16] {
        &self.periods_ms[..self.len as usize]
    }
}

/// Errors a port backend can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortError {
    /// The port index does not exist on this card.
    NoSuchPort,
    /// The line card is not answering (sim: the control link thread is gone).
    CardGone,
    /// The request is not valid in the line's current state (e.g. ringing off-hook).
    InvalidState,
}

/// An FXS port: the gateway is the exchange, a phone is on the line.
pub trait FxsPort {
    /// Current loop state.
    fn hook(&self) -> HookState;
    /// Next supervision event, if any. Never blocks.
    fn poll_event(&mut self) -> Option<FxsEvent>;
    /// Starts ringing with `cadence`, or stops ringing with `None`.
    fn set_ringing(&mut self, cadence: Option<RingCadence>) -> Result<(), PortError>;
    /// Sets the DC feed and polarity.
    fn set_line_feed(&mut self, feed: LineFeed) -> Result<(), PortError>;
}

/// Supervision events reported by an FXO port (the gateway is the phone, the
/// exchange is on the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FxoEvent {
    /// Ringing voltage appeared / went away (one ring burst each; the
    /// cadence is judged above the HAL).
    RingStart,
    RingStop,
    /// The line's polarity reversed (answer or disconnect supervision, or
    /// the exchange's announcement of caller ID before the first ring).
    PolarityReversal,
    /// Loop current dropped (an open-loop disconnect, "CPC", while seized)
    /// and came back.
    LoopCurrentDrop,
    LoopCurrentRestore,
}

/// Line polarity seen by the DAA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    Normal,
    Reversed,
}

/// What an FXO port can read of its line (`None`: the hardware cannot tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FxoLineStatus {
    /// Tip-ring voltage in volts (on hook about 48, seized about 6-10).
    pub voltage: Option<i16>,
    /// Loop current in mA while seized.
    pub loop_current_ma: Option<u16>,
    pub polarity: Polarity,
    pub ringing: bool,
    pub seized: bool,
}

/// An FXO port: the gateway is the phone on an exchange line.
pub trait FxoPort {
    /// Next supervision event, if any. Never blocks.
    fn poll_event(&mut self) -> Option<FxoEvent>;
    /// Seizes the line (closes the loop: off-hook) or releases it.
    fn seize(&mut self, on: bool) -> Result<(), PortError>;
    /// Opens the loop for `ms` while seized (hook flash, or one pulse of
    /// pulse dialling when short).
    fn flash(&mut self, ms: u16) -> Result<(), PortError>;
    fn line_status(&self) -> FxoLineStatus;
}

/// Result of one PCM exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcmStats {
    /// Channels for which no receive frame was ready (silence was substituted).
    pub rx_underruns: u32,
    /// Channels whose transmit frame could not be queued (it was dropped).
    pub tx_overruns: u32,
}

/// The PCM bus: exchanges one [`Frame`] per channel per 10 ms tick.
///
/// Called only from the real-time thread. Implementations must not block,
/// allocate, lock or log.
pub trait PcmBus {
    /// Number of channels (timeslots) on this bus.
    fn channels(&self) -> usize;
    /// Sends `tx[ch]` to each channel's line and fills `rx[ch]` with what the
    /// line sent during the last tick. `tx.len()` and `rx.len()` equal
    /// [`PcmBus::channels`].
    fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats;
}
