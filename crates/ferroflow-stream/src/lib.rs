//! The `stream` job type: a workflow job that is one engine job, running until stopped.
//!
//! ```yaml
//! jobs:
//!   counts:
//!     type: stream
//!     spec: jobs/counts.yaml        # a job spec file (relative to the workflow file), or
//!     # job: {name: counts, sources: [...], nodes: [...], sinks: [...]}   # one inline
//!     checkpoint_interval: 1s       # default 1s
//!     checkpoint_retain: 3          # complete checkpoints kept (default 3)
//!     restart: on_failure           # the scheduler's restart policy (see docs/workflow.md)
//! ```
//!
//! The job spec is built (and so checked, with errors naming its file, line and node) when
//! the workflow is submitted. A run checkpoints into
//! `<data dir>/checkpoints/<project>/<execution>/<job>/` and starts from the newest complete
//! checkpoint there, so a run that follows a crash, a STOP or a RESTART in the same
//! execution carries on where the last one left off: sources resume at their positions,
//! operator state is restored, and file sinks commit exactly once. A STOP takes a savepoint
//! and ends the run STOPPED. While it runs the job execution's `external` record shows rows
//! read and written by this run, the checkpoint it resumed from and the last one taken.

mod job;
mod metrics;
mod ml;
mod model_center;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferroflow_jobspec::{Factories, JobSpec};
use ferroflow_workflow::{JobKey, JobPlugin, Result, RunnableJob, SubGraph, WorkflowError};
use serde::Deserialize;

/// The `stream` job type, building its jobs with the source types, sink types and
/// operations of `factories`.
pub struct StreamPlugin {
    factories: Arc<Factories>,
}

impl StreamPlugin {
    /// A job type whose specs may use what `factories` holds.
    pub fn new(factories: Factories) -> Self {
        StreamPlugin {
            factories: Arc::new(factories),
        }
    }
}

/// A stream job's settings in the workflow spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamSettings {
    /// A job spec file, relative to the workflow file.
    spec: Option<String>,
    /// An inline job spec.
    job: Option<serde_json::Value>,
    /// Time between checkpoints (default 1s).
    checkpoint_interval: Option<String>,
    /// Complete checkpoints kept (default 3).
    checkpoint_retain: Option<usize>,
}

/// A stream job ready to build: the spec's text, where it came from, and its checkpointing.
pub(crate) struct Prepared {
    pub(crate) key: JobKey,
    pub(crate) text: String,
    pub(crate) origin: String,
    pub(crate) base: PathBuf,
    pub(crate) spec: JobSpec,
    pub(crate) interval: Duration,
    pub(crate) retain: usize,
    pub(crate) factories: Arc<Factories>,
}

impl Prepared {
    /// Build the engine job (without checkpointing; the run adds it) with `factories`.
    pub(crate) fn build_with(&self, factories: &Factories) -> Result<ferroflow_engine::JobGraph> {
        ferroflow_jobspec::build_spec_with(
            &self.spec,
            &self.text,
            &self.origin,
            &self.base,
            factories,
        )
        .map_err(|e| WorkflowError::external(&self.key, e))
    }
}

