//! TLS to the endpoints as an Ingress asks: `proxy-ssl-secret` and its companions
//! (ingress-nginx's annotations.md "Backend Certificate Authentication", its
//! `internal/ingress/annotations/proxyssl` parser, and the `proxy_ssl_*` lines its
//! nginx template writes).
//!
//! As in ingress-nginx, none of them has an effect without `proxy-ssl-secret`, and a
//! Secret that cannot be used denies the Ingress's locations (503) rather than serve
//! them with less TLS than asked for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use portico_dataplane::tls::{Certificate, UpstreamTls, UpstreamTlsSettings};

use super::{NGINX_PREFIX, get, invalid, unsupported_value};
use crate::compile::diagnostics::{Problem, Problems, reason};

/// The `proxy-ssl-*` annotations other than the Secret's, which need it.
const COMPANIONS: [&str; 6] = [
    "proxy-ssl-verify",
    "proxy-ssl-verify-depth",
    "proxy-ssl-name",
    "proxy-ssl-server-name",
    "proxy-ssl-protocols",
    "proxy-ssl-ciphers",
];

/// What the annotations ask for, before the Secret is looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySsl {
    /// `namespace/name` of the Secret; `Err` says why it names none the Ingress may use.
    pub secret: Result<(String, String), String>,
    /// `proxy-ssl-verify` (default off).
    pub verify: bool,
    /// `proxy-ssl-verify-depth` (default 1; `0` is the default too, as in ingress-nginx).
    pub verify_depth: usize,
    /// `proxy-ssl-name`; `None`: `<service>.<namespace>.svc`.
    pub name: Option<String>,
    /// `proxy-ssl-server-name` (default off): the name is sent as SNI.
    pub server_name: bool,
    /// `proxy-ssl-protocols`, of what rustls speaks: TLS 1.2 and 1.3.
    pub tls12: bool,
    pub tls13: bool,
}

/// `on` or `off`; anything else is reported and is `off`, ingress-nginx's default.
fn on_off(all: &BTreeMap<String, String>, name: &str, problems: &mut Problems) -> bool {
    match get(all, name).map(str::trim) {
        None | Some("off") => false,
        Some("on") => true,
        Some(other) => {
            invalid(problems, name, other, "is not \"on\" or \"off\"");
            false
        }
    }
}

pub(super) fn parse(
    all: &BTreeMap<String, String>,
    ingress_namespace: &str,
    problems: &mut Problems,
) -> Option<ProxySsl> {
    let Some(secret) = get(all, "proxy-ssl-secret").map(str::trim) else {
        for name in COMPANIONS {
            if let Some(v) = get(all, name) {
                unsupported_value(problems, name, v, "needs proxy-ssl-secret, as in ingress-nginx");
            }
        }
        return None;
    };
    // ingress-nginx's k8s.ParseNameNS, and no Secret of another namespace (its
    // allow-cross-namespace-resources is off by default).
    let secret = match secret.split_once('/') {
        Some((ns, name)) if is_dns_label_path(ns) && is_dns_label_path(name) => {
            if ns == ingress_namespace {
                Ok((ns.to_string(), name.to_string()))
            } else {
                Err(format!(
                    "names a Secret in namespace {ns:?}; only Secrets of the Ingress's own namespace are used"
                ))
            }
        }
        _ => Err("is not namespace/name".to_string()),
    };
    let verify_depth = match get(all, "proxy-ssl-verify-depth").map(str::trim) {
        None => 1,
        Some(v) => match v.parse::<usize>() {
            Ok(0) => 1,
            Ok(n) if n <= 100 => n,
            _ => {
                invalid(
                    problems,
                    "proxy-ssl-verify-depth",
                    v,
                    "is not a whole number from 0 to 100",
                );
                1
            }
        },
    };
    let name = get(all, "proxy-ssl-name").map(str::trim).and_then(|v| {
        let ok = v.parse::<std::net::IpAddr>().is_ok() || is_dns_name(v);
        if !ok {
            invalid(problems, "proxy-ssl-name", v, "is not a server name");
        }
        ok.then(|| v.to_string())
    });
    let (tls12, tls13) = protocols(all, problems);
    Some(ProxySsl {
        secret,
        verify: on_off(all, "proxy-ssl-verify", problems),
        verify_depth,
        name,
        server_name: on_off(all, "proxy-ssl-server-name", problems),
        tls12,
        tls13,
    })
}

