//! Online learning as dataflow nodes: a learner fed a stream ([`LearnerFactory`]), a model
//! fed a model-data stream ([`ModelDataFactory`]) and progressive validation
//! ([`ProgressiveFactory`]).

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use ferroflow_engine::state::{StateDecoder, StateEncoder};
use ferroflow_engine::{
    EngineError, InstanceInfo, Operator, OperatorFactory, OperatorState, Output, RestoreContext,
    StateKind, Watermark,
};

use super::{LearnContext, OnlineEstimator, OnlineLearner, event_times};
use crate::error::MlError;
use crate::stage::{AlgoOperator, AnyStage, Estimator, Model, StageRegistry};

/// An ML error, kept as the source, with what was running.
pub(crate) fn ml_err(what: impl std::fmt::Display, e: MlError) -> EngineError {
    EngineError::Library {
        what: what.to_string(),
        source: Box::new(e),
    }
}

/// `table`'s columns in the order and types of `schema` (vector columns declared with the
/// general vector type are converted to it).
pub(crate) fn conform(
    schema: &SchemaRef,
    table: &RecordBatch,
    what: &str,
) -> ferroflow_engine::Result<RecordBatch> {
    let general = crate::vector::sparse_type();
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let col = table.column_by_name(field.name()).ok_or_else(|| {
            EngineError::Other(format!("{what} gave no column '{}'", field.name()))
        })?;
        columns.push(
            if field.data_type() == &general && col.data_type() != &general {
                let rows =
                    crate::vector::read_vectors(field.name(), col).map_err(|e| ml_err(what, e))?;
                crate::vector::vector_column_general(&rows)
            } else {
                col.clone()
            },
        );
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A fresh model with `template`'s class (made by `stages`), params and model data.
pub(crate) fn copy_model(
    template: &dyn Model,
    stages: &StageRegistry,
) -> crate::Result<Box<dyn Model>> {
    let mut m = match stages.create(template.class_name())? {
        AnyStage::Model(m) => m,
        _ => {
            return Err(MlError::Invalid(format!(
                "{} is not a model",
                template.class_name()
            )));
        }
    };
    m.params_mut().set_all(&template.params().to_map())?;
    let data = template.model_data()?;
    if data.iter().any(|b| b.num_rows() > 0) {
        m.set_model_data(&data)?;
    }
    Ok(m)
}

/// `e` as an online estimator, or an error naming it.
pub(crate) fn online(e: &dyn Estimator) -> ferroflow_engine::Result<&dyn OnlineEstimator> {
    e.as_online().ok_or_else(|| {
        EngineError::plan(format!(
            "{} does not learn online (an online estimator is needed)",
            e.class_name()
        ))
    })
}

/// Makes the single instance of a learner node.
pub(crate) struct LearnerFactory {
    pub(crate) name: String,
    /// An online estimator ([`crate::Estimator::as_online`] is `Some`).
    pub(crate) estimator: Arc<dyn Estimator>,
    pub(crate) input: SchemaRef,
    pub(crate) ctx: LearnContext,
}

impl OperatorFactory for LearnerFactory {
    fn output_schema(&self) -> SchemaRef {
        match self.estimator.as_online() {
            Some(e) => e.model_data_schema(),
            None => Arc::new(Schema::empty()),
        }
    }

    fn create(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        let learner = online(self.estimator.as_ref())?
            .learner(&self.input, &self.ctx)
            .map_err(|e| ml_err(self.estimator.class_name(), e))?;
        Ok(Box::new(LearnerOperator {
            name: self.name.clone(),
            class: self.estimator.class_name(),
            learner,
            schema: self.output_schema(),
            initial_done: false,
        }))
    }

    /// The learner's state (one instance).
    fn state_kind(&self) -> StateKind {
        StateKind::Instance
    }
}

struct LearnerOperator {
    name: String,
    class: &'static str,
    learner: Box<dyn OnlineLearner>,
    schema: SchemaRef,
    /// The initial model went out (or the run was restored, so it went out before).
    initial_done: bool,
}

impl LearnerOperator {
    fn emit(
        &self,
        rows: crate::Result<Vec<RecordBatch>>,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        for b in rows.map_err(|e| ml_err(self.class, e))? {
            out.emit(conform(&self.schema, &b, self.class)?);
        }
        Ok(())
    }

    fn initial(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        if !self.initial_done {
            self.initial_done = true;
            let rows = self.learner.initial();
            self.emit(rows, out)?;
        }
        Ok(())
    }
}

impl Operator for LearnerOperator {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        self.initial(out)?;
        let rows = self.learner.learn(&batch);
        self.emit(rows, out)
    }

    fn process_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        self.initial(out)?;
        let rows = self.learner.watermark(watermark);
        self.emit(rows, out)
    }

    fn finish(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        self.initial(out)?;
        let rows = self.learner.finish();
        self.emit(rows, out)
    }

    fn next_timer(&self) -> Option<i64> {
        // The initial model goes out at once, before any input.
        if !self.initial_done {
            return Some(0);
        }
        self.learner.next_timer()
    }

    fn on_timer(&mut self, now_ms: i64, out: &mut Output) -> ferroflow_engine::Result<()> {
        self.initial(out)?;
        let rows = self.learner.on_timer(now_ms);
        self.emit(rows, out)
    }

    fn snapshot_state(&mut self) -> ferroflow_engine::Result<Option<OperatorState>> {
        let mut e = StateEncoder::new();
        e.bool(self.initial_done);
        self.learner.snapshot(&mut e);
        Ok(Some(OperatorState {
            batches: Vec::new(),
            bytes: e.finish(),
        }))
    }

    fn restore_state(
        &mut self,
        states: Vec<OperatorState>,
        _ctx: &RestoreContext,
    ) -> ferroflow_engine::Result<()> {
        let Some(state) = states.into_iter().next() else {
            return Ok(());
        };
        let what = format!("node '{}'", self.name);
        let mut d = StateDecoder::new(&state.bytes, &what);
        self.initial_done = d.bool()?;
        self.learner
            .restore(&mut d)
            .map_err(|e| ml_err(self.class, e))
    }
}

