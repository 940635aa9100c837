"""Gateway API in file mode: a GatewayClass of Portico's, a Gateway with an HTTP and an
HTTPS listener (its certificate a Secret in the same file), and an HTTPRoute to a real
backend. With `--from-file` Gateways are served in direct mode (docs/gateway-api.md):
each listener port is bound as it is, and only that port's routes answer on it.

The same host is also routed by an Ingress, to another backend: an HTTPRoute is never
served on the Ingress ports and an Ingress never on a Gateway's ports."""

import http.client
import json
import socket
import struct
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from harness import curl, free_port, portico_bin, read_head, wait_for_port
from k8s import Config, path, rule
from test_tls import CA, peer_cert, tls_secret

HOST = "gw.example.test"
TLS_HOST = "secure.gw.example.test"
OTHER_TLS_HOST = "other.gw.example.test"
CLASS = "portico-gw"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CA(tmp_path_factory.mktemp("gw-ca"))


def gateway_config(echo, ca, http_port, https_port):
    cfg = Config()
    cfg.backend("gw-web", [echo.a])
    cfg.backend("ing-web", [echo.b])
    # The same host by an Ingress, to another backend, on the Ingress ports.
    cfg.ingress("site", rules=[rule(HOST, path("/", "ing-web"))])
    cfg.add(tls_secret("secure", *ca.leaf(TLS_HOST)))
    cfg.add(tls_secret("other", *ca.leaf(OTHER_TLS_HOST)))
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": CLASS},
            "spec": {"controllerName": "portico.dev/gateway-controller"},
        }
    )
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "edge", "namespace": "default"},
            "spec": {
                "gatewayClassName": CLASS,
                "listeners": [
                    {"name": "http", "protocol": "HTTP", "port": http_port},
                    {
                        "name": "https",
                        "protocol": "HTTPS",
                        "port": https_port,
                        "hostname": TLS_HOST,
                        "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "secure"}]},
                    },
                    {
                        "name": "https-other",
                        "protocol": "HTTPS",
                        "port": https_port,
                        "hostname": OTHER_TLS_HOST,
                        "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "other"}]},
                    },
                ],
            },
        }
    )
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "parentRefs": [{"name": "edge"}],
                "hostnames": [HOST, TLS_HOST, OTHER_TLS_HOST],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/app"}}],
                        "backendRefs": [{"name": "gw-web", "port": 80}],
                    }
                ],
            },
        }
    )
    return cfg


@pytest.fixture
def gateway(portico, echo, ca):
    http_port, https_port = free_port(), free_port()
    p = portico(gateway_config(echo, ca, http_port, https_port))
    wait_for_port("127.0.0.1", http_port, proc=p.proc)
    wait_for_port("127.0.0.1", https_port, proc=p.proc)
    return p, http_port, https_port


def on_port(port, path_, host):
    return curl("http://127.0.0.1:%d%s" % (port, path_), host=host)


def https_on_port(port, host, ca, url_path):
    """curl over HTTPS to `host` on `port`, verifying against the test CA: (status, body)."""
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "15", "--cacert", str(ca.cert), "--resolve", "%s:%d:127.0.0.1" % (host, port),
         "-w", "\n%{http_code}", "https://%s:%d%s" % (host, port, url_path)],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    body, _, status = proc.stdout.decode().rpartition("\n")
    return int(status), body


def test_http_route_answers_on_its_listener_port_only(gateway):
    """Gateway API v1 HTTPRoute attached to a Gateway listener: served on the listener's
    port; the Ingress for the same host keeps the Ingress port."""
    p, http_port, _ = gateway
    r = on_port(http_port, "/app/x", HOST)
    assert r.status == 200, r
    assert r.json()["backend"] == "a", "the HTTPRoute's backend serves the listener port"
    # A path the HTTPRoute does not match: 404 on the listener, even though the
    # Ingress of the same host has `/`.
    assert on_port(http_port, "/elsewhere", HOST).status == 404
    r = p.get("/app/x", host=HOST)
    assert r.status == 200 and r.json()["backend"] == "b", "the Ingress port serves the Ingress, not the HTTPRoute"


