//! The routing table: what the controller produces and the proxy reads.
//!
//! A [`RoutingTable`] is immutable. The controller builds a whole new one with a
//! [`TableBuilder`] off the hot path and publishes it through a channel; a request
//! clones one `Arc` and never takes a lock to find its route.
//!
//! Lookup picks one host block (exact host, then single-label wildcard, then the
//! rules without a host) and then the best path inside it. In a Gateway listener's
//! table a wildcard covers any number of labels, the longest suffix winning (Gateway
//! API hostnames: `*.example.com` matches `foo.bar.example.com`):
//!
//! ```text
//!  Host ──▶ exact map ──miss──▶ wildcard map ──miss──▶ catch-all block
//!                │                    │                      │
//!                ▼                    ▼                      ▼
//!   path ─▶ Exact (hash) + Prefix (segment trie) + ImplementationSpecific (byte trie)
//!           + RegularExpression (one RegexSet per host, a Route's)
//!                └── longest rule path wins; at equal length Exact > Prefix > ImplSpecific > Regex
//!                    each path holds candidates: a Route's method / header / query
//!                    conditions, most specific first; none met: the next shorter path
//! ```
//!
//! Every step costs at most one hash lookup per path segment or one trie step per byte,
//! whatever the number of hosts and routes in the table.

mod action;
mod backend;
mod connections;
mod error_pages;
mod explain;
mod forwarded;
mod host;
mod matches;
mod path;
mod split;

use std::collections::HashMap;
use std::sync::Arc;

pub use action::{
    AffinityCookie, Balance, BasicAuth, Cidr, ConnLimit, ConnLimitSpec, Cors, CorsMode, CorsOrigins, ErrorPages,
    ExternalAuth, HashOn, HashPart, HeaderModifier, LbPolicy, PathModifier, Rate, RateLimitSpec, Redirect,
    RegexRewrite, RetryPolicy, ReturnRedirect, RouteAction, SourceRange, Timeouts, UrlRewrite, describe_key,
};
pub use backend::{Backend, BackendState, Endpoint, EndpointState, UpstreamProtocol, hash_bytes, mix};
pub use connections::ConnectionSettings;
pub use error_pages::{InvalidErrorPages, Original as ErrorOriginal};
pub use explain::{ExplainRequest, Explanation};
pub use forwarded::{DEFAULT_TRUSTED, ForwardedPolicy};
pub use host::{HostMatch, InvalidHost, normalize_host};
pub use matches::{
    HeaderCondition, InvalidRegex, MatchConditions, QueryCondition, REGEX_MAX_LEN, REGEX_SIZE_LIMIT, RequestView,
    ValueMatch, full_match_regex, query_pairs,
};
#[cfg(fuzzing)]
pub(crate) use path::validate as validate_path;
pub use path::{InvalidPath, PathKind};
pub use split::WeightedBackends;

use path::PathIndex;

use crate::tls::{Certificate, ClientAuth};

