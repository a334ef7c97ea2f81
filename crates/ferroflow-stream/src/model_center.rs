//! The `model_center` sink: every model-data version an engine job emits becomes a
//! Model Center version (a saved `ferroflow-ml` model, lineage to the job execution), which
//! writes its `MODEL_GENERATED` event as every registration does.
//!
//! ```yaml
//! sinks:
//!   - name: publish
//!     input: train                 # a fit_online node: one model-data row per version
//!     type: model_center
//!     model: ctr                   # registered if it does not exist
//!     stage: {className: OnlineLogisticRegressionModel}   # the model the rows are data of
//!     version_column: modelVersion # default
//! ```
//!
//! Each row is saved, with the stage, as a model directory
//! `<data dir>/models/<project>/<model>/<execution>.<job>/v<version>` and registered with
//! that uri. Registration is idempotent by that uri: a version a restored run emits again
//! (the same `version_column` value, replayed from a checkpoint) is registered once, so the
//! Model Center's version numbers have no gaps or repeats across a crash.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use ferroflow_engine::{EngineError, InstanceInfo, Sink, SinkWriter};
use ferroflow_jobspec::{BuildContext, Result, Settings, SinkFactory};
use ferroflow_meta::{MetaError, MetaStore, NewModelVersion};
use ferroflow_ml::AnyStage;
use serde::Deserialize;

/// Where a run registers its versions: the store, a runtime to call it from the sink's
/// thread, and the run's identity for paths and lineage.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) store: Arc<dyn MetaStore>,
    pub(crate) handle: tokio::runtime::Handle,
    pub(crate) project: String,
    /// `<project>/<job execution>`, the lineage of every version.
    pub(crate) lineage: String,
    /// The workflow execution, the context of the events the run sends.
    pub(crate) execution: String,
    /// The job execution (`<execution>.<job>.<attempt>`).
    pub(crate) job_execution: String,
    /// `<execution>.<job>`: versions of one job in one execution share a directory.
    pub(crate) run_dir: String,
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelCenterSettings {
    /// The registered model.
    model: String,
    /// The model the rows are model data of, `{className, paramMap}`.
    stage: serde_json::Value,
    /// The column numbering versions (default `modelVersion`).
    version_column: Option<String>,
}

/// The `model_center` sink type; without a target (at submission) it builds and checks,
/// and refuses to run.
pub(crate) struct ModelCenterSinkType(pub(crate) Option<Target>);

impl SinkFactory for ModelCenterSinkType {
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>> {
        let s: ModelCenterSettings = ctx.parse(settings)?;
        check_model_name(ctx, &s.model)?;
        // The stage is checked now: a row must become this model.
        match ferroflow_ml::stage_from_json(&s.stage).map_err(|e| ctx.err_from(e))? {
            AnyStage::Model(_) => {}
            _ => {
                return Err(ctx.err(
                    "'stage' must be a model class (e.g. OnlineLogisticRegressionModel): the rows are its model data",
                ));
            }
        }
        Ok(Arc::new(ModelCenterSink {
            node: ctx.node().to_string(),
            model: s.model,
            stage: s.stage,
            version_column: s.version_column.unwrap_or_else(|| "modelVersion".into()),
            target: self.0.clone(),
        }))
    }
}

/// A model name is a path component of where versions are saved: plain characters only.
pub(crate) fn check_model_name(ctx: &BuildContext<'_>, model: &str) -> Result<()> {
    if model.is_empty()
        || !model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || model.starts_with('.')
    {
        return Err(ctx.err(format!(
            "model name '{model}': letters, digits, '_', '-' and '.' only"
        )));
    }
    Ok(())
}

struct ModelCenterSink {
    node: String,
    model: String,
    stage: serde_json::Value,
    version_column: String,
    target: Option<Target>,
}

impl Sink for ModelCenterSink {
    fn check_schema(&self, schema: &Schema) -> ferroflow_engine::Result<()> {
        match schema.field_with_name(&self.version_column) {
            Ok(f) if f.data_type() == &arrow_schema::DataType::Int64 => Ok(()),
            Ok(f) => Err(EngineError::plan(format!(
                "sink '{}': version column '{}' is {}, not int64",
                self.node,
                self.version_column,
                f.data_type()
            ))),
            Err(_) => Err(EngineError::plan(format!(
                "sink '{}': the input has no version column '{}' (set 'version_column')",
                self.node, self.version_column
            ))),
        }
    }

    /// Versions are numbered in arrival order: one writer.
    fn parallelism_hint(&self) -> Option<usize> {
        Some(1)
    }

    fn create_writer(
        &self,
        _instance: &InstanceInfo,
        _schema: SchemaRef,
    ) -> ferroflow_engine::Result<Box<dyn SinkWriter>> {
        let target = self.target.clone().ok_or_else(|| {
            EngineError::plan(format!(
                "sink '{}': a model_center sink runs only inside a workflow job (it needs the Model Center)",
                self.node
            ))
        })?;
        // Checked at build: the stage is a model; its data is replaced row by row.
        let AnyStage::Model(stage) = ferroflow_ml::stage_from_json(&self.stage)
            .map_err(|e| EngineError::plan(format!("sink '{}': {e}", self.node)))?
        else {
            return Err(EngineError::plan(format!(
                "sink '{}': 'stage' is not a model",
                self.node
            )));
        };
        Ok(Box::new(ModelCenterWriter {
            node: self.node.clone(),
            model: self.model.clone(),
            stage,
            version_column: self.version_column.clone(),
            target,
            registered: None,
        }))
    }
}

