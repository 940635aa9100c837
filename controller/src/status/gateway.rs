//! Gateway API status: what `compile::gateway_status` wants each GatewayClass, Gateway
//! and route to say, written by the leader through the status subresource, only when
//! it differs from what the object holds (a write that changes nothing is never made,
//! so replicas and restarts cannot loop).
//!
//! - `lastTransitionTime` of a condition moves only when its `status` does.
//! - On a route, only the `status.parents` entries whose `controllerName` is Portico's
//!   are replaced; other controllers' entries are kept as they are (Gateway API:
//!   "implementations MUST NOT modify entries of other controllers"). The patch carries
//!   the route's resourceVersion, so an entry another controller wrote meanwhile is
//!   never overwritten: the write fails with a conflict and is redone on the next pass.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::compile::CompileOptions;
use crate::gateway_api::{
    BackendTLSPolicy, Condition, GRPCRoute, Gateway, GatewayClass, GatewayClassStatus, GatewayStatus, HTTPRoute,
    PolicyAncestorStatus, PolicyStatus, RouteParentStatus, RouteStatus,
};
use crate::k8s::Compiled;

/// Keeps each condition's `lastTransitionTime` while its status stays what it was.
pub fn with_transition_times(desired: &mut [Condition], current: &[Condition], now: &str) {
    for c in desired {
        c.last_transition_time = match current.iter().find(|o| o.type_ == c.type_) {
            Some(old) if old.status == c.status && !old.last_transition_time.is_empty() => {
                old.last_transition_time.clone()
            }
            _ => now.to_string(),
        };
    }
}

/// The GatewayClass status to write, `None` when `current` already says it.
pub fn class_status(
    mut desired: GatewayClassStatus,
    current: Option<&GatewayClassStatus>,
    now: &str,
) -> Option<GatewayClassStatus> {
    let empty = GatewayClassStatus::default();
    let current = current.unwrap_or(&empty);
    with_transition_times(&mut desired.conditions, &current.conditions, now);
    (desired != *current).then_some(desired)
}

/// The Gateway status to write (conditions of the Gateway and of each listener, by
/// name), `None` when `current` already says it.
pub fn gateway_status(mut desired: GatewayStatus, current: Option<&GatewayStatus>, now: &str) -> Option<GatewayStatus> {
    let empty = GatewayStatus::default();
    let current = current.unwrap_or(&empty);
    with_transition_times(&mut desired.conditions, &current.conditions, now);
    for listener in &mut desired.listeners {
        let old = current.listeners.iter().find(|l| l.name == listener.name);
        with_transition_times(&mut listener.conditions, old.map_or(&[], |l| &l.conditions), now);
    }
    (desired != *current).then_some(desired)
}

/// A route's status with Portico's parent entries replaced by `ours` (each
/// `controllerName` is ours) and every other controller's kept in place; `None` when
/// that is what `current` holds.
pub fn route_status(
    mut ours: Vec<RouteParentStatus>,
    current: Option<&RouteStatus>,
    controller_name: &str,
    now: &str,
) -> Option<RouteStatus> {
    let empty = RouteStatus::default();
    let current = current.unwrap_or(&empty);
    for entry in &mut ours {
        let old = current
            .parents
            .iter()
            .find(|p| p.controller_name == controller_name && p.parent_ref == entry.parent_ref);
        with_transition_times(&mut entry.conditions, old.map_or(&[], |p| &p.conditions), now);
    }
    let mut parents: Vec<RouteParentStatus> = current
        .parents
        .iter()
        .filter(|p| p.controller_name != controller_name)
        .cloned()
        .collect();
    parents.extend(ours);
    let desired = RouteStatus { parents };
    (desired != *current).then_some(desired)
}

/// A BackendTLSPolicy's status with Portico's ancestor entries replaced by `ours` and
/// every other controller's kept in place (as [`route_status`] does for parents);
/// `None` when that is what `current` holds.
pub fn policy_status(
    mut ours: Vec<PolicyAncestorStatus>,
    current: Option<&PolicyStatus>,
    controller_name: &str,
    now: &str,
) -> Option<PolicyStatus> {
    let empty = PolicyStatus::default();
    let current = current.unwrap_or(&empty);
    for entry in &mut ours {
        let old = current
            .ancestors
            .iter()
            .find(|a| a.controller_name == controller_name && a.ancestor_ref == entry.ancestor_ref);
        with_transition_times(&mut entry.conditions, old.map_or(&[], |a| &a.conditions), now);
    }
    let mut ancestors: Vec<PolicyAncestorStatus> = current
        .ancestors
        .iter()
        .filter(|a| a.controller_name != controller_name)
        .cloned()
        .collect();
    ancestors.extend(ours);
    let desired = PolicyStatus { ancestors };
    (desired != *current).then_some(desired)
}

