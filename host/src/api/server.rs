//! Serving the router to clients that may be slow, idle or hostile
//! (docs/api.md, "Slow and idle clients"): HTTP/1.1 with hyper, every
//! connection bounded in time, and a cap on the connections open at once
//! below the process's file-descriptor limit, so the clients of the API can
//! never take the descriptors the store, the scheduler and the deliverer need.
//!
//! The timeouts of a connection:
//! - **idle**: a connection waiting for a request (just opened, or kept alive
//!   after an answer) that receives no byte of one within `idle_timeout` is
//!   closed; so is one whose answer the client stops reading for as long;
//! - **headers**: once the first byte of a request has arrived, its request
//!   line and headers must be complete within `header_timeout`, however
//!   slowly they trickle in;
//! - **request**: the request's body must be read and the answer made within
//!   `request_timeout`, else the client gets a 408 and the connection is
//!   closed (a half-sent body holds nothing for longer).
//!
//! hyper's own `header_read_timeout` starts when the connection begins to
//! wait for a request head, before any byte of it (hyper 1.x,
//! `proto/h1/conn.rs`, `poll_read_head`), which would make the idle time of a
//! kept-alive connection and the time to send the headers one clock. The
//! timer given to hyper ([`ConnectionTimer`]) splits them: its wait is the
//! idle timeout until a byte arrives, then the header timeout from that byte.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How long a shutdown lets the requests in flight finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The least time between two warnings that the cap was reached, or that
/// accepting failed.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The bounds of every connection (docs/api.md, "Slow and idle clients").
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    /// Connections open at once; at the cap, the server stops accepting
    /// until one closes (see [`connection_cap`]).
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// The connection cap to use for `requested`: raises the soft limit of open
/// files (RLIMIT_NOFILE) to the hard one, then keeps `reserved` descriptors
/// (at most half the limit) out of the API's reach. Those are for what
/// must keep working while the API is flooded: the store's pool, the
/// scheduler's runs and their requests to providers, the deliverer's
/// attempts, the listener, logs. Without that headroom, connections that
/// exhaust the limit stop the scheduler too (`accept error: Too many open
/// files`).
pub fn connection_cap(requested: usize, reserved: usize) -> usize {
    let limit = raise_open_files_limit();
    match limit {
        Some(limit) => {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let reserved = reserved.min(limit / 2);
            let cap = requested.min(limit - reserved).max(1);
            if cap < requested {
                tracing::warn!(target: "api", "--max-connections {requested} lowered to {cap}: the process may open {limit} files, and {reserved} are kept for the store, the scheduler and the deliverer");
            }
            cap
        }
        None => requested.max(1),
    }
}

/// The soft limit of open files after raising it to the hard limit, if
/// it can be read.
fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::warn!(target: "api", "cannot raise the limit of open files: {e}");
                rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting, lets the requests in flight finish (at most
/// [`SHUTDOWN_GRACE`]) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use tower::Layer as _;
    let service =
        tower_http::timeout::TimeoutLayer::with_status_code(http::StatusCode::REQUEST_TIMEOUT, limits.request_timeout)
            .layer(router);
    let cap = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut warned_full: Option<Instant> = None;
    let mut warned_accept: Option<Instant> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot before accepting: at the cap, connections wait in the
        // listen backlog and take no descriptor of this process.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if warned_full.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned_full = Some(Instant::now());
                    tracing::warn!(target: "api", "{cap} connections open, the most --max-connections allows: new ones wait until one closes");
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory, or a connection reset
                    // before it was accepted: wait a little, try again.
                    if warned_accept.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        warned_accept = Some(Instant::now());
                        tracing::warn!(target: "api", "accept error: {e}");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Watched::new(stream, activity.clone(), limits.idle_timeout));
        let timer = ConnectionTimer { activity, idle: limits.idle_timeout, header: limits.header_timeout };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(timer)
            .header_read_timeout(limits.header_timeout)
            .serve_connection(io, hyper_util::service::TowerToHyperService::new(service.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(target: "api", "connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(target: "api", "requests still in flight after {SHUTDOWN_GRACE:?}: closing their connections");
    }
    Ok(())
}

/// What a connection has read: the count of reads that brought bytes.
#[derive(Default)]
struct Activity {
    reads: AtomicU64,
}

/// The timer of one connection's hyper. In an HTTP/1 server hyper sleeps
/// for one thing only, the wait for a request head, started when the
/// connection begins to wait for one and dropped once the head is read
/// (`sleep_until`, `reset`); that wait is [`HeadWait`].
#[derive(Clone)]
struct ConnectionTimer {
    activity: Arc<Activity>,
    idle: Duration,
    header: Duration,
}

impl hyper::rt::Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let now = tokio::time::Instant::now();
        Box::pin(HeadWait {
            activity: self.activity.clone(),
            reads_at_start: self.activity.reads.load(Ordering::Acquire),
            header: self.header,
            first_byte: None,
            sleep: Box::pin(tokio::time::sleep_until(now + self.idle)),
        })
    }
}

impl hyper::rt::Sleep for HeadWait {}

/// Resolves once the connection has waited `idle` for the first byte of a
/// request, or `header` since that byte for the rest of its head.
struct HeadWait {
    activity: Arc<Activity>,
    reads_at_start: u64,
    header: Duration,
    first_byte: Option<tokio::time::Instant>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this each time it has read and found the head
        // incomplete, so the first byte is seen about when it came.
        if self.first_byte.is_none() && self.activity.reads.load(Ordering::Acquire) != self.reads_at_start {
            let now = tokio::time::Instant::now();
            self.first_byte = Some(now);
            let deadline = now + self.header;
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// A connection's socket, counting the reads that bring bytes, and failing
/// a write that has made no progress for `idle` (a client that stops
/// reading its answer).
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    idle: Duration,
    write_stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Watched {
    fn new(stream: TcpStream, activity: Arc<Activity>, idle: Duration) -> Self {
        Watched { stream, activity, idle, write_stalled: None }
    }

    /// After a write-side poll: Pending arms the stall timer (an error once
    /// it fires), progress disarms it.
    fn watch_write<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match polled {
            Poll::Pending => {
                let idle = self.idle;
                let stalled = self.write_stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match stalled.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the client read nothing of the answer for {idle:?}"),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.write_stalled = None;
                ready
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.reads.fetch_add(1, Ordering::AcqRel);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        self.watch_write(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        self.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch_write(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.watch_write(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_descriptors_for_the_rest_of_the_host() {
        let limit = raise_open_files_limit().expect("the limit of open files can be read") as usize;
        assert_eq!(connection_cap(usize::MAX, 256), limit - 256.min(limit / 2));
        assert_eq!(connection_cap(20, 256), 20.min(limit - 256.min(limit / 2)));
        assert!(connection_cap(0, 256) >= 1);
    }
}
