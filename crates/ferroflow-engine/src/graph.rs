//! Building jobs: the [`JobBuilder`], [`DataStream`] and the validated [`JobGraph`].
//!
//! Every method that adds a node checks the schemas it connects right away, so a mismatch
//! fails while the job is being built, naming both nodes, never while it runs.

use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use parking_lot::Mutex;

use crate::channel::ChannelBound;
use crate::checkpoint::{CheckpointConfig, DEFAULT_MAX_PARALLELISM};
use crate::connector::{Sink, Source};
use crate::error::{EngineError, Result, plan_err};
use crate::operator::OperatorFactory;
use crate::time::{WatermarkStrategy, column_names};

/// Index of a node in its job.
pub type NodeId = usize;

/// How rows travel from one node's instances to the next node's instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partitioning {
    /// Instance i feeds instance i when the parallelisms match, round robin otherwise.
    Auto,
    /// Round robin over all downstream instances.
    Rebalance,
    /// By hash of these column indices: equal keys meet in the same instance.
    Hash(Vec<usize>),
    /// Every row to every downstream instance.
    Broadcast,
    /// Everything to instance 0 (for global sorts and top-N).
    Single,
}

/// Settings of one job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Parallel instances of each node unless the node says otherwise.
    pub parallelism: usize,
    /// Bound of every exchange channel.
    pub channel_bound: ChannelBound,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            parallelism: 1,
            channel_bound: ChannelBound::default(),
        }
    }
}

pub(crate) enum NodeKind {
    Source {
        source: Arc<dyn Source>,
        time: SourceTime,
    },
    Operator {
        factory: Arc<dyn OperatorFactory>,
    },
    Sink {
        sink: Arc<dyn Sink>,
    },
}

/// How a source derives time.
#[derive(Debug, Clone, Default)]
pub(crate) enum SourceTime {
    /// No event time: watermarks only at end of input.
    #[default]
    None,
    /// Event time from a column, with this strategy.
    Event(WatermarkStrategy),
    /// Processing time: the source appends a column stamped with the wall clock when each
    /// batch is read, and watermarks follow the wall clock (also while idle).
    Ingestion,
}

/// An edge into a node.
#[derive(Debug, Clone)]
pub(crate) struct InputEdge {
    pub(crate) from: NodeId,
    /// `None`: the main output; `Some(tag)`: a side output.
    pub(crate) tag: Option<String>,
    pub(crate) partitioning: Partitioning,
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parallelism: Option<usize>,
    /// Forced to 1 (global sort, top-N).
    pub(crate) single: bool,
    pub(crate) inputs: Vec<InputEdge>,
    pub(crate) schema: SchemaRef,
    pub(crate) side_outputs: Vec<(String, SchemaRef)>,
}

pub(crate) struct GraphInner {
    pub(crate) name: String,
    pub(crate) config: JobConfig,
    pub(crate) nodes: Vec<Node>,
    pub(crate) checkpoint: Option<CheckpointConfig>,
    pub(crate) max_parallelism: u32,
}

impl GraphInner {
    fn add(&mut self, node: Node) -> Result<NodeId> {
        if node.name.is_empty() {
            return plan_err("a node needs a non-empty name");
        }
        if self.nodes.iter().any(|n| n.name == node.name) {
            return plan_err(format!(
                "two nodes are named '{}'; node names must be unique in a job",
                node.name
            ));
        }
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn is_bounded_upstream(&self, id: NodeId) -> bool {
        let node = &self.nodes[id];
        match &node.kind {
            NodeKind::Source { source, .. } => source.is_bounded(),
            _ => node.inputs.iter().all(|e| self.is_bounded_upstream(e.from)),
        }
    }
}

/// Builds a job: add sources, chain operators on the streams they return, end in sinks.
pub struct JobBuilder {
    inner: Arc<Mutex<GraphInner>>,
}

impl JobBuilder {
    /// A new job named `name` with default settings.
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_config(name, JobConfig::default())
    }

    /// A new job with explicit settings.
    pub fn with_config(name: impl Into<String>, config: JobConfig) -> Self {
        JobBuilder {
            inner: Arc::new(Mutex::new(GraphInner {
                name: name.into(),
                config,
                nodes: Vec::new(),
                checkpoint: None,
                max_parallelism: DEFAULT_MAX_PARALLELISM,
            })),
        }
    }

    /// Take checkpoints (and restore from them at start) as `config` says.
    pub fn with_checkpointing(self, config: CheckpointConfig) -> Self {
        self.inner.lock().checkpoint = Some(config);
        self
    }

