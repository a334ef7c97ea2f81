//! The SQL backends: SQLite (embedded default) and PostgreSQL (shared by several servers).
//!
//! Both run the same statements (written with `?` placeholders, rewritten to `$n` for
//! PostgreSQL) through one macro-generated implementation, so they cannot drift apart.
//! Writes are serialised: SQLite by `BEGIN IMMEDIATE`, PostgreSQL by a transaction-scoped
//! advisory lock. Every write transaction that creates an event therefore sees the previous
//! maximum offset and adds one: offsets are gap-free, and a rolled-back transaction leaves no
//! hole.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Postgres, Row, Sqlite, Transaction};

use crate::error::{MetaError, Result};
use crate::records::{NewRecord, Record, RecordKind, validate};
use crate::store::{Committed, MetaStore, RecordWrite};
use crate::tokens::{ApiToken, Role, check_token_name};
use crate::types::{
    Event, EventFilter, FLAVORS, Model, ModelStage, ModelVersion, NewEvent, NewModelVersion,
};

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_events_and_models.sql"),
    ),
    (
        2,
        include_str!("../migrations/sqlite/0002_metadata_records.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_tokens_and_indexes.sql"),
    ),
];

const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/postgres/0001_events_and_models.sql"),
    ),
    (
        2,
        include_str!("../migrations/postgres/0002_metadata_records.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_tokens_and_indexes.sql"),
    ),
];

/// How often a SQLite store looks (one `stat` of its log) for events written by other
/// processes while someone waits.
const SQLITE_POLL: Duration = Duration::from_millis(2);

/// Held while a write transaction is open.
type WriteGuard = tokio::sync::OwnedMutexGuard<()>;

/// Key of the PostgreSQL advisory lock that serialises writers.
const PG_WRITE_LOCK: i64 = 0x6665_7272_6f66;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const VERSION_SELECT: &str = "SELECT m.name AS model, v.version, v.uri, v.flavor, v.stage, v.metrics, v.job_execution, v.datasets, v.create_time, v.update_time
     FROM model_versions v JOIN models m ON m.id = v.model_id";

/// The event announcing a version's stage: key = model name, value = the version as JSON.
pub(crate) fn stage_event(v: &ModelVersion) -> Result<NewEvent> {
    let value = serde_json::to_string(v).map_err(|e| MetaError::Invalid {
        field: "model version",
        message: e.to_string(),
    })?;
    Ok(NewEvent {
        key: v.model.clone(),
        value,
        event_type: v.stage.event_type(),
        namespace: "default".into(),
        sender: "model-center".into(),
        ..Default::default()
    })
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn json_field<T: serde::de::DeserializeOwned>(field: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| MetaError::Invalid {
        field,
        message: e.to_string(),
    })
}

