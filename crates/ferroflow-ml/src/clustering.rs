//! AgglomerativeClustering (Flink ML's `org.apache.flink.ml.clustering.agglomerativeclustering`):
//! bottom-up merging by ward, complete, single or average linkage, until `numClusters` remain
//! or the closest pair is at least `distanceThreshold` apart; per count window on request.
//!
//! Two outputs, as Flink ML's: the input with the cluster id (`predictionCol`), and the merge
//! info (`clusterId1`, `clusterId2`, `distance`, `sizeOfMergedCluster`; new clusters are
//! numbered from n on, as scipy's linkage matrix). Exact, in memory: O(n^2) memory and
//! O(n^3) time per window.

use std::sync::Arc;

use arrow_array::{Float64Array, Int32Array, Int64Array, RecordBatch};
use serde_json::{Value, json};

use crate::error::{MlError, Result};
use crate::params::{ParamSpec, ParamType, Params, Validator};
use crate::stage::AlgoOperator;
use crate::table::{vectors, with_columns};

/// The AlgoOperator.
#[derive(Debug, Clone)]
pub struct AgglomerativeClustering {
    params: Params,
}

impl Default for AgglomerativeClustering {
    fn default() -> Self {
        AgglomerativeClustering {
            params: Params::new(vec![
                ParamSpec::new(
                    "featuresCol",
                    ParamType::String,
                    json!("features"),
                    Validator::Always,
                ),
                ParamSpec::new(
                    "predictionCol",
                    ParamType::String,
                    json!("prediction"),
                    Validator::Always,
                ),
                ParamSpec::new("numClusters", ParamType::Int, json!(2), Validator::Gt(0.0)),
                ParamSpec::new(
                    "distanceThreshold",
                    ParamType::Double,
                    Value::Null,
                    Validator::GtEq(0.0),
                ),
                ParamSpec::new(
                    "linkage",
                    ParamType::String,
                    json!("ward"),
                    Validator::OneOf(&["ward", "complete", "single", "average"]),
                ),
                ParamSpec::new(
                    "distanceMeasure",
                    ParamType::String,
                    json!("euclidean"),
                    Validator::OneOf(&["euclidean", "manhattan", "cosine"]),
                ),
                ParamSpec::new(
                    "computeFullTree",
                    ParamType::Bool,
                    json!(false),
                    Validator::Always,
                ),
                ParamSpec::new(
                    "windows",
                    ParamType::Window,
                    json!({"class": "org.apache.flink.ml.common.window.GlobalWindows"}),
                    Validator::Always,
                ),
            ]),
        }
    }
}

crate::impl_stage!(
    AgglomerativeClustering,
    "org.apache.flink.ml.clustering.agglomerativeclustering.AgglomerativeClustering"
);

fn distance(measure: &str, a: &[f64], b: &[f64]) -> f64 {
    match measure {
        "manhattan" => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
        "cosine" => {
            let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
            let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
        _ => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt(),
    }
}

/// Merge record: (id1, id2, distance, size).
type Merge = (i64, i64, f64, i64);

struct Settings<'a> {
    linkage: &'a str,
    measure: &'a str,
    num_clusters: Option<usize>,
    threshold: Option<f64>,
    full_tree: bool,
}

/// Cluster `points`; returns a cluster index per point and the merges.
fn cluster(points: &[Vec<f64>], s: &Settings<'_>) -> (Vec<i32>, Vec<Merge>) {
    let n = points.len();
    let mut members: Vec<Option<Vec<usize>>> = (0..n).map(|i| Some(vec![i])).collect();
    let mut ids: Vec<i64> = (0..n as i64).collect();
    let pd: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| distance(s.measure, &points[i], &points[j]))
                .collect()
        })
        .collect();
    let centroid = |m: &[usize]| -> Vec<f64> {
        let d = points[m[0]].len();
        (0..d)
            .map(|k| m.iter().map(|&i| points[i][k]).sum::<f64>() / m.len() as f64)
            .collect()
    };
    let link = |a: &[usize], b: &[usize]| -> f64 {
        match s.linkage {
            "single" => a
                .iter()
                .flat_map(|&i| b.iter().map(move |&j| (i, j)))
                .map(|(i, j)| pd[i][j])
                .fold(f64::INFINITY, f64::min),
            "complete" => a
                .iter()
                .flat_map(|&i| b.iter().map(move |&j| (i, j)))
                .map(|(i, j)| pd[i][j])
                .fold(0.0, f64::max),
            "average" => {
                a.iter()
                    .flat_map(|&i| b.iter().map(move |&j| (i, j)))
                    .map(|(i, j)| pd[i][j])
                    .sum::<f64>()
                    / (a.len() * b.len()) as f64
            }
            _ => {
                // Ward: sqrt(2 |a||b| / (|a| + |b|)) * ||c_a - c_b|| (scipy's).
                let (na, nb) = (a.len() as f64, b.len() as f64);
                let (ca, cb) = (centroid(a), centroid(b));
                (2.0 * na * nb / (na + nb)).sqrt() * distance("euclidean", &ca, &cb)
            }
        }
    };
    let mut merges = Vec::new();
    let mut assignment: Option<Vec<i32>> = None;
    let mut next_id = n as i64;
    loop {
        let active: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].is_some())
            .collect();
        let mut best: Option<(f64, usize, usize)> = None;
        for (x, &a) in active.iter().enumerate() {
            for &b in &active[x + 1..] {
                let d = link(
                    members[a].as_ref().expect("active"),
                    members[b].as_ref().expect("active"),
                );
                if best.is_none_or(|(bd, _, _)| d < bd) {
                    best = Some((d, a, b));
                }
            }
        }
        let done = match (s.num_clusters, s.threshold) {
            (_, Some(t)) => best.is_none_or(|(d, _, _)| d >= t),
            (Some(k), None) => active.len() <= k,
            (None, None) => active.len() <= 1,
        };
        if done && assignment.is_none() {
            let mut a = vec![0i32; n];
            for (c, &i) in active.iter().enumerate() {
                for &p in members[i].as_ref().expect("active") {
                    a[p] = c as i32;
                }
            }
            assignment = Some(a);
            if !s.full_tree {
                break;
            }
        }
        let Some((d, a, b)) = best else { break };
        let mut merged = members[a].take().expect("active");
        merged.extend(members[b].take().expect("active"));
        merges.push((ids[a], ids[b], d, merged.len() as i64));
        members.push(Some(merged));
        ids.push(next_id);
        next_id += 1;
    }
    (assignment.unwrap_or_else(|| vec![0; n]), merges)
}

