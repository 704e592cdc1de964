#!/usr/bin/env bash
# Restarts a training job that failed, from its newest verified checkpoint.
#
# Usage: launch/autoresume.sh [--max-restarts N] [--backoff S] [--max-backoff S] [--run DIR] -- COMMAND...
#   launch/autoresume.sh --run runs/mini -- launch/local.sh train --config configs/bert-mini.json --out runs/mini
#   launch/autoresume.sh --max-restarts 10 -- launch/multinode.sh --hostfile hosts -- train ... --out /shared/runs/base
#
# COMMAND is a swiftbert train launch that resumes by itself (`--resume auto`, the default, continues
# from the newest checkpoint whose SHA-256 sums verify). It is run again when it fails, at most
# --max-restarts times (default 5), after a back-off that starts at --backoff seconds (default 10)
# and doubles up to --max-backoff (default 300). A restart that got further than the previous one
# (a newer checkpoint in --run DIR) resets the back-off. It stops at once, without restarting, on
# errors a restart cannot fix: usage errors (exit status 64), configuration errors (a config file
# or --set key named), a batch that does not fit the ranks, a run directory or checkpoint that
# refuses to resume (changed settings, other data), damaged training data (a shard that does not
# verify, a record outside the vocabulary). The exit status is the last attempt's.
# A SIGTERM/SIGINT to the wrapper is passed to the job and ends the wrapper (no restart).
set -euo pipefail

die() { echo "autoresume: $*" >&2; exit 2; }

max_restarts=5
backoff=10
max_backoff=300
run=""
while [ $# -gt 0 ]; do
    case "$1" in
        --max-restarts) [ $# -ge 2 ] || die "$1 needs a number"; max_restarts=$2; shift 2 ;;
        --backoff) [ $# -ge 2 ] || die "$1 needs seconds"; backoff=$2; shift 2 ;;
        --max-backoff) [ $# -ge 2 ] || die "$1 needs seconds"; max_backoff=$2; shift 2 ;;
        --run) [ $# -ge 2 ] || die "$1 needs the run directory"; run=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see launch/autoresume.sh --help)" ;;
        *) break ;;
    esac
done
for value in "$max_restarts" "$backoff" "$max_backoff"; do
    case "$value" in ''|*[!0-9]*) die "--max-restarts, --backoff and --max-backoff take whole numbers, not '$value'" ;; esac
done
[ $# -gt 0 ] || die "no command given (usage: launch/autoresume.sh [options] -- COMMAND...)"

# Output lines of errors that the same command will hit again.
permanent='(error|Error): .*(\.json: |--set |batch layout: )|cannot resume from|already holds checkpoints|holds no instances|checksum mismatch, the shard is corrupt|is not a valid SwiftBERT shard|: record [0-9]+: |Unknown option|Missing expected argument|missing value for|not found or not executable|does not exist'

newest_checkpoint() {
    [ -n "$run" ] && [ -f "$run/checkpoints/latest" ] && cat "$run/checkpoints/latest" || echo none
}

log=$(mktemp)
child=0
forward() {
    trap - TERM INT
    echo "autoresume: $1: stopping the job (no restart)" >&2
    [ "$child" -ne 0 ] && kill -"$1" "$child" 2>/dev/null
    wait "$child" 2>/dev/null || true
    rm -f "$log"
    exit 143
}
trap 'forward TERM' TERM
trap 'forward INT' INT

attempt=0
delay=$backoff
previous=$(newest_checkpoint)
while :; do
    attempt=$(( attempt + 1 ))
    echo "autoresume: attempt $attempt (checkpoint: $previous): $*" >&2
    # The job's output goes to the terminal and to a log that is searched for permanent errors.
    "$@" > >(tee "$log") 2> >(tee -a "$log" >&2) &
    child=$!
    status=0
    wait "$child" || status=$?
    child=0
    echo "autoresume: attempt $attempt exited with status $status at $(date +%s.%N | cut -c1-14) (unix time)" >&2
    if [ "$status" -eq 0 ]; then
        rm -f "$log"
        exit 0
    fi
    if [ "$status" -eq 64 ] || grep -Eq "$permanent" "$log"; then
        echo "autoresume: not restarting: a restart cannot fix this error:" >&2
        grep -E "$permanent" "$log" | head -n 3 | sed 's/^/    /' >&2 || true
        rm -f "$log"
        exit "$status"
    fi
    if [ $(( attempt - 1 )) -ge "$max_restarts" ]; then
        echo "autoresume: giving up after $max_restarts restart(s); the last attempt exited with status $status" >&2
        rm -f "$log"
        exit "$status"
    fi
    current=$(newest_checkpoint)
    if [ "$current" != "$previous" ]; then delay=$backoff; fi
    previous=$current
    echo "autoresume: restarting in $delay s from the newest verified checkpoint ($current)" >&2
    sleep "$delay" &
    child=$!
    wait "$child" || true
    child=0
    delay=$(( delay * 2 > max_backoff ? max_backoff : delay * 2 ))
done
