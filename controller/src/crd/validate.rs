//! The CRD's CEL rules, and what the API server's schema checks, in Rust: for
//! `--from-file`, where no API server checks a Route, and for the compile step, which
//! never trusts that one did. Messages are the CEL rules' messages, so a user sees the
//! same words whichever way the Route came in.
//!
//! Also checks what neither schema nor CEL can: that regular expressions compile within
//! their size limit.

use std::time::Duration;

use portico_dataplane::table::full_match_regex;

use super::route::*;

/// One broken rule: the field, as the API server names it, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every rule `spec` breaks; empty when the API server would accept it.
pub fn validate(spec: &RouteSpec) -> Vec<Invalid> {
    let mut v = Check(Vec::new());
    if spec.hostnames.len() > 16 {
        v.bad("spec.hostnames", "must have at most 16 items");
    }
    for (i, h) in spec.hostnames.iter().enumerate() {
        if !matches_pattern(HOSTNAME_PATTERN, h) || h.len() > 253 {
            v.bad(
                format!("spec.hostnames[{i}]"),
                "must be a DNS name, or *. and a DNS name",
            );
        }
    }
    if spec.rules.is_empty() || spec.rules.len() > 16 {
        v.bad("spec.rules", "must have 1 to 16 items");
    }
    if let Some(tls) = &spec.tls
        && tls.secret_name.is_empty()
    {
        v.bad("spec.tls.secretName", "must not be empty");
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        v.rule(&format!("spec.rules[{i}]"), rule);
    }
    v.0
}

struct Check(Vec<Invalid>);

