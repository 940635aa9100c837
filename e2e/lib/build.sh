# shellcheck shell=bash
# Building and caching etcd, kube-apiserver and kubectl from upstream source.
# Requires common.sh to be sourced first.
#
# Layout under $PORTICO_CACHE:
#   bin/<name>-<version>/<name>   the cached binary (plus build-info.txt)
#   src/<module>-<version>/       scratch Go module used to build it
#   build.lock                    flock(1) lock held while building

# bin_path NAME VERSION: where the cached binary lives.
bin_path() {
	printf '%s/bin/%s-%s/%s\n' "$PORTICO_CACHE" "$1" "$2" "$1"
}

etcd_bin() { bin_path etcd "$PORTICO_ETCD_VERSION"; }
apiserver_bin() { bin_path kube-apiserver "$PORTICO_KUBE_VERSION"; }
kubectl_bin() { bin_path kubectl "$PORTICO_KUBE_VERSION"; }
# The node's components (e2e/cluster up --node), from the same k8s.io/kubernetes.
NODE_COMPONENTS=(kube-controller-manager kube-scheduler kubelet kube-proxy)
node_bin() { bin_path "$1" "$PORTICO_KUBE_VERSION"; }

# The published staging version for a Kubernetes release: v1.35.4 -> v0.35.4.
kube_staging_version() {
	printf 'v0.%s\n' "${PORTICO_KUBE_VERSION#v1.}"
}

build_jobs() {
	local jobs=${PORTICO_BUILD_JOBS:-2} cpus
	cpus=$(nproc 2>/dev/null || echo 2)
	((jobs > cpus)) && jobs=$cpus
	((jobs < 1)) && jobs=1
	printf '%s\n' "$jobs"
}

# go_env: run a go command with a clean, reproducible build environment.
go_env() {
	local jobs
	jobs=$(build_jobs)
	env CGO_ENABLED=0 GOWORK=off GOFLAGS=-buildvcs=false GOMAXPROCS="$jobs" "$@"
}

# go_build_flags: the go build flags shared by all builds, one per line.
go_build_flags() {
	local flags=(-trimpath -p "$(build_jobs)")
	[[ "${PORTICO_BUILD_VERBOSE:-}" == 1 ]] && flags+=(-v)
	printf '%s\n' "${flags[@]}"
}

# module_gomod MODULE@VERSION: download the module and print the path of its go.mod.
module_gomod() {
	local json gomod
	json=$(go_env go mod download -json "$1") ||
		die "go mod download $1 failed: $(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",*$/\1/p')"
	gomod=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	[[ -n "$gomod" && -f "$gomod" ]] || die "could not find the go.mod of $1 in: $json"
	printf '%s\n' "$gomod"
}

# upstream_directives GOMOD: print the go line and godebug lines (single-line or
# block form) of an upstream go.mod, so the scratch module behaves the same.
upstream_directives() {
	awk '
		/^go [0-9]/ { print; next }
		/^godebug[ \t]*\(/ { inblock = 1; print; next }
		inblock { print; if ($0 ~ /^\)/) inblock = 0; next }
		/^godebug / { print }
	' "$1"
}

# install_dir TMPDIR NAME VERSION: move a finished build into place atomically.
install_dir() {
	local tmp=$1 name=$2 version=$3 final
	final="$PORTICO_CACHE/bin/$name-$version"
	if [[ -e "$final" ]]; then
		rm -rf "$tmp"
		return 0
	fi
	mv "$tmp" "$final"
}

write_build_info() {
	local file=$1 module=$2 started=$3
	{
		printf 'module: %s\n' "$module"
		printf 'go: %s\n' "$(go env GOVERSION)"
		printf 'built: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		printf 'build-seconds: %s\n' "$(($(now) - started))"
	} >"$file"
}

