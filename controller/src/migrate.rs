//! `portico migrate`: what Portico would do with each ingress-nginx annotation of a
//! cluster's Ingresses and with each key of ingress-nginx's controller ConfigMap.
//!
//! Statuses come from [`catalog`], and values are checked by the compile's own
//! annotation parsers ([`check_annotations`]): the compile, this report and the
//! migration guide read one table, so they cannot disagree.
//!
//! The JSON output (`--output json`) is [`Report`] serialized; its schema is named by
//! [`SCHEMA`] and documented in `docs/migrating-from-ingress-nginx.md`. Fields are only
//! ever added to it.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compile::catalog::{self, Status};
use crate::compile::{AnnotationProblem, NGINX_PREFIX, check_annotations, class_of, reason, served_by};

/// The IngressClass name ingress-nginx answers to by default.
pub const NGINX_CLASS: &str = "nginx";
/// ingress-nginx's `spec.controller`.
pub const NGINX_CONTROLLER: &str = "k8s.io/ingress-nginx";
/// The names ingress-nginx's controller ConfigMap goes by: the Helm chart's and the
/// static manifests' (`ingress-nginx-controller`) and older manifests'
/// (`nginx-configuration`).
pub const CONFIG_MAP_NAMES: &[&str] = &["ingress-nginx-controller", "nginx-configuration"];
/// The `schema` field of the JSON output.
pub const SCHEMA: &str = "portico.dev/migrate/v1";
/// The largest input read from a file: a `kubectl get -o yaml` of ten thousand Ingresses
/// is a few tens of MiB.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// The objects the report reads.
#[derive(Debug, Default)]
pub struct Objects {
    pub ingresses: Vec<Ingress>,
    pub ingress_classes: Vec<IngressClass>,
    pub config_maps: Vec<ConfigMap>,
}

/// An Ingress as far as the report reads it: its metadata and class, at any API version
/// (`extensions/v1beta1` ones from old exports included).
#[derive(Deserialize)]
struct IngressHead {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<SpecHead>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecHead {
    #[serde(default)]
    ingress_class_name: Option<String>,
}

/// Reads `kubectl get ingress,configmap -A -o yaml` (a `List`) or multi-document YAML.
/// Kinds other than Ingress, IngressClass and ConfigMap are passed over.
pub fn read_objects(text: &str) -> Result<Objects, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let documents: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    let mut objects = Objects::default();
    for (index, document) in documents.into_iter().enumerate() {
        objects.add(document, &format!("document {}", index + 1))?;
    }
    Ok(objects)
}

impl Objects {
    fn add(&mut self, value: Value, place: &str) -> Result<(), String> {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let bad = |e: serde_json::Error| format!("{place}: not a valid {kind}: {e}");
        match kind.as_str() {
            "" if value.is_null() => {}
            "" => return Err(format!("{place}: no kind; expected a Kubernetes object or a List")),
            "Ingress" => {
                let head: IngressHead = serde_json::from_value(value).map_err(bad)?;
                self.ingresses.push(Ingress {
                    metadata: head.metadata,
                    spec: head.spec.map(|s| IngressSpec {
                        ingress_class_name: s.ingress_class_name,
                        ..IngressSpec::default()
                    }),
                    status: None,
                });
            }
            "IngressClass" => self.ingress_classes.push(serde_json::from_value(value).map_err(bad)?),
            "ConfigMap" => self.config_maps.push(serde_json::from_value(value).map_err(bad)?),
            list if list.ends_with("List") => {
                let items = match value.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => return Err(format!("{place}: the {list}'s items are not a list")),
                };
                for (index, item) in items.into_iter().enumerate() {
                    self.add(item, &format!("{place}, item {}", index + 1))?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What Portico does with one annotation or ConfigMap key, in the words the report uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Same meaning and default as in ingress-nginx.
    Honoured,
    /// Has its effect, with the difference in `detail`.
    Differs,
    /// No effect.
    Unsupported,
    /// nginx configuration text, never interpreted.
    Refused,
    /// A value that does not parse: the default applies (the parser's error in `detail`).
    Invalid,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Honoured,
        Verdict::Differs,
        Verdict::Unsupported,
        Verdict::Refused,
        Verdict::Invalid,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Honoured => "honoured",
            Verdict::Differs => "differs",
            Verdict::Unsupported => "unsupported",
            Verdict::Refused => "refused",
            Verdict::Invalid => "invalid",
        }
    }

    /// Traffic would be handled differently than under ingress-nginx.
    pub fn behaves_differently(self) -> bool {
        self != Verdict::Honoured
    }
}

/// One annotation of an Ingress, or one key of the ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The annotation's full key, or the ConfigMap key.
    pub name: String,
    pub value: String,
    pub status: Verdict,
    /// The difference, the parse error, or why there is no effect; `null` when honoured.
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IngressReport {
    pub namespace: String,
    pub name: String,
    /// Every `nginx.ingress.kubernetes.io/` annotation, by key.
    pub annotations: Vec<Finding>,
    /// What the parsers said about the annotations together rather than about one.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigMapReport {
    pub namespace: String,
    pub name: String,
    /// Every key of its `data`, by key.
    pub keys: Vec<Finding>,
}

/// Counts over every finding (annotations and ConfigMap keys together).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub ingresses: usize,
    pub skipped: usize,
    pub config_maps: usize,
    pub honoured: usize,
    pub differs: usize,
    pub unsupported: usize,
    pub refused: usize,
    pub invalid: usize,
}

