#!/usr/bin/env bash
# Runs the upstream Gateway API conformance suite (sigs.k8s.io/gateway-api, profile
# GATEWAY-HTTP) against Portico installed with Helm on the rig's node, and writes
# the upstream conformance reports.
#
#   e2e/conformance.sh                     two runs on one cluster, each writing its
#                                          report: the standard channel's (the profiles'
#                                          core tests and those of FEATURES), then the
#                                          experimental channel's (the tests of
#                                          EXPERIMENTAL_FEATURES alone)
#   e2e/conformance.sh --channel C         one of them: standard or experimental
#   e2e/conformance.sh --run-test NAME     one test (e.g. HTTPRouteSimpleSameNamespace), on
#                                          the experimental channel when EXPERIMENTAL_TESTS
#                                          names it
#   e2e/conformance.sh --cluster DIR       use the cluster running in DIR (e2e/cluster
#                                          up --node --dir DIR) and leave it running
#   e2e/conformance.sh --keep              leave the cluster this run started running
#   e2e/conformance.sh --build-only        build and cache what the run needs, then stop
#   e2e/conformance.sh ... -- ARGS         more flags for the suite binary
#
# What it does (docs/conformance/README.md has the details and the results):
# 1. builds and caches, keyed by version, the suite's test binary and its echo
#    backend (echo-basic), both from the Go module proxy, and the images the suite's
#    manifests name, since the node has no registry;
# 2. starts a cluster with a node (or uses --cluster), imports the images, installs
#    Portico with its chart (Gateways get ClusterIP Services; the root namespace routes
#    cluster IPs to the node) and the GatewayClass `portico`;
# 3. for each channel: installs the suite's CRDs of that channel (server-side apply;
#    the suite refuses CRDs of two channels), runs the suite and fails when a test
#    fails that SKIP_TESTS does not name, or when a test is skipped for any reason but
#    SKIP_TESTS (or, on the experimental channel, for not being one of
#    EXPERIMENTAL_TESTS).
#
# Takes /tmp/portico-e2e.lock (the rig's node is one per machine) unless a parent
# process holds it. Needs root. Settings: PORTICO_BIN (default: build the release
# binary), PORTICO_CACHE, PORTICO_GATEWAY_API_VERSION.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"

PROG=e2e/conformance.sh
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
export PORTICO_CACHE
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PORTICO_CACHE/target}"

GATEWAY_API_VERSION="${PORTICO_GATEWAY_API_VERSION:-v1.6.3}"
# The profiles run: HTTP, and gRPC (GRPCRoute, h2c to the suite's gRPC echo backends).
PROFILE=GATEWAY-HTTP,GATEWAY-GRPC
GATEWAY_CLASS=portico
CONTROLLER_NAME=portico.dev/gateway-controller
NAMESPACE=portico-system
# The features Portico claims: the core of the GATEWAY-HTTP profile and the extended
# features whose tests all pass. One a line; the same list as the GatewayClass's
# status.supportedFeatures (SUPPORTED_FEATURES in controller/src/compile/gateway/status.rs,
# whose unit test compares the two).
FEATURES=(
	Gateway
	HTTPRoute
	ReferenceGrant
	HTTPRouteQueryParamMatching
	HTTPRouteMethodMatching
	HTTPRouteResponseHeaderModification
	HTTPRoutePathRewrite
	HTTPRouteHostRewrite
	HTTPRouteSchemeRedirect
	HTTPRoutePortRedirect
	HTTPRoutePathRedirect
	GatewayPort8080
	GatewayHTTPListenerIsolation
	HTTPRouteParentRefPort
	HTTPRouteDestinationPortMatching
	HTTPRouteNamedRouteRule
	HTTPRouteBackendProtocolWebSocket
	HTTPRouteBackendProtocolH2C
	HTTPRoute303RedirectStatusCode
	HTTPRoute307RedirectStatusCode
	HTTPRoute308RedirectStatusCode
	HTTPRouteRequestTimeout
	HTTPRouteBackendTimeout
	HTTPRouteBackendRequestHeaderModification
	HTTPRouteCORS
	GRPCRoute
	GRPCRouteNamedRouteRule
	BackendTLSPolicy
	BackendTLSPolicySANValidation
)
# Features whose fields only the experimental channel's CRDs have (the suite's
# FeatureChannelExperimental with a field of its own: on standard CRDs the API server
# drops the field and the test cannot pass). Claimed with FEATURES in the experimental
# run, and in SUPPORTED_FEATURES (status.rs) with the others.
EXPERIMENTAL_FEATURES=(
	HTTPRouteRetry
)
# The tests of the experimental run, those of EXPERIMENTAL_FEATURES: the rest passed
# in the standard run, on the same binary.
EXPERIMENTAL_TESTS=(
	HTTPRouteRetry
)
# The chart's values for the conformance install: the local image, and ClusterIP
# Services, both the Ingress one (which the suite does not use) and one per Gateway:
# the rig has no load balancer (helm --wait would wait for a LoadBalancer's address
# forever), and cluster IPs are routed to the node, where kube-proxy serves them.
HELM_VALUES=(
	--set image.repository=localhost/portico
	--set image.tag=dev
	--set image.pullPolicy=Never
	--set service.type=ClusterIP
	--set gatewayAPI.enabled=true
	--set gatewayAPI.serviceType=ClusterIP
)
# The report of each channel's run.
declare -A REPORTS=(
	[standard]="docs/conformance/gateway-http-$GATEWAY_API_VERSION-report.yaml"
	[experimental]="docs/conformance/gateway-http-$GATEWAY_API_VERSION-experimental-report.yaml"
)
LOCK=/tmp/portico-e2e.lock

