"""ingress-nginx's own Grafana dashboards, unchanged, against Portico with
`--ingress-nginx-metrics`: a real Prometheus (built from upstream source by
scripts/prometheus.sh) scrapes Portico while real clients (oha, curl) send traffic
through Ingresses to real backends, then every panel query of both dashboards runs
through Prometheus's HTTP API and must return data.

The dashboards are in tests/monitoring/ingress-nginx/ (see its README.md for their
source). Grafana's template variables are filled as a user would: first "All" (the
dashboards' default), then each variable set to the first value its own query offers.
Prometheus scrapes as in a cluster: the target carries the pod's `namespace` (so
Portico's `namespace`, the Ingress's, becomes `exported_namespace`, which the
dashboards select on) and `kubernetes_pod_name`, the label ingress-nginx's Prometheus
manifests relabel the pod name to.

    scripts/check-ingress-nginx-dashboards.sh     # builds Prometheus if needed, runs this

Panels that cannot show data from Portico are listed in EMPTY_PANELS with the
reason; the test fails if one of them starts returning data (so the list stays true)
and if any other panel returns nothing.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))

from harness import Backend, Portico, Process, curl, free_port, wait_for_port, wait_until  # noqa: E402
from k8s import Config, path, rule  # noqa: E402

DASHBOARDS = HERE / "ingress-nginx"
CONTROLLER_NAMESPACE = "ingress-nginx"
CONTROLLER_POD = "portico-7d9f8-x2x4z"

# (dashboard file, panel title) -> why Portico cannot fill it.
EMPTY_PANELS = {
    ("nginx.json", "Last Config Failed"): (
        "counts controllers whose last reload failed (`... == 0`): empty unless a reload "
        "failed, in ingress-nginx too; a Portico table swap does not fail (broken objects "
        "become diagnostics, portico_diagnostics)"
    ),
}

# Empty only when one Ingress is picked, as with ingress-nginx itself.
EMPTY_WHEN_PICKED = {
    ("nginx.json", "Ingress Certificate Expiry"): (
        "ssl_expire_time_seconds is labelled by host, not Ingress (as ingress-nginx's), so "
        "`ingress=~\"<one Ingress>\"` matches nothing"
    ),
}


def prometheus_bin():
    if os.environ.get("PORTICO_PROMETHEUS"):
        return os.environ["PORTICO_PROMETHEUS"]
    out = subprocess.run(
        [str(HERE.parent.parent / "scripts" / "prometheus.sh"), "--which"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def oha_bin():
    cache = os.environ.get("PORTICO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "portico"
    )
    oha = Path(cache) / "oha" / "bin" / "oha"
    return str(oha) if oha.exists() else None


class Prometheus(Process):
    """A Prometheus server scraping `target` every second."""

    def __init__(self, target, workdir, target_labels):
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "ingress-nginx",
                            "static_configs": [{"targets": [target], "labels": target_labels}],
                        }
                    ],
                }
            )
        )
        argv = [
            prometheus_bin(),
            "--config.file", config,
            "--storage.tsdb.path", workdir / "tsdb",
            "--web.listen-address", "127.0.0.1:%d" % self.port,
            "--log.level", "warn",
        ]  # fmt: skip
        super().__init__(argv, workdir / "prometheus.log")
        wait_for_port("127.0.0.1", self.port, proc=self.proc, timeout=60)

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (self.port, path, urllib.parse.urlencode(params, doseq=True))
        with urllib.request.urlopen(url, timeout=30) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]

    def scraped(self):
        """Ready (it answers 503 while its storage opens) and has scraped the target."""
        try:
            up = self.query("up")
        except OSError:
            return False
        return bool(up) and up[0]["value"][1] == "1"


def self_signed(workdir, host):
    key, crt = workdir / "tls.key", workdir / "tls.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=" + host, "-addext", "subjectAltName=DNS:" + host],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt.read_bytes(), key.read_bytes()


def config(web, api, workdir):
    import base64

    cfg = Config(namespace="shop")
    cfg.backend("web", [web])
    cfg.backend("api", [api])
    # A Service with no ready endpoint: Portico answers 503, an error the panels count.
    cfg.service("down")
    cfg.endpoint_slice("down", [(web.ip, web.port)], ready=False)
    cfg.ingress(
        "storefront",
        rules=[rule("shop.example", path("/", "web"), path("/api", "api"), path("/down", "down"))],
    )
    cfg.backend("web", [web], namespace="blog")
    cert, key = self_signed(workdir, "blog.example")
    cfg.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "blog-tls", "namespace": "blog"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
        }
    )
    ing = cfg.ingress(
        "blog", rules=[rule("blog.example", path("/", "web"))], namespace="blog",
        annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"},
    )  # fmt: skip
    ing["spec"]["tls"] = [{"hosts": ["blog.example"], "secretName": "blog-tls"}]
    return cfg.yaml()


def load(p, seconds):
    """Traffic a user would see on the dashboards: oha when it is installed (the
    benchmark harness caches it), else curl loops; some 4xx and 5xx among it."""
    urls = [
        ("shop.example", "/"),
        ("shop.example", "/api/items"),
        ("blog.example", "/posts/1"),
    ]
    procs = []
    oha = oha_bin()
    if oha:
        for host, target in urls:
            procs.append(
                subprocess.Popen(
                    [oha, "-z", "%ds" % seconds, "-c", "2", "-q", "40", "--no-tui", "-H", "Host: " + host,
                     p.base + target],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            )
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for host, target in urls if not oha else []:
            curl(p.base + target, host=host)
        assert curl(p.base + "/api/status/404", host="shop.example").status == 404
        assert curl(p.base + "/posts/status/410", host="blog.example").status == 410
        assert curl(p.base + "/down", host="shop.example").status == 503
        curl(p.base + "/api", "-X", "POST", "-d", "x=1", host="shop.example")
        time.sleep(0.2)
    for proc in procs:
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dashboards")
    backends = [Backend("echo", name, "127.0.0.1", free_port(), workdir) for name in ("web", "api")]
    os.environ["POD_NAME"] = CONTROLLER_POD
    os.environ["POD_NAMESPACE"] = CONTROLLER_NAMESPACE
    p = Portico(config(*backends, workdir), workdir, args=["--ingress-nginx-metrics", "--access-log", "false"])
    prom = Prometheus(
        "127.0.0.1:%d" % p.admin_port,
        workdir,
        {"namespace": CONTROLLER_NAMESPACE, "kubernetes_pod_name": CONTROLLER_POD, "pod": CONTROLLER_POD},
    )
    try:
        wait_until(prom.scraped, 60, 0.5, "Prometheus's first scrape of Portico")
        load(p, 20)
        yield p, prom
    finally:
        for proc in (prom, p, *backends):
            proc.stop()


def panels(dashboard):
    """(title, [expr]) of every panel, hidden targets included, and of annotations."""
    dash = json.loads((DASHBOARDS / dashboard).read_text())
    for panel in dash["panels"]:
        exprs = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
        if exprs:
            yield panel["title"], exprs
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            yield "annotation: " + a["name"], [a["expr"]]


def grafana_escape(value):
    """A single picked value as Grafana's Prometheus data source writes it into a
    regex matcher (prometheusRegularEscape)."""
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value.replace("\\", "\\\\\\\\"))


def fill(expr, variables):
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${%s}" % name, variables[name]).replace("$" + name, variables[name])
    # Grafana's interval variables, as it computes them for a 1s scrape interval.
    return expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")


def variables(prom, dashboard, pick):
    """The dashboard's query variables, in order: ".*" (All) or the first value the
    variable's own query returns."""
    dash = json.loads((DASHBOARDS / dashboard).read_text())
    values = {}
    for v in dash["templating"]["list"]:
        if v.get("type") != "query":
            continue
        query = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        if not pick:
            values[v["name"]] = v.get("allValue") or ".*"
            continue
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query)
        assert m, "variable %s: %s" % (v["name"], query)
        selector = fill(m.group(1), values)
        found = prom.api("label/%s/values" % m.group(2), **{"match[]": selector})
        assert found, "variable %s offers no value: label_values(%s, %s)" % (v["name"], selector, m.group(2))
        values[v["name"]] = grafana_escape(sorted(found)[0])
    return values


