//! 8 kHz <-> 16 kHz polyphase FIR resampling for wideband trunks.
