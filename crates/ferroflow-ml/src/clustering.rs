//! Clustering: KMeans (Lloyd's iterations, both cores) and AgglomerativeClustering.
//!
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
use crate::params::{ParamSpec, ParamType, Params, Validator, common};
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
                common::features_col(),
                common::prediction_col(),
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
        let batch = crate::table::first(inputs)?;
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
        // As Flink ML: a count window fires when full, so the rows of an incomplete last
        // window are never clustered and leave no output row.
        let fired = if size.is_some() {
            points.len() / window * window
        } else {
            points.len()
        };
        let points = &points[..fired];
        let batch = &batch.slice(0, fired);
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

fn kmeans_specs() -> Vec<ParamSpec> {
    vec![
        common::features_col(),
        common::prediction_col(),
        ParamSpec::new(
            "distanceMeasure",
            ParamType::String,
            json!("euclidean"),
            Validator::OneOf(&["euclidean", "manhattan", "cosine"]),
        ),
        ParamSpec::new(
            "initMode",
            ParamType::String,
            json!("random"),
            Validator::OneOf(&["random", "k-means++"]),
        ),
        ParamSpec::new("seed", ParamType::Int, json!(0), Validator::Always),
        ParamSpec::new("maxIter", ParamType::Int, json!(20), Validator::Gt(0.0)),
        ParamSpec::new("k", ParamType::Int, json!(2), Validator::GtEq(2.0)),
    ]
}