def test_sni_picks_the_listeners_certificate(gateway, ca):
    """Gateway API listeners on one port with different hostnames: the TLS handshake
    picks the certificate of the listener the SNI names, and the route answers there."""
    _, _, https_port = gateway
    assert "DNS:%s" % TLS_HOST in peer_cert(https_port, TLS_HOST)
    assert "DNS:%s" % OTHER_TLS_HOST in peer_cert(https_port, OTHER_TLS_HOST)
    status, body = https_on_port(https_port, TLS_HOST, ca, "/app/")
    assert status == 200 and json.loads(body)["backend"] == "a"
    status, body = https_on_port(https_port, OTHER_TLS_HOST, ca, "/app/")
    assert status == 200 and json.loads(body)["backend"] == "a"


def test_the_https_listener_port_is_not_plain_http(gateway):
    """A plain-HTTP request on the HTTPS listener port is not answered as HTTP."""
    _, _, https_port = gateway
    with socket.create_connection(("127.0.0.1", https_port), timeout=10) as s:
        s.sendall(("GET /app/ HTTP/1.1\r\nHost: %s\r\n\r\n" % TLS_HOST).encode())
        s.settimeout(10)
        try:
            data = s.recv(4096)
        except (ConnectionResetError, TimeoutError):
            data = b""
    assert not data.startswith(b"HTTP/1.1 200"), data[:200]


def test_explain_port_names_the_http_route(gateway):
    """`portico explain --port N` explains against the listener on port N and names the
    HTTPRoute rule that serves the request; without `--port` the Ingress serves."""
    p, http_port, _ = gateway
    r = subprocess.run(
        [str(portico_bin()), "explain", "--from-file", str(p.file), "--port", str(http_port), "--output", "json", HOST, "/app/x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    served = e["served_by"]
    assert (served["kind"], served["namespace"], served["name"], served["rule"]) == ("HTTPRoute", "default", "web", 0)
    r = subprocess.run(
        [str(portico_bin()), "explain", "--from-file", str(p.file), "--port", str(http_port), HOST, "/app/x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "served by: HTTPRoute default/web rules[0]" in r.stdout, r.stdout
    # The running instance's admin port answers the same.
    status, body = p.admin("/explain?host=%s&path=/app/x&port=%d" % (HOST, http_port))
    assert status == 200, body
    assert json.loads(body)["served_by"]["kind"] == "HTTPRoute"
    # Without --port: the Ingress ports, where the Ingress serves the host.
    r = subprocess.run(
        [str(portico_bin()), "explain", "--from-file", str(p.file), "--output", "json", HOST, "/app/x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["served_by"]["kind"] == "Ingress"


def isolation_config(echo, port):
    """Three HTTP listeners on one port, from any host to one name, each with its own
    route and backend; the routes of the two wider listeners name every hostname."""
    cfg = Config()
    for name, ep in (("iso-any", echo.a), ("iso-wild", echo.b), ("iso-exact", echo.c)):
        cfg.backend(name, [ep])
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": CLASS},
            "spec": {"controllerName": "portico.dev/gateway-controller"},
        }
    )
    listeners = [
        {"name": "any", "protocol": "HTTP", "port": port},
        {"name": "wild", "protocol": "HTTP", "port": port, "hostname": "*.iso.test"},
        {"name": "exact", "protocol": "HTTP", "port": port, "hostname": "a.iso.test"},
    ]
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "iso", "namespace": "default"},
            "spec": {"gatewayClassName": CLASS, "listeners": listeners},
        }
    )
    every = ["bar.test", "*.iso.test", "a.iso.test"]
    for listener, hostnames, prefix in (("any", every, "/"), ("wild", every, "/"), ("exact", [], "/only")):
        cfg.add(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": "iso-" + listener, "namespace": "default"},
                "spec": {
                    "parentRefs": [{"name": "iso", "sectionName": listener}],
                    "hostnames": hostnames,
                    "rules": [
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                            "backendRefs": [{"name": "iso-" + listener, "port": 80}],
                        }
                    ],
                },
            }
        )
    return cfg


