//! The ferroflow control-plane server: the Notification Service, the Model Center, the
//! Metadata Service and workflows (submit, start, stop, list) over HTTP/JSON (axum on tokio), described by an OpenAPI document generated from the handlers
//! and served at `/api/openapi.json`.
//!
//! - Authentication is always on: every route but `/api/health` needs a bearer token with a
//!   role (viewer, operator, admin; see [`auth`]). The admin token is `--token` or, at first
//!   start, a new one written to `<data_dir>/token` (mode 0600) where the CLI finds it.
//! - Binds 127.0.0.1 by default and then answers only requests whose `Host` is a loopback
//!   name (or one allowed with `--allowed-host`); a browser request must come from the
//!   server's own origin (DNS rebinding and cross-site requests are refused).
//! - Errors are JSON `{code, message, details}` with a 4xx status for anything the client got
//!   wrong; request bodies are limited in size.
//! - `/metrics` serves Prometheus text; shutdown is graceful.

pub mod auth;
mod error;
mod extract;
mod in_process;
mod router;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ferroflow_meta::{ArtifactStore, MetaStore, Notifier, PostgresStore, SqliteStore};

pub use error::{ApiError, ErrorBody};
pub use in_process::InProcess;
pub use router::router;
pub use state::{AppState, DEFAULT_MAX_LISTENERS};

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
    /// The admin token; `None`: the data directory's `token` file (made at first start).
    pub token: Option<String>,
    /// Host names requests may be addressed to besides the loopback names (bound to
    /// loopback); bound elsewhere, the only names allowed when any are given.
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed besides the server's own (`http://host:port`).
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Waiting clients (long polls, event streams) served at once; more get 429.
    pub max_listeners: usize,
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
            allowed_hosts: vec![],
            allowed_origins: vec![],
            body_limit: 1 << 20,
            max_listeners: state::DEFAULT_MAX_LISTENERS,
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
    /// The admin token could not be read or made.
    #[error(transparent)]
    Token(#[from] auth::TokenFileError),
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
    down: tokio::sync::watch::Sender<bool>,
}

impl Server {
    /// Check the settings, open the store and bind the address.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let admin = match &config.token {
            Some(t) => t.clone(),
            None => auth::load_or_create_token(&config.data_dir)?,
        };
        let mut hosts = config.allowed_hosts.clone();
        if config.bind.ip().is_loopback() {
            hosts.extend(auth::LOOPBACK_HOSTS.iter().map(|h| h.to_string()));
        }
        let auth = auth::AuthConfig::new(&admin, hosts, config.allowed_origins.clone())
            .map_err(|e| ServerError::Config(format!("the admin token: {e}")))?;
        let store = open_store(&config).await?;
        let artifacts = ArtifactStore::open(&config.data_dir.join("artifacts"))?;
        let data_dir = std::path::absolute(&config.data_dir).map_err(|e| ServerError::Io {
            context: format!("resolving {}", config.data_dir.display()),
            source: e,
        })?;
        let (down, shutdown) = tokio::sync::watch::channel(false);
        let state = AppState::new(Notifier::new(store), artifacts, auth, data_dir.join("logs"))
            .with_job_types(config.job_types.clone())
            .with_max_listeners(config.max_listeners)
            .with_shutdown(shutdown);
        let (app, _) = router(state, config.body_limit);
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| ServerError::Io {
                context: format!("binding {}", config.bind),
                source: e,
            })?;
        Ok(Server {
            listener,
            app,
            down,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener.local_addr().map_err(|e| ServerError::Io {
            context: "reading the bound address".into(),
            source: e,
        })
    }

    /// Serve until `shutdown` completes, then end long polls and event streams, finish
    /// in-flight requests and return.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let down = self.down;
        axum::serve(self.listener, self.app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = down.send(true);
            })
            .await
            .map_err(|e| ServerError::Io {
                context: "serving".into(),
                source: e,
            })
    }
}
