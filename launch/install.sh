#!/usr/bin/env bash
# Installs what SwiftBERT needs on Debian/Ubuntu (Open MPI, OpenBLAS) and builds the release binary.
# Usage: launch/install.sh            (from anywhere; uses sudo when not root)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libopenmpi-dev openmpi-bin libopenblas-dev pkg-config iproute2)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo=sudo
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v swift >/dev/null || { echo "error: swift not found on PATH: install Swift 6 (swift.org) first" >&2; exit 1; }
echo "==> building swiftbert (release)"
swift build -c release 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\] (Compiling|Emitting|Write|Linking|Applying)' || true
test -x .build/release/swiftbert || { echo "error: build failed (run: swift build -c release)" >&2; exit 1; }
echo "==> built $(pwd)/.build/release/swiftbert"
