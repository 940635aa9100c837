//! Where each HTTPRoute and GRPCRoute attaches: its parentRefs against the Gateways' listeners
//! (sectionName, port, allowedRoutes, hostnames), and whether its backendRefs resolve.

use portico_dataplane::table::HostMatch;

use super::isolation::{isolate, under};
use super::{GatewayState, Grants, Outcome, namespace_labels, selects};
use crate::compile::{CompileOptions, age_key, namespace_of};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::gateway_api::{
    GROUP, GRPCRoute, HTTPBackendRef, HTTPPathModifier, HTTPRoute, HTTPRouteFilter, ParentReference, RouteStatus,
};
use crate::snapshot::Snapshot;

/// A route of one of the kinds Portico attaches to listeners.
#[derive(Clone, Copy, Debug)]
pub enum RouteObject<'a> {
    Http(&'a HTTPRoute),
    Grpc(&'a GRPCRoute),
}

impl<'a> RouteObject<'a> {
    /// `HTTPRoute` or `GRPCRoute`: the kind a listener's supportedKinds and a
    /// ReferenceGrant's `from` name.
    pub fn kind(&self) -> &'static str {
        match self {
            RouteObject::Http(_) => "HTTPRoute",
            RouteObject::Grpc(_) => "GRPCRoute",
        }
    }

    pub fn metadata(&self) -> &'a ObjectMeta {
        match self {
            RouteObject::Http(r) => &r.metadata,
            RouteObject::Grpc(r) => &r.metadata,
        }
    }

    pub fn status(&self) -> Option<&'a RouteStatus> {
        match self {
            RouteObject::Http(r) => r.status.as_ref(),
            RouteObject::Grpc(r) => r.status.as_ref(),
        }
    }

    fn parent_refs(&self) -> &'a [ParentReference] {
        match self {
            RouteObject::Http(r) => &r.spec.parent_refs,
            RouteObject::Grpc(r) => &r.spec.parent_refs,
        }
    }

    fn hostnames(&self) -> &'a [String] {
        match self {
            RouteObject::Http(r) => &r.spec.hostnames,
            RouteObject::Grpc(r) => &r.spec.hostnames,
        }
    }

    /// Every rule's backendRefs and filters.
    fn rules(&self) -> Vec<(&'a [HTTPBackendRef], &'a [HTTPRouteFilter])> {
        match self {
            RouteObject::Http(r) => r
                .spec
                .rules
                .iter()
                .map(|r| (r.backend_refs.as_slice(), r.filters.as_slice()))
                .collect(),
            RouteObject::Grpc(r) => r
                .spec
                .rules
                .iter()
                .map(|r| (r.backend_refs.as_slice(), r.filters.as_slice()))
                .collect(),
        }
    }
}

/// A route attached to one listener, with the hosts it serves there.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// Index into [`super::Analysis::gateways`] and that Gateway's listeners.
    pub gateway: usize,
    pub listener: usize,
    /// The intersection of the listener's hostname and the route's hostnames, less the
    /// hosts a more specific listener on the same port takes (listener isolation).
    pub hosts: Vec<(HostMatch, String)>,
}

/// One parentRef of a route that names a Portico Gateway.
#[derive(Clone, Debug)]
pub struct ParentState {
    pub parent_ref: ParentReference,
    /// `Ok` with at least one attachment, or why the route is not accepted.
    pub accepted: Result<Vec<Attachment>, (&'static str, String)>,
}

#[derive(Debug)]
pub struct RouteState<'a> {
    pub route: RouteObject<'a>,
    pub namespace: &'a str,
    pub name: &'a str,
    pub parents: Vec<ParentState>,
    /// Whether every backendRef resolves (BackendNotFound, RefNotPermitted, InvalidKind).
    pub resolved_refs: Outcome,
    /// Whether every filter is one Portico serves (else `UnsupportedValue`: the route is
    /// not Accepted, and the rules with such a filter answer 500).
    pub filters: Outcome,
}

