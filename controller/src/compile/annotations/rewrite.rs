//! Paths and redirects: `use-regex`, `rewrite-target`, `x-forwarded-prefix`,
//! `upstream-vhost`, `app-root`, `permanent-redirect` (+ `-code`), `temporal-redirect`,
//! `from-to-www-redirect`.
//!
//! ingress-nginx writes them into its `location` blocks (its template's
//! `buildLocation` and `buildProxyPass`): a regex location is `~* "^<path>"`, a
//! rewrite is `rewrite "(?i)<path>" <target> break;`, a redirect is `return <code> <url>;`.

use std::collections::BTreeMap;

use http::StatusCode;
use http::header::HeaderValue;
use portico_dataplane::table::{RegexRewrite, ReturnRedirect};

use super::{get, get_flag, invalid, unsupported_value};
use crate::compile::diagnostics::Problems;

/// What an Ingress's annotations do to the paths it serves.
#[derive(Clone, Debug, Default)]
pub struct Paths {
    /// The Ingress's paths are case-insensitive regular expressions anchored at the
    /// start (`use-regex: "true"`, or any `rewrite-target`), and so are the
    /// ImplementationSpecific paths of every Ingress on the same hosts.
    pub regex: bool,
    /// `rewrite-target`, checked: only `$1`..`$9` follow a `$`.
    pub rewrite_target: Option<String>,
    /// `x-forwarded-prefix`: sent as `X-Forwarded-Prefix` with a rewrite.
    pub x_forwarded_prefix: Option<HeaderValue>,
    /// `upstream-vhost`: the `Host` the endpoint sees.
    pub upstream_vhost: Option<HeaderValue>,
    /// `app-root`: a request for `/` gets a 302 to this path.
    pub app_root: Option<String>,
    /// `permanent-redirect` or `temporal-redirect`: every request gets this answer.
    pub return_redirect: Option<ReturnRedirect>,
    /// `from-to-www-redirect`: `www.<host>` redirects to `<host>` (or the other way).
    pub from_to_www: bool,
}

impl Paths {
    /// The rewrite of a route whose rule path is `path`: nginx's `rewrite "(?i)<path>"
    /// <target>`, none when the target is the path itself (as ingress-nginx does).
    pub fn rewrite_for(&self, path: &str) -> Option<Result<RegexRewrite, String>> {
        let target = self.rewrite_target.as_deref()?;
        if target == path {
            return None;
        }
        Some(RegexRewrite::new(path, target).map_err(|e| e.to_string()))
    }
}

pub(super) fn parse(all: &BTreeMap<String, String>, problems: &mut Problems) -> Paths {
    let mut paths = Paths {
        regex: get_flag(all, "use-regex", problems).unwrap_or(false),
        ..Paths::default()
    };
    if let Some(target) = get(all, "rewrite-target") {
        let target = target.trim();
        if target.starts_with("http://") || target.starts_with("https://") {
            unsupported_value(
                problems,
                "rewrite-target",
                target,
                "is a URL (nginx would redirect); only a path is supported",
            );
        } else if let Err(e) = RegexRewrite::new("/", target) {
            invalid(problems, "rewrite-target", target, &e.reason);
        } else if !target.starts_with('/') && !target.starts_with('$') {
            invalid(problems, "rewrite-target", target, "does not start with '/'");
        } else {
            paths.rewrite_target = Some(target.to_string());
            paths.regex = true;
        }
    }
    for (name, slot) in [
        ("x-forwarded-prefix", &mut paths.x_forwarded_prefix),
        ("upstream-vhost", &mut paths.upstream_vhost),
    ] {
        if let Some(v) = get(all, name) {
            match HeaderValue::from_str(v.trim()) {
                Ok(h) if !v.trim().is_empty() => *slot = Some(h),
                _ => invalid(problems, name, v, "is not a valid header value"),
            }
        }
    }
    if let Some(root) = get(all, "app-root") {
        let root = root.trim();
        if root.starts_with('/') && root.len() > 1 && HeaderValue::from_str(root).is_ok() && !root.contains(' ') {
            paths.app_root = Some(root.to_string());
        } else {
            invalid(problems, "app-root", root, "is not a path starting with '/'");
        }
    }
    paths.return_redirect = redirect(all, problems);
    paths.from_to_www = get_flag(all, "from-to-www-redirect", problems).unwrap_or(false);
    paths
}

/// ingress-nginx's redirect parser: `temporal-redirect` (302) first, then
/// `permanent-redirect` with `permanent-redirect-code` (300 to 308, default 301). Only
/// absolute http(s) URLs are accepted, as its `isValidURL` does.
fn redirect(all: &BTreeMap<String, String>, problems: &mut Problems) -> Option<ReturnRedirect> {
    let url = |name: &str, problems: &mut Problems| {
        let v = get(all, name)?.trim();
        let ok = (v.starts_with("http://") || v.starts_with("https://"))
            && v.parse::<http::Uri>()
                .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        match HeaderValue::from_str(v) {
            Ok(h) if ok => Some(h),
            _ => {
                invalid(problems, name, v, "is not an absolute http or https URL");
                None
            }
        }
    };
    if let Some(location) = url("temporal-redirect", problems) {
        return Some(ReturnRedirect {
            status: StatusCode::FOUND,
            location,
        });
    }
    let location = url("permanent-redirect", problems)?;
    let mut status = StatusCode::MOVED_PERMANENTLY;
    if let Some(code) = get(all, "permanent-redirect-code") {
        match code.trim().parse::<u16>() {
            Ok(c @ 300..=308) => status = StatusCode::from_u16(c).unwrap_or(StatusCode::MOVED_PERMANENTLY),
            _ => invalid(
                problems,
                "permanent-redirect-code",
                code,
                "is not a redirect status from 300 to 308",
            ),
        }
    }
    Some(ReturnRedirect { status, location })
}

/// The other name of a host for `from-to-www-redirect`: `www.` added or taken off.
pub fn www_alias(host: &str) -> Option<String> {
    if host.is_empty() || host.starts_with("*.") {
        return None;
    }
    match host.strip_prefix("www.") {
        Some(bare) if !bare.is_empty() => Some(bare.to_string()),
        Some(_) => None,
        None => Some(format!("www.{host}")),
    }
}
