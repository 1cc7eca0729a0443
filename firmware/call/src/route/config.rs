//! The route table's configuration schema, embedded in gatewayd's TOML document as
//! `[[group]]` and `[[route]]` arrays. Typed on load (serde, unknown fields refused);
//! checked as a whole by [`super::RouteTable::new`].

use serde::{Deserialize, Serialize};

/// `[[group]]`: a named set of ports, usable as a source (`from`) and a destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    /// FXS ports, 1-based as printed on the box.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fxs: Vec<usize>,
    /// FXO ports, 1-based (reserved for the FXO work; such a group counts as PSTN).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fxo: Vec<usize>,
}

/// `[[route]]`: one rule. See the crate docs for an example.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Groups and trunks whose calls this rule takes.
    pub from: Vec<String>,
    /// Called-number patterns, any of: dial-plan syntax, `exact:1234`, `prefix:00`.
    pub called: Vec<String>,
    /// Calling-number patterns, any of; empty = any calling number (or none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calling: Vec<String>,
    /// Leading symbols removed from the called number...
    #[serde(default, skip_serializing_if = "is_zero")]
    pub strip: usize,
    /// ...then these prepended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Replaces the whole called number (instead of strip and prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<String>,
    /// Prepended to the calling number.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub calling_prefix: String,
    /// Presentation of the calling number towards the destination; absent = keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presentation: Option<Presentation>,
    /// Simultaneous calls through this rule; absent = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
    /// Checked before every other rule, and never shadowed by a non-emergency one;
    /// the switch should not refuse such a call for limits.
    #[serde(default, skip_serializing_if = "is_false")]
    pub emergency: bool,
    /// Destinations, tried in order.
    pub to: Vec<DestinationConfig>,
}

/// One entry of `to`: exactly one of `owner = true`, `trunk = ".."`, `group = ".."`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// The FXS port whose number is the called number.
    #[serde(default, skip_serializing_if = "is_false")]
    pub owner: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// How a group's port is picked (groups only); default `first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<Select>,
    /// Causes that move on to the next destination; default
    /// [`super::DEFAULT_FAILOVER_ON`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_on: Option<Vec<u16>>,
    /// No proceeding or alerting within this counts as cause 102; default 3000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_timeout_ms: Option<u64>,
}

/// Presentation of the calling number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presentation {
    Allowed,
    Restricted,
}

/// How a port of a group destination is picked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Select {
    /// The first idle port in the group's order.
    #[default]
    First,
    /// The idle port after the one picked last time.
    RoundRobin,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}
