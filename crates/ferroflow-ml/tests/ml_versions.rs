//! A model node fed whole saved models: versions arriving on a stream of `(version, uri)`
//! rows replace the model between batches; every row is scored once, by the version it
//! names; a version that does not fit the node fails the job naming it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_connectors::{MemorySink, MemorySource};
use ferroflow_engine::{
    InstanceInfo, JobBuilder, JobConfig, Runtime, Source, SourceEvent, SourceReader,
};
use ferroflow_ml::stage::{AnyStage, save_stage};
use ferroflow_ml::{AlgoOperator, MlStreamExt, VersionedModel};
use ferroflow_ml::{load_stage, stage_from_json};
use serde_json::json;

/// Rows `(id, a, b)`, `a` and `b` in [-1, 1), in batches of `batch`.
fn rows(n: usize, batch: usize, seed: u64) -> Vec<RecordBatch> {
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let all: Vec<(f64, f64)> = (0..n).map(|_| (next(), next())).collect();
    all.chunks(batch)
        .enumerate()
        .map(|(k, c)| {
            let id0 = (k * batch) as i64;
            RecordBatch::try_from_iter(vec![
                (
                    "id",
                    Arc::new(Int64Array::from_iter_values(id0..id0 + c.len() as i64)) as ArrayRef,
                ),
                (
                    "a",
                    Arc::new(Float64Array::from_iter_values(c.iter().map(|r| r.0))) as ArrayRef,
                ),
                (
                    "b",
                    Arc::new(Float64Array::from_iter_values(c.iter().map(|r| r.1))) as ArrayRef,
                ),
            ])
            .unwrap()
        })
        .collect()
}

/// Fits assembler + logistic regression on rows labelled by `label(a, b)` and saves the
/// pipeline model under `dir`.
fn save_pipeline(dir: &Path, label: fn(f64, f64) -> bool) -> PathBuf {
    let spec = json!({"className": "Pipeline", "stages": [
        {"className": "VectorAssembler", "paramMap":
            {"inputCols": ["a", "b"], "outputCol": "features", "inputSizes": [1, 1]}},
        {"className": "org.apache.flink.ml.classification.logisticregression.LogisticRegression",
         "paramMap": {"maxIter": 50, "learningRate": 0.5}}
    ]});
    let AnyStage::Estimator(p) = stage_from_json(&spec).unwrap() else {
        panic!("a pipeline estimator")
    };
    let train = labelled(rows(2_000, 500, 99), label);
    let model = p.fit(&train).unwrap();
    save_stage(&AnyStage::Model(model), dir).unwrap();
    dir.to_path_buf()
}

fn loaded(dir: &Path) -> Arc<dyn AlgoOperator> {
    match load_stage(dir).unwrap() {
        AnyStage::Model(m) => Arc::from(m as Box<dyn AlgoOperator>),
        _ => panic!("a model"),
    }
}

/// `(version, uri)` rows, each after its pause.
struct VersionFeed {
    versions: Vec<(Duration, i64, String)>,
}

fn versions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("uri", DataType::Utf8, false),
    ]))
}

struct VersionFeedReader {
    versions: std::vec::IntoIter<(Duration, i64, String)>,
}

