//! Model inference inside a pipeline against the runtimes called directly.
//!
//! On the same inputs (an MLP 64 -> 256 -> 256 -> 10, batches of `FERROFLOW_BENCH_BATCH` rows,
//! one runtime thread everywhere):
//! - ONNX: a raw `ort` session loop vs the ONNX node in a job (source -> model -> sink);
//! - Torch: a raw `tch` module loop vs the TorchScript node in a job;
//! - latency of one batch through the job at half load (p50/p99), and of one raw call;
//! - hot swap: the pause a swap causes, in background and blocking mode.
//!
//! The Python peer (onnxruntime, torch) runs in the same invocation of
//! `benches/inference/compare.sh`, which makes the models and prints all ratios.
//! Run that script; this binary expects `FERROFLOW_BENCH_MODELS`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, SchemaRef};
use ferroflow::engine::{InstanceInfo, Sink, SinkWriter, Source, SourceEvent, SourceReader};
use ferroflow::inference::{
    BatchConfig, ModelNode, ModelStreamExt, OnnxLoader, OnnxOptions, SwapMode, model_version_schema,
};
use ferroflow::prelude::*;
use ferroflow::torch::{TorchLoader, TorchOptions};
use parking_lot::Mutex;

const WIDTH: usize = 64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn batches(x: &[f32], batch: usize) -> Vec<RecordBatch> {
    let rows = x.len() / WIDTH;
    (0..rows)
        .step_by(batch)
        .map(|start| {
            let n = batch.min(rows - start);
            let values = Float32Array::from(x[start * WIDTH..(start + n) * WIDTH].to_vec());
            let features = FixedSizeListArray::new(
                Arc::new(Field::new("item", DataType::Float32, false)),
                WIDTH as i32,
                Arc::new(values),
                None,
            );
            RecordBatch::try_from_iter(vec![
                (
                    "sent_ns",
                    Arc::new(Int64Array::from(vec![0i64; n])) as ArrayRef,
                ),
                ("features", Arc::new(features) as ArrayRef),
            ])
            .unwrap()
        })
        .collect()
}

fn raw_ort(path: &str, x: &[f32], batch: usize, lat: &mut Vec<f64>) -> f64 {
    use ferroflow::inference::ort::session::Session;
    use ferroflow::inference::ort::value::TensorRef;
    let env = ferroflow::inference::onnx_environment().unwrap();
    let mut s = Session::builder(env)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .with_inter_threads(1)
        .unwrap()
        .commit_from_file(path)
        .unwrap();
    let rows = x.len() / WIDTH;
    let start = Instant::now();
    let mut sink = 0.0f32;
    for i in (0..rows).step_by(batch) {
        let n = batch.min(rows - i);
        let t = Instant::now();
        let input =
            TensorRef::from_array_view(([n, WIDTH], &x[i * WIDTH..(i + n) * WIDTH])).unwrap();
        let out = s
            .run(ferroflow::inference::ort::inputs!["features" => input])
            .unwrap();
        let (_, scores) = out["scores"].try_extract_tensor::<f32>().unwrap();
        sink += scores[0];
        lat.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    rows as f64 / start.elapsed().as_secs_f64()
}

fn raw_tch(path: &str, x: &[f32], batch: usize, lat: &mut Vec<f64>) -> f64 {
    tch::set_num_threads(1);
    let mut m = tch::CModule::load(path).unwrap();
    m.set_eval();
    let rows = x.len() / WIDTH;
    let start = Instant::now();
    let mut sink = 0.0f32;
    for i in (0..rows).step_by(batch) {
        let n = batch.min(rows - i);
        let t = Instant::now();
        let input = tch::Tensor::from_slice(&x[i * WIDTH..(i + n) * WIDTH])
            .reshape([n as i64, WIDTH as i64]);
        let out = tch::no_grad(|| m.forward_ts(&[input])).unwrap();
        let mut first = [0f32; 1];
        out.reshape([-1]).narrow(0, 0, 1).copy_data(&mut first, 1);
        sink += first[0];
        lat.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);
    rows as f64 / start.elapsed().as_secs_f64()
}

/// Rows per second through source -> model node -> discard.
fn node_throughput(data: &[RecordBatch], node: ModelNode) -> f64 {
    node_throughput_p(data, node, 1)
}

/// The same with `parallelism` instances of every node.
fn node_throughput_p(data: &[RecordBatch], node: ModelNode, parallelism: usize) -> f64 {
    let rows: usize = data.iter().map(|b| b.num_rows()).sum();
    let job = JobBuilder::with_config(
        "bench",
        JobConfig {
            parallelism,
            ..JobConfig::default()
        },
    );
    job.source(
        "in",
        Arc::new(MemorySource::new(data[0].schema(), data.to_vec()).unwrap()),
    )
    .unwrap()
    .predict("model", node)
    .unwrap()
    .sink("out", Arc::new(DiscardSink::new()))
    .unwrap();
    let graph = job.build().unwrap();
    let threads: usize = std::env::var("FERROFLOW_BENCH_CPU_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rt = Runtime::with_config(ferroflow::engine::RuntimeConfig {
        cpu_threads: threads,
        io_handle: None,
    })
    .unwrap();
    let start = Instant::now();
    let report = rt.run(graph).unwrap();
    let secs = start.elapsed().as_secs_f64();
    if std::env::var_os("FERROFLOW_BENCH_VERBOSE").is_some() {
        let m = report.node("model").unwrap();
        eprintln!(
            "job {:.1} ms, node busy {:.1} ms, backpressure {:.1} ms",
            secs * 1e3,
            m.busy_ns as f64 / 1e6,
            m.backpressure_ns as f64 / 1e6
        );
    }
    rows as f64 / secs
}

