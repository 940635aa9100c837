"""Gateway API in file mode: a GatewayClass of Portico's, a Gateway with an HTTP and an
HTTPS listener (its certificate a Secret in the same file), and an HTTPRoute to a real
backend. With `--from-file` Gateways are served in direct mode (docs/gateway-api.md):
each listener port is bound as it is, and only that port's routes answer on it.

The same host is also routed by an Ingress, to another backend: an HTTPRoute is never
served on the Ingress ports and an Ingress never on a Gateway's ports."""

import json
import socket
import subprocess

import pytest

from harness import curl, free_port, portico_bin, wait_for_port
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
