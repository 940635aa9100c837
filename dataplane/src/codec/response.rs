//! An HTTP/1.1 response head (RFC 9112 sections 4 to 6): read from an endpoint's
//! bytes ([`parse_head`]), with the framing of the body that follows and whether the
//! connection may carry another exchange; its lines kept as they came when they can
//! pass on unchanged ([`RawHead`]); and a status line written for a client.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};

use super::Error;
use super::framing::{Chunked, Framing};

/// The largest response head (status line and headers) read before giving up.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header lines a response head may have.
pub const MAX_HEADERS: usize = 128;

/// A response head read, and how its body is framed.
pub struct Head {
    pub response: Response<()>,
    pub framing: Framing,
    /// The connection may carry another exchange once this body has been read.
    pub reusable: bool,
    /// The header lines as they came, when asked for and passed on unchanged; the
    /// response's map is then empty.
    pub raw: Option<RawHead>,
}

// Returned, never stored: boxing the head would cost an allocation per response.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Final(Head),
    /// A 1xx response other than 101, consumed and skipped.
    Informational,
    Partial,
}

/// Whether a response head may come as a [`RawHead`] (`Some`), and the names that rule
/// that out: fields the route's filters may change, which must then be in a map (as
/// `HeaderName::as_str` gives them: compared without a lookup per field).
pub type Raw<'a> = Option<&'a [Box<str>]>;

/// `spare` is a map to fill, taken only for a final response. With `raw`, a head the
/// client's writer can send on as it came is kept as a [`RawHead`] instead, and the
/// response's map stays empty.
pub fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
    raw: Raw<'_>,
    spare: &mut Option<HeaderMap>,
) -> Result<Parsed, Error> {
    // Where each header's name and value lie in the buffer; the head is then split off
    // and the values become slices of it, not copies.
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let (len, code, minor, count) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len =
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut fields) {
                Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
                Ok(httparse::Status::Complete(_)) => return Err(Error::HeadTooLarge),
                Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
                Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
                Err(e) => return Err(Error::Parse(e)),
            };
        let base = buf.as_ptr() as usize;
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let name = h.name.as_ptr() as usize - base;
            let value = h.value.as_ptr() as usize - base;
            *span = (
                name as u32,
                (name + h.name.len()) as u32,
                value as u32,
                (value + h.value.len()) as u32,
            );
        }
        (
            len,
            resp.code.unwrap_or(0),
            resp.version.unwrap_or(1),
            resp.headers.len(),
        )
    };
    let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("bad status code"))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        buf.advance(len);
        return Ok(Parsed::Informational);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(Error::Invalid("101 without an upgrade request"));
    }
    let spans = &spans[..count];
    let head = buf.split_to(len).freeze();
    let scan = Scan::of(&head, spans);
    let version = if minor == 0 { Version::HTTP_10 } else { Version::HTTP_11 };
    let (framing, mut reusable) = scan.framing(&head, status, head_request)?;
    reusable &= scan.keep_alive(version);
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    let raw = match raw {
        Some([]) => RawHead::of(&head, spans, &scan),
        Some(names) if !spans.iter().any(|s| names.iter().any(|n| is_name(&head, *s, n))) => {
            RawHead::of(&head, spans, &scan)
        }
        _ => None,
    };
    if raw.is_none() {
        let mut headers = spare.take().unwrap_or_default();
        headers.clear();
        headers.reserve(count);
        for &(ns, ne, vs, ve) in spans {
            let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
                .map_err(|_| Error::Invalid("bad header name"))?;
            // httparse allows only what a header value may hold.
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
                .map_err(|_| Error::Invalid("bad header value"))?;
            headers.append(name, value);
        }
        *response.headers_mut() = headers;
    }
    Ok(Parsed::Final(Head {
        response,
        framing,
        reusable,
        raw,
    }))
}

/// Whether the field at `span` of `head` is named `name`.
fn is_name(head: &[u8], (ns, ne, _, _): (u32, u32, u32, u32), name: &str) -> bool {
    head[ns as usize..ne as usize].eq_ignore_ascii_case(name.as_bytes())
}

