//! Response heads on byte literals, in the manner of hyper's `proto/h1/role.rs` tests:
//! the bytes an endpoint sends, and the status, framing, reuse and lines read from them.

use http::header;

use super::*;

/// A final head read from `bytes` into a map, and what is left in the buffer.
fn head(bytes: &[u8], head_request: bool) -> (Result<Head, Error>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let parsed = match parse_head(&mut buf, head_request, None, &mut None) {
        Ok(Parsed::Final(head)) => Ok(head),
        Ok(Parsed::Informational) => panic!("informational: {:?}", String::from_utf8_lossy(bytes)),
        Ok(Parsed::Partial) => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
        Err(e) => Err(e),
    };
    (parsed, buf)
}

/// RFC 9112 section 6.3, one line per rule: how the body is delimited, and whether the
/// connection may carry another exchange after it.
#[test]
fn the_framing_of_a_response_follows_rfc_9112_section_6_3() {
    use Framing::*;
    let chunked = Chunked(super::Chunked::Size);
    for (bytes, head_request, status, framing, reusable) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..],
            false,
            200,
            Length(5),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            false,
            200,
            Length(0),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
            false,
            200,
            Length(2),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            200,
            chunked,
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n",
            false,
            200,
            chunked,
            true,
        ),
        // Chunked not last: the body runs to the close (RFC 9112 section 6.3, rule 4).
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            false,
            200,
            Close,
            false,
        ),
        // Both framings smell of smuggling: decoded as chunked, never reused.
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            200,
            chunked,
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
            200,
            chunked,
            false,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\n", false, 200, Close, false),
        // No body for HEAD, 204 and 304, whatever the fields say.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, 200, Done, true),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
            false,
            204,
            Done,
            true,
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
            304,
            Done,
            true,
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n",
            false,
            204,
            Done,
            true,
        ),
        // The endpoint's say on the connection (RFC 9112 section 9.3).
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
            false,
            200,
            Length(2),
            false,
        ),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
            false,
            200,
            Length(2),
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
            false,
            200,
            Length(2),
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 2\r\n\r\n",
            false,
            200,
            Length(2),
            false,
        ),
        (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1\r\n\r\n",
            false,
            503,
            Length(1),
            true,
        ),
    ] {
        let what = String::from_utf8_lossy(bytes);
        let head = head(bytes, head_request)
            .0
            .unwrap_or_else(|e| panic!("{e} for {what:?}"));
        assert_eq!(head.response.status(), status, "{what:?}");
        assert_eq!((head.framing, head.reusable), (framing, reusable), "{what:?}");
    }
}

/// RFC 9112 section 6.3, rule 5: a `Content-Length` that does not parse, or copies
/// that disagree, make the response unreadable; nothing of its body is guessed.
#[test]
fn a_bad_or_conflicting_content_length_is_an_error() {
    for (bytes, why) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
            "conflicting Content-Length values",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
            "conflicting Content-Length values",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2,\r\n\r\n", "bad Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "bad Content-Length",
        ),
        // Bad as well beside a Transfer-Encoding that would otherwise win.
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            "conflicting Content-Length values",
        ),
    ] {
        let what = String::from_utf8_lossy(bytes);
        match head(bytes, false).0 {
            Err(Error::Invalid(got)) => assert_eq!(got, why, "{what:?}"),
            Err(e) => panic!("{e} for {what:?}"),
            Ok(_) => panic!("accepted: {what:?}"),
        }
    }
}

/// The head is taken off the buffer and its fields become the response's; the body
/// stays behind for the framing to read.
#[test]
fn a_head_is_taken_off_the_buffer_and_the_body_left() {
    let (head, rest) = head(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\nServer:  nginx \r\n\r\nhello",
        false,
    );
    let head = head.expect("head");
    let r = &head.response;
    assert_eq!((r.status(), r.version()), (StatusCode::NOT_FOUND, Version::HTTP_11));
    assert_eq!(r.headers()[header::CONTENT_LENGTH], "5");
    let a: Vec<_> = r.headers().get_all("x-a").iter().collect();
    assert_eq!(a, ["1", "2"]);
    // Optional whitespace around a value is not part of it (RFC 9112 section 5.1).
    assert_eq!(r.headers()[header::SERVER], "nginx");
    assert!(head.raw.is_none());
    assert_eq!(&rest[..], b"hello");
}

