//! Gateway API: listeners, attachment, hostnames, backendRefs, status. Objects are
//! read from YAML as file mode reads them (direct mode: listener port = internal port).

use portico_dataplane::table::{HostMatch, ObjectKind, RoutingTable};

use crate::compile::gateway::intersect;
use crate::compile::{CompileOptions, GatewayServiceOptions, compile, gateway_ports, gateway_status};
use crate::gateway_api::Condition;
use crate::snapshot::Snapshot;

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web2, namespace: default}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: far, namespace: backends}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
"#;

fn snapshot(extra: &str) -> Snapshot {
    crate::file::parse(&format!("{BASE}\n---\n{extra}")).unwrap()
}

fn gateway(listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: default, generation: 3}}\nspec:\n  gatewayClassName: portico\n  listeners:\n{listeners}"
    )
}

fn route(name: &str, body: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default, generation: 2}}\nspec:\n{body}"
    )
}

fn served(table: &RoutingTable, port: u16, host: &str, path: &str) -> Option<String> {
    let route = table.listener(port)?.table.lookup(host, path)?;
    Some(format!(
        "{}/{} {}",
        route.meta.kind, route.meta.ingress, route.backend.name
    ))
}

/// A Gateway with `listeners` and one HTTPRoute `r` with `body`.
fn with_route(listeners: &str, body: &str) -> Snapshot {
    snapshot(&format!("{}\n---\n{}", gateway(listeners), route("r", body)))
}

/// Each listener's `attachedRoutes`, in order.
fn attached_routes(s: &Snapshot) -> Vec<i32> {
    let status = gateway_status(s, &CompileOptions::default());
    status.gateways[0]
        .2
        .listeners
        .iter()
        .map(|l| l.attached_routes)
        .collect()
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> (&'a str, &'a str) {
    let c = conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.as_str(), c.reason.as_str())
}

const WEB: &str = "  - {name: web, port: 8080, protocol: HTTP}\n";

/// An HTTPRoute is served on its Gateway's listener port only, never on the Ingress
/// ports (gateway-design: isolation by port), and names its kind and rule.
#[test]
fn http_route_is_served_on_its_listener_only() {
    let s = snapshot(&format!(
        "{}\n---\n{}",
        gateway(WEB),
        route(
            "r",
            "  parentRefs: [{name: gw}]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]"
        )
    ));
    let (table, _) = compile(&s, &CompileOptions::default());
    assert_eq!(
        served(&table, 8080, "any.example", "/x").as_deref(),
        Some("HTTPRoute/r default/web:8080")
    );
    assert!(table.lookup("any.example", "/x").is_none());
    let route = table.listener(8080).unwrap().table.lookup("a", "/").unwrap().clone();
    assert_eq!((route.meta.kind, route.meta.rule), (ObjectKind::HttpRoute, Some(0)));
}

/// Hostname intersection (HTTPRouteSpec.hostnames; conformance
/// HTTPRouteHostnameIntersection): exact names match exactly, a listener wildcard
/// takes route names of any depth under it, and a route wildcard narrows to the
/// listener's name.
#[test]
fn hostname_intersection() {
    let h = |s: &str| HostMatch::parse(s).unwrap();
    let cases: &[(Option<&str>, &[&str], &[&str])] = &[
        (None, &[], &[""]),
        (Some("very.specific.com"), &[], &["very.specific.com"]),
        (
            Some("very.specific.com"),
            &["non.matching.com", "very.specific.com"],
            &["very.specific.com"],
        ),
        (
            Some("*.wildcard.io"),
            &["wildcard.io", "foo.wildcard.io", "foo.bar.wildcard.io"],
            &["foo.wildcard.io", "foo.bar.wildcard.io"],
        ),
        (Some("very.specific.com"), &["*.specific.com"], &["very.specific.com"]),
        (
            Some("*.anotherwildcard.io"),
            &["*.anotherwildcard.io"],
            &["*.anotherwildcard.io"],
        ),
        (Some("*.foo.com"), &["*.bar.foo.com"], &["*.bar.foo.com"]),
        (Some("*.bar.foo.com"), &["*.foo.com"], &["*.bar.foo.com"]),
        (
            Some("very.specific.com"),
            &["specific.but.wrong.com", "wildcard.io"],
            &[],
        ),
    ];
    for (listener, route, want) in cases {
        let listener = listener.map(h);
        let hostnames: Vec<String> = route.iter().map(|s| s.to_string()).collect();
        let got: Vec<String> = intersect(listener.as_ref(), &hostnames)
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        assert_eq!(got, *want, "listener {listener:?}, route {route:?}");
    }
}

/// Route Accepted reasons (RouteConditionReason): a sectionName no listener has is
/// NoMatchingParent, a namespace the listener does not allow NotAllowedByListeners, no
/// common hostname NoMatchingListenerHostname; a Gateway of another class gets no
/// status from Portico.
#[test]
fn route_accepted_reasons() {
    let listeners = "  - {name: web, port: 8080, protocol: HTTP, hostname: a.example}\n  - {name: sel, port: 8081, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}}\n";
    let other = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: og, namespace: default}\nspec: {gatewayClassName: other, listeners: [{name: web, port: 80, protocol: HTTP}]}";
    let cases = [
        ("  parentRefs: [{name: gw, sectionName: nope}]", "NoMatchingParent"),
        ("  parentRefs: [{name: gw, port: 9999}]", "NoMatchingParent"),
        ("  parentRefs: [{name: gw, sectionName: sel}]", "NotAllowedByListeners"),
        (
            "  parentRefs: [{name: gw, sectionName: web}]\n  hostnames: [b.example]",
            "NoMatchingListenerHostname",
        ),
        (
            "  parentRefs: [{name: gw, sectionName: web}]\n  hostnames: [a.example]",
            "Accepted",
        ),
    ];
    for (body, want) in cases {
        let s = snapshot(&format!(
            "{}\n---\n{other}\n---\n{}",
            gateway(listeners),
            route(
                "r",
                &format!("{body}\n  rules: [{{backendRefs: [{{name: web, port: 8080}}]}}]")
            )
        ));
        let status = gateway_status(&s, &CompileOptions::default());
        let (_, _, r) = &status.http_routes[0];
        assert_eq!(condition(&r.parents[0].conditions, "Accepted").1, want, "{body}");
        assert_eq!(r.parents[0].controller_name, "portico.dev/gateway-controller");
        assert_eq!(r.parents[0].conditions[0].observed_generation, Some(2));
        assert_eq!(status.gateways.len(), 1, "the other class's Gateway is not Portico's");
    }
}

