//! Training a TorchScript module inside the dataflow, on streaming batches.
//!
//! The trainer takes feature columns and a label column, runs forward + loss + optimizer step
//! for each batch (or each `minibatch_rows` slice of it), and every N batches or T seconds
//! saves the module as a new file and emits a model-version row (`version`, `uri`, `loss`,
//! `rows`). Fed to `predict_with_versions` downstream, those rows hot-swap the prediction
//! node's model: the role "TensorFlow on Flink" played.
//!
//! The trainer is a single instance (one set of weights). Time-based versions are checked
//! when a batch arrives; the last version is written when the input ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferroflow_engine::{
    DataStream, EngineError, InstanceInfo, Operator, OperatorContext, OperatorFactory, Output,
};
use ferroflow_inference::{Binding, ElementType, InputMapping, TensorSpec, ValueKind};
use tch::nn::{self, OptimizerConfig, VarStore};
use tch::{Device, Reduction, Tensor, TrainableCModule};

use crate::model::{first_line, to_tensor};

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

/// The optimizer.
#[derive(Debug, Clone, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0 for none).
        momentum: f64,
    },
    /// Adam.
    Adam {
        /// Learning rate.
        lr: f64,
    },
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
        let plan = |e: String| EngineError::Plan(format!("node '{name}': {e}"));
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
        ferroflow_engine::StateKind::Unsupported(
            "the trainer's weights, optimizer state and version counter are not saved yet".into(),
        )
    }

    fn output_schema(&self) -> SchemaRef {
        trainer_output_schema()
    }

    fn create(&self, _instance: &InstanceInfo) -> ferroflow_engine::Result<Box<dyn Operator>> {
        let t = &self.trainer;
        let err = |e: tch::TchError| {
            EngineError::Other(format!(
                "module '{}': {}",
                t.module,
                first_line(&e.to_string())
            ))
        };
        let vs = VarStore::new(Device::Cpu);
        let mut module = TrainableCModule::load(&t.module, vs.root()).map_err(err)?;
        module.set_train();
        let opt = match t.optimizer {
            Optimizer::Sgd { lr, momentum } => nn::Sgd {
                momentum,
                ..Default::default()
            }
            .build(&vs, lr),
            Optimizer::Adam { lr } => nn::Adam::default().build(&vs, lr),
        }
        .map_err(err)?;
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

struct TrainerOperator {
    node: String,
    trainer: TorchTrainer,
    binding: Arc<Binding>,
    // Holds the trainable variables the optimizer updates.
    _vs: VarStore,
    module: TrainableCModule,
    opt: nn::Optimizer,
    version: i64,
    steps_since: usize,
    last_emit: Instant,
    rows: i64,
    last_loss: f64,
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
}
