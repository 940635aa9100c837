//! `default-backend` and `custom-http-errors`: the Service that answers for an
//! Ingress's rules when their own Service has no ready endpoint, and the error codes
//! it answers in place of theirs (ingress-nginx's `annotations/defaultbackend` and
//! `annotations/customhttperrors`).

use std::collections::BTreeMap;

use super::{get, invalid};
use crate::compile::diagnostics::Problems;

/// What the two annotations ask.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorBackend {
    /// `default-backend`: a Service in the Ingress's namespace, on its first port.
    pub service: Option<String>,
    /// `custom-http-errors`: each from 400 to 599.
    pub codes: Vec<u16>,
}

pub(super) fn parse(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<ErrorBackend> {
    let service = get(all, "default-backend").map(str::trim).and_then(|name| {
        if is_service_name(name) {
            Some(name.to_string())
        } else {
            invalid(problems, "default-backend", name, "is not a Service name");
            None
        }
    });
    let codes = get(all, "custom-http-errors").map_or_else(Vec::new, |v| match codes(v) {
        Some(codes) => codes,
        None => {
            invalid(
                problems,
                "custom-http-errors",
                v,
                "is not a comma-separated list of status codes from 400 to 599",
            );
            Vec::new()
        }
    });
    // Without default-backend, the codes go to the global default backend
    // (`--default-backend-service`); the compile says so when there is none.
    (service.is_some() || !codes.is_empty()).then_some(ErrorBackend { service, codes })
}

/// ingress-nginx's `^(?:[4,5]\d{2},?)*$` for the ConfigMap's `custom-http-errors`;
/// `None` when it does not parse.
pub(in crate::compile) fn parse_codes(v: &str) -> Option<Vec<u16>> {
    codes(v)
}

/// ingress-nginx's `^(?:[4,5]\d{2},?)*$`, without its oddities (a comma as the first
/// digit): codes from 400 to 599, separated by commas.
fn codes(v: &str) -> Option<Vec<u16>> {
    let v = v.trim();
    if v.is_empty() {
        return Some(Vec::new());
    }
    v.split(',')
        .map(|c| c.trim().parse::<u16>().ok().filter(|c| (400..=599).contains(c)))
        .collect()
}

/// An RFC 1035 label, as a Service name is.
fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_from_400_to_599() {
        assert_eq!(codes("404,503"), Some(vec![404, 503]));
        assert_eq!(codes(" 404 , 415 "), Some(vec![404, 415]));
        assert_eq!(codes(""), Some(vec![]));
        assert_eq!(codes("302"), None);
        assert_eq!(codes("404,abc"), None);
    }
}
