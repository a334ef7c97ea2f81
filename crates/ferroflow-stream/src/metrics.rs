//! The `model_metrics` sink: rows of metrics per model version (an `evaluate` node's) are
//! recorded as Metadata Service metric records of that version and announced with a
//! `MODEL_METRICS` event; with `promote`, a version whose metric reaches the threshold
//! moves on (VALIDATED, then DEPLOYED), one that does not is kept or deprecated.
//!
//! ```yaml
//! sinks:
//!   - name: judge
//!     input: evaluated             # rows: version (int64), float64 metrics, error (utf8)
//!     type: model_metrics
//!     model: ctr
//!     promote: {metric: auc, threshold: 0.7, to: DEPLOYED}   # optional
//!     reject: deprecate            # keep (default) | deprecate, for versions below it
//! ```
//!
//! Every float64 column of a row with a value is one metric record (parent
//! `model:<model>/<version>`, body `{key, value, timestamp, job_execution}`), named by the
//! model, version, key and `<execution>.<job>`, so a row replayed after a restore records
//! nothing twice and announces nothing twice. A row with an `error` fails its version:
//! nothing is recorded but the event, and it is rejected. Only a version still GENERATED is
//! moved, and a version is never deployed over a newer DEPLOYED one.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};
use ferroflow_engine::{EngineError, InstanceInfo, Sink, SinkWriter};
use ferroflow_jobspec::{BuildContext, Result, Settings, SinkFactory};
use ferroflow_meta::{MetaError, ModelStage, NewEvent, NewRecord, RecordKind};
use serde::{Deserialize, Serialize};

use crate::model_center::{Target, check_model_name};

/// `promote:` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Promote {
    /// The metric compared (a float64 column).
    metric: String,
    /// Promote when `metric >= threshold` (or `<=` with `lower_is_better`).
    threshold: f64,
    /// VALIDATED or DEPLOYED (default DEPLOYED: through VALIDATED).
    to: Option<String>,
    /// For losses: promote when `metric <= threshold`.
    #[serde(default)]
    lower_is_better: bool,
}

/// What happens to a version that does not pass.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Reject {
    /// It stays GENERATED.
    #[default]
    Keep,
    /// It moves to DEPRECATED.
    Deprecate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSettings {
    /// The registered model the versions belong to.
    model: String,
    /// The column numbering versions (default `version`).
    version_column: Option<String>,
    promote: Option<Promote>,
    #[serde(default)]
    reject: Reject,
}

/// The `model_metrics` sink type; without a target (at submission) it builds and checks,
/// and refuses to run.
pub(crate) struct ModelMetricsSinkType(pub(crate) Option<Target>);

impl SinkFactory for ModelMetricsSinkType {
    fn build(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>> {
        let s: MetricsSettings = ctx.parse(settings)?;
        check_model_name(ctx, &s.model)?;
        let to = match s.promote.as_ref().and_then(|p| p.to.as_deref()) {
            None => ModelStage::Deployed,
            Some(t) => match t.parse() {
                Ok(st @ (ModelStage::Validated | ModelStage::Deployed)) => st,
                _ => {
                    return Err(ctx.err(format!("promote.to: '{t}' must be VALIDATED or DEPLOYED")));
                }
            },
        };
        if let Some(p) = &s.promote
            && !p.threshold.is_finite()
        {
            return Err(ctx.err("promote.threshold must be a finite number"));
        }
        if s.promote.is_none() && s.reject == Reject::Deprecate {
            return Err(ctx.err("'reject: deprecate' needs 'promote' (what a version must reach)"));
        }
        Ok(Arc::new(ModelMetricsSink {
            node: ctx.node().to_string(),
            model: s.model,
            version_column: s.version_column.unwrap_or_else(|| "version".into()),
            promote: s.promote.map(|p| (p, to)),
            reject: s.reject,
            target: self.0.clone(),
        }))
    }
}

struct ModelMetricsSink {
    node: String,
    model: String,
    version_column: String,
    promote: Option<(Promote, ModelStage)>,
    reject: Reject,
    target: Option<Target>,
}

impl Sink for ModelMetricsSink {
    fn check_schema(&self, schema: &Schema) -> ferroflow_engine::Result<()> {
        let plan = |m: String| Err(EngineError::plan(format!("sink '{}': {m}", self.node)));
        match schema.field_with_name(&self.version_column) {
            Ok(f) if f.data_type() == &DataType::Int64 => {}
            Ok(f) => {
                return plan(format!(
                    "version column '{}' is {}, not int64",
                    self.version_column,
                    f.data_type()
                ));
            }
            Err(_) => {
                return plan(format!(
                    "the input has no version column '{}' (set 'version_column')",
                    self.version_column
                ));
            }
        }
        if let Ok(f) = schema.field_with_name("error")
            && f.data_type() != &DataType::Utf8
        {
            return plan(format!("column 'error' is {}, not utf8", f.data_type()));
        }
        let metrics: Vec<&str> = schema
            .fields()
            .iter()
            .filter(|f| f.data_type() == &DataType::Float64)
            .map(|f| f.name().as_str())
            .collect();
        if metrics.is_empty() {
            return plan("the input has no float64 column: no metric to record".into());
        }
        if let Some((p, _)) = &self.promote
            && !metrics.contains(&p.metric.as_str())
        {
            return plan(format!(
                "promote.metric '{}' is not a float64 column of the input (metrics: {})",
                p.metric,
                metrics.join(", ")
            ));
        }
        Ok(())
    }

