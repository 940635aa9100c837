"""Processes and clients for the integration tests: free ports, backend processes,
the `portico` binary, curl, raw sockets and the Prometheus text format."""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BACKENDS = HERE / "backends"

# Generous: the suite must pass on a loaded 2-core machine.
START_TIMEOUT = 20.0


def portico_bin():
    """The binary under test: $PORTICO_BIN, else the release build in the cargo target."""
    if os.environ.get("PORTICO_BIN"):
        return Path(os.environ["PORTICO_BIN"])
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "portico")
    candidates.append(REPO / "target" / "release" / "portico")
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


# --- ports -----------------------------------------------------------------------

_handed_out = set()
_ports_lock = threading.Lock()


def free_port(ips=("127.0.0.1",)):
    """A port nothing listens on at every address in `ips`, chosen below the
    ephemeral range (32768+) so that no outgoing connection can be holding it."""
    with _ports_lock:
        for _ in range(500):
            port = random.randint(20000, 32000)
            if port in _handed_out:
                continue
            if all(_can_bind(ip, port) for ip in ips):
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port found")


def _can_bind(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_until(cond, timeout, interval=0.02, what="condition"):
    """Polls `cond()` until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def port_open(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for_port(ip, port, timeout=START_TIMEOUT, proc=None):
    def ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %s:%d" % (proc.returncode, ip, port))
        return port_open(ip, port)

    wait_until(ready, timeout, interval=0.02, what="%s:%d to listen" % (ip, port))


# --- processes -------------------------------------------------------------------


class Process:
    """A child process whose stdout and stderr go to a log file."""

    def __init__(self, argv, log_path, env=None):
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    @property
    def pid(self):
        return self.proc.pid

    def poll(self):
        return self.proc.poll()

    def log(self):
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout=15.0):
        """SIGTERM, wait, SIGKILL if it will not go; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def rss_bytes(self):
        """Resident set size now, from /proc."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


class Backend(Process):
    """One backend process listening on ip:port."""

    def __init__(self, kind, name, ip, port, log_dir, args=()):
        script = {"echo": "echo.py", "ws": "ws_echo.py", "grpc": "grpc_echo.py", "auth": "auth_service.py"}[kind]
        self.kind, self.name, self.ip, self.port = kind, name, ip, port
        super().__init__(
            [sys.executable, BACKENDS / script, "--host", ip, "--port", port, "--name", name, *args],
            Path(log_dir) / ("backend-%s-%s-%d.log" % (kind, name, port)),
        )
        wait_for_port(ip, port, proc=self.proc)

    @property
    def addr(self):
        return "%s:%d" % (self.ip, self.port)

    def stats(self):
        """The echo backend's counters: connections accepted, requests, in flight."""
        return http_json(self.ip, self.port, "/stats")


def http_json(ip, port, path, host=None, timeout=10):
    """A GET straight to ip:port on a fresh connection, decoded as JSON."""
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host or ip)).encode())
        data = recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert status == 200, data
    return json.loads(body)


def recv_all(sock):
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


# --- portico ---------------------------------------------------------------------


