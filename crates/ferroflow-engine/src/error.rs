//! The engine's error type.

use arrow_schema::ArrowError;

/// Errors raised while building or running a job.
///
/// Every variant names what is at fault (node, column, input) so a user can find it without a
/// debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The job graph is malformed: a schema mismatch, an unknown column, a bad parameter,
    /// a model file that does not load.
    #[error("invalid job: {0}")]
    Plan(#[source] PlanError),
    /// An operator failed while processing data.
    #[error("node '{node}' failed: {source}")]
    Node {
        /// Name of the node at fault.
        node: String,
        /// What went wrong inside it.
        #[source]
        source: Box<EngineError>,
    },
    /// A source or sink failed; its error (a connector's, or a message) is kept as the
    /// source.
    #[error("connector error: {0}")]
    Connector(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An Arrow kernel failed.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// An I/O error, with the path or resource it concerns.
    #[error("{context}: {source}")]
    Io {
        /// The file, directory or resource being accessed.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The job was cancelled before it finished.
    #[error("job cancelled")]
    Cancelled,
    /// A user function or operator panicked.
    #[error("panic in node '{node}': {message}")]
    Panic {
        /// Node whose code panicked.
        node: String,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// Checkpointed state could not be encoded, decoded or used (names the node or file).
    #[error("checkpoint state: {0}")]
    State(String),
    /// A checkpoint could not be written, found or restored.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint directory or file at fault.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A library a node runs (an ML stage, say) failed; its error is kept as the source.
    #[error("{what}: {source}")]
    Library {
        /// What was running: the node and the stage or model.
        what: String,
        /// The library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A failure of a crate above the engine (model inference, SQL evaluation), kept whole:
    /// its message is that error's, and its source chain is there to walk or downcast.
    #[error(transparent)]
    External(Box<dyn std::error::Error + Send + Sync>),
    /// Any other failure, with its message.
    #[error("{0}")]
    Other(String),
}

/// Why a job cannot be built: the message names the node, column or parameter at fault; the
/// cause, when a library refused something (a model file, say), is kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    /// What is wrong, and where.
    pub message: String,
    /// The library's error behind it, if any.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl EngineError {
    /// A planning error with its message.
    pub fn plan(message: impl Into<String>) -> Self {
        EngineError::Plan(PlanError {
            message: message.into(),
            source: None,
        })
    }

    /// A planning error caused by `source` (its text usually ends the message too).
    pub fn plan_caused(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        EngineError::Plan(PlanError {
            message: message.into(),
            source: Some(source.into()),
        })
    }

    /// Wrap this error with the name of the node it happened in (once: an error already
    /// naming a node is returned unchanged).
    pub fn in_node(self, node: &str) -> Self {
        match self {
            e @ (EngineError::Node { .. } | EngineError::Cancelled | EngineError::Panic { .. }) => {
                e
            }
            other => EngineError::Node {
                node: node.to_string(),
                source: Box::new(other),
            },
        }
    }

    /// Build an I/O error that names its context (a path, usually).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Shorthand for a planning error.
pub(crate) fn plan_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(EngineError::plan(msg))
}
