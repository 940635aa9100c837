#!/usr/bin/env bash
# Portico vs nginx vs HAProxy vs Pingora (and a direct client->backend baseline), side
# by side in one run. See bench/README.md for what is measured.
#
#   bench/run.sh            full run (3 interleaved rounds, 10 s each; ~25 min on 2 cores)
#                           -> bench/results/latest.{md,json} and the table in bench/README.md
#   bench/run.sh --quick    smoke run (1 round, 2 s each, small connection counts; ~2.5 min)
#                           -> $PORTICO_CACHE/bench-quick/latest.{md,json}
#
#   bench/run.sh --rev HEAD benchmark a commit (a clean export built apart), not the
#                           working tree with whatever edits are in progress in it
#   bench/run.sh --profile  perf profile of Portico alone under scenarios 1, 2 and 3
#   bench/run.sh --instructions
#                           instructions per request of every proxy, under callgrind
#                           -> bench/results/instructions.{md,json} and bench/README.md
#   bench/run.sh --no-pingora
#                           without the Pingora peer (and without building it)
#
#   bench/run.sh --access-logs
#                           nginx and Portico each write a JSON access line per request
#                           to a file (HAProxy and Pingora log nothing)
#   bench/run.sh --instructions --tls
#                           the same count over TLS: HTTP/1.1 to each HTTPS listener
#                           -> bench/results/instructions-tls.{md,json}
#   bench/run.sh --filters  Portico routes through a Route with three filters (header
#                           change, rewrite, HSTS) instead of the plain Ingress rule
#
# Other flags go to bench/bench.py (--rounds N, --duration S, --out DIR, --keep-workdir).
# Installs what it needs and does nothing (quickly) when it is all there already:
#   - Debian packages nginx, haproxy, wrk, nghttp2-client (h2load) and openssl (the
#     certificate, and s_time and s_client for TLS); apt-get update only when something
#     is missing;
#   - oha (constant-rate HTTP client with latency correction) from crates.io, built
#     once into $PORTICO_CACHE/oha;
#   - Portico's release binary (cargo build --release -p portico-controller), unless
#     PORTICO_BIN names one;
#   - the Pingora peer (bench/pingora, a package of its own) into
#     $PORTICO_CACHE/pingora-target, unless PINGORA_BIN names one. A quick run builds it
#     only when an earlier build is there to bring up to date; a failed build leaves it
#     out of the run.
# Exits non-zero only when the harness breaks (a tool or peer fails to start, a peer
# dies or answers non-2xx), never because of a number.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PORTICO_CACHE/target}"
OHA_VERSION=1.16.0

log() { printf 'bench: %s\n' "$*" >&2; }

quick=0
instructions=0
rev=""
no_pingora="" # why this run has no Pingora peer, when it has none
args=()
while (($#)); do
	case "$1" in
	--quick)
		quick=1
		args+=("$1")
		;;
	--rev)
		rev="${2:?--rev needs a commit}"
		shift
		;;
	--rev=*) rev="${1#--rev=}" ;;
	--no-pingora) no_pingora="--no-pingora" ;;
	--profile)
		no_pingora="--profile measures Portico alone"
		args+=("$1")
		;;
	--instructions)
		instructions=1
		args+=("$1")
		;;
	*) args+=("$1") ;;
	esac
	shift
done
set -- ${args[@]+"${args[@]}"}

# --- Debian packages -------------------------------------------------------------
declare -A APT_FOR=(
	[nginx]=nginx
	[haproxy]=haproxy
	[wrk]=wrk
	[h2load]=nghttp2-client
	[openssl]=openssl
)
if ((instructions)); then
	APT_FOR[valgrind]=valgrind
	APT_FOR[callgrind_control]=valgrind
fi
missing=()
for cmd in "${!APT_FOR[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || missing+=("${APT_FOR[$cmd]}")
done
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
	log "Debian packages present (nginx, haproxy, wrk, h2load, openssl)"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# --- oha ---------------------------------------------------------------------------
oha="$PORTICO_CACHE/oha/bin/oha"
if [[ -x "$oha" ]] && "$oha" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
	log "oha $OHA_VERSION present"
else
	log "building oha $OHA_VERSION from crates.io into $PORTICO_CACHE/oha (once)"
	mkdir -p "$PORTICO_CACHE/oha"
	# Its own target directory: oha's build has nothing to share with Portico's.
	env -u CARGO_TARGET_DIR cargo install oha --version "$OHA_VERSION" --locked --root "$PORTICO_CACHE/oha" >&2
