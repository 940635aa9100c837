//! The ingress-nginx annotations Portico understands, parsed into typed values.
//!
//! Annotation values are user input: each is parsed with limits into a typed value and
//! never passed on as text. An annotation that does not parse leaves the default in
//! place and produces an `InvalidAnnotation` diagnostic; an ingress-nginx annotation
//! Portico does not implement produces `UnsupportedAnnotation`, so nobody migrating
//! from ingress-nginx silently loses a rewrite or a redirect they relied on. A snippet
//! (nginx configuration text) is never interpreted: `SnippetRefused` says so.
//!
//! [`catalog`] lists every annotation ingress-nginx documents with Portico's status;
//! one file per family parses the ones that have an effect.

pub mod access;
pub mod auth;
pub mod auth_tls;
pub mod canary;
pub mod catalog;
pub mod cors;
pub mod errors;
pub mod extauth;
pub mod proxyssl;
pub mod ratelimit;
pub mod rewrite;
pub mod upstream;

use std::collections::BTreeMap;

use portico_dataplane::table::{Cors, RateLimitSpec, RoutePolicy, SourceRange};

use super::CompileOptions;
use super::diagnostics::{Problem, Problems, reason};

/// The prefix of every ingress-nginx annotation.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// `nginx.ingress.kubernetes.io/proxy-body-size`: largest request body, nginx size syntax.
pub const PROXY_BODY_SIZE: &str = "nginx.ingress.kubernetes.io/proxy-body-size";

/// What one Ingress's annotations ask of each of its routes.
pub(in crate::compile) struct IngressAnnotations {
    pub policy: RoutePolicy,
    pub paths: rewrite::Paths,
    pub upstream: upstream::Upstream,
    /// Set when the Ingress is a canary of another for the same hosts and paths.
    pub canary: Option<canary::Canary>,
    /// `whitelist-source-range` and `denylist-source-range`.
    pub source_range: Option<SourceRange>,
    /// `enable-cors` and the `cors-*` values.
    pub cors: Option<Cors>,
    /// `limit-rps`, `limit-rpm` and their burst multiplier and whitelist.
    pub rate_limit: Option<RateLimitSpec>,
    /// `limit-connections`, with the same whitelist; its zone is shared by the
    /// Ingress's paths and outlives table swaps.
    pub conn_limit: Option<std::sync::Arc<portico_dataplane::table::ConnLimit>>,
    /// `auth-type: basic` and its Secret, as the annotations name it.
    pub basic_auth: Option<auth::BasicAuthSpec>,
    /// The filter `basic_auth` resolves to with the snapshot's Secrets (set by the
    /// compile of the Ingress, which has them).
    pub basic_auth_filter: Option<std::sync::Arc<portico_dataplane::table::BasicAuth>>,
    /// `auth-url` and its companions.
    pub external_auth: Option<std::sync::Arc<portico_dataplane::table::ExternalAuth>>,
    /// `default-backend` and `custom-http-errors`.
    pub error_backend: Option<errors::ErrorBackend>,
    /// `server-alias`: more exact host names served as the Ingress's hosts.
    pub server_alias: Vec<String>,
    /// `service-upstream`: the Services' cluster IPs instead of their endpoints.
    pub service_upstream: bool,
    /// `auth-tls-*`: client certificates, for the Ingress's hosts.
    pub auth_tls: Option<auth_tls::AuthTlsSpec>,
    /// `auth-tls-secret` names a Secret that cannot be used: every request is denied
    /// (set by the compile, which has the Secrets).
    pub auth_tls_denied: bool,
    /// `ssl-passthrough`: TLS for the Ingress's hosts goes, undecrypted, to the
    /// backend of its `/` path.
    pub ssl_passthrough: bool,
    /// `proxy-ssl-secret` and its companions; resolved into `upstream.tls` by the
    /// compile of the Ingress, which has the Secrets.
    pub proxy_ssl: Option<proxyssl::ProxySsl>,
    /// The backend `error_backend` names, resolved with the snapshot's Services (set by
    /// the compile of the Ingress, which has them).
    pub default_backend: Option<std::sync::Arc<portico_dataplane::table::Backend>>,
}

