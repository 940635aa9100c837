//! Hosts, paths, precedence between Ingresses, defaultBackend and annotations.

use portico_dataplane::table::{DEFAULT_MAX_BODY_SIZE, ObjectKind, RouteMeta};

use super::*;
use crate::compile::{InvalidSize, PROXY_BODY_SIZE, parse_size, reason};

fn backends() -> World {
    world()
        .backend("default", "web", &["10.0.0.1"])
        .backend("default", "api", &["10.0.0.2"])
        .backend("other", "web", &["10.0.1.1"])
}

/// Given two Ingresses with the same host and path, the older keeps it and the newer
/// gets a DuplicateRule diagnostic naming the older.
#[test]
fn duplicate_rule_older_wins() {
    let c = backends()
        .with(
            ingress("default", "new")
                .host("a.com")
                .path("/", "Prefix", "api", 80)
                .created(20),
        )
        .with(
            ingress("default", "old")
                .host("a.com")
                .path("/", "Prefix", "web", 80)
                .created(10),
        )
        .compile();
    assert_eq!(c.hit("a.com", "/x").as_deref(), Some("default/old"));
    assert_eq!(c.reasons(), [("default/new".to_string(), reason::DUPLICATE_RULE)]);
    assert!(c.diagnostics[0].message.contains("default/old"), "{}", c.diagnostics[0]);
}

/// Given the same conflicting Ingresses in any input order, the oldest wins every time.
#[test]
fn oldest_wins_regardless_of_input_order() {
    let a = ingress("default", "a")
        .host("a.com")
        .path("/p", "Exact", "web", 80)
        .created(300);
    let b = ingress("default", "b")
        .host("a.com")
        .path("/p", "Exact", "web", 80)
        .created(100);
    let c = ingress("default", "c")
        .host("a.com")
        .path("/p", "Exact", "web", 80)
        .created(200);
    let all = [a, b, c].map(Object::from);
    let mut outcomes = Vec::new();
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let compiled = order.iter().fold(backends(), |w, &i| w.with(all[i].clone())).compile();
        outcomes.push((compiled.hit("a.com", "/p"), compiled.reasons()));
    }
    assert_eq!(outcomes[0].0.as_deref(), Some("default/b"));
    assert!(outcomes.iter().all(|o| *o == outcomes[0]), "{outcomes:#?}");
}

/// Given Ingresses created at the same second (or without a timestamp, as in file mode),
/// namespace then name decide.
#[test]
fn equal_age_ties_go_to_namespace_then_name() {
    let c = backends()
        .with(ingress("other", "a").host("a.com").path("/", "Prefix", "web", 80))
        .with(ingress("default", "z").host("a.com").path("/", "Prefix", "web", 80))
        .with(ingress("default", "y").host("a.com").path("/", "Prefix", "web", 80))
        .compile();
    assert_eq!(c.hit("a.com", "/").as_deref(), Some("default/y"));
}

/// Given two rules of one Ingress for the same host, path and type, the first is kept.
#[test]
fn duplicate_within_one_ingress() {
    let c = backends()
        .with(
            ingress("default", "web")
                .host("a.com")
                .path("/x", "Prefix", "web", 80)
                .host("a.com")
                .path("/x/", "Prefix", "api", 80),
        )
        .compile();
    assert_eq!(c.endpoints("a.com", "/x"), ["10.0.0.1:8080"]);
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::DUPLICATE_RULE)]);
}

/// Given rules for one host in several Ingresses, they merge: each path goes where its
/// own Ingress says.
#[test]
fn rules_for_one_host_merge_across_ingresses() {
    let c = backends()
        .with(ingress("default", "site").host("a.com").path("/", "Prefix", "web", 80))
        .with(
            ingress("default", "api")
                .host("A.com")
                .path("/api", "Prefix", "api", 80),
        )
        .compile();
    assert_eq!(c.hit("a.com", "/index.html").as_deref(), Some("default/site"));
    assert_eq!(c.hit("a.com", "/api/v1").as_deref(), Some("default/api"));
    c.assert_clean();
}

