//! Errors of the `flink` job type.

/// What went wrong talking to Flink or translating a job for it.
#[derive(Debug, thiserror::Error)]
pub enum FlinkError {
    /// The cluster did not answer (down, wrong address).
    #[error("the Flink cluster at {url} is unreachable: {message}")]
    Unreachable {
        /// The REST URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The REST API answered with an error.
    #[error("Flink REST {method} {path} answered {status}: {message}")]
    Api {
        /// HTTP method.
        method: &'static str,
        /// Path called.
        path: String,
        /// HTTP status.
        status: u16,
        /// Flink's `errors`, joined.
        message: String,
    },
    /// A node cannot run on Flink.
    #[error("node '{node}' ({kind}) cannot run on Flink: {message}")]
    Untranslatable {
        /// The node.
        node: String,
        /// Its kind.
        kind: String,
        /// Why.
        message: String,
    },
    /// The job's settings are wrong.
    #[error("{0}")]
    Config(String),
    /// The Flink job failed; the message is Flink's exception.
    #[error("the Flink job {job_id} {state}: {message}")]
    JobFailed {
        /// Flink's job id.
        job_id: String,
        /// Its final state.
        state: String,
        /// Flink's exception text (root cause first).
        message: String,
    },
    /// A local file.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        message: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, FlinkError>;
