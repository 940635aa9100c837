//! `portico`: the ingress controller and its dataplane in one process.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use portico_controller::compile::CompileOptions;
use portico_dataplane::server::Addresses;
use portico_dataplane::table::{ExplainRequest, RoutingTable};
use portico_dataplane::{Proxy, ProxyConfig, Server};
use tokio::sync::watch;

/// mimalloc, not the C library's allocator. A connection's task and its busy spell's
/// state are a few KiB each, allocated and freed with every new client connection;
/// glibc's per-thread cache stops at 1 KiB, so each of those went through its shared
/// bins (and tokio's 128-byte aligned task cells through its slow aligned path).
/// mimalloc serves every size from per-thread free lists: 19 % less user-space CPU per
/// request with a new connection per request, 9 % with keep-alive (see
/// bench/README.md). Built without its transparent-huge-page advice (`no_thp`): with
/// it, each arena region the process touched became a 2 MiB huge page where the kernel
/// allows them on request (Debian's default), and resident memory at start went from 14
/// to 23-46 MiB for no measured gain in throughput. Without it, memory at start and per
/// idle connection is what it was with glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kubernetes ingress controller: routes HTTP traffic by Ingress objects.
///
/// Without a subcommand, `portico` serves; `portico explain` tells how one request
/// would be routed; `portico migrate` reports on ingress-nginx's annotations.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Which object and rule would serve a request, what it would pass through, the
    /// backends and endpoints, and why every other rule of the host would not serve it.
    /// Exits 0 when a rule or defaultBackend serves it, 1 when nothing does (404), 2
    /// when the objects cannot be read.
    Explain(Box<ExplainArgs>),
    /// What Portico would do with each ingress-nginx annotation of the Ingresses of
    /// ingress-nginx's classes, and with each key of its controller ConfigMap: honoured,
    /// honoured with a stated difference, unsupported, refused (snippets), or invalid.
    /// Exits 0 when everything is honoured as ingress-nginx does it, 1 when anything
    /// would behave differently, 2 when the objects cannot be read.
    Migrate(MigrateArgs),
}

#[derive(clap::Args, Debug)]
struct MigrateArgs {
    /// Read the objects from this file instead of a cluster: the output of `kubectl get
    /// ingress,ingressclass,configmap -A -o yaml` (a List) or multi-document YAML; a
    /// directory: each of its .yaml, .yml and .json files; `-`: standard input.
    #[arg(short = 'f', long = "filename", alias = "from-file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Read the objects from the cluster once (default: in-cluster config, then
    /// KUBECONFIG); nothing is written.
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    kubeconfig: Option<PathBuf>,

    /// Also report on Ingresses of this class (repeat for more); `nginx` and the classes
    /// of IngressClasses with `spec.controller: k8s.io/ingress-nginx` always are.
    #[arg(long = "ingress-class", value_name = "NAME")]
    ingress_classes: Vec<String>,

    /// ingress-nginx's controller ConfigMap (default: any ConfigMap named
    /// `ingress-nginx-controller` or `nginx-configuration`).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = portico_controller::migrate::parse_object_ref)]
    configmap: Option<(String, String)>,

    /// `text`, or `json` (schema in docs/migrating-from-ingress-nginx.md).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(clap::Args, Debug)]
struct ExplainArgs {
    /// Read the objects from this multi-document YAML file (as `--from-file` serves it).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,

    /// Read the objects from the cluster once (default: in-cluster config, then
    /// KUBECONFIG); nothing is written.
    #[arg(long, value_name = "FILE", conflicts_with = "from_file")]
    kubeconfig: Option<PathBuf>,

    #[command(flatten)]
    compile: CompileArgs,

    /// The request's method.
    #[arg(long, default_value = "GET")]
    method: String,

    /// A request header, `Name: value`; repeat for more.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// `text` or `json` (the admin port's `/explain` answer).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// The request comes on this Gateway listener port (the internal port the proxy
    /// binds): explain against that listener's routes. Without it: the Ingress ports.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,

    /// The request's host (`Host` or `:authority`; a port is allowed).
    host: String,

