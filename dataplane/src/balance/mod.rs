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

use http::header::{COOKIE, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Uri};

pub use crate::table::{AffinityCookie, Balance, HashOn, HashPart, LbPolicy};
use crate::table::{Backend, Endpoint, hash_bytes};
pub use state::{InFlight, Registry};

/// What the request contributes to the choice, read before its body is touched.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestKey {
    /// The consistent-hash key's hash; `None` when the policy is not ConsistentHash or
    /// the request lacks the header or cookie (it is then balanced round robin).
    pub hash: Option<u64>,
    /// The endpoint the affinity cookie names.
    pub affinity: Option<u64>,
    /// The request is HTTPS: a new affinity cookie is `Secure` unless configured.
    pub tls: bool,
    /// The client is known to reject `SameSite=None` cookies.
    pub rejects_same_site_none: bool,
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

/// What of a request the balancer may read.
pub struct RequestFacts<'a> {
    pub headers: &'a HeaderMap,
    /// The target as the client sent it (`$request_uri`, `$args`).
    pub target: &'a Uri,
    /// The path as it goes upstream, after a rewrite (`$uri`).
    pub path: &'a str,
    pub method: &'a Method,
    /// The `Host` (or `:authority`) as sent, port included.
    pub host: &'a [u8],
    pub client: IpAddr,
    /// The request came over TLS (or a trusted proxy says it did).
    pub tls: bool,
}

impl Balance {
    /// Round robin without affinity: what a route without a policy of its own gets
    /// ([`round_robin`]), needing nothing of the request.
    pub fn is_plain_round_robin(&self) -> bool {
        matches!(self.policy, LbPolicy::RoundRobin) && self.affinity_cookie.is_none()
    }

    pub fn request_key(&self, req: &RequestFacts<'_>) -> RequestKey {
        let (headers, client, tls) = (req.headers, req.client, req.tls);
        let hash = match &self.policy {
            LbPolicy::ConsistentHash(HashOn::Header(name)) => headers.get(name).map(|v| hash_bytes(v.as_bytes())),
            LbPolicy::ConsistentHash(HashOn::Cookie(name)) => cookie(headers, name).map(|v| hash_bytes(v.as_bytes())),
            LbPolicy::ConsistentHash(HashOn::ClientIp) => Some(hash_bytes(client.to_string().as_bytes())),
            LbPolicy::ConsistentHash(HashOn::Joined(parts)) => Some(hash_bytes(&joined_key(parts, req))),
            _ => None,
        };
        let Some(affinity) = &self.affinity_cookie else {
            return RequestKey {
                hash,
                ..RequestKey::default()
            };
        };
        RequestKey {
            hash,
            affinity: cookie(headers, &affinity.name).and_then(|v| u64::from_str_radix(v, 16).ok()),
            tls,
            rejects_same_site_none: affinity.conditional_same_site_none
                && headers
                    .get(USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(rejects_same_site_none),
        }
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
        let c = self.affinity_cookie.as_ref()?;
        let token = backend.hashes[backend.position(endpoint)?];
        if key.affinity == Some(token) {
            return None;
        }
        HeaderValue::from_str(&c.set_cookie(token, key, std::time::SystemTime::now())).ok()
    }
}

impl AffinityCookie {
    /// The `Set-Cookie` value naming endpoint `token`, with the attributes in the order
    /// ingress-nginx's cookie library writes them.
    fn set_cookie(&self, token: u64, key: RequestKey, now: std::time::SystemTime) -> String {
        use std::fmt::Write;
        let mut v = format!("{}={token:016x}", self.name);
        if let Some(secs) = self.expires {
            let at = if secs >= 0 {
                now.checked_add(std::time::Duration::from_secs(secs.unsigned_abs()))
            } else {
                now.checked_sub(std::time::Duration::from_secs(secs.unsigned_abs()))
            };
            if let Some(at) = at {
                let _ = write!(v, "; Expires={}", httpdate::fmt_http_date(at));
            }
        }
        if let Some(secs) = self.max_age {
            let _ = write!(v, "; Max-Age={secs}");
        }
        if let Some(domain) = &self.domain {
            let _ = write!(v, "; Domain={domain}");
        }
        if let Some(path) = &self.path {
            let _ = write!(v, "; Path={path}");
        }
        if self.secure.unwrap_or(key.tls) {
            v.push_str("; Secure");
        }
        v.push_str("; HttpOnly");
        if let Some(same_site) = &self.same_site
            && !(key.rejects_same_site_none && same_site.eq_ignore_ascii_case("none"))
        {
            let _ = write!(v, "; SameSite={same_site}");
        }
        v
    }
}

/// Clients that reject a cookie carrying `SameSite=None` (Chrome 51 to 66, iOS 12,
/// Safari on macOS 10.14): the list ingress-nginx's `util/same_site.lua` checks, from
/// Chromium's "SameSite=None: known incompatible clients".
fn rejects_same_site_none(user_agent: &str) -> bool {
    [
        "Chrome/4",
        "Chrome/5",
        "Chrome/6",
        "CPU iPhone OS 12",
        "iPad; CPU OS 12",
    ]
    .iter()
    .any(|p| user_agent.contains(p))
        || (user_agent.contains("Macintosh")
            && user_agent.contains("Intel Mac OS X 10_14")
            && user_agent.contains("Safari")
            && !user_agent.contains("Chrome"))
}

/// Round robin over `backend`'s endpoints, avoiding those in `tried`: what a route
/// without a balancing policy of its own gets.
pub fn round_robin<'a>(backend: &'a Backend, tried: &[SocketAddr]) -> Option<&'a Endpoint> {
    let eps = &backend.endpoints;
    let i = round_robin::RoundRobin.pick(backend, RequestKey::default(), &|i| !tried.contains(&eps[i].addr))?;
    Some(&eps[i])
}

