//! File mode: reading the YAML file, and following its edits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portico_controller::compile::{CompileOptions, compile};
use portico_controller::file::{FileError, InvalidDocument, parse, run};
use portico_dataplane::table::RoutingTable;
use tokio::sync::watch;

fn invalid(yaml: &str) -> InvalidDocument {
    match parse(yaml) {
        Err(FileError::Invalid(doc)) => *doc,
        other => panic!("expected an invalid document, got {other:?}"),
    }
}

const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - name: http
    port: 80
";

const SLICE: &str = "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: 9001
endpoints:
- addresses: [127.0.0.1]
";

/// An Ingress `web` routing `host` / to the `web` Service.
fn ingress(host: &str) -> String {
    format!(
        "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  ingressClassName: portico
  rules:
  - host: {host}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              name: http
"
    )
}

fn file(docs: &[&str]) -> String {
    docs.iter().map(|d| format!("---\n{d}")).collect()
}

/// Given Service, EndpointSlice, IngressClass, Secret and Ingress documents, each lands in
/// the snapshot, and namespaced objects without a namespace get `default`.
#[test]
fn reads_every_kind() {
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: portico\nspec:\n  controller: portico.dev/ingress-controller\n";
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls\n  namespace: edge\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: x\n  tls.key: y\n";
    let s = parse(&file(&[SERVICE, SLICE, class, secret, &ingress("a.com")])).unwrap();
    assert_eq!(
        (
            s.services.len(),
            s.endpoint_slices.len(),
            s.ingress_classes.len(),
            s.secrets.len(),
            s.ingresses.len()
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(s.ingresses[0].metadata.namespace.as_deref(), Some("default"));
    assert_eq!(s.secrets[0].metadata.namespace.as_deref(), Some("edge"));
    assert_eq!(s.ingress_classes[0].metadata.namespace, None);
    let (table, diagnostics) = compile(&s, &CompileOptions::default());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let route = table.lookup("a.com", "/").unwrap();
    assert_eq!(route.backend.endpoints[0].addr.to_string(), "127.0.0.1:9001");
}

/// However a document spells its kind (flow style, quoted, a trailing comment, a
/// `kind:` line inside a text block), it is read as that kind.
#[test]
fn kind_in_any_yaml_style() {
    let flow = "{apiVersion: v1, kind: Service, metadata: {name: flow}, spec: {ports: [{port: 80}]}}\n";
    let quoted = "apiVersion: \"v1\"\nkind: 'Service'\nmetadata:\n  name: quoted\n";
    let commented = "apiVersion: v1 # core\nkind: Service # a comment\nmetadata:\n  name: commented\n";
    let block = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: notes\nstringData:\n  notes: |\n    kind: Service\n";
    let s = parse(&file(&[flow, quoted, commented, block, SERVICE])).unwrap();
    let mut names: Vec<_> = s.services.iter().filter_map(|o| o.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["commented", "flow", "quoted", "web"]);
    assert_eq!(s.secrets.len(), 1);
    // A kind named twice at the top level is still the parser's to refuse.
    let e = invalid(&file(&[
        "apiVersion: v1\nkind: Service\nkind: Secret\nmetadata:\n  name: x\n",
    ]));
    assert!(e.message.contains("duplicate"), "{e}");
}

/// The quickstart example reads and compiles without a single diagnostic.
#[test]
fn quickstart_example_is_clean() {
    let yaml = include_str!("../../examples/quickstart.yaml");
    let s = parse(yaml).unwrap();
    let (table, diagnostics) = compile(&s, &CompileOptions::default());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let echo = table.lookup("echo.localhost:8080", "/").unwrap();
    assert_eq!(echo.backend.endpoints.len(), 2);
    assert!(table.lookup("anything.else", "/api/x").is_some());
}

/// The canary example reads and compiles without a single diagnostic, and splits.
#[test]
fn canary_example_is_clean() {
    let yaml = include_str!("../../examples/canary.yaml");
    let s = parse(yaml).unwrap();
    let (table, diagnostics) = compile(&s, &CompileOptions::default());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let route = table.lookup("shop.localhost", "/").unwrap();
    let split = route
        .action
        .as_ref()
        .and_then(|a| a.backends.as_ref())
        .expect("a split");
    let v2 = (0..100)
        .filter(|_| split.choose(None).name == "default/shop-v2:80")
        .count();
    assert_eq!(v2, 10);
}

/// Given a YAML syntax error, the error names the document and the line and column in
/// the whole file.
#[test]
fn syntax_error_names_document_and_line() {
    let yaml = file(&[
        SERVICE,
        SLICE,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec: [unclosed\n",
    ]);
    let e = invalid(&yaml);
    assert_eq!(e.document, 3);
    // Documents 1 and 2 take 9 and 14 lines with their markers; the error is in the
    // last line of document 3 or just after it.
    assert!(e.line.is_some_and(|l| l >= 27), "{e}");
    assert!(e.column.is_some(), "{e}");
    assert!(
        e.to_string().starts_with(&format!("line {}, column", e.line.unwrap())),
        "{e}"
    );
}

/// Given a field of the wrong type, the error names the document, the object, the field
/// path and the field's own line.
#[test]
fn field_error_names_object_field_and_line() {
    let bad = ingress("a.com").replace("name: http", "number: http");
    let e = invalid(&file(&[SERVICE, &bad]));
    assert_eq!(e.document, 2);
    assert_eq!(e.object.as_deref(), Some("Ingress default/web"));
    assert_eq!(
        e.field.as_deref(),
        Some("spec.rules[0].http.paths[0].backend.service.port.number")
    );
    // The Service takes lines 1-9 with its marker, the Ingress's marker is line 10 and
    // `number:` is the Ingress's 17th line.
    assert_eq!(e.line, Some(27), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("line 27, column 23: document 2 (Ingress default/web): spec.rules[0].http.paths[0].backend.service.port.number: "),
        "{text}"
    );
    // The words a person needs, not Rust's type name (`invalid i32`).
    assert!(text.ends_with("expected a whole number"), "{text}");
}

/// Given a misspelt field, the document is refused with the field's path and line, as
/// `kubectl apply` would: ignoring it would silently change routing.
#[test]
fn unknown_field_is_refused() {
    let bad = ingress("a.com").replace("pathType", "pathtype");
    let e = invalid(&file(&[&bad]));
    assert_eq!(e.field.as_deref(), Some("spec.rules[0].http.paths[0].pathtype"));
    assert_eq!(e.message, "unknown field");
    assert_eq!((e.line, e.column), (Some(13), Some(9)), "{e}");
}

/// Given kinds file mode does not use (a Namespace, a Deployment, a Knative Service),
/// they are skipped and the rest is read.
#[test]
fn unknown_kinds_are_skipped() {
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n";
    let knative = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: fn\nspec:\n  template: {}\n";
    let s = parse(&file(&[namespace, SERVICE, deployment, knative, &ingress("a.com")])).unwrap();
    assert_eq!((s.services.len(), s.ingresses.len()), (1, 1));
}

/// Given an Ingress of a removed API version, the error says which one to use.
#[test]
fn removed_api_version_is_refused() {
    let old = ingress("a.com").replace("networking.k8s.io/v1", "extensions/v1beta1");
    let e = invalid(&file(&[&old]));
    assert_eq!(e.field.as_deref(), Some("apiVersion"));
    assert!(e.message.contains("use networking.k8s.io/v1"), "{e}");
    assert_eq!(e.line, Some(2));
}

/// Given a document without a kind, the error says so and points at the document.
#[test]
fn missing_kind_is_refused() {
    let e = invalid(&file(&[SERVICE, "# a comment\nmetadata:\n  name: x\n"]));
    assert_eq!(e.document, 2);
    assert!(e.message.contains("kind is missing"), "{e}");
    assert_eq!(e.line, Some(12));
}

/// Given an object without a name, the error says so.
#[test]
fn missing_name_is_refused() {
    let e = invalid(&file(&["apiVersion: v1\nkind: Service\nmetadata:\n  labels: {a: b}\n"]));
    assert!(e.message.contains("name is missing"), "{e}");
    assert_eq!(e.line, Some(4));
}

/// Given the same object twice, the second is refused and the first named.
#[test]
fn duplicate_object_is_refused() {
    let e = invalid(&file(&[SERVICE, SLICE, SERVICE]));
    assert_eq!((e.document, e.object.as_deref()), (3, Some("Service default/web")));
    assert!(e.message.contains("already defined by document 1"), "{e}");
}

/// Given a `kind: List`, its items are read like documents, and an error in an item
/// names the item and its line.
#[test]
fn list_items_are_read() {
    let indent = |doc: &str| {
        let mut lines = doc.lines();
        let first = format!("- {}\n", lines.next().unwrap());
        first + &lines.map(|l| format!("  {l}\n")).collect::<String>()
    };
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}{}{}",
        indent(SERVICE),
        indent(SLICE),
        indent(&ingress("a.com"))
    );
    let s = parse(&list).unwrap();
    assert_eq!(
        (s.services.len(), s.endpoint_slices.len(), s.ingresses.len()),
        (1, 1, 1)
    );

    let broken = list.replace("port: 80", "port: eighty");
    let e = invalid(&broken);
    assert_eq!(e.field.as_deref(), Some("items[0].spec.ports[0].port"));
    assert!(e.to_string().ends_with("expected a whole number"), "{e}");
    assert!(!e.to_string().contains("i32"), "{e}");
    assert_eq!(e.object.as_deref(), Some("Service default/web"));
    assert_eq!(e.line, Some(11), "{e}");
}

/// Empty documents, comment-only documents, `...` markers and null documents are
/// ignored and not counted.
#[test]
fn empty_documents_are_ignored() {
    let yaml = format!("# header comment\n---\n---\n# only a comment\n---\n~\n...\n---\n{SERVICE}---\n\n");
    let s = parse(&yaml).unwrap();
    assert_eq!(s.services.len(), 1);
    assert_eq!(parse("").unwrap().services.len(), 0);
    let e = invalid(&format!("---\n# nothing\n---\n{SERVICE}---\nkind: Service\n"));
    assert_eq!((e.document, e.line), (2, Some(13)), "{e}");
    assert_eq!(
        e.to_string(),
        "line 13, column 1: document 2 (Service): apiVersion: missing; a Service is v1"
    );
}

/// Given Windows line endings and comments or tags after `---`, the file reads the same
/// and line numbers still match the file.
#[test]
fn crlf_and_marker_comments() {
    let yaml = format!("--- # the service\n{SERVICE}--- !!map\n{SLICE}");
    assert_eq!(parse(&yaml).unwrap().endpoint_slices.len(), 1);
    let crlf = yaml.replace('\n', "\r\n");
    assert_eq!(parse(&crlf).unwrap().services.len(), 1);
    let e = invalid(&crlf.replace("port: 9001", "port: nine"));
    assert_eq!((e.document, e.line), (2, Some(20)), "{e}");
}

/// A path of a file unique to this test run.
const ROUTE: &str = "\
apiVersion: portico.dev/v1alpha1
kind: Route
metadata:
  name: shop
spec:
  hostnames: [shop.com]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: X-Canary, value: \"yes\"}]
    backendRefs: [{name: web, port: 80}]
";

/// A Route document is read like the other kinds and served from the same table.
#[test]
fn route_is_read_and_served() {
    let s = parse(&file(&[SERVICE, SLICE, ROUTE])).unwrap();
    assert_eq!(s.routes.len(), 1);
    assert_eq!(s.routes[0].metadata.namespace.as_deref(), Some("default"));
    let (table, diagnostics) = compile(&s, &CompileOptions::default());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert!(
        table.lookup("shop.com", "/api").is_none(),
        "the header match is required"
    );
    assert_eq!(table.route_count(), 1);
}

/// A Route the API server would refuse refuses the file, with the field, the line and
/// the CEL rule's message.
#[test]
fn route_breaking_a_cel_rule_is_refused() {
    let bad = ROUTE.replace(
        "backendRefs: [{name: web, port: 80}]",
        "backendRefs: [{name: web, port: 80, weight: 0}]",
    );
    let doc = invalid(&file(&[SERVICE, &bad]));
    assert_eq!(doc.object.as_deref(), Some("Route default/shop"));
    assert_eq!(doc.field.as_deref(), Some("spec.rules[0]"));
    assert_eq!(doc.message, "the weights of backendRefs must add up to more than 0");
    assert!(doc.line.is_some_and(|l| l > 10), "{doc:?}");
}

/// A misspelt Route field is refused; a Route of another API group (OpenShift's) is
/// skipped; a Route at another version is refused.
#[test]
fn route_unknown_field_other_group_and_version() {
    let misspelt = ROUTE.replace("backendRefs", "backendrefs");
    assert!(invalid(&file(&[&misspelt])).message.contains("unknown field"));
    let openshift = "apiVersion: route.openshift.io/v1\nkind: Route\nmetadata:\n  name: x\nspec:\n  host: a.com\n";
    assert!(parse(&file(&[openshift])).unwrap().routes.is_empty());
    let v2 = ROUTE.replace("portico.dev/v1alpha1", "portico.dev/v2");
    assert!(invalid(&file(&[&v2])).message.contains("use portico.dev/v1alpha1"));
}

fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("portico-file-mode-{name}-{}-{nanos}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(host: &str) -> String {
    file(&[SERVICE, SLICE, &ingress(host)])
}

/// Waits up to `within` for the published table to route `host`, and says how long it took.
async fn routed(rx: &mut watch::Receiver<Arc<RoutingTable>>, host: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let found = tokio::time::timeout(within, rx.wait_for(|t| t.lookup(host, "/").is_some())).await;
    matches!(found, Ok(Ok(_))).then(|| start.elapsed())
}

fn reload_errors() -> f64 {
    prometheus::default_registry()
        .gather()
        .iter()
        .find(|m| m.name() == "portico_config_reload_errors_total")
        .map_or(0.0, |m| m.get_metric()[0].get_counter().get_value())
}

/// Writes `text` beside `path` and renames it over `path`, as editors and config tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Given a running file mode: a good edit is live within a second, a broken edit keeps
/// the last good table and is reported once, and a fix (here by rename) is live again.
#[tokio::test]
async fn follows_edits() {
    let dir = temp_dir("edits");
    let path = dir.join("portico.yaml");
    std::fs::write(&path, config("one.com")).unwrap();
    let (tx, mut rx) = watch::channel(Arc::new(RoutingTable::default()));
    let task = tokio::spawn(run(path.clone(), CompileOptions::default(), tx));
    assert!(
        routed(&mut rx, "one.com", Duration::from_secs(5)).await.is_some(),
        "first table not published"
    );
    let first = rx.borrow().generation;
    assert!(first > 0);

    std::fs::write(&path, config("two.com")).unwrap();
    let took = routed(&mut rx, "two.com", Duration::from_secs(1)).await;
    assert!(took.is_some(), "in-place edit not live within a second");
    let good = rx.borrow_and_update().clone();
    assert!(good.generation > first);
    assert!(good.lookup("one.com", "/").is_none());

    let errors = reload_errors();
    std::fs::write(
        &path,
        config("three.com").replace("kind: Ingress", "kind: Ingress\nspec: [oops"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while reload_errors() <= errors {
        assert!(Instant::now() < deadline, "broken edit not reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Arc::ptr_eq(&rx.borrow(), &good), "a broken edit replaced the table");
    // Other files changing in the directory (a log written beside the configuration)
    // neither report the refused edit again nor touch the table.
    let reported = reload_errors();
    for i in 0..3 {
        std::fs::write(dir.join("portico.log"), format!("line {i}\n")).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(reload_errors(), reported, "the same refused edit was reported again");
    assert!(Arc::ptr_eq(&rx.borrow(), &good));

    replace(&path, &config("four.com"));
    assert!(
        routed(&mut rx, "four.com", Duration::from_secs(1)).await.is_some(),
        "renamed edit not live within a second"
    );
    replace(&path, &config("five.com"));
    assert!(
        routed(&mut rx, "five.com", Duration::from_secs(1)).await.is_some(),
        "second rename not followed"
    );

    drop(rx);
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "run did not end when its receivers were gone: {ended:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Given a file mounted the way a ConfigMap is (a symlink through a `..data` symlink that
/// is swapped atomically), each swap is followed.
#[cfg(unix)]
#[tokio::test]
async fn follows_configmap_style_symlink_swaps() {
    use std::os::unix::fs::symlink;
    let dir = temp_dir("configmap");
    let version = |n: u32, host: &str| {
        let v = dir.join(format!("..v{n}"));
        std::fs::create_dir(&v).unwrap();
        std::fs::write(v.join("portico.yaml"), config(host)).unwrap();
        let tmp = dir.join("..data_tmp");
        symlink(format!("..v{n}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    version(1, "one.com");
    symlink("..data/portico.yaml", dir.join("portico.yaml")).unwrap();
    let (tx, mut rx) = watch::channel(Arc::new(RoutingTable::default()));
    let task = tokio::spawn(run(dir.join("portico.yaml"), CompileOptions::default(), tx));
    assert!(routed(&mut rx, "one.com", Duration::from_secs(5)).await.is_some());

    version(2, "two.com");
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();
    assert!(
        routed(&mut rx, "two.com", Duration::from_secs(1)).await.is_some(),
        "symlink swap not followed"
    );
    version(3, "three.com");
    assert!(
        routed(&mut rx, "three.com", Duration::from_secs(1)).await.is_some(),
        "second swap not followed"
    );

    task.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Given a broken file at start, `run` returns the error with the file, line and field,
/// so the process can exit saying where.
#[tokio::test]
async fn broken_file_at_start_is_an_error() {
    let dir = temp_dir("start");
    let path = dir.join("routes.yaml");
    std::fs::write(
        &path,
        file(&[SERVICE, &ingress("a.com").replace("name: http", "number: http")]),
    )
    .unwrap();
    let (tx, rx) = watch::channel(Arc::new(RoutingTable::default()));
    let err = run(path.clone(), CompileOptions::default(), tx).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:27:23: document 2 (Ingress default/web)", path.display())),
        "{text}"
    );
    assert_eq!(rx.borrow().generation, 0, "nothing may be published from a broken file");

    let missing = dir.join("missing.yaml");
    let (tx, _rx) = watch::channel(Arc::new(RoutingTable::default()));
    let err = run(missing.clone(), CompileOptions::default(), tx).await.unwrap_err();
    assert!(matches!(err, FileError::Read { .. }), "{err}");
    assert!(err.to_string().contains("missing.yaml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