# Tests left out of the gate, each with its reason: only tests that fail today for
# a known cause (docs/conformance/README.md). Every other core test gates the run.
# One entry a line: "TestShortName|reason".
SKIP_TESTS=(
)

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

cluster_dir=
channel=
keep=0
build_only=0
run_test=
suite_args=()
while (($#)); do
	case "$1" in
	--cluster)
		(($# >= 2)) || die "--cluster needs the cluster directory"
		cluster_dir=$2
		shift 2
		;;
	--keep)
		keep=1
		shift
		;;
	--channel)
		(($# >= 2)) || die "--channel needs standard or experimental"
		[[ "$2" == standard || "$2" == experimental ]] || die "--channel: standard or experimental, not '$2'"
		channel=$2
		shift 2
		;;
	--build-only)
		build_only=1
		shift
		;;
	--run-test)
		(($# >= 2)) || die "--run-test needs a test name"
		run_test=$2
		shift 2
		;;
	-h | --help) usage 0 ;;
	--)
		shift
		suite_args=("$@")
		break
		;;
	*) die "unexpected argument '$1' (see $PROG --help)" ;;
	esac
done

# The runs, in order: one channel when asked; for one test, the channel it needs; else
# both.
if [[ -n "$channel" ]]; then
	channels=("$channel")
elif [[ -n "$run_test" ]] && printf '%s\n' "${EXPERIMENTAL_TESTS[@]}" | grep -qx "$run_test"; then
	channels=(experimental)
elif [[ -n "$run_test" ]]; then
	channels=(standard)
else
	channels=(standard experimental)
fi

[[ "$(id -u)" == 0 ]] || die "needs root (the rig's node: namespaces, cgroups, mounts)"
for tool in go python3 flock curl ip; do
	need "$tool" "see e2e/README.md, Requirements"
done

t_start=$(now)
declare -a timings=()
phase_start=$t_start
phase() { # NAME: record how long the phase that just ended took
	local t
	t=$(now)
	timings+=("$1 $((t - phase_start))s")
	phase_start=$t
}

# --- 1. the suite, echo-basic and the images, cached ------------------------------

suite_src=$PORTICO_CACHE/src/gateway-api-conformance-$GATEWAY_API_VERSION
suite_bin=$PORTICO_CACHE/bin/gateway-api-conformance-$GATEWAY_API_VERSION/conformance.test
echo_bin=$PORTICO_CACHE/bin/echo-basic-$GATEWAY_API_VERSION/echo-basic

