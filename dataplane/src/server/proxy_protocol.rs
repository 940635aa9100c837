//! The PROXY protocol in front of every connection on the Ingress listeners, when the
//! live table says so (ingress-nginx's `use-proxy-protocol`, nginx's `listen ...
//! proxy_protocol`): a load balancer that passes TCP through writes the client's
//! address first, in HAProxy's v1 text or v2 binary header (`proxy-protocol.txt`).
//!
//! The header is read before anything else (before TLS, before the HTTP/2 preface
//! sniff), within the table's `proxy-protocol-header-timeout`. A connection without a
//! valid header, or too slow to send it, is closed, counted in
//! `portico_proxy_protocol_errors_total{reason}` and logged at debug. The address it
//! names becomes the connection's client when the socket's peer is trusted
//! (`proxy-real-ip-cidr`, as nginx's `real_ip_header proxy_protocol`); a v1 `UNKNOWN`
//! or v2 `LOCAL` header (a load balancer's health check) keeps the socket's address.
//! Bytes read past the header go to the protocol untouched.
//!
//! Parsing is the `ppp` crate's: v1 and v2 with their address families, TLVs skipped.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::{Conn, Drain};
use crate::metrics::Metrics;

/// The longest header read: nginx's `NGX_PROXY_PROTOCOL_MAX_HEADER`. A v1 header is at
/// most 107 bytes; a v2 header's TLVs (a cloud load balancer's endpoint id) make it
/// longer, rarely by more than a hundred.
const MAX_HEADER: usize = 4096;

/// A v1 header's start, and its longest length (CRLF included).
const V1_PREFIX: &[u8] = b"PROXY ";
const V1_MAX: usize = 107;

/// Every `reason` of `portico_proxy_protocol_errors_total`.
use crate::metrics::PROXY_PROTOCOL_ERROR_REASONS as ERROR_REASONS;

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A prefix of a header: more bytes may complete it.
    Incomplete,
    /// Not a PROXY protocol header, or longer than [`MAX_HEADER`].
    Invalid,
    /// A header of `len` bytes, naming `(client, server)` when it names addresses.
    Header {
        len: usize,
        addresses: Option<(SocketAddr, SocketAddr)>,
    },
}

/// Reads a PROXY protocol header (v1 or v2) from the start of `bytes`.
fn parse(bytes: &[u8]) -> Parsed {
    // A v1 line is judged once it is whole: `ppp` takes one cut just after the source
    // port ("PROXY TCP4 a b 56324 ") for a bad destination port, not a partial line.
    let line = &bytes[..bytes.len().min(V1_MAX)];
    let v1 = line.starts_with(V1_PREFIX) || V1_PREFIX.starts_with(line);
    if v1 && !line.contains(&b'\n') && bytes.len() < V1_MAX {
        return Parsed::Incomplete;
    }
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return if bytes.len() >= MAX_HEADER {
            Parsed::Invalid
        } else {
            Parsed::Incomplete
        };
    }
    let (len, addresses) = match result {
        HeaderResult::V1(Ok(h)) => {
            let addresses = match h.addresses {
                v1::Addresses::Tcp4(a) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                v1::Addresses::Tcp6(a) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                v1::Addresses::Unknown => None,
            };
            (h.header.len(), addresses)
        }
        HeaderResult::V2(Ok(h)) => {
            // LOCAL: the load balancer's own connection (a health check); the
            // addresses, if any, are to be ignored.
            let addresses = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some((
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                )),
                _ => None,
            };
            (h.len(), addresses)
        }
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => return Parsed::Invalid,
    };
    if len > MAX_HEADER {
        return Parsed::Invalid;
    }
    Parsed::Header { len, addresses }
}

/// Why a connection was closed before its header was read.
enum Refused {
    Invalid,
    Timeout,
    ClientClosed,
    /// Draining started: not the client's fault, not counted.
    Draining,
}

impl Refused {
    fn reason(&self) -> Option<&'static str> {
        match self {
            Refused::Invalid => Some(ERROR_REASONS[0]),
            Refused::Timeout => Some(ERROR_REASONS[1]),
            Refused::ClientClosed => Some(ERROR_REASONS[2]),
            Refused::Draining => None,
        }
    }
}

/// Reads the header, within `timeout`, then serves the connection as its listener
/// would. Runs only when the live table asks for the PROXY protocol.
pub(super) async fn serve(mut stream: TcpStream, tls: Option<TlsAcceptor>, mut conn: Conn, timeout: Duration) {
    let now = Instant::now();
    let deadline = now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400));
    let (addresses, rest) = match read_header(&mut stream, deadline, &conn.drain).await {
        Ok(read) => read,
        Err(refused) => {
            if let Some(reason) = refused.reason() {
                Metrics::get().proxy_protocol_errors.with_label_values(&[reason]).inc();
                tracing::debug!(client = %conn.info.peer, reason, "no PROXY protocol header; connection closed");
            }
            return;
        }
    };
    if let Some((client, server)) = addresses {
        // The trust is the table's of now, as a request's would be.
        let believe = conn
            .proxy
            .table()
            .forwarded()
            .is_some_and(|p| p.trusts(conn.info.peer.ip()));
        Arc::make_mut(&mut conn.info).proxied(client, server, believe);
    }
    match tls {
        None => drop(tokio::spawn(super::park::serve_after_header(stream, conn, rest))),
        Some(acceptor) if conn.proxy.inspects_tls().0 => drop(tokio::spawn(super::passthrough::serve(
            stream,
            rest.freeze(),
            acceptor,
            conn,
        ))),
        Some(acceptor) => {
            let stream = Prefixed::new(rest.freeze(), stream);
            drop(tokio::spawn(super::serve_tls(stream, acceptor, conn)));
        }
    }
}

