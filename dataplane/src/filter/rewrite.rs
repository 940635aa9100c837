//! Gateway API's `URLRewrite`: the host and path the endpoint sees instead of the
//! client's.

use http::Uri;
use http::header::{HOST, HeaderValue};

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
        match self {
            PathModifier::ReplaceFullPath(p) => p.clone(),
            PathModifier::ReplacePrefixMatch { prefix, with } => {
                let prefix = if prefix == "/" { "" } else { prefix.as_str() };
                let rest = path.strip_prefix(prefix).unwrap_or(path);
                let with = with.strip_suffix('/').unwrap_or(with);
                let joined = match (with, rest) {
                    ("", "") => "/".to_string(),
                    ("", r) if !r.starts_with('/') => format!("/{r}"),
                    (w, r) => format!("{w}{r}"),
                };
                if joined.is_empty() { "/".to_string() } else { joined }
            }
        }
    }

    /// `path_and_query` with the path replaced and the query kept.
    pub fn apply_to(&self, uri: &Uri) -> String {
        let path = self.apply(uri.path());
        match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
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
        ] {
            assert_eq!(prefix(p, with).apply(path), want, "{p} -> {with} on {path}");
        }
    }
}
