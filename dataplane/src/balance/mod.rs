//! Choosing the endpoint of a backend that gets a request.
//!
//! The policy is configuration the table carries ([`Balance`], [`LbPolicy`]); the
//! counters it reads are live state ([`crate::table::BackendState`]) that the
//! [`Registry`] carries from one table to the next. At request time there are only
//! atomic counters, no lock.
//!
//! ```text
//!  request ─▶ RequestKey (hash key, affinity cookie) ─▶ affinity cookie names a usable endpoint? ─▶ it
//!                                                        └─ else the rule's Policy: round_robin.rs,
//!                                                           least_request.rs, consistent_hash.rs
//! ```
//!
//! Adding a policy: a variant of [`LbPolicy`], a file here implementing [`Policy`], one
//! arm in [`LbPolicy::policy`].

mod consistent_hash;
mod least_request;
mod round_robin;
mod state;

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

use crate::table::{Backend, Endpoint, hash_bytes};
pub use crate::table::{Balance, HashOn, LbPolicy};
pub use state::{InFlight, Registry};

/// What the request contributes to the choice, read before its body is touched.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestKey {
    /// The consistent-hash key's hash; `None` when the policy is not ConsistentHash or
    /// the request lacks the header or cookie (it is then balanced round robin).
    pub hash: Option<u64>,
    /// The endpoint the affinity cookie names.
    pub affinity: Option<u64>,
}

/// One balancing policy.
pub trait Policy: Sync {
    /// The index of the endpoint of `backend` that gets this request, among those
    /// `usable` allows (a retry excludes the endpoints already tried); `None` when no
    /// endpoint is usable.
    fn pick(&self, backend: &Backend, key: RequestKey, usable: &dyn Fn(usize) -> bool) -> Option<usize>;
}

impl LbPolicy {
    /// The implementation of this policy.
    pub fn policy(&self) -> &'static dyn Policy {
        match self {
            LbPolicy::RoundRobin => &round_robin::RoundRobin,
            LbPolicy::LeastRequest => &least_request::LeastRequest,
            LbPolicy::ConsistentHash(_) => &consistent_hash::ConsistentHash,
        }
    }

    /// Whether requests must be counted in flight while they last.
    pub fn counts_in_flight(&self) -> bool {
        matches!(self, LbPolicy::LeastRequest)
    }
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

    /// Picks an endpoint of `backend` not in `tried`: the one the affinity cookie names
    /// while it is usable, else the policy's choice.
    pub fn pick<'a>(&self, backend: &'a Backend, key: RequestKey, tried: &[SocketAddr]) -> Option<&'a Endpoint> {
        let eps = &backend.endpoints;
        let usable = |i: usize| !tried.contains(&eps[i].addr);
        if let Some(token) = key.affinity
            && let Some(i) = (0..eps.len()).find(|i| usable(*i) && backend.hashes[*i] == token)
        {
            return Some(&eps[i]);
        }
        let i = self.policy.policy().pick(backend, key, &usable)?;
        Some(&eps[i])
    }

    /// The `Set-Cookie` that pins later requests to `endpoint`, when affinity is on and
    /// the request did not already name it.
    pub fn affinity_cookie(&self, backend: &Backend, endpoint: SocketAddr, key: RequestKey) -> Option<HeaderValue> {
        let name = self.affinity_cookie.as_deref()?;
        let token = backend.hashes[backend.position(endpoint)?];
        if key.affinity == Some(token) {
            return None;
        }
        HeaderValue::from_str(&format!("{name}={token:016x}; Path=/; HttpOnly; SameSite=Lax")).ok()
    }
}

/// Round robin over `backend`'s endpoints, avoiding those in `tried`: what a route
/// without a balancing policy of its own gets.
pub fn round_robin<'a>(backend: &'a Backend, tried: &[SocketAddr]) -> Option<&'a Endpoint> {
    let eps = &backend.endpoints;
    let i = round_robin::RoundRobin.pick(backend, RequestKey::default(), &|i| !tried.contains(&eps[i].addr))?;
    Some(&eps[i])
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

#[cfg(test)]
mod tests;
