//! The sim line card: FXS ports and a PCM bus in software, wired to `linesim`
//! over the sim-link protocol (`hal/SIMLINK.md`).
//!
//! # How to drive it
//! 1. [`SimCard::start`] binds the listener and spawns one I/O thread.
//! 2. [`SimCard::take_ports`] hands the [`SimFxsPort`]s to the control plane and
//!    [`SimCard::take_pcm`] the [`SimPcmBus`] to the real-time thread.
//! 3. The rt thread calls [`PcmBus::exchange`] every 10 ms. That is the card's
//!    clock (SIMLINK.md, "Clocking"): each call is one tick; the I/O thread sends
//!    one AUDIO frame per port per tick and advances ring cadences by 10 ms per
//!    tick. Without exchanges nothing is clocked and cadences stand still.
//! 4. The control plane polls [`FxsPort::poll_event`] after the closure given to
//!    [`SimCard::set_event_notify`] fires.
//! 5. Dropping the [`SimCard`] stops the I/O thread; ports then answer
//!    [`PortError::CardGone`].
//!
//! # Threads
//! The rt side and the I/O thread share only `heapless::spsc` queues (per port:
//! tx frames rt -> I/O, rx frames I/O -> rt) and an atomic tick counter, so
//! `exchange` never locks, allocates, blocks or makes a syscall. The queues are
//! leaked boxes (a few KiB per port per started card) so that the split halves
//! are `'static`. Port control and supervision state sit behind one mutex shared
//! by the control plane and the I/O thread; neither is real-time.

#![allow(clippy::new_without_default)]

pub mod wire;

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use heapless::spsc::{Consumer, Producer, Queue};

use crate::isdn::{
    Alarms, DChannel, DChannelError, DChannelStats, L1State, L1Status, Side, SpanKind, MAX_FRAME, MIN_FRAME,
};
use crate::{
    Frame, FxoEvent, FxoLineStatus, FxoPort, FxsEvent, FxsPort, HookState, LineFeed, PcmBus, PcmStats,
    Polarity, PortError, RingCadence, FRAME_MS, FRAME_SAMPLES,
};
use wire::{Message, PortKind};

/// Slots of each per-port spsc queue (capacity is one less: 310 ms of audio).
const QUEUE_SLOTS: usize = 32;
/// Receive frames queued ahead of the rt thread to absorb I/O-thread jitter.
const RX_PREFILL: usize = 2;
/// Above this many queued rx frames, frames from linesim are dropped rather than
/// letting the rt path's latency grow.
const RX_MAX_DEPTH: usize = 8;
/// How long the I/O thread sleeps when it found nothing to do.
const IDLE_SLEEP: Duration = Duration::from_millis(1);
/// A peer that lets this much unsent output pile up is not reading: drop it.
const MAX_OUTPUT: usize = 512 * 1024;
/// Highest port count: the port field is a u8 and 0xFF means "no port".
pub const MAX_PORTS: usize = 254;

const SILENCE: Frame = [0; FRAME_SAMPLES];

/// Where the card listens and how many ports it has.
///
/// Card ports `0..ports` are FXS, `ports..ports + fxo_ports` are FXO; card
/// port `i` is PCM channel `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimCardConfig {
    pub listen: SocketAddr,
    /// FXS ports.
    pub ports: usize,
    /// FXO ports, after the FXS ones.
    pub fxo_ports: usize,
}

impl SimCardConfig {
    /// A card with `ports` FXS ports and no FXO port.
    pub fn fxs(listen: SocketAddr, ports: usize) -> Self {
        SimCardConfig { listen, ports, fxo_ports: 0 }
    }
}

/// Voltages and loop current [`FxoPort::line_status`] reports on the sim
/// card (a simulated DAA: the line is ideal).
pub const FXO_IDLE_VOLTS: i16 = 48;
pub const FXO_SEIZED_VOLTS: i16 = 8;
pub const FXO_RING_VOLTS: i16 = 90;
pub const FXO_LOOP_MA: u16 = 25;

/// Ringing state of one port: position inside the cadence.
#[derive(Debug, Clone, Copy)]
struct Ringing {
    cadence: RingCadence,
    /// Index into `cadence.periods()`; even = ring voltage on.
    period: usize,
    /// Time spent in `period` so far.
    elapsed_ms: u32,
}

impl Ringing {
    fn new(cadence: RingCadence) -> Self {
        Ringing { cadence, period: 0, elapsed_ms: 0 }
    }

    fn voltage_on(&self) -> bool {
        self.period & 1 == 0
    }

    fn advance(&mut self, ms: u32) {
        let periods = self.cadence.periods();
        self.elapsed_ms += ms;
        // RingCadence::new guarantees non-zero periods, so this terminates.
        while self.elapsed_ms >= u32::from(periods[self.period]) {
            self.elapsed_ms -= u32::from(periods[self.period]);
            self.period = (self.period + 1) % periods.len();
        }
    }
}

/// Control-plane view of one port, shared with the I/O thread.
#[derive(Debug)]
struct PortCtl {
    hook: HookState,
    events: VecDeque<FxsEvent>,
    feed: LineFeed,
    ringing: Option<Ringing>,
}

impl PortCtl {
    fn new() -> Self {
        PortCtl {
            hook: HookState::OnHook,
            events: VecDeque::new(),
            feed: LineFeed::Forward,
            ringing: None,
        }
    }

    fn ring_voltage(&self) -> bool {
        self.ringing.is_some_and(|r| r.voltage_on())
    }
}

/// Control-plane view of one FXO port, shared with the I/O thread.
#[derive(Debug)]
struct FxoCtl {
    events: VecDeque<FxoEvent>,
    /// The control plane wants the line seized.
    seized: bool,
    /// A timed loop break (flash or dial pulse) in progress: ms left.
    open_ms: u32,
    /// Line state as told by linesim (the central office).
    ringing: bool,
    polarity: Polarity,
    loop_current: bool,
}

impl FxoCtl {
    fn new() -> Self {
        FxoCtl {
            events: VecDeque::new(),
            seized: false,
            open_ms: 0,
            ringing: false,
            polarity: Polarity::Normal,
            loop_current: true,
        }
    }

    /// The loop as the line sees it: seized and not in a timed break.
    fn loop_closed(&self) -> bool {
        self.seized && self.open_ms == 0
    }

    /// Back to an idle exchange line (linesim detached); events for what changed.
    fn reset_line(&mut self) -> bool {
        let mut any = false;
        if self.ringing {
            self.ringing = false;
            self.events.push_back(FxoEvent::RingStop);
            any = true;
        }
        if self.polarity == Polarity::Reversed {
            self.polarity = Polarity::Normal;
            self.events.push_back(FxoEvent::PolarityReversal);
            any = true;
        }
        if !self.loop_current {
            self.loop_current = true;
            self.events.push_back(FxoEvent::LoopCurrentRestore);
            any = true;
        }
        any
    }
}

/// Received D-channel frames kept for the control plane before the oldest is dropped.
const SPAN_RX_QUEUE: usize = 64;
/// D-channel frames waiting for the I/O thread before `send_frame` says `Busy`.
const SPAN_TX_QUEUE: usize = 64;

/// Control-plane view of one ISDN span, shared with the I/O thread.
#[derive(Debug)]
struct SpanCtl {
    kind: SpanKind,
    side: Side,
    /// Card port (channel) of B1; the B-channels follow.
    first_channel: usize,
    l1: L1Status,
    l1_events: VecDeque<L1Status>,
    rx: VecDeque<Vec<u8>>,
    /// Whole frames to send (the I/O thread adds the FCS).
    tx: VecDeque<Vec<u8>>,
    /// Activation requests to pass to linesim.
    requests: VecDeque<bool>,
    stats: DChannelStats,
}

impl SpanCtl {
    /// Layer 1 without a far end: deactivated, and on an E1 loss of signal.
    fn idle_l1(kind: SpanKind) -> L1Status {
        L1Status { state: L1State::Deactivated, alarms: Alarms { los: kind == SpanKind::Pri, ..Alarms::default() } }
    }

    fn set_l1(&mut self, status: L1Status) -> bool {
        if self.l1 == status {
            return false;
        }
        self.l1 = status;
        if status.state != L1State::Activated {
            // Nothing more can leave on a dead line.
            self.tx.clear();
        }
        self.l1_events.push_back(status);
        self.stats.l1_changes += 1;
        true
    }

    /// A DFRAME from linesim: FCS and size checked here, below the trait.
    fn receive(&mut self, octets: &[u8]) -> bool {
        let Some(frame) = wire::dframe_check(octets) else {
            if octets.len() < MIN_FRAME + 2 {
                self.stats.malformed += 1;
            } else {
                self.stats.bad_fcs += 1;
            }
            return false;
        };
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            self.stats.malformed += 1;
            return false;
        }
        if self.l1.state != L1State::Activated {
            // No frame crosses a deactivated interface.
            return false;
        }
        if self.rx.len() >= SPAN_RX_QUEUE {
            self.rx.pop_front();
            self.stats.rx_overflow += 1;
        }
        self.rx.push_back(frame.to_vec());
        self.stats.frames_in += 1;
        true
    }
}

type Notify = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    ports: Mutex<Vec<PortCtl>>,
    /// FXO ports; `fxo[i]` is card port `ports.len() + i`. Locked after
    /// `ports` when both are held.
    fxo: Mutex<Vec<FxoCtl>>,
    notify: Mutex<Option<Notify>>,
    /// ISDN spans, in span order. Locked after `ports` and `fxo`.
    spans: Mutex<Vec<SpanCtl>>,
    /// Fired when a span has a frame or a layer-1 event to poll.
    span_notify: Mutex<Option<Notify>>,
    /// Ticks (exchange calls) completed by the rt thread.
    ticks: AtomicU64,
    attached: AtomicBool,
    stop: AtomicBool,
    /// False once the I/O thread has ended.
    alive: AtomicBool,
    /// Why the last linesim connection ended (for diagnostics).
    last_close: Mutex<Option<String>>,
}

