#!/usr/bin/env python3
"""Portico side by side with nginx and HAProxy, and a direct client->backend baseline,
in one run. bench/run.sh installs the tools and builds Portico, then runs this; see
bench/README.md for what each scenario measures.

Every peer proxies to the same backend (a separate nginx serving static files) and is
measured in the same run, interleaved (nginx, haproxy, portico, direct, repeat), so
ratios between peers hold even on a busy machine whose absolute numbers drift.

Exit status: 0 when every scenario ran, whatever the numbers; non-zero only when the
harness broke: a peer failed to start or died, or answered with a non-2xx status.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"
VHOST = "bench.local"  # the Host every client sends; Portico routes on it
PEERS = ["nginx", "haproxy", "portico", "direct"]
PROXIES = ["nginx", "haproxy", "portico"]
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Static files the backend serves: URL path -> size in bytes.
FILES = {"/small": 100, "/10k": 10 * 1024, "/1m": 1024 * 1024}

FULL = dict(rounds=3, duration=10, warmup=3, conns=32, threads=2, idle=10000, rate_conns=32)
QUICK = dict(rounds=1, duration=2, warmup=1, conns=8, threads=2, idle=500, rate_conns=8)


class HarnessError(Exception):
    """The harness (not a timing) broke: the run is invalid."""


def log(msg):
    print("bench: %s" % msg, file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError("%s exited with %s while starting" % (what, proc.returncode))
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError("%s did not listen on %d within %ds" % (what, port, timeout))


def proc_table():
    """pid -> parent pid, for every process."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(d)] = int(fields[1])
    return table


def tree(pid):
    """pid and all its descendants (nginx's workers)."""
    table = proc_table()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, parent in table.items() if parent == p)
    return out


def cpu_ticks(pids):
    """utime + stime, in clock ticks, summed over processes (all threads included)."""
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total


def status_kb(pids, key):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def pss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


