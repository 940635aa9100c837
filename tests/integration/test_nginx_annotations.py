"""ingress-nginx's annotations against real clients: rewrites with captures, redirects,
app-root, force-ssl-redirect, canaries, backend-protocol and source ranges. Each test
names the ingress-nginx document or e2e test (kubernetes/ingress-nginx,
`test/e2e/annotations/*.go`) it follows."""

import http.client
import json
import socket
import time

import grpc
import pytest

from harness import free_port
from k8s import Config, path, rule

HOST = "ann.example.com"
A = "nginx.ingress.kubernetes.io/"


def ann(**kv):
    return {A + k.replace("_", "-"): v for k, v in kv.items()}


def one_ingress(echo, annotations, paths=(("/", "Prefix"),), host=HOST):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("web", rules=[rule(host, *(path(p, "web", kind=k) for p, k in paths))], annotations=annotations)
    return cfg


def test_rewrite_target_with_captures(portico, echo):
    """docs/examples/rewrite/README.md and e2e `rewrite.go`: `rewrite-target: /$2` on
    `/something(/|$)(.*)` sends `/something/new` as `/new`; the regex path matches
    case-insensitively (`~*`), and the query string follows the new path."""
    p = portico(
        one_ingress(echo, ann(rewrite_target="/$2"), paths=[("/something(/|$)(.*)", "ImplementationSpecific")])
    )
    for sent, seen in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
        ("/SomeThing/new/deeper?a=1&b=2", "/new/deeper?a=1&b=2"),
    ]:
        r = p.get(sent, host=HOST)
        assert r.status == 200, (sent, r)
        assert r.json()["target"] == seen, sent
    assert p.get("/other", host=HOST).status == 404


def test_use_regex_makes_the_hosts_paths_regex(portico, echo):
    """annotations.md "Use Regex": with `use-regex: "true"` the paths are
    case-insensitive regular expressions anchored at the start (`location ~* "^/foo/.+"`),
    e2e `rewrite.go` "should use ~* location modifier if regex annotation is present"."""
    p = portico(one_ingress(echo, ann(use_regex="true"), paths=[("/foo/.+", "ImplementationSpecific")]))
    assert p.get("/foo/bar", host=HOST).status == 200
    assert p.get("/FOO/bar", host=HOST).status == 200
    assert p.get("/foo/", host=HOST).status == 404
    assert p.get("/x/foo/bar", host=HOST).status == 404


@pytest.mark.parametrize(
    "annotations, status",
    [
        (ann(permanent_redirect="https://www.example.org/landing"), 301),
        (ann(permanent_redirect="https://www.example.org/landing", permanent_redirect_code="308"), 308),
        (ann(temporal_redirect="https://www.example.org/landing"), 302),
    ],
    ids=["permanent", "permanent-308", "temporal"],
)
def test_redirect_annotations(portico, echo, annotations, status):
    """e2e `redirect.go` "should respond with a redirect to a given URL" and "should
    respond with a redirect code": the fixed URL, whatever the request's path and query,
    and nothing reaches the backend."""
    p = portico(one_ingress(echo, annotations))
    r = p.get("/some/path?q=1", host=HOST)
    assert r.status == status
    assert r.header("location") == "https://www.example.org/landing"
    assert p.get("/", host=HOST, data=b"x").status == status


def test_app_root_redirects_the_root_only(portico, echo):
    """e2e `approot.go` "should redirect to /foo": `/` answers 302 with
    `Location: http://<host>/foo`; other paths are proxied."""
    p = portico(one_ingress(echo, ann(app_root="/foo")))
    r = p.get("/", host=HOST)
    assert r.status == 302
    # nginx: `return 302 $scheme://$http_host<app-root>`; $http_host keeps the port.
    assert r.header("location") == "http://%s:%d/foo" % (HOST, p.http_port)
    r = p.get("/foo", host=HOST)
    assert r.status == 200 and r.json()["target"] == "/foo"


