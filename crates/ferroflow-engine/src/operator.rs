//! The operator interface: what a node of a job implements.
//!
//! An operator is created once per parallel instance and driven by one task at a time, so it
//! needs no locking. The engine calls `open`, then `process_batch` and `process_watermark` as
//! input arrives, `snapshot_state` at each checkpoint barrier, and `finish` when every input
//! has ended.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use arrow_array::ArrayRef;

use crate::error::Result;
use crate::hash::{hash_rows, key_group, key_group_owner};
use crate::message::Watermark;
use crate::metrics::OperatorMetrics;

/// Where an instance sits in its node.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    /// Name of the node.
    pub node: String,
    /// Index of this instance, `0..parallelism`.
    pub index: usize,
    /// Number of parallel instances of the node.
    pub parallelism: usize,
    /// Names this run of the job; kept across restores from checkpoints, new on a fresh
    /// start. Sinks put it in the names of the files they commit, so runs never overwrite
    /// each other's output.
    pub run: String,
}

/// Context given to an operator when it opens.
pub struct OperatorContext {
    /// Which instance this is.
    pub instance: InstanceInfo,
    /// The instance's metrics; operators may add named counters.
    pub metrics: Arc<OperatorMetrics>,
}

/// Operator state captured at a checkpoint: Arrow batches plus opaque bytes.
#[derive(Debug, Clone, Default)]
pub struct OperatorState {
    /// Tabular state (window contents, aggregates), as Arrow batches.
    pub batches: Vec<RecordBatch>,
    /// Anything else (offsets, counters), encoded by the operator.
    pub bytes: Vec<u8>,
}

/// Where an operator instance's restored state comes from, and which keys are its own.
#[derive(Debug, Clone)]
pub struct RestoreContext {
    /// The instance being restored.
    pub instance: InstanceInfo,
    /// Parallelism of the node when the checkpoint was taken.
    pub old_parallelism: usize,
    pub(crate) max_parallelism: u32,
}

impl RestoreContext {
    /// `true` when the checkpoint was taken at the parallelism the node runs at now, so the
    /// state given is this instance's own.
    pub fn same_parallelism(&self) -> bool {
        self.old_parallelism == self.instance.parallelism
    }

    /// For each of `rows` rows of these key columns, whether its key now belongs to this
    /// instance (the routing of keyed exchanges, through key groups). Keyed operators
    /// restored at a new parallelism keep just these rows of the states they are given.
    pub fn owns_keys(&self, key_columns: &[ArrayRef], rows: usize) -> Result<Vec<bool>> {
        let mut hashes = Vec::new();
        hash_rows(key_columns, rows, &mut hashes)?;
        Ok(hashes
            .iter()
            .map(|h| {
                key_group_owner(
                    key_group(*h, self.max_parallelism),
                    self.max_parallelism,
                    self.instance.parallelism,
                ) == self.instance.index
            })
            .collect())
    }
}

/// Collects what an operator emits for one call.
#[derive(Debug, Default)]
pub struct Output {
    pub(crate) main: Vec<RecordBatch>,
    pub(crate) side: Vec<(String, RecordBatch)>,
}

impl Output {
    /// Emit a batch on the main output (empty batches are dropped).
    pub fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.main.push(batch);
        }
    }

    /// Emit a batch on a named side output, e.g. `late` for late records.
    pub fn emit_side(&mut self, tag: &str, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.side.push((tag.to_string(), batch));
        }
    }
}

/// One parallel instance of a node's logic.
pub trait Operator: Send {
    /// Called once before any data.
    fn open(&mut self, _ctx: &OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Process a batch that arrived on input `input` (0 for single-input operators).
    fn process_batch(&mut self, input: usize, batch: RecordBatch, out: &mut Output) -> Result<()>;

    /// Event time advanced to `watermark` on all inputs. The engine forwards the watermark
    /// downstream after this returns, so anything the watermark completes must be emitted here.
    fn process_watermark(&mut self, _watermark: Watermark, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// No more input is waiting right now. Operators that gather rows into larger batches
    /// (model inference) flush here, so a row never waits for input that is not coming.
    /// Called once per burst of input, after its last batch.
    fn input_drained(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Read only this input for now (`None`: all inputs). A hash join reads its build side to
    /// the end before the probe side, so the probe side waits in its bounded channels
    /// instead of piling up in memory.
    fn selected_input(&self) -> Option<usize> {
        None
    }

    /// Input `input` has ended (others may go on): a hash join's build side, for example.
    fn end_input(&mut self, _input: usize, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Every input has ended: emit what is still held.
    fn finish(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// The wall-clock time (milliseconds since the epoch) at which this operator wants
    /// [`Operator::on_timer`] called next (`None`: no timer). Asked after every call of the
    /// other hooks; the task wakes at that time even when no input arrives (processing-time
    /// windows, versions every T seconds, idle sessions).
    fn next_timer(&self) -> Option<i64> {
        None
    }

    /// The wall clock reached the time [`Operator::next_timer`] asked for (`now_ms` is the
    /// time now, at or after it).
    fn on_timer(&mut self, _now_ms: i64, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Capture state at a checkpoint barrier (`None`: stateless). Called between two calls
    /// of the other hooks, once every input delivered the barrier; what was emitted before
    /// belongs to the checkpoint, the state must hold everything else.
    fn snapshot_state(&mut self) -> Result<Option<OperatorState>> {
        Ok(None)
    }

    /// Restore state captured by `snapshot_state`, before `open`. `states` is this
    /// instance's own state when the parallelism is unchanged; after rescaling it is the
    /// states of the old instances that held keys this instance now owns
    /// ([`StateKind::Keyed`]: keep the rows `ctx.owns_keys` accepts), a share of the old
    /// instances' states ([`StateKind::Instance`]: merge them) or all of them, in old
    /// instance order ([`StateKind::Broadcast`]).
    fn restore_state(&mut self, _states: Vec<OperatorState>, _ctx: &RestoreContext) -> Result<()> {
        Ok(())
    }
}

/// What state a node's operators keep, for checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateKind {
    /// None: nothing to save.
    Stateless,
    /// State per key of a keyed input: redistributed by key group when rescaled.
    Keyed,
    /// State per instance: on rescaling, the old instances' states are shared out among the
    /// new instances (each old state to one new instance).
    Instance,
    /// State every instance holds alike (the model version a node serves, fed by a
    /// broadcast input): on rescaling, every new instance gets every old instance's state.
    Broadcast,
    /// State that cannot be checkpointed yet: a job with checkpoints is refused, naming the
    /// node and this reason.
    Unsupported(String),
}

/// Makes the operator instances of a node and states their output schema.
pub trait OperatorFactory: Send + Sync {
    /// Schema of the main output.
    fn output_schema(&self) -> SchemaRef;

    /// Schemas of named side outputs.
    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        Vec::new()
    }

    /// Create the operator for one parallel instance.
    fn create(&self, instance: &InstanceInfo) -> Result<Box<dyn Operator>>;

    /// The state its operators keep (default: none; stateful operators must say so, or
    /// their state is lost at a restore).
    fn state_kind(&self) -> StateKind {
        StateKind::Stateless
    }
}
