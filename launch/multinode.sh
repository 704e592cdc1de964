#!/usr/bin/env bash
# Runs swiftbert on several machines with mpirun --hostfile.
#
# Usage: launch/multinode.sh --hostfile FILE [options] [--] SWIFTBERT-ARGS...
#   --hostfile FILE        Open MPI hostfile: one host per line, `name slots=N` (required); the first
#                          host runs rank 0, which writes the run directory
#   --ranks-per-host N     ranks on every host (default: the hostfile's slots)
#   --np N                 total ranks (default: the sum of the slots, or hosts x --ranks-per-host)
#   --iface IF[,IF...]     network interfaces or CIDR ranges for MPI traffic and Open MPI's own
#                          channel (btl_tcp_if_include and oob_tcp_if_include), e.g. eth1 or 10.0.0.0/24
#   --tcp-only             no shared memory transport, TCP even between ranks of one host (btl tcp,self)
#   --rsh-agent CMD        how to reach the hosts (plm_rsh_agent; default ssh)
#   --export VAR           also export VAR to the remote ranks (repeatable)
#   --mca KEY VALUE        any other Open MPI parameter (repeatable)
#   --connect-timeout S    seconds a host may take to answer the start-up check (default 15)
#   --no-check             skip the start-up check of every host
#   --binary PATH          swiftbert on every host, same path (default .build/release/swiftbert)
#   --dry-run              print the mpirun command instead of running it
#
# Before launching, every host of the hostfile is reached once through the rsh agent and must hold
# the binary at the same path: an unreachable host or a missing binary ends with a message naming it,
# instead of an mpirun that waits. PATH, LD_LIBRARY_PATH, OPENBLAS_CORETYPE (if set) and the
# --export variables are exported to every rank. Each rank uses cores/ranks-on-its-host BLAS
# threads. The data directory must exist at the same path on every host; the run directory is
# written by rank 0 only (checkpoints are read by rank 0 and broadcast), so it may be on rank 0's
# local disk if rank 0 stays on the same host when the job is resumed, or on shared storage.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "multinode.sh: $*" >&2; exit 2; }

hostfile=""
ranks_per_host=""
np=""
iface=""
tcp_only=0
agent=""
exports=(PATH LD_LIBRARY_PATH)
mca=()
timeout_seconds=15
check=1
binary=${SWIFTBERT_BINARY:-$root/.build/release/swiftbert}
dry_run=0
need() { [ "$2" -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --hostfile) need "$1" $#; hostfile=$2; shift 2 ;;
        --ranks-per-host) need "$1" $#; ranks_per_host=$2; shift 2 ;;
        --np) need "$1" $#; np=$2; shift 2 ;;
        --iface) need "$1" $#; iface=$2; shift 2 ;;
        --tcp-only) tcp_only=1; shift ;;
        --rsh-agent) need "$1" $#; agent=$2; shift 2 ;;
        --export) need "$1" $#; exports+=("$2"); shift 2 ;;
        --mca) [ $# -ge 3 ] || die "--mca needs KEY VALUE"; mca+=(--mca "$2" "$3"); shift 3 ;;
        --connect-timeout) need "$1" $#; timeout_seconds=$2; shift 2 ;;
        --no-check) check=0; shift ;;
        --binary) need "$1" $#; binary=$2; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see launch/multinode.sh --help)" ;;
        *) break ;;
    esac
done

