//! A Route's status conditions, from the diagnostics of the compile that placed it.
//!
//! - `Accepted`: `True` when every match of the Route is in the table. `False` when any
//!   was left out: the Route breaks its CRD's rules (`InvalidRoute`), a hostname or
//!   path is invalid, or an older Ingress or Route already routes the same host, path
//!   and conditions (`DuplicateRule`, naming the owner). The reason is the first
//!   problem's; the message lists them all.
//! - `ResolvedRefs`: `True` when every backendRef and the TLS Secret resolve. `False`
//!   with `ServiceNotFound`, `PortNotFound`, `UnsupportedBackend`, `SecretNotFound` or
//!   `InvalidCertificate`; the requests those backends would get are answered 503.
//!
//! Pure: no clock. The status writer adds `lastTransitionTime`.

use super::diagnostics::{Diagnostic, reason};
use crate::crd::{Condition, Route};

const ACCEPTED_REASONS: &[&str] = &[
    reason::INVALID_ROUTE,
    reason::INVALID_HOST,
    reason::INVALID_PATH,
    reason::DUPLICATE_RULE,
];

const REF_REASONS: &[&str] = &[
    reason::SERVICE_NOT_FOUND,
    reason::PORT_NOT_FOUND,
    reason::INVALID_BACKEND,
    reason::UNSUPPORTED_BACKEND,
    reason::SECRET_NOT_FOUND,
    reason::INVALID_CERTIFICATE,
];

/// Longest condition message written; the API server allows 32768 bytes.
const MAX_MESSAGE: usize = 4096;

/// The `Accepted` and `ResolvedRefs` conditions of `route` after a compile that gave
/// `diagnostics` (all of them; those of other objects are ignored).
pub fn route_conditions(route: &Route, diagnostics: &[Diagnostic]) -> Vec<Condition> {
    let namespace = super::namespace_of(&route.metadata);
    let name = route.metadata.name.as_deref().unwrap_or_default();
    let own: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.kind == "Route" && d.namespace == namespace && d.name == name && d.is_warning())
        .collect();
    let generation = route.metadata.generation;
    let condition = |type_: &str, reasons: &[&str], ok_reason: &str, ok_message: &str| {
        let bad: Vec<&&Diagnostic> = own.iter().filter(|d| reasons.contains(&d.reason)).collect();
        match bad.first() {
            None => Condition {
                type_: type_.to_string(),
                status: "True".to_string(),
                reason: ok_reason.to_string(),
                message: ok_message.to_string(),
                observed_generation: generation,
                last_transition_time: None,
            },
            Some(first) => {
                let messages: Vec<&str> = bad.iter().map(|d| d.message.as_str()).collect();
                Condition {
                    type_: type_.to_string(),
                    status: "False".to_string(),
                    reason: first.reason.to_string(),
                    message: truncate(&messages.join("; "), MAX_MESSAGE),
                    observed_generation: generation,
                    last_transition_time: None,
                }
            }
        }
    };
    vec![
        condition(
            "Accepted",
            ACCEPTED_REASONS,
            "Accepted",
            "every match of the Route is routed",
        ),
        condition(
            "ResolvedRefs",
            REF_REASONS,
            "ResolvedRefs",
            "every backendRef and Secret resolves",
        ),
    ]
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}