build_etcd() {
	local version=$PORTICO_ETCD_VERSION src gomod tmp started flags
	started=$(now)
	log "building etcd $version from go.etcd.io/etcd/server/v3 (1-2 minutes when cold)"
	src="$PORTICO_CACHE/src/etcd-$version"
	rm -rf "$src"
	mkdir -p "$src"
	gomod=$(module_gomod "go.etcd.io/etcd/server/v3@$version") || exit 1
	{
		printf 'module portico.invalid/e2e/build/etcd\n\n'
		upstream_directives "$gomod"
		printf '\nrequire go.etcd.io/etcd/server/v3 %s\n' "$version"
	} >"$src/go.mod"
	(cd "$src" && go_env go get "go.etcd.io/etcd/server/v3@$version") ||
		die "resolving etcd $version failed (see above)"
	tmp=$(mktemp -d "$PORTICO_CACHE/bin/.etcd-$version.XXXXXX")
	mapfile -t flags < <(go_build_flags)
	(cd "$src" && go_env go build "${flags[@]}" -ldflags "-s -w" \
		-o "$tmp/etcd" go.etcd.io/etcd/server/v3) || {
		rm -rf "$tmp"
		die "building etcd $version failed (see above)"
	}
	[[ "$("$tmp/etcd" --version)" == *"etcd Version: ${version#v}"* ]] || {
		rm -rf "$tmp"
		die "the built etcd does not report version $version"
	}
	write_build_info "$tmp/build-info.txt" "go.etcd.io/etcd/server/v3@$version" "$started"
	install_dir "$tmp" etcd "$version"
	log "built etcd $version in $(($(now) - started))s: $(etcd_bin)"
}

