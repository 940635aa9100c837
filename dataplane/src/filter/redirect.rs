//! A Route's (Gateway API's) `RequestRedirect`: answered by the proxy itself.

use http::header::{HeaderMap, HeaderValue, LOCATION};
use http::{StatusCode, Uri};

use super::rewrite::PathModifier;
use super::{Answer, Filter, Phases, RequestHead};

/// Gateway API `RequestRedirect`: answered by the proxy itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`; the request's own when unset.
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
}

impl Redirect {
    /// The `Location` for a request that came in on `tls` for `host` (as sent, maybe
    /// with a port) and `uri`.
    ///
    /// The port: the one set; else, when the scheme changes, none (the scheme's own);
    /// else the one the client used. Ports 80 for http and 443 for https are left out.
    pub fn location(&self, tls: bool, host: &str, uri: &Uri) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(if tls { "https" } else { "http" });
        let (request_name, request_port) = split_host_port(host);
        let name = self.hostname.as_deref().unwrap_or(request_name).to_ascii_lowercase();
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => Some(p),
            (None, Some(_)) => None,
            (None, None) => request_port,
        };
        let port = match (scheme, port) {
            ("http", Some(80)) | ("https", Some(443)) | (_, None) => String::new(),
            (_, Some(p)) => format!(":{p}"),
        };
        let path = match &self.path {
            Some(m) => m.apply_to(uri),
            None => uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        };
        format!("{scheme}://{name}{port}{path}")
    }
}

fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if host.starts_with('[') {
        return match host.rsplit_once("]:") {
            Some((name, port)) => (&host[..name.len() + 1], port.parse().ok()),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (name, port.parse().ok()),
        _ => (host.strip_suffix('.').unwrap_or(host), None),
    }
}

#[derive(Debug)]
pub struct RequestRedirect(pub Redirect);

impl Filter for RequestRedirect {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&self.0.location(req.tls, req.host, req.uri)) {
            headers.insert(LOCATION, v);
        }
        Some(Answer::Status {
            status: self.0.status,
            headers,
        })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A redirect keeps what it does not replace; a scheme change drops the client's port.
    #[test]
    fn redirect_location() {
        let r = |scheme: Option<&str>, host: Option<&str>, port| Redirect {
            scheme: scheme.map(Into::into),
            hostname: host.map(Into::into),
            port,
            path: None,
            status: StatusCode::FOUND,
        };
        let uri: Uri = "/a?b=1".parse().unwrap();
        assert_eq!(
            r(Some("https"), None, None).location(false, "x.com:8080", &uri),
            "https://x.com/a?b=1"
        );
        assert_eq!(
            r(None, None, None).location(false, "x.com:8080", &uri),
            "http://x.com:8080/a?b=1"
        );
        assert_eq!(
            r(None, Some("y.com"), Some(443)).location(true, "x.com", &uri),
            "https://y.com/a?b=1"
        );
        assert_eq!(
            r(Some("http"), None, Some(8081)).location(true, "x.com", &uri),
            "http://x.com:8081/a?b=1"
        );
    }
}
