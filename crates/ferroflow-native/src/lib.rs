//! The `native` job type: a job's nodes run in the job's process on ferroflow's ML library
//! (Flink ML compatible stages, SQL through DataFusion's SQLTransformer) and talk to the
//! Model Center.
//!
//! Nodes pass tables (Arrow record batches) along their data edges, in an order where every
//! node runs after its inputs. Paths are relative to the workflow spec's directory.
//!
//! | node | settings | input -> output |
//! |---|---|---|
//! | `read_dataset` | `path` (`.csv`, `.jsonl`, `.parquet`) or `dataset` (a dataset record's name) | -> table |
//! | `dataset_validate` | `columns`, `not_null`, `min_rows` | table -> same table, or the job fails naming the column |
//! | `transform` | `stage` (`{className, paramMap}`, a Pipeline, ...), `sql` (`SELECT ... FROM __THIS__`) or `model_dir` | table -> table |
//! | `train` | `model`, `estimator` (`{className, paramMap}` or a Pipeline), optional `evaluator` for training metrics | table -> the fitted model's output; saves the model under the data directory and registers a version (GENERATED, lineage = this job execution and the datasets read) |
//! | `model_validate` | `model`, `evaluator`, `metric`, `threshold`, optional `stage` (default GENERATED) and `reject` (`keep` or `deprecate`) | validation table -> metrics; the version becomes VALIDATED when `metric >= threshold` |
//! | `push_model` | `model`, optional `stage` (default VALIDATED), `require` | -> ; the version becomes DEPLOYED |
//!
//! "The version" of `model_validate` and `push_model` is the one named by the Model Center
//! event that started the job, when there is one and it is still in `stage`; otherwise the
//! newest version in `stage`.
//! | `predict` | `model` with optional `stage` (default DEPLOYED) or `version`, or `model_dir` | table -> scored table |
//! | `evaluate` | `evaluator` | table -> metrics table |
//! | `write_dataset` | `path` | table -> (written atomically) |
//! | `user_defined` | `function` (registered with [`NativePlugin::with_function`]) and its own settings | tables -> table |

mod center;
mod run;
mod settings;
mod step;
mod tables;

pub use step::NativeKind;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use ferroflow_workflow::{JobPlugin, Result, RunnableJob, SubGraph, WorkflowError};
use serde_json::Value;

/// A user-defined node's function: input tables and the node's settings to one table.
pub type NodeFunction =
    Arc<dyn Fn(&[RecordBatch], &Value) -> std::result::Result<RecordBatch, String> + Send + Sync>;

/// The `native` job type.
#[derive(Clone)]
pub struct NativePlugin {
    functions: HashMap<String, NodeFunction>,
    /// The stages nodes name and saved models are loaded with.
    stages: ferroflow_ml::StageRegistry,
}

impl Default for NativePlugin {
    fn default() -> Self {
        NativePlugin::new()
    }
}

impl NativePlugin {
    /// The job type with no user functions; stages are the ML library's and SQLTransformer.
    pub fn new() -> Self {
        NativePlugin {
            functions: HashMap::new(),
            stages: ferroflow_sql::ml_stages(),
        }
    }

    /// Make `function` available to `user_defined` nodes as `name`. A job run as a child
    /// process (`ferroflow job run`) sees only functions its binary registers.
    pub fn with_function(mut self, name: impl Into<String>, function: NodeFunction) -> Self {
        self.functions.insert(name.into(), function);
        self
    }

    /// Every node of `sub` read into its step (checking it).
    fn steps(&self, sub: &SubGraph<'_>) -> Result<Vec<step::Step>> {
        if let Some(k) = sub.job.properties.keys().next() {
            return Err(WorkflowError::Job {
                job: sub.job.name.clone(),
                message: format!("unknown setting '{k}' for a native job (it takes nodes)"),
            });
        }
        if sub.nodes.is_empty() {
            return Err(WorkflowError::Job {
                job: sub.job.name.clone(),
                message: "a native job needs nodes".into(),
            });
        }
        let known = |f: &str| {
            if self.functions.contains_key(f) {
                return Ok(());
            }
            let mut names: Vec<&str> = self.functions.keys().map(String::as_str).collect();
            names.sort_unstable();
            Err(format!(
                "unknown function '{f}' (registered: {})",
                names.join(", ")
            ))
        };
        sub.nodes
            .iter()
            .map(|n| step::parse(n, known, &self.stages))
            .collect()
    }
}

impl JobPlugin for NativePlugin {
    fn job_type(&self) -> &str {
        "native"
    }

    fn validate(&self, sub: &SubGraph<'_>) -> Result<()> {
        self.steps(sub).map(|_| ())
    }

    /// Native nodes run ferroflow's stages, SQL and the functions compiled into the binary
    /// (`user_defined` names one registered in Rust; a spec cannot bring code), but a node
    /// with a `path`, `model_dir` or `dataset` reads or writes files the spec names.
    fn host_access(&self, sub: &SubGraph<'_>) -> Option<String> {
        sub.nodes.iter().find_map(|n| {
            ["path", "model_dir", "dataset"]
                .into_iter()
                .find(|k| n.str_config(k).is_some())
                .map(|k| format!("node '{}' reads or writes host files (its '{k}')", n.id))
        })
    }

    fn generate(&self, sub: &SubGraph<'_>) -> Result<Box<dyn RunnableJob>> {
        let steps = self.steps(sub)?;
        Ok(Box::new(run::NativeJob {
            steps: sub.nodes.iter().map(|n| (*n).clone()).zip(steps).collect(),
            base_dir: sub.graph.base_dir.clone(),
            functions: self.functions.clone(),
            stages: self.stages.clone(),
        }))
    }
}

/// The job types of a ferroflow binary: the built-in `process` and `native`.
pub fn job_types() -> ferroflow_workflow::PluginRegistry {
    let mut r = ferroflow_workflow::PluginRegistry::with_builtin();
    r.register(Arc::new(NativePlugin::new()));
    r
}
