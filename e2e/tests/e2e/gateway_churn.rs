//! Gateway API status under churn, through the real API server: a Gateway with 100
//! HTTPRoutes, then 20 s of changes to them (deleted and created again, moved to a
//! listener that does not exist and back, pointed at a Service that does not exist and
//! back), while a stable route carries traffic on the listener. When the changes stop,
//! what Portico wrote must settle on what the routes now say, within a bound:
//!
//! - each route's own `status.parents` entry: `Accepted` True for the real listener,
//!   False with `NoMatchingParent` for the missing one (gateway-api v1.6.3
//!   `HTTPRouteInvalidParentRefSectionNameNotMatchingPort` and the spec's
//!   RouteConditionReason); `ResolvedRefs` False with `BackendNotFound` for the missing
//!   Service (`HTTPRouteInvalidBackendRefUnknownKind`'s sibling
//!   `HTTPRouteInvalidNonExistentBackendRef`); every condition's `observedGeneration`
//!   the route's current generation;
//! - the Gateway listener's `attachedRoutes`: the number of routes accepted on it
//!   (`GatewayWithAttachedRoutes`);
//! - no request to the stable route failed while the others churned.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams};
use portico_e2e::Test;
use portico_e2e::objects::{endpoint_slice, service};
use serde_json::{Value, json};

use crate::gateway::{install_crds, kubectl};

const ROUTES: usize = 100;
const CHURN: Duration = Duration::from_secs(20);
const CHANGES_PER_SECOND: u64 = 20;
/// How long Portico may take, after the last change, for every status to be right.
const SETTLE: Duration = Duration::from_secs(30);
const CONTROLLER: &str = "portico.dev/gateway-controller";

/// What the test last made route `i` say.
#[derive(Clone, Copy, Debug)]
struct Want {
    exists: bool,
    /// Its parentRef names the Gateway's real listener (else one that does not exist).
    listener: bool,
    /// Its backendRef names the Service that exists.
    backend: bool,
}

fn route(ns: &str, name: &str, host: &str, want: Want) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "parentRefs": [{"name": "gw", "sectionName": if want.listener { "http" } else { "absent" }}],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": if want.backend { "web" } else { "no-such-service" }, "port": 80}]}],
        },
    })
}

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).expect("a DynamicObject")
}

/// A small deterministic generator: the same churn every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Our controller's conditions of a route, by type: (status, reason, observedGeneration).
fn conditions(obj: &DynamicObject) -> BTreeMap<String, (String, String, i64)> {
    let parents = obj.data.pointer("/status/parents").and_then(Value::as_array);
    let ours = parents
        .into_iter()
        .flatten()
        .find(|p| p["controllerName"] == CONTROLLER);
    let conds = ours
        .and_then(|p| p["conditions"].as_array())
        .cloned()
        .unwrap_or_default();
    conds
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or_default().to_string(),
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                    c["observedGeneration"].as_i64().unwrap_or(-1),
                ),
            )
        })
        .collect()
}

