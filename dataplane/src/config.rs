//! Proxy limits and timeouts, with the defaults the README documents.

use std::time::Duration;

/// Limits and timeouts for the whole proxy. Per-route settings live in
/// [`crate::table::RoutePolicy`].
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Time to establish a TCP connection to an endpoint (nginx `proxy_connect_timeout`).
    /// Default 5 s: a pod that does not accept in 5 s is not coming back soon, and the
    /// request still has time for its one retry on another endpoint.
    pub connect_timeout: Duration,
    /// Time from sending the request to receiving the response headers, and then the
    /// longest wait between two reads of the response body or of an upgraded
    /// connection (a WebSocket) from the endpoint: nginx's `proxy_read_timeout`, default
    /// 60 s. Exceeded before the headers: 504; after: the connection is closed.
    pub upstream_response_timeout: Duration,
    /// Longest wait between two writes to an upgraded connection's endpoint (nginx
    /// `proxy_send_timeout`, 60 s). A request body's writes are bounded by the response
    /// timeout, which runs from the first byte sent.
    pub proxy_send_timeout: Duration,
    /// Longest wait between two reads of a request body (nginx `client_body_timeout`,
    /// 60 s). Exceeded: 408, or the connection closed when the request was already on
    /// its way.
    pub client_body_timeout: Duration,
    /// Read request bodies before contacting the endpoint (ingress-nginx's
    /// `proxy-request-buffering`, on by default); per Ingress by the annotation.
    pub request_buffering: bool,
    /// The most of one request body read ahead; the rest streams after it. 1 MiB: every
    /// body within the default body limit is read whole.
    pub client_body_buffer_size: u64,
    /// The most bytes of request bodies read ahead by the whole process at once; a body
    /// that finds the budget spent streams.
    pub request_buffer_budget: u64,
    /// Read endpoint responses ahead of slow clients, so the endpoint connection is
    /// free once a response is in (ingress-nginx's `proxy-buffering`, off by default);
    /// per Ingress by the annotation.
    pub response_buffering: bool,
    /// The most of one response read ahead; a larger one's reader then waits for the
    /// client, keeping its endpoint connection as without buffering. 1 MiB.
    pub response_buffer_size: u64,
    /// The most bytes of responses read ahead by the whole process at once; a response
    /// that finds the budget spent is read one frame at a time.
    pub response_buffer_budget: u64,
    /// Response bytes one HTTP/2 stream may queue for a client beyond what has been
    /// written to its socket (h2's send buffer; its default, 400 KiB, let a client that
    /// stops reading make every open stream hold that much).
    pub h2_send_buffer: usize,
    /// Longest wait between two writes to a client (nginx `send_timeout`, 60 s): a
    /// client that stops reading its response is disconnected.
    pub send_timeout: Duration,
    /// How long a client may take to send a request's headers once it has begun one
    /// (nginx `client_header_timeout`, 60 s), and to send its first bytes on a new
    /// connection.
    pub client_header_timeout: Duration,
    /// How long an idle keep-alive connection is kept open waiting for its next
    /// request (nginx `keepalive_timeout`, ingress-nginx's `keep-alive`: 75 s). Zero:
    /// every connection closes after its first response.
    pub keepalive_timeout: Duration,
    /// Requests served on one client connection before it closes: HTTP/1.1 answers the
    /// last with `Connection: close`, HTTP/2 sends GOAWAY (nginx `keepalive_requests`,
    /// ingress-nginx's `keep-alive-requests`). 0, the default: no limit, as before the
    /// setting existed; clients that open one connection and keep it are not cut off.
    pub keepalive_requests: u32,
    /// Largest request head (request line and headers) accepted; larger gets 431.
    /// 16 KiB holds nginx's default of four 8 KiB header buffers' worth of real headers.
    pub max_header_size: usize,
    /// Idle upstream connections kept per endpoint and protocol.
    pub pool_max_idle_per_endpoint: usize,
    /// How long an idle upstream connection is kept (below the 60-120 s most servers use,
    /// so the proxy closes first and never reuses a connection the backend just closed).
    pub pool_idle_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests before closing what is left.
    pub drain_timeout: Duration,
    /// One access-log line per request.
    pub access_log: bool,
    /// How access-log lines are written (JSON unless `--log-format text`).
    pub log_format: crate::access_log::LogFormat,
    /// Port named in HTTP-to-HTTPS redirects: the one clients reach HTTPS on (443 behind
    /// a Service mapping 443 to the container's 8443), omitted from the URL when 443.
    pub https_redirect_port: u16,
    /// Serving threads, each with an event loop of its own (nginx's worker processes).
    pub workers: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            proxy_send_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            request_buffering: true,
            client_body_buffer_size: 1 << 20,
            request_buffer_budget: 256 << 20,
            response_buffering: false,
            response_buffer_size: 1 << 20,
            response_buffer_budget: 256 << 20,
            h2_send_buffer: 64 * 1024,
            client_header_timeout: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(75),
            keepalive_requests: 0,
            max_header_size: 16 * 1024,
            pool_max_idle_per_endpoint: 256,
            pool_idle_timeout: Duration::from_secs(55),
            drain_timeout: Duration::from_secs(30),
            access_log: true,
            log_format: crate::access_log::LogFormat::Json,
            https_redirect_port: 443,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}
