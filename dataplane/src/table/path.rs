//! Path matching for one host: Exact, Prefix and ImplementationSpecific.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::Route;

/// Ingress v1 `pathType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// Byte-exact.
    Exact,
    /// Element-wise on `/`-separated segments; a trailing slash is ignored.
    Prefix,
    /// What ingress-nginx does: a plain string prefix (`/foo` also matches `/foobar`).
    ImplementationSpecific,
}

impl PathKind {
    /// Tie-break at equal rule length: higher wins.
    fn rank(self) -> u8 {
        match self {
            PathKind::Exact => 2,
            PathKind::Prefix => 1,
            PathKind::ImplementationSpecific => 0,
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::ImplementationSpecific => "ImplementationSpecific",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} path {path:?}: {reason}")]
pub struct InvalidPath {
    pub path: String,
    pub kind: PathKind,
    pub reason: &'static str,
}

/// Checks a rule path and returns the form it is indexed under.
pub fn validate(path: &str, kind: PathKind) -> Result<&str, InvalidPath> {
    let bad = |reason| InvalidPath {
        path: path.to_string(),
        kind,
        reason,
    };
    if !path.starts_with('/') {
        return Err(bad("must start with '/'"));
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        return Err(bad("must not contain spaces, control characters, '?' or '#'"));
    }
    if kind != PathKind::ImplementationSpecific {
        let dot_segment = path.split('/').any(|s| s == "." || s == "..");
        if path.contains("//") || dot_segment {
            return Err(bad("must not contain '//', '.' or '..' segments"));
        }
    }
    Ok(match kind {
        PathKind::Prefix if path.len() > 1 => path.trim_end_matches('/'),
        _ => path,
    })
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

#[derive(Debug)]
struct Entry {
    route: Arc<Route>,
    /// Length of the rule path as indexed: the "longest path wins" measure.
    len: usize,
}

#[derive(Debug, Default)]
struct SegmentNode {
    children: HashMap<Box<str>, SegmentNode>,
    entry: Option<Entry>,
}

#[derive(Debug, Default)]
struct ByteNode {
    /// Sorted by byte for binary search.
    children: Vec<(u8, u32)>,
    entry: Option<Entry>,
}

/// The paths of one host block.
#[derive(Debug, Default)]
pub(super) struct PathIndex {
    exact: HashMap<Box<str>, Entry>,
    prefix: SegmentNode,
    /// Byte trie; node 0 is the root once anything is inserted.
    string_prefix: Vec<ByteNode>,
}

impl PathIndex {
    /// Inserts a rule; returns the route already holding that (path, kind), if any,
    /// leaving it in place.
    pub fn insert(&mut self, path: &str, kind: PathKind, route: Arc<Route>) -> Result<Option<Arc<Route>>, InvalidPath> {
        let path = validate(path, kind)?;
        let entry = Entry { route, len: path.len() };
        match kind {
            PathKind::Exact => match self.exact.get(path) {
                Some(existing) => Ok(Some(existing.route.clone())),
                None => {
                    self.exact.insert(path.into(), entry);
                    Ok(None)
                }
            },
            PathKind::Prefix => {
                let mut node = &mut self.prefix;
                for seg in segments(path) {
                    node = node.children.entry(seg.into()).or_default();
                }
                Ok(place(&mut node.entry, entry))
            }
            PathKind::ImplementationSpecific => {
                if self.string_prefix.is_empty() {
                    self.string_prefix.push(ByteNode::default());
                }
                let mut at = 0usize;
                for &b in path.as_bytes() {
                    let next = self.string_prefix.len() as u32;
                    let children = &mut self.string_prefix[at].children;
                    at = match children.binary_search_by_key(&b, |c| c.0) {
                        Ok(i) => children[i].1 as usize,
                        Err(i) => {
                            children.insert(i, (b, next));
                            self.string_prefix.push(ByteNode::default());
                            next as usize
                        }
                    };
                }
                Ok(place(&mut self.string_prefix[at].entry, entry))
            }
        }
    }

    /// The best route for a request path: longest rule path, then Exact over Prefix over
    /// ImplementationSpecific.
    pub fn lookup(&self, path: &str) -> Option<&Arc<Route>> {
        let mut best: Option<(&Entry, PathKind)> = self.exact.get(path).map(|e| (e, PathKind::Exact));
        let mut node = &self.prefix;
        let mut prefix = node.entry.as_ref();
        for seg in segments(path) {
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    if child.entry.is_some() {
                        prefix = child.entry.as_ref();
                    }
                }
                None => break,
            }
        }
        best = better(best, prefix.map(|e| (e, PathKind::Prefix)));

        if let Some(root) = self.string_prefix.first() {
            let mut node = root;
            let mut found = node.entry.as_ref();
            for &b in path.as_bytes() {
                match node.children.binary_search_by_key(&b, |c| c.0) {
                    Ok(i) => {
                        node = &self.string_prefix[node.children[i].1 as usize];
                        if node.entry.is_some() {
                            found = node.entry.as_ref();
                        }
                    }
                    Err(_) => break,
                }
            }
            best = better(best, found.map(|e| (e, PathKind::ImplementationSpecific)));
        }
        best.map(|(e, _)| &e.route)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        let mut out: Vec<&Arc<Route>> = self.exact.values().map(|e| &e.route).collect();
        let mut stack = vec![&self.prefix];
        while let Some(n) = stack.pop() {
            out.extend(n.entry.as_ref().map(|e| &e.route));
            stack.extend(n.children.values());
        }
        out.extend(
            self.string_prefix
                .iter()
                .filter_map(|n| n.entry.as_ref().map(|e| &e.route)),
        );
        out.into_iter()
    }
}

fn place(slot: &mut Option<Entry>, entry: Entry) -> Option<Arc<Route>> {
    match slot {
        Some(existing) => Some(existing.route.clone()),
        None => {
            *slot = Some(entry);
            None
        }
    }
}

fn better<'a>(a: Option<(&'a Entry, PathKind)>, b: Option<(&'a Entry, PathKind)>) -> Option<(&'a Entry, PathKind)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if (y.0.len, y.1.rank()) > (x.0.len, x.1.rank()) {
            y
        } else {
            x
        }),
        (x, None) => x,
        (None, y) => y,
    }
}
