//! BackendTLSPolicy (Gateway API v1.6.3, GEP-1897): which policy applies to each
//! Service port a route forwards to, and what TLS it asks for.
//!
//! ```text
//!  BackendTLSPolicy ─ targetRefs (Service, sectionName = port name) ─▶ Service port
//!                   ─ validation.caCertificateRefs ─▶ ConfigMap `ca.crt` (same namespace)
//!                   ─ validation.wellKnownCACertificates: System
//!                   ─ validation.hostname (SNI; the name verified unless subjectAltNames)
//! ```
//!
//! Several policies on one target (Service and sectionName): the oldest, then the first
//! by namespace/name, takes it; the others are `Accepted: False`, `Conflicted`. A
//! policy naming a port (sectionName) applies to that port before one naming the whole
//! Service. A policy that cannot verify anything (no valid CA certificate, an unknown
//! well-known set) still holds its targets, and requests to them fail with 500: the
//! spec never lets such a backend be spoken to unverified or in cleartext.

use std::collections::HashMap;

use portico_dataplane::tls::{SubjectAltName, UpstreamTls, UpstreamTlsSettings};

use super::Outcome;
use crate::compile::{age_key, namespace_of};
use crate::gateway_api::{BackendObjectReference, BackendTLSPolicy, LocalObjectReference};
use crate::snapshot::Snapshot;

/// One policy as analysed.
#[derive(Clone, Debug)]
pub struct PolicyState<'a> {
    pub policy: &'a BackendTLSPolicy,
    pub namespace: &'a str,
    pub name: &'a str,
    /// `Conflicted`, `NoValidCACertificate`, `Invalid`.
    pub accepted: Outcome,
    /// `InvalidKind`, `InvalidCACertificateRef`.
    pub resolved_refs: Outcome,
    /// The TLS to speak; `None`: requests to its targets fail (500).
    pub settings: Option<UpstreamTlsSettings>,
}

/// Every BackendTLSPolicy of a snapshot, and which one holds each target.
#[derive(Clone, Debug, Default)]
pub struct BackendTls<'a> {
    pub policies: Vec<PolicyState<'a>>,
    /// (namespace, Service, sectionName) to the index of the policy that holds it.
    holders: HashMap<(&'a str, &'a str, Option<&'a str>), usize>,
    snapshot: Option<&'a Snapshot>,
}

impl<'a> BackendTls<'a> {
    pub fn new(snapshot: &'a Snapshot) -> Self {
        let mut sorted: Vec<&BackendTLSPolicy> = snapshot.backend_tls_policies.iter().collect();
        sorted.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
        let mut out = BackendTls {
            snapshot: Some(snapshot),
            ..BackendTls::default()
        };
        for policy in sorted {
            let namespace = namespace_of(&policy.metadata);
            let mut state = analyse(snapshot, policy, namespace);
            let targets: Vec<_> = policy
                .spec
                .target_refs
                .iter()
                .filter(|t| t.group.is_empty() && t.kind == "Service")
                .map(|t| (namespace, t.name.as_str(), t.section_name.as_deref()))
                .collect();
            let taken = targets
                .iter()
                .find_map(|t| out.holders.get(t).map(|&i| &out.policies[i]));
            if let Some(holder) = taken {
                // GEP-713 conflict resolution: the older policy keeps the target.
                state.accepted = Err((
                    "Conflicted",
                    format!(
                        "BackendTLSPolicy {}/{} targets the same Service and port and takes precedence",
                        holder.namespace, holder.name
                    ),
                ));
                state.settings = None;
            } else {
                let index = out.policies.len();
                for t in targets {
                    out.holders.insert(t, index);
                }
            }
            out.policies.push(state);
        }
        out
    }

    /// The policy for `backend` (a Service) of a route in `route_namespace`: the one
    /// holding its port by name, else the one holding the whole Service.
    pub fn for_backend(&self, backend: &BackendObjectReference, route_namespace: &str) -> Option<&PolicyState<'a>> {
        let (namespace, service, port_name) = self.target_of(backend, route_namespace)?;
        let by_port = port_name.and_then(|p| self.holders.get(&(namespace, service, Some(p))));
        by_port
            .or_else(|| self.holders.get(&(namespace, service, None)))
            .map(|&i| &self.policies[i])
    }

    /// Whether `policy` targets `backend`, held or not (its status names the Gateways
    /// such backends are served through, Conflicted ones included).
    pub fn targets(&self, policy: &PolicyState<'_>, backend: &BackendObjectReference, route_namespace: &str) -> bool {
        let Some((namespace, service, port_name)) = self.target_of(backend, route_namespace) else {
            return false;
        };
        namespace == policy.namespace
            && policy.policy.spec.target_refs.iter().any(|t| {
                t.group.is_empty()
                    && t.kind == "Service"
                    && t.name == service
                    && t.section_name.as_deref().is_none_or(|s| Some(s) == port_name)
            })
    }

    /// (namespace, Service, port name) of a Service backendRef.
    fn target_of<'r>(
        &self,
        backend: &'r BackendObjectReference,
        route_namespace: &'r str,
    ) -> Option<(&'r str, &'r str, Option<&'a str>)> {
        let group = backend.group.as_deref().unwrap_or_default();
        let kind = backend.kind.as_deref().unwrap_or("Service");
        if !group.is_empty() || kind != "Service" {
            return None;
        }
        let namespace = backend.namespace.as_deref().unwrap_or(route_namespace);
        let service = self.snapshot?.services.iter().find(|s| {
            namespace_of(&s.metadata) == namespace && s.metadata.name.as_deref() == Some(backend.name.as_str())
        })?;
        let port_name = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| Some(p.port) == backend.port))
            .and_then(|p| p.name.as_deref());
        Some((namespace, backend.name.as_str(), port_name))
    }
}

