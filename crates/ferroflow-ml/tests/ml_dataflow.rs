//! ML stages as dataflow nodes: a fitted pipeline applied to a stream in a job.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use ferroflow_connectors::{MemorySink, MemorySource};
use ferroflow_engine::{EngineError, JobBuilder, JobConfig, Runtime};
use ferroflow_ml::{AnyStage, MlStreamExt, stage_from_json};
use serde_json::json;

fn batch(rows: &[(f64, f64)]) -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        (
            "a",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        (
            "b",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn fitted_pipeline() -> Arc<dyn ferroflow_ml::AlgoOperator> {
    let spec = json!({"className": "Pipeline", "stages": [
        {"className": "VectorAssembler", "paramMap": {"inputCols": ["a", "b"], "outputCol": "v", "inputSizes": [1, 1]}},
        {"className": "StandardScaler", "paramMap": {"inputCol": "v", "outputCol": "scaled", "withMean": true}}
    ]});
    let AnyStage::Estimator(p) = stage_from_json(&spec).unwrap() else {
        panic!()
    };
    let train = batch(&[(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)]);
    let model = p.fit(&[train]).unwrap();
    Arc::from(model as Box<dyn ferroflow_ml::AlgoOperator>)
}

#[test]
fn a_fitted_pipeline_scores_a_stream_in_parallel() {
    let model = fitted_pipeline();
    let batches: Vec<RecordBatch> = (0..50)
        .map(|i| batch(&[(i as f64, 10.0 * i as f64), (0.0, 0.0), (2.0, 20.0)]))
        .collect();
    let job = JobBuilder::with_config(
        "score",
        JobConfig {
            parallelism: 2,
            ..JobConfig::default()
        },
    );
    let sink = MemorySink::new();
    job.source(
        "in",
        Arc::new(MemorySource::new(batches[0].schema(), batches).unwrap()),
    )
    .unwrap()
    .ml_transform("scale", model)
    .unwrap()
    .sink("out", Arc::new(sink.clone()))
    .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    assert_eq!(sink.num_rows(), 150);
    for b in sink.batches() {
        let scaled =
            ferroflow_ml::vector::read_vectors("scaled", b.column_by_name("scaled").unwrap())
                .unwrap();
        let a = b.column_by_name("a").unwrap().as_primitive::<Float64Type>();
        for (i, v) in scaled.iter().enumerate() {
            // mean 2, sample std 1 for a.
            let want = a.value(i) - 2.0;
            assert!((v.as_ref().unwrap().get(0) - want).abs() < 1e-12);
        }
        assert_eq!(b.column_by_name("v").unwrap().null_count(), 0);
    }
}

#[test]
fn a_missing_column_fails_when_the_job_is_built() {
    let model = fitted_pipeline();
    let only_a = RecordBatch::try_from_iter(vec![(
        "a",
        Arc::new(Float64Array::from(vec![1.0])) as ArrayRef,
    )])
    .unwrap();
    let job = JobBuilder::new("bad");
    let err = job
        .source(
            "in",
            Arc::new(MemorySource::new(only_a.schema(), vec![only_a]).unwrap()),
        )
        .unwrap()
        .ml_transform("scale", model)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, EngineError::Plan(_)));
    let err = err.to_string();
    assert!(err.contains("scale") && err.contains("'b'"), "{err}");
}

#[test]
fn an_estimator_fits_on_a_bounded_stream_as_a_batch_job() {
    let spec = json!({"className": "Pipeline", "stages": [
        {"className": "VectorAssembler", "paramMap": {"inputCols": ["a", "b"], "outputCol": "v", "inputSizes": [1, 1]}},
        {"className": "StandardScaler", "paramMap": {"inputCol": "v", "outputCol": "scaled", "withMean": true}}
    ]});
    let AnyStage::Estimator(est) = stage_from_json(&spec).unwrap() else {
        panic!()
    };
    let est: Arc<dyn ferroflow_ml::Estimator> = Arc::from(est);
    // 40 batches over 2 parallel instances upstream; the fit node sees them all.
    let batches: Vec<RecordBatch> = (0..40)
        .map(|i| batch(&[(i as f64, 1.0), (i as f64 + 0.5, 3.0)]))
        .collect();
    let all = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    let job = JobBuilder::with_config(
        "fit",
        JobConfig {
            parallelism: 2,
            ..JobConfig::default()
        },
    );
    let model = job
        .source(
            "in",
            Arc::new(MemorySource::new(batches[0].schema(), batches).unwrap()),
        )
        .unwrap()
        .ml_fit("fit_scaler", est.clone())
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let model = model.take().expect("the fitted model");
    // The same model as fitting the whole table directly (row order does not matter to it).
    let direct = est.fit(std::slice::from_ref(&all)).unwrap();
    let (a, b) = (
        model.transform(std::slice::from_ref(&all)).unwrap(),
        direct.transform(std::slice::from_ref(&all)).unwrap(),
    );
    let scaled = |t: &RecordBatch| {
        ferroflow_ml::vector::read_vectors("scaled", t.column_by_name("scaled").unwrap())
            .unwrap()
            .into_iter()
            .map(|v| v.unwrap().to_dense())
            .collect::<Vec<_>>()
    };
    for (x, y) in scaled(&a[0]).iter().zip(scaled(&b[0])) {
        for (p, q) in x.iter().zip(&y) {
            assert!((p - q).abs() < 1e-9);
        }
    }
}

