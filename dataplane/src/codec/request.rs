//! An HTTP/1.1 request head, both ways: read from a client's bytes ([`parse_request`],
//! for the requests Portico's own server side takes: those without a body), and written
//! for an endpoint ([`encode_head`]). With them the checks on what a client sends, as
//! pure functions of the message: the `Host` rules of RFC 9112 and RFC 9113, and the
//! line endings and framing fields of a request head. Each refusal names the rule it
//! enforces, so a test can pin it with a byte literal.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

use crate::wire::itoa;

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

/// Header fields a request head carries besides those in its map, names and values in
/// step: a proxy's own fields, written straight into the head rather than hashed into
/// the map first.
#[derive(Clone, Copy, Default)]
pub struct Extra<'a>(pub &'a [HeaderName], pub &'a [HeaderValue]);

/// Encodes the head of `req`, whose body is `body_len` bytes long (`None`: not
/// known ahead), into `out`, in place of what it held; returns whether the body goes
/// chunked. The request's own framing fields are this hop's, and left out: a
/// `Content-Length` is written for a body of known length (none for a bodiless
/// request that does not usually carry one), `Transfer-Encoding: chunked` otherwise
/// (RFC 9112 section 6).
pub fn encode_head<B>(out: &mut Vec<u8>, req: &Request<B>, body_len: Option<u64>, extra: Extra<'_>) -> bool {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        // The framing headers are this hop's, written below.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in extra.0.iter().zip(extra.1) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let chunked = match body_len {
        Some(0) if !matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) => {
            // A client's own `Content-Length: 0` is kept; none is added to a GET.
            if req.headers().contains_key(header::CONTENT_LENGTH) {
                out.extend_from_slice(b"content-length: 0\r\n");
            }
            false
        }
        Some(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
            false
        }
        None => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            true
        }
    };
    out.extend_from_slice(b"\r\n");
    chunked
}

/// The most header fields a request may have, as hyper allows; more is a 431.
pub const MAX_HEADERS: usize = 100;

/// What the bytes read so far hold.
// Returned, never stored: boxing the request would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Parsed<B> {
    /// A request this module serves, and whether the connection stays open after it.
    Request(Request<B>, bool),
    /// A request this parser leaves to another: one with a body (`Content-Length`
    /// or `Transfer-Encoding`), an upgrade or `CONNECT`. Nothing was taken from the
    /// buffer.
    Declined,
    /// Not yet a whole head.
    Partial,
    /// A malformed head: answered with this status, then the connection closes.
    Bad(StatusCode),
}

/// Parses one request head at the start of `buf`, of at most `max_head` bytes. A
/// request without a body is taken off the front of `buf`; its URI and header values
/// share those bytes, and its body is `B::default()`. Its framing is checked first, as
/// the one who reads a request with a body may not: a bare LF ending a line, or a
/// `Content-Length` beside a `Transfer-Encoding` (RFC 9112 section 6.1), is a 400.
pub fn parse_request<B: Default>(buf: &mut BytesMut, max_head: usize) -> Parsed<B> {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len > max_head => {
            return Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(_) => return Parsed::Bad(StatusCode::BAD_REQUEST),
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Bad(StatusCode::BAD_REQUEST);
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Bad(StatusCode::BAD_REQUEST);
    };
    if method == Method::CONNECT {
        return Parsed::Declined;
    }
    let version = if minor == 1 { Version::HTTP_11 } else { Version::HTTP_10 };
    // Where each part lies in the head, so the borrow of `buf` can end before the head
    // is split off and shared.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        [start, start + s.len()]
    };
    let path = at(path.as_bytes());
    let mut close = version == Version::HTTP_10;
    let mut fields = [[0usize; 4]; MAX_HEADERS];
    let n = req.headers.len();
    let (mut length, mut chunked, mut upgrade) = (false, false, false);
    for (field, h) in fields.iter_mut().zip(req.headers.iter()) {
        let name = h.name.as_bytes();
        length |= name.eq_ignore_ascii_case(b"content-length");
        chunked |= name.eq_ignore_ascii_case(b"transfer-encoding");
        upgrade |= name.eq_ignore_ascii_case(b"upgrade");
        if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::HTTP_10 {
                    close = false;
                }
            }
        }
        let ([a, b], [c, d]) = (at(name), at(h.value));
        *field = [a, b, c, d];
    }
    // Checked here, before another parser (hyper) takes the head: hyper would take a
    // bare LF as a line end, and would drop the `Content-Length` beside a
    // `Transfer-Encoding`.
    if check_line_endings(&buf[..len]).is_err() || (length && chunked) {
        return Parsed::Bad(StatusCode::BAD_REQUEST);
    }
    if length || chunked || upgrade {
        return Parsed::Declined;
    }
    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path[0]..path[1])) else {
        return Parsed::Bad(StatusCode::BAD_REQUEST);
    };
    // Room for the headers the proxy adds (the `X-Forwarded-*` family).
    let mut map = HeaderMap::with_capacity(n + 8);
    for &[a, b, c, d] in &fields[..n] {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&head[a..b]),
            HeaderValue::from_maybe_shared(head.slice(c..d)),
        ) else {
            return Parsed::Bad(StatusCode::BAD_REQUEST);
        };
        map.append(name, value);
    }
    let mut req = Request::new(B::default());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = map;
    Parsed::Request(req, !close)
}

