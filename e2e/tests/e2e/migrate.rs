//! `portico migrate --kubeconfig` against a real API server: it reads the Ingresses of
//! ingress-nginx's class from the cluster once, reports each annotation the way the
//! file mode does, skips the Ingresses of other classes, and writes nothing.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::Api;
use portico_e2e::Test;
use portico_e2e::objects::{ingress, ingress_of_class};
use serde_json::Value;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn annotated(mut ing: Ingress, annotations: &[(&str, &str)]) -> Ingress {
    let map: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (format!("{NGINX}{k}"), v.to_string()))
        .collect();
    ing.metadata.annotations = Some(map);
    ing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_reports_a_live_clusters_ingresses_and_writes_nothing() {
    let t = Test::start("migrate").await;
    let host = t.host("shop");
    let shop = annotated(
        ingress_of_class(
            "shop",
            Some("nginx"),
            &host,
            &[("/shop(/|$)(.*)", "ImplementationSpecific", "web")],
        ),
        &[
            // Honoured (ingress-nginx's docs/examples/rewrite).
            ("app-root", "/app1"),
            // Honoured with a stated difference.
            ("rewrite-target", "/$2"),
            ("use-regex", "true"),
            // Refused: never interpreted.
            ("configuration-snippet", "more_set_headers \"X: y\";"),
            // Not supported.
            ("enable-modsecurity", "true"),
            // Does not parse.
            ("proxy-body-size", "lots"),
        ],
    );
    let written = t.apply(&shop).await;
    // Portico's own class: not ingress-nginx's, so skipped.
    t.apply(&annotated(
        ingress("own", &t.host("own"), &[("/", "Prefix", "web")]),
        &[("rewrite-target", "/")],
    ))
    .await;

    let out = Command::new(t.cluster().portico_bin())
        .arg("migrate")
        .arg("--kubeconfig")
        .arg(t.cluster().admin_kubeconfig())
        .args(["--output", "json"])
        .output()
        .expect("running portico migrate");
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    // Something would behave differently: exit status 1.
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["schema"], "portico.dev/migrate/v1");

    let ours = |list: &Value, name: &str| {
        list.as_array()
            .into_iter()
            .flatten()
            .find(|i| i["namespace"] == t.ns.as_str() && i["name"] == name)
            .cloned()
    };
    let shop = ours(&report["ingresses"], "shop").unwrap_or_else(|| panic!("shop not reported: {report}"));
    let status = |annotation: &str| {
        shop["annotations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == format!("{NGINX}{annotation}").as_str())
            .map(|a| a["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("{annotation} not reported: {shop}"))
    };
    assert_eq!(status("app-root"), "honoured", "{shop}");
    assert_eq!(status("rewrite-target"), "differs", "{shop}");
    assert_eq!(status("use-regex"), "differs", "{shop}");
    assert_eq!(status("configuration-snippet"), "refused", "{shop}");
    assert_eq!(status("enable-modsecurity"), "unsupported", "{shop}");
    assert_eq!(status("proxy-body-size"), "invalid", "{shop}");
    assert!(ours(&report["ingresses"], "own").is_none(), "{report}");
    assert!(
        ours(&report["skipped"], "own").is_some(),
        "own class not listed as skipped: {report}"
    );

    // Nothing written: the Ingress is as it was applied.
    let now = Api::<Ingress>::namespaced(t.client.clone(), &t.ns)
        .get("shop")
        .await
        .expect("reading the Ingress");
    assert_eq!(now.metadata.resource_version, written.metadata.resource_version);
}
