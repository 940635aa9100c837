//! ingress-nginx's `enable-cors`: its template's `CORS` block. A request whose `Origin`
//! is allowed gets the `Access-Control-*` headers on whatever answers it (the endpoint,
//! or the proxy's own error); an allowed preflight (`OPTIONS`) is answered 204 here
//! and never reaches the endpoint.
//!
//! As in the template, `cors-allow-origin: "*"` (the default) allows every request,
//! with or without an `Origin`, and answers `Access-Control-Allow-Origin: *`; a list
//! allows an `Origin` that is one of its entries, compared case-insensitively, where
//! `*` in an entry (`https://*.example.com`) stands for exactly one DNS label; the
//! allowed `Origin` is echoed back. nginx drops `Content-Type` and `Content-Length` from
//! a 204, so the preflight answer carries neither.
//!
//! Gateway API's `CORS` filter (`HTTPCORSFilter`, [`CorsMode::GatewayApi`]) differs:
//! a preflight is an `OPTIONS` with `Access-Control-Request-Method`, answered 204 here
//! whether its origin is allowed or not (without any `Access-Control-*` header when it
//! is not); `*` in an origin is "a greedy match to the _left_, including any number of
//! DNS labels", and an origin without a port is the same as one with its scheme's
//! default port; `*` among the methods or headers answers the ones the preflight asks
//! for, and with `allowCredentials` no answer carries `*` but the request's own values;
//! an answer to the actual request carries the origin, credentials and exposed headers
//! alone (the rest matter to a preflight only), and `Vary: Origin` when it echoes the
//! origin.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderName, HeaderValue, ORIGIN, VARY,
};
use http::{Method, StatusCode};
use regex::Regex;

use super::{Answer, Filter, Phases, RequestHead, ResponseHead};

/// Which origins are allowed.
#[derive(Clone, Debug)]
pub enum CorsOrigins {
    /// Every request, answered `*`.
    Any,
    /// Origins matching one entry; `patterns` as written, `matcher` compiled from them.
    Listed { patterns: Vec<String>, matcher: Regex },
}

impl CorsOrigins {
    /// `entries` are origins (`https://a.example.com:8443`), each with at most one `*`
    /// standing for one DNS label; an entry `*` alone allows every origin.
    pub fn new(entries: &[String]) -> Result<CorsOrigins, regex::Error> {
        if entries.iter().any(|e| e == "*") {
            return Ok(CorsOrigins::Any);
        }
        let alternatives: Vec<String> = entries
            .iter()
            .map(|e| regex::escape(e).replacen(r"\*", "[A-Za-z0-9-]+", 1))
            .collect();
        Self::listed(entries, &alternatives)
    }

    /// Gateway API's `allowOrigins`: `<scheme>://<host>(:<port>)`, where `*` in the host
    /// stands for any number of DNS labels ("a greedy match to the _left_") and an
    /// origin without a port is the same as one with its scheme's default (80 for
    /// `http`, 443 for `https`); `*` alone allows every origin. None allows none.
    pub fn gateway(entries: &[String]) -> Result<CorsOrigins, regex::Error> {
        if entries.iter().any(|e| e == "*") {
            return Ok(CorsOrigins::Any);
        }
        let alternatives: Vec<String> = entries.iter().map(|e| gateway_origin_pattern(e)).collect();
        Self::listed(entries, &alternatives)
    }

    fn listed(entries: &[String], alternatives: &[String]) -> Result<CorsOrigins, regex::Error> {
        // No entry matches nothing, not even an empty `Origin`.
        let pattern = if alternatives.is_empty() {
            r"[^\s\S]".to_string()
        } else {
            format!("^(?:{})$", alternatives.join("|"))
        };
        let matcher = regex::RegexBuilder::new(&pattern)
            .case_insensitive(true)
            .size_limit(crate::pattern::REGEX_SIZE_LIMIT)
            .build()?;
        Ok(CorsOrigins::Listed {
            patterns: entries.to_vec(),
            matcher,
        })
    }
}

/// One Gateway API origin as a regular expression (see [`CorsOrigins::gateway`]).
fn gateway_origin_pattern(entry: &str) -> String {
    let (scheme, rest) = entry.split_once("://").unwrap_or(("", entry));
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => Some("80"),
        "https" => Some("443"),
        _ => None,
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => (host, Some(port)),
        _ => (rest, None),
    };
    let host = regex::escape(host).replace(r"\*", "[A-Za-z0-9.-]+");
    let port = match (port, default_port) {
        // The default port, written or not, matches an origin with or without it.
        (None, Some(d)) => format!("(?::{d})?"),
        (Some(p), Some(d)) if p == d => format!("(?::{d})?"),
        (Some(p), _) => format!(":{}", regex::escape(p)),
        (None, None) => String::new(),
    };
    format!("{}://{host}{port}", regex::escape(scheme))
}