fn invalid_transition(model: &str, version: i64, from: ModelStage, to: ModelStage) -> MetaError {
    MetaError::InvalidTransition {
        model: model.to_string(),
        version,
        from: from.to_string(),
        to: to.to_string(),
        allowed: from
            .allowed_next()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn check_new_version(v: &NewModelVersion) -> Result<()> {
    if !FLAVORS.contains(&v.flavor.as_str()) {
        return Err(MetaError::Invalid {
            field: "flavor",
            message: format!(
                "unknown flavor '{}' (known: {})",
                v.flavor,
                FLAVORS.join(", ")
            ),
        });
    }
    if v.uri.is_empty() {
        return Err(MetaError::Invalid {
            field: "uri",
            message: "a model version needs a uri".into(),
        });
    }
    Ok(())
}

/// A [`MetaStore`] on a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<()>>,
    /// The database's write-ahead log: its size and modification time change with the
    /// commits of any process (read with `stat`, never opened).
    wal: std::path::PathBuf,
}

/// SQLITE_BUSY (5) and its extended codes: another connection holds the lock.
fn is_locked(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i64>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    /// Commits are synced to disk (`synchronous = FULL`): an acknowledged write survives a
    /// crash of the process or of the machine.
    ///
    /// Processes that open a new database at the same moment can find it locked while one
    /// of them switches it to WAL mode (SQLite answers that without waiting): opening is
    /// retried for up to 10 s then.
    pub async fn open(path: &Path) -> Result<Self> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Self::open_once(path).await {
                Err(MetaError::Storage(e))
                    if is_locked(&e) && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => return r,
            }
        }
    }

    async fn open_once(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| MetaError::Invalid {
                field: "path",
                message: format!("{}: {e}", dir.display()),
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let store = SqliteStore {
            pool,
            writer: Arc::default(),
            wal: wal.into(),
        };
        store.migrate(SQLITE_MIGRATIONS).await?;
        Ok(store)
    }

    fn sql<'a>(&self, s: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(s)
    }

    /// Nothing to announce: other processes notice new events through
    /// [`MetaStore::wait_for_events`]'s polling of the newest offset.
    async fn announce(&self, _tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        Ok(())
    }

    /// Watch the write-ahead log's size and modification time (one `stat` per period; the
    /// file is never opened: closing a descriptor of it would drop SQLite's POSIX locks) and
    /// read the newest offset only when they changed, or while the log was written in the
    /// last few milliseconds (file times move in kernel ticks, and a reset log is rewritten in
    /// place at the same size, so two commits in one tick can look like one).
    async fn wait_for_events_impl(&self, known: i64, max: Duration) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + max;
        let stamp = || {
            std::fs::metadata(&self.wal)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        let recent = |s: &Option<(u64, Option<std::time::SystemTime>)>| {
            s.and_then(|(_, t)| t)
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < Duration::from_millis(20))
        };
        let mut last = stamp();
        let mut latest = self.latest_offset().await?;
        loop {
            if latest > known || tokio::time::Instant::now() >= deadline {
                return Ok(latest);
            }
            tokio::time::sleep(SQLITE_POLL.min(deadline - tokio::time::Instant::now())).await;
            let now = stamp();
            if now != last || recent(&now) {
                last = now;
                latest = self.latest_offset().await?;
            }
        }
    }

    /// A write transaction holding the database's write lock from its first statement, so
    /// concurrent writers queue instead of failing on a lock upgrade. Writers of this process
    /// queue first on an in-process lock (held as long as the returned guard), so they wait
    /// in order instead of in SQLite's busy handler, whose sleeps grow to 100 ms.
    async fn write(&self) -> Result<(WriteGuard, Transaction<'static, Sqlite>)> {
        let guard = self.writer.clone().lock_owned().await;
        Ok((guard, self.pool.begin_with("BEGIN IMMEDIATE").await?))
    }
}

