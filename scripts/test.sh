#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: nothing needs installing by hand.
# Set-up steps live in idempotent scripts under scripts/ (ONNX Runtime and libtorch from PyPI
# wheels, PostgreSQL from Debian, Apache Flink from PyPI), cached under deps/, ~/.cache/ferroflow
# or /tmp (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== native ML runtimes (ONNX Runtime, libtorch) from PyPI wheels, cached"
bash scripts/setup-runtimes.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== services the tests use (real servers on loopback)"
# PostgreSQL for the control-plane store's backend suite; stopped again when this script ends.
FERROFLOW_TEST_PG_URL="$(bash scripts/setup-postgres.sh)"
export FERROFLOW_TEST_PG_URL
trap 'bash scripts/setup-postgres.sh stop; bash scripts/flink-local.sh stop' EXIT
# A local Apache Flink 2.3 cluster (PyPI's apache-flink, Java 17) for the `flink` job type's
# tests; they fail, with its logs, when it cannot start.
bash scripts/flink-local.sh start

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

echo "== crate edges: what each layer must not pull in"
# `cargo tree -p` resolves features as a build of that package alone would.
free_of() {
  local pkg=$1; shift
  local deps
  deps=$(cargo tree -q -e normal -p "$pkg" --prefix none --format '{p}' | awk '{print $1}' | sort -u)
  for d in "$@"; do
    if grep -qx "$d" <<<"$deps"; then
      echo "$pkg depends on $d (see: cargo tree -e normal -p $pkg -i $d)" >&2
      exit 1
    fi
  done
}
free_of ferroflow-engine datafusion sqlx ort ferroflow-meta ferroflow-ml
free_of ferroflow-connectors datafusion sqlx ort ferroflow-meta ferroflow-ml
free_of ferroflow-ml datafusion sqlx ort ferroflow-meta
free_of ferroflow-sql sqlx ort ferroflow-meta ferroflow-ml
free_of ferroflow-jobspec sqlx ferroflow-meta ferroflow-ml

echo "== no module cycles inside a crate"
python3 scripts/module-cycles.py

echo "== the engine builds alone, without DataFusion"
cargo check -p ferroflow --no-default-features --lib --examples

echo "== the embedded example runs"
cargo run -q --no-default-features --example embedded
