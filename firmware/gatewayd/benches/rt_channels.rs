//! The rt thread's cost per channel per 10 ms frame, and the latency it adds (issue 8).
//!
//! Run: `cargo bench -p gatewayd --bench rt_channels` (about 30 s on the 2-core CI host;
//! `RT_BENCH_TICKS=N` changes the number of measured ticks per run, default 3000).
//!
//! **Cost.** A whole [`RtEngine`] (the production code, built as `gatewayd` builds it from
//! the embedded default configuration: echo canceller with a 64 ms tail, US profile, modem
//! bypass on, PCMU at ptime 20, 60 ms jitter buffer) runs N = 4, 32 and 128 channels on a
//! fake PCM bus. Half the channels are in RTP calls (`StartMedia`; the "media thread" side
//! of this bench feeds one 20 ms PCMU packet per call every other tick, the calls
//! staggered over odd and even ticks, and drains `packets_out`), the other half in local
//! calls (`Listen` pairs, the TDM cross-connect). Every line talks speech-like audio
//! (`gw_dsp::testsig::SpeechLike`, -20 dBm0) in 2 s turns with its far end (the far end's
//! RTP audio or the other line of the pair) and always returns line noise (-60 dBm0) and an
//! echo of what it was sent (bulk delay 5-25 ms, an 8-tap dispersive hybrid, ERL 6-15 dB),
//! so the canceller adapts, and the DTMF, fax/modem and call-progress detectors run as the
//! engine runs them. After 300 warm-up ticks each measured tick is timed on its own
//! (`Instant`, wall) and by the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`, which does
//! not count time the host gave to other processes); the fake line's own cost (measured
//! alone, same work) is subtracted. Per channel = (mean CPU per tick - line) / N;
//! channels per core = 10 ms / per channel (all of a core) and 5 ms / per channel (a 50 %
//! budget). The same runs with `echo_tail = None` give the echo canceller's share.
//! Each run checks its scenario held (packets both ways, canceller on and converged, no
//! voice-band data switch, no queue overrun) and the bench fails otherwise.
//!
//! **Latency.** A 4-channel engine (same configuration) on a scripted line that records
//! what the engine sends: 20 ms noise bursts are injected on one line and found again
//! (normalised cross-correlation) on the other side, at several positions in the frame.
//! Clock convention (a double-buffered 10 ms PCM bus, as a TDM DMA works): tick t runs at
//! 10t ms; the rx frame it gets was captured during [10t-10, 10t); the tx frame it hands
//! over plays during [10t+10, 10t+20). Printed: the engine's delay (measured in the sample
//! streams) and the added mouth-to-ear delay under that convention (engine + PCM), for a
//! local call, the line to the RTP packet out and an RTP packet in to the line.
//!
//! The figures are for the machine printed at the top (a shared x86 CI host), not an ARM
//! board; the host's load moves the wall-clock figures, the CPU-clock ones less.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use gatewayd::config::Config;
use gatewayd::rt::{make_queues, ControlQueues, Packet, RtCommand, RtConfig, RtEngine, RtEvent, RtStats, VoiceCodec};
use gw_dsp::g711::{self, Law};
use gw_dsp::testsig::{Noise, SpeechLike};
use gw_dsp::DBM0_PEAK;
use gw_hal::{Frame, PcmBus, PcmStats, FRAME_SAMPLES};
use gw_media::rtp::RtpHeader;
use gw_media::SessionConfig;
use nix::time::{clock_gettime, ClockId};

const WARMUP_TICKS: usize = 300;
/// The measured ticks of each configuration come in this many interleaved rounds.
const ROUNDS: usize = 5;
/// Length of each precomputed talker (a power of two, about 4.1 s).
const VOICE_LEN: usize = 1 << 15;
const VOICES: usize = 8;
const NOISE_LEN: usize = 1 << 12;
/// Talkers take turns of this many ticks (2 s).
const TURN_TICKS: u64 = 200;
/// Transmit history per channel for the echo model (128 ms).
const HIST: usize = 1 << 10;
const TAPS: usize = 8;
/// Tick period.
const TICK_US: f64 = 10_000.0;
const RTP_HEADER: usize = 12;

fn rms_of_dbm0(dbm0: f32) -> f32 {
    DBM0_PEAK / std::f32::consts::SQRT_2 * 10f32.powf(dbm0 / 20.0)
}

/// What the gateway runs with: the embedded default configuration, as `main.rs` builds it.
struct Setup {
    rt: RtConfig,
    ptime_ms: u32,
    jitter_ms: u32,
    codec: VoiceCodec,
}

impl Setup {
    fn from_default_config() -> Setup {
        let config = Config::default_sim();
        let m = &config.media;
        assert!(m.echo_canceller, "the default configuration has the echo canceller on");
        let rt = RtConfig {
            echo_tail: Some(m.echo_tail_ms as usize * 8),
            profile: gw_dsp::tones::profile(&config.system.country).expect("validated country"),
            modem_bypass: m.modem_bypass,
            bridge_channels: 0,
            digital_lines: [0; 2],
        };
        Setup { rt, ptime_ms: m.ptime_ms, jitter_ms: m.jitter_ms, codec: VoiceCodec::G711(Law::Ulaw) }
    }