/// 1xx responses other than 101 are consumed and skipped (RFC 9110 section 15.2); an
/// unasked 101, a status that is not three digits, and what is not HTTP are errors; a
/// head not yet whole takes nothing.
#[test]
fn informational_partial_and_malformed_heads() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n"[..]);
    assert!(matches!(
        parse_head(&mut buf, false, None, &mut None),
        Ok(Parsed::Informational)
    ));
    assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");
    assert!(matches!(
        parse_head(&mut buf, false, None, &mut None),
        Ok(Parsed::Partial)
    ));
    assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n");

    assert!(matches!(
        head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", false).0,
        Err(Error::Invalid("101 without an upgrade request"))
    ));
    assert!(matches!(
        head(b"HTTP/1.1 099 Low\r\n\r\n", false).0,
        Err(Error::Invalid("bad status code"))
    ));
    for bad in [
        &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
    ] {
        let got = head(bad, false).0;
        assert!(
            matches!(got, Err(Error::Parse(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let many: Vec<u8> = (0..=MAX_HEADERS)
        .flat_map(|i| format!("X-{i}: v\r\n").into_bytes())
        .collect();
    let bytes = [&b"HTTP/1.1 200 OK\r\n"[..], &many, b"\r\n"].concat();
    assert!(matches!(head(&bytes, false).0, Err(Error::HeadTooLarge)));
}

/// The head as a raw-head parse gives it: the lines passed on, or `None` when the head
/// went into the header map instead.
fn raw_lines(head: &[u8]) -> Option<(String, bool, bool)> {
    let mut buf = BytesMut::from(head);
    let Ok(Parsed::Final(head)) = parse_head(&mut buf, false, Some(&[]), &mut None) else {
        panic!("not a final head: {:?}", String::from_utf8_lossy(head));
    };
    let raw = head.raw?;
    assert!(head.response.headers().is_empty());
    let mut out = Vec::new();
    raw.write_to(&mut out);
    Some((String::from_utf8(out).ok()?, raw.content_length, raw.date))
}

#[test]
fn a_plain_head_passes_as_sent_and_an_unusual_one_goes_to_the_map() {
    let (lines, length, date) =
        raw_lines(b"HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: timeout=5\r\nCONNECTION: keep-alive\r\nb: 2\r\nContent-Length: 0\r\n\r\n")
            .expect("passes as sent");
    assert_eq!(lines, "A: 1\r\nb: 2\r\nContent-Length: 0\r\n");
    assert_eq!((length, date), (true, false));
    let (lines, _, date) = raw_lines(b"HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n").expect("passes as sent");
    assert_eq!((lines.as_str(), date), ("Date: x\r\n", true));
    assert_eq!(raw_lines(b"HTTP/1.1 204 No Content\r\n\r\n").expect("no lines").0, "");
    for unusual in [
        // A field named by Connection, a hop-by-hop field besides this hop's own, a
        // bare LF, more lines to leave out than a raw head holds.
        &b"HTTP/1.1 204 No Content\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n"[..],
        b"HTTP/1.1 204 No Content\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nA: 1\nB: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nKeep-Alive: 1\r\nKeep-Alive: 2\r\nConnection: keep-alive\r\nKeep-Alive: 3\r\n\r\n",
    ] {
        let mut buf = BytesMut::from(unusual);
        let Ok(Parsed::Final(head)) = parse_head(&mut buf, false, Some(&[]), &mut None) else {
            panic!("not a final head");
        };
        assert!(head.raw.is_none(), "{:?}", String::from_utf8_lossy(unusual));
        assert!(!head.response.headers().is_empty());
    }
}

/// A head holding a field the route's filters may change goes to the map, where they
/// can; one without passes as sent.
#[test]
fn a_head_with_a_field_a_filter_changes_goes_to_the_map() {
    let names = [Box::from("strict-transport-security"), Box::from("x-env")];
    let parse = |head: &[u8]| {
        let mut buf = BytesMut::from(head);
        let Ok(Parsed::Final(head)) = parse_head(&mut buf, false, Some(&names), &mut None) else {
            panic!("not a final head");
        };
        head
    };
    let plain = parse(b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n");
    assert!(plain.raw.is_some() && plain.response.headers().is_empty());
    for named in [
        &b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-ENV: prod\r\n\r\n",
    ] {
        let head = parse(named);
        assert!(head.raw.is_none(), "{:?}", String::from_utf8_lossy(named));
        assert_eq!(head.response.headers().len(), 2);
    }
}

#[test]
fn a_status_line_is_written_in_the_clients_version() {
    let mut out = b"left over".to_vec();
    status_line(&mut out, Version::HTTP_11, StatusCode::NOT_FOUND);
    assert_eq!(out, b"HTTP/1.1 404 Not Found\r\n");
    status_line(&mut out, Version::HTTP_10, StatusCode::OK);
    assert_eq!(out, b"HTTP/1.0 200 OK\r\n");
    status_line(&mut out, Version::HTTP_11, StatusCode::from_u16(599).expect("status"));
    assert_eq!(out, b"HTTP/1.1 599 \r\n");
}
