//! One request's life, in Pingora's named phases:
//!
//! 1. route: [`Proxy::route_request`] finds the route in the live table (404 when
//!    none); the route may answer by itself (the HTTPS redirect, a Route's redirect,
//!    413 for a declared body over the limit).
//! 2. upstream request: [`Proxy::upstream_request`] rewrites the request for the
//!    endpoint (forwarded fields, request ID, hop-by-hop fields removed, a Route's
//!    header changes and rewrite).
//! 3. send: [`Proxy::send_upstream`] picks a backend (a weighted split) and an endpoint
//!    ([`crate::balance`]), takes a pooled connection and sends; after each attempt
//!    [`retry::decide`] says whether it goes again, and where.
//! 4. upstream response: [`Proxy::upstream_response`] cleans the endpoint's response
//!    and streams it back (or tunnels an upgrade), read ahead of the client where the
//!    route buffers responses.
//! 5. logging: metrics and the access-log line, when the response body is done
//!    ([`RequestLog`]).
//!
//! Every failure is a [`ProxyError`], and [`ProxyError::status`] alone decides its
//! status code.

mod error_pages;
mod external_auth;
mod forwarded;
mod retry;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::body::{BodyEndHook, BodyTooLarge, ClientBodyTimeout, RequestBody};
use crate::codec::{Extra, Raw};
use crate::config::ProxyConfig;
use crate::filter::{Answer, AuthOutcome, FORWARDED, RequestHead, ResponseHead, UpstreamHead, X_REQUEST_ID};
use crate::idle::IdleIo;
use crate::metrics::Metrics;
use crate::response_body::{OnComplete, ResponseBody};
use crate::table::{ConnectionSettings, LiveTable, RequestView, Route, RoutingTable, UpstreamProtocol};
use crate::upstream::{Failure, Pool, SendError, UpstreamBody, UpstreamConn, UpstreamError};

/// What the proxy knows about the client connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// `X-Forwarded-For` / `X-Real-IP`, made once per connection rather than per request.
    client_ip: HeaderValue,
    /// `X-Forwarded-Port`: the listener's port, made once per listener.
    port: HeaderValue,
    /// The Gateway listener port the connection was accepted on: its requests are
    /// routed by that listener's table. `None` on the Ingress ports.
    pub listener: Option<u16>,
    /// The socket's peer when a PROXY protocol header named the client as `peer`.
    pub via: Option<std::net::IpAddr>,
    /// A PROXY protocol header named port 443 as the address the client connected to:
    /// the request is HTTPS whatever `X-Forwarded-Proto` says (ingress-nginx's
    /// `lua_ingress.lua`: a TLS-terminating load balancer in front).
    https_by_proxy_protocol: bool,
    /// `X-Forwarded-For` when it is more than `client_ip` (`compute-full-forwarded-for`).
    forwarded_for: Option<HeaderValue>,
    /// `X-Forwarded-Host` a trusted proxy sent (`use-forwarded-headers`).
    forwarded_host: Option<HeaderValue>,
    /// The client certificate the handshake got, checked, when the host it named asks
    /// for one (ingress-nginx's `auth-tls-*`).
    pub client_cert: Option<Arc<crate::tls::ClientCert>>,
}

impl ConnInfo {
    /// `port` comes from [`ConnInfo::port_value`], called once per listener.
    pub fn new(peer: SocketAddr, tls: bool, port: HeaderValue, listener: Option<u16>) -> ConnInfo {
        ConnInfo {
            peer,
            tls,
            client_ip: shared_value(ip_text(peer.ip())),
            port,
            listener,
            via: None,
            https_by_proxy_protocol: false,
            forwarded_for: None,
            forwarded_host: None,
            client_cert: None,
        }
    }

    /// The address the connection itself came from (a load balancer's, when the PROXY
    /// protocol named another client).
    pub fn socket_peer(&self) -> IpAddr {
        self.via.unwrap_or(self.peer.ip())
    }

    /// What a PROXY protocol header says of the connection: the client's address
    /// (`client`) and the address it connected to (`server`, on the load balancer).
    /// The client address is believed only when `believe_client` (the socket's peer is
    /// a trusted proxy: nginx's `real_ip_header proxy_protocol` with
    /// `set_real_ip_from`); the server port is, as nginx's `$proxy_protocol_server_port`,
    /// the request's `X-Forwarded-Port`, and 443 makes the request HTTPS.
    pub fn proxied(&mut self, client: SocketAddr, server: SocketAddr, believe_client: bool) {
        if believe_client {
            self.via = Some(self.peer.ip());
            self.peer = client;
            self.client_ip = shared_value(ip_text(client.ip()));
        }
        self.port = ConnInfo::port_value(server.port());
        if server.port() == 443 {
            self.tls = true;
            self.https_by_proxy_protocol = true;
        }
    }

    /// A listener's `X-Forwarded-Port` value.
    pub fn port_value(port: u16) -> HeaderValue {
        shared_value(port.to_string())
    }
}

/// An address as text. IPv4 is written digit by digit: through `Display` (the formatting
/// machinery, with padding support) it cost more than the rest of a new connection's
/// set-up in user space.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// A header value whose copies are reference counts (not a vector the first clone
/// would have to promote to shared storage).
fn shared_value(text: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from_owner(text.into_bytes()))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Where a failure came from, and so which status the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route for this host and path")]
    NoRoute,
    #[error("backend {0} has no ready endpoint")]
    NoEndpoint(String),
    #[error("backend {0} is a reference that does not resolve")]
    InvalidBackend(String),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    #[error("upstream connect failed: {0}")]
    Connect(#[from] SendError),
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("upstream failed: {0}")]
    Upstream(UpstreamError),
    #[error("upstream {0} closed the connection before the request was sent")]
    UpstreamClosed(SocketAddr),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("bad request: {0}")]
    BadHost(#[from] crate::codec::BadHost),
    #[error("client sent no request body bytes for {0:?}")]
    ClientBodyTimeout(std::time::Duration),
}

