//! LAPD frame format (Q.921 section 3): the octets between the flags, FCS
//! excluded (the [`crate::hdlc`] layer or the controller checks and strips it).
//!
//! ```text
//!  octet 1: SAPI (6 bits) | C/R | EA=0        (Q.921 3.3, figure 5)
//!  octet 2: TEI (7 bits)         | EA=1
//!  octet 3..: control field, 2 octets for I and S frames (modulo 128),
//!             1 octet for U frames (Q.921 3.4, table 4)
//!  rest:     information field (I, UI, XID, FRMR)
//! ```
//!
//! [`Packet`] is a view over raw octets that never panics once
//! [`Packet::new_checked`] accepted it; [`Repr`] is the parsed meaning, and
//! [`Repr::emit`] writes it back.

use core::fmt;

/// Largest information field (Q.921 5.9.3, N201 default).
pub const N201: usize = 260;

/// SAPI of call control (Q.931).
pub const SAPI_CALL_CONTROL: u8 = 0;
/// SAPI of layer 2 management (TEI management).
pub const SAPI_MANAGEMENT: u8 = 63;
/// TEI of broadcast data links.
pub const TEI_GROUP: u8 = 127;

mod field {
    pub const ADDR0: usize = 0;
    pub const ADDR1: usize = 1;
    pub const CTRL: usize = 2;
    /// First octet after a 1-octet (U format) control field.
    pub const U_INFO: usize = 3;
    /// First octet after a 2-octet (I and S format) control field.
    pub const IS_INFO: usize = 4;
}

/// Why octets are not a LAPD frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the address and control field need.
    Truncated,
    /// An EA bit is wrong: not a 2-octet LAPD address.
    BadAddress,
    /// Control field not defined in Q.921 table 4 (MDL-ERROR L).
    UndefinedControl,
    /// Information field on a frame that must not have one (MDL-ERROR M).
    InfoNotPermitted,
    /// Information field longer than N201 (MDL-ERROR O).
    InfoTooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Error::Truncated => "frame too short",
            Error::BadAddress => "bad address extension bits",
            Error::UndefinedControl => "undefined control field",
            Error::InfoNotPermitted => "information field not permitted",
            Error::InfoTooLong => "information field longer than N201",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}

/// Supervisory functions (Q.921 3.6.6 - 3.6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisory {
    Rr,
    Rnr,
    Rej,
}

/// Unnumbered functions (Q.921 3.6.9 - 3.6.14, XID from 5.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnumbered {
    Sabme,
    Dm,
    Ui,
    Disc,
    Ua,
    Frmr,
    Xid,
}

impl Unnumbered {
    /// Control octet with the P/F bit clear (Q.921 table 4).
    const fn code(self) -> u8 {
        match self {
            Unnumbered::Sabme => 0x6F,
            Unnumbered::Dm => 0x0F,
            Unnumbered::Ui => 0x03,
            Unnumbered::Disc => 0x43,
            Unnumbered::Ua => 0x63,
            Unnumbered::Frmr => 0x87,
            Unnumbered::Xid => 0xAF,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c & !0x10 {
            0x6F => Unnumbered::Sabme,
            0x0F => Unnumbered::Dm,
            0x03 => Unnumbered::Ui,
            0x43 => Unnumbered::Disc,
            0x63 => Unnumbered::Ua,
            0x87 => Unnumbered::Frmr,
            0xAF => Unnumbered::Xid,
            _ => return None,
        })
    }

    /// Whether Q.921 lets this frame carry an information field.
    pub const fn may_carry_info(self) -> bool {
        matches!(self, Unnumbered::Ui | Unnumbered::Frmr | Unnumbered::Xid)
    }
}

/// The control field, parsed (modulo 128 sequence numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Information transfer: N(S), N(R), P.
    I { ns: u8, nr: u8, p: bool },
    /// Supervisory: function, N(R), P/F.
    S { kind: Supervisory, nr: u8, pf: bool },
    /// Unnumbered: function, P/F.
    U { kind: Unnumbered, pf: bool },
}

impl Control {
    /// Length of the control field on the wire.
    pub const fn wire_len(&self) -> usize {
        match self {
            Control::U { .. } => 1,
            _ => 2,
        }
    }

    /// The P (command) or F (response) bit.
    pub const fn pf(&self) -> bool {
        match *self {
            Control::I { p, .. } => p,
            Control::S { pf, .. } | Control::U { pf, .. } => pf,
        }
    }
}

