//! Steady load while something changes (a rollout, a scale, a pod deletion), with an
//! exact account of what failed.
//!
//! Each client thread sends `GET path` with `Host: host` on a fresh connection
//! (`Connection: close`), one request at a time, to its targets in turn, until
//! stopped. What counts:
//!
//! - **ok**: a complete `HTTP/1.1 200` response arrived within 10 s;
//! - **failed**: anything else once a connection was made: another status, a reset,
//!   a close before the whole response, a timeout; or, without retries, a connection
//!   that could not be made;
//! - **retried** (only with [`LoadSpec::retry_connect`]): the TCP connection could
//!   not be made (refused, unreachable, or no answer to the SYN within 1 s), and the
//!   client tried again on its next target after 50 ms, up to 3 attempts in all.
//!   That is what a load balancer does with a backend that refuses connections
//!   (nginx `proxy_next_upstream error`, HAProxy `retries` with `redispatch`): no
//!   request was sent, so retrying is safe. A request whose 3 attempts all fail to
//!   connect counts as failed.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What to send, where, and how.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub targets: Vec<SocketAddr>,
    pub host: String,
    pub path: String,
    pub threads: usize,
    /// Retry requests whose connection could not be made (see the module docs).
    pub retry_connect: bool,
    /// Pause between one thread's requests.
    pub pause: Duration,
}

/// Counts so far.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Connection attempts that failed and were retried.
    pub retried: u64,
    /// The first failures, described.
    pub failures: Vec<String>,
    /// 200 responses per `backend` name in the echo answer (`"?"`: none in the body).
    pub by_backend: BTreeMap<String, u64>,
}

impl Tally {
    /// Per-backend counts since `earlier` (a snapshot of the same load).
    pub fn by_backend_since(&self, earlier: &Tally) -> BTreeMap<String, u64> {
        self.by_backend
            .iter()
            .map(|(k, v)| (k.clone(), v - earlier.by_backend.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect()
    }
}

/// A running load; [`Load::stop`] ends it and returns the totals.
pub struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    handles: Vec<JoinHandle<()>>,
    started: Instant,
}

enum Outcome {
    Ok(Option<String>),
    Failed(String),
    NoConnection(String),
}

fn one(target: SocketAddr, host: &str, path: &str) -> Outcome {
    let mut s = match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
        Ok(s) => s,
        Err(e) => return Outcome::NoConnection(format!("{target}: connect: {e}")),
    };
    let io = (|| -> std::io::Result<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-e2e-load\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        Ok(buf)
    })();
    let buf = match io {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
            return Outcome::Failed(format!("{target}: no complete response within 10s"));
        }
        Err(e) => return Outcome::Failed(format!("{target}: {e}")),
    };
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Outcome::Failed(format!("{target}: incomplete response ({} bytes)", buf.len()));
    };
    let status = head.get(9..12).unwrap_or("");
    if !head.starts_with("HTTP/1.1 ") || status != "200" {
        let first = head.lines().next().unwrap_or("");
        return Outcome::Failed(format!("{target}: {first}"));
    }
    // Content-Length is set by the echo backend; a short body is a broken response.
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length
        && body.len() < n
    {
        return Outcome::Failed(format!("{target}: body cut short ({} of {n} bytes)", body.len()));
    }
    let backend = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("backend")?.as_str().map(str::to_string));
    Outcome::Ok(backend)
}

impl Load {
    pub fn start(spec: LoadSpec) -> Load {
        assert!(!spec.targets.is_empty() && spec.threads > 0);
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let handles = (0..spec.threads)
            .map(|i| {
                let (stop, tally, spec) = (stop.clone(), tally.clone(), spec.clone());
                std::thread::spawn(move || {
                    let mut next = i;
                    while !stop.load(Ordering::Relaxed) {
                        let mut attempts = 0;
                        let outcome = loop {
                            let target = spec.targets[next % spec.targets.len()];
                            next += 1;
                            attempts += 1;
                            match one(target, &spec.host, &spec.path) {
                                Outcome::NoConnection(e) if spec.retry_connect && attempts < 3 => {
                                    tally.lock().expect("tally").retried += 1;
                                    let _ = e;
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                                other => break other,
                            }
                        };
                        {
                            let mut t = tally.lock().expect("tally");
                            t.sent += 1;
                            match outcome {
                                Outcome::Ok(backend) => {
                                    t.ok += 1;
                                    *t.by_backend.entry(backend.unwrap_or_else(|| "?".into())).or_insert(0) += 1;
                                }
                                Outcome::Failed(e) | Outcome::NoConnection(e) => {
                                    t.failed += 1;
                                    if t.failures.len() < 20 {
                                        t.failures.push(e);
                                    }
                                }
                            }
                        }
                        std::thread::sleep(spec.pause);
                    }
                })
            })
            .collect();
        Load {
            stop,
            tally,
            handles,
            started: Instant::now(),
        }
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Tally {
        self.tally.lock().expect("tally").clone()
    }

    /// Stops every client (each finishes its request) and returns the totals.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.join();
        }
        let t = self.tally.lock().expect("tally").clone();
        eprintln!(
            "    load: {} requests in {:.1}s, {} ok, {} failed, {} connection attempts retried",
            t.sent,
            self.started.elapsed().as_secs_f64(),
            t.ok,
            t.failed,
            t.retried
        );
        t
    }
}
