//! The `stream` job type under the scheduler: an engine job that checkpoints into the data
//! directory, is restarted from its checkpoint after a kill -9 (`restart: on_failure`),
//! stops with a savepoint, and writes every row exactly once across all of it.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::flow::{Flow, wait_until};
use serde_json::Value;

const JOB: &str = "name: numbers
sources:
  - name: gen
    type: generator
    rate: 3000
    batch_size: 100
    seed: 7
    columns:
      - {name: id, kind: sequence}
      - {name: k, kind: int, min: 0, max: 9}
nodes:
  - name: tagged
    input: gen
    select: [id, k, \"k * 2 AS k2\"]
sinks:
  - name: out
    input: tagged
    path: out
    format: csv
";

const WORKFLOW: &str = "workflow: numbers
project: p
jobs:
  numbers:
    type: stream
    spec: numbers.yaml
    checkpoint_interval: 200ms
    restart: {policy: on_failure, max_restarts: 3, backoff: 200ms}
";

fn job(flow: &Flow, exec: &str, attempt: u64) -> Option<Value> {
    flow.jobs("p", exec)
        .into_iter()
        .find(|j| j["job"] == "numbers" && j["attempt"] == attempt)
}

/// Ids in the committed (visible) CSV files of `dir`, with how often each appears.
fn committed_ids(dir: &Path) -> Vec<i64> {
    let mut ids = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".tmp") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), 3, "{name}: {line}");
            let (k, k2): (i64, i64) = (cols[1].parse().unwrap(), cols[2].parse().unwrap());
            assert_eq!(k * 2, k2, "{name}: {line}");
            ids.push(cols[0].parse().unwrap());
        }
    }
    ids
}

#[test]
fn a_stream_job_survives_kill_9_from_its_checkpoint_and_stops_with_a_savepoint() {
    let mut flow = Flow::new();
    std::fs::write(flow.path("numbers.yaml"), JOB).unwrap();
    let exec = flow.launch_text("wf.yaml", WORKFLOW, "numbers", "p");

    // The first run checkpoints a few times, then its process is killed.
    let mut pid = 0;
    wait_until(
        "run 1 has checkpoints",
        Duration::from_secs(60),
        || match job(&flow, &exec, 1) {
            Some(j) if j["status"] == "RUNNING" => {
                pid = j["pid"].as_u64().unwrap_or(0);
                j["external"]["last_checkpoint"].as_u64().unwrap_or(0) >= 3
                    && j["external"]["rows_in"].as_u64().unwrap_or(0) > 0
            }
            _ => false,
        },
    );
    let before_kill = committed_ids(&flow.path("out")).len();
    assert!(before_kill > 0, "checkpoints committed rows");
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());

    // The scheduler finds it dead, and its restart policy starts run 2 from the checkpoint.
    wait_until("run 2 checkpoints", Duration::from_secs(60), || {
        job(&flow, &exec, 2).is_some_and(|j| {
            j["status"] == "RUNNING" && j["external"]["last_checkpoint"].as_u64().unwrap_or(0) > 0
        })
    });
    assert_eq!(flow.runs("p", &exec, "numbers")[0], "FAILED");
    let run2 = job(&flow, &exec, 2).unwrap();
    let restored = run2["external"]["restored_from"].as_u64();
    assert!(restored.is_some_and(|id| id >= 3), "{run2}");
    let log = flow.ok(&["workflow", "logs", &exec, "numbers", "--project", "p"]);
    assert!(log.contains("resumed from checkpoint"), "{log}");
    assert_eq!(flow.status("p", "numbers", &exec), "RUNNING");

    // STOP takes a savepoint: the run ends STOPPED, its output committed.
    flow.ok(&["workflow", "stop", &exec, "--project", "p"]);
    wait_until("execution STOPPED", Duration::from_secs(60), || {
        flow.status("p", "numbers", &exec) == "STOPPED"
    });
    assert_eq!(flow.runs("p", &exec, "numbers"), ["FAILED", "STOPPED"]);
    let run2 = job(&flow, &exec, 2).unwrap();
    assert_eq!(
        run2["external"]["last_checkpoint_savepoint"], true,
        "{run2}"
    );

    // Every generated row up to the savepoint is in the output exactly once: the rows the
    // killed run wrote after its last checkpoint were never committed, and run 2 re-read
    // them from the checkpointed position.
    let ids = committed_ids(&flow.path("out"));
    let distinct: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "no row twice");
    let n = ids.len() as i64;
    assert!(n as usize > before_kill, "run 2 wrote more");
    assert_eq!(distinct, (0..n).collect::<BTreeSet<_>>(), "no row missing");
}

