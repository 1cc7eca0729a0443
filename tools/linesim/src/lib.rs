//! linesim: plays the phones at the far end of the sim link (`hal/SIMLINK.md`),
//! and the central office on the card's FXO ports ([`CentralOffice`], via
//! [`Linesim::co`]; see [`co`]).
//!
//! It connects to a gateway's sim line card, then each [`Phone`] can go off-hook,
//! dial DTMF, play and record audio, and wait for ringing, feed changes and
//! call-progress tones. The gateway's card is the clock master: linesim answers
//! every AUDIO frame with one frame, so everything linesim measures (cadences,
//! durations, recordings) is in exact sample time, while the timeouts given to
//! the `wait_*` calls are wall time.
//!
//! ```no_run
//! use std::time::Duration;
//! let sim = linesim::Linesim::connect("127.0.0.1:5070".parse().unwrap()).unwrap();
//! let phone = sim.phone(0);
//! phone.off_hook();
//! phone.wait_for_tone(&linesim::plans::US_DIAL, Duration::from_secs(3)).unwrap();
//! phone.dial("5551234").unwrap();
//! ```
//!
//! Threading: one background thread owns the socket's read side and answers
//! AUDIO frames; [`Linesim`] and [`Phone`] handles share its state behind a
//! mutex and a condition variable, so calls block the caller only.
//!
//! Line echo: [`Phone::set_echo`] gives a port a simulated hybrid (G.168
//! Annex D models, bulk delay, ERL; see [`echo`]), so the gateway's echo
//! canceller can be tested end to end; [`signals::speech_like`] is a
//! talker for such tests.
//!
//! Caller ID: [`Phone::wait_caller_id`] is an on-hook display phone: it
//! decodes Bell 202 / V.23 FSK (SDMF, MDMF) and ETSI DTMF CLIP with
//! [`callerid`], and times the data against the ring edges, the feed
//! reversal and a DT-AS ([`CallerIdReport`]).
//!
//! The signal analysis ([`analysis`], [`callerid`]) is linesim's own and
//! does not use the firmware's DSP crate, so a DSP bug cannot hide itself.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod callerid;
pub mod cli;
pub mod co;
pub mod echo;
pub mod isdn;
pub mod signals;
pub mod wav;

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gw_hal::sim::wire::{self, Message};
pub use gw_hal::sim::wire::PortKind;
pub use gw_hal::{HookState, LineFeed, Polarity};

pub use co::{CentralOffice, Country, Disconnect};

pub use analysis::{plans, Measurement, ToneDetector, TonePlan, ToneReport};
pub use callerid::{CallerId, MessageType, Standard};
pub use echo::{EchoLine, EchoPath, EchoPathError, HybridModel};
pub use wav::{read_wav, write_wav};
pub use isdn::{CallHandle, CallState, IsdnSpan, SimCall, SpanStats};
pub use gw_hal::isdn::{Alarms, L1State, L1Status, Side, SpanKind};

/// Samples per 10 ms frame.
const FRAME: usize = gw_hal::FRAME_SAMPLES;
/// How long [`Linesim::connect`] waits for the card's HELLO.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// DTMF timing and level used by [`Phone::dial`].
pub const DTMF_ON_MS: u32 = 80;
pub const DTMF_OFF_MS: u32 = 80;
pub const DTMF_LEVEL_DBM0: f32 = -7.0;
/// Ring voltage off for this long (frame time) with no earlier off period to
/// compare with means the ringing has stopped (longer than any common
/// cadence's off period, 4 s in the US).
const RING_STOP_DEFAULT_MS: u64 = 5000;
/// Ring edges (and feed changes) kept per port.
const RING_LOG: usize = 64;
/// After a caller ID message, [`Phone::wait_caller_id`] listens this long
/// (frame time) for the next ring (longer than the 4 s off period of the
/// US cadence).
const CALLER_ID_NEXT_RING_MS: u64 = 4500;
/// [`Phone::wait_caller_id`] decodes what it heard every 100 ms of frame time.
const CALLER_ID_DECODE_EVERY: usize = 800;
/// ... the last 8 s (frame time) of it: longer than a DT-AS, the gap and the
/// longest message (an MDMF of 255 bytes takes 2.6 s with its preamble).
const CALLER_ID_WINDOW: usize = 64_000;
/// Samples no larger than this (about -57 dBm0) are an idle line.
const CALLER_ID_QUIET: u16 = 32;

/// Why a linesim call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinesimError {
    /// The wall-time timeout passed first.
    Timeout,
    /// The connection to the card is gone.
    Disconnected,
    /// The card has no port with this index.
    NoSuchPort(usize),
    /// A central office call on a port that is not FXO.
    NotFxo(usize),
    /// A ring cadence that is empty, odd, too long or has a zero period.
    BadCadence,
    /// Ringing or caller ID asked for while the card holds the line seized.
    LineSeized,
    /// A dial string holds a key that is not DTMF.
    BadDigit(char),
    /// A WAV file is unreadable or not 8 kHz mono 16-bit.
    Wav(String),
    /// An echo path out of range (see [`EchoPath`]).
    EchoPath(EchoPathError),
    /// The card has no ISDN span with this index.
    NoSuchSpan(usize),
    /// An ISDN layer-2 or layer-3 failure, in words.
    Isdn(String),
    Io(io::Error),
}

