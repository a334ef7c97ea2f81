//! Workflow operations over a store: submit, start, stop, and what the CLI and the server
//! list. The scheduler acts on what these write; they never run jobs themselves.

use std::path::PathBuf;

use ferroflow_meta::{MetaError, MetaStore, NewEvent, NewRecord, Record, RecordKind, RecordWrite};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Result, WorkflowError};
use crate::events::WORKFLOW_SUBMITTED;
use crate::graph::AiGraph;
use crate::records::{get_execution, new_execution_writes, parse_body, to_body, try_commit};
use crate::registry::PluginRegistry;
use crate::spec::to_yaml;
use crate::status::{ExecutionBody, SnapshotBody, WorkflowBody, WorkflowRulesState};

pub use crate::events::EXECUTION_STOP_REQUESTED;
pub use crate::records::{JobExecutionInfo, job_executions};

/// A submitted workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowInfo {
    /// Project.
    pub project: String,
    /// Name.
    pub name: String,
    /// Its current snapshot.
    pub snapshot: String,
    /// Executions started so far.
    pub executions: u64,
}

/// An execution, for listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionInfo {
    /// Project.
    pub project: String,
    /// Name (`<workflow>-<n>`).
    pub name: String,
    /// The workflow.
    pub workflow: String,
    /// Its state.
    #[serde(flatten)]
    pub body: ExecutionBody,
}

fn workflow_info(r: &Record) -> Result<WorkflowInfo> {
    let b: WorkflowBody = parse_body(r)?;
    Ok(WorkflowInfo {
        project: r.project.clone(),
        name: r.name.clone(),
        snapshot: b.snapshot,
        executions: b.executions,
    })
}

