//! ONNX model nodes against the outputs Python's onnxruntime gave for the same inputs
//! (tests/models/expected.json, made by scripts/make-test-models.py), plus batching, sharing,
//! zero-copy, hot swap and bad input.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow::engine::{EngineError, InstanceInfo, Source, SourceEvent, SourceReader};
use ferroflow::inference::{
    BatchConfig, InferenceModel, ModelNode, ModelStreamExt, OnnxLoader, OnnxModel, OnnxOptions,
    SwapMode, load_shared, model_version_schema,
};
use ferroflow::prelude::*;
use serde_json::Value;

const TOL: f64 = 1e-5;

fn model(name: &str) -> String {
    format!("{}/tests/models/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn expected() -> Value {
    let text = std::fs::read_to_string(model("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn vector_column(rows: &[Vec<f64>]) -> FixedSizeListArray {
    let width = rows[0].len();
    let values: Float32Array = rows.iter().flatten().map(|&x| x as f32).collect();
    FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        width as i32,
        Arc::new(values),
        None,
    )
}

fn list_rows(a: &dyn Array) -> Vec<Vec<f64>> {
    let l = a.as_fixed_size_list();
    (0..l.len())
        .map(|r| {
            let v = l.value(r);
            match v.data_type() {
                DataType::Float32 => v
                    .as_primitive::<Float32Type>()
                    .values()
                    .iter()
                    .map(|&x| x as f64)
                    .collect(),
                _ => v.as_primitive::<Float64Type>().values().to_vec(),
            }
        })
        .collect()
}

fn assert_close(got: &[Vec<f64>], want: &[Vec<f64>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: width of row {r}");
        for (a, b) in g.iter().zip(w) {
            assert!(
                (a - b).abs() <= TOL,
                "{what} row {r}: got {g:?}, want {w:?}"
            );
        }
    }
}

/// Run `batches` through `node` in a one-node job; returns the output rows in input order
/// (the input must carry an `id` column).
fn run_node(batches: Vec<RecordBatch>, node: ModelNode, parallelism: usize) -> RecordBatch {
    let schema = batches[0].schema();
    let job = JobBuilder::with_config(
        "score",
        JobConfig {
            parallelism,
            ..JobConfig::default()
        },
    );
    let sink = MemorySink::new();
    job.source("in", Arc::new(MemorySource::new(schema, batches).unwrap()))
        .unwrap()
        .predict("model", node)
        .unwrap()
        .sink("out", Arc::new(sink.clone()))
        .unwrap();
    Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    sort_by_id(&sink.concat().unwrap())
}

fn sort_by_id(b: &RecordBatch) -> RecordBatch {
    let idx =
        arrow_ord::sort::sort_to_indices(b.column_by_name("id").unwrap(), None, None).unwrap();
    arrow_select::take::take_record_batch(b, &idx).unwrap()
}

fn ids(n: usize) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(0..n as i64))
}

/// Iris rows as four Float64 scalar columns, as a CSV file would give them.
fn iris_scalars(rows: &[Vec<f64>]) -> RecordBatch {
    let mut cols: Vec<ArrayRef> = vec![ids(rows.len())];
    let mut fields = vec![Field::new("id", DataType::Int64, false)];
    for (j, name) in ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        .iter()
        .enumerate()
    {
        cols.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r[j]),
        )));
        fields.push(Field::new(*name, DataType::Float64, false));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

