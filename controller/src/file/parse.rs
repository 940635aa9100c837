//! Reading the file's text into a [`Snapshot`]: documents, kinds, objects.

use std::collections::HashMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::de::{FieldPath, Located, from_value, from_yaml, locate, sanitize, yaml_options};
use super::{FileError, InvalidDocument};
use crate::crd;
use crate::snapshot::{InputObject, Kind, KindVisitor, Object, Snapshot};

/// Reads every object of a multi-document YAML file into a [`Snapshot`].
///
/// Namespaced objects without a namespace get `default`, as with `kubectl apply`. The
/// first invalid document fails the whole file: a half-read file would publish a table
/// with some routes silently missing.
pub fn parse(yaml: &str) -> Result<Snapshot, FileError> {
    let yaml = yaml.strip_prefix('\u{feff}').unwrap_or(yaml);
    let mut loader = Loader::default();
    let documents = split_documents(yaml).into_iter().filter(|d| !is_blank(&d.text));
    for (index, document) in documents.enumerate() {
        loader.load(index + 1, &document).map_err(FileError::Invalid)?;
    }
    Ok(loader.snapshot)
}

/// One `---` document: its text, and how many lines of the file come before it.
struct Document {
    text: String,
    lines_before: u64,
}

impl Document {
    /// The document's first line with content, from 1: where an error about the
    /// document as a whole points.
    fn first_line(&self) -> u64 {
        let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
        self.text.lines().take_while(|l| blank(l)).count() as u64 + 1
    }
}

/// Splits a YAML stream at its document markers, keeping each document's place in the
/// file so errors point at lines of the file, not of the document.
///
/// A line starting with `---` or `...` followed by a space or the line's end is always a
/// marker: YAML forbids both at the start of a line inside any content. Content after
/// `---` on the same line stays in the document, at its own column.
fn split_documents(yaml: &str) -> Vec<Document> {
    let is_marker = |line: &str, marker: &str| {
        line.strip_prefix(marker)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    };
    let mut documents = Vec::new();
    let mut current = Document {
        text: String::new(),
        lines_before: 0,
    };
    for (index, line) in yaml.split_inclusive('\n').enumerate() {
        let index = index as u64;
        if is_marker(line, "---") {
            let next = Document {
                text: format!("   {}", &line[3..]),
                lines_before: index,
            };
            documents.push(std::mem::replace(&mut current, next));
        } else if is_marker(line, "...") {
            let next = Document {
                text: String::new(),
                lines_before: index + 1,
            };
            documents.push(std::mem::replace(&mut current, next));
        } else {
            current.text.push_str(line);
        }
    }
    documents.push(current);
    documents
}

/// The `apiVersion` and `kind` of a document in the usual block style, read from its
/// top-level lines (no indentation) without parsing it: `None` unless each appears
/// once, as a plain value of letters, digits, `.`, `/` and `-`.
fn scan_header(text: &str) -> Option<(&str, &str)> {
    let (mut api_version, mut kind) = (None, None);
    for line in text.lines() {
        let (slot, rest) = match line.split_once(':') {
            Some(("apiVersion", rest)) => (&mut api_version, rest),
            Some(("kind", rest)) => (&mut kind, rest),
            _ => continue,
        };
        // `kind:Service` is one plain scalar in YAML, not a key and its value.
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let value = rest.trim();
        let plain = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-'));
        if !plain || slot.replace(value).is_some() {
            return None;
        }
    }
    Some((api_version?, kind?))
}

/// Only whitespace, comments and directives: not a document anyone wrote.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l.starts_with('%'))
}

enum Known {
    Object(Kind),
    List,
}