    /// Number of key groups (the most parallel instances keyed state can be restored at;
    /// default 128). Must stay the same across restores.
    pub fn with_max_parallelism(self, n: u32) -> Self {
        self.inner.lock().max_parallelism = n;
        self
    }

    /// Add a source node.
    pub fn source(&self, name: impl Into<String>, source: Arc<dyn Source>) -> Result<DataStream> {
        let name = name.into();
        source.validate().map_err(|e| e.in_node(&name))?;
        let schema = source.schema();
        let id = self.inner.lock().add(Node {
            name,
            kind: NodeKind::Source {
                source,
                time: SourceTime::None,
            },
            parallelism: None,
            single: false,
            inputs: Vec::new(),
            schema: schema.clone(),
            side_outputs: Vec::new(),
        })?;
        Ok(DataStream {
            graph: self.inner.clone(),
            node: id,
            tag: None,
            schema,
            partitioning: Partitioning::Auto,
        })
    }

    /// Finish building. Fails if no sink was added or if a stream is left dangling with
    /// nothing reading it from a node that has no other consumer.
    pub fn build(self) -> Result<JobGraph> {
        let inner = std::mem::replace(
            &mut *self.inner.lock(),
            GraphInner {
                name: String::new(),
                config: JobConfig::default(),
                nodes: Vec::new(),
                checkpoint: None,
                max_parallelism: DEFAULT_MAX_PARALLELISM,
            },
        );
        if inner.config.parallelism == 0 {
            return plan_err("job parallelism must be at least 1");
        }
        if inner.max_parallelism == 0 || inner.max_parallelism > 32_768 {
            return plan_err(format!(
                "max parallelism {} is outside 1..=32768",
                inner.max_parallelism
            ));
        }
        if !inner
            .nodes
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Sink { .. }))
        {
            return plan_err(format!("job '{}' has no sink", inner.name));
        }
        for (id, node) in inner.nodes.iter().enumerate() {
            if matches!(node.kind, NodeKind::Sink { .. }) {
                continue;
            }
            let consumed = inner
                .nodes
                .iter()
                .any(|n| n.inputs.iter().any(|e| e.from == id && e.tag.is_none()));
            if !consumed {
                return plan_err(format!(
                    "the output of node '{}' goes nowhere; connect it to a sink",
                    node.name
                ));
            }
        }
        Ok(JobGraph { inner })
    }
}

/// A validated job, ready to run on a [`crate::Runtime`].
pub struct JobGraph {
    pub(crate) inner: GraphInner,
}

impl JobGraph {
    /// The job's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `true` when every source is bounded: the job ends by itself.
    pub fn is_bounded(&self) -> bool {
        self.inner.nodes.iter().all(|n| match &n.kind {
            NodeKind::Source { source, .. } => source.is_bounded(),
            _ => true,
        })
    }

    /// Checkpointing settings, if any.
    pub fn checkpointing(&self) -> Option<&CheckpointConfig> {
        self.inner.checkpoint.as_ref()
    }

    /// Replace the checkpointing settings (e.g. from command-line flags).
    pub fn set_checkpointing(&mut self, config: Option<CheckpointConfig>) {
        self.inner.checkpoint = config;
    }

    /// Node names in the order they were added.
    pub fn node_names(&self) -> Vec<String> {
        self.inner.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Effective parallelism of a node.
    pub(crate) fn parallelism(&self, id: NodeId) -> usize {
        let n = &self.inner.nodes[id];
        if n.single {
            1
        } else {
            n.parallelism.unwrap_or(self.inner.config.parallelism)
        }
    }
}

/// A stream of record batches produced by one node, to which more nodes can be attached.
#[derive(Clone)]
pub struct DataStream {
    graph: Arc<Mutex<GraphInner>>,
    node: NodeId,
    tag: Option<String>,
    schema: SchemaRef,
    partitioning: Partitioning,
}

impl std::fmt::Debug for DataStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStream")
            .field("node", &self.node_name())
            .field("tag", &self.tag)
            .field("schema", &self.schema)
            .finish()
    }
}

impl DataStream {
    /// Schema of the rows in this stream.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Name of the node producing this stream.
    pub fn node_name(&self) -> String {
        self.graph.lock().nodes[self.node].name.clone()
    }

    /// `true` if every source upstream of this stream is bounded.
    pub fn is_bounded(&self) -> bool {
        self.graph.lock().is_bounded_upstream(self.node)
    }

