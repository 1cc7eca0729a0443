//! Boards as data, and the code that turns a board description into HAL objects.
//!
//! A board is a TOML document (`board/<name>/board.toml`) saying which ports exist,
//! on which PCM timeslots, which core runs the real-time thread and, for the sim
//! board, where the sim link listens. Drive it as:
//!
//! ```no_run
//! let desc = gw_board::sim_board();             // or gw_board::parse(&text)?
//! let board = gw_board::build(&desc, None).unwrap();
//! let pcm = board.pcm;                           // to the rt thread
//! let fxs = board.fxs;                           // to the control plane
//! let fxo = board.fxo;                           // FXO lines, same PCM bus
//! ```
//!
//! Ports are FXS or FXO (`kind`); the sim card numbers its FXS ports first,
//! so a sim board lists every FXS port before its FXO ports (checked).
//!
//! Everything is validated by [`parse`] before anything is built, so a bad board
//! file is a [`BoardError`] naming the problem, never a half-built board.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;

use gw_hal::sim::{SimCard, SimCardConfig};

/// The sim board's description, embedded at build time.
pub const SIM_BOARD_TOML: &str = include_str!("../sim/board.toml");

/// Highest TDM timeslot accepted (a 8.192 MHz PCM highway has 128).
pub const MAX_TIMESLOT: u16 = 127;

/// Fastest SPI clock accepted for a line chip (the Si3215 and Si3050 take
/// up to 16.384 MHz; general, see the datasheets' SPI timing tables).
pub const MAX_SPI_HZ: u32 = 16_384_000;

/// The reference board's description (`board/rpi4-fxs-fxo/board.toml`).
pub const RPI4_FXS_FXO_TOML: &str = include_str!("../rpi4-fxs-fxo/board.toml");

/// A board as described by its `board.toml`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardDesc {
    pub name: String,
    pub description: String,
    /// Core the real-time thread is pinned to, if any.
    #[serde(default)]
    pub rt_core: Option<usize>,
    /// Present on boards whose line card is the sim card.
    #[serde(default)]
    pub sim: Option<SimDesc>,
    /// Ports, sorted by `index` after [`parse`].
    #[serde(default)]
    pub ports: Vec<PortDesc>,
    /// The PCM highway of a board with real line chips (absent on the sim board).
    #[serde(default)]
    pub pcm: Option<PcmDesc>,
    /// The line chips of a real board: which chip on which SPI chip select,
    /// with which reset and interrupt lines. Empty on the sim board.
    #[serde(default)]
    pub chips: Vec<ChipDesc>,
    /// ISDN spans, sorted by `index` after [`parse`]. Their B-channels are
    /// PCM timeslots like the ports' audio; the sim card carries them after
    /// the analog ports.
    #[serde(default)]
    pub spans: Vec<SpanDesc>,
}

/// What kind of ISDN interface a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKindDesc {
    /// S/T basic rate: 2 B-channels.
    Bri,
    /// E1 primary rate: 30 B-channels (TS1-15, 17-31), D on TS16.
    Pri,
}

impl SpanKindDesc {
    pub fn hal(self) -> gw_hal::isdn::SpanKind {
        match self {
            SpanKindDesc::Bri => gw_hal::isdn::SpanKind::Bri,
            SpanKindDesc::Pri => gw_hal::isdn::SpanKind::Pri,
        }
    }
}

/// One ISDN span of the board. Which side (TE or NT) the gateway plays on it
/// is configuration (gatewayd's `[[span]]`), not board data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanDesc {
    /// 0-based span number, contiguous over the board's spans.
    pub index: usize,
    pub kind: SpanKindDesc,
    /// What the front panel says ("BRI 1").
    pub label: String,
    /// PCM timeslot of each B-channel, B1 first (a PRI: E1 TS1..15, then
    /// TS17..31): 2 for a BRI, 30 for a PRI.
    pub timeslots: Vec<u16>,
}

/// How samples sit in a timeslot of the PCM highway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SlotFormat {
    /// G.711 mu-law, one 8-bit slot per sample.
    Ulaw,
    /// G.711 A-law, one 8-bit slot per sample.
    Alaw,
    /// 16-bit linear (two's complement, little-endian on the host side), one
    /// 16-bit slot per sample.
    Linear16,
}

impl SlotFormat {
    /// Bits of one timeslot in this format.
    pub fn slot_bits(self) -> u16 {
        match self {
            SlotFormat::Ulaw | SlotFormat::Alaw => 8,
            SlotFormat::Linear16 => 16,
        }
    }
}

/// The board's PCM interface: the highway every line chip's audio is on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcmDesc {
    /// ALSA PCM device name (`hw:CARD=linecard,DEV=0`): the SoC's PCM/I2S
    /// block as clock and frame master, one ALSA channel per timeslot.
    pub alsa_device: String,
    pub format: SlotFormat,
    /// Timeslots per 8 kHz frame (channels of the ALSA device); a port's
    /// `timeslot` is below this. PCLK = 8 kHz x slots x slot bits.
    pub slots: u16,
}

impl PcmDesc {
    /// Bit clock of the highway in kHz.
    pub fn pclk_khz(&self) -> u32 {
        8 * u32::from(self.slots) * u32::from(self.format.slot_bits())
    }
}

/// A line chip model this firmware knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChipModel {
    /// Silicon Labs Si3215 ProSLIC: one FXS port.
    Si3215,
    /// Silicon Labs Si3050 DAA with its Si3018/Si3019 line side: one FXO port.
    Si3050,
}

impl ChipModel {
    /// The kind of port this (single-channel) chip drives.
    pub fn port_kind(self) -> PortKind {
        match self {
            ChipModel::Si3215 => PortKind::Fxs,
            ChipModel::Si3050 => PortKind::Fxo,
        }
    }
}

/// One GPIO line: a Linux GPIO character device and its line offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioDesc {
    /// `/dev/gpiochip0`
    pub chip: String,
    /// Line offset on that chip (the SoC's GPIO number on a Raspberry Pi).
    pub line: u32,
    /// The line is active when low (reset and interrupt lines usually are).
    #[serde(default)]
    pub active_low: bool,
}