/// Writes `status` of one object through the status subresource. `resource_version`:
/// write only over that version (a route's parents, which other controllers share).
pub async fn patch_status<K, S>(
    api: &Api<K>,
    name: &str,
    status: &S,
    resource_version: Option<&str>,
) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let mut patch = serde_json::json!({ "status": status });
    if let Some(rv) = resource_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    match api
        .patch_status(name, &PatchParams::apply(super::FIELD_MANAGER), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Deleted meanwhile, or changed by another writer: the next pass sees it anew.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
            tracing::debug!(name, code = e.code, "status not written; retried on the next pass");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Writes what the last compile wants every GatewayClass, Gateway, HTTPRoute and GRPCRoute of
/// Portico's to say, and (service mode) keeps the Service of each Gateway. One failed
/// write does not keep the others from being made; the first error is returned.
pub async fn write_gateway_api(
    client: &Client,
    compile_opts: &CompileOptions,
    selector: &BTreeMap<String, String>,
    compiled: &Compiled,
    applied_services: &mut HashMap<String, k8s_openapi::api::core::v1::Service>,
) -> Result<(), kube::Error> {
    let snapshot = &compiled.snapshot;
    // Certificates are checked against the clock, as the compile that served them was.
    let opts = CompileOptions {
        now: crate::compile::unix_now(),
        ..compile_opts.clone()
    };
    let mut first_error = None;
    let mut note = |result: Result<(), kube::Error>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    if let Some(service) = &opts.gateway_service {
        let ports = crate::compile::gateway_ports(snapshot, &opts);
        note(
            super::gateway_services::write_gateway_services(client, service, selector, &ports, applied_services).await,
        );
    }
    if snapshot.gateway_classes.is_empty() {
        return first_error.map_or(Ok(()), Err);
    }
    let now = Timestamp::from_second(opts.now)
        .unwrap_or_else(|_| Timestamp::now())
        .to_string();
    let desired = crate::compile::gateway_status(snapshot, &opts);
    let classes: Api<GatewayClass> = Api::all(client.clone());
    for (name, status) in desired.classes {
        let current = snapshot
            .gateway_classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name.as_str()));
        if let Some(status) = class_status(status, current.and_then(|c| c.status.as_ref()), &now) {
            let result = patch_status(&classes, &name, &status, None).await;
            if result.is_ok() {
                tracing::info!(name = %name, "GatewayClass status updated");
            }
            note(result);
        }
    }
    for (ns, name, status) in desired.gateways {
        let current = find(&snapshot.gateways, &ns, &name).and_then(|g| g.status.as_ref());
        if let Some(status) = gateway_status(status, current, &now) {
            let result = patch_status(&Api::<Gateway>::namespaced(client.clone(), &ns), &name, &status, None).await;
            if result.is_ok() {
                tracing::info!(namespace = %ns, name = %name, "Gateway status updated");
            }
            note(result);
        }
    }
    let ours = &opts.gateway_controller_name;
    note(write_routes::<HTTPRoute>(client, desired.http_routes, &snapshot.http_routes, ours, &now).await);
    note(write_routes::<GRPCRoute>(client, desired.grpc_routes, &snapshot.grpc_routes, ours, &now).await);
    for (ns, name, status) in desired.backend_tls_policies {
        let object = find(&snapshot.backend_tls_policies, &ns, &name);
        let version = object.and_then(|p| p.metadata.resource_version.as_deref());
        let Some(status) = policy_status(status.ancestors, object.and_then(|p| p.status.as_ref()), ours, &now) else {
            continue;
        };
        let api = Api::<BackendTLSPolicy>::namespaced(client.clone(), &ns);
        let result = patch_status(&api, &name, &status, version).await;
        if result.is_ok() {
            tracing::info!(namespace = %ns, name = %name, "BackendTLSPolicy status updated");
        }
        note(result);
    }
    first_error.map_or(Ok(()), Err)
}

