//! Gradient-boosted decision trees (GBDT) for classification (binary) and regression, with
//! Alink's names (`com.alibaba.alink.pipeline.classification.GbdtClassifier`,
//! `com.alibaba.alink.pipeline.regression.GbdtRegressor`; Flink ML has none) and Flink ML's
//! column conventions (`featuresCol` a vector column, `labelCol`, `predictionCol`, and for
//! the classifier `rawPredictionCol` = [1 - p, p]).
//!
//! Histogram trees as in XGBoost/LightGBM: every feature is cut into at most `maxBins`
//! quantile bins once; each tree is grown depth-wise to `maxDepth` on the gradients and
//! hessians of the loss (squared error; binary log loss), splitting where the gain
//! `G_l²/(H_l+λ) + G_r²/(H_r+λ) - G²/(H+λ)` is largest and both sides keep
//! `minSamplesPerLeaf` rows; leaves hold `-G/(H+λ)` times `learningRate`; the model starts
//! from the mean label (its log-odds for the classifier). `numTrees` trees.
//!
//! Model data: one row per tree node: `tree`, `node`, `feature` (-1 for a leaf),
//! `threshold` (go left when `x[feature] <= threshold`), `left`, `right`, `value`, and the
//! initial score in a row of tree -1.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::{column, doubles, first, vectors, with_columns};
use crate::vector::dense_column;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Classification,
    Regression,
}

fn specs(task: Task) -> Vec<ParamSpec> {
    let mut v = vec![
        common::features_col(),
        common::label_col(),
        common::prediction_col(),
        ParamSpec::new("numTrees", ParamType::Int, json!(100), Validator::Gt(0.0)),
        ParamSpec::new("maxDepth", ParamType::Int, json!(6), Validator::Gt(0.0)),
        ParamSpec::new(
            "learningRate",
            ParamType::Double,
            json!(0.3),
            Validator::Gt(0.0),
        ),
        ParamSpec::new(
            "minSamplesPerLeaf",
            ParamType::Int,
            json!(100),
            Validator::Gt(0.0),
        ),
        ParamSpec::new(
            "maxBins",
            ParamType::Int,
            json!(128),
            Validator::InRange(2.0, 65536.0),
        ),
        ParamSpec::new(
            "lambda",
            ParamType::Double,
            json!(1.0),
            Validator::GtEq(0.0),
        ),
    ];
    if task == Task::Classification {
        v.push(ParamSpec::new(
            "rawPredictionCol",
            ParamType::String,
            json!("rawPrediction"),
            Validator::Always,
        ));
    }
    v
}

/// One node of a tree: a split or a leaf.
#[derive(Debug, Clone, PartialEq)]
struct TreeNode {
    feature: i64,
    threshold: f64,
    left: usize,
    right: usize,
    value: f64,
}

/// Bin upper edges per feature: quantiles of the training values.
fn bin_edges(x: &[f64], n: usize, dim: usize, max_bins: usize) -> Vec<Vec<f64>> {
    (0..dim)
        .map(|f| {
            let mut col: Vec<f64> = (0..n).map(|r| x[r * dim + f]).collect();
            col.sort_by(f64::total_cmp);
            col.dedup();
            if col.len() <= max_bins {
                return col;
            }
            let mut edges: Vec<f64> = (1..=max_bins)
                .map(|b| col[(b * col.len() / max_bins).min(col.len()) - 1])
                .collect();
            edges.dedup();
            edges
        })
        .collect()
}

fn bin_of(edges: &[f64], v: f64) -> usize {
    edges
        .partition_point(|e| *e < v)
        .min(edges.len().saturating_sub(1))
}

struct Grower<'a> {
    bins: &'a [u16],
    edges: &'a [Vec<f64>],
    dim: usize,
    grad: &'a [f64],
    hess: &'a [f64],
    lambda: f64,
    min_leaf: usize,
    max_depth: usize,
    rate: f64,
}

