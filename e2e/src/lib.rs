//! Harness for Portico's end-to-end tests: a real etcd and kube-apiserver
//! (`e2e/cluster`), the real `portico` binary running as its least-privilege
//! ServiceAccount (`deploy/rbac.yaml`), echo backends in network-namespace test hosts,
//! and real HTTP clients.
//!
//! ```text
//!   test ──kube (admin)──▶ kube-apiserver ◀──watch (ServiceAccount token)── portico
//!     │                                                                    │ proxies
//!     └──curl / raw HTTP──▶ portico 127.0.0.1:<port> ──────────────────────▶ echo.py in
//!                                                                          test host 198.19.x.y
//! ```
//!
//! One cluster per test binary, started by the first test that asks for it
//! ([`cluster`]) and removed when the binary exits: a cleanup process
//! (`src/cleanup.sh after PID`) waits for the test process to end, however it ends,
//! then stops every portico it started, takes its test hosts down and stops the
//! cluster. Tests take a lock ([`Test::start`]), so they never overlap even without
//! `--test-threads=1`: they restart the API server and measure latencies.
//!
//! Settings (environment):
//! - `PORTICO_BIN`: the portico binary (default `$CARGO_TARGET_DIR/release/portico`,
//!   built with `cargo build --release -p portico-controller` when missing).
//! - `PORTICO_E2E_RUN_DIR`: where the cluster, logs and records go (default: a new
//!   directory under the system temporary directory). Given by `e2e/run.sh`, which
//!   then owns its removal.
//! - `PORTICO_E2E_PYTHON`: the Python for the echo backends (default `python3`).

pub mod http;
pub mod load;
pub mod node;
pub mod objects;
mod portico;
mod testhost;
pub mod tls;

use std::fmt::Debug;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

pub use portico::{Portico, PorticoBuilder, free_ports};
pub use testhost::Echo;

/// The ServiceAccount portico runs as, from `deploy/rbac.yaml`.
pub const SERVICE_ACCOUNT: &str = "portico";
/// Its namespace; leader-election Leases live here too.
pub const SYSTEM_NAMESPACE: &str = "portico-system";
/// The IngressClass the harness creates, served by portico's default controller name.
pub const INGRESS_CLASS: &str = "portico";
pub const CONTROLLER_NAME: &str = "portico.dev/ingress-controller";
/// Field manager of the objects tests apply.
const FIELD_MANAGER: &str = "portico-e2e";

/// One running cluster, shared by every test of the binary.
pub struct Cluster {
    repo: PathBuf,
    run_dir: PathBuf,
    cluster_dir: PathBuf,
    admin_kubeconfig: PathBuf,
    portico_kubeconfig: PathBuf,
    kubectl: PathBuf,
    portico_bin: PathBuf,
    python: String,
    counter: AtomicU32,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// Held by the running test (an async lock: it is held across awaits).
static TEST_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cluster, started on first use. A failed start fails every test with its cause.
pub fn cluster() -> &'static Cluster {
    match CLUSTER.get_or_init(Cluster::start) {
        Ok(c) => c,
        Err(e) => panic!("the e2e cluster could not be started:\n{e}"),
    }
}

