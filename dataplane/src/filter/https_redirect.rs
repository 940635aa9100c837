//! ingress-nginx's `ssl-redirect`: a plain-HTTP request for a host with TLS gets a
//! redirect to HTTPS: 308 (method and body kept) unless the ConfigMap's
//! `http-redirect-code` says 301, 302 or 307.

use http::StatusCode;
use http::header::{HeaderMap, HeaderValue, LOCATION};

use super::{Answer, Filter, Phases, RequestHead};

#[derive(Debug)]
pub struct HttpsRedirect(pub StatusCode);

impl Filter for HttpsRedirect {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        if req.tls {
            return None;
        }
        let name = crate::wire::normalize_host(req.host);
        let port = match req.cfg.https_redirect_port {
            443 => String::new(),
            p => format!(":{p}"),
        };
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("https://{name}{port}{path}")) {
            headers.insert(LOCATION, v);
        }
        Some(Answer::Status {
            status: self.0,
            headers,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }
}