impl ProxyError {
    /// The one place a failure becomes a status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoint(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::InvalidBackend(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Connect(_) | ProxyError::Upstream(_) | ProxyError::UpstreamClosed(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) | ProxyError::BadHost(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
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
        if matches!(
            self,
            ProxyError::BodyTooLarge(_)
                | ProxyError::BadRequest(_)
                | ProxyError::BadHost(_)
                | ProxyError::ClientBodyTimeout(_)
        ) {
            // The rest of the body is unread; the connection cannot carry another request.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// The proxy: the live table, the shared pool and the limits. One per process.
pub struct Proxy {
    table: LiveTable,
    pool: Arc<Pool>,
    /// Balancing counters carried from each table to the next.
    balance: crate::balance::Registry,
    cfg: ProxyConfig,
    /// Client connection settings in force: the flags', or the live table's in their
    /// place. Read for every connection and request, so kept apart from the table.
    live: LiveSettings,
}

/// [`Proxy::live`].
struct LiveSettings {
    keepalive_ms: AtomicU64,
    keepalive_requests: AtomicU32,
    max_header_size: AtomicUsize,
}

impl LiveSettings {
    fn new(cfg: &ProxyConfig) -> LiveSettings {
        let live = LiveSettings {
            keepalive_ms: AtomicU64::new(0),
            keepalive_requests: AtomicU32::new(0),
            max_header_size: AtomicUsize::new(0),
        };
        live.set(cfg, &ConnectionSettings::default());
        live
    }

    fn set(&self, cfg: &ProxyConfig, table: &ConnectionSettings) {
        let keepalive = table.keepalive_timeout.unwrap_or(cfg.keepalive_timeout);
        let ms = u64::try_from(keepalive.as_millis()).unwrap_or(u64::MAX);
        // No keep-alive: every connection's first response is its last.
        let requests = if ms == 0 {
            1
        } else {
            table.keepalive_requests.unwrap_or(cfg.keepalive_requests)
        };
        self.keepalive_ms.store(ms, Ordering::Relaxed);
        self.keepalive_requests.store(requests, Ordering::Relaxed);
        let head = table.max_header_size.unwrap_or(cfg.max_header_size);
        self.max_header_size.store(head, Ordering::Relaxed);
    }
}

impl Proxy {
    pub fn new(cfg: ProxyConfig) -> Arc<Proxy> {
        let pool = Pool::new(
            cfg.pool_max_idle_per_endpoint,
            cfg.pool_idle_timeout,
            cfg.connect_timeout,
        );
        Arc::new(Proxy {
            table: Arc::new(ArcSwap::from_pointee(RoutingTable::default())),
            pool,
            balance: crate::balance::Registry::new(),
            live: LiveSettings::new(&cfg),
            cfg,
        })
    }

    /// Swaps in a new table; requests in flight keep the one they started with.
    pub fn swap_table(&self, table: Arc<RoutingTable>) {
        self.balance.attach(&table);
        let m = Metrics::get();
        m.table_routes.set(table.route_count() as i64);
        m.table_generation.set(table.generation as i64);
        m.set_certificates(
            table
                .certificates()
                .map(|(host, cert)| (host, cert.source.as_str(), cert.not_after as f64)),
            table
                .default_certificate()
                .map(|cert| (cert.source.as_str(), cert.not_after as f64)),
        );
        let live = table
            .routes()
            .flat_map(|route| {
                let meta = &route.meta;
                let split = route.action.iter().filter_map(|a| a.backends.as_ref());
                let services = split
                    .flat_map(|w| w.backends())
                    .filter_map(|b| service_of(&b.name))
                    .chain(std::iter::once(meta.service.as_str()));
                services.map(|service| {
                    [
                        meta.namespace.as_str(),
                        meta.kind.as_str(),
                        meta.ingress.as_str(),
                        service,
                        meta.host.as_str(),
                        meta.path.as_str(),
                    ]
                })
            })
            .collect();
        crate::metrics::drop_stale_series(&live);
        drop(live);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |t| t.as_secs_f64());
        if let Some(nginx) = crate::metrics::ingress_nginx::get() {
            let certs = table.certificates().map(|(host, cert)| (host, cert.not_after as f64));
            nginx.table_swapped(table.generation, now, certs);
        }
        let c = table.connections();
        self.live.set(&self.cfg, c);
        self.pool.set_limits(
            c.upstream_idle.unwrap_or(self.cfg.pool_max_idle_per_endpoint),
            c.upstream_idle_timeout.unwrap_or(self.cfg.pool_idle_timeout),
            c.upstream_requests,
        );
        self.table.store(table);
        m.table_reloads.inc();
        m.table_last_reload.set(now);
    }

    /// How long a connection on the Ingress listeners has to send its PROXY protocol
    /// header, when the live table asks for one (`use-proxy-protocol`); `None` without.
    /// A look at the table (no reference count taken) per connection.
    pub fn proxy_protocol(&self) -> Option<std::time::Duration> {
        self.table
            .load()
            .forwarded()
            .filter(|p| p.proxy_protocol)
            .map(|p| p.proxy_protocol_timeout)
    }

    /// Whether TLS connections on the Ingress HTTPS port are looked at before TLS takes
    /// them: some host is passed through (`ssl-passthrough`), or asks for client
    /// certificates (`auth-tls-*`). A look at the table (no reference count taken)
    /// per connection.
    pub fn inspects_tls(&self) -> (bool, bool) {
        let table = self.table.load();
        (table.has_passthrough(), table.has_client_auth())
    }

    pub fn table(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// The handle to the table in service, for readers outside the request path (the
    /// listeners' certificate resolver).
    pub fn live_table(&self) -> LiveTable {
        self.table.clone()
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// The Ingress HTTPS port's versions and suites, when the live table narrows them.
    pub fn tls_policy(&self) -> Option<Arc<crate::tls::TlsPolicy>> {
        self.table.load().tls_policy().cloned()
    }

    /// How long an idle client connection waits for its next request (`keep-alive`).
    pub fn keepalive_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.live.keepalive_ms.load(Ordering::Relaxed))
    }

    /// Requests served on one client connection (`keep-alive-requests`; 1 without
    /// keep-alive); 0: no limit.
    pub fn keepalive_requests(&self) -> u32 {
        self.live.keepalive_requests.load(Ordering::Relaxed)
    }

    /// The largest request head accepted (`large-client-header-buffers`).
    pub fn max_header_size(&self) -> usize {
        self.live.max_header_size.load(Ordering::Relaxed)
    }

    /// Serves one request from start to response headers; the body streams after.
    ///
    /// `raw_head` says the response goes to a writer that sends an endpoint's header
    /// lines on as they came ([`ResponseBody::raw_head`]): Portico's own HTTP/1.1
    /// writer, not hyper's. Then an HTTP/1.1 endpoint's header lines pass through
    /// without a header map, unless they hold a field the route's filters may change.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Option<Incoming>>,
        conn: Arc<ConnInfo>,
        raw_head: bool,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        let method = req.method().clone();
        let client_forwarded = client_forwarded(req.headers());
        let request_id = take_or_make_request_id(req.headers(), client_forwarded);
        let host = request_host(&req);
        let (client, tls) = (conn.peer.ip(), conn.tls);
        let mut log = RequestLog {
            start,
            method,
            host,
            uri: req.uri().clone(),
            client,
            tls,
            request_id,
            status: StatusCode::OK,
            route: None,
            upstream: None,
            upstream_secs: None,
            upstream_sent: None,
            upstream_connect: None,
            request_size: request_size(&req),
            access: self.cfg.access_log.then(|| {
                Box::new(AccessFields {
                    format: self.cfg.log_format,
                    client: conn.client_ip.clone(),
                    version: req.version(),
                    user_agent: req.headers().get(header::USER_AGENT).cloned(),
                    referer: req.headers().get(header::REFERER).cloned(),
                    upstream_status: None,
                })
            }),
            in_flight: None,
            conn_slot: None,
            split_backend: None,
            origin: None,
        };
        let mut resp = match self.proxy(req, &conn, client_forwarded, raw_head, &mut log).await {
            Ok(resp) => resp,
            Err(e) => {
                if !matches!(e, ProxyError::NoRoute) {
                    tracing::debug!(error = %e, request_id = log.request_id.to_str().unwrap_or(""), "request failed");
                }
                e.response()
            }
        };
        // The response phase, for every answer: the endpoint's, a redirect or an error.
        if let Some(route) = &log.route {
            let status = resp.status();
            route.filters.response(&mut ResponseHead {
                status,
                headers: resp.headers_mut(),
                tls: log.tls,
                from_upstream: log.upstream_secs.is_some(),
                origin: log.origin.as_ref(),
            });
        }
        log.status = resp.status();
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, body.on_complete(Box::new(log)))
    }

    async fn proxy(
        self: &Arc<Self>,
        mut req: Request<Option<Incoming>>,
        conn: &ConnInfo,
        client_forwarded: bool,
        raw_head: bool,
        log: &mut RequestLog,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        if let Err(e) = crate::codec::check_host(req.version(), req.uri(), req.headers()) {
            crate::body::linger(req.into_body());
            return Err(e.into());
        }
        let table = self.table.load();
        // Only a table with a forwarded policy pays for reading what the client says.
        let view;
        let conn = match table
            .forwarded()
            .and_then(|p| forwarded::client_view(p, conn, req.headers()))
        {
            Some(v) => {
                view = v;
                log.client = view.peer.ip();
                log.tls = view.tls;
                if let Some(access) = &mut log.access {
                    access.client = view.client_ip.clone();
                }
                &view
            }
            None => conn,
        };
        let routing = match conn.listener {
            None => &**table,
            // A Gateway listener's connection is routed by that listener's table alone;
            // a port the table no longer has (closing after a swap) routes nothing.
            Some(port) => table.listener(port).map(|l| &l.table).ok_or(ProxyError::NoRoute)?,
        };
        let route = Self::route_request(routing, log.host(), &req)?;
        if route.filters.keeps_origin() {
            log.origin = req.headers().get(header::ORIGIN).cloned();
        }
        log.route = Some(route.clone());
        drop(table);
        let head = RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            host: log.host(),
            tls: conn.tls,
            client: conn.peer.ip(),
            cfg: &self.cfg,
            client_cert: conn.client_cert.as_deref(),
        };
        match route.filters.request(&head) {
            None => {}
            Some(Answer::Status { status, headers }) => {
                let mut resp = Response::new(ResponseBody::empty());
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                return Ok(resp);
            }
            Some(Answer::PayloadTooLarge(limit)) => {
                crate::body::linger(req.into_body());
                return Err(ProxyError::BodyTooLarge(limit));
            }
        }
        // ingress-nginx's limit-connections: counted until the response is done.
        let mut conn_slot = None;
        if let Some(limit) = route.action.as_ref().and_then(|a| a.conn_limit.as_deref()) {
            match limit.acquire(head.client) {
                Ok(slot) => conn_slot = slot,
                Err(status) => {
                    crate::body::linger(req.into_body());
                    let mut resp = Response::new(ResponseBody::empty());
                    *resp.status_mut() = status;
                    return Ok(resp);
                }
            }
        }
        // ingress-nginx's auth-url: nginx's access phase, after the filters above.
        if let Some(auth) = route.action.as_ref().and_then(|a| a.external_auth.as_deref()) {
            let sub = auth.subrequest(&head, &log.request_id);
            let answer = self.ask_auth(auth, sub).await;
            match auth.outcome(answer.as_ref().map(|(s, h)| (*s, h)), &head) {
                AuthOutcome::Proceed(set) => {
                    for (name, value) in set {
                        match value {
                            Some(v) => req.headers_mut().insert(name, v),
                            None => req.headers_mut().remove(name),
                        };
                    }
                }
                AuthOutcome::Answer(status, headers) => {
                    crate::body::linger(req.into_body());
                    let mut resp = Response::new(ResponseBody::empty());
                    *resp.status_mut() = status;
                    *resp.headers_mut() = headers;
                    return Ok(resp);
                }
            }
        }
        log.conn_slot = conn_slot;
        let upgrade = is_upgrade(&req);
        // Only routes with error pages keep what the error backend is told.
        let pages = route
            .action
            .as_ref()
            .and_then(|a| a.error_pages.clone())
            .filter(|_| !upgrade);
        let accept = pages.as_ref().and_then(|_| req.headers().get(header::ACCEPT).cloned());
        let (mut req, on_client_upgrade, forwarded) =
            self.upstream_request(req, &route, conn, &log.request_id, &log.host, upgrade, client_forwarded)?;
        if !upgrade && route.policy.request_buffering.unwrap_or(self.cfg.request_buffering) {
            let cap = route
                .policy
                .client_body_buffer_size
                .unwrap_or(self.cfg.client_body_buffer_size);
            req = self.buffer_request(req, cap).await?;
        }
        let sent = Instant::now();
        // Checked once per request; a route without it pays for nothing more.
        let read_ahead = (!upgrade && route.policy.response_buffering.unwrap_or(self.cfg.response_buffering))
            .then_some(crate::response_body::ReadAheadLimits {
                per_response: self.cfg.response_buffer_size,
                budget: self.cfg.response_buffer_budget,
            });
        // Lines that pass through unchanged must need no change here (a head with a
        // field the route's filters may change goes to a map), and go with the body,
        // which a read-ahead hands to a task of its own.
        let raw = route
            .filters
            .response_names()
            .filter(|_| raw_head && read_ahead.is_none());
        let sending = self.send_upstream(req, &route, upgrade, forwarded.as_ref(), raw, log);
        let (resp, cookie) = match pages {
            // A route without error pages takes its answer as it comes: no copy of it.
            None => sending.await?,
            // On the heap: the error page's connect and send would otherwise size every
            // request's future.
            Some(pages) => {
                let answer = sending.await;
                Box::pin(self.with_error_page(&pages, accept.as_ref(), answer, log)).await?
            }
        };
        log.upstream_secs = Some(sent.elapsed().as_secs_f64());
        log.upstream_sent = Some(sent);
        let mut resp = self.upstream_response(resp, on_client_upgrade, &route, read_ahead);
        if let Some(cookie) = cookie {
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(resp)
    }

    /// Phase 1 for a whole request: a Route's method, header and query matches too.
    pub fn route_request<B>(table: &RoutingTable, host: &str, req: &Request<B>) -> Result<Arc<Route>, ProxyError> {
        let view = RequestView {
            method: req.method(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
        };
        table.route(host, &view).cloned().ok_or(ProxyError::NoRoute)
    }

    /// Phase 2: the request as the endpoint should see it.
    ///
    /// The [`FORWARDED`] fields go into the request's map when a client sent its own
    /// copies (which they replace) or a Route filter may change them; otherwise their
    /// values come back apart, to be written straight into the request head.
    #[allow(clippy::too_many_arguments)]
    fn upstream_request(
        &self,
        mut req: Request<Option<Incoming>>,
        route: &Route,
        conn: &ConnInfo,
        request_id: &HeaderValue,
        host_value: &HeaderValue,
        upgrade: bool,
        client_forwarded: bool,
    ) -> Result<UpstreamRequest, ProxyError> {
        let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let upgrade_proto = req.headers().get(header::UPGRADE).cloned();
        let (mut parts, body) = req.into_parts();
        let headers = &mut parts.headers;
        remove_hop_by_hop(headers);
        if let Some(proto) = upgrade_proto.filter(|_| upgrade) {
            headers.insert(header::UPGRADE, proto);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        let ConnInfo {
            tls,
            client_ip,
            port,
            forwarded_for,
            forwarded_host,
            ..
        } = conn;
        // The client's own Host value when the host came from it: a shared slice of the
        // request, so no copy.
        let mut host = host_value.to_str().unwrap_or("");
        let mut host_value = host_value.clone();
        let mut forwarded = Some([
            forwarded_for.as_ref().unwrap_or(client_ip).clone(),
            client_ip.clone(),
            HeaderValue::from_static(if *tls { "https" } else { "http" }),
            port.clone(),
            request_id.clone(),
            forwarded_host.as_ref().unwrap_or(&host_value).clone(),
        ]);
        if client_forwarded || route.filters.changes_forwarded() {
            // Room for the headers added, made once instead of growing the map twice.
            headers.reserve(FORWARDED.len() + 2);
            for (name, value) in FORWARDED.iter().zip(forwarded.take().into_iter().flatten()) {
                headers.insert(name.clone(), value);
            }
        }

        // The route's upstream-request filters: header changes, then the URL rewrite.
        let mut head = UpstreamHead {
            headers,
            uri: &parts.uri,
            host: None,
            path_and_query: None,
            tls: *tls,
            client_cert: conn.client_cert.as_deref(),
        };
        route.filters.upstream_request(&mut head);
        let UpstreamHead {
            host: new_host,
            path_and_query: rewritten_path,
            ..
        } = head;
        let rewritten_host;
        if let Some(name) = new_host {
            rewritten_host = name.to_str().unwrap_or(host).to_owned();
            host_value = name;
            host = &rewritten_host;
        }
        let path_and_query = match &rewritten_path {
            Some(p) => p.as_str(),
            None => parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        };
        match route.backend.protocol {
            UpstreamProtocol::Http1 | UpstreamProtocol::Https => {
                parts.version = Version::HTTP_11;
                // HTTP/2 clients send the host as :authority; HTTP/1.1 needs it in Host.
                if !headers.contains_key(header::HOST) {
                    headers.insert(header::HOST, host_value);
                }
                // An HTTP/1.1 client's request target is already in origin form: keep it
                // (and its shared bytes) unless a rewrite or an absolute form changes it.
                let origin_form = rewritten_path.is_none()
                    && parts.uri.scheme().is_none()
                    && parts.uri.authority().is_none()
                    && parts.uri.path_and_query().is_some();
                if !origin_form {
                    // A rewritten path's own bytes become the URI's, not a copy of them.
                    let uri = match rewritten_path {
                        Some(p) => Uri::try_from(p),
                        None => Uri::try_from(path_and_query),
                    };
                    parts.uri = uri.map_err(|_| ProxyError::BadRequest("invalid path"))?;
                }
            }
            protocol @ (UpstreamProtocol::H2c | UpstreamProtocol::H2Tls) => {
                parts.version = Version::HTTP_2;
                headers.remove(header::HOST);
                let authority = if host.is_empty() { "localhost" } else { host };
                parts.uri = Uri::builder()
                    .scheme(if protocol == UpstreamProtocol::H2Tls {
                        "https"
                    } else {
                        "http"
                    })
                    .authority(authority)
                    .path_and_query(path_and_query)
                    .build()
                    .map_err(|_| ProxyError::BadRequest("invalid host or path"))?;
            }
        }
        let on_end = parts.extensions.remove::<BodyEndHook>();
        let body = RequestBody::new(body, route.policy.max_body_size, on_end, self.cfg.client_body_timeout);
        Ok((Request::from_parts(parts, body), on_upgrade, forwarded))
    }

    /// Phase 3: send to an endpoint. A connection that fails before the request left is
    /// retried once on another endpoint: nothing reached the first one, so this is safe
    /// for every method, idempotent or not.
    ///
    /// A rule may ask for more (see [`crate::table::RetryPolicy`]): further attempts on other
    /// endpoints (or the same, when the policy reuses endpoints) after a reset, a
    /// timeout or a listed status code, each after the policy's backoff. Those replay
    /// the request, so they are made only for requests without a body, and for
    /// idempotent methods unless the rule opts in; a streamed body has gone to the
    /// first endpoint and is not kept. Returns the `Set-Cookie` of cookie affinity,
    /// when one is due.
    async fn send_upstream(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        route: &Route,
        upgrade: bool,
        forwarded: Option<&[HeaderValue; 6]>,
        raw: Raw<'_>,
        log: &mut RequestLog,
    ) -> Result<Sent, ProxyError> {
        let extra = forwarded.map_or_else(Extra::default, |values| Extra(&FORWARDED, values));
        let action = route.action.as_deref();
        // Plain round robin needs nothing of the request: a route with filters but no
        // balancing of its own pays no more for it than one without.
        let balance = action.map(|a| &a.balance).filter(|b| !b.is_plain_round_robin());
        let key = balance.map_or_else(Default::default, |b| {
            b.request_key(&crate::balance::RequestFacts {
                headers: req.headers(),
                target: &log.uri,
                path: req.uri().path(),
                method: &log.method,
                host: log.host.as_bytes(),
                client: log.client,
                tls: log.tls,
            })
        });
        let backend = match action.and_then(|a| a.backends.as_ref()) {
            Some(split) => {
                let (chosen, headers) = split.pick(key.affinity, key.hash);
                // Gateway API `backendRefs[].filters`: for this backend's requests alone.
                if let Some(m) = headers {
                    m.apply(req.headers_mut());
                }
                log.split_backend = Some(chosen.clone());
                chosen
            }
            None => &route.backend,
        };
        let retry = action.and_then(|a| a.retry.as_ref());
        let attempt_timeout = retry
            .and_then(|r| r.per_try_timeout)
            .or(action.and_then(|a| a.timeouts.backend_request))
            .or(route.policy.read_timeout)
            .unwrap_or(self.cfg.upstream_response_timeout);
        let deadline = action.and_then(|a| a.timeouts.request).map(|t| (log.start + t, t));
        let replay = retry
            .filter(|r| http_body::Body::is_end_stream(req.body()) && (r.non_idempotent || is_idempotent(req.method())))
            .map(|_| Replay::of(&req));
        let mut budget = retry::Budget {
            attempts: retry.map_or(0, |r| r.attempts),
            replayable: replay.is_some(),
            ..retry::Budget::default()
        };
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut connect_failures = 0;
        loop {
            let picked = match balance {
                Some(b) => b.pick(backend, key, &tried),
                None => crate::balance::round_robin(backend, &tried),
            };
            let Some(addr) = picked.map(|e| e.addr) else {
                if backend.is_invalid() {
                    return Err(ProxyError::InvalidBackend(backend.name.clone()));
                }
                return Err(ProxyError::NoEndpoint(backend.name.clone()));
            };
            log.upstream = Some(addr);
            // Counted only once something failed: the request path does not pay for it.
            let others_left = |tried: &[SocketAddr]| {
                backend
                    .endpoints
                    .iter()
                    .any(|e| e.addr != addr && !tried.contains(&e.addr))
            };
            // nginx's `$upstream_connect_time`, for the ingress-nginx metrics alone.
            let connecting = crate::metrics::ingress_nginx::get().map(|_| Instant::now());
            let (conn, reused) = match self
                .pool
                .get(
                    addr,
                    backend.protocol,
                    backend.tls.as_deref(),
                    upgrade,
                    route.policy.connect_timeout,
                )
                .await
            {
                Ok(c) => {
                    log.upstream_connect = connecting.map(|t| if c.1 { 0.0 } else { t.elapsed().as_secs_f64() });
                    c
                }
                Err(e) => {
                    connect_failures += 1;
                    tracing::warn!(backend = %backend.name, endpoint = %addr, error = %e, "upstream connect failed");
                    budget.others_left = others_left(&tried);
                    budget.time_left = time_left(deadline);
                    let outcome = retry::Outcome::ConnectFailed { nth: connect_failures };
                    let retry::Decision::Retry { spent, after } = retry::decide(retry, budget, outcome) else {
                        return Err(e.into());
                    };
                    spend(&mut budget, spent);
                    mark_tried(&mut tried, addr, budget.others_left);
                    back_off(after).await;
                    continue;
                }
            };
            let mut timeout = attempt_timeout;
            if let Some((at, _)) = deadline {
                timeout = timeout.min(at.saturating_duration_since(Instant::now()));
            }
            let in_flight = match balance.map(|b| &b.policy) {
                Some(policy) if policy.counts_in_flight() => crate::balance::InFlight::start(backend, addr),
                _ => None,
            };
            // An endpoint may close an idle keep-alive connection just as a request goes
            // out on it; the request then fails after it was written. A bodiless
            // idempotent request is safe to send once more, on another connection (as
            // nginx does for keep-alive connections). An HTTP/1.1 connection hands such
            // a request back; for HTTP/2 its head is kept to rebuild it.
            let h2 = matches!(conn, UpstreamConn::H2(_));
            let stale = (h2 && reused && !budget.stale_resent && replay.is_none())
                .then(|| {
                    (http_body::Body::is_end_stream(req.body()) && is_idempotent(req.method()))
                        .then(|| Replay::of(&req))
                })
                .flatten();
            let sent = match conn {
                // Portico's own client, awaited here: through `UpstreamConn::send`, each
                // async layer would keep a copy of the request in this future.
                UpstreamConn::H1(mut pooled) => {
                    match tokio::time::timeout(timeout, pooled.send(req, extra, raw)).await {
                        Ok(Ok(head)) => Ok(Ok(pooled.response(head))),
                        Ok(Err(failure)) => Ok(Err(failure)),
                        Err(elapsed) => Err(elapsed),
                    }
                }
                // hyper's, for HTTP/2 and upgrades: on the heap, so that its larger
                // future does not size this one.
                conn => tokio::time::timeout(timeout, Box::pin(conn.send(req, extra, raw))).await,
            };
            // What happened, the answer if nothing more is tried, and a copy of the
            // request that this attempt handed back, if any.
            let (outcome, answer, own): (_, Result<Sent, ProxyError>, _) = match sent {
                Err(_) => {
                    let overall = deadline.filter(|(at, _)| Instant::now() >= *at);
                    let error = ProxyError::UpstreamTimeout(overall.map_or(timeout, |(_, t)| t));
                    let outcome = retry::Outcome::TimedOut {
                        overall: overall.is_some(),
                    };
                    (outcome, Err(error), None)
                }
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    if let Some(access) = &mut log.access {
                        access.upstream_status = Some(status);
                    }
                    if !retry.is_some_and(|r| r.codes.contains(&status)) {
                        log.in_flight = in_flight;
                        let cookie = balance.and_then(|b| b.affinity_cookie(backend, addr, key));
                        return Ok((resp, cookie));
                    }
                    let cookie = balance.and_then(|b| b.affinity_cookie(backend, addr, key));
                    (retry::Outcome::Status(status), Ok((resp, cookie)), None)
                }
                Ok(Err(Failure::Unsent(unsent))) => (
                    retry::Outcome::Unsent { reused },
                    Err(ProxyError::UpstreamClosed(addr)),
                    Some(unsent),
                ),
                Ok(Err(Failure::Failed { error: e, request })) => {
                    if let Some(limit) = find_source::<BodyTooLarge>(&e).map(|b| b.limit) {
                        return Err(ProxyError::BodyTooLarge(limit));
                    }
                    if let Some(t) = find_source::<ClientBodyTimeout>(&e) {
                        return Err(ProxyError::ClientBodyTimeout(t.0));
                    }
                    let again = (reused && !budget.stale_resent)
                        .then(|| {
                            request
                                .filter(|r| is_idempotent(r.method()) || replay.is_some())
                                .or_else(|| stale.as_ref().or(replay.as_ref()).map(Replay::request))
                        })
                        .flatten();
                    let outcome = retry::Outcome::Broken {
                        reused,
                        resendable: again.is_some(),
                    };
                    (outcome, Err(ProxyError::Upstream(e)), again)
                }
            };
            budget.others_left = others_left(&tried);
            budget.time_left = time_left(deadline);
            let decision = retry::decide(retry, budget, outcome);
            let next = match decision {
                retry::Decision::Stop => None,
                _ => own.or_else(|| replay.as_ref().map(Replay::request)),
            };
            let Some(next) = next else {
                if answer.is_ok() {
                    log.in_flight = in_flight;
                }
                return answer;
            };
            if let retry::Decision::Resend { stale } = decision {
                tracing::debug!(backend = %backend.name, endpoint = %addr, ?outcome, "sending again on a fresh connection");
                budget.stale_resent |= stale;
            } else if let retry::Decision::Retry { spent, after } = decision {
                tracing::debug!(backend = %backend.name, endpoint = %addr, ?outcome, ?after, "retrying");
                spend(&mut budget, spent);
                mark_tried(&mut tried, addr, budget.others_left);
                // The answer given up on (a listed status's response holds its
                // connection) goes before the wait.
                drop(answer);
                back_off(after).await;
            }
            req = next;
        }
    }

    /// Between phases 2 and 3: the request body read ahead, so that the endpoint is
    /// contacted only once it is in (see [`RequestBody::buffer`]). A body that fails
    /// meanwhile is refused with nothing forwarded: too large 413, stalled 408,
    /// malformed framing (bad chunking) 400.
    async fn buffer_request(&self, req: Request<RequestBody>, cap: u64) -> Result<Request<RequestBody>, ProxyError> {
        let (parts, body) = req.into_parts();
        match body.buffer(cap, self.cfg.request_buffer_budget).await {
            Ok(body) => Ok(Request::from_parts(parts, body)),
            Err(e) => {
                let e: &(dyn std::error::Error + 'static) = &*e;
                Err(if let Some(b) = find_source::<BodyTooLarge>(e) {
                    ProxyError::BodyTooLarge(b.limit)
                } else if let Some(t) = find_source::<ClientBodyTimeout>(e) {
                    ProxyError::ClientBodyTimeout(t.0)
                } else {
                    ProxyError::BadRequest("malformed request body")
                })
            }
        }
    }

    /// Phase 4: the endpoint's response as the client should see it.
    fn upstream_response(
        &self,
        resp: Response<UpstreamBody>,
        on_client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        route: &Route,
        read_ahead: Option<crate::response_body::ReadAheadLimits>,
    ) -> Response<ResponseBody> {
        let read_timeout = route.policy.read_timeout.unwrap_or(self.cfg.upstream_response_timeout);
        let mut resp = resp;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = on_client_upgrade
        {
            let upstream = hyper::upgrade::on(&mut resp);
            let send_timeout = route.policy.send_timeout.unwrap_or(self.cfg.proxy_send_timeout);
            let timeouts = [read_timeout, send_timeout, self.cfg.send_timeout];
            tokio::spawn(tunnel(client, upstream, timeouts));
            let mut switched = Response::new(ResponseBody::empty());
            *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *switched.headers_mut() = std::mem::take(resp.headers_mut());
            return switched;
        }
        let (mut parts, body) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        let body = match read_ahead {
            None => ResponseBody::upstream(body, read_timeout),
            Some(limits) => ResponseBody::read_ahead(body, read_timeout, limits),
        };
        Response::from_parts(parts, body)
    }
}

/// What [`Proxy::upstream_request`] makes: the request, the client's side of an
/// upgrade, and the [`FORWARDED`] values when they are not in the request's map.
type UpstreamRequest = (
    Request<RequestBody>,
    Option<hyper::upgrade::OnUpgrade>,
    Option<[HeaderValue; 6]>,
);

/// What [`Proxy::send_upstream`] returns: the endpoint's response (its body holds a
/// pooled connection until it ends) and the affinity `Set-Cookie`, if one is due.
type Sent = (Response<UpstreamBody>, Option<HeaderValue>);

/// What it takes to send a bodiless request again.
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Replay {
    fn of(req: &Request<RequestBody>) -> Replay {
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
        }
    }

    fn request(&self) -> Request<RequestBody> {
        let mut req = Request::new(RequestBody::Empty);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Time until the request's deadline, if it has one.
fn time_left(deadline: Option<(Instant, Duration)>) -> Option<Duration> {
    deadline.map(|(at, _)| at.saturating_duration_since(Instant::now()))
}

/// Leaves `addr` out of the next picks; once no endpoint is left (a retry then goes
/// to one already tried: [`crate::table::RetryPolicy::reuse_endpoints`]), every
/// endpoint is a candidate again.
fn mark_tried(tried: &mut Vec<SocketAddr>, addr: SocketAddr, others_left: bool) {
    if others_left {
        tried.push(addr);
    } else {
        tried.clear();
    }
}

/// The rule's backoff before a retry (none: at once). The timer is on the heap: every
/// request's future would otherwise carry its room.
async fn back_off(after: Duration) {
    if !after.is_zero() {
        Box::pin(tokio::time::sleep(after)).await;
    }
}

/// Takes one attempt of the rule's retry policy, and counts it.
fn spend(budget: &mut retry::Budget, spent: Option<retry::Reason>) {
    if let Some(reason) = spent {
        budget.attempts = budget.attempts.saturating_sub(1);
        Metrics::get()
            .upstream_retries
            .with_label_values(&[reason.label()])
            .inc();
    }
}

/// RFC 9110 section 9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Copies bytes both ways between an upgraded client and endpoint until either closes.
///
/// Idle limits as nginx sets them on an upgraded connection: reads from the endpoint
/// `proxy_read_timeout` (so an idle WebSocket closes after it, as with ingress-nginx's
/// `proxy-read-timeout`), writes to it `proxy_send_timeout`, writes to the client
/// `send_timeout`.
/// `timeouts`: endpoint reads, endpoint writes, client writes.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    [read, send, client_send]: [std::time::Duration; 3],
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let gauge = &Metrics::get().upgraded_connections;
    gauge.inc();
    let mut client = IdleIo::new(hyper_util::rt::TokioIo::new(client), None, Some(client_send));
    let mut upstream = IdleIo::new(hyper_util::rt::TokioIo::new(upstream), Some(read), Some(send));
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

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether the client sent any [`FORWARDED`] field: one cheap pass, as almost all
/// names differ from those in length or first bytes.
fn client_forwarded(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        name.len() >= 9 && name.starts_with("x-") && FORWARDED.iter().any(|f| f.as_str() == name)
    })
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of these, or only `Connection: keep-alive` or `close`:
    // one pass over the fields tells, and nothing is looked up by name unless it is there.
    let mut present = [false; HOP_COUNT];
    let mut names_others = false;
    let mut te_trailers = false;
    for (name, value) in headers.iter() {
        let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) else {
            continue;
        };
        if i == TE_AT && !present[i] {
            // gRPC needs `te: trailers` end to end; every other TE value is per hop.
            te_trailers = value.as_bytes().eq_ignore_ascii_case(b"trailers");
        }
        // Headers the Connection header names are hop-by-hop too. Most name only
        // `close` or `keep-alive` (which go anyway); `te` is left to the rule above.
        names_others |=
            i == CONNECTION_AT && !is_close_or_keep_alive(value) && connection_names(value).next().is_some();
        present[i] = true;
    }
    if !present.contains(&true) {
        return;
    }
    if names_others {
        let values: Vec<HeaderValue> = headers.get_all(header::CONNECTION).iter().cloned().collect();
        for name in values.iter().flat_map(connection_names) {
            headers.remove(name);
        }
    }
    for (h, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(h);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Always removed in both directions.
const HOP_COUNT: usize = 9;
const CONNECTION_AT: usize = 0;
const TE_AT: usize = 1;
const HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
];

