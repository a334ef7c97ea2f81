//! MaxAbsScaler: divide each feature by its largest absolute value.

use arrow_array::RecordBatch;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{model_vector, one_row, training_vectors, vectors, with_columns};
use crate::vector::{Vector, dense_column, vector_column};

fn specs() -> Vec<ParamSpec> {
    vec![common::input_col(), common::output_col()]
}

crate::stage! {
    /// The estimator.
    pub struct MaxAbsScaler("org.apache.flink.ml.feature.maxabsscaler.MaxAbsScaler", specs()) {}
}

impl Estimator for MaxAbsScaler {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let data = training_vectors(first(inputs)?, &self.params.str("inputCol")?)?;
        let mut max = vec![0.0f64; data[0].size()];
        for v in &data {
            for (i, x) in v.stored() {
                max[i] = max[i].max(x.abs());
            }
        }
        Ok(Box::new(MaxAbsScalerModel {
            params: self.params.clone(),
            max,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `maxVector`.
    pub struct MaxAbsScalerModel("org.apache.flink.ml.feature.maxabsscaler.MaxAbsScalerModel", specs()) {
        max: Vec<f64>,
    }
}

impl AlgoOperator for MaxAbsScalerModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        // Multiply by the reciprocal, as Flink ML does (division differs in the last bit).
        let factor: Vec<f64> = self
            .max
            .iter()
            .map(|&m| if m == 0.0 { 1.0 } else { 1.0 / m })
            .collect();
        let mut out = Vec::new();
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            out.push(match v {
                None => None,
                Some(v) if v.size() != factor.len() => {
                    return Err(MlError::Row {
                        row,
                        message: format!(
                            "column '{input}': vector of size {}, the model has {}",
                            v.size(),
                            factor.len()
                        ),
                    });
                }
                Some(Vector::Dense(x)) => Some(Vector::Dense(
                    x.iter().zip(&factor).map(|(a, f)| a * f).collect(),
                )),
                Some(Vector::Sparse {
                    size,
                    indices,
                    values,
                }) => {
                    let values = indices
                        .iter()
                        .zip(&values)
                        .map(|(&i, v)| v * factor[i])
                        .collect();
                    Some(Vector::Sparse {
                        size,
                        indices,
                        values,
                    })
                }
            });
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}

impl Model for MaxAbsScalerModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![one_row(vec![(
            "maxVector",
            dense_column(&[Some(self.max.clone())]),
        )])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        self.max = model_vector(first(data)?, "maxVector")?;
        Ok(())
    }
}
