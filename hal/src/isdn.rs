//! ISDN spans: the D-channel boundary and the span description.
//!
//! # The boundary
//! Below [`DChannel`] sits whatever turns the line into frames: an S/T
//! controller's HDLC FIFOs on a BRI (XHFC-class), or software HDLC over a
//! transparent E1 TS16 on a PRI, or the sim link. That side adds and removes
//! the flags, does the zero-bit insertion and computes and checks the FCS-16.
//! Above it (gw-isdn's Q.921, the span manager) everything sees **whole
//! frames**: the octets between the flags, without the FCS, i.e. the LAPD
//! address, control and information fields (3 to [`MAX_FRAME`] octets). A frame
//! whose FCS does not check, that was aborted or that is too short or too long
//! is dropped below the trait and only counted ([`DChannelStats`]).
//!
//! Layer 1 (activation of the S/T interface, E1 frame alignment) is also below
//! the trait: [`DChannel::poll_l1_event`] reports each change of
//! [`L1Status`] (state and, on E1, the LOS/AIS/RAI alarms), and
//! [`DChannel::request_l1`] asks for activation or deactivation (the far end
//! or the line may refuse; the answer is a later event).
//!
//! B-channels are not here: they are PCM slots on the same bus as the analog
//! ports ([`crate::PcmBus`]); a [`SpanInfo`] says which bus channel carries which
//! B-channel.
//!
//! Threading: a D-channel belongs to the control plane (like the port traits).
//! Every method is non-blocking.

/// Largest whole LAPD frame: 2 address + 2 control + N201 (260) information octets.
pub const MAX_FRAME: usize = 264;
/// Smallest whole LAPD frame: 2 address octets and a 1-octet (U) control field.
pub const MIN_FRAME: usize = 3;

/// BRI (2B+D, 16 kbit/s D) or E1 PRI (30B+D, TS16 is the D channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanKind {
    Bri,
    Pri,
}

impl SpanKind {
    /// B-channels of this interface.
    pub const fn b_channels(self) -> usize {
        match self {
            SpanKind::Bri => 2,
            SpanKind::Pri => 30,
        }
    }

    /// The E1 timeslot (1-15, 17-31) of PRI B-channel `b` (0-based), or the
    /// B-channel number (1, 2) of a BRI: what Q.931's channel identification
    /// calls it.
    pub const fn channel_number(self, b: usize) -> usize {
        match self {
            SpanKind::Bri => b + 1,
            SpanKind::Pri if b < 15 => b + 1,
            SpanKind::Pri => b + 2,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            SpanKind::Bri => "bri",
            SpanKind::Pri => "pri",
        }
    }
}

/// Which side of the interface the equipment plays (Q.921: user or network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Terminal equipment: the user side (the gateway on a carrier line).
    Te,
    /// Network termination: the network side (the gateway serving a PBX).
    Nt,
}

impl Side {
    pub const fn other(self) -> Side {
        match self {
            Side::Te => Side::Nt,
            Side::Nt => Side::Te,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Side::Te => "te",
            Side::Nt => "nt",
        }
    }
}

/// Layer-1 activation state (I.430 F/G states condensed; E1: frame alignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L1State {
    /// No signal or deactivated: no frame can pass.
    Deactivated,
    /// Activation requested or in progress.
    Activating,
    /// Frames pass.
    Activated,
}

impl L1State {
    pub const fn name(self) -> &'static str {
        match self {
            L1State::Deactivated => "deactivated",
            L1State::Activating => "activating",
            L1State::Activated => "activated",
        }
    }
}

/// E1 alarms (G.775/G.732): loss of signal, alarm indication signal (all
/// ones from upstream), remote alarm indication (the far end reports it does
/// not receive us). Always clear on a BRI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Alarms {
    pub los: bool,
    pub ais: bool,
    pub rai: bool,
}

impl Alarms {
    /// Bit 0 LOS, bit 1 AIS, bit 2 RAI (the sim link's encoding).
    pub const fn bits(self) -> u8 {
        (self.los as u8) | (self.ais as u8) << 1 | (self.rai as u8) << 2
    }

    /// Inverse of [`Alarms::bits`]; `None` when a bit above 2 is set.
    pub const fn from_bits(b: u8) -> Option<Alarms> {
        if b & !0x07 != 0 {
            return None;
        }
        Some(Alarms { los: b & 1 != 0, ais: b & 2 != 0, rai: b & 4 != 0 })
    }

    pub const fn any(self) -> bool {
        self.los || self.ais || self.rai
    }
}

