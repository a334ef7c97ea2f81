//! ML stages as dataflow nodes: a fitted model (or any transformer) applied to every batch of
//! a stream, bounded or not ([`MlStreamExt::ml_transform`]); an estimator fitted on a bounded
//! stream as a batch job of the engine ([`MlStreamExt::ml_fit`]).
//!
//! The node's output schema is what the stage gives for an empty batch of the input schema,
//! so a missing or mistyped column fails when the job is built. Vector output columns are
//! declared with the type that holds dense and sparse vectors alike (the sparse struct, a
//! dense row having null `indices`), and each batch is converted to it: one batch may come
//! out dense and the next sparse (VectorAssembler chooses per row) without breaking the
//! stream's schema.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use ferroflow_engine::{DataStream, EngineError, InstanceInfo, Operator, OperatorFactory, Output};

use crate::stage::{AlgoOperator, AnyStage, Estimator, Model};
use crate::vector::{is_vector_type, sparse_type};

/// ML stages on a [`DataStream`].
pub trait MlStreamExt {
    /// Apply `stage` (a model, or a transformer that needs no fit) to every batch; node
    /// `name`. Fails now if the stream lacks a column the stage reads.
    fn ml_transform(
        &self,
        name: &str,
        stage: Arc<dyn AlgoOperator>,
    ) -> ferroflow_engine::Result<DataStream>;

    /// Fit `estimator` on this bounded stream, as the end of a batch job: node `name`
    /// gathers every batch and fits at end of input; the model is in the returned
    /// [`FittedModel`] once the job has finished. A fit error fails the job, naming the node.
    /// Refused at build time when the stream is unbounded.
    fn ml_fit(
        &self,
        name: &str,
        estimator: Arc<dyn Estimator>,
    ) -> ferroflow_engine::Result<FittedModel>;

    /// Train online estimator `estimator` on this stream, bounded or not (node `name`, one
    /// instance: global batches form in arrival order). Returns its model-data stream: one
    /// row per version, with Flink ML's model-data columns and a version column.
    /// `event_time_col` names the stream's event-time column (ms) for event-time windows;
    /// watermarks come from the stream. Refused now when the estimator does not learn
    /// online, misses a column, or (as Flink ML) the stream runs more instances than rows
    /// per global batch.
    fn ml_fit_online(
        &self,
        name: &str,
        estimator: Arc<dyn Estimator>,
        event_time_col: Option<&str>,
    ) -> ferroflow_engine::Result<DataStream>;

    /// Fit a pipeline on this stream, bounded or not, as Flink ML's `Pipeline.fit` does on
    /// unbounded input: stages that need no fit (and fitted models) transform the rows
    /// for the stages after them; each online estimator trains on the rows it is given
    /// (as [`MlStreamExt::ml_fit_online`], node `name.I` for stage I) and its model, fed
    /// that model-data stream, transforms the rows for the stages after it. Returns one
    /// model-data stream per online estimator, in stage order. A stage that must be fitted
    /// in batch is refused, naming it.
    fn ml_fit_pipeline_online(
        &self,
        name: &str,
        stages: Vec<AnyStage>,
        event_time_col: Option<&str>,
    ) -> ferroflow_engine::Result<Vec<OnlineFit>>;

    /// Score this stream with `model`, whose model data arrives on `model_data` (a
    /// broadcast input: every instance sees every version). Each model-data batch replaces
    /// the model between two batches of rows, so no row is lost or scored twice; versioned
    /// model data older than the version served is skipped. Rows that arrive before the
    /// first model (or, for OnlineStandardScalerModel, later than its timestamp plus
    /// `maxAllowedModelDelayMs`, by `event_time_col`) wait, in order, up to `max_held_rows`.
    /// `model` may already hold model data (a batch-trained model): it serves until the
    /// first version arrives.
    fn ml_transform_with_model_data(
        &self,
        name: &str,
        model: Arc<dyn Model>,
        model_data: &DataStream,
        event_time_col: Option<&str>,
    ) -> ferroflow_engine::Result<DataStream>;

    /// Score this stream with whole saved models that arrive on `versions` (a broadcast
    /// input of `(version, uri)` rows, `uri` a directory written by [`crate::save_stage`],
    /// as the Model Center's `ferroflow-ml` versions are). A version different from the one
    /// served is loaded and replaces it between two batches of rows, so no row is lost or
    /// scored twice. Fails now when `versions` lacks the columns or the model a column it
    /// reads; fails the job, naming node, version and uri, when a version cannot be loaded
    /// or gives other columns than the node's.
    fn ml_transform_with_versions(
        &self,
        name: &str,
        model: crate::VersionedModel,
        versions: &DataStream,
    ) -> ferroflow_engine::Result<DataStream>;

