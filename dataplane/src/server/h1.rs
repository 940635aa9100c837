//! Portico's own HTTP/1.1 server side, for requests without a body, in plain text or
//! over TLS: almost every request a proxy sees (`GET`, `HEAD`, `DELETE`, `OPTIONS`
//! without a body). Every request head a connection starts with, and every one after a
//! park, is parsed here first ([`crate::codec::request`]), so its framing is checked here (bare LF line ends,
//! `Content-Length` beside `Transfer-Encoding`: 400 and a lingering close) before hyper
//! sees it.
//!
//! hyper builds a connection's state afresh for each new client connection (a read
//! buffer, write buffers, a parser, a header timer) and allocates several of those again
//! per request; with a new client connection per request that set-up was most of what
//! the proxy spent in user space beyond nginx. Here a connection's busy spell owns one
//! read buffer and one write buffer, reused request after request:
//! - the request head is parsed in place (`httparse`) and the request's URI and header
//!   values are shared slices of the bytes read, not copies;
//! - the response head is written into the write buffer, and a small body joins it, so
//!   a small response leaves in one `write`;
//! - a large body frame is written from where it lies, next to what is buffered, with
//!   one vectored write.
//!
//! Whatever this module does not serve it hands to hyper with every byte it has read,
//! the request's head first, and hyper parses that request as if it had read it itself:
//! a request with a body (`Content-Length` or `Transfer-Encoding`, malformed framing
//! included), an upgrade (`Upgrade`, `CONNECT`). So request bodies, `100-continue`,
//! chunked decoding and tunnels keep hyper's well-tried code.
//!
//! The semantics are hyper's, which the integration tests pin down: keep-alive by
//! default for HTTP/1.1 and on `Connection: keep-alive` for HTTP/1.0; an HTTP/1.0 client
//! is answered in HTTP/1.0, with a body of unknown length delimited by the close;
//! pipelined requests are answered in order; a client that closes while its request is
//! in flight cancels it; a head larger than the limit gets 431, and a malformed one 400,
//! then the connection is closed; a `Date` header is added when the response has none.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Response, StatusCode, Version, header};
use http_body::Body;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;

use crate::codec::framing::{LAST_CHUNK, chunk_size_line};
use crate::codec::request::{Parsed, parse_request};
use crate::codec::response::status_line;
use crate::idle::IdleIo;
use crate::response_body::ResponseBody;
use crate::wire::itoa;

/// How a busy spell ended.
pub(super) enum Spell<S> {
    /// The client is quiet between requests: wait for it holding the socket alone.
    Park(S),
    /// A request for hyper: the socket, and every byte read and not yet served (that
    /// request's head first).
    Hyper(S, Bytes),
    /// The connection is closed.
    Closed,
}

/// The read buffer's size: a typical request head, several of them pipelined.
const READ_BUF: usize = 4096;
/// A body frame up to this size is copied next to the head (or the frames before it)
/// and leaves with them; a larger one is written from where it lies.
const COPY_UP_TO: usize = 16 * 1024;

