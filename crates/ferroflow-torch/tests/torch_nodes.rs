//! TorchScript nodes on real libtorch: outputs against Python torch (tests/models/expected.json),
//! zero-copy input, hot swap, training on a stream and a train -> predict pipeline.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Field, SchemaRef};
use ferroflow_connectors::{MemorySink, MemorySource};
use ferroflow_engine::{
    EngineError, InstanceInfo, JobBuilder, JobConfig, Runtime, Source, SourceEvent, SourceReader,
};
use ferroflow_inference::{
    Binding, InferenceModel, ModelNode, ModelStreamExt, model_version_schema,
};
use ferroflow_torch::{
    Loss, Optimizer, TorchLoader, TorchModel, TorchOptions, TorchStreamExt, TorchTrainer,
};
use serde_json::Value;

fn model(name: &str) -> String {
    format!("{}/../../tests/models/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn mlp_node(path: &str) -> ModelNode {
    ModelNode::new(
        Arc::new(TorchLoader::new(TorchOptions::single("features", "scores"))),
        path,
    )
}

fn vector_column(values: Vec<f32>, width: i32) -> ArrayRef {
    Arc::new(FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        width,
        Arc::new(Float32Array::from(values)),
        None,
    ))
}

fn list_rows(a: &dyn Array) -> Vec<Vec<f32>> {
    let l = a.as_fixed_size_list();
    (0..l.len())
        .map(|r| l.value(r).as_primitive::<Float32Type>().values().to_vec())
        .collect()
}

fn sort_by_id(b: &RecordBatch) -> RecordBatch {
    let idx =
        arrow_ord::sort::sort_to_indices(b.column_by_name("id").unwrap(), None, None).unwrap();
    arrow_select::take::take_record_batch(b, &idx).unwrap()
}

#[test]
fn torchscript_mlp_matches_python_without_copying_its_input() {
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(model("expected.json")).unwrap()).unwrap();
    let rows: Vec<Vec<f64>> =
        serde_json::from_value(e["mlp"]["inputs"]["features"].clone()).unwrap();
    let want: Vec<Vec<f64>> = serde_json::from_value(e["mlp"]["torch_scores"].clone()).unwrap();
    let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)) as ArrayRef,
        ),
        ("features", vector_column(flat, 8)),
    ])
    .unwrap();
    let job = JobBuilder::new("torch");
    let sink = MemorySink::new();
    job.source(
        "in",
        Arc::new(MemorySource::new(batch.schema(), vec![batch]).unwrap()),
    )
    .unwrap()
    .predict("mlp", mlp_node(&model("mlp.pt")))
    .unwrap()
    .sink("out", Arc::new(sink.clone()))
    .unwrap();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let out = sort_by_id(&sink.concat().unwrap());
    let got = list_rows(out.column_by_name("scores").unwrap());
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        for (a, b) in g.iter().zip(w) {
            assert!((*a as f64 - b).abs() <= 1e-5, "got {g:?}, want {w:?}");
        }
    }
    let m = report.node("mlp").unwrap();
    assert_eq!(m.counters["tensor_values_copied"], 0);
    assert_eq!(m.counters["tensor_values_borrowed"], rows.len() as u64 * 8);
}

