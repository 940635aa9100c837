//! ingress-nginx's external authentication (`auth-url` and friends): nginx's
//! `auth_request` to an internal location that proxies a copy of the request's head,
//! without its body, to the auth URL.
//!
//! The auth service's answer decides: 2xx lets the request through, with the
//! `auth-response-headers` copied from the answer onto the request the endpoint gets
//! (and taken off it when the answer lacks them, so a client cannot forge them); 401
//! and 403 go to the client (401 becomes a 302 to `auth-signin` when set); anything
//! else, or no answer, is 500.
//!
//! This file holds the decisions, as pure functions of the heads; the proxy makes the
//! call (`proxy.rs`, through the upstream pool).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::RequestHead;

/// Where the auth requests go: an `http://` URL whose host is a name the system
/// resolver knows (a cluster DNS name) or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, sent as the request target.
    pub path_and_query: String,
    /// `Host` of the auth request: the URL's authority as written.
    pub authority: HeaderValue,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an http:// URL with a host (https and nginx variables are not supported)")]
pub struct InvalidAuthUrl(pub String);

impl std::str::FromStr for AuthUrl {
    type Err = InvalidAuthUrl;

    fn from_str(s: &str) -> Result<AuthUrl, InvalidAuthUrl> {
        let bad = || InvalidAuthUrl(s.to_string());
        let s = s.trim();
        let uri: http::Uri = s.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") || s.contains('$') {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || authority.as_str().contains('@') {
            return Err(bad());
        }
        Ok(AuthUrl {
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(80),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            authority: HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?,
        })
    }
}

/// A piece of `auth-signin`: text, or one of the nginx variables ingress-nginx users
/// write there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigninPart {
    Text(String),
    /// `$host`: the request's host, lower-cased, without port.
    Host,
    /// `$http_host` / `$best_http_host`: the `Host` as sent.
    HttpHost,
    /// `$scheme` / `$pass_access_scheme`.
    Scheme,
    /// `$request_uri`: path and query as sent.
    RequestUri,
    /// `$escaped_request_uri`: the same, percent-encoded as a query value.
    EscapedRequestUri,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0:?} names an nginx variable Portico does not fill ($host, $http_host, $best_http_host, $scheme, $pass_access_scheme, $request_uri, $escaped_request_uri are)"
)]
pub struct InvalidSignin(pub String);

/// `auth-signin` as parts, with ingress-nginx's `rd=` parameter added as its
/// `buildAuthSignURL` adds it: `?<param>=<scheme>://<host><escaped request URI>`, or
/// `&...` when the URL has a query, or nothing when the query already has the param.
pub fn signin_template(url: &str, redirect_param: &str) -> Result<Vec<SigninPart>, InvalidSignin> {
    let query = url.split_once('?').map(|(_, q)| q);
    let has_param = query.is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some(redirect_param)));
    let mut text = url.to_string();
    if !has_param {
        let sep = match query {
            None => "?",
            Some("") => "",
            Some(_) => "&",
        };
        text = format!("{text}{sep}{redirect_param}=$pass_access_scheme://$http_host$escaped_request_uri");
    }
    let mut parts = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find('$') {
        if i > 0 {
            parts.push(SigninPart::Text(rest[..i].to_string()));
        }
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        parts.push(match &after[..len] {
            "host" => SigninPart::Host,
            "http_host" | "best_http_host" => SigninPart::HttpHost,
            "scheme" | "pass_access_scheme" => SigninPart::Scheme,
            "request_uri" => SigninPart::RequestUri,
            "escaped_request_uri" => SigninPart::EscapedRequestUri,
            other => return Err(InvalidSignin(format!("${other}"))),
        });
        rest = &after[len..];
    }
    if !rest.is_empty() {
        parts.push(SigninPart::Text(rest.to_string()));
    }
    Ok(parts)
}

