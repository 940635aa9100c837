//! Connections to endpoints: one pool shared by every thread, Pingora's lesson. A
//! connection opened on one serving thread is reused by a request on any other, so the
//! number of upstream connections tracks concurrency, not thread count. A thread takes
//! the connections it opened first: their readiness reaches it through its own event
//! loop.
//!
//! `h1`: Portico's own HTTP/1.1 client, which keeps each connection's buffers for its
//! whole life and reads responses in the task that serves the request.
//!
//! `balance`: which backend (by weight) and which endpoint (round robin, least request,
//! consistent hash, cookie affinity) a request goes to, without a lock.

mod balance;
mod h1;
mod pool;

pub use balance::{Balance, HashOn, InFlight, LbPolicy, RequestKey, WeightedBackends, hash_bytes, mix};
pub use h1::{Error as UpstreamError, Extra, Failure, RawHead};
pub(crate) use h1::{hex, itoa};
pub use pool::{Pool, PooledConn, SendError, UpstreamBody, UpstreamConn, set_worker};
