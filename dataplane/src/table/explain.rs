//! `explain`: which rule a table gives a request, what that rule does to it, and why
//! every other rule of the host did not get it.
//!
//! ```text
//!  host ─▶ block_for (the lookup's own) ─▶ exact / wildcard / catch-all block
//!  path ─▶ PathIndex::matching (the lookup's own order) ─▶ first candidate met wins
//!            └─ every other entry and candidate of the block gets its reason:
//!               path does not match, shorter, lower type, conditions, tried later,
//!               refused when the table was built
//! ```
//!
//! The rule named as serving the request is the one [`RoutingTable::route`] returns,
//! so an explanation can never disagree with routing; the rest is computed with the
//! index's own matching order. Nothing here runs on the request path: an explanation
//! is built on demand (the CLI, the admin port) and allocates freely.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::path::{IndexedPath, validate};
use super::{HashOn, LbPolicy};
use super::{
    HostBlock, HostMatch, MatchConditions, ObjectKind, PathKind, RequestView, Route, RouteMeta, RoutingTable,
    UpstreamProtocol, normalize_host,
};

/// The answer of [`RoutingTable::explain`]; JSON through `serde`, text through `Display`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// The table's generation.
    pub generation: u64,
    /// The Gateway listener port whose table was explained; absent for the Ingress
    /// ports' table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<u16>,
    pub request: RequestSummary,
    pub host_block: HostBlockChoice,
    pub result: Outcome,
    /// The status Portico answers with by itself: 404 when nothing serves the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<RuleRef>,
    /// What the request passes through, in the order the proxy applies it.
    pub filters: Vec<Filter>,
    pub backends: Vec<BackendView>,
    /// Every other rule of the host block, with why it did not serve the request:
    /// the paths that match first, in the order they were tried, then the refused
    /// ones, then the paths that do not match.
    pub not_chosen: Vec<NotChosen>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A path rule serves the request.
    Rule,
    /// No path matched; the host's defaultBackend serves it.
    DefaultBackend,
    /// Nothing serves it: 404.
    NoRoute,
}

#[derive(Debug, Serialize)]
pub struct RequestSummary {
    /// As given.
    pub host: String,
    /// Lower-cased, port and trailing dot removed: what hosts are matched against.
    pub normalized_host: String,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockKind {
    /// The rules written for exactly this host.
    Exact,
    /// The rules of `*.parent`, which match exactly one more label.
    Wildcard,
    /// The rules without a host, for hosts no rule names.
    CatchAll,
}

#[derive(Debug, Serialize)]
pub struct HostBlockChoice {
    pub kind: BlockKind,
    /// `a.example.com`, `*.example.com`, or empty for the catch-all.
    pub name: String,
    /// Less specific blocks that also have rules for this host but are never consulted:
    /// a host is served by one block only, so a path missing from it is not looked up
    /// in the wildcard or the catch-all block.
    pub not_consulted: Vec<String>,
}

/// One rule (a path with its conditions), named as its object wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
    /// Index in `spec.rules`; `None` for a defaultBackend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// Index of the Ingress path in `http.paths`, or of the Route match in `matches`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_index: Option<u32>,
    /// As written; empty for a rule without a host.
    pub host: String,
    /// As written; empty for a defaultBackend.
    pub path: String,
    /// `None` for a defaultBackend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_type: Option<PathKind>,
    /// The Route's method, header and query conditions, with their values.
    pub conditions: Vec<String>,
    pub service: String,
}

impl RuleRef {
    fn new(meta: &RouteMeta, kind: Option<PathKind>, conditions: Vec<String>) -> Self {
        RuleRef {
            kind: meta.kind,
            namespace: meta.namespace.clone(),
            name: meta.ingress.clone(),
            rule: meta.rule,
            path_index: meta.path_index,
            host: meta.host.clone(),
            path: meta.path.clone(),
            path_type: kind,
            conditions,
            service: meta.service.clone(),
        }
    }

    fn of(route: &Route, kind: Option<PathKind>, conditions: &MatchConditions) -> Self {
        Self::new(&route.meta, kind, conditions.describe())
    }
}

