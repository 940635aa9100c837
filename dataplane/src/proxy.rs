//! One request's life, in Pingora's named phases:
//!
//! 1. [`Proxy::route`]: find the route in the live table; 404 when none.
//! 2. [`Proxy::upstream_request`]: rewrite the request for the endpoint (forwarded
//!    headers, request ID, hop-by-hop headers removed).
//! 3. [`Proxy::send_upstream`]: pick an endpoint round-robin, take a pooled
//!    connection, send; retried once on another endpoint when the connection fails
//!    before the request left.
//! 4. [`Proxy::upstream_response`]: clean the endpoint's response and stream it back.
//! 5. logging: metrics and the access-log line, when the response body is done
//!    ([`RequestLog`]).
//!
//! Every failure is a [`ProxyError`], and [`ProxyError::status`] alone decides its
//! status code.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::body::{BodyTooLarge, OnComplete, RequestBody, ResponseBody};
use crate::config::ProxyConfig;
use crate::metrics::Metrics;
use crate::table::{Route, RoutingTable, UpstreamProtocol};
use crate::upstream::{Pool, SendError, UpstreamConn};

/// What the proxy knows about the client connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The listener's port, for `X-Forwarded-Port`.
    pub local_port: u16,
    pub tls: bool,
}

/// Where a failure came from, and so which status the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for this host and path")]
    NoRoute,
    #[error("backend {0} has no ready endpoint")]
    NoEndpoint(String),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    #[error("upstream connect failed: {0}")]
    Connect(#[from] SendError),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("upstream failed: {0}")]
    Upstream(hyper::Error),
    #[error("upstream {0} closed the connection before the request was sent")]
    UpstreamClosed(SocketAddr),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
}

