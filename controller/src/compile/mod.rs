//! The pure step from a [`Snapshot`] to a [`RoutingTable`]: which Ingresses are ours, in
//! what order they claim hosts and paths, and what each backend resolves to.
//!
//! ```text
//!  Ingresses ─▶ namespace filter ─▶ class.rs: ours? ─▶ oldest first ─▶ translate/ingress.rs
//!                                                                        │ model::Rule
//!                                                                        ▼
//!                          Services + EndpointSlices ─▶ backend.rs    model::lower ─▶ TableBuilder
//!                          (one Arc<Backend> per Service port)
//! ```
//!
//! Nothing here reads a clock, a file or the network, and nothing depends on the order
//! objects arrive in: the same objects always compile to the same table and the same
//! diagnostics, in the same order.

mod annotations;
mod backend;
mod class;
mod config_map;
mod diagnostics;
mod gateway;
mod gateway_service;
mod metrics;
mod route_status;
mod tls;
mod translate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use portico_dataplane::table::{
    DEFAULT_MAX_BODY_SIZE, HostMatch, RoutePolicy, RoutingTable, SourceRange, TableBuilder,
};

pub use annotations::{
    AnnotationProblem, InvalidSize, NGINX_PREFIX, PROXY_BODY_SIZE, catalog, check as check_annotations, parse_size,
};
pub use backend::SERVICE_NAME_LABEL;
pub use class::{DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION, class_of, served_by};
pub use config_map::is_read as config_key_is_read;
pub use diagnostics::{Diagnostic, Severity, reason};
pub use gateway::gateway_ports;
pub use gateway::status::{GatewayStatuses, gateway_status};
pub use gateway_service::{GatewayPorts, fnv1a64, gateway_service_name};
pub use metrics::record_diagnostics;
pub use route_status::route_conditions;

use crate::snapshot::Snapshot;
use backend::Backends;
use class::Classes;

/// Settings that shape a compile but come from the command line, not from objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// The IngressClass names Portico answers to (`--ingress-class`), also matched
    /// against the legacy `kubernetes.io/ingress.class` annotation.
    pub ingress_classes: Vec<String>,
    /// The `spec.controller` values of the IngressClasses that are Portico's
    /// (`--controller-name`).
    pub controller_names: Vec<String>,
    /// Ingresses with no class at all are Portico's (`--watch-ingress-without-class`).
    pub watch_ingress_without_class: bool,
    /// IngressClasses named in `ingress_classes` are Portico's whatever their
    /// `spec.controller` (`--ingress-class-by-name`).
    pub ingress_class_by_name: bool,
    /// Only Ingresses in this namespace, when set.
    pub watch_namespace: Option<String>,
    /// Request body limit for routes whose Ingress does not set one; `None` is no limit.
    pub max_body_size: Option<u64>,
    /// nginx's `proxy_read_timeout` for routes that do not set one; `None`: the proxy's
    /// own (`--upstream-timeout`). Set by the ConfigMap's `proxy-read-timeout`.
    pub read_timeout: Option<std::time::Duration>,
    /// nginx's `proxy_send_timeout` likewise (`--proxy-send-timeout`,
    /// `proxy-send-timeout`).
    pub send_timeout: Option<std::time::Duration>,
    /// nginx's `proxy_connect_timeout` likewise (`--connect-timeout`,
    /// `proxy-connect-timeout`).
    pub connect_timeout: Option<std::time::Duration>,
    /// The clients an Ingress without `whitelist-source-range` or
    /// `denylist-source-range` annotations serves (the ConfigMap's keys of those
    /// names; empty: everyone).
    pub source_range: SourceRange,
    /// The ConfigMap's source range keys that are there and do not parse: an Ingress
    /// that takes one of them (no annotation of its own) is refused, with 503.
    pub broken_source_ranges: Vec<&'static str>,
    /// The status of requests `limit-rps` and `limit-rpm` refuse (the ConfigMap's
    /// `limit-req-status-code`, 503 by default).
    pub limit_req_status: http::StatusCode,
    /// Stamped on the table; the publisher raises it for every table it sends.
    pub generation: u64,
    /// Plain-HTTP requests to hosts with TLS get a 308 to HTTPS, unless an Ingress says
    /// `nginx.ingress.kubernetes.io/ssl-redirect: "false"`.
    pub ssl_redirect: bool,
    /// The `Strict-Transport-Security` value of HTTPS responses of hosts with TLS;
    /// `None`: no header.
    pub hsts: Option<http::HeaderValue>,
    /// `namespace/name` of the TLS Secret served to handshakes no host certificate
    /// matches; a certificate generated at start-up otherwise.
    pub default_ssl_certificate: Option<(String, String)>,
    /// The time certificates are checked against (Unix seconds). An input, so that
    /// `compile` stays a pure function: callers stamp it before each compile.
    pub now: i64,
    /// `spec.controllerName` of the GatewayClasses that are Portico's.
    pub gateway_controller_name: String,
    /// Service mode: each Gateway is reached through a Service Portico keeps, and its
    /// listener ports are mapped onto internal ports. `None`: direct mode, each
    /// listener port is bound as it is (always so in file mode).
    pub gateway_service: Option<GatewayServiceOptions>,
    /// Direct mode: the addresses written to every Gateway's status.
    pub gateway_addresses: Vec<String>,
    /// Service mode: the internal ports Gateway listeners are given (inclusive).
    pub gateway_port_range: (u16, u16),
    /// `namespace/name` of ingress-nginx's controller ConfigMap, whose global keys
    /// apply (`--configmap`).
    pub config_map: Option<(String, String)>,
    /// `namespace/name` of the Service, on its first port, that answers the requests
    /// no Ingress rule matches and the error pages of `custom-http-errors` without a
    /// `default-backend` (ingress-nginx's `--default-backend-service`).
    pub default_backend_service: Option<(String, String)>,
    /// The ConfigMap's `custom-http-errors`: the codes the default backend answers in
    /// place of every Ingress path without the annotation.
    pub custom_http_errors: Vec<u16>,
    /// What only the ConfigMap sets (no flag does).
    pub nginx: NginxDefaults,
}