/// Emits its batches at a fixed interval, stamping each with the send time.
struct Paced {
    data: Vec<RecordBatch>,
    every: Duration,
    origin: Instant,
}

struct PacedReader {
    data: std::vec::IntoIter<RecordBatch>,
    every: Duration,
    origin: Instant,
    next_at: Instant,
}

impl Source for Paced {
    fn schema(&self) -> SchemaRef {
        self.data[0].schema()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _: &InstanceInfo) -> ferroflow::engine::Result<Box<dyn SourceReader>> {
        Ok(Box::new(PacedReader {
            data: self.data.clone().into_iter(),
            every: self.every,
            origin: self.origin,
            next_at: Instant::now(),
        }))
    }
}

impl SourceReader for PacedReader {
    fn next(&mut self) -> ferroflow::engine::Result<SourceEvent> {
        let now = Instant::now();
        if now < self.next_at {
            std::thread::sleep(self.next_at - now);
        }
        self.next_at += self.every;
        let Some(b) = self.data.next() else {
            return Ok(SourceEvent::End);
        };
        let sent = self.origin.elapsed().as_nanos() as i64;
        let stamp: ArrayRef = Arc::new(Int64Array::from(vec![sent; b.num_rows()]));
        let mut cols = b.columns().to_vec();
        cols[0] = stamp;
        Ok(SourceEvent::Batch(RecordBatch::try_new(b.schema(), cols)?))
    }
}

/// Records how long each batch took from its source to the sink.
#[derive(Clone)]
struct LatencySink {
    origin: Instant,
    lat: Arc<Mutex<Vec<f64>>>,
}

impl Sink for LatencySink {
    fn create_writer(
        &self,
        _: &InstanceInfo,
        _: SchemaRef,
    ) -> ferroflow::engine::Result<Box<dyn SinkWriter>> {
        Ok(Box::new(self.clone()))
    }
}

impl SinkWriter for LatencySink {
    fn write(&mut self, b: RecordBatch) -> ferroflow::engine::Result<()> {
        let now = self.origin.elapsed().as_nanos() as i64;
        let sent = b.column(0).as_primitive::<Int64Type>().value(0);
        self.lat.lock().push((now - sent) as f64 / 1e9);
        Ok(())
    }
    fn finish(&mut self) -> ferroflow::engine::Result<()> {
        Ok(())
    }
}

