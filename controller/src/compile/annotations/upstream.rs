//! How an Ingress's requests reach its endpoints: `backend-protocol`,
//! `proxy-next-upstream` (+ `-tries`, `-timeout`), `load-balance`, `upstream-hash-by`,
//! `affinity: cookie` with `session-cookie-*`.

use std::collections::BTreeMap;
use std::time::Duration;

use http::header::HeaderName;
use portico_dataplane::table::{
    AffinityCookie, Balance, HashOn, HashPart, LbPolicy, RetryPolicy, Timeouts, UpstreamProtocol,
};

use super::{get, get_flag, invalid, unsupported_value};
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
    /// TLS to the endpoints as `proxy-ssl-*` ask (see [`super::proxyssl`]), once
    /// their Secret is resolved; the server name is empty when each Service's own
    /// default is to be used.
    pub tls: Option<portico_dataplane::tls::UpstreamTlsSettings>,
}

impl Upstream {
    /// Nothing here differs from a plain route's behaviour.
    #[cfg(test)]
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
        tls: None,
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
        "GRPCS" => Some(UpstreamProtocol::H2Tls),
        "AUTO_HTTP" | "AJP" | "FCGI" => {
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
        backoff: None,
        reuse_endpoints: false,
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
                "names a variable Portico does not evaluate (it takes text and $request_uri, $uri, $args, $arg_<name>, $host, $scheme, $request_method, $remote_addr, $http_<name>, $cookie_<name>)",
            ),
        }
    }
    let mut affinity_cookie = None;
    if let Some(v) = get(all, "affinity") {
        if v.trim() == "cookie" {
            affinity_cookie = Some(session_cookie(all, problems));
        } else {
            invalid(problems, "affinity", v, "is not \"cookie\"");
        }
    }
    Balance {
        policy,
        affinity_cookie,
    }
}

/// The `session-cookie-*` annotations, with ingress-nginx's defaults (its
/// `annotations/sessionaffinity` parser and `balancer/sticky.lua`): `HttpOnly` always,
/// `Secure` when the request is HTTPS unless `session-cookie-secure` says, no `SameSite`
/// unless asked. `Path` is set per route ([`AffinityCookie::path`] defaults to the
/// Ingress path there).
fn session_cookie(all: &BTreeMap<String, String>, problems: &mut Problems) -> AffinityCookie {
    let mut c = AffinityCookie::named(DEFAULT_AFFINITY_COOKIE);
    if let Some(name) = get(all, "session-cookie-name").map(str::trim) {
        if is_cookie_name(name) {
            c.name = name.to_string();
        } else {
            invalid(problems, "session-cookie-name", name, "is not a cookie name");
        }
    }
    for (key, slot) in [
        ("session-cookie-expires", &mut c.expires),
        ("session-cookie-max-age", &mut c.max_age),
    ] {
        if let Some(v) = get(all, key) {
            match v.trim().parse::<i64>() {
                Ok(secs) if secs.unsigned_abs() <= MAX_COOKIE_SECONDS => *slot = Some(secs),
                _ => invalid(problems, key, v, "is not a whole number of seconds"),
            }
        }
    }
    for (key, slot) in [
        ("session-cookie-path", &mut c.path),
        ("session-cookie-domain", &mut c.domain),
    ] {
        if let Some(v) = get(all, key).map(str::trim) {
            if is_attribute_value(v) {
                *slot = Some(v.to_string());
            } else {
                invalid(problems, key, v, "is not a cookie attribute value");
            }
        }
    }
    if let Some(v) = get(all, "session-cookie-samesite").map(str::trim) {
        match ["None", "Lax", "Strict"]
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(v))
        {
            Some(same_site) => c.same_site = Some(same_site.to_string()),
            None => invalid(problems, "session-cookie-samesite", v, "is not None, Lax or Strict"),
        }
    }
    c.secure = get_flag(all, "session-cookie-secure", problems);
    c.conditional_same_site_none = get_flag(all, "session-cookie-conditional-samesite-none", problems).unwrap_or(false);
    get_flag(all, "session-cookie-change-on-failure", problems);
    c
}

/// Cookie lifetimes beyond this (about 300 years) are refused.
const MAX_COOKIE_SECONDS: u64 = 10_000_000_000;

/// A `Path` or `Domain` value: visible ASCII without `;` (RFC 6265's av-value).
pub(in crate::compile) fn is_attribute_value(v: &str) -> bool {
    !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}

/// `upstream-hash-by`: an nginx complex value, as ingress-nginx's `util.lua`
/// (`parse_complex_value`) reads it: text, `$name` and `${name}` (the same variable),
/// `\$` a literal dollar. One variable alone keeps the key it names (a header or cookie
/// the request lacks then balances round robin, as before); anything else is joined
/// per request. `None` when a variable is not one Portico evaluates.
fn hash_on(value: &str) -> Option<HashOn> {
    let parts = complex_value(value)?;
    Some(match parts.as_slice() {
        [HashPart::ClientIp] => HashOn::ClientIp,
        [HashPart::Header(h)] => HashOn::Header(h.clone()),
        [HashPart::Cookie(c)] => HashOn::Cookie(c.clone()),
        [] => return None,
        _ => HashOn::Joined(parts),
    })
}

/// The pieces of an nginx complex value; `None` for an unknown variable or a `${`
/// without its `}`.
fn complex_value(value: &str) -> Option<Vec<HashPart>> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = value;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("\\$") {
            text.push('$');
            rest = after;
            continue;
        }
        if c != '$' {
            text.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let after = &rest[1..];
        let (name, after) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}')?;
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        if name.is_empty() {
            // A `$` that starts no name is text, as in nginx.
            text.push('$');
            rest = after;
            continue;
        }
        if !text.is_empty() {
            parts.push(HashPart::Text(std::mem::take(&mut text)));
        }
        parts.push(variable(name)?);
        rest = after;
    }
    if !text.is_empty() {
        parts.push(HashPart::Text(text));
    }
    Some(parts)
}

/// The nginx variables a hash key may name.
fn variable(name: &str) -> Option<HashPart> {
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    Some(match name {
        "remote_addr" | "binary_remote_addr" => HashPart::ClientIp,
        "request_uri" => HashPart::RequestUri,
        "uri" | "document_uri" => HashPart::Uri,
        "args" | "query_string" => HashPart::Args,
        "host" => HashPart::Host,
        "scheme" => HashPart::Scheme,
        "request_method" => HashPart::Method,
        _ => {
            if let Some(h) = name.strip_prefix("http_") {
                let header = h.replace('_', "-").to_ascii_lowercase();
                return HeaderName::from_bytes(header.as_bytes()).ok().map(HashPart::Header);
            }
            if let Some(arg) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                return Some(HashPart::Arg(arg.to_string()));
            }
            return name
                .strip_prefix("cookie_")
                .filter(|c| !c.is_empty())
                .map(|c| HashPart::Cookie(c.to_string()));
        }
    })
}

/// RFC 6265's cookie-name: a token.
pub(super) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
