//! Voice activity detection and comfort noise (RFC 3389).
