//! One run of a stream job: the engine job, its checkpoints and what it reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferroflow_engine::{CheckpointConfig, JobHandle, JobStatus, Runtime};
use ferroflow_workflow::{JobContext, Result, RunnableJob, WorkflowError};
use serde_json::json;

use crate::{Prepared, checkpoint_dir};

/// How often a run writes its progress to its job execution.
const REPORT_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct StreamJob {
    prepared: Prepared,
    /// The spec's sources and sinks, whose metrics are the run's rows in and out.
    sources: Vec<String>,
    sinks: Vec<String>,
}

impl StreamJob {
    pub(crate) fn new(prepared: Prepared) -> Self {
        let sources = prepared
            .spec
            .sources
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let sinks = prepared.spec.sinks.iter().map(|s| s.name.clone()).collect();
        StreamJob {
            prepared,
            sources,
            sinks,
        }
    }

    /// Rows read by the sources and written by the sinks in this run, the checkpoint it
    /// resumed from and the last one it completed.
    fn progress(&self, handle: &JobHandle) -> serde_json::Value {
        let metrics = handle.metrics();
        let sum = |names: &[String], f: fn(&ferroflow_engine::MetricsSnapshot) -> u64| -> u64 {
            metrics
                .iter()
                .filter(|(n, _)| names.contains(n))
                .map(|(_, m)| f(m))
                .sum()
        };
        let last = handle.checkpoints().last().cloned();
        json!({
            "rows_in": sum(&self.sources, |m| m.rows_out),
            "rows_out": sum(&self.sinks, |m| m.rows_in),
            "restored_from": handle.restored().map(|r| r.id),
            "last_checkpoint": last.as_ref().map(|c| c.id),
            "last_checkpoint_savepoint": last.as_ref().map(|c| c.savepoint),
        })
    }

    fn report(&self, ctx: &JobContext, handle: &JobHandle) {
        // Progress is informative: a store that cannot take it now must not fail the run.
        if let Err(e) = ctx.record_external(self.progress(handle)) {
            ctx.log.line(&format!("could not record progress: {e}"));
        }
    }
}

impl RunnableJob for StreamJob {
    fn run(self: Box<Self>, ctx: &JobContext) -> Result<()> {
        let key = self.prepared.key.clone();
        let ext = |e: ferroflow_engine::EngineError| WorkflowError::external(&key, e);
        // This run's Model Center: its versions' lineage is this job execution.
        let target = crate::model_center::Target {
            store: ctx.store.clone(),
            handle: ctx.handle.clone(),
            project: ctx.project.clone(),
            lineage: format!("{}/{}", ctx.project, ctx.job_execution),
            execution: ctx.execution.clone(),
            job_execution: ctx.job_execution.clone(),
            run_dir: format!("{}.{}", ctx.execution, ctx.job),
            data_dir: ctx.data_dir.clone(),
        };
        let factories = (*self.prepared.factories)
            .clone()
            .with_source(
                "model_center",
                Arc::new(crate::model_center::ModelCenterSourceType(Some(
                    target.clone(),
                ))),
            )
            .with_sink(
                "model_center",
                Arc::new(crate::model_center::ModelCenterSinkType(Some(
                    target.clone(),
                ))),
            )
            .with_sink(
                "model_metrics",
                Arc::new(crate::metrics::ModelMetricsSinkType(Some(target))),
            );
        let mut graph = self.prepared.build_with(&factories)?;
        let dir = checkpoint_dir(&ctx.data_dir, &ctx.project, &ctx.execution, &ctx.job);
        graph.set_checkpointing(Some(
            CheckpointConfig::new(&dir, self.prepared.interval).with_retain(self.prepared.retain),
        ));
        ctx.record_external(json!({ "checkpoint_dir": dir.display().to_string() }))?;
        let runtime = Runtime::new().map_err(ext)?;
        let handle = runtime.execute(graph).map_err(ext)?;
        match handle.restored() {
            Some(r) => {
                for s in &r.skipped {
                    ctx.log.line(&format!("passed over a checkpoint: {s}"));
                }
                ctx.log.line(&format!("resumed from {r}"));
            }
            None => ctx.log.line(&format!(
                "started from the beginning (no checkpoint in {})",
                dir.display()
            )),
        }
        self.report(ctx, &handle);
        let mut last_report = Instant::now();
        let mut stopping = false;
        loop {
            if ctx.cancel.is_cancelled() && !stopping {
                ctx.log.line("stop requested: taking a savepoint");
                handle.stop();
                stopping = true;
            }
            match handle.wait_timeout(Duration::from_millis(50)) {
                Ok(Some(report)) => {
                    self.report(ctx, &handle);
                    let status = match report.status {
                        JobStatus::Stopped => "stopped with a savepoint",
                        JobStatus::Finished => "finished",
                        JobStatus::Cancelled => "cancelled",
                        JobStatus::Failed | JobStatus::Running => "ended",
                    };
                    ctx.log.line(&format!(
                        "{status} after {:?}; last checkpoint {:?}",
                        report.elapsed,
                        report.checkpoints.last().map(|c| c.id)
                    ));
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => {
                    self.report(ctx, &handle);
                    return Err(ext(e));
                }
            }
            if last_report.elapsed() >= REPORT_EVERY {
                last_report = Instant::now();
                self.report(ctx, &handle);
            }
        }
    }
}