    fn session(&self, channel: usize) -> SessionConfig {
        SessionConfig {
            payload_type: 0,
            telephone_event: Some(101),
            comfort_noise: None,
            ptime_ms: self.ptime_ms,
            ssrc: 0x5000 + channel as u32,
            initial_seq: 1000,
            initial_ts: 0,
            jitter_depth_ms: self.jitter_ms,
        }
    }
}

/// Precomputed audio: near-end talkers, far-end talkers (µ-law), noise.
struct Signals {
    near: Vec<Vec<i16>>,
    far_talk: Vec<Vec<u8>>,
    far_quiet: Vec<u8>,
    noise: Vec<i16>,
}

impl Signals {
    fn new() -> Signals {
        let noise_rms = rms_of_dbm0(-60.0);
        let mut ns = Noise::new(77);
        let noise: Vec<i16> = (0..NOISE_LEN).map(|_| (ns.gauss() * noise_rms) as i16).collect();
        let talker = |seed: u64| {
            let mut s = SpeechLike::new(seed, -20.0);
            let mut v = vec![0i16; VOICE_LEN];
            s.fill(&mut v);
            v
        };
        let near = (0..VOICES).map(|v| talker(100 + v as u64)).collect();
        let mut fnoise = Noise::new(99);
        let far_noise: Vec<i16> = (0..VOICE_LEN).map(|_| (fnoise.gauss() * noise_rms) as i16).collect();
        let encode = |x: &[i16]| {
            let mut out = vec![0u8; x.len()];
            g711::encode_frame(Law::Ulaw, x, &mut out);
            out
        };
        let far_talk = (0..VOICES)
            .map(|v| {
                let t = talker(200 + v as u64);
                let mixed: Vec<i16> = t.iter().zip(&far_noise).map(|(&a, &b)| a.saturating_add(b)).collect();
                encode(&mixed)
            })
            .collect();
        Signals { near, far_talk, far_quiet: encode(&far_noise), noise }
    }
}

/// Is the near end of `channel` talking at `tick`? (Its far end talks in the other turns.)
fn near_talks(channel: usize, tick: u64) -> bool {
    (tick / TURN_TICKS + channel as u64).is_multiple_of(2)
}

/// One line's hybrid: what comes back of what it was sent.
struct EchoPath {
    delay: usize,
    taps: [f32; TAPS],
}

impl EchoPath {
    fn for_channel(c: usize) -> EchoPath {
        // Bulk delay 5-25 ms, ERL 6, 9, 12 or 15 dB, a decaying alternating response.
        let delay = 40 + (c * 37) % 160;
        let erl_db = 6.0 + 3.0 * (c % 4) as f32;
        let mut taps = [0f32; TAPS];
        let mut norm = 0.0;
        for (k, t) in taps.iter_mut().enumerate() {
            *t = if k % 2 == 0 { 1.0 } else { -0.6 } * 0.7f32.powi(k as i32);
            norm += *t * *t;
        }
        let scale = 10f32.powf(-erl_db / 20.0) / norm.sqrt();
        taps.iter_mut().for_each(|t| *t *= scale);
        EchoPath { delay, taps }
    }
}

/// The fake line card of the cost runs: every channel talks in turns, with noise and echo.
struct LoadLine {
    n: usize,
    tick: u64,
    signals: Rc<Signals>,
    offset: Vec<usize>,
    paths: Vec<EchoPath>,
    hist: Vec<[i16; HIST]>,
    pos: usize,
}

impl LoadLine {
    fn new(n: usize, signals: Rc<Signals>) -> LoadLine {
        LoadLine {
            n,
            tick: 0,
            signals,
            offset: (0..n).map(|c| (c * 1733) % VOICE_LEN).collect(),
            paths: (0..n).map(EchoPath::for_channel).collect(),
            hist: vec![[0; HIST]; n],
            pos: 0,
        }
    }
}

impl PcmBus for LoadLine {
    fn channels(&self) -> usize {
        self.n
    }

    fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
        let sig = &*self.signals;
        let at = self.tick as usize * FRAME_SAMPLES;
        for ch in 0..self.n {
            let h = &mut self.hist[ch];
            for (k, &s) in tx[ch].iter().enumerate() {
                h[(self.pos + k) & (HIST - 1)] = s;
            }
            let path = &self.paths[ch];
            let voice = &sig.near[ch % VOICES];
            let talks = near_talks(ch, self.tick);
            let base = self.offset[ch] + at;
            for (k, out) in rx[ch].iter_mut().enumerate() {
                let now = self.pos + k + HIST - path.delay;
                let mut echo = 0.0;
                for (j, &g) in path.taps.iter().enumerate() {
                    echo += g * h[(now - j) & (HIST - 1)] as f32;
                }
                let speech = if talks { voice[(base + k) & (VOICE_LEN - 1)] as f32 } else { 0.0 };
                let noise = sig.noise[(at + k + ch * 311) & (NOISE_LEN - 1)] as f32;
                *out = (speech + echo + noise).clamp(-32768.0, 32767.0) as i16;
            }
        }
        self.pos = (self.pos + FRAME_SAMPLES) & (HIST - 1);
        self.tick += 1;
        PcmStats::default()
    }
}

