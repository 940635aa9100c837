//! Losing the API server never takes routes away: portico serves its last table
//! through the outage and catches up once the API server is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portico_e2e::objects::{endpoint_slice, ingress, service};
use portico_e2e::{Test, ms, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_through_apiserver_restart() {
    let t = Test::start("restart").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let host = t.host("site");
    t.apply(&ingress("site", &host, &[("/", "Prefix", "web")])).await;
    let portico = t.portico().start();
    portico.wait_status(&host, "/", 200, Instant::now(), Duration::from_secs(15));
    let errors_before = portico.metric("portico_watch_errors_total");

    // Requests all along, from another thread, while the API server goes away.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let (addr, host) = (portico.http_addr(), host.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut answers: Vec<(Duration, u16)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = portico_e2e::http::raw_get(addr, &host, "/", Duration::from_secs(5));
                answers.push((started.elapsed(), r.status));
                std::thread::sleep(Duration::from_millis(20));
            }
            answers
        })
    };

    let down = Instant::now();
    t.cluster().stop_apiserver();
    eprintln!(
        "    kube-apiserver stopped (took {:.1} s)",
        down.elapsed().as_secs_f64()
    );
    // Down until portico has noticed (its watches fail) and for at least 3 s of requests.
    wait_until(
        "portico to notice the API server is gone",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let errors = portico.metric("portico_watch_errors_total");
            if errors > errors_before && down.elapsed() >= Duration::from_secs(3) {
                Ok(())
            } else {
                Err(format!("watch errors {errors_before} -> {errors}"))
            }
        },
    );
    let r = portico.get(&host, "/");
    assert_eq!(r.status, 200, "curl while the API server is down: {r:?}");
    assert_eq!(r.backend().as_deref(), Some("web"));
    let starting = Instant::now();
    t.cluster().start_apiserver();
    eprintln!(
        "    kube-apiserver started (took {:.1} s)",
        starting.elapsed().as_secs_f64()
    );
    let outage = down.elapsed();
    eprintln!("    kube-apiserver back after {:.1} s", outage.as_secs_f64());
    // A little serving after the restart too, while the watches reconnect.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let answers = poller.join().expect("poller");
    let bad: Vec<_> = answers.iter().filter(|(_, s)| *s != 200).collect();
    eprintln!(
        "    {} requests during the outage and restart, {} not 200",
        answers.len(),
        bad.len()
    );
    assert!(
        answers.len() >= 50,
        "too few requests to say anything: {}",
        answers.len()
    );
    assert!(bad.is_empty(), "requests failed while the API server was away: {bad:?}");
    portico.assert_running();

    // A change made after the restart is picked up.
    let host2 = t.host("after");
    t.apply(&ingress("after", &host2, &[("/", "Prefix", "web")])).await;
    let took = portico.wait_status(&host2, "/", 200, Instant::now(), Duration::from_secs(90));
    eprintln!("    change after the restart routed after {:.0} ms", ms(took));
    // And one to the first Ingress: the existing routes follow edits again too.
    t.apply(&ingress("site", &host, &[("/new", "Exact", "web")])).await;
    let took2 = portico.wait_status(&host, "/", 404, Instant::now(), Duration::from_secs(30));
    assert_eq!(portico.get(&host, "/new").status, 200);
    eprintln!("    edit of the first Ingress routed after {:.0} ms", ms(took2));
}
