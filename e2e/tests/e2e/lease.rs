//! The leader-election Lease: renewed on a timer, not on every compile, and released on
//! SIGTERM so a rolling restart hands over at once instead of waiting out the Lease
//! (15 s), as client-go's `ReleaseOnCancel` does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::watcher;
use portico_e2e::objects::{endpoint_slice, ingress, service};
use portico_e2e::{SYSTEM_NAMESPACE, Test, wait_until_async};

async fn holder(leases: &Api<Lease>, id: &str) -> Result<String, String> {
    let lease = leases.get_opt(id).await.map_err(|e| e.to_string())?;
    lease
        .and_then(|l| l.spec?.holder_identity)
        .ok_or_else(|| "no Lease holder".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_writes_are_bounded_under_churn_and_released_on_sigterm() {
    let t = Test::start("lease").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let host = t.host("site");
    t.apply(&ingress("site", &host, &[("/", "Prefix", "web")])).await;

    let election = format!("portico-{}", t.ns);
    let leases: Api<Lease> = Api::namespaced(t.client.clone(), SYSTEM_NAMESPACE);
    let mut a = t.portico().election_id(&election).identity("replica-a").start();
    wait_until_async(
        "replica-a to lead",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            match holder(&leases, &election).await? {
                h if h == "replica-a" => Ok(()),
                h => Err(format!("holder {h}")),
            }
        },
    )
    .await;
    let b = t.portico().election_id(&election).identity("replica-b").start();

    // Every write of the Lease, as a watch sees it.
    let writes = Arc::new(AtomicUsize::new(0));
    let watch_task = {
        let writes = writes.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={election}"));
        let leases = leases.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(leases, config));
            while let Some(ev) = stream.next().await {
                if let Ok(watcher::Event::Apply(_)) = ev {
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Endpoint churn: 20 EndpointSlice edits a second for 10 s, each a recompile.
    let before = writes.load(Ordering::Relaxed);
    let compiles_before = a.compiles().len();
    let churn = Instant::now();
    let mut rev = 0u32;
    while churn.elapsed() < Duration::from_secs(10) {
        rev += 1;
        let mut slice = endpoint_slice("web-1", "web", &[web.addr]);
        slice
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("e2e/revision".into(), rev.to_string());
        t.apply(&slice).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = churn.elapsed().as_secs_f64();
    let lease_writes = writes.load(Ordering::Relaxed) - before;
    let compiles = a.compiles().len() - compiles_before;
    eprintln!(
        "    {rev} EndpointSlice edits, {compiles} compiles on the leader, {lease_writes} Lease writes in {secs:.1} s ({:.2}/s)",
        lease_writes as f64 / secs
    );
    assert!(compiles >= 20, "the churn recompiled the leader ({compiles} compiles)");
    // A renewal every 5 s (a third of the 15 s Lease), whatever the churn.
    assert!(lease_writes <= 4, "{lease_writes} Lease writes in {secs:.1} s");
    assert_eq!(holder(&leases, &election).await.as_deref(), Ok("replica-a"));

    // A rolling restart: SIGTERM releases the Lease and the standby takes it at once.
    let stopped = Instant::now();
    a.stop();
    wait_until_async(
        "replica-b to take over",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            match holder(&leases, &election).await? {
                h if h == "replica-b" => Ok(()),
                h => Err(format!("holder {h}")),
            }
        },
    )
    .await;
    let handover = stopped.elapsed();
    eprintln!(
        "    replica-b leads {:.2} s after SIGTERM to replica-a",
        handover.as_secs_f64()
    );
    assert!(
        handover < Duration::from_secs(5),
        "handover took {handover:?}, a 15 s Lease"
    );
    b.assert_running();
    watch_task.abort();
}
