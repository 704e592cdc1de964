#!/usr/bin/env bash
# Quick start: install and build, check the machine, prepare the bundled corpus (King James Bible
# excerpt, public domain) and train bert-tiny on all cores with mpirun for a few minutes.
# Usage: launch/quickstart.sh [extra swiftbert train options]
set -euo pipefail
cd "$(dirname "$0")/.."
launch/install.sh
bin=.build/release/swiftbert
ranks=$(nproc)
mpi=(mpirun --oversubscribe -np "$ranks")
[ "$(id -u)" -eq 0 ] && mpi=(mpirun --allow-run-as-root --oversubscribe -np "$ranks")

echo "==> swiftbert doctor ($ranks ranks)"
"${mpi[@]}" "$bin" doctor --gemm-size 512

if [ ! -f data/kjv/manifest.json ]; then
    echo "==> preparing corpus/kjv.txt -> data/kjv"
    "$bin" prepare --input corpus/kjv.txt --vocab corpus/vocab.txt --out data/kjv --dupe-factor 2
fi

echo "==> training bert-tiny on $ranks ranks (runs/quickstart)"
"${mpi[@]}" "$bin" train --config configs/bert-tiny.json --data data/kjv --out runs/quickstart \
    --set batch.global_batch_size=32 --set schedule.total_steps=400 --set schedule.warmup_steps=40 \
    --set checkpoint.every_steps=100 --set logging.eval_every_steps=200 "$@"
