//! Ingress status: written from --publish-status-address, by the elected leader only.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use kube::runtime::watcher;
use portico_e2e::objects::{endpoint_slice, ingress, service};
use portico_e2e::{Portico, SYSTEM_NAMESPACE, Test, wait_until, wait_until_async};
use serde_json::{Value, json};

const ADDRESS: &str = "192.0.2.10";

/// `status.loadBalancer.ingress`; Null when there is none.
fn lb_status(ing: &Ingress) -> Value {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| serde_json::to_value(i).expect("json"))
        .unwrap_or(Value::Null)
}

/// Every distinct `status.loadBalancer` an Ingress goes through, as a watch sees it.
#[derive(Clone, Default)]
struct StatusHistory(Arc<Mutex<Vec<(String, Value)>>>);

impl StatusHistory {
    fn watch(api: Api<Ingress>, name: &str) -> (StatusHistory, tokio::task::JoinHandle<()>) {
        let history = StatusHistory::default();
        let h = history.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(api, config));
            while let Some(ev) = stream.next().await {
                let ing = match ev {
                    Ok(watcher::Event::Apply(i) | watcher::Event::InitApply(i)) => i,
                    _ => continue,
                };
                let status = lb_status(&ing);
                let mut v = h.0.lock().expect("history");
                if v.last().map(|(_, s)| s) != Some(&status) {
                    v.push((ing.metadata.resource_version.clone().unwrap_or_default(), status));
                }
            }
        });
        (history, task)
    }

    fn get(&self) -> Vec<(String, Value)> {
        self.0.lock().expect("history").clone()
    }
}

async fn holder(leases: &Api<Lease>, id: &str) -> Result<String, String> {
    let lease = leases.get_opt(id).await.map_err(|e| e.to_string())?;
    lease
        .and_then(|l| l.spec?.holder_identity)
        .ok_or_else(|| "no Lease holder yet".to_string())
}

/// `Ingress status updated` log lines of one portico for Ingress `name`.
fn status_writes(p: &Portico, name: &str) -> usize {
    p.log_events("Ingress status updated")
        .iter()
        .filter(|l| l.get("name").and_then(Value::as_str) == Some(name))
        .count()
}

/// Makes every portico recompile (an EndpointSlice edit) and waits until each has.
async fn recompile(t: &Test, porticos: &[&Portico], rev: u32, addr: std::net::Ipv4Addr) {
    let before: Vec<usize> = porticos.iter().map(|p| p.compiles().len()).collect();
    let mut slice = endpoint_slice("web-1", "web", &[addr]);
    slice
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("e2e/revision".into(), rev.to_string());
    t.apply(&slice).await;
    for (p, n) in porticos.iter().zip(before) {
        wait_until(
            "a recompile",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                if p.compiles().len() > n {
                    Ok(())
                } else {
                    Err(format!("{} still at {n} compiles", p.identity))
                }
            },
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_written_once_by_the_leader() {
    let t = Test::start("status").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let host = t.host("site");
    t.apply(&ingress("site", &host, &[("/", "Prefix", "web")])).await;
    let (history, watch_task) = StatusHistory::watch(t.api(), "site");

    let election = format!("portico-{}", t.ns);
    let leases: Api<Lease> = Api::namespaced(t.client.clone(), SYSTEM_NAMESPACE);
    let a = t
        .portico()
        .election_id(&election)
        .identity("replica-a")
        .args(&["--publish-status-address", ADDRESS])
        .start();
    let got = wait_until_async(
        "replica-a to lead",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { holder(&leases, &election).await },
    )
    .await;
    assert_eq!(got, "replica-a");
    let b = t
        .portico()
        .election_id(&election)
        .identity("replica-b")
        .args(&["--publish-status-address", ADDRESS])
        .start();

    // The status is written...
    let ingresses: Api<Ingress> = t.api();
    let written = Instant::now();
    let ing = wait_until_async(
        "the Ingress status",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let ing = ingresses.get("site").await.map_err(|e| e.to_string())?;
            if lb_status(&ing) == json!([{"ip": ADDRESS}]) {
                Ok(ing)
            } else {
                Err(format!("status.loadBalancer.ingress = {}", lb_status(&ing)))
            }
        },
    )
    .await;
    eprintln!(
        "    status.loadBalancer.ingress = {} after {:.0} ms",
        lb_status(&ing),
        portico_e2e::ms(written.elapsed())
    );
    let managers: Vec<(String, String)> = ing
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.subresource.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("portico".to_string(), "status".to_string())),
        "status written by field manager portico: {managers:?}"
    );

    // ...and stays written once while both replicas recompile, several times over.
    for rev in 1..=3 {
        recompile(&t, &[&a, &b], rev, web.addr).await;
    }
    assert_eq!(holder(&leases, &election).await.as_deref(), Ok("replica-a"));
    let changes = history.get();
    eprintln!("    status changes seen by a watch: {changes:?}");
    assert_eq!(changes.len(), 2, "no status, then the address, once: {changes:?}");
    assert_eq!(changes[0].1, Value::Null);
    assert_eq!(status_writes(&a, "site"), 1, "the leader wrote the status once");
    assert_eq!(status_writes(&b, "site"), 0, "the standby never writes");

    // Failover: the leader dies, the standby takes the Lease once it expires, finds
    // the status already right, and writes status for Ingresses that need it.
    let mut a = a;
    a.kill();
    let killed = Instant::now();
    wait_until_async(
        "replica-b to take over",
        Duration::from_secs(45),
        Duration::from_millis(200),
        || async {
            match holder(&leases, &election).await? {
                h if h == "replica-b" => Ok(()),
                h => Err(format!("holder {h}")),
            }
        },
    )
    .await;
    eprintln!(
        "    replica-b leads {:.1} s after replica-a was killed",
        killed.elapsed().as_secs_f64()
    );
    let host2 = t.host("site2");
    t.apply(&ingress("site2", &host2, &[("/", "Prefix", "web")])).await;
    wait_until_async(
        "status of site2 from the new leader",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let ing = ingresses.get("site2").await.map_err(|e| e.to_string())?;
            if lb_status(&ing) == json!([{"ip": ADDRESS}]) {
                Ok(())
            } else {
                Err(format!("status.loadBalancer.ingress = {}", lb_status(&ing)))
            }
        },
    )
    .await;
    recompile(&t, &[&b], 4, web.addr).await;
    assert_eq!(status_writes(&b, "site2"), 1);
    assert_eq!(
        status_writes(&b, "site"),
        0,
        "an already-correct status is not rewritten"
    );
    assert_eq!(
        history.get().len(),
        2,
        "site's status changed once in all: {:?}",
        history.get()
    );
    b.assert_running();
    watch_task.abort();
}