    /// Set the parallelism of the node producing this stream.
    pub fn parallelism(self, n: usize) -> Result<Self> {
        if n == 0 {
            return plan_err(format!(
                "node '{}': parallelism must be at least 1",
                self.node_name()
            ));
        }
        self.graph.lock().nodes[self.node].parallelism = Some(n);
        Ok(self)
    }

    /// How many instances the node producing this stream runs (its own parallelism or the
    /// job's default).
    pub fn current_parallelism(&self) -> usize {
        let g = self.graph.lock();
        let n = &g.nodes[self.node];
        if n.single {
            1
        } else {
            n.parallelism.unwrap_or(g.config.parallelism).max(1)
        }
    }

    /// Derive watermarks at this source from an event-time column.
    pub fn with_watermarks(self, strategy: WatermarkStrategy) -> Result<Self> {
        {
            let mut g = self.graph.lock();
            let node = &mut g.nodes[self.node];
            crate::time::time_column_index(&node.schema, &strategy.time_column, &node.name)?;
            match &mut node.kind {
                NodeKind::Source { time, .. } => *time = SourceTime::Event(strategy),
                _ => {
                    return plan_err(format!(
                        "node '{}': watermarks are assigned at sources; '{}' is not a source",
                        node.name, node.name
                    ));
                }
            }
        }
        Ok(self)
    }

