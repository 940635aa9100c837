#!/usr/bin/env bash
# Runs ingress-nginx's own Grafana dashboards (tests/monitoring/ingress-nginx/,
# unchanged) against Portico with --ingress-nginx-metrics: a real Prometheus server,
# built from upstream source by scripts/prometheus.sh and cached, scrapes Portico
# while oha and curl send traffic through Ingresses to real backends; every panel
# query must return data, but for the panels the test lists with their reason.
# See tests/monitoring/test_ingress_nginx_dashboards.py. About a minute when warm.
#
# Settings: PORTICO_CACHE (as scripts/test.sh), PORTICO_BIN (the binary under test;
# default: the release build in CARGO_TARGET_DIR or ./target), PORTICO_PROMTOOL_VERSION.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
PORTICO_PROMETHEUS=$(scripts/prometheus.sh --which)
export PORTICO_PROMETHEUS
python="$PORTICO_CACHE/venv/bin/python"
[[ -x "$python" ]] || python=python3
exec "$python" -m pytest -q -p no:cacheprovider tests/monitoring/test_ingress_nginx_dashboards.py "$@"
