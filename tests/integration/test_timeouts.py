"""Timeouts as nginx has them. The connect to an endpoint is bounded by
`proxy_connect_timeout`; once the response head is in, each is a limit on the wait
between two successive reads or writes: `client_body_timeout` (a stalled upload),
`proxy_read_timeout` (a stalled response body, an idle WebSocket), `send_timeout` (a
client that stops reading). Each test sets the flag to a second and checks the stall
ends in about that, not in the minute the defaults give."""

import json
import socket
import threading
import time

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from harness import ByteLogBackend, read_head, recv_all
from k8s import Config, path, rule

HOST = "slow.local"
CONNECT_TIMEOUT = "nginx.ingress.kubernetes.io/proxy-connect-timeout"


def routed_to(endpoint, annotations=None):
    cfg = Config()
    cfg.backend("slow", [endpoint])
    cfg.ingress("slow", rules=[rule(HOST, path("/", "slow"))], annotations=annotations)
    return cfg


def test_a_stalled_upload_is_408_after_client_body_timeout(portico):
    """nginx `client_body_timeout`: no body bytes for that long is a 408."""
    be = ByteLogBackend(quiet=30)  # never answers within the test
    try:
        p = portico(routed_to(be), "--client-body-timeout", "1s")
        with socket.create_connection((p.ip, p.http_port), timeout=15) as s:
            s.sendall(b"POST /up HTTP/1.1\r\nHost: slow.local\r\nContent-Length: 100\r\n\r\nonly ten..")
            start = time.monotonic()
            got = recv_all(s)
            waited = time.monotonic() - start
        assert got.startswith(b"HTTP/1.1 408"), got[:300]
        assert 0.8 < waited < 5, waited
    finally:
        be.close()


class StallingEndpoint:
    """Answers every request with a head promising 100 bytes, sends 3, then holds the
    connection open without a word for `hold` seconds."""

    def __init__(self, hold=30):
        self.ip, self.hold = "127.0.0.1", hold
        self.sock = socket.socket()
        self.sock.bind((self.ip, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            if read_head(conn) is None:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
            time.sleep(self.hold)

    def close(self):
        self.sock.close()


def test_a_stalled_response_body_is_cut_after_proxy_read_timeout(portico):
    """nginx `proxy_read_timeout` holds between two reads of the response too: the
    client gets the head and what came, then the connection closes."""
    be = StallingEndpoint()
    try:
        p = portico(routed_to(be), "--upstream-timeout", "1s")
        with socket.create_connection((p.ip, p.http_port), timeout=15) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: slow.local\r\n\r\n")
            start = time.monotonic()
            got = recv_all(s)
            waited = time.monotonic() - start
        assert got.startswith(b"HTTP/1.1 200"), got[:300]
        assert got.endswith(b"\r\n\r\nabc"), got[-100:]
        assert 0.8 < waited < 5, waited
    finally:
        be.close()


def test_an_idle_websocket_closes_after_proxy_read_timeout(portico, backends):
    """ingress-nginx: `proxy-read-timeout` also closes a WebSocket whose endpoint has
    been silent that long."""
    ws_be = backends.ws("ws")
    p = portico(routed_to(ws_be), "--upstream-timeout", "1s")
    sock = socket.create_connection((p.ip, p.http_port), timeout=10)
    with ws_connect("ws://%s:%d/idle" % (HOST, p.http_port), sock=sock, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["path"] == "/idle"
        # Traffic inside the limit keeps it open.
        for i in range(3):
            time.sleep(0.5)
            ws.send("ping %d" % i)
            assert ws.recv(timeout=10) == "ping %d" % i
        start = time.monotonic()
        try:
            ws.recv(timeout=15)
            raise AssertionError("a message on an idle WebSocket")
        except ConnectionClosed:
            pass
        waited = time.monotonic() - start
    assert 0.8 < waited < 5, waited


def test_a_client_that_stops_reading_is_dropped_after_send_timeout(portico, echo):
    """nginx `send_timeout`: a client that reads nothing of its response for that long
    is disconnected, instead of holding the proxy and the endpoint forever."""
    p = portico(routed_to(echo.a), "--send-timeout", "1s")
    with socket.create_connection((p.ip, p.http_port), timeout=15) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /bytes/200000000 HTTP/1.1\r\nHost: slow.local\r\n\r\n")
        time.sleep(4)
        got = 0
        while True:
            try:
                b = s.recv(1 << 20)
            except ConnectionResetError:
                break
            if not b:
                break
            got += len(b)
    assert got < 200_000_000 // 2, got


def full_backlog_listener():
    """A listening socket whose accept queue is full and never drained: further SYNs
    to it are dropped, so a connect to it hangs as to a host that went away, without
    touching the machine's network settings. Returns (listener, fillers, port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        raise AssertionError("the listener's backlog is not full: a connect got through")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return srv, fillers, port


def test_a_connect_that_hangs_ends_after_proxy_connect_timeout(portico):
    """ingress-nginx annotations.md "Custom timeouts": `proxy-connect-timeout` (whole
    seconds, its `annotations/proxy` parser's ValidateInt) is nginx's
    `proxy_connect_timeout` for the Ingress's locations; here 1 s against the
    process's 5 s, and the request answers 502 once it passes."""
    srv, fillers, port = full_backlog_listener()
    try:
        cfg = routed_to(("127.0.0.1", port), {CONNECT_TIMEOUT: "1"})
        p = portico(cfg, "--connect-timeout", "5s")
        start = time.monotonic()
        r = p.get("/", host=HOST)
        waited = time.monotonic() - start
        assert r.status == 502, r
        assert 0.8 < waited < 3.5, waited
    finally:
        for c in fillers:
            c.close()
        srv.close()


def test_a_refused_connect_answers_502_at_once(portico):
    """A connect the endpoint refuses fails at once, whatever `proxy-connect-timeout`
    allows: the timeout bounds a wait, it does not add one."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: the connect is refused
    p = portico(routed_to(("127.0.0.1", port), {CONNECT_TIMEOUT: "30"}))
    start = time.monotonic()
    r = p.get("/", host=HOST)
    assert r.status == 502, r
    assert time.monotonic() - start < 1.5
