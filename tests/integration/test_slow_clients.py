"""Slow clients, scaled down from slowhttptest's slow read (`-X`) and slow POST (`-B`)
attacks: what they make Portico hold, in memory and in endpoint connections.

docs/hardening.md gives the full-size figures beside nginx's (bench/slow_clients.py)."""

import socket
import struct
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


def config(echo, annotations=None):
    cfg = Config()
    cfg.backend("web", [echo])
    cfg.ingress("slow", default_backend=service_backend("web"), annotations=annotations)
    return cfg


def started(portico, backends, name, annotations=None):
    """An echo endpoint and Portico in front of it, warmed up: (endpoint, Portico, its
    RSS now)."""
    echo = backends.echo(name)
    p = portico(config(echo, annotations))
    assert p.get("/bytes/16", host="slow.test").status == 200
    return echo, p, p.rss_bytes()


def test_slow_readers_hold_a_bounded_amount_of_memory_each(portico, backends):
    echo, p, rss0 = started(portico, backends, "big")
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
        # each slow reader keeps its one endpoint connection, and no more, with its
        # response under way at the endpoint.
        assert held <= READERS + 1
        assert echo.stats()["in_flight"] >= READERS - 5
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


# `proxy-buffering: on`: responses that fit the read-ahead bound (`--response-buffer-size`,
# 1 MiB by default).
BUFFERED_READERS = 100
BUFFERED_RESPONSE = 512 << 10


def test_with_proxy_buffering_slow_readers_free_their_endpoint_connections(portico, backends):
    """ingress-nginx's `proxy-buffering: "on"` (its annotations.md, "Proxy buffering";
    nginx's `proxy_buffering`): Portico reads each response ahead of its slow client, so
    the endpoint finishes writing every response at once and its connections go back
    to the pool for other requests, while memory grows by no more than the responses
    read ahead."""
    echo, p, rss0 = started(portico, backends, "buffered", {"nginx.ingress.kubernetes.io/proxy-buffering": "on"})
    readers = [slow_reader(p.http_port, "/bytes/%d" % BUFFERED_RESPONSE) for _ in range(BUFFERED_READERS)]
    try:
        # Every response written whole by the endpoint, though no client read it.
        wait_until(lambda: echo.stats()["requests"] >= BUFFERED_READERS + 1, 20, what="every request at the endpoint")
        wait_until(lambda: echo.stats()["in_flight"] == 0, 20, what="every response written by the endpoint")
        time.sleep(1)
        grown = p.rss_bytes() - rss0
        print("%d slow readers of %d KiB, buffered: RSS +%.1f MiB" % (BUFFERED_READERS, BUFFERED_RESPONSE >> 10, grown / 2**20))
        assert grown < BUFFERED_READERS * (BUFFERED_RESPONSE + PER_READER), "RSS grew %.1f MiB" % (grown / 2**20)
        # Their connections are back in the pool: more requests open none.
        opened = echo.stats()["connections"]
        for _ in range(10):
            assert p.get("/bytes/16", host="slow.test").status == 200
        # (The counter's own request is a connection of its own.)
        assert echo.stats()["connections"] == opened + 1
        # What was read ahead reaches a reader whole when it does read.
        head, body = read_response(readers[0])
        assert b" 200 " in head.split(b"\r\n", 1)[0] and len(body) == BUFFERED_RESPONSE
    finally:
        for s in readers:
            s.close()


def read_response(s):
    """Reads a Content-Length response to its end: (head, body)."""
    s.settimeout(20)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


# HTTP/2: a client that opens many streams with large flow-control windows and reads
# nothing. Each stream may queue up to `--http2-send-buffer-size` (64 KiB) of its
# response in Portico (h2's own default, 400 KiB, made these 100 streams hold 40 MiB).
H2_STREAMS = 100
H2_RESPONSE = 1 << 20
# The send buffer and the 64 KiB endpoint read each stream pins: 149-175 KiB a stream
# measured at 64 KiB, 508 KiB at h2's 400 KiB.
PER_H2_STREAM = 224 << 10


def h2_frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_slow_reader(port, path, streams):
    """An HTTP/2 (prior knowledge) client with the largest windows RFC 9113 allows,
    asking for `path` on `streams` streams and reading nothing."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    top = (1 << 31) - 1
    # SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE (16 KiB, the default).
    settings = struct.pack(">HI", 0x4, top) + struct.pack(">HI", 0x5, 1 << 14)
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(0x4, 0, 0, settings)
    out += h2_frame(0x8, 0, 0, struct.pack(">I", top - 65535))
    # :method GET, :scheme http (static table), :path and :authority as literals.
    block = b"\x82\x86" + b"\x04" + bytes([len(path)]) + path.encode() + b"\x01\x09slow.test"
    for i in range(streams):
        out += h2_frame(0x1, 0x5, 2 * i + 1, block)
    s.sendall(out)
    return s


def test_a_slow_http2_reader_of_many_streams_holds_a_bounded_amount_of_memory(portico, backends):
    echo, p, rss0 = started(portico, backends, "h2")
    clients = [h2_slow_reader(p.http_port, "/bytes/%d" % H2_RESPONSE, H2_STREAMS) for _ in range(2)]
    try:
        wait_until(lambda: endpoint_connections(echo.port) >= 2 * H2_STREAMS, 20, what="every stream under way")
        time.sleep(2)
        grown = p.rss_bytes() - rss0
        per_stream = grown / (2 * H2_STREAMS)
        print("%d HTTP/2 streams read by no one: RSS +%.1f MiB, %.0f KiB a stream" % (2 * H2_STREAMS, grown / 2**20, per_stream / 1024))
        assert per_stream < PER_H2_STREAM, "RSS grew %.1f MiB" % (grown / 2**20)
    finally:
        for s in clients:
            s.close()
    # Every response abandoned with its client, not left for a timeout.
    wait_until(lambda: echo.stats()["in_flight"] == 0, 20, what="responses abandoned")
