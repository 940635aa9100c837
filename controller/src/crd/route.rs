//! The `Route` types. Field names follow Gateway API's HTTPRoute where it has one.
//!
//! Every list and string has a bound (the API server needs them to cost the CEL rules,
//! and they keep one object from costing the proxy much), and every rule that the
//! schema alone cannot say is a CEL rule with the message a user sees on refusal.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// RFC 9110 token: what a header or cookie name may be made of.
pub const TOKEN_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$";
/// A DNS name, or `*.` and a DNS name.
pub const HOSTNAME_PATTERN: &str = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Gateway API's duration: `10s`, `500ms`, `1m30s`.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";
/// A header value on one line.
pub const HEADER_VALUE_PATTERN: &str = r"^[^\r\n]*$";

/// Routing that Ingress cannot express: header, query and method matches, weighted
/// backends, header changes, rewrites, redirects, timeouts, retries and load balancing.
#[allow(
    clippy::duplicated_attributes,
    reason = "one printcolumn(...) per column repeats type_"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "Route",
    namespaced,
    status = "RouteStatus",
    shortname = "prt",
    category = "portico",
    printcolumn(name = "Hosts", type_ = "string", json_path = ".spec.hostnames"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// Hosts this Route serves: DNS names, or `*.example.com` for exactly one more
    /// label. Empty: every host no other rule names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(pattern(HOSTNAME_PATTERN), length(min = 1, max = 253)))]
    pub hostnames: Vec<String>,
    /// Serves the certificate of a `kubernetes.io/tls` Secret for `hostnames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RouteTls>,
    /// The rules; each is one or more matches and what to do with a matching request.
    #[schemars(length(min = 1, max = 16))]
    pub rules: Vec<RouteRule>,
}

/// TLS for a Route's hostnames.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteTls {
    /// A `kubernetes.io/tls` Secret in the Route's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Matches and what to do with the requests that meet any of them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.filters) && self.filters.exists(f, f.type == 'RequestRedirect') && has(self.backendRefs) && size(self.backendRefs) > 0)").message("a rule with a RequestRedirect filter answers itself; it cannot also have backendRefs"))]
#[x_kube(validation = Rule::new("(has(self.backendRefs) && size(self.backendRefs) > 0) || (has(self.filters) && self.filters.exists(f, f.type == 'RequestRedirect'))").message("a rule needs backendRefs or a RequestRedirect filter"))]
#[x_kube(validation = Rule::new("!has(self.backendRefs) || size(self.backendRefs) == 0 || self.backendRefs.exists(b, !has(b.weight) || b.weight > 0)").message("the weights of backendRefs must add up to more than 0"))]
#[x_kube(validation = Rule::new("!has(self.filters) || !(self.filters.exists(f, f.type == 'RequestRedirect') && self.filters.exists(f, f.type == 'URLRewrite'))").message("RequestRedirect and URLRewrite cannot be used together"))]
#[x_kube(validation = Rule::new("!has(self.filters) || (self.filters.filter(f, f.type == 'RequestRedirect').size() <= 1 && self.filters.filter(f, f.type == 'URLRewrite').size() <= 1 && self.filters.filter(f, f.type == 'RequestHeaderModifier').size() <= 1 && self.filters.filter(f, f.type == 'ResponseHeaderModifier').size() <= 1)").message("each filter type may appear at most once in a rule"))]
#[x_kube(validation = Rule::new("!has(self.filters) || !has(self.matches) || !self.filters.exists(f, (has(f.urlRewrite) && has(f.urlRewrite.path) && f.urlRewrite.path.type == 'ReplacePrefixMatch') || (has(f.requestRedirect) && has(f.requestRedirect.path) && f.requestRedirect.path.type == 'ReplacePrefixMatch')) || self.matches.all(m, !has(m.path) || m.path.type == 'PathPrefix')").message("ReplacePrefixMatch needs every match of the rule to be a PathPrefix match"))]
pub struct RouteRule {
    /// A request matching any one of these is handled by this rule. Empty: every path
    /// (`PathPrefix /`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub matches: Vec<RouteMatch>,
    /// Changes made to the request or response, or a redirect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub filters: Vec<RouteFilter>,
    /// Services that share the rule's traffic by weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub backend_refs: Vec<BackendRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
}