def test_force_ssl_redirect_without_tls(portico, echo):
    """e2e `forcesslredirect.go` "should redirect to https": 308 to the https URL even
    for a host without `spec.tls`, to the HTTPS listener's port (ingress-nginx's
    `redirect_to_https` names the port when it is not 443)."""
    p = portico(one_ingress(echo, ann(force_ssl_redirect="true")))
    r = p.get("/a?b=1", host=HOST)
    assert r.status == 308
    assert r.header("location") == "https://%s:%d/a?b=1" % (HOST, p.https_port)


def canary_config(echo, canary_annotations):
    cfg = Config()
    cfg.backend("main", [echo.a])
    cfg.backend("canary", [echo.b])
    cfg.ingress("main", rules=[rule(HOST, path("/", "main"))])
    cfg.ingress("canary", rules=[rule(HOST, path("/", "canary"))], annotations=ann(canary="true", **canary_annotations))
    return cfg


def backend_of(p, headers=(), n=1):
    got = set()
    for _ in range(n):
        r = p.get("/", host=HOST, headers=headers)
        assert r.status == 200, r
        got.add(r.json()["backend"])
    return got


def test_canary_by_header_and_cookie_precedence(portico, echo):
    """annotations.md "Canary" and e2e `canary.go`: `always` sends to the canary, `never`
    to the main backend; the header wins over the cookie, the cookie over the weight."""
    p = portico(
        canary_config(
            echo, {"canary_by_header": "CanaryByHeader", "canary_by_cookie": "CanaryByCookie", "canary_weight": "100"}
        )
    )
    assert backend_of(p, ["CanaryByHeader: always"]) == {"b"}
    assert backend_of(p, ["CanaryByHeader: never"]) == {"a"}
    assert backend_of(p, ["CanaryByHeader: never", "Cookie: CanaryByCookie=always"]) == {"a"}
    assert backend_of(p, ["Cookie: CanaryByCookie=never"]) == {"a"}
    assert backend_of(p, ["Cookie: other=1; CanaryByCookie=always"]) == {"b"}
    # Neither says anything: the weight (100 of 100) decides.
    assert backend_of(p, ["CanaryByHeader: maybe"], n=4) == {"b"}


def test_canary_by_header_value(portico, echo):
    """e2e `canary.go` "should route requests to the correct upstream if mainline
    ingress is created after the canary ingress" with `canary-by-header-value`: only
    that value goes to the canary; `always` is an ordinary value then."""
    p = portico(canary_config(echo, {"canary_by_header": "CanaryByHeader", "canary_by_header_value": "DoCanary"}))
    assert backend_of(p, ["CanaryByHeader: DoCanary"]) == {"b"}
    assert backend_of(p, ["CanaryByHeader: always"]) == {"a"}
    assert backend_of(p, [], n=4) == {"a"}


@pytest.mark.parametrize("weight, want", [("0", {"a"}), ("100", {"b"}), ("50", {"a", "b"})])
def test_canary_weight(portico, echo, weight, want):
    """e2e `canary.go` "canary-weight": 0 sends nothing to the canary, 100 everything,
    and anything between splits the requests."""
    p = portico(canary_config(echo, {"canary_weight": weight}))
    assert backend_of(p, n=10) == want


def test_backend_protocol_grpc(portico, backends):
    """e2e `grpc.go` "should return OK for service with backend protocol GRPC":
    `backend-protocol: GRPC` speaks HTTP/2 cleartext to a Service port without an
    appProtocol."""
    cfg = grpc_ingress(backends.grpc("g"), "GRPC")
    p = portico(cfg)
    with grpc_channel(p) as ch:
        resp = json.loads(ch.unary_unary("/portico.test.Echo/Unary")(b"hi", timeout=15))
    assert resp["backend"] == "g" and resp["message"] == "hi"


def grpc_ingress(be, protocol):
    """An Ingress for grpc.example.com to the gRPC endpoint `be`, spoken to in
    `backend-protocol` `protocol`."""
    cfg = Config()
    cfg.backend("grpc-svc", [be], port=50051, port_name="grpc")
    cfg.ingress(
        "grpc", rules=[rule("grpc.example.com", path("/", "grpc-svc", port=50051))], annotations=ann(backend_protocol=protocol)
    )
    return cfg


