//! One `Route` into the table, next to the Ingress rules.
//!
//! ```text
//!  Route ─ validate (the CRD's CEL rules again) ─▶ hostnames × rules × matches
//!     each match ─▶ (host, path, kind) + conditions (method, headers, query)
//!     each rule  ─▶ RouteAction: filters, weighted backends, balancing, timeouts, retry
//! ```
//!
//! A Route and an Ingress on the same host merge into one host block. For the same
//! host, path, path type and conditions, the **older** object keeps the path (as
//! between two Ingresses): creating an object never takes traffic from one already
//! serving, so a new Route in another namespace cannot hijack a live site. A Route
//! match with headers, query parameters or a method is a different candidate from a
//! plain Ingress path, so both stay and the more specific is tried first.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use portico_dataplane::table::{
    Backend, HeaderCondition, HeaderModifier, HostMatch, MatchConditions, ObjectKind, PathKind, PathModifier,
    QueryCondition, Redirect, RetryPolicy, Route, RouteAction, RouteMeta, RoutePolicy, RouteRule, RuleError, Timeouts,
    UpstreamProtocol, UrlRewrite, ValueMatch, full_match_regex,
};
use portico_dataplane::table::{Balance, HashOn, LbPolicy, WeightedBackends};

use super::diagnostics::{Problems, reason};
use super::{Compiler, namespace_of};
use crate::crd::{self, FilterType, PathMatchType, PathModifierType, ValueMatchType, parse_duration};

impl<'a> Compiler<'a> {
    /// Adds one Route. Routes and Ingresses must come oldest first.
    ///
    /// A Route that breaks the CRD's rules (possible only when no API server checked
    /// it) is left out whole with an `InvalidRoute` diagnostic. Otherwise, as for an
    /// Ingress, a broken part never takes the rest down.
    pub(super) fn add_route(&mut self, route: &'a crd::Route) {
        let namespace = namespace_of(&route.metadata);
        let name = route.metadata.name.as_deref().unwrap_or_default();
        let mut problems = Problems::default();
        let invalid = crd::validate(&route.spec);
        if !invalid.is_empty() {
            let list: Vec<String> = invalid.iter().map(ToString::to_string).collect();
            problems.warning(
                reason::INVALID_ROUTE,
                format!("{}; the Route is ignored", list.join("; ")),
            );
        } else {
            self.add_route_rules(route, namespace, name, &mut problems);
        }
        self.diagnostics
            .extend(problems.into_diagnostics("Route", namespace, name));
    }

    fn add_route_rules(&mut self, route: &'a crd::Route, namespace: &'a str, name: &'a str, problems: &mut Problems) {
        let spec = &route.spec;
        let mut hosts: Vec<(HostMatch, &str)> = Vec::new();
        for written in &spec.hostnames {
            match HostMatch::parse(written) {
                Ok(HostMatch::Any) | Err(_) => problems.warning(
                    reason::INVALID_HOST,
                    format!("hostname {written:?} is not a DNS name; it is skipped"),
                ),
                Ok(host) => hosts.push((host, written)),
            }
        }
        if spec.hostnames.is_empty() {
            hosts.push((HostMatch::Any, ""));
        }
        let mut policy = RoutePolicy {
            max_body_size: self.opts.max_body_size,
            ..RoutePolicy::default()
        };
        if let Some(tls) = &spec.tls {
            if spec.hostnames.is_empty() {
                problems.warning(
                    reason::INVALID_HOST,
                    "tls.secretName is set but the Route has no hostnames to serve it for; it is ignored",
                );
            }
            match self.certificates.get(namespace, &tls.secret_name) {
                Ok(cert) => {
                    for (host, _) in hosts.iter().filter(|(h, _)| *h != HostMatch::Any) {
                        // The oldest object naming a certificate for a host keeps it.
                        self.builder.certificate(host, cert.clone());
                    }
                }
                Err(problem) => problems.push(problem),
            }
            if !spec.hostnames.is_empty() {
                policy.ssl_redirect = self.opts.ssl_redirect;
                policy.hsts = self.opts.hsts;
            }
        }
        for (index, rule) in spec.rules.iter().enumerate() {
            self.add_route_rule(namespace, name, &hosts, (index, rule), &policy, problems);
        }
    }

