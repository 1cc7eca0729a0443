//! Cost of one SIP event as a function of the live server transactions
//! (issue 14: it used to grow linearly). Prints microseconds per event
//! (OPTIONS in, 200 out, next wake-up asked) with 0 to 1,000 transactions
//! left by earlier requests.
//!
//! `cargo run --release -p gw-sip --example flood_cost`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gw_sip::{Account, TimerConfig, UaConfig, UserAgent};

fn options(i: u32) -> String {
    format!(
        "OPTIONS sip:2000@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKf{i}\r\nMax-Forwards: 70\r\n\
         From: <sip:9@gw.test>;tag=x{i}\r\nTo: <sip:2000@gw.test>\r\nCall-ID: flood{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn main() {
    let proxy: SocketAddr = "10.0.0.100:5060".parse().unwrap();
    let config = UaConfig {
        local_addr: "10.0.0.2:5060".parse().unwrap(),
        proxy,
        domain: "gw.test".into(),
        user_agent: "bench".into(),
        accounts: vec![Account { user: "2000".into(), auth_user: "2000".into(), password: "x".into() }],
        register_expires: 0,
        register_retry_base: Duration::from_secs(1),
        register_retry_max: Duration::from_secs(4),
        timers: TimerConfig::default(),
        rng_seed: 1,
    };
    let stranger: SocketAddr = "10.0.0.9:5060".parse().unwrap();
    println!("live server transactions -> us per OPTIONS event (handle + drain + poll_timeout)");
    for live in [0u32, 10, 100, 500, 1000] {
        let mut ua = UserAgent::new(config.clone());
        let now = Instant::now();
        for i in 0..live {
            ua.handle_datagram(now, stranger, options(i).as_bytes());
            while ua.poll_transmit().is_some() {}
        }
        let n = 250u32;
        let msgs: Vec<String> = (0..n).map(|i| options(1_000_000 + i)).collect();
        let t = Instant::now();
        for (i, m) in msgs.iter().enumerate() {
            // From the proxy: 250 more, under the cap (1,024 + the proxy reserve).
            ua.handle_datagram(now + Duration::from_micros(i as u64), proxy, m.as_bytes());
            while ua.poll_transmit().is_some() {}
            std::hint::black_box(ua.poll_timeout());
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!("{live:>6} -> {per:8.1} us  (table {})", ua.load().0);
    }
}