impl Source for VersionFeed {
    fn schema(&self) -> SchemaRef {
        versions_schema()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(&self, i: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        let mine = if i.index == 0 {
            self.versions.clone()
        } else {
            Vec::new()
        };
        Ok(Box::new(VersionFeedReader {
            versions: mine.into_iter(),
        }))
    }
}

impl SourceReader for VersionFeedReader {
    fn next(&mut self) -> ferroflow_engine::Result<SourceEvent> {
        Ok(match self.versions.next() {
            Some((pause, v, uri)) => {
                std::thread::sleep(pause);
                SourceEvent::Batch(
                    RecordBatch::try_new(
                        versions_schema(),
                        vec![
                            Arc::new(Int64Array::from(vec![v])),
                            Arc::new(StringArray::from(vec![uri])),
                        ],
                    )
                    .unwrap(),
                )
            }
            None => SourceEvent::End,
        })
    }
}

fn run(
    data: Vec<RecordBatch>,
    versions: Vec<(Duration, i64, String)>,
    model: VersionedModel,
) -> ferroflow_engine::Result<RecordBatch> {
    let job = JobBuilder::with_config(
        "swap",
        JobConfig {
            parallelism: 2,
            ..JobConfig::default()
        },
    );
    let schema = data[0].schema();
    let rows = job.source("rows", Arc::new(MemorySource::new(schema.clone(), data)?))?;
    // Rows go slowly, so versions arrive while they are being scored.
    let slow = rows.map("slow", schema, |b| {
        std::thread::sleep(Duration::from_millis(2));
        Ok(b)
    })?;
    let feed = job.source("versions", Arc::new(VersionFeed { versions }))?;
    let sink = MemorySink::new();
    slow.ml_transform_with_versions("score", model, &feed)?
        .sink("out", Arc::new(sink.clone()))?;
    Runtime::new()?.run(job.build()?)?;
    Ok(sink.concat().expect("rows came out"))
}

/// The error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut s = e.source();
    while let Some(x) = s {
        text.push_str(&format!(": {x}"));
        s = x.source();
    }
    text
}

fn by_id(b: &RecordBatch) -> Vec<usize> {
    let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
    let mut order: Vec<usize> = (0..b.num_rows()).collect();
    order.sort_by_key(|&i| ids.value(i));
    order
}

#[test]
fn rows_are_scored_once_by_the_version_that_was_current() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = save_pipeline(&dir.path().join("v1"), |a, _| a > 0.0);
    let v2 = save_pipeline(&dir.path().join("v2"), |a, _| a < 0.0);
    let data = rows(6_000, 20, 5);
    let out = run(
        data.clone(),
        vec![
            (Duration::ZERO, 1, v1.display().to_string()),
            (
                Duration::from_millis(150),
                2,
                format!("file://{}", v2.display()),
            ),
        ],
        VersionedModel::new(loaded(&v1))
            .wait_for_first_version()
            .version_column("model_version"),
    )
    .unwrap();
    assert_eq!(out.num_rows(), 6_000);
    let order = by_id(&out);
    let ids = out
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert!(
        order
            .iter()
            .enumerate()
            .all(|(k, &i)| ids.value(i) == k as i64),
        "every row exactly once"
    );
    // Each row's prediction is what the version it names gives for it.
    let want: Vec<Vec<f64>> = [&v1, &v2]
        .iter()
        .map(|v| {
            let model = loaded(v);
            data.iter()
                .flat_map(|b| {
                    let t = model.transform(std::slice::from_ref(b)).unwrap();
                    t[0].column_by_name("prediction")
                        .unwrap()
                        .as_primitive::<Float64Type>()
                        .values()
                        .to_vec()
                })
                .collect()
        })
        .collect();
    let version = out
        .column_by_name("model_version")
        .unwrap()
        .as_primitive::<Int64Type>();
    let prediction = out
        .column_by_name("prediction")
        .unwrap()
        .as_primitive::<Float64Type>();
    let mut seen = [0usize; 2];
    for &i in &order {
        let v = version.value(i);
        assert!(v == 1 || v == 2, "version {v}");
        let id = ids.value(i) as usize;
        assert_eq!(
            prediction.value(i),
            want[v as usize - 1][id],
            "row {id} scored by version {v}"
        );
        seen[v as usize - 1] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "both versions served: {seen:?}");
    // The two versions disagree on almost every row, so the check above is sharp.
    let differ = (0..6_000).filter(|&i| want[0][i] != want[1][i]).count();
    assert!(differ > 5_500, "{differ}");
}

