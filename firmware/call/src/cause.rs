//! Q.850 causes: why a call ended, in the one vocabulary every leg speaks.
//!
//! [`Cause`] is a newtype over the 7-bit cause value (ITU-T Q.850 §2.2.7), not an
//! enum: values this build does not name cross the gateway unchanged (an ISDN cause
//! IE in, `Reason: Q.850;cause=N` out). [`Release`] adds the location (§2.2.5) and,
//! when the gateway itself ended the call, a [`LocalReason`] for the installer.

use core::fmt;

/// A Q.850 cause value, 1..=127.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Cause(u8);

impl Cause {
    pub const UNALLOCATED_NUMBER: Cause = Cause(1);
    pub const NO_ROUTE_TO_TRANSIT_NETWORK: Cause = Cause(2);
    pub const NO_ROUTE_TO_DESTINATION: Cause = Cause(3);
    pub const PREEMPTION: Cause = Cause(8);
    pub const NORMAL_CLEARING: Cause = Cause(16);
    pub const USER_BUSY: Cause = Cause(17);
    pub const NO_USER_RESPONDING: Cause = Cause(18);
    pub const NO_ANSWER: Cause = Cause(19);
    pub const SUBSCRIBER_ABSENT: Cause = Cause(20);
    pub const CALL_REJECTED: Cause = Cause(21);
    pub const NUMBER_CHANGED: Cause = Cause(22);
    pub const EXCHANGE_ROUTING_ERROR: Cause = Cause(25);
    pub const NON_SELECTED_USER_CLEARING: Cause = Cause(26);
    pub const DESTINATION_OUT_OF_ORDER: Cause = Cause(27);
    pub const INVALID_NUMBER_FORMAT: Cause = Cause(28);
    pub const FACILITY_REJECTED: Cause = Cause(29);
    pub const NORMAL_UNSPECIFIED: Cause = Cause(31);
    pub const NO_CIRCUIT_AVAILABLE: Cause = Cause(34);
    pub const NETWORK_OUT_OF_ORDER: Cause = Cause(38);
    pub const TEMPORARY_FAILURE: Cause = Cause(41);
    pub const SWITCHING_CONGESTION: Cause = Cause(42);
    pub const CHANNEL_NOT_AVAILABLE: Cause = Cause(44);
    pub const RESOURCE_UNAVAILABLE: Cause = Cause(47);
    pub const INCOMING_CALLS_BARRED_CUG: Cause = Cause(55);
    pub const BEARER_NOT_AUTHORIZED: Cause = Cause(57);
    pub const BEARER_NOT_AVAILABLE: Cause = Cause(58);
    pub const SERVICE_NOT_AVAILABLE: Cause = Cause(63);
    pub const BEARER_NOT_IMPLEMENTED: Cause = Cause(65);
    pub const ONLY_RESTRICTED_DIGITAL: Cause = Cause(70);
    pub const SERVICE_NOT_IMPLEMENTED: Cause = Cause(79);
    pub const NOT_MEMBER_OF_CUG: Cause = Cause(87);
    pub const INCOMPATIBLE_DESTINATION: Cause = Cause(88);
    pub const RECOVERY_ON_TIMER_EXPIRY: Cause = Cause(102);
    pub const PROTOCOL_ERROR: Cause = Cause(111);
    pub const INTERWORKING: Cause = Cause(127);

    /// `v` as a cause, if it is within 1..=127 (0 is not a cause; the field has 7 bits).
    pub const fn new(v: u8) -> Option<Cause> {
        if v >= 1 && v <= 127 {
            Some(Cause(v))
        } else {
            None
        }
    }

    /// The numeric value, 1..=127.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The class: the top three bits of the value (Q.850 §2.2.7.1).
    pub const fn class(self) -> CauseClass {
        match self.0 >> 4 {
            0 | 1 => CauseClass::Normal,
            2 => CauseClass::ResourceUnavailable,
            3 => CauseClass::ServiceUnavailable,
            4 => CauseClass::NotImplemented,
            5 => CauseClass::InvalidMessage,
            6 => CauseClass::ProtocolError,
            _ => CauseClass::Interworking,
        }
    }

