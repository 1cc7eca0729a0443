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

type Notify = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    ports: Mutex<Vec<PortCtl>>,
    /// FXO ports; `fxo[i]` is card port `ports.len() + i`. Locked after
    /// `ports` when both are held.
    fxo: Mutex<Vec<FxoCtl>>,
    notify: Mutex<Option<Notify>>,
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
}

/// The software line card. Owns the listener and the I/O thread; dropping it
/// stops the thread.
pub struct SimCard {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    ports: Vec<SimFxsPort>,
    fxo: Vec<SimFxoPort>,
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
        let fxs_ports = config.ports;
        let total = config.ports.saturating_add(config.fxo_ports);
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
        let pcm = SimPcmBus { tx: rt_tx, rx: rt_rx, ticks: shared.clone() };
        Ok(SimCard { shared, local_addr, ports, fxo, pcm: Some(pcm), thread: Some(thread) })
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
        let kinds = if n_fxo == 0 {
            Vec::new()
        } else {
            (0..n).map(|i| if i < n - n_fxo { PortKind::Fxs } else { PortKind::Fxo }).collect()
        };
        let mut conn = Conn {
            stream,
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(4096),
            sent_feed: vec![None; n],
            sent_ring: vec![None; n],
            sent_seize: vec![None; n_fxo],
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
        while self.ticks_done < now {
            self.ticks_done += 1;
            for i in 0..self.tx.len() {
                let frame = self.tx[i].dequeue().unwrap_or(SILENCE);
                if let Some(conn) = self.conn.as_mut() {
                    if i < n_fxs {
                        sync_port(conn, i, &ports[i]);
                    } else {
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
                } else {
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
        Message::Feed { .. } | Message::Seize { .. } | Message::Unknown { .. } => {}
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
}