#[test]
fn a_module_that_cannot_take_the_columns_is_refused_before_the_job_starts() {
    let batch =
        RecordBatch::try_from_iter(vec![("features", vector_column(vec![1.0; 6], 3))]).unwrap();
    let job = JobBuilder::new("bad");
    let stream = job
        .source(
            "in",
            Arc::new(MemorySource::new(batch.schema(), vec![batch]).unwrap()),
        )
        .unwrap();
    let err = stream
        .predict("mlp", mlp_node(&model("mlp.pt")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mlp") && err.contains("trial run"), "{err}");
    let err = stream
        .predict("mlp", mlp_node("/no/such/module.pt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/such/module.pt"), "{err}");
    let err = stream
        .predict("mlp", mlp_node(&model("mlp.onnx")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mlp.onnx"), "not a TorchScript file: {err}");
}

/// Rows `a, b, c, y` with y = 2a - 3b + 0.5c + 1, from a fixed sequence.
fn regression_batches(batches: usize, rows: usize, seed: u64) -> Vec<RecordBatch> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 2000) as f64 / 1000.0 - 1.0
    };
    (0..batches)
        .map(|i| {
            let mut cols = [Vec::new(), Vec::new(), Vec::new()];
            let mut y = Vec::new();
            for _ in 0..rows {
                let (a, b, c) = (next(), next(), next());
                cols[0].push(a);
                cols[1].push(b);
                cols[2].push(c);
                y.push(2.0 * a - 3.0 * b + 0.5 * c + 1.0);
            }
            let start = (i * rows) as i64;
            RecordBatch::try_from_iter(vec![
                (
                    "id",
                    Arc::new(Int64Array::from_iter_values(start..start + rows as i64)) as ArrayRef,
                ),
                (
                    "a",
                    Arc::new(Float64Array::from(cols[0].clone())) as ArrayRef,
                ),
                (
                    "b",
                    Arc::new(Float64Array::from(cols[1].clone())) as ArrayRef,
                ),
                (
                    "c",
                    Arc::new(Float64Array::from(cols[2].clone())) as ArrayRef,
                ),
                ("y", Arc::new(Float64Array::from(y)) as ArrayRef),
            ])
            .unwrap()
        })
        .collect()
}

fn linreg_options() -> TorchOptions {
    TorchOptions::single("x", "prediction")
}

/// Mean absolute error of the module at `path` on `batch`.
fn error_of(path: &str, batch: &RecordBatch) -> f64 {
    let m = TorchModel::load(path, linreg_options()).unwrap();
    let binding = Binding::new(
        "check",
        &batch.schema(),
        &m,
        &[ferroflow_inference::InputMapping {
            input: "x".into(),
            columns: vec!["a".into(), "b".into(), "c".into()],
        }],
        &[],
    )
    .unwrap();
    let out = m.run(&binding.tensors(batch).unwrap()).unwrap();
    let pred = binding.columns(batch.num_rows(), out).unwrap();
    let pred = pred[0].as_primitive::<Float32Type>();
    let y = batch
        .column_by_name("y")
        .unwrap()
        .as_primitive::<arrow_array::types::Float64Type>();
    (0..batch.num_rows())
        .map(|i| (pred.value(i) as f64 - y.value(i)).abs())
        .sum::<f64>()
        / batch.num_rows() as f64
}

#[test]
fn training_on_a_stream_emits_versions_that_learn() {
    let dir = tempfile::tempdir().unwrap();
    let batches = regression_batches(300, 32, 11);
    let job = JobBuilder::new("train");
    let sink = MemorySink::new();
    job.source(
        "data",
        Arc::new(MemorySource::new(batches[0].schema(), batches).unwrap()),
    )
    .unwrap()
    .train_torch(
        "trainer",
        TorchTrainer::new(&model("linreg_train.pt"), &["a", "b", "c"], "y", dir.path())
            .optimizer(Optimizer::Adam { lr: 0.05 })
            .every_batches(Some(100)),
    )
    .unwrap()
    .sink("versions", Arc::new(sink.clone()))
    .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let v = sink.concat().unwrap();
    let versions = v
        .column_by_name("version")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(
        versions.values().to_vec(),
        vec![1, 2, 3],
        "a version every 100 steps"
    );
    let rows = v
        .column_by_name("rows")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(rows.values().to_vec(), vec![3200, 6400, 9600]);
    let uris = v.column_by_name("uri").unwrap().as_string::<i32>();
    let holdout = regression_batches(1, 500, 99).remove(0);
    let first = error_of(uris.value(0), &holdout);
    let last = error_of(uris.value(2), &holdout);
    let untrained = error_of(&model("linreg_train.pt"), &holdout);
    assert!(first < untrained, "training helps: {untrained} -> {first}");
    assert!(
        last < 0.02,
        "the last version fits y = 2a - 3b + 0.5c + 1: error {last}"
    );
}

#[test]
fn the_built_in_losses_train_too() {
    let dir = tempfile::tempdir().unwrap();
    let batches = regression_batches(200, 32, 5);
    let job = JobBuilder::new("train");
    let sink = MemorySink::new();
    job.source(
        "data",
        Arc::new(MemorySource::new(batches[0].schema(), batches).unwrap()),
    )
    .unwrap()
    .train_torch(
        "trainer",
        TorchTrainer::new(&model("linreg_train.pt"), &["a", "b", "c"], "y", dir.path())
            .loss(Loss::MeanSquaredError)
            .optimizer(Optimizer::Sgd {
                lr: 0.1,
                momentum: 0.9,
            })
            .every_batches(None)
            .minibatch_rows(16),
    )
    .unwrap()
    .sink("versions", Arc::new(sink.clone()))
    .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let v = sink.concat().unwrap();
    assert_eq!(v.num_rows(), 1, "one version at the end of input");
    let uri = v
        .column_by_name("uri")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_string();
    let holdout = regression_batches(1, 500, 99).remove(0);
    assert!(error_of(&uri, &holdout) < 0.02);
}

#[test]
fn a_diverging_loss_fails_the_job_instead_of_emitting_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let batches = regression_batches(200, 32, 5);
    let job = JobBuilder::new("train");
    job.source(
        "data",
        Arc::new(MemorySource::new(batches[0].schema(), batches).unwrap()),
    )
    .unwrap()
    .train_torch(
        "trainer",
        TorchTrainer::new(&model("linreg_train.pt"), &["a", "b", "c"], "y", dir.path()).optimizer(
            Optimizer::Sgd {
                lr: 1e6,
                momentum: 0.0,
            },
        ),
    )
    .unwrap()
    .sink("versions", Arc::new(MemorySink::new()))
    .unwrap();
    let err = Runtime::new()
        .unwrap()
        .run(job.build().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("trainer") && err.contains("loss became"),
        "{err}"
    );
}

