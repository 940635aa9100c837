//! Path matching for one host: Exact, Prefix, ImplementationSpecific and regular
//! expressions.
//!
//! Each indexed path holds an ordered list of candidates (extra conditions and the
//! route they lead to). A lookup collects every entry whose path matches, longest
//! first, and returns the first candidate whose conditions hold: a request that fails
//! the header match of `/api` falls back to `/`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use regex::{Regex, RegexSet};

use super::Route;
use super::matches::{MatchConditions, RequestView, full_match_regex};

/// Ingress v1 `pathType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum PathKind {
    /// Byte-exact.
    Exact,
    /// Element-wise on `/`-separated segments; a trailing slash is ignored.
    Prefix,
    /// What ingress-nginx does: a plain string prefix (`/foo` also matches `/foobar`).
    ImplementationSpecific,
    /// A regular expression that must match the whole path (a `Route`'s
    /// `RegularExpression`). Ranked by the pattern's length, after the other kinds.
    RegularExpression,
}

impl PathKind {
    /// Tie-break at equal rule length: higher wins.
    pub(super) fn rank(self) -> u8 {
        match self {
            PathKind::Exact => 3,
            PathKind::Prefix => 2,
            PathKind::ImplementationSpecific => 1,
            PathKind::RegularExpression => 0,
        }
    }
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::Exact => "Exact",
            PathKind::Prefix => "Prefix",
            PathKind::ImplementationSpecific => "ImplementationSpecific",
            PathKind::RegularExpression => "RegularExpression",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} path {path:?}: {reason}")]
pub struct InvalidPath {
    pub path: String,
    pub kind: PathKind,
    pub reason: String,
}

/// Checks a rule path and returns the form it is indexed under.
pub fn validate(path: &str, kind: PathKind) -> Result<&str, InvalidPath> {
    let bad = |reason: &str| InvalidPath {
        path: path.to_string(),
        kind,
        reason: reason.to_string(),
    };
    if kind == PathKind::RegularExpression {
        return full_match_regex(path).map(|_| path).map_err(|e| bad(&e.reason));
    }
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
        // (RegularExpression returned above.)
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
pub(super) struct Candidate {
    pub(super) conditions: MatchConditions,
    pub(super) route: Arc<Route>,
}

#[derive(Debug)]
pub(super) struct Entry {
    /// Most specific first; among equals, the order they were added (oldest first).
    candidates: Vec<Candidate>,
    /// Length of the rule path as indexed: the "longest path wins" measure.
    len: usize,
}

/// One indexed path of a host, as `explain` walks them.
pub(super) struct IndexedPath<'a> {
    /// The path as indexed (a Prefix without its trailing slash, a pattern as written).
    pub path: String,
    pub kind: PathKind,
    pub entry: &'a Entry,
}

impl Entry {
    fn new(len: usize) -> Self {
        Entry {
            candidates: Vec::new(),
            len,
        }
    }

    /// Adds a candidate; returns the route that already has exactly these conditions.
    fn add(&mut self, conditions: MatchConditions, route: Arc<Route>) -> Option<Arc<Route>> {
        if let Some(existing) = self.candidates.iter().find(|c| c.conditions == conditions) {
            return Some(existing.route.clone());
        }
        let key = conditions.specificity();
        let at = self
            .candidates
            .iter()
            .position(|c| c.conditions.specificity() < key)
            .unwrap_or(self.candidates.len());
        self.candidates.insert(at, Candidate { conditions, route });
        None
    }

    fn find(&self, req: &RequestView<'_>) -> Option<&Arc<Route>> {
        self.candidates
            .iter()
            .find(|c| c.conditions.is_empty() || c.conditions.matches(req))
            .map(|c| &c.route)
    }

