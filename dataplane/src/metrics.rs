//! Prometheus metrics, registered in the process's default registry so the controller's
//! own metrics appear on the same `/metrics` page.
//!
//! Request metrics carry the labels ingress-nginx users already chart: `namespace`,
//! `ingress`, `service`, `host` and `path` name the rule that matched (never the raw URL,
//! which would explode the series count), plus `kind` (`Ingress`, `Route`, `HTTPRoute` or
//! `GRPCRoute`: which kind of object `ingress` names), `method` and `status`.
//!
//! No label takes a value a client chooses: `method` is one of the methods RFC 9110 and
//! RFC 5789 define, or `_OTHER` for any other (OpenTelemetry's HTTP semantic
//! conventions do the same), and the series of a rule that leaves the routing table are
//! dropped when the table is swapped ([`drop_stale_series`]).

use arc_swap::ArcSwap;
use http::Method;
use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    exponential_buckets,
};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

pub mod ingress_nginx;

const ROUTE_LABELS: [&str; 8] = [
    "namespace",
    "kind",
    "ingress",
    "service",
    "host",
    "path",
    "method",
    "status",
];

/// The `method` label of a request: its method when RFC 9110 or RFC 5789 (PATCH)
/// defines it, else `_OTHER`, so a client inventing methods cannot create series
/// (OpenTelemetry's `http.request.method` convention).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The `reason` label values of `portico_upstream_retries_total`.
pub const RETRY_REASONS: [&str; 4] = ["connect-failure", "reset", "timeout", "status"];

/// The `reason` label values of `portico_proxy_protocol_errors_total`.
pub const PROXY_PROTOCOL_ERROR_REASONS: [&str; 3] = ["invalid", "timeout", "client_closed"];

pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_response_duration: HistogramVec,
    pub request_size: HistogramVec,
    pub response_size: HistogramVec,
    pub downstream_connections: IntGauge,
    pub downstream_connections_total: IntCounter,
    /// Client connections open now, by the serving `thread` that holds them.
    pub thread_connections: IntGaugeVec,
    pub upstream_connections_opened: IntCounter,
    pub upstream_connections_reused: IntCounter,
    pub upstream_connect_errors: IntCounter,
    pub table_reloads: IntCounter,
    pub table_last_reload: prometheus::Gauge,
    pub table_routes: IntGauge,
    pub table_generation: IntGauge,
    pub upgraded_connections: IntGauge,
    pub tls_handshakes: IntCounter,
    pub tls_handshake_errors: IntCounterVec,
    /// Connections closed for want of a valid PROXY protocol header in time
    /// (`use-proxy-protocol`), by `reason`: `invalid`, `timeout` or `client_closed`.
    pub proxy_protocol_errors: IntCounterVec,
    pub ssl_expire_time: prometheus::GaugeVec,
    /// Attempts made again on another endpoint by a Route's retry policy, by `reason`:
    /// `connect-failure`, `reset`, `timeout` or `status`.
    pub upstream_retries: IntCounterVec,
    /// Always 1, labelled with the version: joins other series to the version running.
    pub build_info: IntGaugeVec,
    /// 1 while `/readyz` answers 200 (a routing table is live, not draining).
    pub ready: IntGauge,
    /// The certificate served when neither a rule nor `--default-ssl-certificate`
    /// names one (generated at start): its Secret label and expiry.
    fallback_certificate: std::sync::Mutex<Option<(String, f64)>>,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    // Registration fails only for a duplicate name, which `Metrics::get` rules out by
    // registering once; a second registry (tests) still gets usable collectors.
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl Metrics {
    /// The process-wide metrics, registered on first use.
    pub fn get() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| Metrics::new(prometheus::default_registry()))
    }

    fn new(r: &Registry) -> Metrics {
        let m = Metrics::families(r);
        // Series that exist from the start, so `rate()` and `absent()` work before the
        // first event: every retry reason and handshake failure reason at zero.
        for reason in RETRY_REASONS {
            m.upstream_retries.with_label_values(&[reason]);
        }
        for reason in crate::tls::HANDSHAKE_FAILURE_REASONS {
            m.tls_handshake_errors.with_label_values(&[reason]);
        }
        for reason in PROXY_PROTOCOL_ERROR_REASONS {
            m.proxy_protocol_errors.with_label_values(&[reason]);
        }
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m
    }

    fn families(r: &Registry) -> Metrics {
        let secs = || exponential_buckets(0.0005, 2.0, 16).unwrap_or_default();
        let bytes = || exponential_buckets(64.0, 4.0, 10).unwrap_or_default();
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                r,
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &ROUTE_LABELS)
                    .unwrap_or_else(|e| panic!("metric {name}: {e}")),
            )
        };
        let counter = |name: &str, help: &str| {
            register(
                r,
                IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}")),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(
                r,
                IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}")),
            )
        };
        Metrics {
            requests: register(
                r,
                IntCounterVec::new(
                    Opts::new("portico_requests_total", "Requests served, by the rule that matched."),
                    &ROUTE_LABELS,
                )
                .unwrap_or_else(|e| panic!("metric: {e}")),
            ),
            request_duration: hist(
                "portico_request_duration_seconds",
                "Time from request received to response fully sent.",
                secs(),
            ),
            upstream_response_duration: hist(
                "portico_upstream_response_duration_seconds",
                "Time from sending the request upstream to receiving its response headers.",
                secs(),
            ),
            request_size: hist(
                "portico_request_size_bytes",
                "Request size: head plus declared body length.",
                bytes(),
            ),
            response_size: hist(
                "portico_response_size_bytes",
                "Response body bytes sent to the client.",
                bytes(),
            ),
            downstream_connections: gauge("portico_downstream_connections", "Client connections open now."),
            downstream_connections_total: counter(
                "portico_downstream_connections_total",
                "Client connections accepted.",
            ),
            thread_connections: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "portico_thread_connections",
                        "Client connections open now, by the serving thread that holds them.",
                    ),
                    &["thread"],
                )
                .unwrap_or_else(|e| panic!("metric portico_thread_connections: {e}")),
            ),
            upstream_connections_opened: counter(
                "portico_upstream_connections_opened_total",
                "Connections opened to endpoints (compare with reused: each open is a TCP handshake).",
            ),
            upstream_connections_reused: counter(
                "portico_upstream_connections_reused_total",
                "Requests sent on an already open endpoint connection from the shared pool.",
            ),
            upstream_connect_errors: counter(
                "portico_upstream_connect_errors_total",
                "Failed connection attempts to endpoints.",
            ),
            table_reloads: counter("portico_table_reloads_total", "Routing tables swapped in."),
            table_last_reload: register(
                r,
                prometheus::Gauge::new(
                    "portico_table_last_reload_timestamp_seconds",
                    "Unix time of the last routing table swap.",
                )
                .unwrap_or_else(|e| panic!("metric: {e}")),
            ),
            table_routes: gauge("portico_table_routes", "Path rules in the live routing table."),
            table_generation: gauge("portico_table_generation", "Generation of the live routing table."),
            upgraded_connections: gauge("portico_upgraded_connections", "Upgraded (WebSocket) tunnels open now."),
            tls_handshakes: counter("portico_tls_handshakes_total", "TLS handshakes completed."),
            tls_handshake_errors: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "portico_tls_handshake_errors_total",
                        "TLS handshakes failed, by reason.",
                    ),
                    &["reason"],
                )
                .unwrap_or_else(|e| panic!("metric: {e}")),
            ),
            proxy_protocol_errors: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "portico_proxy_protocol_errors_total",
                        "Connections closed without a valid PROXY protocol header in time, by reason.",
                    ),
                    &["reason"],
                )
                .unwrap_or_else(|e| panic!("metric: {e}")),
            ),
            upstream_retries: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "portico_upstream_retries_total",
                        "Requests sent again to another endpoint by a Route's retry policy, by reason.",
                    ),
                    &["reason"],
                )
                .unwrap_or_else(|e| panic!("metric: {e}")),
            ),
            ssl_expire_time: register(
                r,
                prometheus::GaugeVec::new(
                    Opts::new(
                        "portico_ssl_expire_time_seconds",
                        "Expiry (Unix time) of each certificate served, by host and Secret.",
                    ),
                    &["host", "secret"],
                )
                .unwrap_or_else(|e| panic!("metric: {e}")),
            ),
            fallback_certificate: std::sync::Mutex::new(None),
            ready: gauge(
                "portico_ready",
                "1 while /readyz answers 200: a routing table is live and the process is not draining.",
            ),
            build_info: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "portico_build_info",
                        "Always 1; the version of Portico running as a label.",
                    ),
                    &["version"],
                )
                .unwrap_or_else(|e| panic!("metric: {e}")),
            ),
        }
    }
}