/// ingress-nginx's global defaults that only its ConfigMap sets, with its defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NginxDefaults {
    /// `force-ssl-redirect`: every Ingress without the annotation redirects plain HTTP
    /// to HTTPS, TLS host or not.
    pub force_ssl_redirect: bool,
    /// `proxy-request-buffering`: `None` keeps `--proxy-request-buffering`.
    pub request_buffering: Option<bool>,
    /// `limit-conn-status-code`: the status of requests `limit-connections` refuses.
    pub limit_conn_status: http::StatusCode,
    /// `service-upstream`: every Ingress without the annotation proxies to its
    /// Services' cluster IPs.
    pub service_upstream: bool,
    /// `http-redirect-code`: the status of the HTTPS and www redirects.
    pub http_redirect_code: http::StatusCode,
    /// `block-cidrs`: clients refused (403) by every Ingress path.
    pub block_cidrs: Vec<portico_dataplane::table::Cidr>,
    /// ConfigMap keys that are the defaults of the Ingress annotations of the same
    /// names (`proxy-next-upstream`, `load-balance`, ...), keyed by the annotation's
    /// full name; each value has been checked with the annotation's own parser.
    pub annotations: BTreeMap<String, String>,
}

impl Default for NginxDefaults {
    fn default() -> Self {
        NginxDefaults {
            force_ssl_redirect: false,
            request_buffering: None,
            limit_conn_status: http::StatusCode::SERVICE_UNAVAILABLE,
            service_upstream: false,
            http_redirect_code: http::StatusCode::PERMANENT_REDIRECT,
            block_cidrs: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
}

impl CompileOptions {
    /// The policy every route starts from: the body limit, the timeouts, request
    /// buffering and the status of HTTPS redirects.
    fn base_policy(&self) -> RoutePolicy {
        RoutePolicy {
            max_body_size: self.max_body_size,
            read_timeout: self.read_timeout,
            send_timeout: self.send_timeout,
            connect_timeout: self.connect_timeout,
            request_buffering: self.nginx.request_buffering,
            ssl_redirect_status: self.nginx.http_redirect_code,
            ..RoutePolicy::default()
        }
    }
}

/// Where and how the Service of each Gateway is kept (service mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayServiceOptions {
    /// The namespace of the Services (Portico's own by default).
    pub namespace: String,
    pub service_type: GatewayServiceType,
}

/// `spec.type` of the Services kept for Gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayServiceType {
    LoadBalancer,
    ClusterIP,
    NodePort,
}

