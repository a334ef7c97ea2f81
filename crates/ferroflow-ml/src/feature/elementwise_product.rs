//! ElementwiseProduct: multiply each vector by a scaling vector, element by element.

use arrow_array::RecordBatch;
use serde_json::Value;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{vectors, with_columns};
use crate::vector::{Vector, vector_column};

/// The transformer: `inputCol`, `outputCol`, `scalingVec` (required).
#[derive(Debug, Clone)]
pub struct ElementwiseProduct {
    params: Params,
}

impl Default for ElementwiseProduct {
    fn default() -> Self {
        ElementwiseProduct {
            params: Params::new(vec![
                common::input_col(),
                common::output_col(),
                ParamSpec::new(
                    "scalingVec",
                    ParamType::Vector,
                    Value::Null,
                    Validator::Always,
                ),
            ]),
        }
    }
}

crate::impl_stage!(
    ElementwiseProduct,
    "org.apache.flink.ml.feature.elementwiseproduct.ElementwiseProduct"
);

impl AlgoOperator for ElementwiseProduct {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let scale = self.params.vector("scalingVec")?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &input)?.into_iter().enumerate() {
            out.push(match v {
                None => None,
                Some(v) if v.size() != scale.size() => {
                    return Err(MlError::Row {
                        row,
                        message: format!(
                            "The scaling vector size is {}, which is not equal input vector size({}).",
                            scale.size(),
                            v.size()
                        ),
                    });
                }
                Some(Vector::Dense(x)) => Some(Vector::Dense(
                    x.iter().enumerate().map(|(i, a)| a * scale.get(i)).collect(),
                )),
                Some(Vector::Sparse { size, indices, values }) => {
                    let values = indices.iter().zip(&values).map(|(&i, a)| a * scale.get(i)).collect();
                    Some(Vector::Sparse { size, indices, values })
                }
            });
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}