/// A policy's own validity: its CA certificates, well-known set, hostname and names.
fn analyse<'a>(snapshot: &'a Snapshot, policy: &'a BackendTLSPolicy, namespace: &'a str) -> PolicyState<'a> {
    let mut state = PolicyState {
        policy,
        namespace,
        name: policy.metadata.name.as_deref().unwrap_or_default(),
        accepted: Ok(()),
        resolved_refs: Ok(()),
        settings: None,
    };
    let v = &policy.spec.validation;
    let invalid = |message: String| Err(("Invalid", message));
    let hostname = v.hostname.trim_end_matches('.');
    let mut settings = UpstreamTlsSettings::new(hostname);
    if hostname.is_empty() || hostname.parse::<std::net::IpAddr>().is_ok() || hostname.contains('*') {
        state.accepted = invalid(format!("validation.hostname {:?} is not a DNS name", v.hostname));
        return state;
    }
    for san in &v.subject_alt_names {
        match san.type_.as_str() {
            "Hostname" if !san.hostname.is_empty() => {
                settings
                    .subject_alt_names
                    .push(SubjectAltName::Dns(san.hostname.clone()));
            }
            "URI" if san.uri.contains(':') => settings.subject_alt_names.push(SubjectAltName::Uri(san.uri.clone())),
            other => {
                state.accepted = invalid(format!("subjectAltNames: type {other:?} without its value"));
                return state;
            }
        }
    }
    match (
        v.ca_certificate_refs.is_empty(),
        v.well_known_ca_certificates.as_deref(),
    ) {
        (false, Some(_)) => {
            state.accepted = invalid("caCertificateRefs and wellKnownCACertificates are both set".to_string());
        }
        (true, None) => {
            state.accepted = invalid("neither caCertificateRefs nor wellKnownCACertificates is set".to_string());
        }
        (true, Some("System")) => settings.system_roots = true,
        (true, Some(other)) => {
            state.accepted = invalid(format!(
                "wellKnownCACertificates {other:?} is not supported; Portico knows System"
            ));
        }
        (false, None) => {
            let mut bundle = Vec::new();
            for r in &v.ca_certificate_refs {
                match ca_certificate(snapshot, namespace, r) {
                    Ok(pem) => {
                        bundle.extend_from_slice(pem.as_bytes());
                        bundle.push(b'\n');
                    }
                    Err(problem) if state.resolved_refs.is_ok() => state.resolved_refs = Err(problem),
                    Err(_) => {}
                }
            }
            if bundle.is_empty() {
                state.accepted = Err((
                    "NoValidCACertificate",
                    "no caCertificateRef resolves to a valid CA certificate".to_string(),
                ));
            } else {
                settings.verify_with = Some(bundle);
            }
        }
    }
    if state.accepted.is_ok() {
        // Built once here to catch what the dataplane would refuse (no system CAs).
        match UpstreamTls::build(&settings) {
            Ok(_) => state.settings = Some(settings),
            Err(e) => state.accepted = invalid(format!("the TLS settings cannot be used: {e}")),
        }
    }
    state
}

/// The PEM of `ca.crt` of the ConfigMap `r` names, or why it cannot be used.
fn ca_certificate<'a>(
    snapshot: &'a Snapshot,
    namespace: &str,
    r: &LocalObjectReference,
) -> Result<&'a str, (&'static str, String)> {
    if !r.group.is_empty() || r.kind != "ConfigMap" {
        let group = if r.group.is_empty() { "core" } else { r.group.as_str() };
        return Err((
            "InvalidKind",
            format!(
                "caCertificateRef {:?} is a {group}/{}; Portico reads CA certificates from ConfigMaps",
                r.name, r.kind
            ),
        ));
    }
    let bad = |why: &str| {
        Err((
            "InvalidCACertificateRef",
            format!("ConfigMap {namespace}/{} {why}", r.name),
        ))
    };
    let found = (snapshot.ca_config_maps.iter())
        .chain(&snapshot.config_maps)
        .find(|c| namespace_of(&c.metadata) == namespace && c.metadata.name.as_deref() == Some(r.name.as_str()));
    let Some(config_map) = found else {
        return bad("does not exist");
    };
    let Some(pem) = config_map.data.as_ref().and_then(|d| d.get("ca.crt")) else {
        return bad("has no ca.crt");
    };
    if let Err(e) = UpstreamTls::verified(pem.as_bytes(), "portico.invalid") {
        return bad(&format!("has no usable certificate in ca.crt: {e}"));
    }
    Ok(pem)
}