/// Why a rule did not serve the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Its path does not match the request's path.
    PathDoesNotMatch,
    /// Its path matches, but a longer rule path served the request.
    ShorterPath,
    /// Same length as the winner, but a path type of lower precedence
    /// (Exact > Prefix > ImplementationSpecific > RegularExpression).
    LowerPathTypePrecedence,
    /// Same length and type as the winner (regular expressions): the one added first,
    /// from the older object, is tried first.
    SameRankAddedLater,
    /// Its path matches and it was tried, but the request does not meet its method,
    /// header or query conditions.
    ConditionsNotMet,
    /// Same path as the winner, tried after it: candidates of one path are tried most
    /// specific first (method, then more headers, then more query parameters), then in
    /// the order added.
    TriedAfterWinner,
    /// Refused when the table was built: an older object has the same host, path, type
    /// and conditions (or the host's defaultBackend).
    RefusedDuplicate,
    /// The host's defaultBackend serves only requests no path matches.
    DefaultBackendNotNeeded,
}

#[derive(Debug, Serialize)]
pub struct NotChosen {
    pub rule: RuleRef,
    pub reason: Reason,
    /// The reason in words, with the path-type rule or the numbers compared.
    pub detail: String,
    /// For [`Reason::ConditionsNotMet`]: each condition the request fails.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmet: Vec<String>,
    /// For [`Reason::RefusedDuplicate`]: the rule that keeps the place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_by: Option<RuleRef>,
}

/// One behaviour of the serving rule.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// `ssl-redirect`, `redirect`, `body-limit`, `request-buffering`,
    /// `proxy-timeouts`, `request-headers`, `rewrite`, `balance`, `split`, `timeouts`,
    /// `retry`, `response-headers`, `hsts`.
    pub filter: &'static str,
    /// When the proxy applies it: `route`, `request`, `upstream request`, `upstream`,
    /// `upstream response`, `response`.
    pub phase: &'static str,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct BackendView {
    /// `namespace/service:port`.
    pub name: String,
    /// `HTTP/1.1`, `h2c` or `HTTPS`.
    pub protocol: &'static str,
    /// Ready endpoints; none means the request gets 503.
    pub endpoints: Vec<String>,
    /// Its weight in the rule's split, when the rule has several backends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// Most headers an explained request may carry.
pub const MAX_HEADERS: usize = 64;

/// A request to explain, owned: what the CLI and the admin port build from their input.
#[derive(Clone, Debug)]
pub struct ExplainRequest {
    pub host: String,
    pub method: http::Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    /// The Gateway listener port the request comes on; `None`: an Ingress port.
    pub port: Option<u16>,
}

impl ExplainRequest {
    /// `target` is a path with an optional `?query`; `headers` are `Name: value` lines.
    pub fn new<'a>(
        host: &str,
        method: &str,
        target: &str,
        headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, String> {
        if host.is_empty() {
            return Err("the host is empty".to_string());
        }
        let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method {method:?}"))?;
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (target, None),
        };
        if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'#') {
            return Err(format!(
                "invalid path {path:?}: it must start with '/' and hold no spaces, control characters or '#'"
            ));
        }
        let mut map = http::HeaderMap::new();
        for line in headers {
            if map.len() >= MAX_HEADERS {
                return Err(format!("more than {MAX_HEADERS} headers"));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header {line:?}: expected 'Name: value'"))?;
            let name = http::HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("header {line:?}: invalid name"))?;
            let value =
                http::HeaderValue::from_str(value.trim()).map_err(|_| format!("header {line:?}: invalid value"))?;
            map.append(name, value);
        }
        Ok(ExplainRequest {
            host: host.to_string(),
            method,
            path: path.to_string(),
            query,
            headers: map,
            port: None,
        })
    }

    /// From the admin port's query string, form-encoded (`+` is a space): `host=`
    /// (required), `path=` (a path with an optional query, percent-encoded; `/` when
    /// absent), `method=` (`GET` when absent), `header=Name: value`, repeated, and
    /// `port=` (a Gateway listener port; absent: the Ingress ports).
    pub fn from_query(query: &str) -> Result<Self, String> {
        let (mut host, mut path, mut method, mut port) = (None, None, None, None);
        let mut headers = Vec::new();
        let query = query.replace('+', "%20");
        for (name, value) in super::query_pairs(&query) {
            match name.as_ref() {
                "host" => host = Some(value),
                "path" => path = Some(value),
                "method" => method = Some(value),
                "header" => headers.push(value),
                "port" => {
                    port = Some(
                        value
                            .parse::<u16>()
                            .map_err(|_| format!("invalid port {value:?}: expected 1-65535"))?,
                    )
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: expected host, path, method, header, port"
                    ));
                }
            }
        }
        let host = host.ok_or("the host parameter is required")?;
        let mut req = Self::new(
            &host,
            method.as_deref().unwrap_or("GET"),
            path.as_deref().unwrap_or("/"),
            headers.iter().map(|h| h.as_ref()),
        )?;
        req.port = port;
        Ok(req)
    }

    /// The request as the lookup reads it.
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
        }
    }
}

