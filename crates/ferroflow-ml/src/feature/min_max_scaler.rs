//! MinMaxScaler: rescale each feature to `[min, max]`.

use arrow_array::RecordBatch;
use serde_json::json;

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
        ParamSpec::new("min", ParamType::Double, json!(0.0), Validator::Always),
        ParamSpec::new("max", ParamType::Double, json!(1.0), Validator::Always),
    ]
}

crate::stage! {
    /// The estimator.
    pub struct MinMaxScaler("org.apache.flink.ml.feature.minmaxscaler.MinMaxScaler", specs()) {}
}

impl Estimator for MinMaxScaler {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let (lo, hi) = (self.params.f64("min")?, self.params.f64("max")?);
        if lo >= hi {
            return Err(MlError::param(
                "min",
                format!("must be less than max ({lo} >= {hi})"),
            ));
        }
        let data = training_vectors(first(inputs)?, &self.params.str("inputCol")?)?;
        let dim = data[0].size();
        let mut min = vec![f64::INFINITY; dim];
        let mut max = vec![f64::NEG_INFINITY; dim];
        for v in &data {
            for i in 0..dim {
                let x = v.get(i);
                min[i] = min[i].min(x);
                max[i] = max[i].max(x);
            }
        }
        Ok(Box::new(MinMaxScalerModel {
            params: self.params.clone(),
            min,
            max,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `minVector` and `maxVector`.
    pub struct MinMaxScalerModel("org.apache.flink.ml.feature.minmaxscaler.MinMaxScalerModel", specs()) {
        min: Vec<f64>,
        max: Vec<f64>,
    }
}

impl AlgoOperator for MinMaxScalerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let (lo, hi) = (self.params.f64("min")?, self.params.f64("max")?);
        // Flink ML's formula, bit for bit: out = x * scale + offset.
        let (scale, offset): (Vec<f64>, Vec<f64>) = self
            .min
            .iter()
            .zip(&self.max)
            .map(|(&mn, &mx)| {
                if (mx - mn).abs() < 1e-5 {
                    (0.0, (hi + lo) / 2.0)
                } else {
                    let s = (hi - lo) / (mx - mn);
                    (s, lo - mn * s)
                }
            })
            .unzip();
        let mut out = Vec::new();
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            let Some(v) = v else {
                out.push(None);
                continue;
            };
            if v.size() != scale.len() {
                return Err(MlError::Row {
                    row,
                    message: format!(
                        "column '{input}': vector of size {}, the model has {}",
                        v.size(),
                        scale.len()
                    ),
                });
            }
            let x = v.to_dense();
            out.push(Some(
                (0..x.len()).map(|i| x[i] * scale[i] + offset[i]).collect(),
            ));
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, dense_column(&out))],
        )?])
    }
}

impl Model for MinMaxScalerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![one_row(vec![
            ("minVector", dense_column(&[Some(self.min.clone())])),
            ("maxVector", dense_column(&[Some(self.max.clone())])),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        self.min = model_vector(t, "minVector")?;
        self.max = model_vector(t, "maxVector")?;
        Ok(())
    }
}
