//! What a `Route` rule does besides choosing a backend: filters (header changes,
//! rewrites, redirects: their types live with their behaviour in [`crate::filter`]),
//! the backends it splits over, balancing, timeouts and retries. Ingress routes have
//! none of it.
//!
//! Every value here was parsed and checked by the controller; the proxy applies it
//! without interpreting any user text.

use std::time::Duration;

use super::WeightedBackends;
pub use super::error_pages::ErrorPages;
pub use crate::filter::{
    BasicAuth, Cidr, ConnLimit, ConnLimitSpec, Cors, CorsMode, CorsOrigins, ExternalAuth, HeaderModifier, PathModifier,
    Rate, RateLimitSpec, Redirect, RegexRewrite, ReturnRedirect, SourceRange, UrlRewrite,
};

/// The extras of one `Route` match, applied by the proxy's phases.
#[derive(Clone, Debug, Default)]
pub struct RouteAction {
    /// Applied in the upstream-request phase, after the forwarded headers.
    pub request_headers: HeaderModifier,
    /// Applied in the upstream-response phase.
    pub response_headers: HeaderModifier,
    pub rewrite: Option<UrlRewrite>,
    /// Answered in the route phase; nothing is sent to a backend.
    pub redirect: Option<Redirect>,
    /// A path rewritten from the rule path's capture groups (ingress-nginx's
    /// `rewrite-target`), after `rewrite`.
    pub regex_rewrite: Option<RegexRewrite>,
    /// A redirect to one fixed URL (ingress-nginx's `permanent-redirect`), answered
    /// before any other filter runs.
    pub return_redirect: Option<ReturnRedirect>,
    /// Which client addresses are served (ingress-nginx's `whitelist-source-range`
    /// and `denylist-source-range`); checked after redirects, as nginx's access phase.
    pub source_range: Option<SourceRange>,
    /// ingress-nginx's `limit-rps` / `limit-rpm`: checked before the source ranges, as
    /// nginx's preaccess phase comes before its access phase.
    pub rate_limit: Option<RateLimitSpec>,
    /// ingress-nginx's `auth-type: basic`: checked after the source ranges, as nginx's
    /// access module runs before its auth_basic module. Shared, so that the passwords it
    /// has verified are remembered by every path of the Ingress.
    pub basic_auth: Option<std::sync::Arc<BasicAuth>>,
    /// ingress-nginx's `auth-url`: asked by the proxy after the route phase's filters
    /// (nginx's auth_request runs last in its access phase).
    pub external_auth: Option<std::sync::Arc<ExternalAuth>>,
    /// ingress-nginx's `enable-cors` or Gateway API's `CORS` filter: preflights
    /// answered here, `Access-Control-*` headers on answers.
    pub cors: Option<Cors>,
    /// Several backends with weights; `None` sends everything to [`super::Route::backend`].
    pub backends: Option<std::sync::Arc<WeightedBackends>>,
    pub balance: Balance,
    pub timeouts: Timeouts,
    pub retry: Option<RetryPolicy>,
    /// ingress-nginx's `custom-http-errors` with its `default-backend`: answers with
    /// these codes are replaced by the error backend's.
    pub error_pages: Option<std::sync::Arc<ErrorPages>>,
    /// Client certificate authentication (ingress-nginx's `auth-tls-*`): the host's,
    /// the same `Arc` as [`super::TableBuilder::client_auth`] was given.
    pub client_auth: Option<std::sync::Arc<crate::tls::ClientAuth>>,
    /// ingress-nginx's `limit-connections`: requests in flight per client address.
    pub conn_limit: Option<std::sync::Arc<crate::filter::ConnLimit>>,
}

/// How a rule spreads requests over the endpoints of a backend; the choosing is
/// [`crate::balance`]'s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    /// Power of two choices on requests in flight.
    LeastRequest,
    /// Rendezvous hashing on a request key.
    ConsistentHash(HashOn),
}

/// What consistent hashing keys on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    Header(http::HeaderName),
    Cookie(String),
    ClientIp,
    /// Text and request variables joined, as nginx evaluates a complex value such as
    /// ingress-nginx's `upstream-hash-by: "$request_uri"` or `"$host$uri"`. A variable
    /// the request lacks adds nothing.
    Joined(Vec<HashPart>),
}

