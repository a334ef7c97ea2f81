//! The ML library's stages in a job spec: features assembled, an online logistic
//! regression trained on the stream, and its versions scoring the same stream as they come.

use std::sync::Arc;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch};
use ferroflow_connectors::MemorySink;
use ferroflow_engine::Runtime;
use ferroflow_jobspec::{BuildContext, Factories, Result, Settings, SinkFactory};

struct Collect(Arc<MemorySink>);

impl SinkFactory for Collect {
    fn build(&self, _: &Settings, _: &BuildContext<'_>) -> Result<Arc<dyn ferroflow_engine::Sink>> {
        Ok(self.0.clone())
    }
}

const SPEC: &str = "name: online
sources:
  - name: events
    type: generator
    rows: 4000
    batch_size: 50
    seed: 3
    columns:
      - {name: x1, kind: float, min: -1, max: 1}
      - {name: x2, kind: float, min: -1, max: 1}
nodes:
  - name: labelled
    input: events
    select: [x1, x2, \"CAST(2 * x1 - x2 > 0.1 AS DOUBLE) AS label\"]
  - name: features
    input: labelled
    ml: {stage: {className: VectorAssembler, paramMap: {inputCols: [x1, x2], inputSizes: [1, 1], outputCol: features}}}
  - name: train
    input: features
    fit_online:
      stage:
        className: OnlineLogisticRegression
        paramMap:
          globalBatchSize: 200
          alpha: 1.0
          initialModelData: {coefficient: {values: [0.0, 0.0]}, modelVersion: 0}
  - name: score
    input: features
    ml:
      stage: {className: OnlineLogisticRegressionModel}
      model_data: train
sinks:
  - {name: versions, input: train, type: collect_versions}
  - {name: scored, input: score, type: collect_scored}
";

fn factories(versions: &Arc<MemorySink>, scored: &Arc<MemorySink>) -> Factories {
    ferroflow_stream::factories()
        .with_sink("collect_versions", Arc::new(Collect(versions.clone())))
        .with_sink("collect_scored", Arc::new(Collect(scored.clone())))
}

fn build(text: &str, f: &Factories) -> Result<ferroflow_engine::JobGraph> {
    let dir = std::env::temp_dir();
    let spec = ferroflow_jobspec::parse(text, "online.yaml")?;
    ferroflow_jobspec::build_spec_with(&spec, text, "online.yaml", &dir, f)
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("column {name} in {:?}", b.schema()))
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

#[test]
fn online_training_versions_score_the_stream_they_learn_from() {
    let versions = Arc::new(MemorySink::new());
    let scored = Arc::new(MemorySink::new());
    let job = build(SPEC, &factories(&versions, &scored)).unwrap();
    Runtime::new()
        .unwrap()
        .execute(job)
        .unwrap()
        .wait()
        .unwrap();

    // One version per global batch of 200 rows: 1..=20 (the initial model is not emitted).
    let v = versions.concat().unwrap();
    let ids: Vec<i64> = col::<Int64Array>(&v, "modelVersion").values().to_vec();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());

    // Every row is scored once, with a version that was emitted, in a non-decreasing
    // order. (Which versions a row meets depends on how fast training runs beside scoring,
    // so that is not asserted here; the workflow tests deploy versions at known points.)
    let s = scored.concat().unwrap();
    assert_eq!(s.num_rows(), 4000);
    let served = col::<Int64Array>(&s, "modelVersion");
    assert_eq!(served.null_count(), 0);
    let served: Vec<i64> = served.values().to_vec();
    assert!(
        served.windows(2).all(|w| w[0] <= w[1]),
        "versions only move forward"
    );
    assert!(served.iter().all(|v| ids.contains(v)), "{served:?}");

    // The last version has learnt the boundary: it classifies the stream's rows.
    let coef =
        ferroflow_ml::vector::read_vectors("coefficient", v.column_by_name("coefficient").unwrap())
            .unwrap();
    let w = coef.last().unwrap().as_ref().unwrap().to_dense();
    let (x1, x2) = (col::<Float64Array>(&s, "x1"), col::<Float64Array>(&s, "x2"));
    let label = col::<Float64Array>(&s, "label");
    let right = (0..s.num_rows())
        .filter(|&i| {
            let clicked = w[0] * x1.value(i) + w[1] * x2.value(i) > 0.0;
            f64::from(u8::from(clicked)) == label.value(i)
        })
        .count();
    let accuracy = right as f64 / s.num_rows() as f64;
    assert!(accuracy > 0.9, "accuracy {accuracy} of version 20");
}

#[test]
fn stages_used_the_wrong_way_are_refused_naming_the_node() {
    let versions = Arc::new(MemorySink::new());
    let scored = Arc::new(MemorySink::new());
    let f = factories(&versions, &scored);
    let err = |text: &str| match build(text, &f) {
        Ok(_) => panic!("refused:\n{text}"),
        Err(e) => e.to_string(),
    };
    // An estimator is not a transform.
    let e = err(&SPEC.replace(
        "stage: {className: OnlineLogisticRegressionModel}",
        "stage: {className: LogisticRegression}",
    ));
    assert!(
        e.contains("node 'score'") && e.contains("LogisticRegression is not one"),
        "{e}"
    );
    let e = err(&SPEC.replace(
        "stage: {className: OnlineLogisticRegressionModel}\n      model_data: train",
        "stage: {className: LogisticRegression}",
    ));
    assert!(e.contains("LogisticRegression is an estimator"), "{e}");
    // A batch estimator does not learn online.
    let svc = SPEC
        .replace(
            "className: OnlineLogisticRegression\n",
            "className: LinearSVC\n",
        )
        .replace("          alpha: 1.0\n", "")
        .replace(
            "          initialModelData: {coefficient: {values: [0.0, 0.0]}, modelVersion: 0}\n",
            "",
        );
    let e = err(&svc);
    assert!(
        e.contains("node 'train'") && e.contains("does not learn online"),
        "{e}"
    );
    // Unknown settings and params are refused.
    let e = err(&SPEC.replace("model_data: train", "model_data: train\n      every: 2"));
    assert!(e.contains("unknown field `every`"), "{e}");
    let e = err(&SPEC.replace("alpha: 1.0", "alhpa: 1.0"));
    assert!(e.contains("node 'train'") && e.contains("alhpa"), "{e}");
}

