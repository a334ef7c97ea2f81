//! ferroflow's dataflow engine.
//!
//! One engine for batch and stream work on Arrow [`RecordBatch`](arrow_array::RecordBatch)es:
//! a job whose sources are all bounded is a batch job and ends by itself; any unbounded source
//! makes it a streaming job that runs until cancelled.
//!
//! ```text
//! JobBuilder ── source() ──▶ DataStream ── map / filter / key_by / window / join ──▶ sink()
//!      │
//!      └─ build() ─▶ JobGraph ─ Runtime::execute() ─▶ JobHandle (metrics, cancel, wait)
//! ```
//!
//! Sources and sinks are traits ([`Source`], [`Sink`]) implemented in `ferroflow-connectors`;
//! SQL expressions and SQL queries come from `ferroflow-sql`. This crate depends on neither.

mod channel;
pub mod checkpoint;
mod connector;
mod coordinator;
mod error;
mod exchange;
mod gate;
mod graph;
mod hash;
mod message;
mod metrics;
mod operator;
pub mod operators;
mod runtime;
pub mod state;
mod time;

pub use channel::{ChannelBound, HighWater};
pub use checkpoint::{CheckpointConfig, CheckpointStats, RestoreFrom, Restored};
pub use connector::{Progress, Sink, SinkWriter, Source, SourceEvent, SourceReader};
pub use error::{EngineError, PlanError, Result};
pub use graph::{
    DataStream, JobBuilder, JobConfig, JobGraph, KeyedStream, NodeId, Partitioning,
    check_same_schema,
};
pub use message::{CheckpointBarrier, MAX_WATERMARK, Message, Watermark};
pub use metrics::{MetricsSnapshot, OperatorMetrics};
pub use operator::{
    InstanceInfo, Operator, OperatorContext, OperatorFactory, OperatorState, Output,
    RestoreContext, StateKind,
};
pub use operators::aggregate::{AggFunc, Aggregate, EmitMode};
pub use operators::join::JoinType;
pub use operators::sort::SortKey;
pub use operators::window::{LATE_OUTPUT, LatePolicy, WindowKind, WindowSpec};
pub use runtime::{JobHandle, JobReport, JobStatus, Runtime, RuntimeConfig};
pub use time::{MAX_EVENT_TIME_MS, WatermarkStrategy, event_time_millis, time_column_index};
