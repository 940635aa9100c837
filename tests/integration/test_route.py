"""The `Route` custom resource (portico.dev/v1alpha1) in a `--from-file` file: weighted
splits, header / query / method matches, rewrites, redirects, header filters, retries,
consistent hashing, cookie affinity, and what happens when a Route cannot be served."""

import collections
import http.client
import json
import re
import socket
import threading
import time

import pytest

from harness import free_port, read_head, staggered, wait_until
from k8s import Config, path, rule

HOST = "route.example.com"


def route(name, rules, hostnames=(HOST,), namespace="default", tls=None):
    spec = {"rules": list(rules)}
    if hostnames:
        spec = {"hostnames": list(hostnames), **spec}
    if tls:
        spec["tls"] = {"secretName": tls}
    return {
        "apiVersion": "portico.dev/v1alpha1",
        "kind": "Route",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ref(name, port=80, weight=None):
    r = {"name": name, "port": port}
    if weight is not None:
        r["weight"] = weight
    return r


def prefix(value):
    return {"path": {"type": "PathPrefix", "value": value}}


class Client:
    """One keep-alive connection to Portico, for many quick requests."""

    def __init__(self, p, host=HOST):
        self.p, self.host = p, host
        self.conn = http.client.HTTPConnection(p.ip, p.http_port, timeout=30)

    def get(self, target="/", headers=None, method="GET", body=None):
        h = {"Host": self.host, **(headers or {})}
        try:
            self.conn.request(method, target, body=body, headers=h)
            r = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            # The proxy closed the connection (after an error answer): start a new one.
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.p.ip, self.p.http_port, timeout=30)
            self.conn.request(method, target, body=body, headers=h)
            r = self.conn.getresponse()
        data = r.read()
        return r.status, r, data

    def backend(self, target="/", headers=None, method="GET"):
        status, _, data = self.get(target, headers, method)
        assert status == 200, (status, data[:300])
        return json.loads(data)["backend"]


class FailingEndpoint:
    """A TCP endpoint that fails every request: `reset` reads the request and closes the
    connection unanswered; `503` answers 503 Service Unavailable; `slow` answers 200
    after 2 seconds."""

    def __init__(self, mode, ip="127.0.0.1"):
        self.mode, self.ip = mode, ip
        self.port = free_port((ip,))
        self.sock = socket.create_server((ip, self.port))
        self.hits = 0
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        with c:
            c.settimeout(5)
            while True:
                if read_head(c) is None:
                    return
                self.hits += 1
                if self.mode == "reset":
                    return
                if self.mode == "slow":
                    time.sleep(2)
                    body = b'{"backend": "slowpoke"}'
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                else:
                    answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nfail\n"
                try:
                    c.sendall(answer)
                except OSError:
                    # The proxy gave up on this endpoint and closed the connection.
                    return

    def stop(self):
        self.stopped = True
        self.sock.close()


@pytest.fixture
def failing():
    made = []

    def make(mode):
        f = FailingEndpoint(mode)
        made.append(f)
        return f

    yield make
    for f in made:
        f.stop()


SPLIT_REQUESTS = 4000


def test_weighted_split_90_10_over_4000_requests(portico, echo):
    """backendRefs weighted 90 and 10 split 4,000 requests 90/10, within 3 points."""
    cfg = Config()
    cfg.backend("stable", [echo.a])
    cfg.backend("canary", [echo.b])
    cfg.add(route("split", [{"backendRefs": [ref("stable", weight=90), ref("canary", weight=10)]}]))
    p = portico(cfg, "--access-log", "false")
    c = Client(p)
    counts = collections.Counter(c.backend("/") for _ in range(SPLIT_REQUESTS))
    share = 100.0 * counts["a"] / SPLIT_REQUESTS
    print("measured split: %.2f%% stable / %.2f%% canary" % (share, 100 - share))
    assert abs(share - 90) <= 3, counts
    assert counts["a"] + counts["b"] == SPLIT_REQUESTS
    # The requests metric names the Service each request went to.
    m = wait_until(
        lambda: (lambda m: m if m.get("portico_requests_total", ingress="split") >= SPLIT_REQUESTS else None)(p.metrics()),
        10,
        what="every request to be counted",
    )
    assert m.get("portico_requests_total", ingress="split", service="canary") == counts["b"]
    assert m.get("portico_requests_total", ingress="split", service="stable") == counts["a"]


