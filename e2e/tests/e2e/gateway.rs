//! Gateway API on the node: Portico installed by Helm before the Gateway API CRDs
//! exist, the CRDs installed afterwards (no restart), then a Gateway and an HTTPRoute
//! to an echo Deployment. What a user does after `helm install` and
//! `kubectl apply -f standard-install.yaml` in either order (docs/gateway-api.md).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use portico_e2e::node::{echo_deployment, wait_pods};
use portico_e2e::objects::service;
use portico_e2e::{Test, wait_until};

use crate::node::{CHART_SELECTOR, ClassHandover, RELEASE, helm, helm_image_args, wait_routed};

/// The vendored standard channel the chart installs with gatewayAPI.installCRDs
/// (relative to the repository).
const CRDS: &str = "charts/portico/files/gateway-api-v1.6.3";
const HOST: &str = "gw.portico.test";

/// Takes the Gateway API CRDs out again when the test ends, however it ends: the
/// other tests run on a cluster without them.
pub(crate) struct CrdsInstalled<'a>(&'a Test);

impl Drop for CrdsInstalled<'_> {
    fn drop(&mut self) {
        let crds = crds(self.0);
        let _ = self
            .0
            .cluster()
            .kubectl_ok(&["delete", "-f", &crds, "--ignore-not-found", "--wait=false"]);
    }
}

fn crds(t: &Test) -> String {
    t.cluster().repo().join(CRDS).to_string_lossy().into_owned()
}

/// Installs the vendored CRDs and waits until the API server serves them; they go
/// again when the value is dropped.
pub(crate) fn install_crds(t: &Test) -> CrdsInstalled<'_> {
    let installed = CrdsInstalled(t);
    kubectl(t, &["apply", "--server-side", "-f", &crds(t)]);
    kubectl(
        t,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/gatewayclasses.gateway.networking.k8s.io",
            "crd/gateways.gateway.networking.k8s.io",
            "crd/httproutes.gateway.networking.k8s.io",
        ],
    );
    installed
}

/// Uninstalls the chart's release when the test ends, however it ends: the chart's
/// cluster-wide objects would keep the next test from installing it.
struct Installed<'a>(&'a Test);

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .cluster()
            .helm(&["uninstall", RELEASE, "--namespace", &self.0.ns, "--wait"]);
    }
}

pub(crate) fn kubectl(t: &Test, args: &[&str]) -> String {
    t.cluster()
        .kubectl_ok(args)
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

/// `jsonpath` of one object, as the admin.
fn get(t: &Test, what: &[&str], jsonpath: &str) -> Result<String, String> {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let path = format!("jsonpath={jsonpath}");
    args.extend_from_slice(&["-o", &path]);
    t.cluster().kubectl_ok(&args).map(|s| s.trim().to_string())
}

fn wait_for(t: &Test, what: &str, object: &[&str], jsonpath: &str, want: &str) -> String {
    wait_until(
        what,
        Duration::from_secs(90),
        Duration::from_millis(250),
        || match get(t, object, jsonpath) {
            Ok(v) if v == want => Ok(v),
            Ok(v) => Err(format!("{jsonpath} is {v:?}, want {want:?}")),
            Err(e) => Err(e),
        },
    )
}

/// gateway-api v1.6.3 conformance `GatewayClassObservedGenerationBump`,
/// `HTTPRouteSimpleSameNamespace` and `GatewayWithAttachedRoutes`, against the chart
/// as installed, with the CRDs arriving after Portico.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_gateway_api_crds_after_install() {
    let t = Test::start("gateway").await;
    let _class = ClassHandover::take(&t);
    assert!(
        get(&t, &["crd", "gateways.gateway.networking.k8s.io"], "{.metadata.name}").is_err(),
        "the Gateway API CRDs must not be installed before this test"
    );
    let mut args = helm_image_args();
    args.extend(["--set".into(), "gatewayAPI.serviceType=ClusterIP".into()]);
    helm(&t, &["install", RELEASE, "charts/portico", "--namespace", &t.ns], &args);
    let _release = Installed(&t);
    wait_pods(&t.client, &t.ns, CHART_SELECTOR, 2, Duration::from_secs(120)).await;
    t.apply(&echo_deployment("web", 1)).await;
    t.apply(&service("web")).await;
    wait_pods(&t.client, &t.ns, "app=web", 1, Duration::from_secs(90)).await;

    // Now the CRDs, as a cluster admin would install them after Portico.
    let _crds = install_crds(&t);
    let started = Instant::now();
    let class = format!("portico-{}", t.ns);
    let objects = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: {class}}}
spec: {{controllerName: portico.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: {ns}}}
spec:
  gatewayClassName: {class}
  listeners:
    - {{name: http, protocol: HTTP, port: 80}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: {ns}}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [{HOST}]
  rules:
    - backendRefs: [{{name: web, port: 80}}]
"#,
        ns = t.ns
    );
    t.cluster()
        .kubectl_stdin(&["apply", "-f", "-"], &objects)
        .unwrap_or_else(|e| panic!("applying the Gateway API objects: {e}"));

    let cond = |kind: &str| format!("{{.status.conditions[?(@.type==\"{kind}\")].status}}");
    wait_for(
        &t,
        "the GatewayClass to be Accepted",
        &["gatewayclass", &class],
        &cond("Accepted"),
        "True",
    );
    let gw = ["gateway", "gw", "-n", t.ns.as_str()];
    wait_for(&t, "the Gateway to be Accepted", &gw, &cond("Accepted"), "True");
    wait_for(&t, "the Gateway to be Programmed", &gw, &cond("Programmed"), "True");
    let route = ["httproute", "web", "-n", t.ns.as_str()];
    wait_for(
        &t,
        "the HTTPRoute to be Accepted by Portico",
        &route,
        "{.status.parents[?(@.controllerName==\"portico.dev/gateway-controller\")].conditions[?(@.type==\"Accepted\")].status}",
        "True",
    );
    eprintln!(
        "    CRDs installed after Portico: Gateway and HTTPRoute accepted {:.1}s after apply",
        started.elapsed().as_secs_f64()
    );

    // The Gateway's address is its Service's cluster IP; port 80 is the listener's.
    let address = get(&t, &gw, "{.status.addresses[0].value}").unwrap_or_default();
    let ip: IpAddr = address
        .parse()
        .unwrap_or_else(|_| panic!("the Gateway's address {address:?} is not an IP"));
    let selector = "portico.dev/gateway-name=gw";
    let cluster_ip = get(
        &t,
        &["service", "-n", &t.ns, "-l", selector],
        "{.items[0].spec.clusterIP}",
    );
    assert_eq!(
        cluster_ip.as_deref(),
        Ok(address.as_str()),
        "the Gateway's address is not its Service's"
    );
    wait_routed(SocketAddr::new(ip, 80), HOST);
    eprintln!("    GET http://{HOST}/ through {ip}:80 (the Gateway's Service): 200 from a web pod");

    // The Gateway gone, its Service goes too.
    kubectl(&t, &["delete", "gateway", "gw", "-n", &t.ns]);
    wait_for(
        &t,
        "the Service of the deleted Gateway to be deleted",
        &["service", "-n", &t.ns, "-l", selector],
        "{.items[*].metadata.name}",
        "",
    );
    kubectl(&t, &["delete", "gatewayclass", &class]);
}