#[test]
fn trainer_inputs_are_checked_before_the_job_starts() {
    let batch = RecordBatch::try_from_iter(vec![
        ("a", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
        ("label", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
    ])
    .unwrap();
    let job = JobBuilder::new("bad");
    let s = job
        .source(
            "in",
            Arc::new(MemorySource::new(batch.schema(), vec![batch]).unwrap()),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = s
        .train_torch(
            "trainer",
            TorchTrainer::new(&model("linreg_train.pt"), &["a"], "label", dir.path()),
        )
        .unwrap_err();
    assert!(matches!(err, EngineError::Plan(_)));
    let err = err.to_string();
    assert!(
        err.contains("trainer") && err.contains("'label'") && err.contains("Utf8"),
        "{err}"
    );
    let err = s
        .train_torch(
            "trainer",
            TorchTrainer::new("/no/module.pt", &["a"], "a", dir.path()),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("/no/module.pt"), "{err}");
}

/// A bounded source that releases its batches at a steady pace.
struct Paced {
    batches: Vec<RecordBatch>,
    pause: Duration,
}

struct PacedReader(std::vec::IntoIter<RecordBatch>, Duration);

impl Source for Paced {
    fn schema(&self) -> SchemaRef {
        self.batches[0].schema()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, i: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        let mine = if i.index == 0 {
            self.batches.clone()
        } else {
            Vec::new()
        };
        Ok(Box::new(PacedReader(mine.into_iter(), self.pause)))
    }
}

impl SourceReader for PacedReader {
    fn next(&mut self) -> ferroflow_engine::Result<SourceEvent> {
        std::thread::sleep(self.1);
        Ok(self.0.next().map_or(SourceEvent::End, SourceEvent::Batch))
    }
}

#[test]
fn a_prediction_node_picks_up_the_versions_the_trainer_emits() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobBuilder::with_config(
        "train-and-serve",
        JobConfig {
            parallelism: 1,
            ..JobConfig::default()
        },
    );
    let train = regression_batches(400, 32, 3);
    let serve = regression_batches(150, 20, 77);
    let sink = MemorySink::new();
    let versions = job
        .source(
            "training-data",
            Arc::new(Paced {
                batches: train,
                pause: Duration::from_millis(1),
            }),
        )
        .unwrap()
        .train_torch(
            "trainer",
            TorchTrainer::new(&model("linreg_train.pt"), &["a", "b", "c"], "y", dir.path())
                .optimizer(Optimizer::Adam { lr: 0.05 })
                .every_batches(Some(40)),
        )
        .unwrap();
    assert_eq!(
        versions.schema().field(0).name(),
        model_version_schema().field(0).name()
    );
    job.source(
        "requests",
        Arc::new(Paced {
            batches: serve,
            pause: Duration::from_millis(4),
        }),
    )
    .unwrap()
    .predict_with_versions(
        "predict",
        &versions,
        ModelNode::new(
            Arc::new(TorchLoader::new(linreg_options())),
            model("linreg_train.pt"),
        )
        .input("x", &["a", "b", "c"])
        .wait_for_first_version()
        .version_column("model_version"),
    )
    .unwrap()
    .sink("predictions", Arc::new(sink.clone()))
    .unwrap();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let out = sort_by_id(&sink.concat().unwrap());
    assert_eq!(out.num_rows(), 3000, "every request scored once");
    let version = out
        .column_by_name("model_version")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert!(version.values().iter().all(|&v| v >= 1));
    assert!(
        version.values().windows(2).all(|w| w[0] <= w[1]),
        "versions only move forward"
    );
    assert!(
        version.value(2999) > version.value(0),
        "later requests are scored by later versions"
    );
    assert!(report.node("predict").unwrap().counters["model_swaps"] >= 2);
    // Later versions predict better.
    let pred = out
        .column_by_name("prediction")
        .unwrap()
        .as_primitive::<Float32Type>();
    let y = out
        .column_by_name("y")
        .unwrap()
        .as_primitive::<arrow_array::types::Float64Type>();
    let err = |range: std::ops::Range<usize>| {
        let n = range.len() as f64;
        range
            .map(|i| (pred.value(i) as f64 - y.value(i)).abs())
            .sum::<f64>()
            / n
    };
    assert!(
        err(2500..3000) < err(0..500),
        "{} !< {}",
        err(2500..3000),
        err(0..500)
    );
}

#[test]
fn versions_can_also_come_every_t_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobBuilder::new("timed");
    let sink = MemorySink::new();
    job.source(
        "data",
        Arc::new(Paced {
            batches: regression_batches(120, 16, 8),
            pause: Duration::from_millis(2),
        }),
    )
    .unwrap()
    .train_torch(
        "trainer",
        TorchTrainer::new(&model("linreg_train.pt"), &["a", "b", "c"], "y", dir.path())
            .every_batches(None)
            .every(Some(Duration::from_millis(40))),
    )
    .unwrap()
    .sink("versions", Arc::new(sink.clone()))
    .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let v = sink.concat().unwrap();
    // About 240 ms of input: several timed versions plus the final one.
    assert!(v.num_rows() >= 3, "{} versions", v.num_rows());
    let rows = v
        .column_by_name("rows")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(
        rows.value(v.num_rows() - 1),
        120 * 16,
        "the last version saw every row"
    );
    assert!(rows.values().windows(2).all(|w| w[0] < w[1]));
}

/// `batches` as one CSV file (floats printed so they read back to the same bits).
fn write_csv(path: &std::path::Path, batches: &[RecordBatch]) {
    let mut text = String::from("id,a,b,c,y\n");
    for b in batches {
        let id = b.column(0).as_primitive::<Int64Type>();
        let cols: Vec<_> = (1..5)
            .map(|i| {
                b.column(i)
                    .as_primitive::<arrow_array::types::Float64Type>()
            })
            .collect();
        for r in 0..b.num_rows() {
            text.push_str(&id.value(r).to_string());
            for c in &cols {
                text.push_str(&format!(",{:?}", c.value(r)));
            }
            text.push('\n');
        }
    }
    std::fs::write(path, text).unwrap();
}

/// The committed version rows of `dir` (CSV part files), without the uri (it names the
/// run's own directory), in version order.
fn committed_versions(dir: &std::path::Path) -> Vec<String> {
    let mut rows: Vec<(i64, String)> = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            rows.push((f[0].parse().unwrap(), format!("{},{},{}", f[0], f[2], f[3])));
        }
    }
    rows.sort();
    rows.into_iter().map(|r| r.1).collect()
}

