//! `auth-tls-secret`, `auth-tls-verify-client`, `auth-tls-verify-depth`,
//! `auth-tls-error-page`, `auth-tls-pass-certificate-to-upstream` and
//! `auth-tls-match-cn` (ingress-nginx's `authtls` parser and annotations.md "Client
//! Certificate Authentication").
//!
//! As in ingress-nginx, the settings are the host's (nginx's `ssl_verify_client` is a
//! `server` directive): the oldest Ingress naming a host with them decides for every
//! Ingress path on that host. A Secret that is missing or holds no CA certificate in
//! `ca.crt` denies the Ingress (503 for every request, ingress-nginx's "location
//! denied"): it never serves without the check it asks for.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderValue;
use k8s_openapi::api::core::v1::Secret;
use portico_dataplane::tls::{ClientAuth, VerifyClient};

use super::{NGINX_PREFIX, get, get_flag, invalid};
use crate::compile::diagnostics::{Problem, Problems, reason};

/// The largest compiled `auth-tls-match-cn` expression.
const MATCH_CN_SIZE: usize = 1 << 16;

/// What an Ingress's `auth-tls-*` annotations ask for.
#[derive(Clone, Debug)]
pub struct AuthTlsSpec {
    /// `namespace/name`; a bare name is the Ingress's namespace.
    pub secret: String,
    pub mode: VerifyClient,
    pub depth: usize,
    pub error_page: Option<HeaderValue>,
    pub pass_certificate: bool,
    pub match_cn: Option<regex::Regex>,
}

pub(super) fn parse(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<AuthTlsSpec> {
    let secret = get(all, "auth-tls-secret")?.trim().to_string();
    let mode = match get(all, "auth-tls-verify-client").map(str::trim) {
        None => VerifyClient::On,
        Some(v) => VerifyClient::parse(v).unwrap_or_else(|| {
            invalid(
                problems,
                "auth-tls-verify-client",
                v,
                "is not on, off, optional or optional_no_ca",
            );
            VerifyClient::On
        }),
    };
    let depth = match get(all, "auth-tls-verify-depth").map(str::trim) {
        None => 1,
        Some(v) => match v.parse::<usize>() {
            Ok(d) if d > 0 => d,
            _ => {
                invalid(problems, "auth-tls-verify-depth", v, "is not a whole number above 0");
                1
            }
        },
    };
    let error_page = get(all, "auth-tls-error-page").and_then(|v| match HeaderValue::from_str(v.trim()) {
        Ok(h) if !v.trim().is_empty() => Some(h),
        _ => {
            invalid(
                problems,
                "auth-tls-error-page",
                v,
                "is not a URL a Location header can carry",
            );
            None
        }
    });
    let match_cn = get(all, "auth-tls-match-cn").and_then(|v| {
        match regex::RegexBuilder::new(v).size_limit(MATCH_CN_SIZE).build() {
            Ok(re) => Some(re),
            Err(e) => {
                invalid(
                    problems,
                    "auth-tls-match-cn",
                    v,
                    &format!("is not a regular expression ({e})"),
                );
                None
            }
        }
    });
    Some(AuthTlsSpec {
        secret,
        mode,
        depth,
        error_page,
        pass_certificate: get_flag(all, "auth-tls-pass-certificate-to-upstream", problems).unwrap_or(false),
        match_cn,
    })
}

/// The host settings `spec` asks for, with its Secret's CA certificates; `None`, with
/// the reason reported, when the Secret cannot be used: the Ingress is then denied.
pub(in crate::compile) fn resolve(
    spec: &AuthTlsSpec,
    ingress_namespace: &str,
    secrets: &[Secret],
    problems: &mut Problems,
) -> Option<Arc<ClientAuth>> {
    let key = format!("{NGINX_PREFIX}auth-tls-secret");
    let (namespace, name) = spec.secret.split_once('/').unwrap_or((ingress_namespace, &spec.secret));
    let deny = |problems: &mut Problems, why: &'static str, text: String| {
        problems.push(
            Problem::warning(
                why,
                format!("{key}: {text}; every request to this Ingress gets 503, as in ingress-nginx"),
            )
            .about(key.clone()),
        );
        None
    };
    let found = secrets
        .iter()
        .find(|s| crate::compile::namespace_of(&s.metadata) == namespace && s.metadata.name.as_deref() == Some(name));
    let Some(secret) = found else {
        return deny(
            problems,
            reason::SECRET_NOT_FOUND,
            format!("Secret {name:?} not found in namespace {namespace:?}"),
        );
    };
    let data = secret.data.as_ref();
    let Some(ca) = data.and_then(|d| d.get("ca.crt")) else {
        return deny(
            problems,
            reason::INVALID_AUTH_SECRET,
            format!("Secret {namespace}/{name} has no key \"ca.crt\""),
        );
    };
    let crl = data.and_then(|d| d.get("ca.crl")).map(|c| c.0.as_slice());
    match ClientAuth::new(format!("{namespace}/{name}"), &ca.0, crl) {
        Ok(mut auth) => {
            auth.mode = spec.mode;
            auth.depth = spec.depth;
            auth.error_page = spec.error_page.clone();
            auth.pass_certificate = spec.pass_certificate;
            auth.match_cn = spec.match_cn.clone();
            Some(Arc::new(auth))
        }
        Err(e) => deny(
            problems,
            reason::INVALID_AUTH_SECRET,
            format!("Secret {namespace}/{name}: ca.crt or ca.crl: {e}"),
        ),
    }
}
