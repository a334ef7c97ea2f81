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
    #[error("{path}: {source}")]
    Format {
        /// The path.
        path: String,
        /// What is wrong: the decoder's error (Arrow, Parquet, JSON), or our message.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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

    pub(crate) fn format(path: impl std::fmt::Display, source: impl Into<BoxError>) -> Self {
        ConnectorError::Format {
            path: path.to_string(),
            source: source.into(),
        }
    }
}

impl From<ConnectorError> for EngineError {
    fn from(e: ConnectorError) -> Self {
        EngineError::Connector(Box::new(e))
    }
}

/// A library's error (or a message of ours), kept as a source.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Result alias for connectors.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
