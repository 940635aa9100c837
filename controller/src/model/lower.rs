//! [`lower`]: one [`Rule`] into a [`TableBuilder`], for every route kind;
//! [`lower_fallback`]: one rule as its hosts' fallback.

use std::sync::Arc;

use portico_dataplane::table::{
    Backend, PathModifier, Redirect, Route, RouteAction, RouteMeta, RouteRule, RuleError, TableBuilder,
    UpstreamProtocol, UrlRewrite, WeightedBackends,
};

use super::{Canary, Host, PathRewrite, Rule};

/// A match (on one host) the table refused; the rule's other matches stay.
pub type LowerError = RuleError;

/// What [`lower`] placed and what the table refused.
#[derive(Debug, Default)]
pub struct Lowered {
    /// Entries placed for the rule's own matches.
    pub placed: usize,
    /// The rule's own entries refused: an invalid path, or a place an earlier rule
    /// holds with the same conditions.
    pub refused: Vec<LowerError>,
    /// The canary's entries refused.
    pub canary_refused: Vec<LowerError>,
}

/// Adds every match of `rule` on every one of its hosts, and after each placed entry
/// its canary's candidates. Returns what was placed and what was refused: the older
/// rule keeps a place, so rules must come in precedence order.
pub fn lower(builder: &mut TableBuilder, rule: &Rule) -> Lowered {
    let (primary, service) = primary(rule);
    // One backend is a split too when its requests get header changes of their own: the
    // proxy makes them once it has chosen a backend.
    let split = if rule.backends.len() > 1 || rule.backends.iter().any(|b| !b.request_headers.is_empty()) {
        WeightedBackends::new(rule.backends.iter().map(|b| (b.backend.clone(), b.weight)).collect())
            .map(|w| w.with_request_headers(rule.backends.iter().map(|b| b.request_headers.clone()).collect()))
            .map(Arc::new)
    } else {
        None
    };
    let split = split.or_else(|| rule.canary.as_ref().and_then(|c| canary_split(&primary, c)));
    let mut out = Lowered::default();
    for m in &rule.matches {
        let path = m.table_path.as_ref().unwrap_or(&m.path);
        let action = action(rule, &m.path, split.clone());
        for host in &rule.hosts {
            let index = m.index;
            let meta = |host: &Host, service: &str| meta(rule, host, service, &m.path, index);
            let route = Arc::new(Route::new(
                meta(host, &service),
                primary.clone(),
                rule.policy.clone(),
                action.clone(),
            ));
            let entry = |route| RouteRule {
                host: host.host.clone(),
                path: path.clone(),
                kind: m.kind,
                route,
            };
            if let Err(e) = builder.add_with(entry(route), m.conditions.clone()) {
                out.refused.push(e);
                continue;
            }
            out.placed += 1;
            let Some(canary) = &rule.canary else { continue };
            // The candidates act as the rule does, without its split.
            let plain = self::action(rule, &m.path, None);
            let main = Arc::new(Route::new(
                meta(host, &service),
                primary.clone(),
                rule.policy.clone(),
                plain.clone(),
            ));
            let canary_meta = RouteMeta {
                kind: canary.owner.kind,
                namespace: canary.owner.namespace.clone(),
                ingress: canary.owner.name.clone(),
                rule: canary.owner.rule.and_then(|r| u32::try_from(r).ok()),
                path_index: None,
                ..meta(host, &canary.service)
            };
            let to_canary = Arc::new(Route::new(
                canary_meta,
                canary.backend.clone(),
                rule.policy.clone(),
                plain,
            ));
            for c in &canary.candidates {
                let route = if c.to_main { main.clone() } else { to_canary.clone() };
                if let Err(e) = builder.add_with(entry(route), c.conditions.clone()) {
                    out.canary_refused.push(e);
                }
            }
        }
    }
    out
}

