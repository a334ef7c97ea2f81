//! What carries a request to the API and its answer back: HTTP to a server, or the server's
//! router called in the same process. The [`Client`](crate::Client) is written once against
//! this trait.

use std::error::Error as StdError;

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// The method's name (`GET`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Path and query string (`/api/models?limit=5`), segments already encoded.
    pub path: String,
    /// The body and its content type.
    pub body: Option<(String, Vec<u8>)>,
}

/// One answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// The request could not be carried (no answer, whatever its status, came back).
#[derive(Debug, thiserror::Error)]
#[error("{method} {target}{path}: no answer")]
pub struct TransportError {
    /// The method.
    pub method: Method,
    /// Where it was sent (a URL, or `in-process`).
    pub target: String,
    /// The path.
    pub path: String,
    /// Why.
    #[source]
    pub source: Box<dyn StdError + Send + Sync>,
}

/// Carries requests to the API.
pub trait Transport: Send + Sync {
    /// Send `request`; an answer with any status is `Ok`.
    fn send(&self, request: Request) -> Result<Response, TransportError>;

    /// Where requests go, for messages (a base URL, or `in-process`).
    fn target(&self) -> String;
}
