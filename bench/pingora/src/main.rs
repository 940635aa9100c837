//! The Pingora peer of Portico's benchmark (see bench/README.md): a minimal reverse proxy
//! on Cloudflare's `pingora-proxy`, set up as the benchmark sets up nginx, HAProxy and
//! Portico. Every request goes, Host unchanged, to the one backend over plain HTTP/1.1,
//! through Pingora's pool of kept-alive upstream connections. Plain HTTP on one port and,
//! given a certificate and key, HTTPS on another (rustls; HTTP/1.1 and h2 by ALPN). No
//! access log: only warnings and errors, on stderr.
//!
//! ```text
//! bench-pingora --listen ADDR --backend ADDR [--threads N]
//!               [--tls-listen ADDR --cert PEM --key PEM]
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora_core::Result;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::Server;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

/// Sends everything to one backend.
struct Proxy {
    backend: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // No TLS and no SNI to the backend. Pingora forwards the request head as it came,
        // less the hop-by-hop headers (`Connection: close` from a client included), and
        // reuses an idle pooled connection to this peer when it has one.
        Ok(Box::new(HttpPeer::new(self.backend, false, String::new())))
    }
}

struct Args {
    listen: String,
    backend: SocketAddr,
    threads: usize,
    /// Address, certificate chain and key of the HTTPS listener.
    tls: Option<(String, String, String)>,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut flags = HashMap::new();
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        flags.insert(flag, value);
    }
    let mut take = |flag: &str| flags.remove(flag);
    let listen = take("--listen").ok_or("--listen is required")?;
    let backend = take("--backend").ok_or("--backend is required")?;
    let backend = backend.parse().map_err(|e| format!("--backend {backend}: {e}"))?;
    let threads = match take("--threads") {
        Some(n) => n.parse().map_err(|e| format!("--threads {n}: {e}"))?,
        None => 2,
    };
    let tls = match (take("--tls-listen"), take("--cert"), take("--key")) {
        (Some(addr), Some(cert), Some(key)) => Some((addr, cert, key)),
        (None, None, None) => None,
        _ => return Err("--tls-listen, --cert and --key go together".into()),
    };
    if let Some(flag) = flags.keys().next() {
        return Err(format!("unknown flag {flag}"));
    }
    Ok(Args {
        listen,
        backend,
        threads,
        tls,
    })
}

/// Warnings and errors to stderr; nothing per request.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("{} {}: {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench-pingora: {e}");
            return ExitCode::from(2);
        }
    };
    if log::set_logger(&StderrLog).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }

    let conf = ServerConf {
        // The threads of each service: this one service serves both listeners.
        threads: args.threads,
        // SIGTERM stops at once, with no grace period for open connections.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None::<Opt>, conf);
    server.bootstrap();

    let mut proxy = pingora_proxy::http_proxy_service(&server.configuration, Proxy { backend: args.backend });
    proxy.add_tcp(&args.listen);
    if let Some((addr, cert, key)) = &args.tls {
        let mut tls = match TlsSettings::intermediate(cert, key) {
            Ok(tls) => tls,
            Err(e) => {
                eprintln!("bench-pingora: {e}");
                return ExitCode::FAILURE;
            }
        };
        tls.enable_h2();
        proxy.add_tls_with_settings(addr, None, tls);
    }
    server.add_service(proxy);
    server.run_forever()
}
