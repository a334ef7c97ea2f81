//! OnlineLogisticRegression: FTRL-Proximal per global mini-batch, as Flink ML's
//! `org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression`.
//!
//! Per batch of `globalBatchSize` rows (in arrival order; a trailing partial batch never
//! fires) the gradient is computed with the model as it was before the batch:
//! `g_i = sum((p - y) * x_i) / weightSum_i`, where `weightSum_i` counts the rows (dense
//! vectors) or sums the row weights of the rows that store index `i` (sparse vectors); the
//! gradient itself is not weighted, as in Flink ML. Then, per coefficient,
//! `sigma = (sqrt(n + g^2) - sqrt(n)) / alpha; z += g - sigma * w; n += g^2;
//! w = |z| <= l1 ? 0 : (sign(z) * l1 - z) / ((beta + sqrt(n)) / alpha + l2)` with
//! `l1 = elasticNet * reg`, `l2 = (1 - elasticNet) * reg`. Versions count 1, 2, 3, ... (the
//! initial model, which is required, is not emitted).

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_engine::state::{StateDecoder, StateEncoder};
use serde_json::json;

use super::{
    LearnContext, OnlineEstimator, OnlineLearner, check_parallelism, get_f64s, initial_model_spec,
    inline_model_data, newest_row, put_f64s, state_err, version_array,
};
use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model, Stage};
use crate::table::{column, doubles, model_vector, one_row, with_columns};
use crate::vector::{Vector, dense_column, dense_matrix_view, dense_type, read_vectors};

const VERSION: &str = "modelVersion";

fn model_specs() -> Vec<ParamSpec> {
    vec![
        common::features_col(),
        common::prediction_col(),
        ParamSpec::new(
            "rawPredictionCol",
            ParamType::String,
            json!("rawPrediction"),
            Validator::Always,
        ),
        ParamSpec::new(
            "modelVersionCol",
            ParamType::String,
            json!("modelVersion"),
            Validator::Always,
        ),
    ]
}

fn specs() -> Vec<ParamSpec> {
    let mut s = model_specs();
    s.extend([
        common::label_col(),
        common::weight_col(),
        ParamSpec::new(
            "batchStrategy",
            ParamType::String,
            json!("count"),
            Validator::OneOf(&["count"]),
        ),
        ParamSpec::new(
            "globalBatchSize",
            ParamType::Int,
            json!(32),
            Validator::Gt(0.0),
        ),
        ParamSpec::new("reg", ParamType::Double, json!(0.0), Validator::GtEq(0.0)),
        ParamSpec::new(
            "elasticNet",
            ParamType::Double,
            json!(0.0),
            Validator::InRange(0.0, 1.0),
        ),
        ParamSpec::new("alpha", ParamType::Double, json!(0.1), Validator::Gt(0.0)),
        ParamSpec::new("beta", ParamType::Double, json!(0.1), Validator::Gt(0.0)),
        initial_model_spec(),
    ]);
    s
}

crate::stage! {
    /// The estimator. The initial model comes from the `initialModelData` param (one model-data
    /// row: `coefficient`, `modelVersion`) or [`OnlineLogisticRegression::set_initial_model_data`]
    /// (a batch LogisticRegression's model data, say).
    pub struct OnlineLogisticRegression("org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression", specs()) {
        initial: Option<RecordBatch>,
    }
}

impl OnlineLogisticRegression {
    fn initial_model(&self) -> Result<(Vec<f64>, i64)> {
        let t = match &self.initial {
            Some(t) => t.clone(),
            None => match self.params.get("initialModelData") {
                Ok(v) => inline_model_data("initialModelData", v)?,
                Err(_) => {
                    return Err(MlError::param(
                        "initialModelData",
                        "OnlineLogisticRegression needs an initial model: one model-data row \
                         {\"coefficient\": {\"values\": [...]}, \"modelVersion\": 0} \
                         (or model data given with --model-data)",
                    ));
                }
            },
        };
        decode(&t)
    }
}

fn decode(t: &RecordBatch) -> Result<(Vec<f64>, i64)> {
    let coef = model_vector(t, "coefficient")?;
    Ok((coef, super::first_int(t, VERSION, 0)?))
}

fn model_data_row(coef: &[f64], version: i64) -> Result<RecordBatch> {
    one_row(vec![
        ("coefficient", dense_column(&[Some(coef.to_vec())])),
        (
            "startIndex",
            Arc::new(Int64Array::from(vec![0])) as ArrayRef,
        ),
        (
            "endIndex",
            Arc::new(Int64Array::from(vec![coef.len() as i64])) as ArrayRef,
        ),
        (VERSION, version_array(version)),
    ])
}