/// Given an invalid host, that rule alone is skipped: the Ingress's other rules and other
/// Ingresses still compile.
#[test]
fn invalid_host_is_isolated() {
    let c = backends()
        .with(
            ingress("default", "web")
                .host("bad_host.com")
                .path("/", "Prefix", "web", 80)
                .host("good.com")
                .path("/", "Prefix", "web", 80),
        )
        .with(ingress("default", "api").host("api.com").path("/", "Prefix", "api", 80))
        .compile();
    assert!(c.hit("good.com", "/").is_some());
    assert!(c.hit("api.com", "/").is_some());
    assert_eq!(c.table.route_count(), 2);
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_HOST)]);
    assert!(c.diagnostics[0].message.contains("bad_host.com"));
}

/// Given an invalid path, that path alone is skipped: the other paths of its rule, and
/// other Ingresses, still compile.
#[test]
fn invalid_path_is_isolated() {
    let c = backends()
        .with(
            ingress("default", "web")
                .host("a.com")
                .path("relative", "Prefix", "web", 80)
                .path("/a/../b", "Exact", "web", 80)
                .path("/ok", "Prefix", "web", 80),
        )
        .with(ingress("default", "api").host("b.com").path("/", "Prefix", "api", 80))
        .compile();
    assert!(c.hit("a.com", "/ok").is_some());
    assert!(c.hit("b.com", "/").is_some());
    assert_eq!(c.table.route_count(), 2);
    let reasons: Vec<_> = c.diagnostics.iter().map(|d| d.reason).collect();
    assert_eq!(reasons, [reason::INVALID_PATH, reason::INVALID_PATH]);
}

/// Given a path without pathType, it is ImplementationSpecific (a string prefix, as in
/// ingress-nginx); an ImplementationSpecific rule without a path serves "/".
#[test]
fn missing_path_type_is_implementation_specific() {
    let c = backends()
        .with(ingress("default", "web").host("a.com").path("/foo", "", "web", 80))
        .with(
            ingress("default", "api")
                .host("b.com")
                .path("", "ImplementationSpecific", "api", 80),
        )
        .compile();
    assert!(c.hit("a.com", "/foobar").is_some());
    assert!(c.hit("b.com", "/anything").is_some());
    c.assert_clean();
}

/// Given an unknown pathType, the path is skipped with InvalidPath.
#[test]
fn unknown_path_type_is_invalid() {
    let c = backends()
        .with(ingress("default", "web").host("a.com").path("/", "Regex", "web", 80))
        .compile();
    assert_eq!(c.table.route_count(), 0);
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_PATH)]);
    assert!(c.diagnostics[0].message.contains("\"Regex\""));
}

/// Given a rule with a host but no http section, nothing is routed for it and nothing
/// is reported.
#[test]
fn rule_without_http_is_skipped() {
    let c = backends().with(ingress("default", "web").host("a.com")).compile();
    assert_eq!(c.table.route_count(), 0);
    assert_eq!(c.hit("a.com", "/"), None);
    c.assert_clean();
}

/// Given a defaultBackend, it serves the paths no rule matches on the Ingress's own hosts
/// (including hosts declared without paths), while its rules keep their paths.
#[test]
fn default_backend_serves_unmatched_paths_of_own_hosts() {
    let c = backends()
        .with(
            ingress("default", "web")
                .host("a.com")
                .path("/api", "Prefix", "api", 80)
                .host("b.com")
                .default_backend("web", 80)
                .created(1),
        )
        .with(
            ingress("default", "other")
                .host("c.com")
                .path("/api", "Prefix", "api", 80)
                .created(2),
        )
        .compile();
    assert_eq!(c.endpoints("a.com", "/api/x"), ["10.0.0.2:8080"]);
    assert_eq!(c.endpoints("a.com", "/web"), ["10.0.0.1:8080"]);
    assert_eq!(c.endpoints("b.com", "/anything"), ["10.0.0.1:8080"]);
    assert_eq!(c.route("a.com", "/web").unwrap().meta.host, "a.com");
    // Another Ingress's host keeps its own "no match": only the catch-all is shared.
    assert_eq!(c.hit("c.com", "/web"), None);
    c.assert_clean();
}

