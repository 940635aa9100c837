//! ingress-nginx's `whitelist-source-range` and `denylist-source-range`: nginx's
//! `allow` and `deny` in the location, which its template writes deny list first, then
//! the allow list and `deny all`. The first rule that matches the client's address
//! decides; a refused client gets 403 before anything reaches a backend.

use std::net::IpAddr;
use std::str::FromStr;

use http::StatusCode;
use http::header::HeaderMap;

use super::{Answer, Filter, Phases, RequestHead};

/// An address block: an address and how many leading bits of it count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IP address or a network like 192.0.2.0/24")]
pub struct InvalidCidr(pub String);

impl FromStr for Cidr {
    type Err = InvalidCidr;

    /// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a block of one, as nginx's
    /// `allow 192.0.2.1`). Host bits set under the mask are ignored, as nginx does.
    fn from_str(s: &str) -> Result<Cidr, InvalidCidr> {
        let bad = || InvalidCidr(s.to_string());
        let s = s.trim();
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) if !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                b.parse::<u8>().map_err(|_| bad())?,
            ),
            Some(_) => return Err(bad()),
            None => {
                let a = s.parse::<IpAddr>().map_err(|_| bad())?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { addr, bits })
    }
}

impl Cidr {
    /// `0.0.0.0/0`: every IPv4 address.
    pub const V4_ANY: Cidr = Cidr {
        addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        bits: 0,
    };

    /// Whether `ip` is in the block; an IPv4 address mapped into IPv6 (a dual-stack
    /// listener's view of an IPv4 client) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// Which clients a route serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceRange {
    /// Refused, checked first (`deny`).
    pub deny: Vec<Cidr>,
    /// When not empty, the only clients served (`allow` .. `deny all`).
    pub allow: Vec<Cidr>,
    /// A list did not parse: every request gets 503, as ingress-nginx answers a
    /// location its annotations deny (failing open would serve the clients the list
    /// was written to keep out).
    pub refuse_all: bool,
}

impl SourceRange {
    /// Whether a client at `ip` is served.
    pub fn admits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|c| c.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

impl Filter for SourceRange {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        let status = if self.refuse_all {
            StatusCode::SERVICE_UNAVAILABLE
        } else if !self.admits(req.client) {
            StatusCode::FORBIDDEN
        } else {
            return None;
        };
        Some(Answer::Status {
            status,
            headers: HeaderMap::new(),
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Blocks match on their leading bits; a bare address is a block of one; bad text
    /// and masks longer than the address are refused.
    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "192.0.2.0/24".parse().unwrap();
        assert!(c.contains(ip("192.0.2.200")) && !c.contains(ip("192.0.3.1")));
        assert!(c.contains(ip("::ffff:192.0.2.9")), "IPv4-mapped IPv6 counts as IPv4");
        let one: Cidr = " 203.0.113.7 ".parse().unwrap();
        assert!(one.contains(ip("203.0.113.7")) && !one.contains(ip("203.0.113.8")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("2001:db8::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "example.com",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    /// ingress-nginx's template writes `deny` lines before `allow` lines and `deny all`:
    /// a client in both lists is refused; with an allow list, everyone else is refused.
    #[test]
    fn deny_is_checked_before_allow() {
        let r = SourceRange {
            deny: cidrs(&["192.0.2.128/25"]),
            allow: cidrs(&["192.0.2.0/24"]),
            refuse_all: false,
        };
        assert!(r.admits(ip("192.0.2.1")));
        assert!(!r.admits(ip("192.0.2.200")));
        assert!(!r.admits(ip("198.51.100.1")));
        let deny_only = SourceRange {
            deny: cidrs(&["192.0.2.0/24"]),
            allow: vec![],
            refuse_all: false,
        };
        assert!(deny_only.admits(ip("198.51.100.1")) && !deny_only.admits(ip("192.0.2.1")));
    }
}
