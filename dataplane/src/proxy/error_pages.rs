//! The error-page step of the response phase (ingress-nginx's `custom-http-errors`):
//! an answer whose status the route lists is replaced by the error backend's answer to
//! the request [`ErrorPages::request`] builds, sent through the shared upstream pool to
//! one of the backend's endpoints. When the error backend cannot answer, the original
//! answer stands.

use http::{HeaderValue, Response, StatusCode};

use super::{Proxy, ProxyError, RequestLog, Sent};
use crate::body::RequestBody;
use crate::codec::Extra;
use crate::table::{ErrorOriginal, ErrorPages};
use crate::upstream::{Failure, UpstreamBody};

impl Proxy {
    /// A route's `answer`, or, when its status is one the route's pages list, the
    /// error backend's answer in its place (the original when that one fails).
    pub(super) async fn with_error_page(
        &self,
        pages: &ErrorPages,
        accept: Option<&HeaderValue>,
        answer: Result<Sent, ProxyError>,
        log: &RequestLog,
    ) -> Result<Sent, ProxyError> {
        let status = match &answer {
            Ok((resp, _)) => resp.status(),
            Err(e) => e.status(),
        };
        if !pages.intercepts(status) {
            return answer;
        }
        let original = ErrorOriginal {
            host: &log.host,
            uri: &log.uri,
            accept,
            request_id: &log.request_id,
        };
        match self.error_page(pages, status, &original).await {
            Some(page) => Ok((page, None)),
            None => answer,
        }
    }

    /// The error backend's answer for an answer with `status`; `None` when it has no
    /// ready endpoint or does not answer in time.
    pub(super) async fn error_page(
        &self,
        pages: &ErrorPages,
        status: StatusCode,
        original: &ErrorOriginal<'_>,
    ) -> Option<Response<UpstreamBody>> {
        let backend = &pages.backend;
        let endpoint = crate::balance::round_robin(backend, &[])?;
        let timeout = self.cfg.upstream_response_timeout;
        let (parts, ()) = pages.request(status, original).into_parts();
        let mut req = http::Request::from_parts(parts, RequestBody::Empty);
        // A pooled connection the backend closed meanwhile hands the request back
        // unsent: once more on a fresh one.
        for fresh in [false, true] {
            let conn = match self
                .pool
                .get(endpoint.addr, backend.protocol, backend.tls.as_deref(), fresh, None)
                .await
            {
                Ok((conn, _)) => conn,
                Err(e) => {
                    tracing::warn!(backend = %backend.name, endpoint = %endpoint.addr, error = %e, "error backend connect failed");
                    return None;
                }
            };
            match tokio::time::timeout(timeout, conn.send(req, Extra::default(), None)).await {
                Ok(Ok(resp)) => return Some(resp),
                Ok(Err(
                    Failure::Unsent(back)
                    | Failure::Failed {
                        request: Some(back), ..
                    },
                )) if !fresh => req = back,
                Ok(Err(_)) | Err(_) => {
                    tracing::warn!(backend = %backend.name, endpoint = %endpoint.addr, "error backend did not answer");
                    return None;
                }
            }
        }
        None
    }
}
