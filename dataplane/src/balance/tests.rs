use std::sync::Arc;

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};

use super::*;
use crate::table::{
    Backend, Endpoint, HostMatch, PathKind, Route, RouteAction, RouteMeta, RoutePolicy, RouteRule, RoutingTable,
    TableBuilder, UpstreamProtocol,
};

fn backend(name: &str, addrs: &[&str]) -> Arc<Backend> {
    let eps = addrs
        .iter()
        .map(|a| Endpoint {
            addr: a.parse().unwrap(),
        })
        .collect();
    Arc::new(Backend::new(name, UpstreamProtocol::Http1, eps))
}

fn least_request() -> Balance {
    Balance {
        policy: LbPolicy::LeastRequest,
        affinity_cookie: None,
    }
}

/// A table with one route to `backend`, as the controller builds after every change.
fn table_with(backend: Arc<Backend>) -> RoutingTable {
    let mut t = TableBuilder::new();
    let action = RouteAction {
        balance: least_request(),
        ..RouteAction::default()
    };
    let route = Route::new(
        RouteMeta::default(),
        backend,
        RoutePolicy::default(),
        Some(Arc::new(action)),
    );
    t.add(RouteRule {
        host: HostMatch::Any,
        path: "/".into(),
        kind: PathKind::Prefix,
        route: Arc::new(route),
    })
    .unwrap();
    t.build(1)
}

/// Round robin visits every endpoint in turn, and a retry avoids the endpoints tried.
#[test]
fn round_robin_visits_each_endpoint_and_avoids_tried_ones() {
    let b = backend("b", &["198.18.0.1:80", "198.18.0.2:80", "198.18.0.3:80"]);
    let picked: Vec<_> = (0..6).map(|_| round_robin(&b, &[]).unwrap().addr).collect();
    assert_eq!(&picked[..3], &picked[3..]);
    let mut uniq = picked[..3].to_vec();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 3);
    let first = b.endpoints[0].addr;
    for _ in 0..5 {
        assert_ne!(round_robin(&b, &[first]).unwrap().addr, first);
    }
    let single = backend("s", &["198.18.0.1:80"]);
    assert!(round_robin(&single, &[first]).is_none());
    assert!(round_robin(&backend("e", &[]), &[]).is_none());
}

/// Consistent hashing keeps every key whose endpoint stays where it was when
/// another endpoint is removed.
#[test]
fn consistent_hash_moves_only_keys_of_the_removed_endpoint() {
    let all = backend(
        "b",
        &["198.18.0.1:80", "198.18.0.2:80", "198.18.0.3:80", "198.18.0.4:80"],
    );
    let fewer = backend("b", &["198.18.0.1:80", "198.18.0.2:80", "198.18.0.4:80"]);
    let balance = Balance {
        policy: LbPolicy::ConsistentHash(HashOn::ClientIp),
        affinity_cookie: None,
    };
    let mut used = std::collections::HashSet::new();
    for i in 0..1000u64 {
        let key = RequestKey {
            hash: Some(hash_bytes(&i.to_le_bytes())),
            ..RequestKey::default()
        };
        let before = balance.pick(&all, key, &[]).unwrap().addr;
        let after = balance.pick(&fewer, key, &[]).unwrap().addr;
        used.insert(before);
        if before.to_string() != "198.18.0.3:80" {
            assert_eq!(before, after, "key {i} moved");
        }
    }
    assert_eq!(used.len(), 4, "every endpoint gets keys");
}

/// Least request prefers the endpoint with fewer requests in flight.
#[test]
fn least_request_prefers_idle_endpoint() {
    let b = backend("b", &["198.18.0.1:80", "198.18.0.2:80"]);
    let busy: Vec<_> = (0..5)
        .filter_map(|_| InFlight::start(&b, "198.18.0.1:80".parse().unwrap()))
        .collect();
    for _ in 0..20 {
        let e = least_request().pick(&b, RequestKey::default(), &[]).unwrap();
        assert_eq!(e.addr.to_string(), "198.18.0.2:80");
    }
    drop(busy);
    assert_eq!(b.state().in_flight(0), 0);
}

