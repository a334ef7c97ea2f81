//! Routes and handlers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ferroflow_meta::{
    ApiToken, Event, EventFilter, Model, ModelStage, ModelVersion, NewEvent, NewModelVersion,
    NewRecord, Record, RecordKind, Role,
};
use futures::Stream;
use prometheus_client::encoding::text::encode;
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::{forbidden, required_role};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use crate::workflows::*;

/// Largest artifact upload (models can be large; other bodies keep the server's limit).
const ARTIFACT_LIMIT: usize = 1 << 30;

/// Longest a long-poll `listen` may wait.
const MAX_LISTEN: Duration = Duration::from_secs(60);

/// Health.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
    latest_offset: i64,
}

#[utoipa::path(get, path = "/api/health", tag = "server",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
async fn health(State(s): State<AppState>) -> ApiResult<Json<Health>> {
    let latest_offset = s.notifier.store().latest_offset().await?;
    Ok(Json(Health {
        status: "ok",
        latest_offset,
    }))
}

/// Event query parameters: comma-separated lists filter; `after` is exclusive.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventQuery {
    /// Only events with a greater offset (default 0).
    after: Option<i64>,
    /// Most events returned (default 1000, at most 10000).
    limit: Option<u32>,
    /// Comma-separated keys.
    keys: Option<String>,
    /// Comma-separated event types.
    event_types: Option<String>,
    /// Comma-separated namespaces.
    namespaces: Option<String>,
    /// Comma-separated senders.
    senders: Option<String>,
    /// listen: how long to wait for a first event, in ms (default 30000, at most 60000).
    timeout_ms: Option<u64>,
}

impl EventQuery {
    fn filter(&self) -> EventFilter {
        let list = |v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        EventFilter {
            keys: list(&self.keys),
            event_types: list(&self.event_types),
            namespaces: list(&self.namespaces),
            senders: list(&self.senders),
        }
    }

    fn limit(&self) -> ApiResult<u32> {
        match self.limit.unwrap_or(1000) {
            0 => Err(ApiError::bad_request("limit must be at least 1")),
            n => Ok(n.min(10_000)),
        }
    }
}

#[utoipa::path(post, path = "/api/events", tag = "events", request_body = NewEvent,
    responses((status = 200, description = "Stored (or already stored: same client id and sequence)", body = Event),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn send_event(
    State(s): State<AppState>,
    ApiJson(e): ApiJson<NewEvent>,
) -> ApiResult<Json<Event>> {
    let stored = s.notifier.send(e).await?;
    s.metrics.events_sent.inc();
    Ok(Json(stored))
}

/// Most events in one batch.
const MAX_BATCH: usize = 10_000;

#[utoipa::path(post, path = "/api/events/batch", tag = "events", request_body = Vec<NewEvent>,
    responses((status = 200, description = "All stored in one transaction, in order", body = Vec<Event>),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn send_batch(
    State(s): State<AppState>,
    ApiJson(events): ApiJson<Vec<NewEvent>>,
) -> ApiResult<Json<Vec<Event>>> {
    if events.is_empty() || events.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH} events, not {}",
            events.len()
        )));
    }
    let stored = s.notifier.send_batch(events).await?;
    s.metrics.events_sent.inc_by(stored.len() as u64);
    Ok(Json(stored))
}

#[utoipa::path(get, path = "/api/events", tag = "events", params(EventQuery),
    responses((status = 200, body = Vec<Event>), (status = 400, body = ErrorBody)))]
async fn list_events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    let events = s
        .notifier
        .store()
        .list_events(&q.filter(), q.after.unwrap_or(0), q.limit()?)
        .await?;
    Ok(Json(events))
}

#[utoipa::path(get, path = "/api/events/listen", tag = "events", params(EventQuery),
    responses((status = 200, description = "Events after `after`; empty when the timeout passed first (or the server is shutting down)", body = Vec<Event>),
              (status = 400, body = ErrorBody), (status = 429, description = "Too many waiting listeners", body = ErrorBody)))]
