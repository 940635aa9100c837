"""Hostile framings, sent byte for byte over raw sockets to an endpoint that records
every byte it receives: what the client gets, and that nothing malformed reaches the
endpoint. Each case cites the rule (RFC section, or what nginx does) it pins."""

import socket
import ssl
import struct
import time

import pytest

from harness import ByteLogBackend, raw_exchange
from k8s import Config, path, rule
from test_tls import CA, tls_secret

HOST = "raw.local"


@pytest.fixture
def logged():
    be = ByteLogBackend()
    yield be
    be.close()


def routed_to(be):
    cfg = Config()
    cfg.backend("raw", [be])
    cfg.ingress("raw", rules=[rule(HOST, path("/", "raw"))])
    return cfg


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CA(tmp_path_factory.mktemp("ca"))


def routed_over_tls(be, ca):
    """HOST's route on the HTTPS port too, with a certificate for it."""
    cfg = Config()
    cfg.backend("raw", [be])
    ing = cfg.ingress("raw", rules=[rule(HOST, path("/", "raw"))])
    ing["spec"]["tls"] = [{"hosts": [HOST], "secretName": "raw"}]
    cfg.add(tls_secret("raw", *ca.leaf(HOST)))
    return cfg


def tls_connection(p, ca):
    """An HTTP/1.1 connection over TLS (no ALPN offered, as curl --http1.1 or an old
    client would), verified against the test CA."""
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    raw = socket.create_connection((p.ip, p.https_port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=HOST)


def tls_exchange(p, ca, data, timeout=10):
    """`raw_exchange` over TLS: (everything received, whether the peer closed)."""
    with tls_connection(p, ca) as s:
        s.sendall(data)
        s.settimeout(timeout)
        chunks = []
        try:
            while b := s.recv(65536):
                chunks.append(b)
        except (socket.timeout, ssl.SSLError, ConnectionResetError):
            return b"".join(chunks), False
        return b"".join(chunks), True


def refused(p, be, data, status=b"400"):
    """Sends `data`; asserts the answer is `status`, the connection closed, and the
    endpoint saw nothing at all."""
    got, closed = raw_exchange(p.ip, p.http_port, data, timeout=10)
    assert got.startswith(b"HTTP/1.1 " + status), got[:300]
    assert closed, "connection left open after a refused request"
    time.sleep(0.3)
    assert be.received == b"", be.received[:300]


HOST_CASES = {
    # RFC 9112 section 3.2.2: an absolute-form target's authority is the host; a Host
    # naming another is refused (nginx: 400), not routed by one and forwarded with the other.
    "absolute-form-other-host": b"GET http://raw.local/a HTTP/1.1\r\nHost: other.local\r\n\r\n",
    # RFC 9112 section 3.2: "more than one Host header field line" is a 400.
    "two-host-lines": b"GET /a HTTP/1.1\r\nHost: raw.local\r\nHost: other.local\r\n\r\n",
    # RFC 9112 section 3.2: an HTTP/1.1 request "that lacks a Host header field" is a 400.
    "no-host": b"GET /a HTTP/1.1\r\nX-A: 1\r\n\r\n",
    # RFC 9112 section 3.2 and RFC 3986 section 3.2.2: Host is uri-host [":" port].
    "host-with-space": b"GET /a HTTP/1.1\r\nHost: raw.local other\r\n\r\n",
    "host-with-path": b"GET /a HTTP/1.1\r\nHost: a/b?c#d\r\n\r\n",
    "empty-host": b"GET /a HTTP/1.1\r\nHost: \r\n\r\n",
    # The same with a body: refused before the body is read, and never forwarded.
    "two-hosts-with-body": b"POST /a HTTP/1.1\r\nHost: raw.local\r\nHost: other.local\r\nContent-Length: 5\r\n\r\nhello",
}


@pytest.mark.parametrize("data", HOST_CASES.values(), ids=HOST_CASES.keys())
def test_host_violations_are_400_and_never_forwarded(portico, logged, data):
    p = portico(routed_to(logged))
    refused(p, logged, data)


def test_a_matching_absolute_form_target_is_served(portico, logged):
    """RFC 9112 section 3.2.2: absolute form with the same host is a valid request."""
    p = portico(routed_to(logged))
    got, _ = raw_exchange(
        p.ip, p.http_port, b"GET http://raw.local/a HTTP/1.1\r\nHost: RAW.local\r\nConnection: close\r\n\r\n"
    )
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    assert b"\r\nhost: raw.local\r\n" in logged.received.lower()


def h2_request(fields):
    """An HTTP/2 prior-knowledge connection's first bytes: the preface, SETTINGS, and one
    HEADERS frame (stream 1, END_STREAM) of literal fields without Huffman coding."""
    block = b""
    for name, value in fields:
        assert len(name) < 127 and len(value) < 127
        block += b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    frame = lambda kind, flags, stream, payload: (
        struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
    )
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 0x5, 1, block)


