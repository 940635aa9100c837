//! HTTP/1.1 keep-alive connections, plain and TLS, that hold no buffers while they wait.
//!
//! A connection's buffers and protocol state are needed only while it is busy; nginx and
//! HAProxy release theirs while a keep-alive connection waits, and with thousands of
//! idle clients that is most of a proxy's memory. So an HTTP/1.1 connection is served
//! in *busy spells*. Once every response on it has been sent in full and the client has
//! nothing more to send, the connection is *parked*: the spell's buffers and state are
//! dropped, any bytes read ahead are kept, and the task waits for the socket to become
//! readable holding the socket alone (over TLS, the socket and the session's own
//! state). The client's next request starts a new spell on the same socket.
//!
//! A spell is Portico's own HTTP/1.1 server side (`h1`), which serves requests without a
//! body. A request with a body or an upgrade is handed, with every byte read, to a
//! spell of hyper's: one hyper connection, parked the same way. hyper is asked to close
//! (the close flushes what it buffered and is kept from reaching the socket), its state
//! is dropped, and the bytes it had read ahead go to the next spell. Whatever hyper
//! would close for a reason of its own (an error, a truncated body, `Connection:
//! close`, an upgrade) it closes itself: such a connection is never parked.
//!
//! A client that comes straight back after a park (a load balancer's or a service's
//! keep-alive connection sending request after request) is busy: setting up a spell
//! afresh for each of its requests would cost more than the memory saves. Such a
//! connection keeps its spell and parks only once it has been quiet for a second.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::h1::Spell;
use crate::body::{BodyEndHook, BoxError};
use crate::idle::IdleIo;
use crate::response_body::ResponseBody;

/// What the requests of one connection are doing, shared by its task, its socket
/// wrapper and the bodies of its requests (which another task may read).
#[derive(Default)]
struct Activity {
    /// Responses handed to hyper and not yet finished.
    in_flight: AtomicU32,
    /// Request bodies not yet read to their end.
    bodies: AtomicU32,
    /// Responses finished by the current hyper connection.
    served: AtomicU32,
    /// Requests started on the socket, ever (wraps).
    started: AtomicU32,
    /// hyper will close this connection itself (an unfinished or failed body, an
    /// upgrade): never park it.
    spoiled: AtomicBool,
    /// A read found nothing to read while the connection was between requests.
    want_park: AtomicBool,
    /// hyper's close must not reach the socket.
    parking: AtomicBool,
}

impl Activity {
    /// A fresh hyper connection starts on the socket.
    fn begin(&self) {
        self.served.store(0, Ordering::Relaxed);
        self.want_park.store(false, Ordering::Relaxed);
        self.parking.store(false, Ordering::Relaxed);
    }

    /// Between requests: at least one response finished on this hyper connection (so
    /// hyper itself is idle and will close at once when asked), nothing is in flight,
    /// and no request body is still being read.
    fn between_requests(&self) -> bool {
        self.served.load(Ordering::Acquire) > 0
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.bodies.load(Ordering::Acquire) == 0
            && !self.spoiled.load(Ordering::Acquire)
    }

