//! Crashes: a job process killed with SIGKILL is FAILED with its event; a scheduler killed
//! with SIGKILL at any moment and restarted neither loses nor repeats an action.

mod common;

use std::process::Command;
use std::time::Duration;

use common::flow::{Flow, wait_until};
use serde_json::Value;

fn kill9(pid: u64) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn a_killed_job_process_is_failed_with_its_event() {
    let mut flow = Flow::new();
    flow.start_scheduler();
    let spec = flow.path("crash.yaml");
    std::fs::write(
        &spec,
        "workflow: crash\nproject: p\njobs:\n  long: {type: process, command: 'sleep 60'}\n  other: {type: process, command: 'sleep 60'}\n",
    )
    .unwrap();
    let exec = flow.launch(&spec, "crash", "p");
    let mut pid = 0;
    wait_until("long runs", Duration::from_secs(60), || {
        let jobs = flow.jobs("p", &exec);
        match jobs.iter().find(|j| j["job"] == "long") {
            Some(j) if j["status"] == "RUNNING" => {
                pid = j["pid"].as_u64().unwrap();
                true
            }
            _ => false,
        }
    });
    // The runner is a `ferroflow job run` process of its own.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("job\0run\0"), "{cmdline:?}");
    kill9(pid);
    wait_until("long FAILED", Duration::from_secs(30), || {
        flow.runs("p", &exec, "long") == ["FAILED"]
    });
    let j = flow
        .jobs("p", &exec)
        .into_iter()
        .find(|j| j["job"] == "long")
        .unwrap();
    let error = j["error"].as_str().unwrap();
    assert!(error.contains(&format!("pid {pid}")), "{error}");
    // Its FAILED status was an event with the job's key and the execution's context.
    let events = flow.ok(&[
        "events",
        "list",
        "--keys",
        "crash.long",
        "--types",
        "JOB_STATUS_CHANGED",
    ]);
    let last: Value = serde_json::from_str(events.lines().last().unwrap()).unwrap();
    assert_eq!(last["value"], "FAILED");
    assert_eq!(last["context"], exec.as_str());
    // One failed job fails the execution; the other job is stopped.
    wait_until("execution FAILED", Duration::from_secs(30), || {
        flow.status("p", "crash", &exec) == "FAILED"
    });
    assert_eq!(flow.runs("p", &exec, "other"), ["STOPPED"]);
}

#[test]
fn a_killed_scheduler_neither_loses_nor_repeats_actions() {
    const JOBS: usize = 24;
    let mut flow = Flow::new();
    let ran = flow.path("ran.txt");
    let mut spec = String::from("workflow: fanout\nproject: p\njobs:\n");
    for i in 0..JOBS {
        // Each job is started by its own event and appends its name once per run.
        spec.push_str(&format!(
            "  j{i}:\n    type: process\n    command: 'echo j{i} >> {}'\n    rules:\n      - when: [ {{event: {{key: go.{i}}}}} ]\n        action: START\n",
            ran.display()
        ));
    }
    // And a chain: `last` starts after j0 finished (a job-status trigger across a restart).
    spec.push_str(&format!(
        "  last:\n    type: process\n    command: 'echo last >> {}'\n    rules:\n      - when: [ {{after: {{job: j0, status: FINISHED}}}} ]\n        action: START\n",
        ran.display()
    ));
    let exec = flow.launch_text("fanout.yaml", &spec, "fanout", "p");
    wait_until("execution RUNNING", Duration::from_secs(30), || {
        flow.status("p", "fanout", &exec) == "RUNNING"
    });
    // Send the events in a burst while killing the scheduler with SIGKILL over and over.
    let sender = {
        let data_dir = flow.data_dir.clone();
        std::thread::spawn(move || {
            for i in 0..JOBS {
                let st = Command::new(env!("CARGO_BIN_EXE_ferroflow"))
                    .args(["events", "send", &format!("go.{i}"), "x"])
                    .env("FERROFLOW_DATA_DIR", &data_dir)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(st.success());
            }
        })
    };
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(150 + 70 * round));
        flow.kill_schedulers();
        flow.start_scheduler();
    }
    sender.join().unwrap();
    wait_until("every job finished", Duration::from_secs(120), || {
        let jobs = flow.jobs("p", &exec);
        jobs.len() == JOBS + 1 && jobs.iter().all(|j| j["status"] == "FINISHED")
    });
    std::thread::sleep(Duration::from_secs(1));
    // Exactly one job execution per job, and each command ran exactly once.
    let jobs = flow.jobs("p", &exec);
    assert_eq!(jobs.len(), JOBS + 1, "{jobs:#?}");
    let mut lines: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    let mut expected: Vec<String> = (0..JOBS).map(|i| format!("j{i}")).collect();
    expected.push("last".into());
    expected.sort();
    assert_eq!(lines, expected);
    assert_eq!(flow.status("p", "fanout", &exec), "RUNNING"); // event-driven: until stopped
}
