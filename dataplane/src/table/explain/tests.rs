//! `explain`: the winner and every loser with its reason, one test per rule.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::*;
use crate::table::{
    Backend, Endpoint, HeaderCondition, ListenerProtocol, RouteAction, RoutePolicy, RouteRule, TableBuilder,
    UpstreamProtocol, ValueMatch,
};

use PathKind::{Exact, ImplementationSpecific as Impl, Prefix, RegularExpression as Regex};

/// A rule of object `name` (an Ingress or a Route), rule 0, path `index`.
fn rule(kind: ObjectKind, host: &str, path: &str, path_type: PathKind, name: &str, index: u32) -> RouteRule {
    let backend = Backend::new(
        format!("default/{name}:80"),
        UpstreamProtocol::Http1,
        vec![Endpoint {
            addr: "198.18.0.1:8080".parse().unwrap(),
        }],
    );
    RouteRule {
        host: HostMatch::parse(host).unwrap(),
        path: path.into(),
        kind: path_type,
        route: Arc::new(Route::new(
            RouteMeta {
                kind,
                namespace: "default".into(),
                ingress: name.into(),
                service: name.into(),
                host: host.into(),
                path: path.into(),
                rule: Some(0),
                path_index: Some(index),
            },
            Arc::new(backend),
            RoutePolicy::default(),
            (kind == ObjectKind::Route).then(|| Arc::new(RouteAction::default())),
        )),
    }
}

fn ingress(host: &str, path: &str, path_type: PathKind, name: &str, index: u32) -> RouteRule {
    rule(ObjectKind::Ingress, host, path, path_type, name, index)
}

fn header(name: &str, value: &str) -> HeaderCondition {
    HeaderCondition {
        name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value: ValueMatch::Exact(value.into()),
    }
}

fn get(path: &str) -> Explanation {
    ingress_table().explain("a.com", &RequestView::path_only(path))
}

/// `a.com`: `/` and `/api` Prefix, `/api/v1` Exact, `/apix` ImplementationSpecific, `/api`
/// Exact, all from Ingress `web` (path indexes 0..4).
fn ingress_table() -> RoutingTable {
    let mut b = TableBuilder::new();
    b.add(ingress("a.com", "/", Prefix, "root", 0)).unwrap();
    b.add(ingress("a.com", "/api", Prefix, "api", 1)).unwrap();
    b.add(ingress("a.com", "/api/v1", Exact, "v1", 2)).unwrap();
    b.add(ingress("a.com", "/apix", Impl, "apix", 3)).unwrap();
    b.add(ingress("a.com", "/api", Exact, "api-exact", 4)).unwrap();
    b.build(7)
}

fn reasons(e: &Explanation) -> Vec<(String, Reason)> {
    e.not_chosen
        .iter()
        .map(|n| (format!("{} {}", n.rule.name, n.rule.path), n.reason))
        .collect()
}

/// The longest matching path serves the request; each other path of the host is named
/// with why it lost: shorter, or a path that does not match under its type's rules.
#[test]
fn ingress_winner_and_losers_with_reasons() {
    let e = get("/api/v2");
    assert_eq!(e.result, Outcome::Rule);
    assert_eq!(e.host_block.kind, BlockKind::Exact);
    let served = e.served_by.as_ref().unwrap();
    assert_eq!((served.name.as_str(), served.path_type), ("api", Some(Prefix)));
    assert_eq!((served.rule, served.path_index), (Some(0), Some(1)));
    assert_eq!(
        reasons(&e),
        [
            ("root /".to_string(), Reason::ShorterPath),
            ("api-exact /api".to_string(), Reason::PathDoesNotMatch),
            ("v1 /api/v1".to_string(), Reason::PathDoesNotMatch),
            ("apix /apix".to_string(), Reason::PathDoesNotMatch),
        ]
    );
    assert_eq!(e.backends[0].endpoints, ["198.18.0.1:8080"]);
    assert_eq!(e.backends[0].name, "default/api:80");
    let apix = &e.not_chosen[3].detail;
    assert!(apix.contains("plain string prefix"), "{apix}");
}

