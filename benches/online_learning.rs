//! OnlineLogisticRegression in the engine: training throughput at globalBatchSize 32 and
//! 1024 on 1 M rows x 20 features (one CPU thread), and the latency from a model version
//! leaving the training node to the first row scored with it by a model node fed the
//! version stream (one job: a training stream and a scoring stream).
//!
//! Run: cargo bench --no-default-features --features ml --bench online_learning

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, FixedSizeListArray, Float64Array, RecordBatch};
use arrow_schema::{DataType, Field, SchemaRef};
use ferroflow::connectors::{DiscardSink, MemorySource};
use ferroflow::engine::{
    InstanceInfo, JobBuilder, Runtime, RuntimeConfig, Source, SourceEvent, SourceReader,
};
use ferroflow::ml::{AnyStage, Estimator, MlStreamExt, stage_from_json};
use parking_lot::Mutex;
use serde_json::json;

const OLR: &str = "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression";
const DIM: usize = 20;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// `rows` rows of 20 features in [-1, 1) and a label from a fixed hyperplane.
fn batch(rows: usize, seed: u64) -> RecordBatch {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let values: Vec<f64> = (0..rows * DIM).map(|_| next()).collect();
    let labels: Float64Array = values
        .chunks_exact(DIM)
        .map(|r| {
            f64::from(
                r.iter()
                    .enumerate()
                    .map(|(i, v)| v * (i as f64 - 9.5))
                    .sum::<f64>()
                    > 0.0,
            )
        })
        .collect();
    let features = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float64, false)),
        DIM as i32,
        Arc::new(Float64Array::from(values)),
        None,
    );
    RecordBatch::try_from_iter(vec![
        ("features", Arc::new(features) as ArrayRef),
        ("label", Arc::new(labels) as ArrayRef),
    ])
    .unwrap()
}

fn estimator(global_batch: usize) -> Arc<dyn Estimator> {
    let stage = json!({"className": OLR, "paramMap": {
        "globalBatchSize": global_batch, "alpha": 0.1, "beta": 1.0, "reg": 0.1,
        "initialModelData": {"coefficient": {"values": vec![0.0; DIM]}, "modelVersion": 0}}});
    match stage_from_json(&stage).unwrap() {
        AnyStage::Estimator(e) => Arc::from(e),
        _ => unreachable!(),
    }
}

/// Rows per second training on `batches` (one instance, one CPU thread).
fn train_throughput(batches: &[RecordBatch], global_batch: usize) -> (f64, u64) {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let rt = Runtime::with_config(RuntimeConfig {
        cpu_threads: 1,
        ..Default::default()
    })
    .unwrap();
    let job = JobBuilder::new("train");
    let versions = DiscardSink::new();
    job.source(
        "rows",
        Arc::new(MemorySource::from_batches(batches.to_vec()).unwrap()),
    )
    .unwrap()
    .ml_fit_online("olr", estimator(global_batch), None)
    .unwrap()
    .sink("versions", Arc::new(versions.clone()))
    .unwrap();
    let t = Instant::now();
    rt.run(job.build().unwrap()).unwrap();
    (rows as f64 / t.elapsed().as_secs_f64(), versions.rows())
}

/// Batches of `rows` rows, one every `every`, `count` of them (a stream at a steady rate).
struct Paced {
    batch: RecordBatch,
    every: Duration,
    count: usize,
}

struct PacedReader {
    batch: RecordBatch,
    every: Duration,
    left: usize,
    next: Instant,
}

impl Source for Paced {
    fn schema(&self) -> SchemaRef {
        self.batch.schema()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _: &InstanceInfo) -> ferroflow::engine::Result<Box<dyn SourceReader>> {
        Ok(Box::new(PacedReader {
            batch: self.batch.clone(),
            every: self.every,
            left: self.count,
            next: Instant::now(),
        }))
    }
}

