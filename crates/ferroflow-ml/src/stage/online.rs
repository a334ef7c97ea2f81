//! The online side of the stage API: an [`OnlineEstimator`] makes an [`OnlineLearner`],
//! fed rows in arrival order, emitting model-data versions (the algorithms are in
//! `crate::online`).

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use ferroflow_engine::state::{StateDecoder, StateEncoder};

use super::{Estimator, Model};
use crate::error::{MlError, Result};

/// What a learner is told when it is made.
#[derive(Debug, Clone, Default)]
pub struct LearnContext {
    /// The event-time column (milliseconds), when the stream has event time.
    pub event_time_col: Option<String>,
    /// Parallelism of the stream the learner reads (Flink ML refuses more subtasks than
    /// rows in a global batch).
    pub parallelism: usize,
}

/// An estimator that learns from a stream.
pub trait OnlineEstimator: Estimator {
    /// A learner for rows of `schema` (checks the columns it reads now).
    fn learner(&self, schema: &Schema, ctx: &LearnContext) -> Result<Box<dyn OnlineLearner>>;

    /// The model this estimator trains (its params carried over), without model data.
    fn new_model(&self) -> Result<Box<dyn Model>>;

    /// Schema of the model-data rows the learner emits.
    fn model_data_schema(&self) -> SchemaRef;

    /// The columns [`OnlineLearner::score_then_learn`] appends.
    fn scored_fields(&self) -> Result<Vec<arrow_schema::Field>>;

    /// Start from this model data (its newest row) instead of the `initialModelData` param.
    fn set_initial_model_data(&mut self, data: &[RecordBatch]) -> Result<()> {
        let _ = data;
        Err(MlError::Invalid(format!(
            "{} takes no initial model data",
            self.class_name()
        )))
    }
}

/// The state of one online training: fed rows in order, emits model versions.
///
/// Every hook returns the model-data rows (one row per version, in version order) that
/// what it was told completes.
pub trait OnlineLearner: Send {
    /// The model to emit before any row (OnlineKMeans's initial model is the first element
    /// of its model stream). Called once, at the start of a fresh run (not after a restore).
    fn initial(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    /// Learn from `batch`, in row order.
    fn learn(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>>;

    /// Event time reached `watermark` (ms).
    fn watermark(&mut self, _watermark: i64) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    /// The wall-clock time (ms) at which [`OnlineLearner::on_timer`] is due.
    fn next_timer(&self) -> Option<i64> {
        None
    }

    /// The wall clock reached `now_ms`.
    fn on_timer(&mut self, _now_ms: i64) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    /// The input ended.
    fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    /// Progressive validation: score each row of `batch` with the model as it is before
    /// the row, then learn from it; returns `batch` with the model's output columns, in row
    /// order. A predictor gives a row with null features null outputs and learns nothing
    /// from it. A transformer that sees no label (OnlineStandardScaler) learns each row
    /// first and scales it with the newest model; rows before its first model wait for it,
    /// so the batches returned need not be the batch given (rows stay in order).
    fn score_then_learn(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>>;

    /// The end of progressive validation: rows still waiting for a first model, with null
    /// outputs.
    fn finish_scoring(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    /// Progressive validation: the rows held for a first model, for a checkpoint (in order).
    fn held_for_scoring(&self) -> Vec<RecordBatch> {
        Vec::new()
    }

    /// Take back the rows of [`OnlineLearner::held_for_scoring`] after
    /// [`OnlineLearner::restore`]. A learner that holds no rows refuses any.
    fn restore_held(&mut self, held: Vec<RecordBatch>) -> Result<()> {
        if held.is_empty() {
            Ok(())
        } else {
            Err(MlError::Invalid(format!(
                "the checkpoint holds {} batches of rows waiting for a model; this learner holds none",
                held.len()
            )))
        }
    }

    /// Rows dropped for arriving after their window closed.
    fn late_rows(&self) -> u64 {
        0
    }

    /// Everything needed to go on after a restart.
    fn snapshot(&self, e: &mut StateEncoder);

    /// Take back what [`OnlineLearner::snapshot`] wrote.
    fn restore(&mut self, d: &mut StateDecoder<'_>) -> Result<()>;
}
