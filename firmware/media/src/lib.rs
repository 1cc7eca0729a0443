//! Media plane of the gateway: RTP (RFC 3550), DTMF as RFC 4733 telephone
//! events, and a jitter buffer, for G.711 at 8 kHz in 10 ms frames.
//!
//! This crate runs inside the real-time thread, so it is `no_std`, never
//! allocates, never panics on network input and reads no clock: time is the
//! number of 10 ms frames the caller feeds and pulls.
//!
//! Layers:
//! - [`rtp`]: the packet view and the header we emit.
//! - [`rfc4733`]: the telephone-event payload and the DTMF digit table.
//! - [`rtcp`]: sender/receiver reports, SDES CNAME and BYE.
//! - [`jitter`]: the fixed-size playout buffer.
//! - [`RtpSession`]: one call. Per 10 ms tick the rt thread calls
//!   [`RtpSession::receive`] for each arrived packet, then
//!   [`RtpSession::pull_frame`] once (audio for the line), then
//!   [`RtpSession::send_frame`] once (audio from the line; it returns a packet
//!   to send every ptime). DTMF detected on the line is sent with
//!   [`RtpSession::start_dtmf`] / [`RtpSession::stop_dtmf`]. RTCP goes through
//!   [`RtpSession::rtcp_report`] and [`RtpSession::receive_rtcp`], which take
//!   the wall clock as an NTP timestamp.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod jitter;
pub mod rfc4733;
pub mod rtcp;
pub mod rtp;
mod session;

pub use session::{MediaError, Received, RtcpSummary, RtpSession, SessionConfig, SessionStats};
