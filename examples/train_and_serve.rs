//! Training inside the dataflow: one job trains a TorchScript linear model on a stream of
//! labelled rows and, on another stream, serves requests with each model version the trainer
//! emits (hot-swapped between batches). The prediction error falls as versions arrive.
//!
//! Run: cargo run --no-default-features --features torch --example train_and_serve

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use ferroflow::connectors::GenColumn;
use ferroflow::engine::{EngineError, Result};
use ferroflow::inference::{ModelNode, ModelStreamExt};
use ferroflow::prelude::*;
use ferroflow::torch::{Optimizer, TorchLoader, TorchOptions, TorchStreamExt, TorchTrainer};

/// Rows `a, b, c` uniform in [-1, 1) and the target `y = 2a - 3b + 0.5c + 1`.
fn rows(rows: u64, seed: u64, rate: Option<f64>) -> Result<Arc<GeneratorSource>> {
    let columns = ["a", "b", "c"]
        .iter()
        .map(|c| {
            (
                c.to_string(),
                GenColumn::Float {
                    min: -1.0,
                    max: 1.0,
                },
            )
        })
        .chain([("id".to_string(), GenColumn::Sequence)])
        .collect();
    let mut g = GeneratorSource::new(columns, Some(rows), seed)?.with_batch_size(32);
    if let Some(r) = rate {
        g = g.with_rate(r);
    }
    Ok(Arc::new(g))
}

fn main() -> Result<()> {
    let module = format!(
        "{}/tests/models/linreg_train.pt",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = std::env::temp_dir().join("ferroflow-train-and-serve");
    let target = |b: arrow_array::RecordBatch| -> Result<arrow_array::RecordBatch> {
        let col = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone()
        };
        let (a, bb, c) = (col("a"), col("b"), col("c"));
        let y: arrow_array::Float64Array = (0..b.num_rows())
            .map(|i| 2.0 * a.value(i) - 3.0 * bb.value(i) + 0.5 * c.value(i) + 1.0)
            .collect();
        let mut cols = b.columns().to_vec();
        cols.push(Arc::new(y));
        Ok(arrow_array::RecordBatch::try_new(
            with_y(&b.schema()),
            cols,
        )?)
    };
    let job = JobBuilder::new("train-and-serve");
    let training = job.source("training", rows(12_800, 1, None)?)?;
    let labelled = training.map("label", with_y(&training.schema()), target)?;
    let versions = labelled.train_torch(
        "trainer",
        TorchTrainer::new(&module, &["a", "b", "c"], "y", &out)
            .optimizer(Optimizer::Adam { lr: 0.05 })
            .every_batches(Some(50)),
    )?;
    let requests = job.source("requests", rows(4_000, 2, Some(8_000.0))?)?;
    let requests = requests.map("label requests", with_y(&requests.schema()), target)?;
    let served = MemorySink::new();
    requests
        .predict_with_versions(
            "predict",
            &versions,
            ModelNode::new(
                Arc::new(TorchLoader::new(TorchOptions::single("x", "prediction"))),
                &module,
            )
            .input("x", &["a", "b", "c"])
            .wait_for_first_version()
            .version_column("model_version"),
        )?
        .sink("served", Arc::new(served.clone()))?;
    let report = Runtime::new()?.run(job.build()?)?;

    // Mean absolute error of the served predictions, per model version.
    let mut per_version: BTreeMap<i64, (f64, usize)> = BTreeMap::new();
    for b in served.batches() {
        let v = b
            .column_by_name("model_version")
            .unwrap()
            .as_primitive::<Int64Type>();
        let p = b
            .column_by_name("prediction")
            .unwrap()
            .as_primitive::<Float32Type>();
        let y = b.column_by_name("y").unwrap().as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            let e = per_version.entry(v.value(i)).or_default();
            e.0 += (p.value(i) as f64 - y.value(i)).abs();
            e.1 += 1;
        }
    }
    println!("version  requests  mean |error|");
    for (v, (sum, n)) in &per_version {
        println!("{v:>7}  {n:>8}  {:.4}", sum / *n as f64);
    }
    let swaps = report
        .node("predict")
        .map(|m| m.counters["model_swaps"])
        .ok_or_else(|| EngineError::Other("no metrics for 'predict'".into()))?;
    println!(
        "{} requests served, {swaps} model swaps, versions written to {}",
        served.num_rows(),
        out.display()
    );
    Ok(())
}

fn with_y(schema: &arrow_schema::SchemaRef) -> arrow_schema::SchemaRef {
    let mut fields: Vec<arrow_schema::FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(arrow_schema::Field::new(
        "y",
        arrow_schema::DataType::Float64,
        false,
    )));
    Arc::new(arrow_schema::Schema::new(fields))
}