    /// The candidates, in the order they are tried.
    pub(super) fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Which candidate a request gets, by position, exactly as a lookup chooses it.
    pub(super) fn chosen(&self, req: &RequestView<'_>) -> Option<usize> {
        let route = self.find(req)?;
        self.candidates.iter().position(|c| std::ptr::eq(&c.route, route))
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
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

/// The regular-expression paths of one host, matched in one pass by a `RegexSet`.
#[derive(Debug, Default)]
struct RegexPaths {
    patterns: Vec<Regex>,
    entries: Vec<Entry>,
    /// Built by [`PathIndex::finish`]; `None` until then, or when the patterns together
    /// exceed the set's size limit (each is then tried on its own).
    set: Option<RegexSet>,
}

/// The paths of one host block.
#[derive(Debug, Default)]
pub(super) struct PathIndex {
    exact: HashMap<Box<str>, Entry>,
    prefix: SegmentNode,
    /// Byte trie; node 0 is the root once anything is inserted.
    string_prefix: Vec<ByteNode>,
    regex: RegexPaths,
}

impl PathIndex {
    /// Inserts a rule; returns the route already holding that (path, kind, conditions),
    /// if any, leaving it in place.
    pub fn insert(
        &mut self,
        path: &str,
        kind: PathKind,
        conditions: MatchConditions,
        route: Arc<Route>,
    ) -> Result<Option<Arc<Route>>, InvalidPath> {
        let path = validate(path, kind)?;
        let len = path.len();
        let entry = match kind {
            PathKind::Exact => self.exact.entry(path.into()).or_insert_with(|| Entry::new(len)),
            PathKind::Prefix => {
                let mut node = &mut self.prefix;
                for seg in segments(path) {
                    node = node.children.entry(seg.into()).or_default();
                }
                node.entry.get_or_insert_with(|| Entry::new(len))
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
                self.string_prefix[at].entry.get_or_insert_with(|| Entry::new(len))
            }
            PathKind::RegularExpression => {
                let regex = &mut self.regex;
                match regex.patterns.iter().position(|p| p.as_str() == full_pattern(path)) {
                    Some(i) => &mut regex.entries[i],
                    None => {
                        let compiled = full_match_regex(path).map_err(|e| InvalidPath {
                            path: path.to_string(),
                            kind,
                            reason: e.reason,
                        })?;
                        regex.patterns.push(compiled);
                        regex.entries.push(Entry::new(len));
                        regex.set = None;
                        let last = regex.entries.len() - 1;
                        &mut regex.entries[last]
                    }
                }
            }
        };
        Ok(entry.add(conditions, route))
    }

    /// Builds what lookups need once every rule is in.
    pub fn finish(&mut self) {
        let regex = &mut self.regex;
        if regex.patterns.is_empty() {
            return;
        }
        let limit = (super::matches::REGEX_SIZE_LIMIT * regex.patterns.len()).min(64 << 20);
        regex.set = regex::RegexSetBuilder::new(regex.patterns.iter().map(Regex::as_str))
            .size_limit(limit)
            .dfa_size_limit(limit)
            .build()
            .ok();
    }

    /// The best route for a request: among the entries whose path matches, longest rule
    /// path first, then Exact over Prefix over ImplementationSpecific over
    /// RegularExpression; within an entry, the first candidate whose conditions hold.
    pub fn lookup(&self, req: &RequestView<'_>) -> Option<&Arc<Route>> {
        // Fast path, the only one a table of Ingress rules ever takes: the best entry
        // has a candidate the request meets. Only a request failing a Route's
        // conditions collects every matching entry.
        if let Some(route) = self.best(req.path).and_then(|e| e.find(req)) {
            return Some(route);
        }
        self.matching(req.path).into_iter().find_map(|(e, _)| e.find(req))
    }

    /// Every entry whose path matches `path`, in the order a lookup tries them: longest
    /// rule path first, then Exact, Prefix, ImplementationSpecific, RegularExpression;
    /// regular expressions of equal length in the order they were added.
    ///
    /// The lookup's slow path and `explain` share it, so they cannot disagree. As a call
    /// it costs a request no rule matches about 18 instructions more than the same loop
    /// written inside `lookup` (1,417 against 1,399 per miss in `benches/lookup` at
    /// 1,000 rules, callgrind); a hit is unchanged (2,401 against 2,402). Forcing it
    /// inline measured worse (1,477).
    pub(super) fn matching(&self, path: &str) -> Vec<(&Entry, PathKind)> {
        let mut found: Vec<(&Entry, PathKind)> = Vec::new();
        if let Some(e) = self.exact.get(path) {
            found.push((e, PathKind::Exact));
        }
        let mut node = &self.prefix;
        found.extend(node.entry.as_ref().map(|e| (e, PathKind::Prefix)));
        for seg in segments(path) {
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    found.extend(child.entry.as_ref().map(|e| (e, PathKind::Prefix)));
                }
                None => break,
            }
        }
        if let Some(root) = self.string_prefix.first() {
            let mut node = root;
            found.extend(node.entry.as_ref().map(|e| (e, PathKind::ImplementationSpecific)));
            for &b in path.as_bytes() {
                match node.children.binary_search_by_key(&b, |c| c.0) {
                    Ok(i) => {
                        node = &self.string_prefix[node.children[i].1 as usize];
                        found.extend(node.entry.as_ref().map(|e| (e, PathKind::ImplementationSpecific)));
                    }
                    Err(_) => break,
                }
            }
        }
        let regex = &self.regex;
        if !regex.patterns.is_empty() {
            let kind = PathKind::RegularExpression;
            match &regex.set {
                Some(set) => found.extend(set.matches(path).iter().map(|i| (&regex.entries[i], kind))),
                None => found.extend(
                    regex
                        .patterns
                        .iter()
                        .zip(&regex.entries)
                        .filter(|(p, _)| p.is_match(path))
                        .map(|(_, e)| (e, kind)),
                ),
            }
        }
        // A stable sort: among equals, the order found, which is the order added.
        found.sort_by_key(|(e, kind)| std::cmp::Reverse((e.len, kind.rank())));
        found
    }

