//! Caller ID on the line: the timing of the on-hook and off-hook transmission (what an FXS
//! port sends) and the receiver an FXO port runs.
//!
//! Builds on [`crate::callerid`] (message coding and the 1200 bit/s FSK modem). This module
//! owns the procedures around the modem:
//!
//! - `CallerIdSender`: a sans-IO state machine that produces the whole waveform of one
//!   caller ID delivery and tells the line layer when to ring or reverse polarity:
//!   Telcordia GR-30-CORE (data between the first and second ring), ETSI EN 300 659-1
//!   (data before the first ring after a line reversal with DT-AS, or after an RP-AS ring
//!   burst), ETSI DTMF CLIP, and caller ID on call waiting (GR-30 / SR-3004 off-hook:
//!   the CPE alerting signal 2130 + 2750 Hz, then the ACK wait for DTMF 'A' or 'D').
//! - `CallerIdReceiver`: FSK demodulation plus message decoding, and ETSI DTMF CLIP
//!   decoding ("A1234567C").
//!
//! The sample count is the clock: every call that consumes or produces audio advances
//! time by that many samples at 8 kHz.
