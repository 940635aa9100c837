//! Gateway listener ports served by a real `Server` on loopback: each port routes by
//! its own listener's table only (Gateway API: an HTTPRoute is served only by the
//! listeners it attaches to, and Ingress traffic never by a Gateway's listener),
//! terminates TLS with its own certificates, and opens and closes as tables come.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portico_dataplane::server::Addresses;
use portico_dataplane::table::{
    Backend, Endpoint, HostMatch, ListenerProtocol, ObjectKind, PathKind, Route, RouteMeta, RoutePolicy, RouteRule,
    RoutingTable, TableBuilder, UpstreamProtocol,
};
use portico_dataplane::tls::{Certificate, UpstreamTls};
use portico_dataplane::{Proxy, ProxyConfig, Server};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

const WAIT: Duration = Duration::from_secs(10);

/// A backend answering every request with its name (after a second for `/slow`);
/// an upgrade gets `101` and then echoes what the client sends.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = service_fn(move |mut req: Request<Incoming>| async move {
                if req.headers().contains_key(header::UPGRADE) {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(io) = upgrade.await {
                            let mut io = TokioIo::new(io);
                            let mut buf = [0u8; 64];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    });
                    let resp = Response::builder()
                        .status(StatusCode::SWITCHING_PROTOCOLS)
                        .header(header::UPGRADE, "websocket")
                        .header(header::CONNECTION, "upgrade")
                        .body(Full::new(Bytes::new()))
                        .expect("101");
                    return Ok::<_, Infallible>(resp);
                }
                if req.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(Response::new(Full::new(Bytes::from(name))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades(),
            );
        }
    });
    addr
}

fn rule(host: &str, kind: ObjectKind, name: &str, backend: SocketAddr) -> RouteRule {
    let target = Backend::new(
        format!("default/{name}:80"),
        UpstreamProtocol::Http1,
        vec![Endpoint { addr: backend }],
    );
    RouteRule {
        host: HostMatch::parse(host).expect("host"),
        path: "/".into(),
        kind: PathKind::Prefix,
        route: Arc::new(Route::new(
            RouteMeta {
                kind,
                namespace: "default".into(),
                ingress: name.into(),
                host: host.into(),
                ..RouteMeta::default()
            },
            Arc::new(target),
            RoutePolicy::default(),
            None,
        )),
    }
}

/// A port nothing listens on now: bound to 0 and let go.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 0");
    l.local_addr().expect("address").port()
}

/// A running server on loopback (two serving threads, each with its own socket per
/// port), fed tables through `tables`.
struct Running {
    http: SocketAddr,
    https: SocketAddr,
    tables: watch::Sender<Arc<RoutingTable>>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(table: RoutingTable) -> Running {
        portico_dataplane::tls::install_crypto_provider();
        let cfg = ProxyConfig {
            workers: 2,
            access_log: false,
            drain_timeout: Duration::from_secs(5),
            ..ProxyConfig::default()
        };
        let any = |port| -> SocketAddr { ([127, 0, 0, 1], port).into() };
        let addrs = Addresses {
            http: any(0),
            https: Some(any(0)),
            admin: any(0),
        };
        let server = Server::bind(Proxy::new(cfg), addrs).await.expect("bind server");
        let (http, https) = (server.http_addr(), server.https_addr().expect("https"));
        let (tables, rx) = watch::channel(Arc::new(table));
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server.run(rx, async move {
            let _ = stopped.await;
        }));
        Running {
            http,
            https,
            tables,
            stop: Some(stop),
            done,
        }
    }

    fn publish(&self, table: RoutingTable) {
        self.tables.send_replace(Arc::new(table));
    }

    async fn stop(mut self) {
        drop(self.stop.take());
        let _ = self.done.await;
    }
}

fn at(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// One HTTP/1.1 connection.
async fn http1<S>(stream: S) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn.with_upgrades());
    sender
}

fn get(host: &str, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header(header::HOST, host)
        .body(Empty::new())
        .expect("request")
}

/// Status and body of one request on a connection.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) -> (StatusCode, String) {
    sender.ready().await.expect("connection ready");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Status and body of `GET host/` on a new plain connection to `addr`.
async fn fetch(addr: SocketAddr, host: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    send(&mut http1(stream).await, get(host, "/")).await
}

