//! Portico as pods on the rig's real node: installed by Helm and by
//! `manifests/portico.yaml` from the locally built image, upgraded and disrupted under
//! load; backends as Deployments whose EndpointSlices kube-controller-manager writes.
//!
//! Load goes where a load balancer would send it: the node port of Portico's Service
//! (kube-proxy on the node picks a ready pod), one fresh connection per request. What
//! counts as failed is defined in `portico_e2e::load`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use portico_e2e::http::raw_get;
use portico_e2e::load::{Load, LoadSpec};
use portico_e2e::node::{
    IMAGE_TAG, NODE_ADDR, PORTICO_IMAGE_REPOSITORY, PodAddr, echo_deployment, ready_pods, wait_pods,
};
use portico_e2e::objects::{ingress, service};
use portico_e2e::{Test, wait_until, wait_until_async};
use serde_json::json;

pub(crate) const RELEASE: &str = "edge";
/// The chart's full name for release `edge`.
const FULLNAME: &str = "edge-portico";
pub(crate) const CHART_SELECTOR: &str = "app.kubernetes.io/instance=edge,app.kubernetes.io/component=controller";
/// The container ports of the chart (values.yaml containerPorts).
const POD_HTTP: u16 = 8080;
const POD_ADMIN: u16 = 10254;

/// The harness's IngressClass `portico` is deleted while a test installs the chart or
/// the manifest (both create it) and put back afterwards, even when the test fails.
pub(crate) struct ClassHandover<'a>(&'a Test);

impl<'a> ClassHandover<'a> {
    pub(crate) fn take(t: &'a Test) -> Self {
        t.cluster()
            .kubectl_ok(&["delete", "ingressclass", "portico", "--ignore-not-found"])
            .unwrap_or_else(|e| panic!("{e}"));
        ClassHandover(t)
    }
}

impl Drop for ClassHandover<'_> {
    fn drop(&mut self) {
        self.0.cluster().restore_setup();
    }
}

pub(crate) fn helm_image_args() -> Vec<String> {
    vec![
        "--set".into(),
        format!("image.repository={PORTICO_IMAGE_REPOSITORY}"),
        "--set".into(),
        format!("image.tag={IMAGE_TAG}"),
        "--set".into(),
        "image.pullPolicy=Never".into(),
    ]
}

pub(crate) fn helm(t: &Test, args: &[&str], extra: &[String]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(extra.iter().map(String::as_str));
    t.cluster().helm(&all).unwrap_or_else(|e| panic!("{e}"))
}

/// `helm install edge charts/portico` in the test's namespace: default values and the
/// local image. Waits for both replicas to be ready.
async fn helm_install(t: &Test) -> Vec<PodAddr> {
    let started = Instant::now();
    helm(
        t,
        &["install", RELEASE, "charts/portico", "--namespace", &t.ns],
        &helm_image_args(),
    );
    let pods = wait_pods(&t.client, &t.ns, CHART_SELECTOR, 2, Duration::from_secs(120)).await;
    eprintln!(
        "    helm install: 2 replicas ready in {:.1}s: {pods:?}",
        started.elapsed().as_secs_f64()
    );
    pods
}

/// An echo Deployment `web` with `replicas` pods, its Service and an Ingress for
/// `host`; waits for the pods.
async fn echo_backend(t: &Test, host: &str, replicas: i32) -> Vec<PodAddr> {
    t.apply(&echo_deployment("web", replicas)).await;
    t.apply(&service("web")).await;
    t.apply(&ingress("web", host, &[("/", "Prefix", "web")])).await;
    wait_pods(&t.client, &t.ns, "app=web", replicas as usize, Duration::from_secs(90)).await
}

/// Waits until `addr` routes `host` to an echo pod of `web`.
pub(crate) fn wait_routed(addr: SocketAddr, host: &str) {
    wait_until(
        &format!("{addr} to route {host} to the web pods"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let r = raw_get(addr, host, "/", Duration::from_secs(2));
            match r.backend() {
                Some(b) if r.status == 200 && b.starts_with("web-") => Ok(()),
                _ => Err(format!("status {} body {:?}", r.status, r.body)),
            }
        },
    );
}