    /// Use processing time at this source: a timestamp column `column` (milliseconds) is
    /// appended, stamped with the wall clock when each batch is read, and watermarks follow
    /// the wall clock, also while no data arrives, so processing-time windows close on time.
    pub fn with_processing_time(mut self, column: &str) -> Result<Self> {
        {
            let mut g = self.graph.lock();
            let node = &mut g.nodes[self.node];
            if !matches!(node.kind, NodeKind::Source { .. }) {
                return plan_err(format!(
                    "node '{}': processing time is assigned at sources",
                    node.name
                ));
            }
            if node.schema.index_of(column).is_ok() {
                return plan_err(format!(
                    "node '{}': column '{column}' already exists; pick another name for the processing time",
                    node.name
                ));
            }
            let mut fields: Vec<arrow_schema::FieldRef> =
                node.schema.fields().iter().cloned().collect();
            fields.push(Arc::new(arrow_schema::Field::new(
                column,
                arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None),
                false,
            )));
            node.schema = Arc::new(Schema::new(fields));
            if let NodeKind::Source { time, .. } = &mut node.kind {
                *time = SourceTime::Ingestion;
            }
            self.schema = node.schema.clone();
        }
        Ok(self)
    }

    /// Send rows round robin to the next node's instances.
    pub fn rebalance(mut self) -> Self {
        self.partitioning = Partitioning::Rebalance;
        self
    }

    /// Send every row to every instance of the next node.
    pub fn broadcast(mut self) -> Self {
        self.partitioning = Partitioning::Broadcast;
        self
    }

    /// Partition by the hash of `columns`: rows with equal keys reach the same instance.
    pub fn key_by(mut self, columns: &[&str]) -> Result<KeyedStream> {
        let keys = self.column_indices(columns, "key_by")?;
        if keys.is_empty() {
            return plan_err(format!(
                "key_by after node '{}' needs at least one column",
                self.node_name()
            ));
        }
        self.partitioning = Partitioning::Hash(keys.clone());
        Ok(KeyedStream { stream: self, keys })
    }

    /// Indices of `columns` in this stream's schema; an unknown name fails, naming the node.
    pub fn column_indices(&self, columns: &[&str], what: &str) -> Result<Vec<usize>> {
        columns
            .iter()
            .map(|c| {
                self.schema.index_of(c).map_err(|_| {
                    EngineError::plan(format!(
                        "{what}: column '{c}' not found in the output of node '{}' (columns: {})",
                        self.node_name(),
                        column_names(&self.schema)
                    ))
                })
            })
            .collect()
    }

    /// A named side output of the node producing this stream (e.g. `late`).
    pub fn side_output(&self, tag: &str) -> Result<DataStream> {
        let g = self.graph.lock();
        let node = &g.nodes[self.node];
        let schema = node
            .side_outputs
            .iter()
            .find(|(t, _)| t == tag)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| {
                EngineError::plan(format!(
                    "node '{}' has no side output '{tag}' (it has: [{}])",
                    node.name,
                    node.side_outputs
                        .iter()
                        .map(|(t, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        Ok(DataStream {
            graph: self.graph.clone(),
            node: self.node,
            tag: Some(tag.to_string()),
            schema,
            partitioning: Partitioning::Auto,
        })
    }

    fn edge(&self) -> InputEdge {
        InputEdge {
            from: self.node,
            tag: self.tag.clone(),
            partitioning: self.partitioning.clone(),
        }
    }

    /// Attach an operator made by `factory` to this stream.
    pub fn transform(
        &self,
        name: impl Into<String>,
        factory: Arc<dyn OperatorFactory>,
    ) -> Result<DataStream> {
        self.add_operator(name.into(), &[], factory, false)
    }

    /// Attach an operator with several inputs: this stream is input 0, `others` follow.
    pub fn transform_multi(
        &self,
        name: impl Into<String>,
        others: &[&DataStream],
        factory: Arc<dyn OperatorFactory>,
    ) -> Result<DataStream> {
        self.add_operator(name.into(), others, factory, false)
    }

    /// Attach an operator that must run as a single instance (global sort, top-N).
    pub fn transform_single(
        &self,
        name: impl Into<String>,
        factory: Arc<dyn OperatorFactory>,
    ) -> Result<DataStream> {
        let mut me = self.clone();
        me.partitioning = Partitioning::Single;
        me.add_operator(name.into(), &[], factory, true)
    }

    /// Attach an operator with several inputs that must run as a single instance (a
    /// global window that other streams update): this stream is input 0, `others` follow.
    pub fn transform_multi_single(
        &self,
        name: impl Into<String>,
        others: &[&DataStream],
        factory: Arc<dyn OperatorFactory>,
    ) -> Result<DataStream> {
        let mut me = self.clone();
        me.partitioning = Partitioning::Single;
        me.add_operator(name.into(), others, factory, true)
    }

    fn add_operator(
        &self,
        name: String,
        others: &[&DataStream],
        factory: Arc<dyn OperatorFactory>,
        single: bool,
    ) -> Result<DataStream> {
        let mut inputs = vec![self.edge()];
        for o in others {
            if !Arc::ptr_eq(&o.graph, &self.graph) {
                return plan_err(format!(
                    "node '{name}': its inputs belong to different jobs"
                ));
            }
            let mut e = o.edge();
            if single {
                e.partitioning = Partitioning::Single;
            }
            inputs.push(e);
        }
        let schema = factory.output_schema();
        let side_outputs = factory.side_outputs();
        let id = self.graph.lock().add(Node {
            name,
            kind: NodeKind::Operator { factory },
            parallelism: None,
            single,
            inputs,
            schema: schema.clone(),
            side_outputs,
        })?;
        Ok(DataStream {
            graph: self.graph.clone(),
            node: id,
            tag: None,
            schema,
            partitioning: Partitioning::Auto,
        })
    }

    /// End this stream in a sink.
    pub fn sink(&self, name: impl Into<String>, sink: Arc<dyn Sink>) -> Result<()> {
        let name = name.into();
        sink.check_schema(&self.schema).map_err(|e| {
            EngineError::plan(format!(
                "sink '{name}' does not accept the output of node '{}': {e}",
                self.node_name()
            ))
        })?;
        let parallelism = sink.parallelism_hint();
        self.graph.lock().add(Node {
            name,
            kind: NodeKind::Sink { sink },
            parallelism,
            single: false,
            inputs: vec![self.edge()],
            schema: self.schema.clone(),
            side_outputs: Vec::new(),
        })?;
        Ok(())
    }
}

/// A stream partitioned by key columns; keyed aggregations and windows hang off it.
#[derive(Clone)]
pub struct KeyedStream {
    pub(crate) stream: DataStream,
    pub(crate) keys: Vec<usize>,
}

impl KeyedStream {
    /// The underlying (hash-partitioned) stream.
    pub fn stream(&self) -> &DataStream {
        &self.stream
    }

    /// Key column indices in the stream's schema.
    pub fn keys(&self) -> &[usize] {
        &self.keys
    }

    /// Schema of the stream.
    pub fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }
}

/// Check that two schemas have the same column names and types, naming both producers.
pub fn check_same_schema(
    a: &Schema,
    a_node: &str,
    b: &Schema,
    b_node: &str,
    what: &str,
) -> Result<()> {
    let same = a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields().iter())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type());
    if same {
        Ok(())
    } else {
        plan_err(format!(
            "{what}: the output of '{a_node}' ({}) does not match the output of '{b_node}' ({})",
            describe(a),
            describe(b)
        ))
    }
}

fn describe(s: &Schema) -> String {
    s.fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}
