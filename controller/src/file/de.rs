//! Deserializing one document so that an error can say exactly where: the field at
//! fault, its line and column in the text, and every field the type does not know.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned, UserMessageFormatter};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A path to a field, printed the way the API server and `kubectl explain` write it:
/// `spec.rules[0].http.paths[1].backend`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub fn key(key: &str) -> Self {
        FieldPath(vec![Segment::Key(key.to_string())])
    }

    /// Parses the dotted form [`Display`](fmt::Display) writes: `spec.rules[0].matches`.
    pub fn parse(text: &str) -> Self {
        let mut segments = Vec::new();
        for part in text.split('.') {
            let (key, indexes) = part.split_once('[').map_or((part, ""), |(k, rest)| (k, rest));
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_string()));
            }
            for index in indexes.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    segments.push(Segment::Index(i));
                }
            }
        }
        FieldPath(segments)
    }

    /// This path inside item `index` of a List document.
    pub fn in_item(mut self, index: usize) -> Self {
        self.0
            .splice(0..0, [Segment::Key("items".into()), Segment::Index(index)]);
        self
    }

    fn from_ignored(path: &serde_ignored::Path<'_>) -> Self {
        use serde_ignored::Path;
        let mut segments = Vec::new();
        let mut at = path;
        loop {
            at = match at {
                Path::Root => break,
                Path::Seq { parent, index } => {
                    segments.push(Segment::Index(*index));
                    parent
                }
                Path::Map { parent, key } => {
                    segments.push(Segment::Key(key.clone()));
                    parent
                }
                Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => parent,
            };
        }
        segments.reverse();
        FieldPath(segments)
    }

    /// Leaves out the segments the tracker could not name (a map key still being read).
    fn from_tracked(path: &serde_path_to_error::Path) -> Option<Self> {
        use serde_path_to_error::Segment as Tracked;
        let segments: Vec<_> = path
            .iter()
            .filter_map(|s| match s {
                Tracked::Seq { index } => Some(Segment::Index(*index)),
                Tracked::Map { key } => Some(Segment::Key(key.clone())),
                Tracked::Enum { variant } => Some(Segment::Key(variant.clone())),
                Tracked::Unknown => None,
            })
            .collect();
        (!segments.is_empty()).then_some(FieldPath(segments))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// An error inside one document, before it is placed in the file.
#[derive(Debug, Default)]
pub(super) struct Located {
    pub object: Option<String>,
    /// Within the document's text, from 1.
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub field: Option<FieldPath>,
    pub message: String,
}

impl Located {
    pub fn new(field: Option<FieldPath>, message: impl Into<String>) -> Self {
        Located {
            field,
            message: message.into(),
            ..Default::default()
        }
    }

    pub fn yaml(error: &serde_saphyr::Error, field: Option<FieldPath>) -> Self {
        let location = error.location().filter(|l| l.line() > 0);
        let message = UserMessageFormatter.format_message(error.without_snippet());
        Located {
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
            field,
            message: sanitize(&message),
            ..Default::default()
        }
    }
}

/// Error text quotes the file's own content; keep it on one line in logs. Rust's type
/// names (`invalid i32`, `expected u16`) become what a person writing YAML needs.
pub(super) fn sanitize(text: &str) -> String {
    let mut text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    for (types, words) in [
        (
            &["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize"][..],
            "expected a whole number",
        ),
        (&["f32", "f64"][..], "expected a number"),
    ] {
        for ty in types {
            for lead in ["invalid", "expected"] {
                text = text.replace(&format!("{lead} {ty}"), words);
            }
        }
    }
    text
}

pub(super) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { with_snippet: false }
}

/// Deserializes one YAML document; on success also returns the fields `T` ignored.
pub(super) fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<(T, Vec<FieldPath>), Located> {
    let mut unknown = Vec::new();
    let mut field = None;
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(FieldPath::from_ignored(&path));
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
        let de = serde_ignored::Deserializer::new(de, &mut on_unknown);
        serde_path_to_error::deserialize(de).map_err(|e| {
            field = FieldPath::from_tracked(e.path());
            e.into_inner()
        })
    });
    match result {
        Ok(value) => Ok((value, unknown)),
        Err(e) => Err(Located::yaml(&e, field)),
    }
}

/// Deserializes one item of a List, already read into a generic value; errors carry the
/// field but no position, which [`locate`] finds.
pub(super) fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<(T, Vec<FieldPath>), Located> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(FieldPath::from_ignored(&path));
    let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
    match serde_path_to_error::deserialize(de) {
        Ok(value) => Ok((value, unknown)),
        Err(e) => Err(Located::new(
            FieldPath::from_tracked(e.path()),
            sanitize(&e.inner().to_string()),
        )),
    }
}

/// Line and column of the deepest key of `field` that `text` has: for errors found
/// after parsing (an unknown field, a missing name) that the parser never saw.
pub(super) fn locate(text: &str, field: &FieldPath) -> Option<(u64, u64)> {
    let mut node: Node = serde_saphyr::from_str_with_options(text, yaml_options()).ok()?;
    let mut found: Option<Location> = None;
    for segment in &field.0 {
        node = match (node, segment) {
            (Node::Map(entries), Segment::Key(key)) => {
                let Some((k, value)) = entries.into_iter().find(|(k, _)| k.value == *key) else {
                    break;
                };
                found = Some(k.referenced);
                value
            }
            (Node::Seq(mut items), Segment::Index(index)) if *index < items.len() => items.swap_remove(*index),
            _ => break,
        };
    }
    found.filter(|l| l.line() > 0).map(|l| (l.line(), l.column()))
}

/// A YAML document's shape with the position of every mapping key, and nothing else.
enum Node {
    Map(Vec<(Spanned<String>, Node)>),
    Seq(Vec<Node>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;

        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Node::Map(entries))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }

            fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
                Node::deserialize(deserializer)
            }
        }

        deserializer.deserialize_any(NodeVisitor)
    }
}
