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
//! Response framing follows RFC 9112 section 6.3: no body for HEAD, 1xx, 204 and 304;
//! `Transfer-Encoding` ending in `chunked` is decoded (and wins over `Content-Length`,
//! but such a connection is not reused); a valid `Content-Length`, all copies equal;
//! otherwise the body runs until the endpoint closes. Informational responses other
//! than 101 are skipped. A connection goes back to the pool only when its response
//! ended exactly where its framing said, the endpoint did not ask to close (HTTP/1.0
//! without `keep-alive`, or `Connection: close`), and the whole request was sent.
//! Upgrades stay on hyper's client, which hands over the connection as a tunnel.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker, ready};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{BoxError, RequestBody};
use crate::wire::{hex, itoa};

/// The largest response head (status line and headers) read before giving up.
const MAX_HEAD: usize = 64 * 1024;
/// The most header lines a response head may have.
const MAX_HEADERS: usize = 128;
/// The largest chunk-size line or trailer section.
const MAX_CHUNK_LINE: usize = 4096;
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

/// Header fields a request head carries besides those in its map, names and values in
/// step: a proxy's own fields, written straight into the head rather than hashed into
/// the map first.
#[derive(Clone, Copy, Default)]
pub struct Extra<'a>(pub &'a [HeaderName], pub &'a [HeaderValue]);

/// A response head read, and how its body is framed.
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    /// The connection may carry another exchange once this body has been read.
    pub reusable: bool,
    /// The header lines as they came, when asked for and passed on unchanged; the
    /// response's map is then empty.
    pub raw: Option<RawHead>,
}