impl Summary {
    fn count(&mut self, verdict: Verdict) {
        *match verdict {
            Verdict::Honoured => &mut self.honoured,
            Verdict::Differs => &mut self.differs,
            Verdict::Unsupported => &mut self.unsupported,
            Verdict::Refused => &mut self.refused,
            Verdict::Invalid => &mut self.invalid,
        } += 1;
    }

    /// Something would behave differently: `portico migrate` exits 1.
    pub fn behaves_differently(&self) -> bool {
        self.differs + self.unsupported + self.refused + self.invalid > 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{} ({} skipped), {}: {} honoured, {} differ, {} unsupported, {} refused, {} invalid",
            plural(self.ingresses, "Ingress", "Ingresses"),
            self.skipped,
            plural(self.config_maps, "ConfigMap", "ConfigMaps"),
            self.honoured,
            self.differs,
            self.unsupported,
            self.refused,
            self.invalid,
        )
    }
}

/// What `portico migrate` prints.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The Ingresses of ingress-nginx's classes, by namespace and name.
    pub ingresses: Vec<IngressReport>,
    /// The other Ingresses, with why each is not considered.
    pub skipped: Vec<Skipped>,
    pub config_maps: Vec<ConfigMapReport>,
    pub summary: Summary,
}

/// What to report on.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Classes considered besides `nginx` and those of ingress-nginx's IngressClasses.
    pub extra_classes: Vec<String>,
    /// ingress-nginx's controller ConfigMap, `(namespace, name)`; by default any
    /// ConfigMap named as in [`CONFIG_MAP_NAMES`].
    pub config_map: Option<(String, String)>,
}

/// `namespace/name`, as `--configmap` takes it.
pub fn parse_object_ref(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{s:?}: expected NAMESPACE/NAME")),
    }
}

