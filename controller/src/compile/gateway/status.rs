//! The desired `status` of Portico's GatewayClasses, Gateways and HTTPRoutes, from the
//! same [`Analysis`] the listener tables are built from.
//!
//! Pure: the clock is `CompileOptions::now`. A condition whose status is unchanged from
//! the object's current one keeps its `lastTransitionTime` (as `meta.SetStatusCondition`
//! does), so writing the same status twice changes nothing.

use super::{Analysis, Outcome, RouteObject};
use crate::compile::{CompileOptions, GatewayServiceType, namespace_of, tls::Certificates};
use crate::gateway_api::{
    Condition, GROUP, GatewayAddress, GatewayClassStatus, GatewayStatus, ListenerStatus, ParentReference,
    PolicyAncestorStatus, PolicyStatus, RouteParentStatus, RouteStatus, SupportedFeature,
};
use crate::snapshot::Snapshot;

/// Gateway API features that work end to end (the conformance suite's names): the
/// GatewayClass's `status.supportedFeatures`, and what `e2e/conformance.sh` claims
/// (its `FEATURES` and `EXPERIMENTAL_FEATURES`, compared by a unit test), each proven
/// by the suite's tests.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "Gateway",
    "HTTPRoute",
    "ReferenceGrant",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModification",
    "HTTPRoutePathRewrite",
    "HTTPRouteHostRewrite",
    "HTTPRouteSchemeRedirect",
    "HTTPRoutePortRedirect",
    "HTTPRoutePathRedirect",
    "GatewayPort8080",
    "GatewayHTTPListenerIsolation",
    "HTTPRouteParentRefPort",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteRequestTimeout",
    "HTTPRouteBackendTimeout",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteCORS",
    // Experimental channel (`rules[].retry` is in its CRDs only): EXPERIMENTAL_FEATURES.
    "HTTPRouteRetry",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
];

/// Desired status per object: `(namespace, name, status)`; the namespace is empty for
/// GatewayClasses. Route statuses hold only the parents Portico handles; the writer
/// keeps other controllers' entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GatewayStatuses {
    pub classes: Vec<(String, GatewayClassStatus)>,
    pub gateways: Vec<(String, String, GatewayStatus)>,
    pub http_routes: Vec<(String, String, RouteStatus)>,
    pub grpc_routes: Vec<(String, String, RouteStatus)>,
    /// BackendTLSPolicies: one ancestor per Portico Gateway that serves a route to a
    /// Service the policy targets (none: the policy is not Portico's to report on).
    pub backend_tls_policies: Vec<(String, String, PolicyStatus)>,
}

/// RFC 3339 UTC for Unix seconds.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

struct Stamp<'a> {
    generation: Option<i64>,
    now: String,
    current: &'a [Condition],
}

