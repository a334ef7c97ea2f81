//! Workflow routes: submit a spec, start and stop executions, list them, read job logs.
//! The server only writes what the scheduler acts on (`ferroflow scheduler` runs the jobs).

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ferroflow_api::wire::{LogQuery, Started, SubmitRequest, WorkflowQuery};
use ferroflow_workflow::WorkflowError;
use ferroflow_workflow::service::{self, ExecutionInfo, JobExecutionInfo, WorkflowInfo};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, caller};
use crate::state::AppState;
use ferroflow_api::wire::ErrorBody;
use ferroflow_meta::Role;

/// Largest log answered in one response; longer logs are cut from the front.
const LOG_LIMIT: u64 = 4 << 20;

impl From<WorkflowError> for ApiError {
    fn from(e: WorkflowError) -> Self {
        let message = e.to_string();
        match e {
            WorkflowError::Meta(m) => m.into(),
            WorkflowError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            }
            WorkflowError::Spec { .. }
            | WorkflowError::Job { .. }
            | WorkflowError::Node { .. }
            | WorkflowError::External { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_workflow", message)
            }
            WorkflowError::Invalid(_) => ApiError::new(StatusCode::CONFLICT, "invalid", message),
            WorkflowError::Io { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                message,
            ),
        }
    }
}

#[utoipa::path(post, path = "/api/workflows", tag = "workflows", request_body = SubmitRequest,
    responses((status = 201, description = "Stored; new executions run this snapshot", body = WorkflowInfo),
              (status = 400, description = "The spec is invalid; the message points at file:line", body = ErrorBody),
              (status = 403, description = "A job runs commands or user code and the caller is not admin", body = ErrorBody)))]
pub(crate) async fn submit_workflow(
    State(s): State<AppState>,
    who: Option<axum::Extension<Caller>>,
    ApiJson(r): ApiJson<SubmitRequest>,
) -> ApiResult<(StatusCode, Json<WorkflowInfo>)> {
    let who = caller(who)?;
    let file = r.file.as_deref().unwrap_or("spec.yaml");
    let mut graph = ferroflow_workflow::parse_workflow(&r.spec, file)?;
    // Job files named relative to the spec are checked where the spec lives, as they run.
    graph.base_dir = r.base_dir.filter(|d| !d.is_empty()).map(Into::into);
    ferroflow_workflow::check_job_types(&r.spec, file, &graph, s.job_types())?;
    let user_code = s.job_types().host_access_jobs(&graph);
    if !user_code.is_empty() && who.role < Role::Admin {
        let jobs: Vec<String> = user_code
            .iter()
            .map(|(job, why)| format!("job '{job}': {why}"))
            .collect();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "submitting this workflow needs the admin role (this token is {}): {}",
                who.role,
                jobs.join("; ")
            ),
        ));
    }
    let info = service::submit(s.store(), s.job_types(), &graph).await?;
    s.after_write();
    Ok((StatusCode::CREATED, Json(info)))
}

#[utoipa::path(get, path = "/api/workflows", tag = "workflows", params(WorkflowQuery),
    responses((status = 200, body = Vec<WorkflowInfo>)))]
