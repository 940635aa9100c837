#!/usr/bin/env bash
# Runs Helm, building it first from upstream source if it is not cached yet.
#
#   scripts/helm.sh lint charts/portico
#   scripts/helm.sh template portico charts/portico --namespace portico-system
#   scripts/helm.sh --which            # build if needed, print the binary's path
#
# Helm is built from the Go module proxy (module helm.sh/helm/v3, package
# cmd/helm) in a scratch module, the same way e2e/cluster builds kube-apiserver,
# with the version and Kubernetes-version ldflags of Helm's own Makefile, so
# `helm version` and the default `.Capabilities.KubeVersion` match a release build.
# The binary is cached, keyed by version:
#
#   ${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}/
#     bin/helm-<version>/helm             the binary (moved into place in one rename)
#     bin/helm-<version>/build-info.txt   module, Go version, date, build seconds
#     src/helm-<version>/go.mod, go.sum   the scratch module
#     helm-build.lock                     held while building
#
# Settings: PORTICO_HELM_VERSION (default below), PORTICO_BUILD_JOBS (default 2).
# A cold build takes a few minutes on 2 cores; a cached one returns at once.
# Needs Go (the version Helm's go.mod declares, or newer) and flock (util-linux).
set -euo pipefail

PORTICO_HELM_VERSION="${PORTICO_HELM_VERSION:-v3.22.0}"
PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
MODULE=helm.sh/helm/v3

log() { printf 'helm.sh: %s\n' "$*" >&2; }
die() {
	printf 'helm.sh: error: %s\n' "$*" >&2
	exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not found on PATH ($2)"; }

version=$PORTICO_HELM_VERSION
[[ "$version" =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "PORTICO_HELM_VERSION must look like v3.22.0, not '$version'"
bin_dir="$PORTICO_CACHE/bin/helm-$version"
helm_bin="$bin_dir/helm"

jobs() {
	local jobs=${PORTICO_BUILD_JOBS:-2} cpus
	cpus=$(nproc 2>/dev/null || echo 2)
	((jobs > cpus)) && jobs=$cpus
	((jobs < 1)) && jobs=1
	printf '%s\n' "$jobs"
}

go_env() {
	env CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false GOMAXPROCS="$(jobs)" "$@"
}

build() {
	local started src gomod tmp client_go major minor ldflags
	started=$(date +%s)
	log "building helm $version from $MODULE (a few minutes when cold)"
	src="$PORTICO_CACHE/src/helm-$version"
	rm -rf "$src"
	mkdir -p "$src" "$PORTICO_CACHE/bin"
	gomod=$(go_env go mod download -json "$MODULE@$version" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	[[ -n "$gomod" && -f "$gomod" ]] || die "go mod download $MODULE@$version failed (is $version served?)"
	if grep -q '^replace' "$gomod"; then
		die "$MODULE@$version has replace directives; this script does not copy them"
	fi
	{
		printf 'module portico.invalid/build/helm\n\n'
		# The go and godebug lines of upstream's go.mod, so the build behaves the same.
		awk '/^go [0-9]/ || /^godebug / { print }' "$gomod"
		printf '\nrequire %s %s\n' "$MODULE" "$version"
	} >"$src/go.mod"
	(cd "$src" && go_env go get "$MODULE/cmd/helm@$version" >&2) ||
		die "resolving $MODULE@$version failed (see above)"
	# Helm's Makefile: the Kubernetes version it defaults to is the client-go minor + 1.0.
	client_go=$(cd "$src" && go_env go list -m -f '{{.Version}}' k8s.io/client-go)
	major=${client_go#v}
	major=${major%%.*}
	major=$((major + 1))
	minor=${client_go#v*.}
	minor=${minor%%.*}
	ldflags="-s -w"
	ldflags+=" -X helm.sh/helm/v3/internal/version.version=$version"
	ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major"
	ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
	ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major"
	ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
	tmp=$(mktemp -d "$PORTICO_CACHE/bin/.helm-$version.XXXXXX")
	(cd "$src" && go_env go build -trimpath -p "$(jobs)" -ldflags "$ldflags" \
		-o "$tmp/helm" "$MODULE/cmd/helm") || {
		rm -rf "$tmp"
		die "building helm $version failed (see above)"
	}
	if [[ "$("$tmp/helm" version --template '{{.Version}}')" != "$version" ]]; then
		rm -rf "$tmp"
		die "the built helm does not report version $version"
	fi
	{
		printf 'module: %s@%s\n' "$MODULE" "$version"
		printf 'go: %s\n' "$(go env GOVERSION)"
		printf 'kubernetes-default: v%s.%s (client-go %s)\n' "$major" "$minor" "$client_go"
		printf 'built: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		printf 'build-seconds: %s\n' "$(($(date +%s) - started))"
	} >"$tmp/build-info.txt"
	if [[ -e "$bin_dir" ]]; then
		rm -rf "$tmp"
	else
		mv "$tmp" "$bin_dir"
	fi
	log "built helm $version in $(($(date +%s) - started))s: $helm_bin"
}

if [[ ! -x "$helm_bin" ]]; then
	need go "install Go 1.26 or newer"
	need flock "apt-get install -y util-linux"
	mkdir -p "$PORTICO_CACHE"
	exec {lockfd}>"$PORTICO_CACHE/helm-build.lock"
	if ! flock -n "$lockfd"; then
		log "another build holds $PORTICO_CACHE/helm-build.lock; waiting for it"
		flock "$lockfd"
	fi
	[[ -x "$helm_bin" ]] || build
	flock -u "$lockfd"
	exec {lockfd}>&-
fi

if [[ "${1:-}" == --which ]]; then
	printf '%s\n' "$helm_bin"
	exit 0
fi
exec "$helm_bin" "$@"