    fn add_route_rule(
        &mut self,
        namespace: &'a str,
        name: &'a str,
        hosts: &[(HostMatch, &str)],
        (rule_index, rule): (usize, &'a crd::RouteRule),
        policy: &RoutePolicy,
        problems: &mut Problems,
    ) {
        let mut backends = Vec::new();
        let mut backend_problems = Vec::new();
        for b in &rule.backend_refs {
            let resolved = self.backends.resolve_number(namespace, &b.name, b.port);
            backend_problems.extend(resolved.problem);
            let weight = b.weight.unwrap_or(1).clamp(0, 1_000_000) as u32;
            backends.push((resolved.backend, weight));
        }
        let service = rule
            .backend_refs
            .iter()
            .zip(&backends)
            .find(|(_, (_, w))| *w > 0)
            .map(|(b, _)| b.name.as_str())
            .unwrap_or_default();
        let primary = backends
            .iter()
            .find(|(_, w)| *w > 0)
            .map(|(b, _)| b.clone())
            .unwrap_or_else(|| {
                Arc::new(Backend::new(
                    format!("{namespace}/{name}:redirect"),
                    UpstreamProtocol::Http1,
                    Vec::new(),
                ))
            });
        let split = if backends.len() > 1 {
            WeightedBackends::new(backends).map(Arc::new)
        } else {
            None
        };
        let base = RuleAction::new(rule, problems);

        let default_match = [crd::RouteMatch::default()];
        let matches = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches[..]
        };
        let mut placed = false;
        for (match_index, m) in matches.iter().enumerate() {
            let path = m.path.clone().unwrap_or_default();
            let kind = match path.type_ {
                PathMatchType::Exact => PathKind::Exact,
                PathMatchType::PathPrefix => PathKind::Prefix,
                PathMatchType::RegularExpression => PathKind::RegularExpression,
            };
            let Some(conditions) = conditions(m, problems) else {
                continue;
            };
            let action = Arc::new(base.for_path(&path.value, split.clone()));
            for (host, written) in hosts {
                let route = Arc::new(Route::new(
                    RouteMeta {
                        kind: ObjectKind::Route,
                        namespace: namespace.to_string(),
                        ingress: name.to_string(),
                        service: service.to_string(),
                        host: written.to_string(),
                        path: path.value.clone(),
                        rule: u32::try_from(rule_index).ok(),
                        path_index: u32::try_from(match_index).ok(),
                    },
                    primary.clone(),
                    policy.clone(),
                    Some(action.clone()),
                ));
                let rule = RouteRule {
                    host: host.clone(),
                    path: path.value.clone(),
                    kind,
                    route,
                };
                match self.builder.add_with(rule, conditions.clone()) {
                    Ok(()) => placed = true,
                    Err(RuleError::Path(e)) => {
                        problems.warning(reason::INVALID_PATH, format!("{e}; the match is skipped"))
                    }
                    Err(e @ RuleError::Duplicate { .. }) => {
                        problems.warning(reason::DUPLICATE_RULE, format!("{e}; this match is ignored"))
                    }
                }
            }
        }
        // Backend problems are reported only for rules that made it into the table.
        if placed {
            for p in backend_problems {
                problems.push(p);
            }
        }
    }
}

/// The conditions of one match, or `None` (with a diagnostic) when one cannot be built.
fn conditions(m: &crd::RouteMatch, problems: &mut Problems) -> Option<MatchConditions> {
    let value = |kind: ValueMatchType, v: &str, problems: &mut Problems| match kind {
        ValueMatchType::Exact => Some(ValueMatch::Exact(v.to_string())),
        ValueMatchType::RegularExpression => match full_match_regex(v) {
            Ok(re) => Some(ValueMatch::Regex(re)),
            Err(e) => {
                problems.warning(reason::INVALID_ROUTE, format!("{e}; the match is skipped"));
                None
            }
        },
    };
    let mut out = MatchConditions {
        method: m.method.map(method),
        ..Default::default()
    };
    for h in &m.headers {
        let Ok(name) = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()) else {
            problems.warning(
                reason::INVALID_ROUTE,
                format!("header name {:?} is not valid; the match is skipped", h.name),
            );
            return None;
        };
        // Gateway API: only the first match for a header name counts.
        if out.headers.iter().any(|c| c.name == name) {
            continue;
        }
        out.headers.push(HeaderCondition {
            name,
            value: value(h.type_, &h.value, problems)?,
        });
    }
    for q in &m.query_params {
        if out.query.iter().any(|c| c.name == q.name) {
            continue;
        }
        out.query.push(QueryCondition {
            name: q.name.clone(),
            value: value(q.type_, &q.value, problems)?,
        });
    }
    Some(out)
}