#[test]
fn a_model_center_sink_is_checked_anywhere_and_runs_only_in_a_workflow_job() {
    let spec = SPEC.replace(
        "  - {name: versions, input: train, type: collect_versions}",
        "  - {name: versions, input: train, type: model_center, model: ctr, stage: {className: OnlineLogisticRegressionModel}}",
    );
    let versions = Arc::new(MemorySink::new());
    let scored = Arc::new(MemorySink::new());
    let f = factories(&versions, &scored);
    let job = build(&spec, &f).unwrap();
    let Err(e) = Runtime::new().unwrap().execute(job).and_then(|h| h.wait()) else {
        panic!("a model_center sink without a Model Center does not run")
    };
    assert!(
        e.to_string().contains("runs only inside a workflow job"),
        "{e}"
    );

    let bad = spec.replace(
        "stage: {className: OnlineLogisticRegressionModel}}",
        "stage: {className: OnlineLogisticRegression}}",
    );
    let Err(e) = build(&bad, &f) else {
        panic!("an estimator is not the model the rows are data of")
    };
    assert!(
        e.to_string().contains("'stage' must be a model class"),
        "{e}"
    );
    let bad = spec.replace("model: ctr", "model: ../ctr");
    let Err(e) = build(&bad, &f) else {
        panic!("a model name with a path is refused")
    };
    assert!(e.to_string().contains("model name '../ctr'"), "{e}");
}

#[test]
fn versions_settings_are_checked() {
    let versions = Arc::new(MemorySink::new());
    let scored = Arc::new(MemorySink::new());
    let f = factories(&versions, &scored);
    let spec = SPEC.replace(
        "      model_data: train",
        "      versions: train\n      version_column: v",
    );
    // A model class without data and a versions input of model-data rows (not
    // `(version, uri)`): refused at build, naming the node.
    let Err(e) = build(&spec, &f) else {
        panic!("not a versions input")
    };
    assert!(e.to_string().contains("node 'score'"), "{e}");
    let both = SPEC.replace(
        "model_data: train",
        "model_data: train\n      versions: train",
    );
    let Err(e) = build(&both, &f) else {
        panic!("model_data and versions together")
    };
    assert!(e.to_string().contains("at most one of 'model_data'"), "{e}");
    let stray = SPEC.replace(
        "model_data: train",
        "model_data: train\n      version_column: v",
    );
    let Err(e) = build(&stray, &f) else {
        panic!("version_column without versions")
    };
    assert!(
        e.to_string()
            .contains("'version_column' is used with 'versions' only"),
        "{e}"
    );
}

/// The flagship example's jobs, as written.
fn example(name: &str) -> (std::path::PathBuf, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/ad_click_loop")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

fn build_text(path: &std::path::Path, text: &str) -> Result<ferroflow_engine::JobGraph> {
    let spec = ferroflow_jobspec::parse(text, "evaluate.yaml")?;
    ferroflow_jobspec::build_spec_with(
        &spec,
        text,
        "evaluate.yaml",
        path.parent().unwrap(),
        &ferroflow_stream::factories(),
    )
}

#[test]
fn the_loop_example_builds_and_evaluation_settings_are_checked() {
    for name in ["train.yaml", "evaluate.yaml", "serve.yaml"] {
        let (path, _) = example(name);
        ferroflow_jobspec::load_with(&path, &ferroflow_stream::factories())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let (path, text) = example("evaluate.yaml");
    let err = |from: &str, to: &str| {
        assert!(text.contains(from), "{from}");
        match build_text(&path, &text.replace(from, to)) {
            Ok(_) => panic!("{to}: accepted"),
            Err(e) => e.to_string(),
        }
    };
    let e = err("metric: auc", "metric: accuracy");
    assert!(
        e.contains("promote.metric 'accuracy' is not a float64 column") && e.contains("auc"),
        "{e}"
    );
    let e = err("to: DEPLOYED", "to: GENERATED");
    assert!(e.contains("must be VALIDATED or DEPLOYED"), "{e}");
    let e = err(
        "    promote: {metric: auc, threshold: 0.6, to: DEPLOYED}\n",
        "",
    );
    assert!(e.contains("'reject: deprecate' needs 'promote'"), "{e}");
    let e = err("label_col: click", "label_col: clicked");
    assert!(
        e.contains("node 'evaluated'") && e.contains("no label column 'clicked'"),
        "{e}"
    );
    let e = err("      rows: 2000", "      rows: 0");
    assert!(e.contains("node 'evaluated'"), "{e}");
    let e = err("versions: generated", "versions: impressions");
    assert!(e.contains("version (int64) and uri (utf8)"), "{e}");
    let e = err("      rows: 2000", "      rows: 2000\n      window: 5");
    assert!(e.contains("unknown field `window`"), "{e}");
}
