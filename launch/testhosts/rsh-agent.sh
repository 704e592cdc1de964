#!/usr/bin/env bash
# Open MPI rsh agent for the namespace cluster of netns-cluster.sh: called as `rsh-agent.sh HOST
# command...` (like ssh), runs the command in HOST's network namespace under HOST's host name.
# HOST is an address 127.77.0.N (host N-1) or a host name PREFIX-i; NETNS_CLUSTER_PREFIX names the
# cluster (netns-cluster.sh exports it).
set -euo pipefail
prefix=${NETNS_CLUSTER_PREFIX:-sbhost}
# ssh-style options Open MPI may pass before the host (none are meaningful here).
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
[ $# -ge 2 ] || { echo "rsh-agent: usage: rsh-agent.sh HOST COMMAND..." >&2; exit 255; }
host=$1; shift
case "$host" in
    127.77.0.*) index=$(( ${host##*.} - 1 )) ;;
    "$prefix"-*) index=${host#"$prefix"-} ;;
    *) echo "rsh-agent: $host is not a host of cluster $prefix (127.77.0.N or $prefix-N)" >&2; exit 255 ;;
esac
ns=$prefix-$index
ip netns list | awk '{print $1}' | grep -qx "$ns" || { echo "rsh-agent: ssh: connect to host $host: no such namespace $ns" >&2; exit 255; }
# Like ssh: the words form one command line for the remote shell.
exec ip netns exec "$ns" unshare --uts -- /bin/sh -c 'hostname "$0" && exec /bin/sh -c "$1"' "$ns" "$*"
