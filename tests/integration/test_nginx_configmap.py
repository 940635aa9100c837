"""ingress-nginx's controller ConfigMap read with `--configmap` (file mode: the ConfigMap
of the file), against real clients. Each test names the ingress-nginx document or e2e
test (kubernetes/ingress-nginx: `docs/user-guide/nginx-configuration/configmap.md`,
`test/e2e/settings/*.go`, the template `rootfs/etc/nginx/template/nginx.tmpl`) it
follows."""

import http.client
import json
import re
import socket
import ssl
import struct
import subprocess
import time
import urllib.parse
from types import SimpleNamespace

import pytest

from harness import ByteLogBackend, raw_exchange, read_head, staggered, wait_until
from k8s import Config, path, rule
from test_nginx_annotations import quick_statuses
from test_route import failing  # noqa: F401 (the fixture)
from test_tls import CA, https, s_client, tls_secret

HOST = "cm.example.com"
A = "nginx.ingress.kubernetes.io/"
CM = ("ingress-nginx", "ingress-nginx-controller")
CM_ARG = ("--configmap", "%s/%s" % CM)


def config(echo, data, annotations=None):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("web", rules=[rule(HOST, path("/", "web"))], annotations=annotations or {})
    if data is not None:
        cfg.add(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"namespace": CM[0], "name": CM[1]},
                "data": data,
            }
        )
    return cfg