#[test]
fn logistic_regression_with_zipmap_matches_python() {
    let e = &expected()["logreg_iris"];
    let input = matrix(&e["inputs"]["float_input"]);
    let node = ModelNode::onnx(model("logreg_iris.onnx"))
        .input(
            "float_input",
            &["sepal_length", "sepal_width", "petal_length", "petal_width"],
        )
        .output("output_label", "label")
        .output("output_probability", "probability");
    let out = run_node(vec![iris_scalars(&input)], node, 1);
    let labels: Vec<i64> = out
        .column_by_name("label")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    let want: Vec<i64> = e["output_label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels, want);
    let probs = list_rows(out.column_by_name("probability").unwrap());
    assert_close(&probs, &matrix(&e["output_probability"]), "probabilities");
    // Input columns are kept, outputs appended.
    assert_eq!(out.num_columns(), 7);
}

#[test]
fn tree_ensemble_matches_python_from_a_vector_column_without_copying() {
    let e = &expected()["forest_iris"];
    let input = matrix(&e["inputs"]["float_input"]);
    let batch = RecordBatch::try_from_iter(vec![
        ("id", ids(input.len())),
        ("float_input", Arc::new(vector_column(&input)) as ArrayRef),
    ])
    .unwrap();
    let schema = batch.schema();
    let job = JobBuilder::new("forest");
    let sink = MemorySink::new();
    job.source(
        "in",
        Arc::new(MemorySource::new(schema, vec![batch]).unwrap()),
    )
    .unwrap()
    .predict("forest", ModelNode::onnx(model("forest_iris.onnx")))
    .unwrap()
    .sink("out", Arc::new(sink.clone()))
    .unwrap();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    let out = sort_by_id(&sink.concat().unwrap());
    let labels = out
        .column_by_name("label")
        .unwrap()
        .as_primitive::<Int64Type>();
    let want: Vec<i64> = e["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(labels.values().to_vec(), want);
    let probs = list_rows(out.column_by_name("probabilities").unwrap());
    assert_close(&probs, &matrix(&e["probabilities"]), "probabilities");
    let m = report.node("forest").unwrap();
    assert_eq!(
        m.counters["tensor_values_copied"], 0,
        "the float32 vector was copied"
    );
    assert_eq!(m.counters["tensor_values_borrowed"], input.len() as u64 * 4);
}

#[test]
fn string_int64_and_float_inputs_match_python() {
    let e = &expected()["mixed_inputs"];
    let i = &e["inputs"];
    let colors: Vec<&str> = i["color"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let n = colors.len();
    let batch = RecordBatch::try_from_iter(vec![
        ("id", ids(n)),
        ("color", Arc::new(StringArray::from(colors)) as ArrayRef),
        (
            "size",
            Arc::new(Int64Array::from_iter_values(
                i["size"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap()),
            )),
        ),
        (
            "weight",
            Arc::new(Float32Array::from_iter_values(
                i["weight"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32),
            )),
        ),
    ])
    .unwrap();
    let out = run_node(vec![batch], ModelNode::onnx(model("mixed_inputs.onnx")), 1);
    let want: Vec<i64> = e["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(
        out.column_by_name("label")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        want
    );
    let probs = list_rows(out.column_by_name("probabilities").unwrap());
    assert_close(&probs, &matrix(&e["probabilities"]), "probabilities");
}

#[test]
fn float64_model_gives_a_scalar_column() {
    let e = &expected()["linreg_double"];
    let input = matrix(&e["inputs"]["input"]);
    let values: Float64Array = input.iter().flatten().copied().collect();
    let vec = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float64, false)),
        2,
        Arc::new(values),
        None,
    );
    let batch = RecordBatch::try_from_iter(vec![
        ("id", ids(input.len())),
        ("input", Arc::new(vec) as ArrayRef),
    ])
    .unwrap();
    let out = run_node(vec![batch], ModelNode::onnx(model("linreg_double.onnx")), 1);
    let col = out.column_by_name("variable").unwrap();
    assert_eq!(
        col.data_type(),
        &DataType::Float64,
        "[n, 1] output is a scalar column"
    );
    let got: Vec<Vec<f64>> = col
        .as_primitive::<Float64Type>()
        .values()
        .iter()
        .map(|&v| vec![v])
        .collect();
    assert_close(&got, &matrix(&e["variable"]), "variable");
}

#[test]
fn torch_exported_mlp_matches_python() {
    let e = &expected()["mlp"];
    let input = matrix(&e["inputs"]["features"]);
    let batch = RecordBatch::try_from_iter(vec![
        ("id", ids(input.len())),
        ("features", Arc::new(vector_column(&input)) as ArrayRef),
    ])
    .unwrap();
    let out = run_node(vec![batch], ModelNode::onnx(model("mlp.onnx")), 1);
    let scores = list_rows(out.column_by_name("scores").unwrap());
    assert_close(&scores, &matrix(&e["onnx_scores"]), "scores");
}

/// `rows` rows of 8 pseudo-random features, in batches of `batch` rows.
fn feature_batches(rows: usize, batch: usize) -> Vec<RecordBatch> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows {
        let n = batch.min(rows - start);
        let mut v = Vec::with_capacity(n * 8);
        for _ in 0..n * 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push((x % 2000) as f32 / 1000.0 - 1.0);
        }
        let features = FixedSizeListArray::new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            8,
            Arc::new(Float32Array::from(v)),
            None,
        );
        out.push(
            RecordBatch::try_from_iter(vec![
                (
                    "id",
                    Arc::new(Int64Array::from_iter_values(
                        start as i64..(start + n) as i64,
                    )) as ArrayRef,
                ),
                ("features", Arc::new(features) as ArrayRef),
            ])
            .unwrap(),
        );
        start += n;
    }
    out
}

