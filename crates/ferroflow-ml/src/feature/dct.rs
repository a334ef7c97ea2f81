//! DCT: the orthonormal discrete cosine transform (DCT-II forward, DCT-III inverse), as
//! `scipy.fft.dct(x, type=2, norm="ortho")`.

use std::f64::consts::PI;

use arrow_array::RecordBatch;
use serde_json::json;

use crate::error::Result;
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::first;
use crate::table::{vectors, with_columns};
use crate::vector::Vector;

/// The transformer: `inputCol`, `outputCol`, `inverse` (default false).
#[derive(Debug, Clone)]
pub struct Dct {
    params: Params,
}

impl Default for Dct {
    fn default() -> Self {
        Dct {
            params: Params::new(vec![
                common::input_col(),
                common::output_col(),
                ParamSpec::new("inverse", ParamType::Bool, json!(false), Validator::Always),
            ]),
        }
    }
}

crate::impl_stage!(Dct, "org.apache.flink.ml.feature.dct.DCT");

fn dct(x: &[f64], inverse: bool) -> Vec<f64> {
    let n = x.len();
    let nf = n as f64;
    let scale = |k: usize| {
        if k == 0 {
            (1.0 / nf).sqrt()
        } else {
            (2.0 / nf).sqrt()
        }
    };
    (0..n)
        .map(|k| {
            if inverse {
                (0..n)
                    .map(|j| scale(j) * x[j] * (PI / nf * (k as f64 + 0.5) * j as f64).cos())
                    .sum()
            } else {
                scale(k)
                    * (0..n)
                        .map(|j| x[j] * (PI / nf * (j as f64 + 0.5) * k as f64).cos())
                        .sum::<f64>()
            }
        })
        .collect()
}

impl AlgoOperator for Dct {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let (input, output) = (self.params.str("inputCol")?, self.params.str("outputCol")?);
        let inverse = self.params.bool("inverse")?;
        let out: Vec<Option<Vec<f64>>> = vectors(batch, &input)?
            .into_iter()
            .map(|v| v.map(|v: Vector| dct(&v.to_dense(), inverse)))
            .collect();
        Ok(vec![with_columns(
            batch,
            vec![(output, crate::vector::dense_column(&out))],
        )?])
    }
}

#[cfg(test)]
mod tests {
    use super::dct;

    #[test]
    fn inverse_undoes_forward() {
        let x = [1.0, -2.0, 0.5, 3.0, 0.0];
        let back = dct(&dct(&x, false), true);
        assert!(x.iter().zip(&back).all(|(a, b)| (a - b).abs() < 1e-12));
        assert!((dct(&[1.0; 4], false)[0] - 2.0).abs() < 1e-12);
    }
}
