//! `Route` objects: every field compiled, precedence against Ingresses, diagnostics and
//! status conditions. Routes are written as JSON, the way a user writes the YAML.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use portico_dataplane::table::{HashOn, LbPolicy};
use portico_dataplane::table::{PathModifier, RequestView};
use serde_json::{Value, json};

use super::tls::{NOW, pem, secret};
use super::*;
use crate::compile::{reason, route_conditions};
use crate::crd;

fn route(namespace: &str, name: &str, spec: Value) -> crd::Route {
    let mut r = crd::Route::new(name, serde_json::from_value(spec).expect("a valid RouteSpec"));
    r.metadata.namespace = Some(namespace.into());
    r
}

impl World {
    fn route(mut self, r: crd::Route) -> Self {
        self.0.routes.push(r);
        self
    }
}

impl Compiled {
    /// `namespace/name` of the route a request with these headers, query and method gets.
    fn hit_request(
        &self,
        host: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        method: Method,
    ) -> Option<String> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let view = RequestView {
            method: &method,
            path,
            query,
            headers: &h,
        };
        self.table
            .route(host, &view)
            .map(|r| format!("{}/{}", r.meta.namespace, r.meta.ingress))
    }
}

fn simple(backend: &str) -> Value {
    json!({"hostnames": ["a.com"], "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]})
}

/// Each path type matches as its name says: Exact byte for byte, PathPrefix by
/// elements, RegularExpression the whole path.
#[test]
fn route_path_types() {
    for (path_type, value, hits, misses) in [
        ("Exact", "/a", &["/a"][..], &["/a/", "/ab"][..]),
        ("PathPrefix", "/a", &["/a", "/a/", "/a/b"], &["/ab"]),
        (
            "RegularExpression",
            "/a/[0-9]+",
            &["/a/1", "/a/123"],
            &["/a/x", "/a/1/2", "/x/a/1"],
        ),
    ] {
        let spec = json!({"hostnames": ["a.com"], "rules": [{
            "matches": [{"path": {"type": path_type, "value": value}}],
            "backendRefs": [{"name": "web", "port": 80}]}]});
        let c = world()
            .backend("default", "web", &["10.0.0.1"])
            .route(route("default", "r", spec))
            .compile();
        c.assert_clean();
        for p in hits {
            assert_eq!(
                c.hit("a.com", p).as_deref(),
                Some("default/r"),
                "{path_type} {value} on {p}"
            );
        }
        for p in misses {
            assert_eq!(c.hit("a.com", p), None, "{path_type} {value} on {p}");
        }
    }
}

/// A match's headers, query parameters and method must all hold; names of headers
/// compare case-insensitively, regexes match the whole value.
#[test]
fn route_header_query_and_method_conditions() {
    let spec = json!({"hostnames": ["a.com"], "rules": [
        {"matches": [{"headers": [{"name": "X-Env", "value": "canary"}],
                      "queryParams": [{"type": "RegularExpression", "name": "id", "value": "[0-9]+"}],
                      "method": "POST"}],
         "backendRefs": [{"name": "web", "port": 80}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .route(route("default", "r", spec))
        .compile();
    c.assert_clean();
    let hit = |q, h: &[(&str, &str)], m| c.hit_request("a.com", "/", q, h, m);
    assert_eq!(
        hit(Some("id=42"), &[("x-env", "canary")], Method::POST).as_deref(),
        Some("default/r")
    );
    assert_eq!(hit(Some("id=42x"), &[("x-env", "canary")], Method::POST), None);
    assert_eq!(hit(Some("id=42"), &[("x-env", "stable")], Method::POST), None);
    assert_eq!(hit(Some("id=42"), &[("x-env", "canary")], Method::GET), None);
    assert_eq!(hit(None, &[("x-env", "canary")], Method::POST), None);
}

/// A rule without matches serves every path of its hosts; a Route without hostnames
/// serves hosts no other rule names.
#[test]
fn route_defaults_every_path_and_host() {
    let spec = json!({"rules": [{"backendRefs": [{"name": "web", "port": 80}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .route(route("default", "r", spec))
        .compile();
    c.assert_clean();
    assert_eq!(c.hit("anything.io", "/x/y").as_deref(), Some("default/r"));
}

/// backendRefs with weights become a weighted split, exact per cycle; weight 0 gets nothing.
#[test]
fn route_weighted_backends() {
    let spec = json!({"hostnames": ["a.com"], "rules": [{"backendRefs": [
        {"name": "stable", "port": 80, "weight": 90},
        {"name": "canary", "port": 80, "weight": 10},
        {"name": "off", "port": 80, "weight": 0}]}]});
    let c = world()
        .backend("default", "stable", &["10.0.0.1"])
        .backend("default", "canary", &["10.0.0.2"])
        .backend("default", "off", &["10.0.0.3"])
        .route(route("default", "r", spec))
        .compile();
    c.assert_clean();
    let r = c.route("a.com", "/").unwrap();
    let split = r.action.as_ref().and_then(|a| a.backends.as_ref()).expect("a split");
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..100 {
        *counts.entry(split.choose(None).name.clone()).or_insert(0) += 1;
    }
    assert_eq!(counts.get("default/stable:80"), Some(&90));
    assert_eq!(counts.get("default/canary:80"), Some(&10));
    assert_eq!(counts.get("default/off:80"), None);
    assert_eq!(r.meta.service, "stable");
}

/// Header modifiers compile to set, add and remove with lower-cased names.
#[test]
fn route_header_modifiers() {
    let spec = json!({"hostnames": ["a.com"], "rules": [{"backendRefs": [{"name": "web", "port": 80}], "filters": [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": {
            "set": [{"name": "X-A", "value": "1"}], "add": [{"name": "X-B", "value": "2"}], "remove": ["X-C"]}},
        {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "X-R", "value": "r"}]}}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .route(route("default", "r", spec))
        .compile();
    c.assert_clean();
    let action = c.route("a.com", "/").unwrap().action.clone().unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-a", "0".parse().unwrap());
    h.insert("x-b", "1".parse().unwrap());
    h.insert("x-c", "gone".parse().unwrap());
    action.request_headers.apply(&mut h);
    assert_eq!(h.get("x-a").unwrap(), "1");
    assert_eq!(h.get_all("x-b").iter().count(), 2);
    assert!(h.get("x-c").is_none());
    assert_eq!(action.response_headers.set[0].0.as_str(), "x-r");
}

/// URLRewrite's ReplacePrefixMatch replaces the prefix of the match the request came
/// through, per match; the hostname replaces Host.
#[test]
fn route_url_rewrite_per_match() {
    let spec = json!({"hostnames": ["a.com"], "rules": [{
        "matches": [{"path": {"value": "/old/"}}, {"path": {"value": "/legacy"}}],
        "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "b.internal",
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}],
        "backendRefs": [{"name": "web", "port": 80}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .route(route("default", "r", spec))
        .compile();
    c.assert_clean();
    for (path, want) in [("/old/x", "/new/x"), ("/legacy/y", "/new/y"), ("/old", "/new")] {
        let action = c.route("a.com", path).unwrap().action.clone().unwrap();
        let rewrite = action.rewrite.as_ref().unwrap();
        assert_eq!(rewrite.path.as_ref().unwrap().apply(path), want, "{path}");
        assert_eq!(rewrite.hostname.as_ref().unwrap(), "b.internal");
    }
}

/// A RequestRedirect rule has no backend and answers with its status and Location.
#[test]
fn route_request_redirect() {
    let spec = json!({"hostnames": ["a.com"], "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {
        "scheme": "https", "hostname": "b.com", "statusCode": 301,
        "path": {"type": "ReplaceFullPath", "replaceFullPath": "/home"}}}]}]});
    let c = world().route(route("default", "r", spec)).compile();
    c.assert_clean();
    let r = c.route("a.com", "/x").unwrap();
    assert!(r.backend.endpoints.is_empty());
    let redirect = r.action.as_ref().unwrap().redirect.clone().unwrap();
    assert_eq!(redirect.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(redirect.path, Some(PathModifier::ReplaceFullPath("/home".into())));
    assert_eq!(
        redirect.location(false, "a.com:8080", &"/x?q=1".parse().unwrap()),
        "https://b.com/home?q=1"
    );
}

/// Timeouts and retries parse Gateway API durations; retry defaults to one attempt on
/// connect failures and resets.
#[test]
fn route_timeouts_and_retry() {
    for (retry, attempts, reset, timeout, codes) in [
        (json!({}), 1, true, false, vec![]),
        (
            json!({"attempts": 3, "retryOn": ["Timeout"], "codes": [502, 503], "perTryTimeout": "250ms"}),
            3,
            false,
            true,
            vec![502u16, 503],
        ),
    ] {
        let spec = json!({"hostnames": ["a.com"], "rules": [{"backendRefs": [{"name": "web", "port": 80}],
            "timeouts": {"request": "1m30s", "backendRequest": "5s"}, "retry": retry}]});
        let c = world()
            .backend("default", "web", &["10.0.0.1"])
            .route(route("default", "r", spec))
            .compile();
        c.assert_clean();
        let action = c.route("a.com", "/").unwrap().action.clone().unwrap();
        assert_eq!(action.timeouts.request, Some(Duration::from_secs(90)));
        assert_eq!(action.timeouts.backend_request, Some(Duration::from_secs(5)));
        let r = action.retry.clone().unwrap();
        assert_eq!(
            (r.attempts, r.on_reset, r.on_timeout, r.codes),
            (attempts, reset, timeout, codes)
        );
        assert!(!r.non_idempotent);
    }
}

/// loadBalancer and sessionAffinity compile to the rule's balancing.
#[test]
fn route_load_balancer_and_affinity() {
    for (lb, want) in [
        (json!({"type": "RoundRobin"}), LbPolicy::RoundRobin),
        (json!({"type": "LeastRequest"}), LbPolicy::LeastRequest),
        (
            json!({"type": "ConsistentHash", "consistentHash": {"header": "X-User"}}),
            LbPolicy::ConsistentHash(HashOn::Header(http::HeaderName::from_static("x-user"))),
        ),
        (
            json!({"type": "ConsistentHash", "consistentHash": {"cookie": "sid"}}),
            LbPolicy::ConsistentHash(HashOn::Cookie("sid".into())),
        ),
        (
            json!({"type": "ConsistentHash", "consistentHash": {"clientIP": true}}),
            LbPolicy::ConsistentHash(HashOn::ClientIp),
        ),
    ] {
        let spec = json!({"hostnames": ["a.com"], "rules": [{"backendRefs": [{"name": "web", "port": 80}],
            "loadBalancer": lb, "sessionAffinity": {"cookieName": "aff"}}]});
        let c = world()
            .backend("default", "web", &["10.0.0.1"])
            .route(route("default", "r", spec))
            .compile();
        c.assert_clean();
        let balance = c.route("a.com", "/").unwrap().action.clone().unwrap().balance.clone();
        assert_eq!(balance.policy, want);
        assert_eq!(balance.affinity_cookie.as_ref().map(|c| c.name.as_str()), Some("aff"));
    }
}

/// tls.secretName serves the Secret's certificate for the Route's hostnames, with the
/// HTTPS redirect and HSTS.
#[test]
fn route_tls_secret() {
    let spec = json!({"hostnames": ["a.com"], "tls": {"secretName": "a-tls"},
        "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "a-tls", pem(&["a.com"], false)))
        .route(route("default", "r", spec))
        .compile_with(&CompileOptions {
            now: NOW,
            ..CompileOptions::default()
        });
    c.assert_clean();
    assert!(c.table.certificate("a.com").is_some());
    let policy = &c.route("a.com", "/").unwrap().policy;
    assert!(policy.ssl_redirect && policy.hsts.is_some());
}

/// tls.secretName on a Route without hostnames serves nothing, and says so.
#[test]
fn route_tls_without_hostnames() {
    let spec = json!({"tls": {"secretName": "a-tls"}, "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "a-tls", pem(&["a.com"], false)))
        .route(route("default", "r", spec))
        .compile_with(&CompileOptions {
            now: NOW,
            ..CompileOptions::default()
        });
    assert_eq!(c.reasons(), vec![("default/r".to_string(), reason::INVALID_HOST)]);
    assert!(c.table.certificate("a.com").is_none());
    assert!(!c.route("any.host", "/").unwrap().policy.ssl_redirect);
}

/// A backendRef to a missing Service still routes (503) and says ServiceNotFound.
#[test]
fn route_missing_service() {
    let c = world().route(route("default", "r", simple("nowhere"))).compile();
    assert_eq!(c.reasons(), vec![("default/r".to_string(), reason::SERVICE_NOT_FOUND)]);
    assert!(c.route("a.com", "/").unwrap().backend.endpoints.is_empty());
    assert_eq!(c.diagnostics[0].kind, "Route");
}

/// The older object keeps a contested host, path and type, whichever kind it is; the
/// newer gets DuplicateRule naming the owner.
#[test]
fn older_object_keeps_contested_path() {
    let ing = |t| {
        ingress("default", "ing")
            .created(t)
            .host("a.com")
            .path("/", "Prefix", "web", 80)
    };
    let rt = |t| {
        let mut r = route("default", "rt", simple("web"));
        r.metadata.creation_timestamp = Some(Time(Timestamp::from_second(t).unwrap()));
        r
    };
    for (ingress_age, route_age, winner, loser) in
        [(1, 2, "default/ing", "default/rt"), (2, 1, "default/rt", "default/ing")]
    {
        let c = world()
            .backend("default", "web", &["10.0.0.1"])
            .with(ing(ingress_age))
            .route(rt(route_age))
            .compile();
        assert_eq!(c.hit("a.com", "/x").as_deref(), Some(winner));
        assert_eq!(c.reasons(), vec![(loser.to_string(), reason::DUPLICATE_RULE)]);
        assert!(
            c.diagnostics[0].message.contains(winner),
            "{}",
            c.diagnostics[0].message
        );
    }
}

/// A Route match with a header condition on a path an Ingress holds is a different
/// candidate: both serve, the conditional one first.
#[test]
fn conditional_route_coexists_with_ingress_path() {
    let spec = json!({"hostnames": ["a.com"], "rules": [{"matches": [{"headers": [{"name": "x-beta", "value": "1"}]}],
        "backendRefs": [{"name": "web", "port": 80}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .with(ingress("default", "ing").host("a.com").path("/", "Prefix", "web", 80))
        .route(route("default", "rt", spec))
        .compile();
    c.assert_clean();
    assert_eq!(c.hit("a.com", "/").as_deref(), Some("default/ing"));
    assert_eq!(
        c.hit_request("a.com", "/", None, &[("x-beta", "1")], Method::GET)
            .as_deref(),
        Some("default/rt")
    );
}

/// A Route that breaks a CEL rule (possible without an API server) is left out whole
/// with InvalidRoute, and its message is the CEL rule's.
#[test]
fn invalid_route_left_out() {
    let spec = json!({"hostnames": ["a.com"], "rules": [{"backendRefs": [{"name": "web", "port": 80, "weight": 0}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .route(route("default", "r", spec))
        .compile();
    assert_eq!(c.reasons(), vec![("default/r".to_string(), reason::INVALID_ROUTE)]);
    assert!(c.diagnostics[0].message.contains("must add up to more than 0"));
    assert_eq!(c.hit("a.com", "/"), None);
}

/// A regular expression the regex crate refuses (or that compiles too large) is
/// refused with the field named, before anything is routed.
#[test]
fn bad_regex_refused() {
    for pattern in ["/a(", "/(a{1000}){1000}"] {
        let spec = json!({"rules": [{"matches": [{"path": {"type": "RegularExpression", "value": pattern}}],
            "backendRefs": [{"name": "web", "port": 80}]}]});
        let invalid = crd::validate(&serde_json::from_value(spec).unwrap());
        assert_eq!(invalid.len(), 1, "{pattern}: {invalid:?}");
        assert_eq!(invalid[0].field, "spec.rules[0].matches[0].path.value");
    }
}

/// Every CEL rule has its Rust twin, with the same message.
#[test]
fn validate_mirrors_cel_rules() {
    let backend = json!([{"name": "a", "port": 80}]);
    let redirect = |code: i32| json!([{"type": "RequestRedirect", "requestRedirect": {"statusCode": code}}]);
    for (rule, message) in [
        (
            json!({"backendRefs": backend, "filters": redirect(302)}),
            "cannot also have backendRefs",
        ),
        (json!({}), "a rule needs backendRefs or a RequestRedirect filter"),
        (
            json!({"filters": redirect(304)}),
            "statusCode must be one of 301, 302, 303, 307, 308",
        ),
        (
            json!({"backendRefs": backend, "matches": [{"path": {"type": "Exact", "value": "/a"}}],
                   "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}]}),
            "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match",
        ),
        (
            json!({"backendRefs": backend, "loadBalancer": {"type": "ConsistentHash", "consistentHash": {"header": "a", "cookie": "b"}}}),
            "set exactly one of header, cookie or clientIP: true",
        ),
        (
            json!({"backendRefs": backend, "timeouts": {"request": "1s", "backendRequest": "2s"}}),
            "backendRequest must not be longer than request",
        ),
        (
            json!({"backendRefs": backend, "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "Host", "value": "x"}]}}]}),
            "managed by the proxy",
        ),
        (
            json!({"backendRefs": backend, "matches": [{"path": {"value": "a"}}]}),
            "path must start with '/'",
        ),
    ] {
        let spec: crd::RouteSpec = serde_json::from_value(json!({"rules": [rule]})).unwrap();
        let invalid = crd::validate(&spec);
        assert!(
            invalid.iter().any(|i| i.message.contains(message)),
            "{message}: {invalid:?}"
        );
    }
}

/// Accepted is False with the first problem's reason when a match was left out;
/// ResolvedRefs is False when a backendRef does not resolve; both carry the generation.
#[test]
fn route_status_conditions() {
    let mut older = route("default", "old", simple("web"));
    older.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
    let mut newer = route("default", "new", simple("missing"));
    newer.metadata.creation_timestamp = Some(Time(Timestamp::from_second(2).unwrap()));
    newer.metadata.generation = Some(3);
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .route(older.clone())
        .route(newer.clone())
        .compile();
    let ok = route_conditions(&older, &c.diagnostics);
    assert_eq!(
        ok.iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("Accepted", "True", "Accepted"),
            ("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
    let bad = route_conditions(&newer, &c.diagnostics);
    assert_eq!(
        (bad[0].status.as_str(), bad[0].reason.as_str()),
        ("False", reason::DUPLICATE_RULE)
    );
    assert!(bad[0].message.contains("default/old"), "{}", bad[0].message);
    assert_eq!(bad[0].observed_generation, Some(3));
    // The duplicate match never made it into the table, so its backend is not reported.
    assert_eq!(bad[1].status, "True");
}

/// With --watch-namespace, Routes in other namespaces are not served.
#[test]
fn route_watch_namespace() {
    let c = world()
        .backend("other", "web", &["10.0.0.1"])
        .route(route("other", "r", simple("web")))
        .compile_with(&CompileOptions {
            watch_namespace: Some("default".into()),
            ..CompileOptions::default()
        });
    c.assert_clean();
    assert_eq!(c.hit("a.com", "/"), None);
}

/// A Route's table entries name the Route, its rule and its match, as written.
#[test]
fn route_meta_names_rule_and_match() {
    let spec = json!({"hostnames": ["a.com"], "rules": [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/x"}}], "backendRefs": [{"name": "web", "port": 80}]},
        {"matches": [{"path": {"type": "Exact", "value": "/a"}}, {"path": {"type": "PathPrefix", "value": "/b/"}}],
         "backendRefs": [{"name": "web", "port": 80}]}]});
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .route(route("default", "r", spec))
        .compile();
    c.assert_clean();
    let meta = &c.route("a.com", "/b/c").unwrap().meta;
    assert_eq!(meta.kind, portico_dataplane::table::ObjectKind::Route);
    assert_eq!((meta.ingress.as_str(), meta.path.as_str()), ("r", "/b/"));
    assert_eq!((meta.rule, meta.path_index), (Some(1), Some(1)));
    assert_eq!(meta.kind.as_str(), "Route");
}
