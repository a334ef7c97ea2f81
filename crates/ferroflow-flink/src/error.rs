//! Errors of the `flink` job type.

/// What went wrong talking to Flink or translating a job for it.
#[derive(Debug, thiserror::Error)]
pub enum FlinkError {
    /// The cluster did not answer (down, wrong address).
    #[error("the Flink cluster at {url} is unreachable: {}", causes(source))]
    Unreachable {
        /// The REST URL.
        url: String,
        /// The request that got no answer, and why.
        #[source]
        source: ferroflow_api::TransportError,
    },
    /// The cluster stopped answering while a job ran, for longer than the job allows.
    #[error(
        "the Flink cluster at {url} is unreachable: no answer for {silent:?} while Flink job {job_id} ran ({source})"
    )]
    Lost {
        /// The REST URL.
        url: String,
        /// Flink's job id.
        job_id: String,
        /// How long it has not answered.
        silent: std::time::Duration,
        /// The last unanswered request.
        #[source]
        source: Box<FlinkError>,
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
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// An error and its causes, `: `-separated (for messages stored as text, e.g. a job
/// execution's error).
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, FlinkError>;