impl core::fmt::Display for Alarms {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if !self.any() {
            return f.write_str("none");
        }
        let names: Vec<&str> = [(self.los, "LOS"), (self.ais, "AIS"), (self.rai, "RAI")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// Layer-1 state and alarms, as reported by [`DChannel::poll_l1_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L1Status {
    pub state: L1State,
    pub alarms: Alarms,
}

impl L1Status {
    pub const DOWN: L1Status = L1Status { state: L1State::Deactivated, alarms: Alarms { los: false, ais: false, rai: false } };

    pub const fn is_up(self) -> bool {
        matches!(self.state, L1State::Activated)
    }
}

/// Counters kept below the D-channel trait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DChannelStats {
    /// Whole frames delivered up ([`DChannel::poll_frame`]).
    pub frames_in: u64,
    /// Frames sent to the line.
    pub frames_out: u64,
    /// Frames dropped because their FCS did not check.
    pub bad_fcs: u64,
    /// Frames dropped for their size (shorter than [`MIN_FRAME`] or longer
    /// than [`MAX_FRAME`]), or aborted.
    pub malformed: u64,
    /// Received frames dropped because nobody polled them in time.
    pub rx_overflow: u64,
    /// Frames the control plane asked to send while layer 1 was not active.
    pub tx_refused: u64,
    /// Layer-1 changes (each [`DChannel::poll_l1_event`] event counts once).
    pub l1_changes: u64,
}

/// Why [`DChannel::send_frame`] or [`DChannel::request_l1`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DChannelError {
    /// Not a whole LAPD frame: shorter than [`MIN_FRAME`] or longer than [`MAX_FRAME`].
    BadFrame,
    /// Layer 1 is not activated: the frame was not sent.
    L1Down,
    /// The transmit queue is full.
    Busy,
    /// The line card is not answering.
    CardGone,
}

impl core::fmt::Display for DChannelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DChannelError::BadFrame => "not a whole LAPD frame",
            DChannelError::L1Down => "layer 1 is not activated",
            DChannelError::Busy => "transmit queue full",
            DChannelError::CardGone => "line card gone",
        })
    }
}

impl std::error::Error for DChannelError {}

/// The D channel of one span (see the module documentation for the boundary).
pub trait DChannel {
    /// BRI or PRI.
    fn kind(&self) -> SpanKind;
    /// The next whole, FCS-checked frame received (address, control and
    /// information octets; no flags, no FCS). Never blocks.
    fn poll_frame(&mut self) -> Option<Vec<u8>>;
    /// Queues one whole frame (no FCS: the layer below adds it). Never blocks.
    fn send_frame(&mut self, frame: &[u8]) -> Result<(), DChannelError>;
    /// The next change of layer-1 state or alarms, as the new status. Never blocks.
    fn poll_l1_event(&mut self) -> Option<L1Status>;
    /// Current layer-1 status.
    fn l1_status(&self) -> L1Status;
    /// Asks layer 1 to activate (`true`) or deactivate. The outcome arrives as
    /// [`DChannel::poll_l1_event`] events.
    fn request_l1(&mut self, activate: bool) -> Result<(), DChannelError>;
    /// Sets the side this equipment plays (TE or NT): on hardware the S/T
    /// controller's mode, or which end of an E1 is the clock master.
    fn set_side(&mut self, side: Side) -> Result<(), DChannelError>;
    fn stats(&self) -> DChannelStats;
}

/// What the control plane needs to know of one span of a board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanInfo {
    pub kind: SpanKind,
    /// Front-panel name ("BRI 1").
    pub label: String,
    /// The PCM bus channel (timeslot) of each B-channel, B1 first (on a PRI:
    /// E1 TS1..15 then TS17..31).
    pub b_timeslots: Vec<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_bits_roundtrip_and_reject_unknown_bits() {
        for b in 0..8u8 {
            assert_eq!(Alarms::from_bits(b).unwrap().bits(), b);
        }
        assert_eq!(Alarms::from_bits(8), None);
        assert_eq!(Alarms { los: true, rai: true, ais: false }.to_string(), "LOS,RAI");
        assert_eq!(Alarms::default().to_string(), "none");
    }

    #[test]
    fn pri_channel_numbers_skip_ts16() {
        let ts: Vec<usize> = (0..30).map(|b| SpanKind::Pri.channel_number(b)).collect();
        assert_eq!(ts[..15], (1..=15).collect::<Vec<_>>()[..]);
        assert_eq!(ts[15..], (17..=31).collect::<Vec<_>>()[..]);
        assert_eq!(SpanKind::Bri.channel_number(1), 2);
        assert_eq!(SpanKind::Pri.b_channels(), 30);
    }
}
