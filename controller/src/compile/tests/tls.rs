//! `spec.tls`: certificates per host, broken Secrets, redirects and HSTS.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::IngressTLS;

use super::*;
use crate::compile::reason;

pub(super) const NOW: i64 = 1_800_000_000;

/// A certificate and key for `names`, valid around NOW (or expired long before it).
pub(super) fn pem(names: &[&str], expired: bool) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    } else {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub(super) fn secret(namespace: &str, name: &str, (cert, key): (String, String)) -> Secret {
    Secret {
        metadata: meta(namespace, name),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(cert.into_bytes())),
            ("tls.key".to_string(), ByteString(key.into_bytes())),
        ])),
        ..Default::default()
    }
}

impl IngressBuilder {
    fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.spec().tls.get_or_insert_with(Vec::new).push(IngressTLS {
            hosts: Some(hosts.iter().map(|h| h.to_string()).collect()),
            secret_name: Some(secret.into()),
        });
        self
    }
}

impl World {
    pub(super) fn secret(mut self, s: Secret) -> Self {
        self.0.secrets.push(s);
        self
    }
}

fn opts() -> CompileOptions {
    CompileOptions {
        now: NOW,
        ..CompileOptions::default()
    }
}

fn site(name: &str, host: &str, secret: &str) -> IngressBuilder {
    ingress("default", name)
        .host(host)
        .path("/", "Prefix", "web", 80)
        .tls(&[host], secret)
}

fn served_names(c: &Compiled, sni: &str) -> Option<Vec<String>> {
    c.table.certificate(sni).map(|cert| cert.names.clone())
}

/// A host in spec.tls is served the certificate of its Secret; other names get none.
#[test]
fn tls_host_gets_its_secret_certificate() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "a-tls", pem(&["a.com"], false)))
        .with(site("a", "a.com", "a-tls"))
        .compile_with(&opts());
    c.assert_clean();
    assert_eq!(served_names(&c, "A.com"), Some(vec!["a.com".to_string()]));
    assert_eq!(served_names(&c, "b.com"), None);
}

/// A wildcard TLS host serves its certificate to exactly one extra label.
#[test]
fn wildcard_tls_host_matches_one_label() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "w", pem(&["*.w.com"], false)))
        .with(site("w", "*.w.com", "w"))
        .compile_with(&opts());
    assert!(served_names(&c, "x.w.com").is_some());
    assert!(served_names(&c, "x.y.w.com").is_none());
}

/// A TLS host redirects plain HTTP and sends HSTS by default; a host without TLS does neither.
#[test]
fn tls_hosts_redirect_and_send_hsts_by_default() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "a-tls", pem(&["a.com"], false)))
        .with(site("a", "a.com", "a-tls"))
        .with(ingress("default", "plain").host("b.com").path("/", "Prefix", "web", 80))
        .compile_with(&opts());
    let tls = &c.route("a.com", "/").unwrap().policy;
    assert!(tls.ssl_redirect && tls.hsts.is_some());
    let plain = &c.route("b.com", "/").unwrap().policy;
    assert!(!plain.ssl_redirect && plain.hsts.is_none());
}

/// A TLS host's defaultBackend (paths no rule matches) redirects and sends HSTS as the
/// host's paths do; the catch-all for hosts without TLS does neither.
#[test]
fn a_tls_hosts_default_backend_redirects_and_sends_hsts() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "a-tls", pem(&["a.com"], false)))
        .with(
            ingress("default", "a")
                .host("a.com")
                .path("/app", "Prefix", "web", 80)
                .tls(&["a.com"], "a-tls")
                .default_backend("web", 80),
        )
        .compile_with(&opts());
    let fallback = &c.route("a.com", "/elsewhere").unwrap().policy;
    assert!(fallback.ssl_redirect && fallback.hsts.is_some());
    let elsewhere = &c.route("other.com", "/").unwrap().policy;
    assert!(!elsewhere.ssl_redirect && elsewhere.hsts.is_none());
}

