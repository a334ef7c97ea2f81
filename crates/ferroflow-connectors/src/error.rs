//! Errors of sources and sinks.

use ferroflow_engine::EngineError;

/// A connector failure, naming the file, line and column at fault where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// A row could not be decoded.
    #[error("{file}:{line}: column '{column}': {reason}")]
    BadRow {
        /// File the row came from.
        file: String,
        /// 1-based line number.
        line: u64,
        /// Column name (or position when the file has no header).
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not in the expected format.
    #[error("{path}: {message}")]
    Format {
        /// The path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The connector is misconfigured.
    #[error("{0}")]
    Config(String),
}

impl ConnectorError {
    pub(crate) fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        ConnectorError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn format(path: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        ConnectorError::Format {
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

impl From<ConnectorError> for EngineError {
    fn from(e: ConnectorError) -> Self {
        EngineError::Connector(e.to_string())
    }
}

/// Result alias for connectors.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