async fn ensure_project(store: &dyn MetaStore, project: &str) -> Result<()> {
    let r = NewRecord {
        project: project.into(),
        name: project.into(),
        parent: None,
        body: json!({}),
    };
    match store.create_record(RecordKind::Project, r).await {
        Ok(_) | Err(MetaError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Check `graph` (structure and job types) and store it: an immutable snapshot named by its
/// content, and the workflow pointing at it. Resubmitting changes the snapshot new
/// executions run; running ones keep theirs.
pub async fn submit(
    store: &dyn MetaStore,
    registry: &PluginRegistry,
    graph: &AiGraph,
) -> Result<WorkflowInfo> {
    graph.validate()?;
    registry.validate(graph, &crate::graph::Described(&graph.name))?;
    ensure_project(store, &graph.project).await?;
    let spec = to_yaml(graph)?;
    let base_dir = graph
        .base_dir
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(spec.as_bytes());
    h.update(base_dir.as_bytes());
    let hash: String = h
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let snapshot = format!("{}.{hash}", graph.name);
    let p = &graph.project;
    if store
        .get_record(RecordKind::Workflow, p, &graph.name)
        .await
        .is_err()
    {
        let body = to_body(&WorkflowBody {
            description: graph.description.clone(),
            scheduler: WorkflowRulesState {
                offset: store.latest_offset().await?,
                rules: Vec::new(),
            },
            ..WorkflowBody::default()
        });
        let rec = NewRecord {
            project: p.clone(),
            name: graph.name.clone(),
            parent: None,
            body,
        };
        match store.create_record(RecordKind::Workflow, rec).await {
            Ok(_) | Err(MetaError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if store
        .get_record(RecordKind::WorkflowSnapshot, p, &snapshot)
        .await
        .is_err()
    {
        let rec = NewRecord {
            project: p.clone(),
            name: snapshot.clone(),
            parent: Some(graph.name.clone()),
            body: to_body(&SnapshotBody {
                spec,
                hash,
                base_dir,
            }),
        };
        match store.create_record(RecordKind::WorkflowSnapshot, rec).await {
            Ok(_) | Err(MetaError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    loop {
        let wf = store
            .get_record(RecordKind::Workflow, p, &graph.name)
            .await?;
        let mut b: WorkflowBody = parse_body(&wf)?;
        b.snapshot = snapshot.clone();
        b.description = graph.description.clone();
        let body = to_body(&b);
        let event = NewEvent {
            key: graph.name.clone(),
            value: snapshot.clone(),
            event_type: WORKFLOW_SUBMITTED.into(),
            namespace: p.clone(),
            sender: "workflow-service".into(),
            ..Default::default()
        };
        let write = RecordWrite::Update {
            kind: RecordKind::Workflow,
            project: p.clone(),
            name: graph.name.clone(),
            body,
            expected_revision: Some(wf.revision),
        };
        if let Some(c) = try_commit(store, vec![write], vec![event]).await? {
            return workflow_info(&c.records[0]);
        }
    }
}

/// Start a new execution of a submitted workflow; returns its name. A scheduler picks it up
/// (status INIT until then). Events before this call do not reach it.
pub async fn start(store: &dyn MetaStore, project: &str, workflow: &str) -> Result<String> {
    loop {
        let wf = store
            .get_record(RecordKind::Workflow, project, workflow)
            .await
            .map_err(|_| WorkflowError::NotFound {
                kind: "workflow",
                name: format!("{project}/{workflow}"),
            })?;
        let offset = store.latest_offset().await?;
        let (name, writes, event) = new_execution_writes(&wf, offset)?;
        if try_commit(store, writes, vec![event]).await?.is_some() {
            return Ok(name);
        }
    }
}

/// Ask the scheduler to stop an execution (its jobs are stopped, then it is STOPPED).
pub async fn stop(store: &dyn MetaStore, project: &str, execution: &str) -> Result<()> {
    let (rec, body) = get_execution(store, project, execution)
        .await
        .map_err(|_| WorkflowError::NotFound {
            kind: "execution",
            name: format!("{project}/{execution}"),
        })?;
    if body.status.is_terminal() {
        return Err(WorkflowError::Invalid(format!(
            "execution '{project}/{execution}' already ended ({})",
            body.status
        )));
    }
    store
        .send_event(NewEvent {
            key: rec.parent.unwrap_or_default(),
            value: "STOP".into(),
            event_type: EXECUTION_STOP_REQUESTED.into(),
            namespace: project.into(),
            sender: "workflow-service".into(),
            context: Some(execution.into()),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Workflows, optionally of one project.
pub async fn list_workflows(
    store: &dyn MetaStore,
    project: Option<&str>,
) -> Result<Vec<WorkflowInfo>> {
    store
        .list_records(RecordKind::Workflow, project, None, 0, u32::MAX)
        .await?
        .iter()
        .map(workflow_info)
        .collect()
}

/// Executions of a workflow, oldest first.
pub async fn executions(
    store: &dyn MetaStore,
    project: &str,
    workflow: &str,
) -> Result<Vec<ExecutionInfo>> {
    let mut out: Vec<ExecutionInfo> = store
        .list_records(
            RecordKind::Execution,
            Some(project),
            Some(workflow),
            0,
            u32::MAX,
        )
        .await?
        .iter()
        .map(|r| {
            Ok(ExecutionInfo {
                project: r.project.clone(),
                name: r.name.clone(),
                workflow: workflow.into(),
                body: parse_body(r)?,
            })
        })
        .collect::<Result<_>>()?;
    out.sort_by_key(|e| e.body.create_time);
    Ok(out)
}

/// One execution.
pub async fn execution(store: &dyn MetaStore, project: &str, name: &str) -> Result<ExecutionInfo> {
    let (r, body) =
        get_execution(store, project, name)
            .await
            .map_err(|_| WorkflowError::NotFound {
                kind: "execution",
                name: format!("{project}/{name}"),
            })?;
    Ok(ExecutionInfo {
        project: r.project,
        name: r.name,
        workflow: r.parent.unwrap_or_default(),
        body,
    })
}

/// The log file of a job's newest run in an execution (or of run `attempt`).
pub async fn job_log(
    store: &dyn MetaStore,
    project: &str,
    execution: &str,
    job: &str,
    attempt: Option<u32>,
) -> Result<PathBuf> {
    let runs = job_executions(store, project, execution).await?;
    runs.iter()
        .filter(|j| j.body.job == job && attempt.is_none_or(|a| a == j.body.attempt))
        .max_by_key(|j| j.body.attempt)
        .map(|j| PathBuf::from(&j.body.log))
        .ok_or_else(|| WorkflowError::NotFound {
            kind: "job execution",
            name: format!("{project}/{execution}.{job}"),
        })
}
