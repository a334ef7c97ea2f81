#!/usr/bin/env bash
# Runs the batch train -> validate -> deploy -> predict workflow on embedded defaults: a
# SQLite store and job logs under out/.ferroflow, model files under it too, the scheduler as
# a background process, every job as a `ferroflow job run` child of it.
# Usage: run.sh [path/to/ferroflow]   (default: builds it with cargo)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
if [ $# -ge 1 ]; then
  bin="$1"
else
  cargo build -q --bin ferroflow
  bin="${CARGO_TARGET_DIR:-target}/debug/ferroflow"
fi
export FERROFLOW_DATA_DIR="$here/out/.ferroflow"
rm -rf "$here/out"
mkdir -p "$FERROFLOW_DATA_DIR"

"$bin" scheduler > "$here/out/scheduler.log" 2>&1 &
sched=$!
trap 'kill $sched 2>/dev/null || true' EXIT

"$bin" workflow submit "$here/workflow.yaml"
exec_name="$("$bin" workflow start batch_train_predict --project demo)"
echo "started $exec_name"
"$bin" workflow wait "$exec_name" --project demo --job predict --timeout 5m

echo
echo "-- job executions"
"$bin" workflow jobs "$exec_name" --project demo
echo
echo "-- model versions of 'cancer' (the train job registered it; validate and push moved it)"
"$bin" models versions cancer | grep -E '"(version|stage|uri|areaUnderROC)"'
echo
echo "-- the validate job's log"
"$bin" workflow logs "$exec_name" validate --project demo | grep -E 'VALIDATED|rejected'
echo
echo "-- predictions (examples/batch_train_predict/out/predictions.csv), first rows"
head -n 6 "$here/out/predictions.csv"
awk -F, 'NR > 1 { n++; if ($2 == $3) ok++ } END { printf "accuracy on %d unseen rows: %.3f\n", n, ok / n }' "$here/out/predictions.csv"
echo
echo "-- the train job re-runs every 2 minutes until the execution is stopped; stopping it now"
"$bin" workflow stop "$exec_name" --project demo
"$bin" workflow wait "$exec_name" --project demo --timeout 1m
