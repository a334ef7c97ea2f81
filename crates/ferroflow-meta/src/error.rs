//! Errors of the control-plane store.

/// What went wrong, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// The named thing does not exist.
    #[error("{kind} '{name}' not found")]
    NotFound {
        /// What kind of thing (model, model version, ...).
        kind: &'static str,
        /// Its name or key.
        name: String,
    },
    /// It exists already.
    #[error("{kind} '{name}' already exists")]
    AlreadyExists {
        /// What kind of thing.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// A model version cannot move from its stage to the requested one.
    #[error(
        "model '{model}' version {version}: cannot go from {from} to {to} (allowed from {from}: {allowed})"
    )]
    InvalidTransition {
        /// Model name.
        model: String,
        /// Version number.
        version: i64,
        /// Current stage.
        from: String,
        /// Requested stage.
        to: String,
        /// Stages reachable from `from`.
        allowed: String,
    },
    /// A value is out of its domain (empty name, unknown stage, bad JSON, ...).
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The request conflicts with the current state (stale revision, owned records).
    #[error("{0}")]
    Conflict(String),
    /// The store cannot take the request now (its writer failed or stopped); retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database failed.
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    /// A file of the store (an artifact) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for the store.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;