/// For the fuzz target: request heads parsed from arbitrary bytes, one after another
/// as pipelined requests would be, each served one checked for its Host.
#[cfg(fuzzing)]
pub(crate) fn fuzz_parse(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Parsed::Request(req, _) = parse_request::<()>(&mut buf, 16 * 1024) {
        let _ = check_host(req.version(), req.uri(), req.headers());
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

    fn parsed(bytes: &[u8]) -> (Parsed<()>, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        (parse_request(&mut buf, 16 * 1024), buf)
    }

    #[test]
    fn a_bodiless_request_is_parsed_in_place_and_taken_off_the_buffer() {
        let (p, rest) =
            parsed(b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-One: 1\r\nx-one: 2\r\n\r\nGET /next HTTP/1.1\r\n");
        let Parsed::Request(req, keep_alive) = p else {
            panic!("not parsed as a request");
        };
        assert!(keep_alive);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/a");
        assert_eq!(req.uri().query(), Some("b=c"));
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "example.com");
        let ones: Vec<_> = req.headers().get_all("x-one").iter().collect();
        assert_eq!(ones, ["1", "2"]);
        assert_eq!(&rest[..], b"GET /next HTTP/1.1\r\n");
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let keeps = |bytes: &[u8]| match parsed(bytes).0 {
            Parsed::Request(_, keep_alive) => keep_alive,
            _ => panic!("not parsed as a request"),
        };
        assert!(keeps(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!keeps(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps(b"GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn bodies_and_upgrades_are_left_untouched() {
        for bytes in [
            &b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n\r\n",
        ] {
            let (p, rest) = parsed(bytes);
            assert!(matches!(p, Parsed::Declined), "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(&rest[..], bytes);
        }
    }

    #[test]
    fn malformed_heads_are_refused_with_the_status_hyper_gives() {
        let status = |bytes: &[u8]| match parsed(bytes).0 {
            Parsed::Bad(status) => status,
            _ => panic!("accepted: {:?}", String::from_utf8_lossy(bytes)),
        };
        assert_eq!(status(b"THIS IS NOT HTTP\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), StatusCode::BAD_REQUEST);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n"), StatusCode::BAD_REQUEST);
        let many: Vec<u8> = (0..=MAX_HEADERS)
            .flat_map(|i| format!("X-{i}: v\r\n").into_bytes())
            .collect();
        let req = [&b"GET / HTTP/1.1\r\n"[..], &many, b"\r\n"].concat();
        assert_eq!(status(&req), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(matches!(parsed(b"GET / HTTP/1.1\r\nHost: a").0, Parsed::Partial));
    }

    /// RFC 9112 section 6.1: a request with both `Content-Length` and
    /// `Transfer-Encoding` is refused, whichever comes first, and so is a bare LF
    /// anywhere in the head; neither is left to a parser that would accept it.
    #[test]
    fn smuggling_shapes_are_refused_before_anyone_reads_the_body() {
        for bytes in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        ] {
            let (p, rest) = parsed(bytes);
            assert!(
                matches!(p, Parsed::Bad(StatusCode::BAD_REQUEST)),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(&rest[..], bytes, "nothing is taken off a refused head");
        }
        // A head larger than the limit is a 431, however well formed.
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]);
        assert!(matches!(
            parse_request::<()>(&mut buf, 16),
            Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        ));
    }

    fn request(method: Method, target: &str, fields: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::builder().method(method).uri(target);
        for (name, value) in fields {
            req = req.header(*name, *value);
        }
        req.body(()).expect("request")
    }

    fn encoded(req: &Request<()>, body_len: Option<u64>, extra: Extra<'_>) -> (String, bool) {
        let mut out = b"left over".to_vec();
        let chunked = encode_head(&mut out, req, body_len, extra);
        (String::from_utf8(out).expect("utf-8"), chunked)
    }

    /// The head sent to an endpoint, byte for byte: the request line in HTTP/1.1, the
    /// request's fields in order, the proxy's own after them, and this hop's framing.
    #[test]
    fn a_request_head_is_encoded_to_exact_bytes() {
        let names = [HeaderName::from_static("x-forwarded-for")];
        let values = [HeaderValue::from_static("198.18.0.1")];
        let get = request(
            Method::GET,
            "/a?b=c",
            &[("host", "app.example"), ("x-one", "1"), ("x-one", "2")],
        );
        assert_eq!(
            encoded(&get, Some(0), Extra(&names, &values)),
            (
                "GET /a?b=c HTTP/1.1\r\nhost: app.example\r\nx-one: 1\r\nx-one: 2\r\nx-forwarded-for: 198.18.0.1\r\n\r\n"
                    .into(),
                false
            )
        );
        // An absolute-form target goes out in origin form.
        let absolute = request(Method::GET, "http://app.example", &[("host", "app.example")]);
        assert_eq!(
            encoded(&absolute, Some(0), Extra::default()).0,
            "GET / HTTP/1.1\r\nhost: app.example\r\n\r\n"
        );
        // A bodiless POST says so; a GET keeps a client's own `Content-Length: 0`.
        let post = request(Method::POST, "/", &[]);
        assert_eq!(
            encoded(&post, Some(0), Extra::default()).0,
            "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
        let get = request(Method::GET, "/", &[("content-length", "0")]);
        assert_eq!(
            encoded(&get, Some(0), Extra::default()).0,
            "GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
        // The client's framing fields are replaced by this hop's.
        let put = request(
            Method::PUT,
            "/up",
            &[("content-length", "99"), ("transfer-encoding", "chunked"), ("x-a", "b")],
        );
        assert_eq!(
            encoded(&put, Some(5), Extra::default()),
            ("PUT /up HTTP/1.1\r\nx-a: b\r\ncontent-length: 5\r\n\r\n".into(), false)
        );
        assert_eq!(
            encoded(&put, None, Extra::default()),
            (
                "PUT /up HTTP/1.1\r\nx-a: b\r\ntransfer-encoding: chunked\r\n\r\n".into(),
                true
            )
        );
    }
}
