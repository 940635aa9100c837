#!/usr/bin/env bash
# Runs the integration suite: installs its tools (scripts/test-deps.sh), builds the
# release binary unless PORTICO_BIN names one, then runs pytest with any arguments
# given, e.g.  tests/integration/run.sh -k websocket -x
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

python="$("$repo/scripts/test-deps.sh" | tail -n1)"

if [[ -z "${PORTICO_BIN:-}" ]]; then
	printf 'integration: building portico (release)\n' >&2
	(cd "$repo" && cargo build --release --locked -p portico-controller)
	export PORTICO_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/portico"
fi
printf 'integration: testing %s\n' "$PORTICO_BIN" >&2

cd "$here"
exec "$python" -m pytest "$@"
