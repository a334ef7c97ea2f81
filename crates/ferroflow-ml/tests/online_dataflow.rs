//! Online learning as dataflow nodes: a learner's model versions feed a model node in the
//! same job (hot swap), and a stopped and restored learner emits what a clean run emits.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use ferroflow_connectors::{GenColumn, GeneratorSource, MemorySink, MemorySource};
use ferroflow_engine::{CheckpointConfig, JobBuilder, JobConfig, JobStatus, Runtime};
use ferroflow_ml::{AnyStage, MlStreamExt, stage_from_json};
use serde_json::json;

const OLR: &str = "org.apache.flink.ml.classification.logisticregression.OnlineLogisticRegression";

fn estimator(params: serde_json::Value) -> Arc<dyn ferroflow_ml::Estimator> {
    match stage_from_json(&json!({"className": OLR, "paramMap": params})).unwrap() {
        AnyStage::Estimator(e) => Arc::from(e),
        _ => panic!("an estimator"),
    }
}

/// Rows `(x0, x1)` in [-1, 1]^2 labelled `x0 + 2 x1 > 0`, in batches of 100.
fn separable(n: usize) -> Vec<RecordBatch> {
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let rows: Vec<(f64, f64)> = (0..n).map(|_| (next(), next())).collect();
    rows.chunks(100)
        .map(|c| {
            let features: Vec<Option<Vec<f64>>> = c.iter().map(|r| Some(vec![r.0, r.1])).collect();
            RecordBatch::try_from_iter(vec![
                ("features", ferroflow_ml::vector::dense_column(&features)),
                (
                    "label",
                    Arc::new(Float64Array::from_iter_values(
                        c.iter().map(|r| f64::from(r.0 + 2.0 * r.1 > 0.0)),
                    )) as ArrayRef,
                ),
            ])
            .unwrap()
        })
        .collect()
}

#[test]
fn versions_from_online_training_hot_swap_the_model_scoring_the_same_stream() {
    let batches = separable(5_000);
    let job = JobBuilder::with_config(
        "online",
        JobConfig {
            parallelism: 2,
            ..JobConfig::default()
        },
    );
    let rows = job
        .source(
            "rows",
            Arc::new(MemorySource::from_batches(batches).unwrap()),
        )
        .unwrap();
    let est = estimator(json!({
        "globalBatchSize": 50, "alpha": 0.5,
        "initialModelData": {"coefficient": {"values": [0.0, 0.0]}, "modelVersion": 0}
    }));
    let versions = rows.ml_fit_online("train", est.clone(), None).unwrap();
    let model = est.as_online().unwrap().new_model().unwrap();
    // Rows to score go slower than training, so they meet many versions.
    let slow = rows
        .map("slow", rows.schema(), |b| {
            std::thread::sleep(Duration::from_millis(3));
            Ok(b)
        })
        .unwrap();
    let scored = slow
        .ml_transform_with_model_data("score", Arc::from(model), &versions, None)
        .unwrap();
    let out = MemorySink::new();
    let emitted = MemorySink::new();
    scored.sink("out", Arc::new(out.clone())).unwrap();
    versions
        .sink("versions", Arc::new(emitted.clone()))
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();

    let vs = emitted.concat().unwrap();
    let mut numbers: Vec<i64> = vs
        .column_by_name("modelVersion")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    // The versions sink runs two instances, each in emission order.
    numbers.sort();
    // 5 000 rows, 50 a batch: versions 1..=100, the initial model not emitted.
    assert_eq!(numbers, (1..=100).collect::<Vec<_>>());

    let scored = out.concat().unwrap();
    assert_eq!(scored.num_rows(), 5_000, "every row scored once");
    let version = scored
        .column_by_name("modelVersion")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(version.null_count(), 0);
    // Each row was scored with exactly the version it names.
    let coef: std::collections::HashMap<i64, Vec<f64>> =
        coefficients(&emitted.batches()).into_iter().collect();
    let features =
        ferroflow_ml::vector::read_vectors("features", scored.column_by_name("features").unwrap())
            .unwrap();
    let raw = ferroflow_ml::vector::read_vectors(
        "rawPrediction",
        scored.column_by_name("rawPrediction").unwrap(),
    )
    .unwrap();
    let mut used = std::collections::BTreeSet::new();
    for i in 0..scored.num_rows() {
        let v = version.value(i);
        used.insert(v);
        let w = &coef[&v];
        let x = features[i].as_ref().unwrap().to_dense();
        let dot = w[0] * x[0] + w[1] * x[1];
        let p = 1.0 - 1.0 / (1.0 + dot.exp());
        assert_eq!(
            raw[i].as_ref().unwrap().to_dense(),
            vec![1.0 - p, p],
            "row {i}"
        );
    }
    assert!(used.len() >= 3, "versions used: {used:?}");
    // And the last versions separate the classes.
    let last = &coef[&100];
    let label = scored
        .column_by_name("label")
        .unwrap()
        .as_primitive::<Float64Type>();
    let right = (0..scored.num_rows())
        .filter(|&i| {
            let x = features[i].as_ref().unwrap().to_dense();
            f64::from(last[0] * x[0] + last[1] * x[1] >= 0.0) == label.value(i)
        })
        .count();
    assert!(
        right > 4_500,
        "{right} of 5 000 right with the last version"
    );
}