/// `ssl-redirect: "false"` keeps plain HTTP for that Ingress; `force-ssl-redirect` redirects without TLS.
#[test]
fn ssl_redirect_annotations() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "a-tls", pem(&["a.com"], false)))
        .with(site("a", "a.com", "a-tls").annotation("nginx.ingress.kubernetes.io/ssl-redirect", "false"))
        .with(
            ingress("default", "forced")
                .host("b.com")
                .path("/", "Prefix", "web", 80)
                .annotation("nginx.ingress.kubernetes.io/force-ssl-redirect", "true"),
        )
        .compile_with(&opts());
    c.assert_clean();
    assert!(!c.route("a.com", "/").unwrap().policy.ssl_redirect);
    assert!(c.route("b.com", "/").unwrap().policy.ssl_redirect);
}

/// An ssl-redirect value other than "true" or "false" is an InvalidAnnotation and the default applies.
#[test]
fn invalid_ssl_redirect_value_keeps_the_default() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "a-tls", pem(&["a.com"], false)))
        .with(site("a", "a.com", "a-tls").annotation("nginx.ingress.kubernetes.io/ssl-redirect", "no"))
        .compile_with(&opts());
    assert_eq!(c.reasons(), [("default/a".to_string(), reason::INVALID_ANNOTATION)]);
    assert!(c.route("a.com", "/").unwrap().policy.ssl_redirect);
}

/// With redirects and HSTS switched off globally, TLS hosts get neither.
#[test]
fn global_switches_turn_redirect_and_hsts_off() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "a-tls", pem(&["a.com"], false)))
        .with(site("a", "a.com", "a-tls"))
        .compile_with(&CompileOptions {
            ssl_redirect: false,
            hsts: None,
            ..opts()
        });
    let p = &c.route("a.com", "/").unwrap().policy;
    assert!(!p.ssl_redirect && p.hsts.is_none());
}

/// A missing Secret is a SecretNotFound diagnostic; the host still routes and still redirects.
#[test]
fn missing_secret_is_diagnosed_and_host_still_routes() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .with(site("a", "a.com", "nope"))
        .compile_with(&opts());
    assert_eq!(c.reasons(), [("default/a".to_string(), reason::SECRET_NOT_FOUND)]);
    assert!(served_names(&c, "a.com").is_none());
    assert!(c.route("a.com", "/").unwrap().policy.ssl_redirect);
}

/// A key that does not match, an expired certificate and garbage PEM are each an
/// InvalidCertificate diagnostic; another host's good certificate is unaffected.
#[test]
fn broken_secrets_are_isolated() {
    let (cert, _) = pem(&["a.com"], false);
    let (_, other_key) = pem(&["a.com"], false);
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "mismatch", (cert, other_key)))
        .secret(secret("default", "expired", pem(&["b.com"], true)))
        .secret(secret("default", "garbage", ("not pem".into(), "nope".into())))
        .secret(secret("default", "good", pem(&["d.com"], false)))
        .with(site("a", "a.com", "mismatch"))
        .with(site("b", "b.com", "expired"))
        .with(site("c", "c.com", "garbage"))
        .with(site("d", "d.com", "good"))
        .compile_with(&opts());
    let mut reasons = c.reasons();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("default/a".to_string(), reason::INVALID_CERTIFICATE),
            ("default/b".to_string(), reason::INVALID_CERTIFICATE),
            ("default/c".to_string(), reason::INVALID_CERTIFICATE),
        ]
    );
    let msg = |n: &str| c.diagnostics.iter().find(|d| d.name == n).unwrap().message.clone();
    assert!(msg("a").contains("does not match"), "{}", msg("a"));
    assert!(msg("b").contains("expired"), "{}", msg("b"));
    for host in ["a.com", "b.com", "c.com"] {
        assert!(served_names(&c, host).is_none(), "{host}");
        assert!(c.route(host, "/").is_some(), "{host} still routes");
    }
    assert!(served_names(&c, "d.com").is_some());
}

