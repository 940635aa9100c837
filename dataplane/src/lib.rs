//! Portico's dataplane: the routing table the controller compiles, and the proxy that
//! serves traffic by it.
//!
//! ```text
//!  controller ──Arc<RoutingTable>──▶ watch channel ──▶ server (listeners, HTTP/1.1, HTTP/2)
//!                                                          │
//!                                        proxy: route ─▶ upstream request ─▶ upstream response ─▶ log
//!                                                          │
//!                                                 upstream::Pool (shared by every thread)
//! ```

#![forbid(unsafe_code)]

pub mod access_log;
pub mod balance;
pub mod body;
pub mod codec;
pub mod config;
pub mod filter;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod idle;
pub mod metrics;
pub mod pattern;
pub mod proxy;
pub mod response_body;
pub mod server;
pub mod table;
pub mod tls;
pub mod upstream;
pub mod wire;

pub use config::ProxyConfig;
pub use proxy::Proxy;
pub use server::Server;