fn generated_job(ckpt: Option<&std::path::Path>, sink: &MemorySink) -> ferroflow_engine::JobGraph {
    // One source instance, so rows reach the learner in the same order in every run.
    let job = JobBuilder::with_config(
        "online-restore",
        JobConfig {
            parallelism: 1,
            ..JobConfig::default()
        },
    );
    let job = match ckpt {
        Some(d) => job.with_checkpointing(CheckpointConfig::new(d, Duration::from_millis(10))),
        None => job,
    };
    let source = GeneratorSource::new(
        vec![
            (
                "a".into(),
                GenColumn::Float {
                    min: -1.0,
                    max: 1.0,
                },
            ),
            (
                "b".into(),
                GenColumn::Float {
                    min: -1.0,
                    max: 1.0,
                },
            ),
            ("label".into(), GenColumn::Int { min: 0, max: 1 }),
        ],
        Some(4_000),
        3,
    )
    .unwrap()
    .with_batch_size(37)
    .with_rate(20_000.0);
    let assembler = match stage_from_json(&json!({"className": "VectorAssembler", "paramMap":
        {"inputCols": ["a", "b"], "outputCol": "features", "inputSizes": [1, 1]}}))
    .unwrap()
    {
        AnyStage::Operator(op) => Arc::from(op),
        _ => panic!(),
    };
    let est = estimator(json!({
        "globalBatchSize": 64, "reg": 0.1, "elasticNet": 0.5,
        "initialModelData": {"coefficient": {"values": [0.1, -0.1]}, "modelVersion": 0}
    }));
    job.source("gen", Arc::new(source))
        .unwrap()
        .ml_transform("assemble", assembler)
        .unwrap()
        .ml_fit_online("train", est, None)
        .unwrap()
        .sink("versions", Arc::new(sink.clone()))
        .unwrap();
    job.build().unwrap()
}

fn coefficients(batches: &[RecordBatch]) -> Vec<(i64, Vec<f64>)> {
    let mut out = Vec::new();
    for b in batches {
        let v = b
            .column_by_name("modelVersion")
            .unwrap()
            .as_primitive::<Int64Type>();
        let c = ferroflow_ml::vector::read_vectors(
            "coefficient",
            b.column_by_name("coefficient").unwrap(),
        )
        .unwrap();
        for (i, c) in c.into_iter().enumerate() {
            out.push((v.value(i), c.unwrap().to_dense()));
        }
    }
    out
}