impl Check {
    fn bad(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Invalid {
            field: field.into(),
            message: message.into(),
        });
    }

    fn rule(&mut self, at: &str, rule: &RouteRule) {
        let has = |t: FilterType| rule.filters.iter().filter(|f| f.type_ == t).count();
        let redirect = has(FilterType::RequestRedirect) > 0;
        if redirect && !rule.backend_refs.is_empty() {
            self.bad(
                at,
                "a rule with a RequestRedirect filter answers itself; it cannot also have backendRefs",
            );
        }
        if !redirect && rule.backend_refs.is_empty() {
            self.bad(at, "a rule needs backendRefs or a RequestRedirect filter");
        }
        if !rule.backend_refs.is_empty() && rule.backend_refs.iter().all(|b| b.weight == Some(0)) {
            self.bad(at, "the weights of backendRefs must add up to more than 0");
        }
        if redirect && has(FilterType::UrlRewrite) > 0 {
            self.bad(at, "RequestRedirect and URLRewrite cannot be used together");
        }
        let types = [
            FilterType::RequestRedirect,
            FilterType::UrlRewrite,
            FilterType::RequestHeaderModifier,
            FilterType::ResponseHeaderModifier,
        ];
        if types.iter().any(|t| has(*t) > 1) {
            self.bad(at, "each filter type may appear at most once in a rule");
        }
        let prefix_modifier = rule.filters.iter().any(|f| {
            let rewrite = f.url_rewrite.as_ref().and_then(|r| r.path.as_ref());
            let redirect = f.request_redirect.as_ref().and_then(|r| r.path.as_ref());
            [rewrite, redirect]
                .into_iter()
                .flatten()
                .any(|p| p.type_ == PathModifierType::ReplacePrefixMatch)
        });
        let all_prefix = rule
            .matches
            .iter()
            .all(|m| m.path.as_ref().is_none_or(|p| p.type_ == PathMatchType::PathPrefix));
        if prefix_modifier && !all_prefix {
            self.bad(
                at,
                "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match",
            );
        }
        self.limit(&format!("{at}.matches"), rule.matches.len(), 8);
        self.limit(&format!("{at}.filters"), rule.filters.len(), 8);
        self.limit(&format!("{at}.backendRefs"), rule.backend_refs.len(), 16);
        for (i, m) in rule.matches.iter().enumerate() {
            self.route_match(&format!("{at}.matches[{i}]"), m);
        }
        for (i, f) in rule.filters.iter().enumerate() {
            self.filter(&format!("{at}.filters[{i}]"), f);
        }
        for (i, b) in rule.backend_refs.iter().enumerate() {
            let at = format!("{at}.backendRefs[{i}]");
            if b.name.is_empty() {
                self.bad(format!("{at}.name"), "must not be empty");
            }
            if !(1..=65535).contains(&b.port) {
                self.bad(format!("{at}.port"), "must be 1 to 65535");
            }
            if b.weight.is_some_and(|w| !(0..=1_000_000).contains(&w)) {
                self.bad(format!("{at}.weight"), "must be 0 to 1000000");
            }
        }
        if let Some(t) = &rule.timeouts {
            let request = self.duration(&format!("{at}.timeouts.request"), t.request.as_deref());
            let backend = self.duration(&format!("{at}.timeouts.backendRequest"), t.backend_request.as_deref());
            if let (Some(r), Some(b)) = (request, backend)
                && b > r
            {
                self.bad(
                    format!("{at}.timeouts"),
                    "backendRequest must not be longer than request",
                );
            }
        }
        if let Some(r) = &rule.retry {
            if r.attempts.is_some_and(|a| !(0..=5).contains(&a)) {
                self.bad(format!("{at}.retry.attempts"), "must be 0 to 5");
            }
            if r.codes.iter().any(|c| !(400..=599).contains(c)) {
                self.bad(format!("{at}.retry.codes"), "must be status codes 400 to 599");
            }
            self.limit(&format!("{at}.retry.codes"), r.codes.len(), 16);
            self.duration(&format!("{at}.retry.perTryTimeout"), r.per_try_timeout.as_deref());
        }
        if let Some(lb) = &rule.load_balancer {
            let at = format!("{at}.loadBalancer");
            if (lb.type_ == LoadBalancerType::ConsistentHash) != lb.consistent_hash.is_some() {
                self.bad(&at, "consistentHash must be set for type ConsistentHash, and only then");
            }
            if let Some(h) = &lb.consistent_hash {
                let set = [h.header.is_some(), h.cookie.is_some(), h.client_ip == Some(true)];
                if set.iter().filter(|x| **x).count() != 1 {
                    self.bad(
                        format!("{at}.consistentHash"),
                        "set exactly one of header, cookie or clientIP: true",
                    );
                }
                for (field, value) in [("header", &h.header), ("cookie", &h.cookie)] {
                    if let Some(value) = value {
                        self.token(&format!("{at}.consistentHash.{field}"), value, 256);
                    }
                }
            }
        }
        if let Some(a) = &rule.session_affinity {
            self.token(&format!("{at}.sessionAffinity.cookieName"), &a.cookie_name, 64);
        }
    }

    fn limit(&mut self, at: &str, len: usize, max: usize) {
        if len > max {
            self.bad(at, format!("must have at most {max} items"));
        }
    }

    fn token(&mut self, at: &str, value: &str, max: usize) {
        if !matches_pattern(TOKEN_PATTERN, value) || value.len() > max {
            self.bad(
                at,
                format!("must be 1 to {max} characters of a header name (RFC 9110 token)"),
            );
        }
    }

    fn route_match(&mut self, at: &str, m: &RouteMatch) {
        if let Some(p) = &m.path {
            let at = format!("{at}.path");
            let v = &p.value;
            if v.is_empty() || v.len() > 1024 {
                self.bad(format!("{at}.value"), "must be 1 to 1024 characters");
            }
            match p.type_ {
                PathMatchType::RegularExpression => {
                    if let Err(e) = full_match_regex(v) {
                        self.bad(format!("{at}.value"), e.to_string());
                    }
                }
                _ => {
                    if !v.starts_with('/') {
                        self.bad(&at, "path must start with '/'");
                    }
                    let dots = v.contains("//")
                        || v.contains("/./")
                        || v.contains("/../")
                        || v.ends_with("/.")
                        || v.ends_with("/..");
                    if dots {
                        self.bad(&at, "path must not contain '//', '.' or '..' segments");
                    }
                }
            }
        }
        self.limit(&format!("{at}.headers"), m.headers.len(), 16);
        self.limit(&format!("{at}.queryParams"), m.query_params.len(), 16);
        for (i, h) in m.headers.iter().enumerate() {
            let at = format!("{at}.headers[{i}]");
            self.token(&format!("{at}.name"), &h.name, 256);
            self.value(&at, h.type_, &h.value);
        }
        for (i, q) in m.query_params.iter().enumerate() {
            let at = format!("{at}.queryParams[{i}]");
            if q.name.is_empty() || q.name.len() > 256 {
                self.bad(format!("{at}.name"), "must be 1 to 256 characters");
            }
            self.value(&at, q.type_, &q.value);
        }
    }

    fn value(&mut self, at: &str, kind: ValueMatchType, value: &str) {
        if value.len() > 4096 || value.contains(['\r', '\n']) {
            self.bad(format!("{at}.value"), "must be at most 4096 characters on one line");
        }
        if kind == ValueMatchType::RegularExpression {
            if value.len() > 1024 {
                self.bad(at, "a RegularExpression may be at most 1024 characters");
            } else if let Err(e) = full_match_regex(value) {
                self.bad(format!("{at}.value"), e.to_string());
            }
        }
    }

    fn filter(&mut self, at: &str, f: &RouteFilter) {
        let pairs = [
            (
                FilterType::RequestHeaderModifier,
                f.request_header_modifier.is_some(),
                "requestHeaderModifier must be set for type RequestHeaderModifier, and only then",
            ),
            (
                FilterType::ResponseHeaderModifier,
                f.response_header_modifier.is_some(),
                "responseHeaderModifier must be set for type ResponseHeaderModifier, and only then",
            ),
            (
                FilterType::UrlRewrite,
                f.url_rewrite.is_some(),
                "urlRewrite must be set for type URLRewrite, and only then",
            ),
            (
                FilterType::RequestRedirect,
                f.request_redirect.is_some(),
                "requestRedirect must be set for type RequestRedirect, and only then",
            ),
        ];
        for (t, set, message) in pairs {
            if set != (f.type_ == t) {
                self.bad(at, message);
            }
        }
        for (field, m) in [
            ("requestHeaderModifier", &f.request_header_modifier),
            ("responseHeaderModifier", &f.response_header_modifier),
        ] {
            let Some(m) = m else { continue };
            let at = format!("{at}.{field}");
            for (list, headers) in [("set", &m.set), ("add", &m.add)] {
                self.limit(&format!("{at}.{list}"), headers.len(), 16);
                for (i, h) in headers.iter().enumerate() {
                    let at = format!("{at}.{list}[{i}]");
                    self.token(&format!("{at}.name"), &h.name, 256);
                    if MANAGED_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()) {
                        self.bad(
                            &at,
                            "this header is managed by the proxy and cannot be changed by a filter",
                        );
                    }
                    if h.value.len() > 4096 || h.value.contains(['\r', '\n']) {
                        self.bad(format!("{at}.value"), "must be at most 4096 characters on one line");
                    }
                }
            }
            self.limit(&format!("{at}.remove"), m.remove.len(), 16);
            for (i, name) in m.remove.iter().enumerate() {
                self.token(&format!("{at}.remove[{i}]"), name, 256);
            }
        }
        if let Some(r) = &f.url_rewrite {
            if let Some(h) = &r.hostname
                && !matches_pattern(HOSTNAME_PATTERN, h)
            {
                self.bad(format!("{at}.urlRewrite.hostname"), "must be a DNS name");
            }
            if let Some(p) = &r.path {
                self.path_modifier(&format!("{at}.urlRewrite.path"), p);
            }
        }
        if let Some(r) = &f.request_redirect {
            let at = format!("{at}.requestRedirect");
            if r.status_code.is_some_and(|c| ![301, 302, 303, 307, 308].contains(&c)) {
                self.bad(&at, "statusCode must be one of 301, 302, 303, 307, 308");
            }
            if r.port.is_some_and(|p| !(1..=65535).contains(&p)) {
                self.bad(format!("{at}.port"), "must be 1 to 65535");
            }
            if let Some(h) = &r.hostname
                && !matches_pattern(HOSTNAME_PATTERN, h)
            {
                self.bad(format!("{at}.hostname"), "must be a DNS name");
            }
            if let Some(p) = &r.path {
                self.path_modifier(&format!("{at}.path"), p);
            }
        }
    }

    fn path_modifier(&mut self, at: &str, p: &PathModifier) {
        let (want, other) = match p.type_ {
            PathModifierType::ReplaceFullPath => (&p.replace_full_path, &p.replace_prefix_match),
            PathModifierType::ReplacePrefixMatch => (&p.replace_prefix_match, &p.replace_full_path),
        };
        match (want, other) {
            (Some(path), None) => {
                if !path.starts_with('/') {
                    self.bad(at, "the replacement path must start with '/'");
                }
                if path.len() > 1024 || path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
                    self.bad(at, "the replacement path must be at most 1024 characters without spaces, '?' or '#'");
                }
            }
            _ => self.bad(
                at,
                "set replaceFullPath for type ReplaceFullPath, replacePrefixMatch for type ReplacePrefixMatch, and not the other",
            ),
        }
    }

    fn duration(&mut self, at: &str, value: Option<&str>) -> Option<Duration> {
        let value = value?;
        let parsed = parse_duration(value);
        if parsed.is_none() {
            self.bad(at, "must be a duration like 10s, 500ms or 1m30s");
        }
        parsed
    }
}

/// Headers the proxy owns; a filter may not change them (the CEL rule says the same).
pub const MANAGED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

fn matches_pattern(pattern: &'static str, value: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    // The patterns are the CRD's few constants: each is compiled once per process.
    static COMPILED: LazyLock<Mutex<HashMap<&'static str, Option<regex::Regex>>>> = LazyLock::new(Default::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
    // One that does not compile matches nothing.
    let re = compiled
        .entry(pattern)
        .or_insert_with(|| regex::Regex::new(pattern).ok());
    re.as_ref().is_some_and(|re| re.is_match(value))
}

/// Parses Gateway API's duration (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`).
pub fn parse_duration(value: &str) -> Option<Duration> {
    if !matches_pattern(DURATION_PATTERN, value) {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else {
            match rest.as_bytes().first()? {
                b'h' => (Duration::from_secs(3600), 1),
                b'm' => (Duration::from_secs(60), 1),
                b's' => (Duration::from_secs(1), 1),
                _ => return None,
            }
        };
        total += unit * u32::try_from(n).ok()?;
        rest = &rest[len..];
    }
    Some(total)
}
