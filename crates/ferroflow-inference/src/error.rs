//! The inference crate's error type.

use ferroflow_engine::EngineError;

/// Errors raised while loading models, binding them to columns or running them.
///
/// Each names the node, model file, model input or column at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferenceError {
    /// The ONNX Runtime library could not be loaded or initialised.
    #[error(
        "ONNX Runtime unavailable ({path}): {message}; run scripts/setup-runtimes.sh or set ORT_DYLIB_PATH"
    )]
    RuntimeUnavailable {
        /// The library path tried.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A model file is missing, unreadable or not a valid model.
    #[error("cannot load model '{path}': {message}")]
    Load {
        /// The model file.
        path: String,
        /// What the runtime said.
        message: String,
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
    #[error("model '{model}' failed: {message}")]
    Run {
        /// The model (file or name).
        model: String,
        /// The runtime's message.
        message: String,
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
            e @ InferenceError::Binding { .. } => EngineError::Plan(e.to_string()),
            e => EngineError::Other(e.to_string()),
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