impl RoutingTable {
    /// [`RoutingTable::explain`] for an owned request, against the table of the
    /// Gateway listener on its port when it names one: an error when the table has no
    /// listener there.
    pub fn explain_request(&self, req: &ExplainRequest) -> Result<Explanation, String> {
        match req.port {
            None => Ok(self.explain(&req.host, &req.view())),
            Some(port) => {
                let listener = self.listener(port).ok_or_else(|| {
                    let ports: Vec<String> = self.listeners().map(|l| l.port.to_string()).collect();
                    let known = if ports.is_empty() {
                        "the table has none".to_string()
                    } else {
                        format!("it has {}", ports.join(", "))
                    };
                    format!("no Gateway listener on port {port} ({known}); without a port, the Ingress ports' table is explained")
                })?;
                let mut e = listener.table.explain(&req.host, &req.view());
                e.listener = Some(port);
                Ok(e)
            }
        }
    }

    /// Explains how this table routes a request for `host` (any case, port allowed).
    pub fn explain(&self, host: &str, req: &RequestView<'_>) -> Explanation {
        let block = self.block_for(host);
        let host_block = self.describe_block(block, host);
        let block_host = match host_block.kind {
            BlockKind::Exact => HostMatch::Exact(host_block.name.clone()),
            BlockKind::Wildcard => HostMatch::Wildcard(host_block.name.trim_start_matches("*.").to_string()),
            BlockKind::CatchAll => HostMatch::Any,
        };
        // The route routing gives, from routing's own code.
        let routed = self.route(host, req);
        let matching = block.paths.matching(req.path);
        // Where that route sits among the matching entries, as (entry, candidate).
        let winner = routed.and_then(|r| {
            matching.iter().enumerate().find_map(|(i, (e, _))| {
                let j = e.chosen(req)?;
                Arc::ptr_eq(&e.candidates()[j].route, r).then_some((i, j))
            })
        });
        let via_fallback = winner.is_none() && routed.is_some();

        let mut not_chosen = Vec::new();
        let mut served_by = None;
        for (i, (entry, kind)) in matching.iter().enumerate() {
            for (j, c) in entry.candidates().iter().enumerate() {
                let rule = RuleRef::of(&c.route, Some(*kind), &c.conditions);
                if winner == Some((i, j)) {
                    served_by = Some(rule);
                    continue;
                }
                let (reason, detail, unmet) = match winner {
                    Some((wi, wj)) if i > wi || (i == wi && j > wj) => {
                        let (w, wkind) = matching[wi];
                        let (reason, detail) = if i == wi {
                            (
                                Reason::TriedAfterWinner,
                                "same path as the winner; candidates of one path are tried most specific \
                                 first (a method, then more headers, then more query parameters), then \
                                 oldest first"
                                    .to_string(),
                            )
                        } else if entry.len() < w.len() {
                            (
                                Reason::ShorterPath,
                                format!(
                                    "matches too, but shorter: {} characters against the winner's {}; the \
                                     longest matching path wins",
                                    entry.len(),
                                    w.len()
                                ),
                            )
                        } else if kind.rank() < wkind.rank() {
                            (
                                Reason::LowerPathTypePrecedence,
                                format!(
                                    "matches too, with the same length ({}), but {kind} ranks below the \
                                     winner's {wkind} (Exact > Prefix > ImplementationSpecific > \
                                     RegularExpression)",
                                    entry.len()
                                ),
                            )
                        } else {
                            (
                                Reason::SameRankAddedLater,
                                format!(
                                    "matches too, with the same length ({}) and type; the one added first \
                                     (the older object) is tried first",
                                    entry.len()
                                ),
                            )
                        };
                        (reason, detail, Vec::new())
                    }
                    _ => {
                        let unmet = c.conditions.unmet(req);
                        (
                            Reason::ConditionsNotMet,
                            "its path matches, but the request does not meet its conditions".to_string(),
                            unmet,
                        )
                    }
                };
                not_chosen.push(NotChosen {
                    rule,
                    reason,
                    detail,
                    unmet,
                    kept_by: None,
                });
            }
        }

        let indexed = block.paths.entries();
        for r in self.refused.iter().filter(|r| r.host == block_host) {
            let detail = match r.kind {
                Some(kind) => {
                    let matches = validate(&r.path, kind).ok().is_some_and(|p| {
                        indexed
                            .iter()
                            .filter(|e| e.kind == kind && e.path == p)
                            .any(|e| matching.iter().any(|(m, _)| std::ptr::eq(*m, e.entry)))
                    });
                    format!(
                        "refused when the table was built: {} {}/{} has the same host, path, type and \
                         conditions and is older (or first in namespace/name order); its path {} this request",
                        r.owner.kind,
                        r.owner.namespace,
                        r.owner.ingress,
                        if matches { "matches" } else { "does not match" }
                    )
                }
                None => format!(
                    "refused when the table was built: {} {}/{} holds this host's defaultBackend",
                    r.owner.kind, r.owner.namespace, r.owner.ingress
                ),
            };
            let conditions = if r.conditions.is_empty() {
                Vec::new()
            } else {
                vec![r.conditions.clone()]
            };
            not_chosen.push(NotChosen {
                rule: RuleRef::new(&r.loser, r.kind, conditions.clone()),
                reason: Reason::RefusedDuplicate,
                detail,
                unmet: Vec::new(),
                kept_by: Some(RuleRef::new(&r.owner, r.kind, conditions)),
            });
        }

        let mut missed: Vec<&IndexedPath<'_>> = indexed
            .iter()
            .filter(|e| !matching.iter().any(|(m, _)| std::ptr::eq(*m, e.entry)))
            .collect();
        missed.sort_by(|a, b| (&a.path, a.kind).cmp(&(&b.path, b.kind)));
        for e in missed {
            for c in e.entry.candidates() {
                not_chosen.push(NotChosen {
                    rule: RuleRef::of(&c.route, Some(e.kind), &c.conditions),
                    reason: Reason::PathDoesNotMatch,
                    detail: path_semantics(&e.path, e.kind, req.path),
                    unmet: Vec::new(),
                    kept_by: None,
                });
            }
        }

        if let Some(fallback) = &block.fallback {
            let rule = RuleRef::new(&fallback.meta, None, Vec::new());
            if via_fallback {
                served_by = Some(rule);
            } else {
                not_chosen.push(NotChosen {
                    rule,
                    reason: Reason::DefaultBackendNotNeeded,
                    detail: "the host's defaultBackend serves only requests that no path of the host matches"
                        .to_string(),
                    unmet: Vec::new(),
                    kept_by: None,
                });
            }
        }

        let result = match (routed, via_fallback) {
            (None, _) => Outcome::NoRoute,
            (Some(_), true) => Outcome::DefaultBackend,
            (Some(_), false) => Outcome::Rule,
        };
        Explanation {
            generation: self.generation,
            listener: None,
            request: RequestSummary {
                host: host.to_string(),
                normalized_host: normalize_host(host).into_owned(),
                method: req.method.to_string(),
                path: req.path.to_string(),
                query: req.query.map(str::to_string),
                headers: req
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
            },
            host_block,
            result,
            status: routed.is_none().then_some(404),
            served_by,
            filters: routed.map(|r| filters(r, host, req)).unwrap_or_default(),
            backends: routed.map(|r| backends(r)).unwrap_or_default(),
            not_chosen,
        }
    }

