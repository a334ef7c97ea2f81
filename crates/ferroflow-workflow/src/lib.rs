//! ferroflow's control layer, in the spirit of Flink AI Flow without its known bugs.
//!
//! - [`AiGraph`]: nodes (read dataset, transform, train, predict, evaluate, validate, push,
//!   user-defined) joined by data edges inside jobs; jobs joined by control rules. Built in
//!   Rust or read from a YAML spec ([`parse_workflow`]) with errors that point at the line.
//! - Job types are plugins ([`JobPlugin`]): a generator turns a job's sub-graph into a
//!   [`RunnableJob`]. This crate has `process` (any command); `ferroflow-native` adds
//!   `native` (the ferroflow engine and ML library).
//! - [`Scheduler`]: reads the event log in order and applies each event to the rules of the
//!   executions it reaches ([`rules`] has the semantics); decisions and the event offset
//!   they consumed are committed in one transaction before anything is launched, so a
//!   scheduler killed at any point neither loses nor repeats an action.
//! - [`run_job_execution`]: the runner that runs one job execution (in `ferroflow job run`,
//!   a child process, or on a task), with heartbeats and status events.
//! - [`service`]: submit, start, stop and list, for the CLI and the server.

mod error;
pub mod events;
mod graph;
mod key;
mod periodic;
mod plugin;
mod process;
pub mod process_id;
mod records;
mod registry;
mod restart;
pub mod rules;
mod runner;
mod scheduler;
pub mod service;
mod spec;
mod status;

pub use error::{Result, WorkflowError};
pub use events::{
    EXECUTION_STATUS_CHANGED, EXECUTION_STOP_REQUESTED, JOB_STATUS_CHANGED, SCHEDULER_ITEM_PARKED,
    WORKFLOW_SUBMITTED,
};
pub use graph::{
    AiGraph, Condition, Described, EventSpec, JobConfig, JobStatusCondition, Locate, Meet,
    ModelCondition, Node, NodeKind, RuleSpec, SubGraph,
};
pub use key::{BadJobKey, JobKey};
pub use periodic::{Clock, ManualClock, Periodic, SystemClock};
pub use plugin::{CancelToken, JobContext, JobLog, JobPlugin, RunnableJob};
pub use process::ProcessPlugin;
pub use records::{SharedStore, log_path};
pub use registry::{PluginRegistry, check_job_types};
pub use restart::RestartPolicy;
pub use runner::{RunnerOptions, run_job_execution};
pub use scheduler::{Launcher, Scheduler, SchedulerConfig, SchedulerStats};
pub use spec::{load_workflow, load_workflow_text, parse_workflow, to_yaml};
pub use status::{
    ExecutionBody, ExecutionStatus, JobExecutionBody, JobState, JobStatus, SnapshotBody, Trigger,
    WorkflowBody, WorkflowRulesState,
};
