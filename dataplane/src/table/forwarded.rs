//! What the proxy believes of a client behind another proxy or load balancer:
//! ingress-nginx's ConfigMap keys `use-forwarded-headers`, `enable-real-ip`,
//! `forwarded-for-header`, `compute-full-forwarded-for`, `proxy-real-ip-cidr` and
//! `use-proxy-protocol`. One value for the whole table; a table without it believes
//! nothing the client says about itself, and pays nothing per request.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderName;

use crate::filter::Cidr;

/// How the client's address and scheme are learnt when another proxy stands in front.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedPolicy {
    /// `use-forwarded-headers`: a trusted peer's `X-Forwarded-Proto`, `-Host` and
    /// `-Port` are the request's (a TLS-terminating load balancer's `https` means the
    /// request is already HTTPS: no redirect), and the client address comes from
    /// [`ForwardedPolicy::real_ip_header`].
    pub use_forwarded_headers: bool,
    /// The field the client address is read from (`forwarded-for-header`, by default
    /// `X-Forwarded-For`), when `use-forwarded-headers` or `enable-real-ip` asks for
    /// it and the PROXY protocol does not give it.
    pub real_ip_header: Option<HeaderName>,
    /// `compute-full-forwarded-for`: the endpoint gets the client's `X-Forwarded-For`
    /// with the peer appended, not the client address alone.
    pub compute_full_forwarded_for: bool,
    /// `proxy-real-ip-cidr`: the peers whose word is taken (nginx's
    /// `set_real_ip_from`); by default `0.0.0.0/0`, as in ingress-nginx.
    pub trusted: Vec<Cidr>,
    /// `use-proxy-protocol`: every connection on the Ingress listeners starts with a
    /// PROXY protocol (v1 or v2) header, read within
    /// [`ForwardedPolicy::proxy_protocol_timeout`]; a connection without a valid one
    /// is closed.
    pub proxy_protocol: bool,
    /// `proxy-protocol-header-timeout`.
    pub proxy_protocol_timeout: Duration,
}

impl Default for ForwardedPolicy {
    fn default() -> Self {
        ForwardedPolicy {
            use_forwarded_headers: false,
            real_ip_header: None,
            compute_full_forwarded_for: false,
            trusted: vec![DEFAULT_TRUSTED],
            proxy_protocol: false,
            proxy_protocol_timeout: Duration::from_secs(5),
        }
    }
}

/// ingress-nginx's default `proxy-real-ip-cidr`.
pub const DEFAULT_TRUSTED: Cidr = Cidr::V4_ANY;

impl ForwardedPolicy {
    /// Whether the peer at `ip` may speak for the client.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The client address by nginx's `real_ip_recursive on`: the addresses of `values`
    /// (each a comma-separated list, in order) read from the right, the first one not
    /// trusted; the leftmost when all are. An entry that is not an address stops the
    /// walk at the last good one. `None` when there is no address at all.
    pub fn real_ip<'a>(&self, values: impl DoubleEndedIterator<Item = &'a [u8]>) -> Option<IpAddr> {
        let mut found = None;
        for value in values.rev() {
            for item in value.rsplit(|&b| b == b',') {
                let Some(ip) = std::str::from_utf8(item)
                    .ok()
                    .and_then(|s| s.trim().parse::<IpAddr>().ok())
                else {
                    return found;
                };
                found = Some(ip);
                if !self.trusts(ip) {
                    return found;
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str]) -> ForwardedPolicy {
        ForwardedPolicy {
            trusted: trusted.iter().map(|c| c.parse().unwrap()).collect(),
            ..ForwardedPolicy::default()
        }
    }

    fn real_ip(p: &ForwardedPolicy, values: &[&str]) -> Option<String> {
        p.real_ip(values.iter().map(|v| v.as_bytes())).map(|ip| ip.to_string())
    }

    /// nginx's `real_ip_recursive on`: trusted proxies at the right end are skipped,
    /// the first untrusted address is the client's.
    #[test]
    fn the_client_is_the_rightmost_untrusted_address() {
        let p = policy(&["198.18.0.0/24"]);
        assert_eq!(
            real_ip(&p, &["203.0.113.7, 198.51.100.1, 198.18.0.9"]).as_deref(),
            Some("198.51.100.1")
        );
        // Two header lines read as one list.
        assert_eq!(
            real_ip(&p, &["203.0.113.7", "198.18.0.2, 198.18.0.3"]).as_deref(),
            Some("203.0.113.7")
        );
        // All trusted: the leftmost.
        assert_eq!(real_ip(&p, &["198.18.0.1, 198.18.0.2"]).as_deref(), Some("198.18.0.1"));
    }

    /// A forged entry to the left of an untrusted one changes nothing, and garbage
    /// stops the walk at the last address read.
    #[test]
    fn garbage_in_the_list_stops_the_walk() {
        let p = policy(&["198.18.0.0/24"]);
        assert_eq!(real_ip(&p, &["1.2.3.4, 198.51.100.1"]).as_deref(), Some("198.51.100.1"));
        assert_eq!(real_ip(&p, &["nonsense, 198.18.0.5"]).as_deref(), Some("198.18.0.5"));
        assert_eq!(real_ip(&p, &["nonsense"]), None);
        assert_eq!(real_ip(&p, &[]), None);
    }

    /// The default trusts every IPv4 peer, as ingress-nginx's `0.0.0.0/0` does.
    #[test]
    fn by_default_every_ipv4_peer_is_trusted() {
        let p = ForwardedPolicy::default();
        assert!(p.trusts("198.18.3.4".parse().unwrap()));
        assert!(!p.trusts("2001:db8::1".parse().unwrap()));
    }
}
