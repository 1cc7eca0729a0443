//! Call control, sans-IO (docs to come).
#![forbid(unsafe_code)]

pub mod cause;
pub mod sip_cause;

pub use cause::{Cause, CauseClass, CauseSet, LocalReason, Location, Release};
pub use sip_cause::{reason, CauseMap, CauseMapConfig, CauseMapError};
pub mod route;

pub use route::{
    Destination, DestinationConfig, GroupConfig, Lookup, Presentation, RouteConfig, RouteError, RouteMatch, RouteTable,
    RouteTrace, RouteWarning, Select, Target,
};
