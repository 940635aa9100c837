//! `auth-url`, `auth-method`, `auth-signin`, `auth-signin-redirect-param`,
//! `auth-response-headers` and `auth-request-redirect` (ingress-nginx's `authreq`
//! parser): each request is first asked of an auth service.
//!
//! ingress-nginx denies the location (503) when one of them does not parse; Portico
//! does the same, with a diagnostic, rather than serve the paths unauthenticated.

use std::collections::BTreeMap;

use http::Method;
use http::header::{HeaderName, HeaderValue};
use portico_dataplane::filter::{AuthUrl, signin_template};
use portico_dataplane::table::ExternalAuth;

use super::{NGINX_PREFIX, get};
use crate::compile::diagnostics::{Problem, Problems, reason};

/// What the annotations ask for: `Err(())` when one did not parse (reported; the
/// Ingress's paths then answer 503).
pub(super) fn parse(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<Result<ExternalAuth, ()>> {
    let url = get(all, "auth-url")?;
    let mut ok = true;
    let mut deny = |problems: &mut Problems, name: &str, why: String| {
        ok = false;
        problems.push(
            Problem::warning(
                reason::INVALID_ANNOTATION,
                format!("{NGINX_PREFIX}{name}: {why}; every request to this Ingress gets 503, as in ingress-nginx"),
            )
            .about(format!("{NGINX_PREFIX}{name}")),
        );
    };
    let url = url
        .parse::<AuthUrl>()
        .map_err(|e| deny(problems, "auth-url", e.to_string()))
        .ok();
    const METHODS: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
    ];
    let method = match get(all, "auth-method").map(str::trim) {
        None => None,
        Some(m) if METHODS.contains(&m) => Method::from_bytes(m.as_bytes()).ok(),
        Some(m) => {
            deny(problems, "auth-method", format!("{m:?} is not an HTTP method"));
            None
        }
    };
    let param = match get(all, "auth-signin-redirect-param").map(str::trim) {
        None => "rd",
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) => p,
        Some(p) => {
            deny(
                problems,
                "auth-signin-redirect-param",
                format!("{p:?} is not a query parameter name"),
            );
            "rd"
        }
    };
    let signin = match get(all, "auth-signin").map(str::trim) {
        None => None,
        Some(s) if s.starts_with("http://") || s.starts_with("https://") => signin_template(s, param)
            .map_err(|e| deny(problems, "auth-signin", e.to_string()))
            .ok(),
        Some(s) => {
            deny(
                problems,
                "auth-signin",
                format!("{s:?} is not an http:// or https:// URL"),
            );
            None
        }
    };
    let mut response_headers = Vec::new();
    for name in get(all, "auth-response-headers").into_iter().flat_map(|v| v.split(',')) {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => response_headers.push(h),
            Err(_) => deny(
                problems,
                "auth-response-headers",
                format!("{name:?} is not a header name"),
            ),
        }
    }
    let request_redirect = match get(all, "auth-request-redirect") {
        None => None,
        Some(r) => HeaderValue::from_str(r.trim())
            .map_err(|_| {
                deny(
                    problems,
                    "auth-request-redirect",
                    format!("{r:?} cannot be a header value"),
                )
            })
            .ok(),
    };
    match (ok, url) {
        (true, Some(url)) => Some(Ok(ExternalAuth {
            url,
            method,
            signin,
            response_headers,
            request_redirect,
        })),
        _ => Some(Err(())),
    }
}
