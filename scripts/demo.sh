#!/usr/bin/env bash
# The main demo on embedded defaults: bundled files and models, no server. The only download
# is the native ML runtimes from PyPI (scripts/setup-runtimes.sh, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-runtimes.sh   # ONNX Runtime and libtorch from their PyPI wheels, cached
cargo build -q --bin ferroflow
bin="${CARGO_TARGET_DIR:-target}/debug/ferroflow"

echo "== The online-learning loop (examples/ad_click_loop, about a minute): simulated ad impressions"
echo "   stream into online FTRL training; each model version goes to the Model Center; an evaluation"
echo "   job scores it on the impressions after it and deploys it if its AUC >= 0.6; the serving job"
echo "   swaps to every deployed version without restarting. Then: versions, metrics, predictions."
bash examples/ad_click_loop/run.sh "$bin" 45

echo
echo "== 1. batch: clicks CSV -> filter -> 10 s event-time windows per user -> Parquet + top 5"
rm -rf examples/out
"$bin" run examples/clickstream.yaml

echo
echo "== 2. batch SQL over the Parquet the job wrote (DataFusion)"
"$bin" sql "SELECT user, count(*) AS windows, round(sum(revenue), 2) AS revenue FROM w GROUP BY user ORDER BY revenue DESC" \
  --table w=examples/out/revenue_per_user.parquet

echo
echo "== 3. streaming: an unbounded generator, streaming SQL windows, stopped after 3 s"
"$bin" run examples/generator_stream.yaml --duration 3s

echo
echo "== 4. embedded: a job built and run inside a Rust program"
cargo run -q --example embedded

echo
echo "== 5. control plane on the embedded SQLite store: a model version moves to DEPLOYED, events record it"
state=examples/out/.ferroflow
"$bin" models register ctr --description "click-through rate" --data-dir "$state" >/dev/null
"$bin" models create-version ctr --uri file://$PWD/examples/out/revenue_per_user.parquet \
  --flavor other --metric auc=0.91 --data-dir "$state" >/dev/null
"$bin" models stage ctr 1 validated --data-dir "$state" >/dev/null
"$bin" models stage ctr 1 deployed --data-dir "$state" >/dev/null
"$bin" events list --keys ctr --data-dir "$state"

echo
echo "== 6. inference: a bundled scikit-learn model (ONNX) scores iris flowers; predictions per species"
"$bin" run examples/score_iris.yaml
head -n 2 examples/out/iris_scored.jsonl

echo
echo "== 6b. online learning in one job: FTRL trained on a stream, each version scoring it as it arrives"
"$bin" run examples/online_learning.yaml --quiet | tail -n 10

echo
echo "== 7. training in the dataflow: a TorchScript model trained on one stream, served on another"
cargo run -q --no-default-features --features torch --example train_and_serve

echo
echo "== 8. workflow: train -> validate -> deploy -> predict, each job fired by a Model Center event"
bash examples/batch_train_predict/run.sh "$bin"
