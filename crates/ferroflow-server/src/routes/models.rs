//! Model Center routes: models, their versions, and stage changes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferroflow_api::wire::{ErrorBody, ModelUpdate, NewModel, Page, StageChange, StageQuery};
use ferroflow_meta::{Model, ModelStage, ModelVersion, NewModelVersion};

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/models", tag = "models", request_body = NewModel,
    responses((status = 201, body = Model), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub(crate) async fn register_model(
    State(s): State<AppState>,
    ApiJson(m): ApiJson<NewModel>,
) -> ApiResult<(StatusCode, Json<Model>)> {
    let model = s
        .notifier
        .store()
        .register_model(&m.name, &m.description)
        .await?;
    Ok((StatusCode::CREATED, Json(model)))
}

#[utoipa::path(get, path = "/api/models", tag = "models", params(Page),
    responses((status = 200, body = Vec<Model>)))]
pub(crate) async fn list_models(
    State(s): State<AppState>,
    ApiQuery(p): ApiQuery<Page>,
) -> ApiResult<Json<Vec<Model>>> {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        s.notifier
            .store()
            .list_models(p.offset.unwrap_or(0), limit)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/models/{name}", tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_model(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Model>> {
    Ok(Json(s.notifier.store().get_model(&name).await?))
}

#[utoipa::path(patch, path = "/api/models/{name}", tag = "models", request_body = ModelUpdate,
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody)))]
pub(crate) async fn update_model(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(u): ApiJson<ModelUpdate>,
) -> ApiResult<Json<Model>> {
    Ok(Json(
        s.notifier
            .store()
            .update_model(&name, &u.description)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/api/models/{name}", tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 204, description = "Removed with its versions"), (status = 404, body = ErrorBody),
              (status = 409, description = "Some version is not DELETED", body = ErrorBody)))]
pub(crate) async fn delete_model(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.notifier.store().delete_model(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/models/{name}/versions", tag = "models", request_body = NewModelVersion,
    params(("name" = String, Path, description = "Model name")),
    responses((status = 201, description = "Created in stage GENERATED; a MODEL_GENERATED event is written", body = ModelVersion),
              (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub(crate) async fn create_version(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(v): ApiJson<NewModelVersion>,
) -> ApiResult<(StatusCode, Json<ModelVersion>)> {
    let created = s.notifier.store().create_model_version(&name, v).await?;
    s.after_write();
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/models/{name}/versions", tag = "models",
    params(("name" = String, Path, description = "Model name"), StageQuery),
    responses((status = 200, body = Vec<ModelVersion>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_versions(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<StageQuery>,
) -> ApiResult<Json<Vec<ModelVersion>>> {
    let stage = q
        .stage
        .as_deref()
        .map(str::parse::<ModelStage>)
        .transpose()?;
    Ok(Json(
        s.notifier.store().list_model_versions(&name, stage).await?,
    ))
}

#[utoipa::path(get, path = "/api/models/{name}/versions/{version}", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = i64, Path, description = "Version number")),
    responses((status = 200, body = ModelVersion), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_version(
    State(s): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, i64)>,
) -> ApiResult<Json<ModelVersion>> {
    Ok(Json(
        s.notifier.store().get_model_version(&name, version).await?,
    ))
}

#[utoipa::path(put, path = "/api/models/{name}/versions/{version}/stage", tag = "models", request_body = StageChange,
    params(("name" = String, Path, description = "Model name"), ("version" = i64, Path, description = "Version number")),
    responses((status = 200, description = "Moved (a MODEL_<STAGE> event is written; deploying deprecates the previously deployed version)", body = ModelVersion),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub(crate) async fn set_stage(
    State(s): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, i64)>,
    ApiJson(c): ApiJson<StageChange>,
) -> ApiResult<Json<ModelVersion>> {
    let v = s
        .notifier
        .store()
        .set_model_stage(&name, version, c.stage)
        .await?;
    s.after_write();
    Ok(Json(v))
}