/// A response header's meaning to this hop, told from its name alone.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    Date,
    /// `TE`, `Trailer`, `Upgrade` and the `Proxy-*` family: hop-by-hop, and rare.
    OtherHop,
    EndToEnd,
}

impl Field {
    fn of(name: &[u8]) -> Field {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        match name.len() {
            4 if is(b"date") => Field::Date,
            10 if is(b"connection") => Field::Connection,
            10 if is(b"keep-alive") => Field::KeepAlive,
            14 if is(b"content-length") => Field::ContentLength,
            17 if is(b"transfer-encoding") => Field::TransferEncoding,
            2 if is(b"te") => Field::OtherHop,
            7 if is(b"trailer") || is(b"upgrade") => Field::OtherHop,
            16 if is(b"proxy-connection") => Field::OtherHop,
            18 if is(b"proxy-authenticate") => Field::OtherHop,
            19 if is(b"proxy-authorization") => Field::OtherHop,
            _ => Field::EndToEnd,
        }
    }
}

/// What one pass over a response head's fields finds for this hop.
struct Scan {
    /// The one `Content-Length`.
    length: Option<u64>,
    /// Copies of `Content-Length` that disagree or do not parse: an error unless the
    /// response has no body anyway.
    bad_length: Option<&'static str>,
    /// The last `Transfer-Encoding` value, as a span of the head.
    transfer_encoding: Option<(u32, u32)>,
    close: bool,
    keep: bool,
    /// `Connection` names a field other than `close` and `keep-alive`.
    connection_names: bool,
    date: bool,
    other_hop: bool,
    /// This hop's own lines (`Connection`, `Keep-Alive`, `Transfer-Encoding`), by
    /// index: the first [`RAW_SKIPS`], and how many there are.
    own: [usize; RAW_SKIPS],
    owns: usize,
}

impl Scan {
    fn of(head: &[u8], spans: &[(u32, u32, u32, u32)]) -> Scan {
        let mut scan = Scan {
            length: None,
            bad_length: None,
            transfer_encoding: None,
            close: false,
            keep: false,
            connection_names: false,
            date: false,
            other_hop: false,
            own: [0; RAW_SKIPS],
            owns: 0,
        };
        for (i, &(ns, ne, vs, ve)) in spans.iter().enumerate() {
            let value = &head[vs as usize..ve as usize];
            let field = Field::of(&head[ns as usize..ne as usize]);
            if matches!(field, Field::Connection | Field::KeepAlive | Field::TransferEncoding) {
                if let Some(own) = scan.own.get_mut(scan.owns) {
                    *own = i;
                }
                scan.owns += 1;
            }
            match field {
                Field::ContentLength => scan.content_length(value),
                Field::TransferEncoding => scan.transfer_encoding = Some((vs, ve)),
                Field::Connection => {
                    for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                        if token.eq_ignore_ascii_case(b"close") {
                            scan.close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            scan.keep = true;
                        } else if !token.is_empty() {
                            scan.connection_names = true;
                        }
                    }
                }
                Field::Date => scan.date = true,
                Field::OtherHop => scan.other_hop = true,
                Field::KeepAlive | Field::EndToEnd => {}
            }
        }
        scan
    }

    /// Every copy of `Content-Length` must agree, and parse.
    fn content_length(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                self.bad_length.get_or_insert("bad Content-Length");
                return;
            }
            let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if self.length.is_some_and(|l| l != n) {
                self.bad_length.get_or_insert("conflicting Content-Length values");
            }
            self.length = Some(n);
        }
    }

    /// RFC 9112 section 6.3: how the body is delimited, and whether the connection can
    /// be trusted after it.
    fn framing(&self, head: &[u8], status: StatusCode, head_request: bool) -> Result<(Framing, bool), Error> {
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok((Framing::Done, true));
        }
        if let Some(bad) = self.bad_length {
            return Err(Error::Invalid(bad));
        }
        if let Some((vs, ve)) = self.transfer_encoding {
            let last = head[vs as usize..ve as usize].rsplit(|&b| b == b',').next();
            let chunked = last.is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            // Both framings at once smell of request smuggling: decode by the stronger
            // one, and never reuse the connection.
            return Ok(match chunked {
                true => (Framing::Chunked(Chunked::Size), self.length.is_none()),
                false => (Framing::Close, false),
            });
        }
        Ok(match self.length {
            Some(n) => (Framing::Length(n), true),
            None => (Framing::Close, false),
        })
    }

    /// Whether the endpoint lets the connection carry another exchange.
    fn keep_alive(&self, version: Version) -> bool {
        !self.close && (version == Version::HTTP_11 || self.keep)
    }
}

