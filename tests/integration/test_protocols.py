"""Protocols other than a plain HTTP/1.1 exchange: WebSocket upgrades, HTTP/2 from
clients, and gRPC (HTTP/2 with trailers) to h2c backends."""

import json
import socket

import grpc
import pytest
from websockets.sync.client import connect as ws_connect

from harness import wait_until
from k8s import Config, path, rule

WS_HOST = "ws.example.com"
GRPC_HOST = "grpc.example.com"
H2_HOST = "h2.example.com"


def ws_through(p, url_path, host=WS_HOST):
    """A WebSocket client connection to `host` that goes through Portico."""
    sock = socket.create_connection((p.ip, p.http_port), timeout=10)
    return ws_connect("ws://%s:%d%s" % (host, p.http_port, url_path), sock=sock, open_timeout=10, max_size=None)


def test_websocket_round_trip(portico, backends):
    ws_be = backends.ws("ws")
    cfg = Config()
    cfg.backend("chat", [ws_be])
    cfg.ingress("ws", rules=[rule(WS_HOST, path("/chat", "chat"))])
    p = portico(cfg)
    with ws_through(p, "/chat/room1") as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["backend"] == "ws"
        assert hello["path"] == "/chat/room1"
        assert hello["headers"]["host"] == "%s:%d" % (WS_HOST, p.http_port)
        assert hello["headers"]["x-forwarded-for"] == "127.0.0.1"
        for i in range(20):
            ws.send("message %d" % i)
            assert ws.recv(timeout=10) == "message %d" % i
        blob = bytes(range(256)) * 4096  # 1 MiB in one binary frame
        ws.send(blob)
        assert ws.recv(timeout=20) == blob
        assert p.metrics().get("portico_upgraded_connections") == 1
    # The tunnel is torn down when the client closes.
    wait_until(
        lambda: p.metrics().get("portico_upgraded_connections") == 0, 10, what="upgraded connections gauge to drop"
    )


def test_websocket_upgrade_refused_by_backend_is_a_plain_response(portico, echo):
    """A backend that answers the upgrade with an ordinary response: the client gets
    that response, and no tunnel is left open."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("ws", rules=[rule(WS_HOST, path("/", "web"))])
    p = portico(cfg)
    r = p.get(
        "/not-ws",
        host=WS_HOST,
        headers=["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="],
    )
    assert r.status == 200
    assert r.json()["headers"]["upgrade"] == "websocket"
    assert p.metrics().get("portico_upgraded_connections") == 0


def test_http2_prior_knowledge_client_to_http1_backend(portico, echo):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("h2", rules=[rule(H2_HOST, path("/", "web"))])
    p = portico(cfg)
    r = p.get("/h2?x=1", "--http2-prior-knowledge", host=H2_HOST)
    assert r.status == 200, r.stderr
    assert r.version == "HTTP/2"
    req = r.json()
    assert req["version"] == "HTTP/1.1"
    assert req["target"] == "/h2?x=1"
    assert req["headers"]["host"] == "%s:%d" % (H2_HOST, p.http_port)
    assert req["headers"]["x-forwarded-for"] == "127.0.0.1"

    body = b"z" * 300_000
    r = p.get("/upload", "--http2-prior-knowledge", host=H2_HOST, data=body)
    assert r.status == 200, r.stderr
    assert r.json()["body_length"] == len(body)
    assert r.json()["method"] == "POST"

    # HTTP/2 on the plain port is routed by :authority like any other request.
    r = p.get("/", "--http2-prior-knowledge", host="nobody.example.com")
    assert r.status == 404
    assert r.version == "HTTP/2"


def grpc_route(backends, app_protocol):
    be = backends.grpc("g")
    cfg = Config()
    cfg.backend("grpc-svc", [be], port=50051, port_name="grpc", app_protocol=app_protocol)
    cfg.ingress("grpc", rules=[rule(GRPC_HOST, path("/", "grpc-svc", port=50051))])
    return cfg


def grpc_channel(p):
    return grpc.insecure_channel(
        "%s:%d" % (p.ip, p.http_port), options=[("grpc.default_authority", GRPC_HOST), ("grpc.enable_retries", 0)]
    )


@pytest.mark.parametrize("app_protocol", ["grpc", "kubernetes.io/h2c"])
def test_grpc_unary_and_server_streaming(portico, backends, app_protocol):
    """gRPC through Portico to an h2c backend chosen by the Service port's appProtocol."""
    p = portico(grpc_route(backends, app_protocol))
    with grpc_channel(p) as ch:
        unary = ch.unary_unary("/portico.test.Echo/Unary")
        resp = json.loads(unary(b"hello", timeout=15, metadata=[("x-request-id", "grpc-req-1")]))
        assert resp["backend"] == "g"
        assert resp["message"] == "hello"
        assert resp["metadata"]["x-forwarded-for"] == "127.0.0.1"
        assert resp["metadata"]["x-request-id"] == "grpc-req-1"

        stream = ch.unary_stream("/portico.test.Echo/Stream")
        got = list(stream(b"200", timeout=15))
        assert got == [b"%d:g" % i for i in range(200)]

        # Status and message travel in trailers; they must reach the client intact.
        fail = ch.unary_unary("/portico.test.Echo/Fail")
        with pytest.raises(grpc.RpcError) as e:
            fail(b"no such thing", timeout=15)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert e.value.details() == "no such thing"

    m = p.metrics()
    # All of it on one shared HTTP/2 connection to the backend.
    assert m.get("portico_upstream_connections_opened_total") == 1


def test_grpc_many_concurrent_calls(portico, backends):
    p = portico(grpc_route(backends, "grpc"))
    with grpc_channel(p) as ch:
        unary = ch.unary_unary("/portico.test.Echo/Unary")
        futures = [unary.future(b"call %d" % i, timeout=30) for i in range(100)]
        msgs = sorted(json.loads(f.result())["message"] for f in futures)
    assert msgs == sorted("call %d" % i for i in range(100))
