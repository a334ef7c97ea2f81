//! OnlineKMeans: mini-batch k-means with decay, as Flink ML's
//! `org.apache.flink.ml.clustering.kmeans.OnlineKMeans`.
//!
//! Per batch of `globalBatchSize` rows, each point goes to its closest centroid (as the
//! model was before the batch); then `weights *= decayFactor` and for each centroid that
//! got `n > 0` points: `w += n; lambda = n / w; c = (1 - lambda) c + lambda mean(points)`.
//! Flink ML splits a batch among subtasks and merges their centroids weighted by weight,
//! which gives the same centroids as this single pass. The initial model (from KMeans, from
//! given model data, or random: `java.util.Random(seed).nextDouble()` per coordinate, as
//! Flink ML's `KMeansModelData.generateRandomModelData`) is the first element of the model
//! stream, version 0; each batch emits the next version.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_engine::state::{StateDecoder, StateEncoder};
use serde_json::{Value, json};

use super::{
    JavaRandom, LearnContext, OnlineEstimator, OnlineLearner, check_parallelism, get_f64s,
    initial_model_spec, newest_row, put_f64s, state_err, version_array,
};
use crate::clustering::nearest;
use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Validator, common, json_f64, vector_param};
use crate::stage::{AlgoOperator, Estimator, Model, Stage};
use crate::table::{column, model_vector, nested_doubles, one_row, read_nested_doubles};
use crate::vector::{Vector, dense_column, dense_matrix_view, dense_type, read_vectors};

const VERSION: &str = "modelVersion";
const CLASS: &str = "org.apache.flink.ml.clustering.kmeans.OnlineKMeans";

/// Java's `String.hashCode`, Flink ML's default seed (`getClass().getName().hashCode()`).
fn java_hash(s: &str) -> i64 {
    crate::java::string_hash(s) as i64
}

fn model_specs() -> Vec<ParamSpec> {
    vec![
        common::features_col(),
        common::prediction_col(),
        ParamSpec::new(
            "distanceMeasure",
            ParamType::String,
            json!("euclidean"),
            Validator::OneOf(&["euclidean", "manhattan", "cosine"]),
        ),
        ParamSpec::new("k", ParamType::Int, json!(2), Validator::Gt(1.0)),
    ]
}

fn specs() -> Vec<ParamSpec> {
    let mut s = model_specs();
    s.extend([
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
        ParamSpec::new(
            "decayFactor",
            ParamType::Double,
            json!(0.0),
            Validator::InRange(0.0, 1.0),
        ),
        ParamSpec::new(
            "seed",
            ParamType::Int,
            json!(java_hash(CLASS)),
            Validator::Always,
        ),
        initial_model_spec(),
    ]);
    s
}

crate::stage! {
    /// The estimator. The initial model: `initialModelData` as `{"centroids": [[...], ...],
    /// "weights": [...]}` or `{"random": {"dim": D, "weight": W, "seed": S}}` (`seed` defaults
    /// to the stage's), or [`OnlineKMeans::set_initial_model_data`] (a KMeans model's data).
    pub struct OnlineKMeans(CLASS, specs()) {
        initial: Option<RecordBatch>,
    }
}

impl OnlineKMeans {
    fn initial_model(&self) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
        if let Some(t) = &self.initial {
            return decode(t);
        }
        let bad = |m: &str| MlError::param("initialModelData", m.to_string());
        let v = self.params.get("initialModelData").map_err(|_| {
            bad(
                "OnlineKMeans needs an initial model: {\"centroids\": [[...], ...], \"weights\": \
                 [...]}, {\"random\": {\"dim\": D, \"weight\": W, \"seed\": S}} or model data \
                 given with --model-data",
            )
        })?;
        let k = self.params.i64("k")? as usize;
        if let Some(r) = v.get("random") {
            let dim = r
                .get("dim")
                .and_then(Value::as_u64)
                .filter(|d| *d > 0 && *d <= i32::MAX as u64)
                .ok_or_else(|| bad("random: 'dim' must be a positive integer"))?
                as usize;
            let weight = r
                .get("weight")
                .map_or(Some(0.0), json_f64)
                .ok_or_else(|| bad("random: 'weight' must be a number"))?;
            let seed = match r.get("seed") {
                Some(s) => s
                    .as_i64()
                    .ok_or_else(|| bad("random: 'seed' must be an integer"))?,
                None => self.params.i64("seed")?,
            };
            if k.saturating_mul(dim) > 1 << 26 {
                return Err(bad("random: k x dim is too large"));
            }
            let mut rng = JavaRandom::new(seed);
            let centroids = (0..k)
                .map(|_| (0..dim).map(|_| rng.next_double()).collect())
                .collect();
            return Ok((centroids, vec![weight; k]));
        }
        let centroids: Vec<Vec<f64>> = v
            .get("centroids")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("needs 'centroids' (an array of vectors) or 'random'"))?
            .iter()
            .map(|c| match c {
                Value::Array(a) => a.iter().map(json_f64).collect::<Option<Vec<f64>>>(),
                other => vector_param(other).map(|v| v.to_dense()),
            })
            .collect::<Option<_>>()
            .ok_or_else(|| bad("'centroids' must be vectors"))?;
        let weights = match v.get("weights") {
            None => vec![0.0; centroids.len()],
            Some(Value::Array(a)) => a
                .iter()
                .map(json_f64)
                .collect::<Option<_>>()
                .ok_or_else(|| bad("'weights' must be numbers"))?,
            Some(other) => vector_param(other)
                .ok_or_else(|| bad("'weights' must be a vector"))?
                .to_dense(),
        };
        Ok((centroids, weights))
    }
}

