//! Checks on what a client sends, as pure functions of the message: the `Host` rules
//! of RFC 9112 and RFC 9113, line endings and framing fields of a request head, and the
//! fields a trailer section may not carry. Each refusal names the rule it enforces, so
//! a test can pin it with a byte literal.

use http::header::{self, HeaderMap, HeaderName};
use http::{Uri, Version};

/// Why a request's host is refused (answered 400, as nginx does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadHost {
    /// RFC 9112 section 3.2: "more than one Host header field line".
    #[error("more than one Host header")]
    Repeated,
    /// RFC 9112 section 3.2: an HTTP/1.1 request "that lacks a Host header field";
    /// RFC 9113 section 8.3.1: neither `:authority` nor `Host`.
    #[error("no Host header")]
    Missing,
    /// RFC 9112 section 3.2: "a Host header field with an invalid field value"; the
    /// value must be `uri-host [ ":" port ]` (RFC 3986 section 3.2.2).
    #[error("invalid Host header")]
    Invalid,
    /// RFC 9112 section 3.2.2 (absolute form) and RFC 9113 section 8.3.1 (`:authority`):
    /// the request names two different hosts; routing by one and forwarding the other
    /// would let a client reach a backend under a name it was not routed by.
    #[error("Host header differs from the request target's authority")]
    Mismatch,
}

/// The `Host` rules for one request. `uri` carries the authority of an absolute-form
/// HTTP/1.1 target or of HTTP/2's `:authority`.
pub fn check_host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), BadHost> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(BadHost::Repeated);
    }
    if let Some(host) = host
        && !valid_authority(host.as_bytes())
    {
        return Err(BadHost::Invalid);
    }
    match (uri.authority(), host) {
        (Some(authority), host) => {
            let authority = authority.as_str().as_bytes();
            // Userinfo has no place in an HTTP request target (RFC 9110 section 4.2.4).
            if !valid_authority(authority) {
                return Err(BadHost::Invalid);
            }
            match host {
                Some(host) if !host.as_bytes().eq_ignore_ascii_case(authority) => Err(BadHost::Mismatch),
                _ => Ok(()),
            }
        }
        (None, Some(_)) => Ok(()),
        // HTTP/1.0 predates Host: served by the host-less rules, as nginx does.
        (None, None) if version == Version::HTTP_10 || version == Version::HTTP_09 => Ok(()),
        (None, None) => Err(BadHost::Missing),
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 section 3.2.2): a registered name of unreserved
/// characters, percent-encodings and sub-delimiters, or a bracketed IP literal, and a
/// port of digits. Not empty: nginx refuses an empty Host too.
pub fn valid_authority(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..end];
        if literal.is_empty() || !literal.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match &value[end + 1..] {
            [] => (&value[..=end], None),
            [b':', port @ ..] => (&value[..=end], Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(at) => (&value[..at], Some(&value[at + 1..])),
            None => (value, None),
        }
    };
    !host.is_empty()
        && (host.first() == Some(&b'[') || host.iter().all(|&b| REG_NAME[usize::from(b)]))
        && port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

/// The bytes of an RFC 3986 `reg-name`: unreserved, sub-delims and `%` of
/// pct-encoded. A table: asking a list of 17 characters for every byte of every Host
/// cost about 300 instructions a request.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// Why a request head is refused before anything is forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadHead {
    /// RFC 9112 section 2.2 allows a recipient to take a bare LF as a line end; nginx
    /// refuses it in a request head, and so does Portico: two parsers that disagree on
    /// where a line ends are how requests are smuggled.
    #[error("a line of the request head ends in a bare LF")]
    BareLf,
    /// RFC 9112 section 6.1: a request with both "ought to be handled as an error";
    /// nginx answers 400, and hyper once did too.
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
}

/// Whether every line of a complete request head (`head` ends at its empty line) ends
/// in CRLF.
pub fn check_line_endings(head: &[u8]) -> Result<(), BadHead> {
    // memchr finds the few LFs of a head in wide steps; looking at every byte cost
    // about 250 instructions for a small request's head.
    for at in memchr::memchr_iter(b'\n', head) {
        if at == 0 || head[at - 1] != b'\r' {
            return Err(BadHead::BareLf);
        }
    }
    Ok(())
}

/// Whether a field may travel in a trailer section. RFC 9110 section 6.5.1: a sender
/// must not put in trailers fields needed for "message framing, routing, request
/// modifiers, response control data, or determining how to process the content", and a
/// recipient must not merge them into the header section. Dropped besides: hop-by-hop
/// fields and those the proxy itself sets for the endpoint (`X-Forwarded-*` and kin),
/// which a client must not be able to supply behind its back. Everything else (gRPC's
/// `grpc-status`, checksums) passes.
pub fn trailer_allowed(name: &HeaderName) -> bool {
    !FORBIDDEN_IN_TRAILERS.contains(&name.as_str())
}

const FORBIDDEN_IN_TRAILERS: &[&str] = &[
    // Framing (RFC 9112 section 6).
    "transfer-encoding",
    "content-length",
    "trailer",
    // Routing and connection management.
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    // Request modifiers: controls, conditionals, authentication (RFC 9110 sections 7.6,
    // 10.1, 11, 13, 14).
    "authorization",
    "proxy-authorization",
    "cookie",
    "expect",
    "max-forwards",
    "cache-control",
    "pragma",
    "range",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    // Response control data and authentication challenges (RFC 9110 sections 10.2, 11).
    "age",
    "date",
    "expires",
    "location",
    "retry-after",
    "vary",
    "set-cookie",
    "www-authenticate",
    "proxy-authenticate",
    // How to process the content (RFC 9110 section 8).
    "content-encoding",
    "content-type",
    "content-range",
    // What the proxy tells the endpoint about the client.
    "forwarded",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-real-ip",
    "x-request-id",
];

