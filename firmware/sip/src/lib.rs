//! Sans-IO SIP for the gateway (RFC 3261 and friends) on `rsip` types.
//!
//! Layers, bottom up:
//! - [`message`]: the normalizing layer in front of rsip (framing, unfolding,
//!   compact forms, extension methods).
//! - [`auth`]: digest authentication (RFC 2617/7616/8760), never rsip's helper.
//! - [`sdp`]: SDP and offer/answer (RFC 4566, RFC 3264).
//! - [`transaction`]: RFC 3261 section 17 client and server transactions.
//! - [`dialog`]: RFC 3261 section 12 dialogs.
//! - [`ua`]: the user agent the gateway drives.
#![forbid(unsafe_code)]

pub mod auth;
pub mod dialog;
pub mod message;
pub mod sdp;
pub mod transaction;
pub mod ua;