    /// Versions are judged in arrival order: one writer.
    fn parallelism_hint(&self) -> Option<usize> {
        Some(1)
    }

    fn create_writer(
        &self,
        _instance: &InstanceInfo,
        schema: SchemaRef,
    ) -> ferroflow_engine::Result<Box<dyn SinkWriter>> {
        let target = self.target.clone().ok_or_else(|| {
            EngineError::plan(format!(
                "sink '{}': a model_metrics sink runs only inside a workflow job (it needs the Model Center)",
                self.node
            ))
        })?;
        Ok(Box::new(MetricsWriter {
            node: self.node.clone(),
            model: self.model.clone(),
            version_column: self.version_column.clone(),
            promote: self.promote.clone(),
            reject: self.reject,
            metrics: schema
                .fields()
                .iter()
                .filter(|f| f.data_type() == &DataType::Float64)
                .map(|f| f.name().clone())
                .collect(),
            target,
        }))
    }
}

/// The value of a `MODEL_METRICS` event.
#[derive(Debug, Serialize)]
struct MetricsEvent<'a> {
    version: i64,
    metrics: &'a BTreeMap<String, f64>,
    error: Option<&'a str>,
    /// The version's stage once judged.
    stage: &'a str,
    job_execution: &'a str,
}

struct MetricsWriter {
    node: String,
    model: String,
    version_column: String,
    promote: Option<(Promote, ModelStage)>,
    reject: Reject,
    metrics: Vec<String>,
    target: Target,
}

impl MetricsWriter {
    fn err(&self, what: impl std::fmt::Display) -> EngineError {
        EngineError::Other(format!(
            "sink '{}' (model '{}'): {what}",
            self.node, self.model
        ))
    }

