//! Training a TorchScript module inside the dataflow, on streaming batches.
//!
//! The trainer takes feature columns and a label column, runs forward + loss + optimizer step
//! for each batch (or each `minibatch_rows` slice of it), and every N batches or T seconds
//! saves the module as a new file and emits a model-version row (`version`, `uri`, `loss`,
//! `rows`). Fed to `predict_with_versions` downstream, those rows hot-swap the prediction
//! node's model: the role "TensorFlow on Flink" played.
//!
//! The trainer is a single instance (one set of weights). Time-based versions come from a
//! processing-time timer, with or without new input; the last version is written when the
//! input ends. With checkpoints, its state is the module (weights and buffers), the
//! optimizer's slots and step count, and the version and row counters: a restored trainer
//! goes on where the checkpoint was, and the version after it gets the same number (its file
//! is written again).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_engine::{
    DataStream, EngineError, InstanceInfo, Operator, OperatorContext, OperatorFactory,
    OperatorState, Output, RestoreContext,
};
use ferroflow_inference::{Binding, ElementType, InputMapping, TensorSpec, ValueKind};
use tch::nn::VarStore;
use tch::{Device, Reduction, Tensor, TrainableCModule};

use crate::model::{first_line, to_tensor};
use crate::optim::{Optim, Optimizer};

/// The loss minimised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// A method of the module taking `(features, label)` and returning a scalar loss
    /// (`@torch.jit.export def loss(self, x, y)`).
    Method(String),
    /// Mean squared error between `forward(features)` and a float label.
    MeanSquaredError,
    /// Cross entropy between `forward(features)` (logits) and an integer class label.
    CrossEntropy,
}

/// A training node's description.
#[derive(Debug, Clone)]
pub struct TorchTrainer {
    module: String,
    features: Vec<String>,
    label: String,
    loss: Loss,
    optimizer: Optimizer,
    every_batches: Option<usize>,
    every: Option<Duration>,
    output_dir: PathBuf,
    minibatch_rows: Option<usize>,
}

impl TorchTrainer {
    /// Train the TorchScript module at `module` on `features` (one vector column or several
    /// scalar columns) against `label`, writing versions into `output_dir`. Defaults: the
    /// module's `loss` method, Adam with learning rate 0.01, a version every 100 batches.
    pub fn new(
        module: &str,
        features: &[&str],
        label: &str,
        output_dir: impl Into<PathBuf>,
    ) -> Self {
        TorchTrainer {
            module: module.to_string(),
            features: features.iter().map(|c| c.to_string()).collect(),
            label: label.to_string(),
            loss: Loss::Method("loss".to_string()),
            optimizer: Optimizer::Adam { lr: 0.01 },
            every_batches: Some(100),
            every: None,
            output_dir: output_dir.into(),
            minibatch_rows: None,
        }
    }

    /// The loss.
    pub fn loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// The optimizer.
    pub fn optimizer(mut self, optimizer: Optimizer) -> Self {
        self.optimizer = optimizer;
        self
    }

    /// Emit a version every `n` training steps (`None`: not by count).
    pub fn every_batches(mut self, n: Option<usize>) -> Self {
        self.every_batches = n.map(|n| n.max(1));
        self
    }

    /// Emit a version when `t` has passed since the last one (`None`: not by time).
    pub fn every(mut self, t: Option<Duration>) -> Self {
        self.every = t;
        self
    }

    /// Split incoming batches into training steps of at most `rows` rows.
    pub fn minibatch_rows(mut self, rows: usize) -> Self {
        self.minibatch_rows = Some(rows.max(1));
        self
    }
}

/// The schema of the trainer's output: a model-version stream with the training loss.
pub fn trainer_output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("uri", DataType::Utf8, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("rows", DataType::Int64, false),
    ]))
}

