//! Filters: what a route does to the requests it serves besides choosing a backend,
//! each hooked into the phases it belongs to.
//!
//! ```text
//!  route phase ── request():          may answer by itself (HTTPS redirect, a redirect, 413)
//!  upstream request ── upstream_request(): changes what the endpoint sees (headers, rewrite)
//!  response ── response():             changes what the client sees (headers, HSTS)
//! ```
//!
//! A route's filters are sorted into a [`FilterChain`] when the table is built: one
//! list per phase, so a phase a route has no filter for costs an empty-slice check, and
//! a route without filters pays nothing. Filters hold only values the controller has
//! parsed and checked; none interprets user text at request time.
//!
//! Filters know nothing of the routing table: the table composes each route's chain
//! from the route's model (`table::Route::new`).
//!
//! Adding a filter: a file here with its data and a type implementing [`Filter`] for
//! the phases it needs, a constructor function below, the field that asks for it in
//! the route's model (`table/action.rs`), and one line in `table::Route::new`.

mod basic_auth;
mod body_limit;
mod client_cert;
mod conn_limit;
mod cors;
mod external_auth;
mod headers;
mod hsts;
mod https_redirect;
mod rate_limit;
mod redirect;
mod regex_rewrite;
mod return_redirect;
mod rewrite;
mod source_range;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};

use crate::config::ProxyConfig;

pub use basic_auth::{BadLine, BasicAuth, Credentials, InvalidRealm, MAX_BCRYPT_COST};
pub use conn_limit::{ConnLimit, ConnLimitSpec, ConnSlot};
pub use cors::{Cors, CorsMode, CorsOrigins};
pub use external_auth::{
    AuthOutcome, AuthUrl, ExternalAuth, InvalidAuthUrl, InvalidSignin, SigninPart, signin_template,
};
pub use headers::HeaderModifier;
pub use hsts::DEFAULT_HSTS;
pub use rate_limit::{Rate, RateLimit, RateLimitSpec};
pub use redirect::Redirect;
pub use regex_rewrite::RegexRewrite;
pub use return_redirect::ReturnRedirect;
pub use rewrite::{PathModifier, UrlRewrite};
pub use source_range::{Cidr, InvalidCidr, SourceRange};

/// The phases a filter can hook.
pub trait Filter: Send + Sync + fmt::Debug {
    /// The route phase, before anything is sent: `Some` answers the request here and
    /// nothing reaches a backend.
    fn request(&self, _req: &RequestHead<'_>) -> Option<Answer> {
        None
    }

