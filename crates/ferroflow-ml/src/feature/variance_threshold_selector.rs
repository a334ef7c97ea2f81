//! VarianceThresholdSelector: keep the features whose variance exceeds a threshold.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, Int32Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::json;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{column, one_row, training_vectors, vectors, with_columns};
use crate::vector::vector_column;

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_col(),
        common::output_col(),
        ParamSpec::new(
            "varianceThreshold",
            ParamType::Double,
            json!(0.0),
            Validator::GtEq(0.0),
        ),
    ]
}

crate::stage! {
    /// The estimator: `inputCol`, `outputCol`, `varianceThreshold` (default 0).
    pub struct VarianceThresholdSelector("org.apache.flink.ml.feature.variancethresholdselector.VarianceThresholdSelector", specs()) {}
}

impl Estimator for VarianceThresholdSelector {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let threshold = self.params.f64("varianceThreshold")?;
        let data = training_vectors(first(inputs)?, &self.params.str("inputCol")?)?;
        let (n, dim) = (data.len() as f64, data[0].size());
        let mut indices = Vec::new();
        for i in 0..dim {
            let mean = data.iter().map(|v| v.get(i)).sum::<f64>() / n;
            // Divided by n: Flink ML's own test data (its expected features) agrees with the
            // population variance, not the sample variance its documentation mentions.
            let var = data.iter().map(|v| (v.get(i) - mean).powi(2)).sum::<f64>() / n;
            if var > threshold {
                indices.push(i);
            }
        }
        Ok(Box::new(VarianceThresholdSelectorModel {
            params: self.params.clone(),
            num_features: dim,
            indices,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `numOfFeatures` and `indices` (the features kept).
    pub struct VarianceThresholdSelectorModel("org.apache.flink.ml.feature.variancethresholdselector.VarianceThresholdSelectorModel", specs()) {
        num_features: usize,
        indices: Vec<usize>,
    }
}

impl AlgoOperator for VarianceThresholdSelectorModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            out.push(match v {
                None => None,
                Some(v) if v.size() != self.num_features => {
                    return Err(MlError::Row {
                        row,
                        message: format!(
                            "column '{input}': vector of size {}, the model has {}",
                            v.size(),
                            self.num_features
                        ),
                    });
                }
                Some(v) => Some(v.select(&self.indices)),
            });
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}

impl Model for VarianceThresholdSelectorModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let mut idx = ListBuilder::new(Int32Builder::new());
        for &i in &self.indices {
            idx.values().append_value(i as i32);
        }
        idx.append(true);
        Ok(vec![one_row(vec![
            (
                "numOfFeatures",
                Arc::new(Int32Array::from(vec![self.num_features as i32])),
            ),
            ("indices", Arc::new(idx.finish())),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        let n = arrow_cast::cast(column(t, "numOfFeatures")?, &DataType::Int64)?;
        self.num_features = n.as_primitive::<arrow_array::types::Int64Type>().value(0) as usize;
        let l = column(t, "indices")?
            .as_list_opt::<i32>()
            .ok_or_else(|| MlError::column("indices", "expected a list of integers"))?;
        if l.is_empty() {
            return Err(MlError::column("indices", "empty"));
        }
        let v = arrow_cast::cast(&l.value(0), &DataType::Int64)?;
        self.indices = v
            .as_primitive::<arrow_array::types::Int64Type>()
            .values()
            .iter()
            .map(|&i| i as usize)
            .collect();
        Ok(())
    }
}