/// At equal length Exact beats Prefix, and the Prefix is told so; an
/// ImplementationSpecific prefix that matches by string is shorter.
#[test]
fn same_length_lower_path_type_precedence() {
    let e = get("/api");
    assert_eq!(e.served_by.as_ref().unwrap().name, "api-exact");
    assert_eq!(
        reasons(&e),
        [
            ("api /api".to_string(), Reason::LowerPathTypePrecedence),
            ("root /".to_string(), Reason::ShorterPath),
            ("v1 /api/v1".to_string(), Reason::PathDoesNotMatch),
            ("apix /apix".to_string(), Reason::PathDoesNotMatch),
        ]
    );
    let e = get("/apix/y");
    assert_eq!(e.served_by.as_ref().unwrap().name, "apix");
    // Prefix /api does not match /apix/y (element-wise), ImplementationSpecific does.
    let api = e.not_chosen.iter().find(|n| n.rule.name == "api").unwrap();
    assert_eq!(api.reason, Reason::PathDoesNotMatch);
    assert!(api.detail.contains("element by element"), "{}", api.detail);
}

/// A host's defaultBackend serves what no path matches; when a path matches, it is
/// listed as not needed. The catch-all block is never consulted for a named host.
#[test]
fn default_backend_and_blocks_not_consulted() {
    let mut b = TableBuilder::new();
    b.add(ingress("a.com", "/api", Prefix, "api", 0)).unwrap();
    b.add(ingress("", "/", Prefix, "catch-all", 0)).unwrap();
    let fallback = ingress("a.com", "", Prefix, "fallback", 0).route;
    assert!(b.fallback(&HostMatch::parse("a.com").unwrap(), fallback));
    let t = b.build(1);

    let e = t.explain("A.com:8080", &RequestView::path_only("/other"));
    assert_eq!(e.result, Outcome::DefaultBackend);
    assert_eq!(e.served_by.as_ref().unwrap().name, "fallback");
    assert_eq!(e.host_block.name, "a.com");
    assert_eq!(e.host_block.not_consulted, ["catch-all (rules without a host)"]);
    assert_eq!(reasons(&e), [("api /api".to_string(), Reason::PathDoesNotMatch)]);

    let e = t.explain("a.com", &RequestView::path_only("/api/x"));
    assert_eq!(e.result, Outcome::Rule);
    assert_eq!(e.not_chosen.last().unwrap().reason, Reason::DefaultBackendNotNeeded);

    let e = t.explain("b.com", &RequestView::path_only("/x"));
    assert_eq!(e.host_block.kind, BlockKind::CatchAll);
    assert_eq!(e.served_by.as_ref().unwrap().name, "catch-all");
}

/// Nothing matches: 404, and every rule of the host still says why.
#[test]
fn no_route_is_404_with_reasons() {
    let mut b = TableBuilder::new();
    b.add(ingress("a.com", "/api", Prefix, "api", 0)).unwrap();
    b.add(ingress("", "/", Prefix, "catch-all", 0)).unwrap();
    let t = b.build(1);
    let e = t.explain("a.com", &RequestView::path_only("/"));
    assert_eq!((e.result, e.status), (Outcome::NoRoute, Some(404)));
    assert!(e.served_by.is_none() && e.backends.is_empty() && e.filters.is_empty());
    assert_eq!(reasons(&e), [("api /api".to_string(), Reason::PathDoesNotMatch)]);
    let text = e.to_string();
    assert!(text.contains("served by: nothing: 404"), "{text}");
    assert!(text.contains("not consulted for this host: catch-all"), "{text}");
}

/// `a.com` from Routes: `/api` for POST (`post`), with header `x-canary: always`
/// (`canary`), plain (`stable`), and RegularExpression `/api/[0-9]+` (`numbers`).
fn route_table() -> RoutingTable {
    let mut b = TableBuilder::new();
    let route = |path, kind, name, index| rule(ObjectKind::Route, "a.com", path, kind, name, index);
    let post = MatchConditions {
        method: Some(Method::POST),
        ..Default::default()
    };
    let canary = MatchConditions {
        headers: vec![header("x-canary", "always")],
        ..Default::default()
    };
    b.add_with(route("/api", Prefix, "stable", 0), MatchConditions::default())
        .unwrap();
    b.add_with(route("/api", Prefix, "canary", 1), canary).unwrap();
    b.add_with(route("/api", Prefix, "post", 2), post).unwrap();
    b.add_with(route("/api/[0-9]+", Regex, "numbers", 3), MatchConditions::default())
        .unwrap();
    b.build(1)
}

