//! HTTPRoute translated into the route model, once per listener it attaches to (the
//! hosts differ per listener), and lowered into that listener's table.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Method, StatusCode};
use portico_dataplane::table::{
    Backend, Balance, Cors, CorsMode, CorsOrigins, HeaderModifier, ListenerProtocol, ObjectKind, PathKind, RetryPolicy,
    Timeouts, UpstreamProtocol,
};

use super::super::Compiler;
use super::super::diagnostics::{Problems, reason};
use super::super::gateway::{
    Analysis, RouteObject, RouteState, reserves_hostname, unsupported_backend_filter, unsupported_filter,
};
use super::{ValueSpec, conditions, header_modifier, lower_reporting};
use crate::crd::parse_duration;
use crate::gateway_api::{HTTPBackendRef, HTTPCORSFilter, HTTPPathModifier, HTTPRouteFilter, HTTPRouteRule};
use crate::model::{self, PathRewrite, RedirectTo};

impl<'a> Compiler<'a> {
    /// Serves every usable listener of Portico's Gateways: its certificates, then the
    /// rules of the HTTPRoutes attached to it, routes in precedence order.
    pub(in crate::compile) fn add_gateways(&mut self, analysis: &Analysis<'a>) {
        for gw in &analysis.gateways {
            for (index, l) in gw.listeners.iter().enumerate().filter(|(_, l)| l.usable()) {
                let (Some(port), Some(protocol)) = (l.internal_port, l.protocol) else {
                    continue;
                };
                let builder = self.builder.listener(port, protocol);
                if let Some(host) = &l.hostname
                    && reserves_hostname(gw, index)
                {
                    builder.reserve(host);
                }
                if protocol == ListenerProtocol::Https {
                    for (ns, name) in &l.certificates {
                        let Ok(cert) = self.certificates.get(ns, name) else {
                            continue;
                        };
                        match &l.hostname {
                            Some(host) => {
                                builder.certificate(host, cert);
                            }
                            None => builder.default_certificate(cert),
                        }
                    }
                }
            }
        }
        for route in &analysis.routes {
            let mut problems = Problems::default();
            self.add_gateway_route(analysis, route, &mut problems);
            self.diagnostics
                .extend(problems.into_diagnostics(route.route.kind(), route.namespace, route.name));
        }
    }

    fn add_gateway_route(&mut self, analysis: &Analysis<'a>, route: &RouteState<'a>, problems: &mut Problems) {
        let attachments = route.parents.iter().filter_map(|p| p.accepted.as_ref().ok()).flatten();
        for attachment in attachments {
            let listener = &analysis.gateways[attachment.gateway].listeners[attachment.listener];
            let (Some(port), Some(protocol)) = (listener.internal_port, listener.protocol) else {
                continue;
            };
            if attachment.hosts.is_empty() {
                // Every host it would serve here is a more specific listener's.
                continue;
            }
            let hosts: Vec<model::Host> = attachment
                .hosts
                .iter()
                .map(|(host, written)| model::Host {
                    host: host.clone(),
                    written: written.clone(),
                })
                .collect();
            let rules: Vec<model::Rule> = match route.route {
                RouteObject::Http(r) => (r.spec.rules.iter().enumerate())
                    .map(|(index, rule)| self.http_route_rule(route, hosts.clone(), index, rule, problems))
                    .collect(),
                RouteObject::Grpc(r) => (r.spec.rules.iter().enumerate())
                    .map(|(index, rule)| self.grpc_route_rule(route, hosts.clone(), index, rule, problems))
                    .collect(),
            };
            for model in &rules {
                lower_reporting(self.builder.listener(port, protocol), model, problems);
            }
        }
    }

