//! The state every handler shares: the store's notifier, job types, artifacts, auth,
//! metrics and the limits on waiting clients.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::http::StatusCode;
use ferroflow_meta::{ArtifactStore, Notifier};
use ferroflow_workflow::PluginRegistry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::auth::AuthConfig;
use crate::error::{ApiError, ApiResult};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub(crate) notifier: Notifier,
    pub(crate) job_types: PluginRegistry,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) auth: AuthConfig,
    pub(crate) log_root: Arc<std::path::Path>,
    pub(crate) metrics: Arc<Metrics>,
    /// Permits for waiting clients (long polls and streams): beyond them, 429.
    pub(crate) listeners: Arc<tokio::sync::Semaphore>,
    /// Becomes `true` when the server shuts down: waits and streams end.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Held while an upload is renamed into place and its record written.
    pub(crate) artifact_commits: Arc<tokio::sync::Mutex<()>>,
    /// The caller opened the data directory itself (the in-process API): it may write the
    /// control layer's own records through the generic routes, still checked by kind, as
    /// it could by opening the store. Never set for a server on a socket.
    pub(crate) store_owner: bool,
}

/// Waiting clients (long-poll listeners and event streams) a server serves at once by
/// default.
pub const DEFAULT_MAX_LISTENERS: usize = 1024;

pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    pub(crate) requests: Family<Vec<(String, String)>, Counter>,
    pub(crate) events_sent: Counter<u64, AtomicU64>,
}

impl AppState {
    /// State over a notifier (and its store) and an artifact directory, checking requests
    /// with `auth`; job logs are served only from under `log_root`.
    pub fn new(
        notifier: Notifier,
        artifacts: ArtifactStore,
        auth: AuthConfig,
        log_root: std::path::PathBuf,
    ) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Vec<(String, String)>, Counter>::default();
        let events_sent = Counter::<u64, AtomicU64>::default();
        registry.register(
            "ferroflow_http_requests",
            "HTTP requests by status class",
            requests.clone(),
        );
        registry.register(
            "ferroflow_events_sent",
            "Events stored through the API",
            events_sent.clone(),
        );
        AppState {
            notifier,
            job_types: PluginRegistry::with_builtin(),
            artifacts,
            auth,
            log_root: Arc::from(log_root),
            listeners: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_LISTENERS)),
            shutdown: tokio::sync::watch::channel(false).1,
            artifact_commits: Arc::default(),
            store_owner: false,
            metrics: Arc::new(Metrics {
                registry,
                requests,
                events_sent,
            }),
        }
    }

    /// At most `n` waiting clients at once (default [`DEFAULT_MAX_LISTENERS`]).
    pub fn with_max_listeners(mut self, n: usize) -> Self {
        self.listeners = Arc::new(tokio::sync::Semaphore::new(n));
        self
    }

    /// End long polls and event streams when `shutdown` becomes `true` (graceful shutdown
    /// otherwise waits for them).
    pub fn with_shutdown(mut self, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// A permit for one more waiting client, or 429.
    pub(crate) fn listener_permit(&self) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        self.listeners.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_listeners",
                "this server has as many waiting listeners as it serves; retry later",
            )
        })
    }

    /// Job types workflow submissions are checked against (default: the built-in ones).
    pub fn with_job_types(mut self, job_types: PluginRegistry) -> Self {
        self.job_types = job_types;
        self
    }

    /// Handlers serve the data directory's owner (see [`AppState::store_owner`]).
    pub(crate) fn for_store_owner(mut self) -> Self {
        self.store_owner = true;
        self
    }

    pub(crate) fn store(&self) -> &dyn ferroflow_meta::MetaStore {
        &**self.notifier.store()
    }

    pub(crate) fn job_types(&self) -> &PluginRegistry {
        &self.job_types
    }

    pub(crate) fn log_root(&self) -> &std::path::Path {
        &self.log_root
    }

    /// Wake listeners after a write that did not go through the notifier (its events were
    /// written by the store itself).
    pub(crate) fn after_write(&self) {
        self.notifier.written();
    }
}