impl AlgoOperator for AgglomerativeClustering {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = inputs
            .first()
            .ok_or_else(|| MlError::Invalid("no input table".into()))?;
        let p = &self.params;
        let num_clusters = p.opt_i64("numClusters")?.map(|k| k as usize);
        let threshold = p.opt_f64("distanceThreshold")?;
        if num_clusters.is_some() == threshold.is_some() {
            return Err(MlError::param(
                "distanceThreshold",
                "exactly one of numClusters and distanceThreshold must be set",
            ));
        }
        let linkage = p.str("linkage")?;
        let measure = p.str("distanceMeasure")?;
        if linkage == "ward" && measure != "euclidean" {
            return Err(MlError::param(
                "distanceMeasure",
                "ward linkage needs euclidean distances",
            ));
        }
        let window = p.get("windows")?;
        let size = match window.get("class").and_then(Value::as_str) {
            Some(c) if c.ends_with("GlobalWindows") => None,
            Some(c) if c.ends_with("CountTumblingWindows") => Some(
                window
                    .get("size")
                    .and_then(Value::as_u64)
                    .filter(|&s| s > 0)
                    .ok_or_else(|| {
                        MlError::param("windows", "CountTumblingWindows needs a positive 'size'")
                    })? as usize,
            ),
            other => {
                return Err(MlError::param(
                    "windows",
                    format!(
                        "{other:?}: supported windows are GlobalWindows and CountTumblingWindows"
                    ),
                ));
            }
        };
        let fcol = p.str("featuresCol")?;
        let points: Vec<Vec<f64>> = vectors(batch, &fcol)?
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                v.map(|v| v.to_dense()).ok_or_else(|| MlError::Row {
                    row,
                    message: format!("column '{fcol}' is null"),
                })
            })
            .collect::<Result<_>>()?;
        let settings = Settings {
            linkage: &linkage,
            measure: &measure,
            num_clusters,
            threshold,
            full_tree: p.bool("computeFullTree")?,
        };
        let window = size.unwrap_or(points.len().max(1));
        let mut pred = Vec::with_capacity(points.len());
        let mut merges = Vec::new();
        // Cluster ids run on across windows, so no two windows share one.
        let mut offset = 0;
        for chunk in points.chunks(window) {
            let (a, m) = cluster(chunk, &settings);
            let next = a.iter().max().map_or(0, |m| m + 1);
            pred.extend(a.into_iter().map(|c| c + offset));
            offset += next;
            merges.extend(m);
        }
        let out = with_columns(
            batch,
            vec![(
                p.str("predictionCol")?,
                Arc::new(Int32Array::from(pred)) as _,
            )],
        )?;
        let info = RecordBatch::try_from_iter(vec![
            (
                "clusterId1",
                Arc::new(Int64Array::from_iter_values(merges.iter().map(|m| m.0))) as _,
            ),
            (
                "clusterId2",
                Arc::new(Int64Array::from_iter_values(merges.iter().map(|m| m.1))) as _,
            ),
            (
                "distance",
                Arc::new(Float64Array::from_iter_values(merges.iter().map(|m| m.2))) as _,
            ),
            (
                "sizeOfMergedCluster",
                Arc::new(Int64Array::from_iter_values(merges.iter().map(|m| m.3))) as _,
            ),
        ])?;
        Ok(vec![out, info])
    }
}
