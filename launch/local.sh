#!/usr/bin/env bash
# Runs swiftbert on all cores of this machine under mpirun, with binding and BLAS threads set.
#
# Usage: launch/local.sh [--ranks N] [--binary PATH] [--dry-run] [--] SWIFTBERT-ARGS...
#   launch/local.sh train --config configs/bert-mini.json --data data/kjv --out runs/mini
#   launch/local.sh --ranks 1 train --config configs/bert-tiny.json --data data/kjv --out runs/tiny
#
# N ranks get cores/N cores each: every rank is bound to its own cores (N <= cores) and runs
# cores/N BLAS threads (swiftbert derives the count from the ranks on the host; OPENBLAS_NUM_THREADS
# and OMP_NUM_THREADS are set to the same value so the libraries never start more threads at load).
# The default, one rank per core with one thread each, was the faster layout for bert-tiny and
# bert-mini on a 2-core machine (README, "Launching"). More ranks than cores are oversubscribed
# without binding, and swiftbert warns.
#
# SWIFTBERT_BINARY overrides the binary (default .build/release/swiftbert); MPIRUN_ARGS adds words
# to the mpirun command line. mpirun forwards SIGTERM/SIGINT: the ranks checkpoint and stop.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "local.sh: $*" >&2; exit 2; }

cores=$(nproc --all 2>/dev/null || getconf _NPROCESSORS_ONLN)
ranks=$cores
binary=${SWIFTBERT_BINARY:-$root/.build/release/swiftbert}
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --ranks) [ $# -ge 2 ] || die "--ranks needs a number"; ranks=$2; shift 2 ;;
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
case "$ranks" in ''|*[!0-9]*|0) die "--ranks must be a positive whole number, not '$ranks'" ;; esac
[ $# -gt 0 ] || die "no swiftbert command given (e.g. launch/local.sh train --config configs/bert-tiny.json --data data/kjv)"
[ -x "$binary" ] || die "$binary not found or not executable: build it (swift build -c release) or set SWIFTBERT_BINARY"
command -v mpirun >/dev/null || die "mpirun not found: install openmpi-bin (launch/install.sh does)"

mpi=(mpirun -np "$ranks")
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
if [ "$ranks" -le "$cores" ]; then
    threads=$(( cores / ranks ))
    # Each rank on `threads` logical CPUs of its own (swiftbert counts logical CPUs too), so its BLAS
    # threads never share a CPU with another rank's.
    mpi+=(--use-hwthread-cpus --map-by "slot:PE=$threads" --bind-to hwthread)
else
    threads=1
    mpi+=(--oversubscribe --bind-to none)
fi
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
mpi+=(-x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS)
[ -n "${OPENBLAS_CORETYPE:-}" ] && mpi+=(-x OPENBLAS_CORETYPE)
# shellcheck disable=SC2206
[ -n "${MPIRUN_ARGS:-}" ] && mpi+=($MPIRUN_ARGS)

echo "local.sh: $ranks rank(s) x $threads BLAS thread(s) on $cores cores" >&2
if [ "$dry_run" -eq 1 ]; then
    printf '%q ' "${mpi[@]}" "$binary" "$@"; echo
    exit 0
fi
exec "${mpi[@]}" "$binary" "$@"