    /// Evaluate every model version that arrives on `versions` (`(version, uri)` rows of
    /// saved models, as [`MlStreamExt::ml_transform_with_versions`] takes) on the labelled
    /// rows of this stream that arrive after it (node `name`, one instance): one row per
    /// version with
    /// the area under the ROC curve and the log-loss (see
    /// [`crate::version_metrics`]). A version older than one already evaluated is
    /// passed over; one that cannot be scored gives a row with its error.
    fn ml_evaluate_versions(
        &self,
        name: &str,
        eval: crate::version_metrics::VersionEvaluation,
        versions: &DataStream,
    ) -> ferroflow_engine::Result<DataStream>;

    /// Progressive validation (node `name`, one instance): the stages run in order over
    /// each row; online estimators score a row with their model before learning from it.
    /// The output holds the input columns and the last online estimator's outputs
    /// (`prediction`, `rawPrediction`, `modelVersion` for OnlineLogisticRegression).
    fn ml_progressive(
        &self,
        name: &str,
        stages: Vec<AnyStage>,
    ) -> ferroflow_engine::Result<DataStream>;
}

/// One online estimator of a pipeline fitted on a stream
/// ([`MlStreamExt::ml_fit_pipeline_online`]).
#[derive(Debug, Clone)]
pub struct OnlineFit {
    /// Its index in the pipeline's stages.
    pub stage: usize,
    /// Its Flink ML class name.
    pub class: &'static str,
    /// Its model data: one row per version, as [`MlStreamExt::ml_fit_online`] emits.
    pub model_data: DataStream,
}

/// Rows a model node fed a model-data stream holds while it waits for a first version.
pub const MAX_HELD_ROWS: usize = 1_000_000;

/// The model a fit node produces; it is there once the job has finished.
#[derive(Clone, Default)]
pub struct FittedModel(Arc<parking_lot::Mutex<Option<Box<dyn Model>>>>);

impl FittedModel {
    /// Take the model (once the job has finished successfully; `None` before, or after a
    /// failed fit, whose error failed the job).
    pub fn take(&self) -> Option<Box<dyn Model>> {
        self.0.lock().take()
    }
}

struct FitSink {
    name: String,
    estimator: Arc<dyn Estimator>,
    slot: FittedModel,
}

struct FitWriter {
    name: String,
    estimator: Arc<dyn Estimator>,
    slot: FittedModel,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl ferroflow_engine::Sink for FitSink {
    /// The rows gathered so far are the one writer's state (saved as Arrow batches).
    fn state_kind(&self) -> ferroflow_engine::StateKind {
        ferroflow_engine::StateKind::Instance
    }

    fn restore_writer(
        &self,
        _instance: &InstanceInfo,
        schema: SchemaRef,
        states: Vec<ferroflow_engine::OperatorState>,
    ) -> ferroflow_engine::Result<Box<dyn ferroflow_engine::SinkWriter>> {
        let mut batches = Vec::new();
        for b in states.into_iter().flat_map(|s| s.batches) {
            if b.schema().fields() != schema.fields() {
                return Err(EngineError::plan(format!(
                    "node '{}': the checkpointed rows have the columns {:?}, its input now {:?}",
                    self.name,
                    b.schema().fields(),
                    schema.fields()
                )));
            }
            batches.push(b);
        }
        Ok(Box::new(FitWriter {
            name: self.name.clone(),
            estimator: self.estimator.clone(),
            slot: self.slot.clone(),
            schema,
            batches,
        }))
    }

    // Every batch to one writer: the fit sees the whole table.
    fn parallelism_hint(&self) -> Option<usize> {
        Some(1)
    }

    fn create_writer(
        &self,
        _instance: &InstanceInfo,
        schema: SchemaRef,
    ) -> ferroflow_engine::Result<Box<dyn ferroflow_engine::SinkWriter>> {
        Ok(Box::new(FitWriter {
            name: self.name.clone(),
            estimator: self.estimator.clone(),
            slot: self.slot.clone(),
            schema,
            batches: Vec::new(),
        }))
    }
}

impl ferroflow_engine::SinkWriter for FitWriter {
    fn write(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        if batch.num_rows() > 0 {
            self.batches.push(batch);
        }
        Ok(())
    }

    /// Every row gathered so far, as one batch (kept as that one batch from now on, so a
    /// checkpoint after many small batches does not write them one by one again).
    fn snapshot_state(
        &mut self,
    ) -> ferroflow_engine::Result<Option<ferroflow_engine::OperatorState>> {
        if self.batches.len() > 1 {
            let all = arrow_select::concat::concat_batches(&self.schema, &self.batches)?;
            self.batches = vec![all];
        }
        Ok(Some(ferroflow_engine::OperatorState {
            batches: self.batches.clone(),
            bytes: Vec::new(),
        }))
    }