class Portico(Process):
    """The `portico` binary serving one `--from-file` file."""

    def __init__(self, config_text, workdir, args=(), wait_ready=True):
        self.workdir = Path(workdir)
        # The file gets a directory of its own, as in a pod's mounted ConfigMap: Portico
        # watches the directory, and its own log next to it would be a change a second.
        n = len(list(self.workdir.glob("portico*.log")))
        conf = self.workdir / ("conf-%d" % n)
        conf.mkdir(exist_ok=True)
        self.file = conf / "portico.yaml"
        self.file.write_text(config_text)
        self.http_port = free_port()
        self.admin_port = free_port()
        self.https_port = free_port()
        self.ip = "127.0.0.1"
        binary = portico_bin()
        if not binary.exists():
            raise FileNotFoundError(
                "portico binary not found at %s: build it (cargo build --release -p portico-controller) "
                "or set PORTICO_BIN" % binary
            )
        argv = [
            binary,
            "--from-file", self.file,
            "--http-port", self.http_port,
            "--admin-port", self.admin_port,
            "--https-port", self.https_port,
            "--bind-address", self.ip,
            *args,
        ]  # fmt: skip
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        super().__init__(argv, self.workdir / ("portico-%d.log" % n), env=env)
        wait_for_port(self.ip, self.admin_port, proc=self.proc)
        wait_for_port(self.ip, self.http_port, proc=self.proc)
        if wait_ready:
            self.wait_ready()
            # The probe of the HTTP port above is a client connection too: once it is
            # counted, tests that count connections start from a settled 1.
            wait_until(
                lambda: (self.metrics().get("portico_downstream_connections_total") or 0) >= 1,
                START_TIMEOUT,
                what="the port probe counted",
            )

    @property
    def base(self):
        return "http://%s:%d" % (self.ip, self.http_port)

    def admin(self, path):
        """(status, body) of a GET on the admin port."""
        with socket.create_connection((self.ip, self.admin_port), timeout=10) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n" % path).encode())
            data = recv_all(s)
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body.decode(errors="replace")

    def wait_ready(self, timeout=START_TIMEOUT):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("portico exited with %s:\n%s" % (self.proc.returncode, self.log()[-4000:]))
            try:
                return self.admin("/readyz")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, interval=0.02, what="portico /readyz")

    def metrics(self):
        status, body = self.admin("/metrics")
        assert status == 200
        return Metrics(body)

    def write_config(self, text):
        """Rewrites the file in place, as an editor that truncates and writes does."""
        with open(self.file, "w") as f:
            f.write(text)

    def replace_config(self, text):
        """Writes a new file beside and renames it over the old one, as kubectl-style
        tools and ConfigMap volume updates do."""
        tmp = self.file.with_name(".portico.yaml.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.file)

    def get(self, path="/", *curl_args, host=None, **kw):
        """One request through Portico with curl (see `curl`)."""
        return curl(self.base + path, *curl_args, host=host, **kw)


# --- clients ---------------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body, version, exit_code, stderr):
        self.status = status
        self.headers = headers  # lower-case name -> list of values
        self.body = body
        self.version = version
        self.exit_code = exit_code
        self.stderr = stderr

    def header(self, name):
        v = self.headers.get(name.lower())
        return v[-1] if v else None

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode(errors="replace")

    def __repr__(self):
        return "<Response %s %s %r>" % (self.status, self.version, self.body[:300])


def curl(url, *args, host=None, headers=(), data=None, chunked=False, timeout=30):
    """Runs curl once. `host` sends that Host header (the name goes into the URL and
    --resolve points it at 127.0.0.1, as a real client resolving DNS would);
    `headers` are extra 'Name: value' strings; `data` is a POST body, or with
    `chunked` a PUT body streamed from stdin without a Content-Length (curl -T -)."""
    stdin = None
    argv = ["curl", "-sS", "--max-time", str(timeout)]
    if host is not None:
        m = re.match(r"http://([^/:]+):(\d+)(.*)", url)
        assert m, url
        name, port, rest = host, m.group(2), m.group(3)
        hostname = name.split(":")[0]
        explicit_port = name.split(":")[1] if ":" in name else None
        if explicit_port is None:
            url = "http://%s:%s%s" % (hostname, port, rest)
            argv += ["--resolve", "%s:%s:127.0.0.1" % (hostname, port)]
        else:
            # A Host header with a port other than the one connected to.
            argv += ["-H", "Host: %s" % name]
    for h in headers:
        argv += ["-H", h]
    if data is not None:
        argv += ["-T", "-"] if chunked else ["--data-binary", "@-"]
        stdin = data
    with tempfile.TemporaryDirectory() as d:
        hdr = os.path.join(d, "h")
        body = os.path.join(d, "b")
        argv += ["-D", hdr, "-o", body, "-w", "%{http_code}", *args, url]
        p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout + 15)
        raw_headers = Path(hdr).read_bytes() if os.path.exists(hdr) else b""
        content = Path(body).read_bytes() if os.path.exists(body) else b""
    status = int(p.stdout.decode() or 0)
    headers, version = parse_headers(raw_headers)
    return Response(status, headers, content, version, p.returncode, p.stderr.decode(errors="replace"))


def parse_headers(raw):
    """Headers of the last response in curl's -D output (skipping 1xx blocks)."""
    blocks = [b for b in raw.decode("latin-1").split("\r\n\r\n") if b.strip()]
    if not blocks:
        return {}, None
    lines = blocks[-1].split("\r\n")
    version = lines[0].split(" ", 1)[0]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return headers, version


def read_head(sock, buf=b""):
    """Reads from `sock` until `buf` holds a whole request head; returns (head, rest),
    or None when the connection ends or fails first. For scripted endpoints."""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def staggered(n, request, gap=0.02, timeout=30):
    """Runs `request()` `n` times on threads started `gap` seconds apart, so each finds
    the ones before it in flight; returns what each returned, in the order they ended."""
    results = []
    threads = [threading.Thread(target=lambda: results.append(request())) for _ in range(n)]
    for t in threads:
        t.start()
        time.sleep(gap)
    for t in threads:
        t.join(timeout)
    return results


def raw_exchange(ip, port, data, timeout=10):
    """Sends raw bytes, returns (everything received, whether the peer closed)."""
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not b:
                closed = True
                break
            chunks.append(b)
        return b"".join(chunks), closed


# --- metrics ---------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """A parsed Prometheus text page."""

    def __init__(self, text):
        self.text = text
        self.samples = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if m:
                labels = dict(_LABEL.findall(m.group(2) or ""))
                self.samples.append((m.group(1), labels, float(m.group(3))))

    def get(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        return sum(
            v for n, ls, v in self.samples if n == name and all(ls.get(k) == str(x) for k, x in labels.items())
        )

    def series(self, name):
        return [(ls, v) for n, ls, v in self.samples if n == name]

    def has(self, name):
        return any(n == name for n, _, _ in self.samples)


def which(tool):
    return shutil.which(tool)


# --- a backend that records every byte ---------------------------------------------


class ByteLogBackend:
    """An endpoint in this process that records every byte it receives, per
    connection, and answers `200 ok` once a connection has been quiet for a moment
    after sending something. For framing tests: whether anything of a request reached
    an endpoint, and exactly what."""

    def __init__(self, ip="127.0.0.1", quiet=0.2):
        self.ip, self.quiet = ip, quiet
        self._lock = threading.Lock()
        self.connections = []  # one bytearray per accepted connection
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((ip, 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def received(self):
        with self._lock:
            return b"".join(bytes(c) for c in self.connections)

    def _accept(self):
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            got = bytearray()
            with self._lock:
                self.connections.append(got)
            threading.Thread(target=self._serve, args=(conn, got), daemon=True).start()

    def _serve(self, conn, got):
        conn.settimeout(self.quiet)
        unanswered = False
        with conn:
            while not self._closed:
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    if unanswered:
                        unanswered = False
                        try:
                            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        except OSError:
                            return
                    continue
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    got.extend(data)
                unanswered = True

    def close(self):
        self._closed = True
        self._sock.close()
