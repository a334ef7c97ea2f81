//! RobustScaler: centre on the median and scale by a quantile range.

use arrow_array::RecordBatch;
use serde_json::json;

use super::imputer::quantile_sample;
use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{model_vector, one_row, training_vectors, vectors, with_columns};
use crate::vector::dense_column;

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new(
            "lower",
            ParamType::Double,
            json!(0.25),
            Validator::InRange(0.0, 1.0),
        ),
        ParamSpec::new(
            "upper",
            ParamType::Double,
            json!(0.75),
            Validator::InRange(0.0, 1.0),
        ),
        ParamSpec::new(
            "relativeError",
            ParamType::Double,
            json!(0.001),
            Validator::InRange(0.0, 1.0),
        ),
        ParamSpec::new(
            "withCentering",
            ParamType::Bool,
            json!(false),
            Validator::Always,
        ),
        ParamSpec::new(
            "withScaling",
            ParamType::Bool,
            json!(true),
            Validator::Always,
        ),
    ]
}

crate::stage! {
    /// The estimator.
    pub struct RobustScaler("org.apache.flink.ml.feature.robustscaler.RobustScaler", specs()) {}
}

impl Estimator for RobustScaler {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let (lo, hi) = (self.params.f64("lower")?, self.params.f64("upper")?);
        if lo >= hi {
            return Err(MlError::param(
                "lower",
                format!("must be less than upper ({lo} >= {hi})"),
            ));
        }
        let data = training_vectors(first(inputs)?, &self.params.str("inputCol")?)?;
        let dim = data[0].size();
        let (mut medians, mut ranges) = (Vec::with_capacity(dim), Vec::with_capacity(dim));
        for i in 0..dim {
            // As Flink ML, NaN values are left out of the medians and ranges.
            let mut col: Vec<f64> = data
                .iter()
                .map(|v| v.get(i))
                .filter(|x| !x.is_nan())
                .collect();
            if col.is_empty() {
                return Err(MlError::column(
                    &self.params.str("inputCol")?,
                    format!("dimension {i} holds only NaN: no median or range to fit"),
                ));
            }
            col.sort_by(f64::total_cmp);
            medians.push(quantile_sample(&col, 0.5));
            ranges.push(quantile_sample(&col, hi) - quantile_sample(&col, lo));
        }
        Ok(Box::new(RobustScalerModel {
            params: self.params.clone(),
            medians,
            ranges,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `medians` and `ranges`.
    pub struct RobustScalerModel("org.apache.flink.ml.feature.robustscaler.RobustScalerModel", specs()) {
        medians: Vec<f64>,
        ranges: Vec<f64>,
    }
}

impl AlgoOperator for RobustScalerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let (centre, scale) = (
            self.params.bool("withCentering")?,
            self.params.bool("withScaling")?,
        );
        let factor: Vec<f64> = self
            .ranges
            .iter()
            .map(|&r| if r == 0.0 { 0.0 } else { 1.0 / r })
            .collect();
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            let Some(v) = v else {
                out.push(None);
                continue;
            };
            if v.size() != factor.len() {
                return Err(MlError::Row {
                    row,
                    message: format!(
                        "column '{input}': vector of size {}, the model has {}",
                        v.size(),
                        factor.len()
                    ),
                });
            }
            let mut x = v.to_dense();
            for (i, xi) in x.iter_mut().enumerate() {
                if centre {
                    *xi -= self.medians[i];
                }
                if scale {
                    *xi *= factor[i];
                }
            }
            out.push(Some(x));
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, dense_column(&out))],
        )?])
    }
}

impl Model for RobustScalerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![one_row(vec![
            ("medians", dense_column(&[Some(self.medians.clone())])),
            ("ranges", dense_column(&[Some(self.ranges.clone())])),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        self.medians = model_vector(t, "medians")?;
        self.ranges = model_vector(t, "ranges")?;
        Ok(())
    }
}
