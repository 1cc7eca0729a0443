//! Analog line signalling, sans-IO: the FXS port state machine
//! ([`FxsLine`]) and the digit map ([`DialPlan`]) it collects against.
//!
//! The control plane owns one [`FxsLine`] per port. It feeds supervision
//! events from the HAL ([`gw_hal::FxsEvent`]), DTMF digits from the DSP and
//! call signals from the call router, each with the current time; drains
//! [`Action`]s with [`FxsLine::poll_action`] after every input and carries
//! them out (HAL ring/feed calls, rt-thread tone and media commands, SIP
//! requests); and calls [`FxsLine::handle_timeout`] when
//! [`FxsLine::poll_timeout`] is reached. Nothing here reads a clock, sleeps
//! or touches hardware, so every flow is tested in virtual time.
#![forbid(unsafe_code)]

pub mod dialplan;
pub mod fxs;

pub use dialplan::{DialPlan, DialPlanError, DialPlanErrorReason, Match};
pub use fxs::{Action, CallSignal, CallerIdStep, FxsConfig, FxsLine, State, Tone, CALLER_ID_GUARD, MAX_DIGITS};
