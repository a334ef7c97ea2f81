//! Token routes (admin only): create, list, revoke.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferroflow_api::wire::{CreatedToken, ErrorBody, NewToken};
use ferroflow_meta::ApiToken;

use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, description = "Created; the secret is in this answer only", body = CreatedToken),
              (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub(crate) async fn create_token(
    State(s): State<AppState>,
    ApiJson(t): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let secret = ferroflow_meta::new_secret()?;
    let token = s
        .store()
        .create_token(&t.name, t.role, &ferroflow_meta::secret_hash(&secret))
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, description = "Names and roles (never secrets)", body = Vec<ApiToken>)))]
pub(crate) async fn list_tokens(State(s): State<AppState>) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json(s.store().list_tokens().await?))
}

#[utoipa::path(delete, path = "/api/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "Token name")),
    responses((status = 204, description = "Revoked: its secret stops working at once"), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.store().revoke_token(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
