//! HDLC decoder on arbitrary timeslot octets: every frame it delivers has a good FCS and
//! survives an encode/decode round trip.
#![no_main]

use gw_isdn::hdlc::{Decoder, Encoder, DEFAULT_MAX_FRAME, DEFAULT_MIN_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::default();
    // Split at a data-chosen point to exercise chunking.
    let cut = data.first().map_or(0, |&b| b as usize).min(data.len());
    dec.feed(&data[..cut]);
    dec.feed(&data[cut..]);
    let mut frames = Vec::new();
    while let Some(f) = dec.poll_frame() {
        assert!(f.len() + 2 >= DEFAULT_MIN_FRAME && f.len() + 2 <= DEFAULT_MAX_FRAME);
        frames.push(f);
    }
    let mut enc = Encoder::new();
    for f in &frames {
        enc.queue_frame(f);
    }
    let mut stream = vec![0; enc.pending() + 1];
    enc.fill(&mut stream);
    let mut again = Decoder::default();
    again.feed(&stream);
    for f in &frames {
        assert_eq!(again.poll_frame().as_ref(), Some(f));
    }
    assert_eq!(again.poll_frame(), None);
});
