//! The real `portico` binary in cluster mode, as portico's ServiceAccount.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::{self, Response};
use crate::{Cluster, SYSTEM_NAMESPACE, Test};

/// How a portico is started. By default it watches only its test's namespace, holds
/// a leader-election Lease of its own (so it leads at once, whatever earlier tests
/// left behind) and publishes no status address.
pub struct PorticoBuilder<'a> {
    test: &'a Test,
    watch_namespace: Option<String>,
    election_id: String,
    identity: String,
    args: Vec<String>,
}

impl<'a> PorticoBuilder<'a> {
    pub(crate) fn new(test: &'a Test) -> Self {
        let n = test.cluster().next_id();
        PorticoBuilder {
            test,
            watch_namespace: Some(test.ns.clone()),
            election_id: format!("portico-{}", test.ns),
            identity: format!("portico-{n}"),
            args: Vec::new(),
        }
    }

    /// Watch every namespace, as a cluster-wide install does.
    pub fn all_namespaces(mut self) -> Self {
        self.watch_namespace = None;
        self
    }

    pub fn election_id(mut self, id: &str) -> Self {
        self.election_id = id.to_string();
        self
    }

    pub fn identity(mut self, id: &str) -> Self {
        self.identity = id.to_string();
        self
    }

    /// More command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Starts it and waits until it serves its first routing table (`/readyz`).
    pub fn start(self) -> Portico {
        let cluster = self.test.cluster();
        let ports = free_ports(3);
        let log_path = cluster
            .run_dir()
            .join("logs")
            .join(format!("{}-{}.log", self.test.ns, self.identity));
        let log = File::create(&log_path).expect("portico log file");
        let mut cmd = Command::new(&cluster.portico_bin);
        cmd.arg("--kubeconfig")
            .arg(cluster.portico_kubeconfig())
            .args(["--bind-address", "127.0.0.1"])
            .args(["--http-port", &ports[0].to_string()])
            .args(["--https-port", &ports[1].to_string()])
            .args(["--admin-port", &ports[2].to_string()])
            .args(["--election-namespace", SYSTEM_NAMESPACE])
            .args(["--election-id", &self.election_id])
            .args(["--identity", &self.identity]);
        if let Some(ns) = &self.watch_namespace {
            cmd.args(["--watch-namespace", ns]);
        }
        cmd.args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", cluster.portico_bin.display()));
        cluster.record_pid(child.id(), &cluster.portico_bin);
        let mut portico = Portico {
            child,
            identity: self.identity,
            http: SocketAddr::from(([127, 0, 0, 1], ports[0])),
            https: SocketAddr::from(([127, 0, 0, 1], ports[1])),
            admin: SocketAddr::from(([127, 0, 0, 1], ports[2])),
            log_path,
            cluster,
            stopped: false,
        };
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = portico.child.try_wait() {
                portico.stopped = true;
                panic!("portico exited while starting ({status}):\n{}", portico.log_tail(60));
            }
            if portico.admin_get("/readyz").status == 200 {
                break;
            }
            if Instant::now() > deadline {
                panic!("portico was not ready within 60s:\n{}", portico.log_tail(60));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "    portico {} ready in {:.0} ms (http {}, pid {})",
            portico.identity,
            crate::ms(started.elapsed()),
            portico.http,
            portico.pid()
        );
        portico
    }
}

/// `n` distinct free TCP ports on loopback.
pub fn free_ports(n: usize) -> Vec<u16> {
    // Hold all listeners until every port is chosen, so they are distinct.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A running portico; stopped (SIGTERM, then SIGKILL) on drop. When the test is
/// failing, its log tail is printed.
pub struct Portico {
    child: Child,
    pub identity: String,
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
    log_path: PathBuf,
    cluster: &'static Cluster,
    stopped: bool,
}

const POLL_TIMEOUT: Duration = Duration::from_secs(5);

impl Portico {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// One request with curl.
    pub fn get(&self, host: &str, path: &str) -> Response {
        http::curl(&self.tmp(), self.http, host, path)
    }

    /// `n` requests with one curl over one keep-alive connection.
    pub fn get_many(&self, host: &str, path: &str, n: usize) -> Vec<Response> {
        http::curl_many(&self.tmp(), self.http, host, path, n)
    }

    /// One raw request on a fresh connection (for tight polling).
    pub fn probe(&self, host: &str, path: &str) -> Response {
        http::raw_get(self.http, host, path, POLL_TIMEOUT)
    }

    /// Polls (raw requests, every `interval`) until `host` + `path` answers `status`;
    /// returns how long after `since` the first such answer came. Panics after `timeout`.
    pub fn wait_status(&self, host: &str, path: &str, status: u16, since: Instant, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        let mut last = 0;
        loop {
            let r = self.probe(host, path);
            if r.status == status {
                return since.elapsed();
            }
            last = if r.status == 0 { last } else { r.status };
            if Instant::now() > deadline {
                panic!(
                    "{host}{path} did not answer {status} within {timeout:?} (last answer: {last})\n{}",
                    self.log_tail(30)
                );
            }
            self.assert_running();
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn tmp(&self) -> PathBuf {
        self.cluster.run_dir().join("tmp")
    }

    pub fn admin_get(&self, path: &str) -> Response {
        http::raw_get(self.admin, "localhost", path, POLL_TIMEOUT)
    }

    /// The sum of every series of Prometheus metric `name` on the admin listener.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.admin_get("/metrics").body;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Every JSON log line so far.
    pub fn logs(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The log lines (not access-log lines) whose message is `message`.
    pub fn log_events(&self, message: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l.get("message").and_then(Value::as_str) == Some(message))
            .collect()
    }

    /// The `routing table compiled` lines.
    pub fn compiles(&self) -> Vec<Value> {
        self.log_events("routing table compiled")
    }

    /// Waits up to `timeout` for a routing table with at least `ingresses` Ingresses,
    /// and returns its `routing table compiled` line (the table is published right
    /// after it).
    pub fn wait_compiled_ingresses(&self, ingresses: u64, timeout: Duration) -> Value {
        crate::wait_until(
            "a routing table with every Ingress",
            timeout,
            Duration::from_millis(100),
            || {
                let compiles = self.compiles();
                compiles
                    .iter()
                    .rev()
                    .find(|c| {
                        c.get("ingresses")
                            .and_then(Value::as_u64)
                            .is_some_and(|n| n >= ingresses)
                    })
                    .cloned()
                    .ok_or_else(|| format!("last compile: {:?}", compiles.last()))
            },
        )
    }

    /// The last `n` log lines that are not access-log lines.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains("\"target\":\"access\"")).collect();
        let from = lines.len().saturating_sub(n);
        format!(
            "--- portico {} log ({}), last {} lines:\n{}",
            self.identity,
            self.log_path.display(),
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
    pub fn proc_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
    }

    /// Panics (with the log) if portico has exited.
    pub fn assert_running(&self) {
        let alive = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false);
        assert!(alive, "portico {} exited\n{}", self.identity, self.log_tail(60));
    }

    /// Stops it abruptly (SIGKILL), as a crashed or evicted pod would stop.
    pub fn kill(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.cluster.forget_pid(self.child.id());
            self.stopped = true;
        }
    }

    /// Stops it as Kubernetes stops a pod (SIGTERM), waiting up to 5 s for it to exit.
    pub fn stop(&mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if self.stopped {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(40));
        }
        self.terminate();
    }
}