FORCE_SSL = {A + "force-ssl-redirect": "true"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return CA(tmp_path_factory.mktemp("ca"))


def tls_config(echo, pair, data):
    """`config` with HOST in `spec.tls`, served with the certificate `pair`."""
    cfg = config(echo, data)
    cfg.add(tls_secret("cm-tls", *pair))
    for obj in cfg.objects:
        if obj["kind"] == "Ingress":
            obj["spec"]["tls"] = [{"hosts": [HOST], "secretName": "cm-tls"}]
    return cfg


def sts(p, ca):
    """The Strict-Transport-Security values of an HTTPS response for HOST."""
    status, _, headers, _ = https(p, HOST, ca)
    assert status == 200, headers
    return re.findall(r"(?im)^strict-transport-security: *(.*?)\r?$", headers)


def test_hsts_keys_shape_the_header_and_are_live(portico, echo, ca):
    """configmap.md `hsts`, `hsts-max-age`, `hsts-include-subdomains`, `hsts-preload`
    and e2e `settings/tls.go` "should configure HSTS policy header": `max-age=86400;
    includeSubDomains`, then `max-age=86400`, then `max-age=86400; preload`, one header
    each time; `hsts: "false"` drops it. Each change is a rewrite of the ConfigMap in
    the running process, which picks it up without a restart."""
    pair = ca.leaf(HOST)
    p = portico(tls_config(echo, pair, {"hsts-max-age": "86400"}), *CM_ARG)
    assert sts(p, ca) == ["max-age=86400; includeSubDomains"]
    steps = [
        ({"hsts-max-age": "86400", "hsts-include-subdomains": "false"}, ["max-age=86400"]),
        ({"hsts-max-age": "86400", "hsts-include-subdomains": "false", "hsts-preload": "true"}, ["max-age=86400; preload"]),
        ({"hsts": "false", "hsts-max-age": "86400"}, []),
        ({}, ["max-age=31536000; includeSubDomains"]),
    ]
    for data, want in steps:
        p.replace_config(tls_config(echo, pair, data).yaml())
        wait_until(lambda: sts(p, ca) == want, 10, what="HSTS %r" % want)


def test_hsts_key_beats_the_flag(portico, echo, ca):
    """The ConfigMap is the source of truth: `hsts: "true"` sends the header although
    `--hsts=false` was given (ingress-nginx has no such flag; its default is on)."""
    p = portico(tls_config(echo, ca.leaf(HOST), {"hsts": "true"}), *CM_ARG, "--hsts", "false")
    assert sts(p, ca) == ["max-age=31536000; includeSubDomains"]


def test_forwarded_https_from_the_load_balancer_is_not_redirected_again(portico, echo):
    """configmap.md `use-forwarded-headers` and e2e `forwarded_headers.go` "should
    trust X-Forwarded headers when setting is true": behind a TLS-terminating load
    balancer, `X-Forwarded-Proto: https` means the request is HTTPS (the template's
    `$pass_access_scheme`, which `force-ssl-redirect` reads), so it is served, not
    redirected in a loop; the endpoint sees the forwarded scheme, host and port."""
    p = portico(config(echo, {"use-forwarded-headers": "true"}, FORCE_SSL), *CM_ARG)
    lb = ["X-Forwarded-Proto: https", "X-Forwarded-Host: shop.example.org", "X-Forwarded-Port: 443"]
    r = p.get("/a", host=HOST, headers=lb + ["X-Forwarded-For: 203.0.113.9"])
    assert r.status == 200, r
    seen = r.json()["headers"]
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "shop.example.org"
    assert seen["x-forwarded-port"] == "443"
    # The client behind the load balancer, as nginx's real_ip module sets it.
    assert seen["x-forwarded-for"] == "203.0.113.9"
    assert seen["x-real-ip"] == "203.0.113.9"
    # Plain HTTP through the same load balancer is still redirected.
    r = p.get("/a", host=HOST, headers=["X-Forwarded-Proto: http"])
    assert r.status == 308
    assert r.header("location").startswith("https://%s" % HOST)


def test_forwarded_headers_are_not_believed_by_default(portico, echo):
    """e2e `forwarded_headers.go` "should not trust X-Forwarded headers when setting is
    false": without the key, a client's `X-Forwarded-Proto: https` neither skips the
    redirect nor reaches the endpoint, and its address is the connection's."""
    p = portico(config(echo, {}, FORCE_SSL), *CM_ARG)
    assert p.get("/a", host=HOST, headers=["X-Forwarded-Proto: https"]).status == 308
    p2 = portico(config(echo, {}), *CM_ARG)
    seen = p2.get("/a", host=HOST, headers=["X-Forwarded-Proto: https", "X-Forwarded-For: 203.0.113.9"]).json()[
        "headers"
    ]
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-for"] == "127.0.0.1"


def test_a_peer_outside_proxy_real_ip_cidr_is_believed_in_nothing(portico, echo):
    """configmap.md `proxy-real-ip-cidr` (nginx's `set_real_ip_from`): the test client
    at 127.0.0.1 is not in 198.18.0.0/15, so its forwarded headers change nothing."""
    data = {"use-forwarded-headers": "true", "proxy-real-ip-cidr": "198.18.0.0/15"}
    p = portico(config(echo, data, FORCE_SSL), *CM_ARG)
    assert p.get("/a", host=HOST, headers=["X-Forwarded-Proto: https"]).status == 308


def test_compute_full_forwarded_for_appends_the_peer(portico, echo):
    """configmap.md `compute-full-forwarded-for` (the template's
    `$full_x_forwarded_for`): the endpoint gets the client's list with the peer
    appended; `forwarded-for-header` names where the client address is read."""
    data = {
        "use-forwarded-headers": "true",
        "compute-full-forwarded-for": "true",
        "forwarded-for-header": "X-Original-Forwarded-For",
    }
    p = portico(config(echo, data), *CM_ARG)
    r = p.get(
        "/a",
        host=HOST,
        headers=["X-Forwarded-For: 198.51.100.1", "X-Original-Forwarded-For: 203.0.113.4"],
    )
    seen = r.json()["headers"]
    assert seen["x-forwarded-for"] == "198.51.100.1, 127.0.0.1"
    assert seen["x-real-ip"] == "203.0.113.4"


def test_the_real_ip_counts_for_source_ranges(portico, echo):
    """configmap.md `enable-real-ip`: the address from `X-Forwarded-For` is the one
    `whitelist-source-range` checks (the template's `$remote_addr` after real_ip)."""
    allow = {A + "whitelist-source-range": "203.0.113.0/24"}
    p = portico(config(echo, {"enable-real-ip": "true"}, allow), *CM_ARG)
    assert p.get("/a", host=HOST, headers=["X-Forwarded-For: 203.0.113.9"]).status == 200
    assert p.get("/a", host=HOST, headers=["X-Forwarded-For: 198.51.100.9"]).status == 403
    assert p.get("/a", host=HOST).status == 403


def test_a_changed_config_map_is_live_without_a_restart(portico, echo):
    """The ConfigMap is watched like any object: rewriting it turns the setting on and
    off in the running process (ingress-nginx reloads nginx for this)."""
    p = portico(config(echo, {}, FORCE_SSL), *CM_ARG)
    https = ["X-Forwarded-Proto: https"]
    assert p.get("/a", host=HOST, headers=https).status == 308
    p.replace_config(config(echo, {"use-forwarded-headers": "true"}, FORCE_SSL).yaml())
    wait_until(lambda: p.get("/a", host=HOST, headers=https).status == 200, 10, what="the new ConfigMap")
    p.replace_config(config(echo, None, FORCE_SSL).yaml())
    wait_until(lambda: p.get("/a", host=HOST, headers=https).status == 308, 10, what="the ConfigMap removed")
    assert "ConfigMapNotFound" in p.log()


def test_proxy_body_size_is_the_default_the_annotation_overrides(portico, echo):
    """configmap.md `proxy-body-size` (nginx's `client_max_body_size`, the global
    default of annotations.md "Custom max body size"): 8 KiB from the ConfigMap passes
    and one byte more is 413, although `--max-body-size 1m` was given; an Ingress whose
    annotation says 16k takes 12 KiB."""
    cfg = config(echo, {"proxy-body-size": "8k"})
    cfg.ingress("big", rules=[rule("big." + HOST, path("/", "web"))], annotations={A + "proxy-body-size": "16k"})
    p = portico(cfg, *CM_ARG, "--max-body-size", "1m")
    r = p.get("/", host=HOST, data=b"x" * 8192)
    assert r.status == 200 and r.json()["body_length"] == 8192
    assert p.get("/", host=HOST, data=b"x" * 8193).status == 413
    assert p.get("/", host="big." + HOST, data=b"x" * 12288).status == 200
    assert p.get("/", host="big." + HOST, data=b"x" * 16385).status == 413


def test_proxy_read_timeout_is_the_default_the_annotation_overrides(portico, echo):
    """configmap.md `proxy-read-timeout` (nginx's `proxy_read_timeout`, e2e
    `settings/proxy_read_timeout.go`): with "1", an endpoint that answers after 3 s is
    a 504 after about a second, although `--upstream-timeout 60s` was given; an
    Ingress's `proxy-read-timeout: "5"` annotation waits for it. `proxy-send-timeout`
    (e2e `settings/proxy_send_timeout.go`) bounds writes to an upgraded connection's
    endpoint: the route's timeouts, as `/explain` on the admin port shows them."""
    cfg = config(echo, {"proxy-read-timeout": "1", "proxy-send-timeout": "7"})
    cfg.ingress("patient", rules=[rule("patient." + HOST, path("/", "web"))], annotations={A + "proxy-read-timeout": "5"})
    p = portico(cfg, *CM_ARG, "--upstream-timeout", "60s")
    t = time.monotonic()
    r = p.get("/sleep/3", host=HOST)
    took = time.monotonic() - t
    assert r.status == 504 and 0.9 < took < 2.5, (r.status, took)
    assert p.get("/sleep/2", host="patient." + HOST).status == 200
    status, body = p.admin("/explain?" + urllib.parse.urlencode({"host": HOST, "path": "/"}))
    assert status == 200, body
    timeouts = [f["detail"] for f in json.loads(body)["filters"] if f["filter"] == "proxy-timeouts"]
    assert timeouts and "read 1s, send 7s" in timeouts[0], body


def test_whitelist_source_range_is_the_default_the_annotation_overrides(portico, echo):
    """configmap.md `whitelist-source-range` (ingress-nginx's `ipallowlist` parser
    takes the ConfigMap's list when an Ingress has no annotation): the test client at
    127.0.0.1 is outside 203.0.113.0/24, so 403; an Ingress whose own annotation lists
    127.0.0.1 serves it."""
    cfg = config(echo, {"whitelist-source-range": "203.0.113.0/24"})
    cfg.ingress("local", rules=[rule("local." + HOST, path("/", "web"))], annotations={A + "whitelist-source-range": "127.0.0.1/32"})
    p = portico(cfg, *CM_ARG)
    assert p.get("/a", host=HOST).status == 403
    assert p.get("/a", host="local." + HOST).status == 200


def test_denylist_source_range_is_the_default_the_annotation_overrides(portico, echo):
    """configmap.md `denylist-source-range` (the `ipdenylist` parser, as the allow
    list): 127.0.0.1 denied by the ConfigMap is 403; an Ingress whose annotation denies
    only 203.0.113.0/24 serves it."""
    cfg = config(echo, {"denylist-source-range": "127.0.0.1"})
    cfg.ingress("other", rules=[rule("other." + HOST, path("/", "web"))], annotations={A + "denylist-source-range": "203.0.113.0/24"})
    p = portico(cfg, *CM_ARG)
    assert p.get("/a", host=HOST).status == 403
    assert p.get("/a", host="other." + HOST).status == 200


def test_a_broken_whitelist_source_range_refuses_rather_than_serves_everyone(portico, echo):
    """ingress-nginx's `ipallowlist` parser takes the ConfigMap's list for an Ingress
    without the annotation and, when it does not parse (`net.ParseIPNets`), denies
    the location: an allow list with a typo must not open the Ingress to everyone.
    The Ingress without its own list answers 503; the one with its own list is
    unaffected and serves 127.0.0.1."""
    cfg = config(echo, {"whitelist-source-range": "203.0.113.0/24,office"})
    cfg.ingress("local", rules=[rule("local." + HOST, path("/", "web"))], annotations={A + "whitelist-source-range": "127.0.0.1/32"})
    p = portico(cfg, *CM_ARG)
    assert p.get("/a", host=HOST).status == 503
    assert p.get("/a", host="local." + HOST).status == 200


def test_limit_req_status_code_is_the_status_of_refused_requests(portico, echo):
    """configmap.md `limit-req-status-code` (nginx's `limit_req_status`): with "429",
    `limit-rps: "1"` (burst 5) lets 6 quick requests through and answers the rest
    429, not the default 503."""
    p = portico(config(echo, {"limit-req-status-code": "429"}, {A + "limit-rps": "1"}), *CM_ARG)
    statuses = quick_statuses(p, 12, HOST)
    assert statuses[:6] == [200] * 6, statuses
    assert set(statuses) == {200, 429} and statuses.count(429) >= 4, statuses


def test_unknown_keys_and_bad_values_are_reported_and_the_rest_applies(portico, echo):
    """Every key that is not read or does not parse is named in the log with its
    reason and counted in `portico_diagnostics`; the good keys still apply."""
    data = {
        "use-forwarded-headers": "true",
        "compute-full-forwarded-for": "maybe",
        "use-gzip": "true",
        "no-such-key": "1",
        "http-snippet": "return 200;",
    }
    p = portico(config(echo, data, FORCE_SSL), *CM_ARG)
    assert p.get("/a", host=HOST, headers=["X-Forwarded-Proto: https"]).status == 200
    log = p.log()
    for reason, key in [
        ("InvalidConfigValue", "compute-full-forwarded-for"),
        ("UnsupportedConfigKey", "use-gzip"),
        ("UnknownConfigKey", "no-such-key"),
        ("SnippetRefused", "http-snippet"),
    ]:
        assert reason in log and key in log, (reason, key)
    m = p.metrics()
    assert m.get("portico_diagnostics", reason="UnknownConfigKey") >= 1


# --- use-proxy-protocol --------------------------------------------------------------
# configmap.md#use-proxy-protocol and e2e `test/e2e/settings/proxy_protocol.go`: with
# the key on, every connection on the Ingress listeners starts with HAProxy's PROXY
# protocol header (nginx's `listen 80 proxy_protocol`), whose address is the client's.

PROXY_PROTOCOL = {"use-proxy-protocol": "true"}
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(client, server, ports):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (client, server, *ports)).encode()