/// What file mode does with a document of `kind`: `Ok(None)` for kinds it skips,
/// including same-named kinds of other API groups (a Knative `Service`), and an error
/// for our kinds at a version that is not served, like `extensions/v1beta1` Ingresses.
fn classify(api_version: Option<&str>, kind: &str) -> Result<Option<Known>, String> {
    let (group, served, known) = match (kind, Kind::from_name(kind)) {
        ("List", _) => ("", "v1", Known::List),
        (_, Some(k)) => (k.info().group, k.info().version, Known::Object(k)),
        (_, None) => return Ok(None),
    };
    let expected = if group.is_empty() {
        served.to_string()
    } else {
        format!("{group}/{served}")
    };
    let Some(api_version) = api_version else {
        return Err(format!("missing; a {kind} is {expected}"));
    };
    let (actual_group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    // Ingress lived in `extensions` until Kubernetes 1.22; treat it as the same kind.
    let legacy = kind == "Ingress" && actual_group == "extensions";
    if actual_group != group && !legacy {
        return Ok(None);
    }
    if version != served || legacy {
        return Err(format!("{api_version} is not supported for {kind}; use {expected}"));
    }
    Ok(Some(known))
}

fn namespaced(kind: Kind) -> bool {
    kind.info().namespaced
}

/// The fields every object has, read before the kind is known.
#[derive(Default, Deserialize)]
#[serde(expecting = "a Kubernetes object: a mapping with apiVersion, kind and metadata")]
struct Header {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: HeaderMeta,
}

#[derive(Default, Deserialize)]
struct HeaderMeta {
    name: Option<String>,
    namespace: Option<String>,
}

impl Header {
    /// `Kind namespace/name` as far as known, for error messages.
    fn describe(&self, kind: Option<Kind>) -> Option<String> {
        let kind_name = self.kind.as_deref()?;
        let Some(name) = self.metadata.name.as_deref() else {
            return Some(kind_name.to_string());
        };
        if kind.is_some_and(|k| !namespaced(k)) {
            return Some(format!("{kind_name} {name}"));
        }
        let namespace = self
            .metadata
            .namespace
            .as_deref()
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default");
        Some(format!("{kind_name} {namespace}/{name}"))
    }
}

#[derive(Deserialize)]
struct ListDocument {
    #[serde(default)]
    items: Vec<Spanned<serde_json::Value>>,
}

/// Unknown fields are errors, as with `kubectl apply`: a misspelt field (`pathtype`)
/// would otherwise silently change routing. A Route must also pass the rules its CRD
/// has the API server enforce, so a file refuses what a cluster would.
fn deny_unknown((object, unknown): (Object, Vec<FieldPath>)) -> Result<Object, Located> {
    // A custom resource's derived type reads apiVersion and kind without keeping them;
    // the header already checked both.
    let header = [FieldPath::key("apiVersion"), FieldPath::key("kind")];
    // Gateway API objects are read leniently, as in a cluster: their types hold only
    // what Portico uses, and what it does not support is reported in their status.
    let lenient = object.kind().info().group == crate::gateway_api::GROUP;
    if let Some(field) = unknown.into_iter().find(|f| !header.contains(f) && !lenient) {
        return Err(Located::new(Some(field), "unknown field"));
    }
    if let Object::Route(route) = &object
        && let Some(invalid) = crd::validate(&route.spec).into_iter().next()
    {
        let field = FieldPath::parse(&invalid.field);
        return Err(Located::new(Some(field), invalid.message));
    }
    Ok(object)
}

/// Reads one document's text as the type of its kind.
struct FromYaml<'a>(&'a str);

impl KindVisitor for FromYaml<'_> {
    type Output = Result<(Object, Vec<FieldPath>), Located>;
    fn visit<T: InputObject>(self) -> Self::Output {
        from_yaml::<T>(self.0).map(|(object, unknown)| (object.into(), unknown))
    }
}

/// Reads one List item as the type of its kind.
struct FromValue(serde_json::Value);

impl KindVisitor for FromValue {
    type Output = Result<(Object, Vec<FieldPath>), Located>;
    fn visit<T: InputObject>(self) -> Self::Output {
        from_value::<T>(self.0).map(|(object, unknown)| (object.into(), unknown))
    }
}

#[derive(Default)]
struct Loader {
    snapshot: Snapshot,
    /// Which document defined each object, to name it when another defines it again.
    defined: HashMap<(Kind, String, String), usize>,
}

impl Loader {
    fn load(&mut self, number: usize, document: &Document) -> Result<(), Box<InvalidDocument>> {
        let place = |e: Located| {
            let position = match (e.line, &e.field) {
                (Some(line), _) => Some((line, e.column.unwrap_or(1))),
                (None, Some(field)) => locate(&document.text, field),
                (None, None) => None,
            };
            let (line, column) = position.unwrap_or((document.first_line(), 1));
            Box::new(InvalidDocument {
                file: None,
                document: number,
                object: e.object,
                line: Some(line + document.lines_before),
                column: Some(column),
                field: e.field.map(|f| f.to_string()),
                message: e.message,
            })
        };
        if let Some(loaded) = self.load_fast(number, &document.text) {
            return loaded.map_err(place);
        }
        let (header, _) = from_yaml::<Option<Header>>(&document.text).map_err(place)?;
        // A document that is just `~` or `null`.
        let Some(header) = header else { return Ok(()) };
        match self.classify(number, &header, None).map_err(place)? {
            None => Ok(()),
            Some(Known::List) => self.load_list(number, document).map_err(place),
            Some(Known::Object(kind)) => {
                let object = kind
                    .visit(FromYaml(&document.text))
                    .and_then(deny_unknown)
                    .map_err(|e| Located {
                        object: header.describe(Some(kind)),
                        ..e
                    })
                    .map_err(place)?;
                self.add(number, kind, &header, object).map_err(place)
            }
        }
    }

