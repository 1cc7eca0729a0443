//! A board with real line chips as a [`gw_board::Board`]: each port's driver
//! (Si3215 or Si3050) initialised from the board description and wrapped in
//! a [`Ticked`] port, the PCM highway and the interrupt thread, ready for
//! gatewayd like the sim board.
//!
//! **Time.** The chip drivers are sans-IO: they advance on `tick(now_ms)`.
//! gatewayd's control plane polls every port's events on its 10 ms tick, so
//! a [`Ticked`] port ticks its driver with its [`Millis`] clock whenever it
//! is polled or commanded (at most once per millisecond). An interrupt edge
//! only updates the level the driver reads at its next tick; the edges the
//! interrupt thread reports are drained there so that its channel stays
//! empty.
//!
//! **Generic.** [`LineCard::build`] is generic over the SPI, reset and
//! interrupt types of each chip family and over the clock: gatewayd opens it
//! on spidev / gpio-cdev ([`open_board`]), the host tests on the chips'
//! register models and a virtual clock, and run the HAL's FXS and FXO
//! behaviour tests against the very port type the board hands to gatewayd.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::spi::SpiDevice;
use gw_board::{BoardDesc, ChipModel, PortKind};
use gw_hal::chips::si3050::{country::Country, Si3050};
use gw_hal::chips::si3215::{self, Si3215};
use gw_hal::{FxoEvent, FxoLineStatus, FxoPort, FxsEvent, FxsPort, HookState, LineFeed, PortError, RingCadence};

use crate::devices::{DeviceMap, PortMap};
use crate::gpio::IrqEvent;
use crate::ports::{init_daa, init_slic, PortSetupError};
use crate::OpenError;

/// A millisecond clock for the drivers.
pub trait Millis {
    fn now_ms(&self) -> u64;
}

/// Milliseconds since the line card was built (the Linux board's clock).
#[derive(Debug, Clone, Copy)]
pub struct Monotonic(Instant);

impl Monotonic {
    pub fn new() -> Self {
        Monotonic(Instant::now())
    }
}

impl Default for Monotonic {
    fn default() -> Self {
        Self::new()
    }
}

impl Millis for Monotonic {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// A shared virtual clock (tests; any number of ports read the same time).
#[derive(Debug, Clone, Default)]
pub struct VirtualClock(Arc<std::sync::atomic::AtomicU64>);

impl VirtualClock {
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Millis for VirtualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A chip driver that advances with time.
pub trait Tick {
    /// Advances the driver to `now_ms`; a bus or pin error as text.
    fn tick_to(&mut self, now_ms: u64) -> Result<(), String>;
}

impl<S, R, I, E> Tick for Si3215<S, R, I>
where
    S: SpiDevice<Error = E>,
    R: OutputPin,
    I: InputPin,
    E: core::fmt::Debug,
{
    fn tick_to(&mut self, now_ms: u64) -> Result<(), String> {
        // The SLIC's clock is a wrapping u32 of ms.
        self.tick(now_ms as u32).map_err(|e| format!("si3215: {e:?}"))
    }
}

impl<S, R, I, E> Tick for Si3050<S, R, I>
where
    S: SpiDevice<u8, Error = E>,
    R: OutputPin,
    I: InputPin,
    E: core::fmt::Debug,
{
    fn tick_to(&mut self, now_ms: u64) -> Result<(), String> {
        self.tick(now_ms).map_err(|e| format!("si3050: {e:?}"))
    }
}

/// Interrupt edges of the board, shared by its ports (drained on each tick).
pub type IrqEdges = Arc<Mutex<Receiver<IrqEvent>>>;

/// A port whose driver is ticked by its clock whenever the control plane
/// polls or commands it.
pub struct Ticked<D, C> {
    drv: D,
    clock: C,
    last: Option<u64>,
    edges: Option<IrqEdges>,
    tick_errors: u64,
    last_error: Option<String>,
}

impl<D: Tick, C: Millis> Ticked<D, C> {
    pub fn new(drv: D, clock: C, edges: Option<IrqEdges>) -> Self {
        Ticked { drv, clock, last: None, edges, tick_errors: 0, last_error: None }
    }

