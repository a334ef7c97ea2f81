//! The model node: an operator that appends a model's outputs to every row.
//!
//! Rows are gathered into model calls sized by the [`AdaptiveBatcher`]; a call runs when
//! enough rows wait, when the oldest has waited `max_latency`, or when input runs dry
//! ([`Operator::input_drained`]), so a row never waits for input that is not coming.
//!
//! **Hot swap.** With a second input of model versions (columns `version: Int64` and
//! `uri: Utf8`, broadcast to every instance), a new version is loaded off the data path (a
//! background thread) and replaces the current model between two calls, after the rows that
//! arrived before it were run. No row is dropped or run twice; the optional version column
//! tells which version scored each row. A version whose outputs differ from the node's
//! columns fails the job, naming the version and its file.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use ferroflow_engine::{
    DataStream, EngineError, InstanceInfo, Operator, OperatorContext, OperatorFactory,
    OperatorState, Output, RestoreContext,
};

use crate::batching::{AdaptiveBatcher, BatchConfig};
use crate::binding::{Binding, InputMapping, OutputMapping, OutputShape};
use crate::error::{InferenceError, Result};
use crate::model::{InferenceModel, ModelLoader, load_shared};
use crate::onnx::OnnxLoader;

/// How a new model version replaces the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwapMode {
    /// Load on a background thread and switch once loaded; rows keep flowing meanwhile.
    #[default]
    Background,
    /// Load when the version arrives, before any later row is run (rows wait meanwhile).
    Blocking,
}

/// Columns the model-version input must have.
pub const VERSION_COLUMN: &str = "version";
/// Column of the model file in the model-version input.
pub const URI_COLUMN: &str = "uri";

/// The schema of a model-version stream: `version: Int64`, `uri: Utf8`.
pub fn model_version_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(VERSION_COLUMN, DataType::Int64, false),
        Field::new(URI_COLUMN, DataType::Utf8, false),
    ]))
}

/// A model node's description: which model, how it binds to columns, how it batches.
#[derive(Clone)]
pub struct ModelNode {
    loader: Arc<dyn ModelLoader>,
    uri: String,
    inputs: Vec<InputMapping>,
    outputs: Vec<OutputMapping>,
    batch: BatchConfig,
    version_column: Option<String>,
    initial_version: i64,
    wait_for_version: bool,
    swap: SwapMode,
}

impl std::fmt::Debug for ModelNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelNode")
            .field("flavor", &self.loader.flavor())
            .field("uri", &self.uri)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("batch", &self.batch)
            .finish()
    }
}

impl ModelNode {
    /// A node running the model at `uri` with `loader`.
    pub fn new(loader: Arc<dyn ModelLoader>, uri: impl Into<String>) -> Self {
        ModelNode {
            loader,
            uri: uri.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            batch: BatchConfig::default(),
            version_column: None,
            initial_version: 0,
            wait_for_version: false,
            swap: SwapMode::default(),
        }
    }

    /// A node running the ONNX model at `path` with default session options.
    pub fn onnx(path: impl Into<String>) -> Self {
        ModelNode::new(Arc::new(OnnxLoader::default()), path)
    }

    /// Feed model input `input` from `columns` (one vector or scalar column, or several
    /// scalar columns stacked). Unmapped inputs take the column of their own name.
    pub fn input(mut self, input: &str, columns: &[&str]) -> Self {
        self.inputs.retain(|m| m.input != input);
        self.inputs.push(InputMapping {
            input: input.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        });
        self
    }

    /// Add model output `output` as column `column`. Without any, every output is added under
    /// its own name.
    pub fn output(mut self, output: &str, column: &str) -> Self {
        self.outputs.push(OutputMapping {
            output: output.to_string(),
            column: column.to_string(),
            shape: OutputShape::Auto,
        });
        self
    }

    /// Like [`ModelNode::output`], always as a fixed-size list column.
    pub fn output_vector(mut self, output: &str, column: &str) -> Self {
        self.outputs.push(OutputMapping {
            output: output.to_string(),
            column: column.to_string(),
            shape: OutputShape::Vector,
        });
        self
    }

    /// Batching settings.
    pub fn batching(mut self, config: BatchConfig) -> Self {
        self.batch = config;
        self
    }

