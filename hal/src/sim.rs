//! The sim line card (see hal/SIMLINK.md).
