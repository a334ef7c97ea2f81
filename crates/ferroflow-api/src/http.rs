//! The HTTP transport: a blocking [`ureq`] agent with a bearer token, for a server's URL or
//! any JSON-over-HTTP service.

use std::time::Duration;

use crate::transport::{Method, Request, Response, Transport, TransportError};

/// Largest answer read (a job log is at most 4 MiB; lists are capped by the server).
const ANSWER_LIMIT: u64 = 64 << 20;

/// HTTP to `base` (e.g. `http://127.0.0.1:8420`), with `Authorization: Bearer <token>` when
/// a token is given.
#[derive(Clone)]
pub struct HttpTransport {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        write!(f, "HttpTransport({})", self.base)
    }
}

impl HttpTransport {
    /// A transport to `base` (a trailing `/` is dropped) that gives up on a request after
    /// `timeout` in all (connecting within 5 s).
    pub fn new(base: &str, token: Option<&str>, timeout: Duration) -> Self {
        HttpTransport {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .timeout_connect(Some(Duration::from_secs(5)))
                .build()
                .into(),
            base: base.trim_end_matches('/').to_string(),
            authorization: token.map(|t| format!("Bearer {t}")),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    }

    fn carry(&self, request: &Request) -> Result<Response, ureq::Error> {
        let url = format!("{}{}", self.base, request.path);
        let mut resp = match (request.method, &request.body) {
            (Method::Get, _) => self.auth(self.agent.get(&url)).call()?,
            (Method::Delete, _) => self.auth(self.agent.delete(&url)).call()?,
            (m, body) => {
                let r = match m {
                    Method::Put => self.agent.put(&url),
                    Method::Patch => self.agent.patch(&url),
                    _ => self.agent.post(&url),
                };
                let r = self.auth(r);
                match body {
                    Some((content_type, bytes)) => {
                        r.header("content-type", content_type).send(&bytes[..])?
                    }
                    None => r.send_empty()?,
                }
            }
        };
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_to_vec()?;
        Ok(Response { status, body })
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: Request) -> Result<Response, TransportError> {
        self.carry(&request).map_err(|e| TransportError {
            method: request.method,
            target: self.base.clone(),
            path: request.path,
            source: Box::new(e),
        })
    }

    fn target(&self) -> String {
        self.base.clone()
    }
}
