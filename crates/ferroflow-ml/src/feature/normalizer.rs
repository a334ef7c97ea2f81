//! Normalizer: scale each vector to unit p-norm.

use arrow_array::RecordBatch;
use serde_json::json;

use crate::error::Result;
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{vectors, with_columns};
use crate::vector::{Vector, vector_column};

/// The transformer; `p` >= 1 (default 2).
#[derive(Debug, Clone)]
pub struct Normalizer {
    params: Params,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer {
            params: Params::new(vec![
                common::input_col(),
                common::output_col(),
                ParamSpec::new("p", ParamType::Double, json!(2.0), Validator::GtEq(1.0)),
            ]),
        }
    }
}

crate::impl_stage!(
    Normalizer,
    "org.apache.flink.ml.feature.normalizer.Normalizer"
);

/// The p-norm over stored values, as Flink ML computes it.
fn norm(v: &Vector, p: f64) -> f64 {
    let abs = v.stored().map(|(_, x)| x.abs());
    if p == 1.0 {
        abs.sum()
    } else if p == 2.0 {
        abs.map(|x| x * x).sum::<f64>().sqrt()
    } else if p == f64::INFINITY {
        abs.fold(0.0, f64::max)
    } else {
        abs.map(|x| x.powf(p)).sum::<f64>().powf(1.0 / p)
    }
}

impl AlgoOperator for Normalizer {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let p = self.params.f64("p")?;
        let out: Vec<Option<Vector>> = vectors(batch, &input)?
            .into_iter()
            .map(|v| {
                v.map(|v| {
                    let n = norm(&v, p);
                    // Multiply by the reciprocal (Flink ML's BLAS.scal); a zero vector stays.
                    let f = if n > 0.0 { 1.0 / n } else { 1.0 };
                    match v {
                        Vector::Dense(x) => Vector::Dense(x.iter().map(|a| a * f).collect()),
                        Vector::Sparse {
                            size,
                            indices,
                            values,
                        } => Vector::Sparse {
                            size,
                            indices,
                            values: values.iter().map(|a| a * f).collect(),
                        },
                    }
                })
            })
            .collect();
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}
