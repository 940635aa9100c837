//! How fast changes go live, and what 10,000 Ingresses cost. Numbers are printed
//! (run with --nocapture); the assertions are the promises, not tight budgets.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use portico_e2e::objects::{endpoint_slice, ingress, service};
use portico_e2e::{Test, ms, percentile};
use serde_json::Value;

const LATENCY_CHANGES: usize = 100;
const SCALE_INGRESSES: usize = 10_000;
const IN_FLIGHT: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_routable_latency() {
    let t = Test::start("latency").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let portico = t.portico().start();
    let api: Api<Ingress> = t.api();

    // Each change: create one Ingress (a new host and path), then poll portico every
    // few ms until it answers 200; the time runs from the create call returning.
    let mut took = Vec::with_capacity(LATENCY_CHANGES);
    for i in 0..LATENCY_CHANGES {
        let host = t.host(&format!("lat{i}"));
        let path = format!("/p{i}");
        let ing = ingress(&format!("lat{i}"), &host, &[(&path, "Prefix", "web")]);
        api.create(&PostParams::default(), &ing).await.expect("create");
        took.push(portico.wait_status(&host, &path, 200, Instant::now(), Duration::from_secs(30)));
    }
    took.sort();
    let (p50, p90, p99, max) = (
        percentile(&took, 50.0),
        percentile(&took, 90.0),
        percentile(&took, 99.0),
        took[took.len() - 1],
    );
    eprintln!(
        "    apply-to-routable over {} Ingress creates: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        took.len(),
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max)
    );
    assert!(
        p99 < Duration::from_secs(1),
        "p99 apply-to-routable {p99:?} is over 1 s"
    );
    portico.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_ingresses() {
    let t = Test::start("scale").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let portico = t.portico().start();
    let rss_idle = portico.proc_kib("VmRSS");
    let api: Api<Ingress> = t.api();
    let host = |i: usize| format!("s{i}.{}.e2e.test", t.ns);

    // Create them through the API server, IN_FLIGHT at a time.
    let started = Instant::now();
    futures::stream::iter(0..SCALE_INGRESSES)
        .map(|i| {
            let api = api.clone();
            let ing = ingress(&format!("s{i}"), &host(i), &[("/", "Prefix", "web")]);
            async move {
                let mut attempt = 0;
                loop {
                    match api.create(&PostParams::default(), &ing).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()), // an earlier try got through
                        Err(e) if attempt < 5 => {
                            attempt += 1;
                            eprintln!("    create s{i} failed ({e}); retrying");
                            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        }
                        Err(e) => return Err(format!("create s{i}: {e}")),
                    }
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let created = started.elapsed();
    eprintln!(
        "    created {SCALE_INGRESSES} Ingresses in {:.1} s ({:.0}/s, {IN_FLIGHT} in flight)",
        created.as_secs_f64(),
        SCALE_INGRESSES as f64 / created.as_secs_f64()
    );

    // Wait for the table with all of them; it is published right after its log line.
    let full = portico.wait_compiled_ingresses(SCALE_INGRESSES as u64, Duration::from_secs(300));
    let caught_up = started.elapsed();
    portico.wait_status(
        &host(SCALE_INGRESSES - 1),
        "/",
        200,
        Instant::now(),
        Duration::from_secs(30),
    );
    let compiles = portico.compiles();
    let compile_ms = |c: &Value| c.get("compile_ms").and_then(Value::as_f64).unwrap_or(f64::NAN);
    let max_compile = compiles.iter().map(compile_ms).fold(0.0, f64::max);
    let rss = portico.proc_kib("VmRSS");
    let hwm = portico.proc_kib("VmHWM");
    eprintln!(
        "    table with {} Ingresses ({} routes): compile {:.1} ms (largest compile of the run {:.1} ms, {} compiles), \
         live {:.1} s after the first create",
        full["ingresses"],
        full["routes"],
        compile_ms(&full),
        max_compile,
        compiles.len(),
        caught_up.as_secs_f64()
    );
    eprintln!(
        "    portico RSS: {:.1} MiB with {SCALE_INGRESSES} Ingresses (peak {:.1} MiB, {:.1} MiB before)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        rss_idle as f64 / 1024.0
    );

    // Every 100th host routes, through one curl run.
    let hosts: Vec<String> = (0..SCALE_INGRESSES).step_by(100).map(host).collect();
    let codes = portico_e2e::http::curl_hosts(portico.http_addr(), &hosts, "/");
    let failed: Vec<_> = hosts.iter().zip(&codes).filter(|(_, c)| **c != 200).collect();
    assert!(failed.is_empty(), "hosts not routed: {failed:?}");
    eprintln!(
        "    {} of {} sampled hosts answer 200",
        codes.len() - failed.len(),
        hosts.len()
    );
    portico.assert_running();

    // Leave nothing this size behind for later tests.
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("deleting the Ingresses");
}
