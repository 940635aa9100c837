//! Body framing on byte literals, in the manner of hyper's `proto/h1/decode.rs` tests:
//! each case is the bytes an endpoint sends and the body (or error) they make.

use http::HeaderMap;

use super::*;

/// Decodes what `buf` holds under `framing`: the data and trailers up to the end,
/// `Err(None)` when more bytes are needed, `Err(Some(_))` on malformed framing.
fn decode_all(buf: &mut BytesMut, framing: &mut Framing) -> Result<(Vec<u8>, Option<HeaderMap>), Option<Error>> {
    let (mut data, mut trailers) = (Vec::new(), None);
    loop {
        match decode_body(buf, framing).map_err(Some)? {
            Decoded::Frame(frame) => match frame.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Decoded::End => return Ok((data, trailers)),
            Decoded::NeedMore => return Err(None),
        }
    }
}

fn chunked(bytes: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), Option<Error>> {
    decode_all(&mut BytesMut::from(bytes), &mut Framing::Chunked(Chunked::Size))
}

/// The body decoder alone, on byte literals (RFC 9112 section 7.1): each malformed
/// chunking the request side refuses is an error here too, never a short body.
#[test]
fn chunked_decoding_on_byte_literals() {
    let (data, trailers) =
        chunked(b"5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\nHost: evil\r\n\r\n").expect("valid");
    assert_eq!(data, b"hello world");
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers.get("x-sum").map(|v| v.as_bytes()), Some(&b"1"[..]));
    assert!(
        trailers.get("host").is_none(),
        "RFC 9110 section 6.5.1: no Host in trailers"
    );
    for bad in [
        &b"0x5\r\nhello\r\n0\r\n\r\n"[..],
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"ffffffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        b"2\r\nhello\r\n0\r\n\r\n",
    ] {
        assert!(
            matches!(chunked(bad), Err(Some(Error::Invalid(_)))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Cut short: more is needed, which the caller turns into an error at the close.
    assert!(matches!(chunked(b"5\r\nhel"), Err(None)));
}

/// RFC 9112 section 7.1: the chunk size is hex digits only. A size that is not one
/// (a sign, nothing, an overflow of 64 bits) is refused rather than read as some
/// other length, which is how one hop's body becomes the next request.
#[test]
fn a_bad_chunk_size_is_an_error() {
    for bad in [
        &b"-1\r\nx\r\n0\r\n\r\n"[..],
        // No digit at all: not the last chunk, though httparse reads it as size 0.
        b"\r\nhello\r\n0\r\n\r\n",
        b"\r\n\r\n",
        b";ext\r\n\r\n",
        b"g\r\n",
        b"5 5\r\nhello\r\n0\r\n\r\n",
        b"10000000000000000\r\n",
    ] {
        assert!(
            matches!(chunked(bad), Err(Some(Error::Invalid("bad chunk size line")))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A size line (extensions included) longer than MAX_CHUNK_LINE never ends well.
    let mut long = b"1;ext=".to_vec();
    long.resize(MAX_CHUNK_LINE + 1, b'a');
    assert!(matches!(chunked(&long), Err(Some(Error::Invalid(_)))));
    // Data longer than its size: the byte after the data must start the CRLF.
    assert!(matches!(
        chunked(b"2\r\nabXX\r\n0\r\n\r\n"),
        Err(Some(Error::Invalid("chunk data longer than its size")))
    ));
    // A trailer section that is not one.
    assert!(matches!(
        chunked(b"0\r\nno colon\r\n\r\n"),
        Err(Some(Error::Invalid("bad trailer section")))
    ));
}

/// A chunked body split at every byte, as reads may bring it, decodes to the same
/// data and trailers, and the decoder stops exactly at its end: what follows (the next
/// response) stays in the buffer.
#[test]
fn chunked_decoding_across_split_buffers() {
    let body = b"5;name=value\r\nhello\r\n6\r\n world\r\nB\r\n 0123456789\r\n0\r\nX-Checksum: abc\r\n\r\n";
    let next = b"HTTP/1.1 200 OK\r\n";
    for at in 0..=body.len() {
        let mut buf = BytesMut::from(&body[..at]);
        let mut framing = Framing::Chunked(Chunked::Size);
        let (mut data, mut trailers) = (Vec::new(), None);
        let mut fed = false;
        loop {
            match decode_body(&mut buf, &mut framing).expect("valid at every split") {
                Decoded::Frame(frame) => match frame.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Decoded::NeedMore if !fed => {
                    buf.extend_from_slice(&body[at..]);
                    buf.extend_from_slice(next);
                    fed = true;
                }
                Decoded::NeedMore => panic!("stuck at split {at}"),
                Decoded::End => break,
            }
        }
        assert_eq!(data, b"hello world 0123456789", "split at {at}");
        assert_eq!(trailers.expect("trailers")["x-checksum"], "abc", "split at {at}");
        assert_eq!(framing, Framing::Done);
        if fed {
            assert_eq!(&buf[..], next, "split at {at}");
        }
    }
}

/// RFC 9112 section 6.3: a `Content-Length` body takes exactly that many bytes and
/// leaves the rest; a body without one runs until the close; a bodiless one takes
/// nothing.
#[test]
fn length_close_and_done_framing() {
    let mut buf = BytesMut::from(&b"hel"[..]);
    let mut framing = Framing::Length(5);
    assert!(matches!(decode_all(&mut buf, &mut framing), Err(None)));
    assert_eq!(framing, Framing::Length(2));
    buf.extend_from_slice(b"loHTTP/1.1");
    let (data, _) = decode_all(&mut buf, &mut framing).expect("the rest");
    assert_eq!((&data[..], &buf[..]), (&b"lo"[..], &b"HTTP/1.1"[..]));
    assert_eq!(framing, Framing::Done);

    let mut buf = BytesMut::from(&b"all of it"[..]);
    let mut framing = Framing::Close;
    assert!(
        matches!(decode_body(&mut buf, &mut framing), Ok(Decoded::Frame(f)) if f.data_ref().is_some_and(|d| d == "all of it"))
    );
    assert!(matches!(decode_body(&mut buf, &mut framing), Ok(Decoded::NeedMore)));

    for mut framing in [Framing::Done, Framing::Length(0)] {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        assert!(matches!(decode_body(&mut buf, &mut framing), Ok(Decoded::End)));
        assert_eq!((framing, buf.len()), (Framing::Done, 17));
    }
}

/// The chunk framing written for a body of unknown length, as bytes.
#[test]
fn chunks_are_written_as_rfc_9112_spells_them() {
    let mut out = Vec::new();
    chunk_size_line(&mut out, 0x1f);
    out.extend_from_slice(LAST_CHUNK);
    assert_eq!(out, b"1f\r\n0\r\n\r\n");
    let mut out = Vec::new();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    last_chunk_with_trailers(&mut out, &trailers);
    assert_eq!(out, b"0\r\ngrpc-status: 0\r\n\r\n");
    // What is written decodes back.
    let mut wire = Vec::new();
    chunk_size_line(&mut wire, 5);
    wire.extend_from_slice(b"hello\r\n");
    last_chunk_with_trailers(&mut wire, &trailers);
    let (data, got) = chunked(&wire).expect("round trip");
    assert_eq!((&data[..], got.expect("trailers")), (&b"hello"[..], trailers));
}

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
