//! ML-library stages as job-spec operations: `ml` (a transformer or model applied to every
//! batch, optionally fed versions from a model-data stream or saved versions), `fit_online`
//! (an online estimator trained on the stream, emitting its model-data versions) and
//! `evaluate` (every arriving saved version scored on the labelled rows after it).
//!
//! ```yaml
//! nodes:
//!   - name: features
//!     input: clicks
//!     ml: {stage: {className: VectorAssembler, paramMap: {inputCols: [a, b], outputCol: features}}}
//!   - name: train
//!     input: features
//!     fit_online:
//!       stage: {className: OnlineLogisticRegression, paramMap: {globalBatchSize: 64,
//!               initialModelData: {coefficient: {values: [0, 0]}, modelVersion: 0}}}
//!   - name: score
//!     input: features
//!     ml:
//!       stage: {className: OnlineLogisticRegressionModel}
//!       model_data: train          # each new version replaces the model between batches
//!   - name: score_saved
//!     input: features
//!     ml: {model_dir: models/lr}   # a model saved by ferroflow ml fit (relative to the spec)
//!   - name: evaluated
//!     input: features
//!     evaluate: {versions: generated, label_col: clicked, rows: 2000}
//! ```

use std::sync::Arc;

use ferroflow_engine::DataStream;
use ferroflow_jobspec::{BuildContext, NodeFactory, NodeInputs, Result, Settings};
use ferroflow_ml::{AnyStage, MlStreamExt, StageRegistry};
use serde::Deserialize;

/// `ml:` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MlSettings {
    /// A stage in Flink ML's metadata shape `{className, paramMap}`.
    stage: Option<serde_json::Value>,
    /// A saved stage's directory (relative to the spec file).
    model_dir: Option<String>,
    /// A node whose rows are this model's model data, one version each.
    model_data: Option<String>,
    /// The event-time column (ms), for models that hold rows by event time.
    event_time_column: Option<String>,
    /// A node of `(version, uri)` rows (e.g. a `model_center` source): each version's saved
    /// model replaces the one served; rows wait for the first. `stage`/`model_dir` then
    /// only fix the output columns.
    versions: Option<String>,
    /// With `versions`: add this column holding the version that scored each row.
    version_column: Option<String>,
    /// With `versions`: add this timestamp column holding when each row was scored.
    scored_at_column: Option<String>,
    /// One model-data row (JSON-lines encoding: vectors as arrays) for a `stage` that has
    /// none: with `versions` it only fixes the output columns (rows wait for the first
    /// version); otherwise it is the model served.
    initial_model_data: Option<serde_json::Map<String, serde_json::Value>>,
}

fn stage_of(
    stages: &StageRegistry,
    ctx: &BuildContext<'_>,
    stage: Option<&serde_json::Value>,
    model_dir: Option<&str>,
) -> Result<AnyStage> {
    match (stage, model_dir) {
        (Some(meta), None) => stages.from_json(meta).map_err(|e| ctx.err_from(e)),
        (None, Some(dir)) => stages.load(&ctx.path(dir)).map_err(|e| ctx.err_from(e)),
        _ => Err(ctx.err("give exactly one of 'stage' and 'model_dir'")),
    }
}

fn class_of(stage: &AnyStage) -> &str {
    match stage {
        AnyStage::Operator(s) => s.class_name(),
        AnyStage::Estimator(s) => s.class_name(),
        AnyStage::Model(s) => s.class_name(),
    }
}

fn need_input(ctx: &BuildContext<'_>, inputs: NodeInputs) -> Result<(DataStream, Vec<DataStream>)> {
    let input = inputs
        .input
        .ok_or_else(|| ctx.err("this node needs 'input'"))?;
    Ok((input, inputs.extra))
}

/// The `ml` operation, its stages (and saved versions) read with the registry it holds.
pub(crate) struct MlNode(pub(crate) StageRegistry);

