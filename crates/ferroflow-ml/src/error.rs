//! The ML library's error type.

/// Errors of stages, params, vectors and model files. Each names the param, column, row or
/// file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlError {
    /// A param is unknown, of the wrong type, or fails its validator.
    #[error("param '{param}': {message}")]
    Param {
        /// The param's name, as Flink ML spells it.
        param: String,
        /// What is wrong, with the allowed values.
        message: String,
    },
    /// A column is missing or of the wrong type.
    #[error("column '{column}': {message}")]
    Column {
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A row's value is invalid (null, NaN, wrong vector size), per `handleInvalid`.
    #[error("row {row}: {message}")]
    Row {
        /// Index of the row in the input.
        row: usize,
        /// What is wrong.
        message: String,
    },
    /// A class name no stage has.
    #[error("unknown stage class '{0}'")]
    UnknownStage(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What went wrong: the file system's, parser's or decoder's error, or our message.
        #[source]
        source: BoxError,
    },
    /// A library a stage runs failed (DataFusion for SQLTransformer, say); its error is kept.
    #[error("{what}: {source}")]
    Library {
        /// The stage or step.
        what: String,
        /// The library's error.
        #[source]
        source: BoxError,
    },
    /// Anything else wrong with the input (an empty training table, say).
    #[error("{0}")]
    Invalid(String),
    /// An Arrow kernel failed.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A model data file could not be read (corrupt, unsupported).
    #[error(transparent)]
    File(#[from] ferroflow_connectors::ConnectorError),
}

impl MlError {
    pub(crate) fn param(param: &str, message: impl Into<String>) -> Self {
        MlError::Param {
            param: param.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn column(column: &str, message: impl Into<String>) -> Self {
        MlError::Column {
            column: column.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl std::fmt::Display, source: impl Into<BoxError>) -> Self {
        MlError::Io {
            path: path.to_string(),
            source: source.into(),
        }
    }

    /// `source`, a library's error, while running `what`.
    pub fn library(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        MlError::Library {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// An error kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result alias for this crate.
pub type Result<T, E = MlError> = std::result::Result<T, E>;
