//! ingress-nginx's annotations, one test per rule, each citing the ingress-nginx
//! document or e2e test (kubernetes/ingress-nginx, `test/e2e/annotations/`) it follows.

use http::header::{HeaderMap, HeaderValue, LOCATION};
use http::{Method, StatusCode, Uri};
use portico_dataplane::config::ProxyConfig;
use portico_dataplane::filter::{Answer, RequestHead, UpstreamHead};
use portico_dataplane::table::{
    AffinityCookie, HashOn, HashPart, LbPolicy, PathKind, RequestView, Route, UpstreamProtocol,
};

use super::*;
use crate::compile::reason;

const P: &str = "nginx.ingress.kubernetes.io/";

fn w() -> World {
    world()
        .backend("default", "web", &["10.0.0.1"])
        .backend("default", "canary", &["10.0.0.9"])
}

fn one(annotations: &[(&str, &str)], path: &str, path_type: &str) -> Compiled {
    let i = annotations.iter().fold(ingress("default", "web"), |i, (k, v)| {
        i.annotation(&format!("{P}{k}"), v)
    });
    w().with(i.host("a.com").path(path, path_type, "web", 80)).compile()
}

/// What the endpoint would be asked for after the route's filters: path and query,
/// headers, and the new `Host` if any.
fn upstream(route: &Route, uri: &str) -> (String, HeaderMap, Option<HeaderValue>) {
    let uri: Uri = uri.parse().unwrap();
    let mut headers = HeaderMap::new();
    let mut head = UpstreamHead {
        headers: &mut headers,
        uri: &uri,
        host: None,
        path_and_query: None,
        tls: false,
        client_cert: None,
    };
    route.filters.upstream_request(&mut head);
    let (path, host) = (head.path_and_query, head.host);
    let path = path.unwrap_or_else(|| uri.path_and_query().unwrap().to_string());
    (path, headers, host)
}

fn upstream_path(route: &Route, uri: &str) -> String {
    upstream(route, uri).0
}

/// The route phase's answer to a request for `host` and `uri`: (status, Location).
fn answer_on(route: &Route, host: &str, uri: &str, tls: bool) -> Option<(StatusCode, String)> {
    let uri: Uri = uri.parse().unwrap();
    let (headers, cfg) = (HeaderMap::new(), ProxyConfig::default());
    let head = RequestHead {
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
        host,
        tls,
        client: std::net::IpAddr::from([192, 0, 2, 1]),
        cfg: &cfg,
        client_cert: None,
    };
    match route.filters.request(&head)? {
        Answer::Status { status, headers } => Some((status, headers[LOCATION].to_str().unwrap().to_string())),
        other => panic!("unexpected {other:?}"),
    }
}

fn answer(route: &Route, uri: &str) -> Option<(StatusCode, String)> {
    answer_on(route, "a.com", uri, false)
}

/// docs/examples/rewrite/README.md and e2e `rewrite.go`: with `rewrite-target: /$2` on
/// `/something(/|$)(.*)`, `/something/new` reaches the endpoint as `/new`; the path is a
/// case-insensitive regex ("should use ~* location modifier if regex annotation is present").
#[test]
fn rewrite_target_with_captures() {
    let c = one(
        &[("rewrite-target", "/$2")],
        "/something(/|$)(.*)",
        "ImplementationSpecific",
    );
    c.assert_clean();
    for (request, want) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
        ("/Something/new?a=1", "/new?a=1"),
    ] {
        let path = request.split('?').next().unwrap();
        let route = c
            .route("a.com", path)
            .unwrap_or_else(|| panic!("{request} has no route"));
        assert_eq!(upstream_path(route, request), want, "{request}");
    }
    assert!(c.route("a.com", "/other").is_none());
}

/// e2e `rewrite.go` "should write rewrite logs"/"should use correct longest path match":
/// a target equal to the path is no rewrite; `x-forwarded-prefix` goes with a rewrite.
#[test]
fn rewrite_target_equal_to_path_and_forwarded_prefix() {
    let c = one(&[("rewrite-target", "/")], "/", "ImplementationSpecific");
    assert_eq!(upstream_path(c.route("a.com", "/x").unwrap(), "/x"), "/x");
    let c = one(
        &[("rewrite-target", "/$1"), ("x-forwarded-prefix", "/api")],
        "/api/(.*)",
        "ImplementationSpecific",
    );
    let (_, headers, _) = upstream(c.route("a.com", "/api/v1").unwrap(), "/api/v1");
    assert_eq!(headers["x-forwarded-prefix"], "/api");
    assert_eq!(upstream_path(c.route("a.com", "/api/v1").unwrap(), "/api/v1"), "/v1");
}

/// A target with nginx variables Portico does not have keeps the default (no rewrite)
/// and says so.
#[test]
fn rewrite_target_with_variables_is_invalid() {
    let c = one(&[("rewrite-target", "/$host/$1")], "/", "Prefix");
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_ANNOTATION)]);
    assert_eq!(upstream_path(c.route("a.com", "/x").unwrap(), "/x"), "/x");
}