def test_header_query_and_method_matches(portico, echo):
    """A header match, a query match and a method match each pick their rule; a request
    meeting none falls back to the rule without conditions."""
    cfg = Config()
    cfg.backend("main", [echo.a])
    cfg.backend("canary", [echo.b])
    cfg.backend("beta", [echo.c])
    cfg.add(
        route(
            "matches",
            [
                {"matches": [{"headers": [{"name": "X-Canary", "value": "always"}]}], "backendRefs": [ref("canary")]},
                {
                    "matches": [{"queryParams": [{"type": "RegularExpression", "name": "v", "value": "2(\\.[0-9]+)?"}]}],
                    "backendRefs": [ref("beta")],
                },
                {"matches": [{**prefix("/api"), "method": "DELETE"}], "backendRefs": [ref("canary")]},
                {"backendRefs": [ref("main")]},
            ],
        )
    )
    p = portico(cfg)
    c = Client(p)
    assert c.backend("/x") == "a"
    assert c.backend("/x", {"x-canary": "always"}) == "b"
    assert c.backend("/x", {"x-canary": "sometimes"}) == "a"
    assert c.backend("/x?v=2.1") == "c"
    assert c.backend("/x?v=3") == "a"
    assert c.backend("/api/1", method="DELETE") == "b"
    assert c.backend("/api/1", method="GET") == "a"
    # curl agrees.
    r = p.get("/y?v=2", host=HOST)
    assert r.status == 200 and r.json()["backend"] == "c"


def test_rewrites_and_header_filters_reach_the_backend(portico, echo):
    """URLRewrite (ReplacePrefixMatch and hostname) and RequestHeaderModifier change
    what the real backend receives; ResponseHeaderModifier changes what curl sees."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.add(
        route(
            "rewrite",
            [
                {
                    "matches": [prefix("/old")],
                    "filters": [
                        {
                            "type": "URLRewrite",
                            "urlRewrite": {
                                "hostname": "internal.example",
                                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
                            },
                        },
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {
                                "set": [
                                    {"name": "X-Env", "value": "prod"},
                                    # Portico's own forwarded fields can be set too.
                                    {"name": "X-Forwarded-Proto", "value": "https"},
                                ],
                                "add": [{"name": "X-Tag", "value": "two"}],
                                "remove": ["X-Secret"],
                            },
                        },
                        {
                            "type": "ResponseHeaderModifier",
                            "responseHeaderModifier": {"set": [{"name": "X-Served-By", "value": "portico"}]},
                        },
                    ],
                    "backendRefs": [ref("web")],
                },
                {
                    "matches": [{"path": {"type": "Exact", "value": "/full"}}],
                    "filters": [
                        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/other"}}}
                    ],
                    "backendRefs": [ref("web")],
                },
            ],
        )
    )
    p = portico(cfg)
    r = p.get("/old/page?q=1", host=HOST, headers=["X-Env: dev", "X-Tag: one", "X-Secret: s"])
    assert r.status == 200, r
    seen = r.json()
    assert seen["target"] == "/new/page?q=1"
    assert seen["headers"]["host"] == "internal.example"
    assert seen["headers"]["x-forwarded-host"].split(":")[0] == HOST
    assert seen["headers"]["x-env"] == "prod"
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert seen["headers"]["x-tag"] == "one, two"
    assert "x-secret" not in seen["headers"]
    assert r.header("x-served-by") == "portico"
    assert p.get("/old", host=HOST).json()["target"] == "/new"
    assert p.get("/full?x=1", host=HOST).json()["target"] == "/other?x=1"


def test_redirects_seen_by_curl(portico, echo):
    """RequestRedirect answers with the status and Location asked for; curl -L follows a
    path redirect to the real backend."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.add(
        route(
            "redirects",
            [
                {
                    "matches": [prefix("/secure")],
                    "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}],
                },
                {
                    "matches": [prefix("/moved")],
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/here"}},
                        }
                    ],
                },
                {"backendRefs": [ref("web")]},
            ],
        )
    )
    p = portico(cfg)
    r = p.get("/secure/a?b=1", host=HOST)
    assert r.status == 301
    assert r.header("location") == "https://%s/secure/a?b=1" % HOST
    r = p.get("/moved/x", host=HOST)
    assert r.status == 302
    assert r.header("location") == "http://%s:%d/here/x" % (HOST, p.http_port)
    r = p.get("/moved/x", "-L", host=HOST)
    assert r.status == 200 and r.json()["target"] == "/here/x"


@pytest.mark.parametrize("mode", ["reset", "503"])
def test_retries_turn_a_failing_endpoint_into_zero_client_errors(portico, echo, failing, mode):
    """One endpoint of two fails every request (resets, or answers 503); with a retry
    policy on the Route, 100 GETs all succeed, while the same Service through an
    Ingress without one shows the failures."""
    bad = failing(mode)
    cfg = Config()
    cfg.backend("web", [echo.a, (bad.ip, bad.port)])
    retry = {"attempts": 2, "retryOn": ["Reset"]}
    if mode == "503":
        retry = {"attempts": 2, "codes": [503]}
    cfg.add(route("retry", [{"backendRefs": [ref("web")], "retry": retry}]))
    cfg.ingress("plain", rules=[rule("plain.example.com", path("/", "web"))])
    p = portico(cfg)
    c = Client(p)
    statuses = collections.Counter(c.get("/")[0] for _ in range(100))
    assert statuses == {200: 100}, statuses
    assert bad.hits >= 10, "the failing endpoint was really tried"
    reason = "reset" if mode == "reset" else "status"
    assert p.metrics().get("portico_upstream_retries_total", reason=reason) >= 10
    plain = Client(p, host="plain.example.com")
    failed = collections.Counter(plain.get("/")[0] for _ in range(20))
    assert failed[200] < 20, failed


