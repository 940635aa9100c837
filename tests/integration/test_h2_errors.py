"""HTTP/2 requests that RFC 9113 lets a server refuse one stream at a time (section
8.1.1: a malformed request is a stream error), and what Portico does with them today.

HTTP/2 framing and HPACK are the h2 crate's (under hyper), and for these it ends the
whole connection with GOAWAY, which no option of hyper's or h2's changes; nginx resets
the one stream. docs/hardening.md (item 9) explains each. These tests pin the current
answers, so a library upgrade that changes them shows here, and check that what ends
is that one connection: the next one is served."""

import socket
import struct
import time

import pytest

from k8s import Config, service_backend

PROTOCOL_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x1, 0x9, 0xB


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_int(n, prefix):
    top = (1 << prefix) - 1
    if n < top:
        return bytes([n])
    out = [top]
    n -= top
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    return bytes(out + [n])


def literal(name, value):
    """A literal header field without indexing, new name (RFC 7541 section 6.2.2)."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def request_block(extra=b""):
    # :method GET, :scheme http, :path / (static table), :authority h2.test.
    return b"\x82\x86\x84\x01" + hpack_int(7, 7) + b"h2.test" + extra


def headers_frames(stream, block):
    """HEADERS (END_STREAM) and as many CONTINUATION frames as 16 KiB frames need."""
    parts = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    out = b""
    for i, part in enumerate(parts):
        flags = 0x4 if i == len(parts) - 1 else 0
        out += frame(0x1, flags | 0x1, stream, part) if i == 0 else frame(0x9, flags, stream, part)
    return out


def exchange(port, frames):
    """Sends the preface, SETTINGS and `frames`; returns what came back as a list of
    ("HEADERS", stream) and ("GOAWAY", error code) until the connection closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0, b"") + frames)
    got = b""
    deadline = time.time() + 1
    try:
        while time.time() < deadline:
            data = s.recv(65536)
            if not data:
                break
            got += data
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        s.close()
    events, i = [], 0
    while i + 9 <= len(got):
        n, kind = int.from_bytes(got[i : i + 3], "big"), got[i + 3]
        stream = int.from_bytes(got[i + 5 : i + 9], "big") & 0x7FFFFFFF
        payload = got[i + 9 : i + 9 + n]
        if kind == 0x1:
            events.append(("HEADERS", stream))
        elif kind == 0x7:
            events.append(("GOAWAY", int.from_bytes(payload[4:8], "big")))
        i += 9 + n
    return events


CASES = {
    # The HPACK decoder refuses a name that is not a valid field name before the
    # stream exists: a decoding failure, hence a connection error.
    "a header name with a space": (literal(b"x-bad name", b"v"), PROTOCOL_ERROR),
    "an upper-case header name": (literal(b"X-Upper", b"v"), PROTOCOL_ERROR),
    # A block far over the header list limit, in CONTINUATION frames: h2 0.4.20 ends
    # the connection with COMPRESSION_ERROR (as observed; nginx resets the stream).
    "10,000 header fields": (b"".join(literal(b"x-h%d" % i, b"v") for i in range(10000)), COMPRESSION_ERROR),
    # Beyond h2's abuse limit, 4 times the 16 KiB header limit, the connection goes.
    "a 64 KiB header block": (literal(b"x-big", b"a" * 65536), ENHANCE_YOUR_CALM),
}


@pytest.fixture
def served(portico, echo):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("h2", default_backend=service_backend("web"))
    return portico(cfg)


def test_well_formed_streams_are_answered(served):
    events = exchange(served.http_port, headers_frames(1, request_block()) + headers_frames(3, request_block()))
    assert ("HEADERS", 1) in events and ("HEADERS", 3) in events, events


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_stream_ends_its_connection_today_and_only_that_one(served, case):
    extra, code = CASES[case]
    frames = headers_frames(1, request_block()) + headers_frames(3, request_block(extra))
    events = exchange(served.http_port, frames)
    assert ("GOAWAY", code) in events, events
    # A new connection is served as usual.
    assert ("HEADERS", 1) in exchange(served.http_port, headers_frames(1, request_block()))