def proxy_v2(client, server, ports, local=False):
    """A v2 header: PROXY (or LOCAL) over TCP/IPv4, with a NOOP TLV after the
    addresses, as load balancers add TLVs of their own."""
    addresses = socket.inet_aton(client) + socket.inet_aton(server) + struct.pack("!HH", *ports)
    tlv = b"\x04\x00\x03abc"
    body = addresses + tlv
    return V2_SIGNATURE + bytes([0x20 if local else 0x21, 0x11]) + struct.pack("!H", len(body)) + body


def request_over(sock, host=HOST, path="/a"):
    """One HTTP/1.1 request on an open (plain or TLS) socket: (status, headers, body)."""
    sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def seen_by_echo(body):
    return json.loads(body)["headers"]


def test_proxy_protocol_v1_and_v2_name_the_client(portico, echo):
    """e2e `proxy_protocol.go` "should respect port passed by the PROXY Protocol": the
    header's source address is `X-Forwarded-For` and `X-Real-IP` (nginx's
    `real_ip_header proxy_protocol`, the test client being inside the default
    `proxy-real-ip-cidr`), its destination port `X-Forwarded-Port`
    (`$proxy_protocol_server_port`), and the scheme stays http. v1 and v2 alike; the
    header and the request in one segment or two."""
    p = portico(config(echo, PROXY_PROTOCOL), *CM_ARG)
    for header, client in [
        (proxy_v1("192.168.0.1", "192.168.0.11", (56324, 1234)), "192.168.0.1"),
        (proxy_v2("203.0.113.7", "192.168.0.11", (40000, 1234)), "203.0.113.7"),
    ]:
        for split in (False, True):
            with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
                s.sendall(header)
                if split:
                    time.sleep(0.05)
                status, _, body = request_over(s)
            assert status == 200, (header, split)
            seen = seen_by_echo(body)
            assert seen["x-forwarded-for"] == client
            assert seen["x-real-ip"] == client
            assert seen["x-forwarded-port"] == "1234"
            assert seen["x-forwarded-proto"] == "http"