/// One line chip on the board's SPI bus.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChipDesc {
    /// Name the ports refer to (`slic0`).
    pub name: String,
    pub model: ChipModel,
    /// SPI bus number: `/dev/spidev<bus>.<cs>`.
    pub spi_bus: u16,
    /// Chip select on that bus.
    pub spi_cs: u16,
    /// SPI clock in Hz.
    pub spi_hz: u32,
    /// The chip's reset input.
    pub reset: GpioDesc,
    /// The chip's interrupt output (hook, ring trip, ring detect ...).
    pub irq: GpioDesc,
}

impl ChipDesc {
    /// The spidev node of this chip.
    pub fn spidev_path(&self) -> String {
        format!("/dev/spidev{}.{}", self.spi_bus, self.spi_cs)
    }
}

/// What kind of line a port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PortKind {
    /// A phone port: the gateway is the exchange.
    Fxs,
    /// An exchange line: the gateway is the phone.
    Fxo,
}

/// One port of the board.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortDesc {
    /// 0-based port number, contiguous over the board.
    pub index: usize,
    pub kind: PortKind,
    /// What the front panel says ("FXS 1").
    pub label: String,
    /// PCM timeslot the port's audio uses.
    pub timeslot: u16,
    /// On a board with real chips: the `chips` entry that drives this port.
    #[serde(default)]
    pub chip: Option<String>,
}

/// The sim link of a sim board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimDesc {
    /// Address gatewayd listens on for linesim.
    pub listen: SocketAddr,
}

/// Why a board description is rejected or cannot be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BoardError {
    /// Not valid TOML, or fields missing, mistyped or unknown (message from the parser).
    Syntax(String),
    EmptyName,
    NoPorts,
    /// Two ports share an index.
    DuplicateIndex(usize),
    /// Port indexes must be 0..n without gaps; this one is missing.
    MissingIndex(usize),
    /// Two ports share a timeslot.
    DuplicateTimeslot(u16),
    /// A timeslot above [`MAX_TIMESLOT`].
    TimeslotOutOfRange { index: usize, timeslot: u16 },
    EmptyLabel { index: usize },
    DuplicateLabel(String),
    /// The board has no line card [`build`] can drive: no `[sim]`. A board
    /// with `[[chips]]` is opened on Linux by `gw_hal_linux::linecard::open_board`
    /// (gw-hal-linux depends on this crate, so this crate cannot call it).
    NoLineCard,
    /// An FXS port after an FXO port in index order (the sim card numbers
    /// its FXS ports first); `index` is the FXS port's.
    FxsAfterFxo { index: usize },
    /// More ports than the sim card can carry.
    TooManyPorts(usize),
    /// The sim card could not start (e.g. the listen address is taken).
    SimStart(std::io::Error),
    /// A span lists the wrong number of B-channel timeslots for its kind.
    SpanChannels { index: usize, expected: usize, got: usize },
    /// Span indexes must be 0..n without gaps; this one is missing or twice.
    SpanIndex(usize),
    /// A board with both a `[sim]` card and `[[chips]]`.
    SimAndChips,
    /// `[[chips]]` without the `[pcm]` highway they are on.
    ChipsWithoutPcm,
    /// `[pcm]` with an empty ALSA device name or no slots.
    BadPcm(String),
    /// A timeslot beyond the `[pcm]` frame (`slots`).
    TimeslotBeyondFrame { index: usize, timeslot: u16, slots: u16 },
    /// Two chips share a name.
    DuplicateChip(String),
    /// Two chips on the same SPI bus and chip select.
    DuplicateChipSelect { bus: u16, cs: u16 },
    /// One GPIO line used twice (as reset or interrupt, by any chips).
    DuplicateGpio { chip: String, line: u32 },
    /// An SPI clock of 0 or above what the chips take (`MAX_SPI_HZ`).
    BadSpiClock { chip: String, hz: u32 },
    /// A port names a chip that is not in `[[chips]]`.
    UnknownChip { index: usize, chip: String },
    /// On a board with chips, a port without `chip`; or on a sim board, with one.
    PortChipMismatch { index: usize },
    /// A port's kind is not what its chip drives (an FXO port on a SLIC).
    WrongChipKind { index: usize, chip: String },
    /// A single-channel chip named by two ports.
    ChipUsedTwice(String),
    /// A chip no port uses.
    UnusedChip(String),
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BoardError::Syntax(m) => write!(f, "board file: {m}"),
            BoardError::EmptyName => f.write_str("board name is empty"),
            BoardError::NoPorts => f.write_str("board has no ports"),
            BoardError::DuplicateIndex(i) => write!(f, "port index {i} appears twice"),
            BoardError::MissingIndex(i) => write!(f, "port index {i} is missing (indexes are 0..n)"),
            BoardError::DuplicateTimeslot(t) => write!(f, "timeslot {t} is used by two ports"),
            BoardError::TimeslotOutOfRange { index, timeslot } => {
                write!(f, "port {index}: timeslot {timeslot} above {MAX_TIMESLOT}")
            }
            BoardError::EmptyLabel { index } => write!(f, "port {index} has an empty label"),
            BoardError::DuplicateLabel(l) => write!(f, "label {l:?} is used by two ports"),
            BoardError::NoLineCard => f.write_str("board has no line card this build can drive"),
            BoardError::FxsAfterFxo { index } => {
                write!(f, "port {index} is FXS after an FXO port (FXS ports come first)")
            }
            BoardError::TooManyPorts(n) => write!(f, "{n} ports is more than the sim card carries"),
            BoardError::SimStart(e) => write!(f, "sim card did not start: {e}"),
            BoardError::SpanChannels { index, expected, got } => {
                write!(f, "span {index}: {got} B-channel timeslots, its kind has {expected}")
            }
            BoardError::SpanIndex(i) => write!(f, "span index {i} is missing or appears twice (indexes are 0..n)"),
            BoardError::SimAndChips => f.write_str("a board has either a [sim] card or [[chips]], not both"),
            BoardError::ChipsWithoutPcm => f.write_str("[[chips]] need the [pcm] section of their highway"),
            BoardError::BadPcm(m) => write!(f, "[pcm]: {m}"),
            BoardError::TimeslotBeyondFrame { index, timeslot, slots } => {
                write!(f, "port {index}: timeslot {timeslot} is beyond the {slots} slots of the [pcm] frame")
            }
            BoardError::DuplicateChip(n) => write!(f, "chip name {n:?} appears twice"),
            BoardError::DuplicateChipSelect { bus, cs } => {
                write!(f, "two chips on SPI bus {bus} chip select {cs} (/dev/spidev{bus}.{cs})")
            }
            BoardError::DuplicateGpio { chip, line } => write!(f, "GPIO line {line} of {chip} is used twice"),
            BoardError::BadSpiClock { chip, hz } => {
                write!(f, "chip {chip:?}: SPI clock {hz} Hz is not in 1..={MAX_SPI_HZ}")
            }
            BoardError::UnknownChip { index, chip } => write!(f, "port {index} names chip {chip:?}, which is not in [[chips]]"),
            BoardError::PortChipMismatch { index } => {
                write!(f, "port {index}: ports name their chip on a board with [[chips]], and only there")
            }
            BoardError::WrongChipKind { index, chip } => {
                write!(f, "port {index}: chip {chip:?} drives the other kind of port")
            }
            BoardError::ChipUsedTwice(n) => write!(f, "chip {n:?} (one channel) is named by two ports"),
            BoardError::UnusedChip(n) => write!(f, "chip {n:?} is not used by any port"),
        }
    }
}

