//! UnivariateFeatureSelector: keep the features a univariate test finds most related to the
//! label: chi-squared (categorical features, categorical label), ANOVA F (continuous
//! features, categorical label) or regression F (continuous features and label).

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::first;
use crate::table::{column, one_row, vectors, with_columns};
use crate::vector::vector_column;

const MODES: &[&str] = &["numTopFeatures", "percentile", "fpr", "fdr", "fwe"];

fn specs() -> Vec<ParamSpec> {
    vec![
        common::features_col(),
        common::label_col(),
        ParamSpec::new(
            "outputCol",
            ParamType::String,
            json!("output"),
            Validator::Always,
        ),
        ParamSpec::new(
            "featureType",
            ParamType::String,
            Value::Null,
            Validator::OneOf(&["categorical", "continuous"]),
        ),
        ParamSpec::new(
            "labelType",
            ParamType::String,
            Value::Null,
            Validator::OneOf(&["categorical", "continuous"]),
        ),
        ParamSpec::new(
            "selectionMode",
            ParamType::String,
            json!("numTopFeatures"),
            Validator::OneOf(MODES),
        ),
        ParamSpec::new(
            "selectionThreshold",
            ParamType::Double,
            Value::Null,
            Validator::GtEq(0.0),
        ),
    ]
}

crate::stage! {
    /// The estimator: `featureType` and `labelType` choose the test; `selectionMode`
    /// (numTopFeatures, percentile, fpr, fdr, fwe) and `selectionThreshold` (defaults 50, 0.1,
    /// 0.05, 0.05, 0.05) choose the features.
    pub struct UnivariateFeatureSelector("org.apache.flink.ml.feature.univariatefeatureselector.UnivariateFeatureSelector", specs()) {}
}

/// The features selected from per-feature p-values.
pub(crate) fn select(p_values: &[f64], mode: &str, threshold: f64) -> Vec<usize> {
    let n = p_values.len();
    let mut by_p: Vec<usize> = (0..n).collect();
    by_p.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]).then(a.cmp(&b)));
    let mut chosen: Vec<usize> = match mode {
        "numTopFeatures" => by_p.into_iter().take(threshold as usize).collect(),
        "percentile" => by_p
            .into_iter()
            .take((n as f64 * threshold) as usize)
            .collect(),
        "fpr" => (0..n).filter(|&i| p_values[i] < threshold).collect(),
        "fwe" => (0..n)
            .filter(|&i| p_values[i] < threshold / n as f64)
            .collect(),
        // Benjamini-Hochberg: the largest rank whose p-value is within its share.
        _ => {
            let last = by_p
                .iter()
                .enumerate()
                .filter(|(rank, i)| p_values[**i] <= threshold * (*rank + 1) as f64 / n as f64)
                .map(|(rank, _)| rank)
                .next_back();
            last.map_or(Vec::new(), |r| by_p[..=r].to_vec())
        }
    };
    chosen.sort();
    chosen
}

impl Estimator for UnivariateFeatureSelector {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let p = &self.params;
        let (ft, lt) = (p.str("featureType")?, p.str("labelType")?);
        let mode = p.str("selectionMode")?;
        let threshold = match p.opt_f64("selectionThreshold")? {
            Some(t) => t,
            None => match mode.as_str() {
                "numTopFeatures" => 50.0,
                "percentile" => 0.1,
                _ => 0.05,
            },
        };
        if mode != "numTopFeatures" && threshold > 1.0 {
            return Err(MlError::param(
                "selectionThreshold",
                format!("{threshold} is above 1 for mode {mode}"),
            ));
        }
        let (xs, ys) = crate::stats::rows(p, inputs)?;
        let results = match (ft.as_str(), lt.as_str()) {
            ("categorical", "categorical") => crate::stats::chi_sq(&xs, &ys),
            ("continuous", "categorical") => crate::stats::anova(&xs, &ys),
            ("continuous", "continuous") => crate::stats::f_value(&xs, &ys),
            _ => {
                return Err(MlError::param(
                    "featureType",
                    "categorical features with a continuous label have no test",
                ));
            }
        };
        let p_values: Vec<f64> = results.iter().map(|r| r.0).collect();
        Ok(Box::new(UnivariateFeatureSelectorModel {
            params: self.params.clone(),
            indices: select(&p_values, &mode, threshold),
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `indices` (the features kept).
    pub struct UnivariateFeatureSelectorModel("org.apache.flink.ml.feature.univariatefeatureselector.UnivariateFeatureSelectorModel", specs()) {
        indices: Vec<usize>,
    }
}

impl AlgoOperator for UnivariateFeatureSelectorModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let fcol = self.params.str("featuresCol")?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &fcol)?.into_iter().enumerate() {
            out.push(match v {
                None => None,
                Some(v) if self.indices.last().is_some_and(|&i| i >= v.size()) => {
                    return Err(MlError::Row {
                        row,
                        message: format!("column '{fcol}': vector of size {}", v.size()),
                    });
                }
                Some(v) => Some(v.select(&self.indices)),
            });
        }
        Ok(vec![with_columns(
            batch,
            vec![(self.params.str("outputCol")?, vector_column(&out))],
        )?])
    }
}

impl Model for UnivariateFeatureSelectorModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let mut b = ListBuilder::new(Int64Builder::new());
        for &i in &self.indices {
            b.values().append_value(i as i64);
        }
        b.append(true);
        Ok(vec![one_row(vec![("indices", Arc::new(b.finish()))])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let l = column(first(data)?, "indices")?
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

#[cfg(test)]
mod tests {
    use super::select;

    #[test]
    fn selection_modes() {
        let p = [0.04, 0.5, 0.001, 0.02, 0.3];
        assert_eq!(select(&p, "numTopFeatures", 2.0), vec![2, 3]);
        assert_eq!(select(&p, "percentile", 0.6), vec![0, 2, 3]);
        assert_eq!(select(&p, "fpr", 0.05), vec![0, 2, 3]);
        assert_eq!(select(&p, "fwe", 0.05), vec![2]);
        // BH at 0.05 over 5: thresholds .01 .02 .03 .04 .05 for ranks 1..5; sorted p .001
        // .02 .04 .3 .5: ranks 1, 2 and 3 pass (.04 <= .03? no: rank 3 fails) -> ranks 1-2.
        assert_eq!(select(&p, "fdr", 0.05), vec![2, 3]);
    }
}
