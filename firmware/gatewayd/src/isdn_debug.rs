//! `debug isdn [SPAN]` / `undebug isdn`: the D-channel frames of one span (or
//! of all spans), in and out, time stamped and decoded by
//! [`gw_isdn::decode`], streamed to the console session that asked while it
//! stays open.
//!
//! The span task calls [`tap`] for every frame it receives or sends (the
//! same place the pcap capture writes). The last [`RECENT`] frames are kept
//! raw for the web UI's ISDN page (`web/isdn.rs`), decoded when shown. With
//! no session watching, nothing more is done. With watchers, the frame is decoded once (in the span
//! task, not the rt thread) and offered to each watcher's bounded queue
//! without waiting: a console slower than the D channel loses frames, and is
//! told how many, but never holds up layer 2.
//!
//! `debug sip` / `undebug sip` use the same hub: the driver calls [`sip_tap`]
//! for every SIP datagram it admits or sends, and the watching sessions get
//! the message with its time, direction and peer.
//!
//! ```text
//! 08:12:03.120 isdn pri1 in  I N(S)=0 N(R)=0 P=0, SAPI 0 TEI 0 command; Q.931 SETUP cref 1 (originator) called "5678"
//!   Q.921: SAPI 0 (call control), TEI 0, C/R 1 (command from the network side)
//!   ...
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use gw_isdn::q921::Role;
use tokio::sync::mpsc;

use crate::isdn::SpanStatus;

/// Frames a watcher may have waiting before new ones are dropped.
pub const QUEUE: usize = 256;
/// The last frames of all spans kept raw for the web UI's ISDN page.
pub const RECENT: usize = 64;

/// One frame kept for the web UI (decoded when shown).
#[derive(Debug, Clone)]
pub struct RecentFrame {
    pub at: SystemTime,
    pub span: String,
    pub we_network: bool,
    pub outgoing: bool,
    pub frame: Vec<u8>,
}

/// A kept frame as `GET /api/isdn` and the page show it.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct FrameView {
    /// UTC, `HH:MM:SS.mmm`.
    pub time: String,
    pub span: String,
    /// "in" or "out".
    pub dir: &'static str,
    pub summary: String,
    pub details: Vec<String>,
    /// The frame's octets in hex.
    pub hex: String,
}

impl RecentFrame {
    pub fn view(&self) -> FrameView {
        let d = gw_isdn::decode::decode_frame(&self.frame, Some(sender(self.we_network, self.outgoing)));
        FrameView {
            time: clock(self.at),
            span: self.span.clone(),
            dir: if self.outgoing { "out" } else { "in" },
            summary: d.summary,
            details: d.details,
            hex: self.frame.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "),
        }
    }
}

/// What a watcher follows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Isdn {
        /// None: every span.
        span: Option<String>,
        /// `q931`: only frames carrying a layer-3 message (Q.931 or TEI
        /// management), not the layer-2 traffic around them.
        l3_only: bool,
    },
    Sip,
}

/// The largest part of a SIP datagram shown (a 64 KB datagram would flood a
/// 9600 baud console).
pub const SIP_SHOWN: usize = 4096;

struct Watcher {
    id: u64,
    filter: Filter,
    tx: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
}

/// An I or UI frame with an information field.
fn carries_l3(frame: &[u8]) -> bool {
    use gw_isdn::lapd::{Control, Packet, Unnumbered};
    let Ok(p) = Packet::new_checked(frame) else { return false };
    matches!(p.control(), Ok(Control::I { .. } | Control::U { kind: Unnumbered::Ui, .. })) && !p.info().is_empty()
}

/// The watchers of every console session.
#[derive(Default)]
pub struct Hub {
    watchers: Mutex<Vec<Watcher>>,
    /// `watchers.len()`, read without the lock by [`tap`].
    active: AtomicUsize,
    next_id: AtomicU64,
    recent: Mutex<std::collections::VecDeque<RecentFrame>>,
}

static HUB: LazyLock<Hub> = LazyLock::new(Hub::default);

/// The hub the span task and the console sessions share.
pub fn hub() -> &'static Hub {
    &HUB
}

