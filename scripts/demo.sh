#!/usr/bin/env bash
# The main demo on embedded defaults: bundled files, no server, no downloads.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q --bin ferroflow
bin="${CARGO_TARGET_DIR:-target}/debug/ferroflow"

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