    /// The upstream-request phase: the request as the endpoint will see it.
    fn upstream_request(&self, _req: &mut UpstreamHead<'_>) {}

    /// The response phase: the head the client gets, the proxy's own answers included.
    fn response(&self, _resp: &mut ResponseHead<'_>) {}

    /// Which of the phases above it hooks; the others are never called.
    fn phases(&self) -> Phases;

    /// The header names its `upstream_request` or `response` may add, change or
    /// remove, when they are fixed when the table is built; `None`, the default, is any
    /// name. A route whose filters all say keeps the proxy's fast paths: forwarded fields
    /// written straight into the request head, an endpoint's header lines passed on
    /// without a header map.
    fn header_names(&self) -> Option<Vec<HeaderName>> {
        None
    }
}

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The fields the proxy adds to every request to tell the endpoint of the client, in
/// the order the proxy's values for them come in. A route with an upstream-request
/// filter that may change one of them gets them in the request's map, before the
/// filters run.
pub static FORWARDED: [HeaderName; 6] = [
    X_FORWARDED_FOR,
    X_REAL_IP,
    X_FORWARDED_PROTO,
    X_FORWARDED_PORT,
    X_REQUEST_ID,
    X_FORWARDED_HOST,
];

/// The filters this module has, to compose a chain from (the table does, per route).
pub fn client_cert(auth: Arc<crate::tls::ClientAuth>) -> Arc<dyn Filter> {
    Arc::new(client_cert::ClientCertCheck(auth))
}

pub fn https_redirect(status: http::StatusCode) -> Arc<dyn Filter> {
    Arc::new(https_redirect::HttpsRedirect(status))
}

pub fn redirect(r: Redirect) -> Arc<dyn Filter> {
    Arc::new(redirect::RequestRedirect(r))
}

pub fn return_redirect(r: ReturnRedirect) -> Arc<dyn Filter> {
    Arc::new(r)
}

pub fn regex_rewrite(r: RegexRewrite) -> Arc<dyn Filter> {
    Arc::new(r)
}

pub fn cors(c: Cors) -> Arc<dyn Filter> {
    Arc::new(c)
}

pub fn rate_limit(spec: &RateLimitSpec) -> Arc<dyn Filter> {
    Arc::new(RateLimit::new(spec))
}

pub fn source_range(r: SourceRange) -> Arc<dyn Filter> {
    Arc::new(r)
}

pub fn basic_auth(a: Arc<BasicAuth>) -> Arc<dyn Filter> {
    a
}

pub fn body_limit(limit: u64) -> Arc<dyn Filter> {
    Arc::new(body_limit::BodyLimit(limit))
}

pub fn request_headers(m: HeaderModifier) -> Arc<dyn Filter> {
    Arc::new(headers::RequestHeaders(m))
}

pub fn rewrite(r: UrlRewrite) -> Arc<dyn Filter> {
    Arc::new(rewrite::Rewrite(r))
}

pub fn response_headers(m: HeaderModifier) -> Arc<dyn Filter> {
    Arc::new(headers::ResponseHeaders(m))
}

pub fn hsts(value: HeaderValue) -> Arc<dyn Filter> {
    Arc::new(hsts::Hsts(value))
}

/// A set of phases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    pub request: bool,
    pub upstream_request: bool,
    pub response: bool,
    /// The response phase reads the request's `Origin` ([`ResponseHead::origin`]),
    /// which the proxy then keeps for routes with such a filter only.
    pub origin: bool,
}

impl Phases {
    pub const REQUEST: Phases = Phases {
        request: true,
        upstream_request: false,
        response: false,
        origin: false,
    };
    pub const UPSTREAM_REQUEST: Phases = Phases {
        request: false,
        upstream_request: true,
        response: false,
        origin: false,
    };
    pub const RESPONSE: Phases = Phases {
        request: false,
        upstream_request: false,
        response: true,
        origin: false,
    };
}

/// What the route phase reads of a request.
#[derive(Debug)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The host the request named (`Host` or `:authority`), as sent.
    pub host: &'a str,
    /// It came over TLS.
    pub tls: bool,
    /// The address the connection came from.
    pub client: IpAddr,
    pub cfg: &'a ProxyConfig,
    /// The connection's client certificate, when its host asked for one.
    pub client_cert: Option<&'a crate::tls::ClientCert>,
}

/// A request answered by a filter.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A response without a body: a redirect, or a refusal such as a 401 or a 429.
    Status { status: StatusCode, headers: HeaderMap },
    /// The declared body is over the limit: 413, the body drained, the connection closed.
    PayloadTooLarge(u64),
}

/// What the upstream-request phase may change.
#[derive(Debug)]
pub struct UpstreamHead<'a> {
    pub headers: &'a mut HeaderMap,
    /// The request's URL as the client sent it.
    pub uri: &'a Uri,
    /// A new `Host` (`:authority`) for the endpoint.
    pub host: Option<HeaderValue>,
    /// A new path and query for the endpoint.
    pub path_and_query: Option<String>,
    /// The request came over TLS.
    pub tls: bool,
    /// The connection's client certificate, when its host asked for one.
    pub client_cert: Option<&'a crate::tls::ClientCert>,
}

/// What the response phase may change.
#[derive(Debug)]
pub struct ResponseHead<'a> {
    pub status: StatusCode,
    pub headers: &'a mut HeaderMap,
    /// The client's connection is TLS.
    pub tls: bool,
    /// The response came from an endpoint (not the proxy's own redirect or error).
    pub from_upstream: bool,
    /// The request's `Origin`, when a filter of the route asks for it ([`Phases::origin`]).
    pub origin: Option<&'a HeaderValue>,
}

/// A route's filters, sorted by phase.
#[derive(Debug)]
pub struct FilterChain {
    request: Box<[Arc<dyn Filter>]>,
    upstream_request: Box<[Arc<dyn Filter>]>,
    response: Box<[Arc<dyn Filter>]>,
    keeps_origin: bool,
    /// An upstream-request filter may change a [`FORWARDED`] field.
    changes_forwarded: bool,
    /// The names the response filters may change, when all of them say
    /// ([`Filter::header_names`]): an endpoint's header lines without any of these may
    /// pass through as they came. Empty without response filters.
    response_names: Option<Box<[Box<str>]>>,
}