def grpc_channel(p):
    """A gRPC client channel to Portico's plain port (h2c), for grpc.example.com."""
    return grpc.insecure_channel("%s:%d" % (p.ip, p.http_port), options=[("grpc.default_authority", "grpc.example.com")])


def test_backend_protocol_grpcs(portico, backends, tmp_path):
    """annotations.md "Backend Protocol" (GRPCS) and e2e `grpc.go` "should return OK
    for service with backend protocol GRPCS": gRPC over TLS to an endpoint that speaks
    nothing else (grpcio with a certificate, ALPN h2), its certificate not checked
    (`proxy-ssl-verify` is off by default); the client speaks h2c to Portico. Unary and
    server-streaming calls, and a gRPC error status, come back as the endpoint sent them."""
    from test_tls import CA

    crt, key = CA(tmp_path).leaf("grpc-svc.default.svc")
    (tmp_path / "g.crt").write_bytes(crt)
    (tmp_path / "g.key").write_bytes(key)
    be = backends.grpc("gs", tls=(tmp_path / "g.crt", tmp_path / "g.key"))
    p = portico(grpc_ingress(be, "GRPCS"))
    with grpc_channel(p) as ch:
        resp = json.loads(ch.unary_unary("/portico.test.Echo/Unary")(b"hi", timeout=15))
        assert resp["backend"] == "gs" and resp["message"] == "hi"
        assert list(ch.unary_stream("/portico.test.Echo/Stream")(b"3", timeout=15)) == [b"0:gs", b"1:gs", b"2:gs"]
        with pytest.raises(grpc.RpcError) as failed:
            ch.unary_unary("/portico.test.Echo/Fail")(b"gone", timeout=15)
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND and failed.value.details() == "gone"
    # The same endpoint spoken to in cleartext (GRPC) fails: the TLS above was real.
    p.replace_config(grpc_ingress(be, "GRPC").yaml())
    time.sleep(1)
    with grpc_channel(p) as ch:
        with pytest.raises(grpc.RpcError):
            ch.unary_unary("/portico.test.Echo/Unary")(b"hi", timeout=5)


@pytest.mark.parametrize(
    "annotations, status",
    [
        (ann(whitelist_source_range="127.0.0.1/32, 198.18.0.0/15"), 200),
        (ann(whitelist_source_range="198.18.0.0/15"), 403),
        (ann(denylist_source_range="127.0.0.0/8"), 403),
        (ann(denylist_source_range="198.18.0.0/15"), 200),
        (ann(denylist_source_range="127.0.0.1", whitelist_source_range="127.0.0.0/8"), 403),
        (ann(whitelist_source_range="127.0.0.1/33"), 503),
    ],
    ids=["allowed", "not-allowed", "denied", "not-denied", "deny-before-allow", "malformed"],
)
def test_source_ranges(portico, echo, annotations, status):
    """annotations.md "Whitelist source range" / "Denylist source range", e2e
    `ipwhitelist.go` and `ipdenylist.go`: the template writes `deny` lines, then `allow`
    lines and `deny all`; a client refused gets 403 and nothing reaches the backend. A
    list that does not parse denies the location (503), as ingress-nginx does."""
    p = portico(one_ingress(echo, annotations))
    r = p.get("/x", host=HOST)
    assert r.status == status, r
    if status == 200:
        assert r.json()["backend"] == "a"


DEFAULT_CORS_HEADERS = (
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
)