    /// The request's path, with its query if any (`/search?q=1`).
    path: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// The flags that shape the compile, shared by serving and `explain`.
#[derive(clap::Args, Debug)]
struct CompileArgs {
    /// IngressClass name this controller serves, also the value of the legacy
    /// `kubernetes.io/ingress.class` annotation it serves; repeat or separate with
    /// commas for more (`portico,nginx` also takes ingress-nginx's Ingresses over).
    #[arg(
        long = "ingress-class",
        value_name = "NAME",
        value_delimiter = ',',
        default_value = "portico"
    )]
    ingress_classes: Vec<String>,

    /// `spec.controller` value of the IngressClasses this controller serves; repeat or
    /// separate with commas for more (`k8s.io/ingress-nginx`: ingress-nginx's classes).
    #[arg(
        long = "controller-name",
        alias = "controller-class",
        value_name = "NAME",
        value_delimiter = ',',
        default_value = "portico.dev/ingress-controller"
    )]
    controller_names: Vec<String>,

    /// Also serve Ingresses with neither `spec.ingressClassName` nor the legacy
    /// annotation (ingress-nginx's flag of the same name).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    watch_ingress_without_class: bool,

    /// Serve the IngressClasses named by --ingress-class whatever their
    /// `spec.controller` (ingress-nginx's flag of the same name).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ingress_class_by_name: bool,

    /// Only serve Ingresses in this namespace (default: all).
    #[arg(long)]
    watch_namespace: Option<String>,

    /// `namespace/name` of the TLS Secret served when no host certificate matches the
    /// client's SNI (default: a self-signed certificate generated at start).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    default_ssl_certificate: Option<String>,

    /// `namespace/name` of the Service (its first port) that answers requests no
    /// Ingress rule matches, and serves the pages of `custom-http-errors` (the
    /// annotation without `default-backend`, or the ConfigMap key), as ingress-nginx's
    /// flag of the same name. Default: Portico answers 404 itself.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    default_backend_service: Option<String>,

    /// Redirect plain-HTTP requests for hosts with TLS to HTTPS (308). Per Ingress:
    /// `nginx.ingress.kubernetes.io/ssl-redirect: "false"`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ssl_redirect: bool,

    /// Send `Strict-Transport-Security` on HTTPS responses of hosts with TLS
    /// (`max-age=31536000; includeSubDomains`). The ConfigMap's `hsts` keys override it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    hsts: bool,

    /// Largest request body accepted, nginx size syntax (`1m`, `512k`, `0` = no limit).
    /// Per Ingress: the `nginx.ingress.kubernetes.io/proxy-body-size` annotation.
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    max_body_size: BodyLimit,

    /// `spec.controllerName` of the GatewayClasses this controller serves.
    #[arg(long, default_value = "portico.dev/gateway-controller")]
    gateway_controller_name: String,

    /// How Gateways are reached: through one Service per Gateway of this type, its
    /// listener ports mapped onto internal ports (LoadBalancer, ClusterIP, NodePort), or
    /// `None`: each listener port bound as it is. File mode is always `None`.
    #[arg(long, value_enum, default_value_t = GatewayServiceTypeArg::LoadBalancer)]
    gateway_service_type: GatewayServiceTypeArg,

    /// Namespace of the Services kept for Gateways (default: this pod's namespace,
    /// else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    gateway_service_namespace: String,

    /// With `--gateway-service-type None`: an address written to every Gateway's
    /// status (an IP; repeat for more).
    #[arg(long = "gateway-address", value_name = "IP")]
    gateway_addresses: Vec<IpAddr>,

    /// Internal ports given to Gateway listeners in service mode, `FIRST-LAST`.
    #[arg(long, default_value = "20000-29999", value_parser = parse_port_range)]
    gateway_port_range: (u16, u16),

    /// ingress-nginx's controller ConfigMap, `NAMESPACE/NAME`: its global keys apply
    /// (those docs/migrating-from-ingress-nginx.md lists as honoured), and a change to
    /// it is live with the next table. In file mode, a ConfigMap of the file.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = portico_controller::migrate::parse_object_ref)]
    configmap: Option<(String, String)>,
}

