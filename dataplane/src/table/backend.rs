//! Backends as the table holds them: a Service port, how to speak to it, its ready
//! endpoints, and (apart from the table's immutable data) the live counters the
//! balancing policies read.
//!
//! A backend's [`Backend::name`] (`namespace/service:port`) is its identity: it stays
//! the same across table swaps, and [`crate::balance::Registry`] uses it to give the
//! backend of a new table the same [`BackendState`] (rotation cursor, requests in
//! flight per endpoint) the previous table's copy had. An EndpointSlice change thus
//! keeps every surviving endpoint's counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// How the proxy speaks to a backend's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 with prior knowledge, cleartext (gRPC, `appProtocol: kubernetes.io/h2c`).
    H2c,
    /// HTTP/1.1 over TLS (`appProtocol: https`); see [`Backend::tls`].
    Https,
    /// HTTP/2 over TLS, ALPN `h2` (gRPC over TLS: ingress-nginx's `backend-protocol:
    /// GRPCS`); see [`Backend::tls`].
    H2Tls,
}

impl UpstreamProtocol {
    /// Whether the endpoints speak TLS, with [`Backend::tls`]'s settings.
    pub fn is_tls(self) -> bool {
        matches!(self, UpstreamProtocol::Https | UpstreamProtocol::H2Tls)
    }

    /// Whether the endpoints speak HTTP/2, one shared connection each.
    pub fn is_h2(self) -> bool {
        matches!(self, UpstreamProtocol::H2c | UpstreamProtocol::H2Tls)
    }
}

/// One ready endpoint of a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
}

/// A Service port resolved to its ready endpoints.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`: for logs and errors, and the identity that outlives
    /// table swaps.
    pub name: String,
    pub protocol: UpstreamProtocol,
    pub endpoints: Vec<Endpoint>,
    /// How to speak TLS to the endpoints, for [`UpstreamProtocol::Https`].
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
    /// Each endpoint's stable hash (consistent hashing, affinity cookies).
    pub(crate) hashes: Box<[u64]>,
    /// A reference that does not resolve (Gateway API: a backendRef to a kind that is
    /// not a Service, a Service that does not exist, or one in another namespace
    /// without a ReferenceGrant): requests for it get 500, not 503.
    invalid: bool,
    /// Live counters, shared with the same backend in earlier and later tables once the
    /// proxy has attached them; a backend never attached (a table used on its own, in
    /// tests or by `explain`) gets counters of its own on first use.
    state: OnceLock<Arc<BackendState>>,
}

impl Backend {
    pub fn new(name: impl Into<String>, protocol: UpstreamProtocol, endpoints: Vec<Endpoint>) -> Self {
        let hashes = endpoints
            .iter()
            .map(|e| hash_bytes(e.addr.to_string().as_bytes()))
            .collect();
        Backend {
            name: name.into(),
            protocol,
            endpoints,
            tls: None,
            hashes,
            invalid: false,
            state: OnceLock::new(),
        }
    }

    /// A backend that stands for a reference that does not resolve: no endpoints, and
    /// requests routed to it are answered 500 Internal Server Error (Gateway API
    /// `HTTPBackendRef`: "requests that would have been sent to that backend MUST
    /// receive a 500 status code").
    pub fn invalid(name: impl Into<String>) -> Self {
        Backend {
            invalid: true,
            ..Backend::new(name, UpstreamProtocol::Http1, Vec::new())
        }
    }

    /// Whether this stands for a reference that does not resolve.
    pub fn is_invalid(&self) -> bool {
        self.invalid
    }

    /// Speaks TLS to the endpoints with `tls`.
    pub fn with_tls(mut self, tls: Arc<crate::tls::UpstreamTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The live counters: one atomic load once attached.
    pub fn state(&self) -> &BackendState {
        self.state
            .get_or_init(|| Arc::new(BackendState::detached(self.endpoints.len())))
    }

    /// Gives the backend counters that outlive this table; the first attach wins.
    pub(crate) fn attach(&self, state: Arc<BackendState>) {
        debug_assert_eq!(state.endpoints.len(), self.endpoints.len());
        let _ = self.state.set(state);
    }

    /// Index of the endpoint at `addr`.
    pub fn position(&self, addr: SocketAddr) -> Option<usize> {
        self.endpoints.iter().position(|e| e.addr == addr)
    }
}

/// What the balancing policies count for one backend, kept across table swaps.
#[derive(Debug)]
pub struct BackendState {
    /// Round-robin rotation; also the source of cheap per-request randomness.
    pub(crate) cursor: Arc<AtomicUsize>,
    /// One per endpoint, in the order of [`Backend::endpoints`].
    pub(crate) endpoints: Box<[Arc<EndpointState>]>,
}

impl BackendState {
    pub(crate) fn new(cursor: Arc<AtomicUsize>, endpoints: Box<[Arc<EndpointState>]>) -> Self {
        BackendState { cursor, endpoints }
    }

    fn detached(n: usize) -> Self {
        BackendState {
            cursor: Arc::new(AtomicUsize::new(0)),
            endpoints: (0..n).map(|_| Arc::new(EndpointState::default())).collect(),
        }
    }

    /// The next turn of the rotation.
    pub(crate) fn turn(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// Requests in flight on endpoint `i`.
    pub fn in_flight(&self, i: usize) -> usize {
        self.endpoints[i].in_flight.load(Ordering::Relaxed)
    }
}

/// One endpoint's live counters.
#[derive(Debug, Default)]
pub struct EndpointState {
    pub(crate) in_flight: AtomicUsize,
}

/// FNV-1a then a finalizer: stable across processes and versions, so every replica
/// agrees on where a key and an affinity cookie go.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    mix(h)
}

/// SplitMix64's finalizer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}