impl Default for FilterChain {
    fn default() -> FilterChain {
        FilterChain::of(Vec::new())
    }
}

impl FilterChain {
    /// A chain of `filters`, each in the phases it hooks, in the given order.
    pub fn of(filters: Vec<Arc<dyn Filter>>) -> FilterChain {
        let pick = |f: fn(Phases) -> bool| -> Box<[Arc<dyn Filter>]> {
            filters.iter().filter(|x| f(x.phases())).cloned().collect()
        };
        let upstream_request = pick(|p| p.upstream_request);
        let response = pick(|p| p.response);
        // The names a phase's filters may change, when every one of them says.
        let names = |phase: &[Arc<dyn Filter>]| -> Option<Vec<HeaderName>> {
            phase.iter().try_fold(Vec::new(), |mut all, f| {
                all.extend(f.header_names()?);
                Some(all)
            })
        };
        let changes_forwarded =
            names(&upstream_request).is_none_or(|names| names.iter().any(|n| FORWARDED.contains(n)));
        FilterChain {
            request: pick(|p| p.request),
            keeps_origin: filters.iter().any(|f| f.phases().origin),
            changes_forwarded,
            response_names: names(&response).map(|all| all.iter().map(|n| n.as_str().into()).collect()),
            upstream_request,
            response,
        }
    }

    /// The route phase: the first filter that answers wins.
    pub fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        self.request.iter().find_map(|f| f.request(req))
    }

    pub fn upstream_request(&self, req: &mut UpstreamHead<'_>) {
        for f in &self.upstream_request {
            f.upstream_request(req);
        }
    }

    pub fn response(&self, resp: &mut ResponseHead<'_>) {
        for f in &self.response {
            f.response(resp);
        }
    }

    /// Counts `names` among those the upstream-request phase may change: header changes
    /// the proxy makes outside the chain (a weighted split's per-backend ones).
    pub fn also_changes(mut self, names: impl IntoIterator<Item = HeaderName>) -> FilterChain {
        self.changes_forwarded |= names.into_iter().any(|n| FORWARDED.contains(&n));
        self
    }

    /// Whether a filter may change a [`FORWARDED`] field (the proxy then writes them
    /// into the request's map before the filters run, not straight into the head).
    pub fn changes_forwarded(&self) -> bool {
        self.changes_forwarded
    }

    /// Whether the response phase needs the request's `Origin`.
    pub fn keeps_origin(&self) -> bool {
        self.keeps_origin
    }

    /// Whether any filter changes response heads.
    pub fn changes_response(&self) -> bool {
        !self.response.is_empty()
    }

    /// The header names the response filters may change, when known (empty when there
    /// are none): an endpoint's head without any of them can pass through as it came,
    /// the filters then working on the proxy's own fields alone. `None`: a filter may
    /// change any field, so every head is read into a map.
    pub fn response_names(&self) -> Option<&[Box<str>]> {
        self.response_names.as_deref()
    }

    /// Every filter, for `explain`: request-phase ones first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Filter>> {
        self.request.iter().chain(&self.upstream_request).chain(&self.response)
    }
}

#[cfg(test)]
mod tests {
    use http::header::{HOST, LOCATION, STRICT_TRANSPORT_SECURITY};

    use super::*;

