//! Taking ingress-nginx's class over in place, side by side with ingress-nginx: an
//! unchanged Ingress of the IngressClass `nginx` (`spec.controller:
//! k8s.io/ingress-nginx`) is served once Portico is given that class and controller,
//! and with `--update-status=false` the address ingress-nginx wrote into the
//! Ingress's status stays as it is.
//!
//! ingress-nginx's semantics: docs/user-guide/k8s-122-migration.md (a controller serves
//! the Ingresses of every IngressClass whose `spec.controller` is its
//! `--controller-class`), and its `--update-status` flag (pkg/flags/flags.go: "Update
//! the load-balancer status of Ingress objects this controller satisfies").

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams};
use portico_e2e::objects::{endpoint_slice, ingress_class, ingress_of_class, service};
use portico_e2e::{SYSTEM_NAMESPACE, Test, wait_until, wait_until_async};
use serde_json::{Value, json};

/// The address ingress-nginx published (its Service's), as its status sync wrote it.
const NGINX_ADDRESS: &str = "203.0.113.80";
/// The address Portico would publish.
const PORTICO_ADDRESS: &str = "192.0.2.44";
const TAKE_OVER: [&str; 4] = [
    "--ingress-class",
    "portico,nginx",
    "--controller-name",
    "portico.dev/ingress-controller,k8s.io/ingress-nginx",
];
const POLL: Duration = Duration::from_secs(20);

/// The IPs in `status.loadBalancer.ingress`.
async fn status_ips(ingresses: &Api<Ingress>, name: &str) -> Vec<String> {
    let ing = ingresses.get(name).await.expect("reading the Ingress");
    ing.status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_serves_nginx_class_and_leaves_its_status() {
    let t = Test::start("takeover").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    // ingress-nginx's IngressClass, as its chart creates it (cluster-scoped, and its
    // controller is immutable: the same object for every run).
    let mut class = serde_json::to_value(ingress_class("nginx", "k8s.io/ingress-nginx")).expect("json");
    class["apiVersion"] = json!("networking.k8s.io/v1");
    class["kind"] = json!("IngressClass");
    Api::<IngressClass>::all(t.client.clone())
        .patch(
            "nginx",
            &PatchParams::apply("portico-e2e").force(),
            &Patch::Apply(&class),
        )
        .await
        .expect("applying ingress-nginx's IngressClass");
    let host = t.host("shop");
    t.apply(&ingress_of_class(
        "shop",
        Some("nginx"),
        &host,
        &[("/", "Prefix", "web")],
    ))
    .await;
    let ingresses: Api<Ingress> = t.api();
    let sentinel = json!({"status": {"loadBalancer": {"ingress": [{"ip": NGINX_ADDRESS}]}}});
    ingresses
        .patch_status("shop", &PatchParams::default(), &Patch::Merge(&sentinel))
        .await
        .expect("writing ingress-nginx's address into the status");

    // Portico's own class only: the Ingress is not its business.
    let mut alone = t
        .portico()
        .election_id(&format!("alone-{}", t.ns))
        .args(&["--publish-status-address", PORTICO_ADDRESS])
        .start();
    alone.wait_compiled_ingresses(1, POLL);
    assert_eq!(
        alone.get(&host, "/").status,
        404,
        "class nginx is ingress-nginx's by default"
    );
    alone.stop();

    // Taking over, side by side: served, and the status is left alone.
    let election = format!("side-{}", t.ns);
    let mut side = t
        .portico()
        .election_id(&election)
        .args(&TAKE_OVER)
        .args(&["--update-status=false", "--publish-status-address", PORTICO_ADDRESS])
        .start();
    side.wait_status(&host, "/", 200, Instant::now(), POLL);
    let r = side.get(&host, "/");
    assert_eq!(r.backend().as_deref(), Some("web"), "{r:?}");
    // It leads, so it is the replica that would write status...
    let leases: Api<Lease> = Api::namespaced(t.client.clone(), SYSTEM_NAMESPACE);
    wait_until_async(
        "the side-by-side Portico to lead",
        POLL,
        Duration::from_millis(100),
        || async {
            let lease = leases.get_opt(&election).await.map_err(|e| e.to_string())?;
            match lease.and_then(|l| l.spec?.holder_identity) {
                Some(h) if h == side.identity => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    // ...and it goes through more write passes: an edit it must compile.
    let compiles = side.compiles().len();
    let mut slice = endpoint_slice("web-1", "web", &[web.addr]);
    slice
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("e2e/revision".into(), "2".into());
    t.apply(&slice).await;
    wait_until("a recompile", POLL, Duration::from_millis(20), || {
        if side.compiles().len() > compiles {
            Ok(())
        } else {
            Err("no new compile".to_string())
        }
    });
    // Two write periods (1 s each) after leading and after the recompile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        status_ips(&ingresses, "shop").await,
        [NGINX_ADDRESS],
        "--update-status=false must leave ingress-nginx's address"
    );
    assert!(
        side.log_events("Ingress status updated").is_empty(),
        "no status write logged:\n{}",
        side.log_tail(30)
    );
    let served = Value::from(side.get(&host, "/").status);
    side.stop();

    // The same take-over with status on writes Portico's address: the check above
    // would have seen a write.
    let _writer = t
        .portico()
        .election_id(&format!("writer-{}", t.ns))
        .args(&TAKE_OVER)
        .args(&["--publish-status-address", PORTICO_ADDRESS])
        .start();
    let took = Instant::now();
    wait_until_async(
        "Portico's address in the status",
        POLL,
        Duration::from_millis(50),
        || async {
            let ips = status_ips(&ingresses, "shop").await;
            if ips == [PORTICO_ADDRESS] {
                Ok(())
            } else {
                Err(format!("status {ips:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "    side by side: served ({served}), status kept; with --update-status: written after {:.0} ms",
        portico_e2e::ms(took.elapsed())
    );
}
