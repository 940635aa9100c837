//! A client's request body on its way to the endpoint: streamed, cut off at the route's
//! limit, or read ahead (`proxy-request-buffering: on`) within a budget per body and
//! per process. Below the upstream client, which sends it; the response body, which
//! wraps the client's, is [`crate::response_body`]'s.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::idle::Idle;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body was larger than the route allows.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// The client sent no part of its request body for longer than `client_body_timeout`
/// (nginx answers 408).
#[derive(Debug, thiserror::Error)]
#[error("no request body bytes for {0:?}")]
pub struct ClientBodyTimeout(pub Duration);

/// Called once when a request body has been read to its end. The listener puts one in
/// a request's extensions when it wants to know (a plain HTTP/1.1 connection releases
/// its buffers only once every request body on it has been read).
#[derive(Clone)]
pub struct BodyEndHook(pub Arc<dyn Fn() + Send + Sync>);

/// A client's request body on its way to the endpoint, cut off at the route's limit.
pub enum RequestBody {
    Empty,
    Streaming {
        inner: Incoming,
        limit: Option<u64>,
        seen: u64,
        on_end: Option<BodyEndHook>,
        idle: Idle,
    },
    /// Read ahead before the endpoint was contacted ([`RequestBody::buffer`]): the
    /// frames read, then the rest of the body when it did not fit.
    Buffered(Box<Buffered>),
}

/// A body read ahead, and the memory it holds against the process's budget.
pub struct Buffered {
    frames: std::collections::VecDeque<Frame<Bytes>>,
    /// Data bytes among `frames`.
    len: u64,
    rest: Option<RequestBody>,
    held: Held,
}

/// Bytes of request bodies held in memory by the whole process.
static BUFFERED: AtomicU64 = AtomicU64::new(0);

/// A share of a process-wide count of bytes held ([`BUFFERED`], or responses read
/// ahead), given back when dropped.
pub(crate) struct Held {
    pool: &'static AtomicU64,
    n: u64,
}

impl Held {
    pub(crate) fn new(pool: &'static AtomicU64) -> Held {
        Held { pool, n: 0 }
    }