def test_enable_cors_defaults_on_every_answer(portico, echo):
    """e2e `cors.go` "should enable cors" and "should not break functionality - without
    `*`": ingress-nginx's defaults on the endpoint's answer, `Access-Control-Allow-Origin:
    *` with or without an Origin, and a preflight answered 204 without reaching the
    endpoint."""
    p = portico(one_ingress(echo, ann(enable_cors="true")))
    r = p.get("/x", host=HOST)
    assert r.status == 200 and r.json()["backend"] == "a"
    assert r.header("access-control-allow-origin") == "*"
    assert r.header("access-control-allow-credentials") == "true"
    assert r.header("access-control-allow-methods") == "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    assert r.header("access-control-allow-headers") == DEFAULT_CORS_HEADERS
    assert r.header("access-control-max-age") == "1728000"
    pre = p.get(
        "/x", "-X", "OPTIONS", host=HOST,
        headers=["Origin: https://app.example.net", "Access-Control-Request-Method: PUT"],
    )  # fmt: skip
    assert pre.status == 204, pre
    assert pre.body == b""
    assert pre.header("access-control-allow-origin") == "*"
    assert pre.header("access-control-max-age") == "1728000"
    assert pre.header("content-length") is None


def test_cors_origin_list_echoes_the_allowed_origin(portico, echo):
    """e2e `cors.go` "should allow correct origins - single origin for multiple cors
    values", "should not allow - unmatching origin with wildcard origin (2 subdomains)"
    and "should expose headers for cors": a listed origin (a `*` stands for one label)
    is echoed back; any other gets no CORS headers and its preflight goes to the
    endpoint."""
    p = portico(
        one_ingress(
            echo,
            ann(
                enable_cors="true",
                cors_allow_origin="https://origin2.cors.com, http://*.origin.cors.com",
                cors_allow_methods="POST, GET",
                cors_expose_headers="X-CustomResponseHeader",
                cors_allow_credentials="false",
                cors_max_age="200",
            ),
        )
    )
    for origin in ["https://origin2.cors.com", "http://bar-foo.origin.cors.com"]:
        r = p.get("/x", host=HOST, headers=["Origin: " + origin])
        assert r.status == 200
        assert r.header("access-control-allow-origin") == origin
        assert r.header("access-control-allow-methods") == "POST, GET"
        assert r.header("access-control-expose-headers") == "X-CustomResponseHeader"
        assert r.header("access-control-max-age") == "200"
        assert r.header("access-control-allow-credentials") is None
        pre = p.get("/x", "-X", "OPTIONS", host=HOST, headers=["Origin: " + origin])
        assert pre.status == 204 and pre.header("access-control-allow-origin") == origin
    for origin in ["http://bar.foo.origin.cors.com", "https://origin2.cors.com.evil.net"]:
        r = p.get("/x", host=HOST, headers=["Origin: " + origin])
        assert r.status == 200 and r.header("access-control-allow-origin") is None
        pre = p.get("/x", "-X", "OPTIONS", host=HOST, headers=["Origin: " + origin])
        assert pre.status == 200 and pre.json()["method"] == "OPTIONS"
    assert p.get("/x", host=HOST).header("access-control-allow-origin") is None


def test_cors_headers_on_a_refusal(portico, echo):
    """The template's `more_set_headers` apply to every status: a client refused by
    `whitelist-source-range` still gets the CORS headers a browser needs to read the
    403."""
    p = portico(one_ingress(echo, ann(enable_cors="true", whitelist_source_range="198.18.0.0/15")))
    r = p.get("/x", host=HOST, headers=["Origin: https://app.example.net"])
    assert r.status == 403
    assert r.header("access-control-allow-origin") == "*"


def test_limit_rps_answers_503_beyond_the_burst(portico, echo):
    """annotations.md "Rate Limiting": `limit-rps: 2` with the default
    `limit-burst-multiplier` 5 is nginx's `limit_req rate=2r/s burst=10 nodelay`: a quick
    run of 20 requests from one address gets 11 through and 503 for the rest (the
    default `limit-req-status-code`); the refused ones never reach the backend."""
    p = portico(one_ingress(echo, ann(limit_rps="2")))
    statuses = quick_statuses(p, 20)
    assert statuses[:11] == [200] * 11, statuses
    assert statuses.count(503) >= 7, statuses
    assert set(statuses) == {200, 503}, statuses


