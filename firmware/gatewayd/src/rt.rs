//! The real-time audio thread: the only code that touches samples.
//!
//! Every 10 ms tick ([`RtEngine::tick`]):
//! 1. apply commands from the control plane (tones, caller ID, media
//!    start/stop);
//! 2. take RTP packets from the media I/O thread into each call's jitter
//!    buffer (RFC 4733 digits and RFC 4734 modem tones become events);
//! 3. build the frame for each line: caller ID (with its line steps sent
//!    back as events), a tone, decoded RTP (G.711, or G.722 through the
//!    8 <-> 16 kHz resamplers; concealed over gaps), or silence; the far
//!    end's audio goes through the modem-tone and call-progress detectors;
//! 4. exchange one frame per channel with the PCM bus;
//! 5. cancel the line echo, run the modem-tone and DTMF detectors on what
//!    the line sent, turn digits and tones into events (and RFC 4733/4734
//!    packets during a call), encode and packetize the audio.
//!
//! Voice-band data: a fax/modem tone from either side during a call bypasses
//! the echo canceller and DTMF detection for the rest of the call.
//!
//! Silence suppression (RFC 3389), on calls that negotiated comfort noise: in
//! step 5 a [`Dtx`] on the echo-cancelled line audio says whether a frame is
//! sent as audio, as a CN packet or not at all (never in voice-band data or
//! while a DTMF event is sent); in step 3 a gap the far end signalled with CN
//! is filled with [`ComfortNoise`] at its level, not concealed as loss.
//!
//! Rules (DESIGN.md rule 2): after [`RtEngine::new`] nothing here allocates,
//! locks, logs or blocks. The control plane talks to it only through
//! `heapless::spsc` queues, split once at start-up; a full queue bumps a
//! counter and the item is dropped. The unit tests at the bottom check the
//! no-allocation rule with a counting allocator.
//!
//! The thread set-up ([`setup_realtime`]) pins the thread, asks for
//! SCHED_FIFO and locks memory. Where the system refuses (a container, CI),
//! the thread runs anyway and the refusal is reported in the log and status.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_dsp::callerid::FskStandard;
use gw_dsp::callerid_line::{CallerIdReceiver, CallerIdSender, LineStep, ReceiverEvent};
use gw_dsp::cng::{CnParams, ComfortNoise, Dtx, TxFrame};
use gw_dsp::dtmf::{DtmfDetector, DtmfEvent, DtmfGenerator};
use gw_dsp::modem_tones::{ModemTone, ModemToneDetector, ModemToneEvent};
use gw_dsp::progress::{ProgressDetector, ProgressEvent};
use gw_dsp::tones::{CountryProfile, ToneKind};
use gw_dsp::echo::EchoCanceller;
use gw_dsp::plc::Plc;
use gw_dsp::g711::{self, Law};
use gw_dsp::g722::{self, WB_FRAME};
use gw_dsp::resample::{Downsampler, Upsampler};
use gw_dsp::tones::{ToneGenerator, ToneSpec};
use gw_hal::{Frame, PcmBus, FRAME_SAMPLES};
use gw_media::{rfc4733, Received, RtpSession, SessionConfig};
use heapless::spsc::{Consumer, Producer, Queue};

/// Largest RTP packet the rt thread builds or accepts: 12-byte header plus
/// 60 ms of G.711, with room for CSRCs and extensions on receive.
pub const MAX_PACKET: usize = 1024;
pub const CMD_QUEUE: usize = 64;
pub const EVENT_QUEUE: usize = 256;
pub const PACKET_QUEUE: usize = 128;

/// One RTP packet crossing between the rt thread and the media I/O thread.
#[derive(Clone)]
pub struct Packet {
    pub channel: u8,
    pub len: u16,
    pub data: [u8; MAX_PACKET],
}

impl Packet {
    pub const fn empty() -> Self {
        Packet { channel: 0, len: 0, data: [0; MAX_PACKET] }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// Control plane -> rt thread.
// By value, not boxed: the rt thread must not free what the control plane
// allocated. 64 slots of about 600 bytes is a fixed 38 KB.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum RtCommand {
    PlayTone { channel: u8, spec: ToneSpec },
    StopTone { channel: u8 },
    /// Play an on-hook caller ID delivery (built whole by the control
    /// plane); its line steps come back as [`RtEvent::CallerId`].
    StartCallerId { channel: u8, sender: CallerIdSender },
    StopCallerId { channel: u8 },
    StartMedia { channel: u8, session: SessionConfig, codec: VoiceCodec },
    StopMedia { channel: u8 },
    /// The far end's media changed by signalling (a re-INVITE, the answer
    /// after early media): the next SSRC received is locked in place of the
    /// current one. A session never changes source on its own.
    AcceptNewSource { channel: u8 },
    /// TDM cross-connect, one direction: `channel`'s line hears what the
    /// line of `from` sent (echo-cancelled), one frame later; `None` ends it.
    /// A local call is two of these. Media and tones on `channel` win over it.
    /// On a bridge channel (no line: see [`RtConfig::bridge_channels`]) it
    /// says what the channel receives instead of a line: what `from` plays
    /// out in the same tick. Two bridge channels listening to each other
    /// join two RTP sessions (a trunk-to-trunk call, transcoded if need be).
    Listen { channel: u8, from: Option<u8> },
    /// Dial `digits` on the line as DTMF (Q.23 keys, 80 ms on / 80 ms off,
    /// `,` a 1 s pause): an FXO line calling out. [`RtEvent::Dialled`] when done.
    Dial { channel: u8, digits: heapless::Vec<u8, 32> },
    /// Listen to what the line sends as the exchange's side of the call (an
    /// FXO line): call-progress tones (dial, ringback, busy, reorder,
    /// congestion) and speech energy on the line's audio become
    /// [`RtEvent::LineProgress`] and [`RtEvent::LineSpeech`].
    MonitorLine { channel: u8, on: bool },
    /// Run an on-hook caller ID receiver (FSK of `standard`, and DTMF CLIP)
    /// on the line's audio; `None` stops it. Results: [`RtEvent::CallerIdReceived`].
    ReceiveCallerId { channel: u8, standard: Option<FskStandard> },
}

/// rt thread -> control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtEvent {
    /// A DTMF digit started on the line (in-band, detected here).
    LineDigit { channel: u8, digit: u8 },
    /// An RFC 4733 event started in the RTP from the far end.
    RemoteDigit { channel: u8, digit: u8 },
    /// A line step of the caller ID delivery on the channel, in the frame
    /// it falls due.
    CallerId { channel: u8, step: LineStep },
    /// A fax or modem tone (CNG, CED/ANS, /ANS, ANSam, /ANSam) from the line
    /// (`from_line`) or in the far end's audio.
    ModemTone { channel: u8, from_line: bool, event: ModemToneEvent },
    /// A call-progress tone of the country profile in the far end's audio
    /// during a call (busy or reorder: the far end is gone).
    Progress { channel: u8, event: ProgressEvent },
    /// A [`RtCommand::Dial`] string has been sent.
    Dialled { channel: u8 },
    /// A progress tone on a monitored line ([`RtCommand::MonitorLine`]).
    LineProgress { channel: u8, event: ProgressEvent },
    /// Speech energy on a monitored line with no progress tone: someone
    /// answered.
    LineSpeech { channel: u8 },
    /// What the caller ID receiver of the channel found.
    CallerIdReceived { channel: u8, event: ReceiverEvent },
}

/// Per-channel echo canceller figures, published by the rt thread every tick.
#[derive(Debug, Default)]
pub struct ChannelStats {
    pub echo_enabled: AtomicBool,
    /// ERLE in hundredths of a dB.
    pub erle_centi_db: AtomicI32,
    pub erl_centi_db: AtomicI32,
    pub echo_delay_samples: AtomicU32,
    pub double_talk: AtomicBool,
    pub double_talk_events: AtomicU32,
    pub disabled_by_tone: AtomicBool,
    pub tone_disable_events: AtomicU32,
    /// Canceller state bits (`ECHO_*`) and comfort-noise level (hundredths of a dBm0).
    pub echo_state: AtomicU8,
    pub cn_centi_dbm0: AtomicI32,
    /// Voice-band data: a fax or modem tone was heard during this call.
    pub vbd: AtomicBool,
    /// Modem tone present from the line / from the far end ([`tone_code`]).
    pub line_modem_tone: AtomicU8,
    pub network_modem_tone: AtomicU8,
    /// Call-progress tone present in the far end's audio ([`tone_code`]).
    pub network_progress: AtomicU8,
    /// This call negotiated RFC 3389 comfort noise; its counters (reset per call):
    /// CN packets sent and received, line frames suppressed (sent as CN or
    /// nothing), frames of comfort noise played to the line.
    pub cn_negotiated: AtomicBool,
    pub cn_sent: AtomicU32,
    pub cn_received: AtomicU32,
    pub suppressed_frames: AtomicU32,
    pub cn_played_frames: AtomicU32,
    /// The call's RTP reception (its session's counters) and the levels to
    /// and from the line, while it has media (the web UI's quality plots).
    pub media_active: AtomicBool,
    pub rtp_received: AtomicU32,
    pub rtp_lost: AtomicU32,
    pub rtp_late: AtomicU32,
    pub rtp_concealed: AtomicU32,
    pub rtp_jitter_ts: AtomicU32,
    pub to_line_centi_dbm0: AtomicI32,
    pub from_line_centi_dbm0: AtomicI32,
}

/// Per-channel signal detection figures for the status output.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SignalStatus {
    /// Voice-band data mode: echo canceller and DTMF relay off for this call.
    pub vbd: bool,
    pub line_modem_tone: Option<&'static str>,
    pub network_modem_tone: Option<&'static str>,
    pub network_progress_tone: Option<&'static str>,
    /// Silence suppression figures of the call, when it negotiated comfort noise.
    pub silence: Option<SilenceStatus>,
    /// Reception and levels of the call's media, while it has some.
    pub quality: Option<MediaQuality>,
}

/// A call's RTP reception and audio levels (counters from the call's start).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct MediaQuality {
    pub received: u32,
    /// Expected minus received (RFC 3550 A.3).
    pub lost: u32,
    /// Arrived after their playout time.
    pub late: u32,
    /// 10 ms frames concealed for want of audio.
    pub concealed: u32,
    /// Interarrival jitter (RFC 3550 A.8).
    pub jitter_ms: f32,
    /// The far end's audio as played to the line, and the line's audio
    /// after the echo canceller, in dBm0 (the last 10 ms frame).
    pub to_line_dbm0: f32,
    pub from_line_dbm0: f32,
}

/// Per-call silence suppression (RFC 3389) counters for the status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SilenceStatus {
    pub cn_sent: u32,
    pub cn_received: u32,
    /// 10 ms line frames not sent as audio.
    pub suppressed_frames: u32,
    /// 10 ms frames of comfort noise played to the line.
    pub cn_played_frames: u32,
}

const MODEM_TONES: [(ModemTone, &str); 5] = [
    (ModemTone::Cng, "CNG"),
    (ModemTone::Ans, "ANS"),
    (ModemTone::AnsPhaseReversal, "/ANS"),
    (ModemTone::AnsAm, "ANSam"),
    (ModemTone::AnsAmPhaseReversal, "/ANSam"),
];

const PROGRESS_TONES: [(ToneKind, &str); 7] = [
    (ToneKind::Dial, "dial"),
    (ToneKind::Ringback, "ringback"),
    (ToneKind::Busy, "busy"),
    (ToneKind::Reorder, "reorder"),
    (ToneKind::Congestion, "congestion"),
    (ToneKind::CallWaiting, "call-waiting"),
    (ToneKind::SpecialInformation, "SIT"),
];

/// 1-based index of a modem tone in [`MODEM_TONES`] (0 = none).
fn modem_code(t: ModemTone) -> u8 {
    MODEM_TONES.iter().position(|m| m.0 == t).map_or(0, |i| i as u8 + 1)
}

fn progress_code(t: ToneKind) -> u8 {
    PROGRESS_TONES.iter().position(|m| m.0 == t).map_or(0, |i| i as u8 + 1)
}