/// Reads until a whole header has arrived; returns what it names and the bytes read
/// past it. Reads as [`super::first_bytes`] does: no buffer held while waiting.
async fn read_header(
    stream: &mut TcpStream,
    deadline: Instant,
    drain: &Drain,
) -> Result<(Option<(SocketAddr, SocketAddr)>, BytesMut), Refused> {
    let mut got = BytesMut::new();
    loop {
        let bytes = match super::read_some(stream, deadline, drain).await {
            Some(Ok(b)) if !b.is_empty() => b,
            Some(_) => return Err(Refused::ClientClosed),
            None if *drain.rx.borrow() => return Err(Refused::Draining),
            None => return Err(Refused::Timeout),
        };
        got.extend_from_slice(&bytes);
        match parse(&got) {
            Parsed::Incomplete => {}
            Parsed::Invalid => return Err(Refused::Invalid),
            Parsed::Header { len, addresses } => {
                let rest = got.split_off(len);
                return Ok((addresses, rest));
            }
        }
    }
}

/// A TLS connection's socket with the bytes read past the header in front.
pub(super) struct Prefixed {
    ahead: Bytes,
    stream: TcpStream,
}

impl Prefixed {
    /// `stream`, whose reads give `ahead` first.
    pub(super) fn new(ahead: Bytes, stream: TcpStream) -> Prefixed {
        Prefixed { ahead, stream }
    }
}

impl super::ClientIo for Prefixed {
    fn socket(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    fn poll_parked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ahead.is_empty() {
            return Poll::Ready(Ok(()));
        }
        self.stream.poll_read_ready(cx)
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if super::read_ahead(&mut this.ahead, buf) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize, client: &str, server: &str) -> Parsed {
        Parsed::Header {
            len,
            addresses: Some((client.parse().unwrap(), server.parse().unwrap())),
        }
    }

    /// v2: the 12-byte signature, version 2 and PROXY, TCP over IPv4, 12 address bytes.
    fn v2_tcp4(client: [u8; 4], server: [u8; 4], ports: (u16, u16)) -> Vec<u8> {
        let mut h = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        h.extend_from_slice(&client);
        h.extend_from_slice(&server);
        h.extend_from_slice(&ports.0.to_be_bytes());
        h.extend_from_slice(&ports.1.to_be_bytes());
        h
    }

    /// A v1 header is read up to its CRLF; what follows is the protocol's.
    #[test]
    fn a_v1_header_names_the_client_and_leaves_the_request() {
        let input = b"PROXY TCP4 203.0.113.7 198.18.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(input), header(45, "203.0.113.7:56324", "198.18.0.1:443"));
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n"),
            header(44, "[2001:db8::7]:4000", "[2001:db8::1]:80")
        );
    }

    /// v2 with TCP over IPv4; the length field counts the addresses.
    #[test]
    fn a_v2_header_names_the_client_and_leaves_the_request() {
        let mut input = v2_tcp4([203, 0, 113, 7], [198, 18, 0, 1], (56324, 443));
        input.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(parse(&input), header(28, "203.0.113.7:56324", "198.18.0.1:443"));
    }

    /// v1 `UNKNOWN` and v2 `LOCAL` (a load balancer's health check) name no client:
    /// the socket's address stays.
    #[test]
    fn unknown_and_local_keep_the_socket_address() {
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\nGET"),
            Parsed::Header {
                len: 15,
                addresses: None
            }
        );
        let mut local = v2_tcp4([203, 0, 113, 7], [198, 18, 0, 1], (1, 2));
        local[12] = 0x20;
        assert_eq!(
            parse(&local),
            Parsed::Header {
                len: 28,
                addresses: None
            }
        );
    }

    /// Any prefix of a header waits for more; a request without one is refused at once.
    #[test]
    fn a_prefix_waits_and_anything_else_is_refused() {
        let v1 = b"PROXY TCP4 203.0.113.7 198.18.0.1 56324 443\r\n";
        for n in 1..v1.len() {
            assert_eq!(parse(&v1[..n]), Parsed::Incomplete, "{n}");
        }
        let v2 = v2_tcp4([203, 0, 113, 7], [198, 18, 0, 1], (56324, 443));
        for n in 1..v2.len() {
            assert_eq!(parse(&v2[..n]), Parsed::Incomplete, "{n}");
        }
        for refused in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"PRI * HTTP/2.0\r\n",
            b"PROXY TCP4 nonsense 198.18.0.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 198.18.0.1 056324 443\r\n",
        ] {
            assert_eq!(parse(refused), Parsed::Invalid, "{refused:?}");
        }
    }

    /// A header that would not end within nginx's limit is refused, not buffered.
    #[test]
    fn a_header_longer_than_the_limit_is_refused() {
        let mut long = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff".to_vec();
        long.resize(MAX_HEADER, 0);
        assert_eq!(parse(&long), Parsed::Invalid);
        assert_eq!(parse(&long[..MAX_HEADER - 1]), Parsed::Incomplete);
        assert_eq!(parse(&[b'P'; 200]), Parsed::Invalid);
    }
}