/// Builds the report; an error only when `--configmap` names a ConfigMap that is not
/// among the objects.
pub fn report(objects: &Objects, opts: &Options) -> Result<Report, String> {
    let mut summary = Summary::default();
    let mut ingresses = Vec::new();
    let mut skipped = Vec::new();
    let mut sorted: Vec<&Ingress> = objects.ingresses.iter().collect();
    sorted.sort_by_key(|i| (i.metadata.namespace.clone(), i.metadata.name.clone()));
    for ingress in sorted {
        let namespace = ingress
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = ingress.metadata.name.clone().unwrap_or_default();
        if !considered(ingress, &objects.ingress_classes, &opts.extra_classes) {
            skipped.push(Skipped {
                namespace,
                name,
                reason: skip_reason(ingress, &objects.ingress_classes),
            });
            continue;
        }
        let report = ingress_report(namespace, name, ingress.metadata.annotations.as_ref());
        report.annotations.iter().for_each(|f| summary.count(f.status));
        ingresses.push(report);
    }
    let chosen: Vec<&ConfigMap> = match &opts.config_map {
        Some((ns, name)) => {
            let found = objects.config_maps.iter().find(|c| {
                c.metadata.namespace.as_deref() == Some(ns.as_str())
                    && c.metadata.name.as_deref() == Some(name.as_str())
            });
            vec![found.ok_or_else(|| format!("ConfigMap {ns}/{name} not found"))?]
        }
        None => objects
            .config_maps
            .iter()
            .filter(|c| CONFIG_MAP_NAMES.contains(&c.metadata.name.as_deref().unwrap_or_default()))
            .collect(),
    };
    let mut config_maps: Vec<ConfigMapReport> = chosen
        .into_iter()
        .map(|c| ConfigMapReport {
            namespace: c.metadata.namespace.clone().unwrap_or_else(|| "default".to_string()),
            name: c.metadata.name.clone().unwrap_or_default(),
            keys: c
                .data
                .iter()
                .flatten()
                .map(|(key, value)| config_finding(key, value))
                .collect(),
        })
        .collect();
    config_maps.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    config_maps
        .iter()
        .flat_map(|c| &c.keys)
        .for_each(|f| summary.count(f.status));
    summary.ingresses = ingresses.len();
    summary.skipped = skipped.len();
    summary.config_maps = config_maps.len();
    Ok(Report {
        schema: SCHEMA,
        ingresses,
        skipped,
        config_maps,
        summary,
    })
}

/// The Ingress is ingress-nginx's: `nginx` or a class of an IngressClass of ingress-nginx,
/// by the rules the compile uses for Portico's own class, or one of `extra` by name.
fn considered(ingress: &Ingress, classes: &[IngressClass], extra: &[String]) -> bool {
    served_by(ingress, classes, NGINX_CLASS, NGINX_CONTROLLER)
        || class_of(ingress).is_some_and(|(_, class)| extra.iter().any(|e| e == class))
}

fn skip_reason(ingress: &Ingress, classes: &[IngressClass]) -> String {
    match class_of(ingress) {
        Some((field, class)) => {
            let controller = classes
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(class))
                .and_then(|c| c.spec.as_ref()?.controller.as_deref());
            match controller {
                Some(controller) => format!("{field} is {class:?}, an IngressClass of {controller}"),
                None => format!("{field} is {class:?}, not ingress-nginx's class"),
            }
        }
        None => "no class, and no IngressClass of ingress-nginx is the cluster's default".to_string(),
    }
}

fn ingress_report(namespace: String, name: String, annotations: Option<&BTreeMap<String, String>>) -> IngressReport {
    let empty = BTreeMap::new();
    let annotations = annotations.unwrap_or(&empty);
    let problems = check_annotations(annotations);
    let findings = annotations
        .iter()
        .filter(|(key, _)| key.starts_with(NGINX_PREFIX))
        .map(|(key, value)| annotation_finding(key, value, &problems))
        .collect();
    let notes = problems
        .iter()
        .filter(|p| p.annotation.is_none() && p.reason == reason::INVALID_ANNOTATION)
        .map(|p| p.message.clone())
        .collect();
    IngressReport {
        namespace,
        name,
        annotations: findings,
        notes,
    }
}

/// One annotation: its catalog status, unless the compile's parser rejects its value.
fn annotation_finding(key: &str, value: &str, problems: &[AnnotationProblem]) -> Finding {
    let about = |wanted: &str| {
        problems
            .iter()
            .find(|p| p.annotation.as_deref() == Some(key) && p.reason == wanted)
            // The report shows the key already.
            .map(|p| {
                p.message
                    .strip_prefix(&format!("{key}: "))
                    .unwrap_or(&p.message)
                    .to_string()
            })
    };
    let (status, detail) = match catalog::status(key) {
        None => (
            Verdict::Unsupported,
            Some("not an annotation ingress-nginx documents; it has no effect".to_string()),
        ),
        Some(Status::Refused) => (Verdict::Refused, Some(REFUSED.to_string())),
        Some(Status::Unsupported) => (
            Verdict::Unsupported,
            Some("not supported; it has no effect".to_string()),
        ),
        Some(status) => match (about(reason::INVALID_ANNOTATION), about(reason::UNSUPPORTED_ANNOTATION)) {
            (Some(error), _) => (Verdict::Invalid, Some(error)),
            (None, Some(why)) => (Verdict::Unsupported, Some(why)),
            (None, None) => match status {
                Status::Differs(difference) => (Verdict::Differs, Some(difference.to_string())),
                _ => (Verdict::Honoured, None),
            },
        },
    };
    Finding {
        name: key.to_string(),
        value: value.to_string(),
        status,
        detail,
    }
}

