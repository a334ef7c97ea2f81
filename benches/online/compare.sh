#!/usr/bin/env bash
# Online learning side by side with River 0.26 (and scikit-learn for k-means), same rows, one
# run. Usage: bash benches/online/compare.sh        (needs: cargo build --release --bin ferroflow)
#  1. progressive validation (score each row, then learn it) on Phishing, Shuttle and a
#     200 000 x 20 synthetic stream: River's StandardScaler | LogisticRegression(FTRLProximal(
#     alpha .1, beta 1, l1 0, l2 1)) against `ferroflow ml progressive` with VectorAssembler |
#     OnlineStandardScaler(CountTumblingWindows 1, withMean) | VectorAssembler(+ bias column) |
#     OnlineLogisticRegression(globalBatchSize 1, alpha .1, beta 1, reg 1, elasticNet 0):
#     ROC AUC of both, and rows/s (ours: the whole command, CSV in and JSON lines out, then
#     Parquet in and out; River: its loop over rows already in memory).
#  2. OnlineKMeans (k 10, globalBatchSize 1024, decayFactor 1) via `ferroflow ml fit-online`
#     against MiniBatchKMeans.partial_fit (from the same initial centroids: the first row of
#     each blob) and River's cluster.KMeans (its own initialisation): inertia of the final
#     centroids over all rows, and rows/s.
set -euo pipefail
cd "$(dirname "$0")/../.."
py="$(bash scripts/setup-python.sh online)"
target="${CARGO_TARGET_DIR:-target}"
bin="${FERROFLOW_BIN:-$target/release/ferroflow}"
[[ -x $bin ]] || { echo "build it first: cargo build --release --bin ferroflow" >&2; exit 1; }
data="${FERROFLOW_CACHE:-$HOME/.cache/ferroflow}/bench-online"
[[ -f $data/blobs.csv ]] || "$py" benches/online/river_peer.py data "$data"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
timed5() { # command... -> the median wall time of five runs, in seconds
  local ts=() t0 t1
  for _ in 1 2 3 4 5; do
    t0=$(now); "$@" 2>/dev/null; t1=$(now)
    ts+=("$(python3 -c "print($t1 - $t0)")")
  done
  printf '%s\n' "${ts[@]}" | sort -g | sed -n 3p
}
stage() { # dim -> the pipeline's JSON
  python3 - "$1" <<'PY'
import json, sys
d = int(sys.argv[1])
feats = [f"f{i}" for i in range(d)]
print(json.dumps({"className": "Pipeline", "stages": [
  {"className": "org.apache.flink.ml.feature.vectorassembler.VectorAssembler",
   "paramMap": {"inputCols": feats, "outputCol": "raw", "inputSizes": [1] * d}},
  {"className": "org.apache.flink.ml.feature.standardscaler.OnlineStandardScaler",
   "paramMap": {"inputCol": "raw", "outputCol": "scaled", "withMean": True,
                "windows": {"class": "org.apache.flink.ml.common.window.CountTumblingWindows", "size": 1}}},
  {"className": "org.apache.flink.ml.feature.vectorassembler.VectorAssembler",
   "paramMap": {"inputCols": ["scaled", "bias"], "outputCol": "features", "inputSizes": [d, 1]}},
  {"className": "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression",
   "paramMap": {"featuresCol": "features", "labelCol": "label", "globalBatchSize": 1,
                "alpha": 0.1, "beta": 1.0, "reg": 1.0, "elasticNet": 0.0,
                "initialModelData": {"coefficient": {"values": [0.0] * (d + 1)}, "modelVersion": 0}}},
]}))
PY
}