fn code_name<T>(table: &[(T, &'static str)], code: u8) -> Option<&'static str> {
    code.checked_sub(1).and_then(|i| table.get(i as usize)).map(|e| e.1)
}

/// Echo canceller status of one channel, for the status output.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EchoStatus {
    pub enabled: bool,
    pub erle_db: f32,
    pub erl_db: f32,
    pub delay_ms: f32,
    pub double_talk: bool,
    pub double_talk_events: u32,
    pub disabled_by_tone: bool,
    pub tone_disables: u32,
    /// The filter is adapting (far end talking, no near-end talker).
    pub adapting: bool,
    /// A near-end talker is there: adaptation frozen until it stops.
    pub frozen: bool,
    /// The NLP is suppressing residual echo.
    pub nlp_active: bool,
    /// Comfort noise is being inserted, and its level.
    pub comfort_noise: bool,
    pub comfort_noise_dbm0: f32,
}

const ECHO_ADAPTING: u8 = 1;
const ECHO_FROZEN: u8 = 2;
const ECHO_NLP: u8 = 4;
const ECHO_CN: u8 = 8;

impl ChannelStats {
    pub fn snapshot(&self) -> EchoStatus {
        let r = Ordering::Relaxed;
        EchoStatus {
            enabled: self.echo_enabled.load(r),
            erle_db: self.erle_centi_db.load(r) as f32 / 100.0,
            erl_db: self.erl_centi_db.load(r) as f32 / 100.0,
            delay_ms: self.echo_delay_samples.load(r) as f32 / 8.0,
            double_talk: self.double_talk.load(r),
            double_talk_events: self.double_talk_events.load(r),
            disabled_by_tone: self.disabled_by_tone.load(r),
            tone_disables: self.tone_disable_events.load(r),
            adapting: self.echo_state.load(r) & ECHO_ADAPTING != 0,
            frozen: self.echo_state.load(r) & ECHO_FROZEN != 0,
            nlp_active: self.echo_state.load(r) & ECHO_NLP != 0,
            comfort_noise: self.echo_state.load(r) & ECHO_CN != 0,
            comfort_noise_dbm0: self.cn_centi_dbm0.load(r) as f32 / 100.0,
        }
    }

    pub fn signals(&self) -> SignalStatus {
        let r = Ordering::Relaxed;
        SignalStatus {
            vbd: self.vbd.load(r),
            line_modem_tone: code_name(&MODEM_TONES, self.line_modem_tone.load(r)),
            network_modem_tone: code_name(&MODEM_TONES, self.network_modem_tone.load(r)),
            network_progress_tone: code_name(&PROGRESS_TONES, self.network_progress.load(r)),
            silence: self.cn_negotiated.load(r).then(|| SilenceStatus {
                cn_sent: self.cn_sent.load(r),
                cn_received: self.cn_received.load(r),
                suppressed_frames: self.suppressed_frames.load(r),
                cn_played_frames: self.cn_played_frames.load(r),
            }),
            quality: self.media_active.load(r).then(|| MediaQuality {
                received: self.rtp_received.load(r),
                lost: self.rtp_lost.load(r),
                late: self.rtp_late.load(r),
                concealed: self.rtp_concealed.load(r),
                jitter_ms: self.rtp_jitter_ts.load(r) as f32 / 8.0,
                to_line_dbm0: self.to_line_centi_dbm0.load(r) as f32 / 100.0,
                from_line_dbm0: self.from_line_centi_dbm0.load(r) as f32 / 100.0,
            }),
        }
    }

    /// The call's reception figures and the level played to the line (one
    /// relaxed store each; no allocation).
    fn publish_quality(&self, session: Option<&RtpSession>, to_line: &Frame) {
        let r = Ordering::Relaxed;
        self.media_active.store(session.is_some(), r);
        if let Some(st) = session.map(RtpSession::stats) {
            let c = |v: u64| v.min(u64::from(u32::MAX)) as u32;
            self.rtp_received.store(c(st.packets_received), r);
            self.rtp_lost.store(c(st.lost.max(0) as u64), r);
            self.rtp_late.store(c(st.late), r);
            self.rtp_concealed.store(c(st.concealed), r);
            self.rtp_jitter_ts.store(st.jitter, r);
            self.to_line_centi_dbm0.store((frame_dbm0(to_line) * 100.0) as i32, r);
        }
    }

    /// A call starts, with or without comfort noise: counters from zero.
    fn reset_silence(&self, negotiated: bool) {
        let r = Ordering::Relaxed;
        self.cn_negotiated.store(negotiated, r);
        for c in [&self.cn_sent, &self.cn_received, &self.suppressed_frames, &self.cn_played_frames] {
            c.store(0, r);
        }
    }
}

/// Counters shared with the control plane; written only by the rt thread
/// (relaxed atomics, no locks).
#[derive(Debug, Default)]
pub struct RtStats {
    pub channels: Vec<ChannelStats>,
    pub frames: AtomicU64,
    pub deadline_misses: AtomicU64,
    pub max_tick_ns: AtomicU64,
    pub event_overruns: AtomicU64,
    pub packet_out_overruns: AtomicU64,
    pub pcm_rx_underruns: AtomicU64,
    pub pcm_tx_overruns: AtomicU64,
    pub rtp_received: AtomicU64,
    pub rtp_malformed: AtomicU64,
    pub rtp_sent: AtomicU64,
}

impl RtStats {
    pub fn new(channels: usize) -> Self {
        RtStats { channels: (0..channels).map(|_| ChannelStats::default()).collect(), ..Default::default() }
    }

    pub fn snapshot(&self) -> RtStatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RtStatsSnapshot {
            frames: l(&self.frames),
            deadline_misses: l(&self.deadline_misses),
            max_tick_us: l(&self.max_tick_ns) / 1000,
            event_overruns: l(&self.event_overruns),
            packet_out_overruns: l(&self.packet_out_overruns),
            pcm_rx_underruns: l(&self.pcm_rx_underruns),
            pcm_tx_overruns: l(&self.pcm_tx_overruns),
            rtp_received: l(&self.rtp_received),
            rtp_malformed: l(&self.rtp_malformed),
            rtp_sent: l(&self.rtp_sent),
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RtStatsSnapshot {
    pub frames: u64,
    pub deadline_misses: u64,
    pub max_tick_us: u64,
    pub event_overruns: u64,
    pub packet_out_overruns: u64,
    pub pcm_rx_underruns: u64,
    pub pcm_tx_overruns: u64,
    pub rtp_received: u64,
    pub rtp_malformed: u64,
    pub rtp_sent: u64,
}

/// The queue ends the rt thread owns.
pub struct RtQueues {
    pub commands: Consumer<'static, RtCommand>,
    pub events: Producer<'static, RtEvent>,
    pub packets_in: Consumer<'static, Packet>,
    pub packets_out: Producer<'static, Packet>,
}

/// The queue ends the control plane and the media I/O thread own.
pub struct ControlQueues {
    pub commands: Producer<'static, RtCommand>,
    pub events: Consumer<'static, RtEvent>,
    pub packets_in: Producer<'static, Packet>,
    pub packets_out: Consumer<'static, Packet>,
}

/// Makes the four queues, once per process. They are leaked so both halves
/// are `'static` and can move to their threads; they live as long as the
/// process, like the rt thread itself.
pub fn make_queues() -> (RtQueues, ControlQueues) {
    let cmd: &'static mut Queue<RtCommand, CMD_QUEUE> = Box::leak(Box::new(Queue::new()));
    let ev: &'static mut Queue<RtEvent, EVENT_QUEUE> = Box::leak(Box::new(Queue::new()));
    let pin: &'static mut Queue<Packet, PACKET_QUEUE> = Box::leak(Box::new(Queue::new()));
    let pout: &'static mut Queue<Packet, PACKET_QUEUE> = Box::leak(Box::new(Queue::new()));
    let (cmd_p, cmd_c) = cmd.split();
    let (ev_p, ev_c) = ev.split();
    let (pin_p, pin_c) = pin.split();
    let (pout_p, pout_c) = pout.split();
    (
        RtQueues { commands: cmd_c, events: ev_p, packets_in: pin_c, packets_out: pout_p },
        ControlQueues { commands: cmd_p, events: ev_c, packets_in: pin_p, packets_out: pout_c },
    )
}

/// The negotiated voice codec of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoiceCodec {
    G711(Law),
    /// G.722 at 64 kbit/s: the 8 kHz line is resampled to 16 kHz and back,
    /// 80 code bytes per 10 ms like G.711 (and the same 8000 Hz RTP clock).
    G722,
}

/// A voice codec with its state (all inline: made in the rt thread, which
/// must not allocate; about 1.2 KB per call).
#[allow(clippy::large_enum_variant)]
enum Voice {
    G711(Law),
    G722 { enc: g722::Encoder, dec: g722::Decoder, up: Upsampler, down: Downsampler },
}

impl Voice {
    fn new(codec: VoiceCodec) -> Voice {
        match codec {
            VoiceCodec::G711(law) => Voice::G711(law),
            VoiceCodec::G722 => Voice::G722 {
                enc: g722::Encoder::new(g722::Mode::Kbps64),
                dec: g722::Decoder::new(g722::Mode::Kbps64),
                up: Upsampler::new(),
                down: Downsampler::new(),
            },
        }
    }

    fn encode(&mut self, pcm: &Frame, out: &mut [u8; FRAME_SAMPLES]) {
        match self {
            Voice::G711(law) => g711::encode_frame(*law, pcm, out),
            Voice::G722 { enc, up, .. } => {
                let mut wide = [0i16; WB_FRAME];
                up.process_frame(pcm, &mut wide);
                enc.encode_frame(&wide, out);
            }
        }
    }

    fn decode(&mut self, data: &[u8; FRAME_SAMPLES], out: &mut Frame) {
        match self {
            Voice::G711(law) => g711::decode_frame(*law, data, out),
            Voice::G722 { dec, down, .. } => {
                let mut wide = [0i16; WB_FRAME];
                dec.decode_frame(data, &mut wide);
                down.process_frame(&wide, out);
            }
        }
    }
}

struct Media {
    session: RtpSession,
    voice: Voice,
    plc: Plc,
    /// Silence suppression, when the call negotiated comfort noise.
    dtx: Option<Dtx>,
    /// The far end's comfort noise, played while it signals silence.
    cng: ComfortNoise,
}

/// Order of the spectral model in the CN packets we send (RFC 3389 §3.2).
const CN_ORDER: usize = gw_dsp::cng::MAX_ORDER;

struct Channel {
    /// Boxed: about 30 KB each, allocated once in `RtEngine::new`.
    echo: Option<Box<EchoCanceller>>,
    dtmf: DtmfDetector,
    tone: Option<ToneGenerator>,
    /// On-hook caller ID in progress: its audio replaces tones and media.
    caller_id: Option<CallerIdSender>,
    media: Option<Media>,
    /// Fax/modem tones from the line and in the far end's audio.
    line_tones: ModemToneDetector,
    network_tones: ModemToneDetector,
    /// Busy/reorder in the far end's audio.
    progress: ProgressDetector,
    /// Voice-band data for the rest of the call (see [`RtConfig::modem_bypass`]).
    vbd: bool,
    /// The TDM channel this line hears (a local call), see [`RtCommand::Listen`].
    hears: Option<u8>,
    /// A far-end RFC 4733 digit played in band to the line (an FXO line or
    /// an IVR behind the phone needs the tones, not the packets).
    digit_out: Option<DtmfGenerator>,
    /// Frames left during which the line's own DTMF detection is off: the
    /// echo of a digit we play must not go back to the far end as a digit.
    digit_guard: u8,
    /// A dial string in progress: the keys left and the one playing.
    dial: Option<Dialler>,
    /// Line-side monitoring (an FXO line): progress tones and speech.
    monitor: Option<LineMonitor>,
    /// On-hook caller ID receiver (an FXO line).
    cid_rx: Option<CallerIdReceiver>,
    /// An ISDN B-channel ([`RtConfig::digital_lines`]).
    digital: bool,
}

impl Channel {
    /// A B-channel with nothing to do: its detectors need not run.
    fn idle_digital(&self) -> bool {
        self.digital
            && self.media.is_none()
            && self.hears.is_none()
            && self.tone.is_none()
            && self.caller_id.is_none()
            && self.dial.is_none()
            && self.digit_out.is_none()
            && self.monitor.is_none()
            && self.cid_rx.is_none()
    }
}

/// Sends a dial string key by key (Q.23: at least 40 ms of tone and 40 ms
/// of pause per key; automatic diallers use 70-100 ms: 80 and 80 here).
struct Dialler {
    digits: heapless::Vec<u8, 32>,
    next: usize,
    key: Option<DtmfGenerator>,
    /// Frames of a `,` pause left.
    pause: u8,
}

const DIAL_ON_MS: u32 = 80;
const DIAL_OFF_MS: u32 = 80;
const DIAL_LEVEL_DBM0: f32 = -7.0;
const DIAL_PAUSE_FRAMES: u8 = 100;

impl Dialler {
    /// Fills `out`; false once every key has been sent.
    fn fill(&mut self, out: &mut Frame) -> bool {
        out.fill(0);
        if self.pause > 0 {
            self.pause -= 1;
            return true;
        }
        if let Some(k) = self.key.as_mut() {
            if k.fill(out) {
                return true;
            }
            self.key = None;
        }
        while let Some(&d) = self.digits.get(self.next) {
            self.next += 1;
            if d == b',' {
                self.pause = DIAL_PAUSE_FRAMES;
                return true;
            }
            if let Some(g) = DtmfGenerator::new(d, DIAL_LEVEL_DBM0, DIAL_ON_MS, DIAL_OFF_MS) {
                self.key = Some(g);
                return true;
            }
        }
        false
    }
}

/// Speech on a monitored line: energy above this level, with no progress
/// tone recognised, for [`SPEECH_FRAMES`] more frames than quiet ones, means
/// "someone is talking" (an answer, for answer supervision). 1.2 s: longer
/// than the progress detector takes to name a steady tone (dial tone: 1 s),
/// so a tone is never taken for speech.
const SPEECH_LEVEL_DBM0: f32 = -40.0;
const SPEECH_FRAMES: u8 = 120;

struct LineMonitor {
    progress: ProgressDetector,
    /// A progress tone is present now.
    tone: bool,
    loud: u8,
    reported: bool,
}

/// A far-end digit played to the line: Q.24's usual 100 ms on, 50 ms off,
/// at -8 dBm0 per tone (within Q.23's sending levels).
const DIGIT_ON_MS: u32 = 100;
const DIGIT_OFF_MS: u32 = 50;
const DIGIT_LEVEL_DBM0: f32 = -8.0;
/// The digit's frames plus 50 ms for the line's echo to fade.
const DIGIT_GUARD_FRAMES: u8 = ((DIGIT_ON_MS + DIGIT_OFF_MS + 50) / 10) as u8;

/// What the rt engine is built with.
#[derive(Debug, Clone, Copy)]
pub struct RtConfig {
    /// Echo canceller tail in samples, or `None` for no echo cancellation.
    pub echo_tail: Option<usize>,
    /// Whose call-progress tones to recognise in the far end's audio.
    pub profile: &'static CountryProfile,
    /// On a fax or modem tone during a call, switch the channel to voice-band
    /// data (V.152 in spirit, over the G.711 already negotiated): the echo
    /// canceller is bypassed (fax and V.17 would otherwise meet an NLP and a
    /// filter adapting to their signal) and in-band DTMF is no longer
    /// detected (modem signals can talk off a digit, and an RFC 4733 event
    /// would replace their audio).
    pub modem_bypass: bool,
    /// Channels after the PCM bus's, with no line: each carries one RTP
    /// session of a call between two SIP legs. No echo canceller.
    pub bridge_channels: usize,
    /// PCM lines that are ISDN B-channels (bit `i` of the mask: line `i`,
    /// up to 128): 4-wire digital, so no echo canceller (there is no hybrid
    /// on the gateway's side), and while idle (no call, tone, dialler or
    /// listener) their detectors do not run: 30 idle B-channels of an E1
    /// cost a copy each.
    pub digital_lines: [u64; 2],
}

impl RtConfig {
    /// Whether line `i` is in [`RtConfig::digital_lines`].
    pub fn is_digital(&self, i: usize) -> bool {
        i < 128 && self.digital_lines[i / 64] & (1u64 << (i % 64)) != 0
    }

    /// Marks line `i` (< 128) as digital.
    pub fn set_digital(&mut self, i: usize) {
        if i < 128 {
            self.digital_lines[i / 64] |= 1u64 << (i % 64);
        }
    }
}

impl RtConfig {
    /// No echo canceller, US tones, modem bypass on (unit tests, tools).
    pub fn plain() -> Self {
        RtConfig {
            echo_tail: None,
            profile: gw_dsp::tones::profile("US").expect("US profile"),
            modem_bypass: true,
            bridge_channels: 0,
            digital_lines: [0; 2],
        }
    }
}

/// Everything the rt thread owns. Sized once in [`RtEngine::new`].
pub struct RtEngine<P: PcmBus> {
    pcm: P,
    queues: RtQueues,
    stats: Arc<RtStats>,
    channels: Vec<Channel>,
    tx: Vec<Frame>,
    rx: Vec<Frame>,
    /// Each line's echo-cancelled audio of the last tick: what a channel
    /// that [`Channel::hears`] it plays in the next one.
    clean: Vec<Frame>,
    /// Channels with a line on the PCM bus; the rest are bridge channels.
    lines: usize,
    scratch: Packet,
    modem_bypass: bool,
    profile: &'static CountryProfile,
}

impl<P: PcmBus> RtEngine<P> {
    pub fn new(pcm: P, queues: RtQueues, stats: Arc<RtStats>, config: RtConfig) -> Self {
        let lines = pcm.channels();
        let n = lines + config.bridge_channels;
        assert!(stats.channels.len() >= n, "RtStats sized for fewer channels than the PCM bus and the bridges");
        let channels = (0..n)
            .map(|i| Channel {
                echo: config.echo_tail.filter(|_| i < lines && !config.is_digital(i)).map(|t| Box::new(EchoCanceller::new(t))),
                digital: i < lines && config.is_digital(i),
                dtmf: DtmfDetector::new(),
                tone: None,
                caller_id: None,
                media: None,
                line_tones: ModemToneDetector::new(),
                network_tones: ModemToneDetector::new(),
                progress: ProgressDetector::new(config.profile),
                vbd: false,
                hears: None,
                digit_out: None,
                digit_guard: 0,
                dial: None,
                monitor: None,
                cid_rx: None,
            })
            .collect();
        RtEngine {
            pcm,
            queues,
            stats,
            channels,
            tx: vec![[0; FRAME_SAMPLES]; n],
            rx: vec![[0; FRAME_SAMPLES]; n],
            clean: vec![[0; FRAME_SAMPLES]; n],
            lines,
            scratch: Packet::empty(),
            modem_bypass: config.modem_bypass,
            profile: config.profile,
        }
    }

    /// One 10 ms tick. Allocation-free.
    pub fn tick(&mut self) {
        self.apply_commands();
        self.receive_packets();
        self.build_line_frames();
        let lines = self.lines;
        let st = self.pcm.exchange(&self.tx[..lines], &mut self.rx[..lines]);
        // A bridge channel's "line" is the channel it listens to: what that
        // one plays out this tick (the other SIP leg's far end).
        for v in lines..self.channels.len() {
            self.rx[v] = match self.channels[v].hears {
                Some(w) => self.tx[usize::from(w)],
                None => [0; FRAME_SAMPLES],
            };
        }
        self.stats.pcm_rx_underruns.fetch_add(st.rx_underruns as u64, Ordering::Relaxed);
        self.stats.pcm_tx_overruns.fetch_add(st.tx_overruns as u64, Ordering::Relaxed);
        self.process_line_frames();
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
    }

    fn apply_commands(&mut self) {
        let profile = self.profile;
        while let Some(cmd) = self.queues.commands.dequeue() {
            match cmd {
                RtCommand::PlayTone { channel, spec } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        ch.tone = Some(ToneGenerator::new(&spec));
                    }
                }
                RtCommand::StopTone { channel } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        ch.tone = None;
                    }
                }
                RtCommand::StartCallerId { channel, sender } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        ch.caller_id = Some(sender);
                    }
                }
                RtCommand::StopCallerId { channel } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        ch.caller_id = None;
                    }
                }
                RtCommand::StartMedia { channel, session, codec } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        // A new call: the echo path may differ (another far end's
                        // level), so converge from scratch.
                        if let Some(ec) = ch.echo.as_mut() {
                            ec.reset();
                        }
                        let dtx = session.comfort_noise.map(|_| Dtx::new(CN_ORDER));
                        self.stats.channels[channel as usize].reset_silence(dtx.is_some());
                        ch.media = Some(Media {
                            session: RtpSession::new(session),
                            voice: Voice::new(codec),
                            plc: Plc::new(),
                            dtx,
                            cng: ComfortNoise::new(),
                        });
                        ch.network_tones.reset();
                        ch.progress = ProgressDetector::new(profile);
                        ch.vbd = false;
                    }
                }
                RtCommand::AcceptNewSource { channel } => {
                    if let Some(m) = self.channels.get_mut(channel as usize).and_then(|c| c.media.as_mut()) {
                        m.session.accept_new_source();
                    }
                }
                RtCommand::StopMedia { channel } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        ch.media = None;
                        ch.digit_out = None;
                        ch.vbd = false;
                        self.stats.channels[channel as usize].cn_negotiated.store(false, Ordering::Relaxed);
                    }
                }
                RtCommand::Dial { channel, digits } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        ch.dial = Some(Dialler { digits, next: 0, key: None, pause: 0 });
                    }
                }
                RtCommand::MonitorLine { channel, on } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        ch.monitor = on.then(|| LineMonitor {
                            progress: ProgressDetector::new(profile),
                            tone: false,
                            loud: 0,
                            reported: false,
                        });
                    }
                }
                RtCommand::ReceiveCallerId { channel, standard } => {
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        ch.cid_rx = standard.map(CallerIdReceiver::new);
                    }
                }
                RtCommand::Listen { channel, from } => {
                    let n = self.channels.len();
                    if let Some(ch) = self.channels.get_mut(channel as usize) {
                        let from = from.filter(|&f| (f as usize) < n && f != channel);
                        if from.is_some() && ch.hears != from {
                            // A new local call: converge on its echo path from scratch.
                            if let Some(ec) = ch.echo.as_mut() {
                                ec.reset();
                            }
                            ch.vbd = false;
                        }
                        ch.hears = from;
                    }
                }
            }
        }
    }

    fn receive_packets(&mut self) {
        while let Some(pkt) = self.queues.packets_in.dequeue() {
            let channel = pkt.channel;
            let Some(media) = self.channels.get_mut(channel as usize).and_then(|c| c.media.as_mut())
            else {
                continue; // a late packet for a call that has ended
            };
            match media.session.receive(pkt.bytes()) {
                Ok(Received::DtmfStart(digit)) => {
                    self.stats.rtp_received.fetch_add(1, Ordering::Relaxed);
                    let ch = &mut self.channels[channel as usize];
                    ch.digit_out = DtmfGenerator::new(digit, DIGIT_LEVEL_DBM0, DIGIT_ON_MS, DIGIT_OFF_MS);
                    ch.digit_guard = DIGIT_GUARD_FRAMES;
                    self.push_event(RtEvent::RemoteDigit { channel, digit });
                }
                // The far end signals a fax/modem tone as an RFC 4734 event:
                // as good as hearing it in its audio.
                Ok(Received::ToneEventStart(e)) => {
                    self.stats.rtp_received.fetch_add(1, Ordering::Relaxed);
                    if let Some(tone) = modem_tone_of_event(e) {
                        let ch = &mut self.channels[channel as usize];
                        if self.modem_bypass {
                            ch.vbd = true;
                        }
                        let event = ModemToneEvent::Detected(tone);
                        self.push_event(RtEvent::ModemTone { channel, from_line: false, event });
                    }
                }
                // The far end went silent: its noise, until its speech plays.
                Ok(Received::ComfortNoise) => {
                    self.stats.rtp_received.fetch_add(1, Ordering::Relaxed);
                    if let Ok(p) = CnParams::decode(media.session.comfort_noise_payload()) {
                        media.cng.set_params(&p);
                    }
                    self.stats.channels[channel as usize].cn_received.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {
                    self.stats.rtp_received.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.stats.rtp_malformed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn build_line_frames(&mut self) {
        let mut encoded = [0u8; FRAME_SAMPLES];
        let clean = &self.clean;
        for (i, (ch, out)) in self.channels.iter_mut().zip(self.tx.iter_mut()).enumerate() {
            let channel = i as u8;
            let cs = &self.stats.channels[i];
            if let Some(cid) = ch.caller_id.as_mut() {
                cid.fill(out);
                while let Some(step) = cid.poll_event() {
                    push(&mut self.queues.events, &self.stats, RtEvent::CallerId { channel, step });
                }
                if cid.is_done() {
                    ch.caller_id = None;
                }
            } else if let Some(d) = ch.dial.as_mut() {
                // Dialling out on an FXO line: the keys replace everything else.
                if !d.fill(out) {
                    ch.dial = None;
                    push(&mut self.queues.events, &self.stats, RtEvent::Dialled { channel });
                }
                ch.digit_guard = DIGIT_GUARD_FRAMES;
            } else if let Some(g) = ch.digit_out.as_mut() {
                if !g.fill(out) {
                    ch.digit_out = None;
                }
                // The digit replaces the audio (RFC 4733 2.5.1.2: the sender mutes it).
                if let Some(m) = ch.media.as_mut() {
                    m.session.pull_frame(&mut encoded);
                }
            } else if let Some(tone) = ch.tone.as_mut() {
                tone.fill(out);
                // Keep the jitter buffer draining while a tone covers the audio.
                if let Some(m) = ch.media.as_mut() {
                    m.session.pull_frame(&mut encoded);
                }
            } else if let Some(m) = ch.media.as_mut() {
                // G.711 Appendix I concealment over jitter-buffer gaps
                // (it delays the audio by 30 samples to blend the edges).
                if m.session.pull_frame(&mut encoded) {
                    m.voice.decode(&encoded, out);
                    m.plc.good_frame(out);
                } else if m.session.cn_active() {
                    // Signalled silence, not loss (RFC 3389 §4). Through the
                    // concealer's delay line too, so speech blends in and out.
                    m.cng.fill(out);
                    m.plc.good_frame(out);
                    cs.cn_played_frames.fetch_add(1, Ordering::Relaxed);
                } else {
                    m.plc.conceal(out);
                }
                // What the far end sends: fax/modem answer tones, and its
                // network's busy or reorder tone once it has gone.
                if let Some(event) = ch.network_tones.process(out) {
                    note_modem_tone(&mut ch.vbd, self.modem_bypass, &cs.network_modem_tone, event);
                    push(&mut self.queues.events, &self.stats, RtEvent::ModemTone { channel, from_line: false, event });
                }
                if !ch.vbd {
                    if let Some(event) = ch.progress.process(out) {
                        let code = match event {
                            ProgressEvent::Detected(k) => progress_code(k),
                            ProgressEvent::Ended(_) => 0,
                        };
                        cs.network_progress.store(code, Ordering::Relaxed);
                        push(&mut self.queues.events, &self.stats, RtEvent::Progress { channel, event });
                    }
                }
            } else if let Some(src) = ch.hears {
                // A local call: the other line's audio of the last tick, no
                // codec, no jitter buffer (one frame of delay).
                *out = clean[src as usize];
            } else {
                out.fill(0);
            }
            cs.vbd.store(ch.vbd, Ordering::Relaxed);
            cs.publish_quality(ch.media.as_ref().map(|m| &m.session), out);
        }
    }

    fn process_line_frames(&mut self) {
        let mut encoded = [0u8; FRAME_SAMPLES];
        let mut clean: Frame = [0; FRAME_SAMPLES];
        for i in 0..self.channels.len() {
            let channel = i as u8;
            let ch = &mut self.channels[i];
            if ch.idle_digital() {
                // Still heard as it is by a channel listening to it.
                self.clean[i] = self.rx[i];
                continue;
            }
            // What the line sent, less the echo of what we sent it (not in
            // voice-band data: the modems cancel their own echo).
            match ch.echo.as_mut() {
                Some(ec) if !ch.vbd => {
                    ec.process(&self.tx[i], &self.rx[i], &mut clean);
                    publish_echo(&self.stats.channels[i], ec);
                }
                _ => clean = self.rx[i],
            }
            self.clean[i] = clean;
            if ch.media.is_some() {
                self.stats.channels[i].from_line_centi_dbm0.store((frame_dbm0(&clean) * 100.0) as i32, Ordering::Relaxed);
            }
            // An FXO line: the exchange's tones and speech, and caller ID on hook.
            if let Some(m) = ch.monitor.as_mut() {
                if let Some(event) = m.progress.process(&clean) {
                    m.tone = matches!(event, ProgressEvent::Detected(_));
                    m.loud = 0;
                    push(&mut self.queues.events, &self.stats, RtEvent::LineProgress { channel, event });
                }
                if !m.tone && frame_dbm0(&clean) > SPEECH_LEVEL_DBM0 {
                    m.loud = m.loud.saturating_add(1);
                } else {
                    m.loud = m.loud.saturating_sub(1);
                }
                if m.loud >= SPEECH_FRAMES && !m.reported {
                    m.reported = true;
                    push(&mut self.queues.events, &self.stats, RtEvent::LineSpeech { channel });
                }
            }
            if let Some(rx) = ch.cid_rx.as_mut() {
                rx.process(&clean);
                while let Some(event) = rx.poll_event() {
                    push(&mut self.queues.events, &self.stats, RtEvent::CallerIdReceived { channel, event });
                }
            }
            if let Some(event) = ch.line_tones.process(&clean) {
                // Voice-band data only during a call (a fax's CNG may start
                // while it still dials).
                let bypass = self.modem_bypass && ch.media.is_some();
                note_modem_tone(&mut ch.vbd, bypass, &self.stats.channels[i].line_modem_tone, event);
                // Also to the far end as an RFC 4734 event, beside the audio
                // that keeps carrying the tone.
                if let Some(m) = ch.media.as_mut() {
                    match event {
                        ModemToneEvent::Detected(t) => {
                            m.session.start_tone_event(rfc4734_event(t));
                        }
                        ModemToneEvent::Ended(_) => m.session.stop_tone_event(),
                    }
                }
                push(&mut self.queues.events, &self.stats, RtEvent::ModemTone { channel, from_line: true, event });
            }
            // In voice-band data a digit would be talk-off from the modem;
            // right after a far-end digit played here, it would be its echo.
            ch.digit_guard = ch.digit_guard.saturating_sub(1);
            let digit = if ch.vbd || ch.digit_guard > 0 { None } else { ch.dtmf.process(&clean) };
            if let Some(m) = ch.media.as_mut() {
                match digit {
                    Some(DtmfEvent::Start(d)) => {
                        m.session.start_dtmf(d);
                    }
                    Some(DtmfEvent::End(..)) => m.session.stop_dtmf(),
                    None => {}
                }
                // Silence suppression: never for fax/modem, nor while a digit
                // or tone event is sent (the event needs its frames).
                let tx = match m.dtx.as_mut() {
                    Some(dtx) if !ch.vbd && !m.session.dtmf_active() && !m.session.tone_event_active() => {
                        dtx.process(&clean)
                    }
                    _ => TxFrame::Audio,
                };
                let cs = &self.stats.channels[i];
                let out = &mut self.scratch.data;
                let sent = match tx {
                    TxFrame::Audio => {
                        m.voice.encode(&clean, &mut encoded);
                        m.session.send_frame(&encoded, out)
                    }
                    TxFrame::Cn(p) => {
                        cs.suppressed_frames.fetch_add(1, Ordering::Relaxed);
                        let mut payload = [0u8; 1 + CN_ORDER];
                        let n = p.encode(&mut payload).unwrap_or(0);
                        let sent = m.session.send_cn(&payload[..n], out);
                        if sent.is_some() {
                            cs.cn_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        sent
                    }
                    TxFrame::Silent => {
                        cs.suppressed_frames.fetch_add(1, Ordering::Relaxed);
                        m.session.skip_frame(out)
                    }
                };
                if let Some(n) = sent {
                    send_packet(&mut self.queues.packets_out, &self.stats, &mut self.scratch, channel, n);
                }
                // RFC 4734 tone event packets go after the audio packet of
                // the frame (one sequence space).
                while let Some(n) = m.session.poll_event_packet(&mut self.scratch.data) {
                    send_packet(&mut self.queues.packets_out, &self.stats, &mut self.scratch, channel, n);
                }
            }
            if let Some(DtmfEvent::Start(d)) = digit {
                self.push_event(RtEvent::LineDigit { channel, digit: d });
            }
        }
    }

    fn push_event(&mut self, ev: RtEvent) {
        push(&mut self.queues.events, &self.stats, ev);
    }
}

/// The level of a frame in dBm0 (its RMS against the 0 dBm0 sine's).
fn frame_dbm0(f: &Frame) -> f32 {
    let power: f32 = f.iter().map(|&x| f32::from(x) * f32::from(x)).sum::<f32>() / FRAME_SAMPLES as f32;
    let full = gw_dsp::DBM0_PEAK * gw_dsp::DBM0_PEAK / 2.0;
    10.0 * (power.max(1e-3) / full).log10()
}

/// A modem-tone event from one side: its status figure, and voice-band data
/// for the rest of the call when `bypass`.
fn note_modem_tone(vbd: &mut bool, bypass: bool, present: &AtomicU8, event: ModemToneEvent) {
    let code = match event {
        ModemToneEvent::Detected(t) => modem_code(t),
        ModemToneEvent::Ended(_) => 0,
    };
    present.store(code, Ordering::Relaxed);
    if bypass && matches!(event, ModemToneEvent::Detected(_)) {
        *vbd = true;
    }
}

/// Queues the first `len` bytes of `scratch` for the media thread.
fn send_packet(out: &mut Producer<'static, Packet>, stats: &RtStats, scratch: &mut Packet, channel: u8, len: usize) {
    scratch.channel = channel;
    scratch.len = len as u16;
    if out.enqueue(scratch.clone()).is_err() {
        stats.packet_out_overruns.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.rtp_sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// RFC 4734 event code of a modem tone.
fn rfc4734_event(t: ModemTone) -> u8 {
    match t {
        ModemTone::Ans => rfc4733::ANS,
        ModemTone::AnsPhaseReversal => rfc4733::ANS_REVERSED,
        ModemTone::AnsAm => rfc4733::ANSAM,
        ModemTone::AnsAmPhaseReversal => rfc4733::ANSAM_REVERSED,
        ModemTone::Cng => rfc4733::CNG,
    }
}

fn modem_tone_of_event(e: u8) -> Option<ModemTone> {
    [ModemTone::Ans, ModemTone::AnsPhaseReversal, ModemTone::AnsAm, ModemTone::AnsAmPhaseReversal, ModemTone::Cng]
        .into_iter()
        .find(|&t| rfc4734_event(t) == e)
}

/// Queues an event for the control plane; a full queue drops it and counts.
fn push(events: &mut Producer<'static, RtEvent>, stats: &RtStats, ev: RtEvent) {
    if events.enqueue(ev).is_err() {
        stats.event_overruns.fetch_add(1, Ordering::Relaxed);
    }
}

fn publish_echo(out: &ChannelStats, ec: &EchoCanceller) {
    let st = ec.stats();
    let r = Ordering::Relaxed;
    out.echo_enabled.store(!st.disabled_by_tone, r);
    out.erle_centi_db.store((st.erle_db * 100.0) as i32, r);
    out.erl_centi_db.store((st.erl_db * 100.0) as i32, r);
    out.echo_delay_samples.store(st.echo_delay_samples, r);
    out.double_talk.store(st.double_talk, r);
    out.double_talk_events.store(st.double_talk_events, r);
    out.disabled_by_tone.store(st.disabled_by_tone, r);
    out.tone_disable_events.store(st.tone_disable_events, r);
    let bit = |on: bool, b: u8| if on { b } else { 0 };
    out.echo_state.store(
        bit(st.adapting, ECHO_ADAPTING)
            | bit(st.adaptation_frozen, ECHO_FROZEN)
            | bit(st.nlp_active, ECHO_NLP)
            | bit(st.comfort_noise, ECHO_CN),
        r,
    );
    out.cn_centi_dbm0.store((st.comfort_noise_dbm0 * 100.0) as i32, r);
}

/// What the real-time set-up obtained from the system.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RtSetupReport {
    pub core: Result<usize, String>,
    pub sched_fifo: Result<i32, String>,
    pub mlockall: Result<(), String>,
}

impl RtSetupReport {
    pub fn fully_realtime(&self) -> bool {
        self.core.is_ok() && self.sched_fifo.is_ok() && self.mlockall.is_ok()
    }
}

/// SCHED_FIFO priority of the audio thread: above every ordinary thread,
/// below the kernel's own threaded interrupt handlers (50).
pub const RT_PRIORITY: i32 = 40;

/// Pins the calling thread, asks for SCHED_FIFO and locks memory. Each step
/// is independent: a refusal is reported, never fatal.
pub fn setup_realtime(core: Option<usize>) -> RtSetupReport {
    let core = match core {
        None => Err("no rt_core configured".to_string()),
        Some(c) => pin_to_core(c).map(|()| c),
    };
    let sched_fifo = set_fifo(RT_PRIORITY).map(|()| RT_PRIORITY);
    let mlockall = lock_memory();
    prefault_stack();
    RtSetupReport { core, sched_fifo, mlockall }
}

fn pin_to_core(core: usize) -> Result<(), String> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(core).map_err(|e| format!("core {core}: {e}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("sched_setaffinity({core}): {e}"))
}

#[allow(unsafe_code)]
fn set_fifo(priority: i32) -> Result<(), String> {
    // musl's sched_setscheduler() is a stub returning ENOSYS; the pthread call
    // works on both glibc and musl. sched_param is zeroed first because musl's
    // has extra fields.
    // SAFETY: `param` is a valid, fully initialised sched_param and
    // pthread_self() is always a valid thread handle for the caller.
    let rc = unsafe {
        let mut param: libc::sched_param = std::mem::zeroed();
        param.sched_priority = priority;
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("SCHED_FIFO priority {priority}: {}", std::io::Error::from_raw_os_error(rc)))
    }
}

fn lock_memory() -> Result<(), String> {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).map_err(|e| format!("mlockall: {e}"))
}

/// Touches the stack the tick will use so that page faults happen now.
fn prefault_stack() {
    let mut buf = [0u8; 128 * 1024];
    for i in (0..buf.len()).step_by(4096) {
        buf[i] = 1;
    }
    std::hint::black_box(&buf);
}

/// Runs the engine every 10 ms until `stop` is set. Deadline misses are ticks
/// that finished after the start of the next one; after a long stall (more
/// than 100 ms, e.g. the host was suspended) the schedule is re-based instead
/// of bursting to catch up.
pub fn run<P: PcmBus>(mut engine: RtEngine<P>, stop: Arc<AtomicBool>) {
    const TICK: Duration = Duration::from_millis(10);
    let mut next = Instant::now() + TICK;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        engine.tick();
        let end = Instant::now();
        let took = end.duration_since(start).as_nanos() as u64;
        engine.stats.max_tick_ns.fetch_max(took, Ordering::Relaxed);
        if end > next {
            engine.stats.deadline_misses.fetch_add(1, Ordering::Relaxed);
            if end - next > Duration::from_millis(100) {
                next = end;
            }
        } else {
            std::thread::sleep(next - end);
        }
        next += TICK;
    }
}

#[cfg(test)]
#[allow(unsafe_code)] // the counting allocator below
mod tests {
    use super::*;
    use gw_hal::PcmStats;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    // Counts allocations made by the current thread while `COUNTING` is set.
    struct CountingAlloc;
    thread_local! {
        static COUNTING: Cell<bool> = const { Cell::new(false) };
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNTING.try_with(|c| {
                if c.get() {
                    COUNT.with(|n| n.set(n.get() + 1));
                }
            });
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
    }
    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    /// A PCM bus whose line side is a closure: feeds `line(tick, ch)` as the
    /// received frame and keeps the last transmitted frames.
    struct LoopPcm<F: FnMut(u64, usize, &mut Frame)> {
        n: usize,
        tick: u64,
        line: F,
        last_tx: Vec<Frame>,
    }
    impl<F: FnMut(u64, usize, &mut Frame)> PcmBus for LoopPcm<F> {
        fn channels(&self) -> usize {
            self.n
        }
        fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
            self.last_tx.copy_from_slice(tx);
            for (ch, f) in rx.iter_mut().enumerate() {
                (self.line)(self.tick, ch, f);
            }
            self.tick += 1;
            PcmStats::default()
        }
    }

    fn dtmf_frames(digit: u8) -> Vec<Frame> {
        let mut g = gw_dsp::dtmf::DtmfGenerator::new(digit, -7.0, 100, 100).unwrap();
        let mut frames = Vec::new();
        loop {
            let mut f = [0i16; FRAME_SAMPLES];
            let more = g.fill(&mut f);
            frames.push(f);
            if !more {
                break;
            }
        }
        frames
    }

    fn session(pt: u8) -> SessionConfig {
        SessionConfig {
            payload_type: pt,
            telephone_event: Some(101),
            comfort_noise: None,
            ptime_ms: 20,
            ssrc: 0x1234,
            initial_seq: 1,
            initial_ts: 0,
            jitter_depth_ms: 40,
        }
    }

    #[test]
    fn idle_b_channels_cost_a_copy_and_have_no_echo_canceller() {
        // Lines 0 (analog) and 1, 2 (B-channels) all send a DTMF 5.
        let digit_frames = dtmf_frames(b'5');
        let line = move |tick: u64, _ch: usize, f: &mut Frame| {
            let t = tick as usize;
            *f = if t < digit_frames.len() { digit_frames[t] } else { [0; FRAME_SAMPLES] };
        };
        let pcm = LoopPcm { n: 3, tick: 0, line, last_tx: vec![[0; FRAME_SAMPLES]; 3] };
        let (rtq, mut ctl) = make_queues();
        let mut config = RtConfig { echo_tail: Some(512), ..RtConfig::plain() };
        config.set_digital(1);
        config.set_digital(2);
        assert!(config.is_digital(2) && !config.is_digital(0) && !config.is_digital(200));
        let mut engine = RtEngine::new(pcm, rtq, Arc::new(RtStats::new(3)), config);
        assert!(engine.channels[0].echo.is_some());
        assert!(engine.channels[1].echo.is_none() && engine.channels[2].echo.is_none(), "4-wire: no canceller");
        // B-channel 2 is in a call (RTP): its detectors run; idle B-channel 1's do not.
        ctl.commands
            .enqueue(RtCommand::StartMedia { channel: 2, session: session(0), codec: VoiceCodec::G711(Law::Ulaw) })
            .unwrap();
        for _ in 0..40 {
            engine.tick();
        }
        let mut digits = Vec::new();
        while let Some(ev) = ctl.events.dequeue() {
            if let RtEvent::LineDigit { channel, .. } = ev {
                digits.push(channel);
            }
        }
        assert_eq!(digits, vec![0, 2]);
        // What an idle B-channel receives is still there for a listener.
        assert_eq!(engine.clean[1], engine.rx[1]);
    }

    #[test]
    fn tick_does_not_allocate_with_tones_media_and_digits() {
        let digit_frames = dtmf_frames(b'5');
        let line = move |tick: u64, ch: usize, f: &mut Frame| {
            let t = tick as usize;
            *f = if ch == 0 && t < digit_frames.len() { digit_frames[t] } else { [0; FRAME_SAMPLES] };
        };
        let pcm = LoopPcm { n: 4, tick: 0, line, last_tx: vec![[0; FRAME_SAMPLES]; 4] };
        let (rtq, mut ctl) = make_queues();
        let stats = Arc::new(RtStats::new(4));
        let mut engine = RtEngine::new(pcm, rtq, stats.clone(), RtConfig { echo_tail: Some(512), ..RtConfig::plain() });
        let us = gw_dsp::tones::profile("US").unwrap();
        ctl.commands
            .enqueue(RtCommand::StartMedia { channel: 0, session: session(0), codec: VoiceCodec::G711(Law::Ulaw) })
            .unwrap();
        ctl.commands.enqueue(RtCommand::PlayTone { channel: 1, spec: us.dial }).unwrap();
        // An incoming RTP packet for channel 0, prepared before counting.
        let mut pkt = Packet::empty();
        let hdr = gw_media::rtp::RtpHeader { marker: true, payload_type: 0, sequence: 7, timestamp: 0, ssrc: 9 };
        let n = hdr.emit(&mut pkt.data);
        pkt.data[n..n + 160].fill(0xff);
        pkt.len = (n + 160) as u16;

        COUNTING.with(|c| c.set(true));
        for t in 0..40 {
            if t == 3 {
                let _ = ctl.packets_in.enqueue(pkt.clone());
            }
            engine.tick();
        }
        COUNTING.with(|c| c.set(false));
        assert_eq!(COUNT.with(|n| n.get()), 0, "the rt tick allocated");

        let mut digits = Vec::new();
        while let Some(ev) = ctl.events.dequeue() {
            digits.push(ev);
        }
        assert_eq!(digits, vec![RtEvent::LineDigit { channel: 0, digit: b'5' }]);
        // 40 ticks of 10 ms at ptime 20: about 20 packets out for channel 0.
        let mut out = 0;
        while ctl.packets_out.dequeue().is_some() {
            out += 1;
        }
        assert!((18..=21).contains(&out), "{out} packets");
        assert_eq!(stats.snapshot().frames, 40);
    }

    #[test]
    fn tone_reaches_the_line_and_stops() {
        let line = |_t: u64, _ch: usize, f: &mut Frame| *f = [0; FRAME_SAMPLES];
        let pcm = LoopPcm { n: 2, tick: 0, line, last_tx: vec![[0; FRAME_SAMPLES]; 2] };
        let (rtq, mut ctl) = make_queues();
        let mut engine = RtEngine::new(pcm, rtq, Arc::new(RtStats::new(2)), RtConfig::plain());
        let us = gw_dsp::tones::profile("US").unwrap();
        ctl.commands.enqueue(RtCommand::PlayTone { channel: 1, spec: us.dial }).unwrap();
        engine.tick();
        engine.tick();
        let energy: i64 = engine.pcm.last_tx[1].iter().map(|&s| (s as i64).abs()).sum();
        assert!(energy > 80 * 1000, "dial tone too weak: {energy}");
        assert!(engine.pcm.last_tx[0].iter().all(|&s| s == 0));
        ctl.commands.enqueue(RtCommand::StopTone { channel: 1 }).unwrap();
        engine.tick();
        assert!(engine.pcm.last_tx[1].iter().all(|&s| s == 0));
    }

    #[test]
    fn local_call_bridges_two_lines_one_frame_apart_both_ways_without_allocating() {
        // Line 0 sends a 1004 Hz tone, line 2 a 1400 Hz one; lines 1 and 3 are idle.
        let tone0 = sine(1004.0, -10.0, 2000);
        let tone2 = sine(1400.0, -16.0, 2000);
        let line = move |tick: u64, ch: usize, f: &mut Frame| {
            let t = tick as usize * FRAME_SAMPLES;
            match ch {
                0 => f.copy_from_slice(&tone0[t..t + FRAME_SAMPLES]),
                2 => f.copy_from_slice(&tone2[t..t + FRAME_SAMPLES]),
                _ => *f = [0; FRAME_SAMPLES],
            }
        };
        let pcm = LoopPcm { n: 4, tick: 0, line, last_tx: vec![[0; FRAME_SAMPLES]; 4] };
        let (rtq, mut ctl) = make_queues();
        let mut engine = RtEngine::new(pcm, rtq, Arc::new(RtStats::new(4)), RtConfig { echo_tail: Some(512), ..RtConfig::plain() });
        ctl.commands.enqueue(RtCommand::Listen { channel: 0, from: Some(2) }).unwrap();
        ctl.commands.enqueue(RtCommand::Listen { channel: 2, from: Some(0) }).unwrap();
        // Out of range and self-listening are ignored, never a panic.
        ctl.commands.enqueue(RtCommand::Listen { channel: 1, from: Some(9) }).unwrap();
        ctl.commands.enqueue(RtCommand::Listen { channel: 3, from: Some(3) }).unwrap();
        ctl.commands.enqueue(RtCommand::Listen { channel: 9, from: Some(0) }).unwrap();
        engine.tick();
        // Tick 0: what the lines sent is not yet heard anywhere.
        assert!(engine.pcm.last_tx[0].iter().all(|&s| s == 0));
        let mut heard0 = Vec::with_capacity(100 * FRAME_SAMPLES);
        let mut heard2 = Vec::with_capacity(100 * FRAME_SAMPLES);
        COUNTING.with(|c| c.set(true));
        for _ in 1..100 {
            engine.tick();
            heard0.extend_from_slice(&engine.pcm.last_tx[0]);
            heard2.extend_from_slice(&engine.pcm.last_tx[2]);
        }
        COUNTING.with(|c| c.set(false));
        assert_eq!(COUNT.with(|n| n.get()), 0, "the rt tick allocated");
        // Exactly one frame of delay: line 2 hears at tick n what line 0 sent at n-1
        // (the canceller passes the near end unchanged before it has a reference).
        let tx2_tick1 = &heard2[..FRAME_SAMPLES];
        let rx0_tick0 = &sine(1004.0, -10.0, 10)[..];
        let err: i64 = tx2_tick1.iter().zip(rx0_tick0).map(|(&a, &b)| (a as i64 - b as i64).abs()).sum();
        assert!(err < 80 * 50, "line 2 does not hear line 0 one frame later: error {err}");
        // Each side hears the other at its level (no codec, no gain), and not itself.
        let (level, purity) = tone_at(&heard2[4000..], 1004.0, 1400.0);
        assert!((level + 10.0).abs() < 0.5 && purity > 30.0, "line 2 hears {level:.1} dBm0, {purity:.1} dB pure");
        let (level, purity) = tone_at(&heard0[4000..], 1400.0, 1004.0);
        assert!((level + 16.0).abs() < 0.5 && purity > 30.0, "line 0 hears {level:.1} dBm0, {purity:.1} dB pure");
        assert!(engine.pcm.last_tx[1].iter().all(|&s| s == 0) && engine.pcm.last_tx[3].iter().all(|&s| s == 0));
        // Hang-up: both directions end and the lines go quiet.
        ctl.commands.enqueue(RtCommand::Listen { channel: 0, from: None }).unwrap();
        ctl.commands.enqueue(RtCommand::Listen { channel: 2, from: None }).unwrap();
        engine.tick();
        assert!(engine.pcm.last_tx[0].iter().all(|&s| s == 0) && engine.pcm.last_tx[2].iter().all(|&s| s == 0));
    }

    /// A silent line that keeps everything sent to channel `keep`.
    struct Capture {
        n: usize,
        keep: usize,
        sent: Vec<i16>,
    }
    impl PcmBus for Capture {
        fn channels(&self) -> usize {
            self.n
        }
        fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
            self.sent.extend_from_slice(&tx[self.keep]);
            rx.iter_mut().for_each(|f| f.fill(0));
            PcmStats::default()
        }
    }

    #[test]
    fn caller_id_plays_on_its_channel_and_reports_its_steps_in_time() {
        use gw_dsp::callerid::{self, CallerId, FskStandard};
        use gw_dsp::callerid_line::{CallerIdReceiver, Procedure, ReceiverEvent};
        let mut cid = CallerId::new();
        cid.set_number(b"5551234").unwrap();
        cid.set_name(b"ALICE").unwrap();
        cid.set_datetime(12, 3, 8, 45).unwrap();
        let mut msg = [0u8; 64];
        let n = callerid::encode_mdmf(&cid, &mut msg).unwrap();
        let sender = CallerIdSender::new(Procedure::Gr30, FskStandard::Bell202, &msg[..n], -13.0).unwrap();

        let (rtq, mut ctl) = make_queues();
        // Room made before counting: only the engine's own allocations count.
        let pcm = Capture { n: 2, keep: 1, sent: Vec::with_capacity(500 * FRAME_SAMPLES) };
        let mut engine = RtEngine::new(pcm, rtq, Arc::new(RtStats::new(2)), RtConfig { echo_tail: Some(512), ..RtConfig::plain() });
        let us = gw_dsp::tones::profile("US").unwrap();
        // A tone asked for meanwhile does not cut into the delivery.
        ctl.commands.enqueue(RtCommand::PlayTone { channel: 1, spec: us.dial }).unwrap();
        ctl.commands.enqueue(RtCommand::StartCallerId { channel: 1, sender }).unwrap();
        let mut steps = Vec::with_capacity(8);
        COUNTING.with(|c| c.set(true));
        for tick in 0..500u32 {
            engine.tick();
            while let Some(ev) = ctl.events.dequeue() {
                if steps.len() < 8 {
                    steps.push((tick, ev));
                }
            }
        }
        COUNTING.with(|c| c.set(false));
        assert_eq!(COUNT.with(|n| n.get()), 0, "the rt tick allocated");
        let ev = |step| RtEvent::CallerId { channel: 1, step };
        assert_eq!(steps[0], (0, ev(LineStep::RingOn)));
        assert_eq!(steps[1], (199, ev(LineStep::RingOff)), "first ring 2 s, reported in the frame it ends");
        assert_eq!(steps[2].1, ev(LineStep::Done));
        assert_eq!(steps.len(), 3);
        let done_ms = steps[2].0 * 10;
        assert!((2700..4000).contains(&done_ms), "done at {done_ms} ms");

        // Silence while the phone rings, the message after, then the tone
        // that was asked for (still playing: the control plane stops it).
        let sent = &engine.pcm.sent;
        assert!(sent[..2000 * 8].iter().all(|&s| s == 0), "audio during the ring");
        let mut rx = CallerIdReceiver::new(FskStandard::Bell202);
        let mut got = None;
        for f in sent[..(done_ms as usize) * 8].chunks(FRAME_SAMPLES) {
            rx.process(f);
            while let Some(e) = rx.poll_event() {
                if let ReceiverEvent::CallerId(c) = e {
                    got = Some(c);
                }
            }
        }
        assert_eq!(got, Some(cid));
        let after: i64 = sent[(done_ms as usize + 20) * 8..].iter().map(|&s| i64::from(s).abs()).sum();
        assert!(after > 0, "the tone resumes after the delivery");
    }

    #[test]
    fn stopped_caller_id_goes_silent_at_once() {
        use gw_dsp::callerid_line::Procedure;
        let msg = {
            let mut cid = gw_dsp::callerid::CallerId::new();
            cid.set_number(b"5551234").unwrap();
            let mut m = [0u8; 64];
            let n = gw_dsp::callerid::encode_mdmf(&cid, &mut m).unwrap();
            m[..n].to_vec()
        };
        let sender =
            CallerIdSender::new(Procedure::EtsiDtAs, gw_dsp::callerid::FskStandard::V23, &msg, -13.0).unwrap();
        let (rtq, mut ctl) = make_queues();
        let pcm = Capture { n: 1, keep: 0, sent: Vec::new() };
        let mut engine = RtEngine::new(pcm, rtq, Arc::new(RtStats::new(1)), RtConfig::plain());
        ctl.commands.enqueue(RtCommand::StartCallerId { channel: 0, sender }).unwrap();
        for _ in 0..30 {
            engine.tick();
        }
        assert!(engine.pcm.sent.iter().any(|&s| s != 0), "DT-AS and data under way");
        assert_eq!(ctl.events.dequeue(), Some(RtEvent::CallerId { channel: 0, step: LineStep::ReversePolarity }));
        ctl.commands.enqueue(RtCommand::StopCallerId { channel: 0 }).unwrap();
        engine.pcm.sent.clear();
        for _ in 0..200 {
            engine.tick();
        }
        assert!(engine.pcm.sent.iter().all(|&s| s == 0));
        assert_eq!(ctl.events.dequeue(), None, "no Done for a stopped delivery");
    }

    /// 20 ms PCMU packets of `audio` for channel 0.
    fn rtp_packets(audio: &[i16]) -> Vec<Packet> {
        rtp_packets_with(0, audio, |pcm, out| g711::encode_frame(Law::Ulaw, pcm, out))
    }

    /// 20 ms packets of payload type `pt` for channel 0, each 10 ms of
    /// `audio` encoded by `encode` into 80 bytes.
    fn rtp_packets_with(pt: u8, audio: &[i16], mut encode: impl FnMut(&[i16], &mut [u8])) -> Vec<Packet> {
        audio
            .chunks(160)
            .enumerate()
            .map(|(k, chunk)| {
                let mut pkt = Packet::empty();
                let hdr = gw_media::rtp::RtpHeader {
                    marker: k == 0,
                    payload_type: pt,
                    sequence: k as u16,
                    timestamp: (k * 160) as u32,
                    ssrc: 9,
                };
                let n = hdr.emit(&mut pkt.data);
                for (h, half) in chunk.chunks(80).enumerate() {
                    encode(half, &mut pkt.data[n + 80 * h..n + 80 * h + half.len()]);
                }
                pkt.len = (n + chunk.len()) as u16;
                pkt
            })
            .collect()
    }

    fn tone_samples(spec: &ToneSpec, ms: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(spec);
        let mut v = vec![0i16; ms * 8];
        g.fill(&mut v);
        v
    }

    fn sine(freq: f32, dbm0: f32, ms: usize) -> Vec<i16> {
        let a = gw_dsp::DBM0_PEAK * 10f32.powf(dbm0 / 20.0);
        (0..ms * 8).map(|n| (a * (2.0 * std::f32::consts::PI * freq * n as f32 / 8000.0).sin()) as i16).collect()
    }

    /// Runs `ticks` ticks of an engine on channel 0 in a call, feeding the far
    /// end's `net` audio as RTP (one packet every other tick) and `line`
    /// audio from the phone; returns the events.
    fn run_call(config: RtConfig, net: &[i16], line: Vec<i16>, ticks: usize) -> (Vec<RtEvent>, Arc<RtStats>) {
        let (events, stats, _) = run_call_packets(config, &rtp_packets(net), line, ticks);
        (events, stats)
    }

    /// [`run_call`] with the far end's packets given, returning what was sent.
    fn run_call_packets(
        config: RtConfig,
        packets: &[Packet],
        line: Vec<i16>,
        ticks: usize,
    ) -> (Vec<RtEvent>, Arc<RtStats>, Vec<Vec<u8>>) {
        let pcm = LoopPcm {
            n: 1,
            tick: 0,
            line: move |t: u64, _ch: usize, f: &mut Frame| {
                let at = t as usize * FRAME_SAMPLES;
                for (k, s) in f.iter_mut().enumerate() {
                    *s = line.get(at + k).copied().unwrap_or(0);
                }
            },
            last_tx: vec![[0; FRAME_SAMPLES]; 1],
        };
        let (rtq, mut ctl) = make_queues();
        let stats = Arc::new(RtStats::new(1));
        let mut engine = RtEngine::new(pcm, rtq, stats.clone(), config);
        ctl.commands.enqueue(RtCommand::StartMedia { channel: 0, session: session(0), codec: VoiceCodec::G711(Law::Ulaw) }).unwrap();
        let (events, sent) = drive(&mut engine, &mut ctl, packets, ticks);
        (events, stats, sent)
    }

    /// Ticks `engine` `ticks` times, feeding `packets` (one every other
    /// tick), and returns the events and the RTP sent. Every path the tick
    /// takes must not allocate (the counting allocator sees only the tick).
    fn drive<P: PcmBus>(
        engine: &mut RtEngine<P>,
        ctl: &mut ControlQueues,
        packets: &[Packet],
        ticks: usize,
    ) -> (Vec<RtEvent>, Vec<Vec<u8>>) {
        let mut events = Vec::new();
        let mut sent = Vec::new();
        let before = COUNT.with(|n| n.get());
        for t in 0..ticks {
            if t % 2 == 0 {
                if let Some(p) = packets.get(t / 2) {
                    assert!(ctl.packets_in.enqueue(p.clone()).is_ok());
                }
            }
            COUNTING.with(|c| c.set(true));
            engine.tick();
            COUNTING.with(|c| c.set(false));
            while let Some(p) = ctl.packets_out.dequeue() {
                sent.push(p.bytes().to_vec());
            }
            while let Some(ev) = ctl.events.dequeue() {
                events.push(ev);
            }
        }
        assert_eq!(COUNT.with(|n| n.get()), before, "the rt tick allocated");
        (events, sent)
    }

    #[test]
    fn fax_tone_from_the_line_goes_to_the_far_end_as_an_rfc4734_event_beside_the_audio() {
        let mut line = sine(1100.0, -10.0, 500);
        line.extend(vec![0; 8000]);
        let (_, _, sent) = run_call_packets(RtConfig::plain(), &[], line, 150);
        let (mut audio, mut cng, mut ends, mut seqs) = (0, 0, 0, Vec::new());
        for p in &sent {
            let pkt = gw_media::rtp::Packet::new_checked(&p[..]).unwrap();
            seqs.push(pkt.sequence_number());
            match pkt.payload_type() {
                0 => audio += 1,
                101 => {
                    let ev = rfc4733::EventPayload::parse(pkt.payload()).unwrap();
                    assert_eq!(ev.event, rfc4733::CNG);
                    cng += 1;
                    ends += usize::from(ev.end);
                }
                pt => panic!("payload type {pt}"),
            }
        }
        assert!(cng >= 5, "{cng} CNG event packets");
        assert_eq!(ends, 3, "three end packets");
        assert!((74..=76).contains(&audio), "audio kept flowing during the event: {audio} packets in 1.5 s");
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "one sequence space: {seqs:?}");
    }

    #[test]
    fn far_end_rfc4734_answer_tone_event_switches_to_voice_band_data() {
        let ev = rfc4733::EventPayload { event: rfc4733::ANS_REVERSED, end: false, volume: 10, duration: 160 };
        let mut packets = Vec::new();
        for k in 0..5u16 {
            let mut pkt = Packet::empty();
            let hdr = gw_media::rtp::RtpHeader { marker: k == 0, payload_type: 101, sequence: k, timestamp: 0, ssrc: 9 };
            let n = hdr.emit(&mut pkt.data);
            let body = rfc4733::EventPayload { duration: 160 * (k + 1), ..ev };
            let m = body.emit(&mut pkt.data[n..]);
            pkt.len = (n + m) as u16;
            packets.push(pkt);
        }
        let (events, stats, _) = run_call_packets(RtConfig::plain(), &packets, Vec::new(), 20);
        let want = RtEvent::ModemTone {
            channel: 0,
            from_line: false,
            event: ModemToneEvent::Detected(ModemTone::AnsPhaseReversal),
        };
        assert_eq!(events.iter().filter(|e| **e == want).count(), 1, "{events:?}");
        assert!(stats.channels[0].signals().vbd);
    }

    #[test]
    fn two_bridge_channels_join_two_rtp_sessions_with_transcoding_and_no_allocation() {
        // One line (channel 0), two bridge channels (1 and 2): a call between two SIP legs,
        // PCMU on one side and PCMA on the other.
        let line = |_t: u64, _ch: usize, f: &mut Frame| *f = [0; FRAME_SAMPLES];
        let pcm = LoopPcm { n: 1, tick: 0, line, last_tx: vec![[0; FRAME_SAMPLES]; 1] };
        let (rtq, mut ctl) = make_queues();
        let stats = Arc::new(RtStats::new(3));
        let config = RtConfig { echo_tail: Some(512), bridge_channels: 2, ..RtConfig::plain() };
        let mut engine = RtEngine::new(pcm, rtq, stats, config);
        assert!(engine.channels[1].echo.is_none() && engine.channels[0].echo.is_some(), "no canceller on bridges");
        ctl.commands.enqueue(RtCommand::StartMedia { channel: 1, session: session(0), codec: VoiceCodec::G711(Law::Ulaw) }).unwrap();
        ctl.commands.enqueue(RtCommand::StartMedia { channel: 2, session: session(8), codec: VoiceCodec::G711(Law::Alaw) }).unwrap();
        ctl.commands.enqueue(RtCommand::Listen { channel: 1, from: Some(2) }).unwrap();
        ctl.commands.enqueue(RtCommand::Listen { channel: 2, from: Some(1) }).unwrap();
        let mut packets = rtp_packets(&sine(1004.0, -10.0, 2000));
        for p in &mut packets {
            p.channel = 1;
        }
        let mut out2 = Vec::with_capacity(200 * FRAME_SAMPLES);
        let mut out1 = 0usize;
        for t in 0..150 {
            if t % 2 == 0 {
                if let Some(p) = packets.get(t / 2) {
                    ctl.packets_in.enqueue(p.clone()).ok().unwrap();
                }
            }
            COUNTING.with(|c| c.set(true));
            engine.tick();
            COUNTING.with(|c| c.set(false));
            while let Some(p) = ctl.packets_out.dequeue() {
                match p.channel {
                    2 => {
                        let b = p.bytes();
                        assert_eq!(b[1] & 0x7f, 8, "PCMA on the second leg");
                        out2.extend(b[12..].iter().map(|&x| g711::decode(Law::Alaw, x)));
                    }
                    1 => out1 += 1,
                    other => panic!("a packet for channel {other}"),
                }
            }
        }
        assert_eq!(COUNT.with(|n| n.get()), 0, "the rt tick allocated");
        // The first leg's 1004 Hz reaches the second leg's far end, transcoded, at its level.
        let (level, purity) = tone_at(&out2[8000..], 1004.0, 1400.0);
        assert!((level + 10.0).abs() < 1.0 && purity > 25.0, "second leg sends {level:.1} dBm0, {purity:.1} dB pure");
        // And the first leg gets the second's (silent) audio back as packets.
        assert!(out1 >= 70, "{out1} packets to the first leg");
    }

    /// A line that plays `script(tick)` and keeps what it is sent.
    struct ScriptLine<F: FnMut(u64) -> Frame> {
        tick: u64,
        script: F,
        sent: Vec<i16>,
    }
    impl<F: FnMut(u64) -> Frame> PcmBus for ScriptLine<F> {
        fn channels(&self) -> usize {
            1
        }
        fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
            self.sent.extend_from_slice(&tx[0]);
            rx[0] = (self.script)(self.tick);
            self.tick += 1;
            PcmStats::default()
        }
    }

    fn frames_of(samples: &[i16], tick: u64) -> Frame {
        let at = tick as usize * FRAME_SAMPLES;
        let mut f = [0; FRAME_SAMPLES];
        for (k, v) in f.iter_mut().enumerate() {
            *v = samples.get(at + k).copied().unwrap_or(0);
        }
        f
    }

    fn run_line<F: FnMut(u64) -> Frame>(script: F, cmds: Vec<RtCommand>, ticks: usize) -> (Vec<(u64, RtEvent)>, Vec<i16>) {
        let (rtq, mut ctl) = make_queues();
        let line = ScriptLine { tick: 0, script, sent: Vec::with_capacity((ticks + 1) * FRAME_SAMPLES) };
        let mut engine = RtEngine::new(line, rtq, Arc::new(RtStats::new(1)), RtConfig { echo_tail: Some(512), ..RtConfig::plain() });
        for c in cmds {
            ctl.commands.enqueue(c).ok().unwrap();
        }
        let mut events = Vec::with_capacity(64);
        for t in 0..ticks {
            COUNTING.with(|c| c.set(true));
            engine.tick();
            COUNTING.with(|c| c.set(false));
            while let Some(ev) = ctl.events.dequeue() {
                events.push((t as u64, ev));
            }
        }
        assert_eq!(COUNT.with(|n| n.get()), 0, "the rt tick allocated");
        (events, engine.pcm.sent)
    }

    #[test]
    fn an_fxo_line_dials_its_string_with_a_pause_and_says_when_done() {
        let digits: heapless::Vec<u8, 32> = heapless::Vec::from_slice(b"95,51#").unwrap();
        let (events, sent) = run_line(|_| [0; FRAME_SAMPLES], vec![RtCommand::Dial { channel: 0, digits }], 300);
        let mut det = DtmfDetector::new();
        let keys: Vec<u8> = sent
            .chunks(FRAME_SAMPLES)
            .filter_map(|f| match det.process(f) {
                Some(DtmfEvent::Start(d)) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(keys, b"9551#", "every key, in order, heard by an independent detector");
        let done: Vec<u64> = events.iter().filter(|(_, e)| *e == RtEvent::Dialled { channel: 0 }).map(|(t, _)| *t).collect();
        // 5 keys of 160 ms and a 1 s pause: about 1.8 s.
        assert_eq!(done.len(), 1);
        assert!((175..=185).contains(&done[0]), "dialled at tick {}", done[0]);
        assert!(!events.iter().any(|(_, e)| matches!(e, RtEvent::LineDigit { .. })), "our own keys are no digit of the line");
    }

    #[test]
    fn a_monitored_line_reports_the_exchanges_tones_and_speech() {
        let us = gw_dsp::tones::profile("US").unwrap();
        let dial = tone_samples(&us.dial, 3000);
        let busy = tone_samples(&us.busy, 3000);
        let speechy = noise_dbov(7, -20.0, 2000);
        let script = move |t: u64| {
            if t < 300 {
                frames_of(&dial, t)
            } else if t < 350 {
                [0; FRAME_SAMPLES]
            } else if t < 650 {
                frames_of(&busy, t - 350)
            } else if t < 700 {
                [0; FRAME_SAMPLES]
            } else {
                frames_of(&speechy, t - 700)
            }
        };
        let (events, _) = run_line(script, vec![RtCommand::MonitorLine { channel: 0, on: true }], 900);
        let kinds: Vec<ProgressEvent> = events
            .iter()
            .filter_map(|(_, e)| match e {
                RtEvent::LineProgress { event, .. } => Some(*event),
                _ => None,
            })
            .collect();
        assert!(kinds.contains(&ProgressEvent::Detected(ToneKind::Dial)), "{kinds:?}");
        assert!(kinds.contains(&ProgressEvent::Detected(ToneKind::Busy)), "{kinds:?}");
        let speech: Vec<u64> = events.iter().filter(|(_, e)| matches!(e, RtEvent::LineSpeech { .. })).map(|(t, _)| *t).collect();
        assert_eq!(speech.len(), 1, "{events:?}");
        assert!(speech[0] >= 700, "speech reported during the tones: {speech:?} {events:?}");
    }

    #[test]
    fn an_fxo_line_receives_caller_id_on_hook() {
        use gw_dsp::callerid::{self, CallerId};
        use gw_dsp::callerid_line::Procedure;
        let mut cid = CallerId::new();
        cid.set_number(b"5551234").unwrap();
        cid.set_name(b"BOB").unwrap();
        let mut msg = [0u8; 64];
        let n = callerid::encode_mdmf(&cid, &mut msg).unwrap();
        // What an exchange sends between the first and second ring, rendered by gw-dsp's sender.
        let mut sender = CallerIdSender::new(Procedure::Gr30, FskStandard::Bell202, &msg[..n], -13.0).unwrap();
        let mut fsk = Vec::new();
        while !sender.is_done() {
            let mut f = [0; FRAME_SAMPLES];
            sender.fill(&mut f);
            while sender.poll_event().is_some() {}
            fsk.extend_from_slice(&f);
        }
        let cmds = vec![RtCommand::ReceiveCallerId { channel: 0, standard: Some(FskStandard::Bell202) }];
        let (events, _) = run_line(move |t| frames_of(&fsk, t), cmds, 500);
        let got: Vec<ReceiverEvent> = events
            .iter()
            .filter_map(|(_, e)| match e {
                RtEvent::CallerIdReceived { event, .. } => Some(*event),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![ReceiverEvent::CallerId(cid)]);
    }

    /// A line that echoes what it is sent (a hybrid with 6 dB ERL, no delay)
    /// and records it.
    struct HalfEchoLine {
        sent: Vec<i16>,
    }
    impl PcmBus for HalfEchoLine {
        fn channels(&self) -> usize {
            1
        }
        fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
            self.sent.extend_from_slice(&tx[0]);
            for (r, t) in rx[0].iter_mut().zip(tx[0].iter()) {
                *r = t / 2;
            }
            PcmStats::default()
        }
    }

    #[test]
    fn far_end_rfc4733_digits_are_played_in_band_and_their_echo_is_not_sent_back() {
        // Digits 7 then 3 as RFC 4733 events (start, updates, end), 200 ms apart.
        let mut packets = Vec::new();
        let mut seq = 0u16;
        for (d, (digit, code)) in [(b'7', 7u8), (b'3', 3u8)].into_iter().enumerate() {
            let ts = 1600 * d as u32;
            for k in 0..5u16 {
                let mut pkt = Packet::empty();
                let hdr = gw_media::rtp::RtpHeader { marker: k == 0, payload_type: 101, sequence: seq, timestamp: ts, ssrc: 9 };
                seq += 1;
                let n = hdr.emit(&mut pkt.data);
                let body = rfc4733::EventPayload { event: code, end: k == 4, volume: 10, duration: 160 * (k + 1) };
                let m = body.emit(&mut pkt.data[n..]);
                pkt.len = (n + m) as u16;
                packets.push(pkt);
            }
            let _ = digit;
            // Silence until the next digit.
            for _ in 0..5 {
                let mut pkt = Packet::empty();
                let hdr = gw_media::rtp::RtpHeader { marker: false, payload_type: 0, sequence: seq, timestamp: ts + 800, ssrc: 9 };
                seq += 1;
                let n = hdr.emit(&mut pkt.data);
                pkt.data[n..n + 160].fill(0xff);
                pkt.len = (n + 160) as u16;
                packets.push(pkt);
            }
        }
        let (rtq, mut ctl) = make_queues();
        let stats = Arc::new(RtStats::new(1));
        let mut engine = RtEngine::new(HalfEchoLine { sent: Vec::with_capacity(100 * FRAME_SAMPLES) }, rtq, stats, RtConfig::plain());
        ctl.commands.enqueue(RtCommand::StartMedia { channel: 0, session: session(0), codec: VoiceCodec::G711(Law::Ulaw) }).unwrap();
        let (events, sent) = drive(&mut engine, &mut ctl, &packets, 80);
        // The line heard both digits (an independent detector on what was sent).
        let mut det = DtmfDetector::new();
        let heard: Vec<u8> = engine
            .pcm
            .sent
            .chunks(FRAME_SAMPLES)
            .filter_map(|f| match det.process(f) {
                Some(DtmfEvent::Start(d)) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(heard, b"73", "digits played to the line");
        let remote: Vec<u8> = events.iter().filter_map(|e| match e { RtEvent::RemoteDigit { digit, .. } => Some(*digit), _ => None }).collect();
        assert_eq!(remote, b"73");
        // Their echo came back from the line but is not a digit of the phone's.
        assert!(!events.iter().any(|e| matches!(e, RtEvent::LineDigit { .. })), "{events:?}");
        assert!(sent.iter().all(|p| p.len() < 12 || p[1] & 0x7f != 101), "no RFC 4733 event sent back");
    }

    #[test]
    fn far_end_busy_tone_is_reported() {
        let us = gw_dsp::tones::profile("US").unwrap();
        let busy = tone_samples(&us.busy, 4000);
        let (events, stats) = run_call(RtConfig::plain(), &busy, Vec::new(), 600);
        assert!(
            events.contains(&RtEvent::Progress { channel: 0, event: ProgressEvent::Detected(ToneKind::Busy) }),
            "{events:?}"
        );
        assert_eq!(stats.channels[0].signals().network_progress_tone, None, "ended with the audio");
        // Reorder is told apart by its cadence.
        let reorder = tone_samples(&us.reorder, 4000);
        let (events, _) = run_call(RtConfig::plain(), &reorder, Vec::new(), 300);
        assert!(events.contains(&RtEvent::Progress { channel: 0, event: ProgressEvent::Detected(ToneKind::Reorder) }));
        assert!(!events.iter().any(|e| matches!(e, RtEvent::Progress { event: ProgressEvent::Detected(ToneKind::Busy), .. })));
    }

    #[test]
    fn fax_tone_from_the_line_switches_to_voice_band_data() {
        // The phone side (a fax machine) sends CNG, 0.5 s of 1100 Hz, then a
        // DTMF digit that must not be taken for one any more.
        let mut line = sine(1100.0, -10.0, 500);
        line.extend(vec![0; 800]);
        for f in dtmf_frames(b'7') {
            line.extend_from_slice(&f);
        }
        let (events, stats) = run_call(RtConfig { echo_tail: Some(256), ..RtConfig::plain() }, &[], line.clone(), 150);
        assert!(
            events.contains(&RtEvent::ModemTone { channel: 0, from_line: true, event: ModemToneEvent::Detected(ModemTone::Cng) }),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| matches!(e, RtEvent::LineDigit { .. })), "DTMF relayed in voice-band data: {events:?}");
        assert!(stats.channels[0].signals().vbd);

        // Without modem bypass the same line keeps voice handling: the digit counts.
        let cfg = RtConfig { echo_tail: Some(256), modem_bypass: false, ..RtConfig::plain() };
        let (events, stats) = run_call(cfg, &[], line, 150);
        assert!(events.contains(&RtEvent::LineDigit { channel: 0, digit: b'7' }), "{events:?}");
        assert!(!stats.channels[0].signals().vbd);
    }

    #[test]
    fn far_end_answer_tone_is_reported_and_switches_to_voice_band_data() {
        let ans = sine(2100.0, -12.0, 1500);
        let (events, stats) = run_call(RtConfig::plain(), &ans, Vec::new(), 100);
        assert!(
            events.contains(&RtEvent::ModemTone { channel: 0, from_line: false, event: ModemToneEvent::Detected(ModemTone::Ans) }),
            "{events:?}"
        );
        let g = stats.channels[0].signals();
        assert!(g.vbd);
        assert_eq!(g.network_modem_tone, Some("ANS"));
    }

    #[test]
    fn speech_from_the_far_end_is_no_tone() {
        let mut talk = vec![0i16; 6 * 8000];
        gw_dsp::testsig::SpeechLike::new(40, -16.0).fill(&mut talk);
        let (events, stats) = run_call(RtConfig::plain(), &talk, talk.clone(), 600);
        assert!(
            !events.iter().any(|e| matches!(e, RtEvent::ModemTone { .. } | RtEvent::Progress { .. })),
            "{events:?}"
        );
        assert!(!stats.channels[0].signals().vbd);
    }

    /// A line that plays `input` towards the gateway and keeps what it is sent.
    struct TalkingLine {
        input: Vec<i16>,
        pos: usize,
        sent: Vec<i16>,
    }
    impl PcmBus for TalkingLine {
        fn channels(&self) -> usize {
            1
        }
        fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
            self.sent.extend_from_slice(&tx[0]);
            for s in rx[0].iter_mut() {
                *s = self.input.get(self.pos).copied().unwrap_or(0);
                self.pos += 1;
            }
            PcmStats::default()
        }
    }

    /// Level (dBm0) and the strength of `freq` against `other` (dB) in `x`.
    fn tone_at(x: &[i16], freq: f32, other: f32) -> (f32, f32) {
        let rms = (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
        let level = 20.0 * (rms / (f64::from(gw_dsp::DBM0_PEAK) / 2f64.sqrt())).log10();
        let power = |f: f32| {
            let mut g = gw_dsp::goertzel::Goertzel::new(f, 8000.0);
            x.iter().for_each(|&v| g.update(f32::from(v)));
            g.power()
        };
        (level as f32, 10.0 * (power(freq) / power(other).max(1e-9)).log10())
    }

    #[test]
    fn g722_call_carries_audio_both_ways_through_the_resamplers() {
        use gw_dsp::g722::{Decoder, Encoder, Mode};
        // The far end: 1000 Hz at -10 dBm0, G.722 from 16 kHz, 20 ms packets.
        let far: Vec<i16> = sine(1000.0, -10.0, 1000);
        let (mut up, mut enc) = (Upsampler::new(), Encoder::new(Mode::Kbps64));
        let packets = rtp_packets_with(9, &far, |half, out| {
            let (mut wide, mut code) = ([0i16; WB_FRAME], [0u8; 80]);
            up.process_frame(half.try_into().unwrap(), &mut wide);
            enc.encode_frame(&wide, &mut code);
            out.copy_from_slice(&code);
        });
        // The phone: 1500 Hz at -10 dBm0.
        let line = TalkingLine { input: sine(1500.0, -10.0, 1000), pos: 0, sent: Vec::new() };
        let (rtq, mut ctl) = make_queues();
        let mut engine = RtEngine::new(line, rtq, Arc::new(RtStats::new(1)), RtConfig::plain());
        let cmd = RtCommand::StartMedia { channel: 0, session: session(9), codec: VoiceCodec::G722 };
        ctl.commands.enqueue(cmd).unwrap();
        let mut sent = Vec::new();
        for t in 0..100 {
            if t % 2 == 0 {
                let _ = ctl.packets_in.enqueue(packets[t / 2].clone());
            }
            engine.tick();
            while let Some(p) = ctl.packets_out.dequeue() {
                sent.push(p.bytes().to_vec());
            }
        }
        // The phone hears the far end's tone, at its level.
        let heard = &engine.pcm.sent[4000..8000];
        let (level, purity) = tone_at(heard, 1000.0, 1500.0);
        assert!((level + 10.0).abs() < 1.0, "far end at the phone: {level:.2} dBm0");
        assert!(purity > 30.0, "1000 Hz over 1500 Hz: {purity:.1} dB");
        // The far end gets the phone's tone as G.722 (PT 9, 160 bytes per 20 ms).
        let (mut dec, mut down) = (Decoder::new(Mode::Kbps64), Downsampler::new());
        let mut decoded = Vec::new();
        for p in &sent {
            let pkt = gw_media::rtp::Packet::new_checked(&p[..]).unwrap();
            assert_eq!((pkt.payload_type(), pkt.payload().len()), (9, 160));
            for code in pkt.payload().chunks(80) {
                let (mut wide, mut nb) = ([0i16; WB_FRAME], [0i16; FRAME_SAMPLES]);
                dec.decode_frame(code.try_into().unwrap(), &mut wide);
                down.process_frame(&wide, &mut nb);
                decoded.extend_from_slice(&nb);
            }
        }
        let (level, purity) = tone_at(&decoded[2000..6000], 1500.0, 1000.0);
        assert!((level + 10.0).abs() < 1.0, "phone at the far end: {level:.2} dBm0");
        assert!(purity > 30.0, "1500 Hz over 1000 Hz: {purity:.1} dB");
    }

    /// A call with comfort noise negotiated (PT 13): the far end's `packets`
    /// (one every other tick) and the phone's `line` audio; returns the
    /// stats, the RTP sent and what the phone heard. The tick is checked for
    /// allocations on every CN path.
    fn run_cn_call(packets: &[Packet], line: Vec<i16>, ticks: usize) -> (Arc<RtStats>, Vec<Vec<u8>>, Vec<i16>) {
        let pcm = TalkingLine { input: line, pos: 0, sent: Vec::with_capacity(ticks * FRAME_SAMPLES) };
        let (rtq, mut ctl) = make_queues();
        let stats = Arc::new(RtStats::new(1));
        let mut engine = RtEngine::new(pcm, rtq, stats.clone(), RtConfig::plain());
        let session = SessionConfig { comfort_noise: Some(13), ..session(0) };
        ctl.commands.enqueue(RtCommand::StartMedia { channel: 0, session, codec: VoiceCodec::G711(Law::Ulaw) }).unwrap();
        let (_, sent) = drive(&mut engine, &mut ctl, packets, ticks);
        (stats, sent, std::mem::take(&mut engine.pcm.sent))
    }

    /// White noise at `dbov` (0 dBov: RMS 32767, RFC 3389 section 3.1).
    fn noise_dbov(seed: u64, dbov: f32, ms: usize) -> Vec<i16> {
        let mut g = gw_dsp::testsig::Noise::new(seed);
        let rms = 32767.0 * 10f32.powf(dbov / 20.0);
        (0..ms * 8).map(|_| (g.gauss() * rms) as i16).collect()
    }

    fn dbov(x: &[i16]) -> f32 {
        let p = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
        (10.0 * (p / (32767.0f64 * 32767.0)).log10()) as f32
    }

    #[test]
    fn silence_on_the_line_goes_out_as_comfort_noise_and_speech_resumes_marked() {
        // Phone: 1 s room noise at -55 dBov, 1.5 s talk over it, 2 s noise, 1 s talk.
        let mut line = noise_dbov(1, -55.0, 5500);
        let mut talk = vec![0i16; 1500 * 8];
        gw_dsp::testsig::SpeechLike::new(3, -16.0).fill(&mut talk);
        for (k, v) in talk.iter().enumerate() {
            line[1000 * 8 + k] = line[1000 * 8 + k].saturating_add(*v);
            if k < 1000 * 8 {
                line[4500 * 8 + k] = line[4500 * 8 + k].saturating_add(*v);
            }
        }
        let (stats, sent, _) = run_cn_call(&[], line, 550);
        // (tick the packet's first frame belongs to, payload type, marker, payload)
        let pkts: Vec<(usize, u8, bool, Vec<u8>)> = sent
            .iter()
            .map(|b| {
                let p = gw_media::rtp::Packet::new_checked(&b[..]).unwrap();
                (p.timestamp() as usize / 80, p.payload_type(), p.marker(), p.payload().to_vec())
            })
            .collect();
        let seqs: Vec<u16> = sent.iter().map(|b| gw_media::rtp::Packet::new_checked(&b[..]).unwrap().sequence_number()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "one sequence space: {seqs:?}");
        let audio_in = |from: usize, to: usize| pkts.iter().filter(|p| p.1 == 0 && (from..to).contains(&p.0)).count();
        let cn_in = |from: usize, to: usize| pkts.iter().filter(|p| p.1 == 13 && (from..to).contains(&p.0)).collect::<Vec<_>>();

        // Room noise alone: a SID at once, then nothing (no audio at all).
        let first = cn_in(0, 100);
        assert!(!first.is_empty() && first[0].0 < 5, "SID at the start: {first:?}");
        assert_eq!(audio_in(0, 100), 0);
        // Talk: audio, its first packet marked as a talkspurt.
        let talk1: Vec<_> = pkts.iter().filter(|p| p.1 == 0 && (100..250).contains(&p.0)).collect();
        assert!(talk1.len() > 50, "{} audio packets in 1.5 s of talk", talk1.len());
        assert!(talk1[0].2 && talk1[0].0 <= 102, "talkspurt starts at once, marked: {:?}", (talk1[0].0, talk1[0].2));
        // Silence after the hangover (200 ms): one SID, then no audio for 1.7 s,
        // and no more than a couple of SID updates.
        assert_eq!(audio_in(280, 450), 0, "audio sent in silence");
        let sids = cn_in(250, 450);
        assert!((1..=3).contains(&sids.len()), "{} SIDs in 2 s of silence: {sids:?}", sids.len());
        assert!(sids[0].0 <= 280, "SID right after the hangover: tick {}", sids[0].0);
        // The SID carries the room noise level (byte 0 = -dBov) and a spectral model.
        let level = -f32::from(sids[0].3[0]);
        assert!((level + 55.0).abs() <= 3.0, "SID level {level} dBov");
        assert_eq!(sids[0].3.len(), 1 + CN_ORDER);
        // Talk again: marker bit on the first packet, timestamps on the audio clock.
        let talk2: Vec<_> = pkts.iter().filter(|p| p.1 == 0 && p.0 >= 450).collect();
        assert!(talk2.len() > 30);
        assert!(talk2[0].2 && talk2[0].0 <= 452, "resumed at {} marked {}", talk2[0].0, talk2[0].2);
        assert_eq!(pkts.iter().filter(|p| p.2).count(), pkts.iter().filter(|p| p.1 == 0 && p.2).count(), "SIDs unmarked");

        let sil = stats.channels[0].signals().silence.expect("CN negotiated");
        let cn_sent = pkts.iter().filter(|p| p.1 == 13).count();
        assert_eq!(sil.cn_sent as usize, cn_sent);
        assert!(sil.suppressed_frames >= 250, "100 + 170 frames of silence at least: {sil:?}");
        assert_eq!(stats.snapshot().rtp_sent as usize, sent.len());
    }

    #[test]
    fn fax_calls_are_never_silence_suppressed() {
        // A fax machine's CNG (0.5 s of 1100 Hz), then its quiet line: voice-band
        // data from the tone on, so every frame after it goes out as audio.
        let mut line = sine(1100.0, -10.0, 500);
        line.extend(noise_dbov(2, -55.0, 2500));
        let (stats, sent, _) = run_cn_call(&[], line, 300);
        assert!(stats.channels[0].signals().vbd);
        let late: Vec<(u32, u8)> = sent
            .iter()
            .map(|b| gw_media::rtp::Packet::new_checked(&b[..]).unwrap())
            .map(|p| (p.timestamp() / 80, p.payload_type()))
            .filter(|p| p.0 >= 60)
            .collect();
        assert!(late.iter().all(|p| p.1 == 0 || p.1 == 101), "suppressed in voice-band data: {late:?}");
        assert!(late.iter().filter(|p| p.1 == 0).count() >= 115, "audio every 20 ms");
    }

    #[test]
    fn comfort_noise_from_the_far_end_is_played_at_its_level_not_concealed() {
        // 0.5 s of a 500 Hz tone, then the far end goes silent with one SID
        // (-42 dBov, a low-pass model) and sends nothing for 1.5 s.
        let mut packets = rtp_packets(&sine(500.0, -10.0, 500));
        let n = packets.len();
        let mut sid = Packet::empty();
        let hdr = gw_media::rtp::RtpHeader { marker: false, payload_type: 13, sequence: n as u16, timestamp: (n * 160) as u32, ssrc: 9 };
        let h = hdr.emit(&mut sid.data);
        let mut model = CnParams::white(-42.0);
        model.order = 2;
        model.reflection[0] = -0.6;
        model.reflection[1] = 0.2;
        let len = model.encode(&mut sid.data[h..]).unwrap();
        sid.len = (h + len) as u16;
        packets.push(sid);

        let (stats, _, heard) = run_cn_call(&packets, Vec::new(), 200);
        // The tone played, then comfort noise at the signalled level for the
        // rest of the call (PLC would fade to silence within 60 ms).
        assert!(dbov(&heard[300 * 8..450 * 8]) > -20.0, "the far end's tone");
        for (from, to) in [(700, 1000), (1000, 1500), (1500, 2000)] {
            let l = dbov(&heard[from * 8..to * 8]);
            assert!((l + 42.0).abs() <= 3.0, "{from}..{to} ms: {l:.1} dBov, want -42");
        }
        let sil = stats.channels[0].signals().silence.unwrap();
        assert_eq!(sil.cn_received, 1);
        assert!(sil.cn_played_frames >= 140, "{sil:?}");

        // The same stream without the SID is loss: concealed, then silence.
        let (_, _, heard) = run_cn_call(&packets[..n], Vec::new(), 200);
        assert!(heard[1000 * 8..].iter().all(|&s| s == 0), "loss is not comfort noise");
    }

    /// A line that returns `gain` x what it was sent, `delay` samples later.
    struct EchoLine {
        delay_line: Vec<i16>,
        gain: f32,
    }
    impl PcmBus for EchoLine {
        fn channels(&self) -> usize {
            1
        }
        fn exchange(&mut self, tx: &[Frame], rx: &mut [Frame]) -> PcmStats {
            for k in 0..FRAME_SAMPLES {
                self.delay_line.push(tx[0][k]);
                rx[0][k] = (self.delay_line.remove(0) as f32 * self.gain) as i16;
            }
            PcmStats::default()
        }
    }

    #[test]
    fn line_echo_is_cancelled_and_reported() {
        let line = EchoLine { delay_line: vec![0; 40], gain: 0.4 };
        let (rtq, mut ctl) = make_queues();
        let stats = Arc::new(RtStats::new(1));
        let mut engine = RtEngine::new(line, rtq, stats.clone(), RtConfig { echo_tail: Some(256), ..RtConfig::plain() });
        let us = gw_dsp::tones::profile("US").unwrap();
        ctl.commands.enqueue(RtCommand::PlayTone { channel: 0, spec: us.dial }).unwrap();
        for _ in 0..300 {
            engine.tick();
        }
        let st = stats.channels[0].snapshot();
        assert!(st.enabled);
        assert!(st.erle_db > 15.0, "ERLE {:.1} dB", st.erle_db);
        assert!((st.delay_ms - 5.0).abs() <= 1.0, "echo delay {:.1} ms", st.delay_ms);
        // Single talk: adapting, not frozen; the NLP hides the residual with comfort noise.
        assert!(st.adapting && !st.frozen && st.nlp_active && st.comfort_noise, "{st:?}");
        let json = serde_json::to_value(st).unwrap();
        assert_eq!(json["frozen"], false, "{json}");
    }

    #[test]
    fn digits_dialled_over_dial_tone_are_detected_with_echo_cancellation() {
        let digit_frames = dtmf_frames(b'7');
        let line = move |tick: u64, _ch: usize, f: &mut Frame| {
            let t = tick as usize;
            *f = if (20..20 + digit_frames.len()).contains(&t) { digit_frames[t - 20] } else { [0; FRAME_SAMPLES] };
        };
        let pcm = LoopPcm { n: 1, tick: 0, line, last_tx: vec![[0; FRAME_SAMPLES]; 1] };
        let (rtq, mut ctl) = make_queues();
        let mut engine = RtEngine::new(pcm, rtq, Arc::new(RtStats::new(1)), RtConfig { echo_tail: Some(512), ..RtConfig::plain() });
        let us = gw_dsp::tones::profile("US").unwrap();
        ctl.commands.enqueue(RtCommand::PlayTone { channel: 0, spec: us.dial }).unwrap();
        for _ in 0..60 {
            engine.tick();
        }
        assert_eq!(ctl.events.dequeue(), Some(RtEvent::LineDigit { channel: 0, digit: b'7' }));
    }

    /// Near-end DTMF over far-end dial tone must survive the NLP on a line
    /// with no echo (it once replaced the digit with comfort noise).
    #[test]
    fn digits_survive_the_nlp() {
        let digit_frames = dtmf_frames(b'7');
        let mut ec = EchoCanceller::new(512);
        let us = gw_dsp::tones::profile("US").unwrap();
        let mut tone = ToneGenerator::new(&us.dial);
        let mut det = DtmfDetector::new();
        let mut got = None;
        for t in 0..60 {
            let mut far: Frame = [0; FRAME_SAMPLES];
            tone.fill(&mut far);
            let near = if (20..20 + digit_frames.len()).contains(&t) { digit_frames[t - 20] } else { [0; FRAME_SAMPLES] };
            let mut out: Frame = [0; FRAME_SAMPLES];
            ec.process(&far, &near, &mut out);
            if let Some(DtmfEvent::Start(d)) = det.process(&out) {
                got = Some(d);
            }
        }
        assert_eq!(got, Some(b'7'));
    }

    #[test]
    fn a_calls_reception_and_levels_are_published_for_the_quality_plots() {
        // 1 s of a -10 dBm0 tone from the far end with packets 5, 10 and 15
        // missing; the line sends a -20 dBm0 tone.
        let mut packets = rtp_packets(&sine(1004.0, -10.0, 1000));
        for k in [15, 10, 5] {
            packets.remove(k);
        }
        let (_, stats, _) = run_call_packets(RtConfig::plain(), &packets, sine(697.0, -20.0, 1200), 100);
        let q = stats.channels[0].signals().quality.expect("a call with media has quality figures");
        assert_eq!((q.received, q.lost, q.late), (47, 3, 0), "{q:?}");
        assert!(q.concealed >= 3, "the gaps were concealed: {q:?}");
        assert!((q.to_line_dbm0 + 10.0).abs() < 1.5, "{q:?}");
        assert!((q.from_line_dbm0 + 20.0).abs() < 1.5, "{q:?}");
        assert!(q.jitter_ms < 5.0, "{q:?}");
        assert_eq!(RtStats::new(1).channels[0].signals().quality, None, "no media, no figures");
    }

    #[test]
    fn gaps_in_the_rtp_stream_are_concealed_then_faded() {
        let line = |_t: u64, _ch: usize, f: &mut Frame| *f = [0; FRAME_SAMPLES];
        let pcm = LoopPcm { n: 1, tick: 0, line, last_tx: vec![[0; FRAME_SAMPLES]; 1] };
        let (rtq, mut ctl) = make_queues();
        let mut engine = RtEngine::new(pcm, rtq, Arc::new(RtStats::new(1)), RtConfig::plain());
        ctl.commands
            .enqueue(RtCommand::StartMedia { channel: 0, session: session(0), codec: VoiceCodec::G711(Law::Ulaw) })
            .unwrap();
        let mut energy = Vec::new();
        let mut phase = 0f32;
        for t in 0..60u32 {
            if t % 2 == 0 && t < 20 {
                // 20 ms of a 500 Hz tone per packet, 10 packets, then silence on the wire.
                let mut pkt = Packet::empty();
                let n = t / 2;
                let hdr = gw_media::rtp::RtpHeader {
                    marker: n == 0,
                    payload_type: 0,
                    sequence: n as u16,
                    timestamp: n * 160,
                    ssrc: 9,
                };
                let h = hdr.emit(&mut pkt.data);
                for k in 0..160 {
                    let v = (phase.sin() * 8000.0) as i16;
                    phase += 2.0 * std::f32::consts::PI * 500.0 / 8000.0;
                    pkt.data[h + k] = g711::encode(Law::Ulaw, v);
                }
                pkt.len = (h + 160) as u16;
                ctl.packets_in.enqueue(pkt).ok().unwrap();
            }
            engine.tick();
            energy.push(engine.pcm.last_tx[0].iter().map(|&x| (x as i64).abs()).sum::<i64>());
        }
        let last_audio = energy.iter().rposition(|&e| e > 80 * 4000).expect("audio played");
        // The frame after the stream ran dry is concealed, not silent...
        assert!(energy[last_audio + 1] > 0, "gap not concealed: {energy:?}");
        // ...and concealment fades to silence within about 60 ms.
        assert!(energy[last_audio + 9..].iter().all(|&e| e == 0), "no fade-out: {energy:?}");
    }
}
