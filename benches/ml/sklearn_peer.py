"""The scikit-learn side of benches/ml_fit.rs: makes the data (so both sides fit the same
rows), then fits LogisticRegression and KMeans and prints times and quality as JSON."""
import json
import os
import sys
import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression

out, rows, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(42)
if not os.path.exists(f"{out}/lr_x.f64"):
    w = rng.normal(size=dim)
    x = rng.normal(size=(rows, dim))
    y = ((x @ w + rng.normal(scale=0.5, size=rows)) > 0).astype(np.float64)
    x.tofile(f"{out}/lr_x.f64")
    y.tofile(f"{out}/lr_y.f64")
    centers = rng.normal(scale=10.0, size=(10, dim))
    labels = rng.integers(0, 10, size=rows)
    blobs = centers[labels] + rng.normal(size=(rows, dim))
    blobs.tofile(f"{out}/km_x.f64")
x = np.fromfile(f"{out}/lr_x.f64").reshape(rows, dim)
y = np.fromfile(f"{out}/lr_y.f64")
blobs = np.fromfile(f"{out}/km_x.f64").reshape(rows, dim)

result = {}
t = time.perf_counter()
lr = LogisticRegression(max_iter=100).fit(x, y)
result["lr_seconds"] = time.perf_counter() - t
result["lr_accuracy"] = float((lr.predict(x) == y).mean())

t = time.perf_counter()
km = KMeans(n_clusters=10, n_init=1, max_iter=20, random_state=0).fit(blobs)
result["kmeans_seconds"] = time.perf_counter() - t
result["kmeans_inertia"] = float(km.inertia_)
print(json.dumps(result))
