//! Metadata Service records: typed JSON documents under a kind.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{MetaError, Result};

/// The kinds of metadata the service keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A project: the namespace of everything else.
    Project,
    /// A dataset: `{uri, format, schema: [{name, type, nullable}], properties}`.
    Dataset,
    /// A workflow: `{spec, description}`.
    Workflow,
    /// An immutable snapshot of a workflow (parent: the workflow): `{spec, hash}`.
    WorkflowSnapshot,
    /// A workflow execution (parent: the workflow): `{snapshot, status, ...}`.
    Execution,
    /// A job execution (parent: the execution): `{job, status, ...}`.
    JobExecution,
    /// An artifact: `{uri, kind, content_hash}`.
    Artifact,
    /// A metric (parent: `model:<name>/<version>` or `job:<job execution>`):
    /// `{key, value, timestamp}`.
    Metric,
}

impl RecordKind {
    /// All kinds.
    pub const ALL: [RecordKind; 8] = [
        RecordKind::Project,
        RecordKind::Dataset,
        RecordKind::Workflow,
        RecordKind::WorkflowSnapshot,
        RecordKind::Execution,
        RecordKind::JobExecution,
        RecordKind::Artifact,
        RecordKind::Metric,
    ];

    /// The snake_case name used in URLs and storage.
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordKind::Project => "project",
            RecordKind::Dataset => "dataset",
            RecordKind::Workflow => "workflow",
            RecordKind::WorkflowSnapshot => "workflow_snapshot",
            RecordKind::Execution => "execution",
            RecordKind::JobExecution => "job_execution",
            RecordKind::Artifact => "artifact",
            RecordKind::Metric => "metric",
        }
    }

    /// The kind its parent must be, when it needs one that lives in the store.
    pub fn parent_kind(&self) -> Option<RecordKind> {
        match self {
            RecordKind::WorkflowSnapshot | RecordKind::Execution => Some(RecordKind::Workflow),
            RecordKind::JobExecution => Some(RecordKind::Execution),
            _ => None,
        }
    }

    /// Fields the body must have, with the JSON type each must be.
    fn required(&self) -> &'static [(&'static str, JsonType)] {
        use JsonType::*;
        match self {
            RecordKind::Project | RecordKind::Workflow => &[],
            RecordKind::Dataset => &[("uri", Str), ("format", Str)],
            RecordKind::WorkflowSnapshot => &[("spec", Str)],
            RecordKind::Execution => &[("status", Str)],
            RecordKind::JobExecution => &[("job", Str), ("status", Str)],
            RecordKind::Artifact => &[("uri", Str)],
            RecordKind::Metric => &[("key", Str), ("value", Num)],
        }
    }

    /// Records the control layer keeps for itself: written only by workflow submission and
    /// the scheduler and runners, never through the generic metadata routes (a forged job
    /// execution could name a log file to read or a process to signal).
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            RecordKind::Workflow
                | RecordKind::WorkflowSnapshot
                | RecordKind::Execution
                | RecordKind::JobExecution
        )
    }

    /// Snapshots never change once written.
    pub fn immutable(&self) -> bool {
        matches!(self, RecordKind::WorkflowSnapshot)
    }
}

#[derive(Clone, Copy)]
enum JsonType {
    Str,
    Num,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordKind {
    type Err = MetaError;
    fn from_str(s: &str) -> Result<Self> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| MetaError::Invalid {
                field: "kind",
                message: format!(
                    "unknown kind '{s}' (known: {})",
                    RecordKind::ALL.map(|k| k.as_str()).join(", ")
                ),
            })
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Record {
    /// Its kind.
    pub kind: RecordKind,
    /// Project it belongs to (a project's own name for projects).
    pub project: String,
    /// Name, unique per (kind, project).
    pub name: String,
    /// Owner (workflow of a snapshot, execution of a job execution, target of a metric).
    pub parent: Option<String>,
    /// The document.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: Value,
    /// Incremented by every update (for optimistic concurrency).
    pub revision: i64,
    /// Milliseconds since the epoch.
    pub create_time: i64,
    /// Milliseconds since the epoch.
    pub update_time: i64,
}

/// A record to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewRecord {
    /// Project it belongs to.
    pub project: String,
    /// Name, unique per (kind, project).
    pub name: String,
    /// Owner, see [`Record::parent`].
    #[serde(default)]
    pub parent: Option<String>,
    /// The document (a JSON object).
    #[serde(default = "empty_object")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub body: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Check a record's name, project and body against its kind.
pub(crate) fn validate(kind: RecordKind, r: &NewRecord) -> Result<()> {
    let invalid = |field: &'static str, message: String| Err(MetaError::Invalid { field, message });
    // Names become path components (logs, artifacts, model files): no separators, no
    // `.`/`..`, no control characters.
    let path_safe = |s: &str| {
        !s.trim().is_empty()
            && !s.contains(['/', '\\'])
            && s != "."
            && s != ".."
            && !s.chars().any(char::is_control)
    };
    if !path_safe(&r.name) {
        return invalid(
            "name",
            format!(
                "'{}': a {kind} name must be non-empty, not '.' or '..', and contain no '/', '\\' or control characters",
                r.name.escape_debug()
            ),
        );
    }
    if r.project.trim().is_empty() {
        return invalid("project", format!("a {kind} needs a project"));
    }
    if !path_safe(&r.project) {
        return invalid(
            "project",
            format!(
                "'{}': a project name must not be '.' or '..' and contain no '/', '\\' or control characters",
                r.project.escape_debug()
            ),
        );
    }
    if kind == RecordKind::Project && r.project != r.name {
        return invalid(
            "project",
            format!("a project's project is its own name ('{}')", r.name),
        );
    }
    let Some(obj) = r.body.as_object() else {
        return invalid("body", format!("a {kind} body must be a JSON object"));
    };
    for (field, ty) in kind.required() {
        let ok = matches!(
            (obj.get(*field), ty),
            (Some(Value::String(_)), JsonType::Str) | (Some(Value::Number(_)), JsonType::Num)
        );
        if !ok {
            let want = match ty {
                JsonType::Str => "a string",
                JsonType::Num => "a number",
            };
            return invalid("body", format!("a {kind} needs '{field}' as {want}"));
        }
    }
    if kind.parent_kind().is_some() && r.parent.is_none() {
        return invalid(
            "parent",
            format!(
                "a {kind} needs a parent {}",
                kind.parent_kind().map(|k| k.as_str()).unwrap_or("")
            ),
        );
    }
    Ok(())
}
