//! The event-driven scheduler.
//!
//! It reads the event log in offset order and, for every execution the event reaches (its
//! context is that execution, or it has none), feeds it to each job's rules; the first rule
//! that fires gives the action. Decisions are durable before they act: the execution's state
//! (rule states, job states, the offset of the last event applied) and the job executions an
//! action creates are one [`MetaStore::commit`]. Launching and stopping happen after the
//! commit and are re-done from the stored state after a restart:
//!
//! - a job execution in INIT was decided but maybe not launched: launch it;
//! - one in STARTING was launched by a scheduler that is gone: launch it again with a new
//!   launch token (a runner of the old launch finds its token stale and exits);
//! - a job whose state says "stop requested" but whose run is not STOPPING yet: stop it.
//!
//! So a scheduler killed at any point and restarted neither loses nor repeats an action. Job
//! statuses come back as `JOB_STATUS_CHANGED` events and are read from the job execution
//! record (stored state, not the event's value). A runner that stops heart-beating, or a
//! child process that exits without reporting, marks its job execution FAILED.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferroflow_meta::{
    Event, EventFilter, MetaError, MetaStore, NewEvent, Notifier, Record, RecordKind, RecordWrite,
};

use crate::error::{Result, WorkflowError};
use crate::events::{
    EXECUTION_STATUS_CHANGED, EXECUTION_STOP_REQUESTED, JOB_STATUS_CHANGED, SCHEDULER_ITEM_PARKED,
    WORKFLOW_SUBMITTED,
};
use crate::periodic::{Clock, SystemClock};
use crate::records::{
    execution_event, get_job_execution, load_snapshot, new_execution_writes, now_ms, parse_body,
    to_body, try_commit, update_job_execution,
};
use crate::rules::{Action, Rule, RuleState, evaluate};
use crate::runner::RunnerOptions;
use crate::status::{ExecutionBody, ExecutionStatus, JobStatus, WorkflowBody, WorkflowRulesState};

mod decide;
mod launch;
mod liveness;

use decide::{Ctx, ExecutionState, Pending, SENDER, active};
use launch::Handle;
pub use launch::Launcher;

/// The `error` of an execution the scheduler had to fail for a reason of its own.
fn undrivable(reason: &str) -> String {
    format!("the scheduler could not drive this execution: {reason}")
}

/// One line on the scheduler's standard error (its log).
fn log(line: &str) {
    eprintln!("[ferroflow scheduler] {line}");
}

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Longest wait when idle. New events end the wait at once (the store's notifier: local
    /// writes, PostgreSQL `NOTIFY`, a 2 ms check of the SQLite log), so this only bounds how
    /// late periodic triggers and liveness checks may run.
    pub poll: Duration,
    /// How often records are rescanned for new executions and workflow rules (new ones are
    /// also noticed at once through their events).
    pub rescan: Duration,
    /// A running job execution whose heartbeat has not changed for this long, as measured
    /// on this scheduler's monotonic clock (a wall-clock step or a paused VM does not count),
    /// is FAILED.
    pub heartbeat_timeout: Duration,
    /// A launched job execution that does not report RUNNING within this long is FAILED.
    pub start_timeout: Duration,
    /// A STOPPING job execution still alive after this long is killed and STOPPED.
    pub stop_timeout: Duration,
    /// How often liveness is checked.
    pub health_every: Duration,
    /// Runner settings (heartbeat period, data directory).
    pub runner: RunnerOptions,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            poll: Duration::from_millis(50),
            rescan: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(5),
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(20),
            health_every: Duration::from_millis(200),
            runner: RunnerOptions::default(),
        }
    }
}

struct Wf {
    project: String,
    name: String,
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    offset: i64,
    committed_offset: i64,
}

/// Statistics of a scheduler (for benchmarks and tests).
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Events applied (an event reaching two executions counts twice).
    pub events_applied: AtomicU64,
    /// Actions taken (START, STOP, RESTART that changed something).
    pub actions: AtomicU64,
    /// Job executions launched.
    pub launches: AtomicU64,
}