def test_post_with_body_is_not_replayed(portico, echo, failing):
    """A POST with a body that reached a failing endpoint is not sent again (its body
    was streamed and is gone): the client sees the failure."""
    bad = failing("503")
    cfg = Config()
    cfg.backend("web", [(bad.ip, bad.port)])
    cfg.backend("good", [echo.a])
    cfg.add(route("retry", [{"backendRefs": [ref("web")], "retry": {"attempts": 2, "codes": [503], "retryNonIdempotent": True}}]))
    p = portico(cfg)
    status, _, _ = Client(p).get("/", method="POST", body=b"payload")
    assert status == 503
    assert bad.hits == 1


def test_consistent_hash_keeps_keys_when_another_endpoint_goes(portico, backends):
    """ConsistentHash on a header: each key sticks to one endpoint, and when one
    endpoint is removed, the keys of the others stay where they were."""
    eps = [backends.echo("e%d" % i) for i in range(4)]

    def config(endpoints):
        cfg = Config()
        cfg.backend("web", endpoints)
        cfg.add(
            route(
                "hash",
                [
                    {
                        "backendRefs": [ref("web")],
                        "loadBalancer": {"type": "ConsistentHash", "consistentHash": {"header": "X-User"}},
                    }
                ],
            )
        )
        return cfg.yaml()

    p = portico(config(eps))
    c = Client(p)
    users = ["user-%d" % i for i in range(40)]
    before = {u: c.backend("/", {"X-User": u}) for u in users}
    assert all(c.backend("/", {"X-User": u}) == before[u] for u in users), "keys are sticky"
    assert len(set(before.values())) >= 3, before
    gone = eps[1]
    p.write_config(config([e for e in eps if e is not gone]))
    moved_user = next(u for u in users if before[u] == gone.name)
    wait_until(lambda: c.backend("/", {"X-User": moved_user}) != gone.name, 10, what="the removal to be live")
    after = {u: c.backend("/", {"X-User": u}) for u in users}
    for u in users:
        if before[u] != gone.name:
            assert after[u] == before[u], (u, before[u], after[u])
        else:
            assert after[u] != gone.name


def test_cookie_affinity_brings_a_client_back(portico, backends):
    """sessionAffinity sets a cookie on the first response; requests carrying it go to
    the same endpoint every time, while others are balanced."""
    eps = [backends.echo("s%d" % i) for i in range(3)]
    cfg = Config()
    cfg.backend("web", eps)
    cfg.add(route("sticky", [{"backendRefs": [ref("web")], "sessionAffinity": {"cookieName": "portico-affinity"}}]))
    p = portico(cfg)
    c = Client(p)
    status, r, data = c.get("/")
    assert status == 200
    cookie = r.getheader("set-cookie")
    assert cookie and cookie.startswith("portico-affinity="), cookie
    first = json.loads(data)["backend"]
    pair = cookie.split(";")[0]
    assert {c.backend("/", {"Cookie": pair}) for _ in range(12)} == {first}
    assert len({c.backend("/") for _ in range(12)}) == 3


def test_route_to_a_missing_service_answers_503_and_is_logged(portico):
    """A Route whose backendRef names no Service answers 503 and the diagnostic is logged
    with the Route and the reason."""
    cfg = Config()
    cfg.add(route("lost", [{"backendRefs": [ref("nowhere")]}]))
    p = portico(cfg)
    assert p.get("/", host=HOST).status == 503
    line = wait_until(lambda: re.search(r".*ServiceNotFound.*", p.log()), 10, what="the diagnostic")
    assert "lost" in line.group(0) and "Route" in line.group(0), line.group(0)


