//! Open factories: the source types, sink types and node operations a spec may name.
//!
//! A spec names a source or sink by its `type:` and an extension operation by its key; the
//! compiler looks the name up in [`Factories`] and hands the factory that entry's
//! [`Settings`], which the factory reads into its own typed configuration. Crates above
//! this one (ML stages, the Model Center, Kafka) add their types without this crate knowing
//! them, the way DataFusion takes table provider factories.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferroflow_engine::{DataStream, Sink, Source};

pub use crate::context::BuildContext;
use crate::error::{Result, SpecError};
use crate::spec::{BUILTIN_OPS, Settings};

/// Builds the sources of one `type:`.
pub trait SourceFactory: Send + Sync {
    /// Build the source from the entry's own settings (every key but `name`, `type`,
    /// `watermark`, `processing_time` and `parallelism`, which the compiler applies).
    /// Called once per entry, while the job is built; unknown settings must be refused.
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Source>>;
}

/// Builds the sinks of one `type:`.
pub trait SinkFactory: Send + Sync {
    /// Build the sink from the entry's own settings (every key but `name`, `input` and
    /// `type`). Called once per entry, while the job is built; unknown settings must be
    /// refused.
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>>;
}

/// The streams an extension node reads.
pub struct NodeInputs {
    /// The stream its `input:` names, if it names one.
    pub input: Option<DataStream>,
    /// The streams of [`NodeFactory::extra_inputs`], in that order.
    pub extra: Vec<DataStream>,
}

/// Builds the nodes of one extension operation (a key other than the built-in ones).
pub trait NodeFactory: Send + Sync {
    /// Nodes this node reads besides its `input:` (e.g. a stream of model versions), by
    /// name (`node` or `node.tag`). Called before any node is built, to order them.
    fn extra_inputs(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Vec<String>> {
        let _ = (settings, ctx);
        Ok(Vec::new())
    }

    /// Add the node to the job and return its output stream. Called once, after every
    /// stream it reads is built.
    fn build(
        &self,
        settings: &Settings,
        inputs: NodeInputs,
        ctx: &BuildContext<'_>,
    ) -> Result<DataStream>;
}

/// The source types, sink types and extension operations a spec may name.
#[derive(Clone, Default)]
pub struct Factories {
    sources: BTreeMap<String, Arc<dyn SourceFactory>>,
    sinks: BTreeMap<String, Arc<dyn SinkFactory>>,
    nodes: BTreeMap<String, Arc<dyn NodeFactory>>,
}

impl std::fmt::Debug for Factories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factories")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Factories {
    /// No factories at all (a spec can then use built-in operations only).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Add (or replace) the source type `name`.
    pub fn with_source(mut self, name: &str, factory: Arc<dyn SourceFactory>) -> Self {
        self.sources.insert(name.to_string(), factory);
        self
    }

    /// Add (or replace) the sink type `name`.
    pub fn with_sink(mut self, name: &str, factory: Arc<dyn SinkFactory>) -> Self {
        self.sinks.insert(name.to_string(), factory);
        self
    }

    /// Add (or replace) the extension operation `key`. A built-in operation's key is
    /// refused: the spec would never reach the factory.
    pub fn with_node(mut self, key: &str, factory: Arc<dyn NodeFactory>) -> Result<Self> {
        if BUILTIN_OPS.contains(&key) {
            return Err(SpecError::Registry(format!(
                "'{key}' is a built-in operation and cannot be registered"
            )));
        }
        self.nodes.insert(key.to_string(), factory);
        Ok(self)
    }

    pub(crate) fn source(&self, name: &str) -> std::result::Result<&dyn SourceFactory, String> {
        self.sources
            .get(name)
            .map(|f| f.as_ref())
            .ok_or_else(|| unknown("source type", name, self.sources.keys().map(String::as_str)))
    }

    pub(crate) fn sink(&self, name: &str) -> std::result::Result<&dyn SinkFactory, String> {
        self.sinks
            .get(name)
            .map(|f| f.as_ref())
            .ok_or_else(|| unknown("sink type", name, self.sinks.keys().map(String::as_str)))
    }

    pub(crate) fn node(&self, key: &str) -> std::result::Result<&dyn NodeFactory, String> {
        self.nodes.get(key).map(|f| f.as_ref()).ok_or_else(|| {
            let known = BUILTIN_OPS
                .iter()
                .copied()
                .chain(self.nodes.keys().map(String::as_str));
            unknown("operation", key, known)
        })
    }
}

fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    format!("unknown {what} '{name}' (known: {})", known.join(", "))
}