/// The scheduler. Run one per store.
pub struct Scheduler {
    store: Arc<dyn MetaStore>,
    notifier: Notifier,
    launcher: Launcher,
    clock: Arc<dyn Clock>,
    cfg: SchedulerConfig,
    execs: BTreeMap<String, ExecutionState>,
    workflows: BTreeMap<String, Wf>,
    handles: HashMap<String, Handle>,
    launched: HashMap<String, Instant>,
    stopping: HashMap<String, Instant>,
    /// Per running job execution: the last heartbeat value read and when it was first seen.
    beats: HashMap<String, (i64, Instant)>,
    /// Executions (`project/name`) and workflows (`workflow:project/name`) set aside after an
    /// error of their own that could not even be recorded; skipped until restart.
    parked: HashSet<String>,
    global_offset: i64,
    last_scan: Option<Instant>,
    last_health: Instant,
    last_flush: Instant,
    stats: Arc<SchedulerStats>,
}

impl Scheduler {
    /// A scheduler over `store` launching jobs with `launcher`.
    pub fn new(store: Arc<dyn MetaStore>, launcher: Launcher, cfg: SchedulerConfig) -> Self {
        Scheduler {
            notifier: Notifier::new(store.clone()),
            store,
            launcher,
            clock: Arc::new(SystemClock),
            cfg,
            execs: BTreeMap::new(),
            workflows: BTreeMap::new(),
            handles: HashMap::new(),
            launched: HashMap::new(),
            stopping: HashMap::new(),
            beats: HashMap::new(),
            parked: HashSet::new(),
            global_offset: 0,
            last_scan: None,
            last_health: Instant::now(),
            last_flush: Instant::now(),
            stats: Arc::default(),
        }
    }

    /// Use another clock for periodic triggers.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Counters.
    pub fn stats(&self) -> Arc<SchedulerStats> {
        self.stats.clone()
    }

    /// Run until `shutdown` resolves. Running jobs keep running (they are not this
    /// process's to stop); a new scheduler adopts them.
    ///
    /// It ends only then: an error of one execution, workflow or job execution fails or parks
    /// that item (with an event and a log line) inside [`Scheduler::step`]; a store that
    /// fails is retried with backoff, after which the scheduler reloads its state from the
    /// store as a restarted one would.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut backoff = Duration::ZERO;
        loop {
            let pause = match self.step().await {
                Ok(true) => {
                    backoff = Duration::ZERO;
                    continue;
                }
                Ok(false) => {
                    backoff = Duration::ZERO;
                    self.cfg.poll
                }
                Err(e) => {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
                    log(&format!(
                        "{} ({e}); retrying in {backoff:?}",
                        if e.is_transient() {
                            "the store failed"
                        } else {
                            "unexpected error"
                        }
                    ));
                    self.forget_state();
                    backoff
                }
            };
            if backoff.is_zero() {
                // Idle: woken by the first event after the newest one seen.
                let (notifier, after) = (self.notifier.clone(), self.global_offset);
                let all = EventFilter::default();
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = notifier.listen(&all, after, 1, pause) => {}
                }
            } else {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
        if let Err(e) = self.flush_offsets(true).await {
            // Nothing is lost: the offsets not flushed are re-read (rule states are stored
            // with every decision).
            log(&format!("flushing offsets at shutdown failed: {e}"));
        }
        Ok(())
    }

    /// Drop what is held in memory about executions and workflows (not the handles of
    /// launched runners): the next scan reloads them from the store.
    fn forget_state(&mut self) {
        self.execs.clear();
        self.workflows.clear();
        self.global_offset = 0;
        self.last_scan = None;
    }