def test_listener_isolation_routes_by_the_most_specific_listener(portico, echo):
    """Gateway API GatewaySpec.listeners, "Listeners that are distinct only by Hostname"
    (conformance GatewayHTTPListenerIsolation): a request is routed by the routes of the
    most specific listener whose hostname matches it, exact before wildcard before none.
    A wider listener's routes never answer for a narrower listener's hosts, even when
    they name those hosts and the narrower listener has no route for the path (404)."""
    port = free_port()
    p = portico(isolation_config(echo, port))
    wait_for_port("127.0.0.1", port, proc=p.proc)
    cases = [
        ("bar.test", "/x", 200, "a"),
        ("x.iso.test", "/x", 200, "b"),
        ("deep.x.iso.test", "/x", 200, "b"),
        ("a.iso.test", "/only/x", 200, "c"),
        ("a.iso.test", "/x", 404, None),
        ("other.test", "/x", 404, None),
    ]
    for host, url_path, status, backend in cases:
        r = on_port(port, url_path, host)
        assert r.status == status, (host, url_path, r)
        if backend:
            assert r.json()["backend"] == backend, (host, url_path)


class Flaky:
    """A backend that fails the first `fail` requests of each `id` (query parameters),
    then answers 200, as the conformance suite's retry backend does: `code=N` fails
    with that status, `code=reset` reads the request and resets the connection (TCP
    RST) unanswered, `code=slow` answers 500 after 2 seconds. It records when each
    request of an id arrived."""

    def __init__(self, ip="127.0.0.1"):
        self.ip = ip
        self.port = free_port((ip,))
        self.sock = socket.create_server((ip, self.port))
        self.hits = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        with c:
            c.settimeout(10)
            rest = b""
            while True:
                got = read_head(c, rest)
                if got is None:
                    return
                head, rest = got
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                while len(rest) < length:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                body, rest = rest[:length], rest[length:]
                method, target = lines[0].split(" ")[:2]
                query = parse_qs(urlsplit(target).query)
                key = query.get("id", [""])[0]
                with self.lock:
                    hits = self.hits.setdefault(key, [])
                    hits.append(time.monotonic())
                    n = len(hits)
                code = query.get("code", ["500"])[0]
                if n <= int(query.get("fail", ["0"])[0]):
                    if code == "reset":
                        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return
                    if code == "slow":
                        time.sleep(2)
                        code = "500"
                    answer = b"HTTP/1.1 %s Failing\r\nContent-Length: 5\r\n\r\nfail\n" % code.encode()
                else:
                    echo = json.dumps({"method": method, "attempt": n, "body_length": len(body)}).encode()
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(echo), echo)
                try:
                    c.sendall(answer)
                except OSError:
                    return

    def times(self, key):
        with self.lock:
            return list(self.hits.get(key, []))

    def stop(self):
        self.sock.close()


RETRY_HOST = "retry.gw.example.test"


def retry_config(flaky, port):
    """One Gateway listener and one HTTPRoute to the one-endpoint backend `flaky`:
    /retry retries 500 three times 200 ms apart; /fast retries 500 twice at once;
    /bounded waits 600 ms between retries within a 1 s request timeout; /timed retries
    once after a 300 ms backend timeout; /plain has no retry."""
    cfg = Config()
    cfg.backend("flaky", [flaky])
    gateway_api_base(cfg, "retrying", port)

    def rule_(prefix, retry=None, timeouts=None):
        r = {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}], "backendRefs": [{"name": "flaky", "port": 80}]}
        if retry is not None:
            r["retry"] = retry
        if timeouts is not None:
            r["timeouts"] = timeouts
        return r

    rules = [
        rule_("/retry", {"codes": [500], "attempts": 3, "backoff": "200ms"}),
        rule_("/fast", {"codes": [500], "attempts": 2}),
        rule_("/bounded", {"codes": [500], "attempts": 3, "backoff": "600ms"}, {"request": "1s"}),
        rule_("/timed", {"attempts": 1}, {"backendRequest": "300ms"}),
        rule_("/plain"),
    ]
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "retries", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "retrying"}], "hostnames": [RETRY_HOST], "rules": rules},
        }
    )
    return cfg


@pytest.fixture
def retrying(portico):
    flaky = Flaky()
    port = free_port()
    p = portico(retry_config(flaky, port))
    wait_for_port("127.0.0.1", port, proc=p.proc)
    yield p, port, flaky
    flaky.stop()


_ids = iter(range(1_000_000))


def ask(port, prefix, fail, code="500", method="GET", body=None):
    """One request that fails `fail` times at the backend: (status, seconds taken, id)."""
    key = "r%d" % next(_ids)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.monotonic()
    conn.request(method, "%s?id=%s&fail=%d&code=%s" % (prefix, key, fail, code), body=body, headers={"Host": RETRY_HOST})
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status, time.monotonic() - t0, key