    fn request_started<B: Body>(self: &Arc<Self>, req: &mut Request<B>) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed);
        if req.method() == Method::CONNECT || req.headers().contains_key(http::header::UPGRADE) {
            self.spoiled.store(true, Ordering::Release);
        }
        if !req.body().is_end_stream() {
            self.bodies.fetch_add(1, Ordering::AcqRel);
            let activity = self.clone();
            req.extensions_mut().insert(BodyEndHook(Arc::new(move || {
                activity.bodies.fetch_sub(1, Ordering::AcqRel);
            })));
        }
    }

    fn response_finished(&self, clean: bool) {
        if !clean {
            self.spoiled.store(true, Ordering::Release);
        }
        self.served.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that tells the connection when it is done, and whether it got to
/// its end (hyper drops a body it will not send on, then closes the connection). The
/// end is reported as soon as it is seen, before hyper writes the last bytes and looks
/// for the next request, so that look finds the connection between requests.
struct TrackedBody {
    inner: ResponseBody,
    activity: Arc<Activity>,
    /// A HEAD, 204 or 304 response, whose body hyper does not send.
    bodiless: bool,
    reported: AtomicBool,
}

impl TrackedBody {
    fn report(&self, clean: bool) {
        if !self.reported.swap(true, Ordering::AcqRel) {
            self.activity.response_finished(clean);
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.report(true),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.report(true),
            Poll::Ready(Some(Err(_))) => self.report(false),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.report(true);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        // Dropped before its end: hyper gave up on it and closes the connection.
        self.report(self.bodiless || self.inner.is_end_stream());
    }
}

/// The socket as hyper sees it: bytes read ahead by an earlier hyper connection come
/// first; a read that would block between requests raises `want_park`; a close while
/// parking is a no-op.
struct ParkableIo<S> {
    stream: S,
    read_ahead: Bytes,
    activity: Arc<Activity>,
}

impl<S: super::ClientIo> super::ClientIo for ParkableIo<S> {
    fn socket(&mut self) -> &mut TcpStream {
        self.stream.socket()
    }
}

impl<S: super::ClientIo> AsyncRead for ParkableIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if super::read_ahead(&mut this.read_ahead, buf) {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if polled.is_pending() && this.activity.between_requests() {
            this.activity.want_park.store(true, Ordering::Release);
        }
        polled
    }
}

impl<S: super::ClientIo> AsyncWrite for ParkableIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper closes the socket by shutting it down and then dropping it; the drop
        // alone sends the same FIN. So only an upgraded connection (a tunnel, whose
        // half-close the other side must see while it may still send) is shut down.
        if self.activity.parking.load(Ordering::Acquire) || !self.activity.spoiled.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A client whose next request arrives within this long after a park is busy.
const BUSY_GAP: Duration = Duration::from_millis(100);
/// A busy connection parks after this long without a new request.
const QUIET: Duration = Duration::from_secs(1);

/// Serves a plain-text connection until the client closes, a timeout, or drain: HTTP/2
/// when it starts with the preface, else HTTP/1.1 as the module documentation says.
pub(super) fn serve(stream: TcpStream, conn: super::Conn) -> impl Future<Output = ()> + Send {
    // The task is this one future, not one wrapping another: a wrapper keeps room for
    // the socket and the connection's state it handed on, in every idle connection.
    serve_h1(stream, conn, Start::Fresh(BytesMut::new()))
}

/// [`serve`] once a PROXY protocol header has been read, with the bytes read past it.
pub(super) fn serve_after_header(
    stream: TcpStream,
    conn: super::Conn,
    read_ahead: BytesMut,
) -> impl Future<Output = ()> + Send {
    serve_h1(stream, conn, Start::Fresh(read_ahead))
}

/// HTTP/1.1 over an established TLS session, served in spells and parked as a plain
/// connection is (the session's own state stays; the spell's buffers go). The first
/// request is waited for as a parked connection's next one.
pub(super) async fn serve_tls<S: super::ClientIo>(stream: S, conn: super::Conn) {
    Box::pin(serve_spells(stream, conn, Bytes::new(), false, true)).await
}

/// Where [`serve_h1`] begins.
enum Start {
    /// A new connection: the bytes read so far (none, unless a PROXY protocol header
    /// came first).
    Fresh(BytesMut),
    /// Parked, just moved from another thread (whose park judged it not busy).
    Parked { busy: bool },
}

/// [`serve_h1`] on the thread a connection moved to. (Its type is spelled out: the
/// future spawns itself, and a recursive future's `Send` cannot be inferred.)
fn serve_h1_moved(stream: TcpStream, conn: super::Conn, busy: bool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(serve_h1(stream, conn, Start::Parked { busy }))
}

async fn serve_h1(mut stream: TcpStream, conn: super::Conn, start: Start) {
    let timeout = conn.proxy.config().client_header_timeout;
    let (read_ahead, busy, parked_already) = match start {
        // No protocol state until the client sends its first bytes: a connection that
        // is opened and left idle costs only its socket and this small task. A client
        // that sends nothing within the header timeout, or a drain, closes it.
        Start::Fresh(got) => match super::first_bytes(&mut stream, Instant::now() + timeout, &conn.drain, got).await {
            Some((read_ahead, true)) => {
                let io = ParkableIo {
                    stream,
                    read_ahead,
                    activity: Arc::new(Activity::default()),
                };
                return Box::pin(super::serve_h2(io, conn)).await;
            }
            Some((read_ahead, false)) => (read_ahead, false, false),
            None => return,
        },
        Start::Parked { busy } => (Bytes::new(), busy, true),
    };
    serve_spells(stream, conn, read_ahead, busy, parked_already).await
}

/// Busy spells and parks, one after another, until the connection ends. A plain
/// connection that parks may move to a less loaded thread and go on there.
async fn serve_spells<S: super::ClientIo>(
    mut stream: S,
    mut conn: super::Conn,
    mut read_ahead: Bytes,
    mut busy: bool,
    mut parked_already: bool,
) {
    loop {
        if !parked_already {
            // On the heap: a parked connection's task is as large as its largest state,
            // and must not carry a busy spell's while it waits.
            let spell = Box::pin(super::h1::spell(stream, read_ahead, busy, QUIET, &mut conn)).await;
            (stream, read_ahead) = match spell {
                Spell::Park(stream) => (stream, Bytes::new()),
                Spell::Closed => return,
                Spell::Hyper(stream, read_ahead) => {
                    let activity = Arc::new(Activity::default());
                    match Box::pin(busy_spell(stream, read_ahead, busy, &mut conn, &activity)).await {
                        Some(parked) => parked,
                        None => return,
                    }
                }
            };
            busy = true;
            if read_ahead.is_empty() {
                // Between requests: the moment to even out the threads' loads (see
                // `Placement`).
                let to = conn._held.placement.pick(conn._held.worker);
                if to != conn._held.worker {
                    stream = match stream.into_plain() {
                        Ok(plain) => {
                            return super::move_to(to, plain, conn, move |stream, conn| {
                                drop(tokio::spawn(serve_h1_moved(stream, conn, busy)))
                            });
                        }
                        Err(stream) => stream,
                    };
                }
            }
        }
        parked_already = false;
        if read_ahead.is_empty() {
            // Parked: the socket alone until the client's next request, for as long
            // as `keep-alive` says.
            let parked = Instant::now();
            let timeout = conn.proxy.keepalive_timeout();
            let ready = conn.drain.until(parked + timeout, |cx| stream.poll_parked(cx)).await;
            match ready {
                Some(Ok(())) => {}
                // Quiet too long, or draining: ended as hyper ends an idle connection.
                None => return super::h1::close(&mut stream, conn.proxy.config().send_timeout).await,
                Some(Err(_)) => return,
            }
            busy = parked.elapsed() < BUSY_GAP;
        }
    }
}

/// Serves requests with one hyper connection until the connection ends (`None`) or
/// parks: then it hands back the socket and whatever hyper had read ahead.
async fn busy_spell<S: super::ClientIo>(
    stream: S,
    read_ahead: Bytes,
    busy: bool,
    conn: &mut super::Conn,
    activity: &Arc<Activity>,
) -> Option<(S, Bytes)> {
    let super::Conn {
        info,
        proxy,
        drain,
        h1: builder,
        served,
        ..
    } = conn;
    let served_before = *served;
    let svc = {
        let activity = activity.clone();
        let info = info.clone();
        let proxy = proxy.clone();
        service_fn(move |mut req: Request<Incoming>| {
            activity.request_started(&mut req);
            // `keep-alive-requests`: hyper closes after a response that says so.
            let limit = proxy.keepalive_requests();
            let started = activity.started.load(Ordering::Relaxed);
            let last = limit != 0 && served_before.saturating_add(started) >= limit;
            let head = req.method() == Method::HEAD;
            let proxy = proxy.clone();
            let activity = activity.clone();
            let info = info.clone();
            async move {
                let mut resp = proxy.handle(req.map(Some), info, false).await;
                if last {
                    resp.headers_mut()
                        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                let bodiless = head || matches!(resp.status(), StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
                let (parts, inner) = resp.into_parts();
                let body = TrackedBody {
                    inner,
                    activity,
                    bodiless,
                    reported: AtomicBool::new(false),
                };
                Ok::<_, Infallible>(Response::from_parts(parts, body))
            }
        })
    };
    activity.begin();
    let io = ParkableIo {
        stream,
        read_ahead,
        activity: activity.clone(),
    };
    // nginx's `send_timeout`: a client that stops reading its response is let go of.
    let io = IdleIo::new(io, None, Some(proxy.config().send_timeout));
    let mut conn = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
    // A busy connection looks once per quiet interval whether a request came.
    let mut quiet = busy.then(|| tokio::time::interval_at(tokio::time::Instant::now() + QUIET, QUIET));
    let mut seen = activity.started.load(Ordering::Relaxed);
    let finished = tokio::select! {
        r = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = Pin::new(&mut conn).poll(cx) {
                return Poll::Ready(Some(r));
            }
            match &mut quiet {
                None if activity.want_park.swap(false, Ordering::AcqRel) => return Poll::Ready(None),
                None => {}
                Some(tick) => {
                    while tick.poll_tick(cx).is_ready() {
                        let started = activity.started.load(Ordering::Relaxed);
                        if started == seen
                            && activity.want_park.load(Ordering::Acquire)
                            && activity.between_requests()
                        {
                            return Poll::Ready(None);
                        }
                        seen = started;
                    }
                }
            }
            Poll::Pending
        }) => r,
        _ = drain.started() => {
            // Finishes the request in flight, then closes instead of keeping alive.
            Pin::new(&mut conn).graceful_shutdown();
            Some((&mut conn).await)
        }
    };
    *served = served_before.saturating_add(activity.started.load(Ordering::Relaxed));
    if let Some(result) = finished {
        super::report_end(info, result);
        return None;
    }
    // hyper is idle: asked to close, it flushes and stops at once.
    activity.parking.store(true, Ordering::Release);
    Pin::new(&mut conn).graceful_shutdown();
    if let Err(e) = (&mut conn).await {
        super::report_end(info, Err(e));
        return None;
    }
    let http1::Parts { io, read_buf, .. } = conn.into_parts()?;
    let io = io.into_inner().into_inner();
    let read_ahead = if io.read_ahead.is_empty() && read_buf.is_empty() {
        Bytes::new()
    } else {
        let mut joined = BytesMut::from(&read_buf[..]);
        joined.extend_from_slice(&io.read_ahead);
        joined.freeze()
    };
    tracing::trace!(client = %info.peer, read_ahead = read_ahead.len(), "parked");
    Some((io.stream, read_ahead))
}