/// Makes the instances of a model node fed a model-data stream (input 1, broadcast).
pub(crate) struct ModelDataFactory {
    pub(crate) name: String,
    pub(crate) template: Arc<dyn Model>,
    /// Makes each instance's copy of the template.
    pub(crate) stages: StageRegistry,
    pub(crate) schema: SchemaRef,
    pub(crate) event_time: Option<String>,
    pub(crate) max_held_rows: usize,
}

impl OperatorFactory for ModelDataFactory {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn create(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        let model = copy_model(self.template.as_ref(), &self.stages)
            .map_err(|e| ml_err(self.template.class_name(), e))?;
        let has_model = model
            .model_data()
            .is_ok_and(|d| d.iter().any(|b| b.num_rows() > 0));
        Ok(Box::new(ModelDataOperator {
            name: self.name.clone(),
            class: self.template.class_name(),
            model,
            has_model,
            held: VecDeque::new(),
            held_rows: 0,
            event_time: self.event_time.clone(),
            schema: self.schema.clone(),
            max_held_rows: self.max_held_rows,
            stages: self.stages.clone(),
        }))
    }

    /// The model it serves and the rows waiting for one: every instance serves the same
    /// versions, so every new instance takes the newest of the old instances' models.
    fn state_kind(&self) -> StateKind {
        StateKind::Broadcast
    }
}

struct ModelDataOperator {
    name: String,
    class: &'static str,
    model: Box<dyn Model>,
    /// Makes the probe that reads an arriving version's number.
    stages: StageRegistry,
    has_model: bool,
    /// Rows that arrived before a model could score them, in arrival order.
    held: VecDeque<RecordBatch>,
    held_rows: usize,
    event_time: Option<String>,
    schema: SchemaRef,
    max_held_rows: usize,
}

impl ModelDataOperator {
    fn err(&self, e: MlError) -> EngineError {
        ml_err(self.class, e)
    }

    fn score(&self, batch: &RecordBatch, out: &mut Output) -> ferroflow_engine::Result<()> {
        let t = self
            .model
            .transform(std::slice::from_ref(batch))
            .map_err(|e| self.err(e))?;
        if let Some(t) = t.first() {
            out.emit(conform(&self.schema, t, self.class)?);
        }
        Ok(())
    }

    fn hold(&mut self, batch: RecordBatch) -> ferroflow_engine::Result<()> {
        self.held_rows += batch.num_rows();
        if self.held_rows > self.max_held_rows {
            return Err(EngineError::Other(format!(
                "{} rows wait for a model version, more than the {} a model node holds",
                self.held_rows, self.max_held_rows
            )));
        }
        self.held.push_back(batch);
        Ok(())
    }