impl Shared {
    fn lock_ports(&self) -> Result<MutexGuard<'_, Vec<PortCtl>>, PortError> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(PortError::CardGone);
        }
        self.ports.lock().map_err(|_| PortError::CardGone)
    }

    fn lock_fxo(&self) -> Result<MutexGuard<'_, Vec<FxoCtl>>, PortError> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(PortError::CardGone);
        }
        self.fxo.lock().map_err(|_| PortError::CardGone)
    }

    fn fire_notify(&self) {
        let f = self.notify.lock().ok().and_then(|g| g.clone());
        if let Some(f) = f {
            f();
        }
    }

    fn fire_span_notify(&self) {
        let f = self.span_notify.lock().ok().and_then(|g| g.clone());
        if let Some(f) = f {
            f();
        }
    }
}

/// The software line card. Owns the listener and the I/O thread; dropping it
/// stops the thread.
pub struct SimCard {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    ports: Vec<SimFxsPort>,
    fxo: Vec<SimFxoPort>,
    dchans: Vec<SimDChannel>,
    pcm: Option<SimPcmBus>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCard")
            .field("local_addr", &self.local_addr)
            .field("attached", &self.is_attached())
            .finish()
    }
}

impl SimCard {
    /// Binds `config.listen` and starts the I/O thread.
    ///
    /// Fails with `InvalidInput` when the total port count (FXS and FXO) is
    /// 0 or above [`MAX_PORTS`].
    pub fn start(config: SimCardConfig) -> io::Result<SimCard> {
        Self::start_with_spans(config, &[])
    }

    /// Like [`SimCard::start`], with ISDN spans after the analog ports: each
    /// span's B-channels are card ports (and PCM channels) following the FXO
    /// ports, span by span (SIMLINK.md, "ISDN spans"). Every span starts as TE
    /// with layer 1 deactivated.
    pub fn start_with_spans(config: SimCardConfig, spans: &[SpanKind]) -> io::Result<SimCard> {
        let fxs_ports = config.ports;
        let analog = config.ports.saturating_add(config.fxo_ports);
        let b_total: usize = spans.iter().map(|k| k.b_channels()).sum();
        let total = analog.saturating_add(b_total);
        if total == 0 || total > MAX_PORTS {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("sim card port count {total} not in 1..={MAX_PORTS}"),
            ));
        }
        let config = SimCardConfig { ports: total, ..config };
        let listener = TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            ports: Mutex::new((0..fxs_ports).map(|_| PortCtl::new()).collect()),
            fxo: Mutex::new((0..config.fxo_ports).map(|_| FxoCtl::new()).collect()),
            notify: Mutex::new(None),
            spans: Mutex::new({
                let mut first = analog;
                spans
                    .iter()
                    .map(|&kind| {
                        let c = SpanCtl {
                            kind,
                            side: Side::Te,
                            first_channel: first,
                            l1: SpanCtl::idle_l1(kind),
                            l1_events: VecDeque::new(),
                            rx: VecDeque::new(),
                            tx: VecDeque::new(),
                            requests: VecDeque::new(),
                            stats: DChannelStats::default(),
                        };
                        first += kind.b_channels();
                        c
                    })
                    .collect()
            }),
            span_notify: Mutex::new(None),
            ticks: AtomicU64::new(0),
            attached: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            last_close: Mutex::new(None),
        });

        let mut rt_tx = Vec::with_capacity(config.ports);
        let mut rt_rx = Vec::with_capacity(config.ports);
        let mut io_tx = Vec::with_capacity(config.ports);
        let mut io_rx = Vec::with_capacity(config.ports);
        for _ in 0..config.ports {
            let q: &'static mut Queue<Frame, QUEUE_SLOTS> = Box::leak(Box::new(Queue::new()));
            let (p, c) = q.split();
            rt_tx.push(p);
            io_tx.push(c);
            let q: &'static mut Queue<Frame, QUEUE_SLOTS> = Box::leak(Box::new(Queue::new()));
            let (p, c) = q.split();
            io_rx.push(p);
            rt_rx.push(c);
        }

        let io = IoThread {
            shared: shared.clone(),
            listener,
            conn: None,
            tx: io_tx,
            rx: io_rx,
            ticks_done: 0,
        };
        let thread = std::thread::Builder::new()
            .name("sim-card-io".into())
            .spawn(move || io.run())?;

        let ports = (0..fxs_ports)
            .map(|index| SimFxsPort { shared: shared.clone(), index })
            .collect();
        let fxo = (0..config.fxo_ports)
            .map(|i| SimFxoPort { shared: shared.clone(), index: fxs_ports + i, fxo_index: i })
            .collect();
        let dchans = spans.iter().enumerate().map(|(span, &kind)| SimDChannel { shared: shared.clone(), span, kind }).collect();
        let pcm = SimPcmBus { tx: rt_tx, rx: rt_rx, ticks: shared.clone() };
        Ok(SimCard { shared, local_addr, ports, fxo, dchans, pcm: Some(pcm), thread: Some(thread) })
    }

    /// The bound address (the real port when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The FXS ports, once; later calls return an empty vector.
    pub fn take_ports(&mut self) -> Vec<SimFxsPort> {
        std::mem::take(&mut self.ports)
    }

    /// The FXO ports, once; later calls return an empty vector.
    pub fn take_fxo_ports(&mut self) -> Vec<SimFxoPort> {
        std::mem::take(&mut self.fxo)
    }

    /// The D channels of the spans, in span order, once.
    pub fn take_dchannels(&mut self) -> Vec<SimDChannel> {
        std::mem::take(&mut self.dchans)
    }

    /// Called (from the I/O thread) whenever a span has a received frame or
    /// a layer-1 event to poll. Replaces any earlier closure.
    pub fn set_span_notify(&self, f: Box<dyn Fn() + Send + Sync>) {
        if let Ok(mut g) = self.shared.span_notify.lock() {
            *g = Some(Arc::from(f));
        }
    }

    /// The PCM bus for the rt thread, once.
    pub fn take_pcm(&mut self) -> Option<SimPcmBus> {
        self.pcm.take()
    }

    /// True while a linesim is connected.
    pub fn is_attached(&self) -> bool {
        self.shared.attached.load(Ordering::Acquire)
    }

    /// Why the last linesim connection ended, if one did (e.g. a protocol
    /// error). For the installer's diagnostics.
    pub fn last_disconnect_reason(&self) -> Option<String> {
        self.shared.last_close.lock().ok().and_then(|g| g.clone())
    }

    /// Called (from the I/O thread) whenever a port has a new event to poll.
    /// The control plane passes a closure that wakes its task (e.g. tokio
    /// `Notify::notify_one`). Replaces any earlier closure.
    pub fn set_event_notify(&self, f: Box<dyn Fn() + Send + Sync>) {
        if let Ok(mut g) = self.shared.notify.lock() {
            *g = Some(Arc::from(f));
        }
    }
}

impl Drop for SimCard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One FXS port of the sim card (control plane side).
pub struct SimFxsPort {
    shared: Arc<Shared>,
    index: usize,
}

impl std::fmt::Debug for SimFxsPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFxsPort").field("index", &self.index).finish()
    }
}

impl SimFxsPort {
    /// 0-based index of this port on the card (= its PCM channel).
    pub fn index(&self) -> usize {
        self.index
    }

    fn with_port<T>(&self, f: impl FnOnce(&mut PortCtl) -> Result<T, PortError>) -> Result<T, PortError> {
        let mut ports = self.shared.lock_ports()?;
        let port = ports.get_mut(self.index).ok_or(PortError::NoSuchPort)?;
        f(port)
    }
}

impl FxsPort for SimFxsPort {
    fn hook(&self) -> HookState {
        self.with_port(|p| Ok(p.hook)).unwrap_or(HookState::OnHook)
    }

    fn poll_event(&mut self) -> Option<FxsEvent> {
        self.with_port(|p| Ok(p.events.pop_front())).ok().flatten()
    }

    /// Starting ringing while the phone is off-hook is `InvalidState`; stopping
    /// is always accepted. Restarting with a cadence starts it from its first
    /// on period.
    fn set_ringing(&mut self, cadence: Option<RingCadence>) -> Result<(), PortError> {
        self.with_port(|p| {
            match cadence {
                Some(c) => {
                    if p.hook == HookState::OffHook {
                        return Err(PortError::InvalidState);
                    }
                    p.ringing = Some(Ringing::new(c));
                }
                None => p.ringing = None,
            }
            Ok(())
        })
    }

    fn set_line_feed(&mut self, feed: LineFeed) -> Result<(), PortError> {
        self.with_port(|p| {
            p.feed = feed;
            Ok(())
        })
    }
}

/// One FXO port of the sim card (control plane side): the card is the phone,
/// linesim plays the central office.
pub struct SimFxoPort {
    shared: Arc<Shared>,
    /// Card port index (= its PCM channel).
    index: usize,
    /// Index among the FXO ports.
    fxo_index: usize,
}

impl std::fmt::Debug for SimFxoPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFxoPort").field("index", &self.index).finish()
    }
}

impl SimFxoPort {
    /// 0-based index of this port on the card (= its PCM channel and its
    /// sim-link port number); FXO ports follow the FXS ones.
    pub fn index(&self) -> usize {
        self.index
    }

    fn with_port<T>(&self, f: impl FnOnce(&mut FxoCtl) -> Result<T, PortError>) -> Result<T, PortError> {
        let mut ports = self.shared.lock_fxo()?;
        let port = ports.get_mut(self.fxo_index).ok_or(PortError::NoSuchPort)?;
        f(port)
    }
}