def test_http_route_retry_attempts_codes_and_backoff(retrying):
    """HTTPRouteRetry (GEP-1731; apis/v1 HTTPRouteRetry): `attempts` is how many times a
    request is retried, the first request not counted; only the listed `codes` are
    retried; `backoff` is the least time between attempts. The backend has one
    endpoint, so retries go to it again (as in the conformance suite's HTTPRouteRetry)."""
    p, port, flaky = retrying
    # Two failures, three retries allowed: the client gets 200 after three requests,
    # each at least 200 ms after the one before.
    status, took, key = ask(port, "/retry", fail=2)
    assert status == 200
    times = flaky.times(key)
    assert len(times) == 3, times
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= 0.2 for g in gaps), gaps
    assert took >= 0.4, took
    # Four failures: the first request and its three retries all fail, the client gets
    # the backend's 500, and the fifth request is never made.
    status, _, key = ask(port, "/retry", fail=4)
    assert status == 500
    assert len(flaky.times(key)) == 4
    # 503 is not listed: not retried.
    status, _, key = ask(port, "/retry", fail=2, code="503")
    assert (status, len(flaky.times(key))) == (503, 1)
    # Without a backoff the retries follow at once.
    status, took, key = ask(port, "/fast", fail=2)
    assert (status, len(flaky.times(key))) == (200, 3)
    assert took < 0.5, took
    # A rule without retry: the first failure is the answer.
    status, _, key = ask(port, "/plain", fail=1)
    assert (status, len(flaky.times(key))) == (500, 1)
    # Retries made: 2, 3 and 2.
    assert p.metrics().get("portico_upstream_retries_total", reason="status") == 2 + 3 + 2


def test_http_route_retry_connection_errors_and_methods(retrying):
    """"Implementations SHOULD retry on connection errors (disconnect, reset, timeout,
    TCP failure) if a retry stanza is configured": a connection reset before the
    response is retried like a listed status, whatever the codes. The spec names no
    method, so a bodiless POST is retried too; a POST whose body went to the endpoint is
    not (Portico keeps no copy of a body), and the client sees the failure."""
    p, port, flaky = retrying
    status, _, key = ask(port, "/retry", fail=2, code="reset")
    assert (status, len(flaky.times(key))) == (200, 3)
    assert p.metrics().get("portico_upstream_retries_total", reason="reset") == 2
    status, _, key = ask(port, "/retry", fail=1, method="POST")
    assert (status, len(flaky.times(key))) == (200, 2)
    status, _, key = ask(port, "/retry", fail=1, method="POST", body=b"x" * 100)
    assert (status, len(flaky.times(key))) == (500, 1)
    # Without retry, a reset is a 502 (after, at most, the free resend every route
    # makes when a pooled keep-alive connection breaks, as nginx does).
    status, _, key = ask(port, "/plain", fail=5, code="reset")
    assert status == 502
    assert len(flaky.times(key)) <= 2


def test_http_route_retry_within_the_request_timeout(retrying):
    """HTTPRouteRetry.backoff: "the entire duration of the initial request and any
    retry attempts MUST not exceed the Request timeout duration". With 600 ms between
    attempts and a 1 s request timeout, the second retry could not start in time: it is
    not made, and the client gets the last answer (500) before the timeout."""
    _, port, flaky = retrying
    status, took, key = ask(port, "/bounded", fail=5)
    assert status == 500
    assert len(flaky.times(key)) == 2
    assert 0.6 <= took < 1.0, took


def test_http_route_retry_after_a_backend_timeout(retrying):
    """HTTPRouteRetryBackendTimeout (GEP-1731: "backend requests that exceed a
    BackendRequest timeout duration are retried if a retry stanza is configured"): an
    attempt with no answer within timeouts.backendRequest is retried, and the client
    gets the retry's answer well before the slow one would have come."""
    p, port, flaky = retrying
    status, took, key = ask(port, "/timed", fail=1, code="slow")
    assert (status, len(flaky.times(key))) == (200, 2)
    assert 0.3 <= took < 1.5, took
    assert p.metrics().get("portico_upstream_retries_total", reason="timeout") == 1
    # Twice slow, one retry: the second timeout is the answer, 504.
    status, took, key = ask(port, "/timed", fail=2, code="slow")
    assert (status, len(flaky.times(key))) == (504, 2)
    assert 0.6 <= took < 1.5, took


