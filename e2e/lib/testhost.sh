# shellcheck shell=bash
# Network-namespace test hosts: processes that answer on non-loopback addresses
# (EndpointSlice validation rejects 127.0.0.0/8), reachable from the root namespace.
# Requires common.sh to be sourced first.
#
#   root namespace                         network namespace NAME
#   portico-br0 198.18.0.1/15 --- pth-NAME <==veth==> eth0 ADDR/15 (+ extra /32s)
#
# All test hosts hang off one bridge, so they reach the root namespace and each
# other. The bridge is created with the first test host and removed with the last.

TESTHOST_BRIDGE=portico-br0
TESTHOST_GATEWAY=198.18.0.1
TESTHOST_PREFIXLEN=15
TESTHOST_STATE="${PORTICO_TESTHOST_STATE:-/run/portico-testhost}"

testhost_usage() {
	cat <<EOF
usage: $PROG testhost up NAME ADDR      create test host NAME answering on ADDR
       $PROG testhost addr NAME ADDR    give test host NAME one more address
       $PROG testhost down NAME         stop its processes and remove it
       $PROG testhost exec NAME CMD...  run CMD inside it (ip netns exec NAME CMD...)
       $PROG testhost list              list test hosts

NAME: 1-11 characters [a-z0-9-]. ADDR: an IPv4 address in 198.18.0.0/15 other
than $TESTHOST_GATEWAY (the root namespace's side of the bridge).
EOF
}

testhost_require() {
	need ip "apt-get install -y iproute2"
	[[ "$(id -u)" == 0 ]] || die "test hosts need root (network namespaces, veth pairs); rerun as root or with sudo"
}

testhost_check_name() {
	[[ "$1" =~ ^[a-z0-9][a-z0-9-]{0,10}$ ]] ||
		die "invalid test host name '$1': use 1-11 characters from [a-z0-9-], starting with a letter or digit"
}

testhost_check_addr() {
	local addr=$1 a b c d
	[[ "$addr" =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
		die "invalid address '$addr': expected an IPv4 address such as 198.18.0.2"
	a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]} d=${BASH_REMATCH[4]}
	((10#$c <= 255 && 10#$d <= 255)) || die "invalid address '$addr'"
	[[ "$a" == 198 && ("$b" == 18 || "$b" == 19) ]] ||
		die "address '$addr' is not in 198.18.0.0/15 (the range reserved for test hosts)"
	[[ "$addr" != "$TESTHOST_GATEWAY" && "$addr" != 198.18.0.0 && "$addr" != 198.19.255.255 ]] ||
		die "address '$addr' is reserved (network, broadcast or the bridge's own address)"
}

testhost_veth() {
	printf 'pth-%s\n' "$1"
}

testhost_exists() {
	[[ -e "/run/netns/$1" ]] || ip netns list 2>/dev/null | awk '{print $1}' | grep -xF "$1" >/dev/null
}

testhost_owned() {
	[[ -e "$TESTHOST_STATE/$1" ]]
}

# The lock serialises test host changes (the shared bridge is created and removed here).
testhost_lock() {
	local lockdir=/run/lock
	[[ -d "$lockdir" ]] || lockdir=${TMPDIR:-/tmp}
	need flock "apt-get install -y util-linux"
	exec {TESTHOST_LOCKFD}>"$lockdir/portico-testhost.lock"
	flock "$TESTHOST_LOCKFD"
}

testhost_ensure_bridge() {
	if ! ip link show dev "$TESTHOST_BRIDGE" >/dev/null 2>&1; then
		local conflict
		conflict=$(ip -4 route show 198.18.0.0/15 2>/dev/null || true)
		[[ -z "$conflict" ]] ||
			die "the root namespace already routes 198.18.0.0/15 ($conflict); test hosts need that range"
		ip link add name "$TESTHOST_BRIDGE" type bridge ||
			die "could not create bridge $TESTHOST_BRIDGE (is the bridge kernel module available?)"
	fi
	ip addr replace "$TESTHOST_GATEWAY/$TESTHOST_PREFIXLEN" dev "$TESTHOST_BRIDGE"
	ip link set dev "$TESTHOST_BRIDGE" up
}

testhost_maybe_remove_bridge() {
	ip link show dev "$TESTHOST_BRIDGE" >/dev/null 2>&1 || return 0
	if [[ -z "$(ip -o link show master "$TESTHOST_BRIDGE" 2>/dev/null)" ]]; then
		ip link del dev "$TESTHOST_BRIDGE"
	fi
}

testhost_up() {
	local name=$1 addr=$2 veth
	testhost_check_name "$name"
	testhost_check_addr "$addr"
	testhost_require
	testhost_lock
	veth=$(testhost_veth "$name")
	if testhost_exists "$name" && ! testhost_owned "$name"; then
		die "network namespace '$name' exists but was not created by '$PROG testhost'; pick another name"
	fi
	testhost_ensure_bridge
	mkdir -p "$TESTHOST_STATE"
	touch "$TESTHOST_STATE/$name"
	testhost_exists "$name" || ip netns add "$name"
	ip -n "$name" link set dev lo up
	if ! ip link show dev "$veth" >/dev/null 2>&1; then
		ip link add name "$veth" type veth peer name eth0 netns "$name" ||
			die "could not create the veth pair $veth <-> $name/eth0"
	fi
	ip link set dev "$veth" master "$TESTHOST_BRIDGE"
	ip link set dev "$veth" up
	ip -n "$name" link set dev eth0 up
	ip -n "$name" addr replace "$addr/$TESTHOST_PREFIXLEN" dev eth0
	log "test host $name is up at $addr (run processes in it with: ip netns exec $name CMD)"
}

testhost_addr() {
	local name=$1 addr=$2
	testhost_check_name "$name"
	testhost_check_addr "$addr"
	testhost_require
	testhost_lock
	if ! testhost_exists "$name" || ! testhost_owned "$name"; then
		die "no test host '$name'; create it with: $PROG testhost up $name ADDR"
	fi
	# A /32 so it does not become a secondary of (and vanish with) the primary address.
	ip -n "$name" addr replace "$addr/32" dev eth0
	log "test host $name also answers on $addr"
}

testhost_down() {
	local name=$1 veth pids i
	testhost_check_name "$name"
	testhost_require
	testhost_lock
	veth=$(testhost_veth "$name")
	if testhost_exists "$name"; then
		testhost_owned "$name" ||
			die "network namespace '$name' was not created by '$PROG testhost'; not removing it"
		# Processes left inside would keep the namespace (and its addresses) alive.
		pids=$(ip netns pids "$name" 2>/dev/null || true)
		if [[ -n "$pids" ]]; then
			log "stopping processes in test host $name: $(echo "$pids" | tr '\n' ' ')"
			# shellcheck disable=SC2086 # word splitting of the pid list is intended
			kill -TERM $pids 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				[[ -z "$(ip netns pids "$name" 2>/dev/null || true)" ]] && break
				sleep 0.1
			done
			pids=$(ip netns pids "$name" 2>/dev/null || true)
			# shellcheck disable=SC2086
			[[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
		fi
		ip netns del "$name"
	fi
	ip link del dev "$veth" 2>/dev/null || true
	rm -f "$TESTHOST_STATE/$name"
	testhost_maybe_remove_bridge
	log "test host $name is down"
}

testhost_list() {
	local name addrs
	[[ -d "$TESTHOST_STATE" ]] || return 0
	for name in "$TESTHOST_STATE"/*; do
		[[ -e "$name" ]] || continue
		name=${name##*/}
		addrs=$(ip -n "$name" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | tr '\n' ' ')
		printf '%s\t%s\n' "$name" "${addrs% }"
	done
}

cmd_testhost() {
	local sub=${1:-}
	shift || true
	case "$sub" in
	up)
		(($# == 2)) || die "usage: $PROG testhost up NAME ADDR"
		testhost_up "$1" "$2"
		;;
	addr)
		(($# == 2)) || die "usage: $PROG testhost addr NAME ADDR"
		testhost_addr "$1" "$2"
		;;
	down)
		(($# == 1)) || die "usage: $PROG testhost down NAME"
		testhost_down "$1"
		;;
	exec)
		(($# >= 2)) || die "usage: $PROG testhost exec NAME CMD..."
		testhost_check_name "$1"
		testhost_require
		testhost_owned "$1" || die "no test host '$1'"
		exec ip netns exec "$@"
		;;
	list)
		testhost_require
		testhost_list
		;;
	-h | --help | help)
		testhost_usage
		;;
	*)
		testhost_usage >&2
		exit 2
		;;
	esac
}