# The suite's module is sigs.k8s.io/gateway-api/conformance, whose go.mod replaces
# sigs.k8s.io/gateway-api with ../ (not in the download): a scratch module requiring
# both at the same version builds its test binary and echo-basic.
build_suite() {
	[[ -x "$suite_bin" && -x "$echo_bin" ]] && return 0
	exec 8>>"$PORTICO_CACHE/conformance-build.lock"
	flock 8
	[[ -x "$suite_bin" && -x "$echo_bin" ]] && return 0
	log "building the conformance suite $GATEWAY_API_VERSION and echo-basic (2-3 minutes when cold)"
	mkdir -p "$suite_src"
	cat >"$suite_src/go.mod" <<EOF
module portico.dev/gateway-api-conformance

go 1.26.0

require (
	sigs.k8s.io/gateway-api $GATEWAY_API_VERSION
	sigs.k8s.io/gateway-api/conformance $GATEWAY_API_VERSION
)
EOF
	local tmp jobs t0
	jobs=$(nproc 2>/dev/null || echo 2)
	((jobs > 2)) && jobs=2
	t0=$(now)
	tmp=$(mktemp -d "$PORTICO_CACHE/bin/.conformance.XXXXXX")
	(
		cd "$suite_src"
		export CGO_ENABLED=0 GOWORK=off GOFLAGS='-buildvcs=false -mod=mod' GOMAXPROCS=$jobs
		go test -c -trimpath -p "$jobs" -o "$tmp/conformance.test" sigs.k8s.io/gateway-api/conformance
		go build -trimpath -p "$jobs" -ldflags '-s -w' -o "$tmp/echo-basic" sigs.k8s.io/gateway-api/conformance/echo-basic
	) || {
		rm -rf "$tmp"
		die "building the conformance suite failed"
	}
	local d
	for d in "$(dirname "$suite_bin")" "$(dirname "$echo_bin")"; do
		rm -rf "$d.tmp"
		mkdir -p "$d.tmp"
		printf 'module sigs.k8s.io/gateway-api/conformance %s\n%s\nbuilt %s in %ss\n' \
			"$GATEWAY_API_VERSION" "$(go env GOVERSION)" "$(date -u +%FT%TZ)" "$(($(now) - t0))" >"$d.tmp/build-info.txt"
	done
	mv "$tmp/conformance.test" "$(dirname "$suite_bin").tmp/"
	mv "$tmp/echo-basic" "$(dirname "$echo_bin").tmp/"
	rmdir "$tmp"
	for d in "$(dirname "$suite_bin")" "$(dirname "$echo_bin")"; do
		rm -rf "$d"
		mv "$d.tmp" "$d"
	done
	flock -u 8
}

# The module's source (CRDs, manifests) in Go's module cache.
gateway_api_dir() {
	(cd "$suite_src" && GOWORK=off GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)
}
conformance_dir() {
	(cd "$suite_src" && GOWORK=off GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api/conformance)
}