const REFUSED: &str = "nginx configuration text, which Portico never interprets; the rest is served";

/// One ConfigMap key.
fn config_finding(key: &str, value: &str) -> Finding {
    let (status, detail) = match catalog::config_status(key) {
        None => (
            Verdict::Unsupported,
            Some("not a key ingress-nginx documents; it has no effect".to_string()),
        ),
        Some(Status::Refused) => (Verdict::Refused, Some(REFUSED.to_string())),
        Some(Status::Unsupported) => (
            Verdict::Unsupported,
            Some(match catalog::config_flag(key) {
                Some(flag) => format!("not read from the ConfigMap; Portico's {flag} flag sets this for every route"),
                None => "not supported; it has no effect".to_string(),
            }),
        ),
        Some(Status::Differs(difference)) => (Verdict::Differs, Some(difference.to_string())),
        Some(Status::Honoured) => (Verdict::Honoured, None),
    };
    Finding {
        name: key.to_string(),
        value: value.to_string(),
        status,
        detail,
    }
}

/// A value as the text report shows it: its first line, at most 60 characters.
fn short(value: &str) -> String {
    let line = value.trim().lines().next().unwrap_or_default();
    let mut out: String = line.chars().take(60).collect();
    if out.len() < value.trim().len() {
        out.push_str(" ...");
    }
    format!("{out:?}")
}

fn write_findings(f: &mut fmt::Formatter<'_>, findings: &[Finding]) -> fmt::Result {
    for finding in findings {
        write!(
            f,
            "  {:<12} {} = {}",
            finding.status.word(),
            finding.name,
            short(&finding.value)
        )?;
        match &finding.detail {
            Some(detail) => writeln!(f, ": {detail}")?,
            None => writeln!(f)?,
        }
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ingress in &self.ingresses {
            write!(f, "Ingress {}/{}", ingress.namespace, ingress.name)?;
            if ingress.annotations.is_empty() {
                writeln!(f, ": no ingress-nginx annotations")?;
            } else {
                writeln!(f)?;
            }
            write_findings(f, &ingress.annotations)?;
            for note in &ingress.notes {
                writeln!(f, "  note: {note}")?;
            }
        }
        for config_map in &self.config_maps {
            writeln!(f, "ConfigMap {}/{}", config_map.namespace, config_map.name)?;
            write_findings(f, &config_map.keys)?;
        }
        for skipped in &self.skipped {
            writeln!(
                f,
                "skipped Ingress {}/{}: {} (--ingress-class includes it)",
                skipped.namespace, skipped.name, skipped.reason
            )?;
        }
        writeln!(f, "summary: {}", self.summary)
    }
}

/// The migration guide's table of every annotation, made from [`catalog::CATALOG`]
/// (`docs/migrating-from-ingress-nginx.md` carries it; a test keeps the two equal).
pub fn guide_annotations_table() -> String {
    let mut out = String::from("| Annotation | Status | Difference |\n| --- | --- | --- |\n");
    for (name, status) in catalog::CATALOG {
        let difference = match status {
            Status::Differs(d) => *d,
            _ => "",
        };
        out.push_str(&format!("| `{name}` | {} | {} |\n", status.word(), cell(difference)));
    }
    out
}