/// How a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `remaining` bytes to go.
    Length(u64),
    Chunked(Chunked),
    /// Until the endpoint closes the connection.
    Close,
    /// Nothing more.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// `remaining` bytes of chunk data to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
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
        let chunked = self.encode_head(&req, &body, extra);
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

    /// Encodes the request head into `out`; returns whether the body goes chunked.
    fn encode_head(&mut self, req: &Request<RequestBody>, body: &RequestBody, extra: Extra<'_>) -> bool {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(req.method().as_str().as_bytes());
        out.push(b' ');
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in req.headers() {
            // The framing headers are this hop's, written below.
            if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in extra.0.iter().zip(extra.1) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let chunked = match body.size_hint().exact() {
            Some(0) if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) => {
                // A client's own `Content-Length: 0` is kept; none is added to a GET.
                if req.headers().contains_key(header::CONTENT_LENGTH) {
                    out.extend_from_slice(b"content-length: 0\r\n");
                }
                false
            }
            Some(n) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa(n, &mut [0; 20]));
                out.extend_from_slice(b"\r\n");
                false
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                true
            }
        };
        out.extend_from_slice(b"\r\n");
        chunked
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
                        self.out.extend_from_slice(b"0\r\n\r\n");
                    }
                    w.body_done = true;
                }
                Some(Err(e)) => return Poll::Ready(Err(Error::Body(e))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => {}
                    Ok(data) => {
                        if w.chunked {
                            self.out.extend_from_slice(hex(data.len() as u64, &mut [0; 16]));
                            self.out.extend_from_slice(b"\r\n");
                            w.crlf_due = true;
                        }
                        w.data = data;
                    }
                    Err(frame) => {
                        // Trailers end a chunked body; a sized body has nowhere to put them.
                        if let (Ok(trailers), true) = (frame.into_trailers(), w.chunked) {
                            self.out.extend_from_slice(b"0\r\n");
                            for (name, value) in &trailers {
                                self.out.extend_from_slice(name.as_str().as_bytes());
                                self.out.extend_from_slice(b": ");
                                self.out.extend_from_slice(value.as_bytes());
                                self.out.extend_from_slice(b"\r\n");
                            }
                            self.out.extend_from_slice(b"\r\n");
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
                Err(e) => return Poll::Ready(Some(Err(e))),
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

/// For the fuzz target: a response head read from arbitrary bytes (into a map and as
/// raw lines), then its body decoded as the head frames it.
#[cfg(fuzzing)]
pub(crate) fn fuzz_response(data: &[u8]) {
    for raw in [None, Some(&[Box::from("server")][..])] {
        let mut buf = BytesMut::from(data);
        let mut spare = None;
        loop {
            match parse_head(&mut buf, false, raw, &mut spare) {
                Ok(Parsed::Informational) => continue,
                Ok(Parsed::Final(head)) => {
                    if let Some(raw) = &head.raw {
                        raw.write_to(&mut Vec::new());
                    }
                    let mut framing = head.framing;
                    while let Ok(Decoded::Frame(_)) = decode_body(&mut buf, &mut framing) {}
                    break;
                }
                Ok(Parsed::Partial) | Err(_) => break,
            }
        }
    }
}

/// For the fuzz target: a chunked body decoded from arbitrary bytes, fed in two parts
/// split where the first byte says, as reads would bring them.
#[cfg(fuzzing)]
pub(crate) fn fuzz_chunked(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(data.len());
    let mut framing = Framing::Chunked(Chunked::Size);
    let mut buf = BytesMut::from(&data[..at]);
    let mut total = 0usize;
    for more in [&data[at..], &[][..]] {
        loop {
            match decode_body(&mut buf, &mut framing) {
                Ok(Decoded::Frame(frame)) => {
                    total += frame.data_ref().map_or(0, |d| d.len());
                    assert!(total <= data.len(), "more body than bytes");
                }
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::End) | Err(_) => return,
            }
        }
        buf.extend_from_slice(more);
    }
}

/// What [`decode_body`] found in the buffer.
#[derive(Debug)]
pub enum Decoded {
    Frame(Frame<Bytes>),
    /// The body ended where its framing said.
    End,
    /// Not enough buffered to go on (for [`Framing::Close`], the end of the stream
    /// ends the body; for the others it cuts it short).
    NeedMore,
}

/// Takes the next piece of a response body off the front of `buf`, advancing
/// `framing`: a pure function of the bytes, so that it can be tested with byte
/// literals and fuzzed. Chunked framing follows RFC 9112 section 7.1: a chunk-size
/// line (hex digits, optional extensions) ended by CRLF, the data, CRLF; after the
/// last chunk a trailer section, whose fields RFC 9110 section 6.5.1 forbids are
/// dropped. A size line or trailer section longer than [`MAX_CHUNK_LINE`] is an error.
pub fn decode_body(buf: &mut BytesMut, framing: &mut Framing) -> Result<Decoded, Error> {
    loop {
        match framing {
            Framing::Done | Framing::Length(0) => {
                *framing = Framing::Done;
                return Ok(Decoded::End);
            }
            Framing::Length(remaining) | Framing::Chunked(Chunked::Data(remaining)) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = buf.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= take as u64;
                if *framing == Framing::Chunked(Chunked::Data(0)) {
                    *framing = Framing::Chunked(Chunked::DataEnd);
                }
                return Ok(Decoded::Frame(Frame::data(buf.split_to(take).freeze())));
            }
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                return Ok(Decoded::Frame(Frame::data(buf.split().freeze())));
            }
            Framing::Chunked(Chunked::Size) => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    *framing = Framing::Chunked(if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    });
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => return Ok(Decoded::NeedMore),
                _ => return Err(Error::Invalid("bad chunk size line")),
            },
            Framing::Chunked(Chunked::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(Decoded::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(Error::Invalid("chunk data longer than its size"));
                }
                buf.advance(2);
                *framing = Framing::Chunked(Chunked::Size);
            }
            Framing::Chunked(Chunked::Trailers) => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    *framing = Framing::Done;
                    return Ok(Decoded::End);
                }
                let mut fields = [httparse::EMPTY_HEADER; 32];
                match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((used, fields))) => {
                        let mut trailers = HeaderMap::with_capacity(fields.len());
                        for f in fields {
                            if let (Ok(name), Ok(value)) = (
                                HeaderName::from_bytes(f.name.as_bytes()),
                                HeaderValue::from_bytes(f.value),
                            ) && crate::codec::trailer_allowed(&name)
                            {
                                trailers.append(name, value);
                            }
                        }
                        buf.advance(used);
                        *framing = Framing::Done;
                        return Ok(Decoded::Frame(Frame::trailers(trailers)));
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => return Ok(Decoded::NeedMore),
                    _ => return Err(Error::Invalid("bad trailer section")),
                }
            }
        }
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

// Returned, never stored: boxing the head would cost an allocation per response.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Final(Head),
    /// A 1xx response other than 101, consumed and skipped.
    Informational,
    Partial,
}

/// Whether a response head may come as a [`RawHead`] (`Some`), and the names that rule
/// that out: fields the route's filters may change, which must then be in a map (as
/// `HeaderName::as_str` gives them: compared without a lookup per field).
pub type Raw<'a> = Option<&'a [Box<str>]>;

