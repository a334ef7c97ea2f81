//! Imputer: replace missing values (null, NaN, `missingValue`) by the column's mean, median
//! or most frequent value.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, MapBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, Float64Array, RecordBatch};
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{column, doubles, one_row, with_columns};

const STRATEGIES: &[&str] = &["mean", "median", "most_frequent"];

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_cols(),
        common::output_cols(),
        ParamSpec::new(
            "strategy",
            ParamType::String,
            json!("mean"),
            Validator::OneOf(STRATEGIES),
        ),
        ParamSpec::new(
            "missingValue",
            ParamType::Double,
            json!("NaN"),
            Validator::Always,
        ),
        ParamSpec::new(
            "relativeError",
            ParamType::Double,
            json!(0.001),
            Validator::InRange(0.0, 1.0),
        ),
    ]
}

fn missing(x: Option<f64>, missing_value: f64) -> bool {
    match x {
        None => true,
        Some(x) => x.is_nan() || x == missing_value,
    }
}

/// The sample at rank ceil(q * n) (1-based) of sorted values: what an approximate quantile
/// summary returns when the error allows the exact answer.
pub(crate) fn quantile_sample(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

crate::stage! {
    /// The estimator: `inputCols`, `outputCols`, `strategy`, `missingValue`, `relativeError`.
    pub struct Imputer("org.apache.flink.ml.feature.imputer.Imputer", specs()) {}
}

impl Estimator for Imputer {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let batch = first(inputs)?;
        let strategy = self.params.str("strategy")?;
        let mv = self.params.f64("missingValue")?;
        let mut surrogates = Vec::new();
        for c in self.params.strings("inputCols")? {
            let mut vals: Vec<f64> = doubles(batch, &c)?
                .into_iter()
                .filter(|x| !missing(*x, mv))
                .flatten()
                .collect();
            if vals.is_empty() {
                return Err(MlError::Invalid(if strategy == "median" {
                    format!(
                        "Surrogate cannot be computed. All the values in column [{c}] are null, NaN or missingValue."
                    )
                } else {
                    "The training set is empty or does not contains valid data.".to_string()
                }));
            }
            vals.sort_by(f64::total_cmp);
            let s = match strategy.as_str() {
                "median" => quantile_sample(&vals, 0.5),
                "most_frequent" => {
                    // Longest run in sorted order; ties go to the smallest value.
                    let (mut best, mut best_n, mut i) = (vals[0], 0, 0);
                    while i < vals.len() {
                        let j = vals[i..].iter().take_while(|&&v| v == vals[i]).count();
                        if j > best_n {
                            best = vals[i];
                            best_n = j;
                        }
                        i += j;
                    }
                    best
                }
                _ => vals.iter().sum::<f64>() / vals.len() as f64,
            };
            surrogates.push((c, s));
        }
        Ok(Box::new(ImputerModel {
            params: self.params.clone(),
            surrogates,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `surrogates` (a map from column name to value).
    pub struct ImputerModel("org.apache.flink.ml.feature.imputer.ImputerModel", specs()) {
        surrogates: Vec<(String, f64)>,
    }
}

impl AlgoOperator for ImputerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let ins = self.params.strings("inputCols")?;
        let outs = self.params.strings("outputCols")?;
        let mv = self.params.f64("missingValue")?;
        if ins.len() != outs.len() {
            return Err(MlError::param(
                "outputCols",
                "must have as many columns as inputCols",
            ));
        }
        let mut columns = Vec::new();
        for (c, o) in ins.iter().zip(&outs) {
            let s = self
                .surrogates
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, s)| *s)
                .ok_or_else(|| MlError::column(c, "the model has no surrogate for it"))?;
            let out: Float64Array = doubles(batch, c)?
                .into_iter()
                .map(|x| {
                    Some(if missing(x, mv) {
                        s
                    } else {
                        x.expect("present")
                    })
                })
                .collect();
            columns.push((o.clone(), Arc::new(out) as _));
        }
        Ok(vec![with_columns(batch, columns)?])
    }
}

impl Model for ImputerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let mut b = MapBuilder::new(None, StringBuilder::new(), Float64Builder::new());
        for (c, s) in &self.surrogates {
            b.keys().append_value(c);
            b.values().append_value(*s);
        }
        b.append(true)?;
        Ok(vec![one_row(vec![("surrogates", Arc::new(b.finish()))])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        let col = column(t, "surrogates")?;
        let map = col.as_map_opt().ok_or_else(|| {
            MlError::column("surrogates", "expected a map of column name to value")
        })?;
        if map.is_empty() {
            return Err(MlError::column("surrogates", "empty"));
        }
        let entries = map.value(0);
        let keys = arrow_cast::cast(entries.column(0), &arrow_schema::DataType::Utf8)?;
        let vals = arrow_cast::cast(entries.column(1), &arrow_schema::DataType::Float64)?;
        self.surrogates = keys
            .as_string::<i32>()
            .iter()
            .zip(
                vals.as_primitive::<arrow_array::types::Float64Type>()
                    .iter(),
            )
            .map(|(k, v)| (k.unwrap_or_default().to_string(), v.unwrap_or(f64::NAN)))
            .collect();
        Ok(())
    }
}
