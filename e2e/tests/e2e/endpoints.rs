//! EndpointSlice edits move traffic: a new endpoint gets its share, a removed one
//! gets nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use portico_e2e::http::Response;
use portico_e2e::objects::{endpoint_slice, ingress, service};
use portico_e2e::{Portico, Test, ms};

/// Requests per backend name (`"-"`: no backend answered).
fn spread(responses: &[Response]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for r in responses {
        let key = if r.status == 200 {
            r.backend().unwrap_or_else(|| "?".into())
        } else {
            format!("status {}", r.status)
        };
        *by.entry(key).or_insert(0) += 1;
    }
    by
}

/// Polls with fresh connections until `done` holds for the backends of `window`
/// answers in a row; returns when (since `since`) the first of those answers came.
fn wait_backends(
    portico: &Portico,
    host: &str,
    window: usize,
    since: Instant,
    what: &str,
    done: impl Fn(&[Option<String>]) -> bool,
) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen: Vec<Option<String>> = Vec::new();
    let mut at: Vec<Duration> = Vec::new();
    loop {
        let r = portico.probe(host, "/");
        at.push(since.elapsed());
        seen.push(if r.status == 200 { r.backend() } else { None });
        let from = seen.len().saturating_sub(window);
        if seen.len() >= window && done(&seen[from..]) {
            return at[from];
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 15s; last answers: {:?}",
            &seen[from..]
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_scale_up_and_down() {
    let t = Test::start("endpoints").await;
    let a = t.echo("a");
    let b = t.echo("b");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[a.addr])).await;
    let host = t.host("app");
    t.apply(&ingress("app", &host, &[("/", "Prefix", "web")])).await;
    let portico = t.portico().start();
    portico.wait_status(&host, "/", 200, Instant::now(), Duration::from_secs(15));

    let one = portico.get_many(&host, "/", 50);
    assert_eq!(
        spread(&one),
        BTreeMap::from([("a".to_string(), 50)]),
        "one endpoint: all to a"
    );

    // Scale up: the slice gets b's address as well.
    t.apply(&endpoint_slice("web-1", "web", &[a.addr, b.addr])).await;
    let took = wait_backends(&portico, &host, 1, Instant::now(), "b gets traffic", |w| {
        w[0].as_deref() == Some("b")
    });
    eprintln!("    scale up: first request to b after {:.0} ms", ms(took));
    let both = portico.get_many(&host, "/", 200);
    let by = spread(&both);
    eprintln!("    200 requests over 2 endpoints: {by:?}");
    assert_eq!(by.values().sum::<usize>(), 200);
    let (na, nb) = (by.get("a").copied().unwrap_or(0), by.get("b").copied().unwrap_or(0));
    assert_eq!(na + nb, 200, "every request answered by a or b: {by:?}");
    assert!(na >= 40 && nb >= 40, "traffic spreads across both endpoints: {by:?}");

    // Scale down: a leaves the slice (and keeps running, so a request still sent to it
    // would be answered, and counted).
    t.apply(&endpoint_slice("web-1", "web", &[b.addr])).await;
    let since = Instant::now();
    let took = wait_backends(&portico, &host, 20, since, "a stops getting traffic", |w| {
        w.iter().all(|x| x.as_deref() == Some("b"))
    });
    eprintln!("    scale down: only b from {:.0} ms on (20 in a row)", ms(took));
    let after = portico.get_many(&host, "/", 200);
    let by = spread(&after);
    eprintln!("    200 requests after removing a: {by:?}");
    assert_eq!(
        by,
        BTreeMap::from([("b".to_string(), 200)]),
        "no request reaches the removed endpoint"
    );
    portico.assert_running();
}
