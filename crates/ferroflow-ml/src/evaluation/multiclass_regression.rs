//! MulticlassClassificationEvaluator (accuracy, weightedPrecision, weightedRecall, f1) and
//! RegressionEvaluator (rmse, mse, mae, r2), with Spark's metric names. Flink ML has neither;
//! they are ferroflow's, named `ferroflow.ml.evaluation.*` (short names work too).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::doubles;

fn specs(metrics: Value) -> Vec<ParamSpec> {
    vec![
        common::label_col(),
        common::prediction_col(),
        common::weight_col(),
        ParamSpec::new(
            "metricsNames",
            ParamType::StringArray,
            metrics,
            Validator::NonEmpty,
        ),
    ]
}

/// (label, prediction, weight) triples.
fn triples(p: &Params, inputs: &[RecordBatch]) -> Result<Vec<(f64, f64, f64)>> {
    let batch = crate::table::first(inputs)?;
    let labels = doubles(batch, &p.str("labelCol")?)?;
    let preds = doubles(batch, &p.str("predictionCol")?)?;
    let weights = match p.opt_str("weightCol")? {
        Some(w) => doubles(batch, &w)?,
        None => vec![Some(1.0); batch.num_rows()],
    };
    labels
        .into_iter()
        .zip(preds)
        .zip(weights)
        .enumerate()
        .map(|(row, ((l, q), w))| match (l, q) {
            (Some(l), Some(q)) => Ok((l, q, w.unwrap_or(1.0))),
            _ => Err(MlError::Row {
                row,
                message: "null label or prediction".into(),
            }),
        })
        .collect()
}

fn one_row(names: &[String], value: impl Fn(&str) -> f64) -> Result<RecordBatch> {
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(n, DataType::Float64, false))
        .collect();
    let cols: Vec<ArrayRef> = names
        .iter()
        .map(|n| Arc::new(Float64Array::from(vec![value(n)])) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

fn check(names: &[String], allowed: &[&str]) -> Result<()> {
    for n in names {
        if !allowed.contains(&n.as_str()) {
            return Err(MlError::param(
                "metricsNames",
                format!(
                    "'{n}' is not a metric (allowed values: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

const MULTICLASS: &[&str] = &["accuracy", "weightedPrecision", "weightedRecall", "f1"];
const REGRESSION: &[&str] = &["rmse", "mse", "mae", "r2"];

crate::stage! {
    /// Multiclass classification metrics; precision, recall and F1 weighted by label frequency.
    pub struct MulticlassClassificationEvaluator("ferroflow.ml.evaluation.MulticlassClassificationEvaluator", specs(json!(MULTICLASS))) {}
}

impl AlgoOperator for MulticlassClassificationEvaluator {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let names = self.params.strings("metricsNames")?;
        check(&names, MULTICLASS)?;
        let t = triples(&self.params, inputs)?;
        let key = |x: f64| x.to_bits();
        let (mut tp, mut label_w, mut pred_w): (
            BTreeMap<u64, f64>,
            BTreeMap<u64, f64>,
            BTreeMap<u64, f64>,
        ) = Default::default();
        let mut total = 0.0;
        for &(l, q, w) in &t {
            total += w;
            *label_w.entry(key(l)).or_default() += w;
            *pred_w.entry(key(q)).or_default() += w;
            if l == q {
                *tp.entry(key(l)).or_default() += w;
            }
        }
        let correct: f64 = tp.values().sum();
        let (mut wp, mut wr, mut wf) = (0.0, 0.0, 0.0);
        for (c, lw) in &label_w {
            let tpc = tp.get(c).copied().unwrap_or(0.0);
            let precision = pred_w
                .get(c)
                .map_or(0.0, |pw| if *pw > 0.0 { tpc / pw } else { 0.0 });
            let recall = tpc / lw;
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            let share = lw / total;
            wp += share * precision;
            wr += share * recall;
            wf += share * f1;
        }
        let accuracy = if total > 0.0 {
            correct / total
        } else {
            f64::NAN
        };
        Ok(vec![one_row(&names, |n| match n {
            "accuracy" => accuracy,
            "weightedPrecision" => wp,
            "weightedRecall" => wr,
            _ => wf,
        })?])
    }
}

crate::stage! {
    /// Regression metrics.
    pub struct RegressionEvaluator("ferroflow.ml.evaluation.RegressionEvaluator", specs(json!(REGRESSION))) {}
}

impl AlgoOperator for RegressionEvaluator {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let names = self.params.strings("metricsNames")?;
        check(&names, REGRESSION)?;
        let t = triples(&self.params, inputs)?;
        let w: f64 = t.iter().map(|x| x.2).sum();
        let mean = t.iter().map(|x| x.0 * x.2).sum::<f64>() / w;
        let mse = t.iter().map(|x| x.2 * (x.0 - x.1).powi(2)).sum::<f64>() / w;
        let mae = t.iter().map(|x| x.2 * (x.0 - x.1).abs()).sum::<f64>() / w;
        let var = t.iter().map(|x| x.2 * (x.0 - mean).powi(2)).sum::<f64>() / w;
        Ok(vec![one_row(&names, |n| match n {
            "rmse" => mse.sqrt(),
            "mse" => mse,
            "mae" => mae,
            _ => 1.0 - mse / var,
        })?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(l: &[f64], p: &[f64]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "label",
                Arc::new(Float64Array::from(l.to_vec())) as ArrayRef,
            ),
            (
                "prediction",
                Arc::new(Float64Array::from(p.to_vec())) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn value(b: &RecordBatch, n: &str) -> f64 {
        use arrow_array::cast::AsArray;
        b.column_by_name(n)
            .unwrap()
            .as_primitive::<arrow_array::types::Float64Type>()
            .value(0)
    }

    #[test]
    fn multiclass_metrics_by_hand() {
        // labels 0,0,1,1,2 ; predictions 0,1,1,1,0
        let out = MulticlassClassificationEvaluator::default()
            .transform(&[batch(
                &[0.0, 0.0, 1.0, 1.0, 2.0],
                &[0.0, 1.0, 1.0, 1.0, 0.0],
            )])
            .unwrap();
        assert!((value(&out[0], "accuracy") - 0.6).abs() < 1e-12);
        // precision: c0 1/2, c1 2/3, c2 0; recall: c0 1/2, c1 1, c2 0; weights .4 .4 .2
        assert!(
            (value(&out[0], "weightedPrecision") - (0.4 * 0.5 + 0.4 * 2.0 / 3.0)).abs() < 1e-12
        );
        assert!((value(&out[0], "weightedRecall") - 0.6).abs() < 1e-12);
        let f1 = 0.4 * 0.5 + 0.4 * (2.0 * (2.0 / 3.0) / (2.0 / 3.0 + 1.0));
        assert!((value(&out[0], "f1") - f1).abs() < 1e-12);
    }

    #[test]
    fn regression_metrics_by_hand() {
        let out = RegressionEvaluator::default()
            .transform(&[batch(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0])])
            .unwrap();
        assert!((value(&out[0], "mse") - 4.0 / 3.0).abs() < 1e-12);
        assert!((value(&out[0], "rmse") - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((value(&out[0], "mae") - 2.0 / 3.0).abs() < 1e-12);
        assert!((value(&out[0], "r2") - (1.0 - (4.0 / 3.0) / (2.0 / 3.0))).abs() < 1e-12);
    }
}
