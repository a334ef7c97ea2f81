//! Bucketizer: map continuous columns to bucket indices by split points.

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch};
use serde_json::Value;

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{doubles, filter_rows, with_columns};

/// The transformer: `inputCols`, `outputCols`, `splitsArray` (ascending splits per column)
/// and `handleInvalid` (NaN or out-of-range values: `error`, `skip` the row, `keep` in an
/// extra bucket).
#[derive(Debug, Clone)]
pub struct Bucketizer {
    params: Params,
}

impl Default for Bucketizer {
    fn default() -> Self {
        Bucketizer {
            params: Params::new(vec![
                common::input_cols(),
                common::output_cols(),
                ParamSpec::new(
                    "splitsArray",
                    ParamType::DoubleArrayArray,
                    Value::Null,
                    Validator::NonEmpty,
                ),
                common::handle_invalid("error", common::ERROR_SKIP_KEEP),
            ]),
        }
    }
}

crate::impl_stage!(
    Bucketizer,
    "org.apache.flink.ml.feature.bucketizer.Bucketizer"
);

/// Bucket of `x`: `[s_i, s_i+1)`, the last bucket closed on the right.
fn bucket(splits: &[f64], x: f64) -> Option<usize> {
    let n = splits.len();
    if x.is_nan() || x < splits[0] || x > splits[n - 1] {
        return None;
    }
    if x == splits[n - 1] {
        return Some(n - 2);
    }
    // The last split <= x.
    Some(splits.partition_point(|&s| s <= x) - 1)
}

impl AlgoOperator for Bucketizer {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let ins = self.params.strings("inputCols")?;
        let outs = self.params.strings("outputCols")?;
        let splits = self.params.f64ss("splitsArray")?;
        let handle = self.params.str("handleInvalid")?;
        if ins.len() != outs.len() || ins.len() != splits.len() {
            return Err(MlError::param(
                "splitsArray",
                format!(
                    "inputCols ({}), outputCols ({}) and splitsArray ({}) must have the same length",
                    ins.len(),
                    outs.len(),
                    splits.len()
                ),
            ));
        }
        for (c, s) in ins.iter().zip(&splits) {
            if s.len() < 3 || s.windows(2).any(|w| w[0] >= w[1]) {
                return Err(MlError::param(
                    "splitsArray",
                    format!("splits of '{c}' must be at least 3 strictly increasing values"),
                ));
            }
        }
        let mut keep = vec![true; batch.num_rows()];
        let mut columns = Vec::new();
        for ((c, o), s) in ins.iter().zip(&outs).zip(&splits) {
            let mut out = Vec::with_capacity(batch.num_rows());
            for (row, x) in doubles(batch, c)?.into_iter().enumerate() {
                match x.and_then(|x| bucket(s, x)) {
                    Some(b) => out.push(Some(b as f64)),
                    None => match handle.as_str() {
                        "keep" => out.push(Some((s.len() - 1) as f64)),
                        "skip" => {
                            keep[row] = false;
                            out.push(None);
                        }
                        _ => {
                            return Err(MlError::Row {
                                row,
                                message: format!(
                                    "column '{c}': The input contains invalid value. See handleInvalid parameter for more options."
                                ),
                            });
                        }
                    },
                }
            }
            columns.push((o.clone(), Arc::new(Float64Array::from(out)) as _));
        }
        Ok(vec![filter_rows(&with_columns(batch, columns)?, &keep)?])
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_are_half_open_except_the_last() {
        let s = [-1.0, 0.0, 2.0];
        assert_eq!(bucket(&s, -1.0), Some(0));
        assert_eq!(bucket(&s, 0.0), Some(1));
        assert_eq!(bucket(&s, 2.0), Some(1));
        assert_eq!(bucket(&s, 2.5), None);
        assert_eq!(bucket(&s, f64::NAN), None);
        let inf = [f64::NEG_INFINITY, 10.0, f64::INFINITY];
        assert_eq!(bucket(&inf, f64::INFINITY), Some(1));
    }
}
