//! The job types a scheduler and its runners know, and the check of a spec's jobs against
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Result, WorkflowError};
use crate::graph::{AiGraph, Locate};
use crate::plugin::JobPlugin;
use crate::spec::Lines;

/// The job types a scheduler and its runners know.
#[derive(Clone, Default)]
pub struct PluginRegistry {
    plugins: BTreeMap<String, Arc<dyn JobPlugin>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.plugins.keys()).finish()
    }
}

impl PluginRegistry {
    /// No job types.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in job types of this crate: `process`.
    pub fn with_builtin() -> Self {
        let mut r = Self::empty();
        r.register(Arc::new(crate::process::ProcessPlugin));
        r
    }

    /// Add (or replace) a job type.
    pub fn register(&mut self, plugin: Arc<dyn JobPlugin>) -> &mut Self {
        self.plugins.insert(plugin.job_type().to_string(), plugin);
        self
    }

    /// The plugin of a job type.
    pub fn get(&self, job_type: &str) -> Result<&Arc<dyn JobPlugin>> {
        self.plugins.get(job_type).ok_or_else(|| {
            WorkflowError::Invalid(format!(
                "unknown job type '{job_type}' (known: {})",
                self.plugins.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Known job types.
    pub fn job_types(&self) -> Vec<&str> {
        self.plugins.keys().map(String::as_str).collect()
    }

    /// The jobs of `graph` that run commands or user code or touch host files, each with
    /// the reason (see [`JobPlugin::host_access`]); unknown job types count as doing so.
    pub fn host_access_jobs(&self, graph: &AiGraph) -> Vec<(String, String)> {
        let mut out = vec![];
        for job in graph.jobs.values() {
            let why = match (self.get(&job.job_type), graph.sub_graph(&job.name)) {
                (Ok(plugin), Ok(sub)) => plugin.host_access(&sub),
                (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
            };
            if let Some(why) = why {
                out.push((job.name.clone(), why));
            }
        }
        out
    }

    /// Check every job's type and let its plugin check the job; errors name the job through
    /// `at`.
    pub fn validate(&self, graph: &AiGraph, at: &dyn Locate) -> Result<()> {
        for job in graph.jobs.values() {
            let plugin = self.get(&job.job_type).map_err(|e| {
                WorkflowError::spec(at.job(&job.name), format!("job '{}': {e}", job.name))
            })?;
            let sub = graph.sub_graph(&job.name)?;
            plugin.validate(&sub).map_err(|e| match e {
                WorkflowError::Spec { .. } => e,
                // A plugin's error about one node points at that node.
                WorkflowError::Node { ref node, .. } => {
                    WorkflowError::spec(at.node(node), e.to_string())
                }
                WorkflowError::Job { .. } => WorkflowError::spec(at.job(&job.name), e.to_string()),
                other => WorkflowError::spec(at.job(&job.name), other.to_string()),
            })?;
        }
        Ok(())
    }
}

/// Check every job of a graph parsed from `text` against the job types of `registry`
/// (unknown type, a plugin's own checks), with errors pointing at the job's line.
pub fn check_job_types(
    text: &str,
    file: &str,
    graph: &AiGraph,
    registry: &PluginRegistry,
) -> Result<()> {
    registry.validate(graph, &Lines { file, text })
}