    /// Ticks the driver if the clock moved since the last tick.
    pub fn catch_up(&mut self) {
        let now = self.clock.now_ms();
        if self.last == Some(now) {
            return;
        }
        self.last = Some(now);
        if let Some(edges) = &self.edges {
            // Never wait: another port may be draining right now.
            if let Ok(rx) = edges.try_lock() {
                while rx.try_recv().is_ok() {}
            }
        }
        if let Err(e) = self.drv.tick_to(now) {
            self.tick_errors += 1;
            self.last_error = Some(e);
        }
    }

    /// The driver (for what the HAL traits do not carry: calibration, gains ...).
    pub fn driver(&mut self) -> &mut D {
        &mut self.drv
    }

    /// Ticks that failed, and the last failure.
    pub fn tick_errors(&self) -> (u64, Option<&str>) {
        (self.tick_errors, self.last_error.as_deref())
    }
}

impl<S, R, I, E, C> FxsPort for Ticked<Si3215<S, R, I>, C>
where
    S: SpiDevice<Error = E>,
    R: OutputPin,
    I: InputPin,
    E: core::fmt::Debug,
    C: Millis,
{
    fn hook(&self) -> HookState {
        self.drv.hook()
    }

    fn poll_event(&mut self) -> Option<FxsEvent> {
        self.catch_up();
        self.drv.poll_event()
    }

    fn set_ringing(&mut self, cadence: Option<RingCadence>) -> Result<(), PortError> {
        self.catch_up();
        self.drv.set_ringing(cadence)
    }

    fn set_line_feed(&mut self, feed: LineFeed) -> Result<(), PortError> {
        self.catch_up();
        self.drv.set_line_feed(feed)
    }
}

impl<S, R, I, E, C> FxoPort for Ticked<Si3050<S, R, I>, C>
where
    S: SpiDevice<u8, Error = E>,
    R: OutputPin,
    I: InputPin,
    E: core::fmt::Debug,
    C: Millis,
{
    fn poll_event(&mut self) -> Option<FxoEvent> {
        self.catch_up();
        self.drv.poll_event()
    }

    fn seize(&mut self, on: bool) -> Result<(), PortError> {
        self.catch_up();
        self.drv.seize(on)
    }

    fn flash(&mut self, ms: u16) -> Result<(), PortError> {
        self.catch_up();
        self.drv.flash(ms)
    }

    fn line_status(&self) -> FxoLineStatus {
        self.drv.line_status()
    }
}

/// An FXS port of a line card: the Si3215 driver, ticked.
pub type TickedSlic<S, R, I, C> = Ticked<Si3215<S, R, I>, C>;
/// An FXO port of a line card: the Si3050 driver, ticked.
pub type TickedDaa<S, R, I, C> = Ticked<Si3050<S, R, I>, C>;

/// The devices of one chip: SPI device, reset output, interrupt input.
pub type ChipIo<S, R, I> = (S, R, I);

/// A board's line card: its ports' drivers, initialised and ticked by `C`.
/// `S1`/`R1`/`I1` are the Si3215s' devices, `S2`/`R2`/`I2` the Si3050s'.
pub struct LineCard<S1, R1, I1, S2, R2, I2, C> {
    /// FXS ports in port order, with their timeslots.
    pub fxs: Vec<(u16, TickedSlic<S1, R1, I1, C>)>,
    /// FXO ports in port order, with their timeslots.
    pub fxo: Vec<(u16, TickedDaa<S2, R2, I2, C>)>,
    /// Calibrations of the FXS ports (for a warm re-init).
    pub calibrations: Vec<si3215::Calibration>,
}

impl<S1, R1, I1, E1, S2, R2, I2, E2, C> LineCard<S1, R1, I1, S2, R2, I2, C>
where
    S1: SpiDevice<Error = E1>,
    R1: OutputPin,
    I1: InputPin,
    E1: core::fmt::Debug,
    S2: SpiDevice<u8, Error = E2>,
    R2: OutputPin,
    I2: InputPin,
    E2: core::fmt::Debug,
    C: Millis + Clone,
{
    /// Initialises every port of `map` in port order: `slic(chip)` and
    /// `daa(chip)` hand over the devices of chip index `chip` (an error there
    /// stops the build and is returned). The PCM highway should already run,
    /// so that the chips have PCLK when they leave reset.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        map: &DeviceMap,
        country: Country,
        clock: C,
        edges: Option<IrqEdges>,
        delay: &mut impl DelayNs,
        mut slic: impl FnMut(&PortMap) -> Result<ChipIo<S1, R1, I1>, PortSetupError>,
        mut daa: impl FnMut(&PortMap) -> Result<ChipIo<S2, R2, I2>, PortSetupError>,
    ) -> Result<Self, PortSetupError> {
        let (mut fxs, mut fxo, mut calibrations) = (Vec::new(), Vec::new(), Vec::new());
        for port in &map.ports {
            match map.chips.get(port.chip).map(|c| c.model) {
                Some(ChipModel::Si3215) if port.kind == PortKind::Fxs => {
                    let (s, r, i) = slic(port)?;
                    let (d, cal) = init_slic(map, port, s, r, i, delay)?;
                    let mut p = Ticked::new(d, clock.clone(), edges.clone());
                    p.catch_up();
                    fxs.push((port.timeslot, p));
                    calibrations.push(cal);
                }
                Some(ChipModel::Si3050) if port.kind == PortKind::Fxo => {
                    let (s, r, i) = daa(port)?;
                    let d = init_daa(map, port, country, s, r, i, delay)?;
                    let mut p = Ticked::new(d, clock.clone(), edges.clone());
                    p.catch_up();
                    fxo.push((port.timeslot, p));
                }
                _ => return Err(PortSetupError::WrongChip { port: port.index }),
            }
        }
        Ok(LineCard { fxs, fxo, calibrations })
    }
}

impl<S1, R1, I1, E1, S2, R2, I2, E2, C> LineCard<S1, R1, I1, S2, R2, I2, C>
where
    S1: SpiDevice<Error = E1> + Send + 'static,
    R1: OutputPin + Send + 'static,
    I1: InputPin + Send + 'static,
    E1: core::fmt::Debug,
    S2: SpiDevice<u8, Error = E2> + Send + 'static,
    R2: OutputPin + Send + 'static,
    I2: InputPin + Send + 'static,
    E2: core::fmt::Debug,
    C: Millis + Send + 'static,
{
    /// The line card as gatewayd's board: its ports, `pcm` (indexed by
    /// timeslot) and `keep` (what must live as long as the board: the
    /// interrupt thread).
    pub fn into_board(
        self,
        desc: &BoardDesc,
        pcm: Box<dyn gw_hal::PcmBus + Send>,
        keep: Option<Box<dyn std::any::Any + Send>>,
    ) -> gw_board::Board {
        let (fxs_timeslots, fxs) =
            self.fxs.into_iter().map(|(t, p)| (t, Box::new(p) as Box<dyn FxsPort + Send>)).unzip();
        let (fxo_timeslots, fxo) =
            self.fxo.into_iter().map(|(t, p)| (t, Box::new(p) as Box<dyn FxoPort + Send>)).unzip();
        gw_board::Board {
            desc: desc.clone(),
            fxs,
            fxs_timeslots,
            fxo,
            fxo_timeslots,
            spans: Vec::new(),
            pcm,
            sim: None,
            keep,
        }
    }
}

/// Opens a board with `[[chips]]` on this Linux system: its spidev nodes,
/// GPIO lines and ALSA PCM device ([`crate::open`]), then each port's driver.
/// Errors name the device (`/dev/spidev0.0: No such file or directory`) or
/// the port whose chip did not initialise.
pub fn open_board(desc: &BoardDesc, country: Country) -> Result<gw_board::Board, OpenError> {
    let map = crate::devices::map_board(desc).map_err(|e| crate::open_err(&desc.name, e))?;
    let hw = crate::open(&map)?;
    #[cfg(not(feature = "alsa"))]
    {
        let _ = (hw, country);
        Err(crate::open_err(
            &map.alsa_device,
            "this gatewayd is built without ALSA (cargo feature \"alsa\" of gatewayd / gw-hal-linux)",
        ))
    }
    #[cfg(feature = "alsa")]
    {
        let crate::LinuxHardware { spi, resets, irq, irq_rx, pcm } = hw;
        let mut spi: Vec<Option<_>> = spi.into_iter().map(Some).collect();
        let mut resets: Vec<Option<_>> = resets.into_iter().map(Some).collect();
        let mut take = |port: &PortMap| {
            let missing = |what| PortSetupError::Missing { port: port.index, what };
            let s = spi.get_mut(port.chip).and_then(Option::take).ok_or(missing("SPI device"))?;
            let r = resets.get_mut(port.chip).and_then(Option::take).ok_or(missing("reset line"))?;
            let i = irq.pin(port.chip).ok_or(missing("interrupt line"))?;
            Ok((s, r, i))
        };
        let edges: IrqEdges = Arc::new(Mutex::new(irq_rx));
        let card = {
            // Both closures take from the same device lists, one port at a time.
            let take = std::cell::RefCell::new(&mut take);
            LineCard::build(
                &map,
                country,
                Monotonic::new(),
                Some(edges),
                &mut linux_embedded_hal::Delay,
                |p| (take.borrow_mut())(p),
                |p| (take.borrow_mut())(p),
            )
        }
        .map_err(|e| crate::open_err(&format!("board {}", map.board), e))?;
        Ok(card.into_board(desc, Box::new(pcm), Some(Box::new(irq))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::map_board;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use gw_hal::chips::si3050::model::{self as daa_model, ModelHandle};
    use gw_hal::chips::si3215::model::Si3215Model;
    use gw_hal::fxo_conformance::{self, FxoBench};
    use gw_hal::fxs_conformance::{self, FxsBench};
    use gw_hal::Polarity;

    type Card = LineCard<
        si3215::model::ModelSpi,
        si3215::model::ModelReset,
        si3215::model::ModelInt,
        daa_model::ModelSpi,
        daa_model::ModelReset,
        daa_model::ModelInt,
        VirtualClock,
    >;

    /// The reference board's line card on the chip models: what the board
    /// code path builds, with models instead of spidev and gpio-cdev.
    fn reference_card() -> (Card, Si3215Model, ModelHandle, VirtualClock) {
        let map = map_board(&gw_board::rpi4_fxs_fxo()).unwrap();
        let slic = Si3215Model::new();
        let (spi, rst, int, daa) = daa_model::new_model();
        let mut daa_io = Some((spi, rst, int));
        let clock = VirtualClock::default();
        let card = LineCard::build(
            &map,
            Country::Fcc,
            clock.clone(),
            None,
            &mut NoopDelay::new(),
            |_| Ok((slic.spi(), slic.reset_pin(), slic.int_pin())),
            |p| daa_io.take().ok_or(PortSetupError::Missing { port: p.index, what: "DAA" }),
        )
        .unwrap();
        (card, slic, daa, clock)
    }

    /// The phone side of the reference board's FXS port, through the port
    /// type gatewayd gets: time passes on the clock and the control plane's
    /// 10 ms poll is what ticks the driver.
    struct BoardFxsBench {
        card: Card,
        m: Si3215Model,
        clock: VirtualClock,
        pending: std::collections::VecDeque<FxsEvent>,
    }

    impl BoardFxsBench {
        fn step(&mut self) {
            self.clock.advance(10);
            self.m.advance_ms(10);
            while let Some(e) = self.card.fxs[0].1.poll_event() {
                self.pending.push_back(e);
            }
        }
    }

    impl FxsBench for BoardFxsBench {
        type Port = Ticked<Si3215<si3215::model::ModelSpi, si3215::model::ModelReset, si3215::model::ModelInt>, VirtualClock>;

        fn port(&mut self) -> &mut Self::Port {
            &mut self.card.fxs[0].1
        }
        fn set_off_hook(&mut self, off: bool) {
            self.m.set_off_hook(off);
        }
        fn flash(&mut self) {
            self.m.set_off_hook(false);
            for _ in 0..30 {
                self.step();
            }
            self.m.set_off_hook(true);
        }
        fn next_event(&mut self) -> Option<FxsEvent> {
            for _ in 0..300 {
                if let Some(e) = self.pending.pop_front() {
                    return Some(e);
                }
                self.step();
            }
            None
        }
        fn start_ringing(&mut self, cadence: RingCadence) -> bool {
            self.card.fxs[0].1.set_ringing(Some(cadence)).unwrap();
            self.m.ring_voltage()
        }
        fn advance(&mut self, ms: u32) -> Vec<(u32, bool)> {
            let mut changes = Vec::new();
            let mut last = self.m.ring_voltage();
            for i in 1..=ms / 10 {
                self.step();
                let now = self.m.ring_voltage();
                if now != last {
                    changes.push((i * 10, now));
                    last = now;
                }
            }
            changes
        }
        fn ring_dropped(&mut self) -> bool {
            !self.m.ring_voltage()
        }
    }

    /// The exchange side of the reference board's FXO port.
    struct BoardFxoBench {
        card: Card,
        m: ModelHandle,
        clock: VirtualClock,
        polarity: Polarity,
        loop_closed: bool,
        pending: std::collections::VecDeque<FxoEvent>,
    }

    impl BoardFxoBench {
        fn step(&mut self) {
            self.clock.advance(10);
            self.m.set_now(self.clock.now_ms());
            while let Some(e) = self.card.fxo[0].1.poll_event() {
                self.pending.push_back(e);
            }
        }
    }

    impl FxoBench for BoardFxoBench {
        type Port = Ticked<Si3050<daa_model::ModelSpi, daa_model::ModelReset, daa_model::ModelInt>, VirtualClock>;

        fn port(&mut self) -> &mut Self::Port {
            &mut self.card.fxo[0].1
        }
        fn set_ringing(&mut self, on: bool) {
            self.m.set_ringing(on);
        }
        fn set_polarity(&mut self, polarity: Polarity) {
            if polarity != self.polarity {
                self.m.reverse_polarity();
                self.polarity = polarity;
            }
        }
        fn set_battery(&mut self, on: bool) {
            self.m.set_battery(on);
        }
        fn next_event(&mut self) -> Option<FxoEvent> {
            for _ in 0..300 {
                if let Some(e) = self.pending.pop_front() {
                    return Some(e);
                }
                self.step();
            }
            None
        }
        fn advance(&mut self, ms: u32) -> Vec<(u32, bool)> {
            let mut seen = Vec::new();
            let mut t = 0;
            loop {
                let closed = self.m.off_hook();
                if closed != self.loop_closed {
                    seen.push((t, closed));
                    self.loop_closed = closed;
                }
                if t >= ms {
                    return seen;
                }
                self.step();
                t += 10;
            }
        }
    }

    #[test]
    fn reference_board_fxs_port_passes_the_hal_fxs_behaviour_tests() {
        let (card, m, _daa, clock) = reference_card();
        assert_eq!((card.fxs.len(), card.fxo.len(), card.fxs[0].0), (1, 1, 0));
        let mut b = BoardFxsBench { card, m, clock, pending: Default::default() };
        fxs_conformance::run_all(&mut b);
        assert!(b.m.violations().is_empty(), "{:?}", b.m.violations());
        assert_eq!(b.card.fxs[0].1.tick_errors(), (0, None));
    }

    #[test]
    fn reference_board_fxo_port_passes_the_hal_fxo_behaviour_tests() {
        let (card, _slic, m, clock) = reference_card();
        assert_eq!(card.fxo[0].0, 1, "the DAA is on timeslot 1");
        let mut b = BoardFxoBench {
            card,
            m,
            clock,
            polarity: Polarity::Normal,
            loop_closed: false,
            pending: Default::default(),
        };
        b.advance(200);
        fxo_conformance::run_all(&mut b);
        assert_eq!(b.m.state().framing_errors, 0, "CS released after every byte");
        assert_eq!(b.card.fxo[0].1.tick_errors(), (0, None));
    }

    /// Without polls nothing happens on the driver; one poll after the line
    /// changed (and the debounce passed on the clock) reports it.
    #[test]
    fn a_poll_ticks_the_driver_once_per_millisecond() {
        let (mut card, m, _daa, clock) = reference_card();
        let port = &mut card.fxs[0].1;
        m.set_off_hook(true);
        m.advance_ms(200);
        let before = m.chip().transactions;
        assert_eq!(port.poll_event(), None, "the clock did not move: no tick, nothing seen");
        assert_eq!(m.chip().transactions, before, "no SPI access without time passing");
        for _ in 0..20 {
            clock.advance(10);
            if let Some(e) = port.poll_event() {
                assert_eq!(e, FxsEvent::OffHook);
                assert_eq!(port.hook(), HookState::OffHook);
                return;
            }
        }
        panic!("off hook not reported within 200 ms of polling");
    }

    #[test]
    fn a_failing_chip_is_counted_not_a_panic() {
        let (mut card, _m, daa, clock) = reference_card();
        daa.state_mut().bus_down = true;
        daa.set_ringing(true); // the DAA interrupts; serving it needs the bus
        clock.advance(10);
        daa.set_now(10);
        assert_eq!(card.fxo[0].1.poll_event(), None);
        let (n, e) = card.fxo[0].1.tick_errors();
        assert_eq!(n, 1);
        assert!(e.unwrap().starts_with("si3050: Spi"), "{e:?}");
    }

    #[test]
    fn a_board_whose_chip_does_not_answer_is_refused_with_the_port() {
        let map = map_board(&gw_board::rpi4_fxs_fxo()).unwrap();
        let slic = Si3215Model::new();
        let (spi, rst, int, daa) = daa_model::new_model();
        daa.state_mut().id_reg2 = 0xFF;
        let mut daa_io = Some((spi, rst, int));
        let r: Result<Card, _> = LineCard::build(
            &map,
            Country::Fcc,
            VirtualClock::default(),
            None,
            &mut NoopDelay::new(),
            |_| Ok((slic.spi(), slic.reset_pin(), slic.int_pin())),
            |p| daa_io.take().ok_or(PortSetupError::Missing { port: p.index, what: "DAA" }),
        );
        let Err(e) = r else { panic!("built a card whose DAA does not answer") };
        assert!(e.to_string().starts_with("port 1 (/dev/spidev0.1): WrongId"), "{e}");
        // A device that could not be handed over stops the build too.
        let r: Result<Card, _> = LineCard::build(
            &map,
            Country::Fcc,
            VirtualClock::default(),
            None,
            &mut NoopDelay::new(),
            |p| Err(PortSetupError::Missing { port: p.index, what: "SPI device" }),
            |p| Err(PortSetupError::Missing { port: p.index, what: "SPI device" }),
        );
        assert_eq!(r.err().map(|e| e.to_string()).as_deref(), Some("port 0: no SPI device"));
    }
}
