//! Gateway API's `URLRewrite`: the host and path the endpoint sees instead of the
//! client's.

use http::Uri;
use http::header::{HOST, HeaderName, HeaderValue};

use super::{Filter, Phases, UpstreamHead};

/// How a path is replaced (Gateway API `HTTPPathModifier`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path becomes this.
    ReplaceFullPath(String),
    /// The matched `PathPrefix` (`prefix`, indexed form without a trailing slash) is
    /// replaced by `with`: `/old` → `/new` turns `/old/a` into `/new/a`; `with: /` turns
    /// `/old/a` into `/a`.
    ReplacePrefixMatch { prefix: String, with: String },
}

impl PathModifier {
    /// The new path for `path` (no query).
    pub fn apply(&self, path: &str) -> String {
        let mut out = String::with_capacity(path.len() + 16);
        self.write(path, &mut out);
        out
    }

    /// `path_and_query` with the path replaced and the query kept.
    pub fn apply_to(&self, uri: &Uri) -> String {
        let (path, query) = (uri.path(), uri.query());
        let mut out = String::with_capacity(path.len() + 16 + query.map_or(0, |q| q.len() + 1));
        self.write(path, &mut out);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }

    /// Appends the new path for `path` to `out`: pieces pushed in place, no
    /// formatting machinery on the request path.
    fn write(&self, path: &str, out: &mut String) {
        match self {
            PathModifier::ReplaceFullPath(p) => out.push_str(p),
            PathModifier::ReplacePrefixMatch { prefix, with } => {
                let prefix = if prefix == "/" { "" } else { prefix.as_str() };
                let rest = path.strip_prefix(prefix).unwrap_or(path);
                let with = match with.as_bytes().last() {
                    Some(b'/') => &with[..with.len() - 1],
                    _ => with.as_str(),
                };
                out.push_str(with);
                // `with: /` leaves the rest, which must still start the path with a slash.
                if with.is_empty() && !rest.starts_with('/') {
                    out.push('/');
                }
                out.push_str(rest);
            }
        }
    }
}

/// Gateway API `URLRewrite`: what the backend sees instead of what the client sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlRewrite {
    /// Replaces `Host` (HTTP/1.1) or `:authority` (HTTP/2).
    pub hostname: Option<HeaderValue>,
    pub path: Option<PathModifier>,
}

#[derive(Debug)]
pub struct Rewrite(pub UrlRewrite);

impl Filter for Rewrite {
    fn upstream_request(&self, req: &mut UpstreamHead<'_>) {
        if let Some(name) = &self.0.hostname {
            req.headers.insert(HOST, name.clone());
            req.host = Some(name.clone());
        }
        if let Some(path) = &self.0.path {
            req.path_and_query = Some(path.apply_to(req.uri));
        }
    }

    fn phases(&self) -> Phases {
        Phases::UPSTREAM_REQUEST
    }

    fn header_names(&self) -> Option<Vec<HeaderName>> {
        Some(self.0.hostname.iter().map(|_| HOST).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(prefix: &str, with: &str) -> PathModifier {
        PathModifier::ReplacePrefixMatch {
            prefix: prefix.into(),
            with: with.into(),
        }
    }

    /// ReplacePrefixMatch swaps the matched prefix and keeps the rest, as Gateway API says.
    #[test]
    fn replace_prefix_match() {
        for (p, with, path, want) in [
            ("/old", "/new", "/old/a", "/new/a"),
            ("/old", "/new", "/old", "/new"),
            ("/old", "/new/", "/old/a", "/new/a"),
            ("/old", "/", "/old/a", "/a"),
            ("/old", "/", "/old", "/"),
            ("/", "/v2", "/a/b", "/v2/a/b"),
            ("/", "/", "/a", "/a"),
            ("/", "/", "/", "/"),
            ("/old", "", "/old", "/"),
        ] {
            assert_eq!(prefix(p, with).apply(path), want, "{p} -> {with} on {path}");
        }
    }

    /// The query goes with the new path, unchanged.
    #[test]
    fn the_query_is_kept() {
        let uri: Uri = "/old/a?x=1&y=%2F".parse().unwrap();
        assert_eq!(prefix("/old", "/new").apply_to(&uri), "/new/a?x=1&y=%2F");
        assert_eq!(
            PathModifier::ReplaceFullPath("/p".into()).apply_to(&uri),
            "/p?x=1&y=%2F"
        );
    }
}