/// Sets `rule` as the fallback of each of its hosts: what serves the requests no path
/// there matches. Says, host by host, whether it was set: an earlier rule keeps a
/// host's fallback.
pub fn lower_fallback(builder: &mut TableBuilder, rule: &Rule) -> Vec<bool> {
    let (primary, service) = primary(rule);
    let action = action(rule, "", None);
    rule.hosts
        .iter()
        .map(|host| {
            let route = Arc::new(Route::new(
                meta(rule, host, &service, "", None),
                primary.clone(),
                rule.policy.clone(),
                action.clone(),
            ));
            builder.fallback(&host.host, route)
        })
        .collect()
}

/// The backend a rule names first, and its Service. A rule whose backends all weigh 0,
/// or a redirect, still needs a backend to name.
fn primary(rule: &Rule) -> (Arc<Backend>, String) {
    let owner = &rule.owner;
    let live = || rule.backends.iter().filter(|b| b.weight > 0);
    let service = live().next().map(|b| b.service.clone()).unwrap_or_default();
    let primary = live().next().map(|b| b.backend.clone()).unwrap_or_else(|| {
        Arc::new(Backend::new(
            format!("{}/{}:redirect", owner.namespace, owner.name),
            UpstreamProtocol::Http1,
            Vec::new(),
        ))
    });
    (primary, service)
}

/// The rule's own backend and its canary's, by the canary's weight.
fn canary_split(main: &Arc<Backend>, c: &Canary) -> Option<Arc<WeightedBackends>> {
    (c.weight > 0)
        .then(|| WeightedBackends::new(vec![(main.clone(), c.total - c.weight), (c.backend.clone(), c.weight)]))
        .flatten()
        .map(Arc::new)
}

fn meta(rule: &Rule, host: &Host, service: &str, path: &str, index: Option<usize>) -> RouteMeta {
    let owner = &rule.owner;
    RouteMeta {
        kind: owner.kind,
        namespace: owner.namespace.clone(),
        ingress: owner.name.clone(),
        service: service.to_string(),
        host: host.written.clone(),
        path: path.to_string(),
        rule: owner.rule.and_then(|r| u32::try_from(r).ok()),
        path_index: index.and_then(|i| u32::try_from(i).ok()),
    }
}

/// The table action for a match on `path` (the prefix a ReplacePrefixMatch replaces);
/// `None` when the rule asks for nothing and [`Rule::omit_empty_action`] says so.
fn action(rule: &Rule, path: &str, backends: Option<Arc<WeightedBackends>>) -> Option<Arc<RouteAction>> {
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
    let nothing = rule.omit_empty_action
        && f.request_headers.is_empty()
        && f.response_headers.is_empty()
        && rewrite.is_none()
        && redirect.is_none()
        && f.regex_rewrite.is_none()
        && f.return_redirect.is_none()
        && f.source_range.is_none()
        && f.cors.is_none()
        && f.rate_limit.is_none()
        && f.conn_limit.is_none()
        && f.basic_auth.is_none()
        && f.external_auth.is_none()
        && f.error_pages.is_none()
        && f.client_auth.is_none()
        && backends.is_none()
        && rule.balance == Default::default()
        && rule.timeouts == Default::default()
        && rule.retry.is_none();
    if nothing {
        return None;
    }
    Some(Arc::new(RouteAction {
        request_headers: f.request_headers.clone(),
        response_headers: f.response_headers.clone(),
        rewrite,
        redirect,
        regex_rewrite: f.regex_rewrite.clone(),
        return_redirect: f.return_redirect.clone(),
        source_range: f.source_range.clone(),
        cors: f.cors.clone(),
        rate_limit: f.rate_limit.clone(),
        conn_limit: f.conn_limit.clone(),
        basic_auth: f.basic_auth.clone(),
        external_auth: f.external_auth.clone(),
        error_pages: f.error_pages.clone(),
        client_auth: f.client_auth.clone(),
        backends,
        balance: rule.balance.clone(),
        timeouts: rule.timeouts,
        retry: rule.retry.clone(),
    }))
}

/// A PathPrefix as the table indexes it: without a trailing slash (except `/`).
fn indexed_prefix(path: &str) -> String {
    if path.len() > 1 {
        path.trim_end_matches('/').to_string()
    } else {
        path.to_string()
    }
}