/// A DNS name a certificate can carry: dot-separated labels of letters, digits and
/// hyphens, 1 to 63 bytes each.
fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_dns_label_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// `proxy-ssl-protocols`: ingress-nginx takes a space-separated list of SSLv2, SSLv3,
/// TLSv1, TLSv1.1, TLSv1.2 and TLSv1.3. Portico speaks the last two only; a list of
/// none of them keeps both.
fn protocols(all: &BTreeMap<String, String>, problems: &mut Problems) -> (bool, bool) {
    let Some(v) = get(all, "proxy-ssl-protocols") else {
        return (true, true);
    };
    let words: Vec<&str> = v.split_whitespace().collect();
    let known = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
    if words.is_empty() || !words.iter().all(|w| known.contains(w)) {
        invalid(
            problems,
            "proxy-ssl-protocols",
            v,
            "is not a list of SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3",
        );
        return (true, true);
    }
    let (tls12, tls13) = (words.contains(&"TLSv1.2"), words.contains(&"TLSv1.3"));
    if !tls12 && !tls13 {
        unsupported_value(
            problems,
            "proxy-ssl-protocols",
            v,
            "names neither TLSv1.2 nor TLSv1.3, the only versions Portico speaks; both are offered",
        );
        return (true, true);
    }
    (tls12, tls13)
}

/// The TLS settings `spec` asks for with its Secret from `secrets`. `Err`: the
/// Secret cannot be used, a diagnostic says why, and the Ingress's locations are to
/// answer 503 (ingress-nginx's LocationDenied), never be served with less TLS.
pub(in crate::compile) fn resolve(
    spec: &ProxySsl,
    secrets: &[Secret],
    now: i64,
    problems: &mut Problems,
) -> Result<UpstreamTlsSettings, ()> {
    let key = format!("{NGINX_PREFIX}proxy-ssl-secret");
    let mut deny = |reason: &'static str, why: String| {
        problems
            .push(Problem::warning(reason, format!("{key}: {why}; the Ingress's paths answer 503")).about(key.clone()));
    };
    let (namespace, name) = match &spec.secret {
        Ok(pair) => pair,
        Err(why) => {
            deny(reason::INVALID_ANNOTATION, why.clone());
            return Err(());
        }
    };
    let found = secrets.iter().find(|s| {
        crate::compile::namespace_of(&s.metadata) == namespace && s.metadata.name.as_deref() == Some(name.as_str())
    });
    let Some(secret) = found else {
        deny(reason::SECRET_NOT_FOUND, format!("Secret {namespace}/{name} not found"));
        return Err(());
    };
    let data = secret.data.as_ref();
    let field = |k: &str| {
        data.and_then(|d| d.get(k))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
    };
    let invalid = reason::INVALID_CERTIFICATE;
    let client_cert = match (field("tls.crt"), field("tls.key")) {
        (Some(crt), Some(key)) => match Certificate::from_pem(format!("{namespace}/{name}"), crt, key, now) {
            Ok(c) => Some(c.key),
            Err(e) => {
                deny(invalid, format!("Secret {namespace}/{name}: {e}"));
                return Err(());
            }
        },
        (None, None) => None,
        _ => {
            deny(
                invalid,
                format!("Secret {namespace}/{name} has one of tls.crt and tls.key without the other"),
            );
            return Err(());
        }
    };
    let ca = field("ca.crt");
    if ca.is_none() && client_cert.is_none() {
        deny(
            invalid,
            format!("Secret {namespace}/{name} has neither tls.crt and tls.key nor ca.crt"),
        );
        return Err(());
    }
    if spec.verify && ca.is_none() {
        deny(
            invalid,
            format!("proxy-ssl-verify is on and Secret {namespace}/{name} has no ca.crt to verify with"),
        );
        return Err(());
    }
    let settings = UpstreamTlsSettings {
        verify_with: ca.filter(|_| spec.verify).map(<[u8]>::to_vec),
        verify_depth: Some(spec.verify_depth),
        client_cert,
        // Filled in per Service when not set: `<service>.<namespace>.svc`.
        server_name: spec.name.clone().unwrap_or_default(),
        sni: spec.server_name,
        tls12: spec.tls12,
        tls13: spec.tls13,
        h2: false,
        system_roots: false,
        subject_alt_names: Vec::new(),
    };
    // Built once here to find a bad ca.crt; each backend builds its own with its name.
    let check = UpstreamTlsSettings {
        verify_with: ca.map(<[u8]>::to_vec),
        server_name: "portico.invalid".to_string(),
        ..settings.clone()
    };
    if let Err(e) = UpstreamTls::build(&check) {
        deny(invalid, format!("ca.crt of Secret {namespace}/{name}: {e}"));
        return Err(());
    }
    Ok(settings)
}
