//! The records the control plane keeps.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::MetaError;

/// An event of the Notification Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Global, gap-free, monotonically increasing position in the log (from 1).
    pub offset: i64,
    /// What the event is about (a model name, `<workflow>.<job>`, ...).
    pub key: String,
    /// Payload, usually JSON.
    pub value: String,
    /// Kind of event (`MODEL_DEPLOYED`, `JOB_STATUS_CHANGED`, user types...).
    pub event_type: String,
    /// Namespace (a project, usually).
    pub namespace: String,
    /// Who sent it.
    pub sender: String,
    /// Execution context: when set, the event concerns that execution only.
    pub context: Option<String>,
    /// Milliseconds since the epoch when it was stored.
    pub create_time: i64,
}

/// An event to send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewEvent {
    /// See [`Event::key`].
    pub key: String,
    /// See [`Event::value`].
    #[serde(default)]
    pub value: String,
    /// See [`Event::event_type`].
    #[serde(default = "default_event_type")]
    pub event_type: String,
    /// See [`Event::namespace`].
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// See [`Event::sender`].
    #[serde(default)]
    pub sender: String,
    /// See [`Event::context`].
    #[serde(default)]
    pub context: Option<String>,
    /// With `sequence`: resending the same (client id, sequence) returns the stored event
    /// instead of storing a second one.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Sequence number of this send for `client_id`.
    #[serde(default)]
    pub sequence: Option<i64>,
}

fn default_event_type() -> String {
    "UNDEFINED".into()
}

fn default_namespace() -> String {
    "default".into()
}

impl NewEvent {
    /// An event with a key, value and type in the default namespace.
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        event_type: impl Into<String>,
    ) -> Self {
        NewEvent {
            key: key.into(),
            value: value.into(),
            event_type: event_type.into(),
            namespace: default_namespace(),
            ..Default::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), MetaError> {
        if self.key.is_empty() {
            return Err(MetaError::Invalid {
                field: "key",
                message: "an event needs a non-empty key".into(),
            });
        }
        if self.event_type.is_empty() {
            return Err(MetaError::Invalid {
                field: "event_type",
                message: "an event needs a non-empty type".into(),
            });
        }
        if self.client_id.is_some() != self.sequence.is_some() {
            return Err(MetaError::Invalid {
                field: "client_id",
                message: "client_id and sequence go together".into(),
            });
        }
        Ok(())
    }
}

/// Which events to list; empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventFilter {
    /// Any of these keys.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Any of these types.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Any of these namespaces.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Any of these senders.
    #[serde(default)]
    pub senders: Vec<String>,
}

impl EventFilter {
    /// Does `e` pass this filter?
    pub fn matches(&self, e: &Event) -> bool {
        let any = |list: &Vec<String>, v: &str| list.is_empty() || list.iter().any(|x| x == v);
        any(&self.keys, &e.key)
            && any(&self.event_types, &e.event_type)
            && any(&self.namespaces, &e.namespace)
            && any(&self.senders, &e.sender)
    }
}

/// The life of a model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModelStage {
    /// Just produced by training.
    Generated,
    /// Passed validation.
    Validated,
    /// Serving; at most one version of a model.
    Deployed,
    /// Retired (replaced, or taken out of service).
    Deprecated,
    /// Gone; terminal.
    Deleted,
}

impl ModelStage {
    /// All stages, in life order.
    pub const ALL: [ModelStage; 5] = [
        ModelStage::Generated,
        ModelStage::Validated,
        ModelStage::Deployed,
        ModelStage::Deprecated,
        ModelStage::Deleted,
    ];

    /// Upper-case name (`DEPLOYED`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelStage::Generated => "GENERATED",
            ModelStage::Validated => "VALIDATED",
            ModelStage::Deployed => "DEPLOYED",
            ModelStage::Deprecated => "DEPRECATED",
            ModelStage::Deleted => "DELETED",
        }
    }

    /// The event type announcing this stage (`MODEL_DEPLOYED`).
    pub fn event_type(&self) -> String {
        format!("MODEL_{}", self.as_str())
    }

    /// Stages a version may move to from this one.
    ///
    /// Forward along GENERATED -> VALIDATED -> DEPLOYED -> DEPRECATED -> DELETED, skipping
    /// ahead to DEPRECATED or DELETED from any live stage, and DEPRECATED -> DEPLOYED to roll
    /// back to an earlier version. DELETED is terminal.
    pub fn allowed_next(&self) -> &'static [ModelStage] {
        use ModelStage::*;
        match self {
            Generated => &[Validated, Deprecated, Deleted],
            Validated => &[Deployed, Deprecated, Deleted],
            Deployed => &[Deprecated],
            Deprecated => &[Deployed, Deleted],
            Deleted => &[],
        }
    }
}

impl fmt::Display for ModelStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelStage {
    type Err = MetaError;
    fn from_str(s: &str) -> Result<Self, MetaError> {
        ModelStage::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| MetaError::Invalid {
                field: "stage",
                message: format!(
                    "unknown stage '{s}' (known: GENERATED, VALIDATED, DEPLOYED, DEPRECATED, DELETED)"
                ),
            })
    }
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Model {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Milliseconds since the epoch.
    pub create_time: i64,
}

/// A version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelVersion {
    /// Model name.
    pub model: String,
    /// 1, 2, 3... per model.
    pub version: i64,
    /// Where the model files are.
    pub uri: String,
    /// onnx, torchscript, ferroflow-ml, other.
    pub flavor: String,
    /// Current stage.
    pub stage: ModelStage,
    /// Metrics recorded with the version (name -> value).
    pub metrics: BTreeMap<String, f64>,
    /// Job execution that produced it (lineage).
    pub job_execution: Option<String>,
    /// Datasets it was trained on (lineage).
    pub datasets: Vec<String>,
    /// Milliseconds since the epoch.
    pub create_time: i64,
    /// Last stage change, milliseconds since the epoch.
    pub update_time: i64,
}

/// A version to create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewModelVersion {
    /// Where the model files are.
    pub uri: String,
    /// onnx, torchscript, ferroflow-ml, other.
    #[serde(default = "default_flavor")]
    pub flavor: String,
    /// Metrics.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Producing job execution.
    #[serde(default)]
    pub job_execution: Option<String>,
    /// Input datasets.
    #[serde(default)]
    pub datasets: Vec<String>,
}

fn default_flavor() -> String {
    "other".into()
}

/// Known model flavors.
pub const FLAVORS: [&str; 4] = ["onnx", "torchscript", "ferroflow-ml", "other"];
