//! Sans-IO ISDN signalling for the gateway: software HDLC, LAPD (Q.921) and,
//! later, Q.931 (ETSI EN 300 403).
//!
//! Layers, bottom up:
//! - [`hdlc`]: ISO 3309 / Q.921 section 2 framing in software (flags, zero-bit
//!   insertion, FCS-16, aborts) for a D channel carried in a transparent
//!   timeslot (PRI TS16). BRI controllers do this in hardware and hand over
//!   whole frames, so the layers above only ever see FCS-checked frames.
//! - [`lapd`]: the LAPD frame format (Q.921 section 3): address, control field
//!   (modulo 128), information field, as a `Packet` view plus a `Repr`.
//! - [`q921`]: the data link procedures for one TEI (Q.921 section 5 and the
//!   Annex B SDL), user (TE) or network (NT) side.
//! - [`tei`]: TEI management messages (Q.921 5.3), codec only.
//! - [`q931`]: Q.931 / EN 300 403-1 message and information element codec
//!   with the 5.8 checks (mandatory and comprehension-required elements).
//! - [`call`]: the Q.931 call state machine (user and network side, timers,
//!   channel selection, RESTART, STATUS, PTMP broadcast SETUP), sans-IO.
//! - [`tei_mgmt`]: TEI assignment procedures (Q.921 5.3) for PTMP BRI.
//! - [`decode`]: installer-readable text of a frame (Q.921, Q.931, TEI
//!   management), as `debug isdn` and the web UI show it.
//!
//! How to drive a [`q921::DataLink`]: feed every received frame (without FCS)
//! to `handle_frame`, layer-3 requests to the `dl_*` methods, and call
//! `handle_timeout` at `poll_timeout`; after each of these drain
//! `poll_transmit` (frames for the D channel) and `poll_event` (primitives for
//! layer 3 and management). Nothing here reads a clock, opens a socket or
//! sleeps: every input carries `now`.
#![forbid(unsafe_code)]

pub mod call;
pub mod decode;
pub mod hdlc;
pub mod lapd;
pub mod q921;
pub mod q931;
pub mod span;
pub mod tei;
pub mod tei_mgmt;