pub(super) fn attach<'a>(
    snapshot: &'a Snapshot,
    opts: &CompileOptions,
    gateways: &mut [GatewayState<'a>],
    grants: &Grants<'_>,
) -> Vec<RouteState<'a>> {
    let mut routes: Vec<RouteObject<'a>> = snapshot
        .http_routes
        .iter()
        .map(RouteObject::Http)
        .chain(snapshot.grpc_routes.iter().map(RouteObject::Grpc))
        .filter(|r| {
            opts.watch_namespace
                .as_deref()
                .is_none_or(|ns| namespace_of(r.metadata()) == ns)
        })
        .collect();
    routes.sort_by(|a, b| age_key(a.metadata()).cmp(&age_key(b.metadata())));
    let mut out = Vec::new();
    for route in routes {
        let namespace = namespace_of(route.metadata());
        let mut parents = Vec::new();
        for parent in route.parent_refs() {
            let group = parent.group.as_deref().unwrap_or(GROUP);
            let kind = parent.kind.as_deref().unwrap_or("Gateway");
            let parent_ns = parent.namespace.as_deref().unwrap_or(namespace);
            if group != GROUP || kind != "Gateway" {
                continue;
            }
            let Some(gw) = gateways
                .iter()
                .position(|g| g.namespace == parent_ns && g.name == parent.name)
            else {
                continue;
            };
            let accepted = attach_to(snapshot, &route, namespace, parent, gw, gateways);
            if let Ok(list) = &accepted {
                for a in list {
                    gateways[a.gateway].listeners[a.listener].attached_routes += 1;
                }
            }
            parents.push(ParentState {
                parent_ref: parent.clone(),
                accepted,
            });
        }
        if parents.is_empty() {
            continue;
        }
        out.push(RouteState {
            route,
            namespace,
            name: route.metadata().name.as_deref().unwrap_or_default(),
            parents,
            resolved_refs: backend_refs(snapshot, &route, namespace, grants),
            filters: route.rules().into_iter().try_for_each(|(refs, filters)| {
                let rule = filters.iter().find_map(unsupported_filter);
                let backend = || {
                    refs.iter()
                        .flat_map(|b| &b.filters)
                        .find_map(unsupported_backend_filter)
                };
                rule.or_else(backend).map_or(Ok(()), |m| Err(("UnsupportedValue", m)))
            }),
        });
    }
    out
}