async fn listen_events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000)).min(MAX_LISTEN);
    let (filter, after, limit) = (q.filter(), q.after.unwrap_or(0), q.limit()?);
    let _permit = s.listener_permit()?;
    let mut shutdown = s.shutdown.clone();
    let events = tokio::select! {
        got = s.notifier.listen(&filter, after, limit, timeout) => got?,
        _ = shutdown.wait_for(|down| *down) => vec![],
    };
    Ok(Json(events))
}

#[utoipa::path(get, path = "/api/events/stream", tag = "events", params(EventQuery),
    responses((status = 200, description = "Server-sent events, one per event (`id` = offset, data = the event as JSON); ends when the server shuts down"),
              (status = 429, description = "Too many waiting listeners", body = ErrorBody)))]
async fn stream_events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    // Already shutting down: do not start.
    if *s.shutdown.borrow() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    let permit = s.listener_permit()?;
    let rx = s.notifier.subscribe(q.filter(), q.after.unwrap_or(0));
    let shutdown = s.shutdown.clone();
    // The permit lives as long as the stream; the subscription ends when the stream is
    // dropped (the client went away) or the server shuts down.
    let stream = futures::stream::unfold((rx, permit), move |(mut rx, permit)| {
        let mut shutdown = shutdown.clone();
        async move {
            let item = tokio::select! {
                item = rx.recv() => item?,
                _ = shutdown.wait_for(|down| *down) => return None,
            };
            let ev = match item {
                Ok(e) => SseEvent::default()
                    .id(e.offset.to_string())
                    .event("event")
                    .json_data(&e)
                    .unwrap_or_else(|_| SseEvent::default().event("error")),
                Err(e) => SseEvent::default().event("error").data(e.to_string()),
            };
            Some((Ok(ev), (rx, permit)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A model to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct NewModel {
    name: String,
    #[serde(default)]
    description: String,
}

#[utoipa::path(post, path = "/api/models", tag = "models", request_body = NewModel,
    responses((status = 201, body = Model), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn register_model(
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

/// Paging.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// Skip this many (default 0).
    offset: Option<u32>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/models", tag = "models", params(Page),
    responses((status = 200, body = Vec<Model>)))]
async fn list_models(
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
async fn get_model(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Model>> {
    Ok(Json(s.notifier.store().get_model(&name).await?))
}

/// A model's editable fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct ModelUpdate {
    description: String,
}

#[utoipa::path(patch, path = "/api/models/{name}", tag = "models", request_body = ModelUpdate,
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody)))]
async fn update_model(
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
async fn delete_model(
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
async fn create_version(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(v): ApiJson<NewModelVersion>,
) -> ApiResult<(StatusCode, Json<ModelVersion>)> {
    let created = s.notifier.store().create_model_version(&name, v).await?;
    s.after_write();
    Ok((StatusCode::CREATED, Json(created)))
}

/// Stage filter.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct StageQuery {
    /// Only versions in this stage.
    stage: Option<String>,
}

#[utoipa::path(get, path = "/api/models/{name}/versions", tag = "models",
    params(("name" = String, Path, description = "Model name"), StageQuery),
    responses((status = 200, body = Vec<ModelVersion>), (status = 404, body = ErrorBody)))]
async fn list_versions(
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
async fn get_version(
    State(s): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, i64)>,
) -> ApiResult<Json<ModelVersion>> {
    Ok(Json(
        s.notifier.store().get_model_version(&name, version).await?,
    ))
}

/// A stage to move to.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct StageChange {
    stage: ModelStage,
}

