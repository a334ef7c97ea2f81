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
}
