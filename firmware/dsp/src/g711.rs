//! ITU-T G.711 PCM companding (A-law and µ-law).
//!
//! The codec arithmetic comes from the `audio-codec-algorithms` crate (the design card asks
//! for a codec crate, not our own tables); this module only gives it the gateway's shape:
//! a [`Law`] chosen per trunk (µ-law in North America and Japan, A-law elsewhere, G.711
//! section 1) and whole-frame helpers for the rt loop.
//!
//! Note (G.711 Table 2): µ-law has two codes for zero, 0x7F ("negative zero") and 0xFF;
//! both decode to 0 and 0 encodes to 0xFF, so 0x7F is the one code that does not
//! survive decode -> encode. A-law has no such pair.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

/// Companding law of a G.711 stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Law {
    /// µ-law (PCMU, RTP payload type 0).
    Ulaw,
    /// A-law (PCMA, RTP payload type 8).
    Alaw,
}

impl Law {
    /// The static RTP payload type of this law (RFC 3551 table 4).
    pub const fn rtp_payload_type(self) -> u8 {
        match self {
            Law::Ulaw => 0,
            Law::Alaw => 8,
        }
    }

    /// The byte a silent channel carries (the code that decodes to zero/near zero).
    pub const fn silence(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }
}

/// Encode one linear sample.
#[inline]
pub fn encode(law: Law, s: i16) -> u8 {
    match law {
        Law::Ulaw => encode_ulaw(s),
        Law::Alaw => encode_alaw(s),
    }
}

/// Decode one G.711 byte to linear.
#[inline]
pub fn decode(law: Law, b: u8) -> i16 {
    match law {
        Law::Ulaw => decode_ulaw(b),
        Law::Alaw => decode_alaw(b),
    }
}

/// Encode `input` into `out[..input.len()]`. If `out` is shorter than `input` only
/// `out.len()` samples are encoded (never panics).
pub fn encode_frame(law: Law, input: &[i16], out: &mut [u8]) {
    match law {
        Law::Ulaw => input.iter().zip(out.iter_mut()).for_each(|(s, o)| *o = encode_ulaw(*s)),
        Law::Alaw => input.iter().zip(out.iter_mut()).for_each(|(s, o)| *o = encode_alaw(*s)),
    }
}

/// Decode `input` into `out[..input.len()]`. If `out` is shorter than `input` only
/// `out.len()` bytes are decoded (never panics).
pub fn decode_frame(law: Law, input: &[u8], out: &mut [i16]) {
    match law {
        Law::Ulaw => input.iter().zip(out.iter_mut()).for_each(|(b, o)| *o = decode_ulaw(*b)),
        Law::Alaw => input.iter().zip(out.iter_mut()).for_each(|(b, o)| *o = decode_alaw(*b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn every_code_round_trips() {
        for law in [Law::Ulaw, Law::Alaw] {
            for b in 0..=255u8 {
                let back = encode(law, decode(law, b));
                if law == Law::Ulaw && b == 0x7F {
                    // Negative zero folds onto positive zero (G.711 Table 2).
                    assert_eq!(back, 0xFF);
                } else {
                    assert_eq!(back, b, "{law:?} code {b:#04x}");
                }
            }
        }
    }

    /// Sort the 256 codes by decoded value: decode must be strictly monotonic in the
    /// code's magnitude within each sign, and encode must be monotonic over all i16.
    #[test]
    fn encode_is_monotonic_over_all_inputs() {
        for law in [Law::Ulaw, Law::Alaw] {
            let mut prev = i32::MIN;
            for s in i16::MIN..=i16::MAX {
                let v = decode(law, encode(law, s)) as i32;
                assert!(v >= prev, "{law:?}: decode(encode({s})) = {v} < {prev}");
                prev = v;
            }
        }
    }

    #[test]
    fn quantisation_error_is_within_half_a_step() {
        // G.711 reconstructs the middle of each quantisation interval. Steps double with
        // every segment, so the error bound is proportional to the magnitude: a step is at
        // most 1/16 of the segment's lower edge, and the smallest step is 16 (A-law, 16-bit
        // scale). The top interval clips, so stop short of full scale.
        for law in [Law::Ulaw, Law::Alaw] {
            for s in -32000i32..32000 {
                let d = decode(law, encode(law, s as i16)) as i32;
                let bound = 8 + s.abs() / 32;
                assert!((d - s).abs() <= bound, "{law:?} {s} -> {d}");
            }
        }
    }

    #[test]
    fn frames_match_sample_functions_and_short_output_is_safe() {
        let input: Vec<i16> = (0..80).map(|i| (i * 400 - 16000) as i16).collect();
        for law in [Law::Ulaw, Law::Alaw] {
            let mut enc = [0u8; 80];
            encode_frame(law, &input, &mut enc);
            for (s, b) in input.iter().zip(enc.iter()) {
                assert_eq!(*b, encode(law, *s));
            }
            let mut dec = [0i16; 80];
            decode_frame(law, &enc, &mut dec);
            for (b, s) in enc.iter().zip(dec.iter()) {
                assert_eq!(*s, decode(law, *b));
            }
            let mut short = [0u8; 10];
            encode_frame(law, &input, &mut short);
            assert_eq!(short[9], encode(law, input[9]));
            assert!(decode(law, law.silence()).abs() <= 8);
        }
    }
}