fn decode(t: &RecordBatch) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let centroids = match read_nested_doubles(t, "centroids") {
        Ok(c) => c,
        // Centroids written as a list of vectors.
        Err(_) => {
            let col = column(t, "centroids")?;
            let list = arrow_array::cast::AsArray::as_list_opt::<i32>(col.as_ref())
                .ok_or_else(|| MlError::column("centroids", "expected a list of vectors"))?;
            read_vectors("centroids", &list.value(0))?
                .into_iter()
                .map(|v| {
                    v.map(|v| v.to_dense())
                        .ok_or_else(|| MlError::column("centroids", "a centroid is null"))
                })
                .collect::<Result<_>>()?
        }
    };
    Ok((centroids, model_vector(t, "weights")?))
}

fn model_data_row(centroids: &[Vec<f64>], weights: &[f64], version: i64) -> Result<RecordBatch> {
    one_row(vec![
        ("centroids", nested_doubles(centroids)),
        ("weights", dense_column(&[Some(weights.to_vec())])),
        (VERSION, version_array(version)),
    ])
}

fn check_model(centroids: &[Vec<f64>], weights: &[f64], k: usize) -> Result<()> {
    if centroids.len() != k || weights.len() != k {
        return Err(MlError::param(
            "initialModelData",
            format!(
                "{} centroids and {} weights for k = {k}",
                centroids.len(),
                weights.len()
            ),
        ));
    }
    if centroids
        .iter()
        .any(|c| c.len() != centroids[0].len() || c.is_empty())
    {
        return Err(MlError::param(
            "initialModelData",
            "centroids of different or zero sizes",
        ));
    }
    Ok(())
}

impl Estimator for OnlineKMeans {
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

impl OnlineEstimator for OnlineKMeans {
    fn learner(&self, schema: &Schema, ctx: &LearnContext) -> Result<Box<dyn OnlineLearner>> {
        let p = &self.params;
        let batch_size = p.i64("globalBatchSize")? as usize;
        check_parallelism(ctx, batch_size)?;
        let features = p.str("featuresCol")?;
        schema
            .field_with_name(&features)
            .map_err(|_| MlError::column(&features, "not in the training stream"))?;
        let k = p.i64("k")? as usize;
        let (centroids, weights) = self.initial_model()?;
        check_model(&centroids, &weights, k)?;
        // Model data given as a table (a version this stage emitted) goes on from its
        // version; an inline or random start is version 0.
        let version = match &self.initial {
            Some(t) => super::first_int(t, VERSION, 0)?,
            None => 0,
        };
        let dim = centroids[0].len();
        Ok(Box::new(MiniBatch {
            features,
            measure: p.str("distanceMeasure")?,
            batch_size,
            decay: p.f64("decayFactor")?,
            sums: vec![vec![0.0; dim]; k],
            counts: vec![0; k],
            centroids,
            weights,
            in_batch: 0,
            version,
            prediction: p.str("predictionCol")?,
        }))
    }

    fn scored_fields(&self) -> Result<Vec<Field>> {
        Ok(vec![
            Field::new(self.params.str("predictionCol")?, DataType::Int32, true),
            Field::new(VERSION, DataType::Int64, true),
        ])
    }

    /// Model data with `centroids` and `weights` (a KMeans model's; the newest row by
    /// `modelVersion`).
    fn set_initial_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        self.initial = Some(newest_row(data, VERSION)?);
        Ok(())
    }

