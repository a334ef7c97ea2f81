//! One bad record never stops the scheduler: a corrupt execution record, a snapshot deleted
//! under a running execution, a cron that can never fire and a store that fails for two
//! seconds each affect only themselves; other executions keep being scheduled, and the bad
//! one ends with its reason. Real SQLite store, real runner (in-process), real commands.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferroflow_meta::{
    ApiToken, Committed, Event, EventFilter, MetaError, MetaStore, Model, ModelStage, ModelVersion,
    NewEvent, NewModelVersion, NewRecord, Record, RecordKind, RecordWrite, Role, SqliteStore,
};
use ferroflow_workflow::service::{self, ExecutionInfo};
use ferroflow_workflow::{
    EXECUTION_STATUS_CHANGED, ExecutionStatus, Launcher, PluginRegistry, RunnerOptions, Scheduler,
    SchedulerConfig, parse_workflow,
};
use tokio::sync::oneshot;

/// A store that answers "unavailable" to every call while `down` is set: a database
/// restarting, a full disk, a network partition to PostgreSQL.
struct Flaky {
    inner: SqliteStore,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> ferroflow_meta::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(MetaError::Unavailable(
                "the test took the store down".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl MetaStore for Flaky {
    async fn send_event(&self, e: NewEvent) -> ferroflow_meta::Result<Event> {
        self.check()?;
        self.inner.send_event(e).await
    }
    async fn send_events(&self, e: Vec<NewEvent>) -> ferroflow_meta::Result<Vec<Event>> {
        self.check()?;
        self.inner.send_events(e).await
    }
    async fn list_events(
        &self,
        f: &EventFilter,
        after: i64,
        limit: u32,
    ) -> ferroflow_meta::Result<Vec<Event>> {
        self.check()?;
        self.inner.list_events(f, after, limit).await
    }
    async fn latest_offset(&self) -> ferroflow_meta::Result<i64> {
        self.check()?;
        self.inner.latest_offset().await
    }
    async fn register_model(&self, n: &str, d: &str) -> ferroflow_meta::Result<Model> {
        self.check()?;
        self.inner.register_model(n, d).await
    }
    async fn get_model(&self, n: &str) -> ferroflow_meta::Result<Model> {
        self.check()?;
        self.inner.get_model(n).await
    }
    async fn update_model(&self, n: &str, d: &str) -> ferroflow_meta::Result<Model> {
        self.check()?;
        self.inner.update_model(n, d).await
    }
    async fn delete_model(&self, n: &str) -> ferroflow_meta::Result<()> {
        self.check()?;
        self.inner.delete_model(n).await
    }
    async fn list_models(&self, o: u32, l: u32) -> ferroflow_meta::Result<Vec<Model>> {
        self.check()?;
        self.inner.list_models(o, l).await
    }
    async fn create_model_version(
        &self,
        m: &str,
        v: NewModelVersion,
    ) -> ferroflow_meta::Result<ModelVersion> {
        self.check()?;
        self.inner.create_model_version(m, v).await
    }
    async fn get_model_version(&self, m: &str, v: i64) -> ferroflow_meta::Result<ModelVersion> {
        self.check()?;
        self.inner.get_model_version(m, v).await
    }
    async fn list_model_versions(
        &self,
        m: &str,
        s: Option<ModelStage>,
    ) -> ferroflow_meta::Result<Vec<ModelVersion>> {
        self.check()?;
        self.inner.list_model_versions(m, s).await
    }
    async fn set_model_stage(
        &self,
        m: &str,
        v: i64,
        s: ModelStage,
    ) -> ferroflow_meta::Result<ModelVersion> {
        self.check()?;
        self.inner.set_model_stage(m, v, s).await
    }
    async fn create_record(&self, k: RecordKind, r: NewRecord) -> ferroflow_meta::Result<Record> {
        self.check()?;
        self.inner.create_record(k, r).await
    }
    async fn get_record(&self, k: RecordKind, p: &str, n: &str) -> ferroflow_meta::Result<Record> {
        self.check()?;
        self.inner.get_record(k, p, n).await
    }
    async fn update_record(
        &self,
        k: RecordKind,
        p: &str,
        n: &str,
        b: serde_json::Value,
        r: Option<i64>,
    ) -> ferroflow_meta::Result<Record> {
        self.check()?;
        self.inner.update_record(k, p, n, b, r).await
    }
    async fn commit(
        &self,
        w: Vec<RecordWrite>,
        e: Vec<NewEvent>,
    ) -> ferroflow_meta::Result<Committed> {
        self.check()?;
        self.inner.commit(w, e).await
    }
    async fn delete_record(&self, k: RecordKind, p: &str, n: &str) -> ferroflow_meta::Result<()> {
        self.check()?;
        self.inner.delete_record(k, p, n).await
    }
    async fn list_records(
        &self,
        k: RecordKind,
        p: Option<&str>,
        parent: Option<&str>,
        o: u32,
        l: u32,
    ) -> ferroflow_meta::Result<Vec<Record>> {
        self.check()?;
        self.inner.list_records(k, p, parent, o, l).await
    }
    async fn create_token(&self, n: &str, r: Role, h: &str) -> ferroflow_meta::Result<ApiToken> {
        self.check()?;
        self.inner.create_token(n, r, h).await
    }
    async fn token_by_hash(&self, h: &str) -> ferroflow_meta::Result<Option<ApiToken>> {
        self.check()?;
        self.inner.token_by_hash(h).await
    }
    async fn list_tokens(&self) -> ferroflow_meta::Result<Vec<ApiToken>> {
        self.check()?;
        self.inner.list_tokens().await
    }
    async fn revoke_token(&self, n: &str) -> ferroflow_meta::Result<()> {
        self.check()?;
        self.inner.revoke_token(n).await
    }
}

struct Env {
    dir: tempfile::TempDir,
    /// The store the test writes through (never down).
    store: Arc<dyn MetaStore>,
    down: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<ferroflow_workflow::Result<()>>>,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let store: Arc<dyn MetaStore> = Arc::new(SqliteStore::open(&path).await.unwrap());
        let down = Arc::new(AtomicBool::new(false));
        let mut env = Env {
            dir,
            store,
            down,
            stop: None,
            task: None,
        };
        env.start_scheduler().await;
        env
    }

    async fn start_scheduler(&mut self) {
        let flaky: Arc<dyn MetaStore> = Arc::new(Flaky {
            inner: SqliteStore::open(&self.dir.path().join("meta.db"))
                .await
                .unwrap(),
            down: self.down.clone(),
        });
        let cfg = SchedulerConfig {
            rescan: Duration::from_millis(100),
            runner: RunnerOptions {
                heartbeat: Duration::from_millis(200),
                data_dir: self.dir.path().to_path_buf(),
            },
            ..Default::default()
        };
        let launcher = Launcher::InProcess {
            registry: PluginRegistry::with_builtin(),
        };
        let sched = Scheduler::new(flaky, launcher, cfg);
        let (tx, rx) = oneshot::channel();
        self.task = Some(tokio::spawn(sched.run(async {
            let _ = rx.await;
        })));
        self.stop = Some(tx);
    }

    async fn stop_scheduler(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await
                .unwrap()
                .expect("the scheduler ends only on shutdown, and then cleanly");
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

    async fn wait_status(&self, exec: &str, want: ExecutionStatus, secs: u64) -> ExecutionInfo {
        let t = Instant::now();
        loop {
            let e = self.exec(exec).await;
            if e.body.status == want {
                return e;
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "{exec} is {:?} ({:?}), not {want:?}, after {secs}s",
                e.body.status,
                e.body.error
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A fresh workflow whose only job echoes, as the "other executions" that must go on.
    async fn healthy(&self, name: &str) -> String {
        self.submit(&format!(
            "workflow: {name}\nproject: p\njobs:\n  j: {{type: process, command: 'echo ok'}}\n"
        ))
        .await
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_execution_record_fails_alone() {
    let mut env = Env::new().await;
    let good = env.healthy("before").await;
    env.wait_status(&good, ExecutionStatus::Succeeded, 30).await;
    // An execution record the scheduler cannot read (a status it does not know, a snapshot
    // that is a number), as a bug, a bad migration or a hand edit could leave it.
    env.stop_scheduler().await;
    env.store
        .create_record(
            RecordKind::Execution,
            NewRecord {
                project: "p".into(),
                name: "corrupt-1".into(),
                parent: Some("before".into()),
                body: serde_json::json!({"status": "RUNNING", "snapshot": 42, "offset": "x"}),
            },
        )
        .await
        .unwrap();
    env.start_scheduler().await;
    let after = env.healthy("after").await;
    env.wait_status(&after, ExecutionStatus::Succeeded, 30)
        .await;
    let bad = env
        .wait_status("corrupt-1", ExecutionStatus::Failed, 30)
        .await;
    let why = bad.body.error.unwrap_or_default();
    assert!(why.contains("unreadable body"), "{why}");
    // Its end is announced like any execution's.
    let events = env
        .store
        .list_events(&EventFilter::default(), 0, 10_000)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event_type == EXECUTION_STATUS_CHANGED
                && e.context.as_deref() == Some("corrupt-1")
                && e.value == "FAILED")
    );
    env.stop_scheduler().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_deleted_under_a_running_execution_fails_it_alone() {
    let mut env = Env::new().await;
    let long = env
        .submit("workflow: long\nproject: p\njobs:\n  j: {type: process, command: 'sleep 60'}\n")
        .await;
    env.wait_status(&long, ExecutionStatus::Running, 30).await;
    let t = Instant::now();
    while service::job_executions(&*env.store, "p", &long)
        .await
        .unwrap()
        .iter()
        .all(|j| j.body.status != ferroflow_workflow::JobStatus::Running)
    {
        assert!(t.elapsed() < Duration::from_secs(30), "the job never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The scheduler restarts while the snapshot is gone.
    env.stop_scheduler().await;
    let snapshot = env.exec(&long).await.body.snapshot;
    env.store
        .delete_record(RecordKind::WorkflowSnapshot, "p", &snapshot)
        .await
        .unwrap();
    env.start_scheduler().await;
    let other = env.healthy("other").await;
    env.wait_status(&other, ExecutionStatus::Succeeded, 30)
        .await;
    let failed = env.wait_status(&long, ExecutionStatus::Failed, 30).await;
    let why = failed.body.error.unwrap_or_default();
    assert!(
        why.contains("not found") && why.contains(&snapshot),
        "{why}"
    );
    // Its running job does not outlive it.
    let t = Instant::now();
    loop {
        let runs = service::job_executions(&*env.store, "p", &long)
            .await
            .unwrap();
        if runs[0].body.status == ferroflow_workflow::JobStatus::Stopped {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the job of the failed execution still runs: {:?}",
            runs[0].body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.stop_scheduler().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_that_never_fires_fails_its_execution_alone() {
    let mut env = Env::new().await;
    // February 30th: a valid cron expression with no next time.
    let never = env
        .submit(
            "workflow: never\nproject: p\njobs:\n  j:\n    type: process\n    command: 'echo tick'\n    periodic: {cron: '0 0 0 30 2 *'}\n",
        )
        .await;
    let other = env.healthy("other").await;
    env.wait_status(&other, ExecutionStatus::Succeeded, 30)
        .await;
    let failed = env.wait_status(&never, ExecutionStatus::Failed, 30).await;
    let why = failed.body.error.unwrap_or_default();
    assert!(why.contains("0 0 0 30 2 *"), "{why}");
    env.stop_scheduler().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_for_two_seconds_delays_but_loses_nothing() {
    let mut env = Env::new().await;
    let first = env.healthy("first").await;
    env.wait_status(&first, ExecutionStatus::Succeeded, 30)
        .await;
    env.down.store(true, Ordering::SeqCst);
    // Work arrives while the scheduler cannot reach the store.
    let during = env.healthy("during").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.exec(&during).await.body.status,
        ExecutionStatus::Init,
        "nothing can be decided while the store is down"
    );
    env.down.store(false, Ordering::SeqCst);
    env.wait_status(&during, ExecutionStatus::Succeeded, 30)
        .await;
    let after = env.healthy("after").await;
    env.wait_status(&after, ExecutionStatus::Succeeded, 30)
        .await;
    let runs = service::job_executions(&*env.store, "p", &during)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "one decision, one run: {runs:?}");
    env.stop_scheduler().await;
}