    /// One parse instead of two for the common document: when its top-level lines name a
    /// kind whose type checks `apiVersion` and `kind` itself, parse it as that type
    /// straight away. `None` when that does not apply or does not succeed: the caller
    /// then takes the general path, which reports errors exactly as it always has.
    fn load_fast(&mut self, number: usize, text: &str) -> Option<Result<(), Located>> {
        let (api_version, kind_name) = scan_header(text)?;
        let Ok(Some(Known::Object(kind))) = classify(Some(api_version), kind_name) else {
            return None;
        };
        // A custom resource's derived type does not check its apiVersion and kind.
        if kind == Kind::Route || kind.info().group == crate::gateway_api::GROUP {
            return None;
        }
        let mut object = kind.visit(FromYaml(text)).and_then(deny_unknown).ok()?;
        let meta = object.metadata_mut();
        let header = Header {
            api_version: Some(api_version.to_string()),
            kind: Some(kind_name.to_string()),
            metadata: HeaderMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
            },
        };
        Some(self.add(number, kind, &header, object))
    }

    fn classify(&self, number: usize, header: &Header, item: Option<usize>) -> Result<Option<Known>, Located> {
        let Some(kind) = header.kind.as_deref() else {
            let message = "kind is missing; every object needs apiVersion and kind";
            return Err(Located::new(None, message));
        };
        let known = classify(header.api_version.as_deref(), kind).map_err(|message| Located {
            object: header.describe(None),
            ..Located::new(Some(FieldPath::key("apiVersion")), message)
        })?;
        if known.is_none() {
            tracing::warn!(
                document = number,
                item,
                kind,
                api_version = header.api_version.as_deref().unwrap_or_default(),
                name = header.metadata.name.as_deref().unwrap_or_default(),
                "skipping an object of a kind file mode does not use"
            );
        }
        Ok(known)
    }

    fn load_list(&mut self, number: usize, document: &Document) -> Result<(), Located> {
        let list: ListDocument =
            serde_saphyr::from_str_with_options(&document.text, yaml_options()).map_err(|e| Located::yaml(&e, None))?;
        for (index, item) in list.items.into_iter().enumerate() {
            // Items were read as generic values, so their errors have a field but no
            // position: find the field in the text, or point at the item.
            let at = |e: Located| {
                let field = e
                    .field
                    .map_or_else(|| FieldPath::default().in_item(index), |f| f.in_item(index));
                let item_start = (item.referenced.line(), item.referenced.column());
                let (line, column) = locate(&document.text, &field).unwrap_or(item_start);
                Located {
                    line: Some(line),
                    column: Some(column),
                    field: Some(field),
                    ..e
                }
            };
            let header = Header::deserialize(&item.value)
                .map_err(|e| Located::new(None, sanitize(&e.to_string())))
                .map_err(at)?;
            match self.classify(number, &header, Some(index)).map_err(at)? {
                None => {}
                Some(Known::List) => return Err(at(Located::new(None, "a List inside a List is not supported"))),
                Some(Known::Object(kind)) => {
                    let object = kind
                        .visit(FromValue(item.value))
                        .and_then(deny_unknown)
                        .map_err(|e| Located {
                            object: header.describe(Some(kind)),
                            ..e
                        })
                        .map_err(at)?;
                    self.add(number, kind, &header, object).map_err(at)?;
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, number: usize, kind: Kind, header: &Header, mut object: Object) -> Result<(), Located> {
        let describe = || header.describe(Some(kind));
        let meta = object.metadata_mut();
        let name = meta.name.clone().filter(|n| !n.is_empty());
        let Some(name) = name else {
            let missing = Located::new(
                Some(FieldPath::key("metadata")),
                "name is missing; every object needs one",
            );
            return Err(Located {
                object: describe(),
                ..missing
            });
        };
        let namespace = if namespaced(kind) {
            meta.namespace.get_or_insert_with(|| "default".to_string()).clone()
        } else {
            String::new()
        };
        if let Some(first) = self.defined.insert((kind, namespace, name), number) {
            let message = format!("already defined by document {first}; each object may appear once");
            return Err(Located {
                object: describe(),
                ..Located::new(None, message)
            });
        }
        self.snapshot.push(object);
        Ok(())
    }
}