# BackendTLSPolicy (Gateway API v1.6.3, apis/v1/backendtlspolicy_types.go): TLS from
# the Gateway to a Service's endpoints, verified against the `ca.crt` of a ConfigMap
# for `validation.hostname` (also the SNI), or for `subjectAltNames` instead when set.

BACKEND_NAME = "web.internal"
BACKEND_URI = "spiffe://example.test/ns/default/sa/web"


@pytest.fixture
def tls_backend(tmp_path):
    """One HTTPS backend with a certificate for DNS web.internal and a SPIFFE URI,
    signed by its own CA; it answers with the SNI it was sent. (CA, port)."""
    import sys

    from test_upstream_tls import BACKEND

    (tmp_path / "backend-ca").mkdir()
    ca = CA(tmp_path / "backend-ca")
    cert, key = ca.leaf(BACKEND_NAME, uris=[BACKEND_URI])
    (tmp_path / "b.crt").write_bytes(cert)
    (tmp_path / "b.key").write_bytes(key)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BACKEND, str(port), str(tmp_path / "b.crt"), str(tmp_path / "b.key")])
    wait_for_port("127.0.0.1", port, proc=proc)
    yield ca, port
    proc.terminate()
    proc.wait(10)


def ca_config_map(name, ca):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"ca.crt": ca.cert.read_text()},
    }


def backend_tls_policy(name, service, validation):
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "BackendTLSPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": service}], "validation": validation},
    }


def backend_tls_config(port, backend_port, ca, other_ca):
    """One Service per case, all to the same HTTPS endpoint, each with its policy;
    path /<case> goes to Service <case>."""
    cfg = Config()
    cfg.add(ca_config_map("backend-ca", ca))
    cfg.add(ca_config_map("other-ca", other_ca))
    ca_ref = [{"group": "", "kind": "ConfigMap", "name": "backend-ca"}]
    cases = {
        "verified": {"caCertificateRefs": ca_ref, "hostname": BACKEND_NAME},
        "wrong-hostname": {"caCertificateRefs": ca_ref, "hostname": "other.internal"},
        "wrong-ca": {
            "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "other-ca"}],
            "hostname": BACKEND_NAME,
        },
        "missing-ca": {
            "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "missing"}],
            "hostname": BACKEND_NAME,
        },
        # SNI sni.internal, which the certificate does not carry: the URI is what counts.
        "san-uri": {
            "caCertificateRefs": ca_ref,
            "hostname": "sni.internal",
            "subjectAltNames": [{"type": "URI", "uri": BACKEND_URI}],
        },
        "san-hostname": {
            "caCertificateRefs": ca_ref,
            "hostname": "sni.internal",
            "subjectAltNames": [{"type": "Hostname", "hostname": BACKEND_NAME}],
        },
        # The hostname matches the certificate, but with subjectAltNames it is not
        # used for authentication.
        "san-mismatch": {
            "caCertificateRefs": ca_ref,
            "hostname": BACKEND_NAME,
            "subjectAltNames": [{"type": "URI", "uri": "spiffe://example.test/ns/default/sa/other"}],
        },
    }
    rules = []
    for case, validation in cases.items():
        cfg.backend(case, [("127.0.0.1", backend_port)], port=443, port_name="https")
        cfg.add(backend_tls_policy(case, case, validation))
        rules.append(
            {
                "matches": [{"path": {"type": "Exact", "value": "/" + case}}],
                "backendRefs": [{"name": case, "port": 443}],
            }
        )
    gateway_api_base(cfg, "edge", port)
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "tls", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "edge"}], "hostnames": [HOST], "rules": rules},
        }
    )
    return cfg


def test_backend_tls_policy_verifies_the_endpoint(portico, tls_backend, tmp_path):
    """A request reaches the HTTPS endpoint with validation.hostname as SNI when the
    certificate verifies; a wrong hostname or CA fails the handshake and the client
    gets 502, never an unverified answer; a policy whose only caCertificateRef does
    not resolve answers 500 (spec: "Connections using an invalid CACertificateRef MUST
    fail, and the client MUST receive an HTTP 5xx error response")."""
    ca, backend_port = tls_backend
    (tmp_path / "other").mkdir()
    other_ca = CA(tmp_path / "other")
    port = free_port()
    p = portico(backend_tls_config(port, backend_port, ca, other_ca))
    wait_for_port("127.0.0.1", port, proc=p.proc)

    r = on_port(port, "/verified", HOST)
    assert r.status == 200, r
    assert r.json()["tls"] is True and r.json()["sni"] == BACKEND_NAME and r.json()["path"] == "/verified"
    assert on_port(port, "/wrong-hostname", HOST).status == 502
    assert on_port(port, "/wrong-ca", HOST).status == 502
    assert on_port(port, "/missing-ca", HOST).status == 500