    /// Score the rows of `batch` the model may score now; hold the rest.
    fn offer(&mut self, batch: RecordBatch, out: &mut Output) -> ferroflow_engine::Result<()> {
        if !self.has_model {
            return self.hold(batch);
        }
        let (Some(until), Some(col)) = (self.model.scores_until(), &self.event_time) else {
            return self.score(&batch, out);
        };
        let times = event_times(&batch, col).map_err(|e| self.err(e))?;
        if times.iter().all(|t| *t <= until) {
            return self.score(&batch, out);
        }
        let now: Vec<bool> = times.iter().map(|t| *t <= until).collect();
        let later: Vec<bool> = now.iter().map(|b| !b).collect();
        let ready = crate::table::filter_rows(&batch, &now).map_err(|e| self.err(e))?;
        if ready.num_rows() > 0 {
            self.score(&ready, out)?;
        }
        let wait = crate::table::filter_rows(&batch, &later).map_err(|e| self.err(e))?;
        self.hold(wait)
    }

    /// New model data: rows newer than the version served replace the model.
    fn update(&mut self, data: RecordBatch, out: &mut Output) -> ferroflow_engine::Result<()> {
        let data = match (
            self.model.version(),
            data.column_by_name(VERSION_COLS[0])
                .or(data.column_by_name(VERSION_COLS[1])),
        ) {
            (Some(current), Some(col)) => {
                let v = arrow_cast::cast(col, &arrow_schema::DataType::Int64)?;
                let v = v
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .expect("cast to Int64");
                let keep: Vec<bool> = (0..v.len())
                    .map(|i| arrow_array::Array::is_valid(v, i) && v.value(i) > current)
                    .collect();
                crate::table::filter_rows(&data, &keep).map_err(|e| self.err(e))?
            }
            _ => data,
        };
        if data.num_rows() == 0 {
            return Ok(());
        }
        self.model
            .set_model_data(&[data])
            .map_err(|e| self.err(e))?;
        self.has_model = true;
        let held: Vec<RecordBatch> = self.held.drain(..).collect();
        self.held_rows = 0;
        for b in held {
            self.offer(b, out)?;
        }
        Ok(())
    }
}

/// The version columns of the online models' data (`modelVersion`; `version` for
/// OnlineStandardScaler).
const VERSION_COLS: [&str; 2] = ["modelVersion", "version"];

impl Operator for ModelDataOperator {
    fn process_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        if input == 1 {
            return self.update(batch, out);
        }
        // Rows keep their order: none overtakes rows already waiting.
        if !self.held.is_empty() {
            return self.hold(batch);
        }
        self.offer(batch, out)
    }

    /// No newer model can come: waiting rows are scored with the newest one.
    fn finish(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        if self.held_rows == 0 {
            return Ok(());
        }
        if !self.has_model {
            return Err(EngineError::Other(format!(
                "{} rows arrived and no model version did",
                self.held_rows
            )));
        }
        for b in std::mem::take(&mut self.held) {
            self.score(&b, out)?;
        }
        self.held_rows = 0;
        Ok(())
    }

    fn snapshot_state(&mut self) -> ferroflow_engine::Result<Option<OperatorState>> {
        let model = if self.has_model {
            self.model.model_data().map_err(|e| self.err(e))?
        } else {
            Vec::new()
        };
        let mut e = StateEncoder::new();
        e.u64(self.held.len() as u64).u64(model.len() as u64);
        let mut batches: Vec<RecordBatch> = self.held.iter().cloned().collect();
        batches.extend(model);
        Ok(Some(OperatorState {
            batches,
            bytes: e.finish(),
        }))
    }

    /// The newest model of all old instances; the waiting rows of the old instances this
    /// one stands for (old instance `k` goes to new instance `k % parallelism`).
    fn restore_state(
        &mut self,
        states: Vec<OperatorState>,
        ctx: &RestoreContext,
    ) -> ferroflow_engine::Result<()> {
        let what = format!("node '{}'", self.name);
        let own = |k: usize| {
            if ctx.same_parallelism() {
                k == ctx.instance.index
            } else {
                k % ctx.instance.parallelism == ctx.instance.index
            }
        };
        let mut best: Option<(i64, Vec<RecordBatch>)> = None;
        for (k, s) in states.into_iter().enumerate() {
            let mut d = StateDecoder::new(&s.bytes, &what);
            let held = d.u64()? as usize;
            let models = d.u64()? as usize;
            if held.saturating_add(models) != s.batches.len() {
                return Err(EngineError::State(format!(
                    "{what}: {} batches where {held} held and {models} model batches were saved",
                    s.batches.len()
                )));
            }
            let mut batches = s.batches;
            let model = batches.split_off(held);
            if own(k) {
                for b in batches {
                    self.held_rows += b.num_rows();
                    self.held.push_back(b);
                }
            }
            if model.is_empty() {
                continue;
            }
            let mut probe =
                copy_model(self.model.as_ref(), &self.stages).map_err(|e| self.err(e))?;
            probe.set_model_data(&model).map_err(|e| self.err(e))?;
            let v = probe.version().unwrap_or(i64::MIN);
            if best.as_ref().is_none_or(|(b, _)| v > *b) {
                best = Some((v, model));
            }
        }
        if let Some((_, model)) = best {
            self.model.set_model_data(&model).map_err(|e| self.err(e))?;
            self.has_model = true;
        }
        Ok(())
    }
}