    fn new_model(&self) -> Result<Box<dyn Model>> {
        let mut m = OnlineKMeansModel::default();
        super::copy_params(&self.params, &mut m.params)?;
        Ok(Box::new(m))
    }

    fn model_data_schema(&self) -> SchemaRef {
        let list = |f| DataType::List(Arc::new(Field::new("item", f, true)));
        Arc::new(Schema::new(vec![
            Field::new("centroids", list(list(DataType::Float64)), true),
            Field::new("weights", dense_type(), true),
            Field::new(VERSION, DataType::Int64, true),
        ]))
    }
}

/// Per row scored: the closest centroid and the version that chose it.
type Assigned = (Vec<Option<i32>>, Vec<Option<i64>>);

struct MiniBatch {
    features: String,
    measure: String,
    batch_size: usize,
    decay: f64,
    centroids: Vec<Vec<f64>>,
    weights: Vec<f64>,
    /// Per centroid, the sum and count of the batch's points assigned to it.
    sums: Vec<Vec<f64>>,
    counts: Vec<u64>,
    in_batch: usize,
    version: i64,
    prediction: String,
}

/// Row `row` of feature column `features` as a dense point of size `dim`.
fn point(
    features: &str,
    dim: usize,
    dense: Option<(&[f64], usize)>,
    rows: &[Option<Vector>],
    row: usize,
) -> Result<Vec<f64>> {
    let x = match dense {
        Some((x, w)) => x[row * w..(row + 1) * w].to_vec(),
        None => rows[row]
            .as_ref()
            .ok_or_else(|| MlError::Row {
                row,
                message: format!("column '{features}': The vector must not be null."),
            })?
            .to_dense(),
    };
    if x.len() != dim {
        return Err(MlError::Row {
            row,
            message: format!(
                "column '{features}': vector of size {}, the centroids have {dim}",
                x.len()
            ),
        });
    }
    Ok(x)
}

impl MiniBatch {
    fn update(&mut self) -> Result<RecordBatch> {
        for w in self.weights.iter_mut() {
            *w *= self.decay;
        }
        for i in 0..self.centroids.len() {
            let n = self.counts[i];
            if n == 0 {
                continue;
            }
            self.weights[i] += n as f64;
            let lambda = n as f64 / self.weights[i];
            for (c, s) in self.centroids[i].iter_mut().zip(&self.sums[i]) {
                *c = *c * (1.0 - lambda) + lambda / n as f64 * s;
            }
        }
        for s in self.sums.iter_mut() {
            s.iter_mut().for_each(|x| *x = 0.0);
        }
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.in_batch = 0;
        self.version += 1;
        model_data_row(&self.centroids, &self.weights, self.version)
    }

    fn run(
        &mut self,
        batch: &RecordBatch,
        mut scores: Option<&mut Assigned>,
    ) -> Result<Vec<RecordBatch>> {
        let col = column(batch, &self.features)?;
        let dense = dense_matrix_view(col);
        let rows = match dense {
            Some(_) => Vec::new(),
            None => read_vectors(&self.features, col)?,
        };
        let mut out = Vec::new();
        for row in 0..batch.num_rows() {
            if let Some(s) = scores.as_deref_mut()
                && dense.is_none()
                && rows[row].is_none()
            {
                s.0.push(None);
                s.1.push(None);
                continue;
            }
            let x = point(&self.features, self.centroids[0].len(), dense, &rows, row)?;
            let (c, _) = nearest(&self.measure, &x, &self.centroids);
            if let Some(s) = scores.as_deref_mut() {
                s.0.push(Some(c as i32));
                s.1.push(Some(self.version));
            }
            for (s, v) in self.sums[c].iter_mut().zip(&x) {
                *s += v;
            }
            self.counts[c] += 1;
            self.in_batch += 1;
            if self.in_batch == self.batch_size {
                out.push(self.update()?);
            }
        }
        Ok(out)
    }
}

impl OnlineLearner for MiniBatch {
    fn initial(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(vec![model_data_row(
            &self.centroids,
            &self.weights,
            self.version,
        )?])
    }

    fn learn(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        self.run(batch, None)
    }

    fn score_then_learn(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let mut s = (Vec::new(), Vec::new());
        self.run(batch, Some(&mut s))?;
        Ok(vec![crate::table::with_columns(
            batch,
            vec![
                (
                    self.prediction.clone(),
                    Arc::new(Int32Array::from(s.0)) as ArrayRef,
                ),
                (
                    VERSION.to_string(),
                    Arc::new(Int64Array::from(s.1)) as ArrayRef,
                ),
            ],
        )?])
    }

