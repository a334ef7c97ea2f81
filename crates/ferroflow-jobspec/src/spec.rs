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

/// A generated column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenColumnSpec {
    /// Column name.
    pub name: String,
    /// sequence, int, float, choice, event_time.
    pub kind: String,
    /// Bounds for int and float.
    pub min: Option<f64>,
    /// Bounds for int and float.
    pub max: Option<f64>,
    /// Values for choice.
    pub values: Option<Vec<String>>,
    /// Event time of row 0, ms.
    pub start_ms: Option<i64>,
    /// Event time step between rows, ms.
    pub step_ms: Option<i64>,
    /// Largest out-of-order delay, ms.
    pub max_disorder_ms: Option<i64>,
}

/// A source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Node name.
    pub name: String,
    /// file, directory, generator.
    #[serde(rename = "type", default = "default_source_type")]
    pub kind: String,
    /// File or directory path (relative to the spec file).
    pub path: Option<String>,
    /// csv, tsv, json, parquet, arrow (default: from the extension).
    pub format: Option<String>,
    /// Declared schema (inferred from files when absent).
    pub schema: Option<Vec<ColumnSpec>>,
    /// Rows per batch.
    pub batch_size: Option<usize>,
    /// Malformed rows go to this JSON-lines file instead of failing the job.
    pub dead_letter: Option<String>,
    /// Event time and watermarks.
    pub watermark: Option<WatermarkSpec>,
    /// Processing time: append a column of this name stamped with the wall clock at read.
    pub processing_time: Option<String>,
    /// Directory watch: how often to list the directory.
    pub poll_interval: Option<String>,
    /// Parallel instances of this source.
    pub parallelism: Option<usize>,
    /// Generator: rows in all (absent: unbounded).
    pub rows: Option<u64>,
    /// Generator: rows per second.
    pub rate: Option<f64>,
    /// Generator: seed.
    pub seed: Option<u64>,
    /// Generator: columns.
    pub columns: Option<Vec<GenColumnSpec>>,
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
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// Input node (`node` or `node.side_output`); joins, unions and SQL name theirs inside.
    pub input: Option<String>,
    /// Parallel instances.
    pub parallelism: Option<usize>,
    /// Keep rows matching a SQL predicate.
    pub filter: Option<String>,
    /// SQL expressions to compute.
    pub select: Option<Vec<String>>,
    /// Window aggregation.
    pub window: Option<WindowOpSpec>,
    /// Keyed aggregation (final result on bounded input, updates on unbounded).
    pub aggregate: Option<AggregateOpSpec>,
    /// Merge several inputs.
    pub union: Option<Vec<String>>,
    /// Join two inputs.
    pub join: Option<JoinOpSpec>,
    /// Sort (bounded input).
    pub sort: Option<Vec<String>>,
    /// Top-N (bounded input).
    pub top_n: Option<TopNSpec>,
    /// A streaming SQL window query over other nodes (by name).
    pub sql: Option<String>,
    /// Append a model's outputs to every row.
    pub predict: Option<PredictSpec>,
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

/// A sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// Node name.
    pub name: String,
    /// Input node (`node` or `node.side_output`).
    pub input: String,
    /// file (default) or print.
    #[serde(rename = "type", default = "default_sink_type")]
    pub kind: String,
    /// Output file or directory (relative to the spec file).
    pub path: Option<String>,
    /// csv, tsv, json, parquet, arrow (default: from the extension).
    pub format: Option<String>,
    /// print: most rows to print.
    pub max_rows: Option<usize>,
    /// Extra settings (reserved).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_sink_type() -> String {
    "file".into()
}
