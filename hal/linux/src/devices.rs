//! From a board description to the Linux devices that carry it: the spidev
//! node, SPI mode and clock of each chip; the GPIO lines to request, grouped
//! by GPIO chip (one request per `/dev/gpiochipN`); the ALSA device and the
//! highway layout; and each port's chip and timeslot. Pure data, so the whole
//! mapping is tested on the host; [`crate::open`] then opens what it names.

use gw_board::{BoardDesc, ChipModel, PortKind};

use crate::highway::Highway;

/// SPI mode 3 (CPOL = 1, CPHA = 1): clock idles high, data sampled on the
/// rising edge, for both the ProSLIC and the Si3050 (general; see the SPI
/// timing diagrams of their datasheets).
pub const LINE_CHIP_SPI_MODE: u8 = 3;

/// One line chip's SPI device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiMap {
    /// Index into [`DeviceMap::chips`] and the board's `chips`.
    pub chip: usize,
    pub model: ChipModel,
    /// `/dev/spidev<bus>.<cs>`
    pub path: String,
    pub hz: u32,
    pub mode: u8,
}

/// What a GPIO line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRole {
    /// Output: the chip's reset input.
    Reset,
    /// Input with edge events: the chip's interrupt output.
    Irq,
}

/// One GPIO line to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineMap {
    pub chip: usize,
    pub role: LineRole,
    pub offset: u32,
    pub active_low: bool,
}

/// The lines requested from one GPIO character device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpioChipMap {
    /// `/dev/gpiochip0`
    pub path: String,
    /// In board order: each chip's reset, then its interrupt.
    pub lines: Vec<LineMap>,
}

/// One port: its chip and timeslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMap {
    pub index: usize,
    pub kind: PortKind,
    pub chip: usize,
    pub timeslot: u16,
}

/// Everything a board with real chips needs opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMap {
    pub board: String,
    pub alsa_device: String,
    pub highway: Highway,
    pub chips: Vec<SpiMap>,
    pub gpio: Vec<GpioChipMap>,
    pub ports: Vec<PortMap>,
    pub rt_core: Option<usize>,
}

/// Why a board cannot be mapped to Linux devices.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// The board has no `[[chips]]` (the sim board: `gw_board::build` drives it).
    NoChips,
    /// The description did not pass `gw_board::parse`'s validation.
    Invalid(String),
}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapError::NoChips => f.write_str("the board has no [[chips]]: no Linux devices to open"),
            MapError::Invalid(m) => write!(f, "invalid board: {m}"),
        }
    }
}

impl std::error::Error for MapError {}

/// Maps a board description to its devices. The description is validated
/// again (a hand-built one did not go through `gw_board::parse`).
pub fn map_board(desc: &BoardDesc) -> Result<DeviceMap, MapError> {
    if desc.chips.is_empty() {
        return Err(MapError::NoChips);
    }
    // Re-validate through the one validator there is: the board crate's.
    let text_free = gw_board::validate_desc(desc).map_err(|e| MapError::Invalid(e.to_string()))?;
    let desc = &text_free;
    let Some(pcm) = &desc.pcm else {
        return Err(MapError::Invalid("no [pcm]".into()));
    };
    let chips = desc
        .chips
        .iter()
        .enumerate()
        .map(|(i, c)| SpiMap { chip: i, model: c.model, path: c.spidev_path(), hz: c.spi_hz, mode: LINE_CHIP_SPI_MODE })
        .collect();
    let mut gpio: Vec<GpioChipMap> = Vec::new();
    for (i, c) in desc.chips.iter().enumerate() {
        for (role, g) in [(LineRole::Reset, &c.reset), (LineRole::Irq, &c.irq)] {
            let line = LineMap { chip: i, role, offset: g.line, active_low: g.active_low };
            match gpio.iter_mut().find(|m| m.path == g.chip) {
                Some(m) => m.lines.push(line),
                None => gpio.push(GpioChipMap { path: g.chip.clone(), lines: vec![line] }),
            }
        }
    }
    let ports = desc
        .ports
        .iter()
        .map(|p| {
            let chip = desc.chips.iter().position(|c| Some(&c.name) == p.chip.as_ref()).unwrap_or(usize::MAX);
            PortMap { index: p.index, kind: p.kind, chip, timeslot: p.timeslot }
        })
        .collect();
    Ok(DeviceMap {
        board: desc.name.clone(),
        alsa_device: pcm.alsa_device.clone(),
        highway: Highway::from_desc(pcm),
        chips,
        gpio,
        ports,
        rt_core: desc.rt_core,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gw_board::SlotFormat;

    #[test]
    fn reference_board_maps_to_spidev_gpiochip0_and_alsa() {
        let m = map_board(&gw_board::rpi4_fxs_fxo()).unwrap();
        assert_eq!(m.board, "rpi4-fxs-fxo");
        assert_eq!(m.alsa_device, "hw:CARD=linecard,DEV=0");
        assert_eq!(m.highway, Highway::new(SlotFormat::Linear16, 2));
        assert_eq!(m.rt_core, Some(3));
        assert_eq!(
            m.chips,
            vec![
                SpiMap { chip: 0, model: ChipModel::Si3215, path: "/dev/spidev0.0".into(), hz: 1_000_000, mode: 3 },
                SpiMap { chip: 1, model: ChipModel::Si3050, path: "/dev/spidev0.1".into(), hz: 1_000_000, mode: 3 },
            ]
        );
        let l = |chip, role, offset| LineMap { chip, role, offset, active_low: true };
        assert_eq!(
            m.gpio,
            vec![GpioChipMap {
                path: "/dev/gpiochip0".into(),
                lines: vec![
                    l(0, LineRole::Reset, 23),
                    l(0, LineRole::Irq, 25),
                    l(1, LineRole::Reset, 24),
                    l(1, LineRole::Irq, 22)
                ],
            }]
        );
        assert_eq!(
            m.ports,
            vec![
                PortMap { index: 0, kind: PortKind::Fxs, chip: 0, timeslot: 0 },
                PortMap { index: 1, kind: PortKind::Fxo, chip: 1, timeslot: 1 },
            ]
        );
    }

    #[test]
    fn lines_on_two_gpio_chips_are_two_requests() {
        let mut d = gw_board::rpi4_fxs_fxo();
        d.chips[1].irq.chip = "/dev/gpiochip1".into();
        let m = map_board(&d).unwrap();
        assert_eq!(m.gpio.len(), 2);
        assert_eq!(m.gpio[0].lines.len(), 3);
        assert_eq!((m.gpio[1].path.as_str(), m.gpio[1].lines[0].offset), ("/dev/gpiochip1", 22));
    }

    #[test]
    fn sim_and_invalid_boards_are_refused() {
        assert_eq!(map_board(&gw_board::sim_board()), Err(MapError::NoChips));
        let mut d = gw_board::rpi4_fxs_fxo();
        d.chips[1].reset.line = 23;
        let e = map_board(&d).unwrap_err();
        assert_eq!(e, MapError::Invalid("GPIO line 23 of /dev/gpiochip0 is used twice".into()));
        let mut d = gw_board::rpi4_fxs_fxo();
        d.chips[1].spi_cs = 0;
        assert!(map_board(&d).unwrap_err().to_string().contains("/dev/spidev0.0"));
    }
}
