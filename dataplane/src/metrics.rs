//! Prometheus metrics, registered in the process's default registry so the controller's
//! own metrics appear on the same `/metrics` page.
//!
//! Request metrics carry the labels ingress-nginx users already chart: `namespace`,
//! `ingress`, `service`, `host` and `path` name the rule that matched (never the raw URL,
//! which would explode the series count), plus `method` and `status`.

use arc_swap::ArcSwap;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    exponential_buckets,
};
use std::sync::{Arc, OnceLock};

const ROUTE_LABELS: [&str; 7] = ["namespace", "ingress", "service", "host", "path", "method", "status"];

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
    pub ssl_expire_time: prometheus::GaugeVec,
    /// Attempts made again on another endpoint by a Route's retry policy, by `reason`:
    /// `connect-failure`, `reset`, `timeout` or `status`.
    pub upstream_retries: IntCounterVec,
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
}

/// Series a route has recorded, by `service`, `method` and `status` (its other labels
/// never change). A handful per route, so a scan beats hashing; capped so a client
/// spraying invented methods cannot grow it without bound.
#[derive(Default)]
pub struct SeriesCache(ArcSwap<Vec<([String; 3], Arc<RequestSeries>)>>);

impl std::fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeriesCache({} series)", self.0.load().len())
    }
}

const SERIES_PER_ROUTE: usize = 32;

impl SeriesCache {
    /// The series for `labels` (in [`ROUTE_LABELS`] order), whose namespace, ingress,
    /// host and path must be the same on every call for one cache.
    pub fn get(&self, labels: &[&str; 7]) -> Arc<RequestSeries> {
        let [_, _, service, _, _, method, status] = *labels;
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

    fn count(labels: &[&str; 7]) -> u64 {
        Metrics::get().requests.with_label_values(labels).get()
    }

    #[test]
    fn cached_series_count_in_the_exported_family() {
        let cache = SeriesCache::default();
        let ok = ["ns", "series-test", "web", "a.example", "/", "GET", "200"];
        let not_found = ["ns", "series-test", "web", "a.example", "/", "GET", "404"];
        for _ in 0..3 {
            cache.get(&ok).requests.inc();
        }
        cache.get(&not_found).requests.inc();
        assert_eq!(count(&ok), 3);
        assert_eq!(count(&not_found), 1);
        assert_eq!(cache.0.load().len(), 2);
    }

    #[test]
    fn invented_methods_do_not_grow_a_route_without_bound() {
        let cache = SeriesCache::default();
        let methods: Vec<String> = (0..SERIES_PER_ROUTE + 10).map(|i| format!("M{i}")).collect();
        for m in &methods {
            let labels = ["ns", "series-cap", "web", "b.example", "/", m.as_str(), "200"];
            cache.get(&labels).requests.inc();
            assert_eq!(count(&labels), 1, "{m} still counted past the cap");
        }
        assert_eq!(cache.0.load().len(), SERIES_PER_ROUTE);
    }
}