impl StreamPlugin {
    fn prepare(&self, sub: &SubGraph<'_>) -> Result<Prepared> {
        let key = JobKey::new(&sub.graph.name, &sub.job.name);
        if !sub.nodes.is_empty() {
            return Err(WorkflowError::job(
                &key,
                "a stream job runs its job spec ('spec' or 'job') and has no AI Graph nodes",
            ));
        }
        let settings: StreamSettings =
            serde_json::from_value(serde_json::Value::Object(sub.job.properties.clone()))
                .map_err(|e| WorkflowError::job(&key, format!("stream job settings: {e}")))?;
        let (text, origin, base) = match (&settings.spec, &settings.job) {
            (Some(file), None) => {
                let path = sub.graph.resolve_path(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| WorkflowError::job(&key, format!("{}: {e}", path.display())))?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (text, path.display().to_string(), base)
            }
            (None, Some(inline)) => {
                let text = serde_yaml_ng::to_string(inline)
                    .map_err(|e| WorkflowError::external(&key, e))?;
                let base = sub.graph.base_dir.clone().unwrap_or_default();
                (text, format!("job '{}' (inline spec)", sub.job.name), base)
            }
            _ => {
                return Err(WorkflowError::job(
                    &key,
                    "a stream job takes exactly one of 'spec' (a job spec file) and 'job' (an inline job spec)",
                ));
            }
        };
        let spec = ferroflow_jobspec::parse(&text, &origin)
            .map_err(|e| WorkflowError::external(&key, e))?;
        if spec.checkpoint.is_some() {
            return Err(WorkflowError::job(
                &key,
                format!(
                    "{origin}: a stream job checkpoints into the data directory; remove the spec's 'checkpoint' and set 'checkpoint_interval' / 'checkpoint_retain' on the job"
                ),
            ));
        }
        let interval = match &settings.checkpoint_interval {
            Some(s) => humantime::parse_duration(s).map_err(|e| {
                WorkflowError::job(&key, format!("checkpoint_interval: '{s}': {e}"))
            })?,
            None => Duration::from_secs(1),
        };
        if interval.is_zero() {
            return Err(WorkflowError::job(
                &key,
                "checkpoint_interval must be above 0",
            ));
        }
        let retain = settings.checkpoint_retain.unwrap_or(3);
        if retain == 0 {
            return Err(WorkflowError::job(
                &key,
                "checkpoint_retain must be at least 1",
            ));
        }
        Ok(Prepared {
            key,
            text,
            origin,
            base,
            spec,
            interval,
            retain,
            factories: self.factories.clone(),
        })
    }
}

impl JobPlugin for StreamPlugin {
    fn job_type(&self) -> &str {
        "stream"
    }

    fn validate(&self, sub: &SubGraph<'_>) -> Result<()> {
        let p = self.prepare(sub)?;
        p.build_with(&p.factories).map(drop)
    }

    fn generate(&self, sub: &SubGraph<'_>) -> Result<Box<dyn RunnableJob>> {
        Ok(Box::new(job::StreamJob::new(self.prepare(sub)?)))
    }

    fn host_access(&self, sub: &SubGraph<'_>) -> Option<String> {
        Some(format!(
            "stream job '{}' reads and writes the files its job spec names",
            sub.job.name
        ))
    }
}

/// The source types, sink types and operations of ferroflow's job specs: the built-in ones,
/// the ML library's `ml`, `fit_online` and `evaluate` (see the `ml` module's docs), the
/// `model_center` source and sink and the `model_metrics` sink (they run only in a `stream`
/// workflow job, which gives them the Model Center; elsewhere they are checked and refuse
/// to start). Stages are this crate's ML library's ([`ferroflow_ml::builtin_stages`]).
pub fn factories() -> Factories {
    factories_with(ferroflow_ml::builtin_stages())
}

/// [`factories`] whose `ml`, `fit_online` and `evaluate` operations read stages, saved
/// models and versions with `stages` (e.g. with `ferroflow_sql`'s SQLTransformer added).
pub fn factories_with(stages: ferroflow_ml::StageRegistry) -> Factories {
    Factories::builtin()
        .with_sink(
            "model_center",
            Arc::new(model_center::ModelCenterSinkType(None)),
        )
        .with_sink(
            "model_metrics",
            Arc::new(metrics::ModelMetricsSinkType(None)),
        )
        .with_source(
            "model_center",
            Arc::new(model_center::ModelCenterSourceType(None)),
        )
        .with_node("ml", Arc::new(ml::MlNode(stages.clone())))
        .and_then(|f| f.with_node("fit_online", Arc::new(ml::FitOnlineNode(stages.clone()))))
        .and_then(|f| f.with_node("evaluate", Arc::new(ml::EvaluateNode(stages))))
        .expect("'ml', 'fit_online' and 'evaluate' are not built-in operations")
}

/// Where the checkpoints of `job` in `execution` go.
pub fn checkpoint_dir(data_dir: &Path, project: &str, execution: &str, job: &str) -> PathBuf {
    data_dir
        .join("checkpoints")
        .join(project)
        .join(execution)
        .join(job)
}