def test_limit_whitelist_is_never_limited(portico, echo):
    """annotations.md "Rate Limiting": clients in `limit-whitelist` are not limited."""
    p = portico(one_ingress(echo, ann(limit_rps="1", limit_whitelist="127.0.0.1/32, 198.18.0.0/15")))
    assert set(quick_statuses(p, 20)) == {200}


def test_limit_connections_counts_requests_in_flight(portico, echo):
    """annotations.md "Rate Limiting" and e2e `annotations/limitconnections.go`:
    `limit-connections: 2` is nginx's `limit_conn` of 2 per client address: with two
    slow requests in flight on two connections, a third is 503 (the default
    `limit-conn-status-code`); once they are answered, requests go through again. A
    client in `limit-whitelist` is never counted."""
    import concurrent.futures

    def slow(seconds):
        conn = http.client.HTTPConnection(p.ip, p.http_port, timeout=30)
        conn.request("GET", "/sleep/%s" % seconds, headers={"Host": HOST})
        status = conn.getresponse().status
        conn.close()
        return status

    p = portico(one_ingress(echo, ann(limit_connections="2")))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(slow, 1.5) for _ in range(2)]
        time.sleep(0.5)
        assert quick_statuses(p, 1) == [503]
        assert [f.result() for f in in_flight] == [200, 200]
    assert quick_statuses(p, 3) == [200, 200, 200]

    p = portico(one_ingress(echo, ann(limit_connections="1", limit_whitelist="127.0.0.1/32")))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        in_flight = [pool.submit(slow, 1) for _ in range(2)]
        time.sleep(0.3)
        assert quick_statuses(p, 1) == [200]
        assert [f.result() for f in in_flight] == [200, 200]


def quick_statuses(p, n, host=HOST):
    """The statuses of `n` GETs sent back to back on one keep-alive connection."""
    out = []
    conn = http.client.HTTPConnection(p.ip, p.http_port, timeout=30)
    for _ in range(n):
        conn.request("GET", "/x", headers={"Host": host})
        r = conn.getresponse()
        r.read()
        out.append(r.status)
        if r.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection(p.ip, p.http_port, timeout=30)
    conn.close()
    return out


def test_session_cookie_attributes(portico, echo):
    """e2e `affinity.go` ("should set the path to /something on the generated cookie",
    "should set cookie with expires", "should set cookie with domain", SameSite) and
    `balancer/sticky.lua`: the cookie carries the session-cookie-* values; its Path is
    the Ingress path unless set; with conditional-samesite-none, a client that rejects
    SameSite=None gets the cookie without it; the cookie brings the client back."""
    cfg = Config()
    cfg.backend("web", [echo.a, echo.b, echo.c])
    sticky = ann(affinity="cookie", session_cookie_name="route")
    cfg.ingress("plain", rules=[rule(HOST, path("/app", "web"))], annotations=sticky)
    cfg.ingress(
        "custom",
        rules=[rule("custom." + HOST, path("/", "web"))],
        annotations={
            **sticky,
            **ann(
                session_cookie_path="/something",
                session_cookie_domain="example.com",
                session_cookie_expires="172800",
                session_cookie_max_age="259200",
                session_cookie_samesite="None",
                session_cookie_conditional_samesite_none="true",
                session_cookie_secure="true",
            ),
        },
    )
    p = portico(cfg)
    r = p.get("/app", host=HOST)
    cookie = r.header("set-cookie")
    assert r.status == 200 and cookie.startswith("route="), r.headers
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    assert attrs == ["Path=/app", "HttpOnly"], cookie
    first = r.json()["backend"]
    pair = cookie.split(";")[0]
    for _ in range(6):
        r = p.get("/app", host=HOST, headers=["Cookie: " + pair])
        assert r.json()["backend"] == first and r.header("set-cookie") is None

    r = p.get("/", host="custom." + HOST)
    cookie = r.header("set-cookie")
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    assert attrs[0].startswith("Expires=") and attrs[0].endswith(" GMT"), cookie
    assert attrs[1:] == [
        "Max-Age=259200",
        "Domain=example.com",
        "Path=/something",
        "Secure",
        "HttpOnly",
        "SameSite=None",
    ], cookie
    old_chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/62.0.3202.94 Safari/537.36"
    r = p.get("/", host="custom." + HOST, headers=["User-Agent: " + old_chrome])
    assert "SameSite" not in r.header("set-cookie"), r.header("set-cookie")


