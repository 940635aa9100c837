//! BackendTLSPolicy (Gateway API v1.6.3, `apis/v1/backendtlspolicy_types.go`): which
//! policy a Service port gets, what the backend speaks, and the policy's status.

use portico_dataplane::table::{RoutingTable, UpstreamProtocol};

use crate::compile::{CompileOptions, compile, gateway_status};
use crate::gateway_api::Condition;
use crate::snapshot::Snapshot;

/// A self-signed CA certificate (PEM), indented for a YAML block scalar.
fn ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
    cert.pem().lines().map(|l| format!("    {l}\n")).collect()
}

/// A Gateway, a Service `tls` with ports `https` (443) and `other` (8443), an
/// HTTPRoute sending /a to port 443 and /b to port 8443, the ConfigMap `ca` holding a
/// CA, and `policies`.
fn snapshot(policies: &str) -> Snapshot {
    let ca = ca_pem();
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portico}}
spec: {{controllerName: portico.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: portico
  listeners: [{{name: http, port: 8080, protocol: HTTP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: tls, namespace: default}}
spec: {{ports: [{{name: https, port: 443}}, {{name: other, port: 8443}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: Exact, value: /a}}}}]
    backendRefs: [{{name: tls, port: 443}}]
  - matches: [{{path: {{type: Exact, value: /b}}}}]
    backendRefs: [{{name: tls, port: 8443}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: ca, namespace: default}}
data:
  ca.crt: |
{ca}
---
{policies}"#
    );
    crate::file::parse(&yaml).unwrap()
}

fn policy(name: &str, created: &str, target: &str, validation: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, namespace: default, generation: 4, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{target}]\n  validation: {validation}\n---\n"
    )
}

const CA: &str = "{caCertificateRefs: [{group: '', kind: ConfigMap, name: ca}], hostname: abc.example.com}";
const SERVICE: &str = "{group: '', kind: Service, name: tls}";
const PORT_443: &str = "{group: '', kind: Service, name: tls, sectionName: https}";

/// What /a and /b are sent as: protocol and the verified server name, or `500`.
fn backends(s: &Snapshot) -> Vec<String> {
    let (table, _) = compile(s, &CompileOptions::default());
    ["/a", "/b"].iter().map(|p| backend(&table, p)).collect()
}

fn backend(table: &RoutingTable, path: &str) -> String {
    let route = table.listener(8080).unwrap().table.lookup("x.example", path).unwrap();
    let b = &route.backend;
    if b.name.ends_with(":backend-tls-policy-invalid") {
        return "500".to_string();
    }
    match (&b.protocol, &b.tls) {
        (UpstreamProtocol::Https, Some(tls)) if tls.verified => format!("https {:?}", tls.server_name),
        (p, _) => format!("{p:?}"),
    }
}

/// `(type, status, reason)` of each condition of the policy's one ancestor, and its
/// observedGeneration.
fn conditions(s: &Snapshot, name: &str) -> Vec<(String, String, String, Option<i64>)> {
    let status = gateway_status(s, &CompileOptions::default());
    let (_, _, st) = status.backend_tls_policies.iter().find(|(_, n, _)| n == name).unwrap();
    assert_eq!(st.ancestors.len(), 1);
    assert_eq!(st.ancestors[0].ancestor_ref.name, "gw");
    assert_eq!(st.ancestors[0].ancestor_ref.kind.as_deref(), Some("Gateway"));
    let f = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.observed_generation,
        )
    };
    st.ancestors[0].conditions.iter().map(f).collect()
}

fn cond(type_: &str, status: &str, reason: &str) -> (String, String, String, Option<i64>) {
    (type_.into(), status.into(), reason.into(), Some(4))
}

