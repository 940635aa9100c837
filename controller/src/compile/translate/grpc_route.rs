//! GRPCRoute translated into the route model, once per listener it attaches to, as
//! HTTPRoute is: a gRPC call is an HTTP/2 POST of `/{service}/{method}`, so a method
//! match is a path match, and every backend is spoken to in h2c.

use portico_dataplane::table::{Balance, ObjectKind, PathKind, Timeouts, UpstreamProtocol};

use super::super::Compiler;
use super::super::diagnostics::{Problems, reason};
use super::super::gateway::RouteState;
use super::conditions;
use super::http_route::{filters, spec};
use crate::gateway_api::{GRPCMethodMatch, GRPCRouteRule};
use crate::model;

impl<'a> Compiler<'a> {
    pub(super) fn grpc_route_rule(
        &mut self,
        route: &RouteState<'a>,
        hosts: Vec<model::Host>,
        rule_index: usize,
        rule: &'a GRPCRouteRule,
        problems: &mut Problems,
    ) -> model::Rule {
        let filters = filters(&rule.filters, problems);
        let backends = self.rule_backends(
            route,
            &rule.backend_refs,
            filters.is_some(),
            UpstreamProtocol::H2c,
            problems,
        );
        let matches = super::matches_or_default(&rule.matches);
        let matches = matches
            .iter()
            .enumerate()
            .filter_map(|(index, m): (usize, &crate::gateway_api::GRPCRouteMatch)| {
                let Some((kind, path)) = method_path(m.method.as_ref()) else {
                    problems.warning(
                        reason::INVALID_ROUTE,
                        "a method match needs a service or a method of type Exact or RegularExpression; the match is skipped",
                    );
                    return None;
                };
                let conditions = conditions(None, m.headers.iter().map(spec), [], problems)?;
                Some(model::Match {
                    index: Some(index),
                    kind,
                    path,
                    table_path: None,
                    conditions,
                })
            })
            .collect();
        model::Rule {
            owner: model::Owner {
                kind: ObjectKind::GrpcRoute,
                namespace: route.namespace.to_string(),
                name: route.name.to_string(),
                rule: Some(rule_index),
            },
            hosts,
            matches,
            filters: filters.unwrap_or_default(),
            backends,
            balance: Balance::default(),
            timeouts: Timeouts::default(),
            retry: None,
            policy: self.opts.base_policy(),
            canary: None,
            omit_empty_action: false,
        }
    }
}

/// The path match of a GRPCMethodMatch (gRPC over HTTP/2: `:path` is
/// `/{service}/{method}`). Exact: both names give that exact path, a service alone
/// every method of it (the prefix `/{service}`, whole segments), a method alone that
/// method of any service. RegularExpression: each name is a regular expression over
/// its segment, a missing one any segment. No method match: every call. `None` for
/// a type Portico does not know, or a match naming neither.
pub(in crate::compile) fn method_path(m: Option<&GRPCMethodMatch>) -> Option<(PathKind, String)> {
    let Some(m) = m else {
        return Some((PathKind::Prefix, "/".to_string()));
    };
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    match (m.type_.as_deref().unwrap_or("Exact"), service, method) {
        (_, None, None) => None,
        ("Exact", Some(s), Some(me)) => Some((PathKind::Exact, format!("/{s}/{me}"))),
        ("Exact", Some(s), None) => Some((PathKind::Prefix, format!("/{s}"))),
        ("Exact", None, Some(me)) => Some((PathKind::RegularExpression, format!("/[^/]+/{}", regex::escape(me)))),
        ("RegularExpression", s, me) => Some((
            PathKind::RegularExpression,
            format!("/{}/{}", s.unwrap_or("[^/]+"), me.unwrap_or("[^/]+")),
        )),
        _ => None,
    }
}
