//! Echo backends in network-namespace test hosts (`e2e/cluster testhost`).
//!
//! EndpointSlices may not hold loopback addresses, so each backend gets a test host
//! of its own with an address from 198.18.0.0/15, reachable from the root namespace
//! where portico and curl run.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::Cluster;
use crate::objects::BACKEND_PORT;

/// `tests/integration/backends/echo.py` on `addr:8080` in test host `host`; it
/// answers every request with JSON naming `name`. Stopped, and its test host removed,
/// on drop.
pub struct Echo {
    /// The name the backend answers with.
    pub name: String,
    pub addr: Ipv4Addr,
    host: String,
    child: Option<Child>,
    cluster: &'static Cluster,
}

/// Test host names and addresses for this run: distinct from other runs on the
/// machine (test hosts are machine-wide) through the process id.
fn allocate() -> (String, Ipv4Addr) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 250, "out of test host addresses");
    let name = format!("pe{}-{n}", pid % 100_000);
    // 198.19.0.0/16 half of the range; one /24 per run. .0, .1 and .255 stay unused.
    let addr = Ipv4Addr::new(198, 19, (pid % 256) as u8, (n + 2) as u8);
    (name, addr)
}

impl Echo {
    pub(crate) fn start(cluster: &'static Cluster, name: &str) -> Echo {
        let (host, addr) = allocate();
        let script = cluster.repo().join("e2e/cluster");
        let record = cluster.run_dir().join("testhosts").join(&host);
        std::fs::write(&record, b"").expect("recording the test host");
        crate::run(Command::new(&script).args(["testhost", "up", &host, &addr.to_string()]))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut echo = Echo {
            name: name.to_string(),
            addr,
            host,
            child: None,
            cluster,
        };
        let log_path = cluster
            .run_dir()
            .join("logs")
            .join(format!("echo-{}-{name}.log", echo.host));
        let log = File::create(&log_path).expect("echo log");
        let child = Command::new(&script)
            .args(["testhost", "exec", &echo.host, &cluster.python])
            .arg(cluster.repo().join("tests/integration/backends/echo.py"))
            .args([
                "--host",
                &addr.to_string(),
                "--port",
                &BACKEND_PORT.to_string(),
                "--name",
                name,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting echo.py");
        echo.child = Some(child);

        // Ready when it accepts connections from the root namespace, as portico will.
        let target = SocketAddr::from((addr, BACKEND_PORT));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&target, Duration::from_millis(500)).is_ok() {
                break;
            }
            if let Some(Ok(Some(status))) = echo.child.as_mut().map(Child::try_wait) {
                panic!(
                    "echo backend {name} in test host {} exited ({status}):\n{}",
                    echo.host,
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "echo backend {name} did not accept connections on {target} within 20s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        echo
    }

    /// The test host's name.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Also stops anything else left in the namespace.
        if let Err(e) =
            crate::run(Command::new(self.cluster.repo().join("e2e/cluster")).args(["testhost", "down", &self.host]))
        {
            eprintln!("e2e: {e}");
        } else {
            let _ = std::fs::remove_file(self.cluster.run_dir().join("testhosts").join(&self.host));
        }
    }
}