    /// The rule's backends: its backendRefs resolved with their weights (one that does
    /// not resolve answers 500, HTTPBackendRef), or one answering 500 when a filter
    /// cannot be applied or there is none to forward to. `protocol` other than HTTP/1.1
    /// is spoken to every Service whatever its `appProtocol` says (gRPC: h2c).
    ///
    /// A backendRef's own filters (`HTTPBackendRef.filters`: "executed if and only if
    /// the request is being forwarded to the backend defined here") may be a
    /// `RequestHeaderModifier`; with another, the requests for that backend get 500.
    pub(super) fn rule_backends(
        &mut self,
        route: &RouteState<'a>,
        refs: &'a [HTTPBackendRef],
        filters_ok: bool,
        protocol: UpstreamProtocol,
        problems: &mut Problems,
    ) -> Vec<model::WeightedBackend> {
        let namespace = route.namespace;
        let kind = route.route.kind();
        let mut backends = Vec::new();
        if !filters_ok {
            // A filter that cannot be applied is never skipped: what it would have
            // processed gets 500 (HTTPRouteFilter.type), and the route is not Accepted.
            backends.push(model::WeightedBackend {
                backend: Arc::new(Backend::invalid(format!(
                    "{namespace}/{}:unsupported-filter",
                    route.name
                ))),
                service: String::new(),
                weight: 1,
                request_headers: Default::default(),
            });
        }
        for b in refs.iter().filter(|_| filters_ok) {
            let target = b.backend.namespace.as_deref().unwrap_or(namespace);
            let weight = b.weight.unwrap_or(1).clamp(0, 1_000_000) as u32;
            let valid = super::super::gateway::backend_ok(self.snapshot, kind, &b.backend, namespace);
            let unsupported = b.filters.iter().find_map(unsupported_backend_filter);
            if let Some(message) = &unsupported {
                problems.warning(
                    reason::UNSUPPORTED_FILTER,
                    format!("backendRef {}: {message}; its requests get 500", b.backend.name),
                );
            }
            let backend = match (valid, b.backend.port) {
                _ if unsupported.is_some() => Arc::new(Backend::invalid(format!(
                    "{target}/{}:unsupported-filter",
                    b.backend.name
                ))),
                (true, Some(port)) => {
                    let backend = self.backends.resolve_number(target, &b.backend.name, port).backend;
                    let backend = match protocol {
                        UpstreamProtocol::Http1 => backend,
                        _ => self.backends.with_protocol(&backend, protocol, &b.backend.name, target),
                    };
                    match self.backend_tls.for_backend(&b.backend, namespace) {
                        None => backend,
                        Some(policy) => match policy.settings.clone() {
                            Some(settings) => {
                                self.backends
                                    .with_backend_tls(&backend, settings, &b.backend.name, target)
                            }
                            // A policy that cannot verify: never cleartext, never
                            // unverified; the client gets a 5xx (BackendTLSPolicy).
                            None => Arc::new(Backend::invalid(format!(
                                "{target}/{}:backend-tls-policy-invalid",
                                b.backend.name
                            ))),
                        },
                    }
                }
                // Gateway API: requests to a backendRef that does not resolve get 500.
                _ => Arc::new(Backend::invalid(format!("{target}/{}:invalid", b.backend.name))),
            };
            let request_headers = b
                .filters
                .iter()
                .filter(|_| unsupported.is_none())
                .find_map(|f| f.request_header_modifier.as_ref())
                .map(|m| header_filter(m, problems))
                .unwrap_or_default();
            backends.push(model::WeightedBackend {
                backend,
                service: b.backend.name.clone(),
                weight,
                request_headers,
            });
        }
        if backends.is_empty() {
            // No backendRefs: no forwarding, and without a filter that answers (a
            // redirect) the request gets 500 (conformance HTTPRouteNoBackendRefs).
            backends.push(model::WeightedBackend {
                backend: Arc::new(Backend::invalid(format!("{namespace}/{}:no-backend", route.name))),
                service: String::new(),
                weight: 1,
                request_headers: Default::default(),
            });
        }
        backends
    }

