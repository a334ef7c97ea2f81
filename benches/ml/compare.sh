#!/usr/bin/env bash
# LogisticRegression and KMeans fit on 1 M x 20 rows: ferroflow vs scikit-learn on the same
# rows in one run. Usage: bash benches/ml/compare.sh [rows]
set -euo pipefail
cd "$(dirname "$0")/../.."
rows="${1:-1000000}"
py="$(bash scripts/setup-python.sh)"
data="${FERROFLOW_CACHE:-$HOME/.cache/ferroflow}/bench-ml-$rows"
sk=$("$py" benches/ml/sklearn_peer.py "$data" "$rows" 20)
ours=$(FERROFLOW_BENCH_ML_DATA="$data" cargo bench -q --no-default-features --features ml --bench ml_fit 2>/dev/null | tail -n1)
python3 - "$ours" "$sk" <<'PY'
import json, sys
o, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"rows={o['rows']} dim=20, both cores available to both")
print(f"LogisticRegression: ferroflow {o['lr_seconds']:.2f} s (accuracy {o['lr_accuracy']:.4f}), "
      f"scikit-learn {s['lr_seconds']:.2f} s (accuracy {s['lr_accuracy']:.4f}); time ratio {o['lr_seconds']/s['lr_seconds']:.2f}")
print(f"KMeans k=10: ferroflow {o['kmeans_seconds']:.2f} s (inertia {o['kmeans_inertia']:.4g}), "
      f"scikit-learn {s['kmeans_seconds']:.2f} s (inertia {s['kmeans_inertia']:.4g}); time ratio {o['kmeans_seconds']/s['kmeans_seconds']:.2f}")
PY
