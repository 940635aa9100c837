//! Matching rules, one test per rule.

use super::*;

fn route(name: &str) -> Arc<Route> {
    Arc::new(Route::new(
        RouteMeta {
            namespace: "default".into(),
            ingress: name.into(),
            ..Default::default()
        },
        Arc::new(Backend::new(name, UpstreamProtocol::Http1, vec![])),
        RoutePolicy::default(),
        None,
    ))
}

fn table(rules: &[(&str, &str, PathKind, &str)]) -> RoutingTable {
    let mut b = TableBuilder::new();
    for (host, path, kind, name) in rules {
        b.add(RouteRule {
            host: HostMatch::parse(host).unwrap(),
            path: path.to_string(),
            kind: *kind,
            route: route(name),
        })
        .unwrap();
    }
    b.build(1)
}

fn hit(t: &RoutingTable, host: &str, path: &str) -> Option<String> {
    t.lookup(host, path).map(|r| r.meta.ingress.clone())
}

use PathKind::{Exact, ImplementationSpecific as Impl, Prefix};

/// Exact paths match byte for byte: no trailing-slash or case folding.
#[test]
fn exact_path_is_byte_exact() {
    let t = table(&[("a.com", "/foo", Exact, "x")]);
    assert_eq!(hit(&t, "a.com", "/foo").as_deref(), Some("x"));
    assert_eq!(hit(&t, "a.com", "/foo/"), None);
    assert_eq!(hit(&t, "a.com", "/FOO"), None);
    assert_eq!(hit(&t, "a.com", "/foo/bar"), None);
}

/// Prefix matches whole path elements: /foo matches /foo, /foo/, /foo/bar, not /foobar.
#[test]
fn prefix_is_element_wise() {
    let t = table(&[("a.com", "/foo", Prefix, "x")]);
    for p in ["/foo", "/foo/", "/foo/bar", "/foo//bar/baz"] {
        assert_eq!(hit(&t, "a.com", p).as_deref(), Some("x"), "{p}");
    }
    assert_eq!(hit(&t, "a.com", "/foobar"), None);
    assert_eq!(hit(&t, "a.com", "/"), None);
}

/// A trailing slash on a Prefix rule is ignored: /foo/ matches /foo.
#[test]
fn prefix_trailing_slash_ignored() {
    let t = table(&[("a.com", "/foo/", Prefix, "x")]);
    assert_eq!(hit(&t, "a.com", "/foo").as_deref(), Some("x"));
    assert_eq!(hit(&t, "a.com", "/foo/bar").as_deref(), Some("x"));
}

/// Prefix / matches every path.
#[test]
fn prefix_root_matches_everything() {
    let t = table(&[("a.com", "/", Prefix, "x")]);
    for p in ["/", "/a", "/a/b/c"] {
        assert_eq!(hit(&t, "a.com", p).as_deref(), Some("x"), "{p}");
    }
}

/// ImplementationSpecific is ingress-nginx's plain string prefix: /foo matches /foobar.
#[test]
fn implementation_specific_is_string_prefix() {
    let t = table(&[("a.com", "/foo", Impl, "x")]);
    for p in ["/foo", "/foobar", "/foo/bar"] {
        assert_eq!(hit(&t, "a.com", p).as_deref(), Some("x"), "{p}");
    }
    assert_eq!(hit(&t, "a.com", "/fo"), None);
}

/// The longest rule path wins, whatever order the rules came in.
#[test]
fn longest_path_wins() {
    let t = table(&[
        ("a.com", "/", Prefix, "root"),
        ("a.com", "/api/v1", Prefix, "v1"),
        ("a.com", "/api", Prefix, "api"),
    ]);
    assert_eq!(hit(&t, "a.com", "/api/v1/users").as_deref(), Some("v1"));
    assert_eq!(hit(&t, "a.com", "/api/v2").as_deref(), Some("api"));
    assert_eq!(hit(&t, "a.com", "/other").as_deref(), Some("root"));
}

/// At equal length an Exact rule beats a Prefix rule, which beats ImplementationSpecific.
#[test]
fn exact_before_prefix_at_equal_length() {
    let t = table(&[
        ("a.com", "/foo", Prefix, "prefix"),
        ("a.com", "/foo", Exact, "exact"),
        ("a.com", "/foo", Impl, "impl"),
    ]);
    assert_eq!(hit(&t, "a.com", "/foo").as_deref(), Some("exact"));
    assert_eq!(hit(&t, "a.com", "/foo/x").as_deref(), Some("prefix"));
    assert_eq!(hit(&t, "a.com", "/foox").as_deref(), Some("impl"));
}

