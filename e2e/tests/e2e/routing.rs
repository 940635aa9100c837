//! Ingresses applied to the API server become routes, follow edits and go away.

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ListParams, PostParams};
use portico_e2e::objects::{endpoint_slice, ingress, ingress_class, ingress_of_class, service};
use portico_e2e::{Test, ms, wait_until_async};

/// What the issue promises: a change is served within a second.
const WITHIN: Duration = Duration::from_secs(1);
/// How long to poll before giving up, so a slow change is reported with its time.
const POLL: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_apply_change_delete() {
    let t = Test::start("routing").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    // Cluster-wide, as a default install runs: this also proves the ClusterRole.
    let portico = t.portico().all_namespaces().start();
    let host = t.host("app");

    // Apply: routed within a second of the API server accepting it.
    assert_eq!(
        portico.get(&host, "/v1").status,
        404,
        "no route before the Ingress exists"
    );
    t.apply(&ingress("app", &host, &[("/v1", "Prefix", "web")])).await;
    let took = portico.wait_status(&host, "/v1", 200, Instant::now(), POLL);
    eprintln!("    apply: routed after {:.0} ms", ms(took));
    let r = portico.get(&host, "/v1/items?x=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.backend().as_deref(), Some("web"), "{r:?}");
    assert_eq!(
        r.path().as_deref(),
        Some("/v1/items"),
        "the path reaches the backend unchanged"
    );
    assert_eq!(portico.get(&host, "/v2").status, 404);
    assert_eq!(
        portico.get(&t.host("other"), "/v1").status,
        404,
        "other hosts are not routed"
    );
    assert!(took < WITHIN, "apply took {took:?} to be routed");

    // Change the path: the new one is served, the old one is gone.
    t.apply(&ingress("app", &host, &[("/v2", "Prefix", "web")])).await;
    let took = portico.wait_status(&host, "/v2", 200, Instant::now(), POLL);
    eprintln!("    change: new path routed after {:.0} ms", ms(took));
    assert_eq!(
        portico.get(&host, "/v1").status,
        404,
        "the old path is gone with the same table"
    );
    assert_eq!(portico.get(&host, "/v2/x").backend().as_deref(), Some("web"));
    assert!(took < WITHIN, "change took {took:?} to be routed");

    // Delete: 404.
    t.delete::<Ingress>("app").await;
    let took = portico.wait_status(&host, "/v2", 404, Instant::now(), POLL);
    eprintln!("    delete: 404 after {:.0} ms", ms(took));
    assert_eq!(portico.get(&host, "/v2").status, 404);
    assert!(took < WITHIN, "delete took {took:?} to take effect");
    portico.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_class_ignored_and_broken_ingress_reported() {
    let t = Test::start("classes").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let portico = t.portico().start();

    let good = t.host("good");
    t.apply(&ingress("good", &good, &[("/", "Prefix", "web")])).await;
    portico.wait_status(&good, "/", 200, Instant::now(), POLL);

    // Another controller's class, an unknown class, and no class (portico's class is
    // not the default): none of them is portico's business.
    let other_class = format!("other-{}", t.ns);
    Api::<IngressClass>::all(t.client.clone())
        .create(
            &PostParams::default(),
            &ingress_class(&other_class, "example.com/other-controller"),
        )
        .await
        .expect("creating the other IngressClass");
    let foreign = t.host("foreign");
    let unknown = t.host("unknown");
    let classless = t.host("classless");
    t.apply(&ingress_of_class(
        "foreign",
        Some(&other_class),
        &foreign,
        &[("/", "Prefix", "web")],
    ))
    .await;
    t.apply(&ingress_of_class(
        "unknown",
        Some("no-such-class"),
        &unknown,
        &[("/", "Prefix", "web")],
    ))
    .await;
    t.apply(&ingress_of_class(
        "classless",
        None,
        &classless,
        &[("/", "Prefix", "web")],
    ))
    .await;

    // A broken Ingress of portico's class: its Service does not exist.
    let broken = t.host("broken");
    t.apply(&ingress("broken", &broken, &[("/", "Prefix", "missing")]))
        .await;
    // Its route is compiled (answering 503 until the Service appears). Ingress events
    // arrive in order, so that table has seen the three Ingresses applied before it.
    let took = portico.wait_status(&broken, "/", 503, Instant::now(), POLL);
    eprintln!("    broken Ingress compiled (503) after {:.0} ms", ms(took));
    for host in [&foreign, &unknown, &classless] {
        let r = portico.get(host, "/");
        assert_eq!(r.status, 404, "{host} belongs to no class of portico's: {r:?}");
    }
    let r = portico.get(&good, "/");
    assert_eq!(
        r.status, 200,
        "the good Ingress keeps working next to a broken one: {r:?}"
    );

    // A Warning Event on the broken Ingress, from the events.k8s.io API.
    let events: Api<Event> = t.api();
    let ev = wait_until_async(
        "a Warning Event on Ingress broken",
        POLL,
        Duration::from_millis(100),
        || async {
            let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|e| {
                    let r = e.regarding.as_ref();
                    r.and_then(|r| r.kind.as_deref()) == Some("Ingress")
                        && r.and_then(|r| r.name.as_deref()) == Some("broken")
                })
                .ok_or_else(|| "no Event yet".to_string())
        },
    )
    .await;
    eprintln!(
        "    Event: type={:?} reason={:?} note={:?} reportingController={:?}",
        ev.type_, ev.reason, ev.note, ev.reporting_controller
    );
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    assert_eq!(ev.reason.as_deref(), Some("ServiceNotFound"));
    assert!(
        ev.note.as_deref().unwrap_or_default().contains("missing"),
        "the note names the missing Service: {:?}",
        ev.note
    );
    let regarding = ev.regarding.as_ref().expect("regarding");
    assert_eq!(regarding.namespace.as_deref(), Some(t.ns.as_str()));
    assert_eq!(regarding.api_version.as_deref(), Some("networking.k8s.io/v1"));
    assert!(regarding.uid.is_some(), "the Event names the object by uid");

    // Nothing about Ingresses of other classes, no Warning about the good one.
    let list = events.list(&ListParams::default()).await.expect("events");
    for e in &list.items {
        let name = e.regarding.as_ref().and_then(|r| r.name.clone()).unwrap_or_default();
        assert!(
            !["foreign", "unknown", "classless"].contains(&name.as_str()),
            "portico reported on an Ingress that is not its own: {e:?}"
        );
        assert!(
            !(name == "good" && e.type_.as_deref() == Some("Warning")),
            "Warning about a good Ingress: {e:?}"
        );
    }

    // The fix is picked up: the Service and its endpoints appear, the host is routed.
    t.apply(&service("missing")).await;
    t.apply(&endpoint_slice("missing-1", "missing", &[web.addr])).await;
    let took = portico.wait_status(&broken, "/", 200, Instant::now(), POLL);
    eprintln!("    fixed Ingress routed after {:.0} ms", ms(took));
    assert_eq!(portico.get(&good, "/").status, 200);
    portico.assert_running();
}
