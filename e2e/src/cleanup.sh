#!/usr/bin/env bash
# Removes what one e2e run left behind: the portico processes it started, its test
# hosts and its cluster. Safe to run more than once, and concurrently with itself.
#
#   cleanup.sh now RUN_DIR [rm|keep]          clean up at once
#   cleanup.sh after PID RUN_DIR [rm|keep]    wait until process PID is gone, then clean up
#
# `rm` (the default) also deletes RUN_DIR (logs included); `keep` leaves the logs.
# The harness (e2e/src/lib.rs) starts `after` with its own PID when it starts a
# cluster, so a test binary that panics, is interrupted or is killed still leaves
# nothing running. It records what to remove in RUN_DIR:
#
#   RUN_DIR/pids/PID          a process it started; the file holds the executable path
#   RUN_DIR/testhosts/NAME    a test host (e2e/cluster testhost)
#   RUN_DIR/cluster/          the cluster's --dir
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster="$here/../cluster"

usage() {
	echo "usage: $0 now RUN_DIR [rm|keep] | $0 after PID RUN_DIR [rm|keep]" >&2
	exit 2
}

case "${1:-}" in
now)
	(($# >= 2)) || usage
	run=$2 disposal=${3:-rm}
	;;
after)
	(($# >= 3)) || usage
	pid=$2 run=$3 disposal=${4:-rm}
	while kill -0 "$pid" 2>/dev/null; do
		# A zombie still answers kill -0; it is gone for our purposes.
		[[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
		sleep 0.5
	done
	;;
*) usage ;;
esac

[[ -d "$run" ]] || exit 0

# Processes first: a portico still running would log errors while the cluster goes away.
for f in "$run"/pids/*; do
	[[ -e "$f" ]] || continue
	p=${f##*/}
	exe=$(cat "$f" 2>/dev/null || true)
	# Only a process still running the recorded executable (guards against PID reuse).
	if [[ "$p" =~ ^[0-9]+$ && -n "$exe" && "$(readlink "/proc/$p/exe" 2>/dev/null)" == "$exe" ]]; then
		kill -TERM "$p" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
	fi
	rm -f "$f"
done

for f in "$run"/testhosts/*; do
	[[ -e "$f" ]] || continue
	"$cluster" testhost down "${f##*/}" 2>/dev/null || true
	rm -f "$f"
done

if [[ -d "$run/cluster" ]]; then
	"$cluster" down --dir "$run/cluster" 2>/dev/null ||
		echo "e2e cleanup: could not stop the cluster in $run/cluster" >&2
fi

if [[ "$disposal" == rm ]]; then
	rm -rf "$run"
fi
exit 0
