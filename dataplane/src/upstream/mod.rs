//! Connections to endpoints: one pool shared by every thread, Pingora's lesson. A
//! connection opened on one serving thread is reused by a request on any other, so the
//! number of upstream connections tracks concurrency, not thread count. A thread takes
//! the connections it opened first: their readiness reaches it through its own event
//! loop.
//!
//! `h1`: Portico's own HTTP/1.1 client, which keeps each connection's buffers for its
//! whole life and reads responses in the task that serves the request.
//! Which endpoint a request goes to is [`crate::balance`]'s choice, made before a
//! connection is asked for.

mod h1;
mod pool;

pub use h1::{Error as UpstreamError, Failure};
pub use pool::{Pool, PooledConn, SendError, UpstreamBody, UpstreamConn};

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// Marks the calling thread as serving thread `i`, so that it prefers the pooled
/// connections it opened: their readiness arrives through its own event loop, not
/// through another thread's and a cross-thread wake-up.
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// The serving thread the caller runs on (`usize::MAX` off the serving threads).
fn worker() -> usize {
    WORKER.with(|w| w.get())
}