/// Serves requests on an HTTP/1.1 connection (plain, or TLS's plaintext) until it
/// closes, falls quiet, or sends a request for hyper. `read_ahead` holds bytes already
/// read; `busy` says the client came straight back after its last wait, so a quiet
/// spell waits a while (up to `quiet`) before it lets go of its buffers.
pub(super) async fn spell<S: super::ClientIo>(
    mut stream: S,
    read_ahead: Bytes,
    busy: bool,
    quiet: Duration,
    conn: &mut super::Conn,
) -> Spell<S> {
    let cfg = conn.proxy.config();
    let (timeout, max_head) = (cfg.client_header_timeout, conn.proxy.max_header_size().max(8192));
    let send_timeout = cfg.send_timeout;
    let mut buffers = Buffers::take();
    let Buffers { buf, out } = &mut buffers;
    buf.extend_from_slice(&read_ahead);
    drop(read_ahead);
    // Held for the whole spell, so a wait between requests registers no timer and
    // takes no lock of its own: the drain's waiter, and for a busy client a tick that
    // parks the connection once a whole interval passed without a request.
    let mut draining = pin!(conn.drain.notify.notified());
    draining.as_mut().enable();
    let mut tick = busy.then(|| tokio::time::interval_at(Instant::now() + quiet, quiet));
    let (mut requests, mut seen) = (0u32, 0u32);
    loop {
        // One whole request head.
        let started = Instant::now();
        let (req, keep_alive) = loop {
            match parse_request::<Option<Incoming>>(buf, max_head) {
                Parsed::Request(req, keep_alive) => break (req, keep_alive),
                Parsed::Declined => return Spell::Hyper(stream, buf.split().freeze()),
                Parsed::Bad(status) => {
                    reject(&mut stream, out, status).await;
                    linger_close(&mut stream, buf, &conn.drain).await;
                    return Spell::Closed;
                }
                Parsed::Partial if buf.len() >= max_head => {
                    reject(&mut stream, out, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
                    linger_close(&mut stream, buf, &conn.drain).await;
                    return Spell::Closed;
                }
                Parsed::Partial => {}
            }
            if *conn.drain.rx.borrow() {
                return Spell::Closed;
            }
            if !buf.is_empty() {
                // Within a head: the header timeout bounds the wait.
                match conn
                    .drain
                    .until(started + timeout, |cx| fill(&mut stream, buf, cx))
                    .await
                {
                    Some(Ok(n)) if n > 0 => continue,
                    // Closed, failed, timed out (as hyper, without a response), or draining.
                    _ => return Spell::Closed,
                }
            }
            // Between requests. A client that is not busy is let go of at once; a busy
            // one is waited for until it has been quiet a while.
            let next = poll_fn(|cx| {
                if let Poll::Ready(read) = fill(&mut stream, buf, cx) {
                    return Poll::Ready(Some(read));
                }
                let Some(tick) = &mut tick else {
                    return Poll::Ready(None);
                };
                if draining.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Ok(0)));
                }
                while tick.poll_tick(cx).is_ready() {
                    if requests == seen {
                        return Poll::Ready(None);
                    }
                    seen = requests;
                }
                Poll::Pending
            })
            .await;
            match next {
                None => return Spell::Park(stream),
                Some(Ok(n)) if n > 0 => {}
                Some(_) => return Spell::Closed,
            }
        };
        requests = requests.wrapping_add(1);
        conn.served = conn.served.saturating_add(1);
        // `keep-alive-requests`: the connection's last request is answered with
        // `Connection: close`.
        let limit = conn.proxy.keepalive_requests();
        let keep_alive = keep_alive && (limit == 0 || conn.served < limit);
        let head = req.method() == Method::HEAD;
        let version = req.version();
        // The request, with the client's leaving watched for: a client that closes
        // cancels its request, as with hyper (whose half-close support is off). Bytes
        // that come meanwhile are the next, pipelined, requests.
        let resp = {
            let mut handling = pin!(conn.proxy.handle(req, conn.info.clone(), true));
            let mut watch = true;
            poll_fn(|cx| {
                if let Poll::Ready(resp) = handling.as_mut().poll(cx) {
                    return Poll::Ready(Some(resp));
                }
                while watch && buf.len() < max_head {
                    match fill(&mut stream, buf, cx) {
                        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                        Poll::Ready(Ok(_)) => {}
                        Poll::Pending => break,
                    }
                }
                // A full buffer is not read on until this request is answered.
                watch = buf.len() < max_head;
                Poll::Pending
            })
            .await
        };
        let Some(resp) = resp else {
            return Spell::Closed;
        };
        // Draining: this response is the connection's last.
        let keep_alive = keep_alive && !*conn.drain.rx.borrow();
        let refused = resp.status().is_client_error();
        match respond(&mut stream, out, resp, head, version, keep_alive, send_timeout).await {
            Ok(true) => {}
            Ok(false) if refused => {
                // A refusal (a bad Host, say) may have more of the client's bytes
                // behind it: let the client read it before the connection goes.
                linger_close(&mut stream, buf, &conn.drain).await;
                return Spell::Closed;
            }
            Ok(false) => {
                close(&mut stream, send_timeout).await;
                return Spell::Closed;
            }
            Err(_) => return Spell::Closed,
        }
    }
}

/// Ends a connection after its last response. Under TLS that is a close_notify (hyper
/// sends one too), so a body delimited by the close is known whole; a plain socket's
/// drop sends its FIN by itself.
pub(super) async fn close<S: super::ClientIo>(stream: &mut S, within: Duration) {
    if stream.secured() {
        let _ = tokio::time::timeout(within, stream.shutdown()).await;
    }
}