/// Under load with least request, an EndpointSlice change (a new table with one more
/// endpoint) does not send the next requests to the busy endpoint: its requests in
/// flight count in the new table too, and end against the same counter.
#[test]
fn least_request_keeps_in_flight_counts_across_a_table_swap() {
    let registry = Registry::new();
    let busy_addr = "198.18.0.1:80".parse().unwrap();
    let before = table_with(backend("ns/svc:80", &["198.18.0.1:80", "198.18.0.2:80"]));
    registry.attach(&before);
    let old = before.backends().remove(0);
    let busy: Vec<_> = (0..8).filter_map(|_| InFlight::start(&old, busy_addr)).collect();
    assert_eq!(busy.len(), 8);

    // The slice gains an endpoint: a new table, new Backend objects.
    let after = table_with(backend(
        "ns/svc:80",
        &["198.18.0.2:80", "198.18.0.1:80", "198.18.0.3:80"],
    ));
    registry.attach(&after);
    drop(before);
    let new = after.backends().remove(0);
    let busy_index = new.position(busy_addr).unwrap();
    assert_eq!(new.state().in_flight(busy_index), 8, "the busy endpoint is still busy");
    for _ in 0..50 {
        let e = least_request().pick(&new, RequestKey::default(), &[]).unwrap();
        assert_ne!(
            e.addr, busy_addr,
            "a request went to the busy endpoint right after the change"
        );
    }
    // Requests that started on the old table end against the counter the new one reads.
    drop(busy);
    assert_eq!(new.state().in_flight(busy_index), 0);
}

/// The rotation carries over a swap, and the registry forgets endpoints no table
/// holds any more.
#[test]
fn registry_keeps_rotation_and_forgets_removed_endpoints() {
    let registry = Registry::new();
    let first = table_with(backend("ns/svc:80", &["198.18.0.1:80", "198.18.0.2:80"]));
    registry.attach(&first);
    let b = first.backends().remove(0);
    let next = round_robin(&b, &[]).unwrap().addr;
    let second = table_with(backend("ns/svc:80", &["198.18.0.1:80", "198.18.0.2:80"]));
    registry.attach(&second);
    drop((first, b));
    let b2 = second.backends().remove(0);
    assert_ne!(round_robin(&b2, &[]).unwrap().addr, next, "the rotation went on");
    let third = table_with(backend("ns/svc:80", &["198.18.0.9:80"]));
    registry.attach(&third);
    drop((second, b2));
    registry.attach(&third);
    assert_eq!(registry.endpoint_count(), 1);
}

/// The affinity cookie brings a client back to its endpoint, and is set only when
/// the request did not already carry it.
#[test]
fn affinity_cookie_round_trip() {
    let b = backend("b", &["198.18.0.1:80", "198.18.0.2:80", "198.18.0.3:80"]);
    let balance = Balance {
        policy: LbPolicy::RoundRobin,
        affinity_cookie: Some(AffinityCookie::named("route")),
    };
    let first = balance.pick(&b, RequestKey::default(), &[]).unwrap().addr;
    let set = balance.affinity_cookie(&b, first, RequestKey::default()).unwrap();
    let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, HeaderValue::from_str(&format!("a=b; {pair}")).unwrap());
    let root = http::Uri::from_static("/");
    let key = balance.request_key(&facts(&headers, &root, false));
    for _ in 0..10 {
        assert_eq!(balance.pick(&b, key, &[]).unwrap().addr, first);
    }
    assert!(balance.affinity_cookie(&b, first, key).is_none());
}

