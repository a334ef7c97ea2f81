//! Native jobs run by the real scheduler and runner (in-process launcher) on a real SQLite
//! store: user functions, SQL transforms, dataset checks, writing, training and predicting.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Float64Array, RecordBatch};
use ferroflow_meta::{MetaStore, ModelStage, SqliteStore};
use ferroflow_native::NativePlugin;
use ferroflow_workflow::service::{self, JobExecutionInfo};
use ferroflow_workflow::{
    ExecutionStatus, JobStatus, Launcher, PluginRegistry, RunnerOptions, Scheduler,
    SchedulerConfig, parse_workflow,
};

struct Env {
    dir: tempfile::TempDir,
    store: Arc<dyn MetaStore>,
    registry: PluginRegistry,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn registry() -> PluginRegistry {
    // A user function: doubles column `x` into `x2`.
    let double: ferroflow_native::NodeFunction = Arc::new(|inputs, settings| {
        let t = &inputs[0];
        let factor = settings["factor"].as_f64().unwrap_or(2.0);
        let x = t
            .column_by_name("x")
            .ok_or("no column x")?
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or("x is not a double")?;
        let x2: Float64Array = x.iter().map(|v| v.map(|v| v * factor)).collect();
        let mut fields: Vec<arrow_schema::FieldRef> = t.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(arrow_schema::Field::new(
            "x2",
            arrow_schema::DataType::Float64,
            true,
        )));
        let mut cols = t.columns().to_vec();
        cols.push(Arc::new(x2));
        RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), cols)
            .map_err(|e| e.to_string())
    });
    let mut r = PluginRegistry::with_builtin();
    r.register(Arc::new(
        NativePlugin::new().with_function("double", double),
    ));
    r
}

