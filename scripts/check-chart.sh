#!/usr/bin/env bash
# Checks the Helm chart, the plain manifests and the image's binary, and proves the
# chart's RBAC is enough for Portico against a real API server:
#
#   1. helm lint --strict, and helm template with the defaults and with other value
#      sets (DaemonSet, autoscaling, NodePort, ServiceMonitor, ...);
#   2. charts/portico/crds/ holds exactly the files of the top-level crds/ (both may
#      be empty or missing: Helm installs what is in the chart's crds/ before the
#      templates, so the two must never drift apart);
#   3. manifests/portico.yaml is what the chart renders today;
#   4. the release binary, built as the Dockerfile builds it, runs (--version);
#   5. on a real kube-apiserver (e2e/cluster up, own --dir, torn down on exit):
#      server-side dry runs of every rendered variant, a real apply of
#      manifests/portico.yaml, the chart's RBAC rules equal deploy/rbac.yaml's,
#      then Portico runs with a token of the chart's ServiceAccount only and must
#      route requests by an Ingress and by a Route to a backend in a
#      network-namespace test host (200), write Ingress and Route status, take its
#      Lease, record an Event, and log no "forbidden".
#
#   scripts/check-chart.sh            check everything
#   scripts/check-chart.sh --update   rewrite manifests/portico.yaml and the chart's
#                                     crds/ from the chart and crds/, then check
#   scripts/check-chart.sh --quick    steps 1-3 only (no cargo, no API server)
#
# Settings: PORTICO_CACHE (as scripts/test.sh), CARGO_TARGET_DIR,
# PORTICO_CHART_CLUSTER_DIR (default ${TMPDIR:-/tmp}/portico-chart-cluster).
# Needs root for the test host (as e2e/cluster testhost does), python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PORTICO_CACHE/target}"
CLUSTER_DIR="${PORTICO_CHART_CLUSTER_DIR:-${TMPDIR:-/tmp}/portico-chart-cluster}"

CHART=charts/portico
RELEASE=portico
NAMESPACE="portico-system"
MANIFEST=manifests/portico.yaml
TESTHOST=chartb
BACKEND_ADDR=198.18.7.2
TEST_NS="portico-chart-check"

update=0
quick=0
for arg in "$@"; do
	case "$arg" in
	--update) update=1 ;;
	--quick) quick=1 ;;
	*)
		echo "usage: scripts/check-chart.sh [--update] [--quick]" >&2
		exit 2
		;;
	esac
done

started=$(date +%s)
step() { printf -- '--> %s\n' "$*"; }
fail() {
	printf 'check-chart: FAILED: %s\n' "$*" >&2
	exit 1
}

helm=$(scripts/helm.sh --which)
[[ -x "$helm" ]] || fail "scripts/helm.sh did not produce a helm binary"
step "helm $("$helm" version --template '{{.Version}}')"

