"""TLS termination with real clients: openssl s_client, curl and Python's ssl module
(all OpenSSL), against certificates made at test time by the openssl command."""

import base64
import datetime
import json
import re
import socket
import ssl
import subprocess
import time

import pytest

from harness import wait_until
from k8s import Config, path, rule, service_backend

EXACT = "app.tls.test"
WILD = "*.wild.test"
OTHER = "other.tls.test"
PLAIN = "plain.tls.test"


class CA:
    """A throwaway certificate authority and the leaf certificates it signs."""

    def __init__(self, d):
        self.d = d
        self.cert = d / "ca.crt"
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", d / "ca.key", "-out", self.cert, "-days", "2", "-subj", "/CN=Portico Test CA")  # fmt: skip
        self.n = 0

    def _run(self, *args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    def leaf(self, name, days=1, expired=False, uris=()):
        """(cert PEM, key PEM) for DNS name `name` (and URI names `uris`), signed by this CA."""
        self.n += 1
        key, csr, crt = (self.d / ("leaf%d.%s" % (self.n, ext)) for ext in ("key", "csr", "crt"))
        ext = self.d / ("leaf%d.ext" % self.n)
        ext.write_text("subjectAltName=%s\n" % ",".join(["DNS:%s" % name] + ["URI:%s" % u for u in uris]))
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                  "-out", csr, "-subj", "/CN=%s" % name)  # fmt: skip
        validity = ["-days", str(days)]
        if expired:
            # notAfter a day before now: expired by the time any client sees it.
            validity = ["-days", "-1"]
        self._run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.d / "ca.key", "-CAcreateserial",
                  "-out", crt, "-extfile", ext, *validity)  # fmt: skip
        return crt.read_bytes(), key.read_bytes()


def tls_secret(name, cert, key, namespace="default"):
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(cert), "tls.key": b64(key)},
    }


def tls_ingress(cfg, name, hosts, secret, annotations=None):
    ing = cfg.ingress(name, rules=[rule(h, path("/", "web")) for h in hosts], annotations=annotations)
    ing["spec"]["tls"] = [{"hosts": list(hosts), "secretName": secret}]
    return ing


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CA(tmp_path_factory.mktemp("ca"))


def config(echo, ca, *, exact_pair=None, other_pair=None):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.add(tls_secret("exact", *(exact_pair or ca.leaf(EXACT))))
    cfg.add(tls_secret("wild", *ca.leaf(WILD)))
    cfg.add(tls_secret("other", *(other_pair or ca.leaf(OTHER))))
    tls_ingress(cfg, "exact", [EXACT], "exact")
    tls_ingress(cfg, "wild", [WILD.replace("*", "x"), WILD], "wild")
    tls_ingress(cfg, "other", [OTHER], "other")
    cfg.ingress("plain", rules=[rule(PLAIN, path("/", "web"))])
    return cfg