/// This thread's CPU time in ns.
fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The far end's RTP packet number `k` for channel `c` (PCMU, 20 ms or whatever ptime).
fn far_packet(sig: &Signals, ptime_ms: u32, c: usize, k: u32) -> Packet {
    let samples = ptime_ms as usize * 8;
    let mut pkt = Packet::empty();
    let hdr = RtpHeader {
        marker: k == 0,
        payload_type: 0,
        sequence: k as u16,
        timestamp: k * samples as u32,
        ssrc: 0x9000 + c as u32,
    };
    let n = hdr.emit(&mut pkt.data);
    // The far end talks in the turns its near end is silent (tick of the packet = 2k).
    let tick = k as u64 * samples as u64 / FRAME_SAMPLES as u64;
    let src = if near_talks(c, tick) { &sig.far_quiet } else { &sig.far_talk[c % VOICES] };
    let base = (c * 2711 + k as usize * samples) & (VOICE_LEN - 1);
    for (j, b) in pkt.data[n..n + samples].iter_mut().enumerate() {
        *b = src[(base + j) & (VOICE_LEN - 1)];
    }
    pkt.channel = c as u8;
    pkt.len = (n + samples) as u16;
    pkt
}

struct LoadResult {
    n: usize,
    echo: bool,
    ticks: usize,
    /// Per measured tick, ns.
    wall: Vec<u64>,
    cpu: Vec<u64>,
    /// Mean CPU ns per tick of each round.
    rounds: Vec<f64>,
    /// The fake line's own cost per tick, ns (CPU clock).
    line_ns: f64,
    erle_mean: f32,
    erle_min: f32,
    packets_in: u64,
    packets_out: u64,
    digits: u64,
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len() as f64
}

