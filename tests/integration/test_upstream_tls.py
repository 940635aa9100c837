"""TLS to backends: a Service port with `appProtocol: https` is spoken to over TLS,
verified against a CA bundle from a Secret when the Service names one."""

import subprocess
import sys
import textwrap

import pytest

from harness import free_port, wait_for_port
from k8s import Config, path, rule
from test_tls import CA, tls_secret

HOST = "secure.example.com"

BACKEND = textwrap.dedent(
    """
    import http.server, json, ssl, sys
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = json.dumps({"tls": True, "path": self.path, "host": self.headers.get("host")}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()
    """
)


@pytest.fixture
def https_backend(tmp_path):
    ca = CA(tmp_path)
    cert, key = ca.leaf("web.default.svc")
    (tmp_path / "b.crt").write_bytes(cert)
    (tmp_path / "b.key").write_bytes(key)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BACKEND, str(port), str(tmp_path / "b.crt"), str(tmp_path / "b.key")])
    wait_for_port("127.0.0.1", port, proc=proc)
    yield ca, port
    proc.terminate()
    proc.wait(10)


def config(port, annotations=None, ca_pair=None):
    cfg = Config()
    svc = cfg.service("web", app_protocol="https", target_port=port)
    if annotations:
        svc["metadata"]["annotations"] = annotations
    cfg.endpoint_slice("web", [("127.0.0.1", port)])
    if ca_pair:
        cfg.add(tls_secret("backend-ca", *ca_pair))
    cfg.ingress("secure", rules=[rule(HOST, path("/", "web"))])
    return cfg


def test_https_backend_without_ca_is_encrypted_not_verified(portico, https_backend):
    ca, port = https_backend
    p = portico(config(port))
    r = p.get("/x", host=HOST)
    assert r.status == 200, r
    assert r.json()["tls"] is True and r.json()["path"] == "/x"


def test_https_backend_verified_against_its_ca(portico, https_backend):
    ca, port = https_backend
    # The Secret's tls.crt is the CA certificate: what the Service names as its bundle.
    ca_pair = (ca.cert.read_bytes(), (ca.d / "ca.key").read_bytes())
    p = portico(config(port, {"portico.dev/upstream-ca-secret": "backend-ca"}, ca_pair))
    assert p.get("/", host=HOST).status == 200


def test_https_backend_with_untrusted_certificate_is_refused(portico, https_backend, tmp_path):
    _, port = https_backend
    (tmp_path / "other").mkdir()
    other = CA(tmp_path / "other")
    ca_pair = (other.cert.read_bytes(), (other.d / "ca.key").read_bytes())
    p = portico(config(port, {"portico.dev/upstream-ca-secret": "backend-ca"}, ca_pair))
    assert p.get("/", host=HOST).status == 502


def test_https_backend_with_wrong_server_name_is_refused(portico, https_backend):
    ca, port = https_backend
    ca_pair = (ca.cert.read_bytes(), (ca.d / "ca.key").read_bytes())
    annotations = {"portico.dev/upstream-ca-secret": "backend-ca", "portico.dev/upstream-server-name": "other.svc"}
    p = portico(config(port, annotations, ca_pair))
    assert p.get("/", host=HOST).status == 502
