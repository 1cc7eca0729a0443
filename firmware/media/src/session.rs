//! One call's media: RTP send/receive for G.711 with RFC 4733 DTMF events
//! and RFC 4734 modem/fax tone events.
//!
//! Driven by the rt thread once per 10 ms tick: [`RtpSession::receive`] for
//! every packet that arrived, [`RtpSession::pull_frame`] once for the line,
//! [`RtpSession::send_frame`] once with what the line said, then
//! [`RtpSession::poll_event_packet`] until it returns `None` (sent after the
//! `send_frame` packet, so the sequence numbers go out in order). The number
//! of pulls is the session's receive clock (80 timestamp units each), used as
//! arrival time for the RFC 3550 A.8 jitter estimate; callers that have a
//! finer arrival time use [`RtpSession::receive_at`].
//!
//! Events: one at a time, in one sequence space with the audio (RFC 4733
//! section 2.1). A DTMF digit ([`RtpSession::start_dtmf`]) replaces the audio
//! while it lasts; a modem or fax tone ([`RtpSession::start_tone_event`]) is
//! sent alongside the audio, which still carries the tone in-band (RFC 4733
//! section 2.2), and its packets come from `poll_event_packet`. A new event
//! of either kind ends the current one (three end packets) and follows it.
//!
//! Comfort noise (RFC 3389), when [`SessionConfig::comfort_noise`] has its
//! payload type: in silence the caller feeds [`RtpSession::send_cn`] (a SID
//! frame with the noise parameters) or [`RtpSession::skip_frame`] (nothing)
//! instead of `send_frame`; the timestamp keeps advancing with the audio
//! clock, and the first audio packet after the silence has the marker bit
//! (RFC 3551 section 4.1). On receive a CN packet is
//! [`Received::ComfortNoise`], its payload is kept for
//! [`RtpSession::comfort_noise_payload`], and [`RtpSession::cn_active`] tells
//! the caller that a gap is signalled silence (play comfort noise), not loss
//! (conceal), until audio sent after the CN packet plays.
//!
//! Nothing here allocates; the session is one fixed-size value.

use crate::jitter::{Insert, JitterBuffer, JitterStats, FRAME_BYTES, FRAME_TS, MAX_PACKET_FRAMES};
use crate::rfc4733::{self, EventPayload};
use crate::rtcp::{self, Compound, ReportBlock, SenderInfo};
use crate::rtp::{Packet, RtpHeader};

/// Negotiated media parameters for one call.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Audio payload type: 0 (PCMU) or 8 (PCMA).
    pub payload_type: u8,
    /// Payload type of telephone-event, if the peer accepted it.
    pub telephone_event: Option<u8>,
    /// Payload type of RFC 3389 comfort noise (13), if the peer accepted it.
    pub comfort_noise: Option<u8>,
    /// Packetization time, 10..=60 and a multiple of 10 (other values are
    /// rounded down and clamped).
    pub ptime_ms: u32,
    pub ssrc: u32,
    pub initial_seq: u16,
    pub initial_ts: u32,
    /// Receive playout delay, e.g. 60 (clamped to 10..=520).
    pub jitter_depth_ms: u32,
}

/// What a received packet was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Audio, stored in the jitter buffer.
    Audio,
    /// A new DTMF event began (ASCII digit). Also reported when the first
    /// packet seen of an event is already an end packet (the start was lost);
    /// the end is then reported by the next retransmitted end packet.
    DtmfStart(u8),
    /// The event ended: digit and duration in timestamp units (1/8 ms),
    /// over all its segments (RFC 4733 section 2.5.1.3), at most 65535.
    DtmfEnd(u8, u16),
    /// An RFC 4734 modem/fax tone event began: its code, 32..=36 (see
    /// [`crate::rfc4733::modem_tone_name`]). Reported like `DtmfStart`, also
    /// when the start was lost. The audio that carries the tone keeps going
    /// into the jitter buffer.
    ToneEventStart(u8),
    /// The tone event ended: code and duration in timestamp units.
    ToneEventEnd(u8, u16),
    /// An RFC 3389 comfort noise packet (SID): the far end went silent. Its
    /// payload (level and reflection coefficients) is in
    /// [`RtpSession::comfort_noise_payload`], and [`RtpSession::cn_active`]
    /// is set until audio sent after it plays.
    ComfortNoise,
    /// Nothing new: a retransmission (same sequence number), a continuation
    /// or repeated end of an event already reported, or a stale event packet.
    Duplicate,
    /// Not for us: another payload type (comfort noise when it was not
    /// negotiated, events other than DTMF and the tones above),
    /// another SSRC while the locked one is live, or an empty payload.
    Ignored,
    /// Audio whose playout time had already passed; dropped and counted.
    /// Also a comfort noise packet older than audio already received (it
    /// would start silence in the middle of speech); dropped.
    Late,
}

/// Why a received packet was refused. Nothing in the session changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaError {
    /// Not a valid RTP packet (RFC 3550 section 5.1).
    Malformed,
    /// Audio payload longer than 60 ms.
    TooLarge,
    /// Audio payload not a whole number of 10 ms frames.
    BadFrameLength,
    /// telephone-event payload shorter than 4 bytes (RFC 4733 section 2.3).
    BadEvent,
}

impl From<crate::rtp::Error> for MediaError {
    fn from(_: crate::rtp::Error) -> Self {
        MediaError::Malformed
    }
}

/// Counters for the CLI, the web UI and RTCP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub packets_sent: u64,
    /// Payload octets sent (RTCP SR "sender's octet count").
    pub octets_sent: u64,
    /// Telephone-event packets (DTMF and tones) among `packets_sent`.
    pub events_sent: u64,
    /// Packets accepted from the locked source (audio and events).
    pub packets_received: u64,
    /// Expected minus received (RFC 3550 A.3), summed over source restarts.
    pub lost: i64,
    /// Audio packets dropped because they came after their playout time.
    pub late: u64,
    /// Packets whose sequence number had already been received.
    pub duplicates: u64,
    /// Interarrival jitter (RFC 3550 A.8) in timestamp units.
    pub jitter: u32,
    /// Packets refused as malformed.
    pub malformed: u64,
    /// Packets ignored (other payload type or source).
    pub ignored: u64,
    /// 10 ms frames the line got no audio for while playing.
    pub concealed: u64,
    /// Jitter buffer re-anchors.
    pub resyncs: u64,
    /// Frames dropped to bring the jitter buffer back to its depth.
    pub dropped: u64,
    /// Times the remote SSRC changed (only after [`RtpSession::accept_new_source`]).
    pub ssrc_changes: u64,
    /// Packets from an SSRC other than the locked one, dropped (among `ignored`).
    pub foreign_ssrc: u64,
    /// `send_frame` calls whose output buffer was too small.
    pub send_errors: u64,
    /// RFC 3389 comfort noise packets sent (among `packets_sent`) and
    /// received (among `packets_received`).
    pub cn_sent: u64,
    pub cn_received: u64,
    /// 10 ms frames sent as nothing or as CN ([`RtpSession::skip_frame`],
    /// [`RtpSession::send_cn`]): silence suppressed.
    pub suppressed: u64,
    /// 10 ms frames the line got no audio for while comfort noise was
    /// active (not counted in `concealed`).
    pub cn_frames: u64,
    /// From the far end's last RTCP report about us: fraction lost (1/256).
    pub remote_fraction_lost: u8,
    /// ... its cumulative loss count.
    pub remote_lost: i32,
    /// ... and its jitter estimate, timestamp units.
    pub remote_jitter: u32,
    /// Round-trip time from the last report (RFC 3550 section 6.4.1), ms.
    pub rtt_ms: Option<u32>,
    /// RTCP packets refused as malformed.
    pub rtcp_malformed: u64,
}

/// What a received RTCP compound told us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    /// The far end's report block about our stream, if it had one.
    pub report: Option<ReportBlock>,
    /// It sent a BYE (section 6.6): the far end is leaving.
    pub bye: bool,
}

/// RFC 4733 section 2.5.1.4: the end packet is sent three times.
const END_REPEATS: u8 = 3;
/// Longest event segment in frames: 819 * 80 = 65520 fits the 16-bit
/// duration (RFC 4733 section 2.5.1.3).
const MAX_SEGMENT_FRAMES: u32 = u16::MAX as u32 / FRAME_TS;
/// Volume reported for our events, -dBm0 (RFC 4733 section 2.3.4).
const EVENT_VOLUME: u8 = 10;
/// RFC 3550 A.1 MAX_DROPOUT / MAX_MISORDER.
const MAX_DROPOUT: i32 = 3000;
const MAX_MISORDER: i32 = 100;
/// Longest comfort noise payload kept (level and up to 31 coefficients;
/// RFC 3389 lets the receiver use fewer, and gw-dsp models at most 10).
pub const CN_MAX_PAYLOAD: usize = 32;

/// How an event being sent relates to the audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    /// A DTMF digit: sent instead of the audio (RFC 4733 section 2.5.1), its
    /// packets come out of `send_frame`.
    Dtmf,
    /// A modem or fax tone (RFC 4734): sent alongside the audio, which still
    /// carries the tone (RFC 4733 section 2.2); its packets come out of
    /// `poll_event_packet`.
    Tone,
}

#[derive(Clone, Copy, Debug)]
struct TxEvent {
    event: u8,
    kind: EventKind,
    ts: u32,
    /// Frames with the tone on so far.
    frames: u32,
    start_sent: bool,
    stopping: bool,
    ends_sent: u8,
    /// Frames since the last packet of this event.
    since_packet: u32,
}

/// An event waiting for the end packets of the one being sent.
#[derive(Clone, Copy, Debug)]
struct Pending {
    event: u8,
    kind: EventKind,
    stopped: bool,
    /// Timestamp of the frame in which it began.
    ts: u32,
}

/// An event packet due, before it gets its sequence number.
#[derive(Clone, Copy, Debug)]
struct EventPacket {
    marker: bool,
    ts: u32,
    payload: EventPayload,
}

/// RFC 3550 A.1 sequence state with a 64-packet duplicate window.
#[derive(Clone, Copy, Debug, Default)]
struct SeqState {
    started: bool,
    max_seq: u16,
    cycles: u32,
    base: u32,
    received: u32,
    window: u64,
    lost_before: i64,
    /// Appendix A.3 interval bookkeeping for the fraction lost.
    expected_prior: i64,
    received_prior: u32,
}

enum SeqResult {
    New,
    Duplicate,
    Restart,
}

impl SeqState {
    fn expected(&self) -> i64 {
        (self.cycles as i64 + self.max_seq as i64) - self.base as i64 + 1
    }

    fn lost(&self) -> i64 {
        self.lost_before + if self.started { self.expected() - self.received as i64 } else { 0 }
    }

    fn restart(&mut self, seq: u16) {
        let lost = self.lost();
        *self = SeqState { started: true, max_seq: seq, base: seq as u32, received: 1, window: 1, lost_before: lost, ..SeqState::default() };
    }

    /// Report block fields for this source (appendix A.3): fraction lost
    /// since the previous call, cumulative loss, extended highest sequence.
    fn report(&mut self) -> (u8, i32, u32) {
        let expected = self.expected();
        let interval = expected - self.expected_prior;
        let received = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost = interval - received as i64;
        let fraction = if interval <= 0 || lost <= 0 { 0 } else { ((lost << 8) / interval).min(255) as u8 };
        let cumulative = self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32;
        (fraction, cumulative, self.cycles.wrapping_add(self.max_seq as u32))
    }