impl std::error::Error for BoardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BoardError::SimStart(e) => Some(e),
            _ => None,
        }
    }
}

/// Parses and validates a board description.
pub fn parse(toml_text: &str) -> Result<BoardDesc, BoardError> {
    let mut desc: BoardDesc =
        toml::from_str(toml_text).map_err(|e| BoardError::Syntax(e.to_string()))?;
    validate(&mut desc)?;
    Ok(desc)
}

/// Validates a description built or changed in code (what [`parse`] checks
/// of a file) and returns it with its ports sorted by index.
pub fn validate_desc(desc: &BoardDesc) -> Result<BoardDesc, BoardError> {
    let mut d = desc.clone();
    validate(&mut d)?;
    Ok(d)
}

fn validate(desc: &mut BoardDesc) -> Result<(), BoardError> {
    if desc.name.trim().is_empty() {
        return Err(BoardError::EmptyName);
    }
    if desc.ports.is_empty() {
        return Err(BoardError::NoPorts);
    }
    let mut indexes = HashSet::new();
    let mut slots = HashSet::new();
    let mut labels = HashSet::new();
    for p in &desc.ports {
        if !indexes.insert(p.index) {
            return Err(BoardError::DuplicateIndex(p.index));
        }
        if p.timeslot > MAX_TIMESLOT {
            return Err(BoardError::TimeslotOutOfRange { index: p.index, timeslot: p.timeslot });
        }
        if !slots.insert(p.timeslot) {
            return Err(BoardError::DuplicateTimeslot(p.timeslot));
        }
        if p.label.trim().is_empty() {
            return Err(BoardError::EmptyLabel { index: p.index });
        }
        if !labels.insert(p.label.as_str()) {
            return Err(BoardError::DuplicateLabel(p.label.clone()));
        }
    }
    if let Some(missing) = (0..desc.ports.len()).find(|i| !indexes.contains(i)) {
        return Err(BoardError::MissingIndex(missing));
    }
    let mut span_indexes = HashSet::new();
    for s in &desc.spans {
        if !span_indexes.insert(s.index) {
            return Err(BoardError::SpanIndex(s.index));
        }
        let expected = s.kind.hal().b_channels();
        if s.timeslots.len() != expected {
            return Err(BoardError::SpanChannels { index: s.index, expected, got: s.timeslots.len() });
        }
        for &t in &s.timeslots {
            if t > MAX_TIMESLOT {
                return Err(BoardError::TimeslotOutOfRange { index: s.index, timeslot: t });
            }
            if !slots.insert(t) {
                return Err(BoardError::DuplicateTimeslot(t));
            }
        }
        if s.label.trim().is_empty() {
            return Err(BoardError::EmptyLabel { index: s.index });
        }
        if !labels.insert(s.label.as_str()) {
            return Err(BoardError::DuplicateLabel(s.label.clone()));
        }
    }
    if let Some(missing) = (0..desc.spans.len()).find(|i| !span_indexes.contains(i)) {
        return Err(BoardError::SpanIndex(missing));
    }
    desc.spans.sort_by_key(|s| s.index);
    desc.ports.sort_by_key(|p| p.index);
    validate_hardware(desc)?;
    if let Some(first_fxo) = desc.ports.iter().position(|p| p.kind == PortKind::Fxo) {
        if let Some(p) = desc.ports[first_fxo..].iter().find(|p| p.kind == PortKind::Fxs) {
            return Err(BoardError::FxsAfterFxo { index: p.index });
        }
    }
    Ok(())
}