/// annotations.md "use-regex": one Ingress with `use-regex: "true"` makes the
/// ImplementationSpecific paths of every Ingress on the host case-insensitive regexes
/// anchored at the start (e2e `rewrite.go` "should use ~* location modifier if regex
/// annotation is present").
#[test]
fn use_regex_applies_to_the_whole_host() {
    let c = w()
        .with(
            ingress("default", "regex")
                .annotation(&format!("{P}use-regex"), "true")
                .host("a.com")
                .path("/foo/bar/[A-Z0-9]{3}", "ImplementationSpecific", "canary", 80),
        )
        .with(
            ingress("default", "plain")
                .host("a.com")
                .path("/foo", "ImplementationSpecific", "web", 80),
        )
        .compile();
    c.assert_clean();
    assert_eq!(c.hit("a.com", "/foo/bar/ABC").as_deref(), Some("default/regex"));
    assert_eq!(c.hit("a.com", "/foo/bar/abc/more").as_deref(), Some("default/regex"));
    assert_eq!(c.hit("a.com", "/FOO/x").as_deref(), Some("default/plain"));
    let route = c.route("a.com", "/foo").unwrap();
    assert_eq!(route.meta.path, "/foo");
    // Another host keeps plain string prefixes.
    let c = w()
        .with(
            ingress("default", "plain")
                .host("b.com")
                .path("/foo", "ImplementationSpecific", "web", 80),
        )
        .compile();
    assert!(c.route("b.com", "/FOO").is_none());
    let _ = PathKind::RegularExpression;
}

/// annotations.md "Rewrite" / e2e `approot.go`: `app-root: /foo` answers `/` with a 302
/// to `/foo`; other paths are proxied.
#[test]
fn app_root_redirects_the_root_only() {
    let c = one(&[("app-root", "/foo")], "/", "Prefix");
    c.assert_clean();
    assert_eq!(
        answer(c.route("a.com", "/").unwrap(), "/"),
        Some((StatusCode::FOUND, "http://a.com/foo".to_string()))
    );
    assert_eq!(answer(c.route("a.com", "/bar").unwrap(), "/bar"), None);
    let c = one(&[("app-root", "foo")], "/", "Prefix");
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_ANNOTATION)]);
}

/// e2e `permanentredirect.go` and annotations.md: `permanent-redirect` answers 301 (or
/// `permanent-redirect-code`) with the URL as given; `temporal-redirect` answers 302
/// and wins over it; a code outside 300-308 keeps 301.
#[test]
fn permanent_and_temporal_redirects() {
    let url = "https://www.google.com";
    for (annotations, want) in [
        (vec![("permanent-redirect", url)], Some(StatusCode::MOVED_PERMANENTLY)),
        (
            vec![("permanent-redirect", url), ("permanent-redirect-code", "308")],
            Some(StatusCode::PERMANENT_REDIRECT),
        ),
        (
            vec![("temporal-redirect", url), ("permanent-redirect", "https://x.com")],
            Some(StatusCode::FOUND),
        ),
        (
            vec![("permanent-redirect", url), ("permanent-redirect-code", "200")],
            Some(StatusCode::MOVED_PERMANENTLY),
        ),
        (vec![("permanent-redirect", "www.google.com")], None),
    ] {
        let c = one(&annotations, "/", "Prefix");
        let got = answer(c.route("a.com", "/a?b").unwrap(), "/a?b");
        assert_eq!(got.as_ref().map(|(s, _)| *s), want, "{annotations:?}");
        if let Some((_, location)) = got {
            assert_eq!(location, url);
        }
    }
}

/// e2e `fromtowwwredirect.go`: `from-to-www-redirect` on `www.a.com` answers `a.com`
/// with a 308 to `www.a.com`, path and query kept; a host another Ingress serves keeps
/// its own rules.
#[test]
fn from_to_www_redirect() {
    let c = w()
        .with(
            ingress("default", "www")
                .annotation(&format!("{P}from-to-www-redirect"), "true")
                .host("www.a.com")
                .path("/", "Prefix", "web", 80)
                .host("b.com")
                .path("/", "Prefix", "web", 80),
        )
        .with(
            ingress("default", "www-b")
                .host("www.b.com")
                .path("/", "Prefix", "canary", 80),
        )
        .compile();
    c.assert_clean();
    let alias = c.route("a.com", "/x").unwrap();
    assert_eq!(
        answer_on(alias, "a.com", "/x?y=1", true),
        Some((StatusCode::PERMANENT_REDIRECT, "https://www.a.com/x?y=1".to_string()))
    );
    assert_eq!(c.hit("www.b.com", "/").as_deref(), Some("default/www-b"));
}