/// Per-route limits and switches, with the proxy's defaults filled in by the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Largest request body accepted, in bytes; larger gets 413. `None` means no limit.
    pub max_body_size: Option<u64>,
    /// Plain-HTTP requests get a redirect to HTTPS (hosts with TLS, unless switched
    /// off), with `ssl_redirect_status`.
    pub ssl_redirect: bool,
    /// The status of that redirect: ingress-nginx's `http-redirect-code`, 308 unless
    /// its ConfigMap says 301, 302 or 307.
    pub ssl_redirect_status: http::StatusCode,
    /// The `Strict-Transport-Security` value HTTPS responses carry; `None`: no header.
    pub hsts: Option<http::HeaderValue>,
    /// Read the request body before the endpoint is contacted (ingress-nginx's
    /// `proxy-request-buffering` annotation); `None`: the proxy's own setting.
    pub request_buffering: Option<bool>,
    /// The most of a request body read before the endpoint is contacted, when request
    /// buffering is on (ingress-nginx's `client-body-buffer-size` annotation); `None`:
    /// the proxy's own.
    pub client_body_buffer_size: Option<u64>,
    /// Read the response ahead of the client (ingress-nginx's `proxy-buffering`
    /// annotation); `None`: the proxy's own setting.
    pub response_buffering: Option<bool>,
    /// nginx's `proxy_read_timeout` for this route (the `proxy-read-timeout`
    /// annotation); `None`: the proxy's own.
    pub read_timeout: Option<std::time::Duration>,
    /// nginx's `proxy_send_timeout` for this route (`proxy-send-timeout`).
    pub send_timeout: Option<std::time::Duration>,
    /// nginx's `proxy_connect_timeout` for this route (`proxy-connect-timeout`): the
    /// TCP connect and the TLS handshake to an endpoint; `None`: the proxy's own.
    pub connect_timeout: Option<std::time::Duration>,
    /// Requests of this route are written to the access log (when it is on at all);
    /// ingress-nginx's `enable-access-log: "false"` turns it off per Ingress.
    pub access_log: bool,
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy {
            max_body_size: Some(DEFAULT_MAX_BODY_SIZE),
            ssl_redirect: false,
            ssl_redirect_status: http::StatusCode::PERMANENT_REDIRECT,
            hsts: None,
            request_buffering: None,
            client_body_buffer_size: None,
            response_buffering: None,
            read_timeout: None,
            send_timeout: None,
            connect_timeout: None,
            access_log: true,
        }
    }
}

/// 1 MiB, ingress-nginx's `proxy-body-size` default, so Ingresses that relied on it keep
/// the same behaviour; raise it per Ingress with the same annotation or globally.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1024 * 1024;

/// The kind of object a route came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum ObjectKind {
    /// A `networking.k8s.io/v1` Ingress.
    #[default]
    Ingress,
    /// A `portico.dev/v1alpha1` Route.
    Route,
    /// A `gateway.networking.k8s.io/v1` HTTPRoute.
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
    /// A `gateway.networking.k8s.io/v1` GRPCRoute.
    #[serde(rename = "GRPCRoute")]
    GrpcRoute,
}

impl ObjectKind {
    /// The Kubernetes `kind`, as a metric label or in text.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Ingress => "Ingress",
            ObjectKind::Route => "Route",
            ObjectKind::HttpRoute => "HTTPRoute",
            ObjectKind::GrpcRoute => "GRPCRoute",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a matched route came from: the labels metrics and logs carry, and the object
/// and rule `explain` names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteMeta {
    pub kind: ObjectKind,
    pub namespace: String,
    /// The Ingress (or Route) name.
    pub ingress: String,
    pub service: String,
    /// The rule's host as written (`*.example.com`, or empty for no host).
    pub host: String,
    /// The rule's path as written, never the request's URL.
    pub path: String,
    /// Index of the rule in the object's `spec.rules`; `None` for an Ingress's
    /// `spec.defaultBackend`.
    pub rule: Option<u32>,
    /// Index within that rule of the path (an Ingress's `http.paths`) or the match (a
    /// Route's `matches`; 0 for a rule without matches, which matches every path).
    pub path_index: Option<u32>,
}

/// What a request that matched is sent to.
#[derive(Debug)]
pub struct Route {
    pub meta: RouteMeta,
    /// The backend, or the first of [`RouteAction::backends`].
    pub backend: Arc<Backend>,
    pub policy: RoutePolicy,
    /// A `Route` rule's filters, split, balancing, timeouts and retries; `None` for
    /// Ingress paths, which only proxy.
    pub action: Option<Arc<RouteAction>>,
    /// The filters the model above asks for, sorted by phase: what the proxy runs.
    pub filters: crate::filter::FilterChain,
    /// The request metric series this route has recorded.
    pub series: crate::metrics::SeriesCache,
}

