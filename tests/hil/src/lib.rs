//! Hardware-in-the-loop harness: the real programs that surround `gatewayd`
//! in the scenario tests, and the measurements the scenarios make.
//!
//! Peers (all Debian packages, installed by `tools/test`; see `README.md`):
//! - [`Kamailio`]: the carrier, a registrar and authenticating proxy
//!   (`peers/kamailio.cfg`). Every user has the same password.
//! - [`FarEnd`]: a phone on the carrier side, baresip driven over ctrl_tcp.
//!   It registers, auto-answers, sends a WAV, records what it receives.
//! - [`Sipp`]: SIPp running the scenarios in `peers/sipp/` (register, call
//!   with audio, answering UAS, ringing UAS that waits for CANCEL).
//!
//! How to drive it: start [`Kamailio`] on a [`free_udp_port`], start the
//! gateway (see [`gatewayd_binary`]) and a [`FarEnd`] against its
//! [`Kamailio::addr`], wait for registrations, then place calls from either
//! side and measure the far end's [`FarEnd::recording`] with
//! [`dominant_frequency`]. Every peer is a child process stopped on `Drop`,
//! including during a panic's unwinding; keep them in locals of the test.
//!
//! Everything listens on 127.0.0.1. `tools/test` runs these tests inside
//! `unshare -n` (a network namespace with only `lo`), so no peer can reach
//! or advertise another address.

#![forbid(unsafe_code)]

mod audio;
mod farend;
mod kamailio;
mod process;
mod sipp;

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};

pub use audio::{
    dominant_frequency, level_dbm0, linear_to_ulaw, read_wav, tone, tone_wav, write_ulaw, write_wav, Wav, DBM0_PEAK,
    RATE,
};
pub use farend::{Event, FarEnd, DEFAULT_CODECS, PLAY_SECONDS};
pub use kamailio::Kamailio;
pub use sipp::{sipp_register, sipp_scenario, Sipp, SippOutcome};

/// A UDP port on 127.0.0.1 that was free a moment ago (the OS picks it).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("binding UDP 127.0.0.1:0")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("binding TCP 127.0.0.1:0")
}

/// A port free for both UDP and TCP (baresip's SIP listens on both).
pub fn free_udp_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding UDP 127.0.0.1:0");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// `count` consecutive UDP ports, all free a moment ago, for a peer that
/// takes a port range (baresip's RTP). Ranges are handed out from 30000 up
/// (wrapping before 32768, below Linux's ephemeral range) so that peers in
/// one test process never get overlapping ranges.
pub fn free_udp_port_range(count: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let count = count.clamp(2, 256);
    let span = 2768 / count;
    // Start somewhere that depends on the process so that two test binaries
    // running at once are unlikely to probe the same ranges first.
    let offset = (std::process::id() % span as u32) as u16;
    loop {
        let slot = (NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(offset)) % span;
        let lo = 30000 + slot * count;
        let hi = lo + count - 1;
        let all_free = (lo..=hi).all(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
        if all_free {
            return (lo, hi);
        }
    }
}

/// The `gatewayd` executable to test: `$GATEWAYD_BIN` when set, else the one
/// built next to this test binary (`<target>/debug/gatewayd` for a test in
/// `<target>/debug/deps/`), else `target/{debug,release}/gatewayd` of the
/// workspace. The path is returned even if nothing exists there yet, so the
/// caller's spawn error names it.
pub fn gatewayd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GATEWAYD_BIN") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // <target>/<profile>/deps/<test binary>
        if let Some(profile_dir) = exe.parent().and_then(|deps| deps.parent()) {
            candidates.push(profile_dir.join("gatewayd"));
            if let Some(target) = profile_dir.parent() {
                candidates.push(target.join("debug/gatewayd"));
                candidates.push(target.join("release/gatewayd"));
            }
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        candidates.push(dir.join("debug/gatewayd"));
        candidates.push(dir.join("release/gatewayd"));
    }
    let workspace = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    candidates.push(workspace.join("target/debug/gatewayd"));
    candidates.push(workspace.join("target/release/gatewayd"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates.swap_remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_do_not_overlap_and_are_free() {
        let a = free_udp_port_range(8);
        let b = free_udp_port_range(8);
        assert_eq!(a.1 - a.0, 7);
        assert!(a.1 < b.0 || b.1 < a.0, "{a:?} overlaps {b:?}");
        assert!(a.0 >= 30000 && a.1 < 32768);
    }

    #[test]
    fn free_ports_can_be_bound() {
        let p = free_udp_tcp_port();
        UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        assert_ne!(free_udp_port(), 0);
        assert_ne!(free_tcp_port(), 0);
    }

    #[test]
    fn gatewayd_bin_env_overrides() {
        // Only this test touches the variable.
        std::env::set_var("GATEWAYD_BIN", "/opt/x/gatewayd");
        assert_eq!(gatewayd_binary(), PathBuf::from("/opt/x/gatewayd"));
        std::env::remove_var("GATEWAYD_BIN");
        assert!(gatewayd_binary().ends_with("gatewayd"));
    }
}