/// The checks of a board with real chips: every chip select, GPIO line and
/// timeslot once, every port on a chip of its kind, every chip used.
fn validate_hardware(desc: &BoardDesc) -> Result<(), BoardError> {
    if desc.chips.is_empty() {
        if let Some(p) = desc.ports.iter().find(|p| p.chip.is_some()) {
            return Err(BoardError::PortChipMismatch { index: p.index });
        }
        if let Some(pcm) = &desc.pcm {
            check_pcm(desc, pcm)?;
        }
        return Ok(());
    }
    if desc.sim.is_some() {
        return Err(BoardError::SimAndChips);
    }
    let Some(pcm) = &desc.pcm else {
        return Err(BoardError::ChipsWithoutPcm);
    };
    check_pcm(desc, pcm)?;
    let mut names = HashSet::new();
    let mut selects = HashSet::new();
    let mut gpios = HashSet::new();
    for c in &desc.chips {
        if c.name.trim().is_empty() || !names.insert(c.name.as_str()) {
            return Err(BoardError::DuplicateChip(c.name.clone()));
        }
        if !selects.insert((c.spi_bus, c.spi_cs)) {
            return Err(BoardError::DuplicateChipSelect { bus: c.spi_bus, cs: c.spi_cs });
        }
        if c.spi_hz == 0 || c.spi_hz > MAX_SPI_HZ {
            return Err(BoardError::BadSpiClock { chip: c.name.clone(), hz: c.spi_hz });
        }
        for g in [&c.reset, &c.irq] {
            if !gpios.insert((g.chip.as_str(), g.line)) {
                return Err(BoardError::DuplicateGpio { chip: g.chip.clone(), line: g.line });
            }
        }
    }
    let mut used = HashSet::new();
    for p in &desc.ports {
        let Some(name) = &p.chip else {
            return Err(BoardError::PortChipMismatch { index: p.index });
        };
        let Some(chip) = desc.chips.iter().find(|c| &c.name == name) else {
            return Err(BoardError::UnknownChip { index: p.index, chip: name.clone() });
        };
        if chip.model.port_kind() != p.kind {
            return Err(BoardError::WrongChipKind { index: p.index, chip: name.clone() });
        }
        if !used.insert(name.as_str()) {
            return Err(BoardError::ChipUsedTwice(name.clone()));
        }
    }
    if let Some(c) = desc.chips.iter().find(|c| !used.contains(c.name.as_str())) {
        return Err(BoardError::UnusedChip(c.name.clone()));
    }
    Ok(())
}

fn check_pcm(desc: &BoardDesc, pcm: &PcmDesc) -> Result<(), BoardError> {
    if pcm.alsa_device.trim().is_empty() {
        return Err(BoardError::BadPcm("alsa_device is empty".into()));
    }
    if pcm.slots == 0 || pcm.slots > MAX_TIMESLOT + 1 {
        return Err(BoardError::BadPcm(format!("slots = {} is not in 1..={}", pcm.slots, MAX_TIMESLOT + 1)));
    }
    if let Some(p) = desc.ports.iter().find(|p| p.timeslot >= pcm.slots) {
        return Err(BoardError::TimeslotBeyondFrame { index: p.index, timeslot: p.timeslot, slots: pcm.slots });
    }
    Ok(())
}

impl BoardDesc {
    /// The chip that drives `port` (a board with `[[chips]]`).
    pub fn chip_of(&self, port: &PortDesc) -> Option<&ChipDesc> {
        let name = port.chip.as_deref()?;
        self.chips.iter().find(|c| c.name == name)
    }

    /// Number of FXS ports (what gatewayd's `[[fxs]]` sections may name).
    pub fn fxs_count(&self) -> usize {
        self.ports.iter().filter(|p| p.kind == PortKind::Fxs).count()
    }

    /// Number of FXO ports.
    pub fn fxo_count(&self) -> usize {
        self.ports.iter().filter(|p| p.kind == PortKind::Fxo).count()
    }

    /// The spans as the HAL describes them.
    pub fn span_infos(&self) -> Vec<gw_hal::isdn::SpanInfo> {
        self.spans
            .iter()
            .map(|s| gw_hal::isdn::SpanInfo { kind: s.kind.hal(), label: s.label.clone(), b_timeslots: s.timeslots.clone() })
            .collect()
    }
}

/// One ISDN span turned into HAL objects.
pub struct BoardSpan {
    pub info: gw_hal::isdn::SpanInfo,
    /// Its D channel (control plane).
    pub dchan: Box<dyn gw_hal::isdn::DChannel + Send>,
}

/// The reference board (`board/rpi4-fxs-fxo/board.toml`, embedded).
pub fn rpi4_fxs_fxo() -> BoardDesc {
    // Checked by this crate's tests, like the sim board.
    parse(RPI4_FXS_FXO_TOML).expect("embedded board/rpi4-fxs-fxo/board.toml is valid")
}

/// The boards built into this firmware, by name.
pub const BUILTIN_BOARDS: [(&str, &str); 2] = [("sim", SIM_BOARD_TOML), ("rpi4-fxs-fxo", RPI4_FXS_FXO_TOML)];

/// A board by name (`sim`, `rpi4-fxs-fxo`: the embedded descriptions) or by
/// the path of a `board.toml` (anything with a `/` or ending in `.toml`, e.g.
/// the image's `/etc/gatewayd/board.toml`). Errors say which and why.
pub fn load(spec: &str) -> Result<BoardDesc, String> {
    if spec.contains('/') || spec.ends_with(".toml") {
        let text = std::fs::read_to_string(spec).map_err(|e| format!("board file {spec}: {e}"))?;
        return parse(&text).map_err(|e| format!("board file {spec}: {e}"));
    }
    match BUILTIN_BOARDS.iter().find(|(name, _)| *name == spec) {
        Some((name, text)) => parse(text).map_err(|e| format!("built-in board {name}: {e}")),
        None => {
            let known: Vec<&str> = BUILTIN_BOARDS.iter().map(|(n, _)| *n).collect();
            Err(format!("unknown board {spec:?} (built in: {}; or the path of a board.toml)", known.join(", ")))
        }
    }
}

/// The sim board (`board/sim/board.toml`, embedded).
pub fn sim_board() -> BoardDesc {
    // The embedded file is checked by this crate's tests, so this cannot fail
    // in a tested build.
    parse(SIM_BOARD_TOML).expect("embedded board/sim/board.toml is valid")
}

