//! StandardScaler: centre (`withMean`) and scale to unit sample standard deviation (`withStd`).

use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::{first, model_vector, one_row, training_vectors, vectors, with_columns};
use crate::vector::dense_column;
use arrow_array::RecordBatch;

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new("withMean", ParamType::Bool, json!(false), Validator::Always),
        ParamSpec::new("withStd", ParamType::Bool, json!(true), Validator::Always),
    ]
}

crate::stage! {
    /// The estimator.
    pub struct StandardScaler("org.apache.flink.ml.feature.standardscaler.StandardScaler", specs()) {}
}

impl Estimator for StandardScaler {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let input = self.params.str("inputCol")?;
        let data = training_vectors(first(inputs)?, &input)?;
        let n = data.len() as f64;
        let dim = data[0].size();
        let mut mean = vec![0.0; dim];
        for v in &data {
            for (i, x) in v.stored() {
                mean[i] += x;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; dim];
        for v in &data {
            for (i, m) in mean.iter().enumerate() {
                let d = v.get(i) - m;
                var[i] += d * d;
            }
        }
        // Sample standard deviation (n - 1), as Flink ML; one row gives 0.
        let std = var
            .iter()
            .map(|s| if n > 1.0 { (s / (n - 1.0)).sqrt() } else { 0.0 })
            .collect();
        Ok(Box::new(StandardScalerModel {
            params: self.params.clone(),
            mean,
            std,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `mean` and `std` (dense vectors).
    pub struct StandardScalerModel("org.apache.flink.ml.feature.standardscaler.StandardScalerModel", specs()) {
        mean: Vec<f64>,
        std: Vec<f64>,
    }
}

impl AlgoOperator for StandardScalerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let (with_mean, with_std) = (self.params.bool("withMean")?, self.params.bool("withStd")?);
        let scale: Vec<f64> = self
            .std
            .iter()
            .map(|&s| if s == 0.0 { 0.0 } else { 1.0 / s })
            .collect();
        // Dense rows without nulls: one pass over one matrix, no per-row vectors.
        if let Some((mut x, width)) =
            crate::vector::dense_matrix(crate::table::column(batch, &input)?)
            && width == self.mean.len()
        {
            for row in x.chunks_exact_mut(width.max(1)) {
                for (i, xi) in row.iter_mut().enumerate() {
                    if with_mean {
                        *xi -= self.mean[i];
                    }
                    if with_std {
                        *xi *= scale[i];
                    }
                }
            }
            let col = crate::vector::dense_matrix_column(x, width);
            return Ok(vec![with_columns(batch, vec![(output, col)])?]);
        }
        let mut out = Vec::new();
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
            let mut x = v.to_dense();
            for (i, xi) in x.iter_mut().enumerate() {
                if with_mean {
                    *xi -= self.mean[i];
                }
                if with_std {
                    *xi *= scale[i];
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

impl Model for StandardScalerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![one_row(vec![
            ("mean", dense_column(&[Some(self.mean.clone())])),
            ("std", dense_column(&[Some(self.std.clone())])),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        let (mean, std) = (model_vector(t, "mean")?, model_vector(t, "std")?);
        if mean.len() != std.len() {
            return Err(MlError::Invalid(format!(
                "model data: 'mean' has {} values but 'std' has {}",
                mean.len(),
                std.len()
            )));
        }
        (self.mean, self.std) = (mean, std);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::dense_column;

    /// Regression for what fuzzing found: model data whose `mean` and `std` differ in
    /// length indexed past the shorter one at transform time.
    #[test]
    fn model_data_of_mismatched_lengths_is_refused() {
        let data = RecordBatch::try_from_iter(vec![
            ("mean", dense_column(&[Some(vec![1.0, 2.0])])),
            ("std", dense_column(&[Some(vec![1.0])])),
        ])
        .unwrap();
        let mut m = StandardScalerModel::default();
        let e = m.set_model_data(&[data]).unwrap_err().to_string();
        assert!(e.contains("'mean' has 2 values but 'std' has 1"), "{e}");
    }
}