/// What the model gives for every row, computed with one direct call.
fn direct_scores(path: &str, batches: &[RecordBatch]) -> Vec<Vec<f64>> {
    let m = OnnxModel::load(path, OnnxOptions::default()).unwrap();
    let all = arrow_select::concat::concat_batches(&batches[0].schema(), batches).unwrap();
    let binding =
        ferroflow::inference::Binding::new("direct", &all.schema(), &m, &[], &[]).unwrap();
    let outputs = m.run(&binding.tensors(&all).unwrap()).unwrap();
    let cols = binding.columns(all.num_rows(), outputs).unwrap();
    list_rows(&cols[0])
}

#[test]
fn results_do_not_depend_on_parallelism_or_batching() {
    let batches = feature_batches(5_000, 333);
    let want = direct_scores(&model("mlp.onnx"), &batches);
    for (parallelism, config) in [
        (1, BatchConfig::default()),
        (2, BatchConfig::fixed(7)),
        (
            2,
            BatchConfig {
                max_rows: 1000,
                min_rows: 500,
                ..BatchConfig::default()
            },
        ),
    ] {
        let out = run_node(
            batches.clone(),
            ModelNode::onnx(model("mlp.onnx")).batching(config.clone()),
            parallelism,
        );
        assert_eq!(out.num_rows(), 5_000);
        let scores = list_rows(out.column_by_name("scores").unwrap());
        assert_close(&scores, &want, &format!("p={parallelism} {config:?}"));
    }
}

#[test]
fn parallel_instances_share_one_loaded_model() {
    let loader = OnnxLoader::default();
    let a = load_shared(&loader, &model("mlp.onnx")).unwrap();
    let b = load_shared(&loader, &model("mlp.onnx")).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let other = OnnxLoader::new(OnnxOptions {
        intra_threads: 2,
        ..OnnxOptions::default()
    });
    let c = load_shared(&other, &model("mlp.onnx")).unwrap();
    assert!(
        !Arc::ptr_eq(&a, &c),
        "other session options give another model"
    );
}

#[test]
fn small_batches_are_merged_into_larger_calls() {
    let batches = feature_batches(4_000, 10);
    let schema = batches[0].schema();
    let job = JobBuilder::new("merge");
    let sink = MemorySink::new();
    job.source("in", Arc::new(MemorySource::new(schema, batches).unwrap()))
        .unwrap()
        .predict(
            "mlp",
            ModelNode::onnx(model("mlp.onnx")).batching(BatchConfig {
                min_rows: 200,
                max_rows: 200,
                max_latency: Duration::from_secs(60),
                ..BatchConfig::default()
            }),
        )
        .unwrap()
        .sink("out", Arc::new(sink.clone()))
        .unwrap();
    let report = Runtime::new().unwrap().run(job.build().unwrap()).unwrap();
    assert_eq!(sink.num_rows(), 4_000);
    let calls = report.node("mlp").unwrap().counters["model_calls"];
    // 400 input batches of 10 rows; calls of up to 200 rows, flushed early only when the
    // input ran dry.
    assert!(calls < 400, "{calls} model calls for 400 input batches");
}

// ---- hot swap -------------------------------------------------------------------------

/// A source emitting `(version, uri)` rows, each after a pause.
struct VersionSource {
    versions: Vec<(Duration, i64, String)>,
}

struct VersionReader {
    versions: std::vec::IntoIter<(Duration, i64, String)>,
}