fn pct(v: &[u64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    s[((s.len() as f64 * p) as usize).min(s.len() - 1)] as f64
}

impl LoadResult {
    /// The median round's mean CPU time per tick (rounds interleave the runs, so a
    /// burst of load on the host spoils a round, not a whole configuration).
    fn median_round_ns(&self) -> f64 {
        let mut r = self.rounds.clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }
    fn us_per_channel(&self, tick_ns: f64) -> f64 {
        (tick_ns - self.line_ns).max(0.0) / self.n as f64 / 1000.0
    }
    /// CPU time per channel per frame, in µs (the fake line's cost taken out).
    fn per_channel_us(&self) -> f64 {
        self.us_per_channel(self.median_round_ns())
    }
    fn per_channel_p99_us(&self) -> f64 {
        self.us_per_channel(pct(&self.cpu, 0.99))
    }
}

/// An engine with `n` channels, half in RTP calls and half in local calls, with its
/// control plane and media thread played by this bench.
struct LoadRun {
    n: usize,
    echo: bool,
    engine: RtEngine<LoadLine>,
    ctl: ControlQueues,
    stats: Arc<RtStats>,
    sig: Rc<Signals>,
    ptime_ms: u32,
    pending: VecDeque<(usize, RtCommand)>,
    next_packet: Vec<u32>,
    t: usize,
    wall: Vec<u64>,
    cpu: Vec<u64>,
    rounds: Vec<f64>,
    packets_in: u64,
    packets_out: u64,
    digits: u64,
}

impl LoadRun {
    fn new(setup: &Setup, sig: &Rc<Signals>, n: usize, echo: bool) -> LoadRun {
        assert!(n >= 4 && n.is_multiple_of(4) && n <= 256);
        let (rtq, ctl) = make_queues();
        let stats = Arc::new(RtStats::new(n));
        let rt = RtConfig { echo_tail: if echo { setup.rt.echo_tail } else { None }, ..setup.rt };
        let engine = RtEngine::new(LoadLine::new(n, sig.clone()), rtq, stats.clone(), rt);
        let rtp = n / 2;
        // Control plane: RTP calls start on even and odd ticks (so their packets are
        // staggered), then the local calls; what does not fit the queue waits a tick.
        let mut pending: VecDeque<(usize, RtCommand)> = VecDeque::new();
        for c in 0..rtp {
            let start = RtCommand::StartMedia { channel: c as u8, session: setup.session(c), codec: setup.codec };
            pending.push_back((c % 2, start));
        }
        for a in (rtp..n).step_by(2) {
            pending.push_back((2, RtCommand::Listen { channel: a as u8, from: Some(a as u8 + 1) }));
            pending.push_back((2, RtCommand::Listen { channel: a as u8 + 1, from: Some(a as u8) }));
        }
        pending.make_contiguous().sort_by_key(|p| p.0);
        LoadRun {
            n,
            echo,
            engine,
            ctl,
            stats,
            sig: sig.clone(),
            ptime_ms: setup.ptime_ms,
            pending,
            next_packet: vec![0; rtp],
            t: 0,
            wall: Vec::new(),
            cpu: Vec::new(),
            rounds: Vec::new(),
            packets_in: 0,
            packets_out: 0,
            digits: 0,
        }
    }

    /// Runs `ticks` ticks; with `measure`, times each one and records the round.
    fn run(&mut self, ticks: usize, measure: bool) {
        let ticks_per_packet = (self.ptime_ms / 10).max(1) as usize;
        let (cpu_before, clock_ns) = (self.cpu.len(), clock_cost_ns());
        for _ in 0..ticks {
            let t = self.t;
            feed_commands(&mut self.pending, &mut self.ctl, t);
            // The media thread: each call's packet arrives every `ticks_per_packet` ticks.
            for (c, k) in self.next_packet.iter_mut().enumerate() {
                if t >= c % 2 && (t - c % 2).is_multiple_of(ticks_per_packet) {
                    let pkt = far_packet(&self.sig, self.ptime_ms, c, *k);
                    assert!(self.ctl.packets_in.enqueue(pkt).is_ok(), "packets_in queue full at {} channels", self.n);
                    *k += 1;
                    self.packets_in += 1;
                }
            }
            let (w0, c0) = (Instant::now(), thread_cpu_ns());
            self.engine.tick();
            let (c1, w1) = (thread_cpu_ns(), Instant::now());
            if measure {
                self.wall.push(w1.duration_since(w0).as_nanos() as u64);
                // The clock reads themselves taken out.
                self.cpu.push((c1 - c0).saturating_sub(clock_ns));
            }
            while self.ctl.packets_out.dequeue().is_some() {
                self.packets_out += 1;
            }
            while let Some(ev) = self.ctl.events.dequeue() {
                if matches!(ev, RtEvent::LineDigit { .. }) {
                    self.digits += 1;
                }
            }
            self.t += 1;
        }
        if measure {
            self.rounds.push(mean(&self.cpu[cpu_before..]));
        }
    }

    /// Checks that the scenario held (or the figures would be for something else).
    fn finish(self) -> LoadResult {
        let (n, rtp) = (self.n, self.n / 2);
        let s = self.stats.snapshot();
        assert!(self.pending.is_empty(), "commands not delivered");
        assert_eq!(s.packet_out_overruns + s.event_overruns, 0, "rt queue overrun at {n} channels");
        assert_eq!(s.rtp_malformed, 0);
        assert!(
            s.rtp_received + 8 * rtp as u64 >= self.packets_in,
            "{} of {} packets taken",
            s.rtp_received,
            self.packets_in
        );
        let expect_out = (self.t / (self.ptime_ms / 10).max(1) as usize * rtp) as u64;
        assert!(
            self.packets_out + 2 * rtp as u64 >= expect_out,
            "{} packets out, expected ~{expect_out}",
            self.packets_out
        );
        let mut erles = Vec::new();
        for (c, cs) in self.stats.channels.iter().enumerate().take(n) {
            assert!(!cs.signals().vbd, "channel {c} switched to voice-band data: the canceller was bypassed");
            if self.echo {
                let st = cs.snapshot();
                assert!(st.enabled, "channel {c}: echo canceller disabled");
                erles.push(st.erle_db);
            }
        }
        let (erle_mean, erle_min) = if erles.is_empty() {
            (f32::NAN, f32::NAN)
        } else {
            (erles.iter().sum::<f32>() / erles.len() as f32, erles.iter().cloned().fold(f32::MAX, f32::min))
        };
        if self.echo {
            assert!(erle_mean > 10.0, "the canceller did not converge: mean ERLE {erle_mean:.1} dB");
        }
        LoadResult {
            n,
            echo: self.echo,
            ticks: self.cpu.len(),
            line_ns: line_cost_ns(&self.sig, n),
            wall: self.wall,
            cpu: self.cpu,
            rounds: self.rounds,
            erle_mean,
            erle_min,
            packets_in: self.packets_in,
            packets_out: self.packets_out,
            digits: self.digits,
        }
    }
}

/// What reading the thread CPU clock costs, ns.
fn clock_cost_ns() -> u64 {
    let k = 1000;
    let a = thread_cpu_ns();
    for _ in 0..k {
        std::hint::black_box(thread_cpu_ns());
    }
    (thread_cpu_ns() - a) / k
}

/// The fake line's own cost per tick (CPU clock): the same exchanges without the engine.
fn line_cost_ns(sig: &Rc<Signals>, n: usize) -> f64 {
    let mut line = LoadLine::new(n, sig.clone());
    let tx: Vec<Frame> = (0..n)
        .map(|c| {
            let mut f = [0i16; FRAME_SAMPLES];
            f.copy_from_slice(&sig.near[(c + 1) % VOICES][4000..4000 + FRAME_SAMPLES]);
            f
        })
        .collect();
    let mut rx = vec![[0i16; FRAME_SAMPLES]; n];
    let k = 1000;
    let t0 = thread_cpu_ns();
    for _ in 0..k {
        line.exchange(&tx, &mut rx);
        std::hint::black_box(&rx);
    }
    (thread_cpu_ns() - t0) as f64 / k as f64
}

/// Queues the commands due by tick `t`, as many as fit.
fn feed_commands(pending: &mut VecDeque<(usize, RtCommand)>, ctl: &mut ControlQueues, t: usize) {
    while let Some((due, cmd)) = pending.front() {
        if *due > t || ctl.commands.enqueue(cmd.clone()).is_err() {
            break;
        }
        pending.pop_front();
    }
}

// ---------------------------------------------------------------------------------------
// Latency

/// A scripted line card: plays `rx[ch]` from the lines and records what it was sent.
struct ScriptLine {
    rx: Vec<Vec<i16>>,
    sent: Rc<RefCell<Vec<Vec<i16>>>>,
    tick: usize,
}

impl PcmBus for ScriptLine {
    fn channels(&self) -> usize {
        self.rx.len()
    }
    fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
        let at = self.tick * FRAME_SAMPLES;
        let mut sent = self.sent.borrow_mut();
        for ch in 0..self.rx.len() {
            sent[ch].extend_from_slice(&tx[ch]);
            for (k, s) in rx[ch].iter_mut().enumerate() {
                *s = self.rx[ch].get(at + k).copied().unwrap_or(0);
            }
        }
        self.tick += 1;
        PcmStats::default()
    }
}