/// A [`HashOn::Joined`] key in nginx's notation (`$host$request_uri`), for `explain`.
pub fn describe_key(parts: &[HashPart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            HashPart::Text(t) => t.clone(),
            HashPart::RequestUri => "$request_uri".into(),
            HashPart::Uri => "$uri".into(),
            HashPart::Args => "$args".into(),
            HashPart::Arg(n) => format!("$arg_{n}"),
            HashPart::Host => "$host".into(),
            HashPart::Scheme => "$scheme".into(),
            HashPart::Method => "$request_method".into(),
            HashPart::ClientIp => "$remote_addr".into(),
            HashPart::Header(h) => format!("$http_{}", h.as_str().replace('-', "_")),
            HashPart::Cookie(c) => format!("$cookie_{c}"),
        })
        .collect()
}

/// One piece of a [`HashOn::Joined`] key; each variable as nginx defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashPart {
    Text(String),
    /// `$request_uri`: the target as the client sent it, path and query.
    RequestUri,
    /// `$uri`: the path, without the query.
    Uri,
    /// `$args`, `$query_string`: the query, without `?`.
    Args,
    /// `$arg_NAME`: the first value of query parameter NAME.
    Arg(String),
    /// `$host`: the request's host, lower case, without a port.
    Host,
    /// `$scheme`: `http` or `https`.
    Scheme,
    /// `$request_method`.
    Method,
    /// `$remote_addr`, `$binary_remote_addr`: the client address.
    ClientIp,
    /// `$http_NAME`: the request header.
    Header(http::HeaderName),
    /// `$cookie_NAME`: the request cookie.
    Cookie(String),
}

/// A rule's policy and its cookie affinity, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Balance {
    pub policy: LbPolicy,
    /// The affinity cookie: the first response sets it naming the endpoint (by its
    /// hash, never its address); later requests carrying it go back to that endpoint
    /// while it is ready.
    pub affinity_cookie: Option<AffinityCookie>,
}

/// The affinity cookie's name and attributes (ingress-nginx's `session-cookie-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AffinityCookie {
    pub name: String,
    /// `Path`; `None` leaves it out.
    pub path: Option<String>,
    pub domain: Option<String>,
    /// `Max-Age`, in seconds.
    pub max_age: Option<i64>,
    /// `Expires`, this many seconds after the response.
    pub expires: Option<i64>,
    /// `Secure`; `None`: when the request is HTTPS.
    pub secure: Option<bool>,
    /// `SameSite`'s value, as given (`None`, `Lax`, `Strict`).
    pub same_site: Option<String>,
    /// `SameSite=None` is left out for clients known to reject such cookies.
    pub conditional_same_site_none: bool,
}

impl AffinityCookie {
    /// A cookie `name` with no attributes but `HttpOnly`.
    pub fn named(name: impl Into<String>) -> AffinityCookie {
        AffinityCookie {
            name: name.into(),
            ..AffinityCookie::default()
        }
    }
}

/// Gateway API `timeouts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the request's arrival to the response headers, retries included; 504 beyond.
    pub request: Option<Duration>,
    /// One attempt, from sending to the response headers (instead of
    /// `--upstream-timeout`); 504 beyond.
    pub backend_request: Option<Duration>,
}

/// When a request is sent again, and where.
///
/// A request is replayable only when it has no body (or an empty one): a streamed body
/// has gone to the first endpoint and is not kept. Methods that are not idempotent
/// (POST, PATCH) are never retried once sent unless `non_idempotent` says so. A failed
/// connect is always retried (nothing was sent), as for every route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    pub on_connect_failure: bool,
    /// The connection broke after the request was sent, before response headers.
    pub on_reset: bool,
    /// An attempt exceeded its timeout.
    pub on_timeout: bool,
    /// Response status codes that are retried.
    pub codes: Vec<u16>,
    /// Timeout of each attempt; overrides `timeouts.backendRequest`.
    pub per_try_timeout: Option<Duration>,
    pub non_idempotent: bool,
    /// The least time between a failed attempt and the retry it calls for (Gateway
    /// API's `retry.backoff`); none: at once.
    pub backoff: Option<Duration>,
    /// Once every endpoint has been tried, retries go to them again (Gateway API: a
    /// backend with one endpoint is retried on it); otherwise only to endpoints not
    /// tried yet, as nginx's `proxy_next_upstream` does.
    pub reuse_endpoints: bool,
}
