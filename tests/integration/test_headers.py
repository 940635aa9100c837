"""What the backend sees of a request, and what the client sees of a response:
forwarded headers, request IDs, hop-by-hop headers, Host, path and body."""

import hashlib
import re

import pytest

from k8s import Config, path, rule

HOST = "hdr.example.com"


@pytest.fixture
def p(portico, echo):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("hdr", rules=[rule(HOST, path("/", "web"))])
    return portico(cfg)


def seen(p, url_path="/", *curl_args, **kw):
    """The request as the backend received it."""
    r = p.get(url_path, *curl_args, host=kw.pop("host", HOST), **kw)
    assert r.status == 200, r
    return r.json()


def test_forwarded_headers_describe_the_client(p):
    req = seen(p)
    h = req["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "%s:%d" % (HOST, p.http_port)
    assert h["x-forwarded-port"] == str(p.http_port)


def test_client_cannot_spoof_forwarded_for(p):
    """A client's own X-Forwarded-For / X-Real-IP are replaced by its real address."""
    h = seen(p, headers=["X-Forwarded-For: 203.0.113.9", "X-Real-IP: 203.0.113.9"])["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1"


def test_request_id_is_generated_when_absent(p):
    ids = {seen(p)["headers"]["x-request-id"] for _ in range(5)}
    assert len(ids) == 5, "request IDs repeat"
    for i in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", i), i


def test_request_id_sent_by_client_is_kept(p):
    h = seen(p, headers=["X-Request-ID: trace-abc-123"])["headers"]
    assert h["x-request-id"] == "trace-abc-123"


def test_host_header_preserved(p):
    """The backend sees the Host the client asked for, not the endpoint's address."""
    assert seen(p)["headers"]["host"] == "%s:%d" % (HOST, p.http_port)
    assert seen(p, host="HDR.example.com:8080")["headers"]["host"] == "HDR.example.com:8080"


def test_hop_by_hop_request_headers_removed(p):
    req = seen(
        p,
        headers=[
            "Connection: keep-alive, X-Hop-Named",
            "Connection: X-Second-Hop",
            "X-Hop-Named: per-connection",
            "X-Second-Hop: per-connection too",
            "Keep-Alive: timeout=5",
            "Proxy-Authorization: Basic Zm9vOmJhcg==",
            "Proxy-Connection: keep-alive",
            "TE: gzip",
            "Authorization: Bearer end-to-end",
            "X-End-To-End: kept",
        ],
    )
    names = set(req["header_names"])
    for gone in ["x-hop-named", "x-second-hop", "keep-alive", "proxy-authorization", "proxy-connection", "te"]:
        assert gone not in names, gone
    assert "keep-alive" not in req["headers"].get("connection", "").lower()
    assert "x-hop-named" not in req["headers"].get("connection", "").lower()
    assert req["headers"]["authorization"] == "Bearer end-to-end"
    assert req["headers"]["x-end-to-end"] == "kept"


def test_hop_by_hop_response_headers_removed(p):
    r = p.get("/hop", host=HOST)
    assert r.status == 200
    assert r.header("x-resp-end") == "kept"
    assert r.header("x-resp-hop") is None
    assert r.header("keep-alive") is None


def test_method_path_query_and_body_reach_backend_unchanged(p):
    body = bytes(range(256)) * 100
    target = "/a/b%20c/../d;p?x=1&y=%2F&z=%E2%9C%93"
    req = seen(p, target, "--path-as-is", "-X", "PATCH", data=body, headers=["Content-Type: application/octet-stream"])
    assert req["method"] == "PATCH"
    assert req["target"] == target
    assert req["body_length"] == len(body)
    assert req["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_backend_status_and_headers_reach_client(p):
    for code in [201, 204, 302, 404, 418, 500, 503]:
        r = p.get("/status/%d" % code, host=HOST)
        assert r.status == code
        if code != 204:
            assert r.json()["backend"] == "a"


def test_repeated_response_headers_all_reach_client(p):
    """Two Set-Cookie headers stay two headers (logins depend on it)."""
    r = p.get("/cookies", host=HOST)
    assert r.status == 200
    assert r.headers["set-cookie"] == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
