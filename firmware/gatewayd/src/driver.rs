//! The async shell around [`Gateway`]: owns the SIP socket and the clock.
//!
//! One task runs the whole control plane, so the gateway's state needs no
//! locks. It wakes on a SIP datagram, on the gateway's next deadline, on a
//! 10 ms tick (to read line events and the rt thread's event queue), and on
//! shutdown. After every wake-up it drains the datagrams to send, as the
//! sans-IO cores require.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gw_sip::admission::{self, Admission, Verdict};
use heapless::spsc::Consumer;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{trace, warn};

use crate::gateway::Gateway;
use crate::rt::{RtEvent, RtSetupReport, RtStats};
use crate::status::Status;

pub struct Driver {
    pub gateway: Gateway,
    pub sip: UdpSocket,
    pub rt_events: Consumer<'static, RtEvent>,
    pub rt_stats: Arc<RtStats>,
    pub rt_setup: RtSetupReport,
    pub status: Arc<Mutex<Status>>,
    /// Whether the rt engine runs echo cancellers (else no echo figures).
    pub echo_enabled: bool,
    /// Per-source limits and bans, applied before a datagram is parsed.
    pub admission: Admission,
    /// Committed configurations to apply live (`console::Context::apply_saved`).
    pub changes: tokio::sync::mpsc::UnboundedReceiver<crate::config::Config>,
    /// Restarts gatewayd: a change the gateway could not take live after all.
    pub restart: Arc<dyn Fn() + Send + Sync>,
    /// The installer's packet capture (SIP here, RTP in the media thread).
    pub capture: Arc<crate::capture::Capture>,
    /// `[log] cdr_file`: call records appended as JSON lines.
    pub cdr_file: Option<crate::logging::RotatingFile>,
    /// The console's requests to the ISDN spans, and the sim card's wake-up
    /// when a span has frames or layer-1 news.
    pub isdn: crate::isdn::Control,
    pub isdn_wake: Arc<tokio::sync::Notify>,
}

