//! The media I/O thread: moves RTP packets between UDP sockets and the rt
//! thread's packet queues, so the rt thread never makes a system call.
//!
//! One socket per active channel, non-blocking, polled every millisecond.
//! Packets are accepted only from one source address and port: the
//! negotiated one, or, when the first packet comes from the negotiated IP
//! address but another port (a port-changing NAT), that one (symmetric RTP
//! latching, and we then send there too). The first accepted packet locks the
//! source for the rest of the call and `connect`s the socket to it, so the
//! kernel itself drops every other source before it costs us anything; a
//! stream never moves to another source on its own. Everything else is
//! counted and dropped.
//!
//! A flood into one socket cannot starve the others or the send path: each
//! socket is read at most [`READ_BUDGET`] packets per round, and each channel
//! may put at most its share of the rt thread's packet queue in it per 10 ms
//! (a far end that floods its own call does not silence the others).

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
    /// Accepted packets dropped because their channel went over its share.
    pub rate_limited: AtomicU64,
}

pub struct MediaIo {
    commands: mpsc::Sender<MediaCommand>,
    /// Per channel: when its last packet was accepted (or it was opened),
    /// in ms since `epoch`, for the RTP inactivity check.
    last_rx_ms: Arc<Vec<AtomicU64>>,
    epoch: std::time::Instant,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<MediaStats>,
}

/// Packets read from one socket per round (1 ms): 64,000 packets/s per
/// channel, far above any real stream (50/s) and bounded under a flood.
pub const READ_BUDGET: usize = 64;

struct Slot {
    socket: UdpSocket,
    /// From the SDP.
    remote: SocketAddr,
    /// The source locked by the first accepted packet (we send there too).
    latched: Option<SocketAddr>,
    /// Packets queued for the rt thread in the current 10 ms window.
    queued: usize,
    held: bool,
    /// Our address, for the packet capture.
    local: SocketAddr,
}

impl Slot {
    /// Whether a packet from `from` belongs to the stream; locks the source
    /// on the first one.
    fn accept(&mut self, from: SocketAddr) -> bool {
        match self.latched {
            Some(l) => l == from,
            None => {
                let negotiated = from == self.remote
                    || (from.port() == self.remote.port() && same_host(from.ip(), self.remote.ip()));
                // A NAT may change the port, never the address.
                let nat = from.ip() == self.remote.ip();
                if negotiated || nat {
                    self.latched = Some(from);
                    // From now on the kernel drops other sources for us.
                    let _ = self.socket.connect(from);
                }
                negotiated || nat
            }
        }
    }

    fn destination(&self) -> SocketAddr {
        self.latched.unwrap_or(self.remote)
    }

    /// The far end moved its media (re-INVITE, 2xx after early media): the
    /// new negotiated address is the only source from now on (the socket is
    /// connected to it at once, so the old one is dropped by the kernel).
    fn retarget(&mut self, remote: SocketAddr) {
        self.remote = remote;
        self.latched = Some(remote);
        let _ = self.socket.connect(remote);
    }
}

impl MediaIo {
    pub fn start(
        channels: usize,
        packets_out: Consumer<'static, Packet>,
        packets_in: Producer<'static, Packet>,
    ) -> std::io::Result<MediaIo> {
        Self::start_with(channels, packets_out, packets_in, Arc::default())
    }