    /// The longest matching entry (Exact over Prefix over ImplementationSpecific over
    /// RegularExpression at equal length), without allocating.
    fn best<'a>(&'a self, path: &str) -> Option<&'a Entry> {
        let rank = |e: &Entry, k: PathKind| (e.len, k.rank());
        let mut best: Option<(&'a Entry, PathKind)> = self.exact.get(path).map(|e| (e, PathKind::Exact));
        let mut consider = |e: Option<&'a Entry>, k: PathKind| {
            if let Some(e) = e
                && best.is_none_or(|(b, bk)| rank(e, k) > rank(b, bk))
            {
                best = Some((e, k));
            }
        };
        let mut node = &self.prefix;
        let mut deepest = node.entry.as_ref();
        for seg in segments(path) {
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    deepest = child.entry.as_ref().or(deepest);
                }
                None => break,
            }
        }
        consider(deepest, PathKind::Prefix);
        if let Some(root) = self.string_prefix.first() {
            let mut node = root;
            let mut deepest = node.entry.as_ref();
            for &b in path.as_bytes() {
                match node.children.binary_search_by_key(&b, |c| c.0) {
                    Ok(i) => {
                        node = &self.string_prefix[node.children[i].1 as usize];
                        deepest = node.entry.as_ref().or(deepest);
                    }
                    Err(_) => break,
                }
            }
            consider(deepest, PathKind::ImplementationSpecific);
        }
        let regex = &self.regex;
        if !regex.patterns.is_empty() {
            // The first of the longest (`min_by_key` keeps the first of equals): at equal
            // length the pattern added first, from the older object, wins, as in
            // `matching`.
            let longest = match &regex.set {
                Some(set) => set
                    .matches(path)
                    .iter()
                    .map(|i| &regex.entries[i])
                    .min_by_key(|e| std::cmp::Reverse(e.len)),
                None => regex
                    .patterns
                    .iter()
                    .zip(&regex.entries)
                    .filter(|(p, _)| p.is_match(path))
                    .map(|(_, e)| e)
                    .min_by_key(|e| std::cmp::Reverse(e.len)),
            };
            consider(longest, PathKind::RegularExpression);
        }
        best.map(|(e, _)| e)
    }

    /// Every indexed path with its kind; no order.
    pub(super) fn entries(&self) -> Vec<IndexedPath<'_>> {
        let mut out: Vec<IndexedPath<'_>> = self
            .exact
            .iter()
            .map(|(p, entry)| IndexedPath {
                path: p.to_string(),
                kind: PathKind::Exact,
                entry,
            })
            .collect();
        let mut stack = vec![(String::new(), &self.prefix)];
        while let Some((path, node)) = stack.pop() {
            if let Some(entry) = &node.entry {
                let path = if path.is_empty() { "/".to_string() } else { path.clone() };
                out.push(IndexedPath {
                    path,
                    kind: PathKind::Prefix,
                    entry,
                });
            }
            stack.extend(
                node.children
                    .iter()
                    .map(|(seg, child)| (format!("{path}/{seg}"), child)),
            );
        }
        if !self.string_prefix.is_empty() {
            let mut stack = vec![(Vec::new(), 0usize)];
            while let Some((bytes, at)) = stack.pop() {
                let node = &self.string_prefix[at];
                if let Some(entry) = &node.entry {
                    out.push(IndexedPath {
                        path: String::from_utf8_lossy(&bytes).into_owned(),
                        kind: PathKind::ImplementationSpecific,
                        entry,
                    });
                }
                for &(b, child) in &node.children {
                    let mut next = bytes.clone();
                    next.push(b);
                    stack.push((next, child as usize));
                }
            }
        }
        let regex = &self.regex;
        out.extend(regex.patterns.iter().zip(&regex.entries).map(|(p, entry)| {
            let pattern = p.as_str();
            let written = pattern
                .strip_prefix("^(?:")
                .and_then(|p| p.strip_suffix(")$"))
                .unwrap_or(pattern);
            IndexedPath {
                path: written.to_string(),
                kind: PathKind::RegularExpression,
                entry,
            }
        }));
        out
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        let mut entries: Vec<&Entry> = self.exact.values().collect();
        let mut stack = vec![&self.prefix];
        while let Some(n) = stack.pop() {
            entries.extend(n.entry.as_ref());
            stack.extend(n.children.values());
        }
        entries.extend(self.string_prefix.iter().filter_map(|n| n.entry.as_ref()));
        entries.extend(self.regex.entries.iter());
        entries.into_iter().flat_map(|e| e.candidates.iter().map(|c| &c.route))
    }
}

fn full_pattern(path: &str) -> String {
    format!("^(?:{path})$")
}
