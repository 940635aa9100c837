//! Portico's HTTP/1.1 client for pooled endpoint connections.
//!
//! Every request that is not an upgrade goes out through this client, on a connection
//! checked out of the shared pool. It exists for what a general client cannot give a
//! proxy that sends tens of thousands of small exchanges a second (Pingora wrote its
//! own for the same reasons):
//!
//! - Each connection keeps one read buffer and one write buffer for its whole life.
//!   The request head is encoded into the write buffer and sent with one write; the
//!   response head is parsed in place (httparse) and its header values are slices of
//!   the read buffer, so reading a response allocates nothing but the header map.
//! - No channel, task or callback between a request and its connection: the task that
//!   serves the client writes the request and reads the response.
//! - A bodiless request comes back when its connection fails, so it can go out again
//!   on another connection without being copied first.
//!
//! The bytes themselves (the request head written, the response head read with its
//! framing, chunks decoded) are [`crate::codec`]'s; this module moves them between the
//! socket and the buffers. A connection goes back to the pool only when its response
//! ended exactly where its framing said, the endpoint did not ask to close, and the
//! whole request was sent.
//! Upgrades stay on hyper's client, which hands over the connection as a tunnel.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker, ready};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::HeaderMap;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{BoxError, RequestBody};
use crate::codec::framing::{self, Decoded, Framing, decode_body};
use crate::codec::request::encode_head;
use crate::codec::response::{Head, MAX_HEAD, MAX_HEADERS, Parsed, parse_head};
use crate::codec::{self, Extra, Raw, RawHead};

/// Reads start at this size and grow while they fill the buffer (large bodies).
///
/// A frame handed to the client pins the whole buffer it was read into until the
/// client has taken it, so `MAX_READ` is also what one client that stops reading can
/// make Portico hold of its response. At 256 KiB (buffers grown to 512 KiB), 150 slow
/// readers of a large response grew RSS by 420 KiB each; at 64 KiB, by 116-121 KiB.
const MIN_READ: u32 = 8 * 1024;
const MAX_READ: u32 = 64 * 1024;
/// A connection going back to the pool keeps buffers up to this size.
const KEEP_BUFFER: usize = 64 * 1024;
/// A consumer that takes longer than this to come back for the next frame of a large
/// body (a client reading slower than about 1 MB/s at the largest read) gets reads of
/// `MIN_READ` again, and the large buffer is let go of: a client that trickles its
/// response keeps 8-16 KiB of it in Portico. Only reads that grew ask the clock, so a
/// small response costs nothing more.
const SLOW_CONSUMER_MS: u32 = 50;