    fn http_route_rule(
        &mut self,
        route: &RouteState<'a>,
        hosts: Vec<model::Host>,
        rule_index: usize,
        rule: &'a HTTPRouteRule,
        problems: &mut Problems,
    ) -> model::Rule {
        let namespace = route.namespace;
        let filters = filters(&rule.filters, problems);
        let backends = self.rule_backends(
            route,
            &rule.backend_refs,
            filters.is_some(),
            UpstreamProtocol::Http1,
            problems,
        );
        let matches = super::matches_or_default(&rule.matches);
        let matches = matches
            .iter()
            .enumerate()
            .filter_map(|(index, m): (usize, &crate::gateway_api::HTTPRouteMatch)| {
                let path = m.path.clone().unwrap_or_default();
                let kind = match path.type_.as_deref().unwrap_or("PathPrefix") {
                    "Exact" => PathKind::Exact,
                    "PathPrefix" => PathKind::Prefix,
                    "RegularExpression" => PathKind::RegularExpression,
                    other => {
                        problems.warning(reason::INVALID_PATH, format!("path type {other:?} is not supported"));
                        return None;
                    }
                };
                let method = match m.method.as_deref().map(|s| Method::from_bytes(s.as_bytes())) {
                    None => None,
                    Some(Ok(method)) => Some(method),
                    Some(Err(_)) => {
                        problems.warning(reason::INVALID_ROUTE, "method is not valid; the match is skipped");
                        return None;
                    }
                };
                let conditions = conditions(
                    method,
                    m.headers.iter().map(spec),
                    m.query_params.iter().map(spec),
                    problems,
                )?;
                Some(model::Match {
                    index: Some(index),
                    kind,
                    path: path.value.unwrap_or_else(|| "/".to_string()),
                    table_path: None,
                    conditions,
                })
            })
            .collect();
        // HTTPRouteTimeouts: "Setting a timeout to the zero duration (e.g. "0s") SHOULD
        // disable the timeout completely": no request deadline, and each attempt is
        // bounded by `--upstream-timeout` alone, as without the field.
        let timeout = |d: &Option<String>| d.as_deref().and_then(parse_duration).filter(|d| !d.is_zero());
        let timeouts = rule.timeouts.as_ref().map_or_else(Timeouts::default, |t| Timeouts {
            request: timeout(&t.request),
            backend_request: timeout(&t.backend_request),
        });
        let retry = rule.retry.as_ref().map(|r| retry(r, problems));
        model::Rule {
            owner: model::Owner {
                kind: ObjectKind::HttpRoute,
                namespace: namespace.to_string(),
                name: route.name.to_string(),
                rule: Some(rule_index),
            },
            hosts,
            matches,
            filters: filters.unwrap_or_default(),
            backends,
            balance: Balance::default(),
            timeouts,
            retry,
            policy: self.opts.base_policy(),
            canary: None,
            omit_empty_action: false,
        }
    }
}

/// Retries when `attempts` is not given ("implementation-specific"): ingress-nginx's
/// default (`proxy-next-upstream-tries` 3, the first request included).
pub(crate) const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
/// The most retries a rule gets, whatever it asks: a backend that keeps failing gets at
/// most 11 copies of each request.
pub(crate) const MAX_RETRY_ATTEMPTS: u32 = 10;