def test_proxy_protocol_comes_before_the_tls_handshake(portico, echo):
    """e2e `proxy_protocol.go` "should enable PROXY Protocol for HTTPS": on the HTTPS
    listener the header comes first, then the TLS handshake, and the address it names
    is the client's for the request inside."""
    p = portico(config(echo, PROXY_PROTOCOL), *CM_ARG)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for header in (proxy_v1("192.168.0.1", "192.168.0.11", (56324, 443)), proxy_v2("192.168.0.1", "192.168.0.11", (56324, 443))):
        with socket.create_connection((p.ip, p.https_port), timeout=10) as raw:
            raw.sendall(header)
            with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                status, _, body = request_over(s)
        assert status == 200
        seen = seen_by_echo(body)
        assert seen["x-forwarded-for"] == "192.168.0.1"
        assert seen["x-forwarded-proto"] == "https"


def test_proxy_protocol_port_443_means_https_behind_a_tls_terminating_load_balancer(portico, echo):
    """e2e `proxy_protocol.go` "should respect proto passed by the PROXY Protocol server
    port" and ingress-nginx's `lua_ingress.lua` (`proxy_protocol_server_port == "443"`
    makes `$pass_access_scheme` https): a load balancer that terminates TLS on 443 and
    passes plain HTTP on with a PROXY header is not redirected to HTTPS again by
    `force-ssl-redirect` (the redirect loop); a request it took on port 80 is."""
    p = portico(config(echo, PROXY_PROTOCOL, FORCE_SSL), *CM_ARG)
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(proxy_v2("192.168.0.1", "192.168.0.11", (56324, 443)))
        status, _, body = request_over(s)
    assert status == 200
    seen = seen_by_echo(body)
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-port"] == "443"
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(proxy_v2("192.168.0.1", "192.168.0.11", (56324, 80)))
        status, headers, _ = request_over(s)
    assert status == 308
    assert headers["location"].startswith("https://%s" % HOST)