/// Given several Ingresses with a defaultBackend, the oldest one's becomes the catch-all
/// for requests that match no host; an Ingress that has nothing but a defaultBackend is
/// told when an older one holds the catch-all.
#[test]
fn oldest_default_backend_is_the_catch_all() {
    let c = backends()
        .with(ingress("default", "newer").default_backend("api", 80).created(20))
        .with(
            ingress("default", "older")
                .host("a.com")
                .path("/", "Prefix", "api", 80)
                .default_backend("web", 80)
                .created(10),
        )
        .compile();
    assert_eq!(c.endpoints("unknown.host", "/x"), ["10.0.0.1:8080"]);
    assert_eq!(c.hit("unknown.host", "/").as_deref(), Some("default/older"));
    assert_eq!(c.reasons(), [("default/newer".to_string(), reason::DUPLICATE_RULE)]);
}

/// Given an Ingress with only a defaultBackend, it sets the catch-all and nothing else.
#[test]
fn default_backend_only_sets_the_catch_all() {
    let c = backends()
        .with(ingress("default", "fallback").default_backend("web", 80))
        .with(
            ingress("default", "api")
                .host("a.com")
                .path("/api", "Prefix", "api", 80),
        )
        .compile();
    assert_eq!(c.endpoints("x.com", "/"), ["10.0.0.1:8080"]);
    assert_eq!(c.hit("a.com", "/other"), None);
    assert_eq!(c.table.route_count(), 1);
    c.assert_clean();
}

/// Given two Ingresses with a defaultBackend for the same host, the older one's serves
/// it and the newer gets a DuplicateRule diagnostic.
#[test]
fn host_default_backend_older_wins() {
    let c = backends()
        .with(
            ingress("default", "b")
                .host("a.com")
                .path("/b", "Prefix", "api", 80)
                .default_backend("api", 80)
                .created(2),
        )
        .with(
            ingress("default", "a")
                .host("a.com")
                .path("/a", "Prefix", "web", 80)
                .default_backend("web", 80)
                .created(1),
        )
        .compile();
    assert_eq!(c.endpoints("a.com", "/zzz"), ["10.0.0.1:8080"]);
    assert_eq!(c.reasons(), [("default/b".to_string(), reason::DUPLICATE_RULE)]);
}

