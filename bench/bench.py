#!/usr/bin/env python3
"""Portico side by side with nginx, HAProxy and Pingora, and a direct client->backend
baseline, in one run. bench/run.sh installs the tools and builds Portico and the Pingora
peer (bench/pingora), then runs this; see bench/README.md for what each scenario measures.

Every peer proxies to the same backend (a separate nginx serving static files) and is
measured in the same run, interleaved (nginx, haproxy, portico, pingora, direct, repeat),
so ratios between peers hold even on a busy machine whose absolute numbers drift. The
Pingora peer is optional: without --pingora the run and its table leave it out.

Exit status: 0 when every scenario ran, whatever the numbers; non-zero only when the
harness broke: a peer failed to start or died, or answered with a non-2xx status, or
did not complete TLS with the bench certificate, or a TLS client did not measure what
it should (a resumed session in scenario 5, an h2 request that failed in scenario 6).
"""

import argparse
import base64
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
import ssl
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
PEERS = ["nginx", "haproxy", "portico", "pingora", "direct"]
PROXIES = ["nginx", "haproxy", "portico", "pingora"]
OPTIONAL = {"pingora"}  # run when its binary is given; the others always
LABELS = {"nginx": "nginx", "haproxy": "HAProxy", "portico": "Portico", "pingora": "Pingora", "direct": "direct"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Static files the backend serves: URL path -> size in bytes.
FILES = {"/small": 100, "/10k": 10 * 1024, "/1m": 1024 * 1024}

# h2_conns x h2_streams: scenario 6's connections and concurrent streams on each (64 in
# flight at most: within nginx's upstream keepalive pool of 64 per worker, so that no
# peer opens backend connections for lack of idle ones).
FULL = dict(rounds=3, duration=10, warmup=3, conns=32, threads=2, workers=2, idle=10000, rate_conns=32, h2_conns=4, h2_streams=16)
QUICK = dict(rounds=1, duration=2, warmup=1, conns=8, threads=2, workers=2, idle=500, rate_conns=8, h2_conns=2, h2_streams=8)

# TLS, the same for every peer as far as each one lets it be set: TLS 1.2 and 1.3, the
# server's preference (not the client's) picks, in Portico's order (rustls with
# aws-lc-rs: AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305, ECDSA suites as the
# certificate is ECDSA), key exchange groups X25519, P-256, P-384.
TLS13_SUITES = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
TLS12_CIPHERS = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"
TLS_GROUPS = "X25519:P-256:P-384"
# Scenario 5's client, `openssl s_time`, sends "GET <path> HTTP/1.0" and nothing else:
# the path carries the rest, so that the request is scenario 3's (HTTP/1.1, Host,
# Connection: close), and the trailing " HTTP/1.0" lands in a header of its own.
S_TIME_PATH = "/small HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nX-Bench:" % VHOST


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

    def __init__(self, name, label, port, proc, logfile, tls_port=None):
        self.name, self.label, self.port, self.proc, self.logfile = name, label, port, proc, logfile
        self.tls_port = tls_port  # HTTPS (HTTP/1.1 and h2 by ALPN); None: no TLS listener

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

    def url(self, path, tls=False):
        if tls:
            return "https://%s:%d%s" % (HOST, self.tls_port, path)
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

NGINX_TLS = """\
  ssl_certificate {dir}/tls/cert.pem;
  ssl_certificate_key {dir}/tls/key.pem;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers {tls12_ciphers};
  ssl_conf_command Ciphersuites {tls13_suites};
  ssl_prefer_server_ciphers on;
  ssl_ecdh_curve {tls_groups};
  ssl_session_cache shared:{name}-tls:10m;
  ssl_session_tickets on;
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
{tls}
  server {{
    listen {host}:{port} backlog=4096;
    listen {host}:{tls_port} ssl http2 backlog=4096;
    root {dir}/www;
    location = /stub {{ stub_status; }}
  }}
}}
"""
)

# The proxying nginx: {http} is what its http block holds besides the upstream.
NGINX_PROXY_BASE = (
    NGINX_COMMON
    + """\
worker_processes {workers};
http {{
{temp}
{access_log}
  keepalive_timeout 600s;
  keepalive_requests 1000000000;
  upstream backend {{
    server {host}:{backend_port};
    keepalive 64;
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
  }}
{tls}
{http}
}}
"""
)
NGINX_PROXY_LOCATION = """\
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";"""
NGINX_PROXY_SERVER = """\
  server {{
    listen {host}:{port} backlog=4096;
    listen {host}:{tls_port} ssl http2 backlog=4096;
    location / {{
%s
    }}
  }}""" % NGINX_PROXY_LOCATION.replace("{", "{{").replace("}", "}}")

# With --access-logs: one JSON line per request to a file, the fields of Portico's own
# access line (escape=json, as ingress-nginx's JSON log formats use).
NGINX_ACCESS_LOG = """\
  log_format portico_json escape=json '{{"timestamp":"$time_iso8601","client":"$remote_addr",'
    '"method":"$request_method","host":"$host","uri":"$request_uri","protocol":"$server_protocol",'
    '"status":$status,"bytes_sent":$bytes_sent,"request_length":$request_length,'
    '"duration_ms":$request_time,"upstream":"$upstream_addr","upstream_status":"$upstream_status",'
    '"upstream_ms":"$upstream_response_time","request_id":"$request_id",'
    '"user_agent":"$http_user_agent","referer":"$http_referer"}}';
  access_log {dir}/nginx-access.log portico_json;"""

HAPROXY_CONF = """\
global
  nbthread {workers}
  maxconn {maxconn}
  no strict-limits
  ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3
  ssl-default-bind-ciphers {tls12_ciphers}
  ssl-default-bind-ciphersuites {tls13_suites}
  ssl-default-bind-curves {tls_groups}

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
  bind {host}:{tls_port} backlog 4096 ssl crt {dir}/tls/combined.pem alpn h2,http/1.1
  default_backend be

backend be
  server backend {host}:{backend_port}
"""

PORTICO_TLS_SECRET = """\
---
apiVersion: v1
kind: Secret
metadata:
  name: bench-tls
  namespace: default
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {key}
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
"""

# The bench Ingress; --features gives it annotations and a regex path.
PORTICO_INGRESS = """\
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bench
  namespace: default
{annotations}spec:
  ingressClassName: portico
{tls}
  rules:
  - host: {vhost}
    http:
      paths:
      - path: {path}
        pathType: {path_type}
        backend:
          service:
            name: bench-backend
            port:
              name: http
"""


# With --filters: a Route with three filters (a header change, a rewrite, HSTS without
# the HTTPS redirect), for the cost of filters against the plain Ingress rule.
PORTICO_FILTERED_ROUTE = """\
apiVersion: portico.dev/v1alpha1
kind: Route
metadata:
  name: bench
  namespace: default
spec:
  hostnames: [{vhost}]
  tls: {{secretName: bench-tls}}
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: X-Env, value: bench}}]}}
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}
    backendRefs: [{{name: bench-backend, port: 80}}]
"""


# With --gateway: the same host and backend through a Gateway's HTTP listener and an
# HTTPRoute with the same match as the plain Ingress rule, for the cost of a Gateway API
# route against an Ingress one. Plain HTTP only: the listener is the port clients use.
PORTICO_GATEWAY = """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: bench
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: bench
  namespace: default
spec:
  gatewayClassName: bench
  listeners:
  - name: http
    protocol: HTTP
    port: {port}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bench
  namespace: default
spec:
  parentRefs: [{{name: bench}}]
  hostnames: [{vhost}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    backendRefs: [{{name: bench-backend, port: 80}}]
"""