    /// Record one version's metrics; `false` when a run before this one already did.
    fn record(
        &self,
        version: i64,
        metrics: &BTreeMap<String, f64>,
        error: Option<&str>,
    ) -> ferroflow_engine::Result<bool> {
        let t = &self.target;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        // A failed version has no metric: its marker record makes the replay check work
        // for it too.
        let mut entries: Vec<(String, serde_json::Value)> = metrics
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        if error.is_some() {
            entries.push(("evaluation_failed".into(), serde_json::json!(1.0)));
        }
        let mut fresh = false;
        for (key, value) in entries {
            let rec = NewRecord {
                project: t.project.clone(),
                name: format!("{}-v{version}-{key}-{}", self.model, t.run_dir),
                parent: Some(format!("model:{}/{version}", self.model)),
                body: serde_json::json!({
                    "key": key, "value": value, "timestamp": now,
                    "job_execution": t.job_execution, "error": error,
                }),
            };
            match t
                .handle
                .block_on(t.store.create_record(RecordKind::Metric, rec))
            {
                Ok(_) => fresh = true,
                Err(MetaError::AlreadyExists { .. }) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(fresh)
    }

    /// Move `version` as its metrics say, if it is still GENERATED (so judging again after
    /// a restore changes nothing); the stage it is in afterwards.
    fn judge(
        &self,
        version: i64,
        metrics: &BTreeMap<String, f64>,
        failed: bool,
    ) -> ferroflow_engine::Result<ModelStage> {
        let t = &self.target;
        let current = t
            .handle
            .block_on(t.store.get_model_version(&self.model, version))
            .map_err(|e| self.err(e))?;
        let Some((p, to)) = &self.promote else {
            return Ok(current.stage);
        };
        if current.stage != ModelStage::Generated {
            // Judged already (before a restore), or moved by someone else: left as it is.
            return Ok(current.stage);
        }
        let passes = !failed
            && metrics.get(&p.metric).is_some_and(|v| {
                if p.lower_is_better {
                    *v <= p.threshold
                } else {
                    *v >= p.threshold
                }
            });
        let set = |stage: ModelStage| {
            t.handle
                .block_on(t.store.set_model_stage(&self.model, version, stage))
                .map_err(|e| self.err(e))
        };
        if !passes {
            if self.reject == Reject::Deprecate {
                set(ModelStage::Deprecated)?;
                return Ok(ModelStage::Deprecated);
            }
            return Ok(ModelStage::Generated);
        }
        set(ModelStage::Validated)?;
        if *to == ModelStage::Validated {
            return Ok(ModelStage::Validated);
        }
        // Never back: a newer version deployed meanwhile (by hand, or judged by a run
        // that got further) stays.
        let deployed = t
            .handle
            .block_on(
                t.store
                    .list_model_versions(&self.model, Some(ModelStage::Deployed)),
            )
            .map_err(|e| self.err(e))?;
        if deployed.iter().any(|d| d.version > version) {
            return Ok(ModelStage::Validated);
        }
        set(ModelStage::Deployed)?;
        Ok(ModelStage::Deployed)
    }
}

impl SinkWriter for MetricsWriter {
    fn write(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        let versions = batch
            .column_by_name(&self.version_column)
            .ok_or_else(|| self.err(format!("no column '{}'", self.version_column)))?
            .as_primitive::<Int64Type>()
            .clone();
        let errors = batch
            .column_by_name("error")
            .map(|c| c.as_string::<i32>().clone());
        let columns: Vec<(String, arrow_array::Float64Array)> = self
            .metrics
            .iter()
            .filter_map(|m| {
                batch
                    .column_by_name(m)
                    .map(|c| (m.clone(), c.as_primitive::<Float64Type>().clone()))
            })
            .collect();
        for i in 0..batch.num_rows() {
            if versions.is_null(i) {
                return Err(self.err(format!("row {i}: null '{}'", self.version_column)));
            }
            let version = versions.value(i);
            let error = errors
                .as_ref()
                .and_then(|e| e.is_valid(i).then(|| e.value(i)));
            let metrics: BTreeMap<String, f64> = columns
                .iter()
                .filter(|(_, c)| c.is_valid(i) && c.value(i).is_finite())
                .map(|(k, c)| (k.clone(), c.value(i)))
                .collect();
            let stage = self.judge(version, &metrics, error.is_some())?;
            if !self.record(version, &metrics, error)? {
                // Recorded and announced by a run before a restore.
                continue;
            }
            let t = &self.target;
            let value = serde_json::to_string(&MetricsEvent {
                version,
                metrics: &metrics,
                error,
                stage: stage.as_str(),
                job_execution: &t.job_execution,
            })
            .map_err(|e| self.err(e))?;
            t.handle
                .block_on(t.store.send_event(NewEvent {
                    key: self.model.clone(),
                    value,
                    event_type: ferroflow_workflow::events::MODEL_METRICS.into(),
                    namespace: t.project.clone(),
                    sender: self.node.clone(),
                    context: Some(t.execution.clone()),
                    client_id: None,
                    sequence: None,
                }))
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> ferroflow_engine::Result<()> {
        Ok(())
    }
}
