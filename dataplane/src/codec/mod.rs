//! HTTP/1.1 as bytes (RFC 9112), and nothing else: no socket, no buffer management, no
//! waiting. Both Portico's own HTTP/1.1 server side and its client to endpoints frame
//! messages through here, and each rule is tested on byte literals, as hyper tests its
//! `proto/h1/role.rs`; the fuzz targets run the same functions.
//!
//! - [`request`]: a request head read (the server side) and written (the client), and
//!   the checks on what a client sends: `Host`, line endings, framing fields.
//! - [`response`]: a response head read (the client) with its body's framing and the
//!   connection's reuse, its lines kept as they came ([`RawHead`]), a status line
//!   written (the server side).
//! - [`framing`]: bodies by `Content-Length`, chunks or the close, decoded and
//!   encoded, and what a trailer section may carry.

pub mod framing;
pub mod request;
pub mod response;

pub use framing::{clean_trailers, trailer_allowed};
#[cfg(fuzzing)]
pub(crate) use request::fuzz_parse as fuzz_request_head;
pub use request::{BadHead, BadHost, Extra, check_host, check_line_endings, valid_authority};
pub use response::{Raw, RawHead};

#[cfg(fuzzing)]
use bytes::BytesMut;
#[cfg(fuzzing)]
use framing::{Chunked, Decoded, Framing, decode_body};
#[cfg(fuzzing)]
use response::{Parsed, parse_head};

/// Why bytes from an endpoint are not a well-framed HTTP/1.1 response.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid response head: {0}")]
    Parse(httparse::Error),
    #[error(
        "response head larger than {} bytes or {} lines",
        response::MAX_HEAD,
        response::MAX_HEADERS
    )]
    HeadTooLarge,
    #[error("invalid response: {0}")]
    Invalid(&'static str),
}

/// For the fuzz target: a response head read from arbitrary bytes (into a map and as
/// raw lines), then its body decoded as the head frames it.
#[cfg(fuzzing)]
pub(crate) fn fuzz_response(data: &[u8]) {
    for raw in [None, Some(&[Box::from("server")][..])] {
        let mut buf = BytesMut::from(data);
        let mut spare = None;
        loop {
            match parse_head(&mut buf, false, raw, &mut spare) {
                Ok(Parsed::Informational) => continue,
                Ok(Parsed::Final(head)) => {
                    if let Some(raw) = &head.raw {
                        raw.write_to(&mut Vec::new());
                    }
                    let mut framing = head.framing;
                    while let Ok(Decoded::Frame(_)) = decode_body(&mut buf, &mut framing) {}
                    break;
                }
                Ok(Parsed::Partial) | Err(_) => break,
            }
        }
    }
}

/// For the fuzz target: a chunked body decoded from arbitrary bytes, fed in two parts
/// split where the first byte says, as reads would bring them.
#[cfg(fuzzing)]
pub(crate) fn fuzz_chunked(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(data.len());
    let mut framing = Framing::Chunked(Chunked::Size);
    let mut buf = BytesMut::from(&data[..at]);
    let mut total = 0usize;
    for more in [&data[at..], &[][..]] {
        loop {
            match decode_body(&mut buf, &mut framing) {
                Ok(Decoded::Frame(frame)) => {
                    total += frame.data_ref().map_or(0, |d| d.len());
                    assert!(total <= data.len(), "more body than bytes");
                }
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::End) | Err(_) => return,
            }
        }
        buf.extend_from_slice(more);
    }
}