# With --features: the ingress-nginx features a migrating cluster uses most, on one
# route, in nginx and in Portico: CORS, basic auth, a request rate limit and a regex
# path with a capture-group rewrite. nginx gets them as ingress-nginx's template writes
# them (docs/user-guide/nginx-configuration/annotations.md; rootfs/etc/nginx/template/
# nginx.tmpl): `limit_req` with burst = rps x 5 and nodelay, `auth_basic` with a file
# of htpasswd lines, the CORS headers with `add_header ... always` and an OPTIONS
# preflight answered 204, a case-insensitive regex location and `rewrite ... break`.
# The limit is far above what the run reaches: the cost of counting is measured, not
# refusals. HAProxy and Pingora are left out (neither has the configuration here).
FEATURES_PATH = "/bench/small"  # what the client asks for; both rewrite it to /small
FEATURES_USER, FEATURES_PASSWORD = "bench", "bench-password"
FEATURES_ORIGIN = "https://app.bench.local"
FEATURES_RPS = 1000000
FEATURES_HEADERS = [
    "Authorization: Basic " + base64.b64encode(("%s:%s" % (FEATURES_USER, FEATURES_PASSWORD)).encode()).decode(),
    "Origin: " + FEATURES_ORIGIN,
]

NGINX_FEATURES_SERVER = """\
  limit_req_zone $binary_remote_addr zone=bench_rps:5m rate={rps}r/s;
  server {{
    listen {host}:{port} backlog=4096;
    listen {host}:{tls_port} ssl http2 backlog=4096;
    location ~* "^/bench(/|$)(.*)" {{
      limit_req zone=bench_rps burst={burst} nodelay;
      limit_req_status 503;
      auth_basic "Authentication Required";
      auth_basic_user_file {dir}/htpasswd;
      if ($request_method = 'OPTIONS') {{
        add_header 'Access-Control-Allow-Origin' '*';
        add_header 'Access-Control-Allow-Credentials' 'true';
        add_header 'Access-Control-Allow-Methods' 'GET, PUT, POST, DELETE, PATCH, OPTIONS';
        add_header 'Access-Control-Allow-Headers' 'DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization';
        add_header 'Access-Control-Max-Age' 1728000;
        add_header 'Content-Type' 'text/plain charset=UTF-8';
        add_header 'Content-Length' 0;
        return 204;
      }}
      add_header 'Access-Control-Allow-Origin' '*' always;
      add_header 'Access-Control-Allow-Credentials' 'true' always;
      add_header 'Access-Control-Allow-Methods' 'GET, PUT, POST, DELETE, PATCH, OPTIONS' always;
      add_header 'Access-Control-Allow-Headers' 'DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization' always;
      add_header 'Access-Control-Max-Age' 1728000 always;
      rewrite "(?i)/bench(/|$)(.*)" /$2 break;
%s
    }}
  }}""" % NGINX_PROXY_LOCATION.replace("{", "{{").replace("}", "}}")

