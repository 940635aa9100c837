"""An endpoint that answers an upload before reading it: the client gets that answer.

Python's `http.server` answers 501 to a POST (it has no `do_POST`) without reading the
body, then closes; the kernel resets the connection because the body is unread. Portico
is still writing the upload when the reset comes. The answer arrived before the reset,
so it is the one to pass on (the README: "the endpoint answers before it has read the
whole upload (a 413, say): that answer"), and the client, still sending, is read to the
end of its body (nginx's lingering close) so that it sees the answer and not a reset.

Sizes from 256 KiB to 8 MiB, and the timings that change who is first: the body sent
with the head, after a pause, slowly, with and without `Expect: 100-continue`, sized and
chunked."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness import free_port, wait_for_port
from k8s import Config, path, rule

HOST = "upload.example.com"
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def http_server(tmp_path):
    """`python3 -m http.server` on loopback, serving an empty directory."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("served\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "-d", str(root), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, proc=proc)
    yield ("127.0.0.1", port)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def proxy(portico, http_server):
    cfg = Config()
    cfg.backend("uploads", [http_server])
    # Uploads up to 16 MiB pass Portico's own limit and reach the endpoint.
    cfg.ingress(
        "uploads",
        rules=[rule(HOST, path("/", "uploads"))],
        annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "16m"},
    )
    return portico(cfg)


def curl_upload(p, size, tmp_path, *args):
    body = tmp_path / ("body-%d.bin" % size)
    if not body.exists():
        body.write_bytes(os.urandom(size))
    out = subprocess.run(
        [
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
            "--resolve", "%s:%d:127.0.0.1" % (HOST, p.http_port),
            *args,
            "--data-binary", "@%s" % body,
            "http://%s:%d/upload" % (HOST, p.http_port),
        ],
        capture_output=True, text=True, timeout=45,
    )  # fmt: skip
    return out.stdout or out.stderr.strip()


@pytest.mark.parametrize("size", [256 * KIB, 2 * MIB, 8 * MIB])
def test_curl_upload_gets_the_endpoints_early_answer(proxy, tmp_path, size):
    """curl as the issue ran it: ten uploads each, with curl's own `Expect:
    100-continue` (sent for bodies over 1 MiB) and without it (body right after the
    head). Every one gets the endpoint's 501, none a 502 or a reset."""
    outcomes = []
    for expect in ([], ["-H", "Expect:"]):
        for _ in range(10):
            outcomes.append(curl_upload(proxy, size, tmp_path, *expect))
    assert outcomes == ["501"] * 20, outcomes
    # The endpoint and Portico carry on.
    r = proxy.get("/", host=HOST)
    assert (r.status, r.text) == (200, "served\n")


def raw_upload(p, size, pause, piece, chunked):
    """Sends the head, waits `pause` seconds, then the body in `piece`-byte writes from
    a thread, while this thread reads the answer. Returns (status line, send error)."""
    s = socket.create_connection((p.ip, p.http_port), timeout=20)
    framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: %d" % size
    s.sendall(("POST /upload HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n" % (HOST, framing)).encode())
    sent = {}

    def send():
        try:
            time.sleep(pause)
            data = b"x" * piece
            left = size
            while left > 0:
                n = min(piece, left)
                if chunked:
                    s.sendall(b"%x\r\n" % n + data[:n] + b"\r\n")
                else:
                    s.sendall(data[:n])
                left -= n
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except OSError as e:
            sent["error"] = e

    t = threading.Thread(target=send, daemon=True)
    t.start()
    got = b""
    try:
        while b"\r\n" not in got:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except OSError as e:
        got += ("<%s>" % e).encode()
    t.join(30)
    s.close()
    return got.split(b"\r\n", 1)[0].decode(errors="replace"), sent.get("error")


@pytest.mark.parametrize(
    "size,pause,piece,chunked",
    [
        (2 * MIB, 0, 256 * KIB, False),  # all at once, large writes
        (2 * MIB, 0.05, 64 * KIB, False),  # the endpoint answers during the pause
        (2 * MIB, 0, 4 * KIB, False),  # many small writes
        (8 * MIB, 0, 1 * MIB, False),
        (2 * MIB, 0, 64 * KIB, True),  # chunked, no length known
        (2 * MIB, 0.2, 16 * KIB, True),
    ],
)
def test_raw_upload_timings_get_the_endpoints_early_answer(proxy, size, pause, piece, chunked):
    """A client that keeps sending after the answer came: it reads the 501, and its
    upload is read to the end rather than cut off by a reset."""
    outcomes = [raw_upload(proxy, size, pause, piece, chunked) for _ in range(5)]
    assert [status.split(" ")[1:2] for status, _ in outcomes] == [["501"]] * 5, outcomes
    assert [error for _, error in outcomes] == [None] * 5, outcomes
