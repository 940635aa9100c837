//! ingress-nginx's `limit-connections`: nginx's `limit_conn` with a zone per Ingress
//! keyed by the client's address. A request counts from the moment its head is read
//! until its response is done (nginx counts a connection "only if it has a request
//! being processed"; an HTTP/2 stream counts on its own, as there); one beyond the
//! limit is refused with 503 (ingress-nginx's `limit-conn-status-code`). Clients in
//! `limit-whitelist` are never counted.
//!
//! The zone outlives table swaps (found by name in a registry that holds it while some
//! table uses it), so a request in flight across a swap still counts. Its memory is
//! bounded by the requests in flight: an address leaves the zone with its last one,
//! and a zone holding [`MAX_CLIENTS`] addresses refuses new ones, as nginx does when
//! its zone is full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use http::StatusCode;

use super::Cidr;

/// Addresses one zone counts at once.
pub const MAX_CLIENTS: usize = 65_536;

/// What an Ingress's `limit-connections` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLimitSpec {
    /// The zone's name: the Ingress's, so its paths share the count.
    pub zone: String,
    /// Requests in flight one address may have.
    pub max: u32,
    pub whitelist: Vec<Cidr>,
    pub status: StatusCode,
}

/// The limit of a route, on its zone.
#[derive(Debug)]
pub struct ConnLimit {
    zone: Arc<Zone>,
    max: u32,
    whitelist: Vec<Cidr>,
    status: StatusCode,
}

#[derive(Debug, Default)]
struct Zone {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

static ZONES: LazyLock<Mutex<HashMap<String, Weak<Zone>>>> = LazyLock::new(Default::default);

impl ConnLimit {
    pub fn new(spec: &ConnLimitSpec) -> ConnLimit {
        let mut zones = ZONES.lock().unwrap_or_else(|e| e.into_inner());
        let zone = match zones.get(&spec.zone).and_then(Weak::upgrade) {
            Some(z) => z,
            None => {
                zones.retain(|_, w| w.strong_count() > 0);
                let z = Arc::new(Zone::default());
                zones.insert(spec.zone.clone(), Arc::downgrade(&z));
                z
            }
        };
        ConnLimit {
            zone,
            max: spec.max,
            whitelist: spec.whitelist.clone(),
            status: spec.status,
        }
    }

    /// Counts a request from `client` until the slot returned is dropped; `Ok(None)`
    /// for a client never counted; the refusal's status when the client has `max`
    /// requests in flight already (or the zone is full).
    pub fn acquire(&self, client: IpAddr) -> Result<Option<ConnSlot>, StatusCode> {
        if self.whitelist.iter().any(|c| c.contains(client)) {
            return Ok(None);
        }
        let client = client.to_canonical();
        let mut counts = self.zone.counts.lock().unwrap_or_else(|e| e.into_inner());
        let full = counts.len() >= MAX_CLIENTS;
        match counts.get_mut(&client) {
            Some(n) if *n >= self.max => return Err(self.status),
            Some(n) => *n += 1,
            None if full => return Err(self.status),
            None => {
                counts.insert(client, 1);
            }
        }
        Ok(Some(ConnSlot {
            zone: self.zone.clone(),
            client,
        }))
    }

    /// Requests in flight from `client` (for tests and `explain`).
    pub fn in_flight(&self, client: IpAddr) -> u32 {
        let counts = self.zone.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&client.to_canonical()).copied().unwrap_or(0)
    }
}

/// One counted request; the count goes down when it is dropped.
#[derive(Debug)]
pub struct ConnSlot {
    zone: Arc<Zone>,
    client: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut counts = self.zone.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(zone: &str, max: u32) -> ConnLimitSpec {
        ConnLimitSpec {
            zone: zone.into(),
            max,
            whitelist: vec!["198.18.0.0/24".parse().unwrap()],
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    #[test]
    fn a_client_gets_max_requests_in_flight() {
        let limit = ConnLimit::new(&spec("default/a conn", 2));
        let client = IpAddr::from([198, 18, 1, 1]);
        let first = limit.acquire(client).unwrap();
        let second = limit.acquire(client).unwrap();
        assert_eq!(limit.acquire(client).unwrap_err(), StatusCode::SERVICE_UNAVAILABLE);
        // Another client has its own count.
        assert!(limit.acquire(IpAddr::from([198, 18, 1, 2])).unwrap().is_some());
        drop(first);
        let third = limit.acquire(client).unwrap();
        assert_eq!(limit.in_flight(client), 2);
        drop((second, third));
        assert_eq!(limit.in_flight(client), 0);
        assert!(
            limit.zone.counts.lock().unwrap().is_empty(),
            "an idle address is forgotten"
        );
        // The whitelist is never counted.
        let listed = IpAddr::from([198, 18, 0, 9]);
        for _ in 0..5 {
            assert!(limit.acquire(listed).unwrap().is_none());
        }
    }

    #[test]
    fn the_zone_outlives_a_table_swap() {
        let old = ConnLimit::new(&spec("default/b conn", 1));
        let client = IpAddr::from([198, 18, 1, 1]);
        let slot = old.acquire(client).unwrap();
        // The next table's filter for the same Ingress finds the same zone.
        let new = ConnLimit::new(&spec("default/b conn", 1));
        drop(old);
        assert!(new.acquire(client).is_err());
        drop(slot);
        assert!(new.acquire(client).is_ok());
    }
}