def test_a_connection_without_the_header_is_closed_unserved(portico, echo):
    """nginx with `listen ... proxy_protocol` closes a connection whose first bytes are
    not a PROXY header ("broken header"): a plain request is not proxied, a TLS
    ClientHello gets no handshake, and each is counted by reason."""
    p = portico(config(echo, PROXY_PROTOCOL), *CM_ARG)
    before = echo.a.stats()["requests"]
    data, closed = raw_exchange(p.ip, p.http_port, b"GET /a HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode(), timeout=5)
    assert data == b"" and closed
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((p.ip, p.https_port), timeout=5) as raw:
        try:
            ctx.wrap_socket(raw, server_hostname=HOST).close()
            handshake = True
        except (ssl.SSLError, OSError):
            handshake = False
    assert not handshake
    # Only the second /stats request reached the endpoint.
    assert echo.a.stats()["requests"] == before + 1
    m = p.metrics()
    assert m.get("portico_proxy_protocol_errors_total", reason="invalid") == 2
    # A load balancer's health check (v2 LOCAL) keeps the socket's address.
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(proxy_v2("192.168.0.1", "192.168.0.11", (1, 80), local=True))
        status, _, body = request_over(s)
    assert status == 200
    assert seen_by_echo(body)["x-forwarded-for"] == "127.0.0.1"


def test_a_slow_header_times_out(portico, echo):
    """configmap.md#proxy-protocol-header-timeout: a client that has not sent a whole
    header within the timeout (here 500ms, in Go's duration syntax) is closed; one that
    sends it in time is served."""
    p = portico(config(echo, dict(PROXY_PROTOCOL, **{"proxy-protocol-header-timeout": "500ms"})), *CM_ARG)
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(b"PROXY TCP4 192.168.0.1 ")
        started = time.monotonic()
        assert s.recv(1) == b""
        waited = time.monotonic() - started
    assert 0.4 < waited < 3, waited
    assert p.metrics().get("portico_proxy_protocol_errors_total", reason="timeout") == 1


def test_proxy_protocol_from_an_untrusted_peer_names_no_client(portico, echo):
    """configmap.md#proxy-real-ip-cidr with the PROXY protocol (the template's
    `set_real_ip_from` next to `real_ip_header proxy_protocol`): the header is still
    required, but a peer outside the trusted networks does not choose the client
    address."""
    data = dict(PROXY_PROTOCOL, **{"proxy-real-ip-cidr": "198.18.0.0/15"})
    p = portico(config(echo, data), *CM_ARG)
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        s.sendall(proxy_v1("192.168.0.1", "192.168.0.11", (56324, 80)))
        status, _, body = request_over(s)
    assert status == 200
    assert seen_by_echo(body)["x-forwarded-for"] == "127.0.0.1"


# ingress-nginx's `--default-backend-service` (docs/user-guide/default-backend.md,
# e2e `test/e2e/defaultbackend/custom_default_backend.go` "uses custom default
# backend", the template's default server `_` and the `/` location it gives servers
# without one) and configmap.md#custom-http-errors (its custom error locations): the
# Service answers what no rule matches, and the ConfigMap's codes are replaced by its
# answer on every path without the annotation.
DEFAULT_BACKEND_ARG = ("--default-backend-service", "default/errors")


def test_default_backend_service_answers_what_no_rule_matches(portico, echo, backends):
    errors = backends.echo("errors")
    cfg = config(echo, {"custom-http-errors": "404,503"})
    cfg.backend("errors", [errors])
    cfg.ingress("api", rules=[rule("api." + HOST, path("/v1", "web", kind="Exact"))])
    p = portico(cfg, *CM_ARG, *DEFAULT_BACKEND_ARG)
    # An unknown host, and a path of a known host no rule matches: the default backend.
    for host, target in [("unknown.example.org", "/"), ("api." + HOST, "/other")]:
        r = p.get(target, host=host)
        assert r.status == 200 and r.json()["backend"] == "errors", (host, r)
    # A rule's own answer with a listed code: the default backend's page, with the codes'
    # headers (the template's custom error location).
    r = p.get("/status/404", host=HOST, headers=["Accept: text/html"])
    seen = r.json()
    assert seen["backend"] == "errors" and seen["headers"]["x-code"] == "404", seen
    assert seen["headers"]["x-format"] == "text/html", seen
    assert (seen["headers"]["x-ingress-name"], seen["headers"]["x-service-name"]) == ("web", "web"), seen
    # Other codes pass.
    assert p.get("/status/500", host=HOST).status == 500
    assert p.get("/", host=HOST).json()["backend"] == "a"


def test_without_default_backend_service_unmatched_requests_get_404(portico, echo):
    p = portico(config(echo, {"custom-http-errors": "404"}), *CM_ARG)
    assert p.get("/", host="unknown.example.org").status == 404
    # The key has nothing to send the errors to: the answer is the rule's own.
    r = p.get("/status/404", host=HOST)
    assert r.status == 404 and r.json()["backend"] == "a", r


# --- keys that are the defaults of annotations of the same names ---------------------


def test_ssl_redirect_false_serves_plain_http_on_tls_hosts(portico, echo, ca):
    """configmap.md#ssl-redirect (the `sslredirect` annotation parser falls back on the
    ConfigMap's value): with "false", plain HTTP to a host with TLS is served, where
    the default answers 308; an Ingress's own `ssl-redirect: "true"` still redirects."""
    cfg = tls_config(echo, ca.leaf(HOST), {"ssl-redirect": "false"})
    cfg.add(tls_secret("own-tls", *ca.leaf("own." + HOST)))
    cfg.ingress(
        "own",
        rules=[rule("own." + HOST, path("/", "web"))],
        annotations={A + "ssl-redirect": "true"},
    )
    for obj in cfg.objects:
        if obj["kind"] == "Ingress" and obj["metadata"]["name"] == "own":
            obj["spec"]["tls"] = [{"hosts": ["own." + HOST], "secretName": "own-tls"}]
    p = portico(cfg, *CM_ARG)
    r = p.get("/a", host=HOST)
    assert r.status == 200 and r.json()["backend"] == "a", r
    assert p.get("/a", host="own." + HOST).status == 308


def test_force_ssl_redirect_and_http_redirect_code(portico, echo):
    """configmap.md#force-ssl-redirect and #http-redirect-code (`lua_ingress.lua`
    redirects with `config.http_redirect_code`, default 308): the key redirects plain
    HTTP on a host without TLS, with the ConfigMap's 301; an Ingress whose
    `force-ssl-redirect` annotation says "false" is served. A code ingress-nginx does
    not accept (303) is reported and 308 stays."""
    cfg = config(echo, {"force-ssl-redirect": "true", "http-redirect-code": "301"})
    cfg.ingress("plain", rules=[rule("plain." + HOST, path("/", "web"))], annotations={A + "force-ssl-redirect": "false"})
    p = portico(cfg, *CM_ARG)
    r = p.get("/a?b=1", host=HOST)
    assert r.status == 301, r
    location = r.header("location")
    assert location.startswith("https://%s" % HOST) and location.endswith("/a?b=1"), location
    assert p.get("/a", host="plain." + HOST).status == 200
    p.replace_config(config(echo, {"force-ssl-redirect": "true", "http-redirect-code": "303"}).yaml())
    wait_until(lambda: p.get("/a", host=HOST).status == 308, 10, what="the default code")
    assert "http-redirect-code" in p.log()


def test_http_redirect_code_is_the_www_redirect_status(portico, echo):
    """nginx.tmpl's from-to-www server: `return {{ $all.Cfg.HTTPRedirectCode }}
    $redirect_to`: `from-to-www-redirect` answers with the ConfigMap's 302."""
    cfg = config(echo, {"http-redirect-code": "302"}, {A + "from-to-www-redirect": "true"})
    for obj in cfg.objects:
        if obj["kind"] == "Ingress":
            obj["spec"]["rules"][0]["host"] = "www." + HOST
    p = portico(cfg, *CM_ARG)
    r = p.get("/a", host=HOST)
    assert r.status == 302, r
    assert re.fullmatch(r"http://www\.%s(:\d+)?/a" % re.escape(HOST), r.header("location")), r.header("location")


def test_service_upstream_key_sends_every_ingress_to_the_cluster_ip(portico, echo):
    """configmap.md#service-upstream and e2e `settings/global_service_upstream.go`:
    with "true", requests go to the Service's cluster IP and port (127.0.0.1 and echo
    a's port), not to its endpoint (echo b); an Ingress whose annotation says "false"
    goes to the endpoint."""
    cfg = config(echo, {"service-upstream": "true"})
    cfg.objects = [o for o in cfg.objects if o["kind"] != "Ingress"]
    cfg.backend("svc", [echo.b], port=echo.a.port)
    for obj in cfg.objects:
        if obj["kind"] == "Service" and obj["metadata"]["name"] == "svc":
            obj["spec"]["clusterIP"] = "127.0.0.1"
    cfg.ingress("up", rules=[rule(HOST, path("/", "svc", port=echo.a.port))])
    cfg.ingress(
        "eps",
        rules=[rule("eps." + HOST, path("/", "svc", port=echo.a.port))],
        annotations={A + "service-upstream": "false"},
    )
    p = portico(cfg, *CM_ARG)
    assert {p.get("/", host=HOST).json()["backend"] for _ in range(4)} == {"a"}
    assert {p.get("/", host="eps." + HOST).json()["backend"] for _ in range(4)} == {"b"}


def test_proxy_next_upstream_keys_retry_every_ingress(portico, echo, failing):
    """configmap.md#proxy-next-upstream, #proxy-next-upstream-tries and e2e
    `settings/proxy_next_upstream.go` ("should build proxy next upstream using
    configmap values"): with `error timeout http_503`, a request that one of two
    endpoints answers 503 is passed to the other: 40 GETs all succeed. An Ingress
    whose own `proxy-next-upstream-tries: "1"` allows no second try shows the 503s."""
    bad = failing("503")
    data = {"proxy-next-upstream": "error timeout http_503", "proxy-next-upstream-tries": "3"}
    cfg = config(echo, data)
    cfg.objects = [o for o in cfg.objects if o["kind"] != "Ingress"]
    cfg.backend("flaky", [echo.a, (bad.ip, bad.port)])
    cfg.ingress("retry", rules=[rule(HOST, path("/", "flaky"))])
    cfg.ingress("once", rules=[rule("once." + HOST, path("/", "flaky"))], annotations={A + "proxy-next-upstream-tries": "1"})
    p = portico(cfg, *CM_ARG)
    statuses = [p.get("/", host=HOST).status for _ in range(40)]
    assert statuses == [200] * 40, statuses
    assert bad.hits >= 5, "the failing endpoint was really tried"
    once = [p.get("/", host="once." + HOST).status for _ in range(20)]
    assert 503 in once, once


def test_load_balance_ewma_avoids_a_busy_endpoint(portico, echo, failing):
    """configmap.md#load-balance (e2e `settings/load_balance.go`): "ewma" prefers the
    endpoint that answers sooner (Portico: fewest requests in flight): while one
    endpoint sits on its requests for 2 s, nearly all of 20 go to the other, where the
    default round robin gives it half."""
    slow = failing("slow")
    cfg = config(echo, {"load-balance": "ewma"})
    cfg.objects = [o for o in cfg.objects if o["kind"] != "Ingress"]
    cfg.backend("two", [echo.a, (slow.ip, slow.port)])
    cfg.ingress("lb", rules=[rule(HOST, path("/", "two"))])
    p = portico(cfg, *CM_ARG)
    results = staggered(20, lambda: p.get("/", host=HOST).status)
    assert results.count(200) == 20, results
    assert slow.hits <= 3, "the busy endpoint got %d of 20" % slow.hits


def test_limit_conn_status_code_is_the_status_of_refused_requests(portico, echo):
    """configmap.md#limit-conn-status-code (nginx's `limit_conn_status`): with "429",
    `limit-connections: "1"` answers a second request in flight 429, not 503."""
    import concurrent.futures

    p = portico(config(echo, {"limit-conn-status-code": "429"}, {A + "limit-connections": "1"}), *CM_ARG)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        in_flight = pool.submit(lambda: p.get("/sleep/1.5", host=HOST).status)
        time.sleep(0.5)
        assert quick_statuses(p, 1, HOST) == [429]
        assert in_flight.result() == 200


def test_proxy_request_buffering_off_streams_the_body(portico):
    """configmap.md#proxy-request-buffering (nginx's `proxy_request_buffering`): with
    "off", the head and the first bytes of a body reach the endpoint before the
    client has sent the rest, although `--proxy-request-buffering` is on by default."""
    be = ByteLogBackend()
    try:
        cfg = Config()
        cfg.backend("raw", [be])
        cfg.ingress("raw", rules=[rule(HOST, path("/", "raw"))])
        cfg.add(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"namespace": CM[0], "name": CM[1]},
                "data": {"proxy-request-buffering": "off"},
            }
        )
        p = portico(cfg, *CM_ARG)
        with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
            s.sendall(b"POST /up HTTP/1.1\r\nHost: %s\r\nContent-Length: 11\r\n\r\nhello" % HOST.encode())
            wait_until(lambda: be.received.endswith(b"\r\n\r\nhello"), 5, what="the first bytes streamed")
            s.sendall(b" world")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        be.close()


