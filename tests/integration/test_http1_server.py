"""HTTP/1.1 as clients speak it to the proxy: versions, framing, methods without a
body, the hand-over between requests with and without a body on one connection, and a
client that leaves while its request is in flight."""

import json
import socket
import ssl
import time

import pytest

from k8s import Config, path, rule
from test_tls import CA, tls_secret

HOST = "h1.example.com"

# The same server over TLS: HTTP/1.1 there is served by the same code, in spells and
# parked between requests, with hyper taking the requests that have a body.
TRANSPORTS = pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CA(tmp_path_factory.mktemp("ca"))


def one_route(echo, ca=None):
    cfg = Config()
    cfg.backend("web", [echo.a])
    ing = cfg.ingress("h1", rules=[rule(HOST, path("/", "web"))])
    if ca:
        ing["spec"]["tls"] = [{"hosts": [HOST], "secretName": "h1"}]
        cfg.add(tls_secret("h1", *ca.leaf(HOST)))
    return cfg


def serve(portico, echo, ca, tls):
    return portico(one_route(echo, ca if tls else None))


def connect(p, ca, tls):
    """A client connection to the plain port, or over TLS (no ALPN, so HTTP/1.1) to
    the HTTPS port, verified against the test CA."""
    raw = socket.create_connection((p.ip, p.https_port if tls else p.http_port), timeout=10)
    if not tls:
        return raw
    return ssl.create_default_context(cafile=str(ca.cert)).wrap_socket(raw, server_hostname=HOST)


class Reader:
    """Reads responses off one socket, framed as a client must: by Content-Length, by
    chunks, or by the close."""

    def __init__(self, s, timeout=10):
        self.s = s
        self.buf = b""
        s.settimeout(timeout)

    def more(self):
        chunk = self.s.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def take(self, n):
        while len(self.buf) < n:
            assert self.more(), "connection closed %d bytes short" % (n - len(self.buf))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def line(self):
        while b"\r\n" not in self.buf:
            assert self.more(), "connection closed in a line: %r" % self.buf
        out, self.buf = self.buf.split(b"\r\n", 1)
        return out

    def response(self, head_request=False):
        """(status line, headers, body, closed_after)."""
        status = self.line().decode("latin-1")
        headers = {}
        while True:
            line = self.line().decode("latin-1")
            if not line:
                break
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        code = int(status.split()[1])
        if head_request or code in (204, 304):
            return status, headers, b""
        if "transfer-encoding" in headers:
            assert headers["transfer-encoding"] == ["chunked"], headers
            body = b""
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    assert self.line() == b""
                    return status, headers, body
                body += self.take(size)
                assert self.take(2) == b"\r\n"
        if "content-length" in headers:
            return status, headers, self.take(int(headers["content-length"][0]))
        while self.more():
            pass
        body, self.buf = self.buf, b""
        return status, headers, body

    def closed(self):
        return not self.buf and not self.more()


def request(method, target, version="HTTP/1.1", extra="", body=b""):
    head = "%s %s %s\r\nHost: %s\r\n%s" % (method, target, version, HOST, extra)
    if body:
        head += "Content-Length: %d\r\n" % len(body)
    return (head + "\r\n").encode() + body


@TRANSPORTS
def test_http10_client_gets_http10_and_a_body_ended_by_the_close(portico, echo, ca, tls):
    """An HTTP/1.0 client cannot read chunks: a streamed response of unknown length
    reaches it whole, ended by the close, in an HTTP/1.0 response."""
    p = serve(portico, echo, ca, tls)
    with connect(p, ca, tls) as s:
        s.sendall(request("GET", "/stream?chunks=5&size=1000&delay=0.01", "HTTP/1.0"))
        r = Reader(s)
        status, headers, body = r.response()
        assert status.startswith("HTTP/1.0 200"), status
        assert "transfer-encoding" not in headers, headers
        assert body == b"x" * 5000


@TRANSPORTS
def test_http10_keep_alive_is_kept_when_asked(portico, echo, ca, tls):
    """HTTP/1.0 with `Connection: keep-alive` keeps its connection, and is told so."""
    p = serve(portico, echo, ca, tls)
    with connect(p, ca, tls) as s:
        r = Reader(s)
        for target in ("/one", "/two"):
            s.sendall(request("GET", target, "HTTP/1.0", "Connection: keep-alive\r\n"))
            status, headers, body = r.response()
            assert status.startswith("HTTP/1.0 200"), status
            assert headers.get("connection") == ["keep-alive"], headers
            assert json.loads(body)["target"] == target
        # Without it, the connection closes after the response.
        s.sendall(request("GET", "/three", "HTTP/1.0"))
        status, headers, body = r.response()
        assert json.loads(body)["target"] == "/three"
        assert r.closed(), "HTTP/1.0 connection left open without keep-alive"


