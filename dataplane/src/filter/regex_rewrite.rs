//! ingress-nginx's `rewrite-target`: nginx's `rewrite "(?i)<path>" <target> break;`,
//! the path the endpoint sees built from the rule path's capture groups.
//!
//! As in nginx, the pattern is searched (not anchored) in the request path,
//! case-insensitively; `$1` to `$9` in the target stand for the groups (empty when a
//! group took no part); a path the pattern does not match is sent unchanged. The
//! client's query string follows the new path, after a `&` when the target has a query
//! of its own (nginx appends the original arguments the same way).

use regex::Regex;

use super::{Filter, Phases, UpstreamHead};
use crate::pattern::{InvalidRegex, bounded_regex};

/// A rule path as a case-insensitive pattern, and the target its captures fill in.
#[derive(Clone, Debug)]
pub struct RegexRewrite {
    pattern: Regex,
    target: Box<[Piece]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// Two rewrites are the same when their pattern and target are.
impl PartialEq for RegexRewrite {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.target == other.target
    }
}

impl Eq for RegexRewrite {}

impl RegexRewrite {
    /// `path` is the rule's path (a regular expression, as nginx takes it); `target`
    /// the replacement. Only `$1`..`$9` are expanded: any other `$` is refused, since
    /// nginx would read it as a variable Portico does not have.
    pub fn new(path: &str, target: &str) -> Result<RegexRewrite, InvalidRegex> {
        let pattern = bounded_regex(path, true)?;
        let mut target_pieces = Vec::new();
        let mut text = String::new();
        let mut chars = target.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                text.push(c);
                continue;
            }
            match chars.next().and_then(|d| d.to_digit(10)) {
                Some(d) if d >= 1 => {
                    if !text.is_empty() {
                        target_pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    target_pieces.push(Piece::Group(d as usize));
                }
                _ => {
                    return Err(InvalidRegex {
                        pattern: target.to_string(),
                        reason: "only $1 to $9 (the path's capture groups) may follow '$' in a rewrite target"
                            .to_string(),
                    });
                }
            }
        }
        if !text.is_empty() {
            target_pieces.push(Piece::Text(text));
        }
        Ok(RegexRewrite {
            pattern,
            target: target_pieces.into(),
        })
    }

    /// The new path and query for `path` and `query`; `None` when the pattern does not
    /// match and the request goes unchanged.
    pub fn apply(&self, path: &str, query: Option<&str>) -> Option<String> {
        let caps = self.pattern.captures(path)?;
        let mut out = String::with_capacity(path.len() + 16);
        for piece in &self.target {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(i) => out.push_str(caps.get(*i).map_or("", |m| m.as_str())),
            }
        }
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(q);
        }
        Some(out)
    }
}

impl Filter for RegexRewrite {
    fn upstream_request(&self, req: &mut UpstreamHead<'_>) {
        if let Some(new) = self.apply(req.uri.path(), req.uri.query()) {
            req.path_and_query = Some(new);
        }
    }

    fn phases(&self) -> Phases {
        Phases::UPSTREAM_REQUEST
    }

    fn header_names(&self) -> Option<Vec<http::header::HeaderName>> {
        Some(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ingress-nginx's rewrite examples (docs/examples/rewrite/README.md): `/something(/|$)(.*)`
    /// with target `/$2` strips the prefix and keeps the rest.
    #[test]
    fn captures_fill_the_target() {
        let r = RegexRewrite::new("/something(/|$)(.*)", "/$2").unwrap();
        for (path, query, want) in [
            ("/something", None, Some("/")),
            ("/something/", None, Some("/")),
            ("/something/new", None, Some("/new")),
            ("/SOMETHING/new", Some("a=1"), Some("/new?a=1")),
            ("/other", None, None),
        ] {
            assert_eq!(r.apply(path, query).as_deref(), want, "{path}");
        }
    }

    /// A target with a query of its own gets the client's after a `&`, as nginx's
    /// `rewrite` appends the original arguments.
    #[test]
    fn query_appended_after_the_targets_own() {
        let r = RegexRewrite::new("/api/(.*)", "/v2/$1?from=api").unwrap();
        assert_eq!(r.apply("/api/x", Some("b=2")).as_deref(), Some("/v2/x?from=api&b=2"));
    }

    /// A group that took no part expands to nothing; any `$` but `$1`..`$9` is refused.
    #[test]
    fn targets_only_expand_groups() {
        let r = RegexRewrite::new("/a(/b)?(.*)", "$1$2").unwrap();
        assert_eq!(r.apply("/a/c", None).as_deref(), Some("/c"));
        assert!(RegexRewrite::new("/a", "/$host").is_err());
        assert!(RegexRewrite::new("/a", "/$0").is_err());
        assert!(RegexRewrite::new("/a(", "/").is_err());
    }
}