/// What every install must show: each replica Ready with `/readyz` as its readiness
/// probe and answering on it, and routing an Ingress to the echo pods on its own
/// address; and each authenticated to the API server with the token the kubelet
/// projected into that very pod (the audit log records the pod a bound token was
/// issued for).
async fn check_replicas(t: &Test, ns: &str, service_account: &str, pods: &[PodAddr], host: &str) {
    let pod_api = Api::<Pod>::namespaced(t.client.clone(), ns);
    for p in pods {
        let pod = pod_api.get(&p.name).await.expect("pod");
        let spec = pod.spec.expect("pod spec");
        let container = &spec.containers[0];
        let probe = container.readiness_probe.as_ref().and_then(|r| r.http_get.as_ref());
        assert_eq!(
            probe.and_then(|h| h.path.as_deref()),
            Some("/readyz"),
            "{}: readiness probe",
            p.name
        );
        let readyz = raw_get(
            SocketAddr::from((p.ip, POD_ADMIN)),
            "localhost",
            "/readyz",
            Duration::from_secs(2),
        );
        assert_eq!(readyz.status, 200, "{}: GET /readyz on {}:{POD_ADMIN}", p.name, p.ip);
        assert!(
            spec.volumes
                .unwrap_or_default()
                .iter()
                .any(|v| v.projected.as_ref().is_some_and(|pr| pr
                    .sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some()))),
            "{}: no projected ServiceAccount token volume",
            p.name
        );
        wait_routed(SocketAddr::from((p.ip, POD_HTTP)), host);
    }
    let user = format!("system:serviceaccount:{ns}:{service_account}");
    let used: BTreeSet<String> = wait_until(
        "audit records of every replica's requests with its own bound token",
        Duration::from_secs(20),
        Duration::from_millis(500),
        || {
            let used: BTreeSet<String> = t
                .cluster()
                .audit_events()
                .iter()
                .filter(|e| e["user"]["username"] == user.as_str())
                .filter_map(|e| {
                    e["user"]["extra"]["authentication.kubernetes.io/pod-name"][0]
                        .as_str()
                        .map(str::to_string)
                })
                .collect();
            if pods.iter().all(|p| used.contains(&p.name)) {
                Ok(used)
            } else {
                Err(format!("pods seen with {user}'s bound tokens: {used:?}"))
            }
        },
    );
    eprintln!("    {user} authenticated with the tokens projected into {used:?}");
}

