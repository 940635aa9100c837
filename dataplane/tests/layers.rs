//! The dataplane's modules import one way: each only those above it in the layer table
//! of `docs/architecture.md`, so the table is read from there and every `crate::X` a
//! module names (outside comments and its unit tests) is checked against it. A new
//! top-level module must get a row; an import against the order fails here, naming the
//! files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Imports against the order that are known, documented under "Still to untangle",
/// and to be removed: (importer, imported).
const KNOWN: &[(&str, &str)] = &[];

/// Modules outside the layers: the crate root's plumbing.
const OUTSIDE: &[&str] = &["lib", "fuzzing"];

/// The layer of each top-level module, from the table's `module` column: `x.rs`, `x/`.
fn layers(doc: &str) -> BTreeMap<String, usize> {
    let section = doc
        .split("## The dataplane's layers")
        .nth(1)
        .expect("a section on the dataplane's layers");
    let mut layers = BTreeMap::new();
    let rows = section.lines().filter(|l| l.starts_with('|')).skip(2);
    for (rank, row) in rows.take_while(|l| l.starts_with('|')).enumerate() {
        let modules = row.split('|').nth(2).expect("a module column");
        for name in modules.split('`').skip(1).step_by(2) {
            let name = name.trim_end_matches('/').trim_end_matches(".rs");
            if !name.contains('/') {
                layers.insert(name.to_string(), rank);
            }
        }
    }
    layers
}

/// Each top-level module's `crate::X` references: X and the files naming it.
fn imports(src: &Path) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut found: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let top = rel.iter().next().and_then(|t| t.to_str()).expect("a name");
            let top = top.trim_end_matches(".rs").to_string();
            if path.extension().is_none_or(|e| e != "rs") || path.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read file");
            let code = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or_default();
            let code: String = code
                .lines()
                .map(|l| l.split("//").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            let mut names = BTreeSet::new();
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + 7..];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    names.extend(group.split(',').filter_map(|n| n.split("::").next()).map(str::trim));
                } else {
                    names.insert(
                        rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .next()
                            .unwrap_or_default(),
                    );
                }
            }
            for name in names.into_iter().filter(|n| !n.is_empty() && *n != top && *n != "self") {
                let files = found
                    .entry(top.clone())
                    .or_default()
                    .entry(name.to_string())
                    .or_default();
                files.insert(rel.display().to_string());
            }
            found.entry(top).or_default();
        }
    }
    found
}

#[test]
fn modules_import_only_the_layers_above_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/architecture.md")).expect("docs/architecture.md");
    let layers = layers(&doc);
    let imports = imports(&root.join("src"));
    let mut wrong = Vec::new();
    for (module, names) in &imports {
        if OUTSIDE.contains(&module.as_str()) {
            continue;
        }
        let Some(&rank) = layers.get(module) else {
            wrong.push(format!("{module}: no row in the layer table"));
            continue;
        };
        for (name, files) in names {
            let Some(&theirs) = layers.get(name) else {
                continue;
            };
            if theirs > rank && !KNOWN.contains(&(module.as_str(), name.as_str())) {
                wrong.push(format!("{module} imports {name}, a layer below it, in {files:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The known exceptions are still there: one fixed comes off the list.
    for (module, name) in KNOWN {
        assert!(
            imports.get(*module).is_some_and(|n| n.contains_key(*name)),
            "{module} no longer imports {name}: take it off KNOWN and the docs"
        );
    }
}