impl Source for VersionSource {
    fn schema(&self) -> SchemaRef {
        model_version_schema()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(
        &self,
        instance: &InstanceInfo,
    ) -> ferroflow::engine::Result<Box<dyn SourceReader>> {
        let versions = if instance.index == 0 {
            self.versions.clone()
        } else {
            Vec::new()
        };
        Ok(Box::new(VersionReader {
            versions: versions.into_iter(),
        }))
    }
}

impl SourceReader for VersionReader {
    fn next(&mut self) -> ferroflow::engine::Result<SourceEvent> {
        match self.versions.next() {
            None => Ok(SourceEvent::End),
            Some((pause, v, uri)) => {
                std::thread::sleep(pause);
                Ok(SourceEvent::Batch(
                    RecordBatch::try_new(
                        model_version_schema(),
                        vec![
                            Arc::new(Int64Array::from(vec![v])),
                            Arc::new(StringArray::from(vec![uri])),
                        ],
                    )
                    .unwrap(),
                ))
            }
        }
    }
}

/// A bounded source that releases its batches at a steady pace.
struct PacedSource {
    batches: Vec<RecordBatch>,
    pause: Duration,
}

struct PacedReader {
    batches: std::vec::IntoIter<RecordBatch>,
    pause: Duration,
}

impl Source for PacedSource {
    fn schema(&self) -> SchemaRef {
        self.batches[0].schema()
    }
    fn is_bounded(&self) -> bool {
        true
    }
    fn create_reader(
        &self,
        instance: &InstanceInfo,
    ) -> ferroflow::engine::Result<Box<dyn SourceReader>> {
        let mine: Vec<RecordBatch> = self
            .batches
            .iter()
            .enumerate()
            .filter(|(i, _)| i % instance.parallelism == instance.index)
            .map(|(_, b)| b.clone())
            .collect();
        Ok(Box::new(PacedReader {
            batches: mine.into_iter(),
            pause: self.pause,
        }))
    }
}

impl SourceReader for PacedReader {
    fn next(&mut self) -> ferroflow::engine::Result<SourceEvent> {
        std::thread::sleep(self.pause);
        Ok(match self.batches.next() {
            Some(b) => SourceEvent::Batch(b),
            None => SourceEvent::End,
        })
    }
}

fn run_with_versions(
    batches: Vec<RecordBatch>,
    versions: Vec<(Duration, i64, String)>,
    node: ModelNode,
    parallelism: usize,
) -> ferroflow::engine::Result<(RecordBatch, JobReport)> {
    let job = JobBuilder::with_config(
        "swap",
        JobConfig {
            parallelism,
            ..JobConfig::default()
        },
    );
    let sink = MemorySink::new();
    let data = job.source(
        "data",
        Arc::new(PacedSource {
            batches,
            pause: Duration::from_millis(3),
        }),
    )?;
    let versions = job.source("versions", Arc::new(VersionSource { versions }))?;
    data.predict_with_versions("mlp", &versions, node)?
        .sink("out", Arc::new(sink.clone()))?;
    let report = Runtime::new()?.run(job.build()?)?;
    Ok((sort_by_id(&sink.concat().unwrap()), report))
}

#[test]
fn hot_swap_switches_between_calls_without_losing_or_repeating_rows() {
    let batches = feature_batches(6_000, 30);
    let v1 = direct_scores(&model("mlp.onnx"), &batches);
    let v2 = direct_scores(&model("mlp_v2.onnx"), &batches);
    for mode in [SwapMode::Background, SwapMode::Blocking] {
        let (out, report) = run_with_versions(
            batches.clone(),
            vec![(Duration::from_millis(50), 2, model("mlp_v2.onnx"))],
            ModelNode::onnx(model("mlp.onnx"))
                .initial_version(1)
                .version_column("model_version")
                .swap_mode(mode),
            2,
        )
        .unwrap();
        assert_eq!(out.num_rows(), 6_000, "{mode:?}: every row exactly once");
        let id = out
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(id.values().iter().enumerate().all(|(i, &v)| v == i as i64));
        let version = out
            .column_by_name("model_version")
            .unwrap()
            .as_primitive::<Int64Type>();
        let scores = list_rows(out.column_by_name("scores").unwrap());
        let mut seen = [0usize; 3];
        for r in 0..out.num_rows() {
            let v = version.value(r);
            seen[v as usize] += 1;
            let want = if v == 1 { &v1[r] } else { &v2[r] };
            assert_close(
                &scores[r..r + 1],
                std::slice::from_ref(want),
                "row scored by its version",
            );
        }
        assert!(
            seen[1] > 0 && seen[2] > 0,
            "{mode:?}: both versions served: {seen:?}"
        );
        let m = report.node("mlp").unwrap();
        assert_eq!(m.counters["model_swaps"], 2, "one swap per instance");
    }
}

#[test]
fn rows_wait_for_the_first_version() {
    let batches = feature_batches(1_000, 100);
    let (out, _) = run_with_versions(
        batches,
        vec![(Duration::from_millis(100), 7, model("mlp_v2.onnx"))],
        ModelNode::onnx(model("mlp.onnx"))
            .wait_for_first_version()
            .version_column("model_version"),
        1,
    )
    .unwrap();
    assert_eq!(out.num_rows(), 1_000);
    let version = out
        .column_by_name("model_version")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert!(version.values().iter().all(|&v| v == 7));
}

#[test]
fn a_version_with_other_outputs_fails_the_job_naming_it() {
    let batches = feature_batches(2_000, 50);
    let err = run_with_versions(
        batches,
        vec![(Duration::from_millis(20), 3, model("logreg_iris.onnx"))],
        ModelNode::onnx(model("mlp.onnx")),
        1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mlp") && err.contains("logreg_iris.onnx"),
        "{err}"
    );
}

/// A Model Center on a SQLite file, with model `mlp` registered.
struct ModelCenter {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn ferroflow_meta::MetaStore>,
    _dir: tempfile::TempDir,
}

impl ModelCenter {
    fn open() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ferroflow_meta::MetaStore> = Arc::new(
            rt.block_on(ferroflow_meta::SqliteStore::open(
                &dir.path().join("meta.db"),
            ))
            .unwrap(),
        );
        rt.block_on(store.register_model("mlp", "scores")).unwrap();
        ModelCenter {
            rt,
            store,
            _dir: dir,
        }
    }