/// `spare` is a map to fill, taken only for a final response. With `raw`, a head the
/// client's writer can send on as it came is kept as a [`RawHead`] instead, and the
/// response's map stays empty.
fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
    raw: Raw<'_>,
    spare: &mut Option<HeaderMap>,
) -> Result<Parsed, Error> {
    // Where each header's name and value lie in the buffer; the head is then split off
    // and the values become slices of it, not copies.
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let (len, code, minor, count) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len =
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut fields) {
                Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
                Ok(httparse::Status::Complete(_)) => return Err(Error::HeadTooLarge),
                Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
                Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
                Err(e) => return Err(Error::Parse(e)),
            };
        let base = buf.as_ptr() as usize;
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (
                name as u32,
                (name + h.name.len()) as u32,
                value as u32,
                (value + h.value.len()) as u32,
            );
        }
        (
            len,
            resp.code.unwrap_or(0),
            resp.version.unwrap_or(1),
            resp.headers.len(),
        )
    };
    let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("bad status code"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        buf.advance(len);
        return Ok(Parsed::Informational);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Error::Invalid("101 without an upgrade request"));
    }
    let spans = &spans[..count];
    let head = buf.split_to(len).freeze();
    let scan = Scan::of(&head, spans);
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let (framing, mut reusable) = scan.framing(&head, status, head_request)?;
    reusable &= scan.keep_alive(version);
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    let raw = match raw {
        Some([]) => RawHead::of(&head, spans, &scan),
        Some(names) if !spans.iter().any(|s| names.iter().any(|n| is_name(&head, *s, n))) => {
            RawHead::of(&head, spans, &scan)
        }
        _ => None,
    };
    if raw.is_none() {
        let mut headers = spare.take().unwrap_or_default();
        headers.clear();
        headers.reserve(count);
        for &(ns, ne, vs, ve) in spans {
            let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
                .map_err(|_| Error::Invalid("bad header name"))?;
            // httparse allows only what a header value may hold.
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
                .map_err(|_| Error::Invalid("bad header value"))?;
            headers.append(name, value);
        }
        *response.headers_mut() = headers;
    }
    Ok(Parsed::Final(Head {
        response,
        framing,
        reusable,
        raw,
    }))
}

/// Whether the field at `span` of `head` is named `name`.
fn is_name(head: &[u8], (ns, ne, _, _): (u32, u32, u32, u32), name: &str) -> bool {
    head[ns as usize..ne as usize].eq_ignore_ascii_case(name.as_bytes())
}

/// A response header's meaning to this hop, told from its name alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    Date,
    /// `TE`, `Trailer`, `Upgrade` and the `Proxy-*` family: hop-by-hop, and rare.
    OtherHop,
    EndToEnd,
}

impl Field {
    fn of(name: &[u8]) -> Field {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            4 if is(b"date") => Field::Date,
            10 if is(b"connection") => Field::Connection,
            10 if is(b"keep-alive") => Field::KeepAlive,
            14 if is(b"content-length") => Field::ContentLength,
            17 if is(b"transfer-encoding") => Field::TransferEncoding,
            2 if is(b"te") => Field::OtherHop,
            7 if is(b"trailer") || is(b"upgrade") => Field::OtherHop,
            16 if is(b"proxy-connection") => Field::OtherHop,
            18 if is(b"proxy-authenticate") => Field::OtherHop,
            19 if is(b"proxy-authorization") => Field::OtherHop,
            _ => Field::EndToEnd,
        }
    }
}

/// What one pass over a response head's fields finds for this hop.
struct Scan {
    /// The one `Content-Length`.
    length: Option<u64>,
    /// Copies of `Content-Length` that disagree or do not parse: an error unless the
    /// response has no body anyway.
    bad_length: Option<&'static str>,
    /// The last `Transfer-Encoding` value, as a span of the head.
    transfer_encoding: Option<(u32, u32)>,
    close: bool,
    keep: bool,
    /// `Connection` names a field other than `close` and `keep-alive`.
    connection_names: bool,
    date: bool,
    other_hop: bool,
    /// This hop's own lines (`Connection`, `Keep-Alive`, `Transfer-Encoding`), by
    /// index: the first [`RAW_SKIPS`], and how many there are.
    own: [usize; RAW_SKIPS],
    owns: usize,
}