impl FxoPort for SimFxoPort {
    fn poll_event(&mut self) -> Option<FxoEvent> {
        self.with_port(|p| Ok(p.events.pop_front())).ok().flatten()
    }

    /// Seizing or releasing is sent at once (SEIZE); it ends a timed break
    /// in progress.
    fn seize(&mut self, on: bool) -> Result<(), PortError> {
        self.with_port(|p| {
            p.seized = on;
            p.open_ms = 0;
            Ok(())
        })
    }

    /// Opens the loop now (SEIZE 0 at once) and closes it again after `ms`
    /// rounded up to whole 10 ms ticks (at least one), counted in the card's
    /// ticks. `InvalidState` when not seized or while an earlier break
    /// runs; `ms` 0 is `InvalidState` too.
    fn flash(&mut self, ms: u16) -> Result<(), PortError> {
        self.with_port(|p| {
            if !p.seized || p.open_ms > 0 || ms == 0 {
                return Err(PortError::InvalidState);
            }
            p.open_ms = u32::from(ms).div_ceil(FRAME_MS) * FRAME_MS;
            Ok(())
        })
    }

    fn line_status(&self) -> FxoLineStatus {
        self.with_port(|p| {
            let closed = p.loop_closed();
            let voltage = if !p.loop_current {
                0
            } else if closed {
                FXO_SEIZED_VOLTS
            } else if p.ringing {
                FXO_RING_VOLTS
            } else {
                FXO_IDLE_VOLTS
            };
            let current = if closed && p.loop_current { FXO_LOOP_MA } else { 0 };
            Ok(FxoLineStatus {
                voltage: Some(voltage),
                loop_current_ma: Some(current),
                polarity: p.polarity,
                ringing: p.ringing,
                seized: p.seized,
            })
        })
        .unwrap_or(FxoLineStatus {
            voltage: None,
            loop_current_ma: None,
            polarity: Polarity::Normal,
            ringing: false,
            seized: false,
        })
    }
}

/// The D channel of one span of the sim card (control plane side). The sim
/// link carries each frame with its FCS; this side checks it (a bad one is
/// counted in [`DChannelStats::bad_fcs`] and dropped) and adds it on send.
pub struct SimDChannel {
    shared: Arc<Shared>,
    span: usize,
    kind: SpanKind,
}

impl std::fmt::Debug for SimDChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDChannel").field("span", &self.span).field("kind", &self.kind).finish()
    }
}

impl SimDChannel {
    /// 0-based span index (the sim-link port field of its D-channel messages).
    pub fn span(&self) -> usize {
        self.span
    }

    fn with_span<T>(&self, f: impl FnOnce(&mut SpanCtl) -> T) -> Result<T, DChannelError> {
        if !self.shared.alive.load(Ordering::Acquire) {
            return Err(DChannelError::CardGone);
        }
        let mut spans = self.shared.spans.lock().map_err(|_| DChannelError::CardGone)?;
        let s = spans.get_mut(self.span).ok_or(DChannelError::CardGone)?;
        Ok(f(s))
    }
}

impl DChannel for SimDChannel {
    fn kind(&self) -> SpanKind {
        self.kind
    }

    fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.with_span(|s| s.rx.pop_front()).ok().flatten()
    }

    fn send_frame(&mut self, frame: &[u8]) -> Result<(), DChannelError> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
            return Err(DChannelError::BadFrame);
        }
        self.with_span(|s| {
            if s.l1.state != L1State::Activated {
                s.stats.tx_refused += 1;
                return Err(DChannelError::L1Down);
            }
            if s.tx.len() >= SPAN_TX_QUEUE {
                return Err(DChannelError::Busy);
            }
            s.tx.push_back(frame.to_vec());
            s.stats.frames_out += 1;
            Ok(())
        })?
    }

    fn poll_l1_event(&mut self) -> Option<L1Status> {
        self.with_span(|s| s.l1_events.pop_front()).ok().flatten()
    }

    fn l1_status(&self) -> L1Status {
        self.with_span(|s| s.l1).unwrap_or(SpanCtl::idle_l1(self.kind))
    }

    /// Passed to linesim as L1_REQUEST (when attached); the state changes
    /// when linesim answers with L1.
    fn request_l1(&mut self, activate: bool) -> Result<(), DChannelError> {
        self.with_span(|s| {
            if s.requests.len() < 8 {
                s.requests.push_back(activate);
            }
        })
    }

    /// Sent to linesim as SPAN (now, or at the next attach).
    fn set_side(&mut self, side: Side) -> Result<(), DChannelError> {
        self.with_span(|s| s.side = side)
    }

    fn stats(&self) -> DChannelStats {
        self.with_span(|s| s.stats).unwrap_or_default()
    }
}

/// The sim card's PCM bus (rt side). Channel `i` is card port `i` (FXS
/// ports, then FXO ports).
pub struct SimPcmBus {
    tx: Vec<Producer<'static, Frame>>,
    rx: Vec<Consumer<'static, Frame>>,
    ticks: Arc<Shared>,
}

impl std::fmt::Debug for SimPcmBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPcmBus").field("channels", &self.tx.len()).finish()
    }
}

impl PcmBus for SimPcmBus {
    fn channels(&self) -> usize {
        self.tx.len()
    }

    /// Lock-free and allocation-free. Missing `tx` entries send silence;
    /// missing `rx` entries are skipped.
    fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
        let mut stats = PcmStats::default();
        for (ch, producer) in self.tx.iter_mut().enumerate() {
            let frame = tx.get(ch).unwrap_or(&SILENCE);
            if producer.enqueue(*frame).is_err() {
                stats.tx_overruns += 1;
            }
        }
        for (ch, consumer) in self.rx.iter_mut().enumerate() {
            let frame = match consumer.dequeue() {
                Some(f) => f,
                None => {
                    stats.rx_underruns += 1;
                    SILENCE
                }
            };
            if let Some(slot) = rx.get_mut(ch) {
                *slot = frame;
            }
        }
        // Release: the I/O thread that sees this tick also sees the frames.
        self.ticks.ticks.fetch_add(1, Ordering::Release);
        stats
    }
}

/// One attached linesim.
struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// What linesim was last told, per port (None = not yet).
    sent_feed: Vec<Option<LineFeed>>,
    sent_ring: Vec<Option<bool>>,
    /// FXO: the loop state last sent (SEIZE), per FXO port.
    sent_seize: Vec<Option<bool>>,
    /// ISDN: the side last sent (SPAN), per span.
    sent_side: Vec<Option<Side>>,
}

/// Why a connection ends.
#[derive(Debug)]
enum Close {
    Shutdown,
    PeerClosed,
    Io(io::Error),
    Protocol(wire::WireError),
    VersionMismatch(u8),
    Stalled,
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::Shutdown => f.write_str("card shut down"),
            Close::PeerClosed => f.write_str("linesim closed the connection"),
            Close::Io(e) => write!(f, "I/O error: {e}"),
            Close::Protocol(e) => write!(f, "protocol error: {e}"),
            Close::VersionMismatch(v) => write!(f, "linesim speaks version {v}, card speaks {}", wire::VERSION),
            Close::Stalled => f.write_str("linesim stopped reading"),
        }
    }
}

struct IoThread {
    shared: Arc<Shared>,
    listener: TcpListener,
    conn: Option<Conn>,
    tx: Vec<Consumer<'static, Frame>>,
    rx: Vec<Producer<'static, Frame>>,
    ticks_done: u64,
}

impl IoThread {
    fn run(mut self) {
        for p in &mut self.rx {
            prefill(p);
        }
        while !self.shared.stop.load(Ordering::Acquire) {
            let mut busy = self.accept();
            let mut notify = false;
            if let Some(conn) = self.conn.as_mut() {
                let r = read_input(conn, &self.shared, &mut self.rx, &mut notify);
                busy |= matches!(r, Ok(true));
                if let Err(why) = r {
                    self.close(why, &mut notify);
                }
            }
            self.sync_control();
            busy |= self.run_ticks();
            if let Some(conn) = self.conn.as_mut() {
                if let Err(why) = flush(conn) {
                    self.close(why, &mut notify);
                }
            }
            if notify {
                self.shared.fire_notify();
            }
            if !busy {
                std::thread::sleep(IDLE_SLEEP);
            }
        }
        let mut notify = false;
        if self.conn.is_some() {
            self.close(Close::Shutdown, &mut notify);
        }
        self.shared.alive.store(false, Ordering::Release);
    }

