//! KBinsDiscretizer: each feature to a bin index, with bins of equal width (`uniform`), equal
//! counts (`quantile`) or from 1-D k-means (`kmeans`).

use arrow_array::RecordBatch;
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
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

const CLASS: &str = "org.apache.flink.ml.feature.kbinsdiscretizer.KBinsDiscretizer";

crate::stage! {
    /// The estimator: `inputCol`, `outputCol`, `numBins` (5), `strategy` (quantile),
    /// `subSamples`.
    pub struct KBinsDiscretizer(CLASS, specs()) {}
}

/// Edges `min, min + w, min + 2w, ...` added up as Flink ML does (not `min + i * w`, which
/// rounds differently).
fn uniform_edges(min: f64, max: f64, bins: usize) -> Vec<f64> {
    let width = (max - min) / bins as f64;
    let mut edges = Vec::with_capacity(bins + 1);
    edges.push(min);
    for i in 1..=bins {
        edges.push(edges[i - 1] + width);
    }
    edges
}

/// Flink ML's quantile edges over the sorted sample: every `n / bins`-th value and the
/// maximum (all values when there are at most `bins`), then bins of zero width widened: an
/// edge repeated is kept twice, and the right one of two equal edges becomes the mean of
/// its neighbours (the left one, for the last two).
fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let n = sorted.len();
    let picked: Vec<f64> = if n > bins {
        let width = n as f64 / bins as f64;
        (0..bins)
            .map(|b| sorted[(b as f64 * width) as usize])
            .chain(std::iter::once(sorted[n - 1]))
            .collect()
    } else {
        sorted.to_vec()
    };
    let mut edges: Vec<f64> = Vec::with_capacity(picked.len());
    for run in picked.chunk_by(|a, b| a == b) {
        edges.push(run[0]);
        if run.len() > 1 {
            edges.push(run[0]);
        }
    }
    let last = edges.len() - 1;
    for i in 1..last {
        if edges[i] == edges[i - 1] {
            edges[i] = (edges[i + 1] + edges[i - 1]) / 2.0;
        }
    }
    if last >= 2 && edges[last] == edges[last - 1] {
        edges[last - 1] = (edges[last] + edges[last - 2]) / 2.0;
    }
    edges
}

