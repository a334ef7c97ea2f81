//! The job types this binary runs (below `control` and `workflow`, which both need them).

use std::sync::Arc;

/// The job types of the `ferroflow` binary: `process`, `native`, `flink` and `stream`.
pub(crate) fn job_types() -> ferroflow_workflow::PluginRegistry {
    let mut r = ferroflow_native::job_types();
    r.register(Arc::new(ferroflow_flink::FlinkPlugin));
    r.register(Arc::new(ferroflow_stream::StreamPlugin::new(
        ferroflow_stream::factories(),
    )));
    r
}