whole() { case "$2" in ''|*[!0-9]*|0) die "$1 must be a positive whole number, not '$2'" ;; esac; }
[ -n "$hostfile" ] || die "--hostfile FILE is required (one host per line: 'name slots=N')"
[ -f "$hostfile" ] || die "hostfile $hostfile does not exist"
[ -n "$ranks_per_host" ] && whole --ranks-per-host "$ranks_per_host"
[ -n "$np" ] && whole --np "$np"
whole --connect-timeout "$timeout_seconds"
[ $# -gt 0 ] || die "no swiftbert command given (e.g. ... -- train --config configs/bert-base.json --data /shared/data)"
command -v mpirun >/dev/null || die "mpirun not found: install openmpi-bin (launch/install.sh does)"
[ -x "$binary" ] || die "$binary not found or not executable on this host: build it or pass --binary"

# Hosts and slots from the hostfile (comments and blank lines ignored). Every line is checked here:
# mpirun reports a bad line late and obscurely, and a name starting with '-' would reach ssh as an option.
[ -r "$hostfile" ] || die "hostfile $hostfile is not readable"
grep -q "$(printf '\r')" "$hostfile" && die "hostfile $hostfile has Windows line endings; convert it (dos2unix)"
[ "$(LC_ALL=C tr -d '[:print:][:space:]' <"$hostfile" | wc -c)" -eq 0 ] \
    || die "hostfile $hostfile holds binary or non-ASCII bytes; it must be text, one 'name slots=N' a line"
hosts=()
total_slots=0
line_number=0
while IFS= read -r line || [ -n "$line" ]; do
    line_number=$(( line_number + 1 ))
    line=${line%%#*}
    read -r name rest <<<"$line" || true
    [ -n "${name:-}" ] || continue
    where="hostfile $hostfile, line $line_number"
    [[ "$name" =~ ^[A-Za-z0-9_.:][A-Za-z0-9_.:-]*$ ]] \
        || die "$where: '$name' is not a host name (letters, digits, '.', '-', '_', ':'; not starting with '-')"
    slots=1
    for field in $rest; do
        key=${field%%=*}
        value=${field#*=}
        case "$key" in
            slots|max_slots|max-slots) ;;
            *) die "$where: unknown field '$field' (expected slots=N or max_slots=N)" ;;
        esac
        [[ "$field" == *=* && "$value" =~ ^[1-9][0-9]{0,5}$ ]] \
            || die "$where: $key must be a whole number from 1 to 999999, not '$value'"
        [ "$key" = slots ] && slots=$value
    done
    hosts+=("$name")
    total_slots=$(( total_slots + slots ))
done < "$hostfile"
[ ${#hosts[@]} -gt 0 ] || die "hostfile $hostfile names no hosts"

is_this_host() {
    case "$1" in localhost|127.0.0.1|"$(hostname)"|"$(hostname -f 2>/dev/null || hostname)") return 0 ;; esac
    # In a cluster of network namespaces (launch/testhosts) this host is one of the addresses.
    command -v ip >/dev/null && ip -o -4 addr show 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | grep -qx "$1"
}

if [ "$check" -eq 1 ]; then
    reach=(ssh -o BatchMode=yes -o ConnectTimeout="$timeout_seconds")
    # shellcheck disable=SC2206
    [ -n "$agent" ] && reach=($agent)
    command -v "${reach[0]}" >/dev/null || die "rsh agent '${reach[0]}' not found (install openssh-client or pass --rsh-agent)"
    check_log=$(mktemp)
    trap 'rm -f "$check_log"' EXIT
    for host in "${hosts[@]}"; do
        is_this_host "$host" && continue
        status=0
        # Into a file, not a pipe: a hung agent's children must not keep the script waiting.
        timeout "$timeout_seconds" "${reach[@]}" "$host" "test -x '$binary' && echo swiftbert-ok" >"$check_log" 2>&1 </dev/null || status=$?
        output=$(cat "$check_log")
        grep -q swiftbert-ok <<<"$output" && continue
        case "$status" in
            124) die "host $host did not answer within $timeout_seconds s through '${reach[*]}' (unreachable? check the name, the network and passwordless ssh)" ;;
            1) die "host $host: $binary not found there (the binary must exist at the same path on every host)" ;;
            *) die "host $host is unreachable through '${reach[*]}' (status $status): $(tail -n 1 <<<"$output")" ;;
        esac
    done
fi

mpi=(mpirun --hostfile "$hostfile")
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
if [ -n "$ranks_per_host" ]; then
    mpi+=(--map-by "ppr:$ranks_per_host:node" -np "${np:-$(( ranks_per_host * ${#hosts[@]} ))}")
else
    mpi+=(-np "${np:-$total_slots}")
fi
# BLAS threads are chosen per host by swiftbert (cores / ranks on the host); no binding, so a rank's
# threads may use all of its share of the host.
mpi+=(--bind-to none)
[ -n "$iface" ] && mpi+=(--mca btl_tcp_if_include "$iface" --mca oob_tcp_if_include "$iface")
[ "$tcp_only" -eq 1 ] && mpi+=(--mca btl tcp,self)
[ -n "$agent" ] && mpi+=(--mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1)
[ -n "${OPENBLAS_CORETYPE:-}" ] && exports+=(OPENBLAS_CORETYPE)
for variable in "${exports[@]}"; do
    [ -n "${!variable+set}" ] && mpi+=(-x "$variable")
done
mpi+=("${mca[@]}")

[ "$check" -eq 1 ] && { rm -f "$check_log"; trap - EXIT; }
echo "multinode.sh: ${#hosts[@]} host(s) from $hostfile: ${hosts[*]}" >&2
if [ "$dry_run" -eq 1 ]; then
    printf '%q ' "${mpi[@]}" "$binary" "$@"; echo
    exit 0
fi
exec "${mpi[@]}" "$binary" "$@"