/// Waits until `addr` accepts connections (`true`) or refuses them (`false`).
async fn wait_accepting(addr: SocketAddr, accepting: bool) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() != accepting {
        assert!(
            Instant::now() < deadline,
            "{addr} still {}",
            if accepting { "refuses" } else { "accepts" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests on a listener port are routed by that listener's rules only, in HTTP/1.1,
/// HTTP/2 with prior knowledge and through a WebSocket upgrade, and the Ingress port
/// never by a listener's rules: each answers 404 for the other's hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_port_routes_by_its_own_table() {
    let (ing, gw) = (backend("ingress").await, backend("gateway").await);
    let port = free_port();
    let mut b = TableBuilder::new();
    b.add(rule("a.com", ObjectKind::Ingress, "ing", ing)).unwrap();
    b.listener(port, ListenerProtocol::Http)
        .add(rule("b.com", ObjectKind::HttpRoute, "web", gw))
        .unwrap();
    let server = Running::start(b.build(1)).await;
    wait_accepting(at(port), true).await;

    assert_eq!(fetch(server.http, "a.com").await, (StatusCode::OK, "ingress".into()));
    assert_eq!(fetch(server.http, "b.com").await.0, StatusCode::NOT_FOUND);
    assert_eq!(fetch(at(port), "b.com").await, (StatusCode::OK, "gateway".into()));
    assert_eq!(fetch(at(port), "a.com").await.0, StatusCode::NOT_FOUND);

    // HTTP/2 with prior knowledge, as on the Ingress HTTP port.
    let stream = TcpStream::connect(at(port)).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2c handshake");
    tokio::spawn(conn);
    let req = Request::get("http://b.com/").body(Empty::<Bytes>::new()).unwrap();
    let resp = h2.send_request(req).await.expect("h2 response");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"gateway");

    // A WebSocket upgrade, then bytes both ways through the tunnel.
    let mut sender = http1(TcpStream::connect(at(port)).await.unwrap()).await;
    let req = Request::get("/ws")
        .header(header::HOST, "b.com")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("upgrade response");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut tunnel = TokioIo::new(hyper::upgrade::on(resp).await.expect("upgraded"));
    tunnel.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(WAIT, tunnel.read_exact(&mut echo))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&echo, b"ping");
    server.stop().await;
}

/// A TLS client that accepts any certificate and tells which one it was shown.
async fn handshake(
    addr: SocketAddr,
    sni: &str,
) -> (Vec<u8>, Option<Vec<u8>>, tokio_rustls::client::TlsStream<TcpStream>) {
    let tls = UpstreamTls::unverified(sni).expect("client config");
    let mut config = (*tls.config).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let stream = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    let cert = conn.peer_certificates().expect("a certificate")[0].to_vec();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    (cert, alpn, tls)
}

fn der(cert: &Certificate) -> Vec<u8> {
    cert.key.cert[0].to_vec()
}

/// SNI on an HTTPS listener port chooses among that listener's certificates only: a
/// name only the Ingress side (or another listener) has a certificate for gets the
/// listener's default, else the table's default. ALPN offers h2 as on the Ingress port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_serves_its_own_certificates() {
    let gw = backend("gateway").await;
    let cert = || Arc::new(Certificate::generate_default().expect("certificate"));
    let (ingress_cert, table_default, gw_cert, gw_default, other_cert) = (cert(), cert(), cert(), cert(), cert());
    let (with_default, without_default) = (free_port(), free_port());
    let mut b = TableBuilder::new();
    b.certificate(&HostMatch::parse("a.com").unwrap(), ingress_cert.clone());
    b.default_certificate(table_default.clone());
    let l = b.listener(with_default, ListenerProtocol::Https);
    l.certificate(&HostMatch::parse("*.b.com").unwrap(), gw_cert.clone());
    l.default_certificate(gw_default.clone());
    l.add(rule("x.b.com", ObjectKind::HttpRoute, "web", gw)).unwrap();
    let l = b.listener(without_default, ListenerProtocol::Https);
    l.certificate(&HostMatch::parse("c.com").unwrap(), other_cert.clone());
    let server = Running::start(b.build(1)).await;
    wait_accepting(at(with_default), true).await;
    wait_accepting(at(without_default), true).await;

    let (shown, alpn, stream) = handshake(at(with_default), "x.b.com").await;
    assert_eq!(shown, der(&gw_cert));
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    drop(stream);
    let (shown, _, stream) = handshake(at(with_default), "a.com").await;
    assert_eq!(
        shown,
        der(&gw_default),
        "the Ingress host's certificate is not the listener's"
    );
    // A request over TLS (HTTP/1.1 when only it is offered) is routed by the listener.
    drop(stream);
    let tls = UpstreamTls::unverified("x.b.com").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(
            ServerName::try_from("x.b.com").unwrap(),
            TcpStream::connect(at(with_default)).await.unwrap(),
        )
        .await
        .unwrap();
    let mut sender = http1(stream).await;
    assert_eq!(
        send(&mut sender, get("x.b.com", "/")).await,
        (StatusCode::OK, "gateway".into())
    );
    assert_eq!(send(&mut sender, get("a.com", "/")).await.0, StatusCode::NOT_FOUND);

    let (shown, _, _) = handshake(at(without_default), "c.com").await;
    assert_eq!(shown, der(&other_cert));
    let (shown, _, _) = handshake(at(without_default), "x.b.com").await;
    assert_eq!(
        shown,
        der(&table_default),
        "another listener's certificate is not served"
    );
    let (shown, _, _) = handshake(at(without_default), "a.com").await;
    assert_eq!(shown, der(&table_default));

    // And the Ingress HTTPS port never serves a listener's certificate.
    let (shown, _, _) = handshake(server.https, "x.b.com").await;
    assert_eq!(shown, der(&table_default));
    let (shown, _, _) = handshake(server.https, "a.com").await;
    assert_eq!(shown, der(&ingress_cert));
    server.stop().await;
}