def test_block_cidrs_refuses_on_every_ingress(portico, echo):
    """configmap.md#block-cidrs and e2e `settings/global_access_block.go` ("should
    block CIDRs defined in the ConfigMap"; the template's `deny` in `http`): the test
    client at 127.0.0.1 gets 403 on every Ingress, one with its own
    `whitelist-source-range` naming it included; a list without it serves it."""
    cfg = config(echo, {"block-cidrs": "172.16.0.0/12, 127.0.0.0/8"})
    cfg.ingress("own", rules=[rule("own." + HOST, path("/", "web"))], annotations={A + "whitelist-source-range": "127.0.0.1/32"})
    p = portico(cfg, *CM_ARG)
    assert p.get("/a", host=HOST).status == 403
    assert p.get("/a", host="own." + HOST).status == 403
    p.replace_config(config(echo, {"block-cidrs": "172.16.0.0/12,10.0.0.0/8"}).yaml())
    wait_until(lambda: p.get("/a", host=HOST).status == 200, 10, what="the new list")


# --- client and endpoint keep-alive, request heads -------------------------------------
# configmap.md#keep-alive, #keep-alive-requests, #large-client-header-buffers and
# #upstream-keepalive-*; the template sets nginx's `keepalive_timeout`,
# `keepalive_requests`, `large_client_header_buffers` in `http` and `keepalive`,
# `keepalive_timeout`, `keepalive_requests` in each `upstream`.


def connects(p, n, *curl_args):
    """`n` requests for HOST in one curl run, which keeps its connection while the
    server lets it: how many connections each request opened (curl's num_connects)."""
    url = "http://%s:%d/ka" % (HOST, p.http_port)
    argv = ["curl", "-sS", "--max-time", "20", "--resolve", "%s:%d:127.0.0.1" % (HOST, p.http_port)]
    argv += [*curl_args, "-w", "%{http_code} %{num_connects}\n"]
    out = subprocess.run(argv + [url, "-o", "/dev/null"] * n, capture_output=True, timeout=40, check=True).stdout.decode()
    rows = [line.split() for line in out.splitlines()]
    assert [code for code, _ in rows] == ["200"] * n, out
    return [int(c) for _, c in rows]


@pytest.mark.parametrize(
    "protocol", [("--http1.1",), ("--http1.1", "--data-binary", "body")], ids=["http1", "http1-with-bodies"]
)
def test_keep_alive_requests_ends_a_connection_after_that_many(portico, echo, protocol):
    """configmap.md#keep-alive-requests (nginx `keepalive_requests`): with 2, five
    requests take three connections, each connection's second response saying
    `Connection: close`; requests with bodies (served by hyper) count the same. Live:
    the key removed, the flag's 1000 holds again."""
    p = portico(config(echo, {"keep-alive-requests": "2"}), *CM_ARG)
    assert connects(p, 5, *protocol) == [1, 0, 1, 0, 1]
    p.replace_config(config(echo, {}).yaml())
    wait_until(lambda: connects(p, 5, *protocol) == [1, 0, 0, 0, 0], 10, what="the key removed")