impl NodeFactory for MlNode {
    fn extra_inputs(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Vec<String>> {
        let s: MlSettings = ctx.parse(settings)?;
        if s.model_data.is_some() && s.versions.is_some() {
            return Err(ctx.err(
                "give at most one of 'model_data' (model-data rows) and 'versions' (saved models)",
            ));
        }
        Ok(s.model_data.into_iter().chain(s.versions).collect())
    }

    fn build(
        &self,
        settings: &Settings,
        inputs: NodeInputs,
        ctx: &BuildContext<'_>,
    ) -> Result<DataStream> {
        let s: MlSettings = ctx.parse(settings)?;
        let (input, extra) = need_input(ctx, inputs)?;
        let mut stage = stage_of(&self.0, ctx, s.stage.as_ref(), s.model_dir.as_deref())?;
        if let Some(row) = &s.initial_model_data {
            let AnyStage::Model(m) = &mut stage else {
                return Err(ctx.err(
                    "'initial_model_data' is for a model stage (e.g. OnlineLogisticRegressionModel)",
                ));
            };
            let data = ferroflow_ml::io::rows_to_batch(std::slice::from_ref(row))
                .map_err(|e| ctx.err_from(e))?;
            m.set_model_data(&[data]).map_err(|e| ctx.err_from(e))?;
        }
        let et = s.event_time_column.as_deref();
        if s.versions.is_some() {
            if et.is_some() {
                return Err(ctx.err("'event_time_column' is used with 'model_data' only"));
            }
            let template: Arc<dyn ferroflow_ml::AlgoOperator> = match stage {
                AnyStage::Model(m) => {
                    let m: Arc<dyn ferroflow_ml::Model> = Arc::from(m);
                    m
                }
                AnyStage::Operator(o) => Arc::from(o),
                AnyStage::Estimator(e) => {
                    return Err(ctx.err(format!(
                        "{} is an estimator; 'versions' serves saved models (give the model class)",
                        e.class_name()
                    )));
                }
            };
            let mut model = ferroflow_ml::VersionedModel::new(template)
                .wait_for_first_version()
                .stages(self.0.clone());
            if let Some(c) = &s.version_column {
                model = model.version_column(c);
            }
            if let Some(c) = &s.scored_at_column {
                model = model.scored_at_column(c);
            }
            return input
                .ml_transform_with_versions(ctx.node(), model, &extra[0])
                .map_err(|e| ctx.err_from(e));
        }
        if s.version_column.is_some() {
            return Err(ctx.err("'version_column' is used with 'versions' only"));
        }
        if s.scored_at_column.is_some() {
            return Err(ctx.err("'scored_at_column' is used with 'versions' only"));
        }
        let r = match (stage, extra.first()) {
            (AnyStage::Model(m), Some(model_data)) => {
                input.ml_transform_with_model_data(ctx.node(), Arc::from(m), model_data, et)
            }
            (other, Some(_)) => {
                return Err(ctx.err(format!(
                    "'model_data' feeds a model (e.g. OnlineLogisticRegressionModel); {} is not one",
                    class_of(&other)
                )));
            }
            (AnyStage::Estimator(e), None) => {
                return Err(ctx.err(format!(
                    "{} is an estimator: train it with 'fit_online' (online estimators), or fit it and give 'model_dir'",
                    e.class_name()
                )));
            }
            (_, None) if et.is_some() => {
                return Err(ctx.err("'event_time_column' is used with 'model_data' only"));
            }
            (AnyStage::Model(m), None) => {
                let m: Arc<dyn ferroflow_ml::Model> = Arc::from(m);
                input.ml_transform(ctx.node(), m)
            }
            (AnyStage::Operator(o), None) => input.ml_transform(ctx.node(), Arc::from(o)),
        };
        r.map_err(|e| ctx.err_from(e))
    }
}

/// `fit_online:` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FitOnlineSettings {
    /// The online estimator (or a pipeline with exactly one), `{className, paramMap}`.
    stage: serde_json::Value,
    /// The event-time column (ms), for event-time global batches.
    event_time_column: Option<String>,
}

