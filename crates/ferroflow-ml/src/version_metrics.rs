//! Evaluating model versions as they arrive ([`crate::MlStreamExt::ml_evaluate_versions`]):
//! a single-instance node scores every version that arrives on its second input
//! (`(version, uri)` rows of saved models, e.g. the Model Center's GENERATED versions) on
//! the next `rows` labelled rows of its first input, the freshest there are and ones the
//! version was not trained on (when the evaluation reads the stream the trainer reads):
//! one metrics row per version, with the area under the ROC curve and the log-loss of its
//! predicted probabilities. Scoring a version on rows that arrived before it would measure
//! it on its own training data, which flatters the versions trained on least.
//!
//! A version that cannot be loaded or scored (a damaged file, other columns) gives a row
//! with its `error` and no metrics: it fails that version, never the job.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_engine::state::{StateDecoder, StateEncoder};
use ferroflow_engine::{
    EngineError, InstanceInfo, Operator, OperatorFactory, OperatorState, Output, RestoreContext,
    StateKind,
};

use crate::evaluation::binary_classification::{binary_metrics, positive_scores};
use crate::stage::{AlgoOperator, StageRegistry};
use crate::table::doubles;

/// Predicted probabilities are clipped to `[EPS, 1 - EPS]` for the log-loss.
const EPS: f64 = 1e-15;

/// What an evaluation node reads and how many rows it scores each version on.
#[derive(Debug, Clone)]
pub struct VersionEvaluation {
    /// The label column (1.0 positive, anything else negative), default `label`.
    pub label_col: String,
    /// The model's output with the positive class's probability: a vector column (element
    /// 1, or 0 of a one-element vector) or a double column. Default `rawPrediction`.
    pub raw_prediction_col: String,
    /// The rows each version is scored on: the ones arriving after it (default 2000).
    pub rows: usize,
    /// What saved versions are loaded with (default: this crate's stages).
    pub stages: StageRegistry,
}

impl Default for VersionEvaluation {
    fn default() -> Self {
        VersionEvaluation {
            label_col: "label".into(),
            raw_prediction_col: "rawPrediction".into(),
            rows: 2000,
            stages: crate::classes::builtin_stages(),
        }
    }
}

