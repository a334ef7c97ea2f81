//! KBinsDiscretizer: each feature to a bin index, with bins of equal width (`uniform`), equal
//! counts (`quantile`) or from 1-D k-means (`kmeans`).

use arrow_array::RecordBatch;
use serde_json::json;

use super::imputer::quantile_sample;
use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{
    nested_doubles, one_row, read_nested_doubles, training_vectors, vectors, with_columns,
};
use crate::vector::dense_column;

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new("numBins", ParamType::Int, json!(5), Validator::GtEq(2.0)),
        ParamSpec::new(
            "strategy",
            ParamType::String,
            json!("quantile"),
            Validator::OneOf(&["uniform", "quantile", "kmeans"]),
        ),
        ParamSpec::new(
            "subSamples",
            ParamType::Int,
            json!(200000),
            Validator::Gt(1.0),
        ),
    ]
}

/// The estimator: `inputCol`, `outputCol`, `numBins` (5), `strategy` (quantile),
/// `subSamples`.
#[derive(Debug, Clone)]
pub struct KBinsDiscretizer {
    params: Params,
}

impl Default for KBinsDiscretizer {
    fn default() -> Self {
        KBinsDiscretizer {
            params: Params::new(specs()),
        }
    }
}

crate::impl_stage!(
    KBinsDiscretizer,
    "org.apache.flink.ml.feature.kbinsdiscretizer.KBinsDiscretizer"
);

/// Sorted distinct edges; fewer than two (a constant feature) give one bin over everything.
fn finish(mut edges: Vec<f64>) -> Vec<f64> {
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    if edges.len() < 2 {
        return vec![f64::NEG_INFINITY, f64::INFINITY];
    }
    edges
}

fn kmeans_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    // Start from the uniform bins' centres; Lloyd's iterations in one dimension.
    let mut c: Vec<f64> = (0..bins)
        .map(|i| min + (i as f64 + 0.5) * (max - min) / bins as f64)
        .collect();
    for _ in 0..100 {
        let mut sum = vec![0.0; bins];
        let mut n = vec![0usize; bins];
        for &x in sorted {
            let k = (0..bins)
                .min_by(|&a, &b| (x - c[a]).abs().total_cmp(&(x - c[b]).abs()))
                .expect("bins >= 2");
            sum[k] += x;
            n[k] += 1;
        }
        let next: Vec<f64> = (0..bins)
            .map(|k| if n[k] > 0 { sum[k] / n[k] as f64 } else { c[k] })
            .collect();
        if next == c {
            break;
        }
        c = next;
    }
    c.sort_by(f64::total_cmp);
    let mut edges = vec![min];
    edges.extend(c.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    edges.push(max);
    edges
}

impl Estimator for KBinsDiscretizer {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let bins = self.params.i64("numBins")? as usize;
        let strategy = self.params.str("strategy")?;
        let mut data = training_vectors(first(inputs)?, &self.params.str("inputCol")?)?;
        data.truncate(self.params.i64("subSamples")? as usize);
        let dim = data[0].size();
        let mut edges = Vec::with_capacity(dim);
        for j in 0..dim {
            let mut col: Vec<f64> = data.iter().map(|v| v.get(j)).collect();
            col.sort_by(f64::total_cmp);
            let (min, max) = (col[0], col[col.len() - 1]);
            edges.push(if min == max {
                finish(vec![min])
            } else {
                finish(match strategy.as_str() {
                    "uniform" => (0..=bins)
                        .map(|i| min + i as f64 * (max - min) / bins as f64)
                        .collect(),
                    "kmeans" => kmeans_edges(&col, bins),
                    _ => (0..=bins)
                        .map(|i| {
                            if i == 0 {
                                min
                            } else {
                                quantile_sample(&col, i as f64 / bins as f64)
                            }
                        })
                        .collect(),
                })
            });
        }
        Ok(Box::new(KBinsDiscretizerModel {
            params: self.params.clone(),
            edges,
        }))
    }
}

/// The fitted model: model data `binEdges` (one array of edges per feature).
#[derive(Debug, Clone)]
pub struct KBinsDiscretizerModel {
    params: Params,
    edges: Vec<Vec<f64>>,
}

impl Default for KBinsDiscretizerModel {
    fn default() -> Self {
        KBinsDiscretizerModel {
            params: Params::new(specs()),
            edges: Vec::new(),
        }
    }
}

crate::impl_stage!(
    KBinsDiscretizerModel,
    "org.apache.flink.ml.feature.kbinsdiscretizer.KBinsDiscretizerModel"
);

/// Bin of `x`: below the first edge the first bin, at or above the last edge the last.
fn bin(edges: &[f64], x: f64) -> usize {
    let last = edges.len() - 2;
    edges
        .partition_point(|&e| e <= x)
        .saturating_sub(1)
        .min(last)
}

impl AlgoOperator for KBinsDiscretizerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            let Some(v) = v else {
                out.push(None);
                continue;
            };
            if v.size() != self.edges.len() {
                return Err(MlError::Row {
                    row,
                    message: format!(
                        "column '{input}': vector of size {}, the model has {}",
                        v.size(),
                        self.edges.len()
                    ),
                });
            }
            out.push(Some(
                (0..v.size())
                    .map(|j| bin(&self.edges[j], v.get(j)) as f64)
                    .collect(),
            ));
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, dense_column(&out))],
        )?])
    }
}

impl Model for KBinsDiscretizerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![one_row(vec![(
            "binEdges",
            nested_doubles(&self.edges),
        )])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        self.edges = read_nested_doubles(first(data)?, "binEdges")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::bin;

    #[test]
    fn values_outside_the_edges_go_to_the_end_bins() {
        let e = [1.0, 5.0, 9.0, 13.0];
        assert_eq!(bin(&e, -1.0), 0);
        assert_eq!(bin(&e, 5.0), 1);
        assert_eq!(bin(&e, 13.0), 2);
        assert_eq!(bin(&e, 15.0), 2);
        assert_eq!(bin(&[f64::NEG_INFINITY, f64::INFINITY], 3.0), 0);
    }
}
