//! How an Ingress's requests reach its endpoints: `backend-protocol`,
//! `proxy-next-upstream` (+ `-tries`, `-timeout`), `load-balance`, `upstream-hash-by`,
//! `affinity: cookie` with `session-cookie-name`.

use std::collections::BTreeMap;
use std::time::Duration;

use http::header::HeaderName;
use portico_dataplane::table::{Balance, HashOn, LbPolicy, RetryPolicy, Timeouts, UpstreamProtocol};

use super::{get, invalid, unsupported_value};
use crate::compile::diagnostics::Problems;

/// ingress-nginx's `session-cookie-name` default.
pub const DEFAULT_AFFINITY_COOKIE: &str = "INGRESSCOOKIE";

/// ingress-nginx's `proxy-next-upstream-tries` default (its ConfigMap's).
const DEFAULT_TRIES: u32 = 3;

/// Most tries taken from `proxy-next-upstream-tries`, where nginx's `0` means no limit.
const MAX_TRIES: u32 = 6;

/// What an Ingress's annotations ask of its upstream side.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    /// `backend-protocol`; `None` keeps the Service port's `appProtocol`.
    pub protocol: Option<UpstreamProtocol>,
    pub retry: Option<RetryPolicy>,
    pub timeouts: Timeouts,
    pub balance: Balance,
}

impl Upstream {
    /// Nothing here differs from a plain route's behaviour.
    pub fn is_default(&self) -> bool {
        self.retry.is_none() && self.timeouts == Timeouts::default() && self.balance == Balance::default()
    }
}

pub(super) fn parse(all: &BTreeMap<String, String>, problems: &mut Problems) -> Upstream {
    Upstream {
        protocol: protocol(all, problems),
        retry: retry(all, problems),
        timeouts: Timeouts {
            request: next_upstream_timeout(all, problems),
            backend_request: None,
        },
        balance: balance(all, problems),
    }
}

