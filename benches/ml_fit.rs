//! Fitting LogisticRegression and KMeans on 1 M x 20 rows, against scikit-learn on the same
//! rows in the same run (`benches/ml/compare.sh` makes the data and runs both).
//!
//! Quality is reported beside time: accuracy for the logistic regression, inertia (sum of
//! squared distances to the nearest centroid) for KMeans.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, FixedSizeListArray, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field};
use ferroflow::ml::{AnyStage, stage_from_json};
use serde_json::json;

fn read_f64(path: &str) -> Vec<f64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn table(x: Vec<f64>, dim: usize, y: Option<Vec<f64>>) -> RecordBatch {
    let features = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float64, false)),
        dim as i32,
        Arc::new(Float64Array::from(x)),
        None,
    );
    let mut cols: Vec<(&str, ArrayRef)> = vec![("features", Arc::new(features))];
    if let Some(y) = y {
        cols.push(("label", Arc::new(Float64Array::from(y))));
    }
    RecordBatch::try_from_iter(cols).unwrap()
}

fn fit(stage: serde_json::Value, t: &RecordBatch) -> (f64, Box<dyn ferroflow::ml::Model>) {
    let AnyStage::Estimator(e) = stage_from_json(&stage).unwrap() else {
        panic!()
    };
    let start = Instant::now();
    let m = e.fit(std::slice::from_ref(t)).unwrap();
    (start.elapsed().as_secs_f64(), m)
}

fn main() {
    let dir = std::env::var("FERROFLOW_BENCH_ML_DATA").expect("run benches/ml/compare.sh");
    let dim: usize = 20;
    let x = read_f64(&format!("{dir}/lr_x.f64"));
    let y = read_f64(&format!("{dir}/lr_y.f64"));
    let rows = y.len();
    let t = table(x, dim, Some(y.clone()));
    if std::env::var_os("FERROFLOW_BENCH_VERBOSE").is_some() {
        let s = Instant::now();
        let v = ferroflow::ml::vector::read_vectors("features", t.column(0)).unwrap();
        eprintln!(
            "read_vectors: {:.3} s for {} rows",
            s.elapsed().as_secs_f64(),
            v.len()
        );
    }
    let (lr_seconds, lr) = fit(
        json!({"className": "LogisticRegression", "paramMap": {
            "globalBatchSize": 10000, "maxIter": 300, "learningRate": 1.0}}),
        &t,
    );
    let out = lr.transform(std::slice::from_ref(&t)).unwrap();
    let pred = out[0].column_by_name("prediction").unwrap();
    let pred = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Float64Type>(pred);
    let correct = pred.values().iter().zip(&y).filter(|(a, b)| a == b).count();

    let blobs = read_f64(&format!("{dir}/km_x.f64"));
    let kt = table(blobs.clone(), dim, None);
    let (km_seconds, km) = fit(
        json!({"className": "KMeans", "paramMap": {"k": 10, "maxIter": 20, "initMode": "k-means++"}}),
        &kt,
    );
    let md = km.model_data().unwrap();
    let centroids_col = md[0].column_by_name("centroids").unwrap();
    let outer = arrow_array::cast::AsArray::as_list::<i32>(centroids_col);
    let centroids: Vec<Vec<f64>> = ferroflow::ml::vector::read_vectors("c", &outer.value(0))
        .unwrap()
        .into_iter()
        .map(|v| v.unwrap().to_dense())
        .collect();
    let inertia: f64 = blobs
        .chunks_exact(dim)
        .map(|p| {
            centroids
                .iter()
                .map(|c| c.iter().zip(p).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
                .fold(f64::INFINITY, f64::min)
        })
        .sum();
    println!(
        "{}",
        json!({
            "rows": rows,
            "lr_seconds": lr_seconds,
            "lr_accuracy": correct as f64 / rows as f64,
            "kmeans_seconds": km_seconds,
            "kmeans_inertia": inertia,
        })
    );
}
