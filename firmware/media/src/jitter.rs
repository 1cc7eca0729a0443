//! Fixed-depth jitter buffer for 10 ms G.711 frames.
//!
//! Frames are placed by RTP timestamp (RFC 3550 section 5.1: the timestamp
//! says where in time the samples belong), so reordering is undone, packets of
//! 10..60 ms are split into 10 ms frames, and the sequence numbers that
//! telephone-event packets consume (RFC 4733) leave no phantom holes. The
//! session in front of this buffer deals with sequence numbers (duplicates,
//! loss statistics, wrap-around).
//!
//! Playout starts once `depth` frames are buffered ahead of the playout point;
//! from then on every [`JitterBuffer::pull`] advances the playout point by one
//! frame (80 timestamp units), whether or not that frame arrived. The buffer
//! re-anchors (resyncs) on a timestamp jump, on a marker bit when it has run
//! empty (a new talkspurt gets the full depth again), on a misaligned
//! timestamp, and after [`LATE_RESYNC`] late packets in a row (the far end's
//! clock drifted behind ours). When the level climbs more than one maximum
//! packet over the target (clock drift the other way, or a burst after a
//! network stall) one frame is dropped per pull until it is back.
//!
//! Storage is a fixed ring of [`CAPACITY_FRAMES`] frames; nothing allocates.

/// Bytes in one 10 ms G.711 frame.
pub const FRAME_BYTES: usize = 80;
/// RTP timestamp units (8 kHz clock) in one 10 ms frame.
pub const FRAME_TS: u32 = 80;
/// Ring size: 640 ms.
pub const CAPACITY_FRAMES: usize = 64;
/// Largest packet we accept: 60 ms.
pub const MAX_PACKET_FRAMES: usize = 6;
/// Late packets in a row after which the buffer re-anchors.
pub const LATE_RESYNC: u8 = 3;
/// A packet further behind the playout point than this (3 s) is a new
/// timeline, not a late packet.
const MAX_BEHIND_FRAMES: i32 = 300;

/// What happened to an inserted packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// At least one frame was stored.
    Stored,
    /// The buffer re-anchored on this packet, which was stored.
    Resync,
    /// Every frame of the packet was already buffered.
    Duplicate,
    /// The packet's playout time has passed; it was dropped.
    Late,
}

/// Counters kept by the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets dropped because their playout time had passed.
    pub late: u64,
    /// Re-anchors (timestamp jumps, talkspurts, drift).
    pub resyncs: u64,
    /// Pulls while playing that found no frame (the caller concealed).
    pub concealed: u64,
    /// Frames thrown away to bring the level back to the target.
    pub dropped: u64,
}