/// `rules[].retry` (GEP-1731, `HTTPRouteRetry` in apis/v1/httproute_types.go):
/// - `attempts` is "the maximum number of times an individual request ... should be
///   retried": retries, the first request not counted;
/// - `codes` are the statuses retried (400 to 599; the CRD refuses others);
/// - `backoff` is the least time between a failed attempt and its retry;
/// - "Implementations SHOULD retry on connection errors (disconnect, reset, timeout,
///   TCP failure) if a retry stanza is configured": failed connects, connections
///   that break before the response, and attempts past `timeouts.backendRequest`
///   (or `--upstream-timeout`) are retried too, within the same attempts.
///
/// The spec sends a retry to the backend, not to another endpoint: once every endpoint
/// has been tried, they are tried again (one endpoint is retried on itself). It names
/// no method, so every method is retried; a request whose body went to the endpoint
/// is not (Portico keeps no copy of a body).
fn retry(r: &crate::gateway_api::HTTPRouteRetry, problems: &mut Problems) -> RetryPolicy {
    let attempts = match r.attempts {
        None => DEFAULT_RETRY_ATTEMPTS,
        Some(n) if n < 1 => {
            problems.warning(
                reason::INVALID_ROUTE,
                format!("retry.attempts {n} is below 1; the default, {DEFAULT_RETRY_ATTEMPTS}, is used"),
            );
            DEFAULT_RETRY_ATTEMPTS
        }
        Some(n) => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            if n > MAX_RETRY_ATTEMPTS {
                problems.warning(
                    reason::INVALID_ROUTE,
                    format!("retry.attempts {n} is more than Portico makes; {MAX_RETRY_ATTEMPTS} are made"),
                );
            }
            n.min(MAX_RETRY_ATTEMPTS)
        }
    };
    let mut codes = Vec::with_capacity(r.codes.len());
    for &code in &r.codes {
        match u16::try_from(code) {
            Ok(c @ 400..=599) => {
                if !codes.contains(&c) {
                    codes.push(c);
                }
            }
            _ => problems.warning(
                reason::INVALID_ROUTE,
                format!("retry.codes: {code} is not a status from 400 to 599; it is left out"),
            ),
        }
    }
    let backoff = r.backoff.as_deref().and_then(|b| {
        let parsed = parse_duration(b);
        if parsed.is_none() {
            problems.warning(
                reason::INVALID_ROUTE,
                format!("retry.backoff {b:?} is not a Gateway API duration; retries are made at once"),
            );
        }
        parsed.filter(|d| !d.is_zero())
    });
    RetryPolicy {
        attempts,
        on_connect_failure: true,
        on_reset: true,
        on_timeout: true,
        codes,
        per_try_timeout: None,
        non_idempotent: true,
        backoff,
        reuse_endpoints: true,
    }
}

pub(super) fn spec(h: &crate::gateway_api::HTTPHeaderMatch) -> ValueSpec<'_> {
    ValueSpec {
        regex: h.type_.as_deref() == Some("RegularExpression"),
        name: &h.name,
        value: &h.value,
    }
}

fn path_rewrite(m: &HTTPPathModifier) -> Option<PathRewrite> {
    match m.type_.as_str() {
        "ReplaceFullPath" => Some(PathRewrite::Full(
            m.replace_full_path.clone().unwrap_or_else(|| "/".into()),
        )),
        "ReplacePrefixMatch" => Some(PathRewrite::Prefix(
            m.replace_prefix_match.clone().unwrap_or_else(|| "/".into()),
        )),
        _ => None,
    }
}

