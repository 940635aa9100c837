//! Body types: requests stream to the endpoint, responses stream to the client, and
//! nothing buffers a whole body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::upstream::{RawHead, UpstreamBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body was larger than the route allows.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

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
    },
}

impl RequestBody {
    /// `None`: a request that has no body (Portico's own HTTP/1.1 server reads only
    /// those; hyper reads the rest).
    pub fn new(inner: Option<Incoming>, limit: Option<u64>, on_end: Option<BodyEndHook>) -> Self {
        match inner {
            Some(inner) if !inner.is_end_stream() => RequestBody::Streaming {
                inner,
                limit,
                seen: 0,
                on_end,
            },
            _ => RequestBody::Empty,
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
            RequestBody::Streaming {
                inner,
                limit,
                seen,
                on_end,
            } => match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
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
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Streaming { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Streaming { inner, .. } => inner.size_hint(),
        }
    }
}

/// Reads and discards the rest of a request body the proxy refused, for a while, so
/// the client can finish sending and read the refusal (413) instead of failing with a
/// broken pipe: nginx's lingering close. Bounded in time and in bytes.
pub fn linger(body: Option<Incoming>) {
    const TOTAL: std::time::Duration = std::time::Duration::from_secs(10);
    const EACH: std::time::Duration = std::time::Duration::from_secs(2);
    const MAX_BYTES: u64 = 1 << 30;
    let Some(mut body) = body.filter(|b| !b.is_end_stream()) else {
        return;
    };
    tokio::spawn(async move {
        use http_body_util::BodyExt;
        let deadline = tokio::time::Instant::now() + TOTAL;
        let mut read = 0u64;
        while read < MAX_BYTES {
            let next = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + EACH), body.frame()).await;
            match next {
                Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                _ => return,
            }
        }
    });
}

/// Runs when a response is done: fully sent, or abandoned by the client.
pub trait OnComplete: Send + Sync {
    /// `bytes` is how much of the body reached hyper's write side.
    fn complete(&mut self, bytes: u64);
}

/// A response on its way to the client: either one the proxy made, or an endpoint's
/// streamed through (whose connection goes back to the shared pool when its body
/// ends). The completion hook (metrics, access log) runs exactly once.
pub struct ResponseBody {
    kind: Kind,
    sent: u64,
    done: Option<Box<dyn OnComplete>>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(UpstreamBody),
}

impl ResponseBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        ResponseBody {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
            sent: 0,
            done: None,
        }
    }

    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Full(None),
            sent: 0,
            done: None,
        }
    }

    /// Streams an endpoint's body.
    pub fn upstream(inner: UpstreamBody) -> Self {
        ResponseBody {
            kind: Kind::Upstream(inner),
            sent: 0,
            done: None,
        }
    }

    /// An endpoint's header lines as it sent them, when they pass through unchanged
    /// (see [`crate::proxy::Proxy::handle`]): the writer sends them after the
    /// response's own header map.
    pub fn raw_head(&self) -> Option<&RawHead> {
        match &self.kind {
            Kind::Upstream(inner) => inner.raw_head(),
            Kind::Full(_) => None,
        }
    }

    pub fn on_complete(mut self, hook: Box<dyn OnComplete>) -> Self {
        self.done = Some(hook);
        self
    }

    fn finish(&mut self) {
        if let Some(mut hook) = self.done.take() {
            hook.complete(self.sent);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Upstream(inner) => Pin::new(inner).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream(inner) => inner.size_hint(),
        }
    }
}
