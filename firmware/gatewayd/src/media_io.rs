//! The media I/O thread: moves RTP packets between UDP sockets and the rt
//! thread's packet queues, so the rt thread never makes a system call.
//!
//! One socket per active channel, non-blocking, polled every millisecond.
//! Packets are accepted only from the negotiated remote IP address (any
//! port, so a far end behind a port-changing NAT still works); everything
//! else is counted and dropped.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use heapless::spsc::{Consumer, Producer};

use crate::rt::{Packet, MAX_PACKET};

pub enum MediaCommand {
    /// Start relaying `channel` through `socket`, sending to `remote`.
    Open { channel: u8, socket: UdpSocket, remote: SocketAddr },
    /// Stop relaying `channel` and close its socket.
    Close { channel: u8 },
    /// Send `channel`'s packets to a new address (a re-INVITE or the 2xx
    /// after early media moved the far end's media).
    Retarget { channel: u8, remote: SocketAddr },
    /// On hold (the far end asked for sendonly/inactive, or c=0.0.0.0): no
    /// packets go out; what comes in is still played.
    Hold { channel: u8, on: bool },
}

#[derive(Debug, Default)]
pub struct MediaStats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub foreign_source: AtomicU64,
    pub send_errors: AtomicU64,
    pub in_overruns: AtomicU64,
}

pub struct MediaIo {
    commands: mpsc::Sender<MediaCommand>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<MediaStats>,
}

struct Slot {
    socket: UdpSocket,
    remote: SocketAddr,
    held: bool,
}

impl MediaIo {
    pub fn start(
        channels: usize,
        packets_out: Consumer<'static, Packet>,
        packets_in: Producer<'static, Packet>,
    ) -> std::io::Result<MediaIo> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(MediaStats::default());
        let thread = std::thread::Builder::new().name("media-io".into()).spawn({
            let stop = stop.clone();
            let stats = stats.clone();
            move || run(channels, rx, packets_out, packets_in, stop, stats)
        })?;
        Ok(MediaIo { commands: tx, stop, thread: Some(thread), stats })
    }

    pub fn open(&self, channel: u8, socket: UdpSocket, remote: SocketAddr) {
        let _ = self.commands.send(MediaCommand::Open { channel, socket, remote });
    }

    pub fn close(&self, channel: u8) {
        let _ = self.commands.send(MediaCommand::Close { channel });
    }

    pub fn retarget(&self, channel: u8, remote: SocketAddr) {
        let _ = self.commands.send(MediaCommand::Retarget { channel, remote });
    }

    pub fn hold(&self, channel: u8, on: bool) {
        let _ = self.commands.send(MediaCommand::Hold { channel, on });
    }
}