/// ingress-nginx's `sticky.lua` and `lua-resty-cookie`: the attributes in their order;
/// `Secure` follows the request's scheme unless `session-cookie-secure` says; with
/// `session-cookie-conditional-samesite-none`, `SameSite=None` is left out for the
/// clients `util/same_site.lua` lists.
#[test]
fn affinity_cookie_attributes() {
    let c = AffinityCookie {
        name: "route".into(),
        path: Some("/app".into()),
        domain: Some("example.com".into()),
        max_age: Some(172800),
        expires: Some(60),
        secure: None,
        same_site: Some("None".into()),
        conditional_same_site_none: true,
    };
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let plain = RequestKey::default();
    assert_eq!(
        c.set_cookie(0xab, plain, now),
        "route=00000000000000ab; Expires=Tue, 14 Nov 2023 22:14:20 GMT; Max-Age=172800; Domain=example.com; \
         Path=/app; HttpOnly; SameSite=None"
    );
    let https = RequestKey { tls: true, ..plain };
    assert!(c.set_cookie(1, https, now).contains("; Secure; HttpOnly"));
    let forced = AffinityCookie {
        secure: Some(false),
        ..c.clone()
    };
    assert!(!forced.set_cookie(1, https, now).contains("Secure"));
    let old_chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/62.0.3202.94 Safari/537.36";
    let new_chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36";
    let balance = Balance {
        policy: LbPolicy::RoundRobin,
        affinity_cookie: Some(c.clone()),
    };
    for (ua, rejects) in [(old_chrome, true), (new_chrome, false)] {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::USER_AGENT, HeaderValue::from_static(ua));
        let root = http::Uri::from_static("/");
        let key = balance.request_key(&facts(&headers, &root, true));
        assert_eq!(key.rejects_same_site_none, rejects);
        assert_eq!(c.set_cookie(1, key, now).contains("SameSite=None"), !rejects, "{ua}");
    }
    let named = AffinityCookie::named("INGRESSCOOKIE");
    assert_eq!(
        named.set_cookie(1, plain, now),
        "INGRESSCOOKIE=0000000000000001; HttpOnly"
    );
}

/// A request to `target` with `headers`, from 127.0.0.1, Host `Shop.Example:8443`.
fn facts<'a>(headers: &'a HeaderMap, target: &'a http::Uri, tls: bool) -> RequestFacts<'a> {
    RequestFacts {
        headers,
        target,
        path: target.path(),
        method: &http::Method::GET,
        host: b"Shop.Example:8443",
        client: "127.0.0.1".parse().unwrap(),
        tls,
    }
}

/// ingress-nginx's `upstream-hash-by` is an nginx complex value (its `util.lua`
/// `parse_complex_value`): `$request_uri` keys on path and query as sent, so one URI
/// always reaches one endpoint and different URIs spread; text and several variables
/// join, `$host` is lower case without the port.
#[test]
fn joined_keys_follow_nginx_variables() {
    let b = backend(
        "b",
        &["198.18.0.1:80", "198.18.0.2:80", "198.18.0.3:80", "198.18.0.4:80"],
    );
    let by = |parts: Vec<HashPart>| Balance {
        policy: LbPolicy::ConsistentHash(HashOn::Joined(parts)),
        affinity_cookie: None,
    };
    let headers = HeaderMap::new();
    let uri = by(vec![HashPart::RequestUri]);
    let pick = |balance: &Balance, target: &str| {
        let target: http::Uri = target.parse().unwrap();
        let key = balance.request_key(&facts(&headers, &target, false));
        balance.pick(&b, key, &[]).unwrap().addr
    };
    let first = pick(&uri, "/a?x=1");
    for _ in 0..20 {
        assert_eq!(pick(&uri, "/a?x=1"), first);
    }
    let spread: std::collections::HashSet<_> = (0..64).map(|i| pick(&uri, &format!("/item/{i}"))).collect();
    assert_eq!(spread.len(), 4, "64 URIs over 4 endpoints reach them all");

    let key = |parts: Vec<HashPart>, target: &str, tls: bool| {
        let target: http::Uri = target.parse().unwrap();
        joined_key(&parts, &facts(&headers, &target, tls))
    };
    assert_eq!(key(vec![HashPart::RequestUri], "/a?x=1", false), b"/a?x=1");
    assert_eq!(key(vec![HashPart::Uri], "/a?x=1", false), b"/a");
    assert_eq!(key(vec![HashPart::Args], "/a?x=1&y=2", false), b"x=1&y=2");
    assert_eq!(key(vec![HashPart::Arg("y".into())], "/a?x=1&y=2&y=3", false), b"2");
    assert_eq!(key(vec![HashPart::Arg("z".into())], "/a?x=1", false), b"");
    assert_eq!(
        key(
            vec![
                HashPart::Scheme,
                HashPart::Text("://".into()),
                HashPart::Host,
                HashPart::RequestUri
            ],
            "/p",
            true
        ),
        b"https://shop.example/p"
    );
    assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
    assert_eq!(strip_port(b"[::1]"), b"[::1]");
    assert_eq!(strip_port(b"host"), b"host");
}