    /// Add an `Int64` column with the version of the model that scored each row.
    pub fn version_column(mut self, column: &str) -> Self {
        self.version_column = Some(column.to_string());
        self
    }

    /// The version number of the initial model (0 by default).
    pub fn initial_version(mut self, version: i64) -> Self {
        self.initial_version = version;
        self
    }

    /// With a model-version input: use the initial model only to check the job when it is
    /// built, and score no row before the first version arrives (rows wait in their bounded
    /// channels).
    pub fn wait_for_first_version(mut self) -> Self {
        self.wait_for_version = true;
        self
    }

    /// How new versions replace the current model.
    pub fn swap_mode(mut self, mode: SwapMode) -> Self {
        self.swap = mode;
        self
    }
}

/// Model nodes on a [`DataStream`].
pub trait ModelStreamExt {
    /// Append the outputs of `model` to every row (node `name`). Every check (model file,
    /// input columns and types, output names) happens here, before the job runs.
    fn predict(&self, name: &str, model: ModelNode) -> ferroflow_engine::Result<DataStream>;

    /// Like [`ModelStreamExt::predict`], with the model replaced by each version arriving on
    /// `versions` (schema [`model_version_schema`]).
    fn predict_with_versions(
        &self,
        name: &str,
        versions: &DataStream,
        model: ModelNode,
    ) -> ferroflow_engine::Result<DataStream>;
}

impl ModelStreamExt for DataStream {
    fn predict(&self, name: &str, model: ModelNode) -> ferroflow_engine::Result<DataStream> {
        if model.wait_for_version {
            return Err(EngineError::plan(format!(
                "node '{name}': wait_for_first_version needs a model-version input \
                 (predict_with_versions)"
            )));
        }
        let factory = ModelFactory::new(name, self.schema(), model, false)?;
        self.transform(name, Arc::new(factory))
    }

    fn predict_with_versions(
        &self,
        name: &str,
        versions: &DataStream,
        model: ModelNode,
    ) -> ferroflow_engine::Result<DataStream> {
        let vs = versions.schema();
        for (col, dt) in [
            (VERSION_COLUMN, DataType::Int64),
            (URI_COLUMN, DataType::Utf8),
        ] {
            match vs.field_with_name(col) {
                Ok(f) if *f.data_type() == dt => {}
                _ => {
                    return Err(EngineError::plan(format!(
                        "node '{name}': the model-version input (node '{}') needs a column \
                         '{col}' of type {dt}",
                        versions.node_name()
                    )));
                }
            }
        }
        let factory = ModelFactory::new(name, self.schema(), model, true)?;
        // Every instance must see every version.
        let versions = versions.clone().broadcast();
        self.transform_multi(name, &[&versions], Arc::new(factory))
    }
}

struct Shared {
    node: String,
    input_schema: SchemaRef,
    output_schema: SchemaRef,
    config: ModelNode,
    template: Active,
    has_versions: bool,
}

#[derive(Clone)]
struct Active {
    model: Arc<dyn InferenceModel>,
    binding: Arc<Binding>,
    version: i64,
    uri: String,
}

impl Shared {
    /// Load and bind version `version` at `uri`, checking it fits the node's columns.
    fn load(&self, version: i64, uri: &str) -> Result<Active> {
        self.try_load(version, uri).map_err(|e| {
            let message = match e {
                InferenceError::Binding { message, .. } => message,
                e => e.to_string(),
            };
            InferenceError::binding(
                &self.node,
                format!("model version {version} ('{uri}'): {message}"),
            )
        })
    }

    fn try_load(&self, version: i64, uri: &str) -> Result<Active> {
        let c = &self.config;
        let model = load_shared(c.loader.as_ref(), uri)?;
        let binding = Binding::new(
            &self.node,
            &self.input_schema,
            model.as_ref(),
            &c.inputs,
            &c.outputs,
        )?;
        if !binding.same_outputs(&self.template.binding) {
            return Err(InferenceError::binding(
                &self.node,
                format!(
                    "outputs {:?} differ from the node's {:?}",
                    binding.output_fields(),
                    self.template.binding.output_fields()
                ),
            ));
        }
        Ok(Active {
            model,
            binding: Arc::new(binding),
            version,
            uri: uri.to_string(),
        })
    }
}

struct ModelFactory {
    shared: Arc<Shared>,
}