#[test]
fn fitting_needs_a_bounded_stream_and_a_fit_error_fails_the_job() {
    let AnyStage::Estimator(est) =
        stage_from_json(&json!({"className": "StandardScaler", "paramMap": {"inputCol": "v"}}))
            .unwrap()
    else {
        panic!()
    };
    let est: Arc<dyn ferroflow_ml::Estimator> = Arc::from(est);
    let job = JobBuilder::new("endless");
    let generator = ferroflow_connectors::GeneratorSource::new(
        vec![("a".to_string(), ferroflow_connectors::GenColumn::Sequence)],
        None,
        7,
    )
    .unwrap();
    let err = match job
        .source("gen", Arc::new(generator))
        .unwrap()
        .ml_fit("fit", est.clone())
    {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an unbounded stream was accepted"),
    };
    assert!(
        err.contains("node 'fit'") && err.contains("bounded"),
        "{err}"
    );
    // No column 'v': the fit fails at end of input and fails the job, naming the node.
    let job = JobBuilder::new("bad");
    let b = batch(&[(1.0, 2.0)]);
    let _ = job
        .source(
            "in",
            Arc::new(MemorySource::new(b.schema(), vec![b]).unwrap()),
        )
        .unwrap()
        .ml_fit("fit_v", est)
        .unwrap();
    let err = Runtime::new()
        .unwrap()
        .run(job.build().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fit_v") && err.contains("StandardScaler"),
        "{err}"
    );
}

/// A pipeline (VectorAssembler | StandardScaler) fitted on generated rows `a, b`, with
/// checkpoints in `ckpt` when given.
fn fit_generated(
    ckpt: Option<&std::path::Path>,
) -> (ferroflow_engine::JobGraph, ferroflow_ml::FittedModel) {
    let spec = json!({"className": "Pipeline", "stages": [
        {"className": "VectorAssembler", "paramMap": {"inputCols": ["a", "b"], "outputCol": "v", "inputSizes": [1, 1]}},
        {"className": "StandardScaler", "paramMap": {"inputCol": "v", "outputCol": "scaled", "withMean": true}}
    ]});
    let AnyStage::Estimator(est) = stage_from_json(&spec).unwrap() else {
        panic!()
    };
    let job = JobBuilder::with_config(
        "fit-ckpt",
        JobConfig {
            parallelism: 2,
            ..JobConfig::default()
        },
    );
    let job = match ckpt {
        Some(d) => job.with_checkpointing(ferroflow_engine::CheckpointConfig::new(
            d,
            std::time::Duration::from_millis(10),
        )),
        None => job,
    };
    let generator = ferroflow_connectors::GeneratorSource::new(
        vec![
            (
                "a".to_string(),
                ferroflow_connectors::GenColumn::Float {
                    min: 0.0,
                    max: 10.0,
                },
            ),
            (
                "b".to_string(),
                ferroflow_connectors::GenColumn::Int { min: -50, max: 50 },
            ),
        ],
        Some(6_000),
        17,
    )
    .unwrap()
    .with_batch_size(100)
    .with_rate(20_000.0);
    let model = job
        .source("gen", Arc::new(generator))
        .unwrap()
        .ml_fit("fit", Arc::from(est))
        .unwrap();
    (job.build().unwrap(), model)
}

fn scaled_probe(model: Box<dyn ferroflow_ml::Model>) -> Vec<Vec<f64>> {
    let probe = RecordBatch::try_from_iter(vec![
        (
            "a",
            Arc::new(Float64Array::from(vec![0.0, 5.0, 10.0])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(arrow_array::Int64Array::from(vec![-50, 0, 50])) as ArrayRef,
        ),
    ])
    .unwrap();
    let out = model.transform(&[probe]).unwrap();
    ferroflow_ml::vector::read_vectors("scaled", out[0].column_by_name("scaled").unwrap())
        .unwrap()
        .into_iter()
        .map(|v| v.unwrap().to_dense())
        .collect()
}

#[test]
fn a_fit_stopped_and_restored_fits_on_every_row_once() {
    let (job, clean) = fit_generated(None);
    Runtime::new().unwrap().run(job).unwrap();
    let want = scaled_probe(clean.take().unwrap());

    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let mut stops = 0;
    let got = loop {
        let (job, model) = fit_generated(Some(&ckpt));
        let handle = Runtime::new().unwrap().execute(job).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(60));
        handle.stop();
        let report = handle.wait().unwrap();
        if report.status == ferroflow_engine::JobStatus::Finished {
            break model.take().expect("the model of the run that finished");
        }
        assert!(model.take().is_none(), "no model before the end of input");
        stops += 1;
        assert!(stops < 100, "the job never finished");
    };
    assert!(stops >= 2, "stopped mid-way {stops} times");
    // The mean and deviation of the same 6 000 rows (summed in another order).
    for (x, y) in scaled_probe(got).iter().zip(&want) {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() < 1e-9, "{x:?} vs {y:?}");
        }
    }
}
