//! The scheduler's decisions as a state machine over one execution's stored state.
//!
//! Nothing here reads or writes the store, launches or signals: each step changes the
//! [`ExecutionState`] in memory and adds to a [`Pending`] what must be committed (records, events)
//! and then done (launches). The scheduler commits `Pending` together with the execution's
//! new state in one transaction, then launches and stops (see the parent module). So every
//! rule of "what happens next" is testable with a graph and a few events.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use ferroflow_meta::{Event, NewEvent, NewRecord, RecordKind, RecordWrite};

use crate::error::Result;
use crate::graph::AiGraph;
use crate::records::{execution_event, log_path, status_event, to_body};
use crate::rules::{Action, Rule, evaluate};
use crate::status::{ExecutionBody, ExecutionStatus, JobExecutionBody, JobStatus, Trigger};

/// The sender of the events the scheduler writes.
pub(super) const SENDER: &str = "scheduler";

/// What a decision needs from outside the execution: where job logs go and the wall-clock
/// time stamped on the records it creates or ends.
pub(super) struct Ctx<'a> {
    pub(super) data_dir: &'a Path,
    pub(super) wall_ms: i64,
}

/// A loaded execution: its stored state and the graph and rules of its snapshot.
pub(super) struct ExecutionState {
    pub(super) project: String,
    pub(super) name: String,
    pub(super) workflow: String,
    /// The record revision `body` was read or last committed at.
    pub(super) revision: i64,
    /// The event offset last committed (`body.offset` may be ahead of it).
    pub(super) committed_offset: i64,
    pub(super) body: ExecutionBody,
    pub(super) graph: Arc<AiGraph>,
    /// Each job's resolved rules.
    pub(super) rules: BTreeMap<String, Vec<Rule>>,
}

/// What one decision writes, then does.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) writes: Vec<RecordWrite>,
    pub(super) events: Vec<NewEvent>,
    /// Job executions (names) to launch once committed.
    pub(super) launches: Vec<String>,
    /// The event being applied, recorded in the job executions it starts.
    pub(super) trigger: Option<Trigger>,
    /// Actions that changed something (START, STOP, RESTART), for statistics.
    pub(super) actions: u64,
}

/// A status that is not an end (a run exists and is not over).
pub(super) fn active(s: Option<JobStatus>) -> bool {
    s.is_some_and(|s| !s.is_terminal())
}

impl ExecutionState {
    fn status_event(&self, status: ExecutionStatus) -> NewEvent {
        execution_event(&self.project, &self.workflow, &self.name, status)
    }

    fn job_names(&self) -> Vec<String> {
        self.body.jobs.keys().cloned().collect()
    }

    /// INIT -> RUNNING: first periodic ticks (after `clock_ms`, the scheduler's clock), and
    /// START for jobs that start with the execution.
    pub(super) fn initialise(
        &mut self,
        clock_ms: i64,
        cx: &Ctx<'_>,
        p: &mut Pending,
    ) -> Result<()> {
        self.body.status = ExecutionStatus::Running;
        let graph = self.graph.clone();
        for (name, job) in &graph.jobs {
            let js = self.body.jobs.entry(name.clone()).or_default();
            if let Some(per) = &job.periodic {
                js.next_tick = Some(per.next_after(clock_ms)?);
            }
        }
        p.events.push(self.status_event(ExecutionStatus::Running));
        for (name, job) in &graph.jobs {
            if job.starts_with_execution() {
                self.act(name, Action::Start, cx, p);
            }
        }
        self.check_done(cx, p);
        Ok(())
    }

