//! The ferroflow control-plane HTTP API from the caller's side.
//!
//! - [`wire`]: the request bodies, query strings and answers that are not store records.
//!   The server's handlers are written against the same types, so client and server cannot
//!   drift apart.
//! - [`Client`]: one typed method per API operation, written once over a [`Transport`]:
//!   [`HttpTransport`] for a server's URL, or the server's router called in the same
//!   process (`ferroflow_server::InProcess`), which is how the CLI works on an embedded
//!   store without a server: the same handlers, checks and limits either way.
//! - [`ClientError`]: not carried, refused by the API (status, code, message), or an
//!   answer of the wrong shape; each names the method and path.

mod client;
mod error;
#[cfg(feature = "http")]
mod http;
mod transport;
pub mod wire;

pub use client::Client;
pub use error::{ClientError, Refusal};
#[cfg(feature = "http")]
pub use http::HttpTransport;
pub use transport::{Method, Request, Response, Transport, TransportError};