fn request<'a>(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        method,
        path,
        query: None,
        headers,
    }
}

/// Candidates of one path are tried most specific first: the ones whose method or
/// header the request lacks say which, the ones after the winner say so.
#[test]
fn route_conditions_not_met_and_tried_after() {
    let t = route_table();
    let none = HeaderMap::new();
    let e = t.explain("a.com", &request(&Method::GET, "/api/x", &none));
    assert_eq!(e.served_by.as_ref().unwrap().name, "stable");
    assert_eq!(
        reasons(&e),
        [
            ("post /api".to_string(), Reason::ConditionsNotMet),
            ("canary /api".to_string(), Reason::ConditionsNotMet),
            ("numbers /api/[0-9]+".to_string(), Reason::PathDoesNotMatch),
        ]
    );
    assert_eq!(e.not_chosen[0].unmet, ["method is GET, the rule needs POST"]);
    assert_eq!(
        e.not_chosen[1].unmet,
        ["header x-canary is missing, the rule needs x-canary = \"always\""]
    );
    assert_eq!(e.not_chosen[1].rule.conditions, ["header x-canary = \"always\""]);

    let mut canary = HeaderMap::new();
    canary.insert("x-canary", HeaderValue::from_static("always"));
    let e = t.explain("a.com", &request(&Method::GET, "/api/x", &canary));
    assert_eq!(e.served_by.as_ref().unwrap().name, "canary");
    assert_eq!(
        reasons(&e)[..2],
        [
            ("post /api".to_string(), Reason::ConditionsNotMet),
            ("stable /api".to_string(), Reason::TriedAfterWinner),
        ]
    );

    canary.insert("x-canary", HeaderValue::from_static("never"));
    let e = t.explain("a.com", &request(&Method::GET, "/api/x", &canary));
    assert_eq!(e.not_chosen[1].unmet, ["header x-canary: no value = \"always\""]);
}

/// A RegularExpression is ranked by its pattern's length: `/api/[0-9]+` (11) beats the
/// `/api` Prefix (4), whose candidates are then shorter, whatever their conditions.
#[test]
fn route_regular_expression_wins_by_length() {
    let t = route_table();
    let none = HeaderMap::new();
    let e = t.explain("a.com", &request(&Method::POST, "/api/42", &none));
    let served = e.served_by.as_ref().unwrap();
    assert_eq!((served.name.as_str(), served.path_type), ("numbers", Some(Regex)));
    assert_eq!(served.kind, ObjectKind::Route);
    assert!(reasons(&e)[..3].iter().all(|(_, r)| *r == Reason::ShorterPath));
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["served_by"]["kind"], "Route");
    assert_eq!(json["served_by"]["path_type"], "RegularExpression");
    assert_eq!(json["not_chosen"][0]["reason"], "shorter-path");
    assert_eq!(json["result"], "rule");
}

/// Regular expressions of equal length that both match: the first added (the older
/// object) serves, on the lookup's fast path and when conditions send it to the slow
/// one, and explain says the other was added later.
#[test]
fn equal_regular_expressions_first_added_wins() {
    let mut b = TableBuilder::new();
    let route = |path, name, index| rule(ObjectKind::Route, "a.com", path, Regex, name, index);
    let post = MatchConditions {
        method: Some(Method::POST),
        ..Default::default()
    };
    b.add_with(route("/a/[0-9]", "older", 0), MatchConditions::default())
        .unwrap();
    b.add_with(route("/a/[1-9]", "younger", 1), MatchConditions::default())
        .unwrap();
    b.add_with(route("/a/[0-9]+", "long-post", 2), post).unwrap();
    let t = b.build(1);
    // Without conditions in the way: the fast path.
    let mut two = TableBuilder::new();
    two.add(route("/a/[0-9]", "older", 0)).unwrap();
    two.add(route("/a/[1-9]", "younger", 1)).unwrap();
    assert_eq!(two.build(1).lookup("a.com", "/a/5").unwrap().meta.ingress, "older");
    assert_eq!(t.lookup("a.com", "/a/5").unwrap().meta.ingress, "older");
    let e = t.explain("a.com", &RequestView::path_only("/a/5"));
    assert_eq!(e.served_by.as_ref().unwrap().name, "older");
    assert_eq!(
        reasons(&e),
        [
            ("long-post /a/[0-9]+".to_string(), Reason::ConditionsNotMet),
            ("younger /a/[1-9]".to_string(), Reason::SameRankAddedLater),
        ]
    );
}