def peer_cert(port, server_name, ca=None):
    """The leaf certificate the server presents for `server_name`, as a dict (subject
    CN, SANs) plus its DER bytes; verification off so the default one shows too."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            der = s.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    text = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName", "-serial"],
                          input=pem.encode(), capture_output=True, check=True).stdout.decode()  # fmt: skip
    return text


def s_client(port, server_name, *args):
    name = ["-servername", server_name] if server_name else ["-noservername"]
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, *name, *args],
        input=b"", capture_output=True, timeout=20,
    )  # fmt: skip
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def https(p, host, ca, *args, url_path="/"):
    """curl over HTTPS with verification against the test CA; (status, http_version,
    headers text, curl exit code)."""
    name = host.split(":")[0]
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "15", "--cacert", str(ca.cert), "--resolve", "%s:%d:127.0.0.1" % (name, p.https_port),
         "-D", "-", "-o", "/dev/null", "-w", "\n%{http_code} %{http_version}", *args,
         "https://%s:%d%s" % (name, p.https_port, url_path)],
        capture_output=True, timeout=30,
    )  # fmt: skip
    out = proc.stdout.decode(errors="replace")
    last = out.strip().splitlines()[-1] if out.strip() else "0 0"
    status, version = last.split()
    return int(status), version, out, proc.returncode


def test_exact_sni_gets_its_certificate_and_verifies(portico, echo, ca):
    p = portico(config(echo, ca))
    assert "DNS:%s" % EXACT in peer_cert(p.https_port, EXACT)
    status, _, _, rc = https(p, EXACT, ca)
    assert (status, rc) == (200, 0)


def test_wildcard_certificate_serves_one_label(portico, echo, ca):
    p = portico(config(echo, ca))
    assert "DNS:*.wild.test" in peer_cert(p.https_port, "x.wild.test")
    status, _, _, rc = https(p, "x.wild.test", ca)
    assert (status, rc) == (200, 0)


def test_unknown_sni_gets_the_default_certificate(portico, echo, ca):
    p = portico(config(echo, ca))
    for name in ("unknown.example", "a.b.wild.test"):
        text = peer_cert(p.https_port, name)
        assert "tls.test" not in text and "wild.test" not in text, text
    # No SNI at all (an IP literal): still a handshake, with the default certificate.
    rc, out = s_client(p.https_port, None)
    assert rc == 0 and "CN = Portico Default Certificate" in out, out[-2000:]


def test_alpn_offers_h2_and_curl_speaks_http2(portico, echo, ca):
    p = portico(config(echo, ca))
    rc, out = s_client(p.https_port, EXACT, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: h2" in out, out[-2000:]
    status, version, _, _ = https(p, EXACT, ca, "--http2")
    assert (status, version) == (200, "2")
    status, version, _, _ = https(p, EXACT, ca, "--http1.1")
    assert (status, version) == (200, "1.1")


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_tls_versions_are_refused(portico, echo, ca, flag):
    p = portico(config(echo, ca))
    before = p.metrics().get("portico_tls_handshake_errors_total", reason="incompatible_version_or_cipher") or 0
    # SECLEVEL=0 so the client itself is willing to offer the old version.
    rc, out = s_client(p.https_port, EXACT, flag, "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0, out[-2000:]
    assert "Cipher is (NONE)" in out or "alert" in out.lower() or "no protocols available" in out, out[-2000:]
    rc, out = s_client(p.https_port, EXACT, "-tls1_2")
    assert rc == 0 and "TLSv1.2" in out, out[-2000:]
    wait_until(
        lambda: (p.metrics().get("portico_tls_handshake_errors_total", reason="incompatible_version_or_cipher") or 0) > before,
        5, what="handshake failure counted",
    )  # fmt: skip


def test_plain_http_redirects_to_https_and_https_has_hsts(portico, echo, ca):
    p = portico(config(echo, ca))
    r = p.get("/some/path?q=1", host=EXACT)
    assert r.status == 308
    assert r.header("location") == "https://%s:%d/some/path?q=1" % (EXACT, p.https_port)
    status, _, headers, _ = https(p, EXACT, ca)
    assert status == 200
    assert re.search(r"(?im)^strict-transport-security: max-age=31536000; includeSubDomains", headers), headers
    # A host without TLS is served on plain HTTP as it is.
    assert p.get("/", host=PLAIN).status == 200


def test_a_tls_hosts_default_backend_redirects_and_has_hsts(portico, echo, ca):
    """The paths no rule of a TLS host matches go to its Ingress's defaultBackend, and
    get the same 308 and HSTS as the host's own paths (ingress-nginx puts the
    defaultBackend in the host's server block, where the redirect applies)."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.add(tls_secret("exact", *ca.leaf(EXACT)))
    ing = cfg.ingress("exact", rules=[rule(EXACT, path("/app", "web"))], default_backend=service_backend("web"))
    ing["spec"]["tls"] = [{"hosts": [EXACT], "secretName": "exact"}]
    p = portico(cfg)
    r = p.get("/elsewhere", host=EXACT)
    assert r.status == 308
    assert r.header("location") == "https://%s:%d/elsewhere" % (EXACT, p.https_port)
    status, _, headers, _ = https(p, EXACT, ca, url_path="/elsewhere")
    assert status == 200
    assert re.search(r"(?im)^strict-transport-security: max-age=31536000; includeSubDomains", headers), headers


