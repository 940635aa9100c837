//! What a `Route` rule does besides choosing a backend: header changes, rewrites,
//! redirects, timeouts and retries. Ingress routes have none of it.
//!
//! Every value here was parsed and checked by the controller; the proxy applies it
//! without interpreting any user text.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};

use super::WeightedBackends;

/// The extras of one `Route` match, applied by the proxy's phases.
#[derive(Debug, Default)]
pub struct RouteAction {
    /// Applied in the upstream-request phase, after the forwarded headers.
    pub request_headers: HeaderModifier,
    /// Applied in the upstream-response phase.
    pub response_headers: HeaderModifier,
    pub rewrite: Option<UrlRewrite>,
    /// Answered in the route phase; nothing is sent to a backend.
    pub redirect: Option<Redirect>,
    /// Several backends with weights; `None` sends everything to [`super::Route::backend`].
    pub backends: Option<std::sync::Arc<WeightedBackends>>,
    pub balance: Balance,
    pub timeouts: Timeouts,
    pub retry: Option<RetryPolicy>,
}

/// How a rule spreads requests over the endpoints of a backend; the choosing is
/// [`crate::balance`]'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    /// Power of two choices on requests in flight.
    LeastRequest,
    /// Rendezvous hashing on a request key.
    ConsistentHash(HashOn),
}

/// What consistent hashing keys on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    Header(http::HeaderName),
    Cookie(String),
    ClientIp,
}

/// A rule's policy and its cookie affinity, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub policy: LbPolicy,
    /// Name of the affinity cookie: the first response sets it naming the endpoint (by
    /// its hash, never its address); later requests carrying it go back to that
    /// endpoint while it is ready.
    pub affinity_cookie: Option<String>,
}

/// `set` replaces, `add` appends, `remove` deletes; applied in that order: remove, set, add.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// How a path is replaced (Gateway API `HTTPPathModifier`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path becomes this.
    ReplaceFullPath(String),
    /// The matched `PathPrefix` (`prefix`, indexed form without a trailing slash) is
    /// replaced by `with`: `/old` → `/new` turns `/old/a` into `/new/a`; `with: /` turns
    /// `/old/a` into `/a`.
    ReplacePrefixMatch { prefix: String, with: String },
}

impl PathModifier {
    /// The new path for `path` (no query).
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathModifier::ReplaceFullPath(p) => p.clone(),
            PathModifier::ReplacePrefixMatch { prefix, with } => {
                let prefix = if prefix == "/" { "" } else { prefix.as_str() };
                let rest = path.strip_prefix(prefix).unwrap_or(path);
                let with = with.strip_suffix('/').unwrap_or(with);
                let joined = match (with, rest) {
                    ("", "") => "/".to_string(),
                    ("", r) if !r.starts_with('/') => format!("/{r}"),
                    (w, r) => format!("{w}{r}"),
                };
                if joined.is_empty() { "/".to_string() } else { joined }
            }
        }
    }

    /// `path_and_query` with the path replaced and the query kept.
    pub fn apply_to(&self, uri: &Uri) -> String {
        let path = self.apply(uri.path());
        match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        }
    }
}

/// Gateway API `URLRewrite`: what the backend sees instead of what the client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRewrite {
    /// Replaces `Host` (HTTP/1.1) or `:authority` (HTTP/2).
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathModifier>,
}

/// Gateway API `RequestRedirect`: answered by the proxy itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`; the request's own when unset.
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
}

impl Redirect {
    /// The `Location` for a request that came in on `tls` for `host` (as sent, maybe
    /// with a port) and `uri`.
    ///
    /// The port: the one set; else, when the scheme changes, none (the scheme's own);
    /// else the one the client used. Ports 80 for http and 443 for https are left out.
    pub fn location(&self, tls: bool, host: &str, uri: &Uri) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(if tls { "https" } else { "http" });
        let (request_name, request_port) = split_host_port(host);
        let name = self.hostname.as_deref().unwrap_or(request_name).to_ascii_lowercase();
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            (None, None) => request_port,
        };
        let port = match (scheme, port) {
            ("http", Some(80)) | ("https", Some(443)) | (_, None) => String::new(),
            (_, Some(p)) => format!(":{p}"),
        };
        let path = match &self.path {
            Some(m) => m.apply_to(uri),
            None => uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        };
        format!("{scheme}://{name}{port}{path}")
    }
}

fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        return match host.rsplit_once("]:") {
            Some((name, port)) => (&host[..name.len() + 1], port.parse().ok()),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, port.parse().ok()),
        _ => (host.strip_suffix('.').unwrap_or(host), None),
    }
}

/// Gateway API `timeouts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the request's arrival to the response headers, retries included; 504 beyond.
    pub request: Option<Duration>,
    /// One attempt, from sending to the response headers (instead of
    /// `--upstream-timeout`); 504 beyond.
    pub backend_request: Option<Duration>,
}

/// When a request is sent again to another endpoint.
///
/// A request is replayable only when it has no body (or an empty one): a streamed body
/// has gone to the first endpoint and is not kept. Methods that are not idempotent
/// (POST, PATCH) are never retried once sent unless `non_idempotent` says so. A failed
/// connect is always retried (nothing was sent), as for every route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    pub on_connect_failure: bool,
    /// The connection broke after the request was sent, before response headers.
    pub on_reset: bool,
    /// An attempt exceeded its timeout.
    pub on_timeout: bool,
    /// Response status codes that are retried.
    pub codes: Vec<u16>,
    /// Timeout of each attempt; overrides `timeouts.backendRequest`.
    pub per_try_timeout: Option<Duration>,
    pub non_idempotent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(prefix: &str, with: &str) -> PathModifier {
        PathModifier::ReplacePrefixMatch {
            prefix: prefix.into(),
            with: with.into(),
        }
    }

    /// ReplacePrefixMatch swaps the matched prefix and keeps the rest, as Gateway API says.
    #[test]
    fn replace_prefix_match() {
        for (p, with, path, want) in [
            ("/old", "/new", "/old/a", "/new/a"),
            ("/old", "/new", "/old", "/new"),
            ("/old", "/new/", "/old/a", "/new/a"),
            ("/old", "/", "/old/a", "/a"),
            ("/old", "/", "/old", "/"),
            ("/", "/v2", "/a/b", "/v2/a/b"),
            ("/", "/", "/a", "/a"),
        ] {
            assert_eq!(prefix(p, with).apply(path), want, "{p} -> {with} on {path}");
        }
    }

    /// A redirect keeps what it does not replace; a scheme change drops the client's port.
    #[test]
    fn redirect_location() {
        let r = |scheme: Option<&str>, host: Option<&str>, port| Redirect {
            scheme: scheme.map(Into::into),
            hostname: host.map(Into::into),
            port,
            path: None,
            status: StatusCode::FOUND,
        };
        let uri: Uri = "/a?b=1".parse().unwrap();
        assert_eq!(
            r(Some("https"), None, None).location(false, "x.com:8080", &uri),
            "https://x.com/a?b=1"
        );
        assert_eq!(
            r(None, None, None).location(false, "x.com:8080", &uri),
            "http://x.com:8080/a?b=1"
        );
        assert_eq!(
            r(None, Some("y.com"), Some(443)).location(true, "x.com", &uri),
            "https://y.com/a?b=1"
        );
        assert_eq!(
            r(Some("http"), None, Some(8081)).location(true, "x.com", &uri),
            "http://x.com:8081/a?b=1"
        );
    }
}
