//! Sans-IO SIP for the gateway (RFC 3261 and friends) on `rsip` types.
//!
//! Layers, bottom up:
//! - [`admission`]: per-source rate limits and bans, before any parsing.
//! - [`message`]: the normalizing layer in front of rsip (framing, unfolding,
//!   compact forms, extension methods).
//! - [`auth`]: digest authentication (RFC 2617/7616/8760), never rsip's helper.
//! - [`sdp`]: SDP and offer/answer (RFC 4566, RFC 3264).
//! - [`transaction`]: RFC 3261 section 17 client and server transactions.
//! - [`dialog`]: RFC 3261 section 12 dialogs.
//! - [`ua`]: the user agent the gateway drives.
//!
//! How to drive it: build a [`UserAgent`] from a [`UaConfig`], call
//! [`UserAgent::start`], feed every received UDP datagram to
//! [`UserAgent::handle_datagram`] and call [`UserAgent::handle_timeout`] at
//! [`UserAgent::poll_timeout`]; after each of these (and after each call-control
//! method) drain [`UserAgent::poll_transmit`] and [`UserAgent::poll_event`].
//! Nothing here reads a clock, opens a socket or sleeps: every input carries `now`.
#![forbid(unsafe_code)]

pub mod admission;
pub mod auth;
pub mod dialog;
pub mod message;
pub mod sdp;
pub mod transaction;
pub mod ua;
mod tx_table;
mod wire;

pub use transaction::TimerConfig;
pub use ua::{Account, AssertedIdentity, CallHandle, EndReason, Event, RegState, Transmit, UaConfig, UaError, UserAgent};
