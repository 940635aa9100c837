//! Balancing state that outlives the table: the registry that hands each backend of a
//! new table the counters its predecessor had, and the in-flight guard.
//!
//! The table is rebuilt on every change (an EndpointSlice update, a new Ingress). If
//! its backends carried their own counters, every change would reset the rotation and
//! make least request see every endpoint idle, and a request that started before the
//! swap would decrement a counter nobody reads any more. So counters are keyed by
//! backend name and endpoint address and shared: the registry holds weak references
//! only, so the state of a backend or endpoint that no table and no request holds any
//! more is freed, and its entry is dropped at the next swap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::table::{Backend, BackendState, EndpointState, RoutingTable};

/// Live balancing state by backend and endpoint. One per proxy; used only when a table
/// is swapped in, never on the request path.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    cursors: HashMap<Box<str>, Weak<AtomicUsize>>,
    endpoints: HashMap<(Box<str>, SocketAddr), Weak<EndpointState>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Gives every backend of `table` its live state: the counters of the same backend
    /// and endpoints in the tables before it, new ones for what is new. Then forgets
    /// what nothing holds any more.
    pub fn attach(&self, table: &RoutingTable) {
        let mut entries = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for backend in table.backends() {
            let state = entries.state_for(&backend);
            backend.attach(Arc::new(state));
        }
        entries.cursors.retain(|_, w| w.strong_count() > 0);
        entries.endpoints.retain(|_, w| w.strong_count() > 0);
    }

    /// Number of endpoints with live state (for tests: the registry does not grow).
    pub fn endpoint_count(&self) -> usize {
        let entries = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.endpoints.len()
    }
}

impl Entries {
    fn state_for(&mut self, backend: &Backend) -> BackendState {
        let name: &str = &backend.name;
        let cursor = match self.cursors.get(name).and_then(Weak::upgrade) {
            Some(c) => c,
            None => {
                let c = Arc::new(AtomicUsize::new(0));
                self.cursors.insert(name.into(), Arc::downgrade(&c));
                c
            }
        };
        let endpoints = backend
            .endpoints
            .iter()
            .map(|e| {
                let key = (Box::<str>::from(name), e.addr);
                match self.endpoints.get(&key).and_then(Weak::upgrade) {
                    Some(s) => s,
                    None => {
                        let s = Arc::new(EndpointState::default());
                        self.endpoints.insert(key, Arc::downgrade(&s));
                        s
                    }
                }
            })
            .collect();
        BackendState::new(cursor, endpoints)
    }
}

/// Counts a request in flight on one endpoint until dropped (for least request). It
/// holds the endpoint's counter itself, so a request that outlives a table swap still
/// counts against the same endpoint in the new table.
pub struct InFlight {
    endpoint: Arc<EndpointState>,
}

impl InFlight {
    pub fn start(backend: &Backend, endpoint: SocketAddr) -> Option<InFlight> {
        let endpoint = backend.state().endpoints.get(backend.position(endpoint)?)?.clone();
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight { endpoint })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InFlight({})", self.endpoint.in_flight.load(Ordering::Relaxed))
    }
}