/// ingress-nginx's proxy-request-buffering and proxy-buffering ("on"/"off"),
/// client-body-buffer-size (an nginx size) and
/// proxy-read-timeout / proxy-send-timeout (whole seconds) reach the Ingress's routes; a bad value keeps the
/// default and is reported.
#[test]
fn buffering_and_timeout_annotations() {
    use crate::compile::annotations::{
        CLIENT_BODY_BUFFER_SIZE, PROXY_BUFFERING, PROXY_READ_TIMEOUT, PROXY_REQUEST_BUFFERING, PROXY_SEND_TIMEOUT,
    };
    let c = backends()
        .with(
            ingress("default", "tuned")
                .annotation(CLIENT_BODY_BUFFER_SIZE, "16k")
                .annotation(PROXY_REQUEST_BUFFERING, "off")
                .annotation(PROXY_BUFFERING, "on")
                .annotation(PROXY_READ_TIMEOUT, "3600")
                .annotation(PROXY_SEND_TIMEOUT, "5")
                .host("a.com")
                .path("/", "Prefix", "web", 80),
        )
        .with(
            ingress("default", "bad")
                .annotation(PROXY_REQUEST_BUFFERING, "maybe")
                .annotation(PROXY_BUFFERING, "yes")
                .annotation(PROXY_READ_TIMEOUT, "60s")
                .annotation(CLIENT_BODY_BUFFER_SIZE, "0")
                .host("b.com")
                .path("/", "Prefix", "web", 80),
        )
        .compile();
    let tuned = &c.route("a.com", "/").unwrap().policy;
    assert_eq!(tuned.request_buffering, Some(false));
    assert_eq!(tuned.response_buffering, Some(true));
    assert_eq!(tuned.read_timeout, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(tuned.send_timeout, Some(std::time::Duration::from_secs(5)));
    assert_eq!(tuned.client_body_buffer_size, Some(16 * 1024));
    let bad = &c.route("b.com", "/").unwrap().policy;
    assert_eq!(
        (
            bad.request_buffering,
            bad.response_buffering,
            bad.read_timeout,
            bad.client_body_buffer_size
        ),
        (None, None, None, None)
    );
    assert_eq!(
        c.reasons(),
        [
            ("default/bad".to_string(), reason::INVALID_ANNOTATION),
            ("default/bad".to_string(), reason::INVALID_ANNOTATION),
            ("default/bad".to_string(), reason::INVALID_ANNOTATION),
            ("default/bad".to_string(), reason::INVALID_ANNOTATION)
        ]
    );
}

/// Given the proxy-body-size annotation, the Ingress's routes get that limit, "0" lifts
/// it, and other Ingresses keep the default from the options.
#[test]
fn proxy_body_size_annotation() {
    let c = backends()
        .with(
            ingress("default", "big")
                .annotation(PROXY_BODY_SIZE, "8m")
                .host("a.com")
                .path("/", "Prefix", "web", 80),
        )
        .with(
            ingress("default", "free")
                .annotation(PROXY_BODY_SIZE, "0")
                .host("b.com")
                .path("/", "Prefix", "web", 80),
        )
        .with(ingress("default", "plain").host("c.com").path("/", "Prefix", "web", 80))
        .compile();
    assert_eq!(c.route("a.com", "/").unwrap().policy.max_body_size, Some(8 << 20));
    assert_eq!(c.route("b.com", "/").unwrap().policy.max_body_size, None);
    assert_eq!(
        c.route("c.com", "/").unwrap().policy.max_body_size,
        Some(DEFAULT_MAX_BODY_SIZE)
    );
    c.assert_clean();

    let opts = CompileOptions {
        max_body_size: Some(10),
        ..Default::default()
    };
    assert_eq!(
        backends()
            .with(ingress("default", "plain").host("c.com").path("/", "Prefix", "web", 80))
            .compile_with(&opts)
            .route("c.com", "/")
            .unwrap()
            .policy
            .max_body_size,
        Some(10)
    );
}

/// Given an invalid proxy-body-size, the routes keep the default and InvalidAnnotation
/// says what is wrong.
#[test]
fn invalid_proxy_body_size_keeps_default() {
    let c = backends()
        .with(
            ingress("default", "web")
                .annotation(PROXY_BODY_SIZE, "8 MB")
                .host("a.com")
                .path("/", "Prefix", "web", 80),
        )
        .compile();
    assert_eq!(
        c.route("a.com", "/").unwrap().policy.max_body_size,
        Some(DEFAULT_MAX_BODY_SIZE)
    );
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_ANNOTATION)]);
    assert!(c.diagnostics[0].message.contains("\"8 MB\""), "{}", c.diagnostics[0]);
}

/// nginx size syntax: bytes, k, m, g in either case, powers of 1024; 0 is unlimited.
#[test]
fn nginx_size_syntax() {
    let ok = [
        ("0", None),
        ("100", Some(100)),
        ("512k", Some(512 << 10)),
        ("8M", Some(8 << 20)),
        ("1g", Some(1 << 30)),
        (" 2m ", Some(2 << 20)),
    ];
    for (input, want) in ok {
        assert_eq!(parse_size(input), Ok(want), "{input:?}");
    }
    for bad in [
        "",
        "m",
        "-1",
        "1.5m",
        "8mb",
        "1t",
        "99999999999999999999",
        "18014398509481984k",
    ] {
        assert!(matches!(parse_size(bad), Err(InvalidSize { .. })), "{bad:?}");
    }
}

