//! Why a call failed: not carried, refused by the API, or an answer that is not what the
//! API documents.

use crate::transport::{Method, TransportError};

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer came back.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The API answered with an error status.
    #[error(transparent)]
    Api(Box<Refusal>),
    /// A 2xx answer whose body is not the documented type.
    #[error("{method} {path}: the answer is not {what}")]
    Decode {
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// What was expected.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be encoded.
    #[error("encoding the request to {path}")]
    Encode {
        /// The path.
        path: String,
        /// The encoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {status} {code}: {message}")]
pub struct Refusal {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// HTTP status (4xx: the request was wrong; 5xx: the server failed).
    pub status: u16,
    /// The API's stable error code (`not_found`, `forbidden`, ...).
    pub code: String,
    /// The API's message.
    pub message: String,
    /// Its structured detail, when it gave some.
    pub details: Option<serde_json::Value>,
}

impl ClientError {
    /// The HTTP status of an API error (`None` for the other kinds).
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api(r) => Some(r.status),
            _ => None,
        }
    }

    /// The API's error code (`None` for the other kinds).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api(r) => Some(&r.code),
            _ => None,
        }
    }
}
