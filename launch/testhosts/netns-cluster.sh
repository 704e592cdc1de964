#!/usr/bin/env bash
# A cluster of N "hosts" on this machine for multi-host tests: one network namespace per host, joined
# by veth pairs to a bridge that lives in its own switch namespace (nothing is added to the root
# namespace's network). Host i gets the address 127.77.0.<i+1>/24 and, in every command run through
# this script, its own UTS namespace with the host name PREFIX-i, so MPI sees N different hosts
# (MPI_Get_processor_name returns gethostname()). Only 127.77.0.0/24 is used.
#
# Usage (as root, needs `ip` from iproute2 and `unshare` from util-linux):
#   launch/testhosts/netns-cluster.sh up   [--prefix P] [--hosts N]   create (replaces a stale cluster P)
#   launch/testhosts/netns-cluster.sh down [--prefix P]               remove everything of cluster P
#   launch/testhosts/netns-cluster.sh exec [--prefix P] HOST CMD...   run CMD on HOST (index or address)
#   launch/testhosts/netns-cluster.sh kill [--prefix P] HOST          SIGKILL every process of HOST
#   launch/testhosts/netns-cluster.sh hostfile [--prefix P] [--slots S]  print an Open MPI hostfile
#   launch/testhosts/netns-cluster.sh run  [--prefix P] [--hosts N] -- CMD...
#       up, run CMD on host 0, down (also when CMD fails or the script is interrupted)
#
# Inside `exec`/`run`, NETNS_CLUSTER_AGENT names the rsh agent for Open MPI
# (`--mca plm_rsh_agent $NETNS_CLUSTER_AGENT`): it is called as `agent HOST command...` with HOST an
# address of the cluster and runs the command in that host's namespace, as ssh would.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
subnet=127.77.0
prefix=sbhost
hosts=2
slots=1

die() { echo "netns-cluster: $*" >&2; exit 1; }

parse_common() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --prefix) prefix=$2; shift 2 ;;
            --hosts) hosts=$2; shift 2 ;;
            --slots) slots=$2; shift 2 ;;
            --) shift; rest=("$@"); return ;;
            *) rest=("$@"); return ;;
        esac
    done
    rest=()
}

require_tools() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
    command -v ip >/dev/null || die "'ip' not found: install iproute2 (launch/install.sh does)"
    command -v unshare >/dev/null || die "'unshare' not found: install util-linux"
}

# Namespace names are short: interface names are limited to 15 characters.
host_ns() { echo "$prefix-$1"; }
switch_ns() { echo "$prefix-sw"; }
existing_hosts() { ip netns list | awk '{print $1}' | grep -E "^$prefix-[0-9]+$" | sed "s/^$prefix-//" | sort -n || true; }

# HOST is an index (0, 1, ...), an address of the cluster (127.77.0.1 = host 0) or a host name PREFIX-i.
host_index() {
    case "$1" in
        "$subnet".*) echo $(( ${1##*.} - 1 )) ;;
        "$prefix"-*) echo "${1#"$prefix"-}" ;;
        *[!0-9]*|"") die "unknown host '$1' (expected an index, $subnet.N or $prefix-N)" ;;
        *) echo "$1" ;;
    esac
}

down() {
    for index in $(existing_hosts); do
        ip netns pids "$(host_ns "$index")" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$(host_ns "$index")" 2>/dev/null || true
    done
    if ip netns list | awk '{print $1}' | grep -qx "$(switch_ns)"; then
        ip netns del "$(switch_ns)" 2>/dev/null || true
    fi
}

up() {
    [ "$hosts" -ge 1 ] && [ "$hosts" -le 200 ] || die "--hosts must be 1...200"
    down
    local sw; sw=$(switch_ns)
    ip netns add "$sw"
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    local index ns
    for (( index = 0; index < hosts; index++ )); do
        ns=$(host_ns "$index")
        ip netns add "$ns"
        # The pair is created inside the switch namespace, then one end moves to the host.
        ip -n "$sw" link add "h$index" type veth peer name eth0 netns "$ns"
        ip -n "$sw" link set "h$index" master br0 up
        # 127.0.0.0/8 is "local" on lo by default, which would swallow the cluster's addresses:
        # keep only 127.0.0.1 local, let the kernel route 127.77.0.0/24 over eth0 (route_localnet).
        ip -n "$ns" link set lo up
        ip -n "$ns" addr del 127.0.0.1/8 dev lo
        ip -n "$ns" addr add 127.0.0.1/32 dev lo
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
        ip -n "$ns" addr add "$subnet.$(( index + 1 ))/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
}

# Runs "$@" as host INDEX: its network namespace plus a fresh UTS namespace named PREFIX-INDEX.
exec_on() {
    local index=$1; shift
    local ns; ns=$(host_ns "$index")
    ip netns list | awk '{print $1}' | grep -qx "$ns" || die "host $index ($ns) does not exist (run: $0 up --prefix $prefix)"
    export NETNS_CLUSTER_AGENT="$here/rsh-agent.sh" NETNS_CLUSTER_PREFIX="$prefix"
    exec ip netns exec "$ns" unshare --uts -- /bin/sh -c 'hostname "$0" && exec "$@"' "$ns" "$@"
}

hostfile() {
    local index
    for index in $(existing_hosts); do echo "$subnet.$(( index + 1 )) slots=$slots"; done
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    up) parse_common "$@"; require_tools; up; echo "cluster $prefix: $hosts hosts, $subnet.1-$subnet.$hosts" ;;
    down) parse_common "$@"; require_tools; down ;;
    exec)
        parse_common "$@"; require_tools
        [ ${#rest[@]} -ge 2 ] || die "usage: $0 exec [--prefix P] HOST COMMAND..."
        exec_on "$(host_index "${rest[0]}")" "${rest[@]:1}" ;;
    kill)
        parse_common "$@"; require_tools
        [ ${#rest[@]} -eq 1 ] || die "usage: $0 kill [--prefix P] HOST"
        ip netns pids "$(host_ns "$(host_index "${rest[0]}")")" | xargs -r kill -9 ;;
    hostfile) parse_common "$@"; hostfile ;;
    run)
        parse_common "$@"; require_tools
        [ ${#rest[@]} -ge 1 ] || die "usage: $0 run [--prefix P] [--hosts N] -- COMMAND..."
        trap down EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        up
        # Not exec: the trap must run after the command.
        status=0
        ( exec_on 0 "${rest[@]}" ) || status=$?
        exit "$status" ;;
    *) die "usage: $0 up|down|exec|kill|hostfile|run [--prefix P] [--hosts N] ... (see the header of $0)" ;;
esac