/// annotations.md "Backend Protocol": GRPC and H2C speak HTTP/2 without TLS, HTTPS
/// speaks TLS without checking the certificate, GRPCS HTTP/2 over TLS (ALPN h2) the
/// same way; FCGI is not supported and says so.
#[test]
fn backend_protocol() {
    for (value, want) in [
        ("HTTP", UpstreamProtocol::Http1),
        ("grpc", UpstreamProtocol::H2c),
        ("H2C", UpstreamProtocol::H2c),
        ("HTTPS", UpstreamProtocol::Https),
        ("GRPCS", UpstreamProtocol::H2Tls),
    ] {
        let c = one(&[("backend-protocol", value)], "/", "Prefix");
        c.assert_clean();
        let backend = &c.route("a.com", "/").unwrap().backend;
        assert_eq!(backend.protocol, want, "{value}");
        assert_eq!(backend.tls.is_some(), want.is_tls());
        if let Some(tls) = &backend.tls {
            let alpn: &[u8] = if want == UpstreamProtocol::H2Tls {
                b"h2"
            } else {
                b"http/1.1"
            };
            assert_eq!(tls.config.alpn_protocols, vec![alpn.to_vec()], "{value}");
        }
    }
    let c = one(&[("backend-protocol", "FCGI")], "/", "Prefix");
    assert_eq!(
        c.reasons(),
        [("default/web".to_string(), reason::UNSUPPORTED_ANNOTATION)]
    );
    let c = one(&[("backend-protocol", "SPDY")], "/", "Prefix");
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_ANNOTATION)]);
}

/// annotations.md "Custom NGINX upstream vhost": the endpoint sees this `Host`.
#[test]
fn upstream_vhost_sets_host() {
    let c = one(&[("upstream-vhost", "internal.svc")], "/", "Prefix");
    let (_, headers, host) = upstream(c.route("a.com", "/").unwrap(), "/");
    assert_eq!(headers["host"], "internal.svc");
    assert_eq!(host.unwrap(), "internal.svc");
}

/// annotations.md "Custom timeouts": `proxy-next-upstream` lists the conditions,
/// `-tries` counts every try (default 3), `-timeout` bounds the request; `off` retries
/// nothing.
#[test]
fn proxy_next_upstream() {
    let c = one(
        &[
            ("proxy-next-upstream", "error http_502 http_503"),
            ("proxy-next-upstream-tries", "2"),
            ("proxy-next-upstream-timeout", "10"),
        ],
        "/",
        "Prefix",
    );
    c.assert_clean();
    let action = c.route("a.com", "/").unwrap().action.clone().unwrap();
    let retry = action.retry.clone().unwrap();
    assert_eq!(retry.attempts, 1);
    assert!(retry.on_connect_failure && retry.on_reset && !retry.on_timeout);
    assert_eq!(retry.codes, [502, 503]);
    assert_eq!(action.timeouts.request, Some(std::time::Duration::from_secs(10)));
    let c = one(&[("proxy-next-upstream-tries", "5")], "/", "Prefix");
    let retry = c
        .route("a.com", "/")
        .unwrap()
        .action
        .clone()
        .unwrap()
        .retry
        .clone()
        .unwrap();
    assert_eq!((retry.attempts, retry.on_timeout), (4, true));
    let c = one(&[("proxy-next-upstream", "off")], "/", "Prefix");
    assert_eq!(
        c.route("a.com", "/")
            .unwrap()
            .action
            .as_ref()
            .unwrap()
            .retry
            .as_ref()
            .unwrap()
            .attempts,
        0
    );
    let c = one(&[("proxy-next-upstream", "error sometimes")], "/", "Prefix");
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_ANNOTATION)]);
}

/// annotations.md "Custom NGINX upstream hashing" and "load balancing": the hash key
/// wins over `load-balance`; `ewma` is served by least-request; `$request_uri` is not
/// supported and says so.
#[test]
fn balancing_annotations() {
    for (annotations, want) in [
        (vec![("load-balance", "ewma")], LbPolicy::LeastRequest),
        (vec![("load-balance", "round_robin")], LbPolicy::RoundRobin),
        (
            vec![("upstream-hash-by", "$remote_addr"), ("load-balance", "ewma")],
            LbPolicy::ConsistentHash(HashOn::ClientIp),
        ),
        (
            vec![("upstream-hash-by", "$http_x_user")],
            LbPolicy::ConsistentHash(HashOn::Header(http::HeaderName::from_static("x-user"))),
        ),
        (
            vec![("upstream-hash-by", "${cookie_session}")],
            LbPolicy::ConsistentHash(HashOn::Cookie("session".into())),
        ),
    ] {
        let c = one(&annotations, "/", "Prefix");
        c.assert_clean();
        let action = c.route("a.com", "/").unwrap().action.clone();
        let got = action.map(|a| a.balance.policy.clone()).unwrap_or_default();
        assert_eq!(got, want, "{annotations:?}");
    }
    // ingress-nginx's own e2e test (`upstreamhashby.go`) keys on `$request_uri`; text
    // and several variables join (its `util.lua` `parse_complex_value`).
    for (value, want) in [
        ("$request_uri", vec![HashPart::RequestUri]),
        (
            "${host}:$uri\\$x",
            vec![
                HashPart::Host,
                HashPart::Text(":".into()),
                HashPart::Uri,
                HashPart::Text("$x".into()),
            ],
        ),
        (
            "$arg_id-$http_x_user",
            vec![
                HashPart::Arg("id".into()),
                HashPart::Text("-".into()),
                HashPart::Header(http::HeaderName::from_static("x-user")),
            ],
        ),
    ] {
        let c = one(&[("upstream-hash-by", value)], "/", "Prefix");
        c.assert_clean();
        let action = c.route("a.com", "/").unwrap().action.clone();
        let got = action.map(|a| a.balance.policy.clone()).unwrap_or_default();
        assert_eq!(got, LbPolicy::ConsistentHash(HashOn::Joined(want)), "{value}");
    }
    for value in ["$request_time", "${host", "$upstream_addr$uri"] {
        let c = one(&[("upstream-hash-by", value)], "/", "Prefix");
        assert_eq!(
            c.reasons(),
            [("default/web".to_string(), reason::UNSUPPORTED_ANNOTATION)],
            "{value}"
        );
    }
}

