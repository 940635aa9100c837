"""TLS to backends: a Service port with `appProtocol: https` is spoken to over TLS,
verified against a CA bundle from a Secret when the Service names one; an Ingress
with ingress-nginx's `backend-protocol: HTTPS` and `proxy-ssl-*` annotations is
spoken to as those say (its annotations.md "Backend Certificate Authentication",
test/e2e/annotations/proxyssl.go, and the `proxy_ssl_*` lines of its nginx
template)."""

import base64
import subprocess
import sys
import textwrap

import pytest

from harness import free_port, wait_for_port, wait_until
from k8s import Config, path, rule
from test_tls import CA, tls_secret

HOST = "secure.example.com"

BACKEND = textwrap.dedent(
    """
    import http.server, json, ssl, sys
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    client_ca = sys.argv[4] if len(sys.argv) > 4 else None
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            peer = self.request.getpeercert() or {}
            subject = dict(x[0] for x in peer.get("subject", ()))
            body = json.dumps({
                "tls": True, "path": self.path, "host": self.headers.get("host"),
                "sni": getattr(self.request, "sni", None), "client": subject.get("commonName"),
            }).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        # Only clients with a certificate this CA signed get through the handshake.
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    def remember_sni(sock, name, _ctx):
        sock.sni = name  # called only when the client sends SNI
    ctx.sni_callback = remember_sni
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()
    """
)


def start_backend(tmp_path, ca, name, client_ca=None):
    """A TLS backend serving a certificate for `name` from `ca`; with `client_ca`, it
    requires a client certificate that CA signed. Returns (process, port)."""
    cert, key = ca.leaf(name)
    crt_file, key_file = tmp_path / ("%s.crt" % name), tmp_path / ("%s.key" % name)
    crt_file.write_bytes(cert)
    key_file.write_bytes(key)
    port = free_port()
    argv = [sys.executable, "-c", BACKEND, str(port), str(crt_file), str(key_file)]
    if client_ca:
        argv.append(str(client_ca.cert))
    proc = subprocess.Popen(argv)
    wait_for_port("127.0.0.1", port, proc=proc)
    return proc, port


@pytest.fixture
def https_backend(tmp_path):
    ca = CA(tmp_path)
    proc, port = start_backend(tmp_path, ca, "web.default.svc")
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


# --- ingress-nginx's proxy-ssl-* -------------------------------------------------

NGINX = "nginx.ingress.kubernetes.io/"


def proxy_ssl_secret(name, ca=None, client=None):
    """ingress-nginx's proxy-ssl-secret: `ca.crt` verifies the endpoint, `tls.crt` and
    `tls.key` are the certificate presented to it."""
    secret = tls_secret(name, *(client or (b"", b"")))
    data = secret["data"]
    if client is None:
        data.clear()
    if ca is not None:
        data["ca.crt"] = base64.b64encode(ca.cert.read_bytes()).decode()
    return secret


def nginx_config(port, annotations, secrets=()):
    """An Ingress with `backend-protocol: HTTPS` and `annotations` (unprefixed), as an
    ingress-nginx user writes it: the Service says nothing of TLS."""
    cfg = Config()
    cfg.service("web", target_port=port)
    cfg.endpoint_slice("web", [("127.0.0.1", port)])
    for secret in secrets:
        cfg.add(secret)
    prefixed = {NGINX + k: v for k, v in {"backend-protocol": "HTTPS", **annotations}.items()}
    cfg.ingress("secure", rules=[rule(HOST, path("/", "web"))], annotations=prefixed)
    return cfg


@pytest.fixture
def client_ca(tmp_path):
    """A CA for client certificates, and a leaf for Portico signed by it."""
    (tmp_path / "clients").mkdir()
    ca = CA(tmp_path / "clients")
    return ca, ca.leaf("portico-client")


def test_proxy_ssl_verify_on_with_the_right_ca_is_served(portico, https_backend):
    """proxyssl.go "should set valid proxy-ssl-secret, proxy-ssl-verify to on, ...":
    `proxy-ssl-verify: on` checks the endpoint against the Secret's `ca.crt`, for the
    Service's cluster name by default."""
    ca, port = https_backend
    secret = proxy_ssl_secret("upstream", ca=ca)
    p = portico(nginx_config(port, {"proxy-ssl-secret": "default/upstream", "proxy-ssl-verify": "on"}, [secret]))
    r = p.get("/x", host=HOST)
    assert r.status == 200, r
    assert r.json()["path"] == "/x"


