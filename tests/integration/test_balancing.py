"""How requests spread over endpoints: round robin, the retry on a refused connect,
and reuse of upstream connections under keep-alive load."""

import collections
import re
import subprocess
import time

import pytest

from harness import free_port, which
from k8s import Config, path, rule

HOST = "lb.example.com"


def names(p, n, url_path="/", method="GET"):
    out = []
    for _ in range(n):
        if method == "POST":
            r = p.get(url_path, host=HOST, data=b"payload")
        else:
            r = p.get(url_path, host=HOST)
        assert r.status == 200, r
        out.append(r.json()["backend"])
    return out


def test_round_robin_over_two_endpoints(portico, backends):
    """Two pods of one Service (same port, two addresses) share the load evenly."""
    port = free_port(("127.0.0.1", "127.0.0.2"))
    one = backends.echo("one", ip="127.0.0.1", port=port)
    two = backends.echo("two", ip="127.0.0.2", port=port)
    cfg = Config()
    cfg.backend("web", [one, two])
    cfg.ingress("lb", rules=[rule(HOST, path("/", "web"))])
    p = portico(cfg)
    counts = collections.Counter(names(p, 10))
    assert counts == {"one": 5, "two": 5}, counts


def test_endpoints_from_every_slice_of_a_service_are_used(portico, backends):
    """A Service whose endpoints are split over two EndpointSlices (here on different
    ports) gets traffic on both."""
    one = backends.echo("one")
    two = backends.echo("two")
    cfg = Config()
    cfg.backend("web", [one, two])  # one slice per port
    cfg.ingress("lb", rules=[rule(HOST, path("/", "web"))])
    p = portico(cfg)
    assert set(names(p, 8)) == {"one", "two"}


def test_refused_connect_is_retried_on_another_endpoint(portico, backends):
    """One endpoint refuses connections, one is good: every request succeeds, POSTs
    too (nothing was sent to the dead one)."""
    port = free_port(("127.0.0.1", "127.0.0.2"))
    good = backends.echo("good", ip="127.0.0.1", port=port)
    cfg = Config()
    cfg.backend("web", [good, ("127.0.0.2", port)])  # nothing listens on 127.0.0.2
    cfg.ingress("lb", rules=[rule(HOST, path("/", "web"))])
    p = portico(cfg)
    assert names(p, 10) == ["good"] * 10
    assert names(p, 10, method="POST") == ["good"] * 10
    # The dead endpoint really was tried (and failed) along the way.
    assert p.metrics().get("portico_upstream_connect_errors_total") >= 1


REUSE_REQUESTS = 100_000


@pytest.mark.skipif(not which("h2load"), reason="h2load (nghttp2-client) not installed: run scripts/test-deps.sh")
def test_upstream_connections_reused_under_keep_alive_load(portico, backends):
    """100,000 keep-alive requests open almost no new upstream connections: the pool
    hands each endpoint connection from request to request (and thread to thread)."""
    be = backends.echo("fast")
    cfg = Config()
    cfg.backend("fast", [be])
    cfg.ingress("load", rules=[rule(None, path("/ping", "fast", kind="Exact"))])
    p = portico(cfg, "--access-log", "false")
    before = be.stats()["connections"]
    out = subprocess.run(
        [
            "h2load", "--h1",
            "-n", str(REUSE_REQUESTS),
            "-c", "16",
            "-t", "1",
            "%s/ping" % p.base,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out.stdout)
    assert m, out.stdout
    assert int(m.group(4)) == REUSE_REQUESTS, out.stdout
    assert re.search(r"status codes: %d 2xx" % REUSE_REQUESTS, out.stdout), out.stdout
    rate = re.search(r"finished in ([\d.]+\w+), ([\d.]+) req/s", out.stdout)

    metrics = p.metrics()
    opened = metrics.get("portico_upstream_connections_opened_total")
    reused = metrics.get("portico_upstream_connections_reused_total")
    accepted = be.stats()["connections"] - before - 1  # less the /stats request's own
    print(
        "reuse: %d requests (%s), upstream opened %d, reused %d, backend accepted %d (%.3f%%)"
        % (REUSE_REQUESTS, rate.group(0) if rate else "?", opened, reused, accepted, 100.0 * accepted / REUSE_REQUESTS)
    )
    assert opened <= REUSE_REQUESTS * 0.001, opened
    assert accepted <= REUSE_REQUESTS * 0.001, accepted
    assert reused >= REUSE_REQUESTS - opened
    assert metrics.get("portico_requests_total", status="200", path="/ping") == REUSE_REQUESTS


def test_backend_closing_idle_keep_alive_connections_causes_no_errors(portico, backends):
    """Backends close idle keep-alive connections on their own schedule (here after
    0.3 s). A request that comes just then must not get a 502 for a pooled
    connection that died."""
    be = backends.echo("closer", idle_timeout=0.3)
    cfg = Config()
    cfg.backend("web", [be])
    cfg.ingress("lb", rules=[rule(HOST, path("/", "web"))])
    p = portico(cfg)
    statuses = []
    # Gaps around the backend's idle timeout, so some requests meet a connection the
    # backend is closing or has just closed.
    for gap in [0.0, 0.25, 0.29, 0.3, 0.31, 0.33, 0.35, 0.4, 0.5, 0.28, 0.32, 0.3, 0.3, 0.3]:
        time.sleep(gap)
        statuses.append(p.get("/", host=HOST).status)
    assert statuses == [200] * len(statuses), statuses
    m = p.metrics()
    print("opened %d, reused %d" % (m.get("portico_upstream_connections_opened_total"), m.get("portico_upstream_connections_reused_total")))


def test_pipelined_requests_answered_in_order(portico, echo):
    """HTTP/1.1 pipelining: three requests written at once get three responses in
    order on the same connection."""
    import socket

    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("lb", rules=[rule(HOST, path("/", "web"))])
    p = portico(cfg)
    reqs = b"".join(
        ("GET /p%d HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (i, HOST, "Connection: close\r\n" if i == 2 else "")).encode()
        for i in range(3)
    )
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(reqs)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    assert data.count(b"HTTP/1.1 200") == 3, data[:500]
    order = [data.find(b'"target": "/p%d"' % i) for i in range(3)]
    assert -1 not in order and order == sorted(order), order