pub(crate) async fn list_workflows(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<WorkflowQuery>,
) -> ApiResult<Json<Vec<WorkflowInfo>>> {
    Ok(Json(
        service::list_workflows(s.store(), q.project.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/api/workflows/{project}/{workflow}/executions", tag = "workflows",
    params(("project" = String, Path), ("workflow" = String, Path)),
    responses((status = 201, description = "Created in INIT; the scheduler starts its jobs", body = Started),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn start_execution(
    State(s): State<AppState>,
    ApiPath((project, workflow)): ApiPath<(String, String)>,
) -> ApiResult<(StatusCode, Json<Started>)> {
    let execution = service::start(s.store(), &project, &workflow).await?;
    s.after_write();
    Ok((StatusCode::CREATED, Json(Started { project, execution })))
}

#[utoipa::path(get, path = "/api/workflows/{project}/{workflow}/executions", tag = "workflows",
    params(("project" = String, Path), ("workflow" = String, Path)),
    responses((status = 200, description = "Oldest first", body = Vec<ExecutionInfo>)))]
pub(crate) async fn list_executions(
    State(s): State<AppState>,
    ApiPath((project, workflow)): ApiPath<(String, String)>,
) -> ApiResult<Json<Vec<ExecutionInfo>>> {
    Ok(Json(
        service::executions(s.store(), &project, &workflow).await?,
    ))
}

#[utoipa::path(get, path = "/api/executions/{project}/{execution}", tag = "workflows",
    params(("project" = String, Path), ("execution" = String, Path)),
    responses((status = 200, body = ExecutionInfo), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_execution(
    State(s): State<AppState>,
    ApiPath((project, execution)): ApiPath<(String, String)>,
) -> ApiResult<Json<ExecutionInfo>> {
    Ok(Json(
        service::execution(s.store(), &project, &execution).await?,
    ))
}

#[utoipa::path(post, path = "/api/executions/{project}/{execution}/stop", tag = "workflows",
    params(("project" = String, Path), ("execution" = String, Path)),
    responses((status = 202, description = "Stop requested; the scheduler stops its jobs"),
              (status = 404, body = ErrorBody),
              (status = 409, description = "The execution already ended", body = ErrorBody)))]
pub(crate) async fn stop_execution(
    State(s): State<AppState>,
    ApiPath((project, execution)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    service::stop(s.store(), &project, &execution).await?;
    s.after_write();
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(get, path = "/api/executions/{project}/{execution}/jobs", tag = "workflows",
    params(("project" = String, Path), ("execution" = String, Path)),
    responses((status = 200, description = "Job executions in creation order", body = Vec<JobExecutionInfo>)))]
pub(crate) async fn list_job_executions(
    State(s): State<AppState>,
    ApiPath((project, execution)): ApiPath<(String, String)>,
) -> ApiResult<Json<Vec<JobExecutionInfo>>> {
    Ok(Json(
        service::job_executions(s.store(), &project, &execution).await?,
    ))
}

#[utoipa::path(get, path = "/api/executions/{project}/{execution}/jobs/{job}/log", tag = "workflows",
    params(("project" = String, Path), ("execution" = String, Path), ("job" = String, Path), LogQuery),
    responses((status = 200, description = "The log as text (its last 4 MiB)", content_type = "text/plain", body = String),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn job_log(
    State(s): State<AppState>,
    ApiPath((project, execution, job)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<impl IntoResponse> {
    let recorded = service::job_log(s.store(), &project, &execution, &job, q.attempt).await?;
    let path = confine(s.log_root(), &recorded).await?;
    let text = read_tail(&path, LOG_LIMIT).await.map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("log {}: {e}", path.display()),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

/// The recorded log path, resolved (symbolic links included), if it lies under the log
/// root; anything else is refused without saying whether it exists.
async fn confine(root: &std::path::Path, recorded: &std::path::Path) -> ApiResult<PathBuf> {
    let outside = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "log_outside_root",
            format!(
                "the recorded log {} is not under this server's log directory",
                recorded.display()
            ),
        )
    };
    let root = tokio::fs::canonicalize(root).await.map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no job logs here yet ({}: {e})", root.display()),
        )
    })?;
    if !recorded.is_absolute() {
        return Err(outside());
    }
    match tokio::fs::canonicalize(recorded).await {
        Ok(p) if p.starts_with(&root) => Ok(p),
        Ok(_) => Err(outside()),
        // Not there (yet): answer 404 only when the name itself is under the root.
        Err(e) if recorded.starts_with(&root) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("log {}: {e}", recorded.display()),
        )),
        Err(_) => Err(outside()),
    }
}

async fn read_tail(path: &std::path::Path, limit: u64) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    if len > limit {
        f.seek(std::io::SeekFrom::Start(len - limit)).await?;
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