/// A [`MetaStore`] on a PostgreSQL database, for several servers sharing one state.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    writer: Arc<tokio::sync::Mutex<()>>,
    listener: Arc<tokio::sync::Mutex<Option<sqlx::postgres::PgListener>>>,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user:password@host:port/database`) and bring the schema
    /// up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        let store = PostgresStore {
            pool,
            writer: Arc::default(),
            listener: Arc::default(),
        };
        store.migrate(POSTGRES_MIGRATIONS).await?;
        Ok(store)
    }

    /// Tell every server listening (`LISTEN ferroflow_events`) that events were written;
    /// PostgreSQL delivers it at commit, once per transaction (equal payloads fold).
    async fn announce(&self, tx: &mut Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_notify('ferroflow_events', '')")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Wait for a notification on `ferroflow_events` (one listening connection per store,
    /// re-made when it drops), then read the newest offset.
    async fn wait_for_events_impl(&self, known: i64, max: Duration) -> Result<i64> {
        let mut guard = self.listener.lock().await;
        if guard.is_none() {
            let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
            l.listen("ferroflow_events").await?;
            *guard = Some(l);
        }
        // Listening before reading: an event committed in between is not missed.
        let latest = self.latest_offset().await?;
        if latest > known {
            return Ok(latest);
        }
        let listener = guard.as_mut().expect("made above");
        match tokio::time::timeout(max, listener.recv()).await {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                *guard = None;
                return Err(e.into());
            }
        }
        drop(guard);
        self.latest_offset().await
    }

    /// Rewrite `?` placeholders to PostgreSQL's `$1, $2, ...` (no statement here has a `?`
    /// inside a string literal).
    fn sql<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = String::with_capacity(s.len() + 8);
        let mut n = 0;
        for c in s.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }

    /// A write transaction holding the advisory lock all servers' writers share (and this
    /// process's writer lock, so local writers queue without holding connections).
    async fn write(&self) -> Result<(WriteGuard, Transaction<'static, Postgres>)> {
        let guard = self.writer.clone().lock_owned().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok((guard, tx))
    }
}

macro_rules! sql_store {
    ($store:ident, $db:ty, $row:ty) => {
        impl $store {
            async fn migrate(&self, migrations: &[(i64, &str)]) -> Result<()> {
                let (_writer, mut tx) = self.write().await?;
                sqlx::query(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                )
                .execute(&mut *tx)
                .await?;
                for (version, sql) in migrations {
                    let q = self.sql("SELECT version FROM schema_migrations WHERE version = ?");
                    let done: Option<i64> = sqlx::query_scalar(&q)
                        .bind(version)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if done.is_none() {
                        sqlx::raw_sql(sql).execute(&mut *tx).await?;
                        let q = self.sql("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)");
                        sqlx::query(&q)
                            .bind(version)
                            .bind(now_ms())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            fn event_from_row(r: &$row) -> Result<Event> {
                Ok(Event {
                    offset: r.try_get("event_offset")?,
                    key: r.try_get("key")?,
                    value: r.try_get("value")?,
                    event_type: r.try_get("event_type")?,
                    namespace: r.try_get("namespace")?,
                    sender: r.try_get("sender")?,
                    context: r.try_get("context")?,
                    create_time: r.try_get("create_time")?,
                })
            }

            fn version_from_row(r: &$row) -> Result<ModelVersion> {
                let metrics: String = r.try_get("metrics")?;
                let datasets: String = r.try_get("datasets")?;
                let stage: String = r.try_get("stage")?;
                Ok(ModelVersion {
                    model: r.try_get("model")?,
                    version: r.try_get("version")?,
                    uri: r.try_get("uri")?,
                    flavor: r.try_get("flavor")?,
                    stage: ModelStage::from_str(&stage)?,
                    metrics: json_field("metrics", &metrics)?,
                    job_execution: r.try_get("job_execution")?,
                    datasets: json_field("datasets", &datasets)?,
                    create_time: r.try_get("create_time")?,
                    update_time: r.try_get("update_time")?,
                })
            }

            fn record_from_row(r: &$row) -> Result<Record> {
                let kind: String = r.try_get("kind")?;
                let body: String = r.try_get("body")?;
                Ok(Record {
                    kind: kind.parse()?,
                    project: r.try_get("project")?,
                    name: r.try_get("name")?,
                    parent: r.try_get("parent")?,
                    body: json_field("body", &body)?,
                    revision: r.try_get("revision")?,
                    create_time: r.try_get("create_time")?,
                    update_time: r.try_get("update_time")?,
                })
            }

            async fn record_exists(
                &self,
                tx: &mut Transaction<'static, $db>,
                kind: RecordKind,
                project: &str,
                name: &str,
            ) -> Result<bool> {
                let q = self.sql("SELECT id FROM records WHERE kind = ? AND project = ? AND name = ?");
                let id: Option<i64> = sqlx::query_scalar(&q)
                    .bind(kind.as_str())
                    .bind(project)
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(id.is_some())
            }

            fn token_from_row(r: &$row) -> Result<ApiToken> {
                let role: String = r.try_get("role")?;
                Ok(ApiToken {
                    name: r.try_get("name")?,
                    role: role.parse()?,
                    create_time: r.try_get("create_time")?,
                })
            }

            fn model_from_row(r: &$row) -> Result<Model> {
                Ok(Model {
                    name: r.try_get("name")?,
                    description: r.try_get("description")?,
                    create_time: r.try_get("create_time")?,
                })
            }

            async fn model_id(&self, tx: &mut Transaction<'static, $db>, model: &str) -> Result<i64> {
                let q = self.sql("SELECT id FROM models WHERE name = ?");
                sqlx::query_scalar(&q)
                    .bind(model)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| MetaError::NotFound {
                        kind: "model",
                        name: model.to_string(),
                    })
            }

            async fn insert_event(&self, tx: &mut Transaction<'static, $db>, e: &NewEvent) -> Result<Event> {
                let offset: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(event_offset), 0) + 1 FROM events")
                    .fetch_one(&mut **tx)
                    .await?;
                let now = now_ms();
                let q = self.sql(
                    "INSERT INTO events (event_offset, key, value, event_type, namespace, sender, context, create_time, client_id, client_seq)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                );
                sqlx::query(&q)
                    .bind(offset)
                    .bind(&e.key)
                    .bind(&e.value)
                    .bind(&e.event_type)
                    .bind(&e.namespace)
                    .bind(&e.sender)
                    .bind(&e.context)
                    .bind(now)
                    .bind(&e.client_id)
                    .bind(e.sequence)
                    .execute(&mut **tx)
                    .await?;
                self.announce(tx).await?;
                Ok(Event {
                    offset,
                    key: e.key.clone(),
                    value: e.value.clone(),
                    event_type: e.event_type.clone(),
                    namespace: e.namespace.clone(),
                    sender: e.sender.clone(),
                    context: e.context.clone(),
                    create_time: now,
                })
            }

            async fn version_in_tx(
                &self,
                tx: &mut Transaction<'static, $db>,
                model: &str,
                model_id: i64,
                version: i64,
            ) -> Result<ModelVersion> {
                let q = self.sql(&format!("{VERSION_SELECT} WHERE v.model_id = ? AND v.version = ?")).into_owned();
                let row = sqlx::query(&q)
                    .bind(model_id)
                    .bind(version)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| MetaError::NotFound {
                        kind: "model version",
                        name: format!("{model}/{version}"),
                    })?;
                Self::version_from_row(&row)
            }

            async fn create_in_tx(&self, tx: &mut Transaction<'static, $db>, kind: RecordKind, r: NewRecord) -> Result<Record> {
                validate(kind, &r)?;
                if kind != RecordKind::Project
                    && !self.record_exists(tx, RecordKind::Project, &r.project, &r.project).await?
                {
                    return Err(MetaError::NotFound { kind: "project", name: r.project.clone() });
                }
                if let (Some(pk), Some(parent)) = (kind.parent_kind(), &r.parent)
                    && !self.record_exists(tx, pk, &r.project, parent).await?
                {
                    return Err(MetaError::NotFound {
                        kind: pk.as_str(),
                        name: format!("{}/{parent}", r.project),
                    });
                }
                if self.record_exists(tx, kind, &r.project, &r.name).await? {
                    return Err(MetaError::AlreadyExists {
                        kind: kind.as_str(),
                        name: format!("{}/{}", r.project, r.name),
                    });
                }
                let now = now_ms();
                let q = self.sql(
                    "INSERT INTO records (kind, project, name, parent, body, revision, create_time, update_time) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                );
                sqlx::query(&q)
                    .bind(kind.as_str())
                    .bind(&r.project)
                    .bind(&r.name)
                    .bind(&r.parent)
                    .bind(r.body.to_string())
                    .bind(now)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                Ok(Record {
                    kind,
                    project: r.project,
                    name: r.name,
                    parent: r.parent,
                    body: r.body,
                    revision: 1,
                    create_time: now,
                    update_time: now,
                })
            }

            async fn update_in_tx(
                &self,
                tx: &mut Transaction<'static, $db>,
                kind: RecordKind,
                project: &str,
                name: &str,
                body: serde_json::Value,
                expected_revision: Option<i64>,
            ) -> Result<Record> {
                if kind.immutable() {
                    return Err(MetaError::Invalid {
                        field: "kind",
                        message: format!("a {kind} is immutable; create a new one"),
                    });
                }
                let q = self.sql("SELECT * FROM records WHERE kind = ? AND project = ? AND name = ?");
                let row = sqlx::query(&q)
                    .bind(kind.as_str())
                    .bind(project)
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| MetaError::NotFound {
                        kind: kind.as_str(),
                        name: format!("{project}/{name}"),
                    })?;
                let mut rec = Self::record_from_row(&row)?;
                validate(kind, &NewRecord {
                    project: rec.project.clone(),
                    name: rec.name.clone(),
                    parent: rec.parent.clone(),
                    body: body.clone(),
                })?;
                if let Some(expected) = expected_revision
                    && expected != rec.revision
                {
                    return Err(MetaError::Conflict(format!(
                        "{kind} '{project}/{name}' is at revision {}, not {expected}; read it again",
                        rec.revision
                    )));
                }
                let now = now_ms();
                let q = self.sql("UPDATE records SET body = ?, revision = revision + 1, update_time = ? WHERE kind = ? AND project = ? AND name = ?");
                sqlx::query(&q)
                    .bind(body.to_string())
                    .bind(now)
                    .bind(kind.as_str())
                    .bind(project)
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                rec.body = body;
                rec.revision += 1;
                rec.update_time = now;
                Ok(rec)
            }

            /// Set a stage and write its event, inside `tx`.
            async fn stage_change(
                &self,
                tx: &mut Transaction<'static, $db>,
                model_id: i64,
                mut v: ModelVersion,
                stage: ModelStage,
            ) -> Result<ModelVersion> {
                let now = now_ms();
                let q = self.sql("UPDATE model_versions SET stage = ?, update_time = ? WHERE model_id = ? AND version = ?");
                sqlx::query(&q)
                    .bind(stage.as_str())
                    .bind(now)
                    .bind(model_id)
                    .bind(v.version)
                    .execute(&mut **tx)
                    .await?;
                v.stage = stage;
                v.update_time = now;
                self.insert_event(tx, &stage_event(&v)?).await?;
                Ok(v)
            }
        }

        #[async_trait]
        impl MetaStore for $store {
            async fn send_event(&self, event: NewEvent) -> Result<Event> {
                let mut stored = self.send_events(vec![event]).await?;
                Ok(stored.pop().expect("one event in, one out"))
            }

            async fn send_events(&self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
                for e in &events {
                    e.validate()?;
                }
                let (_writer, mut tx) = self.write().await?;
                let mut out = Vec::with_capacity(events.len());
                for event in &events {
                    if let (Some(client), Some(seq)) = (&event.client_id, event.sequence) {
                        let q = self.sql("SELECT * FROM events WHERE client_id = ? AND client_seq = ?");
                        let existing = sqlx::query(&q)
                            .bind(client)
                            .bind(seq)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if let Some(row) = existing {
                            out.push(Self::event_from_row(&row)?);
                            continue;
                        }
                    }
                    out.push(self.insert_event(&mut tx, event).await?);
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn list_events(&self, filter: &EventFilter, after: i64, limit: u32) -> Result<Vec<Event>> {
                let mut sql = String::from("SELECT * FROM events WHERE event_offset > ?");
                let mut binds: Vec<&String> = Vec::new();
                for (col, list) in [
                    ("key", &filter.keys),
                    ("event_type", &filter.event_types),
                    ("namespace", &filter.namespaces),
                    ("sender", &filter.senders),
                ] {
                    if !list.is_empty() {
                        sql.push_str(&format!(" AND {col} IN ({})", vec!["?"; list.len()].join(", ")));
                        binds.extend(list.iter());
                    }
                }
                sql.push_str(" ORDER BY event_offset LIMIT ?");
                let sql = self.sql(&sql).into_owned();
                let mut q = sqlx::query(&sql).bind(after);
                for b in binds {
                    q = q.bind(b);
                }
                let rows = q.bind(limit as i64).fetch_all(&self.pool).await?;
                rows.iter().map(Self::event_from_row).collect()
            }

            async fn latest_offset(&self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT COALESCE(MAX(event_offset), 0) FROM events")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn wait_for_events(&self, known: i64, max: Duration) -> Result<i64> {
                self.wait_for_events_impl(known, max).await
            }

            async fn register_model(&self, name: &str, description: &str) -> Result<Model> {
                if name.trim().is_empty() {
                    return Err(MetaError::Invalid {
                        field: "name",
                        message: "a model needs a non-empty name".into(),
                    });
                }
                let now = now_ms();
                let (_writer, mut tx) = self.write().await?;
                let q = self.sql("INSERT INTO models (name, description, create_time) VALUES (?, ?, ?)");
                let r = sqlx::query(&q)
                    .bind(name)
                    .bind(description)
                    .bind(now)
                    .execute(&mut *tx)
                    .await;
                if let Err(e) = r {
                    return Err(if unique_violation(&e) {
                        MetaError::AlreadyExists {
                            kind: "model",
                            name: name.to_string(),
                        }
                    } else {
                        e.into()
                    });
                }
                tx.commit().await?;
                Ok(Model {
                    name: name.to_string(),
                    description: description.to_string(),
                    create_time: now,
                })
            }

            async fn get_model(&self, name: &str) -> Result<Model> {
                let q = self.sql("SELECT name, description, create_time FROM models WHERE name = ?");
                let row = sqlx::query(&q)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| MetaError::NotFound {
                        kind: "model",
                        name: name.to_string(),
                    })?;
                Self::model_from_row(&row)
            }

            async fn update_model(&self, name: &str, description: &str) -> Result<Model> {
                let (_writer, mut tx) = self.write().await?;
                self.model_id(&mut tx, name).await?;
                let q = self.sql("UPDATE models SET description = ? WHERE name = ?");
                sqlx::query(&q).bind(description).bind(name).execute(&mut *tx).await?;
                tx.commit().await?;
                self.get_model(name).await
            }

            async fn delete_model(&self, name: &str) -> Result<()> {
                let (_writer, mut tx) = self.write().await?;
                let model_id = self.model_id(&mut tx, name).await?;
                let q = self.sql("SELECT COUNT(*) FROM model_versions WHERE model_id = ? AND stage <> 'DELETED'");
                let live: i64 = sqlx::query_scalar(&q).bind(model_id).fetch_one(&mut *tx).await?;
                if live > 0 {
                    return Err(MetaError::Conflict(format!(
                        "model '{name}' has {live} versions not in stage DELETED; delete them first"
                    )));
                }
                let q = self.sql("DELETE FROM model_versions WHERE model_id = ?");
                sqlx::query(&q).bind(model_id).execute(&mut *tx).await?;
                let q = self.sql("DELETE FROM models WHERE id = ?");
                sqlx::query(&q).bind(model_id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_token(&self, name: &str, role: Role, secret_hash: &str) -> Result<ApiToken> {
                check_token_name(name)?;
                let (_writer, mut tx) = self.write().await?;
                let q = self.sql("SELECT name FROM api_tokens WHERE name = ?");
                let exists: Option<String> = sqlx::query_scalar(&q).bind(name).fetch_optional(&mut *tx).await?;
                if exists.is_some() {
                    return Err(MetaError::AlreadyExists { kind: "token", name: name.to_string() });
                }
                let now = now_ms();
                let q = self.sql("INSERT INTO api_tokens (name, role, secret_hash, create_time) VALUES (?, ?, ?, ?)");
                sqlx::query(&q)
                    .bind(name)
                    .bind(role.as_str())
                    .bind(secret_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| if unique_violation(&e) {
                        MetaError::Conflict("a token with this secret exists already".into())
                    } else {
                        e.into()
                    })?;
                tx.commit().await?;
                Ok(ApiToken { name: name.to_string(), role, create_time: now })
            }

            async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<ApiToken>> {
                let q = self.sql("SELECT name, role, create_time FROM api_tokens WHERE secret_hash = ?");
                let row = sqlx::query(&q).bind(secret_hash).fetch_optional(&self.pool).await?;
                row.map(|r| Self::token_from_row(&r)).transpose()
            }

            async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
                let rows = sqlx::query("SELECT name, role, create_time FROM api_tokens ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::token_from_row).collect()
            }

            async fn revoke_token(&self, name: &str) -> Result<()> {
                let (_writer, mut tx) = self.write().await?;
                let q = self.sql("DELETE FROM api_tokens WHERE name = ?");
                let done = sqlx::query(&q).bind(name).execute(&mut *tx).await?;
                if done.rows_affected() == 0 {
                    return Err(MetaError::NotFound { kind: "token", name: name.to_string() });
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_models(&self, offset: u32, limit: u32) -> Result<Vec<Model>> {
                let q = self.sql("SELECT name, description, create_time FROM models ORDER BY name LIMIT ? OFFSET ?");
                let rows = sqlx::query(&q)
                    .bind(limit as i64)
                    .bind(offset as i64)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::model_from_row).collect()
            }

            async fn create_model_version(&self, model: &str, v: NewModelVersion) -> Result<ModelVersion> {
                check_new_version(&v)?;
                let (_writer, mut tx) = self.write().await?;
                let model_id = self.model_id(&mut tx, model).await?;
                let q = self.sql("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model_id = ?");
                let version: i64 = sqlx::query_scalar(&q)
                    .bind(model_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let now = now_ms();
                let metrics = serde_json::to_string(&v.metrics).map_err(|e| MetaError::Invalid {
                    field: "metrics",
                    message: e.to_string(),
                })?;
                let datasets = serde_json::to_string(&v.datasets).map_err(|e| MetaError::Invalid {
                    field: "datasets",
                    message: e.to_string(),
                })?;
                let q = self.sql(
                    "INSERT INTO model_versions (model_id, version, uri, flavor, stage, metrics, job_execution, datasets, create_time, update_time)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                );
                sqlx::query(&q)
                    .bind(model_id)
                    .bind(version)
                    .bind(&v.uri)
                    .bind(&v.flavor)
                    .bind(ModelStage::Generated.as_str())
                    .bind(metrics)
                    .bind(&v.job_execution)
                    .bind(datasets)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let created = ModelVersion {
                    model: model.to_string(),
                    version,
                    uri: v.uri,
                    flavor: v.flavor,
                    stage: ModelStage::Generated,
                    metrics: v.metrics,
                    job_execution: v.job_execution,
                    datasets: v.datasets,
                    create_time: now,
                    update_time: now,
                };
                self.insert_event(&mut tx, &stage_event(&created)?).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn get_model_version(&self, model: &str, version: i64) -> Result<ModelVersion> {
                let q = self.sql(&format!("{VERSION_SELECT} WHERE m.name = ? AND v.version = ?")).into_owned();
                let row = sqlx::query(&q)
                    .bind(model)
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| MetaError::NotFound {
                        kind: "model version",
                        name: format!("{model}/{version}"),
                    })?;
                Self::version_from_row(&row)
            }

            async fn list_model_versions(&self, model: &str, stage: Option<ModelStage>) -> Result<Vec<ModelVersion>> {
                // Distinguish "no such model" from "no versions".
                self.get_model(model).await?;
                let rows = match stage {
                    Some(s) => {
                        let q = self.sql(&format!("{VERSION_SELECT} WHERE m.name = ? AND v.stage = ? ORDER BY v.version")).into_owned();
                        sqlx::query(&q).bind(model).bind(s.as_str()).fetch_all(&self.pool).await?
                    }
                    None => {
                        let q = self.sql(&format!("{VERSION_SELECT} WHERE m.name = ? ORDER BY v.version")).into_owned();
                        sqlx::query(&q).bind(model).fetch_all(&self.pool).await?
                    }
                };
                rows.iter().map(Self::version_from_row).collect()
            }

            async fn set_model_stage(&self, model: &str, version: i64, stage: ModelStage) -> Result<ModelVersion> {
                let (_writer, mut tx) = self.write().await?;
                let model_id = self.model_id(&mut tx, model).await?;
                let current = self.version_in_tx(&mut tx, model, model_id, version).await?;
                if current.stage == stage {
                    // Idempotent: already there; nothing changes and no event is written.
                    return Ok(current);
                }
                if !current.stage.allowed_next().contains(&stage) {
                    return Err(invalid_transition(model, version, current.stage, stage));
                }
                if stage == ModelStage::Deployed {
                    let q = self.sql("SELECT version FROM model_versions WHERE model_id = ? AND stage = 'DEPLOYED'");
                    let deployed: Option<i64> = sqlx::query_scalar(&q)
                        .bind(model_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(old) = deployed {
                        let old = self.version_in_tx(&mut tx, model, model_id, old).await?;
                        self.stage_change(&mut tx, model_id, old, ModelStage::Deprecated).await?;
                    }
                }
                let updated = self.stage_change(&mut tx, model_id, current, stage).await?;
                tx.commit().await?;
                Ok(updated)
            }

            async fn create_record(&self, kind: RecordKind, r: NewRecord) -> Result<Record> {
                let (_writer, mut tx) = self.write().await?;
                let rec = self.create_in_tx(&mut tx, kind, r).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn get_record(&self, kind: RecordKind, project: &str, name: &str) -> Result<Record> {
                let q = self.sql("SELECT * FROM records WHERE kind = ? AND project = ? AND name = ?");
                let row = sqlx::query(&q)
                    .bind(kind.as_str())
                    .bind(project)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| MetaError::NotFound {
                        kind: kind.as_str(),
                        name: format!("{project}/{name}"),
                    })?;
                Self::record_from_row(&row)
            }

            async fn update_record(
                &self,
                kind: RecordKind,
                project: &str,
                name: &str,
                body: serde_json::Value,
                expected_revision: Option<i64>,
            ) -> Result<Record> {
                let (_writer, mut tx) = self.write().await?;
                let rec = self.update_in_tx(&mut tx, kind, project, name, body, expected_revision).await?;
                tx.commit().await?;
                Ok(rec)
            }

            async fn commit(&self, writes: Vec<RecordWrite>, events: Vec<NewEvent>) -> Result<Committed> {
                for e in &events {
                    e.validate()?;
                }
                let (_writer, mut tx) = self.write().await?;
                let mut records = Vec::with_capacity(writes.len());
                for w in writes {
                    records.push(match w {
                        RecordWrite::Create { kind, record } => self.create_in_tx(&mut tx, kind, record).await?,
                        RecordWrite::Update { kind, project, name, body, expected_revision } => {
                            self.update_in_tx(&mut tx, kind, &project, &name, body, expected_revision).await?
                        }
                    });
                }
                let mut stored = Vec::with_capacity(events.len());
                for e in &events {
                    stored.push(self.insert_event(&mut tx, e).await?);
                }
                tx.commit().await?;
                Ok(Committed { records, events: stored })
            }

            async fn delete_record(&self, kind: RecordKind, project: &str, name: &str) -> Result<()> {
                let (_writer, mut tx) = self.write().await?;
                if !self.record_exists(&mut tx, kind, project, name).await? {
                    return Err(MetaError::NotFound {
                        kind: kind.as_str(),
                        name: format!("{project}/{name}"),
                    });
                }
                // Owned records keep their owner alive.
                let owned: i64 = if kind == RecordKind::Project {
                    let q = self.sql("SELECT COUNT(*) FROM records WHERE project = ? AND kind <> 'project'");
                    sqlx::query_scalar(&q).bind(project).fetch_one(&mut *tx).await?
                } else {
                    let q = self.sql("SELECT COUNT(*) FROM records WHERE project = ? AND parent = ? AND kind <> 'metric'");
                    sqlx::query_scalar(&q).bind(project).bind(name).fetch_one(&mut *tx).await?
                };
                if owned > 0 {
                    return Err(MetaError::Conflict(format!(
                        "{kind} '{project}/{name}' still owns {owned} records; delete them first"
                    )));
                }
                let q = self.sql("DELETE FROM records WHERE kind = ? AND project = ? AND name = ?");
                sqlx::query(&q)
                    .bind(kind.as_str())
                    .bind(project)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_records(
                &self,
                kind: RecordKind,
                project: Option<&str>,
                parent: Option<&str>,
                offset: u32,
                limit: u32,
            ) -> Result<Vec<Record>> {
                let mut sql = String::from("SELECT * FROM records WHERE kind = ?");
                if project.is_some() {
                    sql.push_str(" AND project = ?");
                }
                if parent.is_some() {
                    sql.push_str(" AND parent = ?");
                }
                sql.push_str(" ORDER BY project, name LIMIT ? OFFSET ?");
                let sql = self.sql(&sql).into_owned();
                let mut q = sqlx::query(&sql).bind(kind.as_str());
                if let Some(p) = project {
                    q = q.bind(p);
                }
                if let Some(p) = parent {
                    q = q.bind(p);
                }
                let rows = q.bind(limit as i64).bind(offset as i64).fetch_all(&self.pool).await?;
                rows.iter().map(Self::record_from_row).collect()
            }
        }
    };
}

sql_store!(SqliteStore, Sqlite, SqliteRow);
sql_store!(PostgresStore, Postgres, PgRow);
