//! Gateway API semantics, pure: which GatewayClasses and Gateways are Portico's, what
//! each listener is (protocol, internal port, hostname, certificates, allowed routes,
//! conflicts), and where each HTTPRoute attaches. [`Analysis`] is computed once from a
//! snapshot; the compile lowers the attached routes into each listener's table and
//! [`status`] turns the same analysis into the desired `status` of every object, so
//! what is served and what status says cannot disagree.
//!
//! ```text
//!  GatewayClass (controllerName ours?) ◀─ Gateway (oldest first) ─ listeners ─▶ internal ports
//!                                                    ▲
//!  HTTPRoute ─ parentRefs (name, namespace, sectionName, port) ─ allowedRoutes, hostnames
//!            ─ backendRefs (Service, ReferenceGrant across namespaces)
//!                          ◀─ BackendTLSPolicy (TLS to the Service's endpoints)
//! ```

mod attach;
mod backend_tls;
mod isolation;
mod ports;
pub mod status;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use portico_dataplane::table::{HostMatch, ListenerProtocol};

#[cfg(test)]
pub use attach::intersect;
pub use attach::{RouteObject, RouteState, unsupported_backend_filter, unsupported_filter};
pub use backend_tls::BackendTls;
pub use isolation::reserves_hostname;
pub use ports::gateway_ports;

use super::tls::Certificates;
use super::{CompileOptions, age_key, namespace_of};
use crate::gateway_api::{GROUP, Gateway, GatewayClass, Listener, ReferenceGrant, RouteGroupKind};
use crate::snapshot::Snapshot;

/// A condition's outcome: `Ok` or `(reason, message)`.
pub type Outcome = Result<(), (&'static str, String)>;

/// One listener as analysed.
#[derive(Debug)]
pub struct ListenerState<'a> {
    pub listener: &'a Listener,
    /// `None`: a protocol Portico does not serve.
    pub protocol: Option<ListenerProtocol>,
    /// The port the proxy binds for it; `None` when none could be had.
    pub internal_port: Option<u16>,
    pub hostname: Option<HostMatch>,
    /// The route kinds it accepts (the valid ones of `allowedRoutes.kinds`).
    pub supported_kinds: Vec<RouteGroupKind>,
    pub accepted: Outcome,
    pub resolved_refs: Outcome,
    /// `Some((reason, message))` when another listener of the Gateway conflicts.
    pub conflicted: Option<(&'static str, String)>,
    /// `namespace/name` of the TLS Secrets it serves.
    pub certificates: Vec<(String, String)>,
    /// Routes attached to it.
    pub attached_routes: i32,
}

impl ListenerState<'_> {
    /// Whether routes may attach and traffic is served.
    pub fn usable(&self) -> bool {
        self.accepted.is_ok() && self.conflicted.is_none() && self.internal_port.is_some()
    }
}

/// One Gateway of a Portico class.
#[derive(Debug)]
pub struct GatewayState<'a> {
    pub gateway: &'a Gateway,
    pub namespace: &'a str,
    pub name: &'a str,
    pub listeners: Vec<ListenerState<'a>>,
}

/// Everything Gateway API status and the listener tables need, from one snapshot.
#[derive(Debug)]
pub struct Analysis<'a> {
    /// The classes naming Portico's controller.
    pub classes: Vec<&'a GatewayClass>,
    /// Their Gateways, oldest first.
    pub gateways: Vec<GatewayState<'a>>,
    /// HTTPRoutes and GRPCRoutes naming at least one of those Gateways, in precedence order (oldest,
    /// then namespace/name).
    pub routes: Vec<RouteState<'a>>,
    /// BackendTLSPolicies, and which holds each Service port.
    pub backend_tls: BackendTls<'a>,
}

/// The route kinds Portico attaches to HTTP and HTTPS listeners.
const ROUTE_KINDS: &[&str] = &["HTTPRoute", "GRPCRoute"];

/// Kinds a listener of `protocol` accepts by default: both, on HTTP and HTTPS alike
/// (gRPC is served over HTTP/2 on either).
fn default_kinds(protocol: ListenerProtocol) -> Vec<RouteGroupKind> {
    let _ = protocol;
    ROUTE_KINDS
        .iter()
        .map(|kind| RouteGroupKind {
            group: Some(GROUP.to_string()),
            kind: kind.to_string(),
        })
        .collect()
}