/// Percent-encodes all but unreserved characters (nginx's `set_escape_uri`, Go's
/// `url.QueryEscape` but for spaces).
fn escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// What the annotations ask of each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalAuth {
    pub url: AuthUrl,
    /// `auth-method`; the request's own method when unset.
    pub method: Option<Method>,
    /// `auth-signin` with its redirect parameter, when set.
    pub signin: Option<Vec<SigninPart>>,
    /// `auth-response-headers`.
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: `X-Auth-Request-Redirect`, the request URI when unset.
    pub request_redirect: Option<HeaderValue>,
}

/// What the proxy does after the auth answer.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Go on, with these headers set (`Some`) or removed (`None`) on the upstream request.
    Proceed(Vec<(HeaderName, Option<HeaderValue>)>),
    /// Answer the client with this, nothing is sent to a backend.
    Answer(StatusCode, HeaderMap),
}

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl ExternalAuth {
    /// The auth request for `req`: its method, target and head (the template's auth
    /// location: the request's headers without its body, plus `X-Original-URL`,
    /// `X-Original-Method`, `X-Sent-From`, `X-Real-IP`, `X-Forwarded-For` and
    /// `X-Auth-Request-Redirect`).
    pub fn subrequest(&self, req: &RequestHead<'_>, request_id: &HeaderValue) -> http::Request<()> {
        let scheme = if req.tls { "https" } else { "http" };
        let request_uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = req.headers.clone();
        for h in HOP_BY_HOP.iter().chain([&header::CONTENT_LENGTH, &header::EXPECT]) {
            headers.remove(h);
        }
        headers.remove("x-forwarded-proto");
        headers.insert(header::HOST, self.url.authority.clone());
        let client = req.client.to_canonical().to_string();
        let set = |headers: &mut HeaderMap, name: &'static str, v: HeaderValue| {
            headers.insert(HeaderName::from_static(name), v);
        };
        set(&mut headers, "x-request-id", request_id.clone());
        set(
            &mut headers,
            "x-original-url",
            value(&format!("{scheme}://{}{request_uri}", req.host)),
        );
        set(&mut headers, "x-original-method", value(req.method.as_str()));
        set(
            &mut headers,
            "x-sent-from",
            HeaderValue::from_static("nginx-ingress-controller"),
        );
        set(&mut headers, "x-real-ip", value(&client));
        set(&mut headers, "x-forwarded-for", value(&client));
        let redirect = self.request_redirect.clone().unwrap_or_else(|| value(request_uri));
        set(&mut headers, "x-auth-request-redirect", redirect);
        if self.method.is_some() {
            set(&mut headers, "x-original-uri", value(request_uri));
            set(
                &mut headers,
                "x-scheme",
                HeaderValue::from_static(if req.tls { "https" } else { "http" }),
            );
        }
        let mut sub = http::Request::new(());
        *sub.method_mut() = self.method.clone().unwrap_or_else(|| req.method.clone());
        *sub.uri_mut() = self
            .url
            .path_and_query
            .parse()
            .unwrap_or_else(|_| http::Uri::from_static("/"));
        *sub.headers_mut() = headers;
        sub
    }

    /// What the auth service's answer means for `req`; `None` (no answer) is 500.
    pub fn outcome(&self, answer: Option<(StatusCode, &HeaderMap)>, req: &RequestHead<'_>) -> AuthOutcome {
        let Some((status, headers)) = answer else {
            return AuthOutcome::Answer(StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new());
        };
        if status.is_success() {
            let set = self
                .response_headers
                .iter()
                .map(|name| (name.clone(), headers.get(name).cloned()))
                .collect();
            return AuthOutcome::Proceed(set);
        }
        let mut out = HeaderMap::new();
        match status {
            StatusCode::UNAUTHORIZED => match &self.signin {
                Some(template) => {
                    out.insert(header::LOCATION, value(&self.signin_url(template, req)));
                    AuthOutcome::Answer(StatusCode::FOUND, out)
                }
                None => {
                    // nginx's auth_request passes the subrequest's challenge on.
                    for v in headers.get_all(header::WWW_AUTHENTICATE) {
                        out.append(header::WWW_AUTHENTICATE, v.clone());
                    }
                    AuthOutcome::Answer(status, out)
                }
            },
            StatusCode::FORBIDDEN => AuthOutcome::Answer(status, out),
            _ => AuthOutcome::Answer(StatusCode::INTERNAL_SERVER_ERROR, out),
        }
    }

    fn signin_url(&self, template: &[SigninPart], req: &RequestHead<'_>) -> String {
        let request_uri = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut out = String::new();
        for part in template {
            match part {
                SigninPart::Text(t) => out.push_str(t),
                SigninPart::Host => {
                    let host = req.host.rsplit_once(':').map_or(req.host, |(h, p)| {
                        if p.bytes().all(|b| b.is_ascii_digit()) {
                            h
                        } else {
                            req.host
                        }
                    });
                    out.push_str(&host.to_ascii_lowercase());
                }
                SigninPart::HttpHost => out.push_str(req.host),
                SigninPart::Scheme => out.push_str(if req.tls { "https" } else { "http" }),
                SigninPart::RequestUri => out.push_str(request_uri),
                SigninPart::EscapedRequestUri => escape(request_uri, &mut out),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::config::ProxyConfig;

    fn with_head<T>(uri: &str, headers: &HeaderMap, f: impl FnOnce(&RequestHead<'_>) -> T) -> T {
        let uri: http::Uri = uri.parse().unwrap();
        let cfg = ProxyConfig::default();
        f(&RequestHead {
            method: &Method::GET,
            uri: &uri,
            headers,
            host: "auth",
            tls: false,
            client: IpAddr::from([192, 0, 2, 7]),
            cfg: &cfg,
            client_cert: None,
        })
    }

    fn auth(signin: Option<&str>) -> ExternalAuth {
        ExternalAuth {
            url: "http://auth-svc.auth.svc:8080/basic-auth/user/password?x=1"
                .parse()
                .unwrap(),
            method: None,
            signin: signin.map(|s| signin_template(s, "rd").unwrap()),
            response_headers: vec![HeaderName::from_static("x-user")],
            request_redirect: None,
        }
    }

    /// Auth URLs: http only, a host, the port defaulting to 80.
    #[test]
    fn auth_urls_are_http_with_a_host() {
        let u: AuthUrl = "http://10.1.2.3/auth".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("10.1.2.3", 80, "/auth")
        );
        let u: AuthUrl = "http://[2001:db8::1]:9000".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("2001:db8::1", 9000, "/")
        );
        for bad in [
            "https://a/x",
            "a/x",
            "http:///x",
            "http://$host/auth",
            "http://u:p@a/x",
            "",
        ] {
            assert!(bad.parse::<AuthUrl>().is_err(), "{bad:?}");
        }
    }

    /// e2e auth.go "should redirect to signin url when not signed in": `rd=` carries the
    /// scheme, host and the escaped request URI; ingress-nginx's buildAuthSignURL adds
    /// it with `&` after a query and not at all when the query has it.
    #[test]
    fn signin_redirect_carries_the_original_url() {
        let cases = [
            (
                "http://$host/auth/start",
                "http://auth/auth/start?rd=http://auth%2F%3Fa%3Db%26c%3Dd",
            ),
            (
                "https://login/start?x=1",
                "https://login/start?x=1&rd=http://auth%2F%3Fa%3Db%26c%3Dd",
            ),
            (
                "https://login/start?rd=$escaped_request_uri",
                "https://login/start?rd=%2F%3Fa%3Db%26c%3Dd",
            ),
        ];
        for (signin, location) in cases {
            let a = auth(Some(signin));
            let got = with_head("/?a=b&c=d", &HeaderMap::new(), |h| {
                a.outcome(Some((StatusCode::UNAUTHORIZED, &HeaderMap::new())), h)
            });
            let AuthOutcome::Answer(status, headers) = got else {
                panic!("{signin}")
            };
            assert_eq!(
                (status, headers[header::LOCATION].to_str().unwrap()),
                (StatusCode::FOUND, location)
            );
        }
        assert!(signin_template("http://$remote_user/x", "rd").is_err());
    }

    /// 2xx proceeds with the response headers (absent ones removed); 401 and 403 go to
    /// the client, 401 with the service's challenge; anything else and no answer: 500.
    #[test]
    fn the_auth_answer_decides() {
        let a = auth(None);
        let mut from_auth = HeaderMap::new();
        from_auth.insert("x-user", HeaderValue::from_static("alice"));
        from_auth.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"x\""));
        let req = HeaderMap::new();
        let run = |answer: Option<(StatusCode, &HeaderMap)>| with_head("/", &req, |h| a.outcome(answer, h));
        assert_eq!(
            run(Some((StatusCode::OK, &from_auth))),
            AuthOutcome::Proceed(vec![(
                HeaderName::from_static("x-user"),
                Some(HeaderValue::from_static("alice"))
            )])
        );
        assert_eq!(
            run(Some((StatusCode::NO_CONTENT, &HeaderMap::new()))),
            AuthOutcome::Proceed(vec![(HeaderName::from_static("x-user"), None)])
        );
        let AuthOutcome::Answer(s, h) = run(Some((StatusCode::UNAUTHORIZED, &from_auth))) else {
            panic!()
        };
        assert_eq!(
            (s, &h[header::WWW_AUTHENTICATE]),
            (StatusCode::UNAUTHORIZED, &from_auth[header::WWW_AUTHENTICATE])
        );
        for (got, want) in [
            (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN),
            (StatusCode::NOT_FOUND, StatusCode::INTERNAL_SERVER_ERROR),
            (StatusCode::FOUND, StatusCode::INTERNAL_SERVER_ERROR),
            (StatusCode::BAD_GATEWAY, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            assert!(
                matches!(run(Some((got, &from_auth))), AuthOutcome::Answer(s, _) if s == want),
                "{got}"
            );
        }
        assert!(matches!(
            run(None),
            AuthOutcome::Answer(StatusCode::INTERNAL_SERVER_ERROR, _)
        ));
    }

    /// The template's auth location: the client's headers, the auth URL's Host, the
    /// X-Original-* fields, no body framing.
    #[test]
    fn the_subrequest_carries_the_original_head() {
        let mut a = auth(None);
        let mut req = HeaderMap::new();
        req.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNzd29yZA=="),
        );
        req.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        req.insert(header::HOST, HeaderValue::from_static("auth"));
        let id = HeaderValue::from_static("abc");
        let sub = with_head("/p?q=1", &req, |h| a.subrequest(h, &id));
        assert_eq!(sub.method(), Method::GET);
        assert_eq!(sub.uri(), "/basic-auth/user/password?x=1");
        let h = sub.headers();
        assert_eq!(h[header::HOST], "auth-svc.auth.svc:8080");
        assert_eq!(h[header::AUTHORIZATION], "Basic dXNlcjpwYXNzd29yZA==");
        assert!(!h.contains_key(header::CONTENT_LENGTH));
        assert_eq!(h["x-original-url"], "http://auth/p?q=1");
        assert_eq!(h["x-original-method"], "GET");
        assert_eq!(h["x-sent-from"], "nginx-ingress-controller");
        assert_eq!(h["x-auth-request-redirect"], "/p?q=1");
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert!(!h.contains_key("x-original-uri"));
        a.method = Some(Method::POST);
        let sub = with_head("/p?q=1", &req, |h| a.subrequest(h, &id));
        assert_eq!(
            (sub.method(), &sub.headers()["x-original-uri"]),
            (&Method::POST, &HeaderValue::from_static("/p?q=1"))
        );
    }
}
