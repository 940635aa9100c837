//! [`lower`]: one [`Rule`] into a [`TableBuilder`], for every route kind.

use std::sync::Arc;

use portico_dataplane::table::{
    Backend, PathModifier, Redirect, Route, RouteAction, RouteMeta, RouteRule, RuleError, TableBuilder,
    UpstreamProtocol, UrlRewrite, WeightedBackends,
};

use super::{PathRewrite, Rule};

/// A match (on one host) the table refused; the rule's other matches stay.
pub type LowerError = RuleError;

/// Adds every match of `rule` on every one of its hosts. Returns how many entries were
/// placed and what was refused: an invalid path, or a place an earlier rule holds with
/// the same conditions (the older rule keeps it, so rules must come in precedence
/// order).
pub fn lower(builder: &mut TableBuilder, rule: &Rule) -> (usize, Vec<LowerError>) {
    let owner = &rule.owner;
    let live = || rule.backends.iter().filter(|b| b.weight > 0);
    let service = live().next().map(|b| b.service.clone()).unwrap_or_default();
    // A rule whose backends all weigh 0, or a redirect, still needs a backend to name.
    let primary = live().next().map(|b| b.backend.clone()).unwrap_or_else(|| {
        Arc::new(Backend::new(
            format!("{}/{}:redirect", owner.namespace, owner.name),
            UpstreamProtocol::Http1,
            Vec::new(),
        ))
    });
    let split = if rule.backends.len() > 1 {
        WeightedBackends::new(rule.backends.iter().map(|b| (b.backend.clone(), b.weight)).collect()).map(Arc::new)
    } else {
        None
    };
    let mut placed = 0;
    let mut refused = Vec::new();
    for m in &rule.matches {
        let action = Arc::new(action(rule, &m.path, split.clone()));
        for host in &rule.hosts {
            let route = Arc::new(Route::new(
                RouteMeta {
                    kind: owner.kind,
                    namespace: owner.namespace.clone(),
                    ingress: owner.name.clone(),
                    service: service.clone(),
                    host: host.written.clone(),
                    path: m.path.clone(),
                    rule: u32::try_from(owner.rule).ok(),
                    path_index: u32::try_from(m.index).ok(),
                },
                primary.clone(),
                rule.policy.clone(),
                Some(action.clone()),
            ));
            let entry = RouteRule {
                host: host.host.clone(),
                path: m.path.clone(),
                kind: m.kind,
                route,
            };
            match builder.add_with(entry, m.conditions.clone()) {
                Ok(()) => placed += 1,
                Err(e) => refused.push(e),
            }
        }
    }
    (placed, refused)
}

/// The table action for a match on `path` (the prefix a ReplacePrefixMatch replaces).
fn action(rule: &Rule, path: &str, backends: Option<Arc<WeightedBackends>>) -> RouteAction {
    let modifier = |m: &PathRewrite| match m {
        PathRewrite::Full(p) => PathModifier::ReplaceFullPath(p.clone()),
        PathRewrite::Prefix(with) => PathModifier::ReplacePrefixMatch {
            prefix: indexed_prefix(path),
            with: with.clone(),
        },
    };
    let f = &rule.filters;
    let rewrite = (f.rewrite_host.is_some() || f.rewrite_path.is_some()).then(|| UrlRewrite {
        hostname: f.rewrite_host.clone(),
        path: f.rewrite_path.as_ref().map(modifier),
    });
    let redirect = f.redirect.as_ref().map(|r| Redirect {
        scheme: r.scheme.clone(),
        hostname: r.hostname.clone(),
        port: r.port,
        path: r.path.as_ref().map(modifier),
        status: r.status,
    });
    RouteAction {
        request_headers: f.request_headers.clone(),
        response_headers: f.response_headers.clone(),
        rewrite,
        redirect,
        source_range: f.source_range.clone(),
        cors: f.cors.clone(),
        rate_limit: f.rate_limit.clone(),
        backends,
        balance: rule.balance.clone(),
        timeouts: rule.timeouts,
        retry: rule.retry.clone(),
        ..Default::default()
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
