# shellcheck shell=bash
# Shared helpers for the e2e scripts. Source this file; it defines functions and
# a few variables and has no side effects.

# Pinned versions. Override with the environment variables for a one-off try;
# the cache is keyed by version, so different versions live side by side.
PORTICO_ETCD_VERSION="${PORTICO_ETCD_VERSION:-v3.6.16}"
PORTICO_KUBE_VERSION="${PORTICO_KUBE_VERSION:-v1.35.4}"

PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"

log() {
	printf '%s: %s\n' "${PROG:-portico-e2e}" "$*" >&2
}

die() {
	printf '%s: error: %s\n' "${PROG:-portico-e2e}" "$*" >&2
	exit 1
}

# need TOOL HINT: fail with a clear message when TOOL is not on PATH.
need() {
	command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not found on PATH ($2)"
}

# Seconds since the epoch (bash >= 5 has EPOCHSECONDS; fall back to date).
now() {
	if [[ -n "${EPOCHSECONDS:-}" ]]; then
		printf '%s\n' "$EPOCHSECONDS"
	else
		date +%s
	fi
}

# is_port_free PORT: true when nothing listens on 127.0.0.1:PORT (or the wildcard).
is_port_free() {
	local port=$1
	if command -v ss >/dev/null 2>&1; then
		[[ -z "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ]]
	else
		# No ss: a refused connection means nothing is listening.
		! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
	fi
}

# free_port VAR: set VAR to a port that is free now, chosen at random below the
# usual ephemeral range (32768-60999) so outgoing connections do not take it.
# Ports already handed out by this process (RESERVED_PORTS) are skipped.
RESERVED_PORTS=" "
free_port() {
	local port tries=0
	while ((tries < 200)); do
		port=$((20000 + RANDOM % 12000))
		tries=$((tries + 1))
		[[ "$RESERVED_PORTS" == *" $port "* ]] && continue
		if is_port_free "$port"; then
			RESERVED_PORTS+="$port "
			printf -v "$1" '%s' "$port"
			return 0
		fi
	done
	die "could not find a free TCP port on 127.0.0.1"
}

# pid_alive PID BINARY: true when PID is running BINARY (guards against pid reuse).
pid_alive() {
	local pid=$1 bin=$2 exe
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	[[ -d /proc/$pid ]] || return 0 # no procfs: trust kill -0
	# Unreadable for a zombie (exited, not yet reaped) or another user's process.
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	[[ "$exe" == "$bin" || "$exe" == "$bin (deleted)" ]]
}

# stop_pid PID BINARY NAME: SIGTERM, wait up to 20 s, then SIGKILL.
stop_pid() {
	local pid=$1 bin=$2 name=$3 i
	pid_alive "$pid" "$bin" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		pid_alive "$pid" "$bin" || return 0
		sleep 0.1
	done
	log "$name (pid $pid) did not exit after SIGTERM; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		pid_alive "$pid" "$bin" || return 0
		sleep 0.1
	done
	die "$name (pid $pid) is still running after SIGKILL"
}
