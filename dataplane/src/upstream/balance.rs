//! Choosing where a request goes: a backend by weight, then an endpoint by the rule's
//! load-balancing policy.
//!
//! All state is built with the table, off the hot path: the weighted schedule, each
//! endpoint's stable hash. At request time there are only atomic counters, no lock.
//!
//! - **Weights**: a smooth weighted round-robin schedule (nginx's), so a 90/10 split is
//!   exactly 90/10 over every 100 consecutive requests.
//! - **RoundRobin**: the backend's shared rotation.
//! - **LeastRequest**: power of two choices: two endpoints at random, the one with
//!   fewer requests in flight.
//! - **ConsistentHash**: rendezvous (highest random weight) hashing on a header, a
//!   cookie or the client address: a key stays on its endpoint while endpoints come
//!   and go elsewhere; only the keys of a removed endpoint move. It costs one hash per
//!   endpoint per request, fine for the hundreds of endpoints a Service has.
//! - **Cookie affinity**: the first response sets a cookie naming the endpoint (by its
//!   hash, never its address); later requests carrying it go back to that endpoint
//!   while it is ready.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderMap;
use http::header::{COOKIE, HeaderName, HeaderValue};

use crate::table::{Backend, Endpoint};

/// How a rule spreads requests over the endpoints of a backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    LeastRequest,
    ConsistentHash(HashOn),
}

/// What consistent hashing keys on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
}

/// A rule's policy and its cookie affinity, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub policy: LbPolicy,
    /// Name of the affinity cookie.
    pub affinity_cookie: Option<String>,
}

/// What the request contributes to the choice, read before its body is touched.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestKey {
    /// The consistent-hash key's hash; `None` when the policy is not ConsistentHash or
    /// the request lacks the header or cookie (it is then balanced round robin).
    pub hash: Option<u64>,
    /// The endpoint the affinity cookie names.
    pub affinity: Option<u64>,
}

impl Balance {
    pub fn request_key(&self, headers: &HeaderMap, client: IpAddr) -> RequestKey {
        let hash = match &self.policy {
            LbPolicy::ConsistentHash(HashOn::Header(name)) => headers.get(name).map(|v| hash_bytes(v.as_bytes())),
            LbPolicy::ConsistentHash(HashOn::Cookie(name)) => cookie(headers, name).map(|v| hash_bytes(v.as_bytes())),
            LbPolicy::ConsistentHash(HashOn::ClientIp) => Some(hash_bytes(client.to_string().as_bytes())),
            _ => None,
        };
        let affinity = self
            .affinity_cookie
            .as_deref()
            .and_then(|name| cookie(headers, name))
            .and_then(|v| u64::from_str_radix(v, 16).ok());
        RequestKey { hash, affinity }
    }

    /// Picks an endpoint of `backend` not in `tried`.
    pub fn pick<'a>(&self, backend: &'a Backend, key: RequestKey, tried: &[SocketAddr]) -> Option<&'a Endpoint> {
        let eps = &backend.endpoints;
        let usable = |i: &usize| !tried.contains(&eps[*i].addr);
        if let Some(token) = key.affinity
            && let Some(i) = (0..eps.len()).filter(usable).find(|i| backend.hashes[*i] == token)
        {
            return Some(&eps[i]);
        }
        match (&self.policy, key.hash) {
            (LbPolicy::ConsistentHash(_), Some(h)) => (0..eps.len())
                .filter(usable)
                .max_by_key(|i| mix(h ^ backend.hashes[*i]))
                .map(|i| &eps[i]),
            (LbPolicy::LeastRequest, _) => least_request(backend, tried),
            _ => backend.pick_avoiding(tried),
        }
    }

    /// The `Set-Cookie` that pins later requests to `endpoint`, when affinity is on and
    /// the request did not already name it.
    pub fn affinity_cookie(&self, backend: &Backend, endpoint: SocketAddr, key: RequestKey) -> Option<HeaderValue> {
        let name = self.affinity_cookie.as_deref()?;
        let i = backend.endpoints.iter().position(|e| e.addr == endpoint)?;
        let token = backend.hashes[i];
        if key.affinity == Some(token) {
            return None;
        }
        HeaderValue::from_str(&format!("{name}={token:016x}; Path=/; HttpOnly; SameSite=Lax")).ok()
    }
}

