//! Listeners: accept, pick HTTP/1.1 or HTTP/2, serve through the [`Proxy`], and drain
//! on shutdown. Also the admin listener (`/metrics`, `/healthz`, `/readyz`, `/explain`).

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::idle::IdleIo;
use crate::metrics::{self, Metrics};
use crate::proxy::{ConnInfo, Proxy};
use crate::response_body::ResponseBody;
use crate::table::RoutingTable;
use crate::tls::{self, Certificate};
use tokio_rustls::TlsAcceptor;

mod gateway;
mod h1;
mod park;
mod passthrough;
mod proxy_protocol;

pub(crate) mod sni;

/// HTTP/2's connection preface starts with a method no HTTP/1 client sends.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// The listeners of one process, bound and ready to run.
pub struct Server {
    proxy: Arc<Proxy>,
    /// One listening socket per serving thread (`SO_REUSEPORT`).
    http: Vec<std::net::TcpListener>,
    https: Option<(Vec<std::net::TcpListener>, TlsAcceptor)>,
    admin: TcpListener,
    ready: Arc<AtomicBool>,
    /// The certificate for handshakes nothing in the table answers.
    fallback: Arc<Certificate>,
}

/// Where the listeners bind.
#[derive(Clone, Copy, Debug)]
pub struct Addresses {
    pub http: SocketAddr,
    /// `None` runs without an HTTPS listener.
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
}

impl Server {
    /// Binds every listener first, so a port in use fails start-up with a clear error.
    pub async fn bind(proxy: Arc<Proxy>, addrs: Addresses) -> std::io::Result<Server> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("{what} listener on {addr}: {e}")))
        };
        let workers = proxy.config().workers;
        let fallback = Arc::new(Certificate::generate_default().map_err(std::io::Error::other)?);
        let https = match addrs.https {
            Some(addr) => {
                let config =
                    sni::server_config(proxy.live_table(), None, fallback.clone()).map_err(std::io::Error::other)?;
                Some((bind_each(addr, "https", workers)?, TlsAcceptor::from(config)))
            }
            None => None,
        };
        Ok(Server {
            http: bind_each(addrs.http, "http", workers)?,
            proxy,
            https,
            admin: bind(addrs.admin, "admin").await?,
            ready: Arc::new(AtomicBool::new(false)),
            fallback,
        })
    }

    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().and_then(|(l, _)| l.first()?.local_addr().ok())
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into())
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into())
    }

    /// Serves until `shutdown` resolves, swapping in each table published on `tables`
    /// and binding the Gateway listener ports each names (closing those it no longer
    /// names). Then stops accepting, reports not-ready, lets in-flight requests finish
    /// for up to the drain timeout, and returns.
    pub async fn run(self, mut tables: watch::Receiver<Arc<RoutingTable>>, shutdown: impl Future<Output = ()>) {
        let Server {
            proxy,
            http,
            https,
            admin,
            ready,
            fallback,
        } = self;
        let (drain_tx, drain_rx) = watch::channel(false);
        let drain = Drain {
            rx: drain_rx,
            notify: Arc::new(Notify::new()),
        };
        let drain_notify = drain.notify.clone();

        let workers = match Workers::start(proxy.config().workers) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the serving threads");
                return;
            }
        };
        // The Gateway listener ports share the HTTP address's IP, and never take one
        // of the Ingress ports (`SO_REUSEPORT` would let them share it).
        let own_ports = http
            .iter()
            .chain(https.iter().flat_map(|(l, _)| l))
            .filter_map(|l| l.local_addr().ok());
        let mut gateway = gateway::Ports::new(
            gateway::Shared {
                proxy: proxy.clone(),
                drain: drain.clone(),
                placement: workers.placement.clone(),
                fallback,
            },
            own_ports.collect(),
        );
        let admin_tables = tables.clone();
        let (stop_feeding, mut feeding_stopped) = tokio::sync::oneshot::channel::<()>();
        let feeder = {
            let proxy = proxy.clone();
            let ready = ready.clone();
            tokio::spawn(async move {
                loop {
                    let table = tables.borrow_and_update().clone();
                    // Generation 0 is the empty table a channel starts with, not a configuration.
                    if table.generation > 0 {
                        proxy.swap_table(table.clone());
                        // After the swap: a connection accepted on a new port finds its
                        // listener in the live table.
                        gateway.sync(&table);
                        ready.store(true, Ordering::Release);
                        Metrics::get().ready.set(1);
                    }
                    tokio::select! {
                        changed = tables.changed() => if changed.is_err() {
                            // No more tables: keep serving the last until shutdown.
                            let _ = (&mut feeding_stopped).await;
                            break;
                        },
                        _ = &mut feeding_stopped => break,
                    }
                }
                gateway
            })
        };
        let admin_task = tokio::spawn(serve_admin(admin, ready.clone(), admin_tables));
        let mut listeners = vec![(http, None)];
        listeners.extend(https.map(|(l, acceptor)| (l, Some(acceptor))));
        let mut accepting = Vec::new();
        for (sockets, tls) in listeners {
            accepting.extend(accept_on(sockets, tls, None, &proxy, &drain, &workers.placement));
        }
        drop(drain);
        shutdown.await;
        for task in &accepting {
            task.abort();
        }
        for task in accepting {
            let _ = task.await;
        }
        drop(stop_feeding);
        if let Ok(gateway) = feeder.await {
            gateway.close().await;
        }
        // The accept loops (and every listening socket) are gone: no new connections
        // from here on.
        ready.store(false, Ordering::Release);
        Metrics::get().ready.set(0);
        tracing::info!(timeout = ?proxy.config().drain_timeout, "shutting down: draining in-flight requests");
        let _ = drain_tx.send(true);
        // After the send: a connection that checks the value after this wake-up sees it.
        drain_notify.notify_waiters();
        // Every connection task holds a receiver; `closed` resolves when the last is gone.
        match tokio::time::timeout(proxy.config().drain_timeout, drain_tx.closed()).await {
            Ok(()) => tracing::info!("drained"),
            Err(_) => tracing::warn!("drain timeout reached; closing remaining connections"),
        }
        admin_task.abort();
        workers.stop();
    }
}