/// Milliseconds since the first call, wrapping, never 0: a clock in 4 bytes.
fn now_ms() -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    (EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u32).max(1)
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connection closed before a response")]
    Closed,
    #[error("connection closed in the middle of the response")]
    Incomplete,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("invalid response head: {0}")]
    Parse(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes or {MAX_HEADERS} lines")]
    HeadTooLarge,
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    #[error("request body: {0}")]
    Body(#[source] BoxError),
    /// From hyper's client, which carries upgrades and HTTP/2.
    #[error("{0}")]
    Hyper(#[from] hyper::Error),
}

impl From<codec::Error> for Error {
    fn from(e: codec::Error) -> Error {
        match e {
            codec::Error::Parse(e) => Error::Parse(e),
            codec::Error::HeadTooLarge => Error::HeadTooLarge,
            codec::Error::Invalid(why) => Error::Invalid(why),
        }
    }
}

/// A failed send.
pub enum Failure {
    /// Nothing was written: the request may go to any endpoint as it is.
    Unsent(Request<RequestBody>),
    /// Failed after the request (or part of it) was written. `request` is the request
    /// back when it had no body and no answer came, so that it can be sent again.
    Failed {
        error: Error,
        request: Option<Request<RequestBody>>,
    },
}

/// The transport under a connection.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One HTTP/1.1 connection to an endpoint and its two buffers.
pub struct H1Conn {
    io: Stream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The request head and chunk framing on their way out.
    out: Vec<u8>,
    read_size: u32,
    /// When the last frame read with a grown `read_size` was handed out ([`now_ms`]),
    /// or 0. Both small: an H1Body is moved with every response.
    handed: u32,
    /// The serving thread whose event loop the socket is registered with: the one that
    /// opened it or last moved it, not necessarily the one that uses it now.
    home: usize,
    /// Exchanges finished on this connection.
    exchanges: u32,
}

impl H1Conn {
    pub fn new(io: Stream) -> H1Conn {
        H1Conn {
            io,
            buf: BytesMut::new(),
            out: Vec::new(),
            read_size: MIN_READ,
            handed: 0,
            home: super::worker(),
            exchanges: 0,
        }
    }

    /// Counts an exchange finished, and tells how many this connection has carried.
    pub fn finished(&mut self) -> u32 {
        self.exchanges = self.exchanges.saturating_add(1);
        self.exchanges
    }

    /// The serving thread whose event loop the socket is registered with.
    pub fn home(&self) -> usize {
        self.home
    }

    /// Whether the connection can carry a request, judged without waiting: it fails
    /// when the endpoint has closed it or sent something unasked since the last
    /// exchange.
    pub fn usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        let mut probe = ReadBuf::uninit(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(Pin::new(&mut self.io).poll_read(&mut cx, &mut probe), Poll::Pending)
    }

    /// Registers a plain connection's socket with the calling thread's event loop, so
    /// its readiness arrives there; `None` when the socket was lost on the way. A TLS
    /// connection stays where it is.
    pub fn rehome(self) -> Option<H1Conn> {
        match self.io {
            Stream::Plain(s) => Some(H1Conn {
                io: Stream::Plain(s.into_std().and_then(TcpStream::from_std).ok()?),
                home: super::worker(),
                ..self
            }),
            tls => Some(H1Conn { io: tls, ..self }),
        }
    }

    /// Gives back memory a large exchange grew the buffers to, before the connection
    /// waits in the pool.
    pub fn trim(&mut self) {
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = BytesMut::new();
        }
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        self.read_size = MIN_READ;
        self.handed = 0;
    }

    /// Sends `req` and reads the response head. The request body is streamed while the
    /// connection is watched for an early response (an endpoint may refuse an upload
    /// before it has all arrived).
    /// `extra` fields are written after the request's own. With `raw`, a response head
    /// that can pass through unchanged comes as a [`RawHead`].
    pub async fn send(
        &mut self,
        mut req: Request<RequestBody>,
        extra: Extra<'_>,
        raw: Raw<'_>,
    ) -> Result<Head, Failure> {
        let mut body = std::mem::replace(req.body_mut(), RequestBody::Empty);
        let bodiless = body.is_end_stream();
        let chunked = encode_head(&mut self.out, &req, body.size_hint().exact(), extra);
        let head_only = req.method() == Method::HEAD;
        let mut w = Writer {
            pos: 0,
            data: Bytes::new(),
            chunked,
            crlf_due: false,
            body_done: bodiless,
            written: 0,
        };
        // Once the head is encoded, the request's header map becomes the response's:
        // its memory is reused rather than a map allocated per response.
        let mut spare = Some(std::mem::take(req.headers_mut()));
        let mut write_done = false;
        let mut write_failed: Option<io::Error> = None;
        let result = std::future::poll_fn(|cx| {
            if !write_done && write_failed.is_none() {
                match self.poll_write_request(cx, &mut w, &mut body) {
                    Poll::Ready(Ok(())) => write_done = true,
                    // The endpoint may have answered and closed without reading the rest
                    // (a refused upload): that answer is the one to pass on. It arrived
                    // before the reset that failed the write, but the event loop may not
                    // have reported the socket readable yet, so a read tried now can
                    // wait: the head is waited for below, not only tried once. A reset
                    // connection ends that wait at once, with the data before it read.
                    Poll::Ready(Err(Error::Io(e))) => write_failed = Some(e),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            let read = ready!(self.poll_read_head(cx, head_only, raw, &mut spare));
            Poll::Ready(match (read, write_failed.take()) {
                (Err(_), Some(e)) => Err(Error::Io(e)),
                (read, _) => read,
            })
        })
        .await;
        if let Some(headers) = spare {
            *req.headers_mut() = headers;
        }
        match result {
            Ok(mut head) => {
                // An answer before the whole request left: the rest of the body cannot
                // follow on this connection, and what the client still sends is read
                // and dropped for a while, so that it can finish sending and read the
                // answer instead of meeting a reset (nginx's lingering close).
                head.reusable &= write_done;
                if !write_done {
                    body.linger();
                }
                Ok(head)
            }
            // Not a byte left: the request goes elsewhere as it is, body and all.
            Err(Error::Io(_) | Error::Closed) if w.written == 0 => {
                *req.body_mut() = body;
                Err(Failure::Unsent(req))
            }
            // Only a connection that failed before any answer hands the request back:
            // an endpoint that answered, however badly, has seen it.
            Err(error) => {
                let unanswered = matches!(error, Error::Io(_) | Error::Closed);
                Err(Failure::Failed {
                    error,
                    request: (bodiless && unanswered).then_some(req),
                })
            }
        }
    }

    /// Writes what is due of the request: the head, then the body as it arrives.
    fn poll_write_request(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut Writer,
        body: &mut RequestBody,
    ) -> Poll<Result<(), Error>> {
        loop {
            while w.pos < self.out.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[w.pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
                }
                w.pos += n;
                w.written += n;
            }
            while w.data.has_remaining() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &w.data))?;
                if n == 0 {
                    return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
                }
                w.data.advance(n);
                w.written += n;
            }
            if w.body_done {
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
            self.out.clear();
            w.pos = 0;
            if w.crlf_due {
                self.out.extend_from_slice(b"\r\n");
                w.crlf_due = false;
            }
            let frame = match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => {
                    // Whatever is written so far goes out while the client sends more.
                    let _ = Pin::new(&mut self.io).poll_flush(cx)?;
                    return Poll::Pending;
                }
                Poll::Ready(frame) => frame,
            };
            match frame {
                None => {
                    if w.chunked {
                        self.out.extend_from_slice(framing::LAST_CHUNK);
                    }
                    w.body_done = true;
                }
                Some(Err(e)) => return Poll::Ready(Err(Error::Body(e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        if w.chunked {
                            framing::chunk_size_line(&mut self.out, data.len() as u64);
                            w.crlf_due = true;
                        }
                        w.data = data;
                    }
                    Err(frame) => {
                        // Trailers end a chunked body; a sized body has nowhere to put them.
                        if let (Ok(trailers), true) = (frame.into_trailers(), w.chunked) {
                            framing::last_chunk_with_trailers(&mut self.out, &trailers);
                            w.body_done = true;
                            w.chunked = false;
                        }
                    }
                },
            }
        }
    }

    /// Reads into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        if self.handed != 0 && now_ms().wrapping_sub(std::mem::take(&mut self.handed)) >= SLOW_CONSUMER_MS {
            self.shrink_for_slow_consumer();
        }
        // Reading into what is left of the buffer is fine until that gets small; then
        // `reserve` takes the whole buffer back when no response still holds part of it.
        let read_size = self.read_size as usize;
        if self.buf.capacity() - self.buf.len() < read_size / 2 {
            self.buf.reserve(read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf))?;
        // A read that filled the room suggests a large body: read more at a time.
        if n >= room && self.read_size < MAX_READ {
            self.read_size *= 2;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_read_head(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
        raw: Raw<'_>,
        spare: &mut Option<HeaderMap>,
    ) -> Poll<Result<Head, Error>> {
        loop {
            if !self.buf.is_empty() {
                match parse_head(&mut self.buf, head_request, raw, spare)? {
                    Parsed::Final(head) => return Poll::Ready(Ok(head)),
                    Parsed::Informational => continue,
                    Parsed::Partial if self.buf.len() >= MAX_HEAD => return Poll::Ready(Err(Error::HeadTooLarge)),
                    Parsed::Partial => {}
                }
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(if self.buf.is_empty() {
                    Error::Closed
                } else {
                    Error::Incomplete
                }));
            }
        }
    }

    /// The next frame of the response body, advancing `framing`: [`decode_body`] on
    /// what is buffered, reading more when it needs more.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        framing: &mut Framing,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            match decode_body(&mut self.buf, framing) {
                Ok(Decoded::Frame(frame)) => {
                    // Only a large body grows reads: small ones never ask the clock.
                    if self.read_size > MIN_READ {
                        self.handed = now_ms();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) if *framing == Framing::Close => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        *framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                }
                Ok(Decoded::NeedMore) => ready!(self.fill_more(cx))?,
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }

    /// Drops back to small reads, and lets go of a large buffer now that the frame
    /// that pinned it has been taken (the consumer is back). Always a new buffer: an
    /// empty `BytesMut` shows no capacity but would take its whole allocation back on
    /// the next `reserve`.
    fn shrink_for_slow_consumer(&mut self) {
        self.read_size = MIN_READ;
        let mut small = BytesMut::with_capacity((MIN_READ as usize).max(self.buf.len()));
        small.extend_from_slice(&self.buf);
        self.buf = small;
    }

    /// Reads more; the end of the stream here cuts a body short.
    fn fill_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        match ready!(self.poll_fill(cx))? {
            0 => Poll::Ready(Err(Error::Incomplete)),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Whether nothing beyond the last response was read: a connection with stray
    /// bytes cannot be trusted with another exchange.
    pub fn clean(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Progress writing one request.
struct Writer {
    /// How much of the connection's `out` has been written.
    pos: usize,
    /// Body data being written after `out`.
    data: Bytes,
    chunked: bool,
    /// The CRLF that ends the chunk just written goes before the next piece.
    crlf_due: bool,
    body_done: bool,
    written: usize,
}

/// A response body read from a pooled connection. The connection goes back to the
/// pool the moment the body has ended cleanly; dropped before that, it is closed.
pub struct H1Body {
    conn: Option<super::PooledConn>,
    framing: Framing,
    reusable: bool,
    raw: Option<RawHead>,
}

impl H1Body {
    pub fn new(conn: super::PooledConn, head: Head) -> (Response<()>, H1Body) {
        let Head {
            response,
            framing,
            reusable,
            raw,
        } = head;
        let mut body = H1Body {
            conn: Some(conn),
            framing,
            reusable,
            raw,
        };
        body.release_if_done();
        (response, body)
    }

    /// The response's header lines as they came, when they pass through unchanged.
    pub fn raw_head(&self) -> Option<&RawHead> {
        self.raw.as_ref()
    }

    fn release_if_done(&mut self) {
        if matches!(self.framing, Framing::Done | Framing::Length(0))
            && let Some(mut conn) = self.conn.take()
            && self.reusable
            && conn.conn().clean()
        {
            conn.release();
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = conn.conn().poll_body(cx, &mut this.framing);
        match &polled {
            Poll::Ready(Some(Ok(_))) | Poll::Ready(None) => this.release_if_done(),
            // A broken body leaves the connection in an unknown state.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