def h2_status(data):
    """The status of the first response HEADERS on stream 1, from its first field (an
    indexed `:status` from HPACK's static table), or the RST_STREAM error code."""
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        kind, stream = data[3], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        payload = data[9 : 9 + length]
        data = data[9 + length :]
        if stream == 1 and kind == 1:
            return {0x88: 200, 0x8C: 400, 0x8D: 404}.get(payload[0], payload[:4])
        if stream == 1 and kind == 3:
            return "reset %d" % int.from_bytes(payload, "big")
    return None


@pytest.mark.parametrize(
    "fields",
    [
        # RFC 9113 section 8.3.1: a Host that differs from :authority makes the request malformed.
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a"), (b":authority", b"raw.local"), (b"host", b"other.local")],
        # RFC 9113 section 8.3.1: no :authority and no Host.
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a")],
    ],
    ids=["authority-and-other-host", "no-authority-no-host"],
)
def test_http2_host_violations_are_400_and_never_forwarded(portico, logged, fields):
    p = portico(routed_to(logged))
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(h2_request(fields))
        got = b""
        deadline = time.monotonic() + 5
        while h2_status(got) is None and time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            got += b
    assert h2_status(got) == 400, got[:300]
    time.sleep(0.3)
    assert logged.received == b""


def streaming_to(be):
    """An Ingress with `proxy-request-buffering: "off"`: bodies stream as they come."""
    cfg = Config()
    cfg.backend("raw", [be])
    cfg.ingress(
        "raw",
        rules=[rule(HOST, path("/", "raw"))],
        annotations={"nginx.ingress.kubernetes.io/proxy-request-buffering": "off"},
    )
    return cfg


def test_forbidden_trailer_fields_are_dropped(portico, logged):
    """RFC 9110 section 6.5.1: framing, routing and modifiers must not come in
    trailers; a streamed chunked body reaches the endpoint with the harmless trailer
    only. (A body read ahead goes with a Content-Length, and no trailers at all.)"""
    p = portico(streaming_to(logged))
    data = (
        b"POST /t HTTP/1.1\r\nHost: raw.local\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nHost: evil.example\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 99\r\nX-Forwarded-For: 6.6.6.6\r\nX-Checksum: abc\r\n\r\n"
    )
    got, _ = raw_exchange(p.ip, p.http_port, data, timeout=3)
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    seen = logged.received.lower()
    assert b"hello" in seen
    assert b"x-checksum: abc" in seen
    for smuggled in [b"evil.example", b"content-length: 99", b"6.6.6.6"]:
        assert smuggled not in seen, seen
    # The only Transfer-Encoding line is the proxy's own, in the head.
    assert seen.count(b"transfer-encoding") == 1, seen