def test_older_object_keeps_a_contested_path_and_conditions_coexist(portico, echo):
    """An Ingress and a Route on the same host and path: the older keeps it (in a file,
    without creation times, namespace and name decide) and the other is logged as a
    DuplicateRule; a Route match with a header on the same path serves alongside."""
    cfg = Config()
    cfg.backend("ing", [echo.a])
    cfg.backend("rt", [echo.b])
    cfg.ingress("a-site", rules=[rule(HOST, path("/", "ing"))])
    cfg.add(route("b-site", [{"backendRefs": [ref("rt")]}]))
    cfg.add(route("c-beta", [{"matches": [{"headers": [{"name": "x-beta", "value": "1"}]}], "backendRefs": [ref("rt")]}]))
    p = portico(cfg)
    c = Client(p)
    assert c.backend("/x") == "a"
    assert c.backend("/x", {"x-beta": "1"}) == "b"
    line = wait_until(lambda: re.search(r".*DuplicateRule.*", p.log()), 10, what="the conflict to be logged")
    assert "b-site" in line.group(0) and "default/a-site" in line.group(0), line.group(0)


def test_invalid_route_refuses_the_file_as_the_api_server_would(portico, echo, tmp_path):
    """A Route breaking a CEL rule (redirect status 304) refuses the file with the same
    message the API server gives."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.add(route("ok", [{"backendRefs": [ref("web")]}]))
    p = portico(cfg)
    mark = len(p.log())
    cfg.add(
        route("bad", [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 304}}]}], hostnames=["b.example.com"])
    )
    p.write_config(cfg.yaml())
    logged = wait_until(lambda: re.search(r".*statusCode must be one of 301, 302, 303, 307, 308.*", p.log()[mark:]), 10, what="the refusal")
    assert "Route default/bad" in logged.group(0)
    assert p.get("/", host=HOST).status == 200


def test_route_tls_certificate_redirect_and_hsts(portico, echo, tmp_path):
    """tls.secretName serves the Secret's certificate for the Route's hostnames (curl
    verifies it against the test CA), plain HTTP gets a 308 to HTTPS, and HTTPS
    responses carry HSTS."""
    from test_tls import CA, https, tls_secret

    ca = CA(tmp_path)
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.add(tls_secret("shop-tls", *ca.leaf(HOST)))
    cfg.add(route("secure", [{"backendRefs": [ref("web")]}], tls="shop-tls"))
    p = portico(cfg)
    status, _, headers, rc = https(p, HOST, ca)
    assert (status, rc) == (200, 0), headers
    assert "strict-transport-security" in headers.lower()
    r = p.get("/a?b=1", host=HOST)
    assert r.status == 308
    assert r.header("location") == "https://%s:%d/a?b=1" % (HOST, p.https_port)


def test_timeouts_answer_504_in_time_and_retry_on_timeout(portico, echo, failing):
    """timeouts.backendRequest cuts a slow answer to 504 in about its time;
    timeouts.request bounds the retries too; with retryOn Timeout, an endpoint that
    answers too slowly is left for the other, and clients see no error."""
    slow = failing("slow")
    cfg = Config()
    cfg.backend("one", [(slow.ip, slow.port)])
    cfg.backend("two", [echo.a, (slow.ip, slow.port)])
    cfg.add(route("cut", [{"backendRefs": [ref("one")], "timeouts": {"backendRequest": "500ms"}}], hostnames=["cut.example.com"]))
    cfg.add(
        route(
            "bound",
            [{"backendRefs": [ref("two")], "timeouts": {"request": "300ms"},
              "retry": {"attempts": 3, "retryOn": ["Timeout"], "perTryTimeout": "1s"}}],
            hostnames=["bound.example.com"],
        )
    )  # fmt: skip
    cfg.add(
        route(
            "retry",
            [{"backendRefs": [ref("two")], "retry": {"attempts": 1, "retryOn": ["Timeout"], "perTryTimeout": "500ms"}}],
            hostnames=["retry.example.com"],
        )
    )
    p = portico(cfg)
    started = time.monotonic()
    assert p.get("/", host="cut.example.com").status == 504
    assert time.monotonic() - started < 1.5
    bound = Client(p, host="bound.example.com")
    for _ in range(4):
        started = time.monotonic()
        status, _, _ = bound.get("/")
        assert status in (200, 504)
        assert time.monotonic() - started < 1.0, "the request timeout bounds every attempt"
    c = Client(p, host="retry.example.com")
    for _ in range(10):
        assert c.backend("/") == "a"
    assert slow.hits >= 5, "the slow endpoint was tried"


def test_least_request_avoids_a_busy_endpoint(portico, echo, failing):
    """LeastRequest sends new requests to the endpoint with fewer in flight: while one
    endpoint sits on its requests, nearly all go to the other; round robin would give
    it half."""
    slow = failing("slow")
    cfg = Config()
    cfg.backend("web", [echo.a, (slow.ip, slow.port)])
    cfg.add(route("lr", [{"backendRefs": [ref("web")], "loadBalancer": {"type": "LeastRequest"}}]))
    p = portico(cfg)
    results = staggered(20, lambda: Client(p).get("/")[0])
    assert results.count(200) == 20, results
    assert slow.hits <= 3, "the busy endpoint got %d of 20" % slow.hits