    fn snapshot(&self, e: &mut StateEncoder) {
        e.u64(self.centroids.len() as u64);
        for (c, s) in self.centroids.iter().zip(&self.sums) {
            put_f64s(e, c);
            put_f64s(e, s);
        }
        put_f64s(e, &self.weights);
        e.u64(self.counts.len() as u64);
        for c in &self.counts {
            e.u64(*c);
        }
        e.u64(self.in_batch as u64).i64(self.version);
    }

    fn restore(&mut self, d: &mut StateDecoder<'_>) -> Result<()> {
        let k = d.count(16).map_err(state_err)?;
        let dim = self.centroids[0].len();
        if k != self.centroids.len() {
            return Err(MlError::Invalid(format!(
                "learner state has {k} centroids, k is {}",
                self.centroids.len()
            )));
        }
        for i in 0..k {
            self.centroids[i] = get_f64s(d)?;
            self.sums[i] = get_f64s(d)?;
            if self.centroids[i].len() != dim || self.sums[i].len() != dim {
                return Err(MlError::Invalid(format!(
                    "learner state: centroid {i} is not of size {dim}"
                )));
            }
        }
        self.weights = get_f64s(d)?;
        let n = d.count(8).map_err(state_err)?;
        if n != k || self.weights.len() != k {
            return Err(MlError::Invalid(
                "learner state: counts do not match k".into(),
            ));
        }
        for c in self.counts.iter_mut() {
            *c = d.u64().map_err(state_err)?;
        }
        self.in_batch = d.u64().map_err(state_err)? as usize;
        self.version = d.i64().map_err(state_err)?;
        Ok(())
    }
}

crate::stage! {
    /// The model: the closest centroid of the newest model data it was given.
    pub struct OnlineKMeansModel("org.apache.flink.ml.clustering.kmeans.OnlineKMeansModel", model_specs()) {
        model: Option<(Vec<Vec<f64>>, Vec<f64>, i64)>,
    }
}

impl AlgoOperator for OnlineKMeansModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = crate::table::first(inputs)?;
        let (centroids, _, _) = self
            .model
            .as_ref()
            .ok_or_else(|| MlError::Invalid(format!("{}: no model data", self.class_name())))?;
        let fcol = self.params.str("featuresCol")?;
        let measure = self.params.str("distanceMeasure")?;
        let dim = centroids.first().map_or(0, Vec::len);
        let col = column(batch, &fcol)?;
        let dense = dense_matrix_view(col);
        let rows = match dense {
            Some(_) => Vec::new(),
            None => read_vectors(&fcol, col)?,
        };
        let pred = (0..batch.num_rows())
            .map(|row| {
                if dense.is_none() && rows[row].is_none() {
                    return Ok(None);
                }
                let x = point(&fcol, dim, dense, &rows, row)?;
                Ok(Some(nearest(&measure, &x, centroids).0 as i32))
            })
            .collect::<Result<Vec<Option<i32>>>>()?;
        Ok(vec![crate::table::with_columns(
            batch,
            vec![(
                self.params.str("predictionCol")?,
                Arc::new(Int32Array::from(pred)) as ArrayRef,
            )],
        )?])
    }
}

impl Model for OnlineKMeansModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        match &self.model {
            Some((c, w, v)) => Ok(vec![model_data_row(c, w, *v)?]),
            None => Ok(Vec::new()),
        }
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = newest_row(data, VERSION)?;
        let (c, w) = decode(&t)?;
        let k = self.params.i64("k")? as usize;
        if c.len() > k {
            return Err(MlError::Invalid(format!(
                "model data has {} centroids, k is {k}",
                c.len()
            )));
        }
        check_model(&c, &w, c.len())?;
        self.model = Some((c, w, super::first_int(&t, VERSION, 0)?));
        Ok(())
    }

    fn version(&self) -> Option<i64> {
        self.model.as_ref().map(|m| m.2)
    }

    fn output_schema(&self, input: &Schema) -> Result<Option<SchemaRef>> {
        Ok(Some(super::appended(
            input,
            vec![Field::new(
                self.params.str("predictionCol")?,
                DataType::Int32,
                true,
            )],
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn java_string_hash() {
        // Java: "abc".hashCode() == 96354; "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(super::java_hash("abc"), 96354);
        assert_eq!(super::java_hash("polygenelubricants"), i32::MIN as i64);
    }
}
