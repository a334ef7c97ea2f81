//! BinaryClassificationEvaluator: areaUnderROC, areaUnderPR, ks, areaUnderLorenz.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{Field, Schema};
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::{column, doubles, vectors};
use crate::vector::is_vector_type;

const METRICS: &[&str] = &["areaUnderROC", "areaUnderPR", "ks", "areaUnderLorenz"];

/// An AlgoOperator whose output is one row with a double column per requested metric, in
/// the order requested (`metricsNames`).
#[derive(Debug, Clone)]
pub struct BinaryClassificationEvaluator {
    params: Params,
}

impl Default for BinaryClassificationEvaluator {
    fn default() -> Self {
        BinaryClassificationEvaluator {
            params: Params::new(vec![
                common::label_col(),
                ParamSpec::new(
                    "rawPredictionCol",
                    ParamType::String,
                    json!("rawPrediction"),
                    Validator::Always,
                ),
                common::weight_col(),
                ParamSpec::new(
                    "metricsNames",
                    ParamType::StringArray,
                    json!(["areaUnderROC", "areaUnderPR"]),
                    Validator::NonEmpty,
                ),
            ]),
        }
    }
}

crate::impl_stage!(
    BinaryClassificationEvaluator,
    "org.apache.flink.ml.evaluation.binaryclassification.BinaryClassificationEvaluator"
);

/// The positive class's score of each row of `col`: element 1 of a vector (element 0 of a
/// one-element vector), or the value of a double column.
pub(crate) fn positive_scores(batch: &RecordBatch, col: &str) -> Result<Vec<Option<f64>>> {
    if is_vector_type(column(batch, col)?.data_type()) {
        Ok(vectors(batch, col)?
            .into_iter()
            .map(|v| v.map(|v| if v.size() > 1 { v.get(1) } else { v.get(0) }))
            .collect())
    } else {
        doubles(batch, col)
    }
}

/// The metrics of (score, label, weight) triples.
pub fn binary_metrics(points: &mut [(f64, bool, f64)]) -> [f64; 4] {
    // Descending score; tied scores form one threshold.
    points.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos: f64 = points.iter().filter(|p| p.1).map(|p| p.2).sum();
    let neg: f64 = points.iter().filter(|p| !p.1).map(|p| p.2).sum();
    let total = pos + neg;
    let (mut tp, mut fp) = (0.0, 0.0);
    let (mut roc, mut pr, mut ks, mut lorenz) = (0.0, 0.0, 0.0f64, 0.0);
    let (mut last_fpr, mut last_tpr, mut last_pos_rate) = (0.0, 0.0, 0.0);
    let mut last_recall = 0.0;
    let mut last_precision: Option<f64> = None;
    let mut i = 0;
    while i < points.len() {
        let score = points[i].0;
        while i < points.len() && points[i].0 == score {
            if points[i].1 {
                tp += points[i].2;
            } else {
                fp += points[i].2;
            }
            i += 1;
        }
        let tpr = if pos > 0.0 { tp / pos } else { 0.0 };
        let fpr = if neg > 0.0 { fp / neg } else { 0.0 };
        let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 1.0 };
        let pos_rate = (tp + fp) / total;
        roc += (fpr - last_fpr) * (tpr + last_tpr) / 2.0;
        // The PR curve starts at (0, precision at the first threshold).
        let prev_precision = *last_precision.get_or_insert(precision);
        pr += (tpr - last_recall) * (precision + prev_precision) / 2.0;
        ks = ks.max((tpr - fpr).abs());
        lorenz += (pos_rate - last_pos_rate) * (tpr + last_tpr) / 2.0;
        last_fpr = fpr;
        last_tpr = tpr;
        last_recall = tpr;
        last_precision = Some(precision);
        last_pos_rate = pos_rate;
    }
    [roc, pr, ks, lorenz]
}

impl AlgoOperator for BinaryClassificationEvaluator {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = crate::table::first(inputs)?;
        let names = self.params.strings("metricsNames")?;
        for n in &names {
            if !METRICS.contains(&n.as_str()) {
                return Err(MlError::param(
                    "metricsNames",
                    format!(
                        "'{n}' is not a metric (allowed values: {})",
                        METRICS.join(", ")
                    ),
                ));
            }
        }
        let label_col = self.params.str("labelCol")?;
        let raw_col = self.params.str("rawPredictionCol")?;
        let labels = doubles(batch, &label_col)?;
        let scores = positive_scores(batch, &raw_col)?;
        let weights = match self.params.opt_str("weightCol")? {
            Some(w) => doubles(batch, &w)?,
            None => vec![Some(1.0); batch.num_rows()],
        };
        let mut points = Vec::with_capacity(batch.num_rows());
        for (row, ((l, s), w)) in labels.into_iter().zip(scores).zip(weights).enumerate() {
            let (Some(l), Some(s)) = (l, s) else {
                return Err(MlError::Row {
                    row,
                    message: "null label or raw prediction".into(),
                });
            };
            points.push((s, l == 1.0, w.unwrap_or(1.0)));
        }
        let m = binary_metrics(&mut points);
        let value = |n: &str| m[METRICS.iter().position(|x| *x == n).expect("checked")];
        let fields: Vec<Field> = names
            .iter()
            .map(|n| Field::new(n, arrow_schema::DataType::Float64, false))
            .collect();
        let cols: Vec<ArrayRef> = names
            .iter()
            .map(|n| Arc::new(Float64Array::from(vec![value(n)])) as ArrayRef)
            .collect();
        Ok(vec![RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols,
        )?])
    }
}