impl Estimator for OnlineLogisticRegression {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        super::fit_by_replay(self, inputs)
    }

    fn as_online(&self) -> Option<&dyn OnlineEstimator> {
        Some(self)
    }

    fn as_online_mut(&mut self) -> Option<&mut dyn OnlineEstimator> {
        Some(self)
    }
}

/// The columns the model appends.
fn output_fields(p: &Params) -> Result<Vec<Field>> {
    Ok(vec![
        Field::new(p.str("predictionCol")?, DataType::Float64, true),
        Field::new(p.str("rawPredictionCol")?, dense_type(), true),
        Field::new(p.str("modelVersionCol")?, DataType::Int64, true),
    ])
}

impl OnlineEstimator for OnlineLogisticRegression {
    fn learner(&self, schema: &Schema, ctx: &LearnContext) -> Result<Box<dyn OnlineLearner>> {
        let p = &self.params;
        let batch_size = p.i64("globalBatchSize")? as usize;
        check_parallelism(ctx, batch_size)?;
        let features = p.str("featuresCol")?;
        let label = p.str("labelCol")?;
        let weight = p.opt_str("weightCol")?;
        for c in [Some(&features), Some(&label), weight.as_ref()]
            .into_iter()
            .flatten()
        {
            schema
                .field_with_name(c)
                .map_err(|_| MlError::column(c, "not in the training stream"))?;
        }
        let (coef, version) = self.initial_model()?;
        let (reg, en) = (p.f64("reg")?, p.f64("elasticNet")?);
        Ok(Box::new(Ftrl {
            features,
            label,
            weight,
            batch_size,
            alpha: p.f64("alpha")?,
            beta: p.f64("beta")?,
            l1: en * reg,
            l2: (1.0 - en) * reg,
            n: vec![0.0; coef.len()],
            sqrt_n: vec![0.0; coef.len()],
            z: vec![0.0; coef.len()],
            grad: vec![0.0; coef.len()],
            wsum: vec![0.0; coef.len()],
            coef,
            in_batch: 0,
            sparse_in_batch: false,
            version,
            emitted: 0,
            outputs: (
                p.str("predictionCol")?,
                p.str("rawPredictionCol")?,
                p.str("modelVersionCol")?,
            ),
        }))
    }

    fn scored_fields(&self) -> Result<Vec<Field>> {
        output_fields(&self.params)
    }

    fn set_initial_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        self.initial = Some(newest_row(data, VERSION)?);
        Ok(())
    }

    fn new_model(&self) -> Result<Box<dyn Model>> {
        let mut m = OnlineLogisticRegressionModel::default();
        super::copy_params(&self.params, &mut m.params)?;
        Ok(Box::new(m))
    }

    fn model_data_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("coefficient", dense_type(), true),
            Field::new("startIndex", DataType::Int64, true),
            Field::new("endIndex", DataType::Int64, true),
            Field::new(VERSION, DataType::Int64, true),
        ]))
    }
}

/// One training run's state.
struct Ftrl {
    features: String,
    label: String,
    weight: Option<String>,
    batch_size: usize,
    alpha: f64,
    beta: f64,
    l1: f64,
    l2: f64,
    coef: Vec<f64>,
    n: Vec<f64>,
    /// `sqrt(n)`, kept so that an update takes one square root per coefficient, not three.
    sqrt_n: Vec<f64>,
    z: Vec<f64>,
    /// The gradient and weight sums of the batch being gathered.
    grad: Vec<f64>,
    wsum: Vec<f64>,
    in_batch: usize,
    /// Whether a sparse row is in the batch (else every weight sum is `in_batch`).
    sparse_in_batch: bool,
    /// Version of `coef`.
    version: i64,
    /// Versions emitted by this run (the first emitted is 1).
    emitted: i64,
    outputs: (String, String, String),
}

/// A batch's feature rows, without copying dense input.
enum Features<'a> {
    Dense(&'a [f64], usize),
    Rows(Vec<Option<Vector>>),
}

impl<'a> Features<'a> {
    fn of(batch: &'a RecordBatch, col: &str) -> Result<Self> {
        let c = column(batch, col)?;
        if let Some((x, w)) = dense_matrix_view(c) {
            return Ok(Features::Dense(x, w));
        }
        Ok(Features::Rows(read_vectors(col, c)?))
    }
}

