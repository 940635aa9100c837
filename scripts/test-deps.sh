#!/usr/bin/env bash
# Installs what the integration tests (tests/integration/) need on a fresh Debian
# machine, and does nothing (quickly) when it is all there already:
#
#   - Debian packages: curl, h2load (nghttp2-client), openssl, ss (iproute2),
#     slowhttptest; for the end-to-end rig's node: containerd, runc, iptables,
#     containernetworking-plugins.
#   - h2spec (HTTP/2 conformance), built with Go from the module proxy at a pinned
#     version and dependency set, at $PORTICO_CACHE/bin/h2spec-<version>/h2spec
#     `apt-get update` runs only when something has to be installed.
#   - A Python virtualenv with pinned pytest, websockets and grpcio, at
#     ${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}/venv
#
# Prints the venv's python on the last line of stdout, so callers can do
#   PY=$(scripts/test-deps.sh | tail -n1)
# Everything else goes to stderr.
set -euo pipefail

PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
VENV="$PORTICO_CACHE/venv"

# Pinned Python packages. Changing this list rebuilds the venv's contents.
PY_REQUIREMENTS=(
	"pytest==9.2.0"
	"websockets==17.4"
	"grpcio==1.85.1"
)

log() { printf 'test-deps: %s\n' "$*" >&2; }

# Debian package that provides each command the tests run.
declare -A APT_FOR=(
	[curl]=curl
	[h2load]=nghttp2-client
	[openssl]=openssl
	[ss]=iproute2
	[slowhttptest]=slowhttptest
	[containerd]=containerd
	[runc]=runc
	[iptables]=iptables
)

missing=()
for cmd in "${!APT_FOR[@]}"; do
	if ! command -v "$cmd" >/dev/null 2>&1; then
		missing+=("${APT_FOR[$cmd]}")
	fi
done

# The CNI plugins are not on PATH.
[[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)

if ((${#missing[@]})); then
	as_root=()
	if ((EUID != 0)); then
		command -v sudo >/dev/null 2>&1 || {
			log "need root (or sudo) to install: ${missing[*]}"
			exit 1
		}
		as_root=(sudo)
	fi
	log "installing Debian packages: ${missing[*]}"
	"${as_root[@]}" apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
	log "Debian packages present (curl, h2load, openssl, ss, slowhttptest, containerd, runc, iptables, CNI plugins)"
fi

# h2spec has no go.mod of its own: a scratch module pins it and what it imports, so
# every machine builds the same program.
H2SPEC_VERSION=v2.2.1
h2spec_bin="$PORTICO_CACHE/bin/h2spec-$H2SPEC_VERSION/h2spec"
if [[ -x "$h2spec_bin" ]]; then
	log "h2spec $H2SPEC_VERSION present"
elif ! command -v go >/dev/null 2>&1; then
	log "no go on PATH: h2spec not built (its test will be skipped)"
else
	log "building h2spec $H2SPEC_VERSION"
	src="$PORTICO_CACHE/src/h2spec-$H2SPEC_VERSION"
	mkdir -p "$src" "$(dirname "$h2spec_bin")"
	cat >"$src/go.mod" <<GOMOD
module portico.dev/h2spec

go 1.21

require (
	github.com/summerwind/h2spec $H2SPEC_VERSION+incompatible
	github.com/fatih/color v1.19.0
	github.com/spf13/cobra v1.10.2
	golang.org/x/net v0.63.0
	golang.org/x/sys v0.50.0
	golang.org/x/text v0.44.0
)
GOMOD
	if (
		cd "$src"
		export CGO_ENABLED=0 GOWORK=off GOFLAGS='-buildvcs=false -mod=mod'
		go build -trimpath -ldflags '-s -w' -o "$h2spec_bin.tmp" github.com/summerwind/h2spec/cmd/h2spec
	) >&2; then
		mv "$h2spec_bin.tmp" "$h2spec_bin"
	else
		log "building h2spec failed (its test will be skipped)"
	fi
fi

# The venv is keyed by the requirement list and the interpreter's version, so an
# edit to either rebuilds it and an unchanged setup is a no-op.
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || {
	log "no $python on PATH"
	exit 1
}
want="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') ${PY_REQUIREMENTS[*]}"
stamp="$VENV/.portico-requirements"
if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
	log "python venv up to date: $VENV"
else
	log "creating python venv at $VENV with: ${PY_REQUIREMENTS[*]}"
	mkdir -p "$PORTICO_CACHE"
	if ! "$python" -m venv --clear "$VENV" >&2; then
		# Debian's own python3 ships venv support separately.
		log "python venv module missing; installing python3-venv"
		as_root=()
		((EUID == 0)) || as_root=(sudo)
		"${as_root[@]}" apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq python3-venv >&2
		"$python" -m venv --clear "$VENV" >&2
	fi
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}" >&2
	printf '%s' "$want" >"$stamp"
	log "python venv ready"
fi

printf '%s\n' "$VENV/bin/python"
