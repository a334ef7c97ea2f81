//! Event -> job START latency of the scheduler, with real job processes.
//!
//! A workflow with one `process` job (`true`) started by every event with key `go`. For each
//! of N events, one at a time (the job has finished before the next is sent):
//!
//! - **START**: from the call that stores the event (its write included) to the moment the scheduler has decided,
//!   committed the job execution (STARTING) and spawned `ferroflow job run` (the child's own
//!   start-up excluded);
//! - **RUNNING**: to the moment the child process reported RUNNING (includes the child's
//!   start-up: exec, opening the store, reading the snapshot).
//!
//! The scheduler runs in this process (in-process timing of START); jobs are real child
//! processes of the release `ferroflow` binary, on a SQLite store in a temporary directory.
//!
//! `cargo bench --bench workflow_latency`

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferroflow::meta::{MetaStore, NewEvent, SqliteStore};
use ferroflow::workflow::service;
use ferroflow::workflow::{
    JobStatus, Launcher, RunnerOptions, Scheduler, SchedulerConfig, parse_workflow,
};

const EVENTS: usize = 300;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn MetaStore> = Arc::new(
        SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .unwrap(),
    );
    let cfg = SchedulerConfig {
        runner: RunnerOptions {
            heartbeat: Duration::from_millis(500),
            data_dir: dir.path().to_path_buf(),
        },
        ..Default::default()
    };
    let launcher = Launcher::Process {
        program: env!("CARGO_BIN_EXE_ferroflow").into(),
        args: vec![],
    };
    let sched = Scheduler::new(store.clone(), launcher, cfg.clone());
    let stats = sched.stats();
    tokio::spawn(sched.run(std::future::pending()));

    let spec = "workflow: latency\nproject: bench\njobs:\n  j:\n    type: process\n    command: [\"true\"]\n    rules:\n      - when: [ {event: {key: go}} ]\n        action: START\n";
    let g = parse_workflow(spec, "latency.yaml").unwrap();
    service::submit(&*store, &ferroflow::native::job_types(), &g)
        .await
        .unwrap();
    let exec = service::start(&*store, "bench", "latency").await.unwrap();
    // Let the scheduler pick the execution up.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut start_ms = Vec::with_capacity(EVENTS);
    let mut running_ms = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let launches = stats.launches.load(Ordering::SeqCst);
        let event = NewEvent {
            key: "go".into(),
            value: i.to_string(),
            event_type: "BENCH".into(),
            namespace: "default".into(),
            sender: "bench".into(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let stored = store.send_event(event).await.unwrap();
        while stats.launches.load(Ordering::SeqCst) == launches {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        start_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Wait for this run to end; RUNNING from the stored timestamps (ms resolution).
        let attempt = (i + 1) as u32;
        let run = loop {
            let runs = service::job_executions(&*store, "bench", &exec)
                .await
                .unwrap();
            match runs.into_iter().find(|r| r.body.attempt == attempt) {
                Some(r) if r.body.status.is_terminal() => break r,
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        assert_eq!(run.body.status, JobStatus::Finished, "{:?}", run.body.error);
        running_ms.push((run.body.start_time.unwrap() - stored.create_time) as f64);
    }
    start_ms.sort_by(f64::total_cmp);
    running_ms.sort_by(f64::total_cmp);
    println!(
        "event -> job START (decided, committed, child spawned; {EVENTS} events): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&start_ms, 0.5),
        percentile(&start_ms, 0.99),
        start_ms[EVENTS - 1]
    );
    println!(
        "event -> job RUNNING (includes the child process's start-up): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&running_ms, 0.5),
        percentile(&running_ms, 0.99),
        running_ms[EVENTS - 1]
    );
    println!(
        "scheduler poll interval when idle: {:?} (bounds the pick-up delay of an event written by another process)",
        cfg.poll
    );
}