/// `backend-protocol`: upper-cased and trimmed as ingress-nginx does; `HTTP` is its
/// default.
fn protocol(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<UpstreamProtocol> {
    let value = get(all, "backend-protocol")?;
    match value.trim().to_ascii_uppercase().as_str() {
        "HTTP" => Some(UpstreamProtocol::Http1),
        "HTTPS" => Some(UpstreamProtocol::Https),
        "GRPC" | "H2C" => Some(UpstreamProtocol::H2c),
        "GRPCS" | "AUTO_HTTP" | "AJP" | "FCGI" => {
            unsupported_value(
                problems,
                "backend-protocol",
                value,
                "is not a protocol Portico speaks to endpoints",
            );
            None
        }
        _ => {
            invalid(
                problems,
                "backend-protocol",
                value,
                "is not HTTP, HTTPS, GRPC, GRPCS or H2C",
            );
            None
        }
    }
}

/// `proxy-next-upstream` (nginx's `proxy_next_upstream`, default `error timeout`) and
/// `proxy-next-upstream-tries` (default 3, all tries counted, `0` for no limit). Only
/// an Ingress that sets one of them gets a retry policy; others keep the proxy's own
/// (a failed connect is always tried on another endpoint).
fn retry(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<RetryPolicy> {
    let conditions = get(all, "proxy-next-upstream");
    let tries = get(all, "proxy-next-upstream-tries");
    if conditions.is_none() && tries.is_none() {
        return None;
    }
    let mut policy = RetryPolicy {
        attempts: DEFAULT_TRIES - 1,
        on_connect_failure: true,
        on_reset: true,
        on_timeout: true,
        codes: Vec::new(),
        per_try_timeout: None,
        non_idempotent: false,
    };
    if let Some(list) = conditions {
        let mut parsed = RetryPolicy {
            on_connect_failure: false,
            on_reset: false,
            on_timeout: false,
            ..policy.clone()
        };
        let mut ok = true;
        for word in list.split_whitespace() {
            match word {
                "error" | "invalid_header" => {
                    parsed.on_connect_failure = true;
                    parsed.on_reset = true;
                }
                "timeout" => parsed.on_timeout = true,
                "non_idempotent" => parsed.non_idempotent = true,
                "off" => parsed.attempts = 0,
                code => match code.strip_prefix("http_").and_then(|c| c.parse::<u16>().ok()) {
                    Some(c @ (500 | 502 | 503 | 504 | 403 | 404 | 429)) => parsed.codes.push(c),
                    _ => ok = false,
                },
            }
        }
        if ok {
            policy = parsed;
        } else {
            invalid(
                problems,
                "proxy-next-upstream",
                list,
                "is not a list of error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent or off",
            );
        }
    }
    if let Some(v) = tries {
        match v.trim().parse::<u32>() {
            Ok(0) => policy.attempts = policy.attempts.min(1) * (MAX_TRIES - 1),
            Ok(n) => policy.attempts = policy.attempts.min(1) * (n.min(MAX_TRIES) - 1),
            Err(_) => invalid(problems, "proxy-next-upstream-tries", v, "is not a whole number"),
        }
    }
    Some(policy)
}

/// `proxy-next-upstream-timeout`: seconds, `0` for none.
fn next_upstream_timeout(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<Duration> {
    let v = get(all, "proxy-next-upstream-timeout")?;
    match v.trim().parse::<u64>() {
        Ok(0) => None,
        Ok(n) if n <= 86_400 => Some(Duration::from_secs(n)),
        _ => {
            invalid(
                problems,
                "proxy-next-upstream-timeout",
                v,
                "is not a whole number of seconds up to 86400",
            );
            None
        }
    }
}

/// `upstream-hash-by` takes precedence over `load-balance` (ingress-nginx's docs);
/// `affinity: cookie` pins a client to an endpoint on top of either.
fn balance(all: &BTreeMap<String, String>, problems: &mut Problems) -> Balance {
    let mut policy = LbPolicy::RoundRobin;
    if let Some(v) = get(all, "load-balance") {
        match v.trim() {
            "round_robin" => {}
            "ewma" => policy = LbPolicy::LeastRequest,
            other => invalid(problems, "load-balance", other, "is not round_robin or ewma"),
        }
    }
    if let Some(v) = get(all, "upstream-hash-by") {
        match hash_on(v.trim()) {
            Some(on) => policy = LbPolicy::ConsistentHash(on),
            None => unsupported_value(
                problems,
                "upstream-hash-by",
                v,
                "is not one of $remote_addr, $binary_remote_addr, $http_<name> or $cookie_<name>",
            ),
        }
    }
    let mut affinity_cookie = None;
    if let Some(v) = get(all, "affinity") {
        if v.trim() == "cookie" {
            let name = get(all, "session-cookie-name")
                .map(str::trim)
                .unwrap_or(DEFAULT_AFFINITY_COOKIE);
            if is_cookie_name(name) {
                affinity_cookie = Some(name.to_string());
            } else {
                invalid(problems, "session-cookie-name", name, "is not a cookie name");
                affinity_cookie = Some(DEFAULT_AFFINITY_COOKIE.to_string());
            }
        } else {
            invalid(problems, "affinity", v, "is not \"cookie\"");
        }
    }
    Balance {
        policy,
        affinity_cookie,
    }
}

/// One nginx variable as a hash key; `${name}` is the same as `$name`.
fn hash_on(value: &str) -> Option<HashOn> {
    let var = value.strip_prefix('$')?;
    let var = var.strip_prefix('{').and_then(|v| v.strip_suffix('}')).unwrap_or(var);
    if !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    match var {
        "remote_addr" | "binary_remote_addr" => Some(HashOn::ClientIp),
        _ => {
            if let Some(h) = var.strip_prefix("http_") {
                let name = h.replace('_', "-").to_ascii_lowercase();
                return HeaderName::from_bytes(name.as_bytes()).ok().map(HashOn::Header);
            }
            var.strip_prefix("cookie_")
                .filter(|c| !c.is_empty())
                .map(|c| HashOn::Cookie(c.to_string()))
        }
    }
}

/// RFC 6265's cookie-name: a token.
pub(super) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