work=$(mktemp -d "${TMPDIR:-/tmp}/portico-check-chart.XXXXXX")
portico_pid=
backend_started=0
cluster_started=0
cleanup() {
	local rc=$?
	if [[ -n "$portico_pid" ]] && kill -0 "$portico_pid" 2>/dev/null; then
		kill -TERM "$portico_pid" 2>/dev/null || true
		wait "$portico_pid" 2>/dev/null || true
	fi
	if ((backend_started)); then e2e/cluster testhost down "$TESTHOST" >/dev/null 2>&1 || true; fi
	if ((cluster_started)); then e2e/cluster down --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true; fi
	if ((rc != 0)) && [[ -s "$work/portico.log" ]]; then
		echo "--- last lines of Portico's log ($work/portico.log kept):" >&2
		tail -n 30 "$work/portico.log" >&2
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------
step "helm lint"
"$helm" lint --strict "$CHART" >"$work/lint.txt" 2>&1 || {
	cat "$work/lint.txt" >&2
	fail "helm lint --strict $CHART"
}
grep -E '^\[(WARNING|ERROR)\]' "$work/lint.txt" && fail "helm lint reported warnings"

# Value sets whose output must also render, lint and pass the API server's checks.
# Each is a list of --set arguments; "defaults" is the chart as shipped.
variants=(
	"defaults|"
	"daemonset|--set kind=DaemonSet --set service.externalTrafficPolicy=Local"
	"autoscaling|--set autoscaling.enabled=true --set autoscaling.targetMemoryUtilizationPercentage=80 --set podDisruptionBudget.maxUnavailable=1"
	"nodeport|--set service.type=NodePort --set service.nodePorts.http=30080 --set service.nodePorts.https=30443 --set ingressClass.default=true"
	"single|--set replicaCount=1 --set controller.watchNamespace=apps --set controller.defaultSslCertificate=apps/wildcard --set controller.drainTimeout=2m --set preStopSleepSeconds=0"
	"extras|--set controller.extraArgs.log-format=text --set controller.extraArgs.publish-service=null --set controller.publishStatusAddress={203.0.113.7} --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef --set controller.extraEnv[0].name=RUST_LOG --set controller.extraEnv[0].value=debug"
	"servicemonitor|--set metrics.serviceMonitor.enabled=true --set metrics.serviceMonitor.additionalLabels.release=prometheus"
	"gatewaycrds|--set gatewayAPI.installCRDs=true --set gatewayAPI.serviceType=ClusterIP"
	"nogateway|--set gatewayAPI.enabled=false"
	"takeover|--set ingressClass.takeOver.enabled=true --set controller.updateStatus=false --set ingressClass.watchIngressWithoutClass=true"
)
for v in "${variants[@]}"; do
	name=${v%%|*}
	read -r -a args <<<"${v#*|}"
	"$helm" lint --strict "$CHART" "${args[@]}" >"$work/lint-$name.txt" 2>&1 || {
		cat "$work/lint-$name.txt" >&2
		fail "helm lint with values '$name': ${args[*]}"
	}
	"$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${args[@]}" >"$work/render-$name.yaml" ||
		fail "helm template with values '$name': ${args[*]}"
done
grep -q 'kind: DaemonSet' "$work/render-daemonset.yaml" || fail "kind=DaemonSet did not render a DaemonSet"
grep -q 'kind: HorizontalPodAutoscaler' "$work/render-autoscaling.yaml" || fail "autoscaling did not render an HPA"
grep -q 'kind: ServiceMonitor' "$work/render-servicemonitor.yaml" || fail "no ServiceMonitor rendered"
grep -q 'kind: ServiceMonitor' "$work/render-defaults.yaml" && fail "the ServiceMonitor must be off by default"
[[ $(grep -c '^kind: CustomResourceDefinition' "$work/render-gatewaycrds.yaml") == 10 ]] ||
	fail "gatewayAPI.installCRDs=true did not render the 10 Gateway API standard-channel CRDs"
grep -q 'name: gateways.gateway.networking.k8s.io' "$work/render-defaults.yaml" &&
	fail "the Gateway API CRDs must not be installed by default"
grep -q 'gateway' "$work/render-nogateway.yaml" && fail "gatewayAPI.enabled=false still grants or passes Gateway API"
grep -q 'terminationGracePeriodSeconds: 130' "$work/render-single.yaml" ||
	fail "terminationGracePeriodSeconds does not follow controller.drainTimeout (2m + 0 + 10 = 130)"
grep -E '^ +- "--publish-service' "$work/render-extras.yaml" && fail "a null in controller.extraArgs did not remove the flag"
grep -qF -- '- "--ingress-class=portico,nginx"' "$work/render-takeover.yaml" &&
	grep -qF -- '- "--controller-name=portico.dev/ingress-controller,k8s.io/ingress-nginx"' "$work/render-takeover.yaml" &&
	grep -qF -- '- "--update-status=false"' "$work/render-takeover.yaml" &&
	grep -qF -- '- "--watch-ingress-without-class=true"' "$work/render-takeover.yaml" ||
	fail "ingressClass.takeOver, watchIngressWithoutClass and controller.updateStatus=false did not render their flags"
[[ $(grep -c '^kind: IngressClass' "$work/render-takeover.yaml") == 1 ]] ||
	fail "ingressClass.takeOver must not create or change ingress-nginx's IngressClass"
grep -E -- '--(update-status|watch-ingress-without-class)' "$work/render-defaults.yaml" &&
	fail "the defaults must neither turn Ingress status off nor serve class-less Ingresses"
echo "    lint and template: ${#variants[@]} value sets"

# ---------------------------------------------------------------------------------
step "chart crds/ == crds/"
# Only files count (git keeps no empty directory): a missing directory is empty.
list_files() { if [[ -d "$1" ]]; then (cd "$1" && find . -type f | LC_ALL=C sort); fi; }
if ((update)); then
	rm -rf "$CHART/crds"
	if [[ -n "$(list_files crds)" ]]; then
		mkdir -p "$CHART/crds"
		cp -R crds/. "$CHART/crds/"
	fi
fi
top=$(list_files crds)
chart=$(list_files "$CHART/crds")
if [[ "$top" != "$chart" ]]; then
	diff <(printf '%s\n' "$top") <(printf '%s\n' "$chart") >&2 || true
	fail "$CHART/crds/ does not hold the same files as crds/ (< crds/, > chart); run scripts/check-chart.sh --update"
fi
while IFS= read -r f; do
	[[ -z "$f" ]] && continue
	cmp -s "crds/$f" "$CHART/crds/$f" || fail "$CHART/crds/$f differs from crds/$f; run scripts/check-chart.sh --update"
done <<<"$top"
if [[ -z "$top" ]]; then echo "    no CRDs yet (crds/ empty or missing; so is the chart's)"; else echo "    $(wc -l <<<"$top") file(s), identical"; fi

# ---------------------------------------------------------------------------------
step "$MANIFEST is current"
render_manifest() {
	printf '# Portico for "kubectl apply -f %s": the Helm chart %s rendered with its\n' "$MANIFEST" "$CHART"
	printf '# default values into namespace %s, plus that Namespace. Generated by\n' "$NAMESPACE"
	printf '# "scripts/check-chart.sh --update"; do not edit by hand (CI checks it is current).\n'
	printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$NAMESPACE"
	printf '  labels:\n    app.kubernetes.io/part-of: portico\n'
	# Helm's CRDs first (helm template --include-crds), as helm install applies them.
	"$helm" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --include-crds
}
render_manifest >"$work/manifest.yaml" || fail "rendering $MANIFEST"
if ((update)); then
	mkdir -p "$(dirname "$MANIFEST")"
	cp "$work/manifest.yaml" "$MANIFEST"
	echo "    rewrote $MANIFEST"
fi
if ! cmp -s "$work/manifest.yaml" "$MANIFEST"; then
	diff -u "$MANIFEST" "$work/manifest.yaml" | head -n 40 >&2 || true
	fail "$MANIFEST is out of date with $CHART (diff above: - committed, + rendered now); run scripts/check-chart.sh --update and commit it"
fi

if ((quick)); then
	step "chart and manifests: static checks passed in $(($(date +%s) - started))s (--quick: no binary, no API server)"
	exit 0
fi

# ---------------------------------------------------------------------------------
step "release binary (as the Dockerfile builds it)"
cargo build --release --locked -p portico-controller
portico="$CARGO_TARGET_DIR/release/portico"
version=$("$portico" --version) || fail "$portico --version"
echo "    $version"
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART/Chart.yaml")
[[ "${version##* }" == "$app_version" ]] ||
	fail "the chart's appVersion ($app_version) is not the binary's version ($version): bump $CHART/Chart.yaml"

# ---------------------------------------------------------------------------------
step "API server (e2e/cluster up --dir $CLUSTER_DIR)"
# The test host's name and address are machine-wide: one run at a time.
exec {lockfd}>"$PORTICO_CACHE/check-chart.lock"
flock -n "$lockfd" || {
	echo "    another scripts/check-chart.sh holds $PORTICO_CACHE/check-chart.lock; waiting"
	flock "$lockfd"
}
kubeconfig=$(e2e/cluster up --dir "$CLUSTER_DIR" 2>"$work/cluster-up.log" | tail -n 1) || {
	cat "$work/cluster-up.log" >&2
	fail "e2e/cluster up --dir $CLUSTER_DIR (a cluster still running there? e2e/cluster down --dir $CLUSTER_DIR)"
}
cluster_started=1
eval "$(e2e/cluster paths | grep '^KUBECTL=')"
k() { "$KUBECTL" --kubeconfig "$kubeconfig" "$@"; }

step "server-side dry run of every value set"
k create namespace "$NAMESPACE" >/dev/null
for v in "${variants[@]}"; do
	name=${v%%|*}
	[[ "$name" == servicemonitor ]] && continue # its CRD is the Prometheus Operator's
	k apply --server-side --dry-run=server --field-manager=check-chart -f "$work/render-$name.yaml" >"$work/dry-$name.txt" 2>&1 || {
		cat "$work/dry-$name.txt" >&2
		fail "the API server rejects the chart rendered with values '$name'"
	}
done
k apply --server-side --dry-run=server --field-manager=check-chart -f "$MANIFEST" >/dev/null ||
	fail "the API server rejects $MANIFEST (dry run)"
echo "    accepted"

step "kubectl apply -f $MANIFEST"
k apply --server-side --field-manager=check-chart -f "$MANIFEST" >"$work/apply.txt" || fail "applying $MANIFEST"
sed 's/^/    /' "$work/apply.txt"

step "chart RBAC == deploy/rbac.yaml"
# Rules as sets: each rule's lists sorted, the rules sorted, names ignored.
normalize_rules() {
	python3 -c '
import json, sys
# kubectl prints a List, one object, or several objects one after the other.
text, dec, pos, items = sys.stdin.read(), json.JSONDecoder(), 0, []
while text[pos:].strip():
    doc, end = dec.raw_decode(text, pos + len(text[pos:]) - len(text[pos:].lstrip()))
    items += doc.get("items", [doc])
    pos = end
out = {}
for o in items:
    if o["kind"] in ("ClusterRole", "Role"):
        rules = sorted(json.dumps({k: sorted(v) for k, v in r.items()}, sort_keys=True) for r in o.get("rules", []))
        out.setdefault(o["kind"], []).append(rules)
# Roles as a set too: the API server lists them by name, and names are ignored.
print(json.dumps({k: sorted(v) for k, v in out.items()}, sort_keys=True, indent=1))
'
}
if [[ -f deploy/rbac.yaml ]]; then
	k create --dry-run=client -o json -f deploy/rbac.yaml | normalize_rules >"$work/rbac-deploy.json"
	k get clusterrole,role -n "$NAMESPACE" -l app.kubernetes.io/instance="$RELEASE" -o json | normalize_rules >"$work/rbac-chart.json"
	diff -u "$work/rbac-deploy.json" "$work/rbac-chart.json" >&2 ||
		fail "the chart's ClusterRole/Role rules differ from deploy/rbac.yaml's (- deploy, + chart)"
	echo "    same rules"
else
	echo "    deploy/rbac.yaml not present; skipped"
fi

# ---------------------------------------------------------------------------------
step "Portico with the chart's ServiceAccount only"
token=$(k create token "$RELEASE" -n "$NAMESPACE" --duration=1h) || fail "kubectl create token $RELEASE -n $NAMESPACE"
server=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
sa_kubeconfig="$work/portico-sa.kubeconfig"
(
	umask 077
	cat >"$sa_kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: check
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: portico
    user:
      token: $token
contexts:
  - name: portico
    context: {cluster: check, user: portico, namespace: $NAMESPACE}
current-context: portico
EOF
)
sa() { "$KUBECTL" --kubeconfig "$sa_kubeconfig" "$@"; }
[[ "$(sa auth whoami -o jsonpath='{.status.userInfo.username}')" == "system:serviceaccount:$NAMESPACE:$RELEASE" ]] ||
	fail "the token is not the chart's ServiceAccount's"
# A few things the ServiceAccount must not be able to do.
for denied in "get secrets" "create ingresses" "update ingresses" "delete services -n default" "create pods" "update leases -n kube-system"; do
	# shellcheck disable=SC2086
	sa auth can-i $denied >/dev/null 2>&1 && fail "the chart's ServiceAccount can $denied: its RBAC is too wide"
done

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
admin_port=$(free_port)
while [[ "$admin_port" == "$http_port" ]]; do admin_port=$(free_port); done

step "backend in test host $TESTHOST ($BACKEND_ADDR)"
backend_started=1
e2e/cluster testhost down "$TESTHOST" >/dev/null 2>&1 || true
e2e/cluster testhost up "$TESTHOST" "$BACKEND_ADDR" >/dev/null 2>&1 || fail "e2e/cluster testhost up $TESTHOST $BACKEND_ADDR"
mkdir -p "$work/www"
marker="portico-chart-check-$$-$RANDOM"
printf '%s\n' "$marker" >"$work/www/index.html"
e2e/cluster testhost exec "$TESTHOST" python3 -m http.server 8080 --bind "$BACKEND_ADDR" --directory "$work/www" \
	>"$work/backend.log" 2>&1 &
for _ in $(seq 100); do
	curl -fsS -o /dev/null --max-time 1 "http://$BACKEND_ADDR:8080/" 2>/dev/null && break
	sleep 0.1
done
curl -fsS -o /dev/null --max-time 2 "http://$BACKEND_ADDR:8080/" || fail "the backend on $BACKEND_ADDR:8080 does not answer"

k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $TEST_NS
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: $TEST_NS
spec:
  ports:
    - name: http
      port: 80
      targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: $TEST_NS
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
  - name: http
    port: 8080
    protocol: TCP
endpoints:
  - addresses: ["$BACKEND_ADDR"]
    conditions: {ready: true}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: $TEST_NS
spec:
  ingressClassName: portico
  rules:
    - host: chart.portico.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: web
                port:
                  number: 80
---
# An annotation Portico does not implement: it must say so with an Event.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: unsupported
  namespace: $TEST_NS
  annotations:
    nginx.ingress.kubernetes.io/enable-modsecurity: "true"
spec:
  ingressClassName: portico
  rules:
    - host: other.portico.test
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: web
                port:
                  number: 80
---
# A Route (the chart's CRD), to the same backend.
apiVersion: portico.dev/v1alpha1
kind: Route
metadata:
  name: web
  namespace: $TEST_NS
spec:
  hostnames: [route.portico.test]
  rules:
    - backendRefs:
        - {name: web, port: 80}
EOF
# The chart's Service is a LoadBalancer; with no cloud controller here, give it the
# address a load balancer would, for --publish-service to copy into Ingress status.
k patch service "$RELEASE" -n "$NAMESPACE" --subresource=status --type=merge \
	-p '{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"}]}}}' >/dev/null

step "running portico (http 127.0.0.1:$http_port, admin $admin_port)"
# The chart's flags (publish-service, election-id, class...), with local ports.
POD_NAME=portico-check POD_NAMESPACE="$NAMESPACE" "$portico" \
	--kubeconfig "$sa_kubeconfig" \
	--bind-address 127.0.0.1 --http-port "$http_port" --https-port 0 --admin-port "$admin_port" \
	--election-namespace "$NAMESPACE" --election-id portico-leader \
	--ingress-class portico --controller-name portico.dev/ingress-controller \
	--publish-service "$NAMESPACE/$RELEASE" \
	>"$work/portico.log" 2>&1 &
portico_pid=$!

deadline=$(($(date +%s) + 60))
code=
while (($(date +%s) < deadline)); do
	kill -0 "$portico_pid" 2>/dev/null || fail "portico exited early"
	code=$(curl -sS -o "$work/body" -w '%{http_code}' --max-time 2 -H 'Host: chart.portico.test' \
		"http://127.0.0.1:$http_port/" 2>/dev/null || true)
	[[ "$code" == 200 ]] && break
	sleep 0.25
done
[[ "$code" == 200 ]] || fail "a request through Portico got '$code', not 200 from the backend"
grep -qx "$marker" "$work/body" || fail "the 200 did not come from the backend: $(head -c 200 "$work/body")"
echo "    GET http://chart.portico.test/ through Portico: 200 from $BACKEND_ADDR"
code=$(curl -sS -o "$work/body" -w '%{http_code}' --max-time 2 -H 'Host: route.portico.test' \
	"http://127.0.0.1:$http_port/" || true)
{ [[ "$code" == 200 ]] && grep -qx "$marker" "$work/body"; } ||
	fail "a request for the Route's host got '$code', not 200 from the backend (routes list/watch)"
echo "    GET http://route.portico.test/ (a Route) through Portico: 200 from $BACKEND_ADDR"

# Leader duties: the Lease, Ingress status, an Event. Each needs its own permission.
wait_for() { # DESCRIPTION COMMAND...: retry COMMAND for up to 30 s
	local what=$1
	shift
	for _ in $(seq 120); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.25
	done
	fail "$what"
}
lease_holder() { [[ "$(k get lease portico-leader -n "$NAMESPACE" -o jsonpath='{.spec.holderIdentity}')" == portico-check ]]; }
ingress_status() { [[ "$(k get ingress web -n "$TEST_NS" -o jsonpath='{.status.loadBalancer.ingress[0].ip}')" == 203.0.113.7 ]]; }
route_status() { [[ "$(k get route.portico.dev web -n "$TEST_NS" -o jsonpath='{.status.conditions[?(@.type=="Accepted")].status}')" == True ]]; }
unsupported_event() { k get events.events.k8s.io -n "$TEST_NS" -o json | grep -q UnsupportedAnnotation; }
wait_for "Portico did not take the Lease $NAMESPACE/portico-leader (leases get/create/update)" lease_holder
echo "    holds Lease $NAMESPACE/portico-leader"
wait_for "Ingress status was not set from the published Service (services get, ingresses/status update)" ingress_status
echo "    wrote Ingress status: 203.0.113.7"
wait_for "the Route's Accepted condition was not written (routes/status)" route_status
echo "    wrote Route status: Accepted=True"
wait_for "no UnsupportedAnnotation Event for the Ingress with enable-modsecurity (not supported) (events create)" unsupported_event
echo "    recorded an UnsupportedAnnotation Event"
curl -fsS --max-time 2 "http://127.0.0.1:$admin_port/readyz" >/dev/null || fail "/readyz is not 200"
curl -fsS --max-time 2 "http://127.0.0.1:$admin_port/metrics" | grep -q '^portico_watch_synced' || fail "/metrics has no portico_watch_synced"

kill -TERM "$portico_pid"
wait "$portico_pid" || fail "portico did not exit cleanly on SIGTERM"
portico_pid=
if grep -iE 'forbidden|\(403\)|code: ?403|"code": ?403' "$work/portico.log" >&2; then
	fail "Portico's log has permission errors with the chart's RBAC (above)"
fi
echo "    no permission errors in Portico's log"

step "chart and manifests: all checks passed in $(($(date +%s) - started))s"