impl ProxyError {
    /// The one place a failure becomes a status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoint(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Connect(_) | ProxyError::Upstream(_) | ProxyError::UpstreamClosed(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn response(&self) -> Response<ResponseBody> {
        let status = self.status();
        let text = format!("{} {}\n", status.as_str(), status.canonical_reason().unwrap_or(""));
        let mut resp = Response::new(ResponseBody::full(text));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self, ProxyError::BodyTooLarge(_) | ProxyError::BadRequest(_)) {
            // The rest of the body is unread; the connection cannot carry another request.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// The proxy: the live table, the shared pool and the limits. One per process.
pub struct Proxy {
    table: ArcSwap<RoutingTable>,
    pool: Arc<Pool>,
    cfg: ProxyConfig,
}

impl Proxy {
    pub fn new(cfg: ProxyConfig) -> Arc<Proxy> {
        let pool = Pool::new(
            cfg.pool_max_idle_per_endpoint,
            cfg.pool_idle_timeout,
            cfg.connect_timeout,
        );
        Arc::new(Proxy {
            table: ArcSwap::from_pointee(RoutingTable::default()),
            pool,
            cfg,
        })
    }

    /// Swaps in a new table; requests in flight keep the one they started with.
    pub fn swap_table(&self, table: Arc<RoutingTable>) {
        let m = Metrics::get();
        m.table_routes.set(table.route_count() as i64);
        m.table_generation.set(table.generation as i64);
        m.ssl_expire_time.reset();
        for (host, cert) in table.certificates() {
            m.ssl_expire_time
                .with_label_values(&[host.as_str(), cert.source.as_str()])
                .set(cert.not_after as f64);
        }
        self.table.store(table);
        m.table_reloads.inc();
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            m.table_last_reload.set(now.as_secs_f64());
        }
    }

    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// Serves one request from start to response headers; the body streams after.
    pub async fn handle(self: &Arc<Self>, mut req: Request<Incoming>, conn: ConnInfo) -> Response<ResponseBody> {
        let start = Instant::now();
        let method = req.method().clone();
        let request_id = take_or_make_request_id(req.headers_mut());
        let host = request_host(&req).unwrap_or_default();
        let mut log = RequestLog {
            start,
            method,
            host,
            uri: req.uri().clone(),
            client: conn.peer.ip(),
            request_id,
            status: StatusCode::OK,
            route: None,
            upstream: None,
            upstream_secs: None,
            request_size: request_size(&req),
            access_log: self.cfg.access_log,
        };
        let mut resp = match self.proxy(req, conn, &mut log).await {
            Ok(resp) => resp,
            Err(e) => {
                if !matches!(e, ProxyError::NoRoute) {
                    tracing::debug!(error = %e, request_id = log.request_id.to_str().unwrap_or(""), "request failed");
                }
                e.response()
            }
        };
        if conn.tls && log.route.as_ref().is_some_and(|r| r.policy.hsts) {
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, self.cfg.hsts_header.clone());
        }
        log.status = resp.status();
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, body.on_complete(Box::new(log)))
    }

    async fn proxy(
        self: &Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
        log: &mut RequestLog,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let table = self.table.load();
        let route = Self::route(&table, &log.host, req.uri().path())?;
        log.route = Some(route.clone());
        drop(table);
        if !conn.tls && route.policy.ssl_redirect {
            return Ok(self.redirect_to_https(&log.host, req.uri()));
        }

        if let (Some(limit), Some(len)) = (route.policy.max_body_size, content_length(req.headers()))
            && len > limit
        {
            crate::body::linger(req.into_body());
            return Err(ProxyError::BodyTooLarge(limit));
        }
        let upgrade = is_upgrade(&req);
        let (req, on_client_upgrade) = self.upstream_request(req, &route, conn, &log.request_id, &log.host, upgrade)?;
        let sent = Instant::now();
        let (resp, pooled) = self.send_upstream(req, &route, upgrade, log).await?;
        log.upstream_secs = Some(sent.elapsed().as_secs_f64());
        Ok(self.upstream_response(resp, pooled, on_client_upgrade))
    }

    /// Phase 1: the route for this host and path, from the table the request started with.
    pub fn route(table: &RoutingTable, host: &str, path: &str) -> Result<Arc<Route>, ProxyError> {
        table.lookup(host, path).cloned().ok_or(ProxyError::NoRoute)
    }

    /// The 308 that sends a plain-HTTP request for a TLS host to HTTPS, method and body
    /// kept (as ingress-nginx does for `ssl-redirect`).
    fn redirect_to_https(&self, host: &str, uri: &Uri) -> Response<ResponseBody> {
        let name = crate::table::normalize_host(host);
        let port = match self.cfg.https_redirect_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!("https://{name}{port}{path}");
        let mut resp = Response::new(ResponseBody::empty());
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }

    /// Phase 2: the request as the endpoint should see it.
    fn upstream_request(
        &self,
        mut req: Request<Incoming>,
        route: &Route,
        conn: ConnInfo,
        request_id: &HeaderValue,
        host: &str,
        upgrade: bool,
    ) -> Result<(Request<RequestBody>, Option<hyper::upgrade::OnUpgrade>), ProxyError> {
        let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let upgrade_proto = req.headers().get(header::UPGRADE).cloned();
        let (mut parts, body) = req.into_parts();
        let headers = &mut parts.headers;
        remove_hop_by_hop(headers);
        if let Some(proto) = upgrade_proto.filter(|_| upgrade) {
            headers.insert(header::UPGRADE, proto);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let client_ip =
            HeaderValue::from_str(&conn.peer.ip().to_string()).map_err(|_| ProxyError::BadRequest("client address"))?;
        headers.insert(X_FORWARDED_FOR, client_ip.clone());
        headers.insert(X_REAL_IP, client_ip);
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
        headers.insert(X_FORWARDED_PORT, HeaderValue::from(conn.local_port));
        headers.insert(X_REQUEST_ID, request_id.clone());
        let host_value = HeaderValue::from_str(host).map_err(|_| ProxyError::BadRequest("invalid host"))?;
        headers.insert(X_FORWARDED_HOST, host_value.clone());

        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        match route.backend.protocol {
            UpstreamProtocol::Http1 | UpstreamProtocol::Https => {
                parts.version = Version::HTTP_11;
                // HTTP/2 clients send the host as :authority; HTTP/1.1 needs it in Host.
                if !headers.contains_key(header::HOST) {
                    headers.insert(header::HOST, host_value);
                }
                parts.uri = Uri::try_from(path_and_query).map_err(|_| ProxyError::BadRequest("invalid path"))?;
            }
            UpstreamProtocol::H2c => {
                parts.version = Version::HTTP_2;
                headers.remove(header::HOST);
                let authority = if host.is_empty() { "localhost" } else { host };
                parts.uri = Uri::builder()
                    .scheme("http")
                    .authority(authority)
                    .path_and_query(path_and_query)
                    .build()
                    .map_err(|_| ProxyError::BadRequest("invalid host or path"))?;
            }
        }
        let body = RequestBody::new(body, route.policy.max_body_size);
        Ok((Request::from_parts(parts, body), on_upgrade))
    }

    /// Phase 3: send to an endpoint. A connection that fails before the request left is
    /// retried once on another endpoint: nothing reached the first one, so this is safe
    /// for every method, idempotent or not.
    async fn send_upstream(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        route: &Route,
        upgrade: bool,
        log: &mut RequestLog,
    ) -> Result<(Response<Incoming>, Option<crate::upstream::PooledConn>), ProxyError> {
        let backend = &route.backend;
        let mut skip = None;
        let mut connect_failures = 0;
        loop {
            let Some(addr) = backend.pick(skip).map(|e| e.addr) else {
                return Err(ProxyError::NoEndpoint(backend.name.clone()));
            };
            log.upstream = Some(addr);
            let (mut conn, reused) = match self
                .pool
                .get(addr, backend.protocol, backend.tls.as_deref(), upgrade)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    connect_failures += 1;
                    tracing::warn!(backend = %backend.name, endpoint = %addr, error = %e, "upstream connect failed");
                    if connect_failures >= 2 || backend.endpoints.len() < 2 {
                        return Err(e.into());
                    }
                    skip = Some(addr);
                    continue;
                }
            };
            let sent = tokio::time::timeout(self.cfg.upstream_response_timeout, conn.send(req)).await;
            match sent {
                Err(_) => return Err(ProxyError::UpstreamTimeout(self.cfg.upstream_response_timeout)),
                Ok(Ok(resp)) => {
                    let pooled = match conn {
                        UpstreamConn::H1(tx) if !upgrade => {
                            Some(self.pool.pooled(addr, backend.protocol == UpstreamProtocol::Https, tx))
                        }
                        _ => None,
                    };
                    return Ok((resp, pooled));
                }
                // A pooled connection the endpoint closed as we took it: the request never
                // left, so it goes again on a fresh connection without counting as a retry.
                Ok(Err(Ok(unsent))) if reused => {
                    req = unsent;
                    continue;
                }
                Ok(Err(Ok(_))) => return Err(ProxyError::UpstreamClosed(addr)),
                Ok(Err(Err(e))) => {
                    if let Some(limit) = find_source::<BodyTooLarge>(&e).map(|b| b.limit) {
                        return Err(ProxyError::BodyTooLarge(limit));
                    }
                    return Err(ProxyError::Upstream(e));
                }
            }
        }
    }

    /// Phase 4: the endpoint's response as the client should see it.
    fn upstream_response(
        &self,
        resp: Response<Incoming>,
        pooled: Option<crate::upstream::PooledConn>,
        on_client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<ResponseBody> {
        let mut resp = resp;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = on_client_upgrade
        {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client, upstream));
            let mut switched = Response::new(ResponseBody::empty());
            *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *switched.headers_mut() = std::mem::take(resp.headers_mut());
            return switched;
        }
        let (mut parts, body) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, ResponseBody::upstream(body, pooled))
    }
}

