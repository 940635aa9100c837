//! Host names as Ingress v1 defines them.

use std::fmt;

pub use crate::wire::normalize_host;

/// The host part of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// `foo.example.com`, lower-cased.
    Exact(String),
    /// `*.example.com`, stored as the suffix `example.com`: matches exactly one more label
    /// (in a Gateway listener's table, any number of them; see `RoutingTable`).
    Wildcard(String),
    /// A rule without a host: matches requests no host rule claims.
    Any,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid host {host:?}: {reason}")]
pub struct InvalidHost {
    pub host: String,
    pub reason: &'static str,
}

impl HostMatch {
    /// Parses a rule host as written in an Ingress (`""` means any host).
    pub fn parse(host: &str) -> Result<Self, InvalidHost> {
        let bad = |reason| InvalidHost {
            host: host.to_string(),
            reason,
        };
        if host.is_empty() {
            return Ok(HostMatch::Any);
        }
        let lower = host.to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        if name.is_empty() || name.len() > 253 {
            return Err(bad("must be a DNS name of 1 to 253 characters"));
        }
        if name.contains('*') {
            return Err(bad("a wildcard may only be the whole first label, as in *.example.com"));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("each label must be 1 to 63 characters"));
            }
            if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(bad("labels may hold only a-z, 0-9 and '-', not at either end"));
            }
        }
        if name.parse::<std::net::IpAddr>().is_ok() {
            return Err(bad("must be a DNS name, not an IP address"));
        }
        Ok(if wild {
            HostMatch::Wildcard(name)
        } else {
            HostMatch::Exact(name)
        })
    }

    /// Whether a request host (already normalized) falls under this rule host.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Wildcard(suffix) => host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
            HostMatch::Any => true,
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Wildcard(s) => write!(f, "*.{s}"),
            HostMatch::Any => Ok(()),
        }
    }
}
