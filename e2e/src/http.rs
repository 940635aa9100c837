//! HTTP clients: real `curl` for what a user would run, and a minimal raw HTTP/1.1
//! GET for polling every few milliseconds (a process per poll would blur the timings).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// One response.
#[derive(Clone, Debug)]
pub struct Response {
    /// HTTP status; 0 when no response arrived.
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The `backend` name an echo backend puts in its answer.
    pub fn backend(&self) -> Option<String> {
        self.json()?.get("backend")?.as_str().map(str::to_string)
    }

    /// The request path the echo backend saw.
    pub fn path(&self) -> Option<String> {
        self.json()?.get("path")?.as_str().map(str::to_string)
    }
}

/// `n` GETs of `http://addr/path` with `Host: host` from one curl process (one
/// keep-alive connection, as a browser or a client library would use).
pub fn curl_many(tmp: &Path, addr: SocketAddr, host: &str, path: &str, n: usize) -> Vec<Response> {
    assert!(n > 0);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = tmp.join(format!(
        "curl-{}",
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("curl output directory");
    let url = format!("http://{addr}{path}");
    let mut cmd = Command::new("curl");
    cmd.args([
        "--silent",
        "--show-error",
        "--max-time",
        "20",
        "--write-out",
        "%{http_code}\\n",
    ])
    .args(["--header", &format!("Host: {host}")]);
    for i in 0..n {
        cmd.arg("--output").arg(dir.join(i.to_string())).arg(&url);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("running curl");
    let codes: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect();
    let responses = (0..n)
        .map(|i| Response {
            status: codes.get(i).copied().unwrap_or(0),
            body: std::fs::read_to_string(dir.join(i.to_string())).unwrap_or_default(),
        })
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    responses
}

/// One GET with curl.
pub fn curl(tmp: &Path, addr: SocketAddr, host: &str, path: &str) -> Response {
    curl_many(tmp, addr, host, path, 1).remove(0)
}

/// Several hosts in one curl run: `--resolve` sends each `http://HOST:port/path` to
/// `addr`, so the Host header is exactly what a client resolving the name would send.
pub fn curl_hosts(addr: SocketAddr, hosts: &[String], path: &str) -> Vec<u16> {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--max-time", "60", "--write-out", "%{http_code}\\n"]);
    for h in hosts {
        cmd.arg("--resolve")
            .arg(format!("{h}:{}:{}", addr.port(), addr.ip()))
            .args(["--output", "/dev/null"])
            .arg(format!("http://{h}:{}{path}", addr.port()));
    }
    let out = cmd.stdin(Stdio::null()).output().expect("running curl");
    let mut codes: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect();
    codes.resize(hosts.len(), 0);
    codes
}

/// A raw HTTP/1.1 GET on a fresh connection: the status (0 when none arrived) and the
/// body, for tight polling loops.
pub fn raw_get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Response {
    fn inner(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> std::io::Result<Response> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portico-e2e\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
        });
        let body = if chunked { dechunk(body) } else { body.to_string() };
        Ok(Response { status, body })
    }
    inner(addr, host, path, timeout).unwrap_or(Response {
        status: 0,
        body: String::new(),
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        s = after.strip_prefix("\r\n").unwrap_or(after);
    }
    out
}