/// Whose CORS semantics a [`Cors`] follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CorsMode {
    /// ingress-nginx's template (`enable-cors`): every `OPTIONS` of an allowed origin
    /// answered, every `Access-Control-*` header on every answer.
    #[default]
    IngressNginx,
    /// Gateway API's `HTTPCORSFilter`; see the module's documentation.
    GatewayApi,
}

/// The response headers of an allowed request, fixed when the table is built.
#[derive(Clone, Debug)]
pub struct Cors {
    pub origins: CorsOrigins,
    pub allow_methods: HeaderValue,
    pub allow_headers: HeaderValue,
    pub allow_credentials: bool,
    pub expose_headers: Option<HeaderValue>,
    pub max_age: HeaderValue,
    /// In [`CorsMode::GatewayApi`], `allow_methods` and `allow_headers` may be `*`
    /// (answer what the preflight asks for) or empty (leave the header out).
    pub mode: CorsMode,
}

const ANY: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request with this `Origin`, or
    /// `None` when CORS does not apply to it.
    fn allowed(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        match &self.origins {
            CorsOrigins::Any => Some(ANY),
            CorsOrigins::Listed { matcher, .. } => {
                let origin = origin?;
                matcher.is_match(origin.to_str().ok()?).then(|| origin.clone())
            }
        }
    }

    fn write(&self, headers: &mut HeaderMap, origin: HeaderValue) {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.allow_credentials {
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
        if let Some(expose) = &self.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }
}

/// Gateway API's semantics.
impl Cors {
    /// Whether the origin is allowed, and the `Access-Control-Allow-Origin` value then:
    /// `*` for every origin without credentials; otherwise the request's own `Origin`
    /// ("must not return `*`"), none when it sent none.
    fn gateway_origin(&self, origin: Option<&HeaderValue>) -> Option<Option<HeaderValue>> {
        match &self.origins {
            CorsOrigins::Any if !self.allow_credentials => Some(Some(ANY)),
            CorsOrigins::Any => Some(origin.cloned()),
            CorsOrigins::Listed { matcher, .. } => {
                let origin = origin?;
                matcher.is_match(origin.to_str().ok()?).then(|| Some(origin.clone()))
            }
        }
    }

