//! From Service references to endpoints.

use portico_dataplane::table::UpstreamProtocol;

use super::*;
use crate::compile::{Severity, reason};

fn app() -> ServiceBuilder {
    service("shop", "app").port("http", 80).port("metrics", 9090)
}

fn app_slice() -> SliceBuilder {
    slice("shop", "app", "app-1")
        .port(Some("metrics"), 9100)
        .port(Some("http"), 8080)
}

/// Given a backend port by number, the Service port's name picks the slice port, whose
/// number is the one dialled.
#[test]
fn port_by_number_resolves_through_slice_port_name() {
    let c = world()
        .with(app())
        .with(app_slice().endpoint("10.0.0.1", Some(true)))
        .with(ingress("shop", "web").host("a.com").path("/", "Prefix", "app", 80))
        .compile();
    assert_eq!(c.endpoints("a.com", "/"), ["10.0.0.1:8080"]);
    assert_eq!(c.route("a.com", "/").unwrap().backend.name, "shop/app:80");
    c.assert_clean();
}

/// Given a backend port by name, the Service port of that name is used.
#[test]
fn port_by_name_resolves() {
    let c = world()
        .with(app())
        .with(app_slice().endpoint("10.0.0.1", Some(true)))
        .with(
            ingress("shop", "web")
                .host("a.com")
                .path("/", "Prefix", "app", "metrics"),
        )
        .compile();
    assert_eq!(c.endpoints("a.com", "/"), ["10.0.0.1:9100"]);
    assert_eq!(c.route("a.com", "/").unwrap().backend.name, "shop/app:9090");
}

/// Given one Service port referenced by number and by name from two Ingresses, both
/// routes share one backend, so round robin spreads over their combined traffic.
#[test]
fn one_backend_per_service_port() {
    let c = world()
        .with(app())
        .with(app_slice().endpoint("10.0.0.1", Some(true)))
        .with(ingress("shop", "a").host("a.com").path("/", "Prefix", "app", 80))
        .with(ingress("shop", "b").host("b.com").path("/", "Prefix", "app", "http"))
        .compile();
    let (a, b) = (c.route("a.com", "/").unwrap(), c.route("b.com", "/").unwrap());
    assert!(Arc::ptr_eq(&a.backend, &b.backend));
    assert_eq!(c.table.backends().len(), 1);
}

/// Given an unnamed Service port, slice ports with no name or an empty name match it.
#[test]
fn unnamed_service_port_matches_unnamed_slice_port() {
    for name in [None, Some("")] {
        let c = world()
            .with(service("default", "solo").port("", 80))
            .with(
                slice("default", "solo", "solo-1")
                    .port(name, 3000)
                    .endpoint("10.0.0.9", None),
            )
            .with(ingress("default", "web").host("a.com").path("/", "Prefix", "solo", 80))
            .compile();
        assert_eq!(c.endpoints("a.com", "/"), ["10.0.0.9:3000"], "{name:?}");
    }
}

/// Given endpoints marked ready, unready and without a ready condition, only the
/// explicitly unready one is left out: the API defines a missing value as ready.
#[test]
fn ready_and_unset_endpoints_are_used() {
    let c = world()
        .with(app())
        .with(
            app_slice()
                .endpoint("10.0.0.1", Some(true))
                .endpoint("10.0.0.2", Some(false))
                .endpoint("10.0.0.3", None),
        )
        .with(ingress("shop", "web").host("a.com").path("/", "Prefix", "app", 80))
        .compile();
    assert_eq!(c.endpoints("a.com", "/"), ["10.0.0.1:8080", "10.0.0.3:8080"]);
}

/// Given endpoints spread over several slices (IPv4 and IPv6) with repeats, each
/// address appears once, in a stable order.
#[test]
fn endpoints_are_merged_sorted_and_unique() {
    let mut v6 = slice("shop", "app", "app-v6")
        .port(Some("http"), 8080)
        .endpoint("fd00::2", None);
    v6.0.address_type = "IPv6".into();
    let c = world()
        .with(app())
        .with(app_slice().endpoint("10.0.0.2", None).endpoint("10.0.0.1", None))
        .with(
            slice("shop", "app", "app-2")
                .port(Some("http"), 8080)
                .endpoint("10.0.0.2", None),
        )
        .with(v6)
        .with(ingress("shop", "web").host("a.com").path("/", "Prefix", "app", 80))
        .compile();
    assert_eq!(
        c.endpoints("a.com", "/"),
        ["10.0.0.1:8080", "10.0.0.2:8080", "[fd00::2]:8080"]
    );
}

/// Given slices of another Service or of the same Service name in another namespace,
/// none of their endpoints are used.
#[test]
fn slices_of_other_services_are_ignored() {
    let c = world()
        .with(app())
        .with(app_slice().endpoint("10.0.0.1", None))
        .with(
            slice("shop", "other", "other-1")
                .port(Some("http"), 8080)
                .endpoint("10.0.0.7", None),
        )
        .with(
            slice("elsewhere", "app", "app-1")
                .port(Some("http"), 8080)
                .endpoint("10.0.0.8", None),
        )
        .with(ingress("shop", "web").host("a.com").path("/", "Prefix", "app", 80))
        .compile();
    assert_eq!(c.endpoints("a.com", "/"), ["10.0.0.1:8080"]);
}