    /// Register the model at `uri` as a new version of `mlp` and deploy it.
    fn deploy(&self, uri: &str) -> ferroflow_meta::ModelVersion {
        use ferroflow_meta::{ModelStage, NewModelVersion};
        let store = self.store.clone();
        let uri = uri.to_string();
        self.rt.block_on(async move {
            let v = store
                .create_model_version(
                    "mlp",
                    NewModelVersion {
                        uri,
                        flavor: "onnx".into(),
                        ..NewModelVersion::default()
                    },
                )
                .await
                .unwrap();
            store
                .set_model_stage("mlp", v.version, ModelStage::Validated)
                .await
                .unwrap();
            store
                .set_model_stage("mlp", v.version, ModelStage::Deployed)
                .await
                .unwrap()
        })
    }
}

#[test]
fn serves_the_version_deployed_in_the_model_center() {
    use ferroflow::inference::ModelCenterSource;
    use ferroflow_meta::ModelStage;

    let mc = ModelCenter::open();
    let (rt, store) = (&mc.rt, &mc.store);
    assert_eq!(mc.deploy(&model("mlp.onnx")).version, 1);

    let batches = feature_batches(6_000, 30);
    let job = JobBuilder::new("serve");
    let sink = MemorySink::new();
    let data = job
        .source(
            "data",
            Arc::new(PacedSource {
                batches,
                pause: Duration::from_millis(3),
            }),
        )
        .unwrap();
    let versions = job
        .source(
            "model-center",
            Arc::new(
                ModelCenterSource::new(
                    store.clone(),
                    "mlp",
                    ModelStage::Deployed,
                    rt.handle().clone(),
                )
                .with_poll_interval(Duration::from_millis(10)),
            ),
        )
        .unwrap();
    data.predict_with_versions(
        "mlp",
        &versions,
        ModelNode::onnx(model("mlp.onnx"))
            .wait_for_first_version()
            .version_column("model_version"),
    )
    .unwrap()
    .sink("out", Arc::new(sink.clone()))
    .unwrap();
    let handle = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    // Deploy version 2 once some rows were scored by version 1.
    while sink.num_rows() < 500 {
        std::thread::sleep(Duration::from_millis(5));
    }
    mc.deploy(&model("mlp_v2.onnx"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sink.num_rows() < 6_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.cancel();
    let _ = handle.wait();
    let out = sort_by_id(&sink.concat().unwrap());
    assert_eq!(out.num_rows(), 6_000);
    let version = out
        .column_by_name("model_version")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(
        version.value(0),
        1,
        "the deployed version at start serves first"
    );
    assert_eq!(
        version.value(5_999),
        2,
        "the newly deployed version serves last"
    );
    // Versions never go back once swapped (one instance, rows in order).
    assert!(version.values().windows(2).all(|w| w[0] <= w[1]));
}

/// Committed JSON rows under `dir` (visible part files only).
fn committed_json(dir: &std::path::Path) -> Vec<Value> {
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            rows.push(serde_json::from_str(line).unwrap());
        }
    }
    rows
}