/// The guide's table of every ConfigMap key, made from [`catalog::CONFIG_KEYS`].
pub fn guide_config_table() -> String {
    let mut out = String::from("| Key | Status | Portico flag |\n| --- | --- | --- |\n");
    for (name, status) in catalog::CONFIG_KEYS {
        let flag = catalog::config_flag(name).map(|f| format!("`{f}`")).unwrap_or_default();
        let status = match status {
            Status::Differs(d) => format!("differs: {}", cell(d)),
            other => other.word().to_string(),
        };
        out.push_str(&format!("| `{name}` | {status} | {flag} |\n"));
    }
    out
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Reads the objects from a cluster: every Ingress and IngressClass, and ingress-nginx's
/// ConfigMap. Lists the report can do without (IngressClasses, ConfigMaps) are warned
/// about in the returned list when they fail, typically for want of permission.
pub async fn list_cluster(
    client: &kube::Client,
    config_map: Option<&(String, String)>,
) -> Result<(Objects, Vec<String>), kube::Error> {
    use kube::api::{Api, ListParams};
    let mut warnings = Vec::new();
    let ingresses = Api::<Ingress>::all(client.clone()).list(&ListParams::default()).await?;
    let mut objects = Objects {
        ingresses: ingresses.items,
        ..Objects::default()
    };
    match Api::<IngressClass>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => objects.ingress_classes = list.items,
        Err(e) => warnings.push(format!("IngressClasses not read: {e}")),
    }
    match config_map {
        Some((ns, name)) => {
            if let Some(c) = Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(name).await? {
                objects.config_maps.push(c);
            }
        }
        None => {
            for name in CONFIG_MAP_NAMES {
                let params = ListParams::default().fields(&format!("metadata.name={name}"));
                match Api::<ConfigMap>::all(client.clone()).list(&params).await {
                    Ok(list) => objects.config_maps.extend(list.items),
                    Err(e) => warnings.push(format!("ConfigMaps named {name} not read: {e}")),
                }
            }
        }
    }
    Ok((objects, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> String {
        format!("{NGINX_PREFIX}{name}")
    }

    fn find<'a>(report: &'a IngressReport, name: &str) -> &'a Finding {
        let key = key(name);
        report
            .annotations
            .iter()
            .find(|f| f.name == key)
            .unwrap_or_else(|| panic!("{key} not reported"))
    }

    const OBJECTS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata:
    name: rewrite
    namespace: shop
    annotations:
      nginx.ingress.kubernetes.io/use-regex: "true"
      nginx.ingress.kubernetes.io/rewrite-target: /$2
      nginx.ingress.kubernetes.io/configuration-snippet: |
        more_set_headers "Request-Id: $req_id";
      nginx.ingress.kubernetes.io/enable-modsecurity: "true"
      nginx.ingress.kubernetes.io/proxy-body-size: 8 megs
      nginx.ingress.kubernetes.io/permanent-redirect-code: "301"
      nginx.ingress.kubernetes.io/ssl-redirect: "false"
      nginx.ingress.kubernetes.io/made-up: "x"
      example.com/other: "ignored"
  spec:
    ingressClassName: nginx
    rules:
    - host: shop.example
      http:
        paths:
        - path: /api(/|$)(.*)
          pathType: ImplementationSpecific
          backend: {service: {name: api, port: {number: 80}}}
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata:
    name: legacy
    namespace: shop
    annotations:
      kubernetes.io/ingress.class: nginx
  spec:
    defaultBackend: {service: {name: web, port: {number: 80}}}
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata: {name: other, namespace: shop}
  spec:
    ingressClassName: traefik
- apiVersion: extensions/v1beta1
  kind: Ingress
  metadata:
    name: old
    namespace: shop
    annotations:
      kubernetes.io/ingress.class: internal
      nginx.ingress.kubernetes.io/backend-protocol: FCGI
  spec:
    backend: {serviceName: web, servicePort: 80}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: ingress-nginx-controller, namespace: ingress-nginx}
  data:
    proxy-body-size: 8m
    server-snippet: "return 404;"
    no-such-key: "1"
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: app-settings, namespace: shop}
  data: {a: b}