/// `--gateway-service-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GatewayServiceTypeArg {
    #[value(name = "LoadBalancer")]
    LoadBalancer,
    #[value(name = "ClusterIP")]
    ClusterIp,
    #[value(name = "NodePort")]
    NodePort,
    #[value(name = "None")]
    None,
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port range {s:?}: expected FIRST-LAST, e.g. 20000-29999");
    let (first, last) = s.trim().split_once('-').ok_or_else(bad)?;
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok((first, last))
}

/// `--gateway-service-selector k=v,k=v`.
fn parse_selector(s: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    s.split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => Err(format!("invalid selector {s:?}: expected key=value,key=value")),
        })
        .collect()
}

impl CompileArgs {
    fn options(&self) -> Result<CompileOptions, String> {
        let object_ref = |flag: &str, value: &Option<String>| match value {
            Some(s) => s
                .split_once('/')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                .map(|(ns, name)| Some((ns.to_string(), name.to_string())))
                .ok_or_else(|| format!("--{flag} {s:?}: expected NAMESPACE/NAME")),
            None => Ok(None),
        };
        let default_ssl_certificate = object_ref("default-ssl-certificate", &self.default_ssl_certificate)?;
        let default_backend_service = object_ref("default-backend-service", &self.default_backend_service)?;
        Ok(CompileOptions {
            ingress_classes: self.ingress_classes.clone(),
            controller_names: self.controller_names.clone(),
            watch_ingress_without_class: self.watch_ingress_without_class,
            ingress_class_by_name: self.ingress_class_by_name,
            watch_namespace: self.watch_namespace.clone(),
            max_body_size: self.max_body_size.0,
            // The proxy's own, from --upstream-timeout and --proxy-send-timeout.
            read_timeout: None,
            send_timeout: None,
            connect_timeout: None,
            // Only the ConfigMap sets these.
            source_range: Default::default(),
            broken_source_ranges: Vec::new(),
            limit_req_status: http::StatusCode::SERVICE_UNAVAILABLE,
            generation: 0,
            ssl_redirect: self.ssl_redirect,
            hsts: self.hsts.then(|| portico_dataplane::filter::DEFAULT_HSTS.clone()),
            default_ssl_certificate,
            now: 0,
            gateway_controller_name: self.gateway_controller_name.clone(),
            gateway_service: {
                use portico_controller::compile::{GatewayServiceOptions, GatewayServiceType};
                let service_type = match self.gateway_service_type {
                    GatewayServiceTypeArg::LoadBalancer => Some(GatewayServiceType::LoadBalancer),
                    GatewayServiceTypeArg::ClusterIp => Some(GatewayServiceType::ClusterIP),
                    GatewayServiceTypeArg::NodePort => Some(GatewayServiceType::NodePort),
                    GatewayServiceTypeArg::None => None,
                };
                service_type.map(|service_type| GatewayServiceOptions {
                    namespace: self.gateway_service_namespace.clone(),
                    service_type,
                })
            },
            gateway_addresses: self.gateway_addresses.iter().map(IpAddr::to_string).collect(),
            gateway_port_range: self.gateway_port_range,
            config_map: self.configmap.clone(),
            default_backend_service,
            // Only the ConfigMap sets it.
            custom_http_errors: Vec::new(),
            nginx: Default::default(),
        })
    }
}

#[derive(clap::Args, Debug)]
struct Args {
    /// Serve the Kubernetes objects in this multi-document YAML file instead of a
    /// cluster's, and follow edits to it.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,

    /// Kubeconfig for cluster mode (default: in-cluster config, then KUBECONFIG).
    #[arg(long, value_name = "FILE", conflicts_with = "from_file")]
    kubeconfig: Option<PathBuf>,

    /// `namespace/name` of the Service whose load-balancer address is written to the
    /// status of every served Ingress.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    publish_service: Option<String>,

    /// Addresses written to the status of every served Ingress (comma separated), when
    /// there is no --publish-service.
    #[arg(long, value_delimiter = ',')]
    publish_status_address: Vec<String>,

    /// Write the address to `status.loadBalancer` of every served Ingress (ingress-nginx's
    /// flag of the same name). `--update-status=false` leaves Ingress status to another
    /// controller serving the same Ingresses, as in a side-by-side cut-over.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    update_status: bool,

