//! The route model every route kind lowers to, and its one lowering into the table.
//!
//! ```text
//!  Ingress ──────────────┐
//!  Route (portico.dev) ──┤
//!  HTTPRoute ────────────┼─ compile/translate/<kind>.rs ─▶ model::Rule ─▶ lower() ─▶ TableBuilder
//!  GRPCRoute ────────────┘      (reads the object,            (hosts × matches, filters,
//!                                resolves backends)             weighted backends, canary;
//!                                                               lower_fallback(): a host's
//!                                                               fallback)
//! ```
//!
//! A [`Rule`] is one rule of one object, already checked and resolved: hosts parsed,
//! matches turned into table conditions, filters typed, backendRefs resolved to shared
//! backends with their weights. Nothing here reads Kubernetes objects, a clock or the
//! network; a translation is the only place that knows its kind's field names, and
//! [`lower`] the only place that knows how a rule becomes table entries, so a new route
//! kind is one translation file and no copy of the lowering.

mod lower;

use std::sync::Arc;

use http::StatusCode;
use http::header::HeaderValue;
use portico_dataplane::table::{
    Backend, Balance, BasicAuth, ConnLimit, Cors, ErrorPages, ExternalAuth, HeaderModifier, HostMatch, MatchConditions,
    ObjectKind, PathKind, RateLimitSpec, RegexRewrite, RetryPolicy, ReturnRedirect, RoutePolicy, SourceRange, Timeouts,
};
use portico_dataplane::tls::ClientAuth;

pub use lower::{LowerError, Lowered, lower, lower_fallback};

/// Which object and rule a [`Rule`] came from: what metrics, logs and `explain` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
    /// Index in the object's `spec.rules`; `None` for what no rule says (an Ingress's
    /// `defaultBackend`, a redirect an annotation asks for).
    pub rule: Option<usize>,
}

/// A host the rule serves, parsed, and as it is written for `explain` and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub host: HostMatch,
    pub written: String,
}

impl Host {
    /// Every host: a rule without hostnames.
    pub fn any() -> Host {
        Host {
            host: HostMatch::Any,
            written: String::new(),
        }
    }
}

/// One match of the rule: a path and the conditions beyond it.
#[derive(Clone, Debug)]
pub struct Match {
    /// Index in the rule's `matches` (0 for a rule without matches), or in an
    /// Ingress rule's `http.paths`; `None` for a match no object writes.
    pub index: Option<usize>,
    pub kind: PathKind,
    /// As written (a prefix may end in `/`).
    pub path: String,
    /// The path the table indexes when it is not the one written: an Ingress's empty
    /// ImplementationSpecific path serves `/`, and on a regex host it is
    /// ingress-nginx's regex location.
    pub table_path: Option<String>,
    pub conditions: MatchConditions,
}

/// A path replacement, before the match it applies to is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRewrite {
    /// The whole path becomes this.
    Full(String),
    /// The matched `PathPrefix` becomes this; the rest stays.
    Prefix(String),
}

/// A redirect answered instead of proxying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectTo {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathRewrite>,
    pub status: StatusCode,
}

/// What the rule does to a request and its response.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub request_headers: HeaderModifier,
    pub response_headers: HeaderModifier,
    pub rewrite_host: Option<HeaderValue>,
    pub rewrite_path: Option<PathRewrite>,
    pub redirect: Option<RedirectTo>,
    /// Which client addresses the rule serves; the others get 403.
    pub source_range: Option<SourceRange>,
    /// Cross-origin requests: preflights answered, `Access-Control-*` on answers.
    pub cors: Option<Cors>,
    /// Requests per client address over time; beyond, the spec's status.
    pub rate_limit: Option<RateLimitSpec>,
    /// The path rewritten from the rule path's capture groups (ingress-nginx's
    /// `rewrite-target`).
    pub regex_rewrite: Option<RegexRewrite>,
    /// One fixed URL answered to every request (`permanent-redirect`,
    /// `temporal-redirect`).
    pub return_redirect: Option<ReturnRedirect>,
    /// Requests in flight per client address (`limit-connections`).
    pub conn_limit: Option<Arc<ConnLimit>>,
    /// Passwords (`auth-type: basic`); shared by every rule of the object, which then
    /// remember the same verified passwords.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// A subrequest that allows the request (`auth-url`).
    pub external_auth: Option<Arc<ExternalAuth>>,
    /// Answers with these codes replaced by the error backend's
    /// (`custom-http-errors`).
    pub error_pages: Option<Arc<ErrorPages>>,
    /// The host's client certificate authentication (`auth-tls-*`), the same `Arc` the
    /// table's host was given.
    pub client_auth: Option<Arc<ClientAuth>>,
}

/// A resolved backendRef and its share of the rule's requests.
#[derive(Clone, Debug)]
pub struct WeightedBackend {
    pub backend: Arc<Backend>,
    /// The Service's name, for the route's metric label.
    pub service: String,
    pub weight: u32,
    /// Header changes for the requests sent to this backend alone (Gateway API's
    /// `backendRefs[].filters`); empty for none.
    pub request_headers: HeaderModifier,
}

/// One rule of one route object, ready to lower. A rule with no matches is a host's
/// fallback (an Ingress's `defaultBackend`), placed by [`lower_fallback`].
#[derive(Clone, Debug)]
pub struct Rule {
    pub owner: Owner,
    pub hosts: Vec<Host>,
    pub matches: Vec<Match>,
    pub filters: Filters,
    pub backends: Vec<WeightedBackend>,
    pub balance: Balance,
    pub timeouts: Timeouts,
    pub retry: Option<RetryPolicy>,
    pub policy: RoutePolicy,
    /// Another object's backend taking part of each match's requests.
    pub canary: Option<Canary>,
    /// A rule that asks for nothing beyond its backend gets no table action, so it
    /// costs what a bare route does (Ingress paths); otherwise an empty action is
    /// still set.
    pub omit_empty_action: bool,
}

/// ingress-nginx's canary: a canary Ingress's backend takes a share of a path's
/// requests, and the requests a header or cookie sends it.
#[derive(Clone, Debug)]
pub struct Canary {
    /// The canary object (its rule is `None`: it serves another object's path).
    pub owner: Owner,
    pub service: String,
    pub backend: Arc<Backend>,
    /// The canary's share is `weight` of `total` (0: none by weight); the rule's own
    /// (single) backend keeps the rest.
    pub weight: u32,
    pub total: u32,
    /// Tried before the rule's own entry, in this order.
    pub candidates: Vec<CanaryCandidate>,
}

/// Requests matching `conditions` go to the canary, or, with `to_main`, to the rule's
/// own backend (a header or cookie saying `never`).
#[derive(Clone, Debug)]
pub struct CanaryCandidate {
    pub conditions: MatchConditions,
    pub to_main: bool,
}
