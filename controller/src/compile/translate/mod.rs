//! One translation per route kind (Ingress, Route, HTTPRoute, GRPCRoute) into
//! [`crate::model::Rule`], and what they share:
//! header modifiers, value matches, methods, durations, as checked table types.
//!
//! A translation reads its kind's fields, resolves backends and reports problems; the
//! lowering into the table is [`crate::model::lower`]'s alone.

mod grpc_route;
mod http_route;
mod ingress;
pub(super) mod ingress_extras;
mod route;

#[cfg(test)]
pub(super) use grpc_route::method_path as grpc_method_path;

use http::Method;
use http::header::{HeaderName, HeaderValue};
use portico_dataplane::table::{
    HeaderCondition, HeaderModifier, MatchConditions, QueryCondition, ValueMatch, full_match_regex,
};

use super::diagnostics::{Problems, reason};
use crate::model::{self, LowerError};

/// A header or query match as every route kind writes it: regular expression or not,
/// name, value.
pub(super) struct ValueSpec<'a> {
    pub regex: bool,
    pub name: &'a str,
    pub value: &'a str,
}

/// The conditions of one match, or `None` (with a diagnostic) when one cannot be built.
/// Only the first match for a header or query name counts (Gateway API, HTTPHeaderMatch
/// and HTTPQueryParamMatch: "subsequent entries with an equivalent name MUST be
/// ignored").
pub(super) fn conditions<'a>(
    method: Option<Method>,
    headers: impl IntoIterator<Item = ValueSpec<'a>>,
    query: impl IntoIterator<Item = ValueSpec<'a>>,
    problems: &mut Problems,
) -> Option<MatchConditions> {
    let value = |spec: &ValueSpec<'_>, problems: &mut Problems| {
        if !spec.regex {
            return Some(ValueMatch::Exact(spec.value.to_string()));
        }
        match full_match_regex(spec.value) {
            Ok(re) => Some(ValueMatch::Regex(re)),
            Err(e) => {
                problems.warning(reason::INVALID_ROUTE, format!("{e}; the match is skipped"));
                None
            }
        }
    };
    let mut out = MatchConditions {
        method,
        ..Default::default()
    };
    for h in headers {
        let Ok(name) = HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()) else {
            problems.warning(
                reason::INVALID_ROUTE,
                format!("header name {:?} is not valid; the match is skipped", h.name),
            );
            return None;
        };
        if out.headers.iter().any(|c| c.name == name) {
            continue;
        }
        out.headers.push(HeaderCondition {
            name,
            value: value(&h, problems)?,
        });
    }
    for q in query {
        if out.query.iter().any(|c| c.name == q.name) {
            continue;
        }
        out.query.push(QueryCondition {
            name: q.name.to_string(),
            value: value(&q, problems)?,
        });
    }
    Some(out)
}

/// A header modifier from its `set`, `add` and `remove` lists; a header HTTP does not
/// allow is skipped with a diagnostic.
pub(super) fn header_modifier<'a>(
    set: impl IntoIterator<Item = (&'a str, &'a str)>,
    add: impl IntoIterator<Item = (&'a str, &'a str)>,
    remove: impl IntoIterator<Item = &'a str>,
    problems: &mut Problems,
) -> HeaderModifier {
    let mut pair = |(name, value): (&str, &str)| {
        let parsed = (
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(value),
        );
        match parsed {
            (Ok(n), Ok(v)) => Some((n, v)),
            _ => {
                problems.warning(
                    reason::INVALID_ROUTE,
                    format!("header {name:?} has a name or value HTTP does not allow; it is skipped"),
                );
                None
            }
        }
    };
    HeaderModifier {
        set: set.into_iter().filter_map(&mut pair).collect(),
        add: add.into_iter().filter_map(&mut pair).collect(),
        remove: remove
            .into_iter()
            .filter_map(|n| HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok())
            .collect(),
    }
}

/// Lowers `rule` and reports what the table refused. Returns whether any entry was
/// placed.
pub(super) fn lower_reporting(
    builder: &mut portico_dataplane::table::TableBuilder,
    rule: &model::Rule,
    problems: &mut Problems,
) -> bool {
    let lowered = model::lower(builder, rule);
    for e in lowered.refused {
        match e {
            LowerError::Path(e) => problems.warning(reason::INVALID_PATH, format!("{e}; the match is skipped")),
            e @ LowerError::Duplicate { .. } => {
                problems.warning(reason::DUPLICATE_RULE, format!("{e}; this match is ignored"))
            }
        }
    }
    lowered.placed > 0
}

/// A rule's matches, or, when it lists none, the one match that takes every request
/// (Gateway API's and the `Route` CRD's default: each field at its default).
fn matches_or_default<T: Default + Clone>(matches: &[T]) -> std::borrow::Cow<'_, [T]> {
    if matches.is_empty() {
        std::borrow::Cow::Owned(vec![T::default()])
    } else {
        std::borrow::Cow::Borrowed(matches)
    }
}
