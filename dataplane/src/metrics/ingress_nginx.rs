//! ingress-nginx's metric names and labels, exported beside Portico's own when
//! `--ingress-nginx-metrics` is on, so the dashboards and alerts written for
//! ingress-nginx keep working. Names, labels, help and default buckets follow
//! ingress-nginx's `internal/ingress/metric/collectors` (`socket.go`, `controller.go`,
//! `process.go`, `nginx_status.go`) and its `--time-buckets`, `--length-buckets` and
//! `--size-buckets` defaults.
//!
//! What each series holds in Portico:
//!
//! | ingress-nginx | Portico |
//! |---|---|
//! | `requests`, `request_duration_seconds`, `request_size`, `response_size`, `bytes_sent` | the same request as `portico_requests_total` and its histograms (sizes: request head plus declared body; response body bytes) |
//! | `header_duration_seconds` | request sent upstream until its response head arrived |
//! | `response_duration_seconds` | request sent upstream until the response's last byte was sent on |
//! | `config_hash`, `config_last_reload_successful`, `_timestamp_seconds`, `success` | routing table swaps: the generation, always 1, the time, the count |
//! | `errors` | 0: a table swap does not fail (broken objects are diagnostics) |
//! | `ssl_expire_time_seconds` | `portico_ssl_expire_time_seconds` of each host |
//! | `nginx_process_*` | this process (`num_procs` 1), its client connections |
//! | `connect_duration_seconds`, `ingress_upstream_latency_seconds` | nginx's `$upstream_connect_time`: the TCP connect and TLS handshake to the endpoint, 0 on a kept-alive connection; the second a histogram where ingress-nginx has a summary (its `_sum` and `_count` are the same series), labelled `ingress`, `namespace`, `service`, `canary` |
//!
//! Not exported, because Portico does not have them: the connection states `reading`,
//! `writing`, `waiting`.
//!
//! Every label value is bounded as Portico's own are: `host` and `path` are the matched
//! rule's as written, `method` is a known method or `_OTHER`, `status` a status code,
//! `canary` a Service of the table; series of rules that leave the table are dropped
//! with Portico's ([`super::drop_stale_series`]).

use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, MetricFamily};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Who exports the metrics: ingress-nginx's constant labels `controller_namespace`,
/// `controller_class` and `controller_pod`.
#[derive(Clone, Debug)]
pub struct Controller {
    pub namespace: String,
    pub class: String,
    pub pod: String,
}

/// ingress-nginx's `requestTags` with `host` (`--metrics-per-host`, on by default).
const REQUEST_LABELS: [&str; 8] = [
    "status",
    "method",
    "path",
    "namespace",
    "ingress",
    "service",
    "canary",
    "host",
];

/// `ingress_upstream_latency_seconds`'s labels, as ingress-nginx's.
const LATENCY_LABELS: [&str; 4] = ["ingress", "namespace", "service", "canary"];

/// The metrics, once [`enable`] has run; `None` (the default) records nothing.
pub(crate) fn get() -> Option<&'static IngressNginx> {
    ENABLED.get()
}

static ENABLED: OnceLock<IngressNginx> = OnceLock::new();

/// Turns the ingress-nginx metrics on for the life of the process, in the default
/// registry. Call before the first table is swapped in; a second call changes nothing.
pub fn enable(controller: Controller) {
    ENABLED.get_or_init(|| {
        let m = IngressNginx::new(prometheus::default_registry(), controller);
        // Present from the start, as ingress-nginx's: alerts on errors see a zero.
        m.reload_errors.inc_by(0);
        m
    });
}

pub(crate) struct IngressNginx {
    requests: IntCounterVec,
    request_duration: HistogramVec,
    response_duration: HistogramVec,
    header_duration: HistogramVec,
    request_size: HistogramVec,
    response_size: HistogramVec,
    bytes_sent: HistogramVec,
    connect_duration: HistogramVec,
    upstream_latency: HistogramVec,
    config_hash: Gauge,
    config_success: IntGauge,
    config_success_time: Gauge,
    reloads: IntCounter,
    reload_errors: IntCounter,
    ssl_expire_time: GaugeVec,
    controller: Controller,
}