/// e2e `affinity.go`: `affinity: cookie` sets a cookie named `INGRESSCOOKIE` unless
/// `session-cookie-name` names another.
#[test]
fn cookie_affinity() {
    let c = one(&[("affinity", "cookie")], "/app", "Prefix");
    let balance = &c.route("a.com", "/app").unwrap().action.as_ref().unwrap().balance;
    let cookie = balance.affinity_cookie.as_ref().unwrap();
    assert_eq!(cookie.name, "INGRESSCOOKIE");
    // sticky.lua: the path defaults to the location's; no SameSite, Secure by scheme.
    assert_eq!(cookie.path.as_deref(), Some("/app"));
    assert_eq!((cookie.same_site.as_deref(), cookie.secure), (None, None));
    let c = one(
        &[("affinity", "cookie"), ("session-cookie-name", "SERVERID")],
        "/",
        "Prefix",
    );
    c.assert_clean();
    let balance = &c.route("a.com", "/").unwrap().action.as_ref().unwrap().balance;
    assert_eq!(balance.affinity_cookie.as_ref().unwrap().name, "SERVERID");
}

/// e2e `affinity.go` ("should set the path to /something on the generated cookie",
/// "should set cookie with expires", "SameSite attribute"): every `session-cookie-*`
/// value reaches the cookie; one that does not parse is reported and left out.
#[test]
fn session_cookie_attributes() {
    let c = one(
        &[
            ("affinity", "cookie"),
            ("session-cookie-path", "/something"),
            ("session-cookie-domain", "foo.bar"),
            ("session-cookie-expires", "172800"),
            ("session-cookie-max-age", "259200"),
            ("session-cookie-samesite", "none"),
            ("session-cookie-conditional-samesite-none", "true"),
            ("session-cookie-secure", "true"),
            ("session-cookie-change-on-failure", "true"),
        ],
        "/app",
        "Prefix",
    );
    c.assert_clean();
    let balance = &c.route("a.com", "/app").unwrap().action.as_ref().unwrap().balance;
    let want = AffinityCookie {
        name: "INGRESSCOOKIE".into(),
        path: Some("/something".into()),
        domain: Some("foo.bar".into()),
        max_age: Some(259200),
        expires: Some(172800),
        secure: Some(true),
        same_site: Some("None".into()),
        conditional_same_site_none: true,
    };
    assert_eq!(balance.affinity_cookie.as_ref(), Some(&want));
    let c = one(
        &[
            ("affinity", "cookie"),
            ("session-cookie-max-age", "two days"),
            ("session-cookie-samesite", "sometimes"),
            ("session-cookie-path", "/a; Secure"),
        ],
        "/",
        "Prefix",
    );
    assert_eq!(c.reasons().len(), 3, "{:?}", c.reasons());
    let balance = &c.route("a.com", "/").unwrap().action.as_ref().unwrap().balance;
    let cookie = balance.affinity_cookie.as_ref().unwrap();
    assert_eq!((cookie.max_age, cookie.same_site.as_deref()), (None, None));
    assert_eq!(cookie.path.as_deref(), Some("/"));
}

/// A plain Ingress route carries no action and no filters beyond the body limit: the
/// annotations cost nothing where they are not used.
#[test]
fn no_annotations_no_action() {
    let c = one(&[], "/", "Prefix");
    let route = c.route("a.com", "/").unwrap();
    assert!(route.action.is_none());
    assert_eq!(route.filters.iter().count(), 1);
}

/// annotations.md "Configuration snippet", "Server snippet": never interpreted; a
/// SnippetRefused warning says so and the Ingress keeps routing.
#[test]
fn snippets_are_refused() {
    let c = one(
        &[
            ("configuration-snippet", "more_set_headers \"X: y\";"),
            ("server-snippet", "return 200;"),
            ("some-new-snippet", "x"),
        ],
        "/",
        "Prefix",
    );
    assert_eq!(
        c.reasons()
            .iter()
            .filter(|(_, r)| *r == reason::SNIPPET_REFUSED)
            .count(),
        3
    );
    assert!(c.route("a.com", "/").is_some());
}

/// annotations.md "Enable Access Log": `"false"` turns the route's access log off.
#[test]
fn enable_access_log() {
    assert!(one(&[], "/", "Prefix").route("a.com", "/").unwrap().policy.access_log);
    let c = one(&[("enable-access-log", "false")], "/", "Prefix");
    assert!(!c.route("a.com", "/").unwrap().policy.access_log);
}

fn canary_world(annotations: &[(&str, &str)]) -> Compiled {
    let canary = annotations.iter().fold(
        ingress("default", "web-canary").annotation(&format!("{P}canary"), "true"),
        |i, (k, v)| i.annotation(&format!("{P}{k}"), v),
    );
    w().with(ingress("default", "web").host("a.com").path("/", "Prefix", "web", 80))
        .with(canary.host("a.com").path("/", "Prefix", "canary", 80))
        .compile()
}