/// Starts accepting on `sockets`, one per serving thread (`SO_REUSEPORT`): a new
/// connection wakes one thread, not all of them. `listener` names the Gateway listener
/// port whose table routes the connections; `None` for the Ingress ports.
fn accept_on(
    sockets: Vec<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
    listener: Option<u16>,
    proxy: &Arc<Proxy>,
    drain: &Drain,
    placement: &Arc<Placement>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for ((me, worker), socket) in placement.handles.iter().enumerate().zip(sockets) {
        let (tls, proxy, drain, placement) = (tls.clone(), proxy.clone(), drain.clone(), placement.clone());
        tasks.push(worker.spawn(async move {
            match TcpListener::from_std(socket) {
                Ok(l) => accept_loop(l, tls, listener, proxy, drain, placement, me).await,
                Err(e) => tracing::error!(error = %e, "cannot listen on a serving thread"),
            }
        }));
    }
    tasks
}

/// How often an idle serving thread wakes (see `Workers::start`).
const KEEPER: Duration = Duration::from_millis(500);

/// The serving threads. Each runs a single-threaded runtime: a connection lives on
/// the thread it was placed on, and its wake-ups and timers stay there too. A
/// work-stealing runtime spent as much again in user space per request moving tasks and
/// wake-ups between threads (measured: 8-11 µs against 6 µs on one thread).
struct Workers {
    placement: Arc<Placement>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(n: usize) -> std::io::Result<Workers> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            handles.push(rt.handle().clone());
            stops.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("portico-worker-{i}"))
                .spawn(move || {
                    crate::upstream::set_worker(i);
                    rt.block_on(async {
                        // A timer that always fires within a second. tokio wakes its event
                        // loop (a write to an eventfd, and one more turn of the loop)
                        // whenever a timer is set to fire before the earliest one it knew
                        // of when it last went to sleep, and none at all counts as "later".
                        // Requests set timers (timeouts) that rarely fire; with this one
                        // always due sooner, setting them costs no wake-up. Measured with a
                        // new connection per request: 0.22 wake-ups per request, gone.
                        let mut keeper = tokio::time::interval(KEEPER);
                        let mut stopped = std::pin::pin!(stopped);
                        loop {
                            tokio::select! {
                                _ = stopped.as_mut() => break,
                                _ = keeper.tick() => {}
                            }
                        }
                    });
                    // Dropping the runtime cancels whatever outlived the drain.
                })?;
            threads.push(thread);
        }
        let conns = (0..handles.len())
            .map(|i| Metrics::get().thread_connections.with_label_values(&[i.to_string()]))
            .collect();
        Ok(Workers {
            placement: Arc::new(Placement { handles, conns }),
            stops,
            threads,
        })
    }

    /// Stops every thread, cancelling the connections still open on them.
    fn stop(self) {
        drop(self.stops);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Which thread a connection is served on. The kernel spreads new connections over the
/// threads' listening sockets by a hash of their addresses, which evens out over many
/// connections but not over a few: 32 from a load generator landed 2:1 in one round,
/// and the busier thread's queue then set the tail latency. So a connection moves to
/// the thread holding the fewest open connections (HAProxy balances its threads by
/// load the same way), but only when that one holds two and a fifth fewer.
///
/// Moving costs re-registering the socket with the other thread's event loop and
/// waking that thread, so it must not happen on every connection of a steady stream
/// of short ones. A plain connection is therefore judged when it first waits between
/// requests (it has shown it stays; a connection closed after one request never
/// moves); a TLS connection, whose handshake is the larger cost, when it is accepted.
struct Placement {
    handles: Vec<tokio::runtime::Handle>,
    /// Open connections per thread: `portico_thread_connections`.
    conns: Vec<prometheus::IntGauge>,
}

impl Placement {
    fn pick(&self, me: usize) -> usize {
        let load = |i: usize| self.conns.get(i).map_or(i64::MAX, |c| c.get());
        let mine = load(me);
        let (least, n) = (0..self.conns.len())
            .map(|i| (i, load(i)))
            .min_by_key(|&(_, n)| n)
            .unwrap_or((me, mine));
        if n + 2 + n / 4 <= mine { least } else { me }
    }

    fn hold(self: &Arc<Self>, worker: usize) -> Held {
        if let Some(c) = self.conns.get(worker) {
            c.inc();
        }
        Held {
            placement: self.clone(),
            worker,
        }
    }
}

/// A connection counted against its thread while it lives.
struct Held {
    placement: Arc<Placement>,
    worker: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(c) = self.placement.conns.get(self.worker) {
            c.dec();
        }
    }
}

