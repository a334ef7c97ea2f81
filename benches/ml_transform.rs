//! StandardScaler and VectorAssembler transform throughput against this machine's memory
//! bandwidth, measured in the same run (a large buffer copy: bytes read + written per second).
//!
//! Run: cargo bench --no-default-features --features ml --bench ml_transform

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, FixedSizeListArray, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field};
use ferroflow::ml::{AnyStage, stage_from_json};
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn vectors(rows: usize, width: usize, seed: u64) -> ArrayRef {
    let mut x = seed;
    let values: Float64Array = (0..rows * width)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1000) as f64 / 100.0
        })
        .collect();
    Arc::new(FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float64, false)),
        width as i32,
        Arc::new(values),
        None,
    ))
}

/// Bytes read plus written per second by a plain copy of a 512 MiB buffer.
fn bandwidth() -> f64 {
    let n = 64 << 20;
    let src = vec![1.0f64; n];
    let mut dst = vec![0.0f64; n];
    let runs: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(&src);
            std::hint::black_box(&dst);
            (2 * n * 8) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    median(runs)
}

/// Input + output bytes per second of `stage` over `batch`, fed in 8192-row batches.
fn throughput(stage: serde_json::Value, fit: bool, batch: &RecordBatch, bytes: f64) -> f64 {
    let op: Box<dyn ferroflow::ml::AlgoOperator> = match stage_from_json(&stage).unwrap() {
        AnyStage::Estimator(e) if fit => e.fit(std::slice::from_ref(batch)).unwrap(),
        AnyStage::Operator(o) => o,
        _ => panic!("unexpected stage kind"),
    };
    // In batches of 8192 rows, as a dataflow job feeds a node (one huge batch would mostly
    // measure the kernel zeroing fresh pages for the output).
    let slices: Vec<RecordBatch> = (0..batch.num_rows())
        .step_by(8192)
        .map(|o| batch.slice(o, 8192.min(batch.num_rows() - o)))
        .collect();
    let run = || {
        for b in &slices {
            std::hint::black_box(op.transform(std::slice::from_ref(b)).unwrap());
        }
    };
    run();
    median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                run();
                bytes / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    let rows = 2_000_000;
    let bw = bandwidth();
    let scaler_in = RecordBatch::try_from_iter(vec![("features", vectors(rows, 20, 7))]).unwrap();
    // Reads 20 doubles a row, writes 20.
    let scaler = throughput(
        json!({"className": "StandardScaler", "paramMap": {"inputCol": "features", "outputCol": "scaled", "withMean": true}}),
        true,
        &scaler_in,
        (rows * 20 * 8 * 2) as f64,
    );
    let scalar = |seed: u64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            (0..rows).map(|i| ((i as u64 ^ seed) % 100) as f64),
        ))
    };
    let assembler_in = RecordBatch::try_from_iter(vec![
        ("a", vectors(rows, 10, 1)),
        ("b", vectors(rows, 8, 2)),
        ("c", scalar(3)),
        ("d", scalar(4)),
    ])
    .unwrap();
    let assembler = throughput(
        json!({"className": "VectorAssembler", "paramMap": {
            "inputCols": ["a", "b", "c", "d"], "outputCol": "v", "inputSizes": [10, 8, 1, 1]}}),
        false,
        &assembler_in,
        (rows * 20 * 8 * 2) as f64,
    );
    println!(
        "{}",
        json!({
            "rows": rows,
            "memory_bandwidth_gb_s": bw / 1e9,
            "standard_scaler_gb_s": scaler / 1e9,
            "standard_scaler_vs_bandwidth": scaler / bw,
            "vector_assembler_gb_s": assembler / 1e9,
            "vector_assembler_vs_bandwidth": assembler / bw,
        })
    );
}