PORTICO_FEATURES_SECRET = """\
---
apiVersion: v1
kind: Secret
metadata:
  name: bench-auth
  namespace: default
type: Opaque
data:
  auth: {htpasswd}
"""
PORTICO_FEATURES_ANNOTATIONS = """\
  annotations:
    nginx.ingress.kubernetes.io/enable-cors: "true"
    nginx.ingress.kubernetes.io/auth-type: basic
    nginx.ingress.kubernetes.io/auth-secret: bench-auth
    nginx.ingress.kubernetes.io/auth-realm: Authentication Required
    nginx.ingress.kubernetes.io/limit-rps: "{rps}"
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
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
        tls=NGINX_TLS.format(
            dir=workdir,
            name=name,
            tls12_ciphers=TLS12_CIPHERS,
            tls13_suites=TLS13_SUITES,
            tls_groups=TLS_GROUPS,
        ),
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


def tls_context(cafile, check_hostname=True):
    """A client context that trusts only the bench certificate (for its host name too,
    unless told not to check it). No session is carried from one connection to the
    next: a new SSLSocket gets none unless given one."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = check_hostname
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def https_raw(port, request, ctx, server_hostname=None, timeout=10):
    """Sends `request` (bytes) over a new TLS connection and returns everything read
    until the server closes it. Without server_hostname: no SNI, as the bench clients."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as s:
            s.sendall(request)
            chunks = []
            while True:
                try:
                    b = s.recv(65536)
                except ssl.SSLZeroReturnError:
                    break
                if not b:
                    break
                chunks.append(b)
    return b"".join(chunks)


def parse_response(data):
    """(status, body) of one HTTP/1.x response with a Content-Length, read to the end."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None, b""
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None, b""


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
        # Set by `instructions`: the proxies run under callgrind.
        self.valgrind = False
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
        self.pingora_bin = None
        if self.args.pingora:
            self.pingora_bin = self.workdir / "bench-pingora"
            shutil.copy2(self.args.pingora, self.pingora_bin)
        usage = subprocess.run([str(binary), "--help"], capture_output=True, text=True, check=False).stdout
        self.portico_has_https = "--https-port" in usage
        # Keep-alive as the peers are configured (nginx's keepalive_requests 1000000000,
        # keepalive_timeout 600s): no limit on requests per connection.
        self.portico_keepalive = "--keepalive-requests" in usage
        # TLS scenarios for Portico need its HTTPS listener, a default certificate (the
        # clients connect to 127.0.0.1 and send no SNI) and plain HTTP left as it is for
        # a TLS host (no redirect, no HSTS header, which the other peers do not send).
        flags = ("--https-port", "--default-ssl-certificate", "--ssl-redirect", "--hsts")
        self.portico_tls = all(f in usage for f in flags)
        if not self.portico_tls:
            log("this portico has no %s: scenarios 4-6 run without it" % " / ".join(f for f in flags if f not in usage))
        self.make_certificate()
        www = self.workdir / "www"
        www.mkdir(exist_ok=True)
        for path, size in FILES.items():
            (www / path.lstrip("/")).write_bytes((b"portico-bench-" * (size // 14 + 1))[:size])
        os.chmod(www, 0o755)

        # Backend: its own nginx instance with one worker, used by every peer.
        port = free_port()
        conf = self.workdir / "backend.conf"
        tls_port = free_port()
        conf.write_text(
            BACKEND_CONF.format(port=port, tls_port=tls_port, **nginx_vars(self.workdir, "backend", self.nofile))
        )
        proc = spawn(["nginx", "-p", self.workdir, "-c", conf], self.workdir / "backend.log", "backend nginx")
        wait_for_port(port, proc, "backend nginx")
        wait_for_port(tls_port, proc, "backend nginx (TLS)")
        self.backend = Peer("direct", "direct", port, proc, self.workdir / "backend-error.log", tls_port)
        self.peers["direct"] = self.backend
        self.start_proxies()

    def make_certificate(self):
        """One self-signed ECDSA P-256 certificate for VHOST, which every peer serves."""
        d = self.workdir / "tls"
        if (d / "combined.pem").exists():
            return
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o755)
        out = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "7",
             "-subj", "/CN=" + VHOST, "-addext", "subjectAltName=DNS:" + VHOST],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise HarnessError("openssl could not make the certificate:\n" + out.stderr[-2000:])
        (d / "combined.pem").write_bytes((d / "cert.pem").read_bytes() + (d / "key.pem").read_bytes())

    def start_proxies(self):
        bport = self.backend.port
        tls = dict(tls12_ciphers=TLS12_CIPHERS, tls13_suites=TLS13_SUITES, tls_groups=TLS_GROUPS)

        port, tls_port = free_port(), free_port()
        conf = self.workdir / "nginx.conf"
        if self.args.features:
            self.write_htpasswd()
        conf.write_text(
            NGINX_PROXY_BASE.format(
                http=(NGINX_FEATURES_SERVER if self.args.features else NGINX_PROXY_SERVER).format(
                    rps=FEATURES_RPS,
                    burst=FEATURES_RPS * 5,
                    port=port,
                    tls_port=tls_port,
                    host=HOST,
                    dir=self.workdir,
                ),
                backend_port=bport,
                workers=self.s["workers"],
                access_log=NGINX_ACCESS_LOG.format(dir=self.workdir)
                if self.args.access_logs
                else "  access_log off;",
                **nginx_vars(self.workdir, "nginx", self.nofile),
            ).replace("master_process on;", "master_process %s;" % ("off" if self.valgrind else "on"))
        )
        proc = spawn(self.wrap(["nginx", "-p", self.workdir, "-c", conf]), self.workdir / "nginx.log", "nginx")
        wait_for_port(port, proc, "nginx")
        wait_for_port(tls_port, proc, "nginx (TLS)")
        self.peers["nginx"] = Peer("nginx", "nginx", port, proc, self.workdir / "nginx-error.log", tls_port)

        if not self.args.features:
            self.start_haproxy(bport, tls)
        self.start_portico(bport)
        if self.pingora_bin and not self.args.features:
            self.start_pingora(bport)

    def write_htpasswd(self):
        """The --features user's htpasswd line (apr1, `htpasswd`'s default and what
        ingress-nginx's basic-auth example makes), for nginx's file and Portico's Secret."""
        path = self.workdir / "htpasswd"
        if path.exists():
            return path.read_text()
        out = subprocess.run(
            ["openssl", "passwd", "-apr1", FEATURES_PASSWORD], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise HarnessError("openssl passwd -apr1 failed:\n" + out.stderr[-2000:])
        line = "%s:%s\n" % (FEATURES_USER, out.stdout.strip())
        path.write_text(line)
        os.chmod(path, 0o644)
        return line

    def start_haproxy(self, bport, tls):
        port, tls_port = free_port(), free_port()
        conf = self.workdir / "haproxy.cfg"
        maxconn = self.idle_n + 1000
        conf.write_text(
            HAPROXY_CONF.format(
                host=HOST,
                port=port,
                tls_port=tls_port,
                backend_port=bport,
                maxconn=maxconn,
                dir=self.workdir,
                workers=self.s["workers"],
                **tls,
            )
        )
        proc = spawn(self.wrap(["haproxy", "-db", "-f", conf]), self.workdir / "haproxy.log", "haproxy")
        wait_for_port(port, proc, "haproxy")
        wait_for_port(tls_port, proc, "haproxy (TLS)")
        self.peers["haproxy"] = Peer("haproxy", "HAProxy", port, proc, self.workdir / "haproxy.log", tls_port)

    def start_portico(self, bport):
        port, admin = free_port(), free_port()
        tls_port = free_port() if self.portico_tls else None
        conf = self.workdir / "portico.yaml"
        secret, ingress_tls = "", ""
        if tls_port:
            b64 = lambda name: base64.b64encode((self.workdir / "tls" / name).read_bytes()).decode()  # noqa: E731
            secret = PORTICO_TLS_SECRET.format(crt=b64("cert.pem"), key=b64("key.pem"))
            ingress_tls = "  tls:\n  - hosts:\n    - %s\n    secretName: bench-tls" % VHOST
        text = secret + PORTICO_CONF.format(host=HOST, backend_port=bport)
        gateway_port = None
        if self.args.filters:
            # The same host and backend through a Route with three filters instead of the
            # plain Ingress rule.
            if not secret:
                b64 = lambda name: base64.b64encode((self.workdir / "tls" / name).read_bytes()).decode()  # noqa: E731
                text += PORTICO_TLS_SECRET.format(crt=b64("cert.pem"), key=b64("key.pem"))
            text += "---\n" + PORTICO_FILTERED_ROUTE.format(vhost=VHOST)
        elif self.args.gateway:
            # Clients use the listener's port; the Ingress ports stay bound, unused.
            gateway_port = free_port()
            text += PORTICO_GATEWAY.format(port=gateway_port, vhost=VHOST)
        elif self.args.features:
            # The same host and backend through one Ingress with the annotations.
            htpasswd = base64.b64encode(self.write_htpasswd().encode()).decode()
            text += PORTICO_FEATURES_SECRET.format(htpasswd=htpasswd)
            text += PORTICO_INGRESS.format(
                annotations=PORTICO_FEATURES_ANNOTATIONS.format(rps=FEATURES_RPS),
                tls=ingress_tls,
                vhost=VHOST,
                path="/bench(/|$)(.*)",
                path_type="ImplementationSpecific",
            )
        else:
            text += PORTICO_INGRESS.format(annotations="", tls=ingress_tls, vhost=VHOST, path="/", path_type="Prefix")
        conf.write_text(text)
        argv = [
            self.portico_bin,
            "--from-file", conf,
            "--http-port", port,
            "--admin-port", admin,
            "--bind-address", HOST,
            "--access-log", "true" if self.args.access_logs else "false",
            "--worker-threads", self.s["workers"],
        ]  # fmt: skip
        if self.portico_keepalive:
            argv += ["--keepalive-requests", "0", "--keepalive-timeout", "600s"]
        if tls_port:
            argv += [
                "--https-port", tls_port,
                "--default-ssl-certificate", "default/bench-tls",
                "--ssl-redirect", "false",
                # A route with filters keeps HSTS (on plain HTTP it has nothing to add).
                "--hsts", "true" if self.args.filters else "false",
            ]  # fmt: skip
        elif self.portico_has_https:
            argv += ["--https-port", "0"]  # no HTTPS listener: nothing binds the default 8443
        if self.args.filters and not tls_port:
            argv += ["--ssl-redirect", "false"]
        proc = spawn(self.wrap(argv), self.workdir / "portico.log", "portico")
        wait_for_port(admin, proc, "portico admin")
        wait_for_port(port, proc, "portico")
        if tls_port:
            wait_for_port(tls_port, proc, "portico (TLS)")
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
        if gateway_port:
            wait_for_port(gateway_port, proc, "portico (Gateway listener)")
            port, tls_port = gateway_port, None
        self.peers["portico"] = Peer("portico", "Portico", port, proc, self.workdir / "portico.log", tls_port)
        self.portico_admin = admin

    def start_pingora(self, bport):
        port, tls_port = free_port(), free_port()
        argv = [
            self.pingora_bin,
            "--listen", "%s:%d" % (HOST, port),
            "--tls-listen", "%s:%d" % (HOST, tls_port),
            "--cert", self.workdir / "tls" / "cert.pem",
            "--key", self.workdir / "tls" / "key.pem",
            "--backend", "%s:%d" % (HOST, bport),
            "--threads", self.s["workers"],
        ]  # fmt: skip
        proc = spawn(self.wrap(argv), self.workdir / "pingora.log", "pingora")
        wait_for_port(port, proc, "pingora")
        wait_for_port(tls_port, proc, "pingora (TLS)")
        self.peers["pingora"] = Peer("pingora", "Pingora", port, proc, self.workdir / "pingora.log", tls_port)

    def wrap(self, argv):
        """A proxy's command line, under callgrind when counting instructions."""
        if not self.valgrind:
            return argv
        out = self.workdir / ("callgrind.%s.%%p" % Path(str(argv[0])).name)
        return ["valgrind", "--tool=callgrind", "--dump-instr=no", "--callgrind-out-file=%s" % out] + argv

    def running(self):
        """The peers of this run, in PEERS order (an optional one may be missing)."""
        return [self.peers[name] for name in PEERS if name in self.peers]

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
        for peer in self.running():
            for path, size in FILES.items():
                status, body = http_get(peer.port, path)
                if status != 200 or len(body) != size:
                    raise HarnessError(
                        "%s: GET %s gave %d with %d bytes (want 200, %d)" % (peer.label, path, status, len(body), size)
                    )
        log("sanity: every peer serves %s with 200 and exact bodies" % ", ".join(FILES))
        cert = self.workdir / "tls" / "cert.pem"
        ctx, ctx_no_sni = tls_context(cert), tls_context(cert, check_hostname=False)
        for peer in self.running():
            if peer.tls_port is None:
                continue
            # With SNI and the certificate checked for the host: every file.
            for path, size in FILES.items():
                req = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, VHOST)).encode()
                try:
                    status, body = parse_response(https_raw(peer.tls_port, req, ctx, server_hostname=VHOST))
                except (OSError, ssl.SSLError) as e:
                    raise HarnessError("%s: HTTPS GET %s failed: %s" % (peer.label, path, e)) from e
                if status != 200 or len(body) != size:
                    raise HarnessError(
                        "%s: HTTPS GET %s gave %s with %d bytes (want 200, %d)"
                        % (peer.label, path, status, len(body), size)
                    )
            # Scenario 5's request exactly as openssl s_time sends it (no SNI, so the
            # peer's default certificate, which must be the bench one too): its response
            # size is what each of s_time's connections must read.
            req = ("GET %s HTTP/1.0\r\n\r\n" % S_TIME_PATH).encode()
            try:
                data = https_raw(peer.tls_port, req, ctx_no_sni)
            except (OSError, ssl.SSLError) as e:
                raise HarnessError("%s: the s_time request failed: %s" % (peer.label, e)) from e
            status, body = parse_response(data)
            if status != 200 or len(body) != FILES["/small"]:
                raise HarnessError(
                    "%s: the s_time request gave %s with %d bytes:\n%r" % (peer.label, status, len(body), data[:500])
                )
            peer.s_time_response_len = len(data)
        log("sanity: every peer with TLS serves them over HTTPS too (SNI %s, its certificate checked)" % VHOST)

    # --- measurements

    def counters(self, peer, pids, backend_pids):
        """What is compared before and after a measurement: CPU of the peer and of the
        backend, the backend's connections and requests, Portico's upstream counters."""
        return dict(
            t=time.monotonic(),
            cpu=cpu_ticks(pids),
            bcpu=cpu_ticks(backend_pids),
            stub=backend_stub(self.backend.port),
            pm=portico_upstream_counters(self.portico_admin) if peer.name == "portico" else None,
        )

    def deltas(self, c0, c1, n):
        """Common results of a measurement that served n requests (n > 0)."""
        cpu_s = (c1["cpu"] - c0["cpu"]) / CLK_TCK
        # Less the second stub_status fetch's own connection and request.
        accepts = c1["stub"][0] - c0["stub"][0] - 1
        res = {
            "wall_seconds": round(c1["t"] - c0["t"], 3),
            "cpu_s": cpu_s,
            "cpu_us_per_req": cpu_s / n * 1e6,
            "backend_cpu_s": (c1["bcpu"] - c0["bcpu"]) / CLK_TCK,
            "backend_accepts": accepts,
            "backend_requests": c1["stub"][1] - c0["stub"][1] - 1,
            "backend_conns_per_1k_req": accepts / n * 1000,
        }
        if c0["pm"] is not None:
            res["portico_upstream_opened"] = c1["pm"]["opened"] - c0["pm"]["opened"]
            res["portico_upstream_reused"] = c1["pm"]["reused"] - c0["pm"]["reused"]
        return res

    def measured(self, peer, tool, argv, duration):
        """Runs a load generator against `peer`; returns its output and the counters
        read just before and just after it."""
        backend_pids = self.backend.pids()
        pids = peer.pids()
        c0 = self.counters(peer, pids, backend_pids)
        try:
            out = subprocess.run(
                [str(a) for a in argv], capture_output=True, text=True, timeout=duration + 60, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise HarnessError("%s against %s hung" % (tool, peer.label)) from e
        c1 = self.counters(peer, pids, backend_pids)
        peer.check_alive()
        return out, c0, c1

    def wrk(self, peer, path, duration, close=False, tls=False):
        conns, threads = self.s["conns"], self.s["threads"]
        argv = [
            "wrk", "-t", threads, "-c", conns, "-d", "%ds" % duration, "--timeout", "10s",
            "-s", HERE / "wrk_report.lua", "-H", "Host: " + VHOST,
        ] + self.features_headers()  # fmt: skip
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(peer.url(path, tls=tls))
        out, c0, c1 = self.measured(peer, "wrk", argv, duration)
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
            "rps": n / secs,
            "mbytes_per_s": r["bytes"] / secs / 1e6,
            "p50_ms": r["latency_us"]["p50"] / 1e3,
            "p99_ms": r["latency_us"]["p99"] / 1e3,
            "p999_ms": r["latency_us"]["p999"] / 1e3,
            "socket_errors": r["errors"]["connect"] + r["errors"]["read"] + r["errors"]["write"] + r["errors"]["timeout"],
            "errors": r["errors"],
        }
        res.update(self.deltas(c0, c1, n))
        return res

    def s_time(self, peer, duration):
        """Scenario 5: `openssl s_time -new` in `conns` processes at once, each a loop of
        new connection, full handshake, one request, read to the close. wrk and h2load
        are no use here: they resume the TLS session when they reconnect."""
        n = self.s["conns"]
        secs = max(1, duration - 1)
        argv = [
            "openssl", "s_time", "-connect", "%s:%d" % (HOST, peer.tls_port), "-new",
            "-time", str(secs), "-www", S_TIME_PATH,
            # Trust the bench certificate alone: with the default store, OpenSSL 3.0 reads
            # the system's CA directory on every handshake (about 40% more client CPU).
            "-CAfile", str(self.workdir / "tls" / "cert.pem"), "-no-CApath", "-no-CAstore",
        ]  # fmt: skip
        outs = [(self.workdir / ("s_time-%d.out" % i), self.workdir / ("s_time-%d.err" % i)) for i in range(n)]
        backend_pids = self.backend.pids()
        pids = peer.pids()
        # s_time stops once time(NULL), in whole seconds, passes its start plus -time: so
        # that every process stops at the same moment, start them all just after a tick.
        time.sleep(1.02 - time.time() % 1.0)
        c0 = self.counters(peer, pids, backend_pids)
        procs = []
        t_spawn = time.monotonic()
        try:
            for out, err in outs:
                with open(out, "wb") as fo, open(err, "wb") as fe:
                    procs.append(subprocess.Popen(argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL))
            ends = {}
            deadline = time.monotonic() + secs + 60
            while len(ends) < len(procs):
                for i, pr in enumerate(procs):
                    if i not in ends and pr.poll() is not None:
                        ends[i] = time.monotonic()
                if time.monotonic() > deadline:
                    raise HarnessError("openssl s_time against %s hung" % peer.label)
                time.sleep(0.01)
        finally:
            for pr in procs:
                if pr.poll() is None:
                    pr.kill()
                    pr.wait()
        c1 = self.counters(peer, pids, backend_pids)
        peer.check_alive()
        conns = resumed = nbytes = bytes_conns = failed = 0
        first_error = None
        for (out, err), pr in zip(outs, procs):
            text = out.read_text(errors="replace")
            # One character per connection: "*" a new session, "r" a resumed one.
            marks = "".join(re.findall(r"^[*rt3]+$", text, re.M))
            conns += len(marks)
            resumed += marks.count("r")
            m = re.search(r"(\d+) connections in [\d.]+s; [\d.]+ connections/user sec, bytes read (\d+)", text)
            if pr.returncode != 0 or not m:
                failed += 1
                first_error = first_error or err.read_text(errors="replace")[-1000:]
                continue
            nbytes += int(m.group(2))
            bytes_conns += int(m.group(1))
        if conns == 0:
            raise HarnessError("openssl s_time against %s made no connection:\n%s" % (peer.label, first_error))
        if resumed:
            raise HarnessError("openssl s_time -new resumed %d sessions against %s" % (resumed, peer.label))
        if failed:
            log("%s: %d of %d s_time clients stopped on an error: %s" % (peer.label, failed, n, first_error))
        # Every connection reads one whole response, as large as the one the sanity
        # check got with this very request: anything else means other answers.
        per_conn = nbytes / bytes_conns if bytes_conns else None
        want = peer.s_time_response_len
        if per_conn is not None and abs(per_conn - want) > 0.02 * want:
            raise HarnessError(
                "%s: s_time read %.1f bytes per connection, the sanity check's response has %d"
                % (peer.label, per_conn, want)
            )
        wall = max(ends.values()) - t_spawn
        res = {
            "requests": conns,
            "handshakes": conns,
            "resumed": resumed,
            "rps": conns / wall,
            "bytes_per_conn": per_conn,
            "clients": n,
            "clients_failed": failed,
            "client_end_spread_s": round(max(ends.values()) - min(ends.values()), 3),
        }
        res.update(self.deltas(c0, c1, conns))
        return res

    def h2load(self, peer, duration):
        """Scenario 6: HTTP/2 over TLS (ALPN h2 only), h2_conns connections with
        h2_streams concurrent streams each. Any request that fails breaks the run."""
        c, m = self.s["h2_conns"], self.s["h2_streams"]
        argv = [
            "h2load", "-t", min(self.s["threads"], c), "-c", c, "-m", m, "-D", duration,
            "--npn-list=h2", "-H", ":authority: " + VHOST, peer.url("/small", tls=True),
        ]  # fmt: skip
        out, c0, c1 = self.measured(peer, "h2load", argv, duration)
        text = out.stdout + out.stderr
        fin = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
        req = re.search(
            r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
            text,
        )
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
        proto = re.search(r"Application protocol: (\S+)", text)
        if out.returncode != 0 or not (fin and req and codes):
            raise HarnessError("h2load against %s failed (%d):\n%s" % (peer.label, out.returncode, text[-3000:]))
        if not proto or proto.group(1) != "h2":
            raise HarnessError("h2load against %s did not negotiate h2:\n%s" % (peer.label, text[-3000:]))
        total, started, done, ok, failed, errored, timeout = map(int, req.groups())
        c2xx, c3xx, c4xx, c5xx = map(int, codes.groups())
        if failed or errored or timeout or c3xx or c4xx or c5xx or ok != c2xx:
            raise HarnessError(
                "h2load against %s: not every request succeeded with 2xx:\n%s" % (peer.label, text[-3000:])
            )
        if ok == 0:
            raise HarnessError("h2load against %s completed no request:\n%s" % (peer.label, text[-3000:]))
        res = {
            "requests": ok,
            "seconds": float(fin.group(1)),
            "rps": float(fin.group(2)),
            "started": started,
            "connections": c,
            "streams_per_connection": m,
        }
        lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
        if lat:
            res["min_ms"], res["max_ms"], res["mean_ms"] = (duration_ms(v) for v in lat.groups())
        res.update(self.deltas(c0, c1, ok))
        return res

    def probe_tls(self):
        """What each peer negotiates with `openssl s_client`, once per peer, for the
        reader to check that they agree. The certificate must verify as the bench one."""
        cert = self.workdir / "tls" / "cert.pem"
        probes = {
            # As scenarios 4-6 connect: to 127.0.0.1 with no SNI (wrk's SNI "127.0.0.1"
            # names no host either), OpenSSL's default client offer.
            "tls13": ["-noservername"],
            "tls13_sni": ["-servername", VHOST],
            # A client that lists AES-128 first (h2load does): the server's order decides.
            "tls13_client_prefers_aes128": ["-noservername", "-ciphersuites", "TLS_AES_128_GCM_SHA256:" + TLS13_SUITES],
            "tls12": ["-noservername", "-tls1_2"],
        }
        info = {}
        for peer in self.running():
            if peer.tls_port is None:
                continue
            name = peer.name
            info[name] = {}
            for probe, extra in probes.items():
                argv = [
                    "openssl", "s_client", "-connect", "%s:%d" % (HOST, peer.tls_port), "-alpn", "h2,http/1.1",
                    "-CAfile", str(cert), "-verify_hostname", VHOST, "-verify_return_error", *extra,
                ]  # fmt: skip
                try:
                    out = subprocess.run(argv, input=b"", capture_output=True, timeout=20, check=False)
                except subprocess.TimeoutExpired as e:
                    raise HarnessError("openssl s_client against %s hung" % peer.label) from e
                text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
                new = re.search(r"^New, (\S+), Cipher is (\S+)", text, re.M)
                verify = re.search(r"Verify return code: (\d+)", text)
                if out.returncode != 0 or not new or not verify or verify.group(1) != "0":
                    raise HarnessError("%s: TLS probe %s failed:\n%s" % (peer.label, probe, text[-2000:]))
                group = re.search(r"Server Temp Key: ([^,\n]+)", text)
                sig = re.search(r"Peer signature type: (\S+)", text)
                alpn = re.search(r"ALPN protocol: (\S+)", text)
                info[name][probe] = {
                    "protocol": new.group(1),
                    "cipher": new.group(2),
                    "group": group.group(1) if group else None,
                    "signature": sig.group(1) if sig else None,
                    "alpn": alpn.group(1) if alpn else None,
                }
        for probe in probes:
            seen = {json.dumps(v[probe], sort_keys=True) for v in info.values()}
            if len(seen) > 1:
                log("note: peers negotiate differently (%s): %s" % (probe, {k: v[probe] for k, v in info.items()}))
        first = next(iter(info.values()), {})
        log("TLS: %s" % ", ".join("%s %s" % (p, tls_summary(first[p])) for p in first))
        self.tls_info = info

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

    def interleaved(self, scenario, fn, before_round=None, tls=False, proxies_only=False):
        for rnd in range(1, self.s["rounds"] + 1):
            if before_round:
                before_round()
            for peer in self.running():
                if (tls and peer.tls_port is None) or (proxies_only and peer.name == "direct"):
                    continue
                self.record(scenario, rnd, peer, fn(peer))
                time.sleep(0.5)

    def run(self):
        d = self.s["duration"]
        t_start = time.monotonic()
        # 8: memory first, each round on fresh processes (a peer's allocator keeps
        # what an earlier round used, which would hide the growth).
        log("scenario 8: %d idle keep-alive connections" % self.idle_n)
        self.interleaved("s8_idle", self.idle, before_round=self.restart)

        self.probe_tls()
        log("warm-up: %ds per peer per file, and over HTTPS" % self.s["warmup"])
        for peer in self.running():
            for path in FILES:
                self.wrk(peer, path, self.s["warmup"])
            if peer.tls_port is not None:
                self.wrk(peer, "/small", self.s["warmup"], tls=True)

        log("scenario 1 (+9, +10): keep-alive, 100-byte responses")
        self.interleaved("s1_small", lambda p: self.wrk(p, "/small", d))
        log("scenario 2: keep-alive, 10 KiB and 1 MiB responses")
        self.interleaved("s2_10k", lambda p: self.wrk(p, "/10k", d))
        self.interleaved("s2_1m", lambda p: self.wrk(p, "/1m", d))
        log("scenario 3: a new connection per request")
        self.interleaved("s3_close", lambda p: self.wrk(p, "/small", d, close=True))
        log("scenario 4: HTTPS keep-alive, 100-byte responses")
        self.interleaved("s4_tls_small", lambda p: self.wrk(p, "/small", d, tls=True), tls=True)
        log("scenario 5: a full TLS handshake per request (%d x openssl s_time -new)" % self.s["conns"])
        self.interleaved("s5_tls_handshake", lambda p: self.s_time(p, d), tls=True)
        log("scenario 6: HTTP/2 over TLS, %d connections x %d streams" % (self.s["h2_conns"], self.s["h2_streams"]))
        self.interleaved("s6_h2", lambda p: self.h2load(p, d), tls=True)

        nginx_max = statistics.median(r["rps"] for r in self.runs if r["scenario"] == "s1_small" and r["peer"] == "nginx")
        rate = max(100, int(nginx_max * 0.5))
        log("scenario 7: fixed rate %d req/s (half of nginx's %d)" % (rate, nginx_max))
        self.interleaved("s7_rate", lambda p: self.oha(p, "/small", d, rate))
        self.check_all_alive()
        self.elapsed = time.monotonic() - t_start
        self.rate = rate


    def features_headers(self):
        """wrk's -H arguments for what a --features request carries besides Host."""
        if not self.args.features:
            return []
        return [a for h in FEATURES_HEADERS for a in ("-H", h)]

    def features_sanity(self):
        """Both peers do what the --features route asks, the same way: 200 with the
        CORS header and the rewritten path's body for an authorised request; 401 with a
        Basic challenge without credentials; 204 for a preflight."""
        size = FILES["/small"]
        for peer in self.running():
            if peer.name == "direct":
                continue
            checks = [
                ("authorised", "GET", dict(h.split(": ", 1) for h in FEATURES_HEADERS), 200),
                ("no credentials", "GET", {"Origin": FEATURES_ORIGIN}, 401),
                (
                    "preflight",
                    "OPTIONS",
                    {"Origin": FEATURES_ORIGIN, "Access-Control-Request-Method": "GET"},
                    204,
                ),
            ]
            for what, method, headers, want in checks:
                conn = http.client.HTTPConnection(HOST, peer.port, timeout=10)
                try:
                    conn.request(method, FEATURES_PATH, headers=dict(headers, Host=VHOST))
                    resp = conn.getresponse()
                    body = resp.read()
                finally:
                    conn.close()
                problem = None
                if resp.status != want:
                    problem = "status %d, want %d" % (resp.status, want)
                elif want == 200 and len(body) != size:
                    problem = "%d bytes, want %d (the rewrite to /small)" % (len(body), size)
                elif want == 200 and not resp.getheader("Access-Control-Allow-Origin"):
                    problem = "no Access-Control-Allow-Origin"
                elif want == 401 and "basic" not in (resp.getheader("WWW-Authenticate") or "").lower():
                    problem = "no Basic challenge"
                elif want == 204 and not resp.getheader("Access-Control-Allow-Methods"):
                    problem = "no Access-Control-Allow-Methods"
                if problem:
                    raise HarnessError("%s, --features %s request: %s" % (peer.label, what, problem))
        log("sanity: nginx and Portico both apply CORS, basic auth, the rate limit's zone and the regex rewrite")

    def features_run(self, out_dir):
        """The --features comparison: keep-alive and a new connection per request, nginx
        and Portico interleaved, each with the four features on its one route."""
        d = self.s["duration"]
        t_start = time.monotonic()
        self.start()
        self.features_sanity()
        for peer in self.running():
            if peer.name != "direct":
                self.wrk(peer, FEATURES_PATH, self.s["warmup"])
        log("features: keep-alive, 100-byte responses")
        self.interleaved("f1_keepalive", lambda p: self.wrk(p, FEATURES_PATH, d), proxies_only=True)
        log("features: a new connection per request")
        self.interleaved("f2_close", lambda p: self.wrk(p, FEATURES_PATH, d, close=True), proxies_only=True)
        self.check_all_alive()
        self.elapsed = time.monotonic() - t_start
        meta = metadata(self.args, self)
        md = render_features(meta, self.runs)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "features.md").write_text(md)
        (out_dir / "features.json").write_text(
            json.dumps({"meta": meta, "runs": self.runs}, indent=1, sort_keys=True) + "\n"
        )
        print(md)
        return md

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

    def instructions(self, out_dir, seconds):
        """Counts the instructions each proxy executes per request, under callgrind,
        with one worker each: keep-alive and a new connection per request, 100-byte
        responses, wrk -t1 -c4. Unlike time, the count is the same from run to run
        whatever else the machine does, so it shows small changes that timings on a
        shared machine hide. It covers user space only (the proxy and its libraries);
        the kernel's share, most of a proxy's CPU time here, is not in it."""
        if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
            raise HarnessError("no valgrind: install Debian's valgrind")
        self.valgrind = True
        self.start()
        counts = {}
        for peer in self.running():
            if peer.name == "direct" or (self.args.tls and not peer.tls_port):
                continue
            pid = peer.proc.pid
            for key, close in (("keepalive", False), ("close", True)):
                self.instr_wrk(peer, 2, close)  # warm-up: code paths, the upstream pool
                self.callgrind(pid, "-z")
                res = self.instr_wrk(peer, seconds, close)
                before = set(self.workdir.glob("callgrind.*.%d.*" % pid))
                self.callgrind(pid, "-d")
                dumps = sorted(set(self.workdir.glob("callgrind.*.%d.*" % pid)) - before)
                if not dumps:
                    raise HarnessError("callgrind wrote no dump for %s" % peer.label)
                total = None
                for line in dumps[-1].read_text(errors="replace").splitlines():
                    if line.startswith(("summary:", "totals:")):
                        total = int(line.split()[1])
                        break
                if total is None or res["requests"] == 0:
                    raise HarnessError("no instruction count for %s" % peer.label)
                per = total / res["requests"]
                counts.setdefault(peer.name, {})[key] = per
                log("%-8s %-9s %8d requests  %8.0f instructions per request" % (peer.name, key, res["requests"], per))
        out_dir.mkdir(parents=True, exist_ok=True)
        labels = {p.name: p.label for p in self.running()}
        meta = metadata(self.args, self)
        meta["valgrind"] = tool_version(["valgrind", "--version"], r"valgrind-(\S+)")
        md = render_instructions(meta, counts, labels, seconds)
        # A --features count is kept apart from the plain route's committed one.
        name = "instructions"
        for mode in ("features", "gateway", "filters", "tls"):
            if getattr(self.args, mode):
                name = "instructions-" + mode
        (out_dir / (name + ".md")).write_text(md)
        (out_dir / (name + ".json")).write_text(
            json.dumps({"meta": meta, "counts": counts}, indent=1, sort_keys=True) + "\n"
        )
        print(md)
        return md

    def instr_wrk(self, peer, seconds, close):
        argv = ["wrk", "-t1", "-c4", "-d%ds" % seconds, "-H", "Host: " + VHOST] + self.features_headers()
        if close:
            argv += ["-H", "Connection: close"]
        path = FEATURES_PATH if self.args.features else "/small"
        # --tls: HTTP/1.1 over TLS (wrk offers no ALPN); a new connection is a full handshake.
        url = peer.url(path, tls=self.args.tls)
        out = subprocess.run(argv + [url], capture_output=True, text=True, check=False).stdout
        done = re.search(r"(\d+) requests in", out)
        # A client's `Connection: close` may end in socket errors as wrk counts them.
        if not done or "Non-2xx" in out or ("Socket errors" in out and not close):
            raise HarnessError("wrk against %s under callgrind:\n%s" % (peer.label, out[-2000:]))
        return {"requests": int(done.group(1))}

    def callgrind(self, pid, what):
        out = subprocess.run(["callgrind_control", what, str(pid)], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise HarnessError("callgrind_control %s %d: %s" % (what, pid, (out.stdout + out.stderr)[-500:]))


def render_features(meta, runs):
    """The --features comparison as a Markdown table: medians of the rounds, nginx's and
    Portico's, and their ratio."""
    lines = [
        "%s, %s cores. Portico %s, nginx %s. One route with CORS, basic auth (apr1), "
        "a rate limit (far above the load) and a regex path rewritten by capture group; "
        "wrk, %d connections, %d s per round, median of %d rounds, 100 B responses."
        % (meta["date"], meta["cores"], meta["portico"], meta["nginx"], meta["settings"]["conns"],
           meta["settings"]["duration"], meta["settings"]["rounds"]),
        "",
        "| scenario | nginx req/s | Portico req/s | Portico/nginx | nginx CPU µs/req | Portico CPU µs/req |",
        "|---|--:|--:|--:|--:|--:|",
    ]  # fmt: skip
    for key, title in (("f1_keepalive", "keep-alive"), ("f2_close", "new connection per request")):
        med = {}
        for peer in ("nginx", "portico"):
            rs = [r for r in runs if r["scenario"] == key and r["peer"] == peer]
            if rs:
                med[peer] = {k: statistics.median(r[k] for r in rs) for k in ("rps", "cpu_us_per_req")}
        n, p = med.get("nginx", {}), med.get("portico", {})
        r = ratio(p.get("rps"), n.get("rps"))
        lines.append(
            "| %s | %s | %s | %s | %s | %s |"
            % (title, fmt_num(n.get("rps")), fmt_num(p.get("rps")), "%.2f" % r if r else "–",
               fmt_num(n.get("cpu_us_per_req")), fmt_num(p.get("cpu_us_per_req")))
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def render_instructions(meta, counts, labels, seconds):
    """The instruction counts as a Markdown table, with Portico's over each peer's."""
    versions = "Portico %s, nginx %s, HAProxy %s" % (meta["portico"], meta["nginx"], meta["haproxy"])
    if meta.get("pingora"):
        versions += ", Pingora peer on %s" % meta["pingora"]
    if meta.get("access_logs"):
        versions += ". nginx and Portico write a JSON access line per request"
    if meta.get("filters"):
        versions += ". Portico's route has three filters (header change, rewrite, HSTS)"
    if meta.get("tls"):
        versions += ". HTTP/1.1 over TLS (wrk: no ALPN, no session resumption), the bench certificate"
    if meta.get("gateway"):
        versions += ". Portico serves through a Gateway listener and an HTTPRoute (bench/README.md, --gateway)"
    if meta.get("features"):
        versions += (
            ". nginx's and Portico's route has CORS, basic auth (apr1), a rate limit and a regex rewrite"
            " (bench/README.md, --features)"
        )
    lines = [
        "%s, %s cores, valgrind %s. %s." % (meta["date"], meta["cores"], meta["valgrind"], versions),
        "",
        "User-space instructions per request (callgrind; one worker each; wrk -t1 -c4 for %d s; 100 B responses)."
        % seconds,
        "",
        "| peer | keep-alive | new connection per request | Portico/peer, keep-alive | Portico/peer, new connection |",
        "|---|--:|--:|--:|--:|",
    ]
    mine = counts.get("portico", {})
    for name in PROXIES:
        if name not in counts:
            continue
        c = counts[name]
        r = [ratio(mine.get(k), c.get(k)) for k in ("keepalive", "close")]
        lines.append(
            "| %s | %s | %s | %s | %s |"
            % (
                labels.get(name, name),
                fmt_num(c.get("keepalive")),
                fmt_num(c.get("close")),
                "%.2f" % r[0] if r[0] else "–",
                "%.2f" % r[1] if r[1] else "–",
            )
        )
    return "\n".join(lines) + "\n"


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


def duration_ms(text):
    """h2load's durations ("529us", "2.88ms", "1.2s") in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def tls_summary(p):
    return " ".join(str(p[k]) for k in ("protocol", "cipher", "group", "signature", "alpn") if p.get(k))


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
    ("4", "HTTPS keep-alive, 100 B", "req/s", "s4_tls_small", "rps", "higher"),
    ("4", "HTTPS keep-alive, 100 B", "p99 latency, ms (closed loop)", "s4_tls_small", "p99_ms", "lower"),
    ("4", "HTTPS keep-alive, 100 B", "CPU µs per request (proxy processes)", "s4_tls_small", "cpu_us_per_req", "lower"),
    ("5", "full TLS handshake per request, 100 B", "handshakes/s", "s5_tls_handshake", "rps", "higher"),
    ("5", "full TLS handshake per request, 100 B", "CPU µs per handshake (proxy processes)", "s5_tls_handshake", "cpu_us_per_req", "lower"),
    ("6", "HTTP/2 over TLS, {h2}, 100 B", "req/s", "s6_h2", "rps", "higher"),
    ("6", "HTTP/2 over TLS, {h2}, 100 B", "CPU µs per request (proxy processes)", "s6_h2", "cpu_us_per_req", "lower"),
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
    ran = {r["peer"] for r in runs}
    for scen in summary:
        for peer in (p for p in PEERS if p in ran or p not in OPTIONAL):
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


def locked_version(lockfile, crate):
    """The crate and its version as a Cargo.lock pins it ("pingora-proxy 0.9.1"), or None."""
    try:
        m = re.search(r'^name = "%s"\nversion = "([^"]+)"' % re.escape(crate), Path(lockfile).read_text(), re.M)
    except OSError:
        return None
    return "%s %s" % (crate, m.group(1)) if m else None


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
        "access_logs": bool(getattr(args, "access_logs", False)),
        "filters": bool(getattr(args, "filters", False)),
        "tls": bool(getattr(args, "tls", False)),
        "features": bool(getattr(args, "features", False)),
        "gateway": bool(getattr(args, "gateway", False)),
        "nginx": tool_version(["nginx", "-v"], r"nginx/(\S+)"),
        "haproxy": tool_version(["haproxy", "-v"], r"version (\S+)"),
        "wrk": tool_version(["wrk", "-v"], r"wrk (?:debian/)?([0-9][0-9.]*[0-9])"),
        "oha": tool_version([str(args.oha), "--version"], r"oha (\S+)"),
        "h2load": tool_version(["h2load", "--version"], r"nghttp2/(\S+)"),
        "openssl": tool_version(["openssl", "version"], r"OpenSSL (\S+)"),
        # The Pingora peer's pingora-proxy, as its lock file pins it; None: not in the run.
        "pingora": locked_version(HERE / "pingora" / "Cargo.lock", "pingora-proxy") if args.pingora else None,
        # The TLS settings every peer is given, and what each one negotiates with
        # `openssl s_client` (per peer, per probe), to check that they agree.
        "tls_settings": {
            "certificate": "ECDSA P-256, self-signed, CN and DNS SAN %s" % VHOST,
            "versions": "TLSv1.2, TLSv1.3",
            "tls13_suites": TLS13_SUITES,
            "tls12_ciphers": TLS12_CIPHERS,
            "groups": TLS_GROUPS,
            "order": "server preference",
        },
        "tls": getattr(bench, "tls_info", None),
        "python": platform.python_version(),
        "open_file_limit": bench.nofile,
        "mode": "quick" if args.quick else "full",
        "settings": bench.s,
        "idle_connections": bench.idle_n,
        "fixed_rate": getattr(bench, "rate", None),
        "elapsed_seconds": round(getattr(bench, "elapsed", 0)),
    }


def shown_peers(summary):
    """The table's peers: every peer that always runs, and an optional one (Pingora) when
    it has a value anywhere: results from runs without it (or from before it existed)
    render as they always did."""
    return [
        p
        for p in PEERS
        if p not in OPTIONAL or any(v is not None for scen in summary.values() for v in scen.get(p, {}).values())
    ]


def render_markdown(meta, summary):
    s = meta["settings"]
    shown = shown_peers(summary)
    others = [p for p in shown if p != "portico"]  # Portico's value over each of theirs
    out = []
    out.append("# Portico vs nginx vs HAProxy%s: %s\n" % (" vs Pingora" if "pingora" in shown else "", meta["date"]))
    pingora = ", Pingora peer on %s" % meta.get("pingora") if "pingora" in shown else ""
    out.append(
        "%d cores (%s), kernel %s, %s. Portico %s, nginx %s, HAProxy %s%s, wrk %s, oha %s, h2load %s, OpenSSL %s. "
        "%s run: %d round(s) of %d s per scenario and peer, interleaved; medians shown. "
        "Whole run: %d s.\n"
        % (
            meta["cores"], meta["cpu"] or "unknown CPU", meta["kernel"], meta["os"], meta["portico"], meta["nginx"],
            meta["haproxy"], pingora, meta["wrk"], meta["oha"], meta.get("h2load"), meta.get("openssl"), meta["mode"],
            s["rounds"], s["duration"], meta["elapsed_seconds"],
        )  # fmt: skip
    )
    # Results from before scenarios 4-6 existed have no h2 settings.
    h2 = "h2load -t%d -c%d -m%d" % (s["threads"], s["h2_conns"], s["h2_streams"]) if "h2_conns" in s else "h2load"
    out.append(
        "Load: wrk -t%d -c%d (closed loop; over HTTPS in scenario 4); scenario 5: %d `openssl s_time -new` "
        "at once; scenario 6: %s; scenario 7: oha -c%d at a fixed rate with latency "
        "correction. Every peer runs on the same %d cores as the load generator and the backend, "
        "so ratios matter, not absolute numbers.\n"
        % (s["threads"], s["conns"], s["conns"], h2, s["rate_conns"], meta["cores"])
    )
    tls = meta.get("tls")
    if tls:
        parts = []
        for probe, what in (
            ("tls13", "TLS 1.3"),
            ("tls12", "TLS 1.2"),
            ("tls13_client_prefers_aes128", "TLS 1.3 with a client that lists AES-128 first"),
        ):
            seen = {}
            # In PEERS order: the JSON keeps its keys sorted, and a re-render must read
            # as the run's own table did.
            order = sorted(tls, key=lambda peer: PEERS.index(peer) if peer in PEERS else len(PEERS))
            for peer in order:
                probes = tls[peer]
                if probe in probes:
                    seen.setdefault(tls_summary(probes[probe]), []).append(LABELS.get(peer, peer))
            if probe == "tls13_client_prefers_aes128" and len(seen) < 2:
                continue  # shown only when peers disagree: the server's order decides in most
            if len(seen) == 1:
                parts.append("%s: %s (every peer)" % (what, next(iter(seen))))
            else:
                parts.append("%s: %s" % (what, "; ".join("%s: %s" % (", ".join(v), k) for k, v in seen.items())))
        cert = meta.get("tls_settings", {}).get("certificate")
        out.append(
            "TLS as negotiated by `openssl s_client` with each peer (%s certificate): %s. "
            "Every probe is in the JSON (`meta.tls`).\n" % (cert, "; ".join(parts))
        )
    out.append(
        "| # | scenario | metric | %s | %s |"
        % (" | ".join(LABELS[p] for p in shown), " | ".join("Portico/%s" % LABELS[p] for p in others))
    )
    out.append("|---|---|---|" + "--:|" * (len(shown) + len(others)))
    for sid, desc, metric, scen, key, better in ROWS:
        desc = desc.format(
            rate=fmt_num(meta["fixed_rate"] or 0),
            idle="{:,}".format(meta["idle_connections"]),
            h2="%s connections × %s streams" % (s["h2_conns"], s["h2_streams"]) if "h2_conns" in s else "multiplexed",
        )
        vals = {p: summary.get(scen, {}).get(p, {}).get(key) for p in shown}
        cells = [fmt_num(vals[p]) for p in shown]
        rats = []
        for other in others:
            r = ratio(vals["portico"], vals[other])
            rats.append("–" if r is None else "%.2f" % r)
        arrow = "↑" if better == "higher" else "↓"
        out.append("| %s | %s | %s %s | %s | %s |" % (sid, desc, metric, arrow, " | ".join(cells), " | ".join(rats)))
    out.append("")
    out.append(
        "↑ higher is better, ↓ lower is better; a ratio is Portico's value over the other peer's "
        "(for ↑ rows above 1 means Portico is ahead, for ↓ rows below 1). \"direct\" is the client "
        "talking to the backend itself: its memory and CPU rows are the backend nginx's own, and its "
        "backend connections are the client's; over TLS (4-6) it is the backend nginx's own TLS "
        "listener, with its 1 worker against the proxies' 2. Ratios of near-zero counts (row 9) are noise.%s\n"
        % (
            " Pingora is a minimal reverse proxy on the pingora-proxy crate (bench/pingora) with 2 threads "
            "and Pingora's defaults, TLS included (rustls with ring; the client's cipher order decides)."
            if "pingora" in shown
            else ""
        )
    )
    errs = []
    for scen, peers in summary.items():
        for p, m in peers.items():
            if m.get("socket_errors"):
                errs.append("%s/%s: %s socket errors (median)" % (scen, p, fmt_num(m["socket_errors"])))
            if m.get("failed"):
                errs.append("%s/%s: %s idle connections failed (median)" % (scen, p, fmt_num(m["failed"])))
            if m.get("clients_failed"):
                errs.append(
                    "%s/%s: %s s_time clients stopped on an error (median)" % (scen, p, fmt_num(m["clients_failed"]))
                )
    if errs:
        out.append("Client-side errors seen: " + "; ".join(errs) + ".\n")
    return "\n".join(out)


def update_readme(table_md, marker="latest"):
    """Puts a table between the `<!-- MARKER:begin -->` and `<!-- MARKER:end -->` lines of
    bench/README.md; the comparison's title becomes a sub-heading there."""
    readme = HERE / "README.md"
    if not readme.exists():
        return
    text = readme.read_text()
    begin, end = "<!-- %s:begin -->" % marker, "<!-- %s:end -->" % marker
    if begin not in text or end not in text:
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = table_md
    if marker == "latest":
        title, body = table_md.split("\n", 1)
        body = "### " + title.lstrip("# ") + "\n" + body  # a sub-heading here, with the date
    readme.write_text(head + begin + "\n" + body.rstrip("\n") + "\n" + end + tail)


def harnessed(bench, fn):
    """Runs one of the modes and stops every process it started: (True, what `fn`
    returned), or (False, None) when the harness broke, which the log says."""
    try:
        return True, fn()
    except HarnessError as e:
        log("HARNESS FAILURE: %s" % e)
        return False, None
    finally:
        bench.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portico", help="the portico binary")
    ap.add_argument("--oha", help="the oha binary")
    ap.add_argument("--pingora", help="the Pingora peer's binary (bench/pingora); without it, no Pingora peer")
    ap.add_argument("--quick", action="store_true", help="1 round, 2 s each, small connection counts (smoke test)")
    ap.add_argument("--rounds", type=int, help="override the number of rounds")
    ap.add_argument("--duration", type=int, help="override seconds per measurement")
    ap.add_argument("--out", help="directory for latest.md and latest.json")
    ap.add_argument("--update-readme", action="store_true", help="also put the table into bench/README.md")
    ap.add_argument("--keep-workdir", action="store_true", help="keep configs and logs for inspection")
    ap.add_argument("--profile", action="store_true", help="instead of the comparison: perf profile of Portico alone")
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="instead of the comparison: instructions per request of every proxy, under callgrind",
    )
    ap.add_argument(
        "--access-logs",
        action="store_true",
        help="nginx and Portico write one JSON access line per request to a file (HAProxy and Pingora log nothing)",
    )
    ap.add_argument(
        "--filters",
        action="store_true",
        help="Portico serves the route through a Route with three filters (header change, rewrite, HSTS)",
    )
    ap.add_argument(
        "--tls",
        action="store_true",
        help="with --instructions: the requests go over TLS (HTTP/1.1) to each peer's HTTPS listener",
    )
    ap.add_argument(
        "--features",
        action="store_true",
        help="nginx and Portico only, one route with CORS, basic auth, a rate limit and a regex rewrite",
    )
    ap.add_argument(
        "--gateway",
        action="store_true",
        help="Portico serves through a Gateway's HTTP listener and an HTTPRoute (no TLS scenarios for it)",
    )
    ap.add_argument("--render", metavar="JSON", help="only re-render latest.md (and the README table) from a results file")
    args = ap.parse_args()
    if args.render:
        data = json.loads(Path(args.render).read_text())
        md = render_markdown(data["meta"], data["summary"])
        out_dir = Path(args.out) if args.out else Path(args.render).parent
        out_dir.mkdir(parents=True, exist_ok=True)
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

    if args.instructions:
        settings["workers"] = 1
    bench = Bench(args, settings)
    if args.instructions:
        ok, md = harnessed(bench, lambda: bench.instructions(out_dir, settings["duration"]))
        if ok and args.update_readme and not (args.features or args.gateway or args.filters or args.tls):
            update_readme(md, "instructions")
        return 0 if ok else 1
    if args.features:
        ok, md = harnessed(bench, lambda: bench.features_run(out_dir))
        if ok and args.update_readme:
            update_readme(md, "features")
        return 0 if ok else 1
    if args.profile:
        profile_dir = Path(args.out) if args.out else Path(tempfile.gettempdir())
        return 0 if harnessed(bench, lambda: bench.profile(profile_dir, settings["duration"]))[0] else 1
    if not harnessed(bench, bench.run)[0]:
        return 1

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
