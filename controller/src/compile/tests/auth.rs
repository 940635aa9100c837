//! ingress-nginx's basic authentication annotations (`auth-type`, `auth-secret`,
//! `auth-secret-type`, `auth-realm`) compiled against Secrets, each test citing the
//! ingress-nginx document or e2e test (kubernetes/ingress-nginx,
//! `test/e2e/annotations/auth.go`) it follows.

use std::net::IpAddr;

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, StatusCode, Uri};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use portico_dataplane::config::ProxyConfig;
use portico_dataplane::filter::{Answer, RequestHead};

use super::*;
use crate::compile::reason;

const P: &str = "nginx.ingress.kubernetes.io/";
/// `foo:bar`, as in ingress-nginx's docs/examples/auth/basic.
const FOO_BAR: &str = "foo:$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0\n";

fn opaque(namespace: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            name: Some(name.to_string()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn compiled(annotations: &[(&str, &str)], secrets: Vec<Secret>) -> Compiled {
    let i = annotations.iter().fold(ingress("default", "web"), |i, (k, v)| {
        i.annotation(&format!("{P}{k}"), v)
    });
    let mut w = world().backend("default", "web", &["10.0.0.1"]).with(
        i.host("a.com")
            .path("/", "Prefix", "web", 80)
            .default_backend("web", 80),
    );
    w.0.secrets.extend(secrets);
    w.compile()
}

/// The route phase's answer for `host` and `path` with an `Authorization` header.
fn answer(c: &Compiled, host: &str, path: &str, authorization: Option<&str>) -> Option<(StatusCode, HeaderMap)> {
    let route = c.route(host, path).unwrap();
    let mut headers = HeaderMap::new();
    if let Some(a) = authorization {
        headers.insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
    }
    let (uri, cfg): (Uri, _) = (path.parse().unwrap(), ProxyConfig::default());
    let head = RequestHead {
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
        host,
        tls: false,
        client: IpAddr::from([192, 0, 2, 1]),
        cfg: &cfg,
        client_cert: None,
    };
    match route.filters.request(&head) {
        Some(Answer::Status { status, headers }) => Some((status, headers)),
        None => None,
        Some(other) => panic!("unexpected {other:?}"),
    }
}

fn status(c: &Compiled, authorization: Option<&str>) -> Option<StatusCode> {
    answer(c, "a.com", "/x", authorization).map(|(s, _)| s)
}

/// `Basic base64("foo:bar")`.
const GOOD: &str = "Basic Zm9vOmJhcg==";
/// `Basic base64("foo:baz")`.
const WRONG: &str = "Basic Zm9vOmJheg==";

/// e2e "should return status code 401 when authentication is configured but
/// Authorization header is not configured", "... sent with invalid credentials" and
/// "should return status code 200 when authentication is configured and Authorization
/// header is sent": the realm rides on the challenge.
#[test]
fn basic_auth_lets_listed_users_in_and_challenges_the_rest() {
    let annotations = [
        ("auth-type", "basic"),
        ("auth-secret", "basic-auth"),
        ("auth-realm", "test auth"),
    ];
    let c = compiled(
        &annotations,
        vec![opaque("default", "basic-auth", &[("auth", FOO_BAR)])],
    );
    c.assert_clean();
    assert_eq!(status(&c, Some(GOOD)), None);
    let (s, h) = answer(&c, "a.com", "/x", None).unwrap();
    assert_eq!(
        (s, &h[WWW_AUTHENTICATE]),
        (
            StatusCode::UNAUTHORIZED,
            &HeaderValue::from_static("Basic realm=\"test auth\"")
        )
    );
    assert_eq!(status(&c, Some(WRONG)), Some(StatusCode::UNAUTHORIZED));
}

/// The defaultBackend's routes belong to the Ingress too: they are guarded alike
/// rather than left open.
#[test]
fn basic_auth_guards_the_default_backend_too() {
    let annotations = [("auth-type", "basic"), ("auth-secret", "basic-auth")];
    let c = compiled(
        &annotations,
        vec![opaque("default", "basic-auth", &[("auth", FOO_BAR)])],
    );
    let (s, h) = answer(&c, "other.example", "/", None).unwrap();
    // Without auth-realm, nginx's `auth_basic ""`.
    assert_eq!(
        (s, &h[WWW_AUTHENTICATE]),
        (StatusCode::UNAUTHORIZED, &HeaderValue::from_static("Basic realm=\"\""))
    );
    assert_eq!(answer(&c, "other.example", "/", Some(GOOD)), None);
}

/// annotations.md "Authentication": `auth-secret` may name another namespace's Secret
/// as `namespace/name`; `auth-secret-type: auth-map` takes each key as a user.
#[test]
fn auth_map_and_a_secret_in_another_namespace() {
    let annotations = [
        ("auth-type", "basic"),
        ("auth-secret", "shared/users"),
        ("auth-secret-type", "auth-map"),
    ];
    let c = compiled(
        &annotations,
        vec![opaque(
            "shared",
            "users",
            &[("foo", "$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0")],
        )],
    );
    c.assert_clean();
    assert_eq!(status(&c, Some(GOOD)), None);
    assert_eq!(status(&c, Some(WRONG)), Some(StatusCode::UNAUTHORIZED));
}

/// e2e "should return status code 503 when authentication is configured with an
/// invalid secret", and the other ways auth/main.go denies the location: the paths
/// answer 503, never unauthenticated, and a diagnostic says why.
#[test]
fn unusable_auth_configuration_fails_closed_with_a_diagnostic() {
    let file = || vec![opaque("default", "basic-auth", &[("auth", FOO_BAR)])];
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<Secret>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("auth-type", "basic"), ("auth-secret", "something")],
            file(),
            reason::SECRET_NOT_FOUND,
        ),
        (vec![("auth-type", "basic")], file(), reason::INVALID_ANNOTATION),
        (
            vec![("auth-type", "bearer"), ("auth-secret", "basic-auth")],
            file(),
            reason::INVALID_ANNOTATION,
        ),
        (
            vec![("auth-type", "digest"), ("auth-secret", "basic-auth")],
            file(),
            reason::UNSUPPORTED_ANNOTATION,
        ),
        (
            vec![
                ("auth-type", "basic"),
                ("auth-secret", "basic-auth"),
                ("auth-secret-type", "auth-list"),
            ],
            file(),
            reason::INVALID_ANNOTATION,
        ),
        (
            vec![("auth-type", "basic"), ("auth-secret", "a/b/c")],
            file(),
            reason::INVALID_ANNOTATION,
        ),
        (
            vec![("auth-type", "basic"), ("auth-secret", "basic-auth")],
            vec![opaque("default", "basic-auth", &[("htpasswd", FOO_BAR)])],
            reason::INVALID_AUTH_SECRET,
        ),
    ];
    for (annotations, secrets, why) in cases {
        let c = compiled(&annotations, secrets);
        assert_eq!(c.reasons(), [("default/web".to_string(), why)], "{annotations:?}");
        assert_eq!(
            status(&c, Some(GOOD)),
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "{annotations:?}"
        );
        assert_eq!(
            status(&c, None),
            Some(StatusCode::SERVICE_UNAVAILABLE),
            "{annotations:?}"
        );
    }
}

