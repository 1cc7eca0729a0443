//! Connection budgets for the management services (console, web UI).
//!
//! Each service gets a fixed number of connections ([`Budget`]); one over the
//! budget is accepted only to be told so and closed at once, so that idle
//! connections from a scanner cannot use up the process's descriptors and
//! starve the services that must always work (the line-card link, the SIP
//! trunk socket, the RTP sockets). Every connection is closed after
//! `idle_timeout` without a byte either way ([`IdleTimeout`]).
//!
//! An `accept` that fails (EMFILE, ENFILE, ENOBUFS) leaves the connection in
//! the backlog and would fail again at once: [`AcceptBackoff`] waits before
//! the next try, doubling up to a second, and logs once per back-off streak.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::warn;

/// How many connections a service may hold, and what it says to one too many.
#[derive(Clone)]
pub struct Budget {
    name: &'static str,
    slots: Arc<Semaphore>,
    /// Sent to a connection over the budget before it is closed.
    refusal: &'static [u8],
    pub refused: Arc<AtomicU64>,
}

impl Budget {
    pub fn new(name: &'static str, max: usize, refusal: &'static [u8]) -> Self {
        Budget { name, slots: Arc::new(Semaphore::new(max)), refusal, refused: Arc::new(AtomicU64::new(0)) }
    }

    /// A slot for a new connection, or `None` when the budget is spent.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Connections open now.
    pub fn in_use(&self, max: usize) -> usize {
        max - self.slots.available_permits()
    }

    /// Tells `stream` the budget is spent and closes it, without waiting
    /// long on a peer that does not read.
    pub async fn refuse(&self, mut stream: TcpStream) {
        if self.refused.fetch_add(1, Ordering::Relaxed) == 0 {
            warn!(service = self.name, "connection budget spent: refusing connections (counted in the status)");
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.write_all(self.refusal)).await;
        let _ = stream.shutdown().await;
    }
}

/// Accepts with a back-off on errors (see the module docs).
pub struct AcceptBackoff {
    delay: Duration,
    name: &'static str,
}

impl AcceptBackoff {
    pub fn new(name: &'static str) -> Self {
        AcceptBackoff { delay: Duration::ZERO, name }
    }

    pub async fn accept(&mut self, listener: &TcpListener) -> (TcpStream, SocketAddr) {
        loop {
            match listener.accept().await {
                Ok(x) => {
                    self.delay = Duration::ZERO;
                    return x;
                }
                Err(e) => {
                    if self.delay.is_zero() {
                        warn!(service = self.name, %e, "accept failed; backing off");
                        self.delay = Duration::from_millis(10);
                    } else {
                        self.delay = (self.delay * 2).min(Duration::from_secs(1));
                    }
                    tokio::time::sleep(self.delay).await;
                }
            }
        }
    }
}

/// A stream that fails with `TimedOut` after `idle` without traffic, and
/// holds its budget slot until dropped.
pub struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, idle: Duration, slot: Option<OwnedSemaphorePermit>) -> Self {
        IdleTimeout { inner, idle, timer: Box::pin(tokio::time::sleep(idle)), _slot: slot }
    }

    fn touch(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.idle);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle connection closed")
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.touch();
                }
                Poll::Ready(r)
            }
            // A peer that never reads is idle too.
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The web UI's listener for `axum::serve`: the budget, the refusal (503)
/// and the idle timeout on every connection.
pub struct LimitedListener {
    pub listener: TcpListener,
    pub budget: Budget,
    pub idle: Duration,
    backoff: AcceptBackoff,
}

impl LimitedListener {
    pub fn new(listener: TcpListener, budget: Budget, idle: Duration) -> Self {
        LimitedListener { listener, budget, idle, backoff: AcceptBackoff::new("web") }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = IdleTimeout<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, peer) = self.backoff.accept(&self.listener).await;
            match self.budget.try_take() {
                Some(slot) => return (IdleTimeout::new(stream, self.idle, Some(slot)), peer),
                None => {
                    // Refused in its own task: a slow peer must not hold up accepting.
                    let budget = self.budget.clone();
                    tokio::spawn(async move { budget.refuse(stream).await });
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

pub const WEB_REFUSAL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 29\r\nConnection: close\r\n\r\ntoo many open web connections";
pub const CONSOLE_REFUSAL: &[u8] = b"gatewayd console: too many sessions open, try again later\n";
