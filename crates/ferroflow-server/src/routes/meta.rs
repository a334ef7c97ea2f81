//! Metadata Service routes: the generic record API (`/api/meta/{kind}`); the control
//! layer's own kinds are read-only here.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferroflow_api::wire::{ErrorBody, RecordQuery, RecordUpdate};
use ferroflow_meta::{NewRecord, Record, RecordKind};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

fn kind(k: &str) -> ApiResult<RecordKind> {
    Ok(k.parse::<RecordKind>()?)
}

/// A kind the generic routes may write: not one of the control layer's own records (unless
/// the caller owns the store, see [`AppState::store_owner`]).
fn writable_kind(s: &AppState, k: &str) -> ApiResult<RecordKind> {
    let kind = kind(k)?;
    if kind.is_internal() && !s.store_owner {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "internal_record",
            format!(
                "{kind} records are the control layer's own: they are written by workflow submission and the scheduler, not through /api/meta (use /api/workflows and /api/executions)"
            ),
        ));
    }
    Ok(kind)
}

#[utoipa::path(post, path = "/api/meta/{kind}", tag = "metadata", request_body = NewRecord,
    params(("kind" = String, Path, description = "project, dataset, artifact, metric (workflow, workflow_snapshot, execution and job_execution are read-only here: 403)")),
    responses((status = 201, body = Record), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_record(
    State(s): State<AppState>,
    ApiPath(k): ApiPath<String>,
    ApiJson(r): ApiJson<NewRecord>,
) -> ApiResult<(StatusCode, Json<Record>)> {
    let rec = s
        .notifier
        .store()
        .create_record(writable_kind(&s, &k)?, r)
        .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

#[utoipa::path(get, path = "/api/meta/{kind}", tag = "metadata",
    params(("kind" = String, Path, description = "Record kind"), RecordQuery),
    responses((status = 200, body = Vec<Record>), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_records(
    State(s): State<AppState>,
    ApiPath(k): ApiPath<String>,
    ApiQuery(q): ApiQuery<RecordQuery>,
) -> ApiResult<Json<Vec<Record>>> {
    let recs = s
        .notifier
        .store()
        .list_records(
            kind(&k)?,
            q.project.as_deref(),
            q.parent.as_deref(),
            q.offset.unwrap_or(0),
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    Ok(Json(recs))
}

#[utoipa::path(get, path = "/api/meta/{kind}/{project}/{name}", tag = "metadata",
    params(("kind" = String, Path, description = "Record kind"), ("project" = String, Path, description = "Project"), ("name" = String, Path, description = "Name")),
    responses((status = 200, body = Record), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_record(
    State(s): State<AppState>,
    ApiPath((k, project, name)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<Record>> {
    Ok(Json(
        s.notifier
            .store()
            .get_record(kind(&k)?, &project, &name)
            .await?,
    ))
}

#[utoipa::path(put, path = "/api/meta/{kind}/{project}/{name}", tag = "metadata", request_body = RecordUpdate,
    params(("kind" = String, Path, description = "Record kind"), ("project" = String, Path, description = "Project"), ("name" = String, Path, description = "Name")),
    responses((status = 200, body = Record), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub(crate) async fn update_record(
    State(s): State<AppState>,
    ApiPath((k, project, name)): ApiPath<(String, String, String)>,
    ApiJson(u): ApiJson<RecordUpdate>,
) -> ApiResult<Json<Record>> {
    let rec = s
        .notifier
        .store()
        .update_record(writable_kind(&s, &k)?, &project, &name, u.body, u.revision)
        .await?;
    Ok(Json(rec))
}

#[utoipa::path(delete, path = "/api/meta/{kind}/{project}/{name}", tag = "metadata",
    params(("kind" = String, Path, description = "Record kind"), ("project" = String, Path, description = "Project"), ("name" = String, Path, description = "Name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete_record(
    State(s): State<AppState>,
    ApiPath((k, project, name)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.notifier
        .store()
        .delete_record(writable_kind(&s, &k)?, &project, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