/// `n` listening sockets on one address (`SO_REUSEPORT`), one per serving thread; the
/// kernel spreads new connections over them. Port 0 binds them all to the port the
/// first one got.
fn bind_each(addr: SocketAddr, what: &str, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what} listener on {addr}: {e}"));
    let mut at = addr;
    let mut sockets = Vec::new();
    for _ in 0..n.max(1) {
        let socket =
            socket2::Socket::new(socket2::Domain::for_address(at), socket2::Type::STREAM, None).map_err(named)?;
        socket.set_reuse_address(true).map_err(named)?;
        socket.set_reuse_port(true).map_err(named)?;
        socket.set_nonblocking(true).map_err(named)?;
        // Small requests and responses must not wait for Nagle's algorithm. On Linux an
        // accepted socket inherits this from its listener: no system call per connection.
        socket.set_tcp_nodelay(true).map_err(named)?;
        socket.bind(&at.into()).map_err(named)?;
        socket.listen(1024).map_err(named)?;
        let listener = std::net::TcpListener::from(socket);
        at = listener.local_addr().map_err(named)?;
        sockets.push(listener);
    }
    Ok(sockets)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Option<u16>,
    proxy: Arc<Proxy>,
    drain: Drain,
    placement: Arc<Placement>,
    me: usize,
) {
    let port = ConnInfo::port_value(listener.local_addr().map(|a| a.port()).unwrap_or(0));
    let mut head_limit = proxy.max_header_size();
    let mut h1 = Arc::new(http1_builder(proxy.config(), head_limit));
    // The Ingress HTTPS port's configuration as bound, and as the table narrows it.
    let base = tls.clone().filter(|_| gateway.is_none());
    let (mut tls, mut policy) = (tls, None);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Some(base) = &base {
                    let now = proxy.tls_policy();
                    if now != policy {
                        tls = Some(narrowed(base, now.as_deref()));
                        policy = now;
                    }
                }
                // A new head limit from the table: hyper's for connections from now on.
                if proxy.max_header_size() != head_limit {
                    head_limit = proxy.max_header_size();
                    h1 = Arc::new(http1_builder(proxy.config(), head_limit));
                }
                #[cfg(not(target_os = "linux"))]
                let _ = stream.set_nodelay(true);
                let to = if tls.is_some() { placement.pick(me) } else { me };
                let conn = Conn {
                    info: Arc::new(ConnInfo::new(peer, tls.is_some(), port.clone(), gateway)),
                    proxy: proxy.clone(),
                    drain: drain.clone(),
                    h1: h1.clone(),
                    served: 0,
                    _gauge: ConnGauge::open(),
                    _held: placement.hold(to),
                };
                let tls = tls.clone();
                if to == me {
                    serve(stream, tls, conn);
                } else {
                    move_to(to, stream, conn, move |stream, conn| serve(stream, tls, conn));
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `base` offering what `policy` allows (all of `base` without one, or when the policy
/// cannot be had: the controller checks it, so that is a bug, logged).
fn narrowed(base: &TlsAcceptor, policy: Option<&tls::TlsPolicy>) -> TlsAcceptor {
    let Some(policy) = policy else {
        return base.clone();
    };
    match policy.apply(base.config()) {
        Ok(cfg) => TlsAcceptor::from(cfg),
        Err(e) => {
            tracing::error!(error = %e, ?policy, "cannot narrow the HTTPS port's TLS; offering its defaults");
            base.clone()
        }
    }
}

/// Moves a connection to serving thread `to`'s event loop, where `then` goes on
/// serving it.
fn move_to(to: usize, stream: TcpStream, mut conn: Conn, then: impl FnOnce(TcpStream, Conn) + Send + 'static) {
    let placement = conn._held.placement.clone();
    let Some(handle) = placement.handles.get(to) else {
        return then(stream, conn);
    };
    conn._held = placement.hold(to);
    match stream.into_std() {
        Ok(std) => drop(handle.spawn(async move {
            match TcpStream::from_std(std) {
                Ok(stream) => then(stream, conn),
                Err(e) => tracing::debug!(error = %e, "cannot move a connection"),
            }
        })),
        Err(e) => tracing::debug!(error = %e, "cannot move a connection"),
    }
}

/// Starts serving a connection on the current thread. Each kind of connection is a
/// task of its own size: a plain connection that waits must not carry the size of
/// TLS's state.
fn serve(stream: TcpStream, tls: Option<TlsAcceptor>, conn: Conn) {
    // `use-proxy-protocol` is the Ingress listeners' (the ingress-nginx ConfigMap's).
    if conn.info.listener.is_none()
        && let Some(timeout) = conn.proxy.proxy_protocol()
    {
        return drop(tokio::spawn(proxy_protocol::serve(stream, tls, conn, timeout)));
    }
    match tls {
        // `ssl-passthrough` is the Ingress HTTPS port's.
        Some(acceptor) if conn.info.listener.is_none() && conn.proxy.inspects_tls().0 => {
            drop(tokio::spawn(passthrough::serve(stream, Bytes::new(), acceptor, conn)))
        }
        Some(acceptor) => drop(tokio::spawn(serve_tls(stream, acceptor, conn))),
        None => drop(tokio::spawn(park::serve(stream, conn))),
    }
}

struct ConnGauge;

impl ConnGauge {
    fn open() -> ConnGauge {
        let m = Metrics::get();
        m.downstream_connections.inc();
        m.downstream_connections_total.inc();
        ConnGauge
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        Metrics::get().downstream_connections.dec();
    }
}

/// What every connection task is given besides its socket.
struct Conn {
    info: Arc<ConnInfo>,
    proxy: Arc<Proxy>,
    drain: Drain,
    h1: Arc<http1::Builder>,
    /// Requests served on this connection so far (`keep-alive-requests`).
    served: u32,
    _gauge: ConnGauge,
    _held: Held,
}

/// Tells connections that the process is draining. Every connection holds one, and the
/// server waits for the last to be dropped.
#[derive(Clone)]
struct Drain {
    /// Turns true when draining starts.
    rx: watch::Receiver<bool>,
    /// Woken when draining starts; its waiter is smaller than the watch's, which counts
    /// for connections that sit idle.
    notify: Arc<Notify>,
}

impl Drain {
    /// Resolves once draining has started.
    async fn started(&mut self) {
        let _ = self.rx.wait_for(|draining| *draining).await;
    }

    /// Polls `poll` until it is ready (`Some`), `deadline` passes or draining starts
    /// (`None`). Holds only a timer entry and a waiter while it waits.
    async fn until<T>(&self, deadline: Instant, mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Option<T> {
        let mut sleep = pin!(tokio::time::sleep_until(deadline));
        let mut notified = pin!(self.notify.notified());
        notified.as_mut().enable();
        if *self.rx.borrow() {
            return None;
        }
        poll_fn(|cx| {
            if let Poll::Ready(v) = poll(cx) {
                return Poll::Ready(Some(v));
            }
            if notified.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }
}

async fn serve_tls<S: ClientIo>(stream: S, acceptor: TlsAcceptor, mut conn: Conn) {
    let m = Metrics::get();
    // `auth-tls-*` is the Ingress HTTPS port's.
    let table = (conn.info.listener.is_none() && conn.proxy.inspects_tls().1).then(|| conn.proxy.table());
    let handshake = tokio::select! {
        r = tokio::time::timeout(conn.proxy.config().client_header_timeout, handshake(stream, &acceptor, table)) => r,
        _ = conn.drain.started() => return,
    };
    let stream = match handshake {
        Ok(Ok((s, cert))) => {
            if let Some(cert) = cert {
                Arc::make_mut(&mut conn.info).client_cert = Some(Arc::new(cert));
            }
            s
        }
        Ok(Err(e)) => {
            m.tls_handshake_errors
                .with_label_values(&[tls::handshake_failure_reason(&e)])
                .inc();
            tracing::debug!(client = %conn.info.peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            m.tls_handshake_errors.with_label_values(&["timeout"]).inc();
            return;
        }
    };
    m.tls_handshakes.inc();
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_h2(stream, conn).await
    } else {
        park::serve_tls(stream, conn).await
    }
}

/// The TLS handshake; with `table` (some host asks for client certificates), the
/// configuration is chosen by the name the ClientHello gives, and the certificate the
/// client sent is checked once the handshake is done.
async fn handshake<S: ClientIo>(
    stream: S,
    acceptor: &TlsAcceptor,
    table: Option<Arc<RoutingTable>>,
) -> std::io::Result<(tokio_rustls::server::TlsStream<S>, Option<tls::ClientCert>)> {
    let Some(table) = table else {
        return Ok((acceptor.accept(stream).await?, None));
    };
    let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let auth = start
        .client_hello()
        .server_name()
        .and_then(|name| table.client_auth(name))
        .filter(|a| a.asks())
        .cloned();
    drop(table);
    let Some(auth) = auth else {
        return Ok((start.into_stream(acceptor.config().clone()).await?, None));
    };
    let config = auth.server_config(acceptor.config()).map_err(std::io::Error::other)?;
    let stream = start.into_stream(config).await?;
    let cert = auth.check(stream.get_ref().1.peer_certificates());
    Ok((stream, Some(cert)))
}

/// Serves HTTP/2 on an established (plain or TLS) connection until it closes, or until
/// drain asks it to finish its streams in flight and close. (HTTP/1.1, plain or TLS, is
/// `park`'s.)
async fn serve_h2<I: ClientIo>(stream: I, conn: Conn) {
    let Conn {
        info,
        proxy,
        mut drain,
        _gauge,
        _held,
        ..
    } = conn;
    let cfg = proxy.config();
    let max_header = proxy.max_header_size();
    let h2_send_buffer = cfg.h2_send_buffer;
    // nginx's `send_timeout`: a client that stops reading its response is let go of.
    let send_timeout = Some(cfg.send_timeout);
    let (keepalive, limit) = (proxy.keepalive_timeout(), proxy.keepalive_requests());
    let streams = Arc::new(H2Streams::new());
    let svc_info = info.clone();
    let svc_streams = streams.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        let info = svc_info.clone();
        let open = svc_streams.open(limit);
        async move {
            let resp = proxy.handle(req.map(Some), info, false).await;
            Ok::<_, Infallible>(resp.map(|inner| H2Body { inner, _open: open }))
        }
    });
    let io = TokioIo::new(IdleIo::new(Lingering(Some(stream)), None, send_timeout));
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(max_header as u32)
        .max_send_buf_size(h2_send_buffer)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .serve_connection(io, svc);
    // On the heap, so HTTP/1 connections' tasks do not carry HTTP/2's state size.
    let mut conn = Box::pin(conn);
    let result = loop {
        // nginx's `keepalive_timeout` for HTTP/2: a connection without a stream open
        // that long is closed with GOAWAY.
        let idle_until = streams.idle_since().map(|since| since + keepalive);
        let finish = tokio::select! {
            r = conn.as_mut() => break r,
            _ = drain.started() => true,
            // `keep-alive-requests`: GOAWAY once that many streams came, and the
            // connection ends when they are answered.
            _ = streams.changed.notified() => streams.started.load(Ordering::Relaxed) >= limit && limit != 0,
            _ = tokio::time::sleep_until(idle_until.unwrap_or_else(Instant::now)), if idle_until.is_some() => {
                streams.idle_since().is_some_and(|since| since.elapsed() >= keepalive)
            }
        };
        if finish {
            conn.as_mut().graceful_shutdown();
            break conn.await;
        }
    };
    report_end(&info, result);
}

/// An HTTP/2 connection's streams: how many came, how many are open, and since when
/// none is, for `keep-alive` and `keep-alive-requests`.
struct H2Streams {
    started: std::sync::atomic::AtomicU32,
    open: std::sync::atomic::AtomicU32,
    /// When the last stream closed, in milliseconds after `base`.
    idle_ms: std::sync::atomic::AtomicU64,
    base: Instant,
    /// Woken when the last open stream closes, or the limit of streams is reached.
    changed: Notify,
}

impl H2Streams {
    fn new() -> H2Streams {
        H2Streams {
            started: Default::default(),
            open: Default::default(),
            idle_ms: Default::default(),
            base: Instant::now(),
            changed: Notify::new(),
        }
    }

    /// A stream begins; it is open until the guard is dropped (its response sent, or
    /// the stream reset).
    fn open(self: &Arc<Self>, limit: u32) -> OpenStream {
        self.open.fetch_add(1, Ordering::AcqRel);
        if self.started.fetch_add(1, Ordering::Relaxed) + 1 == limit {
            self.changed.notify_one();
        }
        OpenStream(self.clone())
    }

    /// Since when no stream has been open; `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        (self.open.load(Ordering::Acquire) == 0)
            .then(|| self.base + Duration::from_millis(self.idle_ms.load(Ordering::Acquire)))
    }
}

struct OpenStream(Arc<H2Streams>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        let streams = &self.0;
        let ms = u64::try_from(streams.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        streams.idle_ms.store(ms, Ordering::Release);
        if streams.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            streams.changed.notify_one();
        }
    }
}

/// A response body on HTTP/2 that keeps its stream counted open until it is dropped.
struct H2Body {
    inner: ResponseBody,
    _open: OpenStream,
}

impl http_body::Body for H2Body {
    type Data = <ResponseBody as http_body::Body>::Data;
    type Error = <ResponseBody as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// An HTTP/2 connection's stream, closed as nginx closes one (lingering close): when
/// the connection ends (the client's GOAWAY, a protocol error answered with GOAWAY, a
/// drain), what the client still sends is read and dropped in the background until it
/// closes, falls quiet or the time is up. Closing with unread bytes would send a reset,
/// and a reset can destroy the GOAWAY (or the last response) before the client has
/// read it. Only HTTP/2's rare connection ends pay for the task.
struct Lingering<I: ClientIo>(Option<I>);

impl<I: ClientIo> Drop for Lingering<I> {
    fn drop(&mut self) {
        if let (Some(io), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(linger(io));
        }
    }
}

/// A client connection, plain or TLS, whose socket can be reached under its protocol
/// layers: closing lingers on the socket itself, and a parked connection waits on it.
trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn socket(&mut self) -> &mut TcpStream;

    /// Ready once a read would find something (bytes, the end, an error): what a parked
    /// connection waits for, holding no buffer. For the socket itself, its readiness;
    /// a layer that keeps bytes of its own is ready while it holds some.
    fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.socket().poll_read_ready(cx)
    }

    /// Whether the bytes travel under TLS, whose end is a close_notify of its own: a
    /// client reading a body delimited by the close must see it to know the body whole.
    fn secured(&self) -> bool {
        false
    }

    /// The plain socket, when this is one: only a plain connection moves between
    /// threads (see `Placement`); a TLS session stays where it was made.
    fn into_plain(self) -> Result<TcpStream, Self>
    where
        Self: Sized,
    {
        Err(self)
    }
}

impl<S: ClientIo> ClientIo for tokio_rustls::server::TlsStream<S> {
    fn socket(&mut self) -> &mut TcpStream {
        self.get_mut().0.socket()
    }

    fn secured(&self) -> bool {
        true
    }

    fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // rustls that does not want to read holds plaintext not yet taken (or has seen
        // the end): a read finds it at once. Otherwise it needs bytes from below.
        let (io, session) = self.get_mut();
        if !session.wants_read() {
            return Poll::Ready(Ok(()));
        }
        io.poll_parked(cx)
    }
}

