//! One `Route` (portico.dev) translated into the route model, next to the Ingress rules.
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

use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use portico_dataplane::table::{
    AffinityCookie, Balance, HashOn, HostMatch, LbPolicy, ObjectKind, PathKind, RetryPolicy, RoutePolicy, Timeouts,
};

use super::super::diagnostics::{Problems, reason};
use super::super::{Compiler, namespace_of};
use super::{ValueSpec, conditions, header_modifier, lower_reporting};
use crate::crd::{self, FilterType, PathMatchType, PathModifierType, ValueMatchType, parse_duration};
use crate::model::{self, PathRewrite, RedirectTo};

impl<'a> Compiler<'a> {
    /// Adds one Route. Routes and Ingresses must come oldest first.
    ///
    /// A Route that breaks the CRD's rules (possible only when no API server checked
    /// it) is left out whole with an `InvalidRoute` diagnostic. Otherwise, as for an
    /// Ingress, a broken part never takes the rest down.
    pub(in crate::compile) fn add_route(&mut self, route: &'a crd::Route) {
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
        let mut policy = self.opts.base_policy();
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
                policy.hsts = self.opts.hsts.clone();
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
            backends.push(model::WeightedBackend {
                backend: resolved.backend,
                service: b.name.clone(),
                weight: b.weight.unwrap_or(1).clamp(0, 1_000_000) as u32,
                request_headers: Default::default(),
            });
        }
        let matches = super::matches_or_default(&rule.matches);
        let matches = matches
            .iter()
            .enumerate()
            .filter_map(|(index, m)| {
                let path = m.path.clone().unwrap_or_default();
                let kind = match path.type_ {
                    PathMatchType::Exact => PathKind::Exact,
                    PathMatchType::PathPrefix => PathKind::Prefix,
                    PathMatchType::RegularExpression => PathKind::RegularExpression,
                };
                let value = |v, t: ValueMatchType| ValueSpec {
                    regex: t == ValueMatchType::RegularExpression,
                    name: "",
                    value: v,
                };
                let headers = m.headers.iter().map(|h| ValueSpec {
                    name: &h.name,
                    ..value(&h.value, h.type_)
                });
                let query = m.query_params.iter().map(|q| ValueSpec {
                    name: &q.name,
                    ..value(&q.value, q.type_)
                });
                let conditions = conditions(m.method.map(method), headers, query, problems)?;
                Some(model::Match {
                    index: Some(index),
                    kind,
                    path: path.value,
                    table_path: None,
                    conditions,
                })
            })
            .collect();
        let model = model::Rule {
            owner: model::Owner {
                kind: ObjectKind::Route,
                namespace: namespace.to_string(),
                name: name.to_string(),
                rule: Some(rule_index),
            },
            hosts: hosts
                .iter()
                .map(|(host, written)| model::Host {
                    host: host.clone(),
                    written: written.to_string(),
                })
                .collect(),
            matches,
            filters: filters(rule, problems),
            backends,
            balance: balance(rule),
            timeouts: rule.timeouts.as_ref().map(timeouts).unwrap_or_default(),
            retry: rule.retry.as_ref().map(retry),
            policy: policy.clone(),
            canary: None,
            omit_empty_action: false,
        };
        // Backend problems are reported only for rules that made it into the table.
        if lower_reporting(&mut self.builder, &model, problems) {
            for p in backend_problems {
                problems.push(p);
            }
        }
    }
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

fn path_rewrite(m: &crd::PathModifier) -> PathRewrite {
    match m.type_ {
        PathModifierType::ReplaceFullPath => {
            PathRewrite::Full(m.replace_full_path.clone().unwrap_or_else(|| "/".into()))
        }
        PathModifierType::ReplacePrefixMatch => {
            PathRewrite::Prefix(m.replace_prefix_match.clone().unwrap_or_else(|| "/".into()))
        }
    }
}

fn filters(rule: &crd::RouteRule, problems: &mut Problems) -> model::Filters {
    let modifier = |m: &crd::HeaderModifier, problems: &mut Problems| {
        header_modifier(
            m.set.iter().map(|h| (h.name.as_str(), h.value.as_str())),
            m.add.iter().map(|h| (h.name.as_str(), h.value.as_str())),
            m.remove.iter().map(String::as_str),
            problems,
        )
    };
    let mut out = model::Filters::default();
    for f in &rule.filters {
        match f.type_ {
            FilterType::RequestHeaderModifier => {
                if let Some(m) = &f.request_header_modifier {
                    out.request_headers = modifier(m, problems);
                }
            }
            FilterType::ResponseHeaderModifier => {
                if let Some(m) = &f.response_header_modifier {
                    out.response_headers = modifier(m, problems);
                }
            }
            FilterType::UrlRewrite => {
                if let Some(r) = &f.url_rewrite {
                    out.rewrite_host = r.hostname.as_deref().and_then(|h| HeaderValue::from_str(h).ok());
                    out.rewrite_path = r.path.as_ref().map(path_rewrite);
                }
            }
            FilterType::RequestRedirect => {
                if let Some(r) = &f.request_redirect {
                    let status = r
                        .status_code
                        .and_then(|c| u16::try_from(c).ok())
                        .and_then(|c| StatusCode::from_u16(c).ok())
                        .unwrap_or(StatusCode::FOUND);
                    out.redirect = Some(RedirectTo {
                        scheme: r.scheme.map(|s| match s {
                            crd::Scheme::Http => "http".to_string(),
                            crd::Scheme::Https => "https".to_string(),
                        }),
                        hostname: r.hostname.clone(),
                        port: r.port.and_then(|p| u16::try_from(p).ok()),
                        path: r.path.as_ref().map(path_rewrite),
                        status,
                    });
                }
            }
        }
    }
    out
}

fn timeouts(t: &crd::Timeouts) -> Timeouts {
    Timeouts {
        request: t.request.as_deref().and_then(parse_duration),
        backend_request: t.backend_request.as_deref().and_then(parse_duration),
    }
}

fn retry(r: &crd::Retry) -> RetryPolicy {
    let on = |what: crd::RetryOn| {
        if r.retry_on.is_empty() {
            matches!(what, crd::RetryOn::ConnectFailure | crd::RetryOn::Reset)
        } else {
            r.retry_on.contains(&what)
        }
    };
    RetryPolicy {
        attempts: r.attempts.unwrap_or(1).clamp(0, 5) as u32,
        on_connect_failure: on(crd::RetryOn::ConnectFailure),
        on_reset: on(crd::RetryOn::Reset),
        on_timeout: on(crd::RetryOn::Timeout),
        codes: r.codes.iter().filter_map(|c| u16::try_from(*c).ok()).collect(),
        per_try_timeout: r.per_try_timeout.as_deref().and_then(parse_duration),
        non_idempotent: r.retry_non_idempotent,
        backoff: None,
        reuse_endpoints: false,
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
        affinity_cookie: rule.session_affinity.as_ref().map(|a| AffinityCookie {
            path: Some("/".into()),
            same_site: Some("Lax".into()),
            secure: Some(false),
            ..AffinityCookie::named(a.cookie_name.clone())
        }),
    }
}
