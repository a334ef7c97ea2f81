//! The job runner: runs one job execution and reports its life to the store.
//!
//! It is what `ferroflow job run` does in its own process (so a crashing job never takes the
//! scheduler down), and what the in-process launcher does on a task. It:
//!
//! 1. claims the job execution: STARTING -> RUNNING, only if the launch token matches (a
//!    runner from a superseded launch exits without running anything);
//! 2. writes a heartbeat every [`RunnerOptions::heartbeat`], and watches for STOPPING;
//! 3. generates the job from the execution's snapshot and runs it on a blocking thread;
//! 4. writes FINISHED, FAILED (with the error) or STOPPED.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferroflow_meta::MetaStore;
use parking_lot::Mutex;

use crate::error::{Result, WorkflowError};
use crate::plugin::{CancelToken, JobContext, JobLog};
use crate::records::{
    get_execution, get_job_execution, load_snapshot, now_ms, update_job_execution,
};
use crate::registry::PluginRegistry;
use crate::status::JobStatus;

/// How a runner behaves.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// The control plane's data directory (logs, model files).
    pub data_dir: PathBuf,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            heartbeat: Duration::from_millis(500),
            data_dir: PathBuf::from(".ferroflow"),
        }
    }
}

const SENDER: &str = "job-runner";

/// Run job execution `name` of `project` to its end and return its final status.
/// `cancel` stops it (a SIGTERM handler sets it in `ferroflow job run`).
pub async fn run_job_execution(
    store: Arc<dyn MetaStore>,
    registry: &PluginRegistry,
    project: &str,
    name: &str,
    launch_id: &str,
    opts: &RunnerOptions,
    cancel: CancelToken,
) -> Result<JobStatus> {
    let pid = std::process::id();
    let claimed = update_job_execution(&*store, project, name, SENDER, |b| {
        if b.launch_id != launch_id || b.status != JobStatus::Starting {
            return false;
        }
        b.status = JobStatus::Running;
        b.pid = Some(pid);
        b.process = crate::process_id::ProcessIdentity::current();
        b.heartbeat = Some(now_ms());
        b.start_time = Some(now_ms());
        true
    })
    .await?;
    let Some(body) = claimed else {
        let (_, b) = get_job_execution(&*store, project, name).await?;
        return Err(WorkflowError::Invalid(format!(
            "job execution '{project}/{name}' is {} with launch '{}', not STARTING with launch '{launch_id}': this launch was superseded",
            b.status, b.launch_id
        )));
    };
    let log = JobLog::open(std::path::Path::new(&body.log))?;
    log.line(&format!(
        "[ferroflow] job execution {name} running (pid {pid})"
    ));

    // Heartbeats, and STOPPING seen in the store (a stop from a scheduler on another host or
    // one restarted since the launch) cancels the job.
    // Ends the heartbeat loop at once when the job ends (not after the next period).
    let (done, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let beat = {
        let (store, project, name, cancel) = (
            store.clone(),
            project.to_string(),
            name.to_string(),
            cancel.clone(),
        );
        let period = opts.heartbeat;
        tokio::spawn(async move {
            let mut wait = period;
            loop {
                tokio::select! {
                    _ = &mut done_rx => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                let r = update_job_execution(&*store, &project, &name, SENDER, |b| {
                    if b.status == JobStatus::Stopping {
                        cancel.cancel();
                    }
                    if b.status.is_terminal() {
                        // Someone else decided (a lost heartbeat marked it FAILED): stop.
                        cancel.cancel();
                        return false;
                    }
                    b.heartbeat = Some(now_ms());
                    true
                })
                .await;
                // A failed write (a store hiccup) is retried soon, not a period later, so a
                // short stall does not look like a dead runner; a long outage shows as a
                // missed heartbeat, which is the truth.
                wait = if r.is_err() {
                    (period / 5).max(Duration::from_millis(10))
                } else {
                    period
                };
            }
        })
    };

    let outcome = run_job(&store, registry, project, name, &body, opts, &cancel, &log).await;
    let _ = done.send(());
    let _ = beat.await;

    let (status, error, exit_code) = match outcome {
        _ if cancel.is_cancelled() => (JobStatus::Stopped, None, None),
        Ok(code) => (JobStatus::Finished, None, code),
        Err((e, code)) => (JobStatus::Failed, Some(e.to_string()), code),
    };
    match &error {
        Some(e) => log.line(&format!("[ferroflow] {status}: {e}")),
        None => log.line(&format!("[ferroflow] {status}")),
    }
    let written = update_job_execution(&*store, project, name, SENDER, |b| {
        if b.status.is_terminal() {
            return false;
        }
        b.status = status;
        b.error = error.clone();
        b.exit_code = exit_code;
        true
    })
    .await?;
    Ok(match written {
        Some(b) => b.status,
        None => get_job_execution(&*store, project, name).await?.1.status,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_job(
    store: &Arc<dyn MetaStore>,
    registry: &PluginRegistry,
    project: &str,
    name: &str,
    body: &crate::status::JobExecutionBody,
    opts: &RunnerOptions,
    cancel: &CancelToken,
    log: &JobLog,
) -> Result<Option<i32>, (WorkflowError, Option<i32>)> {
    let fail = |e: WorkflowError| (e, None);
    let (_, exec) = get_execution(&**store, project, &body.execution)
        .await
        .map_err(fail)?;
    let graph = load_snapshot(&**store, project, &exec.snapshot)
        .await
        .map_err(fail)?;
    let sub = graph.sub_graph(&body.job).map_err(fail)?;
    let plugin = registry.get(&sub.job.job_type).map_err(fail)?;
    let job = plugin.generate(&sub).map_err(fail)?;
    let ctx = JobContext {
        store: store.clone(),
        handle: tokio::runtime::Handle::current(),
        cancel: cancel.clone(),
        log: log.clone(),
        project: project.into(),
        workflow: body.workflow.clone(),
        execution: body.execution.clone(),
        job: body.job.clone(),
        job_execution: name.into(),
        data_dir: opts.data_dir.clone(),
        exit_code: Mutex::new(None),
        trigger: body.trigger.clone(),
    };
    let key = ctx.job_key();
    let (result, ctx) = tokio::task::spawn_blocking(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(&ctx)));
        (r, ctx)
    })
    .await
    .map_err(|e| fail(WorkflowError::job(&key, format!("job thread failed: {e}"))))?;
    let code = *ctx.exit_code.lock();
    match result {
        Ok(Ok(())) => Ok(code),
        Ok(Err(e)) => Err((e, code)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err((WorkflowError::job(key, format!("panicked: {msg}")), code))
        }
    }
}