impl ClientIo for TcpStream {
    fn socket(&mut self) -> &mut TcpStream {
        self
    }

    fn into_plain(self) -> Result<TcpStream, Self> {
        Ok(self)
    }
}

/// Shuts the socket's write side (FIN after what was written: HTTP/2 has sent its
/// GOAWAY, and over TLS its close_notify), then reads and drops what the client sends
/// until it closes, is quiet for [`h1::LINGER_EACH`] or [`h1::LINGER_TOTAL`] has
/// passed. The bytes are read from the socket, under TLS: they are discarded unread.
async fn linger<I: ClientIo>(mut io: I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = io.socket();
    if socket.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + h1::LINGER_TOTAL;
    let mut buf = [0u8; 1024];
    loop {
        let each = (Instant::now() + h1::LINGER_EACH).min(deadline);
        match tokio::time::timeout_at(each, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

impl<I: ClientIo> AsyncRead for Lingering<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<I: ClientIo> AsyncWrite for Lingering<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

fn http1_builder(cfg: &crate::config::ProxyConfig, max_header_size: usize) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // A busy connection hyper serves parks once quiet; the park waits for the next
        // request as long as `keep-alive` says.
        .header_read_timeout(cfg.client_header_timeout)
        .max_buf_size(max_header_size.max(8192));
    builder
}

fn report_end(info: &ConnInfo, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(client = %info.peer, error = %e, "client connection ended with an error");
    }
}

/// How much of a new connection's first bytes is read before the protocol is known:
/// a typical request head, which is then parsed without reading the socket again.
/// Read on the stack; only what arrived is copied to the heap.
const FIRST_READ: usize = 2048;

/// Waits for the client's first bytes, reads them, and tells whether they are the
/// HTTP/2 preface; `None` when the client closed without sending anything, sent
/// nothing before `deadline`, or draining started. `got` holds bytes already read (past
/// a PROXY protocol header), usually none. Reading (rather than peeking and
/// leaving the bytes to the protocol) costs one system call per connection less; the
/// bytes go to the protocol as read ahead. No buffer is held while waiting, and what
/// is kept is exactly what arrived: thousands of connections arriving at once must not
/// each pin a read buffer.
async fn first_bytes(
    stream: &mut TcpStream,
    deadline: Instant,
    drain: &Drain,
    mut got: BytesMut,
) -> Option<(Bytes, bool)> {
    if !got.is_empty()
        && let Some(h2) = preface(&got)
    {
        return Some((got.freeze(), h2));
    }
    loop {
        let bytes = match read_some(stream, deadline, drain).await? {
            Ok(b) if !b.is_empty() => b,
            _ => return None,
        };
        // Almost always the whole of the first read; joined only after a prefix of the
        // HTTP/2 preface (or past a PROXY protocol header).
        let bytes = if got.is_empty() {
            bytes
        } else {
            got.extend_from_slice(&bytes);
            got.split().freeze()
        };
        match preface(&bytes) {
            Some(h2) => return Some((bytes, h2)),
            // A prefix of the preface so far: wait for the rest.
            None => got.extend_from_slice(&bytes),
        }
    }
}

/// Whether a connection's first bytes are the HTTP/2 preface (`Some(true)`), are not
/// (`Some(false)`), or are a prefix of it so far (`None`).
fn preface(bytes: &[u8]) -> Option<bool> {
    let n = bytes.len().min(H2_PREFACE.len());
    if bytes[..n] != H2_PREFACE[..n] {
        Some(false)
    } else if n == H2_PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// One read of what has arrived, at most [`FIRST_READ`] bytes, into a stack buffer;
/// only what arrived is copied to the heap. `None` when `deadline` passes or draining
/// starts first. Through `poll_read`, not `try_read`: a read that leaves the buffer
/// short tells tokio the socket is drained, so the next look at the socket for a
/// client that left mid-request costs no system call.
async fn read_some(stream: &mut TcpStream, deadline: Instant, drain: &Drain) -> Option<std::io::Result<Bytes>> {
    drain
        .until(deadline, |cx| {
            let mut stack = [0u8; FIRST_READ];
            let mut buf = ReadBuf::new(&mut stack);
            Pin::new(&mut *stream)
                .poll_read(cx, &mut buf)
                .map_ok(|()| Bytes::copy_from_slice(buf.filled()))
        })
        .await
}

/// Serves a read from `ahead` (bytes read before the protocol took the socket) while
/// any are left; `false` once it is empty, and the socket is to be read. Lets go of the
/// buffer the bytes came in once they are all taken.
fn read_ahead(ahead: &mut Bytes, buf: &mut ReadBuf<'_>) -> bool {
    if ahead.is_empty() {
        return false;
    }
    let n = ahead.len().min(buf.remaining());
    buf.put_slice(&ahead[..n]);
    ahead.advance(n);
    if ahead.is_empty() {
        *ahead = Bytes::new();
    }
    true
}

async fn serve_admin(listener: TcpListener, ready: Arc<AtomicBool>, tables: watch::Receiver<Arc<RoutingTable>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let ready = ready.clone();
        let tables = tables.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let ready = ready.load(Ordering::Acquire);
                let resp = match req.uri().path() {
                    // The table is cloned out, so the watch is not held while explaining.
                    "/explain" => admin_explain(req.uri().query(), &tables.borrow().clone()),
                    path => admin_response(path, ready),
                };
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// `/explain?host=..&path=..[&port=N]`: how the live table (or its Gateway listener on
/// port N) routes that request, as JSON.
fn admin_explain(query: Option<&str>, table: &RoutingTable) -> Response<ResponseBody> {
    let (status, body, ctype) = if table.generation == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no routing table loaded yet\n".to_string(),
            "text/plain",
        )
    } else {
        match crate::table::ExplainRequest::from_query(query.unwrap_or_default()) {
            Ok(req) => match table.explain_request(&req).map(|e| serde_json::to_string_pretty(&e)) {
                Ok(Ok(json)) => (StatusCode::OK, json + "\n", "application/json"),
                Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"), "text/plain"),
                Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n"), "text/plain"),
            },
            Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n"), "text/plain"),
        }
    };
    admin_reply(status, body, ctype)
}

fn admin_response(path: &str, ready: bool) -> Response<ResponseBody> {
    let (status, body, ctype) = match path {
        "/metrics" => (StatusCode::OK, metrics::render(), "text/plain; version=0.0.4"),
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" if ready => (StatusCode::OK, "ready\n".to_string(), "text/plain"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no routing table loaded yet\n".to_string(),
            "text/plain",
        ),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string(), "text/plain"),
    };
    admin_reply(status, body, ctype)
}