/// The `CORS` filter (`HTTPCORSFilter`), or `None` (with a diagnostic) when a value
/// cannot be sent as a header. Methods are kept as written ("case-sensitive"); a
/// method, header or origin list is sent joined with `, `; `maxAge` is 5 when not
/// given ("the gateway sets the response header `Access-Control-Max-Age: 5` by
/// default"). With `allowCredentials`, `*` among `exposeHeaders` is left out: "the
/// gateway cannot use the `*`".
fn cors(c: &HTTPCORSFilter, problems: &mut Problems) -> Option<Cors> {
    let credentials = c.allow_credentials == Some(true);
    let origins = match CorsOrigins::gateway(&c.allow_origins) {
        Ok(o) => o,
        Err(_) => {
            problems.warning(
                reason::UNSUPPORTED_FILTER,
                "CORS allowOrigins are too many or too long to match; the rule answers 500",
            );
            return None;
        }
    };
    let expose: Vec<&str> = (c.expose_headers.iter().map(String::as_str))
        .filter(|h| !(credentials && *h == "*"))
        .collect();
    if expose.len() < c.expose_headers.len() {
        problems.warning(
            reason::INVALID_ROUTE,
            "CORS exposeHeaders \"*\" with allowCredentials is not sent (the gateway cannot use the `*`)",
        );
    }
    let joined = |list: &[&str], field: &str, problems: &mut Problems| match HeaderValue::from_str(&list.join(", ")) {
        Ok(v) => Some(v),
        Err(_) => {
            problems.warning(
                reason::UNSUPPORTED_FILTER,
                format!("CORS {field} has a value HTTP does not allow in a header; the rule answers 500"),
            );
            None
        }
    };
    let max_age = c.max_age.filter(|&n| n >= 1).unwrap_or(5);
    Some(Cors {
        origins,
        allow_methods: joined(&strs(&c.allow_methods), "allowMethods", problems)?,
        allow_headers: joined(&strs(&c.allow_headers), "allowHeaders", problems)?,
        allow_credentials: credentials,
        expose_headers: Some(joined(&expose, "exposeHeaders", problems)?).filter(|v| !v.is_empty()),
        max_age: HeaderValue::from(max_age),
        mode: CorsMode::GatewayApi,
    })
}

/// A `RequestHeaderModifier` or `ResponseHeaderModifier`'s changes.
fn header_filter(m: &crate::gateway_api::HTTPHeaderFilter, problems: &mut Problems) -> HeaderModifier {
    header_modifier(
        m.set.iter().map(|h| (h.name.as_str(), h.value.as_str())),
        m.add.iter().map(|h| (h.name.as_str(), h.value.as_str())),
        m.remove.iter().map(String::as_str),
        problems,
    )
}

/// The rule's filters; `None` (with a diagnostic) when one is not supported: the rule
/// then answers 500 rather than be served without it.
pub(super) fn filters(list: &[HTTPRouteFilter], problems: &mut Problems) -> Option<model::Filters> {
    if let Some(message) = list.iter().find_map(unsupported_filter) {
        problems.warning(reason::UNSUPPORTED_FILTER, format!("{message}; the rule answers 500"));
        return None;
    }
    let mut out = model::Filters::default();
    for f in list {
        let modifier = header_filter;
        match (f.type_.as_str(), f) {
            (
                "RequestHeaderModifier",
                HTTPRouteFilter {
                    request_header_modifier: Some(m),
                    ..
                },
            ) => {
                out.request_headers = modifier(m, problems);
            }
            (
                "ResponseHeaderModifier",
                HTTPRouteFilter {
                    response_header_modifier: Some(m),
                    ..
                },
            ) => {
                out.response_headers = modifier(m, problems);
            }
            (
                "URLRewrite",
                HTTPRouteFilter {
                    url_rewrite: Some(r), ..
                },
            ) => {
                out.rewrite_host = r.hostname.as_deref().and_then(|h| HeaderValue::from_str(h).ok());
                out.rewrite_path = r.path.as_ref().and_then(path_rewrite);
            }
            (
                "RequestRedirect",
                HTTPRouteFilter {
                    request_redirect: Some(r),
                    ..
                },
            ) => {
                let status = r
                    .status_code
                    .and_then(|c| u16::try_from(c).ok())
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .unwrap_or(StatusCode::FOUND);
                out.redirect = Some(RedirectTo {
                    scheme: r.scheme.clone(),
                    hostname: r.hostname.clone(),
                    port: r.port.and_then(|p| u16::try_from(p).ok()),
                    path: r.path.as_ref().and_then(path_rewrite),
                    status,
                });
            }
            ("CORS", HTTPRouteFilter { cors: Some(c), .. }) => {
                out.cors = Some(cors(c, problems)?);
            }
            // Ruled out by unsupported_filter above.
            _ => return None,
        }
    }
    Some(out)
}

fn strs(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}
