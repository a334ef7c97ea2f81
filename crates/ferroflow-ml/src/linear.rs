//! Linear models trained with Flink ML's SGD: LogisticRegression (binomial, and multinomial,
//! which Flink ML announces but does not implement), LinearSVC, LinearRegression. No
//! intercept term, as in Flink ML.
//!
//! Multinomial: labels are class indices `0, 1, .., k-1`; `multiClass` `auto` picks it when
//! a label is not 0 or 1. The model data's `coefficient` then holds the k coefficient
//! vectors one after the other and `numClasses` says k; `rawPrediction` is the k class
//! probabilities and `prediction` the most probable class.

use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch};
use serde_json::json;

use crate::error::{MlError, Result};
use crate::optimizer::{Dataset, Features, Loss, Sgd};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::{column, doubles, model_vector, one_row, vectors, with_columns};
use crate::vector::dense_column;

/// Which linear model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Logistic,
    Svc,
    Regression,
}

fn specs(kind: Kind) -> Vec<ParamSpec> {
    let mut v = vec![
        common::features_col(),
        common::label_col(),
        common::weight_col(),
        common::prediction_col(),
        ParamSpec::new("maxIter", ParamType::Int, json!(20), Validator::Gt(0.0)),
        ParamSpec::new(
            "learningRate",
            ParamType::Double,
            json!(0.1),
            Validator::Gt(0.0),
        ),
        ParamSpec::new(
            "globalBatchSize",
            ParamType::Int,
            json!(32),
            Validator::Gt(0.0),
        ),
        ParamSpec::new("tol", ParamType::Double, json!(1e-6), Validator::GtEq(0.0)),
        ParamSpec::new("reg", ParamType::Double, json!(0.0), Validator::GtEq(0.0)),
        ParamSpec::new(
            "elasticNet",
            ParamType::Double,
            json!(0.0),
            Validator::InRange(0.0, 1.0),
        ),
        ParamSpec::new("seed", ParamType::Int, json!(0), Validator::Always),
    ];
    match kind {
        Kind::Logistic => {
            v.push(ParamSpec::new(
                "rawPredictionCol",
                ParamType::String,
                json!("rawPrediction"),
                Validator::Always,
            ));
            v.push(ParamSpec::new(
                "multiClass",
                ParamType::String,
                json!("auto"),
                Validator::OneOf(&["auto", "binomial", "multinomial"]),
            ));
        }
        Kind::Svc => {
            v.push(ParamSpec::new(
                "rawPredictionCol",
                ParamType::String,
                json!("rawPrediction"),
                Validator::Always,
            ));
            v.push(ParamSpec::new(
                "threshold",
                ParamType::Double,
                json!(0.0),
                Validator::Always,
            ));
        }
        Kind::Regression => {}
    }
    v
}

