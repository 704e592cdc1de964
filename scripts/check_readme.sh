#!/usr/bin/env bash
# Runs every command block of README.md, as written and in order, in this checkout, so the README
# cannot drift from what the commands do. Run it in a fresh clone after `launch/test.sh` (.ci/run does):
# it writes data/, runs/ and hosts files the way a user following the README would, and refuses a
# checkout that already has data/ or runs/.
#
# Every ```sh block is preceded by a marker line that says how it is checked:
#   <!-- readme: run -->                   each command must exit 0
#   <!-- readme: run, stop after N s -->   long training: SIGTERM after N s; the command must exit 0 by
#                                          then or have been training when the signal came
#   <!-- readme: run as root -->           as `run`, and reported as skipped when not root
#   <!-- readme: skip: REASON -->          not runnable on one machine (REASON says why)
# A block without a marker is an error. `launch/test.sh` lines are not run: that is the suite this
# check follows. Commands end at 15 minutes at the latest.
# Usage: scripts/check_readme.sh [--force]   (--force: run even if data/ or runs/ exist)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "${1:-}" != "--force" ] && { [ -e data ] || [ -e runs ]; }; then
    echo "error: $root already has data/ or runs/; run this check in a fresh clone (or pass --force)" >&2
    exit 2
fi

export PATH="$root/.build/release:$PATH"
# What a user who runs the README as root sets once (README: "As root, mpirun needs ...").
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
passed=0 failed=0 skipped=0

# Prints the blocks as records: "BLOCK<TAB>line<TAB>marker", then one "CMD<TAB>command" per command
# (continuation lines joined).
extract() {
    awk '
        /^<!-- readme: .* -->$/ { marker = $0; sub(/^<!-- readme: /, "", marker); sub(/ -->$/, "", marker); markerLine = NR; next }
        /^```sh$/ {
            if (markerLine != NR - 1) { printf "UNMARKED\t%d\n", NR; marker = ""; inBlock = 1; next }
            printf "BLOCK\t%d\t%s\n", NR, marker; inBlock = 1; command = ""; next
        }
        /^```/ && inBlock { inBlock = 0; marker = ""; next }
        inBlock {
            line = $0
            if (line ~ /\\$/) { sub(/\\$/, "", line); command = command line; next }
            command = command line
            if (command ~ /[^ ]/) printf "CMD\t%s\n", command
            command = ""
        }
    ' README.md
}

run_command() {  # limit seconds, stop-on-signal flag, command
    local limit=$1 stoppable=$2 command=$3 log="$logs/$((passed + failed)).log" status
    echo "\$ $command"
    timeout --signal=TERM --kill-after=60 "$limit" bash -c "$command" </dev/null >"$log" 2>&1
    status=$?
    tail -n 4 "$log" | sed 's/^/    /'
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1)); return 0
    fi
    # A long run stopped by the time limit passes when it was training: it checkpointed on the
    # signal, or (mpirun ends its ranks' output when signalled) it had announced its training steps.
    if [ "$stoppable" = 1 ] && [ "$status" -eq 124 ] \
        && grep -Eq "stop requested by a signal|^training [0-9,]+ parameters on" "$log"; then
        echo "    (stopped after ${limit} s while training)"
        passed=$((passed + 1)); return 0
    fi
    echo "FAILED (exit $status): $command" >&2
    sed 's/^/    /' "$log" | tail -n 40 >&2
    failed=$((failed + 1)); return 1
}

mode="" limit=900 stoppable=0
while IFS=$'\t' read -r kind first second; do
    case "$kind" in
    UNMARKED)
        echo "error: README.md line $first: a sh block without a <!-- readme: ... --> marker line before it" >&2
        exit 1 ;;
    BLOCK)
        limit=900 stoppable=0 mode=run
        case "$second" in
        run) ;;
        "run as root") [ "$(id -u)" -eq 0 ] || mode="skip: needs root" ;;
        "run, stop after "*" s") limit=${second#run, stop after }; limit=${limit% s}; stoppable=1 ;;
        skip:*) mode=$second ;;
        *) echo "error: README.md line $first: unknown marker '$second'" >&2; exit 1 ;;
        esac
        echo "== README.md line $first: $second" ;;
    CMD)
        if [ "$mode" != run ]; then skipped=$((skipped + 1)); continue; fi
        case "$first" in
        "launch/test.sh"*) echo "\$ $first    (not run: the test suite this check follows)"; continue ;;
        *"<<"*) echo "error: a heredoc in a runnable block cannot be run command by command: $first" >&2; exit 1 ;;
        esac
        run_command "$limit" "$stoppable" "$first" || break ;;
    esac
done < <(extract)

echo "readme: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