"#;

    #[test]
    fn reads_a_list_and_multiple_documents() {
        let objects = read_objects(OBJECTS).unwrap();
        assert_eq!(objects.ingresses.len(), 4);
        assert_eq!(objects.config_maps.len(), 2);
        let multi = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: b}\n";
        let objects = read_objects(multi).unwrap();
        assert_eq!((objects.ingresses.len(), objects.config_maps.len()), (1, 1));
        assert!(read_objects("- a\n- b\n").unwrap_err().contains("no kind"));
        assert!(
            read_objects("kind: Ingress\nmetadata: 3\n")
                .unwrap_err()
                .contains("document 1")
        );
        assert!(read_objects("kind: [\n").is_err());
    }

    /// What a user reads per annotation: catalog status, or the compile parser's error.
    #[test]
    fn each_annotation_gets_its_status() {
        let report = report(&read_objects(OBJECTS).unwrap(), &Options::default()).unwrap();
        let names: Vec<&str> = report.ingresses.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["legacy", "rewrite"]);
        let ingress = &report.ingresses[1];
        assert_eq!(find(ingress, "use-regex").status, Verdict::Differs);
        let rewrite = find(ingress, "rewrite-target");
        assert_eq!(rewrite.status, Verdict::Differs);
        assert!(rewrite.detail.as_deref().unwrap().contains("$1 to $9"));
        assert_eq!(find(ingress, "configuration-snippet").status, Verdict::Refused);
        assert_eq!(find(ingress, "enable-modsecurity").status, Verdict::Unsupported);
        let size = find(ingress, "proxy-body-size");
        assert_eq!(size.status, Verdict::Invalid);
        assert!(
            size.detail.as_deref().unwrap().starts_with("invalid size \"8 megs\""),
            "{size:?}"
        );
        // Honoured by itself; without permanent-redirect it simply does nothing, as in
        // ingress-nginx.
        assert_eq!(find(ingress, "permanent-redirect-code").status, Verdict::Honoured);
        assert_eq!(find(ingress, "ssl-redirect").status, Verdict::Honoured);
        assert_eq!(find(ingress, "ssl-redirect").detail, None);
        assert_eq!(find(ingress, "made-up").status, Verdict::Unsupported);
        assert_eq!(ingress.annotations.len(), 8, "only ingress-nginx's annotations");
        assert!(report.ingresses[0].annotations.is_empty());
    }

    #[test]
    fn other_classes_are_skipped_with_the_reason_unless_asked_for() {
        let objects = read_objects(OBJECTS).unwrap();
        let report = report(&objects, &Options::default()).unwrap();
        let skipped: Vec<(&str, &str)> = report
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    "old",
                    "kubernetes.io/ingress.class is \"internal\", not ingress-nginx's class"
                ),
                (
                    "other",
                    "spec.ingressClassName is \"traefik\", not ingress-nginx's class"
                ),
            ]
        );
        let opts = Options {
            extra_classes: vec!["internal".to_string()],
            ..Options::default()
        };
        let report = super::report(&objects, &opts).unwrap();
        let old = report.ingresses.iter().find(|i| i.name == "old").unwrap();
        // A value ingress-nginx takes and Portico cannot serve: said so by the parser.
        let fcgi = find(old, "backend-protocol");
        assert_eq!(fcgi.status, Verdict::Unsupported);
        assert!(fcgi.detail.as_deref().unwrap().contains("FCGI"), "{fcgi:?}");
        assert_eq!(report.skipped.len(), 1);
    }

    /// An IngressClass of ingress-nginx under another name, and one marked default, make
    /// their Ingresses count; an IngressClass of another controller named `nginx` does not.
    #[test]
    fn ingress_classes_of_ingress_nginx_count() {
        let text = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: internal
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a, namespace: x}
spec: {ingressClassName: internal}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: b, namespace: x}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: example.com/other}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: c, namespace: x}
spec: {ingressClassName: nginx}
"#;
        let report = report(&read_objects(text).unwrap(), &Options::default()).unwrap();
        let names: Vec<&str> = report.ingresses.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            report.skipped[0].reason,
            "spec.ingressClassName is \"nginx\", an IngressClass of example.com/other"
        );
    }

    #[test]
    fn config_map_keys_by_name_or_as_given() {
        let objects = read_objects(OBJECTS).unwrap();
        let report = report(&objects, &Options::default()).unwrap();
        assert_eq!(report.config_maps.len(), 1);
        let keys = &report.config_maps[0].keys;
        let statuses: Vec<(&str, Verdict)> = keys.iter().map(|k| (k.name.as_str(), k.status)).collect();
        assert_eq!(
            statuses,
            [
                ("no-such-key", Verdict::Unsupported),
                ("proxy-body-size", Verdict::Honoured),
                ("server-snippet", Verdict::Refused),
            ]
        );
        assert!(keys[1].detail.is_none());
        let opts = |s: &str| Options {
            config_map: Some(parse_object_ref(s).unwrap()),
            ..Options::default()
        };
        let given = super::report(&objects, &opts("shop/app-settings")).unwrap();
        assert_eq!(given.config_maps[0].name, "app-settings");
        let missing = super::report(&objects, &opts("shop/nope")).unwrap_err();
        assert_eq!(missing, "ConfigMap shop/nope not found");
        assert!(parse_object_ref("nope").is_err());
        assert!(parse_object_ref("a/b/c").is_err());
    }

    #[test]
    fn summary_counts_and_decides_the_exit_status() {
        let report = report(&read_objects(OBJECTS).unwrap(), &Options::default()).unwrap();
        let s = &report.summary;
        assert_eq!((s.ingresses, s.skipped, s.config_maps), (2, 2, 1), "{s:?}");
        assert_eq!(
            (s.honoured, s.differs, s.unsupported, s.refused, s.invalid),
            (3, 2, 3, 2, 1)
        );
        assert!(s.behaves_differently());
        assert_eq!(
            s.to_string(),
            "2 Ingresses (2 skipped), 1 ConfigMap: 3 honoured, 2 differ, 3 unsupported, 2 refused, 1 invalid"
        );
        let text = report.to_string();
        assert!(text.ends_with(&format!("summary: {s}\n")), "{text}");
        assert!(text.contains("  refused      nginx.ingress.kubernetes.io/configuration-snippet = \"more_set_headers \\\"Request-Id: $req_id\\\";\""), "{text}");

        let clean = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\n  annotations: {nginx.ingress.kubernetes.io/ssl-redirect: \"false\"}\nspec: {ingressClassName: nginx}\n";
        let report = super::report(&read_objects(clean).unwrap(), &Options::default()).unwrap();
        assert!(!report.summary.behaves_differently());
        assert_eq!(report.summary.honoured, 1);
    }

    /// The JSON schema's field names are a contract: `docs/migrating-from-ingress-nginx.md`.
    #[test]
    fn json_schema() {
        let report = report(&read_objects(OBJECTS).unwrap(), &Options::default()).unwrap();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        let finding = &json["ingresses"][1]["annotations"][0];
        let mut fields: Vec<&str> = finding.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["detail", "name", "status", "value"]);
        assert_eq!(json["skipped"][0]["reason"].as_str().map(|r| r.is_empty()), Some(false));
        assert_eq!(json["configMaps"][0]["keys"][2]["status"], "refused");
        let mut summary: Vec<&str> = json["summary"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        summary.sort_unstable();
        assert_eq!(
            summary,
            [
                "configMaps",
                "differs",
                "honoured",
                "ingresses",
                "invalid",
                "refused",
                "skipped",
                "unsupported"
            ]
        );
    }
    /// `docs/migrating-from-ingress-nginx.md` carries the catalog's tables as they are:
    /// `PORTICO_UPDATE_GUIDE=1 cargo test -p portico-controller guide` rewrites them.
    #[test]
    fn guide_tables_match_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/migrating-from-ingress-nginx.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let mut want = doc.clone();
        for (name, table) in [
            ("annotations", guide_annotations_table()),
            ("configmap", guide_config_table()),
        ] {
            let begin = format!("<!-- generated: {name} -->\n");
            let end = format!("<!-- end generated: {name} -->");
            let start = want.find(&begin).unwrap_or_else(|| panic!("no {begin:?} in the guide")) + begin.len();
            let stop = start
                + want[start..]
                    .find(&end)
                    .unwrap_or_else(|| panic!("no {end:?} in the guide"));
            want.replace_range(start..stop, &table);
        }
        if want != doc && std::env::var_os("PORTICO_UPDATE_GUIDE").is_some() {
            std::fs::write(path, &want).unwrap();
            return;
        }
        assert!(
            want == doc,
            "the guide's tables differ from the catalog: run PORTICO_UPDATE_GUIDE=1 cargo test -p portico-controller guide"
        );
    }
}
