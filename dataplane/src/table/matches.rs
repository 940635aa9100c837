//! Conditions beyond host and path: method, headers and query parameters (a `Route`'s
//! `matches[]`). Ingress rules have none.
//!
//! Conditions are checked only after the path index has found candidate entries, so a
//! table without them pays nothing for them.

use std::borrow::Cow;
use std::fmt;

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;

pub use crate::pattern::{InvalidRegex, REGEX_MAX_LEN, REGEX_SIZE_LIMIT, full_match_regex};

/// How a header or query value is compared.
#[derive(Clone, Debug)]
pub enum ValueMatch {
    Exact(String),
    /// Matches the whole value.
    Regex(Regex),
}

impl ValueMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(want) => want == value,
            ValueMatch::Regex(re) => re.is_match(value),
        }
    }

    fn key(&self) -> (u8, &str) {
        match self {
            ValueMatch::Exact(s) => (0, s),
            ValueMatch::Regex(r) => (1, r.as_str()),
        }
    }
}

/// `= "value"` or `~ pattern`, as `explain` prints a condition.
impl fmt::Display for ValueMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueMatch::Exact(v) => write!(f, "= {v:?}"),
            ValueMatch::Regex(r) => {
                let p = r.as_str();
                let written = p.strip_prefix("^(?:").and_then(|p| p.strip_suffix(")$")).unwrap_or(p);
                write!(f, "~ {written:?} (the whole value)")
            }
        }
    }
}

impl PartialEq for ValueMatch {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ValueMatch {}

/// A header that must be present with a matching value (any of its values, when the
/// request repeats it). Names compare case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderCondition {
    pub name: HeaderName,
    pub value: ValueMatch,
}

/// A query parameter that must be present with a matching value (any of its values).
/// Names compare exactly; names and values are percent-decoded first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryCondition {
    pub name: String,
    pub value: ValueMatch,
}

/// Everything beyond host and path a candidate requires; all must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchConditions {
    pub method: Option<Method>,
    pub headers: Vec<HeaderCondition>,
    pub query: Vec<QueryCondition>,
}

impl MatchConditions {
    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.headers.is_empty() && self.query.is_empty()
    }

    /// Among candidates for one path, the more specific is tried first (Gateway API's
    /// order): a method match, then more header matches, then more query matches.
    pub(super) fn specificity(&self) -> (bool, usize, usize) {
        (self.method.is_some(), self.headers.len(), self.query.len())
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(method) = &self.method
            && method != req.method
        {
            return false;
        }
        let headers_ok = self.headers.iter().all(|c| {
            req.headers
                .get_all(&c.name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| c.value.matches(v)))
        });
        headers_ok
            && self.query.iter().all(|c| {
                query_pairs(req.query.unwrap_or_default())
                    .any(|(name, value)| name == c.name && c.value.matches(&value))
            })
    }
}

impl MatchConditions {
    /// Every condition with its value, one line each (`header x-canary = "always"`).
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.method.iter().map(|m| format!("method {m}")));
        out.extend(self.headers.iter().map(|h| format!("header {} {}", h.name, h.value)));
        out.extend(self.query.iter().map(|q| format!("query {} {}", q.name, q.value)));
        out
    }

    /// What `req` lacks to meet these conditions, one line each; empty exactly when
    /// [`MatchConditions::matches`] holds (the same tests, one by one).
    pub fn unmet(&self, req: &RequestView<'_>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(method) = &self.method
            && method != req.method
        {
            out.push(format!("method is {}, the rule needs {method}", req.method));
        }
        for c in &self.headers {
            let mut values = req.headers.get_all(&c.name).iter().peekable();
            if values.peek().is_none() {
                out.push(format!(
                    "header {} is missing, the rule needs {} {}",
                    c.name, c.name, c.value
                ));
            } else if !values.any(|v| v.to_str().is_ok_and(|v| c.value.matches(v))) {
                out.push(format!("header {}: no value {}", c.name, c.value));
            }
        }
        for c in &self.query {
            let mut pairs = query_pairs(req.query.unwrap_or_default()).filter(|(name, _)| *name == c.name);
            let mut pairs = pairs.by_ref().peekable();
            if pairs.peek().is_none() {
                out.push(format!(
                    "query parameter {} is missing, the rule needs {} {}",
                    c.name, c.name, c.value
                ));
            } else if !pairs.any(|(_, value)| c.value.matches(&value)) {
                out.push(format!("query parameter {}: no value {}", c.name, c.value));
            }
        }
        out
    }
}

impl fmt::Display for MatchConditions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(m) = &self.method {
            parts.push(format!("method {m}"));
        }
        for h in &self.headers {
            parts.push(format!("header {}", h.name));
        }
        for q in &self.query {
            parts.push(format!("query {}", q.name));
        }
        f.write_str(&parts.join(", "))
    }
}

/// What matching reads from a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// The URL path, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    /// A GET of `path` with no headers and no query.
    pub fn path_only(path: &'a str) -> Self {
        static EMPTY: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);
        RequestView {
            method: &Method::GET,
            path,
            query: None,
            headers: &EMPTY,
        }
    }
}

/// The `name=value` pairs of a query string, percent-decoded (`+` is left as it is: it
/// means a space only in HTML forms).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(name), percent_decode(value))
    })
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}
