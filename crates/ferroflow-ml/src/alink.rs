//! Stages with Alink's column-oriented API (scalar columns named by `selectedCols`), for
//! users moving from Alink. Registered under Alink's class names only: the short names belong
//! to the Flink ML stages.

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch};
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::{doubles, model_vector, one_row, with_columns};
use crate::vector::dense_column;

fn specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new(
            "selectedCols",
            ParamType::StringArray,
            Value::Null,
            Validator::NonEmpty,
        ),
        ParamSpec::new(
            "outputCols",
            ParamType::StringArray,
            Value::Null,
            Validator::NonEmpty,
        ),
        ParamSpec::new("withMean", ParamType::Bool, json!(true), Validator::Always),
        ParamSpec::new("withStd", ParamType::Bool, json!(true), Validator::Always),
    ]
}

crate::stage! {
    /// Alink's StandardScaler: each selected column centred and scaled by its sample standard
    /// deviation; nulls are skipped in the statistics and stay null.
    pub struct AlinkStandardScaler("com.alibaba.alink.pipeline.dataproc.StandardScaler", specs()) {}
}

impl Estimator for AlinkStandardScaler {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let batch = crate::table::first(inputs)?;
        let (mut means, mut stds) = (Vec::new(), Vec::new());
        for c in self.params.strings("selectedCols")? {
            let v: Vec<f64> = doubles(batch, &c)?.into_iter().flatten().collect();
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let var = if n > 1.0 {
                v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
            } else {
                0.0
            };
            means.push(mean);
            stds.push(var.sqrt());
        }
        Ok(Box::new(AlinkStandardScalerModel {
            params: self.params.clone(),
            means,
            stds,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `means` and `stdDevs`.
    pub struct AlinkStandardScalerModel("com.alibaba.alink.pipeline.dataproc.StandardScalerModel", specs()) {
        means: Vec<f64>,
        stds: Vec<f64>,
    }
}

impl AlgoOperator for AlinkStandardScalerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = crate::table::first(inputs)?;
        let cols = self.params.strings("selectedCols")?;
        let outs = self
            .params
            .get("outputCols")
            .ok()
            .and_then(Value::as_array)
            .map_or(cols.clone(), |a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            });
        if outs.len() != cols.len() || cols.len() != self.means.len() {
            return Err(MlError::param(
                "outputCols",
                "selectedCols, outputCols and the model differ in length",
            ));
        }
        let (with_mean, with_std) = (self.params.bool("withMean")?, self.params.bool("withStd")?);
        let mut out = Vec::new();
        for (k, (c, o)) in cols.iter().zip(&outs).enumerate() {
            let scaled: Float64Array = doubles(batch, c)?
                .into_iter()
                .map(|x| {
                    x.map(|x| {
                        let x = if with_mean { x - self.means[k] } else { x };
                        if with_std && self.stds[k] > 0.0 {
                            x / self.stds[k]
                        } else {
                            x
                        }
                    })
                })
                .collect();
            out.push((o.clone(), Arc::new(scaled) as _));
        }
        Ok(vec![with_columns(batch, out)?])
    }
}

impl Model for AlinkStandardScalerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![one_row(vec![
            ("means", dense_column(&[Some(self.means.clone())])),
            ("stdDevs", dense_column(&[Some(self.stds.clone())])),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = data
            .first()
            .ok_or_else(|| MlError::Invalid("no model data table".into()))?;
        self.means = model_vector(t, "means")?;
        self.stds = model_vector(t, "stdDevs")?;
        Ok(())
    }
}