    /// The Q.850 Table 1 wording (lower case first letter, for "17 user busy"); values
    /// Q.850 does not define read as the class's "unspecified" wording with a mark.
    pub fn text(self) -> &'static str {
        // One Q.850 table for the whole firmware: gw-isdn's decoder shows the same words.
        match gw_isdn::decode::cause_name(self.0) {
            Some(name) => name,
            None => match self.class() {
                CauseClass::Normal => "(unassigned) normal event",
                CauseClass::ResourceUnavailable => "(unassigned) resource unavailable",
                CauseClass::ServiceUnavailable => "(unassigned) service or option not available",
                CauseClass::NotImplemented => "(unassigned) service or option not implemented",
                CauseClass::InvalidMessage => "(unassigned) invalid message",
                CauseClass::ProtocolError => "(unassigned) protocol error",
                CauseClass::Interworking => "(unassigned) interworking",
            },
        }
    }
}

impl Cause {
    /// The tone an analog caller hears for this release (CALL-CONTROL.md 2.3): the
    /// FXS adapter picks it, so gw-line never sees Q.850.
    pub const fn release_tone(self) -> ReleaseTone {
        match self.0 {
            17 => ReleaseTone::Busy,
            34 | 38 | 41 | 42 | 47 => ReleaseTone::Congestion,
            1 | 22 | 28 => ReleaseTone::SitReorder,
            _ => ReleaseTone::Reorder,
        }
    }
}

/// What an analog caller hears after a failed call; see [`Cause::release_tone`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReleaseTone {
    Busy,
    /// Network congestion ("all circuits busy").
    Congestion,
    /// Special information tone, then reorder (number not in service, changed, invalid).
    SitReorder,
    Reorder,
}

impl fmt::Display for Cause {
    /// "17 user busy".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.text())
    }
}

/// Q.850 §2.2.7.1 cause classes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CauseClass {
    /// 1..=31 (classes 000 and 001).
    Normal,
    /// 32..=47.
    ResourceUnavailable,
    /// 48..=63.
    ServiceUnavailable,
    /// 64..=79.
    NotImplemented,
    /// 80..=95.
    InvalidMessage,
    /// 96..=111.
    ProtocolError,
    /// 112..=127.
    Interworking,
}

/// A set of causes, one bit per value: failover lists.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CauseSet([u64; 2]);

impl CauseSet {
    pub const EMPTY: CauseSet = CauseSet([0; 2]);

    pub const fn new() -> CauseSet {
        CauseSet([0; 2])
    }

    pub fn insert(&mut self, c: Cause) {
        self.0[usize::from(c.0 >> 6)] |= 1 << (c.0 & 63);
    }

    pub fn remove(&mut self, c: Cause) {
        self.0[usize::from(c.0 >> 6)] &= !(1 << (c.0 & 63));
    }

    pub fn contains(&self, c: Cause) -> bool {
        self.0[usize::from(c.0 >> 6)] & (1 << (c.0 & 63)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 2]
    }

    pub fn len(&self) -> usize {
        (self.0[0].count_ones() + self.0[1].count_ones()) as usize
    }

    /// The members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = Cause> + '_ {
        (1..=127u8).map(Cause).filter(|&c| self.contains(c))
    }
}

impl FromIterator<Cause> for CauseSet {
    fn from_iter<I: IntoIterator<Item = Cause>>(iter: I) -> Self {
        let mut s = CauseSet::new();
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl fmt::Debug for CauseSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|c| c.0)).finish()
    }
}

impl fmt::Display for CauseSet {
    /// "34, 38, 41" (numbers only; `none` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", c.0)?;
        }
        Ok(())
    }
}

/// Where the cause was generated (Q.850 §2.2.5, the location field).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Location {
    /// 0000 U.
    User,
    /// 0001 LPN: private network serving the local user. What the gateway itself uses.
    PrivateLocal,
    /// 0010 LN: public network serving the local user.
    PublicLocal,
    /// 0011 TN: transit network.
    Transit,
    /// 0100 RLN: public network serving the remote user.
    PublicRemote,
    /// 0101 RPN: private network serving the remote user.
    PrivateRemote,
    /// 0111 INTL: international network.
    International,
    /// 1010 BI: network beyond interworking point (what a SIP peer is, seen from ISDN).
    BeyondInterworking,
}

impl Location {
    /// The 4-bit code of the field.
    pub const fn code(self) -> u8 {
        match self {
            Location::User => 0,
            Location::PrivateLocal => 1,
            Location::PublicLocal => 2,
            Location::Transit => 3,
            Location::PublicRemote => 4,
            Location::PrivateRemote => 5,
            Location::International => 7,
            Location::BeyondInterworking => 10,
        }
    }

