#!/usr/bin/env bash
# Audits Portico's HTTPS listener with testssl.sh (Debian's `testssl`): protocols,
# ciphers, forward secrecy, server defaults, HSTS and the known vulnerabilities.
# It makes a throwaway CA and certificate, serves them from a --from-file Secret, and
# prints testssl's report. Not part of the test command (it takes about a minute).
#
#   scripts/testssl.sh [PORTICO_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."

export PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PORTICO_CACHE/target}"
bin="${1:-$CARGO_TARGET_DIR/release/portico}"
if [ ! -x "$bin" ]; then
  cargo build --release --locked -p portico-controller
fi
if ! command -v testssl >/dev/null; then
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ] || apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y testssl.sh
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

host=secure.portico.test
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$work/ca.key" -out "$work/ca.crt" -subj "/CN=Portico testssl CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/tls.key" \
  -out "$work/tls.csr" -subj "/CN=$host" 2>/dev/null
printf 'subjectAltName=DNS:%s\n' "$host" >"$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 1 -extfile "$work/ext" -out "$work/tls.crt" 2>/dev/null

python3 -m http.server 19801 --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
pids+=($!)
cat >"$work/portico.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: site-tls, namespace: default}
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$work/tls.crt")
  tls.key: $(base64 -w0 "$work/tls.key")
---
apiVersion: v1
kind: Service
metadata: {name: site, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: 19801}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: site-1, namespace: default, labels: {kubernetes.io/service-name: site}}
addressType: IPv4
ports: [{name: http, port: 19801}]
endpoints: [{addresses: [127.0.0.1]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site, namespace: default}
spec:
  ingressClassName: portico
  tls: [{hosts: [$host], secretName: site-tls}]
  rules:
  - host: $host
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: site, port: {name: http}}}}]}
YAML
"$bin" --from-file "$work/portico.yaml" --bind-address 127.0.0.1 --http-port 19880 --https-port 19843 \
  --admin-port 19854 --access-log false >"$work/portico.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:19854/readyz >/dev/null && break
  sleep 0.1
done
testssl --quiet --color 0 --ip 127.0.0.1 --add-ca "$work/ca.crt" "https://$host:19843/"
