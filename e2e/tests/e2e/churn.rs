//! Churn under load through the real API server: many Ingresses loaded, a stream of
//! changes to them, and the TLS Secret of a stable route rotated, while oha drives
//! that route over HTTP/1.1 and HTTP/2. No request may fail; p99 is reported beside a
//! quiet run of the same load.
//!
//! The test command runs a short version (2,000 Ingresses, 20 s); `PORTICO_CHURN_FULL=1`
//! runs the full one (10,000 Ingresses, 60 s), whose figures docs/hardening.md gives.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use portico_e2e::Test;
use portico_e2e::objects::{endpoint_slice, ingress, service};
use portico_e2e::tls::{leaf, make_ca, tls_secret, with_tls};
use serde_json::{Value, json};

/// Changes a second to the loaded Ingresses, and how often the Secret rotates.
const CHANGES_PER_SECOND: u64 = 100;
const ROTATE_EVERY: Duration = Duration::from_secs(5);
/// Each protocol's load: a fixed rate over a few kept-alive connections.
const RATE: u32 = 200;
const CONNECTIONS: u32 = 4;
const IN_FLIGHT: usize = 16;

struct Size {
    ingresses: usize,
    seconds: u64,
}

fn size() -> Size {
    if std::env::var("PORTICO_CHURN_FULL").is_ok_and(|v| v == "1") {
        Size {
            ingresses: 10_000,
            seconds: 60,
        }
    } else {
        Size {
            ingresses: 2_000,
            seconds: 20,
        }
    }
}

fn oha_bin() -> PathBuf {
    let cache = std::env::var_os("PORTICO_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/portico"));
    let oha = cache.join("oha/bin/oha");
    assert!(
        oha.exists(),
        "{} is missing: bench/run.sh builds it (the test command runs it before this suite)",
        oha.display()
    );
    oha
}

