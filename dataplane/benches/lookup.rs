//! Route lookup at 1,000, 10,000 and 100,000 rules: it must stay flat as the table grows.
//!
//! The table holds the rules `bench/scale.py` generates as Ingresses: N/10 sites, each
//! one host with ten paths (six Prefix, one ImplementationSpecific, three Exact), every
//! tenth site on a wildcard host. Each case cycles through up to 1,024 requests spread
//! over the whole table, so a large table is not measured with one hot cache line; one
//! case repeats a single request, which shows the work a lookup does apart from cache
//! misses.
//!
//! `cargo bench -p portico-dataplane --bench lookup`; `PORTICO_SCALE_SIZES=1000,10000`
//! picks the sizes.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portico_dataplane::table::{
    Backend, HostMatch, PathKind, Route, RouteMeta, RoutePolicy, RouteRule, RoutingTable, TableBuilder,
    UpstreamProtocol,
};

/// Rules per site; keep in step with `bench/scale.py`.
const RULES_PER_SITE: usize = 10;

/// Every `WILDCARD_EVERY`-th site has a wildcard host; keep in step with `bench/scale.py`.
const WILDCARD_EVERY: usize = 10;

/// How many distinct requests each case cycles through.
const KEYS: usize = 1024;

fn sizes() -> Vec<usize> {
    match std::env::var("PORTICO_SCALE_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("PORTICO_SCALE_SIZES: numbers separated by commas")
            })
            .collect(),
        Err(_) => vec![1_000, 10_000, 100_000],
    }
}

fn is_wildcard(site: usize) -> bool {
    site % WILDCARD_EVERY == WILDCARD_EVERY - 1
}

/// The host a site's rule is written with.
fn site_host(site: usize) -> String {
    if is_wildcard(site) {
        format!("*.site-{site}.example.com")
    } else {
        format!("site-{site}.example.com")
    }
}

/// A site's ten paths; keep in step with `bench/scale.py`.
fn site_paths(site: usize) -> [(String, PathKind); RULES_PER_SITE] {
    use PathKind::{Exact, ImplementationSpecific, Prefix};
    [
        ("/".into(), Prefix),
        ("/api".into(), Prefix),
        ("/api/v1".into(), Prefix),
        ("/api/v1/users".into(), Prefix),
        ("/api/v1/orders/items".into(), Prefix),
        (format!("/static/site-{site}"), Prefix),
        ("/docs".into(), ImplementationSpecific),
        ("/healthz".into(), Exact),
        ("/login".into(), Exact),
        ("/api/v1/status".into(), Exact),
    ]
}

fn build_table(rules: usize) -> RoutingTable {
    let mut builder = TableBuilder::new();
    for site in 0..rules / RULES_PER_SITE {
        let namespace = format!("ns-{}", site % 50);
        let service = format!("svc-{site}");
        let backend = Arc::new(Backend::new(
            format!("{namespace}/{service}:80"),
            UpstreamProtocol::Http1,
            Vec::new(),
        ));
        let written = site_host(site);
        let host = HostMatch::parse(&written).expect("generated host is valid");
        for (path, kind) in site_paths(site) {
            let route = Arc::new(Route::new(
                RouteMeta {
                    namespace: namespace.clone(),
                    ingress: format!("site-{site}"),
                    service: service.clone(),
                    host: written.clone(),
                    path: path.clone(),
                    ..Default::default()
                },
                backend.clone(),
                RoutePolicy::default(),
                None,
            ));
            builder
                .add(RouteRule {
                    host: host.clone(),
                    path,
                    kind,
                    route,
                })
                .expect("generated rules are distinct");
        }
    }
    let table = builder.build(1);
    assert_eq!(table.route_count(), rules / RULES_PER_SITE * RULES_PER_SITE);
    table
}

/// Up to [`KEYS`] sites of one kind, spread evenly over the table.
fn spread_sites(rules: usize, wildcard: bool) -> Vec<usize> {
    let sites: Vec<usize> = (0..rules / RULES_PER_SITE)
        .filter(|&s| is_wildcard(s) == wildcard)
        .collect();
    let step = sites.len().div_ceil(KEYS).max(1);
    sites.into_iter().step_by(step).collect()
}

struct Case {
    name: &'static str,
    requests: Vec<(String, String)>,
    /// The rule path each request must match; `None` for a miss.
    expect: Option<&'static str>,
}

fn cases(rules: usize) -> [Case; 4] {
    let exact: Vec<_> = spread_sites(rules, false)
        .into_iter()
        .map(|s| {
            (
                format!("site-{s}.example.com"),
                "/api/v1/orders/items/42/details".into(),
            )
        })
        .collect();
    // The same request every time: the table's size without its cache footprint.
    let same = exact[exact.len() / 2..][..1].to_vec();
    let wildcard = spread_sites(rules, true)
        .into_iter()
        .map(|s| (format!("www.site-{s}.example.com"), "/api/v1/users/7".into()))
        .collect();
    let miss = (0..KEYS)
        .map(|i| (format!("unknown-{i}.example.org"), "/api/v1/orders/items/42".into()))
        .collect();
    [
        Case {
            name: "exact_host_deep_prefix",
            requests: exact,
            expect: Some("/api/v1/orders/items"),
        },
        Case {
            name: "exact_host_deep_prefix_same_request",
            requests: same,
            expect: Some("/api/v1/orders/items"),
        },
        Case {
            name: "wildcard_host",
            requests: wildcard,
            expect: Some("/api/v1/users"),
        },
        Case {
            name: "miss_404",
            requests: miss,
            expect: None,
        },
    ]
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for rules in sizes() {
        let table = build_table(rules);
        for case in cases(rules) {
            for (host, path) in &case.requests {
                let got = table.lookup(host, path).map(|r| r.meta.path.as_str());
                assert_eq!(got, case.expect, "{host}{path}");
            }
            let mut next = 0;
            group.bench_with_input(BenchmarkId::new(case.name, rules), &case.requests, |b, requests| {
                b.iter(|| {
                    let (host, path) = &requests[next];
                    next = if next + 1 == requests.len() { 0 } else { next + 1 };
                    black_box(table.lookup(black_box(host), black_box(path)))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
