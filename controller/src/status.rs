//! Status and Events, written by one elected leader.
//!
//! Every replica routes traffic; only the holder of the `coordination.k8s.io` Lease
//! writes, so two replicas never fight over an Ingress's status or double every Event.
//!
//! - `status.loadBalancer.ingress` of each owned Ingress is set from
//!   `--publish-service` (that Service's load-balancer status) or
//!   `--publish-status-address`, and written only when it differs; never with
//!   `--update-status=false`. Ingress has no other status field, so two controllers
//!   serving one class side by side fight over nothing else: each one's Events carry
//!   its own reporting controller and stand beside the other's.
//! - Each compile Diagnostic becomes one Event (Warning, or Normal for informational
//!   ones such as a Service without ready endpoints) on the offending object. A
//!   diagnostic stays "published" while it persists; once fixed and broken again, it is
//!   published again.
//! - Each served Route gets `Accepted` and `ResolvedRefs` conditions with
//!   `observedGeneration` (`status/route.rs`), written only when they change.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;

use crate::compile::CompileOptions;
use crate::k8s::Compiled;

pub mod gateway;
pub mod gateway_services;
mod route;

/// Where the status writer takes the address to publish, and how it is elected.
#[derive(Clone, Debug)]
pub struct StatusOptions {
    /// `namespace/name` of the Service whose load-balancer status is copied.
    pub publish_service: Option<(String, String)>,
    /// Addresses (IPs or host names) to publish as they are.
    pub publish_status_address: Vec<String>,
    /// Write `status.loadBalancer` of served Ingresses at all (`--update-status`). Off
    /// while another controller (ingress-nginx, in a side-by-side cut-over) serves the
    /// same Ingresses and owns their address.
    pub update_status: bool,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    pub lease_name: String,
    /// This replica's name in the Lease (the pod name in a cluster).
    pub identity: String,
    pub lease_duration: Duration,
    /// The selector of the Services kept for Gateways (service mode): Portico's pods.
    pub gateway_service_selector: std::collections::BTreeMap<String, String>,
}

const FIELD_MANAGER: &str = "portico";

/// How often a replica that does not lead looks whether the Lease is free: client-go's
/// default retry period. A Lease released on shutdown is taken within this.
const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// The least time between two passes of status writes: endpoint churn recompiles many
/// times a second, and status and Events need not follow each compile.
const WRITE_PERIOD: Duration = Duration::from_secs(1);

/// Runs until `stop` turns true: campaigns for the Lease, and while leader keeps status
/// and Events current. The Lease is renewed on a timer (a third of its duration), not
/// on every compile, so endpoint churn costs no Lease writes. On `stop`, a leader
/// releases the Lease (client-go's `ReleaseOnCancel`) so that another replica takes
/// over at once rather than when it expires; `released` turns true when that is done.
pub async fn run(
    client: Client,
    opts: StatusOptions,
    compile_opts: CompileOptions,
    mut compiled: watch::Receiver<Compiled>,
    mut stop: watch::Receiver<bool>,
    released: watch::Sender<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &opts.lease_namespace);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "portico".into(),
            instance: Some(opts.identity.clone()),
        },
    );
    let mut published: HashSet<String> = HashSet::new();
    // The Gateway Services last applied while leading (see status::gateway_services).
    let mut gateway_services = std::collections::HashMap::new();
    let mut leader = false;
    // When the Lease was last renewed: a leader that cannot renew stops writing before
    // its Lease can have expired for the others.
    let mut renewed = Instant::now();
    let renew_every = opts.lease_duration / 3;
    let mut next_campaign = Instant::now();
    let mut compiles_open = true;
    loop {
        // Whether this pass writes status: on winning the Lease, and on a new compile.
        let mut write = false;
        tokio::select! {
            () = async { drop(stop.wait_for(|stopped| *stopped).await) } => {
                if leader {
                    match release(&leases, &opts).await {
                        Ok(()) => tracing::info!(identity = %opts.identity, "released the leader Lease"),
                        Err(e) => tracing::warn!(error = %e, "releasing the leader Lease failed"),
                    }
                }
                let _ = released.send(true);
                return;
            }
            () = tokio::time::sleep_until(next_campaign) => {
                let was = leader;
                match campaign(&leases, &opts).await {
                    Ok(now_leader) => {
                        leader = now_leader;
                        if leader {
                            renewed = Instant::now();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "leader election failed; retrying");
                        // Kept for a while: the Lease is still ours until it expires.
                        leader &= renewed.elapsed() < opts.lease_duration * 2 / 3;
                    }
                }
                if leader != was {
                    tracing::info!(identity = %opts.identity, leader, "leadership changed");
                    published.clear();
                    gateway_services.clear();
                    write = leader;
                }
                next_campaign = Instant::now() + if leader { renew_every } else { RETRY_PERIOD };
            }
            changed = compiled.changed(), if compiles_open && leader => {
                compiles_open = changed.is_ok();
                write = compiles_open;
            }
        }
        if write {
            let current = compiled.borrow_and_update().clone();
            if let Err(e) = write_status(&client, &opts, &compile_opts, &current).await {
                tracing::warn!(error = %e, "writing Ingress status failed; will retry");
            }
            if let Err(e) = route::write_route_status(&client, &compile_opts, &current).await {
                tracing::warn!(error = %e, "writing Route status failed; will retry");
            }
            if let Err(e) = gateway::write_gateway_api(
                &client,
                &compile_opts,
                &opts.gateway_service_selector,
                &current,
                &mut gateway_services,
            )
            .await
            {
                tracing::warn!(error = %e, "writing Gateway API status or Services failed; will retry");
            }
            publish_events(&recorder, &current, &mut published).await;
            tokio::time::sleep(WRITE_PERIOD).await;
        }
    }
}