    /// Which block `block_for` chose (told apart by address, so the answer is the
    /// lookup's own), and the less specific ones it hides.
    fn describe_block(&self, block: &HostBlock, host: &str) -> HostBlockChoice {
        let host = normalize_host(host);
        let wildcard = super::wildcard_in(&self.wildcard, &host, self.deep_wildcards);
        let has_rules = |b: &HostBlock| b.fallback.is_some() || !b.paths.entries().is_empty();
        let (kind, name) = if self.exact.get(host.as_ref()).is_some_and(|b| std::ptr::eq(b, block)) {
            (BlockKind::Exact, host.to_string())
        } else if let Some((p, b)) = wildcard
            && std::ptr::eq(b, block)
        {
            (BlockKind::Wildcard, format!("*.{p}"))
        } else {
            (BlockKind::CatchAll, String::new())
        };
        let mut not_consulted = Vec::new();
        if kind == BlockKind::Exact
            && let Some((p, b)) = wildcard
            && has_rules(b)
        {
            not_consulted.push(format!("*.{p}"));
        }
        if kind != BlockKind::CatchAll && has_rules(&self.any) {
            not_consulted.push("catch-all (rules without a host)".to_string());
        }
        HostBlockChoice {
            kind,
            name,
            not_consulted,
        }
    }
}

