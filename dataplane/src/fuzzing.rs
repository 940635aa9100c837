//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`, which
//! `cargo fuzz` sets): each runs one parser that sees outside input on arbitrary bytes.
//! A panic, a hang or runaway memory in any of them is a bug.

/// Portico's own HTTP/1.1 request-head parser, and the Host checks on what it accepts.
pub fn request_head(data: &[u8]) {
    crate::codec::fuzz_request_head(data);
}

/// An endpoint's response head (status line, headers, framing) and its body framing.
pub fn response(data: &[u8]) {
    crate::codec::fuzz_response(data);
}

/// The chunked body decoder, with the bytes arriving in two reads.
pub fn chunked(data: &[u8]) {
    crate::codec::fuzz_chunked(data);
}

/// Host and path handling: a Host value checked and normalised as a request's, an
/// Ingress host parsed as a rule's and matched against it, and a path validated as
/// each path type.
pub fn host_and_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (host, path) = text.split_once('\n').unwrap_or((&text, "/"));
    let _ = crate::codec::valid_authority(host.as_bytes());
    let _ = crate::codec::check_line_endings(data);
    let normal = crate::table::normalize_host(host);
    if let Ok(rule) = crate::table::HostMatch::parse(host) {
        let _ = rule.matches(&normal);
    }
    use crate::table::PathKind;
    for kind in [PathKind::Exact, PathKind::Prefix, PathKind::ImplementationSpecific] {
        let _ = crate::table::validate_path(path, kind);
    }
}