/// Generated rows scored by a model node whose version comes once from a file, with
/// checkpoints, at `parallelism`.
fn versioned_scoring(
    dir: &std::path::Path,
    versions: &std::path::Path,
    parallelism: usize,
) -> ferroflow::engine::JobGraph {
    let job = JobBuilder::with_config(
        "versioned",
        JobConfig {
            parallelism,
            ..JobConfig::default()
        },
    )
    .with_checkpointing(CheckpointConfig::new(
        dir.join("ckpt"),
        Duration::from_millis(20),
    ));
    let data = job
        .source(
            "data",
            Arc::new(
                GeneratorSource::new(
                    vec![
                        ("id".into(), GenColumn::Sequence),
                        ("x1".into(), GenColumn::Float { min: 0.0, max: 1.0 }),
                        ("x2".into(), GenColumn::Float { min: 0.0, max: 1.0 }),
                    ],
                    None,
                    3,
                )
                .unwrap()
                .with_batch_size(50)
                .with_rate(20_000.0),
            ),
        )
        .unwrap();
    let versions = job
        .source(
            "versions",
            Arc::new(FileSource::new(versions, FileFormat::JsonLines).unwrap()),
        )
        .unwrap();
    data.predict_with_versions(
        "linreg",
        &versions,
        ModelNode::onnx(model("linreg_double.onnx"))
            .input("input", &["x1", "x2"])
            .initial_version(1)
            .version_column("model_version"),
    )
    .unwrap()
    .sink(
        "out",
        Arc::new(FileSink::new(dir.join("out"), FileFormat::JsonLines)),
    )
    .unwrap();
    job.build().unwrap()
}

#[test]
fn a_restored_model_node_serves_the_version_it_had_even_after_rescaling() {
    let dir = tempfile::tempdir().unwrap();
    // Version 2 is a copy of the initial file: only the version number tells them apart.
    let v2 = dir.path().join("linreg-v2.onnx");
    std::fs::copy(model("linreg_double.onnx"), &v2).unwrap();
    let versions = dir.path().join("versions.jsonl");
    std::fs::write(
        &versions,
        format!(
            "{}\n",
            serde_json::json!({"version": 2, "uri": v2.display().to_string()})
        ),
    )
    .unwrap();
    let run_for = |parallelism: usize, wait: Duration| {
        let handle = Runtime::new()
            .unwrap()
            .execute(versioned_scoring(dir.path(), &versions, parallelism))
            .unwrap();
        std::thread::sleep(wait);
        handle.stop();
        let report = handle.wait().unwrap();
        assert_eq!(report.status, JobStatus::Stopped);
        report
    };
    let first = run_for(2, Duration::from_millis(700));
    assert!(first.restored.is_none());
    let before = committed_json(&dir.path().join("out"));
    let last_id = before
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        before.last().map(|r| r["model_version"].as_i64()),
        Some(Some(2)),
        "version 2 was served before the stop"
    );
    // The version file was read to its end: only the checkpoint knows version 2 now.
    for parallelism in [3, 1] {
        let report = run_for(parallelism, Duration::from_millis(500));
        assert!(report.restored.is_some(), "resumed from the savepoint");
    }
    let rows = committed_json(&dir.path().join("out"));
    let mut ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert!(
        ids.len() as i64 > last_id + 1,
        "the restored runs scored rows"
    );
    assert!(
        ids.iter().enumerate().all(|(i, &id)| id == i as i64),
        "every generated row scored exactly once"
    );
    let stale: Vec<&Value> = rows
        .iter()
        .filter(|r| r["id"].as_i64().unwrap() > last_id && r["model_version"] != 2)
        .collect();
    assert!(
        stale.is_empty(),
        "rows after the restore are scored by version 2: {:?}",
        &stale[..stale.len().min(3)]
    );
}

#[test]
fn a_model_node_whose_checkpointed_version_is_gone_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("linreg-v2.onnx");
    std::fs::copy(model("linreg_double.onnx"), &v2).unwrap();
    let versions = dir.path().join("versions.jsonl");
    std::fs::write(
        &versions,
        format!(
            "{}\n",
            serde_json::json!({"version": 2, "uri": v2.display().to_string()})
        ),
    )
    .unwrap();
    let handle = Runtime::new()
        .unwrap()
        .execute(versioned_scoring(dir.path(), &versions, 1))
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    handle.stop();
    handle.wait().unwrap();
    std::fs::remove_file(&v2).unwrap();
    // The state is restored when the job starts: the start fails.
    let err = match Runtime::new()
        .unwrap()
        .execute(versioned_scoring(dir.path(), &versions, 1))
    {
        Err(e) => e.to_string(),
        Ok(h) => {
            h.cancel();
            panic!("the restored job started without its model version");
        }
    };
    assert!(
        err.contains("linreg") && err.contains("version 2") && err.contains("linreg-v2.onnx"),
        "{err}"
    );
}