fi

# --- Portico ---------------------------------------------------------------------
if [[ -n "${PORTICO_BIN:-}" ]]; then
	label="binary from PORTICO_BIN"
elif [[ -n "$rev" ]]; then
	# A clean export of one commit, built in its own source and target directories:
	# the checkout (and any edits in progress there) and its binary stay untouched.
	sha="$(git -C "$repo" rev-parse --verify "$rev^{commit}")"
	src="$PORTICO_CACHE/bench-src/$sha"
	if [[ ! -f "$src/Cargo.toml" ]]; then
		log "exporting $rev ($sha) to $src"
		rm -rf "$src.tmp"
		mkdir -p "$src.tmp"
		git -C "$repo" archive "$sha" | tar -x -C "$src.tmp"
		mv "$src.tmp" "$src"
	fi
	log "building portico $sha (profile dist)"
	(cd "$src" && CARGO_TARGET_DIR="$PORTICO_CACHE/bench-target" cargo build --profile dist --locked -p portico-controller) >&2
	PORTICO_BIN="$PORTICO_CACHE/bench-target/dist/portico"
	label="$(git -C "$repo" rev-parse --short=12 "$sha") (clean export of $rev)"
else
	log "building portico from the checkout (profile dist)"
	(cd "$repo" && cargo build --profile dist --locked -p portico-controller) >&2
	PORTICO_BIN="$CARGO_TARGET_DIR/dist/portico"
	label="$(git -C "$repo" describe --always --dirty --abbrev=12) (checkout)"
fi
export BENCH_PORTICO_LABEL="$label"
[[ -x "$PORTICO_BIN" ]] || {
	log "no portico binary at $PORTICO_BIN"
	exit 1
}
log "portico: $PORTICO_BIN"

# --- Pingora peer -------------------------------------------------------------------
# Optional: without it the run goes on with the other peers, and its table has no
# Pingora column.
pingora_args=()
if [[ -n "$no_pingora" ]]; then
	log "Pingora peer left out ($no_pingora)"
elif [[ -n "${PINGORA_BIN:-}" ]]; then
	pingora_args=(--pingora "$PINGORA_BIN")
else
	# Its own target directory: it shares no build settings with the workspace.
	pingora_target="$PORTICO_CACHE/pingora-target"
	pingora_bin="$pingora_target/release/bench-pingora"
	if ((quick)) && [[ ! -x "$pingora_bin" ]]; then
		# A cold build takes minutes; the smoke run stays quick.
		log "Pingora peer not built yet: this quick run leaves it out (a full run builds it)"
	else
		log "building the Pingora peer (bench/pingora, release) into $pingora_target"
		if (cd "$here/pingora" && CARGO_TARGET_DIR="$pingora_target" cargo build --release --locked) >&2; then
			pingora_args=(--pingora "$pingora_bin")
		else
			log "the Pingora peer failed to build: this run leaves it out"
		fi
	fi
fi
if ((${#pingora_args[@]})); then
	[[ -x "${pingora_args[1]}" ]] || {
		log "no Pingora peer binary at ${pingora_args[1]}"
		exit 1
	}
	log "pingora: ${pingora_args[1]}"
fi

# --- run -------------------------------------------------------------------------
# Scenario 8 holds 10,000 connections open on both sides: raise the open-file limit
# as far as this shell may.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

python="${PYTHON:-python3}"
has_out=0
for a in "$@"; do [[ "$a" == "--out" || "$a" == --out=* ]] && has_out=1; done
extra=()
if ((!has_out)); then
	if ((quick)); then
		# A smoke run never overwrites the committed results.
		extra+=(--out "$PORTICO_CACHE/bench-quick")
	else
		extra+=(--update-readme)
	fi
fi
# Run every peer, client and the backend at a raised CPU priority when allowed, so
# that other work on the machine (builds, say) disturbs the measurement less. All of
# them get the same priority: it shifts nothing between peers.
nice=()
if ((EUID == 0)) && [[ "${BENCH_NICE:-1}" != 0 ]]; then
	nice=(nice -n -10)
fi
exec "${nice[@]}" "$python" "$here/bench.py" --portico "$PORTICO_BIN" --oha "$oha" \
	${pingora_args[@]+"${pingora_args[@]}"} "${extra[@]}" "$@"
