//! Job types as plugins: a job generator turns a job's sub-graph into something runnable.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferroflow_meta::MetaStore;
use parking_lot::Mutex;

use crate::error::{Result, WorkflowError};
use crate::graph::SubGraph;

/// A stop request shared between the runner and a running job.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the job to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Has a stop been asked for?
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A job execution's log file (appended; shared with the job's child processes).
#[derive(Debug, Clone)]
pub struct JobLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl JobLog {
    /// Open (creating directories and the file) for appending.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| WorkflowError::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| WorkflowError::io(path, e))?;
        Ok(JobLog {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Append one line.
    pub fn line(&self, text: &str) {
        let mut f = self.file.lock();
        // A log that cannot be written must not fail the job; the status still says it all.
        let _ = writeln!(f, "{text}");
    }

    /// A second handle on the file (for a child process's stdout and stderr).
    pub fn file(&self) -> Result<File> {
        self.file
            .lock()
            .try_clone()
            .map_err(|e| WorkflowError::io(&self.path, e))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Everything a running job may use.
pub struct JobContext {
    /// The control-plane store (Model Center, records, events).
    pub store: Arc<dyn MetaStore>,
    /// A runtime handle to call the store from the job's (blocking) thread.
    pub handle: tokio::runtime::Handle,
    /// Set when the job must stop.
    pub cancel: CancelToken,
    /// The job execution's log.
    pub log: JobLog,
    /// Project of the workflow.
    pub project: String,
    /// The workflow.
    pub workflow: String,
    /// The execution.
    pub execution: String,
    /// The job.
    pub job: String,
    /// The job execution (its record's name), for lineage.
    pub job_execution: String,
    /// The control plane's data directory.
    pub data_dir: PathBuf,
    /// Exit code of the job's command, when it has one (recorded with the job execution).
    pub exit_code: Mutex<Option<i32>>,
    /// The event whose rule started this run, if one did.
    pub trigger: Option<crate::status::Trigger>,
}

impl JobContext {
    /// Merge `fields` (a JSON object) into the job execution's `external` record: what the
    /// job type knows about the run outside ferroflow (a Flink job id, a savepoint path).
    /// Written at once, so it survives this process.
    pub fn record_external(&self, fields: serde_json::Value) -> Result<()> {
        self.record_external_of(&self.job_execution.clone(), fields)
    }

    /// [`JobContext::record_external`] for another job execution of this project (an
    /// earlier run whose leftovers this run cleaned up).
    pub fn record_external_of(&self, job_execution: &str, fields: serde_json::Value) -> Result<()> {
        let fields = match fields {
            serde_json::Value::Object(m) => m,
            other => {
                return Err(crate::error::WorkflowError::Invalid(format!(
                    "external fields must be a JSON object, not {other}"
                )));
            }
        };
        self.handle.block_on(crate::records::update_job_execution(
            &*self.store,
            &self.project,
            job_execution,
            "job-runner",
            |b| {
                let ext = b
                    .external
                    .get_or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let serde_json::Value::Object(m) = ext {
                    for (k, v) in &fields {
                        m.insert(k.clone(), v.clone());
                    }
                }
                true
            },
        ))?;
        Ok(())
    }

    /// Earlier runs of this job in this execution, oldest first (their `external` records
    /// tell what they left behind).
    pub fn earlier_runs(&self) -> Result<Vec<crate::records::JobExecutionInfo>> {
        let all = self.handle.block_on(crate::records::job_executions(
            &*self.store,
            &self.project,
            &self.execution,
        ))?;
        Ok(all
            .into_iter()
            .filter(|j| j.body.job == self.job && j.name != self.job_execution)
            .collect())
    }

    /// `<workflow>.<job>`, as errors and events name the job.
    pub fn job_key(&self) -> crate::JobKey {
        crate::JobKey::new(&self.workflow, &self.job)
    }
}

/// A job ready to run.
pub trait RunnableJob: Send {
    /// Run to the end on the calling (blocking) thread. Return early, with any result, once
    /// `ctx.cancel` is set: the runner then records STOPPED. An error fails the job.
    fn run(self: Box<Self>, ctx: &JobContext) -> Result<()>;
}

/// A job type: checks its jobs at submission and generates them at run time.
pub trait JobPlugin: Send + Sync {
    /// The `type:` it handles.
    fn job_type(&self) -> &str;

    /// Check a job's settings and nodes when the workflow is submitted.
    fn validate(&self, sub: &SubGraph<'_>) -> Result<()>;

    /// Turn a job's sub-graph into a runnable job.
    fn generate(&self, sub: &SubGraph<'_>) -> Result<Box<dyn RunnableJob>>;

    /// What this job does on a host that its spec decides: runs a command or user code (a
    /// shell command, a jar, a script) or reads or writes files the spec names; `None` when
    /// it runs only ferroflow's own code on the control plane's state. Submitting a workflow
    /// with such a job needs the admin role. A job type that does not say is taken to do so.
    fn host_access(&self, sub: &SubGraph<'_>) -> Option<String> {
        let _ = sub;
        Some(format!(
            "job type '{}' does not say that it runs no user code",
            self.job_type()
        ))
    }
}
