//! `examples/batch_train_predict` end to end, as the README runs it: a scheduler process,
//! native jobs as child processes, the Model Center's events driving validate, push and
//! predict.

mod common;

use std::time::Duration;

use common::flow::{Flow, copy_dir, wait_until};
use serde_json::Value;

fn example(flow: &Flow) -> std::path::PathBuf {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/batch_train_predict");
    let to = flow.path("example");
    copy_dir(&root, &to);
    to
}

fn versions(flow: &Flow) -> Vec<Value> {
    flow.json(&["models", "versions", "cancer"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn trains_validates_deploys_and_predicts() {
    let mut flow = Flow::new();
    let dir = example(&flow);
    flow.start_scheduler();
    let spec = dir.join("workflow.yaml");
    let out = flow.ok(&["workflow", "submit", spec.to_str().unwrap()]);
    assert!(
        out.contains("submitted workflow 'batch_train_predict'"),
        "{out}"
    );
    let exec = flow
        .ok(&[
            "workflow",
            "start",
            "batch_train_predict",
            "--project",
            "demo",
        ])
        .trim()
        .to_string();
    assert_eq!(exec, "batch_train_predict-1");
    flow.wait(&exec, "demo", &["--job", "predict", "--timeout", "240s"]);

    // One version, trained by the train job, validated, then deployed.
    let vs = versions(&flow);
    assert_eq!(vs.len(), 1, "{vs:?}");
    let v = &vs[0];
    assert_eq!(v["version"], 1);
    assert_eq!(v["stage"], "DEPLOYED");
    assert_eq!(v["flavor"], "ferroflow-ml");
    let lineage = v["job_execution"].as_str().unwrap();
    assert!(
        lineage.starts_with("demo/batch_train_predict-1.train."),
        "{lineage}"
    );
    assert!(
        v["datasets"][0]
            .as_str()
            .unwrap()
            .ends_with("data/train.csv")
    );
    let train_auc = v["metrics"]["areaUnderROC"].as_f64().unwrap();
    assert!(train_auc > 0.95, "training AUC {train_auc}");
    // The stage history went through VALIDATED (events of the Model Center).
    let events = flow.ok(&["events", "list", "--keys", "cancer"]);
    let types: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event_type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        types,
        ["MODEL_GENERATED", "MODEL_VALIDATED", "MODEL_DEPLOYED"],
        "{events}"
    );

    // Each job ran once, in order, and finished.
    let jobs = flow.jobs("demo", &exec);
    let order: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j["job"].as_str().unwrap(), j["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("train", "FINISHED"),
            ("validate", "FINISHED"),
            ("push", "FINISHED"),
            ("predict", "FINISHED")
        ]
    );
    let log = flow.ok(&["workflow", "logs", &exec, "validate", "--project", "demo"]);
    assert!(log.contains("VALIDATED"), "{log}");

    // The predictions: every row of score.csv, scored by the deployed version.
    let text = std::fs::read_to_string(dir.join("out/predictions.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,label,prediction"));
    let rows: Vec<(i64, f64, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 69);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (500..569).collect::<Vec<_>>()
    );
    assert!(rows.iter().all(|r| r.2 == 0.0 || r.2 == 1.0));
    let correct = rows.iter().filter(|r| r.1 == r.2).count();
    assert!(correct >= 60, "{correct}/69 correct");

    // The train job is periodic: the execution runs until stopped.
    assert_eq!(flow.status("demo", "batch_train_predict", &exec), "RUNNING");
    flow.ok(&["workflow", "stop", &exec, "--project", "demo"]);
    flow.wait(&exec, "demo", &["--timeout", "60s"]);
    assert_eq!(flow.status("demo", "batch_train_predict", &exec), "STOPPED");
}