/// Runs a command; its stdout on success, else an error with its output.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn default_portico_bin(repo: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let target = if target.is_relative() {
        repo.join(target)
    } else {
        target
    };
    target.join("release").join("portico")
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let started = Instant::now();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("no repository root")?
            .to_path_buf();
        let script = repo.join("e2e/cluster");

        // The run directory and the cleanup process that removes everything in it.
        let (run_dir, owned) = match std::env::var_os("PORTICO_E2E_RUN_DIR") {
            Some(d) => (PathBuf::from(d), false),
            None => (
                std::env::temp_dir().join(format!("portico-e2e-{}", std::process::id())),
                true,
            ),
        };
        for sub in ["pids", "testhosts", "logs", "tmp"] {
            std::fs::create_dir_all(run_dir.join(sub)).map_err(|e| format!("creating {}: {e}", run_dir.display()))?;
        }
        let cleanup = Command::new("bash")
            .arg(repo.join("e2e/src/cleanup.sh"))
            .arg("after")
            .arg(std::process::id().to_string())
            .arg(&run_dir)
            .arg(if owned { "rm" } else { "keep" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0) // survives a Ctrl-C aimed at the test run
            .spawn()
            .map_err(|e| format!("starting the cleanup process: {e}"))?;
        let _ = std::fs::write(run_dir.join("cleanup.pid"), cleanup.id().to_string());

        let binaries = run(Command::new(&script).arg("paths"))?;
        let kubectl = binaries
            .lines()
            .find_map(|l| l.strip_prefix("KUBECTL="))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("kubectl"));

        let cluster_dir = run_dir.join("cluster");
        // A cluster with a node (e2e/cluster up --node): pods run, Deployments have
        // their EndpointSlices written by kube-controller-manager.
        let up = run(Command::new(&script)
            .arg("up")
            .arg("--dir")
            .arg(&cluster_dir)
            .arg("--node"))?;
        let admin_kubeconfig = PathBuf::from(up.lines().last().ok_or("e2e/cluster up printed nothing")?.trim());

        let portico_bin = match std::env::var_os("PORTICO_BIN") {
            Some(p) => PathBuf::from(p),
            None => {
                let bin = default_portico_bin(&repo);
                if !bin.exists() {
                    eprintln!("e2e: {} is missing; building it", bin.display());
                    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                        .args(["build", "--release", "-p", "portico-controller"])
                        .current_dir(&repo))?;
                }
                bin
            }
        };
        if !portico_bin.exists() {
            return Err(format!("PORTICO_BIN {} does not exist", portico_bin.display()));
        }
        // The node's images: Portico's from this binary, the echo backend, pause.
        let images = Instant::now();
        run(Command::new(repo.join("e2e/images/build.sh"))
            .arg("--load")
            .arg(&cluster_dir)
            .env("PORTICO_BIN", &portico_bin))?;
        eprintln!("e2e: images built and loaded in {:.1}s", images.elapsed().as_secs_f64());

        let cluster = Cluster {
            portico_kubeconfig: run_dir.join("portico.kubeconfig"),
            repo,
            run_dir,
            cluster_dir,
            admin_kubeconfig,
            kubectl,
            portico_bin,
            python: std::env::var("PORTICO_E2E_PYTHON").unwrap_or_else(|_| "python3".into()),
            counter: AtomicU32::new(0),
        };
        cluster.setup()?;
        eprintln!(
            "e2e: cluster up in {:.1}s ({}); portico {}",
            started.elapsed().as_secs_f64(),
            cluster.cluster_dir.display(),
            cluster.portico_bin.display()
        );
        Ok(cluster)
    }

    /// RBAC, the CRDs, the IngressClass, and a kubeconfig holding a token of portico's
    /// ServiceAccount, so portico gets exactly what `deploy/rbac.yaml` grants.
    fn setup(&self) -> Result<(), String> {
        let rbac = self.repo.join("deploy/rbac.yaml");
        self.kubectl_ok(&["apply", "-f", &rbac.to_string_lossy()])?;
        // Portico's CRDs, as an install has them: portico then watches Routes too.
        let crds = self.repo.join("crds");
        if crds.is_dir() {
            let crds = crds.to_string_lossy();
            self.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", &crds])?;
            self.kubectl_ok(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])?;
        }
        let class = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS},
            "spec": {"controller": CONTROLLER_NAME},
        });
        self.kubectl_stdin(&["apply", "-f", "-"], &class.to_string())?;

        let token = self.kubectl_ok(&[
            "create",
            "token",
            SERVICE_ACCOUNT,
            "-n",
            SYSTEM_NAMESPACE,
            "--duration=2h",
        ])?;
        let server = self.kubectl_ok(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])?;
        let ca = self.kubectl_ok(&[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ])?;
        let kubeconfig = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {SYSTEM_NAMESPACE}-{SERVICE_ACCOUNT}
  user:
    token: {token}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: {SYSTEM_NAMESPACE}-{SERVICE_ACCOUNT}