    /// The location for a 4-bit code; reserved codes are `None`.
    pub const fn from_code(code: u8) -> Option<Location> {
        Some(match code {
            0 => Location::User,
            1 => Location::PrivateLocal,
            2 => Location::PublicLocal,
            3 => Location::Transit,
            4 => Location::PublicRemote,
            5 => Location::PrivateRemote,
            7 => Location::International,
            10 => Location::BeyondInterworking,
            _ => return None,
        })
    }

    pub const fn text(self) -> &'static str {
        match self {
            Location::User => "user",
            Location::PrivateLocal => "private network serving the local user",
            Location::PublicLocal => "public network serving the local user",
            Location::Transit => "transit network",
            Location::PublicRemote => "public network serving the remote user",
            Location::PrivateRemote => "private network serving the remote user",
            Location::International => "international network",
            Location::BeyondInterworking => "network beyond interworking point",
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Why the gateway itself ended or refused a call (for `show calls`; the peer only sees
/// the [`Cause`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum LocalReason {
    /// No rule of the route table matched (cause 3).
    NoRoute,
    /// The destination trunk is marked down by its health check; skipped unsent (cause 38).
    TrunkDown,
    /// A destination group or port is busy or out of service; skipped unsent (cause 34).
    Unavailable,
    /// A rule's or a trunk's `max_calls` is reached (cause 34).
    LimitReached,
    /// The source's calls-per-minute limit is reached (cause 42).
    RateLimited,
    /// No proceeding or alerting within the destination's setup timeout (cause 102).
    SetupTimeout,
    /// Alerted but not answered in time (cause 19).
    NoAnswer,
    /// Released for an emergency call (cause 8).
    Preempted,
    /// The request came from an address the trunk does not accept (cause 21).
    Untrusted,
    /// The call reached the maximum duration (cause 16: it ends normally).
    MaxDuration,
}

impl LocalReason {
    /// The cause the gateway sends for this reason.
    pub const fn cause(self) -> Cause {
        match self {
            LocalReason::NoRoute => Cause::NO_ROUTE_TO_DESTINATION,
            LocalReason::TrunkDown => Cause::NETWORK_OUT_OF_ORDER,
            LocalReason::Unavailable | LocalReason::LimitReached => Cause::NO_CIRCUIT_AVAILABLE,
            LocalReason::RateLimited => Cause::SWITCHING_CONGESTION,
            LocalReason::SetupTimeout => Cause::RECOVERY_ON_TIMER_EXPIRY,
            LocalReason::NoAnswer => Cause::NO_ANSWER,
            LocalReason::Preempted => Cause::PREEMPTION,
            LocalReason::Untrusted => Cause::CALL_REJECTED,
            LocalReason::MaxDuration => Cause::NORMAL_CLEARING,
        }
    }

    pub const fn text(self) -> &'static str {
        match self {
            LocalReason::NoRoute => "no route",
            LocalReason::TrunkDown => "trunk down",
            LocalReason::Unavailable => "destination unavailable",
            LocalReason::LimitReached => "call limit reached",
            LocalReason::RateLimited => "calls-per-minute limit reached",
            LocalReason::SetupTimeout => "setup timeout",
            LocalReason::NoAnswer => "no answer",
            LocalReason::Preempted => "preempted by an emergency call",
            LocalReason::Untrusted => "untrusted source",
            LocalReason::MaxDuration => "maximum duration reached",
        }
    }
}

impl fmt::Display for LocalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// How a call (or one attempt of it) ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Release {
    pub cause: Cause,
    pub location: Location,
    /// Why *we* ended it; `None` when the peer did.
    pub local: Option<LocalReason>,
}

impl Release {
    /// The gateway ended it for `reason`, with that reason's cause, located at the
    /// private network serving the local user (what a gateway or PBX is).
    pub const fn local(reason: LocalReason) -> Release {
        Release { cause: reason.cause(), location: Location::PrivateLocal, local: Some(reason) }
    }

    /// A peer ended it.
    pub const fn remote(cause: Cause, location: Location) -> Release {
        Release { cause, location, local: None }
    }
}