impl Route {
    /// A route and the filter chain its policy and action ask for.
    pub fn new(meta: RouteMeta, backend: Arc<Backend>, policy: RoutePolicy, action: Option<Arc<RouteAction>>) -> Route {
        let filters = filter_chain(&policy, action.as_deref());
        Route {
            meta,
            backend,
            policy,
            action,
            filters,
            series: Default::default(),
        }
    }
}

/// The filters of a route, in the order they run within each phase: the HTTPS
/// redirect before a Route's own redirect, both before the body limit; header changes
/// before the rewrite.
fn filter_chain(policy: &RoutePolicy, action: Option<&RouteAction>) -> crate::filter::FilterChain {
    use crate::filter;
    let mut all = Vec::new();
    // nginx checks a client certificate as it reads the request, before any phase.
    if let Some(a) = action.and_then(|a| a.client_auth.as_ref()) {
        all.push(filter::client_cert(a.clone()));
    }
    // The template's CORS block comes before the location's `return`.
    if let Some(c) = action.and_then(|a| a.cors.as_ref()) {
        all.push(filter::cors(c.clone()));
    }
    // nginx's `return` runs in the rewrite phase, before anything else answers.
    if let Some(r) = action.and_then(|a| a.return_redirect.as_ref()) {
        all.push(filter::return_redirect(r.clone()));
    }
    if policy.ssl_redirect {
        all.push(filter::https_redirect(policy.ssl_redirect_status));
    }
    if let Some(r) = action.and_then(|a| a.redirect.as_ref()) {
        all.push(filter::redirect(r.clone()));
    }
    if let Some(limit) = policy.max_body_size {
        all.push(filter::body_limit(limit));
    }
    // nginx's preaccess phase (limit_req), then its access phase, after the rewrite
    // phase's redirects.
    if let Some(spec) = action.and_then(|a| a.rate_limit.as_ref()) {
        all.push(filter::rate_limit(spec));
    }
    if let Some(r) = action.and_then(|a| a.source_range.as_ref()) {
        all.push(filter::source_range(r.clone()));
    }
    if let Some(a) = action.and_then(|a| a.basic_auth.as_ref()) {
        all.push(filter::basic_auth(a.clone()));
    }
    if let Some(a) = action {
        if !a.request_headers.is_empty() {
            all.push(filter::request_headers(a.request_headers.clone()));
        }
        if let Some(rewrite) = &a.rewrite {
            all.push(filter::rewrite(rewrite.clone()));
        }
        if let Some(rewrite) = &a.regex_rewrite {
            all.push(filter::regex_rewrite(rewrite.clone()));
        }
        if !a.response_headers.is_empty() {
            all.push(filter::response_headers(a.response_headers.clone()));
        }
    }
    if let Some(value) = &policy.hsts {
        all.push(filter::hsts(value.clone()));
    }
    // A split's per-backend header changes are made once the backend is chosen, after
    // the chain's: the forwarded fields they may change must be in the map by then.
    let per_backend = action
        .and_then(|a| a.backends.as_ref())
        .and_then(|s| s.request_headers());
    let names = per_backend
        .into_iter()
        .flatten()
        .flat_map(filter::HeaderModifier::names);
    filter::FilterChain::of(all).also_changes(names)
}

/// A route rule before it is placed in a table.
#[derive(Clone, Debug)]
pub struct RouteRule {
    pub host: HostMatch,
    pub path: String,
    pub kind: PathKind,
    pub route: Arc<Route>,
}

/// Why a rule could not be added.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error(transparent)]
    Path(#[from] InvalidPath),
    #[error("{kind} path {path:?}{} on host {host:?} is already routed by {owner_namespace}/{owner}", conditions_text(.conditions))]
    Duplicate {
        host: String,
        path: String,
        kind: PathKind,
        conditions: String,
        owner_namespace: String,
        owner: String,
    },
}

fn conditions_text(conditions: &str) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" with {conditions}")
    }
}