/// Which backend a request with `headers` gets: the split is turned `n` times.
fn canary_share(c: &Compiled, headers: &[(&str, &str)], n: usize) -> usize {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let req = RequestView {
        method: &Method::GET,
        path: "/",
        query: None,
        headers: &map,
    };
    (0..n)
        .filter(|_| {
            let route = c.table.route("a.com", &req).unwrap();
            let backend = match route.action.as_ref().and_then(|a| a.backends.as_ref()) {
                Some(split) => split.choose(None).clone(),
                None => route.backend.clone(),
            };
            backend.name == "default/canary:80"
        })
        .count()
}

/// annotations.md "Canary": `canary-weight: 20` sends 20 of every 100 requests to the
/// canary (e2e `canary.go` "should route requests split between mainline and canary").
#[test]
fn canary_weight() {
    let c = canary_world(&[("canary-weight", "20")]);
    c.assert_clean();
    assert_eq!(canary_share(&c, &[], 100), 20);
    let c = canary_world(&[("canary-weight", "3"), ("canary-weight-total", "10")]);
    assert_eq!(canary_share(&c, &[], 100), 30);
    assert_eq!(canary_share(&canary_world(&[]), &[], 10), 0);
}

/// e2e `canary.go`: a header `always` goes to the canary, `never` to the main backend,
/// anything else falls through to the cookie and then the weight.
#[test]
fn canary_by_header_then_cookie_then_weight() {
    let c = canary_world(&[
        ("canary-by-header", "CanaryByHeader"),
        ("canary-by-cookie", "CanaryByCookie"),
        ("canary-weight", "100"),
    ]);
    c.assert_clean();
    assert_eq!(canary_share(&c, &[("canaryByHeader", "always")], 10), 10);
    assert_eq!(
        canary_share(
            &c,
            &[("canarybyheader", "never"), ("cookie", "CanaryByCookie=always")],
            10
        ),
        0
    );
    assert_eq!(
        canary_share(
            &c,
            &[("canarybyheader", "maybe"), ("cookie", "a=1; CanaryByCookie=never")],
            10
        ),
        0
    );
    assert_eq!(canary_share(&c, &[("cookie", "CanaryByCookie=x")], 10), 10);
    let c = canary_world(&[("canary-by-cookie", "CanaryByCookie")]);
    assert_eq!(canary_share(&c, &[("cookie", "CanaryByCookie=always")], 10), 10);
    assert_eq!(canary_share(&c, &[], 10), 0);
}

/// e2e `canary.go` "canary-by-header-value" and "-pattern": that value (or a value the
/// pattern finds) goes to the canary; others are compared against the next rule.
#[test]
fn canary_by_header_value_and_pattern() {
    let c = canary_world(&[("canary-by-header", "x-canary"), ("canary-by-header-value", "DoCanary")]);
    assert_eq!(canary_share(&c, &[("x-canary", "DoCanary")], 10), 10);
    assert_eq!(canary_share(&c, &[("x-canary", "always")], 10), 0);
    let c = canary_world(&[
        ("canary-by-header", "x-canary"),
        ("canary-by-header-pattern", "^Do[A-Z]"),
    ]);
    assert_eq!(canary_share(&c, &[("x-canary", "DoCanary")], 10), 10);
    assert_eq!(canary_share(&c, &[("x-canary", "docanary")], 10), 0);
}

/// A canary whose host and path no other Ingress serves has no effect and says so; it
/// never takes the path for itself.
#[test]
fn canary_without_main() {
    let c = w()
        .with(
            ingress("default", "lonely")
                .annotation(&format!("{P}canary"), "true")
                .host("b.com")
                .path("/", "Prefix", "canary", 80),
        )
        .compile();
    assert!(c.route("b.com", "/").is_none());
    assert_eq!(
        c.reasons(),
        [("default/lonely".to_string(), reason::CANARY_WITHOUT_MAIN)]
    );
}