fn least_request<'a>(backend: &'a Backend, tried: &[SocketAddr]) -> Option<&'a Endpoint> {
    let candidates: Vec<usize> = (0..backend.endpoints.len())
        .filter(|i| !tried.contains(&backend.endpoints[*i].addr))
        .collect();
    match candidates.len() {
        0 => None,
        1 => Some(&backend.endpoints[candidates[0]]),
        n => {
            let r = mix(backend.next_random());
            let a = candidates[(r % n as u64) as usize];
            let b = candidates[((r >> 32) % (n as u64 - 1)) as usize];
            // Two distinct endpoints: b is drawn from the others.
            let b = if b == a { candidates[n - 1] } else { b };
            let load = |i: usize| backend.in_flight[i].load(Ordering::Relaxed);
            Some(&backend.endpoints[if load(b) < load(a) { b } else { a }])
        }
    }
}

/// Counts a request in flight on one endpoint until dropped (for LeastRequest).
pub struct InFlight {
    backend: Arc<Backend>,
    index: usize,
}

impl InFlight {
    pub fn start(backend: &Arc<Backend>, endpoint: SocketAddr) -> Option<InFlight> {
        let index = backend.endpoints.iter().position(|e| e.addr == endpoint)?;
        backend.in_flight[index].fetch_add(1, Ordering::Relaxed);
        Some(InFlight {
            backend: backend.clone(),
            index,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight[self.index].fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InFlight({}#{})", self.backend.name, self.index)
    }
}

/// Several backends sharing a rule's traffic by weight.
#[derive(Debug)]
pub struct WeightedBackends {
    backends: Vec<(Arc<Backend>, u32)>,
    /// Indexes into `backends`, in smooth weighted round-robin order over one cycle.
    schedule: Vec<u16>,
    total: u64,
    next: AtomicUsize,
}

/// Longest schedule kept; larger weight sums (after dividing by their common divisor)
/// choose by a hashed counter instead, exact on average.
const MAX_SCHEDULE: u64 = 10_000;

impl WeightedBackends {
    /// `backends` with their weights; zero weights get no traffic. `None` when no
    /// weight is above zero.
    pub fn new(backends: Vec<(Arc<Backend>, u32)>) -> Option<WeightedBackends> {
        let divisor = backends.iter().map(|(_, w)| u64::from(*w)).fold(0, gcd);
        if divisor == 0 || backends.len() > usize::from(u16::MAX) {
            return None;
        }
        let total: u64 = backends.iter().map(|(_, w)| u64::from(*w) / divisor).sum();
        let mut schedule = Vec::new();
        if total <= MAX_SCHEDULE {
            let weights: Vec<i64> = backends.iter().map(|(_, w)| (u64::from(*w) / divisor) as i64).collect();
            let mut current = vec![0i64; weights.len()];
            for _ in 0..total {
                for (c, w) in current.iter_mut().zip(&weights) {
                    *c += w;
                }
                let best = (0..current.len())
                    .max_by_key(|i| (current[*i], std::cmp::Reverse(*i)))
                    .unwrap_or(0);
                current[best] -= total as i64;
                schedule.push(best as u16);
            }
        }
        Some(WeightedBackends {
            backends,
            schedule,
            total: total * divisor,
            next: AtomicUsize::new(0),
        })
    }

    /// The backend for one request. With a consistent-hash key the same key always gets
    /// the same backend; otherwise the schedule turns.
    pub fn choose(&self, key: Option<u64>) -> &Arc<Backend> {
        let index = match key {
            None if !self.schedule.is_empty() => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                usize::from(self.schedule[n % self.schedule.len()])
            }
            _ => {
                let r = key.unwrap_or_else(|| mix(self.next.fetch_add(1, Ordering::Relaxed) as u64)) % self.total;
                let mut acc = 0u64;
                self.backends
                    .iter()
                    .position(|(_, w)| {
                        acc += u64::from(*w);
                        r < acc
                    })
                    .unwrap_or(0)
            }
        };
        &self.backends[index].0
    }

    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.backends.iter().map(|(b, _)| b)
    }

    /// The backend holding the endpoint an affinity cookie names, if any still does.
    pub fn holding(&self, token: u64) -> Option<&Arc<Backend>> {
        self.backends().find(|b| b.hashes.contains(&token))
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::UpstreamProtocol;

    fn backend(name: &str, addrs: &[&str]) -> Arc<Backend> {
        let eps = addrs
            .iter()
            .map(|a| Endpoint {
                addr: a.parse().unwrap(),
            })
            .collect();
        Arc::new(Backend::new(name, UpstreamProtocol::Http1, eps))
    }

    /// A 90/10 split is exactly 90/10 over every 100 consecutive requests.
    #[test]
    fn weighted_split_is_exact_per_cycle() {
        let w = WeightedBackends::new(vec![(backend("a", &[]), 90), (backend("b", &[]), 10)]).unwrap();
        for _ in 0..3 {
            let a = (0..100).filter(|_| w.choose(None).name == "a").count();
            assert_eq!(a, 90);
        }
    }

    /// Zero weights get nothing; all zero is no split at all.
    #[test]
    fn zero_weight_gets_nothing() {
        let w = WeightedBackends::new(vec![(backend("a", &[]), 0), (backend("b", &[]), 3)]).unwrap();
        assert!((0..50).all(|_| w.choose(None).name == "b"));
        assert!((0..50).all(|i| w.choose(Some(mix(i))).name == "b"));
        assert!(WeightedBackends::new(vec![(backend("a", &[]), 0)]).is_none());
    }

    /// Consistent hashing keeps every key whose endpoint stays where it was when
    /// another endpoint is removed.
    #[test]
    fn consistent_hash_moves_only_keys_of_the_removed_endpoint() {
        let all = backend("b", &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]);
        let fewer = backend("b", &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.4:80"]);
        let balance = Balance {
            policy: LbPolicy::ConsistentHash(HashOn::ClientIp),
            affinity_cookie: None,
        };
        let mut used = std::collections::HashSet::new();
        for i in 0..1000u64 {
            let key = RequestKey {
                hash: Some(hash_bytes(&i.to_le_bytes())),
                affinity: None,
            };
            let before = balance.pick(&all, key, &[]).unwrap().addr;
            let after = balance.pick(&fewer, key, &[]).unwrap().addr;
            used.insert(before);
            if before.to_string() != "10.0.0.3:80" {
                assert_eq!(before, after, "key {i} moved");
            }
        }
        assert_eq!(used.len(), 4, "every endpoint gets keys");
    }

    /// Least request prefers the endpoint with fewer requests in flight.
    #[test]
    fn least_request_prefers_idle_endpoint() {
        let b = backend("b", &["10.0.0.1:80", "10.0.0.2:80"]);
        let busy: Vec<_> = (0..5)
            .filter_map(|_| InFlight::start(&b, "10.0.0.1:80".parse().unwrap()))
            .collect();
        let balance = Balance {
            policy: LbPolicy::LeastRequest,
            affinity_cookie: None,
        };
        for _ in 0..20 {
            let e = balance.pick(&b, RequestKey::default(), &[]).unwrap();
            assert_eq!(e.addr.to_string(), "10.0.0.2:80");
        }
        drop(busy);
        assert_eq!(b.in_flight[0].load(Ordering::Relaxed), 0);
    }

    /// The affinity cookie brings a client back to its endpoint, and is set only when
    /// the request did not already carry it.
    #[test]
    fn affinity_cookie_round_trip() {
        let b = backend("b", &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        let balance = Balance {
            policy: LbPolicy::RoundRobin,
            affinity_cookie: Some("route".into()),
        };
        let first = balance.pick(&b, RequestKey::default(), &[]).unwrap().addr;
        let set = balance.affinity_cookie(&b, first, RequestKey::default()).unwrap();
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&format!("a=b; {pair}")).unwrap());
        let key = balance.request_key(&headers, "127.0.0.1".parse().unwrap());
        for _ in 0..10 {
            assert_eq!(balance.pick(&b, key, &[]).unwrap().addr, first);
        }
        assert!(balance.affinity_cookie(&b, first, key).is_none());
    }
}
