//! The board's ports as chip drivers: each port's Si3215 or Si3050 driver
//! (`gw_hal::chips`) configured from the board description (PCM format from
//! `[pcm]`, start counts from the port's timeslot) on the Linux devices
//! [`crate::open`] opened.
//!
//! The highway's timeslots are counted in slots of the `[pcm]` format's
//! width, the chips' PCM start counts in PCLK cycles after FSYNC: a port on
//! timeslot `t` starts at `t * slot_bits` (16-bit linear slot 1 of the
//! reference board: start count 16). The configuration is generic over the
//! SPI and pin types, so the host tests run it against the chips' register
//! models; [`crate::linecard`] puts them together as a board.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::spi::SpiDevice;
use gw_board::{ChipModel, SlotFormat};
use gw_hal::chips::si3050::{self, country::Country, Si3050};
use gw_hal::chips::si3215::{self, Si3215};

use crate::devices::{DeviceMap, PortMap};

/// Why a port's driver could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortSetupError {
    /// The port's chip is not the model this call drives.
    WrongChip { port: usize },
    /// The driver refused its configuration or its init failed.
    Driver { port: usize, chip: String, reason: String },
    /// A device of the chip is missing from what was opened.
    Missing { port: usize, what: &'static str },
}

impl std::fmt::Display for PortSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortSetupError::WrongChip { port } => write!(f, "port {port}: not on a chip of this kind"),
            PortSetupError::Driver { port, chip, reason } => write!(f, "port {port} ({chip}): {reason}"),
            PortSetupError::Missing { port, what } => write!(f, "port {port}: no {what}"),
        }
    }
}

impl std::error::Error for PortSetupError {}

/// PCM start count (PCLK cycles after FSYNC) of a timeslot.
pub fn start_count(map: &DeviceMap, timeslot: u16) -> u16 {
    timeslot * map.highway.format().slot_bits()
}

/// The Si3215 configuration of an FXS port: defaults of the driver, with the
/// board's PCM format and the port's slot.
pub fn slic_config(map: &DeviceMap, port: &PortMap) -> si3215::Config {
    let pcm_format = match map.highway.format() {
        SlotFormat::Alaw => si3215::PcmFormat::ALaw,
        SlotFormat::Linear16 => si3215::PcmFormat::Linear16,
        _ => si3215::PcmFormat::MuLaw,
    };
    let start = start_count(map, port.timeslot);
    si3215::Config { pcm_format, tx_start: start, rx_start: start, ..si3215::Config::new() }
}

/// The Si3050 configuration of an FXO port for `country`.
pub fn daa_config(map: &DeviceMap, port: &PortMap, country: Country) -> si3050::Config {
    let pcm = match map.highway.format() {
        SlotFormat::Alaw => si3050::PcmFormat::ALaw,
        SlotFormat::Linear16 => si3050::PcmFormat::Linear16,
        _ => si3050::PcmFormat::MuLaw,
    };
    let start = start_count(map, port.timeslot);
    si3050::Config { pcm, tx_start: start, rx_start: start, ..si3050::Config::new(country) }
}

fn chip_model(map: &DeviceMap, port: &PortMap) -> Option<ChipModel> {
    map.chips.get(port.chip).map(|c| c.model)
}

fn chip_path(map: &DeviceMap, port: &PortMap) -> String {
    map.chips.get(port.chip).map_or_else(String::new, |c| c.path.clone())
}

/// Builds and initialises the Si3215 driver of FXS port `port` (cold init:
/// calibrates; the calibration is returned for a warm re-init).
pub fn init_slic<S, R, I, E>(
    map: &DeviceMap,
    port: &PortMap,
    spi: S,
    reset: R,
    int: I,
    delay: &mut impl DelayNs,
) -> Result<(Si3215<S, R, I>, si3215::Calibration), PortSetupError>
where
    S: SpiDevice<Error = E>,
    R: OutputPin,
    I: InputPin,
    E: core::fmt::Debug,
{
    if chip_model(map, port) != Some(ChipModel::Si3215) {
        return Err(PortSetupError::WrongChip { port: port.index });
    }
    let err = |reason: String| PortSetupError::Driver { port: port.index, chip: chip_path(map, port), reason };
    let mut d = Si3215::new(spi, reset, int, slic_config(map, port)).map_err(|e| err(format!("{e:?}")))?;
    let cal = d.init(delay, None).map_err(|e| err(format!("{e:?}")))?;
    Ok((d, cal))
}

