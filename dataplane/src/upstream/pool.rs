//! The shared upstream connection pool.
//!
//! HTTP/1.1 connections are keyed by endpoint address; an idle one is checked out by
//! one request at a time and returns when that request's response body has ended.
//! While checked out, a connection is used directly by the task that serves the
//! request (Portico's own client, [`super::h1`]), as Pingora does: no task of its own,
//! so a request costs no hand-off between tasks or threads. An idle one is not polled
//! at all; it is checked for a close when it is taken or reaped. Upgrades get a fresh
//! connection on hyper's client, run by a task of its own, since the tunnel outlives
//! the request. HTTP/2 (h2c) connections are shared: one per endpoint carries every
//! concurrent request as a stream. Idle connections are bounded per endpoint and
//! closed after an idle timeout by a reaper task, so the pool never holds a connection
//! the endpoint is about to close.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::h1::{self, Failure, H1Body, H1Conn, Stream};
use super::worker;
use crate::body::RequestBody;
use crate::codec::response::Head;
use crate::codec::{Extra, Raw, RawHead};
use crate::metrics::Metrics;
use crate::table::UpstreamProtocol;
use crate::tls::{TlsKey, UpstreamTls};

const SHARDS: usize = 16;

/// Why no request could be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    #[error("connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("handshake with {addr}: {source}")]
    Handshake { addr: SocketAddr, source: hyper::Error },
    #[error("TLS handshake with {addr}: {source}")]
    Tls { addr: SocketAddr, source: std::io::Error },
    #[error("{addr}: backend speaks HTTPS but has no TLS settings")]
    NoTlsConfig { addr: SocketAddr },
}

/// A pooled connection's endpoint (HTTP/1.1 or HTTP/2) and, for TLS, the settings it
/// was made with: a connection verified against one CA, or presenting one client
/// certificate, is never handed to a backend with other settings.
type ConnKey = (SocketAddr, Option<TlsKey>);

/// The pool key of a connection to `addr`; `None` for a TLS protocol without TLS
/// settings, which is never pooled (nor opened).
fn conn_key(addr: SocketAddr, proto: UpstreamProtocol, tls: Option<&UpstreamTls>) -> Option<ConnKey> {
    match (proto.is_tls(), tls) {
        (true, Some(tls)) => Some((addr, Some(tls.key))),
        (true, None) => None,
        (false, _) => Some((addr, None)),
    }
}

struct Idle {
    conn: H1Conn,
    since: Instant,
}

/// Endpoint addresses come from the routing table, not from clients, so they need no
/// defence against chosen collisions: the std hasher's SipHash cost more than the rest
/// of a checkout (four hashes per request: the shard and the map, taking and giving back).
type Hasher = foldhash::fast::RandomState;

#[derive(Default)]
struct Shard {
    h1: HashMap<ConnKey, Vec<Idle>, Hasher>,
    /// One HTTP/2 connection per endpoint and TLS settings (`None`: cleartext h2c).
    h2: HashMap<ConnKey, http2::SendRequest<RequestBody>, Hasher>,
}

/// The pool. Cheap to share: wrap in an `Arc` once per process.
pub struct Pool {
    shards: Box<[Mutex<Shard>]>,
    hasher: Hasher,
    limits: Limits,
    connect_timeout: Duration,
}

/// The pool's keep-alive limits, which a table may change while the pool lives
/// (ingress-nginx's `upstream-keepalive-*` ConfigMap keys).
struct Limits {
    /// Idle connections kept per endpoint and protocol.
    max_idle: AtomicUsize,
    /// How long an idle connection is kept, in milliseconds.
    idle_ms: AtomicU64,
    /// Exchanges one connection carries before it is closed; 0: no limit.
    max_exchanges: AtomicU32,
}

impl Limits {
    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_ms.load(Ordering::Relaxed))
    }
}

