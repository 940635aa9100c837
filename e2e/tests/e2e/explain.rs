//! `portico explain --kubeconfig` against a real API server, as portico's own
//! ServiceAccount: the objects are read once, the answer names the Ingress and path
//! that would serve the request, and nothing is written.

use std::net::Ipv4Addr;
use std::process::Command;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use portico_e2e::Test;
use portico_e2e::objects::{endpoint_slice, ingress, service};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reads_the_cluster_once_and_writes_nothing() {
    let t = Test::start("explain").await;
    // No traffic is sent: the addresses only have to be valid EndpointSlice addresses.
    let (web, api) = (Ipv4Addr::new(198, 18, 250, 1), Ipv4Addr::new(198, 18, 250, 2));
    t.apply(&service("web")).await;
    t.apply(&service("api")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web])).await;
    t.apply(&endpoint_slice("api-1", "api", &[api])).await;
    let host = t.host("app");
    let written = t
        .apply(&ingress(
            "app",
            &host,
            &[("/", "Prefix", "web"), ("/api", "Prefix", "api")],
        ))
        .await;

    let explain = |host: &str, path: &str| {
        let out = Command::new(t.cluster().portico_bin())
            .arg("explain")
            .arg("--kubeconfig")
            .arg(t.cluster().portico_kubeconfig())
            .args(["--watch-namespace", &t.ns, "--output", "json", host, path])
            .output()
            .expect("running portico explain");
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), json)
    };

    let (code, e) = explain(&host, "/api/items");
    assert_eq!(code, Some(0), "{e}");
    let served = &e["served_by"];
    assert_eq!(served["kind"], "Ingress");
    assert_eq!(served["namespace"], t.ns.as_str());
    assert_eq!(served["name"], "app");
    assert_eq!(
        (served["rule"].as_u64(), served["path_index"].as_u64()),
        (Some(0), Some(1))
    );
    let endpoints = &e["backends"][0]["endpoints"];
    assert_eq!(endpoints[0].as_str(), Some(format!("{api}:8080").as_str()), "{e}");
    assert_eq!(e["not_chosen"][0]["reason"], "shorter-path");
    assert_eq!(e["not_chosen"][0]["rule"]["path"], "/");

    let (code, e) = explain(&host, "/x");
    assert_eq!(code, Some(0), "{e}");
    assert_eq!(e["served_by"]["path"], "/");
    // A host no rule names: 404, exit status 1.
    let (code, e) = explain(&t.host("other"), "/api");
    assert_eq!(code, Some(1), "{e}");
    assert_eq!(e["status"], 404);

    // Nothing written: no Event, the Ingress untouched (status included).
    let events = Api::<Event>::namespaced(t.client.clone(), &t.ns)
        .list(&ListParams::default())
        .await
        .expect("listing Events");
    assert!(events.items.is_empty(), "{:?}", events.items);
    let now = Api::<Ingress>::namespaced(t.client.clone(), &t.ns)
        .get("app")
        .await
        .expect("reading the Ingress");
    assert_eq!(now.metadata.resource_version, written.metadata.resource_version);
}