/// e2e "should return status code 500 when authentication is configured with invalid
/// content and Authorization header is sent": the bad line is reported, its user gets
/// 500, the other users still get in.
#[test]
fn bad_htpasswd_line_is_reported_and_the_rest_still_serve() {
    let annotations = [("auth-type", "basic"), ("auth-secret", "test")];
    let c = compiled(
        &annotations,
        vec![opaque("default", "test", &[("auth", "foo:\nok:{PLAIN}pw\n")])],
    );
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_AUTH_SECRET)]);
    assert!(
        c.diagnostics[0].message.contains("line 1 (user \"foo\") has no hash"),
        "{}",
        c.diagnostics[0].message
    );
    assert_eq!(status(&c, Some(GOOD)), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(status(&c, Some("Basic b2s6cHc=")), None);
}

/// An Ingress without auth annotations gets no filter for them; `auth-secret` alone
/// does nothing in ingress-nginx, and Portico says so.
#[test]
fn without_auth_type_there_is_no_authentication() {
    let c = compiled(&[], vec![]);
    assert!(c.route("a.com", "/x").unwrap().action.is_none());
    let c = compiled(&[("auth-secret", "basic-auth")], vec![]);
    assert_eq!(c.reasons(), [("default/web".to_string(), reason::INVALID_ANNOTATION)]);
    assert_eq!(status(&c, None), None);
}