    fn update(&mut self, seq: u16) -> SeqResult {
        if !self.started {
            self.restart(seq);
            return SeqResult::New;
        }
        let delta = seq.wrapping_sub(self.max_seq) as i16 as i32;
        if delta > 0 && delta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.window = if delta >= 64 { 0 } else { self.window << delta };
            self.window |= 1;
            self.max_seq = seq;
        } else if delta <= 0 && -delta <= MAX_MISORDER {
            let back = -delta as u32;
            if back < 64 {
                if self.window & (1 << back) != 0 {
                    return SeqResult::Duplicate;
                }
                self.window |= 1 << back;
            }
        } else {
            // A jump: the source restarted its sequence (A.1 would wait for
            // a second packet; we follow at once and let the buffer resync).
            self.restart(seq);
            return SeqResult::Restart;
        }
        self.received += 1;
        SeqResult::New
    }
}

#[derive(Clone, Copy, Debug)]
struct RxEvent {
    event: u8,
    /// Timestamp of the current segment.
    ts: u32,
    /// Timestamp of the first segment (RFC 4733 section 2.5.1.3).
    origin: u32,
    end_reported: bool,
}

/// A long event's next segment starts this close below the 16-bit duration
/// limit (the sender splits when the next update would not fit: at most one
/// 60 ms packet's worth, 480 units, below it).
const SEGMENT_MIN_LEN: u32 = u16::MAX as u32 - 480;

impl RxEvent {
    fn is_next_segment(&self, ts: u32, event: u8) -> bool {
        !self.end_reported && event == self.event && (SEGMENT_MIN_LEN..=u16::MAX.into()).contains(&ts.wrapping_sub(self.ts))
    }
}

/// Per-call media session; see the module docs.
#[derive(Clone, Debug)]
pub struct RtpSession {
    cfg: SessionConfig,
    frames_per_packet: u32,
    // --- send side
    seq: u16,
    /// Timestamp of the next frame given to `send_frame`.
    clock: u32,
    acc: [u8; FRAME_BYTES * MAX_PACKET_FRAMES],
    acc_frames: u32,
    acc_ts: u32,
    audio_sent: bool,
    tx_event: Option<TxEvent>,
    pending: Option<Pending>,
    /// Tone event packet due, for `poll_event_packet`.
    tone_packet: Option<EventPacket>,
    // --- receive side
    jb: JitterBuffer,
    remote_ssrc: Option<u32>,
    /// Set by `accept_new_source`: the next SSRC seen is locked afresh.
    relock: bool,
    idle_frames: u32,
    seqs: SeqState,
    rx_clock: u32,
    last_transit: Option<u32>,
    jitter_q4: u32,
    rx_event: Option<RxEvent>,
    /// Last comfort noise payload received (`cn_len` bytes).
    cn_payload: [u8; CN_MAX_PAYLOAD],
    cn_len: usize,
    /// Timestamp of the last CN packet; set while its silence lasts.
    cn_ts: Option<u32>,
    /// Audio sent after that CN packet has arrived (speech resumes when it plays).
    audio_after_cn: bool,
    /// End timestamp of the newest audio received.
    audio_end_ts: Option<u32>,
    /// LSR of the far end's last SR and when it arrived (NTP).
    last_sr: Option<(u32, u64)>,
    sent_since_report: bool,
    stats: SessionStats,
}