impl SourceReader for PacedReader {
    fn next(&mut self) -> ferroflow::engine::Result<SourceEvent> {
        if self.left == 0 {
            return Ok(SourceEvent::End);
        }
        let now = Instant::now();
        if now < self.next {
            return Ok(SourceEvent::Idle(self.next - now));
        }
        self.next += self.every;
        self.left -= 1;
        Ok(SourceEvent::Batch(self.batch.clone()))
    }
}

/// A map step that notes when each `modelVersion` first passes it.
fn stamp_versions(
    stamps: &Arc<Mutex<HashMap<i64, Instant>>>,
) -> impl Fn(RecordBatch) -> ferroflow::engine::Result<RecordBatch> + Send + Sync + 'static {
    let stamps = stamps.clone();
    move |b| {
        let now = Instant::now();
        let mut m = stamps.lock();
        let versions = b.column_by_name("modelVersion").unwrap();
        for v in versions.as_primitive::<Int64Type>().values() {
            m.entry(*v).or_insert(now);
        }
        Ok(b)
    }
}

/// Milliseconds from each version leaving the training node to the first scored row that
/// names it: training on 32-row batches every 10 ms (a version each), scoring 64-row
/// batches every millisecond, for `seconds`.
fn swap_latency(seconds: u64) -> (Vec<f64>, usize, usize) {
    let emitted: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let job = JobBuilder::new("latency");
    let train = job
        .source(
            "train",
            Arc::new(Paced {
                batch: batch(32, 7),
                every: Duration::from_millis(10),
                count: (seconds * 100) as usize,
            }),
        )
        .unwrap();
    let est = estimator(32);
    let versions = train.ml_fit_online("olr", est.clone(), None).unwrap();
    let versions = versions
        .map("emitted", versions.schema(), stamp_versions(&emitted))
        .unwrap();
    let model = est.as_online().unwrap().new_model().unwrap();
    let rows = job
        .source(
            "score",
            Arc::new(Paced {
                batch: batch(64, 11),
                every: Duration::from_millis(1),
                count: (seconds * 1000 + 200) as usize,
            }),
        )
        .unwrap();
    let scored = rows
        .ml_transform_with_model_data("predict", Arc::from(model), &versions, None)
        .unwrap();
    scored
        .map("seen", scored.schema(), stamp_versions(&seen))
        .unwrap()
        .sink("out", Arc::new(DiscardSink::new()))
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let emitted = emitted.lock();
    let seen = seen.lock();
    let lat: Vec<f64> = seen
        .iter()
        .filter_map(|(v, s)| {
            emitted
                .get(v)
                .map(|e| s.duration_since(*e).as_secs_f64() * 1e3)
        })
        .collect();
    (lat, emitted.len(), seen.len())
}

fn main() {
    let runs: usize = std::env::var("FERROFLOW_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rows = 1_000_000;
    let batches: Vec<RecordBatch> = (0..rows / 8192 + 1)
        .map(|i| batch(8192.min(rows - (i * 8192).min(rows)), i as u64 + 1))
        .filter(|b| b.num_rows() > 0)
        .collect();
    for gb in [32, 1024] {
        let mut versions = 0;
        let r: Vec<f64> = (0..runs)
            .map(|_| {
                let (rps, v) = train_throughput(&batches, gb);
                versions = v;
                rps
            })
            .collect();
        println!(
            "OnlineLogisticRegression globalBatchSize {gb}: 1 M rows x {DIM}, one CPU thread: \
             median {:.2} M rows/s ({versions} versions; {runs} runs)",
            median(r) / 1e6
        );
    }
    let (lat, emitted, seen) = swap_latency(5);
    println!(
        "version emitted -> first row scored with it: median {:.2} ms, p90 {:.2} ms, max {:.2} ms \
         ({seen} of {emitted} versions met a row; scoring batches come every 1 ms)",
        median(lat.clone()),
        quantile(lat.clone(), 0.9),
        quantile(lat, 1.0)
    );
}