echo "== progressive validation (ROC AUC; rows/s)"
for name in phishing shuttle synthetic; do
  csv="$data/$name.csv"
  dim=$(head -1 "$csv" | tr ',' '\n' | grep -c '^f')
  stage "$dim" >"$work/$name.json"
  # The contract's formats (CSV in, JSON lines out), then Parquet in and out; five runs
  # each, the median time of the whole command.
  csv_s=$(timed5 "$bin" ml progressive --stage "$work/$name.json" --input "$csv" --output "$work/$name.jsonl")
  pq_s=$(timed5 "$bin" ml progressive --stage "$work/$name.json" --input "$data/$name.parquet" --output "$work/$name.parquet")
  r=$("$py" benches/online/river_peer.py progressive "$csv" "$work/$name.jsonl" "$work/$name.parquet")
  python3 - "$name" "$r" "$csv_s" "$pq_s" <<'PY'
import json, sys
name, r = sys.argv[1], json.loads(sys.argv[2])
csv_s, pq_s = float(sys.argv[3]), float(sys.argv[4])
n = r["rows"]
river_s = r["river_seconds"]
print(f"{name}: {n} rows; ROC AUC ferroflow {r['ours_auc']:.4f} (Parquet run "
      f"{r['ours_parquet_auc']:.4f}), River {r['river_auc']:.4f} "
      f"(diff {r['ours_auc'] - r['river_auc']:+.4f})")
print(f"  River {n / river_s:,.0f} rows/s (its loop over rows in memory, median of 3: {river_s:.3f} s)")
print(f"  ferroflow CSV -> JSON lines: {n / csv_s:,.0f} rows/s (whole command, median of 5: "
      f"{csv_s:.3f} s); {river_s / csv_s:.1f}x River")
print(f"  ferroflow Parquet -> Parquet: {n / pq_s:,.0f} rows/s (whole command, median of 5: "
      f"{pq_s:.3f} s); {river_s / pq_s:.1f}x River")
PY
done

echo "== OnlineKMeans (k 10, batches of 1024, decay 1) vs MiniBatchKMeans and River KMeans"
python3 - <<'PY' >"$work/km.json"
import json
print(json.dumps({"className": "org.apache.flink.ml.clustering.kmeans.OnlineKMeans",
  "paramMap": {"featuresCol": "features", "k": 10, "globalBatchSize": 1024, "decayFactor": 1.0}}))
PY
# The initial centroids: the first row of each of the 10 blobs (the `label` column), the
# same for MiniBatchKMeans; River's KMeans draws its own.
python3 - "$data/blobs.csv" "$work" <<'PY'
import csv, json, sys
src, work = sys.argv[1], sys.argv[2]
with open(src) as f:
    r = csv.reader(f)
    header = next(r)
    idx = [i for i, h in enumerate(header) if h.startswith("f")]
    label = header.index("label")
    seen = {}
    for row in r:
        seen.setdefault(row[label], [float(row[i]) for i in idx])
        if len(seen) == 10:
            break
    first = [seen[k] for k in sorted(seen, key=float)]
with open(f"{work}/km-init.jsonl", "w") as f:
    f.write(json.dumps({"centroids": first, "weights": [1.0] * 10}) + "\n")
PY
t0=$(now)
"$bin" ml fit-online --stage "$work/km.json" --input "$data/blobs.parquet" \
  --model-data "$work/km-init.jsonl" --model-data-output "$work/km-versions.jsonl"
t1=$(now)
r=$("$py" benches/online/river_peer.py kmeans "$data/blobs.csv" 10 1024 "$work/km-versions.jsonl")
python3 - "$r" "$t0" "$t1" <<'PY'
import json, sys
r, ours = json.loads(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2])
n = r["rows"]
print(f"{n} rows x 20: inertia ferroflow {r['ours_inertia']:.6g}, MiniBatchKMeans {r['sklearn_inertia']:.6g}, "
      f"River {r['river_inertia']:.6g} (initial centroids {r['init_inertia']:.6g})")
print(f"  ferroflow {n / ours:,.0f} rows/s (whole command: Parquet in, {r['ours_versions']} versions "
      f"out as JSON lines, {ours:.3f} s); MiniBatchKMeans.partial_fit {n / r['sklearn_seconds']:,.0f} rows/s "
      f"(rows in memory); River {n / r['river_seconds']:,.0f} rows/s (rows in memory)")
PY