/// Removes the fields [`trailer_allowed`] refuses.
pub fn clean_trailers(trailers: &mut HeaderMap) {
    if trailers.keys().any(|name| !trailer_allowed(name)) {
        let names: Vec<HeaderName> = trailers.keys().filter(|n| !trailer_allowed(n)).cloned().collect();
        for name in names {
            trailers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(fields: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(value).expect("value"),
            );
        }
        map
    }

    fn host(version: Version, target: &str, fields: &[(&str, &[u8])]) -> Result<(), BadHost> {
        check_host(version, &target.parse().expect("target"), &headers(fields))
    }

    /// RFC 9112 section 3.2: exactly one valid Host in an HTTP/1.1 request.
    #[test]
    fn an_http11_request_needs_exactly_one_valid_host() {
        let v = Version::HTTP_11;
        assert_eq!(host(v, "/a", &[("host", b"raw.local")]), Ok(()));
        assert_eq!(host(v, "/a", &[("host", b"Raw.Local:8080")]), Ok(()));
        assert_eq!(host(v, "/a", &[("host", b"[::1]:80")]), Ok(()));
        assert_eq!(host(v, "/a", &[("host", b"198.18.0.1")]), Ok(()));
        assert_eq!(host(v, "/a", &[]), Err(BadHost::Missing));
        assert_eq!(
            host(v, "/a", &[("host", b"raw.local"), ("host", b"other.local")]),
            Err(BadHost::Repeated)
        );
        for bad in [
            &b""[..],
            b"raw.local other",
            b"a/b?c#d",
            b"user@raw.local",
            b"raw.local:80x",
            b"raw.local:123456",
            b"[::1",
            b"[zz]",
            b":80",
        ] {
            assert_eq!(
                host(v, "/a", &[("host", bad)]),
                Err(BadHost::Invalid),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// HTTP/1.0 has no Host requirement; nginx serves it by the default server.
    #[test]
    fn an_http10_request_may_go_without_host() {
        assert_eq!(host(Version::HTTP_10, "/a", &[]), Ok(()));
    }

    /// RFC 9112 section 3.2.2 and RFC 9113 section 8.3.1: the target's authority and
    /// Host name the same host, or the request is refused.
    #[test]
    fn the_target_authority_and_host_must_agree() {
        let v = Version::HTTP_11;
        assert_eq!(host(v, "http://raw.local/a", &[("host", b"raw.local")]), Ok(()));
        assert_eq!(host(v, "http://raw.local/a", &[("host", b"RAW.local")]), Ok(()));
        assert_eq!(
            host(v, "http://raw.local/a", &[("host", b"other.local")]),
            Err(BadHost::Mismatch)
        );
        let h2 = Version::HTTP_2;
        assert_eq!(host(h2, "https://raw.local/a", &[]), Ok(()));
        assert_eq!(
            host(h2, "https://raw.local/a", &[("host", b"other.local")]),
            Err(BadHost::Mismatch)
        );
        assert_eq!(host(h2, "/a", &[]), Err(BadHost::Missing));
        assert_eq!(
            host(v, "http://u@raw.local/a", &[("host", b"raw.local")]),
            Err(BadHost::Invalid)
        );
    }

    #[test]
    fn a_bare_lf_anywhere_in_the_head_is_refused() {
        assert_eq!(check_line_endings(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(
            check_line_endings(b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
            Err(BadHead::BareLf)
        );
        assert_eq!(
            check_line_endings(b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
            Err(BadHead::BareLf)
        );
        for bad in [&b"\n"[..], b"\nGET", b"a\n\r", b"\r\n\n\r\n", b"\r\r\n\n"] {
            assert_eq!(check_line_endings(bad), Err(BadHead::BareLf), "{bad:?}");
        }
        for good in [&b""[..], b"\r", b"\r\r\n", b"\r\n\r\n", b"no line end"] {
            assert_eq!(check_line_endings(good), Ok(()), "{good:?}");
        }
    }

    /// The table of host bytes is RFC 3986's reg-name: letters, digits, unreserved,
    /// sub-delims and `%`, and nothing else.
    #[test]
    fn a_host_name_takes_the_bytes_of_a_reg_name_only() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
            assert_eq!(REG_NAME[usize::from(b)], want, "byte {b:#04x}");
        }
        assert!(valid_authority(b"bench.local:8080"));
        assert!(!valid_authority(b"bench local"));
        assert!(!valid_authority(b"a/b"));
    }

    /// RFC 9110 section 6.5.1: framing, routing, modifiers and what the proxy sets are
    /// dropped from trailers; other fields stay.
    #[test]
    fn trailers_lose_the_fields_rfc_9110_forbids() {
        let mut t = headers(&[
            ("host", b"evil.example"),
            ("transfer-encoding", b"chunked"),
            ("content-length", b"99"),
            ("x-forwarded-for", b"6.6.6.6"),
            ("authorization", b"Basic eA=="),
            ("grpc-status", b"0"),
            ("x-checksum", b"abc"),
        ]);
        clean_trailers(&mut t);
        let mut left: Vec<&str> = t.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["grpc-status", "x-checksum"]);
    }
}