class H2:
    """A prior-knowledge HTTP/2 connection sending one GET at a time, reading frame by
    frame: what a test needs to see a GOAWAY arrive between requests."""

    def __init__(self, p):
        self.sock = socket.create_connection((p.ip, p.http_port), timeout=10)
        self.buf, self.next_stream = b"", 1
        self.sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + self.frame(4, 0, 0, b""))

    @staticmethod
    def frame(kind, flags, stream, payload):
        return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload

    def read_frame(self):
        """(type, flags, stream, payload), or None at the end of the connection."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        n = int.from_bytes(self.buf[:3], "big")
        f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF, self.buf[9 : 9 + n])
        self.buf = self.buf[9 + n :]
        if f[0] == 4 and not f[1] & 1:
            self.sock.sendall(self.frame(4, 1, 0, b""))  # SETTINGS ACK
        if f[0] == 6 and not f[1] & 1:
            self.sock.sendall(self.frame(6, 1, 0, f[3]))  # PING ACK (a graceful GOAWAY waits for it)
        return f

    def get(self, path):
        """Sends a GET; returns the frame types read until its response ended."""
        fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", path), (b":authority", HOST.encode())]
        block = b"".join(b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v for k, v in fields)
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        self.sock.sendall(self.frame(1, 0x5, stream, block))
        kinds = []
        while (f := self.read_frame()) is not None:
            kinds.append(f[0])
            if f[2] == stream and f[0] in (0, 1) and f[1] & 1:
                return kinds
        raise AssertionError("the connection ended before the response to %r: %r" % (path, kinds))

    def rest(self):
        """The frame types read until the server ends the connection."""
        kinds = []
        while (f := self.read_frame()) is not None:
            kinds.append(f[0])
        return kinds


GOAWAY = 7


def test_keep_alive_requests_sends_goaway_on_http2(portico, echo):
    """nginx 1.19.7 made `keepalive_requests` count HTTP/2 streams too (configmap.md
    quotes its changelog): with 2, the second stream is answered, then GOAWAY, and the
    connection ends."""
    p = portico(config(echo, {"keep-alive-requests": "2"}), *CM_ARG)
    h2 = H2(p)
    assert GOAWAY not in h2.get(b"/one")
    h2.sock.settimeout(5)
    got = h2.get(b"/two") + h2.rest()
    assert GOAWAY in got, got


def test_keep_alive_requests_answers_the_last_with_connection_close(portico, echo):
    """The last request's response says `Connection: close` and the connection ends
    after it, as nginx does when `keepalive_requests` is reached."""
    p = portico(config(echo, {"keep-alive-requests": "2"}), *CM_ARG)
    with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
        for i in range(2):
            s.sendall(b"GET /%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (i, HOST.encode()))
            head, rest = read_head(s)
            assert head.startswith(b"HTTP/1.1 200"), head
            closing = b"\r\nconnection: close" in head.lower()
            assert closing == (i == 1), head
            length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
            while len(rest) < length:
                rest += s.recv(65536)
        assert s.recv(65536) == b""


def test_keep_alive_closes_an_idle_http2_connection_with_goaway(portico, echo):
    """configmap.md#keep-alive: nginx's `keepalive_timeout` holds for HTTP/2 too since
    1.19.7: a connection with no stream open for 1 s gets GOAWAY and ends; one whose
    requests come within the second stays."""
    p = portico(config(echo, {"keep-alive": "1"}), *CM_ARG)
    h2 = H2(p)
    for i in range(3):
        assert GOAWAY not in h2.get(b"/%d" % i)
        time.sleep(0.4)
    t = time.monotonic()
    assert GOAWAY in h2.rest()
    took = time.monotonic() - t
    assert 0.3 < took < 5, "ended after %.1fs idle with keep-alive 1" % took


def test_keep_alive_closes_an_idle_connection_after_its_seconds(portico, echo):
    """configmap.md#keep-alive (nginx `keepalive_timeout`): a client connection idle
    for 1 s is closed; while requests come within it, the connection stays."""
    p = portico(config(echo, {"keep-alive": "1"}), *CM_ARG)
    url = "http://%s:%d/ka" % (HOST, p.http_port)
    argv = ["curl", "-sS", "--resolve", "%s:%d:127.0.0.1" % (HOST, p.http_port), "--http1.1"]
    argv += ["-w", "%{num_connects}\n"]
    # curl --rate spaces the transfers of one run; 2 a second stay within the timeout.
    quick = subprocess.run(argv + ["--rate", "2/s"] + [url, "-o", "/dev/null"] * 3, capture_output=True, timeout=30, check=True)
    assert quick.stdout.decode().split() == ["1", "0", "0"]
    slow = subprocess.run(argv + ["--rate", "12/m"] + [url, "-o", "/dev/null"] * 2, capture_output=True, timeout=30, check=True)
    assert slow.stdout.decode().split() == ["1", "1"], "a connection idle 5 s was kept"


def test_keep_alive_zero_closes_every_connection_after_one_response(portico, echo):
    """configmap.md#keep-alive: "The zero value disables keep-alive client
    connections": every response says `Connection: close`."""
    p = portico(config(echo, {"keep-alive": "0"}), *CM_ARG)
    assert p.get("/a", host=HOST).header("connection") == "close"
    assert connects(p, 3, "--http1.1") == [1, 1, 1]


def test_large_client_header_buffers_sets_the_largest_head(portico, echo):
    """configmap.md#large-client-header-buffers: "4 16k" lets a 40 KB header through
    (the default, 16 KiB, answers it 431) and still refuses a 70 KB one; a value that
    does not parse keeps the default and is reported."""
    big = ["X-Big: " + "b" * 40_000]
    p = portico(config(echo, {"large-client-header-buffers": "4 16k"}), *CM_ARG)
    ok = p.get("/a", host=HOST, headers=big)
    assert ok.status == 200 and len(ok.json()["headers"]["x-big"]) == 40_000
    assert p.get("/a", host=HOST, headers=["X-Big: " + "b" * 70_000]).status == 431
    p.replace_config(config(echo, {"large-client-header-buffers": "lots"}).yaml())
    wait_until(lambda: p.get("/a", host=HOST, headers=big).status == 431, 10, what="the default back")
    assert "large-client-header-buffers" in p.log() and "InvalidConfigValue" in p.log()