# kube_src: prepare the scratch module for k8s.io/kubernetes and print its path.
kube_src() {
	local version=$PORTICO_KUBE_VERSION staging src gomod mods mod
	staging=$(kube_staging_version)
	src="$PORTICO_CACHE/src/kubernetes-$version"
	if [[ -f "$src/.ready" ]]; then
		printf '%s\n' "$src"
		return 0
	fi
	rm -rf "$src"
	mkdir -p "$src"
	gomod=$(module_gomod "k8s.io/kubernetes@$version") || exit 1
	# Staging modules: required at v0.0.0 and replaced by ./staging/src/k8s.io/<name>,
	# which the module download does not contain. Use their published releases.
	mapfile -t mods < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$gomod" | sort -u)
	((${#mods[@]} > 10)) || die "found only ${#mods[@]} staging modules in $gomod; its format changed?"
	{
		printf 'module portico.invalid/e2e/build/kubernetes\n\n'
		upstream_directives "$gomod"
		printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$version"
		for mod in "${mods[@]}"; do
			printf '\t%s => %s %s\n' "$mod" "$mod" "$staging"
		done
		printf ')\n'
	} >"$src/go.mod"
	log "k8s.io/kubernetes $version: replacing ${#mods[@]} staging modules with $staging"
	(cd "$src" && go_env go get \
		"k8s.io/kubernetes/cmd/kube-apiserver@$version" \
		"k8s.io/kubernetes/cmd/kubectl@$version") >&2 ||
		die "resolving k8s.io/kubernetes $version failed (see above)"
	touch "$src/.ready"
	printf '%s\n' "$src"
}

# kube_src_node: the same scratch module, with the node's commands resolved too.
kube_src_node() {
	local version=$PORTICO_KUBE_VERSION src name pkgs=()
	src=$(kube_src) || exit 1
	if [[ ! -f "$src/.ready-node" ]]; then
		for name in "${NODE_COMPONENTS[@]}"; do
			pkgs+=("k8s.io/kubernetes/cmd/$name@$version")
		done
		(cd "$src" && go_env go get "${pkgs[@]}") >&2 ||
			die "resolving the node's commands of k8s.io/kubernetes $version failed (see above)"
		touch "$src/.ready-node"
	fi
	printf '%s\n' "$src"
}

kube_ldflags() {
	local version=$PORTICO_KUBE_VERSION minor pkg out="-s -w"
	minor=${version#v1.}
	minor=${minor%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		out+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		out+=" -X $pkg.gitTreeState=clean"
	done
	printf '%s\n' "$out"
}

# build_kube NAME: build cmd/NAME from k8s.io/kubernetes.
build_kube() {
	local name=$1 version=$PORTICO_KUBE_VERSION src tmp started flags
	started=$(now)
	log "building $name $version from k8s.io/kubernetes (about 5 minutes on 2 cores when cold)"
	if [[ "$name" == kube-apiserver || "$name" == kubectl ]]; then
		src=$(kube_src) || exit 1
	else
		src=$(kube_src_node) || exit 1
	fi
	tmp=$(mktemp -d "$PORTICO_CACHE/bin/.$name-$version.XXXXXX")
	mapfile -t flags < <(go_build_flags)
	(cd "$src" && go_env go build "${flags[@]}" -ldflags "$(kube_ldflags)" \
		-o "$tmp/$name" "k8s.io/kubernetes/cmd/$name") || {
		rm -rf "$tmp"
		die "building $name $version failed (see above)"
	}
	if [[ "$name" != kubectl && "$("$tmp/$name" --version)" != "Kubernetes $version" ]]; then
		rm -rf "$tmp"
		die "the built $name does not report version $version"
	fi
	write_build_info "$tmp/build-info.txt" "k8s.io/kubernetes/cmd/$name@$version" "$started"
	install_dir "$tmp" "$name" "$version"
	log "built $name $version in $(($(now) - started))s: $(bin_path "$name" "$version")"
}

binaries_present() {
	[[ -x "$(etcd_bin)" && -x "$(apiserver_bin)" ]] || return 1
	[[ "${PORTICO_SKIP_KUBECTL:-}" == 1 || -x "$(kubectl_bin)" ]]
}

# ensure_binaries: build whatever is missing, once, under a lock.
ensure_binaries() {
	binaries_present && return 0
	need go "install Go 1.26 or newer"
	need flock "apt-get install -y util-linux"
	mkdir -p "$PORTICO_CACHE/bin" "$PORTICO_CACHE/src"
	local lockfd
	exec {lockfd}>"$PORTICO_CACHE/build.lock"
	if ! flock -n "$lockfd"; then
		log "another build holds $PORTICO_CACHE/build.lock; waiting for it"
		flock "$lockfd"
	fi
	if ! binaries_present; then
		local started
		started=$(now)
		[[ -x "$(etcd_bin)" ]] || build_etcd
		[[ -x "$(apiserver_bin)" ]] || build_kube kube-apiserver
		if [[ "${PORTICO_SKIP_KUBECTL:-}" != 1 && ! -x "$(kubectl_bin)" ]]; then
			build_kube kubectl
		fi
		log "build finished in $(($(now) - started))s"
	fi
	flock -u "$lockfd"
	exec {lockfd}>&-
}

node_binaries_present() {
	local name
	for name in "${NODE_COMPONENTS[@]}"; do
		[[ -x "$(node_bin "$name")" ]] || return 1
	done
}

# ensure_node_binaries: the control plane's binaries, then the node's, under the lock.
ensure_node_binaries() {
	ensure_binaries
	node_binaries_present && return 0
	local lockfd started name
	exec {lockfd}>"$PORTICO_CACHE/build.lock"
	if ! flock -n "$lockfd"; then
		log "another build holds $PORTICO_CACHE/build.lock; waiting for it"
		flock "$lockfd"
	fi
	started=$(now)
	for name in "${NODE_COMPONENTS[@]}"; do
		[[ -x "$(node_bin "$name")" ]] || build_kube "$name"
	done
	log "node build finished in $(($(now) - started))s"
	flock -u "$lockfd"
	exec {lockfd}>&-
}
