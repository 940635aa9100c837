# shellcheck shell=bash
# The rig's node: containerd, the kubelet and kube-proxy in a network namespace and
# a mount namespace of their own, kube-controller-manager and kube-scheduler beside
# the API server. Sourced by e2e/cluster after common.sh and build.sh; uses its
# DIR, spawn, stop_component and the variables of cluster.env.
#
#   root namespace                               network namespace portico-node
#   kube-apiserver 198.18.100.1:API_PORT         containerd, kubelet, kube-proxy
#   pnode0 198.18.100.1/30 <====== veth ======>  eth0 198.18.100.2/30
#   route 198.18.128.0/18 via 198.18.100.2       cni0 198.18.128.1/18 (bridge)
#   route 198.18.192.0/20 via 198.18.100.2         pods 198.18.128.2 ... (host-local)
#                                                kube-proxy: cluster IPs 198.18.192.0/20
#
# Everything the node makes is somewhere `down` removes it:
# - its processes: the pid files, and every process in the cgroup portico-e2e-node
#   (containerd, its shims and every container: the kubelet's cgroupRoot is inside);
# - mounts (overlay root filesystems, volumes, pinned pod network namespaces,
#   containerd's /run state): inside the node's own mount namespace, pinned at
#   DIR/ns/mnt, which ends when its last process does and the pin is unmounted;
# - addresses, the bridge, pod network namespaces, iptables rules (kube-proxy's):
#   inside the network namespace portico-node, deleted as a whole; the root
#   namespace gets one veth (pnode0) and two routes through it (pods, cluster IPs),
#   which go with it;
# - files: DIR. The one file outside it, /run/portico-node/owner, names the DIR of
#   the node that runs, so the next `up` can sweep a node whose run was killed.
# The machine's kernel settings are not changed: see node_mount_ns for the kubelet's
# kernel tunables; net.* settings the CNI plugins and kube-proxy write belong to
# the node's own network namespace.

NODE_NAME=portico-node
NODE_NETNS=portico-node
NODE_VETH=pnode0
NODE_HOST_ADDR=198.18.100.1
NODE_ADDR=198.18.100.2
POD_CIDR=198.18.128.0/18
POD_GATEWAY=198.18.128.1
NODE_CGROUP=portico-e2e-node
NODE_OWNER_DIR=/run/portico-node
NODE_READY_TIMEOUT="${PORTICO_NODE_TIMEOUT:-180}"
PAUSE_IMAGE=localhost/pause:dev
# Fixed paths the components write to whatever their configuration says (libcni's
# result cache; the kubelet's /var/log/containers links): in the node's mount
# namespace they are bind mounts of directories under DIR. A missing one is created
# as an empty mount point and removed again by `down` (listed in DIR/host-dirs).
NODE_HOST_DIRS=(/var/lib/cni /var/log/containers)
# The values the kubelet's kernel-tunable check expects (pkg/kubelet/cm,
# setupKernelTunables; pkg/kubelet/util/sysctl in k8s.io/component-helpers).
NODE_KERNEL_TUNABLES=(
	"vm/overcommit_memory=1"
	"vm/panic_on_oom=0"
	"kernel/panic=10"
	"kernel/panic_on_oops=1"
	"kernel/keys/root_maxkeys=1000000"
	"kernel/keys/root_maxbytes=25000000"
)