    /// Accepts pending connections: the first becomes the attached linesim,
    /// any further one is refused by closing it at once.
    fn accept(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    any = true;
                    if self.conn.is_some() {
                        drop(stream);
                        continue;
                    }
                    if let Some(conn) = self.open(stream) {
                        self.conn = Some(conn);
                        self.shared.attached.store(true, Ordering::Release);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return any,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ECONNABORTED, EMFILE...: try again on the next round.
                Err(_) => return any,
            }
        }
    }

    fn open(&mut self, stream: TcpStream) -> Option<Conn> {
        stream.set_nonblocking(true).ok()?;
        let _ = stream.set_nodelay(true);
        let n = self.tx.len();
        let n_fxo = self.shared.fxo.lock().map(|f| f.len()).unwrap_or(0);
        let n_fxs = self.shared.ports.lock().map(|f| f.len()).unwrap_or(0);
        let n_spans = self.shared.spans.lock().map(|s| s.len()).unwrap_or(0);
        let kinds = if n_fxo == 0 && n_spans == 0 {
            Vec::new()
        } else {
            (0..n)
                .map(|i| {
                    if i < n_fxs {
                        PortKind::Fxs
                    } else if i < n_fxs + n_fxo {
                        PortKind::Fxo
                    } else {
                        PortKind::BChannel
                    }
                })
                .collect()
        };
        let mut conn = Conn {
            stream,
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(4096),
            sent_feed: vec![None; n],
            sent_ring: vec![None; n],
            sent_seize: vec![None; n_fxo],
            sent_side: vec![None; n_spans],
        };
        // SIMLINK.md "Connect and disconnect": HELLO, then FEED and RING of
        // every FXS port and SEIZE of every FXO port (sent by sync_control
        // right after).
        Message::Hello { version: wire::VERSION, ports: n as u8, kinds }.encode(&mut conn.output);
        Some(conn)
    }

    fn close(&mut self, why: Close, notify: &mut bool) {
        self.conn = None;
        if let Ok(mut g) = self.shared.last_close.lock() {
            *g = Some(why.to_string());
        }
        self.shared.attached.store(false, Ordering::Release);
        if let Ok(mut ports) = self.shared.ports.lock() {
            for p in ports.iter_mut() {
                if p.hook == HookState::OffHook {
                    p.hook = HookState::OnHook;
                    p.events.push_back(FxsEvent::OnHook);
                    *notify = true;
                }
            }
        }
        if let Ok(mut fxo) = self.shared.fxo.lock() {
            for p in fxo.iter_mut() {
                *notify |= p.reset_line();
            }
        }
        if let Ok(mut spans) = self.shared.spans.lock() {
            let mut any = false;
            for s in spans.iter_mut() {
                s.requests.clear();
                any |= s.set_l1(SpanCtl::idle_l1(s.kind));
            }
            if any {
                self.shared.fire_span_notify();
            }
        }
        for p in &mut self.rx {
            prefill(p);
        }
    }

    /// Tells linesim about FEED and RING changes made by the control plane
    /// (and ring trips) without waiting for a tick.
    fn sync_control(&mut self) {
        let Some(conn) = self.conn.as_mut() else { return };
        let Ok(ports) = self.shared.ports.lock() else { return };
        for (i, p) in ports.iter().enumerate() {
            sync_port(conn, i, p);
        }
        let Ok(fxo) = self.shared.fxo.lock() else { return };
        for (k, p) in fxo.iter().enumerate() {
            sync_fxo(conn, ports.len(), k, p);
        }
        let Ok(mut spans) = self.shared.spans.lock() else { return };
        for (k, s) in spans.iter_mut().enumerate() {
            sync_span(conn, k, s);
        }
    }

    /// Processes the ticks the rt thread completed since the last call: per
    /// tick, RING changes, then one AUDIO frame per port, then the cadence
    /// advances by one frame time.
    fn run_ticks(&mut self) -> bool {
        let now = self.shared.ticks.load(Ordering::Acquire);
        if now == self.ticks_done {
            return false;
        }
        let Ok(mut ports) = self.shared.ports.lock() else { return false };
        let Ok(mut fxo) = self.shared.fxo.lock() else { return false };
        let n_fxs = ports.len();
        let n_analog = n_fxs + fxo.len();
        while self.ticks_done < now {
            self.ticks_done += 1;
            for i in 0..self.tx.len() {
                let frame = self.tx[i].dequeue().unwrap_or(SILENCE);
                if let Some(conn) = self.conn.as_mut() {
                    if i < n_fxs {
                        sync_port(conn, i, &ports[i]);
                    } else if i < n_analog {
                        sync_fxo(conn, n_fxs, i - n_fxs, &fxo[i - n_fxs]);
                    }
                    wire::encode_audio(&mut conn.output, i as u8, &frame);
                } else if self.rx[i].len() < RX_PREFILL {
                    // Detached: the line is silent, not missing.
                    let _ = self.rx[i].enqueue(SILENCE);
                }
                if i < n_fxs {
                    if let Some(r) = ports[i].ringing.as_mut() {
                        r.advance(FRAME_MS);
                    }
                } else if i < n_analog {
                    let p = &mut fxo[i - n_fxs];
                    p.open_ms = p.open_ms.saturating_sub(FRAME_MS);
                }
            }
        }
        true
    }
}

fn prefill(p: &mut Producer<'static, Frame>) {
    while p.len() < RX_PREFILL {
        if p.enqueue(SILENCE).is_err() {
            break;
        }
    }
}

fn sync_port(conn: &mut Conn, i: usize, p: &PortCtl) {
    let port = i as u8;
    if conn.sent_feed[i] != Some(p.feed) {
        Message::Feed { port, feed: p.feed }.encode(&mut conn.output);
        conn.sent_feed[i] = Some(p.feed);
    }
    let on = p.ring_voltage();
    if conn.sent_ring[i] != Some(on) {
        Message::Ring { port, on }.encode(&mut conn.output);
        conn.sent_ring[i] = Some(on);
    }
}

fn sync_fxo(conn: &mut Conn, n_fxs: usize, k: usize, p: &FxoCtl) {
    let closed = p.loop_closed();
    if conn.sent_seize[k] != Some(closed) {
        Message::Seize { port: (n_fxs + k) as u8, on: closed }.encode(&mut conn.output);
        conn.sent_seize[k] = Some(closed);
    }
}

/// SIMLINK.md "ISDN spans": the SPAN description when the side changed (and
/// after HELLO), then pending activation requests and D-channel frames.
fn sync_span(conn: &mut Conn, k: usize, s: &mut SpanCtl) {
    let span = k as u8;
    if conn.sent_side[k] != Some(s.side) {
        Message::Span {
            span,
            kind: s.kind,
            side: s.side,
            first_channel: s.first_channel as u8,
            channels: s.kind.b_channels() as u8,
        }
        .encode(&mut conn.output);
        conn.sent_side[k] = Some(s.side);
    }
    while let Some(activate) = s.requests.pop_front() {
        Message::L1Request { span, activate }.encode(&mut conn.output);
    }
    while let Some(frame) = s.tx.pop_front() {
        Message::DFrame { span, octets: wire::dframe_payload(&frame) }.encode(&mut conn.output);
    }
}

/// Reads what is available and handles every whole frame. `Ok(true)` if any
/// byte arrived.
fn read_input(
    conn: &mut Conn,
    shared: &Shared,
    rx: &mut [Producer<'static, Frame>],
    notify: &mut bool,
) -> Result<bool, Close> {
    let mut got = false;
    let mut buf = [0u8; 4096];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                // Handle what came before the FIN (e.g. a last HOOK) first.
                handle_frames(conn, shared, rx, notify)?;
                return Err(Close::PeerClosed);
            }
            Ok(n) => {
                got = true;
                conn.input.extend_from_slice(&buf[..n]);
                handle_frames(conn, shared, rx, notify)?;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(got),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Close::Io(e)),
        }
    }
}