/// One request label set's series, resolved once per route, method, status and Service
/// (see [`super::SeriesCache`]).
pub(crate) struct Series {
    requests: IntCounter,
    request_duration: Histogram,
    response_duration: Histogram,
    header_duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
    bytes_sent: Histogram,
    connect_duration: Histogram,
    upstream_latency: Histogram,
}

/// What one request did, in seconds and bytes.
pub(crate) struct Observation {
    pub duration: f64,
    /// From sending the request upstream to its response head; `None` when no endpoint
    /// answered (a redirect, an error of Portico's).
    pub upstream_header: Option<f64>,
    /// From sending the request upstream to the response's end.
    pub upstream_response: Option<f64>,
    pub request_size: u64,
    pub response_size: u64,
    /// Connecting to the endpoint (nginx's `$upstream_connect_time`): 0 on a kept-alive
    /// connection; `None` when no endpoint was tried.
    pub upstream_connect: Option<f64>,
}

impl Series {
    pub(crate) fn record(&self, o: &Observation) {
        self.requests.inc();
        self.request_duration.observe(o.duration);
        self.request_size.observe(o.request_size as f64);
        self.response_size.observe(o.response_size as f64);
        self.bytes_sent.observe(o.response_size as f64);
        if let Some(secs) = o.upstream_header {
            self.header_duration.observe(secs);
        }
        if let Some(secs) = o.upstream_response {
            self.response_duration.observe(secs);
        }
        if let Some(secs) = o.upstream_connect {
            self.connect_duration.observe(secs);
            self.upstream_latency.observe(secs);
        }
    }
}

fn must<T>(name: &str, made: prometheus::Result<T>) -> T {
    // The definitions are constants of this file; a failure is a bug caught by its tests.
    made.unwrap_or_else(|e| panic!("metric {name}: {e}"))
}