fn checkpointed_training(
    csv: &std::path::Path,
    models: &std::path::Path,
    out: &std::path::Path,
    ckpt: Option<&std::path::Path>,
    optimizer: Optimizer,
) -> ferroflow_engine::JobGraph {
    let job = JobBuilder::with_config(
        "train-ckpt",
        JobConfig {
            parallelism: 1,
            // Two batches per channel: the source keeps pace with the trainer instead of
            // reading the whole file into the first channel and ending at once (a stop after
            // the sources have ended lets the job run to its end).
            channel_bound: ferroflow_engine::ChannelBound {
                max_rows: 64,
                ..Default::default()
            },
        },
    );
    let job = match ckpt {
        Some(d) => job.with_checkpointing(ferroflow_engine::CheckpointConfig::new(
            d,
            Duration::from_millis(5),
        )),
        None => job,
    };
    let source = ferroflow_connectors::FileSource::new(
        csv,
        ferroflow_connectors::FileFormat::Csv(Default::default()),
    )
    .unwrap()
    .with_batch_size(32);
    let schema = Source::schema(&source);
    job.source("data", Arc::new(source))
        .unwrap()
        // A millisecond per batch: the job takes at least 400 ms, so stops after tens of
        // milliseconds come mid-way however fast the machine is.
        .map("pace", schema, |b| {
            std::thread::sleep(Duration::from_millis(1));
            Ok(b)
        })
        .unwrap()
        .train_torch(
            "trainer",
            TorchTrainer::new(&model("linreg_train.pt"), &["a", "b", "c"], "y", models)
                .optimizer(optimizer)
                .every_batches(Some(40)),
        )
        .unwrap()
        .sink(
            "versions",
            Arc::new(ferroflow_connectors::FileSink::new(
                out,
                ferroflow_connectors::FileFormat::Csv(Default::default()),
            )),
        )
        .unwrap();
    job.build().unwrap()
}