def test_ssl_redirect_false_keeps_plain_http(portico, echo, ca):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.add(tls_secret("exact", *ca.leaf(EXACT)))
    tls_ingress(cfg, "exact", [EXACT], "exact", annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"})
    p = portico(cfg)
    assert p.get("/", host=EXACT).status == 200
    assert https(p, EXACT, ca)[0] == 200


def test_redirect_and_hsts_switch_off_globally(portico, echo, ca):
    p = portico(config(echo, ca), "--ssl-redirect", "false", "--hsts", "false")
    assert p.get("/", host=EXACT).status == 200
    status, _, headers, _ = https(p, EXACT, ca)
    assert status == 200 and "strict-transport-security" not in headers.lower()


def test_broken_secret_falls_back_to_default_and_others_keep_theirs(portico, echo, ca):
    mismatched = (ca.leaf(EXACT)[0], ca.leaf(EXACT)[1])
    expired = ca.leaf(OTHER, expired=True)
    p = portico(config(echo, ca, exact_pair=mismatched, other_pair=expired))
    for host in (EXACT, OTHER):
        assert "tls.test" not in peer_cert(p.https_port, host)
        assert https(p, host, ca)[3] != 0  # curl refuses the default certificate
    assert "DNS:*.wild.test" in peer_cert(p.https_port, "x.wild.test")
    assert https(p, "x.wild.test", ca)[0] == 200
    log = p.log()
    assert "does not match" in log and "expired" in log, log[-3000:]


def test_rotation_applies_to_new_handshakes_and_keeps_open_connections(portico, echo, ca):
    cfg = config(echo, ca)
    p = portico(cfg)
    before = peer_cert(p.https_port, EXACT)

    ctx = ssl.create_default_context(cafile=str(ca.cert))
    raw = socket.create_connection(("127.0.0.1", p.https_port), timeout=10)
    conn = ctx.wrap_socket(raw, server_hostname=EXACT)
    request = ("GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % EXACT).encode()

    def exchange():
        conn.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
        while len(body) < length:
            body += conn.recv(65536)
        return int(head.split()[1])

    assert exchange() == 200
    rotated = Config()
    rotated.objects = [o for o in cfg.objects if o["metadata"].get("name") != "exact" or o["kind"] != "Secret"]
    rotated.add(tls_secret("exact", *ca.leaf(EXACT)))
    t0 = time.monotonic()
    p.replace_config(rotated.yaml())
    wait_until(lambda: peer_cert(p.https_port, EXACT) != before, 5, interval=0.05, what="new certificate served")
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5, elapsed
    # The connection opened before the rotation still works, on its old session.
    assert exchange() == 200
    conn.close()


def test_certificate_expiry_is_exported(portico, echo, ca):
    pair = ca.leaf(EXACT, days=10)
    p = portico(config(echo, ca, exact_pair=pair))
    not_after = subprocess.run(["openssl", "x509", "-noout", "-enddate"], input=pair[0], capture_output=True, check=True)
    stamp = not_after.stdout.decode().strip().split("=", 1)[1]
    expected = datetime.datetime.strptime(stamp, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=datetime.timezone.utc).timestamp()
    got = p.metrics().get("portico_ssl_expire_time_seconds", host=EXACT, secret="default/exact")
    assert got == expected


PASS = "pass.tls.test"


class TlsBackend:
    """An HTTPS server with its own certificate, as a pod that terminates TLS itself:
    answers every GET with the server name its handshake saw and the path."""

    def __init__(self, d, cert, key):
        import http.server
        import threading

        (d / "backend.crt").write_bytes(cert)
        (d / "backend.key").write_bytes(key)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d / "backend.crt", d / "backend.key")
        seen = {}
        ctx.sni_callback = lambda sock, name, _ctx: seen.__setitem__("sni", name)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = ("tls-backend sni=%s path=%s" % (seen.get("sni"), self.path)).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.ip, self.port = "127.0.0.1", self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_ssl_passthrough_reaches_the_backends_own_tls(portico, echo, ca, tmp_path):
    """annotations.md "SSL Passthrough" and e2e `test/e2e/annotations/sslpassthrough.go`
    ("should pass unknown traffic to default backend and handle known traffic"): a
    handshake naming the passthrough host reaches the backend untouched (its
    certificate, its own TLS); every other name on the same port is still terminated
    by Portico with the Ingress's certificate."""
    backend_cert = ca.leaf(PASS)
    tls_app = TlsBackend(tmp_path, *backend_cert)
    try:
        cfg = config(echo, ca)
        cfg.backend("tlsapp", [tls_app], port=443)
        cfg.ingress(
            "pass",
            rules=[rule(PASS, path("/", "tlsapp", port=443))],
            annotations={"nginx.ingress.kubernetes.io/ssl-passthrough": "true"},
        )
        p = portico(cfg)
        # curl verifies the backend's certificate for the name: the TLS is the pod's.
        proc = subprocess.run(
            ["curl", "-sS", "--max-time", "15", "--cacert", str(ca.cert),
             "--resolve", "%s:%d:127.0.0.1" % (PASS, p.https_port), "https://%s:%d/deep/path?q=1" % (PASS, p.https_port)],
            capture_output=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.decode() == "tls-backend sni=%s path=/deep/path?q=1" % PASS
        served = peer_cert(p.https_port, PASS)
        backend_serial = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=backend_cert[0],
                                        capture_output=True, check=True).stdout.decode().strip()  # fmt: skip
        assert backend_serial in served, served
        # The same port, another name: Portico's TLS and routing, as before.
        status, _, headers, rc = https(p, EXACT, ca)
        assert (status, rc) == (200, 0), headers
        assert "CN=%s" % EXACT in peer_cert(p.https_port, EXACT).replace(" = ", "=")
        # A handshake with no name is not passed through either.
        rc, out = s_client(p.https_port, None)
        assert "CN=%s" % PASS not in out.replace(" = ", "="), out
        # The plain-HTTP port still routes the host's rules.
        r = p.get("/", host=PASS)
        assert r.status == 502, r  # the pod speaks only TLS
    finally:
        tls_app.close()


MTLS = "mtls.tls.test"


def client_pair(ca, tmp_path, name):
    """A client certificate and key signed by `ca`, as files for curl."""
    cert, key = ca.leaf(name)
    crt_file, key_file = tmp_path / ("%s.crt" % name), tmp_path / ("%s.key" % name)
    crt_file.write_bytes(cert)
    key_file.write_bytes(key)
    return cert, crt_file, key_file


def mtls_get(p, ca, *args):
    """curl over HTTPS to MTLS; (status, echoed request headers or None)."""
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "15", "--cacert", str(ca.cert), "--resolve", "%s:%d:127.0.0.1" % (MTLS, p.https_port),
         "-w", "\n%{http_code}", *args, "https://%s:%d/who" % (MTLS, p.https_port)],
        capture_output=True, timeout=30,
    )  # fmt: skip
    body, _, status = proc.stdout.decode(errors="replace").rpartition("\n")
    try:
        return int(status), json.loads(body)["headers"]
    except ValueError:
        return int(status), None