impl IngressNginx {
    fn new(r: &Registry, controller: Controller) -> IngressNginx {
        let constant: HashMap<String, String> = [
            ("controller_namespace", &controller.namespace),
            ("controller_class", &controller.class),
            ("controller_pod", &controller.pod),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
        let opts = |name: &str, help: &str| {
            Opts::new(name, help)
                .namespace("nginx_ingress_controller")
                .const_labels(constant.clone())
        };
        let hist = |name: &str, help: &str, buckets: Vec<f64>| {
            let o = opts(name, help);
            let h = HistogramOpts::from(o).buckets(buckets);
            super::register(r, must(name, HistogramVec::new(h, &REQUEST_LABELS)))
        };
        // prometheus.DefBuckets, LinearBuckets(10, 10, 10), ExponentialBuckets(10, 10, 7).
        let time = || vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let length = || (1..=10).map(|i| f64::from(i) * 10.0).collect::<Vec<_>>();
        let size = || (1..=7).map(|i| 10f64.powi(i)).collect::<Vec<_>>();
        let process = ProcessMetrics::new(&constant);
        let _ = r.register(Box::new(process));
        IngressNginx {
            requests: super::register(
                r,
                must(
                    "requests",
                    IntCounterVec::new(opts("requests", "The total number of client requests"), &REQUEST_LABELS),
                ),
            ),
            request_duration: hist(
                "request_duration_seconds",
                "The request processing time in milliseconds",
                time(),
            ),
            response_duration: hist(
                "response_duration_seconds",
                "The time spent on receiving the response from the upstream server",
                time(),
            ),
            header_duration: hist(
                "header_duration_seconds",
                "The time spent on receiving first header from the upstream server",
                time(),
            ),
            request_size: hist(
                "request_size",
                "The request length (including request line, header, and request body)",
                length(),
            ),
            response_size: hist(
                "response_size",
                "The response length (including request line, header, and request body)",
                length(),
            ),
            bytes_sent: hist("bytes_sent", "DEPRECATED The number of bytes sent to a client", size()),
            connect_duration: hist(
                "connect_duration_seconds",
                "The time spent on establishing a connection with the upstream server",
                time(),
            ),
            // ingress-nginx's is a summary; the Rust client has none, and a histogram's
            // `_sum` and `_count` (all its dashboard reads) are the same series.
            upstream_latency: {
                let h = HistogramOpts::from(opts(
                    "ingress_upstream_latency_seconds",
                    "Upstream service latency per Ingress",
                ))
                .buckets(time());
                super::register(
                    r,
                    must(
                        "ingress_upstream_latency_seconds",
                        HistogramVec::new(h, &LATENCY_LABELS),
                    ),
                )
            },
            config_hash: super::register(
                r,
                must(
                    "config_hash",
                    Gauge::with_opts(opts("config_hash", "Running configuration hash actually running")),
                ),
            ),
            config_success: super::register(
                r,
                must(
                    "config_last_reload_successful",
                    IntGauge::with_opts(opts(
                        "config_last_reload_successful",
                        "Whether the last configuration reload attempt was successful",
                    )),
                ),
            ),
            config_success_time: super::register(
                r,
                must(
                    "config_last_reload_successful_timestamp_seconds",
                    Gauge::with_opts(opts(
                        "config_last_reload_successful_timestamp_seconds",
                        "Timestamp of the last successful configuration reload.",
                    )),
                ),
            ),
            reloads: super::register(
                r,
                must(
                    "success",
                    IntCounter::with_opts(opts(
                        "success",
                        "Cumulative number of Ingress controller reload operations",
                    )),
                ),
            ),
            reload_errors: super::register(
                r,
                must(
                    "errors",
                    IntCounter::with_opts(opts(
                        "errors",
                        "Cumulative number of Ingress controller errors during reload operations",
                    )),
                ),
            ),
            // Labelled as ingress-nginx's: `namespace` and `class` are the controller's.
            ssl_expire_time: super::register(
                r,
                must(
                    "ssl_expire_time_seconds",
                    GaugeVec::new(
                        Opts::new(
                            "ssl_expire_time_seconds",
                            "Number of seconds since 1970 to the SSL Certificate expire.",
                        )
                        .namespace("nginx_ingress_controller"),
                        &["namespace", "class", "host"],
                    ),
                ),
            ),
            controller,
        }
    }

    /// The series of Portico's `labels` (in [`super::ROUTE_LABELS`] order). `rule_service`
    /// is the Service the rule names: when a split sent the request to another, that one
    /// is the `canary` label, as ingress-nginx labels a request its canary took.
    pub(crate) fn series(&self, labels: &[&str; 8], rule_service: &str) -> Series {
        let [namespace, _kind, ingress, service, host, path, method, status] = *labels;
        let (service, canary) = if service == rule_service || rule_service.is_empty() {
            (service, "")
        } else {
            (rule_service, service)
        };
        let values = [status, method, path, namespace, ingress, service, canary, host];
        Series {
            requests: self.requests.with_label_values(&values),
            request_duration: self.request_duration.with_label_values(&values),
            response_duration: self.response_duration.with_label_values(&values),
            header_duration: self.header_duration.with_label_values(&values),
            request_size: self.request_size.with_label_values(&values),
            response_size: self.response_size.with_label_values(&values),
            bytes_sent: self.bytes_sent.with_label_values(&values),
            connect_duration: self.connect_duration.with_label_values(&values),
            upstream_latency: self
                .upstream_latency
                .with_label_values(&[ingress, namespace, service, canary]),
        }
    }

    /// A table was swapped in: ingress-nginx's reload metrics and certificate expiry.
    pub(crate) fn table_swapped<'a>(
        &self,
        generation: u64,
        now: f64,
        certificates: impl Iterator<Item = (String, f64)> + 'a,
    ) {
        self.config_hash.set(generation as f64);
        self.config_success.set(1);
        self.config_success_time.set(now.floor());
        self.reloads.inc();
        self.ssl_expire_time.reset();
        let c = &self.controller;
        for (host, not_after) in certificates.filter(|(host, _)| !host.is_empty()) {
            self.ssl_expire_time
                .with_label_values(&[c.namespace.as_str(), c.class.as_str(), host.as_str()])
                .set(not_after);
        }
    }

