"""The River and scikit-learn side of benches/online/compare.sh.

  data DIR                 writes the benchmark inputs as CSV (features f0.., a constant `bias`
                           column, `label`): phishing.csv and shuttle.csv from the datasets in
                           River's wheel, synthetic.csv (200 000 x 20) and blobs.csv (k-means);
                           the same as Parquet (blobs.parquet: one `features` vector column)
  progressive CSV PRED [PRED.parquet]
                           River's progressive validation (predict, then learn, row by row);
                           PRED is our `ml progressive` output (and PRED.parquet the same run
                           from Parquet): prints the ROC AUCs and River's time as JSON
  kmeans CSV K BATCH VERSIONS
                           scikit-learn's MiniBatchKMeans.partial_fit and River's cluster.KMeans
                           on the same rows (MiniBatchKMeans from the centroids ours starts
                           from: the first row of each blob); VERSIONS is our
                           `ml fit-online` output, scored with the same inertia
"""
import csv
import json
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score


def write_csv(path, x, y):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(x.shape[1])] + ["bias", "label"])
        for row, label in zip(x, y):
            w.writerow([repr(float(v)) for v in row] + ["1.0", repr(float(label))])


def read_csv(path):
    with open(path) as f:
        r = csv.reader(f)
        header = next(r)
        rows = np.array([[float(v) for v in row] for row in r])
    feats = [i for i, h in enumerate(header) if h.startswith("f")]
    return rows[:, feats], rows[:, header.index("label")]


def data(out):
    import os

    from river import datasets

    os.makedirs(out, exist_ok=True)
    for name, ds in (("phishing", datasets.Phishing()), ("shuttle", datasets.Shuttle())):
        xs, ys = [], []
        for x, y in ds:
            xs.append([float(v) for v in x.values()])
            ys.append(1.0 if y else 0.0)
        write_csv(f"{out}/{name}.csv", np.array(xs), np.array(ys))
    rng = np.random.default_rng(7)
    n, d = 200_000, 20
    w = rng.normal(size=d)
    x = rng.normal(loc=3.0, scale=2.0, size=(n, d))
    y = (((x - 3.0) / 2.0) @ w + rng.logistic(size=n) > 0).astype(float)
    write_csv(f"{out}/synthetic.csv", x, y)
    centers = rng.normal(scale=8.0, size=(10, d))
    labels = rng.integers(0, 10, size=n)
    blobs = centers[labels] + rng.normal(size=(n, d))
    write_csv(f"{out}/blobs.csv", blobs, labels)
    # The same rows as Parquet (doubles as written in the CSV, so both inputs hold the same
    # numbers), and the blobs as one vector column for OnlineKMeans.
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    for name in ("phishing", "shuttle", "synthetic"):
        t = pacsv.read_csv(f"{out}/{name}.csv")
        t = t.cast(pa.schema([pa.field(c, pa.float64()) for c in t.column_names]))
        pq.write_table(t, f"{out}/{name}.parquet")
    x, _ = read_csv(f"{out}/blobs.csv")
    pq.write_table(
        pa.table({"features": pa.array(list(x), type=pa.list_(pa.float64()))}),
        f"{out}/blobs.parquet",
    )


def progressive(path, pred_path, parquet_path=None):
    from river import linear_model, optim, preprocessing

    x, y = read_csv(path)
    rows = [{f"f{i}": v for i, v in enumerate(r)} for r in x.tolist()]
    labels = [bool(v) for v in y]
    # Three runs from a fresh model each; the median time (the scores are the same each run).
    times = []
    for _ in range(3):
        model = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.FTRLProximal(alpha=0.1, beta=1.0, l1=0.0, l2=1.0)
        )
        t = time.perf_counter()
        scores = []
        for xi, yi in zip(rows, labels):
            scores.append(model.predict_proba_one(xi).get(True, 0.0))
            model.learn_one(xi, yi)
        times.append(time.perf_counter() - t)
    seconds = sorted(times)[1]
    out = {"rows": len(labels), "river_seconds": seconds, "river_auc": roc_auc_score(y, scores)}
    for key, p in (("ours", pred_path), ("ours_parquet", parquet_path)):
        if p is None:
            continue
        ours, versions = read_predictions(p)
        assert len(ours) == len(labels), f"{p}: {len(ours)} rows, input {len(labels)}"
        out[f"{key}_auc"] = roc_auc_score(y, ours)
        out[f"{key}_last_version"] = versions[-1]
    print(json.dumps(out))


def read_predictions(path):
    """P(label) and model version per row of our `ml progressive` output (JSON lines or
    Parquet)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=["rawPrediction", "modelVersion"])
        raw = t.column("rawPrediction").to_pylist()
        return [r[1] if r else 0.5 for r in raw], t.column("modelVersion").to_pylist()
    ours, versions = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            ours.append(r["rawPrediction"][1] if r["rawPrediction"] else 0.5)
            versions.append(r["modelVersion"])
    return ours, versions


def inertia(x, centroids):
    d = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return float(d.min(axis=1).sum())


def kmeans(path, k, batch, versions_path):
    from river import cluster
    from sklearn.cluster import MiniBatchKMeans

    x, label = read_csv(path)
    # The first row of each blob, in label order (as compare.sh gives ferroflow).
    firsts = {}
    for row, lab in zip(x, label):
        firsts.setdefault(lab, row)
        if len(firsts) == k:
            break
    init = np.array([firsts[lab] for lab in sorted(firsts)])
    t = time.perf_counter()
    mb = MiniBatchKMeans(n_clusters=k, init=init, n_init=1, batch_size=batch)
    for start in range(0, len(x) - len(x) % batch, batch):
        mb.partial_fit(x[start:start + batch])
    sk_seconds = time.perf_counter() - t

    rows = [{i: v for i, v in enumerate(r)} for r in x.tolist()]
    rk = cluster.KMeans(n_clusters=k, halflife=0.5, seed=0)
    t = time.perf_counter()
    for r in rows:
        rk.learn_one(r)
    river_seconds = time.perf_counter() - t
    river_centroids = np.array([[c[i] for i in range(x.shape[1])] for c in rk.centers.values()])

    last = None
    with open(versions_path) as f:
        for line in f:
            last = json.loads(line)
    ours = np.array([c["values"] if isinstance(c, dict) else c for c in last["centroids"]])
    print(json.dumps({
        "rows": len(x),
        "sklearn_seconds": sk_seconds,
        "sklearn_inertia": inertia(x, mb.cluster_centers_),
        "river_seconds": river_seconds,
        "river_inertia": inertia(x, river_centroids),
        "ours_inertia": inertia(x, ours),
        "ours_versions": last["modelVersion"] if "modelVersion" in last else None,
        "init_inertia": inertia(x, init),
    }))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "data":
        data(sys.argv[2])
    elif cmd == "progressive":
        progressive(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif cmd == "kmeans":
        kmeans(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        sys.exit(f"unknown command {cmd}")