fn method(m: crd::HttpMethod) -> Method {
    use crd::HttpMethod as M;
    match m {
        M::GET => Method::GET,
        M::HEAD => Method::HEAD,
        M::POST => Method::POST,
        M::PUT => Method::PUT,
        M::DELETE => Method::DELETE,
        M::CONNECT => Method::CONNECT,
        M::OPTIONS => Method::OPTIONS,
        M::TRACE => Method::TRACE,
        M::PATCH => Method::PATCH,
    }
}

/// What a rule does, before the path its rewrite replaces is known.
struct RuleAction {
    request_headers: HeaderModifier,
    response_headers: HeaderModifier,
    rewrite_host: Option<HeaderValue>,
    rewrite_path: Option<crd::PathModifier>,
    redirect: Option<(Redirect, Option<crd::PathModifier>)>,
    balance: Balance,
    timeouts: Timeouts,
    retry: Option<RetryPolicy>,
}

impl RuleAction {
    fn new(rule: &crd::RouteRule, problems: &mut Problems) -> Self {
        let mut action = RuleAction {
            request_headers: HeaderModifier::default(),
            response_headers: HeaderModifier::default(),
            rewrite_host: None,
            rewrite_path: None,
            redirect: None,
            balance: balance(rule),
            timeouts: Timeouts::default(),
            retry: None,
        };
        for f in &rule.filters {
            match f.type_ {
                FilterType::RequestHeaderModifier => {
                    if let Some(m) = &f.request_header_modifier {
                        action.request_headers = header_modifier(m, problems);
                    }
                }
                FilterType::ResponseHeaderModifier => {
                    if let Some(m) = &f.response_header_modifier {
                        action.response_headers = header_modifier(m, problems);
                    }
                }
                FilterType::UrlRewrite => {
                    if let Some(r) = &f.url_rewrite {
                        action.rewrite_host = r.hostname.as_deref().and_then(|h| HeaderValue::from_str(h).ok());
                        action.rewrite_path = r.path.clone();
                    }
                }
                FilterType::RequestRedirect => {
                    if let Some(r) = &f.request_redirect {
                        let status = r
                            .status_code
                            .and_then(|c| u16::try_from(c).ok())
                            .and_then(|c| StatusCode::from_u16(c).ok())
                            .unwrap_or(StatusCode::FOUND);
                        let redirect = Redirect {
                            scheme: r.scheme.map(|s| match s {
                                crd::Scheme::Http => "http".to_string(),
                                crd::Scheme::Https => "https".to_string(),
                            }),
                            hostname: r.hostname.clone(),
                            port: r.port.and_then(|p| u16::try_from(p).ok()),
                            path: None,
                            status,
                        };
                        action.redirect = Some((redirect, r.path.clone()));
                    }
                }
            }
        }
        if let Some(t) = &rule.timeouts {
            action.timeouts = Timeouts {
                request: t.request.as_deref().and_then(parse_duration),
                backend_request: t.backend_request.as_deref().and_then(parse_duration),
            };
        }
        if let Some(r) = &rule.retry {
            let on = |what: crd::RetryOn| {
                if r.retry_on.is_empty() {
                    matches!(what, crd::RetryOn::ConnectFailure | crd::RetryOn::Reset)
                } else {
                    r.retry_on.contains(&what)
                }
            };
            action.retry = Some(RetryPolicy {
                attempts: r.attempts.unwrap_or(1).clamp(0, 5) as u32,
                on_connect_failure: on(crd::RetryOn::ConnectFailure),
                on_reset: on(crd::RetryOn::Reset),
                on_timeout: on(crd::RetryOn::Timeout),
                codes: r.codes.iter().filter_map(|c| u16::try_from(*c).ok()).collect(),
                per_try_timeout: r.per_try_timeout.as_deref().and_then(parse_duration),
                non_idempotent: r.retry_non_idempotent,
            });
        }
        action
    }

