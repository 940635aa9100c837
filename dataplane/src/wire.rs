//! Bytes on the wire shared by both sides of the proxy: the HTTP/1.1 server (to
//! clients) and client (to endpoints) write numbers with these, and the access log too;
//! and the host a request names, as routing and redirects compare it.

use std::borrow::Cow;

/// `n` in decimal, written at the end of `buf`.
pub fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// `n` in hexadecimal (a chunk size), written at the end of `buf`.
pub fn hex(mut n: u64, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Lower-cases a request host and strips its port and any trailing dot; borrows when
/// nothing needs changing, which is the common case.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: `[::1]:8080`.
        return Cow::Borrowed(rest.split_once(']').map_or(rest, |(ip, _)| ip));
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_http_wants_them() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), b"18446744073709551615");
        assert_eq!(hex(0, &mut [0; 16]), b"0");
        assert_eq!(hex(0x1f, &mut [0; 16]), b"1f");
        assert_eq!(hex(u64::MAX, &mut [0; 16]), b"ffffffffffffffff");
    }
}