/// The columns of an evaluation node's output: one row per version evaluated.
pub fn version_metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("uri", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("positives", DataType::Int64, false),
        Field::new("auc", DataType::Float64, true),
        Field::new("log_loss", DataType::Float64, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// The metrics of one version (or why there are none).
#[derive(Debug, Clone, PartialEq)]
struct Scored {
    version: i64,
    uri: String,
    rows: i64,
    positives: i64,
    metrics: std::result::Result<(f64, f64), String>,
}

pub(crate) struct EvaluateFactory {
    pub(crate) name: String,
    pub(crate) eval: VersionEvaluation,
    /// The input's columns: every version is checked to score them.
    pub(crate) input: SchemaRef,
}

impl OperatorFactory for EvaluateFactory {
    fn output_schema(&self) -> SchemaRef {
        version_metrics_schema()
    }

    fn create(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        Ok(Box::new(EvaluateOperator {
            name: self.name.clone(),
            eval: self.eval.clone(),
            input: self.input.clone(),
            window: VecDeque::new(),
            window_len: 0,
            seen: 0,
            pending: VecDeque::new(),
            last: None,
            ended: false,
        }))
    }

    fn state_kind(&self) -> StateKind {
        StateKind::Instance
    }
}

struct EvaluateOperator {
    name: String,
    eval: VersionEvaluation,
    input: SchemaRef,
    /// The most recent rows (at most `rows`), oldest first, `window_len` in all.
    window: VecDeque<RecordBatch>,
    window_len: usize,
    /// Rows received in all.
    seen: u64,
    /// Versions waiting for their rows, in arrival order, with `seen` when they arrived.
    pending: VecDeque<Pending>,
    /// The newest version taken: one arriving again (a source replaying its newest
    /// version) is not evaluated twice.
    last: Option<i64>,
    /// The input ended: waiting versions are scored on the rows that came after them.
    ended: bool,
}

struct Pending {
    version: i64,
    uri: String,
    arrived_at: u64,
}

impl EvaluateOperator {
    fn add_rows(&mut self, batch: RecordBatch) {
        let n = batch.num_rows();
        if n == 0 {
            return;
        }
        self.seen += n as u64;
        self.window_len += n;
        self.window.push_back(batch);
        // Drop the oldest rows beyond the window.
        while self.window_len > self.eval.rows {
            let excess = self.window_len - self.eval.rows;
            let front = self.window.front().expect("rows in the window");
            if front.num_rows() <= excess {
                self.window_len -= front.num_rows();
                self.window.pop_front();
            } else {
                let keep = front.num_rows() - excess;
                let sliced = front.slice(excess, keep);
                self.window_len -= excess;
                *self.window.front_mut().expect("rows in the window") = sliced;
            }
        }
    }

    /// Score `p` on the last `rows` rows of `window` (all of them arrived after it).
    fn score(&self, p: &Pending, window: &RecordBatch, rows: usize) -> Scored {
        let (positives, metrics) = match self.metrics(p, window, rows) {
            Ok((positives, auc, loss)) => (positives, Ok((auc, loss))),
            Err(e) => (0, Err(e)),
        };
        Scored {
            version: p.version,
            uri: p.uri.clone(),
            rows: rows as i64,
            positives,
            metrics,
        }
    }

    /// Positives, AUC and log-loss of `p` on the last `rows` rows of `window`.
    fn metrics(
        &self,
        p: &Pending,
        window: &RecordBatch,
        rows: usize,
    ) -> std::result::Result<(i64, f64, f64), String> {
        if rows == 0 {
            return Err("no rows arrived after it".into());
        }
        let model: Arc<dyn AlgoOperator> =
            crate::swap::load_version(&self.name, p.version, &p.uri, &self.eval.stages)
                .map_err(|e| e.to_string())?;
        let window = window.slice(window.num_rows() - rows, rows);
        let out = model
            .transform(std::slice::from_ref(&window))
            .map_err(|e| format!("{} could not score: {e}", model.class_name()))?;
        let out = out
            .first()
            .ok_or_else(|| format!("{} gave no output", model.class_name()))?;
        let labels = doubles(out, &self.eval.label_col).map_err(|e| e.to_string())?;
        let probs =
            positive_scores(out, &self.eval.raw_prediction_col).map_err(|e| e.to_string())?;
        let mut points = Vec::with_capacity(labels.len());
        let (mut loss, mut positives) = (0.0, 0);
        for (row, (l, p)) in labels.into_iter().zip(probs).enumerate() {
            let (Some(l), Some(p)) = (l, p) else {
                return Err(format!("row {row}: null label or prediction"));
            };
            if !p.is_finite() {
                return Err(format!("row {row}: prediction {p}"));
            }
            let positive = l == 1.0;
            let q = p.clamp(EPS, 1.0 - EPS);
            loss -= if positive { q.ln() } else { (1.0 - q).ln() };
            positives += i64::from(positive);
            points.push((p, positive, 1.0));
        }
        if points.is_empty() {
            return Err("no rows to score".into());
        }
        let n = points.len() as f64;
        let [auc, ..] = binary_metrics(&mut points);
        Ok((positives, auc, loss / n))
    }

    fn emit(&self, results: &[Scored], out: &mut Output) -> ferroflow_engine::Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let get = |f: fn(&(f64, f64)) -> f64| {
            Float64Array::from_iter(results.iter().map(|r| r.metrics.as_ref().ok().map(f)))
        };
        out.emit(RecordBatch::try_new(
            version_metrics_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    results.iter().map(|r| r.version),
                )),
                Arc::new(StringArray::from_iter_values(
                    results.iter().map(|r| r.uri.as_str()),
                )),
                Arc::new(Int64Array::from_iter_values(results.iter().map(|r| r.rows))),
                Arc::new(Int64Array::from_iter_values(
                    results.iter().map(|r| r.positives),
                )),
                Arc::new(get(|m| m.0)),
                Arc::new(get(|m| m.1)),
                Arc::new(StringArray::from_iter(
                    results.iter().map(|r| r.metrics.as_ref().err().cloned()),
                )),
            ],
        )?);
        Ok(())
    }

    /// Evaluate the waiting versions whose rows have all arrived (at the end: all).
    fn drain(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        let mut results = Vec::new();
        // The window's rows in one batch, made once for all the versions scored now.
        let mut window: Option<RecordBatch> = None;
        while let Some(p) = self.pending.front() {
            let after = self.seen - p.arrived_at;
            let rows = if after >= self.eval.rows as u64 {
                self.eval.rows
            } else if self.ended {
                after as usize
            } else {
                break;
            };
            if window.is_none() {
                let batches: Vec<RecordBatch> = self.window.iter().cloned().collect();
                window = Some(arrow_select::concat::concat_batches(&self.input, &batches)?);
            }
            results.push(self.score(p, window.as_ref().expect("made above"), rows));
            self.pending.pop_front();
        }
        self.emit(&results, out)
    }

    fn versions(&mut self, batch: &RecordBatch) -> ferroflow_engine::Result<()> {
        for row in crate::table::version_rows(batch)? {
            let Some((v, uri)) = row else {
                return Err(EngineError::Other(format!(
                    "node '{}': a versions row without version or uri",
                    self.name
                )));
            };
            if self.last.is_none_or(|last| v > last) {
                self.pending.push_back(Pending {
                    version: v,
                    uri,
                    arrived_at: self.seen,
                });
                self.last = Some(v);
            }
        }
        Ok(())
    }
}

