//! Interaction: the products of every combination of one value from each input column
//! (numbers are vectors of one); the first column varies slowest.

use arrow_array::RecordBatch;

use crate::error::Result;
use crate::params::common;
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{column, doubles, vectors, with_columns};
use crate::vector::{Vector, is_vector_type, vector_column};

crate::stage! {
    /// The transformer: `inputCols`, `outputCol`. A row with a null input gives null; any sparse
    /// input gives a sparse output.
    pub struct Interaction("org.apache.flink.ml.feature.interaction.Interaction", vec![common::input_cols(), common::output_col()]) {}
}

impl AlgoOperator for Interaction {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let cols = self.params.strings("inputCols")?;
        let output = self.params.str("outputCol")?;
        let mut parts: Vec<Vec<Option<Vector>>> = Vec::new();
        for c in &cols {
            parts.push(if is_vector_type(column(batch, c)?.data_type()) {
                vectors(batch, c)?
            } else {
                doubles(batch, c)?
                    .into_iter()
                    .map(|x| x.map(|x| Vector::Dense(vec![x])))
                    .collect()
            });
        }
        let mut out = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let vs: Option<Vec<&Vector>> = parts.iter().map(|p| p[row].as_ref()).collect();
            let Some(vs) = vs else {
                out.push(None);
                continue;
            };
            let sparse = vs.iter().any(|v| matches!(v, Vector::Sparse { .. }));
            // Dense product, first column slowest.
            let mut acc = vec![1.0];
            for v in &vs {
                let x = v.to_dense();
                acc = acc
                    .iter()
                    .flat_map(|a| x.iter().map(move |b| a * b))
                    .collect();
            }
            out.push(Some(if sparse {
                let (indices, values) = acc
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| **a != 0.0)
                    .map(|(i, a)| (i, *a))
                    .unzip();
                Vector::Sparse {
                    size: acc.len(),
                    indices,
                    values,
                }
            } else {
                Vector::Dense(acc)
            }));
        }
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}