/// annotations.md "External Authentication": `auth-url` and its companions become the
/// route's external auth; one that does not parse denies the location (503), as
/// ingress-nginx's authreq parser does.
#[test]
fn auth_url_compiles_and_bad_values_fail_closed() {
    let c = compiled(
        &[
            ("auth-url", "http://auth.auth.svc.cluster.local:8080/check"),
            ("auth-method", "POST"),
            ("auth-signin", "https://login.example/start?rd=$escaped_request_uri"),
            ("auth-response-headers", "X-User, X-Email"),
        ],
        vec![],
    );
    c.assert_clean();
    let route = c.route("a.com", "/x").unwrap();
    let auth = route.action.as_ref().and_then(|a| a.external_auth.as_ref()).unwrap();
    assert_eq!(
        (auth.url.host.as_str(), auth.url.port),
        ("auth.auth.svc.cluster.local", 8080)
    );
    assert_eq!(auth.response_headers.len(), 2);
    assert_eq!(
        status(&c, None),
        None,
        "the route phase leaves it to the proxy's auth step"
    );
    for bad in [
        [("auth-url", "https://auth/check"), ("auth-method", "GET")],
        [("auth-url", "http://auth/check"), ("auth-method", "FETCH")],
        [
            ("auth-url", "http://auth/check"),
            ("auth-signin", "https://login/$remote_user"),
        ],
        [("auth-url", "http://auth/check"), ("auth-response-headers", "X User")],
    ] {
        let c = compiled(&bad, vec![]);
        assert_eq!(
            c.reasons(),
            [("default/web".to_string(), reason::INVALID_ANNOTATION)],
            "{bad:?}"
        );
        assert_eq!(status(&c, None), Some(StatusCode::SERVICE_UNAVAILABLE), "{bad:?}");
        assert_eq!(
            answer(&c, "other.example", "/", None).map(|a| a.0),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}

/// A CA's PEM and a client certificate it signed.
fn ca_and_client(cn: &str) -> (String, rustls::pki_types::CertificateDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Client CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, cn);
    (ca_pem, leaf.signed_by(&key, &issuer).unwrap().der().clone())
}

/// The route phase's status for a TLS request to `a.com` `path` whose connection
/// presented `cert`.
fn tls_status(c: &Compiled, path: &str, cert: Option<&portico_dataplane::tls::ClientCert>) -> Option<StatusCode> {
    let route = c.route("a.com", path).unwrap();
    let (uri, headers, cfg): (Uri, _, _) = (path.parse().unwrap(), HeaderMap::new(), ProxyConfig::default());
    let head = RequestHead {
        method: &Method::GET,
        uri: &uri,
        headers: &headers,
        host: "a.com",
        tls: true,
        client: IpAddr::from([192, 0, 2, 1]),
        cfg: &cfg,
        client_cert: cert,
    };
    route.filters.request(&head).map(|a| match a {
        Answer::Status { status, .. } => status,
        other => panic!("unexpected {other:?}"),
    })
}

/// annotations.md "Client Certificate Authentication" and e2e `authtls.go` ("should set
/// valid auth-tls-secret", "... verify-client off/optional", "should return 403 ... with
/// an invalid auth-tls-match-cn"): the host asks for certificates in its handshakes;
/// the paths and the defaultBackend refuse a request without a valid one (400), let it
/// in with one, and `auth-tls-match-cn` refuses a subject it does not find (403).
#[test]
fn auth_tls_guards_every_path_of_the_host() {
    let (ca, alice) = ca_and_client("alice");
    let (_, stranger) = ca_and_client("alice");
    let secrets = || vec![opaque("default", "ca", &[("ca.crt", ca.as_str())])];
    let c = compiled(&[("auth-tls-secret", "default/ca")], secrets());
    let auth = c
        .table
        .client_auth("A.com")
        .expect("a.com asks for client certificates")
        .clone();
    assert!(c.table.client_auth("b.com").is_none());
    let good = auth.check(Some(std::slice::from_ref(&alice)));
    let bad = auth.check(Some(std::slice::from_ref(&stranger)));
    for path in ["/", "/x"] {
        assert_eq!(tls_status(&c, path, None), Some(StatusCode::BAD_REQUEST), "{path}");
        assert_eq!(
            tls_status(&c, path, Some(&bad)),
            Some(StatusCode::BAD_REQUEST),
            "{path}"
        );
        assert_eq!(tls_status(&c, path, Some(&good)), None, "{path}");
    }

    let c = compiled(
        &[("auth-tls-secret", "ca"), ("auth-tls-verify-client", "optional")],
        secrets(),
    );
    let auth = c.table.client_auth("a.com").unwrap().clone();
    assert_eq!(tls_status(&c, "/", None), None);
    let bad = auth.check(Some(std::slice::from_ref(&stranger)));
    assert_eq!(tls_status(&c, "/", Some(&bad)), Some(StatusCode::BAD_REQUEST));

    let c = compiled(
        &[("auth-tls-secret", "default/ca"), ("auth-tls-match-cn", "CN=bob")],
        secrets(),
    );
    let auth = c.table.client_auth("a.com").unwrap().clone();
    let good = auth.check(Some(std::slice::from_ref(&alice)));
    assert_eq!(tls_status(&c, "/", Some(&good)), Some(StatusCode::FORBIDDEN));
}

/// authtls.go's "location denied": a Secret that is missing or has no `ca.crt` denies
/// the Ingress (503) and says why; nothing is served unchecked.
#[test]
fn unusable_auth_tls_secret_fails_closed() {
    for (secrets, why) in [
        (vec![], reason::SECRET_NOT_FOUND),
        (
            vec![opaque("default", "ca", &[("tls.crt", "x")])],
            reason::INVALID_AUTH_SECRET,
        ),
        (
            vec![opaque("default", "ca", &[("ca.crt", "not pem")])],
            reason::INVALID_AUTH_SECRET,
        ),
    ] {
        let c = compiled(&[("auth-tls-secret", "default/ca")], secrets);
        assert_eq!(status(&c, None), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(
            c.reasons().contains(&("default/web".to_string(), why)),
            "{:?}",
            c.reasons()
        );
        assert!(!c.table.has_client_auth());
    }
}
