//! Chip drivers, generic over `embedded_hal` SPI and pins.
pub mod si3215;