FRAMING_CASES = {
    # RFC 9112 section 6.1: both framings "ought to be handled as an error"; nginx: 400.
    "length-and-chunked": b"POST /a HTTP/1.1\r\nHost: raw.local\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunked-and-length": b"POST /a HTTP/1.1\r\nHost: raw.local\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    # RFC 9112 section 2.2 lets a recipient accept a bare LF; nginx refuses it in a head.
    "bare-lf-request-line": b"GET /a HTTP/1.1\nHost: raw.local\r\n\r\n",
    "bare-lf-header": b"GET /a HTTP/1.1\r\nHost: raw.local\nX-A: 1\r\n\r\n",
    "bare-lf-end": b"GET /a HTTP/1.1\r\nHost: raw.local\r\n\n",
    "bare-lf-with-body": b"POST /a HTTP/1.1\r\nHost: raw.local\nContent-Length: 2\r\n\r\nhi",
}


@pytest.mark.parametrize("data", FRAMING_CASES.values(), ids=FRAMING_CASES.keys())
def test_ambiguous_framing_is_400_and_never_forwarded(portico, logged, data):
    p = portico(routed_to(logged))
    refused(p, logged, data)


@pytest.mark.parametrize("data", FRAMING_CASES.values(), ids=FRAMING_CASES.keys())
def test_ambiguous_framing_over_tls_is_400_and_never_forwarded(portico, logged, ca, data):
    """The same heads over TLS: Portico's own parser reads them there too, so a bare LF
    or both framings are refused as on the plain port (hyper would take the bare LF as
    a line end and drop the Content-Length beside Transfer-Encoding). The close is
    TLS's own: close_notify, then the end of the stream."""
    p = portico(routed_over_tls(logged, ca))
    got, closed = tls_exchange(p, ca, data)
    assert got.startswith(b"HTTP/1.1 400"), got[:300]
    assert closed, "connection left open, or ended without close_notify, after a refused request"
    time.sleep(0.3)
    assert logged.received == b"", logged.received[:300]


@pytest.mark.parametrize(
    "first, status",
    [
        (b"GET / HTTP/1.1\r\nHost: raw.local\r\nX-Big: ", b"431"),
        (b"THIS IS NOT HTTP\r\n\r\n", b"400"),
    ],
    ids=["431-header-too-large", "400-garbage"],
)
def test_an_error_that_closes_lingers_so_the_client_reads_it(portico, logged, first, status):
    """nginx's lingering close: after an error that ends the connection, what the
    client is still sending is read and dropped, so the response is not destroyed by
    a TCP reset (RFC 9112 section 9.6). A client sending 300 KB reads the answer and
    then a clean end of stream, every time."""
    p = portico(routed_to(logged))
    for _ in range(10):
        with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
            s.sendall(first + b"a" * 300_000)
            got = b""
            while True:
                b = s.recv(65536)  # a reset raises ConnectionResetError here
                if not b:
                    break
                got += b
        assert got.startswith(b"HTTP/1.1 " + status), got[:200]
    assert logged.received == b""


@pytest.mark.parametrize(
    "first, status",
    [
        (b"GET / HTTP/1.1\r\nHost: raw.local\r\nX-Big: ", b"431"),
        (b"THIS IS NOT HTTP\r\n\r\n", b"400"),
    ],
    ids=["431-header-too-large", "400-garbage"],
)
def test_an_error_that_closes_over_tls_lingers_so_the_client_reads_it(portico, logged, ca, first, status):
    """The lingering close over TLS: the answer, close_notify and FIN, then what the
    client still sends is read off the socket and dropped, so its 300 KB do not turn
    into a TCP reset that would destroy the answer (RFC 9112 section 9.6)."""
    p = portico(routed_over_tls(logged, ca))
    for _ in range(5):
        with tls_connection(p, ca) as s:
            s.sendall(first + b"a" * 300_000)
            got = b""
            while b := s.recv(65536):  # a reset raises ConnectionResetError here
                got += b
        assert got.startswith(b"HTTP/1.1 " + status), got[:200]
    assert logged.received == b""