/// A longer ImplementationSpecific rule beats a shorter Prefix rule.
#[test]
fn longer_string_prefix_beats_shorter_prefix() {
    let t = table(&[("a.com", "/api", Prefix, "prefix"), ("a.com", "/api/v", Impl, "impl")]);
    assert_eq!(hit(&t, "a.com", "/api/v2").as_deref(), Some("impl"));
    assert_eq!(hit(&t, "a.com", "/api/x").as_deref(), Some("prefix"));
}

/// Hosts match case-insensitively with the port and a trailing dot stripped.
#[test]
fn host_is_case_insensitive_and_port_stripped() {
    let t = table(&[("Foo.Example.com", "/", Prefix, "x")]);
    for h in [
        "foo.example.com",
        "FOO.EXAMPLE.COM:8080",
        "foo.example.com.",
        "foo.example.com:443",
    ] {
        assert_eq!(hit(&t, h, "/").as_deref(), Some("x"), "{h}");
    }
    assert_eq!(hit(&t, "bar.example.com", "/"), None);
}

/// A wildcard host matches exactly one extra label.
#[test]
fn wildcard_matches_one_label() {
    let t = table(&[("*.example.com", "/", Prefix, "wild")]);
    assert_eq!(hit(&t, "a.example.com", "/").as_deref(), Some("wild"));
    assert_eq!(hit(&t, "A.Example.COM:80", "/").as_deref(), Some("wild"));
    assert_eq!(hit(&t, "a.b.example.com", "/"), None);
    assert_eq!(hit(&t, "example.com", "/"), None);
}

/// An exact host is chosen over a wildcard that also covers it.
#[test]
fn exact_host_before_wildcard() {
    let t = table(&[
        ("*.example.com", "/", Prefix, "wild"),
        ("a.example.com", "/", Prefix, "exact"),
    ]);
    assert_eq!(hit(&t, "a.example.com", "/x").as_deref(), Some("exact"));
    assert_eq!(hit(&t, "b.example.com", "/x").as_deref(), Some("wild"));
}

/// Once a host block is chosen, its paths alone decide: no fall-through to other blocks.
#[test]
fn matched_host_does_not_fall_through() {
    let t = table(&[("a.com", "/api", Prefix, "api"), ("", "/", Prefix, "catchall")]);
    assert_eq!(hit(&t, "a.com", "/web"), None);
    assert_eq!(hit(&t, "b.com", "/web").as_deref(), Some("catchall"));
}

/// Rules without a host serve requests whose host no rule names, and requests with no host.
#[test]
fn no_host_rules_catch_unknown_hosts() {
    let t = table(&[("", "/", Prefix, "any")]);
    assert_eq!(hit(&t, "whatever.io", "/").as_deref(), Some("any"));
    assert_eq!(hit(&t, "", "/").as_deref(), Some("any"));
    assert_eq!(hit(&t, "10.0.0.1:8080", "/").as_deref(), Some("any"));
}

/// The second rule for the same host, path and type is refused and names the owner.
#[test]
fn duplicate_rule_refused() {
    let mut b = TableBuilder::new();
    let rule = |name| RouteRule {
        host: HostMatch::parse("a.com").unwrap(),
        path: "/x/".into(),
        kind: Prefix,
        route: route(name),
    };
    b.add(rule("first")).unwrap();
    let mut second = rule("second");
    second.path = "/x".into();
    let err = b.add(second).unwrap_err();
    assert!(err.to_string().contains("default/first"), "{err}");
    let t = b.build(1);
    assert_eq!(hit(&t, "a.com", "/x").as_deref(), Some("first"));
    assert_eq!(t.route_count(), 1);
}

/// A host's fallback serves paths none of its rules match.
#[test]
fn fallback_serves_unmatched_paths() {
    let mut b = TableBuilder::new();
    let host = HostMatch::parse("a.com").unwrap();
    b.add(RouteRule {
        host: host.clone(),
        path: "/api".into(),
        kind: Prefix,
        route: route("api"),
    })
    .unwrap();
    assert!(b.fallback(&host, route("default")));
    assert!(!b.fallback(&host, route("later")));
    let t = b.build(1);
    assert_eq!(hit(&t, "a.com", "/api/x").as_deref(), Some("api"));
    assert_eq!(hit(&t, "a.com", "/web").as_deref(), Some("default"));
}

