#!/usr/bin/env bash
# The node's life cycle, as the machine sees it (e2e/run.sh runs this first):
#
#   1. up --node, a pod running (a sandbox and a container: shims, mounts, a pod
#      network namespace);
#   2. the run is killed: every process e2e/cluster started gets SIGKILL (the pod's
#      shim and container keep running, as after a killed test run);
#   3. a second up --node in another directory works, and nothing of the first is
#      left (its processes, its directory);
#   4. a pod runs there too; down;
#   5. nothing of either is left, and the machine's kernel settings and its own
#      iptables rules are what they were before step 1.
#
# Needs root and the cached binaries (e2e/cluster build --node). About a minute.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster="$here/cluster"
export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"

log() { printf 'check-node: %s\n' "$*" >&2; }
fail() {
	printf 'check-node: FAILED: %s\n' "$*" >&2
	exit 1
}

# What the node may change only for a while: sysctls it must never change, the root
# namespace's own iptables rules (counters left out), and everything named after it.
machine_state() {
	sysctl -n kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom \
		kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
	if command -v iptables-save >/dev/null; then
		iptables-save 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//'
	fi
	ls -d /var/lib/cni /var/log/containers /run/portico-node 2>/dev/null || true
}
# dir_leftovers DIR...: mounts, files and processes of the clusters in DIRs.
dir_leftovers() {
	local d p cmd
	for d in "$@"; do
		grep -F "$d" /proc/self/mountinfo || true
		[[ -e "$d" ]] && echo "$d exists"
		for p in /proc/[0-9]*; do
			cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
			[[ "$cmd" == *"$d"* ]] && echo "process ${p#/proc/}: $cmd"
		done
	done
	return 0
}
# node_leftovers: what is named after the node, machine-wide.
node_leftovers() {
	ip netns list 2>/dev/null | awk '$1 == "portico-node"'
	ip -o link show pnode0 2>/dev/null || true
	ip -4 route show 198.18.128.0/18 2>/dev/null
	ip -4 route show 198.18.192.0/20 2>/dev/null
	ls -d /sys/fs/cgroup/*/portico-e2e-node 2>/dev/null || true
	grep -F portico-node-run /proc/self/mountinfo || true
}

work=$(mktemp -d "${TMPDIR:-/tmp}/portico-check-node.XXXXXX")
one="$work/one" two="$work/two"
cleanup() {
	"$cluster" down --dir "$two" >/dev/null 2>&1 || true
	"$cluster" down --dir "$one" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

kubectl=$("$cluster" paths | sed -n 's/^KUBECTL=//p')
run_pod() { # DIR
	local kc="$1/kubeconfig"
	"$kubectl" --kubeconfig "$kc" run pause --image=localhost/pause:dev \
		--image-pull-policy=Never --restart=Never >/dev/null
	"$kubectl" --kubeconfig "$kc" wait --for=condition=Ready pod/pause --timeout=60s >/dev/null ||
		fail "a pod did not get Ready on the node of $1"
}

before=$(machine_state)
started=$(date +%s)
"$cluster" up --node --dir "$one" >/dev/null
log "node up in $(($(date +%s) - started))s"
run_pod "$one"
for pidfile in "$one"/*.pid; do
	kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
done
log "killed every process e2e/cluster started (the pod's shim and container run on)"

started=$(date +%s)
"$cluster" up --node --dir "$two" >/dev/null || fail "a second up after a killed run"
log "second node up in $(($(date +%s) - started))s"
left=$(dir_leftovers "$one")
[[ -z "$left" ]] || fail "the second up left this of the killed run: $left"
run_pod "$two"
"$cluster" down --dir "$two" >/dev/null
left=$(dir_leftovers "$one" "$two"; node_leftovers)
[[ -z "$left" ]] || fail "down left: $left"
after=$(machine_state)
[[ "$after" == "$before" ]] || fail "the machine's state changed: $(diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") || true)"
log "passed: nothing left, kernel settings and the machine's iptables rules unchanged"
