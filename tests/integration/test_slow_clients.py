"""Slow clients, scaled down from slowhttptest's slow read (`-X`) and slow POST (`-B`)
attacks: what they make Portico hold, in memory and in endpoint connections.

docs/hardening.md gives the full-size figures beside nginx's (bench/slow_clients.py)."""

import socket
import subprocess
import time

from harness import wait_until
from k8s import Config, service_backend

READERS = 150
# Large enough that the kernel's socket buffers (client, Portico, endpoint) cannot
# take the whole response: the rest waits in Portico or in the endpoint.
RESPONSE = 16 << 20
# What a slow reader may make Portico hold: its connection state (a task, buffers, an
# endpoint connection's) and the one read of at most 64 KiB it stalled on; 116-121 KiB
# each was measured. With reads of up to 256 KiB each held 420 KiB.
PER_READER = 160 << 10


def endpoint_connections(port):
    """Established connections the endpoint holds on its port."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", "( sport = :%d )" % port], capture_output=True, text=True, check=True
    ).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def slow_reader(port, path):
    """A client that asks for `path` through a tiny receive window and reads nothing."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET %s HTTP/1.1\r\nHost: slow.test\r\n\r\n" % path).encode())
    return s


def config(echo):
    cfg = Config()
    cfg.backend("web", [echo])
    cfg.ingress("slow", default_backend=service_backend("web"))
    return cfg


def test_slow_readers_hold_a_bounded_amount_of_memory_each(portico, backends):
    echo = backends.echo("big")
    p = portico(config(echo))
    assert p.get("/bytes/16", host="slow.test").status == 200
    rss0 = p.rss_bytes()
    readers = [slow_reader(p.http_port, "/bytes/%d" % RESPONSE) for _ in range(READERS)]
    try:
        # Every response under way: one endpoint connection per slow reader, each
        # stalled once the socket buffers are full.
        wait_until(lambda: endpoint_connections(echo.port) >= READERS, 20, what="every response under way")
        time.sleep(2)
        grown = p.rss_bytes() - rss0
        held = endpoint_connections(echo.port)
        print("%d slow readers: RSS +%.1f MiB, %d endpoint connections" % (READERS, grown / 2**20, held))
        assert grown < READERS * PER_READER, "RSS grew %.1f MiB" % (grown / 2**20)
        # Without response buffering (ingress-nginx's default `proxy-buffering: off`)
        # each slow reader keeps its one endpoint connection, and no more.
        assert held <= READERS + 1
    finally:
        for s in readers:
            s.close()
    # Gone with their clients, not left for a timeout.
    wait_until(lambda: endpoint_connections(echo.port) <= 1, 20, what="endpoint connections released")


def test_slow_uploads_hold_no_endpoint_connections(portico, backends):
    """slowhttptest -B: bodies declared, then trickled. Request buffering (on by
    default, ingress-nginx's `proxy-request-buffering: on`) reads a body before the
    endpoint is contacted, so none of them reaches it while it trickles."""
    echo = backends.echo("upload")
    p = portico(config(echo))
    uploads = []
    try:
        for _ in range(READERS):
            s = socket.create_connection(("127.0.0.1", p.http_port))
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 8192\r\n\r\nab")
            uploads.append(s)
        for _ in range(3):
            time.sleep(1)
            for s in uploads:
                s.sendall(b"cd")
            assert endpoint_connections(echo.port) == 0
    finally:
        for s in uploads:
            s.close()