impl IngressAnnotations {
    /// Parses every annotation Portico knows; each one that does not parse keeps its
    /// default and leaves a diagnostic in `problems`. `owner` (`namespace/name`) names
    /// the Ingress's rate-limit zones.
    pub fn parse(
        owner: &str,
        annotations: Option<&BTreeMap<String, String>>,
        opts: &CompileOptions,
        problems: &mut Problems,
    ) -> Self {
        let empty = BTreeMap::new();
        let all = annotations.unwrap_or(&empty);
        // The ConfigMap's keys that are these annotations' defaults, where the Ingress
        // does not say.
        let with_defaults;
        let all = if opts.nginx.annotations.is_empty() {
            all
        } else {
            let mut merged = opts.nginx.annotations.clone();
            merged.extend(all.iter().map(|(k, v)| (k.clone(), v.clone())));
            with_defaults = merged;
            &with_defaults
        };
        let mut policy = route_policy(annotations, opts, problems);
        if let Some(v) = get(all, "enable-access-log") {
            match v.trim() {
                "true" => {}
                "false" => policy.access_log = false,
                other => invalid(problems, "enable-access-log", other, "is not \"true\" or \"false\""),
            }
        }
        let mut source_range = access::parse(all, &opts.source_range, &opts.broken_source_ranges, problems);
        // The ConfigMap's `block-cidrs`: refused whatever the Ingress's own lists say.
        if !opts.nginx.block_cidrs.is_empty() {
            let range = source_range.get_or_insert_with(SourceRange::default);
            range.deny.extend(opts.nginx.block_cidrs.iter().copied());
        }
        let (rate_limit, conn_limit) = ratelimit::parse(all, owner, problems);
        let external_auth = match extauth::parse(all, problems) {
            None => None,
            Some(Ok(auth)) => Some(std::sync::Arc::new(auth)),
            Some(Err(())) => {
                // ingress-nginx's LocationDenied: 503 for everyone, as a bad source range.
                source_range.get_or_insert_with(SourceRange::default).refuse_all = true;
                None
            }
        };
        IngressAnnotations {
            policy,
            paths: rewrite::parse(all, problems),
            upstream: upstream::parse(all, problems),
            canary: canary::parse(all, problems),
            source_range,
            cors: cors::parse(all, problems),
            rate_limit: rate_limit.map(|spec| RateLimitSpec {
                status: opts.limit_req_status,
                ..spec
            }),
            conn_limit: conn_limit.map(|spec| {
                std::sync::Arc::new(portico_dataplane::table::ConnLimit::new(
                    &portico_dataplane::table::ConnLimitSpec {
                        status: opts.nginx.limit_conn_status,
                        ..spec
                    },
                ))
            }),
            basic_auth: auth::parse(all, problems),
            basic_auth_filter: None,
            external_auth,
            error_backend: errors::parse(all, problems),
            server_alias: server_alias(all, problems),
            service_upstream: get_flag(all, "service-upstream", problems).unwrap_or(opts.nginx.service_upstream),
            ssl_passthrough: get_flag(all, "ssl-passthrough", problems).unwrap_or(false),
            auth_tls: auth_tls::parse(all, problems),
            auth_tls_denied: false,
            proxy_ssl: proxyssl::parse(all, owner.split('/').next().unwrap_or_default(), problems),
            default_backend: None,
        }
    }
}

/// `server-alias`: a comma-separated list of exact host names (ingress-nginx's
/// `annotations/alias` parser: trimmed, empty entries skipped, duplicates once).
fn server_alias(all: &BTreeMap<String, String>, problems: &mut Problems) -> Vec<String> {
    let Some(v) = get(all, "server-alias") else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for alias in v.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match portico_dataplane::table::HostMatch::parse(alias) {
            Ok(portico_dataplane::table::HostMatch::Exact(h)) => {
                if !out.iter().any(|o| o == h.as_str()) {
                    out.push(h.as_str().to_string());
                }
            }
            Ok(_) => unsupported_value(problems, "server-alias", alias, "is not an exact host name"),
            Err(_) => invalid(problems, "server-alias", alias, "is not a host name"),
        }
    }
    out
}

/// The value of `nginx.ingress.kubernetes.io/<name>`.
fn get<'a>(annotations: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    annotations.get(&format!("{NGINX_PREFIX}{name}")).map(String::as_str)
}

/// `"true"` or `"false"`; anything else is reported and counts as unset.
fn get_flag(annotations: &BTreeMap<String, String>, name: &str, problems: &mut Problems) -> Option<bool> {
    match get(annotations, name)?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        other => {
            invalid(problems, name, other, "is not \"true\" or \"false\"");
            None
        }
    }
}

/// An annotation whose value does not parse: the default stays, and the user is told.
fn invalid(problems: &mut Problems, name: &str, value: &str, why: &str) {
    problems.push(
        Problem::warning(
            reason::INVALID_ANNOTATION,
            format!("{NGINX_PREFIX}{name}: {value:?} {why}; using the default"),
        )
        .about(format!("{NGINX_PREFIX}{name}")),
    );
}

