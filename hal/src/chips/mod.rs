//! Drivers for real line-card chips, generic over `embedded_hal` 1.0 traits.
//!
//! Each driver core uses only `core`, `heapless` and `embedded-hal`; time is an
//! input (`tick(now_ms)`), never read from a clock.

pub mod si3050;
pub mod si3215;