/// The `fit_online` operation: its output is the estimator's model-data stream.
pub(crate) struct FitOnlineNode(pub(crate) StageRegistry);

impl NodeFactory for FitOnlineNode {
    fn build(
        &self,
        settings: &Settings,
        inputs: NodeInputs,
        ctx: &BuildContext<'_>,
    ) -> Result<DataStream> {
        let s: FitOnlineSettings = ctx.parse(settings)?;
        let (input, _) = need_input(ctx, inputs)?;
        let et = s.event_time_column.as_deref();
        let stages = match s.stage.get("stages") {
            Some(list) => list
                .as_array()
                .ok_or_else(|| ctx.err("'stages' must be a list"))?
                .iter()
                .map(|m| self.0.from_json(m).map_err(|e| ctx.err_from(e)))
                .collect::<Result<Vec<_>>>()?,
            None => {
                let stage = self.0.from_json(&s.stage).map_err(|e| ctx.err_from(e))?;
                match stage {
                    AnyStage::Estimator(e) if e.as_online().is_some() => {
                        return input
                            .ml_fit_online(ctx.node(), Arc::from(e), et)
                            .map_err(|e| ctx.err_from(e));
                    }
                    other => {
                        return Err(ctx.err(format!(
                            "{} does not learn online (known online estimators: OnlineLogisticRegression, OnlineKMeans, OnlineStandardScaler)",
                            class_of(&other)
                        )));
                    }
                }
            }
        };
        let online = stages
            .iter()
            .filter(|s| matches!(s, AnyStage::Estimator(e) if e.as_online().is_some()))
            .count();
        if online != 1 {
            return Err(ctx.err(format!(
                "a fit_online pipeline has exactly one online estimator (found {online}); its model data is the node's output"
            )));
        }
        let mut fits = input
            .ml_fit_pipeline_online(ctx.node(), stages, et)
            .map_err(|e| ctx.err_from(e))?;
        Ok(fits.remove(0).model_data)
    }
}

/// `evaluate:` settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateSettings {
    /// A node of `(version, uri)` rows (e.g. a `model_center` source, stage GENERATED):
    /// each version is evaluated once.
    versions: String,
    /// The label column (default `label`).
    label_col: Option<String>,
    /// The models' probability output (default `rawPrediction`).
    raw_prediction_col: Option<String>,
    /// The rows each version is scored on: those arriving after it (default 2000).
    rows: Option<usize>,
}

/// The `evaluate` operation: every version arriving on `versions` scored on the next `rows`
/// labelled rows of the input (rows it was not trained on); one row per version (`version`, `uri`, `rows`,
/// `positives`, `auc`, `log_loss`, `error`), for a `model_metrics` sink.
pub(crate) struct EvaluateNode(pub(crate) StageRegistry);

impl NodeFactory for EvaluateNode {
    fn extra_inputs(&self, settings: &Settings, ctx: &BuildContext<'_>) -> Result<Vec<String>> {
        let s: EvaluateSettings = ctx.parse(settings)?;
        Ok(vec![s.versions])
    }

    fn build(
        &self,
        settings: &Settings,
        inputs: NodeInputs,
        ctx: &BuildContext<'_>,
    ) -> Result<DataStream> {
        let s: EvaluateSettings = ctx.parse(settings)?;
        let (input, extra) = need_input(ctx, inputs)?;
        let defaults = ferroflow_ml::version_metrics::VersionEvaluation::default();
        let eval = ferroflow_ml::version_metrics::VersionEvaluation {
            label_col: s.label_col.unwrap_or(defaults.label_col),
            raw_prediction_col: s.raw_prediction_col.unwrap_or(defaults.raw_prediction_col),
            rows: s.rows.unwrap_or(defaults.rows),
            stages: self.0.clone(),
        };
        input
            .ml_evaluate_versions(ctx.node(), eval, &extra[0])
            .map_err(|e| ctx.err_from(e))
    }
}