#[utoipa::path(put, path = "/api/models/{name}/versions/{version}/stage", tag = "models", request_body = StageChange,
    params(("name" = String, Path, description = "Model name"), ("version" = i64, Path, description = "Version number")),
    responses((status = 200, description = "Moved (a MODEL_<STAGE> event is written; deploying deprecates the previously deployed version)", body = ModelVersion),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn set_stage(
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

fn kind(k: &str) -> ApiResult<RecordKind> {
    Ok(k.parse::<RecordKind>()?)
}

/// A kind the generic routes may write: not one of the control layer's own records.
fn writable_kind(k: &str) -> ApiResult<RecordKind> {
    let kind = kind(k)?;
    if kind.is_internal() {
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
async fn create_record(
    State(s): State<AppState>,
    ApiPath(k): ApiPath<String>,
    ApiJson(r): ApiJson<NewRecord>,
) -> ApiResult<(StatusCode, Json<Record>)> {
    let rec = s
        .notifier
        .store()
        .create_record(writable_kind(&k)?, r)
        .await?;
    Ok((StatusCode::CREATED, Json(rec)))
}

/// Record listing filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RecordQuery {
    /// Only this project.
    project: Option<String>,
    /// Only records owned by this parent.
    parent: Option<String>,
    /// Skip this many (default 0).
    offset: Option<u32>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/meta/{kind}", tag = "metadata",
    params(("kind" = String, Path, description = "Record kind"), RecordQuery),
    responses((status = 200, body = Vec<Record>), (status = 400, body = ErrorBody)))]
async fn list_records(
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
async fn get_record(
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

/// A new body, optionally only if the record is still at `revision`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RecordUpdate {
    #[schema(value_type = Object)]
    body: serde_json::Value,
    revision: Option<i64>,
}

#[utoipa::path(put, path = "/api/meta/{kind}/{project}/{name}", tag = "metadata", request_body = RecordUpdate,
    params(("kind" = String, Path, description = "Record kind"), ("project" = String, Path, description = "Project"), ("name" = String, Path, description = "Name")),
    responses((status = 200, body = Record), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn update_record(
    State(s): State<AppState>,
    ApiPath((k, project, name)): ApiPath<(String, String, String)>,
    ApiJson(u): ApiJson<RecordUpdate>,
) -> ApiResult<Json<Record>> {
    let rec = s
        .notifier
        .store()
        .update_record(writable_kind(&k)?, &project, &name, u.body, u.revision)
        .await?;
    Ok(Json(rec))
}

#[utoipa::path(delete, path = "/api/meta/{kind}/{project}/{name}", tag = "metadata",
    params(("kind" = String, Path, description = "Record kind"), ("project" = String, Path, description = "Project"), ("name" = String, Path, description = "Name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_record(
    State(s): State<AppState>,
    ApiPath((k, project, name)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.notifier
        .store()
        .delete_record(writable_kind(&k)?, &project, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where to store an artifact, and what it is.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ArtifactQuery {
    /// What the artifact is (model, dataset, report...; default `file`).
    kind: Option<String>,
}

#[utoipa::path(put, path = "/api/artifacts/{project}/{name}", tag = "metadata",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("project" = String, Path, description = "Project"), ("name" = String, Path, description = "Artifact name"), ArtifactQuery),
    responses((status = 200, description = "Stored under the artifact root (streamed to a temporary file of its own, hashed as it arrives, synced, renamed); its artifact record (uri, kind, content_hash, size) created or updated", body = Record),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 503, description = "The disk failed", body = ErrorBody), (status = 507, description = "The disk is full", body = ErrorBody)))]
async fn put_artifact(
    State(s): State<AppState>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ArtifactQuery>,
    body: axum::body::Body,
) -> ApiResult<Json<Record>> {
    use futures::StreamExt;
    // Validate the record first (project exists, name well-formed), then write the file.
    let store = s.notifier.store();
    store
        .get_record(RecordKind::Project, &project, &project)
        .await?;
    if name.contains('/') || name.is_empty() || name == ".." || name == "." {
        return Err(ApiError::bad_request(format!(
            "artifact name '{name}' is not a plain file name"
        )));
    }
    // The body goes to a writer on a blocking thread through a small bounded channel:
    // memory stays bounded whatever the size, and no async worker blocks on the disk.
    let upload = {
        let (artifacts, rel) = (s.artifacts.clone(), format!("{project}/{name}"));
        tokio::task::spawn_blocking(move || artifacts.begin(&rel)).await??
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || {
        let mut upload = upload;
        while let Some(chunk) = rx.blocking_recv() {
            upload.write(&chunk)?;
        }
        Ok::<_, ferroflow_meta::MetaError>(upload)
    });
    let mut stream = body.into_data_stream();
    let mut received = 0usize;
    let mut failed: Option<ApiError> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failed = Some(ApiError::bad_request(format!("reading the upload: {e}")));
                break;
            }
        };
        received += chunk.len();
        if received > ARTIFACT_LIMIT {
            failed = Some(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("artifacts are at most {ARTIFACT_LIMIT} bytes"),
            ));
            break;
        }
        if tx.send(chunk).await.is_err() {
            break; // the writer failed: its error is below
        }
    }
    drop(tx);
    let upload = writer.await??;
    if let Some(e) = failed {
        return Err(e); // the temporary file goes with `upload`
    }
    // One commit at a time: the file renamed last is the one the record describes.
    let _commit = s.artifact_commits.lock().await;
    let stored = tokio::task::spawn_blocking(move || upload.finish()).await??;
    let doc = serde_json::json!({
        "uri": stored.uri, "kind": q.kind.unwrap_or_else(|| "file".into()),
        "content_hash": format!("sha256:{}", stored.sha256), "size": stored.size,
    });
    let rec = match store
        .get_record(RecordKind::Artifact, &project, &name)
        .await
    {
        Ok(_) => {
            store
                .update_record(RecordKind::Artifact, &project, &name, doc, None)
                .await?
        }
        Err(_) => {
            store
                .create_record(
                    RecordKind::Artifact,
                    NewRecord {
                        project: project.clone(),
                        name: name.clone(),
                        parent: None,
                        body: doc,
                    },
                )
                .await?
        }
    };
    Ok(Json(rec))
}

#[utoipa::path(get, path = "/api/artifacts/{project}/{name}", tag = "metadata",
    params(("project" = String, Path, description = "Project"), ("name" = String, Path, description = "Artifact name")),
    responses((status = 200, description = "The artifact's bytes (streamed)", content_type = "application/octet-stream"), (status = 404, body = ErrorBody)))]