impl RtpSession {
    pub fn new(cfg: SessionConfig) -> Self {
        let fpp = (cfg.ptime_ms / 10).clamp(1, MAX_PACKET_FRAMES as u32);
        Self {
            cfg,
            frames_per_packet: fpp,
            seq: cfg.initial_seq,
            clock: cfg.initial_ts,
            acc: [0; FRAME_BYTES * MAX_PACKET_FRAMES],
            acc_frames: 0,
            acc_ts: cfg.initial_ts,
            audio_sent: false,
            tx_event: None,
            pending: None,
            tone_packet: None,
            jb: JitterBuffer::new(cfg.jitter_depth_ms),
            remote_ssrc: None,
            relock: false,
            idle_frames: 0,
            seqs: SeqState::default(),
            rx_clock: 0,
            last_transit: None,
            jitter_q4: 0,
            rx_event: None,
            cn_payload: [0; CN_MAX_PAYLOAD],
            cn_len: 0,
            cn_ts: None,
            audio_after_cn: false,
            audio_end_ts: None,
            last_sr: None,
            sent_since_report: false,
            stats: SessionStats::default(),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The SSRC we are receiving from, once locked.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote_ssrc
    }

    /// 10 ms frames since the last packet of the locked source (RTP
    /// inactivity, for a liveness check).
    pub fn idle_frames(&self) -> u32 {
        self.idle_frames
    }

    /// The far end moved its media (a new SDP): the next SSRC received is
    /// locked in place of the current one. Nothing else unlocks a session.
    pub fn accept_new_source(&mut self) {
        if self.remote_ssrc.take().is_some() {
            self.relock = true;
        }
    }

    pub fn stats(&self) -> SessionStats {
        let jb: JitterStats = self.jb.stats();
        SessionStats {
            lost: self.seqs.lost(),
            late: jb.late,
            jitter: self.jitter_q4 >> 4,
            resyncs: jb.resyncs,
            dropped: jb.dropped,
            concealed: jb.concealed.saturating_sub(self.stats.cn_frames),
            ..self.stats
        }
    }

    // ------------------------------------------------------------- sending

    /// Feeds one 10 ms frame of encoded G.711. When a packet is due, writes it
    /// into `out` and returns its length. `out` must hold 12 + ptime*8 bytes
    /// (at most 492); if it is smaller the packet is not sent and
    /// `send_errors` counts it (the timeline still advances).
    ///
    /// While a DTMF event is being sent (RFC 4733 section 2.5.1) audio is not
    /// sent, and the frames gathered when the event began are discarded: the
    /// event's timestamp is the time its tone started, and timestamps keep
    /// advancing with the frames fed, so audio resumes on the right timeline.
    /// A tone event changes nothing here: its packets wait in
    /// [`RtpSession::poll_event_packet`], to be drained after every call.
    pub fn send_frame(&mut self, encoded: &[u8; 80], out: &mut [u8]) -> Option<usize> {
        let frame_ts = match self.begin_frame() {
            Ok(ts) => ts,
            Err(pkt) => return self.write_event(pkt?, out),
        };
        if self.acc_frames == 0 {
            self.acc_ts = frame_ts;
        }
        let at = self.acc_frames as usize * FRAME_BYTES;
        self.acc[at..at + FRAME_BYTES].copy_from_slice(encoded);
        self.acc_frames += 1;
        if self.acc_frames < self.frames_per_packet {
            return None;
        }
        self.acc_frames = 0;
        let len = self.frames_per_packet as usize * FRAME_BYTES;
        let hdr = RtpHeader {
            marker: !self.audio_sent,
            payload_type: self.cfg.payload_type,
            sequence: self.seq,
            timestamp: self.acc_ts,
            ssrc: self.cfg.ssrc,
        };
        let n = self.write_packet(&hdr, len, out)?;
        out[RtpHeader::LEN..n].copy_from_slice(&self.acc[..len]);
        self.audio_sent = true;
        Some(n)
    }

    /// Advances the send timeline by one frame and the event being sent with
    /// it. `Ok(timestamp of the frame)` when the frame is the caller's to
    /// send; `Err` when a DTMF event replaces it, with the event packet if
    /// one is due.
    fn begin_frame(&mut self) -> Result<u32, Option<EventPacket>> {
        let frame_ts = self.clock;
        self.clock = self.clock.wrapping_add(FRAME_TS);
        if self.tx_event.is_none() {
            if let Some(p) = self.pending.take() {
                // DTMF replaces the audio, so its packets start where the
                // audio stops; a tone runs alongside the audio and keeps the
                // time it began, its first packet reporting the wait.
                let ts = if p.kind == EventKind::Tone { p.ts } else { frame_ts };
                self.begin_event(p.event, p.kind, ts, frame_ts, p.stopped);
            }
        }
        match self.tx_event.map(|ev| ev.kind) {
            Some(EventKind::Dtmf) => return Err(self.event_frame()),
            Some(EventKind::Tone) => {
                // A packet nobody polled is superseded by the newer one.
                if let Some(pkt) = self.event_frame() {
                    self.tone_packet = Some(pkt);
                }
            }
            None => {}
        }
        Ok(frame_ts)
    }

    /// One 10 ms frame of silence, sent as an RFC 3389 comfort noise packet
    /// (a SID frame, section 4) carrying `params` (level byte and reflection
    /// coefficients, e.g. from `gw_dsp::cng::CnParams::encode`) with this
    /// frame's timestamp. Call it instead of [`RtpSession::send_frame`] for
    /// the frame; returns the packet length. Audio frames gathered for a
    /// packet not yet full (the end of the VAD hangover) are dropped, and
    /// the next audio packet starts a talkspurt with the marker bit (RFC 3551
    /// section 4.1). Nothing is sent (`None`, the frame still counts as
    /// suppressed) if comfort noise was not negotiated, `params` is empty or
    /// longer than [`CN_MAX_PAYLOAD`], or `out` is too small (`send_errors`).
    /// While a DTMF event is being sent its packets come out here as from
    /// `send_frame`.
    pub fn send_cn(&mut self, params: &[u8], out: &mut [u8]) -> Option<usize> {
        let frame_ts = match self.begin_frame() {
            Ok(ts) => ts,
            Err(pkt) => return self.write_event(pkt?, out),
        };
        self.suppress();
        let pt = self.cfg.comfort_noise?;
        if params.is_empty() || params.len() > CN_MAX_PAYLOAD {
            return None;
        }
        let hdr = RtpHeader { marker: false, payload_type: pt, sequence: self.seq, timestamp: frame_ts, ssrc: self.cfg.ssrc };
        let n = self.write_packet(&hdr, params.len(), out)?;
        out[RtpHeader::LEN..n].copy_from_slice(params);
        self.stats.cn_sent += 1;
        Some(n)
    }

    /// One 10 ms frame of silence sent as nothing (RFC 3389 section 4: the
    /// far end keeps playing the last comfort noise): the timestamp advances
    /// as with [`RtpSession::send_frame`], and the next audio packet gets the
    /// marker bit. Returns a packet only while a DTMF event is being sent
    /// (its packets, as from `send_frame`).
    pub fn skip_frame(&mut self, out: &mut [u8]) -> Option<usize> {
        match self.begin_frame() {
            Ok(_) => {
                self.suppress();
                None
            }
            Err(pkt) => self.write_event(pkt?, out),
        }
    }

    fn suppress(&mut self) {
        self.acc_frames = 0;
        self.audio_sent = false;
        self.stats.suppressed += 1;
    }

    /// The tone event packet due, if any: call after every
    /// [`RtpSession::send_frame`] and send what it writes after the packet
    /// `send_frame` returned, so that sequence numbers go out in order (one
    /// sequence space for audio and events, RFC 4733 section 2.1). At most
    /// one per frame. `out` needs 16 bytes; if it is shorter the packet is
    /// dropped and `send_errors` counts it.
    pub fn poll_event_packet(&mut self, out: &mut [u8]) -> Option<usize> {
        let pkt = self.tone_packet.take()?;
        self.write_event(pkt, out)
    }

    /// Checks room, writes the header and counts the packet; the caller
    /// writes the payload.
    fn write_packet(&mut self, hdr: &RtpHeader, payload_len: usize, out: &mut [u8]) -> Option<usize> {
        let n = RtpHeader::LEN + payload_len;
        if out.len() < n {
            self.stats.send_errors += 1;
            return None;
        }
        hdr.emit(out);
        self.seq = self.seq.wrapping_add(1);
        self.stats.packets_sent += 1;
        self.stats.octets_sent += payload_len as u64;
        self.sent_since_report = true;
        Some(n)
    }

    fn write_event(&mut self, pkt: EventPacket, out: &mut [u8]) -> Option<usize> {
        let hdr = RtpHeader {
            marker: pkt.marker,
            payload_type: self.cfg.telephone_event.unwrap_or(101),
            sequence: self.seq,
            timestamp: pkt.ts,
            ssrc: self.cfg.ssrc,
        };
        let n = self.write_packet(&hdr, EventPayload::LEN, out)?;
        pkt.payload.emit(&mut out[RtpHeader::LEN..n]);
        self.stats.events_sent += 1;
        Some(n)
    }

    /// Starts sending `event` from timestamp `ts`; `now` is the timestamp of
    /// the frame being fed (later than `ts` for a tone that waited).
    fn begin_event(&mut self, event: u8, kind: EventKind, ts: u32, now: u32, stopped: bool) {
        if kind == EventKind::Dtmf {
            self.acc_frames = 0;
        }
        let waited = (now.wrapping_sub(ts) / FRAME_TS).min(MAX_SEGMENT_FRAMES - 1);
        self.tx_event =
            Some(TxEvent { event, kind, ts, frames: waited, start_sent: false, stopping: stopped, ends_sent: 0, since_packet: 0 });
    }

    /// Advances the event being sent by one frame; returns its packet if one
    /// is due now. The event advances whether or not the packet can be
    /// written: the tone is on the line's timeline, not the caller's buffers.
    fn event_frame(&mut self) -> Option<EventPacket> {
        let fpp = self.frames_per_packet;
        let ev = self.tx_event.as_mut()?;
        ev.since_packet += 1;
        let due = if !ev.start_sent {
            // The first packet goes out at once (section 2.5.1.2), even when
            // the tone already ended: the peer must see the event begin.
            ev.frames += 1;
            true
        } else if !ev.stopping {
            if ev.frames >= MAX_SEGMENT_FRAMES {
                // Section 2.5.1.3: the duration field is full; a new segment
                // starts where the old one ended, without the marker bit.
                ev.ts = ev.ts.wrapping_add(ev.frames * FRAME_TS);
                ev.frames = 1;
                true
            } else {
                ev.frames += 1;
                ev.since_packet >= fpp
            }
        } else {
            ev.ends_sent == 0 || ev.since_packet >= fpp
        };
        if !due {
            return None;
        }
        let end = ev.start_sent && ev.stopping;
        let pkt = EventPacket {
            marker: !ev.start_sent,
            ts: ev.ts,
            payload: EventPayload { event: ev.event, end, volume: EVENT_VOLUME, duration: (ev.frames * FRAME_TS) as u16 },
        };
        ev.since_packet = 0;
        ev.start_sent = true;
        if end {
            ev.ends_sent += 1;
            if ev.ends_sent >= END_REPEATS {
                self.tx_event = None;
            }
        }
        Some(pkt)
    }

    /// Starts `event` now, or, if another event is being sent, ends that one
    /// (its three end packets) and starts `event` after it.
    fn start_event(&mut self, event: u8, kind: EventKind) {
        match self.tx_event.as_mut() {
            None => {
                // An event still pending (the previous one's last end went
                // out in the last frame) is superseded, as below.
                self.pending = None;
                self.begin_event(event, kind, self.clock, self.clock, false);
            }
            Some(ev) => {
                ev.stopping = true;
                self.pending = Some(Pending { event, kind, stopped: false, ts: self.clock });
            }
        }
    }

    /// The tone or digit of `kind` ended: send the end packets.
    fn stop_event(&mut self, kind: EventKind) {
        if let Some(p) = self.pending.as_mut().filter(|p| p.kind == kind) {
            p.stopped = true;
        } else if let Some(ev) = self.tx_event.as_mut().filter(|ev| ev.kind == kind) {
            ev.stopping = true;
        }
    }

    fn event_active(&self, kind: EventKind) -> bool {
        self.tx_event.is_some_and(|ev| ev.kind == kind) || self.pending.is_some_and(|p| p.kind == kind)
    }

    /// Starts sending a DTMF event for the ASCII `digit` (`0-9 * # A-D`).
    /// Packets come out of [`RtpSession::send_frame`]: the first at once with
    /// the marker bit, then one every ptime with the growing duration, and
    /// after [`RtpSession::stop_dtmf`] three end packets, all carrying the
    /// timestamp of the event's start. A digit started while another event
    /// (digit or tone) is still on ends that one and follows it; while a
    /// tone's end packets go out the audio still flows. Returns false (and
    /// does nothing) if telephone-event was not negotiated or `digit` is not
    /// DTMF.
    pub fn start_dtmf(&mut self, digit: u8) -> bool {
        let (Some(_), Some(event)) = (self.cfg.telephone_event, rfc4733::digit_to_event(digit)) else {
            return false;
        };
        self.start_event(event, EventKind::Dtmf);
        true
    }

    /// The digit's tone ended: send the end packets.
    pub fn stop_dtmf(&mut self) {
        self.stop_event(EventKind::Dtmf);
    }

    /// True while DTMF event packets (including end repeats) are still to be
    /// sent.
    pub fn dtmf_active(&self) -> bool {
        self.event_active(EventKind::Dtmf)
    }

    /// Starts sending the RFC 4734 modem/fax tone `event` (32..=36, see
    /// [`rfc4733::is_modem_tone`]) alongside the audio, which
    /// [`RtpSession::send_frame`] keeps sending unchanged. The event packets
    /// (start with the marker at once, an update every ptime, three end
    /// packets after [`RtpSession::stop_tone_event`], segments of at most
    /// 65520 units) come out of [`RtpSession::poll_event_packet`]. Starting
    /// the tone already being sent changes nothing; another tone or a DTMF
    /// digit on ends that one and the new tone follows it, with the
    /// timestamp of the frame in which it began. A DTMF digit started during
    /// a tone likewise ends the tone. Returns false (and does nothing) if
    /// telephone-event was not negotiated or `event` is not one of these.
    pub fn start_tone_event(&mut self, event: u8) -> bool {
        if self.cfg.telephone_event.is_none() || !rfc4733::is_modem_tone(event) {
            return false;
        }
        let current = self.pending.map(|p| (p.event, p.kind, p.stopped)).or(self.tx_event.map(|ev| (ev.event, ev.kind, ev.stopping)));
        if current != Some((event, EventKind::Tone, false)) {
            self.start_event(event, EventKind::Tone);
        }
        true
    }

    /// The tone ended: send the tone event's end packets.
    pub fn stop_tone_event(&mut self) {
        self.stop_event(EventKind::Tone);
    }

    /// True while tone event packets (including end repeats) are still to be
    /// produced.
    pub fn tone_event_active(&self) -> bool {
        self.event_active(EventKind::Tone)
    }

    // ----------------------------------------------------------- receiving

    /// Takes one received packet, using the pull count as arrival time.
    pub fn receive(&mut self, packet: &[u8]) -> Result<Received, MediaError> {
        self.receive_at(packet, self.rx_clock)
    }

    /// Takes one received packet that arrived at `arrival` (8 kHz units, any
    /// origin, wrapping). Audio goes into the jitter buffer; DTMF and tone
    /// events are reported once per event start and end.
    pub fn receive_at(&mut self, packet: &[u8], arrival: u32) -> Result<Received, MediaError> {
        let p = match Packet::new_checked(packet) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e.into());
            }
        };
        let h = p.header();
        let payload = p.payload();
        let is_audio = h.payload_type == self.cfg.payload_type;
        let is_event = self.cfg.telephone_event == Some(h.payload_type) && !is_audio;
        let is_cn = self.cfg.comfort_noise == Some(h.payload_type) && !is_audio && !is_event;
        if !(is_audio || is_event || is_cn) || payload.is_empty() {
            self.stats.ignored += 1;
            return Ok(Received::Ignored);
        }
        // Validate before touching any state.
        let event = if is_event {
            match EventPayload::parse(payload) {
                Ok(e) => Some(e),
                Err(_) => {
                    self.stats.malformed += 1;
                    return Err(MediaError::BadEvent);
                }
            }
        } else if is_cn {
            None
        } else {
            if payload.len() > FRAME_BYTES * MAX_PACKET_FRAMES {
                self.stats.malformed += 1;
                return Err(MediaError::TooLarge);
            }
            if payload.len() % FRAME_BYTES != 0 {
                self.stats.malformed += 1;
                return Err(MediaError::BadFrameLength);
            }
            None
        };
        match self.remote_ssrc {
            Some(s) if s == h.ssrc => {}
            // Never follow another SSRC on our own, however long the locked
            // one is quiet: an injected stream would take the call over (a
            // 200 ms gap was enough). A new SDP answer, a re-INVITE to another
            // media server, says so through `accept_new_source`.
            Some(_) => {
                self.stats.ignored += 1;
                self.stats.foreign_ssrc += 1;
                return Ok(Received::Ignored);
            }
            None if self.relock => {
                self.relock = false;
                self.stats.ssrc_changes += 1;
                self.remote_ssrc = Some(h.ssrc);
                self.seqs = SeqState { lost_before: self.seqs.lost(), ..SeqState::default() };
                self.jb.reset();
                self.last_transit = None;
                self.rx_event = None;
                self.audio_end_ts = None;
            }
            None => self.remote_ssrc = Some(h.ssrc),
        }
        self.idle_frames = 0;
        match self.seqs.update(h.sequence) {
            SeqResult::Duplicate => {
                self.stats.duplicates += 1;
                return Ok(Received::Duplicate);
            }
            SeqResult::Restart => {
                self.jb.reset();
                self.last_transit = None;
                self.audio_end_ts = None;
            }
            SeqResult::New => {}
        }
        self.stats.packets_received += 1;
        if is_cn {
            return Ok(self.receive_cn(h.timestamp, payload));
        }
        match event {
            Some(e) => Ok(self.receive_event(h.timestamp, e)),
            None => {
                self.update_jitter(h.timestamp, arrival);
                let end = h.timestamp.wrapping_add((payload.len() / FRAME_BYTES) as u32 * FRAME_TS);
                match self.audio_end_ts {
                    Some(e) if (end.wrapping_sub(e) as i32) <= 0 => {}
                    _ => self.audio_end_ts = Some(end),
                }
                if self.cn_ts.is_some_and(|cn| (h.timestamp.wrapping_sub(cn) as i32) >= 0) {
                    self.audio_after_cn = true;
                }
                Ok(match self.jb.insert(h.timestamp, h.marker, payload) {
                    Some(Insert::Late) => Received::Late,
                    Some(Insert::Duplicate) => Received::Duplicate,
                    _ => Received::Audio,
                })
            }
        }
    }

    /// RFC 3389: a SID frame starts (or updates) the silence from its
    /// timestamp on, unless audio already received is newer.
    fn receive_cn(&mut self, ts: u32, payload: &[u8]) -> Received {
        if self.audio_end_ts.is_some_and(|end| (ts.wrapping_sub(end) as i32) < 0) {
            return Received::Late;
        }
        let n = payload.len().min(CN_MAX_PAYLOAD);
        self.cn_payload[..n].copy_from_slice(&payload[..n]);
        self.cn_len = n;
        self.cn_ts = Some(ts);
        self.audio_after_cn = false;
        self.stats.cn_received += 1;
        Received::ComfortNoise
    }

    /// The payload of the last comfort noise packet received (at most
    /// [`CN_MAX_PAYLOAD`] bytes; empty before the first): byte 0 the level in
    /// -dBov, then the reflection coefficients (RFC 3389 section 3).
    pub fn comfort_noise_payload(&self) -> &[u8] {
        &self.cn_payload[..self.cn_len]
    }

    /// True from a comfort noise packet until audio sent after it is played
    /// by [`RtpSession::pull_frame`]: a frame missing meanwhile is signalled
    /// silence (play comfort noise), not loss (conceal).
    pub fn cn_active(&self) -> bool {
        self.cn_ts.is_some()
    }

    /// RFC 4733 section 2.5.2: one event per timestamp; report its start once
    /// and its end once however often they are repeated. The next segment of
    /// a long event (section 2.5.1.3: same event, timestamp one full segment
    /// later) continues it; the end then reports the whole duration,
    /// saturated at 65535.
    fn receive_event(&mut self, ts: u32, e: EventPayload) -> Received {
        let digit = rfc4733::event_to_digit(e.event);
        if digit.is_none() && !rfc4733::is_modem_tone(e.event) {
            self.stats.ignored += 1;
            return Received::Ignored;
        }
        match self.rx_event.as_mut() {
            Some(cur) if cur.ts == ts || cur.is_next_segment(ts, e.event) => {
                cur.ts = ts;
                if e.end && !cur.end_reported {
                    cur.end_reported = true;
                    let total = ts.wrapping_sub(cur.origin).saturating_add(e.duration.into()).min(u16::MAX.into()) as u16;
                    match digit {
                        Some(d) => Received::DtmfEnd(d, total),
                        None => Received::ToneEventEnd(e.event, total),
                    }
                } else {
                    Received::Duplicate
                }
            }
            Some(cur) if (ts.wrapping_sub(cur.ts) as i32) < 0 => Received::Duplicate,
            _ => {
                self.rx_event = Some(RxEvent { event: e.event, ts, origin: ts, end_reported: false });
                match digit {
                    Some(d) => Received::DtmfStart(d),
                    None => Received::ToneEventStart(e.event),
                }
            }
        }
    }

    /// RFC 3550 A.8, in 1/16 timestamp units.
    fn update_jitter(&mut self, ts: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(ts);
        if let Some(last) = self.last_transit {
            let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
            // A jump of more than a second is a timeline change, not jitter.
            if d < 8000 {
                self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
            }
        }
        self.last_transit = Some(transit);
    }

    // ---------------------------------------------------------------- RTCP

    /// Writes the RTCP compound to send now (RFC 3550 section 6.4): an SR if
    /// we sent RTP since the previous report, else an RR; one report block
    /// about the far end's stream once we have heard it; SDES with `cname`.
    /// `ntp_now` is the wall clock in NTP format. When to call it (section
    /// 6.2: about every 5 s, randomized) is the caller's business. Returns
    /// `None` if `out` is too small (nothing changes then).
    pub fn rtcp_report(&mut self, ntp_now: u64, cname: &[u8], out: &mut [u8]) -> Option<usize> {
        let need = 8 + SenderInfo::LEN + ReportBlock::LEN + (8 + 2 + cname.len().min(255) + 1).div_ceil(4) * 4;
        if out.len() < need {
            return None;
        }
        let sender = self.sent_since_report.then_some(SenderInfo {
            ntp: ntp_now,
            rtp_ts: self.clock,
            packets: self.stats.packets_sent as u32,
            octets: self.stats.octets_sent as u32,
        });
        let block = match (self.remote_ssrc, self.seqs.started) {
            (Some(ssrc), true) => {
                let (fraction_lost, cumulative_lost, highest_seq) = self.seqs.report();
                let (lsr, dlsr) = match self.last_sr {
                    Some((lsr, at)) => (lsr, rtcp::ntp_middle(ntp_now.wrapping_sub(at))),
                    None => (0, 0),
                };
                Some(ReportBlock { ssrc, fraction_lost, cumulative_lost, highest_seq, jitter: self.jitter_q4 >> 4, lsr, dlsr })
            }
            _ => None,
        };
        self.sent_since_report = false;
        let n = rtcp::emit_report(out, self.cfg.ssrc, sender, block, cname);
        (n > 0).then_some(n)
    }

    /// Takes a received RTCP compound that arrived at `ntp_now`: remembers
    /// the far end's SR for our LSR/DLSR, and its report about our stream
    /// (loss, jitter, round-trip time) for [`RtpSession::stats`].
    pub fn receive_rtcp(&mut self, packet: &[u8], ntp_now: u64) -> Result<RtcpSummary, MediaError> {
        // Validate the whole compound before using any of it.
        if Compound::new(packet).any(|p| p.is_err()) {
            self.stats.rtcp_malformed += 1;
            return Err(MediaError::Malformed);
        }
        let mut summary = RtcpSummary::default();
        for p in Compound::new(packet).flatten() {
            let from_remote = !matches!(self.remote_ssrc, Some(s) if s != p.ssrc());
            match p.packet_type() {
                rtcp::PT_BYE if from_remote => summary.bye = true,
                rtcp::PT_SR | rtcp::PT_RR => {
                    if let (Some(info), true) = (p.sender_info(), from_remote) {
                        self.last_sr = Some((rtcp::ntp_middle(info.ntp), ntp_now));
                    }
                    let ours = (0..p.count() as usize).filter_map(|i| p.report_block(i)).find(|b| b.ssrc == self.cfg.ssrc);
                    if let Some(b) = ours {
                        summary.report = Some(b);
                        self.stats.remote_fraction_lost = b.fraction_lost;
                        self.stats.remote_lost = b.cumulative_lost;
                        self.stats.remote_jitter = b.jitter;
                        if b.lsr != 0 {
                            // Section 6.4.1: RTT = A - LSR - DLSR, in 1/65536 s.
                            let rtt = rtcp::ntp_middle(ntp_now).wrapping_sub(b.lsr).wrapping_sub(b.dlsr);
                            if rtt < 0x8000_0000 {
                                self.stats.rtt_ms = Some(((u64::from(rtt) * 1000) >> 16) as u32);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(summary)
    }

    /// One 10 ms frame of encoded audio for the line; `false` means nothing
    /// (buffering, or a lost frame): the caller plays silence or conceals.
    /// Call exactly once per 10 ms tick: it is the receive clock.
    pub fn pull_frame(&mut self, out: &mut [u8; 80]) -> bool {
        self.rx_clock = self.rx_clock.wrapping_add(FRAME_TS);
        self.idle_frames = self.idle_frames.saturating_add(1);
        let playing = self.jb.is_playing();
        let got = self.jb.pull(out);
        if got && self.audio_after_cn {
            // Speech resumed.
            self.cn_ts = None;
            self.audio_after_cn = false;
        } else if !got && playing && self.cn_ts.is_some() {
            self.stats.cn_frames += 1;
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn cfg(ptime: u32) -> SessionConfig {
        SessionConfig {
            payload_type: 0,
            telephone_event: Some(101),
            comfort_noise: None,
            ptime_ms: ptime,
            ssrc: 0xabcd,
            initial_seq: 65534,
            initial_ts: 1000,
            jitter_depth_ms: 40,
        }
    }

    /// [`cfg`] with comfort noise negotiated (PT 13).
    fn cn_cfg(ptime: u32) -> SessionConfig {
        SessionConfig { comfort_noise: Some(13), ..cfg(ptime) }
    }

    /// Packet from the far end.
    fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = std::vec![0u8; 12 + payload.len()];
        RtpHeader { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc }.emit(&mut b);
        b[12..].copy_from_slice(payload);
        b
    }

    fn audio(seq: u16, ts: u32, tag: u8, frames: usize) -> Vec<u8> {
        rtp(0, seq, ts, false, 7, &std::vec![tag; 80 * frames])
    }

    fn event(seq: u16, ts: u32, digit: u8, end: bool, dur: u16) -> Vec<u8> {
        let e = EventPayload { event: rfc4733::digit_to_event(digit).unwrap(), end, volume: 10, duration: dur };
        rtp(101, seq, ts, false, 7, &e.to_bytes())
    }

    /// Drives `send_frame` `n` times; returns the packets produced.
    fn feed(s: &mut RtpSession, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in 0..n {
            let mut buf = [0u8; 600];
            if let Some(len) = s.send_frame(&[i as u8; 80], &mut buf) {
                out.push(buf[..len].to_vec());
            }
        }
        out
    }

    fn pull(s: &mut RtpSession) -> Option<u8> {
        let mut f = [0u8; 80];
        s.pull_frame(&mut f).then_some(f[0])
    }

    #[test]
    fn audio_packets_every_ptime_with_advancing_seq_and_ts() {
        let mut s = RtpSession::new(cfg(20));
        let pkts = feed(&mut s, 6);
        assert_eq!(pkts.len(), 3);
        for (i, b) in pkts.iter().enumerate() {
            let p = Packet::new_checked(&b[..]).unwrap();
            assert_eq!(p.payload_type(), 0);
            assert_eq!(p.marker(), i == 0);
            assert_eq!(p.sequence_number(), 65534u16.wrapping_add(i as u16), "wraps");
            assert_eq!(p.timestamp(), 1000 + 160 * i as u32);
            assert_eq!(p.ssrc(), 0xabcd);
            assert_eq!(p.payload().len(), 160);
            assert_eq!(p.payload()[0], 2 * i as u8);
            assert_eq!(p.payload()[80], 2 * i as u8 + 1);
        }
        assert_eq!(s.stats().packets_sent, 3);
        assert_eq!(s.stats().octets_sent, 480);
    }

    #[test]
    fn silence_is_sent_as_cn_then_nothing_and_speech_resumes_with_the_marker() {
        let mut s = RtpSession::new(cn_cfg(20));
        let mut pkts = feed(&mut s, 4); // two audio packets, ts 1000 and 1160
        let mut buf = [0u8; 600];
        // One frame of a third packet, then silence: that frame is dropped.
        assert_eq!(s.send_frame(&[9; 80], &mut buf), None);
        let n = s.send_cn(&[40, 100, 150], &mut buf).expect("SID sent");
        pkts.push(buf[..n].to_vec());
        for _ in 0..10 {
            assert_eq!(s.skip_frame(&mut buf), None, "nothing during silence");
        }
        pkts.extend(feed(&mut s, 2));
        let view: Vec<(u8, bool, u16, u32, usize)> = pkts
            .iter()
            .map(|b| {
                let p = Packet::new_checked(&b[..]).unwrap();
                (p.payload_type(), p.marker(), p.sequence_number(), p.timestamp(), p.payload().len())
            })
            .collect();
        assert_eq!(
            view,
            [
                (0, true, 65534, 1000, 160),
                (0, false, 65535, 1160, 160),
                // The SID has the timestamp of its frame (the sixth, 1000 + 5 * 80).
                (13, false, 0, 1400, 3),
                // 1 SID frame + 10 skipped: speech resumes 11 frames on, marked.
                (0, true, 1, 1400 + 11 * 80, 160),
            ]
        );
        assert_eq!(&pkts[2][12..], &[40, 100, 150]);
        let st = s.stats();
        assert_eq!((st.cn_sent, st.suppressed, st.packets_sent, st.send_errors), (1, 11, 4, 0));
        assert_eq!(st.octets_sent, 3 * 160 + 3);
    }

    #[test]
    fn cn_is_not_sent_unless_negotiated_and_dtmf_goes_on_during_silence() {
        let mut s = RtpSession::new(cfg(10));
        let mut buf = [0u8; 600];
        assert_eq!(s.send_cn(&[40], &mut buf), None);
        assert_eq!((s.stats().cn_sent, s.stats().suppressed, s.stats().packets_sent), (0, 1, 0));
        let p = feed(&mut s, 1);
        assert_eq!(Packet::new_checked(&p[0][..]).unwrap().timestamp(), 1080, "the timeline advanced");
        // Bad parameters are not sent.
        let mut s = RtpSession::new(cn_cfg(10));
        assert_eq!(s.send_cn(&[], &mut buf), None);
        assert_eq!(s.send_cn(&[0; CN_MAX_PAYLOAD + 1], &mut buf), None);
        assert_eq!(s.stats().packets_sent, 0);
        // A digit being sent is not silenced by the caller's silence.
        assert!(s.start_dtmf(b'1'));
        let n = s.skip_frame(&mut buf).expect("DTMF start packet");
        let p = Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!((p.payload_type(), p.marker()), (101, true));
        let n = s.send_cn(&[40], &mut buf).expect("DTMF update");
        assert_eq!(Packet::new_checked(&buf[..n]).unwrap().payload_type(), 101);
        assert_eq!(s.stats().cn_sent, 0);
    }

    #[test]
    fn received_cn_marks_the_gap_as_silence_until_new_speech_plays() {
        let mut s = RtpSession::new(SessionConfig { jitter_depth_ms: 20, ..cn_cfg(20) });
        assert_eq!(s.receive(&audio(10, 0, 1, 2)).unwrap(), Received::Audio);
        assert_eq!(s.receive(&audio(11, 160, 3, 2)).unwrap(), Received::Audio);
        assert!(!s.cn_active());
        assert_eq!(s.comfort_noise_payload(), &[] as &[u8]);
        // The far end goes silent: a SID at the end of its speech.
        assert_eq!(s.receive(&rtp(13, 12, 320, false, 7, &[45, 120, 130])).unwrap(), Received::ComfortNoise);
        assert!(s.cn_active());
        assert_eq!(s.comfort_noise_payload(), &[45, 120, 130]);
        // The buffered speech still plays, then the gaps are CN, not loss.
        let got: Vec<_> = (0..4).map(|_| pull(&mut s)).collect();
        assert_eq!(got, [Some(1), Some(1), Some(3), Some(3)]);
        for _ in 0..20 {
            assert_eq!(pull(&mut s), None);
            assert!(s.cn_active());
        }
        let st = s.stats();
        assert_eq!((st.cn_received, st.cn_frames, st.concealed, st.lost), (1, 20, 0, 0));
        // A SID update with the next sequence number keeps it going.
        assert_eq!(s.receive(&rtp(13, 13, 320 + 160 * 8, false, 7, &[50])).unwrap(), Received::ComfortNoise);
        assert_eq!(s.comfort_noise_payload(), &[50]);
        // Speech resumes (marker): still CN until that audio plays.
        let ts = 320 + 24 * 80;
        assert_eq!(s.receive(&rtp(0, 14, ts, true, 7, &[7; 160])).unwrap(), Received::Audio);
        assert!(s.cn_active());
        let mut played = None;
        for k in 0..6 {
            if let Some(v) = pull(&mut s) {
                played = Some((k, v));
                break;
            }
            assert!(s.cn_active(), "CN until the speech plays");
        }
        assert_eq!(played.map(|p| p.1), Some(7), "speech played");
        assert!(!s.cn_active());
        assert_eq!(s.stats().lost, 0);
        // A gap now is loss.
        assert_eq!(pull(&mut s), Some(7));
        assert_eq!(pull(&mut s), None);
        assert_eq!(s.stats().concealed, 1);
    }

    #[test]
    fn stale_or_unnegotiated_cn_is_not_taken() {
        let mut s = RtpSession::new(SessionConfig { jitter_depth_ms: 20, ..cn_cfg(20) });
        assert_eq!(s.receive(&audio(10, 800, 1, 2)).unwrap(), Received::Audio);
        // Reordered: a SID from before the speech already received.
        assert_eq!(s.receive(&rtp(13, 9, 640, false, 7, &[45])).unwrap(), Received::Late);
        assert!(!s.cn_active());
        assert_eq!(s.stats().cn_received, 0);
        // Without CN negotiated, PT 13 is ignored.
        let mut s = RtpSession::new(cfg(20));
        assert_eq!(s.receive(&rtp(13, 1, 0, false, 7, &[45])).unwrap(), Received::Ignored);
        assert!(!s.cn_active());
        // Long payloads are truncated to what is kept.
        let mut s = RtpSession::new(cn_cfg(20));
        let long: Vec<u8> = (0..40).collect();
        assert_eq!(s.receive(&rtp(13, 1, 0, false, 7, &long)).unwrap(), Received::ComfortNoise);
        assert_eq!(s.comfort_noise_payload(), &long[..CN_MAX_PAYLOAD]);
    }

    #[test]
    fn short_output_buffer_is_counted_not_panicked() {
        let mut s = RtpSession::new(cfg(10));
        let mut small = [0u8; 50];
        assert_eq!(s.send_frame(&[0; 80], &mut small), None);
        assert_eq!(s.stats().send_errors, 1);
        let p = feed(&mut s, 1);
        assert_eq!(Packet::new_checked(&p[0][..]).unwrap().timestamp(), 1080, "timeline advanced");
    }

    #[test]
    fn dtmf_send_sequence() {
        let mut s = RtpSession::new(cfg(20));
        feed(&mut s, 3); // one audio packet + half of the next
        assert!(s.start_dtmf(b'5'));
        let during = feed(&mut s, 6); // 60 ms of tone
        s.stop_dtmf();
        let after = feed(&mut s, 8);
        let all: Vec<_> = during.iter().chain(after.iter()).collect();
        let parsed: Vec<_> = all
            .iter()
            .map(|b| {
                let p = Packet::new_checked(&b[..]).unwrap();
                (p.header(), p.payload().to_vec())
            })
            .collect();
        let ev: Vec<_> = parsed.iter().filter(|(h, _)| h.payload_type == 101).collect();
        // start at once, then every 20 ms: frames 1, 3, 5; then 3 ends
        assert_eq!(ev.len(), 6);
        let event_ts = 1000 + 3 * 80;
        for (i, (h, pl)) in ev.iter().enumerate() {
            let e = EventPayload::parse(pl).unwrap();
            assert_eq!(h.timestamp, event_ts, "all packets of one event share its timestamp");
            assert_eq!(h.marker, i == 0);
            assert_eq!(e.event, 5);
            assert_eq!(e.end, i >= 3);
            let want = [80, 240, 400, 480, 480, 480][i];
            assert_eq!(e.duration, want, "packet {i}");
        }
        // sequence numbers are consecutive across audio and events
        let seqs: Vec<u16> = parsed.iter().map(|(h, _)| h.sequence).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1));
        }
        // audio resumes after the ends, on the advanced timeline
        let (h, _) = parsed.iter().find(|(h, _)| h.payload_type == 0).unwrap();
        // frames: 3 before, 6 tone, ends on after-frames 0, 2, 4; audio from frame 5
        assert_eq!(h.timestamp, 1000 + (3 + 6 + 5) * 80);
        assert_eq!(s.stats().events_sent, 6);
        assert!(!s.dtmf_active());
    }

    #[test]
    fn long_event_is_split_into_segments() {
        let mut s = RtpSession::new(cfg(20));
        s.start_dtmf(b'0');
        let pkts = feed(&mut s, 830);
        let ev: Vec<_> = pkts
            .iter()
            .map(|b| {
                let p = Packet::new_checked(&b[..]).unwrap();
                (p.marker(), p.timestamp(), EventPayload::parse(p.payload()).unwrap().duration)
            })
            .collect();
        let seg2 = ev.iter().position(|&(_, ts, _)| ts != 1000).unwrap();
        assert_eq!(ev[seg2 - 1], (false, 1000, 65520), "last update of the full segment");
        assert_eq!(ev[seg2], (false, 1000 + 65520, 80), "new segment: no marker, ts + duration");
        assert!(ev[seg2..].iter().all(|&(m, ts, d)| !m && ts == 1000 + 65520 && d <= 11 * 80));
        s.stop_dtmf();
        let ends = feed(&mut s, 6);
        let last = Packet::new_checked(&ends[0][..]).unwrap();
        assert_eq!(last.timestamp(), 1000 + 65520);
        assert_eq!(EventPayload::parse(last.payload()).unwrap(), EventPayload { event: 0, end: true, volume: 10, duration: 11 * 80 });
    }

    #[test]
    fn dtmf_needs_negotiated_event_and_valid_digit() {
        let mut s = RtpSession::new(SessionConfig { telephone_event: None, ..cfg(20) });
        assert!(!s.start_dtmf(b'1'));
        let mut s = RtpSession::new(cfg(20));
        assert!(!s.start_dtmf(b'x'));
        assert!(!s.dtmf_active());
    }

    #[test]
    fn second_digit_ends_the_first_and_follows() {
        let mut s = RtpSession::new(cfg(10));
        s.start_dtmf(b'1');
        feed(&mut s, 2);
        s.start_dtmf(b'2');
        let pkts = feed(&mut s, 4);
        let evs: Vec<_> = pkts
            .iter()
            .map(|b| {
                let p = Packet::new_checked(&b[..]).unwrap();
                (p.marker(), EventPayload::parse(p.payload()).unwrap())
            })
            .collect();
        assert!(evs[..3].iter().all(|(_, e)| e.event == 1 && e.end));
        assert!(evs[3].0, "marker on the new event");
        assert_eq!(evs[3].1.event, 2);
        assert!(!evs[3].1.end);
    }

    #[test]
    fn digit_started_before_a_pending_one_began_still_ends() {
        let mut s = RtpSession::new(cfg(10));
        s.start_dtmf(b'1');
        feed(&mut s, 1);
        s.start_dtmf(b'2'); // waits for the three ends of '1'
        feed(&mut s, 3);
        s.start_dtmf(b'3'); // '1' is done, '2' not yet begun
        s.stop_dtmf();
        let pkts = feed(&mut s, 6);
        let evs: Vec<_> = events_of(&pkts).into_iter().map(|(_, e)| e).collect();
        assert_eq!(evs.len(), 4);
        assert!(evs.iter().all(|e| e.event == 3), "'2' was superseded");
        assert_eq!(evs.iter().filter(|e| e.end).count(), 3);
        assert!(!s.dtmf_active());
    }

    #[test]
    fn receive_reorder_loss_and_duplicates() {
        let mut s = RtpSession::new(cfg(20));
        assert_eq!(s.receive(&audio(10, 0, 1, 2)), Ok(Received::Audio));
        assert_eq!(s.receive(&audio(12, 320, 5, 2)), Ok(Received::Audio));
        assert_eq!(s.receive(&audio(11, 160, 3, 2)), Ok(Received::Audio));
        assert_eq!(s.receive(&audio(11, 160, 3, 2)), Ok(Received::Duplicate));
        // 13 lost, 14 arrives
        assert_eq!(s.receive(&audio(14, 640, 9, 2)), Ok(Received::Audio));
        let got: Vec<_> = (0..10).map(|_| pull(&mut s)).collect();
        assert_eq!(got, [Some(1), Some(1), Some(3), Some(3), Some(5), Some(5), None, None, Some(9), Some(9)]);
        let st = s.stats();
        assert_eq!(st.packets_received, 4);
        assert_eq!(st.duplicates, 1);
        assert_eq!(st.lost, 1);
        assert_eq!(st.concealed, 2);
    }

    #[test]
    fn sequence_wrap_is_not_a_restart() {
        let mut s = RtpSession::new(cfg(10));
        let mut ts = 0;
        for seq in [65534u16, 65535, 0, 1] {
            assert_eq!(s.receive(&audio(seq, ts, seq as u8, 1)), Ok(Received::Audio));
            ts += 80;
        }
        assert_eq!(s.receive(&audio(65535, 80, 0, 1)), Ok(Received::Duplicate));
        let st = s.stats();
        assert_eq!((st.lost, st.resyncs, st.duplicates), (0, 0, 1));
    }

    #[test]
    fn late_audio_is_dropped_and_counted() {
        let mut s = RtpSession::new(SessionConfig { jitter_depth_ms: 20, ..cfg(10) });
        s.receive(&audio(1, 0, 1, 1)).unwrap();
        s.receive(&audio(3, 160, 3, 1)).unwrap();
        pull(&mut s);
        pull(&mut s);
        assert_eq!(s.receive(&audio(2, 80, 2, 1)), Ok(Received::Late));
        assert_eq!(s.stats().late, 1);
        assert_eq!(s.stats().lost, 0, "late is received, not lost");
    }

    #[test]
    fn event_receive_dedupes_retransmitted_ends() {
        let mut s = RtpSession::new(cfg(20));
        let ts = 4000;
        assert_eq!(s.receive(&event(1, ts, b'#', false, 160)), Ok(Received::DtmfStart(b'#')));
        assert_eq!(s.receive(&event(2, ts, b'#', false, 320)), Ok(Received::Duplicate));
        assert_eq!(s.receive(&event(3, ts, b'#', true, 800)), Ok(Received::DtmfEnd(b'#', 800)));
        assert_eq!(s.receive(&event(4, ts, b'#', true, 800)), Ok(Received::Duplicate));
        assert_eq!(s.receive(&event(5, ts, b'#', true, 800)), Ok(Received::Duplicate));
        assert_eq!(s.receive(&event(5, ts, b'#', true, 800)), Ok(Received::Duplicate));
        assert_eq!(s.stats().duplicates, 1, "only the same-seq packet is a duplicate packet");
        // the same digit again is a new event (new timestamp)
        assert_eq!(s.receive(&event(6, ts + 1600, b'#', false, 160)), Ok(Received::DtmfStart(b'#')));
        // a straggler from the old event changes nothing
        assert_eq!(s.receive(&event(1000 - 995, ts, b'#', true, 800)), Ok(Received::Duplicate));
    }

    #[test]
    fn event_whose_start_was_lost_is_still_reported() {
        let mut s = RtpSession::new(cfg(20));
        assert_eq!(s.receive(&event(7, 100, b'9', true, 640)), Ok(Received::DtmfStart(b'9')));
        assert_eq!(s.receive(&event(8, 100, b'9', true, 640)), Ok(Received::DtmfEnd(b'9', 640)));
    }

    #[test]
    fn events_and_audio_share_the_sequence_space() {
        let mut s = RtpSession::new(SessionConfig { jitter_depth_ms: 10, ..cfg(10) });
        s.receive(&audio(1, 0, 1, 1)).unwrap();
        s.receive(&event(2, 80, b'1', false, 80)).unwrap();
        s.receive(&event(3, 80, b'1', true, 160)).unwrap();
        s.receive(&audio(4, 240, 4, 1)).unwrap();
        assert_eq!(s.stats().lost, 0);
    }

    #[test]
    fn other_payload_types_and_ssrcs_are_ignored() {
        let mut s = RtpSession::new(cfg(20));
        assert_eq!(s.receive(&rtp(13, 1, 0, false, 7, &[40])), Ok(Received::Ignored), "comfort noise");
        assert_eq!(s.receive(&audio(1, 0, 1, 2)), Ok(Received::Audio));
        assert_eq!(s.receive(&rtp(0, 900, 0, false, 99, &[0; 160])), Ok(Received::Ignored));
        assert_eq!(s.receive(&rtp(0, 2, 160, false, 7, &[])), Ok(Received::Ignored));
        let flash = EventPayload { event: 16, end: false, volume: 10, duration: 80 };
        assert_eq!(s.receive(&rtp(101, 3, 0, false, 7, &flash.to_bytes())), Ok(Received::Ignored));
        assert_eq!(s.remote_ssrc(), Some(7));
    }

    #[test]
    fn another_ssrc_is_never_followed_on_its_own() {
        let mut s = RtpSession::new(SessionConfig { jitter_depth_ms: 20, ..cfg(20) });
        s.receive(&audio(1, 0, 1, 2)).unwrap();
        // The locked stream goes quiet for 10 s; an injected one speaks throughout.
        for i in 0..1000u32 {
            pull(&mut s);
            if i % 2 == 0 {
                assert_eq!(s.receive(&rtp(0, 5000 + i as u16, 777_777 + i * 80, false, 99, &[8; 160])), Ok(Received::Ignored));
            }
        }
        assert_eq!(s.remote_ssrc(), Some(7));
        assert_eq!(s.stats().ssrc_changes, 0);
        assert_eq!(s.stats().foreign_ssrc, 500);
        assert_eq!(s.idle_frames(), 1000);
        // The real stream comes back and is heard.
        assert_eq!(s.receive(&audio(2, 160, 3, 2)), Ok(Received::Audio));
        assert_eq!(s.idle_frames(), 0);
    }

    #[test]
    fn new_ssrc_taken_after_the_control_plane_says_so() {
        let mut s = RtpSession::new(SessionConfig { jitter_depth_ms: 20, ..cfg(20) });
        s.receive(&audio(1, 0, 1, 2)).unwrap();
        s.accept_new_source();
        assert_eq!(s.receive(&rtp(0, 5000, 777_777, false, 99, &[8; 160])), Ok(Received::Audio));
        assert_eq!(s.remote_ssrc(), Some(99));
        assert_eq!(pull(&mut s), Some(8));
        assert_eq!(s.stats().ssrc_changes, 1);
        // ... and locked again: the old one is now the stranger.
        assert_eq!(s.receive(&audio(2, 160, 3, 2)), Ok(Received::Ignored));
    }

    #[test]
    fn malformed_and_bad_payloads_change_nothing() {
        let mut s = RtpSession::new(cfg(20));
        assert_eq!(s.receive(&[0x80, 0, 0]), Err(MediaError::Malformed));
        assert_eq!(s.receive(&rtp(0, 1, 0, false, 7, &[0; 100])), Err(MediaError::BadFrameLength));
        assert_eq!(s.receive(&rtp(0, 1, 0, false, 7, &[0; 560])), Err(MediaError::TooLarge));
        assert_eq!(s.receive(&rtp(101, 1, 0, false, 7, &[1, 2])), Err(MediaError::BadEvent));
        assert_eq!(s.remote_ssrc(), None);
        assert_eq!(s.stats().packets_received, 0);
        assert_eq!(s.stats().malformed, 4);
    }

    #[test]
    fn jitter_follows_rfc3550_estimator() {
        let mut s = RtpSession::new(cfg(20));
        // packets every 160 units, arrivals alternately 0 and +80 late
        for i in 0..200u32 {
            let arrival = i * 160 + if i % 2 == 1 { 80 } else { 0 };
            s.receive_at(&audio(i as u16, i * 160, 0, 2), arrival).unwrap();
            while s.stats().packets_received > 0 && pull(&mut s).is_some() {}
        }
        // |D| is always 80, so J converges to 80
        let j = s.stats().jitter;
        assert!((75..=80).contains(&j), "jitter {j}");
    }

    #[test]
    fn send_and_receive_interoperate() {
        let mut a = RtpSession::new(cfg(30));
        let mut b = RtpSession::new(SessionConfig { jitter_depth_ms: 60, ..cfg(20) });
        let mut heard = Vec::new();
        for i in 0..30u8 {
            let mut buf = [0u8; 600];
            if let Some(n) = a.send_frame(&[i; 80], &mut buf) {
                assert_eq!(b.receive(&buf[..n]), Ok(Received::Audio));
            }
            if let Some(f) = pull(&mut b) {
                heard.push(f);
            }
        }
        let want: Vec<u8> = (0..heard.len() as u8).collect();
        assert_eq!(heard, want);
        assert!(heard.len() >= 20);
    }

    // ------------------------------------------------ RFC 4734 tone events

    fn tone(seq: u16, ts: u32, code: u8, end: bool, dur: u16) -> Vec<u8> {
        rtp(101, seq, ts, false, 7, &EventPayload { event: code, end, volume: 10, duration: dur }.to_bytes())
    }

    /// Drives `send_frame` `n` times, draining `poll_event_packet` after
    /// each, as the rt thread does; returns the packets in sending order.
    fn feed_all(s: &mut RtpSession, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in 0..n {
            let mut buf = [0u8; 600];
            if let Some(len) = s.send_frame(&[i as u8; 80], &mut buf) {
                out.push(buf[..len].to_vec());
            }
            while let Some(len) = s.poll_event_packet(&mut buf) {
                out.push(buf[..len].to_vec());
            }
        }
        out
    }

    fn parse(b: &[u8]) -> (RtpHeader, Vec<u8>) {
        let p = Packet::new_checked(b).unwrap();
        (p.header(), p.payload().to_vec())
    }

    fn events_of(pkts: &[Vec<u8>]) -> Vec<(RtpHeader, EventPayload)> {
        pkts.iter().map(|b| parse(b)).filter(|(h, _)| h.payload_type == 101).map(|(h, p)| (h, EventPayload::parse(&p).unwrap())).collect()
    }

    fn audio_of(pkts: &[Vec<u8>]) -> Vec<(RtpHeader, Vec<u8>)> {
        pkts.iter().map(|b| parse(b)).filter(|(h, _)| h.payload_type == 0).collect()
    }

    fn assert_consecutive(pkts: &[Vec<u8>]) {
        let seqs: Vec<u16> = pkts.iter().map(|b| parse(b).0.sequence).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "sequence numbers {seqs:?}");
        }
    }

    #[test]
    fn tone_event_goes_alongside_unchanged_audio() {
        let (before, on, after) = (3, 10, 10);
        let mut s = RtpSession::new(cfg(20));
        let mut reference = RtpSession::new(cfg(20));
        let mut pkts = feed_all(&mut s, before);
        assert!(s.start_tone_event(rfc4733::ANS));
        assert!(s.tone_event_active() && !s.dtmf_active());
        pkts.extend(feed_all(&mut s, on));
        s.stop_tone_event();
        pkts.extend(feed_all(&mut s, after));
        assert!(!s.tone_event_active());
        let plain: Vec<_> = [before, on, after].iter().flat_map(|&n| feed_all(&mut reference, n)).collect();

        // The audio is exactly what it is without the event, bar sequence numbers.
        let (got, want) = (audio_of(&pkts), audio_of(&plain));
        assert_eq!(got.len(), want.len());
        assert_eq!(got.len(), (before + on + after) / 2);
        for ((gh, gp), (wh, wp)) in got.iter().zip(&want) {
            assert_eq!((gh.timestamp, gh.marker, gh.ssrc, gp), (wh.timestamp, wh.marker, wh.ssrc, wp));
        }
        // One sequence space, no gaps, in sending order.
        assert_consecutive(&pkts);
        assert_eq!(parse(&pkts[0]).0.sequence, 65534);

        let ev = events_of(&pkts);
        let event_ts = 1000 + before as u32 * 80;
        // Start at once, an update every 20 ms while on, then three ends.
        let updates = on.div_ceil(2);
        assert_eq!(ev.len(), updates + 3);
        for (i, (h, e)) in ev.iter().enumerate() {
            assert_eq!(h.timestamp, event_ts, "all packets carry the event's start");
            assert_eq!(h.marker, i == 0, "marker on the start only");
            assert_eq!((h.ssrc, e.event, e.volume), (0xabcd, rfc4733::ANS, 10));
            let (end, duration) = if i < updates { (false, (2 * i as u16 + 1) * 80) } else { (true, on as u16 * 80) };
            assert_eq!((e.end, e.duration), (end, duration), "packet {i}");
        }
        // The start goes out in the frame the tone began (frame 3), right
        // after the audio packet that frame completed.
        let (h1, h2) = (parse(&pkts[1]).0, parse(&pkts[2]).0);
        assert_eq!((h1.payload_type, h1.timestamp), (0, 1000 + 2 * 80));
        assert_eq!((h2.payload_type, h2.marker), (101, true));
        assert_eq!(s.stats().events_sent, ev.len() as u64);
        assert_eq!(s.stats().packets_sent, (ev.len() + got.len()) as u64);
        assert_eq!(s.stats().octets_sent, (ev.len() * 4 + got.len() * 160) as u64);
    }

    #[test]
    fn tone_events_need_telephone_event_and_a_tone_code() {
        let mut s = RtpSession::new(SessionConfig { telephone_event: None, ..cfg(20) });
        assert!(!s.start_tone_event(rfc4733::CNG));
        assert!(!s.tone_event_active());
        assert!(feed_all(&mut s, 4).iter().all(|b| parse(b).0.payload_type == 0));
        let mut s = RtpSession::new(cfg(20));
        for code in (0..=255u8).filter(|&c| !(32..=36).contains(&c)) {
            assert!(!s.start_tone_event(code), "event {code}");
        }
        assert!(!s.tone_event_active());
        for code in 32..=36u8 {
            let mut s = RtpSession::new(cfg(20));
            assert!(s.start_tone_event(code));
            let ev = events_of(&feed_all(&mut s, 1));
            assert_eq!(ev.len(), 1);
            assert_eq!(ev[0].1.event, code);
        }
    }

    #[test]
    fn short_buffer_for_tone_packet_is_counted_and_the_event_goes_on() {
        let mut s = RtpSession::new(cfg(10));
        s.start_tone_event(rfc4733::CNG);
        let mut buf = [0u8; 600];
        assert!(s.send_frame(&[0; 80], &mut buf).is_some());
        assert_eq!(s.poll_event_packet(&mut [0u8; 15]), None);
        assert_eq!(s.poll_event_packet(&mut buf), None, "the packet was dropped");
        assert_eq!(s.stats().send_errors, 1);
        let ev = events_of(&feed_all(&mut s, 1));
        assert_eq!((ev[0].0.marker, ev[0].1.duration), (false, 160), "the next update, on the event's timeline");
    }

    #[test]
    fn dtmf_during_a_tone_ends_the_tone_and_follows_it() {
        let mut s = RtpSession::new(cfg(10));
        s.start_tone_event(rfc4733::CNG);
        let tone_on = feed_all(&mut s, 3);
        assert!(s.start_dtmf(b'1'));
        assert!(s.dtmf_active() && s.tone_event_active());
        let handover = feed_all(&mut s, 5);
        assert!(!s.tone_event_active());
        s.stop_dtmf();
        let rest = feed_all(&mut s, 5);
        let all: Vec<_> = [tone_on, handover.clone(), rest].concat();
        assert_consecutive(&all);

        // The tone's three ends go out alongside audio, then the digit
        // replaces the audio.
        let kinds: Vec<(u8, bool)> = handover
            .iter()
            .map(|b| {
                let (h, p) = parse(b);
                (if h.payload_type == 0 { 255 } else { EventPayload::parse(&p).unwrap().event }, h.marker)
            })
            .collect();
        let cng = rfc4733::CNG;
        assert_eq!(kinds, [(255, false), (cng, false), (255, false), (cng, false), (255, false), (cng, false), (1, true), (1, false)]);
        let ev = events_of(&all);
        let tone: Vec<_> = ev.iter().filter(|(_, e)| e.event == cng).collect();
        assert!(tone.iter().rev().take(3).all(|(h, e)| e.end && e.duration == 3 * 80 && h.timestamp == 1000));
        let digit: Vec<_> = ev.iter().filter(|(_, e)| e.event == 1).collect();
        assert_eq!(digit.len(), 2 + 3, "start, one update, three ends");
        assert_eq!(digit[0].0.timestamp, 1000 + 6 * 80, "the digit starts where the audio stops");
        // No audio while the digit is on; it resumes after its ends.
        let first_digit = all.iter().position(|b| parse(b).0.timestamp == digit[0].0.timestamp).unwrap();
        let last_digit = all.iter().rposition(|b| parse(b).0.timestamp == digit[0].0.timestamp).unwrap();
        assert!(all[first_digit..=last_digit].iter().all(|b| parse(b).0.payload_type == 101));
        assert!(last_digit < all.len() - 1 && parse(&all[last_digit + 1]).0.payload_type == 0);
        assert!(!s.dtmf_active());
    }

    #[test]
    fn tone_change_ends_the_old_tone_and_the_new_keeps_its_start_time() {
        let mut s = RtpSession::new(cfg(20));
        s.start_tone_event(rfc4733::ANS);
        let mut pkts = feed_all(&mut s, 4);
        assert!(s.start_tone_event(rfc4733::ANS), "the same tone again");
        pkts.extend(feed_all(&mut s, 2));
        assert!(events_of(&pkts).iter().all(|(_, e)| !e.end), "repeating the start changed nothing");
        let reversal_ts = 1000 + 6 * 80;
        assert!(s.start_tone_event(rfc4733::ANS_REVERSED));
        pkts.extend(feed_all(&mut s, 10));
        assert_consecutive(&pkts);
        assert_eq!(audio_of(&pkts).len(), 8, "audio went on throughout");
        let ev = events_of(&pkts);
        let ends: Vec<_> = ev.iter().filter(|(_, e)| e.end).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|(h, e)| e.event == rfc4733::ANS && h.timestamp == 1000 && e.duration == 6 * 80));
        let rev: Vec<_> = ev.iter().filter(|(_, e)| e.event == rfc4733::ANS_REVERSED).collect();
        let (h, e) = rev[0];
        assert!(h.marker);
        assert_eq!(h.timestamp, reversal_ts, "the time the reversal was detected, not the time it could be sent");
        // Ends went out on frames 0, 2 and 4 after the change: the new event
        // starts on frame 5 and its first packet covers frames 0..=5.
        assert_eq!(e.duration, 6 * 80);
        assert!(rev[1..].iter().all(|(h, e)| !h.marker && h.timestamp == reversal_ts && e.duration > 6 * 80));
    }

    #[test]
    fn long_tone_is_split_into_segments_while_audio_flows() {
        let mut s = RtpSession::new(cfg(20));
        s.start_tone_event(rfc4733::ANSAM);
        let pkts = feed_all(&mut s, 830);
        assert_eq!(audio_of(&pkts).len(), 415);
        assert_consecutive(&pkts);
        let ev: Vec<_> = events_of(&pkts).iter().map(|(h, e)| (h.marker, h.timestamp, e.duration)).collect();
        let seg2 = ev.iter().position(|&(_, ts, _)| ts != 1000).unwrap();
        assert_eq!(ev[seg2 - 1], (false, 1000, 65520), "last update of the full segment");
        assert_eq!(ev[seg2], (false, 1000 + 65520, 80), "new segment: no marker, ts + duration");
        s.stop_tone_event();
        let ends = events_of(&feed_all(&mut s, 6));
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|(h, e)| e.end && h.timestamp == 1000 + 65520 && e.duration == 11 * 80));
    }

    #[test]
    fn tone_event_receive_dedupes_and_audio_keeps_flowing() {
        let mut s = RtpSession::new(SessionConfig { jitter_depth_ms: 20, ..cfg(10) });
        let ans = rfc4733::ANS;
        let ts = 80;
        let script: [(Vec<u8>, Received); 10] = [
            (audio(1, 0, 1, 1), Received::Audio),
            (audio(2, 80, 2, 1), Received::Audio),
            (tone(3, ts, ans, false, 80), Received::ToneEventStart(ans)),
            (tone(3, ts, ans, false, 80), Received::Duplicate),
            (audio(4, 160, 3, 1), Received::Audio),
            (tone(5, ts, ans, false, 160), Received::Duplicate),
            (tone(6, ts, ans, true, 240), Received::ToneEventEnd(ans, 240)),
            (audio(7, 240, 4, 1), Received::Audio),
            (tone(8, ts, ans, true, 240), Received::Duplicate),
            (tone(9, ts, ans, true, 240), Received::Duplicate),
        ];
        for (i, (pkt, want)) in script.iter().enumerate() {
            assert_eq!(s.receive(pkt), Ok(*want), "step {i}");
        }
        let heard: Vec<_> = (0..4).map(|_| pull(&mut s)).collect();
        assert_eq!(heard, [Some(1), Some(2), Some(3), Some(4)], "audio interleaved with events plays on");
        let st = s.stats();
        assert_eq!((st.lost, st.duplicates, st.packets_received), (0, 1, 9));
        // The same tone later is a new event; an unknown event is ignored.
        assert_eq!(s.receive(&tone(10, 8000, ans, false, 80)), Ok(Received::ToneEventStart(ans)));
        assert_eq!(s.receive(&tone(11, 9000, 37, false, 80)), Ok(Received::Ignored));
    }

    #[test]
    fn tone_event_whose_start_was_lost_is_reported_once() {
        let mut s = RtpSession::new(cfg(20));
        let cng = rfc4733::CNG;
        assert_eq!(s.receive(&tone(20, 500, cng, true, 4000)), Ok(Received::ToneEventStart(cng)));
        assert_eq!(s.receive(&tone(21, 500, cng, true, 4000)), Ok(Received::ToneEventEnd(cng, 4000)));
        assert_eq!(s.receive(&tone(22, 500, cng, true, 4000)), Ok(Received::Duplicate));
        assert_eq!(s.receive(&tone(19, 500, cng, false, 3840)), Ok(Received::Duplicate), "a late update");
    }

    #[test]
    fn long_events_are_reported_once_across_segments() {
        // At 30 ms the last update of a full segment is not on a packet
        // boundary: the next segment is recognised by its timestamp alone.
        for (ptime, start) in [(20, true), (30, true), (30, false)] {
            let mut a = RtpSession::new(cfg(ptime));
            let mut b = RtpSession::new(SessionConfig { jitter_depth_ms: 60, ..cfg(20) });
            let frames = 1700; // 17 s: three segments
            if start {
                a.start_tone_event(rfc4733::ANS);
            } else {
                a.start_dtmf(b'4');
            }
            let mut pkts = feed_all(&mut a, frames);
            a.stop_tone_event();
            a.stop_dtmf();
            pkts.extend(feed_all(&mut a, 10));
            let segments: std::collections::BTreeSet<u32> = events_of(&pkts).iter().map(|(h, _)| h.timestamp).collect();
            assert_eq!(segments.len(), 3);
            let news: Vec<_> =
                pkts.iter().map(|p| b.receive(p).unwrap()).filter(|r| !matches!(r, Received::Audio | Received::Duplicate)).collect();
            let want = if start {
                [Received::ToneEventStart(rfc4733::ANS), Received::ToneEventEnd(rfc4733::ANS, u16::MAX)]
            } else {
                [Received::DtmfStart(b'4'), Received::DtmfEnd(b'4', u16::MAX)]
            };
            assert_eq!(news, want, "ptime {ptime}");
        }
        // Ends report the whole duration when it fits.
        let mut b = RtpSession::new(cfg(20));
        assert_eq!(b.receive(&tone(1, 0, rfc4733::CNG, false, 65520)), Ok(Received::ToneEventStart(rfc4733::CNG)));
        assert_eq!(b.receive(&tone(2, 65520, rfc4733::CNG, true, 8)), Ok(Received::ToneEventEnd(rfc4733::CNG, 65528)));
        // Another event one segment later is a new event.
        assert_eq!(b.receive(&tone(3, 2 * 65520, rfc4733::ANS, false, 80)), Ok(Received::ToneEventStart(rfc4733::ANS)));
    }

    #[test]
    fn tone_event_between_two_sessions() {
        let mut a = RtpSession::new(cfg(20));
        let mut b = RtpSession::new(SessionConfig { jitter_depth_ms: 60, ..cfg(20) });
        let mut heard = Vec::new();
        let mut reports = Vec::new();
        for i in 0..60u8 {
            match i {
                10 => assert!(a.start_tone_event(rfc4733::ANSAM_REVERSED)),
                35 => a.stop_tone_event(),
                _ => {}
            }
            let mut buf = [0u8; 600];
            let audio = a.send_frame(&[i; 80], &mut buf).map(|n| buf[..n].to_vec());
            if let Some(p) = audio {
                assert_eq!(b.receive(&p), Ok(Received::Audio));
            }
            while let Some(n) = a.poll_event_packet(&mut buf) {
                // Lose the start packet: the first update must still report it.
                if i != 10 {
                    reports.push(b.receive(&buf[..n]).unwrap());
                }
            }
            if let Some(f) = pull(&mut b) {
                heard.push(f);
            }
        }
        let code = rfc4733::ANSAM_REVERSED;
        let news: Vec<_> = reports.iter().filter(|r| **r != Received::Duplicate).collect();
        assert_eq!(news, [&Received::ToneEventStart(code), &Received::ToneEventEnd(code, 25 * 80)]);
        assert!(heard.len() >= 50);
        let want: Vec<u8> = (0..heard.len() as u8).collect();
        assert_eq!(heard, want, "every audio frame, through the tone");
        assert_eq!(b.stats().lost, 1, "only the dropped start");
    }

    const NTP_T0: u64 = 3_900_000_000 << 32;

    fn ntp_ms(ms: u64) -> u64 {
        NTP_T0 + (ms << 32) / 1000
    }

    #[test]
    fn rtcp_reports_between_two_sessions() {
        let mut a = RtpSession::new(cfg(20));
        let mut b = RtpSession::new(SessionConfig { ssrc: 0x5555, ..cfg(20) });
        // a sends 10 packets to b; b loses the 4th and 5th.
        for (i, p) in feed(&mut a, 20).into_iter().enumerate() {
            if i != 3 && i != 4 {
                b.receive(&p).unwrap();
            }
        }
        let mut buf = [0u8; 256];
        // a's SR reaches b at t=0
        let n = a.rtcp_report(ntp_ms(0), b"a@gw", &mut buf).unwrap();
        let p = Compound::new(&buf[..n]).next().unwrap().unwrap();
        assert_eq!(p.packet_type(), rtcp::PT_SR);
        assert_eq!(p.sender_info().unwrap().packets, 10);
        assert_eq!(p.sender_info().unwrap().octets, 1600);
        assert_eq!(p.count(), 0, "a heard nothing yet");
        assert_eq!(b.receive_rtcp(&buf[..n], ntp_ms(0)), Ok(RtcpSummary::default()));
        // b answers 250 ms later with an RR about a's stream; it reaches a at t=300
        let n = b.rtcp_report(ntp_ms(250), b"b@far", &mut buf).unwrap();
        let p = Compound::new(&buf[..n]).next().unwrap().unwrap();
        assert_eq!(p.packet_type(), rtcp::PT_RR, "b sent no RTP");
        let s = a.receive_rtcp(&buf[..n], ntp_ms(300)).unwrap();
        let block = s.report.unwrap();
        assert_eq!(block.ssrc, 0xabcd);
        assert_eq!(block.cumulative_lost, 2);
        assert_eq!(block.fraction_lost, (2 * 256 / 10) as u8);
        assert_eq!(block.highest_seq, 65534 + 9, "extended across the wrap");
        let st = a.stats();
        assert_eq!(st.remote_lost, 2);
        let rtt = st.rtt_ms.unwrap();
        assert!((49..=51).contains(&rtt), "rtt {rtt}");
        // the next RR covers a loss-free interval
        let n = b.rtcp_report(ntp_ms(5250), b"b@far", &mut buf).unwrap();
        assert_eq!(a.receive_rtcp(&buf[..n], ntp_ms(5300)).unwrap().report.unwrap().fraction_lost, 0);
    }

    #[test]
    fn rtcp_bye_and_malformed() {
        let mut s = RtpSession::new(cfg(20));
        s.receive(&audio(1, 0, 0, 2)).unwrap();
        let mut buf = [0u8; 32];
        let n = rtcp::emit_bye(&mut buf, 7);
        assert!(s.receive_rtcp(&buf[..n], NTP_T0).unwrap().bye);
        let n = rtcp::emit_bye(&mut buf, 8);
        assert!(!s.receive_rtcp(&buf[..n], NTP_T0).unwrap().bye, "BYE from another source");
        assert_eq!(s.receive_rtcp(&buf[..n - 1], NTP_T0), Err(MediaError::Malformed));
        assert_eq!(s.stats().rtcp_malformed, 1);
        assert_eq!(s.rtcp_report(NTP_T0, b"x", &mut [0u8; 40]), None, "too small");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_rtcp_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut s = RtpSession::new(cfg(20));
            let _ = s.receive_rtcp(&bytes, NTP_T0);
        }

        #[test]
        fn arbitrary_packets_never_panic(pkts in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), 0..40)) {
            let mut s = RtpSession::new(cfg(20));
            for p in &pkts {
                let _ = s.receive(p);
                let mut f = [0u8; 80];
                s.pull_frame(&mut f);
            }
        }

        #[test]
        fn any_mix_of_tones_and_digits_keeps_one_sequence_space(ops in proptest::collection::vec(0u8..12, 1..300), ptime in 1u32..=6) {
            let mut s = RtpSession::new(cfg(ptime * 10));
            let mut pkts = Vec::new();
            for &op in &ops {
                match op {
                    0..=4 => proptest::prop_assert!(s.start_tone_event(rfc4733::ANS + op)),
                    5 => s.stop_tone_event(),
                    6 => proptest::prop_assert!(s.start_dtmf(b'7')),
                    7 => s.stop_dtmf(),
                    _ => {}
                }
                pkts.extend(feed_all(&mut s, 1));
            }
            s.stop_tone_event();
            s.stop_dtmf();
            pkts.extend(feed_all(&mut s, 40));
            proptest::prop_assert!(!s.tone_event_active() && !s.dtmf_active());
            let seqs: Vec<u16> = pkts.iter().map(|b| parse(b).0.sequence).collect();
            proptest::prop_assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
            // Every event that started ended with three end packets.
            let ev = events_of(&pkts);
            let starts = ev.iter().filter(|(h, _)| h.marker).count();
            let ends = ev.iter().filter(|(_, e)| e.end).count();
            proptest::prop_assert_eq!(ends, 3 * starts);
            // The receiver sees each event start and end once.
            let mut r = RtpSession::new(cfg(20));
            let news = pkts.iter().filter_map(|p| match r.receive(p) {
                Ok(Received::DtmfStart(_) | Received::ToneEventStart(_)) => Some(1),
                Ok(Received::DtmfEnd(..) | Received::ToneEventEnd(..)) => Some(2),
                _ => None,
            });
            let (rs, re) = news.fold((0, 0), |(a, b), k| if k == 1 { (a + 1, b) } else { (a, b + 1) });
            proptest::prop_assert_eq!((rs, re), (starts, starts));
        }

        #[test]
        fn shuffled_stream_plays_in_order(perm in proptest::sample::subsequence((0u16..40).collect::<Vec<_>>(), 30..=40), seed in 0u64..1000) {
            // Deliver a subset of 40 packets, locally shuffled within a window of 3.
            let mut order = perm.clone();
            let mut r = seed;
            for i in 0..order.len() {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = (i + (r >> 33) as usize % 3).min(order.len() - 1);
                order.swap(i, j);
            }
            let mut s = RtpSession::new(SessionConfig { jitter_depth_ms: 60, ..cfg(10) });
            for &seq in &order {
                s.receive(&audio(seq.wrapping_add(65500), seq as u32 * 80, seq as u8, 1)).unwrap();
            }
            let mut heard = Vec::new();
            for _ in 0..45 {
                if let Some(f) = pull(&mut s) { heard.push(f); }
            }
            // everything delivered is played once, in order (nothing is late: no pulls while receiving)
            let mut want: Vec<u8> = perm.iter().map(|&x| x as u8).collect();
            want.sort();
            // frames may have been dropped for level control; what is heard is in order
            proptest::prop_assert!(heard.windows(2).all(|w| w[0] < w[1]));
            proptest::prop_assert!(heard.iter().all(|h| want.contains(h)));
        }
    }
}
