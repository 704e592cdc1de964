#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds, then unit and integration tests
# (the MPI tests start the built binary under mpirun). Release mode: the numeric tests are heavy.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install.sh
echo "==> swift test -c release"
swift test -c release "$@"