/// `w . x` for row `row` of feature column `features`, checking its size.
fn dot(features: &str, coef: &[f64], f: &Features<'_>, row: usize) -> Result<f64> {
    let dim = coef.len();
    let size_error = |size: usize| MlError::Row {
        row,
        message: format!("column '{features}': vector of size {size}, the model has {dim}"),
    };
    match f {
        Features::Dense(x, w) => {
            if *w != dim {
                return Err(size_error(*w));
            }
            Ok(crate::vector::dot_dense(&x[row * w..(row + 1) * w], coef))
        }
        Features::Rows(r) => match &r[row] {
            None => Err(MlError::Row {
                row,
                message: format!("column '{features}': The vector must not be null."),
            }),
            Some(v) if v.size() != dim => Err(size_error(v.size())),
            Some(v) => Ok(v.stored().map(|(i, x)| coef[i] * x).sum()),
        },
    }
}

impl Ftrl {
    /// Add row `row` to the batch's gradient; update the model when the batch is full
    /// (then true).
    fn add(&mut self, f: &Features<'_>, row: usize, dot: f64, label: f64, weight: f64) -> bool {
        let p = 1.0 / (1.0 + (-dot).exp());
        let e = p - label;
        match f {
            Features::Dense(x, w) => {
                crate::simd::axpy(&mut self.grad, e, &x[row * w..(row + 1) * w]);
                self.wsum.iter_mut().for_each(|s| *s += 1.0);
            }
            Features::Rows(r) => match r[row].as_ref().expect("checked by dot") {
                Vector::Dense(x) => {
                    crate::simd::axpy(&mut self.grad, e, x);
                    self.wsum.iter_mut().for_each(|s| *s += 1.0);
                }
                Vector::Sparse {
                    indices, values, ..
                } => {
                    self.sparse_in_batch = true;
                    for (&i, xi) in indices.iter().zip(values) {
                        self.grad[i] += e * xi;
                        self.wsum[i] += weight;
                    }
                }
            },
        }
        self.in_batch += 1;
        if self.in_batch < self.batch_size {
            return false;
        }
        self.update();
        true
    }

    fn update(&mut self) {
        let p = crate::simd::FtrlParams {
            alpha: self.alpha,
            beta: self.beta,
            l1: self.l1,
            l2: self.l2,
        };
        // A batch of one dense row has every weight sum 1: no division.
        let wsum = (self.sparse_in_batch || self.in_batch != 1).then_some(&self.wsum[..]);
        crate::simd::ftrl_step(
            p,
            crate::simd::FtrlState {
                coef: &mut self.coef,
                n: &mut self.n,
                sqrt_n: &mut self.sqrt_n,
                z: &mut self.z,
            },
            &self.grad,
            wsum,
        );
        self.grad.iter_mut().for_each(|g| *g = 0.0);
        self.wsum.iter_mut().for_each(|w| *w = 0.0);
        self.in_batch = 0;
        self.sparse_in_batch = false;
        self.emitted += 1;
        self.version = self.emitted;
    }

    fn labels(&self, batch: &RecordBatch) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
        let nonnull = |name: &str, v: Vec<Option<f64>>| -> Result<Vec<f64>> {
            v.into_iter()
                .enumerate()
                .map(|(row, x)| {
                    x.ok_or_else(|| MlError::Row {
                        row,
                        message: format!("column '{name}' is null"),
                    })
                })
                .collect()
        };
        let labels = nonnull(&self.label, doubles(batch, &self.label)?)?;
        let weights = match &self.weight {
            Some(w) => Some(nonnull(w, doubles(batch, w)?)?),
            None => None,
        };
        Ok((labels, weights))
    }

    /// Learn from every row; with `scores`, first score each row with the model as it is
    /// (and build no model-data rows: progressive validation reads the model in place).
    fn run(
        &mut self,
        batch: &RecordBatch,
        mut scores: Option<&mut Scores>,
    ) -> Result<Vec<RecordBatch>> {
        let f = Features::of(batch, &self.features)?;
        let (labels, weights) = self.labels(batch)?;
        let mut out = Vec::new();
        for row in 0..batch.num_rows() {
            if let (Some(s), Features::Rows(r)) = (scores.as_deref_mut(), &f)
                && r[row].is_none()
            {
                s.push_null();
                continue;
            }
            let dot = dot(&self.features, &self.coef, &f, row)?;
            if let Some(s) = scores.as_deref_mut() {
                s.push(dot, self.version);
            }
            let w = weights.as_ref().map_or(1.0, |w| w[row]);
            if self.add(&f, row, dot, labels[row], w) && scores.is_none() {
                out.push(model_data_row(&self.coef, self.version)?);
            }
        }
        Ok(out)
    }
}

/// Scores of rows: `prediction`, `rawPrediction` and the version that scored them.
#[derive(Default)]
struct Scores {
    prediction: Vec<Option<f64>>,
    /// `[1 - p, p]` per row, flat (zeros for a row without a score).
    raw: Vec<f64>,
    version: Vec<Option<i64>>,
}

