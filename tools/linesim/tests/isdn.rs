//! linesim's end of an ISDN span against the real sim card of gw-hal: the card
//! side runs its own gw-isdn Q.921 link (as gatewayd does), clocked by a fake
//! rt thread; linesim plays the network side, gives layer 1, answers SABME,
//! carries Q.931 both ways, pulls layer 1, and plays audio on a B-channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gw_hal::isdn::{DChannel, L1State, Side, SpanKind};
use gw_hal::sim::{SimCard, SimCardConfig};
use gw_hal::{Frame, PcmBus, FRAME_SAMPLES};
use gw_isdn::q921::{self, DataLink, Event};
use linesim::Linesim;

const T: Duration = Duration::from_secs(5);

#[test]
fn linesim_plays_the_network_side_of_a_bri() {
    let cfg = SimCardConfig { listen: "127.0.0.1:0".parse().unwrap(), ports: 1, fxo_ports: 0 };
    let mut card = SimCard::start_with_spans(cfg, &[SpanKind::Bri]).unwrap();
    let mut d = card.take_dchannels().remove(0);
    d.set_side(Side::Te).unwrap();
    // The fake rt thread: channel 1 (B1) sends a constant 1000.
    let mut pcm = card.take_pcm().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let heard = Arc::new(std::sync::Mutex::new(0i16));
    let rt = std::thread::spawn({
        let (stop, heard) = (stop.clone(), heard.clone());
        move || {
            let mut tx = vec![[0i16; FRAME_SAMPLES]; 3];
            tx[1] = [1000; FRAME_SAMPLES];
            let mut rx: Vec<Frame> = vec![[0; FRAME_SAMPLES]; 3];
            while !stop.load(Ordering::Relaxed) {
                pcm.exchange(&tx, &mut rx);
                *heard.lock().unwrap() = rx[2][40];
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    let sim = Linesim::connect(card.local_addr()).unwrap();
    let span = sim.span(0);
    span.wait_present(T).unwrap();
    assert_eq!(span.plays().unwrap(), Side::Nt);
    // Layer 1 arrives at the card; the card side establishes layer 2.
    let end = Instant::now() + T;
    while !d.l1_status().is_up() {
        assert!(Instant::now() < end, "layer 1 never came");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut link = DataLink::new(q921::Config::bri(q921::Role::User, 0));
    link.dl_establish_request(Instant::now());
    let mut got = Vec::new();
    let mut pump = |link: &mut DataLink, d: &mut gw_hal::sim::SimDChannel, got: &mut Vec<Vec<u8>>| {
        let now = Instant::now();
        while let Some(f) = d.poll_frame() {
            link.handle_frame(now, &f);
        }
        if link.poll_timeout().is_some_and(|t| t <= now) {
            link.handle_timeout(now);
        }
        while let Some(f) = link.poll_transmit() {
            let _ = d.send_frame(&f);
        }
        while let Some(ev) = link.poll_event() {
            if let Event::Data(m) = ev {
                got.push(m);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let end = Instant::now() + T;
    while link.state() != q921::State::MultipleFrameEstablished {
        assert!(Instant::now() < end, "layer 2 never came up");
        pump(&mut link, &mut d, &mut got);
    }
    span.wait_l2(true, T).unwrap();
    // Q.931 from linesim to the card, and from the card to linesim.
    span.send_setup(5, "1001", Some("5551234"), Some(1)).unwrap();
    let end = Instant::now() + T;
    while got.is_empty() {
        assert!(Instant::now() < end, "no SETUP at the card");
        pump(&mut link, &mut d, &mut got);
    }
    let setup = gw_isdn::q931::Message::parse(&got[0]).unwrap();
    assert_eq!(setup.message_type, gw_isdn::q931::MessageType::Setup);
    assert_eq!(setup.call_ref.len, 1, "BRI: one-octet call reference");
    let alerting = gw_isdn::q931::Message::new(
        gw_isdn::q931::CallRef { len: 1, flag: true, value: 5 },
        gw_isdn::q931::MessageType::Alerting,
        vec![],
    );
    link.dl_data_request(Instant::now(), alerting.to_vec()).unwrap();
    pump(&mut link, &mut d, &mut got);
    assert_eq!(span.recv_q931(T).unwrap(), alerting);
    // B-channel audio both ways on B1 (card port 1) and B2 (port 2).
    let b1 = span.b_channel(0).unwrap();
    let m = b1.record(Duration::from_millis(100)).unwrap();
    assert!(m.iter().all(|&s| s == 1000), "B1 carries the card's audio");
    let b2 = span.b_channel(1).unwrap();
    b2.play_samples(vec![-321; 800], true);
    let end = Instant::now() + T;
    while *heard.lock().unwrap() != -321 {
        assert!(Instant::now() < end, "B2 audio never reached the card");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(span.b_channel(2).is_err(), "a BRI has two B-channels");
    // Pulling layer 1: the card sees it, linesim's layer 2 is gone.
    span.pull_l1().unwrap();
    let end = Instant::now() + T;
    while d.l1_status().state != L1State::Deactivated {
        assert!(Instant::now() < end, "layer 1 still up at the card");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!span.l2_up().unwrap());
    // Asking for activation while the line is pulled changes nothing.
    d.request_l1(true).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!d.l1_status().is_up());
    span.restore_l1().unwrap();
    let end = Instant::now() + T;
    while !d.l1_status().is_up() {
        assert!(Instant::now() < end, "layer 1 did not come back");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(span.stats().unwrap().bad_fcs, 0);
    stop.store(true, Ordering::Relaxed);
    rt.join().unwrap();
}