#[test]
fn a_stream_job_spec_is_checked_at_submission_naming_its_line() {
    let mut flow = Flow::new();
    flow.start_scheduler();
    std::fs::write(
        flow.path("numbers.yaml"),
        JOB.replace("select: [id, k, \"k * 2 AS k2\"]", "select: [nope]"),
    )
    .unwrap();
    std::fs::write(flow.path("wf.yaml"), WORKFLOW).unwrap();
    let wf = flow.path("wf.yaml");
    let err = flow.fails(&["workflow", "submit", wf.to_str().unwrap()]);
    assert!(
        err.contains("numbers.yaml:12: node 'tagged'") && err.contains("nope"),
        "{err}"
    );

    // Its own checkpoint section is refused: the job type owns where checkpoints go.
    std::fs::write(
        flow.path("numbers.yaml"),
        format!("{JOB}checkpoint: {{interval: 1s, dir: ckpt}}\n"),
    )
    .unwrap();
    let err = flow.fails(&["workflow", "submit", wf.to_str().unwrap()]);
    assert!(err.contains("checkpoints into the data directory"), "{err}");

    // Settings it does not know are refused.
    std::fs::write(flow.path("numbers.yaml"), JOB).unwrap();
    std::fs::write(
        &wf,
        WORKFLOW.replace("checkpoint_interval: 200ms", "checkpoint_every: 200ms"),
    )
    .unwrap();
    let err = flow.fails(&["workflow", "submit", wf.to_str().unwrap()]);
    assert!(err.contains("unknown field `checkpoint_every`"), "{err}");

    // Through a server the job file is read beside the spec too, not in the server's
    // working directory.
    let srv = flow.server(&[]);
    std::fs::write(&wf, WORKFLOW).unwrap();
    std::fs::write(
        flow.path("numbers.yaml"),
        JOB.replace("select: [id, k, \"k * 2 AS k2\"]", "select: [nope]"),
    )
    .unwrap();
    let submit = [
        "workflow",
        "submit",
        wf.to_str().unwrap(),
        "--server",
        &srv.url,
    ];
    let err = flow.fails(&submit);
    assert!(
        err.contains("numbers.yaml:12: node 'tagged'") && err.contains("nope"),
        "{err}"
    );
    std::fs::write(flow.path("numbers.yaml"), JOB).unwrap();
    let out = flow.ok(&submit);
    assert!(out.contains("submitted workflow"), "{out}");
}

/// Online training of a bounded, deterministic stream into the Model Center, slow enough
/// to be killed part-way.
const TRAIN: &str = "name: train
sources:
  - name: events
    type: generator
    rows: 6000
    rate: 2500
    batch_size: 100
    seed: 5
    columns:
      - {name: x1, kind: float, min: -1, max: 1}
      - {name: x2, kind: float, min: -1, max: 1}
