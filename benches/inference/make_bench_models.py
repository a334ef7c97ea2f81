"""Writes the benchmark model (an MLP 64 -> 256 -> 256 -> 10) as ONNX and TorchScript, and
fixed inputs (float32 little-endian, rows x 64) that the Rust and Python sides both read."""
import os
import sys

import numpy as np
import torch

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 65536
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 10))

    def forward(self, features):
        return self.net(features)


m = Mlp().eval()
x = torch.randn(8, 64)
torch.onnx.export(m, (x,), os.path.join(out, "bench_mlp.onnx"), input_names=["features"],
                  output_names=["scores"],
                  dynamic_axes={"features": {0: "batch"}, "scores": {0: "batch"}},
                  opset_version=17, dynamo=False)
torch.jit.script(m).save(os.path.join(out, "bench_mlp.pt"))
m2 = Mlp().eval()  # other weights: the second version for the hot-swap measurement
torch.onnx.export(m2, (x,), os.path.join(out, "bench_mlp_v2.onnx"), input_names=["features"],
                  output_names=["scores"],
                  dynamic_axes={"features": {0: "batch"}, "scores": {0: "batch"}},
                  opset_version=17, dynamo=False)
rng = np.random.default_rng(1)
rng.standard_normal((rows, 64), dtype=np.float32).tofile(os.path.join(out, "inputs.f32"))