_stats_reads = {}


def proxied_connections(be):
    """Connections the echo endpoint accepted from the proxy: its count, less the
    connections these reads of it made themselves (one each)."""
    _stats_reads[be] = _stats_reads.get(be, 0) + 1
    return be.stats()["connections"] - _stats_reads[be]


def test_upstream_keepalive_requests_and_connections(portico, backends):
    """configmap.md#upstream-keepalive-requests: with 2, six requests in a row reach
    the endpoint on three connections; #upstream-keepalive-connections: with 0 no idle
    connection is kept, so each request opens its own."""
    be = backends.echo("upstream-ka")
    cfg = lambda data: config(SimpleNamespace(a=be), data)  # noqa: E731
    p = portico(cfg({"upstream-keepalive-requests": "2"}), *CM_ARG)
    before = proxied_connections(be)
    for _ in range(6):
        assert p.get("/a", host=HOST).status == 200
    assert proxied_connections(be) - before == 3
    p.replace_config(cfg({"upstream-keepalive-connections": "0"}).yaml())
    wait_until(lambda: p.metrics().get("portico_table_generation") == 2, 10, what="the new table")
    # The connection idle from before is used once more, then not kept.
    assert p.get("/a", host=HOST).status == 200
    before = proxied_connections(be)
    for _ in range(4):
        assert p.get("/a", host=HOST).status == 200
    assert proxied_connections(be) - before == 4


def test_upstream_keepalive_timeout_closes_idle_endpoint_connections(portico, backends):
    """configmap.md#upstream-keepalive-timeout: an endpoint connection idle past 1 s is
    closed by the proxy, so the next request opens a new one; one used within the
    second is reused."""
    be = backends.echo("upstream-idle")
    p = portico(config(SimpleNamespace(a=be), {"upstream-keepalive-timeout": "1"}), *CM_ARG)
    before = proxied_connections(be)
    for _ in range(3):
        assert p.get("/a", host=HOST).status == 200
    assert proxied_connections(be) - before == 1
    time.sleep(2)
    assert p.get("/a", host=HOST).status == 200
    assert proxied_connections(be) - before == 2


def test_server_tokens_never_names_portico_or_a_version(portico, echo):
    """configmap.md#server-tokens: ingress-nginx sends `Server: nginx`, with nginx's
    version when true. Portico sends no Server header of its own either way, on a
    proxied response or its own 404."""
    for value in ("true", "false"):
        p = portico(config(echo, {"server-tokens": value}), *CM_ARG)
        for r in (p.get("/a", host=HOST), p.get("/a", host="nowhere.example.com")):
            assert r.header("server") is None, r.headers
        assert "UnsupportedConfigKey" not in p.log()


# --- ssl-protocols, ssl-ciphers -----------------------------------------------------
# configmap.md#ssl-protocols (default "TLSv1.2 TLSv1.3") and #ssl-ciphers (OpenSSL's
# cipher list; nginx's `ssl_ciphers`, which chooses TLS 1.2's suites and leaves TLS
# 1.3's alone); e2e `test/e2e/settings/tls.go` ("setting cipher suite", "setting max
# session cache") checks them with a TLS client offering one version or suite.


def handshake(p, *args):
    """openssl s_client's handshake with the HTTPS port: (succeeded, what it printed)."""
    rc, out = s_client(p.https_port, HOST, *args)
    return rc == 0 and "Cipher is (NONE)" not in out, out


def test_ssl_protocols_narrows_the_versions_offered_live(portico, echo, ca):
    """With "TLSv1.3" a client that speaks only TLS 1.2 fails its handshake and a
    TLS 1.3 client succeeds; rewritten to "TLSv1.2", the other way round, without a
    restart; the key removed, both again. curl still gets its page."""
    pair = ca.leaf(HOST)
    p = portico(tls_config(echo, pair, {"ssl-protocols": "TLSv1.3"}), *CM_ARG)
    assert not handshake(p, "-tls1_2")[0]
    ok, out = handshake(p, "-tls1_3")
    assert ok and "TLSv1.3" in out, out[-2000:]
    assert https(p, HOST, ca)[0] == 200
    p.replace_config(tls_config(echo, pair, {"ssl-protocols": "TLSv1 TLSv1.1 TLSv1.2"}).yaml())
    wait_until(lambda: not handshake(p, "-tls1_3")[0], 10, what="TLS 1.3 turned off")
    assert handshake(p, "-tls1_2")[0]
    p.replace_config(tls_config(echo, pair, {}).yaml())
    wait_until(lambda: handshake(p, "-tls1_3")[0], 10, what="the defaults back")
    assert handshake(p, "-tls1_2")[0]


def test_ssl_ciphers_chooses_tls12_suites_in_its_order(portico, echo, ca):
    """With "ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256" (the test
    certificate is ECDSA) a TLS 1.2 client offering only AES-128 fails; one offering
    both AES-GCM suites gets AES-256, the server's choice; TLS 1.3 is untouched. A list
    naming no suite Portico offers is reported and leaves the defaults."""
    pair = ca.leaf(HOST)
    ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256"
    p = portico(tls_config(echo, pair, {"ssl-ciphers": ciphers}), *CM_ARG)
    assert not handshake(p, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")[0]
    ok, out = handshake(p, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
    assert ok and "ECDHE-ECDSA-AES256-GCM-SHA384" in out, out[-2000:]
    assert handshake(p, "-tls1_3")[0]
    p.replace_config(tls_config(echo, pair, {"ssl-ciphers": "HIGH:!aNULL:!MD5"}).yaml())
    wait_until(
        lambda: handshake(p, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")[0], 10, what="the defaults back"
    )
    assert "ssl-ciphers" in p.log() and "InvalidConfigValue" in p.log()