node_require() {
	[[ "$(id -u)" == 0 ]] || die "the node needs root (namespaces, cgroups, mounts); rerun as root or with sudo"
	need ip "apt-get install -y iproute2"
	need nsenter "apt-get install -y util-linux"
	need unshare "apt-get install -y util-linux"
	need containerd "apt-get install -y containerd"
	need ctr "apt-get install -y containerd"
	need runc "apt-get install -y runc"
	need iptables "apt-get install -y iptables"
	[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
		die "the CNI plugins are missing from /usr/lib/cni (apt-get install -y containernetworking-plugins)"
}

# The cgroup hierarchies: v1 ones, the hybrid v2 one (unified: runc creates the
# containers' cgroups there too), or the v2 root when it is the only one.
node_cgroup_roots() {
	local d
	for d in /sys/fs/cgroup/*; do
		[[ -f "$d/cgroup.procs" ]] && printf '%s\n' "$d"
	done
	[[ -f /sys/fs/cgroup/cgroup.procs ]] && printf '%s\n' /sys/fs/cgroup
	return 0
}

node_cgroups_create() {
	local root
	while read -r root; do
		[[ "${root##*/}" == unified ]] && continue
		mkdir -p "$root/$NODE_CGROUP/system"
		if [[ -f "$root/cpuset.cpus" ]]; then
			cat "$root/cpuset.cpus" >"$root/$NODE_CGROUP/cpuset.cpus"
			cat "$root/cpuset.mems" >"$root/$NODE_CGROUP/cpuset.mems"
			cat "$root/cpuset.cpus" >"$root/$NODE_CGROUP/system/cpuset.cpus"
			cat "$root/cpuset.mems" >"$root/$NODE_CGROUP/system/cpuset.mems"
		fi
	done < <(node_cgroup_roots)
}

# Every process in the node's cgroups (containerd, shims, containers, kubelet, kube-proxy).
node_cgroup_pids() {
	local root
	while read -r root; do
		[[ -d "$root/$NODE_CGROUP" ]] || continue
		find "$root/$NODE_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null
	done < <(node_cgroup_roots)
}

node_cgroups_remove() {
	local root i pids
	for ((i = 0; i < 100; i++)); do
		pids=$(node_cgroup_pids | sort -u)
		[[ -z "$pids" ]] && break
		# shellcheck disable=SC2086 # a list of pids
		kill -KILL $pids 2>/dev/null || true
		sleep 0.1
	done
	[[ -z "$(node_cgroup_pids)" ]] || log "processes are left in the cgroup $NODE_CGROUP: $(node_cgroup_pids | tr '\n' ' ')"
	while read -r root; do
		[[ -d "$root/$NODE_CGROUP" ]] || continue
		# Deepest first; a cgroup directory is removed with rmdir, never rm.
		find "$root/$NODE_CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null ||
			log "could not remove every cgroup under $root/$NODE_CGROUP"
	done < <(node_cgroup_roots)
}