/// Flink ML's 1-D k-means edges: uniform edges when there are at most `bins` distinct
/// values; else centroids started at every `n / bins`-th value, Lloyd's iterations (at most
/// 300, until the mean distance changes by at most 1e-4; an empty cluster's centroid
/// becomes NaN and is never chosen again, as in Java), and edges halfway between the
/// sorted centroids, between the minimum and the maximum.
fn kmeans_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let n = sorted.len();
    let (min, max) = (sorted[0], sorted[n - 1]);
    let distinct = sorted.chunk_by(|a, b| a == b).take(bins + 1).count();
    if distinct <= bins {
        return uniform_edges(min, max, bins);
    }
    let width = n as f64 / bins as f64;
    let mut c: Vec<f64> = (0..bins)
        .map(|k| sorted[(k as f64 * width) as usize])
        .collect();
    let (mut old_loss, mut change, mut iter) = (f64::MAX, f64::MAX, 0);
    let mut sum = vec![0.0; bins];
    let mut count = vec![0u64; bins];
    while iter < 300 && change > 1e-4 {
        let mut loss = 0.0;
        for &x in sorted {
            let (mut best, mut k) = ((c[0] - x).abs(), 0);
            for (i, ci) in c.iter().enumerate().skip(1) {
                let d = (ci - x).abs();
                if d < best {
                    best = d;
                    k = i;
                }
            }
            count[k] += 1;
            sum[k] += x;
            loss += best;
        }
        for k in 0..bins {
            c[k] = sum[k] / count[k] as f64;
        }
        loss /= n as f64;
        change = (loss - old_loss).abs();
        old_loss = loss;
        iter += 1;
        sum.fill(0.0);
        count.fill(0);
    }
    // Java's Arrays.sort: NaN last.
    c.sort_by(|a, b| {
        a.is_nan()
            .cmp(&b.is_nan())
            .then(a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal))
    });
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
        if strategy != "uniform" {
            // As Flink ML: `uniform` takes min and max over all rows; the other strategies
            // fit on `subSamples` rows drawn as its DataStreamUtils.sample draws them (one
            // partition), seeded with the class name's hash.
            let n = usize::try_from(self.params.i64("subSamples")?).unwrap_or(usize::MAX);
            data = crate::java::sample(&data, n, i64::from(crate::java::string_hash(CLASS)));
        }
        let dim = data[0].size();
        let mut edges = Vec::with_capacity(dim);
        for j in 0..dim {
            let mut col: Vec<f64> = data.iter().map(|v| v.get(j)).collect();
            col.sort_by(f64::total_cmp);
            let (min, max) = (col[0], col[col.len() - 1]);
            edges.push(if min == max {
                // A constant feature: one bin over everything.
                vec![f64::NEG_INFINITY, f64::INFINITY]
            } else {
                match strategy.as_str() {
                    "uniform" => uniform_edges(min, max, bins),
                    "kmeans" => kmeans_edges(&col, bins),
                    _ => quantile_edges(&col, bins),
                }
            });
        }
        Ok(Box::new(KBinsDiscretizerModel {
            params: self.params.clone(),
            edges,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `binEdges` (one array of edges per feature).
    pub struct KBinsDiscretizerModel("org.apache.flink.ml.feature.kbinsdiscretizer.KBinsDiscretizerModel", specs()) {
        edges: Vec<Vec<f64>>,
    }
}

/// Bin of `x` as Flink ML's model finds it: `Arrays.binarySearch` over the edges (an
/// exact hit is that edge's bin, else the bin left of the insertion point), clamped to the
/// first and last bins.
fn bin(edges: &[f64], x: f64) -> usize {
    let index = match java_binary_search(edges, x) {
        Ok(i) => i as i64,
        Err(insert) => insert as i64 - 1,
    };
    index.min(edges.len() as i64 - 2).max(0) as usize
}

/// `java.util.Arrays.binarySearch(double[], double)`: the same probes, so the same index
/// among equal edges; `-0.0 < 0.0` and NaN above everything, by `doubleToLongBits`.
fn java_binary_search(a: &[f64], key: f64) -> std::result::Result<usize, usize> {
    let bits = |x: f64| -> i64 {
        if x.is_nan() {
            0x7ff8_0000_0000_0000
        } else {
            x.to_bits() as i64
        }
    };
    let (mut low, mut high) = (0i64, a.len() as i64 - 1);
    while low <= high {
        let mid = (low + high) >> 1;
        let v = a[mid as usize];
        if v < key {
            low = mid + 1;
        } else if v > key {
            high = mid - 1;
        } else {
            let (m, k) = (bits(v), bits(key));
            match m.cmp(&k) {
                std::cmp::Ordering::Equal => return Ok(mid as usize),
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid - 1,
            }
        }
    }
    Err(low as usize)
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

    /// Edges fitted on the values 0..1000 (in order) with `strategy` and `subSamples` 100.
    fn fitted_edges(strategy: &str) -> Vec<f64> {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = (0..1000)
            .map(|i| {
                let mut m = serde_json::Map::new();
                m.insert("v".into(), serde_json::json!([i as f64]));
                m
            })
            .collect();
        let data = crate::io::rows_to_batch(&rows).unwrap();
        let meta = serde_json::json!({"className": "KBinsDiscretizer", "paramMap": {
            "inputCol": "v", "outputCol": "b", "numBins": 2, "strategy": strategy,
            "subSamples": 100}});
        let crate::AnyStage::Estimator(e) = crate::stage_from_json(&meta).unwrap() else {
            panic!("an estimator")
        };
        let model = e.fit(&[data]).unwrap();
        let table = model.model_data().unwrap();
        crate::table::read_nested_doubles(&table[0], "binEdges").unwrap()[0].clone()
    }

    #[test]
    fn sub_samples_are_drawn_as_flink_ml_draws_them_and_uniform_uses_every_row() {
        // Uniform: min and max of all 1000 rows, whatever subSamples says.
        assert_eq!(fitted_edges("uniform"), [0.0, 499.5, 999.0]);
        // Quantile: on 100 rows sampled over the whole input (java.util.Random seeded with
        // the class name's hash), not the first 100, whose median would be about 50.
        let q = fitted_edges("quantile");
        let mut sample = crate::java::sample(
            &(0..1000).map(f64::from).collect::<Vec<_>>(),
            100,
            i64::from(crate::java::string_hash(super::CLASS)),
        );
        sample.sort_by(f64::total_cmp);
        assert_eq!(q, super::quantile_edges(&sample, 2));
        assert!((300.0..700.0).contains(&q[1]), "{q:?}");
    }

    #[test]
    fn values_outside_the_edges_go_to_the_end_bins() {
        let e = [1.0, 5.0, 9.0, 13.0];
        assert_eq!(bin(&e, -1.0), 0);
        assert_eq!(bin(&e, 5.0), 1);
        assert_eq!(bin(&e, 13.0), 2);
        assert_eq!(bin(&e, 15.0), 2);
        assert_eq!(bin(&[f64::NEG_INFINITY, f64::INFINITY], 3.0), 0);
        // Equal edges: Java's binary search finds the first probe that hits.
        assert_eq!(bin(&[0.0, 1.0, 1.0, 2.0], 1.0), 1);
    }

    /// Flink ML's documented example: edges {0, 1, 1, 2, 2} become {0, 1, 1.5, 1.75, 2}.
    #[test]
    fn zero_width_bins_are_widened_as_flink_ml() {
        // Six values, five bins: picks sorted[(b * 1.2) as usize] and the maximum.
        let sorted = [0.0, 1.0, 1.0, 2.0, 2.0, 2.0];
        assert_eq!(
            super::quantile_edges(&sorted, 5),
            [0.0, 1.0, 1.5, 1.75, 2.0]
        );
        // At most `bins` values: all of them.
        assert_eq!(super::quantile_edges(&[1.0, 3.0], 5), [1.0, 3.0]);
    }

    #[test]
    fn kmeans_edges_fall_back_to_uniform_and_otherwise_split_clusters() {
        // Three distinct values, three bins: uniform edges, added up.
        assert_eq!(
            super::kmeans_edges(&[0.0, 0.0, 1.0, 3.0], 3),
            [0.0, 1.0, 2.0, 3.0]
        );
        // Centroids start at sorted[0], sorted[2], sorted[4] (7 / 3 apart) and settle at
        // 0.05, 0.2 and 7.5 (a tie stays with the lower centroid): a local optimum, as
        // Flink ML's Lloyd iterations from that start find.
        let sorted = [0.0, 0.1, 0.2, 5.0, 5.1, 9.9, 10.0];
        let e = super::kmeans_edges(&sorted, 3);
        let want = [0.0, (0.05 + 0.2) / 2.0, (0.2 + 7.5) / 2.0, 10.0];
        for (g, w) in e.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{e:?}");
        }
    }
}