impl Scan {
    fn of(head: &[u8], spans: &[(u32, u32, u32, u32)]) -> Scan {
        let mut scan = Scan {
            length: None,
            bad_length: None,
            transfer_encoding: None,
            close: false,
            keep: false,
            connection_names: false,
            date: false,
            other_hop: false,
            own: [0; RAW_SKIPS],
            owns: 0,
        };
        for (i, &(ns, ne, vs, ve)) in spans.iter().enumerate() {
            let value = &head[vs as usize..ve as usize];
            let field = Field::of(&head[ns as usize..ne as usize]);
            if matches!(field, Field::Connection | Field::KeepAlive | Field::TransferEncoding) {
                if let Some(own) = scan.own.get_mut(scan.owns) {
                    *own = i;
                }
                scan.owns += 1;
            }
            match field {
                Field::ContentLength => scan.content_length(value),
                Field::TransferEncoding => scan.transfer_encoding = Some((vs, ve)),
                Field::Connection => {
                    for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                        if token.eq_ignore_ascii_case(b"close") {
                            scan.close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            scan.keep = true;
                        } else if !token.is_empty() {
                            scan.connection_names = true;
                        }
                    }
                }
                Field::Date => scan.date = true,
                Field::OtherHop => scan.other_hop = true,
                Field::KeepAlive | Field::EndToEnd => {}
            }
        }
        scan
    }

    /// Every copy of `Content-Length` must agree, and parse.
    fn content_length(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                self.bad_length.get_or_insert("bad Content-Length");
                return;
            }
            let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if self.length.is_some_and(|l| l != n) {
                self.bad_length.get_or_insert("conflicting Content-Length values");
            }
            self.length = Some(n);
        }
    }

    /// RFC 9112 section 6.3: how the body is delimited, and whether the connection can
    /// be trusted after it.
    fn framing(&self, head: &[u8], status: StatusCode, head_request: bool) -> Result<(Framing, bool), Error> {
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok((Framing::Done, true));
        }
        if let Some(bad) = self.bad_length {
            return Err(Error::Invalid(bad));
        }
        if let Some((vs, ve)) = self.transfer_encoding {
            let last = head[vs as usize..ve as usize].rsplit(|&b| b == b',').next();
            let chunked = last.is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            // Both framings at once smell of request smuggling: decode by the stronger
            // one, and never reuse the connection.
            return Ok(match chunked {
                true => (Framing::Chunked(Chunked::Size), self.length.is_none()),
                false => (Framing::Close, false),
            });
        }
        Ok(match self.length {
            Some(n) => (Framing::Length(n), true),
            None => (Framing::Close, false),
        })
    }

    /// Whether the endpoint lets the connection carry another exchange.
    fn keep_alive(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep)
    }
}

/// The most hop-by-hop lines a [`RawHead`] leaves out; a head with more is read into a
/// header map instead.
const RAW_SKIPS: usize = 3;

/// An endpoint's response header lines as they came, for a client writer that sends
/// them on unchanged: the common response passes through without a header map, its
/// names neither parsed nor hashed (about a tenth of a request's work in user space).
/// This hop's own lines (`Connection`, `Keep-Alive`, `Transfer-Encoding`) are left
/// out. A head with other hop-by-hop fields, a `Connection` naming further fields, a
/// line not ended by CRLF, or both `Transfer-Encoding` and `Content-Length`, is read
/// into a map instead.
///
/// Small, as it rides in every response body: a declared `Content-Length` is the body's
/// exact size hint, so only its presence is kept.
#[derive(Debug)]
pub struct RawHead {
    /// The header lines, each with its CRLF; shorter than [`MAX_HEAD`].
    block: Bytes,
    /// Lines left out, as ranges of `block` in order.
    skip: [(u16, u16); RAW_SKIPS],
    skips: u8,
    /// Whether a `Content-Length` line is among them.
    pub content_length: bool,
    /// Whether a `Date` line is among them.
    pub date: bool,
}

impl RawHead {
    fn of(head: &Bytes, spans: &[(u32, u32, u32, u32)], scan: &Scan) -> Option<RawHead> {
        let both_framings = scan.length.is_some() && scan.transfer_encoding.is_some();
        if scan.other_hop
            || scan.connection_names
            || both_framings
            || scan.owns > RAW_SKIPS
            || !head.ends_with(b"\r\n\r\n")
        {
            return None;
        }
        let end = head.len() - 2;
        let start = spans.first().map_or(end, |s| s.0 as usize);
        let line_end = |i: usize| spans.get(i + 1).map_or(end, |next| next.0 as usize);
        for (i, &(_, _, _, ve)) in spans.iter().enumerate() {
            // Only optional whitespace and CRLF may follow the value: a bare LF ends
            // the line for httparse, and is not passed on.
            let gap = &head[ve as usize..line_end(i)];
            if !gap.ends_with(b"\r\n") || !gap[..gap.len() - 2].iter().all(|&b| b == b' ' || b == b'\t') {
                return None;
            }
        }
        let mut skip = [(0, 0); RAW_SKIPS];
        for (range, &i) in skip.iter_mut().zip(&scan.own[..scan.owns]) {
            *range = (
                u16::try_from(spans[i].0 as usize - start).ok()?,
                u16::try_from(line_end(i) - start).ok()?,
            );
        }
        Some(RawHead {
            block: head.slice(start..end),
            skip,
            skips: scan.owns as u8,
            content_length: scan.length.is_some(),
            date: scan.date,
        })
    }

    /// Appends the lines passed on, each with its CRLF.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut at = 0;
        for &(from, to) in &self.skip[..usize::from(self.skips)] {
            out.extend_from_slice(&self.block[at..from as usize]);
            at = to as usize;
        }
        out.extend_from_slice(&self.block[at..]);
    }
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
