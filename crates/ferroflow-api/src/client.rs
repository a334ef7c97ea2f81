//! The typed client: one method per API operation, over any [`Transport`].

use std::sync::Arc;

use ferroflow_meta::{
    ApiToken, Event, Model, ModelStage, ModelVersion, NewEvent, NewModelVersion, NewRecord, Record,
    RecordKind, Role,
};
use ferroflow_workflow::service::{ExecutionInfo, JobExecutionInfo, WorkflowInfo};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ClientError, Refusal};
use crate::transport::{Method, Request, Transport};
use crate::wire::{
    CreatedToken, ErrorBody, EventQuery, Health, LogQuery, ModelUpdate, NewModel, NewToken, Page,
    RecordQuery, RecordUpdate, StageChange, StageQuery, Started, SubmitRequest, WorkflowQuery,
};

/// Characters a path segment keeps as they are (RFC 3986 unreserved); the rest are
/// percent-encoded, so a name can never add a segment or a query.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one path segment.
fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A client of the control-plane API. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.transport.target())
    }
}

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// A client over `transport`.
    pub fn new(transport: impl Transport + 'static) -> Self {
        Client {
            transport: Arc::new(transport),
        }
    }

    /// A client of the server at `base` (e.g. `http://127.0.0.1:8420`) with a bearer token;
    /// requests give up after two minutes.
    #[cfg(feature = "http")]
    pub fn http(base: &str, token: Option<&str>) -> Self {
        Client::new(crate::http::HttpTransport::new(
            base,
            token,
            std::time::Duration::from_secs(120),
        ))
    }

    /// Where requests go.
    pub fn target(&self) -> String {
        self.transport.target()
    }

    /// Send one request; a non-2xx answer becomes [`ClientError::Api`].
    fn raw(&self, method: Method, path: String, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let resp = self.transport.send(Request {
            method,
            path: path.clone(),
            body: body.map(|b| ("application/json".to_string(), b)),
        })?;
        if (200..300).contains(&resp.status) {
            return Ok(resp.body);
        }
        // The API answers errors as ErrorBody; a proxy in between may not.
        let (code, message, details) = match serde_json::from_slice::<ErrorBody>(&resp.body) {
            Ok(e) => (e.code.into_owned(), e.message, e.details),
            Err(_) => (
                "unexpected_answer".to_string(),
                String::from_utf8_lossy(&resp.body[..resp.body.len().min(2000)]).into_owned(),
                None,
            ),
        };
        Err(ClientError::Api(Box::new(Refusal {
            method,
            path,
            status: resp.status,
            code,
            message,
            details,
        })))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: Option<&impl Serialize>,
        what: &'static str,
    ) -> Result<T> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Encode {
                path: path.clone(),
                source: Box::new(e),
            })?;
        let bytes = self.raw(method, path.clone(), body)?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method,
            path,
            what,
            source,
        })
    }

    fn get<T: DeserializeOwned>(&self, path: String, what: &'static str) -> Result<T> {
        self.call(Method::Get, path, None::<&()>, what)
    }

    /// A call whose answer has no body worth reading (204, 202).
    fn act(&self, method: Method, path: String) -> Result<()> {
        self.raw(method, path, None).map(drop)
    }

    /// `path?query`, or `path` when the query is empty.
    fn with_query(path: String, query: &impl Serialize) -> Result<String> {
        let q = serde_urlencoded::to_string(query).map_err(|e| ClientError::Encode {
            path: path.clone(),
            source: Box::new(e),
        })?;
        Ok(if q.is_empty() {
            path
        } else {
            format!("{path}?{q}")
        })
    }

    /// `GET /api/health` (needs no token).
    pub fn health(&self) -> Result<Health> {
        self.get("/api/health".into(), "a health report")
    }

    // --- Notification Service ---

    /// Store an event (or find it already stored: same client id and sequence).
    pub fn send_event(&self, event: &NewEvent) -> Result<Event> {
        self.call(Method::Post, "/api/events".into(), Some(event), "an event")
    }

    /// Store events in one transaction, in order.
    pub fn send_events(&self, events: &[NewEvent]) -> Result<Vec<Event>> {
        self.call(
            Method::Post,
            "/api/events/batch".into(),
            Some(&events),
            "a list of events",
        )
    }

    /// Events matching `query`, oldest first.
    pub fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let path = Self::with_query("/api/events".into(), query)?;
        self.get(path, "a list of events")
    }

    /// Wait (up to `query.timeout_ms`, at most a minute) for events after `query.after`;
    /// empty when none came.
    pub fn listen_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let path = Self::with_query("/api/events/listen".into(), query)?;
        self.get(path, "a list of events")
    }

    // --- Model Center ---

    /// Register a model.
    pub fn register_model(&self, name: &str, description: &str) -> Result<Model> {
        let m = NewModel {
            name: name.into(),
            description: description.into(),
        };
        self.call(Method::Post, "/api/models".into(), Some(&m), "a model")
    }

    /// Registered models.
    pub fn list_models(&self, page: Page) -> Result<Vec<Model>> {
        let path = Self::with_query("/api/models".into(), &page)?;
        self.get(path, "a list of models")
    }

    /// One model.
    pub fn get_model(&self, name: &str) -> Result<Model> {
        self.get(format!("/api/models/{}", seg(name)), "a model")
    }

    /// Change a model's description.
    pub fn update_model(&self, name: &str, description: &str) -> Result<Model> {
        let u = ModelUpdate {
            description: description.into(),
        };
        self.call(
            Method::Patch,
            format!("/api/models/{}", seg(name)),
            Some(&u),
            "a model",
        )
    }

    /// Remove a model whose versions are all DELETED.
    pub fn delete_model(&self, name: &str) -> Result<()> {
        self.act(Method::Delete, format!("/api/models/{}", seg(name)))
    }

    /// Create a model's next version (stage GENERATED).
    pub fn create_model_version(
        &self,
        model: &str,
        version: &NewModelVersion,
    ) -> Result<ModelVersion> {
        self.call(
            Method::Post,
            format!("/api/models/{}/versions", seg(model)),
            Some(version),
            "a model version",
        )
    }

    /// A model's versions, optionally only those in one stage.
    pub fn list_model_versions(
        &self,
        model: &str,
        stage: Option<ModelStage>,
    ) -> Result<Vec<ModelVersion>> {
        let q = StageQuery {
            stage: stage.map(|s| s.as_str().to_string()),
        };
        let path = Self::with_query(format!("/api/models/{}/versions", seg(model)), &q)?;
        self.get(path, "a list of model versions")
    }

    /// One version of a model.
    pub fn get_model_version(&self, model: &str, version: i64) -> Result<ModelVersion> {
        self.get(
            format!("/api/models/{}/versions/{version}", seg(model)),
            "a model version",
        )
    }

    /// Move a version to a stage.
    pub fn set_model_stage(
        &self,
        model: &str,
        version: i64,
        stage: ModelStage,
    ) -> Result<ModelVersion> {
        self.call(
            Method::Put,
            format!("/api/models/{}/versions/{version}/stage", seg(model)),
            Some(&StageChange { stage }),
            "a model version",
        )
    }

    // --- Metadata Service ---

    fn record_path(kind: RecordKind, project: &str, name: &str) -> String {
        format!("/api/meta/{kind}/{}/{}", seg(project), seg(name))
    }

    /// Create a record.
    pub fn create_record(&self, kind: RecordKind, record: &NewRecord) -> Result<Record> {
        self.call(
            Method::Post,
            format!("/api/meta/{kind}"),
            Some(record),
            "a record",
        )
    }

    /// One record.
    pub fn get_record(&self, kind: RecordKind, project: &str, name: &str) -> Result<Record> {
        self.get(Self::record_path(kind, project, name), "a record")
    }

    /// Replace a record's body (only if still at `update.revision`, when given).
    pub fn update_record(
        &self,
        kind: RecordKind,
        project: &str,
        name: &str,
        update: &RecordUpdate,
    ) -> Result<Record> {
        self.call(
            Method::Put,
            Self::record_path(kind, project, name),
            Some(update),
            "a record",
        )
    }

    /// Delete a record.
    pub fn delete_record(&self, kind: RecordKind, project: &str, name: &str) -> Result<()> {
        self.act(Method::Delete, Self::record_path(kind, project, name))
    }

    /// Records of a kind.
    pub fn list_records(&self, kind: RecordKind, query: &RecordQuery) -> Result<Vec<Record>> {
        let path = Self::with_query(format!("/api/meta/{kind}"), query)?;
        self.get(path, "a list of records")
    }

    // --- Workflows ---

    /// Check a spec and store it; new executions run this version.
    pub fn submit_workflow(&self, request: &SubmitRequest) -> Result<WorkflowInfo> {
        self.call(
            Method::Post,
            "/api/workflows".into(),
            Some(request),
            "a workflow",
        )
    }

    /// Submitted workflows, optionally of one project.
    pub fn list_workflows(&self, project: Option<&str>) -> Result<Vec<WorkflowInfo>> {
        let q = WorkflowQuery {
            project: project.map(String::from),
        };
        let path = Self::with_query("/api/workflows".into(), &q)?;
        self.get(path, "a list of workflows")
    }

    /// Start a new execution of a workflow.
    pub fn start_execution(&self, project: &str, workflow: &str) -> Result<Started> {
        self.call(
            Method::Post,
            format!(
                "/api/workflows/{}/{}/executions",
                seg(project),
                seg(workflow)
            ),
            None::<&()>,
            "a started execution",
        )
    }

    /// A workflow's executions, oldest first.
    pub fn executions(&self, project: &str, workflow: &str) -> Result<Vec<ExecutionInfo>> {
        self.get(
            format!(
                "/api/workflows/{}/{}/executions",
                seg(project),
                seg(workflow)
            ),
            "a list of executions",
        )
    }

    /// One execution.
    pub fn execution(&self, project: &str, execution: &str) -> Result<ExecutionInfo> {
        self.get(
            format!("/api/executions/{}/{}", seg(project), seg(execution)),
            "an execution",
        )
    }

    /// Ask the scheduler to stop an execution and its jobs.
    pub fn stop_execution(&self, project: &str, execution: &str) -> Result<()> {
        self.act(
            Method::Post,
            format!("/api/executions/{}/{}/stop", seg(project), seg(execution)),
        )
    }

    /// An execution's job executions, in creation order.
    pub fn job_executions(&self, project: &str, execution: &str) -> Result<Vec<JobExecutionInfo>> {
        self.get(
            format!("/api/executions/{}/{}/jobs", seg(project), seg(execution)),
            "a list of job executions",
        )
    }

    /// The log of a job's newest run in an execution (or of run `attempt`), its last 4 MiB.
    pub fn job_log(
        &self,
        project: &str,
        execution: &str,
        job: &str,
        attempt: Option<u32>,
    ) -> Result<String> {
        let path = Self::with_query(
            format!(
                "/api/executions/{}/{}/jobs/{}/log",
                seg(project),
                seg(execution),
                seg(job)
            ),
            &LogQuery { attempt },
        )?;
        let bytes = self.raw(Method::Get, path, None)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    // --- Tokens ---

    /// Create a token; its secret is in this answer only.
    pub fn create_token(&self, name: &str, role: Role) -> Result<CreatedToken> {
        let t = NewToken {
            name: name.into(),
            role,
        };
        self.call(Method::Post, "/api/tokens".into(), Some(&t), "a token")
    }

    /// Tokens (names and roles, never secrets).
    pub fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        self.get("/api/tokens".into(), "a list of tokens")
    }

    /// Revoke a token: its secret stops working at once.
    pub fn revoke_token(&self, name: &str) -> Result<()> {
        self.act(Method::Delete, format!("/api/tokens/{}", seg(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Response, TransportError};
    use std::sync::Mutex;

    /// Answers every request with one canned response and keeps what it was sent.
    struct Canned {
        status: u16,
        body: &'static str,
        sent: Mutex<Vec<Request>>,
    }

    impl Transport for Canned {
        fn send(&self, request: Request) -> std::result::Result<Response, TransportError> {
            self.sent.lock().unwrap().push(request);
            Ok(Response {
                status: self.status,
                body: self.body.as_bytes().to_vec(),
            })
        }
        fn target(&self) -> String {
            "canned".into()
        }
    }

    fn canned(status: u16, body: &'static str) -> (Client, Arc<Canned>) {
        let t = Arc::new(Canned {
            status,
            body,
            sent: Mutex::default(),
        });
        (
            Client {
                transport: t.clone(),
            },
            t,
        )
    }

    #[test]
    fn names_cannot_add_path_segments_or_queries() {
        let (c, t) = canned(204, "");
        c.revoke_token("../x?y=1#z").unwrap();
        c.get_record(RecordKind::Dataset, "p/q", "a b").unwrap_err();
        let sent = t.sent.lock().unwrap();
        assert_eq!(sent[0].path, "/api/tokens/..%2Fx%3Fy%3D1%23z");
        assert_eq!(sent[0].method, Method::Delete);
        assert_eq!(sent[1].path, "/api/meta/dataset/p%2Fq/a%20b");
    }

    #[test]
    fn error_answers_keep_status_code_and_message() {
        let (c, _) = canned(
            404,
            r#"{"code":"not_found","message":"model 'm' not found","details":{"kind":"model"}}"#,
        );
        let e = c.get_model("m").unwrap_err();
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.code(), Some("not_found"));
        assert_eq!(
            e.to_string(),
            "GET /api/models/m: 404 not_found: model 'm' not found"
        );
        let (c, _) = canned(502, "<html>bad gateway</html>");
        let e = c.list_tokens().unwrap_err();
        assert_eq!(e.code(), Some("unexpected_answer"));
        assert!(e.to_string().contains("bad gateway"), "{e}");
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_a_decode_error_naming_the_call() {
        let (c, _) = canned(200, r#"{"not":"a list"}"#);
        let e = c.list_models(Page::default()).unwrap_err();
        assert!(matches!(e, ClientError::Decode { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "GET /api/models: the answer is not a list of models"
        );
    }

    #[test]
    fn queries_and_bodies_are_sent_as_json_and_form_encoding() {
        let (c, t) = canned(200, "[]");
        c.list_model_versions("m", Some(ModelStage::Deployed))
            .unwrap();
        c.list_records(
            RecordKind::Metric,
            &RecordQuery {
                parent: Some("model:ctr/3".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let sent = t.sent.lock().unwrap();
        assert_eq!(sent[0].path, "/api/models/m/versions?stage=DEPLOYED");
        assert_eq!(sent[1].path, "/api/meta/metric?parent=model%3Actr%2F3");
        assert!(sent[0].body.is_none());
        drop(sent);
        let (c, t) = canned(201, r#"{"project":"p","execution":"w-1"}"#);
        let s = c.start_execution("p", "w").unwrap();
        assert_eq!(s.execution, "w-1");
        let (c2, t2) = canned(500, r#"{"code":"x","message":"y"}"#);
        c2.set_model_stage("m", 2, ModelStage::Validated)
            .unwrap_err();
        let sent = t2.sent.lock().unwrap();
        let (ct, body) = sent[0].body.as_ref().unwrap();
        assert_eq!(ct, "application/json");
        assert_eq!(
            std::str::from_utf8(body).unwrap(),
            r#"{"stage":"VALIDATED"}"#
        );
        assert_eq!(t.sent.lock().unwrap()[0].method, Method::Post);
    }
}