/// backendRefs (HTTPBackendRef; conformance HTTPRouteInvalidNonexistentBackendRef,
/// HTTPRouteInvalidCrossNamespaceBackendRef, HTTPRouteInvalidBackendRefUnknownKind,
/// HTTPRouteReferenceGrant): ResolvedRefs names why a backend does not resolve.
#[test]
fn backend_ref_resolution() {
    let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: backends}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]\n  to: [{group: \"\", kind: Service}]";
    let cases = [
        ("{name: web, port: 8080}", "", ("True", "ResolvedRefs")),
        ("{name: missing, port: 8080}", "", ("False", "BackendNotFound")),
        (
            "{name: far, namespace: backends, port: 8080}",
            "",
            ("False", "RefNotPermitted"),
        ),
        (
            "{name: far, namespace: backends, port: 8080}",
            grant,
            ("True", "ResolvedRefs"),
        ),
        (
            "{group: example.com, kind: Bucket, name: web, port: 8080}",
            "",
            ("False", "InvalidKind"),
        ),
    ];
    for (backend, extra, want) in cases {
        let s = snapshot(&format!(
            "{}\n---\n{}\n---\n{extra}",
            gateway(WEB),
            route(
                "r",
                &format!("  parentRefs: [{{name: gw}}]\n  rules: [{{backendRefs: [{backend}]}}]")
            )
        ));
        let status = gateway_status(&s, &CompileOptions::default());
        let r = &status.http_routes[0].2;
        assert_eq!(condition(&r.parents[0].conditions, "ResolvedRefs"), want, "{backend}");
        assert_eq!(condition(&r.parents[0].conditions, "Accepted").0, "True");
    }
}

/// Listener conditions (ListenerConditionReason; conformance
/// GatewayInvalidListenersUnsupportedProtocol, GatewayInvalidRouteKind,
/// GatewayInvalidTLSConfiguration).
#[test]
fn listener_conditions() {
    let listeners = "  - {name: web, port: 8080, protocol: HTTP}\n  - {name: udp, port: 53, protocol: UDP}\n  - {name: kinds, port: 8082, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}\n  - {name: tls, port: 8443, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}}\n  - {name: dup, port: 8080, protocol: HTTP}\n";
    let s = snapshot(&gateway(listeners));
    let status = gateway_status(&s, &CompileOptions::default());
    let (_, _, gw) = &status.gateways[0];
    assert_eq!(condition(&gw.conditions, "Accepted"), ("True", "ListenersNotValid"));
    assert_eq!(condition(&gw.conditions, "Programmed"), ("False", "AddressNotAssigned"));
    let l = |name: &str| gw.listeners.iter().find(|l| l.name == name).unwrap();
    assert_eq!(condition(&l("web").conditions, "Accepted"), ("True", "Accepted"));
    assert_eq!(
        condition(&l("udp").conditions, "Accepted"),
        ("False", "UnsupportedProtocol")
    );
    assert!(l("udp").supported_kinds.is_empty());
    assert_eq!(
        condition(&l("kinds").conditions, "ResolvedRefs"),
        ("False", "InvalidRouteKinds")
    );
    assert!(l("kinds").supported_kinds.is_empty());
    assert_eq!(
        condition(&l("tls").conditions, "ResolvedRefs"),
        ("False", "InvalidCertificateRef")
    );
    assert_eq!(
        condition(&l("dup").conditions, "Conflicted"),
        ("True", "HostnameConflict")
    );
    assert_eq!(gw.conditions[0].observed_generation, Some(3));
}

/// Status is stable: a condition whose status did not change keeps its
/// lastTransitionTime (metav1.Condition), and the clock is an input.
#[test]
fn unchanged_conditions_keep_their_transition_time() {
    let s = snapshot(&gateway(WEB));
    let opts = CompileOptions {
        gateway_addresses: vec!["198.18.0.1".into()],
        now: 1000,
        ..CompileOptions::default()
    };
    let first = gateway_status(&s, &opts);
    let mut s2 = s.clone();
    s2.gateways[0].status = Some(first.gateways[0].2.clone());
    let class = s2
        .gateway_classes
        .iter_mut()
        .find(|c| c.metadata.name.as_deref() == Some("portico"));
    class.unwrap().status = Some(first.classes[0].1.clone());
    let later = gateway_status(
        &s2,
        &CompileOptions {
            now: 5000,
            ..opts.clone()
        },
    );
    assert_eq!(first, later);
    assert_eq!(later.gateways[0].2.addresses[0].value, "198.18.0.1");
    assert_eq!(
        condition(&later.gateways[0].2.conditions, "Programmed"),
        ("True", "Programmed")
    );
}

/// Match precedence across routes (HTTPRouteRule: "the oldest Route based on creation
/// timestamp", conformance HTTPRouteMatchingAcrossRoutes): for the same match the
/// older route keeps it; an Exact path beats a Prefix of the same path.
#[test]
fn older_route_keeps_an_equal_match_and_exact_beats_prefix() {
    let a = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: young, namespace: default, creationTimestamp: \"2026-01-02T00:00:00Z\"}\nspec:\n  parentRefs: [{name: gw}]\n  rules: [{matches: [{path: {type: PathPrefix, value: /a}}], backendRefs: [{name: web2, port: 8080}]}, {matches: [{path: {type: Exact, value: /a/b}}], backendRefs: [{name: web2, port: 8080}]}]";
    let b = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: old, namespace: default, creationTimestamp: \"2026-01-01T00:00:00Z\"}\nspec:\n  parentRefs: [{name: gw}]\n  rules: [{matches: [{path: {type: PathPrefix, value: /a}}, {path: {type: PathPrefix, value: /a/b}}], backendRefs: [{name: web, port: 8080}]}]";
    let s = snapshot(&format!("{}\n---\n{a}\n---\n{b}", gateway(WEB)));
    let (table, _) = compile(&s, &CompileOptions::default());
    assert_eq!(
        served(&table, 8080, "h", "/a/x").as_deref(),
        Some("HTTPRoute/old default/web:8080")
    );
    assert_eq!(
        served(&table, 8080, "h", "/a/b").as_deref(),
        Some("HTTPRoute/young default/web2:8080")
    );
    assert_eq!(
        served(&table, 8080, "h", "/a/b/c").as_deref(),
        Some("HTTPRoute/old default/web:8080")
    );
}

/// Service mode (gateway-design): internal ports are stable per Gateway and inside the
/// range; direct mode serves the listener port itself.
#[test]
fn internal_ports_by_mode() {
    let s = snapshot(&gateway(
        "  - {name: a, port: 80, protocol: HTTP}\n  - {name: b, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: x}]}}\n",
    ));
    let direct = gateway_ports(&s, &CompileOptions::default());
    assert_eq!(direct[0].ports, vec![(80, 80), (443, 443)]);
    let opts = CompileOptions {
        gateway_service: Some(GatewayServiceOptions {
            namespace: "portico".into(),
            service_type: crate::compile::GatewayServiceType::ClusterIP,
        }),
        ..CompileOptions::default()
    };
    let ports = gateway_ports(&s, &opts);
    assert_eq!(ports, gateway_ports(&s, &opts));
    assert!(ports[0].ports.iter().all(|(_, i)| (20000..=29999).contains(i)));
    assert_ne!(ports[0].ports[0].1, ports[0].ports[1].1);
}

/// A backendRef that does not resolve stays in the table as a backend answering 500
/// (HTTPBackendRef: "requests that would have been sent to that backend MUST receive
/// a 500 status code"), not a 503 of a Service without endpoints.
#[test]
fn unresolved_backend_ref_is_served_as_500() {
    let s = snapshot(&format!(
        "{}\n---\n{}",
        gateway(WEB),
        route(
            "r",
            "  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{path: {value: /missing}}]\n    backendRefs: [{name: missing, port: 8080}]\n  - matches: [{path: {value: /none}}]\n  - backendRefs: [{name: web, port: 8080}]"
        )
    ));
    let (table, _) = compile(&s, &CompileOptions::default());
    let listener = &table.listener(8080).unwrap().table;
    assert!(listener.lookup("a.com", "/missing").unwrap().backend.is_invalid());
    // A rule without backendRefs forwards nowhere: 500 (conformance HTTPRouteNoBackendRefs).
    assert!(listener.lookup("a.com", "/none").unwrap().backend.is_invalid());
    assert!(!listener.lookup("a.com", "/").unwrap().backend.is_invalid());
}

/// A filter Portico does not implement (RequestMirror here) or a value it does not
/// know: the route is Accepted=False reason UnsupportedValue, and the rule answers 500
/// rather than be served without the filter (HTTPRouteFilter.type).
#[test]
fn unsupported_filter_is_not_accepted_and_answers_500() {
    let cases = [
        "{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 8080}}}",
        "{type: RequestRedirect, requestRedirect: {scheme: ftp}}",
        "{type: URLRewrite, urlRewrite: {path: {type: ReplaceSomething}}}",
    ];
    for filter in cases {
        let s = snapshot(&format!(
            "{}\n---\n{}",
            gateway(WEB),
            route(
                "r",
                &format!(
                    "  parentRefs: [{{name: gw}}]\n  rules:\n  - filters: [{filter}]\n    backendRefs: [{{name: web, port: 8080}}]"
                )
            )
        ));
        let status = gateway_status(&s, &CompileOptions::default());
        let r = &status.http_routes[0].2;
        assert_eq!(
            condition(&r.parents[0].conditions, "Accepted"),
            ("False", "UnsupportedValue"),
            "{filter}"
        );
        let (table, diagnostics) = compile(&s, &CompileOptions::default());
        let hit = table
            .listener(8080)
            .unwrap()
            .table
            .lookup("a.com", "/")
            .expect("the rule stays");
        assert!(hit.backend.is_invalid(), "{filter}");
        assert!(diagnostics.iter().any(|d| d.reason == "UnsupportedFilter"), "{filter}");
    }
}

/// A Gateway none of whose listeners Portico serves gets no Service (the API server
/// refuses a Service without ports); its address stays unassigned (conformance
/// GatewayListenerUnsupportedProtocol's `gateway-only-unsupported-protocols`).
#[test]
fn gateway_without_a_served_listener_gets_no_service() {
    let only_udp = gateway("  - {name: udp, port: 53, protocol: UDP}\n");
    let s = snapshot(&only_udp);
    let opts = CompileOptions {
        gateway_service: Some(GatewayServiceOptions {
            namespace: "portico".into(),
            service_type: crate::compile::GatewayServiceType::ClusterIP,
        }),
        ..CompileOptions::default()
    };
    assert!(gateway_ports(&s, &opts).is_empty());
    let s = snapshot(&gateway(WEB));
    assert_eq!(gateway_ports(&s, &opts).len(), 1);
}

/// The rule's one route on listener port 8080 for `host` and `path` with `method` and
/// `query`.
fn routed(
    table: &RoutingTable,
    method: &http::Method,
    path: &str,
    query: Option<&str>,
) -> Option<std::sync::Arc<portico_dataplane::table::Route>> {
    let headers = http::HeaderMap::new();
    let req = portico_dataplane::table::RequestView {
        method,
        path,
        query,
        headers: &headers,
    };
    table.listener(8080)?.table.route("a.example", &req).cloned()
}

fn one_rule(rule: &str) -> RoutingTable {
    let s = snapshot(&format!(
        "{}\n---\n{}",
        gateway(WEB),
        route("r", &format!("  parentRefs: [{{name: gw}}]\n  rules:\n  - {rule}"))
    ));
    let status = gateway_status(&s, &CompileOptions::default());
    assert_eq!(
        condition(&status.http_routes[0].2.parents[0].conditions, "Accepted"),
        ("True", "Accepted"),
        "{rule}"
    );
    compile(&s, &CompileOptions::default()).0
}

/// HTTPRouteQueryParamMatching and HTTPRouteMethodMatching (HTTPRouteMatch.queryParams,
/// .method; conformance HTTPRouteQueryParamMatching, HTTPRouteMethodMatching): a match
/// with both serves only a request with that method and that query parameter value.
#[test]
fn query_param_and_method_matches() {
    let table = one_rule(
        "{matches: [{method: POST, queryParams: [{name: animal, value: whale}]}], backendRefs: [{name: web, port: 8080}]}",
    );
    let post = http::Method::POST;
    assert!(routed(&table, &post, "/", Some("animal=whale")).is_some());
    assert!(routed(&table, &post, "/", Some("animal=dolphin")).is_none());
    assert!(routed(&table, &post, "/", None).is_none());
    assert!(routed(&table, &http::Method::GET, "/", Some("animal=whale")).is_none());
}

/// HTTPRouteResponseHeaderModification (HTTPHeaderFilter; conformance
/// HTTPRouteResponseHeaderModifier): set, add and remove act on the response.
#[test]
fn response_header_modifier() {
    let table = one_rule(
        "{filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Set, value: one}], add: [{name: X-Add, value: two}], remove: [X-Gone]}}], backendRefs: [{name: web, port: 8080}]}",
    );
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    let m = &route.action.as_ref().unwrap().response_headers;
    assert_eq!(m.set, vec![("x-set".parse().unwrap(), "one".parse().unwrap())]);
    assert_eq!(m.add, vec![("x-add".parse().unwrap(), "two".parse().unwrap())]);
    assert_eq!(m.remove, vec![http::HeaderName::from_static("x-gone")]);
}

/// HTTPRouteBackendRequestHeaderModification (HTTPBackendRef.filters: "Filters defined
/// at this level should be executed if and only if the request is being forwarded to
/// the backend defined here"; conformance HTTPRouteBackendRequestHeaderModifier,
/// HTTPRouteRequestHeaderModifierBackendWeights): each backend of the split carries its
/// own changes, the rule's own filters none of them; one backend with changes is a
/// split of one.
#[test]
fn backend_request_header_modifier() {
    let set = |service: &str| {
        format!(
            "{{name: {service}, port: 8080, filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: Backend, value: {service}}}]}}}}]}}"
        )
    };
    let table = one_rule(&format!("{{backendRefs: [{}, {}]}}", set("web"), set("web2")));
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    let action = route.action.as_ref().unwrap();
    assert!(action.request_headers.is_empty());
    let split = action.backends.as_ref().unwrap();
    for _ in 0..4 {
        let (backend, headers) = split.pick(None, None);
        let service = backend.name.split(['/', ':']).nth(1).unwrap();
        let m = headers.expect("every backend has its header");
        assert_eq!(m.set, vec![("backend".parse().unwrap(), service.parse().unwrap())]);
    }
    let table = one_rule(&format!("{{backendRefs: [{}]}}", set("web")));
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    let split = route.action.as_ref().unwrap().backends.as_ref().unwrap();
    assert_eq!(split.pick(None, None).1.unwrap().set[0].1, "web");
    // Without backend filters a single backend is no split at all.
    let table = one_rule("{backendRefs: [{name: web, port: 8080}]}");
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    assert!(route.action.as_ref().unwrap().backends.is_none());
}

/// A backendRef filter Portico does not apply there (`HTTPBackendRef.filters` is
/// "Implementation-specific"): the route is Accepted=False UnsupportedValue
/// (HTTPRouteFilter.type) and the requests for that backend alone get 500.
#[test]
fn unsupported_backend_filter_answers_500_for_that_backend() {
    let s = with_route(
        WEB,
        "  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs:\n    - {name: web, port: 8080, filters: [{type: URLRewrite, urlRewrite: {hostname: x.example}}]}\n    - {name: web2, port: 8080}",
    );
    let status = gateway_status(&s, &CompileOptions::default());
    assert_eq!(
        condition(&status.http_routes[0].2.parents[0].conditions, "Accepted"),
        ("False", "UnsupportedValue")
    );
    let (table, diagnostics) = compile(&s, &CompileOptions::default());
    assert!(diagnostics.iter().any(|d| d.reason == "UnsupportedFilter"));
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    let split = route.action.as_ref().unwrap().backends.as_ref().unwrap();
    let invalid: Vec<bool> = split.backends().map(|b| b.is_invalid()).collect();
    assert_eq!(invalid, vec![true, false]);
}

/// HTTPRouteCORS (HTTPCORSFilter; conformance HTTPRouteCORS): the filter becomes the
/// route's CORS in Gateway API mode, lists joined with `, `, `maxAge` 5 when not given
/// ("the gateway sets the response header `Access-Control-Max-Age: 5` by default"),
/// and `*` among exposeHeaders dropped with credentials ("the gateway cannot use the
/// `*`").
#[test]
fn cors_filter() {
    let table = one_rule(
        "{filters: [{type: CORS, cors: {allowOrigins: [\"https://www.foo.com\", \"https://*.bar.com\"], allowMethods: [GET, OPTIONS], allowHeaders: [x-header-1, x-header-2], exposeHeaders: [x-header-3], allowCredentials: true, maxAge: 3600}}], backendRefs: [{name: web, port: 8080}]}",
    );
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    let cors = route.action.as_ref().unwrap().cors.as_ref().unwrap();
    assert_eq!(cors.mode, portico_dataplane::table::CorsMode::GatewayApi);
    assert_eq!(cors.allow_methods, "GET, OPTIONS");
    assert_eq!(cors.allow_headers, "x-header-1, x-header-2");
    assert_eq!(cors.expose_headers.as_ref().unwrap(), "x-header-3");
    assert_eq!(cors.max_age, "3600");
    assert!(cors.allow_credentials);
    let table = one_rule(
        "{filters: [{type: CORS, cors: {allowOrigins: [\"*\"], exposeHeaders: [\"*\"], allowCredentials: true}}], backendRefs: [{name: web, port: 8080}]}",
    );
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    let cors = route.action.as_ref().unwrap().cors.as_ref().unwrap();
    assert!(matches!(cors.origins, portico_dataplane::table::CorsOrigins::Any));
    assert_eq!(cors.max_age, "5");
    assert!(cors.expose_headers.is_none());
    assert!(cors.allow_methods.is_empty() && cors.allow_headers.is_empty());
}

/// HTTPRoutePathRewrite and HTTPRouteHostRewrite (HTTPURLRewriteFilter; conformance
/// HTTPRouteRewritePath, HTTPRouteRewriteHost): ReplacePrefixMatch replaces the matched
/// prefix, ReplaceFullPath the whole path, hostname the Host sent upstream.
#[test]
fn url_rewrite_path_and_host() {
    use portico_dataplane::filter::PathModifier;
    let table = one_rule(
        "{matches: [{path: {type: PathPrefix, value: /prefix/one}}], filters: [{type: URLRewrite, urlRewrite: {hostname: one.example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}], backendRefs: [{name: web, port: 8080}]}",
    );
    let route = routed(&table, &http::Method::GET, "/prefix/one/two", None).unwrap();
    let rewrite = route.action.as_ref().unwrap().rewrite.as_ref().unwrap();
    assert_eq!(rewrite.hostname.as_ref().unwrap(), "one.example.org");
    assert_eq!(
        rewrite.path,
        Some(PathModifier::ReplacePrefixMatch {
            prefix: "/prefix/one".into(),
            with: "/one".into()
        })
    );
    let table = one_rule(
        "{filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /full}}}], backendRefs: [{name: web, port: 8080}]}",
    );
    let route = routed(&table, &http::Method::GET, "/any/thing", None).unwrap();
    let rewrite = route.action.as_ref().unwrap().rewrite.as_ref().unwrap();
    assert_eq!(rewrite.path, Some(PathModifier::ReplaceFullPath("/full".into())));
}

/// HTTPRouteSchemeRedirect, HTTPRoutePortRedirect, HTTPRoutePathRedirect and the
/// HTTPRoute303/307/308RedirectStatusCode features (HTTPRequestRedirectFilter;
/// conformance HTTPRouteRedirectScheme, HTTPRouteRedirectPort, HTTPRouteRedirectPath,
/// HTTPRoute303Redirect, HTTPRoute307Redirect, HTTPRoute308Redirect): every field is
/// answered as written, each status code the spec lists is accepted.
#[test]
fn request_redirect_fields_and_status_codes() {
    use portico_dataplane::filter::PathModifier;
    for code in [301u16, 302, 303, 307, 308] {
        let table = one_rule(&format!(
            "{{matches: [{{path: {{value: /old}}}}], filters: [{{type: RequestRedirect, requestRedirect: {{scheme: https, hostname: b.example, port: 8443, path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}, statusCode: {code}}}}}]}}"
        ));
        let route = routed(&table, &http::Method::GET, "/old/x", None).unwrap();
        let r = route.action.as_ref().unwrap().redirect.as_ref().unwrap();
        assert_eq!(r.status.as_u16(), code);
        assert_eq!(
            (r.scheme.as_deref(), r.hostname.as_deref(), r.port),
            (Some("https"), Some("b.example"), Some(8443))
        );
        assert_eq!(
            r.path,
            Some(PathModifier::ReplacePrefixMatch {
                prefix: "/old".into(),
                with: "/new".into()
            })
        );
    }
}

/// HTTPRouteRequestTimeout and HTTPRouteBackendTimeout (HTTPRouteTimeouts; conformance
/// HTTPRouteTimeoutRequest, HTTPRouteTimeoutBackendRequest): durations as written, and
/// "0s" disables the timeout ("Setting a timeout to the zero duration (e.g. "0s")
/// SHOULD disable the timeout completely").
#[test]
fn timeouts_and_zero_disables() {
    use std::time::Duration;
    let timeouts = |t: &str| {
        let table = one_rule(&format!("{{timeouts: {t}, backendRefs: [{{name: web, port: 8080}}]}}"));
        routed(&table, &http::Method::GET, "/", None)
            .unwrap()
            .action
            .as_ref()
            .unwrap()
            .timeouts
    };
    let t = timeouts("{request: 500ms, backendRequest: 1s}");
    assert_eq!(
        (t.request, t.backend_request),
        (Some(Duration::from_millis(500)), Some(Duration::from_secs(1)))
    );
    let t = timeouts("{request: 0s, backendRequest: 0s}");
    assert_eq!((t.request, t.backend_request), (None, None));
}

/// The rule's retry policy, and the diagnostics' messages.
fn retry_of(retry: &str) -> (Option<portico_dataplane::table::RetryPolicy>, Vec<String>) {
    let s = snapshot(&format!(
        "{}\n---\n{}",
        gateway(WEB),
        route(
            "r",
            &format!(
                "  parentRefs: [{{name: gw}}]\n  rules:\n  - {{retry: {retry}, backendRefs: [{{name: web, port: 8080}}]}}"
            )
        )
    ));
    let (table, diagnostics) = compile(&s, &CompileOptions::default());
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    let policy = route.action.as_ref().unwrap().retry.clone();
    (policy, diagnostics.into_iter().map(|d| d.message).collect())
}

/// HTTPRouteRetry (HTTPRouteRetry in apis/v1/httproute_types.go, GEP-1731; conformance
/// HTTPRouteRetry): `attempts` is the number of retries, `codes` the statuses retried,
/// `backoff` the least wait before each; connection errors and backend timeouts are
/// retried too ("Implementations SHOULD retry on connection errors (disconnect, reset,
/// timeout, TCP failure)"), every method, and on the endpoints already tried when none
/// is left (the suite's retry backend has one replica).
#[test]
fn retry_is_translated_as_written() {
    use std::time::Duration;
    let (p, diagnostics) = retry_of("{codes: [500, 502, 503, 504], attempts: 3, backoff: 100ms}");
    let p = p.unwrap();
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(p.attempts, 3);
    assert_eq!(p.codes, [500, 502, 503, 504]);
    assert_eq!(p.backoff, Some(Duration::from_millis(100)));
    assert!(p.on_connect_failure && p.on_reset && p.on_timeout);
    assert!(p.non_idempotent && p.reuse_endpoints);
    // A backend timeout bounds each attempt, as without a retry.
    assert_eq!(p.per_try_timeout, None);

    // Neither attempts nor backoff: 2 retries (implementation-specific), at once; no
    // codes: connection errors only.
    let p = retry_of("{}").0.unwrap();
    assert_eq!((p.attempts, p.backoff, p.codes.len()), (2, None, 0));
    // "0s" waits nothing.
    assert_eq!(retry_of("{backoff: 0s}").0.unwrap().backoff, None);
}

/// A rule without `retry` has no policy: its route costs nothing more.
#[test]
fn no_retry_no_policy() {
    let table = one_rule("{backendRefs: [{name: web, port: 8080}]}");
    let route = routed(&table, &http::Method::GET, "/", None).unwrap();
    assert_eq!(route.action.as_ref().unwrap().retry, None);
}

/// What the CRD refuses (in a cluster) and file mode reads anyway: each bad part is
/// left out with a warning; the rest of the policy stands.
#[test]
fn retry_with_bad_values_warns() {
    let (p, diagnostics) = retry_of("{codes: [200, 503, 503, 600], attempts: 0, backoff: soon}");
    let p = p.unwrap();
    assert_eq!((p.attempts, p.codes.as_slice(), p.backoff), (2, &[503u16][..], None));
    assert_eq!(diagnostics.len(), 4, "{diagnostics:?}");
    assert!(diagnostics.iter().any(|m| m.contains("retry.attempts 0")));
    assert!(diagnostics.iter().any(|m| m.contains("200 is not a status")));
    assert!(diagnostics.iter().any(|m| m.contains("600 is not a status")));
    assert!(diagnostics.iter().any(|m| m.contains("retry.backoff \"soon\"")));
    let (p, diagnostics) = retry_of("{attempts: 1000}");
    assert_eq!(p.unwrap().attempts, 10);
    assert!(
        diagnostics.iter().any(|m| m.contains("retry.attempts 1000")),
        "{diagnostics:?}"
    );
}

/// HTTPRouteParentRefPort and HTTPRouteDestinationPortMatching (ParentReference.port;
/// conformance HTTPRouteListenerPortMatching,
/// HTTPRouteInvalidParentRefNotMatchingListenerPort): a parentRef's port attaches the
/// route to the listeners on that port only; GatewayPort8080: a listener on 8080.
#[test]
fn parent_ref_port_selects_listeners() {
    let listeners = "  - {name: a, port: 8080, protocol: HTTP}\n  - {name: b, port: 8090, protocol: HTTP}\n";
    let s = with_route(
        listeners,
        "  parentRefs: [{name: gw, port: 8090}]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]",
    );
    let (table, _) = compile(&s, &CompileOptions::default());
    assert!(served(&table, 8090, "h", "/").is_some());
    assert!(served(&table, 8080, "h", "/").is_none());
    let attached = attached_routes(&s);
    assert_eq!(attached, vec![0, 1]);
}

/// HTTPRouteNamedRouteRule (HTTPRouteRule.name; conformance HTTPRouteNamedRule): a
/// named rule is read and served like any other.
#[test]
fn named_rules_are_served() {
    let table = one_rule("{name: first, backendRefs: [{name: web, port: 8080}]}");
    assert!(routed(&table, &http::Method::GET, "/", None).is_some());
}

/// HTTPRouteBackendProtocolH2C and HTTPRouteBackendProtocolWebSocket (GEP-1911,
/// Service port `appProtocol`; conformance HTTPRouteBackendProtocolH2C,
/// HTTPRouteBackendProtocolWebSocket): `kubernetes.io/h2c` is spoken HTTP/2 with prior
/// knowledge, `kubernetes.io/ws` HTTP/1.1, which carries the upgrade.
#[test]
fn backend_protocol_from_app_protocol() {
    use portico_dataplane::table::UpstreamProtocol;
    let services = "apiVersion: v1\nkind: Service\nmetadata: {name: h2c, namespace: default}\nspec: {ports: [{port: 8080, appProtocol: kubernetes.io/h2c}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ws, namespace: default}\nspec: {ports: [{port: 8080, appProtocol: kubernetes.io/ws}]}";
    let s = snapshot(&format!(
        "{}\n---\n{services}\n---\n{}",
        gateway(WEB),
        route(
            "r",
            "  parentRefs: [{name: gw}]\n  rules:\n  - {matches: [{path: {value: /h2c}}], backendRefs: [{name: h2c, port: 8080}]}\n  - {matches: [{path: {value: /ws}}], backendRefs: [{name: ws, port: 8080}]}"
        )
    ));
    let (table, _) = compile(&s, &CompileOptions::default());
    let listener = &table.listener(8080).unwrap().table;
    assert_eq!(
        listener.lookup("a", "/h2c").unwrap().backend.protocol,
        UpstreamProtocol::H2c
    );
    assert_eq!(
        listener.lookup("a", "/ws").unwrap().backend.protocol,
        UpstreamProtocol::Http1
    );
}

/// GRPCRoute (GRPCMethodMatch; conformance GRPCExactMethodMatching): a gRPC call is a
/// POST of `/{service}/{method}`, so service and method make an exact path, a service
/// alone a prefix of whole segments, a method alone that method of any service.
#[test]
fn grpc_method_match_paths() {
    use crate::compile::translate::grpc_method_path as path;
    use crate::gateway_api::GRPCMethodMatch;
    use portico_dataplane::table::PathKind;
    let m = |type_: Option<&str>, service: Option<&str>, method: Option<&str>| GRPCMethodMatch {
        type_: type_.map(str::to_string),
        service: service.map(str::to_string),
        method: method.map(str::to_string),
    };
    assert_eq!(path(None), Some((PathKind::Prefix, "/".into())));
    assert_eq!(
        path(Some(&m(None, Some("pkg.Echo"), Some("Echo")))),
        Some((PathKind::Exact, "/pkg.Echo/Echo".into()))
    );
    assert_eq!(
        path(Some(&m(None, Some("pkg.Echo"), None))),
        Some((PathKind::Prefix, "/pkg.Echo".into()))
    );
    assert_eq!(
        path(Some(&m(None, None, Some("Echo")))),
        Some((PathKind::RegularExpression, "/[^/]+/Echo".into()))
    );
    assert_eq!(
        path(Some(&m(Some("RegularExpression"), Some("pkg\\..*"), None))),
        Some((PathKind::RegularExpression, "/pkg\\..*/[^/]+".into()))
    );
    assert_eq!(path(Some(&m(None, None, None))), None);
}

/// GRPCRoute attaches like HTTPRoute (listeners accept it by default), its calls go to
/// its backends in h2c whatever the Service port's appProtocol says, and it gets its
/// own status (Accepted, ResolvedRefs per parentRef).
#[test]
fn grpc_route_is_served_in_h2c_with_status() {
    use portico_dataplane::table::UpstreamProtocol;
    let grpc = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: default, generation: 4}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - matches: [{method: {service: pkg.Echo, method: Echo}, headers: [{name: version, value: two}]}]\n    backendRefs: [{name: web2, port: 8080}]\n  - matches: [{method: {service: pkg.Echo, method: Echo}}]\n    backendRefs: [{name: web, port: 8080}]\n  - matches: [{method: {service: pkg.Echo, method: Gone}}]\n    backendRefs: [{name: missing, port: 8080}]";
    let s = snapshot(&format!("{}\n---\n{grpc}", gateway(WEB)));
    let (table, _) = compile(&s, &CompileOptions::default());
    let listener = &table.listener(8080).unwrap().table;
    let hit = listener.lookup("a.example", "/pkg.Echo/Echo").unwrap();
    assert_eq!(hit.meta.kind, ObjectKind::GrpcRoute);
    assert_eq!(hit.backend.name, "default/web:8080");
    assert_eq!(hit.backend.protocol, UpstreamProtocol::H2c);
    let mut headers = http::HeaderMap::new();
    headers.insert("version", http::HeaderValue::from_static("two"));
    let req = portico_dataplane::table::RequestView {
        method: &http::Method::POST,
        path: "/pkg.Echo/Echo",
        query: None,
        headers: &headers,
    };
    assert_eq!(
        listener.route("a.example", &req).unwrap().backend.name,
        "default/web2:8080"
    );
    assert!(
        listener
            .lookup("a.example", "/pkg.Echo/Gone")
            .unwrap()
            .backend
            .is_invalid()
    );
    assert!(listener.lookup("a.example", "/pkg.Echo/Other").is_none());
    let status = gateway_status(&s, &CompileOptions::default());
    assert!(status.http_routes.is_empty());
    let (_, name, r) = &status.grpc_routes[0];
    assert_eq!(name, "g");
    assert_eq!(condition(&r.parents[0].conditions, "Accepted"), ("True", "Accepted"));
    assert_eq!(
        condition(&r.parents[0].conditions, "ResolvedRefs"),
        ("False", "BackendNotFound")
    );
    assert_eq!(r.parents[0].conditions[0].observed_generation, Some(4));
    let kinds: Vec<&str> = status.gateways[0].2.listeners[0]
        .supported_kinds
        .iter()
        .map(|k| k.kind.as_str())
        .collect();
    assert_eq!(kinds, ["HTTPRoute", "GRPCRoute"]);
}