# The images the GATEWAY-HTTP tests' manifests name, imported under those names:
# the node has no registry, and the pods (no imagePullPolicy, tags other than
# latest: IfNotPresent) then start without a pull.
# - echo-basic: built above from the same module version. The manifests name
#   several tags of it (the suite's own release lags its manifests); each is this
#   build.
# - coredns: the base manifests run a CoreDNS Deployment for the UDPRoute tests
#   (not in GATEWAY-HTTP), and the setup waits for every pod of its namespaces to
#   be Ready. The rig has no CoreDNS image; e2e/images/pause idles in its place.
build_images() {
	local cdir refs echo_refs=() dns_refs=() key tar_echo tar_dns
	cdir=$(conformance_dir)
	refs=$(grep -rhoE 'image: *registry\.k8s\.io/[^ ]+' "$cdir/base/manifests.yaml" "$cdir"/tests/httproute-*.yaml "$cdir"/tests/grpcroute-*.yaml "$cdir"/tests/gateway-*.yaml |
		sed 's/^image: *//' | sort -u)
	mapfile -t echo_refs < <(grep '/echo-basic:' <<<"$refs")
	mapfile -t dns_refs < <(grep '/coredns:' <<<"$refs")
	((${#echo_refs[@]})) || die "found no echo-basic image in the suite's manifests ($cdir)"
	mkdir -p "$PORTICO_CACHE/images"
	key=$(cat "$echo_bin" "$here/images/oci.py" <(printf '%s\n' "${echo_refs[@]}") | sha256sum | cut -c1-16)
	tar_echo=$PORTICO_CACHE/images/echo-basic-$GATEWAY_API_VERSION-$key.tar
	if [[ ! -f "$tar_echo" ]]; then
		local also=() r
		for r in "${echo_refs[@]:1}"; do also+=(--also-name "$r"); done
		python3 "$here/images/oci.py" --name "${echo_refs[0]}" "${also[@]}" --out "$tar_echo" \
			--file "$echo_bin:/echo-basic:0755" --entrypoint /echo-basic --dir /tmp:1777 \
			--expose 3000/tcp --expose 8443/tcp
	fi
	IMAGE_TARS=("$tar_echo")
	ECHO_REF=${echo_refs[0]}
	if ((${#dns_refs[@]})); then
		# The pause image's program (e2e/images/pause), built as e2e/images/build.sh does.
		key=$(cat "$here/images/go.mod" "$here"/images/pause/*.go "$here/images/oci.py" <(go env GOVERSION) \
			<(printf '%s\n' "${dns_refs[@]}") | sha256sum | cut -c1-16)
		tar_dns=$PORTICO_CACHE/images/coredns-placeholder-$key.tar
		if [[ ! -f "$tar_dns" ]]; then
			local tmp
			tmp=$(mktemp -d)
			(cd "$here/images" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false \
				go build -trimpath -ldflags "-s -w" -o "$tmp/pause" ./pause) ||
				die "building e2e/images/pause failed"
			local also=() r
			for r in "${dns_refs[@]:1}"; do also+=(--also-name "$r"); done
			python3 "$here/images/oci.py" --name "${dns_refs[0]}" "${also[@]}" --out "$tar_dns" \
				--file "$tmp/pause:/pause:0755" --entrypoint /pause --user 65532:65532
			rm -rf "$tmp"
		fi
		IMAGE_TARS+=("$tar_dns")
	fi
}

build_suite
build_images
log "control-plane binaries (cached under $PORTICO_CACHE)"
"$here/cluster" build --node
if ((build_only)); then
	log "built: $suite_bin, $echo_bin, ${IMAGE_TARS[*]}"
	exit 0
fi
if [[ -z "${PORTICO_BIN:-}" ]]; then
	log "building portico (release)"
	cargo build --release --locked -p portico-controller
	export PORTICO_BIN="$CARGO_TARGET_DIR/release/portico"
fi
[[ -x "$PORTICO_BIN" ]] || die "no portico binary at $PORTICO_BIN"
portico_version=$("$PORTICO_BIN" --version | awk '{print $NF}')
phase build

# The rig's node is one per machine (building needs no lock): wait for whoever holds
# the lock, unless it is an ancestor of this process (flock /tmp/portico-e2e.lock
# e2e/conformance.sh).
lock_held_by_ancestor() {
	local ino holder p
	ino=$(stat -c %i "$LOCK" 2>/dev/null) || return 1
	# /proc/locks: "1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF"
	for holder in $(awk -v ino="$ino" '$2 == "FLOCK" { n = split($6, a, ":"); if (a[n] == ino) print $5 }' /proc/locks); do
		p=$PPID
		while [[ "$p" =~ ^[0-9]+$ ]] && ((p > 1)); do
			[[ "$p" == "$holder" ]] && return 0
			p=$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')
		done
	done
	return 1
}
if [[ "${PORTICO_E2E_LOCKED:-}" != 1 ]] && ! lock_held_by_ancestor; then
	exec 9>>"$LOCK"
	if ! flock -n 9; then
		log "waiting for $LOCK (another end-to-end run holds the node)"
		flock 9
	fi
	export PORTICO_E2E_LOCKED=1
fi
phase lock-wait

# --- 2. the cluster, the images, the CRDs, Portico --------------------------------

started_cluster=0
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/portico-conformance.XXXXXX")
status=1
# What a failed run leaves for a diagnosis, before its cluster goes: the pods and
# events of every namespace, the Gateway API objects with their status, and the
# logs of Portico's pods (and of their previous containers).
save_diagnostics() {
	[[ -n "${KUBECONFIG:-}" && -n "${KUBECTL:-}" ]] || return 0
	local d=$run_dir/diagnostics pod
	mkdir -p "$d"
	"$KUBECTL" get pods -A -o wide >"$d/pods.txt" 2>&1 || true
	"$KUBECTL" get events -A --sort-by=.lastTimestamp >"$d/events.txt" 2>&1 || true
	"$KUBECTL" get gatewayclasses,gateways,httproutes,grpcroutes,referencegrants,backendtlspolicies,services -A -o yaml >"$d/gateway-api.yaml" 2>&1 || true
	for pod in $("$KUBECTL" -n "$NAMESPACE" get pods -o name 2>/dev/null); do
		"$KUBECTL" -n "$NAMESPACE" logs "$pod" >"$d/${pod#pod/}.log" 2>&1 || true
		"$KUBECTL" -n "$NAMESPACE" logs --previous "$pod" >"$d/${pod#pod/}.previous.log" 2>/dev/null ||
			rm -f "$d/${pod#pod/}.previous.log"
	done
}
cleanup() {
	((status == 0)) || save_diagnostics
	if ((started_cluster && !keep)); then
		"$here/cluster" down --dir "$cluster_dir" >/dev/null 2>&1 ||
			log "could not stop the cluster in $cluster_dir"
	fi
	if ((status == 0 && !(started_cluster && keep))); then
		rm -rf "$run_dir"
	elif ((status != 0)); then
		log "the suite's output and Portico's logs: $run_dir"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n "$cluster_dir" ]]; then
	[[ "$cluster_dir" == /* ]] || cluster_dir="$PWD/$cluster_dir"
	# (Not `status | grep -q`: grep's early exit fails the pipeline under pipefail.)
	cluster_status=$("$here/cluster" status --dir "$cluster_dir" 2>/dev/null || true)
	[[ "$cluster_status" == *$'\nkube-apiserver: running'* ]] ||
		die "no cluster runs in $cluster_dir (start one with: e2e/cluster up --node --dir $cluster_dir)"
	log "using the cluster in $cluster_dir"
else
	cluster_dir=$run_dir/cluster
	log "starting a cluster with a node in $cluster_dir"
	started_cluster=1
	# Not on fd 9: the daemons would inherit the lock and hold it after this run.
	"$here/cluster" up --node --dir "$cluster_dir" >/dev/null 9>&-
fi
export KUBECONFIG=$cluster_dir/kubeconfig
eval "$("$here/cluster" paths | grep '^KUBECTL=')"
kubectl() { "$KUBECTL" "$@"; }
phase cluster

"$here/images/build.sh" --load "$cluster_dir" >/dev/null
"$here/cluster" load-image --dir "$cluster_dir" "${IMAGE_TARS[@]}"
phase images

# The suite reaches Gateways at cluster IPs from this namespace: check that the rig
# serves them (an echo-basic pod behind a plain ClusterIP Service) before blaming
# Portico for a suite that cannot connect.
check_cluster_ips() {
	local ns=portico-conformance-rig ip body i
	kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
	kubectl -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: ${ECHO_REF}
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        readinessProbe: {httpGet: {path: /, port: 3000}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: ClusterIP
  selector: {app: echo}
  ports: [{port: 80, targetPort: 3000}]
EOF
	kubectl -n "$ns" rollout status deployment/echo --timeout=120s >/dev/null ||
		die "rig: the echo-basic pod did not become ready (kubectl -n $ns describe pods)"
	ip=$(kubectl -n "$ns" get service echo -o jsonpath='{.spec.clusterIP}')
	for ((i = 0; i < 50; i++)); do
		body=$(curl -sS --max-time 2 "http://$ip/rig-check" 2>/dev/null) && [[ "$body" == *'"namespace": "'"$ns"'"'* || "$body" == *'"namespace":"'"$ns"'"'* ]] && break
		body=
		sleep 0.2
	done
	[[ -n "$body" ]] || die "rig: the cluster IP $ip (Service $ns/echo) does not answer from the root namespace: is 198.18.192.0/20 routed to the node (ip route get $ip)?"
	log "rig: cluster IP $ip answers from the root namespace"
	kubectl delete namespace "$ns" --wait=false >/dev/null
}
check_cluster_ips
phase rig-check

api_dir=$(gateway_api_dir)
# The CRDs of one channel, and none of the other: the suite refuses to run when the
# installed CRDs' gateway.networking.k8s.io/channel annotations differ.
install_crds() { # CHANNEL
	local c=$1 i f files=() others=() stale=() crds=()
	log "Gateway API $GATEWAY_API_VERSION CRDs ($c channel)"
	# The CRDs first, then the rest: a ValidatingAdmissionPolicy and its binding
	# (the experimental directory also holds a kustomization.yaml, not an object).
	for f in "$api_dir/config/crd/$c"/*.yaml; do
		if grep -q '^kind: CustomResourceDefinition' "$f"; then
			files+=(-f "$f")
		elif [[ "${f##*/}" != kustomization.yaml ]]; then
			others+=(-f "$f")
		fi
	done
	# That policy, safe-upgrades, refuses experimental CRDs over standard ones
	# ("Uninstall ValidatingAdmissionPolicy safe-upgrades.gateway.networking.k8s.io to
	# install experimental CRDs on top of standard channel CRDs"): gone while they are
	# installed, back after.
	if [[ "$c" == experimental ]]; then
		kubectl delete validatingadmissionpolicybinding,validatingadmissionpolicy \
			safe-upgrades.gateway.networking.k8s.io --ignore-not-found >/dev/null
	fi
	# The API server may enforce a deleted policy for a moment longer.
	for ((i = 0; ; i++)); do
		kubectl apply --server-side --force-conflicts "${files[@]}" >/dev/null 2>"$run_dir/crds.err" && break
		((i < 10)) || die "installing the $c channel's CRDs: $(cat "$run_dir/crds.err")"
		sleep 1
	done
	((${#others[@]} == 0)) || kubectl apply --server-side --force-conflicts "${others[@]}" >/dev/null
	# What another channel installed and this one has not (the experimental channel's
	# gateway.networking.x-k8s.io kinds), from an earlier run on this cluster.
	mapfile -t stale < <(kubectl get customresourcedefinitions -o \
		jsonpath='{range .items[*]}{.metadata.name}{"\t"}{.metadata.annotations.gateway\.networking\.k8s\.io/channel}{"\n"}{end}' |
		awk -F '\t' -v c="$c" '$2 != "" && $2 != c { print "customresourcedefinition/" $1 }')
	((${#stale[@]} == 0)) || kubectl delete --wait "${stale[@]}" >/dev/null
	mapfile -t crds < <(kubectl get "${files[@]}" -o name | grep '^customresourcedefinition')
	kubectl wait --for condition=Established --timeout=60s "${crds[@]}" >/dev/null
}
install_crds "${channels[0]}"

grep -q '^gatewayAPI:' charts/portico/values.yaml ||
	die "charts/portico/values.yaml has no gatewayAPI values: this tree's chart cannot serve Gateways"
helm=$("$repo/scripts/helm.sh" --which | tail -1)
log "installing Portico $portico_version ($PORTICO_BIN) with Helm"
upgrade=0
"$helm" status portico -n "$NAMESPACE" >/dev/null 2>&1 && upgrade=1
"$helm" upgrade --install portico charts/portico -n "$NAMESPACE" --create-namespace \
	"${HELM_VALUES[@]}" --wait --timeout 180s >/dev/null
if ((upgrade)); then
	# The image keeps its name when the binary changes: start pods that run the new one.
	kubectl -n "$NAMESPACE" rollout restart deployment/portico >/dev/null
	kubectl -n "$NAMESPACE" rollout status deployment/portico --timeout=180s >/dev/null
fi
if ! kubectl get gatewayclass "$GATEWAY_CLASS" >/dev/null 2>&1; then
	kubectl apply --server-side -f - >/dev/null <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: $GATEWAY_CLASS
spec:
  controllerName: $CONTROLLER_NAME
EOF
fi
phase portico

# --- 3. the suite, once per channel ------------------------------------------------

skip_names=()
for entry in "${SKIP_TESTS[@]}"; do
	skip_names+=("${entry%%|*}")
done
chart_home=$(awk '$1 == "home:" {print $2; exit}' charts/portico/Chart.yaml)
# Every test of the suite, by the ShortName its source gives it.
mapfile -t all_tests < <(grep -hoE 'ShortName: *"[A-Za-z0-9]+"' "$(conformance_dir)"/tests/*.go |
	sed -E 's/.*"(.*)"/\1/' | sort -u)

# Runs the suite on the installed CHANNEL's CRDs and prints its results; fails when a
# test fails or is skipped for no known reason. LAST: no run follows on this cluster.
run_suite() { # CHANNEL LAST
	local c=$1 last=$2 features=("${FEATURES[@]}") skip=("${skip_names[@]}") only=() t
	local log_file=$run_dir/suite-$c.log report=${REPORTS[$c]}
	if [[ "$c" == experimental ]]; then
		features+=("${EXPERIMENTAL_FEATURES[@]}")
		# Only EXPERIMENTAL_TESTS: every other test is skipped (-skip-tests), and the
		# report says so (core and extended "partial").
		[[ -z "$run_test" ]] && only=("${EXPERIMENTAL_TESTS[@]}")
		for t in "${only[@]}"; do
			printf '%s\n' "${all_tests[@]}" | grep -qx "$t" ||
				die "EXPERIMENTAL_TESTS names $t, which the suite $GATEWAY_API_VERSION does not have"
		done
		if ((${#only[@]})); then
			mapfile -t -O "${#skip[@]}" skip < <(printf '%s\n' "${all_tests[@]}" | grep -vxF -f <(printf '%s\n' "${only[@]}"))
		fi
	fi
	local supported skip_csv
	supported=$(
		IFS=,
		printf '%s' "${features[*]}"
	)
	skip_csv=$(
		IFS=,
		printf '%s' "${skip[*]}"
	)
	local args=(
		-test.run '^TestConformance$' -test.v -test.timeout 30m
		-gateway-class "$GATEWAY_CLASS"
		-conformance-profiles "$PROFILE"
		-supported-features "$supported"
		-organization portico -project portico
		-url "${chart_home:-https://github.com/portico-dev/portico}"
		-version "$portico_version"
		-contact "${chart_home:-https://github.com/portico-dev/portico}/issues"
	)
	[[ -n "$skip_csv" ]] && args+=(-skip-tests "$skip_csv")
	if [[ -n "$run_test" ]]; then
		args+=(-run-test "$run_test" -cleanup-base-resources=false)
	else
		mkdir -p "$(dirname "$report")"
		args+=(-report-output "$repo/$report")
		# The next run uses the base resources as they are; a cluster about to go
		# needs no cleaning.
		((last == 0 || (started_cluster && !keep))) && args+=(-cleanup-base-resources=false)
	fi
	log "running the suite ($c channel): $PROFILE${run_test:+, test $run_test}${only[*]:+, tests ${only[*]}}"
	# The suite reads manifests relative to nothing (they are embedded); it runs in the
	# run directory so whatever it writes stays there.
	local suite_status=0
	# Under pipefail the pipeline's status is the suite's (tee and the filter end 0);
	# not `... || true; PIPESTATUS`, where PIPESTATUS would be true's.
	(cd "$run_dir" && "$suite_bin" "${args[@]}" "${suite_args[@]}") 2>&1 | tee "$log_file" |
		{ grep -E '^\s*--- (PASS|FAIL|SKIP)|^(ok|FAIL|PASS)\b|panic:' || true; } || suite_status=$?
	phase "suite-$c"

	local -A result=() why=()
	local verdict name reason entry
	while read -r verdict name; do
		result[$name]=$verdict
	done < <(sed -nE 's/^ *--- (PASS|FAIL|SKIP): TestConformance\/([A-Za-z0-9]+) .*/\1 \2/p' "$log_file")
	# The suite's reason for each skip: "Skipping NAME: suite does not support FEATURE"
	# (a feature Portico does not claim: not run, by design) or "...: test explicitly
	# skipped" (-skip-tests, or another test than -run-test).
	while IFS='|' read -r name reason; do
		why[$name]=$reason
	done < <(sed -nE 's/.*: Skipping ([A-Za-z0-9]+): (.*)$/\1|\2/p' "$log_file")
	local failed=() unexpected_skips=() passed=0 skipped=0 unclaimed=0 elsewhere=0
	printf '\n%-52s %s\n' "TEST ($c channel)" RESULT >&2
	for name in $(printf '%s\n' "${!result[@]}" | sort); do
		verdict=${result[$name]} reason=
		for entry in "${SKIP_TESTS[@]}"; do
			[[ "${entry%%|*}" == "$name" ]] && reason=${entry#*|}
		done
		case "$verdict" in
		PASS) passed=$((passed + 1)) ;;
		FAIL) failed+=("$name") ;;
		SKIP)
			if [[ -n "$reason" ]]; then
				skipped=$((skipped + 1))
			elif [[ "${why[$name]:-}" == "suite does not support "* ]]; then
				unclaimed=$((unclaimed + 1))
				continue
			elif [[ -n "$run_test" && "$name" != "$run_test" ]]; then
				continue
			elif ((${#only[@]})) && ! printf '%s\n' "${only[@]}" | grep -qx "$name"; then
				elsewhere=$((elsewhere + 1))
				continue
			else
				unexpected_skips+=("$name")
				reason=${why[$name]:-no reason given}
			fi
			;;
		esac
		printf '%-52s %s%s\n' "$name" "$verdict" "${reason:+ ($reason)}" >&2
	done
	printf '%s passed, %s failed, %s skipped (SKIP_TESTS); %s not run (features not claimed; claimed: %s)' \
		"$passed" "${#failed[@]}" "$skipped" "$unclaimed" "$supported" >&2
	((elsewhere)) && printf '; %s left to the standard run' "$elsewhere" >&2
	printf '\n' >&2
	((${#result[@]})) || log "the suite ran no test (setup failed?): see $log_file"
	for t in "${only[@]}"; do
		[[ "${result[$t]:-}" == PASS ]] || failed+=("$t")
	done
	phase "results-$c"
	if ((${#unexpected_skips[@]})); then
		log "skipped, not in SKIP_TESTS and not for an unclaimed feature: ${unexpected_skips[*]}"
		suite_status=1
	fi
	((${#failed[@]} == 0)) || suite_status=1
	if ((suite_status != 0)); then
		log "FAILED ($c channel)${failed[*]:+: ${failed[*]}} (the suite's output: $log_file)"
		return 1
	fi
	[[ -z "$run_test" ]] && log "report: $report"
	return 0
}

failed_runs=()
for i in "${!channels[@]}"; do
	if ((i > 0)); then
		install_crds "${channels[$i]}"
		phase "crds-${channels[$i]}"
	fi
	run_suite "${channels[$i]}" $((i + 1 == ${#channels[@]})) || failed_runs+=("${channels[$i]}")
done

printf '\ntimings:' >&2
printf ' %s,' "${timings[@]}" >&2
printf ' total %ss\n' "$(($(now) - t_start))" >&2
((${#failed_runs[@]} == 0)) || die "failed: the ${failed_runs[*]} channel's run"
((started_cluster && keep)) && log "the cluster keeps running: e2e/cluster down --dir $cluster_dir"
status=0
