//! `canary: "true"` and its rules: an Ingress that takes part of another Ingress's
//! traffic for the same host and path.
//!
//! ingress-nginx's precedence (annotations.md, "Canary"): `canary-by-header`, then
//! `canary-by-cookie`, then `canary-weight`. A header or cookie set to `always` goes
//! to the canary, `never` to the main backend; any other value falls through to the
//! next rule. With `canary-by-header-value` (or, when it is unset,
//! `canary-by-header-pattern`), that value is what sends a request to the canary.

use std::collections::BTreeMap;

use http::header::HeaderName;
use portico_dataplane::table::{ValueMatch, full_match_regex};

use super::{get, get_flag, invalid};
use crate::compile::diagnostics::Problems;

/// ingress-nginx's `canary-weight-total` default.
pub const DEFAULT_WEIGHT_TOTAL: u32 = 100;

#[derive(Clone, Debug)]
pub struct Canary {
    /// Out of `total`, the share of the remaining requests the canary gets.
    pub weight: u32,
    pub total: u32,
    pub header: Option<HeaderRule>,
    pub cookie: Option<String>,
}

#[derive(Clone, Debug)]
pub struct HeaderRule {
    pub name: HeaderName,
    /// `None`: `always` and `never`.
    pub value: Option<ValueMatch>,
}

pub(super) fn parse(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<Canary> {
    if !get_flag(all, "canary", problems)? {
        return None;
    }
    let mut canary = Canary {
        weight: 0,
        total: DEFAULT_WEIGHT_TOTAL,
        header: None,
        cookie: None,
    };
    if let Some(v) = get(all, "canary-weight-total") {
        match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => canary.total = n,
            _ => invalid(problems, "canary-weight-total", v, "is not a whole number above 0"),
        }
    }
    if let Some(v) = get(all, "canary-weight") {
        match v.trim().parse::<u32>() {
            Ok(n) => canary.weight = n.min(canary.total),
            Err(_) => invalid(problems, "canary-weight", v, "is not a whole number"),
        }
    }
    if let Some(name) = get(all, "canary-by-header") {
        match HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()) {
            Ok(name) => {
                let value = match (get(all, "canary-by-header-value"), get(all, "canary-by-header-pattern")) {
                    (Some(v), _) if !v.is_empty() => Some(ValueMatch::Exact(v.to_string())),
                    // Searched, not anchored, as its Lua `ngx.re.match` does.
                    (_, Some(p)) if !p.is_empty() => match full_match_regex(&format!("(?s).*(?:{p}).*")) {
                        Ok(re) => Some(ValueMatch::Regex(re)),
                        Err(e) => {
                            invalid(problems, "canary-by-header-pattern", p, &e.reason);
                            None
                        }
                    },
                    _ => None,
                };
                canary.header = Some(HeaderRule { name, value });
            }
            Err(_) => invalid(problems, "canary-by-header", name, "is not a header name"),
        }
    }
    if let Some(name) = get(all, "canary-by-cookie") {
        if super::upstream::is_cookie_name(name.trim()) {
            canary.cookie = Some(name.trim().to_string());
        } else {
            invalid(problems, "canary-by-cookie", name, "is not a cookie name");
        }
    }
    Some(canary)
}
