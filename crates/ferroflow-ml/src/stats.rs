//! Statistical tests of each feature against the label (Flink ML's `org.apache.flink.ml.stats`):
//! ChiSqTest (categorical feature and label), ANOVATest (continuous feature, categorical
//! label), FValueTest (continuous feature and label).
//!
//! Output, as Flink ML's: one row `pValues` (vector), `degreesOfFreedom` (integers),
//! `statistics` / `fValues` (vector); or with `flatten` one row per feature
//! (`featureIndex`, `pValue`, `degreeOfFreedom`, `statistic` / `fValue`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{Field, Schema};
use serde_json::json;
use statrs::distribution::{ChiSquared, ContinuousCDF, FisherSnedecor};

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::AlgoOperator;
use crate::table::{OrdF64, doubles, vectors};
use crate::vector::dense_column;

fn specs() -> Vec<ParamSpec> {
    vec![
        common::features_col(),
        common::label_col(),
        ParamSpec::new("flatten", ParamType::Bool, json!(false), Validator::Always),
    ]
}

/// (features, label) rows.
pub(crate) fn rows(params: &Params, inputs: &[RecordBatch]) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let batch = crate::table::first(inputs)?;
    let (fcol, lcol) = (params.str("featuresCol")?, params.str("labelCol")?);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (row, (f, l)) in vectors(batch, &fcol)?
        .into_iter()
        .zip(doubles(batch, &lcol)?)
        .enumerate()
    {
        let (Some(f), Some(l)) = (f, l) else {
            return Err(MlError::Row {
                row,
                message: format!("null in '{fcol}' or '{lcol}'"),
            });
        };
        if xs.first().is_some_and(|x: &Vec<f64>| x.len() != f.size()) {
            return Err(MlError::Row {
                row,
                message: format!("column '{fcol}': vectors of different sizes"),
            });
        }
        xs.push(f.to_dense());
        ys.push(l);
    }
    if xs.is_empty() {
        return Err(MlError::Invalid("the input table is empty".into()));
    }
    Ok((xs, ys))
}

/// The result table, one row or flattened.
fn output(flatten: bool, stat_name: &str, results: &[(f64, i64, f64)]) -> Result<RecordBatch> {
    if flatten {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(0..results.len() as i64)),
            Arc::new(Float64Array::from_iter_values(results.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(results.iter().map(|r| r.1))),
            Arc::new(Float64Array::from_iter_values(results.iter().map(|r| r.2))),
        ];
        let schema = Schema::new(
            cols.iter()
                .zip(["featureIndex", "pValue", "degreeOfFreedom", stat_name])
                .map(|(c, n)| Field::new(n, c.data_type().clone(), false))
                .collect::<Vec<_>>(),
        );
        return Ok(RecordBatch::try_new(Arc::new(schema), cols)?);
    }
    let mut dof = ListBuilder::new(Int64Builder::new());
    for r in results {
        dof.values().append_value(r.1);
    }
    dof.append(true);
    let plural = format!("{stat_name}s");
    RecordBatch::try_from_iter(vec![
        (
            "pValues",
            dense_column(&[Some(results.iter().map(|r| r.0).collect())]),
        ),
        ("degreesOfFreedom", Arc::new(dof.finish()) as ArrayRef),
        (
            plural.as_str(),
            dense_column(&[Some(results.iter().map(|r| r.2).collect())]),
        ),
    ])
    .map_err(Into::into)
}

/// Round half up to 11 decimals, as Flink ML's ChiSqTest does (so results compare exactly).
fn round11(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.11}").parse().unwrap_or(x)
}

fn chi2_sf(stat: f64, dof: f64) -> f64 {
    if dof <= 0.0 {
        return 1.0;
    }
    ChiSquared::new(dof).map(|d| d.sf(stat)).unwrap_or(f64::NAN)
}

fn f_sf(f: f64, d1: f64, d2: f64) -> f64 {
    if d1 <= 0.0 || d2 <= 0.0 || !f.is_finite() {
        return if f.is_infinite() { 0.0 } else { f64::NAN };
    }
    FisherSnedecor::new(d1, d2)
        .map(|d| d.sf(f))
        .unwrap_or(f64::NAN)
}

macro_rules! test_stage {
    ($ty:ident, $class:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $ty {
            params: Params,
        }

        impl Default for $ty {
            fn default() -> Self {
                $ty {
                    params: Params::new(specs()),
                }
            }
        }

        crate::impl_stage!($ty, $class);
    };
}

test_stage!(
    ChiSqTest,
    "org.apache.flink.ml.stats.chisqtest.ChiSqTest",
    "Pearson's chi-squared independence test of each categorical feature and the label."
);
test_stage!(
    AnovaTest,
    "org.apache.flink.ml.stats.anovatest.ANOVATest",
    "One-way ANOVA F-test of each continuous feature against the categorical label."
);
test_stage!(
    FValueTest,
    "org.apache.flink.ml.stats.fvaluetest.FValueTest",
    "F-test of a univariate linear regression of the continuous label on each feature."
);