#[test]
fn the_model_center_source_resumes_after_the_last_stage_event_it_read() {
    use ferroflow::inference::ModelCenterSource;
    use ferroflow_meta::ModelStage;

    let mc = ModelCenter::open();
    let (rt, store) = (&mc.rt, &mc.store);
    mc.deploy("a.onnx");
    let source = ModelCenterSource::new(
        store.clone(),
        "mlp",
        ModelStage::Deployed,
        rt.handle().clone(),
    );
    assert!(source.supports_checkpoints());
    let info = |index: usize, parallelism: usize| InstanceInfo {
        node: "mc".into(),
        index,
        parallelism,
        run: "r".into(),
    };
    let versions_of = |reader: &mut Box<dyn SourceReader>| -> Vec<i64> {
        match reader.next().unwrap() {
            SourceEvent::Batch(b) => b
                .column_by_name("version")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            SourceEvent::Idle(_) => Vec::new(),
            SourceEvent::End => panic!("unbounded"),
        }
    };
    let mut reader = source.create_reader(&info(0, 1)).unwrap();
    assert_eq!(
        versions_of(&mut reader),
        vec![1],
        "the deployed version first"
    );
    let position = reader.snapshot().unwrap();
    assert_eq!(position.len(), 1, "one split, on the reading instance");
    mc.deploy("b.onnx");
    mc.deploy("c.onnx");
    // A fresh reader sees only the newest; a restored one every version deployed since.
    let mut fresh = source.create_reader(&info(0, 1)).unwrap();
    assert_eq!(versions_of(&mut fresh), vec![3]);
    let splits = source.assign_splits(position, 2).unwrap();
    let mut restored: Vec<_> = splits
        .into_iter()
        .enumerate()
        .map(|(i, s)| source.restore_reader(&info(i, 2), s).unwrap())
        .collect();
    assert_eq!(versions_of(&mut restored[0]), vec![2, 3]);
    assert_eq!(versions_of(&mut restored[1]), Vec::<i64>::new(), "idle");
    // A reader checkpointed before its first read starts as a fresh one.
    let mut early = source.create_reader(&info(0, 1)).unwrap();
    let position = early.snapshot().unwrap();
    let mut restored = source.restore_reader(&info(0, 1), position).unwrap();
    assert_eq!(versions_of(&mut restored), vec![3]);
}

// ---- bad input ----------------------------------------------------------------------------

fn plan_error(batch: RecordBatch, node: ModelNode) -> String {
    let job = JobBuilder::new("bad");
    let schema = batch.schema();
    let stream = job
        .source(
            "in",
            Arc::new(MemorySource::new(schema, vec![batch]).unwrap()),
        )
        .unwrap();
    match stream.predict("scorer", node) {
        Ok(_) => panic!("the node was accepted"),
        Err(e) => {
            assert!(matches!(e, EngineError::Plan(_)), "not a plan error: {e:?}");
            e.to_string()
        }
    }
}

fn features_batch() -> RecordBatch {
    feature_batches(10, 10).remove(0)
}

#[test]
fn missing_or_corrupt_model_files_are_refused_before_the_job_starts() {
    let err = plan_error(features_batch(), ModelNode::onnx("/nonexistent/model.onnx"));
    assert!(
        err.contains("scorer") && err.contains("/nonexistent/model.onnx"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupt.onnx");
    std::fs::write(&bad, b"this is not a protobuf").unwrap();
    let err = plan_error(features_batch(), ModelNode::onnx(bad.display().to_string()));
    assert!(
        err.contains("scorer") && err.contains("corrupt.onnx"),
        "{err}"
    );
}

#[test]
fn load_errors_keep_the_cause_as_their_source() {
    use std::error::Error as _;
    let err = OnnxModel::load("/nonexistent/model.onnx", OnnxOptions::default()).unwrap_err();
    let io = err
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound),
        "{err}"
    );

    // Through the engine too: the job is refused as a plan error whose chain still holds
    // the file system's error.
    let job = JobBuilder::new("bad");
    let batch = features_batch();
    let stream = job
        .source(
            "in",
            Arc::new(MemorySource::new(batch.schema(), vec![batch]).unwrap()),
        )
        .unwrap();
    let Err(err) = stream.predict("scorer", ModelNode::onnx("/nonexistent/model.onnx")) else {
        panic!("a missing model was accepted");
    };
    assert!(matches!(err, EngineError::Plan(_)), "{err:?}");
    let mut chain: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut not_found = false;
    while let Some(e) = chain {
        not_found |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound);
        chain = e.source();
    }
    assert!(not_found, "the cause is lost: {err:?}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupt.onnx");
    std::fs::write(&bad, b"this is not a protobuf").unwrap();
    let err = OnnxModel::load(&bad, OnnxOptions::default()).unwrap_err();
    let cause = err.source().expect("ONNX Runtime's error is kept");
    assert!(cause.downcast_ref::<std::io::Error>().is_none());
    assert!(
        err.to_string().contains("corrupt.onnx") && err.to_string().ends_with(&cause.to_string()),
        "{err}"
    );
}