/// Writes the desired status of the routes of one kind, keeping other controllers'
/// parent entries; one failed write does not keep the others from being made.
async fn write_routes<K>(
    client: &Client,
    desired: Vec<(String, String, RouteStatus)>,
    current: &[K],
    ours: &str,
    now: &str,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + RouteObjectStatus
        + Clone
        + DeserializeOwned
        + Debug,
{
    let mut first_error = None;
    for (ns, name, status) in desired {
        let object = find(current, &ns, &name);
        let version = object.and_then(|r| r.meta().resource_version.as_deref());
        let Some(status) = route_status(status.parents, object.and_then(|r| r.route_status()), ours, now) else {
            continue;
        };
        let result = patch_status(&Api::<K>::namespaced(client.clone(), &ns), &name, &status, version).await;
        match result {
            Ok(()) => tracing::info!(namespace = %ns, name = %name, kind = %K::kind(&()), "route status updated"),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The `status` of a route kind.
trait RouteObjectStatus {
    fn route_status(&self) -> Option<&RouteStatus>;
}

impl RouteObjectStatus for HTTPRoute {
    fn route_status(&self) -> Option<&RouteStatus> {
        self.status.as_ref()
    }
}

impl RouteObjectStatus for GRPCRoute {
    fn route_status(&self) -> Option<&RouteStatus> {
        self.status.as_ref()
    }
}

fn find<'a, K: Resource>(objects: &'a [K], ns: &str, name: &str) -> Option<&'a K> {
    objects.iter().find(|o| {
        let m = o.meta();
        m.name.as_deref() == Some(name) && m.namespace.as_deref().unwrap_or("default") == ns
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway_api::ParentReference;

    const OURS: &str = "portico.dev/gateway-controller";

    fn cond(type_: &str, status: &str, time: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            observed_generation: Some(1),
            last_transition_time: time.into(),
            reason: type_.into(),
            message: String::new(),
        }
    }

    fn parent(gateway: &str, controller: &str, conditions: Vec<Condition>) -> RouteParentStatus {
        RouteParentStatus {
            parent_ref: ParentReference {
                name: gateway.into(),
                ..Default::default()
            },
            controller_name: controller.into(),
            conditions,
        }
    }

    /// Another controller's parent entry survives Portico's write untouched, and
    /// Portico's own entry is replaced, not appended to.
    #[test]
    fn route_status_keeps_other_controllers_entries() {
        let current = RouteStatus {
            parents: vec![
                parent("theirs", "example.com/other", vec![cond("Accepted", "False", "t0")]),
                parent("gw", OURS, vec![cond("Accepted", "False", "t0")]),
            ],
        };
        let desired = route_status(
            vec![parent("gw", OURS, vec![cond("Accepted", "True", "")])],
            Some(&current),
            OURS,
            "t1",
        )
        .expect("a change");
        assert_eq!(
            desired.parents,
            vec![
                parent("theirs", "example.com/other", vec![cond("Accepted", "False", "t0")]),
                parent("gw", OURS, vec![cond("Accepted", "True", "t1")]),
            ]
        );
    }

    /// Unchanged conditions are not written again: the status writer cannot loop.
    #[test]
    fn unchanged_status_is_not_written() {
        let current = RouteStatus {
            parents: vec![parent("gw", OURS, vec![cond("Accepted", "True", "t0")])],
        };
        let again = vec![parent("gw", OURS, vec![cond("Accepted", "True", "")])];
        assert_eq!(route_status(again, Some(&current), OURS, "t1"), None);

        let gw = GatewayStatus {
            conditions: vec![cond("Programmed", "True", "t0")],
            ..Default::default()
        };
        let same = GatewayStatus {
            conditions: vec![cond("Programmed", "True", "")],
            ..Default::default()
        };
        assert_eq!(gateway_status(same, Some(&gw), "t1"), None);
    }

    /// A condition whose status flips takes the new transition time; the rest keep theirs.
    #[test]
    fn transition_time_moves_only_on_status_change() {
        let current = GatewayStatus {
            conditions: vec![cond("Accepted", "True", "t0"), cond("Programmed", "False", "t0")],
            ..Default::default()
        };
        let desired = GatewayStatus {
            conditions: vec![cond("Accepted", "True", ""), cond("Programmed", "True", "")],
            ..Default::default()
        };
        let written = gateway_status(desired, Some(&current), "t1").expect("a change");
        assert_eq!(
            written.conditions,
            vec![cond("Accepted", "True", "t0"), cond("Programmed", "True", "t1")]
        );
    }
}