impl Grower<'_> {
    fn leaf(&self, rows: &[usize]) -> TreeNode {
        let g: f64 = rows.iter().map(|r| self.grad[*r]).sum();
        let h: f64 = rows.iter().map(|r| self.hess[*r]).sum();
        TreeNode {
            feature: -1,
            threshold: 0.0,
            left: 0,
            right: 0,
            value: -g / (h + self.lambda) * self.rate,
        }
    }

    /// Grow the subtree of `rows` into `nodes`; returns its root's index.
    fn grow(&self, rows: Vec<usize>, depth: usize, nodes: &mut Vec<TreeNode>) -> usize {
        let at = nodes.len();
        nodes.push(self.leaf(&rows));
        if depth >= self.max_depth || rows.len() < 2 * self.min_leaf {
            return at;
        }
        let (g_all, h_all): (f64, f64) = rows.iter().fold((0.0, 0.0), |(g, h), r| {
            (g + self.grad[*r], h + self.hess[*r])
        });
        let parent = g_all * g_all / (h_all + self.lambda);
        let mut best: Option<(f64, usize, usize)> = None; // gain, feature, bin
        for f in 0..self.dim {
            let nb = self.edges[f].len();
            if nb < 2 {
                continue;
            }
            let mut hist = vec![(0.0f64, 0.0f64, 0usize); nb];
            for &r in &rows {
                let b = self.bins[r * self.dim + f] as usize;
                hist[b].0 += self.grad[r];
                hist[b].1 += self.hess[r];
                hist[b].2 += 1;
            }
            let (mut gl, mut hl, mut nl) = (0.0, 0.0, 0);
            for (b, &(g, h, c)) in hist.iter().enumerate().take(nb - 1) {
                gl += g;
                hl += h;
                nl += c;
                let nr = rows.len() - nl;
                if nl < self.min_leaf || nr < self.min_leaf {
                    continue;
                }
                let (gr, hr) = (g_all - gl, h_all - hl);
                let gain = gl * gl / (hl + self.lambda) + gr * gr / (hr + self.lambda) - parent;
                if gain > 1e-12 && best.is_none_or(|(bg, _, _)| gain > bg) {
                    best = Some((gain, f, b));
                }
            }
        }
        let Some((_, f, b)) = best else { return at };
        let (l, r): (Vec<usize>, Vec<usize>) = rows
            .into_iter()
            .partition(|row| (self.bins[row * self.dim + f] as usize) <= b);
        let left = self.grow(l, depth + 1, nodes);
        let right = self.grow(r, depth + 1, nodes);
        nodes[at] = TreeNode {
            feature: f as i64,
            threshold: self.edges[f][b],
            left,
            right,
            value: 0.0,
        };
        at
    }
}