    /// Apply a job action to the in-memory state, adding what must be written to `p`.
    ///
    /// START of a running job is a no-op unless it is stopping (then it starts again once
    /// stopped); RESTART of a running one stops it and starts it again once stopped; STOP
    /// of one not running only cancels a pending restart.
    pub(super) fn act(&mut self, job: &str, action: Action, cx: &Ctx<'_>, p: &mut Pending) {
        let js = self.body.jobs.entry(job.to_string()).or_default();
        let running = active(js.status);
        match action {
            Action::None => return,
            Action::Start if running => {
                if js.status == Some(JobStatus::Stopping) || js.stop_requested {
                    js.restart_pending = true;
                    js.pending_trigger = p.trigger.clone();
                }
                return;
            }
            Action::Stop if !running => {
                js.restart_pending = false;
                js.pending_trigger = None;
                js.restart_at = None;
                return;
            }
            Action::Stop => {
                js.restart_pending = false;
                js.pending_trigger = None;
                js.stop_requested = true;
            }
            Action::Restart if running => {
                js.stop_requested = true;
                js.restart_pending = true;
                js.pending_trigger = p.trigger.clone();
            }
            Action::Start | Action::Restart => {
                let attempt = js.attempts + 1;
                let job_execution = format!("{}.{job}.{attempt}", self.name);
                let body = JobExecutionBody {
                    job: job.to_string(),
                    workflow: self.workflow.clone(),
                    execution: self.name.clone(),
                    attempt,
                    status: JobStatus::Init,
                    status_seq: 1,
                    launch_id: String::new(),
                    pid: None,
                    process: None,
                    heartbeat: None,
                    create_time: cx.wall_ms,
                    start_time: None,
                    end_time: None,
                    exit_code: None,
                    error: None,
                    log: log_path(cx.data_dir, &self.project, &self.name, job, attempt)
                        .display()
                        .to_string(),
                    trigger: js.pending_trigger.take().or_else(|| p.trigger.clone()),
                    external: None,
                };
                p.events.push(status_event(&self.project, &body, SENDER));
                p.writes.push(RecordWrite::Create {
                    kind: RecordKind::JobExecution,
                    record: NewRecord {
                        project: self.project.clone(),
                        name: job_execution.clone(),
                        parent: Some(self.name.clone()),
                        body: to_body(&body),
                    },
                });
                p.launches.push(job_execution.clone());
                js.attempts = attempt;
                js.current = Some(job_execution);
                js.status = Some(JobStatus::Init);
                js.stop_requested = false;
                js.restart_pending = false;
                js.restart_at = None;
            }
        }
        p.actions += 1;
    }