impl std::fmt::Display for LinesimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinesimError::Timeout => f.write_str("timed out"),
            LinesimError::Disconnected => f.write_str("not connected to the sim card"),
            LinesimError::NoSuchPort(i) => write!(f, "the card has no port {i}"),
            LinesimError::NotFxo(i) => write!(f, "port {i} is not an FXO port"),
            LinesimError::BadCadence => f.write_str("bad ring cadence (1..4 on/off pairs, no zero period)"),
            LinesimError::LineSeized => f.write_str("the card has seized the line"),
            LinesimError::BadDigit(c) => write!(f, "{c:?} is not a DTMF key"),
            LinesimError::Wav(m) => write!(f, "WAV: {m}"),
            LinesimError::EchoPath(e) => write!(f, "echo path: {e}"),
            LinesimError::NoSuchSpan(i) => write!(f, "the card has no ISDN span {i}"),
            LinesimError::Isdn(m) => write!(f, "ISDN: {m}"),
            LinesimError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

impl std::error::Error for LinesimError {}

impl From<EchoPathError> for LinesimError {
    fn from(e: EchoPathError) -> Self {
        LinesimError::EchoPath(e)
    }
}

impl From<io::Error> for LinesimError {
    fn from(e: io::Error) -> Self {
        LinesimError::Io(e)
    }
}

/// Ringing as measured by [`Phone::wait_ringing`]: the first full cycle seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingReport {
    pub on_ms: u32,
    pub off_ms: u32,
}

/// The dual-tone alerting signal before a caller ID ([`CallerIdReport::dt_as`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DtAsReport {
    pub duration_ms: f64,
    /// From the end of the DT-AS to the start of the data.
    pub end_to_data_ms: f64,
}

/// An on-hook caller ID as heard by [`Phone::wait_caller_id`]: the message
/// and its timing against the ringing and the line feed.
///
/// Times are frame time (the card's 10 ms ticks, sample-exact for the
/// audio, to the frame for ring and feed edges). `data_*` is the data
/// signal: the FSK carrier from the channel seizure to the last mark, or
/// the DTMF CLIP keys from the first tone's start to the last one's end.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerIdReport {
    pub standard: Standard,
    pub kind: MessageType,
    /// Number, name, date/time `MMDDHHMM`, reasons for absence.
    pub fields: CallerId,
    /// FSK: type, length, parameters, checksum. DTMF: the keys, `A`/`D` to `C`.
    pub raw: Vec<u8>,
    /// FSK: mark and space frequencies measured over the message.
    pub mark_space_hz: Option<(f32, f32)>,
    /// Data start and end on the port's clock (ms since the card's first frame).
    pub data_start_ms: f64,
    pub data_end_ms: f64,
    /// From the end of the last ring burst before the data to the data start
    /// (GR-30: >= 500 ms after the first ring). `None`: no ring before.
    pub ring_end_to_data_ms: Option<f64>,
    /// Length of that ring burst (tells a short ring-pulse alert from a ring).
    pub ring_before_ms: Option<f64>,
    /// From the data end to the start of the next ring burst (GR-30: >= 200 ms).
    /// `None`: no ring within 4.5 s (frame time) or before the timeout.
    pub data_end_to_ring_ms: Option<f64>,
    /// The last DT-AS heard before the data, if any.
    pub dt_as: Option<DtAsReport>,
    /// From the last change of the feed to reverse polarity (before the data
    /// start, since attaching) to the data start. `None`: no such change.
    pub reversal_to_data_ms: Option<f64>,
    /// The feed applied when the data started.
    pub feed_at_data: LineFeed,
}

/// What a phone sends towards the gateway.
#[derive(Debug)]
enum Source {
    Silence,
    Tone { step: f64, phase: f64, amp: f64 },
    Samples { data: Vec<i16>, pos: usize, repeat: bool },
}

#[derive(Debug)]
struct Port {
    kind: PortKind,
    /// The central office of an FXO port.
    co: Option<co::CoLine>,
    hook: HookState,
    ringing: bool,
    feed: LineFeed,
    /// AUDIO frames received for this port (its clock).
    frames: u64,
    /// Ring voltage edges: (frame count at the edge, on).
    ring_log: VecDeque<(u64, bool)>,
    /// Feed changes: (frame count at the change, new feed).
    feed_log: VecDeque<(u64, LineFeed)>,
    source: Source,
    /// Playback generation: bumped by every play/stop; `done_gen` catches up
    /// when a non-repeating playback ends or is replaced.
    play_gen: u64,
    done_gen: u64,
    /// Open listeners (record, measure, wait_for_tone): id -> samples heard.
    taps: Vec<(u64, Vec<i16>)>,
    /// Line echo added to what the phone sends ([`Phone::set_echo`]).
    echo: Option<EchoLine>,
}

impl Port {
    fn new(kind: PortKind) -> Self {
        Port {
            kind,
            co: (kind == PortKind::Fxo).then(co::CoLine::new),
            hook: HookState::OnHook,
            ringing: false,
            feed: LineFeed::Forward,
            frames: 0,
            ring_log: VecDeque::new(),
            feed_log: VecDeque::new(),
            source: Source::Silence,
            play_gen: 0,
            done_gen: 0,
            taps: Vec::new(),
            echo: None,
        }
    }

    fn set_source(&mut self, s: Source) -> u64 {
        self.done_gen = self.play_gen;
        self.play_gen += 1;
        self.source = s;
        self.play_gen
    }

    /// The answer to one received frame: the phone's own next 10 ms plus,
    /// when an echo path is set, the line echo of what it just heard.
    fn respond(&mut self, heard: &[i16]) -> [i16; FRAME] {
        let mut out = self.next_frame();
        if let Some(e) = self.echo.as_mut() {
            e.add_echo(heard, &mut out);
        }
        out
    }

