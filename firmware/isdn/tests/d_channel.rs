//! The layers together: a TE and an NT data link talking through software
//! HDLC over a 64 kbit/s timeslot (8 octets per millisecond) in virtual time,
//! with bit errors on the line. FCS-failed frames are lost, T200/REJ recover
//! them, and layer 3 sees every message once, in order.

use std::time::{Duration, Instant};

use gw_isdn::hdlc::{Decoder, Encoder};
use gw_isdn::q921::{Config, DataLink, Event, Role, State};

/// xorshift64*: deterministic line noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Flips each bit with probability 1/`one_in`.
    fn corrupt(&mut self, octets: &mut [u8], one_in: u64) -> u64 {
        let mut flips = 0;
        for o in octets {
            for bit in 0..8 {
                if self.next() < u64::MAX / one_in {
                    *o ^= 1 << bit;
                    flips += 1;
                }
            }
        }
        flips
    }
}

struct Side {
    link: DataLink,
    enc: Encoder,
    dec: Decoder,
    received: Vec<Vec<u8>>,
    other_events: Vec<Event>,
}

impl Side {
    fn new(cfg: Config) -> Self {
        Side { link: DataLink::new(cfg), enc: Encoder::new(), dec: Decoder::default(), received: vec![], other_events: vec![] }
    }

    fn drain(&mut self) {
        while let Some(f) = self.link.poll_transmit() {
            self.enc.queue_frame(&f);
        }
        while let Some(e) = self.link.poll_event() {
            match e {
                Event::Data(d) => self.received.push(d),
                e => self.other_events.push(e),
            }
        }
    }
}

fn message(dir: u8, i: usize) -> Vec<u8> {
    // Q.931-sized messages of varying length, content tagged with direction and index.
    let mut m = vec![0x08, 0x01, dir, (i % 128) as u8];
    m.extend((0..(i * 7) % 120).map(|j| (i + j) as u8));
    m
}

fn run(te_cfg: Config, nt_cfg: Config, one_in: u64, seed: u64) -> (Side, Side, u64) {
    let mut now = Instant::now();
    let mut te = Side::new(te_cfg);
    let mut nt = Side::new(nt_cfg);
    let mut noise = Noise(seed);
    let mut flips = 0;
    te.link.dl_establish_request(now);
    let count = 60;
    let mut queued = false;
    // At most two minutes of line time.
    for _ms in 0..120_000 {
        if !queued && te.link.state() == State::MultipleFrameEstablished && nt.link.state() == State::MultipleFrameEstablished {
            for i in 0..count {
                te.link.dl_data_request(now, message(0xAA, i)).unwrap();
                nt.link.dl_data_request(now, message(0x55, i)).unwrap();
            }
            queued = true;
        }
        for s in [&mut te, &mut nt] {
            if s.link.poll_timeout().is_some_and(|t| t <= now) {
                s.link.handle_timeout(now);
            }
            s.drain();
        }
        let mut up = [0u8; 8];
        let mut down = [0u8; 8];
        te.enc.fill(&mut up);
        nt.enc.fill(&mut down);
        flips += noise.corrupt(&mut up, one_in) + noise.corrupt(&mut down, one_in);
        nt.dec.feed(&up);
        te.dec.feed(&down);
        while let Some(f) = nt.dec.poll_frame() {
            nt.link.handle_frame(now, &f);
        }
        while let Some(f) = te.dec.poll_frame() {
            te.link.handle_frame(now, &f);
        }
        te.drain();
        nt.drain();
        if queued && te.received.len() == count && nt.received.len() == count && te.link.outstanding() == 0 && nt.link.outstanding() == 0 {
            break;
        }
        now += Duration::from_millis(1);
    }
    (te, nt, flips)
}

fn assert_delivered(te: &Side, nt: &Side) {
    let want_at_nt: Vec<Vec<u8>> = (0..60).map(|i| message(0xAA, i)).collect();
    let want_at_te: Vec<Vec<u8>> = (0..60).map(|i| message(0x55, i)).collect();
    assert_eq!(nt.received, want_at_nt, "NT events {:?}", nt.other_events);
    assert_eq!(te.received, want_at_te, "TE events {:?}", te.other_events);
}

#[test]
fn clean_line_pri_and_bri() {
    for (te, nt) in [
        (Config::pri(Role::User), Config::pri(Role::Network)),
        (Config::bri(Role::User, 64), Config::bri(Role::Network, 64)),
    ] {
        let (te, nt, _) = run(te, nt, u64::MAX, 1);
        assert_delivered(&te, &nt);
        assert_eq!(te.dec.stats().bad_fcs + nt.dec.stats().bad_fcs, 0);
        assert_eq!(te.link.stats().retransmitted + nt.link.stats().retransmitted, 0);
    }
}

#[test]
fn noisy_line_loses_frames_and_recovers_them() {
    // Bit error rate 1/3000: about one frame in three is damaged.
    for (seed, pri) in [(1u64, true), (2, true), (3, true), (4, false), (5, false)] {
        let (te_cfg, nt_cfg) = if pri {
            (Config::pri(Role::User), Config::pri(Role::Network))
        } else {
            (Config::bri(Role::User, 64), Config::bri(Role::Network, 64))
        };
        let (te, nt, flips) = run(te_cfg, nt_cfg, 3_000, seed);
        assert_delivered(&te, &nt);
        let damaged = te.dec.stats().bad_fcs + nt.dec.stats().bad_fcs + te.dec.stats().aborts + nt.dec.stats().aborts
            + te.dec.stats().not_octet_aligned + nt.dec.stats().not_octet_aligned;
        let resent = te.link.stats().retransmitted + nt.link.stats().retransmitted;
        eprintln!("seed {seed}: flips {flips} damaged {damaged} resent {resent}");
        assert!(flips > 0 && damaged > 0 && resent > 0, "seed {seed}: flips {flips} damaged {damaged} resent {resent}");
        assert!(!te.other_events.contains(&Event::ReleaseIndication));
        assert!(!nt.other_events.contains(&Event::ReleaseIndication));
    }
}