/// One oha run against `host` on Portico's HTTPS port, JSON to `out`.
fn oha(host: &str, port: u16, http2: bool, seconds: u64, out: &Path) -> Child {
    let mut cmd = Command::new(oha_bin());
    cmd.args(["--no-tui", "--output-format", "json", "--insecure"])
        .args(["-z", &format!("{seconds}s")])
        .args([
            "-c",
            &CONNECTIONS.to_string(),
            "-q",
            &RATE.to_string(),
            "--latency-correction",
        ])
        .args(["--connect-to", &format!("{host}:{port}:127.0.0.1:{port}")]);
    if http2 {
        cmd.args(["--http2", "-p", "1"]);
    } else {
        cmd.args(["--http-version", "1.1"]);
    }
    cmd.arg(format!("https://{host}:{port}/"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).expect("oha output"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting oha")
}

/// What one oha run saw: requests, failures (errors and statuses other than 200), p99.
struct Seen {
    requests: u64,
    failed: u64,
    p99_ms: f64,
    detail: String,
}

fn seen(mut child: Child, out: &Path) -> Seen {
    let status = child.wait().expect("oha");
    assert!(status.success(), "oha failed: {status}");
    let v: Value = serde_json::from_slice(&std::fs::read(out).expect("oha output")).expect("oha JSON");
    let codes = v["statusCodeDistribution"].as_object().cloned().unwrap_or_default();
    let mut errors = v["errorDistribution"].as_object().cloned().unwrap_or_default();
    // Requests still in flight when the run's time is up: stopped by oha, not failed.
    errors.remove("aborted due to deadline");
    let count = |m: &serde_json::Map<String, Value>| m.values().filter_map(Value::as_u64).sum::<u64>();
    let ok = codes.get("200").and_then(Value::as_u64).unwrap_or(0);
    let requests = count(&codes) + count(&errors);
    Seen {
        requests,
        failed: requests - ok,
        p99_ms: v["latencyPercentiles"]["p99"].as_f64().unwrap_or(f64::NAN) * 1000.0,
        detail: format!("statuses {codes:?}, errors {errors:?}"),
    }
}

/// oha over HTTP/1.1 and HTTP/2 at once for `seconds`: (HTTP/1.1, HTTP/2).
fn run_load(dir: &Path, label: &str, host: &str, port: u16, seconds: u64) -> (Child, Child, PathBuf, PathBuf) {
    let (o1, o2) = (
        dir.join(format!("{label}-h1.json")),
        dir.join(format!("{label}-h2.json")),
    );
    (
        oha(host, port, false, seconds, &o1),
        oha(host, port, true, seconds, &o2),
        o1,
        o2,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_under_load_fails_no_request() {
    let size = size();
    let t = Test::start("churn").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let portico = t.portico().args(&["--access-log", "false"]).start();
    let dir = t.cluster().run_dir().join(format!("churn-{}", t.cluster().next_id()));
    make_ca(&dir);
    let stable = t.host("stable");
    t.apply(&tls_secret("stable-tls", leaf(&dir, &stable, 0))).await;
    t.apply(&with_tls(
        ingress("stable", &stable, &[("/", "Prefix", "web")]),
        &stable,
        "stable-tls",
    ))
    .await;

    // The load: `size.ingresses` more, through the API server.
    let api: Api<Ingress> = t.api();
    let host = |i: usize| format!("c{i}.{}.e2e.test", t.ns);
    let started = Instant::now();
    futures::stream::iter(0..size.ingresses)
        .map(|i| {
            let api = api.clone();
            let ing = ingress(&format!("c{i}"), &host(i), &[("/", "Prefix", "web")]);
            async move {
                match api.create(&PostParams::default(), &ing).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                    Err(e) => Err(format!("create c{i}: {e}")),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let want = size.ingresses as u64 + 1;
    portico.wait_compiled_ingresses(want, Duration::from_secs(300));
    eprintln!(
        "    {} Ingresses loaded and live in {:.1} s",
        size.ingresses,
        started.elapsed().as_secs_f64()
    );
    let port = portico.https_addr().port();

    // Quiet: the same load with nothing changing.
    let (q1, q2, qo1, qo2) = run_load(&dir, "quiet", &stable, port, size.seconds);
    let (quiet1, quiet2) = (seen(q1, &qo1), seen(q2, &qo2));

    // Churn: the same load while Ingresses change and the Secret rotates.
    let (c1, c2, co1, co2) = run_load(&dir, "churn", &stable, port, size.seconds);
    let until = Instant::now() + Duration::from_secs(size.seconds);
    let changes = {
        let api = api.clone();
        let n = size.ingresses;
        let ns = t.ns.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / CHANGES_PER_SECOND));
            let mut done = 0u64;
            let mut failed = Vec::new();
            let mut pending = futures::stream::FuturesUnordered::new();
            while Instant::now() < until {
                tokio::select! {
                    _ = tick.tick() => {
                        let i = (done as usize * 7919) % n;
                        // A new path each time: a change the routing table must take.
                        let patch = json!({"spec": {"rules": [{"host": format!("c{i}.{ns}.e2e.test"), "http": {"paths": [
                            {"path": format!("/v{done}"), "pathType": "Prefix",
                             "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
                        let api = api.clone();
                        pending.push(async move {
                            api.patch(&format!("c{i}"), &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
                        });
                        done += 1;
                    }
                    Some(r) = pending.next(), if !pending.is_empty() => {
                        if let Err(e) = r { failed.push(e.to_string()); }
                    }
                }
            }
            while let Some(r) = pending.next().await {
                if let Err(e) = r {
                    failed.push(e.to_string());
                }
            }
            (done, failed)
        })
    };
    let mut rotations = 0u32;
    while Instant::now() + ROTATE_EVERY <= until {
        tokio::time::sleep(ROTATE_EVERY).await;
        rotations += 1;
        t.apply(&tls_secret("stable-tls", leaf(&dir, &stable, rotations))).await;
    }
    let (churn1, churn2) = tokio::task::spawn_blocking(move || (seen(c1, &co1), seen(c2, &co2)))
        .await
        .expect("oha");
    let (changed, change_errors) = changes.await.expect("changes");
    assert!(
        change_errors.is_empty(),
        "changes the API server refused: {change_errors:?}"
    );

    for (proto, quiet, churn) in [("HTTP/1.1", &quiet1, &churn1), ("HTTP/2", &quiet2, &churn2)] {
        eprintln!(
            "    {proto}: quiet {} requests, {} failed, p99 {:.2} ms; churn ({changed} changes, {rotations} rotations) \
             {} requests, {} failed, p99 {:.2} ms",
            quiet.requests, quiet.failed, quiet.p99_ms, churn.requests, churn.failed, churn.p99_ms
        );
        assert_eq!(quiet.failed, 0, "{proto} quiet: {}", quiet.detail);
        assert_eq!(churn.failed, 0, "{proto} under churn: {}", churn.detail);
        assert!(churn.requests > 0);
    }
    assert!(
        changed >= CHANGES_PER_SECOND * size.seconds * 9 / 10,
        "only {changed} changes sent"
    );
    portico.assert_running();

    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("deleting the Ingresses");
}
