"""The admin port: health, readiness and the Prometheus metrics a user charts."""

import re
import socket
import time
from pathlib import Path

from harness import wait_until
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
    rule_labels = dict(namespace="default", kind="Ingress", ingress="site", service="web", host=HOST, path="/app")
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


def metric_names(m):
    """Family names on a metrics page (histogram samples under their family's name)."""
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n, _, _ in m.samples if n.startswith(("portico_", "process_"))}


def test_readme_metric_table_lists_exactly_what_is_exported(portico, echo):
    """The README's metric table and /metrics name the same metrics: every listed one
    exists (from the start, before any traffic of its kind), and none is unlisted."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("| metric | labels |", 1)[1].split("\n\n", 1)[0]
    listed = set()
    for row in table.splitlines()[2:]:
        listed |= set(re.findall(r"`((?:portico|process)_[a-z_]+)`", row.split("|")[1]))
    p = portico(site(echo))
    assert p.get("/app/x", host=HOST).status == 200
    exported = metric_names(p.metrics())
    # Only a cluster has watches to report on.
    cluster_only = {"portico_watch_errors_total", "portico_watch_synced"}
    assert exported == listed - cluster_only, (sorted(exported - listed), sorted(listed - exported))


def test_alerting_series_exist_before_the_first_event(portico, echo):
    """`rate()` and `absent()` need a series before the first increment: every retry
    and handshake-failure reason at 0, the default certificate's expiry, the version,
    readiness and the process metrics."""
    m = portico(site(echo)).metrics()
    for reason in ("connect-failure", "reset", "timeout", "status"):
        assert ({"reason": reason}, 0.0) in m.series("portico_upstream_retries_total"), reason
    assert ({"reason": "timeout"}, 0.0) in m.series("portico_tls_handshake_errors_total")
    assert m.get("portico_config_reload_errors_total") == 0 and m.has("portico_config_reload_errors_total")
    # The default certificate (generated at start) serves names no rule lists.
    default = [ls for ls, v in m.series("portico_ssl_expire_time_seconds") if ls["host"] == ""]
    assert len(default) == 1 and m.get("portico_ssl_expire_time_seconds", host="") > time.time(), default
    assert [ls for ls, v in m.series("portico_build_info") if v == 1][0]["version"]
    assert m.get("portico_ready") == 1
    assert m.get("process_resident_memory_bytes") > 1 << 20
    assert 0 < m.get("process_open_fds") < m.get("process_max_fds")
    assert abs(m.get("process_start_time_seconds") - time.time()) < 120


def test_invented_methods_share_one_series(portico, echo):
    """Issue: 20,000 requests with made-up methods (`MAAAAAAX /x`) grew /metrics to
    212 MB. Each invented method is now counted as `_OTHER`: 3,000 of them, on a rule
    and on no rule, add two series per family, and the page stays small."""
    p = portico(site(echo))
    assert p.get("/app/x", host=HOST).status == 200
    before = len(p.admin("/metrics")[1])
    sent = 0
    with socket.create_connection((p.ip, p.http_port), timeout=30) as s:
        f = s.makefile("rb")
        for i in range(3000):
            method = "M%sX" % "".join(chr(65 + (i // 26**k) % 26) for k in range(3))
            host = HOST if i % 2 else "unknown.example.com"
            s.sendall(("%s /app/x HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n" % (method, host)).encode())
            status = f.readline()
            assert status.startswith(b"HTTP/1.1 "), status
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            f.read(length)
            sent += 1
    m = p.metrics()
    requests = m.series("portico_requests_total")
    assert sum(v for ls, v in requests if ls["method"] == "_OTHER") == sent
    methods = {ls["method"] for ls, _ in requests}
    assert methods == {"GET", "_OTHER"}, methods
    assert len(requests) <= 4, requests
    buckets = [ls for ls, _ in m.series("portico_request_duration_seconds_bucket") if ls["method"] == "_OTHER"]
    assert len({(ls["ingress"], ls["status"]) for ls in buckets}) <= 2
    # Two label sets more (on the rule, on no rule), not 3,000.
    assert len(p.admin("/metrics")[1]) < 3 * before


def test_series_of_removed_rules_are_dropped(portico, echo):
    """An Ingress, a Service or a host that leaves the configuration takes its series
    with it; the rules that stay keep theirs, counts and all."""
    two = site(echo)
    two.backend("old", [echo.b])
    two.ingress("gone", rules=[rule("gone.example.com", path("/", "old"))])
    p = portico(two)
    assert p.get("/app/x", host=HOST).status == 200
    assert p.get("/", host="gone.example.com").status == 200
    m = p.metrics()
    assert m.get("portico_requests_total", ingress="gone") == 1
    assert m.get("portico_requests_total", ingress="site") == 1

    p.replace_config(site(echo).yaml())
    wait_until(lambda: p.get("/", host="gone.example.com").status == 404, 10, what="the removed Ingress gone")
    m = p.metrics()
    for family in ("portico_requests_total", "portico_request_duration_seconds_count", "portico_response_size_bytes_sum"):
        assert [ls for ls, _ in m.series(family) if ls["ingress"] == "gone" or ls["service"] == "old"] == [], family
    assert m.get("portico_requests_total", ingress="site", method="GET", status="200") == 1