    /// Decide the execution's end: stopped, failed, succeeded, or still running.
    pub(super) fn check_done(&mut self, cx: &Ctx<'_>, p: &mut Pending) {
        if self.body.status.is_terminal() {
            return;
        }
        let any_active = self
            .body
            .jobs
            .values()
            .any(|j| active(j.status) || j.restart_pending || j.restart_at.is_some());
        if self.body.stop_requested {
            if !any_active {
                self.end(ExecutionStatus::Stopped, cx, p);
            }
            return;
        }
        if self.graph.is_triggered() {
            return; // runs until stopped
        }
        let failed: Vec<String> = self
            .body
            .jobs
            .iter()
            .filter(|(_, j)| j.status == Some(JobStatus::Failed) && j.restart_at.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        if !failed.is_empty() {
            for j in self.job_names() {
                self.act(&j, Action::Stop, cx, p);
            }
            if !self.body.jobs.values().any(|j| active(j.status)) {
                self.body.error = Some(format!("job(s) failed: {}", failed.join(", ")));
                self.end(ExecutionStatus::Failed, cx, p);
            } else {
                self.body.status = ExecutionStatus::Stopping;
            }
            return;
        }
        let all_finished = self.graph.jobs.keys().all(|j| {
            self.body
                .jobs
                .get(j)
                .is_some_and(|s| s.status == Some(JobStatus::Finished))
        });
        if all_finished && !any_active {
            self.end(ExecutionStatus::Succeeded, cx, p);
        }
    }

    fn end(&mut self, status: ExecutionStatus, cx: &Ctx<'_>, p: &mut Pending) {
        self.body.status = status;
        self.body.end_time = Some(cx.wall_ms);
        p.events.push(self.status_event(status));
    }

    /// `EXECUTION_STOP_REQUESTED` for this execution: STOP every job; it ends STOPPED once
    /// none is active.
    pub(super) fn request_stop(&mut self, cx: &Ctx<'_>, p: &mut Pending) {
        if self.body.stop_requested {
            return;
        }
        self.body.stop_requested = true;
        self.body.status = ExecutionStatus::Stopping;
        for j in self.job_names() {
            self.act(&j, Action::Stop, cx, p);
        }
        p.events.push(self.status_event(ExecutionStatus::Stopping));
    }

    /// Feed `e` to each job's rules (while running and not stopping); the first rule of a
    /// job that fires gives its action, recorded with `e` as the trigger.
    pub(super) fn apply_rules(&mut self, e: &Event, cx: &Ctx<'_>, p: &mut Pending) {
        if self.body.stop_requested || self.body.status != ExecutionStatus::Running {
            return;
        }
        let jobs: Vec<String> = self.rules.keys().cloned().collect();
        for job in jobs {
            let rules = &self.rules[&job];
            if rules.is_empty() {
                continue;
            }
            let js = self.body.jobs.entry(job.clone()).or_default();
            if let Some(action) = evaluate(rules, &mut js.rules, e) {
                p.trigger = Some(Trigger::of(e));
                self.act(&job, action, cx, p);
                p.trigger = None;
            }
        }
    }

    /// The stored status of `job`'s current run was read as `status`. At an end the job is
    /// no longer stopping, and a pending restart starts it again (unless the execution is
    /// stopping). Returns the run's name when it ended.
    pub(super) fn job_status_read(
        &mut self,
        job: &str,
        status: JobStatus,
        cx: &Ctx<'_>,
        p: &mut Pending,
    ) -> Option<String> {
        let execution_stopping = self.body.stop_requested;
        let js = self.body.jobs.get_mut(job)?;
        js.status = Some(status);
        if !status.is_terminal() {
            return None;
        }
        let ended = js.current.clone();
        let asked_to_stop = js.stop_requested;
        js.stop_requested = false;
        // A run that failed on its own restarts under the job's policy, after its backoff.
        if status == JobStatus::Failed
            && !asked_to_stop
            && !js.restart_pending
            && !execution_stopping
            && let Some(policy) = self.graph.jobs.get(job).and_then(|j| j.restart.as_ref())
            && js.restarts < policy.max_restarts
        {
            js.restarts += 1;
            let delay = policy.delay(js.restarts).as_millis() as i64;
            js.restart_at = Some(cx.wall_ms.saturating_add(delay));
            return ended;
        }
        if js.restart_pending && !execution_stopping {
            js.restart_pending = false;
            self.act(job, Action::Start, cx, p);
        } else {
            js.restart_pending = false;
            js.pending_trigger = None;
        }
        ended
    }

    /// Periodic jobs whose tick is due at `clock_ms` restart, once however many ticks
    /// passed (while the scheduler was down, say). Returns whether any did.
    pub(super) fn due_ticks(
        &mut self,
        clock_ms: i64,
        cx: &Ctx<'_>,
        p: &mut Pending,
    ) -> Result<bool> {
        if self.body.status != ExecutionStatus::Running || self.body.stop_requested {
            return Ok(false);
        }
        let mut changed = false;
        let graph = self.graph.clone();
        for (name, job) in &graph.jobs {
            let Some(per) = &job.periodic else { continue };
            let due = self
                .body
                .jobs
                .get(name)
                .and_then(|j| j.next_tick)
                .is_some_and(|t| t <= clock_ms);
            if due {
                self.body.jobs.entry(name.clone()).or_default().next_tick =
                    Some(per.next_after(clock_ms)?);
                self.act(name, Action::Restart, cx, p);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Failed runs whose restart is due at `cx.wall_ms` start again. Returns whether any did.
    pub(super) fn due_restarts(&mut self, cx: &Ctx<'_>, p: &mut Pending) -> bool {
        if self.body.status.is_terminal() || self.body.stop_requested {
            return false;
        }
        let due: Vec<String> = self
            .body
            .jobs
            .iter()
            .filter(|(_, j)| j.restart_at.is_some_and(|t| t <= cx.wall_ms))
            .map(|(n, _)| n.clone())
            .collect();
        for job in &due {
            self.act(job, Action::Start, cx, p);
        }
        !due.is_empty()
    }

    /// The execution cannot be driven (`error` says why): STOP every job and end FAILED.
    pub(super) fn fail(&mut self, error: String, cx: &Ctx<'_>, p: &mut Pending) {
        for j in self.job_names() {
            self.act(&j, Action::Stop, cx, p);
        }
        self.body.error = Some(error);
        self.end(ExecutionStatus::Failed, cx, p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_workflow;

    fn exec(spec: &str) -> ExecutionState {
        let graph = Arc::new(parse_workflow(spec, "wf.yaml").unwrap());
        let mut rules = BTreeMap::new();
        for job in graph.jobs.keys() {
            rules.insert(job.clone(), graph.rules_of(job).unwrap());
        }
        ExecutionState {
            project: "p".into(),
            name: "wf-1".into(),
            workflow: graph.name.clone(),
            revision: 1,
            committed_offset: 0,
            body: ExecutionBody {
                status: ExecutionStatus::Init,
                snapshot: "s".into(),
                offset: 0,
                stop_requested: false,
                jobs: Default::default(),
                create_time: 0,
                end_time: None,
                error: None,
            },
            graph,
            rules,
        }
    }

    fn cx() -> Ctx<'static> {
        Ctx {
            data_dir: Path::new("/data"),
            wall_ms: 1_000,
        }
    }

    /// `b` starts when `a` finished (a triggered graph: it runs until stopped).
    const TWO_JOBS: &str = "
workflow: wf
jobs:
  a: {type: process, command: 'true'}
  b:
    type: process
    command: 'true'
    rules:
      - when: [ {after: {job: a, status: FINISHED}} ]
        action: START
";

    /// Two jobs that start with the execution (it ends when they do).
    const PLAIN: &str = "
workflow: wf
jobs:
  a: {type: process, command: 'true'}
  b: {type: process, command: 'true'}
";

    #[test]
    fn initialise_starts_only_jobs_without_rules_and_writes_their_runs() {
        let mut e = exec(TWO_JOBS);
        let mut p = Pending::default();
        e.initialise(0, &cx(), &mut p).unwrap();
        assert_eq!(e.body.status, ExecutionStatus::Running);
        assert_eq!(p.launches, vec!["wf-1.a.1".to_string()]);
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.actions, 1);
        let a = &e.body.jobs["a"];
        assert_eq!(
            (a.status, a.attempts, a.current.as_deref()),
            (Some(JobStatus::Init), 1, Some("wf-1.a.1"))
        );
        assert!(e.body.jobs.get("b").is_none_or(|b| b.current.is_none()));
    }

    #[test]
    fn restart_of_a_running_job_stops_it_then_starts_attempt_two_once_it_ended() {
        let mut e = exec(TWO_JOBS);
        let mut p = Pending::default();
        e.initialise(0, &cx(), &mut p).unwrap();
        e.job_status_read("a", JobStatus::Running, &cx(), &mut Pending::default());

        let mut p = Pending::default();
        e.act("a", Action::Restart, &cx(), &mut p);
        let a = &e.body.jobs["a"];
        assert!(a.stop_requested && a.restart_pending);
        assert!(
            p.launches.is_empty(),
            "nothing starts before the old run ends"
        );

        let mut p = Pending::default();
        let ended = e.job_status_read("a", JobStatus::Stopped, &cx(), &mut p);
        assert_eq!(ended.as_deref(), Some("wf-1.a.1"));
        assert_eq!(p.launches, vec!["wf-1.a.2".to_string()]);
        assert!(!e.body.jobs["a"].stop_requested);
    }

    #[test]
    fn a_failed_job_stops_the_others_and_fails_the_execution_once_they_ended() {
        let mut e = exec(PLAIN);
        e.initialise(0, &cx(), &mut Pending::default()).unwrap();
        e.job_status_read("b", JobStatus::Running, &cx(), &mut Pending::default());

        let mut p = Pending::default();
        e.job_status_read("a", JobStatus::Failed, &cx(), &mut p);
        e.check_done(&cx(), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Stopping);
        assert!(e.body.jobs["b"].stop_requested);

        let mut p = Pending::default();
        e.job_status_read("b", JobStatus::Stopped, &cx(), &mut p);
        e.check_done(&cx(), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Failed);
        assert_eq!(e.body.error.as_deref(), Some("job(s) failed: a"));
        assert_eq!(e.body.end_time, Some(1_000));
        assert_eq!(p.events.last().unwrap().value, "FAILED");
    }

    #[test]
    fn all_jobs_finished_succeeds_and_a_stop_request_ends_stopped() {
        let mut e = exec(PLAIN);
        e.initialise(0, &cx(), &mut Pending::default()).unwrap();
        let mut p = Pending::default();
        e.job_status_read("a", JobStatus::Finished, &cx(), &mut p);
        e.check_done(&cx(), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Running);
        e.job_status_read("b", JobStatus::Finished, &cx(), &mut p);
        e.check_done(&cx(), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Succeeded);

        let mut e = exec(TWO_JOBS);
        e.initialise(0, &cx(), &mut Pending::default()).unwrap();
        let mut p = Pending::default();
        e.request_stop(&cx(), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Stopping);
        assert!(e.body.jobs["a"].stop_requested);
        e.check_done(&cx(), &mut p);
        assert_eq!(
            e.body.status,
            ExecutionStatus::Stopping,
            "a is still running"
        );
        e.job_status_read("a", JobStatus::Stopped, &cx(), &mut p);
        e.check_done(&cx(), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Stopped);
        // A second request changes nothing.
        let mut p = Pending::default();
        e.request_stop(&cx(), &mut p);
        assert!(p.events.is_empty());
    }

    #[test]
    fn a_periodic_job_restarts_once_however_many_ticks_passed() {
        let mut e = exec(
            "
workflow: wf
jobs:
  t: {type: process, command: 'true', periodic: {interval: 10s}}
",
        );
        let mut p = Pending::default();
        e.initialise(0, &cx(), &mut p).unwrap();
        let first = e.body.jobs["t"].next_tick.unwrap();
        let mut p = Pending::default();
        assert!(!e.due_ticks(first - 1, &cx(), &mut p).unwrap());
        // Five ticks late: one restart, next tick after now.
        let now = first + 50_000;
        assert!(e.due_ticks(now, &cx(), &mut p).unwrap());
        assert!(e.body.jobs["t"].next_tick.unwrap() > now);
        assert_eq!(p.actions, 1);
    }

    const RESTARTING: &str = "
workflow: wf
jobs:
  a:
    type: process
    command: 'true'
    restart: {policy: on_failure, max_restarts: 2, backoff: 100ms}
  b: {type: process, command: 'true'}
";

    fn at(wall_ms: i64) -> Ctx<'static> {
        Ctx {
            data_dir: Path::new("/data"),
            wall_ms,
        }
    }

    #[test]
    fn a_failed_run_restarts_after_its_backoff_until_the_limit_then_fails_the_execution() {
        let mut e = exec(RESTARTING);
        e.initialise(0, &at(1_000), &mut Pending::default())
            .unwrap();
        e.job_status_read("b", JobStatus::Running, &at(1_000), &mut Pending::default());

        // First failure: restart at +100ms; the execution keeps running, b is not stopped.
        let mut p = Pending::default();
        e.job_status_read("a", JobStatus::Failed, &at(1_000), &mut p);
        e.check_done(&at(1_000), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Running);
        assert!(!e.body.jobs["b"].stop_requested);
        assert_eq!(e.body.jobs["a"].restart_at, Some(1_100));
        assert!(
            !e.due_restarts(&at(1_099), &mut p),
            "not before the backoff"
        );
        let mut p = Pending::default();
        assert!(e.due_restarts(&at(1_100), &mut p));
        assert_eq!(p.launches, vec!["wf-1.a.2".to_string()]);
        assert_eq!(e.body.jobs["a"].restart_at, None);

        // Second failure: the backoff doubles.
        let mut p = Pending::default();
        e.job_status_read("a", JobStatus::Failed, &at(2_000), &mut p);
        assert_eq!(e.body.jobs["a"].restart_at, Some(2_200));
        assert!(e.due_restarts(&at(2_200), &mut p));
        assert_eq!(e.body.jobs["a"].attempts, 3);

        // Third failure: the limit (2 restarts) is reached; the execution fails.
        let mut p = Pending::default();
        e.job_status_read("a", JobStatus::Failed, &at(3_000), &mut p);
        assert_eq!(e.body.jobs["a"].restart_at, None);
        e.check_done(&at(3_000), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Stopping);
        e.job_status_read("b", JobStatus::Stopped, &at(3_000), &mut p);
        e.check_done(&at(3_000), &mut p);
        assert_eq!(e.body.status, ExecutionStatus::Failed);
        assert_eq!(e.body.error.as_deref(), Some("job(s) failed: a"));
    }

    #[test]
    fn a_stop_cancels_a_pending_restart_and_a_stopped_run_never_restarts() {
        let mut e = exec(RESTARTING);
        e.initialise(0, &at(1_000), &mut Pending::default())
            .unwrap();
        let mut p = Pending::default();
        e.job_status_read("a", JobStatus::Failed, &at(1_000), &mut p);
        assert!(e.body.jobs["a"].restart_at.is_some());
        let mut p = Pending::default();
        e.request_stop(&at(1_010), &mut p);
        assert_eq!(e.body.jobs["a"].restart_at, None);
        assert!(!e.due_restarts(&at(5_000), &mut p));

        // A run asked to stop that then reports FAILED (it failed while stopping) is not
        // restarted.
        let mut e = exec(RESTARTING);
        e.initialise(0, &at(1_000), &mut Pending::default())
            .unwrap();
        let mut p = Pending::default();
        e.act("a", Action::Stop, &at(1_000), &mut p);
        e.job_status_read("a", JobStatus::Failed, &at(1_000), &mut p);
        assert_eq!(e.body.jobs["a"].restart_at, None);

        // Without a policy a failure is final.
        let mut e = exec(PLAIN);
        e.initialise(0, &at(1_000), &mut Pending::default())
            .unwrap();
        e.job_status_read("a", JobStatus::Failed, &at(1_000), &mut Pending::default());
        assert_eq!(e.body.jobs["a"].restart_at, None);
    }
}
