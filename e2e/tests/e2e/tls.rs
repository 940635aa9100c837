//! TLS Secrets from the real API server: per-host certificates, a broken Secret that
//! falls back to the default certificate with an Event, and rotation.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use portico_e2e::objects::{endpoint_slice, ingress, service};
use portico_e2e::tls::{leaf, make_ca, tls_secret, with_tls};
use portico_e2e::{Portico, Test, ms, wait_until, wait_until_async};

/// curl over HTTPS, verifying against the test CA: (status, curl exit code).
fn https(portico: &Portico, ca: &Path, host: &str) -> (u16, i32) {
    let port = portico.https_addr().port();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--cacert",
        ])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            &format!("https://{host}:{port}/"),
        ])
        .output()
        .expect("curl");
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (status, out.status.code().unwrap_or(-1))
}

/// The serial number of the certificate served for `host`.
fn served_serial(portico: &Portico, host: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {} -servername {host} </dev/null 2>/dev/null | openssl x509 -noout -serial",
            portico.https_addr()
        ))
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_secrets_broken_secret_and_rotation() {
    let t = Test::start("tls").await;
    let web = t.echo("web");
    t.apply(&service("web")).await;
    t.apply(&endpoint_slice("web-1", "web", &[web.addr])).await;
    let portico = t.portico().start();
    let dir = t.cluster().run_dir().join(format!("tls-{}", t.cluster().next_id()));
    let ca = make_ca(&dir);
    let good = t.host("good");
    let broken = t.host("broken");

    t.apply(&tls_secret("good-tls", leaf(&dir, &good, 1))).await;
    let (crt, _) = leaf(&dir, &broken, 2);
    let (_, other_key) = leaf(&dir, &broken, 3);
    t.apply(&tls_secret("broken-tls", (crt, other_key))).await;
    t.apply(&with_tls(
        ingress("good", &good, &[("/", "Prefix", "web")]),
        &good,
        "good-tls",
    ))
    .await;
    t.apply(&with_tls(
        ingress("broken", &broken, &[("/", "Prefix", "web")]),
        &broken,
        "broken-tls",
    ))
    .await;

    // The good host is served its own certificate, which verifies against the CA.
    wait_until(
        "good host over verified HTTPS",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || match https(&portico, &ca, &good) {
            (200, 0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // Plain HTTP for a TLS host is redirected.
    assert_eq!(portico.get(&good, "/").status, 308);

    // The broken host still routes, on the default certificate (curl refuses it) ...
    let (_, rc) = https(&portico, &ca, &broken);
    assert_ne!(rc, 0, "the broken Secret's certificate must not be served");
    // ... and its Ingress gets an InvalidCertificate Event.
    let events: Api<Event> = t.api();
    wait_until_async(
        "InvalidCertificate Event",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let events = events.clone();
            async move {
                let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
                list.items
                    .iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("InvalidCertificate")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
                    })
                    .map(|_| ())
                    .ok_or_else(|| format!("{} events, none for the broken Secret", list.items.len()))
            }
        },
    )
    .await;
    assert_eq!(
        https(&portico, &ca, &good),
        (200, 0),
        "the good host keeps its certificate"
    );

    // Rotation: a new certificate in the same Secret is served to new handshakes.
    let before = served_serial(&portico, &good);
    let rotated_at = Instant::now();
    t.apply(&tls_secret("good-tls", leaf(&dir, &good, 4))).await;
    let took = wait_until(
        "rotated certificate served",
        Duration::from_secs(15),
        Duration::from_millis(20),
        || {
            let now = served_serial(&portico, &good);
            if now != before && !now.is_empty() {
                Ok(rotated_at.elapsed())
            } else {
                Err(now)
            }
        },
    );
    eprintln!("    rotation: new certificate served after {:.0} ms", ms(took));
    assert!(took < Duration::from_secs(1), "rotation took {took:?}");
    assert_eq!(https(&portico, &ca, &good), (200, 0));
    portico.assert_running();
}
