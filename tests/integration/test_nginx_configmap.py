"""ingress-nginx's controller ConfigMap read with `--configmap` (file mode: the ConfigMap
of the file), against real clients. Each test names the ingress-nginx document or e2e
test (kubernetes/ingress-nginx: `docs/user-guide/nginx-configuration/configmap.md`,
`test/e2e/settings/*.go`, the template `rootfs/etc/nginx/template/nginx.tmpl`) it
follows."""

import json
import re
import time
import urllib.parse

import pytest

from harness import wait_until
from k8s import Config, path, rule
from test_nginx_annotations import quick_statuses
from test_tls import CA, https, tls_secret

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
