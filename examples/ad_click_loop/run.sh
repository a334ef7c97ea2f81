#!/usr/bin/env bash
# Runs the online-learning loop for a bounded time on embedded defaults (a SQLite store,
# job logs, checkpoints and model versions under out/.ferroflow; the scheduler as a
# background process, every job a `ferroflow job run` child of it), then prints the model
# versions with their metrics and stages and which versions served how many predictions,
# and draws out/loop.svg.
# Usage: run.sh [path/to/ferroflow] [seconds (default 60)]   (run from anywhere)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
if [ $# -ge 1 ] && [ -n "$1" ]; then
  bin="$1"
else
  cargo build -q --bin ferroflow
  bin="${CARGO_TARGET_DIR:-target}/debug/ferroflow"
fi
seconds="${2:-60}"
cargo build -q --example ad_click_report
report="${CARGO_TARGET_DIR:-target}/debug/examples/ad_click_report"
export FERROFLOW_DATA_DIR="$here/out/.ferroflow"
rm -rf "$here/out"
mkdir -p "$FERROFLOW_DATA_DIR"

"$bin" scheduler > "$here/out/scheduler.log" 2>&1 &
sched=$!
trap 'kill $sched 2>/dev/null || true' EXIT
until grep -q "scheduler running" "$here/out/scheduler.log"; do
  kill -0 $sched 2>/dev/null || { cat "$here/out/scheduler.log"; exit 1; }
  sleep 0.1
done

"$bin" workflow submit "$here/workflow.yaml"
exec_name="$("$bin" workflow start ad_click_loop --project ads)"
echo "started $exec_name; running the loop for ${seconds}s"
sleep "$seconds"
"$bin" workflow stop "$exec_name" --project ads
"$bin" workflow wait "$exec_name" --project ads --timeout 1m

echo
echo "-- job executions"
"$bin" workflow jobs "$exec_name" --project ads
echo
"$report" --data-dir "$FERROFLOW_DATA_DIR" --project ads --model ctr \
  --scored "$here/out/scored" --chart "$here/out/loop.svg"