/// 40 rows of a separable binary problem: label 1 when the first feature is over 2.
fn write_training_data(path: &std::path::Path) {
    let rows: String = (0..40)
        .map(|i| {
            let x = i as f64 / 10.0;
            let label = if x > 2.0 { 1.0 } else { 0.0 };
            format!("{{\"features\": [{x}, 1.0], \"label\": {label}}}\n")
        })
        .collect();
    std::fs::write(path, rows).unwrap();
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetaStore> = Arc::new(
            SqliteStore::open(&dir.path().join("meta.db"))
                .await
                .unwrap(),
        );
        let registry = registry();
        let cfg = SchedulerConfig {
            rescan: Duration::from_millis(100),
            runner: RunnerOptions {
                heartbeat: Duration::from_millis(200),
                data_dir: dir.path().join("state"),
            },
            ..Default::default()
        };
        let sched = Scheduler::new(
            store.clone(),
            Launcher::InProcess {
                registry: registry.clone(),
            },
            cfg,
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(sched.run(async {
            let _ = rx.await;
        }));
        std::fs::write(
            dir.path().join("in.jsonl"),
            "{\"id\": 1, \"x\": 1.5}\n{\"id\": 2, \"x\": -2.0}\n{\"id\": 3, \"x\": 4.0}\n",
        )
        .unwrap();
        Env {
            dir,
            store,
            registry,
            stop: Some(tx),
        }
    }

    /// Submit and start; wait for the execution to end; its job executions.
    async fn run(&self, yaml: &str) -> (ExecutionStatus, Vec<JobExecutionInfo>) {
        self.run_until(yaml, None).await
    }

    /// Submit and start; wait for the execution to end or, with `job`, for that job's run to
    /// end (an execution with event-driven jobs runs until stopped).
    async fn run_until(
        &self,
        yaml: &str,
        job: Option<&str>,
    ) -> (ExecutionStatus, Vec<JobExecutionInfo>) {
        let mut g = parse_workflow(yaml, "native.yaml").unwrap();
        g.base_dir = Some(self.dir.path().to_path_buf());
        service::submit(&*self.store, &self.registry, &g)
            .await
            .unwrap();
        let ex = service::start(&*self.store, "p", &g.name).await.unwrap();
        for _ in 0..600 {
            let e = service::execution(&*self.store, "p", &ex).await.unwrap();
            let jobs = service::job_executions(&*self.store, "p", &ex)
                .await
                .unwrap();
            let job_ended = job.is_some_and(|j| {
                jobs.iter()
                    .any(|r| r.body.job == j && r.body.status.is_terminal())
            });
            if e.body.status.is_terminal() || job_ended {
                return (e.body.status, jobs);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("execution {ex} did not end");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_function_sql_and_write() {
    let env = Env::new().await;
    let (status, jobs) = env
        .run(
            r#"
workflow: udf
project: p
jobs:
  j: {type: native}
nodes:
  - {id: read, job: j, read_dataset: {path: in.jsonl}}
  - {id: dbl, job: j, inputs: [read], user_defined: {function: double, factor: 3.0}}
  - {id: pos, job: j, inputs: [dbl], transform: {sql: "SELECT id, x2 FROM __THIS__ WHERE x2 > 0 ORDER BY id"}}
  - {id: out, job: j, inputs: [pos], write_dataset: {path: out/result.csv}}
"#,
        )
        .await;
    assert_eq!(status, ExecutionStatus::Succeeded, "{jobs:?}");
    let text = std::fs::read_to_string(env.dir.path().join("out/result.csv")).unwrap();
    assert_eq!(text, "id,x2\n1,4.5\n3,12.0\n");
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(env.dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dataset_check_fails_the_job_naming_node_and_column() {
    let env = Env::new().await;
    let (status, jobs) = env
        .run(
            r#"
workflow: checks
project: p
jobs:
  j: {type: native}
nodes:
  - {id: read, job: j, read_dataset: {path: in.jsonl}}
  - {id: check, job: j, inputs: [read], dataset_validate: {columns: [id, x, label]}}
  - {id: out, job: j, inputs: [check], write_dataset: {path: out/never.csv}}
"#,
        )
        .await;
    assert_eq!(status, ExecutionStatus::Failed);
    assert_eq!(jobs[0].body.status, JobStatus::Failed);
    let err = jobs[0].body.error.as_deref().unwrap();
    assert!(
        err.contains("node 'check' (dataset_validate)")
            && err.contains("column 'label' is missing"),
        "{err}"
    );
    assert!(!env.dir.path().join("out/never.csv").exists());
    let (status, jobs) = env
        .run(
            r#"
workflow: rows
project: p
jobs:
  j: {type: native}
nodes:
  - {id: read, job: j, read_dataset: {path: in.jsonl}}
  - {id: check, job: j, inputs: [read], dataset_validate: {min_rows: 10}}
"#,
        )
        .await;
    assert_eq!(status, ExecutionStatus::Failed);
    let err = jobs[0].body.error.as_deref().unwrap();
    assert!(err.contains("3 rows, at least 10 needed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_registers_a_version_with_lineage_and_predict_uses_a_chosen_version() {
    let env = Env::new().await;
    write_training_data(&env.dir.path().join("train.jsonl"));
    let (status, jobs) = env
        .run_until(
            r#"
workflow: tp
project: p
jobs:
  train: {type: native}
  score:
    type: native
    rules:
      - when: [ {after: {job: train, status: FINISHED}} ]
        action: START
nodes:
  - {id: read, job: train, read_dataset: {path: train.jsonl}}
  - id: fit
    job: train
    inputs: [read]
    train:
      model: lr
      estimator: {className: LogisticRegression, paramMap: {maxIter: 300, learningRate: 1.0}}
  - {id: read2, job: score, read_dataset: {path: train.jsonl}}
  - {id: pred, job: score, inputs: [read2], predict: {model: lr, version: 1}}
  - {id: eval, job: score, inputs: [pred], evaluate: {evaluator: {className: BinaryClassificationEvaluator}}}
  - {id: out, job: score, inputs: [eval], write_dataset: {path: out/metrics.jsonl}}
"#,
            Some("score"),
        )
        .await;
    assert_eq!(status, ExecutionStatus::Running); // `score` is event-driven
    assert!(
        jobs.iter().all(|j| j.body.status == JobStatus::Finished),
        "{jobs:?}"
    );
    let v = env.store.get_model_version("lr", 1).await.unwrap();
    assert_eq!(v.stage, ModelStage::Generated);
    assert_eq!(v.job_execution.as_deref(), Some("p/tp-1.train.1"));
    assert!(v.datasets[0].ends_with("train.jsonl"));
    assert!(std::path::Path::new(&v.uri).join("metadata").exists());
    let metrics = std::fs::read_to_string(env.dir.path().join("out/metrics.jsonl")).unwrap();
    let m: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(m["areaUnderROC"].as_f64().unwrap() > 0.95, "{m}");
}

#[test]
fn settings_are_checked_at_submission() {
    let reg = registry();
    let check = |yaml: &str| {
        let g = parse_workflow(yaml, "bad.yaml").unwrap();
        ferroflow_workflow::check_job_types(yaml, "bad.yaml", &g, &reg)
            .unwrap_err()
            .to_string()
    };
    let head = "workflow: w\nproject: p\njobs:\n  j: {type: native}\nnodes:\n";
    let e = check(&format!(
        "{head}  - {{id: r, job: j, read_dataset: {{path: a.csv, dataset: d}}}}\n"
    ));
    assert!(
        e.contains("bad.yaml:6") && e.contains("exactly one of 'path' and 'dataset'"),
        "{e}"
    );
    let e = check(&format!(
        "{head}  - {{id: r, job: j, read_dataset: {{path: a.csv}}}}\n  - {{id: t, job: j, inputs: [r], train: {{model: m, estimator: {{className: Binarizer}}}}}}\n"
    ));
    assert!(e.contains("not an estimator"), "{e}");
    let e = check(&format!(
        "{head}  - {{id: r, job: j, read_dataset: {{path: a.csv}}}}\n  - {{id: u, job: j, inputs: [r], user_defined: {{function: triple}}}}\n"
    ));
    assert!(
        e.contains("unknown function 'triple' (registered: double)"),
        "{e}"
    );
    let e = check(&format!(
        "{head}  - {{id: r, job: j, read_dataset: {{path: a.csv}}}}\n  - {{id: t, job: j, inputs: [r], trian: {{model: m}}}}\n"
    ));
    assert!(
        e.contains("bad.yaml:7")
            && e.contains("node 't' (trian)")
            && e.contains(
                "no node kind 'trian' (known: read_dataset, write_dataset, transform, train,"
            ),
        "{e}"
    );
    let e = check(&format!(
        "{head}  - {{id: r, job: j, read_dataset: {{path: a.csv}}}}\n  - {{id: t, job: j, inputs: [r], transform: {{stage: {{className: NoSuchStage}}}}}}\n"
    ));
    assert!(
        e.contains("node 't' (transform)") && e.contains("NoSuchStage"),
        "{e}"
    );
    // Values are checked by type, not skipped (a column list holds names, a count a number);
    // each error names its node.
    let read = "  - {id: r, job: j, read_dataset: {path: a.csv}}\n";
    let ev = "evaluator: {className: BinaryClassificationEvaluator}";
    for (node, expect) in [
        (
            "{id: v, job: j, inputs: [r], dataset_validate: {not_null: [a, 3]}}".to_string(),
            vec!["bad.yaml:7", "node 'v' (dataset_validate)", "invalid type"],
        ),
        (
            "{id: v, job: j, inputs: [r], dataset_validate: {min_rows: ten}}".into(),
            vec!["node 'v' (dataset_validate)", "invalid type"],
        ),
        (
            "{id: p, job: j, push_model: {model: m, stage: SOMEWHERE}}".into(),
            vec!["node 'p' (push_model)", "unknown stage 'SOMEWHERE'"],
        ),
        (
            format!(
                "{{id: v, job: j, inputs: [r], model_validate: {{model: m, metric: auc, threshold: 0.5, reject: drop, {ev}}}}}"
            ),
            vec!["reject 'drop': use keep or deprecate"],
        ),
        (
            "{id: w, job: j, inputs: [r], write_dataset: {path: b.csv, pth: c.csv}}".into(),
            vec!["unknown setting 'pth' (known: path)"],
        ),
    ] {
        let e = check(&format!("{head}{read}  - {node}\n"));
        assert!(expect.iter().all(|x| e.contains(x)), "{node}: {e}");
    }
    let e = check("workflow: w\nproject: p\njobs:\n  j: {type: native, command: ls}\n");
    assert!(
        e.contains("bad.yaml:4") && e.contains("unknown setting 'command' for a native job"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_validate_acts_on_the_version_its_event_names() {
    let env = Env::new().await;
    let data = env.dir.path().join("train.jsonl");
    write_training_data(&data);
    // One fitted model, registered twice: versions 1 and 2, both GENERATED.
    let ferroflow_ml::stage::AnyStage::Estimator(est) = ferroflow_ml::stage_from_json(
        &serde_json::json!({"className": "LogisticRegression", "paramMap": {"maxIter": 200, "learningRate": 1.0}}),
    )
    .unwrap() else {
        panic!("an estimator")
    };
    let table = ferroflow_ml::io::read_table(&data).unwrap();
    let model_dir = env.dir.path().join("model");
    est.fit(&[table]).unwrap().save(&model_dir).unwrap();

    let spec = r#"
workflow: mv
project: p
jobs:
  validate:
    type: native
    rules:
      - when: [ {model: {name: m, stage: GENERATED}} ]
        action: START
nodes:
  - {id: read, job: validate, read_dataset: {path: train.jsonl}}
  - id: check
    job: validate
    inputs: [read]
    model_validate: {model: m, evaluator: {className: BinaryClassificationEvaluator}, metric: areaUnderROC, threshold: 0.5}
"#;
    let mut g = parse_workflow(spec, "mv.yaml").unwrap();
    g.base_dir = Some(env.dir.path().to_path_buf());
    service::submit(&*env.store, &env.registry, &g)
        .await
        .unwrap();
    let ex = service::start(&*env.store, "p", "mv").await.unwrap();
    for _ in 0..100 {
        if service::execution(&*env.store, "p", &ex)
            .await
            .unwrap()
            .body
            .status
            == ExecutionStatus::Running
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.store.register_model("m", "").await.unwrap();
    for _ in 0..2 {
        env.store
            .create_model_version(
                "m",
                ferroflow_meta::NewModelVersion {
                    uri: model_dir.display().to_string(),
                    flavor: "ferroflow-ml".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    // The first run was started by version 1's event and validates version 1 (the newest
    // GENERATED version is 2). Version 2's event either found the job still running (START
    // does nothing) or started a second run for version 2.
    let mut first = None;
    for _ in 0..400 {
        let runs = service::job_executions(&*env.store, "p", &ex)
            .await
            .unwrap();
        if let Some(r) = runs.first()
            && r.body.status.is_terminal()
        {
            first = Some(r.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let first = first.expect("the validate run ended");
    assert_eq!(
        first.body.status,
        JobStatus::Finished,
        "{:?}",
        first.body.error
    );
    let trigger = first.body.trigger.as_ref().unwrap();
    assert_eq!(trigger.event_type, "MODEL_GENERATED");
    assert_eq!(trigger.model_version("m"), Some(1));
    let v1 = env.store.get_model_version("m", 1).await.unwrap();
    assert_eq!(v1.stage, ModelStage::Validated);
}
