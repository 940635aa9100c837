"""Timeouts once the response head is in, as nginx has them, each a limit on the wait
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


def routed_to(endpoint):
    cfg = Config()
    cfg.backend("slow", [endpoint])
    cfg.ingress("slow", rules=[rule(HOST, path("/", "slow"))])
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