/// A board turned into HAL objects.
pub struct Board {
    pub desc: BoardDesc,
    /// FXS ports in port-index order: `fxs[i]` is the i-th FXS port of `desc.ports`.
    pub fxs: Vec<Box<dyn gw_hal::FxsPort + Send>>,
    /// The PCM timeslot of each of `fxs`: the channel its audio uses on `pcm`.
    pub fxs_timeslots: Vec<u16>,
    /// FXO ports in port-index order: `fxo[i]` is the i-th FXO port of `desc.ports`.
    pub fxo: Vec<Box<dyn gw_hal::FxoPort + Send>>,
    /// The PCM timeslot of each of `fxo`.
    pub fxo_timeslots: Vec<u16>,
    /// ISDN spans in span order; their B-channels are on `pcm` at
    /// `info.b_timeslots`.
    pub spans: Vec<BoardSpan>,
    /// The PCM bus, indexed by timeslot (`desc.ports[i].timeslot`).
    pub pcm: Box<dyn gw_hal::PcmBus + Send>,
    /// The sim card itself (for `local_addr`, `is_attached`, event notify).
    /// Keep it alive: dropping it stops the sim link.
    pub sim: Option<SimCard>,
    /// What a board with real chips must keep alive as long as its ports
    /// (gw-hal-linux's interrupt thread); `None` on the sim board.
    pub keep: Option<Box<dyn std::any::Any + Send>>,
}

impl fmt::Debug for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Board")
            .field("desc", &self.desc)
            .field("fxs", &self.fxs.len())
            .field("fxo", &self.fxo.len())
            .field("spans", &self.spans.len())
            .field("pcm_channels", &self.pcm.channels())
            .field("sim", &self.sim)
            .finish()
    }
}

/// Builds the HAL objects for `desc`. `sim_listen_override` replaces the sim
/// link address of the board file (tests pass `127.0.0.1:0`).
pub fn build(desc: &BoardDesc, sim_listen_override: Option<SocketAddr>) -> Result<Board, BoardError> {
    let mut desc = desc.clone();
    // A desc built by hand did not go through parse.
    validate(&mut desc)?;
    let Some(sim) = desc.sim else {
        return Err(BoardError::NoLineCard);
    };
    let total = desc.ports.len() + desc.spans.iter().map(|s| s.timeslots.len()).sum::<usize>();
    if total > gw_hal::sim::MAX_PORTS {
        return Err(BoardError::TooManyPorts(total));
    }
    let fxs_ports = desc.fxs_count();
    let fxo_ports = desc.ports.len() - fxs_ports;
    let listen = sim_listen_override.unwrap_or(sim.listen);
    let config = SimCardConfig { listen, ports: fxs_ports, fxo_ports };
    let kinds: Vec<_> = desc.spans.iter().map(|s| s.kind.hal()).collect();
    let mut card = SimCard::start_with_spans(config, &kinds).map_err(BoardError::SimStart)?;
    let spans = card
        .take_dchannels()
        .into_iter()
        .zip(desc.span_infos())
        .map(|(d, info)| BoardSpan { info, dchan: Box::new(d) })
        .collect();
    let fxs = card
        .take_ports()
        .into_iter()
        .map(|p| Box::new(p) as Box<dyn gw_hal::FxsPort + Send>)
        .collect();
    let fxo = card
        .take_fxo_ports()
        .into_iter()
        .map(|p| Box::new(p) as Box<dyn gw_hal::FxoPort + Send>)
        .collect();
    let Some(sim_pcm) = card.take_pcm() else {
        unreachable!("a freshly started SimCard still has its PCM bus")
    };
    // The sim card carries port i's audio as its channel i (FXS ports
    // first, as validated); the board file says which timeslot it uses.
    // Then each span's B-channels, span by span.
    let mut slots: Vec<u16> = desc.ports.iter().map(|p| p.timeslot).collect();
    let analog = slots.len();
    slots.extend(desc.spans.iter().flat_map(|s| s.timeslots.iter().copied()));
    let fxs_timeslots = slots[..fxs_ports].to_vec();
    let fxo_timeslots = slots[fxs_ports..analog].to_vec();
    let pcm = Box::new(TimeslotBus::new(sim_pcm, &slots)) as Box<dyn gw_hal::PcmBus + Send>;
    Ok(Board { desc, fxs, fxs_timeslots, fxo, fxo_timeslots, spans, pcm, sim: Some(card), keep: None })
}

/// A PCM bus whose channel `i` is carried on timeslot `slots[i]`: the rt
/// thread sees the highway by timeslot, the line card by its own channel.
/// Unused timeslots send nothing and receive silence. Allocation-free after
/// [`TimeslotBus::new`].
pub struct TimeslotBus<P> {
    inner: P,
    slots: Vec<u16>,
    channels: usize,
    tx: Vec<gw_hal::Frame>,
    rx: Vec<gw_hal::Frame>,
}

impl<P: gw_hal::PcmBus> TimeslotBus<P> {
    /// `slots` has one timeslot per channel of `inner` (validated: unique and
    /// at most [`MAX_TIMESLOT`]).
    pub fn new(inner: P, slots: &[u16]) -> Self {
        let n = inner.channels();
        let channels = slots.iter().map(|&t| usize::from(t) + 1).max().unwrap_or(0).max(n.min(slots.len()));
        TimeslotBus {
            inner,
            slots: slots.to_vec(),
            channels,
            tx: vec![[0; gw_hal::FRAME_SAMPLES]; n],
            rx: vec![[0; gw_hal::FRAME_SAMPLES]; n],
        }
    }
}

impl<P: gw_hal::PcmBus> gw_hal::PcmBus for TimeslotBus<P> {
    fn channels(&self) -> usize {
        self.channels
    }

