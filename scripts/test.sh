#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: nothing needs installing by hand.
# Set-up steps that later parts of ferroflow need (ONNX Runtime, libtorch, Flink) are added
# here as idempotent scripts cached under .cache/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

echo "== the engine builds alone, without DataFusion"
cargo check -p ferroflow --no-default-features --lib --examples

echo "== the embedded example runs"
cargo run -q --no-default-features --example embedded
