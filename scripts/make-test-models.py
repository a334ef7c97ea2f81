#!/usr/bin/env python3
"""Makes the small models the inference tests use, with the real exporters, and the outputs
Python's runtimes give for them on fixed inputs.

Writes tests/models/:
  logreg_iris.onnx    scikit-learn LogisticRegression (skl2onnx, default ZipMap probabilities)
  forest_iris.onnx    scikit-learn RandomForestClassifier (skl2onnx, zipmap=False)
  mixed_inputs.onnx   scikit-learn pipeline over a string, an int64 and a float32 column
  linreg_double.onnx  scikit-learn LinearRegression over float64 input
  mlp.onnx            a small torch MLP (torch.onnx.export, dynamic batch axis)
  mlp.pt              the same MLP as TorchScript (torch.jit.script)
  mlp_v2.onnx/.pt     the same architecture with other weights (a second model version)
  linreg_train.pt     a TorchScript linear model with a `loss` method, for the training node
  expected.json       inputs and the outputs Python onnxruntime / torch gave for them
and the demo's bundled model and data: examples/models/iris_logreg.onnx, examples/data/iris.csv.

The model files are small and committed with this script, so the tests need no Python.
Run with scripts/setup-python.sh's venv:  .cache/pyenv/bin/python scripts/make-test-models.py
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort
import torch
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "models")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(7)
rng = np.random.default_rng(7)
expected = {}


def path(name):
    return os.path.join(OUT, name)


def floats(a):
    return [[float(x) for x in row] for row in np.asarray(a)]


# --- iris classifiers -------------------------------------------------------------------
iris = load_iris()
X = iris.data.astype(np.float32)
y = iris.target.astype(np.int64)
sample = X[::10]  # 15 rows, all three classes

lr = LogisticRegression(max_iter=500).fit(X, y)
onx = convert_sklearn(lr, initial_types=[("float_input", FloatTensorType([None, 4]))],
                      target_opset={"": 17, "ai.onnx.ml": 3})
open(path("logreg_iris.onnx"), "wb").write(onx.SerializeToString())
sess = ort.InferenceSession(path("logreg_iris.onnx"))
label, probs = sess.run(None, {"float_input": sample})
expected["logreg_iris"] = {
    "inputs": {"float_input": floats(sample)},
    "output_label": [int(v) for v in label],
    # ZipMap: one {class: probability} map per row; written in class order.
    "output_probability": [[float(m[k]) for k in sorted(m)] for m in probs],
}

forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(X, y)
onx = convert_sklearn(forest, initial_types=[("float_input", FloatTensorType([None, 4]))],
                      options={id(forest): {"zipmap": False}},
                      target_opset={"": 17, "ai.onnx.ml": 3})
open(path("forest_iris.onnx"), "wb").write(onx.SerializeToString())
sess = ort.InferenceSession(path("forest_iris.onnx"))
label, probs = sess.run(None, {"float_input": sample})
expected["forest_iris"] = {
    "inputs": {"float_input": floats(sample)},
    "label": [int(v) for v in label],
    "probabilities": floats(probs),
}

# --- a model over a string, an int64 and a float64 column --------------------------------
n = 200
colors = rng.choice(["red", "green", "blue"], size=n)
sizes = rng.integers(1, 10, size=n).astype(np.int64)
weights = rng.normal(50.0, 10.0, size=n)
target = ((colors == "red") ^ (sizes > 5)).astype(np.int64)
import pandas as pd  # scikit-learn's ColumnTransformer wants a frame with named columns

frame = pd.DataFrame({"color": colors, "size": sizes, "weight": weights})
pipe = Pipeline([
    ("features", ColumnTransformer([
        ("onehot", OneHotEncoder(), ["color"]),
        ("scale", StandardScaler(), ["size", "weight"]),
    ])),
    ("clf", LogisticRegression()),
]).fit(frame, target)
onx = convert_sklearn(
    pipe,
    initial_types=[("color", StringTensorType([None, 1])), ("size", Int64TensorType([None, 1])),
                   ("weight", FloatTensorType([None, 1]))],
    options={id(pipe.steps[-1][1]): {"zipmap": False}},
    target_opset={"": 17, "ai.onnx.ml": 3},
)
open(path("mixed_inputs.onnx"), "wb").write(onx.SerializeToString())
sess = ort.InferenceSession(path("mixed_inputs.onnx"))
k = 12
feeds = {
    "color": colors[:k].reshape(-1, 1).astype(object),
    "size": sizes[:k].reshape(-1, 1),
    "weight": weights[:k].reshape(-1, 1).astype(np.float32),
}
label, probs = sess.run(None, feeds)
expected["mixed_inputs"] = {
    "inputs": {"color": [str(c) for c in colors[:k]], "size": [int(s) for s in sizes[:k]],
               "weight": [float(w) for w in weights[:k]]},
    "label": [int(v) for v in label],
    "probabilities": floats(probs),
}


# --- a float64 regression model ---------------------------------------------------------
from sklearn.linear_model import LinearRegression

Xd = rng.normal(size=(100, 2))
yd = Xd @ np.array([1.5, -2.0]) + 0.25
reg = LinearRegression().fit(Xd, yd)
onx = convert_sklearn(reg, initial_types=[("input", DoubleTensorType([None, 2]))],
                      target_opset={"": 17, "ai.onnx.ml": 3})
open(path("linreg_double.onnx"), "wb").write(onx.SerializeToString())
sess = ort.InferenceSession(path("linreg_double.onnx"))
(pred,) = sess.run(None, {"input": Xd[:8]})
expected["linreg_double"] = {
    "inputs": {"input": floats(Xd[:8])},
    "variable": floats(pred),
}

# --- torch MLP: ONNX export and TorchScript -------------------------------------------------
class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

    def forward(self, features):
        return self.net(features)


mlp = Mlp().eval()
features = torch.randn(10, 8)
torch.onnx.export(mlp, (features,), path("mlp.onnx"), input_names=["features"],
                  output_names=["scores"], dynamic_axes={"features": {0: "batch"}, "scores": {0: "batch"}},
                  opset_version=17, dynamo=False)
scripted = torch.jit.script(mlp)
scripted.save(path("mlp.pt"))
sess = ort.InferenceSession(path("mlp.onnx"))
(onnx_scores,) = sess.run(None, {"features": features.numpy()})
with torch.no_grad():
    torch_scores = scripted(features).numpy()
# A second version of the same architecture (other weights), for hot-swap tests.
mlp2 = Mlp().eval()
torch.onnx.export(mlp2, (features,), path("mlp_v2.onnx"), input_names=["features"],
                  output_names=["scores"], dynamic_axes={"features": {0: "batch"}, "scores": {0: "batch"}},
                  opset_version=17, dynamo=False)
torch.jit.script(mlp2).save(path("mlp_v2.pt"))

expected["mlp"] = {
    "inputs": {"features": floats(features.numpy())},
    "onnx_scores": floats(onnx_scores),
    "torch_scores": floats(torch_scores),
}


# --- a TorchScript model to train: y = x . w + b, with its loss ----------------------------
class LinReg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, x):
        return self.linear(x).squeeze(-1)

    @torch.jit.export
    def loss(self, x, y):
        return torch.nn.functional.mse_loss(self.forward(x), y)


torch.jit.script(LinReg()).save(path("linreg_train.pt"))

# --- the demo's bundled model and data (examples/score_iris.yaml) ----------------------------
EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
os.makedirs(os.path.join(EXAMPLES, "models"), exist_ok=True)
with open(path("logreg_iris.onnx"), "rb") as src, \
        open(os.path.join(EXAMPLES, "models", "iris_logreg.onnx"), "wb") as dst:
    dst.write(src.read())
with open(os.path.join(EXAMPLES, "data", "iris.csv"), "w") as f:
    f.write("id,sepal_length,sepal_width,petal_length,petal_width,species\n")
    for i, (row, t) in enumerate(zip(iris.data, iris.target)):
        f.write(f"{i},{row[0]},{row[1]},{row[2]},{row[3]},{iris.target_names[t]}\n")

with open(path("expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
print("wrote", sorted(os.listdir(OUT)), file=sys.stderr)
