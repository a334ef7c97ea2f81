#!/usr/bin/env bash
# The online-learning loop (examples/ad_click_loop) as a benchmark, on the release binary:
#  1. at the example's rates (4000 impressions/s per job) for SECONDS (default 60): latency
#     from a version's MODEL_DEPLOYED event to the first prediction it makes (scored_at of
#     its first row), and from its registration (MODEL_GENERATED, so including the
#     evaluation on the 2000 impressions after it) to that prediction; p50 / p99;
#  2. with the rate limits removed, for SECONDS/2: impressions per second each job sustains
#     with all three running together on this machine.
# Usage: benches/loop/latency.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
cargo build -q --release --bin ferroflow
bin="${CARGO_TARGET_DIR:-target}/release/ferroflow"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# One run of the loop's workflow from $1 for $2 seconds in $work/$3; prints the execution.
run_loop() {
  local specs="$1" secs="$2" dir="$work/$3"
  mkdir -p "$dir/state"
  cp "$specs"/*.yaml "$dir/"
  export FERROFLOW_DATA_DIR="$dir/state"
  "$bin" scheduler > "$dir/scheduler.log" 2>&1 &
  until grep -q "scheduler running" "$dir/scheduler.log"; do sleep 0.1; done
  "$bin" workflow submit "$dir/workflow.yaml" > /dev/null
  local e
  e="$("$bin" workflow start ad_click_loop --project ads)"
  sleep "$secs"
  "$bin" workflow jobs "$e" --project ads --json > "$dir/jobs.json"
  "$bin" workflow stop "$e" --project ads > /dev/null
  "$bin" workflow wait "$e" --project ads --timeout 2m > /dev/null
  "$bin" events list --keys ctr --limit 100000 > "$dir/events.jsonl"
  kill %1 2>/dev/null || true
  wait 2>/dev/null || true
}

echo "== 1. latency at 4000 impressions/s per job, ${seconds}s"
run_loop examples/ad_click_loop "$seconds" paced
python3 - "$work/paced" <<'PY'
import csv, glob, json, os, sys
d = sys.argv[1]
gen, dep = {}, {}
for line in open(os.path.join(d, "events.jsonl")):
    e = json.loads(line)
    if e["event_type"] not in ("MODEL_GENERATED", "MODEL_DEPLOYED"):
        continue
    v = json.loads(e["value"])["version"]
    (gen if e["event_type"] == "MODEL_GENERATED" else dep).setdefault(v, e["create_time"])
first = {}
for f in glob.glob(os.path.join(d, "out/scored/part-*.csv")):
    for r in csv.DictReader(open(f)):
        v = int(r["served_by"])
        # scored_at is written as an ISO timestamp (UTC, ms)
        from datetime import datetime, timezone
        t = datetime.fromisoformat(r["scored_at"]).replace(tzinfo=timezone.utc).timestamp() * 1000
        first[v] = min(first.get(v, t), t)
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
dl = [first[v] - dep[v] for v in first if v in dep]
gl = [first[v] - gen[v] for v in first if v in gen]
print(f"versions registered {len(gen)}, deployed {len(dep)}, served {len(first)}")
print(f"DEPLOYED -> first prediction: p50 {pct(dl, 50):.0f} ms, p99 {pct(dl, 99):.0f} ms, max {max(dl):.0f} ms (n={len(dl)})")
print(f"registered -> first prediction (incl. evaluation): p50 {pct(gl, 50):.0f} ms, p99 {pct(gl, 99):.0f} ms (n={len(gl)})")
PY

half=$((seconds / 2))
echo "== 2. throughput: rate limits removed, ${half}s"
mkdir -p "$work/fast-specs"
cp examples/ad_click_loop/*.yaml "$work/fast-specs/"
sed -i '/^    rate: /d' "$work/fast-specs"/*.yaml
run_loop "$work/fast-specs" "$half" fast
python3 - "$work/fast/jobs.json" "$half" <<'PY'
import json, sys
jobs, secs = json.load(open(sys.argv[1])), float(sys.argv[2])
total = 0
for j in sorted(jobs, key=lambda j: j["job"]):
    n = j.get("external", {}).get("rows_in", 0)
    total += n
    print(f"{j['job']:>9}: {n / secs:,.0f} impressions/s")
print(f"    total: {total / secs:,.0f} impressions/s through the three jobs")
PY
