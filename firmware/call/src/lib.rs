//! Call control, sans-IO: the pieces of the call router that need no sockets, no
//! hardware and no clock. Every entry point that depends on time takes `now`; nothing
//! here reads a clock, sleeps, spawns or logs, so everything is tested in virtual time.
//!
//! The pieces, and how gatewayd's switch uses them:
//!
//! 1. **Causes** ([`cause`]): a call ends with a [`Release`]: a Q.850 [`Cause`] (a
//!    newtype, so unknown values pass through), the [`Location`], and when the gateway
//!    ended it, a [`LocalReason`] for `show calls`. `Display` reads "17 user busy" or
//!    "38 network out of order (trunk down)".
//! 2. **The SIP edge** ([`sip_cause`]): each trunk has a [`CauseMap`] (RFC 3398
//!    tables, overlaid by the trunk's `[trunk.cause_map]` [`CauseMapConfig`]). A SIP
//!    failure becomes `map.cause_for(status, reason::parse(reason_header))` (an RFC
//!    3326 `Reason: Q.850;cause=N` wins); a release towards SIP becomes
//!    `map.status_for(cause)` (`None` for 16: send BYE/CANCEL) plus
//!    `reason::format_reason(cause)` in the `Reason` header.
//! 3. **The route table** ([`route`]): `[[group]]` and `[[route]]` from the document
//!    ([`GroupConfig`], [`RouteConfig`]) and the trunk names go into
//!    [`RouteTable::new`], which refuses a bad table whole with a [`RouteError`]
//!    naming the rule (`route[3].to[1]: ...`) or accepts it with [`RouteWarning`]s.
//!    An FXS port collects digits against [`RouteTable::digit_map`] of its group
//!    ([`RouteTable::fxs_source`]); when the number is complete the switch asks
//!    [`RouteTable::lookup`] (source, called, calling) for a [`RouteMatch`]: the
//!    manipulated numbers and the ordered destinations; `NeedMore` tells an overlap
//!    source to wait for digits. [`RouteTable::trace`] prints the same decision, rule
//!    by rule, for the console's `test route`.
//! 4. **One call's routing** ([`call`]): the switch checks [`Limits`] (the rule's
//!    `max_calls`, the source's calls per minute), creates a [`Routing`] from the
//!    match and asks it for a [`Step`]: `Try` a destination (with the setup deadline
//!    to wait on) or `GiveUp` with a release for the A side. It reports
//!    `progress`/`answered`/`attempt_failed` and drives `poll_timeout` /
//!    `handle_timeout`; [`Routing::attempts`] is what `show calls` prints.
//!
//! Departures from CALL-CONTROL.md 2.3-2.7 and the brief, and why:
//! - `RouteTable` takes group and trunk *names* (`&str`), not ids: the switch's ids do
//!   not exist yet and names are what the installer reads in traces and errors.
//! - `digit_map` returns `Option<DialPlan>`: gw-line's `DialPlan` cannot be empty, and
//!   a source no rule takes calls from has no digit map.
//! - `Routing::attempt_failed` and `handle_timeout` take the health closure too: a
//!   failover must be able to skip a backup that is down.
//! - Loops are checked only for destinations that can send the call back in (trunks,
//!   groups with FXO ports), not for `owner` or FXS groups; see [`route`].
//! - Shadowed rules are refused (an error, not a warning); see [`route`].
//! - The switch ([`switch`]) joins two legs per call through one vocabulary
//!   ([`Signal`]); the leg adapters (FXS line, SIP dialog) live in gatewayd, which
//!   owns the hardware, the SIP user agents and the media, and the switch never
//!   sees media: it says which leg is whose peer.
#![forbid(unsafe_code)]

pub mod call;
pub mod cause;
pub mod route;
pub mod sip_cause;
pub mod switch;

pub use call::{Attempt, Hunt, Limits, Routing, Step, TargetState};
pub use cause::{Cause, CauseClass, CauseSet, LocalReason, Location, Release, ReleaseTone};
pub use route::{
    Destination, DestinationConfig, GroupConfig, Lookup, Presentation, RouteConfig, RouteError, RouteMatch, RouteTable,
    RouteTrace, RouteWarning, Select, Target,
};
pub use sip_cause::{reason, CauseMap, CauseMapConfig, CauseMapError};
pub use switch::{CallEvent, CallRecord, CallView, LegId, Output, Setup, Side, Signal, Switch};