    /// Drops the request series of rules not in `live`: (namespace, ingress, Service,
    /// host, path), the Service being the one that got the request.
    pub(crate) fn drop_stale_series(&self, live: &HashSet<[&str; 5]>) {
        // `ingress_upstream_latency_seconds` is per Ingress and Service: kept while any
        // rule of theirs is live (a live route's cached series must stay registered).
        let services: HashSet<[&str; 3]> = live.iter().map(|[n, i, s, _, _]| [*n, *i, *s]).collect();
        let family = self.requests.collect();
        for metric in family.first().map_or(&[][..], |f| f.get_metric()) {
            let mut values = [""; 8];
            for pair in metric.get_label() {
                if let Some(i) = REQUEST_LABELS.iter().position(|n| *n == pair.name()) {
                    values[i] = pair.value();
                }
            }
            let [_, _, path, namespace, ingress, service, canary, host] = values;
            let got = if canary.is_empty() { service } else { canary };
            if ingress.is_empty() || live.contains(&[namespace, ingress, got, host, path]) {
                continue;
            }
            let _ = self.requests.remove_label_values(&values);
            for h in [
                &self.request_duration,
                &self.response_duration,
                &self.header_duration,
                &self.request_size,
                &self.response_size,
                &self.bytes_sent,
                &self.connect_duration,
            ] {
                let _ = h.remove_label_values(&values);
            }
            if !services.contains(&[namespace, ingress, got]) {
                let _ = self
                    .upstream_latency
                    .remove_label_values(&[ingress, namespace, service, canary]);
            }
        }
    }
}

/// `nginx_ingress_controller_nginx_process_*`: ingress-nginx reports the nginx
/// processes; Portico has one process, which serves the traffic itself. Read at scrape
/// time, never on the request path.
struct ProcessMetrics {
    process: prometheus::process_collector::ProcessCollector,
    constant: Vec<LabelPair>,
    connections: IntGauge,
    connections_total: IntCounterVec,
    num_procs: IntGauge,
}

impl ProcessMetrics {
    fn new(constant: &HashMap<String, String>) -> ProcessMetrics {
        let opts = |name: &str, help: &str| {
            Opts::new(name, help)
                .namespace("nginx_ingress_controller")
                .subsystem("nginx_process")
                .const_labels(constant.clone())
        };
        let mut labels: Vec<LabelPair> = constant
            .iter()
            .map(|(k, v)| {
                let mut pair = LabelPair::default();
                pair.set_name(k.clone());
                pair.set_value(v.clone());
                pair
            })
            .collect();
        labels.sort_by(|a, b| a.name().cmp(b.name()));
        let process = prometheus::process_collector::ProcessCollector::new(
            std::process::id() as i32,
            "nginx_ingress_controller_nginx",
        );
        ProcessMetrics {
            process,
            constant: labels,
            connections: must(
                "nginx_process_connections",
                IntGauge::with_opts(
                    opts(
                        "connections",
                        "current number of client connections with state {active, reading, writing, waiting}",
                    )
                    .const_label("state", "active"),
                ),
            ),
            connections_total: must(
                "nginx_process_connections_total",
                IntCounterVec::new(
                    opts(
                        "connections_total",
                        "total number of connections with state {accepted, handled}",
                    ),
                    &["state"],
                ),
            ),
            num_procs: must(
                "nginx_process_num_procs",
                IntGauge::with_opts(opts("num_procs", "number of processes")),
            ),
        }
    }
}