/// A `Connection` value that is only one of the two options nearly every message
/// carries, told without splitting it into a list.
fn is_close_or_keep_alive(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    v.eq_ignore_ascii_case(b"close") || v.eq_ignore_ascii_case(b"keep-alive")
}

/// The header names a `Connection` value lists, other than [`HOP_BY_HOP`] ones (`te`
/// among them, which has a rule of its own) and the `close` option.
fn connection_names(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .ok()
        .into_iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|n| {
            !n.is_empty()
                && !n.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP.iter().any(|h| h.as_str().eq_ignore_ascii_case(n))
        })
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

/// The host a request names: an HTTP/2 request's `:authority`, else its `Host` (a
/// shared slice of the request, not a copy). Empty when neither is usable text.
fn request_host<B>(req: &Request<B>) -> HeaderValue {
    let host = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).filter(|h| h.to_str().is_ok()).cloned(),
    };
    host.unwrap_or_else(|| HeaderValue::from_static(""))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn request_size<B>(req: &Request<B>) -> u64 {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len());
    let head: usize = target
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
fn take_or_make_request_id(headers: &HeaderMap, client_forwarded: bool) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID).filter(|_| client_forwarded)
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
    let mut text = [0u8; 32];
    for (i, b) in text.iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((id >> (124 - 4 * i)) & 0xf) as usize];
    }
    // Shared from the start: the ID is cloned into the upstream request and the log.
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).unwrap_or_else(|_| HeaderValue::from_static("0"))
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
    host: HeaderValue,
    uri: Uri,
    client: IpAddr,
    /// The request came over TLS, or a trusted proxy in front says it did.
    tls: bool,
    request_id: HeaderValue,
    status: StatusCode,
    route: Option<Arc<Route>>,
    upstream: Option<SocketAddr>,
    upstream_secs: Option<f64>,
    /// When the request went upstream, for ingress-nginx's `response_duration_seconds`.
    upstream_sent: Option<Instant>,
    /// Connecting to the endpoint, for ingress-nginx's `connect_duration_seconds`; taken
    /// only when those metrics are on.
    upstream_connect: Option<f64>,
    request_size: u64,
    /// What only the access log needs, taken only when it is on.
    access: Option<Box<AccessFields>>,
    /// Counts the request against its endpoint (least request) until the response ends.
    in_flight: Option<crate::balance::InFlight>,
    /// The backend a weighted split chose, for the `service` label.
    split_backend: Option<Arc<crate::table::Backend>>,
    /// The request's `Origin`, kept for routes whose response filters read it (CORS).
    origin: Option<HeaderValue>,
    /// Counts the request against its client's `limit-connections` until the response
    /// ends.
    conn_slot: Option<crate::filter::ConnSlot>,
}

