"""Portico's HTTP/1.1 client against endpoints that frame their responses every way the
protocol allows, and some ways it does not: what reaches the client, and that a
connection is reused only when that is safe."""

import socket
import subprocess
import threading

import pytest

from harness import free_port, raw_exchange, read_head
from k8s import Config, path, rule

HOST = "h1.example.com"

# What the endpoint answers, by request path: the bytes, and whether it closes the
# connection after them.
ANSWERS = {
    "/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        b"6;ext=1\r\nchunk-\r\n7\r\nencoded\r\n0\r\nX-Trailer: t\r\n\r\n",
        False,
    ),
    "/until-close": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread to the close", True),
    "/http10": (b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nold one", False),
    "/close-asked": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nbye!\n", False),
    "/early-hints": (
        b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhinted",
        False,
    ),
    "/two-lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", True),
    "/garbage": (b"HTTP/1.1 OK maybe\r\n\r\n", True),
    "/refuse": (b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 9\r\n\r\ntoo big!\n", True),
    "/ok": (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", False),
    "/as-sent": (
        b"HTTP/1.1 200 OK\r\nServer: scripted\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
        b"X-Mixed-Case: One\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\n"
        b"Content-Length: 4\r\n\r\nsent",
        False,
    ),
    "/chunked-as-sent": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: yes  \r\n\r\n4\r\nsent\r\n0\r\n\r\n",
        False,
    ),
    "/bare-lf": (b"HTTP/1.1 200 OK\nX-Bare: lf\nContent-Length: 2\n\nlf", False),
    "/names-a-field": (
        b"HTTP/1.1 200 OK\r\nConnection: X-Per-Hop\r\nX-Per-Hop: gone\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
        False,
    ),
}


class ScriptedEndpoint:
    """Answers each request head with the bytes its path names; never reads a body.
    Counts the connections it accepted."""

    def __init__(self):
        self.ip, self.port = "127.0.0.1", free_port()
        self.sock = socket.create_server((self.ip, self.port))
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        with c:
            c.settimeout(10)
            buf = b""
            while True:
                got = read_head(c, buf)
                if got is None:
                    return
                head, buf = got
                target = head.split(b" ")[1].decode()
                answer, close = ANSWERS.get(target, ANSWERS["/ok"])
                try:
                    c.sendall(answer)
                except OSError:
                    return
                if close:
                    return

    def stop(self):
        self.sock.close()


@pytest.fixture
def scripted():
    e = ScriptedEndpoint()
    yield e
    e.stop()


def serve(portico, endpoint):
    cfg = Config()
    cfg.backend("web", [(endpoint.ip, endpoint.port)])
    cfg.ingress("h1", rules=[rule(HOST, path("/", "web"))])
    return portico(cfg)


def test_every_response_framing_reaches_the_client_whole(portico, scripted):
    p = serve(portico, scripted)
    expect = {
        "/chunked": "chunk-encoded",
        "/until-close": "read to the close",
        "/http10": "old on",
        "/close-asked": "bye!\n",
        "/early-hints": "hinted",
    }
    for target, body in expect.items():
        r = p.get(target, host=HOST)
        assert (r.status, r.text) == (200, body), target
        # Framing is per hop: the client never sees the endpoint's.
        assert r.header("transfer-encoding") in (None, "chunked")
        assert r.header("link") is None
        # The next request on a fresh or reused connection is unaffected.
        assert p.get("/ok", host=HOST).status == 200


def test_connections_are_reused_only_when_the_endpoint_allows(portico, scripted):
    p = serve(portico, scripted)
    for _ in range(5):
        assert p.get("/ok", host=HOST).status == 200
        assert p.get("/chunked", host=HOST).status == 200
    # Keep-alive answers, chunked or sized: one connection for all ten.
    assert scripted.connections == 1
    for target in ("/until-close", "/http10", "/close-asked"):
        before = scripted.connections
        assert p.get(target, host=HOST).status == 200
        assert p.get("/ok", host=HOST).status == 200
        # The connection that ended its response by a close, or was asked to close,
        # was not used again.
        assert scripted.connections == before + 1, target


def test_malformed_responses_are_502_and_the_proxy_carries_on(portico, scripted):
    p = serve(portico, scripted)
    for target in ("/two-lengths", "/garbage"):
        r = p.get(target, host=HOST)
        assert r.status == 502, (target, r)
        assert "abc" not in r.text
        assert p.get("/ok", host=HOST).status == 200


def test_an_upload_refused_before_it_is_read_gets_the_refusal(portico, scripted, tmp_path):
    """The endpoint answers 413 on seeing the head and closes without reading the body:
    the client gets that 413, not a 502, while its upload is still going."""
    p = serve(portico, scripted)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (16 * 1024 * 1024))
    out = subprocess.run(
        [
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
            "--max-time", "20",
            "-H", f"Host: {HOST}",
            "--data-binary", f"@{big}",
            f"{p.base}/refuse",
        ],
        capture_output=True, text=True, timeout=30,
    )
    assert out.stdout == "413", (out.stdout, out.stderr)


def header_lines(p, target):
    """The header lines the client receives for `target`, as sent, and the body."""
    req = f"GET {target} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    data, closed = raw_exchange(p.ip, p.http_port, req)
    assert closed, data
    head, body = data.split(b"\r\n\r\n", 1)
    # Every line the client gets ends in CRLF, whatever the endpoint sent.
    assert b"\n" not in head.replace(b"\r\n", b""), head
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", lines
    return lines[1:], body


def test_endpoint_header_lines_reach_the_client_as_sent_less_this_hops_own(portico, scripted):
    """An endpoint's header lines pass on in their order and spelling; only its
    Connection, Keep-Alive and Transfer-Encoding (this hop's) are left out. One Date,
    one Content-Length: the proxy adds neither when the endpoint sent them."""
    p = serve(portico, scripted)
    lines, body = header_lines(p, "/as-sent")
    assert body == b"sent"
    assert lines == [
        "Server: scripted",
        "X-Mixed-Case: One",
        "set-cookie: a=1",
        "Set-Cookie: b=2",
        "Date: Tue, 01 Dec 2026 00:00:00 GMT",
        "Content-Length: 4",
        "connection: close",
    ], lines
    # A chunked body is chunked again by this hop, which adds the Date.
    lines, body = header_lines(p, "/chunked-as-sent")
    assert body == b"4\r\nsent\r\n0\r\n\r\n"
    assert [line for line in lines if not line.startswith("date: ")] == [
        "X-Kept: yes  ",
        "transfer-encoding: chunked",
        "connection: close",
    ], lines
    assert sum(line.startswith("date: ") for line in lines) == 1, lines


def test_unusual_endpoint_heads_are_rewritten_cleanly(portico, scripted):
    """Heads that cannot pass on as they came are read field by field: bare-LF lines
    leave as CRLF lines, and a field the endpoint's Connection names is dropped."""
    p = serve(portico, scripted)
    lines, body = header_lines(p, "/bare-lf")
    assert body == b"lf"
    assert "x-bare: lf" in lines and "content-length: 2" in lines, lines
    lines, body = header_lines(p, "/names-a-field")
    assert body == b"ok"
    names = [line.split(":")[0].lower() for line in lines]
    assert "x-kept" in names and "x-per-hop" not in names, lines
    assert names.count("date") == 1 and names.count("connection") == 1, lines