CHUNK_CASES = {
    # RFC 9112 section 7.1: chunk-size is 1*HEXDIG and every chunk line ends in CRLF.
    "bare-lf-after-size": b"2\nxx\r\n0\r\n\r\n",
    "0x-prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "space-before-size": b" 5\r\nhello\r\n0\r\n\r\n",
    "size-overflows": b"f" * 26 + b"\r\nhello\r\n0\r\n\r\n",
    "crlf-in-quoted-extension": b'5;a="x\r\ny"\r\nhello\r\n0\r\n\r\n',
    "data-longer-than-size": b"2\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("body", CHUNK_CASES.values(), ids=CHUNK_CASES.keys())
def test_bad_chunking_is_400_and_never_forwarded(portico, logged, body):
    """The README's promise: malformed framing is a 400 and nothing is forwarded. The
    body is read before the endpoint is contacted (ingress-nginx's default
    `proxy-request-buffering: on`), so the head never leaves either."""
    p = portico(routed_to(logged))
    refused(p, logged, b"POST /a HTTP/1.1\r\nHost: raw.local\r\nTransfer-Encoding: chunked\r\n\r\n" + body)


def test_a_chunk_declared_beyond_the_body_limit_is_413_and_never_forwarded(portico, logged):
    """A chunk of 2^63-1 bytes against the default 1m limit: 413 once the limit is
    passed, with nothing of the request at the endpoint."""
    p = portico(routed_to(logged))
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nHost: raw.local\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\n")
        got = b""
        try:
            for _ in range(40):
                s.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(10)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except (ConnectionResetError, socket.timeout):
            pass
    assert got.startswith(b"HTTP/1.1 413"), got[:300]
    time.sleep(0.3)
    assert logged.received == b""


def test_a_body_that_reaches_the_limit_then_passes_it_is_413_and_never_forwarded(portico, logged):
    """A chunked body that stops for a while at exactly the default 1m limit, then
    sends one byte more: ingress-nginx reads the whole body before it contacts the
    upstream (`proxy-request-buffering: on`), so the endpoint sees nothing and the
    client gets 413. The read-ahead is 1 MiB too, so a body that fills it exactly must
    still be read on rather than start streaming."""
    p = portico(routed_to(logged))
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(b"POST /a HTTP/1.1\r\nHost: raw.local\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n")
        s.sendall(b"a" * (1 << 20) + b"\r\n")
        time.sleep(1)
        assert logged.connections == [], "the endpoint was contacted with the body unfinished"
        s.sendall(b"1\r\na\r\n0\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got and (b := s.recv(65536)):
            got += b
    assert got.startswith(b"HTTP/1.1 413"), got[:300]
    time.sleep(0.3)
    assert logged.received == b""


def test_a_slow_upload_reaches_the_endpoint_only_once_complete(portico, logged):
    """ingress-nginx's `proxy-request-buffering: on`: a client trickling its body ties
    up no backend connection; the endpoint gets the whole request at once, a chunked
    body with a Content-Length, as nginx sends it."""
    p = portico(routed_to(logged))
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(b"POST /up HTTP/1.1\r\nHost: raw.local\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        for piece in [b"6\r\n world\r\n", b"1\r\n!\r\n"]:
            time.sleep(0.5)
            assert logged.connections == [], "the endpoint was contacted before the body was in"
            s.sendall(piece)
        s.sendall(b"0\r\n\r\n")
        head = s.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    seen = logged.received.lower()
    assert b"content-length: 12\r\n" in seen and seen.endswith(b"\r\n\r\nhello world!"), seen
    assert b"transfer-encoding" not in seen


def test_request_buffering_off_streams_as_the_body_comes(portico, logged):
    """`proxy-request-buffering: "off"` on an Ingress: the head and the first bytes go
    to the endpoint before the client has sent the rest."""
    p = portico(streaming_to(logged))
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(b"POST /up HTTP/1.1\r\nHost: raw.local\r\nContent-Length: 11\r\n\r\nhello")
        deadline = time.monotonic() + 5
        while b"hello" not in logged.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert logged.received.endswith(b"\r\n\r\nhello"), logged.received
        s.sendall(b" world")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