const BURST: usize = 160;

fn burst(seed: u64) -> Vec<i16> {
    let mut ns = Noise::new(seed);
    let rms = rms_of_dbm0(-15.0);
    (0..BURST).map(|_| (ns.gauss() * rms).clamp(-32000.0, 32000.0) as i16).collect()
}

/// Where `needle` best matches in `hay[from..to]`: (index, normalised correlation).
fn locate(hay: &[i16], needle: &[i16], from: usize, to: usize) -> (usize, f32) {
    let nn: f64 = needle.iter().map(|&x| x as f64 * x as f64).sum();
    let mut best = (from, -1.0f32);
    for p in from..to.min(hay.len().saturating_sub(needle.len())) {
        let w = &hay[p..p + needle.len()];
        let (mut xy, mut yy) = (0f64, 0f64);
        for (&a, &b) in needle.iter().zip(w) {
            xy += a as f64 * b as f64;
            yy += b as f64 * b as f64;
        }
        let r = if yy > 0.0 { (xy / (nn * yy).sqrt()) as f32 } else { 0.0 };
        if r > best.1 {
            best = (p, r);
        }
    }
    best
}

struct Found {
    /// Sample index of the burst where it went in and where it came out.
    at_in: usize,
    at_out: usize,
    ncc: f32,
    /// The delay in ms under the clock convention (see the module docs).
    engine_ms: f64,
    added_ms: f64,
}

struct LatencyResult {
    local: Vec<Found>,
    to_rtp: Vec<Found>,
    from_rtp: Vec<Found>,
}