class Peer:
    """One server under test: its process (and its children) and the port clients use."""

    def __init__(self, name, label, port, proc, logfile):
        self.name, self.label, self.port, self.proc, self.logfile = name, label, port, proc, logfile

    def pids(self):
        return tree(self.proc.pid)

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise HarnessError("%s died (exit %s):\n%s" % (self.label, self.proc.returncode, self.log_tail()))

    def log_tail(self, n=3000):
        try:
            return Path(self.logfile).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def url(self, path):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def spawn(argv, logfile, what):
    log("starting %s: %s" % (what, " ".join(str(a) for a in argv)))
    out = open(logfile, "ab")
    try:
        return subprocess.Popen([str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        out.close()


# --- configurations ------------------------------------------------------------------

NGINX_COMMON = """\
daemon off;
master_process on;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
{user}
worker_rlimit_nofile {nofile};
events {{ worker_connections {wconns}; }}
"""

NGINX_TEMP = """\
  client_body_temp_path {dir}/{name}-tmp/body;
  proxy_temp_path {dir}/{name}-tmp/proxy;
  fastcgi_temp_path {dir}/{name}-tmp/fastcgi;
  uwsgi_temp_path {dir}/{name}-tmp/uwsgi;
  scgi_temp_path {dir}/{name}-tmp/scgi;
"""

BACKEND_CONF = (
    NGINX_COMMON
    + """\
worker_processes 1;
http {{
{temp}
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  open_file_cache max=64 inactive=600s;
  keepalive_timeout 600s;
  keepalive_requests 1000000000;
  server {{
    listen {host}:{port} backlog=4096;
    root {dir}/www;
    location = /stub {{ stub_status; }}
  }}
}}
"""
)

NGINX_PROXY_CONF = (
    NGINX_COMMON
    + """\
worker_processes 2;
http {{
{temp}
  access_log off;
  keepalive_timeout 600s;
  keepalive_requests 1000000000;
  upstream backend {{
    server {host}:{backend_port};
    keepalive 64;
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
  }}
  server {{
    listen {host}:{port} backlog=4096;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
)

HAPROXY_CONF = """\
global
  nbthread 2
  maxconn {maxconn}
  no strict-limits

defaults
  mode http
  maxconn {maxconn}
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-keep-alive 600s
  option http-keep-alive
  http-reuse always

frontend fe
  bind {host}:{port} backlog 4096
  default_backend be

backend be
  server backend {host}:{backend_port}
"""

PORTICO_CONF = """\
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: portico
spec:
  controller: portico.dev/ingress-controller
---
apiVersion: v1
kind: Service
metadata:
  name: bench-backend
  namespace: default
spec:
  type: ClusterIP
  selector:
    app: bench-backend
  ports:
  - name: http
    port: 80
    targetPort: {backend_port}
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bench-backend-0
  namespace: default
  labels:
    kubernetes.io/service-name: bench-backend
addressType: IPv4
ports:
- name: http
  port: {backend_port}
  protocol: TCP
endpoints:
- addresses:
  - {host}
  conditions:
    ready: true
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: default
spec:
  ingressClassName: portico
  rules:
  - host: {vhost}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: bench-backend
            port:
              name: http
"""


def nginx_vars(workdir, name, nofile):
    (workdir / ("%s-tmp" % name)).mkdir(exist_ok=True)
    return dict(
        dir=workdir,
        name=name,
        host=HOST,
        nofile=nofile,
        wconns=max(1024, nofile - 100),
        # As root, nginx would otherwise run its workers as nobody, who cannot read
        # the private work directory.
        user="user root;" if os.geteuid() == 0 else "",
        temp=NGINX_TEMP.format(dir=workdir, name=name),
    )


# --- clients ---------------------------------------------------------------------


def http_get(port, path, host=VHOST, timeout=10):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def backend_stub(port):
    """(accepts, requests) of the backend nginx; both count this very fetch."""
    status, body = http_get(port, "/stub")
    if status != 200:
        raise HarnessError("backend stub_status answered %d" % status)
    m = re.search(rb"server accepts handled requests\s+(\d+)\s+(\d+)\s+(\d+)", body)
    if not m:
        raise HarnessError("cannot parse backend stub_status: %r" % body[:200])
    return int(m.group(1)), int(m.group(3))


def portico_upstream_counters(admin_port):
    status, body = http_get(admin_port, "/metrics", host="admin")
    if status != 200:
        raise HarnessError("portico /metrics answered %d" % status)
    out = {"opened": 0.0, "reused": 0.0}
    for line in body.decode().splitlines():
        for key in out:
            if line.startswith("portico_upstream_connections_%s_total" % key):
                out[key] += float(line.rsplit(" ", 1)[1])
    return out


class Bench:
    def __init__(self, args, settings):
        self.args = args
        self.s = settings
        self.workdir = Path(tempfile.mkdtemp(prefix="portico-bench-"))
        os.chmod(self.workdir, 0o755)
        self.peers = {}
        self.backend = None
        self.portico_admin = None
        self.runs = []
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # The idle-connection client and the server each hold one descriptor per
        # connection (a proxy a few more for its backend): keep both under the limit.
        self.idle_n = min(self.s["idle"], self.nofile - 1000)
        if self.idle_n < self.s["idle"]:
            log("open-file limit %d: scenario 8 uses %d connections" % (self.nofile, self.idle_n))

    # --- lifecycle

    def start(self):
        # Run a private copy: a rebuild of the shared binary mid-run changes nothing.
        binary = self.workdir / "portico"
        shutil.copy2(self.args.portico, binary)
        self.portico_bin = binary
        usage = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False).stdout
        self.portico_has_https = "--https-port" in usage
        www = self.workdir / "www"
        www.mkdir(exist_ok=True)
        for path, size in FILES.items():
            (www / path.lstrip("/")).write_bytes((b"portico-bench-" * (size // 14 + 1))[:size])
        os.chmod(www, 0o755)

        # Backend: its own nginx instance with one worker, used by every peer.
        port = free_port()
        conf = self.workdir / "backend.conf"
        conf.write_text(BACKEND_CONF.format(port=port, **nginx_vars(self.workdir, "backend", self.nofile)))
        proc = spawn(["nginx", "-p", self.workdir, "-c", conf], self.workdir / "backend.log", "backend nginx")
        wait_for_port(port, proc, "backend nginx")
        self.backend = Peer("direct", "direct", port, proc, self.workdir / "backend-error.log")
        self.peers["direct"] = self.backend
        self.start_proxies()

    def start_proxies(self):
        bport = self.backend.port

        port = free_port()
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            NGINX_PROXY_CONF.format(port=port, backend_port=bport, **nginx_vars(self.workdir, "nginx", self.nofile))
        )
        proc = spawn(["nginx", "-p", self.workdir, "-c", conf], self.workdir / "nginx.log", "nginx")
        wait_for_port(port, proc, "nginx")
        self.peers["nginx"] = Peer("nginx", "nginx", port, proc, self.workdir / "nginx-error.log")

        port = free_port()
        conf = self.workdir / "haproxy.cfg"
        maxconn = self.idle_n + 1000
        conf.write_text(HAPROXY_CONF.format(host=HOST, port=port, backend_port=bport, maxconn=maxconn))
        proc = spawn(["haproxy", "-db", "-f", conf], self.workdir / "haproxy.log", "haproxy")
        wait_for_port(port, proc, "haproxy")
        self.peers["haproxy"] = Peer("haproxy", "HAProxy", port, proc, self.workdir / "haproxy.log")

        port, admin = free_port(), free_port()
        conf = self.workdir / "portico.yaml"
        conf.write_text(PORTICO_CONF.format(host=HOST, vhost=VHOST, backend_port=bport))
        argv = [
            self.portico_bin,
            "--from-file", conf,
            "--http-port", port,
            "--admin-port", admin,
            "--bind-address", HOST,
            "--access-log", "false",
            "--worker-threads", "2",
        ]  # fmt: skip
        if self.portico_has_https:
            argv += ["--https-port", "0"]  # no HTTPS listener: nothing binds the default 8443
        proc = spawn(argv, self.workdir / "portico.log", "portico")
        wait_for_port(admin, proc, "portico admin")
        wait_for_port(port, proc, "portico")
        deadline = time.monotonic() + 30
        while True:
            try:
                if http_get(admin, "/readyz", host="admin")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise HarnessError("portico never became ready:\n" + (self.workdir / "portico.log").read_text()[-3000:])
            time.sleep(0.05)
        self.peers["portico"] = Peer("portico", "Portico", port, proc, self.workdir / "portico.log")
        self.portico_admin = admin

    def stop_peers(self):
        for name in PROXIES + ["direct"]:
            if name in self.peers:
                self.peers[name].stop()
        self.peers = {}

    def restart(self):
        """Every peer and the backend anew: fresh processes, nothing cached or retained."""
        self.stop_peers()
        self.start()
        self.sanity()

    def stop(self):
        self.stop_peers()
        if self.args.keep_workdir:
            log("work directory kept: %s" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def check_all_alive(self):
        for p in self.peers.values():
            p.check_alive()

    def sanity(self):
        """Every peer answers every file with 200 and the exact body."""
        for name in PEERS:
            peer = self.peers[name]
            for path, size in FILES.items():
                status, body = http_get(peer.port, path)
                if status != 200 or len(body) != size:
                    raise HarnessError(
                        "%s: GET %s gave %d with %d bytes (want 200, %d)" % (peer.label, path, status, len(body), size)
                    )
        log("sanity: every peer serves %s with 200 and exact bodies" % ", ".join(FILES))

    # --- measurements

    def wrk(self, peer, path, duration, close=False):
        conns, threads = self.s["conns"], self.s["threads"]
        argv = [
            "wrk", "-t", threads, "-c", conns, "-d", "%ds" % duration, "--timeout", "10s",
            "-s", HERE / "wrk_report.lua", "-H", "Host: " + VHOST,
        ]  # fmt: skip
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(peer.url(path))
        backend_pids = self.backend.pids()
        pids = peer.pids()
        stub0 = backend_stub(self.backend.port)
        pm0 = portico_upstream_counters(self.portico_admin) if peer.name == "portico" else None
        cpu0, bcpu0 = cpu_ticks(pids), cpu_ticks(backend_pids)
        t0 = time.monotonic()
        try:
            out = subprocess.run(
                [str(a) for a in argv], capture_output=True, text=True, timeout=duration + 60, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise HarnessError("wrk against %s hung" % peer.label) from e
        wall = time.monotonic() - t0
        cpu1, bcpu1 = cpu_ticks(pids), cpu_ticks(backend_pids)
        stub1 = backend_stub(self.backend.port)
        pm1 = portico_upstream_counters(self.portico_admin) if peer.name == "portico" else None
        peer.check_alive()
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
        if out.returncode != 0 or line is None:
            raise HarnessError("wrk against %s failed (%d):\n%s%s" % (peer.label, out.returncode, out.stdout, out.stderr))
        r = json.loads(line[len("WRK_JSON ") :])
        if r["requests"] == 0:
            raise HarnessError("wrk against %s completed no request:\n%s" % (peer.label, out.stdout))
        if r["errors"]["status"]:
            raise HarnessError("%s answered %d non-2xx/3xx responses:\n%s" % (peer.label, r["errors"]["status"], out.stdout))
        secs = r["duration_us"] / 1e6
        n = r["requests"]
        res = {
            "requests": n,
            "seconds": round(secs, 3),
            "wall_seconds": round(wall, 3),
            "rps": n / secs,
            "mbytes_per_s": r["bytes"] / secs / 1e6,
            "p50_ms": r["latency_us"]["p50"] / 1e3,
            "p99_ms": r["latency_us"]["p99"] / 1e3,
            "p999_ms": r["latency_us"]["p999"] / 1e3,
            "socket_errors": r["errors"]["connect"] + r["errors"]["read"] + r["errors"]["write"] + r["errors"]["timeout"],
            "errors": r["errors"],
            "cpu_s": (cpu1 - cpu0) / CLK_TCK,
            "cpu_us_per_req": (cpu1 - cpu0) / CLK_TCK / n * 1e6,
            "backend_cpu_s": (bcpu1 - bcpu0) / CLK_TCK,
            # Less the second stub_status fetch's own connection and request.
            "backend_accepts": stub1[0] - stub0[0] - 1,
            "backend_requests": stub1[1] - stub0[1] - 1,
            "backend_conns_per_1k_req": (stub1[0] - stub0[0] - 1) / n * 1000,
        }
        if pm0 is not None:
            res["portico_upstream_opened"] = pm1["opened"] - pm0["opened"]
            res["portico_upstream_reused"] = pm1["reused"] - pm0["reused"]
        return res

    def oha(self, peer, path, duration, rate):
        argv = [
            self.args.oha, "-z", "%ds" % duration, "-c", self.s["rate_conns"], "-q", rate,
            "--latency-correction", "--no-tui", "--output-format", "json",
            "-H", "Host: " + VHOST, peer.url(path),
        ]  # fmt: skip
        pids = peer.pids()
        cpu0 = cpu_ticks(pids)
        try:
            out = subprocess.run(
                [str(a) for a in argv], capture_output=True, text=True, timeout=duration + 60, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise HarnessError("oha against %s hung" % peer.label) from e
        cpu1 = cpu_ticks(pids)
        peer.check_alive()
        if out.returncode != 0:
            raise HarnessError("oha against %s failed (%d):\n%s" % (peer.label, out.returncode, out.stderr[-3000:]))
        r = json.loads(out.stdout)
        codes = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
        bad = {k: v for k, v in codes.items() if not 200 <= k < 300}
        if bad:
            raise HarnessError("%s answered non-2xx under fixed rate: %s" % (peer.label, bad))
        n = sum(codes.values())
        if n == 0:
            raise HarnessError("oha against %s completed no request: %s" % (peer.label, r.get("errorDistribution")))
        pct = r["latencyPercentiles"]
        return {
            "target_rps": rate,
            "requests": n,
            "rps": r["summary"]["requestsPerSec"],
            "p50_ms": pct["p50"] * 1e3,
            "p99_ms": pct["p99"] * 1e3,
            "p999_ms": pct["p99.9"] * 1e3,
            "errors": sum(r.get("errorDistribution", {}).values()),
            "cpu_us_per_req": (cpu1 - cpu0) / CLK_TCK / n * 1e6,
        }

    def idle(self, peer):
        n = self.idle_n
        pids = peer.pids()
        rss0, pss0 = status_kb(pids, "VmRSS"), pss_kb(pids)
        proc = subprocess.Popen(
            [sys.executable, HERE / "idle_conns.py", HOST, str(peer.port), str(n), "/small", VHOST],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            sel = selectors.DefaultSelector()
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=300):
                raise HarnessError("idle-connection client against %s did not finish opening" % peer.label)
            line = proc.stdout.readline()
            if not line:
                raise HarnessError("idle-connection client against %s failed (exit %s)" % (peer.label, proc.wait()))
            report = json.loads(line)
            time.sleep(1.0)  # let the server settle before reading its memory
            pids = peer.pids()
            rss1, pss1 = status_kb(pids, "VmRSS"), pss_kb(pids)
            peer.check_alive()
        finally:
            try:
                proc.stdin.write("\n")
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if report["open"] == 0:
            raise HarnessError("%s held no idle connection: %s" % (peer.label, report["first_error"]))
        if report["failed"]:
            log("%s: %d of %d idle connections failed (first: %s)" % (peer.label, report["failed"], n, report["first_error"]))
        # Wait for the server to see every close before the next peer starts.
        time.sleep(1.0)
        return {
            "connections": report["open"],
            "failed": report["failed"],
            "open_seconds": report["seconds"],
            "rss_before_mib": rss0 / 1024,
            "rss_mib": rss1 / 1024,
            "pss_before_mib": pss0 / 1024,
            "pss_mib": pss1 / 1024,
            "kib_per_conn": (rss1 - rss0) / max(1, report["open"]),
        }

    # --- scenarios

    def record(self, scenario, rnd, peer, result):
        result = dict(result, scenario=scenario, round=rnd, peer=peer.name)
        self.runs.append(result)
        keys = [k for k in ("rps", "p99_ms", "p999_ms", "rss_mib", "cpu_us_per_req") if k in result]
        log(
            "%-9s round %d %-8s %s"
            % (scenario, rnd, peer.name, "  ".join("%s=%s" % (k, fmt_num(result[k])) for k in keys))
        )

    def interleaved(self, scenario, fn, before_round=None):
        for rnd in range(1, self.s["rounds"] + 1):
            if before_round:
                before_round()
            for name in PEERS:
                peer = self.peers[name]
                self.record(scenario, rnd, peer, fn(peer))
                time.sleep(0.5)

    def run(self):
        d = self.s["duration"]
        t_start = time.monotonic()
        # 8: memory first, each round on fresh processes (a peer's allocator keeps
        # what an earlier round used, which would hide the growth).
        log("scenario 8: %d idle keep-alive connections" % self.idle_n)
        self.interleaved("s8_idle", self.idle, before_round=self.restart)

        log("warm-up: %ds per peer per file" % self.s["warmup"])
        for name in PEERS:
            for path in FILES:
                self.wrk(self.peers[name], path, self.s["warmup"])

        log("scenario 1 (+9, +10): keep-alive, 100-byte responses")
        self.interleaved("s1_small", lambda p: self.wrk(p, "/small", d))
        log("scenario 2: keep-alive, 10 KiB and 1 MiB responses")
        self.interleaved("s2_10k", lambda p: self.wrk(p, "/10k", d))
        self.interleaved("s2_1m", lambda p: self.wrk(p, "/1m", d))
        log("scenario 3: a new connection per request")
        self.interleaved("s3_close", lambda p: self.wrk(p, "/small", d, close=True))

        nginx_max = statistics.median(r["rps"] for r in self.runs if r["scenario"] == "s1_small" and r["peer"] == "nginx")
        rate = max(100, int(nginx_max * 0.5))
        log("scenario 7: fixed rate %d req/s (half of nginx's %d)" % (rate, nginx_max))
        self.interleaved("s7_rate", lambda p: self.oha(p, "/small", d, rate))
        self.check_all_alive()
        self.elapsed = time.monotonic() - t_start
        self.rate = rate


    def profile(self, out_dir, seconds):
        """Samples Portico's CPU with `perf record -e cpu-clock` (a software clock: it
        works where hardware counters are not available) while wrk drives scenarios 1,
        2 (10 KiB) and 3 against it, and writes the top symbols of each."""
        if not shutil.which("perf"):
            raise HarnessError("no perf: install Debian's linux-perf")
        self.start()
        self.sanity()
        peer = self.peers["portico"]
        for path in FILES:
            self.wrk(peer, path, self.s["warmup"])
        reports = {}
        for scen, path, close in (("s1_small", "/small", False), ("s2_10k", "/10k", False), ("s3_close", "/small", True)):
            data = self.workdir / ("perf-%s.data" % scen)
            rec = subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g", "-o", str(data), "-p", str(peer.proc.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            res = self.wrk(peer, path, seconds, close=close)
            rec.send_signal(2)  # SIGINT: perf writes its file and exits
            rec.wait(60)
            report = subprocess.run(
                ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
                 "--sort", "dso,symbol", "--percent-limit", "0.7"],
                capture_output=True, text=True, check=False,
            ).stdout  # fmt: skip
            lines = [ln for ln in report.splitlines() if ln.strip() and not ln.startswith("#")]
            head = "%s: %s req/s, %.1f CPU us per request" % (scen, fmt_num(res["rps"]), res["cpu_us_per_req"])
            reports[scen] = head + "\n" + "\n".join(lines[:40])
            log(reports[scen])
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "profile.txt"
        path.write_text("\n\n".join(reports.values()) + "\n")
        log("profile: %s" % path)


# --- report ----------------------------------------------------------------------


def fmt_num(v):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1000:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    if a == 0:
        return "0"
    return "%.3f" % v


def median_of(runs, scenario, peer, key):
    vals = [r[key] for r in runs if r["scenario"] == scenario and r["peer"] == peer and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# (scenario id, description, metric description, run scenario, key, better)
ROWS = [
    ("1", "HTTP/1.1 keep-alive, 100 B", "req/s", "s1_small", "rps", "higher"),
    ("1", "HTTP/1.1 keep-alive, 100 B", "p99 latency, ms (closed loop)", "s1_small", "p99_ms", "lower"),
    ("2", "keep-alive, 10 KiB", "req/s", "s2_10k", "rps", "higher"),
    ("2", "keep-alive, 1 MiB", "req/s", "s2_1m", "rps", "higher"),
    ("2", "keep-alive, 1 MiB", "MB/s", "s2_1m", "mbytes_per_s", "higher"),
    ("3", "new connection per request, 100 B", "req/s", "s3_close", "rps", "higher"),
    ("4", "TLS handshake rate", None, None, None, None),
    ("5", "TLS keep-alive", None, None, None, None),
    ("6", "HTTP/2 over TLS", None, None, None, None),
    ("7", "fixed rate {rate} req/s, 100 B", "p50 latency, ms", "s7_rate", "p50_ms", "lower"),
    ("7", "fixed rate {rate} req/s, 100 B", "p99 latency, ms", "s7_rate", "p99_ms", "lower"),
    ("7", "fixed rate {rate} req/s, 100 B", "p99.9 latency, ms", "s7_rate", "p999_ms", "lower"),
    ("8", "{idle} idle keep-alive connections", "RSS, MiB (all processes)", "s8_idle", "rss_mib", "lower"),
    ("8", "{idle} idle keep-alive connections", "RSS growth, KiB per connection", "s8_idle", "kib_per_conn", "lower"),
    ("9", "upstream reuse, keep-alive clients (1)", "backend connections per 1k requests", "s1_small", "backend_conns_per_1k_req", "lower"),
    ("9", "upstream reuse, new client connections (3)", "backend connections per 1k requests", "s3_close", "backend_conns_per_1k_req", "lower"),
    ("10", "CPU per request, keep-alive 100 B (1)", "CPU µs per request (proxy processes)", "s1_small", "cpu_us_per_req", "lower"),
    ("10", "CPU per request, new connection (3)", "CPU µs per request (proxy processes)", "s3_close", "cpu_us_per_req", "lower"),
]


def summarize(runs):
    summary = {}
    for r in runs:
        summary.setdefault(r["scenario"], {})
    for scen in summary:
        for peer in PEERS:
            keys = sorted({k for r in runs if r["scenario"] == scen for k in r if isinstance(r[k], (int, float))})
            keys = [k for k in keys if k != "round"]
            summary[scen][peer] = {k: median_of(runs, scen, peer, k) for k in keys}
    return summary


def tool_version(argv, pattern=None):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip()
    line = text.splitlines()[0] if text else ""
    if pattern:
        m = re.search(pattern, text)
        return m.group(1) if m else line
    return line


def metadata(args, bench):
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = tool_version(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "os": tool_version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        # What run.sh built (a commit, or the checkout with "-dirty" for uncommitted edits).
        "portico": os.environ.get("BENCH_PORTICO_LABEL") or "%s (checkout)" % git,
        "nginx": tool_version(["nginx", "-v"], r"nginx/(\S+)"),
        "haproxy": tool_version(["haproxy", "-v"], r"version (\S+)"),
        "wrk": tool_version(["wrk", "-v"], r"wrk (?:debian/)?([0-9][0-9.]*[0-9])"),
        "oha": tool_version([str(args.oha), "--version"], r"oha (\S+)"),
        "python": platform.python_version(),
        "open_file_limit": bench.nofile,
        "mode": "quick" if args.quick else "full",
        "settings": bench.s,
        "idle_connections": bench.idle_n,
        "fixed_rate": getattr(bench, "rate", None),
        "elapsed_seconds": round(getattr(bench, "elapsed", 0)),
    }


def render_markdown(meta, summary):
    s = meta["settings"]
    out = []
    out.append("# Portico vs nginx vs HAProxy: %s\n" % meta["date"])
    out.append(
        "%d cores (%s), kernel %s, %s. Portico %s, nginx %s, HAProxy %s, wrk %s, oha %s. "
        "%s run: %d round(s) of %d s per scenario and peer, interleaved; medians shown. "
        "Whole run: %d s.\n"
        % (
            meta["cores"], meta["cpu"] or "unknown CPU", meta["kernel"], meta["os"], meta["portico"], meta["nginx"],
            meta["haproxy"], meta["wrk"], meta["oha"], meta["mode"], s["rounds"], s["duration"], meta["elapsed_seconds"],
        )  # fmt: skip
    )
    out.append(
        "Load: wrk -t%d -c%d (closed loop); scenario 7: oha -c%d at a fixed rate with latency "
        "correction. Every peer runs on the same %d cores as the load generator and the backend, "
        "so ratios matter, not absolute numbers.\n" % (s["threads"], s["conns"], s["rate_conns"], meta["cores"])
    )
    out.append(
        "| # | scenario | metric | nginx | HAProxy | Portico | direct | Portico/nginx | Portico/HAProxy | Portico/direct |"
    )
    out.append("|---|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for sid, desc, metric, scen, key, better in ROWS:
        desc = desc.format(rate=fmt_num(meta["fixed_rate"] or 0), idle="{:,}".format(meta["idle_connections"]))
        if scen is None:
            out.append("| %s | %s | | n/a: TLS not benchmarked yet | | | | | | |" % (sid, desc))
            continue
        vals = {p: summary.get(scen, {}).get(p, {}).get(key) for p in PEERS}
        cells = [fmt_num(vals[p]) for p in PEERS]
        rats = []
        for other in ("nginx", "haproxy", "direct"):
            r = ratio(vals["portico"], vals[other])
            rats.append("–" if r is None else "%.2f" % r)
        arrow = "↑" if better == "higher" else "↓"
        out.append("| %s | %s | %s %s | %s | %s |" % (sid, desc, metric, arrow, " | ".join(cells), " | ".join(rats)))
    out.append("")
    out.append(
        "↑ higher is better, ↓ lower is better; a ratio is Portico's value over the other peer's "
        "(for ↑ rows above 1 means Portico is ahead, for ↓ rows below 1). \"direct\" is the client "
        "talking to the backend itself: its memory and CPU rows are the backend nginx's own, and its "
        "backend connections are the client's. Ratios of near-zero counts (row 9) are noise.\n"
    )
    errs = []
    for scen, peers in summary.items():
        for p, m in peers.items():
            if m.get("socket_errors"):
                errs.append("%s/%s: %s socket errors (median)" % (scen, p, fmt_num(m["socket_errors"])))
            if m.get("failed"):
                errs.append("%s/%s: %s idle connections failed (median)" % (scen, p, fmt_num(m["failed"])))
    if errs:
        out.append("Client-side errors seen: " + "; ".join(errs) + ".\n")
    return "\n".join(out)


def update_readme(table_md):
    readme = HERE / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    begin, end = "<!-- latest:begin -->", "<!-- latest:end -->"
    if begin not in text or end not in text:
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    title, body = table_md.split("\n", 1)
    body = "### " + title.lstrip("# ") + "\n" + body  # a sub-heading here, with the date
    readme.write_text(head + begin + "\n" + body.rstrip("\n") + "\n" + end + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portico", help="the portico binary")
    ap.add_argument("--oha", help="the oha binary")
    ap.add_argument("--quick", action="store_true", help="1 round, 2 s each, small connection counts (smoke test)")
    ap.add_argument("--rounds", type=int, help="override the number of rounds")
    ap.add_argument("--duration", type=int, help="override seconds per measurement")
    ap.add_argument("--out", help="directory for latest.md and latest.json")
    ap.add_argument("--update-readme", action="store_true", help="also put the table into bench/README.md")
    ap.add_argument("--keep-workdir", action="store_true", help="keep configs and logs for inspection")
    ap.add_argument("--profile", action="store_true", help="instead of the comparison: perf profile of Portico alone")
    ap.add_argument("--render", metavar="JSON", help="only re-render latest.md (and the README table) from a results file")
    args = ap.parse_args()
    if args.render:
        data = json.loads(Path(args.render).read_text())
        md = render_markdown(data["meta"], data["summary"])
        out_dir = Path(args.out) if args.out else Path(args.render).parent
        (out_dir / "latest.md").write_text(md)
        if args.update_readme:
            update_readme(md)
        print(md)
        return 0

    if not args.portico or not args.oha:
        ap.error("--portico and --oha are required (bench/run.sh passes them)")
    settings = dict(QUICK if args.quick else FULL)
    if args.rounds:
        settings["rounds"] = args.rounds
    if args.duration:
        settings["duration"] = args.duration
    out_dir = Path(args.out) if args.out else HERE / "results"

    bench = Bench(args, settings)
    if args.profile:
        try:
            bench.profile(Path(args.out) if args.out else Path(tempfile.gettempdir()), settings["duration"])
        except HarnessError as e:
            log("HARNESS FAILURE: %s" % e)
            return 1
        finally:
            bench.stop()
        return 0
    try:
        bench.run()
    except HarnessError as e:
        log("HARNESS FAILURE: %s" % e)
        return 1
    finally:
        bench.stop()

    meta = metadata(args, bench)
    summary = summarize(bench.runs)
    md = render_markdown(meta, summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.md").write_text(md)
    (out_dir / "latest.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "runs": bench.runs}, indent=1, sort_keys=True) + "\n"
    )
    if args.update_readme:
        update_readme(md)
    print(md)
    log("results: %s/latest.md, latest.json (%d s)" % (out_dir, meta["elapsed_seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
