//! ferroflow's control-plane state: the Notification Service's event log and the Model
//! Center, behind one storage trait ([`MetaStore`]).
//!
//! - Events have a global, gap-free, monotonically increasing offset assigned in the writing
//!   transaction; a send is durable before it returns and idempotent per (client id,
//!   sequence number).
//! - Model versions are numbered per model under the write lock; stages follow
//!   [`ModelStage::allowed_next`]; at most one version per model is DEPLOYED (deploying
//!   another deprecates the old one in the same transaction, and a partial unique index
//!   enforces it in the database); every stage change writes its `MODEL_<STAGE>` event in
//!   the same transaction, so there are no lost and no phantom events.
//! - Metadata records ([`RecordKind`]: projects, datasets, workflows and snapshots,
//!   executions, job executions, artifacts, metrics) are typed JSON documents checked
//!   against their kind, with optimistic concurrency by revision.
//! - [`ArtifactStore`] keeps artifact files under one root (paths confined to it) and
//!   hashes their content.
//! - API tokens ([`ApiToken`], [`Role`]) are stored as hashes of their secrets.
//! - [`Notifier`] adds waiting: long-poll `listen` and in-process subscriptions.
//!
//! Backends: [`SqliteStore`] (embedded default, one file, WAL, synced commits) and
//! [`PostgresStore`] (shared by several servers); both pass one test suite.

mod artifacts;
mod error;
mod notify;
mod records;
mod sql_store;
mod store;
mod tokens;
mod types;

pub use artifacts::{ArtifactStore, StoredArtifact, Upload};
pub use error::{MetaError, Result};
pub use notify::Notifier;
pub use records::{NewRecord, Record, RecordKind};
pub use sql_store::{PostgresStore, SqliteStore};
pub use store::{Committed, MetaStore, RecordWrite};
pub use tokens::{
    ApiToken, Role, check_secret, hashes_match, new_secret, secret_hash, secrets_match,
};
pub use types::{
    Event, EventFilter, FLAVORS, Model, ModelStage, ModelVersion, NewEvent, NewModelVersion,
};