impl<'a> Analysis<'a> {
    pub fn new(snapshot: &'a Snapshot, opts: &CompileOptions, certificates: &mut Certificates<'a>) -> Self {
        let classes: Vec<&GatewayClass> = snapshot
            .gateway_classes
            .iter()
            .filter(|c| c.spec.controller_name == opts.gateway_controller_name)
            .collect();
        let owned = |class: &str| classes.iter().any(|c| c.metadata.name.as_deref() == Some(class));
        let mut gateways: Vec<&Gateway> = snapshot
            .gateways
            .iter()
            .filter(|g| owned(&g.spec.gateway_class_name))
            .filter(|g| {
                opts.watch_namespace
                    .as_deref()
                    .is_none_or(|ns| namespace_of(&g.metadata) == ns)
            })
            .collect();
        gateways.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
        let grants = Grants(&snapshot.reference_grants);
        let mut gateways: Vec<GatewayState<'a>> = gateways
            .into_iter()
            .map(|g| gateway_state(g, &grants, certificates))
            .collect();
        ports::allocate(&mut gateways, opts);
        let routes = attach::attach(snapshot, opts, &mut gateways, &grants);
        Analysis {
            classes,
            gateways,
            routes,
            backend_tls: BackendTls::new(snapshot),
        }
    }
}

fn gateway_state<'a>(
    gateway: &'a Gateway,
    grants: &Grants<'_>,
    certificates: &mut Certificates<'a>,
) -> GatewayState<'a> {
    let namespace = namespace_of(&gateway.metadata);
    let mut listeners: Vec<ListenerState<'a>> = gateway
        .spec
        .listeners
        .iter()
        .map(|l| listener_state(namespace, l, grants, certificates))
        .collect();
    conflicts(&mut listeners);
    GatewayState {
        gateway,
        namespace,
        name: gateway.metadata.name.as_deref().unwrap_or_default(),
        listeners,
    }
}

fn listener_state<'a>(
    namespace: &str,
    listener: &'a Listener,
    grants: &Grants<'_>,
    certificates: &mut Certificates<'a>,
) -> ListenerState<'a> {
    let mut state = ListenerState {
        listener,
        protocol: None,
        internal_port: None,
        hostname: None,
        supported_kinds: Vec::new(),
        accepted: Ok(()),
        resolved_refs: Ok(()),
        conflicted: None,
        certificates: Vec::new(),
        attached_routes: 0,
    };
    let protocol = match listener.protocol.as_str() {
        "HTTP" => ListenerProtocol::Http,
        "HTTPS" => ListenerProtocol::Https,
        other => {
            state.accepted = Err((
                "UnsupportedProtocol",
                format!("protocol {other:?} is not supported; Portico serves HTTP and HTTPS"),
            ));
            return state;
        }
    };
    state.protocol = Some(protocol);
    if !(1..=65535).contains(&listener.port) {
        state.accepted = Err(("PortUnavailable", format!("port {} is not a valid port", listener.port)));
    }
    if let Some(h) = listener.hostname.as_deref().filter(|h| !h.is_empty()) {
        match HostMatch::parse(h) {
            Ok(host) => state.hostname = Some(host),
            Err(e) => state.accepted = Err(("UnsupportedValue", e.to_string())),
        }
    }
    // allowedRoutes.kinds: the supported ones stay; any other is InvalidRouteKinds.
    let wanted = listener
        .allowed_routes
        .as_ref()
        .map(|a| a.kinds.as_slice())
        .unwrap_or_default();
    if wanted.is_empty() {
        state.supported_kinds = default_kinds(protocol);
    } else {
        for k in wanted {
            let group = k.group.as_deref().unwrap_or(GROUP);
            if group == GROUP && ROUTE_KINDS.contains(&k.kind.as_str()) {
                if !state.supported_kinds.iter().any(|s| s.kind == k.kind) {
                    state.supported_kinds.push(RouteGroupKind {
                        group: Some(GROUP.to_string()),
                        kind: k.kind.clone(),
                    });
                }
            } else {
                state.resolved_refs = Err((
                    "InvalidRouteKinds",
                    format!(
                        "route kind {group}/{} is not supported; Portico serves HTTPRoute and GRPCRoute",
                        k.kind
                    ),
                ));
            }
        }
    }
    if protocol == ListenerProtocol::Https {
        let tls = listener.tls.as_ref();
        if tls.and_then(|t| t.mode.as_deref()).is_some_and(|m| m != "Terminate") {
            state.accepted = Err((
                "UnsupportedValue",
                "tls.mode Passthrough is not supported on an HTTPS listener".to_string(),
            ));
        }
        let refs = tls.map(|t| t.certificate_refs.as_slice()).unwrap_or_default();
        if refs.is_empty() {
            state.resolved_refs = Err((
                "InvalidCertificateRef",
                "an HTTPS listener needs tls.certificateRefs".to_string(),
            ));
        }
        for r in refs {
            let group = r.group.as_deref().unwrap_or_default();
            let kind = r.kind.as_deref().unwrap_or("Secret");
            let target_ns = r.namespace.as_deref().unwrap_or(namespace);
            let problem = if !group.is_empty() || kind != "Secret" {
                Some((
                    "InvalidCertificateRef",
                    format!("certificateRef {group}/{kind} {:?} is not a Secret", r.name),
                ))
            } else if target_ns != namespace && !grants.permits(namespace, "Gateway", target_ns, "", "Secret", &r.name)
            {
                Some((
                    "RefNotPermitted",
                    format!(
                        "Secret {target_ns}/{} is in another namespace and no ReferenceGrant there permits Gateways in {namespace}",
                        r.name
                    ),
                ))
            } else {
                match certificates.get(target_ns, &r.name) {
                    Ok(_) => {
                        state.certificates.push((target_ns.to_string(), r.name.clone()));
                        None
                    }
                    Err(p) => Some(("InvalidCertificateRef", p.message)),
                }
            };
            if let Some(p) = problem
                && state.resolved_refs.is_ok()
            {
                state.resolved_refs = Err(p);
            }
        }
    }
    state
}