    /// One round: rescan, apply new events, fire periodic triggers, check liveness. Returns
    /// whether there was anything to do (callers loop without sleeping while there is).
    pub async fn step(&mut self) -> Result<bool> {
        if self
            .last_scan
            .is_none_or(|t| t.elapsed() >= self.cfg.rescan)
        {
            self.scan().await?;
        }
        let busy = self.apply_events().await?;
        self.tick().await?;
        if self.last_health.elapsed() >= self.cfg.health_every {
            self.last_health = Instant::now();
            self.check_health().await?;
        }
        if self.last_flush.elapsed() >= Duration::from_secs(1) {
            self.flush_offsets(false).await?;
        }
        Ok(busy)
    }

    /// Load executions and workflows with rules that are not loaded yet; initialise INIT
    /// executions; recover the launches and stops of loaded ones.
    async fn scan(&mut self) -> Result<()> {
        self.last_scan = Some(Instant::now());
        if self.global_offset == 0 {
            self.global_offset = self.store.latest_offset().await?;
        }
        let store = self.store.clone();
        for r in store
            .list_records(RecordKind::Workflow, None, None, 0, u32::MAX)
            .await?
        {
            let key = format!("{}/{}", r.project, r.name);
            if self.workflows.contains_key(&key) || self.parked.contains(&format!("workflow:{key}"))
            {
                continue;
            }
            if let Err(e) = self.load_workflow(&r).await {
                self.item_failed(&format!("workflow:{key}"), &r.project, e)
                    .await?;
            }
        }
        for r in store
            .list_records(RecordKind::Execution, None, None, 0, u32::MAX)
            .await?
        {
            let key = format!("{}/{}", r.project, r.name);
            if self.execs.contains_key(&key) || self.parked.contains(&key) {
                continue;
            }
            let loaded = match parse_body::<ExecutionBody>(&r) {
                Ok(body) if body.status.is_terminal() => continue,
                Ok(body) => self.load_execution(r.clone(), body).await,
                Err(e) => Err(e),
            };
            if let Err(e) = loaded {
                if e.is_transient() {
                    return Err(e);
                }
                self.fail_record(&r, &e.to_string()).await?;
            }
        }
        Ok(())
    }

