//! The job spec document, as deserialised from YAML.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job name.
    pub name: String,
    /// Parallel instances per node (default 1).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Exchange channel bounds.
    #[serde(default)]
    pub channel: Option<ChannelSpec>,
    /// Checkpoints: `{interval: 1s, dir: ckpt, retain: 3}` (dir relative to the spec).
    #[serde(default)]
    pub checkpoint: Option<CheckpointSpec>,
    /// Sources.
    pub sources: Vec<SourceSpec>,
    /// Operators, in any order (each names its input).
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// Sinks.
    pub sinks: Vec<SinkSpec>,
}

/// Checkpointing of a job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// Time between checkpoints, e.g. `1s`.
    pub interval: String,
    /// Directory of the checkpoints (relative to the spec file).
    pub dir: String,
    /// Complete checkpoints kept (default 3).
    #[serde(default)]
    pub retain: Option<usize>,
    /// Number of key groups: the most instances keyed state can be rescaled to (default 128).
    #[serde(default)]
    pub max_parallelism: Option<u32>,
}

/// Channel bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// Most rows buffered per channel.
    pub max_rows: Option<usize>,
    /// Most bytes buffered per channel: a number or `64KiB`, `16MiB`, `1GiB`.
    pub max_bytes: Option<serde_yaml_ng::Value>,
}

/// A column of a declared schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Type: utf8, int64, int32, float64, float32, boolean, timestamp_ms, timestamp_us, date.
    #[serde(rename = "type")]
    pub data_type: String,
    /// May be null (default true).
    #[serde(default)]
    pub nullable: Option<bool>,
}

/// Event time of a source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkSpec {
    /// Event-time column.
    pub column: String,
    /// Bounded out-of-orderness, e.g. `2s` (default 0).
    #[serde(default)]
    pub max_out_of_orderness: Option<String>,
    /// Mark the source idle after this long without data.
    #[serde(default)]
    pub idle_timeout: Option<String>,
}

/// A source: the settings every source has, and its type's own settings.
///
/// `type` (default `file`) picks the [`SourceFactory`](crate::SourceFactory) that reads
/// `settings`, every key not listed here, into its typed configuration (unknown keys are
/// refused there, naming them).
#[derive(Debug, Clone, Deserialize)]
pub struct SourceSpec {
    /// Node name.
    pub name: String,
    /// The source type: `file`, `directory`, `generator` or a registered one.
    #[serde(rename = "type", default = "default_source_type")]
    pub kind: String,
    /// Event time and watermarks.
    #[serde(default)]
    pub watermark: Option<WatermarkSpec>,
    /// Processing time: append a column of this name stamped with the wall clock at read.
    #[serde(default)]
    pub processing_time: Option<String>,
    /// Parallel instances of this source.
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// The type's own settings.
    #[serde(flatten)]
    pub settings: Settings,
}

fn default_source_type() -> String {
    "file".into()
}

/// A time or count window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowOpSpec {
    /// Key columns (absent: one global window stream).
    #[serde(default)]
    pub key_by: Vec<String>,
    /// Event-time column.
    pub time_column: Option<String>,
    /// Tumbling size, e.g. `10s`.
    pub tumbling: Option<String>,
    /// Sliding window.
    pub sliding: Option<SlidingSpec>,
    /// Session gap.
    pub session: Option<String>,
    /// Count window size.
    pub count: Option<usize>,
    /// Allowed lateness.
    pub allowed_lateness: Option<String>,
    /// drop (default) or side_output.
    pub late: Option<String>,
    /// Aggregates such as `count(*) AS n`, `sum(amount) AS total`.
    pub aggregates: Vec<String>,
}

/// Sliding window size and slide.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlidingSpec {
    /// Window length.
    pub size: String,
    /// Distance between starts.
    pub slide: String,
}

/// A keyed aggregation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateOpSpec {
    /// Key columns.
    pub key_by: Vec<String>,
    /// Aggregates.
    pub aggregates: Vec<String>,
}

/// A join.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinOpSpec {
    /// Left (build) input.
    pub left: String,
    /// Right (probe) input.
    pub right: String,
    /// Left key columns.
    pub left_keys: Vec<String>,
    /// Right key columns.
    pub right_keys: Vec<String>,
    /// inner (default) or left.
    #[serde(rename = "type")]
    pub join_type: Option<String>,
    /// Interval join: left and right time columns and bounds.
    pub interval: Option<IntervalSpec>,
}

/// Interval join bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalSpec {
    /// Left time column.
    pub left_time: String,
    /// Right time column.
    pub right_time: String,
    /// Lower bound, e.g. `-5s`.
    pub lower: String,
    /// Upper bound, e.g. `5s`.
    pub upper: String,
}

/// Top-N.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopNSpec {
    /// How many rows.
    pub n: usize,
    /// Sort keys, e.g. `total DESC`.
    pub by: Vec<String>,
}

/// One operator node: its name, its input and exactly one operation.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Input node (`node` or `node.side_output`); joins, unions and SQL name theirs inside.
    #[serde(default)]
    pub input: Option<String>,
    /// Parallel instances.
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// The operation: every key other than the three above, which must be exactly one.
    #[serde(flatten)]
    pub op: NodeOp,
}

