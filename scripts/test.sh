#!/usr/bin/env bash
# Runs every test Portico has, on a fresh machine or a warm one:
#   formatting and lints, unit tests, bounded fuzzing runs, integration tests (the
#   real binary, real backends, real clients), and the end-to-end suite (a real
#   kube-apiserver and etcd, and a real node: kubelet, containerd, kube-proxy, where
#   Helm installs Portico as pods; Kubernetes built from upstream source and cached),
#   and the upstream Gateway API conformance suite on that node (standard and
#   experimental channel CRDs).
# Slow things are cached outside the checkout, keyed by version, under $PORTICO_CACHE
# (default ~/.cache/portico): the control-plane binaries, the Python test environment
# and, in a fresh clone, the cargo target directory.
#
# Where cargo builds: CARGO_TARGET_DIR when set; else the checkout's own ./target when
# the README's first command (`cargo run --release ...`) has built the binary there,
# so nothing is built twice; else $PORTICO_CACHE/target, which outlives the clone
# (CI starts from a fresh clone every time). One place for the whole run: the test
# that runs the README's commands uses the same build.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if [ -x target/release/portico ]; then
    CARGO_TARGET_DIR="$PWD/target"
  else
    CARGO_TARGET_DIR="$PORTICO_CACHE/target"
  fi
fi
export CARGO_TARGET_DIR
mkdir -p "$PORTICO_CACHE"

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies (cargo builds in $CARGO_TARGET_DIR)"
scripts/test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit tests"
# The end-to-end crate needs a control plane; e2e/run.sh runs it below.
cargo test --workspace --exclude portico-e2e --locked

step "fuzzing every parser that sees outside input (bounded: FUZZ_SECONDS each)"
# A crash fails the run and leaves its input under fuzz/artifacts/.
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" scripts/fuzz.sh

step "building the release binary"
cargo build --release --locked -p portico-controller
export PORTICO_BIN="$CARGO_TARGET_DIR/release/portico"

step "integration tests"
"$PORTICO_CACHE/venv/bin/python" -m pytest -q tests/integration

step "chart and manifests"; scripts/check-chart.sh

step "alerts and dashboard (promtool check rules, promtool test rules)"; scripts/check-monitoring.sh

step "ingress-nginx's dashboards against Portico (--ingress-nginx-metrics, a real Prometheus)"
scripts/check-ingress-nginx-dashboards.sh

step "benchmark harness smoke run (bench/run.sh --quick; its numbers gate nothing)"
# Fails only when the harness breaks: a tool or peer that does not start, a peer that
# dies, answers anything but 2xx or fails TLS. Results go to the cache, not the tree.
bench/run.sh --quick

if [ -x e2e/run.sh ]; then
  step "end-to-end tests against a real kube-apiserver and node"
  e2e/run.sh
fi

if [ -x e2e/conformance.sh ]; then
  step "Gateway API conformance (upstream suite v1.6.3, profiles GATEWAY-HTTP and GATEWAY-GRPC) on the node"
  # Two runs on one cluster, each with its report in docs/conformance/: the standard
  # channel's CRDs with every claimed test, then the experimental channel's with the
  # tests of the features only its CRDs can express (EXPERIMENTAL_TESTS). The node is
  # one per machine: conformance.sh takes /tmp/portico-e2e.lock itself.
  e2e/conformance.sh
fi

step "all tests passed"
