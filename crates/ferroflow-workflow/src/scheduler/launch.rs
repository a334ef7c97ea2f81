//! Launching job executions and telling their runners to stop.
//!
//! A launch claims the job execution (INIT, or a STARTING left by a gone scheduler, to
//! STARTING with a new launch token) before it starts the runner, so two launches of one run
//! cannot both start it. Signals go through [`crate::process_id`]: our own children by their
//! handle, runners of an earlier scheduler only when provably the recorded process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::decide::SENDER;
use super::{Scheduler, log};
use crate::error::{Result, WorkflowError};
use crate::plugin::CancelToken;
use crate::process_id::{Signal, signal_child, signal_recorded};
use crate::records::{get_job_execution, now_ms, update_job_execution};
use crate::registry::PluginRegistry;
use crate::runner::run_job_execution;
use crate::status::{JobExecutionBody, JobStatus};

/// How job executions are run.
#[derive(Clone)]
pub enum Launcher {
    /// In a child process: `program [args..] job run --data-dir D --project P
    /// --job-execution N --launch-id L` (the `ferroflow` binary). A crash or a kill of the
    /// job never touches the scheduler, and jobs survive a scheduler restart.
    Process {
        /// The `ferroflow` executable.
        program: PathBuf,
        /// Arguments before `job run`.
        args: Vec<String>,
    },
    /// On this process's runtime, for embedding and tests.
    InProcess {
        /// Job types the runner knows.
        registry: PluginRegistry,
    },
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Launcher::Process { program, .. } => write!(f, "Process({})", program.display()),
            Launcher::InProcess { registry } => write!(f, "InProcess({registry:?})"),
        }
    }
}

/// A running job execution this scheduler launched.
pub(super) enum Handle {
    Child(tokio::process::Child),
    Task {
        cancel: CancelToken,
        join: tokio::task::JoinHandle<()>,
    },
}

static LAUNCH_COUNTER: AtomicU64 = AtomicU64::new(0);

fn launch_token() -> String {
    format!(
        "{:x}-{:x}-{}",
        now_ms(),
        std::process::id(),
        LAUNCH_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl Scheduler {
    /// INIT (or a STARTING left by a gone scheduler) -> STARTING with a new launch token,
    /// then start its runner.
    pub(super) async fn launch(&mut self, project: &str, job_execution: &str) -> Result<()> {
        let key = format!("{project}/{job_execution}");
        if self.handles.contains_key(&key) {
            return Ok(());
        }
        let token = launch_token();
        let relaunch_ok = !self.launched.contains_key(&key);
        let claimed = update_job_execution(&*self.store, project, job_execution, SENDER, |b| {
            let ok =
                b.status == JobStatus::Init || (b.status == JobStatus::Starting && relaunch_ok);
            if ok {
                b.status = JobStatus::Starting;
                b.launch_id = token.clone();
            }
            ok
        })
        .await?;
        let Some(body) = claimed else { return Ok(()) };
        self.launched.insert(key.clone(), Instant::now());
        self.stats.launches.fetch_add(1, Ordering::Relaxed);
        let handle = match &self.launcher {
            Launcher::Process { program, args } => {
                let log = crate::plugin::JobLog::open(std::path::Path::new(&body.log))?;
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(args)
                    .arg("job")
                    .arg("run")
                    .arg("--data-dir")
                    .arg(&self.cfg.runner.data_dir)
                    .arg("--project")
                    .arg(project)
                    .arg("--job-execution")
                    .arg(job_execution)
                    .arg("--launch-id")
                    .arg(&token)
                    .arg("--heartbeat-ms")
                    .arg(self.cfg.runner.heartbeat.as_millis().to_string())
                    .stdin(std::process::Stdio::null())
                    .stdout(log.file()?)
                    .stderr(log.file()?)
                    // Its own process group: a Ctrl-C aimed at the scheduler's terminal does
                    // not reach the jobs, which outlive a scheduler restart by design.
                    .process_group(0);
                let child = cmd.spawn().map_err(|e| {
                    WorkflowError::job(
                        job_execution,
                        format!("cannot start {}: {e}", program.display()),
                    )
                })?;
                Handle::Child(child)
            }
            Launcher::InProcess { registry } => {
                let cancel = CancelToken::new();
                let (store, registry, project, job_execution, opts, c) = (
                    self.store.clone(),
                    registry.clone(),
                    project.to_string(),
                    job_execution.to_string(),
                    self.cfg.runner.clone(),
                    cancel.clone(),
                );
                let join = tokio::spawn(async move {
                    let _ = run_job_execution(
                        store,
                        &registry,
                        &project,
                        &job_execution,
                        &token,
                        &opts,
                        c,
                    )
                    .await;
                });
                Handle::Task { cancel, join }
            }
        };
        self.handles.insert(key, handle);
        Ok(())
    }

    /// RUNNING/STARTING/INIT -> STOPPING, and tell the runner.
    pub(super) async fn stop_job_execution(&mut self, project: &str, job_execution: &str) {
        let key = format!("{project}/{job_execution}");
        let r = update_job_execution(&*self.store, project, job_execution, SENDER, |b| {
            if b.status.is_terminal() || b.status == JobStatus::Stopping {
                return false;
            }
            b.status = JobStatus::Stopping;
            true
        })
        .await;
        let body = match r {
            Ok(Some(b)) => b,
            Ok(None) => match get_job_execution(&*self.store, project, job_execution).await {
                Ok((_, b)) if b.status == JobStatus::Stopping => b,
                _ => return,
            },
            Err(_) => return,
        };
        self.stopping
            .entry(key.clone())
            .or_insert_with(Instant::now);
        if let Some(Handle::Task { cancel, .. }) = self.handles.get(&key) {
            cancel.cancel();
        } else {
            // An adopted runner also sees STOPPING on its next heartbeat; the signal only
            // makes it quicker.
            self.signal_runner(&key, &body, Signal::Term);
        }
    }

    /// Signal a job execution's runner: our own child through its handle (its pid, and the
    /// group it leads, stay ours until we reap it), in-process runners not at all (they are
    /// cancelled), and a runner launched by an earlier scheduler only when the process with
    /// its pid is provably the one it recorded (see [`crate::process_id`]).
    pub(super) fn signal_runner(&self, key: &str, b: &JobExecutionBody, signal: Signal) {
        match self.handles.get(key) {
            Some(Handle::Child(c)) => {
                if let Some(id) = c.id() {
                    // Its own group (launched with process_group(0)): a SIGKILL also ends
                    // the commands it started; a SIGTERM goes to the runner, which stops them.
                    // `id` is `None` once reaped, so the pid is still our child's.
                    signal_child(id, signal == Signal::Kill, signal);
                }
            }
            Some(Handle::Task { .. }) => {}
            None => {
                if let Err(why) = signal_recorded(b.process.as_ref(), signal) {
                    log(&format!(
                        "job execution {key}: not signalling its runner: {why}"
                    ));
                }
            }
        }
    }
}