/// (p-value, degrees of freedom, statistic) of each feature: chi-squared independence test.
pub(crate) fn chi_sq(xs: &[Vec<f64>], ys: &[f64]) -> Vec<(f64, i64, f64)> {
    let n = xs.len() as f64;
    let mut label_counts: BTreeMap<OrdF64, f64> = BTreeMap::new();
    for &y in ys {
        *label_counts.entry(OrdF64(y)).or_insert(0.0) += 1.0;
    }
    let mut results = Vec::new();
    for j in 0..xs[0].len() {
        let mut table: BTreeMap<OrdF64, BTreeMap<OrdF64, f64>> = BTreeMap::new();
        for (x, &y) in xs.iter().zip(ys) {
            *table
                .entry(OrdF64(x[j]))
                .or_default()
                .entry(OrdF64(y))
                .or_insert(0.0) += 1.0;
        }
        let mut stat = 0.0;
        for row in table.values() {
            let row_sum: f64 = row.values().sum();
            for (label, &col_sum) in &label_counts {
                let expected = row_sum * col_sum / n;
                let observed = row.get(label).copied().unwrap_or(0.0);
                stat += (observed - expected).powi(2) / expected;
            }
        }
        let dof = (table.len() as i64 - 1) * (label_counts.len() as i64 - 1);
        results.push((round11(chi2_sf(stat, dof as f64)), dof, round11(stat)));
    }
    results
}

impl AlgoOperator for ChiSqTest {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let (xs, ys) = rows(&self.params, inputs)?;
        Ok(vec![output(
            self.params.bool("flatten")?,
            "statistic",
            &chi_sq(&xs, &ys),
        )?])
    }
}

/// (p-value, degrees of freedom as Flink ML reports them, F) of each feature: one-way ANOVA.
pub(crate) fn anova(xs: &[Vec<f64>], ys: &[f64]) -> Vec<(f64, i64, f64)> {
    let n = xs.len();
    let mut groups: BTreeMap<OrdF64, Vec<usize>> = BTreeMap::new();
    for (i, &y) in ys.iter().enumerate() {
        groups.entry(OrdF64(y)).or_default().push(i);
    }
    let k = groups.len();
    let mut results = Vec::new();
    for j in 0..xs[0].len() {
        let mean = xs.iter().map(|x| x[j]).sum::<f64>() / n as f64;
        let (mut ssb, mut ssw) = (0.0, 0.0);
        for idx in groups.values() {
            let gm = idx.iter().map(|&i| xs[i][j]).sum::<f64>() / idx.len() as f64;
            ssb += idx.len() as f64 * (gm - mean).powi(2);
            ssw += idx.iter().map(|&i| (xs[i][j] - gm).powi(2)).sum::<f64>();
        }
        let (d1, d2) = ((k - 1) as f64, (n - k) as f64);
        let f = (ssb / d1) / (ssw / d2);
        // Flink ML reports n - 1 (between plus within) as the degrees of freedom.
        results.push((f_sf(f, d1, d2), n as i64 - 1, f));
    }
    results
}

impl AlgoOperator for AnovaTest {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let (xs, ys) = rows(&self.params, inputs)?;
        Ok(vec![output(
            self.params.bool("flatten")?,
            "fValue",
            &anova(&xs, &ys),
        )?])
    }
}

/// (p-value, degrees of freedom, F) of each feature: univariate linear regression F-test.
pub(crate) fn f_value(xs: &[Vec<f64>], ys: &[f64]) -> Vec<(f64, i64, f64)> {
    let n = xs.len() as f64;
    let ym = ys.iter().sum::<f64>() / n;
    let syy: f64 = ys.iter().map(|y| (y - ym).powi(2)).sum();
    let mut results = Vec::new();
    for j in 0..xs[0].len() {
        let xm = xs.iter().map(|x| x[j]).sum::<f64>() / n;
        let sxx: f64 = xs.iter().map(|x| (x[j] - xm).powi(2)).sum();
        let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x[j] - xm) * (y - ym)).sum();
        let r2 = sxy * sxy / (sxx * syy);
        let dof = n - 2.0;
        let f = r2 / (1.0 - r2) * dof;
        results.push((f_sf(f, 1.0, dof), dof as i64, f));
    }
    results
}

impl AlgoOperator for FValueTest {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let (xs, ys) = rows(&self.params, inputs)?;
        Ok(vec![output(
            self.params.bool("flatten")?,
            "fValue",
            &f_value(&xs, &ys),
        )?])
    }
}
