//! ingress-nginx's `custom-http-errors` with `default-backend`: an answer whose status
//! is in the list is replaced by what the error backend answers to a `GET /` that
//! describes it (nginx's `proxy_intercept_errors` and `error_page CODE = @custom_…`, its
//! template's `CUSTOM_ERRORS` location). The client gets the error backend's status,
//! headers and body. The request to it is built here; the proxy sends it through the
//! shared upstream pool (`proxy/error_pages.rs`).

use std::sync::Arc;

use http::header::{ACCEPT, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};

use super::Backend;

/// The error codes a route hands to its error backend, and what the backend is told.
#[derive(Debug)]
pub struct ErrorPages {
    /// Sorted; each from 400 to 599, as ingress-nginx accepts.
    codes: Vec<u16>,
    pub backend: Arc<Backend>,
    /// `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`, `X-Service-Port`.
    namespace: HeaderValue,
    ingress: HeaderValue,
    service: HeaderValue,
    port: HeaderValue,
}

/// A code outside 300 to 599, or a name that cannot be a header value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidErrorPages(String);

/// What the error-backend request describes of the original request.
#[derive(Debug)]
pub struct Original<'a> {
    pub host: &'a HeaderValue,
    pub uri: &'a Uri,
    pub accept: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
}

impl ErrorPages {
    /// `codes` of the Ingress `namespace/ingress` whose rule names `service` on `port`,
    /// handed to `backend`.
    pub fn new(
        codes: &[u16],
        backend: Arc<Backend>,
        namespace: &str,
        ingress: &str,
        service: &str,
        port: &str,
    ) -> Result<ErrorPages, InvalidErrorPages> {
        if let Some(c) = codes.iter().find(|c| !(400..=599).contains(*c)) {
            return Err(InvalidErrorPages(format!("{c} is not an error status from 400 to 599")));
        }
        let value = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| InvalidErrorPages(format!("{v:?} cannot be sent in a header")))
        };
        let mut codes = codes.to_vec();
        codes.sort_unstable();
        codes.dedup();
        Ok(ErrorPages {
            codes,
            backend,
            namespace: value(namespace)?,
            ingress: value(ingress)?,
            service: value(service)?,
            port: value(port)?,
        })
    }

    /// Whether an answer with `status` goes to the error backend.
    pub fn intercepts(&self, status: StatusCode) -> bool {
        self.codes.binary_search(&status.as_u16()).is_ok()
    }

    /// The codes, for `explain`.
    pub fn codes(&self) -> &[u16] {
        &self.codes
    }

    /// The request the error backend gets for an answer with `status`: `GET /` with the
    /// headers of ingress-nginx's `CUSTOM_ERRORS` location.
    pub fn request(&self, status: StatusCode, original: &Original<'_>) -> Request<()> {
        let mut headers = HeaderMap::with_capacity(10);
        headers.insert(HOST, original.host.clone());
        headers.insert(HeaderName::from_static("x-code"), HeaderValue::from(status.as_u16()));
        if let Some(accept) = original.accept {
            headers.insert(HeaderName::from_static("x-format"), accept.clone());
            headers.insert(ACCEPT, accept.clone());
        }
        let uri = original.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Ok(v) = HeaderValue::from_str(uri) {
            headers.insert(HeaderName::from_static("x-original-uri"), v);
        }
        headers.insert(HeaderName::from_static("x-namespace"), self.namespace.clone());
        headers.insert(HeaderName::from_static("x-ingress-name"), self.ingress.clone());
        headers.insert(HeaderName::from_static("x-service-name"), self.service.clone());
        headers.insert(HeaderName::from_static("x-service-port"), self.port.clone());
        headers.insert(HeaderName::from_static("x-request-id"), original.request_id.clone());
        let mut req = Request::new(());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = Uri::from_static("/");
        *req.headers_mut() = headers;
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::UpstreamProtocol;

    fn pages(codes: &[u16]) -> Result<ErrorPages, InvalidErrorPages> {
        let backend = Arc::new(Backend::new("default/errors:80", UpstreamProtocol::Http1, Vec::new()));
        ErrorPages::new(codes, backend, "default", "shop", "web", "8080")
    }

    /// Only the listed codes are intercepted; codes outside 400 to 599 are refused, as ingress-nginx's
    /// `custom-http-errors` parser does.
    #[test]
    fn intercepts_the_listed_codes() {
        let p = pages(&[503, 404, 404]).unwrap();
        assert_eq!(p.codes(), [404, 503]);
        assert!(p.intercepts(StatusCode::NOT_FOUND) && p.intercepts(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!p.intercepts(StatusCode::OK) && !p.intercepts(StatusCode::BAD_GATEWAY));
        assert!(pages(&[302]).is_err() && pages(&[600]).is_err());
    }

    /// The error backend's request: `GET /` with X-Code, X-Format (the client's Accept),
    /// X-Original-URI, the Ingress's names and X-Request-ID, as the template sets them.
    #[test]
    fn the_request_describes_the_original() {
        let p = pages(&[404]).unwrap();
        let (host, uri) = (HeaderValue::from_static("shop.example"), Uri::from_static("/a/b?c=d"));
        let (accept, id) = (
            HeaderValue::from_static("application/json"),
            HeaderValue::from_static("r1"),
        );
        let original = Original {
            host: &host,
            uri: &uri,
            accept: Some(&accept),
            request_id: &id,
        };
        let req = p.request(StatusCode::NOT_FOUND, &original);
        assert_eq!((req.method(), req.uri().path()), (&Method::GET, "/"));
        let h = req.headers();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        assert_eq!(get("host"), Some("shop.example"));
        assert_eq!(get("x-code"), Some("404"));
        assert_eq!(get("x-format"), Some("application/json"));
        assert_eq!(get("x-original-uri"), Some("/a/b?c=d"));
        assert_eq!(get("x-namespace"), Some("default"));
        assert_eq!(get("x-ingress-name"), Some("shop"));
        assert_eq!(get("x-service-name"), Some("web"));
        assert_eq!(get("x-service-port"), Some("8080"));
        assert_eq!(get("x-request-id"), Some("r1"));
    }
}