impl ModelFactory {
    fn new(
        name: &str,
        schema: SchemaRef,
        config: ModelNode,
        has_versions: bool,
    ) -> ferroflow_engine::Result<Self> {
        let model = load_shared(config.loader.as_ref(), &config.uri)
            .map_err(|e| EngineError::plan_caused(format!("node '{name}': {e}"), e))?;
        let binding = Binding::new(
            name,
            &schema,
            model.as_ref(),
            &config.inputs,
            &config.outputs,
        )?;
        let mut extra: Vec<FieldRef> = Vec::new();
        if let Some(col) = &config.version_column {
            if schema.index_of(col).is_ok()
                || binding.output_fields().iter().any(|f| f.name() == col)
            {
                return Err(EngineError::plan(format!(
                    "node '{name}': version column '{col}' already exists"
                )));
            }
            extra.push(Arc::new(Field::new(col, DataType::Int64, false)));
        }
        let output_schema = binding.output_schema(&schema, &extra);
        Ok(ModelFactory {
            shared: Arc::new(Shared {
                node: name.to_string(),
                input_schema: schema,
                output_schema,
                template: Active {
                    model,
                    binding: Arc::new(binding),
                    version: config.initial_version,
                    uri: config.uri.clone(),
                },
                config,
                has_versions,
            }),
        })
    }
}

impl OperatorFactory for ModelFactory {
    /// With a version input, the version in use (and any still loading) is state that
    /// every instance holds alike: after rescaling, every instance takes it.
    fn state_kind(&self) -> ferroflow_engine::StateKind {
        if self.shared.has_versions {
            ferroflow_engine::StateKind::Broadcast
        } else {
            ferroflow_engine::StateKind::Stateless
        }
    }

    fn output_schema(&self) -> SchemaRef {
        self.shared.output_schema.clone()
    }

    fn create(&self, _instance: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        let s = &self.shared;
        let current = if s.config.wait_for_version {
            None
        } else {
            Some(s.template.clone())
        };
        Ok(Box::new(ModelOperator {
            shared: s.clone(),
            current,
            pending: VecDeque::new(),
            pending_rows: 0,
            oldest: None,
            batcher: AdaptiveBatcher::new(s.config.batch.clone()),
            loading: None,
            queued: None,
            counters: Counters::default(),
        }))
    }
}

#[derive(Default)]
struct Counters {
    calls: Option<Arc<AtomicU64>>,
    borrowed: Option<Arc<AtomicU64>>,
    copied: Option<Arc<AtomicU64>>,
    swaps: Option<Arc<AtomicU64>>,
    swap_pause_us: Option<Arc<AtomicU64>>,
}

