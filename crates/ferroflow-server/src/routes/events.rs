//! Notification Service routes: send events (one or a batch), list them, long-poll for new
//! ones, or follow them as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use ferroflow_api::wire::{ErrorBody, EventQuery};
use ferroflow_meta::{Event, NewEvent};
use futures::Stream;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

/// The number of events a query asks for: at least 1 (default 1000), at most 10 000.
fn limit(q: &EventQuery) -> ApiResult<u32> {
    match q.limit.unwrap_or(1000) {
        0 => Err(ApiError::bad_request("limit must be at least 1")),
        n => Ok(n.min(10_000)),
    }
}

/// Longest a long-poll `listen` may wait.
const MAX_LISTEN: Duration = Duration::from_secs(60);

#[utoipa::path(post, path = "/api/events", tag = "events", request_body = NewEvent,
    responses((status = 200, description = "Stored (or already stored: same client id and sequence)", body = Event),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn send_event(
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
pub(crate) async fn send_batch(
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
pub(crate) async fn list_events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    let events = s
        .notifier
        .store()
        .list_events(&q.filter(), q.after.unwrap_or(0), limit(&q)?)
        .await?;
    Ok(Json(events))
}

#[utoipa::path(get, path = "/api/events/listen", tag = "events", params(EventQuery),
    responses((status = 200, description = "Events after `after`; empty when the timeout passed first (or the server is shutting down)", body = Vec<Event>),
              (status = 400, body = ErrorBody), (status = 429, description = "Too many waiting listeners", body = ErrorBody)))]
pub(crate) async fn listen_events(
    State(s): State<AppState>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000)).min(MAX_LISTEN);
    let (filter, after, limit) = (q.filter(), q.after.unwrap_or(0), limit(&q)?);
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
pub(crate) async fn stream_events(
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