/// A rule or defaultBackend the builder refused because an earlier one keeps its place.
#[derive(Clone, Debug)]
pub struct Refused {
    pub host: HostMatch,
    /// The rule's path as given to the builder; empty for a defaultBackend.
    pub path: String,
    /// `None` for a defaultBackend.
    pub kind: Option<PathKind>,
    /// The conditions, as text (`method POST, header x-canary`).
    pub conditions: String,
    pub loser: RouteMeta,
    /// The rule that keeps the place.
    pub owner: RouteMeta,
}

#[derive(Debug, Default)]
struct HostBlock {
    paths: PathIndex,
    /// Serves paths no rule matched (an Ingress's `spec.defaultBackend` for its hosts).
    fallback: Option<Arc<Route>>,
}

impl HostBlock {
    fn lookup(&self, req: &RequestView<'_>) -> Option<&Arc<Route>> {
        self.paths.lookup(req).or(self.fallback.as_ref())
    }
}

#[derive(Debug, Default)]
struct CertIndex {
    exact: HashMap<Box<str>, Arc<Certificate>>,
    wildcard: HashMap<Box<str>, Arc<Certificate>>,
    default: Option<Arc<Certificate>>,
}

/// What a Gateway listener port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ListenerProtocol {
    /// Plain HTTP/1.1, HTTP/2 with prior knowledge, upgrades.
    Http,
    /// TLS, the certificate chosen by SNI among the listener's own.
    Https,
}

/// A Gateway listener port: the connections accepted on `port` are routed by `table`
/// alone, never by the Ingress table that holds it.
#[derive(Debug)]
pub struct Listener {
    /// The port the proxy binds (the internal port, which a Service may map).
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// Its hosts, routes and certificates; a listener's table has no listeners.
    pub table: RoutingTable,
}

/// The table in service, swapped whole by the proxy; readers (requests, TLS handshakes)
/// load it without a lock.
pub type LiveTable = Arc<arc_swap::ArcSwap<RoutingTable>>;

/// The immutable table the proxy routes by.
#[derive(Debug, Default)]
pub struct RoutingTable {
    exact: HashMap<Box<str>, HostBlock>,
    /// Keyed by the suffix after `*.`: `*.example.com` is stored as `example.com`.
    wildcard: HashMap<Box<str>, HostBlock>,
    any: HostBlock,
    routes: usize,
    certs: CertIndex,
    /// Rules and defaultBackends refused because an earlier one holds the same place,
    /// for `explain`; never read by a lookup. At most one per rule added.
    refused: Vec<Refused>,
    /// Gateway listener ports, sorted by port.
    listeners: Vec<Listener>,
    /// A wildcard covers any number of labels (a Gateway listener's table), not one.
    deep_wildcards: bool,
    /// What is believed of clients behind another proxy; `None`: nothing they say.
    forwarded: Option<Box<ForwardedPolicy>>,
    /// Keep-alive and head-size settings in place of the flags'.
    connections: ConnectionSettings,
    /// The Ingress HTTPS port's versions and suites, when narrowed.
    tls_policy: Option<Arc<crate::tls::TlsPolicy>>,
    /// Exact host names served as another exact host (ingress-nginx's `server-alias`):
    /// alias → host. Looked up only when a name has no host of its own.
    aliases: HashMap<Box<str>, Box<str>>,
    /// Exact host names whose TLS connections on the Ingress HTTPS port go, still
    /// encrypted, to a backend (ingress-nginx's `ssl-passthrough`).
    passthrough: HashMap<Box<str>, Arc<Backend>>,
    /// Hosts whose handshakes on the Ingress HTTPS port ask for a client certificate
    /// (ingress-nginx's `auth-tls-*`), exact names, then wildcards by their suffix.
    client_auth: HashMap<Box<str>, Arc<ClientAuth>>,
    client_auth_wildcard: HashMap<Box<str>, Arc<ClientAuth>>,
    /// Increases with every table the controller publishes.
    pub generation: u64,
}