impl GatewayServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayServiceType::LoadBalancer => "LoadBalancer",
            GatewayServiceType::ClusterIP => "ClusterIP",
            GatewayServiceType::NodePort => "NodePort",
        }
    }
}

/// The default `--ingress-class`.
pub const DEFAULT_INGRESS_CLASS: &str = "portico";
/// The default `--controller-name`: `spec.controller` of Portico's IngressClass.
pub const DEFAULT_CONTROLLER_NAME: &str = "portico.dev/ingress-controller";

impl CompileOptions {
    /// Whether `name` is one of the class names Portico answers to.
    pub fn serves_class_name(&self, name: &str) -> bool {
        self.ingress_classes.iter().any(|c| c == name)
    }
}

/// The default `--gateway-port-range`.
pub const DEFAULT_GATEWAY_PORT_RANGE: (u16, u16) = (20000, 29999);

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            ingress_classes: vec![DEFAULT_INGRESS_CLASS.to_string()],
            controller_names: vec![DEFAULT_CONTROLLER_NAME.to_string()],
            watch_ingress_without_class: false,
            ingress_class_by_name: false,
            watch_namespace: None,
            max_body_size: Some(DEFAULT_MAX_BODY_SIZE),
            read_timeout: None,
            send_timeout: None,
            connect_timeout: None,
            source_range: SourceRange::default(),
            broken_source_ranges: Vec::new(),
            limit_req_status: http::StatusCode::SERVICE_UNAVAILABLE,
            generation: 0,
            ssl_redirect: true,
            hsts: Some(portico_dataplane::filter::DEFAULT_HSTS.clone()),
            default_ssl_certificate: None,
            now: 0,
            gateway_controller_name: "portico.dev/gateway-controller".to_string(),
            gateway_service: None,
            gateway_addresses: Vec::new(),
            gateway_port_range: DEFAULT_GATEWAY_PORT_RANGE,
            config_map: None,
            default_backend_service: None,
            custom_http_errors: Vec::new(),
            nginx: NginxDefaults::default(),
        }
    }
}

/// Compiles every Ingress Portico owns into one routing table.
///
/// Ingresses are taken oldest `creationTimestamp` first, then by namespace and name, and
/// each host, path and defaultBackend goes to the first Ingress that claims it; later
/// claims get a `DuplicateRule` diagnostic. Objects without a `creationTimestamp`
/// (file mode) count as oldest, so among themselves namespace and name decide.
/// Invalid parts are left out with a diagnostic and never take down the rest.
pub fn compile(snapshot: &Snapshot, opts: &CompileOptions) -> (RoutingTable, Vec<Diagnostic>) {
    let (global, config_diagnostics) = read_config_map(snapshot, opts);
    // The ConfigMap's keys take the place of the flags' values for everything below.
    let opts = &global.over(opts);
    let mut compiler = Compiler {
        opts,
        snapshot,
        builder: TableBuilder::new(),
        backends: Backends::new(&snapshot.services, &snapshot.endpoint_slices, &snapshot.secrets),
        fallback_owners: BTreeMap::new(),
        diagnostics: Vec::new(),
        certificates: tls::Certificates::new(&snapshot.secrets, opts.now),
        extras: Default::default(),
        default_backend: None,
        backend_tls: gateway::BackendTls::default(),
    };
    compiler.add_default_certificate();
    compiler.add_global_default_backend();
    compiler.diagnostics.extend(config_diagnostics);
    if let Some(forwarded) = global.forwarded {
        compiler.builder.forwarded(forwarded);
    }
    compiler.builder.connections(global.connections);
    if let Some(policy) = global.tls_policy {
        compiler.builder.tls_policy(policy);
    }
    compiler.prepare_ingresses(&owned_ingresses(snapshot, opts));
    // Ingresses and Routes claim hosts and paths together, oldest first; at equal age
    // (objects read from a file have none) namespace and name decide, then Ingress
    // before Route.
    let mut sources: Vec<Source<'_>> = owned_ingresses(snapshot, opts)
        .into_iter()
        .map(Source::Ingress)
        .chain(owned_routes(snapshot, opts).into_iter().map(Source::Route))
        .collect();
    sources.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    for source in sources {
        match source {
            Source::Ingress(ingress) => compiler.add_ingress(ingress),
            Source::Route(route) => compiler.add_route(route),
        }
    }
    compiler.finish_ingresses();
    // Gateways never share a port with Ingresses: their listeners are tables of their own.
    let mut certificates = tls::Certificates::new(&snapshot.secrets, opts.now);
    let analysis = gateway::Analysis::new(snapshot, opts, &mut certificates);
    compiler.backend_tls = analysis.backend_tls.clone();
    compiler.add_gateways(&analysis);
    (compiler.builder.build(opts.generation), compiler.diagnostics)
}

