//! VectorAssembler: concatenate numeric and vector columns into one vector.

use arrow_array::RecordBatch;
use serde_json::Value;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{column, doubles, filter_rows, vectors, with_columns};
use crate::vector::{Vector, is_vector_type, vector_column};

/// The transformer: `inputCols`, `outputCol`, `inputSizes` (one per input column) and
/// `handleInvalid` (`error`, `skip` the row, or `keep` it with NaN for the invalid part).
#[derive(Debug, Clone)]
pub struct VectorAssembler {
    params: Params,
}

impl Default for VectorAssembler {
    fn default() -> Self {
        VectorAssembler {
            params: Params::new(vec![
                common::input_cols(),
                common::output_col(),
                ParamSpec::new(
                    "inputSizes",
                    ParamType::IntArray,
                    Value::Null,
                    Validator::NonEmpty,
                ),
                common::handle_invalid("error", common::ERROR_SKIP_KEEP),
            ]),
        }
    }
}

crate::impl_stage!(
    VectorAssembler,
    "org.apache.flink.ml.feature.vectorassembler.VectorAssembler"
);

/// Flink ML's choice of output kind: sparse when nnz * 1.5 <= size.
const RATIO: f64 = 1.5;

impl AlgoOperator for VectorAssembler {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let cols = self.params.strings("inputCols")?;
        let sizes = self.params.i64s("inputSizes")?;
        let output = self.params.str("outputCol")?;
        let handle = self.params.str("handleInvalid")?;
        if sizes.len() != cols.len() {
            return Err(MlError::param(
                "inputSizes",
                format!("{} sizes for {} input columns", sizes.len(), cols.len()),
            ));
        }
        // All inputs dense vectors or numbers, without nulls, of the declared sizes: the output
        // is dense (nnz = size), written row by row into one matrix.
        let keep_invalid = handle == "keep";
        if let Some(out) = assemble_dense(batch, &cols, &sizes, keep_invalid)? {
            return Ok(vec![with_columns(batch, vec![(output, out)])?]);
        }
        // Each input column as per-row vectors (numbers are vectors of one).
        // (Numbers are vectors of one, marked: a NaN number is invalid, a NaN inside a
        // vector is not, as in Flink ML.)
        let mut parts: Vec<(bool, Vec<Option<Vector>>)> = Vec::new();
        for c in &cols {
            let col = column(batch, c)?;
            parts.push(if is_vector_type(col.data_type()) {
                (false, vectors(batch, c)?)
            } else {
                (
                    true,
                    doubles(batch, c)?
                        .into_iter()
                        .map(|x| x.map(|x| Vector::Dense(vec![x])))
                        .collect(),
                )
            });
        }
        let mut out = Vec::with_capacity(batch.num_rows());
        let mut keep = vec![true; batch.num_rows()];
        for row in 0..batch.num_rows() {
            let mut indices = Vec::new();
            let mut values = Vec::new();
            let mut nnz = 0usize;
            let mut offset = 0usize;
            let mut invalid = None;
            for (k, (number, part)) in parts.iter().enumerate() {
                let size = sizes[k] as usize;
                if *number
                    && !keep_invalid
                    && matches!(&part[row], Some(Vector::Dense(x)) if x[0].is_nan())
                {
                    invalid.get_or_insert_with(|| {
                        format!(
                            "column '{}': Encountered NaN while assembling a row with handleInvalid = 'error'. Consider removing NaNs from dataset or using handleInvalid = 'keep' or 'skip'.",
                            cols[k]
                        )
                    });
                }
                match &part[row] {
                    // With `keep`, sizes are not checked: the vector goes in as it is.
                    Some(v) if v.size() == size || keep_invalid => match v {
                        Vector::Dense(x) => {
                            nnz += x.len();
                            for (i, &a) in x.iter().enumerate() {
                                if a != 0.0 {
                                    indices.push(offset + i);
                                    values.push(a);
                                }
                            }
                        }
                        Vector::Sparse {
                            indices: idx,
                            values: vals,
                            ..
                        } => {
                            nnz += idx.len();
                            for (&i, &a) in idx.iter().zip(vals) {
                                indices.push(offset + i);
                                values.push(a);
                            }
                        }
                    },
                    other => {
                        invalid.get_or_insert_with(|| match other {
                            None => format!("column '{}' is null", cols[k]),
                            Some(v) => format!(
                                "Input vector/number size does not meet with expected. Expected size: {size}, actual size: {}.",
                                v.size()
                            ),
                        });
                        nnz += size;
                        for i in 0..size {
                            indices.push(offset + i);
                            values.push(f64::NAN);
                        }
                    }
                }
                offset += match &part[row] {
                    Some(v) if keep_invalid => v.size(),
                    _ => size,
                };
            }
            let total = offset;
            if let Some(msg) = invalid {
                match handle.as_str() {
                    "skip" => {
                        keep[row] = false;
                        out.push(None);
                        continue;
                    }
                    "keep" => {}
                    _ => return Err(MlError::Row { row, message: msg }),
                }
            }
            out.push(Some(if (nnz as f64) * RATIO <= total as f64 {
                Vector::Sparse {
                    size: total,
                    indices,
                    values,
                }
            } else {
                let mut d = vec![0.0; total];
                for (i, a) in indices.into_iter().zip(values) {
                    d[i] = a;
                }
                Vector::Dense(d)
            }));
        }
        let assembled = with_columns(batch, vec![(output, vector_column(&out))])?;
        Ok(vec![filter_rows(&assembled, &keep)?])
    }
}

/// The dense fast path of VectorAssembler; `None` when any input does not qualify (inputs
/// are borrowed from their Arrow buffers, the output written once).
fn assemble_dense(
    batch: &RecordBatch,
    cols: &[String],
    sizes: &[i64],
    keep_invalid: bool,
) -> Result<Option<arrow_array::ArrayRef>> {
    let n = batch.num_rows();
    let total: usize = sizes.iter().map(|&s| s as usize).sum();
    let mut parts: Vec<(&[f64], usize)> = Vec::with_capacity(cols.len());
    for (c, &size) in cols.iter().zip(sizes) {
        let col = column(batch, c)?;
        match crate::vector::dense_matrix_view(col) {
            // A NaN number is invalid unless kept (the row-by-row path decides).
            Some((m, _))
                if !keep_invalid
                    && !is_vector_type(col.data_type())
                    && m.iter().any(|x| x.is_nan()) =>
            {
                return Ok(None);
            }
            Some((m, w)) if w == size as usize && m.len() == n * w => parts.push((m, w)),
            _ => return Ok(None),
        }
    }
    let mut out = vec![0.0; n * total];
    // Part by part: tight strided loops instead of a tiny memcpy per row and part.
    let mut at = 0;
    for (m, w) in &parts {
        let w = *w;
        if w == 1 {
            for (row, &v) in out.chunks_exact_mut(total.max(1)).zip(m.iter()) {
                row[at] = v;
            }
        } else {
            for (row, src) in out.chunks_exact_mut(total.max(1)).zip(m.chunks_exact(w)) {
                for (d, s) in row[at..at + w].iter_mut().zip(src) {
                    *d = *s;
                }
            }
        }
        at += w;
    }
    Ok(Some(crate::vector::dense_matrix_column(out, total)))
}