    fn head<'a>(uri: &'a Uri, headers: &'a HeaderMap, tls: bool, cfg: &'a ProxyConfig) -> RequestHead<'a> {
        RequestHead {
            method: &Method::GET,
            uri,
            headers,
            host: "Shop.Example.com:8080",
            tls,
            client: IpAddr::from([192, 0, 2, 1]),
            cfg,
            client_cert: None,
        }
    }

    /// A route without filters has nothing to run in any phase.
    #[test]
    fn empty_chain_changes_nothing() {
        let chain = FilterChain::default();
        assert!(!chain.changes_forwarded() && !chain.changes_response());
        assert_eq!(
            chain.response_names(),
            Some(&[][..]),
            "an endpoint's head passes through"
        );
        let (uri, headers, cfg) = ("/a".parse().unwrap(), HeaderMap::new(), ProxyConfig::default());
        assert_eq!(chain.request(&head(&uri, &headers, false, &cfg)), None);
    }

    /// Each filter runs in its own phases only, in the order the chain was given.
    #[test]
    fn filters_are_sorted_into_their_phases() {
        let mut set = HeaderModifier::default();
        set.set.push((HOST, HeaderValue::from_static("x")));
        let chain = FilterChain::of(vec![
            https_redirect(StatusCode::PERMANENT_REDIRECT),
            request_headers(set),
            hsts(DEFAULT_HSTS.clone()),
        ]);
        assert_eq!(chain.request.len(), 1);
        assert_eq!(chain.upstream_request.len(), 1);
        assert_eq!(chain.response.len(), 1);
        assert_eq!(chain.iter().count(), 3);
    }

    /// The fast paths stay open to filters whose fields are known and are not the
    /// proxy's own: forwarded fields straight into the head, an endpoint's lines as they
    /// came unless one is a field a response filter changes.
    #[test]
    fn filters_that_name_their_fields_keep_the_fast_paths() {
        let modifier = |name: &'static str| {
            let mut m = HeaderModifier::default();
            m.set
                .push((HeaderName::from_static(name), HeaderValue::from_static("1")));
            m
        };
        let chain = FilterChain::of(vec![
            request_headers(modifier("x-env")),
            rewrite(UrlRewrite {
                hostname: Some(HeaderValue::from_static("b.example")),
                path: None,
            }),
            hsts(DEFAULT_HSTS.clone()),
            response_headers(modifier("x-served-by")),
        ]);
        assert!(!chain.changes_forwarded());
        let names: Vec<&str> = chain.response_names().unwrap().iter().map(|n| &**n).collect();
        assert_eq!(names, ["strict-transport-security", "x-served-by"]);
        // A filter that sets a forwarded field gets them in the map before it runs.
        assert!(FilterChain::of(vec![request_headers(modifier("x-forwarded-for"))]).changes_forwarded());
        // A filter that does not name its fields reads every head into a map.
        #[derive(Debug)]
        struct AnyField;
        impl Filter for AnyField {
            fn phases(&self) -> Phases {
                Phases::RESPONSE
            }
        }
        let chain = FilterChain::of(vec![hsts(DEFAULT_HSTS.clone()), Arc::new(AnyField)]);
        assert_eq!(chain.response_names(), None);
    }

    /// The HTTPS redirect answers plain HTTP only, with the host lower-cased, the port
    /// replaced and the path and query kept.
    #[test]
    fn https_redirect_answers_plain_http_only() {
        let chain = FilterChain::of(vec![https_redirect(StatusCode::PERMANENT_REDIRECT), body_limit(10)]);
        let (uri, headers, cfg) = ("/a?b=1".parse().unwrap(), HeaderMap::new(), ProxyConfig::default());
        let Some(Answer::Status { status, headers: h }) = chain.request(&head(&uri, &headers, false, &cfg)) else {
            panic!("no redirect");
        };
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(h[LOCATION], "https://shop.example.com/a?b=1");
        assert_eq!(chain.request(&head(&uri, &headers, true, &cfg)), None);
        // The ConfigMap's `http-redirect-code` picks the status.
        let chain = FilterChain::of(vec![https_redirect(StatusCode::MOVED_PERMANENTLY)]);
        let Some(Answer::Status { status, .. }) = chain.request(&head(&uri, &headers, false, &cfg)) else {
            panic!("no redirect");
        };
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    }

    /// A declared body over the limit is refused before anything is sent.
    #[test]
    fn body_limit_refuses_declared_length() {
        let chain = FilterChain::of(vec![body_limit(10)]);
        let (uri, cfg) = ("/".parse().unwrap(), ProxyConfig::default());
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert_eq!(
            chain.request(&head(&uri, &headers, true, &cfg)),
            Some(Answer::PayloadTooLarge(10))
        );
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert_eq!(chain.request(&head(&uri, &headers, true, &cfg)), None);
    }

    /// HSTS goes on every HTTPS answer, the proxy's own included; response header
    /// changes apply to what an endpoint answered only.
    #[test]
    fn response_phase() {
        let mut add = HeaderModifier::default();
        add.add.push((
            http::header::HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        ));
        let chain = FilterChain::of(vec![response_headers(add), hsts(DEFAULT_HSTS.clone())]);
        for (tls, from_upstream) in [(true, true), (true, false), (false, true)] {
            let mut headers = HeaderMap::new();
            chain.response(&mut ResponseHead {
                status: StatusCode::OK,
                headers: &mut headers,
                tls,
                from_upstream,
                origin: None,
            });
            assert_eq!(headers.contains_key(STRICT_TRANSPORT_SECURITY), tls);
            assert_eq!(headers.contains_key("x-a"), from_upstream);
        }
    }
}