/// Copies bytes both ways between an upgraded client and endpoint until either closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let gauge = &Metrics::get().upgraded_connections;
    gauge.inc();
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
    gauge.dec();
}

fn find_source<'a, E: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    if let Some(named) = headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        for name in named.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes())
                && name != header::TE
            {
                headers.remove(name);
            }
        }
    }
    // gRPC needs `te: trailers` end to end; every other TE value is per hop.
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for h in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(h);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

fn request_host<B>(req: &Request<B>) -> Option<String> {
    req.uri().authority().map(|a| a.as_str().to_owned()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn request_size<B>(req: &Request<B>) -> u64 {
    let head: usize = req.uri().to_string().len()
        + req.method().as_str().len()
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    head as u64 + content_length(req.headers()).unwrap_or(0)
}

/// Keeps a client's `X-Request-ID` when it is a sane token, else makes a new one: 32
/// hex digits from a random per-process key and a counter, unique without a lock.
fn take_or_make_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID)
        && !v.is_empty()
        && v.len() <= 128
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    static KEY: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (k0, k1) = *KEY.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let s = std::collections::hash_map::RandomState::new();
        let mut a = s.build_hasher();
        a.write_u64(1);
        let mut b = s.build_hasher();
        b.write_u64(2);
        (a.finish(), b.finish())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = (u128::from(mix(n ^ k0)) << 64) | u128::from(mix(n.wrapping_add(k1)) ^ k1);
    let text = format!("{id:032x}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// SplitMix64's finalizer: a bijection, so distinct counters give distinct IDs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// Phase 5: what is recorded when a response is done.
struct RequestLog {
    start: Instant,
    method: Method,
    host: String,
    uri: Uri,
    client: IpAddr,
    request_id: HeaderValue,
    status: StatusCode,
    route: Option<Arc<Route>>,
    upstream: Option<SocketAddr>,
    upstream_secs: Option<f64>,
    request_size: u64,
    access_log: bool,
}

impl OnComplete for RequestLog {
    fn complete(&mut self, bytes: u64) {
        let m = Metrics::get();
        let elapsed = self.start.elapsed().as_secs_f64();
        let meta = self.route.as_ref().map(|r| &r.meta);
        let empty = String::new();
        let label = |f: fn(&crate::table::RouteMeta) -> &String| meta.map_or(&empty, f).as_str();
        let labels = [
            label(|m| &m.namespace),
            label(|m| &m.ingress),
            label(|m| &m.service),
            label(|m| &m.host),
            label(|m| &m.path),
            self.method.as_str(),
            self.status.as_str(),
        ];
        m.requests.with_label_values(&labels).inc();
        m.request_duration.with_label_values(&labels).observe(elapsed);
        m.request_size
            .with_label_values(&labels)
            .observe(self.request_size as f64);
        m.response_size.with_label_values(&labels).observe(bytes as f64);
        if let Some(up) = self.upstream_secs {
            m.upstream_response_duration.with_label_values(&labels).observe(up);
        }
        if self.access_log {
            tracing::info!(
                target: "access",
                client = %self.client,
                method = %self.method,
                host = %self.host,
                uri = %self.uri,
                status = self.status.as_u16(),
                bytes_sent = bytes,
                duration_ms = elapsed * 1000.0,
                upstream = self.upstream.map(|a| a.to_string()).unwrap_or_default(),
                upstream_ms = self.upstream_secs.map_or(-1.0, |s| s * 1000.0),
                request_id = self.request_id.to_str().unwrap_or(""),
                namespace = labels[0],
                ingress = labels[1],
                service = labels[2],
            );
        }
    }
}