/// Runs `job` with checkpoints, stopping it (with a savepoint) `pause(stops)` ms after each
/// start and restarting it until it finishes (at least twice mid-way); what `rows` reads
/// from each run's sink, in order.
fn stopped_and_restored<T>(
    job: fn(Option<&std::path::Path>, &MemorySink) -> ferroflow_engine::JobGraph,
    pause: impl Fn(usize) -> u64,
    rows: fn(&[RecordBatch]) -> Vec<T>,
) -> Vec<T> {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let mut got = Vec::new();
    let mut stops = 0;
    loop {
        let sink = MemorySink::new();
        let handle = Runtime::new()
            .unwrap()
            .execute(job(Some(&ckpt), &sink))
            .unwrap();
        std::thread::sleep(Duration::from_millis(pause(stops)));
        handle.stop();
        let report = handle.wait().unwrap();
        // A memory sink keeps what it got before the stop; the savepoint covers it.
        got.extend(rows(&sink.batches()));
        if report.status == JobStatus::Finished {
            break;
        }
        stops += 1;
        assert!(stops < 300, "the job never finished");
    }
    assert!(stops >= 2, "stopped mid-way {stops} times");
    got
}

#[test]
fn a_stopped_and_restored_learner_emits_what_a_clean_run_emits() {
    let clean = MemorySink::new();
    Runtime::new()
        .unwrap()
        .run(generated_job(None, &clean))
        .unwrap();
    let want = coefficients(&clean.batches());
    assert_eq!(want.len(), 4_000 / 64);

    let got = stopped_and_restored(generated_job, |_| 40, coefficients);
    // The FTRL state (z, n, the batch half gathered) came back bit for bit.
    assert_eq!(got, want);
}

/// Progressive validation of assembler | online scaler (count windows of 50, so it holds
/// the first rows) | online logistic regression over generated rows, optionally with
/// checkpoints.
fn progressive_job(
    ckpt: Option<&std::path::Path>,
    sink: &MemorySink,
) -> ferroflow_engine::JobGraph {
    let job = JobBuilder::with_config(
        "progressive-restore",
        JobConfig {
            parallelism: 1,
            ..JobConfig::default()
        },
    );
    let job = match ckpt {
        Some(d) => job.with_checkpointing(CheckpointConfig::new(d, Duration::from_millis(10))),
        None => job,
    };
    let float = GenColumn::Float {
        min: -1.0,
        max: 1.0,
    };
    let source = GeneratorSource::new(
        vec![
            ("id".into(), GenColumn::Sequence),
            ("a".into(), float.clone()),
            ("b".into(), float),
            ("label".into(), GenColumn::Int { min: 0, max: 1 }),
        ],
        Some(4_000),
        5,
    )
    .unwrap()
    .with_batch_size(23)
    .with_rate(20_000.0);
    let stages = [
        json!({"className": "VectorAssembler", "paramMap":
            {"inputCols": ["a", "b"], "outputCol": "features", "inputSizes": [1, 1]}}),
        json!({"className": "org.apache.flink.ml.feature.standardscaler.OnlineStandardScaler",
            "paramMap": {"inputCol": "features", "outputCol": "scaled", "withMean": true,
                "windows": {"class": "org.apache.flink.ml.common.window.CountTumblingWindows", "size": 50}}}),
        json!({"className": OLR, "paramMap": {"featuresCol": "scaled", "globalBatchSize": 16,
            "initialModelData": {"coefficient": {"values": [0.0, 0.0]}, "modelVersion": 0}}}),
    ]
    .iter()
    .map(|s| stage_from_json(s).unwrap())
    .collect();
    job.source("gen", Arc::new(source))
        .unwrap()
        .ml_progressive("progressive", stages)
        .unwrap()
        .sink("pred", Arc::new(sink.clone()))
        .unwrap();
    job.build().unwrap()
}