def test_proxy_ssl_verify_on_with_another_ca_is_502(portico, https_backend, tmp_path):
    """nginx's `proxy_ssl_verify on` fails the handshake with an endpoint whose
    certificate the trusted CA did not sign: 502, never an unverified connection."""
    _, port = https_backend
    (tmp_path / "other").mkdir()
    secret = proxy_ssl_secret("upstream", ca=CA(tmp_path / "other"))
    p = portico(nginx_config(port, {"proxy-ssl-secret": "default/upstream", "proxy-ssl-verify": "on"}, [secret]))
    assert p.get("/", host=HOST).status == 502


def test_proxy_ssl_verify_off_serves_an_endpoint_of_another_ca(portico, https_backend, tmp_path):
    """`proxy-ssl-verify` defaults to off (ingress-nginx's proxyssl parser): the CA is
    loaded but not used to refuse the endpoint."""
    _, port = https_backend
    (tmp_path / "other").mkdir()
    secret = proxy_ssl_secret("upstream", ca=CA(tmp_path / "other"))
    p = portico(nginx_config(port, {"proxy-ssl-secret": "default/upstream"}, [secret]))
    assert p.get("/", host=HOST).status == 200


def test_proxy_ssl_presents_the_client_certificate(portico, tmp_path, client_ca):
    """annotations.md: `tls.crt` and `tls.key` authenticate Portico to the proxied
    HTTPS server (nginx's `proxy_ssl_certificate`). An endpoint that requires a client
    certificate sees it; without the Secret its handshake fails (502)."""
    cas, leaf = client_ca
    (tmp_path / "server").mkdir()
    server_ca = CA(tmp_path / "server")
    proc, port = start_backend(tmp_path, server_ca, "web.default.svc", client_ca=cas)
    try:
        secret = proxy_ssl_secret("upstream", ca=server_ca, client=leaf)
        annotations = {"proxy-ssl-secret": "default/upstream", "proxy-ssl-verify": "on"}
        p = portico(nginx_config(port, annotations, [secret]))
        r = p.get("/", host=HOST)
        assert r.status == 200, r
        assert r.json()["client"] == "portico-client"

        p.replace_config(nginx_config(port, {}).yaml())
        wait_until(lambda: p.get("/", host=HOST).status == 502, 10, what="the route without the certificate")
    finally:
        proc.terminate()
        proc.wait(10)


def test_proxy_ssl_sends_sni_only_when_server_name_is_on(portico, tmp_path):
    """annotations.md: `proxy-ssl-name` is the name the endpoint's certificate is
    verified for and, with `proxy-ssl-server-name: on`, the SNI sent (nginx's
    `proxy_ssl_server_name`, off by default: no SNI at all)."""
    ca = CA(tmp_path)
    proc, port = start_backend(tmp_path, ca, "web.internal")
    try:
        secret = proxy_ssl_secret("upstream", ca=ca)
        base = {"proxy-ssl-secret": "default/upstream", "proxy-ssl-verify": "on", "proxy-ssl-name": "web.internal"}
        p = portico(nginx_config(port, {**base, "proxy-ssl-server-name": "on"}, [secret]))
        r = p.get("/", host=HOST)
        assert r.status == 200, r
        assert r.json()["sni"] == "web.internal"

        p.replace_config(nginx_config(port, base, [secret]).yaml())
        wait_until(lambda: p.get("/", host=HOST).json()["sni"] is None, 10, what="a connection without SNI")

        # The name is what the certificate is verified for: another name is refused.
        p.replace_config(nginx_config(port, {**base, "proxy-ssl-name": "other.internal"}, [secret]).yaml())
        wait_until(lambda: p.get("/", host=HOST).status == 502, 10, what="the other name refused")
    finally:
        proc.terminate()
        proc.wait(10)


def test_proxy_ssl_secret_missing_denies_the_paths(portico, https_backend):
    """ingress-nginx's proxyssl parser answers a Secret it cannot get with
    LocationDenied: the paths answer 503 rather than reach the endpoint with less TLS
    than asked for."""
    _, port = https_backend
    p = portico(nginx_config(port, {"proxy-ssl-secret": "default/nowhere", "proxy-ssl-verify": "on"}))
    assert p.get("/", host=HOST).status == 503