    /// Name of the Lease that elects the one replica writing status and Events.
    #[arg(long, default_value = "portico-leader")]
    election_id: String,

    /// Namespace of that Lease (default: this pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    election_namespace: String,

    /// This replica's identity in the Lease (default: the pod name, else host name and PID).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Labels of Portico's own pods, `key=value,key=value`: the selector of the Service
    /// kept for each Gateway (service mode).
    #[arg(long, value_name = "KEY=VALUE,...", value_parser = parse_selector)]
    gateway_service_selector: Option<std::collections::BTreeMap<String, String>>,

    #[command(flatten)]
    compile: CompileArgs,

    /// Address the listeners bind to.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,

    /// Plain HTTP listener port.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,

    /// HTTPS listener port (0: no HTTPS listener).
    #[arg(long, default_value_t = 8443)]
    https_port: u16,

    /// Port named in HTTP-to-HTTPS redirects (default: 443 when --https-port is the
    /// default 8443, which a Service maps to 443; else --https-port).
    #[arg(long)]
    https_redirect_port: Option<u16>,

    /// Admin listener port: /metrics, /healthz, /readyz, /explain.
    #[arg(long, default_value_t = 10254)]
    admin_port: u16,

    /// Time allowed to connect to an endpoint.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,

    /// Time allowed from sending a request to an endpoint to its response headers, and
    /// then between two reads of the response body or of an upgraded connection (an
    /// idle WebSocket closes after it): nginx's `proxy_read_timeout`.
    #[arg(long, alias = "proxy-read-timeout", default_value = "60s", value_parser = parse_duration)]
    upstream_timeout: Duration,

    /// Longest wait between two writes to an upgraded connection's endpoint (nginx's
    /// `proxy_send_timeout`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    proxy_send_timeout: Duration,

    /// Longest wait between two reads of a request body; exceeded: 408 (nginx's
    /// `client_body_timeout`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    client_body_timeout: Duration,

    /// Longest wait between two writes to a client that is not reading its response;
    /// exceeded: the connection is closed (nginx's `send_timeout`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    send_timeout: Duration,

    /// Time a client has to send a request's headers once it has begun (and its first
    /// bytes on a new connection).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    client_header_timeout: Duration,

    /// How long an idle keep-alive client connection waits for its next request; 0:
    /// no keep-alive (nginx's `keepalive_timeout`; the ConfigMap's `keep-alive`).
    #[arg(long, default_value = "75s", value_parser = parse_duration)]
    keepalive_timeout: Duration,

    /// Requests served on one client connection before it closes; 0: no limit
    /// (nginx's `keepalive_requests`; the ConfigMap's `keep-alive-requests`, whose
    /// ingress-nginx default is 1000).
    #[arg(long, default_value_t = 0)]
    keepalive_requests: u32,

    /// Read each request body before contacting the endpoint, so slow uploads tie up
    /// no backend connection and a malformed body forwards nothing (ingress-nginx's
    /// `proxy-request-buffering`). Per Ingress: the `proxy-request-buffering` annotation.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    proxy_request_buffering: bool,

    /// The most of one request body read ahead (nginx size syntax); the rest streams
    /// after it.
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    client_body_buffer_size: BodyLimit,

    /// The most memory all request bodies read ahead may hold at once; a body that finds
    /// it spent streams instead.
    #[arg(long, default_value = "256m", value_parser = parse_size)]
    request_buffer_memory: BodyLimit,

    /// Read each endpoint response ahead of a slow client, so the endpoint connection
    /// is free once the response is in (ingress-nginx's `proxy-buffering`, off by
    /// default). Per Ingress: the `proxy-buffering` annotation.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    proxy_buffering: bool,

    /// The most of one response read ahead (nginx size syntax); a larger response's
    /// rest is read as the client takes it, keeping its endpoint connection.
    #[arg(long, default_value = "1m", value_parser = parse_size)]
    response_buffer_size: BodyLimit,

    /// The most memory all responses read ahead may hold at once; a response that
    /// finds it spent is read one piece at a time, as without buffering.
    #[arg(long, default_value = "256m", value_parser = parse_size)]
    response_buffer_memory: BodyLimit,

