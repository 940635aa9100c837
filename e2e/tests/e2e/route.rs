//! The Route custom resource against a real API server: the CRD's CEL rules refuse a
//! bad Route with their message, a good one is served (with a rewrite and a header
//! match), and the leader writes its status conditions.

use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use portico_e2e::objects::{endpoint_slice, service};
use portico_e2e::{Test, ms, wait_until_async};
use serde_json::{Value, json};

const POLL: Duration = Duration::from_secs(20);

fn routes(t: &Test) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("portico.dev", "v1alpha1", "Route");
    Api::namespaced_with(t.client.clone(), &t.ns, &ApiResource::from_gvk(&gvk))
}

fn route(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "portico.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a Route object")
}

/// `(type, status, reason)` of each status condition.
fn conditions(obj: &DynamicObject) -> Vec<(String, String, String)> {
    let field = |c: &Value, f: &str| c.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
    obj.data["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| (field(c, "type"), field(c, "status"), field(c, "reason")))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_cel_refusal_serving_and_status() {
    let t = Test::start("route").await;
    let crd = t.cluster().repo().join("crds/portico.dev_routes.yaml");
    t.cluster()
        .kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &crd.to_string_lossy(),
        ])
        .expect("applying the Route CRD");
    t.cluster()
        .kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/routes.portico.dev",
            "--timeout=30s",
        ])
        .expect("the Route CRD to be established");
    let api = routes(&t);

    // The API server refuses what the CEL rules forbid, with their message.
    let bad = route(
        "bad",
        json!({"rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 304}}]}]}),
    );
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("a redirect status of 304 is refused");
    eprintln!("    refused: {err}");
    assert!(
        err.to_string()
            .contains("statusCode must be one of 301, 302, 303, 307, 308"),
        "{err}"
    );
    let both = route(
        "both",
        json!({"rules": [{"backendRefs": [{"name": "web", "port": 80}],
                          "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]}]}),
    );
    let err = api.create(&PostParams::default(), &both).await.expect_err("refused");
    assert!(err.to_string().contains("cannot also have backendRefs"), "{err}");

    // A good Route is served: a header match, and a rewrite the backend sees.
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let host = t.host("shop");
    let good = route(
        "shop",
        json!({"hostnames": [host], "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
             "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}}],
             "backendRefs": [{"name": "web", "port": 80}]}]}),
    );
    api.create(&PostParams::default(), &good).await.expect("a good Route");
    let lost = route(
        "lost",
        json!({"hostnames": [t.host("lost")], "rules": [{"backendRefs": [{"name": "nowhere", "port": 80}]}]}),
    );
    api.create(&PostParams::default(), &lost)
        .await
        .expect("a Route to a missing Service");

    let portico = t.portico().start();
    let took = portico.wait_status(&host, "/old/x", 200, Instant::now(), POLL);
    eprintln!("    served after {:.0} ms", ms(took));
    let r = portico.get(&host, "/old/x");
    assert_eq!(r.path().as_deref(), Some("/new/x"), "{r:?}");
    assert_eq!(portico.get(&t.host("lost"), "/").status, 503);

    // The leader writes the conditions.
    let shop = wait_until_async("the status of shop", POLL, Duration::from_millis(100), || async {
        let obj = api.get("shop").await.map_err(|e| e.to_string())?;
        if conditions(&obj).is_empty() {
            Err("no conditions yet".into())
        } else {
            Ok(obj)
        }
    })
    .await;
    assert_eq!(
        conditions(&shop),
        vec![
            ("Accepted".into(), "True".into(), "Accepted".into()),
            ("ResolvedRefs".into(), "True".into(), "ResolvedRefs".into())
        ]
    );
    assert_eq!(shop.data["status"]["conditions"][0]["observedGeneration"], json!(1));
    let lost = wait_until_async("the status of lost", POLL, Duration::from_millis(100), || async {
        let obj = api.get("lost").await.map_err(|e| e.to_string())?;
        if conditions(&obj).is_empty() {
            Err("no conditions yet".into())
        } else {
            Ok(obj)
        }
    })
    .await;
    assert_eq!(
        conditions(&lost)[1],
        ("ResolvedRefs".into(), "False".into(), "ServiceNotFound".into())
    );
    portico.assert_running();
}