impl Operator for EvaluateOperator {
    fn process_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        if input == 1 {
            self.versions(&batch)?;
        } else {
            self.add_rows(batch);
        }
        self.drain(out)
    }

    /// At the end of a bounded input, versions still waiting are scored on what there is.
    fn finish(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        self.ended = true;
        self.drain(out)
    }

    /// The window's rows, and the rows seen, newest version and waiting versions.
    fn snapshot_state(&mut self) -> ferroflow_engine::Result<Option<OperatorState>> {
        let mut e = StateEncoder::new();
        e.u64(self.seen).i64(self.last.unwrap_or(i64::MIN));
        e.u64(self.pending.len() as u64);
        for p in &self.pending {
            e.i64(p.version).str(&p.uri).u64(p.arrived_at);
        }
        Ok(Some(OperatorState {
            batches: self.window.iter().cloned().collect(),
            bytes: e.finish(),
        }))
    }

    fn restore_state(
        &mut self,
        states: Vec<OperatorState>,
        _ctx: &RestoreContext,
    ) -> ferroflow_engine::Result<()> {
        let what = format!("node '{}'", self.name);
        // One instance, before and after.
        for s in states {
            let mut d = StateDecoder::new(&s.bytes, &what);
            let seen = d.u64()?;
            let last = d.i64()?;
            let n = d.count(24)?;
            let mut pending = VecDeque::new();
            for _ in 0..n {
                let version = d.i64()?;
                let uri = d.str()?.to_string();
                let arrived_at = d.u64()?;
                pending.push_back(Pending {
                    version,
                    uri,
                    arrived_at,
                });
            }
            d.end()?;
            self.seen = seen;
            self.last = (last != i64::MIN).then_some(last);
            self.pending = pending;
            self.window.clear();
            self.window_len = 0;
            for b in s.batches {
                self.window_len += b.num_rows();
                self.window.push_back(b);
            }
        }
        Ok(())
    }
}