crate::stage! {
    /// KMeans: Lloyd's iterations from `k` initial centroids (`random`: distinct rows chosen
    /// with `seed`, as Flink ML; `k-means++` as an extension), for `maxIter` rounds or until no
    /// point changes cluster. Assignment runs on every core.
    pub struct KMeans("org.apache.flink.ml.clustering.kmeans.KMeans", kmeans_specs()) {}
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub(crate) fn nearest(measure: &str, x: &[f64], centroids: &[Vec<f64>]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (k, c) in centroids.iter().enumerate() {
        let d = if measure == "euclidean" {
            x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum()
        } else {
            distance(measure, x, c)
        };
        if d < best.1 {
            best = (k, d);
        }
    }
    best
}

/// Assign every point (in parallel chunks); returns per-cluster sums and counts.
fn assign(
    measure: &str,
    points: &[Vec<f64>],
    centroids: &[Vec<f64>],
    labels: &mut [usize],
) -> (Vec<Vec<f64>>, Vec<f64>, bool) {
    let (k, d) = (centroids.len(), points[0].len());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(points.len().div_ceil(10_000))
        .max(1);
    let chunk = points.len().div_ceil(threads);
    let partials: Vec<(Vec<Vec<f64>>, Vec<f64>, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = points
            .chunks(chunk)
            .zip(labels.chunks_mut(chunk))
            .map(|(ps, ls)| {
                s.spawn(move || {
                    let mut sums = vec![vec![0.0; d]; k];
                    let mut counts = vec![0.0; k];
                    let mut changed = false;
                    for (x, l) in ps.iter().zip(ls.iter_mut()) {
                        let (c, _) = nearest(measure, x, centroids);
                        changed |= *l != c;
                        *l = c;
                        counts[c] += 1.0;
                        for (s, v) in sums[c].iter_mut().zip(x) {
                            *s += v;
                        }
                    }
                    (sums, counts, changed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("kmeans worker"))
            .collect()
    });
    let mut sums = vec![vec![0.0; d]; k];
    let mut counts = vec![0.0; k];
    let mut changed = false;
    for (ps, pc, ch) in partials {
        changed |= ch;
        for c in 0..k {
            counts[c] += pc[c];
            for (s, v) in sums[c].iter_mut().zip(&ps[c]) {
                *s += v;
            }
        }
    }
    (sums, counts, changed)
}

/// Lloyd's iterations over a dense row-major matrix (squared Euclidean distances, all cores).
fn lloyd_dense(
    x: &[f64],
    dim: usize,
    k: usize,
    kmeans_pp: bool,
    seed: i64,
    max_iter: usize,
) -> Result<(Vec<Vec<f64>>, Vec<f64>)> {
    use crate::vector::squared_distance_dense as dist;
    let n = x.len() / dim.max(1);
    if n < k {
        return Err(MlError::Invalid(format!("{n} rows for k = {k} clusters")));
    }
    let row = |i: usize| &x[i * dim..(i + 1) * dim];
    let mut rng = Rng((seed as u64) ^ 0x9e37_79b9_7f4a_7c15);
    let mut c: Vec<f64> = Vec::with_capacity(k * dim);
    if kmeans_pp {
        c.extend_from_slice(row(rng.below(n)));
        let mut d: Vec<f64> = (0..n).map(|i| dist(row(i), &c[..dim])).collect();
        while c.len() < k * dim {
            let total: f64 = d.iter().sum();
            let mut r = (rng.next() as f64 / u64::MAX as f64) * total;
            let mut pick = n - 1;
            for (i, di) in d.iter().enumerate() {
                r -= di;
                if r <= 0.0 {
                    pick = i;
                    break;
                }
            }
            c.extend_from_slice(row(pick));
            let new = &c[c.len() - dim..];
            for (i, di) in d.iter_mut().enumerate() {
                *di = di.min(dist(row(i), new));
            }
        }
    } else {
        let mut chosen = std::collections::BTreeSet::new();
        while chosen.len() < k {
            chosen.insert(rng.below(n));
        }
        for i in chosen {
            c.extend_from_slice(row(i));
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = n.div_ceil(threads).max(1);
    let mut labels = vec![u32::MAX; n];
    let mut counts = vec![0.0; k];
    for _ in 0..max_iter {
        let centroids = &c;
        let parts: Vec<(Vec<f64>, Vec<f64>, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = labels
                .chunks_mut(chunk)
                .enumerate()
                .map(|(t, ls)| {
                    s.spawn(move || {
                        let mut sums = vec![0.0; k * dim];
                        let mut cnt = vec![0.0; k];
                        let mut changed = false;
                        for (j, l) in ls.iter_mut().enumerate() {
                            let p = &x[(t * chunk + j) * dim..(t * chunk + j + 1) * dim];
                            let mut best = (0usize, f64::INFINITY);
                            for q in 0..k {
                                let d = dist(p, &centroids[q * dim..(q + 1) * dim]);
                                if d < best.1 {
                                    best = (q, d);
                                }
                            }
                            changed |= *l != best.0 as u32;
                            *l = best.0 as u32;
                            cnt[best.0] += 1.0;
                            for (s, v) in sums[best.0 * dim..(best.0 + 1) * dim].iter_mut().zip(p) {
                                *s += v;
                            }
                        }
                        (sums, cnt, changed)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("kmeans worker"))
                .collect()
        });
        let mut sums = vec![0.0; k * dim];
        counts = vec![0.0; k];
        let mut changed = false;
        for (ps, pc, ch) in parts {
            changed |= ch;
            for (a, b) in sums.iter_mut().zip(ps) {
                *a += b;
            }
            for (a, b) in counts.iter_mut().zip(pc) {
                *a += b;
            }
        }
        for q in 0..k {
            if counts[q] > 0.0 {
                for j in 0..dim {
                    c[q * dim + j] = sums[q * dim + j] / counts[q];
                }
            }
        }
        if !changed {
            break;
        }
    }
    Ok((c.chunks(dim).map(<[f64]>::to_vec).collect(), counts))
}

impl crate::stage::Estimator for KMeans {
    fn fit(&self, inputs: &[RecordBatch]) -> Result<Box<dyn crate::stage::Model>> {
        let batch = crate::table::first(inputs)?;
        let p = &self.params;
        let k = p.i64("k")? as usize;
        let measure = p.str("distanceMeasure")?;
        let fcol = p.str("featuresCol")?;
        if measure == "euclidean"
            && let Some((x, dim)) = crate::vector::dense_matrix(crate::table::column(batch, &fcol)?)
        {
            let kmeans_pp = p.str("initMode")? == "k-means++";
            let seed = p.i64("seed")?;
            let (centroids, weights) =
                lloyd_dense(&x, dim, k, kmeans_pp, seed, p.i64("maxIter")? as usize)?;
            return Ok(Box::new(KMeansModel {
                params: self.params.clone(),
                centroids,
                weights,
            }));
        }
        let points: Vec<Vec<f64>> = crate::table::training_vectors(batch, &fcol)?
            .iter()
            .map(|v| v.to_dense())
            .collect();
        if points.len() < k {
            return Err(MlError::Invalid(format!(
                "{} rows for k = {k} clusters",
                points.len()
            )));
        }
        let mut rng = Rng((p.i64("seed")? as u64) ^ 0x9e37_79b9_7f4a_7c15);
        let mut centroids: Vec<Vec<f64>> = Vec::with_capacity(k);
        if p.str("initMode")? == "k-means++" {
            centroids.push(points[rng.below(points.len())].clone());
            while centroids.len() < k {
                let d: Vec<f64> = points
                    .iter()
                    .map(|x| nearest("euclidean", x, &centroids).1)
                    .collect();
                let total: f64 = d.iter().sum();
                let mut r = (rng.next() as f64 / u64::MAX as f64) * total;
                let mut pick = points.len() - 1;
                for (i, di) in d.iter().enumerate() {
                    r -= di;
                    if r <= 0.0 {
                        pick = i;
                        break;
                    }
                }
                centroids.push(points[pick].clone());
            }
        } else {
            let mut chosen = std::collections::BTreeSet::new();
            while chosen.len() < k {
                chosen.insert(rng.below(points.len()));
            }
            centroids = chosen.into_iter().map(|i| points[i].clone()).collect();
        }
        let mut labels = vec![usize::MAX; points.len()];
        let mut weights = vec![0.0; k];
        for _ in 0..p.i64("maxIter")? {
            let (sums, counts, changed) = assign(&measure, &points, &centroids, &mut labels);
            for c in 0..k {
                if counts[c] > 0.0 {
                    centroids[c] = sums[c].iter().map(|s| s / counts[c]).collect();
                }
            }
            weights = counts;
            if !changed {
                break;
            }
        }
        Ok(Box::new(KMeansModel {
            params: self.params.clone(),
            centroids,
            weights,
        }))
    }
}

crate::stage! {
    /// The fitted model: model data `centroids` (vectors) and `weights` (points per centroid).
    pub struct KMeansModel("org.apache.flink.ml.clustering.kmeans.KMeansModel", kmeans_specs()) {
        centroids: Vec<Vec<f64>>,
        weights: Vec<f64>,
    }
}

impl AlgoOperator for KMeansModel {
    fn transform(&self, inputs: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        let batch = crate::table::first(inputs)?;
        let measure = self.params.str("distanceMeasure")?;
        let fcol = self.params.str("featuresCol")?;
        let mut pred = Vec::with_capacity(batch.num_rows());
        for (row, v) in vectors(batch, &fcol)?.into_iter().enumerate() {
            pred.push(match v {
                None => None,
                Some(v) if self.centroids.first().is_some_and(|c| c.len() != v.size()) => {
                    return Err(MlError::Row {
                        row,
                        message: format!("column '{fcol}': vector of size {}", v.size()),
                    });
                }
                Some(v) => Some(nearest(&measure, &v.to_dense(), &self.centroids).0 as i32),
            });
        }
        Ok(vec![with_columns(
            batch,
            vec![(
                self.params.str("predictionCol")?,
                Arc::new(Int32Array::from(pred)) as _,
            )],
        )?])
    }
}

impl crate::stage::Model for KMeansModel {
    fn model_data(&self) -> Result<Vec<RecordBatch>> {
        Ok(vec![crate::table::one_row(vec![
            ("centroids", crate::table::nested_doubles(&self.centroids)),
            (
                "weights",
                crate::vector::dense_column(&[Some(self.weights.clone())]),
            ),
        ])?])
    }

    fn set_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let t = data
            .first()
            .ok_or_else(|| MlError::Invalid("no model data table".into()))?;
        self.centroids = crate::table::read_nested_doubles(t, "centroids")?;
        self.weights = crate::table::model_vector(t, "weights")?;
        Ok(())
    }
}