    fn exchange(&mut self, tx: &[gw_hal::Frame], rx: &mut [gw_hal::Frame]) -> gw_hal::PcmStats {
        for (i, f) in self.tx.iter_mut().enumerate() {
            *f = self.slots.get(i).and_then(|&t| tx.get(usize::from(t))).copied().unwrap_or([0; gw_hal::FRAME_SAMPLES]);
        }
        let st = self.inner.exchange(&self.tx, &mut self.rx);
        rx.iter_mut().for_each(|f| f.fill(0));
        for (i, f) in self.rx.iter().enumerate() {
            if let Some(out) = self.slots.get(i).and_then(|&t| rx.get_mut(usize::from(t))) {
                *out = *f;
            }
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two line-card channels that send 100 and 200 and keep what they get.
    struct Card {
        got: Vec<i16>,
    }
    impl gw_hal::PcmBus for Card {
        fn channels(&self) -> usize {
            2
        }
        fn exchange(&mut self, tx: &[gw_hal::Frame], rx: &mut [gw_hal::Frame]) -> gw_hal::PcmStats {
            self.got = tx.iter().map(|f| f[0]).collect();
            rx[0] = [100; gw_hal::FRAME_SAMPLES];
            rx[1] = [200; gw_hal::FRAME_SAMPLES];
            gw_hal::PcmStats::default()
        }
    }

    #[test]
    fn timeslot_bus_puts_each_port_on_its_timeslot() {
        use gw_hal::PcmBus;
        let mut bus = TimeslotBus::new(Card { got: vec![] }, &[5, 2]);
        assert_eq!(bus.channels(), 6);
        let mut tx = vec![[0i16; gw_hal::FRAME_SAMPLES]; 6];
        tx[5] = [7; gw_hal::FRAME_SAMPLES];
        tx[2] = [9; gw_hal::FRAME_SAMPLES];
        tx[0] = [1; gw_hal::FRAME_SAMPLES];
        let mut rx = vec![[1i16; gw_hal::FRAME_SAMPLES]; 6];
        bus.exchange(&tx, &mut rx);
        assert_eq!(bus.inner.got, vec![7, 9], "port 0 sends timeslot 5, port 1 timeslot 2");
        assert_eq!((rx[5][0], rx[2][0]), (100, 200));
        assert!([0, 1, 3, 4].iter().all(|&t| rx[t][0] == 0), "unused timeslots are silent");
    }
    use gw_hal::{HookState, LineFeed, RingCadence};

    const PORT: &str = "[[ports]]\nindex = 0\nkind = \"fxs\"\nlabel = \"FXS 1\"\ntimeslot = 0\n";

    fn board_with(ports: &str) -> String {
        format!("name = \"t\"\ndescription = \"test\"\n[sim]\nlisten = \"127.0.0.1:0\"\n{ports}")
    }

    fn port(index: usize, label: &str, timeslot: u16) -> String {
        format!("[[ports]]\nindex = {index}\nkind = \"fxs\"\nlabel = \"{label}\"\ntimeslot = {timeslot}\n")
    }

    #[test]
    fn sim_board_has_a_bri_and_a_pri_after_the_analog_ports() {
        let b = sim_board();
        assert_eq!(b.spans.len(), 2);
        assert_eq!((b.spans[0].kind, b.spans[0].timeslots.clone()), (SpanKindDesc::Bri, vec![6, 7]));
        assert_eq!(b.spans[1].kind, SpanKindDesc::Pri);
        assert_eq!(b.spans[1].timeslots, (8..38).collect::<Vec<u16>>());
        let mut board = build(&b, Some("127.0.0.1:0".parse().unwrap())).unwrap();
        assert_eq!(board.pcm.channels(), 38, "4 FXS + 2 FXO + 2 + 30");
        assert_eq!(board.spans.len(), 2);
        assert_eq!(board.spans[1].info.label, "PRI 1");
        assert_eq!(board.spans[1].dchan.kind(), gw_hal::isdn::SpanKind::Pri);
        assert!(!board.spans[0].dchan.l1_status().is_up());
        assert_eq!(board.spans[0].dchan.send_frame(&[0, 1, 0x7F]), Err(gw_hal::isdn::DChannelError::L1Down));
    }

    #[test]
    fn span_validation_names_the_problem() {
        let span = |index: usize, kind: &str, label: &str, slots: &str| {
            format!("[[spans]]\nindex = {index}\nkind = \"{kind}\"\nlabel = \"{label}\"\ntimeslots = [{slots}]\n")
        };
        let cases: Vec<(String, &str)> = vec![
            (board_with(&(port(0, "A", 0) + &span(0, "bri", "B", "1"))), "SpanChannels { index: 0, expected: 2, got: 1 }"),
            (board_with(&(port(0, "A", 0) + &span(0, "bri", "B", "0, 1"))), "DuplicateTimeslot(0)"),
            (board_with(&(port(0, "A", 0) + &span(1, "bri", "B", "1, 2"))), "SpanIndex(0)"),
            (board_with(&(port(0, "A", 0) + &span(0, "bri", "A", "1, 2"))), "DuplicateLabel(\"A\")"),
            (board_with(&(port(0, "A", 0) + &span(0, "bri", "B", "1, 200"))), "TimeslotOutOfRange { index: 0, timeslot: 200 }"),
            (board_with(&(port(0, "A", 0) + &span(0, "pri", "P", "1, 2"))), "SpanChannels { index: 0, expected: 30, got: 2 }"),
        ];
        for (text, want) in cases {
            assert_eq!(format!("{:?}", parse(&text).unwrap_err()), want, "for:\n{text}");
        }
        assert!(matches!(parse(&board_with(&(port(0, "A", 0) + &span(0, "t1", "B", "1, 2")))), Err(BoardError::Syntax(_))));
        let d = parse(&board_with(&(port(0, "A", 0) + &span(1, "bri", "C", "3, 4") + &span(0, "bri", "B", "1, 2")))).unwrap();
        assert_eq!(d.spans.iter().map(|s| s.label.as_str()).collect::<Vec<_>>(), ["B", "C"]);
    }

    #[test]
    fn sim_board_is_four_fxs_and_two_fxo_ports() {
        let b = sim_board();
        assert_eq!(b.name, "sim");
        assert_eq!(b.rt_core, Some(1));
        assert_eq!(b.sim.unwrap().listen, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(b.ports.len(), 6);
        assert_eq!((b.fxs_count(), b.fxo_count()), (4, 2));
        for (i, p) in b.ports.iter().enumerate() {
            assert_eq!(p.index, i);
            if i < 4 {
                assert_eq!(p.kind, PortKind::Fxs);
                assert_eq!(p.label, format!("FXS {}", i + 1));
            } else {
                assert_eq!(p.kind, PortKind::Fxo);
                assert_eq!(p.label, format!("FXO {}", i - 3));
            }
            assert_eq!(usize::from(p.timeslot), i);
        }
    }

    #[test]
    fn fxs_ports_come_before_fxo_ports() {
        let fxo = |index: usize, label: &str, slot: u16| port(index, label, slot).replace("\"fxs\"", "\"fxo\"");
        let text = board_with(&(port(0, "A", 0) + &fxo(1, "B", 1) + &port(2, "C", 2)));
        assert!(matches!(parse(&text), Err(BoardError::FxsAfterFxo { index: 2 })));
        let d = parse(&board_with(&(fxo(1, "B", 7) + &port(0, "A", 3)))).unwrap();
        assert_eq!((d.fxs_count(), d.fxo_count()), (1, 1));
    }

    #[test]
    fn ports_are_sorted_by_index() {
        let d = parse(&board_with(&(port(1, "B", 5) + &port(0, "A", 9)))).unwrap();
        assert_eq!(d.ports.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(), ["A", "B"]);
        assert_eq!(d.rt_core, None);
    }

    #[test]
    fn validation_names_the_problem() {
        let cases: Vec<(String, &str)> = vec![
            (board_with(""), "NoPorts"),
            (board_with(&(port(0, "A", 0) + &port(0, "B", 1))), "DuplicateIndex(0)"),
            (board_with(&(port(0, "A", 0) + &port(2, "B", 1))), "MissingIndex(1)"),
            (board_with(&(port(0, "A", 3) + &port(1, "B", 3))), "DuplicateTimeslot(3)"),
            (board_with(&port(0, "A", 128)), "TimeslotOutOfRange { index: 0, timeslot: 128 }"),
            (board_with(&port(0, " ", 0)), "EmptyLabel { index: 0 }"),
            (board_with(&(port(0, "A", 0) + &port(1, "A", 1))), "DuplicateLabel(\"A\")"),
            (format!("name = \"\"\ndescription = \"x\"\n{PORT}"), "EmptyName"),
        ];
        for (text, want) in cases {
            let got = format!("{:?}", parse(&text).unwrap_err());
            assert_eq!(got, want, "for:\n{text}");
        }
    }

    #[test]
    fn syntax_errors_and_unknown_fields_are_rejected() {
        assert!(matches!(parse("name = "), Err(BoardError::Syntax(_))));
        let typo = format!("name = \"t\"\ndescription = \"d\"\nrt_cores = 1\n{PORT}");
        let e = parse(&typo).unwrap_err();
        assert!(e.to_string().contains("rt_cores"), "{e}");
        let kind = board_with(&PORT.replace("fxs", "isdn"));
        assert!(matches!(parse(&kind), Err(BoardError::Syntax(_))));
        let addr = board_with(PORT).replace("127.0.0.1:0", "nowhere");
        assert!(matches!(parse(&addr), Err(BoardError::Syntax(_))));
    }

    #[test]
    fn board_without_line_card_is_not_built() {
        let d = parse(&format!("name = \"r\"\ndescription = \"real\"\n{PORT}")).unwrap();
        assert!(matches!(build(&d, None), Err(BoardError::NoLineCard)));
    }

    #[test]
    fn build_sim_board_gives_working_ports_and_pcm() {
        let desc = sim_board();
        let mut board = build(&desc, Some("127.0.0.1:0".parse().unwrap())).unwrap();
        assert_eq!(board.fxs.len(), 4);
        assert_eq!(board.fxo.len(), 2);
        assert_eq!(board.fxs_timeslots, vec![0, 1, 2, 3]);
        assert_eq!(board.fxo_timeslots, vec![4, 5]);
        assert_eq!(board.pcm.channels(), 38);
        assert!(!board.fxo[1].line_status().seized);
        board.fxo[1].seize(true).unwrap();
        assert!(board.fxo[1].line_status().seized);
        let card = board.sim.as_ref().unwrap();
        assert_ne!(card.local_addr().port(), 0);
        assert_ne!(card.local_addr().port(), 5070);
        assert!(!card.is_attached());
        assert_eq!(board.fxs[3].hook(), HookState::OnHook);
        board.fxs[3].set_line_feed(LineFeed::Reverse).unwrap();
        board.fxs[3].set_ringing(RingCadence::new(&[2000, 4000])).unwrap();
        // A second board on the same address fails with a named reason.
        let taken = card.local_addr();
        assert!(matches!(build(&desc, Some(taken)), Err(BoardError::SimStart(_))));
    }

    #[test]
    fn reference_board_is_one_fxs_and_one_fxo_on_spi0_and_pcm() {
        let b = rpi4_fxs_fxo();
        assert_eq!(b.name, "rpi4-fxs-fxo");
        assert_eq!(b.rt_core, Some(3));
        assert!(b.sim.is_none());
        assert_eq!((b.fxs_count(), b.fxo_count()), (1, 1));
        let pcm = b.pcm.as_ref().unwrap();
        assert_eq!((pcm.format, pcm.slots, pcm.pclk_khz()), (SlotFormat::Linear16, 2, 256));
        let slic = b.chip_of(&b.ports[0]).unwrap();
        assert_eq!((slic.model, slic.spidev_path().as_str()), (ChipModel::Si3215, "/dev/spidev0.0"));
        assert_eq!((slic.reset.line, slic.irq.line), (23, 25));
        let daa = b.chip_of(&b.ports[1]).unwrap();
        assert_eq!((daa.model, daa.spidev_path().as_str()), (ChipModel::Si3050, "/dev/spidev0.1"));
        assert_eq!((b.ports[0].timeslot, b.ports[1].timeslot), (0, 1));
        // No sim card: build() cannot drive it (gw-hal-linux opens it).
        assert!(matches!(build(&b, None), Err(BoardError::NoLineCard)));
    }

    /// The reference board's text with `from` replaced by `to` (once, checked).
    fn rpi4_with(from: &str, to: &str) -> String {
        assert!(RPI4_FXS_FXO_TOML.contains(from), "{from:?} not in the reference board");
        RPI4_FXS_FXO_TOML.replacen(from, to, 1)
    }

    #[test]
    fn hardware_validation_names_the_problem() {
        let cases: Vec<(String, &str)> = vec![
            (rpi4_with("spi_cs = 1", "spi_cs = 0"), "DuplicateChipSelect { bus: 0, cs: 0 }"),
            (rpi4_with("line = 24", "line = 25"), "DuplicateGpio { chip: \"/dev/gpiochip0\", line: 25 }"),
            (rpi4_with("line = 22", "line = 23"), "DuplicateGpio { chip: \"/dev/gpiochip0\", line: 23 }"),
            (rpi4_with("timeslot = 1", "timeslot = 0"), "DuplicateTimeslot(0)"),
            (rpi4_with("timeslot = 1", "timeslot = 2"), "TimeslotBeyondFrame { index: 1, timeslot: 2, slots: 2 }"),
            (rpi4_with("name = \"daa0\"", "name = \"slic0\""), "DuplicateChip(\"slic0\")"),
            (rpi4_with("chip = \"daa0\"", "chip = \"daa1\""), "UnknownChip { index: 1, chip: \"daa1\" }"),
            (rpi4_with("chip = \"daa0\"", "chip = \"slic0\""), "WrongChipKind { index: 1, chip: \"slic0\" }"),
            (rpi4_with("model = \"si3050\"", "model = \"si3215\""), "WrongChipKind { index: 1, chip: \"daa0\" }"),
            (rpi4_with("chip = \"daa0\"\n", ""), "PortChipMismatch { index: 1 }"),
            (rpi4_with("spi_hz = 1000000", "spi_hz = 0"), "BadSpiClock { chip: \"slic0\", hz: 0 }"),
            (rpi4_with("slots = 2", "slots = 0"), "BadPcm(\"slots = 0 is not in 1..=128\")"),
            (rpi4_with("alsa_device = \"hw:CARD=linecard,DEV=0\"", "alsa_device = \" \""), "BadPcm(\"alsa_device is empty\")"),
            (rpi4_with("[pcm]", "[sim]\nlisten = \"127.0.0.1:0\"\n[pcm]"), "SimAndChips"),
            (
                rpi4_with("[pcm]\nalsa_device = \"hw:CARD=linecard,DEV=0\"\nformat = \"linear16\"\nslots = 2\n", ""),
                "ChipsWithoutPcm",
            ),
        ];
        for (text, want) in cases {
            let got = format!("{:?}", parse(&text).unwrap_err());
            assert_eq!(got, want, "for:\n{text}");
        }
        // A third chip that no port uses.
        let extra = format!(
            "{RPI4_FXS_FXO_TOML}\n[[chips]]\nname = \"spare\"\nmodel = \"si3215\"\nspi_bus = 1\nspi_cs = 0\nspi_hz = 1000\n\
             reset = {{ chip = \"/dev/gpiochip0\", line = 5 }}\nirq = {{ chip = \"/dev/gpiochip0\", line = 6 }}\n"
        );
        assert_eq!(format!("{:?}", parse(&extra).unwrap_err()), "UnusedChip(\"spare\")");
        // The same line number on another GPIO chip is another line.
        let other = rpi4_with("line = 24", "line = 25").replacen(
            "reset = { chip = \"/dev/gpiochip0\", line = 25",
            "reset = { chip = \"/dev/gpiochip1\", line = 25",
            1,
        );
        assert!(parse(&other).is_ok());
        // A sim board port that names a chip.
        let sim = board_with(&PORT.replace("timeslot = 0\n", "timeslot = 0\nchip = \"x\"\n"));
        assert_eq!(format!("{:?}", parse(&sim).unwrap_err()), "PortChipMismatch { index: 0 }");
    }

    #[test]
    fn hardware_fields_are_strict() {
        let typo = rpi4_with("spi_hz = 1000000", "spi_hz = 1000000\nspi_mode = 3");
        assert!(parse(&typo).unwrap_err().to_string().contains("spi_mode"));
        let model = rpi4_with("model = \"si3215\"", "model = \"le9662\"");
        assert!(matches!(parse(&model), Err(BoardError::Syntax(_))));
        let fmt = rpi4_with("format = \"linear16\"", "format = \"g729\"");
        assert!(matches!(parse(&fmt), Err(BoardError::Syntax(_))));
        let messages = [
            BoardError::DuplicateChipSelect { bus: 0, cs: 1 }.to_string(),
            BoardError::DuplicateGpio { chip: "/dev/gpiochip0".into(), line: 7 }.to_string(),
        ];
        assert_eq!(messages[0], "two chips on SPI bus 0 chip select 1 (/dev/spidev0.1)");
        assert_eq!(messages[1], "GPIO line 7 of /dev/gpiochip0 is used twice");
    }

    #[test]
    fn boards_load_by_name_or_path_with_clear_errors() {
        assert_eq!(load("sim").unwrap(), sim_board());
        assert_eq!(load("rpi4-fxs-fxo").unwrap(), rpi4_fxs_fxo());
        let e = load("rpi5").unwrap_err();
        assert_eq!(e, "unknown board \"rpi5\" (built in: sim, rpi4-fxs-fxo; or the path of a board.toml)");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rpi4-fxs-fxo/board.toml");
        assert_eq!(load(path).unwrap(), rpi4_fxs_fxo());
        let e = load("/nonexistent/board.toml").unwrap_err();
        assert!(e.starts_with("board file /nonexistent/board.toml: "), "{e}");
        let dir = std::env::temp_dir().join(format!("gw-board-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("board.toml");
        std::fs::write(&bad, RPI4_FXS_FXO_TOML.replacen("spi_cs = 1", "spi_cs = 0", 1)).unwrap();
        let e = load(bad.to_str().unwrap()).unwrap_err();
        assert!(e.ends_with("two chips on SPI bus 0 chip select 0 (/dev/spidev0.0)"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn build_revalidates_hand_made_descs() {
        let mut d = sim_board();
        d.ports[1].timeslot = 0;
        assert!(matches!(build(&d, None), Err(BoardError::DuplicateTimeslot(0))));
    }
}
