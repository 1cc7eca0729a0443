//! Analog line signalling, sans-IO: the FXS port state machine
//! ([`FxsLine`]), the digit map ([`DialPlan`]) it collects against, and the
//! FXO line machine ([`FxoLine`], the gateway as the phone on an exchange
//! line; its module docs say how to drive it).
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
pub mod fxo;
pub mod fxs;

pub use dialplan::{DialPlan, DialPlanError, DialPlanErrorReason, Match};
pub use fxs::{Action, CallSignal, CallerIdStep, FxsConfig, FxsLine, State, Tone, CALLER_ID_GUARD, MAX_DIGITS};
pub use fxo::{
    AnswerSupervision, CallerIdFault, CallerIdInfo, DialMode, DialToneWait, DisconnectMethod, DisconnectSupervision,
    FxoAction, FxoCallerId, FxoCause, FxoConfig, FxoLine, FxoState, LineTone, TwoStage,
};
