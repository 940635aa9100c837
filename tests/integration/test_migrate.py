"""`portico migrate` on a corpus of Ingresses written from ingress-nginx's
docs/examples and its annotations page (tests/migrate/corpus, each file citing its
source): what a user moving from ingress-nginx reads before the cut-over, and the exit
status a CI job would gate on."""

import json
import subprocess
from collections import Counter

from harness import REPO, portico_bin

CORPUS = REPO / "tests" / "migrate" / "corpus"
PREFIX = "nginx.ingress.kubernetes.io/"


def migrate(*args):
    return subprocess.run(
        [str(portico_bin()), "migrate", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def corpus_report():
    r = migrate("-f", CORPUS, "--output", "json")
    assert r.returncode == 1, r.stderr
    return json.loads(r.stdout)


def annotation(report, namespace, name, key):
    (ingress,) = [i for i in report["ingresses"] if (i["namespace"], i["name"]) == (namespace, name)]
    (finding,) = [a for a in ingress["annotations"] if a["name"] == PREFIX + key]
    return finding


def test_corpus_statuses_a_user_would_notice():
    report = corpus_report()
    assert report["schema"] == "portico.dev/migrate/v1"

    # docs/examples/customization/configuration-snippets: never interpreted.
    snippet = annotation(report, "default", "nginx-configuration-snippet", "configuration-snippet")
    assert snippet["status"] == "refused"
    assert snippet["value"] == 'more_set_headers "Request-Id: $req_id";\n'
    assert annotation(report, "shop", "api", "modsecurity-snippet")["status"] == "refused"

    # docs/examples/rewrite: the capture-group rewrite has its effect (with its stated
    # difference, if any).
    rewrite = annotation(report, "default", "rewrite", "rewrite-target")
    assert rewrite["status"] in ("honoured", "differs"), rewrite
    assert annotation(report, "default", "approot", "app-root")["status"] == "honoured"

    # annotations.md "ModSecurity": not supported, said so.
    modsec = annotation(report, "shop", "api", "enable-modsecurity")
    assert (modsec["status"], modsec["value"]) == ("unsupported", "true")
    assert "no effect" in modsec["detail"]

    # A value that does not parse: the parser's own error, and the default applies.
    size = annotation(report, "shop", "uploads", "proxy-body-size")
    assert size["status"] == "invalid"
    assert size["detail"].startswith('invalid size "8 MB"'), size
    assert annotation(report, "shop", "uploads", "proxy-read-timeout")["status"] == "invalid"

    # The docker-registry example is served exactly as ingress-nginx serves it.
    registry = [i for i in report["ingresses"] if i["name"] == "docker-registry"][0]
    assert {a["status"] for a in registry["annotations"]} == {"honoured"}
    # Annotations of other tools (kubernetes.io/tls-acme) are not reported on.
    assert all(a["name"].startswith(PREFIX) for a in registry["annotations"])

    # The Ingress of another class is skipped and says why; the legacy-annotation one
    # (docs/examples/grpc) is considered.
    assert [(s["namespace"], s["name"]) for s in report["skipped"]] == [("monitoring", "dashboard")]
    assert "traefik" in report["skipped"][0]["reason"]
    assert any(i["name"] == "fortune-ingress" for i in report["ingresses"])

    # ingress-nginx's ConfigMap: found by its name, its snippet refused, its timeouts
    # (connect, read, send) read as the defaults of every route.
    (cm,) = report["configMaps"]
    assert (cm["namespace"], cm["name"]) == ("ingress-nginx", "nginx-configuration")
    keys = {k["name"]: k for k in cm["keys"]}
    assert keys["http-snippet"]["status"] == "refused"
    assert {keys[k]["status"] for k in ("proxy-connect-timeout", "proxy-read-timeout")} == {"honoured"}

    # The summary counts what is listed.
    findings = [a for i in report["ingresses"] for a in i["annotations"]] + cm["keys"]
    tally = Counter(f["status"] for f in findings)
    s = report["summary"]
    assert (s["ingresses"], s["skipped"], s["configMaps"]) == (12, 1, 1)
    for status in ("honoured", "differs", "unsupported", "refused", "invalid"):
        assert s[status] == tally[status], (status, s, tally)


def test_text_output_ends_with_the_summary_line():
    r = migrate("-f", CORPUS)
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].startswith("summary: 12 Ingresses (1 skipped), 1 ConfigMap: "), lines[-1]
    assert any(l.startswith("  refused      nginx.ingress.kubernetes.io/configuration-snippet") for l in lines)
    assert any(l.startswith("skipped Ingress monitoring/dashboard: ") for l in lines)


def test_exit_status_0_when_everything_is_honoured(tmp_path):
    """kubectl's List, as `kubectl get ingress -A -o yaml` writes it."""
    f = tmp_path / "list.yaml"
    f.write_text(
        """apiVersion: v1
kind: List
items:
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  metadata:
    name: approot
    namespace: default
    annotations:
      nginx.ingress.kubernetes.io/app-root: /app1
  spec:
    ingressClassName: nginx
metadata:
  resourceVersion: ""
"""
    )
    r = migrate("-f", f, "--output", "json")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["summary"]["honoured"] == 1


def test_usage_and_input_errors_exit_2(tmp_path):
    assert migrate("-f", tmp_path / "missing.yaml").returncode == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Ingress\nmetadata: 3\n")
    r = migrate("-f", bad)
    assert r.returncode == 2 and "document 1" in r.stderr, r.stderr
    r = migrate("-f", CORPUS, "--configmap", "ingress-nginx/absent")
    assert (r.returncode, r.stderr.strip()) == (2, "portico migrate: ConfigMap ingress-nginx/absent not found")
    assert migrate("-f", CORPUS, "--configmap", "no-slash").returncode == 2
