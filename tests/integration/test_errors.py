"""What a client sees when something is wrong: the status Portico answers with, and
that a bad request never reaches a backend."""

import socket
import subprocess
import threading
import time

import pytest

from harness import free_port, raw_exchange
from k8s import Config, path, rule

HOST = "err.example.com"


def one_route(service="web", endpoints=(), define_service=True, **backend_kw):
    cfg = Config()
    if define_service:
        cfg.backend(service, list(endpoints), **backend_kw)
    cfg.ingress("err", rules=[rule(HOST, path("/", service))])
    return cfg


def test_missing_service_is_503(portico):
    """An Ingress naming a Service that does not exist: 503, not 404 or a hang."""
    p = portico(one_route("ghost", define_service=False))
    r = p.get("/", host=HOST)
    assert r.status == 503


def test_no_ready_endpoint_is_503(portico, echo):
    """Endpoints that are not ready get no traffic; with none ready, 503."""
    cfg = Config()
    cfg.service("web", target_port=echo.a.port)
    cfg.endpoint_slice("web", [(echo.a.ip, echo.a.port)], ready=False)
    cfg.ingress("err", rules=[rule(HOST, path("/", "web"))])
    p = portico(cfg)
    assert p.get("/", host=HOST).status == 503


def test_ready_endpoint_next_to_unready_one_gets_all_traffic(portico, echo):
    cfg = Config()
    cfg.service("web", target_port=echo.a.port)
    cfg.endpoint_slice("web", [(echo.a.ip, echo.a.port)], ready=True)
    # Same port, another address, not ready: must never be picked.
    cfg.endpoint_slice("web", [("127.0.0.2", echo.a.port)], ready=False)
    cfg.ingress("err", rules=[rule(HOST, path("/", "web"))])
    p = portico(cfg)
    for _ in range(6):
        r = p.get("/", host=HOST)
        assert r.status == 200
        assert r.json()["backend"] == "a"


def test_endpoint_refusing_connections_is_502(portico):
    """The only endpoint has nothing listening: 502 at once."""
    dead = free_port()
    p = portico(one_route(endpoints=[("127.0.0.1", dead)]))
    t = time.monotonic()
    r = p.get("/", host=HOST)
    assert r.status == 502
    assert time.monotonic() - t < 5


def test_endpoint_closing_without_answer_is_502(portico, echo):
    """The backend reads the request and drops the connection: 502."""
    p = portico(one_route(endpoints=[echo.a]))
    assert p.get("/close", host=HOST).status == 502
    # The proxy and the backend are fine afterwards.
    assert p.get("/", host=HOST).status == 200


def test_slow_endpoint_is_504_after_upstream_timeout(portico, echo):
    p = portico(one_route(endpoints=[echo.a]), "--upstream-timeout", "1s")
    t = time.monotonic()
    r = p.get("/sleep/10", host=HOST)
    took = time.monotonic() - t
    assert r.status == 504
    assert 0.9 < took < 6, took
    # A fast request on the same route is unaffected.
    assert p.get("/sleep/0.1", host=HOST).status == 200


def test_body_over_limit_with_content_length_is_413(portico, backends):
    """A declared body over --max-body-size is refused before any of it is read or
    forwarded."""
    be = backends.echo("limit")
    p = portico(one_route(endpoints=[be]), "--max-body-size", "1m")
    under = p.get("/", host=HOST, data=b"x" * (1024 * 1024))
    assert under.status == 200
    assert under.json()["body_length"] == 1024 * 1024
    before = be.stats()["requests"]
    r = p.get("/", host=HOST, data=b"x" * (1024 * 1024 + 1))
    assert r.status == 413
    assert be.stats()["requests"] == before + 1  # only the /stats request itself