def test_backend_tls_policy_subject_alt_names(portico, tls_backend, tmp_path):
    """subjectAltNames: "the certificate served from the backend MUST have at least one
    Subject Alternate Name matching one of the specified SubjectAltNames", and the
    hostname is then the SNI only: a URI or DNS SAN that the certificate carries is
    served whatever the SNI; one it does not carry fails even though the hostname
    would have matched."""
    ca, backend_port = tls_backend
    port = free_port()
    (tmp_path / "other").mkdir()
    p = portico(backend_tls_config(port, backend_port, ca, CA(tmp_path / "other")))
    wait_for_port("127.0.0.1", port, proc=p.proc)

    for case in ("san-uri", "san-hostname"):
        r = on_port(port, "/" + case, HOST)
        assert r.status == 200, (case, r)
        assert r.json()["sni"] == "sni.internal", case
    assert on_port(port, "/san-mismatch", HOST).status == 502


def gateway_api_base(cfg, name, port):
    """Portico's GatewayClass and a Gateway `name` with one HTTP listener on `port`."""
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": CLASS},
            "spec": {"controllerName": "portico.dev/gateway-controller"},
        }
    )
    cfg.add(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"gatewayClassName": CLASS, "listeners": [{"name": "http", "protocol": "HTTP", "port": port}]},
        }
    )


def http_route(name, gateway, rules):
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"parentRefs": [{"name": gateway}], "rules": rules},
    }


def header_filter(set_=(), add=(), remove=()):
    return {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {
            "set": [{"name": n, "value": v} for n, v in set_],
            "add": [{"name": n, "value": v} for n, v in add],
            "remove": list(remove),
        },
    }


def test_backend_request_header_modifier_applies_to_its_backend_only(portico, echo):
    """Gateway API HTTPBackendRef.filters: "Filters defined at this level should be
    executed if and only if the request is being forwarded to the backend defined here"
    (feature HTTPRouteBackendRequestHeaderModification; conformance
    HTTPRouteRequestHeaderModifierBackendWeights). Over a 1:1 split each request carries
    the header changes of the backend it reached and never the other's; the rule's own
    RequestHeaderModifier reaches both. A backend's change to a forwarded field replaces
    the proxy's value rather than adding a second one."""
    port = free_port()
    cfg = Config()
    cfg.backend("hm-a", [echo.a])
    cfg.backend("hm-b", [echo.b])
    cfg.backend("hm-c", [echo.c])
    gateway_api_base(cfg, "hm", port)
    cfg.add(
        http_route(
            "hm",
            "hm",
            [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/split"}}],
                    "filters": [header_filter(set_=[("X-Rule", "both")])],
                    "backendRefs": [
                        {"name": "hm-a", "port": 80, "weight": 1,
                         "filters": [header_filter(set_=[("Backend", "a")], remove=["X-Drop"])]},
                        {"name": "hm-b", "port": 80, "weight": 1,
                         "filters": [header_filter(set_=[("Backend", "b")], add=[("X-Add", "b")])]},
                    ],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/one"}}],
                    "backendRefs": [
                        {"name": "hm-c", "port": 80,
                         "filters": [header_filter(set_=[("Backend", "c"), ("X-Forwarded-Proto", "from-filter")])]},
                    ],
                },
            ],
        )
    )  # fmt: skip
    p = portico(cfg)
    wait_for_port("127.0.0.1", port, proc=p.proc)
    seen = set()
    for _ in range(10):
        r = on_port(port, "/split", "hm.test")
        assert r.status == 200, r
        got = r.json()
        backend, headers = got["backend"], got["headers"]
        seen.add(backend)
        assert headers["backend"] == backend, got
        assert headers["x-rule"] == "both", got
        assert ("x-add" in headers) == (backend == "b"), got
    assert seen == {"a", "b"}
    # `remove` of backend a: its requests lose X-Drop, b's keep it.
    for _ in range(4):
        got = curl("http://127.0.0.1:%d/split" % port, host="hm.test", headers=["X-Drop: 1"]).json()
        assert ("x-drop" in got["headers"]) == (got["backend"] == "b"), got
    got = on_port(port, "/one", "hm.test").json()
    assert got["backend"] == "c" and got["headers"]["backend"] == "c", got
    assert got["headers"]["x-forwarded-proto"] == "from-filter", got