/// Gives the Lease up if this replica holds it, as client-go's `ReleaseOnCancel` does:
/// no holder, a duration of one second, so the next candidate to look takes it.
async fn release(leases: &Api<Lease>, opts: &StatusOptions) -> Result<(), kube::Error> {
    let Some(mut lease) = leases.get_opt(&opts.lease_name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_default();
    if spec.holder_identity.as_deref() != Some(opts.identity.as_str()) {
        return Ok(());
    }
    let now = MicroTime(Timestamp::now());
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now.clone());
    spec.acquire_time = Some(now);
    leases.replace(&opts.lease_name, &PostParams::default(), &lease).await?;
    Ok(())
}

/// Takes or renews the Lease; true while this replica holds it. Uses the Lease's
/// resourceVersion so two replicas racing for an expired Lease cannot both win.
async fn campaign(leases: &Api<Lease>, opts: &StatusOptions) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let duration_secs = opts.lease_duration.as_secs() as i32;
    let mine = |acquire: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(opts.identity.clone()),
        lease_duration_seconds: Some(duration_secs),
        acquire_time: acquire.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(mut lease) = leases.get_opt(&opts.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(opts.lease_name.clone()),
                ..Default::default()
            },
            spec: Some(mine(None, 0)),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let held_by_me = spec.holder_identity.as_deref() == Some(opts.identity.as_str());
    // Released (no holder) or not renewed in time.
    let free = spec.holder_identity.as_deref().is_none_or(str::is_empty)
        || match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(MicroTime(renewed)), Some(secs)) => *renewed + SignedDuration::from_secs(i64::from(secs)) < now,
            _ => true,
        };
    if !held_by_me && !free {
        return Ok(false);
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_me);
    lease.spec = Some(mine(if held_by_me { spec.acquire_time } else { None }, transitions));
    match leases.replace(&opts.lease_name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn desired_addresses(
    client: &Client,
    opts: &StatusOptions,
) -> Result<Vec<IngressLoadBalancerIngress>, kube::Error> {
    if let Some((ns, name)) = &opts.publish_service {
        let svc = Api::<Service>::namespaced(client.clone(), ns).get(name).await?;
        let lb = svc
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default();
        return Ok(lb
            .into_iter()
            .map(|i| IngressLoadBalancerIngress {
                ip: i.ip,
                hostname: i.hostname,
                ..Default::default()
            })
            .collect());
    }
    Ok(opts
        .publish_status_address
        .iter()
        .map(|a| {
            if a.parse::<std::net::IpAddr>().is_ok() {
                IngressLoadBalancerIngress {
                    ip: Some(a.clone()),
                    ..Default::default()
                }
            } else {
                IngressLoadBalancerIngress {
                    hostname: Some(a.clone()),
                    ..Default::default()
                }
            }
        })
        .collect())
}

fn current_addresses(ing: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
}

async fn write_status(
    client: &Client,
    opts: &StatusOptions,
    compile_opts: &CompileOptions,
    compiled: &Compiled,
) -> Result<(), kube::Error> {
    if !opts.update_status || (opts.publish_service.is_none() && opts.publish_status_address.is_empty()) {
        return Ok(());
    }
    let desired = desired_addresses(client, opts).await?;
    for ing in crate::compile::owned_ingresses(&compiled.snapshot, compile_opts) {
        if current_addresses(ing) == desired {
            continue;
        }
        let (Some(ns), name) = (ing.namespace(), ing.name_any()) else {
            continue;
        };
        let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({ "status": { "loadBalancer": { "ingress": desired } } });
        match api
            .patch_status(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(namespace = %ns, name = %name, "Ingress status updated"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn publish_events(recorder: &Recorder, compiled: &Compiled, published: &mut HashSet<String>) {
    let snapshot = &compiled.snapshot;
    let mut live = HashSet::new();
    for d in compiled.diagnostics.iter() {
        let key = format!("{}/{}/{}/{}/{}", d.kind, d.namespace, d.name, d.reason, d.message);
        live.insert(key.clone());
        if published.contains(&key) {
            continue;
        }
        let Some(reference) = object_ref(snapshot, d.kind, &d.namespace, &d.name) else {
            continue;
        };
        let event = Event {
            type_: if d.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: d.reason.to_string(),
            note: Some(truncate(&d.message, 1000)),
            action: "Compile".into(),
            secondary: None,
        };
        match recorder.publish(&event, &reference).await {
            Ok(()) => {
                published.insert(key);
            }
            Err(e) => tracing::warn!(error = %e, object = %d.name, "publishing Event failed; will retry"),
        }
    }
    published.retain(|k| live.contains(k));
}

fn object_ref(snapshot: &crate::snapshot::Snapshot, kind: &str, ns: &str, name: &str) -> Option<ObjectReference> {
    let matches = |m: &ObjectMeta| m.namespace.as_deref() == Some(ns) && m.name.as_deref() == Some(name);
    match kind {
        "Ingress" => snapshot
            .ingresses
            .iter()
            .find(|o| matches(&o.metadata))
            .map(|o| o.object_ref(&())),
        "Route" => snapshot
            .routes
            .iter()
            .find(|o| matches(&o.metadata))
            .map(|o| o.object_ref(&())),
        "ConfigMap" => snapshot
            .config_maps
            .iter()
            .find(|o| matches(&o.metadata))
            .map(|o| o.object_ref(&())),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}