/// Paths that are not absolute or carry '..' are refused with a reason.
#[test]
fn invalid_paths_refused() {
    let mut b = TableBuilder::new();
    for (p, k) in [("foo", Prefix), ("/a/../b", Exact), ("/a b", Impl), ("/a//b", Prefix)] {
        let r = b.add(RouteRule {
            host: HostMatch::Any,
            path: p.into(),
            kind: k,
            route: route("x"),
        });
        assert!(matches!(r, Err(RuleError::Path(_))), "{p}: {r:?}");
    }
}

/// Hosts that are not DNS names are refused; wildcards only as the whole first label.
#[test]
fn invalid_hosts_refused() {
    for h in [
        "foo.*.com",
        "*",
        "a..b",
        "-a.com",
        "10.0.0.1",
        "a_b.com",
        "*.",
        "bad host",
    ] {
        assert!(HostMatch::parse(h).is_err(), "{h}");
    }
    assert_eq!(HostMatch::parse("*.A.com"), Ok(HostMatch::Wildcard("a.com".into())));
}

/// A table of 100,000 hosts still finds the one host and path asked for, and nothing else.
#[test]
fn lookup_in_a_table_of_100k_hosts() {
    let mut b = TableBuilder::new();
    for i in 0..100_000 {
        b.add(RouteRule {
            host: HostMatch::parse(&format!("h{i}.example.com")).unwrap(),
            path: format!("/p{i}"),
            kind: Prefix,
            route: route("x"),
        })
        .unwrap();
    }
    let t = b.build(1);
    assert_eq!(hit(&t, "h99999.example.com", "/p99999/x").as_deref(), Some("x"));
    assert_eq!(hit(&t, "h99999.example.com", "/p1"), None);
}

fn header(name: &str, value: &str) -> HeaderCondition {
    HeaderCondition {
        name: http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value: ValueMatch::Exact(value.into()),
    }
}

fn with(
    conditions: MatchConditions,
    host: &str,
    path: &str,
    kind: PathKind,
    name: &str,
) -> (RouteRule, MatchConditions) {
    let rule = RouteRule {
        host: HostMatch::parse(host).unwrap(),
        path: path.into(),
        kind,
        route: route(name),
    };
    (rule, conditions)
}

fn request<'a>(
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a http::HeaderMap,
    method: &'a http::Method,
) -> RequestView<'a> {
    RequestView {
        method,
        path,
        query,
        headers,
    }
}

fn routed(t: &RoutingTable, req: &RequestView<'_>) -> Option<String> {
    t.route("a.com", req).map(|r| r.meta.ingress.clone())
}

/// A request that fails the header match of the longest path falls back to a shorter one.
#[test]
fn failed_condition_falls_back_to_shorter_path() {
    let mut b = TableBuilder::new();
    let canary = MatchConditions {
        headers: vec![header("x-canary", "yes")],
        ..Default::default()
    };
    let (r, c) = with(canary, "a.com", "/api", Prefix, "canary");
    b.add_with(r, c).unwrap();
    b.add(with(MatchConditions::default(), "a.com", "/", Prefix, "root").0)
        .unwrap();
    let t = b.build(1);
    let get = http::Method::GET;
    let mut h = http::HeaderMap::new();
    assert_eq!(routed(&t, &request("/api/x", None, &h, &get)).as_deref(), Some("root"));
    h.insert("X-Canary", "yes".parse().unwrap());
    assert_eq!(
        routed(&t, &request("/api/x", None, &h, &get)).as_deref(),
        Some("canary")
    );
    h.insert("x-canary", "no".parse().unwrap());
    assert_eq!(routed(&t, &request("/api/x", None, &h, &get)).as_deref(), Some("root"));
}