/// The four listeners of conformance GatewayHTTPListenerIsolation, all on port 8080.
const ISOLATED: &str = "  - {name: empty, port: 8080, protocol: HTTP}\n  - {name: wild, port: 8080, protocol: HTTP, hostname: '*.example.com'}\n  - {name: foo, port: 8080, protocol: HTTP, hostname: '*.foo.example.com'}\n  - {name: abc, port: 8080, protocol: HTTP, hostname: abc.foo.example.com}\n";

/// Which of the four routes of `isolated` answers each (host, path) of conformance
/// GatewayHTTPListenerIsolation, `-` for 404.
fn isolation_answers(hostnames: &str) -> Vec<String> {
    let routes: Vec<String> = ["empty", "wild", "foo", "abc"]
        .iter()
        .map(|l| {
            route(
                l,
                &format!(
                    "  parentRefs: [{{name: gw, sectionName: {l}}}]\n{hostnames}  rules: [{{matches: [{{path: {{type: PathPrefix, value: /{l}}}}}], backendRefs: [{{name: web, port: 8080}}]}}]"
                ),
            )
        })
        .collect();
    let s = snapshot(&format!("{}\n---\n{}", gateway(ISOLATED), routes.join("\n---\n")));
    let (table, _) = compile(&s, &CompileOptions::default());
    let status = gateway_status(&s, &CompileOptions::default());
    for (_, name, r) in &status.http_routes {
        assert_eq!(
            condition(&r.parents[0].conditions, "Accepted"),
            ("True", "Accepted"),
            "{name}"
        );
    }
    let mut out = Vec::new();
    for host in [
        "bar.com",
        "bar.example.com",
        "bar.foo.example.com",
        "abc.foo.example.com",
    ] {
        let row: Vec<&str> = ["empty", "wild", "foo", "abc"]
            .iter()
            .map(|l| {
                let route = table.listener(8080).unwrap().table.lookup(host, &format!("/{l}"));
                route.map_or("-", |r| if r.meta.ingress == *l { l } else { "wrong" })
            })
            .collect();
        out.push(format!("{host}: {}", row.join(" ")));
    }
    out
}