def run_dashboard(prom, dashboard, pick):
    empty, unexpected = [], []
    allowed = dict(EMPTY_PANELS)
    if pick:
        allowed.update(EMPTY_WHEN_PICKED)
    vars_ = variables(prom, dashboard, pick)
    for title, exprs in panels(dashboard):
        results = [prom.query(fill(e, vars_)) for e in exprs]
        has_data = any(results)
        if (dashboard, title) in allowed:
            if has_data:
                unexpected.append(title)
        elif not all(results):
            empty.append((title, [fill(e, vars_) for e, r in zip(exprs, results) if not r]))
    return vars_, empty, unexpected


@pytest.mark.parametrize("dashboard", ["nginx.json", "request-handling-performance.json"])
def test_every_panel_of_ingress_nginx_dashboards_shows_portico_traffic(stack, dashboard):
    _, prom = stack
    _, empty, unexpected = run_dashboard(prom, dashboard, pick=False)
    assert not empty, "panels without data: %s" % json.dumps(empty, indent=1)
    assert not unexpected, "panels listed as empty now show data (update EMPTY_PANELS): %s" % unexpected


@pytest.mark.parametrize("dashboard", ["nginx.json", "request-handling-performance.json"])
def test_with_one_controller_and_ingress_picked_every_panel_still_shows_data(stack, dashboard):
    _, prom = stack
    vars_, empty, unexpected = run_dashboard(prom, dashboard, pick=True)
    assert not empty, "panels without data for %s: %s" % (vars_, json.dumps(empty, indent=1))
    assert not unexpected, "panels listed as empty now show data: %s" % unexpected


def test_series_carry_the_rules_host_and_path_never_what_clients_send(stack):
    p, _ = stack
    for i in range(50):
        curl(p.base + "/api/%d/%d" % (i, i * 7), "-X", "X-INVENTED-%d" % i, host="shop.example")
        curl(p.base + "/x%d" % i, host="random-%d.example" % i)
    status, text = p.admin("/metrics")
    assert status == 200
    lines = [l for l in text.splitlines() if l.startswith("nginx_ingress_controller_requests{")]
    hosts = {re.search(r'host="([^"]*)"', l).group(1) for l in lines}
    paths = {re.search(r'path="([^"]*)"', l).group(1) for l in lines}
    methods = {re.search(r'method="([^"]*)"', l).group(1) for l in lines}
    assert hosts <= {"shop.example", "blog.example", ""}, hosts
    assert paths <= {"/", "/api", "/down", ""}, paths
    assert methods <= {"GET", "POST", "_OTHER"}, methods
