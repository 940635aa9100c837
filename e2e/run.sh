#!/usr/bin/env bash
# Runs the end-to-end suite: portico against a real kube-apiserver and etcd, and as
# pods on a real node (kubelet, containerd).
#
#   e2e/run.sh                       everything
#   e2e/run.sh routing::             only tests whose name contains routing::
#
# Builds (or finds cached) the control-plane binaries, builds the release portico
# unless PORTICO_BIN names one, runs the tests one at a time, and always cleans up:
# portico processes, test hosts and the cluster, whether the tests pass, fail or are
# interrupted. Needs root (test hosts are network namespaces).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cd "$repo"

export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PORTICO_CACHE/target}"

log() { printf 'e2e: %s\n' "$*" >&2; }

if [[ "$(id -u)" != 0 ]]; then
	log "needs root: test hosts are network namespaces (rerun as root or with sudo)"
	exit 1
fi
for tool in curl python3 ip openssl; do
	command -v "$tool" >/dev/null || {
		log "'$tool' is required (apt-get install -y curl python3 iproute2 openssl)"
		exit 1
	}
done

log "control-plane binaries (built once, then cached under $PORTICO_CACHE)"
e2e/cluster build --node

log "the node's life cycle: up, a killed run, up again, down; nothing left behind"
e2e/check-node.sh

if [[ -z "${PORTICO_BIN:-}" ]]; then
	log "building portico (release)"
	cargo build --release --locked -p portico-controller
	export PORTICO_BIN="$CARGO_TARGET_DIR/release/portico"
fi
log "testing $PORTICO_BIN"

# The harness keeps everything of this run here and records what it starts, so the
# cleanup below finds it all even if the test binary is killed.
PORTICO_E2E_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/portico-e2e-run.XXXXXX")"
export PORTICO_E2E_RUN_DIR
status=1
cleanup() {
	# The harness's own cleanup process waits for the test binary to exit; let it
	# finish, then sweep whatever is left (both are idempotent).
	local pid i
	pid="$(cat "$PORTICO_E2E_RUN_DIR/cleanup.pid" 2>/dev/null || true)"
	if [[ -n "$pid" ]]; then
		for ((i = 0; i < 600; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	if ((status == 0)); then
		bash "$here/src/cleanup.sh" now "$PORTICO_E2E_RUN_DIR" rm
	else
		bash "$here/src/cleanup.sh" now "$PORTICO_E2E_RUN_DIR" keep
		log "logs of the failed run: $PORTICO_E2E_RUN_DIR/logs"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The test crate builds in debug (it only drives things); --test-threads=1 because
# tests restart the API server and measure latencies (the harness also serialises them).
cargo test --locked -p portico-e2e -- --test-threads=1 --nocapture "$@"
status=0
