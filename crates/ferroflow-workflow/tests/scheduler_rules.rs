//! Scenario tests of the scheduler's rule semantics, on a real SQLite store, with jobs run
//! in-process by the real runner (`process` jobs run real commands).

use std::sync::Arc;
use std::time::Duration;

use ferroflow_meta::{MetaStore, ModelStage, NewEvent, NewModelVersion, SqliteStore};
use ferroflow_workflow::service::{self, ExecutionInfo, JobExecutionInfo};
use ferroflow_workflow::{
    ExecutionStatus, JobStatus, Launcher, ManualClock, PluginRegistry, RunnerOptions, Scheduler,
    SchedulerConfig, parse_workflow,
};
use tokio::sync::oneshot;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn MetaStore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<ferroflow_workflow::Result<()>>>,
}

impl Env {
    async fn new() -> Env {
        Self::with_clock(None).await
    }

    async fn with_clock(clock: Option<ManualClock>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetaStore> = Arc::new(
            SqliteStore::open(&dir.path().join("meta.db"))
                .await
                .unwrap(),
        );
        let cfg = SchedulerConfig {
            rescan: Duration::from_millis(100),
            runner: RunnerOptions {
                heartbeat: Duration::from_millis(200),
                data_dir: dir.path().to_path_buf(),
            },
            ..Default::default()
        };
        let launcher = Launcher::InProcess {
            registry: PluginRegistry::with_builtin(),
        };
        let mut sched = Scheduler::new(store.clone(), launcher, cfg);
        if let Some(c) = clock {
            sched = sched.with_clock(Arc::new(c));
        }
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(sched.run(async {
            let _ = rx.await;
        }));
        Env {
            _dir: dir,
            store,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn submit(&self, yaml: &str) -> String {
        let g = parse_workflow(yaml, "test.yaml").unwrap();
        service::submit(&*self.store, &PluginRegistry::with_builtin(), &g)
            .await
            .unwrap();
        service::start(&*self.store, "p", &g.name).await.unwrap()
    }

    async fn exec(&self, name: &str) -> ExecutionInfo {
        service::execution(&*self.store, "p", name).await.unwrap()
    }

    async fn runs(&self, exec: &str, job: &str) -> Vec<JobExecutionInfo> {
        service::job_executions(&*self.store, "p", exec)
            .await
            .unwrap()
            .into_iter()
            .filter(|j| j.body.job == job)
            .collect()
    }

    async fn statuses(&self, exec: &str, job: &str) -> Vec<JobStatus> {
        self.runs(exec, job)
            .await
            .iter()
            .map(|j| j.body.status)
            .collect()
    }

    async fn send(&self, ty: &str, key: &str, value: &str, context: Option<&str>) {
        self.store
            .send_event(NewEvent {
                key: key.into(),
                value: value.into(),
                event_type: ty.into(),
                namespace: "p".into(),
                sender: "test".into(),
                context: context.map(String::from),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// Wait until `f` holds (checked every 20 ms), failing after 20 s with `what`.
macro_rules! wait_until {
    ($what:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if $cond {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {}",
                $what
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }};
}

/// Long enough that nothing more happens unnoticed (a few scheduler rounds and heartbeats).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_without_triggers_run_and_the_execution_ends() {
    let env = Env::new().await;
    let ok = env
        .submit(
            "workflow: ok\nproject: p\njobs:\n  a: {type: process, command: 'echo hello from a'}\n  b: {type: process, command: 'true'}\n",
        )
        .await;
    wait_until!(
        "SUCCEEDED",
        env.exec(&ok).await.body.status == ExecutionStatus::Succeeded
    );
    assert_eq!(env.statuses(&ok, "a").await, vec![JobStatus::Finished]);
    let run = &env.runs(&ok, "a").await[0];
    assert_eq!(run.body.exit_code, Some(0));
    let log = std::fs::read_to_string(&run.body.log).unwrap();
    assert!(log.contains("hello from a"), "{log}");

    let bad = env
        .submit(
            "workflow: bad\nproject: p\njobs:\n  fails: {type: process, command: 'echo oops >&2; exit 3'}\n  slow: {type: process, command: 'sleep 30'}\n",
        )
        .await;
    wait_until!(
        "FAILED",
        env.exec(&bad).await.body.status == ExecutionStatus::Failed
    );
    let failed = &env.runs(&bad, "fails").await[0].body;
    assert_eq!(failed.exit_code, Some(3));
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("exited with code 3")
    );
    assert!(
        std::fs::read_to_string(&failed.log)
            .unwrap()
            .contains("oops")
    );
    // The other job was stopped so the execution could end.
    assert_eq!(env.statuses(&bad, "slow").await, vec![JobStatus::Stopped]);
    // Every status change was an event with the job's key and the execution as context.
    let events = env
        .store
        .list_events(
            &ferroflow_meta::EventFilter {
                keys: vec!["bad.slow".into()],
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .unwrap();
    let seen: Vec<&str> = events.iter().map(|e| e.value.as_str()).collect();
    assert_eq!(seen, ["INIT", "STARTING", "RUNNING", "STOPPING", "STOPPED"]);
    assert!(events.iter().all(
        |e| e.context.as_deref() == Some(bad.as_str()) && e.event_type == "JOB_STATUS_CHANGED"
    ));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_status_and_model_version_triggers() {
    let env = Env::new().await;
    let ex = env
        .submit(
            r#"
workflow: chain
project: p
jobs:
  train: {type: process, command: 'true'}
  report:
    type: process
    command: 'true'
    rules:
      - when: [ {after: {job: train, status: FINISHED}} ]
        action: START
  deploy:
    type: process
    command: 'true'
    rules:
      - when: [ {model: {name: churn, stage: VALIDATED}} ]
        action: START
"#,
        )
        .await;
    wait_until!(
        "report ran",
        env.statuses(&ex, "report").await == vec![JobStatus::Finished]
    );
    assert!(env.runs(&ex, "deploy").await.is_empty());
    env.store.register_model("churn", "").await.unwrap();
    let v1 = env
        .store
        .create_model_version(
            "churn",
            NewModelVersion {
                uri: "m1".into(),
                flavor: "other".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.store
        .set_model_stage("churn", v1.version, ModelStage::Validated)
        .await
        .unwrap();
    wait_until!(
        "deploy ran",
        env.statuses(&ex, "deploy").await == vec![JobStatus::Finished]
    );
    settle().await;
    assert_eq!(env.runs(&ex, "report").await.len(), 1);
    assert_eq!(env.exec(&ex).await.body.status, ExecutionStatus::Running); // event-driven
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_events_fire_exactly_once() {
    let env = Env::new().await;
    let ex = env
        .submit(
            r#"
workflow: ooo
project: p
jobs:
  on_model:
    type: process
    command: 'true'
    rules:
      - when: [ {model: {name: m, stage: GENERATED}} ]
        action: START
  on_both:
    type: process
    command: 'true'
    rules:
      - when:
          - event: {event_type: A, key: k}
          - event: {event_type: B, key: k}
        action: START
"#,
        )
        .await;
    wait_until!(
        "running",
        env.exec(&ex).await.body.status == ExecutionStatus::Running
    );
    // Version 2's event, then a late one about version 1 (a slow sender): one run.
    let v = |n: i64| format!("{{\"model\":\"m\",\"version\":{n},\"stage\":\"GENERATED\"}}");
    env.send("MODEL_GENERATED", "m", &v(2), None).await;
    wait_until!("first run", env.runs(&ex, "on_model").await.len() == 1);
    env.send("MODEL_GENERATED", "m", &v(1), None).await;
    // MEET_ALL in reverse order: B then A, then A again (B already consumed): one run.
    env.send("B", "k", "", None).await;
    env.send("A", "k", "", None).await;
    wait_until!("both", env.runs(&ex, "on_both").await.len() == 1);
    env.send("A", "k", "", None).await;
    settle().await;
    assert_eq!(env.runs(&ex, "on_model").await.len(), 1);
    assert_eq!(env.runs(&ex, "on_both").await.len(), 1);
    // A newer version still fires.
    env.send("MODEL_GENERATED", "m", &v(3), None).await;
    wait_until!("second run", env.runs(&ex, "on_model").await.len() == 2);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_restart_none_and_rule_order() {
    let env = Env::new().await;
    let ex = env
        .submit(
            r#"
workflow: ctl
project: p
jobs:
  long:
    type: process
    command: 'sleep 60'
    stop_grace: 2s
    rules:
      - when: [ {event: {event_type: CTL, key: long, value: ignore}} ]
        action: NONE
      - when: [ {event: {event_type: CTL, key: long, value: start}} ]
        action: START
      - when: [ {event: {event_type: CTL, key: long, value: stop}} ]
        action: STOP
      - when: [ {event: {event_type: CTL, key: long, value: restart}} ]
        action: RESTART
      - when: [ {event: {event_type: CTL, key: long, value: "*"}} ]
        meet: ANY
        action: START
"#,
        )
        .await;
    wait_until!(
        "running",
        env.exec(&ex).await.body.status == ExecutionStatus::Running
    );
    env.send("CTL", "long", "ignore", None).await; // NONE: the first rule shadows the rest
    settle().await;
    assert!(env.runs(&ex, "long").await.is_empty());
    env.send("CTL", "long", "start", None).await;
    wait_until!(
        "started",
        env.statuses(&ex, "long").await == vec![JobStatus::Running]
    );
    env.send("CTL", "long", "start", None).await; // already running: nothing
    settle().await;
    assert_eq!(env.runs(&ex, "long").await.len(), 1);
    env.send("CTL", "long", "restart", None).await;
    wait_until!(
        "restarted",
        env.statuses(&ex, "long").await == vec![JobStatus::Stopped, JobStatus::Running]
    );
    env.send("CTL", "long", "stop", None).await;
    wait_until!(
        "stopped",
        env.statuses(&ex, "long").await == vec![JobStatus::Stopped, JobStatus::Stopped]
    );
    env.send("CTL", "long", "stop", None).await; // not running: nothing
    env.send("CTL", "long", "restart", None).await; // not running: starts it
    wait_until!(
        "third run",
        env.statuses(&ex, "long").await.last() == Some(&JobStatus::Running)
    );
    assert_eq!(env.runs(&ex, "long").await.len(), 3);
    service::stop(&*env.store, "p", &ex).await.unwrap();
    wait_until!(
        "execution stopped",
        env.exec(&ex).await.body.status == ExecutionStatus::Stopped
    );
    assert!(
        env.statuses(&ex, "long")
            .await
            .iter()
            .all(|s| *s == JobStatus::Stopped)
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_a_context_reach_only_their_execution() {
    let env = Env::new().await;
    let spec = r#"
workflow: iso
project: p
jobs:
  j:
    type: process
    command: 'true'
    rules:
      - when: [ {event: {event_type: GO, key: k, life: ONCE}} ]
        action: START
"#;
    let e1 = env.submit(spec).await;
    let e2 = service::start(&*env.store, "p", "iso").await.unwrap();
    wait_until!("both running", {
        env.exec(&e1).await.body.status == ExecutionStatus::Running
            && env.exec(&e2).await.body.status == ExecutionStatus::Running
    });
    env.send("GO", "k", "", Some(&e1)).await;
    wait_until!(
        "e1 ran",
        env.statuses(&e1, "j").await == vec![JobStatus::Finished]
    );
    settle().await;
    assert!(
        env.runs(&e2, "j").await.is_empty(),
        "e2 must not see e1's event"
    );
    env.send("GO", "k", "", None).await; // no context: every running execution
    wait_until!("both ran", {
        env.runs(&e1, "j").await.len() == 2 && env.runs(&e2, "j").await.len() == 1
    });
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_trigger_restarts_once_per_due_tick() {
    let clock = ManualClock::at(1_767_225_600_000);
    let env = Env::with_clock(Some(clock.clone())).await;
    let ex = env
        .submit(
            "workflow: per\nproject: p\njobs:\n  p:\n    type: process\n    command: 'true'\n    periodic: {interval: 1h}\n",
        )
        .await;
    wait_until!(
        "running",
        env.exec(&ex).await.body.status == ExecutionStatus::Running
    );
    settle().await;
    assert!(
        env.runs(&ex, "p").await.is_empty(),
        "no run before the first tick"
    );
    clock.advance(Duration::from_secs(3600));
    wait_until!(
        "first tick",
        env.statuses(&ex, "p").await == vec![JobStatus::Finished]
    );
    // Three periods pass at once (a scheduler that was down): one run, not three.
    clock.advance(Duration::from_secs(3 * 3600));
    wait_until!("second tick", env.runs(&ex, "p").await.len() == 2);
    settle().await;
    assert_eq!(env.runs(&ex, "p").await.len(), 2);
    let next = env.exec(&ex).await.body.jobs["p"].next_tick.unwrap();
    assert_eq!(next, clock_now(&clock) + 3_600_000);
    env.shutdown().await;
}

fn clock_now(c: &ManualClock) -> i64 {
    use ferroflow_workflow::Clock;
    c.now_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_rules_start_and_stop_executions() {
    let env = Env::new().await;
    let g = parse_workflow(
        r#"
workflow: wfr
project: p
jobs:
  j:
    type: process
    command: 'sleep 60'
workflow_rules:
  - when: [ {event: {event_type: DATA_ARRIVED, key: sales}} ]
    action: START
  - when: [ {event: {event_type: SHUTDOWN, key: sales}} ]
    action: STOP
"#,
        "wfr.yaml",
    )
    .unwrap();
    service::submit(&*env.store, &PluginRegistry::with_builtin(), &g)
        .await
        .unwrap();
    settle().await;
    env.send("DATA_ARRIVED", "sales", "", None).await;
    wait_until!("an execution", {
        let ex = service::executions(&*env.store, "p", "wfr").await.unwrap();
        ex.len() == 1 && ex[0].body.status == ExecutionStatus::Running
    });
    env.send("DATA_ARRIVED", "sales", "", None).await;
    wait_until!(
        "two executions",
        service::executions(&*env.store, "p", "wfr")
            .await
            .unwrap()
            .len()
            == 2
    );
    env.send("SHUTDOWN", "sales", "", None).await;
    wait_until!("all stopped", {
        let ex = service::executions(&*env.store, "p", "wfr").await.unwrap();
        ex.iter().all(|e| e.body.status == ExecutionStatus::Stopped)
    });
    env.shutdown().await;
}