/// annotations.md "SSL Passthrough" and ingress-nginx's `controller.go`, which passes a
/// host's TLS to the backend of its `/` location only: the `/` path's Service (the
/// Ingress's defaultBackend when the host has no `/`), exact hosts only; the oldest
/// Ingress keeps a host. The rules still serve plain HTTP.
#[test]
fn ssl_passthrough_names_the_root_backend() {
    let pass = |name: &str| {
        ingress("default", name)
            .annotation(&format!("{P}ssl-passthrough"), "true")
            .host("a.com")
            .path("/api", "Prefix", "canary", 80)
            .path("/", "Prefix", "web", 80)
    };
    let c = w()
        .with(pass("first"))
        .with(pass("second").host("b.com").path("/x", "Prefix", "web", 80))
        .with(
            ingress("default", "fallback")
                .annotation(&format!("{P}ssl-passthrough"), "true")
                .default_backend("canary", 80)
                .host("c.com")
                .path("/x", "Prefix", "web", 80),
        )
        .with(
            ingress("default", "wild")
                .annotation(&format!("{P}ssl-passthrough"), "true")
                .host("*.d.com")
                .path("/", "Prefix", "web", 80),
        )
        .compile();
    let backend = |host: &str| c.table.passthrough(host).map(|b| b.name.clone());
    assert_eq!(backend("A.com").as_deref(), Some("default/web:80"));
    assert_eq!(backend("c.com").as_deref(), Some("default/canary:80"));
    assert_eq!(backend("b.com"), None, "b.com has no / path and no defaultBackend");
    assert_eq!(backend("x.d.com"), None);
    assert_eq!(backend("web.com"), None);
    assert_eq!(c.hit("a.com", "/api").as_deref(), Some("default/first"));
    let reasons = c.reasons();
    for (ingress, why) in [
        ("default/second", reason::DUPLICATE_RULE),
        ("default/second", reason::INVALID_ANNOTATION),
        ("default/wild", reason::INVALID_ANNOTATION),
    ] {
        assert!(reasons.contains(&(ingress.to_string(), why)), "{reasons:?}");
    }
    // Without the annotation nothing is passed through.
    assert!(!one(&[], "/", "Prefix").table.has_passthrough());
}

/// The error pages a route has: (the backend's name, the codes it answers for).
fn error_pages(route: &Route) -> Option<(String, Vec<u16>)> {
    let pages = route.action.as_ref()?.error_pages.as_ref()?;
    Some((pages.backend.name.clone(), pages.codes().to_vec()))
}

/// ingress-nginx's `--default-backend-service` (e2e `defaultbackend/
/// custom_default_backend.go`, the template's default server and the `/` location it
/// gives servers without one) and the ConfigMap's `custom-http-errors`: what no rule
/// matches goes to the Service; an Ingress's own defaultBackend keeps its hosts; the
/// codes go to the Service on paths without the annotation, to the annotation's
/// default-backend on paths with one.
#[test]
fn default_backend_service_and_global_custom_http_errors() {
    let opts = CompileOptions {
        default_backend_service: Some(("default".into(), "errors".into())),
        custom_http_errors: vec![404, 503],
        ..CompileOptions::default()
    };
    let c = w()
        .backend("default", "errors", &["10.0.0.5"])
        .backend("default", "pages", &["10.0.0.6"])
        .with(
            ingress("default", "web")
                .host("a.com")
                .path("/app", "Prefix", "web", 80),
        )
        .with(
            ingress("default", "own")
                .annotation(&format!("{P}default-backend"), "pages")
                .host("b.com")
                .path("/", "Prefix", "web", 80),
        )
        .compile_with(&opts);
    let backend = |host: &str, path: &str| c.route(host, path).map(|r| r.backend.name.clone());
    assert_eq!(backend("a.com", "/other").as_deref(), Some("default/errors:80"));
    assert_eq!(backend("unknown.org", "/").as_deref(), Some("default/errors:80"));
    assert_eq!(backend("a.com", "/app").as_deref(), Some("default/web:80"));
    let app = c.route("a.com", "/app").unwrap();
    assert_eq!(error_pages(app), Some(("default/errors:80".into(), vec![404, 503])));
    let own = c.route("b.com", "/x").unwrap();
    assert_eq!(error_pages(own), Some(("default/pages:80".into(), vec![404, 503])));
    // The fallback of b.com is its Ingress's defaultBackend, not the Service.
    let b = w()
        .backend("default", "errors", &["10.0.0.5"])
        .with(
            ingress("default", "own")
                .host("b.com")
                .path("/x", "Exact", "web", 80)
                .default_backend("canary", 80),
        )
        .compile_with(&opts);
    assert_eq!(
        b.route("b.com", "/y").map(|r| r.backend.name.as_str()),
        Some("default/canary:80")
    );

    // Without the flag: no fallback and no error pages.
    let none = w()
        .with(
            ingress("default", "web")
                .host("a.com")
                .path("/app", "Prefix", "web", 80),
        )
        .compile_with(&CompileOptions {
            default_backend_service: None,
            ..opts
        });
    assert!(none.route("unknown.org", "/").is_none() && none.route("a.com", "/other").is_none());
    assert_eq!(error_pages(none.route("a.com", "/app").unwrap()), None);
}