/// GatewayHTTPListenerIsolation (GatewaySpec.listeners, "Listeners that are distinct
/// only by Hostname"; conformance GatewayHTTPListenerIsolation): each request is routed
/// by the routes of the most specific listener whose hostname matches it, never by a
/// wider listener's, whether the routes name hostnames or not.
#[test]
fn requests_reach_only_the_most_specific_listener() {
    let want = [
        "bar.com: empty - - -",
        "bar.example.com: - wild - -",
        "bar.foo.example.com: - - foo -",
        "abc.foo.example.com: - - - abc",
    ];
    assert_eq!(isolation_answers(""), want, "routes without hostnames");
    let hostnames = "  hostnames: [bar.com, '*.example.com', '*.foo.example.com', abc.foo.example.com]\n";
    assert_eq!(isolation_answers(hostnames), want, "routes naming every hostname");
}

/// A narrower listener takes its hosts even with no route attached: a wider listener's
/// route without hostnames does not answer them (404), and a listener alone on its
/// port changes nothing for the hosts under it.
#[test]
fn a_narrower_listener_without_routes_still_takes_its_hosts() {
    let listeners = "  - {name: any, port: 8080, protocol: HTTP}\n  - {name: narrow, port: 8080, protocol: HTTP, hostname: '*.a.example.com'}\n  - {name: alone, port: 8090, protocol: HTTP, hostname: '*.example.com'}\n";
    let s = with_route(
        listeners,
        "  parentRefs: [{name: gw, sectionName: any}, {name: gw, sectionName: alone}]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]",
    );
    let (table, _) = compile(&s, &CompileOptions::default());
    assert!(served(&table, 8080, "x.example.com", "/").is_some());
    assert!(served(&table, 8080, "y.a.example.com", "/").is_none());
    assert!(served(&table, 8090, "y.a.example.com", "/").is_some());
    let attached = attached_routes(&s);
    assert_eq!(attached, vec![1, 0, 1]);
}

/// Listener isolation holds per port: a wider listener on another port keeps serving
/// the hosts a narrower listener takes on this one.
#[test]
fn listener_isolation_is_per_port() {
    let listeners = "  - {name: any, port: 8080, protocol: HTTP}\n  - {name: narrow, port: 8090, protocol: HTTP, hostname: a.example.com}\n";
    let s = with_route(
        listeners,
        "  parentRefs: [{name: gw, sectionName: any}]\n  rules: [{backendRefs: [{name: web, port: 8080}]}]",
    );
    let (table, _) = compile(&s, &CompileOptions::default());
    assert!(served(&table, 8080, "a.example.com", "/").is_some());
    assert!(served(&table, 8090, "a.example.com", "/").is_none());
}