/// Listeners of one Gateway on the same port must agree on the protocol and differ in
/// hostname (Gateway API, ListenerConditionConflicted): the later one is Conflicted.
fn conflicts(listeners: &mut [ListenerState<'_>]) {
    for i in 0..listeners.len() {
        if listeners[i].protocol.is_none() {
            continue;
        }
        for j in 0..i {
            let (a, b) = (&listeners[j], &listeners[i]);
            if a.protocol.is_none() || a.conflicted.is_some() || a.listener.port != b.listener.port {
                continue;
            }
            let conflict = if a.protocol != b.protocol {
                Some((
                    "ProtocolConflict",
                    format!(
                        "listener {:?} uses port {} with another protocol",
                        a.listener.name, a.listener.port
                    ),
                ))
            } else if a.hostname == b.hostname {
                Some((
                    "HostnameConflict",
                    format!("listener {:?} has the same port and hostname", a.listener.name),
                ))
            } else {
                None
            };
            if conflict.is_some() {
                listeners[i].conflicted = conflict;
                break;
            }
        }
    }
}

/// The ReferenceGrants of a snapshot.
pub(super) struct Grants<'a>(&'a [ReferenceGrant]);

impl Grants<'_> {
    /// Whether a `from_kind` (Gateway API group) in `from_ns` may refer to the
    /// `to_group`/`to_kind` object `name` in `to_ns` (ReferenceGrant, GEP-709).
    pub fn permits(
        &self,
        from_ns: &str,
        from_kind: &str,
        to_ns: &str,
        to_group: &str,
        to_kind: &str,
        name: &str,
    ) -> bool {
        self.0.iter().filter(|g| namespace_of(&g.metadata) == to_ns).any(|g| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
                && g.spec
                    .to
                    .iter()
                    .any(|t| t.group == to_group && t.kind == to_kind && t.name.as_deref().is_none_or(|n| n == name))
        })
    }
}

/// Whether `namespace` (with its labels) matches a label selector (matchLabels and
/// matchExpressions In, NotIn, Exists, DoesNotExist).
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// The labels of namespace `name`, if the snapshot has it.
fn namespace_labels<'a>(namespaces: &'a [Namespace], name: &str) -> Option<&'a BTreeMap<String, String>> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    namespaces
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(name))
        .map(|n| n.metadata.labels.as_ref().unwrap_or(&EMPTY))
}

/// Whether a backendRef of a route of `kind` in `namespace` resolves (see
/// [`attach::backend_ref`]).
pub(super) fn backend_ok(
    snapshot: &Snapshot,
    kind: &str,
    b: &crate::gateway_api::BackendObjectReference,
    namespace: &str,
) -> bool {
    attach::backend_ref(snapshot, kind, b, namespace, &Grants(&snapshot.reference_grants)).is_ok()
}
