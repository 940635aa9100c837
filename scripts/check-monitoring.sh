#!/usr/bin/env bash
# Checks the chart's monitoring objects with Prometheus's own tool (promtool, built
# from upstream source by scripts/promtool.sh and cached):
#
#   1. helm lint --strict and helm template with the PrometheusRule and the Grafana
#      dashboard on (and with a custom selector);
#   2. promtool check rules on the rendered PrometheusRule's groups;
#   3. promtool test rules: tests/monitoring/rules.test.yaml feeds series to the
#      rendered rules and states which alerts fire, when, with which labels and text;
#   4. the dashboard: valid JSON, embedded unchanged in the rendered ConfigMap, and
#      every panel query parses as PromQL (promtool check rules on them as recording
#      rules, with Grafana's variables filled in).
#
# Settings: PORTICO_CACHE (as scripts/test.sh), PORTICO_PROMTOOL_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
CHART=charts/portico
DASHBOARD="$CHART/files/grafana-dashboard.json"

step() { printf -- '--> %s\n' "$*"; }
fail() {
	printf 'check-monitoring: FAILED: %s\n' "$*" >&2
	exit 1
}

helm=$(scripts/helm.sh --which)
promtool=$(scripts/promtool.sh --which)
step "$("$promtool" --version 2>&1 | head -n 1)"
work=$(mktemp -d "${TMPDIR:-/tmp}/portico-check-monitoring.XXXXXX")
trap 'rm -rf "$work"' EXIT

on=(--set metrics.prometheusRule.enabled=true --set metrics.grafanaDashboard.enabled=true)
step "helm lint and template with the PrometheusRule and the dashboard"
"$helm" lint --strict "$CHART" "${on[@]}" >"$work/lint.txt" 2>&1 || {
	cat "$work/lint.txt" >&2
	fail "helm lint --strict with ${on[*]}"
}
render() { "$helm" template portico "$CHART" --namespace portico-system "${on[@]}" "$@"; }
render --show-only templates/prometheusrule.yaml >"$work/prometheusrule.yaml"
render --show-only templates/grafana-dashboard.yaml >"$work/dashboard-configmap.yaml"
render --show-only templates/prometheusrule.yaml --set-string 'metrics.prometheusRule.selector=namespace="edge"\,job="portico"' \
	>"$work/prometheusrule-selector.yaml"
grep -q 'portico_ready{namespace="edge",job="portico"}' "$work/prometheusrule-selector.yaml" ||
	fail "metrics.prometheusRule.selector is not what the rules select by"
"$helm" template portico "$CHART" | grep -qE 'kind: (PrometheusRule|ConfigMap)' &&
	fail "the PrometheusRule and the dashboard must be off by default"

# The rule groups: everything under the PrometheusRule's `spec:`, one level less indented.
spec_groups() { awk 'f { print substr($0, 3) } /^spec:$/ { f = 1 }' "$1"; }
spec_groups "$work/prometheusrule.yaml" >"$work/rules.yaml"
spec_groups "$work/prometheusrule-selector.yaml" >"$work/rules-selector.yaml"

step "promtool check rules"
"$promtool" check rules "$work/rules.yaml" "$work/rules-selector.yaml" ||
	fail "promtool check rules (rendered rules in $work kept)"

step "promtool test rules tests/monitoring/rules.test.yaml"
cp tests/monitoring/rules.test.yaml "$work/"
(cd "$work" && "$promtool" test rules rules.test.yaml) || fail "promtool test rules"

step "Grafana dashboard"
python3 - "$DASHBOARD" "$work/dashboard-configmap.yaml" "$work/dashboard-queries.yaml" <<'PY'
import json, sys
dashboard_path, configmap_path, out_path = sys.argv[1:]
text = open(dashboard_path).read()
dash = json.loads(text)
# The ConfigMap carries the file unchanged, indented under `portico.json: |-`.
configmap = open(configmap_path).read()
embedded = "\n".join(line[4:] for line in configmap.split("portico.json: |-\n", 1)[1].splitlines())
assert json.loads(embedded) == dash, "the rendered ConfigMap does not hold files/grafana-dashboard.json"
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert exprs, "no queries in the dashboard"
with open(out_path, "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$job", ".+")
        out.write("      - record: portico_dashboard:query_%d\n        expr: %s\n" % (i, json.dumps(e)))
print("    %d panels, %d queries" % (len(dash["panels"]), len(exprs)))
PY
"$promtool" check rules "$work/dashboard-queries.yaml" >/dev/null || {
	"$promtool" check rules "$work/dashboard-queries.yaml" >&2 || true
	fail "a dashboard query does not parse"
}
step "monitoring checks passed"