/// The operation of a node, named by its key in the spec.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeOp {
    /// `filter`: keep rows matching a SQL predicate.
    Filter(String),
    /// `select`: SQL expressions to compute.
    Select(Vec<String>),
    /// `window`: window aggregation.
    Window(WindowOpSpec),
    /// `aggregate`: keyed aggregation (final result on bounded input, updates on unbounded).
    Aggregate(AggregateOpSpec),
    /// `union`: merge several inputs.
    Union(Vec<String>),
    /// `join`: join two inputs.
    Join(JoinOpSpec),
    /// `sort`: sort (bounded input).
    Sort(Vec<String>),
    /// `top_n`: top-N (bounded input).
    TopN(TopNSpec),
    /// `sql`: a streaming SQL window query over other nodes (by name).
    Sql(String),
    /// `predict`: append an ONNX model's outputs to every row.
    Predict(PredictSpec),
    /// Any other key: an operation of a registered [`NodeFactory`](crate::NodeFactory).
    Extension {
        /// The key, e.g. `ml`.
        op: String,
        /// Its value, read by the factory.
        settings: Settings,
    },
}

/// The built-in operations, by key.
pub const BUILTIN_OPS: &[&str] = &[
    "filter",
    "select",
    "window",
    "aggregate",
    "union",
    "join",
    "sort",
    "top_n",
    "sql",
    "predict",
];

impl NodeOp {
    /// The key naming this operation in the spec.
    pub fn key(&self) -> &str {
        match self {
            NodeOp::Filter(_) => "filter",
            NodeOp::Select(_) => "select",
            NodeOp::Window(_) => "window",
            NodeOp::Aggregate(_) => "aggregate",
            NodeOp::Union(_) => "union",
            NodeOp::Join(_) => "join",
            NodeOp::Sort(_) => "sort",
            NodeOp::TopN(_) => "top_n",
            NodeOp::Sql(_) => "sql",
            NodeOp::Predict(_) => "predict",
            NodeOp::Extension { op, .. } => op,
        }
    }
}

impl<'de> Deserialize<'de> for NodeOp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(OpVisitor)
    }
}

struct OpVisitor;

impl<'de> serde::de::Visitor<'de> for OpVisitor {
    type Value = NodeOp;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "one operation ({})", BUILTIN_OPS.join(", "))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NodeOp, A::Error> {
        use serde::de::Error;
        let mut op: Option<NodeOp> = None;
        while let Some(key) = map.next_key::<String>()? {
            let next = match key.as_str() {
                "filter" => NodeOp::Filter(map.next_value()?),
                "select" => NodeOp::Select(map.next_value()?),
                "window" => NodeOp::Window(map.next_value()?),
                "aggregate" => NodeOp::Aggregate(map.next_value()?),
                "union" => NodeOp::Union(map.next_value()?),
                "join" => NodeOp::Join(map.next_value()?),
                "sort" => NodeOp::Sort(map.next_value()?),
                "top_n" => NodeOp::TopN(map.next_value()?),
                "sql" => NodeOp::Sql(map.next_value()?),
                "predict" => NodeOp::Predict(map.next_value()?),
                _ => NodeOp::Extension {
                    settings: Settings(map.next_value()?),
                    op: key,
                },
            };
            if let Some(first) = &op {
                return Err(A::Error::custom(format!(
                    "a node has exactly one operation, found '{}' and '{}'",
                    first.key(),
                    next.key()
                )));
            }
            op = Some(next);
        }
        op.ok_or_else(|| {
            A::Error::custom(format!(
                "a node needs one operation ({})",
                BUILTIN_OPS.join(", ")
            ))
        })
    }
}

/// Settings a factory reads into its own typed configuration: the keys of a source or sink
/// beyond the common ones, or the value of an extension operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings(pub serde_yaml_ng::Value);

impl<'de> Deserialize<'de> for Settings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_yaml_ng::Value::deserialize(d).map(Settings)
    }
}

impl Settings {
    /// Read the settings as `T`; an error names the field at fault (`columns[2].kind: ...`).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let value = match &self.0 {
            // No keys at all arrives as unit from a flattened map.
            serde_yaml_ng::Value::Null => {
                serde_yaml_ng::Value::Mapping(serde_yaml_ng::Mapping::new())
            }
            v => v.clone(),
        };
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            }
        })
    }
}

/// Model batching settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// Largest model call, rows.
    pub max_rows: Option<usize>,
    /// Smallest model call aimed for, rows.
    pub min_rows: Option<usize>,
    /// Aim for model calls of about this long, e.g. `10ms`.
    pub target_latency: Option<String>,
    /// Longest a row waits for others while input keeps coming, e.g. `50ms`.
    pub max_latency: Option<String>,
}

/// A model node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictSpec {
    /// The `.onnx` file (relative to the spec file).
    pub model: String,
    /// Model input -> columns (one vector column, or scalar columns stacked). Inputs not
    /// listed take the column of their own name.
    #[serde(default)]
    pub inputs: BTreeMap<String, Vec<String>>,
    /// Model output -> column name (absent: every output under its own name).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// A node whose rows (`version`, `uri`) replace the model while the job runs.
    pub versions: Option<String>,
    /// Add a column with the model version that scored each row.
    pub version_column: Option<String>,
    /// Batching.
    pub batch: Option<BatchSpec>,
    /// ONNX Runtime threads per call (default 1).
    pub intra_threads: Option<usize>,
}

/// A sink: its name, input and type, and its type's own settings (see [`SourceSpec`]).
#[derive(Debug, Clone, Deserialize)]
pub struct SinkSpec {
    /// Node name.
    pub name: String,
    /// Input node (`node` or `node.side_output`).
    pub input: String,
    /// The sink type: `file` (default), `print` or a registered one.
    #[serde(rename = "type", default = "default_sink_type")]
    pub kind: String,
    /// The type's own settings.
    #[serde(flatten)]
    pub settings: Settings,
}

fn default_sink_type() -> String {
    "file".into()
}
