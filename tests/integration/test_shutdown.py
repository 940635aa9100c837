"""SIGTERM, as Kubernetes sends it on every rollout: requests in flight finish,
new connections are refused, and the process exits 0."""

import socket
import subprocess
import time

import pytest

from harness import port_open, wait_until
from k8s import Config, path, rule

HOST = "drain.example.com"


def start(portico, backends, *args):
    be = backends.echo("slow")
    cfg = Config()
    cfg.backend("slow", [be])
    cfg.ingress("drain", rules=[rule(HOST, path("/", "slow"))])
    return portico(cfg, *args), be


def curl_in_background(p, url_path):
    return subprocess.Popen(
        [
            "curl", "-sS", "--max-time", "60",
            "-H", "Host: " + HOST,
            "-o", "-", "-w", "\n%{http_code}",
            p.base + url_path,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip


def refuses_connections(p):
    try:
        with socket.create_connection((p.ip, p.http_port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_finishes_in_flight_request_then_exits_0(portico, backends):
    p, be = start(portico, backends)
    client = curl_in_background(p, "/sleep/3")
    wait_until(lambda: be.stats()["in_flight"] == 1, 15, what="the request to reach the backend")

    sent = time.monotonic()
    p.signal(15)
    # The listener closes at once, while the slow request is still running.
    wait_until(lambda: refuses_connections(p), 2, what="new connections to be refused")
    assert client.poll() is None, "the in-flight request was cut"

    out, err = client.communicate(timeout=30)
    body, _, status = out.rpartition(b"\n")
    assert status == b"200", err
    assert b'"backend": "slow"' in body
    code = p.proc.wait(15)
    assert code == 0, p.log()[-3000:]
    took = time.monotonic() - sent
    assert took < 10, "exit took %.1fs after the last request finished" % took
    assert not port_open(p.ip, p.admin_port)


def test_sigterm_with_idle_keep_alive_connection_exits_promptly(portico, backends):
    """An idle keep-alive client must not hold the process for the drain timeout."""
    p, _ = start(portico, backends, "--drain-timeout", "30s")
    s = socket.create_connection((p.ip, p.http_port), timeout=10)
    s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST).encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        data += s.recv(65536)
    assert data.startswith(b"HTTP/1.1 200")

    t = time.monotonic()
    p.signal(15)
    code = p.proc.wait(10)
    assert code == 0
    assert time.monotonic() - t < 5
    # The idle connection was closed, not left dangling.
    s.settimeout(5)
    try:
        assert s.recv(65536) == b""
    except ConnectionResetError:
        pass
    s.close()


def test_drain_timeout_bounds_shutdown(portico, backends):
    """A request slower than --drain-timeout does not hold the process forever."""
    p, be = start(portico, backends, "--drain-timeout", "1s")
    client = curl_in_background(p, "/sleep/20")
    wait_until(lambda: be.stats()["in_flight"] == 1, 15, what="the request to reach the backend")
    t = time.monotonic()
    p.signal(15)
    code = p.proc.wait(15)
    took = time.monotonic() - t
    assert code == 0
    assert took < 6, "shutdown took %.1fs with a 1s drain timeout" % took
    client.communicate(timeout=30)


def test_sigterm_with_silent_connection_exits_promptly(portico, backends):
    """A client that connected but has not sent a byte yet (a browser's speculative
    preconnect does this) must not hold shutdown for the drain timeout."""
    p, _ = start(portico, backends, "--drain-timeout", "5s")
    s = socket.create_connection((p.ip, p.http_port), timeout=10)
    wait_until(lambda: p.metrics().get("portico_downstream_connections") >= 1, 5, what="the connection to be accepted")
    t = time.monotonic()
    p.signal(15)
    code = p.proc.wait(20)
    took = time.monotonic() - t
    s.close()
    assert code == 0
    assert took < 3, "shutdown took %.1fs with one silent connection open" % took
