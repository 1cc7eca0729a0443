//! The Linux glue of the HAL: a board with real line chips, opened through
//! the kernel's user-space interfaces. The only crate with Linux device I/O
//! (and the one place `unsafe` would be allowed; none is needed so far).
//!
//! - [`devices`]: board description -> the devices to open (pure data,
//!   tested on the host).
//! - [`spi`]: spidev through linux-embedded-hal's `SpidevDevice`, wrapped in
//!   [`spi::CsPerByte`] because the Si3215 and Si3050 want chip select
//!   released after every byte.
//! - [`gpio`]: reset lines as `OutputPin`s and interrupt lines as
//!   [`gpio::IrqEvent`]s for the control plane, through gpio-cdev.
//! - [`highway`] and [`alsa_pcm`]: the PCM highway, a [`gw_hal::PcmBus`] for
//!   the rt thread.
//! - [`ports`]: each port's Si3215 / Si3050 driver configured from the board
//!   (PCM format, start count of its timeslot) and initialised.
//! - [`linecard`]: the ports ticked by a clock and put together as a
//!   `gw_board::Board` for gatewayd ([`linecard::open_board`]); generic, so
//!   the host tests build the reference board on the chips' register models
//!   and run the HAL's FXS/FXO behaviour tests against it.
//!
//! **Which PCM path and why.** The rt frame goes through an **ALSA PCM
//! device** (the SoC's PCM/I2S block as an ASoC card, one channel per
//! timeslot), not a TDM character device: the reference board's SoC
//! (BCM2711) has a mainline ASoC driver for its PCM block (`bcm2835-i2s`, DMA,
//! TDM slots through `simple-audio-card`) and no TDM character device; the
//! TDM character devices that exist (DAHDI's `/dev/dahdi/*`, vendor TDM
//! drivers) are out of tree and would tie the image to one kernel patch set.
//! ALSA gives a period interrupt per 10 ms period, so the rt thread's tick
//! and the highway's DMA run at the same rate, and `hw_params` refuses a
//! device that cannot run 8 kHz with an 80-frame period instead of letting
//! it drift. The streams are opened non-blocking at set-up; the rt thread
//! only reads and writes whole periods (see [`alsa_pcm`]).
//!
//! Drive it as:
//!
//! ```no_run
//! let desc = gw_board::rpi4_fxs_fxo();
//! let map = gw_hal_linux::devices::map_board(&desc)?;           // what to open
//! let hw = gw_hal_linux::open(&map)?;                            // spidev, gpio, ALSA
//! // hw.pcm -> the rt thread; hw.spi / hw.resets -> the chip drivers;
//! // hw.irq_rx -> the control plane (one IrqEvent per interrupt edge).
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

#[cfg(feature = "alsa")]
pub mod alsa_pcm;
pub mod devices;
pub mod gpio;
pub mod highway;
pub mod linecard;
pub mod ports;
pub mod spi;

use std::sync::mpsc;

use devices::{DeviceMap, LineRole};
use linux_embedded_hal::{CdevPin, SpidevDevice};

/// Why a board's devices did not open: which device, and the OS's reason.
#[derive(Debug)]
pub struct OpenError {
    pub device: String,
    pub reason: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.device, self.reason)
    }
}

impl std::error::Error for OpenError {}

fn open_err(device: &str, e: impl std::fmt::Display) -> OpenError {
    OpenError { device: device.to_string(), reason: e.to_string() }
}

/// The opened devices of a board with real chips.
pub struct LinuxHardware {
    /// One SPI device per chip, in the board's chip order.
    pub spi: Vec<spi::CsPerByte<SpidevDevice>>,
    /// One reset line per chip (held in reset until its driver releases it).
    pub resets: Vec<CdevPin>,
    /// The interrupt watcher; dropping it stops the thread.
    pub irq: gpio::IrqWatcher,
    /// Interrupt edges for the control plane.
    pub irq_rx: mpsc::Receiver<gpio::IrqEvent>,
    /// The highway, for the rt thread.
    #[cfg(feature = "alsa")]
    pub pcm: alsa_pcm::AlsaPcm,
}

/// Opens everything `map` names. Errors name the device that failed.
pub fn open(map: &DeviceMap) -> Result<LinuxHardware, OpenError> {
    let spi = map
        .chips
        .iter()
        .map(|c| spi::open_spi(c).map_err(|e| open_err(&c.path, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut resets: Vec<(usize, CdevPin)> = Vec::new();
    let mut irqs = Vec::new();
    for g in &map.gpio {
        for l in &g.lines {
            let what = format!("{} line {}", g.path, l.offset);
            match l.role {
                LineRole::Reset => {
                    resets.push((l.chip, gpio::open_reset(&g.path, l.offset, l.active_low).map_err(|e| open_err(&what, e))?))
                }
                LineRole::Irq => {
                    irqs.push((l.chip, gpio::open_irq(&g.path, l.offset, l.active_low).map_err(|e| open_err(&what, e))?))
                }
            }
        }
    }
    resets.sort_by_key(|(chip, _)| *chip);
    #[cfg(feature = "alsa")]
    let pcm = alsa_pcm::AlsaPcm::open(&map.alsa_device, map.highway).map_err(|e| open_err(&map.alsa_device, e))?;
    let (tx, irq_rx) = mpsc::channel();
    let irq = gpio::IrqWatcher::spawn(irqs, tx).map_err(|e| open_err("irq thread", e))?;
    Ok(LinuxHardware {
        spi,
        resets: resets.into_iter().map(|(_, p)| p).collect(),
        irq,
        irq_rx,
        #[cfg(feature = "alsa")]
        pcm,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn opening_the_reference_board_without_it_names_the_first_device() {
        let map = crate::devices::map_board(&gw_board::rpi4_fxs_fxo()).unwrap();
        if std::path::Path::new("/dev/spidev0.0").exists() {
            eprintln!("SKIP: this host has /dev/spidev0.0");
            return;
        }
        let Err(e) = crate::open(&map) else { panic!("opened a board that is not attached") };
        assert_eq!(e.device, "/dev/spidev0.0");
        assert!(e.to_string().starts_with("/dev/spidev0.0: "), "{e}");
    }
}