impl Stamp<'_> {
    fn condition(&self, type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Condition {
        let status = if ok { "True" } else { "False" };
        let since = self
            .current
            .iter()
            .find(|c| c.type_ == type_ && c.status == status && !c.last_transition_time.is_empty())
            .map_or_else(|| self.now.clone(), |c| c.last_transition_time.clone());
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            observed_generation: self.generation,
            last_transition_time: since,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    fn outcome(&self, type_: &str, outcome: &Outcome, ok_reason: &str) -> Condition {
        match outcome {
            Ok(()) => self.condition(type_, true, ok_reason, ""),
            Err((reason, message)) => self.condition(type_, false, reason, message.clone()),
        }
    }
}

/// The desired status of every GatewayClass, Gateway and HTTPRoute that is Portico's.
pub fn gateway_status(snapshot: &Snapshot, opts: &CompileOptions) -> GatewayStatuses {
    let mut certificates = Certificates::new(&snapshot.secrets, opts.now);
    let analysis = Analysis::new(snapshot, opts, &mut certificates);
    let now = rfc3339(opts.now);
    let mut out = GatewayStatuses::default();
    let features: Vec<SupportedFeature> = SUPPORTED_FEATURES
        .iter()
        .map(|f| SupportedFeature { name: f.to_string() })
        .collect();
    for class in &analysis.classes {
        let current = class
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let stamp = Stamp {
            generation: class.metadata.generation,
            now: now.clone(),
            current,
        };
        out.classes.push((
            class.metadata.name.clone().unwrap_or_default(),
            GatewayClassStatus {
                conditions: vec![stamp.condition("Accepted", true, "Accepted", "handled by Portico")],
                supported_features: features.clone(),
            },
        ));
    }
    for gw in &analysis.gateways {
        let current = gw.gateway.status.as_ref();
        let stamp = Stamp {
            generation: gw.gateway.metadata.generation,
            now: now.clone(),
            current: current.map(|s| s.conditions.as_slice()).unwrap_or_default(),
        };
        let addresses = addresses(snapshot, opts, gw.namespace, gw.name);
        let valid = gw.listeners.iter().filter(|l| l.usable()).count();
        let invalid = gw.listeners.len() - valid;
        let accepted = match (valid, invalid) {
            (_, 0) => stamp.condition("Accepted", true, "Accepted", ""),
            (0, _) => stamp.condition("Accepted", false, "ListenersNotValid", "no listener is valid"),
            _ => stamp.condition("Accepted", true, "ListenersNotValid", "some listeners are not valid"),
        };
        let programmed = if addresses.is_empty() {
            stamp.condition("Programmed", false, "AddressNotAssigned", "no address is assigned yet")
        } else if valid == 0 {
            stamp.condition("Programmed", false, "Invalid", "no listener is valid")
        } else {
            stamp.condition("Programmed", true, "Programmed", "")
        };
        let listeners = gw
            .listeners
            .iter()
            .map(|l| {
                let current = current
                    .and_then(|s| s.listeners.iter().find(|c| c.name == l.listener.name))
                    .map(|c| c.conditions.as_slice())
                    .unwrap_or_default();
                let stamp = Stamp {
                    generation: gw.gateway.metadata.generation,
                    now: now.clone(),
                    current,
                };
                let conflicted = match &l.conflicted {
                    None => stamp.condition("Conflicted", false, "NoConflicts", ""),
                    Some((reason, message)) => stamp.condition("Conflicted", true, reason, message.clone()),
                };
                let programmed = if l.usable() && l.resolved_refs.is_ok() {
                    stamp.condition("Programmed", true, "Programmed", "")
                } else {
                    stamp.condition("Programmed", false, "Invalid", "the listener is not served")
                };
                ListenerStatus {
                    name: l.listener.name.clone(),
                    supported_kinds: l.supported_kinds.clone(),
                    attached_routes: l.attached_routes,
                    conditions: vec![
                        stamp.outcome("Accepted", &l.accepted, "Accepted"),
                        stamp.outcome("ResolvedRefs", &l.resolved_refs, "ResolvedRefs"),
                        conflicted,
                        programmed,
                    ],
                }
            })
            .collect();
        out.gateways.push((
            gw.namespace.to_string(),
            gw.name.to_string(),
            GatewayStatus {
                addresses,
                conditions: vec![accepted, programmed],
                listeners,
            },
        ));
    }
    for route in &analysis.routes {
        let current = route.route.status();
        let parents = route
            .parents
            .iter()
            .map(|p| {
                let current = current
                    .and_then(|s| {
                        s.parents
                            .iter()
                            .find(|c| c.parent_ref == p.parent_ref && c.controller_name == opts.gateway_controller_name)
                    })
                    .map(|c| c.conditions.as_slice())
                    .unwrap_or_default();
                let stamp = Stamp {
                    generation: route.route.metadata().generation,
                    now: now.clone(),
                    current,
                };
                let accepted = match (&p.accepted, &route.filters) {
                    (Ok(_), Ok(())) => stamp.condition("Accepted", true, "Accepted", ""),
                    (Err((reason, message)), _) | (Ok(_), Err((reason, message))) => {
                        stamp.condition("Accepted", false, reason, message.clone())
                    }
                };
                RouteParentStatus {
                    parent_ref: p.parent_ref.clone(),
                    controller_name: opts.gateway_controller_name.clone(),
                    conditions: vec![
                        accepted,
                        stamp.outcome("ResolvedRefs", &route.resolved_refs, "ResolvedRefs"),
                    ],
                }
            })
            .collect();
        let list = match route.route {
            RouteObject::Http(_) => &mut out.http_routes,
            RouteObject::Grpc(_) => &mut out.grpc_routes,
        };
        list.push((
            namespace_of(route.route.metadata()).to_string(),
            route.name.to_string(),
            RouteStatus { parents },
        ));
    }
    out.backend_tls_policies = backend_tls_status(&analysis, opts, &now);
    out
}

/// Each BackendTLSPolicy's status per Gateway (its ancestor) through which an attached
/// route forwards to a Service port the policy targets: Accepted (or Conflicted,
/// NoValidCACertificate, Invalid) and ResolvedRefs.
fn backend_tls_status(
    analysis: &Analysis<'_>,
    opts: &CompileOptions,
    now: &str,
) -> Vec<(String, String, PolicyStatus)> {
    let tls = &analysis.backend_tls;
    let mut out = Vec::new();
    for policy in &tls.policies {
        let mut gateways: Vec<usize> = Vec::new();
        for route in &analysis.routes {
            let refs = match route.route {
                RouteObject::Http(r) => r.spec.rules.iter().flat_map(|r| &r.backend_refs).collect::<Vec<_>>(),
                RouteObject::Grpc(r) => r.spec.rules.iter().flat_map(|r| &r.backend_refs).collect(),
            };
            if !refs.iter().any(|b| tls.targets(policy, &b.backend, route.namespace)) {
                continue;
            }
            let attached = route.parents.iter().filter_map(|p| p.accepted.as_ref().ok()).flatten();
            gateways.extend(attached.map(|a| a.gateway));
        }
        gateways.sort_unstable();
        gateways.dedup();
        if gateways.is_empty() {
            continue;
        }
        let current = policy.policy.status.as_ref();
        let ancestors = gateways
            .into_iter()
            .map(|g| {
                let gw = &analysis.gateways[g];
                let ancestor_ref = ParentReference {
                    group: Some(GROUP.to_string()),
                    kind: Some("Gateway".to_string()),
                    namespace: Some(gw.namespace.to_string()),
                    name: gw.name.to_string(),
                    section_name: None,
                    port: None,
                };
                let current = current
                    .and_then(|s| {
                        s.ancestors.iter().find(|a| {
                            a.ancestor_ref == ancestor_ref && a.controller_name == opts.gateway_controller_name
                        })
                    })
                    .map(|a| a.conditions.as_slice())
                    .unwrap_or_default();
                let stamp = Stamp {
                    generation: policy.policy.metadata.generation,
                    now: now.to_string(),
                    current,
                };
                PolicyAncestorStatus {
                    ancestor_ref,
                    controller_name: opts.gateway_controller_name.clone(),
                    conditions: vec![
                        stamp.outcome("Accepted", &policy.accepted, "Accepted"),
                        stamp.outcome("ResolvedRefs", &policy.resolved_refs, "ResolvedRefs"),
                    ],
                }
            })
            .collect();
        out.push((
            policy.namespace.to_string(),
            policy.name.to_string(),
            PolicyStatus { ancestors },
        ));
    }
    out
}

/// A Gateway's addresses: its Service's (service mode) or `--gateway-address` (direct).
fn addresses(snapshot: &Snapshot, opts: &CompileOptions, namespace: &str, name: &str) -> Vec<GatewayAddress> {
    let ip = |v: &str| GatewayAddress {
        type_: Some(
            if v.parse::<std::net::IpAddr>().is_ok() {
                "IPAddress"
            } else {
                "Hostname"
            }
            .to_string(),
        ),
        value: v.to_string(),
    };
    let Some(service_opts) = &opts.gateway_service else {
        return opts.gateway_addresses.iter().map(|a| ip(a)).collect();
    };
    let service_name = crate::compile::gateway_service_name(namespace, name);
    let Some(svc) = snapshot.services.iter().find(|s| {
        namespace_of(&s.metadata) == service_opts.namespace && s.metadata.name.as_deref() == Some(service_name.as_str())
    }) else {
        return Vec::new();
    };
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let mut out: Vec<GatewayAddress> = ingress
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref().or(i.hostname.as_deref()))
        .map(ip)
        .collect();
    if out.is_empty() && service_opts.service_type != GatewayServiceType::LoadBalancer {
        out.extend(
            svc.spec
                .as_ref()
                .and_then(|s| s.cluster_ip.as_deref())
                .filter(|c| !c.is_empty() && *c != "None")
                .map(ip),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    /// What the GatewayClass says Portico supports is what the conformance runs claim
    /// and prove (`FEATURES` in e2e/conformance.sh, claimed on the standard channel, and
    /// `EXPERIMENTAL_FEATURES`, on the experimental one), no more, no less, and each once.
    #[test]
    fn supported_features_are_the_conformance_claims() {
        let script = include_str!("../../../../e2e/conformance.sh");
        let list = |name: &str| -> Vec<&str> {
            script
                .split_once(&format!("\n{name}=(\n"))
                .and_then(|(_, rest)| rest.split_once("\n)"))
                .map(|(list, _)| list.lines().map(str::trim).collect())
                .unwrap_or_default()
        };
        let standard = list("FEATURES");
        let experimental = list("EXPERIMENTAL_FEATURES");
        assert!(!standard.is_empty() && !experimental.is_empty());
        let mut claimed: Vec<&str> = standard.iter().chain(&experimental).copied().collect();
        claimed.sort_unstable();
        let mut supported = super::SUPPORTED_FEATURES.to_vec();
        supported.sort_unstable();
        let mut once = supported.clone();
        once.dedup();
        assert_eq!(once, supported, "a feature listed twice");
        assert_eq!(claimed, supported);
    }

    /// Status times are RFC 3339 in UTC, as metav1.Time writes them.
    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_000_000), "2026-11-30T00:53:20Z");
    }
}