impl fmt::Display for Release {
    /// "17 user busy" for a peer's release; "38 network out of order (trunk down)" for ours.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cause)?;
        if let Some(r) = self.local {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_and_unknown_values_are_kept() {
        assert_eq!(Cause::new(0), None);
        assert_eq!(Cause::new(128), None);
        assert_eq!(Cause::new(255), None);
        let c = Cause::new(13).unwrap();
        assert_eq!(c.get(), 13);
        assert_eq!(c.text(), "(unassigned) normal event");
        assert_eq!(Cause::new(127), Some(Cause::INTERWORKING));
    }

    #[test]
    fn classes_follow_the_top_bits() {
        let cls = |v| Cause::new(v).unwrap().class();
        assert_eq!(cls(1), CauseClass::Normal);
        assert_eq!(cls(31), CauseClass::Normal);
        assert_eq!(cls(32), CauseClass::ResourceUnavailable);
        assert_eq!(cls(47), CauseClass::ResourceUnavailable);
        assert_eq!(cls(48), CauseClass::ServiceUnavailable);
        assert_eq!(cls(63), CauseClass::ServiceUnavailable);
        assert_eq!(cls(64), CauseClass::NotImplemented);
        assert_eq!(cls(79), CauseClass::NotImplemented);
        assert_eq!(cls(80), CauseClass::InvalidMessage);
        assert_eq!(cls(95), CauseClass::InvalidMessage);
        assert_eq!(cls(96), CauseClass::ProtocolError);
        assert_eq!(cls(111), CauseClass::ProtocolError);
        assert_eq!(cls(112), CauseClass::Interworking);
        assert_eq!(cls(127), CauseClass::Interworking);
    }

    #[test]
    fn display_reads_well() {
        assert_eq!(Cause::USER_BUSY.to_string(), "17 user busy");
        assert_eq!(Cause::NORMAL_CLEARING.to_string(), "16 normal call clearing");
        assert_eq!(Cause::NO_CIRCUIT_AVAILABLE.to_string(), "34 no circuit/channel available");
        assert_eq!(Cause::RECOVERY_ON_TIMER_EXPIRY.to_string(), "102 recovery on timer expiry");
        assert_eq!(Release::remote(Cause::USER_BUSY, Location::User).to_string(), "17 user busy");
        assert_eq!(
            Release::local(LocalReason::TrunkDown).to_string(),
            "38 network out of order (trunk down)"
        );
        assert_eq!(
            Release::local(LocalReason::SetupTimeout).to_string(),
            "102 recovery on timer expiry (setup timeout)"
        );
    }

    #[test]
    fn every_value_has_a_text() {
        for v in 1..=127 {
            assert!(!Cause::new(v).unwrap().text().is_empty());
        }
    }

    #[test]
    fn cause_set_is_a_bit_set() {
        let s: CauseSet = [34, 38, 102, 1, 127, 64, 63].iter().map(|&v| Cause::new(v).unwrap()).collect();
        for v in 1..=127u8 {
            let c = Cause::new(v).unwrap();
            assert_eq!(s.contains(c), [34, 38, 102, 1, 127, 64, 63].contains(&v), "{v}");
        }
        assert_eq!(s.len(), 7);
        assert_eq!(s.to_string(), "1, 34, 38, 63, 64, 102, 127");
        let mut t = s;
        t.remove(Cause::new(64).unwrap());
        assert!(!t.contains(Cause::new(64).unwrap()));
        assert!(t.contains(Cause::new(63).unwrap()));
        assert_eq!(CauseSet::EMPTY.to_string(), "none");
        assert!(CauseSet::default().is_empty());
    }

    #[test]
    fn release_tones_follow_the_cause() {
        let tone = |v| Cause::new(v).unwrap().release_tone();
        assert_eq!(tone(17), ReleaseTone::Busy);
        for v in [34, 38, 41, 42, 47] {
            assert_eq!(tone(v), ReleaseTone::Congestion, "{v}");
        }
        for v in [1, 22, 28] {
            assert_eq!(tone(v), ReleaseTone::SitReorder, "{v}");
        }
        for v in [16, 18, 19, 21, 31, 102, 127, 13] {
            assert_eq!(tone(v), ReleaseTone::Reorder, "{v}");
        }
    }

    #[test]
    fn locations_round_trip_their_codes() {
        for code in 0..16 {
            if let Some(l) = Location::from_code(code) {
                assert_eq!(l.code(), code);
            }
        }
        assert_eq!(Location::from_code(6), None);
        assert_eq!(Location::from_code(10), Some(Location::BeyondInterworking));
    }

    #[test]
    fn local_reasons_carry_their_causes() {
        assert_eq!(Release::local(LocalReason::NoRoute).cause, Cause::NO_ROUTE_TO_DESTINATION);
        assert_eq!(Release::local(LocalReason::Preempted).cause, Cause::PREEMPTION);
        assert_eq!(Release::local(LocalReason::LimitReached).cause, Cause::NO_CIRCUIT_AVAILABLE);
        assert_eq!(Release::local(LocalReason::NoAnswer).location, Location::PrivateLocal);
    }
}