    /// As [`MediaIo::start`], recording the RTP into `capture` while it runs.
    pub fn start_with(
        channels: usize,
        packets_out: Consumer<'static, Packet>,
        packets_in: Producer<'static, Packet>,
        capture: Arc<crate::capture::Capture>,
    ) -> std::io::Result<MediaIo> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(MediaStats::default());
        let epoch = std::time::Instant::now();
        let last_rx_ms: Arc<Vec<AtomicU64>> = Arc::new((0..channels).map(|_| AtomicU64::new(0)).collect());
        let thread = std::thread::Builder::new().name("media-io".into()).spawn({
            let stop = stop.clone();
            let stats = stats.clone();
            let activity = Activity { last_rx_ms: last_rx_ms.clone(), epoch };
            move || run(channels, rx, packets_out, packets_in, stop, stats, activity, capture)
        })?;
        Ok(MediaIo { commands: tx, last_rx_ms, epoch, stop, thread: Some(thread), stats })
    }

    /// How long `channel` has received no packet from its far end (since it
    /// was opened, if none came); `None` for a channel out of range.
    pub fn rx_idle(&self, channel: u8) -> Option<Duration> {
        let last = self.last_rx_ms.get(channel as usize)?.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        Some(Duration::from_millis(now.saturating_sub(last)))
    }

    pub fn open(&self, channel: u8, socket: UdpSocket, remote: SocketAddr) {
        if let Some(l) = self.last_rx_ms.get(channel as usize) {
            l.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
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

struct Activity {
    last_rx_ms: Arc<Vec<AtomicU64>>,
    epoch: std::time::Instant,
}

fn run(
    channels: usize,
    commands: mpsc::Receiver<MediaCommand>,
    mut packets_out: Consumer<'static, Packet>,
    mut packets_in: Producer<'static, Packet>,
    stop: Arc<AtomicBool>,
    stats: Arc<MediaStats>,
    activity: Activity,
    capture: Arc<crate::capture::Capture>,
) {
    let mut slots: Vec<Option<Slot>> = (0..channels).map(|_| None).collect();
    let mut pkt = Packet::empty();
    // Each channel's share of the rt queue per 10 ms tick (at least 4: a
    // 10 ms stream with a late burst still fits).
    let share = ((crate::rt::PACKET_QUEUE - 1) / channels.max(1)).max(4);
    let mut window = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if window.elapsed() >= Duration::from_millis(10) {
            window = std::time::Instant::now();
            for slot in slots.iter_mut().flatten() {
                slot.queued = 0;
            }
        }
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                MediaCommand::Open { channel, socket, remote } => {
                    if let Some(slot) = slots.get_mut(channel as usize) {
                        if socket.set_nonblocking(true).is_ok() {
                            let local = socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                            *slot = Some(Slot { socket, remote, latched: None, queued: 0, held: false, local });
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
                        slot.retarget(remote);
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
                match slot.socket.send_to(out.bytes(), slot.destination()) {
                    Ok(_) => {
                        capture.record(slot.local, slot.destination(), out.bytes());
                        stats.sent.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
        let now_ms = activity.epoch.elapsed().as_millis() as u64;
        for (ch, slot) in slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.held {
                // A held call may have no RTP at all (inactive): not a dead one.
                if let Some(l) = activity.last_rx_ms.get(ch) {
                    l.store(now_ms, Ordering::Relaxed);
                }
            }
            // Until WouldBlock, an ICMP error surfaced or the budget is
            // spent: try next round.
            for _ in 0..READ_BUDGET {
                let Ok((n, from)) = slot.socket.recv_from(&mut pkt.data[..MAX_PACKET]) else { break };
                if !slot.accept(from) {
                    stats.foreign_source.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if slot.queued >= share {
                    stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                slot.queued += 1;
                capture.record(from, slot.local, &pkt.data[..n]);
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some(l) = activity.last_rx_ms.get(ch) {
                    l.store(now_ms, Ordering::Relaxed);
                }
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

    fn wait_for(rtq: &mut crate::rt::RtQueues, ms: u64) -> Vec<Packet> {
        let mut got = Vec::new();
        for _ in 0..ms / 5 {
            std::thread::sleep(Duration::from_millis(5));
            while let Some(p) = rtq.packets_in.dequeue() {
                got.push(p);
            }
        }
        got
    }

    #[test]
    fn only_the_negotiated_or_latched_source_is_heard() {
        let (mut rtq, ctl) = make_queues();
        let io = MediaIo::start(1, ctl.packets_out, ctl.packets_in).unwrap();
        let far = UdpSocket::bind("127.0.0.1:0").unwrap();
        let same_ip_other_port = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ours_addr = ours.local_addr().unwrap();
        io.open(0, ours, far.local_addr().unwrap());
        far.send_to(b"real", ours_addr).unwrap();
        let got = wait_for(&mut rtq, 100);
        assert_eq!(got.len(), 1);
        // Locked: the same host from another port is a stranger now, and so
        // is another loopback address with the negotiated port's neighbour.
        for _ in 0..50 {
            same_ip_other_port.send_to(b"fake", ours_addr).unwrap();
        }
        far.send_to(b"real", ours_addr).unwrap();
        let got = wait_for(&mut rtq, 100);
        assert_eq!(got.iter().map(|p| p.bytes()).collect::<Vec<_>>(), vec![&b"real"[..]]);
    }

    #[test]
    fn receive_inactivity_is_measured_per_channel() {
        let (mut rtq, ctl) = make_queues();
        let io = MediaIo::start(2, ctl.packets_out, ctl.packets_in).unwrap();
        let far = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ours_addr = ours.local_addr().unwrap();
        io.open(1, ours, far.local_addr().unwrap());
        std::thread::sleep(Duration::from_millis(300));
        assert!(io.rx_idle(1).unwrap() >= Duration::from_millis(300), "nothing since the open");
        far.send_to(b"rtp", ours_addr).unwrap();
        wait_for(&mut rtq, 50);
        assert!(io.rx_idle(1).unwrap() < Duration::from_millis(200));
        // A stranger's packets do not keep a dead call alive.
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..20 {
            stranger.send_to(b"fake", ours_addr).unwrap();
        }
        wait_for(&mut rtq, 50);
        assert!(io.rx_idle(1).unwrap() >= Duration::from_millis(300));
        assert_eq!(io.rx_idle(9), None);
    }

    #[test]
    fn a_nat_changed_port_is_latched_and_answered() {
        let (mut rtq, ctl) = make_queues();
        let io = MediaIo::start(1, ctl.packets_out, ctl.packets_in).unwrap();
        let nat = UdpSocket::bind("127.0.0.1:0").unwrap();
        nat.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ours_addr = ours.local_addr().unwrap();
        // The SDP names a port nobody sends from.
        io.open(0, ours, "127.0.0.1:9".parse().unwrap());
        nat.send_to(b"hi", ours_addr).unwrap();
        assert_eq!(wait_for(&mut rtq, 100).len(), 1);
        let mut p = Packet::empty();
        p.data[..2].copy_from_slice(b"yo");
        p.len = 2;
        rtq.packets_out.enqueue(p).ok().unwrap();
        let mut buf = [0u8; 8];
        let (n, _) = nat.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"yo");
    }

    #[test]
    fn another_address_is_never_latched() {
        let (mut rtq, ctl) = make_queues();
        let io = MediaIo::start(1, ctl.packets_out, ctl.packets_in).unwrap();
        let Ok(stranger) = UdpSocket::bind("127.0.0.2:0") else { return }; // no 127/8 here
        let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ours_addr = ours.local_addr().unwrap();
        io.open(0, ours, "127.0.0.1:9".parse().unwrap());
        for _ in 0..20 {
            stranger.send_to(b"fake", ours_addr).unwrap();
        }
        assert!(wait_for(&mut rtq, 100).is_empty());
        assert_eq!(io.stats.foreign_source.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn a_flood_into_one_channel_does_not_starve_another() {
        let (mut rtq, ctl) = make_queues();
        let io = MediaIo::start(2, ctl.packets_out, ctl.packets_in).unwrap();
        let far = UdpSocket::bind("127.0.0.1:0").unwrap();
        let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        io.open(0, a, flooder.local_addr().unwrap()); // the flooder is channel 0's own peer
        io.open(1, b, far.local_addr().unwrap());
        far.send_to(b"voice", b_addr).unwrap();
        flooder.send_to(b"x", a_addr).unwrap();
        wait_for(&mut rtq, 50);
        let stop = Arc::new(AtomicBool::new(false));
        let t = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                    let _ = flooder.send_to(&[0u8; 172], a_addr);
                    let _ = stranger.send_to(&[0u8; 172], b_addr);
                    n += 1;
                }
            }
        });
        let mut heard = 0;
        for _ in 0..50 {
            far.send_to(b"voice", b_addr).unwrap();
            std::thread::sleep(Duration::from_millis(10));
            while let Some(p) = rtq.packets_in.dequeue() {
                if p.channel == 1 {
                    heard += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert!(io.stats.rate_limited.load(Ordering::Relaxed) > 0);
        assert_eq!(io.stats.in_overruns.load(Ordering::Relaxed), 0);
        assert!(heard >= 48, "channel 1 heard {heard} of 50");
    }
}