/// One stage of progressive validation.
pub(crate) enum ProgressiveStage {
    /// A stage that needs no fit (VectorAssembler, a fitted model).
    Transform(Arc<dyn AlgoOperator>),
    /// An online estimator ([`crate::Estimator::as_online`] is `Some`), with the schema of
    /// the rows it reads.
    Learn(Arc<dyn Estimator>, SchemaRef),
}

/// Makes the single instance of a progressive-validation node.
pub(crate) struct ProgressiveFactory {
    pub(crate) name: String,
    pub(crate) stages: Arc<Vec<ProgressiveStage>>,
    pub(crate) schema: SchemaRef,
}

impl OperatorFactory for ProgressiveFactory {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn create(&self, _: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        let ctx = LearnContext {
            event_time_col: None,
            parallelism: 1,
        };
        let stages = self
            .stages
            .iter()
            .map(|s| {
                Ok(match s {
                    ProgressiveStage::Transform(t) => Running::Transform(t.clone()),
                    ProgressiveStage::Learn(e, schema) => Running::Learn(
                        e.class_name(),
                        online(e.as_ref())?
                            .learner(schema, &ctx)
                            .map_err(|err| ml_err(e.class_name(), err))?,
                    ),
                })
            })
            .collect::<ferroflow_engine::Result<_>>()?;
        Ok(Box::new(ProgressiveOperator {
            name: self.name.clone(),
            stages,
            schema: self.schema.clone(),
        }))
    }

    /// One instance: each online stage's learner state and the rows it holds.
    fn state_kind(&self) -> StateKind {
        StateKind::Instance
    }
}

enum Running {
    Transform(Arc<dyn AlgoOperator>),
    Learn(&'static str, Box<dyn OnlineLearner>),
}

struct ProgressiveOperator {
    name: String,
    stages: Vec<Running>,
    schema: SchemaRef,
}

impl ProgressiveOperator {
    /// Run `batches` through the stages from `from` on.
    fn run(
        &mut self,
        from: usize,
        mut batches: Vec<RecordBatch>,
    ) -> ferroflow_engine::Result<Vec<RecordBatch>> {
        for stage in &mut self.stages[from..] {
            let mut next = Vec::with_capacity(batches.len());
            for b in &batches {
                match stage {
                    Running::Transform(t) => {
                        let out = t
                            .transform(std::slice::from_ref(b))
                            .map_err(|e| ml_err(t.class_name(), e))?;
                        next.extend(out.into_iter().take(1));
                    }
                    Running::Learn(class, l) => {
                        next.extend(l.score_then_learn(b).map_err(|e| ml_err(*class, e))?)
                    }
                }
            }
            batches = next;
        }
        Ok(batches)
    }

    fn emit(&self, batches: Vec<RecordBatch>, out: &mut Output) -> ferroflow_engine::Result<()> {
        for b in batches {
            out.emit(conform(&self.schema, &b, "progressive validation")?);
        }
        Ok(())
    }
}

impl Operator for ProgressiveOperator {
    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        let done = self.run(0, vec![batch])?;
        self.emit(done, out)
    }