impl Metrics {
    /// Records the certificate handshakes get when nothing else names one, and reports
    /// its expiry (`host` empty) until a table brings a default of its own.
    pub fn set_fallback_certificate(&self, secret: &str, not_after: f64) {
        *self
            .fallback_certificate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((secret.to_owned(), not_after));
        self.ssl_expire_time.with_label_values(&["", secret]).set(not_after);
    }

    /// Sets `portico_ssl_expire_time_seconds` to the certificates served now: by host,
    /// and the default one (`host` empty): the table's, else the fallback.
    pub fn set_certificates<'a>(
        &self,
        by_host: impl Iterator<Item = (String, &'a str, f64)>,
        default: Option<(&str, f64)>,
    ) {
        self.ssl_expire_time.reset();
        for (host, secret, not_after) in by_host {
            self.ssl_expire_time
                .with_label_values(&[host.as_str(), secret])
                .set(not_after);
        }
        let fallback = self
            .fallback_certificate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((secret, not_after)) = default.or(fallback.as_ref().map(|(s, t)| (s.as_str(), *t))) {
            self.ssl_expire_time.with_label_values(&["", secret]).set(not_after);
        }
    }
}

/// The request metrics of one label set, resolved once: recording a request then costs
/// five atomic updates instead of five label-hashing lookups in the metric families.
pub struct RequestSeries {
    pub requests: IntCounter,
    pub duration: Histogram,
    pub request_size: Histogram,
    pub response_size: Histogram,
    pub upstream_duration: Histogram,
    /// The same request under ingress-nginx's names; `None` unless
    /// `--ingress-nginx-metrics` is on, which is then the one check a request pays
    /// (callgrind, `bench/run.sh --instructions`, flag off: 28,540 instructions per
    /// keep-alive request against 28,609 before the flag existed; 36,012 against
    /// 36,173 with a new connection each).
    pub(crate) ingress_nginx: Option<ingress_nginx::Series>,
}

/// Series a route has recorded, by `service`, `method` and `status` (its other labels
/// never change). A handful per route, so a scan beats hashing; capped so that a route
/// seeing many statuses does not make the scan long.
#[derive(Default)]
pub struct SeriesCache(ArcSwap<Vec<([String; 3], Arc<RequestSeries>)>>);

impl std::fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeriesCache({} series)", self.0.load().len())
    }
}

const SERIES_PER_ROUTE: usize = 32;

impl SeriesCache {
    /// The series for `labels` (in [`ROUTE_LABELS`] order), whose namespace, kind,
    /// ingress, host and path must be the same on every call for one cache, as must
    /// `rule_service`, the Service the rule names (`service` is the one that got the
    /// request). The method must be a [`method_label`].
    pub fn get(&self, labels: &[&str; 8], rule_service: &str) -> Arc<RequestSeries> {
        let [_, _, _, service, _, _, method, status] = *labels;
        let key = |k: &[String; 3]| k[0] == service && k[1] == method && k[2] == status;
        if let Some((_, series)) = self.0.load().iter().find(|(k, _)| key(k)) {
            return series.clone();
        }
        let m = Metrics::get();
        let series = Arc::new(RequestSeries {
            requests: m.requests.with_label_values(labels),
            duration: m.request_duration.with_label_values(labels),
            request_size: m.request_size.with_label_values(labels),
            response_size: m.response_size.with_label_values(labels),
            upstream_duration: m.upstream_response_duration.with_label_values(labels),
            ingress_nginx: ingress_nginx::get().map(|nginx| nginx.series(labels, rule_service)),
        });
        self.0.rcu(|cached| {
            let mut next = Vec::clone(cached);
            if next.len() < SERIES_PER_ROUTE && !next.iter().any(|(k, _)| key(k)) {
                next.push((
                    [service.to_owned(), method.to_owned(), status.to_owned()],
                    series.clone(),
                ));
            }
            next
        });
        series
    }
}

