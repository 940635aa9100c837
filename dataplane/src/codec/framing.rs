//! How a message body is delimited on the wire (RFC 9112 sections 6 and 7), both ways:
//! decoding an endpoint's response body off a buffer ([`decode_body`]), encoding the
//! chunks of a body sent on, and the fields a trailer section may carry. Pure
//! functions of bytes: the connection that reads and writes them is the caller's.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;

use super::Error;
use crate::wire::hex;

/// The largest chunk-size line or trailer section.
const MAX_CHUNK_LINE: usize = 4096;

/// How a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `remaining` bytes to go.
    Length(u64),
    Chunked(Chunked),
    /// Until the endpoint closes the connection.
    Close,
    /// Nothing more.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// `remaining` bytes of chunk data to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// What [`decode_body`] found in the buffer.
#[derive(Debug)]
pub enum Decoded {
    Frame(Frame<Bytes>),
    /// The body ended where its framing said.
    End,
    /// Not enough buffered to go on (for [`Framing::Close`], the end of the stream
    /// ends the body; for the others it cuts it short).
    NeedMore,
}

/// Takes the next piece of a response body off the front of `buf`, advancing
/// `framing`: a pure function of the bytes, so that it can be tested with byte
/// literals and fuzzed. Chunked framing follows RFC 9112 section 7.1: a chunk-size
/// line (hex digits, optional extensions) ended by CRLF, the data, CRLF; after the
/// last chunk a trailer section, whose fields RFC 9110 section 6.5.1 forbids are
/// dropped. A size line or trailer section longer than [`MAX_CHUNK_LINE`] is an error.
pub fn decode_body(buf: &mut BytesMut, framing: &mut Framing) -> Result<Decoded, Error> {
    loop {
        match framing {
            Framing::Done | Framing::Length(0) => {
                *framing = Framing::Done;
                return Ok(Decoded::End);
            }
            Framing::Length(remaining) | Framing::Chunked(Chunked::Data(remaining)) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = buf.len().min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= take as u64;
                if *framing == Framing::Chunked(Chunked::Data(0)) {
                    *framing = Framing::Chunked(Chunked::DataEnd);
                }
                return Ok(Decoded::Frame(Frame::data(buf.split_to(take).freeze())));
            }
            Framing::Close => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                return Ok(Decoded::Frame(Frame::data(buf.split().freeze())));
            }
            Framing::Chunked(Chunked::Size) => match httparse::parse_chunk_size(buf) {
                // RFC 9112 section 7.1: `chunk-size = 1*HEXDIG`. httparse takes a line
                // with no digit (empty, or only an extension) as size 0, the last
                // chunk: a body cut short where the endpoint meant something else.
                Ok(httparse::Status::Complete(_)) if !buf.first().is_some_and(u8::is_ascii_hexdigit) => {
                    return Err(Error::Invalid("bad chunk size line"));
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    *framing = Framing::Chunked(if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    });
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => return Ok(Decoded::NeedMore),
                _ => return Err(Error::Invalid("bad chunk size line")),
            },
            Framing::Chunked(Chunked::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(Decoded::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(Error::Invalid("chunk data longer than its size"));
                }
                buf.advance(2);
                *framing = Framing::Chunked(Chunked::Size);
            }
            Framing::Chunked(Chunked::Trailers) => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                    *framing = Framing::Done;
                    return Ok(Decoded::End);
                }
                let mut fields = [httparse::EMPTY_HEADER; 32];
                match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((used, fields))) => {
                        let mut trailers = HeaderMap::with_capacity(fields.len());
                        for f in fields {
                            if let (Ok(name), Ok(value)) = (
                                HeaderName::from_bytes(f.name.as_bytes()),
                                HeaderValue::from_bytes(f.value),
                            ) && trailer_allowed(&name)
                            {
                                trailers.append(name, value);
                            }
                        }
                        buf.advance(used);
                        *framing = Framing::Done;
                        return Ok(Decoded::Frame(Frame::trailers(trailers)));
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => return Ok(Decoded::NeedMore),
                    _ => return Err(Error::Invalid("bad trailer section")),
                }
            }
        }
    }
}

/// Appends the size line of a chunk of `len` bytes (its data follows, then CRLF).
pub fn chunk_size_line(out: &mut Vec<u8>, len: u64) {
    out.extend_from_slice(hex(len, &mut [0; 16]));
    out.extend_from_slice(b"\r\n");
}

/// The last chunk with no trailers: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends the last chunk and a trailer section holding `trailers`.
pub fn last_chunk_with_trailers(out: &mut Vec<u8>, trailers: &HeaderMap) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
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
mod tests;