/// Training nodes on a [`DataStream`].
pub trait TorchStreamExt {
    /// Train `trainer`'s module on this stream (node `name`); the result is its stream of
    /// model versions. Checks the module, columns and output directory before the job runs.
    fn train_torch(
        &self,
        name: &str,
        trainer: TorchTrainer,
    ) -> ferroflow_engine::Result<DataStream>;
}

impl TorchStreamExt for DataStream {
    fn train_torch(
        &self,
        name: &str,
        trainer: TorchTrainer,
    ) -> ferroflow_engine::Result<DataStream> {
        let plan = |e: String| EngineError::plan(format!("node '{name}': {e}"));
        let schema = self.schema();
        let label_elem = match trainer.loss {
            Loss::CrossEntropy => ElementType::I64,
            _ => ElementType::F32,
        };
        let specs = [
            TensorSpec {
                name: "features".into(),
                kind: ValueKind::Tensor {
                    elem: ElementType::F32,
                    shape: Vec::new(),
                },
            },
            TensorSpec {
                name: "label".into(),
                kind: ValueKind::Tensor {
                    elem: label_elem,
                    shape: vec![None],
                },
            },
        ];
        let binding = Binding::inputs_only(
            name,
            &schema,
            &specs,
            &[
                InputMapping {
                    input: "features".into(),
                    columns: trainer.features.clone(),
                },
                InputMapping {
                    input: "label".into(),
                    columns: vec![trainer.label.clone()],
                },
            ],
        )?;
        std::fs::create_dir_all(&trainer.output_dir).map_err(|e| {
            plan(format!(
                "cannot create output directory '{}': {e}",
                trainer.output_dir.display()
            ))
        })?;
        // Load once now so a missing or invalid module fails before the job starts.
        let vs = VarStore::new(Device::Cpu);
        TrainableCModule::load(&trainer.module, vs.root()).map_err(|e| {
            plan(format!(
                "cannot load module '{}': {}",
                trainer.module,
                first_line(&e.to_string())
            ))
        })?;
        let factory = TrainerFactory {
            node: name.to_string(),
            trainer,
            binding: Arc::new(binding),
        };
        self.transform_single(name, Arc::new(factory))
    }
}

struct TrainerFactory {
    node: String,
    trainer: TorchTrainer,
    binding: Arc<Binding>,
}

impl OperatorFactory for TrainerFactory {
    fn state_kind(&self) -> ferroflow_engine::StateKind {
        // One instance: its state goes to the one instance of a restored job.
        ferroflow_engine::StateKind::Instance
    }

    fn output_schema(&self) -> SchemaRef {
        trainer_output_schema()
    }

    fn create(&self, _instance: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        let t = &self.trainer;
        let vs = VarStore::new(Device::Cpu);
        let mut module = TrainableCModule::load(&t.module, vs.root())
            .map_err(|e| module_error(&t.module, &e))?;
        module.set_train();
        let opt = Optim::new(t.optimizer.clone(), &vs);
        Ok(Box::new(TrainerOperator {
            node: self.node.clone(),
            trainer: t.clone(),
            binding: self.binding.clone(),
            _vs: vs,
            module,
            opt,
            version: 0,
            steps_since: 0,
            last_emit: Instant::now(),
            rows: 0,
            last_loss: f64::NAN,
        }))
    }
}

fn module_error(module: &str, e: &tch::TchError) -> EngineError {
    EngineError::Other(format!("module '{module}': {}", first_line(&e.to_string())))
}

struct TrainerOperator {
    node: String,
    trainer: TorchTrainer,
    binding: Arc<Binding>,
    // Holds the trainable variables the optimizer updates.
    _vs: VarStore,
    module: TrainableCModule,
    opt: Optim,
    version: i64,
    steps_since: usize,
    last_emit: Instant,
    rows: i64,
    last_loss: f64,
}

/// Leads a trainer's checkpointed state.
const STATE_MAGIC: &[u8; 8] = b"FFTRAIN1";