nodes:
  - name: labelled
    input: events
    select: [x1, x2, \"CAST(x1 - 2 * x2 > 0 AS DOUBLE) AS label\"]
  - name: features
    input: labelled
    ml: {stage: {className: VectorAssembler, paramMap: {inputCols: [x1, x2], inputSizes: [1, 1], outputCol: features}}}
  - name: fit
    input: features
    fit_online:
      stage:
        className: OnlineLogisticRegression
        paramMap:
          globalBatchSize: 200
          initialModelData: {coefficient: {values: [0.0, 0.0]}, modelVersion: 0}
sinks:
  - name: publish
    input: fit
    type: model_center
    model: ctr
    stage: {className: OnlineLogisticRegressionModel}
";

const TRAIN_WORKFLOW: &str = "workflow: training
project: p
jobs:
  train:
    type: stream
    spec: train.yaml
    checkpoint_interval: 200ms
    restart: {policy: on_failure, backoff: 100ms}
";

fn model_versions(flow: &Flow) -> Vec<Value> {
    flow.json(&["models", "versions", "ctr"])
        .as_array()
        .unwrap()
        .clone()
}

/// The versions so far: none while the job has not registered the model yet.
fn versions_so_far(flow: &Flow) -> usize {
    let out = flow.cmd(&["models", "versions", "ctr"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("model 'ctr' not found") {
        return 0;
    }
    assert!(out.status.success(), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().len()
}

/// Train to the end (killing the first run once it registered `kill_after` versions, if
/// given); returns the Model Center's versions and the last one's model data.
fn train(kill_after: Option<usize>) -> (Vec<Value>, Vec<String>) {
    let mut flow = Flow::new();
    std::fs::write(flow.path("train.yaml"), TRAIN).unwrap();
    let exec = flow.launch_text("wf.yaml", TRAIN_WORKFLOW, "training", "p");
    if let Some(n) = kill_after {
        let mut pid = 0;
        wait_until(
            "versions registered by run 1",
            Duration::from_secs(60),
            || {
                let running = flow
                    .jobs("p", &exec)
                    .into_iter()
                    .find(|j| j["attempt"] == 1 && j["status"] == "RUNNING");
                if let Some(j) = running {
                    pid = j["pid"].as_u64().unwrap_or(0);
                }
                pid != 0 && versions_so_far(&flow) >= n
            },
        );
        let st = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
    flow.wait(&exec, "p", &["--timeout", "120s"]);
    let runs = flow.runs("p", &exec, "train");
    match kill_after {
        Some(_) => assert_eq!(runs, ["FAILED", "FINISHED"]),
        None => assert_eq!(runs, ["FINISHED"]),
    }
    let versions = model_versions(&flow);
    let last = versions.last().unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();
    (versions, model_rows(Path::new(&last)))
}

/// A saved model's data, row by row as text (every digit of every coefficient).
fn model_rows(dir: &Path) -> Vec<String> {
    let ferroflow::ml::AnyStage::Model(m) = ferroflow::ml::load_stage(dir).unwrap() else {
        panic!("{} holds a model", dir.display())
    };
    let data = m.model_data().unwrap();
    common::rows(&data)
        .into_iter()
        .map(|r| r.join(","))
        .collect()
}

#[test]
fn online_training_registers_every_version_once_across_a_kill_9() {
    let (plain, plain_model) = train(None);
    let (killed, killed_model) = train(Some(4));
    for versions in [&plain, &killed] {
        // 6 000 rows in global batches of 200: versions 1..=30, each with its own model
        // directory, lineage to a run of the job, stage GENERATED.
        let numbers: Vec<i64> = versions
            .iter()
            .map(|v| v["version"].as_i64().unwrap())
            .collect();
        assert_eq!(numbers, (1..=30).collect::<Vec<_>>());
        for v in versions.iter() {
            let uri = v["uri"].as_str().unwrap();
            assert!(uri.ends_with(&format!("/v{}", v["version"])), "{v}");
            assert_eq!(v["flavor"], "ferroflow-ml");
            assert_eq!(v["stage"], "GENERATED");
            assert!(
                v["job_execution"].as_str().unwrap().starts_with("p/"),
                "{v}"
            );
        }
    }
    // The killed run's versions came from two runs; the final model is bit-for-bit the
    // one trained without the kill.
    let lineage: BTreeSet<&str> = killed
        .iter()
        .map(|v| v["job_execution"].as_str().unwrap())
        .collect();
    assert_eq!(lineage.len(), 2, "{lineage:?}");
    assert_eq!(plain_model, killed_model);
}

const SERVE: &str = "name: serve
sources:
  - name: requests
    type: generator
    rate: 2000
    batch_size: 50
    seed: 9
    columns:
      - {name: id, kind: sequence}
      - {name: x1, kind: float, min: -1, max: 1}
      - {name: x2, kind: float, min: -1, max: 1}
  - name: deployed
    type: model_center
    model: ctr
    stage: DEPLOYED
    poll_interval: 50ms
nodes:
  - name: features
    input: requests
    ml: {stage: {className: VectorAssembler, paramMap: {inputCols: [x1, x2], inputSizes: [1, 1], outputCol: features}}}
  - name: score
    input: features
    ml:
      stage: {className: OnlineLogisticRegressionModel}
      versions: deployed
      version_column: served_by
      initial_model_data: {coefficient: [0.0, 0.0], modelVersion: 0}
  - name: out
    input: score
    select: [id, prediction, served_by]
sinks:
  - name: scored
    input: out
    path: scored
    format: csv
";

const LOOP_WORKFLOW: &str = "workflow: loop
project: p
jobs:
  train:
    type: stream
    spec: train.yaml
    checkpoint_interval: 200ms
  serve:
    type: stream
    spec: serve.yaml
    checkpoint_interval: 200ms
    rules:
      - when: [ {after: {job: train, status: FINISHED}} ]
        action: START
";

/// (id, served_by) of the committed scored rows.
fn served(dir: &Path) -> Vec<(i64, i64)> {
    let mut rows = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return rows;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            rows.push((cols[0].parse().unwrap(), cols[2].parse().unwrap()));
        }
    }
    rows.sort();
    rows
}

#[test]
fn a_serving_job_swaps_to_each_deployed_version_without_restarting() {
    let mut flow = Flow::new();
    std::fs::write(flow.path("train.yaml"), TRAIN).unwrap();
    std::fs::write(flow.path("serve.yaml"), SERVE).unwrap();
    let exec = flow.launch_text("wf.yaml", LOOP_WORKFLOW, "loop", "p");
    wait_until(
        "train FINISHED, serve RUNNING",
        Duration::from_secs(90),
        || {
            flow.runs("p", &exec, "train") == ["FINISHED"]
                && flow.runs("p", &exec, "serve") == ["RUNNING"]
        },
    );
    assert_eq!(model_versions(&flow).len(), 30);
    let out = flow.path("scored");
    for v in [10, 20, 30] {
        flow.ok(&["models", "stage", "ctr", &v.to_string(), "VALIDATED"]);
        flow.ok(&["models", "stage", "ctr", &v.to_string(), "DEPLOYED"]);
        wait_until(
            &format!("rows served by version {v}"),
            Duration::from_secs(60),
            || served(&out).iter().any(|(_, s)| *s == v),
        );
    }
    // One run served them all: it swapped, never restarted.
    assert_eq!(flow.runs("p", &exec, "serve"), ["RUNNING"]);
    flow.ok(&["workflow", "stop", &exec, "--project", "p"]);
    wait_until("execution STOPPED", Duration::from_secs(60), || {
        flow.status("p", "loop", &exec) == "STOPPED"
    });
    let rows = served(&out);
    let versions: BTreeSet<i64> = rows.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        versions,
        BTreeSet::from([10, 20, 30]),
        "only deployed versions serve"
    );
    // In request order, the serving version only moves forward; every request once.
    let by_id: Vec<i64> = rows.iter().map(|(_, s)| *s).collect();
    assert!(
        by_id.windows(2).all(|w| w[0] <= w[1]),
        "versions only move forward"
    );
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (0..ids.len() as i64).collect::<Vec<_>>(),
        "every request once, in order"
    );
}