    /// Response bytes one HTTP/2 stream may queue for a client beyond what its socket
    /// has taken (nginx size syntax).
    #[arg(long, default_value = "64k", value_parser = parse_size)]
    http2_send_buffer_size: BodyLimit,

    /// On SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,

    /// One access-log line per request, in the `--log-format` (JSON or text).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    access_log: bool,

    /// Log format: `json` or `text` (coloured only on a terminal).
    #[arg(long, default_value = "json")]
    log_format: String,

    /// Serving threads, each with its own event loop (default: one per CPU).
    #[arg(long)]
    worker_threads: Option<usize>,

    /// Also export ingress-nginx's metric names and labels (`nginx_ingress_controller_*`),
    /// so dashboards and alerts made for ingress-nginx keep working.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    ingress_nginx_metrics: bool,
}

/// A body size limit; `None` is no limit.
#[derive(Clone, Debug)]
struct BodyLimit(Option<u64>);

fn parse_size(s: &str) -> Result<BodyLimit, String> {
    portico_controller::compile::parse_size(s)
        .map(BodyLimit)
        .map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .trim()
        .split_at(s.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(s.trim().len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 5s, 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("invalid duration {s:?}: unit must be ms, s or m")),
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rustls warns about every client that sends an IP address as SNI (health checks
        // and load generators do): expected, handled (the default certificate), not news.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    // Colour codes only for a person at a terminal: none in a file, a pipe or a pod log.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder.json().flatten_event(true).with_current_span(false).init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    portico_dataplane::tls::install_crypto_provider();
    match cli.command {
        Some(Command::Explain(args)) => return explain(*args),
        Some(Command::Migrate(args)) => return migrate(args),
        None => {}
    }
    let args = cli.serve;
    init_logging(&args.log_format);
    raise_open_file_limit();
    // This runtime runs the control side (watches, compiling, status, the admin
    // listener); traffic is served by the dataplane's own threads (`--worker-threads`).
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all().worker_threads(2);
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portico: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "portico stopped");
            eprintln!("portico: {e}");
            ExitCode::FAILURE
        }
    }
}

/// This machine's (or pod's) host name; empty when it cannot be read.
fn host_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    host.trim().to_owned()
}

/// Every client connection and every upstream connection is a file descriptor, and the
/// soft limit most systems start processes with (1,024) is far too low for a proxy.
/// Raise it to the hard limit, as nginx's `worker_rlimit_nofile` and Go's runtime do.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.ingress_nginx_metrics {
        portico_dataplane::metrics::ingress_nginx::enable(portico_dataplane::metrics::ingress_nginx::Controller {
            namespace: args.election_namespace.clone(),
            class: args.compile.controller_names.first().cloned().unwrap_or_default(),
            pod: args.identity.clone().unwrap_or_else(host_name),
        });
    }
    let cfg = ProxyConfig {
        connect_timeout: args.connect_timeout,
        upstream_response_timeout: args.upstream_timeout,
        proxy_send_timeout: args.proxy_send_timeout,
        client_body_timeout: args.client_body_timeout,
        send_timeout: args.send_timeout,
        request_buffering: args.proxy_request_buffering,
        client_body_buffer_size: args.client_body_buffer_size.0.unwrap_or(0),
        request_buffer_budget: args.request_buffer_memory.0.unwrap_or(0),
        response_buffering: args.proxy_buffering,
        response_buffer_size: args.response_buffer_size.0.unwrap_or(0),
        response_buffer_budget: args.response_buffer_memory.0.unwrap_or(0),
        h2_send_buffer: args
            .http2_send_buffer_size
            .0
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        client_header_timeout: args.client_header_timeout,
        keepalive_timeout: args.keepalive_timeout,
        keepalive_requests: args.keepalive_requests,
        drain_timeout: args.drain_timeout,
        access_log: args.access_log,
        log_format: if args.log_format == "text" {
            portico_dataplane::access_log::LogFormat::Text
        } else {
            portico_dataplane::access_log::LogFormat::Json
        },
        https_redirect_port: args.https_redirect_port.unwrap_or(if args.https_port == 8443 {
            443
        } else {
            args.https_port
        }),
        workers: args.worker_threads.unwrap_or(ProxyConfig::default().workers).max(1),
        ..ProxyConfig::default()
    };
    let mut opts = args.compile.options()?;
    if args.from_file.is_some() {
        // No Services to keep without a cluster: each listener port is bound as it is.
        opts.gateway_service = None;
    }
    let proxy = Proxy::new(cfg);
    let addrs = Addresses {
        http: SocketAddr::new(args.bind_address, args.http_port),
        https: (args.https_port != 0).then(|| SocketAddr::new(args.bind_address, args.https_port)),
        admin: SocketAddr::new(args.bind_address, args.admin_port),
    };
    let server = Server::bind(proxy, addrs).await?;
    let https = server.https_addr().map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(http = %server.http_addr(), https = %https, admin = %server.admin_addr(), "listening");

    let (tx, rx) = watch::channel(Arc::new(RoutingTable::default()));
    // SIGTERM starts the drain and, at the same moment, the leader's Lease release.
    let (stop_tx, stop_rx) = watch::channel(false);
    // Without a status writer (file mode) there is nothing to release.
    let (released_tx, mut released_rx) = watch::channel(args.from_file.is_some());
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let source = async {
        match &args.from_file {
            Some(path) => portico_controller::file::run(path.clone(), opts, tx)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error>),
            None => run_cluster(&args, opts, tx, stop_rx.clone(), released_tx).await,
        }
    };
    let mut stopped = stop_rx.clone();
    let serve = server.run(rx, async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    tokio::pin!(serve);
    let result = tokio::select! {
        () = &mut serve => Ok(()),
        res = source => match res {
            // The source only returns on a fatal error; a clean return would leave the
            // table frozen, so keep serving it until told to stop.
            Ok(()) => { serve.await; Ok(()) }
            Err(e) => Err(e),
        },
    };
    // The release usually finished while the connections drained; a short drain waits
    // for it, briefly (an API server that does not answer must not hold the exit).
    let _ = tokio::time::timeout(Duration::from_secs(5), released_rx.wait_for(|r| *r)).await;
    result
}