#[test]
fn bad_bindings_name_the_node_the_model_input_and_the_column() {
    // No column for the model input.
    let b = RecordBatch::try_from_iter(vec![("id", ids(2))]).unwrap();
    let err = plan_error(b, ModelNode::onnx(model("mlp.onnx")));
    assert!(
        err.contains("scorer") && err.contains("'features'") && err.contains("no column"),
        "{err}"
    );

    // A string column where floats are expected.
    let b = RecordBatch::try_from_iter(vec![(
        "features",
        Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
    )])
    .unwrap();
    let err = plan_error(b, ModelNode::onnx(model("mlp.onnx")));
    assert!(err.contains("'features'") && err.contains("Utf8"), "{err}");

    // A vector of the wrong width.
    let b = RecordBatch::try_from_iter(vec![(
        "v",
        Arc::new(vector_column(&[vec![1.0, 2.0, 3.0]])) as ArrayRef,
    )])
    .unwrap();
    let err = plan_error(
        b,
        ModelNode::onnx(model("mlp.onnx")).input("features", &["v"]),
    );
    assert!(
        err.contains("column(s) give 3") && err.contains("8"),
        "{err}"
    );

    // Mapping to an input the model does not have, or from a column that does not exist.
    let err = plan_error(
        features_batch(),
        ModelNode::onnx(model("mlp.onnx")).input("x", &["features"]),
    );
    assert!(
        err.contains("no input 'x'") && err.contains("features"),
        "{err}"
    );
    let err = plan_error(
        features_batch(),
        ModelNode::onnx(model("mlp.onnx")).input("features", &["nope"]),
    );
    assert!(err.contains("column 'nope' not found"), "{err}");
    // An output that does not exist.
    let err = plan_error(
        features_batch(),
        ModelNode::onnx(model("mlp.onnx")).output("probs", "p"),
    );
    assert!(
        err.contains("no output 'probs'") && err.contains("scores"),
        "{err}"
    );
}

/// Run `batch` through `node` (named `name`) and return the job's error; the job must end
/// within a minute.
fn run_error(batch: RecordBatch, name: &str, node: ModelNode) -> String {
    let job = JobBuilder::new("fails");
    job.source(
        "in",
        Arc::new(MemorySource::new(batch.schema(), vec![batch]).unwrap()),
    )
    .unwrap()
    .predict(name, node)
    .unwrap()
    .sink("out", Arc::new(MemorySink::new()))
    .unwrap();
    let handle = Runtime::new()
        .unwrap()
        .execute(job.build().unwrap())
        .unwrap();
    match handle.wait_timeout(Duration::from_secs(60)) {
        Ok(Some(_)) => panic!("the job succeeded"),
        Ok(None) => panic!("the job hangs"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_failure_inside_the_model_fails_the_job_with_the_runtime_message() {
    let batch = RecordBatch::try_from_iter(vec![
        ("id", ids(2)),
        (
            "color",
            Arc::new(StringArray::from(vec!["red", "purple"])) as ArrayRef,
        ),
        ("size", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        (
            "weight",
            Arc::new(Float32Array::from(vec![1.0, 2.0])) as ArrayRef,
        ),
    ])
    .unwrap();
    let err = run_error(
        batch,
        "encoder",
        ModelNode::onnx(model("mixed_inputs.onnx")),
    );
    assert!(
        err.contains("encoder") && err.contains("Unknown Category"),
        "{err}"
    );
}

#[test]
fn nulls_in_a_feature_column_fail_naming_the_column_and_row() {
    let batch = RecordBatch::try_from_iter(vec![
        ("id", ids(3)),
        (
            "a",
            Arc::new(Float64Array::from(vec![Some(1.0), None, Some(2.0)])) as ArrayRef,
        ),
        (
            "b",
            Arc::new(Float64Array::from(vec![1.0, 1.0, 1.0])) as ArrayRef,
        ),
    ])
    .unwrap();
    let err = run_error(
        batch,
        "reg",
        ModelNode::onnx(model("linreg_double.onnx")).input("input", &["a", "b"]),
    );
    assert!(
        err.contains("reg") && err.contains("column 'a'") && err.contains("row 1"),
        "{err}"
    );
}
