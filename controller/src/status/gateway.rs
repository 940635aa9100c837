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

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::gateway_api::{Condition, GatewayClassStatus, GatewayStatus, RouteParentStatus, RouteStatus};

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