    /// An error of a workflow or a job execution: transient ones go up (retried), others
    /// park the item with an event and a log line.
    async fn item_failed(&mut self, key: &str, project: &str, e: WorkflowError) -> Result<()> {
        if e.is_transient() {
            return Err(e);
        }
        log(&format!(
            "{key}: {e}; set aside until the scheduler restarts"
        ));
        self.parked.insert(key.to_string());
        self.store
            .send_event(NewEvent {
                key: key.to_string(),
                value: e.to_string(),
                event_type: SCHEDULER_ITEM_PARKED.into(),
                namespace: project.to_string(),
                sender: SENDER.into(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// An execution that cannot be driven (unreadable record, missing snapshot, a trigger
    /// that can never fire): FAILED with the reason, and its event. The record keeps the
    /// fields it had; when even that write is refused, the execution is parked.
    async fn fail_record(&mut self, r: &Record, reason: &str) -> Result<()> {
        let key = format!("{}/{}", r.project, r.name);
        log(&format!("execution {key} FAILED: {reason}"));
        let error = undrivable(reason);
        let readable = parse_body::<ExecutionBody>(r).ok();
        let body = match readable.clone() {
            Some(mut b) => {
                b.status = ExecutionStatus::Failed;
                b.error = Some(error);
                b.end_time = Some(now_ms());
                to_body(&b)
            }
            // Replaced by a readable body (so listings and later scans can read it), the
            // unreadable one kept beside it.
            None => {
                let mut b = to_body(&ExecutionBody {
                    status: ExecutionStatus::Failed,
                    snapshot: r.body["snapshot"].as_str().unwrap_or_default().to_string(),
                    offset: 0,
                    stop_requested: false,
                    jobs: Default::default(),
                    create_time: r.create_time,
                    end_time: Some(now_ms()),
                    error: Some(error),
                });
                b["unreadable_body"] = r.body.clone();
                b
            }
        };
        let write = RecordWrite::Update {
            kind: RecordKind::Execution,
            project: r.project.clone(),
            name: r.name.clone(),
            body,
            expected_revision: Some(r.revision),
        };
        let event = execution_event(
            &r.project,
            r.parent.as_deref().unwrap_or_default(),
            &r.name,
            ExecutionStatus::Failed,
        );
        match self.store.commit(vec![write], vec![event]).await {
            Ok(_) => {
                // Its runs must not outlive it.
                for js in readable.iter().flat_map(|b| b.jobs.values()) {
                    if let (Some(job_execution), true) = (&js.current, active(js.status)) {
                        self.stop_job_execution(&r.project, job_execution).await;
                    }
                }
                Ok(())
            }
            Err(e) => self.item_failed(&key, &r.project, e.into()).await,
        }
    }

    /// A loaded execution hit an error of its own: transient errors go up (the state is
    /// reloaded); a stale revision reloads it; anything else stops its jobs and fails it.
    async fn exec_failed(&mut self, mut exec: ExecutionState, e: WorkflowError) -> Result<()> {
        if e.is_transient() {
            return Err(e);
        }
        let key = format!("{}/{}", exec.project, exec.name);
        if matches!(e, WorkflowError::Meta(MetaError::Conflict(_))) {
            log(&format!("execution {key}: {e}; reloading it"));
            return Ok(()); // not re-inserted: the next scan loads the stored state
        }
        let reason = e.to_string();
        log(&format!("execution {key} FAILED: {reason}"));
        let mut p = Pending::default();
        exec.fail(undrivable(&reason), &self.ctx(), &mut p);
        match self.commit(&mut exec, p).await {
            Ok(()) => Ok(()),
            Err(e) => self.item_failed(&key, &exec.project, e).await,
        }
    }

    async fn load_workflow(&mut self, r: &Record) -> Result<()> {
        let b: WorkflowBody = parse_body(r)?;
        if b.snapshot.is_empty() {
            return Ok(());
        }
        let graph = load_snapshot(&*self.store, &r.project, &b.snapshot).await?;
        if graph.workflow_rules.is_empty() {
            return Ok(());
        }
        let WorkflowRulesState {
            offset,
            rules: states,
        } = b.scheduler;
        self.workflows.insert(
            format!("{}/{}", r.project, r.name),
            Wf {
                project: r.project.clone(),
                name: r.name.clone(),
                rules: graph.resolved_workflow_rules()?,
                states,
                offset,
                committed_offset: offset,
            },
        );
        Ok(())
    }

    async fn load_execution(&mut self, r: Record, body: ExecutionBody) -> Result<()> {
        let graph = Arc::new(load_snapshot(&*self.store, &r.project, &body.snapshot).await?);
        let mut rules = BTreeMap::new();
        for job in graph.jobs.keys() {
            rules.insert(job.clone(), graph.rules_of(job)?);
        }
        let key = format!("{}/{}", r.project, r.name);
        let mut exec = ExecutionState {
            project: r.project.clone(),
            name: r.name.clone(),
            workflow: r.parent.clone().unwrap_or_default(),
            revision: r.revision,
            committed_offset: body.offset,
            body,
            graph,
            rules,
        };
        let mut p = Pending::default();
        if exec.body.status == ExecutionStatus::Init {
            exec.initialise(self.clock.now_ms(), &self.ctx(), &mut p)?;
            self.commit(&mut exec, p).await?;
        } else {
            // Recovery: re-do what the stored state says was decided.
            for (job, js) in &exec.body.jobs {
                let Some(current) = &js.current else { continue };
                if !active(js.status) {
                    continue;
                }
                let (_, jb) = get_job_execution(&*self.store, &exec.project, current).await?;
                match jb.status {
                    JobStatus::Init | JobStatus::Starting => p.launches.push(current.clone()),
                    _ => {}
                }
                let _ = job;
            }
            self.after_commit(&exec, p).await;
        }
        if !exec.body.status.is_terminal() {
            self.execs.insert(key, exec);
        }
        Ok(())
    }

    /// Write the execution's state with `p`'s writes and events in one transaction, then
    /// launch and stop.
    async fn commit(&mut self, exec: &mut ExecutionState, mut p: Pending) -> Result<()> {
        p.writes.push(RecordWrite::Update {
            kind: RecordKind::Execution,
            project: exec.project.clone(),
            name: exec.name.clone(),
            body: to_body(&exec.body),
            expected_revision: Some(exec.revision),
        });
        let events = std::mem::take(&mut p.events);
        let writes = std::mem::take(&mut p.writes);
        let done = self.store.commit(writes, events).await.map_err(|e| match e {
            MetaError::Conflict(m) => WorkflowError::Invalid(format!(
                "execution '{}/{}' was changed by someone else ({m}); is a second scheduler running on this store?",
                exec.project, exec.name
            )),
            e => e.into(),
        })?;
        exec.revision = done
            .records
            .last()
            .map(|r| r.revision)
            .unwrap_or(exec.revision);
        exec.committed_offset = exec.body.offset;
        self.stats.actions.fetch_add(p.actions, Ordering::Relaxed);
        self.after_commit(exec, p).await;
        Ok(())
    }

    /// Launch what was decided and stop what must stop (idempotent).
    async fn after_commit(&mut self, exec: &ExecutionState, p: Pending) {
        for job_execution in p.launches {
            if let Err(e) = self.launch(&exec.project, &job_execution).await {
                let msg = e.to_string();
                let _ = update_job_execution(
                    &*self.store,
                    &exec.project,
                    &job_execution,
                    SENDER,
                    |b| {
                        if b.status.is_terminal() {
                            return false;
                        }
                        b.status = JobStatus::Failed;
                        b.error = Some(format!("launch failed: {msg}"));
                        true
                    },
                )
                .await;
            }
        }
        for js in exec.body.jobs.values() {
            if js.stop_requested
                && active(js.status)
                && let Some(job_execution) = &js.current
            {
                self.stop_job_execution(&exec.project, job_execution).await;
            }
        }
    }

    /// Read new events and apply each to the workflows and executions it reaches.
    async fn apply_events(&mut self) -> Result<bool> {
        let cursor = self
            .execs
            .values()
            .map(|e| e.body.offset)
            .chain(self.workflows.values().map(|w| w.offset))
            .chain(std::iter::once(self.global_offset))
            .min()
            .unwrap_or(self.global_offset);
        let events = self
            .store
            .list_events(&EventFilter::default(), cursor, 512)
            .await?;
        if events.is_empty() {
            return Ok(false);
        }
        for e in &events {
            if e.offset > self.global_offset {
                self.global_offset = e.offset;
                let new_work = (e.event_type == EXECUTION_STATUS_CHANGED
                    && e.value == ExecutionStatus::Init.as_str())
                    || e.event_type == WORKFLOW_SUBMITTED;
                if new_work {
                    self.scan().await?;
                }
            }
            self.apply_to_workflows(e).await?;
            let keys: Vec<String> = self.execs.keys().cloned().collect();
            for k in keys {
                let Some(mut exec) = self.execs.remove(&k) else {
                    continue;
                };
                match self.apply_to_execution(&mut exec, e).await {
                    Ok(()) if !exec.body.status.is_terminal() => {
                        self.execs.insert(k, exec);
                    }
                    Ok(()) => {}
                    Err(err) => self.exec_failed(exec, err).await?,
                }
            }
        }
        Ok(true)
    }

    async fn apply_to_workflows(&mut self, e: &Event) -> Result<()> {
        let keys: Vec<String> = self.workflows.keys().cloned().collect();
        for k in keys {
            if let Err(err) = self.apply_to_workflow(&k, e).await {
                let project = self
                    .workflows
                    .remove(&k)
                    .map(|w| w.project)
                    .unwrap_or_default();
                self.item_failed(&format!("workflow:{k}"), &project, err)
                    .await?;
            }
        }
        Ok(())
    }

    async fn apply_to_workflow(&mut self, k: &str, e: &Event) -> Result<()> {
        let Some(wf) = self.workflows.get_mut(k) else {
            return Ok(());
        };
        if e.offset <= wf.offset {
            return Ok(());
        }
        wf.offset = e.offset;
        let Some(action) = evaluate(&wf.rules, &mut wf.states, e) else {
            return Ok(());
        };
        let (project, name) = (wf.project.clone(), wf.name.clone());
        loop {
            let rec = self
                .store
                .get_record(RecordKind::Workflow, &project, &name)
                .await?;
            let wf = &self.workflows[k];
            let mut b: WorkflowBody = parse_body(&rec)?;
            b.scheduler = WorkflowRulesState {
                offset: wf.offset,
                rules: wf.states.clone(),
            };
            let body = to_body(&b);
            let mut rec2 = rec.clone();
            rec2.body = body.clone();
            let (mut writes, mut events) = (vec![], vec![]);
            match action {
                Action::Start => {
                    let (_, w, ev) = new_execution_writes(&rec2, e.offset)?;
                    writes = w;
                    events.push(ev);
                }
                Action::Stop => {
                    writes.push(RecordWrite::Update {
                        kind: RecordKind::Workflow,
                        project: project.clone(),
                        name: name.clone(),
                        body,
                        expected_revision: Some(rec.revision),
                    });
                    for ex in self.execs.values().filter(|x| {
                        x.project == project && x.workflow == name && !x.body.stop_requested
                    }) {
                        events.push(NewEvent {
                            key: name.clone(),
                            value: "STOP".into(),
                            event_type: EXECUTION_STOP_REQUESTED.into(),
                            namespace: project.clone(),
                            sender: SENDER.into(),
                            context: Some(ex.name.clone()),
                            ..Default::default()
                        });
                    }
                }
                _ => {}
            }
            if try_commit(&*self.store, writes, events).await?.is_some() {
                break;
            }
        }
        self.stats.actions.fetch_add(1, Ordering::Relaxed);
        if let Some(wf) = self.workflows.get_mut(k) {
            wf.committed_offset = wf.offset;
        }
        Ok(())
    }

    async fn apply_to_execution(&mut self, exec: &mut ExecutionState, e: &Event) -> Result<()> {
        if e.offset <= exec.body.offset {
            return Ok(());
        }
        exec.body.offset = e.offset;
        if e.context.as_ref().is_some_and(|c| *c != exec.name) {
            return Ok(()); // another execution's event
        }
        self.stats.events_applied.fetch_add(1, Ordering::Relaxed);
        let mut p = Pending::default();
        let before = to_body(&exec.body);
        let own = e.context.as_deref() == Some(exec.name.as_str());
        if own && e.event_type == EXECUTION_STOP_REQUESTED {
            exec.request_stop(&self.ctx(), &mut p);
        }
        if own && e.event_type == JOB_STATUS_CHANGED {
            self.refresh_job(exec, e, &mut p).await?;
        }
        let cx = self.ctx();
        exec.apply_rules(e, &cx, &mut p);
        exec.check_done(&cx, &mut p);
        // Rule states change on any matching event: commit whenever the state changed
        // (`before` already has the new offset, so an offset alone is flushed later).
        if to_body(&exec.body) != before || !p.writes.is_empty() || !p.events.is_empty() {
            self.commit(exec, p).await?;
        }
        Ok(())
    }

    /// A status event of one of our jobs: read the job execution's stored status.
    async fn refresh_job(
        &mut self,
        exec: &mut ExecutionState,
        e: &Event,
        p: &mut Pending,
    ) -> Result<()> {
        let Some(job) = crate::JobKey::job_in(&e.key, &exec.workflow) else {
            return Ok(());
        };
        let Some(current) = exec.body.jobs.get(job).and_then(|j| j.current.clone()) else {
            return Ok(());
        };
        let (_, jb) = get_job_execution(&*self.store, &exec.project, &current).await?;
        let job = job.to_string();
        if let Some(ended) = exec.job_status_read(&job, jb.status, &self.ctx(), p) {
            let key = format!("{}/{ended}", exec.project);
            self.launched.remove(&key);
            self.stopping.remove(&key);
            if let Some(Handle::Child(mut c)) = self.handles.remove(&key) {
                // Reap it (it has exited or is about to).
                tokio::spawn(async move {
                    let _ = c.wait().await;
                });
            }
        }
        Ok(())
    }

    /// Periodic triggers that are due restart their job; failed runs whose backoff is over
    /// start again.
    async fn tick(&mut self) -> Result<()> {
        let now = self.clock.now_ms();
        let keys: Vec<String> = self.execs.keys().cloned().collect();
        for k in keys {
            let Some(mut exec) = self.execs.remove(&k) else {
                continue;
            };
            let mut p = Pending::default();
            let r = match exec.due_ticks(now, &self.ctx(), &mut p) {
                Ok(ticked) => {
                    let restarted = exec.due_restarts(&self.ctx(), &mut p);
                    if ticked || restarted {
                        self.commit(&mut exec, p).await
                    } else {
                        Ok(())
                    }
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => {
                    self.execs.insert(k, exec);
                }
                Err(e) => self.exec_failed(exec, e).await?,
            }
        }
        Ok(())
    }

    /// What a decision taken now needs.
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            data_dir: &self.cfg.runner.data_dir,
            wall_ms: now_ms(),
        }
    }

    /// Commit offsets that moved without a decision (so a restart re-reads less).
    async fn flush_offsets(&mut self, all: bool) -> Result<()> {
        self.last_flush = Instant::now();
        let keys: Vec<String> = self.execs.keys().cloned().collect();
        for k in keys {
            let Some(mut exec) = self.execs.remove(&k) else {
                continue;
            };
            let r = if exec.body.offset != exec.committed_offset || all {
                self.commit(&mut exec, Pending::default()).await
            } else {
                Ok(())
            };
            match r {
                Ok(()) => {
                    self.execs.insert(k, exec);
                }
                Err(e) => self.exec_failed(exec, e).await?,
            }
        }
        let keys: Vec<String> = self.workflows.keys().cloned().collect();
        for k in keys {
            let (project, name, offset, states) = {
                let w = &self.workflows[&k];
                if w.offset == w.committed_offset {
                    continue;
                }
                (
                    w.project.clone(),
                    w.name.clone(),
                    w.offset,
                    w.states.clone(),
                )
            };
            loop {
                let rec = match self
                    .store
                    .get_record(RecordKind::Workflow, &project, &name)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        self.workflows.remove(&k);
                        return self
                            .item_failed(&format!("workflow:{k}"), &project, e.into())
                            .await;
                    }
                };
                let mut b: WorkflowBody = match parse_body(&rec) {
                    Ok(b) => b,
                    Err(e) => {
                        self.workflows.remove(&k);
                        return self
                            .item_failed(&format!("workflow:{k}"), &project, e)
                            .await;
                    }
                };
                b.scheduler = WorkflowRulesState {
                    offset,
                    rules: states.clone(),
                };
                let body = to_body(&b);
                match self
                    .store
                    .update_record(
                        RecordKind::Workflow,
                        &project,
                        &name,
                        body,
                        Some(rec.revision),
                    )
                    .await
                {
                    Ok(_) => break,
                    Err(MetaError::Conflict(_)) => continue,
                    Err(e) => {
                        self.workflows.remove(&k);
                        return self
                            .item_failed(&format!("workflow:{k}"), &project, e.into())
                            .await;
                    }
                }
            }
            if let Some(w) = self.workflows.get_mut(&k) {
                w.committed_offset = offset;
            }
        }
        Ok(())
    }
}

/// Execution names that are loaded (for tests and status pages).
impl Scheduler {
    /// Executions this scheduler is driving.
    pub fn running_executions(&self) -> HashSet<String> {
        self.execs.keys().cloned().collect()
    }
}