/// Every way the written status differs from what the routes say; empty when settled.
async fn differences(routes: &Api<DynamicObject>, gateways: &Api<DynamicObject>, wants: &[Want]) -> Vec<String> {
    let mut out = Vec::new();
    let listed = match routes.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => return vec![format!("listing HTTPRoutes: {e}")],
    };
    let by_name: BTreeMap<String, &DynamicObject> = listed
        .items
        .iter()
        .map(|o| (o.metadata.name.clone().unwrap_or_default(), o))
        .collect();
    let mut attached = 1; // the stable route
    for (i, want) in wants.iter().enumerate() {
        let name = format!("r{i}");
        let Some(obj) = by_name.get(&name) else {
            if want.exists {
                out.push(format!("{name} is missing"));
            }
            continue;
        };
        let generation = obj.metadata.generation.unwrap_or(0);
        let conds = conditions(obj);
        let accepted = if want.listener {
            attached += 1;
            ("True", "Accepted")
        } else {
            ("False", "NoMatchingParent")
        };
        let mut check = |kind: &str, (status, reason): (&str, &str)| match conds.get(kind) {
            Some((s, r, g)) if s == status && r == reason && *g == generation => {}
            other => out.push(format!(
                "{name} (generation {generation}): {kind} is {other:?}, want {status}/{reason}"
            )),
        };
        check("Accepted", accepted);
        if want.listener {
            check(
                "ResolvedRefs",
                if want.backend {
                    ("True", "ResolvedRefs")
                } else {
                    ("False", "BackendNotFound")
                },
            );
        }
    }
    match gateways.get("gw").await {
        Ok(gw) => {
            let listeners = gw.data.pointer("/status/listeners").and_then(Value::as_array);
            let count = listeners
                .into_iter()
                .flatten()
                .find(|l| l["name"] == "http")
                .and_then(|l| l["attachedRoutes"].as_i64());
            if count != Some(attached) {
                out.push(format!("listener http: attachedRoutes {count:?}, want {attached}"));
            }
        }
        Err(e) => out.push(format!("reading the Gateway: {e}")),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_status_settles_after_route_churn() {
    let t = Test::start("gwchurn").await;
    let _crds = install_crds(&t);
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    // Each listener port bound as it is, on loopback: the test reaches it directly.
    let listener_port = portico_e2e::free_ports(1)[0];
    let portico = t
        .portico()
        .args(&[
            "--access-log",
            "false",
            "--gateway-service-type",
            "None",
            "--gateway-address",
            "127.0.0.1",
        ])
        .start();

    let gvk = |kind: &str| ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind));
    let classes: Api<DynamicObject> = Api::all_with(t.client.clone(), &gvk("GatewayClass"));
    let gateways: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, &gvk("Gateway"));
    let routes: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &t.ns, &gvk("HTTPRoute"));
    let class = format!("portico-{}", t.ns);
    let create = PostParams::default();
    classes
        .create(
            &create,
            &dynamic(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                "metadata": {"name": class}, "spec": {"controllerName": CONTROLLER},
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("creating the GatewayClass: {e}"));
    gateways
        .create(
            &create,
            &dynamic(json!({
                "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "metadata": {"name": "gw", "namespace": t.ns},
                "spec": {"gatewayClassName": class, "listeners": [
                    {"name": "http", "protocol": "HTTP", "port": listener_port},
                ]},
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("creating the Gateway: {e}"));
    let stable = t.host("stable");
    let ok = Want {
        exists: true,
        listener: true,
        backend: true,
    };
    routes
        .create(&create, &dynamic(route(&t.ns, "stable", &stable, ok)))
        .await
        .unwrap_or_else(|e| panic!("creating the stable route: {e}"));
    let host = |i: usize| format!("r{i}.{}.e2e.test", t.ns);
    let mut wants = vec![ok; ROUTES];
    for (i, want) in wants.iter().enumerate() {
        routes
            .create(&create, &dynamic(route(&t.ns, &format!("r{i}"), &host(i), *want)))
            .await
            .unwrap_or_else(|e| panic!("creating r{i}: {e}"));
    }
    let listener = SocketAddr::from(([127, 0, 0, 1], listener_port));
    let wait_settled = |wants: Vec<Want>, what: &'static str| {
        let routes = routes.clone();
        let gateways = gateways.clone();
        async move {
            let started = Instant::now();
            loop {
                let diffs = differences(&routes, &gateways, &wants).await;
                if diffs.is_empty() {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < SETTLE,
                    "{what}: the status had not settled {SETTLE:?} after the last change; {} differences, first: {:?}",
                    diffs.len(),
                    &diffs[..diffs.len().min(5)]
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let took = wait_settled(wants.clone(), "after loading").await;
    eprintln!("    {ROUTES} HTTPRoutes and the stable one accepted and counted in {took:.1?}");

    // The stable route answers on the listener all through the churn: batches of
    // requests over one kept-alive connection each.
    let tmp = t.cluster().run_dir().to_path_buf();
    let first = portico_e2e::http::curl(&tmp, listener, &stable, "/");
    assert_eq!(first.status, 200, "the stable route on the Gateway listener: {first:?}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let stable = stable.clone();
        std::thread::spawn(move || {
            let (mut sent, mut failed) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch = portico_e2e::http::curl_many(&tmp, listener, &stable, "/", 20);
                sent += batch.len();
                failed.extend(batch.iter().map(|r| r.status).filter(|&s| s != 200));
            }
            (sent, failed)
        })
    };

    let mut rng = Lcg(0x5eed);
    let started = Instant::now();
    let mut changes = 0u64;
    let del = DeleteParams::default();
    while started.elapsed() < CHURN {
        let i = (rng.next() % ROUTES as u64) as usize;
        let name = format!("r{i}");
        let mut want = wants[i];
        let result = match (want.exists, rng.next() % 3) {
            (false, _) => {
                want = Want { exists: true, ..want };
                routes
                    .create(&create, &dynamic(route(&t.ns, &name, &host(i), want)))
                    .await
                    .map(drop)
            }
            (true, 0) => {
                want.exists = false;
                routes.delete(&name, &del).await.map(drop)
            }
            (true, kind) => {
                if kind == 1 {
                    want.listener = !want.listener;
                } else {
                    want.backend = !want.backend;
                }
                let patch = json!({"spec": route(&t.ns, &name, &host(i), want)["spec"]});
                routes
                    .patch(
                        &name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&patch),
                    )
                    .await
                    .map(drop)
            }
        };
        result.unwrap_or_else(|e| panic!("change {changes} to {name}: {e}"));
        wants[i] = want;
        changes += 1;
        let due = started + Duration::from_millis(changes * 1000 / CHANGES_PER_SECOND);
        tokio::time::sleep_until(due.into()).await;
    }
    let took = wait_settled(wants.clone(), "after the churn").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, failed) = load.join().expect("the load thread");
    let live = wants.iter().filter(|w| w.exists).count();
    let attached = wants.iter().filter(|w| w.exists && w.listener).count();
    eprintln!(
        "    {changes} changes in {:.0?}; status settled {took:.1?} after the last ({live} routes, {attached} attached); \
         stable route: {} of {sent} requests failed",
        CHURN,
        failed.len()
    );
    assert!(sent > 100, "too few requests to the stable route ({sent})");
    assert!(
        failed.is_empty(),
        "requests to the stable route failed during the churn: {failed:?}"
    );
    portico.assert_running();
    let _ = kubectl(&t, &["delete", "gatewayclass", &class, "--wait=false"]);
}