/// `(id, rawPrediction, modelVersion)` per row, in arrival order.
fn predictions(batches: &[RecordBatch]) -> Vec<(i64, Option<Vec<f64>>, i64)> {
    let mut out = Vec::new();
    for b in batches {
        let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let v = b
            .column_by_name("modelVersion")
            .unwrap()
            .as_primitive::<Int64Type>();
        let raw = ferroflow_ml::vector::read_vectors(
            "rawPrediction",
            b.column_by_name("rawPrediction").unwrap(),
        )
        .unwrap();
        for (i, raw) in raw.into_iter().enumerate() {
            out.push((id.value(i), raw.map(|r| r.to_dense()), v.value(i)));
        }
    }
    out
}

#[test]
fn a_stopped_and_restored_progressive_validation_scores_what_a_clean_run_scores() {
    let clean = MemorySink::new();
    Runtime::new()
        .unwrap()
        .run(progressive_job(None, &clean))
        .unwrap();
    let want = predictions(&clean.batches());
    assert_eq!(want.len(), 4_000);

    // The first stop comes early, while the scaler still holds rows for its first model.
    let got = stopped_and_restored(
        progressive_job,
        |stops| if stops == 0 { 1 } else { 30 },
        predictions,
    );
    // Learners, the scaler's held rows and the source position came back bit for bit.
    assert_eq!(got, want);
}

/// The versions `ml_fit_online` emits for `est` on `batches`, in emission order.
fn fit_versions(
    est: Arc<dyn ferroflow_ml::Estimator>,
    batches: Vec<RecordBatch>,
) -> Vec<RecordBatch> {
    let job = JobBuilder::new("versions");
    let sink = MemorySink::new();
    job.source(
        "rows",
        Arc::new(MemorySource::from_batches(batches).unwrap()),
    )
    .unwrap()
    .ml_fit_online("train", est, None)
    .unwrap()
    .sink("versions", Arc::new(sink.clone()))
    .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    sink.batches()
}

/// An online model saved at version k loads at version k, scores as it did, and, fed a
/// model stream from its start, skips the versions it is already past: it resumes where it
/// was in the stream rather than going back to it.
#[test]
fn an_online_model_saves_and_loads_with_its_place_in_the_model_stream() {
    let est = estimator(json!({
        "globalBatchSize": 50, "alpha": 0.5,
        "initialModelData": {"coefficient": {"values": [0.0, 0.0]}, "modelVersion": 0}
    }));
    let versions = fit_versions(est.clone(), separable(2_000));
    let all = arrow_select::concat::concat_batches(&versions[0].schema(), &versions).unwrap();
    assert_eq!(all.num_rows(), 40);
    // Serve versions 1..=25, then save.
    let mut model = est.as_online().unwrap().new_model().unwrap();
    model.set_model_data(&[all.slice(0, 25)]).unwrap();
    assert_eq!(model.version(), Some(25));
    let probe = &separable(100)[0];
    let before = model.transform(std::slice::from_ref(probe)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("olr");
    ferroflow_ml::stage::save_stage(&AnyStage::Model(model), &saved).unwrap();
    let AnyStage::Model(loaded) = ferroflow_ml::load_stage(&saved).unwrap() else {
        panic!("a model")
    };
    assert_eq!(loaded.version(), Some(25));
    assert_eq!(
        loaded.transform(std::slice::from_ref(probe)).unwrap(),
        before
    );

    // Fed the stream from its start: versions up to 25 are skipped, 26.. replace it.
    let job = JobBuilder::new("resume");
    let rows = job
        .source(
            "rows",
            Arc::new(MemorySource::from_batches(separable(500)).unwrap()),
        )
        .unwrap();
    let old = job
        .source(
            "versions",
            Arc::new(MemorySource::from_batches(vec![all.slice(0, 20)]).unwrap()),
        )
        .unwrap();
    let out = MemorySink::new();
    rows.ml_transform_with_model_data("score", Arc::from(loaded), &old, None)
        .unwrap()
        .sink("out", Arc::new(out.clone()))
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let scored = out.concat().unwrap();
    assert_eq!(scored.num_rows(), 500);
    let v = scored
        .column_by_name("modelVersion")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert!(
        v.values().iter().all(|&v| v == 25),
        "versions older than the saved one never serve"
    );
}