def dn(cert_pem, which):
    """openssl's RFC 2253 form of the certificate's subject or issuer, as nginx's
    `$ssl_client_s_dn` / `$ssl_client_i_dn` write it."""
    out = subprocess.run(["openssl", "x509", "-noout", "-" + which, "-nameopt", "RFC2253"], input=cert_pem,
                         capture_output=True, check=True).stdout.decode().strip()  # fmt: skip
    return out.split("=", 1)[1]


def test_client_certificates_are_checked_per_host(portico, echo, ca, tmp_path):
    """annotations.md "Client Certificate Authentication", e2e
    `test/e2e/annotations/authtls.go` and the template's `ssl-client-*` headers: the
    host's handshakes ask for a certificate from its CA; without one, or with one from
    another CA, the request is 400; with one, the endpoint is told `SUCCESS`, the
    subject and issuer DNs (RFC 2253, as openssl prints them) and, with
    `auth-tls-pass-certificate-to-upstream`, the URL-escaped PEM. Other hosts on the
    port are not asked for a certificate."""
    import urllib.parse

    cfg = config(echo, ca)
    ca_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "client-ca", "namespace": "default"},
                 "type": "Opaque", "data": {"ca.crt": base64.b64encode(ca.cert.read_bytes()).decode()}}  # fmt: skip
    cfg.add(ca_secret)
    cfg.add(tls_secret("mtls", *ca.leaf(MTLS)))
    tls_ingress(cfg, "mtls", [MTLS], "mtls", annotations={
        "nginx.ingress.kubernetes.io/auth-tls-secret": "default/client-ca",
        "nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream": "true",
    })  # fmt: skip
    p = portico(cfg)
    alice, alice_crt, alice_key = client_pair(ca, tmp_path, "alice")
    status, headers = mtls_get(p, ca, "--cert", str(alice_crt), "--key", str(alice_key), "-H", "ssl-client-verify: FORGED")
    assert status == 200, headers
    assert headers["ssl-client-verify"] == "SUCCESS", headers
    assert headers["ssl-client-subject-dn"] == dn(alice, "subject"), headers
    assert headers["ssl-client-issuer-dn"] == dn(alice, "issuer"), headers
    pem = subprocess.run(["openssl", "x509"], input=alice, capture_output=True, check=True).stdout.decode()
    assert headers["ssl-client-cert"] == urllib.parse.quote(pem, safe="-._~"), headers

    # No certificate: 400, as nginx's 496; a certificate from another CA: 400 (495).
    assert mtls_get(p, ca)[0] == 400
    (tmp_path / "other-ca").mkdir()
    other = CA(tmp_path / "other-ca")
    _, stranger_crt, stranger_key = client_pair(other, tmp_path, "mallory")
    assert mtls_get(p, ca, "--cert", str(stranger_crt), "--key", str(stranger_key))[0] == 400

    # The handshake names the CA for this host only.
    rc, out = s_client(p.https_port, MTLS)
    assert "Acceptable client certificate CA names" in out and "Portico Test CA" in out, out
    rc, out = s_client(p.https_port, EXACT)
    assert "No client certificate CA names sent" in out, out
    status, _, headers_text, rc = https(p, EXACT, ca)
    assert (status, rc) == (200, 0), headers_text