/// A connection for one request.
pub enum UpstreamConn {
    H1(PooledConn),
    /// A fresh connection for an upgrade, on hyper's client.
    Upgrade(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

/// A response body from an endpoint.
pub enum UpstreamBody {
    H1(H1Body),
    Hyper(Incoming),
}

impl UpstreamBody {
    /// The response's header lines as the endpoint sent them, less this hop's own,
    /// when they were asked for and can pass through unchanged; the response's header
    /// map then holds none of them.
    pub fn raw_head(&self) -> Option<&RawHead> {
        match self {
            UpstreamBody::H1(b) => b.raw_head(),
            UpstreamBody::Hyper(_) => None,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.get_mut() {
            UpstreamBody::H1(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// An HTTP/1.1 connection checked out of the pool; [`PooledConn::release`] returns it.
pub struct PooledConn {
    pool: Arc<Pool>,
    key: ConnKey,
    conn: H1Conn,
}

impl PooledConn {
    /// Sends a request and reads the response head; [`PooledConn::response`] makes the
    /// response of it. (Two steps, so that the caller awaits this client's future
    /// directly: an async layer around it would keep one more copy of the request.)
    pub fn send<'a>(
        &'a mut self,
        req: Request<RequestBody>,
        extra: Extra<'a>,
        raw: Raw<'a>,
    ) -> impl Future<Output = Result<Head, Failure>> + Send + 'a {
        self.conn.send(req, extra, raw)
    }

    /// The response of a head [`PooledConn::send`] read; its body holds the connection
    /// until it has ended.
    pub fn response(self, head: Head) -> Response<UpstreamBody> {
        let (response, body) = H1Body::new(self, head);
        response.map(|()| UpstreamBody::H1(body))
    }

    /// Returns the connection for the next request. Call only once the response body
    /// has been read to its end; a connection with unread body is dropped instead.
    pub fn release(self) {
        self.pool.put_h1(self.key, self.conn);
    }

    pub(super) fn conn(&mut self) -> &mut H1Conn {
        &mut self.conn
    }
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration, connect_timeout: Duration) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
            limits: Limits {
                max_idle: AtomicUsize::new(max_idle),
                idle_ms: AtomicU64::new(u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX)),
                max_exchanges: AtomicU32::new(0),
            },
            connect_timeout,
        });
        let weak = Arc::downgrade(&pool);
        // The reaper closes connections idle past the timeout even when no request comes
        // to notice them; it ends with the pool.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let mut every = idle_timeout;
                loop {
                    tokio::time::sleep(every / 4 + Duration::from_millis(1)).await;
                    match weak.upgrade() {
                        Some(pool) => {
                            pool.reap();
                            every = pool.limits.idle_timeout();
                        }
                        None => return,
                    }
                }
            });
        }
        pool
    }

    fn shard(&self, addr: &SocketAddr) -> std::sync::MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(addr) as usize % self.shards.len();
        // A panic while holding a shard lock cannot leave it inconsistent (each critical
        // section is a single map operation), so a poisoned lock is still usable.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the keep-alive limits: idle connections kept per endpoint, how long, and
    /// how many exchanges one connection carries (`None`: no limit). Connections
    /// already idle keep to the new limits from their next check.
    pub fn set_limits(&self, max_idle: usize, idle_timeout: Duration, max_exchanges: Option<u32>) {
        let l = &self.limits;
        l.max_idle.store(max_idle, Ordering::Relaxed);
        l.idle_ms.store(
            u64::try_from(idle_timeout.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        l.max_exchanges.store(max_exchanges.unwrap_or(0), Ordering::Relaxed);
    }

    fn put_h1(&self, key: ConnKey, mut conn: H1Conn) {
        let exchanges = conn.finished();
        let max = self.limits.max_exchanges.load(Ordering::Relaxed);
        if max != 0 && exchanges >= max {
            return;
        }
        conn.trim();
        let max_idle = self.limits.max_idle.load(Ordering::Relaxed);
        let mut shard = self.shard(&key.0);
        let idle = shard.h1.entry(key).or_default();
        if idle.len() < max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn take_h1(&self, key: ConnKey) -> Option<H1Conn> {
        let now = Instant::now();
        let idle_timeout = self.limits.idle_timeout();
        let me = worker();
        let mut idle = {
            let mut shard = self.shard(&key.0);
            let idle = shard.h1.get_mut(&key)?;
            // Most recently used first: it is the warmest and the least likely to have
            // been closed by the endpoint. This thread's own before another's.
            loop {
                let i = idle
                    .iter()
                    .rposition(|c| c.conn.home() == me)
                    .or(idle.len().checked_sub(1))?;
                let conn = idle.remove(i);
                if now.duration_since(conn.since) < idle_timeout {
                    break conn;
                }
            }
        };
        // Checked outside the lock: polling reads from the socket.
        if !idle.conn.usable() {
            return None;
        }
        if idle.conn.home() == me || me == usize::MAX {
            return Some(idle.conn);
        }
        // Another thread's: registered with this thread's event loop from now on (two
        // `epoll_ctl` calls, once), rather than woken across threads on every response.
        idle.conn.rehome()
    }

    fn reap(&self) {
        let now = Instant::now();
        let (idle_timeout, max_idle) = (self.limits.idle_timeout(), self.limits.max_idle.load(Ordering::Relaxed));
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.h1.retain(|_, idle| {
                idle.retain_mut(|c| now.duration_since(c.since) < idle_timeout && c.conn.usable());
                // A lowered limit: the oldest go first.
                if idle.len() > max_idle {
                    idle.drain(..idle.len() - max_idle);
                }
                !idle.is_empty()
            });
            shard.h2.retain(|_, tx| !tx.is_closed());
        }
    }

    /// Idle HTTP/1.1 connections held now (for tests and debugging).
    pub fn idle_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .h1
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum()
    }

    /// A connection to `addr`: a pooled one when there is one, else a new one.
    /// `fresh` skips the pool (for upgrades, which take the connection for good).
    /// `connect_timeout` bounds a new connection's TCP connect and TLS handshake, each
    /// (nginx's `proxy_connect_timeout`); `None`: the pool's own.
    pub async fn get(
        self: &Arc<Self>,
        addr: SocketAddr,
        proto: UpstreamProtocol,
        tls: Option<&UpstreamTls>,
        fresh: bool,
        connect_timeout: Option<Duration>,
    ) -> Result<(UpstreamConn, bool), SendError> {
        // An HTTP/2 connection is shared, upgrade or not.
        if (!fresh || proto.is_h2())
            && let Some(conn) = self.take(addr, proto, tls)
        {
            Metrics::get().upstream_connections_reused.inc();
            return Ok((conn, true));
        }
        // On the heap: connecting (TCP, TLS, an HTTP/2 handshake) is a large future, and
        // every request's own future would otherwise carry its size and be copied with
        // it, though nearly every request finds a pooled connection.
        let timeout = connect_timeout.unwrap_or(self.connect_timeout);
        Box::pin(self.open(addr, proto, tls, fresh, timeout))
            .await
            .map(|conn| (conn, false))
    }

    /// A pooled connection to `addr`, when there is one.
    fn take(
        self: &Arc<Self>,
        addr: SocketAddr,
        proto: UpstreamProtocol,
        tls: Option<&UpstreamTls>,
    ) -> Option<UpstreamConn> {
        match proto {
            UpstreamProtocol::Http1 | UpstreamProtocol::Https => {
                let key = conn_key(addr, proto, tls)?;
                let conn = self.take_h1(key)?;
                Some(UpstreamConn::H1(self.pooled(key, conn)))
            }
            UpstreamProtocol::H2c | UpstreamProtocol::H2Tls => {
                let key = conn_key(addr, proto, tls)?;
                let tx = self.shard(&addr).h2.get(&key).filter(|tx| !tx.is_closed()).cloned()?;
                Some(UpstreamConn::H2(tx))
            }
        }
    }

    /// A new connection to `addr`.
    async fn open(
        self: &Arc<Self>,
        addr: SocketAddr,
        proto: UpstreamProtocol,
        tls: Option<&UpstreamTls>,
        fresh: bool,
        timeout: Duration,
    ) -> Result<UpstreamConn, SendError> {
        let m = Metrics::get();
        match proto {
            UpstreamProtocol::Http1 | UpstreamProtocol::Https => {
                let key = conn_key(addr, proto, tls).ok_or(SendError::NoTlsConfig { addr })?;
                let io = self.connect(addr, timeout).await?;
                let stream = match (proto, tls) {
                    (UpstreamProtocol::Https, Some(tls)) => {
                        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                        let stream = tokio::time::timeout(timeout, connector.connect(tls.server_name.clone(), io))
                            .await
                            .map_err(|_| SendError::ConnectTimeout { addr })?
                            .map_err(|source| SendError::Tls { addr, source })?;
                        Stream::Tls(Box::new(stream))
                    }
                    (UpstreamProtocol::Https, None) => return Err(SendError::NoTlsConfig { addr }),
                    _ => Stream::Plain(io),
                };
                m.upstream_connections_opened.inc();
                Ok(match fresh {
                    true => UpstreamConn::Upgrade(upgrade_conn(addr, stream).await?),
                    false => UpstreamConn::H1(self.pooled(key, H1Conn::new(stream))),
                })
            }
            UpstreamProtocol::H2c => {
                let io = self.connect(addr, timeout).await?;
                let tx = self.h2_handshake(addr, None, io).await?;
                Ok(UpstreamConn::H2(tx))
            }
            UpstreamProtocol::H2Tls => {
                let tls = tls.ok_or(SendError::NoTlsConfig { addr })?;
                let io = self.connect(addr, timeout).await?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = tokio::time::timeout(timeout, connector.connect(tls.server_name.clone(), io))
                    .await
                    .map_err(|_| SendError::ConnectTimeout { addr })?
                    .map_err(|source| SendError::Tls { addr, source })?;
                let tx = self.h2_handshake(addr, Some(tls.key), stream).await?;
                Ok(UpstreamConn::H2(tx))
            }
        }
    }

    /// An HTTP/2 connection over `io`, kept for every request to `addr` with the same
    /// TLS settings (`tls`; `None`: cleartext).
    async fn h2_handshake<I>(
        &self,
        addr: SocketAddr,
        tls: Option<TlsKey>,
        io: I,
    ) -> Result<http2::SendRequest<RequestBody>, SendError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| SendError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream h2 connection ended");
            }
        });
        Metrics::get().upstream_connections_opened.inc();
        self.shard(&addr).h2.insert((addr, tls), tx.clone());
        Ok(tx)
    }

    async fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<TcpStream, SendError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                Metrics::get().upstream_connect_errors.inc();
                return Err(SendError::Connect { addr, source });
            }
            Err(_) => {
                Metrics::get().upstream_connect_errors.inc();
                return Err(SendError::ConnectTimeout { addr });
            }
        };
        // Small requests and responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    fn pooled(self: &Arc<Self>, key: ConnKey, conn: H1Conn) -> PooledConn {
        PooledConn {
            pool: self.clone(),
            key,
            conn,
        }
    }
}

