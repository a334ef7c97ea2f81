//! Errors of the SQL layer.

use datafusion::error::DataFusionError;
use ferroflow_engine::EngineError;

/// A SQL failure: the query or expression, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// DataFusion refused or failed the statement.
    #[error("{context}: {source}")]
    DataFusion {
        /// The statement or expression at fault.
        context: String,
        /// DataFusion's error.
        #[source]
        source: Box<DataFusionError>,
    },
    /// The statement cannot run as a streaming job (unsupported construct).
    #[error("streaming SQL: {0}")]
    Unsupported(String),
    /// Building the engine job failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A table could not be registered.
    #[error("{0}")]
    Table(String),
}

impl SqlError {
    pub(crate) fn df(context: impl Into<String>, source: DataFusionError) -> Self {
        SqlError::DataFusion {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

impl From<SqlError> for EngineError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Engine(e) => e,
            other => {
                let message = other.to_string();
                EngineError::plan_caused(message, other)
            }
        }
    }
}

/// Result alias for the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;