/// Shuffle with a seeded xorshift (Flink ML shuffles with Java's generator; with a full
/// batch per round, as in its tests, the order does not matter).
fn shuffle<T>(v: &mut [T], seed: i64) {
    let mut x = (seed as u64) ^ 0x9e37_79b9_7f4a_7c15;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// Coefficients, and the number of classes of a multinomial model.
type Fitted = (Vec<f64>, Option<usize>);

fn fit(kind: Kind, params: &Params, inputs: &[RecordBatch]) -> Result<Fitted> {
    let batch = crate::table::first(inputs)?;
    let features_col = params.str("featuresCol")?;
    let label_col = params.str("labelCol")?;
    let labels = doubles(batch, &label_col)?;
    let weights = match params.opt_str("weightCol")? {
        Some(w) => doubles(batch, &w)?,
        None => vec![Some(1.0); batch.num_rows()],
    };
    let n = batch.num_rows();
    let multi_class = if kind == Kind::Logistic {
        params.str("multiClass")?
    } else {
        String::new()
    };
    let mut label_values = Vec::with_capacity(n);
    let mut weight_values = Vec::with_capacity(n);
    for (row, (l, w)) in labels.into_iter().zip(weights).enumerate() {
        let bad = |m: String| MlError::Row { row, message: m };
        let label = l.ok_or_else(|| bad(format!("column '{label_col}' is null")))?;
        let binary = label == 0.0 || label == 1.0;
        match kind {
            Kind::Svc if !binary => {
                return Err(bad(format!("label {label}: labels must be 0 or 1")));
            }
            Kind::Logistic if !binary && multi_class == "binomial" => {
                return Err(bad(format!(
                    "label {label}: multiClass is binomial, so labels must be 0 or 1 (use auto or multinomial for more classes)"
                )));
            }
            Kind::Logistic if !(label >= 0.0 && label.fract() == 0.0 && label < 1e6) => {
                return Err(bad(format!(
                    "label {label}: classes are numbered 0, 1, 2, ..."
                )));
            }
            _ => {}
        }
        label_values.push(label);
        weight_values.push(w.unwrap_or(1.0));
    }
    // The order SGD visits rows in: a seeded shuffle of them all.
    let mut order: Vec<u32> = (0..n as u32).collect();
    shuffle(&mut order, params.i64("seed")?);
    // Dense rows become one matrix already in visiting order (one copy of the Arrow buffer,
    // then every round reads memory sequentially instead of jumping between rows); anything
    // else row by row.
    let features_array = column(batch, &features_col)?;
    let dense = if features_array.data_type() == &arrow_schema::DataType::Float64 {
        None
    } else {
        crate::vector::dense_matrix_view(features_array)
    };
    let (features, dim) = match dense {
        Some((x, dim)) => {
            let mut shuffled = Vec::with_capacity(x.len());
            for &i in &order {
                let i = i as usize;
                shuffled.extend_from_slice(&x[i * dim..(i + 1) * dim]);
            }
            label_values = order.iter().map(|&i| label_values[i as usize]).collect();
            weight_values = order.iter().map(|&i| weight_values[i as usize]).collect();
            order = (0..n as u32).collect();
            (Features::Dense { x: shuffled, dim }, dim)
        }
        None => {
            let mut rows = Vec::with_capacity(n);
            let mut dim = None;
            for (row, f) in vectors(batch, &features_col)?.into_iter().enumerate() {
                let f = f.ok_or_else(|| MlError::Row {
                    row,
                    message: format!("column '{features_col}' is null"),
                })?;
                if *dim.get_or_insert(f.size()) != f.size() {
                    return Err(MlError::Row {
                        row,
                        message: format!(
                            "column '{features_col}': vector of size {}, the first row's has {}",
                            f.size(),
                            dim.unwrap_or(0)
                        ),
                    });
                }
                rows.push(f);
            }
            (Features::Rows(rows), dim.unwrap_or(0))
        }
    };
    if n == 0 {
        return Err(MlError::Invalid("the training table is empty".into()));
    }
    let classes = match multi_class.as_str() {
        "multinomial" | "auto" if kind == Kind::Logistic => {
            let k = label_values.iter().fold(0.0_f64, |m, l| m.max(*l)) as usize + 1;
            (multi_class == "multinomial" || k > 2).then_some(k.max(2))
        }
        _ => None,
    };
    let data = Dataset {
        features,
        labels: label_values,
        weights: weight_values,
    };
    let sgd = Sgd {
        max_iter: params.i64("maxIter")? as usize,
        learning_rate: params.f64("learningRate")?,
        global_batch_size: params.i64("globalBatchSize")? as usize,
        tol: params.f64("tol")?,
        reg: params.f64("reg")?,
        elastic_net: params.f64("elasticNet")?,
    };
    if let Some(k) = classes {
        return Ok((sgd.optimize_softmax(&data, &order, dim, k), Some(k)));
    }
    let loss = match kind {
        Kind::Logistic => Loss::BinaryLogistic,
        Kind::Svc => Loss::Hinge,
        Kind::Regression => Loss::LeastSquare,
    };
    Ok((sgd.optimize_dataset(&data, &order, dim, loss), None))
}

fn transform(
    kind: Kind,
    params: &Params,
    (coef, classes): (&[f64], Option<usize>),
    inputs: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let k = classes.unwrap_or(1).max(1);
    let dim = coef.len() / k;
    let batch = crate::table::first(inputs)?;
    let features_col = params.str("featuresCol")?;
    let mut prediction = Vec::with_capacity(batch.num_rows());
    let mut raw = Vec::with_capacity(batch.num_rows());
    for (row, f) in vectors(batch, &features_col)?.into_iter().enumerate() {
        let Some(f) = f else {
            prediction.push(None);
            raw.push(None);
            continue;
        };
        if f.size() != dim {
            return Err(MlError::Row {
                row,
                message: format!(
                    "column '{features_col}': vector of size {}, the model has {dim}",
                    f.size(),
                ),
            });
        }
        if classes.is_some() {
            let z: Vec<f64> = (0..k)
                .map(|c| {
                    let w = &coef[c * dim..(c + 1) * dim];
                    f.stored().map(|(i, v)| w[i] * v).sum()
                })
                .collect();
            let p = crate::optimizer::softmax(&z);
            // The most probable class; the lowest index on a tie.
            let best = (0..k).fold(0, |b, c| if p[c] > p[b] { c } else { b });
            prediction.push(Some(best as f64));
            raw.push(Some(p));
            continue;
        }
        let dot: f64 = f.stored().map(|(i, v)| coef[i] * v).sum();
        match kind {
            Kind::Logistic => {
                let p = 1.0 - 1.0 / (1.0 + dot.exp());
                prediction.push(Some(if dot >= 0.0 { 1.0 } else { 0.0 }));
                raw.push(Some(vec![1.0 - p, p]));
            }
            Kind::Svc => {
                let t = params.f64("threshold")?;
                prediction.push(Some(if dot >= t { 1.0 } else { 0.0 }));
                raw.push(Some(vec![dot, -dot]));
            }
            Kind::Regression => prediction.push(Some(dot)),
        }
    }
    let mut cols = vec![(
        params.str("predictionCol")?,
        Arc::new(Float64Array::from(prediction)) as _,
    )];
    if kind != Kind::Regression {
        cols.push((params.str("rawPredictionCol")?, dense_column(&raw)));
    }
    Ok(vec![with_columns(batch, cols)?])
}

fn model_data(kind: Kind, coef: &[f64], classes: Option<usize>) -> Result<Vec<RecordBatch>> {
    let mut cols = vec![("coefficient", dense_column(&[Some(coef.to_vec())]))];
    if let Some(k) = classes {
        cols.push((
            "numClasses",
            Arc::new(Int64Array::from(vec![k as i64])) as _,
        ));
    }
    if kind == Kind::Logistic {
        cols.push(("startIndex", Arc::new(Int64Array::from(vec![0])) as _));
        cols.push((
            "endIndex",
            Arc::new(Int64Array::from(vec![coef.len() as i64])) as _,
        ));
        cols.push(("modelVersion", Arc::new(Int64Array::from(vec![0])) as _));
    }
    Ok(vec![one_row(cols)?])
}

macro_rules! linear_stage {
    ($est:ident, $model:ident, $kind:expr, $class:literal, $model_class:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $est {
            params: Params,
        }

        impl Default for $est {
            fn default() -> Self {
                $est {
                    params: Params::new(specs($kind)),
                }
            }
        }

        crate::impl_stage!($est, $class);

        impl Estimator for $est {
            fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
                let (coef, classes) = fit($kind, &self.params, inputs)?;
                Ok(Box::new($model {
                    params: self.params.clone(),
                    coef,
                    classes,
                }))
            }
        }

        #[doc = concat!("The fitted model of ", stringify!($est), ": model data `coefficient`.")]
        #[derive(Debug, Clone)]
        pub struct $model {
            params: Params,
            coef: Vec<f64>,
            classes: Option<usize>,
        }

        impl Default for $model {
            fn default() -> Self {
                $model {
                    params: Params::new(specs($kind)),
                    coef: Vec::new(),
                    classes: None,
                }
            }
        }

        crate::impl_stage!($model, $model_class);

        impl AlgoOperator for $model {
            fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
                transform($kind, &self.params, (&self.coef, self.classes), inputs)
            }
        }

        impl Model for $model {
            fn model_data(&self) -> Result<Vec<RecordBatch>> {
                model_data($kind, &self.coef, self.classes)
            }

            fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
                let t = data
                    .first()
                    .ok_or_else(|| MlError::Invalid("no model data table".into()))?;
                self.coef = model_vector(t, "coefficient")?;
                self.classes = match t.column_by_name("numClasses") {
                    Some(_) => {
                        let k = doubles(t, "numClasses")?
                            .first()
                            .copied()
                            .flatten()
                            .ok_or_else(|| MlError::Invalid("numClasses is null".into()))?
                            as i64;
                        if k < 2 || self.coef.len() % k as usize != 0 {
                            return Err(MlError::Invalid(format!(
                                "numClasses {k} does not divide the {} coefficients",
                                self.coef.len()
                            )));
                        }
                        Some(k as usize)
                    }
                    None => None,
                };
                Ok(())
            }
        }
    };
}

linear_stage!(
    LogisticRegression,
    LogisticRegressionModel,
    Kind::Logistic,
    "org.apache.flink.ml.classification.logisticregression.LogisticRegression",
    "org.apache.flink.ml.classification.logisticregression.LogisticRegressionModel",
    "Logistic regression: binomial (`prediction` 0/1, `rawPrediction` [1 - p, p]) or multinomial (`prediction` the most probable class, `rawPrediction` the class probabilities)."
);

linear_stage!(
    LinearSvc,
    LinearSvcModel,
    Kind::Svc,
    "org.apache.flink.ml.classification.linearsvc.LinearSVC",
    "org.apache.flink.ml.classification.linearsvc.LinearSVCModel",
    "Linear support vector classifier: `prediction` (dot >= threshold) and `rawPrediction` [dot, -dot]."
);

linear_stage!(
    LinearRegression,
    LinearRegressionModel,
    Kind::Regression,
    "org.apache.flink.ml.regression.linearregression.LinearRegression",
    "org.apache.flink.ml.regression.linearregression.LinearRegressionModel",
    "Least-squares linear regression: `prediction` = coefficient . features."
);