fn run_latency(setup: &Setup) -> LatencyResult {
    // Channels 0 and 1: a local call. Channel 2: an RTP call. Channel 3: idle.
    const TICKS: usize = 700;
    let len = TICKS * FRAME_SAMPLES;
    let mut rx = vec![vec![0i16; len]; 4];
    let mut seed = 1;
    let mut place = |line: &mut Vec<i16>, at: usize| -> Vec<i16> {
        seed += 1;
        let b = burst(seed);
        line[at..at + BURST].copy_from_slice(&b);
        b
    };
    // Bursts at several positions in the 10 ms frame and in the 20 ms packet.
    let phases = [0usize, 17, 40, 79, 80, 97, 120, 159];
    let mut local_in = Vec::new();
    for (i, &ph) in phases.iter().enumerate() {
        let at = FRAME_SAMPLES * (40 + 30 * i) + ph;
        local_in.push((at, place(&mut rx[0], at)));
    }
    let rtp_start = 2usize; // StartMedia goes in before tick 2
    let mut line_out = Vec::new();
    for (i, &ph) in phases.iter().enumerate() {
        let at = FRAME_SAMPLES * (rtp_start + 40 + 30 * i) + ph;
        line_out.push((at, place(&mut rx[2], at)));
    }
    // The far end's stream: bursts at the start of packets 170, 180, ... (after the line bursts).
    let samples = setup.ptime_ms as usize * 8;
    let far_len = (TICKS / 2) * samples;
    let mut far = vec![0i16; far_len];
    let mut far_in = Vec::new();
    for i in 0..6 {
        let at = samples * (170 + 10 * i);
        far_in.push((at, place(&mut far, at)));
    }

    let sent = Rc::new(RefCell::new((0..4).map(|_| Vec::with_capacity(len)).collect::<Vec<_>>()));
    let line = ScriptLine { rx, sent: sent.clone(), tick: 0 };
    let (rtq, mut ctl) = make_queues();
    let stats = Arc::new(RtStats::new(4));
    let mut engine = RtEngine::new(line, rtq, stats, setup.rt);
    ctl.commands.enqueue(RtCommand::Listen { channel: 0, from: Some(1) }).unwrap();
    ctl.commands.enqueue(RtCommand::Listen { channel: 1, from: Some(0) }).unwrap();

    let ticks_per_packet = (setup.ptime_ms / 10).max(1) as usize;
    let mut k = 0u32;
    let mut arrival_tick = Vec::new();
    // The RTP sent for channel 2: its decoded stream by timestamp, and the tick each sample left.
    let mut sent_stream = vec![0i16; len];
    let mut sent_tick = vec![usize::MAX; len];
    for t in 0..TICKS {
        if t == rtp_start {
            let start = RtCommand::StartMedia { channel: 2, session: setup.session(2), codec: setup.codec };
            ctl.commands.enqueue(start).unwrap();
        }
        if t >= rtp_start && (t - rtp_start).is_multiple_of(ticks_per_packet) && (k as usize + 1) * samples <= far_len {
            let mut pkt = Packet::empty();
            let hdr = RtpHeader { marker: k == 0, payload_type: 0, sequence: k as u16, timestamp: k * samples as u32, ssrc: 7 };
            let n = hdr.emit(&mut pkt.data);
            let audio = &far[k as usize * samples..(k as usize + 1) * samples];
            g711::encode_frame(Law::Ulaw, audio, &mut pkt.data[n..n + samples]);
            pkt.channel = 2;
            pkt.len = (n + samples) as u16;
            assert!(ctl.packets_in.enqueue(pkt).is_ok(), "packets_in full");
            arrival_tick.push(t);
            k += 1;
        }
        engine.tick();
        while let Some(p) = ctl.packets_out.dequeue() {
            let b = p.bytes();
            if p.channel != 2 || b.len() <= RTP_HEADER || b[1] & 0x7f != 0 {
                continue;
            }
            let ts = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
            for (j, &code) in b[RTP_HEADER..].iter().enumerate() {
                if let (Some(s), Some(e)) = (sent_stream.get_mut(ts + j), sent_tick.get_mut(ts + j)) {
                    *s = g711::decode(Law::Ulaw, code);
                    *e = t;
                }
            }
        }
        while ctl.events.dequeue().is_some() {}
    }
    let sent = sent.borrow();
    let ms = |samples: f64| samples / 8.0;

    // Local call: line 0 in, line 1 out. Engine delay in the sample streams; the added
    // delay adds the rx frame's capture (10 ms) and the tx frame's playout buffer (10 ms).
    let local = local_in
        .iter()
        .map(|(at, b)| {
            let (p, ncc) = locate(&sent[1], b, *at, at + 2000);
            let engine_ms = ms((p - at) as f64);
            Found { at_in: *at, at_out: p, ncc, engine_ms, added_ms: engine_ms + 20.0 }
        })
        .collect();
    // Line to RTP: the sample at rx index n was captured at n/8 - 10 ms; its packet left
    // in tick te, at 10 te ms. Engine delay: from the end of its rx frame to the packet.
    let stream_offset = rtp_start * FRAME_SAMPLES;
    let to_rtp = line_out
        .iter()
        .map(|(at, b)| {
            let (p, ncc) = locate(&sent_stream, b, at.saturating_sub(stream_offset + 400), at + 400);
            let te = sent_tick[p];
            let captured = ms(*at as f64) - 10.0;
            let frame_end = (at / FRAME_SAMPLES + 1) as f64 * 10.0 - 10.0;
            let left = te as f64 * 10.0;
            Found { at_in: *at, at_out: p + stream_offset, ncc, engine_ms: left - frame_end, added_ms: left - captured }
        })
        .collect();
    // RTP to line: the packet arrived before tick ta (10 ta ms); the burst, at its start,
    // was handed to the line at tx index p (tick p/80), to play at 10 + p/8 ms.
    let from_rtp = far_in
        .iter()
        .map(|(at, b)| {
            let ta = arrival_tick[at / samples];
            let (p, ncc) = locate(&sent[2], b, ta * FRAME_SAMPLES, ta * FRAME_SAMPLES + 8000);
            let engine_ms = ms(p as f64) - ta as f64 * 10.0;
            Found { at_in: *at, at_out: p, ncc, engine_ms, added_ms: engine_ms + 10.0 }
        })
        .collect();
    LatencyResult { local, to_rtp, from_rtp }
}