/// Why `path` (the request's) misses a rule path of `kind`, in the path type's words.
fn path_semantics(rule: &str, kind: PathKind, path: &str) -> String {
    match kind {
        PathKind::Exact => format!("Exact {rule:?} matches only the path {rule:?}, byte for byte; {path:?} is not it"),
        PathKind::Prefix => format!(
            "Prefix {rule:?} matches {rule:?} and the paths below it element by element ({rule}/...), not a \
             longer last element ({rule}x); {path:?} is neither"
        ),
        PathKind::ImplementationSpecific => format!(
            "ImplementationSpecific {rule:?} is a plain string prefix (as ingress-nginx reads it); {path:?} does \
             not start with it"
        ),
        PathKind::RegularExpression => {
            format!("RegularExpression {rule:?} must match the whole path; it does not match {path:?}")
        }
    }
}

/// What the serving rule does to the request, in the order the proxy does it.
fn filters(route: &Route, host: &str, req: &RequestView<'_>) -> Vec<Filter> {
    let mut out = Vec::new();
    let mut push = |filter, phase, detail: String| out.push(Filter { filter, phase, detail });
    let name = normalize_host(host);
    let target = match req.query {
        Some(q) => format!("{}?{q}", req.path),
        None => req.path.to_string(),
    };
    let policy = &route.policy;
    let action = route.action.as_deref();
    if policy.ssl_redirect {
        push(
            "ssl-redirect",
            "route",
            format!(
                "a plain-HTTP request gets {} to https://{name}{target} (the port of --https-redirect-port); HTTPS passes",
                policy.ssl_redirect_status.as_u16()
            ),
        );
    }
    if let Some(redirect) = action.and_then(|a| a.redirect.as_ref()) {
        let location = target
            .parse::<http::Uri>()
            .map(|uri| redirect.location(false, host, &uri))
            .unwrap_or_default();
        push(
            "redirect",
            "route",
            format!(
                "answered {} with Location {location} (for plain HTTP); nothing is sent to a backend",
                redirect.status.as_u16()
            ),
        );
    }
    if let Some(c) = action.and_then(|a| a.cors.as_ref()) {
        let origins = match &c.origins {
            super::CorsOrigins::Any => "any origin (answered *)".to_string(),
            super::CorsOrigins::Listed { patterns, .. } => format!("origins {}", patterns.join(", ")),
        };
        let how = match c.mode {
            super::CorsMode::IngressNginx => {
                "a preflight (OPTIONS) is answered 204; Access-Control-* headers on every answer"
            }
            super::CorsMode::GatewayApi => {
                "a preflight (OPTIONS with Access-Control-Request-Method) is answered 204, with Access-Control-* headers for an allowed origin only"
            }
        };
        push("cors", "route", format!("{origins}: {how}"));
    }
    if let Some(l) = action.and_then(|a| a.rate_limit.as_ref()) {
        let rates: Vec<String> = l
            .rates
            .iter()
            .map(|r| format!("{} per minute, burst {} (zone {})", r.per_minute, r.burst, r.zone))
            .collect();
        push(
            "rate-limit",
            "route",
            format!(
                "{} per client address, beyond: {}; {} exempt networks",
                rates.join(" and "),
                l.status.as_u16(),
                l.whitelist.len()
            ),
        );
    }
    if let Some(r) = action.and_then(|a| a.source_range.as_ref()) {
        let list = |v: &[super::Cidr]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
        let detail = if r.refuse_all {
            "the Ingress's annotations deny it (a source range, auth-url or proxy-ssl-secret that does not resolve): every request gets 503".to_string()
        } else {
            let allowed = match r.allow.is_empty() {
                true => "every other client".to_string(),
                false => format!("{}; others get 403", list(&r.allow)),
            };
            format!("denied (403): [{}]; allowed: {allowed}", list(&r.deny))
        };
        push("source-range", "route", detail);
    }
    if let Some(a) = action.and_then(|a| a.basic_auth.as_ref()) {
        let detail = match a.users() {
            Some(n) => format!(
                "basic authentication, realm {:?}, {n} users: others get 401; the endpoint never sees Authorization",
                a.realm()
            ),
            None => "basic authentication whose Secret could not be read: every request gets 503".to_string(),
        };
        push("basic-auth", "route", detail);
    }
    push(
        "body-limit",
        "request",
        match policy.max_body_size {
            Some(n) => format!("request bodies over {n} bytes get 413"),
            None => "no request body limit".to_string(),
        },
    );
    if let Some(buffering) = policy.request_buffering {
        push(
            "request-buffering",
            "request",
            if buffering {
                "the whole request body is read before the endpoint is contacted".to_string()
            } else {
                "the request body is streamed to the endpoint as it arrives".to_string()
            },
        );
    }
    if let Some(size) = policy.client_body_buffer_size {
        push(
            "request-buffering",
            "request",
            format!("up to {size} bytes of a request body are read ahead; the rest streams after them"),
        );
    }
    if let Some(buffering) = policy.response_buffering {
        push(
            "response-buffering",
            "response",
            if buffering {
                "the response is read ahead of the client (up to the read-ahead bound), freeing the endpoint connection"
                    .to_string()
            } else {
                "the response is streamed to the client as it takes it".to_string()
            },
        );
    }
    if policy.read_timeout.is_some() || policy.send_timeout.is_some() {
        let mut parts = Vec::new();
        parts.extend(policy.read_timeout.map(|d| format!("read {d:?}")));
        parts.extend(policy.send_timeout.map(|d| format!("send {d:?}")));
        push(
            "proxy-timeouts",
            "upstream",
            format!(
                "{} between two reads or writes of the endpoint connection",
                parts.join(", ")
            ),
        );
    }
    if let Some(t) = policy.connect_timeout {
        push(
            "proxy-connect-timeout",
            "upstream",
            format!("{t:?} to connect to an endpoint, and as long again for its TLS handshake"),
        );
    }
    if let Some(a) = action {
        if !a.request_headers.is_empty() {
            push(
                "request-headers",
                "upstream request",
                header_changes(&a.request_headers),
            );
        }
        if let Some(rw) = &a.rewrite {
            let mut parts = Vec::new();
            if let Some(h) = &rw.hostname {
                parts.push(format!("Host becomes {}", String::from_utf8_lossy(h.as_bytes())));
            }
            if let Some(p) = &rw.path {
                parts.push(format!("the path {} becomes {}", req.path, p.apply(req.path)));
            }
            push("rewrite", "upstream request", parts.join("; "));
        }
        let balance = match &a.balance.policy {
            LbPolicy::RoundRobin => "round robin over the ready endpoints".to_string(),
            LbPolicy::LeastRequest => "least request: the endpoint with the fewest requests in flight".to_string(),
            LbPolicy::ConsistentHash(on) => format!(
                "consistent hash on {}",
                match on {
                    HashOn::Header(h) => format!("header {h}"),
                    HashOn::Cookie(c) => format!("cookie {c}"),
                    HashOn::ClientIp => "the client address".to_string(),
                    HashOn::Joined(parts) => format!("the key {}", crate::table::describe_key(parts)),
                }
            ),
        };
        let affinity = a
            .balance
            .affinity_cookie
            .as_ref()
            .map(|c| format!("; session affinity by cookie {}", c.name))
            .unwrap_or_default();
        push("balance", "upstream", format!("{balance}{affinity}"));
        if let Some(split) = &a.backends {
            let total: u64 = split.weighted().map(|(_, w)| u64::from(w)).sum();
            let per_backend = split.request_headers();
            let shares: Vec<String> = split
                .weighted()
                .enumerate()
                .map(|(i, (b, w))| {
                    let percent = if total == 0 {
                        0.0
                    } else {
                        100.0 * f64::from(w) / total as f64
                    };
                    // A backendRef's own request header changes, for its requests alone.
                    let headers = per_backend
                        .and_then(|all| all.get(i))
                        .filter(|m| !m.is_empty())
                        .map(|m| format!("; its requests: {}", header_changes(m)))
                        .unwrap_or_default();
                    format!("{} weight {w} ({percent:.0}%{headers})", b.name)
                })
                .collect();
            push(
                "split",
                "upstream",
                format!("weighted split over {}: {}", shares.len(), shares.join(", ")),
            );
        }
        let t = &a.timeouts;
        if t.request.is_some() || t.backend_request.is_some() {
            let mut parts = Vec::new();
            parts.extend(t.request.map(|d| format!("request {d:?}")));
            parts.extend(t.backend_request.map(|d| format!("each attempt {d:?}")));
            push("timeouts", "upstream", format!("{}; 504 beyond", parts.join(", ")));
        }
        if let Some(r) = &a.retry {
            let mut on = Vec::new();
            if r.on_connect_failure {
                on.push("connect failure".to_string());
            }
            if r.on_reset {
                on.push("reset".to_string());
            }
            if r.on_timeout {
                on.push("timeout".to_string());
            }
            on.extend(r.codes.iter().map(|c| format!("status {c}")));
            let per_try = r
                .per_try_timeout
                .map(|d| format!(", {d:?} per try"))
                .unwrap_or_default();
            let methods = if r.non_idempotent {
                ", any method"
            } else {
                ", idempotent methods only"
            };
            push(
                "retry",
                "upstream",
                format!(
                    "up to {} more attempt{} on {}{per_try}{methods}",
                    r.attempts,
                    if r.attempts == 1 { "" } else { "s" },
                    on.join(", ")
                ),
            );
        }
        if !a.response_headers.is_empty() {
            push(
                "response-headers",
                "upstream response",
                header_changes(&a.response_headers),
            );
        }
    }
    if let Some(value) = &policy.hsts {
        push(
            "hsts",
            "response",
            format!(
                "HTTPS responses carry Strict-Transport-Security: {}",
                String::from_utf8_lossy(value.as_bytes())
            ),
        );
    }
    out
}