    /// Takes `n` more bytes of the budget, if `budget` allows.
    pub(crate) fn take(&mut self, n: u64, budget: u64) -> bool {
        if self.pool.fetch_add(n, Ordering::AcqRel) + n > budget {
            self.pool.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        self.n += n;
        true
    }

    pub(crate) fn give_back(&mut self, n: u64) {
        let n = n.min(self.n);
        self.n -= n;
        self.pool.fetch_sub(n, Ordering::AcqRel);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.pool.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Bytes of request bodies the process holds in memory now.
pub fn buffered_bytes() -> u64 {
    BUFFERED.load(Ordering::Acquire)
}

impl RequestBody {
    /// `None`: a request that has no body (Portico's own HTTP/1.1 server reads only
    /// those; hyper reads the rest).
    /// `timeout` bounds the wait between two reads of the body (`client_body_timeout`).
    pub fn new(inner: Option<Incoming>, limit: Option<u64>, on_end: Option<BodyEndHook>, timeout: Duration) -> Self {
        match inner {
            Some(inner) if !inner.is_end_stream() => RequestBody::Streaming {
                inner,
                limit,
                seen: 0,
                on_end,
                idle: Idle::new(timeout),
            },
            _ => RequestBody::Empty,
        }
    }
}

impl RequestBody {
    /// ingress-nginx's `proxy-request-buffering: on`: reads the body before the
    /// endpoint is contacted, so a slow client ties up no backend connection, and a
    /// body that turns out malformed, too large or stalled is refused with nothing
    /// forwarded. Up to `cap` bytes are read, and only while the process holds fewer
    /// than `budget` bytes of bodies in all; what does not fit then streams after
    /// what was read (nginx would spill it to a file). A body read in full goes out
    /// with a `Content-Length`, as nginx sends it.
    pub async fn buffer(self, cap: u64, budget: u64) -> Result<RequestBody, BoxError> {
        if !matches!(self, RequestBody::Streaming { .. }) {
            return Ok(self);
        }
        let mut body = self;
        let mut buffered = Buffered {
            frames: Default::default(),
            len: 0,
            rest: None,
            held: Held::new(&BUFFERED),
        };
        loop {
            // A body that has reached its limit is read on: what comes next is either
            // its end or one byte too many, and a 413 must find nothing forwarded.
            if buffered.len >= cap && !body.at_limit() {
                buffered.rest = Some(body);
                break;
            }
            let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await else {
                break;
            };
            let frame = frame?;
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            if !buffered.held.take(n, budget) {
                // Over the budget: this frame and the rest stream.
                buffered.frames.push_back(frame);
                buffered.len += n;
                buffered.rest = Some(body);
                break;
            }
            buffered.len += n;
            buffered.frames.push_back(frame);
        }
        Ok(RequestBody::Buffered(Box::new(buffered)))
    }

    /// Whether a body with a limit has brought exactly that much: any more is too much.
    fn at_limit(&self) -> bool {
        matches!(self, RequestBody::Streaming { limit: Some(limit), seen, .. } if seen >= limit)
    }

    /// Reads and drops what is left of the body in the background ([`linger`]), for a
    /// request answered before its body was sent.
    pub fn linger(self) {
        match self {
            RequestBody::Streaming { inner, on_end, .. } => linger_then(Some(inner), on_end),
            // What was read ahead is dropped; what had not been read yet lingers.
            RequestBody::Buffered(buffered) => {
                if let Some(rest) = buffered.rest {
                    rest.linger();
                }
            }
            RequestBody::Empty => {}
        }
    }
}

fn body_ended(on_end: &mut Option<BodyEndHook>) {
    if let Some(hook) = on_end.take() {
        (hook.0)();
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Buffered(b) => {
                if let Some(frame) = b.frames.pop_front() {
                    if let Some(data) = frame.data_ref() {
                        let n = data.len() as u64;
                        b.len -= n;
                        b.held.give_back(n);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                match &mut b.rest {
                    Some(rest) => Pin::new(rest).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
            RequestBody::Streaming {
                inner,
                limit,
                seen,
                on_end,
                idle,
            } => match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(mut frame))) => {
                    idle.progress();
                    if let Some(trailers) = frame.trailers_mut() {
                        crate::codec::clean_trailers(trailers);
                    }
                    if let Some(data) = frame.data_ref() {
                        *seen += data.len() as u64;
                        if let Some(limit) = *limit
                            && *seen > limit
                        {
                            if let RequestBody::Streaming { inner, .. } = std::mem::replace(this, RequestBody::Empty) {
                                linger(Some(inner));
                            }
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                        }
                    }
                    // A sender that knows the length stops polling once this says so.
                    if inner.is_end_stream() {
                        body_ended(on_end);
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(None) => {
                    body_ended(on_end);
                    Poll::Ready(None)
                }
                Poll::Pending => match idle.poll_expired(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ClientBodyTimeout(idle.limit()))))),
                    Poll::Pending => Poll::Pending,
                },
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Buffered(b) => b.frames.is_empty() && b.rest.as_ref().is_none_or(|r| r.is_end_stream()),
            RequestBody::Streaming { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Buffered(b) => match &b.rest {
                None => SizeHint::with_exact(b.len),
                Some(rest) => {
                    let rest = rest.size_hint();
                    let mut hint = SizeHint::new();
                    hint.set_lower(rest.lower().saturating_add(b.len));
                    if let Some(upper) = rest.upper() {
                        hint.set_upper(upper.saturating_add(b.len));
                    }
                    hint
                }
            },
            RequestBody::Streaming { inner, .. } => inner.size_hint(),
        }
    }
}

/// Reads and discards the rest of a request body the proxy refused, for a while, so
/// the client can finish sending and read the refusal (413) instead of failing with a
/// broken pipe: nginx's lingering close. Bounded in time and in bytes.
pub fn linger(body: Option<Incoming>) {
    linger_then(body, None);
}

/// [`linger`], running `on_end` if the body is read to its end.
fn linger_then(body: Option<Incoming>, mut on_end: Option<BodyEndHook>) {
    const TOTAL: std::time::Duration = std::time::Duration::from_secs(10);
    const EACH: std::time::Duration = std::time::Duration::from_secs(2);
    const MAX_BYTES: u64 = 1 << 30;
    let Some(mut body) = body.filter(|b| !b.is_end_stream()) else {
        return body_ended(&mut on_end);
    };
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let deadline = tokio::time::Instant::now() + TOTAL;
        let mut read = 0u64;
        while read < MAX_BYTES {
            let next = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + EACH), body.frame()).await;
            match next {
                Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                Ok(None) => return body_ended(&mut on_end),
                _ => return,
            }
        }
    });
}