/// One way a request can match. Every condition given must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    /// Default: `PathPrefix /`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub headers: Vec<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub query_params: Vec<QueryParamMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PathMatchType {
    /// The path, byte for byte.
    Exact,
    /// Whole `/`-separated elements: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    #[default]
    PathPrefix,
    /// A regular expression (Rust `regex` syntax, linear time) matching the whole path.
    RegularExpression,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'RegularExpression' || self.value.startsWith('/')").message("path must start with '/'"))]
#[x_kube(validation = Rule::new("self.type == 'RegularExpression' || !(self.value.contains('//') || self.value.contains('/./') || self.value.contains('/../') || self.value.endsWith('/.') || self.value.endsWith('/..'))").message("path must not contain '//', '.' or '..' segments"))]
pub struct PathMatch {
    #[serde(rename = "type", default)]
    pub type_: PathMatchType,
    #[serde(default = "root")]
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

fn root() -> String {
    "/".to_string()
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch {
            type_: PathMatchType::PathPrefix,
            value: root(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ValueMatchType {
    #[default]
    Exact,
    /// A regular expression (Rust `regex` syntax, linear time) matching the whole value.
    RegularExpression,
}

/// A header that must be present with a matching value; names are case-insensitive.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'RegularExpression' || size(self.value) <= 1024").message("a RegularExpression may be at most 1024 characters"))]
pub struct HeaderMatch {
    #[serde(rename = "type", default)]
    pub type_: ValueMatchType,
    #[schemars(pattern(TOKEN_PATTERN), length(min = 1, max = 256))]
    pub name: String,
    #[schemars(pattern(HEADER_VALUE_PATTERN), length(max = 4096))]
    pub value: String,
}

/// A query parameter that must be present with a matching value; names are
/// case-sensitive, and names and values are compared percent-decoded.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'RegularExpression' || size(self.value) <= 1024").message("a RegularExpression may be at most 1024 characters"))]
pub struct QueryParamMatch {
    #[serde(rename = "type", default)]
    pub type_: ValueMatchType,
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[schemars(length(max = 4096))]
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum HttpMethod {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    CONNECT,
    OPTIONS,
    TRACE,
    PATCH,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    RequestRedirect,
}

/// One filter: `type` names it, and the field of that name holds its settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.requestHeaderModifier) == (self.type == 'RequestHeaderModifier')").message("requestHeaderModifier must be set for type RequestHeaderModifier, and only then"))]
#[x_kube(validation = Rule::new("has(self.responseHeaderModifier) == (self.type == 'ResponseHeaderModifier')").message("responseHeaderModifier must be set for type ResponseHeaderModifier, and only then"))]
#[x_kube(validation = Rule::new("has(self.urlRewrite) == (self.type == 'URLRewrite')").message("urlRewrite must be set for type URLRewrite, and only then"))]
#[x_kube(validation = Rule::new("has(self.requestRedirect) == (self.type == 'RequestRedirect')").message("requestRedirect must be set for type RequestRedirect, and only then"))]
pub struct RouteFilter {
    #[serde(rename = "type")]
    pub type_: FilterType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
}

/// Header changes, applied as remove, then set, then add.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Replaces the header's values (adds it when missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub set: Vec<HttpHeader>,
    /// Appends a value, keeping the ones there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub add: Vec<HttpHeader>,
    /// Header names to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(pattern(TOKEN_PATTERN), length(min = 1, max = 256)))]
    pub remove: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.name.lowerAscii() in ['host', 'connection', 'content-length', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'keep-alive', 'proxy-connection'])").message("this header is managed by the proxy and cannot be changed by a filter"))]
pub struct HttpHeader {
    #[schemars(pattern(TOKEN_PATTERN), length(min = 1, max = 256))]
    pub name: String,
    #[schemars(pattern(HEADER_VALUE_PATTERN), length(max = 4096))]
    pub value: String,
}

/// What the backend sees instead of what the client sent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    /// Replaces the `Host` header (`:authority` in HTTP/2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(HOSTNAME_PATTERN), length(min = 1, max = 253))]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PathModifierType {
    /// The whole path becomes `replaceFullPath`.
    ReplaceFullPath,
    /// The matched `PathPrefix` is replaced by `replacePrefixMatch`; the rest is kept.
    ReplacePrefixMatch,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'ReplaceFullPath' ? (has(self.replaceFullPath) && !has(self.replacePrefixMatch)) : (has(self.replacePrefixMatch) && !has(self.replaceFullPath))").message("set replaceFullPath for type ReplaceFullPath, replacePrefixMatch for type ReplacePrefixMatch, and not the other"))]
#[x_kube(validation = Rule::new("(has(self.replaceFullPath) ? self.replaceFullPath : self.replacePrefixMatch).startsWith('/')").message("the replacement path must start with '/'"))]
pub struct PathModifier {
    #[serde(rename = "type")]
    pub type_: PathModifierType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[^\s?#]*$"), length(min = 1, max = 1024))]
    pub replace_full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[^\s?#]*$"), length(min = 1, max = 1024))]
    pub replace_prefix_match: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

/// Answers the request with a redirect; nothing is sent to a backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.statusCode) || self.statusCode in [301, 302, 303, 307, 308]").message("statusCode must be one of 301, 302, 303, 307, 308"))]
pub struct RequestRedirect {
    /// Default: the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    /// Default: the request's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(HOSTNAME_PATTERN), length(min = 1, max = 253))]
    pub hostname: Option<String>,
    /// Default: the scheme's own port when `scheme` is set, else the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Default: the request's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308; default 302.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
}

/// A Service port in the Route's namespace, and its share of the traffic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// The Service's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Service port (its `port`, not the target port).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Share of the rule's requests, relative to the other backendRefs; default 1,
    /// 0 sends none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub weight: Option<i32>,
}

/// Durations as Gateway API writes them: `10s`, `500ms`, `1m30s`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.request) && has(self.backendRequest)) || duration(self.backendRequest) <= duration(self.request)").message("backendRequest must not be longer than request"))]
pub struct Timeouts {
    /// From the request's arrival to the response headers, retries included; 504 beyond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub request: Option<String>,
    /// Each attempt, from sending to the response headers (instead of
    /// `--upstream-timeout`); 504 beyond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub backend_request: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RetryOn {
    /// The connection to the endpoint could not be made (always retried once anyway).
    ConnectFailure,
    /// The connection broke after the request was sent, before the response headers.
    Reset,
    /// An attempt took longer than its timeout.
    Timeout,
}

/// Sends a failed request again to another endpoint.
///
/// Only requests without a body are replayed once sent (a streamed body is not kept),
/// and only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) unless
/// `retryNonIdempotent` is true.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    /// Retries after the first attempt; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 5))]
    pub attempts: Option<i32>,
    /// Failures that are retried; default ConnectFailure and Reset. (Not `on`, which
    /// YAML 1.1 readers such as kubectl take for `true`.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub retry_on: Vec<RetryOn>,
    /// Response status codes that are retried, like 502, 503.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 400, max = 599)))]
    pub codes: Vec<i32>,
    /// Timeout of each attempt (overrides timeouts.backendRequest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub per_try_timeout: Option<String>,
    /// Also retry POST and PATCH (bodiless ones only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry_non_idempotent: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LoadBalancerType {
    #[default]
    RoundRobin,
    /// Power of two choices: of two random endpoints, the one with fewer requests in flight.
    LeastRequest,
    /// The same key goes to the same endpoint while it stays ready.
    ConsistentHash,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(self.type == 'ConsistentHash') == has(self.consistentHash)").message("consistentHash must be set for type ConsistentHash, and only then"))]
pub struct LoadBalancer {
    #[serde(rename = "type", default)]
    pub type_: LoadBalancerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
}

/// The key: exactly one of a header, a cookie or the client address. Requests
/// without the header or cookie are balanced round robin.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.header), has(self.cookie), has(self.clientIP) && self.clientIP].exists_one(x, x)").message("set exactly one of header, cookie or clientIP: true"))]
pub struct ConsistentHash {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(TOKEN_PATTERN), length(min = 1, max = 256))]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(TOKEN_PATTERN), length(min = 1, max = 256))]
    pub cookie: Option<String>,
    #[serde(rename = "clientIP", default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<bool>,
}

/// Cookie session affinity: the first response sets a cookie naming the endpoint
/// (by a hash, never its address); later requests carrying it go to that endpoint
/// while it is ready.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    #[schemars(pattern(TOKEN_PATTERN), length(min = 1, max = 64))]
    pub cookie_name: String,
}

/// What Portico made of the Route; written by the elected leader.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A Kubernetes status condition (`metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Accepted` or `ResolvedRefs`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}