// ---------------------------------------------------------------------------------------

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |s| s.trim().to_string());
    let mhz = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .map_or(String::new(), |s| format!(", {} MHz", s.trim()));
    let field = |name: &str| {
        cpuinfo.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(':').nth(1)).map_or("?", |s| s.trim())
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{model}{mhz}, nproc {cores} (cpu cores {}, siblings {}), {} {}",
        field("cpu cores"),
        field("siblings"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Pins this thread to the last core, as gatewayd pins its rt thread.
fn pin() -> String {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let core = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let mut set = CpuSet::new();
    match set.set(core).and_then(|()| sched_setaffinity(Pid::from_raw(0), &set)) {
        Ok(()) => format!("pinned to core {core} (normal priority: no SCHED_FIFO, so the host's load shows in wall time)"),
        Err(e) => format!("not pinned ({e})"),
    }
}

fn stats_line(values: &[f64]) -> String {
    let min = values.iter().cloned().fold(f64::MAX, f64::min);
    let max = values.iter().cloned().fold(f64::MIN, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    if (max - min).abs() < 0.01 {
        format!("{mean:.2} ms")
    } else {
        format!("{mean:.2} ms mean, {min:.2}-{max:.2} ms")
    }
}

fn main() {
    let begin = Instant::now();
    let ticks: usize = std::env::var("RT_BENCH_TICKS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000).max(100);
    let setup = Setup::from_default_config();
    println!("gatewayd rt thread: cost per channel and added latency (cargo bench -p gatewayd --bench rt_channels)");
    println!("machine: {}", machine());
    println!("load average at start: {}; bench thread {}", loadavg(), pin());
    println!(
        "engine as configured by default: echo tail {} samples ({} ms), PCMU ptime {} ms, jitter buffer {} ms, profile {}",
        setup.rt.echo_tail.unwrap_or(0),
        setup.rt.echo_tail.unwrap_or(0) / 8,
        setup.ptime_ms,
        setup.jitter_ms,
        setup.rt.profile.code,
    );
    println!(
        "state per channel: echo canceller {} KB (boxed), the rest of the engine's channel inline",
        std::mem::size_of::<gw_dsp::echo::EchoCanceller>() / 1024
    );
    println!(
        "load: half the channels in RTP calls (a packet in every {} ticks each, staggered), half in local calls (Listen pairs);",
        setup.ptime_ms / 10
    );
    println!("      speech-like talkers in 2 s turns, line noise -60 dBm0, echo 5-25 ms bulk delay, ERL 6-15 dB;");
    println!("      {WARMUP_TICKS} warm-up ticks, then {ticks} ticks timed one by one in {ROUNDS} rounds interleaved over the configurations
      (CPU = the thread's CPU clock, wall = Instant)");
    println!();

    let sig = Rc::new(Signals::new());
    let mut runs = Vec::new();
    for &n in &[4usize, 32, 128] {
        for &echo in &[true, false] {
            let mut run = LoadRun::new(&setup, &sig, n, echo);
            run.run(WARMUP_TICKS, false);
            runs.push(run);
        }
    }
    for _ in 0..ROUNDS {
        for run in runs.iter_mut() {
            run.run(ticks.div_ceil(ROUNDS), true);
        }
    }
    let results: Vec<LoadResult> = runs.into_iter().map(LoadRun::finish).collect();

    println!("cost of one 10 ms tick (whole pipeline: commands, RTP in + jitter buffer, decode + PLC, detectors, PCM, echo canceller, DTMF, encode + RTP out)");
    println!(
        "{:>4} {:>4} | {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>7} | {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>11}",
        "ch", "EC", "cpu mean", "cpu p99", "wall mean", "wall p99", "wall max", "line", "per ch", "per ch99", "ch/core", "ch/50%", "ch/c p99", "ERLE dB"
    );
    for r in &results {
        let us = |v: f64| v / 1000.0;
        let per = r.per_channel_us();
        let erle = if r.echo { format!("{:.1} (min {:.1})", r.erle_mean, r.erle_min) } else { "-".into() };
        println!(
            "{:>4} {:>4} | {:>7.1}us {:>7.1}us | {:>7.1}us {:>7.1}us {:>7.1}us | {:>5.1}us | {:>7.2}us {:>7.2}us | {:>8.0} {:>8.0} {:>8.0} | {:>11}",
            r.n,
            if r.echo { "on" } else { "off" },
            us(mean(&r.cpu)),
            us(pct(&r.cpu, 0.99)),
            us(mean(&r.wall)),
            us(pct(&r.wall, 0.99)),
            us(*r.wall.iter().max().unwrap() as f64),
            us(r.line_ns),
            per,
            r.per_channel_p99_us(),
            TICK_US / per,
            TICK_US / 2.0 / per,
            TICK_US / r.per_channel_p99_us(),
            erle,
        );
    }
    println!();
    println!("  per ch   = (cpu mean of the median round - line) / channels: rt CPU time per channel per 10 ms frame (the fake line's own");
    println!("             work, 'line', measured alone, taken out); cpu mean and the p99s are over all measured ticks;");
    println!("  per ch99 = the same from the 99th-percentile tick; ch/core = 10 ms / per ch, ch/50% = 5 ms / per ch (half a core), ch/c p99 = 10 ms / per ch99;");
    println!("  wall figures include whatever else this shared host ran meanwhile. ERLE: the cancellers' own estimate at the end, mean over channels.");
    for r in &results {
        let rounds: Vec<String> = r.rounds.iter().map(|&ns| format!("{:.2}", r.us_per_channel(ns))).collect();
        println!(
            "  {:>3} ch EC {:<3}: {} ticks, per ch by round {} us; RTP packets in {} / out {}, talk-off digits {}",
            r.n,
            if r.echo { "on" } else { "off" },
            r.ticks,
            rounds.join(" "),
            r.packets_in,
            r.packets_out,
            r.digits
        );
    }
    println!();
    println!("breakdown per channel per frame (CPU): echo canceller = EC on - EC off");
    for pair in results.chunks(2) {
        let (on, off) = (&pair[0], &pair[1]);
        let (a, b) = (on.per_channel_us(), off.per_channel_us());
        println!(
            "  {:>3} channels: {:.2} us = echo canceller {:.2} us ({:.0} %) + the rest {:.2} us (codec, jitter buffer, PLC, detectors, bridge, queues)",
            on.n,
            a,
            a - b,
            100.0 * (a - b) / a,
            b
        );
    }
    println!();

    let lat = run_latency(&setup);
    let mut ok = true;
    let mut check = |name: &str, f: &[Found]| {
        for x in f {
            if x.ncc < 0.9 {
                println!("  !! {name}: burst at {} not found (correlation {:.2})", x.at_in, x.ncc);
                ok = false;
            }
        }
    };
    check("local", &lat.local);
    check("line -> RTP", &lat.to_rtp);
    check("RTP -> line", &lat.from_rtp);
    // The RTP stream carries the line's samples one for one (timestamp = rx index since
    // the call started), or the packet-out times above would be for other samples.
    for x in &lat.to_rtp {
        assert_eq!(x.at_in, x.at_out, "line -> RTP: burst moved in the RTP timestamps");
    }
    let engine = |f: &[Found]| f.iter().map(|x| x.engine_ms).collect::<Vec<_>>();
    let added = |f: &[Found]| f.iter().map(|x| x.added_ms).collect::<Vec<_>>();
    let min_corr = |f: &[Found]| f.iter().map(|x| x.ncc).fold(f32::MAX, f32::min);
    println!("added latency (4-channel engine, same configuration; 20 ms noise bursts found by cross-correlation)");
    println!("  clock: tick t runs at 10t ms; its rx frame was captured in [10t-10, 10t), its tx frame plays in [10t+10, 10t+20)");
    println!("  (a double-buffered 10 ms PCM bus, which also absorbs the tick's run time); packets go out at the end of their tick,");
    println!("  so the tick's run time (above) adds to 'line -> RTP', and a packet waits 0-10 ms more for the next tick than assumed here.");
    println!(
        "  local call, line A -> line B: engine {} (rx frame t -> tx frame t+1); mouth-to-ear added {} = 10 ms capture frame + engine + 10 ms playout frame [{} bursts at frame phases 0-79, min corr {:.3}]",
        stats_line(&engine(&lat.local)),
        stats_line(&added(&lat.local)),
        lat.local.len(),
        min_corr(&lat.local),
    );
    let to_first: Vec<f64> =
        lat.to_rtp.iter().filter(|x| (x.at_in - 2 * FRAME_SAMPLES).is_multiple_of(setup.ptime_ms as usize * 8)).map(|x| x.added_ms).collect();
    println!(
        "  line -> RTP packet out: capture of a sample -> its packet handed to the media thread: {} over packet phases 0-159;",
        stats_line(&added(&lat.to_rtp)),
    );
    println!(
        "      the first sample of a packet waits {} (= ptime {} ms, capture frame included): the stream's added delay; after its rx frame the engine holds a sample {} [min corr {:.3}]",
        stats_line(&to_first),
        setup.ptime_ms,
        stats_line(&engine(&lat.to_rtp)),
        min_corr(&lat.to_rtp),
    );
    println!(
        "  RTP packet in -> line: packet queued just before tick ta -> its first sample handed to the PCM bus: {} = jitter buffer {} ms",
        stats_line(&engine(&lat.from_rtp)),
        setup.jitter_ms - setup.ptime_ms,
    );
    println!(
        "      (playout starts once {} ms are held, the arriving {} ms packet included) + PLC delay line {:.2} ms;",
        setup.jitter_ms,
        setup.ptime_ms,
        gw_dsp::plc::DELAY as f64 / 8.0,
    );
    println!(
        "      mouth-to-ear added (+10 ms playout frame): {} [{} bursts, min corr {:.3}]",
        stats_line(&added(&lat.from_rtp)),
        lat.from_rtp.len(),
        min_corr(&lat.from_rtp),
    );
    for (name, f) in [("local", &lat.local), ("line->RTP", &lat.to_rtp), ("RTP->line", &lat.from_rtp)] {
        let d: Vec<String> = f.iter().map(|x| format!("{}->{}", x.at_in, x.at_out)).collect();
        println!("    {name} burst sample index in -> out: {}", d.join(" "));
    }
    println!();
    println!("load average at end: {}; bench took {:.1} s", loadavg(), begin.elapsed().as_secs_f64());
    assert!(ok, "a latency burst was not found");
}