fn add(c: &Option<Arc<AtomicU64>>, n: u64) {
    if let Some(c) = c {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

struct Loading {
    version: i64,
    uri: String,
    rx: mpsc::Receiver<Result<Active>>,
}

struct ModelOperator {
    shared: Arc<Shared>,
    current: Option<Active>,
    pending: VecDeque<RecordBatch>,
    pending_rows: usize,
    oldest: Option<Instant>,
    batcher: AdaptiveBatcher,
    loading: Option<Loading>,
    /// The newest version that arrived while another was loading.
    queued: Option<(i64, String)>,
    counters: Counters,
}

impl ModelOperator {
    /// Run up to `rows` waiting rows through the current model.
    fn run_rows(&mut self, rows: usize, out: &mut Output) -> Result<()> {
        let batch = self.take(rows)?;
        let active = self.current.clone().ok_or_else(|| {
            InferenceError::binding(&self.shared.node, "no model loaded yet".to_string())
        })?;
        let n = batch.num_rows();
        let started = Instant::now();
        let outputs = {
            let tensors = active.binding.tensors(&batch)?;
            for t in &tensors {
                if t.data.is_borrowed() {
                    add(&self.counters.borrowed, t.data.len() as u64);
                } else {
                    add(&self.counters.copied, t.data.len() as u64);
                }
            }
            active.model.run(&tensors)?
        };
        self.batcher.record(n, started.elapsed());
        add(&self.counters.calls, 1);
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.extend(active.binding.columns(n, outputs)?);
        if self.shared.config.version_column.is_some() {
            columns.push(Arc::new(Int64Array::from(vec![active.version; n])));
        }
        out.emit(RecordBatch::try_new(
            self.shared.output_schema.clone(),
            columns,
        )?);
        Ok(())
    }

    /// Take `rows` rows from the front of the waiting batches (slices, or one concatenation
    /// when the call spans batches).
    fn take(&mut self, rows: usize) -> Result<RecordBatch> {
        let mut parts = Vec::new();
        let mut need = rows.min(self.pending_rows);
        while need > 0 {
            let front = self.pending.pop_front().expect("rows are pending");
            if front.num_rows() <= need {
                need -= front.num_rows();
                parts.push(front);
            } else {
                parts.push(front.slice(0, need));
                self.pending
                    .push_front(front.slice(need, front.num_rows() - need));
                need = 0;
            }
        }
        let taken: usize = parts.iter().map(|b| b.num_rows()).sum();
        self.pending_rows -= taken;
        if self.pending_rows == 0 {
            self.oldest = None;
        }
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        Ok(arrow_select::concat::concat_batches(
            &self.shared.input_schema,
            &parts,
        )?)
    }

    /// Run calls while a full batch waits, or everything when `all` or a row is too old.
    fn run_ready(&mut self, all: bool, out: &mut Output) -> Result<()> {
        if self.current.is_none() {
            return Ok(());
        }
        let max_latency = self.batcher.config().max_latency;
        loop {
            let size = self.batcher.size();
            let too_old = self.oldest.is_some_and(|t| t.elapsed() >= max_latency);
            if self.pending_rows == 0 || !(all || too_old || self.pending_rows >= size) {
                return Ok(());
            }
            self.run_rows(size, out)?;
        }
    }

    /// Switch to a loaded version: the rows waiting now still run on the old one.
    fn switch(&mut self, next: Active, started: Instant, out: &mut Output) -> Result<()> {
        self.run_ready(true, out)?;
        self.current = Some(next);
        add(&self.counters.swaps, 1);
        add(
            &self.counters.swap_pause_us,
            started.elapsed().as_micros() as u64,
        );
        Ok(())
    }

    /// Install a background load that finished; start the queued one.
    fn poll_loading(&mut self, out: &mut Output) -> Result<()> {
        let Some(l) = &self.loading else {
            return Ok(());
        };
        let result = match l.rx.try_recv() {
            Ok(r) => r,
            Err(mpsc::TryRecvError::Empty) => return Ok(()),
            Err(mpsc::TryRecvError::Disconnected) => Err(InferenceError::binding(
                &self.shared.node,
                format!("loading model version {} ('{}') stopped", l.version, l.uri),
            )),
        };
        self.loading = None;
        let next = result?;
        self.switch(next, Instant::now(), out)?;
        if let Some((v, uri)) = self.queued.take() {
            self.request(v, uri, out)?;
        }
        Ok(())
    }

    /// A version arrived on the version input.
    fn request(&mut self, version: i64, uri: String, out: &mut Output) -> Result<()> {
        if self.current.as_ref().is_some_and(|a| a.version == version) {
            return Ok(());
        }
        if self.current.is_none() || self.shared.config.swap == SwapMode::Blocking {
            let started = Instant::now();
            let next = self.shared.load(version, &uri)?;
            return self.switch(next, started, out);
        }
        if self.loading.is_some() {
            self.queued = Some((version, uri));
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        let shared = self.shared.clone();
        let thread_uri = uri.clone();
        std::thread::Builder::new()
            .name(format!("ferroflow-load-{}", self.shared.node))
            .spawn(move || {
                let _ = tx.send(shared.load(version, &thread_uri));
            })
            .map_err(|e| EngineError::io("spawning a model-loading thread", e))?;
        self.loading = Some(Loading { version, uri, rx });
        Ok(())
    }
}

impl Operator for ModelOperator {
    fn open(&mut self, ctx: &OperatorContext) -> ferroflow_engine::Result<()> {
        let m = &ctx.metrics;
        self.counters = Counters {
            calls: Some(m.counter("model_calls")),
            borrowed: Some(m.counter("tensor_values_borrowed")),
            copied: Some(m.counter("tensor_values_copied")),
            swaps: Some(m.counter("model_swaps")),
            swap_pause_us: Some(m.counter("model_swap_pause_us")),
        };
        Ok(())
    }

    fn process_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        if input == 1 {
            let versions = batch
                .column_by_name(VERSION_COLUMN)
                .map(|c| c.as_primitive::<Int64Type>().clone());
            let uris = batch
                .column_by_name(URI_COLUMN)
                .map(|c| c.as_string::<i32>().clone());
            let (Some(versions), Some(uris)) = (versions, uris) else {
                return Err(EngineError::Other(format!(
                    "model-version batch without '{VERSION_COLUMN}' and '{URI_COLUMN}'"
                )));
            };
            for i in 0..batch.num_rows() {
                if versions.is_null(i) || uris.is_null(i) {
                    return Err(EngineError::Other(format!(
                        "model-version row {i} has a null version or uri"
                    )));
                }
                self.request(versions.value(i), uris.value(i).to_string(), out)?;
            }
            return Ok(());
        }
        self.poll_loading(out)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.pending_rows += batch.num_rows();
        self.pending.push_back(batch);
        self.oldest.get_or_insert_with(Instant::now);
        self.run_ready(false, out)?;
        Ok(())
    }

    fn input_drained(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        self.poll_loading(out)?;
        self.run_ready(true, out)?;
        Ok(())
    }

    fn selected_input(&self) -> Option<usize> {
        // Before the first version, read only the version input: rows wait upstream.
        (self.shared.has_versions && self.current.is_none()).then_some(1)
    }

    fn end_input(&mut self, input: usize, out: &mut Output) -> ferroflow_engine::Result<()> {
        if input == 1 && self.current.is_none() {
            return Err(EngineError::Other(
                "the model-version input ended before any version arrived".to_string(),
            ));
        }
        if input == 0 {
            self.run_ready(true, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        self.run_ready(true, out)?;
        Ok(())
    }

    /// The versions this instance knows, oldest first, as one `(version, uri)` batch: the
    /// one in use (unless none is yet), then the one loading and the one queued. Rows never
    /// wait here at a barrier: the chain is drained before the snapshot.
    fn snapshot_state(&mut self) -> ferroflow_engine::Result<Option<OperatorState>> {
        if !self.shared.has_versions {
            return Ok(None);
        }
        if self.pending_rows > 0 {
            return Err(EngineError::Other(format!(
                "{} rows still wait for a model at a checkpoint barrier",
                self.pending_rows
            )));
        }
        let mut known: Vec<(i64, &str)> = Vec::new();
        if let Some(a) = &self.current {
            known.push((a.version, &a.uri));
        }
        if let Some(l) = &self.loading {
            known.push((l.version, &l.uri));
        }
        if let Some((v, uri)) = &self.queued {
            known.push((*v, uri));
        }
        let batch = RecordBatch::try_new(
            model_version_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(known.iter().map(|k| k.0))),
                Arc::new(arrow_array::StringArray::from_iter_values(
                    known.iter().map(|k| k.1),
                )),
            ],
        )?;
        Ok(Some(OperatorState {
            batches: vec![batch],
            bytes: vec![u8::from(self.current.is_some())],
        }))
    }

    /// Serve the newest version the checkpoint knew of, loaded now (before any row): the
    /// version stream's position is past it, so it will not come again. Every instance had
    /// the same versions; after rescaling the first old instance's state is used.
    fn restore_state(
        &mut self,
        states: Vec<OperatorState>,
        _ctx: &RestoreContext,
    ) -> ferroflow_engine::Result<()> {
        let Some(state) = states.into_iter().next() else {
            return Ok(());
        };
        let rows = state.batches.first().ok_or_else(|| {
            EngineError::Other("the checkpointed model state has no version table".into())
        })?;
        let (Some(versions), Some(uris)) = (
            rows.column_by_name(VERSION_COLUMN)
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
            rows.column_by_name(URI_COLUMN)
                .and_then(|c| c.as_string_opt::<i32>()),
        ) else {
            return Err(EngineError::Other(
                "the checkpointed model state is not a version table".into(),
            ));
        };
        let last = rows.num_rows().checked_sub(1);
        let Some(last) = last else {
            // No version had arrived: start as a fresh run would.
            return Ok(());
        };
        let (version, uri) = (versions.value(last), uris.value(last));
        self.current = Some(
            if self.shared.template.version == version && self.shared.template.uri == uri {
                self.shared.template.clone()
            } else {
                self.shared.load(version, uri)?
            },
        );
        Ok(())
    }
}