    /// End of input: fit on everything that arrived (on the sink's own thread).
    fn finish(&mut self) -> ferroflow_engine::Result<()> {
        let table = arrow_select::concat::concat_batches(&self.schema, &self.batches)?;
        self.batches.clear();
        let model = self.estimator.fit(&[table]).map_err(|e| {
            EngineError::Other(format!(
                "node '{}' ({}): {e}",
                self.name,
                self.estimator.class_name()
            ))
        })?;
        *self.slot.0.lock() = Some(model);
        Ok(())
    }
}

impl MlStreamExt for DataStream {
    fn ml_fit(
        &self,
        name: &str,
        estimator: Arc<dyn Estimator>,
    ) -> ferroflow_engine::Result<FittedModel> {
        if !self.is_bounded() {
            return Err(EngineError::plan(format!(
                "node '{name}': fitting {} needs a bounded stream (its input has an unbounded source)",
                estimator.class_name()
            )));
        }
        let slot = FittedModel::default();
        self.sink(
            name,
            Arc::new(FitSink {
                name: name.to_string(),
                estimator,
                slot: slot.clone(),
            }),
        )?;
        Ok(slot)
    }

    fn ml_fit_online(
        &self,
        name: &str,
        estimator: Arc<dyn Estimator>,
        event_time_col: Option<&str>,
    ) -> ferroflow_engine::Result<DataStream> {
        let plan = |e: crate::MlError| {
            EngineError::plan(format!("node '{name}' ({}): {e}", estimator.class_name()))
        };
        let online = crate::online::nodes::online(estimator.as_ref())?;
        let ctx = crate::online::LearnContext {
            event_time_col: event_time_col.map(str::to_string),
            parallelism: self.current_parallelism(),
        };
        // Checks the columns, the params and the initial model now.
        online.learner(&self.schema(), &ctx).map_err(plan)?;
        self.transform_single(
            name,
            Arc::new(crate::online::nodes::LearnerFactory {
                name: name.to_string(),
                estimator: estimator.clone(),
                input: self.schema(),
                ctx,
            }),
        )
    }

    fn ml_transform_with_model_data(
        &self,
        name: &str,
        model: Arc<dyn Model>,
        model_data: &DataStream,
        event_time_col: Option<&str>,
    ) -> ferroflow_engine::Result<DataStream> {
        let plan = |e: crate::MlError| {
            EngineError::plan(format!("node '{name}' ({}): {e}", model.class_name()))
        };
        let input = self.schema();
        if let Some(c) = event_time_col {
            input.field_with_name(c).map_err(|_| {
                EngineError::plan(format!("node '{name}': no event-time column '{c}'"))
            })?;
        }
        let schema = match model.output_schema(&input).map_err(plan)? {
            Some(s) => s,
            None => output_schema_by_probe(name, model.as_ref(), &input)?,
        };
        // Every instance must see every version.
        let versions = model_data.clone().broadcast();
        self.transform_multi(
            name,
            &[&versions],
            Arc::new(crate::online::nodes::ModelDataFactory {
                name: name.to_string(),
                template: model,
                // Models fed model data are this crate's (online models and the models
                // of its batch estimators).
                stages: crate::classes::builtin_stages(),
                schema,
                event_time: event_time_col.map(str::to_string),
                max_held_rows: MAX_HELD_ROWS,
            }),
        )
    }

    fn ml_fit_pipeline_online(
        &self,
        name: &str,
        stages: Vec<AnyStage>,
        event_time_col: Option<&str>,
    ) -> ferroflow_engine::Result<Vec<OnlineFit>> {
        let last = stages
            .iter()
            .rposition(|s| matches!(s, AnyStage::Estimator(_)))
            .ok_or_else(|| {
                EngineError::plan(format!(
                    "node '{name}': the pipeline has no estimator to fit"
                ))
            })?;
        let mut rows = self.clone();
        let mut fits = Vec::new();
        for (i, stage) in stages.into_iter().enumerate().take(last + 1) {
            let node = format!("{name}.{i}");
            match stage {
                AnyStage::Operator(op) => rows = rows.ml_transform(&node, Arc::from(op))?,
                AnyStage::Model(m) => {
                    rows = rows.ml_transform(&node, Arc::from(m as Box<dyn AlgoOperator>))?
                }
                AnyStage::Estimator(e) => {
                    let Some(online) = e.as_online() else {
                        return Err(EngineError::plan(format!(
                            "node '{name}': stage {i} ({}) is fitted in batch, not online; fit \
                             it first or use its online counterpart",
                            e.class_name()
                        )));
                    };
                    let model = online.new_model().map_err(|err| {
                        EngineError::plan(format!("node '{node}' ({}): {err}", e.class_name()))
                    })?;
                    let class = e.class_name();
                    let data =
                        rows.ml_fit_online(&format!("{node}-fit"), Arc::from(e), event_time_col)?;
                    if i < last {
                        rows = rows.ml_transform_with_model_data(
                            &node,
                            Arc::from(model),
                            &data,
                            event_time_col,
                        )?;
                    }
                    fits.push(OnlineFit {
                        stage: i,
                        class,
                        model_data: data,
                    });
                }
            }
        }
        Ok(fits)
    }