/// The rule labels of a series (`namespace`, `kind`, `ingress`, `service`, `host`,
/// `path`): a rule in the live table has its series kept.
pub type RuleKey<'a> = [&'a str; 6];

/// Drops the request series of every rule not in `live`: an Ingress, Route, Service or
/// host removed stops being exported instead of staying forever. Runs once per table
/// swap; when no rule left the table since the last call it only hashes the keys, else
/// it also reads the request counter's series once, as a scrape does. A request still
/// in flight on the old table may record into a dropped series, which is then simply
/// not exported (or, if it makes the series again, dropped with the next removal).
pub fn drop_stale_series(live: &HashSet<RuleKey<'_>>) {
    use std::hash::BuildHasher;
    static LAST: std::sync::Mutex<Option<HashSet<u64>>> = std::sync::Mutex::new(None);
    let hasher = foldhash::fast::FixedState::with_seed(0);
    let keys: HashSet<u64> = live.iter().map(|k| hasher.hash_one(k)).collect();
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let removed = last.as_ref().is_none_or(|last| !last.is_subset(&keys));
    *last = Some(keys);
    drop(last);
    if removed {
        Metrics::get().drop_stale_series(live);
        if let Some(nginx) = ingress_nginx::get() {
            let live = live.iter().map(|k| [k[0], k[2], k[3], k[4], k[5]]).collect();
            nginx.drop_stale_series(&live);
        }
    }
}

impl Metrics {
    fn drop_stale_series(&self, live: &HashSet<RuleKey<'_>>) {
        let m = self;
        let family = m.requests.collect();
        for metric in family.first().map_or(&[][..], |f| f.get_metric()) {
            let mut values = [""; 8];
            for pair in metric.get_label() {
                if let Some(i) = ROUTE_LABELS.iter().position(|n| *n == pair.name()) {
                    values[i] = pair.value();
                }
            }
            // Requests that matched no rule are kept: their series are bounded already.
            let rule: RuleKey<'_> = [values[0], values[1], values[2], values[3], values[4], values[5]];
            if values[2].is_empty() || live.contains(&rule) {
                continue;
            }
            let _ = m.requests.remove_label_values(&values);
            let _ = m.request_duration.remove_label_values(&values);
            let _ = m.upstream_response_duration.remove_label_values(&values);
            let _ = m.request_size.remove_label_values(&values);
            let _ = m.response_size.remove_label_values(&values);
        }
    }
}

