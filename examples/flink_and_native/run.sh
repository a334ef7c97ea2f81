#!/usr/bin/env bash
# Runs the mixed native + Flink workflow: a local Flink 2.3 cluster (scripts/flink-local.sh,
# from PyPI, cached), the scheduler in the background, an `orders.arrived` event to start it.
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
FERROFLOW_FLINK_URL="$(bash scripts/flink-local.sh start)"
export FERROFLOW_FLINK_URL
export FERROFLOW_DATA_DIR="$here/out/.ferroflow"
rm -rf "$here/out"
mkdir -p "$FERROFLOW_DATA_DIR"

"$bin" scheduler > "$here/out/scheduler.log" 2>&1 &
sched=$!
trap 'kill $sched 2>/dev/null || true' EXIT

"$bin" workflow submit "$here/workflow.yaml"
exec_name="$("$bin" workflow start flink_and_native --project demo)"
echo "started $exec_name; waiting for orders"
"$bin" events send orders.arrived "$here/data/orders.csv" --sender example > /dev/null
"$bin" workflow wait "$exec_name" --project demo --job report --timeout 5m

echo
"$bin" workflow jobs "$exec_name" --project demo
echo
echo "-- the Flink job (from the totals job's log)"
"$bin" workflow logs "$exec_name" totals --project demo | grep '\[flink\]'
echo
echo "-- revenue per category, computed on Flink (out/report.jsonl)"
cat "$here/out/report.jsonl"
"$bin" workflow stop "$exec_name" --project demo > /dev/null
"$bin" workflow wait "$exec_name" --project demo --timeout 1m
