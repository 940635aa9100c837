"""Portico follows edits to its `--from-file` file: a good edit is live within a
second, a broken one is reported and changes nothing, and neither disturbs traffic
or open connections."""

import json
import re
import socket
import time

import pytest
from websockets.sync.client import connect as ws_connect

from harness import wait_until
from k8s import Config, path, rule

HOST = "reload.example.com"
LIVE_WITHIN = 1.0


def config(echo, *extra_paths, ws=None):
    cfg = Config()
    cfg.backend("a", [echo.a])
    cfg.backend("b", [echo.b])
    if ws is not None:
        cfg.backend("ws", [ws])
        extra_paths += (path("/ws", "ws"),)
    cfg.ingress("site", rules=[rule(HOST, path("/", "a"), *extra_paths)])
    return cfg


def backend_of(p, url_path):
    r = p.get(url_path, host=HOST)
    assert r.status == 200, r
    return r.json()["backend"]


def time_until_live(p, url_path, want, timeout=10):
    """Seconds until `url_path` is served by `want`; every answer on the way must be
    a 200 from one of the two tables."""
    start = time.monotonic()
    while True:
        got = backend_of(p, url_path)
        took = time.monotonic() - start
        if got == want:
            return took
        assert took < timeout, "edit not live after %ss" % timeout
        time.sleep(0.01)


@pytest.mark.parametrize("how", ["in-place", "rename"])
def test_good_edit_is_live_within_a_second(portico, echo, how):
    p = portico(config(echo))
    assert backend_of(p, "/new") == "a"
    reloads = p.metrics().get("portico_table_reloads_total")
    new = config(echo, path("/new", "b")).yaml()
    if how == "rename":
        p.replace_config(new)
    else:
        p.write_config(new)
    took = time_until_live(p, "/new", "b")
    print("%s edit live after %.3fs" % (how, took))
    assert took <= LIVE_WITHIN, "edit took %.2fs to go live" % took
    assert backend_of(p, "/") == "a"
    m = p.metrics()
    assert m.get("portico_table_reloads_total") > reloads
    assert m.get("portico_table_routes") == 2


def test_successive_renames_are_all_followed(portico, echo):
    """Editors and ConfigMap volumes replace the file again and again; each one counts."""
    p = portico(config(echo))
    for i in range(3):
        p.replace_config(config(echo, path("/v%d" % i, "b")).yaml())
        assert time_until_live(p, "/v%d" % i, "b") <= LIVE_WITHIN
        if i:
            # The previous edit's route is gone again.
            assert backend_of(p, "/v%d" % (i - 1)) == "a"


def new_log(p, since):
    return p.log()[since:]


def test_broken_edit_keeps_last_good_table_and_says_why(portico, echo):
    p = portico(config(echo, path("/keep", "b")))
    assert backend_of(p, "/keep") == "b"
    mark = len(p.log())

    # A YAML syntax error: an unclosed flow sequence.
    broken = config(echo, path("/keep", "b")).yaml() + "---\nkind: Ingress\nspec: [unclosed\n"
    p.write_config(broken)
    logged = wait_until(
        lambda: re.search(r".*(ERROR|WARN|error|warn).*", new_log(p, mark)), 10, what="the broken edit to be logged"
    )
    line = logged.group(0)
    assert "portico.yaml" in line, line
    assert re.search(r"line|yaml|parse", line, re.I), line

    # Still served by the last good table, through and after the broken edit.
    for _ in range(10):
        assert backend_of(p, "/keep") == "b"
        assert backend_of(p, "/") == "a"
    assert p.admin("/readyz")[0] == 200

    # Fixing the file brings the new table in.
    p.write_config(config(echo, path("/keep", "b"), path("/fixed", "b")).yaml())
    assert time_until_live(p, "/fixed", "b") <= LIVE_WITHIN


def test_deleting_a_route_takes_it_out(portico, echo):
    p = portico(config(echo, path("/gone", "b")))
    assert backend_of(p, "/gone") == "b"
    p.write_config(config(echo).yaml())
    assert time_until_live(p, "/gone", "a") <= LIVE_WITHIN


def test_endpoint_changes_are_followed(portico, echo):
    """Scaling a Service (its EndpointSlice changing) moves traffic without a restart."""
    cfg = Config()
    cfg.service("web", target_port=echo.a.port)
    cfg.endpoint_slice("web", [(echo.a.ip, echo.a.port)], name="web-slice")
    cfg.ingress("site", rules=[rule(HOST, path("/", "web"))])
    p = portico(cfg)
    assert backend_of(p, "/") == "a"

    moved = Config()
    moved.service("web", target_port=echo.b.port)
    moved.endpoint_slice("web", [(echo.b.ip, echo.b.port)], name="web-slice")
    moved.ingress("site", rules=[rule(HOST, path("/", "web"))])
    p.write_config(moved.yaml())
    assert time_until_live(p, "/", "b") <= LIVE_WITHIN


def test_websocket_survives_a_reload(portico, echo, backends):
    """The failure ingress-nginx users know best: a config change cut every WebSocket.
    Here the tunnel carries on across table swaps."""
    ws_be = backends.ws("ws")
    p = portico(config(echo, ws=ws_be))
    sock = socket.create_connection((p.ip, p.http_port), timeout=10)
    with ws_connect("ws://%s:%d/ws" % (HOST, p.http_port), sock=sock, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["backend"] == "ws"
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        for i in range(3):
            p.write_config(config(echo, path("/r%d" % i, "b"), ws=ws_be).yaml())
            time_until_live(p, "/r%d" % i, "b")
            ws.send("after %d" % i)
            assert ws.recv(timeout=10) == "after %d" % i


def test_invalid_object_is_left_out_and_the_rest_serves(portico, echo):
    """One bad path in one Ingress is skipped and reported; every other route, even in
    the same Ingress, keeps working."""
    cfg = config(echo, path("/ok", "b"))
    cfg.ingress("other", rules=[rule("other.example.com", path("/", "b"))])
    p = portico(cfg)
    mark = len(p.log())
    bad = config(echo, path("/ok", "b"), path("/bad", "b", kind="Bogus"), path("/added", "b"))
    bad.ingress("other", rules=[rule("other.example.com", path("/", "b"))])
    p.write_config(bad.yaml())
    assert time_until_live(p, "/added", "b") <= LIVE_WITHIN
    assert backend_of(p, "/ok") == "b"
    assert backend_of(p, "/bad") == "a"  # the skipped path falls to "/"
    r = p.get("/", host="other.example.com")
    assert r.json()["backend"] == "b"
    logged = wait_until(lambda: re.search(r".*Bogus.*", new_log(p, mark)), 10, what="the bad path to be logged")
    assert "site" in logged.group(0), logged.group(0)


def test_starting_on_a_broken_file_fails_loudly(tmp_path):
    """A process started on a file it cannot read exits non-zero and says where the
    problem is, instead of serving nothing while reporting healthy."""
    import subprocess

    from harness import free_port, portico_bin

    f = tmp_path / "broken.yaml"
    f.write_text("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec: [unclosed\n")
    out = subprocess.run(
        [
            portico_bin(), "--from-file", f,
            "--http-port", str(free_port()), "--admin-port", str(free_port()),
            "--https-port", str(free_port()), "--bind-address", "127.0.0.1",
        ],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode != 0
    assert "broken.yaml" in out.stderr
    assert re.search(r"broken\.yaml:\d+", out.stderr), out.stderr[-2000:]