/// On one path, the candidate with more conditions is tried first, whatever the order added.
#[test]
fn more_specific_candidate_first() {
    let mut b = TableBuilder::new();
    b.add(with(MatchConditions::default(), "a.com", "/", Prefix, "plain").0)
        .unwrap();
    let one = MatchConditions {
        headers: vec![header("a", "1")],
        ..Default::default()
    };
    let two = MatchConditions {
        headers: vec![header("a", "1"), header("b", "2")],
        ..Default::default()
    };
    let (r, c) = with(one, "a.com", "/", Prefix, "one");
    b.add_with(r, c).unwrap();
    let (r, c) = with(two.clone(), "a.com", "/", Prefix, "two");
    b.add_with(r, c).unwrap();
    let (r, c) = with(two, "a.com", "/", Prefix, "dup");
    assert!(matches!(b.add_with(r, c), Err(RuleError::Duplicate { .. })));
    let t = b.build(1);
    let get = http::Method::GET;
    let mut h = http::HeaderMap::new();
    h.insert("a", "1".parse().unwrap());
    assert_eq!(routed(&t, &request("/", None, &h, &get)).as_deref(), Some("one"));
    h.insert("b", "2".parse().unwrap());
    assert_eq!(routed(&t, &request("/", None, &h, &get)).as_deref(), Some("two"));
    assert_eq!(
        routed(&t, &request("/", None, &http::HeaderMap::new(), &get)).as_deref(),
        Some("plain")
    );
}

/// Query parameters are percent-decoded and matched exactly or by a whole-value regex;
/// the method must be equal.
#[test]
fn query_and_method_conditions() {
    let mut b = TableBuilder::new();
    let cond = MatchConditions {
        method: Some(http::Method::POST),
        query: vec![
            QueryCondition {
                name: "user".into(),
                value: ValueMatch::Exact("a b".into()),
            },
            QueryCondition {
                name: "v".into(),
                value: ValueMatch::Regex(full_match_regex("[0-9]+").unwrap()),
            },
        ],
        ..Default::default()
    };
    let (r, c) = with(cond, "a.com", "/", Prefix, "q");
    b.add_with(r, c).unwrap();
    let t = b.build(1);
    let h = http::HeaderMap::new();
    let post = http::Method::POST;
    assert_eq!(
        routed(&t, &request("/", Some("user=a%20b&v=12"), &h, &post)).as_deref(),
        Some("q")
    );
    assert_eq!(routed(&t, &request("/", Some("user=a%20b&v=12x"), &h, &post)), None);
    assert_eq!(
        routed(&t, &request("/", Some("user=a%20b&v=12"), &h, &http::Method::GET)),
        None
    );
    assert_eq!(routed(&t, &request("/", Some("v=1"), &h, &post)), None);
}

/// A regex path matches the whole path, and ranks among the others by pattern length:
/// it beats a shorter Prefix and loses to a longer one.
#[test]
fn regex_paths_match_whole_path_ranked_by_length() {
    let mut b = TableBuilder::new();
    for (path, kind, name) in [
        ("/", Prefix, "root"),
        ("/api/v[0-9]+/.*", PathKind::RegularExpression, "re"),
        ("/api/v1/admin/users", Prefix, "admin"),
    ] {
        b.add(with(MatchConditions::default(), "a.com", path, kind, name).0)
            .unwrap();
    }
    let t = b.build(1);
    assert_eq!(hit(&t, "a.com", "/api/v2/x").as_deref(), Some("re"));
    assert_eq!(hit(&t, "a.com", "/api/vx/x").as_deref(), Some("root"));
    assert_eq!(hit(&t, "a.com", "/xx/api/v2/x").as_deref(), Some("root"));
    assert_eq!(hit(&t, "a.com", "/api/v1/admin/users/1").as_deref(), Some("admin"));
}

/// A regex that is too big, or not a regex, is refused as an invalid path.
#[test]
fn bad_regex_paths_refused() {
    let mut b = TableBuilder::new();
    for p in ["/a(", "/(a{1000}){1000}"] {
        let r = b.add(with(MatchConditions::default(), "a.com", p, PathKind::RegularExpression, "x").0);
        assert!(matches!(r, Err(RuleError::Path(_))), "{p}: {r:?}");
    }
}

fn rule(host: &str, path: &str, name: &str) -> RouteRule {
    RouteRule {
        host: HostMatch::parse(host).unwrap(),
        path: path.into(),
        kind: Prefix,
        route: route(name),
    }
}

/// A table with an Ingress rule and two Gateway listeners, each with its own rules for
/// the same host.
fn with_listeners() -> RoutingTable {
    let mut b = TableBuilder::new();
    b.add(rule("a.com", "/", "ingress")).unwrap();
    b.listener(20080, ListenerProtocol::Http)
        .add(rule("a.com", "/", "gw-http"))
        .unwrap();
    let https = b.listener(20443, ListenerProtocol::Https);
    https.add(rule("b.com", "/api", "gw-https")).unwrap();
    https.fallback(&HostMatch::Any, route("gw-any"));
    b.build(7)
}