fn score(trees: &[Vec<TreeNode>], init: f64, x: &[f64]) -> f64 {
    let mut s = init;
    for t in trees {
        let mut n = 0;
        loop {
            let node = &t[n];
            if node.feature < 0 {
                s += node.value;
                break;
            }
            n = if x[node.feature as usize] <= node.threshold {
                node.left
            } else {
                node.right
            };
        }
    }
    s
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn fit(task: Task, p: &Params, inputs: &[RecordBatch]) -> Result<(f64, Vec<Vec<TreeNode>>)> {
    let batch = first(inputs)?;
    let (features_col, label_col) = (p.str("featuresCol")?, p.str("labelCol")?);
    let rows = vectors(batch, &features_col)?;
    let labels = doubles(batch, &label_col)?;
    let n = rows.len();
    if n == 0 {
        return Err(MlError::Invalid("the training table is empty".into()));
    }
    let mut dim = None;
    let mut x = Vec::new();
    let mut y = Vec::with_capacity(n);
    for (row, (v, l)) in rows.into_iter().zip(labels).enumerate() {
        let bad = |m: String| MlError::Row { row, message: m };
        let v = v.ok_or_else(|| bad(format!("column '{features_col}' is null")))?;
        if *dim.get_or_insert(v.size()) != v.size() {
            return Err(bad(format!(
                "column '{features_col}': vector of size {}, the first row's has {}",
                v.size(),
                dim.unwrap_or(0)
            )));
        }
        let dense = v.to_dense();
        if let Some(bad_v) = dense.iter().find(|x| !x.is_finite()) {
            return Err(bad(format!(
                "column '{features_col}': value {bad_v} is not a number"
            )));
        }
        x.extend(dense);
        let l = l.ok_or_else(|| bad(format!("column '{label_col}' is null")))?;
        if task == Task::Classification && l != 0.0 && l != 1.0 {
            return Err(bad(format!("label {l}: labels must be 0 or 1")));
        }
        y.push(l);
    }
    let dim = dim.unwrap_or(0);
    let edges = bin_edges(&x, n, dim, p.i64("maxBins")? as usize);
    let bins: Vec<u16> = (0..n * dim)
        .map(|i| bin_of(&edges[i % dim], x[i]) as u16)
        .collect();
    let mean = y.iter().sum::<f64>() / n as f64;
    let init = match task {
        Task::Regression => mean,
        Task::Classification => {
            let m = mean.clamp(1e-6, 1.0 - 1e-6);
            (m / (1.0 - m)).ln()
        }
    };
    let mut f = vec![init; n];
    let mut trees = Vec::new();
    let (mut grad, mut hess) = (vec![0.0; n], vec![1.0; n]);
    for _ in 0..p.i64("numTrees")? {
        for i in 0..n {
            match task {
                Task::Regression => grad[i] = f[i] - y[i],
                Task::Classification => {
                    let pr = sigmoid(f[i]);
                    grad[i] = pr - y[i];
                    hess[i] = (pr * (1.0 - pr)).max(1e-16);
                }
            }
        }
        let grower = Grower {
            bins: &bins,
            edges: &edges,
            dim,
            grad: &grad,
            hess: &hess,
            lambda: p.f64("lambda")?,
            min_leaf: p.i64("minSamplesPerLeaf")? as usize,
            max_depth: p.i64("maxDepth")? as usize,
            rate: p.f64("learningRate")?,
        };
        let mut nodes = Vec::new();
        grower.grow((0..n).collect(), 0, &mut nodes);
        for (i, fi) in f.iter_mut().enumerate() {
            *fi = score(
                std::slice::from_ref(&nodes),
                *fi,
                &x[i * dim..(i + 1) * dim],
            );
        }
        trees.push(nodes);
    }
    Ok((init, trees))
}

fn transform(
    task: Task,
    p: &Params,
    model: (f64, &[Vec<TreeNode>]),
    inputs: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let batch = first(inputs)?;
    let features_col = p.str("featuresCol")?;
    let dim = model
        .1
        .iter()
        .flatten()
        .map(|n| n.feature + 1)
        .max()
        .unwrap_or(0) as usize;
    let mut pred = Vec::with_capacity(batch.num_rows());
    let mut raw = Vec::with_capacity(batch.num_rows());
    for (row, v) in vectors(batch, &features_col)?.into_iter().enumerate() {
        let Some(v) = v else {
            pred.push(None);
            raw.push(None);
            continue;
        };
        if v.size() < dim {
            return Err(MlError::Row {
                row,
                message: format!(
                    "column '{features_col}': vector of size {}, the model reads feature {}",
                    v.size(),
                    dim - 1
                ),
            });
        }
        let s = score(model.1, model.0, &v.to_dense());
        match task {
            Task::Regression => pred.push(Some(s)),
            Task::Classification => {
                let pr = sigmoid(s);
                pred.push(Some(if pr >= 0.5 { 1.0 } else { 0.0 }));
                raw.push(Some(vec![1.0 - pr, pr]));
            }
        }
    }
    let mut cols = vec![(
        p.str("predictionCol")?,
        Arc::new(Float64Array::from(pred)) as ArrayRef,
    )];
    if task == Task::Classification {
        cols.push((p.str("rawPredictionCol")?, dense_column(&raw)));
    }
    Ok(vec![with_columns(batch, cols)?])
}

/// A model-data row: tree, node, feature, threshold, left, right, value.
type NodeRow = (i64, i64, i64, f64, i64, i64, f64);

fn model_data(init: f64, trees: &[Vec<TreeNode>]) -> Result<Vec<RecordBatch>> {
    let mut rows: Vec<NodeRow> = vec![(-1, 0, -1, 0.0, 0, 0, init)];
    for (t, nodes) in trees.iter().enumerate() {
        for (i, n) in nodes.iter().enumerate() {
            rows.push((
                t as i64,
                i as i64,
                n.feature,
                n.threshold,
                n.left as i64,
                n.right as i64,
                n.value,
            ));
        }
    }
    let ints = |f: fn(&NodeRow) -> i64| {
        Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let floats = |f: fn(&NodeRow) -> f64| {
        Arc::new(Float64Array::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    Ok(vec![RecordBatch::try_from_iter(vec![
        ("tree", ints(|r| r.0)),
        ("node", ints(|r| r.1)),
        ("feature", ints(|r| r.2)),
        ("threshold", floats(|r| r.3)),
        ("left", ints(|r| r.4)),
        ("right", ints(|r| r.5)),
        ("value", floats(|r| r.6)),
    ])?])
}

fn read_model(data: &[RecordBatch]) -> Result<(f64, Vec<Vec<TreeNode>>)> {
    let t = data
        .first()
        .ok_or_else(|| MlError::Invalid("no model data table".into()))?;
    let int = |name: &str| -> Result<Vec<i64>> {
        let c = arrow_cast::cast(column(t, name)?, &arrow_schema::DataType::Int64)?;
        use arrow_array::cast::AsArray;
        Ok(c.as_primitive::<arrow_array::types::Int64Type>()
            .iter()
            .map(|v| v.unwrap_or(-1))
            .collect())
    };
    let (tree, node, feature, left, right) = (
        int("tree")?,
        int("node")?,
        int("feature")?,
        int("left")?,
        int("right")?,
    );
    let (threshold, value) = (doubles(t, "threshold")?, doubles(t, "value")?);
    let mut init = 0.0;
    let mut trees: Vec<Vec<TreeNode>> = vec![];
    for i in 0..t.num_rows() {
        if tree[i] < 0 {
            init = value[i].unwrap_or(0.0);
            continue;
        }
        // A model of n rows has fewer than n trees and nodes per tree: larger (or negative)
        // indices are refused before anything is allocated for them.
        let rows = t.num_rows() as i64;
        if tree[i] >= rows || !(0..rows).contains(&node[i]) {
            return Err(MlError::Row {
                row: i,
                message: format!(
                    "model data: tree {} node {} is outside a model of {rows} rows",
                    tree[i], node[i]
                ),
            });
        }
        let (ti, ni) = (tree[i] as usize, node[i] as usize);
        if trees.len() <= ti {
            trees.resize(ti + 1, vec![]);
        }
        let nodes = &mut trees[ti];
        if nodes.len() <= ni {
            nodes.resize(
                ni + 1,
                TreeNode {
                    feature: -1,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    value: 0.0,
                },
            );
        }
        nodes[ni] = TreeNode {
            feature: feature[i],
            threshold: threshold[i].unwrap_or(0.0),
            left: left[i].max(0) as usize,
            right: right[i].max(0) as usize,
            value: value[i].unwrap_or(0.0),
        };
    }
    for (ti, nodes) in trees.iter().enumerate() {
        for (ni, n) in nodes.iter().enumerate() {
            // Nodes are stored parent first: a child's index is greater than its parent's,
            // which also rules out cycles (scoring would never end).
            let child_ok = |c: usize| c > ni && c < nodes.len();
            if n.feature >= 0 && !(child_ok(n.left) && child_ok(n.right)) {
                return Err(MlError::Invalid(format!(
                    "model data: tree {ti} node {ni}: a split must point at later nodes of the tree (left {}, right {}, {} nodes)",
                    n.left,
                    n.right,
                    nodes.len()
                )));
            }
        }
    }
    Ok((init, trees))
}

macro_rules! gbdt_stage {
    ($est:ident, $model:ident, $task:expr, $class:literal, $model_class:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $est {
            params: Params,
        }

        impl Default for $est {
            fn default() -> Self {
                $est {
                    params: Params::new(specs($task)),
                }
            }
        }

        crate::impl_stage!($est, $class);

        impl Estimator for $est {
            fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
                let (init, trees) = fit($task, &self.params, inputs)?;
                Ok(Box::new($model {
                    params: self.params.clone(),
                    init,
                    trees,
                }))
            }
        }

        #[doc = concat!("The fitted model of ", stringify!($est), ": its trees.")]
        #[derive(Debug, Clone)]
        pub struct $model {
            params: Params,
            init: f64,
            trees: Vec<Vec<TreeNode>>,
        }

        impl Default for $model {
            fn default() -> Self {
                $model {
                    params: Params::new(specs($task)),
                    init: 0.0,
                    trees: vec![],
                }
            }
        }

        crate::impl_stage!($model, $model_class);

        impl AlgoOperator for $model {
            fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
                transform($task, &self.params, (self.init, &self.trees), inputs)
            }
        }

        impl Model for $model {
            fn model_data(&self) -> Result<Vec<RecordBatch>> {
                model_data(self.init, &self.trees)
            }

            fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
                (self.init, self.trees) = read_model(data)?;
                Ok(())
            }
        }
    };
}

gbdt_stage!(
    GbdtClassifier,
    GbdtClassifierModel,
    Task::Classification,
    "com.alibaba.alink.pipeline.classification.GbdtClassifier",
    "com.alibaba.alink.pipeline.classification.GbdtClassificationModel",
    "GBDT binary classifier: `prediction` (0/1) and `rawPrediction` [1 - p, p]."
);

gbdt_stage!(
    GbdtRegressor,
    GbdtRegressorModel,
    Task::Regression,
    "com.alibaba.alink.pipeline.regression.GbdtRegressor",
    "com.alibaba.alink.pipeline.regression.GbdtRegressionModel",
    "GBDT regressor (squared error): `prediction`."
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Model data rows as a table (tree, node, feature, left, right).
    fn hostile(rows: &[(i64, i64, i64, i64, i64)]) -> Vec<RecordBatch> {
        let col = |f: fn(&(i64, i64, i64, i64, i64)) -> i64| {
            Arc::new(Int64Array::from(rows.iter().map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let zeros = Arc::new(Float64Array::from(vec![0.0; rows.len()])) as ArrayRef;
        vec![
            RecordBatch::try_from_iter(vec![
                ("tree", col(|r| r.0)),
                ("node", col(|r| r.1)),
                ("feature", col(|r| r.2)),
                ("threshold", zeros.clone()),
                ("left", col(|r| r.3)),
                ("right", col(|r| r.4)),
                ("value", zeros),
            ])
            .unwrap(),
        ]
    }

    #[test]
    fn hostile_model_data_is_refused_not_allocated_or_looped() {
        // A huge tree or node index would allocate without bound.
        for rows in [
            vec![(1 << 40, 0, -1, 0, 0)],
            vec![(0, 1 << 40, -1, 0, 0)],
            vec![(0, -5, -1, 0, 0)],
        ] {
            let e = read_model(&hostile(&rows)).unwrap_err().to_string();
            assert!(e.contains("outside a model of 1 rows"), "{e}");
        }
        // A split that points at itself or backwards would loop forever when scoring.
        for (l, r) in [(0, 1), (1, 0), (2, 3)] {
            let rows = [(0, 0, 0, l, r), (0, 1, -1, 0, 0)];
            let e = read_model(&hostile(&rows)).unwrap_err().to_string();
            assert!(e.contains("must point at later nodes"), "{e}");
        }
        let (_, trees) = read_model(&hostile(&[
            (0, 0, 0, 1, 2),
            (0, 1, -1, 0, 0),
            (0, 2, -1, 0, 0),
        ]))
        .unwrap();
        assert_eq!(trees[0].len(), 3);
    }

    fn table(x: Vec<Option<Vec<f64>>>, y: Vec<f64>) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("features", dense_column(&x)),
            ("label", Arc::new(Float64Array::from(y)) as ArrayRef),
        ])
        .unwrap()
    }

    /// y = sin(3 a) + b², which no linear model fits.
    fn curve(n: usize, offset: usize) -> RecordBatch {
        let (mut x, mut y) = (vec![], vec![]);
        for i in offset..offset + n {
            let a = ((i * 37) % 1000) as f64 / 1000.0;
            let b = ((i * 91) % 1000) as f64 / 1000.0 - 0.5;
            x.push(Some(vec![a, b, ((i * 13) % 7) as f64]));
            y.push((3.0 * a).sin() + b * b);
        }
        table(x, y)
    }

    #[test]
    fn regression_fits_a_curve_a_line_cannot() {
        let mut est = GbdtRegressor::default();
        est.params
            .set_all(
                json!({"numTrees": 60, "maxDepth": 4, "minSamplesPerLeaf": 5, "learningRate": 0.3})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        let model = est.fit(&[curve(800, 0)]).unwrap();
        let test = curve(300, 5000);
        let out = model.transform(std::slice::from_ref(&test)).unwrap();
        let (y, p) = (
            doubles(&out[0], "label").unwrap(),
            doubles(&out[0], "prediction").unwrap(),
        );
        let mse: f64 = y
            .iter()
            .zip(&p)
            .map(|(a, b)| (a.unwrap() - b.unwrap()).powi(2))
            .sum::<f64>()
            / 300.0;
        let mean = y.iter().map(|v| v.unwrap()).sum::<f64>() / 300.0;
        let var: f64 = y.iter().map(|v| (v.unwrap() - mean).powi(2)).sum::<f64>() / 300.0;
        assert!(mse < 0.02 * var, "held-out MSE {mse}, variance {var}");
        // Model data round trip.
        let mut back = GbdtRegressorModel {
            params: est.params.clone(),
            ..Default::default()
        };
        back.set_model_data(&model.model_data().unwrap()).unwrap();
        assert_eq!(back.transform(std::slice::from_ref(&test)).unwrap(), out);
    }

    #[test]
    fn classification_of_a_nonlinear_boundary_and_bad_labels() {
        let (mut x, mut y) = (vec![], vec![]);
        for i in 0..1000 {
            let a = ((i * 37) % 1000) as f64 / 500.0 - 1.0;
            let b = ((i * 91) % 1000) as f64 / 500.0 - 1.0;
            x.push(Some(vec![a, b]));
            y.push(if a * a + b * b < 0.5 { 1.0 } else { 0.0 }); // a disc
        }
        let data = table(x, y);
        let mut est = GbdtClassifier::default();
        est.params
            .set_all(
                json!({"numTrees": 40, "maxDepth": 4, "minSamplesPerLeaf": 5})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        let out = est
            .fit(std::slice::from_ref(&data))
            .unwrap()
            .transform(std::slice::from_ref(&data))
            .unwrap();
        let (y, p) = (
            doubles(&out[0], "label").unwrap(),
            doubles(&out[0], "prediction").unwrap(),
        );
        let acc = y.iter().zip(&p).filter(|(a, b)| a == b).count() as f64 / 1000.0;
        assert!(acc > 0.97, "accuracy {acc}");
        let bad = table(vec![Some(vec![0.0]), Some(vec![1.0])], vec![0.0, 2.0]);
        let e = GbdtClassifier::default()
            .fit(&[bad])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 1") && e.contains("labels must be 0 or 1"),
            "{e}"
        );
    }
}