def test_body_over_limit_streamed_chunked_is_413(portico, backends):
    """A chunked body (no Content-Length) is cut off once it passes the limit, and the
    client is told 413, read while it is still sending."""
    be = backends.echo("limit")
    p = portico(one_route(endpoints=[be]), "--max-body-size", "1m")
    ok = p.get("/", host=HOST, data=b"y" * (512 * 1024), chunked=True)
    assert ok.status == 200
    # Read ahead first (`proxy-request-buffering: on`, ingress-nginx's default), the
    # body reaches the endpoint with a Content-Length, as nginx sends it.
    assert ok.json()["chunked"] is False
    assert ok.json()["body_length"] == 512 * 1024

    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(("PUT / HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % HOST).encode())
        got = []
        reader = threading.Thread(target=lambda: got.append(raw_read_all(s)))
        reader.start()
        chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
        try:
            for _ in range(32):  # 2 MiB
                s.sendall(chunk)
        except OSError:
            pass  # closed after the 413: what matters is what was read
        reader.join(15)
    assert got and got[0].startswith(b"HTTP/1.1 413"), got


def raw_read_all(s):
    data = b""
    while True:
        try:
            b = s.recv(65536)
        except OSError:
            return data
        if not b:
            return data
        data += b


def test_body_over_limit_streamed_chunked_is_413_for_curl(portico, backends):
    """`curl -T -` streaming 8 MiB against a 1 MiB limit sees 413, every time, not a
    broken pipe."""
    be = backends.echo("limit")
    p = portico(one_route(endpoints=[be]), "--max-body-size", "1m")
    body = b"y" * (8 * 1024 * 1024)
    outcomes = []
    for _ in range(10):
        r = p.get("/", host=HOST, data=body, chunked=True)
        outcomes.append(413 if r.status == 413 and r.exit_code == 0 else r.stderr.strip() or r.status)
    print("outcomes:", outcomes)
    assert outcomes == [413] * 10, outcomes


def test_head_over_16k_is_431(portico, echo):
    p = portico(one_route(endpoints=[echo.a]))
    ok = p.get("/", host=HOST, headers=["X-Big: " + "a" * 8000])
    assert ok.status == 200
    assert ok.json()["headers"]["x-big"] == "a" * 8000
    r = p.get("/", host=HOST, headers=["X-Big: " + "a" * (20 * 1024)])
    assert r.status == 431


@pytest.mark.parametrize(
    "garbage",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: err.example.com\r\nBad Header Without Colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: err.example.com\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    ],
    ids=["request-line", "header-line", "conflicting-content-length", "tls-on-plain-port"],
)
def test_malformed_request_is_400_and_closed(portico, backends, garbage):
    """Garbage gets 400, the connection is closed, and nothing reaches the backend."""
    be = backends.echo("guarded")
    p = portico(one_route(endpoints=[be]))
    before = be.stats()
    data, closed = raw_exchange(p.ip, p.http_port, garbage, timeout=10)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert closed, "connection left open after a malformed request"
    after = be.stats()
    assert after["requests"] == before["requests"] + 1  # the /stats request itself
    assert after["connections"] == before["connections"] + 1


def test_proxy_keeps_serving_after_errors(portico, echo):
    """A burst of failures of every kind leaves the proxy healthy."""
    p = portico(one_route(endpoints=[echo.a]), "--upstream-timeout", "1s")
    procs = [
        subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", "--max-time", "10", "-H", "Host: " + HOST, p.base + u],
        )
        for u in ["/close", "/sleep/3", "/status/500", "/close", "/"]
    ]
    for pr in procs:
        pr.wait(30)
    for _ in range(5):
        assert p.get("/", host=HOST).status == 200
    status, _ = p.admin("/healthz")
    assert status == 200


def test_proxy_body_size_annotation_sets_the_limit_per_ingress(portico, echo):
    """ingress-nginx's proxy-body-size annotation raises the limit for its own
    Ingress only; `0` lifts it."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("default-limit", rules=[rule(HOST, path("/", "web"))])
    cfg.ingress(
        "uploads",
        rules=[rule("upload.example.com", path("/", "web"))],
        annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "3m"},
    )
    cfg.ingress(
        "unlimited",
        rules=[rule("nolimit.example.com", path("/", "web"))],
        annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "0"},
    )
    p = portico(cfg)
    body = b"u" * (2 * 1024 * 1024)
    assert p.get("/", host=HOST, data=body).status == 413
    r = p.get("/", host="upload.example.com", data=body)
    assert r.status == 200
    assert r.json()["body_length"] == len(body)
    assert p.get("/", host="upload.example.com", data=body * 2).status == 413
    assert p.get("/", host="nolimit.example.com", data=body * 4).status == 200


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="silent"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: err.example.com\r\nX-Slow: ", id="partial-head"),
    ],
)
def test_client_too_slow_with_its_head_is_disconnected(portico, backends, sent):
    """A client that connects and dawdles over its request head (slowloris) is
    disconnected after --client-header-timeout, and nothing reaches the backend."""
    be = backends.echo("guarded")
    p = portico(one_route(endpoints=[be]), "--client-header-timeout", "1s")
    before = be.stats()["requests"]
    with socket.create_connection((p.ip, p.http_port), timeout=6) as s:
        if sent:
            s.sendall(sent)
        t = time.monotonic()
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        took = time.monotonic() - t
    assert 0.5 < took < 8, "disconnected after %.1fs with a 1s header timeout" % took
    assert be.stats()["requests"] == before + 1  # the /stats request itself
