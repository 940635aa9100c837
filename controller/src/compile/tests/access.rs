//! ingress-nginx's request-side access annotations as route filters, one test per
//! rule, each citing the ingress-nginx document or e2e test
//! (kubernetes/ingress-nginx, `test/e2e/annotations/`) it follows.

use std::net::IpAddr;

use http::header::HeaderMap;
use http::{Method, StatusCode, Uri};
use portico_dataplane::config::ProxyConfig;
use portico_dataplane::filter::{Answer, RequestHead};

use super::*;
use crate::compile::reason;

const P: &str = "nginx.ingress.kubernetes.io/";

fn one(annotations: &[(&str, &str)]) -> Compiled {
    let i = annotations.iter().fold(ingress("default", "web"), |i, (k, v)| {
        i.annotation(&format!("{P}{k}"), v)
    });
    world()
        .backend("default", "web", &["10.0.0.1"])
        .with(i.host("a.com").path("/", "Prefix", "web", 80))
        .compile()
}

fn from(c: &Compiled, client: &str) -> Option<StatusCode> {
    exchange(c, client, Method::GET, None).0
}

/// annotations.md "Whitelist source range" and e2e `ipwhitelist.go`: only clients in
/// the listed networks are served, the others get 403; spaces after commas are fine.
#[test]
fn whitelist_source_range_admits_listed_clients_only() {
    let c = one(&[("whitelist-source-range", "18.0.0.0/8, 56.0.0.0/8, 2001:db8::/32")]);
    c.assert_clean();
    assert_eq!(from(&c, "18.1.2.3"), None);
    assert_eq!(from(&c, "56.0.0.1"), None);
    assert_eq!(from(&c, "2001:db8::5"), None);
    assert_eq!(from(&c, "19.0.0.1"), Some(StatusCode::FORBIDDEN));
}

/// e2e `ipdenylist.go` "should set valid ip denylist range when whitelist is set":
/// ingress-nginx writes the `deny` lines before the `allow` lines and `deny all`, so a
/// client in both lists is refused.
#[test]
fn denylist_is_checked_before_whitelist() {
    let c = one(&[
        ("denylist-source-range", "18.0.0.0/8, 56.0.0.0/8"),
        ("whitelist-source-range", "17.0.0.0/8, 18.1.0.0/16"),
    ]);
    c.assert_clean();
    assert_eq!(from(&c, "17.0.0.1"), None);
    assert_eq!(from(&c, "18.1.0.1"), Some(StatusCode::FORBIDDEN));
    assert_eq!(from(&c, "56.0.0.1"), Some(StatusCode::FORBIDDEN));
    assert_eq!(from(&c, "99.0.0.1"), Some(StatusCode::FORBIDDEN));
    let deny_only = one(&[("denylist-source-range", "18.0.0.0/8")]);
    assert_eq!(from(&deny_only, "99.0.0.1"), None);
    assert_eq!(from(&deny_only, "18.0.0.1"), Some(StatusCode::FORBIDDEN));
}

/// ingress-nginx's `ipallowlist` parser denies the location when the list does not
/// parse (its `LocationDenied`, answered 503): a typo never opens a route to everyone.
#[test]
fn malformed_source_range_refuses_every_request() {
    for bad in ["18.0.0.0/33", "not-an-ip", " , "] {
        let c = one(&[("whitelist-source-range", bad)]);
        assert_eq!(
            c.reasons(),
            [("default/web".to_string(), reason::INVALID_ANNOTATION)],
            "{bad:?}"
        );
        assert_eq!(from(&c, "18.0.0.1"), Some(StatusCode::SERVICE_UNAVAILABLE), "{bad:?}");
    }
}

/// A route without access annotations has no request-phase filter for them.
#[test]
fn no_access_annotations_no_filter() {
    let c = one(&[]);
    let route = c.route("a.com", "/x").unwrap();
    assert!(route.action.is_none());
    assert_eq!(from(&c, "203.0.113.1"), None);
}

fn cors_exchange(c: &Compiled, method: Method, origin: Option<&str>) -> (Option<StatusCode>, HeaderMap) {
    exchange(c, "192.0.2.1", method, origin)
}

/// What a request for `/x` from `client` gets from the route's filters: the status the
/// route phase answers with (`None`: proxied), and the headers of the answer after the
/// response phase.
fn exchange(c: &Compiled, client: &str, method: Method, origin: Option<&str>) -> (Option<StatusCode>, HeaderMap) {
    let route = c.route("a.com", "/x").unwrap();
    let mut req = HeaderMap::new();
    if let Some(o) = origin {
        req.insert(http::header::ORIGIN, o.parse().unwrap());
    }
    let uri: Uri = "/x".parse().unwrap();
    let cfg = ProxyConfig::default();
    let head = RequestHead {
        method: &method,
        uri: &uri,
        headers: &req,
        host: "a.com",
        tls: false,
        client: client.parse::<IpAddr>().unwrap(),
        cfg: &cfg,
        client_cert: None,
    };
    let (status, mut headers) = match route.filters.request(&head) {
        Some(Answer::Status { status, headers }) => (Some(status), headers),
        None => (None, HeaderMap::new()),
        Some(other) => panic!("unexpected {other:?}"),
    };
    route.filters.response(&mut portico_dataplane::filter::ResponseHead {
        status: status.unwrap_or(StatusCode::OK),
        headers: &mut headers,
        tls: false,
        from_upstream: status.is_none(),
        origin: req.get(http::header::ORIGIN),
    });
    (status, headers)
}