    /// The next 10 ms the phone sends.
    fn next_frame(&mut self) -> [i16; FRAME] {
        let mut out = [0i16; FRAME];
        match &mut self.source {
            Source::Silence => {}
            Source::Tone { step, phase, amp } => {
                for s in out.iter_mut() {
                    *s = (*amp * phase.sin()).round().clamp(-32768.0, 32767.0) as i16;
                    *phase = (*phase + *step) % (2.0 * std::f64::consts::PI);
                }
            }
            Source::Samples { data, pos, repeat } => {
                for s in out.iter_mut() {
                    if *pos >= data.len() {
                        if *repeat && !data.is_empty() {
                            *pos = 0;
                        } else {
                            break;
                        }
                    }
                    *s = data[*pos];
                    *pos += 1;
                }
                if !*repeat && *pos >= data.len() {
                    self.source = Source::Silence;
                    self.done_gen = self.play_gen;
                }
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct State {
    /// Set by the card's HELLO.
    ports: Option<Vec<Port>>,
    connected: bool,
    next_tap: u64,
    /// Why the link ended, for messages.
    closed_reason: Option<String>,
    /// The card's ISDN spans (SPAN messages), by span index.
    spans: Vec<Option<isdn::SpanSim>>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    writer: Mutex<TcpStream>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking holder leaves consistent-enough data for a test tool.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, m: &Message) -> Result<(), LinesimError> {
        let mut buf = Vec::with_capacity(wire::HEADER_LEN + wire::AUDIO_PAYLOAD);
        m.encode(&mut buf);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        w.write_all(&buf).map_err(|_| LinesimError::Disconnected)
    }

    /// Blocks until `done` says so (Some), the link drops, or `deadline`.
    fn wait<T>(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, LinesimError> {
        let mut st = self.lock();
        loop {
            if let Some(v) = done(&mut st) {
                return Ok(v);
            }
            if !st.connected {
                return Err(LinesimError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(LinesimError::Timeout);
            }
            st = self.changed.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// A connection to a gateway's sim line card.
pub struct Linesim {
    inner: Arc<Inner>,
    port_count: usize,
    reader: Option<JoinHandle<()>>,
}

impl Linesim {
    /// Connects and waits (5 s at most) for the card's HELLO.
    pub fn connect(addr: SocketAddr) -> io::Result<Linesim> {
        let stream = TcpStream::connect_timeout(&addr, HELLO_TIMEOUT)?;
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone()?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State { connected: true, ..State::default() }),
            changed: Condvar::new(),
            writer: Mutex::new(writer),
        });
        inner
            .send(&Message::Hello { version: wire::VERSION, ports: 0, kinds: Vec::new() })
            .map_err(|_| io::Error::new(ErrorKind::ConnectionAborted, "card closed the link"))?;
        let reader = {
            let inner = inner.clone();
            std::thread::Builder::new().name("linesim-rx".into()).spawn(move || read_loop(stream, &inner))?
        };
        let hello = inner.wait(Instant::now() + HELLO_TIMEOUT, |st| st.ports.as_ref().map(|p| p.len()));
        let port_count = match hello {
            Ok(n) => n,
            Err(e) => {
                let why = inner.lock().closed_reason.clone();
                let _ = inner.writer.lock().map(|w| w.shutdown(Shutdown::Both));
                let _ = reader.join();
                let kind = match e {
                    LinesimError::Timeout => ErrorKind::TimedOut,
                    _ => ErrorKind::ConnectionRefused,
                };
                let msg = why.unwrap_or_else(|| "no HELLO from the sim card".into());
                return Err(io::Error::new(kind, msg));
            }
        };
        Ok(Linesim { inner, port_count, reader: Some(reader) })
    }

    /// Number of ports the card announced.
    pub fn port_count(&self) -> usize {
        self.port_count
    }

    /// The phone on port `index` (0-based). An index the card does not have
    /// gives a phone whose calls fail with [`LinesimError::NoSuchPort`].
    pub fn phone(&self, index: usize) -> Phone {
        Phone { inner: self.inner.clone(), index }
    }

    /// The central office on FXO port `index` (0-based card port). Calls on
    /// a port that is not FXO fail with [`LinesimError::NotFxo`].
    pub fn co(&self, index: usize) -> CentralOffice {
        CentralOffice { phone: self.phone(index) }
    }

    /// What port `index` is, as the card's HELLO said (`None`: no such port).
    pub fn port_kind(&self, index: usize) -> Option<PortKind> {
        self.inner.lock().ports.as_ref()?.get(index).map(|p| p.kind)
    }

    /// linesim's end of the card's ISDN span `index` (see [`isdn`]).
    pub fn span(&self, index: usize) -> IsdnSpan {
        IsdnSpan { inner: self.inner.clone(), index }
    }

    /// Indexes of the card's FXO ports.
    pub fn fxo_ports(&self) -> Vec<usize> {
        (0..self.port_count).filter(|&i| self.port_kind(i) == Some(PortKind::Fxo)).collect()
    }

    /// True until the card closes the link (or [`Linesim::disconnect`]).
    pub fn is_connected(&self) -> bool {
        self.inner.lock().connected
    }

    /// Closes the link; the card puts every off-hook port on-hook.
    pub fn disconnect(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Ok(w) = self.inner.writer.lock() {
            let _ = w.shutdown(Shutdown::Both);
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Linesim {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads frames until the link closes; answers AUDIO, records RING/FEED.
fn read_loop(mut stream: TcpStream, inner: &Inner) {
    let mut input: Vec<u8> = Vec::with_capacity(8192);
    let mut buf = [0u8; 8192];
    let mut reply = Vec::with_capacity(4096);
    let reason = 'outer: loop {
        match stream.read(&mut buf) {
            Ok(0) => break "the card closed the link".to_string(),
            Ok(n) => input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break format!("read error: {e}"),
        }
        let mut used = 0;
        reply.clear();
        {
            let mut st = inner.lock();
            loop {
                match wire::decode(&input[used..]) {
                    Ok(Some((m, n))) => {
                        used += n;
                        handle(&mut st, m, &mut reply);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        drop(st);
                        break 'outer format!("protocol error from the card: {e}");
                    }
                }
            }
            isdn::poll(&mut st, &mut reply, Instant::now());
        }
        input.drain(..used);
        inner.changed.notify_all();
        if !reply.is_empty() {
            let mut w = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = w.write_all(&reply) {
                break format!("write error: {e}");
            }
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let mut st = inner.lock();
    st.connected = false;
    st.closed_reason = Some(reason);
    drop(st);
    inner.changed.notify_all();
}

fn handle(st: &mut State, m: Message, reply: &mut Vec<u8>) {
    match m {
        Message::Hello { ports, kinds, .. } => {
            if st.ports.is_none() {
                let kind = |i: usize| kinds.get(i).copied().unwrap_or(PortKind::Fxs);
                st.ports = Some((0..usize::from(ports)).map(|i| Port::new(kind(i))).collect());
            }
        }
        Message::Seize { port, on } => {
            if let Some(p) = port_mut(st, port) {
                co::on_seize(p, port, on, reply);
            }
        }
        Message::Ring { port, on } => {
            if let Some(p) = port_mut(st, port).filter(|p| p.kind == PortKind::Fxs) {
                if p.ringing != on {
                    p.ringing = on;
                    if p.ring_log.len() == RING_LOG {
                        p.ring_log.pop_front();
                    }
                    p.ring_log.push_back((p.frames, on));
                }
            }
        }
        Message::Feed { port, feed } => {
            if let Some(p) = port_mut(st, port) {
                if p.feed != feed {
                    if p.feed_log.len() == RING_LOG {
                        p.feed_log.pop_front();
                    }
                    p.feed_log.push_back((p.frames, feed));
                }
                p.feed = feed;
            }
        }
        Message::Audio { port, samples } => {
            if let Some(p) = port_mut(st, port) {
                p.frames += 1;
                for (_, t) in p.taps.iter_mut() {
                    t.extend_from_slice(&samples);
                }
                let tone = co::on_frame(p, port, &samples, reply);
                let mut out = p.respond(&samples);
                for (o, t) in out.iter_mut().zip(tone) {
                    *o = o.saturating_add(t);
                }
                wire::encode_audio(reply, port, &out);
            }
        }
        m @ (Message::Span { .. } | Message::DFrame { .. } | Message::L1Request { .. }) => {
            isdn::handle(st, m, reply, Instant::now())
        }
        Message::Hook { .. }
        | Message::L1 { .. }
        | Message::Flash { .. }
        | Message::Polarity { .. }
        | Message::LoopCurrent { .. }
        | Message::Unknown { .. } => {}
    }
}

fn port_mut(st: &mut State, port: u8) -> Option<&mut Port> {
    st.ports.as_mut()?.get_mut(usize::from(port))
}

/// One phone on one port. Cheap to clone; all clones drive the same phone.
#[derive(Clone)]
pub struct Phone {
    inner: Arc<Inner>,
    index: usize,
}

impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phone").field("index", &self.index).finish()
    }
}

/// Generous wall-time allowance for something that takes `frame_ms` of frame time.
fn frame_time_deadline(frame_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(frame_ms * 2 + 2000)
}

impl Phone {
    /// 0-based port index.
    pub fn index(&self) -> usize {
        self.index
    }

    fn with_port<T>(&self, f: impl FnOnce(&mut Port) -> T) -> Result<T, LinesimError> {
        let mut st = self.inner.lock();
        let p = st
            .ports
            .as_mut()
            .and_then(|p| p.get_mut(self.index))
            .ok_or(LinesimError::NoSuchPort(self.index))?;
        Ok(f(p))
    }

    fn port_byte(&self) -> Result<u8, LinesimError> {
        self.with_port(|_| ())?;
        Ok(self.index as u8)
    }

    fn set_hook(&self, off: bool) {
        let Ok(port) = self.port_byte() else { return };
        let _ = self.with_port(|p| p.hook = if off { HookState::OffHook } else { HookState::OnHook });
        let _ = self.inner.send(&Message::Hook { port, off_hook: off });
    }

    /// Lifts the handset (closes the loop). While ringing, this answers (ring trip).
    pub fn off_hook(&self) {
        self.set_hook(true);
    }

    /// Hangs up.
    pub fn on_hook(&self) {
        self.set_hook(false);
    }

    /// A hook flash (register recall). The phone stays off-hook.
    pub fn flash(&self) {
        if let Ok(port) = self.port_byte() {
            let _ = self.inner.send(&Message::Flash { port });
        }
    }

    /// The phone's own hook state (what it last told the card).
    pub fn hook(&self) -> HookState {
        self.with_port(|p| p.hook).unwrap_or(HookState::OnHook)
    }

    /// True while the card applies ring voltage.
    pub fn is_ringing(&self) -> bool {
        self.with_port(|p| p.ringing).unwrap_or(false)
    }

    /// The DC feed the card applies.
    pub fn feed(&self) -> LineFeed {
        self.with_port(|p| p.feed).unwrap_or(LineFeed::Open)
    }

    /// In-band DTMF, 80 ms on / 80 ms off, -7 dBm0 per tone; blocks until
    /// sent (in frame time). `,` pauses 500 ms. Replaces any playback.
    pub fn dial(&self, digits: &str) -> Result<(), LinesimError> {
        let samples = analysis::dtmf(digits, DTMF_ON_MS, DTMF_OFF_MS, DTMF_LEVEL_DBM0)
            .map_err(LinesimError::BadDigit)?;
        let ms = (samples.len() / 8) as u64;
        let gen = self.with_port(|p| p.set_source(Source::Samples { data: samples, pos: 0, repeat: false }))?;
        let idx = self.index;
        self.inner.wait(frame_time_deadline(ms), |st| {
            let p = &st.ports.as_ref()?[idx];
            (p.done_gen >= gen).then_some(())
        })
    }

    /// Sends a continuous sine until [`Phone::stop_playback`].
    pub fn play_tone(&self, freq_hz: f32, level_dbm0: f32) {
        let step = 2.0 * std::f64::consts::PI * f64::from(freq_hz) / analysis::RATE;
        let amp = analysis::amplitude(level_dbm0);
        let _ = self.with_port(|p| p.set_source(Source::Tone { step, phase: 0.0, amp }));
    }

    /// Sends `samples` (8 kHz), once or looped.
    pub fn play_samples(&self, samples: Vec<i16>, repeat: bool) {
        let _ = self.with_port(|p| p.set_source(Source::Samples { data: samples, pos: 0, repeat }));
    }

    /// Sends an 8 kHz mono 16-bit WAV file, once or looped.
    pub fn play_wav(&self, path: &Path, repeat: bool) -> Result<(), LinesimError> {
        let samples = read_wav(path)?;
        self.with_port(|_| ())?;
        self.play_samples(samples, repeat);
        Ok(())
    }

    /// Back to silence.
    pub fn stop_playback(&self) {
        let _ = self.with_port(|p| p.set_source(Source::Silence));
    }

    /// Simulates line echo on this port (`None`: a perfect line, the
    /// default): from the next received frame on, the echo of what the phone
    /// hears through `path` is added to what it sends (see [`echo`]). Setting
    /// a path starts it with silence in its delay line. Independent of
    /// playback: the echo goes on under tones, files and silence.
    pub fn set_echo(&self, path: Option<EchoPath>) -> Result<(), LinesimError> {
        let line = path.map(EchoLine::new).transpose()?;
        self.with_port(|p| p.echo = line)
    }

    /// The echo path set on this port, if any.
    pub fn echo(&self) -> Option<EchoPath> {
        self.with_port(|p| p.echo.as_ref().map(EchoLine::path)).ok().flatten()
    }

    /// Opens a listener; returns its id.
    fn open_tap(&self) -> Result<u64, LinesimError> {
        self.open_tap_at().map(|t| t.0)
    }

    /// Opens a listener; returns its id and the port's frame count (the
    /// listener's first sample is that frame's first sample).
    fn open_tap_at(&self) -> Result<(u64, u64), LinesimError> {
        let mut st = self.inner.lock();
        let id = st.next_tap;
        st.next_tap += 1;
        let p = st
            .ports
            .as_mut()
            .and_then(|p| p.get_mut(self.index))
            .ok_or(LinesimError::NoSuchPort(self.index))?;
        p.taps.push((id, Vec::new()));
        Ok((id, p.frames))
    }

    fn close_tap(&self, id: u64) {
        let _ = self.with_port(|p| p.taps.retain(|t| t.0 != id));
    }

    /// Waits until the tap holds samples, then takes them.
    fn drain_tap(&self, id: u64, deadline: Instant) -> Result<Vec<i16>, LinesimError> {
        let idx = self.index;
        self.inner.wait(deadline, |st| {
            let p = st.ports.as_mut()?.get_mut(idx)?;
            let t = p.taps.iter_mut().find(|t| t.0 == id)?;
            (!t.1.is_empty()).then(|| std::mem::take(&mut t.1))
        })
    }

    /// What the phone hears for `duration` (frame time, rounded up to 10 ms).
    pub fn record(&self, duration: Duration) -> Result<Vec<i16>, LinesimError> {
        let ms = duration.as_millis() as u64;
        let want = (ms.div_ceil(10) * 10 * 8) as usize;
        let id = self.open_tap()?;
        let idx = self.index;
        let r = self.inner.wait(frame_time_deadline(ms), |st| {
            let p = st.ports.as_mut()?.get_mut(idx)?;
            let t = p.taps.iter_mut().find(|t| t.0 == id)?;
            (t.1.len() >= want).then(|| t.1[..want].to_vec())
        });
        self.close_tap(id);
        r
    }

    /// Records `duration` and measures it: dominant frequency (within 1 Hz for
    /// a second or more), level, second tone.
    pub fn measure(&self, duration: Duration) -> Result<Measurement, LinesimError> {
        Ok(analysis::measure(&self.record(duration)?))
    }

    /// Listens until `tone` is recognised by frequencies and cadence (two full
    /// cycles, or 1 s steady for continuous tones) or `timeout` (wall) passes.
    pub fn wait_for_tone(&self, tone: &TonePlan, timeout: Duration) -> Result<ToneReport, LinesimError> {
        let deadline = Instant::now() + timeout;
        let mut det = ToneDetector::new(*tone);
        let id = self.open_tap()?;
        let mut pending: Vec<i16> = Vec::new();
        let r = loop {
            match self.drain_tap(id, deadline) {
                Ok(s) => pending.extend(s),
                Err(e) => break Err(e),
            }
            let whole = pending.len() / FRAME * FRAME;
            let found = pending[..whole].chunks(FRAME).find_map(|f| det.push_frame(f));
            pending.drain(..whole);
            if let Some(rep) = found {
                break Ok(rep);
            }
        };
        self.close_tap(id);
        r
    }

    /// Waits for the first full ring cycle (on edge, off edge, next on edge)
    /// that starts after this call, and returns its on/off times in frame time.
    pub fn wait_ringing(&self, timeout: Duration) -> Result<RingReport, LinesimError> {
        let deadline = Instant::now() + timeout;
        let idx = self.index;
        // Edges that happened before this call do not count.
        let since = self.with_port(|p| p.frames)?;
        self.inner.wait(deadline, |st| {
            let p = st.ports.as_ref()?.get(idx)?;
            let edges: Vec<(u64, bool)> = p.ring_log.iter().filter(|e| e.0 >= since).copied().collect();
            let start = edges.iter().position(|e| e.1)?;
            let e = &edges[start..];
            if e.len() >= 3 {
                let on_ms = ((e[1].0 - e[0].0) * 10) as u32;
                let off_ms = ((e[2].0 - e[1].0) * 10) as u32;
                return Some(RingReport { on_ms, off_ms });
            }
            None
        })
    }

    /// Waits until the ringing has stopped: ring voltage off and either the
    /// phone is off-hook (ring trip), or it has stayed off longer than 1.25x
    /// the longest off period seen in this ringing (5 s of frame time when
    /// none was seen), or it was never on.
    pub fn wait_ring_stop(&self, timeout: Duration) -> Result<(), LinesimError> {
        let deadline = Instant::now() + timeout;
        let idx = self.index;
        self.with_port(|_| ())?;
        self.inner.wait(deadline, |st| {
            let p = st.ports.as_ref()?.get(idx)?;
            if p.ringing {
                return None;
            }
            let Some(&(off_at, _)) = p.ring_log.back() else { return Some(()) };
            if p.hook == HookState::OffHook {
                return Some(());
            }
            let longest_off = p
                .ring_log
                .iter()
                .zip(p.ring_log.iter().skip(1))
                .filter(|(a, b)| !a.1 && b.1)
                .map(|(a, b)| (b.0 - a.0) * 10)
                .max();
            let quiet_ms = longest_off.map_or(RING_STOP_DEFAULT_MS, |m| m * 5 / 4 + 100);
            ((p.frames - off_at) * 10 > quiet_ms).then_some(())
        })
    }

    /// Listens like an on-hook display phone until a complete caller ID
    /// (Bell 202 or V.23 FSK SDMF/MDMF with a good checksum, or DTMF CLIP)
    /// has been heard, then on until the next ring starts (at most 4.5 s of
    /// frame time, or the timeout), and reports it with its timing against
    /// the ring edges, the feed changes and a preceding DT-AS.
    /// Only audio heard after this call counts; ring and feed edges from
    /// before it do. `Timeout` if no caller ID came within `timeout` (wall).
    pub fn wait_caller_id(&self, timeout: Duration) -> Result<CallerIdReport, LinesimError> {
        let deadline = Instant::now() + timeout;
        let (id, since) = self.open_tap_at()?;
        let r = self.listen_caller_id(id, since, deadline);
        self.close_tap(id);
        r
    }

    fn listen_caller_id(&self, id: u64, since: u64, deadline: Instant) -> Result<CallerIdReport, LinesimError> {
        let base = since as usize * FRAME;
        let mut heard: Vec<i16> = Vec::new();
        let mut decoded_len = 0;
        // Where the decoding window began, and the absolute sample where the
        // data seemed to end, when a caller ID was first decoded.
        let mut found: Option<(usize, usize)> = None;
        loop {
            // The card may send faster than real time: the deadline counts
            // even while audio keeps coming.
            let r = if Instant::now() >= deadline { Err(LinesimError::Timeout) } else { self.drain_tap(id, deadline) };
            match r {
                Ok(s) => heard.extend(s),
                Err(LinesimError::Timeout) if found.is_some() => break,
                Err(e) => return Err(e),
            }
            match found {
                None if heard.len() - decoded_len >= CALLER_ID_DECODE_EVERY => {
                    decoded_len = heard.len();
                    let from = heard.len().saturating_sub(CALLER_ID_WINDOW);
                    let window = &heard[from..];
                    // An idle line: nothing to decode.
                    if window.iter().any(|&v| v.unsigned_abs() > CALLER_ID_QUIET) {
                        found = callerid::decode(window).first().map(|m| (from, base + from + m.signal_end));
                    }
                }
                None => {}
                Some((_, end)) => {
                    let rang = self.with_port(|p| p.ring_log.iter().any(|&(f, on)| on && f as usize * FRAME >= end))?;
                    let waited = base + heard.len() - end.min(base + heard.len());
                    if rang || waited >= CALLER_ID_NEXT_RING_MS as usize * 8 {
                        break;
                    }
                }
            }
        }
        // Decode again with the whole tail (the carrier end is now heard).
        let Some((from, _)) = found else { return Err(LinesimError::Timeout) };
        let heard = &heard[from..];
        let Some(m) = callerid::decode(heard).into_iter().next() else { return Err(LinesimError::Timeout) };
        let dt_as = callerid::detect_dt_as(&heard[..m.signal_start]).last().copied();
        let (rings, feeds) = self.with_port(|p| (p.ring_log.clone(), p.feed_log.clone()))?;
        Ok(caller_id_report(&m, base + from, dt_as, &rings, &feeds))
    }

    /// Waits until the card applies `feed`.
    pub fn wait_feed(&self, feed: LineFeed, timeout: Duration) -> Result<(), LinesimError> {
        let idx = self.index;
        self.with_port(|_| ())?;
        self.inner.wait(Instant::now() + timeout, |st| {
            (st.ports.as_ref()?.get(idx)?.feed == feed).then_some(())
        })
    }
}

/// Puts a decoded caller ID (positions from sample `base` of the port's
/// clock) together with the ring and feed edges around it.
fn caller_id_report(
    m: &callerid::Message,
    base: usize,
    dt_as: Option<callerid::Burst>,
    rings: &VecDeque<(u64, bool)>,
    feeds: &VecDeque<(u64, LineFeed)>,
) -> CallerIdReport {
    let ms = |samples: usize| samples as f64 / 8.0;
    let edge = |frame: u64| frame as usize * FRAME;
    let (start, end) = (base + m.signal_start, base + m.signal_end);
    // The last completed ring burst (on, off) before the data.
    let before: Vec<(u64, bool)> = rings.iter().filter(|e| edge(e.0) <= start).copied().collect();
    let burst = match before.as_slice() {
        [.., (on, true), (off, false)] => Some((edge(*on), edge(*off))),
        _ => None,
    };
    let next_ring = rings.iter().find(|e| e.1 && edge(e.0) >= end).map(|e| edge(e.0));
    let reversal = feeds.iter().rev().find(|e| e.1 == LineFeed::Reverse && edge(e.0) <= start);
    let feed_at_data = feeds.iter().rev().find(|e| edge(e.0) <= start).map_or(LineFeed::Forward, |e| e.1);
    CallerIdReport {
        standard: m.standard,
        kind: m.kind,
        fields: m.fields.clone(),
        raw: m.raw.clone(),
        mark_space_hz: m.mark_space_hz,
        data_start_ms: ms(start),
        data_end_ms: ms(end),
        ring_end_to_data_ms: burst.map(|(_, off)| ms(start - off)),
        ring_before_ms: burst.map(|(on, off)| ms(off - on)),
        data_end_to_ring_ms: next_ring.map(|r| ms(r - end)),
        dt_as: dt_as.map(|b| DtAsReport {
            duration_ms: b.duration_ms(),
            end_to_data_ms: ms(m.signal_start - b.end.min(m.signal_start)),
        }),
        reversal_to_data_ms: reversal.map(|e| ms(start - edge(e.0))),
        feed_at_data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_frames_carry_the_line_echo_on_top_of_the_playback() {
        let path = EchoPath { delay_ms: 20, erl_db: 6.0, model: HybridModel::D3 };
        let mut port = Port::new(PortKind::Fxs);
        port.play_gen = 0;
        port.set_source(Source::Tone { step: 0.3, phase: 0.0, amp: 1000.0 });
        port.echo = Some(EchoLine::new(path).unwrap());
        // The same phone without echo, and the echo alone.
        let mut dry = Port::new(PortKind::Fxs);
        dry.set_source(Source::Tone { step: 0.3, phase: 0.0, amp: 1000.0 });
        let mut line = EchoLine::new(path).unwrap();
        let mut noise = signals::Noise::new(4);
        let mut echoed = 0;
        for f in 0..20 {
            let heard: Vec<i16> = (0..FRAME).map(|_| (noise.gaussian() * 4000.0) as i16).collect();
            let got = port.respond(&heard);
            let own = dry.respond(&heard);
            for n in 0..FRAME {
                let e = line.push(heard[n]);
                let want = (f64::from(own[n]) + e).round().clamp(-32768.0, 32767.0) as i16;
                assert_eq!(got[n], want, "frame {f} sample {n}");
                echoed += usize::from(got[n] != own[n]);
            }
            // 20 ms bulk delay: the first two replies carry no echo yet.
            if f < 2 {
                assert_eq!(got, own, "frame {f}");
            }
        }
        assert!(echoed > 1000, "{echoed} samples changed by echo");
        // Removing the path: replies are the playback alone again.
        port.echo = None;
        let heard = [5000i16; FRAME];
        assert_eq!(port.respond(&heard), dry.respond(&heard));
    }

    /// What the fake card does at one frame: control messages, then audio.
    enum Step {
        Ring(bool),
        Feed(LineFeed),
    }

    /// A one-port card on loopback that plays `audio` (one AUDIO frame per
    /// 0.5 ms of wall time, after 30 ms) with `steps` at their frames, then
    /// silence until linesim goes away.
    fn fake_card(audio: Vec<i16>, steps: Vec<(usize, Step)>) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut rx = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while matches!(rx.read(&mut b), Ok(n) if n > 0) {}
            });
            let mut buf = Vec::new();
            Message::Hello { version: wire::VERSION, ports: 1, kinds: Vec::new() }.encode(&mut buf);
            if s.write_all(&buf).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(30));
            for f in 0..audio.len().div_ceil(FRAME) + 20_000 {
                buf.clear();
                for (_, step) in steps.iter().filter(|st| st.0 == f) {
                    match step {
                        Step::Ring(on) => Message::Ring { port: 0, on: *on }.encode(&mut buf),
                        Step::Feed(feed) => Message::Feed { port: 0, feed: *feed }.encode(&mut buf),
                    }
                }
                let mut frame = [0i16; FRAME];
                for (i, v) in frame.iter_mut().enumerate() {
                    *v = audio.get(f * FRAME + i).copied().unwrap_or(0);
                }
                wire::encode_audio(&mut buf, 0, &frame);
                if s.write_all(&buf).is_err() {
                    return;
                }
                if f % 2 == 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        addr
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn caller_id_between_the_first_and_second_ring_gr30() {
        use callerid::tests::{burst, mdmf};
        use callerid::{FskStandard, PARAM_DATE_TIME, PARAM_NAME, PARAM_NUMBER};
        let msg = mdmf(&[(PARAM_DATE_TIME, "11301745"), (PARAM_NUMBER, "2125551234"), (PARAM_NAME, "SMITH ANN")]);
        let fsk = burst(&msg, FskStandard::Bell202, 1.0);
        // Ring 2 s from frame 10; data 650 ms (and 37 samples) after the ring
        // ends; the second ring 400 ms (to the frame) after the data.
        let data_at = 260 * FRAME + 37;
        let mut audio = vec![0i16; data_at];
        audio.extend(&fsk);
        let data_end = audio.len();
        let ring2 = data_end.div_ceil(FRAME) + 40;
        let steps = vec![(10, Step::Ring(true)), (210, Step::Ring(false)), (ring2, Step::Ring(true))];
        let sim = Linesim::connect(fake_card(audio, steps)).unwrap();
        let r = sim.phone(0).wait_caller_id(Duration::from_secs(20)).unwrap();
        assert_eq!((r.standard, r.kind), (Standard::Bell202, MessageType::Mdmf));
        assert_eq!(r.raw, msg);
        assert_eq!(r.fields.number.as_deref(), Some("2125551234"));
        assert_eq!(r.fields.name.as_deref(), Some("SMITH ANN"));
        assert_eq!(r.fields.date_time.as_deref(), Some("11301745"));
        assert!(close(r.data_start_ms, data_at as f64 / 8.0, 1.0), "{r:?}");
        assert!(close(r.data_end_ms, data_end as f64 / 8.0, 1.0), "{r:?}");
        assert!(close(r.ring_end_to_data_ms.unwrap(), (data_at - 210 * FRAME) as f64 / 8.0, 1.0), "{r:?}");
        assert_eq!(r.ring_before_ms, Some(2000.0));
        let gap = (ring2 * FRAME - data_end) as f64 / 8.0;
        assert!(close(r.data_end_to_ring_ms.unwrap(), gap, 1.0), "{r:?} want {gap}");
        assert_eq!((r.dt_as, r.reversal_to_data_ms, r.feed_at_data), (None, None, LineFeed::Forward));
    }

    #[test]
    fn caller_id_before_ringing_etsi_reversal_dt_as_v23() {
        use callerid::tests::{burst, mdmf};
        use callerid::{FskStandard, DT_AS_HZ, PARAM_NUMBER_ABSENCE};
        let msg = mdmf(&[(PARAM_NUMBER_ABSENCE, "P")]);
        // Reversal at frame 100, DT-AS 100 ms from frame 120, data 70 ms after it.
        let mut audio = vec![0i16; 120 * FRAME];
        analysis::push_tones(&mut audio, &[(DT_AS_HZ[0], -18.0), (DT_AS_HZ[1], -18.0)], 100);
        audio.resize(audio.len() + 560, 0);
        let data_at = audio.len();
        audio.extend(burst(&msg, FskStandard::V23, 1.01));
        let data_end = audio.len();
        let ring = data_end.div_ceil(FRAME) + 25;
        let steps = vec![(100, Step::Feed(LineFeed::Reverse)), (ring, Step::Ring(true))];
        let sim = Linesim::connect(fake_card(audio, steps)).unwrap();
        let r = sim.phone(0).wait_caller_id(Duration::from_secs(20)).unwrap();
        assert_eq!((r.standard, r.kind), (Standard::V23, MessageType::Mdmf));
        assert_eq!(r.fields.number_absence.as_deref(), Some("P"));
        assert_eq!(r.fields.number, None);
        assert!(close(r.data_start_ms, data_at as f64 / 8.0, 1.0), "{r:?}");
        let dt = r.dt_as.expect("DT-AS");
        assert!(close(dt.duration_ms, 100.0, 1.0) && close(dt.end_to_data_ms, 70.0, 1.0), "{dt:?}");
        assert!(close(r.reversal_to_data_ms.unwrap(), (data_at - 100 * FRAME) as f64 / 8.0, 1.0), "{r:?}");
        assert_eq!(r.feed_at_data, LineFeed::Reverse);
        assert_eq!((r.ring_end_to_data_ms, r.ring_before_ms), (None, None));
        assert!(close(r.data_end_to_ring_ms.unwrap(), (ring * FRAME - data_end) as f64 / 8.0, 1.0), "{r:?}");
    }

    #[test]
    fn dtmf_clip_without_a_following_ring_and_a_timeout_without_caller_id() {
        let mut audio = vec![0i16; 150 * FRAME];
        let data_at = audio.len();
        audio.extend(analysis::dtmf("A0612345678C", 60, 60, -12.0).unwrap());
        let steps = vec![(120, Step::Feed(LineFeed::Reverse)), (140, Step::Feed(LineFeed::OnHookTransmission))];
        let sim = Linesim::connect(fake_card(audio, steps)).unwrap();
        let r = sim.phone(0).wait_caller_id(Duration::from_secs(20)).unwrap();
        assert_eq!((r.standard, r.kind), (Standard::DtmfClip, MessageType::DtmfClip));
        assert_eq!(r.fields.number.as_deref(), Some("0612345678"));
        assert_eq!(r.raw, b"A0612345678C");
        assert!(close(r.data_start_ms, data_at as f64 / 8.0, 1.0), "{r:?}");
        assert_eq!(r.data_end_to_ring_ms, None);
        assert!(close(r.reversal_to_data_ms.unwrap(), 300.0, 1.0), "{r:?}");
        assert_eq!(r.feed_at_data, LineFeed::OnHookTransmission);
        // Nothing more comes: silence is no caller ID.
        let e = sim.phone(0).wait_caller_id(Duration::from_millis(400)).unwrap_err();
        assert!(matches!(e, LinesimError::Timeout), "{e}");
    }

    #[test]
    fn caller_id_with_a_bad_checksum_is_not_reported_the_repeat_is() {
        use callerid::tests::{burst, sdmf};
        use callerid::FskStandard;
        let good = sdmf("06151200", "5550100");
        let mut bad = good.clone();
        bad[5] ^= 0x01;
        let mut audio = vec![0i16; 50 * FRAME];
        audio.extend(burst(&bad, FskStandard::Bell202, 1.0));
        audio.resize(audio.len() + 4000, 0);
        let data_at = audio.len();
        audio.extend(burst(&good, FskStandard::Bell202, 1.0));
        let sim = Linesim::connect(fake_card(audio, Vec::new())).unwrap();
        let r = sim.phone(0).wait_caller_id(Duration::from_secs(20)).unwrap();
        assert_eq!(r.raw, good);
        assert_eq!(r.fields.number.as_deref(), Some("5550100"));
        assert!(close(r.data_start_ms, data_at as f64 / 8.0, 1.0), "{r:?}");
    }
}
