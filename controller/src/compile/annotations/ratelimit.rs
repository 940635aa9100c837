//! `limit-rps`, `limit-rpm`, `limit-burst-multiplier`, `limit-connections` and
//! `limit-whitelist` (ingress-nginx's `ratelimit` parser): one zone per Ingress and
//! rate, shared by all its paths, keyed by the client's address; bursts of the rate
//! times the multiplier (default 5) pass at once (`nodelay`); refusals are 503,
//! ingress-nginx's default `limit-req-status-code` and `limit-conn-status-code`.

use std::collections::BTreeMap;

use http::StatusCode;
use portico_dataplane::table::{Cidr, ConnLimitSpec, Rate, RateLimitSpec};

use super::{get, invalid};
use crate::compile::diagnostics::Problems;

/// ingress-nginx's default `limit-burst-multiplier`.
pub const DEFAULT_BURST_MULTIPLIER: u64 = 5;

/// A rate above this is no limit worth the bookkeeping (and keeps the arithmetic small).
const MAX_RATE: u64 = 1_000_000;

fn count(all: &BTreeMap<String, String>, name: &str, problems: &mut Problems) -> Option<u64> {
    let v = get(all, name)?;
    match v.trim().parse::<u64>() {
        Ok(n) if n <= MAX_RATE => (n > 0).then_some(n),
        _ => {
            invalid(
                problems,
                name,
                v,
                &format!("is not a whole number from 0 to {MAX_RATE}"),
            );
            None
        }
    }
}

/// `namespace/name` names the Ingress's zones.
pub(super) fn parse(
    all: &BTreeMap<String, String>,
    zone: &str,
    problems: &mut Problems,
) -> (Option<RateLimitSpec>, Option<ConnLimitSpec>) {
    let rps = count(all, "limit-rps", problems);
    let rpm = count(all, "limit-rpm", problems);
    let connections = count(all, "limit-connections", problems);
    let multiplier = count(all, "limit-burst-multiplier", problems).unwrap_or(DEFAULT_BURST_MULTIPLIER);
    let mut whitelist: Vec<Cidr> = Vec::new();
    if let Some(v) = get(all, "limit-whitelist") {
        let parsed: Result<Vec<Cidr>, _> = v
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::parse::<Cidr>)
            .collect();
        match parsed {
            Ok(list) if list.len() <= super::access::MAX_ENTRIES => whitelist = list,
            Ok(_) => invalid(
                problems,
                "limit-whitelist",
                v,
                "has too many entries; every client is limited, and",
            ),
            Err(e) => invalid(
                problems,
                "limit-whitelist",
                v,
                &format!("({e}); every client is limited, and"),
            ),
        }
    }
    let mut rates = Vec::new();
    if let Some(n) = rps {
        rates.push(Rate {
            zone: format!("{zone} rps"),
            per_minute: n * 60,
            burst: n * multiplier,
        });
    }
    if let Some(n) = rpm {
        rates.push(Rate {
            zone: format!("{zone} rpm"),
            per_minute: n,
            burst: n * multiplier,
        });
    }
    let conn = connections.map(|n| ConnLimitSpec {
        zone: format!("{zone} conn"),
        max: u32::try_from(n).unwrap_or(u32::MAX),
        whitelist: whitelist.clone(),
        status: StatusCode::SERVICE_UNAVAILABLE,
    });
    let rate = (!rates.is_empty()).then_some(RateLimitSpec {
        rates,
        whitelist,
        status: StatusCode::SERVICE_UNAVAILABLE,
    });
    (rate, conn)
}