#[test]
fn a_version_below_the_threshold_is_deprecated_and_never_deployed() {
    let mut flow = Flow::new();
    let dir = example(&flow);
    let spec = dir.join("workflow.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("threshold: 0.95", "threshold: 1.5")).unwrap();
    let exec = flow.launch(&spec, "batch_train_predict", "demo");
    flow.wait(&exec, "demo", &["--job", "validate", "--timeout", "240s"]);
    wait_until("the version is DEPRECATED", Duration::from_secs(10), || {
        versions(&flow)[0]["stage"] == "DEPRECATED"
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(flow.runs("demo", &exec, "push").is_empty());
    assert!(flow.runs("demo", &exec, "predict").is_empty());
    assert!(!dir.join("out/predictions.csv").exists());
    let log = flow.ok(&["workflow", "logs", &exec, "validate", "--project", "demo"]);
    assert!(log.contains("< 1.5: rejected (DEPRECATED)"), "{log}");
}

#[test]
fn a_bad_spec_is_refused_with_its_line() {
    let flow = Flow::new();
    let dir = example(&flow);
    let spec = dir.join("workflow.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    // A node of the train job reading a node of the predict job: a data edge across jobs.
    std::fs::write(
        &spec,
        text.replace("inputs: [to_score]", "inputs: [training_data]"),
    )
    .unwrap();
    let err = flow.fails(&["workflow", "submit", spec.to_str().unwrap()]);
    assert!(err.contains("workflow.yaml:"), "{err}");
    assert!(err.contains("training_data"), "{err}");
    // An unknown setting of a native node names the node and the known settings.
    std::fs::write(&spec, text.replace("min_rows: 100", "min_rowz: 100")).unwrap();
    let err = flow.fails(&["workflow", "check", spec.to_str().unwrap()]);
    assert!(err.contains("unknown setting 'min_rowz'"), "{err}");
    assert!(err.contains("check_training_data"), "{err}");
    // An unknown job type.
    std::fs::write(
        &spec,
        text.replace("  push:\n    type: native", "  push:\n    type: spark"),
    )
    .unwrap();
    let err = flow.fails(&["workflow", "submit", spec.to_str().unwrap()]);
    assert!(err.contains("unknown job type 'spark'"), "{err}");
    assert!(
        flow.json(&["workflow", "list", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn retrains_periodically_and_deploys_each_new_version() {
    let mut flow = Flow::new();
    let dir = example(&flow);
    let spec = dir.join("workflow.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("interval: 2m", "interval: 2s")).unwrap();
    let exec = flow.launch(&spec, "batch_train_predict", "demo");
    flow.wait(
        &exec,
        "demo",
        &["--job", "predict", "--runs", "2", "--timeout", "240s"],
    );
    flow.ok(&["workflow", "stop", &exec, "--project", "demo"]);
    flow.wait(&exec, "demo", &["--timeout", "60s"]);

    // Every train run registered a version; the newest pushed one is the only DEPLOYED
    // version, the ones deployed before it were retired, later ones never got that far.
    let vs = versions(&flow);
    let trains = flow
        .runs("demo", &exec, "train")
        .iter()
        .filter(|s| *s == "FINISHED")
        .count();
    assert!(vs.len() >= 2 && vs.len() >= trains, "{vs:?}");
    let deployed: Vec<i64> = vs
        .iter()
        .filter(|v| v["stage"] == "DEPLOYED")
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(deployed.len(), 1, "{vs:?}");
    let d = deployed[0];
    assert!(d >= 2);
    for v in &vs {
        let n = v["version"].as_i64().unwrap();
        let stage = v["stage"].as_str().unwrap();
        if n < d {
            assert_eq!(stage, "DEPRECATED", "version {n}");
        } else if n > d {
            assert!(
                ["GENERATED", "VALIDATED"].contains(&stage),
                "version {n}: {stage}"
            );
        }
    }
    // Each train run was its own job execution; predict ran once per deployment at most.
    let predicts = flow.runs("demo", &exec, "predict");
    assert!(
        predicts.len() >= 2 && predicts.len() as i64 <= d,
        "{predicts:?}"
    );
    let text = std::fs::read_to_string(dir.join("out/predictions.csv")).unwrap();
    assert_eq!(text.lines().count(), 70);
}