/// A spell's read and write buffers. A spell that ends gives them to the next one on its
/// thread: with a new connection per request, allocating and freeing two buffers of a
/// few KiB each time cost more than parsing the request (measured with glibc's
/// allocator, before the binary moved to mimalloc).
struct Buffers {
    buf: BytesMut,
    out: Vec<u8>,
}

/// Buffers kept per thread: enough for a burst of connections ending together, little
/// memory (at most 32 × 8 KiB a thread) when thousands of connections are parked.
const SPARE_BUFFERS: usize = 32;

thread_local! {
    // The buffers alone, not `Buffers`: dropping a cached pair (a thread exiting) must
    // not offer it back to the cache.
    static SPARE: std::cell::RefCell<Vec<(BytesMut, Vec<u8>)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Buffers {
    fn take() -> Buffers {
        let (mut buf, mut out) = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
        // Takes back the whole buffer when nothing else holds a part of it.
        buf.reserve(READ_BUF);
        out.reserve(READ_BUF);
        Buffers { buf, out }
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // Only buffers of the usual size are kept: a spell that grew one for a large
        // head gives that memory back.
        if self.buf.capacity() > 4 * READ_BUF || self.out.capacity() > 4 * READ_BUF {
            return;
        }
        let (mut buf, mut out) = (std::mem::take(&mut self.buf), std::mem::take(&mut self.out));
        buf.clear();
        out.clear();
        // `try_with`: a thread that is exiting has no cache left to give to.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_BUFFERS {
                spare.push((buf, out));
            }
        });
    }
}

/// Reads what the socket has into `buf`, growing it by a read buffer when it is full.
fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cx: &mut std::task::Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() == buf.len() {
        // Takes back the whole buffer when nothing else holds a part of it.
        buf.reserve(READ_BUF);
    }
    poll_read_buf(Pin::new(stream), cx, buf)
}

/// How a response body is delimited on the wire.
#[derive(Clone, Copy, PartialEq)]
enum Framing {
    /// None is sent (a `HEAD` request; a 1xx, 204 or 304 response).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, a length not known ahead).
    Close,
}

/// Writes `resp` to the client; `Ok(true)` when the connection can carry another
/// request. A write that waits longer than `send_timeout` fails (nginx's
/// `send_timeout`: a client that stops reading is let go of).
async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    resp: Response<ResponseBody>,
    head: bool,
    version: Version,
    mut keep_alive: bool,
    send_timeout: Duration,
) -> io::Result<bool> {
    let stream = &mut IdleIo::new(stream, None, Some(send_timeout));
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let hint = body.size_hint().exact();
    let raw = body.raw_head();
    // Whether a `Content-Length` is among the headers, and its value when it parses. A
    // raw head's length is the body's exact size (its framing came from that line).
    let (declared, length) = match (raw, parts.headers.get(header::CONTENT_LENGTH)) {
        (_, Some(v)) => (true, v.to_str().ok().and_then(|v| v.parse().ok())),
        (Some(raw), None) => (raw.content_length, hint.filter(|_| raw.content_length)),
        (None, None) => (false, None),
    };
    let framing =
        if head || status.is_informational() || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
            Framing::None
        } else if let Some(n) = length {
            Framing::Length(n)
        } else if let Some(n) = hint {
            Framing::Length(n)
        } else if version == Version::HTTP_11 {
            Framing::Chunked
        } else {
            Framing::Close
        };
    if framing == Framing::Close {
        keep_alive = false;
    }
    // The proxy's own refusals (a body left unread, a bad Host) close the connection.
    let closing = parts
        .headers
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    keep_alive &= !closing;

    status_line(out, version, status);
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(raw) = raw {
        raw.write_to(out);
    }
    if !(parts.headers.contains_key(header::DATE) || raw.is_some_and(|r| r.date)) {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) if !declared => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        // A HEAD response tells the length a GET would get, when it is known.
        Framing::None if head && !declared && hint.is_some_and(|n| n > 0) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(hint.unwrap_or(0), &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !keep_alive && version == Version::HTTP_11 && !closing {
        out.extend_from_slice(b"connection: close\r\n");
    } else if keep_alive && version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    let mut sent = 0u64;
    loop {
        // The head and what is buffered go out before a wait for the body, so a slow or
        // streaming response (server-sent events) reaches the client as it comes.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                // Flushed: TLS may hold what was written until asked to send it.
                stream.write_all(out).await?;
                stream.flush().await?;
                out.clear();
                poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            // The response cannot be completed: closing tells the client so.
            Some(Err(_)) => return Ok(false),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers: HTTP/1.1 clients rarely ask for them, and hyper drops them too.
                Err(_) => continue,
            },
        };
        if framing == Framing::None || data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if let Framing::Length(n) = framing
            && sent > n
        {
            // More than the length declared: the client would read the rest as the
            // next response.
            return Ok(false);
        }
        if framing == Framing::Chunked {
            chunk_size_line(out, data.len() as u64);
        }
        if out.len() + data.len() <= COPY_UP_TO {
            out.extend_from_slice(&data);
        } else {
            write_both(stream, out, data).await?;
            out.clear();
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(LAST_CHUNK),
        // Fewer bytes than declared: the client would wait for the rest.
        Framing::Length(n) if sent < n => keep_alive = false,
        _ => {}
    }
    if !out.is_empty() {
        stream.write_all(out).await?;
    }
    stream.flush().await?;
    Ok(keep_alive)
}

