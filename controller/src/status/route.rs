//! Route status: the `Accepted` and `ResolvedRefs` conditions of every served Route,
//! written by the leader when they change.

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::compile::{CompileOptions, owned_routes, route_conditions};
use crate::crd::{Condition, Route};
use crate::k8s::Compiled;

/// Writes the conditions the last compile gives each Route, when they differ from what
/// its status holds. `lastTransitionTime` moves only when a condition's status does.
pub(super) async fn write_route_status(
    client: &Client,
    compile_opts: &CompileOptions,
    compiled: &Compiled,
) -> Result<(), kube::Error> {
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    for route in owned_routes(&compiled.snapshot, compile_opts) {
        let current: &[Condition] = route.status.as_ref().map_or(&[], |s| &s.conditions);
        let desired = with_transition_times(
            route_conditions(route, &compiled.diagnostics),
            current,
            &now.to_string(),
        );
        if desired == current {
            continue;
        }
        let (Some(ns), name) = (route.namespace(), route.name_any()) else {
            continue;
        };
        let api: Api<Route> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({ "status": { "conditions": desired } });
        match api
            .patch_status(&name, &PatchParams::apply(super::FIELD_MANAGER), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(namespace = %ns, name = %name, "Route status updated"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Keeps each condition's `lastTransitionTime` while its status stays the same.
fn with_transition_times(mut desired: Vec<Condition>, current: &[Condition], now: &str) -> Vec<Condition> {
    for c in &mut desired {
        c.last_transition_time = match current.iter().find(|o| o.type_ == c.type_) {
            Some(old) if old.status == c.status && old.last_transition_time.is_some() => {
                old.last_transition_time.clone()
            }
            _ => Some(now.to_string()),
        };
    }
    desired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &str, time: Option<&str>) -> Condition {
        Condition {
            type_: "Accepted".into(),
            status: status.into(),
            reason: "Accepted".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: time.map(Into::into),
        }
    }

    /// A condition whose status stays keeps its transition time; a flip takes the new one.
    #[test]
    fn transition_time_moves_only_on_status_change() {
        let old = [cond("True", Some("t0"))];
        assert_eq!(
            with_transition_times(vec![cond("True", None)], &old, "t1"),
            vec![cond("True", Some("t0"))]
        );
        assert_eq!(
            with_transition_times(vec![cond("False", None)], &old, "t1"),
            vec![cond("False", Some("t1"))]
        );
    }
}