#[test]
fn the_built_in_model_serves_until_a_version_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = save_pipeline(&dir.path().join("v1"), |a, _| a > 0.0);
    let v2 = save_pipeline(&dir.path().join("v2"), |a, _| a < 0.0);
    let out = run(
        rows(4_000, 20, 6),
        vec![(Duration::from_millis(50), 2, v2.display().to_string())],
        VersionedModel::new(loaded(&v1))
            .initial_version(1)
            .version_column("v"),
    )
    .unwrap();
    let v = out.column_by_name("v").unwrap().as_primitive::<Int64Type>();
    assert_eq!(out.num_rows(), 4_000);
    assert!(v.values().contains(&1) && v.values().contains(&2));
}

#[test]
fn a_version_that_does_not_fit_the_node_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = save_pipeline(&dir.path().join("v1"), |a, _| a > 0.0);
    // A scaler: other output columns than the node's.
    let scaler = dir.path().join("scaler");
    let spec = json!({"className": "Pipeline", "stages": [
        {"className": "VectorAssembler", "paramMap":
            {"inputCols": ["a", "b"], "outputCol": "features", "inputSizes": [1, 1]}},
        {"className": "StandardScaler", "paramMap": {"inputCol": "features", "outputCol": "scaled"}}
    ]});
    let AnyStage::Estimator(p) = stage_from_json(&spec).unwrap() else {
        panic!()
    };
    save_stage(
        &AnyStage::Model(p.fit(&rows(100, 100, 1)).unwrap()),
        &scaler,
    )
    .unwrap();
    let node = || VersionedModel::new(loaded(&v1)).wait_for_first_version();
    let err = run(
        rows(200, 20, 2),
        vec![(Duration::ZERO, 7, scaler.display().to_string())],
        node(),
    )
    .unwrap_err();
    let err = chain(&err);
    assert!(
        err.contains("'score'") && err.contains("version 7") && err.contains("scaler"),
        "{err}"
    );
    assert!(err.contains("scaled"), "names the columns it gives: {err}");

    // An estimator saved instead of a fitted model.
    let est = dir.path().join("estimator");
    save_stage(&stage_from_json(&spec).unwrap(), &est).unwrap();
    let err = run(
        rows(200, 20, 2),
        vec![(Duration::ZERO, 8, est.display().to_string())],
        node(),
    )
    .unwrap_err();
    let err = chain(&err);
    assert!(
        err.contains("version 8") && err.contains("estimator"),
        "{err}"
    );

    // A uri with nothing there.
    let err = run(
        rows(200, 20, 2),
        vec![(Duration::ZERO, 9, "/nonexistent/model".into())],
        node(),
    )
    .unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains("version 9") && text.contains("/nonexistent/model"),
        "{text}"
    );
}

#[test]
fn versions_without_the_columns_and_rows_without_a_version_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = save_pipeline(&dir.path().join("v1"), |a, _| a > 0.0);
    let job = JobBuilder::new("bad");
    let data = rows(10, 10, 3);
    let s = job
        .source(
            "rows",
            Arc::new(MemorySource::new(data[0].schema(), data.clone()).unwrap()),
        )
        .unwrap();
    let wrong = job
        .source(
            "versions",
            Arc::new(MemorySource::new(data[0].schema(), data).unwrap()),
        )
        .unwrap();
    let err = s
        .ml_transform_with_versions("score", VersionedModel::new(loaded(&v1)), &wrong)
        .unwrap_err()
        .to_string();
    assert!(err.contains("'score'") && err.contains("uri"), "{err}");

    // Rows wait for a first version that never comes: the job says so.
    let err = run(
        rows(100, 20, 4),
        Vec::new(),
        VersionedModel::new(loaded(&v1)).wait_for_first_version(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no model version"), "{err}");
}

/// `data` with a `label` column: 1.0 where `label(a, b)`.
fn labelled(data: Vec<RecordBatch>, label: fn(f64, f64) -> bool) -> Vec<RecordBatch> {
    data.into_iter()
        .map(|b| {
            let a = b.column(1).as_primitive::<Float64Type>();
            let bb = b.column(2).as_primitive::<Float64Type>();
            let y = Float64Array::from_iter_values(
                a.values()
                    .iter()
                    .zip(bb.values())
                    .map(|(&a, &b)| f64::from(label(a, b))),
            );
            let mut cols = b.columns().to_vec();
            cols.push(Arc::new(y));
            let mut fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new("label", DataType::Float64, false));
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
        })
        .collect()
}

