//! OneHotEncoder: category indices to sparse one-hot vectors.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch};
use serde_json::json;
use std::sync::Arc;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{column, doubles, with_columns};
use crate::vector::{Vector, vector_column};

fn specs() -> Vec<ParamSpec> {
    vec![
        common::input_cols(),
        common::output_cols(),
        // Flink ML accepts only "error" (fit refuses the others).
        common::handle_invalid("error", common::ERROR_SKIP_KEEP),
        ParamSpec::new("dropLast", ParamType::Bool, json!(true), Validator::Always),
    ]
}

fn index(row: usize, col: &str, x: f64) -> Result<usize> {
    if x < 0.0 || x.fract() != 0.0 || !x.is_finite() {
        return Err(MlError::Row {
            row,
            message: format!("column '{col}': Value {x} cannot be parsed as indexed integer."),
        });
    }
    Ok(x as usize)
}

crate::stage! {
    /// The estimator: `inputCols`, `outputCols`, `dropLast`, `handleInvalid` (only `error`).
    pub struct OneHotEncoder("org.apache.flink.ml.feature.onehotencoder.OneHotEncoder", specs()) {}
}

impl Estimator for OneHotEncoder {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        if self.params.str("handleInvalid")? != "error" {
            return Err(MlError::param(
                "handleInvalid",
                "OneHotEncoder supports only \"error\"",
            ));
        }
        let batch = first(inputs)?;
        let mut max = Vec::new();
        for c in self.params.strings("inputCols")? {
            let mut m: Option<usize> = None;
            for (row, x) in doubles(batch, &c)?.into_iter().enumerate() {
                if let Some(x) = x {
                    let i = index(row, &c, x)?;
                    m = Some(m.map_or(i, |m| m.max(i)));
                }
            }
            max.push(
                m.ok_or_else(|| MlError::Invalid(format!("column '{c}' has no value to fit on")))?,
            );
        }
        Ok(Box::new(OneHotEncoderModel {
            params: self.params.clone(),
            max,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data rows (`columnIndex`, `maxIndex`).
    pub struct OneHotEncoderModel("org.apache.flink.ml.feature.onehotencoder.OneHotEncoderModel", specs()) {
        max: Vec<usize>,
    }
}

impl AlgoOperator for OneHotEncoderModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let ins = self.params.strings("inputCols")?;
        let outs = self.params.strings("outputCols")?;
        let drop_last = self.params.bool("dropLast")?;
        if ins.len() != outs.len() || ins.len() != self.max.len() {
            return Err(MlError::param(
                "outputCols",
                "inputCols, outputCols and the model differ in length",
            ));
        }
        let mut columns = Vec::new();
        for ((c, o), &max) in ins.iter().zip(&outs).zip(&self.max) {
            let size = if drop_last { max } else { max + 1 };
            let mut out = Vec::with_capacity(batch.num_rows());
            for (row, x) in doubles(batch, c)?.into_iter().enumerate() {
                let Some(x) = x else {
                    out.push(None);
                    continue;
                };
                let i = index(row, c, x)?;
                if i > max {
                    return Err(MlError::Row {
                        row,
                        message: format!("column '{c}': The input contains unseen index: {i}."),
                    });
                }
                out.push(Some(if i < size {
                    Vector::Sparse {
                        size,
                        indices: vec![i],
                        values: vec![1.0],
                    }
                } else {
                    Vector::Sparse {
                        size,
                        indices: Vec::new(),
                        values: Vec::new(),
                    }
                }));
            }
            columns.push((o.clone(), vector_column(&out)));
        }
        Ok(vec![with_columns(batch, columns)?])
    }
}

impl Model for OneHotEncoderModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let idx: Int64Array = (0..self.max.len() as i64).collect();
        let max: Int64Array = self.max.iter().map(|&m| m as i64).collect();
        Ok(vec![RecordBatch::try_from_iter(vec![
            ("columnIndex", Arc::new(idx) as _),
            ("maxIndex", Arc::new(max) as _),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        let idx = arrow_cast::cast(column(t, "columnIndex")?, &arrow_schema::DataType::Int64)?;
        let max = arrow_cast::cast(column(t, "maxIndex")?, &arrow_schema::DataType::Int64)?;
        let mut pairs: Vec<(i64, i64)> = idx
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .copied()
            .zip(max.as_primitive::<Int64Type>().values().iter().copied())
            .collect();
        pairs.sort();
        self.max = pairs.into_iter().map(|(_, m)| m as usize).collect();
        Ok(())
    }
}
