"""The admin port: health, readiness and the Prometheus metrics a user charts."""

import time

from k8s import Config, path, rule

HOST = "app.example.com"


def site(echo):
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.ingress("site", rules=[rule(HOST, path("/app", "web"), path("/exact", "web", kind="Exact"))])
    return cfg


def test_healthz_and_readyz(portico, echo):
    p = portico(site(echo))
    assert p.admin("/healthz")[0] == 200
    assert p.admin("/readyz")[0] == 200
    assert p.admin("/nope")[0] == 404


def test_request_metrics_carry_the_rule_that_matched(portico, echo):
    p = portico(site(echo))
    for _ in range(3):
        assert p.get("/app/x", host=HOST).status == 200
    assert p.get("/app/y", host=HOST, data=b"abc").status == 200
    assert p.get("/app/status/500", host=HOST).status == 500
    assert p.get("/nothing", host=HOST).status == 404

    m = p.metrics()
    rule_labels = dict(namespace="default", ingress="site", service="web", host=HOST, path="/app")
    assert m.get("portico_requests_total", method="GET", status="200", **rule_labels) == 3
    assert m.get("portico_requests_total", method="POST", status="200", **rule_labels) == 1
    assert m.get("portico_requests_total", method="GET", status="500", **rule_labels) == 1
    # The URL is never a label value: /app/x and /app/y are both counted under /app.
    assert not any(ls.get("path", "").startswith("/app/") for ls, _ in m.series("portico_requests_total"))
    # A request no rule matched is still counted, with empty rule labels.
    assert m.get("portico_requests_total", status="404", ingress="") == 1

    assert m.get("portico_request_duration_seconds_count", method="GET", status="200", **rule_labels) == 3
    assert m.get("portico_upstream_response_duration_seconds_count", method="GET", status="200", **rule_labels) == 3
    assert m.get("portico_request_size_bytes_count", method="POST", **rule_labels) == 1
    assert m.get("portico_response_size_bytes_sum", method="GET", status="200", **rule_labels) > 0
    assert m.get("portico_upstream_connections_opened_total") >= 1
    assert m.get("portico_upstream_connections_reused_total") >= 1
    assert m.has("portico_downstream_connections")


def test_table_metrics(portico, echo):
    before = time.time()
    p = portico(site(echo))
    m = p.metrics()
    assert m.get("portico_table_routes") == 2
    assert m.get("portico_table_reloads_total") >= 1
    ts = m.get("portico_table_last_reload_timestamp_seconds")
    assert before - 1 <= ts <= time.time() + 1