impl Driver {
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut buf = vec![0u8; 65_536];
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.gateway.start(Instant::now());
        self.flush().await;
        loop {
            let deadline = self
                .gateway
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = self.sip.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        if self.capture.is_on() {
                            if let Ok(local) = self.sip.local_addr() {
                                self.capture.record(from, local, &buf[..n]);
                            }
                        }
                        match self.admission.check(now, from.ip()) {
                            Verdict::Admit if admission::plausible_sip(&buf[..n]) => {
                                trace!(target: "gatewayd::sip", %from, "received\n{}", String::from_utf8_lossy(&buf[..n]));
                                crate::isdn_debug::sip_tap(false, from, &buf[..n]);
                                self.gateway.handle_datagram(now, from, &buf[..n]);
                            }
                            // Not SIP: counts against its source, costs no parsing.
                            Verdict::Admit => self.admission.report_failure(now, from.ip()),
                            // Counted in the admission stats; no line per packet.
                            Verdict::Drop(_) => {}
                        }
                    }
                    // ICMP port unreachable from an earlier send shows up here
                    // on Linux; it is not fatal for a UDP server.
                    Err(e) => {
                        warn!(%e, "SIP socket receive error");
                        self.gateway.note_socket_error(Instant::now(), e.to_string());
                    }
                },
                _ = tokio::time::sleep_until(deadline) => self.gateway.handle_timeout(Instant::now()),
                _ = self.isdn_wake.notified() => self.gateway.handle_isdn(Instant::now()),
                _ = tick.tick() => {
                    let now = Instant::now();
                    for c in crate::isdn::apply_commands(self.gateway.isdn_spans_mut(), &self.isdn) {
                        if let crate::isdn::Command::RingPort { port, secs } = c {
                            if let Err(e) = self.gateway.test_ring(now, port, secs) {
                                warn!(port, "test ring refused: {e}");
                            }
                        }
                    }
                    self.gateway.handle_isdn(now);
                    self.gateway.handle_port_events(now);
                    while let Some(ev) = self.rt_events.dequeue() {
                        self.gateway.handle_rt_event(now, ev);
                    }
                    self.gateway.check_media_liveness(now);
                    self.take_cdrs();
                    self.update_status();
                }
                Some(config) = self.changes.recv() => {
                    let warnings = config.warnings();
                    match self.gateway.apply(Instant::now(), config) {
                        Ok(_) => {
                            self.status.lock().unwrap_or_else(|p| p.into_inner()).warnings = warnings;
                        }
                        Err(why) => {
                            warn!(?why, "the committed configuration cannot be applied live: restarting");
                            (self.restart)();
                        }
                    }
                }
                _ = shutdown.changed() => {
                    self.gateway.stop(Instant::now());
                    self.flush().await;
                    // Give the unregistrations a moment to reach the proxy.
                    let _ = tokio::time::timeout(Duration::from_millis(300), async {
                        loop {
                            if let Ok((n, from)) = self.sip.recv_from(&mut buf).await {
                                self.gateway.handle_datagram(Instant::now(), from, &buf[..n]);
                                self.flush().await;
                            }
                        }
                    }).await;
                    return;
                }
            }
            self.flush().await;
        }
    }

    /// Call records to the status's call log and the CDR file.
    fn take_cdrs(&mut self) {
        let mut status = None;
        while let Some(cdr) = self.gateway.poll_cdr() {
            if let Some(f) = self.cdr_file.as_mut() {
                use std::io::Write;
                let line = serde_json::to_string(&cdr).unwrap_or_default();
                if let Err(e) = writeln!(f, "{line}") {
                    warn!(%e, "cannot write the CDR file; records stay in memory only");
                    self.cdr_file = None;
                }
            }
            status.get_or_insert_with(|| self.status.lock().unwrap_or_else(|p| p.into_inner())).call_log.push(cdr);
        }
    }

    async fn flush(&mut self) {
        let now = Instant::now();
        while let Some(t) = self.gateway.poll_transmit() {
            let to = t.destination.ip();
            if !self.admission.may_send(now, to) {
                continue; // banned: not even a response
            }
            // A refused request counts against its sender (487 answers a CANCEL, not a fault).
            if admission::response_status(&t.payload).is_some_and(|c| c >= 400 && c != 487) {
                self.admission.report_failure(now, to);
            }
            trace!(target: "gatewayd::sip", to = %t.destination, "sending\n{}", String::from_utf8_lossy(&t.payload));
            crate::isdn_debug::sip_tap(true, t.destination, &t.payload);
            if let Err(e) = self.sip.send_to(&t.payload, t.destination).await {
                warn!(%e, dest = %t.destination, "SIP send failed");
            } else if self.capture.is_on() {
                if let Ok(local) = self.sip.local_addr() {
                    self.capture.record(local, t.destination, &t.payload);
                }
            }
        }
    }

    fn update_status(&self) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.ports = self.gateway.port_status();
        for p in &mut s.ports {
            let channel = self.rt_stats.channels.get(usize::from(p.timeslot));
            if self.echo_enabled {
                p.echo = channel.map(|c| c.snapshot());
            }
            p.signals = channel.map(|c| c.signals());
        }
        s.registrations = self.gateway.registration_status(Instant::now());
        s.trunks = self.gateway.trunk_status();
        s.fxo = self.gateway.fxo_status();
        s.isdn = self.gateway.isdn_status();
        s.calls = self.gateway.counters();
        s.rt = self.rt_stats.snapshot();
        s.rt_setup = self.rt_setup.clone().into();
        s.rt_command_overruns = self.gateway.rt_command_overruns();
        s.sip_admission = crate::status::AdmissionStatus::new(&self.admission, Instant::now());
        let m = self.gateway.media_stats();
        use std::sync::atomic::Ordering::Relaxed;
        s.media = crate::status::MediaStatus {
            sent: m.sent.load(Relaxed),
            received: m.received.load(Relaxed),
            foreign_source: m.foreign_source.load(Relaxed),
            send_errors: m.send_errors.load(Relaxed),
            in_overruns: m.in_overruns.load(Relaxed),
            rate_limited: m.rate_limited.load(Relaxed),
        };
    }
}
