//! Errors of the job spec: where in the file, which node, what is wrong.

/// A job spec that cannot be read, parsed or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The spec file.
        file: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not parse or does not fit the spec's shape.
    #[error("{file}:{line}:{column}: {message}")]
    Yaml {
        /// The spec file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The spec is well-formed but describes an invalid job.
    #[error("{file}{}: node '{node}': {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The spec file.
        file: String,
        /// Line of the node's `name:`, when found.
        line: Option<usize>,
        /// The node at fault.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// The library building a node's part of the job (engine, SQL, inference, file
    /// formats) refused it; its error is the source.
    #[error("{file}{}: node '{node}': {source}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Node {
        /// The spec file.
        file: String,
        /// Line of the node's `name:`, when found.
        line: Option<usize>,
        /// The node at fault.
        node: String,
        /// The library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A factory could not be registered.
    #[error("{0}")]
    Registry(String),
}

/// Result alias for job specs.
pub type Result<T, E = SpecError> = std::result::Result<T, E>;
