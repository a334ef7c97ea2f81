//! Artifact routes: streamed uploads into the artifact store, and downloads.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferroflow_api::wire::{ArtifactQuery, ErrorBody};
use ferroflow_meta::{NewRecord, Record, RecordKind};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

/// Largest artifact upload (models can be large; other bodies keep the server's limit).
const ARTIFACT_LIMIT: usize = 1 << 30;

#[utoipa::path(put, path = "/api/artifacts/{project}/{name}", tag = "metadata",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("project" = String, Path, description = "Project"), ("name" = String, Path, description = "Artifact name"), ArtifactQuery),
    responses((status = 200, description = "Stored under the artifact root (streamed to a temporary file of its own, hashed as it arrives, synced, renamed); its artifact record (uri, kind, content_hash, size) created or updated", body = Record),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 503, description = "The disk failed", body = ErrorBody), (status = 507, description = "The disk is full", body = ErrorBody)))]
pub(crate) async fn put_artifact(
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
pub(crate) async fn get_artifact(
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