/// The process collector's families kept, and the name ingress-nginx gives each.
const PROCESS_FAMILIES: [(&str, &str); 4] = [
    (
        "nginx_ingress_controller_nginx_process_cpu_seconds_total",
        "nginx_ingress_controller_nginx_process_cpu_seconds_total",
    ),
    (
        "nginx_ingress_controller_nginx_process_resident_memory_bytes",
        "nginx_ingress_controller_nginx_process_resident_memory_bytes",
    ),
    (
        "nginx_ingress_controller_nginx_process_virtual_memory_bytes",
        "nginx_ingress_controller_nginx_process_virtual_memory_bytes",
    ),
    (
        "nginx_ingress_controller_nginx_process_start_time_seconds",
        "nginx_ingress_controller_nginx_process_oldest_start_time_seconds",
    ),
];

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.process.desc();
        descs.extend(self.connections.desc());
        descs.extend(self.connections_total.desc());
        descs.extend(self.num_procs.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = super::Metrics::get();
        self.connections.set(m.downstream_connections.get());
        let accepted = m.downstream_connections_total.get();
        for state in ["accepted", "handled"] {
            let counter = self.connections_total.with_label_values(&[state]);
            counter.inc_by(accepted.saturating_sub(counter.get()));
        }
        self.num_procs.set(1);
        let mut families = self.process.collect();
        families.retain_mut(|family| {
            let Some((_, name)) = PROCESS_FAMILIES.iter().find(|(from, _)| *from == family.name()) else {
                return false;
            };
            family.set_name((*name).to_owned());
            for metric in family.mut_metric() {
                metric.set_label(self.constant.clone());
            }
            true
        });
        families.extend(self.connections.collect());
        families.extend(self.connections_total.collect());
        families.extend(self.num_procs.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> Controller {
        Controller {
            namespace: "ingress".into(),
            class: "portico.dev/ingress-controller".into(),
            pod: "portico-0".into(),
        }
    }

    fn text(r: &Registry) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&r.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// ingress-nginx's dashboards select by the controller labels and group by
    /// `ingress`, `host`, `path`, `method` and `status`: one request carries them all.
    #[test]
    fn a_request_is_counted_under_ingress_nginx_names_and_labels() {
        let r = Registry::new();
        let m = IngressNginx::new(&r, controller());
        let series = m.series(
            &["shop", "Ingress", "web", "web", "a.example", "/api", "GET", "200"],
            "web",
        );
        series.record(&Observation {
            duration: 0.02,
            upstream_header: Some(0.01),
            upstream_response: Some(0.015),
            request_size: 80,
            response_size: 512,
            upstream_connect: Some(0.002),
        });
        let text = text(&r);
        let labels = "canary=\"\",controller_class=\"portico.dev/ingress-controller\",\
                      controller_namespace=\"ingress\",controller_pod=\"portico-0\",host=\"a.example\",\
                      ingress=\"web\",method=\"GET\",namespace=\"shop\",path=\"/api\",service=\"web\",status=\"200\"";
        for line in [
            format!("nginx_ingress_controller_requests{{{labels}}} 1"),
            format!("nginx_ingress_controller_request_duration_seconds_bucket{{{labels},le=\"0.025\"}} 1"),
            format!("nginx_ingress_controller_header_duration_seconds_count{{{labels}}} 1"),
            format!("nginx_ingress_controller_response_duration_seconds_sum{{{labels}}} 0.015"),
            format!("nginx_ingress_controller_request_size_bucket{{{labels},le=\"90\"}} 1"),
            format!("nginx_ingress_controller_response_size_sum{{{labels}}} 512"),
            format!("nginx_ingress_controller_bytes_sent_bucket{{{labels},le=\"1000\"}} 1"),
            format!("nginx_ingress_controller_connect_duration_seconds_sum{{{labels}}} 0.002"),
            "nginx_ingress_controller_ingress_upstream_latency_seconds_count{canary=\"\",controller_class=\"portico.dev/ingress-controller\",\
             controller_namespace=\"ingress\",controller_pod=\"portico-0\",ingress=\"web\",namespace=\"shop\",service=\"web\"} 1"
                .to_string(),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
    }

    /// ingress-nginx labels a request its canary took with the canary's upstream and
    /// keeps the main Service in `service`.
    #[test]
    fn a_request_a_split_sent_elsewhere_names_that_service_as_canary() {
        let r = Registry::new();
        let m = IngressNginx::new(&r, controller());
        m.series(&["shop", "Ingress", "web", "web-v2", "", "/", "GET", "200"], "web")
            .requests
            .inc();
        assert!(text(&r).contains("canary=\"web-v2\""));
        assert!(text(&r).contains("service=\"web\""));
    }

    #[test]
    fn series_of_rules_that_left_the_table_are_dropped_from_the_ingress_nginx_names() {
        let r = Registry::new();
        let m = IngressNginx::new(&r, controller());
        let kept = ["shop", "Ingress", "web", "web", "a.example", "/", "GET", "200"];
        let gone = ["shop", "Ingress", "old", "web", "a.example", "/", "GET", "200"];
        for labels in [&kept, &gone] {
            m.series(labels, "web").record(&Observation {
                duration: 0.1,
                upstream_header: None,
                upstream_response: None,
                request_size: 1,
                response_size: 1,
                upstream_connect: Some(0.0),
            });
        }
        m.drop_stale_series(&[["shop", "web", "web", "a.example", "/"]].into());
        let text = text(&r);
        assert!(text.contains("ingress=\"web\""));
        assert!(!text.contains("ingress=\"old\""), "{text}");
        assert!(text.contains("nginx_ingress_controller_ingress_upstream_latency_seconds_count{canary=\"\",controller_class=\"portico.dev/ingress-controller\",controller_namespace=\"ingress\",controller_pod=\"portico-0\",ingress=\"web\""), "{text}");
    }

    /// The dashboards' "Config Reloads", "Last Config Failed" and certificate panels.
    #[test]
    fn a_table_swap_is_a_successful_reload_with_its_certificates() {
        let r = Registry::new();
        let m = IngressNginx::new(&r, controller());
        m.table_swapped(
            7,
            1_700_000_000.5,
            [("a.example".to_owned(), 1.8e9), (String::new(), 1.9e9)].into_iter(),
        );
        let text = text(&r);
        let constant = "controller_class=\"portico.dev/ingress-controller\",controller_namespace=\"ingress\",controller_pod=\"portico-0\"";
        for line in [
            format!("nginx_ingress_controller_config_hash{{{constant}}} 7"),
            format!("nginx_ingress_controller_config_last_reload_successful{{{constant}}} 1"),
            format!("nginx_ingress_controller_config_last_reload_successful_timestamp_seconds{{{constant}}} 1700000000"),
            format!("nginx_ingress_controller_success{{{constant}}} 1"),
            "nginx_ingress_controller_ssl_expire_time_seconds{class=\"portico.dev/ingress-controller\",host=\"a.example\",namespace=\"ingress\"} 1800000000".to_owned(),
        ] {
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("host=\"\""),
            "the default certificate has no host: {text}"
        );
    }

    #[test]
    fn the_process_is_reported_as_ingress_nginx_reports_nginx() {
        let r = Registry::new();
        let _m = IngressNginx::new(&r, controller());
        let text = text(&r);
        for name in [
            "nginx_ingress_controller_nginx_process_cpu_seconds_total{",
            "nginx_ingress_controller_nginx_process_resident_memory_bytes{",
            "nginx_ingress_controller_nginx_process_oldest_start_time_seconds{",
            "nginx_ingress_controller_nginx_process_connections{",
            "nginx_ingress_controller_nginx_process_num_procs{",
        ] {
            let line = text.lines().find(|l| l.starts_with(name));
            assert!(
                line.is_some_and(|l| l.contains("controller_pod=\"portico-0\"")),
                "{name} in\n{text}"
            );
        }
        assert!(text.contains("state=\"active\""));
    }
}
