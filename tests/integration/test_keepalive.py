"""Keep-alive client connections: what they cost while they wait, and that a
connection keeps working across the waits (bodies, pipelining, timeouts)."""

import json
import resource
import select
import socket
import time

from k8s import Config, path, rule

HOST = "ka.example.com"


def one_route(echo):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("ka", rules=[rule(HOST, path("/", "web"))])
    return cfg


# Bytes read past a response, by socket: pipelined responses may arrive in one read.
_ahead = {}


def read_response(s, timeout=10):
    """Reads one Content-Length-framed response; returns (status, headers, body).
    Bytes past it are kept for the next call on the same socket."""
    s.settimeout(timeout)
    data = _ahead.pop(s, b"")
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "connection closed before a response head: %r" % data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk, "connection closed in a response body"
        rest += chunk
    if len(rest) > length:
        # Only the next response may follow.
        assert rest[length:].startswith(b"HTTP/1.1 "), "bytes beyond the response: %r" % rest[length:]
        _ahead[s] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def get(target, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target, HOST, extra)).encode()


def assert_pipelined(s, *targets):
    """Sends a GET for each target in one write; all are answered, in order."""
    s.sendall(b"".join(get(t) for t in targets))
    for want in targets:
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body)["target"] == want


def assert_split_head_answered(s, target, cut, pause):
    """Sends a GET's head in two writes, `pause` seconds apart, cut after `cut` bytes;
    it is answered as one request."""
    req = get(target, "X-Pad: %s\r\n" % ("p" * 100))
    s.sendall(req[:cut])
    time.sleep(pause)
    s.sendall(req[cut:])
    status, _, body = read_response(s)
    assert status == 200 and json.loads(body)["target"] == target


def test_connection_works_across_idle_waits(portico, echo):
    """One connection, pausing between requests long enough to go idle each time:
    GETs, a Content-Length body, a chunked body, and a request whose head arrives in
    two pieces with a pause in between all get the right answers, in order."""
    p = portico(one_route(echo))
    accepted = p.metrics().get("portico_downstream_connections_total")
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(get("/first"))
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body)["target"] == "/first"
        time.sleep(0.3)

        payload = b"x" * 70000
        s.sendall(
            ("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (HOST, len(payload))).encode() + payload
        )
        status, _, body = read_response(s)
        assert status == 200 and json.loads(body)["body_length"] == len(payload)
        time.sleep(0.3)

        s.sendall(
            ("POST /chunked HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % HOST).encode()
            + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        status, _, body = read_response(s)
        echoed = json.loads(body)
        assert status == 200 and echoed["body_length"] == 11 and echoed["target"] == "/chunked"
        time.sleep(0.3)

        # A head split across two writes, with the connection idle in between.
        assert_split_head_answered(s, "/split", 30, 0.3)
        time.sleep(0.3)

        # Two requests in one write, then a third that arrives only after the two
        # responses were read: all answered, in order, on this connection.
        assert_pipelined(s, "/p1", "/p2")
        time.sleep(0.3)
        s.sendall(get("/last", "Connection: close\r\n"))
        status, headers, body = read_response(s)
        assert status == 200 and json.loads(body)["target"] == "/last"
        assert s.recv(65536) == b"", "the connection stays open after Connection: close"
    m = p.metrics()
    assert m.get("portico_downstream_connections_total") == accepted + 1


def test_busy_connection_keeps_working_when_it_goes_quiet(portico, echo):
    """A client sending request after request keeps its connection's state; once it
    goes quiet the connection is parked, and the next requests (one of them split
    across the quiet spell) are still answered, in order, on the same connection."""
    p = portico(one_route(echo))
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        for i in range(200):
            s.sendall(get("/burst/%d" % i))
            status, _, body = read_response(s)
            assert status == 200 and json.loads(body)["target"] == "/burst/%d" % i
        assert_split_head_answered(s, "/after-quiet", 20, 2.5)
        assert_pipelined(s, "/x1", "/x2")


def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout(portico, echo):
    """A keep-alive connection that goes quiet is closed after --keepalive-timeout
    (nginx's keepalive_timeout), not kept forever."""
    p = portico(one_route(echo), "--keepalive-timeout", "1s")
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(get("/"))
        assert read_response(s)[0] == 200
        t = time.monotonic()
        assert s.recv(65536) == b""
        took = time.monotonic() - t
    assert 0.7 < took < 5, "closed after %.1fs with a 1s timeout" % took


def test_idle_keep_alive_connections_cost_little_memory(portico, echo):
    """Thousands of keep-alive clients that made one request each and now wait: the
    proxy's resident memory grows by under 3.5 KiB per connection (task, socket
    registration and what the allocator keeps), not by the 20+ KiB of buffers an HTTP/1
    server keeps when it holds them while idle."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 3000
    if soft < want + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 200), hard))
    n = min(want, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200)
    assert n >= 1000, "open-file limit too low for this test: %d" % n
    p = portico(one_route(echo))

    def open_idle(count, batch=100):
        socks = []
        for i in range(0, count, batch):
            group = []
            for _ in range(min(batch, count - i)):
                s = socket.create_connection((p.ip, p.http_port), timeout=10)
                s.sendall(get("/"))
                group.append(s)
            for s in group:
                assert read_response(s)[0] == 200
            socks += group
        return socks

    # Warm up the allocator and the upstream pool, then measure a second batch.
    warm = open_idle(200)
    time.sleep(0.5)
    before = p.rss_bytes()
    socks = open_idle(n)
    time.sleep(1.0)
    grown = p.rss_bytes() - before
    per_conn = grown / n
    print("%d idle connections: RSS +%.1f MiB, %.2f KiB per connection" % (n, grown / 2**20, per_conn / 1024))
    # Still open, still served: each can make another request.
    for s in socks[:: max(1, n // 20)]:
        s.sendall(get("/again"))
        assert read_response(s)[0] == 200
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    assert not poller.poll(0), "idle connections were closed or sent data"
    for s in warm + socks:
        s.close()
    assert per_conn < 3.5 * 1024, "%.1f KiB per idle connection" % (per_conn / 1024)


def test_keep_alive_connections_even_out_over_serving_threads(portico, echo):
    """The kernel spreads new connections over the serving threads by a hash of their
    addresses, unevenly for a few dozen. A connection that stays open moves to the
    least loaded thread when it first waits between requests. 80 keep-alive
    connections over 4 threads end up within a few of each other, and every one keeps
    answering, in order, on whichever thread it moved to."""
    p = portico(one_route(echo), "--worker-threads", "4")
    socks = [socket.create_connection((p.ip, p.http_port), timeout=10) for _ in range(80)]
    try:
        for rnd in range(3):
            for i, s in enumerate(socks):
                s.sendall(get("/c%d/r%d" % (i, rnd)))
            for i, s in enumerate(socks):
                status, _, body = read_response(s)
                assert status == 200 and json.loads(body)["target"] == "/c%d/r%d" % (i, rnd)
            time.sleep(0.3)
        counts = [int(v) for _, v in p.metrics().series("portico_thread_connections")]
        assert len(counts) == 4 and sum(counts) == 80, counts
        low = min(counts)
        assert max(counts) <= low + 3 + low // 4, "threads unevenly loaded: %s" % counts
    finally:
        for s in socks:
            s.close()