/// The value of cookie `name` in the request's `Cookie` headers.
/// A [`HashOn::Joined`] key's bytes, as nginx would evaluate the complex value: the
/// text as written, each variable's value, nothing for a variable the request lacks.
fn joined_key(parts: &[HashPart], req: &RequestFacts<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(128);
    let query = req.target.query();
    for part in parts {
        match part {
            HashPart::Text(t) => key.extend_from_slice(t.as_bytes()),
            HashPart::RequestUri => {
                key.extend_from_slice(req.target.path_and_query().map_or("/", |p| p.as_str()).as_bytes())
            }
            HashPart::Uri => key.extend_from_slice(req.path.as_bytes()),
            HashPart::Args => key.extend_from_slice(query.unwrap_or("").as_bytes()),
            HashPart::Arg(name) => {
                let value = query
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .find_map(|pair| match pair.split_once('=') {
                        Some((k, v)) if k == name => Some(v),
                        None if pair == name => Some(""),
                        _ => None,
                    });
                key.extend_from_slice(value.unwrap_or("").as_bytes());
            }
            HashPart::Host => {
                let host = strip_port(req.host);
                key.extend(host.iter().map(u8::to_ascii_lowercase));
            }
            HashPart::Scheme => key.extend_from_slice(if req.tls { b"https" } else { b"http" }),
            HashPart::Method => key.extend_from_slice(req.method.as_str().as_bytes()),
            HashPart::ClientIp => key.extend_from_slice(req.client.to_string().as_bytes()),
            HashPart::Header(name) => {
                if let Some(v) = req.headers.get(name) {
                    key.extend_from_slice(v.as_bytes());
                }
            }
            HashPart::Cookie(name) => {
                if let Some(v) = cookie(req.headers, name) {
                    key.extend_from_slice(v.as_bytes());
                }
            }
        }
    }
    key
}

/// `host[:port]` without the port; a bracketed IPv6 literal keeps its brackets.
fn strip_port(host: &[u8]) -> &[u8] {
    let end = host.iter().rposition(|&b| b == b']').map_or(0, |i| i + 1);
    match host[end..].iter().position(|&b| b == b':') {
        Some(colon) => &host[..end + colon],
        None => host,
    }
}

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