/// Builds and initialises the Si3050 driver of FXO port `port`.
pub fn init_daa<S, R, I, E>(
    map: &DeviceMap,
    port: &PortMap,
    country: Country,
    spi: S,
    reset: R,
    int: I,
    delay: &mut impl DelayNs,
) -> Result<Si3050<S, R, I>, PortSetupError>
where
    S: SpiDevice<Error = E>,
    R: OutputPin,
    I: InputPin,
    E: core::fmt::Debug,
{
    if chip_model(map, port) != Some(ChipModel::Si3050) {
        return Err(PortSetupError::WrongChip { port: port.index });
    }
    let err = |reason: String| PortSetupError::Driver { port: port.index, chip: chip_path(map, port), reason };
    let mut d = Si3050::new(spi, reset, int, daa_config(map, port, country));
    d.init(delay).map_err(|e| err(format!("{e:?}")))?;
    Ok(d)
}

/// The drivers of the Linux devices.
pub type LinuxSlic = Si3215<crate::spi::CsPerByte<linux_embedded_hal::SpidevDevice>, linux_embedded_hal::CdevPin, crate::gpio::IrqPin>;
pub type LinuxDaa = Si3050<crate::spi::CsPerByte<linux_embedded_hal::SpidevDevice>, linux_embedded_hal::CdevPin, crate::gpio::IrqPin>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::map_board;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use gw_hal::chips::si3215::model::Si3215Model;

    #[test]
    fn start_counts_follow_the_slot_width() {
        let mut map = map_board(&gw_board::rpi4_fxs_fxo()).unwrap();
        assert_eq!((start_count(&map, 0), start_count(&map, 1)), (0, 16));
        map.highway = crate::highway::Highway::new(SlotFormat::Alaw, 32);
        assert_eq!(start_count(&map, 5), 40);
        let c = slic_config(&map, &PortMap { timeslot: 5, ..map.ports[0] });
        assert_eq!((c.pcm_format, c.tx_start, c.rx_start), (si3215::PcmFormat::ALaw, 40, 40));
        let c = daa_config(&map, &PortMap { timeslot: 7, ..map.ports[1] }, Country::Ctr21);
        assert_eq!((c.pcm, c.tx_start, c.country), (si3050::PcmFormat::ALaw, 56, Country::Ctr21));
    }

    /// The reference board's ports brought up through the real drivers on
    /// the chips' register models: each chip ends up with the board's PCM
    /// format and its port's start count.
    #[test]
    fn reference_board_ports_init_through_the_drivers() {
        let map = map_board(&gw_board::rpi4_fxs_fxo()).unwrap();
        let (fxs_port, fxo_port) = (map.ports[0], map.ports[1]);

        let m = Si3215Model::new();
        let (mut slic, _cal) =
            init_slic(&map, &fxs_port, m.spi(), m.reset_pin(), m.int_pin(), &mut NoopDelay::new()).unwrap();
        {
            let c = m.chip();
            // Reg 1: PCM enabled, 16-bit linear (PCMF = 11, bits 4:3); regs 2-5: start 0.
            assert_eq!(c.regs[1] & 0x38, 0x38, "linear16 PCM on: reg1 = {:#04x}", c.regs[1]);
            assert_eq!((c.regs[2], c.regs[3], c.regs[4], c.regs[5]), (0, 0, 0, 0));
        }
        slic.tick(10).unwrap();

        let (spi, rst, int, h) = si3050::model::new_model();
        let mut daa = init_daa(&map, &fxo_port, Country::Fcc, spi, rst, int, &mut NoopDelay::new()).unwrap();
        {
            let s = h.state();
            // Regs 34-37: TX and RX start count 16 (slot 1 of 16-bit slots).
            assert_eq!((s.reg(34), s.reg(35), s.reg(36), s.reg(37)), (16, 0, 16, 0));
        }
        daa.tick(10).unwrap();
        use gw_hal::FxoPort;
        daa.seize(true).unwrap();
        assert!(h.off_hook(), "the DAA went off hook on the model");

        // A port on the other kind of chip is refused before any access.
        let m2 = Si3215Model::new();
        let Err(e) = init_slic(&map, &fxo_port, m2.spi(), m2.reset_pin(), m2.int_pin(), &mut NoopDelay::new()) else {
            panic!("a SLIC driver on the DAA's port")
        };
        assert_eq!(e, PortSetupError::WrongChip { port: 1 });
        assert_eq!(m2.chip().transactions, 0);
    }

    #[test]
    fn a_missing_chip_is_a_named_error() {
        let map = map_board(&gw_board::rpi4_fxs_fxo()).unwrap();
        let (spi, rst, int, h) = si3050::model::new_model();
        h.state_mut().id_reg2 = 0xFF; // nothing answers on the chip select
        let Err(e) = init_daa(&map, &map.ports[1], Country::Fcc, spi, rst, int, &mut NoopDelay::new()) else {
            panic!("init on an empty socket")
        };
        assert!(e.to_string().starts_with("port 1 (/dev/spidev0.1): WrongId"), "{e}");
    }
}