/// Writes `first` and then `second` with as few (vectored) writes as the socket takes.
async fn write_both<S: AsyncWrite + Unpin>(stream: &mut S, first: &[u8], mut second: Bytes) -> io::Result<()> {
    let mut first = first;
    while !first.is_empty() {
        let n = stream
            .write_vectored(&[IoSlice::new(first), IoSlice::new(&second)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_first = n.min(first.len());
        first = &first[from_first..];
        second.advance(n - from_first);
    }
    stream.write_all(&second).await
}

/// Answers a malformed request head, as hyper does, and lets the connection close.
async fn reject<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>, status: StatusCode) {
    status_line(out, Version::HTTP_11, status);
    out.extend_from_slice(b"content-length: 0\r\nconnection: close\r\ndate: ");
    date(out);
    out.extend_from_slice(b"\r\n\r\n");
    tracing::debug!(status = status.as_u16(), "malformed request head");
    if stream.write_all(out).await.is_ok() {
        let _ = stream.flush().await;
    }
}

/// How long a closing connection waits for each read of what the client still sends,
/// and in all (nginx's `lingering_timeout` and `lingering_time` are 5 s and 30 s).
pub(super) const LINGER_EACH: Duration = Duration::from_secs(2);
pub(super) const LINGER_TOTAL: Duration = Duration::from_secs(10);

/// nginx's lingering close, after an error response that ends the connection: the
/// write side is shut (the response, then FIN), and what the client still sends is read
/// and dropped until it closes, falls quiet or the time is up. Closing with unread bytes
/// would send a reset instead, and a reset can destroy the response before the client
/// has read it (RFC 9112 section 9.6). Over TLS the shutdown sends close_notify first,
/// and what follows is read from the socket and dropped undecrypted.
async fn linger_close<S: super::ClientIo>(stream: &mut S, buf: &mut BytesMut, drain: &super::Drain) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let stream = stream.socket();
    let deadline = Instant::now() + LINGER_TOTAL;
    loop {
        buf.clear();
        let each = (Instant::now() + LINGER_EACH).min(deadline);
        match drain.until(each, |cx| fill(stream, buf, cx)).await {
            Some(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Appends the current time as an HTTP date, formatted once a second per thread.
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spells that end by the hundred keep no more buffers than the cache holds, a
    /// spell takes a cached pair ready for use, and a thread exits with pairs cached.
    #[test]
    fn spare_buffers_are_bounded_and_reused() {
        std::thread::spawn(|| {
            let taken: Vec<Buffers> = (0..SPARE_BUFFERS * 3).map(|_| Buffers::take()).collect();
            drop(taken);
            assert_eq!(SPARE.with_borrow(Vec::len), SPARE_BUFFERS);
            let mut again = Buffers::take();
            assert_eq!(SPARE.with_borrow(Vec::len), SPARE_BUFFERS - 1);
            assert!(again.buf.is_empty() && again.out.is_empty());
            assert!(again.buf.capacity() >= READ_BUF && again.out.capacity() >= READ_BUF);
            // Grown past the usual size: given back to the allocator, not cached.
            again.out.reserve(8 * READ_BUF);
            drop(again);
            assert_eq!(SPARE.with_borrow(Vec::len), SPARE_BUFFERS - 1);
        })
        .join()
        .expect("the thread ends cleanly");
    }
}