/// A read/write view of a LAPD frame.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps octets without checking them; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps octets after [`Packet::check_len`]; accessors then never panic.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the address extension bits and that the control field the
    /// first control octet announces is present.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < field::U_INFO {
            return Err(Error::Truncated);
        }
        if b[field::ADDR0] & 1 != 0 || b[field::ADDR1] & 1 != 1 {
            return Err(Error::BadAddress);
        }
        if b[field::CTRL] & 0x03 != 0x03 && b.len() < field::IS_INFO {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn sapi(&self) -> u8 {
        self.buffer.as_ref()[field::ADDR0] >> 2
    }

    /// The C/R bit as sent. Which value means "command" depends on the
    /// sender's side (Q.921 table 1): see [`crate::q921::Role`].
    pub fn cr(&self) -> bool {
        self.buffer.as_ref()[field::ADDR0] & 0x02 != 0
    }

    pub fn tei(&self) -> u8 {
        self.buffer.as_ref()[field::ADDR1] >> 1
    }

    /// The control field, or [`Error::UndefinedControl`].
    pub fn control(&self) -> Result<Control, Error> {
        let b = self.buffer.as_ref();
        let c0 = b[field::CTRL];
        if c0 & 1 == 0 {
            let c1 = b[field::CTRL + 1];
            return Ok(Control::I { ns: c0 >> 1, nr: c1 >> 1, p: c1 & 1 != 0 });
        }
        if c0 & 0x03 == 0x01 {
            let kind = match c0 {
                0x01 => Supervisory::Rr,
                0x05 => Supervisory::Rnr,
                0x09 => Supervisory::Rej,
                _ => return Err(Error::UndefinedControl),
            };
            let c1 = b[field::CTRL + 1];
            return Ok(Control::S { kind, nr: c1 >> 1, pf: c1 & 1 != 0 });
        }
        let kind = Unnumbered::from_code(c0).ok_or(Error::UndefinedControl)?;
        Ok(Control::U { kind, pf: c0 & 0x10 != 0 })
    }

    /// The information field (empty if none), located from the control
    /// field's format.
    pub fn info(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let start = if b[field::CTRL] & 0x03 == 0x03 { field::U_INFO } else { field::IS_INFO };
        b.get(start..).unwrap_or(&[])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The information field, borrowed for as long as the underlying octets.
    pub fn info_ref(&self) -> &'a [u8] {
        let b: &'a [u8] = self.buffer.as_ref();
        let start = if b[field::CTRL] & 0x03 == 0x03 { field::U_INFO } else { field::IS_INFO };
        b.get(start..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_address(&mut self, sapi: u8, cr: bool, tei: u8) {
        let b = self.buffer.as_mut();
        b[field::ADDR0] = (sapi & 0x3F) << 2 | (cr as u8) << 1;
        b[field::ADDR1] = (tei & 0x7F) << 1 | 1;
    }

    pub fn set_control(&mut self, c: Control) {
        let b = self.buffer.as_mut();
        match c {
            Control::I { ns, nr, p } => {
                b[field::CTRL] = (ns & 0x7F) << 1;
                b[field::CTRL + 1] = (nr & 0x7F) << 1 | p as u8;
            }
            Control::S { kind, nr, pf } => {
                b[field::CTRL] = match kind {
                    Supervisory::Rr => 0x01,
                    Supervisory::Rnr => 0x05,
                    Supervisory::Rej => 0x09,
                };
                b[field::CTRL + 1] = (nr & 0x7F) << 1 | pf as u8;
            }
            Control::U { kind, pf } => b[field::CTRL] = kind.code() | (pf as u8) << 4,
        }
    }
}

/// A LAPD frame, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub sapi: u8,
    pub cr: bool,
    pub tei: u8,
    pub control: Control,
    pub info: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked packet, applying the Q.921 5.8.5 validity rules that
    /// do not depend on link state: defined control field, information field
    /// only where permitted, at most N201 octets.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Self, Error> {
        let control = packet.control()?;
        let info = packet.info_ref();
        let permitted = match control {
            Control::I { .. } => true,
            Control::S { .. } => false,
            Control::U { kind, .. } => kind.may_carry_info(),
        };
        if !permitted && !info.is_empty() {
            return Err(Error::InfoNotPermitted);
        }
        if info.len() > N201 {
            return Err(Error::InfoTooLong);
        }
        Ok(Repr { sapi: packet.sapi(), cr: packet.cr(), tei: packet.tei(), control, info })
    }

    /// Checks and parses raw octets in one step.
    pub fn parse_bytes(octets: &'a [u8]) -> Result<Self, Error> {
        Self::parse(&Packet::new_checked(octets)?)
    }

    /// Octets [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        2 + self.control.wire_len() + self.info.len()
    }

    /// Writes the frame into `packet`, which must be [`Repr::buffer_len`] long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_address(self.sapi, self.cr, self.tei);
        packet.set_control(self.control);
        let start = 2 + self.control.wire_len();
        packet.buffer.as_mut()[start..start + self.info.len()].copy_from_slice(self.info);
    }

    /// The frame as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut Packet::new_unchecked(&mut v[..]));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_frames() {
        // TE -> NT SABME, SAPI 0, TEI 0, command (C/R=0 from the user side), P=1.
        let r = Repr::parse_bytes(&[0x00, 0x01, 0x7F]).unwrap();
        assert_eq!((r.sapi, r.cr, r.tei), (0, false, 0));
        assert_eq!(r.control, Control::U { kind: Unnumbered::Sabme, pf: true });
        // NT -> TE UA, response (C/R=0 from the network side), F=1, TEI 64.
        let r = Repr::parse_bytes(&[0x00, 0x81, 0x73]).unwrap();
        assert_eq!((r.sapi, r.cr, r.tei), (0, false, 64));
        assert_eq!(r.control, Control::U { kind: Unnumbered::Ua, pf: true });
        // TEI management identity request: SAPI 63, TEI 127, UI.
        let r = Repr::parse_bytes(&[0xFC, 0xFF, 0x03, 0x0F, 0x12, 0x34, 0x01, 0xFF]).unwrap();
        assert_eq!((r.sapi, r.tei), (SAPI_MANAGEMENT, TEI_GROUP));
        assert_eq!(r.control, Control::U { kind: Unnumbered::Ui, pf: false });
        assert_eq!(r.info, &[0x0F, 0x12, 0x34, 0x01, 0xFF]);
        // I frame N(S)=5 N(R)=127 P=1 carrying a Q.931 header.
        let r = Repr::parse_bytes(&[0x02, 0x01, 0x0A, 0xFF, 0x08, 0x01, 0x01, 0x05]).unwrap();
        assert_eq!(r.control, Control::I { ns: 5, nr: 127, p: true });
        assert_eq!(r.info, &[0x08, 0x01, 0x01, 0x05]);
        // RNR response F=0 N(R)=3.
        let r = Repr::parse_bytes(&[0x02, 0x01, 0x05, 0x06]).unwrap();
        assert_eq!(r.control, Control::S { kind: Supervisory::Rnr, nr: 3, pf: false });
        assert_eq!(Repr::parse_bytes(&[0x02, 0x01, 0x05, 0x06]).unwrap().to_vec(), [0x02, 0x01, 0x05, 0x06]);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(Repr::parse_bytes(&[]), Err(Error::Truncated));
        assert_eq!(Repr::parse_bytes(&[0x00, 0x01]), Err(Error::Truncated));
        assert_eq!(Repr::parse_bytes(&[0x00, 0x01, 0x00]), Err(Error::Truncated)); // I, 1 control octet
        assert_eq!(Repr::parse_bytes(&[0x01, 0x01, 0x7F]), Err(Error::BadAddress));
        assert_eq!(Repr::parse_bytes(&[0x00, 0x00, 0x7F]), Err(Error::BadAddress));
        assert_eq!(Repr::parse_bytes(&[0x00, 0x01, 0x0D, 0x00]), Err(Error::UndefinedControl)); // S 11
        assert_eq!(Repr::parse_bytes(&[0x00, 0x01, 0x2F]), Err(Error::UndefinedControl)); // SABM (mod 8)
        assert_eq!(Repr::parse_bytes(&[0x00, 0x01, 0x7F, 0x00]), Err(Error::InfoNotPermitted));
        assert_eq!(Repr::parse_bytes(&[0x00, 0x01, 0x01, 0x00, 0x00]), Err(Error::InfoNotPermitted));
        let mut long = vec![0x00, 0x01, 0x00, 0x00];
        long.resize(4 + N201 + 1, 0);
        assert_eq!(Repr::parse_bytes(&long), Err(Error::InfoTooLong));
        long.pop();
        assert!(Repr::parse_bytes(&long).is_ok());
    }

    fn arb_control() -> impl Strategy<Value = Control> {
        let sup = prop_oneof![Just(Supervisory::Rr), Just(Supervisory::Rnr), Just(Supervisory::Rej)];
        let un = prop_oneof![
            Just(Unnumbered::Sabme),
            Just(Unnumbered::Dm),
            Just(Unnumbered::Ui),
            Just(Unnumbered::Disc),
            Just(Unnumbered::Ua),
            Just(Unnumbered::Frmr),
            Just(Unnumbered::Xid)
        ];
        prop_oneof![
            (0u8..128, 0u8..128, any::<bool>()).prop_map(|(ns, nr, p)| Control::I { ns, nr, p }),
            (sup, 0u8..128, any::<bool>()).prop_map(|(kind, nr, pf)| Control::S { kind, nr, pf }),
            (un, any::<bool>()).prop_map(|(kind, pf)| Control::U { kind, pf }),
        ]
    }

    proptest! {
        #[test]
        fn repr_roundtrip(sapi in 0u8..64, cr: bool, tei in 0u8..128, control in arb_control(),
                          info in proptest::collection::vec(any::<u8>(), 0..N201)) {
            let info_ok = match control {
                Control::I { .. } => true,
                Control::S { .. } => false,
                Control::U { kind, .. } => kind.may_carry_info(),
            };
            let info = if info_ok { &info[..] } else { &[][..] };
            let r = Repr { sapi, cr, tei, control, info };
            let bytes = r.to_vec();
            prop_assert_eq!(Repr::parse_bytes(&bytes), Ok(r));
            let p = Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p), Ok(r));
        }

        #[test]
        fn any_octets_parse_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = Repr::parse_bytes(&bytes) {
                // Whatever parses re-emits to the same octets.
                prop_assert_eq!(r.to_vec(), bytes.clone());
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.sapi(), p.cr(), p.tei(), p.control(), p.info());
            }
        }
    }
}