    /// The action for a match on `path` (whose prefix ReplacePrefixMatch replaces).
    fn for_path(&self, path: &str, backends: Option<Arc<WeightedBackends>>) -> RouteAction {
        let modifier = |m: &crd::PathModifier| match m.type_ {
            PathModifierType::ReplaceFullPath => {
                PathModifier::ReplaceFullPath(m.replace_full_path.clone().unwrap_or_else(|| "/".into()))
            }
            PathModifierType::ReplacePrefixMatch => PathModifier::ReplacePrefixMatch {
                prefix: indexed_prefix(path),
                with: m.replace_prefix_match.clone().unwrap_or_else(|| "/".into()),
            },
        };
        let rewrite = (self.rewrite_host.is_some() || self.rewrite_path.is_some()).then(|| UrlRewrite {
            hostname: self.rewrite_host.clone(),
            path: self.rewrite_path.as_ref().map(modifier),
        });
        let redirect = self.redirect.as_ref().map(|(r, p)| Redirect {
            path: p.as_ref().map(modifier),
            ..r.clone()
        });
        RouteAction {
            request_headers: self.request_headers.clone(),
            response_headers: self.response_headers.clone(),
            rewrite,
            redirect,
            backends,
            balance: self.balance.clone(),
            timeouts: self.timeouts,
            retry: self.retry.clone(),
        }
    }
}

/// A PathPrefix as the table indexes it: without a trailing slash (except `/`).
fn indexed_prefix(path: &str) -> String {
    if path.len() > 1 {
        path.trim_end_matches('/').to_string()
    } else {
        path.to_string()
    }
}

fn balance(rule: &crd::RouteRule) -> Balance {
    let policy = match &rule.load_balancer {
        None => LbPolicy::RoundRobin,
        Some(lb) => match (lb.type_, &lb.consistent_hash) {
            (crd::LoadBalancerType::RoundRobin, _) => LbPolicy::RoundRobin,
            (crd::LoadBalancerType::LeastRequest, _) => LbPolicy::LeastRequest,
            (crd::LoadBalancerType::ConsistentHash, Some(h)) => {
                let header = h
                    .header
                    .as_deref()
                    .and_then(|n| HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok());
                match (header, &h.cookie) {
                    (Some(name), _) => LbPolicy::ConsistentHash(HashOn::Header(name)),
                    (None, Some(cookie)) => LbPolicy::ConsistentHash(HashOn::Cookie(cookie.clone())),
                    (None, None) => LbPolicy::ConsistentHash(HashOn::ClientIp),
                }
            }
            (crd::LoadBalancerType::ConsistentHash, None) => LbPolicy::RoundRobin,
        },
    };
    Balance {
        policy,
        affinity_cookie: rule.session_affinity.as_ref().map(|a| a.cookie_name.clone()),
    }
}

fn header_modifier(m: &crd::HeaderModifier, problems: &mut Problems) -> HeaderModifier {
    let mut out = HeaderModifier::default();
    let mut pair = |h: &crd::HttpHeader| {
        let name = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes());
        let value = HeaderValue::from_str(&h.value);
        match (name, value) {
            (Ok(n), Ok(v)) => Some((n, v)),
            _ => {
                problems.warning(
                    reason::INVALID_ROUTE,
                    format!(
                        "header {:?} has a name or value HTTP does not allow; it is skipped",
                        h.name
                    ),
                );
                None
            }
        }
    };
    out.set = m.set.iter().filter_map(&mut pair).collect();
    out.add = m.add.iter().filter_map(&mut pair).collect();
    out.remove = m
        .remove
        .iter()
        .filter_map(|n| HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok())
        .collect();
    out
}