/// `portico explain`: compiles the objects once, as serving would, and explains one
/// request against that table.
fn explain(args: ExplainArgs) -> ExitCode {
    const FAILED: u8 = 2;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("portico explain: {e}");
        ExitCode::from(FAILED)
    };
    let mut request = match ExplainRequest::new(
        &args.host,
        &args.method,
        &args.path,
        args.headers.iter().map(String::as_str),
    ) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    request.port = args.port;
    let mut opts = match args.compile.options() {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    opts.generation = 1;
    opts.now = portico_controller::compile::unix_now();
    if args.from_file.is_some() {
        opts.gateway_service = None;
    }
    let snapshot = match &args.from_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| portico_controller::file::parse(&text).map_err(|e| format!("{}: {e}", path.display()))),
        None => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            let watch_namespace = opts.watch_namespace.clone();
            let config_map = opts.config_map.clone();
            rt.map_err(|e| e.to_string()).and_then(|rt| {
                rt.block_on(async {
                    let client = kube_client(args.kubeconfig.as_ref()).await.map_err(|e| e.to_string())?;
                    portico_controller::k8s::list_once(&client, watch_namespace.as_deref(), config_map.as_ref())
                        .await
                        .map_err(|e| format!("cannot list the objects: {e}"))
                })
            })
        }
    };
    let snapshot = match snapshot {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let (table, diagnostics) = portico_controller::compile::compile(&snapshot, &opts);
    for d in &diagnostics {
        eprintln!("{}: {d}", if d.is_warning() { "warning" } else { "note" });
    }
    let explanation = match table.explain_request(&request) {
        Ok(e) => e,
        Err(e) => return fail(&e),
    };
    match args.output {
        Output::Text => print!("{explanation}"),
        Output::Json => match serde_json::to_string_pretty(&explanation) {
            Ok(json) => println!("{json}"),
            Err(e) => return fail(&e),
        },
    }
    if explanation.served_by.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `portico migrate`: reads the objects once and reports on them.
fn migrate(args: MigrateArgs) -> ExitCode {
    use portico_controller::migrate;
    const FAILED: u8 = 2;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("portico migrate: {e}");
        ExitCode::from(FAILED)
    };
    let objects = match &args.file {
        Some(path) => read_migrate_input(path),
        None => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            rt.map_err(|e| e.to_string()).and_then(|rt| {
                rt.block_on(async {
                    let client = kube_client(args.kubeconfig.as_ref()).await.map_err(|e| e.to_string())?;
                    let (objects, warnings) = migrate::list_cluster(&client, args.configmap.as_ref())
                        .await
                        .map_err(|e| format!("cannot list the objects: {e}"))?;
                    warnings.iter().for_each(|w| eprintln!("warning: {w}"));
                    Ok(objects)
                })
            })
        }
    };
    let objects = match objects {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let opts = migrate::Options {
        extra_classes: args.ingress_classes,
        config_map: args.configmap,
    };
    let report = match migrate::report(&objects, &opts) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let text = match args.output {
        Output::Text => report.to_string(),
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(e) => return fail(&e),
        },
    };
    // A reader that stops early (`| head`) is not an error worth a message.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return fail(&e),
    }
    if report.summary.behaves_differently() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The objects of `-f`: one file, `-` for standard input, or every `.yaml`, `.yml` and