/// Each listener routes by its own rules only, and the Ingress table never by a
/// listener's: the same host gets different routes by port, and a host only a listener
/// names is not served on the Ingress ports.
#[test]
fn listener_tables_are_isolated() {
    let t = with_listeners();
    assert_eq!(hit(&t, "a.com", "/").as_deref(), Some("ingress"));
    assert_eq!(hit(&t, "b.com", "/api"), None);
    let http = t.listener(20080).expect("listener 20080");
    assert_eq!(http.protocol, ListenerProtocol::Http);
    assert_eq!(hit(&http.table, "a.com", "/x").as_deref(), Some("gw-http"));
    assert_eq!(hit(&http.table, "b.com", "/api"), None);
    let https = t.listener(20443).expect("listener 20443");
    assert_eq!(https.protocol, ListenerProtocol::Https);
    assert_eq!(hit(&https.table, "b.com", "/api/v1").as_deref(), Some("gw-https"));
    // a.com has no rule on this port: the listener's catch-all, not the Ingress rule.
    assert_eq!(hit(&https.table, "a.com", "/").as_deref(), Some("gw-any"));
    assert!(t.listener(20081).is_none());
    assert!(t.listener(0).is_none());
}

/// Listeners come out sorted by port with the table's generation; a listener's table
/// has none of its own.
#[test]
fn listeners_sorted_with_generation() {
    let mut b = TableBuilder::new();
    for port in [30000, 20000, 25000, 1] {
        b.listener(port, ListenerProtocol::Http);
    }
    let t = b.build(3);
    let ports: Vec<u16> = t.listeners().map(|l| l.port).collect();
    assert_eq!(ports, [1, 20000, 25000, 30000]);
    for l in t.listeners() {
        assert_eq!(l.table.generation, 3);
        assert_eq!(l.table.listeners().count(), 0);
        assert_eq!(t.listener(l.port).map(|x| x.port), Some(l.port));
    }
}

/// The first call for a port fixes its protocol, and later calls add to the same
/// listener.
#[test]
fn first_listener_call_fixes_protocol() {
    let mut b = TableBuilder::new();
    b.listener(20000, ListenerProtocol::Https)
        .add(rule("a.com", "/one", "one"))
        .unwrap();
    b.listener(20000, ListenerProtocol::Http)
        .add(rule("a.com", "/two", "two"))
        .unwrap();
    let t = b.build(1);
    assert_eq!(t.listeners().count(), 1);
    let l = t.listener(20000).unwrap();
    assert_eq!(l.protocol, ListenerProtocol::Https);
    assert_eq!(hit(&l.table, "a.com", "/one").as_deref(), Some("one"));
    assert_eq!(hit(&l.table, "a.com", "/two").as_deref(), Some("two"));
}

/// A listener nested in a listener is not served anywhere.
#[test]
fn nested_listener_is_dropped() {
    let mut b = TableBuilder::new();
    b.listener(20000, ListenerProtocol::Http)
        .listener(20001, ListenerProtocol::Http)
        .add(rule("a.com", "/", "nested"))
        .unwrap();
    let t = b.build(1);
    assert!(t.listener(20001).is_none());
    assert_eq!(t.listener(20000).unwrap().table.listeners().count(), 0);
    assert_eq!(t.route_count(), 0);
}

/// Routes, backends and the route count cover the listeners' too: balancing, metrics
/// and health checks follow every route the proxy serves.
#[test]
fn routes_and_backends_include_listeners() {
    let t = with_listeners();
    let mut names: Vec<String> = t.routes().map(|r| r.meta.ingress.clone()).collect();
    names.sort();
    assert_eq!(names, ["gw-any", "gw-http", "gw-https", "ingress"]);
    let mut backends: Vec<String> = t.backends().iter().map(|b| b.name.clone()).collect();
    backends.sort();
    assert_eq!(backends, ["gw-any", "gw-http", "gw-https", "ingress"]);
    assert_eq!(t.route_count(), 3);
    // A listener's own table counts only its own.
    assert_eq!(t.listener(20443).unwrap().table.route_count(), 1);
}

