//! ferroflow: a Rust-native dataflow runtime for machine learning.
//!
//! This facade re-exports the crates a program needs to build and run jobs in-process:
//!
//! - [`engine`]: job graphs, operators, windows, the runtime (`ferroflow-engine`);
//! - [`connectors`]: file, directory-watch, generator, memory and print connectors;
//! - `sql` (feature `sql`, default): DataFusion expressions as operators, batch SQL,
//!   streaming window SQL;
//! - `jobspec` (feature `sql`): YAML job specs, the same jobs without writing Rust.
//! - `inference` (feature `onnx`, default): model nodes (ONNX Runtime), adaptive batching,
//!   hot-swapped model versions.
//! - `ml` (feature `ml`, default): Flink ML compatible stages (transformers, estimators,
//!   pipelines) and their use as dataflow nodes.
//! - `torch` (feature `torch`): TorchScript nodes and training on streams (libtorch).
//! - `workflow`, `native` and `meta` (feature `workflow`, default): the control layer (AI
//!   Graph workflows driven by events, the scheduler, job types) and the control-plane
//!   store it runs on (events, Model Center, metadata).
//!
//! With `default-features = false` only the engine and the connectors are built: no
//! DataFusion, for a small footprint when embedding.
//!
//! The most used names are also in [`prelude`].

pub use ferroflow_connectors as connectors;
pub use ferroflow_engine as engine;
#[cfg(feature = "onnx")]
pub use ferroflow_inference as inference;
#[cfg(feature = "sql")]
pub use ferroflow_jobspec as jobspec;
#[cfg(feature = "workflow")]
pub use ferroflow_meta as meta;
#[cfg(feature = "ml")]
pub use ferroflow_ml as ml;
#[cfg(feature = "workflow")]
pub use ferroflow_native as native;
#[cfg(feature = "sql")]
pub use ferroflow_sql as sql;
#[cfg(feature = "torch")]
pub use ferroflow_torch as torch;
#[cfg(feature = "workflow")]
pub use ferroflow_workflow as workflow;

/// The names most programs use.
pub mod prelude {
    pub use ferroflow_connectors::{
        DiscardSink, FileFormat, FileSink, FileSource, GenColumn, GeneratorSource, MemorySink,
        MemorySource, PrintSink,
    };
    pub use ferroflow_engine::{
        AggFunc, Aggregate, CheckpointConfig, DataStream, EmitMode, JobBuilder, JobConfig,
        JobHandle, JobReport, JobStatus, JoinType, RestoreFrom, Runtime, SortKey,
        WatermarkStrategy, WindowSpec,
    };
}