/// Renders every registered metric in the Prometheus text format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(labels: &[&str; 8]) -> u64 {
        Metrics::get().requests.with_label_values(labels).get()
    }

    /// The series of `portico_requests_total` whose `ingress` label is `ingress`.
    fn series_of(ingress: &str) -> usize {
        let family = Metrics::get().requests.collect();
        family[0]
            .get_metric()
            .iter()
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "ingress" && l.value() == ingress)
            })
            .count()
    }

    #[test]
    fn cached_series_count_in_the_exported_family() {
        let cache = SeriesCache::default();
        let ok = ["ns", "Ingress", "series-test", "web", "a.example", "/", "GET", "200"];
        let not_found = ["ns", "Ingress", "series-test", "web", "a.example", "/", "GET", "404"];
        for _ in 0..3 {
            cache.get(&ok, "web").requests.inc();
        }
        cache.get(&not_found, "web").requests.inc();
        assert_eq!(count(&ok), 3);
        assert_eq!(count(&not_found), 1);
        assert_eq!(cache.0.load().len(), 2);
    }

    #[test]
    fn known_methods_are_their_own_label_and_any_other_is_one() {
        for known in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ] {
            let method = Method::from_bytes(known.as_bytes()).expect("method");
            assert_eq!(method_label(&method), known);
        }
        // Methods are case-sensitive (RFC 9110 section 9.1): `get` is not GET.
        for other in ["get", "PROPFIND", "MAAAAAAX", "QUERY", "BREW"] {
            let method = Method::from_bytes(other.as_bytes()).expect("method");
            assert_eq!(method_label(&method), "_OTHER", "{other}");
        }
    }

    /// Issue: 20,000 requests with invented methods grew `/metrics` to 212 MB. With
    /// every invented method in one `_OTHER` series, a flood adds one series per status.
    #[test]
    fn a_flood_of_invented_methods_adds_one_series() {
        let cache = SeriesCache::default();
        for i in 0..5_000u32 {
            let name = format!("M{i:X}AAAAX");
            let method = Method::from_bytes(name.as_bytes()).expect("method");
            let labels = [
                "ns",
                "Ingress",
                "method-flood",
                "web",
                "b.example",
                "/",
                method_label(&method),
                "200",
            ];
            cache.get(&labels, "web").requests.inc();
        }
        let get = ["ns", "Ingress", "method-flood", "web", "b.example", "/", "GET", "200"];
        cache.get(&get, "web").requests.inc();
        assert_eq!(series_of("method-flood"), 2);
        assert_eq!(
            count(&[
                "ns",
                "Ingress",
                "method-flood",
                "web",
                "b.example",
                "/",
                "_OTHER",
                "200"
            ]),
            5_000
        );
    }

    #[test]
    fn series_of_rules_that_left_the_table_are_dropped() {
        let m = Metrics::families(&Registry::new());
        let kept = ["ns", "Route", "stale-test", "web", "a.example", "/", "GET", "200"];
        let gone_service = ["ns", "Route", "stale-test", "old", "a.example", "/", "GET", "200"];
        let gone_host = ["ns", "Ingress", "stale-test", "web", "gone.example", "/", "POST", "500"];
        let no_rule = ["", "", "", "", "", "", "GET", "404"];
        for labels in [&kept, &gone_service, &gone_host, &no_rule] {
            m.requests.with_label_values(labels).inc();
            m.request_duration.with_label_values(labels).observe(0.1);
            m.response_size.with_label_values(labels).observe(10.0);
        }
        let live: HashSet<RuleKey<'_>> = [["ns", "Route", "stale-test", "web", "a.example", "/"]].into();
        m.drop_stale_series(&live);
        let left = |vec: &[prometheus::proto::MetricFamily]| vec[0].get_metric().len();
        assert_eq!(left(&m.requests.collect()), 2);
        assert_eq!(left(&m.request_duration.collect()), 2);
        assert_eq!(left(&m.response_size.collect()), 2);
        assert_eq!(
            m.requests.with_label_values(&kept).get(),
            1,
            "a live rule keeps its count"
        );
        assert_eq!(m.requests.with_label_values(&no_rule).get(), 1);
        assert_eq!(
            m.requests.with_label_values(&gone_host).get(),
            0,
            "a dropped series starts again"
        );
    }

    #[test]
    fn counters_alerts_rely_on_exist_before_the_first_event() {
        Metrics::get();
        let text = render();
        for reason in RETRY_REASONS {
            assert!(
                text.contains(&format!("portico_upstream_retries_total{{reason=\"{reason}\"}} ")),
                "{reason}"
            );
        }
        for reason in PROXY_PROTOCOL_ERROR_REASONS {
            assert!(
                text.contains(&format!("portico_proxy_protocol_errors_total{{reason=\"{reason}\"}} ")),
                "{reason}"
            );
        }
        for reason in crate::tls::HANDSHAKE_FAILURE_REASONS {
            assert!(
                text.contains(&format!("portico_tls_handshake_errors_total{{reason=\"{reason}\"}} ")),
                "{reason}"
            );
        }
        let build = format!("portico_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&build), "{text}");
    }
}
