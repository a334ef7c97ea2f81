//! PolynomialExpansion: all monomials of the features up to `degree` (no constant term), in
//! Spark's order: [x, y] of degree 2 gives [x, x², y, xy, y²].

use arrow_array::RecordBatch;
use serde_json::json;

use crate::error::Result;
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{vectors, with_columns};
use crate::vector::{Vector, vector_column};

/// The transformer: `inputCol`, `outputCol`, `degree` >= 1 (default 2).
#[derive(Debug, Clone)]
pub struct PolynomialExpansion {
    params: Params,
}

impl Default for PolynomialExpansion {
    fn default() -> Self {
        PolynomialExpansion {
            params: Params::new(vec![
                common::input_col(),
                common::output_col(),
                ParamSpec::new("degree", ParamType::Int, json!(2), Validator::GtEq(1.0)),
            ]),
        }
    }
}

crate::impl_stage!(
    PolynomialExpansion,
    "org.apache.flink.ml.feature.polynomialexpansion.PolynomialExpansion"
);

/// Most values one expanded row may have (a 128 MiB row): beyond it the expansion is
/// refused naming the row, not attempted.
const MAX_TERMS: usize = 1 << 24;

/// C(n + d, d): monomials of n variables up to degree d, the constant included; `None` when
/// it exceeds [`MAX_TERMS`] (checked at every step, so it never overflows).
fn checked_poly_size(n: usize, d: usize) -> Option<usize> {
    let (k, m) = (d.min(n), n.checked_add(d)?);
    let mut acc = 1u128;
    for i in 0..k {
        // C(m, i + 1) = C(m, i) * (m - i) / (i + 1), exact at every step.
        acc = acc.checked_mul((m - i) as u128)? / (i + 1) as u128;
        if acc > MAX_TERMS as u128 + 1 {
            return None;
        }
    }
    Some(acc as usize)
}

/// [`checked_poly_size`] for sizes already checked.
fn poly_size(n: usize, d: usize) -> usize {
    checked_poly_size(n, d).expect("checked before expanding")
}

/// Spark's recursive expansion; returns the next free position.
fn expand(
    values: &[f64],
    last: isize,
    degree: usize,
    multiplier: f64,
    out: &mut [f64],
    cur: isize,
) -> isize {
    if multiplier != 0.0 {
        if degree == 0 || last < 0 {
            if cur >= 0 {
                out[cur as usize] = multiplier;
            }
        } else {
            let v = values[last as usize];
            let mut alpha = multiplier;
            let mut start = cur;
            let mut i = 0;
            while i <= degree && alpha != 0.0 {
                start = expand(values, last - 1, degree - i, alpha, out, start);
                i += 1;
                alpha *= v;
            }
        }
    }
    cur + poly_size((last + 1) as usize, degree) as isize
}

impl AlgoOperator for PolynomialExpansion {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let degree = self.params.i64("degree")? as usize;
        let out: Vec<Option<Vector>> = vectors(batch, &input)?
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                let Some(v) = v else { return Ok(None) };
                if checked_poly_size(v.size(), degree).is_none() {
                    return Err(crate::error::MlError::Row {
                        row,
                        message: format!(
                            "column '{input}': a vector of size {} expanded to degree {degree} has more than {MAX_TERMS} terms",
                            v.size()
                        ),
                    });
                }
                Ok(Some({
                    let x = v.to_dense();
                    let mut poly = vec![0.0; poly_size(x.len(), degree) - 1];
                    expand(&x, x.len() as isize - 1, degree, 1.0, &mut poly, -1);
                    match v {
                        Vector::Dense(_) => Vector::Dense(poly),
                        Vector::Sparse { .. } => {
                            let (indices, values) = poly
                                .iter()
                                .enumerate()
                                .filter(|(_, a)| **a != 0.0)
                                .map(|(i, a)| (i, *a))
                                .unzip();
                            Vector::Sparse {
                                size: poly.len(),
                                indices,
                                values,
                            }
                        }
                    }
                }))
            })
            .collect::<Result<_>>()?;
        Ok(vec![with_columns(
            batch,
            vec![(output, vector_column(&out))],
        )?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_term_order() {
        let mut out = vec![0.0; poly_size(2, 2) - 1];
        expand(&[2.0, 3.0], 1, 2, 1.0, &mut out, -1);
        assert_eq!(out, vec![2.0, 4.0, 3.0, 6.0, 9.0]);
        assert_eq!(poly_size(3, 3), 20);
        assert_eq!(checked_poly_size(10, 1_000_000), None);
        assert_eq!(checked_poly_size(usize::MAX, 3), None);
        assert_eq!(checked_poly_size(1 << 30, 1), None);
    }
}
