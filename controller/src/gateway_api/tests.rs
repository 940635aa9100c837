use super::*;

/// A Gateway written for a newer API version (unknown fields, an unknown protocol)
/// still reads: what Portico cannot serve is a status condition, not a parse error.
#[test]
fn unknown_fields_and_values_are_read_leniently() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: portico
  infrastructure: {labels: {a: b}}
  listeners:
  - name: web
    port: 80
    protocol: HTTP
    futureField: 1
    allowedRoutes:
      namespaces: {from: Selector, selector: {matchLabels: {team: a}}}
  - name: mq
    port: 5672
    protocol: example.com/amqp
"#;
    let gw: Gateway = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(gw.spec.listeners.len(), 2);
    assert_eq!(gw.spec.listeners[1].protocol, "example.com/amqp");
    let from = gw.spec.listeners[0]
        .allowed_routes
        .as_ref()
        .unwrap()
        .namespaces
        .as_ref()
        .unwrap();
    assert_eq!(from.from.as_deref(), Some("Selector"));
}

/// backendRefs carry the reference fields inline next to `weight`, as the API writes
/// them (`BackendRef` inlines `BackendObjectReference`).
#[test]
fn backend_refs_are_inline() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw, sectionName: web}]
  rules:
  - matches: [{path: {type: Exact, value: /a}, method: GET}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: x.example}}]
    backendRefs: [{name: svc, port: 8080, weight: 3}]
"#;
    let r: HTTPRoute = serde_saphyr::from_str(yaml).unwrap();
    let b = &r.spec.rules[0].backend_refs[0];
    assert_eq!(
        (b.backend.name.as_str(), b.backend.port, b.weight),
        ("svc", Some(8080), Some(3))
    );
    assert_eq!(
        r.spec.rules[0].filters[0]
            .url_rewrite
            .as_ref()
            .unwrap()
            .hostname
            .as_deref(),
        Some("x.example")
    );
    assert_eq!(r.spec.parent_refs[0].section_name.as_deref(), Some("web"));
}

/// File mode reads every Gateway API kind, fields it does not model included (a
/// cluster's API server would accept them), and namespaces them as kubectl would.
#[test]
fn file_mode_reads_gateway_api_kinds() {
    let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portico}
spec: {controllerName: portico.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: portico
  infrastructure: {labels: {a: b}}
  listeners: [{name: web, port: 8080, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: svc, port: 80}], sessionPersistence: {sessionName: s}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec: {parentRefs: [{name: gw}]}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: rg, namespace: other}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
"#;
    let snapshot = crate::file::parse(yaml).unwrap();
    assert_eq!(snapshot.gateway_classes.len(), 1);
    assert_eq!(snapshot.gateways[0].metadata.namespace.as_deref(), Some("default"));
    assert_eq!(snapshot.http_routes.len(), 1);
    assert_eq!(snapshot.grpc_routes.len(), 1);
    assert_eq!(snapshot.reference_grants[0].spec.to[0].kind, "Service");
}