/// The buffer itself; see the module docs.
#[derive(Clone, Debug)]
pub struct JitterBuffer {
    slots: [[u8; FRAME_BYTES]; CAPACITY_FRAMES],
    /// Bit `i` set: slot `i` holds a frame. Slots outside the window
    /// `head .. head + level` are always clear.
    filled: u64,
    /// Slot index of the frame at `play_ts`.
    head: usize,
    /// Timestamp of the next frame to play.
    play_ts: u32,
    /// Frames from `play_ts` to the end of the newest frame stored.
    level: usize,
    depth: usize,
    anchored: bool,
    playing: bool,
    late_run: u8,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer that starts playing once `depth_ms` (rounded down to 10 ms,
    /// clamped to 10..=520 ms) is buffered.
    pub const fn new(depth_ms: u32) -> Self {
        let mut depth = (depth_ms / 10) as usize;
        if depth < 1 {
            depth = 1;
        }
        let max = CAPACITY_FRAMES - 2 * MAX_PACKET_FRAMES;
        if depth > max {
            depth = max;
        }
        Self {
            slots: [[0; FRAME_BYTES]; CAPACITY_FRAMES],
            filled: 0,
            head: 0,
            play_ts: 0,
            level: 0,
            depth,
            anchored: false,
            playing: false,
            late_run: 0,
            stats: JitterStats { late: 0, resyncs: 0, concealed: 0, dropped: 0 },
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Target depth in frames.
    pub fn depth_frames(&self) -> usize {
        self.depth
    }

    /// Frames between the playout point and the newest frame (holes included).
    pub fn level_frames(&self) -> usize {
        self.level
    }

    /// True once playout has started.
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Forgets everything; the next packet anchors a new timeline.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.level = 0;
        self.anchored = false;
        self.playing = false;
        self.late_run = 0;
    }

    fn anchor(&mut self, ts: u32) {
        if self.anchored {
            self.stats.resyncs += 1;
        }
        self.filled = 0;
        self.head = 0;
        self.play_ts = ts;
        self.level = 0;
        self.anchored = true;
        self.playing = false;
        self.late_run = 0;
    }

    fn is_filled(&self, slot: usize) -> bool {
        self.filled & (1 << slot) != 0
    }

    /// Stores the frames of one audio packet whose first sample has RTP
    /// timestamp `ts`. `payload` must be 1..=6 whole frames; anything else is
    /// refused with `None` and changes nothing.
    #[allow(clippy::manual_is_multiple_of)] // rust-version 1.80
    pub fn insert(&mut self, ts: u32, marker: bool, payload: &[u8]) -> Option<Insert> {
        let n = payload.len() / FRAME_BYTES;
        if n == 0 || n > MAX_PACKET_FRAMES || payload.len() % FRAME_BYTES != 0 {
            return None;
        }
        let mut resynced = false;
        if !self.anchored || (marker && self.playing && self.level == 0) {
            resynced = self.anchored;
            self.anchor(ts);
        }
        let delta = ts.wrapping_sub(self.play_ts) as i32;
        let mut off = delta.div_euclid(FRAME_TS as i32);
        let misaligned = delta.rem_euclid(FRAME_TS as i32) != 0;
        if misaligned || off > (CAPACITY_FRAMES - n) as i32 || off < -MAX_BEHIND_FRAMES {
            self.anchor(ts);
            resynced = true;
            off = 0;
        }
        if off < 0 && !self.playing {
            // Reordered ahead of the packet we anchored on: playout has not
            // started, so move the playout point back if the ring has room.
            let back = (-off) as usize;
            if self.level + back <= CAPACITY_FRAMES {
                self.head = (self.head + CAPACITY_FRAMES - back) % CAPACITY_FRAMES;
                self.play_ts = self.play_ts.wrapping_sub(back as u32 * FRAME_TS);
                self.level += back;
                off = 0;
            }
        }
        if off + n as i32 <= 0 {
            self.late_run += 1;
            if self.late_run < LATE_RESYNC {
                self.stats.late += 1;
                return Some(Insert::Late);
            }
            self.anchor(ts);
            resynced = true;
            off = 0;
        }
        self.late_run = 0;
        let mut stored = 0;
        for (i, frame) in payload.chunks_exact(FRAME_BYTES).enumerate() {
            let o = off + i as i32;
            if o < 0 {
                continue; // this part of a long packet has already been played
            }
            let slot = (self.head + o as usize) % CAPACITY_FRAMES;
            if !self.is_filled(slot) {
                self.slots[slot].copy_from_slice(frame);
                self.filled |= 1 << slot;
                stored += 1;
            }
        }
        self.level = self.level.max((off + n as i32) as usize);
        if !self.playing && self.level >= self.depth {
            self.playing = true;
        }
        Some(match (stored, resynced) {
            (_, true) => Insert::Resync,
            (0, false) => Insert::Duplicate,
            _ => Insert::Stored,
        })
    }

    fn advance(&mut self) {
        self.filled &= !(1 << self.head);
        self.head = (self.head + 1) % CAPACITY_FRAMES;
        self.play_ts = self.play_ts.wrapping_add(FRAME_TS);
        self.level = self.level.saturating_sub(1);
    }

    /// The next 10 ms frame, or `false` for a gap (or while buffering).
    pub fn pull(&mut self, out: &mut [u8; FRAME_BYTES]) -> bool {
        if !self.playing {
            return false;
        }
        if self.level > self.depth + MAX_PACKET_FRAMES {
            self.advance();
            self.stats.dropped += 1;
        }
        let got = self.is_filled(self.head);
        if got {
            out.copy_from_slice(&self.slots[self.head]);
        } else {
            self.stats.concealed += 1;
        }
        self.advance();
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(tag: u8, frames: usize) -> std::vec::Vec<u8> {
        let mut v = std::vec::Vec::new();
        for i in 0..frames {
            v.extend_from_slice(&[tag.wrapping_add(i as u8); FRAME_BYTES]);
        }
        v
    }

    fn pull(jb: &mut JitterBuffer) -> Option<u8> {
        let mut f = [0u8; FRAME_BYTES];
        jb.pull(&mut f).then_some(f[0])
    }

    #[test]
    fn buffers_to_depth_then_plays_in_timestamp_order() {
        let mut jb = JitterBuffer::new(40);
        // 20 ms packets arrive 2,1,3 (ts 160, 0, 320)
        assert_eq!(jb.insert(1000 + 160, false, &pkt(3, 2)), Some(Insert::Stored));
        assert_eq!(pull(&mut jb), None, "still buffering");
        assert_eq!(jb.insert(1000, true, &pkt(1, 2)), Some(Insert::Stored), "moves playout point back");
        assert!(jb.is_playing());
        assert_eq!(jb.insert(1000 + 320, false, &pkt(5, 2)), Some(Insert::Stored));
        let got: std::vec::Vec<_> = (0..7).map(|_| pull(&mut jb)).collect();
        assert_eq!(got, [Some(1), Some(2), Some(3), Some(4), Some(5), Some(6), None]);
        assert_eq!(jb.stats().concealed, 1);
    }

    #[test]
    fn loss_leaves_a_gap_and_late_packet_is_dropped() {
        let mut jb = JitterBuffer::new(20);
        jb.insert(0, false, &pkt(10, 1));
        jb.insert(160, false, &pkt(30, 1)); // ts 80 missing
        assert_eq!(pull(&mut jb), Some(10));
        assert_eq!(pull(&mut jb), None, "gap");
        assert_eq!(jb.insert(80, false, &pkt(20, 1)), Some(Insert::Late));
        assert_eq!(pull(&mut jb), Some(30));
        assert_eq!(jb.stats().late, 1);
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn duplicate_frames_are_not_stored_twice() {
        let mut jb = JitterBuffer::new(30);
        assert_eq!(jb.insert(0, false, &pkt(1, 2)), Some(Insert::Stored));
        assert_eq!(jb.insert(0, false, &pkt(9, 2)), Some(Insert::Duplicate));
        assert_eq!(jb.insert(160, false, &pkt(3, 1)), Some(Insert::Stored));
        assert_eq!([pull(&mut jb), pull(&mut jb), pull(&mut jb)], [Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn sixty_ms_packets_are_split_and_partly_late_packets_keep_their_tail() {
        let mut jb = JitterBuffer::new(60);
        jb.insert(0, false, &pkt(0, 6));
        for i in 0..6 {
            assert_eq!(pull(&mut jb), Some(i));
        }
        // playout point is ts 480; a packet covering 400..880 is half late
        assert_eq!(jb.insert(400, false, &pkt(100, 6)), Some(Insert::Stored));
        assert_eq!(pull(&mut jb), Some(101));
    }

    #[test]
    fn timestamp_wrap_around_is_continuous() {
        let mut jb = JitterBuffer::new(20);
        let start = u32::MAX - 79; // second frame starts at ts 0
        jb.insert(start, false, &pkt(1, 1));
        jb.insert(0, false, &pkt(2, 1));
        jb.insert(80, false, &pkt(3, 1));
        assert_eq!([pull(&mut jb), pull(&mut jb), pull(&mut jb)], [Some(1), Some(2), Some(3)]);
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn timestamp_jump_resyncs() {
        let mut jb = JitterBuffer::new(20);
        jb.insert(0, false, &pkt(1, 2));
        assert_eq!(pull(&mut jb), Some(1));
        assert_eq!(jb.insert(8000 * 60, false, &pkt(7, 2)), Some(Insert::Resync));
        assert_eq!([pull(&mut jb), pull(&mut jb)], [Some(7), Some(8)]);
        assert_eq!(jb.stats().resyncs, 1);
    }

    #[test]
    fn marker_after_running_dry_restarts_buffering() {
        let mut jb = JitterBuffer::new(40);
        jb.insert(0, false, &pkt(1, 4));
        for _ in 0..4 {
            assert!(pull(&mut jb).is_some());
        }
        // Silence suppression: 1 s later a talkspurt begins.
        assert_eq!(jb.insert(8000, true, &pkt(50, 2)), Some(Insert::Resync));
        assert_eq!(pull(&mut jb), None, "waiting for depth again");
        jb.insert(8160, false, &pkt(52, 2));
        assert_eq!(pull(&mut jb), Some(50));
    }

    #[test]
    fn misaligned_timestamp_resyncs() {
        let mut jb = JitterBuffer::new(10);
        jb.insert(0, false, &pkt(1, 1));
        assert_eq!(jb.insert(85, false, &pkt(2, 1)), Some(Insert::Resync));
        assert_eq!(pull(&mut jb), Some(2));
    }

    #[test]
    fn persistent_lateness_resyncs() {
        let mut jb = JitterBuffer::new(10);
        jb.insert(8000, false, &pkt(1, 1));
        pull(&mut jb);
        pull(&mut jb);
        assert_eq!(jb.insert(0, false, &pkt(2, 1)), Some(Insert::Late));
        assert_eq!(jb.insert(80, false, &pkt(3, 1)), Some(Insert::Late));
        assert_eq!(jb.insert(160, false, &pkt(4, 1)), Some(Insert::Resync));
        assert_eq!(pull(&mut jb), Some(4));
    }

    #[test]
    fn level_over_target_drops_frames() {
        let mut jb = JitterBuffer::new(20);
        // a burst of 12 frames after a stall
        for i in 0..12u32 {
            jb.insert(i * 80, false, &pkt(i as u8, 1));
        }
        // level 12 > 2 + 6: a frame is dropped per pull until the level is 8
        assert_eq!(pull(&mut jb), Some(1));
        assert_eq!(pull(&mut jb), Some(3));
        assert_eq!(pull(&mut jb), Some(4));
        assert_eq!(pull(&mut jb), Some(5));
        assert_eq!(jb.stats().dropped, 2);
    }

    #[test]
    fn bad_payload_lengths_are_refused() {
        let mut jb = JitterBuffer::new(20);
        assert_eq!(jb.insert(0, false, &[0; 79]), None);
        assert_eq!(jb.insert(0, false, &[0; 560]), None);
        assert_eq!(jb.insert(0, false, &[]), None);
        assert!(!jb.is_playing());
    }
}