/// The ConfigMap of `--configmap`: its settings, and the diagnostics on it.
fn read_config_map(snapshot: &Snapshot, opts: &CompileOptions) -> (config_map::Global, Vec<Diagnostic>) {
    let Some((namespace, name)) = &opts.config_map else {
        return Default::default();
    };
    let found = snapshot
        .config_maps
        .iter()
        .find(|c| namespace_of(&c.metadata) == namespace && c.metadata.name.as_deref() == Some(name.as_str()));
    let Some(config_map) = found else {
        let missing = Diagnostic {
            kind: "ConfigMap",
            namespace: namespace.clone(),
            name: name.clone(),
            reason: reason::CONFIG_MAP_NOT_FOUND,
            message: "the ConfigMap named by --configmap does not exist; every key has its default".into(),
            severity: Severity::Warning,
        };
        return (config_map::Global::default(), vec![missing]);
    };
    let (global, problems) = config_map::read(config_map);
    (
        global,
        problems.into_diagnostics("ConfigMap", namespace, name).collect(),
    )
}

/// The Ingresses Portico owns (class and watched namespace), in the order they claim
/// hosts and paths: oldest first, then namespace and name.
pub fn owned_ingresses<'a>(snapshot: &'a Snapshot, opts: &CompileOptions) -> Vec<&'a Ingress> {
    let classes = Classes::new(&snapshot.ingress_classes, opts);
    let mut ingresses: Vec<&Ingress> = snapshot
        .ingresses
        .iter()
        .filter(|i| {
            opts.watch_namespace
                .as_deref()
                .is_none_or(|ns| namespace_of(&i.metadata) == ns)
        })
        .filter(|i| classes.owns(i))
        .collect();
    ingresses.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    ingresses
}

/// The Routes Portico serves (all of them in the watched namespace, or everywhere):
/// the CRD is Portico's own, so a Route needs no class.
pub fn owned_routes<'a>(snapshot: &'a Snapshot, opts: &CompileOptions) -> Vec<&'a crate::crd::Route> {
    let mut routes: Vec<&crate::crd::Route> = snapshot
        .routes
        .iter()
        .filter(|r| {
            opts.watch_namespace
                .as_deref()
                .is_none_or(|ns| namespace_of(&r.metadata) == ns)
        })
        .collect();
    routes.sort_by(|a, b| age_key(&a.metadata).cmp(&age_key(&b.metadata)));
    routes
}

enum Source<'a> {
    Ingress(&'a Ingress),
    Route(&'a crate::crd::Route),
}

impl Source<'_> {
    fn order_key(&self) -> impl Ord + '_ {
        match self {
            Source::Ingress(i) => (age_key(&i.metadata), 0),
            Source::Route(r) => (age_key(&r.metadata), 1),
        }
    }
}

/// The state of one compile, shared by the per-concern modules.
struct Compiler<'a> {
    opts: &'a CompileOptions,
    snapshot: &'a Snapshot,
    builder: TableBuilder,
    backends: Backends<'a>,
    /// `namespace/name` of the Ingress holding each host's fallback, to name it when a
    /// later Ingress asks for the same one.
    fallback_owners: BTreeMap<HostMatch, String>,
    diagnostics: Vec<Diagnostic>,
    certificates: tls::Certificates<'a>,
    /// What Ingresses' annotations say about each other (regex hosts, canaries).
    extras: translate::ingress_extras::Extras<'a>,
    /// `--default-backend-service`, resolved.
    default_backend: Option<std::sync::Arc<portico_dataplane::table::Backend>>,
    /// BackendTLSPolicies, for the backends of Gateway API routes.
    backend_tls: gateway::BackendTls<'a>,
}

/// Kubernetes sets the namespace on every namespaced object it returns; a file may
/// leave it out, and `kubectl apply` would then use `default`.
fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
}

fn age_key(meta: &ObjectMeta) -> impl Ord + '_ {
    (
        meta.creation_timestamp.as_ref(),
        namespace_of(meta),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The current time for [`CompileOptions::now`].
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
