//! `enable-cors` and its `cors-*` annotations (ingress-nginx's `cors` parser), with its
//! defaults and its checks: every value is matched against the same patterns
//! ingress-nginx uses, so nothing but origins, method names and header names reaches a
//! response header.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use http::header::HeaderValue;
use portico_dataplane::table::{Cors, CorsMode, CorsOrigins};
use regex::Regex;

use super::{NGINX_PREFIX, get, get_flag, invalid};
use crate::compile::diagnostics::{Problem, Problems, reason};

/// ingress-nginx's defaults.
pub const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
pub const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
pub const DEFAULT_MAX_AGE: u32 = 1_728_000;

/// The patterns of ingress-nginx's parser (`corsOriginRegex` and the others).
static ORIGIN: LazyLock<Regex> = LazyLock::new(|| pattern(r"^(https?://(\*\.)?[A-Za-z0-9\-\.]*(:[0-9]+)?|\*)$"));
static METHODS: LazyLock<Regex> = LazyLock::new(|| pattern(r"^([A-Za-z]+,?\s?)+$"));
static HEADERS: LazyLock<Regex> = LazyLock::new(|| pattern(r"^([A-Za-z0-9\-_]+,?\s?)+$"));
static EXPOSE: LazyLock<Regex> = LazyLock::new(|| pattern(r"^(([A-Za-z0-9\-_]+|\*),?\s?)+$"));

fn pattern(p: &str) -> Regex {
    // Constant patterns, checked by the tests.
    Regex::new(p).unwrap_or_else(|_| Regex::new("^$").expect("the empty pattern compiles"))
}

/// Longest list value taken (header values this long are already unusual).
const MAX_LEN: usize = 4096;

pub(super) fn parse(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<Cors> {
    if !get_flag(all, "enable-cors", problems)? {
        return None;
    }
    let origins = match get(all, "cors-allow-origin") {
        None => vec!["*".to_string()],
        Some(v) => {
            let mut kept = Vec::new();
            for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if entry.len() <= 253 && ORIGIN.is_match(entry) {
                    kept.push(entry.to_string());
                } else {
                    problems.push(
Problem::warning(
                        reason::INVALID_ANNOTATION,
                        format!(
                            "{NGINX_PREFIX}cors-allow-origin: {entry:?} is not an origin like https://app.example.com:8443, https://*.example.com or *; it is skipped"
                        ),
                    )
.about(format!("{NGINX_PREFIX}cors-allow-origin")),
);
                }
            }
            kept
        }
    };
    if origins.is_empty() {
        return None;
    }
    let origins = CorsOrigins::new(&origins).ok()?;
    let mut text = |name: &str, re: &Regex, default: &str| -> Option<HeaderValue> {
        let checked = get(all, name).and_then(|v| {
            let ok = v.len() <= MAX_LEN && re.is_match(v);
            if !ok {
                invalid(problems, name, v, "is not a comma-separated list of names");
            }
            ok.then_some(v)
        });
        HeaderValue::from_str(checked.unwrap_or(default))
            .ok()
            .filter(|v| !v.is_empty())
    };
    let allow_methods = text("cors-allow-methods", &METHODS, DEFAULT_METHODS)?;
    let allow_headers = text("cors-allow-headers", &HEADERS, DEFAULT_HEADERS)?;
    let expose_headers = text("cors-expose-headers", &EXPOSE, "");
    let allow_credentials = get_flag(all, "cors-allow-credentials", problems).unwrap_or(true);
    let mut max_age = DEFAULT_MAX_AGE;
    if let Some(v) = get(all, "cors-max-age") {
        match v.trim().parse::<u32>() {
            Ok(n) => max_age = n,
            Err(_) => invalid(problems, "cors-max-age", v, "is not a whole number of seconds"),
        }
    }
    Some(Cors {
        origins,
        allow_methods,
        allow_headers,
        allow_credentials,
        expose_headers,
        max_age: HeaderValue::from(max_age),
        mode: CorsMode::IngressNginx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns compile, and accept what ingress-nginx's accept.
    #[test]
    fn patterns_accept_ingress_nginx_examples() {
        for o in [
            "*",
            "https://origin.cors.com:8080",
            "http://*.origin.cors.com",
            "https://a-b.example.com",
        ] {
            assert!(ORIGIN.is_match(o), "{o}");
        }
        for o in [
            "origin.cors.com:8080",
            "https://a.com/path",
            "javascript:x",
            "https://$host",
        ] {
            assert!(!ORIGIN.is_match(o), "{o}");
        }
        assert!(METHODS.is_match("POST, GET") && !METHODS.is_match("GET;"));
        assert!(HEADERS.is_match("DNT, User-Agent") && !HEADERS.is_match("X-A: 1"));
        assert!(EXPOSE.is_match("*, X-Custom") && !EXPOSE.is_match("$upstream_addr"));
    }
}
