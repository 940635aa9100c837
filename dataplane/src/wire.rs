//! Bytes on the wire shared by both sides of the proxy: the HTTP/1.1 server (to
//! clients) and client (to endpoints) write numbers with these, and the access log too.

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
