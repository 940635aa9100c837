#!/usr/bin/env python3
"""Slow clients against Portico and nginx, side by side: what they make each proxy hold.

Runs slowhttptest (Debian's package) twice against each proxy, in front of one backend
nginx that serves a 1 MiB file and reads whole request bodies:

- slow read (`-X`): clients that ask for the 1 MiB file and read it a few bytes at a
  time through a tiny receive window;
- slow POST (`-B`): clients that declare an 8 KiB body and send it a few bytes every
  10 seconds.

While each attack runs, it samples the proxy's resident memory (all its processes) and
the connections the backend has open from the proxy, and prints the peaks. Loopback
only. Used for the figures in docs/hardening.md:

    python3 bench/slow_clients.py --portico path/to/portico [--connections 1000]
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"

# nginx's temporary files, per instance (`{name}`), under the run's directory.
TEMP = "".join("  %s_temp_path {dir}/tmp/{name}-%s;\n" % (k, k) for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))

BACKEND = """\
daemon off;
master_process off;
pid {dir}/backend.pid;
error_log {dir}/backend-error.log warn;
worker_rlimit_nofile 16000;
events {{ worker_connections 7000; }}
http {{
{temp}
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  keepalive_timeout 600s;
  server {{
    listen {host}:{port} backlog=4096;
    root {dir}/www;
    # A POST's body is read (and discarded) to its end.
    location /post {{ client_max_body_size 0; return 200 "ok\\n"; }}
  }}
}}
"""

# nginx as the proxy: its defaults (proxy_buffering on, request buffering on), keep-alive
# to the backend as bench/ configures it.
NGINX = """\
daemon off;
master_process on;
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
worker_rlimit_nofile 16000;
events {{ worker_connections 7000; }}
http {{
{temp}
  access_log off;
  upstream backend {{ server {host}:{backend_port}; keepalive 64; }}
  server {{
    listen {host}:{port} backlog=4096;
    client_max_body_size 0;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""

PORTICO = """\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: portico}}
spec: {{controller: portico.dev/ingress-controller}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec:
  ports: [{{name: http, port: 80, targetPort: {backend_port}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-0
  namespace: default
  labels: {{kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{{name: http, port: {backend_port}, protocol: TCP}}]
endpoints: [{{addresses: ["{host}"], conditions: {{ready: true}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: slow, namespace: default}}
spec:
  ingressClassName: portico
  defaultBackend: {{service: {{name: backend, port: {{number: 80}}}}}}
"""


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("process exited early: %s" % proc.args)
        try:
            socket.create_connection((HOST, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("nothing listens on %d" % port)


def tree_rss_kib(pid):
    """Resident memory of a process and its children, KiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path("/proc/%d/status" % p).read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for t in Path("/proc/%d/task" % p).iterdir():
                todo += [int(c) for c in (t / "children").read_text().split()]
        except (OSError, AttributeError):
            pass
    return total


def backend_conns(backend_port):
    """Established connections the backend holds (accepted on its port)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", "( sport = :%d )" % backend_port],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sum(1 for line in out.splitlines() if line.strip())


def attack(kind, port, backend_port, pid, n, seconds):
    """Runs one slowhttptest attack; returns (backend connections before, at the peak,
    RSS before, at the peak) in KiB."""
    if kind == "read":
        argv = ["-X", "-c", n, "-r", max(n // 5, 1), "-w", 512, "-y", 1024, "-n", 5, "-z", 32, "-k", 3,
                "-u", "http://%s:%d/1m" % (HOST, port)]  # fmt: skip
    else:
        argv = ["-B", "-c", n, "-r", max(n // 10, 1), "-i", 10, "-s", 8192,
                "-u", "http://%s:%d/post" % (HOST, port)]  # fmt: skip
    rss0, conns0 = tree_rss_kib(pid), backend_conns(backend_port)
    proc = subprocess.Popen(
        [str(a) for a in ["slowhttptest", "-l", seconds, "-t", "GET" if kind == "read" else "POST", "-p", 10] + argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    peak_conns, peak_rss = 0, rss0
    while proc.poll() is None:
        peak_conns = max(peak_conns, backend_conns(backend_port))
        peak_rss = max(peak_rss, tree_rss_kib(pid))
        time.sleep(0.5)
    return conns0, peak_conns, rss0, peak_rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portico", required=True)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--only", choices=["portico", "nginx"])
    args = ap.parse_args()
    for tool in ("nginx", "slowhttptest", "ss"):
        if not shutil.which(tool):
            sys.exit("%s is needed (apt-get install -y nginx slowhttptest iproute2)" % tool)
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = Path(tempfile.mkdtemp(prefix="portico-slow-"))
    (d / "www").mkdir()
    (d / "tmp").mkdir()
    (d / "www" / "1m").write_bytes(os.urandom(1 << 20))
    (d / "www" / "1k").write_bytes(b"k" * 1024)
    os.chmod(d, 0o755)
    procs = []
    try:
        bport = free_port()
        temp = TEMP.format(dir=d, name="backend")
        (d / "backend.conf").write_text(BACKEND.format(dir=d, host=HOST, port=bport, temp=temp))
        procs.append(subprocess.Popen(["nginx", "-p", d, "-c", d / "backend.conf"]))
        wait_for_port(bport, procs[-1])
        peers = []
        if args.only in (None, "nginx"):
            port = free_port()
            temp = TEMP.format(dir=d, name="nginx")
            (d / "nginx.conf").write_text(NGINX.format(dir=d, host=HOST, port=port, backend_port=bport, temp=temp))
            procs.append(subprocess.Popen(["nginx", "-p", d, "-c", d / "nginx.conf"]))
            wait_for_port(port, procs[-1])
            peers.append(("nginx", port, procs[-1].pid))
        if args.only in (None, "portico"):
            port, admin = free_port(), free_port()
            (d / "portico.yaml").write_text(PORTICO.format(host=HOST, backend_port=bport))
            log = open(d / "portico.log", "wb")
            procs.append(subprocess.Popen(
                [args.portico, "--from-file", d / "portico.yaml", "--http-port", str(port), "--https-port", "0",
                 "--admin-port", str(admin), "--bind-address", HOST, "--access-log", "false",
                 "--worker-threads", "2"], stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            wait_for_port(port, procs[-1])
            time.sleep(1)
            peers.append(("portico", port, procs[-1].pid))
        print("| proxy | attack | clients | backend connections before | at the peak | RSS before (MiB) | at the peak |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for name, port, pid in peers:
            for kind in ("read", "post"):
                c0, c, rss0, rss = attack(kind, port, bport, pid, args.connections, args.seconds)
                print("| %s | slow %s | %d | %d | %d | %.0f | %.0f |"
                      % (name, kind, args.connections, c0, c, rss0 / 1024, rss / 1024), flush=True)  # fmt: skip
                time.sleep(3)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
