//! Statuses of executions and job executions, and the documents the store keeps for them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rules::RuleState;

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Every status.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// Upper-case name.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|x| x.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| {
                        let known: Vec<&str> = $name::ALL.iter().map(|x| x.as_str()).collect();
                        format!("unknown status '{s}' (known: {})", known.join(", "))
                    })
            }
        }
    };
}

status_enum!(
    /// The life of one run of a job.
    JobStatus {
        /// Decided by the scheduler, not launched yet.
        Init => "INIT",
        /// Being launched.
        Starting => "STARTING",
        /// Its process reported in and runs.
        Running => "RUNNING",
        /// Ended successfully.
        Finished => "FINISHED",
        /// Ended with an error, or its process died.
        Failed => "FAILED",
        /// Asked to stop.
        Stopping => "STOPPING",
        /// Stopped on request.
        Stopped => "STOPPED",
    }
);

impl JobStatus {
    /// FINISHED, FAILED or STOPPED: nothing changes it any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Failed | JobStatus::Stopped
        )
    }
}

status_enum!(
    /// The life of a workflow execution.
    ExecutionStatus {
        /// Created, not picked up by a scheduler yet.
        Init => "INIT",
        /// Jobs run or wait for their events.
        Running => "RUNNING",
        /// Every job finished.
        Succeeded => "SUCCEEDED",
        /// A job failed.
        Failed => "FAILED",
        /// Asked to stop; jobs are being stopped.
        Stopping => "STOPPING",
        /// Stopped.
        Stopped => "STOPPED",
    }
);

impl ExecutionStatus {
    /// SUCCEEDED, FAILED or STOPPED.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ExecutionStatus::Succeeded | ExecutionStatus::Failed | ExecutionStatus::Stopped
        )
    }
}

/// The event that made the scheduler start a job execution (lineage, and what the job may
/// act on: the model version of a `MODEL_*` event, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trigger {
    /// Its offset in the event log.
    pub offset: i64,
    /// Its type.
    pub event_type: String,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl Trigger {
    /// The trigger of `e`.
    pub fn of(e: &ferroflow_meta::Event) -> Self {
        Trigger {
            offset: e.offset,
            event_type: e.event_type.clone(),
            key: e.key.clone(),
            value: e.value.clone(),
        }
    }

    /// The model version a Model Center event (`MODEL_<STAGE>`, key = model) names.
    pub fn model_version(&self, model: &str) -> Option<i64> {
        if !self.event_type.starts_with("MODEL_") || self.key != model {
            return None;
        }
        serde_json::from_str::<serde_json::Value>(&self.value)
            .ok()?
            .get("version")?
            .as_i64()
    }
}

/// The scheduler's state of one job inside an execution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobState {
    /// Name of its newest job execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Status of the newest job execution, as the scheduler last saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// Job executions created so far.
    #[serde(default)]
    pub attempts: u32,
    /// The current run must be stopped (re-done after a scheduler restart until it is).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_requested: bool,
    /// Start again once the current run has ended (a RESTART of a running job).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_pending: bool,
    /// The event behind a pending restart (its run starts once the current one ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_trigger: Option<Trigger>,
    /// Next periodic tick, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_tick: Option<i64>,
    /// Restarts of failed runs made so far under the job's restart policy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restarts: u32,
    /// A failed run restarts at this time (ms since the epoch); the job counts as active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<i64>,
    /// One per control rule, in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub rules: Vec<RuleState>,
}

/// The document of a workflow record: what `service::submit` and the scheduler keep for a
/// submitted workflow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowBody {
    /// The spec's description.
    #[serde(default)]
    pub description: String,
    /// Its current snapshot (`<workflow>.<hash>`); empty until a submission completes.
    #[serde(default)]
    pub snapshot: String,
    /// How many executions were started (the next is `<workflow>-<n+1>`).
    #[serde(default)]
    pub executions: u64,
    /// Where the scheduler is with the workflow's own rules.
    #[serde(default)]
    pub scheduler: WorkflowRulesState,
}

/// The scheduler's state of a workflow's rules: the offset of the last event they saw and
/// each rule's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRulesState {
    /// Offset of the last event applied.
    #[serde(default)]
    pub offset: i64,
    /// One state per workflow rule, in rule order.
    #[serde(default)]
    pub rules: Vec<RuleState>,
}

/// The document of a workflow snapshot record: a submitted spec, immutable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// The spec's YAML, as submitted.
    pub spec: String,
    /// The first bytes of its SHA-256 (with the base directory), in hex.
    pub hash: String,
    /// The directory relative paths of the spec resolve against (empty: none).
    #[serde(default)]
    pub base_dir: String,
}

/// The document of an execution record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionBody {
    /// Current status.
    pub status: ExecutionStatus,
    /// The workflow snapshot it runs.
    pub snapshot: String,
    /// Events up to this offset have been applied (committed with the decisions they led
    /// to).
    pub offset: i64,
    /// A stop was requested.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_requested: bool,
    /// Per job.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobState>,
    /// Milliseconds since the epoch.
    pub create_time: i64,
    /// When it reached a final status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The document of a job execution record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobExecutionBody {
    /// The job.
    pub job: String,
    /// The workflow.
    pub workflow: String,
    /// The execution.
    pub execution: String,
    /// 1 for the first run of this job in the execution, 2 for the next...
    pub attempt: u32,
    /// Current status.
    pub status: JobStatus,
    /// Number of status changes so far (orders this run's events).
    pub status_seq: u32,
    /// Token of the launch that may run it: a runner with another token exits.
    pub launch_id: String,
    /// Process id of its runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its runner as the kernel knows it (pid, start time, process group, boot id): the
    /// scheduler signals a runner it did not start only when all of these still match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<crate::process_id::ProcessIdentity>,
    /// Last sign of life of its runner, milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<i64>,
    /// Milliseconds since the epoch.
    pub create_time: i64,
    /// When it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Exit code of a process job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its log file.
    pub log: String,
    /// The event whose rule started it (none for a start with the execution or a periodic
    /// tick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// What the job type recorded about the run outside ferroflow (a Flink job id, the
    /// savepoint it stopped with...), for later runs and for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub external: Option<serde_json::Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