impl RoutingTable {
    /// Finds the route for a request's host (`Host` or `:authority`, any case, port
    /// allowed) and URL path (without the query).
    ///
    /// Rules with conditions (a `Route`'s header, query or method matches) match only a
    /// GET without headers here; the proxy uses [`RoutingTable::route`].
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.route(host, &RequestView::path_only(path))
    }

    /// Finds the route for a request: host block, then the longest matching path whose
    /// conditions the request meets, then the host's fallback.
    pub fn route(&self, host: &str, req: &RequestView<'_>) -> Option<&Arc<Route>> {
        self.block_for(host).lookup(req)
    }

    /// What is believed of clients behind another proxy (the ingress-nginx ConfigMap's
    /// forwarded-header and PROXY protocol keys), when anything is.
    pub fn forwarded(&self) -> Option<&ForwardedPolicy> {
        self.forwarded.as_deref()
    }

    /// The connection settings this table sets in place of the flags' values.
    pub fn connections(&self) -> &ConnectionSettings {
        &self.connections
    }

    /// The protocol versions and TLS 1.2 suites the Ingress HTTPS port offers, when
    /// the table narrows them (`ssl-protocols`, `ssl-ciphers`).
    pub fn tls_policy(&self) -> Option<&Arc<crate::tls::TlsPolicy>> {
        self.tls_policy.as_ref()
    }

    fn block_for(&self, host: &str) -> &HostBlock {
        let host = normalize_host(host);
        if let Some(block) = self.exact.get(host.as_ref()) {
            return block;
        }
        // An alias is an exact name: it comes before wildcards, as in nginx's server_name.
        if !self.aliases.is_empty()
            && let Some(block) = self.aliases.get(host.as_ref()).and_then(|h| self.exact.get(h))
        {
            return block;
        }
        if let Some((_, block)) = wildcard_in(&self.wildcard, &host, self.deep_wildcards) {
            return block;
        }
        &self.any
    }

    /// The certificate for a TLS server name: exact name first, then a wildcard.
    pub fn certificate(&self, server_name: &str) -> Option<&Arc<Certificate>> {
        let name = normalize_host(server_name);
        self.certs
            .exact
            .get(name.as_ref())
            .or_else(|| {
                (!self.aliases.is_empty())
                    .then(|| self.aliases.get(name.as_ref()).and_then(|h| self.certs.exact.get(h)))
                    .flatten()
            })
            .or_else(|| wildcard_in(&self.certs.wildcard, &name, self.deep_wildcards).map(|(_, c)| c))
    }

    /// The backend that TLS connections naming `server_name` are passed through to,
    /// undecrypted, when its host asks for `ssl-passthrough`.
    pub fn passthrough(&self, server_name: &str) -> Option<&Arc<Backend>> {
        if self.passthrough.is_empty() {
            return None;
        }
        self.passthrough.get(normalize_host(server_name).as_ref())
    }

    /// The client certificate authentication of the host a handshake names.
    pub fn client_auth(&self, server_name: &str) -> Option<&Arc<ClientAuth>> {
        if self.client_auth.is_empty() && self.client_auth_wildcard.is_empty() {
            return None;
        }
        let name = normalize_host(server_name);
        self.client_auth
            .get(name.as_ref())
            .or_else(|| wildcard_in(&self.client_auth_wildcard, &name, self.deep_wildcards).map(|(_, a)| a))
    }

    /// Whether any host asks for client certificates: when none does, a handshake is
    /// not looked at before TLS takes it.
    pub fn has_client_auth(&self) -> bool {
        !self.client_auth.is_empty() || !self.client_auth_wildcard.is_empty()
    }

    /// Whether any host is passed through: when none is, a handshake is not looked at
    /// before TLS takes it.
    pub fn has_passthrough(&self) -> bool {
        !self.passthrough.is_empty()
    }

    /// The certificate for handshakes no name matches (`--default-ssl-certificate`).
    pub fn default_certificate(&self) -> Option<&Arc<Certificate>> {
        self.certs.default.as_ref()
    }

    /// Every certificate the table serves, with the host it serves it for: its own, then
    /// its listeners' (a host may come again, once per listener serving it).
    pub fn certificates(&self) -> impl Iterator<Item = (String, &Arc<Certificate>)> {
        self.own_certificates()
            .chain(self.listeners.iter().flat_map(|l| l.table.own_certificates()))
    }

    fn own_certificates(&self) -> impl Iterator<Item = (String, &Arc<Certificate>)> {
        let exact = self.certs.exact.iter().map(|(h, c)| (h.to_string(), c));
        let wild = self.certs.wildcard.iter().map(|(h, c)| (format!("*.{h}"), c));
        exact.chain(wild)
    }

    /// Number of path rules in the table and its listeners (fallbacks not counted).
    pub fn route_count(&self) -> usize {
        self.routes + self.listeners.iter().map(|l| l.table.routes).sum::<usize>()
    }

    /// Every route in the table and its listeners, path rules and fallbacks; a route
    /// serving several hosts or paths comes once for each.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.own_routes()
            .chain(self.listeners.iter().flat_map(|l| l.table.own_routes()))
    }

    /// The routes of this table's own host blocks, without its listeners'.
    fn own_routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.exact
            .values()
            .chain(self.wildcard.values())
            .chain(std::iter::once(&self.any))
            .flat_map(|block| block.paths.routes().chain(block.fallback.iter()))
    }

    /// Every backend the table and its listeners reference, each once.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for route in self.routes() {
            let split = route.action.iter().filter_map(|a| a.backends.as_ref());
            let errors = route
                .action
                .iter()
                .filter_map(|a| a.error_pages.as_ref())
                .map(|p| &p.backend);
            for backend in std::iter::once(&route.backend)
                .chain(split.flat_map(|w| w.backends()))
                .chain(errors)
            {
                if seen.insert(Arc::as_ptr(backend)) {
                    out.push(backend.clone());
                }
            }
        }
        for backend in self.passthrough.values() {
            if seen.insert(Arc::as_ptr(backend)) {
                out.push(backend.clone());
            }
        }
        out
    }

    /// The Gateway listener on `port`, if the table has one.
    pub fn listener(&self, port: u16) -> Option<&Listener> {
        // A handful of listeners at most per proxy in practice, sorted: a binary search
        // on a short slice, no hashing.
        self.listeners
            .binary_search_by_key(&port, |l| l.port)
            .ok()
            .and_then(|i| self.listeners.get(i))
    }

    /// Every Gateway listener of the table, by port ascending.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners.iter()
    }
}