/// A policy on a Service makes its ports HTTPS, verified for validation.hostname;
/// without one the backend stays cleartext.
#[test]
fn a_policy_turns_the_service_into_verified_https() {
    assert_eq!(backends(&snapshot("")), ["Http1", "Http1"]);
    let s = snapshot(&policy("p", "2026-01-01T00:00:00Z", SERVICE, CA));
    assert_eq!(
        backends(&s),
        [
            r#"https DnsName("abc.example.com")"#,
            r#"https DnsName("abc.example.com")"#
        ]
    );
    assert_eq!(
        conditions(&s, "p"),
        [
            cond("Accepted", "True", "Accepted"),
            cond("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
}

/// sectionName is a port's name: the policy covers that port only.
#[test]
fn section_name_selects_one_port() {
    let s = snapshot(&policy("p", "2026-01-01T00:00:00Z", PORT_443, CA));
    assert_eq!(backends(&s), [r#"https DnsName("abc.example.com")"#, "Http1"]);
}

/// "When more than one BackendTLSPolicy selects the same target and sectionName ...
/// the older policy by creation timestamp takes precedence"; the other is Conflicted.
#[test]
fn the_older_policy_wins_a_conflict() {
    let other = CA.replace("abc.example.com", "other.example.com");
    let s = snapshot(&format!(
        "{}{}",
        policy("a-newer", "2026-01-02T00:00:00Z", SERVICE, CA),
        policy("z-older", "2026-01-01T00:00:00Z", SERVICE, &other)
    ));
    assert_eq!(backends(&s)[0], r#"https DnsName("other.example.com")"#);
    assert_eq!(conditions(&s, "z-older")[0], cond("Accepted", "True", "Accepted"));
    assert_eq!(conditions(&s, "a-newer")[0], cond("Accepted", "False", "Conflicted"));
}

/// At equal age, the first by namespace/name wins.
#[test]
fn at_equal_age_the_first_name_wins() {
    let other = CA.replace("abc.example.com", "other.example.com");
    let s = snapshot(&format!(
        "{}{}",
        policy("p2", "2026-01-01T00:00:00Z", SERVICE, CA),
        policy("p1", "2026-01-01T00:00:00Z", SERVICE, &other)
    ));
    assert_eq!(backends(&s)[0], r#"https DnsName("other.example.com")"#);
    assert_eq!(conditions(&s, "p2")[0], cond("Accepted", "False", "Conflicted"));
}

/// A policy on a port and one on the whole Service do not conflict: the port's is used
/// for that port, the Service's for the others.
#[test]
fn a_port_policy_and_a_service_policy_coexist() {
    let other = CA.replace("abc.example.com", "other.example.com");
    let s = snapshot(&format!(
        "{}{}",
        policy("whole", "2026-01-01T00:00:00Z", SERVICE, CA),
        policy("port", "2026-01-02T00:00:00Z", PORT_443, &other)
    ));
    assert_eq!(
        backends(&s),
        [
            r#"https DnsName("other.example.com")"#,
            r#"https DnsName("abc.example.com")"#
        ]
    );
    assert_eq!(conditions(&s, "whole")[0], cond("Accepted", "True", "Accepted"));
    assert_eq!(conditions(&s, "port")[0], cond("Accepted", "True", "Accepted"));
}

/// A missing ConfigMap, or one without ca.crt: ResolvedRefs False
/// InvalidCACertificateRef, Accepted False NoValidCACertificate, and requests fail
/// with a 5xx rather than going out unverified.
#[test]
fn an_unresolvable_ca_certificate_ref_fails_requests() {
    for name in ["missing", "empty"] {
        let validation = CA.replace("name: ca}", &format!("name: {name}}}"));
        let s = snapshot(&format!(
            "{}apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: empty, namespace: default}}\ndata: {{}}\n",
            policy("p", "2026-01-01T00:00:00Z", SERVICE, &validation)
        ));
        assert_eq!(backends(&s), ["500", "500"], "{name}");
        assert_eq!(
            conditions(&s, "p"),
            [
                cond("Accepted", "False", "NoValidCACertificate"),
                cond("ResolvedRefs", "False", "InvalidCACertificateRef")
            ],
            "{name}"
        );
    }
}

/// A caCertificateRef of another kind than ConfigMap: ResolvedRefs False InvalidKind.
#[test]
fn a_ca_certificate_ref_of_another_kind_is_invalid_kind() {
    let validation = CA.replace("group: '', kind: ConfigMap", "group: invalid.io, kind: InvalidKind");
    let s = snapshot(&policy("p", "2026-01-01T00:00:00Z", SERVICE, &validation));
    assert_eq!(backends(&s), ["500", "500"]);
    assert_eq!(
        conditions(&s, "p"),
        [
            cond("Accepted", "False", "NoValidCACertificate"),
            cond("ResolvedRefs", "False", "InvalidKind")
        ]
    );
}

/// One valid reference among invalid ones: the policy is Accepted and verifies with
/// the valid one; ResolvedRefs says which is not.
#[test]
fn one_valid_ca_certificate_ref_is_enough_to_be_accepted() {
    let validation = "{caCertificateRefs: [{group: '', kind: ConfigMap, name: missing}, {group: '', kind: ConfigMap, name: ca}], hostname: abc.example.com}";
    let s = snapshot(&policy("p", "2026-01-01T00:00:00Z", SERVICE, validation));
    assert_eq!(backends(&s)[0], r#"https DnsName("abc.example.com")"#);
    assert_eq!(
        conditions(&s, "p"),
        [
            cond("Accepted", "True", "Accepted"),
            cond("ResolvedRefs", "False", "InvalidCACertificateRef")
        ]
    );
}

/// wellKnownCACertificates other than System: Accepted False, Invalid.
#[test]
fn an_unknown_well_known_set_is_invalid() {
    let validation = "{wellKnownCACertificates: example.com/mine, hostname: abc.example.com}";
    let s = snapshot(&policy("p", "2026-01-01T00:00:00Z", SERVICE, validation));
    assert_eq!(backends(&s), ["500", "500"]);
    assert_eq!(conditions(&s, "p")[0], cond("Accepted", "False", "Invalid"));
}

/// A policy no route of Portico's reaches has no ancestor, so Portico writes nothing.
#[test]
fn a_policy_on_an_unrouted_service_has_no_status() {
    let target = "{group: '', kind: Service, name: elsewhere}";
    let s = snapshot(&policy("p", "2026-01-01T00:00:00Z", target, CA));
    let status = gateway_status(&s, &CompileOptions::default());
    assert!(status.backend_tls_policies.is_empty());
}
