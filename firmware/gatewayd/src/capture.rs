//! Packet capture of the gateway's own SIP and RTP, for the installer.
//!
//! `capture start` (console) begins recording every SIP datagram the
//! control plane sends or receives and every RTP packet the media thread
//! relays, into memory, up to a size limit (then packets are counted as
//! dropped, never stored). `capture stop` ends it; the recording stays until
//! the next start and is downloaded from the web UI (`GET /api/capture.pcap`)
//! or written to a file from the console (`capture save FILE`).
//!
//! The format is classic pcap with link type RAW (101): each packet is an
//! IPv4 or IPv6 header and a UDP header made up from the addresses and ports
//! it was sent from and to, then the payload, so tshark and Wireshark decode
//! the SIP (and the RTP with `-d udp.port==N,rtp` or the RTP heuristic).
//! What is recorded is what the sockets carried: the gateway's view, not a
//! wire capture (no retransmissions by the kernel, no fragments).
//!
//! Recording costs one relaxed atomic load per packet while off; the rt
//! thread never touches it (the media thread does).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default size limit of one recording.
pub const DEFAULT_LIMIT: usize = 16 << 20;

const LINKTYPE_RAW: u32 = 101;

#[derive(Debug, Default)]
struct Recording {
    bytes: Vec<u8>,
    packets: u64,
    dropped: u64,
    limit: usize,
}

/// A shared recorder: see the module docs.
#[derive(Debug, Default)]
pub struct Capture {
    on: AtomicBool,
    rec: Mutex<Recording>,
}

/// What `capture status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureStatus {
    pub running: bool,
    pub packets: u64,
    pub bytes: usize,
    pub dropped: u64,
}

impl std::fmt::Display for CaptureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.running { "running" } else { "stopped" };
        write!(f, "capture {state}: {} packets, {} bytes", self.packets, self.bytes)?;
        if self.dropped > 0 {
            write!(f, ", {} dropped at the size limit", self.dropped)?;
        }
        Ok(())
    }
}

impl Capture {
    fn rec(&self) -> std::sync::MutexGuard<'_, Recording> {
        self.rec.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a new recording (the previous one is discarded).
    pub fn start(&self, limit: usize) {
        let mut r = self.rec();
        *r = Recording { bytes: header(), packets: 0, dropped: 0, limit: limit.max(64) };
        self.on.store(true, Ordering::Release);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.on.store(false, Ordering::Release);
    }

    pub fn status(&self) -> CaptureStatus {
        let r = self.rec();
        CaptureStatus { running: self.on.load(Ordering::Acquire), packets: r.packets, bytes: r.bytes.len(), dropped: r.dropped }
    }

    /// The recording so far as a pcap file (`None`: nothing was recorded
    /// since gatewayd started).
    pub fn pcap(&self) -> Option<Vec<u8>> {
        let r = self.rec();
        (!r.bytes.is_empty()).then(|| r.bytes.clone())
    }

    /// Records one UDP datagram from `from` to `to`, if a recording runs.
    pub fn record(&self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let packet = ip_udp(from, to, payload);
        let mut r = self.rec();
        if r.bytes.len() + 16 + packet.len() > r.limit {
            r.dropped += 1;
            return;
        }
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        for v in [t.as_secs() as u32, t.subsec_micros(), packet.len() as u32, packet.len() as u32] {
            r.bytes.extend_from_slice(&v.to_le_bytes());
        }
        r.bytes.extend_from_slice(&packet);
        r.packets += 1;
    }
}

/// The pcap global header: magic, version 2.4, UTC, snaplen 65535, RAW.
fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&65_535u32.to_le_bytes());
    h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    h
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IP packet carrying `payload` in UDP from `from` to `to` (IPv6 when
/// either address is IPv6, v4-mapped as needed).
fn ip_udp(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(65_000)];
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(udp_len as usize);
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&0u16.to_be_bytes()); // no UDP checksum (allowed for IPv4; tshark accepts it for v6 captures)
    udp.extend_from_slice(payload);
    match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + udp.len() as u16;
            let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            ip.extend_from_slice(&udp);
            ip
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            ip.extend_from_slice(&[17, 64]);
            ip.extend_from_slice(&v6(s).octets());
            ip.extend_from_slice(&v6(d).octets());
            ip.extend_from_slice(&udp);
            ip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn off_records_nothing_and_a_recording_is_a_pcap_with_ip_udp_packets() {
        let c = Capture::default();
        c.record(a("127.0.0.1:5060"), a("127.0.0.2:5060"), b"OPTIONS");
        assert_eq!(c.pcap(), None);
        c.start(DEFAULT_LIMIT);
        c.record(a("127.0.0.1:5062"), a("127.0.0.2:5060"), b"OPTIONS sip:x SIP/2.0\r\n\r\n");
        c.stop();
        c.record(a("127.0.0.1:5062"), a("127.0.0.2:5060"), b"late");
        let st = c.status();
        assert_eq!((st.running, st.packets, st.dropped), (false, 1, 0));
        let p = c.pcap().unwrap();
        assert_eq!(&p[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(u32::from_le_bytes(p[20..24].try_into().unwrap()), LINKTYPE_RAW);
        let len = u32::from_le_bytes(p[32..36].try_into().unwrap()) as usize;
        let ip = &p[40..40 + len];
        assert_eq!(ip[0], 0x45);
        assert_eq!(checksum(&ip[..20]), 0, "the IPv4 header checksum is right");
        assert_eq!(u16::from_be_bytes([ip[20], ip[21]]), 5062);
        assert_eq!(&ip[28..35], b"OPTIONS");
    }

    #[test]
    fn the_size_limit_holds_and_counts_what_it_dropped() {
        let c = Capture::default();
        c.start(1000);
        for _ in 0..20 {
            c.record(a("[::1]:5060"), a("127.0.0.1:4000"), &[0u8; 172]);
        }
        let st = c.status();
        assert!(st.bytes <= 1000 && st.packets >= 1 && st.dropped == 20 - st.packets, "{st}");
        assert!(st.to_string().contains("dropped at the size limit"));
    }

    /// tshark (a peer nobody here wrote) reads the file: SIP decoded, no
    /// malformed packet.
    #[test]
    fn tshark_reads_it() {
        if std::process::Command::new("tshark").arg("-v").output().is_err() {
            eprintln!("tshark not installed (tools/test installs it): skipped");
            return;
        }
        let c = Capture::default();
        c.start(DEFAULT_LIMIT);
        let invite = "INVITE sip:2000@127.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\nFrom: <sip:1001@x>;tag=1\r\nTo: <sip:2000@x>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        c.record(a("127.0.0.1:5062"), a("127.0.0.2:5060"), invite.as_bytes());
        let mut rtp = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        rtp.extend_from_slice(&[0xff; 160]);
        c.record(a("[::1]:20000"), a("[::1]:30000"), &rtp);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcap");
        std::fs::write(&path, c.pcap().unwrap()).unwrap();
        let out = std::process::Command::new("tshark")
            .args(["-r", path.to_str().unwrap(), "-d", "udp.port==5060,sip", "-d", "udp.port==20000,rtp", "-T", "fields", "-e", "frame.protocols", "-e", "_ws.malformed"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(lines[0].contains("ip:udp:sip"), "{text}");
        assert!(lines[1].contains("ipv6:udp:rtp"), "{text}");
        assert!(!text.contains("malformed"), "{text}");
    }
}