fn handle_frames(
    conn: &mut Conn,
    shared: &Shared,
    rx: &mut [Producer<'static, Frame>],
    notify: &mut bool,
) -> Result<(), Close> {
    let mut used = 0;
    let result = loop {
        match wire::decode(&conn.input[used..]) {
            Ok(Some((msg, n))) => {
                used += n;
                if let Err(e) = handle_message(msg, shared, rx, notify) {
                    break Err(e);
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(Close::Protocol(e)),
        }
    };
    conn.input.drain(..used);
    result
}

/// SIMLINK.md "Messages", linesim -> card. Frames for ports the card does not
/// have, and card -> linesim types, are ignored.
fn handle_message(
    msg: Message,
    shared: &Shared,
    rx: &mut [Producer<'static, Frame>],
    notify: &mut bool,
) -> Result<(), Close> {
    match msg {
        Message::Hello { version, .. } => {
            if version != wire::VERSION {
                return Err(Close::VersionMismatch(version));
            }
        }
        Message::Audio { port, samples } => {
            if let Some(p) = rx.get_mut(usize::from(port)) {
                if p.len() < RX_MAX_DEPTH {
                    let _ = p.enqueue(samples);
                }
            }
        }
        Message::Ring { port, on } => {
            fxo_line(shared, port, notify, |p| {
                if p.ringing == on {
                    return None;
                }
                p.ringing = on;
                Some(if on { FxoEvent::RingStart } else { FxoEvent::RingStop })
            });
        }
        Message::Polarity { port, polarity } => {
            fxo_line(shared, port, notify, |p| {
                if p.polarity == polarity {
                    return None;
                }
                p.polarity = polarity;
                Some(FxoEvent::PolarityReversal)
            });
        }
        Message::LoopCurrent { port, on } => {
            fxo_line(shared, port, notify, |p| {
                if p.loop_current == on {
                    return None;
                }
                p.loop_current = on;
                Some(if on { FxoEvent::LoopCurrentRestore } else { FxoEvent::LoopCurrentDrop })
            });
        }
        Message::Hook { port, off_hook } => {
            let Ok(mut ports) = shared.ports.lock() else { return Ok(()) };
            let Some(p) = ports.get_mut(usize::from(port)) else { return Ok(()) };
            let new = if off_hook { HookState::OffHook } else { HookState::OnHook };
            if p.hook != new {
                p.hook = new;
                if off_hook {
                    // Ring trip: the ring stops the moment the loop closes.
                    p.ringing = None;
                    p.events.push_back(FxsEvent::OffHook);
                } else {
                    p.events.push_back(FxsEvent::OnHook);
                }
                *notify = true;
            }
        }
        Message::Flash { port } => {
            let Ok(mut ports) = shared.ports.lock() else { return Ok(()) };
            if let Some(p) = ports.get_mut(usize::from(port)) {
                // A flash from an idle line is meaningless: ignore it.
                if p.hook == HookState::OffHook {
                    p.events.push_back(FxsEvent::HookFlash);
                    *notify = true;
                }
            }
        }
        Message::DFrame { span, octets } => {
            let Ok(mut spans) = shared.spans.lock() else { return Ok(()) };
            if let Some(s) = spans.get_mut(usize::from(span)) {
                if s.receive(&octets) {
                    drop(spans);
                    shared.fire_span_notify();
                }
            }
        }
        Message::L1 { span, status } => {
            let Ok(mut spans) = shared.spans.lock() else { return Ok(()) };
            if let Some(s) = spans.get_mut(usize::from(span)) {
                // A BRI has no E1 alarms.
                let status = if s.kind == SpanKind::Bri { L1Status { alarms: Alarms::default(), ..status } } else { status };
                if s.set_l1(status) {
                    drop(spans);
                    shared.fire_span_notify();
                }
            }
        }
        Message::Feed { .. }
        | Message::Seize { .. }
        | Message::Span { .. }
        | Message::L1Request { .. }
        | Message::Unknown { .. } => {}
    }
    Ok(())
}

/// Applies a line change from the central office to FXO port `port` (card
/// numbering); frames for FXS ports or missing ports are ignored.
fn fxo_line(shared: &Shared, port: u8, notify: &mut bool, f: impl FnOnce(&mut FxoCtl) -> Option<FxoEvent>) {
    let Ok(ports) = shared.ports.lock() else { return };
    let n_fxs = ports.len();
    let Some(k) = usize::from(port).checked_sub(n_fxs) else { return };
    let Ok(mut fxo) = shared.fxo.lock() else { return };
    if let Some(p) = fxo.get_mut(k) {
        if let Some(ev) = f(p) {
            p.events.push_back(ev);
            *notify = true;
        }
    }
}

fn flush(conn: &mut Conn) -> Result<(), Close> {
    let mut written = 0;
    let result = loop {
        if written == conn.output.len() {
            break Ok(());
        }
        match conn.stream.write(&conn.output[written..]) {
            Ok(0) => break Err(Close::PeerClosed),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break Err(Close::Io(e)),
        }
    };
    conn.output.drain(..written);
    if result.is_ok() && conn.output.len() > MAX_OUTPUT {
        return Err(Close::Stalled);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// A raw linesim stand-in: a blocking TcpStream and a frame decoder.
    struct Peer {
        stream: TcpStream,
        input: Vec<u8>,
    }

    impl Peer {
        fn connect(card: &SimCard) -> Peer {
            let stream = TcpStream::connect(card.local_addr()).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            Peer { stream, input: Vec::new() }
        }

        fn send(&mut self, m: Message) {
            let mut b = Vec::new();
            m.encode(&mut b);
            self.stream.write_all(&b).unwrap();
        }

        /// Next message, or None when the card closed the connection.
        fn recv(&mut self) -> Option<Message> {
            loop {
                if let Some((m, n)) = wire::decode(&self.input).unwrap() {
                    self.input.drain(..n);
                    return Some(m);
                }
                let mut buf = [0u8; 4096];
                match self.stream.read(&mut buf) {
                    Ok(0) => return None,
                    Ok(n) => self.input.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                    Err(e) => panic!("peer read: {e}"),
                }
            }
        }

        fn expect(&mut self) -> Message {
            self.recv().expect("card closed the connection")
        }

        /// Reads the HELLO and the initial FEED/RING state of `ports` ports.
        fn handshake(&mut self, ports: u8) {
            assert_eq!(self.expect(), Message::Hello { version: 1, ports, kinds: vec![] });
            for port in 0..ports {
                assert_eq!(self.expect(), Message::Feed { port, feed: LineFeed::Forward });
                assert_eq!(self.expect(), Message::Ring { port, on: false });
            }
            self.send(Message::Hello { version: 1, ports: 0, kinds: vec![] });
        }
    }

    fn card(ports: usize) -> SimCard {
        SimCard::start(SimCardConfig::fxs("127.0.0.1:0".parse().unwrap(), ports)).unwrap()
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(3);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn next_event(port: &mut SimFxsPort) -> FxsEvent {
        let mut ev = None;
        wait_until("an event", || {
            ev = port.poll_event();
            ev.is_some()
        });
        ev.unwrap()
    }

    fn tick(pcm: &mut SimPcmBus, value: i16) -> ([Frame; 2], PcmStats) {
        let tx = [[value; FRAME_SAMPLES], [value.wrapping_neg(); FRAME_SAMPLES]];
        let mut rx = [[7; FRAME_SAMPLES]; 2];
        let st = pcm.exchange(&tx, &mut rx);
        (rx, st)
    }

    #[test]
    fn start_rejects_bad_port_counts() {
        for ports in [0, 255] {
            let e = SimCard::start(SimCardConfig::fxs("127.0.0.1:0".parse().unwrap(), ports))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn take_ports_and_pcm_only_once() {
        let mut c = card(3);
        assert_ne!(c.local_addr().port(), 0);
        let ports = c.take_ports();
        assert_eq!(ports.iter().map(|p| p.index()).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(c.take_ports().is_empty());
        assert_eq!(c.take_pcm().unwrap().channels(), 3);
        assert!(c.take_pcm().is_none());
    }

    #[test]
    fn hello_then_state_and_attach() {
        let mut c = card(2);
        let mut ports = c.take_ports();
        ports[1].set_line_feed(LineFeed::Reverse).unwrap();
        assert!(!c.is_attached());
        let mut peer = Peer::connect(&c);
        assert_eq!(peer.expect(), Message::Hello { version: 1, ports: 2, kinds: vec![] });
        assert_eq!(peer.expect(), Message::Feed { port: 0, feed: LineFeed::Forward });
        assert_eq!(peer.expect(), Message::Ring { port: 0, on: false });
        assert_eq!(peer.expect(), Message::Feed { port: 1, feed: LineFeed::Reverse });
        assert_eq!(peer.expect(), Message::Ring { port: 1, on: false });
        wait_until("attach", || c.is_attached());
        // A feed change is sent without waiting for a tick.
        ports[0].set_line_feed(LineFeed::Open).unwrap();
        assert_eq!(peer.expect(), Message::Feed { port: 0, feed: LineFeed::Open });
    }

    #[test]
    fn hook_and_flash_become_events_and_notify() {
        let mut c = card(2);
        let mut ports = c.take_ports();
        let fired = Arc::new(AtomicUsize::new(0));
        let f2 = fired.clone();
        c.set_event_notify(Box::new(move || {
            f2.fetch_add(1, Ordering::SeqCst);
        }));
        let mut peer = Peer::connect(&c);
        peer.handshake(2);
        // Flash while on-hook means nothing.
        peer.send(Message::Flash { port: 1 });
        peer.send(Message::Hook { port: 1, off_hook: true });
        assert_eq!(next_event(&mut ports[1]), FxsEvent::OffHook);
        assert_eq!(ports[1].hook(), HookState::OffHook);
        assert_eq!(ports[0].hook(), HookState::OnHook);
        assert!(fired.load(Ordering::SeqCst) >= 1);
        // A repeated state is not a new event.
        peer.send(Message::Hook { port: 1, off_hook: true });
        peer.send(Message::Flash { port: 1 });
        assert_eq!(next_event(&mut ports[1]), FxsEvent::HookFlash);
        peer.send(Message::Hook { port: 1, off_hook: false });
        assert_eq!(next_event(&mut ports[1]), FxsEvent::OnHook);
        assert_eq!(ports[1].poll_event(), None);
        assert_eq!(ports[0].poll_event(), None);
        // Frames for ports the card lacks are ignored, not fatal.
        peer.send(Message::Hook { port: 9, off_hook: true });
        peer.send(Message::Hook { port: 0, off_hook: true });
        assert_eq!(next_event(&mut ports[0]), FxsEvent::OffHook);
        assert!(c.is_attached());
    }

    #[test]
    fn disconnect_puts_off_hook_ports_on_hook() {
        let mut c = card(2);
        let mut ports = c.take_ports();
        let mut peer = Peer::connect(&c);
        peer.handshake(2);
        peer.send(Message::Hook { port: 0, off_hook: true });
        assert_eq!(next_event(&mut ports[0]), FxsEvent::OffHook);
        drop(peer);
        assert_eq!(next_event(&mut ports[0]), FxsEvent::OnHook);
        assert_eq!(ports[0].hook(), HookState::OnHook);
        assert_eq!(ports[1].poll_event(), None);
        wait_until("detach", || !c.is_attached());
        // A new linesim may attach afterwards.
        let mut peer = Peer::connect(&c);
        peer.handshake(2);
        wait_until("re-attach", || c.is_attached());
    }

    #[test]
    fn second_linesim_is_refused() {
        let c = card(1);
        let mut first = Peer::connect(&c);
        first.handshake(1);
        let mut second = Peer::connect(&c);
        assert_eq!(second.recv(), None);
        // The first one is still served.
        let mut c = c;
        let mut ports = c.take_ports();
        first.send(Message::Hook { port: 0, off_hook: true });
        assert_eq!(next_event(&mut ports[0]), FxsEvent::OffHook);
    }

    #[test]
    fn protocol_error_closes_connection_and_card_keeps_serving() {
        let c = card(1);
        let mut peer = Peer::connect(&c);
        peer.handshake(1);
        // HOOK with a 2-byte payload.
        peer.stream.write_all(&[0x10, 0, 0, 2, 1, 1]).unwrap();
        assert_eq!(peer.recv(), None);
        wait_until("detach", || !c.is_attached());
        assert!(c.last_disconnect_reason().unwrap().contains("protocol error"));
        let mut peer = Peer::connect(&c);
        peer.handshake(1);
        // A length above 1024 is fatal too.
        peer.stream.write_all(&[0x30, 0, 0x08, 0]).unwrap();
        assert_eq!(peer.recv(), None);
        // Unknown types are skipped.
        let mut peer = Peer::connect(&c);
        peer.handshake(1);
        peer.stream.write_all(&[0x77, 0, 0, 3, 1, 2, 3]).unwrap();
        peer.send(Message::Hook { port: 0, off_hook: true });
        let mut c = c;
        let mut ports = c.take_ports();
        assert_eq!(next_event(&mut ports[0]), FxsEvent::OffHook);
    }

    #[test]
    fn wrong_version_is_refused() {
        let c = card(1);
        let mut peer = Peer::connect(&c);
        assert_eq!(peer.expect(), Message::Hello { version: 1, ports: 1, kinds: vec![] });
        peer.send(Message::Hello { version: 2, ports: 0, kinds: vec![] });
        while peer.recv().is_some() {}
        wait_until("detach", || !c.is_attached());
        assert!(c.last_disconnect_reason().unwrap().contains("version 2"));
    }

    #[test]
    fn audio_flows_both_ways_one_frame_per_tick() {
        let mut c = card(2);
        let mut pcm = c.take_pcm().unwrap();
        let mut peer = Peer::connect(&c);
        peer.handshake(2);
        wait_until("attach", || c.is_attached());
        // Channels are independent queues: collect each one's answers.
        let mut seen: [Vec<i16>; 2] = [Vec::new(), Vec::new()];
        fn collect(seen: &mut [Vec<i16>; 2], rx: &[Frame; 2]) {
            for ch in 0..2 {
                if rx[ch][0] != 0 {
                    assert!(rx[ch].iter().all(|&s| s == rx[ch][0]), "frame arrived whole");
                    seen[ch].push(rx[ch][0]);
                }
            }
        }
        for k in 1..=5i16 {
            let (rx, _) = tick(&mut pcm, k * 100);
            collect(&mut seen, &rx);
            assert_eq!(
                peer.expect(),
                Message::Audio { port: 0, samples: [k * 100; FRAME_SAMPLES] }
            );
            assert_eq!(
                peer.expect(),
                Message::Audio { port: 1, samples: [-k * 100; FRAME_SAMPLES] }
            );
            peer.send(Message::Audio { port: 0, samples: [k; FRAME_SAMPLES] });
            peer.send(Message::Audio { port: 1, samples: [-k; FRAME_SAMPLES] });
        }
        // The answers come out of rx in order, after the silence prefill.
        for _ in 0..400 {
            std::thread::sleep(Duration::from_millis(5));
            let (rx, _) = tick(&mut pcm, 0);
            collect(&mut seen, &rx);
            if seen[0].len() == 5 && seen[1].len() == 5 {
                break;
            }
        }
        assert_eq!(seen[0], vec![1, 2, 3, 4, 5]);
        assert_eq!(seen[1], vec![-1, -2, -3, -4, -5]);
    }

    #[test]
    fn detached_card_receives_silence_and_drops_tx() {
        let mut c = card(2);
        let mut pcm = c.take_pcm().unwrap();
        let mut underruns = 0;
        for _ in 0..50 {
            let (rx, st) = tick(&mut pcm, 1000);
            assert_eq!(rx, [[0; FRAME_SAMPLES]; 2]);
            assert_eq!(st.tx_overruns, 0, "the I/O thread drains tx while detached");
            underruns += st.rx_underruns;
            std::thread::sleep(Duration::from_millis(10));
        }
        // The prefill covers the I/O thread's scheduling jitter.
        assert!(underruns < 10, "{underruns} underruns");
    }

    #[test]
    fn tx_overrun_and_rx_underrun_are_counted() {
        let mut c = card(2);
        let mut pcm = c.take_pcm().unwrap();
        // Stop the I/O thread: nobody drains tx or fills rx any more.
        drop(c.take_ports());
        c.shared.stop.store(true, Ordering::Release);
        c.thread.take().unwrap().join().unwrap();
        let mut total = PcmStats::default();
        for _ in 0..40 {
            let (_, st) = tick(&mut pcm, 1);
            total.tx_overruns += st.tx_overruns;
            total.rx_underruns += st.rx_underruns;
        }
        // 31 frames fit per channel; the prefill gives 2 frames per channel.
        assert_eq!(total.tx_overruns, 2 * (40 - 31));
        assert_eq!(total.rx_underruns, 2 * (40 - RX_PREFILL as u32));
    }

    /// Ticks until `n` AUDIO frames for port 0 went by; returns the RING
    /// messages for port 0 seen on the way, with the number of port-0 audio
    /// frames before each.
    fn run_frames(pcm: &mut SimPcmBus, peer: &mut Peer, n: usize) -> Vec<(usize, bool)> {
        let mut rings = Vec::new();
        let mut frames = 0;
        while frames < n {
            tick(pcm, 0);
            loop {
                match peer.expect() {
                    Message::Ring { port: 0, on } => rings.push((frames, on)),
                    Message::Audio { port: 1, .. } => break,
                    Message::Audio { port: 0, .. } => frames += 1,
                    _ => {}
                }
            }
        }
        rings
    }

    #[test]
    fn ring_cadence_is_exact_in_frame_time() {
        let mut c = card(2);
        let mut pcm = c.take_pcm().unwrap();
        let mut ports = c.take_ports();
        let mut peer = Peer::connect(&c);
        peer.handshake(2);
        wait_until("attach", || c.is_attached());
        ports[0].set_ringing(RingCadence::new(&[200, 400, 100, 300])).unwrap();
        // RING on goes out at once; then the cadence counts ticks.
        assert_eq!(peer.expect(), Message::Ring { port: 0, on: true });
        let rings = run_frames(&mut pcm, &mut peer, 200);
        assert_eq!(
            rings,
            vec![(20, false), (60, true), (70, false), (100, true), (120, false), (160, true), (170, false)]
        );
        // Stopping during an off period changes nothing on the line.
        ports[0].set_ringing(None).unwrap();
        // Restart from the first on period; stopping is immediate, no tick.
        ports[0].set_ringing(RingCadence::new(&[2000, 4000])).unwrap();
        assert_eq!(peer.expect(), Message::Ring { port: 0, on: true });
        ports[0].set_ringing(None).unwrap();
        assert_eq!(peer.expect(), Message::Ring { port: 0, on: false });
    }

    #[test]
    fn ring_trip_and_no_ringing_off_hook() {
        let mut c = card(2);
        let mut pcm = c.take_pcm().unwrap();
        let mut ports = c.take_ports();
        let mut peer = Peer::connect(&c);
        peer.handshake(2);
        ports[0].set_ringing(RingCadence::new(&[2000, 4000])).unwrap();
        assert_eq!(peer.expect(), Message::Ring { port: 0, on: true });
        run_frames(&mut pcm, &mut peer, 5);
        peer.send(Message::Hook { port: 0, off_hook: true });
        // The ring voltage drops as soon as the loop closes, before any tick.
        assert_eq!(peer.expect(), Message::Ring { port: 0, on: false });
        assert_eq!(next_event(&mut ports[0]), FxsEvent::OffHook);
        assert_eq!(
            ports[0].set_ringing(RingCadence::new(&[2000, 4000])),
            Err(PortError::InvalidState)
        );
        assert_eq!(ports[0].set_ringing(None), Ok(()));
        // Ringing stays off across ticks.
        assert!(run_frames(&mut pcm, &mut peer, 30).is_empty());
    }

    #[test]
    fn ringing_state_is_sent_to_a_late_linesim() {
        let mut c = card(1);
        let mut pcm = c.take_pcm().unwrap();
        let mut ports = c.take_ports();
        ports[0].set_ringing(RingCadence::new(&[100, 100])).unwrap();
        // 15 ticks detached: 100 ms on, 50 ms into the off period.
        for _ in 0..15 {
            let mut rx = [[0; FRAME_SAMPLES]; 1];
            pcm.exchange(&[[0; FRAME_SAMPLES]], &mut rx);
        }
        wait_until("ticks processed", || {
            c.shared.ports.lock().unwrap()[0].ringing.unwrap().period == 1
        });
        let mut peer = Peer::connect(&c);
        assert_eq!(peer.expect(), Message::Hello { version: 1, ports: 1, kinds: vec![] });
        assert_eq!(peer.expect(), Message::Feed { port: 0, feed: LineFeed::Forward });
        assert_eq!(peer.expect(), Message::Ring { port: 0, on: false });
    }

    #[test]
    fn ports_report_card_gone_after_drop() {
        let mut c = card(1);
        let mut ports = c.take_ports();
        drop(c);
        assert_eq!(ports[0].set_line_feed(LineFeed::Open), Err(PortError::CardGone));
        assert_eq!(ports[0].set_ringing(None), Err(PortError::CardGone));
        assert_eq!(ports[0].poll_event(), None);
        assert_eq!(ports[0].hook(), HookState::OnHook);
    }

    fn fxo_card(fxs: usize, fxo: usize) -> SimCard {
        let listen = "127.0.0.1:0".parse().unwrap();
        SimCard::start(SimCardConfig { listen, ports: fxs, fxo_ports: fxo }).unwrap()
    }

    fn next_fxo_event(port: &mut SimFxoPort) -> FxoEvent {
        let mut ev = None;
        wait_until("an FXO event", || {
            ev = port.poll_event();
            ev.is_some()
        });
        ev.unwrap()
    }

    /// HELLO with kinds, then FEED/RING of the FXS ports and SEIZE of the FXO ports.
    fn fxo_handshake(peer: &mut Peer, fxs: u8, fxo: u8) {
        let mut kinds = vec![PortKind::Fxs; usize::from(fxs)];
        kinds.extend(vec![PortKind::Fxo; usize::from(fxo)]);
        assert_eq!(peer.expect(), Message::Hello { version: 1, ports: fxs + fxo, kinds });
        for port in 0..fxs {
            assert_eq!(peer.expect(), Message::Feed { port, feed: LineFeed::Forward });
            assert_eq!(peer.expect(), Message::Ring { port, on: false });
        }
        for port in fxs..fxs + fxo {
            assert_eq!(peer.expect(), Message::Seize { port, on: false });
        }
        peer.send(Message::Hello { version: 1, ports: 0, kinds: vec![] });
    }

    #[test]
    fn fxo_ports_are_handed_out_after_the_fxs_ports() {
        let mut c = fxo_card(2, 2);
        assert_eq!(c.take_ports().len(), 2);
        let fxo = c.take_fxo_ports();
        assert_eq!(fxo.iter().map(|p| p.index()).collect::<Vec<_>>(), vec![2, 3]);
        assert!(c.take_fxo_ports().is_empty());
        assert_eq!(c.take_pcm().unwrap().channels(), 4);
        // FXO only is a card too; nothing at all is not.
        assert_eq!(fxo_card(0, 1).take_fxo_ports().len(), 1);
        let listen = "127.0.0.1:0".parse().unwrap();
        let e = SimCard::start(SimCardConfig { listen, ports: 0, fxo_ports: 0 }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = SimCard::start(SimCardConfig { listen, ports: 200, fxo_ports: 55 }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn fxo_line_messages_become_events_and_status() {
        let mut c = fxo_card(1, 2);
        let mut fxs = c.take_ports();
        let mut fxo = c.take_fxo_ports();
        let fired = Arc::new(AtomicUsize::new(0));
        let f2 = fired.clone();
        c.set_event_notify(Box::new(move || {
            f2.fetch_add(1, Ordering::SeqCst);
        }));
        let idle = fxo[0].line_status();
        assert_eq!(
            idle,
            FxoLineStatus {
                voltage: Some(FXO_IDLE_VOLTS),
                loop_current_ma: Some(0),
                polarity: Polarity::Normal,
                ringing: false,
                seized: false
            }
        );
        let mut peer = Peer::connect(&c);
        fxo_handshake(&mut peer, 1, 2);
        peer.send(Message::Ring { port: 1, on: true });
        assert_eq!(next_fxo_event(&mut fxo[0]), FxoEvent::RingStart);
        assert!(fxo[0].line_status().ringing);
        assert_eq!(fxo[0].line_status().voltage, Some(FXO_RING_VOLTS));
        assert!(fired.load(Ordering::SeqCst) >= 1);
        // A repeated state is no event; port 2 is independent.
        peer.send(Message::Ring { port: 1, on: true });
        peer.send(Message::Ring { port: 1, on: false });
        assert_eq!(next_fxo_event(&mut fxo[0]), FxoEvent::RingStop);
        peer.send(Message::Polarity { port: 2, polarity: Polarity::Reversed });
        assert_eq!(next_fxo_event(&mut fxo[1]), FxoEvent::PolarityReversal);
        assert_eq!(fxo[1].line_status().polarity, Polarity::Reversed);
        peer.send(Message::Polarity { port: 2, polarity: Polarity::Reversed });
        peer.send(Message::Polarity { port: 2, polarity: Polarity::Normal });
        assert_eq!(next_fxo_event(&mut fxo[1]), FxoEvent::PolarityReversal);
        fxo[1].seize(true).unwrap();
        assert_eq!(peer.expect(), Message::Seize { port: 2, on: true });
        let st = fxo[1].line_status();
        assert_eq!((st.seized, st.voltage, st.loop_current_ma), (true, Some(FXO_SEIZED_VOLTS), Some(FXO_LOOP_MA)));
        peer.send(Message::LoopCurrent { port: 2, on: false });
        assert_eq!(next_fxo_event(&mut fxo[1]), FxoEvent::LoopCurrentDrop);
        assert_eq!(fxo[1].line_status().loop_current_ma, Some(0));
        peer.send(Message::LoopCurrent { port: 2, on: true });
        assert_eq!(next_fxo_event(&mut fxo[1]), FxoEvent::LoopCurrentRestore);
        // FXO messages for the FXS port, and FXS messages for FXO ports, are ignored.
        peer.send(Message::Ring { port: 0, on: true });
        peer.send(Message::Polarity { port: 0, polarity: Polarity::Reversed });
        peer.send(Message::Hook { port: 1, off_hook: true });
        peer.send(Message::Hook { port: 0, off_hook: true });
        assert_eq!(next_event(&mut fxs[0]), FxsEvent::OffHook);
        assert_eq!(fxo[0].poll_event(), None);
        assert_eq!(fxo[1].poll_event(), None);
        assert!(c.is_attached());
    }

    #[test]
    fn fxo_detach_resets_the_line_with_events() {
        let mut c = fxo_card(0, 1);
        let mut fxo = c.take_fxo_ports();
        let mut peer = Peer::connect(&c);
        fxo_handshake(&mut peer, 0, 1);
        peer.send(Message::Ring { port: 0, on: true });
        peer.send(Message::Polarity { port: 0, polarity: Polarity::Reversed });
        peer.send(Message::LoopCurrent { port: 0, on: false });
        assert_eq!(next_fxo_event(&mut fxo[0]), FxoEvent::RingStart);
        assert_eq!(next_fxo_event(&mut fxo[0]), FxoEvent::PolarityReversal);
        assert_eq!(next_fxo_event(&mut fxo[0]), FxoEvent::LoopCurrentDrop);
        drop(peer);
        assert_eq!(next_fxo_event(&mut fxo[0]), FxoEvent::RingStop);
        assert_eq!(next_fxo_event(&mut fxo[0]), FxoEvent::PolarityReversal);
        assert_eq!(next_fxo_event(&mut fxo[0]), FxoEvent::LoopCurrentRestore);
        let st = fxo[0].line_status();
        assert!(!st.ringing && st.polarity == Polarity::Normal);
    }

    #[test]
    fn fxo_flash_opens_the_loop_for_whole_ticks() {
        let mut c = fxo_card(1, 1);
        let mut pcm = c.take_pcm().unwrap();
        let mut fxo = c.take_fxo_ports();
        let mut peer = Peer::connect(&c);
        fxo_handshake(&mut peer, 1, 1);
        wait_until("attach", || c.is_attached());
        assert_eq!(fxo[0].flash(100), Err(PortError::InvalidState), "not seized");
        fxo[0].seize(true).unwrap();
        assert_eq!(peer.expect(), Message::Seize { port: 1, on: true });
        fxo[0].flash(55).unwrap();
        assert_eq!(fxo[0].flash(55), Err(PortError::InvalidState), "a break runs");
        assert_eq!(peer.expect(), Message::Seize { port: 1, on: false });
        // Count port 1's audio frames until the loop closes again: 60 ms.
        let mut frames = 0;
        'ticks: for _ in 0..20 {
            let tx = [[0; FRAME_SAMPLES]; 2];
            let mut rx = [[0; FRAME_SAMPLES]; 2];
            pcm.exchange(&tx, &mut rx);
            loop {
                match peer.expect() {
                    Message::Seize { port: 1, on: true } => break 'ticks,
                    Message::Audio { port: 1, .. } => {
                        frames += 1;
                        break;
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(frames, 6);
        assert!(fxo[0].line_status().seized);
        fxo[0].seize(false).unwrap();
        let m = loop {
            match peer.expect() {
                Message::Audio { .. } => continue,
                m => break m,
            }
        };
        assert_eq!(m, Message::Seize { port: 1, on: false });
        assert_eq!(fxo[0].flash(0), Err(PortError::InvalidState));
    }

    #[test]
    fn fxo_audio_rides_its_own_channel() {
        let mut c = fxo_card(1, 1);
        let mut pcm = c.take_pcm().unwrap();
        let mut peer = Peer::connect(&c);
        fxo_handshake(&mut peer, 1, 1);
        wait_until("attach", || c.is_attached());
        let (_, _) = tick(&mut pcm, 300);
        assert_eq!(peer.expect(), Message::Audio { port: 0, samples: [300; FRAME_SAMPLES] });
        assert_eq!(peer.expect(), Message::Audio { port: 1, samples: [-300; FRAME_SAMPLES] });
        peer.send(Message::Audio { port: 1, samples: [55; FRAME_SAMPLES] });
        let mut got = false;
        for _ in 0..400 {
            std::thread::sleep(Duration::from_millis(2));
            let (rx, _) = tick(&mut pcm, 0);
            assert_eq!(rx[0][0], 0);
            if rx[1][0] == 55 {
                got = true;
                break;
            }
        }
        assert!(got, "the FXO port's audio reached channel 1");
    }

    #[test]
    fn fxo_ports_report_card_gone_after_drop() {
        let mut c = fxo_card(0, 1);
        let mut fxo = c.take_fxo_ports();
        drop(c);
        assert_eq!(fxo[0].seize(true), Err(PortError::CardGone));
        assert_eq!(fxo[0].poll_event(), None);
        assert_eq!(fxo[0].line_status().voltage, None);
    }

    /// The sim card against the HAL's shared FXS behaviour checks.
    struct SimFxsBench {
        _card: SimCard,
        pcm: SimPcmBus,
        port: SimFxsPort,
        peer: Peer,
    }

    impl crate::fxs_conformance::FxsBench for SimFxsBench {
        type Port = SimFxsPort;

        fn port(&mut self) -> &mut SimFxsPort {
            &mut self.port
        }

        fn set_off_hook(&mut self, off: bool) {
            self.peer.send(Message::Hook { port: 0, off_hook: off });
        }

        fn flash(&mut self) {
            self.peer.send(Message::Flash { port: 0 });
        }

        fn next_event(&mut self) -> Option<FxsEvent> {
            let end = Instant::now() + Duration::from_millis(500);
            while Instant::now() < end {
                if let Some(e) = self.port.poll_event() {
                    return Some(e);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        }

        fn start_ringing(&mut self, cadence: RingCadence) -> bool {
            self.port.set_ringing(Some(cadence)).unwrap();
            self.peer.expect() == Message::Ring { port: 0, on: true }
        }

        fn advance(&mut self, ms: u32) -> Vec<(u32, bool)> {
            let n = (ms / FRAME_MS) as usize;
            run_frames(&mut self.pcm, &mut self.peer, n).into_iter().map(|(f, on)| (f as u32 * FRAME_MS, on)).collect()
        }

        fn ring_dropped(&mut self) -> bool {
            self.peer.expect() == Message::Ring { port: 0, on: false }
        }
    }

    #[test]
    fn fxs_behaviour_checks_hold_on_the_sim_card() {
        let mut c = card(2);
        let pcm = c.take_pcm().unwrap();
        let port = c.take_ports().remove(0);
        let mut peer = Peer::connect(&c);
        peer.handshake(2);
        wait_until("attach", || c.is_attached());
        let mut b = SimFxsBench { _card: c, pcm, port, peer };
        crate::fxs_conformance::run_all(&mut b);
    }

    fn span_card() -> SimCard {
        let cfg = SimCardConfig { listen: "127.0.0.1:0".parse().unwrap(), ports: 1, fxo_ports: 1 };
        SimCard::start_with_spans(cfg, &[SpanKind::Bri, SpanKind::Pri]).unwrap()
    }

    fn next_l1(d: &mut SimDChannel) -> L1Status {
        let mut ev = None;
        wait_until("an L1 event", || {
            ev = d.poll_l1_event();
            ev.is_some()
        });
        ev.unwrap()
    }

    #[test]
    fn spans_add_b_channels_and_describe_themselves() {
        let mut c = span_card();
        assert_eq!(c.take_pcm().unwrap().channels(), 2 + 2 + 30);
        let mut d = c.take_dchannels();
        assert_eq!(d.len(), 2);
        assert!(c.take_dchannels().is_empty());
        assert_eq!(d[0].l1_status(), L1Status::DOWN);
        assert_eq!(d[1].l1_status().alarms, Alarms { los: true, ..Default::default() }, "no far end: LOS");
        d[1].set_side(Side::Nt).unwrap();
        let mut peer = Peer::connect(&c);
        let mut kinds = vec![PortKind::Fxs, PortKind::Fxo];
        kinds.extend(std::iter::repeat_n(PortKind::BChannel, 32));
        assert_eq!(peer.expect(), Message::Hello { version: 1, ports: 34, kinds });
        assert_eq!(peer.expect(), Message::Feed { port: 0, feed: LineFeed::Forward });
        assert_eq!(peer.expect(), Message::Ring { port: 0, on: false });
        assert_eq!(peer.expect(), Message::Seize { port: 1, on: false });
        assert_eq!(
            peer.expect(),
            Message::Span { span: 0, kind: SpanKind::Bri, side: Side::Te, first_channel: 2, channels: 2 }
        );
        assert_eq!(
            peer.expect(),
            Message::Span { span: 1, kind: SpanKind::Pri, side: Side::Nt, first_channel: 4, channels: 30 }
        );
        // A side change is told at once.
        d[0].set_side(Side::Nt).unwrap();
        assert_eq!(
            peer.expect(),
            Message::Span { span: 0, kind: SpanKind::Bri, side: Side::Nt, first_channel: 2, channels: 2 }
        );
        d[0].request_l1(true).unwrap();
        assert_eq!(peer.expect(), Message::L1Request { span: 0, activate: true });
    }

    #[test]
    fn d_channel_frames_cross_with_fcs_checked_below_the_trait() {
        let mut c = span_card();
        let mut d = c.take_dchannels();
        let fired = Arc::new(AtomicUsize::new(0));
        c.set_span_notify(Box::new({
            let fired = fired.clone();
            move || {
                fired.fetch_add(1, Ordering::Relaxed);
            }
        }));
        // Layer 1 down: nothing is sent.
        assert_eq!(d[0].send_frame(&[0, 1, 0x7F]), Err(DChannelError::L1Down));
        assert_eq!(d[0].stats().tx_refused, 1);
        assert_eq!(d[0].send_frame(&[0, 1]), Err(DChannelError::BadFrame));
        assert_eq!(d[0].send_frame(&[0; MAX_FRAME + 1]), Err(DChannelError::BadFrame));
        let mut peer = Peer::connect(&c);
        while !matches!(peer.expect(), Message::Span { span: 1, .. }) {}
        let up = L1Status { state: L1State::Activated, alarms: Alarms::default() };
        peer.send(Message::L1 { span: 0, status: up });
        assert_eq!(next_l1(&mut d[0]), up);
        assert!(fired.load(Ordering::Relaxed) >= 1);
        // A BRI has no E1 alarms: they are cleared.
        peer.send(Message::L1 { span: 0, status: L1Status { alarms: Alarms { rai: true, ..Default::default() }, ..up } });
        // A repeat is no event; the PRI comes up with RAI.
        let rai = L1Status { state: L1State::Activated, alarms: Alarms { rai: true, ..Default::default() } };
        peer.send(Message::L1 { span: 1, status: rai });
        assert_eq!(next_l1(&mut d[1]), rai);
        assert_eq!(d[0].poll_l1_event(), None);
        // Good frame in, bad FCS dropped and counted, short frame counted.
        let sabme = [0x00, 0x01, 0x7F];
        let mut bad = wire::dframe_payload(&sabme);
        bad[1] ^= 0x04;
        peer.send(Message::DFrame { span: 0, octets: bad });
        peer.send(Message::DFrame { span: 0, octets: vec![1, 2, 3] });
        peer.send(Message::DFrame { span: 0, octets: wire::dframe_payload(&sabme) });
        peer.send(Message::DFrame { span: 9, octets: wire::dframe_payload(&sabme) });
        let mut got = None;
        wait_until("a frame", || {
            got = d[0].poll_frame();
            got.is_some()
        });
        assert_eq!(got.unwrap(), sabme);
        assert_eq!(d[0].poll_frame(), None, "the bad ones were not delivered");
        let st = d[0].stats();
        assert_eq!((st.frames_in, st.bad_fcs, st.malformed), (1, 1, 1));
        // Out: the card adds the FCS.
        d[0].send_frame(&[0x02, 0x01, 0x73]).unwrap();
        let m = loop {
            match peer.expect() {
                Message::DFrame { span, octets } => break (span, octets),
                _ => continue,
            }
        };
        assert_eq!(m.0, 0);
        assert_eq!(wire::dframe_check(&m.1), Some(&[0x02, 0x01, 0x73][..]));
        // linesim goes: layer 1 drops on every span, the PRI with LOS.
        drop(peer);
        assert_eq!(next_l1(&mut d[0]), L1Status::DOWN);
        assert_eq!(next_l1(&mut d[1]).alarms, Alarms { los: true, ..Default::default() });
        assert_eq!(d[0].send_frame(&sabme), Err(DChannelError::L1Down));
    }

    #[test]
    fn b_channel_audio_uses_the_ports_after_the_analog_ones() {
        let mut c = span_card();
        let mut pcm = c.take_pcm().unwrap();
        let mut peer = Peer::connect(&c);
        while !matches!(peer.expect(), Message::Span { span: 1, .. }) {}
        peer.send(Message::Hello { version: 1, ports: 0, kinds: vec![] });
        let mut tx = vec![[0i16; FRAME_SAMPLES]; 34];
        tx[33] = [1234; FRAME_SAMPLES];
        let mut rx = vec![[0i16; FRAME_SAMPLES]; 34];
        pcm.exchange(&tx, &mut rx);
        let mut seen = Vec::new();
        while seen.len() < 34 {
            if let Message::Audio { port, samples } = peer.expect() {
                seen.push(port);
                if port == 33 {
                    assert_eq!(samples[0], 1234);
                }
            }
        }
        assert_eq!(seen, (0..34).collect::<Vec<u8>>());
        peer.send(Message::Audio { port: 20, samples: [-77; FRAME_SAMPLES] });
        wait_until("b-channel audio", || {
            pcm.exchange(&tx, &mut rx);
            rx[20][0] == -77
        });
    }

    /// The sim card's FXO port against the HAL's shared FXO behaviour checks;
    /// the peer plays the exchange.
    struct SimFxoBench {
        _card: SimCard,
        pcm: SimPcmBus,
        port: SimFxoPort,
        peer: Peer,
    }

    impl crate::fxo_conformance::FxoBench for SimFxoBench {
        type Port = SimFxoPort;

        fn port(&mut self) -> &mut SimFxoPort {
            &mut self.port
        }

        fn set_ringing(&mut self, on: bool) {
            self.peer.send(Message::Ring { port: 0, on });
        }

        fn set_polarity(&mut self, polarity: Polarity) {
            self.peer.send(Message::Polarity { port: 0, polarity });
        }

        fn set_battery(&mut self, on: bool) {
            self.peer.send(Message::LoopCurrent { port: 0, on });
        }

        fn next_event(&mut self) -> Option<FxoEvent> {
            let end = Instant::now() + Duration::from_millis(500);
            while Instant::now() < end {
                if let Some(e) = self.port.poll_event() {
                    return Some(e);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        }

        /// One PCM tick per 10 ms; SEIZE messages read before a tick's
        /// AUDIO frame are stamped with the ticks completed before it.
        fn advance(&mut self, ms: u32) -> Vec<(u32, bool)> {
            let mut seen = Vec::new();
            for t in 0..ms / FRAME_MS {
                let tx = [[0; FRAME_SAMPLES]];
                let mut rx = [[0; FRAME_SAMPLES]];
                self.pcm.exchange(&tx, &mut rx);
                loop {
                    match self.peer.expect() {
                        Message::Seize { port: 0, on } => seen.push((t * FRAME_MS, on)),
                        Message::Audio { port: 0, .. } => break,
                        _ => {}
                    }
                }
            }
            seen
        }
    }

    #[test]
    fn fxo_behaviour_checks_hold_on_the_sim_card() {
        let mut c = fxo_card(0, 1);
        let pcm = c.take_pcm().unwrap();
        let port = c.take_fxo_ports().remove(0);
        let mut peer = Peer::connect(&c);
        fxo_handshake(&mut peer, 0, 1);
        wait_until("attach", || c.is_attached());
        let mut b = SimFxoBench { _card: c, pcm, port, peer };
        crate::fxo_conformance::run_all(&mut b);
    }
}