    fn finish(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        for i in 0..self.stages.len() {
            let flushed = match &mut self.stages[i] {
                Running::Learn(class, l) => l.finish_scoring().map_err(|e| ml_err(*class, e))?,
                Running::Transform(_) => continue,
            };
            let done = self.run(i + 1, flushed)?;
            self.emit(done, out)?;
        }
        Ok(())
    }

    /// Per online stage, in order: its learner's bytes and how many held batches follow
    /// in `batches`.
    fn snapshot_state(&mut self) -> ferroflow_engine::Result<Option<OperatorState>> {
        let mut e = StateEncoder::new();
        let mut batches = Vec::new();
        for stage in &self.stages {
            if let Running::Learn(_, l) = stage {
                let mut inner = StateEncoder::new();
                l.snapshot(&mut inner);
                let held = l.held_for_scoring();
                e.bytes(&inner.finish()).u64(held.len() as u64);
                batches.extend(held);
            }
        }
        Ok(Some(OperatorState {
            batches,
            bytes: e.finish(),
        }))
    }

    fn restore_state(
        &mut self,
        states: Vec<OperatorState>,
        _ctx: &RestoreContext,
    ) -> ferroflow_engine::Result<()> {
        let Some(state) = states.into_iter().next() else {
            return Ok(());
        };
        let what = format!("node '{}'", self.name);
        let mut d = StateDecoder::new(&state.bytes, &what);
        let mut batches = state.batches.into_iter();
        for stage in &mut self.stages {
            if let Running::Learn(class, l) = stage {
                let bytes = d.bytes()?;
                let mut inner = StateDecoder::new(bytes, &what);
                l.restore(&mut inner).map_err(|e| ml_err(*class, e))?;
                inner.end()?;
                let n = d.u64()? as usize;
                let held: Vec<RecordBatch> = batches.by_ref().take(n).collect();
                if held.len() != n {
                    return Err(EngineError::State(format!(
                        "{what}: the checkpoint names {n} held batches for {class}, it has {}",
                        held.len()
                    )));
                }
                l.restore_held(held).map_err(|e| ml_err(*class, e))?;
            }
        }
        d.end()?;
        Ok(())
    }
}

/// Output schema of `stages` run in order over `input`, for
/// [`crate::MlStreamExt::ml_progressive`]: each stateless stage's by transforming an empty
/// batch, each online estimator's by its scored fields.
pub(crate) fn plan_progressive(
    input: &SchemaRef,
    stages: Vec<AnyStage>,
) -> crate::Result<(Vec<ProgressiveStage>, SchemaRef)> {
    let mut schema: SchemaRef = input.clone();
    let mut plan = Vec::with_capacity(stages.len());
    let mut last: Option<Vec<arrow_schema::Field>> = None;
    for stage in stages {
        match stage {
            AnyStage::Operator(op) => {
                schema = probe(op.as_ref(), &schema)?;
                plan.push(ProgressiveStage::Transform(Arc::from(op)));
            }
            AnyStage::Model(m) => {
                schema = match m.output_schema(&schema)? {
                    Some(s) => s,
                    None => probe(m.as_ref(), &schema)?,
                };
                plan.push(ProgressiveStage::Transform(Arc::from(
                    m as Box<dyn AlgoOperator>,
                )));
            }
            AnyStage::Estimator(e) => {
                let Some(online) = e.as_online() else {
                    return Err(MlError::Invalid(format!(
                        "{}: progressive validation needs stages that need no fit or learn \
                         online; fit it first",
                        e.class_name()
                    )));
                };
                let fields = online.scored_fields()?;
                // Checks the columns it reads.
                online.learner(
                    &schema,
                    &LearnContext {
                        event_time_col: None,
                        parallelism: 1,
                    },
                )?;
                let read = schema.clone();
                schema = super::appended(&schema, fields.clone());
                last = Some(fields);
                plan.push(ProgressiveStage::Learn(Arc::from(e), read));
            }
        }
    }
    let fields = last.ok_or_else(|| {
        MlError::Invalid("progressive validation needs an online estimator among the stages".into())
    })?;
    Ok((plan, super::appended(input, fields)))
}

fn probe(stage: &dyn AlgoOperator, input: &Schema) -> crate::Result<SchemaRef> {
    let out = stage.transform(&[RecordBatch::new_empty(Arc::new(input.clone()))])?;
    out.first()
        .map(|b| b.schema())
        .ok_or_else(|| MlError::Invalid(format!("{} produced no table", stage.class_name())))
}
