//! The job types this binary runs (below `control` and `workflow`, which both need them).

use std::sync::Arc;

/// The job types of the `ferroflow` binary: `process`, `native`, `flink` and `stream`.
pub(crate) fn job_types() -> ferroflow_workflow::PluginRegistry {
    let mut r = ferroflow_native::job_types();
    r.register(Arc::new(ferroflow_flink::FlinkPlugin));
    r.register(Arc::new(ferroflow_stream::StreamPlugin::new(
        spec_factories(),
    )));
    r
}

/// What job specs may name in this binary: the stream crate's sources, sinks and
/// operations, its `ml` operations reading every stage class the binary has
/// (SQLTransformer included).
pub(crate) fn spec_factories() -> ferroflow_jobspec::Factories {
    ferroflow_stream::factories_with(ferroflow_sql::ml_stages())
}