async fn get_artifact(
    State(s): State<AppState>,
    ApiPath((project, name)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    s.notifier
        .store()
        .get_record(RecordKind::Artifact, &project, &name)
        .await?;
    let path = s.artifacts.resolve(&format!("{project}/{name}"))?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::from(match e.kind() {
            std::io::ErrorKind::NotFound => ferroflow_meta::MetaError::NotFound {
                kind: "artifact file",
                name: format!("{project}/{name}"),
            },
            _ => ferroflow_meta::MetaError::Io {
                path: path.display().to_string(),
                source: e,
            },
        })
    })?;
    let stream = futures::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
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

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct NewToken {
    /// Unique name of its holder.
    name: String,
    /// viewer, operator or admin.
    role: Role,
}

/// A created token: the secret is shown this once and never again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    token: ApiToken,
    /// Send as `Authorization: Bearer <secret>`.
    secret: String,
}

#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, description = "Created; the secret is in this answer only", body = CreatedToken),
              (status = 409, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn create_token(
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
async fn list_tokens(State(s): State<AppState>) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json(s.store().list_tokens().await?))
}

#[utoipa::path(delete, path = "/api/tokens/{name}", tag = "tokens",
    params(("name" = String, Path, description = "Token name")),
    responses((status = 204, description = "Revoked: its secret stops working at once"), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(s): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.store().revoke_token(&name).await?;
    Ok(StatusCode::NO_CONTENT)
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
        .routes(routes!(send_event, list_events))
        .routes(routes!(send_batch))
        .routes(routes!(listen_events))
        .routes(routes!(stream_events))
        .routes(routes!(register_model, list_models))
        .routes(routes!(get_model, update_model, delete_model))
        .routes(routes!(create_version, list_versions))
        .routes(routes!(get_version))
        .routes(routes!(set_stage))
        .routes(routes!(create_record, list_records))
        .routes(routes!(get_record, update_record, delete_record))
        .routes(routes!(put_artifact, get_artifact).layer(DefaultBodyLimit::disable()))
        .routes(routes!(submit_workflow, list_workflows))
        .routes(routes!(start_execution, list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(stop_execution))
        .routes(routes!(list_job_executions))
        .routes(routes!(job_log))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
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
