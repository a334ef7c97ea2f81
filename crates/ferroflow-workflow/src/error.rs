//! The workflow crate's error type.

use thiserror::Error;

/// Everything that can go wrong in the control layer.
#[derive(Debug, Error)]
pub enum WorkflowError {
    /// A workflow spec (YAML or built in code) is wrong; `at` is `file:line` when known, or
    /// the item at fault (`node 'fit'`, `job 'train'`).
    #[error("{at}: {message}")]
    Spec {
        /// Where: `spec.yaml:12`, or `workflow 'w', node 'fit'`.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// The control-plane store failed or refused.
    #[error(transparent)]
    Meta(#[from] ferroflow_meta::MetaError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A job failed to generate, start or run.
    #[error("job '{job}': {message}")]
    Job {
        /// `<workflow>.<job>` or the job name.
        job: String,
        /// What went wrong.
        message: String,
    },
    /// A node of a job is wrong or failed; `node` is its id, so a spec error can point at
    /// its line without reading the message.
    #[error("job '{job}': {message}")]
    Node {
        /// `<workflow>.<job>` or the job name.
        job: String,
        /// The node's id.
        node: String,
        /// What went wrong, naming the node (`node 'fit' (train): ...`).
        message: String,
    },
    /// A job type's library (the engine, a job spec, a cluster's client) refused or failed
    /// the job; its error is kept as the source.
    #[error("job '{job}': {source}")]
    External {
        /// `<workflow>.<job>` or the job name.
        job: String,
        /// The library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request does not fit the current state (stopping a finished execution, ...).
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{kind} '{name}' not found")]
    NotFound {
        /// workflow, execution, job...
        kind: &'static str,
        /// Its name.
        name: String,
    },
}

impl WorkflowError {
    /// The store could not answer now (its database failed or is unavailable): the same
    /// request may succeed later. Every other error is about the item at hand.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            WorkflowError::Meta(
                ferroflow_meta::MetaError::Storage(_) | ferroflow_meta::MetaError::Unavailable(_)
            )
        )
    }

    pub(crate) fn spec(at: impl Into<String>, message: impl Into<String>) -> Self {
        WorkflowError::Spec {
            at: at.into(),
            message: message.into(),
        }
    }

    /// An error of `job` described by `message`.
    pub fn job(job: impl std::fmt::Display, message: impl Into<String>) -> Self {
        WorkflowError::Job {
            job: job.to_string(),
            message: message.into(),
        }
    }

    /// `source`, a library's error, as the error of `job`.
    pub fn external(
        job: impl std::fmt::Display,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        WorkflowError::External {
            job: job.to_string(),
            source: source.into(),
        }
    }

    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        WorkflowError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Result with [`WorkflowError`].
pub type Result<T, E = WorkflowError> = std::result::Result<T, E>;
