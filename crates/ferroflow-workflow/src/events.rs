//! Every event type the control layer writes to the Notification Service, in one place.
//!
//! | type | key | value | context | written by |
//! |---|---|---|---|---|
//! | [`WORKFLOW_SUBMITTED`] | workflow | snapshot | | `service::submit` |
//! | [`EXECUTION_STATUS_CHANGED`] | workflow | execution status | execution | service, scheduler |
//! | [`EXECUTION_STOP_REQUESTED`] | workflow | `STOP` | execution | `service::stop`, a stop rule |
//! | [`JOB_STATUS_CHANGED`] | [`crate::JobKey`] (`<workflow>.<job>`) | job status | execution | scheduler, runner |
//! | [`SCHEDULER_ITEM_PARKED`] | `project/execution` or `workflow:project/name` | reason | | scheduler |
//! | `MODEL_<STAGE>` (`ferroflow_meta::ModelStage::event_type`) | model | the version, as JSON | | the Model Center (`ferroflow-meta`) |
//! | [`MODEL_METRICS`] | model | `{version, metrics, error, stage, job_execution}` | execution | a stream job's `model_metrics` sink (`ferroflow-stream`) |
//!
//! Rules wait for these by type and key (`rules`); the server and the CLI send and list them.

/// The event type of every job status change.
pub const JOB_STATUS_CHANGED: &str = "JOB_STATUS_CHANGED";
/// The event type of every execution status change (key: the workflow).
pub const EXECUTION_STATUS_CHANGED: &str = "EXECUTION_STATUS_CHANGED";
/// The event type a workflow submission writes (key: the workflow).
pub const WORKFLOW_SUBMITTED: &str = "WORKFLOW_SUBMITTED";
/// The scheduler set an item aside after an error of its own that it could not record on
/// the item (key: `project/execution` or `workflow:project/name`; value: the reason).
pub const SCHEDULER_ITEM_PARKED: &str = "SCHEDULER_ITEM_PARKED";
/// The event type that asks the scheduler to stop an execution (key: the workflow,
/// context: the execution).
pub const EXECUTION_STOP_REQUESTED: &str = "EXECUTION_STOP_REQUESTED";
/// Metrics of a model version were recorded (key: the model; value: JSON with the version,
/// its metrics, the evaluation error if it failed and the stage it is in afterwards).
pub const MODEL_METRICS: &str = "MODEL_METRICS";