/// Ingress status: written once the Service has a load-balancer address (the test
/// writes it, as a cloud's controller would: the node's address, where kube-proxy
/// serves the Service), by the one replica holding the Lease.
async fn check_status(t: &Test, ns: &str, service: &str, lease: &str, pods: &[PodAddr]) {
    let lb = json!({"status": {"loadBalancer": {"ingress": [{"ip": NODE_ADDR.to_string()}]}}});
    Api::<Service>::namespaced(t.client.clone(), ns)
        .patch_status(service, &PatchParams::default(), &Patch::Merge(&lb))
        .await
        .expect("writing the Service's load-balancer status");
    let ingresses = t.api::<Ingress>();
    wait_until_async(
        "the Ingress status to carry the Service's address",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let ing = ingresses.get("web").await.map_err(|e| e.to_string())?;
            let ip = ing
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress)
                .and_then(|i| i.first().and_then(|i| i.ip.clone()));
            if ip.as_deref() == Some(NODE_ADDR.to_string().as_str()) {
                Ok(())
            } else {
                Err(format!("status ip {ip:?}"))
            }
        },
    )
    .await;
    let holder = Api::<Lease>::namespaced(t.client.clone(), ns)
        .get(lease)
        .await
        .expect("the leader-election Lease")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a Lease holder");
    let writers: Vec<&str> = pods
        .iter()
        .filter(|p| t.pod_logs(ns, &p.name).contains("Ingress status updated"))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        writers,
        vec![holder.as_str()],
        "status writers vs the Lease holder {holder}"
    );
    eprintln!("    Ingress status written by {holder} only (Lease {ns}/{lease})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_chart_install() {
    let t = Test::start("chart").await;
    let _class = ClassHandover::take(&t);
    let host = t.host("web");
    echo_backend(&t, &host, 2).await;
    let pods = helm_install(&t).await;
    check_replicas(&t, &t.ns, FULLNAME, &pods, &host).await;
    check_status(&t, &t.ns, FULLNAME, "portico-leader", &pods).await;

    // An upgrade with the same values changes nothing: no new pods.
    helm(
        &t,
        &["upgrade", RELEASE, "charts/portico", "--namespace", &t.ns],
        &helm_image_args(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = wait_pods(&t.client, &t.ns, CHART_SELECTOR, 2, Duration::from_secs(60)).await;
    assert_eq!(after, pods, "helm upgrade with unchanged values replaced pods");
    helm(&t, &["uninstall", RELEASE, "--namespace", &t.ns, "--wait"], &[]);
    t.delete::<Deployment>("web").await;
}

/// Waits until two replicas are ready, no other pod exists, and they are not the
/// `before` ones (a rollout or a replacement has happened and is over).
async fn wait_changed(t: &Test, ns: &str, selector: &str, before: &[PodAddr]) -> Vec<PodAddr> {
    wait_until_async(
        &format!("two ready replicas ({selector} in {ns}) other than {before:?}"),
        Duration::from_secs(180),
        Duration::from_millis(500),
        || async {
            let now = wait_pods(&t.client, ns, selector, 2, Duration::from_secs(180)).await;
            if now == before {
                Err(format!("{now:?}"))
            } else {
                Ok(now)
            }
        },
    )
    .await
}

/// The chart installed next to an echo Deployment, load through the node port of its
/// Service, then `disrupt` (given the replicas); waits until two replicas other than
/// the disrupted ones are ready, keeps the load 3 s more, and checks that no request
/// failed. Returns the replicas before and after.
async fn chart_under_load<F, Fut>(t: &Test, what: &str, retry: bool, disrupt: F) -> (Vec<PodAddr>, Vec<PodAddr>)
where
    F: FnOnce(Vec<PodAddr>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let host = t.host("web");
    echo_backend(t, &host, 2).await;
    let before = helm_install(t).await;
    let target = portico_e2e::node::node_port(&t.client, &t.ns, FULLNAME, "http").await;
    wait_routed(target, &host);
    let load = Load::start(LoadSpec {
        targets: vec![target],
        host: host.clone(),
        path: "/".into(),
        threads: 4,
        retry_connect: retry,
        pause: Duration::from_millis(5),
    });
    tokio::time::sleep(Duration::from_secs(3)).await;

    let started = Instant::now();
    disrupt(before.clone()).await;
    let after = wait_changed(t, &t.ns, CHART_SELECTOR, &before).await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = load.stop();
    eprintln!(
        "    {what}: replicas {before:?} -> {after:?} in {:.1}s; {} requests, {} failed, {} connection attempts retried",
        elapsed.as_secs_f64(),
        tally.sent,
        tally.failed,
        tally.retried
    );
    assert!(tally.sent > 100, "too little load to tell: {tally:?}");
    assert_eq!(tally.failed, 0, "{what}: failed requests: {:?}", tally.failures);
    (before, after)
}

/// `helm upgrade` changing a value restarts every replica (maxSurge 1,
/// maxUnavailable 0, preStop sleep 5 s, drain 30 s: the chart as shipped); clients
/// see no failed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_chart_rolling_upgrade_under_load() {
    let test = Test::start("upgrade").await;
    let t = &test;
    let _class = ClassHandover::take(t);
    let (before, after) = chart_under_load(t, "rolling upgrade", false, move |_| async move {
        let mut args = helm_image_args();
        args.extend(["--set".to_string(), "controller.maxBodySize=2m".to_string()]);
        helm(t, &["upgrade", RELEASE, "charts/portico", "--namespace", &t.ns], &args);
    })
    .await;
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "the upgrade did not replace every pod: {before:?} -> {after:?}"
    );
    let deploy = t.api::<Deployment>().get(FULLNAME).await.expect("deployment");
    let args = format!(
        "{:?}",
        deploy
            .spec
            .and_then(|s| s.template.spec)
            .map(|s| s.containers[0].args.clone())
    );
    assert!(args.contains("--max-body-size=2m"), "new args: {args}");
    helm(t, &["uninstall", RELEASE, "--namespace", &t.ns, "--wait"], &[]);
    t.delete::<Deployment>("web").await;
}