    fn ml_transform_with_versions(
        &self,
        name: &str,
        model: crate::VersionedModel,
        versions: &DataStream,
    ) -> ferroflow_engine::Result<DataStream> {
        crate::swap::check_versions_schema(name, &versions.schema())?;
        let input = self.schema();
        let scored = output_schema_by_probe(name, model.template.as_ref(), &input)?;
        let schema = crate::swap::output_schema(&model, scored.clone())?;
        let versions = versions.clone().broadcast();
        self.transform_multi(
            name,
            &[&versions],
            Arc::new(crate::swap::VersionsFactory {
                name: name.to_string(),
                model,
                scored,
                input,
                schema,
                max_held_rows: MAX_HELD_ROWS,
            }),
        )
    }

    fn ml_evaluate_versions(
        &self,
        name: &str,
        eval: crate::version_metrics::VersionEvaluation,
        versions: &DataStream,
    ) -> ferroflow_engine::Result<DataStream> {
        crate::swap::check_versions_schema(name, &versions.schema())?;
        if eval.rows == 0 || eval.rows > MAX_HELD_ROWS {
            return Err(EngineError::plan(format!(
                "node '{name}': a version is scored on 1 to {MAX_HELD_ROWS} rows, not {}",
                eval.rows
            )));
        }
        let input = self.schema();
        if input.field_with_name(&eval.label_col).is_err() {
            return Err(EngineError::plan(format!(
                "node '{name}': the input has no label column '{}' (columns: {})",
                eval.label_col,
                input
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.transform_multi_single(
            name,
            &[versions],
            Arc::new(crate::version_metrics::EvaluateFactory {
                name: name.to_string(),
                eval,
                input,
            }),
        )
    }

    fn ml_progressive(
        &self,
        name: &str,
        stages: Vec<AnyStage>,
    ) -> ferroflow_engine::Result<DataStream> {
        let (stages, schema) = crate::online::nodes::plan_progressive(&self.schema(), stages)
            .map_err(|e| EngineError::plan(format!("node '{name}': {e}")))?;
        self.transform_single(
            name,
            Arc::new(crate::online::nodes::ProgressiveFactory {
                name: name.to_string(),
                stages: Arc::new(stages),
                schema,
            }),
        )
    }

    fn ml_transform(
        &self,
        name: &str,
        stage: Arc<dyn AlgoOperator>,
    ) -> ferroflow_engine::Result<DataStream> {
        let schema = output_schema_by_probe(name, stage.as_ref(), &self.schema())?;
        self.transform(name, Arc::new(StageFactory { stage, schema }))
    }
}

/// The output schema of `stage` over `input`, by transforming an empty batch; vector columns
/// take the type that holds dense and sparse vectors alike.
fn output_schema_by_probe(
    name: &str,
    stage: &dyn AlgoOperator,
    input: &SchemaRef,
) -> ferroflow_engine::Result<SchemaRef> {
    let empty = RecordBatch::new_empty(input.clone());
    let probe = stage
        .transform(&[empty])
        .map_err(|e| EngineError::plan(format!("node '{name}' ({}): {e}", stage.class_name())))?;
    let first = probe.into_iter().next().ok_or_else(|| {
        EngineError::plan(format!(
            "node '{name}': {} produced no table",
            stage.class_name()
        ))
    })?;
    let fields: Vec<Field> = first
        .schema()
        .fields()
        .iter()
        .map(|f| {
            if is_vector_type(f.data_type()) {
                Field::new(f.name(), sparse_type(), true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

struct StageFactory {
    stage: Arc<dyn AlgoOperator>,
    schema: SchemaRef,
}

impl OperatorFactory for StageFactory {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn create(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        Ok(Box::new(StageOperator {
            stage: self.stage.clone(),
            schema: self.schema.clone(),
        }))
    }
}

struct StageOperator {
    stage: Arc<dyn AlgoOperator>,
    schema: SchemaRef,
}

impl Operator for StageOperator {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        let result = self
            .stage
            .transform(&[batch])
            .map_err(|e| EngineError::Other(format!("{}: {e}", self.stage.class_name())))?;
        let Some(table) = result.into_iter().next() else {
            return Ok(());
        };
        out.emit(crate::online::nodes::conform(
            &self.schema,
            &table,
            self.stage.class_name(),
        )?);
        Ok(())
    }
}
