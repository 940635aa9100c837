//! A response on its way to the client: one the proxy made, or an endpoint's streamed
//! through (its connection goes back to the shared pool when the body ends) or read
//! ahead of the client ([`read_ahead`], `proxy-buffering: on`, bounded per body and per
//! process). Above the upstream client, whose body it wraps.

mod read_ahead;

pub use read_ahead::{Limits as ReadAheadLimits, read_ahead_bytes};

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::BoxError;
use crate::codec::RawHead;
use crate::idle::Idle;
use crate::upstream::UpstreamBody;

/// The endpoint sent no part of its response body for longer than the read timeout
/// (nginx's `proxy_read_timeout`, which also bounds an idle WebSocket).
#[derive(Debug, thiserror::Error)]
#[error("no response body bytes from the endpoint for {0:?}")]
pub struct UpstreamReadTimeout(pub Duration);

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

// Most responses are an endpoint's: boxing that variant would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Full(Option<Bytes>),
    /// An endpoint's body, and the longest wait allowed between two of its frames.
    Upstream(UpstreamBody, Idle),
    /// An endpoint's body read ahead of the client by a task of its own.
    ReadAhead(read_ahead::ReadAhead),
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

    /// Streams an endpoint's body, waiting up to `timeout` between two reads of it
    /// (nginx's `proxy_read_timeout`).
    pub fn upstream(inner: UpstreamBody, timeout: Duration) -> Self {
        ResponseBody {
            kind: Kind::Upstream(inner, Idle::new(timeout)),
            sent: 0,
            done: None,
        }
    }

    /// Reads an endpoint's body ahead of the client, within `limits`, so that the
    /// endpoint connection is free once the body is in (ingress-nginx's
    /// `proxy-buffering: on`); `timeout` as for [`ResponseBody::upstream`]. A body
    /// already at its end needs no reader.
    pub fn read_ahead(inner: UpstreamBody, timeout: Duration, limits: ReadAheadLimits) -> Self {
        if inner.is_end_stream() {
            return ResponseBody::upstream(inner, timeout);
        }
        ResponseBody {
            kind: Kind::ReadAhead(read_ahead::ReadAhead::spawn(inner, Idle::new(timeout), limits)),
            sent: 0,
            done: None,
        }
    }

    /// An endpoint's header lines as it sent them, when they pass through unchanged
    /// (see [`crate::proxy::Proxy::handle`]): the writer sends them after the
    /// response's own header map.
    pub fn raw_head(&self) -> Option<&RawHead> {
        match &self.kind {
            Kind::Upstream(inner, _) => inner.raw_head(),
            Kind::Full(_) | Kind::ReadAhead(_) => None,
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
            Kind::Upstream(inner, idle) => match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => match idle.poll_expired(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(UpstreamReadTimeout(idle.limit())) as BoxError))),
                    Poll::Pending => Poll::Pending,
                },
                polled => {
                    idle.progress();
                    polled
                }
            },
            Kind::ReadAhead(inner) => inner.poll_frame(cx),
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
            Kind::Upstream(inner, _) => inner.is_end_stream(),
            Kind::ReadAhead(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream(inner, _) => inner.size_hint(),
            Kind::ReadAhead(inner) => inner.size_hint(),
        }
    }
}
