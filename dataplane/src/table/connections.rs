//! Connection settings a table carries for the whole process: ingress-nginx's ConfigMap
//! keys for client keep-alive, request heads and endpoint keep-alive, which take the
//! place of the flags' values while the table is live.

use std::time::Duration;

/// What the table sets in place of the process's own settings; each `None` leaves the
/// flag's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// `keep-alive`: how long an idle client connection waits for its next request;
    /// zero turns keep-alive off.
    pub keepalive_timeout: Option<Duration>,
    /// `keep-alive-requests`: requests served on one client connection.
    pub keepalive_requests: Option<u32>,
    /// `large-client-header-buffers`: the largest request head (number × size).
    pub max_header_size: Option<usize>,
    /// `upstream-keepalive-connections`: idle connections kept per endpoint.
    pub upstream_idle: Option<usize>,
    /// `upstream-keepalive-timeout`: how long an idle endpoint connection is kept.
    pub upstream_idle_timeout: Option<Duration>,
    /// `upstream-keepalive-requests`: requests sent on one endpoint connection.
    pub upstream_requests: Option<u32>,
}
