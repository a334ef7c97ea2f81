//! The storage interface every backend implements (and passes one shared test suite).

use async_trait::async_trait;

use crate::error::Result;
use crate::records::{NewRecord, Record, RecordKind};
use crate::tokens::{ApiToken, Role};
use crate::types::{
    Event, EventFilter, Model, ModelStage, ModelVersion, NewEvent, NewModelVersion,
};

/// One record write of a [`MetaStore::commit`].
#[derive(Debug, Clone, PartialEq)]
pub enum RecordWrite {
    /// Create a record (as [`MetaStore::create_record`]).
    Create {
        /// Its kind.
        kind: RecordKind,
        /// The record.
        record: NewRecord,
    },
    /// Replace a record's body (as [`MetaStore::update_record`]).
    Update {
        /// Its kind.
        kind: RecordKind,
        /// Its project.
        project: String,
        /// Its name.
        name: String,
        /// The new body.
        body: serde_json::Value,
        /// Fail unless the record is at this revision.
        expected_revision: Option<i64>,
    },
}

/// What a [`MetaStore::commit`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The records written, in the order of the writes.
    pub records: Vec<Record>,
    /// The events stored, in order, with their offsets.
    pub events: Vec<Event>,
}

/// Durable state of the Notification Service and the Model Center.
///
/// Every method is one transaction: a stage change and the event announcing it are written
/// together or not at all.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// Store an event and return it with its offset. Durable before it returns. With a
    /// (client id, sequence) already stored, returns that event and stores nothing.
    async fn send_event(&self, event: NewEvent) -> Result<Event>;

    /// Store several events in one transaction (all or none); each keeps the idempotency of
    /// [`MetaStore::send_event`]. Client-side batching for throughput.
    async fn send_events(&self, events: Vec<NewEvent>) -> Result<Vec<Event>>;

    /// Events with offset greater than `after` that pass `filter`, oldest first, at most
    /// `limit`.
    async fn list_events(&self, filter: &EventFilter, after: i64, limit: u32)
    -> Result<Vec<Event>>;

    /// The offset of the newest event (0 when there is none).
    async fn latest_offset(&self) -> Result<i64>;

    /// Wait until the newest offset is past `known` (events written by any process or
    /// server), at most `max`; returns the newest offset. PostgreSQL is woken by
    /// `LISTEN/NOTIFY`; SQLite polls the newest offset. The default polls every 10 ms.
    async fn wait_for_events(&self, known: i64, max: std::time::Duration) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let latest = self.latest_offset().await?;
            if latest > known || tokio::time::Instant::now() >= deadline {
                return Ok(latest);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Register a model under a unique name.
    async fn register_model(&self, name: &str, description: &str) -> Result<Model>;

    /// A model by name.
    async fn get_model(&self, name: &str) -> Result<Model>;

    /// Change a model's description.
    async fn update_model(&self, name: &str, description: &str) -> Result<Model>;

    /// Remove a model and its versions; refused while any version is not DELETED.
    async fn delete_model(&self, name: &str) -> Result<()>;

    /// Models by name, `limit` from `offset`.
    async fn list_models(&self, offset: u32, limit: u32) -> Result<Vec<Model>>;

    /// Create the next version of `model` (numbered 1, 2, ... per model, safe under
    /// concurrency) in stage GENERATED, and its `MODEL_GENERATED` event.
    async fn create_model_version(
        &self,
        model: &str,
        version: NewModelVersion,
    ) -> Result<ModelVersion>;

    /// One version.
    async fn get_model_version(&self, model: &str, version: i64) -> Result<ModelVersion>;

    /// Versions of a model, oldest first, optionally only those in `stage`.
    async fn list_model_versions(
        &self,
        model: &str,
        stage: Option<ModelStage>,
    ) -> Result<Vec<ModelVersion>>;

    /// Move a version to `stage` and write its `MODEL_<STAGE>` event. Deploying a version
    /// while another is DEPLOYED moves the other to DEPRECATED (with its event) in the same
    /// transaction, so there is never more than one DEPLOYED version.
    async fn set_model_stage(
        &self,
        model: &str,
        version: i64,
        stage: ModelStage,
    ) -> Result<ModelVersion>;

    /// Create a metadata record. Its project must exist (except for a project itself), and
    /// so must its parent when its kind has one in the store.
    async fn create_record(&self, kind: RecordKind, record: NewRecord) -> Result<Record>;

    /// A record.
    async fn get_record(&self, kind: RecordKind, project: &str, name: &str) -> Result<Record>;

    /// Replace a record's body. With `expected_revision`, fails if another update came first.
    /// Snapshots are immutable.
    async fn update_record(
        &self,
        kind: RecordKind,
        project: &str,
        name: &str,
        body: serde_json::Value,
        expected_revision: Option<i64>,
    ) -> Result<Record>;

    /// Write several records and events in one transaction: all or nothing. This is how a
    /// state change and the events announcing it (a job's status, a scheduler's decision with
    /// its committed event offset) become durable together. Events here are not deduplicated
    /// by client id.
    async fn commit(&self, writes: Vec<RecordWrite>, events: Vec<NewEvent>) -> Result<Committed>;

    /// Delete a record (a project or workflow still owning records cannot be deleted).
    async fn delete_record(&self, kind: RecordKind, project: &str, name: &str) -> Result<()>;

    /// Records of a kind, optionally of one project and one parent, by name.
    async fn list_records(
        &self,
        kind: RecordKind,
        project: Option<&str>,
        parent: Option<&str>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Record>>;

    /// Store a token: its name, role and the hash of its secret ([`crate::secret_hash`]).
    async fn create_token(&self, name: &str, role: Role, secret_hash: &str) -> Result<ApiToken>;

    /// The token whose secret has this hash, if any.
    async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>>;

    /// Every token, by name.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>>;

    /// Remove a token: its secret stops working at once.
    async fn revoke_token(&self, name: &str) -> Result<()>;
}