/// Two Ingresses naming certificates for one host: the older one's certificate is served.
#[test]
fn oldest_ingress_keeps_the_host_certificate() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("default", "old", pem(&["a.com", "old.a.com"], false)))
        .secret(secret("default", "new", pem(&["a.com", "new.a.com"], false)))
        .with(
            ingress("default", "new")
                .host("a.com")
                .path("/new", "Prefix", "web", 80)
                .tls(&["a.com"], "new")
                .created(20),
        )
        .with(
            ingress("default", "old")
                .host("a.com")
                .path("/old", "Prefix", "web", 80)
                .tls(&["a.com"], "old")
                .created(10),
        )
        .compile_with(&opts());
    assert!(served_names(&c, "a.com").unwrap().contains(&"old.a.com".to_string()));
}

/// A Secret in another namespace is not visible to an Ingress.
#[test]
fn secret_must_be_in_the_ingress_namespace() {
    let c = world()
        .backend("default", "web", &["10.0.0.1"])
        .secret(secret("other", "a-tls", pem(&["a.com"], false)))
        .with(site("a", "a.com", "a-tls"))
        .compile_with(&opts());
    assert_eq!(c.reasons(), [("default/a".to_string(), reason::SECRET_NOT_FOUND)]);
}

/// `--default-ssl-certificate` names the certificate for unknown server names.
#[test]
fn default_ssl_certificate_from_a_secret() {
    let w = world().secret(secret("portico", "fallback", pem(&["fallback.example"], false)));
    let c = w.compile_with(&CompileOptions {
        default_ssl_certificate: Some(("portico".into(), "fallback".into())),
        ..opts()
    });
    c.assert_clean();
    assert_eq!(
        c.table.default_certificate().unwrap().names,
        vec!["fallback.example".to_string()]
    );
    let missing = w.compile_with(&CompileOptions {
        default_ssl_certificate: Some(("portico".into(), "nope".into())),
        ..opts()
    });
    assert_eq!(
        missing.reasons(),
        [("portico/nope".to_string(), reason::SECRET_NOT_FOUND)]
    );
}

fn https_world(annotations: &[(&str, &str)]) -> World {
    let mut svc = service("default", "web").port("https", 443).app_protocol("https");
    for (k, v) in annotations {
        annotate(&mut svc.0.metadata, k, v);
    }
    world()
        .with(svc)
        .with(
            slice("default", "web", "web-1")
                .port(Some("https"), 8443)
                .endpoint("10.0.0.1", Some(true)),
        )
        .with(ingress("default", "a").host("a.com").path("/", "Prefix", "web", 443))
}

/// `appProtocol: https` speaks TLS to the endpoints, unverified without a CA bundle,
/// checking the Service's cluster DNS name when one is given.
#[test]
fn https_app_protocol_speaks_tls_to_endpoints() {
    let c = https_world(&[]).compile_with(&opts());
    c.assert_clean();
    let backend = &c.route("a.com", "/").unwrap().backend;
    assert_eq!(backend.protocol, portico_dataplane::table::UpstreamProtocol::Https);
    let tls = backend.tls.as_ref().unwrap();
    assert!(!tls.verified);
    assert_eq!(
        format!("{:?}", tls.server_name),
        format!("{:?}", rustls_name("web.default.svc"))
    );

    let ca = pem(&["ca"], false);
    let c = https_world(&[
        ("portico.dev/upstream-ca-secret", "ca"),
        ("portico.dev/upstream-server-name", "web.internal"),
    ])
    .secret(secret("default", "ca", ca))
    .compile_with(&opts());
    c.assert_clean();
    let tls = c.route("a.com", "/").unwrap().backend.tls.clone().unwrap();
    assert!(tls.verified);
    assert_eq!(
        format!("{:?}", tls.server_name),
        format!("{:?}", rustls_name("web.internal"))
    );
}

/// A CA bundle Secret that does not exist refuses the endpoints (no silent fallback to
/// unverified TLS) and says so.
#[test]
fn missing_upstream_ca_secret_refuses_endpoints() {
    let c = https_world(&[("portico.dev/upstream-ca-secret", "nope")]).compile_with(&opts());
    assert_eq!(c.reasons(), [("default/a".to_string(), reason::SECRET_NOT_FOUND)]);
    assert!(c.route("a.com", "/").unwrap().backend.tls.is_none());
}

fn rustls_name(n: &str) -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from(n.to_string()).unwrap()
}
