"""Bodies stream through: large uploads and downloads pass without Portico's memory
growing with them, and a slow stream reaches the client piece by piece."""

import hashlib
import json
import socket
import subprocess
import threading
import time

import pytest

from k8s import Config, path, rule

HOST = "big.example.com"
MiB = 1024 * 1024
# What "nothing buffers a whole body" allows: socket and pool buffers, not bodies.
MAX_RSS_GROWTH = 30 * MiB


class RssWatch:
    """Samples a process's RSS every few milliseconds and keeps the peak."""

    def __init__(self, proc):
        self.proc = proc
        self.base = proc.rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.rss_bytes())
            except (OSError, RuntimeError):
                return
            time.sleep(0.005)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    @property
    def growth(self):
        return self.peak - self.base

    def report(self, what):
        print("%s: portico RSS %.1f MiB -> peak %.1f MiB (+%.1f MiB)" % (what, self.base / MiB, self.peak / MiB, self.growth / MiB))


@pytest.fixture
def big(portico, backends):
    be = backends.echo("big")
    cfg = Config()
    cfg.backend("big", [be])
    cfg.ingress("big", rules=[rule(HOST, path("/", "big"))])
    p = portico(cfg, "--max-body-size", "1g", "--access-log", "false")
    # Warm up the threads, the pool and the allocator before the baseline.
    for _ in range(3):
        assert p.get("/", host=HOST, data=b"w" * 65536).status == 200
    assert p.get("/bytes/1048576", host=HOST).status == 200
    return p


def zeros_sha256(n):
    h = hashlib.sha256()
    block = bytes(MiB)
    while n:
        k = min(n, len(block))
        h.update(block[:k])
        n -= k
    return h.hexdigest()


def curl_upload(p, n, chunked, tmp_path):
    """Uploads n zero bytes with curl -T: from a pipe (chunked) or a file (Content-Length)."""
    resolve = "%s:%d:127.0.0.1" % (HOST, p.http_port)
    url = "http://%s:%d/upload" % (HOST, p.http_port)
    common = ["curl", "-sS", "--max-time", "120", "--resolve", resolve, "-H", "Expect:"]
    if chunked:
        cmd = "head -c %d /dev/zero | %s -T - %s" % (n, " ".join(common), url)
    else:
        f = tmp_path / "upload.bin"
        with open(f, "wb") as fh:
            fh.truncate(n)
        cmd = "%s -T %s %s" % (" ".join(common), f, url)
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_large_upload_streams_to_backend(big, tmp_path, chunked):
    n = 256 * MiB
    with RssWatch(big) as rss:
        req = curl_upload(big, n, chunked, tmp_path)
    rss.report("upload %d MiB %s" % (n // MiB, "chunked" if chunked else "content-length"))
    assert req["body_length"] == n
    assert req["chunked"] is chunked
    assert req["body_sha256"] == zeros_sha256(n)
    assert rss.growth < MAX_RSS_GROWTH, "portico grew %.1f MiB during the upload" % (rss.growth / MiB)


@pytest.mark.parametrize("kind", ["content-length", "chunked"])
def test_large_download_to_slow_client_streams(big, kind):
    """50 MiB from a fast backend to a client reading at 25 MB/s: Portico must pace
    the backend, not buffer the difference."""
    n = 50 * MiB
    url_path = "/bytes/%d" % n if kind == "content-length" else "/stream?chunks=%d&size=65536&delay=0" % (n // 65536)
    with RssWatch(big) as rss:
        r = big.get(url_path, "--limit-rate", "25M", host=HOST, timeout=120)
    rss.report("download 50 MiB %s" % kind)
    assert r.status == 200, r.stderr
    assert len(r.body) == n
    assert rss.growth < MAX_RSS_GROWTH, "portico grew %.1f MiB during the download" % (rss.growth / MiB)


def test_slow_stream_reaches_client_as_it_is_sent(big):
    """Chunks sent 0.5 s apart arrive 0.5 s apart, not all at the end (server-sent
    events, progress streams and long polls depend on it)."""
    with socket.create_connection((big.ip, big.http_port), timeout=10) as s:
        s.sendall(("GET /stream?chunks=4&size=16&delay=0.5 HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST).encode())
        start = time.monotonic()
        got = b""
        first_at = None
        while not got.endswith(b"0\r\n\r\n"):
            b = s.recv(65536)
            assert b, "connection closed mid-stream"
            got += b
            if first_at is None and b"x" * 16 in got:
                first_at = time.monotonic() - start
        total = time.monotonic() - start
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    assert got.count(b"x" * 16) == 4
    assert first_at < 1.0, "first chunk took %.2fs" % first_at
    assert total > 1.4, "stream finished after %.2fs, faster than the backend sent it" % total