impl Drop for MediaIo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    channels: usize,
    commands: mpsc::Receiver<MediaCommand>,
    mut packets_out: Consumer<'static, Packet>,
    mut packets_in: Producer<'static, Packet>,
    stop: Arc<AtomicBool>,
    stats: Arc<MediaStats>,
) {
    let mut slots: Vec<Option<Slot>> = (0..channels).map(|_| None).collect();
    let mut pkt = Packet::empty();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                MediaCommand::Open { channel, socket, remote } => {
                    if let Some(slot) = slots.get_mut(channel as usize) {
                        if socket.set_nonblocking(true).is_ok() {
                            *slot = Some(Slot { socket, remote, held: false });
                        }
                    }
                }
                MediaCommand::Close { channel } => {
                    if let Some(slot) = slots.get_mut(channel as usize) {
                        *slot = None;
                    }
                }
                MediaCommand::Retarget { channel, remote } => {
                    if let Some(Some(slot)) = slots.get_mut(channel as usize) {
                        slot.remote = remote;
                    }
                }
                MediaCommand::Hold { channel, on } => {
                    if let Some(Some(slot)) = slots.get_mut(channel as usize) {
                        slot.held = on;
                    }
                }
            }
        }
        while let Some(out) = packets_out.dequeue() {
            if let Some(Some(slot)) = slots.get(out.channel as usize).filter(|s| s.as_ref().is_some_and(|s| !s.held)) {
                match slot.socket.send_to(out.bytes(), slot.remote) {
                    Ok(_) => stats.sent.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
        for (ch, slot) in slots.iter().enumerate() {
            let Some(slot) = slot else { continue };
            // Until WouldBlock, or an ICMP error surfaced: try next tick.
            while let Ok((n, from)) = slot.socket.recv_from(&mut pkt.data[..MAX_PACKET]) {
                if !same_host(from.ip(), slot.remote.ip()) {
                    stats.foreign_source.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                pkt.channel = ch as u8;
                pkt.len = n as u16;
                if packets_in.enqueue(pkt.clone()).is_err() {
                    stats.in_overruns.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a == b || (a.is_loopback() && b.is_loopback())
}

/// Hands out even RTP ports from the configured range, round robin, binding
/// each to prove it is free. Ports are counted in `u32` so that a range
/// reaching 65535 wraps to its start instead of overflowing (which used to
/// advertise port 0 in a release build and panic in a debug one).
pub struct RtpPorts {
    ip: IpAddr,
    /// First and last even port of the range (`first > last`: none).
    first: u32,
    last: u32,
    next: u32,
}

impl RtpPorts {
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let first = (u32::from(min.max(2)) + 1) & !1;
        let last = u32::from(max) & !1;
        RtpPorts { ip, first, last, next: first }
    }

    pub fn bind(&mut self) -> std::io::Result<(UdpSocket, u16)> {
        let span = if self.first > self.last { 0 } else { (self.last - self.first) / 2 + 1 };
        for _ in 0..span {
            let port = self.next;
            self.next = if port + 2 > self.last { self.first } else { port + 2 };
            let Ok(port) = u16::try_from(port) else { continue };
            if let Ok(s) = UdpSocket::bind((self.ip, port)) {
                return Ok((s, port));
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free RTP port in the configured range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::make_queues;

    #[test]
    fn rtp_ports_are_even_and_wrap() {
        let mut p = RtpPorts::new("127.0.0.1".parse().unwrap(), 41001, 41005);
        let (_a, pa) = p.bind().unwrap();
        let (_b, pb) = p.bind().unwrap();
        assert_eq!((pa, pb), (41002, 41004));
        // 41002 and 41004 are held; the range is exhausted.
        assert!(p.bind().is_err());
        drop(_a);
        assert_eq!(p.bind().unwrap().1, 41002);
    }

    #[test]
    fn a_range_reaching_65535_wraps_instead_of_overflowing() {
        let mut p = RtpPorts::new("127.0.0.1".parse().unwrap(), 65531, 65535);
        let mut got = Vec::new();
        let mut held = Vec::new();
        while let Ok((s, port)) = p.bind() {
            got.push(port);
            held.push(s);
        }
        // Whatever else holds ports on this machine, never port 0 or one outside the range.
        assert!(got.iter().all(|&p| p % 2 == 0 && (65532..=65534).contains(&p)), "{got:?}");
        drop(held);
        let first = p.bind().unwrap().1;
        assert!((65532..=65534).contains(&first), "after wrapping: {first}");
        // A range with no even port at all binds nothing.
        assert!(RtpPorts::new("127.0.0.1".parse().unwrap(), 65535, 65535).bind().is_err());
    }

    #[test]
    fn hold_stops_sending_and_retarget_moves_the_far_end() {
        let (mut rtq, ctl) = make_queues();
        let io = MediaIo::start(2, ctl.packets_out, ctl.packets_in).unwrap();
        let far = UdpSocket::bind("127.0.0.1:0").unwrap();
        let moved = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&far, &moved] {
            s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        }
        io.open(0, UdpSocket::bind("127.0.0.1:0").unwrap(), far.local_addr().unwrap());
        let send = |q: &mut heapless::spsc::Producer<'static, Packet>, tag: &[u8]| {
            let mut p = Packet::empty();
            p.channel = 0;
            p.data[..tag.len()].copy_from_slice(tag);
            p.len = tag.len() as u16;
            q.enqueue(p).ok().unwrap();
        };
        let mut buf = [0u8; 16];
        send(&mut rtq.packets_out, b"one");
        assert_eq!(far.recv(&mut buf).ok(), Some(3));
        io.hold(0, true);
        std::thread::sleep(Duration::from_millis(20));
        send(&mut rtq.packets_out, b"two");
        assert!(far.recv(&mut buf).is_err(), "nothing is sent while held");
        io.hold(0, false);
        io.retarget(0, moved.local_addr().unwrap());
        std::thread::sleep(Duration::from_millis(20));
        send(&mut rtq.packets_out, b"three");
        assert_eq!(moved.recv(&mut buf).ok(), Some(5), "resumed, to the new address");
    }

    #[test]
    fn relays_both_ways() {
        let (mut rtq, ctl) = make_queues();
        let io = MediaIo::start(2, ctl.packets_out, ctl.packets_in).unwrap();
        let far = UdpSocket::bind("127.0.0.1:0").unwrap();
        far.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ours_addr = ours.local_addr().unwrap();
        io.open(1, ours, far.local_addr().unwrap());

        let mut p = Packet::empty();
        p.channel = 1;
        p.data[..3].copy_from_slice(b"abc");
        p.len = 3;
        rtq.packets_out.enqueue(p).ok().unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = far.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"abc"[..], ours_addr));

        far.send_to(b"xyz", ours_addr).unwrap();
        let got = (0..200).find_map(|_| {
            std::thread::sleep(Duration::from_millis(5));
            rtq.packets_in.dequeue()
        });
        let got = got.expect("packet relayed to the rt queue");
        assert_eq!((got.channel, got.bytes()), (1, &b"xyz"[..]));
        assert_eq!(io.stats.received.load(Ordering::Relaxed), 1);
    }
}
