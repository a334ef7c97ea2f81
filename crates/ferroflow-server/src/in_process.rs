//! The API without a server: the same router, called in this process. The CLI uses it on
//! an embedded store, so a command behaves the same with and without `--server`: the same
//! handlers, checks and limits, and no second implementation of the API's semantics.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use ferroflow_api::{Method, Request, Response, Transport, TransportError};
use ferroflow_meta::{ArtifactStore, MetaStore, Notifier, SqliteStore};
use ferroflow_workflow::PluginRegistry;
use tower::ServiceExt;

use crate::auth::{AuthConfig, LOOPBACK_HOSTS};
use crate::state::AppState;
use crate::{ServerConfig, ServerError};

/// Largest answer read (a job log is at most 4 MiB; lists are capped by the handlers).
const ANSWER_LIMIT: usize = 64 << 20;

/// A [`Transport`] that hands each request to the router on a runtime of its own. It holds
/// an admin token of its own, made at start and never written anywhere: whoever can open
/// the data directory's store already controls everything in it. For the same reason it
/// may write the control layer's own record kinds through `/api/meta` (still checked by
/// kind), which a server on a socket refuses.
pub struct InProcess {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    authorization: String,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcess")
    }
}

fn io(context: &str, source: std::io::Error) -> ServerError {
    ServerError::Io {
        context: context.to_string(),
        source,
    }
}

impl InProcess {
    /// The API over the SQLite store of `data_dir` (`<data_dir>/meta.db`, made if missing),
    /// checking workflow submissions against `job_types`.
    pub fn open_sqlite(data_dir: &Path, job_types: PluginRegistry) -> Result<Self, ServerError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io("starting a runtime", e))?;
        let store: Arc<dyn MetaStore> =
            Arc::new(rt.block_on(SqliteStore::open(&data_dir.join("meta.db")))?);
        Self::new(rt, store, data_dir, job_types)
    }

    /// The API over `store`, with artifacts and job logs where a server on `data_dir` keeps
    /// them; `rt` runs the handlers.
    pub fn new(
        rt: tokio::runtime::Runtime,
        store: Arc<dyn MetaStore>,
        data_dir: &Path,
        job_types: PluginRegistry,
    ) -> Result<Self, ServerError> {
        let secret = ferroflow_meta::new_secret()?;
        let hosts = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        let auth = AuthConfig::new(&secret, hosts, vec![])?;
        let artifacts = ArtifactStore::open(&data_dir.join("artifacts"))?;
        let data_dir = std::path::absolute(data_dir)
            .map_err(|e| io(&format!("resolving {}", data_dir.display()), e))?;
        let state = AppState::new(Notifier::new(store), artifacts, auth, data_dir.join("logs"))
            .with_job_types(job_types)
            .for_store_owner();
        let (app, _) = crate::router(state, ServerConfig::default().body_limit);
        Ok(InProcess {
            rt,
            app,
            authorization: format!("Bearer {secret}"),
        })
    }

    async fn carry(
        &self,
        request: Request,
    ) -> Result<Response, Box<dyn std::error::Error + Send + Sync>> {
        let method = match request.method {
            Method::Get => axum::http::Method::GET,
            Method::Post => axum::http::Method::POST,
            Method::Put => axum::http::Method::PUT,
            Method::Patch => axum::http::Method::PATCH,
            Method::Delete => axum::http::Method::DELETE,
        };
        let mut builder = axum::http::Request::builder()
            .method(method)
            .uri(&request.path)
            .header(header::HOST, "localhost")
            .header(header::AUTHORIZATION, &self.authorization);
        let body = match request.body {
            Some((content_type, bytes)) => {
                builder = builder.header(header::CONTENT_TYPE, content_type);
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let resp = self.app.clone().oneshot(builder.body(body)?).await?;
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), ANSWER_LIMIT).await?;
        Ok(Response {
            status,
            body: body.to_vec(),
        })
    }
}

impl Transport for InProcess {
    fn send(&self, request: Request) -> Result<Response, TransportError> {
        let (method, path) = (request.method, request.path.clone());
        self.rt
            .block_on(self.carry(request))
            .map_err(|source| TransportError {
                method,
                target: self.target(),
                path,
                source,
            })
    }

    fn target(&self) -> String {
        "in-process".into()
    }
}