/// One SIP datagram the driver admitted (`outgoing` false, `peer` its
/// source) or sent (`peer` its destination). Costs an atomic load when
/// nobody watches.
pub fn sip_tap(outgoing: bool, peer: std::net::SocketAddr, payload: &[u8]) {
    hub().sip(SystemTime::now(), outgoing, peer, payload);
}

/// One frame of span `span` seen by the span task: `outgoing` if we sent it;
/// `we_network` if the gateway is that span's network side (NT).
pub fn tap(span: &str, we_network: bool, outgoing: bool, frame: &[u8]) {
    hub().frame(SystemTime::now(), span, we_network, outgoing, frame);
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offers one frame to the watchers of `span`.
    pub fn frame(&self, at: SystemTime, span: &str, we_network: bool, outgoing: bool, frame: &[u8]) {
        {
            let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if r.len() >= RECENT {
                r.pop_front();
            }
            // At most a LAPD frame's worth of octets each.
            let frame = frame[..frame.len().min(4 + gw_isdn::lapd::N201)].to_vec();
            r.push_back(RecentFrame { at, span: span.to_string(), we_network, outgoing, frame });
        }
        if self.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut text: Option<String> = None;
        let l3 = carries_l3(frame);
        self.offer(
            |f| matches!(f, Filter::Isdn { span: s, l3_only } if s.as_deref().is_none_or(|s| s == span) && (!l3_only || l3)),
            || text.get_or_insert_with(|| format_frame(at, span, we_network, outgoing, frame)).clone(),
        );
    }

    /// Offers one SIP datagram to the `debug sip` watchers.
    pub fn sip(&self, at: SystemTime, outgoing: bool, peer: std::net::SocketAddr, payload: &[u8]) {
        if self.active.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut text: Option<String> = None;
        self.offer(|f| *f == Filter::Sip, || text.get_or_insert_with(|| format_sip(at, outgoing, peer, payload)).clone());
    }

    /// Sends the text (made at most once) to each watcher `wants` picks,
    /// without waiting; forgets watchers whose session is gone.
    fn offer(&self, wants: impl Fn(&Filter) -> bool, mut text: impl FnMut() -> String) {
        let mut ws = self.lock();
        ws.retain(|w| {
            if !wants(&w.filter) {
                return true;
            }
            match w.tx.try_send(text()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    w.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                // The session went without saying `undebug`.
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.active.store(ws.len(), Ordering::Relaxed);
    }

    fn add(&self, filter: Filter) -> (u64, mpsc::Receiver<String>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut ws = self.lock();
        ws.push(Watcher { id, filter, tx, dropped: dropped.clone() });
        self.active.store(ws.len(), Ordering::Relaxed);
        (id, rx, dropped)
    }

    fn remove(&self, id: u64) {
        let mut ws = self.lock();
        ws.retain(|w| w.id != id);
        self.active.store(ws.len(), Ordering::Relaxed);
    }

    /// The kept frames of the spans in `spans` (all if empty), oldest first.
    pub fn recent(&self, spans: &[&str]) -> Vec<RecentFrame> {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().filter(|f| spans.is_empty() || spans.contains(&f.span.as_str())).cloned().collect()
    }

    /// Sessions watching now.
    pub fn watchers(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }
}

/// `HH:MM:SS.mmm` (UTC) of `at`.
fn clock(at: SystemTime) -> String {
    let t = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let s = t.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", s / 3600, s / 60 % 60, s % 60, t.subsec_millis())
}

/// Who sent a frame: us when outgoing, else the other side.
fn sender(we_network: bool, outgoing: bool) -> Role {
    if we_network == outgoing {
        Role::Network
    } else {
        Role::User
    }
}

/// One frame as the console shows it: time, span, direction, the decoder's
/// summary, then its details indented.
pub fn format_frame(at: SystemTime, span: &str, we_network: bool, outgoing: bool, frame: &[u8]) -> String {
    let d = gw_isdn::decode::decode_frame(frame, Some(sender(we_network, outgoing)));
    let dir = if outgoing { "out" } else { "in " };
    format!("{} isdn {span} {dir} {d:#}\n", clock(at))
}

/// One SIP message as the console shows it: time, direction, peer, then
/// the message (line ends as `\n`, at most [`SIP_SHOWN`] bytes).
pub fn format_sip(at: SystemTime, outgoing: bool, peer: std::net::SocketAddr, payload: &[u8]) -> String {
    let shown = &payload[..payload.len().min(SIP_SHOWN)];
    let mut body = String::from_utf8_lossy(shown).replace("\r\n", "\n");
    if payload.len() > SIP_SHOWN {
        body.push_str(&format!("\n({} more bytes not shown)", payload.len() - SIP_SHOWN));
    }
    let dir = if outgoing { "to  " } else { "from" };
    format!("{} sip {dir} {peer}\n{}\n", clock(at), body.trim_end_matches('\n'))
}

/// A console session's `debug isdn` (or `debug sip`): at most one watch at a time.
#[derive(Default)]
pub struct Watch {
    on: Option<On>,
}

/// A registered watch.
struct On {
    id: u64,
    /// What `undebug` says: "ISDN debugging of SPAN stopped".
    stopped: String,
    rx: mpsc::Receiver<String>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("on", &self.on.is_some()).finish()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Watch {
    /// `debug isdn [SPAN|all] [q921|q931]`: `args` are the words after
    /// `debug isdn`. `q931` shows only the frames carrying a layer-3
    /// message; `q921` (the default) every frame.
    pub fn start(&mut self, args: &[&str], spans: &[SpanStatus]) -> String {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        if names.is_empty() {
            return "error: no ISDN span configured ([[span]]): nothing to debug\n".into();
        }
        let (which, level) = match args {
            [s, l @ ("q921" | "q931")] => (Some(*s), *l),
            [l @ ("q921" | "q931")] if !names.contains(l) => (None, *l),
            [s] => (Some(*s), "q921"),
            [] => (None, "q921"),
            _ => return "error: usage: debug isdn [SPAN|all] [q921|q931]\n".into(),
        };
        let span = match which {
            None | Some("all") => None,
            Some(s) if names.contains(&s) => Some(s.to_string()),
            Some(s) => return format!("error: no span {s:?} (spans: {})\n", names.join(", ")),
        };
        let l3_only = level == "q931";
        self.stop();
        let stopped = format!("ISDN debugging of {} stopped\n", span.as_deref().unwrap_or("every span"));
        let (id, rx, dropped) = hub().add(Filter::Isdn { span: span.clone(), l3_only });
        let what = match &span {
            Some(s) => format!("span {s}"),
            None => format!("every span ({})", names.join(", ")),
        };
        let frames = if l3_only { "frames with Q.931 (or TEI management) messages" } else { "every frame" };
        self.on = Some(On { id, stopped, rx, dropped });
        format!("debugging the D channel of {what}: {frames}, in and out, decoded, follow ('undebug isdn' stops)\n")
    }

    /// `debug sip`: every SIP message gatewayd admits or sends.
    pub fn start_sip(&mut self) -> String {
        self.stop();
        let (id, rx, dropped) = hub().add(Filter::Sip);
        self.on = Some(On { id, stopped: "SIP debugging stopped\n".into(), rx, dropped });
        "debugging SIP: every message received (after the edge's admission) and sent, follow ('undebug sip' stops)\n".into()
    }

    /// `undebug isdn` (or `undebug sip`).
    pub fn stop(&mut self) -> String {
        match self.on.take() {
            Some(On { id, stopped, .. }) => {
                hub().remove(id);
                stopped
            }
            None => "debugging was not on\n".into(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on.is_some()
    }

    /// The next frame's text for the session (pending while off); frames
    /// lost after it are said below it.
    pub async fn next(&mut self) -> String {
        let Some(On { rx, dropped, .. }) = self.on.as_mut() else {
            return std::future::pending().await;
        };
        match rx.recv().await {
            Some(t) => with_gap(t, rx, dropped),
            // Never: the hub keeps the sender while we are registered.
            None => std::future::pending().await,
        }
    }

    /// What is waiting now, without waiting (the serial console's loop).
    pub fn try_next(&mut self) -> Option<String> {
        let On { rx, dropped, .. } = self.on.as_mut()?;
        let t = rx.try_recv().ok()?;
        Some(with_gap(t, rx, dropped))
    }
}

/// After the last frame queued before a gap: how many frames were lost there.
fn with_gap(mut t: String, rx: &mpsc::Receiver<String>, dropped: &AtomicU64) -> String {
    if rx.is_empty() {
        let n = dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            t.push_str(&format!("({n} frames or messages not shown: the console did not keep up)\n"));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(name: &str) -> SpanStatus {
        SpanStatus { name: name.into(), ..Default::default() }
    }

    const SABME: [u8; 3] = [0x00, 0x01, 0x7F];

    #[test]
    fn frame_text_has_time_span_direction_and_the_decoded_frame() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(86_400_000 * 3 + 8 * 3_600_000 + 61_250);
        let t = format_frame(at, "pri1", false, true, &SABME);
        assert!(t.starts_with("08:01:01.250 isdn pri1 out SABME P=1, SAPI 0 TEI 0 command\n"), "{t}");
        assert!(t.contains("\n  Q.921: SAPI 0 (call control), TEI 0, C/R 0 (command from the user side)"), "{t}");
        // Received on an NT span: the user side sent it.
        let t = format_frame(at, "pbx", true, false, &SABME);
        assert!(t.contains("isdn pbx in  SABME P=1, SAPI 0 TEI 0 command"), "{t}");
    }

    #[tokio::test]
    async fn a_watch_gets_its_spans_frames_until_stopped() {
        let spans = [span("dbg-a"), span("dbg-b")];
        let mut w = Watch::default();
        assert!(w.start(&["nosuch"], &spans).starts_with("error: no span \"nosuch\" (spans: dbg-a, dbg-b)"));
        assert!(!w.is_on());
        assert!(w.start(&[], &[]).starts_with("error: no ISDN span configured"));
        assert!(w.start(&["dbg-a"], &spans).starts_with("debugging the D channel of span dbg-a: every frame"));
        tap("dbg-b", false, true, &SABME); // another span: not shown
        tap("dbg-a", false, false, &[0x00, 0x01, 0x73]);
        let t = tokio::time::timeout(std::time::Duration::from_secs(5), w.next()).await.unwrap();
        assert!(t.contains("isdn dbg-a in  UA F=1, SAPI 0 TEI 0 response"), "{t}");
        assert_eq!(w.try_next(), None, "the other span's frame was not queued");
        // More than the queue holds: the rest is counted and said.
        for _ in 0..QUEUE + 5 {
            tap("dbg-a", false, true, &SABME);
        }
        for _ in 0..QUEUE - 1 {
            assert!(!w.try_next().unwrap().contains("not shown"));
        }
        let t = w.try_next().unwrap();
        assert!(t.ends_with("P 1\n(5 frames or messages not shown: the console did not keep up)\n"), "{t}");
        tap("dbg-a", false, true, &SABME);
        assert!(!w.try_next().unwrap().contains("not shown"));
        // `q931`: layer 2 alone is not shown, a Q.931 message is.
        assert!(w.start(&["dbg-a", "q931"], &spans).contains("frames with Q.931 (or TEI management) messages"));
        tap("dbg-a", false, true, &SABME);
        tap("dbg-a", false, false, &[0x02, 0x01, 0x00, 0x02, 0x08, 0x01, 0x81, 0x45, 0x08, 0x02, 0x82, 0x90]);
        let t = w.try_next().unwrap();
        assert!(t.contains("Q.931 DISCONNECT cref 1 (to originator) cause 16 normal call clearing"), "{t}");
        assert_eq!(w.try_next(), None, "the SABME was not shown");
        assert!(w.start(&["q931", "extra", "words"], &spans).starts_with("error: usage: debug isdn [SPAN|all] [q921|q931]"));
        assert!(w.start(&["nosuch", "q931"], &spans).starts_with("error: no span \"nosuch\""));
        assert!(w.start(&["all", "q921"], &spans).starts_with("debugging the D channel of every span (dbg-a, dbg-b): every frame"));
        tap("dbg-b", false, true, &SABME);
        assert!(w.try_next().unwrap().contains("isdn dbg-b out SABME"));
        w.start(&["dbg-a"], &spans);
        assert_eq!(w.stop(), "ISDN debugging of dbg-a stopped\n");
        tap("dbg-a", false, true, &SABME);
        assert_eq!(w.try_next(), None);
        assert_eq!(w.stop(), "debugging was not on\n");
    }

    /// Over the TCP console: `debug isdn SPAN` streams the span's frames
    /// between the prompts, commands still work, `undebug isdn` ends it.
    #[tokio::test]
    async fn the_console_session_streams_frames_while_on() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn read_until(s: &mut tokio::net::TcpStream, want: &str) -> String {
            let mut got = String::new();
            let mut buf = [0u8; 4096];
            let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while !got.contains(want) {
                match tokio::time::timeout_at(end, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                    _ => panic!("no {want:?} in {got:?}"),
                }
            }
            got
        }
        let status = crate::status::tests::tests_status();
        status.lock().unwrap().isdn = vec![span("dbg-tcp")];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = crate::console::ConsoleLimits { sessions: 2, idle: std::time::Duration::from_secs(30), max_line: 256 };
        tokio::spawn(crate::console::serve_with(listener, crate::console::Context::for_tests(status), limits, None));
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        read_until(&mut c, "> ").await;
        c.write_all(b"debug isdn nosuch\n").await.unwrap();
        read_until(&mut c, "error: no span \"nosuch\" (spans: dbg-tcp)").await;
        c.write_all(b"debug isdn dbg-tcp\n").await.unwrap();
        read_until(&mut c, "debugging the D channel of span dbg-tcp").await;
        // Half a command typed when the frame comes: both arrive intact.
        c.write_all(b"show is").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        tap("dbg-tcp", true, false, &SABME);
        let t = read_until(&mut c, "C/R 0 (command from the user side)").await;
        // After the prompt, on a line of its own.
        assert!(t.starts_with("\n") && t.contains(" isdn dbg-tcp in  SABME P=1, SAPI 0 TEI 0 command"), "{t:?}");
        c.write_all(b"dn\n").await.unwrap();
        read_until(&mut c, "span dbg-tcp (").await;
        c.write_all(b"undebug isdn\n").await.unwrap();
        read_until(&mut c, "ISDN debugging of dbg-tcp stopped").await;
        tap("dbg-tcp", true, false, &SABME);
        c.write_all(b"help\n").await.unwrap();
        let t = read_until(&mut c, "TAB completes on the serial console.\n> ").await;
        assert!(!t.contains("SABME"), "nothing after undebug: {t}");
    }

    /// The hook in the span task: a span's own frames (its SABME at start,
    /// the far end's UA) reach the watch, in and out, and the web's list.
    #[tokio::test]
    async fn a_spans_frames_are_tapped_both_ways() {
        let mut w = Watch::default();
        w.start(&["dbg-span"], &[span("dbg-span")]);
        // The network's UA (C/R 0: a response from the network side) is waiting.
        let mut s = test_support::span("dbg-span", "bri", "te", vec![vec![0x00, 0x01, 0x73]]);
        let now = std::time::Instant::now();
        s.start(now);
        s.poll(now);
        let a = w.try_next().expect("our SABME");
        assert!(a.contains("isdn dbg-span out SABME P=1, SAPI 0 TEI 0 command"), "{a}");
        let b = w.try_next().expect("their UA");
        assert!(b.contains("isdn dbg-span in  UA F=1, SAPI 0 TEI 0 response"), "{b}");
        assert!(b.contains("C/R 0 (response from the network side)"), "{b}");
        assert!(s.l2_up());
        let kept: Vec<String> = hub().recent(&["dbg-span"]).iter().map(|f| f.view().summary).collect();
        assert_eq!(kept, ["SABME P=1, SAPI 0 TEI 0 command", "UA F=1, SAPI 0 TEI 0 response"]);
    }

    /// `switch = "qsig"` reaches the span's call control: its answer to a
    /// RELEASE for an unknown call (RELEASE COMPLETE, 81) says location 1
    /// (a PINX), where EuroISDN's network side says 2. Seen through the tap.
    #[test]
    fn the_spans_switch_variant_is_the_call_controls() {
        // The user side's SABME and UA (to ours), then I(0,0) with RELEASE
        // for call reference 5.
        let sabme = vec![0x00, 0x01, 0x7F];
        let ua = vec![0x02, 0x01, 0x73];
        let release = vec![0x00, 0x01, 0x00, 0x00, 0x08, 0x02, 0x00, 0x05, 0x4D];
        for (name, extra, location) in
            [("dbg-qsig", "switch = \"qsig\"", "location 1 (private network"), ("dbg-etsi", "", "location 2 (public network")]
        {
            let mut s = test_support::span_with(name, "pri", "nt", extra, vec![sabme.clone(), ua.clone(), release.clone()]);
            let now = std::time::Instant::now();
            s.start(now);
            s.poll(now);
            let out: Vec<String> = hub().recent(&[name]).iter().filter(|f| f.outgoing).map(|f| f.view().details.join("\n")).collect();
            let rc = out.iter().find(|d| d.contains("RELEASE COMPLETE")).unwrap_or_else(|| panic!("{name}: {out:#?}"));
            assert!(rc.contains("cause 81 invalid call reference value") && rc.contains(location), "{name}: {rc}");
        }
        assert!(crate::isdn::validate_spans(&[toml::from_str("name = \"x\"\nindex = 0\nkind = \"pri\"\nrole = \"nt\"\nswitch = \"ni2\"").unwrap()])
            .unwrap_err()
            .to_string()
            .contains("T1 PRI variant"));
    }

    /// `debug sip` on the TCP console: each SIP message the driver taps
    /// arrives with its direction and peer, CRLF as line ends, a huge one
    /// cut; `undebug all` ends it.
    #[tokio::test]
    async fn debug_sip_streams_the_messages_to_the_session() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn read_until(s: &mut tokio::net::TcpStream, want: &str) -> String {
            let mut got = String::new();
            let mut buf = [0u8; 4096];
            let end = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while !got.contains(want) {
                match tokio::time::timeout_at(end, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.push_str(&String::from_utf8_lossy(&buf[..n])),
                    _ => panic!("no {want:?} in {got:?}"),
                }
            }
            got
        }
        let status = crate::status::tests::tests_status();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = crate::console::ConsoleLimits { sessions: 2, idle: std::time::Duration::from_secs(30), max_line: 256 };
        tokio::spawn(crate::console::serve_with(listener, crate::console::Context::for_tests(status), limits, None));
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        read_until(&mut c, "> ").await;
        c.write_all(b"debug sip\n").await.unwrap();
        read_until(&mut c, "debugging SIP").await;
        let peer: std::net::SocketAddr = "127.0.0.1:5060".parse().unwrap();
        sip_tap(false, peer, b"OPTIONS sip:gw SIP/2.0\r\nCall-ID: dbg-sip-1\r\nContent-Length: 0\r\n\r\n");
        let t = read_until(&mut c, "Content-Length: 0\n").await;
        assert!(t.contains(" sip from 127.0.0.1:5060\nOPTIONS sip:gw SIP/2.0\nCall-ID: dbg-sip-1\n"), "{t:?}");
        let mut big = b"SIP/2.0 200 OK\r\nCall-ID: dbg-sip-2\r\n".to_vec();
        big.resize(SIP_SHOWN + 100, b'x');
        sip_tap(true, peer, &big);
        let t = read_until(&mut c, "(100 more bytes not shown)").await;
        assert!(t.contains(" sip to   127.0.0.1:5060\nSIP/2.0 200 OK\n"), "{t:?}");
        c.write_all(b"undebug all\n").await.unwrap();
        read_until(&mut c, "SIP debugging stopped").await;
        sip_tap(false, peer, b"OPTIONS sip:gw SIP/2.0\r\nCall-ID: dbg-sip-3\r\n\r\n");
        c.write_all(b"undebug sip\n").await.unwrap();
        let t = read_until(&mut c, "debugging was not on").await;
        assert!(!t.contains("dbg-sip-3"), "nothing after undebug: {t}");
    }

    /// On the serial console: frames are written between the port's reads.
    #[test]
    fn the_serial_console_writes_frames_between_reads() {
        struct Port {
            reads: u32,
            out: Vec<u8>,
        }
        impl std::io::Read for Port {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.reads += 1;
                match self.reads {
                    1 => {
                        let l = b"debug isdn dbg-ser\n";
                        buf[..l.len()].copy_from_slice(l);
                        Ok(l.len())
                    }
                    // A frame comes while the port waits for a byte.
                    2 => {
                        tap("dbg-ser", false, true, &SABME);
                        Err(std::io::ErrorKind::TimedOut.into())
                    }
                    3 => Err(std::io::ErrorKind::TimedOut.into()),
                    _ => Err(std::io::ErrorKind::BrokenPipe.into()),
                }
            }
        }
        impl std::io::Write for Port {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.out.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let status = crate::status::tests::tests_status();
        status.lock().unwrap().isdn = vec![span("dbg-ser")];
        let ctx = crate::console::Context::for_tests(status);
        let mut port = Port { reads: 0, out: Vec::new() };
        assert!(crate::serial_console::serve_port(&mut port, &ctx, 256, None).is_err(), "ends with the port");
        let out = String::from_utf8_lossy(&port.out);
        assert!(out.contains("debugging the D channel of span dbg-ser"), "{out}");
        assert!(out.contains(" isdn dbg-ser out SABME P=1, SAPI 0 TEI 0 command\n  Q.921: SAPI 0"), "{out}");
    }

    #[test]
    fn a_dropped_session_leaves_the_hub() {
        let spans = [span("dbg-c")];
        let hub = Hub::default();
        let (id, rx, _) = hub.add(Filter::Isdn { span: Some("dbg-c".into()), l3_only: false });
        assert_eq!(hub.watchers(), 1);
        drop(rx);
        hub.frame(SystemTime::now(), "dbg-c", false, true, &SABME);
        assert_eq!(hub.watchers(), 0, "a closed queue is removed at the next frame");
        hub.remove(id);
        // Through the global hub: dropping the Watch unregisters it.
        let mut w = Watch::default();
        w.start(&["all"], &spans);
        assert!(w.is_on());
        drop(w);
    }
}

/// A gatewayd span on a scripted D channel (layer 1 up), for the tests of
/// this module and of the web page.
#[cfg(test)]
pub(crate) mod test_support {
    use gw_hal::isdn::{Alarms, DChannel, DChannelError, DChannelStats, L1State, L1Status, Side, SpanInfo, SpanKind};

    struct Fake {
        kind: SpanKind,
        /// Frames the far end sends, last first.
        to_gw: Vec<Vec<u8>>,
    }

    const UP: L1Status = L1Status { state: L1State::Activated, alarms: Alarms { los: false, ais: false, rai: false } };

    impl DChannel for Fake {
        fn kind(&self) -> SpanKind {
            self.kind
        }
        fn poll_frame(&mut self) -> Option<Vec<u8>> {
            self.to_gw.pop()
        }
        fn send_frame(&mut self, _: &[u8]) -> Result<(), DChannelError> {
            Ok(())
        }
        fn poll_l1_event(&mut self) -> Option<L1Status> {
            None
        }
        fn l1_status(&self) -> L1Status {
            UP
        }
        fn request_l1(&mut self, _: bool) -> Result<(), DChannelError> {
            Ok(())
        }
        fn set_side(&mut self, _: Side) -> Result<(), DChannelError> {
            Ok(())
        }
        fn stats(&self) -> DChannelStats {
            DChannelStats::default()
        }
    }

    /// Span `name` of `kind` ("bri": B1/B2 on timeslots 6-7; "pri": TS1-2
    /// on 8-9, only TS1 in use) as `role`; `to_gw` arrive in order.
    pub(crate) fn span(name: &str, kind: &str, role: &str, to_gw: Vec<Vec<u8>>) -> crate::isdn::Span {
        span_with(name, kind, role, "", to_gw)
    }

    /// The same with more `[[span]]` lines (`extra`, e.g. `switch = "qsig"`).
    pub(crate) fn span_with(name: &str, kind: &str, role: &str, extra: &str, mut to_gw: Vec<Vec<u8>>) -> crate::isdn::Span {
        let channels = if kind == "pri" { "channels = [1]\n" } else { "" };
        let doc = format!("name = \"{name}\"\nindex = 0\nkind = \"{kind}\"\nrole = \"{role}\"\n{channels}{extra}\n");
        let cfg: crate::isdn::SpanConfig = toml::from_str(&doc).unwrap();
        crate::isdn::validate_spans(std::slice::from_ref(&cfg)).unwrap();
        let (k, label, b_timeslots) =
            if kind == "pri" { (SpanKind::Pri, "PRI <1>", vec![8, 9]) } else { (SpanKind::Bri, "BRI 1", vec![6, 7]) };
        to_gw.reverse();
        let info = SpanInfo { kind: k, label: label.into(), b_timeslots };
        crate::isdn::Span::new(cfg, info, Box::new(Fake { kind: k, to_gw }))
    }
}