/// The access log's own fields.
struct AccessFields {
    format: crate::access_log::LogFormat,
    client: HeaderValue,
    version: Version,
    user_agent: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    upstream_status: Option<u16>,
}

impl RequestLog {
    fn host(&self) -> &str {
        self.host.to_str().unwrap_or("")
    }
}

/// `service` of a backend named `namespace/service:port`.
fn service_of(backend: &str) -> Option<&str> {
    let (_, rest) = backend.split_once('/')?;
    Some(rest.rsplit_once(':').map_or(rest, |(service, _)| service))
}

impl OnComplete for RequestLog {
    fn complete(&mut self, bytes: u64) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let meta = self.route.as_ref().map(|r| &r.meta);
        let empty = String::new();
        let label = |f: fn(&crate::table::RouteMeta) -> &String| meta.map_or(&empty, f).as_str();
        let labels = [
            label(|m| &m.namespace),
            meta.map_or("", |m| m.kind.as_str()),
            label(|m| &m.ingress),
            // A split route is labelled with the Service that got the request.
            self.split_backend
                .as_ref()
                .and_then(|b| service_of(&b.name))
                .unwrap_or(label(|m| &m.service)),
            label(|m| &m.host),
            label(|m| &m.path),
            crate::metrics::method_label(&self.method),
            self.status.as_str(),
        ];
        // Requests that matched no rule share one cache; a route's own holds its series.
        static NO_ROUTE: std::sync::LazyLock<crate::metrics::SeriesCache> = std::sync::LazyLock::new(Default::default);
        let series = self
            .route
            .as_ref()
            .map_or(&*NO_ROUTE, |r| &r.series)
            .get(&labels, label(|m| &m.service));
        series.requests.inc();
        series.duration.observe(elapsed);
        series.request_size.observe(self.request_size as f64);
        series.response_size.observe(bytes as f64);
        if let Some(up) = self.upstream_secs {
            series.upstream_duration.observe(up);
        }
        if let Some(nginx) = &series.ingress_nginx {
            nginx.record(&crate::metrics::ingress_nginx::Observation {
                duration: elapsed,
                upstream_header: self.upstream_secs,
                upstream_response: self.upstream_sent.map(|sent| sent.elapsed().as_secs_f64()),
                request_size: self.request_size,
                response_size: bytes,
                upstream_connect: self.upstream_connect,
            });
        }
        if let Some(access) = &self.access
            && self.route.as_ref().is_none_or(|r| r.policy.access_log)
        {
            crate::access_log::write(
                access.format,
                &crate::access_log::Entry {
                    client: access.client.as_bytes(),
                    method: self.method.as_str(),
                    host: self.host.as_bytes(),
                    uri: self.uri.path_and_query().map_or("/", |p| p.as_str()),
                    protocol: protocol(access.version),
                    status: self.status.as_u16(),
                    bytes_sent: bytes,
                    request_length: self.request_size,
                    duration_us: (elapsed * 1e6) as u64,
                    upstream: self.upstream,
                    upstream_status: access.upstream_status,
                    upstream_us: self.upstream_secs.map(|s| (s * 1e6) as u64),
                    request_id: self.request_id.as_bytes(),
                    user_agent: header_bytes(&access.user_agent),
                    referer: header_bytes(&access.referer),
                    namespace: labels[0],
                    kind: labels[1],
                    ingress: labels[2],
                    service: labels[3],
                },
            );
        }
    }
}

