//! Reading and changing the control layer's records: job executions, executions, snapshots.
//!
//! Every status change of a job execution is one [`MetaStore::commit`]: the record (checked
//! against the revision it was read at) and its `JOB_STATUS_CHANGED` event together. Two
//! writers (the scheduler and a runner) may race; the loser reads again and re-decides.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferroflow_meta::{
    Committed, MetaError, MetaStore, NewEvent, NewRecord, Record, RecordKind, RecordWrite,
};
use serde::{Deserialize, Serialize};

use crate::error::{Result, WorkflowError};
use crate::events::{EXECUTION_STATUS_CHANGED, JOB_STATUS_CHANGED};
use crate::graph::AiGraph;
use crate::spec::parse_workflow;
use crate::status::{ExecutionBody, ExecutionStatus, JobExecutionBody, SnapshotBody, WorkflowBody};

/// Commit `writes` (each checked against the revision it was read at) and `events`, or
/// `None` when a concurrent writer changed one of the records since it was read: the
/// caller reads again, decides again and retries. Every read-modify-commit loop of the
/// control layer goes through here.
pub(crate) async fn try_commit(
    store: &dyn MetaStore,
    writes: Vec<RecordWrite>,
    events: Vec<NewEvent>,
) -> Result<Option<Committed>> {
    match store.commit(writes, events).await {
        Ok(c) => Ok(Some(c)),
        Err(MetaError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Milliseconds since the epoch (wall clock; statuses' timestamps).
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(r: &Record) -> Result<T> {
    serde_json::from_value(r.body.clone()).map_err(|e| {
        WorkflowError::Invalid(format!(
            "{} '{}/{}' has an unreadable body: {e}",
            r.kind, r.project, r.name
        ))
    })
}

pub(crate) fn to_body<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("status documents always serialise")
}

/// The `JOB_STATUS_CHANGED` event of a job execution's current status.
pub(crate) fn status_event(project: &str, b: &JobExecutionBody, sender: &str) -> NewEvent {
    NewEvent {
        key: crate::JobKey::new(&b.workflow, &b.job).to_string(),
        value: b.status.as_str().into(),
        event_type: JOB_STATUS_CHANGED.into(),
        namespace: project.into(),
        sender: sender.into(),
        context: Some(b.execution.clone()),
        ..Default::default()
    }
}

/// A job execution record and its body.
pub(crate) async fn get_job_execution(
    store: &dyn MetaStore,
    project: &str,
    name: &str,
) -> Result<(Record, JobExecutionBody)> {
    let r = store
        .get_record(RecordKind::JobExecution, project, name)
        .await?;
    let b = parse_body(&r)?;
    Ok((r, b))
}

/// Change a job execution: `change` edits the body and says whether to write it; a status
/// change bumps `status_seq` and writes its event in the same transaction. Retries on a
/// concurrent write. Returns the body written, or `None` when `change` declined.
pub(crate) async fn update_job_execution(
    store: &dyn MetaStore,
    project: &str,
    name: &str,
    sender: &str,
    mut change: impl FnMut(&mut JobExecutionBody) -> bool,
) -> Result<Option<JobExecutionBody>> {
    loop {
        let (rec, old) = get_job_execution(store, project, name).await?;
        let mut b = old.clone();
        if !change(&mut b) {
            return Ok(None);
        }
        let mut events = vec![];
        if b.status != old.status {
            b.status_seq += 1;
            if b.status.is_terminal() && b.end_time.is_none() {
                b.end_time = Some(now_ms());
            }
            events.push(status_event(project, &b, sender));
        }
        let write = RecordWrite::Update {
            kind: RecordKind::JobExecution,
            project: project.into(),
            name: name.into(),
            body: to_body(&b),
            expected_revision: Some(rec.revision),
        };
        if try_commit(store, vec![write], events).await?.is_some() {
            return Ok(Some(b));
        }
    }
}

/// An execution record and its body.
pub(crate) async fn get_execution(
    store: &dyn MetaStore,
    project: &str,
    name: &str,
) -> Result<(Record, ExecutionBody)> {
    let r = store
        .get_record(RecordKind::Execution, project, name)
        .await?;
    let b = parse_body(&r)?;
    Ok((r, b))
}

/// The graph an execution runs (from its immutable snapshot).
pub(crate) async fn load_snapshot(
    store: &dyn MetaStore,
    project: &str,
    snapshot: &str,
) -> Result<AiGraph> {
    let r = store
        .get_record(RecordKind::WorkflowSnapshot, project, snapshot)
        .await?;
    let b: SnapshotBody = parse_body(&r)?;
    let mut g = parse_workflow(&b.spec, &format!("snapshot {snapshot}"))?;
    g.base_dir = Some(b.base_dir)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    Ok(g)
}

/// Where a job execution's log goes.
pub fn log_path(
    data_dir: &Path,
    project: &str,
    execution: &str,
    job: &str,
    attempt: u32,
) -> PathBuf {
    data_dir
        .join("logs")
        .join(project)
        .join(execution)
        .join(format!("{job}.{attempt}.log"))
}

/// A shared store handle, as everything here takes one.
pub type SharedStore = Arc<dyn MetaStore>;

/// A job execution, for listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobExecutionInfo {
    /// Name (`<execution>.<job>.<attempt>`).
    pub name: String,
    /// Its state.
    #[serde(flatten)]
    pub body: JobExecutionBody,
}

/// Job executions of an execution, in creation order.
pub async fn job_executions(
    store: &dyn MetaStore,
    project: &str,
    execution: &str,
) -> Result<Vec<JobExecutionInfo>> {
    let mut out: Vec<JobExecutionInfo> = store
        .list_records(
            RecordKind::JobExecution,
            Some(project),
            Some(execution),
            0,
            u32::MAX,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(JobExecutionInfo {
                name: r.name.clone(),
                body: parse_body(r)?,
            })
        })
        .collect::<Result<_>>()?;
    out.sort_by_key(|j| (j.body.create_time, j.body.attempt));
    Ok(out)
}

/// The writes that create a new execution of workflow record `wf` (and count it).
pub(crate) fn new_execution_writes(
    wf: &Record,
    offset: i64,
) -> Result<(String, Vec<RecordWrite>, NewEvent)> {
    let mut wf_body: WorkflowBody = parse_body(wf)?;
    if wf_body.snapshot.is_empty() {
        return Err(WorkflowError::Invalid(format!(
            "workflow '{}/{}' has no snapshot",
            wf.project, wf.name
        )));
    }
    let snapshot = wf_body.snapshot.clone();
    wf_body.executions += 1;
    let n = wf_body.executions;
    let name = format!("{}-{n}", wf.name);
    let body = ExecutionBody {
        status: ExecutionStatus::Init,
        snapshot,
        offset,
        stop_requested: false,
        jobs: Default::default(),
        create_time: now_ms(),
        end_time: None,
        error: None,
    };
    let writes = vec![
        RecordWrite::Update {
            kind: RecordKind::Workflow,
            project: wf.project.clone(),
            name: wf.name.clone(),
            body: to_body(&wf_body),
            expected_revision: Some(wf.revision),
        },
        RecordWrite::Create {
            kind: RecordKind::Execution,
            record: NewRecord {
                project: wf.project.clone(),
                name: name.clone(),
                parent: Some(wf.name.clone()),
                body: to_body(&body),
            },
        },
    ];
    let event = execution_event(&wf.project, &wf.name, &name, ExecutionStatus::Init);
    Ok((name, writes, event))
}

pub(crate) fn execution_event(
    project: &str,
    workflow: &str,
    execution: &str,
    status: ExecutionStatus,
) -> NewEvent {
    NewEvent {
        key: workflow.into(),
        value: status.as_str().into(),
        event_type: EXECUTION_STATUS_CHANGED.into(),
        namespace: project.into(),
        sender: "scheduler".into(),
        context: Some(execution.into()),
        ..Default::default()
    }
}
