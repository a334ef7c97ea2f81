//! Errors as the API returns them: a status and `{code, message, details}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use ferroflow_api::wire::ErrorBody;
use ferroflow_meta::MetaError;

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    // Boxed: handlers return `Result<_, ApiError>` everywhere, and the body is large.
    body: Box<ErrorBody>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                code: code.into(),
                message: message.into(),
                details: None,
            }),
        }
    }

    /// 400 with code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        let message = e.to_string();
        match e {
            MetaError::NotFound { kind, name } => {
                let mut err = ApiError::new(StatusCode::NOT_FOUND, "not_found", message);
                err.body.details = Some(serde_json::json!({"kind": kind, "name": name}));
                err
            }
            MetaError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message)
            }
            MetaError::InvalidTransition {
                from, to, allowed, ..
            } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, "invalid_transition", message);
                err.body.details =
                    Some(serde_json::json!({"from": from, "to": to, "allowed": allowed}));
                err
            }
            MetaError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            MetaError::Invalid { field, .. } => {
                let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid", message);
                err.body.details = Some(serde_json::json!({"field": field}));
                err
            }
            MetaError::Io { ref source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "storage_full", message)
            }
            // The store is busy or failing: the client may retry.
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                message,
            ),
        }
    }
}

/// A blocking task (file I/O) panicked or was cancelled: the server's fault.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            _ => "malformed_json",
        };
        ApiError::new(status, code, r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Result of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;
