//! The router: every route with its OpenAPI description, the guard in front of them
//! (origin checks, authentication, roles, request counting), health and metrics.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ferroflow_api::wire::{ErrorBody, Health};
use prometheus_client::encoding::text::encode;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::{forbidden, required_role};
use crate::error::{ApiError, ApiResult};
use crate::routes::{artifacts, events, meta, models, tokens, workflows};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/health", tag = "server",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn health(State(s): State<AppState>) -> ApiResult<Json<Health>> {
    let latest_offset = s.notifier.store().latest_offset().await?;
    Ok(Json(Health {
        status: "ok".into(),
        latest_offset,
    }))
}

async fn prometheus(State(s): State<AppState>) -> Response {
    let mut out = String::new();
    if encode(&mut out, &s.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// `Host`/`Origin` checks, authentication, the route's role, and request counting. The
/// caller goes to the handlers as a [`Caller`] extension.
async fn guard(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    // The body is not `Sync`: check on copies of what the checks read.
    let (headers, method, path) = (
        req.headers().clone(),
        req.method().clone(),
        req.uri().path().to_string(),
    );
    let checked = async {
        s.auth.check_origin(&headers)?;
        if path == "/api/health" {
            return Ok(None);
        }
        let caller = s.auth.authenticate(&headers, s.store()).await?;
        let need = required_role(&method, &path);
        if caller.role < need {
            return Err(forbidden(&caller.role, need, &format!("{method} {path}")));
        }
        Ok::<_, ApiError>(Some(caller))
    }
    .await;
    let resp = match checked {
        Ok(caller) => {
            if let Some(c) = caller {
                req.extensions_mut().insert(c);
            }
            next.run(req).await
        }
        Err(e) => e.into_response(),
    };
    let class = format!("{}xx", resp.status().as_u16() / 100);
    s.metrics
        .requests
        .get_or_create(&vec![("status".into(), class)])
        .inc();
    resp
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ferroflow control plane", description = "Notification Service and Model Center"),
    tags((name = "events", description = "Notification Service"), (name = "models", description = "Model Center"),
         (name = "metadata", description = "Metadata Service"),
         (name = "workflows", description = "Workflows: submit, start, stop, executions, job logs"),
         (name = "tokens", description = "API tokens and their roles (admin only)"))
)]
struct ApiDoc;

/// The application router and its OpenAPI document (also served at `/api/openapi.json`).
pub fn router(state: AppState, body_limit: usize) -> (Router, utoipa::openapi::OpenApi) {
    let (api_router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(events::send_event, events::list_events))
        .routes(routes!(events::send_batch))
        .routes(routes!(events::listen_events))
        .routes(routes!(events::stream_events))
        .routes(routes!(models::register_model, models::list_models))
        .routes(routes!(
            models::get_model,
            models::update_model,
            models::delete_model
        ))
        .routes(routes!(models::create_version, models::list_versions))
        .routes(routes!(models::get_version))
        .routes(routes!(models::set_stage))
        .routes(routes!(meta::create_record, meta::list_records))
        .routes(routes!(
            meta::get_record,
            meta::update_record,
            meta::delete_record
        ))
        .routes(
            routes!(artifacts::put_artifact, artifacts::get_artifact)
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(
            workflows::submit_workflow,
            workflows::list_workflows
        ))
        .routes(routes!(
            workflows::start_execution,
            workflows::list_executions
        ))
        .routes(routes!(workflows::get_execution))
        .routes(routes!(workflows::stop_execution))
        .routes(routes!(workflows::list_job_executions))
        .routes(routes!(workflows::job_log))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .with_state(state.clone())
        .split_for_parts();
    let doc = Arc::new(api.clone());
    let app = api_router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json((*doc).clone()) }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(prometheus).with_state(state.clone()),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state, guard))
        .layer(DefaultBodyLimit::max(body_limit));
    (app, api)
}
