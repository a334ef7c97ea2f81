#!/usr/bin/env bash
# Inference benchmark: ferroflow's ONNX and TorchScript nodes vs the runtimes called directly
# (Rust) and vs Python's onnxruntime and torch, on the same model and inputs, in one run.
# Usage: bash benches/inference/compare.sh [batch rows, default 256]
set -euo pipefail
cd "$(dirname "$0")/../.."
batch="${1:-256}"
bash scripts/setup-runtimes.sh
py="$(bash scripts/setup-python.sh)"
models="${FERROFLOW_CACHE:-$HOME/.cache/ferroflow}/bench-models"
rows=262144
if [[ ! -f $models/inputs.f32 || $(stat -c %s "$models/inputs.f32") -ne $((rows * 64 * 4)) ]]; then
  "$py" benches/inference/make_bench_models.py "$models" "$rows" 2>/dev/null
fi
export FERROFLOW_BENCH_MODELS="$models" FERROFLOW_BENCH_BATCH="$batch"
rust=$(cargo bench -q --no-default-features --features torch --bench inference 2>/dev/null | tail -n1)
python=$("$py" benches/inference/python_peer.py "$models" "$batch" 5)
python3 - "$rust" "$python" <<'PY'
import json, sys
r, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"rows={r['rows']} batch={r['batch']} (one runtime thread everywhere)")
for k, peer in (("onnx", "onnxruntime"), ("torch", "torch")):
    x = r[k]
    print(f"{k}: node {x['node_rows_per_s']:,.0f} rows/s, raw loop {x['raw_rows_per_s']:,.0f}, "
          f"python {p[peer]['rows_per_s']:,.0f}")
    print(f"  node/raw = {x['node_vs_raw']:.3f}   node/python = {x['node_rows_per_s'] / p[peer]['rows_per_s']:.2f}")
    print(f"  call p50/p99 us: raw {x['raw_call_p50_us']:.0f}/{x['raw_call_p99_us']:.0f}, "
          f"python {p[peer]['p50_us']:.0f}/{p[peer]['p99_us']:.0f}; "
          f"node batch latency at half load {x['node_batch_latency_p50_us_at_half_load']:.0f}/"
          f"{x['node_batch_latency_p99_us_at_half_load']:.0f}")
a = r["onnx_adaptive"]["node_rows_per_s"]
print(f"onnx, node's adaptive batching (10 ms target) on the same 256-row batches: {a:,.0f} rows/s = "
      f"{a / p['onnxruntime']['rows_per_s']:.2f}x python, {a / r['onnx']['raw_rows_per_s']:.2f}x raw 256-row loop")
t = r["onnx_two_instances"]["node_rows_per_s"]
print(f"onnx, default deployment (2 instances, one per core): {t:,.0f} rows/s = "
      f"{t / p['onnxruntime']['rows_per_s']:.2f}x python's single loop")
c = r["onnx_input_copy"]
print(f"onnx input: zero-copy float32 vs float64 copied and cast: {c['zero_copy_vs_copy']:.3f}x "
      f"({c['node_rows_per_s']:,.0f} rows/s with the copy)")
for mode in ("swap_background", "swap_blocking"):
    s = r[mode]
    print(f"{mode}: {s['swaps']} swaps, {s['pause_us_per_swap']:.0f} us pause per swap")
PY
