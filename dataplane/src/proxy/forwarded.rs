//! The client as a trusted proxy in front describes it ([`ForwardedPolicy`]), per
//! request: its address, its scheme, the host and port it asked for. The semantics are
//! ingress-nginx's template: nginx's `real_ip` module (`real_ip_header`,
//! `set_real_ip_from`, `real_ip_recursive on`) and its `$pass_access_scheme`,
//! `$pass_server_port`, `$best_http_host` and `$full_x_forwarded_for` maps.

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderValue};

use super::{ConnInfo, ip_text, shared_value};
use crate::filter::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PORT, X_FORWARDED_PROTO};
use crate::table::ForwardedPolicy;

/// The connection as the request describes it, or `None` when nothing in it is
/// believed (the peer is not trusted, or the request says nothing).
pub(super) fn client_view(policy: &ForwardedPolicy, conn: &ConnInfo, headers: &HeaderMap) -> Option<ConnInfo> {
    // The PROXY protocol alone: its address is the connection's already.
    if !policy.use_forwarded_headers && policy.real_ip_header.is_none() {
        return None;
    }
    let socket_peer = conn.socket_peer();
    if !policy.trusts(socket_peer) {
        return None;
    }
    let mut view = conn.clone();
    if policy.use_forwarded_headers {
        // `$pass_access_scheme`: a redirect to HTTPS is due only when this says http.
        // A PROXY protocol header naming port 443 has the last word, as in
        // ingress-nginx's `lua_ingress.lua`.
        if let Some(proto) = non_empty(headers, &X_FORWARDED_PROTO).filter(|_| !conn.https_by_proxy_protocol) {
            view.tls = !proto.as_bytes().eq_ignore_ascii_case(b"http");
        }
        if let Some(port) = non_empty(headers, &X_FORWARDED_PORT) {
            view.port = port.clone();
        }
        view.forwarded_host = non_empty(headers, &X_FORWARDED_HOST).cloned();
    }
    if let Some(name) = &policy.real_ip_header {
        let values = headers.get_all(name).iter().map(HeaderValue::as_bytes);
        if let Some(ip) = policy.real_ip(values) {
            view.peer = SocketAddr::new(ip, conn.peer.port());
            view.client_ip = shared_value(ip_text(ip));
        }
    }
    if policy.use_forwarded_headers && policy.compute_full_forwarded_for {
        // "$http_x_forwarded_for, $realip_remote_addr": the peer the list came from
        // (the PROXY protocol's address when that gave one).
        let mut list = Vec::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            list.extend_from_slice(value.as_bytes());
            list.extend_from_slice(b", ");
        }
        list.extend_from_slice(ip_text(conn.peer.ip()).as_bytes());
        view.forwarded_for = HeaderValue::from_bytes(&list).ok();
    }
    Some(view)
}

fn non_empty<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a HeaderValue> {
    headers.get(name).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Cidr;

    fn conn(peer: &str, tls: bool) -> ConnInfo {
        ConnInfo::new(peer.parse().unwrap(), tls, ConnInfo::port_value(8080), None)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn forwarded_headers(trusted: &str) -> ForwardedPolicy {
        ForwardedPolicy {
            use_forwarded_headers: true,
            real_ip_header: Some(X_FORWARDED_FOR),
            trusted: vec![trusted.parse::<Cidr>().unwrap()],
            ..ForwardedPolicy::default()
        }
    }

    /// A TLS-terminating load balancer's `X-Forwarded-Proto: https` makes a plain
    /// connection's request HTTPS, so `force-ssl-redirect` does not loop.
    #[test]
    fn a_trusted_peers_https_makes_the_request_https() {
        let p = forwarded_headers("198.18.0.0/24");
        let h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-for", "203.0.113.9")]);
        let view = client_view(&p, &conn("198.18.0.2:4000", false), &h).unwrap();
        assert!(view.tls);
        assert_eq!(view.peer.ip().to_string(), "203.0.113.9");
        assert_eq!(view.client_ip, "203.0.113.9");
        // And http from it keeps a TLS connection's request plain, as nginx does.
        let h = headers(&[("x-forwarded-proto", "http")]);
        assert!(!client_view(&p, &conn("198.18.0.2:4000", true), &h).unwrap().tls);
    }

    /// A peer outside `proxy-real-ip-cidr` is taken at its word for nothing.
    #[test]
    fn an_untrusted_peer_is_not_believed() {
        let p = forwarded_headers("198.18.0.0/24");
        let h = headers(&[("x-forwarded-proto", "https"), ("x-forwarded-for", "203.0.113.9")]);
        assert!(client_view(&p, &conn("198.19.0.2:4000", false), &h).is_none());
    }

    /// `enable-real-ip` alone: the address from the header, the scheme from the
    /// connection.
    #[test]
    fn real_ip_alone_leaves_the_scheme_alone() {
        let p = ForwardedPolicy {
            real_ip_header: Some(http::HeaderName::from_static("x-real-client")),
            ..ForwardedPolicy::default()
        };
        let h = headers(&[("x-forwarded-proto", "https"), ("x-real-client", "203.0.113.5")]);
        let view = client_view(&p, &conn("198.18.0.2:4000", false), &h).unwrap();
        assert!(!view.tls);
        assert_eq!(view.peer.ip().to_string(), "203.0.113.5");
    }

    /// `compute-full-forwarded-for`: the list grows by the peer instead of being
    /// replaced by the client address.
    #[test]
    fn full_forwarded_for_appends_the_peer() {
        let p = ForwardedPolicy {
            compute_full_forwarded_for: true,
            ..forwarded_headers("198.18.0.0/24")
        };
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.3")]);
        let view = client_view(&p, &conn("198.18.0.2:4000", false), &h).unwrap();
        assert_eq!(view.forwarded_for.unwrap(), "203.0.113.9, 198.51.100.3, 198.18.0.2");
        assert_eq!(view.client_ip, "198.51.100.3");
    }
}