fn admin_reply(status: StatusCode, body: String, ctype: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(loads: &[i64]) -> Arc<Placement> {
        Arc::new(Placement {
            handles: Vec::new(),
            conns: loads
                .iter()
                .map(|&n| {
                    let gauge = prometheus::IntGauge::new("test_thread_connections", "test").expect("gauge");
                    gauge.set(n);
                    gauge
                })
                .collect(),
        })
    }

    #[test]
    fn a_new_connection_goes_where_the_fewest_are() {
        // Stays put until another thread holds two and a fifth fewer.
        assert_eq!(placement(&[3, 2]).pick(0), 0);
        assert_eq!(placement(&[4, 2]).pick(0), 1);
        assert_eq!(placement(&[16, 13]).pick(0), 0);
        assert_eq!(placement(&[21, 11]).pick(0), 1);
        assert_eq!(placement(&[0, 9, 1]).pick(1), 0);
        // A burst accepted by one thread spreads over all of them.
        let p = placement(&[0, 0, 0]);
        let held: Vec<Held> = (0..30).map(|_| p.hold(p.pick(0))).collect();
        let counts: Vec<i64> = p.conns.iter().map(|c| c.get()).collect();
        assert!(counts.iter().all(|&n| (8..=12).contains(&n)), "{counts:?}");
        drop(held);
        assert!(p.conns.iter().all(|c| c.get() == 0));
    }
}