fn header_bytes(value: &Option<HeaderValue>) -> &[u8] {
    value.as_ref().map_or(b"", HeaderValue::as_bytes)
}

/// The protocol as nginx's `$server_protocol` writes it.
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/0.9",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hop-by-hop fields go, with those `Connection` names; end-to-end ones and
    /// `te: trailers` (gRPC) stay.
    #[test]
    fn hop_by_hop_fields_are_removed() {
        // The fields a message carries, and the names left after the removal.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: [Case; 4] = [
            (
                &[("connection", "keep-alive"), ("keep-alive", "timeout=5"), ("x-a", "1")],
                &["x-a"],
            ),
            (&[("connection", "Close"), ("x-a", "1")], &["x-a"]),
            (
                &[
                    ("connection", "close, X-Secret"),
                    ("x-secret", "s"),
                    ("x-a", "1"),
                    ("upgrade", "h2c"),
                ],
                &["x-a"],
            ),
            (
                &[("te", "trailers"), ("transfer-encoding", "chunked"), ("x-a", "1")],
                &["te", "x-a"],
            ),
        ];
        for (fields, kept) in cases {
            let mut headers = HeaderMap::new();
            for (name, value) in fields {
                headers.append(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(value).expect("value"),
                );
            }
            remove_hop_by_hop(&mut headers);
            let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
            left.sort_unstable();
            assert_eq!(left, kept, "{fields:?}");
        }
    }

    /// The client address sent in `X-Forwarded-For` and `X-Real-IP` reads as the
    /// standard library writes it, for every width of octet and for IPv6.
    #[test]
    fn client_address_text() {
        for octet in 0..=255u8 {
            for ip in [
                IpAddr::from([octet, 0, 9, 10]),
                IpAddr::from([99, octet, 100, 255]),
                IpAddr::from([1, 22, octet, 123]),
            ] {
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        for ip in ["::1", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1"] {
            let ip: IpAddr = ip.parse().expect("address");
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