/// Opens a connection for an upgrade on hyper's client, run by a task of its own: the
/// tunnel outlives the request.
async fn upgrade_conn(addr: SocketAddr, stream: Stream) -> Result<http1::SendRequest<RequestBody>, SendError> {
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| SendError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended");
        }
    });
    Ok(tx)
}

impl UpstreamConn {
    /// Sends a request. [`Failure::Unsent`] hands the request back unsent (the
    /// connection closed before taking it), so it can go out on another connection.
    /// `extra` fields go after the request's own (into its map, for hyper's client).
    /// With `raw`, an HTTP/1.1 endpoint's response head may come as it was read (see
    /// [`UpstreamBody::raw_head`]).
    pub async fn send(
        self,
        req: Request<RequestBody>,
        extra: Extra<'_>,
        raw: Raw<'_>,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let mut req = req;
        if let UpstreamConn::Upgrade(_) | UpstreamConn::H2(_) = self {
            let headers = req.headers_mut();
            for (name, value) in extra.0.iter().zip(extra.1) {
                headers.insert(name.clone(), value.clone());
            }
        }
        let result = match self {
            UpstreamConn::H1(mut conn) => return conn.send(req, extra, raw).await.map(|head| conn.response(head)),
            UpstreamConn::Upgrade(mut tx) => tx.try_send_request(req).await,
            UpstreamConn::H2(mut tx) => tx.try_send_request(req).await,
        };
        result
            .map(|r| r.map(UpstreamBody::Hyper))
            .map_err(|mut e| match e.take_message() {
                Some(req) => Failure::Unsent(req),
                None => Failure::Failed {
                    error: h1::Error::Hyper(e.into_error()),
                    request: None,
                },
            })
    }
}