def custom_errors_config(echo, errors, annotations):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.backend("errors", [errors])
    cfg.backend("empty", [])
    cfg.ingress(
        "shop",
        rules=[rule(HOST, path("/", "web"), path("/down", "empty"))],
        annotations=annotations,
    )
    return cfg


def test_custom_http_errors_go_to_the_default_backend(portico, echo, backends):
    """annotations.md "Custom HTTP Errors" and "Default Backend", the template's
    `CUSTOM_ERRORS` location: an answer with a listed code is replaced by the
    default-backend's answer to `GET /` with X-Code, X-Format, X-Original-URI,
    X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port and X-Request-ID;
    other codes pass; the answer Portico itself gives (503, no endpoint) is replaced
    too, as nginx's error_page does."""
    errors = backends.echo("errors")
    p = portico(custom_errors_config(echo, errors, ann(default_backend="errors", custom_http_errors="404,503")))
    r = p.get("/status/404?x=1", host=HOST, headers=["Accept: application/json"])
    assert r.status == 200, r
    seen = r.json()
    assert seen["backend"] == "errors" and seen["method"] == "GET" and seen["target"] == "/", seen
    h = seen["headers"]
    assert h["x-code"] == "404" and h["x-format"] == "application/json", h
    assert h["x-original-uri"] == "/status/404?x=1", h
    assert (h["x-namespace"], h["x-ingress-name"]) == ("default", "shop"), h
    assert (h["x-service-name"], h["x-service-port"]) == ("web", "80"), h
    # The template's `proxy_set_header Host $best_http_host`: the Host as sent.
    assert h["host"] == "%s:%d" % (HOST, p.http_port) and h["x-request-id"], h
    # Codes not listed pass untouched.
    r = p.get("/status/500", host=HOST)
    assert r.status == 500 and r.json()["backend"] == "a"
    assert p.get("/", host=HOST).json()["backend"] == "a"


def test_default_backend_serves_a_rule_without_endpoints(portico, echo, backends):
    """e2e `default_backend.go` "should use a custom default backend as upstream": a
    rule whose Service has no ready endpoint is served by the default-backend Service,
    path unchanged; without the annotation it answers 503."""
    errors = backends.echo("errors")
    p = portico(custom_errors_config(echo, errors, ann(default_backend="errors")))
    r = p.get("/down/page", host=HOST)
    assert r.status == 200 and r.json()["backend"] == "errors" and r.json()["target"] == "/down/page", r
    # Without custom-http-errors, errors from the rule's own Service pass.
    r = p.get("/status/404", host=HOST)
    assert r.status == 404 and r.json()["backend"] == "a"
    p2 = portico(custom_errors_config(echo, errors, {}))
    assert p2.get("/down/page", host=HOST).status == 503


