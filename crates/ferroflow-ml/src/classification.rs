//! NaiveBayes (categorical features, as Flink ML's) and Knn.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray};
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
use crate::stage::{AlgoOperator, Estimator, Model};
use crate::table::{OrdF64, column, doubles, first, vectors, with_columns};
use crate::vector::{Vector, dense_column, vector_column};

fn common_specs() -> Vec<ParamSpec> {
    vec![
        common::features_col(),
        common::label_col(),
        common::prediction_col(),
    ]
}

/// Labelled training vectors, all of one size.
fn labelled(params: &Params, batch: &RecordBatch) -> Result<Vec<(Vector, f64)>> {
    let fcol = params.str("featuresCol")?;
    let lcol = params.str("labelCol")?;
    let mut out = Vec::new();
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
        if let Some((first, _)) = out.first()
            && Vector::size(first) != f.size()
        {
            return Err(MlError::Row {
                row,
                message: "Feature vectors should be of equal length.".into(),
            });
        }
        out.push((f, l));
    }
    if out.is_empty() {
        return Err(MlError::Invalid("the training table is empty".into()));
    }
    Ok(out)
}

fn nb_specs() -> Vec<ParamSpec> {
    let mut v = common_specs();
    v.push(ParamSpec::new(
        "smoothing",
        ParamType::Double,
        json!(1.0),
        Validator::GtEq(0.0),
    ));
    v.push(ParamSpec::new(
        "modelType",
        ParamType::String,
        json!("multinomial"),
        Validator::OneOf(&["multinomial"]),
    ));
    v
}

crate::stage! {
    /// Naive Bayes over categorical features: every feature value is a category, as in Flink
    /// ML (`theta[label][feature]` maps a value to its log-probability).
    pub struct NaiveBayes("org.apache.flink.ml.classification.naivebayes.NaiveBayes", nb_specs()) {}
}

impl Estimator for NaiveBayes {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let data = labelled(&self.params, first(inputs)?)?;
        let s = self.params.f64("smoothing")?;
        let dim = data[0].0.size();
        let mut by_label: BTreeMap<OrdF64, Vec<&Vector>> = BTreeMap::new();
        for (f, l) in &data {
            by_label.entry(OrdF64(*l)).or_default().push(f);
        }
        // Distinct values of each feature over the whole table.
        let values: Vec<Vec<f64>> = (0..dim)
            .map(|j| {
                let mut v: Vec<f64> = data.iter().map(|(f, _)| f.get(j)).collect();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v
            })
            .collect();
        let (n, k) = (data.len() as f64, by_label.len() as f64);
        let mut labels = Vec::new();
        let mut pi = Vec::new();
        let mut theta = Vec::new();
        for (label, rows) in &by_label {
            let c = rows.len() as f64;
            labels.push(label.0);
            pi.push(((c + s) / (n + k * s)).ln());
            theta.push(
                (0..dim)
                    .map(|j| {
                        values[j]
                            .iter()
                            .map(|&v| {
                                let cnt = rows.iter().filter(|r| r.get(j) == v).count() as f64;
                                (v, ((cnt + s) / (c + values[j].len() as f64 * s)).ln())
                            })
                            .collect()
                    })
                    .collect(),
            );
        }
        Ok(Box::new(NaiveBayesModel {
            params: self.params.clone(),
            labels,
            pi,
            theta,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `theta` (per label and feature, value -> log-probability,
    /// as JSON), `piArray` and `labels`.
    pub struct NaiveBayesModel("org.apache.flink.ml.classification.naivebayes.NaiveBayesModel", nb_specs()) {
        labels: Vec<f64>,
        pi: Vec<f64>,
        theta: Vec<Vec<Vec<(f64, f64)>>>,
    }
}

impl AlgoOperator for NaiveBayesModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let fcol = self.params.str("featuresCol")?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, f) in vectors(batch, &fcol)?.into_iter().enumerate() {
            let Some(f) = f else {
                out.push(None);
                continue;
            };
            let mut best: Option<(f64, f64)> = None;
            for (k, label) in self.labels.iter().enumerate() {
                let theta = &self.theta[k];
                if f.size() != theta.len() {
                    return Err(MlError::Row {
                        row,
                        message: "Feature vectors should be of equal length.".into(),
                    });
                }
                let mut score = self.pi[k];
                for (j, probs) in theta.iter().enumerate() {
                    let x = f.get(j);
                    let p = probs
                        .iter()
                        .find(|(v, _)| *v == x)
                        .ok_or_else(|| MlError::Row {
                            row,
                            message: format!(
                                "column '{fcol}': feature {j} has value {x}, never seen in training"
                            ),
                        })?;
                    score += p.1;
                }
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, *label));
                }
            }
            out.push(best.map(|b| b.1));
        }
        let col = Arc::new(Float64Array::from(out));
        Ok(vec![with_columns(
            batch,
            vec![(self.params.str("predictionCol")?, col)],
        )?])
    }
}

