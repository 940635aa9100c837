//! The route model every route kind lowers to, and its one lowering into the table.
//!
//! ```text
//!  Route (portico.dev) ──┐
//!  HTTPRoute ────────────┼─ compile/translate/<kind>.rs ─▶ model::Rule ─▶ lower() ─▶ TableBuilder
//!  GRPCRoute ────────────┘      (reads the object,            (hosts × matches, filters,
//!                                resolves backends)             weighted backends)
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
    Backend, Balance, Cors, HeaderModifier, HostMatch, MatchConditions, ObjectKind, PathKind, RateLimitSpec,
    RetryPolicy, RoutePolicy, SourceRange, Timeouts,
};

pub use lower::{LowerError, lower};

/// Which object and rule a [`Rule`] came from: what metrics, logs and `explain` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
    /// Index in the object's `spec.rules`.
    pub rule: usize,
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
    /// Index in the rule's `matches` (0 for a rule without matches).
    pub index: usize,
    pub kind: PathKind,
    /// As written (a prefix may end in `/`).
    pub path: String,
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
}

/// A resolved backendRef and its share of the rule's requests.
#[derive(Clone, Debug)]
pub struct WeightedBackend {
    pub backend: Arc<Backend>,
    /// The Service's name, for the route's metric label.
    pub service: String,
    pub weight: u32,
}

/// One rule of one route object, ready to lower.
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
}
