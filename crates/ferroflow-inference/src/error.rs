//! The inference crate's error type.

use std::sync::Arc;

use ferroflow_engine::EngineError;

/// A library's error (or a message of ours where there is none), kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A library's error with what was being done (`output 'probabilities'`), so the context is
/// added without turning the error into text.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct Context {
    /// What was being done.
    pub context: String,
    /// The library's error.
    #[source]
    pub source: BoxError,
}

impl Context {
    /// `source` while doing `context`, boxed.
    pub fn boxed(context: impl Into<String>, source: impl Into<BoxError>) -> BoxError {
        Box::new(Context {
            context: context.into(),
            source: source.into(),
        })
    }
}

/// Errors raised while loading models, binding them to columns or running them.
///
/// Each names the node, model file, model input or column at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    /// The ONNX Runtime library could not be loaded or initialised.
    #[error(
        "ONNX Runtime unavailable ({path}): {source}; run scripts/setup-runtimes.sh or set ORT_DYLIB_PATH"
    )]
    RuntimeUnavailable {
        /// The library path tried.
        path: String,
        /// Why (shared: the outcome of loading the library is kept for the process).
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// A model file is missing, unreadable or not a valid model.
    #[error("cannot load model '{path}': {source}")]
    Load {
        /// The model file.
        path: String,
        /// What the file system or the runtime said.
        #[source]
        source: BoxError,
    },
    /// The columns of the stream do not fit the model's inputs (or the declared outputs).
    #[error("node '{node}': {message}")]
    Binding {
        /// The model node.
        node: String,
        /// Names the model input or output and the column at fault.
        message: String,
    },
    /// The model failed while running.
    #[error("model '{model}' failed: {source}")]
    Run {
        /// The model (file or name).
        model: String,
        /// What the runtime said.
        #[source]
        source: BoxError,
    },
    /// An error from the engine (graph building, Arrow kernels).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl InferenceError {
    pub(crate) fn binding(node: &str, message: impl Into<String>) -> Self {
        InferenceError::Binding {
            node: node.to_string(),
            message: message.into(),
        }
    }
}

impl From<InferenceError> for EngineError {
    fn from(e: InferenceError) -> Self {
        match e {
            InferenceError::Engine(e) => e,
            e @ InferenceError::Binding { .. } => EngineError::plan(e.to_string()),
            e => EngineError::External(Box::new(e)),
        }
    }
}

impl From<arrow_schema::ArrowError> for InferenceError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        InferenceError::Engine(EngineError::Arrow(e))
    }
}

/// Result alias for this crate.
pub type Result<T, E = InferenceError> = std::result::Result<T, E>;