/// Certificates are per listener: SNI on one port never finds another port's, and each
/// listener has its own default.
#[test]
fn listener_certificates_are_isolated() {
    let cert = || Arc::new(Certificate::generate_default().unwrap());
    let (ingress, gw, gw_default) = (cert(), cert(), cert());
    let mut b = TableBuilder::new();
    assert!(b.certificate(&HostMatch::parse("a.com").unwrap(), ingress.clone()));
    let l = b.listener(20443, ListenerProtocol::Https);
    assert!(l.certificate(&HostMatch::parse("*.b.com").unwrap(), gw.clone()));
    l.default_certificate(gw_default.clone());
    let t = b.build(1);
    let l = &t.listener(20443).unwrap().table;
    assert!(Arc::ptr_eq(t.certificate("a.com").unwrap(), &ingress));
    assert!(t.certificate("x.b.com").is_none());
    assert!(t.default_certificate().is_none());
    assert!(Arc::ptr_eq(l.certificate("x.b.com").unwrap(), &gw));
    assert!(l.certificate("a.com").is_none());
    assert!(Arc::ptr_eq(l.default_certificate().unwrap(), &gw_default));
    let mut hosts: Vec<String> = t.certificates().map(|(h, _)| h).collect();
    hosts.sort();
    assert_eq!(hosts, ["*.b.com", "a.com"]);
}

/// The Gateway API kinds name themselves as Kubernetes spells them, in metrics, logs
/// and explain's JSON.
#[test]
fn gateway_kinds_as_kubernetes_spells_them() {
    assert_eq!(ObjectKind::HttpRoute.as_str(), "HTTPRoute");
    assert_eq!(ObjectKind::GrpcRoute.to_string(), "GRPCRoute");
    assert_eq!(serde_json::to_string(&ObjectKind::HttpRoute).unwrap(), "\"HTTPRoute\"");
    assert_eq!(serde_json::to_string(&ObjectKind::GrpcRoute).unwrap(), "\"GRPCRoute\"");
    assert_eq!(serde_json::to_string(&ObjectKind::Ingress).unwrap(), "\"Ingress\"");
}

/// In a Gateway listener's table a wildcard covers any number of labels, and the
/// most specific one wins (Gateway API, Listener.hostname and HTTPRouteSpec.hostnames:
/// `*.example.com` matches `test.example.com` and `foo.test.example.com`), while an
/// Ingress wildcard keeps to one label.
#[test]
fn listener_wildcards_cover_any_number_of_labels() {
    let mut b = TableBuilder::new();
    b.add(rule("*.example.com", "/", "ingress")).unwrap();
    let l = b.listener(20080, ListenerProtocol::Http);
    l.add(rule("*.example.com", "/", "wide")).unwrap();
    l.add(rule("*.b.example.com", "/", "narrow")).unwrap();
    let t = b.build(1);
    assert_eq!(hit(&t, "a.b.example.com", "/"), None);
    let gw = &t.listener(20080).unwrap().table;
    assert_eq!(hit(gw, "a.example.com", "/").as_deref(), Some("wide"));
    assert_eq!(hit(gw, "x.y.example.com", "/").as_deref(), Some("wide"));
    assert_eq!(hit(gw, "a.b.example.com", "/").as_deref(), Some("narrow"));
    assert_eq!(hit(gw, "x.a.b.example.com", "/").as_deref(), Some("narrow"));
    assert_eq!(hit(gw, "example.com", "/"), None);
}

/// ingress-nginx's `server-alias`: the alias serves its host's rules, before any
/// wildcard; a name with rules of its own, or already an alias, cannot be one.
#[test]
fn an_alias_serves_its_hosts_rules() {
    let mut b = TableBuilder::new();
    for (host, name) in [("shop.example", "shop"), ("*.example", "wild"), ("own.example", "own")] {
        b.add(RouteRule {
            host: HostMatch::parse(host).unwrap(),
            path: "/".into(),
            kind: Prefix,
            route: route(name),
        })
        .unwrap();
    }
    b.alias("www.example", "shop.example").unwrap();
    assert!(b.alias("own.example", "shop.example").is_err());
    assert!(b.alias("WWW.example", "own.example").is_err());
    let t = b.build(1);
    assert_eq!(hit(&t, "www.example", "/a").as_deref(), Some("shop"));
    assert_eq!(hit(&t, "WWW.Example:8080", "/a").as_deref(), Some("shop"));
    assert_eq!(hit(&t, "own.example", "/a").as_deref(), Some("own"));
    assert_eq!(hit(&t, "other.example", "/a").as_deref(), Some("wild"));
}
