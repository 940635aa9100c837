#!/usr/bin/env bash
# Builds the end-to-end rig's container images without a container engine or a
# registry, as OCI image-layout tars (e2e/images/oci.py), and optionally loads them
# into a running node's containerd:
#
#   localhost/portico:dev        the release portico binary, the shared libraries it
#                                links, CA certificates, user 65532: the contents of
#                                the Dockerfile's runtime stage, no base image; also
#                                named as the chart's default image (values.yaml
#                                image.repository, tag = Chart.yaml appVersion), which
#                                is not published anywhere, so manifests/portico.yaml
#                                runs it as it is
#   localhost/portico-echo:dev   e2e/images/echo (static Go), the backend of the tests
#   localhost/pause:dev          e2e/images/pause (static Go), the pod sandbox
#
#   e2e/images/build.sh                       build all three into $PORTICO_CACHE/images
#   e2e/images/build.sh --load CLUSTER_DIR    ... and import them into that node
#   e2e/images/build.sh --pause-only [--load CLUSTER_DIR]
#
# Settings: PORTICO_BIN (default $CARGO_TARGET_DIR/release/portico; it must exist:
# cargo build --release -p portico-controller), PORTICO_CACHE.
# Prints the tar paths on stdout, one a line.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

PORTICO_CACHE="${PORTICO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico}"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PORTICO_CACHE/target}"
PORTICO_BIN="${PORTICO_BIN:-$CARGO_TARGET_DIR/release/portico}"
OUT="$PORTICO_CACHE/images"

PORTICO_IMAGE=localhost/portico:dev
ECHO_IMAGE=localhost/portico-echo:dev
PAUSE_IMAGE=localhost/pause:dev

log() { printf 'images: %s\n' "$*" >&2; }
die() {
	printf 'images: error: %s\n' "$*" >&2
	exit 1
}

load=
pause_only=0
while (($#)); do
	case "$1" in
	--load)
		(($# >= 2)) || die "--load needs the cluster directory"
		load=$2
		shift 2
		;;
	--pause-only)
		pause_only=1
		shift
		;;
	*) die "usage: e2e/images/build.sh [--pause-only] [--load CLUSTER_DIR]" ;;
	esac
done

command -v go >/dev/null || die "Go is required (the pause and echo programs)"
command -v python3 >/dev/null || die "python3 is required (e2e/images/oci.py)"
mkdir -p "$OUT"

# go_image NAME REF: a static Go program as the image's only file, cached by the hash
# of its source and the Go version.
go_image() {
	local name=$1 ref=$2 key tar tmp
	key=$( (
		cat "$here/go.mod" "$here/$name"/*.go "$here/oci.py"
		go env GOVERSION
		printf '%s\n' "$ref"
	) | sha256sum | cut -c1-16)
	tar="$OUT/$name-$key.tar"
	if [[ ! -f "$tar" ]]; then
		tmp=$(mktemp -d)
		(cd "$here" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false \
			go build -trimpath -ldflags "-s -w" -o "$tmp/$name" "./$name") ||
			die "building e2e/images/$name failed"
		python3 "$here/oci.py" --name "$ref" --out "$tar" \
			--file "$tmp/$name:/$name:0755" --entrypoint "/$name" \
			--dir /tmp:1777 --user 65532:65532
		rm -rf "$tmp"
	fi
	printf '%s\n' "$tar"
}

# portico_image: the release binary with what it links, as the Dockerfile's runtime
# stage (distroless cc: glibc, libgcc, CA certificates, user nonroot 65532).
portico_image() {
	[[ -x "$PORTICO_BIN" ]] ||
		die "no portico binary at $PORTICO_BIN (cargo build --release -p portico-controller, or set PORTICO_BIN)"
	local tar="$OUT/portico.tar" args=() lib version
	args+=(--file "$PORTICO_BIN:/usr/local/bin/portico:0755")
	# Every library the dynamic loader resolves, at the path it resolves it to.
	while read -r lib; do
		[[ -n "$lib" ]] && args+=(--file "$lib:$lib:0755")
	done < <(ldd "$PORTICO_BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
	((${#args[@]} > 2)) || die "ldd found no libraries for $PORTICO_BIN; is it a dynamic ELF binary?"
	[[ -f /etc/ssl/certs/ca-certificates.crt ]] ||
		die "no /etc/ssl/certs/ca-certificates.crt (apt-get install -y ca-certificates)"
	args+=(--file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644)
	args+=(--text "/etc/passwd:root:x:0:0:root:/root:/sbin/nologin\\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\\n")
	args+=(--text "/etc/group:root:x:0:\\nnonroot:x:65532:\\n")
	args+=(--dir /home/nonroot:0700:65532:65532 --dir /tmp:1777)
	version=$("$PORTICO_BIN" --version | awk '{print $NF}')
	local repository app_version
	repository=$(awk '/^image:/ {i = 1; next} i && /^[^ #]/ {i = 0} i && $1 == "repository:" {print $2; exit}' "$repo/charts/portico/values.yaml")
	app_version=$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' "$repo/charts/portico/Chart.yaml")
	[[ -n "$repository" && -n "$app_version" ]] || die "could not read the chart's default image"
	python3 "$here/oci.py" --name "$PORTICO_IMAGE" --also-name "$repository:$app_version" --out "$tar" "${args[@]}" \
		--user 65532:65532 --entrypoint /usr/local/bin/portico \
		--expose 8080/tcp --expose 8443/tcp --expose 10254/tcp \
		--label org.opencontainers.image.title=portico \
		--label "org.opencontainers.image.version=$version" \
		--label org.opencontainers.image.licenses=Apache-2.0 \
		--label "org.opencontainers.image.revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
	printf '%s\n' "$tar"
}

tars=("$(go_image pause "$PAUSE_IMAGE")")
if ((!pause_only)); then
	tars+=("$(go_image echo "$ECHO_IMAGE")" "$(portico_image)")
fi
if [[ -n "$load" ]]; then
	"$repo/e2e/cluster" load-image --dir "$load" "${tars[@]}"
fi
printf '%s\n' "${tars[@]}"