/// p50/p99 of a batch's time through source -> model -> sink at `load` of capacity.
fn node_latency(
    data: &[RecordBatch],
    node: ModelNode,
    capacity_rows_per_s: f64,
    load: f64,
) -> (f64, f64) {
    let rows = data[0].num_rows() as f64;
    let every = Duration::from_secs_f64(rows / (capacity_rows_per_s * load));
    let origin = Instant::now();
    let sink = LatencySink {
        origin,
        lat: Arc::default(),
    };
    let job = JobBuilder::new("latency");
    job.source(
        "in",
        Arc::new(Paced {
            data: data.to_vec(),
            every,
            origin,
        }),
    )
    .unwrap()
    .predict("model", node)
    .unwrap()
    .sink("out", Arc::new(sink.clone()))
    .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let mut lat = sink.lat.lock().clone();
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

/// Emits alternating versions every `every` until `count` were sent.
struct Versions {
    uris: [String; 2],
    every: Duration,
    count: i64,
}

struct VersionsReader {
    uris: [String; 2],
    every: Duration,
    left: i64,
    next: i64,
}

impl Source for Versions {
    fn schema(&self) -> SchemaRef {
        model_version_schema()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, _: &InstanceInfo) -> ferroflow::engine::Result<Box<dyn SourceReader>> {
        Ok(Box::new(VersionsReader {
            uris: self.uris.clone(),
            every: self.every,
            left: self.count,
            next: 2,
        }))
    }
}

impl SourceReader for VersionsReader {
    fn next(&mut self) -> ferroflow::engine::Result<SourceEvent> {
        if self.left == 0 {
            return Ok(SourceEvent::End);
        }
        std::thread::sleep(self.every);
        self.left -= 1;
        let v = self.next;
        self.next += 1;
        let uri = self.uris[(v % 2) as usize].clone();
        Ok(SourceEvent::Batch(RecordBatch::try_new(
            model_version_schema(),
            vec![
                Arc::new(Int64Array::from(vec![v])),
                Arc::new(StringArray::from(vec![uri])),
            ],
        )?))
    }
}

/// Mean pause per swap (µs) and throughput with swaps every 20 ms.
fn swap_cost(data: &[RecordBatch], models: &str, mode: SwapMode, batch: usize) -> (f64, f64, u64) {
    let rows: usize = data.iter().map(|b| b.num_rows()).sum();
    let job = JobBuilder::new("swap");
    let versions = job
        .source(
            "versions",
            Arc::new(Versions {
                uris: [
                    format!("{models}/bench_mlp.onnx"),
                    format!("{models}/bench_mlp_v2.onnx"),
                ],
                every: Duration::from_millis(20),
                count: 20,
            }),
        )
        .unwrap();
    let paced = Paced {
        data: data.to_vec(),
        every: Duration::from_micros(100),
        origin: Instant::now(),
    };
    job.source("in", Arc::new(paced))
        .unwrap()
        .predict_with_versions(
            "model",
            &versions,
            ModelNode::onnx(format!("{models}/bench_mlp.onnx"))
                .batching(BatchConfig::fixed(batch))
                .swap_mode(mode),
        )
        .unwrap()
        .sink("out", Arc::new(DiscardSink::new()))
        .unwrap();
    let start = Instant::now();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let m = report.node("model").unwrap();
    let swaps = m.counters["model_swaps"].max(1);
    (
        m.counters["model_swap_pause_us"] as f64 / swaps as f64,
        rows as f64 / secs,
        swaps,
    )
}

fn main() {
    let models = std::env::var("FERROFLOW_BENCH_MODELS")
        .expect("run benches/inference/compare.sh (sets FERROFLOW_BENCH_MODELS)");
    let batch: usize = std::env::var("FERROFLOW_BENCH_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(256);
    let repeats = 5;
    let bytes = std::fs::read(format!("{models}/inputs.f32")).unwrap();
    let x: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let rows = x.len() / WIDTH;
    let data = batches(&x, batch);
    let onnx_path = format!("{models}/bench_mlp.onnx");
    let pt_path = format!("{models}/bench_mlp.pt");
    // An ONNX node with `sessions` pooled sessions of one thread each; fixed `batch`-row
    // calls, or the adaptive batcher with `None`.
    let onnx_with = |sessions: usize, fixed: Option<usize>| {
        let node = ModelNode::new(
            Arc::new(OnnxLoader::new(OnnxOptions {
                intra_threads: 1,
                pool_size: sessions,
                optimize: true,
            })),
            onnx_path.clone(),
        );
        match fixed {
            Some(rows) => node.batching(BatchConfig::fixed(rows)),
            None => node,
        }
    };
    let onnx_node = || onnx_with(1, Some(batch));
    let torch_node = || {
        ModelNode::new(
            Arc::new(TorchLoader::new(TorchOptions::single("features", "scores"))),
            pt_path.clone(),
        )
        .batching(BatchConfig::fixed(batch))
    };

    let mut results = serde_json::Map::new();
    for (name, raw, node) in [
        (
            "onnx",
            Box::new(|l: &mut Vec<f64>| raw_ort(&onnx_path, &x, batch, l))
                as Box<dyn Fn(&mut Vec<f64>) -> f64>,
            Box::new(onnx_node) as Box<dyn Fn() -> ModelNode>,
        ),
        (
            "torch",
            Box::new(|l: &mut Vec<f64>| raw_tch(&pt_path, &x, batch, l)),
            Box::new(torch_node),
        ),
    ] {
        let mut lat = Vec::new();
        raw(&mut Vec::new()); // warm-up
        let raw_rate: Vec<f64> = (0..repeats).map(|_| raw(&mut lat)).collect();
        node_throughput(&data, node()); // warm-up
        let node_rate: Vec<f64> = (0..repeats)
            .map(|_| node_throughput(&data, node()))
            .collect();
        let (raw_m, node_m) = (median(raw_rate), median(node_rate));
        let (p50, p99) = node_latency(&data[..data.len().min(200)], node(), node_m, 0.5);
        results.insert(
            name.to_string(),
            serde_json::json!({
                "raw_rows_per_s": raw_m,
                "node_rows_per_s": node_m,
                "node_vs_raw": node_m / raw_m,
                "raw_call_p50_us": pct(&mut lat, 0.5) * 1e6,
                "raw_call_p99_us": pct(&mut lat, 0.99) * 1e6,
                "node_batch_latency_p50_us_at_half_load": p50 * 1e6,
                "node_batch_latency_p99_us_at_half_load": p99 * 1e6,
            }),
        );
    }
    // The same node when the column must be copied (float64 values into a float32 model).
    let data64: Vec<RecordBatch> = data
        .iter()
        .map(|b| {
            let cast = arrow_cast::cast(
                b.column(1),
                &DataType::FixedSizeList(
                    Arc::new(Field::new("item", DataType::Float64, false)),
                    WIDTH as i32,
                ),
            )
            .unwrap();
            RecordBatch::try_from_iter(vec![("sent_ns", b.column(0).clone()), ("features", cast)])
                .unwrap()
        })
        .collect();
    node_throughput(&data64, onnx_node());
    let copy_rate = median(
        (0..repeats)
            .map(|_| node_throughput(&data64, onnx_node()))
            .collect(),
    );
    let zero_copy = results["onnx"]["node_rows_per_s"].as_f64().unwrap();
    results.insert(
        "onnx_input_copy".into(),
        serde_json::json!({"node_rows_per_s": copy_rate, "zero_copy_vs_copy": zero_copy / copy_rate}),
    );
    // The node's default batching: calls sized toward a 10 ms target from 256-row batches.
    let adaptive = || onnx_with(1, None);
    node_throughput(&data, adaptive());
    let adaptive_rate = median(
        (0..repeats)
            .map(|_| node_throughput(&data, adaptive()))
            .collect(),
    );
    results.insert(
        "onnx_adaptive".into(),
        serde_json::json!({"node_rows_per_s": adaptive_rate}),
    );
    // The default deployment on this machine: one instance per core (2), a session each.
    let par_node = || onnx_with(2, Some(batch));
    node_throughput_p(&data, par_node(), 2);
    let par_rate = median(
        (0..repeats)
            .map(|_| node_throughput_p(&data, par_node(), 2))
            .collect(),
    );
    results.insert(
        "onnx_two_instances".into(),
        serde_json::json!({"node_rows_per_s": par_rate}),
    );
    let swap_data = &data[..data.len().min(4000)];
    for mode in [SwapMode::Background, SwapMode::Blocking] {
        let (pause_us, rate, swaps) = swap_cost(swap_data, &models, mode, batch);
        results.insert(
            format!("swap_{mode:?}").to_lowercase(),
            serde_json::json!({"swaps": swaps, "pause_us_per_swap": pause_us, "rows_per_s_paced": rate}),
        );
    }
    results.insert("rows".into(), rows.into());
    results.insert("batch".into(), batch.into());
    println!("{}", serde_json::Value::Object(results));
}