    /// The preflight's answer: 204, with the `Access-Control-*` headers when the origin
    /// is allowed and none when it is not ("the gateway returns 204/200 response but
    /// doesn't set the relevant cross-origin response headers").
    fn gateway_preflight(&self, req: &RequestHead<'_>, asked_method: &HeaderValue) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(origin) = self.gateway_origin(req.headers.get(ORIGIN)) {
            self.gateway_write(&mut headers, origin);
            // `*` answers the method asked for, which is never wrong.
            let methods = if self.allow_methods == ANY {
                Some(asked_method.clone())
            } else {
                Some(self.allow_methods.clone()).filter(|m| !m.is_empty())
            };
            if let Some(m) = methods {
                headers.insert(ACCESS_CONTROL_ALLOW_METHODS, m);
            }
            let allow_headers = if self.allow_headers == ANY {
                match req.headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
                    Some(asked) => Some(asked.clone()),
                    None => (!self.allow_credentials).then_some(ANY),
                }
            } else {
                Some(self.allow_headers.clone()).filter(|h| !h.is_empty())
            };
            if let Some(h) = allow_headers {
                headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, h);
            }
            headers.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        Answer::Status {
            status: StatusCode::NO_CONTENT,
            headers,
        }
    }

    /// What every answer to an allowed origin carries.
    fn gateway_write(&self, headers: &mut HeaderMap, origin: Option<HeaderValue>) {
        if let Some(origin) = origin {
            if origin != ANY {
                vary_on_origin(headers);
            }
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        if self.allow_credentials {
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        if let Some(expose) = &self.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

/// Adds `Origin` to `Vary` unless it is there (or `Vary: *` is): an answer that echoes
/// the origin differs by origin.
fn vary_on_origin(headers: &mut HeaderMap) {
    let covered = headers.get_all(VARY).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("origin"))
    });
    if !covered {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

impl Filter for Cors {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        if req.method != Method::OPTIONS {
            return None;
        }
        if self.mode == CorsMode::GatewayApi {
            // An OPTIONS that asks for no method is no preflight: it goes on.
            let asked = req.headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
            return Some(self.gateway_preflight(req, asked));
        }
        let origin = self.allowed(req.headers.get(ORIGIN))?;
        let mut headers = HeaderMap::new();
        self.write(&mut headers, origin);
        Some(Answer::Status {
            status: StatusCode::NO_CONTENT,
            headers,
        })
    }

    fn response(&self, resp: &mut ResponseHead<'_>) {
        if self.mode == CorsMode::GatewayApi {
            if let Some(origin) = self.gateway_origin(resp.origin) {
                self.gateway_write(resp.headers, origin);
            }
            return;
        }
        if let Some(origin) = self.allowed(resp.origin) {
            self.write(resp.headers, origin);
        }
    }

    fn phases(&self) -> Phases {
        Phases {
            request: true,
            response: true,
            origin: matches!(self.origins, CorsOrigins::Listed { .. })
                || (self.mode == CorsMode::GatewayApi && self.allow_credentials),
            ..Phases::default()
        }
    }
    fn header_names(&self) -> Option<Vec<HeaderName>> {
        Some(vec![
            ACCESS_CONTROL_ALLOW_ORIGIN,
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            ACCESS_CONTROL_ALLOW_METHODS,
            ACCESS_CONTROL_ALLOW_HEADERS,
            ACCESS_CONTROL_EXPOSE_HEADERS,
            ACCESS_CONTROL_MAX_AGE,
            VARY,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(entries: &[&str]) -> CorsOrigins {
        CorsOrigins::new(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn allows(o: &CorsOrigins, origin: &str) -> bool {
        match o {
            CorsOrigins::Any => true,
            CorsOrigins::Listed { matcher, .. } => matcher.is_match(origin),
        }
    }

    /// e2e `cors.go`: an origin must be one entry whole, port included; `*` stands for
    /// one label ("should not allow - unmatching origin with wildcard origin (2
    /// subdomains)"); `*` among the entries allows everything.
    #[test]
    fn origin_entries_match_whole_origins() {
        let o = listed(&[
            "http://*.origin.cors.com",
            "http://*.origin.com:8080",
            "https://origin.cors.com:8080",
        ]);
        for (origin, want) in [
            ("http://foo.origin.cors.com", true),
            ("http://bar-foo.origin.cors.com", true),
            ("HTTP://FOO.ORIGIN.CORS.COM", true),
            ("http://bar.foo.origin.cors.com", false),
            ("http://origin.cors.com", false),
            ("http://a.origin.com:8080", true),
            ("http://a.origin.com", false),
            ("https://origin.cors.com:8080", true),
            ("https://origin.cors.com", false),
            ("https://origin.cors.com:8080.evil.com", false),
            ("https://evil.com/https://origin.cors.com:8080", false),
        ] {
            assert_eq!(allows(&o, origin), want, "{origin}");
        }
        assert!(matches!(listed(&["*", "https://foo.bar.com"]), CorsOrigins::Any));
    }

    fn gateway(origins: &[&str], methods: &str, headers: &str, credentials: bool) -> Cors {
        Cors {
            origins: CorsOrigins::gateway(&origins.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
            allow_methods: HeaderValue::from_str(methods).unwrap(),
            allow_headers: HeaderValue::from_str(headers).unwrap(),
            allow_credentials: credentials,
            expose_headers: Some(HeaderValue::from_static("x-header-3, x-header-4")),
            max_age: HeaderValue::from(3600),
            mode: CorsMode::GatewayApi,
        }
    }

    /// The answer of `cors` to a request with `method` and `headers` (name, value): the
    /// route phase's, or `None` when it goes on.
    fn preflight(cors: &Cors, method: Method, headers: &[(&str, &str)]) -> Option<(StatusCode, HeaderMap)> {
        let map: HeaderMap = headers
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect();
        let (uri, cfg) = ("/".parse().unwrap(), crate::config::ProxyConfig::default());
        let head = RequestHead {
            method: &method,
            uri: &uri,
            headers: &map,
            host: "a.example",
            tls: false,
            client: std::net::IpAddr::from([192, 0, 2, 1]),
            cfg: &cfg,
            client_cert: None,
        };
        match cors.request(&head)? {
            Answer::Status { status, headers } => Some((status, headers)),
            Answer::PayloadTooLarge(_) => None,
        }
    }

    fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        h.get(name).map(|v| v.to_str().unwrap())
    }

    /// HTTPCORSFilter.allowOrigins: "`*` is a greedy match to the _left_, including any
    /// number of DNS labels"; "if not included, port `80` is assumed for `http` scheme
    /// origins, and port `443` is assumed for `https` origins" (conformance HTTPRouteCORS:
    /// `https://*.bar.com` allows `https://xpto.www.bar.com`).
    #[test]
    fn gateway_origins_match_any_labels_and_default_ports() {
        let o = CorsOrigins::gateway(&[
            "https://www.foo.com".into(),
            "https://*.bar.com".into(),
            "http://c.com:8080".into(),
        ])
        .unwrap();
        for (origin, want) in [
            ("https://www.foo.com", true),
            ("https://www.foo.com:443", true),
            ("http://www.foo.com", false),
            ("https://www.foo.com:8443", false),
            ("https://www.bar.com", true),
            ("https://xpto.www.bar.com", true),
            ("https://bar.com", false),
            ("https://foobar.com", false),
            ("https://www.bar.com.evil.com", false),
            ("http://c.com:8080", true),
            ("http://c.com", false),
        ] {
            assert_eq!(allows(&o, origin), want, "{origin}");
        }
        assert!(!allows(&CorsOrigins::gateway(&[]).unwrap(), ""));
    }

    /// The preflight answers of conformance HTTPRouteCORS (`cors-1`): an allowed origin
    /// gets itself back with the configured methods, headers, exposed headers, max age and
    /// credentials; another gets 204 and no `Access-Control-*` header ("the gateway
    /// returns 204/200 response but doesn't set the relevant cross-origin response
    /// headers"); an OPTIONS asking for no method is not a preflight and goes on.
    #[test]
    fn gateway_preflight_answers() {
        let cors = gateway(
            &["https://www.foo.com", "https://*.bar.com"],
            "GET, OPTIONS",
            "x-header-1, x-header-2",
            true,
        );
        let asked = [
            ("origin", "https://xpto.www.bar.com"),
            ("access-control-request-method", "GET"),
        ];
        let (status, h) = preflight(&cors, Method::OPTIONS, &asked).unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(get(&h, "access-control-allow-origin"), Some("https://xpto.www.bar.com"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("GET, OPTIONS"));
        assert_eq!(get(&h, "access-control-allow-headers"), Some("x-header-1, x-header-2"));
        assert_eq!(get(&h, "access-control-expose-headers"), Some("x-header-3, x-header-4"));
        assert_eq!(get(&h, "access-control-max-age"), Some("3600"));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "vary"), Some("Origin"));
        let denied = [
            ("origin", "https://foobar.com"),
            ("access-control-request-method", "GET"),
        ];
        let (status, h) = preflight(&cors, Method::OPTIONS, &denied).unwrap();
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(h.keys().all(|k| !k.as_str().starts_with("access-control-")), "{h:?}");
        assert!(preflight(&cors, Method::OPTIONS, &[("origin", "https://www.foo.com")]).is_none());
        assert!(preflight(&cors, Method::GET, &asked).is_none());
    }

    /// HTTPCORSFilter with `*`: without credentials `*` may be answered; with them "the
    /// gateway must not return `*`" but the request's own origin, method and headers
    /// (conformance HTTPRouteCORS `cors-wildcard-methods-headers`).
    #[test]
    fn gateway_wildcards_with_and_without_credentials() {
        let asked = [
            ("origin", "https://other.foo.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-header-1, x-header-2"),
        ];
        let with = gateway(&["*"], "*", "*", true);
        let (_, h) = preflight(&with, Method::OPTIONS, &asked).unwrap();
        assert_eq!(get(&h, "access-control-allow-origin"), Some("https://other.foo.com"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(get(&h, "access-control-allow-headers"), Some("x-header-1, x-header-2"));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        let without = gateway(&["*"], "*", "", false);
        let (_, h) = preflight(&without, Method::OPTIONS, &asked[1..]).unwrap();
        assert_eq!(get(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(get(&h, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(
            get(&h, "access-control-allow-headers"),
            None,
            "no allowHeaders, no header"
        );
        assert_eq!(get(&h, "access-control-allow-credentials"), None);
        assert_eq!(get(&h, "vary"), None);
    }

    /// The answer to an actual request: origin, credentials and exposed headers alone;
    /// nothing for an origin not allowed.
    #[test]
    fn gateway_actual_response_headers() {
        let cors = gateway(&["https://www.foo.com"], "GET", "x-a", true);
        let respond = |origin: Option<&HeaderValue>| {
            let mut headers = HeaderMap::new();
            headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            cors.response(&mut ResponseHead {
                status: StatusCode::OK,
                headers: &mut headers,
                tls: false,
                from_upstream: true,
                origin,
            });
            headers
        };
        let h = respond(Some(&HeaderValue::from_static("https://www.foo.com")));
        assert_eq!(get(&h, "access-control-allow-origin"), Some("https://www.foo.com"));
        assert_eq!(get(&h, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&h, "access-control-expose-headers"), Some("x-header-3, x-header-4"));
        assert_eq!(get(&h, "access-control-allow-methods"), None);
        assert_eq!(get(&h, "access-control-max-age"), None);
        let vary: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        let h = respond(Some(&HeaderValue::from_static("https://foobar.com")));
        assert!(h.keys().all(|k| !k.as_str().starts_with("access-control-")), "{h:?}");
    }
}