/// A value ingress-nginx accepts but Portico cannot honour: reported, no effect.
fn unsupported_value(problems: &mut Problems, name: &str, value: &str, why: &str) {
    problems.push(
        Problem::warning(
            reason::UNSUPPORTED_ANNOTATION,
            format!("{NGINX_PREFIX}{name}: {value:?} {why}; it has no effect"),
        )
        .about(format!("{NGINX_PREFIX}{name}")),
    );
}

/// `"off"` streams request bodies to the endpoint as they arrive; `"on"` (the default)
/// reads them first.
pub const PROXY_REQUEST_BUFFERING: &str = "nginx.ingress.kubernetes.io/proxy-request-buffering";
pub const CLIENT_BODY_BUFFER_SIZE: &str = "nginx.ingress.kubernetes.io/client-body-buffer-size";
/// `"on"` reads responses ahead of slow clients, within the proxy's bounds; `"off"` (the
/// default) streams them as the client takes them.
pub const PROXY_BUFFERING: &str = "nginx.ingress.kubernetes.io/proxy-buffering";
/// `"on"` or `"off"`, as the buffering annotations and keys take them.
pub(in crate::compile) fn on_off(value: &str) -> Option<bool> {
    match value.trim() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Seconds, as ingress-nginx takes them: nginx's `proxy_read_timeout`.
pub const PROXY_READ_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-read-timeout";
/// Seconds: nginx's `proxy_send_timeout`.
pub const PROXY_SEND_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-send-timeout";
/// Seconds: nginx's `proxy_connect_timeout` (TCP connect and TLS handshake, each).
pub const PROXY_CONNECT_TIMEOUT: &str = "nginx.ingress.kubernetes.io/proxy-connect-timeout";

/// ingress-nginx's timeout annotations: whole seconds, 1 to a day.
pub(in crate::compile) fn parse_seconds(value: &str) -> Option<std::time::Duration> {
    let n: u64 = value.trim().parse().ok()?;
    (1..=86_400).contains(&n).then(|| std::time::Duration::from_secs(n))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid size {value:?}: {reason}")]
pub struct InvalidSize {
    pub value: String,
    pub reason: &'static str,
}

/// Parses an nginx size (`0`, `1024`, `512k`, `8m`, `1g`; suffixes in either case, powers
/// of 1024). `0` means no limit, as in nginx's `client_max_body_size`, and gives `None`.
pub fn parse_size(value: &str) -> Result<Option<u64>, InvalidSize> {
    let bad = |reason| InvalidSize {
        value: value.to_string(),
        reason,
    };
    let trimmed = value.trim();
    let (digits, multiplier) = match trimmed.as_bytes().last() {
        Some(b'k' | b'K') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        _ => (trimmed, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "expected a whole number with an optional k, m or g suffix, like 8m",
        ));
    }
    let n: u64 = digits.parse().map_err(|_| bad("too large"))?;
    let bytes = n.checked_mul(multiplier).ok_or_else(|| bad("too large"))?;
    Ok((bytes != 0).then_some(bytes))
}

/// `"false"` keeps plain HTTP working for an Ingress's TLS hosts.
pub const SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/ssl-redirect";
/// `"true"` redirects to HTTPS even for hosts without `spec.tls`.
pub const FORCE_SSL_REDIRECT: &str = "nginx.ingress.kubernetes.io/force-ssl-redirect";

fn flag(annotations: Option<&BTreeMap<String, String>>, key: &str) -> Option<bool> {
    match annotations?.get(key)?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The policy for a host listed in `spec.tls`: redirect and HSTS unless switched off.
pub(super) fn tls_policy(
    base: &RoutePolicy,
    annotations: Option<&BTreeMap<String, String>>,
    opts: &CompileOptions,
) -> RoutePolicy {
    RoutePolicy {
        ssl_redirect: flag(annotations, SSL_REDIRECT).unwrap_or(opts.ssl_redirect) || base.ssl_redirect,
        hsts: opts.hsts.clone(),
        ..base.clone()
    }
}

/// The route policy an Ingress's annotations ask for, with the defaults from `opts`.
pub(super) fn route_policy(
    annotations: Option<&BTreeMap<String, String>>,
    opts: &CompileOptions,
    problems: &mut Problems,
) -> RoutePolicy {
    let mut policy = RoutePolicy {
        ssl_redirect: flag(annotations, FORCE_SSL_REDIRECT).unwrap_or(opts.nginx.force_ssl_redirect),
        ..opts.base_policy()
    };
    let Some(annotations) = annotations else {
        return policy;
    };
    for key in [SSL_REDIRECT, FORCE_SSL_REDIRECT] {
        if let Some(value) = annotations.get(key)
            && flag(Some(annotations), key).is_none()
        {
            problems.push(
                Problem::warning(
                    reason::INVALID_ANNOTATION,
                    format!("{key}: {value:?} is not \"true\" or \"false\"; using the default"),
                )
                .about(key),
            );
        }
    }
    if let Some(value) = annotations.get(PROXY_BODY_SIZE) {
        match parse_size(value) {
            Ok(size) => policy.max_body_size = size,
            Err(e) => problems.push(
                Problem::warning(
                    reason::INVALID_ANNOTATION,
                    format!("{PROXY_BODY_SIZE}: {e}; using the default"),
                )
                .about(PROXY_BODY_SIZE),
            ),
        }
    }
    if let Some(value) = annotations.get(CLIENT_BODY_BUFFER_SIZE) {
        match parse_size(value) {
            Ok(Some(size)) => policy.client_body_buffer_size = Some(size),
            Ok(None) => problems.push(
                Problem::warning(
                    reason::INVALID_ANNOTATION,
                    format!("{CLIENT_BODY_BUFFER_SIZE}: {value:?} is no buffer; using the default"),
                )
                .about(CLIENT_BODY_BUFFER_SIZE),
            ),
            Err(e) => problems.push(
                Problem::warning(
                    reason::INVALID_ANNOTATION,
                    format!("{CLIENT_BODY_BUFFER_SIZE}: {e}; using the default"),
                )
                .about(CLIENT_BODY_BUFFER_SIZE),
            ),
        }
    }
    for (key, slot) in [
        (PROXY_REQUEST_BUFFERING, &mut policy.request_buffering),
        (PROXY_BUFFERING, &mut policy.response_buffering),
    ] {
        match annotations.get(key).map(|v| (v, on_off(v))) {
            None => {}
            Some((_, Some(on))) => *slot = Some(on),
            Some((other, None)) => problems.push(
                Problem::warning(
                    reason::INVALID_ANNOTATION,
                    format!("{key}: {:?} is not \"on\" or \"off\"; using the default", other.trim()),
                )
                .about(key),
            ),
        }
    }
    for (key, slot) in [
        (PROXY_READ_TIMEOUT, &mut policy.read_timeout),
        (PROXY_SEND_TIMEOUT, &mut policy.send_timeout),
        (PROXY_CONNECT_TIMEOUT, &mut policy.connect_timeout),
    ] {
        if let Some(value) = annotations.get(key) {
            match parse_seconds(value) {
                Some(t) => *slot = Some(t),
                None => problems.push(
                    Problem::warning(
                        reason::INVALID_ANNOTATION,
                        format!("{key}: {value:?} is not a whole number of seconds from 1 to 86400; using the default"),
                    )
                    .about(key),
                ),
            }
        }
    }
    for key in annotations.keys().filter(|k| k.starts_with(NGINX_PREFIX)) {
        match catalog::status(key) {
            Some(s) if s.has_effect() => {}
            Some(catalog::Status::Refused) => problems.push(Problem::warning(
                reason::SNIPPET_REFUSED,
                format!(
                    "annotation {key} is nginx configuration text, which Portico never interprets; it has no effect and the rest of the Ingress is served"
                ),
            )),
            Some(_) => problems.push(Problem::warning(
                reason::UNSUPPORTED_ANNOTATION,
                format!("annotation {key} is not supported and has no effect"),
            )),
            None => problems.push(Problem::warning(
                reason::UNSUPPORTED_ANNOTATION,
                format!("annotation {key} is not an ingress-nginx annotation Portico knows; it has no effect"),
            )),
        }
    }
    policy
}

/// What the compile reports about an Ingress's annotations (see [`check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationProblem {
    /// The annotation's full key, when the problem is about one.
    pub annotation: Option<String>,
    /// One of [`reason`].
    pub reason: &'static str,
    pub message: String,
}

/// Parses an Ingress's annotations as the compile does and returns what it says about
/// them: `portico migrate` tells a value that does not parse from one that does with
/// the compile's own parsers, so the two cannot disagree.
pub fn check(annotations: &BTreeMap<String, String>) -> Vec<AnnotationProblem> {
    let mut problems = Problems::default();
    IngressAnnotations::parse("", Some(annotations), &CompileOptions::default(), &mut problems);
    problems
        .into_vec()
        .into_iter()
        .map(|p| AnnotationProblem {
            annotation: p.annotation,
            reason: p.reason,
            message: p.message,
        })
        .collect()
}