impl Scores {
    fn push(&mut self, dot: f64, version: i64) {
        let p = 1.0 - 1.0 / (1.0 + dot.exp());
        self.prediction
            .push(Some(if dot >= 0.0 { 1.0 } else { 0.0 }));
        self.raw.extend([1.0 - p, p]);
        self.version.push(Some(version));
    }

    fn push_null(&mut self) {
        self.prediction.push(None);
        self.raw.extend([0.0, 0.0]);
        self.version.push(None);
    }

    fn columns(self, names: &(String, String, String)) -> Vec<(String, ArrayRef)> {
        let raw = if self.version.iter().all(Option::is_some) {
            crate::vector::dense_matrix_column(self.raw, 2)
        } else {
            let rows: Vec<Option<Vec<f64>>> = self
                .raw
                .chunks_exact(2)
                .zip(&self.version)
                .map(|(r, v)| v.map(|_| r.to_vec()))
                .collect();
            dense_column(&rows)
        };
        vec![
            (
                names.0.clone(),
                Arc::new(Float64Array::from(self.prediction)) as ArrayRef,
            ),
            (names.1.clone(), raw),
            (
                names.2.clone(),
                Arc::new(Int64Array::from(self.version)) as ArrayRef,
            ),
        ]
    }
}

impl OnlineLearner for Ftrl {
    fn learn(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        self.run(batch, None)
    }

    fn score_then_learn(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let mut s = Scores::default();
        self.run(batch, Some(&mut s))?;
        Ok(vec![with_columns(batch, s.columns(&self.outputs))?])
    }

    fn snapshot(&self, e: &mut StateEncoder) {
        for v in [&self.coef, &self.n, &self.z, &self.grad, &self.wsum] {
            put_f64s(e, v);
        }
        e.u64(self.in_batch as u64)
            .i64(self.version)
            .i64(self.emitted);
    }

    fn restore(&mut self, d: &mut StateDecoder<'_>) -> Result<()> {
        let dim = self.coef.len();
        for v in [
            &mut self.coef,
            &mut self.n,
            &mut self.z,
            &mut self.grad,
            &mut self.wsum,
        ] {
            *v = get_f64s(d)?;
            if v.len() != dim {
                return Err(MlError::Invalid(format!(
                    "learner state has {} coefficients, the initial model {dim}",
                    v.len()
                )));
            }
        }
        self.sqrt_n = self.n.iter().map(|n| n.sqrt()).collect();
        self.in_batch = d.u64().map_err(state_err)? as usize;
        // Unknown after a restore: the per-coefficient weight sums are always right.
        self.sparse_in_batch = true;
        self.version = d.i64().map_err(state_err)?;
        self.emitted = d.i64().map_err(state_err)?;
        Ok(())
    }
}

crate::stage! {
    /// The model: scores with the newest model data it was given (`coefficient`,
    /// `modelVersion`) and writes `prediction`, `rawPrediction` [1 - p, p] and the version.
    pub struct OnlineLogisticRegressionModel("org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegressionModel", model_specs()) {
        coef: Option<(Vec<f64>, i64)>,
    }
}

impl AlgoOperator for OnlineLogisticRegressionModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = crate::table::first(inputs)?;
        let (coef, version) = self
            .coef
            .as_ref()
            .ok_or_else(|| MlError::Invalid(format!("{}: no model data", self.class_name())))?;
        let p = &self.params;
        let fcol = p.str("featuresCol")?;
        let outputs = (
            p.str("predictionCol")?,
            p.str("rawPredictionCol")?,
            p.str("modelVersionCol")?,
        );
        let f = Features::of(batch, &fcol)?;
        let mut s = Scores::default();
        for row in 0..batch.num_rows() {
            match &f {
                Features::Rows(r) if r[row].is_none() => s.push_null(),
                _ => s.push(dot(&fcol, coef, &f, row)?, *version),
            }
        }
        Ok(vec![with_columns(batch, s.columns(&outputs))?])
    }
}

impl Model for OnlineLogisticRegressionModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        match &self.coef {
            Some((c, v)) => Ok(vec![model_data_row(c, *v)?]),
            None => Ok(Vec::new()),
        }
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        self.coef = Some(decode(&newest_row(data, VERSION)?)?);
        Ok(())
    }

    fn version(&self) -> Option<i64> {
        self.coef.as_ref().map(|(_, v)| *v)
    }

    fn output_schema(&self, input: &Schema) -> Result<Option<SchemaRef>> {
        Ok(Some(super::appended(input, output_fields(&self.params)?)))
    }
}
