//! The ferroflow control-plane server: the Notification Service, the Model Center, the
//! Metadata Service and workflows (submit, start, stop, list) over HTTP/JSON (axum on tokio), described by an OpenAPI document generated from the handlers
//! and served at `/api/openapi.json`.
//!
//! - Binds 127.0.0.1 by default; bound to any other address it refuses to start without a
//!   bearer token, and with a token every `/api` route but `/api/health` requires it.
//! - Errors are JSON `{code, message, details}` with a 4xx status for anything the client got
//!   wrong; request bodies are limited in size.
//! - `/metrics` serves Prometheus text; shutdown is graceful.

#![warn(missing_docs, unreachable_pub)]

mod api;
mod error;
mod workflows;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferroflow_meta::{ArtifactStore, MetaStore, Notifier, PostgresStore, SqliteStore};

pub use api::{AppState, router};
pub use error::{ApiError, ErrorBody};

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free one).
    pub bind: SocketAddr,
    /// Directory of the embedded SQLite database (`<data_dir>/meta.db`) and of the artifact
    /// store (`<data_dir>/artifacts`).
    pub data_dir: PathBuf,
    /// PostgreSQL URL; when set it is used instead of the SQLite file.
    pub database_url: Option<String>,
    /// Bearer token clients must send; required when `bind` is not a loopback address.
    pub token: Option<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Job types workflow submissions are checked against.
    pub job_types: ferroflow_workflow::PluginRegistry,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8420)),
            data_dir: PathBuf::from(".ferroflow"),
            database_url: None,
            token: None,
            body_limit: 1 << 20,
            job_types: ferroflow_workflow::PluginRegistry::with_builtin(),
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A setting is unsafe or inconsistent.
    #[error("{0}")]
    Config(String),
    /// The store could not be opened.
    #[error("opening the store: {0}")]
    Store(#[from] ferroflow_meta::MetaError),
    /// The address could not be bound or the server failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Open the store named by `config`.
pub async fn open_store(config: &ServerConfig) -> Result<Arc<dyn MetaStore>, ServerError> {
    Ok(match &config.database_url {
        Some(url) => Arc::new(PostgresStore::connect(url).await?),
        None => Arc::new(SqliteStore::open(&config.data_dir.join("meta.db")).await?),
    })
}

/// A bound, ready server.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: axum::Router,
}

impl Server {
    /// Check the settings, open the store and bind the address.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        if !config.bind.ip().is_loopback() && config.token.is_none() {
            return Err(ServerError::Config(format!(
                "refusing to listen on {} without a token: set FERROFLOW_TOKEN (or --token), or bind 127.0.0.1",
                config.bind
            )));
        }
        let store = open_store(&config).await?;
        let artifacts = ArtifactStore::open(&config.data_dir.join("artifacts"))?;
        let state = AppState::new(Notifier::new(store), artifacts, config.token.clone())
            .with_job_types(config.job_types.clone());
        let (app, _) = router(state, config.body_limit);
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| ServerError::Io {
                context: format!("binding {}", config.bind),
                source: e,
            })?;
        Ok(Server { listener, app })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(|e| ServerError::Io {
            context: "reading the bound address".into(),
            source: e,
        })
    }

    /// Serve until `shutdown` completes, then finish in-flight requests and return.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| ServerError::Io {
                context: "serving".into(),
                source: e,
            })
    }
}
