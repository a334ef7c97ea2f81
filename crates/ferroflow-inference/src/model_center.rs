//! Model versions from the Model Center, as a stream a model node swaps on.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use ferroflow_engine::{EngineError, InstanceInfo, Source, SourceEvent, SourceReader};
use ferroflow_meta::{EventFilter, MetaStore, ModelStage, ModelVersion};
use tokio::runtime::Handle;

use crate::error::Context;
use crate::node::model_version_schema;

/// An unbounded source of `(version, uri)` rows for model `model`: the newest version in
/// `stage` when the job starts, then every version that enters `stage` (read from the Model
/// Center's stage events, so none is missed between polls). Feed it to
/// [`crate::ModelStreamExt::predict_with_versions`] to serve whatever is DEPLOYED.
pub struct ModelCenterSource {
    store: Arc<dyn MetaStore>,
    model: String,
    stage: ModelStage,
    poll: Duration,
    handle: Handle,
}

impl std::fmt::Debug for ModelCenterSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCenterSource")
            .field("model", &self.model)
            .field("stage", &self.stage)
            .finish()
    }
}

impl ModelCenterSource {
    /// Versions of `model` in `stage` from `store`, whose async calls run on `handle` (the
    /// runtime the store was opened on).
    pub fn new(
        store: Arc<dyn MetaStore>,
        model: impl Into<String>,
        stage: ModelStage,
        handle: Handle,
    ) -> Self {
        ModelCenterSource {
            store,
            model: model.into(),
            stage,
            poll: Duration::from_millis(200),
            handle,
        }
    }

    /// How often to look for new versions (200 ms by default).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }
}

impl Source for ModelCenterSource {
    fn schema(&self) -> SchemaRef {
        model_version_schema()
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn validate(&self) -> ferroflow_engine::Result<()> {
        self.handle
            .block_on(self.store.get_model(&self.model))
            .map(|_| ())
            .map_err(|e| {
                EngineError::Connector(Context::boxed(
                    format!("model center: model '{}'", self.model),
                    e,
                ))
            })
    }

    fn create_reader(
        &self,
        instance: &InstanceInfo,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        // One instance reads; versions are broadcast to the model node anyway.
        Ok(Box::new(self.reader(instance.index == 0, None)))
    }

    /// Its position is the offset of the last stage event read, held by the one reading
    /// instance (whichever instance is given that split after rescaling reads on).
    fn supports_checkpoints(&self) -> bool {
        true
    }

    fn restore_reader(
        &self,
        _instance: &InstanceInfo,
        splits: Vec<Vec<u8>>,
    ) -> ferroflow_engine::Result<Box<dyn SourceReader>> {
        let mut after: Option<i64> = None;
        for s in splits.iter().filter(|s| !s.is_empty()) {
            let bytes: [u8; 8] = s.as_slice().try_into().map_err(|_| {
                EngineError::Connector(
                    format!(
                        "model center: model '{}': a checkpointed position of {} bytes (expected 8)",
                        self.model,
                        s.len()
                    )
                    .into(),
                )
            })?;
            let offset = i64::from_le_bytes(bytes);
            after = Some(after.map_or(offset, |a| a.max(offset)));
        }
        Ok(Box::new(self.reader(!splits.is_empty(), after)))
    }
}

impl ModelCenterSource {
    fn reader(&self, active: bool, after: Option<i64>) -> ModelCenterReader {
        ModelCenterReader {
            store: self.store.clone(),
            model: self.model.clone(),
            stage: self.stage,
            poll: self.poll,
            handle: self.handle.clone(),
            active,
            after,
        }
    }
}

struct ModelCenterReader {
    store: Arc<dyn MetaStore>,
    model: String,
    stage: ModelStage,
    poll: Duration,
    handle: Handle,
    active: bool,
    /// Offset of the last stage event seen; `None` before the first read.
    after: Option<i64>,
}

fn batch(versions: &[ModelVersion]) -> ferroflow_engine::Result<SourceEvent> {
    Ok(SourceEvent::Batch(RecordBatch::try_new(
        model_version_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                versions.iter().map(|v| v.version),
            )),
            Arc::new(StringArray::from_iter_values(
                versions.iter().map(|v| v.uri.as_str()),
            )),
        ],
    )?))
}

impl SourceReader for ModelCenterReader {
    /// The reading instance's one split: the offset read up to (8 bytes), or nothing yet
    /// (empty: a restored reader starts as a fresh one, with the version deployed now).
    fn snapshot(&mut self) -> ferroflow_engine::Result<Vec<Vec<u8>>> {
        if !self.active {
            return Ok(Vec::new());
        }
        Ok(vec![
            self.after
                .map_or_else(Vec::new, |a| a.to_le_bytes().to_vec()),
        ])
    }

    fn next(&mut self) -> ferroflow_engine::Result<SourceEvent> {
        if !self.active {
            return Ok(SourceEvent::Idle(Duration::from_secs(1)));
        }
        let err = |e: ferroflow_meta::MetaError| {
            EngineError::Connector(Context::boxed(
                format!("model center: model '{}'", self.model),
                e,
            ))
        };
        let Some(after) = self.after else {
            // The offset first, then the current versions: a change in between is seen twice
            // at worst (the node ignores a version it already serves), never missed.
            let offset = self
                .handle
                .block_on(self.store.latest_offset())
                .map_err(err)?;
            let current = self
                .handle
                .block_on(
                    self.store
                        .list_model_versions(&self.model, Some(self.stage)),
                )
                .map_err(err)?;
            self.after = Some(offset);
            return match current.iter().max_by_key(|v| v.version) {
                Some(v) => batch(std::slice::from_ref(v)),
                None => Ok(SourceEvent::Idle(Duration::ZERO)),
            };
        };
        let filter = EventFilter {
            keys: vec![self.model.clone()],
            event_types: vec![self.stage.event_type()],
            ..EventFilter::default()
        };
        let events = self
            .handle
            .block_on(self.store.list_events(&filter, after, 100))
            .map_err(err)?;
        let Some(last) = events.last() else {
            return Ok(SourceEvent::Idle(self.poll));
        };
        self.after = Some(last.offset);
        let versions: Vec<ModelVersion> = events
            .iter()
            .map(|e| {
                serde_json::from_str(&e.value).map_err(|x| {
                    EngineError::Connector(Context::boxed(
                        format!("model center: event {} is not a model version", e.offset),
                        x,
                    ))
                })
            })
            .collect::<ferroflow_engine::Result<_>>()?;
        batch(&versions)
    }
}