/// annotations.md "Rate Limiting" (e2e `annotations/limitconnections.go`):
/// `limit-connections` counts per client address across the Ingress's paths;
/// `limit-whitelist` escapes it; a value that is not a count is reported and unset.
#[test]
fn limit_connections_is_shared_by_the_ingress_paths() {
    let c = w()
        .with(
            ingress("default", "web")
                .annotation(&format!("{P}limit-connections"), "1")
                .annotation(&format!("{P}limit-whitelist"), "198.18.0.0/24")
                .host("a.com")
                .path("/a", "Prefix", "web", 80)
                .path("/b", "Prefix", "web", 80),
        )
        .compile();
    let limit = |path: &str| {
        c.route("a.com", path)
            .unwrap()
            .action
            .as_ref()
            .unwrap()
            .conn_limit
            .clone()
            .unwrap()
    };
    let client = std::net::IpAddr::from([203, 0, 113, 5]);
    let slot = limit("/a").acquire(client).unwrap();
    assert!(slot.is_some());
    assert_eq!(
        limit("/b").acquire(client).unwrap_err(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        limit("/b")
            .acquire(std::net::IpAddr::from([198, 18, 0, 7]))
            .unwrap()
            .is_none()
    );
    drop(slot);
    assert!(limit("/b").acquire(client).is_ok());

    let bad = one(&[("limit-connections", "many")], "/", "Prefix");
    assert!(bad.route("a.com", "/").unwrap().action.is_none());
    assert_eq!(bad.reasons(), [("default/web".to_string(), reason::INVALID_ANNOTATION)]);
}

/// annotations.md "Custom timeouts" and ingress-nginx's `annotations/proxy` parser:
/// `proxy-connect-timeout` is whole seconds (its validator is `ValidateInt`) and
/// reaches the route; without it the route keeps the proxy's own; a value that is not
/// a whole number keeps the default and is reported.
#[test]
fn proxy_connect_timeout_reaches_the_route() {
    let c = one(&[("proxy-connect-timeout", "10")], "/", "Prefix");
    c.assert_clean();
    let policy = &c.route("a.com", "/").unwrap().policy;
    assert_eq!(policy.connect_timeout, Some(std::time::Duration::from_secs(10)));

    let c = one(&[], "/", "Prefix");
    assert_eq!(c.route("a.com", "/").unwrap().policy.connect_timeout, None);

    for bad in ["10s", "0", "soon"] {
        let c = one(&[("proxy-connect-timeout", bad)], "/", "Prefix");
        assert_eq!(c.route("a.com", "/").unwrap().policy.connect_timeout, None, "{bad}");
        assert_eq!(
            c.reasons(),
            [("default/web".to_string(), reason::INVALID_ANNOTATION)],
            "{bad}"
        );
    }
}

/// A Secret for `proxy-ssl-secret`: a client certificate and key, and a CA bundle,
/// each when asked for.
fn proxy_ssl_secret(name: &str, client: bool, ca: bool) -> k8s_openapi::api::core::v1::Secret {
    use k8s_openapi::ByteString;
    let mut s = super::tls::secret("default", name, super::tls::pem(&["portico-client"], false));
    let data = s.data.get_or_insert_with(Default::default);
    if !client {
        data.clear();
    }
    if ca {
        let (ca, _) = super::tls::pem(&["upstream-ca"], false);
        data.insert("ca.crt".to_string(), ByteString(ca.into_bytes()));
    }
    s
}

/// An HTTPS backend-protocol Ingress with `annotations` (under the prefix) and `secrets`.
fn proxy_ssl(annotations: &[(&str, &str)], secrets: Vec<k8s_openapi::api::core::v1::Secret>) -> Compiled {
    let i = annotations.iter().fold(
        ingress("default", "web").annotation(&format!("{P}backend-protocol"), "HTTPS"),
        |i, (k, v)| i.annotation(&format!("{P}{k}"), v),
    );
    let world = secrets.into_iter().fold(w(), |w, s| w.secret(s));
    let opts = CompileOptions {
        now: super::tls::NOW,
        ..CompileOptions::default()
    };
    world
        .with(i.host("a.com").path("/", "Prefix", "web", 80))
        .compile_with(&opts)
}

fn upstream_tls(c: &Compiled) -> std::sync::Arc<portico_dataplane::tls::UpstreamTls> {
    c.route("a.com", "/")
        .unwrap()
        .backend
        .tls
        .clone()
        .expect("TLS settings")
}

/// The Ingress's paths answer 503: ingress-nginx's LocationDenied.
fn denied(c: &Compiled) -> bool {
    let route = c.route("a.com", "/").unwrap();
    route
        .action
        .as_ref()
        .and_then(|a| a.source_range.as_ref())
        .is_some_and(|r| r.refuse_all)
}

/// annotations.md "Backend Certificate Authentication" and e2e `proxyssl.go` ("should
/// set valid proxy-ssl-secret, proxy-ssl-verify to on, proxy-ssl-verify-depth to 2,
/// and proxy-ssl-server-name to on"): the endpoint is verified against `ca.crt` for
/// `proxy-ssl-name`, which is sent as SNI, and the client certificate is presented.
#[test]
fn proxy_ssl_verifies_presents_and_sends_the_name() {
    let c = proxy_ssl(
        &[
            ("proxy-ssl-secret", "default/upstream"),
            ("proxy-ssl-verify", "on"),
            ("proxy-ssl-verify-depth", "2"),
            ("proxy-ssl-name", "web.internal"),
            ("proxy-ssl-server-name", "on"),
        ],
        vec![proxy_ssl_secret("upstream", true, true)],
    );
    c.assert_clean();
    let tls = upstream_tls(&c);
    assert!(tls.verified);
    assert!(tls.config.enable_sni);
    assert!(tls.config.client_auth_cert_resolver.has_certs());
    assert_eq!(tls.server_name.to_str(), "web.internal");
}

/// ingress-nginx's defaults (proxyssl parser: verify off, server-name off; nginx's
/// `proxy_ssl_server_name off`): the secret alone presents its certificate, verifies
/// nothing and sends no SNI; `backend-protocol: HTTPS` without it is the same less
/// the certificate.
#[test]
fn proxy_ssl_defaults_are_unverified_without_sni() {
    let c = proxy_ssl(
        &[("proxy-ssl-secret", "default/upstream")],
        vec![proxy_ssl_secret("upstream", true, true)],
    );
    c.assert_clean();
    let tls = upstream_tls(&c);
    assert!(!tls.verified && !tls.config.enable_sni);
    assert!(tls.config.client_auth_cert_resolver.has_certs());
    assert_eq!(tls.server_name.to_str(), "web.default.svc");

    let plain = proxy_ssl(&[], Vec::new());
    plain.assert_clean();
    let tls = upstream_tls(&plain);
    assert!(!tls.verified && !tls.config.enable_sni);
    assert!(!tls.config.client_auth_cert_resolver.has_certs());
}

/// proxyssl parser: a Secret that cannot be had (missing, another namespace, not
/// namespace/name) is LocationDenied; verification asked for without `ca.crt` is
/// denied too, rather than served unverified. Each says why.
#[test]
fn proxy_ssl_secret_that_cannot_be_used_denies_the_paths() {
    // (annotation, proxy-ssl-verify, the Secret's (client certificate, ca.crt), reason)
    for (secret, verify, has, why) in [
        ("default/missing", "off", None, reason::SECRET_NOT_FOUND),
        ("other/upstream", "off", Some((true, true)), reason::INVALID_ANNOTATION),
        ("upstream", "off", Some((true, true)), reason::INVALID_ANNOTATION),
        (
            "default/upstream",
            "on",
            Some((true, false)),
            reason::INVALID_CERTIFICATE,
        ),
        (
            "default/upstream",
            "off",
            Some((false, false)),
            reason::INVALID_CERTIFICATE,
        ),
    ] {
        let secrets = has
            .map(|(client, ca)| proxy_ssl_secret("upstream", client, ca))
            .into_iter()
            .collect();
        let c = proxy_ssl(&[("proxy-ssl-secret", secret), ("proxy-ssl-verify", verify)], secrets);
        assert_eq!(c.reasons(), [("default/web".to_string(), why)], "{secret} {verify}");
        assert!(denied(&c), "{secret} {verify}");
    }
}

/// As in ingress-nginx's parser, which returns before reading them, the companions
/// have no effect without `proxy-ssl-secret`; Portico says so.
#[test]
fn proxy_ssl_companions_need_the_secret() {
    let c = proxy_ssl(&[("proxy-ssl-verify", "on")], Vec::new());
    assert_eq!(
        c.reasons(),
        [("default/web".to_string(), reason::UNSUPPORTED_ANNOTATION)]
    );
    assert!(!upstream_tls(&c).verified);
}

/// e2e `proxyssl.go` ("should set valid proxy-ssl-secret, proxy-ssl-protocols"):
/// `TLSv1.2 TLSv1.3` offers both; a list of older versions only keeps both and is
/// reported; a word that is no version is invalid.
#[test]
fn proxy_ssl_protocols() {
    // rustls keeps the enabled versions to itself; its Debug shows them.
    let offers = |c: &Compiled| {
        let d = format!("{:?}", upstream_tls(c).config);
        let versions = d
            .split("versions: [")
            .nth(1)
            .and_then(|v| v.split(']').next())
            .unwrap_or_default();
        (versions.contains("TLSv1_2"), versions.contains("TLSv1_3"))
    };
    let with = |v: &str| {
        proxy_ssl(
            &[("proxy-ssl-secret", "default/upstream"), ("proxy-ssl-protocols", v)],
            vec![proxy_ssl_secret("upstream", true, false)],
        )
    };
    for (v, want) in [
        ("TLSv1.3", (false, true)),
        ("TLSv1.1 TLSv1.2", (true, false)),
        ("TLSv1.2 TLSv1.3", (true, true)),
    ] {
        let c = with(v);
        c.assert_clean();
        assert_eq!(offers(&c), want, "{v}");
    }
    for (v, why) in [
        ("TLSv1 TLSv1.1", reason::UNSUPPORTED_ANNOTATION),
        ("QUIC", reason::INVALID_ANNOTATION),
    ] {
        let c = with(v);
        assert_eq!(c.reasons(), [("default/web".to_string(), why)], "{v}");
        assert_eq!(offers(&c), (true, true), "{v}");
    }
}

/// Connections are pooled by their TLS settings: two Ingresses that verify with
/// different CAs never share a backend (nor, keyed alike, a pooled connection).
#[test]
fn proxy_ssl_settings_key_the_backend() {
    let verify = [("proxy-ssl-secret", "default/upstream"), ("proxy-ssl-verify", "on")];
    let a = upstream_tls(&proxy_ssl(&verify, vec![proxy_ssl_secret("upstream", true, true)]));
    let b = upstream_tls(&proxy_ssl(&verify, vec![proxy_ssl_secret("upstream", true, true)]));
    let plain = upstream_tls(&proxy_ssl(&[], Vec::new()));
    assert_ne!(a.key, b.key, "other CA and client certificate");
    assert_ne!(a.key, plain.key);
    assert_eq!(plain.key, upstream_tls(&proxy_ssl(&[], Vec::new())).key);
}