def test_server_alias_serves_the_hosts_paths(portico, echo):
    """annotations.md "Server Alias" and e2e `alias.go`: the alias answers with every
    path of the Ingress's host ("should return status code 200 for host 'foo' and
    'bar'"); a name that is a host of its own keeps its own rules ("should return
    status code 200 for hosts defined in two ingresses, different path with one
    alias")."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.backend("other", [echo.b])
    cfg.ingress("shop", rules=[rule(HOST, path("/", "web"))], annotations=ann(server_alias="www.shop.example, own.example"))
    cfg.ingress("own", rules=[rule("own.example", path("/", "other"))])
    p = portico(cfg)
    assert p.get("/x", host="www.shop.example").json()["backend"] == "a"
    assert p.get("/x", host="WWW.Shop.Example").json()["backend"] == "a"
    assert p.get("/x", host="own.example").json()["backend"] == "b"
    assert p.get("/x", host="elsewhere.example").status == 404


def test_service_upstream_goes_to_the_cluster_ip(portico, echo):
    """annotations.md "Service Upstream" and e2e `serviceupstream.go`: with
    `service-upstream: "true"` requests go to the Service's cluster IP and port (here
    127.0.0.1 and echo a's port), not to its endpoints (echo b); without it, to the
    endpoints."""
    cfg = Config()
    cfg.backend("web", [echo.b], port=echo.a.port)
    for obj in cfg.objects:
        if obj["kind"] == "Service" and obj["metadata"]["name"] == "web":
            obj["spec"]["clusterIP"] = "127.0.0.1"
    cfg.ingress("up", rules=[rule(HOST, path("/", "web", port=echo.a.port))], annotations=ann(service_upstream="true"))
    cfg.ingress("eps", rules=[rule("eps." + HOST, path("/", "web", port=echo.a.port))])
    p = portico(cfg)
    assert {p.get("/", host=HOST).json()["backend"] for _ in range(4)} == {"a"}
    assert {p.get("/", host="eps." + HOST).json()["backend"] for _ in range(4)} == {"b"}


def test_upstream_hash_by_request_uri_keeps_each_uri_on_one_endpoint(portico, backends):
    """ingress-nginx's e2e `annotations/upstreamhashby.go` ("should connect to the same
    pod"): with `upstream-hash-by: "$request_uri"`, 100 requests for one URI all reach
    one pod of six. Different URIs spread over the pods, and the value is an nginx
    complex value (`util.lua` `parse_complex_value`): text and variables join, so
    `$host$uri` ignores the query that `$request_uri` keys on."""
    ips = ["127.0.0.%d" % i for i in range(1, 7)]
    port = free_port(tuple(ips))
    pods = [backends.echo("pod%d" % i, ip=ip, port=port) for i, ip in enumerate(ips)]

    def served(p, target):
        return p.get(target, host=HOST).json()["backend"]

    for value, same_for in [("$request_uri", ["/a?x=1"]), ("${host}$uri", ["/a?x=1", "/a?x=2", "/a"])]:
        cfg = Config()
        cfg.backend("web", pods)
        cfg.ingress("web", rules=[rule(HOST, path("/", "web"))], annotations=ann(upstream_hash_by=value))
        p = portico(cfg)
        seen = {served(p, same_for[i % len(same_for)]) for i in range(100)}
        assert len(seen) == 1, (value, seen)
        spread = {served(p, "/item/%d" % i) for i in range(60)}
        assert len(spread) >= 5, (value, spread)


def test_client_body_buffer_size_bounds_what_is_read_ahead(portico):
    """annotations.md "Client Body Buffer Size" (nginx `client_body_buffer_size`): with
    `16k`, an upload that has sent 20 KB and stalls has reached the endpoint (the head
    and what was read); without the annotation (1 MiB read ahead, the default) the
    same upload has not. nginx would write the rest to a file and still send it whole:
    Portico streams it (the catalog says so)."""
    from harness import ByteLogBackend

    head = b"POST /up HTTP/1.1\r\nHost: %s\r\nContent-Length: 40000\r\n\r\n" % HOST.encode()
    for annotations, reached in [(ann(client_body_buffer_size="16k"), True), ({}, False)]:
        be = ByteLogBackend()
        try:
            cfg = Config()
            cfg.backend("web", [be])
            cfg.ingress("web", rules=[rule(HOST, path("/", "web"))], annotations=annotations)
            p = portico(cfg)
            with socket.create_connection((p.ip, p.http_port), timeout=10) as s:
                s.sendall(head + b"x" * 20000)
                time.sleep(1)
                got = be.received
                assert (got != b"") == reached, (annotations, got[:200])
                if reached:
                    # The head, and at least the 16 KiB read ahead, before the body is whole.
                    assert got.startswith(b"POST /up HTTP/1.1\r\n")
                    assert 16 * 1024 <= got.count(b"x") < 40000, got.count(b"x")
        finally:
            be.close()