struct ModelCenterWriter {
    node: String,
    model: String,
    stage: Box<dyn ferroflow_ml::Model>,
    version_column: String,
    target: Target,
    /// Uris of the model's versions, read once when the first version arrives (registering
    /// the model if need be) and kept up to date: the one writer is the only one adding.
    registered: Option<HashSet<String>>,
}

impl ModelCenterWriter {
    fn err(&self, what: impl std::fmt::Display) -> EngineError {
        EngineError::Other(format!(
            "sink '{}' (model '{}'): {what}",
            self.node, self.model
        ))
    }

    fn publish(&mut self, version: i64, row: RecordBatch) -> ferroflow_engine::Result<()> {
        let t = &self.target;
        let dir = t
            .data_dir
            .join("models")
            .join(&t.project)
            .join(&self.model)
            .join(&t.run_dir)
            .join(format!("v{version}"));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let uri = dir.display().to_string();
        if self.registered.is_none() {
            match t.handle.block_on(t.store.register_model(&self.model, "")) {
                Ok(_) | Err(MetaError::AlreadyExists { .. }) => {}
                Err(e) => return Err(self.err(e)),
            }
            let versions = t
                .handle
                .block_on(t.store.list_model_versions(&self.model, None))
                .map_err(|e| self.err(e))?;
            self.registered = Some(versions.into_iter().map(|v| v.uri).collect());
        }
        if self.registered.as_ref().is_some_and(|r| r.contains(&uri)) {
            // Emitted again by a run restored from a checkpoint: registered already.
            return Ok(());
        }
        self.stage.set_model_data(&[row]).map_err(|e| self.err(e))?;
        if dir.exists() {
            // Saved by a run that died before registering it: replaced.
            std::fs::remove_dir_all(&dir).map_err(|e| self.err(format!("{uri}: {e}")))?;
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.err(format!("{uri}: {e}")))?;
        }
        self.stage.save(&dir).map_err(|e| self.err(e))?;
        t.handle
            .block_on(t.store.create_model_version(
                &self.model,
                NewModelVersion {
                    uri: uri.clone(),
                    flavor: "ferroflow-ml".into(),
                    metrics: Default::default(),
                    job_execution: Some(t.lineage.clone()),
                    datasets: vec![],
                },
            ))
            .map_err(|e| self.err(e))?;
        if let Some(r) = &mut self.registered {
            r.insert(uri);
        }
        Ok(())
    }
}

impl SinkWriter for ModelCenterWriter {
    fn write(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        let versions = batch
            .column_by_name(&self.version_column)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| self.err(format!("no int64 column '{}'", self.version_column)))?
            .clone();
        for i in 0..batch.num_rows() {
            if versions.is_null(i) {
                return Err(self.err(format!("row {i}: null '{}'", self.version_column)));
            }
            self.publish(versions.value(i), batch.slice(i, 1))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> ferroflow_engine::Result<()> {
        Ok(())
    }
}

/// `type: model_center` (source) settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionsSettings {
    /// The registered model.
    model: String,
    /// The stage whose versions are fed (default DEPLOYED).
    stage: Option<String>,
    /// How often to look for new versions (default 200ms).
    poll_interval: Option<String>,
}

/// The `model_center` source type: `(version, uri)` rows of the versions of a model that
/// enter a stage (the newest one in it at start, then each one moved there), for an `ml`
/// node's `versions:`. Without a target (at submission) it builds and refuses to run.
pub(crate) struct ModelCenterSourceType(pub(crate) Option<Target>);

impl ferroflow_jobspec::SourceFactory for ModelCenterSourceType {
    fn build(
        &self,
        settings: &Settings,
        ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn ferroflow_engine::Source>> {
        let s: VersionsSettings = ctx.parse(settings)?;
        let stage: ferroflow_meta::ModelStage = match &s.stage {
            Some(st) => st
                .parse()
                .map_err(|e: ferroflow_meta::MetaError| ctx.err(format!("stage: {e}")))?,
            None => ferroflow_meta::ModelStage::Deployed,
        };
        let poll = match &s.poll_interval {
            Some(p) => ctx.duration(p)?,
            None => std::time::Duration::from_millis(200),
        };
        if poll.is_zero() {
            return Err(ctx.err("poll_interval must be above 0"));
        }
        check_model_name(ctx, &s.model)?;
        Ok(match &self.0 {
            Some(t) => {
                // A serving or evaluation job may start before the training job registers
                // the model: it is registered (empty) so the job waits for versions.
                match t.handle.block_on(t.store.register_model(&s.model, "")) {
                    Ok(_) | Err(MetaError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(ctx.err_from(e)),
                }
                Arc::new(
                    ferroflow_inference::ModelCenterSource::new(
                        t.store.clone(),
                        &s.model,
                        stage,
                        t.handle.clone(),
                    )
                    .with_poll_interval(poll),
                )
            }
            None => Arc::new(NoModelCenter {
                node: ctx.node().to_string(),
            }),
        })
    }
}

/// The versions source outside a workflow job: the right schema, and a refusal to run.
struct NoModelCenter {
    node: String,
}

impl ferroflow_engine::Source for NoModelCenter {
    fn schema(&self) -> SchemaRef {
        ferroflow_inference::model_version_schema()
    }

    fn is_bounded(&self) -> bool {
        false
    }

    fn create_reader(
        &self,
        _instance: &InstanceInfo,
    ) -> ferroflow_engine::Result<Box<dyn ferroflow_engine::SourceReader>> {
        Err(EngineError::plan(format!(
            "source '{}': a model_center source runs only inside a workflow job (it needs the Model Center)",
            self.node
        )))
    }
}