/// e2e `cors.go` "should enable cors" and "should not break functionality - without
/// `*`": ingress-nginx's defaults, `Access-Control-Allow-Origin: *` on every answer,
/// with or without an `Origin`.
#[test]
fn enable_cors_defaults() {
    let c = one(&[("enable-cors", "true")]);
    c.assert_clean();
    let (status, h) = cors_exchange(&c, Method::GET, None);
    assert_eq!(status, None);
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    );
    assert_eq!(
        h["access-control-allow-headers"],
        "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
    );
    assert_eq!(h["access-control-max-age"], "1728000");
    assert!(!h.contains_key("access-control-expose-headers"));
}

/// The template's `if ($cors = "trueoptions") { ... return 204; }`: an allowed
/// preflight is answered here with the same headers.
#[test]
fn cors_preflight_is_answered_204() {
    let c = one(&[
        ("enable-cors", "true"),
        ("cors-allow-origin", "https://app.example.com"),
    ]);
    let (status, h) = cors_exchange(&c, Method::OPTIONS, Some("https://app.example.com"));
    assert_eq!(status, Some(StatusCode::NO_CONTENT));
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    // Not an allowed origin: the OPTIONS request goes to the endpoint, without CORS.
    let (status, h) = cors_exchange(&c, Method::OPTIONS, Some("https://evil.example.com"));
    assert_eq!(status, None);
    assert!(h.is_empty());
}

/// e2e `cors.go` "should allow correct origins - single origin for multiple cors
/// values", "should allow - matching origin with wildcard origin (2 subdomains)": a
/// listed origin is echoed back, others get no CORS headers; a bad entry is skipped and
/// reported.
#[test]
fn cors_origin_list_and_wildcards() {
    let c = one(&[
        ("enable-cors", "true"),
        (
            "cors-allow-origin",
            "origin.cors.com:8080, https://origin2.cors.com, http://*.origin.cors.com",
        ),
    ]);
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_ANNOTATION)]);
    for (origin, allowed) in [
        ("https://origin2.cors.com", true),
        ("http://bar-foo.origin.cors.com", true),
        ("http://bar.foo.origin.cors.com", false),
        ("origin.cors.com:8080", false),
    ] {
        let (_, h) = cors_exchange(&c, Method::GET, Some(origin));
        match allowed {
            true => assert_eq!(h["access-control-allow-origin"], origin),
            false => assert!(!h.contains_key("access-control-allow-origin"), "{origin}"),
        }
    }
    let (_, h) = cors_exchange(&c, Method::GET, None);
    assert!(h.is_empty());
}

/// e2e `cors.go` "should set cors methods", "max-age", "should disable cors allow
/// credentials", "should allow headers", "should expose headers".
#[test]
fn cors_values() {
    let c = one(&[
        ("enable-cors", "true"),
        ("cors-allow-methods", "POST, GET"),
        ("cors-allow-headers", "DNT, User-Agent"),
        ("cors-expose-headers", "X-CustomResponseHeader, X-CustomSecondHeader"),
        ("cors-allow-credentials", "false"),
        ("cors-max-age", "200"),
    ]);
    c.assert_clean();
    let (_, h) = cors_exchange(&c, Method::GET, None);
    assert_eq!(h["access-control-allow-methods"], "POST, GET");
    assert_eq!(h["access-control-allow-headers"], "DNT, User-Agent");
    assert_eq!(
        h["access-control-expose-headers"],
        "X-CustomResponseHeader, X-CustomSecondHeader"
    );
    assert_eq!(h["access-control-max-age"], "200");
    assert!(!h.contains_key("access-control-allow-credentials"));
}

/// Values ingress-nginx's patterns refuse keep the default and are reported; nothing
/// of them reaches a header.
#[test]
fn malformed_cors_values_keep_defaults() {
    let c = one(&[
        ("enable-cors", "true"),
        ("cors-allow-methods", "GET; drop"),
        ("cors-allow-headers", "X-A: $upstream_addr"),
        ("cors-max-age", "soon"),
    ]);
    assert_eq!(c.reasons().len(), 3);
    let (_, h) = cors_exchange(&c, Method::GET, None);
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    );
    assert_eq!(h["access-control-max-age"], "1728000");
    assert!(
        !one(&[("enable-cors", "false")])
            .route("a.com", "/x")
            .unwrap()
            .filters
            .keeps_origin()
    );
}

/// annotations.md "Rate Limiting" and e2e `limitrps`-style rules: `limit-rps: 1` with
/// the default multiplier 5 lets 6 requests at once through (`burst=5 nodelay`), then
/// answers 503; each client address has its own bucket, and `limit-whitelist`
/// addresses are never limited.
#[test]
fn limit_rps_with_default_burst() {
    let c = one(&[("limit-rps", "1"), ("limit-whitelist", "198.18.0.0/15")]);
    c.assert_clean();
    let passed = (0..10).filter(|_| from(&c, "203.0.113.50").is_none()).count();
    assert_eq!(passed, 6);
    assert_eq!(from(&c, "203.0.113.50"), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(from(&c, "203.0.113.51"), None);
    assert!((0..20).all(|_| from(&c, "198.18.0.9").is_none()));
}

/// `limit-burst-multiplier` scales the burst; `limit-rpm` limits per minute; a value
/// that is not a number keeps the default and is reported.
#[test]
fn limit_rpm_and_burst_multiplier() {
    let c = one(&[("limit-rpm", "2"), ("limit-burst-multiplier", "1")]);
    c.assert_clean();
    let passed = (0..10).filter(|_| from(&c, "203.0.113.60").is_none()).count();
    assert_eq!(passed, 3);
    let c = one(&[("limit-rps", "lots"), ("limit-whitelist", "10.0.0.0/40")]);
    assert_eq!(c.reasons().len(), 2);
    assert!(c.route("a.com", "/x").unwrap().action.is_none());
}