# node_mount_ns: the node's mount namespace, pinned at DIR/ns/mnt. In it, /run is a
# fresh tmpfs (containerd's /run/containerd and the pinned pod network namespaces
# under /run/netns stay in it), and the kubelet's kernel tunables under /proc/sys
# are files holding the values the kubelet expects. The kubelet runs with
# protectKernelDefaults: it only checks them, and refuses to start if they differ,
# so it never writes the machine's kernel.panic, kernel.panic_on_oops or
# vm.overcommit_memory; should these files be missing it stops rather than change
# the machine.
node_mount_ns() {
	local ns=$DIR/ns entry path value
	mkdir -p "$ns" "$DIR/sysctl"
	# The pin must sit on a mount that does not propagate (as /run/netns does).
	mount --bind "$ns" "$ns"
	mount --make-private "$ns"
	touch "$ns/mnt"
	unshare --mount="$ns/mnt" --propagation private true ||
		die "could not create the node's mount namespace (unshare --mount=$ns/mnt)"
	local script='set -e; mount -t tmpfs -o mode=0755 portico-node-run /run; mkdir -p /run/netns /run/containerd /run/lock'
	local d
	for d in "${NODE_HOST_DIRS[@]}"; do
		if [[ ! -e "$d" ]]; then
			mkdir -p "$d"
			printf '%s\n' "$d" >>"$DIR/host-dirs"
		fi
		mkdir -p "$DIR/host${d//\//-}"
		script+="; mount --bind $DIR/host${d//\//-} $d"
	done
	for entry in "${NODE_KERNEL_TUNABLES[@]}"; do
		path=${entry%%=*} value=${entry#*=}
		printf '%s\n' "$value" >"$DIR/sysctl/${path//\//.}"
		script+="; mount --bind -o ro $DIR/sysctl/${path//\//.} /proc/sys/$path"
	done
	nsenter --mount="$ns/mnt" -- sh -c "$script" ||
		die "could not set up the node's mount namespace"
}

# node_enter ARGS...: run ARGS in the node's cgroup, network and mount namespaces.
node_enter_cmd() {
	printf '%s\0' bash -c '
		dir=$1 cgroup=$2 netns=$3
		shift 3
		# Image layers and volumes must be readable by the containers'"'"' users
		# (e2e/cluster runs with umask 077 for its keys).
		umask 022
		for root in /sys/fs/cgroup/*; do
			[[ -f "$root/$cgroup/system/cgroup.procs" ]] && echo $$ >"$root/$cgroup/system/cgroup.procs"
		done
		exec nsenter --net="/run/netns/$netns" --mount="$dir/ns/mnt" -- "$@"
	' node-enter "$DIR" "$NODE_CGROUP" "$NODE_NETNS"
}

# node_spawn NAME BINARY ARGS...: spawn (as e2e/cluster does) inside the node.
node_spawn() {
	local name=$1 bin=$2 pid enter
	shift 2
	mapfile -d '' -t enter < <(node_enter_cmd)
	printf '\n==== %s starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" >>"$DIR/$name.log"
	setsid "${enter[@]}" "$bin" "$@" </dev/null >>"$DIR/$name.log" 2>&1 &
	pid=$!
	printf '%s\n' "$pid" >"$DIR/$name.pid"
	sleep 0.3
	pid_alive "$pid" "$bin" || {
		show_log "$name"
		die "$name exited right after starting"
	}
}

# node_exec ARGS...: run a command inside the node and wait for it.
node_exec() {
	local enter
	mapfile -d '' -t enter < <(node_enter_cmd)
	"${enter[@]}" "$@"
}

node_network_up() {
	if ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$NODE_NETNS"; then
		die "network namespace $NODE_NETNS exists and no node owns it; remove it with: ip netns del $NODE_NETNS"
	fi
	local conflict
	conflict=$(ip -4 route show "$POD_CIDR"; ip -4 route show "$SERVICE_CIDR"; ip -4 route show 198.18.100.0/30)
	[[ -z "$conflict" ]] || die "the root namespace already routes the node's ranges: $conflict"
	ip netns add "$NODE_NETNS"
	ip link add name "$NODE_VETH" type veth peer name eth0 netns "$NODE_NETNS" ||
		die "could not create the veth pair $NODE_VETH <-> $NODE_NETNS/eth0"
	ip addr add "$NODE_HOST_ADDR/30" dev "$NODE_VETH"
	ip link set dev "$NODE_VETH" up
	ip -n "$NODE_NETNS" link set dev lo up
	ip -n "$NODE_NETNS" addr add "$NODE_ADDR/30" dev eth0
	ip -n "$NODE_NETNS" link set dev eth0 up
	ip -n "$NODE_NETNS" route add default via "$NODE_HOST_ADDR"
	ip route add "$POD_CIDR" via "$NODE_ADDR" dev "$NODE_VETH"
	# Cluster IPs from the root namespace: kube-proxy's rules in the node's namespace
	# DNAT them, as on a node, so a test (the Gateway API conformance suite dials a
	# Gateway's ClusterIP address) reaches Services the way a pod would.
	ip route add "$SERVICE_CIDR" via "$NODE_ADDR" dev "$NODE_VETH"
}

# node_sweep DIR: remove whatever a node started from DIR left, running or not.
# Idempotent; used by `down` and by `up` when the last run was killed.
node_sweep() {
	local dir=$1 name
	for name in kube-proxy kubelet containerd; do
		[[ -f "$dir/$name.pid" ]] && kill -TERM "$(cat "$dir/$name.pid")" 2>/dev/null || true
	done
	node_cgroups_remove
	if [[ -e "$dir/ns/mnt" ]]; then
		umount "$dir/ns/mnt" 2>/dev/null || true
		umount "$dir/ns" 2>/dev/null || true
	fi
	if [[ -f "$dir/host-dirs" ]]; then
		local d
		while read -r d; do
			[[ -n "$d" ]] && rmdir "$d" 2>/dev/null || true
		done <"$dir/host-dirs"
		rm -f "$dir/host-dirs"
	fi
	if ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$NODE_NETNS"; then
		ip netns del "$NODE_NETNS" || log "could not delete network namespace $NODE_NETNS"
	fi
	ip link del dev "$NODE_VETH" 2>/dev/null || true
	rm -f "$NODE_OWNER_DIR/owner"
	rmdir "$NODE_OWNER_DIR" 2>/dev/null || true
	return 0
}

# A node of an earlier run that was killed before its `down`.
node_sweep_stale() {
	local owner
	owner=$(cat "$NODE_OWNER_DIR/owner" 2>/dev/null || true)
	[[ -n "$owner" ]] || return 0
	if [[ -f "$owner/cluster.env" ]] && (
		DIR=$owner
		load_state
		apiserver_running
	); then
		die "a node is already running (cluster $owner); run '$PROG down --dir $owner' first"
	fi
	log "removing what the node of a killed run left (cluster $owner)"
	node_sweep "$owner"
	if [[ -f "$owner/$MARKER" && -f "$owner/cluster.env" ]]; then
		(
			DIR=$owner
			load_state
			for c in kube-scheduler kube-controller-manager; do
				stop_component "$c" "$(node_component_bin "$c")"
			done
			stop_component kube-apiserver "$APISERVER_BIN"
			stop_component etcd "$ETCD_BIN"
		) || true
		rm -rf "$owner"
	fi
}

node_write_configs() {
	local pki=$DIR/pki
	mkdir -p "$DIR/containerd" "$DIR/cni/net.d" "$DIR/cni/ipam" "$DIR/kubelet" "$DIR/pod-logs"
	cat >"$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$DIR/containerd/containerd.sock"

[ttrpc]
  address = "$DIR/containerd/containerd-ttrpc.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Negative oom_score_adj values need CAP_SYS_RESOURCE, which this kind of machine
  # does not grant: without this every sandbox fails in runc's nsexec.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
EOF
	cat >"$DIR/cni/net.d/10-portico-e2e.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "portico-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/ipam"
      }
    }
  ]
}
EOF
	printf '# the e2e node has no DNS\noptions ndots:1\n' >"$DIR/kubelet/resolv.conf"
	node_kubeconfig kubelet
	node_kubeconfig kube-proxy
	cat >"$DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 on this kind of machine; the kubelet refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$DIR/containerd/containerd.sock
address: $NODE_ADDR
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
# Check the kernel tunables, never write them (see node_mount_ns).
protectKernelDefaults: true
# No iptables chains of the kubelet's own.
makeIPTablesUtilChains: false
# The open-file hard limit here is 20000; the kubelet only raises its own.
maxOpenFiles: 20000
failSwapOn: false
podLogsDir: $DIR/pod-logs
# Images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
evictionPressureTransitionPeriod: 10s
# No DNS in the rig: pods get no name server (never the machine's).
resolvConf: $DIR/kubelet/resolv.conf
serializeImagePulls: false
staticPodPath: ""
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusReportFrequency: 10s
shutdownGracePeriod: 0s
EOF
	cat >"$DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_ADDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
iptables:
  # route_localnet stays as it is.
  localhostNodePorts: false
# Leave every conntrack setting as it is: nf_conntrack_max is machine-wide.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
EOF
}

# node_kubeconfig NAME: DIR/NAME.kubeconfig with the client certificate pki/NAME.*.
node_kubeconfig() {
	local pki=$DIR/pki
	cat >"$DIR/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: portico-e2e
  cluster:
    server: https://$NODE_HOST_ADDR:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $pki/$1.crt
    client-key: $pki/$1.key
contexts:
- name: portico-e2e
  context: {cluster: portico-e2e, user: $1}
current-context: portico-e2e
EOF
}

node_start_containerd() {
	node_spawn containerd "$(command -v containerd)" --config "$DIR/containerd/config.toml"
	local deadline=$(($(now) + 30))
	until ctr --address "$DIR/containerd/containerd.sock" version >/dev/null 2>&1; do
		pid_alive "$(read_pid containerd)" "$(command -v containerd)" || {
			show_log containerd
			die "containerd exited while starting"
		}
		(($(now) < deadline)) || {
			show_log containerd
			die "containerd did not answer within 30s"
		}
		sleep 0.2
	done
}

node_start_control() {
	local pki=$DIR/pki
	spawn kube-controller-manager "$KCM_BIN" \
		--kubeconfig="$DIR/kubeconfig" \
		--authentication-kubeconfig="$DIR/kubeconfig" \
		--authorization-kubeconfig="$DIR/kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port="$KCM_PORT" \
		--leader-elect=false \
		--root-ca-file="$pki/ca.crt" \
		--service-account-private-key-file="$pki/sa.key" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--cluster-name=portico-e2e \
		--controllers='*'
	spawn kube-scheduler "$SCHEDULER_BIN" \
		--kubeconfig="$DIR/kubeconfig" \
		--authentication-kubeconfig="$DIR/kubeconfig" \
		--authorization-kubeconfig="$DIR/kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port="$SCHEDULER_PORT" \
		--leader-elect=false
}

node_start_kubelet() {
	node_spawn kubelet "$KUBELET_BIN" \
		--config="$DIR/kubelet/config.yaml" \
		--kubeconfig="$DIR/kubelet.kubeconfig" \
		--root-dir="$DIR/kubelet" \
		--cert-dir="$DIR/kubelet/pki" \
		--hostname-override="$NODE_NAME" \
		--node-ip="$NODE_ADDR" \
		--v=1
	node_spawn kube-proxy "$KUBE_PROXY_BIN" --config="$DIR/kube-proxy.yaml" --v=1
}

node_wait_ready() {
	local deadline out kubectl
	kubectl=$(kubectl_bin)
	deadline=$(($(now) + NODE_READY_TIMEOUT))
	until out=$("$kubectl" --kubeconfig "$DIR/kubeconfig" get node "$NODE_NAME" \
		-o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>&1) && [[ "$out" == True ]]; do
		for c in containerd kubelet kube-proxy; do
			pid_alive "$(read_pid $c)" "$(node_component_bin $c)" || {
				show_log "$c"
				die "$c exited while the node was starting"
			}
		done
		(($(now) < deadline)) || {
			show_log kubelet
			die "node $NODE_NAME was not Ready after ${NODE_READY_TIMEOUT}s (last answer: $out)"
		}
		sleep 0.5
	done
}

node_component_bin() {
	case "$1" in
	containerd) command -v containerd ;;
	kubelet) printf '%s\n' "${KUBELET_BIN:-}" ;;
	kube-proxy) printf '%s\n' "${KUBE_PROXY_BIN:-}" ;;
	kube-controller-manager) printf '%s\n' "${KCM_BIN:-}" ;;
	kube-scheduler) printf '%s\n' "${SCHEDULER_BIN:-}" ;;
	esac
}

# node_up: after the network (node_prepare) and the API server are up.
node_up() {
	node_write_configs
	node_cgroups_create
	node_mount_ns
	node_start_containerd
	"$HERE/images/build.sh" --pause-only --load "$DIR" >/dev/null
	node_start_control
	node_start_kubelet
	node_wait_ready
}

# node_prepare: before the API server starts (it listens on the node link).
node_prepare() {
	node_require
	node_sweep_stale
	mkdir -p "$NODE_OWNER_DIR"
	printf '%s\n' "$DIR" >"$NODE_OWNER_DIR/owner"
	node_network_up
}

node_down() {
	local c
	for c in kube-proxy kubelet; do
		stop_component "$c" "$(node_component_bin "$c")"
	done
	for c in kube-scheduler kube-controller-manager; do
		stop_component "$c" "$(node_component_bin "$c")"
	done
	stop_component containerd "$(command -v containerd)"
	[[ "$(cat "$NODE_OWNER_DIR/owner" 2>/dev/null)" == "$DIR" ]] && node_sweep "$DIR"
	return 0
}