#[test]
fn a_stopped_and_restored_trainer_goes_on_with_its_weights_optimizer_and_versions() {
    for optimizer in [
        Optimizer::Adam { lr: 0.05 },
        Optimizer::Sgd {
            lr: 0.05,
            momentum: 0.9,
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("train.csv");
        write_csv(&csv, &regression_batches(400, 32, 21));
        let build = |models: &str, out: &str, ckpt: Option<&str>| {
            checkpointed_training(
                &csv,
                &dir.path().join(models),
                &dir.path().join(out),
                ckpt.map(|c| dir.path().join(c)).as_deref(),
                optimizer.clone(),
            )
        };
        // One clean run without checkpoints.
        Runtime::new()
            .unwrap()
            .run(build("models-clean", "out-clean", None))
            .unwrap();
        let clean = committed_versions(&dir.path().join("out-clean"));
        assert_eq!(clean.len(), 10, "400 steps, a version every 40: {clean:?}");

        // The same job stopped (a savepoint) again and again, and resumed each time.
        let mut stops = 0;
        for attempt in 0..200 {
            let handle = Runtime::new()
                .unwrap()
                .execute(build("models", "out", Some("ckpt")))
                .unwrap();
            // Longer each time, so that a slow machine still gets to the end.
            std::thread::sleep(Duration::from_millis(20 + attempt * 5));
            handle.stop();
            let report = handle.wait().unwrap();
            if report.status == ferroflow_engine::JobStatus::Finished {
                break;
            }
            stops += 1;
        }
        assert!(
            stops >= 2,
            "{optimizer:?}: the job was stopped mid-way ({stops} times)"
        );
        assert_eq!(
            committed_versions(&dir.path().join("out")),
            clean,
            "{optimizer:?}: the same versions, rows and losses as without stops"
        );
        let holdout = regression_batches(1, 300, 5).remove(0);
        let last = |d: &str| {
            dir.path()
                .join(d)
                .join("trainer-v10.pt")
                .display()
                .to_string()
        };
        assert_eq!(
            error_of(&last("models"), &holdout),
            error_of(&last("models-clean"), &holdout),
            "{optimizer:?}: the last version's weights are the clean run's"
        );
    }
}

/// Some batches, then no more input, without ending (an unbounded stream gone quiet).
struct ThenQuiet(Vec<RecordBatch>);

struct ThenQuietReader(std::vec::IntoIter<RecordBatch>);

impl Source for ThenQuiet {
    fn schema(&self) -> SchemaRef {
        self.0[0].schema()
    }
    fn is_bounded(&self) -> bool {
        false
    }
    fn create_reader(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        Ok(Box::new(ThenQuietReader(self.0.clone().into_iter())))
    }
}

impl SourceReader for ThenQuietReader {
    fn next(&mut self) -> ferroflow_engine::Result<SourceEvent> {
        Ok(self.0.next().map_or(
            SourceEvent::Idle(Duration::from_millis(50)),
            SourceEvent::Batch,
        ))
    }
}

#[test]
fn a_timed_version_comes_when_input_has_gone_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobBuilder::new("quiet");
    let sink = MemorySink::new();
    job.source("data", Arc::new(ThenQuiet(regression_batches(10, 16, 4))))
        .unwrap()
        .train_torch(
            "trainer",
            TorchTrainer::new(&model("linreg_train.pt"), &["a", "b", "c"], "y", dir.path())
                .every_batches(None)
                .every(Some(Duration::from_millis(300))),
        )
        .unwrap()
        .sink("versions", Arc::new(sink.clone()))
        .unwrap();
    let handle = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sink.num_rows() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        handle.status(),
        ferroflow_engine::JobStatus::Running,
        "the job has not ended"
    );
    handle.cancel();
    let _ = handle.wait();
    let v = sink.concat().unwrap();
    assert_eq!(v.num_rows(), 1, "one timed version, with no batch after it");
    let rows = v
        .column_by_name("rows")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(rows.value(0), 160, "it holds every row that came");
}