def test_cors_filter_preflight_and_actual_requests(portico, echo):
    """Gateway API HTTPCORSFilter (feature HTTPRouteCORS; conformance HTTPRouteCORS):
    - "If the request `Origin` matches the configured allowed origins, the gateway sets
      the response header `Access-Control-Allow-Origin` to the same value as the
      `Origin` header", `*` in an origin being "a greedy match to the _left_";
    - a preflight is answered 204 by the gateway; "If the request `Origin` does not
      match ... the gateway returns 204/200 response but doesn't set the relevant
      cross-origin response headers";
    - "When the `MaxAge` field is unspecified, the gateway sets the response header
      `Access-Control-Max-Age: 5`";
    - with `*` and `allowCredentials: true` "the gateway must not return `*`" but the
      request's own origin, method and headers."""
    port = free_port()
    cfg = Config()
    cfg.backend("cors-web", [echo.a])
    gateway_api_base(cfg, "cors", port)
    listed = {"allowOrigins": ["https://www.foo.com", "https://*.bar.com"], "allowMethods": ["GET", "OPTIONS"],
              "allowHeaders": ["x-header-1"], "exposeHeaders": ["x-header-3"], "allowCredentials": True}
    wildcard = {"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"], "allowCredentials": True}
    cfg.add(
        http_route(
            "cors",
            "cors",
            [
                {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                 "filters": [{"type": "CORS", "cors": spec}],
                 "backendRefs": [{"name": "cors-web", "port": 80}]}
                for prefix, spec in (("/listed", listed), ("/any", wildcard))
            ],
        )
    )  # fmt: skip
    p = portico(cfg)
    wait_for_port("127.0.0.1", port, proc=p.proc)

    def ask(url_path, method, *headers):
        return curl("http://127.0.0.1:%d%s" % (port, url_path), "-X", method, host="cors.test", headers=list(headers))

    pre = ask("/listed", "OPTIONS", "Origin: https://xpto.www.bar.com", "Access-Control-Request-Method: GET")
    assert pre.status == 204 and pre.body == b"", pre
    assert pre.header("access-control-allow-origin") == "https://xpto.www.bar.com"
    assert pre.header("access-control-allow-methods") == "GET, OPTIONS"
    assert pre.header("access-control-allow-headers") == "x-header-1"
    assert pre.header("access-control-allow-credentials") == "true"
    assert pre.header("access-control-max-age") == "5"
    denied = ask("/listed", "OPTIONS", "Origin: https://foobar.com", "Access-Control-Request-Method: GET")
    assert denied.status == 204, denied
    assert not [h for h in denied.headers if h.startswith("access-control-")], denied.headers
    # The actual request reaches the endpoint and its answer carries the CORS headers.
    r = ask("/listed", "GET", "Origin: https://www.foo.com")
    assert r.status == 200 and r.json()["backend"] == "a", r
    assert r.header("access-control-allow-origin") == "https://www.foo.com"
    assert r.header("access-control-expose-headers") == "x-header-3"
    assert r.header("access-control-allow-methods") is None
    assert "Origin" in r.header("vary")
    r = ask("/listed", "GET", "Origin: https://foobar.com")
    assert r.status == 200 and r.header("access-control-allow-origin") is None, r
    # An OPTIONS asking for no method is not a preflight: the endpoint answers it.
    r = ask("/listed", "OPTIONS", "Origin: https://www.foo.com")
    assert r.status == 200 and r.json()["method"] == "OPTIONS", r

    pre = ask("/any", "OPTIONS", "Origin: https://other.foo.com", "Access-Control-Request-Method: PUT",
              "Access-Control-Request-Headers: x-header-1, x-header-2")  # fmt: skip
    assert pre.status == 204, pre
    assert pre.header("access-control-allow-origin") == "https://other.foo.com"
    assert pre.header("access-control-allow-methods") == "PUT"
    assert pre.header("access-control-allow-headers") == "x-header-1, x-header-2"
    assert pre.header("access-control-allow-credentials") == "true"
