//! TLS passed through, undecrypted, by the name the client asks for (ingress-nginx's
//! `ssl-passthrough`): on the Ingress HTTPS port, when the live table names any host
//! for it, the ClientHello is read before TLS takes the connection. A hello naming
//! such a host sends the connection, the hello included, to one of its backend's
//! endpoints, and bytes are copied both ways until either side closes; the backend
//! terminates TLS with its own certificate, and nothing of the HTTP inside is seen.
//! Any other hello (another name, none, or one that does not parse) goes on to
//! Portico's own TLS with the bytes read so far, as if nothing had looked at it.
//!
//! ingress-nginx puts a TCP proxy in front of nginx when `--enable-ssl-passthrough` is
//! set, matching the server name exactly and connecting to the Service's cluster IP;
//! here the name is matched exactly too, and the endpoints are tried in turn from a
//! rotating start, the next one when a connection is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::Conn;
use super::proxy_protocol::Prefixed;
use crate::table::Backend;

/// The most read while waiting for a whole ClientHello: a hello with post-quantum key
/// shares is under 2 KiB; TLS allows a hello of several records, not an unbounded one.
const MAX_HELLO: usize = 64 * 1024;

/// Where each connection starts through a backend's endpoints.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Serves a connection on the Ingress HTTPS port whose first bytes (`ahead`, possibly
/// none) have been read: passed through when its ClientHello names a passthrough
/// host, else handed to TLS.
pub(super) async fn serve(mut stream: TcpStream, ahead: Bytes, acceptor: TlsAcceptor, conn: Conn) {
    let deadline = Instant::now() + conn.proxy.config().client_header_timeout;
    let mut got = BytesMut::from(&ahead[..]);
    let name = loop {
        match server_name(&got) {
            Hello::Incomplete if got.len() < MAX_HELLO => {}
            Hello::Incomplete | Hello::Other => break None,
            Hello::Named(name) => break Some(name),
        }
        match super::read_some(&mut stream, deadline, &conn.drain).await {
            Some(Ok(b)) if !b.is_empty() => got.extend_from_slice(&b),
            // Closed, failed, too slow or draining: as a failed handshake would.
            _ => return,
        }
    };
    let backend = name.and_then(|n| conn.proxy.table().passthrough(&n).cloned());
    let hello = got.freeze();
    match backend {
        Some(backend) => pass(stream, hello, &backend, conn).await,
        None => super::serve_tls(Prefixed::new(hello, stream), acceptor, conn).await,
    }
}

/// What the bytes read so far say of the ClientHello.
#[derive(Debug, PartialEq, Eq)]
enum Hello {
    /// A prefix of a hello: more bytes may complete it.
    Incomplete,
    /// A whole hello naming this server.
    Named(String),
    /// A hello naming no server, or bytes that are not a hello: TLS judges them.
    Other,
}

/// Reads the server name of the ClientHello at the start of `bytes`, with rustls's own
/// parser, which is the one the handshake would use.
fn server_name(bytes: &[u8]) -> Hello {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest) {
            Ok(0) | Err(_) => return Hello::Other,
            Ok(_) => {}
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return match accepted.client_hello().server_name() {
                    Some(name) => Hello::Named(name.to_string()),
                    None => Hello::Other,
                };
            }
            Ok(None) => {}
            Err(_) => return Hello::Other,
        }
    }
    Hello::Incomplete
}

/// Connects to an endpoint of `backend`, writes what the client sent so far and copies
/// both ways until either side closes.
async fn pass(mut client: TcpStream, hello: Bytes, backend: &Arc<Backend>, conn: Conn) {
    let endpoints = &backend.endpoints;
    let timeout = conn.proxy.config().connect_timeout;
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut upstream = None;
    for i in 0..endpoints.len() {
        let addr = endpoints[(start + i) % endpoints.len()].addr;
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                upstream = Some(s);
                break;
            }
            Ok(Err(e)) => tracing::debug!(backend = %backend.name, %addr, error = %e, "passthrough connect failed"),
            Err(_) => tracing::debug!(backend = %backend.name, %addr, "passthrough connect timed out"),
        }
    }
    let Some(mut upstream) = upstream else {
        tracing::info!(client = %conn.info.peer, backend = %backend.name, "ssl-passthrough: no endpoint answered; connection closed");
        return;
    };
    let _ = upstream.set_nodelay(true);
    if upstream.write_all(&hello).await.is_err() {
        return;
    }
    drop(hello);
    let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    tracing::debug!(client = %conn.info.peer, backend = %backend.name, result = ?copied, "ssl-passthrough connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls's client writes it, naming `name`.
    fn hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(cfg), server).unwrap();
        let mut out = Vec::new();
        client.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn the_name_is_read_once_the_hello_is_whole() {
        let bytes = hello("Pass.Example.com");
        // Lowercased by rustls's server side, as the handshake's own name is.
        assert_eq!(server_name(&bytes), Hello::Named("pass.example.com".into()));
        for cut in [0, 1, 5, 6, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(server_name(&bytes[..cut]), Hello::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn bytes_that_are_not_a_hello_go_to_tls() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Hello::Other);
        // An IP address is not sent as a server name.
        assert_eq!(server_name(&hello("198.18.0.1")), Hello::Other);
    }
}
