#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo fuzz, libFuzzer) for a bounded time each,
# starting from the seeds in fuzz/seeds/<target> (byte literals of the tests) and the
# corpus earlier runs grew under $PORTICO_CACHE/fuzz-corpus/<target>.
#
#   scripts/fuzz.sh              every target, FUZZ_SECONDS (default 30) each
#   scripts/fuzz.sh chunked 600  one target, ten minutes
#
# cargo-fuzz is installed once under $PORTICO_CACHE, keyed by its version. libFuzzer
# builds need unstable compiler flags (`-Zsanitizer`, `-Cpasses=sancov-module`): on a
# stable toolchain RUSTC_BOOTSTRAP=1 allows them, for this build only. A crash leaves
# its input in fuzz/artifacts/<target>/ and fails the run: make it a test, then fix it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.1
export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
tools="$PORTICO_CACHE/cargo-fuzz-$CARGO_FUZZ_VERSION"
if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
	echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools" >&2
	cargo install --locked --quiet --root "$tools" --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi
export PATH="$tools/bin:$PATH"
# Its own target directory: instrumented builds share nothing with the others.
export CARGO_TARGET_DIR="$PORTICO_CACHE/target-fuzz"
export RUSTC_BOOTSTRAP=1

seconds="${2:-${FUZZ_SECONDS:-30}}"
if [[ $# -ge 1 ]]; then
	targets=("$1")
else
	mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
for target in "${targets[@]}"; do
	corpus="$PORTICO_CACHE/fuzz-corpus/$target"
	mkdir -p "$corpus"
	echo "fuzz: $target for ${seconds}s" >&2
	# No sanitizer: the code has no `unsafe`, and ASan would double the build. Debug
	# assertions stay on, so overflow and slicing bugs panic.
	cargo fuzz run --fuzz-dir fuzz --sanitizer none --debug-assertions "$target" "$corpus" "fuzz/seeds/$target" -- \
		-max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
