//! The external-auth step of the route phase: one HTTP/1.1 request to the auth URL
//! through the shared upstream pool (a keep-alive connection per auth endpoint, as for
//! any backend), its answer read within the proxy's response timeout. What the answer
//! means is [`ExternalAuth::outcome`]'s to say.
//!
//! The auth URL's host is resolved by the system resolver (`getaddrinfo`, on a blocking
//! thread) for every request, so a cluster DNS name follows its Service; an IP address
//! skips the lookup.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;

use super::Proxy;
use crate::body::RequestBody;
use crate::codec::Extra;
use crate::filter::ExternalAuth;
use crate::table::UpstreamProtocol;
use crate::upstream::{Failure, UpstreamConn};

/// Most bytes of an auth answer's body read (and thrown away) so that its connection
/// can be used again; a longer one closes it.
const MAX_DRAINED: usize = 64 * 1024;

impl Proxy {
    /// The auth service's status and headers for `sub`; `None` when it could not be
    /// asked or did not answer in time (the request then gets 500).
    pub(super) async fn ask_auth(&self, auth: &ExternalAuth, sub: Request<()>) -> Option<(StatusCode, HeaderMap)> {
        let addr = match auth.url.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, auth.url.port),
            Err(_) => match tokio::net::lookup_host((auth.url.host.as_str(), auth.url.port)).await {
                Ok(mut addrs) => addrs.next()?,
                Err(e) => {
                    tracing::warn!(host = %auth.url.host, error = %e, "auth URL host did not resolve");
                    return None;
                }
            },
        };
        let timeout = self.cfg.upstream_response_timeout;
        let (parts, ()) = sub.into_parts();
        // A pooled connection the service closed meanwhile hands the request back
        // unsent: once more on a fresh one.
        let mut req = Request::from_parts(parts, RequestBody::Empty);
        for fresh in [false, true] {
            let conn: UpstreamConn = match self.pool.get(addr, UpstreamProtocol::Http1, None, fresh, None).await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    tracing::warn!(endpoint = %addr, error = %e, "auth service connect failed");
                    return None;
                }
            };
            match tokio::time::timeout(timeout, conn.send(req, Extra::default(), None)).await {
                Ok(Ok(resp)) => {
                    let (head, body) = resp.into_parts();
                    let drain = http_body_util::Limited::new(body, MAX_DRAINED).collect();
                    let _ = tokio::time::timeout(timeout, drain).await;
                    return Some((head.status, head.headers));
                }
                Ok(Err(
                    Failure::Unsent(back)
                    | Failure::Failed {
                        request: Some(back), ..
                    },
                )) if !fresh => req = back,
                Ok(Err(_)) => {
                    tracing::warn!(endpoint = %addr, "auth service failed to answer");
                    return None;
                }
                Err(_) => {
                    tracing::warn!(endpoint = %addr, ?timeout, "auth service did not answer in time");
                    return None;
                }
            }
        }
        None
    }
}
