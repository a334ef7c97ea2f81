"""The Python peer of benches/inference.rs: onnxruntime and torch called in a loop over the
same inputs in batches, as a Python service would. Prints one JSON object."""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
import torch

models, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = np.fromfile(f"{models}/inputs.f32", dtype=np.float32).reshape(-1, 64)
rows = x.shape[0]
torch.set_num_threads(1)
torch.set_num_interop_threads(1)


def measure(call):
    call(x[:batch])  # warm-up
    best = None
    lat = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, rows, batch):
            t = time.perf_counter()
            call(x[i:i + batch])
            lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    lat.sort()
    return {"rows_per_s": rows / best, "p50_us": lat[len(lat) // 2] * 1e6,
            "p99_us": lat[int(len(lat) * 0.99)] * 1e6}


opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(f"{models}/bench_mlp.onnx", opts, providers=["CPUExecutionProvider"])
onnx = measure(lambda b: sess.run(None, {"features": b}))
module = torch.jit.load(f"{models}/bench_mlp.pt").eval()


def torch_call(b):
    with torch.no_grad():
        return module(torch.from_numpy(b)).numpy()


tch = measure(torch_call)
print(json.dumps({"onnxruntime": onnx, "torch": tch}))