/// A listener a new table no longer has stops accepting; a request in flight on a
/// keep-alive connection it accepted still gets its answer. A listener added by a new
/// table starts accepting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_closes_and_opens_listener_ports() {
    let gw = backend("gateway").await;
    let (old, new) = (free_port(), free_port());
    let table = |generation, port| {
        let mut b = TableBuilder::new();
        b.listener(port, ListenerProtocol::Http)
            .add(rule("b.com", ObjectKind::HttpRoute, "web", gw))
            .unwrap();
        b.build(generation)
    };
    let server = Running::start(table(1, old)).await;
    wait_accepting(at(old), true).await;
    let mut sender = http1(TcpStream::connect(at(old)).await.unwrap()).await;
    assert_eq!(
        send(&mut sender, get("b.com", "/")).await,
        (StatusCode::OK, "gateway".into())
    );

    // A slow request in flight on the kept-alive connection while the port goes away.
    let slow = tokio::spawn(async move { send(&mut sender, get("b.com", "/slow")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.publish(table(2, new));
    wait_accepting(at(old), false).await;
    wait_accepting(at(new), true).await;
    assert_eq!(slow.await.unwrap(), (StatusCode::OK, "gateway".into()));
    assert_eq!(fetch(at(new), "b.com").await, (StatusCode::OK, "gateway".into()));
    server.stop().await;
}

/// A port that cannot be bound is left out without taking down the others, and is
/// bound at the next table once it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbindable_port_is_retried_at_the_next_table() {
    let gw = backend("gateway").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (busy, free) = (taken.local_addr().unwrap().port(), free_port());
    let table = |generation| {
        let mut b = TableBuilder::new();
        for port in [busy, free] {
            b.listener(port, ListenerProtocol::Http)
                .add(rule("b.com", ObjectKind::HttpRoute, "web", gw))
                .unwrap();
        }
        b.build(generation)
    };
    let server = Running::start(table(1)).await;
    wait_accepting(at(free), true).await;
    assert_eq!(fetch(at(free), "b.com").await, (StatusCode::OK, "gateway".into()));
    // Still the other process's socket: nothing of the proxy's answers on it.
    let mut probe = TcpStream::connect(at(busy)).await.unwrap();
    probe.write_all(b"GET / HTTP/1.1\r\nHost: b.com\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), probe.read(&mut buf))
            .await
            .is_err()
    );
    drop((probe, taken));

    server.publish(table(2));
    wait_accepting(at(busy), true).await;
    assert_eq!(fetch(at(busy), "b.com").await, (StatusCode::OK, "gateway".into()));
    assert_eq!(fetch(at(free), "b.com").await, (StatusCode::OK, "gateway".into()));
    server.stop().await;
}

/// A route whose backend stands for a reference that does not resolve answers 500
/// (Gateway API `HTTPBackendRef`: "requests that would have been sent to that backend
/// MUST receive a 500 status code"; conformance `HTTPRouteInvalidBackendRefUnknownKind`
/// and friends), while a Service with no ready endpoint still answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolved_backend_ref_answers_500_and_no_endpoint_503() {
    let port = free_port();
    let route = |host: &str, backend: Backend| RouteRule {
        host: HostMatch::parse(host).expect("host"),
        path: "/".into(),
        kind: PathKind::Prefix,
        route: Arc::new(Route::new(
            RouteMeta {
                kind: ObjectKind::HttpRoute,
                namespace: "default".into(),
                ingress: "web".into(),
                host: host.into(),
                ..RouteMeta::default()
            },
            Arc::new(backend),
            RoutePolicy::default(),
            None,
        )),
    };
    let mut b = TableBuilder::new();
    let listener = b.listener(port, ListenerProtocol::Http);
    listener
        .add(route("invalid.com", Backend::invalid("default/missing:invalid")))
        .unwrap();
    listener
        .add(route(
            "empty.com",
            Backend::new("default/empty:80", UpstreamProtocol::Http1, Vec::new()),
        ))
        .unwrap();
    let server = Running::start(b.build(1)).await;
    wait_accepting(at(port), true).await;
    assert_eq!(
        fetch(at(port), "invalid.com").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(fetch(at(port), "empty.com").await.0, StatusCode::SERVICE_UNAVAILABLE);
    server.stop().await;
}
