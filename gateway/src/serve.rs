//! The accept loop: HTTP/1.1 over hyper, with the limits a public listener
//! needs against slow and piled-up connections (docs/architecture.md, "Threats
//! and limits").
//!
//! - A connection that does not finish a request head within
//!   [`ServeLimits::header_read_timeout`] is closed. hyper starts that clock as
//!   soon as the connection waits for a request, so it also ends a keep-alive
//!   connection that sends nothing more.
//! - A connection on which no byte moves either way for
//!   [`ServeLimits::idle_timeout`] is closed: a peer that stops reading its
//!   answer, or stalls in the middle of a body.
//! - At most [`ServeLimits::max_connections`] connections per process and
//!   [`ServeLimits::max_connections_per_address`] per client address (see
//!   [`address_key`]); one more is closed as soon as it is accepted. A
//!   connection upgraded to a WebSocket leaves both timeouts (the session has
//!   its own heartbeats and idle timeout) but counts against the caps until
//!   it closes, since the caps travel inside its socket.
//! - The request body's own deadline is a layer of the router
//!   ([`crate::http`], `body_timeout`).
//!
//! At shutdown the loop stops accepting, asks each connection to finish its
//! request in hand, and drops those still open when the grace period ends, so
//! a trickled request cannot hold the process.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use superapp_kit::metrics::{Counter, Gauge, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The limits on connections (`server.*` in the configuration).
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// From waiting for a request to having its whole head.
    pub header_read_timeout: Duration,
    /// The longest an HTTP connection may move no byte either way.
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// At shutdown, how long open connections get to finish their requests.
    pub grace: Duration,
}

/// The key a client address is counted under, by the connection caps and the
/// account throttles alike: an IPv4 address (also when it arrives mapped into
/// IPv6) or the /64 prefix of an IPv6 one, since a single subscriber is
/// handed a whole /64 and could otherwise step through its addresses.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then lets open
/// connections finish for at most `limits.grace`.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
    metrics: &Registry,
) where
    L: Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let refused = |reason: &str| {
        metrics.counter_with(
            "http_connections_refused_total",
            "Connections closed as soon as accepted, by the cap they met.",
            &[("cap", reason)],
        )
    };
    let counters = Counters {
        refused_process: refused("process"),
        refused_address: refused("address"),
        timed_out: metrics.counter(
            "http_connections_idle_closed_total",
            "HTTP connections closed after moving no byte for server.idle_timeout_ms.",
        ),
        open: metrics.gauge(
            "http_connections_open",
            "Connections held open, WebSockets included: what the caps count.",
        ),
    };
    let caps = Caps {
        process: Arc::new(Semaphore::new(limits.max_connections)),
        addresses: Arc::new(Addresses {
            limit: limits.max_connections_per_address,
            open: Mutex::new(HashMap::new()),
        }),
    };
    let epoch = Instant::now();
    let connections = TaskTracker::new();
    // Fired when the grace period ends: connections still open are dropped.
    let abandon = CancellationToken::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let Some(held) = caps.admit(peer.ip(), &counters) else {
            continue;
        };
        let io = Tracked {
            inner: io,
            activity: Arc::new(AtomicU64::new(epoch.elapsed().as_millis() as u64)),
            epoch,
            _held: held,
        };
        let conn = Connection {
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            abandon: abandon.clone(),
            timed_out: counters.timed_out.clone(),
        };
        connections.spawn(conn.run(io, router.clone(), peer));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still open after the grace period; closing them"
        );
        abandon.cancel();
        connections.wait().await;
    }
}

struct Counters {
    refused_process: Arc<Counter>,
    refused_address: Arc<Counter>,
    timed_out: Arc<Counter>,
    open: Arc<Gauge>,
}

/// The process-wide and per-address connection caps.
struct Caps {
    process: Arc<Semaphore>,
    addresses: Arc<Addresses>,
}

