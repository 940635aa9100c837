"""`portico explain`: which object and rule serve a request, what they do to it, and why
no other rule of the host does. The real binary's subcommand on the shipped examples,
and the admin port's `/explain` of a running instance, checked against where real
requests go."""

import http.client
import json
import subprocess
import urllib.parse

from harness import REPO, portico_bin
from k8s import Config, path, rule

HOST = "explain.example.com"
ROUTE_HOST = "canary.example.com"
CANARY = REPO / "examples" / "canary.yaml"
QUICKSTART = REPO / "examples" / "quickstart.yaml"


def explain(*args):
    return subprocess.run(
        [str(portico_bin()), "explain", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_cli_explains_the_canary_example():
    """The split rule serves a plain request; the header rule is named with the header
    the request lacks; the endpoints are the ones the file's EndpointSlices list."""
    r = explain("--from-file", CANARY, "shop.localhost", "/cart")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "host:     exact host shop.localhost" in out
    assert 'served by: Route default/shop rules[1] match 0: host shop.localhost, Prefix "/"' in out
    assert (
        "split             [upstream] weighted split over 2: default/shop-v1:80 weight 90 (90%), "
        "default/shop-v2:80 weight 10 (10%)"
    ) in out
    assert "retry             [upstream] up to 1 more attempt on connect failure, reset" in out
    assert "timeouts          [upstream] request 10s" in out
    assert "default/shop-v1:80 (HTTP/1.1, weight 90): 127.0.0.1:9001" in out
    assert "conditions-not-met" in out
    assert 'header x-canary is missing, the rule needs x-canary = "always"' in out

    r = explain("--from-file", CANARY, "--header", "X-Canary: always", "--output", "json", "Shop.localhost:8080", "/cart")
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)
    assert e["result"] == "rule"
    served = e["served_by"]
    assert (served["kind"], served["namespace"], served["name"]) == ("Route", "default", "shop")
    assert (served["rule"], served["path_index"], served["path_type"]) == (0, 0, "Prefix")
    assert served["conditions"] == ['header x-canary = "always"']
    assert e["backends"] == [{"name": "default/shop-v2:80", "protocol": "HTTP/1.1", "endpoints": ["127.0.0.1:9002"]}]
    # The split rule has the same path and is less specific: tried after the winner.
    assert [(n["rule"]["rule"], n["reason"]) for n in e["not_chosen"]] == [(1, "tried-after-winner")]


def test_cli_no_match_exits_1_with_the_reasons():
    """A request nothing serves: exit status 1, a 404, and every rule of the chosen
    host block with why it did not match."""
    r = explain("--from-file", QUICKSTART, "--output", "json", "nowhere.localhost", "/x")
    assert r.returncode == 1, (r.stdout, r.stderr)
    e = json.loads(r.stdout)
    assert (e["result"], e["status"]) == ("no-route", 404)
    assert e["host_block"]["kind"] == "catch-all"
    reasons = {(n["rule"]["path"], n["rule"]["path_type"], n["reason"]) for n in e["not_chosen"]}
    assert ("/api", "Prefix", "path-does-not-match") in reasons
    r = explain("--from-file", QUICKSTART, "nowhere.localhost", "/x")
    assert r.returncode == 1
    assert "served by: nothing: 404" in r.stdout


def test_cli_bad_input_exits_2_with_a_message(tmp_path):
    r = explain("--from-file", tmp_path / "missing.yaml", "a.com", "/")
    assert r.returncode == 2
    assert "cannot read" in r.stderr and "missing.yaml" in r.stderr
    r = explain("--from-file", QUICKSTART, "--header", "no colon", "a.com", "/")
    assert r.returncode == 2
    assert "expected 'Name: value'" in r.stderr
    r = explain("--from-file", QUICKSTART, "a.com", "relative")
    assert r.returncode == 2 and "must start with '/'" in r.stderr
    # Serving flags belong to serving: explain refuses them rather than ignore them.
    r = subprocess.run(
        [str(portico_bin()), "--http-port", "1", "explain", "a.com", "/"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2


def site(echo):
    """An Ingress with `/` and `/api` Prefix and `/api` Exact; a younger Ingress asking
    for `/api` Prefix again (refused); a Route with a header match and a regular
    expression on another host."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    cfg.backend("api", [echo.b])
    cfg.backend("exact", [echo.c])
    cfg.ingress(
        "site",
        rules=[rule(HOST, path("/", "web"), path("/api", "api"), path("/api", "exact", kind="Exact"))],
    )
    cfg.ingress("takeover", rules=[rule(HOST, path("/api/", "exact"))])
    cfg.add(
        {
            "apiVersion": "portico.dev/v1alpha1",
            "kind": "Route",
            "metadata": {"name": "canary", "namespace": "default"},
            "spec": {
                "hostnames": [ROUTE_HOST],
                "rules": [
                    {
                        "matches": [{"headers": [{"name": "X-Canary", "value": "always"}]}],
                        "backendRefs": [{"name": "api", "port": 80}],
                    },
                    {
                        "matches": [{"path": {"type": "RegularExpression", "value": "/items/[0-9]+"}}],
                        "backendRefs": [{"name": "exact", "port": 80}],
                    },
                    {"backendRefs": [{"name": "web", "port": 80}]},
                ],
            },
        }
    )
    return cfg


def admin_explain(p, host, target, method="GET", headers=()):
    params = [("host", host), ("path", target), ("method", method)] + [("header", h) for h in headers]
    status, body = p.admin("/explain?" + urllib.parse.urlencode(params))
    assert status == 200, body
    return json.loads(body)


def sent(p, host, target, method="GET", headers=()):
    """The echo backend that really answered the request."""
    conn = http.client.HTTPConnection(p.ip, p.http_port, timeout=30)
    h = {"Host": host}
    h.update(line.split(": ", 1) for line in headers)
    conn.request(method, target, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, (json.loads(data)["backend"] if r.status == 200 else None)


def test_admin_explain_agrees_with_routing(portico, echo, tmp_path):
    """For requests across both hosts, `/explain` on the admin port names the service
    whose endpoint really answered, and 404 where the proxy answers 404."""
    cfg = site(echo)
    p = portico(cfg)
    by_service = {"web": "a", "api": "b", "exact": "c"}
    cases = [
        (HOST, "/", ()),
        (HOST, "/api", ()),
        (HOST, "/api/x", ()),
        (HOST, "/apix", ()),
        (HOST, "/API", ()),
        (ROUTE_HOST, "/", ()),
        (ROUTE_HOST, "/items/42", ()),
        (ROUTE_HOST, "/items/x", ()),
        (ROUTE_HOST, "/items/42", ("X-Canary: always",)),
        (ROUTE_HOST, "/items/42", ("X-Canary: sometimes",)),
        ("other.example.com", "/", ()),
    ]
    for host, target, headers in cases:
        e = admin_explain(p, host, target, headers=headers)
        status, backend = sent(p, host, target, headers=headers)
        if e.get("served_by") is None:
            assert (status, e["status"]) == (404, 404), (host, target)
        else:
            assert status == 200
            assert by_service[e["served_by"]["service"]] == backend, (host, target, headers, e["served_by"])
            endpoints = {ep for b in e["backends"] for ep in b["endpoints"]}
            assert getattr(echo, backend).addr in endpoints

    # The CLI reads the same file and gives the same answer as the live table.
    live = admin_explain(p, ROUTE_HOST, "/items/42", headers=("X-Canary: always",))
    r = explain("--from-file", p.file, "--output", "json", "-H", "X-Canary: always", ROUTE_HOST, "/items/42")
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    for e in (live, cli):
        e.pop("generation")
    assert cli == live


def test_admin_explain_names_losers_and_the_refused_rule(portico, echo):
    """`/api/x`: the `/api` Prefix serves; `/` is shorter; the Exact `/api` does not match;
    the younger Ingress's `/api/` was refused when the table was built, kept by `site`.
    On the Route host the regular expression outranks the header match by length."""
    p = portico(site(echo))
    e = admin_explain(p, HOST, "/api/x")
    served = e["served_by"]
    assert (served["kind"], served["name"], served["rule"], served["path_index"]) == ("Ingress", "site", 0, 1)
    reasons = [(n["rule"]["name"], n["rule"]["path"], n["reason"]) for n in e["not_chosen"]]
    assert reasons == [
        ("site", "/", "shorter-path"),
        ("takeover", "/api/", "refused-duplicate"),
        ("site", "/api", "path-does-not-match"),
    ]
    refused = e["not_chosen"][1]
    assert (refused["kept_by"]["name"], refused["kept_by"]["path"]) == ("site", "/api")

    e = admin_explain(p, HOST, "/api")
    assert e["served_by"]["path_type"] == "Exact"
    assert ("site", "/api", "lower-path-type-precedence") in [
        (n["rule"]["name"], n["rule"]["path"], n["reason"]) for n in e["not_chosen"]
    ]

    e = admin_explain(p, ROUTE_HOST, "/items/42", headers=("X-Canary: always",))
    assert (e["served_by"]["rule"], e["served_by"]["path_type"]) == (1, "RegularExpression")
    assert [(n["rule"]["rule"], n["reason"]) for n in e["not_chosen"]] == [(0, "shorter-path"), (2, "shorter-path")]

    e = admin_explain(p, ROUTE_HOST, "/x", method="POST", headers=("X-Canary: sometimes",))
    header_rule = next(n for n in e["not_chosen"] if n["rule"]["rule"] == 0)
    assert header_rule["reason"] == "conditions-not-met"
    assert header_rule["unmet"] == ['header x-canary: no value = "always"']

    assert p.admin("/explain?path=/")[0] == 400
    assert p.admin("/explain?host=a.com&path=nope")[0] == 400