/// A rule refused when the table was built (same host, path, type and conditions as an
/// older one) is listed with the rule that keeps the place.
#[test]
fn refused_duplicate_names_the_owner() {
    let mut b = TableBuilder::new();
    b.add(ingress("a.com", "/api", Prefix, "first", 0)).unwrap();
    assert!(b.add(ingress("a.com", "/api/", Prefix, "second", 0)).is_err());
    assert!(b.add(ingress("b.com", "/api", Prefix, "elsewhere", 0)).is_ok());
    let t = b.build(1);
    let e = t.explain("a.com", &RequestView::path_only("/api/x"));
    assert_eq!(e.served_by.as_ref().unwrap().name, "first");
    assert_eq!(reasons(&e), [("second /api/".to_string(), Reason::RefusedDuplicate)]);
    let refused = &e.not_chosen[0];
    assert_eq!(refused.kept_by.as_ref().unwrap().name, "first");
    assert!(refused.detail.contains("Ingress default/first"), "{}", refused.detail);
    assert!(refused.detail.contains("its path matches"), "{}", refused.detail);
    let text = e.to_string();
    assert!(text.contains("refused-duplicate"), "{text}");
}

/// Explain names as serving exactly the route the lookup returns, for every path of a
/// mixed table and a set of requests around them.
#[test]
fn explain_agrees_with_route() {
    let tables = [ingress_table(), route_table()];
    let mut canary = HeaderMap::new();
    canary.insert("x-canary", HeaderValue::from_static("always"));
    let none = HeaderMap::new();
    for t in &tables {
        for path in [
            "/", "/a", "/api", "/api/", "/api/1", "/api/v1", "/api/v1/", "/apix", "/apixy", "/x",
        ] {
            for method in [Method::GET, Method::POST] {
                for headers in [&none, &canary] {
                    let req = request(&method, path, headers);
                    let routed = t.route("a.com", &req).map(|r| r.meta.ingress.clone());
                    let explained = t.explain("a.com", &req).served_by.map(|r| r.name);
                    assert_eq!(explained, routed, "{method} {path}");
                }
            }
        }
    }
}

/// Every filter in the route's chain (what the proxy runs) is listed, and nothing
/// the chain lacks: ssl-redirect, body limit, header changes, rewrite and HSTS here.
#[test]
fn filters_listed_are_the_routes_chain() {
    use crate::table::{HeaderModifier, PathModifier, UrlRewrite};
    let action = RouteAction {
        request_headers: HeaderModifier {
            set: vec![(HeaderName::from_static("x-a"), HeaderValue::from_static("1"))],
            ..Default::default()
        },
        response_headers: HeaderModifier {
            remove: vec![HeaderName::from_static("server")],
            ..Default::default()
        },
        rewrite: Some(UrlRewrite {
            hostname: None,
            path: Some(PathModifier::ReplacePrefixMatch {
                prefix: "/old".into(),
                with: "/new".into(),
            }),
        }),
        ..Default::default()
    };
    let policy = RoutePolicy {
        max_body_size: Some(10),
        ssl_redirect: true,
        hsts: Some(crate::filter::DEFAULT_HSTS.clone()),
        ..Default::default()
    };
    let mut r = rule(ObjectKind::Route, "a.com", "/old", Prefix, "r", 0);
    r.route = Arc::new(Route::new(
        r.route.meta.clone(),
        r.route.backend.clone(),
        policy,
        Some(Arc::new(action)),
    ));
    let chain = r.route.filters.iter().count();
    let mut b = TableBuilder::new();
    b.add(r).unwrap();
    let e = b.build(1).explain("a.com", &RequestView::path_only("/old/x"));
    let names: Vec<&str> = e.filters.iter().map(|f| f.filter).collect();
    assert_eq!(
        names,
        [
            "ssl-redirect",
            "body-limit",
            "request-headers",
            "rewrite",
            "balance",
            "response-headers",
            "hsts"
        ]
    );
    // `balance` is how the backend is chosen, not a filter of the chain.
    assert_eq!(chain, names.len() - 1);
    let rewrite = &e.filters[3].detail;
    assert_eq!(rewrite, "the path /old/x becomes /new/x");
}