/// Read `n` bytes at `*at`, or say the state is cut short.
fn take<'a>(bytes: &'a [u8], at: &mut usize, n: usize) -> ferroflow_engine::Result<&'a [u8]> {
    let end = at
        .checked_add(n)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| EngineError::Other("the checkpointed trainer state is cut short".into()))?;
    let part = &bytes[*at..end];
    *at = end;
    Ok(part)
}

fn take_u64(bytes: &[u8], at: &mut usize) -> ferroflow_engine::Result<u64> {
    let b = take(bytes, at, 8)?;
    Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

impl TrainerOperator {
    fn step(&mut self, batch: &RecordBatch) -> ferroflow_engine::Result<()> {
        let tensors = self.binding.tensors(batch)?;
        let x = to_tensor(&tensors[0])?;
        let y = to_tensor(&tensors[1])?;
        let run = |r: std::result::Result<Tensor, tch::TchError>| {
            r.map_err(|e| {
                EngineError::Other(format!("training step: {}", first_line(&e.to_string())))
            })
        };
        let loss = match &self.trainer.loss {
            Loss::Method(m) => run(self.module.method_ts(m, &[&x, &y]))?,
            Loss::MeanSquaredError => {
                run(self.module.forward_ts(&[&x]))?.mse_loss(&y, Reduction::Mean)
            }
            Loss::CrossEntropy => run(self.module.forward_ts(&[&x]))?.cross_entropy_for_logits(&y),
        };
        let value = f64::try_from(&loss)
            .map_err(|e| EngineError::Other(format!("the loss is not a scalar: {e}")))?;
        if !value.is_finite() {
            return Err(EngineError::Other(format!(
                "the loss became {value} after {} rows (learning rate too high?)",
                self.rows
            )));
        }
        self.opt.backward_step(&loss);
        self.rows += batch.num_rows() as i64;
        self.last_loss = value;
        self.steps_since += 1;
        Ok(())
    }

    fn due(&self) -> bool {
        self.steps_since > 0
            && (self
                .trainer
                .every_batches
                .is_some_and(|n| self.steps_since >= n)
                || self
                    .trainer
                    .every
                    .is_some_and(|t| self.last_emit.elapsed() >= t))
    }

    /// The module as TorchScript bytes (weights and buffers), through a hidden file in the
    /// output directory (libtorch saves modules to paths only).
    fn module_bytes(&self) -> ferroflow_engine::Result<Vec<u8>> {
        let tmp = self
            .trainer
            .output_dir
            .join(format!(".{}-checkpoint.pt.tmp", self.node));
        self.module.save(&tmp).map_err(|e| {
            EngineError::Other(format!(
                "saving '{}': {}",
                tmp.display(),
                first_line(&e.to_string())
            ))
        })?;
        let bytes =
            std::fs::read(&tmp).map_err(|e| EngineError::io(tmp.display().to_string(), e))?;
        let _ = std::fs::remove_file(&tmp);
        Ok(bytes)
    }

    /// Save the module as the next version and emit its row.
    fn emit(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        self.version += 1;
        let path = self
            .trainer
            .output_dir
            .join(format!("{}-v{}.pt", self.node, self.version));
        // Write then rename: a reader never sees a half-written file.
        let tmp = path.with_extension("pt.tmp");
        self.module.save(&tmp).map_err(|e| {
            EngineError::Other(format!(
                "saving '{}': {}",
                tmp.display(),
                first_line(&e.to_string())
            ))
        })?;
        std::fs::rename(&tmp, &path).map_err(|e| EngineError::io(path.display().to_string(), e))?;
        out.emit(RecordBatch::try_new(
            trainer_output_schema(),
            vec![
                Arc::new(Int64Array::from(vec![self.version])),
                Arc::new(StringArray::from(vec![path.display().to_string()])),
                Arc::new(Float64Array::from(vec![self.last_loss])),
                Arc::new(Int64Array::from(vec![self.rows])),
            ],
        )?);
        self.steps_since = 0;
        self.last_emit = Instant::now();
        Ok(())
    }
}

impl Operator for TrainerOperator {
    fn open(&mut self, _ctx: &OperatorContext) -> ferroflow_engine::Result<()> {
        self.last_emit = Instant::now();
        Ok(())
    }

    fn process_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> ferroflow_engine::Result<()> {
        let step = self
            .trainer
            .minibatch_rows
            .unwrap_or(batch.num_rows().max(1));
        let mut start = 0;
        while start < batch.num_rows() {
            let n = step.min(batch.num_rows() - start);
            self.step(&batch.slice(start, n))?;
            start += n;
            if self.due() {
                self.emit(out)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Output) -> ferroflow_engine::Result<()> {
        if self.steps_since > 0 {
            self.emit(out)?;
        }
        Ok(())
    }

    /// With `every(T)`, a version is due T after the last one even when no batch arrives.
    fn next_timer(&self) -> Option<i64> {
        let every = self.trainer.every?;
        if self.steps_since == 0 {
            return None;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let left = every.saturating_sub(self.last_emit.elapsed());
        Some(now + left.as_millis() as i64)
    }

    fn on_timer(&mut self, _now_ms: i64, out: &mut Output) -> ferroflow_engine::Result<()> {
        if self.due() {
            self.emit(out)?;
        }
        Ok(())
    }

    /// Counters, then the module's bytes, then the optimizer's slots.
    fn snapshot_state(&mut self) -> ferroflow_engine::Result<Option<OperatorState>> {
        let module = self.module_bytes()?;
        let (opt_steps, opt) = self.opt.save().map_err(|e| {
            EngineError::Other(format!(
                "saving the optimizer state: {}",
                first_line(&e.to_string())
            ))
        })?;
        let mut bytes = Vec::with_capacity(64 + module.len() + opt.len());
        bytes.extend_from_slice(STATE_MAGIC);
        for v in [
            self.version as u64,
            self.steps_since as u64,
            self.rows as u64,
            self.last_loss.to_bits(),
            opt_steps as u64,
            module.len() as u64,
        ] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.extend_from_slice(&module);
        bytes.extend_from_slice(&(opt.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&opt);
        Ok(Some(OperatorState {
            batches: Vec::new(),
            bytes,
        }))
    }

    /// Replace the freshly loaded module and optimizer by the checkpointed ones.
    fn restore_state(
        &mut self,
        states: Vec<OperatorState>,
        _ctx: &RestoreContext,
    ) -> ferroflow_engine::Result<()> {
        let Some(state) = states.into_iter().next() else {
            return Ok(());
        };
        let b = &state.bytes;
        let mut at = 0;
        if take(b, &mut at, STATE_MAGIC.len())? != STATE_MAGIC {
            return Err(EngineError::Other(
                "the checkpointed state is not a trainer's".into(),
            ));
        }
        let version = take_u64(b, &mut at)? as i64;
        let steps_since = take_u64(b, &mut at)? as usize;
        let rows = take_u64(b, &mut at)? as i64;
        let last_loss = f64::from_bits(take_u64(b, &mut at)?);
        let opt_steps = take_u64(b, &mut at)? as i64;
        let n = take_u64(b, &mut at)? as usize;
        let module_bytes = take(b, &mut at, n)?;
        let n = take_u64(b, &mut at)? as usize;
        let opt_bytes = take(b, &mut at, n)?;
        let vs = VarStore::new(Device::Cpu);
        let mut module =
            TrainableCModule::load_data(&mut std::io::Cursor::new(module_bytes), vs.root())
                .map_err(|e| module_error("(checkpointed)", &e))?;
        module.set_train();
        let mut opt = Optim::new(self.trainer.optimizer.clone(), &vs);
        opt.load(opt_steps, opt_bytes).map_err(EngineError::Other)?;
        self._vs = vs;
        self.module = module;
        self.opt = opt;
        self.version = version;
        self.steps_since = steps_since;
        self.rows = rows;
        self.last_loss = last_loss;
        Ok(())
    }
}