current-context: e2e
",
            server = server.trim(),
            ca = ca.trim(),
            token = token.trim(),
        );
        std::fs::write(&self.portico_kubeconfig, kubeconfig).map_err(|e| format!("writing kubeconfig: {e}"))?;
        Ok(())
    }

    fn kubectl_cmd(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
        cmd
    }

    /// `kubectl ARGS` as the cluster admin; stdout, or the error with its output.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String, String> {
        run(&mut self.kubectl_cmd(&self.admin_kubeconfig, args))
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(&self.admin_kubeconfig, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running kubectl: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(input.as_bytes())
            .map_err(|e| format!("writing to kubectl: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("kubectl: {e}"))?;
        if !out.status.success() {
            return Err(format!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// An admin client. Make one per test: a client belongs to the runtime it was made in.
    pub async fn client(&self) -> Client {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kc = kube::config::Kubeconfig::read_from(&self.admin_kubeconfig).expect("reading the admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("admin kubeconfig");
        Client::try_from(config).expect("kube client")
    }

    fn cluster_cmd(&self, args: &[&str]) -> Result<String, String> {
        run(Command::new(self.repo.join("e2e/cluster")).args(args))
    }

    /// Stops kube-apiserver (etcd keeps running).
    pub fn stop_apiserver(&self) {
        let dir = self.cluster_dir.to_string_lossy();
        self.cluster_cmd(&["stop-apiserver", "--dir", &dir])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts kube-apiserver again and waits until it is ready.
    pub fn start_apiserver(&self) {
        let dir = self.cluster_dir.to_string_lossy();
        self.cluster_cmd(&["start-apiserver", "--dir", &dir])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }

    pub fn cluster_dir(&self) -> &Path {
        &self.cluster_dir
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    pub fn kubectl(&self) -> &Path {
        &self.kubectl
    }

    /// Puts back what [`Cluster::setup`] made (RBAC, CRDs, the IngressClass), after a
    /// test that installed and removed Portico objects of the same names.
    pub fn restore_setup(&self) {
        self.setup()
            .unwrap_or_else(|e| panic!("restoring the cluster's setup: {e}"));
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn portico_kubeconfig(&self) -> &Path {
        &self.portico_kubeconfig
    }

    /// The `portico` binary under test.
    pub fn portico_bin(&self) -> &Path {
        &self.portico_bin
    }

    /// A number unique within this run.
    pub fn next_id(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Records a process for the cleanup process.
    fn record_pid(&self, pid: u32, exe: &Path) {
        let exe = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
        let _ = std::fs::write(
            self.run_dir.join("pids").join(pid.to_string()),
            exe.to_string_lossy().as_bytes(),
        );
    }

    fn forget_pid(&self, pid: u32) {
        let _ = std::fs::remove_file(self.run_dir.join("pids").join(pid.to_string()));
    }
}

/// One test: holds the lock that keeps tests apart and owns a fresh namespace.
///
/// Declare it first in a test so it is dropped last, after the Portico and Echo values
/// made from it.
pub struct Test {
    pub name: String,
    /// The namespace this test's objects live in.
    pub ns: String,
    pub client: Client,
    started: Instant,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl Test {
    pub async fn start(name: &str) -> Test {
        let lock = TEST_LOCK.lock().await;
        let cluster = cluster();
        let client = cluster.client().await;
        let ns = format!("{name}-{}", cluster.next_id());
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {ns}: {e}"));
        eprintln!("--- {name}: namespace {ns}");
        Test {
            name: name.to_string(),
            ns,
            client,
            started: Instant::now(),
            _lock: lock,
        }
    }

    pub fn cluster(&self) -> &'static Cluster {
        cluster()
    }

    /// An Api for a namespaced kind in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates or updates an object in this test's namespace (server-side apply, as
    /// `kubectl apply --server-side --force-conflicts` does). Returns the stored object.
    pub async fn apply<K>(&self, obj: &K) -> K
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + serde::Serialize + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        let name = obj.meta().name.clone().expect("object without a name");
        // Server-side apply needs apiVersion and kind in the body.
        let mut body = serde_json::to_value(obj).expect("serialize");
        body["apiVersion"] = json!(K::api_version(&K::DynamicType::default()));
        body["kind"] = json!(K::kind(&K::DynamicType::default()));
        self.api::<K>()
            .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
            .await
            .unwrap_or_else(|e| panic!("applying {} {name}: {e}", K::kind(&K::DynamicType::default())))
    }

    /// Creates an object in this test's namespace (fails if it exists).
    pub async fn create<K>(&self, obj: &K) -> K
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + serde::Serialize + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .create(&PostParams::default(), obj)
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", obj.name_any()))
    }

    pub async fn delete<K>(&self, name: &str)
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting {name}: {e}"));
    }

    /// An echo backend on port 8080 in a new test host; `label` is the name it answers with.
    pub fn echo(&self, label: &str) -> Echo {
        Echo::start(cluster(), label)
    }

    /// A portico to configure and start; by default it serves only this test's namespace.
    pub fn portico(&self) -> PorticoBuilder<'_> {
        PorticoBuilder::new(self)
    }

    /// A host name unique to this test.
    pub fn host(&self, label: &str) -> String {
        format!("{label}.{}.e2e.test", self.ns)
    }
}

impl Drop for Test {
    fn drop(&mut self) {
        eprintln!(
            "--- {}: {} in {:.1}s",
            self.name,
            if std::thread::panicking() { "FAILED" } else { "done" },
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// Polls `f` every `interval` until it returns `Ok`, or panics after `timeout` naming
/// `what` and the last `Err` (what `f` saw last time).
pub fn wait_until<T>(what: &str, timeout: Duration, interval: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(interval),
        }
    }
}

/// [`wait_until`] for async checks.
pub async fn wait_until_async<T, F, Fut>(what: &str, timeout: Duration, interval: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(interval).await,
        }
    }
}

/// Percentile (0..=100) of sorted durations, nearest-rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty());
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