fn attach_to(
    snapshot: &Snapshot,
    route: &RouteObject<'_>,
    namespace: &str,
    parent: &ParentReference,
    gw: usize,
    gateways: &[GatewayState<'_>],
) -> Result<Vec<Attachment>, (&'static str, String)> {
    let gateway = &gateways[gw];
    let named: Vec<usize> = (0..gateway.listeners.len())
        .filter(|&i| {
            let l = gateway.listeners[i].listener;
            parent.section_name.as_deref().is_none_or(|s| s == l.name) && parent.port.is_none_or(|p| p == l.port)
        })
        .collect();
    if named.is_empty() {
        return Err((
            "NoMatchingParent",
            "no listener of the Gateway has the parentRef's sectionName and port".to_string(),
        ));
    }
    let allowed: Vec<usize> = named
        .into_iter()
        .filter(|&i| {
            let state = &gateway.listeners[i];
            state.usable() && state.supported_kinds.iter().any(|k| k.kind == route.kind()) && {
                let from = state
                    .listener
                    .allowed_routes
                    .as_ref()
                    .and_then(|a| a.namespaces.as_ref());
                match from.and_then(|f| f.from.as_deref()).unwrap_or("Same") {
                    "All" => true,
                    "Same" => namespace == gateway.namespace,
                    "Selector" => from
                        .and_then(|f| f.selector.as_ref())
                        .zip(namespace_labels(&snapshot.namespaces, namespace))
                        .is_some_and(|(sel, labels)| selects(sel, labels)),
                    _ => false,
                }
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err((
            "NotAllowedByListeners",
            "no listener the parentRef names allows this route (allowedRoutes namespaces and kinds)".to_string(),
        ));
    }
    let attached: Vec<Attachment> = allowed
        .into_iter()
        .filter_map(|i| {
            let hosts = intersect(gateway.listeners[i].hostname.as_ref(), route.hostnames());
            (!hosts.is_empty()).then_some(Attachment {
                gateway: gw,
                listener: i,
                hosts,
            })
        })
        .collect();
    if attached.is_empty() {
        return Err((
            "NoMatchingListenerHostname",
            "none of the route's hostnames matches the hostname of a listener it names".to_string(),
        ));
    }
    // Attached (and counted in status) even when a more specific listener takes every
    // one of its hosts: the route is valid, the requests are that listener's.
    Ok(attached
        .into_iter()
        .map(|a| Attachment {
            hosts: isolate(gateway, a.listener, a.hosts),
            ..a
        })
        .collect())
}

/// The hosts a route serves on a listener (Gateway API, HTTPRouteSpec.hostnames): the
/// route's hostnames that match the listener's, a wildcard narrowed to the more
/// specific of the two; no hostnames on either side means the other's.
pub fn intersect(listener: Option<&HostMatch>, hostnames: &[String]) -> Vec<(HostMatch, String)> {
    let parsed: Vec<HostMatch> = hostnames.iter().filter_map(|h| HostMatch::parse(h).ok()).collect();
    let written = |h: &HostMatch| (h.clone(), h.to_string());
    let Some(listener) = listener else {
        if hostnames.is_empty() {
            return vec![(HostMatch::Any, String::new())];
        }
        return parsed.iter().map(written).collect();
    };
    if hostnames.is_empty() {
        return vec![written(listener)];
    }
    let mut out: Vec<(HostMatch, String)> = Vec::new();
    for h in &parsed {
        let hit = match (listener, h) {
            (HostMatch::Exact(l), HostMatch::Exact(r)) => (l == r).then(|| h.clone()),
            (HostMatch::Wildcard(l), HostMatch::Exact(r)) => under(r, l).then(|| h.clone()),
            (HostMatch::Exact(l), HostMatch::Wildcard(r)) => under(l, r).then(|| listener.clone()),
            (HostMatch::Wildcard(l), HostMatch::Wildcard(r)) => {
                if l == r || under(r, l) {
                    Some(h.clone())
                } else if under(l, r) {
                    Some(listener.clone())
                } else {
                    None
                }
            }
            (_, HostMatch::Any) | (HostMatch::Any, _) => Some(h.clone()),
        };
        if let Some(hit) = hit
            && !out.iter().any(|(o, _)| *o == hit)
        {
            out.push(written(&hit));
        }
    }
    out
}

/// Whether every backendRef (rules' and the filters') names a Service that exists and
/// may be referred to.
fn backend_refs(snapshot: &Snapshot, route: &RouteObject<'_>, namespace: &str, grants: &Grants<'_>) -> Outcome {
    for (refs, _) in route.rules() {
        for b in refs {
            backend_ref(snapshot, route.kind(), &b.backend, namespace, grants)?;
        }
    }
    Ok(())
}

/// Whether one backendRef of a route of `route_kind` resolves: a Service (core group),
/// with a port, in the route's namespace or permitted by a ReferenceGrant, that exists.
pub(crate) fn backend_ref(
    snapshot: &Snapshot,
    route_kind: &str,
    b: &crate::gateway_api::BackendObjectReference,
    namespace: &str,
    grants: &Grants<'_>,
) -> Outcome {
    let group = b.group.as_deref().unwrap_or_default();
    let kind = b.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        return Err((
            "InvalidKind",
            format!("backendRef {group}/{kind} {:?} is not a Service", b.name),
        ));
    }
    let target = b.namespace.as_deref().unwrap_or(namespace);
    if target != namespace && !grants.permits(namespace, route_kind, target, "", "Service", &b.name) {
        return Err((
            "RefNotPermitted",
            format!(
                "Service {target}/{} is in another namespace and no ReferenceGrant there permits {route_kind}s in {namespace}",
                b.name
            ),
        ));
    }
    if b.port.is_none() {
        return Err((
            "UnsupportedValue",
            format!("backendRef Service {:?} has no port", b.name),
        ));
    }
    let exists = snapshot
        .services
        .iter()
        .any(|s| namespace_of(&s.metadata) == target && s.metadata.name.as_deref() == Some(b.name.as_str()));
    if !exists {
        return Err(("BackendNotFound", format!("Service {target}/{} not found", b.name)));
    }
    Ok(())
}

/// Why Portico cannot serve `filter` as written, if it cannot: a filter type it does
/// not implement, or a value of one it does that it does not know. Gateway API
/// (HTTPRouteFilter.type): "Unknown values here must result in the implementation
/// setting the Accepted Condition for the Route to `status: False`, with a Reason of
/// `UnsupportedValue`"; the requests such a filter would have processed get an error
/// response (500), never the rule without the filter.
pub fn unsupported_filter(filter: &HTTPRouteFilter) -> Option<String> {
    let path_ok = |p: &Option<HTTPPathModifier>| {
        p.as_ref()
            .is_none_or(|p| matches!(p.type_.as_str(), "ReplaceFullPath" | "ReplacePrefixMatch"))
    };
    let ok = match filter.type_.as_str() {
        "RequestHeaderModifier" => filter.request_header_modifier.is_some(),
        "ResponseHeaderModifier" => filter.response_header_modifier.is_some(),
        "CORS" => filter.cors.is_some(),
        "URLRewrite" => filter.url_rewrite.as_ref().is_some_and(|r| path_ok(&r.path)),
        "RequestRedirect" => filter.request_redirect.as_ref().is_some_and(|r| {
            path_ok(&r.path)
                && r.scheme.as_deref().is_none_or(|s| matches!(s, "http" | "https"))
                && r.status_code.is_none_or(|c| matches!(c, 301 | 302 | 303 | 307 | 308))
        }),
        _ => false,
    };
    (!ok).then(|| format!("filter {} is not supported as written", filter.type_))
}

/// Why a backendRef's own filter (`HTTPBackendRef.filters`, "Support:
/// Implementation-specific") cannot be applied: Portico makes a backend's request
/// header changes (`RequestHeaderModifier`, the feature
/// HTTPRouteBackendRequestHeaderModification); another filter there is not supported,
/// and the requests for that backend get 500.
pub fn unsupported_backend_filter(filter: &HTTPRouteFilter) -> Option<String> {
    let ok = filter.type_ == "RequestHeaderModifier" && filter.request_header_modifier.is_some();
    (!ok).then(|| format!("filter {} is not supported on a backendRef", filter.type_))
}