/// The entry of `map` (keyed by the suffix after `*.`) whose wildcard covers `host`,
/// with that suffix: one more label only, or with `deep` any number of them, the
/// longest suffix (the most specific wildcard) first.
/// Sets a vacant entry to `value`; `false`, leaving it, when an earlier one holds it.
fn first_wins<V>(entry: std::collections::hash_map::Entry<'_, Box<str>, V>, value: V) -> bool {
    match entry {
        std::collections::hash_map::Entry::Occupied(_) => false,
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(value);
            true
        }
    }
}

fn wildcard_in<'m, 'h, V>(map: &'m HashMap<Box<str>, V>, host: &'h str, deep: bool) -> Option<(&'h str, &'m V)> {
    let mut rest = host;
    while let Some((_, parent)) = rest.split_once('.') {
        if let Some(v) = map.get(parent) {
            return Some((parent, v));
        }
        if !deep {
            return None;
        }
        rest = parent;
    }
    None
}

/// Builds a [`RoutingTable`]. Add rules in precedence order for ties: the first rule
/// for a (host, path, kind) wins and later ones are refused as duplicates.
#[derive(Debug, Default)]
pub struct TableBuilder {
    table: RoutingTable,
    /// The Gateway listeners' builders by port, with the protocol their first call set.
    listeners: std::collections::BTreeMap<u16, (ListenerProtocol, TableBuilder)>,
}