impl Model for NaiveBayesModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let theta: Value = self
            .theta
            .iter()
            .map(|per_label| {
                per_label
                    .iter()
                    .map(|m| {
                        Value::Object(
                            m.iter()
                                .map(|(v, p)| {
                                    (crate::feature::string_indexer::java_double(*v), json!(p))
                                })
                                .collect(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .into();
        Ok(vec![RecordBatch::try_from_iter(vec![
            (
                "theta",
                Arc::new(StringArray::from(vec![theta.to_string()])) as _,
            ),
            ("piArray", dense_column(&[Some(self.pi.clone())])),
            ("labels", dense_column(&[Some(self.labels.clone())])),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        use arrow_array::cast::AsArray;
        let t = first(data)?;
        self.pi = crate::table::model_vector(t, "piArray")?;
        self.labels = crate::table::model_vector(t, "labels")?;
        let text = arrow_cast::cast(column(t, "theta")?, &arrow_schema::DataType::Utf8)?;
        let theta: Value = serde_json::from_str(text.as_string::<i32>().value(0))
            .map_err(|e| MlError::column("theta", e.to_string()))?;
        let bad = || MlError::column("theta", "expected [[{value: log-probability}]]");
        self.theta = theta
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|per_label| {
                per_label
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|m| {
                        m.as_object()
                            .ok_or_else(bad)?
                            .iter()
                            .map(|(k, p)| {
                                Ok((
                                    k.parse::<f64>().map_err(|_| bad())?,
                                    p.as_f64().ok_or_else(bad)?,
                                ))
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect::<Result<_>>()?;
        Ok(())
    }
}

fn knn_specs() -> Vec<ParamSpec> {
    let mut v = common_specs();
    v.push(ParamSpec::new(
        "k",
        ParamType::Int,
        json!(5),
        Validator::Gt(0.0),
    ));
    v
}

crate::stage! {
    /// K nearest neighbours (Euclidean), majority vote; ties go to the label whose neighbours
    /// are closer in total.
    pub struct Knn("org.apache.flink.ml.classification.knn.Knn", knn_specs()) {}
}

impl Estimator for Knn {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn Model>> {
        let data = labelled(&self.params, first(inputs)?)?;
        Ok(Box::new(KnnModel {
            params: self.params.clone(),
            points: data.into_iter().map(|(f, l)| (f.to_dense(), l)).collect(),
        }))
    }
}

crate::stage! {
    /// The fitted model: model data rows (`features`, `label`): the training points.
    pub struct KnnModel("org.apache.flink.ml.classification.knn.KnnModel", knn_specs()) {
        points: Vec<(Vec<f64>, f64)>,
    }
}

impl AlgoOperator for KnnModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = first(inputs)?;
        let fcol = self.params.str("featuresCol")?;
        let k = self.params.i64("k")? as usize;
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, f) in vectors(batch, &fcol)?.into_iter().enumerate() {
            let Some(f) = f else {
                out.push(None);
                continue;
            };
            let x = f.to_dense();
            let mut dist = Vec::with_capacity(self.points.len());
            for (p, l) in &self.points {
                if p.len() != x.len() {
                    return Err(MlError::Row {
                        row,
                        message: format!(
                            "column '{fcol}': vector of size {}, the model's have {}",
                            x.len(),
                            p.len()
                        ),
                    });
                }
                dist.push((
                    p.iter()
                        .zip(&x)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>(),
                    *l,
                ));
            }
            dist.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut votes: Vec<(f64, usize, f64)> = Vec::new();
            for &(d, l) in dist.iter().take(k) {
                match votes.iter_mut().find(|v| v.0 == l) {
                    Some(v) => {
                        v.1 += 1;
                        v.2 += d;
                    }
                    None => votes.push((l, 1, d)),
                }
            }
            votes.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.total_cmp(&b.2)));
            out.push(votes.first().map(|v| v.0));
        }
        let col = Arc::new(Float64Array::from(out));
        Ok(vec![with_columns(
            batch,
            vec![(self.params.str("predictionCol")?, col)],
        )?])
    }
}

impl Model for KnnModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        let features: Vec<Option<Vector>> = self
            .points
            .iter()
            .map(|(p, _)| Some(Vector::Dense(p.clone())))
            .collect();
        let labels: Float64Array = self.points.iter().map(|(_, l)| Some(*l)).collect();
        Ok(vec![RecordBatch::try_from_iter(vec![
            ("features", vector_column(&features)),
            ("label", Arc::new(labels) as _),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = first(data)?;
        let f = vectors(t, "features")?;
        let l = doubles(t, "label")?;
        self.points = f
            .into_iter()
            .zip(l)
            .filter_map(|(f, l)| Some((f?.to_dense(), l?)))
            .collect();
        Ok(())
    }
}
