//! Who may use an Ingress's routes: `whitelist-source-range` and
//! `denylist-source-range` (ingress-nginx's `ipallowlist` and `ipdenylist` parsers).
//!
//! Both are comma-separated lists of addresses and CIDR blocks. ingress-nginx denies
//! the location (503 for every request) when a list does not parse, rather than serve
//! the clients it was meant to keep out; Portico does the same and says why.

use std::collections::BTreeMap;

use portico_dataplane::table::{Cidr, SourceRange};

use super::{NGINX_PREFIX, get};
use crate::compile::diagnostics::{Problem, Problems, reason};

/// Most entries one list may hold: far beyond real allow lists, and a bound on the
/// work each request does.
pub const MAX_ENTRIES: usize = 1024;

/// The annotations' lists; a list not annotated is the ConfigMap's (`defaults`), as
/// ingress-nginx takes its `whitelist-source-range` and `denylist-source-range` keys.
/// A list taken from the ConfigMap where that key does not parse (`broken`) refuses
/// every request, as ingress-nginx denies the location.
pub(super) fn parse(
    all: &BTreeMap<String, String>,
    defaults: &SourceRange,
    broken: &[&str],
    problems: &mut Problems,
) -> Option<SourceRange> {
    let mut range = SourceRange {
        refuse_all: false,
        ..defaults.clone()
    };
    for (name, slot) in [
        ("denylist-source-range", &mut range.deny),
        ("whitelist-source-range", &mut range.allow),
    ] {
        let Some(value) = get(all, name) else {
            if broken.contains(&name) {
                problems.push(Problem::warning(
                    reason::INVALID_ANNOTATION,
                    format!(
                        "the ConfigMap's {name} does not parse and this Ingress has no {NGINX_PREFIX}{name} of its own; every request to it gets 503, as in ingress-nginx"
                    ),
                ));
                range.refuse_all = true;
            }
            continue;
        };
        match cidr_list(value) {
            Ok(list) => *slot = list,
            Err(why) => {
                problems.push(
                    Problem::warning(
                        reason::INVALID_ANNOTATION,
                        format!(
                            "{NGINX_PREFIX}{name}: {why}; every request to this Ingress gets 503, as in ingress-nginx"
                        ),
                    )
                    .about(format!("{NGINX_PREFIX}{name}")),
                );
                range.refuse_all = true;
            }
        }
    }
    (range.refuse_all || !range.deny.is_empty() || !range.allow.is_empty()).then_some(range)
}

/// `"192.0.2.0/24, 198.51.100.7"`: every entry must parse (ingress-nginx's
/// `net.ParseIPNets` fails on the first bad one); empty entries are skipped.
pub(in crate::compile) fn cidr_list(value: &str) -> Result<Vec<Cidr>, String> {
    let entries: Vec<&str> = value.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    if entries.is_empty() {
        return Err("lists no address or network".to_string());
    }
    if entries.len() > MAX_ENTRIES {
        return Err(format!("lists more than {MAX_ENTRIES} entries"));
    }
    entries
        .iter()
        .map(|e| e.parse::<Cidr>().map_err(|err| err.to_string()))
        .collect()
}