impl Caps {
    /// The caps' hold on one connection, or `None` when it must be closed.
    fn admit(&self, ip: IpAddr, counters: &Counters) -> Option<Held> {
        let Ok(process) = self.process.clone().try_acquire_owned() else {
            counters.refused_process.inc();
            tracing::debug!("connection refused: server.max_connections reached");
            return None;
        };
        let Some(address) = Addresses::admit(&self.addresses, address_key(ip)) else {
            counters.refused_address.inc();
            tracing::debug!("connection refused: server.max_connections_per_address reached");
            return None;
        };
        counters.open.inc();
        Some(Held {
            _process: process,
            _address: address,
            open: counters.open.clone(),
        })
    }
}

/// Open connections per address key. Entries leave when their count reaches
/// zero, so the map holds only addresses with a connection open: at most
/// `server.max_connections` of them.
struct Addresses {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Addresses {
    fn admit(this: &Arc<Self>, key: IpAddr) -> Option<AddressHold> {
        let mut open = this.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= this.limit {
            return None;
        }
        *count += 1;
        Some(AddressHold {
            addresses: this.clone(),
            key,
        })
    }
}

struct AddressHold {
    addresses: Arc<Addresses>,
    key: IpAddr,
}

impl Drop for AddressHold {
    fn drop(&mut self) {
        let mut open = self
            .addresses
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// What a connection holds of the caps; released when its socket is dropped,
/// by hyper or, after an upgrade, by the WebSocket session.
struct Held {
    _process: OwnedSemaphorePermit,
    _address: AddressHold,
    open: Arc<Gauge>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A socket that notes when a byte last moved, and carries its hold on the
/// caps wherever it goes.
struct Tracked<T> {
    inner: T,
    /// Milliseconds from `epoch` to the last read or write that moved a byte.
    activity: Arc<AtomicU64>,
    epoch: Instant,
    _held: Held,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.activity.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One connection's task.
struct Connection {
    limits: ServeLimits,
    shutdown: CancellationToken,
    abandon: CancellationToken,
    timed_out: Arc<Counter>,
}

impl Connection {
    async fn run<T>(self, io: Tracked<T>, router: Router, peer: SocketAddr)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // What `into_make_service_with_connect_info` would give each request.
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            tower_service::Service::call(&mut router.clone(), request)
        });
        let (activity, epoch) = (io.activity.clone(), io.epoch);
        let idle = self.limits.idle_timeout;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                // Ends after the answer to an upgrade too: the socket then
                // belongs to the WebSocket session.
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended");
                    }
                    return;
                }
                () = silent_for(&activity, epoch, idle) => {
                    self.timed_out.inc();
                    tracing::debug!("connection idle; closed");
                    return;
                }
                () = self.shutdown.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = self.abandon.cancelled() => return,
            }
        }
    }
}

/// Resolves once no byte has moved for `idle`.
async fn silent_for(activity: &AtomicU64, epoch: Instant, idle: Duration) {
    loop {
        let last = epoch + Duration::from_millis(activity.load(Ordering::Relaxed));
        let due = last + idle;
        if Instant::now() >= due {
            return;
        }
        tokio::time::sleep_until(due).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_prefix_and_a_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), IpAddr::V4([192, 0, 2, 7].into()));
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_leaves_the_map_when_its_last_closes() {
        let addresses = Arc::new(Addresses {
            limit: 2,
            open: Mutex::new(HashMap::new()),
        });
        let key = IpAddr::V4([192, 0, 2, 1].into());
        let first = Addresses::admit(&addresses, key);
        let second = Addresses::admit(&addresses, key);
        assert!(first.is_some() && second.is_some());
        assert!(Addresses::admit(&addresses, key).is_none());
        assert!(Addresses::admit(&addresses, IpAddr::V4([192, 0, 2, 2].into())).is_some());
        drop(first);
        let third = Addresses::admit(&addresses, key);
        assert!(third.is_some());
        drop((second, third));
        let open = addresses.open.lock().unwrap_or_else(|p| p.into_inner());
        assert!(open.is_empty(), "{open:?}");
    }
}