@TRANSPORTS
def test_head_gets_the_length_and_no_body(portico, echo, ca, tls):
    """HEAD: the length a GET would get, no body bytes (the next response on the
    connection would be corrupted by them); 204 and 304 likewise carry none."""
    p = serve(portico, echo, ca, tls)
    with connect(p, ca, tls) as s:
        r = Reader(s)
        s.sendall(request("HEAD", "/bytes/1000"))
        status, headers, _ = r.response(head_request=True)
        assert status.startswith("HTTP/1.1 200"), status
        assert headers["content-length"] == ["1000"], headers
        for code in (204, 304):
            s.sendall(request("GET", "/status/%d" % code))
            status, headers, _ = r.response()
            assert status.startswith("HTTP/1.1 %d" % code), status
        s.sendall(request("GET", "/after"))
        status, _, body = r.response()
        assert json.loads(body)["target"] == "/after"


@TRANSPORTS
def test_requests_with_and_without_bodies_pipelined_on_one_connection(portico, echo, ca, tls):
    """GET, POST with a body, chunked POST, OPTIONS, GET in one write: all answered, in
    order, with every body intact, on the one connection."""
    p = serve(portico, echo, ca, tls)
    accepted = p.metrics().get("portico_downstream_connections_total")
    chunked = request("POST", "/c", extra="Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\n\r\n"
    with connect(p, ca, tls) as s:
        s.sendall(
            request("GET", "/g1")
            + request("POST", "/p", body=b"y" * 5000)
            + chunked
            + request("OPTIONS", "/o")
            + request("GET", "/g2")
        )
        r = Reader(s)
        want = [("GET", "/g1", 0), ("POST", "/p", 5000), ("POST", "/c", 3), ("OPTIONS", "/o", 0), ("GET", "/g2", 0)]
        for method, target, length in want:
            status, _, body = r.response()
            assert status.startswith("HTTP/1.1 200"), status
            echoed = json.loads(body)
            assert (echoed["method"], echoed["target"], echoed["body_length"]) == (method, target, length)
    assert p.metrics().get("portico_downstream_connections_total") == accepted + 1


@TRANSPORTS
def test_a_connection_parked_between_requests_is_served_when_it_comes_back(portico, echo, ca, tls):
    """A client that pauses between requests has its connection parked (buffers let go,
    over TLS the session kept) and woken by its next request, whether that request is
    the proxy's own kind (no body) or hyper's (a body): one connection throughout, every
    answer for its own request."""
    p = serve(portico, echo, ca, tls)
    accepted = p.metrics().get("portico_downstream_connections_total")
    with connect(p, ca, tls) as s:
        r = Reader(s)
        steps = [("GET", "/a", b""), ("POST", "/b", b"z" * 3000), ("GET", "/c", b"")]
        for method, target, body in steps + [("POST", "/d", b"q"), ("HEAD", "/e", b"")]:
            time.sleep(0.3)  # past the 100 ms after which a client counts as not busy
            s.sendall(request(method, target, body=body))
            status, headers, got = r.response(head_request=method == "HEAD")
            assert status.startswith("HTTP/1.1 200"), (target, status)
            if method != "HEAD":
                echoed = json.loads(got)
                assert (echoed["method"], echoed["target"], echoed["body_length"]) == (method, target, len(body))
    assert p.metrics().get("portico_downstream_connections_total") == accepted + 1


def test_responses_made_by_the_proxy_carry_a_date(portico, echo):
    """A response the proxy makes itself (404 for an unknown host) is dated, as
    HTTP/1.1 asks of an origin with a clock."""
    p = portico(one_route(echo))
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: nobody.example.com\r\n\r\n")
        status, headers, _ = Reader(s).response()
        assert status.startswith("HTTP/1.1 404"), status
        assert headers.get("date", [""])[0].endswith(" GMT"), headers


def test_client_leaving_mid_request_cancels_it_upstream(portico, echo):
    """A client that closes while its request waits on the endpoint cancels it: the
    upstream connection is closed rather than waited on (nginx's default). The next
    request then needs a connection of its own instead of reusing that one."""
    p = portico(one_route(echo))
    before = json.loads(p.get("/stats", host=HOST).body)["connections"]
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(request("GET", "/sleep/1.5"))
        time.sleep(0.3)
    # Long after the endpoint would have answered; an uncancelled request would have
    # put its connection back in the pool by now.
    time.sleep(2)
    stats = json.loads(p.get("/stats", host=HOST).body)
    assert stats["connections"] == before + 1, stats
