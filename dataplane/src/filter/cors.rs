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

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, HeaderMap, HeaderName,
    HeaderValue, ORIGIN,
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
        let matcher = regex::RegexBuilder::new(&format!("^(?:{})$", alternatives.join("|")))
            .case_insensitive(true)
            .size_limit(crate::pattern::REGEX_SIZE_LIMIT)
            .build()?;
        Ok(CorsOrigins::Listed {
            patterns: entries.to_vec(),
            matcher,
        })
    }
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

impl Filter for Cors {
    fn request(&self, req: &RequestHead<'_>) -> Option<Answer> {
        if req.method != Method::OPTIONS {
            return None;
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
        if let Some(origin) = self.allowed(resp.origin) {
            self.write(resp.headers, origin);
        }
    }

    fn phases(&self) -> Phases {
        Phases {
            request: true,
            response: true,
            origin: matches!(self.origins, CorsOrigins::Listed { .. }),
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
}
