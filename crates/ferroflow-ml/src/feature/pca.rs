//! PCA (as Alink has it; Flink ML has none): project onto the `k` principal components of
//! the centred training data.

use arrow_array::RecordBatch;
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{
    model_vector, nested_doubles, one_row, read_nested_doubles, training_vectors, vectors,
    with_columns,
};
use crate::vector::dense_column;

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new("k", ParamType::Int, json!(2), Validator::Gt(0.0)),
    ]
}

crate::stage! {
    /// The estimator: `inputCol`, `outputCol`, `k` (components kept, default 2).
    pub struct Pca("com.alibaba.alink.pipeline.feature.PCA", specs()) {}
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix, by cyclic Jacobi rotations.
// Rotations touch two rows and two columns at once; indices say that more plainly.
#[allow(clippy::needless_range_loop)]
pub(crate) fn symmetric_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

impl Estimator for Pca {
    // The covariance fills a triangle and mirrors it: indices read plainest.
    #[allow(clippy::needless_range_loop)]
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let data = training_vectors(first(inputs)?, &self.params.str("inputCol")?)?;
        let (n, d) = (data.len(), data[0].size());
        let k = self.params.i64("k")? as usize;
        if k > d {
            return Err(MlError::param(
                "k",
                format!("{k} components of {d}-dimensional data"),
            ));
        }
        if n < 2 {
            return Err(MlError::Invalid("PCA needs at least two rows".into()));
        }
        let x: Vec<Vec<f64>> = data.iter().map(|v| v.to_dense()).collect();
        let mean: Vec<f64> = (0..d)
            .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        let mut cov = vec![vec![0.0; d]; d];
        for r in &x {
            for i in 0..d {
                for j in i..d {
                    cov[i][j] += (r[i] - mean[i]) * (r[j] - mean[j]);
                }
            }
        }
        for i in 0..d {
            for j in i..d {
                cov[i][j] /= (n - 1) as f64;
                cov[j][i] = cov[i][j];
            }
        }
        let (values, vectors) = symmetric_eigen(cov);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let total: f64 = values.iter().sum();
        let components: Vec<Vec<f64>> = order[..k]
            .iter()
            .map(|&c| {
                let mut comp: Vec<f64> = (0..d).map(|i| vectors[i][c]).collect();
                // A fixed sign: the largest loading positive.
                let big = comp
                    .iter()
                    .cloned()
                    .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
                if big < 0.0 {
                    comp.iter_mut().for_each(|x| *x = -*x);
                }
                comp
            })
            .collect();
        let explained = order[..k].iter().map(|&c| values[c] / total).collect();
        Ok(Box::new(PcaModel {
            params: self.params.clone(),
            mean,
            components,
            explained,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `mean`, `components` (one vector per component) and
    /// `explainedVarianceRatio`.
    pub struct PcaModel("com.alibaba.alink.pipeline.feature.PCAModel", specs()) {
        mean: Vec<f64>,
        components: Vec<Vec<f64>>,
        explained: Vec<f64>,
    }
}

impl AlgoOperator for PcaModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            let Some(v) = v else {
                out.push(None);
                continue;
            };
            if v.size() != self.mean.len() {
                return Err(MlError::Row {
                    row,
                    message: format!(
                        "column '{input}': vector of size {}, the model has {}",
                        v.size(),
                        self.mean.len()
                    ),
                });
            }
            let x = v.to_dense();
            out.push(Some(
                self.components
                    .iter()
                    .map(|c| {
                        c.iter()
                            .zip(&x)
                            .zip(&self.mean)
                            .map(|((w, a), m)| w * (a - m))
                            .sum()
                    })
                    .collect(),
            ));
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, dense_column(&out))],
        )?])
    }
}

impl Model for PcaModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![one_row(vec![
            ("mean", dense_column(&[Some(self.mean.clone())])),
            ("components", nested_doubles(&self.components)),
            (
                "explainedVarianceRatio",
                dense_column(&[Some(self.explained.clone())]),
            ),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        self.mean = model_vector(t, "mean")?;
        self.explained = model_vector(t, "explainedVarianceRatio")?;
        self.components = read_nested_doubles(t, "components")?;
        Ok(())
    }
}
