#!/usr/bin/env bash
# Runs promtool (Prometheus's rule checker and rule unit-test runner), building it
# first from upstream source if it is not cached yet. Also builds and runs the
# Prometheus server itself when called as scripts/prometheus.sh (a link to this file).
#
#   scripts/promtool.sh check rules rules.yaml
#   scripts/promtool.sh test rules rules.test.yaml
#   scripts/promtool.sh --which            # build if needed, print the binary's path
#   scripts/prometheus.sh --which          # the same for the server (cmd/prometheus)
#
# Built from the Go module proxy: `go install` of package cmd/<tool> of module
# github.com/prometheus/prometheus (which has no replace directives), with the
# version ldflags of Prometheus's own build. Prometheus 3.X.Y is module version
# v0.3XX.Y. The server is built without its web UI assets (build tag
# `builtinassets` off): its HTTP API is all the tests use. Cached, keyed by version:
#
#   ${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}/
#     bin/<tool>-<module version>/<tool>           (moved into place in one rename)
#     bin/<tool>-<module version>/build-info.txt   module, Go version, build seconds
#     <tool>-build.lock                            held while building
#
# Settings: PORTICO_PROMTOOL_VERSION (module version of both tools, default below),
# PORTICO_BUILD_JOBS (default 2). A cold build takes several minutes on 2 cores.
# Needs Go (the version Prometheus's go.mod declares, or newer) and flock.
set -euo pipefail

PORTICO_PROMTOOL_VERSION="${PORTICO_PROMTOOL_VERSION:-v0.316.0}"
PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
MODULE=github.com/prometheus/prometheus
tool=$(basename "$0" .sh)
[[ "$tool" == promtool || "$tool" == prometheus ]] || tool=promtool

log() { printf '%s.sh: %s\n' "$tool" "$*" >&2; }
die() {
	printf '%s.sh: error: %s\n' "$tool" "$*" >&2
	exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not found on PATH ($2)"; }

version=$PORTICO_PROMTOOL_VERSION
[[ "$version" =~ ^v0\.3([0-9][0-9])\.([0-9]+)$ ]] ||
	die "PORTICO_PROMTOOL_VERSION must be a module version like v0.316.0 (Prometheus 3.16.0), not '$version'"
release="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}"
bin_dir="$PORTICO_CACHE/bin/$tool-$version"
tool_bin="$bin_dir/$tool"

build() {
	local started jobs tmp ldflags
	started=$(date +%s)
	jobs=${PORTICO_BUILD_JOBS:-2}
	log "building $tool $release ($MODULE@$version) from the Go module proxy (several minutes when cold)"
	mkdir -p "$PORTICO_CACHE/bin"
	tmp=$(mktemp -d "$PORTICO_CACHE/bin/.$tool-$version.XXXXXX")
	ldflags="-s -w"
	ldflags+=" -X github.com/prometheus/common/version.Version=$release"
	ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
	ldflags+=" -X github.com/prometheus/common/version.BuildUser=portico"
	env CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false GOMAXPROCS="$jobs" GOBIN="$tmp" \
		go install -trimpath -p "$jobs" -ldflags "$ldflags" "$MODULE/cmd/$tool@$version" >&2 || {
		rm -rf "$tmp"
		die "building $tool $version failed (see above)"
	}
	"$tmp/$tool" --version 2>&1 | grep -q "version $release" || {
		rm -rf "$tmp"
		die "the built $tool does not report version $release"
	}
	{
		printf 'module: %s@%s (Prometheus %s)\n' "$MODULE" "$version" "$release"
		printf 'go: %s\n' "$(go env GOVERSION)"
		printf 'built: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		printf 'build-seconds: %s\n' "$(($(date +%s) - started))"
	} >"$tmp/build-info.txt"
	if [[ -e "$bin_dir" ]]; then rm -rf "$tmp"; else mv "$tmp" "$bin_dir"; fi
	log "built $tool $release in $(($(date +%s) - started))s: $tool_bin"
}

if [[ ! -x "$tool_bin" ]]; then
	need go "install Go 1.26 or newer"
	need flock "apt-get install -y util-linux"
	mkdir -p "$PORTICO_CACHE"
	exec {lockfd}>"$PORTICO_CACHE/$tool-build.lock"
	if ! flock -n "$lockfd"; then
		log "another build holds $PORTICO_CACHE/$tool-build.lock; waiting for it"
		flock "$lockfd"
	fi
	[[ -x "$tool_bin" ]] || build
	flock -u "$lockfd"
	exec {lockfd}>&-
fi

if [[ "${1:-}" == --which ]]; then
	printf '%s\n' "$tool_bin"
	exit 0
fi
exec "$tool_bin" "$@"