/// `.json` file of a directory (as `kubectl apply -f DIR` takes them), in name order.
fn read_migrate_input(path: &std::path::Path) -> Result<portico_controller::migrate::Objects, String> {
    use portico_controller::migrate;
    let files = if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut objects = migrate::Objects::default();
    let mut budget = migrate::MAX_INPUT_BYTES;
    for file in files {
        let text = read_bounded(&file, budget)?;
        budget -= text.len() as u64;
        let more = migrate::read_objects(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        objects.ingresses.extend(more.ingresses);
        objects.ingress_classes.extend(more.ingress_classes);
        objects.config_maps.extend(more.config_maps);
    }
    Ok(objects)
}

/// A file's text, refused past `limit` bytes; `-` is standard input.
fn read_bounded(path: &std::path::Path, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let what = path.display();
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?)
    };
    let mut text = String::new();
    reader
        .take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if text.len() as u64 > limit {
        return Err(format!("{what} is larger than {limit} bytes"));
    }
    Ok(text)
}

async fn kube_client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, Box<dyn std::error::Error>> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no cluster configuration (in-cluster or KUBECONFIG) and no --from-file: {e}"))?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run_cluster(
    args: &Args,
    opts: CompileOptions,
    tx: watch::Sender<Arc<RoutingTable>>,
    stop: watch::Receiver<bool>,
    released: watch::Sender<bool>,
) -> Result<(), Box<dyn std::error::Error>> {
    use portico_controller::{k8s, status};
    let client = kube_client(args.kubeconfig.as_ref()).await?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| format!("cannot reach the API server: {e}"))?;
    tracing::info!(version = %version.git_version, "connected to the Kubernetes API server");
    let publish_service = match &args.publish_service {
        Some(s) => Some(
            s.split_once('/')
                .map(|(ns, name)| (ns.to_string(), name.to_string()))
                .ok_or_else(|| format!("--publish-service {s:?}: expected NAMESPACE/NAME"))?,
        ),
        None => None,
    };
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    let status_opts = status::StatusOptions {
        publish_service,
        publish_status_address: args.publish_status_address.clone(),
        update_status: args.update_status,
        lease_namespace: args.election_namespace.clone(),
        lease_name: args.election_id.clone(),
        identity,
        lease_duration: Duration::from_secs(15),
        gateway_service_selector: args.gateway_service_selector.clone().unwrap_or_default(),
    };
    if !status_opts.update_status {
        tracing::info!("--update-status=false: Ingress status.loadBalancer is left to another controller");
    }
    if opts.gateway_service.is_some() && status_opts.gateway_service_selector.is_empty() {
        tracing::warn!(
            "no --gateway-service-selector: the Services kept for Gateways would select no pod; \
             give the labels of Portico's pods (the chart does)"
        );
    }
    let (compiled_tx, compiled_rx) = watch::channel(k8s::Compiled::default());
    tokio::spawn(status::run(
        client.clone(),
        status_opts,
        opts.clone(),
        compiled_rx,
        stop,
        released,
    ));
    k8s::run(client, opts, k8s::Coalesce::default(), tx, compiled_tx).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("received shutdown signal");
}
