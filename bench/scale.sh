#!/usr/bin/env bash
# Scale of the control side: compile time, load time and resident memory of the real
# `portico --from-file` binary at 1,000, 10,000 and 100,000 Ingress rules (two shapes),
# and route-lookup latency at each size. See "Control side: scale" in bench/README.md.
#
#   bench/scale.sh          full run (about 3 min plus builds on 2 cores)
#                           -> bench/results/scale.{md,json} and the table in bench/README.md
#   bench/scale.sh --quick  smoke run: 1,000 and 10,000 rules, one start per file, short
#                           criterion runs -> $PORTICO_CACHE/scale-quick/scale.{md,json}
#   bench/scale.sh --out DIR   write the results to DIR instead (README left alone)
#
# Builds Portico's release binary (cargo build --profile dist -p portico-controller) unless
# PORTICO_BIN names one, and runs the criterion benches with `cargo bench`
# (dataplane/benches/lookup.rs, controller/benches/compile.rs). Needs python3 (3.11,
# standard library only) and nothing else beyond the Rust toolchain.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PORTICO_CACHE/target}"

log() { printf 'scale: %s\n' "$*" >&2; }

quick=0
out=""
while (($#)); do
	case "$1" in
	--quick) quick=1 ;;
	--out)
		out="${2:?--out needs a directory}"
		shift
		;;
	--out=*) out="${1#--out=}" ;;
	*)
		log "unknown option $1 (use --quick, --out DIR)"
		exit 2
		;;
	esac
	shift
done

if ((quick)); then
	sizes=1000,10000
	repeat=1
	criterion_time=(--warm-up-time 0.5 --measurement-time 1)
	out="${out:-$PORTICO_CACHE/scale-quick}"
else
	sizes=1000,10000,100000
	repeat=3
	criterion_time=(--warm-up-time 1 --measurement-time 3)
fi
readme=()
if [[ -z "$out" ]]; then
	out="$here/results"
	readme=(--update-readme "$here/README.md")
fi
export PORTICO_SCALE_SIZES="$sizes"

if [[ -n "${PORTICO_BIN:-}" ]]; then
	bin="$PORTICO_BIN"
else
	log "building the release binary (cargo build --profile dist -p portico-controller)"
	(cd "$repo" && cargo build --profile dist -p portico-controller)
	bin="$CARGO_TARGET_DIR/dist/portico"
fi
[[ -x "$bin" ]] || {
	log "no portico binary at $bin"
	exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/portico-scale.XXXXXX")"
trap 'rm -rf "$work"' EXIT
python3 "$here/scale.py" gen --sizes "$sizes" --out "$work"
export PORTICO_SCALE_DIR="$work"

# The benches need no fat LTO to be representative, and build in a fraction of the time.
export CARGO_PROFILE_BENCH_LTO="${CARGO_PROFILE_BENCH_LTO:-false}"
export CARGO_PROFILE_BENCH_CODEGEN_UNITS="${CARGO_PROFILE_BENCH_CODEGEN_UNITS:-16}"
since="$(date +%s)"
log "criterion: route lookup"
(cd "$repo" && cargo bench -p portico-dataplane --bench lookup -- "${criterion_time[@]}")
log "criterion: compile"
(cd "$repo" && cargo bench -p portico-controller --bench compile -- "${criterion_time[@]}")

log "the binary: load time and memory per file"
python3 "$here/scale.py" run --bin "$bin" --dir "$work" --criterion "$CARGO_TARGET_DIR/criterion" \
	--since "$since" --sizes "$sizes" --repeat "$repeat" --out "$out" ${readme[@]+"${readme[@]}"}
log "wrote $out/scale.md and $out/scale.json"