/// Deleting one Portico pod (`kubectl delete pod`: preStop, SIGTERM, drain) while
/// clients that retry connections that could not be made send requests: none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_chart_pod_delete_under_load() {
    let t = Test::start("podkill").await;
    let _class = ClassHandover::take(&t);
    let pods = Api::<Pod>::namespaced(t.client.clone(), &t.ns);
    let (before, after) = chart_under_load(&t, "pod deletion", true, move |before| async move {
        pods.delete(&before[0].name, &DeleteParams::default())
            .await
            .expect("deleting a Portico pod");
    })
    .await;
    assert!(
        !after.contains(&before[0]),
        "{} is still there: {after:?}",
        before[0].name
    );
    assert!(
        after.contains(&before[1]),
        "the other replica was replaced too: {after:?}"
    );
    helm(&t, &["uninstall", RELEASE, "--namespace", &t.ns, "--wait"], &[]);
    t.delete::<Deployment>("web").await;
}

/// `kubectl apply -f manifests/portico.yaml` (the chart rendered with defaults, the
/// image under the chart's default name) gives the same as the chart; then the
/// upgrade path the docs give, `kubectl apply --server-side`, works on the unchanged
/// file and on a changed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_manifest_apply() {
    const NS: &str = "portico-system";
    const SELECTOR: &str = "app.kubernetes.io/instance=portico,app.kubernetes.io/component=controller";
    let t = Test::start("manifest").await;
    let _class = ClassHandover::take(&t);
    let cluster = t.cluster();
    let manifest = cluster.repo().join("manifests/portico.yaml");
    let manifest = manifest.to_string_lossy();
    let host = t.host("web");
    echo_backend(&t, &host, 2).await;

    // Whatever happens, the workload goes; the ServiceAccount, RBAC and IngressClass
    // stay (the harness uses the same objects: deploy/rbac.yaml).
    struct Cleanup<'a>(&'a Test);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = self.0.cluster().kubectl_ok(&[
                "delete",
                "-n",
                "portico-system",
                "deployment/portico",
                "service/portico",
                "service/portico-metrics",
                "poddisruptionbudget/portico",
                "--ignore-not-found",
                "--wait",
            ]);
        }
    }
    let _cleanup = Cleanup(&t);

    cluster
        .kubectl_ok(&["apply", "-f", &manifest])
        .unwrap_or_else(|e| panic!("{e}"));
    let pods = wait_pods(&t.client, NS, SELECTOR, 2, Duration::from_secs(120)).await;
    check_replicas(&t, NS, "portico", &pods, &host).await;
    check_status(&t, NS, "portico", "portico-leader", &pods).await;

    // Server-side apply over the client-side apply, file unchanged: no conflict (the
    // fieldRefs carry apiVersion) and no new pods.
    cluster
        .kubectl_ok(&["apply", "--server-side", "-f", &manifest])
        .unwrap_or_else(|e| panic!("server-side apply of the unchanged manifest: {e}"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        wait_pods(&t.client, NS, SELECTOR, 2, Duration::from_secs(60)).await,
        pods,
        "an unchanged apply replaced pods"
    );

    // A changed value, server-side: a rolling restart with the new flag.
    let text = std::fs::read_to_string(&*manifest).expect("manifest");
    assert!(
        text.contains("--max-body-size=1m"),
        "the manifest's --max-body-size changed"
    );
    let changed = cluster.run_dir().join("tmp/portico-changed.yaml");
    std::fs::write(&changed, text.replace("--max-body-size=1m", "--max-body-size=2m")).expect("write");
    cluster
        .kubectl_ok(&["apply", "--server-side", "-f", &changed.to_string_lossy()])
        .unwrap_or_else(|e| panic!("server-side apply of a changed manifest: {e}"));
    let after = wait_changed(&t, NS, SELECTOR, &pods).await;
    assert!(
        after.iter().all(|p| !pods.contains(p)),
        "no rolling restart: {pods:?} -> {after:?}"
    );
    for p in &after {
        wait_routed(SocketAddr::from((p.ip, POD_HTTP)), &host);
    }
    t.delete::<Deployment>("web").await;
}