/// `port` explains against that Gateway listener's table only, as the proxy routes a
/// connection accepted on it; a port with no listener is an error naming the ports.
#[test]
fn port_explains_the_listener_table() {
    let mut b = TableBuilder::new();
    b.add(rule(ObjectKind::Ingress, "a.com", "/", Prefix, "ing", 0))
        .unwrap();
    b.listener(20080, ListenerProtocol::Http)
        .add(rule(ObjectKind::HttpRoute, "a.com", "/api", Prefix, "web", 0))
        .unwrap();
    let t = b.build(4);
    let mut req = ExplainRequest::from_query("host=a.com&path=/api/x").unwrap();
    assert_eq!(req.port, None);
    let e = t.explain_request(&req).unwrap();
    assert_eq!(e.served_by.unwrap().name, "ing");
    assert_eq!(e.listener, None);

    req = ExplainRequest::from_query("host=a.com&path=/api/x&port=20080").unwrap();
    let e = t.explain_request(&req).unwrap();
    assert_eq!(e.listener, Some(20080));
    let served = e.served_by.as_ref().unwrap();
    assert_eq!((served.kind, served.name.as_str()), (ObjectKind::HttpRoute, "web"));
    let text = e.to_string();
    assert!(text.contains("listener: Gateway listener port 20080"), "{text}");
    assert!(text.contains("HTTPRoute default/web rules[0] match 0"), "{text}");
    assert_eq!(serde_json::to_value(&e).unwrap()["served_by"]["kind"], "HTTPRoute");

    // The Ingress rule is not on the listener port: 404 there.
    req = ExplainRequest::from_query("host=a.com&path=/other&port=20080").unwrap();
    assert_eq!(t.explain_request(&req).unwrap().status, Some(404));

    req.port = Some(8080);
    let err = t.explain_request(&req).unwrap_err();
    assert!(err.contains("no Gateway listener on port 8080 (it has 20080)"), "{err}");
    for bad in ["0x", "70000", "-1"] {
        let err = ExplainRequest::from_query(&format!("host=a.com&port={bad}")).unwrap_err();
        assert!(err.contains("invalid port"), "{err}");
    }
}

/// A split whose backends have request header changes of their own (Gateway API
/// `backendRefs[].filters`) names them with the backend they apply to.
#[test]
fn split_names_each_backends_request_header_changes() {
    let backend = |name: &str| Arc::new(Backend::new(name, UpstreamProtocol::Http1, Vec::new()));
    let set = crate::table::HeaderModifier {
        set: vec![(HeaderName::from_static("backend"), HeaderValue::from_static("a"))],
        ..Default::default()
    };
    let split = crate::table::WeightedBackends::new(vec![(backend("default/a:80"), 1), (backend("default/b:80"), 1)])
        .unwrap()
        .with_request_headers(vec![set, Default::default()]);
    let action = RouteAction {
        backends: Some(Arc::new(split)),
        ..RouteAction::default()
    };
    let mut r = rule(ObjectKind::Route, "a.com", "/", Prefix, "web", 0);
    r.route = Arc::new(Route::new(
        r.route.meta.clone(),
        backend("default/a:80"),
        RoutePolicy::default(),
        Some(Arc::new(action)),
    ));
    let split = filters(&r.route, "a.com", &RequestView::path_only("/"))
        .into_iter()
        .find(|f| f.filter == "split")
        .unwrap();
    assert_eq!(
        split.detail,
        "weighted split over 2: default/a:80 weight 1 (50%; its requests: set backend: a), default/b:80 weight 1 (50%)"
    );
}
