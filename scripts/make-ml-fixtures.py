#!/usr/bin/env python3
"""Writes the small scikit-learn fixtures the ML cross-check tests use (tests/ml_fixtures/)
and the metrics scikit-learn reaches on them, so the tests need no Python.

Run with scripts/setup-python.sh's venv:  $(bash scripts/setup-python.sh) scripts/make-ml-fixtures.py
"""
import json
import os

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_digits, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, adjusted_rand_score, roc_auc_score
from sklearn.naive_bayes import CategoricalNB
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ml_fixtures")
os.makedirs(OUT, exist_ok=True)


def write(name, X, y):
    with open(os.path.join(OUT, name), "w") as f:
        for row, label in zip(X, y):
            f.write(json.dumps({"features": [float(v) for v in row], "label": float(label)}) + "\n")


metrics = {}

iris = load_iris()
write("iris.jsonl", iris.data, iris.target)
km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(iris.data)
metrics["iris_kmeans_ari"] = adjusted_rand_score(iris.target, km.labels_)
metrics["iris_mean"] = iris.data.mean(axis=0).tolist()
metrics["iris_std_ddof1"] = iris.data.std(axis=0, ddof=1).tolist()
from sklearn.decomposition import PCA

pca = PCA(n_components=2).fit(iris.data)
metrics["iris_pca_explained_variance_ratio"] = pca.explained_variance_ratio_.tolist()
# Signs fixed as ferroflow fixes them: the largest loading of each component positive.
metrics["iris_pca_components"] = [
    (c if c[np.argmax(np.abs(c))] > 0 else -c).tolist() for c in pca.components_]

# Multinomial (softmax) logistic regression on standardised iris, 3 classes.
Xi = StandardScaler().fit_transform(iris.data)
mlr = LogisticRegression(max_iter=1000).fit(Xi, iris.target)
metrics["iris_multinomial_lr_accuracy"] = accuracy_score(iris.target, mlr.predict(Xi))

bc = load_breast_cancer()
write("breast_cancer.jsonl", bc.data, bc.target)
Xs = StandardScaler().fit_transform(bc.data)
lr = LogisticRegression(max_iter=1000).fit(Xs, bc.target)
metrics["breast_cancer_lr_accuracy"] = accuracy_score(bc.target, lr.predict(Xs))
metrics["breast_cancer_lr_auc"] = roc_auc_score(bc.target, lr.predict_proba(Xs)[:, 1])
svc = LinearSVC().fit(Xs, bc.target)
metrics["breast_cancer_svc_accuracy"] = accuracy_score(bc.target, svc.predict(Xs))
# Gradient boosting, trained on the first 400 rows, scored on the other 169.
from sklearn.ensemble import GradientBoostingClassifier

gb = GradientBoostingClassifier(random_state=0).fit(bc.data[:400], bc.target[:400])
metrics["breast_cancer_gbdt_holdout_accuracy"] = accuracy_score(bc.target[400:], gb.predict(bc.data[400:]))

digits = load_digits()
X, y = digits.data[:600], digits.target[:600]
write("digits.jsonl", X, y)
nb = CategoricalNB(min_categories=17).fit(X.astype(int), y)
metrics["digits_nb_accuracy"] = accuracy_score(y, nb.predict(X.astype(int)))

with open(os.path.join(OUT, "sklearn_metrics.json"), "w") as f:
    json.dump(metrics, f, indent=1)
print(json.dumps(metrics, indent=1))