fn header_changes(m: &super::HeaderModifier) -> String {
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut parts = Vec::new();
    parts.extend(m.remove.iter().map(|n| format!("remove {n}")));
    parts.extend(m.set.iter().map(|(n, v)| format!("set {n}: {}", text(v))));
    parts.extend(m.add.iter().map(|(n, v)| format!("add {n}: {}", text(v))));
    parts.join("; ")
}

fn backends(route: &Route) -> Vec<BackendView> {
    let list: Vec<(&Arc<super::Backend>, Option<u32>)> = match route.action.as_ref().and_then(|a| a.backends.as_ref()) {
        Some(split) => split.weighted().map(|(b, w)| (b, Some(w))).collect(),
        None => vec![(&route.backend, None)],
    };
    list.into_iter()
        .map(|(b, weight)| BackendView {
            name: b.name.clone(),
            protocol: match b.protocol {
                UpstreamProtocol::Http1 => "HTTP/1.1",
                UpstreamProtocol::H2c => "h2c",
                UpstreamProtocol::Https => "HTTPS",
                UpstreamProtocol::H2Tls => "h2 over TLS",
            },
            endpoints: b.endpoints.iter().map(|e| e.addr.to_string()).collect(),
            weight,
        })
        .collect()
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)?;
        let item = match self.kind {
            ObjectKind::Ingress => "path",
            ObjectKind::Route | ObjectKind::HttpRoute | ObjectKind::GrpcRoute => "match",
        };
        match (self.rule, self.path_index) {
            (Some(r), Some(p)) => write!(f, " rules[{r}] {item} {p}:")?,
            _ => write!(f, " defaultBackend:")?,
        }
        let host = if self.host.is_empty() { "(any host)" } else { &self.host };
        write!(f, " host {host}")?;
        if let Some(kind) = self.path_type {
            write!(f, ", {kind} {:?}", self.path)?;
        }
        if !self.conditions.is_empty() {
            write!(f, ", {}", self.conditions.join(", "))?;
        }
        if !self.service.is_empty() {
            write!(f, " -> service {}", self.service)?;
        }
        Ok(())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        let query = r.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
        writeln!(f, "request:  {} {}{query} host {}", r.method, r.path, r.host)?;
        if let Some(port) = self.listener {
            writeln!(f, "listener: Gateway listener port {port} (its routes only)")?;
        }
        for (name, value) in &r.headers {
            writeln!(f, "          {name}: {value}")?;
        }
        let b = &self.host_block;
        let block = match b.kind {
            BlockKind::Exact => format!("exact host {}", b.name),
            BlockKind::Wildcard => format!("wildcard host {}", b.name),
            BlockKind::CatchAll => "catch-all (rules without a host; no rule names this host)".to_string(),
        };
        writeln!(f, "host:     {block}")?;
        if !b.not_consulted.is_empty() {
            writeln!(
                f,
                "          not consulted for this host: {}",
                b.not_consulted.join(", ")
            )?;
        }
        match (&self.served_by, self.result) {
            (Some(rule), Outcome::Rule) => writeln!(f, "served by: {rule}")?,
            (Some(rule), _) => writeln!(f, "served by: {rule} (no path matched)")?,
            (None, _) => writeln!(
                f,
                "served by: nothing: {} (no path of this host matches and it has no defaultBackend)",
                self.status.unwrap_or(404)
            )?,
        }
        if !self.filters.is_empty() {
            writeln!(f, "filters:")?;
            for flt in &self.filters {
                writeln!(f, "  {:<17} [{}] {}", flt.filter, flt.phase, flt.detail)?;
            }
        }
        if !self.backends.is_empty() {
            writeln!(f, "backends:")?;
            for be in &self.backends {
                let endpoints = if be.endpoints.is_empty() {
                    "no ready endpoint: 503".to_string()
                } else {
                    be.endpoints.join(", ")
                };
                let weight = be.weight.map(|w| format!(", weight {w}")).unwrap_or_default();
                writeln!(f, "  {} ({}{weight}): {endpoints}", be.name, be.protocol)?;
            }
        }
        if !self.not_chosen.is_empty() {
            writeln!(f, "not chosen:")?;
            for n in &self.not_chosen {
                let reason = serde_json::to_value(n.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                writeln!(f, "  {}", n.rule)?;
                writeln!(f, "    {reason}: {}", n.detail)?;
                for u in &n.unmet {
                    writeln!(f, "      - {u}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