/// The most hop-by-hop lines a [`RawHead`] leaves out; a head with more is read into a
/// header map instead.
const RAW_SKIPS: usize = 3;

/// An endpoint's response header lines as they came, for a client writer that sends
/// them on unchanged: the common response passes through without a header map, its
/// names neither parsed nor hashed (about a tenth of a request's work in user space).
/// This hop's own lines (`Connection`, `Keep-Alive`, `Transfer-Encoding`) are left
/// out. A head with other hop-by-hop fields, a `Connection` naming further fields, a
/// line not ended by CRLF, or both `Transfer-Encoding` and `Content-Length`, is read
/// into a map instead.
///
/// Small, as it rides in every response body: a declared `Content-Length` is the body's
/// exact size hint, so only its presence is kept.
#[derive(Debug)]
pub struct RawHead {
    /// The header lines, each with its CRLF; shorter than [`MAX_HEAD`].
    block: Bytes,
    /// Lines left out, as ranges of `block` in order.
    skip: [(u16, u16); RAW_SKIPS],
    skips: u8,
    /// Whether a `Content-Length` line is among them.
    pub content_length: bool,
    /// Whether a `Date` line is among them.
    pub date: bool,
}

impl RawHead {
    fn of(head: &Bytes, spans: &[(u32, u32, u32, u32)], scan: &Scan) -> Option<RawHead> {
        let both_framings = scan.length.is_some() && scan.transfer_encoding.is_some();
        if scan.other_hop
            || scan.connection_names
            || both_framings
            || scan.owns > RAW_SKIPS
            || !head.ends_with(b"\r\n\r\n")
        {
            return None;
        }
        let end = head.len() - 2;
        let start = spans.first().map_or(end, |s| s.0 as usize);
        let line_end = |i: usize| spans.get(i + 1).map_or(end, |next| next.0 as usize);
        for (i, &(_, _, _, ve)) in spans.iter().enumerate() {
            // Only optional whitespace and CRLF may follow the value: a bare LF ends
            // the line for httparse, and is not passed on.
            let gap = &head[ve as usize..line_end(i)];
            if !gap.ends_with(b"\r\n") || !gap[..gap.len() - 2].iter().all(|&b| b == b' ' || b == b'\t') {
                return None;
            }
        }
        let mut skip = [(0, 0); RAW_SKIPS];
        for (range, &i) in skip.iter_mut().zip(&scan.own[..scan.owns]) {
            *range = (
                u16::try_from(spans[i].0 as usize - start).ok()?,
                u16::try_from(line_end(i) - start).ok()?,
            );
        }
        Some(RawHead {
            block: head.slice(start..end),
            skip,
            skips: scan.owns as u8,
            content_length: scan.length.is_some(),
            date: scan.date,
        })
    }

    /// Appends the lines passed on, each with its CRLF.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut at = 0;
        for &(from, to) in &self.skip[..usize::from(self.skips)] {
            out.extend_from_slice(&self.block[at..from as usize]);
            at = to as usize;
        }
        out.extend_from_slice(&self.block[at..]);
    }
}

/// Starts `out` afresh with a status line in the client's version.
pub fn status_line(out: &mut Vec<u8>, version: Version, status: StatusCode) {
    out.clear();
    out.extend_from_slice(if version == Version::HTTP_11 {
        b"HTTP/1.1 "
    } else {
        b"HTTP/1.0 "
    });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