/// Backends as a Deployment scaled 2 -> 5 -> 1 under load (Portico as a process here,
/// reading the EndpointSlices kube-controller-manager writes): no failed request, and
/// every ready pod gets traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_backend_scale_under_load() {
    let t = Test::start("scale").await;
    let host = t.host("web");
    echo_backend(&t, &host, 2).await;
    let portico = t.portico().start();
    wait_routed(portico.http_addr(), &host);
    let load = Load::start(LoadSpec {
        targets: vec![portico.http_addr()],
        host: host.clone(),
        path: "/".into(),
        threads: 3,
        retry_connect: false,
        pause: Duration::from_millis(5),
    });

    for replicas in [2usize, 5, 1] {
        t.scale("web", replicas as i32).await;
        let pods = wait_pods(&t.client, &t.ns, "app=web", replicas, Duration::from_secs(90)).await;
        let names: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
        // Every ready pod, and only those, gets requests within a few seconds.
        let mark = load.snapshot();
        let seen = wait_until(
            &format!("traffic on exactly the {replicas} ready pods"),
            Duration::from_secs(20),
            Duration::from_millis(500),
            || {
                let seen: BTreeSet<String> = load.snapshot().by_backend_since(&mark).into_keys().collect();
                if seen == names {
                    Ok(seen)
                } else {
                    Err(format!("{seen:?} vs ready {names:?}"))
                }
            },
        );
        eprintln!("    {replicas} replicas: traffic on {seen:?}");
    }
    let tally = load.stop();
    assert!(tally.sent > 100, "too little load to tell: {tally:?}");
    assert_eq!(tally.failed, 0, "failed requests while scaling: {:?}", tally.failures);
    t.delete::<Deployment>("web").await;
}

/// A pod that fails its readiness probe stops getting traffic, and gets it again once
/// ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_backend_readiness() {
    let t = Test::start("readiness").await;
    let host = t.host("web");
    let pods = echo_backend(&t, &host, 3).await;
    let portico = t.portico().start();
    wait_routed(portico.http_addr(), &host);
    let victim = pods[0].clone();
    let control = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-X", "POST", "--max-time", "5"])
            .arg(format!("http://{}:8080{path}", victim.ip))
            .output()
            .expect("curl");
        assert!(out.status.success(), "POST {path} to {}: {out:?}", victim.name);
    };
    let backends = |n: usize| -> BTreeSet<String> {
        (0..n)
            .filter_map(|_| {
                let r = portico.probe(&host, "/");
                assert_eq!(r.status, 200, "a request failed: {r:?}");
                r.backend()
            })
            .collect()
    };

    control("/control/unready");
    let started = Instant::now();
    wait_until_async(
        "the pod failing readiness to leave the ready pods",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let ready = ready_pods(&t.client, &t.ns, "app=web").await;
            if ready.iter().any(|p| p.name == victim.name) {
                Err(format!("{ready:?}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    wait_until(
        "no more requests for the unready pod",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let seen = backends(60);
            if seen.contains(&victim.name) {
                Err(format!("{seen:?}"))
            } else {
                Ok(())
            }
        },
    );
    eprintln!(
        "    {} unready: no traffic {:.1}s after its probe started failing",
        victim.name,
        started.elapsed().as_secs_f64()
    );
    let seen = backends(200);
    assert!(
        !seen.contains(&victim.name) && seen.len() == 2,
        "200 requests went to {seen:?}"
    );

    control("/control/ready");
    wait_until(
        "requests for the pod once ready again",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let seen = backends(60);
            if seen.contains(&victim.name) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        },
    );
    t.delete::<Deployment>("web").await;
}