#[test]
fn each_version_is_evaluated_once_on_the_rows_after_it() {
    use ferroflow_ml::version_metrics::VersionEvaluation;
    let dir = tempfile::tempdir().unwrap();
    let good = save_pipeline(&dir.path().join("good"), |a, b| a > b);
    let inverted = save_pipeline(&dir.path().join("inverted"), |a, b| a < b);
    let data = labelled(rows(4_000, 20, 8), |a, b| a > b);
    let job = JobBuilder::new("evaluate");
    let schema = data[0].schema();
    let rows = job
        .source(
            "rows",
            Arc::new(MemorySource::new(schema.clone(), data).unwrap()),
        )
        .unwrap();
    let slow = rows
        .map("slow", schema, |b| {
            std::thread::sleep(Duration::from_millis(2));
            Ok(b)
        })
        .unwrap();
    let feed = job
        .source(
            "versions",
            Arc::new(VersionFeed {
                versions: vec![
                    (Duration::ZERO, 1, good.display().to_string()),
                    // Delivered again (a source replaying the newest version): once only.
                    (Duration::ZERO, 1, good.display().to_string()),
                    (Duration::from_millis(20), 2, inverted.display().to_string()),
                    (
                        Duration::ZERO,
                        3,
                        dir.path().join("gone").display().to_string(),
                    ),
                ],
            }),
        )
        .unwrap();
    let sink = MemorySink::new();
    let eval = VersionEvaluation {
        rows: 500,
        ..VersionEvaluation::default()
    };
    let evaluated = slow.ml_evaluate_versions("eval", eval, &feed).unwrap();
    assert_eq!(
        evaluated.current_parallelism(),
        1,
        "one window over all rows"
    );
    evaluated.sink("out", Arc::new(sink.clone())).unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let out = sink.concat().unwrap();
    let col = |n: &str| out.column_by_name(n).unwrap().clone();
    let versions: Vec<i64> = col("version").as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(versions, [1, 2, 3]);
    let rows_scored = col("rows");
    let auc = col("auc");
    let auc = auc.as_primitive::<Float64Type>();
    let loss = col("log_loss");
    let loss = loss.as_primitive::<Float64Type>();
    let err = col("error");
    let err = err.as_string::<i32>();
    assert_eq!(rows_scored.as_primitive::<Int64Type>().value(0), 500);
    assert!(auc.value(0) > 0.95, "good model AUC {}", auc.value(0));
    assert!(auc.value(1) < 0.05, "inverted model AUC {}", auc.value(1));
    assert!(loss.value(1) > loss.value(0), "{loss:?}");
    assert!(err.is_null(0) && err.is_null(1));
    // A version that cannot be loaded fails itself, not the job.
    assert!(auc.is_null(2) && loss.is_null(2));
    assert!(err.value(2).contains("version 3"), "{}", err.value(2));
}

#[test]
fn an_evaluation_without_its_label_or_rows_is_refused_at_build() {
    use ferroflow_ml::version_metrics::VersionEvaluation;
    let job = JobBuilder::new("evaluate");
    let data = rows(10, 10, 1);
    let src = job
        .source(
            "rows",
            Arc::new(MemorySource::new(data[0].schema(), data).unwrap()),
        )
        .unwrap();
    let feed = job
        .source("versions", Arc::new(VersionFeed { versions: vec![] }))
        .unwrap();
    let e = src
        .ml_evaluate_versions("eval", VersionEvaluation::default(), &feed)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no label column 'label'"), "{e}");
    let e = src
        .ml_evaluate_versions(
            "eval",
            VersionEvaluation {
                label_col: "a".into(),
                rows: 0,
                ..VersionEvaluation::default()
            },
            &feed,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 to"), "{e}");
}