/// Given a Service port whose appProtocol is kubernetes.io/h2c, h2c or grpc, the
/// backend speaks HTTP/2 cleartext; anything else is HTTP/1.1.
#[test]
fn h2c_app_protocol() {
    for (app_protocol, want) in [
        ("kubernetes.io/h2c", UpstreamProtocol::H2c),
        ("h2c", UpstreamProtocol::H2c),
        ("grpc", UpstreamProtocol::H2c),
        ("http", UpstreamProtocol::Http1),
        ("kubernetes.io/ws", UpstreamProtocol::Http1),
    ] {
        let c = world()
            .with(service("default", "rpc").port("grpc", 50051).app_protocol(app_protocol))
            .with(
                ingress("default", "web")
                    .host("a.com")
                    .path("/", "Prefix", "rpc", 50051),
            )
            .compile();
        assert_eq!(c.route("a.com", "/").unwrap().backend.protocol, want, "{app_protocol}");
    }
}

/// Given a path to a Service that does not exist, the path answers 503 (a route with no
/// endpoints) instead of falling through to the catch-all, and says why.
#[test]
fn missing_service_answers_503() {
    let c = world()
        .backend("default", "fallback", &["10.0.0.1"])
        .with(
            ingress("default", "catch")
                .host("")
                .path("/", "Prefix", "fallback", 80)
                .created(1),
        )
        .with(
            ingress("default", "web")
                .host("")
                .path("/api", "Prefix", "api", 80)
                .created(2),
        )
        .compile();
    let route = c.route("any.host", "/api/users").unwrap();
    assert_eq!(route.meta.ingress, "web");
    assert!(route.backend.endpoints.is_empty());
    assert_eq!(route.backend.name, "default/api:80");
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::SERVICE_NOT_FOUND)]);
    assert_eq!(
        c.diagnostics[0].to_string(),
        r#"Ingress default/web: ServiceNotFound: service "api" not found"#
    );
}

/// Given a port the Service does not have, by number or by name, the path answers 503
/// and the diagnostic names the port.
#[test]
fn unknown_port_answers_503() {
    let c = world()
        .with(app())
        .with(
            ingress("shop", "web")
                .host("a.com")
                .path("/n", "Prefix", "app", 81)
                .path("/s", "Prefix", "app", "grpc"),
        )
        .compile();
    assert!(c.endpoints("a.com", "/n").is_empty());
    assert!(c.endpoints("a.com", "/s").is_empty());
    let messages: Vec<_> = c.diagnostics.iter().map(|d| (d.reason, d.message.as_str())).collect();
    assert_eq!(
        messages,
        [
            (reason::PORT_NOT_FOUND, r#"service "app" has no port 81"#),
            (reason::PORT_NOT_FOUND, r#"service "app" has no port named "grpc""#),
        ]
    );
}

/// Given a Service with no ready endpoints, the path answers 503 and the diagnostic is
/// informational, not a warning: scaling to zero is not a mistake in the Ingress.
#[test]
fn no_ready_endpoints_is_informational() {
    let c = world()
        .with(app())
        .with(app_slice().endpoint("10.0.0.1", Some(false)))
        .with(
            ingress("shop", "web")
                .host("a.com")
                .path("/", "Prefix", "app", 80)
                .path("/x", "Exact", "app", 80),
        )
        .compile();
    assert!(c.endpoints("a.com", "/").is_empty());
    assert_eq!(c.reasons(), [("shop/web".to_string(), reason::NO_READY_ENDPOINTS)]);
    assert_eq!(c.diagnostics[0].severity, Severity::Normal);
    assert!(!c.diagnostics[0].is_warning());
}

/// Given an ExternalName Service, the path answers 503 with an UnsupportedBackend warning.
#[test]
fn external_name_service_is_unsupported() {
    let c = world()
        .with(
            service("default", "ext")
                .external_name("api.example.net")
                .port("https", 443),
        )
        .with(ingress("default", "web").host("a.com").path("/", "Prefix", "ext", 443))
        .compile();
    assert!(c.endpoints("a.com", "/").is_empty());
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::UNSUPPORTED_BACKEND)]);
    assert!(
        c.diagnostics[0]
            .message
            .contains("ExternalName services are not supported yet")
    );
}

/// Given a resource backend, the rule is skipped with UnsupportedBackend and the other
/// paths of the Ingress still work.
#[test]
fn resource_backend_is_skipped() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .with(
            ingress("default", "web")
                .host("a.com")
                .resource_path("/static", "Prefix", "StorageBucket", "assets")
                .path("/", "Prefix", "web", 80),
        )
        .compile();
    assert_eq!(c.endpoints("a.com", "/static/x"), ["10.0.0.1:8080"]);
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::UNSUPPORTED_BACKEND)]);
    assert_eq!(c.table.route_count(), 1);
}

/// Given a Service port referenced without any port, or with both number and name, the
/// path answers 503 with InvalidBackend.
#[test]
fn backend_port_must_be_number_or_name() {
    let mut ing = ingress("shop", "web")
        .host("a.com")
        .path("/none", "Prefix", "app", 80)
        .path("/both", "Prefix", "app", 80);
    let paths = &mut ing.spec().rules.as_mut().unwrap()[0].http.as_mut().unwrap().paths;
    paths[0].backend.service.as_mut().unwrap().port = None;
    paths[1].backend.service.as_mut().unwrap().port.as_mut().unwrap().name = Some("http".into());
    let c = world().with(app()).with(ing).compile();
    assert!(c.endpoints("a.com", "/none").is_empty());
    assert!(c.endpoints("a.com", "/both").is_empty());
    let reasons: Vec<_> = c.diagnostics.iter().map(|d| d.reason).collect();
    assert_eq!(reasons, [reason::INVALID_BACKEND, reason::INVALID_BACKEND]);
}