/// Given an ingress-nginx annotation Portico does not implement, UnsupportedAnnotation
/// says it has no effect, once per annotation; the Ingress still routes.
#[test]
fn unsupported_nginx_annotation_is_reported() {
    let c = backends()
        .with(
            ingress("default", "web")
                .annotation("nginx.ingress.kubernetes.io/enable-modsecurity", "true")
                .annotation("example.com/unrelated", "x")
                .host("a.com")
                .path("/", "Prefix", "web", 80),
        )
        .compile();
    assert!(c.hit("a.com", "/").is_some());
    assert_eq!(
        c.reasons(),
        [("default/web".to_string(), reason::UNSUPPORTED_ANNOTATION)]
    );
    assert!(c.diagnostics[0].message.contains("enable-modsecurity"));
}

/// Route labels carry the namespace, Ingress, Service, and host and path as written.
#[test]
fn route_meta_labels() {
    let c = backends()
        .with(
            ingress("default", "web")
                .host("*.Example.com")
                .path("/api/", "Prefix", "api", 80)
                .host("")
                .path("/", "Exact", "web", 80),
        )
        .compile();
    let want = RouteMeta {
        kind: ObjectKind::Ingress,
        namespace: "default".into(),
        ingress: "web".into(),
        service: "api".into(),
        host: "*.Example.com".into(),
        path: "/api/".into(),
        rule: Some(0),
        path_index: Some(0),
    };
    assert_eq!(c.route("x.example.com", "/api/v1").unwrap().meta, want);
    let catch_all = &c.route("other", "/").unwrap().meta;
    assert_eq!(catch_all.host, "");
    assert_eq!((catch_all.rule, catch_all.path_index), (Some(1), Some(0)));
}

/// Given the same objects in any order, the table answers every request the same way
/// and the diagnostics come out identical, in the same order.
#[test]
fn compile_is_deterministic() {
    let objects = || -> Vec<Object> {
        vec![
            service("default", "web").port("http", 80).into(),
            slice("default", "web", "web-b")
                .port(Some("http"), 8080)
                .endpoint("10.0.0.3", None)
                .into(),
            slice("default", "web", "web-a")
                .port(Some("http"), 8080)
                .endpoint("10.0.0.1", None)
                .endpoint("10.0.0.2", None)
                .into(),
            ingress("default", "a")
                .host("a.com")
                .path("/", "Prefix", "web", 80)
                .path("/x", "Exact", "missing", 80)
                .into(),
            ingress("default", "b")
                .host("a.com")
                .path("/", "Prefix", "web", 80)
                .host("bad host")
                .into(),
            ingress("team", "c")
                .host("*.a.com")
                .path("/", "Prefix", "nope", 80)
                .default_backend("web", 80)
                .into(),
            ingress("team", "d")
                .default_backend("gone", 80)
                .annotation(PROXY_BODY_SIZE, "x")
                .into(),
            ingress_class("portico", OURS).into(),
        ]
    };
    let compile_in = |order: &[usize]| {
        let objects = objects();
        order.iter().fold(world(), |w, &i| w.with(objects[i].clone())).compile()
    };
    let requests = [
        ("a.com", "/"),
        ("a.com", "/x"),
        ("b.a.com", "/q"),
        ("zzz", "/"),
        ("A.COM", "/y"),
    ];
    let observe = |c: &Compiled| {
        let routes: Vec<_> = requests
            .iter()
            .map(|(h, p)| {
                c.route(h, p)
                    .map(|r| (r.meta.clone(), r.backend.name.clone(), c.endpoints(h, p)))
            })
            .collect();
        (routes, c.diagnostics.clone(), c.table.route_count())
    };
    let first = observe(&compile_in(&[0, 1, 2, 3, 4, 5, 6, 7]));
    for order in [
        [7, 6, 5, 4, 3, 2, 1, 0],
        [3, 1, 6, 0, 7, 2, 5, 4],
        [5, 2, 7, 4, 1, 6, 3, 0],
    ] {
        assert_eq!(observe(&compile_in(&order)), first, "order {order:?}");
    }
    assert_eq!(
        first.0[0].as_ref().unwrap().2,
        ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
    );
}

/// The table carries the generation from the options.
#[test]
fn generation_comes_from_options() {
    let opts = CompileOptions {
        generation: 42,
        ..Default::default()
    };
    assert_eq!(world().compile_with(&opts).table.generation, 42);
}