impl TableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn block_mut(&mut self, host: &HostMatch) -> &mut HostBlock {
        match host {
            HostMatch::Exact(h) => self.table.exact.entry(h.as_str().into()).or_default(),
            HostMatch::Wildcard(suffix) => self.table.wildcard.entry(suffix.as_str().into()).or_default(),
            HostMatch::Any => &mut self.table.any,
        }
    }

    /// Adds one rule; a duplicate (same host, path and kind) is refused and names the
    /// rule that keeps the path.
    pub fn add(&mut self, rule: RouteRule) -> Result<(), RuleError> {
        self.add_with(rule, MatchConditions::default())
    }

    /// Adds one rule that also requires `conditions`. Rules for the same host, path and
    /// kind with different conditions all stay, the most specific tried first; the same
    /// conditions again is a duplicate.
    pub fn add_with(&mut self, rule: RouteRule, conditions: MatchConditions) -> Result<(), RuleError> {
        let block = self.block_mut(&rule.host);
        let text = conditions.to_string();
        if let Some(existing) = block
            .paths
            .insert(&rule.path, rule.kind, conditions, rule.route.clone())?
        {
            self.table.refused.push(Refused {
                host: rule.host.clone(),
                path: rule.path.clone(),
                kind: Some(rule.kind),
                conditions: text.clone(),
                loser: rule.route.meta.clone(),
                owner: existing.meta.clone(),
            });
            return Err(RuleError::Duplicate {
                host: rule.host.to_string(),
                path: rule.path,
                kind: rule.kind,
                conditions: text,
                owner_namespace: existing.meta.namespace.clone(),
                owner: existing.meta.ingress.clone(),
            });
        }
        self.table.routes += 1;
        Ok(())
    }

    /// Serves exact host `alias` with `host`'s rules, fallback and certificate
    /// (ingress-nginx's `server-alias`). Refused, naming the reason, when `alias` has
    /// rules of its own or is already another host's alias: call it once every rule is
    /// in.
    pub fn alias(&mut self, alias: &str, host: &str) -> Result<(), String> {
        let (alias, host) = (normalize_host(alias), normalize_host(host));
        if alias == host {
            return Ok(());
        }
        if self.table.exact.contains_key(alias.as_ref()) {
            return Err(format!("{alias} is a host with rules of its own"));
        }
        if let Some(other) = self.table.aliases.get(alias.as_ref()) {
            return Err(format!("{alias} is already an alias of {other}"));
        }
        self.table.aliases.insert(alias.as_ref().into(), host.as_ref().into());
        Ok(())
    }

    /// Sets the route for paths no rule of `host` matches, unless one is already set.
    /// Returns false when an earlier fallback keeps the host.
    pub fn fallback(&mut self, host: &HostMatch, route: Arc<Route>) -> bool {
        let block = self.block_mut(host);
        if let Some(owner) = &block.fallback {
            let owner = owner.meta.clone();
            self.table.refused.push(Refused {
                host: host.clone(),
                path: String::new(),
                kind: None,
                conditions: String::new(),
                loser: route.meta.clone(),
                owner,
            });
            return false;
        }
        block.fallback = Some(route);
        true
    }

    /// Serves `cert` for TLS handshakes naming `host`, unless a certificate is already
    /// set for it; returns false when an earlier one keeps the host.
    pub fn certificate(&mut self, host: &HostMatch, cert: Arc<Certificate>) -> bool {
        let map = match host {
            HostMatch::Exact(h) => self.table.certs.exact.entry(h.as_str().into()),
            HostMatch::Wildcard(s) => self.table.certs.wildcard.entry(s.as_str().into()),
            HostMatch::Any => return false,
        };
        first_wins(map, cert)
    }

    /// The certificate for handshakes that name no known host.
    pub fn default_certificate(&mut self, cert: Arc<Certificate>) {
        self.table.certs.default = Some(cert);
    }

    /// Gives `host` a block of its own even without rules: requests for it answer 404
    /// instead of reaching the rules of a wider host (a Gateway listener's hostname, whose
    /// requests a wider listener's routes must not serve). Costs a lookup nothing.
    pub fn reserve(&mut self, host: &HostMatch) {
        self.block_mut(host);
    }

    /// Whether any rule or fallback has been added for `host`.
    pub fn has_host(&self, host: &HostMatch) -> bool {
        match host {
            HostMatch::Exact(h) => self.table.exact.contains_key(h.as_str()),
            HostMatch::Wildcard(s) => self.table.wildcard.contains_key(s.as_str()),
            HostMatch::Any => true,
        }
    }

    /// The builder of the Gateway listener on internal `port`: rules, fallbacks and
    /// certificates added to it are served only on connections accepted on that port,
    /// and its default certificate serves the handshakes on that port that name none of
    /// its certificates (without one, the table's default does). The first call for a
    /// port fixes its protocol; later calls return the same builder whatever protocol
    /// they name. A listener's own table has no listeners: calling this on a listener's
    /// builder adds nothing that is served.
    pub fn listener(&mut self, port: u16, protocol: ListenerProtocol) -> &mut TableBuilder {
        &mut self
            .listeners
            .entry(port)
            .or_insert_with(|| (protocol, TableBuilder::new()))
            .1
    }

    /// Passes TLS connections to the Ingress HTTPS port that name exact `host` through
    /// to `backend`, undecrypted, unless an earlier call holds the host; returns false
    /// then.
    pub fn passthrough(&mut self, host: &str, backend: Arc<Backend>) -> bool {
        first_wins(
            self.table.passthrough.entry(normalize_host(host).as_ref().into()),
            backend,
        )
    }

    /// Asks handshakes naming `host` on the Ingress HTTPS port for a client certificate
    /// checked by `auth`, unless an earlier call holds the host; returns false then.
    pub fn client_auth(&mut self, host: &HostMatch, auth: Arc<ClientAuth>) -> bool {
        let entry = match host {
            HostMatch::Exact(h) => self.table.client_auth.entry(h.as_str().into()),
            HostMatch::Wildcard(s) => self.table.client_auth_wildcard.entry(s.as_str().into()),
            HostMatch::Any => return false,
        };
        first_wins(entry, auth)
    }

    /// Sets what is believed of clients behind another proxy, for the whole table.
    pub fn forwarded(&mut self, policy: ForwardedPolicy) {
        self.table.forwarded = Some(Box::new(policy));
    }

    /// Sets connection settings in place of the flags' values, for the whole process.
    pub fn connections(&mut self, settings: ConnectionSettings) {
        self.table.connections = settings;
    }

    /// Narrows the Ingress HTTPS port's protocol versions and TLS 1.2 suites.
    pub fn tls_policy(&mut self, policy: crate::tls::TlsPolicy) {
        self.table.tls_policy = Some(Arc::new(policy));
    }

    pub fn build(self, generation: u64) -> RoutingTable {
        let TableBuilder { mut table, listeners } = self;
        table.generation = generation;
        for block in table.exact.values_mut().chain(table.wildcard.values_mut()) {
            block.paths.finish();
        }
        table.any.paths.finish();
        // BTreeMap order: sorted by port, as `RoutingTable::listener` searches.
        table.listeners = listeners
            .into_iter()
            .map(|(port, (protocol, mut builder))| {
                if !builder.listeners.is_empty() {
                    tracing::warn!(port, "listeners nested in a listener are not served");
                    builder.listeners.clear();
                }
                let mut table = builder.build(generation);
                table.deep_wildcards = true;
                Listener { port, protocol, table }
            })
            .collect();
        table
    }
}

#[cfg(test)]
mod tests;
