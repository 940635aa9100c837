//! The Kubernetes objects tests create, written the way a user writes them.
//!
//! Every backend Service has one port, `http` 80 → 8080, and the tests create its
//! EndpointSlice themselves: there is no controller-manager in the e2e cluster.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};

use crate::INGRESS_CLASS;

/// The port every echo backend listens on.
pub const BACKEND_PORT: u16 = 8080;

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a well-formed object")
}

/// A ClusterIP Service `name` with port `http` 80 → 8080.
pub fn service(name: &str) -> Service {
    typed(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": BACKEND_PORT, "protocol": "TCP"}],
        },
    }))
}

/// EndpointSlice `name` of Service `service`: one ready endpoint per address, port
/// `http` 8080.
pub fn endpoint_slice(name: &str, service: &str, addrs: &[Ipv4Addr]) -> EndpointSlice {
    let endpoints: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"addresses": [a.to_string()], "conditions": {"ready": true}}))
        .collect();
    typed(json!({
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "portico-e2e",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": BACKEND_PORT, "protocol": "TCP"}],
    }))
}

/// One path of an Ingress rule: `(path, pathType, service)`, service port 80.
pub type Path<'a> = (&'a str, &'a str, &'a str);

/// Ingress `name` of class `portico`: one rule for `host` with `paths`.
pub fn ingress(name: &str, host: &str, paths: &[Path<'_>]) -> Ingress {
    ingress_of_class(name, Some(INGRESS_CLASS), host, paths)
}

/// Like [`ingress`], with another `spec.ingressClassName` (or none).
pub fn ingress_of_class(name: &str, class: Option<&str>, host: &str, paths: &[Path<'_>]) -> Ingress {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(path, kind, svc)| {
            json!({
                "path": path,
                "pathType": kind,
                "backend": {"service": {"name": svc, "port": {"number": 80}}},
            })
        })
        .collect();
    let mut spec = json!({"rules": [{"host": host, "http": {"paths": paths}}]});
    if let Some(class) = class {
        spec["ingressClassName"] = json!(class);
    }
    typed(json!({"metadata": {"name": name}, "spec": spec}))
}

/// An IngressClass `name` whose `spec.controller` is `controller`.
pub fn ingress_class(name: &str, controller: &str) -> IngressClass {
    typed(json!({"metadata": {"name": name}, "spec": {"controller": controller}}))
}
